"""`cnnlab serve`: one trained model behind a local web page and a small JSON API.

Routes are a fixed table, so nothing a client sends ever becomes a file path: the page is package data read
once at start and an upload is decoded from memory. Uploads are refused by size before they are read, by their
leading bytes before PIL parses them, and by pixel count (pictures.decode) before they are decoded.
Standard library only: http.server's handler on connections.Server (bounded, with deadlines), the model
loaded once, one picture decoded per core at a time and the model run on all waiting pictures at once (batching).
"""

import base64
import email.policy
import hashlib
import ipaddress
import json
import re
import sys
import threading
import time
import traceback
from email.parser import BytesParser
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

import torch

from cnnlab.core import __version__, devices
from cnnlab.core.errors import CnnlabError, one_line
from cnnlab.data import pictures
from cnnlab.serving import connections, predict
from cnnlab.serving.batching import Batcher, Busy
from cnnlab.serving.openapi import openapi

MAX_UPLOAD_BYTES = 8 << 20
MAX_PIXELS = pictures.MAX_PIXELS
MAX_K = 1000
MAX_BATCH = 4096  # pictures in one pass of the batcher: 4,096 at 224 px are 2.5 GB of float input

# Leading bytes of the formats `predict` reads. Anything else is refused before PIL sees it, so PIL's rarer
# parsers (EPS, which would start Ghostscript, among them) never run on a client's bytes.
SIGNATURES = [(b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"), (b"GIF87a", "GIF"),
              (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")]


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers=()):
        super().__init__(one_line(message))
        self.status, self.headers = status, list(headers)


def busy(message: str) -> HTTPError:
    return HTTPError(503, f"busy: {message}; retry shortly", [("Retry-After", "1")])


def image_kind(blob: bytes) -> str:
    if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP":
        return "WEBP"
    for magic, kind in SIGNATURES:
        if blob.startswith(magic):
            return kind
    raise HTTPError(415, "not an image: send the bytes of a PNG, JPEG, BMP, GIF, WebP or TIFF file")


def load_page():
    """The page's bytes and a Content-Security-Policy that allows exactly its own inline script and style."""
    html = (resources.files("cnnlab.serving") / "web" / "index.html").read_bytes()

    def hashes(tag):
        found = re.findall(rb"<%s>(.*?)</%s>" % (tag, tag), html, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(f).digest()).decode()}'" for f in found)

    csp = (f"default-src 'none'; script-src {hashes(b'script')}; style-src {hashes(b'style')}; "
           "img-src blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, csp


class App:
    """The model behind its batcher, what the page and API say about it, and one decoding slot per core."""

    def __init__(self, model_path: Path, max_batch: int = 64):
        self.model, self.about = predict.load_model(model_path)
        self.batcher = Batcher(self.model, max_batch)
        self.page, self.csp = load_page()
        self.slots = threading.BoundedSemaphore(devices.cores())
        self.info = {
            "classes": self.about["classes"], "input_shape": self.about["input_shape"],
            "dataset": self.about.get("dataset", ""),
            "drawable": self.about["input_shape"][0] == 1,  # single-channel models read MNIST-style drawings
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "max_upload_bytes": MAX_UPLOAD_BYTES, "max_pixels": MAX_PIXELS,
        }

    def classify(self, blob: bytes, k: int, deadline: float) -> list:
        """The top k of one upload, or an HTTPError; 503 when the picture cannot be answered by `deadline`."""
        kind = image_kind(blob)
        # At most one full-size decoded picture per core in memory, however many clients send one.
        if not self.slots.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise busy("every core is decoding")
        try:
            x = predict.prepare(blob, self.about["input_shape"], self.about.get("crop_to_aspect_ratio", False),
                                f"{kind} upload")
        except CnnlabError as e:
            raise HTTPError(422, str(e)) from None
        except (ValueError, OSError) as e:  # a decodable picture in a mode PIL cannot convert
            raise HTTPError(422, f"{kind} upload: cannot convert image ({type(e).__name__}: {e})") from None
        finally:
            self.slots.release()
        try:
            probs = self.batcher.submit(x).result(timeout=max(deadline - time.monotonic(), 0))
        except Busy as e:
            raise busy(str(e)) from None
        except TimeoutError:
            raise busy("the model did not get to this picture before the request's deadline") from None
        return predict.top_k(probs, self.about["classes"], k)


def uploaded_file(body: bytes, content_type: str) -> bytes:
    """The picture in a request: the body itself, or in a multipart form (curl -F file=@digit.png, requests'
    files=, a browser form) the first part that carries a file name, else the first part."""
    if not content_type.lower().startswith("multipart/form-data"):
        return body
    if "boundary=" not in content_type:
        raise HTTPError(400, "multipart/form-data without a boundary")
    form = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    parts = [part for part in form.iter_parts()] if form.is_multipart() else []
    if not parts:
        raise HTTPError(400, "the multipart form holds no part: send the image as a form field, e.g. -F file=@x.png")
    chosen = next((part for part in parts if part.get_filename()), parts[0])
    return chosen.get_payload(decode=True) or b""


def whole_number(text: str) -> int | None:
    """A client's number, in ASCII digits only: str.isdigit() also accepts '²', which int() then refuses, and
    int() itself accepts '٣' (Arabic-Indic three), ' 3' and '3_000'."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def top_k(query: str) -> int:
    values = parse_qs(query).get("k", ["5"])
    k = whole_number(values[0]) if len(values) == 1 else None
    if k is None or not 1 <= k <= MAX_K:
        raise HTTPError(400, f"k must be a whole number from 1 to {MAX_K}")
    return k


class Handler(connections.DeadlineHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's next request reuses its connection
    disable_nagle_algorithm = True  # headers and body go out as two writes: Nagle would hold the body ~40 ms

    def version_string(self):
        return f"cnnlab/{__version__}"

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, method: str):
        path, _, query = self.path.partition("?")
        methods = ROUTES.get(path)
        # A body left unread would be parsed as the next request on this connection: answer, then close it.
        self.unread_body = self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers
        try:
            if methods is None:
                raise HTTPError(404, "not found: the routes are /, /model, /openapi.json and POST /predict")
            if method not in methods:
                raise HTTPError(405, f"{path} answers {' and '.join(methods)} only")
            methods[method](self, query)
        except HTTPError as e:
            self.send_json(e.status, {"error": str(e)}, e.headers)
        except connections.CLIENT_GONE:
            raise  # nobody to answer: DeadlineHandler.handle ends the connection quietly
        except Exception:  # never a traceback to the client; the server's log keeps it
            sys.stderr.write(f"cnnlab serve: error on {method} {path}\n{traceback.format_exc()}")
            self.close_connection = True
            self.send_json(500, {"error": "internal error (the server's log has the details)"})

    def read_body(self) -> bytes:
        """The upload, its size checked against the limit before a byte of it is read."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            raise HTTPError(411, "send the image with a Content-Length header (chunked uploads are not accepted)")
        length = whole_number(length)
        if length is None:
            raise HTTPError(400, "Content-Length must be a whole number of bytes")
        if length > MAX_UPLOAD_BYTES:
            raise HTTPError(413, f"upload of {length} bytes is over the limit of {MAX_UPLOAD_BYTES >> 20} MiB")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise HTTPError(408, f"the upload was not complete within the request deadline of "
                                 f"{self.server.deadline_s:g} s") from None
        if not body or len(body) < length:
            raise HTTPError(400, "empty or incomplete upload: send the image's bytes as the request body")
        self.unread_body = False
        return body

    def send_bytes(self, status: int, body: bytes, content_type: str, extra=()):
        self.connection.settimeout(connections.IDLE_TIMEOUT_S)  # a client that stops reading the answer is let go
        self.send_response(status)
        self.close_connection = self.close_connection or getattr(self, "unread_body", True)
        for name, value in [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"), *extra]:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, obj, extra=()):
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", extra)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (malformed request line, unknown method) in JSON too, not its HTML page."""
        self.close_connection = True
        self.send_json(code, {"error": message or self.responses.get(code, ("error",))[0]})

    def log_message(self, format, *args):
        if not self.server.quiet:
            super().log_message(format, *args)


def get_page(handler: Handler, query: str):
    app = handler.server.app
    handler.send_bytes(200, app.page, "text/html; charset=utf-8",
                       [("Content-Security-Policy", app.csp), ("Referrer-Policy", "no-referrer")])


def get_model(handler: Handler, query: str):
    handler.send_json(200, handler.server.app.info)


def get_openapi(handler: Handler, query: str):
    handler.send_json(200, openapi(handler.server.app.info, MAX_K))


def post_predict(handler: Handler, query: str):
    k = top_k(query)
    blob = uploaded_file(handler.read_body(), handler.headers.get("Content-Type", ""))
    handler.send_json(200, {"top": handler.server.app.classify(blob, k, handler.deadline)})


ROUTES = {"/": {"GET": get_page}, "/model": {"GET": get_model}, "/openapi.json": {"GET": get_openapi},
          "/predict": {"POST": post_predict}}


class Server(connections.Server):
    app = None  # set once listening: a failed bind closes the server before

    def server_close(self):
        super().server_close()
        if self.app:
            self.app.batcher.close()


def make_server(model_path: Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False,
                max_connections: int = connections.MAX_CONNECTIONS, deadline_s: float = connections.REQUEST_DEADLINE_S,
                max_batch: int = 64):
    """A server ready to serve_forever(); port 0 picks a free port (server.server_address says which).
    max_batch 1 runs the model once per picture."""
    if not 0 <= port <= 65535:
        raise CnnlabError(f"port must be from 0 to 65535 (0: any free port), got {port}")
    if not 1 <= max_batch <= MAX_BATCH:
        raise CnnlabError(f"max_batch (--max-batch) must be from 1 to {MAX_BATCH}, got {max_batch}")
    app = App(Path(model_path), max_batch)  # first: a bad model file is reported before a port is taken
    try:
        server = Server((host, port), Handler, max_connections, deadline_s)
    except OSError as e:
        app.batcher.close()
        raise CnnlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    server.app, server.quiet = app, quiet
    return server


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(model_path: Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False, max_batch: int = 64):
    # One intra-op thread: the batcher's batches are small, the other cores decode the next pictures, and
    # intra-op threads stall whenever another process holds a core (measured: 250 ms instead of 2 ms under load).
    torch.set_num_threads(1)
    server = make_server(model_path, host, port, quiet, max_batch=max_batch)
    bound_host, bound_port = server.server_address[:2]
    info = server.app.info
    print(f"serving {model_path} ({info['dataset'] or 'model'}, {len(info['classes'])} classes) at "
          f"http://{bound_host}:{bound_port}/ - Ctrl-C to stop", flush=True)
    if not is_loopback(host):
        print(f"warning: listening on {host}: anyone who can reach this machine can use the page and API",
              flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
