#!/usr/bin/env python3
"""Latency and throughput of `cnnlab serve` (POST /predict) and of predict.classify, a load test of many clients
connecting at once, then the API's answers to an oversized upload, a non-image and a 20000x20000 PNG bomb.

    .venv/bin/python scripts/bench_serve.py [--model runs/NAME|MODEL.pt] [--requests N] [--clients C]
                                            [--load 200x400,50x2000] [--max-batch 64,1] [--quick]

The load test starts C clients together (a barrier), each on its own keep-alive connection, N requests among
them; it counts what came back: 200, 503 (every answer must be JSON), resets and anything else.
The measurements run once per --max-batch value, each against its own server (1: no batching).

Without --model it times an untrained cifar-cnn (32x32x3, 10 classes, built here and saved in a temporary
folder): the time a request takes does not depend on what the weights learned. The server is `cnnlab serve`
started in a subprocess on loopback, as a user starts it; clients keep their connection open between requests.
"""

import argparse
import collections
import http.client
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.core import checkpoints, config
from cnnlab.data import pictures
from cnnlab.models import presets, specs
from cnnlab.serving import predict

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def untrained_cifar_cnn(folder: Path) -> Path:
    cfg = presets.preset("cifar-cnn")
    torch.manual_seed(0)
    model, _ = specs.build(cfg.layers, (3, 32, 32), 10, cfg.init)
    path = folder / "cifar-cnn-untrained.pt"
    checkpoints.save(path, {"config": config.to_dict(cfg), "epoch": 0, "model": model.state_dict(),
                            "about": {"classes": CIFAR_CLASSES, "input_shape": [3, 32, 32],
                                      "dataset": "untrained cifar-cnn"}})
    return path


def start_server(model: Path, max_batch: int):
    """`cnnlab serve MODEL --port 0`; (process, port) once it prints its address."""
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(model), "--port", "0", "--quiet",
                             "--max-batch", str(max_batch)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        sys.exit(f"bench_serve: the server did not start: {line!r}")
    return proc, int(line.split("http://", 1)[1].split("/")[0].rsplit(":", 1)[1])


def post(conn, body: bytes, headers=None):
    conn.request("POST", "/predict", body, headers or {})
    r = conn.getresponse()
    return r.status, r.read()


def timed_requests(port: int, body: bytes, n: int) -> list:
    """Seconds per request, n requests on one keep-alive connection."""
    conn, seconds = http.client.HTTPConnection("127.0.0.1", port, timeout=60), []
    for _ in range(n):
        start = time.perf_counter()
        status, _ = post(conn, body)
        seconds.append(time.perf_counter() - start)
        assert status == 200, status
    conn.close()
    return seconds


def percentiles(seconds: list) -> str:
    ms = np.array(seconds) * 1000
    return (f"p50 {np.percentile(ms, 50):.2f} ms  p99 {np.percentile(ms, 99):.2f} ms  "
            f"mean {ms.mean():.2f} ms  max {ms.max():.2f} ms")


def bench_api(port: int, body: bytes, requests: int, clients: int):
    timed_requests(port, body, max(5, requests // 20))  # warm-up: first calls allocate
    seconds = timed_requests(port, body, requests)
    print(f"POST /predict, 1 client, {requests} requests: {percentiles(seconds)}  "
          f"({requests / sum(seconds):.0f} req/s)")
    results, each = [None] * clients, requests // clients
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, timed_requests(port, body, each)))
               for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    every = [s for r in results for s in r]
    print(f"POST /predict, {clients} clients at once, {len(every)} requests: {len(every) / wall:.0f} req/s, "
          f"{percentiles(every)}")


def one_client(port: int, body: bytes, n: int, start: threading.Barrier, outcomes: list, seconds: list):
    conn = None
    start.wait()
    for _ in range(n):
        began = time.perf_counter()
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/predict?k=3", body, {"Content-Type": "image/png"})
            r = conn.getresponse()
            answer = json.loads(r.read())
            outcome = {200: "200", 503: "503"}.get(r.status, f"HTTP {r.status}")
            if outcome == "200" and len(answer["top"]) != 3:
                outcome = "200 without 3 classes"
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except ConnectionError as e:  # ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError
            outcome, conn = f"reset ({type(e).__name__})", None
        except (OSError, http.client.HTTPException, ValueError) as e:
            outcome, conn = f"other ({type(e).__name__})", None
        outcomes.append(outcome)
        seconds.append(time.perf_counter() - began)
    if conn:
        conn.close()


