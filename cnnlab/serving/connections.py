"""Connections under load: a real listen backlog, a bounded number of open connections with an immediate 503
beyond it, a deadline on each whole request, and clients that go away without a traceback.

http.server's own ThreadingHTTPServer listens with a backlog of 5 and a thread per connection without limit:
200 clients connecting at once on loopback got TCP resets (70 and 119 of 200 answered in two runs), and a client
sending a byte every 10 s held its thread for as long as it liked, since the timeout applies to each read.
"""

import io
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BACKLOG = 1024  # connections the kernel holds until accepted (capped by net.core.somaxconn)
MAX_CONNECTIONS = 256  # open at once; each holds a thread and at most one upload (8 MiB)
REQUEST_DEADLINE_S = 30  # from a request's first byte to its last: a stalled or trickling client is let go
IDLE_TIMEOUT_S = 30  # a kept-alive connection waiting this long for its next request is closed
LINGER_S = 2  # how long a turned-away connection is read from before closing (see Server.turn_away)
CLIENT_GONE = (ConnectionError, TimeoutError)  # resets, broken pipes, stalls: nobody is left to answer


def busy_response(message: str, retry_after_s: int = 1) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Retry-After: {retry_after_s}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n").encode() + body


class DeadlineReader(io.RawIOBase):
    """A socket's bytes for a handler: between requests each read waits up to IDLE_TIMEOUT_S; once a request has
    begun, every read waits only for what is left of the request's deadline, however slowly bytes trickle in."""

    def __init__(self, sock: socket.socket, handler):
        self.sock, self.handler = sock, handler

    def readable(self):
        return True

    def readinto(self, buffer) -> int:
        deadline = self.handler.deadline
        left = IDLE_TIMEOUT_S if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the request took longer than {self.handler.server.deadline_s} s")
        self.sock.settimeout(left)
        n = self.sock.recv_into(buffer)
        if deadline is None and n:
            self.handler.start_deadline()
        return n


class DeadlineHandler(BaseHTTPRequestHandler):
    """A request handler whose requests each have a deadline and whose vanished clients end it quietly."""

    deadline = None

    def setup(self):
        super().setup()
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, self))

    def start_deadline(self):
        self.deadline = time.monotonic() + self.server.deadline_s

    def handle_one_request(self):
        self.deadline = None  # the next request's clock starts at its first byte
        super().handle_one_request()

    def parse_request(self):
        if self.deadline is None:  # its first line came in with the previous request's bytes
            self.start_deadline()
        return super().parse_request()

    def handle(self):
        try:
            super().handle()
        except CLIENT_GONE:
            pass

    def log_error(self, format, *args):
        if not format.startswith("Request timed out"):  # an idle keep-alive connection closing: routine
            super().log_error(format, *args)


class Server(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them; beyond that each new connection gets an
    immediate 503 with Retry-After, never a reset or a silent wait."""

    request_queue_size = BACKLOG
    daemon_threads = True

    def __init__(self, address, handler, max_connections: int = MAX_CONNECTIONS,
                 deadline_s: float = REQUEST_DEADLINE_S):
        self.deadline_s, self.max_connections = deadline_s, max_connections
        self.open_slots = threading.BoundedSemaphore(max_connections)
        self.refusal_slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if self.open_slots.acquire(blocking=False):
            super().process_request(request, client_address)
            return
        # Turning away takes a thread too, for at most LINGER_S; when even those are all busy, the accept loop
        # waits and new connections wait in the backlog.
        self.refusal_slots.acquire()
        threading.Thread(target=self.turn_away, args=(request,), daemon=True).start()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.open_slots.release()

    def turn_away(self, sock: socket.socket):
        """Answer 503, then read until the client closes (or LINGER_S): closing a socket with unread bytes
        sends a reset, which can destroy the answer before the client reads it."""
        try:
            sock.settimeout(LINGER_S)
            sock.sendall(busy_response(f"the server has {self.max_connections} connections open: retry shortly"))
            sock.shutdown(socket.SHUT_WR)
            until, drained = time.monotonic() + LINGER_S, 0
            while time.monotonic() < until and drained < 16 << 20:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        finally:
            sock.close()
            self.refusal_slots.release()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], CLIENT_GONE):
            super().handle_error(request, client_address)
