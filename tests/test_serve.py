"""`cnnlab serve`: the JSON API in front of a small CNN trained on real MNIST, and what it refuses."""

import http.client
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.core.errors import CnnlabError
from cnnlab.data import datasets
from cnnlab.serving import predict, serve
from conftest import ROOT, cnnlab


@contextmanager
def running_server(model: Path):
    """`cnnlab serve MODEL --port 0` in a thread of this process; yields the port."""
    server = serve.make_server(model, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def png_bytes(pixels) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def png_bomb(side: int) -> bytes:
    """A well-formed side x side grey PNG of zlib-compressed zero rows: 20000 x 20000 pixels in 389 KB."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z, row = zlib.compressobj(9), bytes(side + 1)  # each row: filter byte 0, then the pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def served(real_data, small_cnn_run):
    run = small_cnn_run
    test = datasets.load("mnist", data_dir=str(real_data)).test
    with running_server(run) as port:
        yield port, run, test


def call(port, method, path, body=None, headers=None):
    """(status, headers, parsed JSON or raw bytes) of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, r.headers, json.loads(data) if r.headers["Content-Type"] == "application/json" else data
    finally:
        conn.close()


def test_model_describes_the_served_model(served):
    port, run, _ = served
    status, _, info = call(port, "GET", "/model")
    model, about = predict.load_model(run)
    assert status == 200
    assert info["classes"] == [str(d) for d in range(10)] and info["input_shape"] == [1, 28, 28]
    assert info["dataset"] == "mnist" and info["drawable"] is True
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["max_upload_bytes"] == serve.MAX_UPLOAD_BYTES


def test_openapi_document_describes_every_route(served):
    status, _, doc = call(served[0], "GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == set(serve.ROUTES)
    for path, methods in serve.ROUTES.items():
        assert set(doc["paths"][path]) == {m.lower() for m in methods}
    assert {"200", "400", "411", "413", "415", "422"} <= set(doc["paths"]["/predict"]["post"]["responses"])
    for ref in json.dumps(doc).split('"$ref": "#/components/schemas/')[1:]:
        assert ref.split('"')[0] in doc["components"]["schemas"]


def test_page_comes_with_a_policy_allowing_only_its_own_script(served):
    status, headers, page = call(served[0], "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for element in (b'id="file"', b'id="canvas"', b'id="bars"', b'id="top1"', b'id="classify-drawing"'):
        assert element in page
    csp = headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp


def test_the_server_answers_as_cnnlab_predict_does(served, tmp_path):
    port, run, test = served
    model, about = predict.load_model(run)
    for i in range(10):
        blob = png_bytes(test.x[i, 0].numpy())
        (tmp_path / f"{i}.png").write_bytes(blob)
        status, _, answer = call(port, "POST", "/predict", blob)
        expected = predict.classify_files(model, about, [tmp_path / f"{i}.png"], 5)[0]["top"]  # one picture alone
        assert status == 200 and len(answer["top"]) == 5
        assert [t["class"] for t in answer["top"]] == [t["class"] for t in expected]
        assert [t["probability"] for t in answer["top"]] == pytest.approx([t["probability"] for t in expected], abs=2e-6)
    status, _, answer = call(port, "POST", "/predict?k=3", png_bytes(test.x[0, 0].numpy()))
    assert status == 200 and len(answer["top"]) == 3


def test_concurrent_clients_get_the_same_answers(served):
    port, _, test = served
    blobs = [png_bytes(test.x[i, 0].numpy()) for i in range(4)]
    alone = [call(port, "POST", "/predict", blob)[2] for blob in blobs]
    together = [None] * 16

    def ask(i):
        together[i] = call(port, "POST", "/predict", blobs[i % 4])[2]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The same classes in the same order; the probabilities within a rounding step, as a picture batched with
    # others may go through other matrix kernels than one alone.
    for got, expected in zip(together, alone * 4):
        assert [t["class"] for t in got["top"]] == [t["class"] for t in expected["top"]]
        assert [t["probability"] for t in got["top"]] == pytest.approx([t["probability"] for t in expected["top"]],
                                                                         abs=2e-6)


def test_keep_alive_until_a_body_is_left_unread(served):
    port, _, test = served
    blob = png_bytes(test.x[0, 0].numpy())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(3):  # one connection, several answers
        conn.request("POST", "/predict", blob)
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["top"]
    conn.request("POST", "/predict?k=0", blob)  # refused before its body was read
    r = conn.getresponse()
    assert r.status == 400 and "k must be" in json.loads(r.read())["error"]
    assert r.headers["Connection"] == "close"
    conn.close()


@pytest.mark.parametrize("query", ["k=0", "k=abc", "k=1001", "k=2&k=3"])
def test_bad_k_is_a_400(served, query):
    status, _, answer = call(served[0], "POST", f"/predict?{query}", b"\x89PNG\r\n\x1a\n")
    assert status == 400 and "k must be" in answer["error"]


def test_oversized_upload_is_refused_without_reading_it(served):
    conn = http.client.HTTPConnection("127.0.0.1", served[0], timeout=30)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Length", str(100 << 20))
    conn.endheaders()  # and no body: an answer proves the server did not wait for 100 MiB
    r = conn.getresponse()
    answer = json.loads(r.read())
    conn.close()
    assert r.status == 413 and "over the limit of 8 MiB" in answer["error"]


def test_missing_content_length_is_a_411(served):
    conn = http.client.HTTPConnection("127.0.0.1", served[0], timeout=30)
    conn.putrequest("POST", "/predict")
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 411 and "Content-Length" in json.loads(r.read())["error"]
    conn.close()
    status, _, answer = call(served[0], "POST", "/predict", iter([b"\x89PNG"]), {"Transfer-Encoding": "chunked"})
    assert status == 411 and "chunked" in answer["error"]


@pytest.mark.parametrize("body, status, words", [
    (b"hello, this is not an image", 415, "not an image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n", 415, "not an image"),  # EPS would start Ghostscript: never handed to PIL
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, 422, "cannot decode image"),
    (b"", 400, "empty"),
])
def test_what_is_not_a_readable_image_gets_a_json_error(served, body, status, words):
    got, headers, answer = call(served[0], "POST", "/predict", body, {"Content-Length": str(len(body))})
    assert (got, headers["Content-Type"]) == (status, "application/json")
    assert words in answer["error"] and "\n" not in answer["error"] and "Traceback" not in answer["error"]


@pytest.mark.parametrize("side, words", [(20000, "too many pixels"), (9000, "9000x9000 pixels is too large")])
def test_png_bombs_are_refused_before_decoding(served, side, words):
    bomb = png_bomb(side)
    assert len(bomb) < serve.MAX_UPLOAD_BYTES  # within the byte limit: only the pixel count gives it away
    status, _, answer = call(served[0], "POST", "/predict", bomb)
    assert status == 422 and words in answer["error"]


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/index.html",
                                  "/web/index.html", "/cnnlab/serve.py", "/model/../../etc/passwd", "/predict/x"])
