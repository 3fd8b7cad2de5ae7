"""Hostile input and load, each case as it was found: many clients at once, slow and vanishing clients, FIFOs and
devices named as files, input nested deep enough to exhaust the stack, cnnlab's own bugs, and a run that
diverges after its last resume point was saved."""

import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab import cli
from cnnlab.core import checkpoints, config
from cnnlab.core.errors import CnnlabError
from cnnlab.models import presets, specs
from cnnlab.serving import serve
from conftest import ROOT
from conftest import cnnlab as run_cli


def one_line_exit_2(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """An untrained mnist-cnn: what a request costs does not depend on what the weights learned."""
    cfg = presets.preset("mnist-cnn")
    torch.manual_seed(0)
    model, _ = specs.build(cfg.layers, (1, 28, 28), 10, cfg.init)
    path = tmp_path_factory.mktemp("served") / "untrained.pt"
    checkpoints.save(path, {"config": config.to_dict(cfg), "epoch": 0, "model": model.state_dict(),
                            "about": {"classes": [str(d) for d in range(10)], "input_shape": [1, 28, 28],
                                      "dataset": "untrained"}})
    return path


@pytest.fixture
def start(model_file):
    servers = []

    def start_server(**limits) -> int:
        server = serve.make_server(model_file, port=0, quiet=True, **limits)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start_server
    for server in servers:
        server.shutdown()
        server.server_close()


def png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def ask(port: int, outcomes: list, n: int, go: threading.Barrier):
    """n requests on one keep-alive connection (a new one after the server closes it), each outcome recorded."""
    conn = None
    go.wait()
    for _ in range(n):
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/predict?k=3", png())
            r = conn.getresponse()
            answer = json.loads(r.read())
            outcomes.append((r.status, len(answer.get("top", [])), r.getheader("Retry-After")))
            if r.getheader("Connection") == "close":
                conn.close()
                conn = None
        except ConnectionError as e:
            outcomes.append(("reset", type(e).__name__, None))
            conn = None


def test_200_clients_at_once_are_answered_or_refused_never_reset(start):
    port, outcomes, clients = start(), [], 200
    go = threading.Barrier(clients)
    threads = [threading.Thread(target=ask, args=(port, outcomes, 2, go)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 400
    assert {o for o in outcomes if o[0] != 503} == {(200, 3, None)}, [o for o in outcomes if o[0] != 200][:5]
    assert all(o[2] == "1" for o in outcomes if o[0] == 503)


def test_connections_beyond_the_limit_get_503_with_json(start):
    port = start(max_connections=3)
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # open, silent: each holds a thread
    time.sleep(0.5)
    try:
        outcomes = []
        ask(port, outcomes, 1, threading.Barrier(1))
        assert outcomes == [(503, 0, "1")]
    finally:
        for s in held:
            s.close()
    time.sleep(0.5)
    outcomes = []
    ask(port, outcomes, 1, threading.Barrier(1))  # the slots are free again
    assert outcomes == [(200, 3, None)]


@pytest.mark.parametrize("number", ["k=%C2%B2", "k=%D9%A3", "k=3_0", "length \xb2", "length 1_000"])
def test_numbers_from_clients_are_ascii_digits_only(start, number):
    """'²' passes str.isdigit() and int() refuses it; int() takes '٣' (Arabic-Indic three) and '1_000'."""
    query, length = (number, str(len(png()))) if number.startswith("k=") else ("k=3", number.split(" ", 1)[1])
    s = socket.create_connection(("127.0.0.1", start()), timeout=30)
    s.sendall(f"POST /predict?{query} HTTP/1.1\r\nContent-Length: {length}\r\n\r\n".encode("latin-1") + png())
    answer = s.makefile("rb").read()
    s.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b'{"error": "k must be a whole number' in answer or b'{"error": "Content-Length must be' in answer


def trickle(port: int, head: bytes, every_s: float, limit_s: float) -> tuple:
    """Send `head`, then one body byte every `every_s`; (seconds until the server answered or closed, answer)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head)
    s.settimeout(every_s)
    began, answer = time.monotonic(), b""
    while time.monotonic() - began < limit_s:
        try:
            s.sendall(b"x")
        except OSError:
            break
        try:
            chunk = s.recv(4096)
            answer += chunk
            if not chunk:
                break
        except TimeoutError:
            continue
        except OSError:
            break
    s.close()
    return time.monotonic() - began, answer


def test_a_trickling_upload_meets_the_request_deadline(start):
    port = start(deadline_s=2)
    seconds, answer = trickle(port, b"POST /predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", 0.3, limit_s=20)
    assert seconds < 10, seconds  # per read it never stalls; only a whole-request deadline ends it
    assert answer.startswith(b"HTTP/1.1 408") and b'"error": "the upload was not complete' in answer


def test_trickling_headers_meet_the_request_deadline(start):
    port = start(deadline_s=2)
    seconds, answer = trickle(port, b"POST /predict HTTP/1.1\r\nX-Slow: ", 0.3, limit_s=20)
    assert seconds < 10, seconds
    assert answer == b""  # closed: a request whose headers never end gets no answer


def test_clients_that_go_away_leave_no_traceback(model_file):
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(model_file), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        port = int(proc.stdout.readline().split("http://", 1)[1].split("/")[0].rsplit(":", 1)[1])
        body = png()
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
            s.sendall(b"POST /predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            s.close()
        for _ in range(5):  # and half an upload, then gone
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /predict HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + body[:100])
            s.close()
        outcomes = []
        ask(port, outcomes, 1, threading.Barrier(1))
        assert outcomes == [(200, 3, None)]  # still serving
        time.sleep(1)
    finally:
        proc.terminate()
        _, log = proc.communicate(timeout=30)
    assert "Traceback" not in log and "Error" not in log, log[-3000:]


@pytest.mark.parametrize("make", ["fifo", "device"])
def test_a_fifo_or_device_named_as_a_file_is_refused(tmp_path, model_file, make):
    named = tmp_path / "picture.png"
    if make == "fifo":
        os.mkfifo(named)
    else:
        named = Path("/dev/zero")
    kind = "FIFO" if make == "fifo" else "character device"
    one_line_exit_2(run_cli("predict", model_file, named, timeout=60), f"image {named} is a {kind}")
    one_line_exit_2(run_cli("train", "mlp", "--data", named, "--runs", tmp_path / "runs", timeout=60),
                    f"--data {named} is a {kind}")
    if make == "fifo":
        config_fifo = tmp_path / "lab.toml"
        os.mkfifo(config_fifo)
        one_line_exit_2(run_cli("train", config_fifo, timeout=60), f"config {config_fifo} is a FIFO")
        run = tmp_path / "run"
        run.mkdir()
        (run / "config.toml").write_text(config.to_toml(presets.preset("mlp")))
        os.mkfifo(run / "last.pt")
        one_line_exit_2(run_cli("evaluate", run, timeout=60), "checkpoint", "is a FIFO")


def test_a_deeply_nested_config_is_one_line(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 2000 + "]" * 2000 + "\n")
    one_line_exit_2(run_cli("train", deep), "nested too deeply")
    one_line_exit_2(run_cli("train", "mlp", "--set", "x=" + "[" * 2000 + "]" * 2000), "nested too deeply")


def test_the_last_line_of_defence(capsys):
    assert cli.guarded(lambda: json.loads("{")) == 2  # a parser's ValueError: the input's fault
    assert capsys.readouterr().err.startswith("cnnlab: error: JSONDecodeError: ")
    assert cli.guarded(lambda: "\udcff".encode()) == 2

    def recurse(n):
        return recurse(n + 1)

    assert cli.guarded(recurse, 0) == 2
    assert capsys.readouterr().err.count("\n") == 2
    assert cli.guarded(lambda: {}["a bug"]) == 1  # anything else is cnnlab's own bug, with its traceback kept
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: internal error (KeyError: 'a bug')") and err.count("\n") == 1
    saved = Path(err.split("the traceback is in ")[1].split(",")[0])
    assert "Traceback" in saved.read_text() and "KeyError: 'a bug'" in saved.read_text()
    saved.unlink()


class BlowUp(cnnlab.callbacks.Callback):
    """A schedule gone wrong: from step 6 on the learning rate is 1e38, so the weights after step 6 are finite
    but give a NaN loss at step 7, after they were saved as the newest resume point."""

    def on_train_batch_end(self, batch, logs=None):
        if self.trainer.step == 5:
            self.trainer.lr = 1e38


def test_a_nan_stop_keeps_a_checkpoint_whose_loss_was_finite(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (640, 28, 28, 1), dtype=np.uint8), np.arange(640) % 10
    kwargs = dict(x=x, y=y, validation_data=(x[:64], y[:64]), epochs=2, batch_size=64, run_dir=tmp_path / "run",
                  autosave_seconds=1e-9, say=lambda *_: None)
    with pytest.raises(CnnlabError) as stop:
        cnnlab.train("mlp", callbacks=[BlowUp()], **kwargs)
    assert "loss became nan at epoch 1, step 7" in str(stop.value)
    assert "last.pt keeps the last weights whose loss was finite, from epoch 1, step 5" in str(stop.value)
    assert "--set optimizer.lr=0.001" in str(stop.value)
    kept = cnnlab.load_run(tmp_path / "run").evaluate("last")
    assert np.isfinite(kept.loss) and kept.epoch == 0
    with pytest.raises(CnnlabError, match="resuming from epoch 1, step 5 would diverge there again"):
        cnnlab.train("mlp", callbacks=[BlowUp()], **kwargs)
    run = cnnlab.train("mlp", optimizer__lr=0.001, **kwargs)  # a lower rate resumes from the kept point
    assert run.history["lr"] == [0.001, 0.001] and np.isfinite(run.evaluate("last").loss)
    assert not (tmp_path / "run" / "diverged.json").exists()


def test_a_run_that_diverges_at_once_explains_instead_of_repeating(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (200, 28, 28, 1), dtype=np.uint8),
             y_train=np.arange(200) % 10, x_test=np.zeros((20, 28, 28, 1), np.uint8), y_test=np.arange(20) % 10)
    args = ("train", "mlp", "--data", tmp_path / "d.npz", "--runs", tmp_path / "runs", "--name", "hot",
            "--set", "optimizer.lr=1e38", "--set", "autosave_seconds=1e-9")
    one_line_exit_2(run_cli(*args), "loss became nan at epoch 1, step 2", "no resume point had a finite loss")
    assert not (tmp_path / "runs" / "hot" / "last.pt").exists()  # its only save held the diverged weights
    one_line_exit_2(run_cli(*args), "hot diverged at epoch 1, step 2", "starting again would diverge there again",
                    "--set optimizer.lr=1e+37")


def test_a_reader_that_goes_away_is_no_error():
    """`cnnlab runs | head -1`: the pipe closes before the output ends; no error line, SIGPIPE's exit status."""
    writer = ("import sys; from cnnlab import cli; "
              "sys.exit(cli.guarded(lambda: [print('x' * 1000) for _ in range(1000)]))")  # beyond a pipe's buffer
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -c \"{writer}\" | head -c 10"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.stdout == "x" * 10 and r.stderr == "" and r.returncode == 141, (r.returncode, r.stderr[-500:])