def load_test(port: int, body: bytes, clients: int, requests: int) -> collections.Counter:
    """`clients` clients connecting at the same moment, `requests` among them; the outcomes counted."""
    outcomes, seconds, start = [], [], threading.Barrier(clients + 1)
    threads = [threading.Thread(target=one_client, args=(port, body, requests // clients + (i < requests % clients),
                                                         start, outcomes, seconds)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    counts = collections.Counter(outcomes)
    shown = ", ".join(f"{counts.pop(k, 0)} x {k}" for k in ("200", "503")) + "".join(
        f", {n} x {k}" for k, n in counts.most_common())
    print(f"load: {clients} clients at once, {requests} requests in {wall:.2f} s ({requests / wall:.0f} req/s): "
          f"{shown}; latency {percentiles(seconds)}")
    return collections.Counter(outcomes)


def bench_in_process(model_path: Path, img: Image.Image, n: int):
    """predict.classify without HTTP, on one thread (as the server runs each request) and on all cores."""
    model, about = predict.load_model(model_path)
    for threads in sorted({1, len(os.sched_getaffinity(0))}):
        torch.set_num_threads(threads)
        for batch, repeats in ((1, n), (64, max(2, n // 20))):
            images = [img] * batch
            predict.classify(model, about, images, 5)  # warm-up
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                predict.classify(model, about, images, 5)
                seconds.append(time.perf_counter() - start)
            print(f"predict.classify in-process, {threads} thread(s), batch {batch}, {repeats} calls: "
                  f"{percentiles(seconds)}  ({batch * repeats / sum(seconds):.0f} images/s)")


def png_bomb(side: int) -> bytes:
    """A well-formed side x side grey PNG of zlib-compressed zero rows (tests/test_serve.py has the same)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z, row = zlib.compressobj(9), bytes(side + 1)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def show_refusals(port: int):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Length", str(9 << 20))
    conn.endheaders()  # the server must answer from the header alone
    r = conn.getresponse()
    print(f"oversized upload (Content-Length 9 MiB, body never sent): {r.status} {r.read().decode()}")
    conn.close()
    for what, body in (("non-image (text)", b"hello, this is not an image"),
                       ("20000x20000 PNG bomb", png_bomb(20000))):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        status, answer = post(conn, body)
        print(f"{what} ({len(body)} bytes): {status} {answer.decode()}")
        conn.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a run folder or model file (default: an untrained cifar-cnn)")
    p.add_argument("--requests", type=int, default=1000, help="POST /predict requests per measurement")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients for the throughput measurement")
    p.add_argument("--load", default="200x400,50x2000",
                   help="load tests, CLIENTSxREQUESTS, comma-separated (default 200x400,50x2000)")
    p.add_argument("--max-batch", default="64,1", help="server batch limits to measure, comma-separated (1: none)")
    p.add_argument("--quick", action="store_true", help="tiny counts: checks the script works, measures nothing")
    args = p.parse_args()
    requests = 20 if args.quick else min(max(args.requests, 1), 100_000)
    loads = [tuple(map(int, spec.split("x"))) for spec in ("8x16" if args.quick else args.load).split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(args.model) if args.model else untrained_cifar_cnn(Path(tmp))
        for max_batch in map(int, args.max_batch.split(",")):
            print(f"--- cnnlab serve --max-batch {max_batch}")
            measure(model_path, max_batch, requests, args.clients, loads, in_process=max_batch == 1)


def measure(model_path: Path, max_batch: int, requests: int, clients: int, loads: list, in_process: bool):
    proc, port = start_server(model_path, max_batch)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/model")
        info = json.loads(conn.getresponse().read())
        conn.close()
        channels, height, width = info["input_shape"]
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, channels), dtype=np.uint8)
        img = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
        out = io.BytesIO()
        img.save(out, "PNG")
        body = out.getvalue()
        print(f"model: {model_path.name} ({info['dataset']}, {width}x{height}x{channels}, "
              f"{len(info['classes'])} classes, {info['parameters']:,} parameters); "
              f"{len(os.sched_getaffinity(0))} cores; one {width}x{height} PNG of {len(body)} bytes")
        bench_api(port, body, requests, clients)
        for load_clients, load_requests in loads:
            load_test(port, body, load_clients, load_requests)
        if in_process:
            bench_in_process(model_path, pictures.decode(body, "png"), requests // 4)
            show_refusals(port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