def test_no_path_from_a_client_reaches_the_filesystem(served, path):
    status, _, answer = call(served[0], "GET", path)
    assert status == 404 and "not found" in answer["error"]


def test_http_servers_own_errors_are_json_too(served):
    status, _, answer = call(served[0], "DELETE", "/model")
    assert status == 501 and answer["error"]
    status, _, answer = call(served[0], "GET", "/predict")
    assert status == 405 and "POST only" in answer["error"]
    for request, status in ((b"GET /a b HTTP/1.1", b"400"), (b"GET / HTTP/1.1\r\nX: " + b"x" * 70000, b"431")):
        with socket.create_connection(("127.0.0.1", served[0]), timeout=30) as s:
            s.sendall(request + b"\r\n\r\n")
            reply = s.makefile("rb").read()
        assert reply.startswith(b"HTTP/1.1 " + status) and json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]


def test_a_taken_port_or_a_missing_model_is_one_line(served, tmp_path):
    with pytest.raises(CnnlabError, match="cannot listen on 127.0.0.1"):
        serve.make_server(served[1], port=served[0])
    with pytest.raises(CnnlabError, match="port must be from 0 to 65535"):
        serve.make_server(served[1], port=70000)
    with pytest.raises(CnnlabError, match="max_batch .--max-batch. must be from 1 to 4096, got 0"):
        serve.make_server(served[1], max_batch=0)
    r = cnnlab("serve", served[1], "--max-batch", 5000)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "must be from 1 to 4096, got 5000" in r.stderr
    r = cnnlab("serve", tmp_path / "nothing-here", "--port", 0)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such run folder or model file" in r.stderr


def test_benchmark_script_runs_quickly():
    r = subprocess.run([sys.executable, ROOT / "scripts" / "bench_serve.py", "--quick"], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "p50" in r.stdout and "413" in r.stdout and "415" in r.stdout and "422" in r.stdout
    for max_batch in (64, 1):  # the load test against each server: all 16 answered, none reset
        section = r.stdout.split(f"--- cnnlab serve --max-batch {max_batch}")[1].split("---")[0]
        assert "load: 8 clients at once, 16 requests" in section and "16 x 200" in section, section
    assert "reset" not in r.stdout


def test_a_multipart_form_upload_is_classified_as_its_raw_bytes(served):
    """curl -F file=@digit.png and requests.post(files=...) send a multipart form: the same answer as the raw body."""
    port, _, test = served
    png = png_bytes(test.x[0, 0].numpy())
    raw = call(port, "POST", "/predict?k=3", png)
    boundary = "----cnnlab-test-boundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"digit.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    multipart = call(port, "POST", "/predict?k=3", form, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert raw[0] == multipart[0] == 200 and raw[2] == multipart[2] and len(raw[2]["top"]) == 3


def test_k_is_ascii_digits_only(served):
    port, _, test = served
    status, _, body = call(port, "POST", "/predict?k=%C2%B2", png_bytes(test.x[0, 0].numpy()))  # a superscript two
    assert status == 400 and "k must be a whole number" in body["error"]
