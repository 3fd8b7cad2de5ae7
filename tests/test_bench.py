"""The benchmark scripts run, at tiny sizes (their figures are measured by hand, never asserted: this machine
is shared and its timings are noise)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from cnnlab.core import devices
from conftest import ROOT


def run(*args, data=None, timeout=600):
    env = {**os.environ, **({"CNNLAB_DATA": str(data)} if data else {})}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def test_speed_bench_prints_the_side_by_side_table():
    r = run("bench/speed.py", "--presets", "mlp,mnist-cnn", "--steps", 3, "--repeats", 1)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "matrix-multiply peak" in lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("preset"))
    names = [c.strip() for c in lines[header].split("|")]
    rows = [dict(zip(names, (c.strip() for c in line.split("|")))) for line in lines[header + 2:header + 4]]
    assert [row["preset"] for row in rows] == ["mlp", "mnist-cnn"]
    for row in rows:
        def figure(column):
            return float(row[column].split("(")[0].replace(",", ""))
        ours, tf, jax, plain = (figure(c) for c in ("cnnlab default", "Keras-TF best (variant)",
                                                    "Keras-JAX best (variant)", "plain PyTorch"))
        assert min(ours, tf, jax, plain) > 0
        # bf16 is measured only where this CPU multiplies it natively (elsewhere cnnlab trains in fp32)
        assert (figure("cnnlab bf16") > 0) if devices.native_bf16() else row["cnnlab bf16"] == "-"
        # the ratios are of the printed figures: cnnlab's default over the faster Keras, and over the plain loop
        assert row["default / best Keras"] == f"{ours / max(tf, jax):.2f}x"
        assert row["default / plain PyTorch"] == f"{ours / plain:.2f}x"
        assert row["of peak"].endswith("%")
        assert 0 < int(row["GEMMs alone"].rstrip("%")) <= 150  # the GEMMs alone against the large GEMM's peak


def test_plain_pytorch_peer_trains_the_presets_networks():
    """The plain loop's networks have cnnlab's parameter counts and give one logit per class."""
    sys.path.insert(0, str(ROOT / "bench"))
    import torch_peer

    from cnnlab.models import presets, specs
    for name, shape in torch_peer.SHAPES.items():
        model, _ = torch_peer.build(name)
        cfg = presets.preset(name)
        _, infos = specs.build(cfg.layers, shape, 10, cfg.init)
        assert sum(p.numel() for p in model.parameters()) == sum(i.params for i in infos), name
        assert model(torch.zeros(2, *shape)).shape == (2, 10)
    r = run("bench/torch_peer.py", "mlp", "--steps", 2, "--repeats", 1)
    row = json.loads(r.stdout)
    assert r.returncode == 0 and row["variant"] == "plain loop" and row["images_per_s"] > 0


def test_keras_peer_builds_the_presets_with_cnnlab_parameter_counts():
    """The peer trains the same networks: Keras' parameter count equals cnnlab's summary for each preset."""
    code = ("import sys; sys.path.insert(0, 'bench'); import keras_peer as k; "
            "print({n: k.build(n)[0].count_params() for n in k.SHAPES})")
    r = run("-c", code)
    assert r.returncode == 0, r.stderr
    keras_counts = eval(r.stdout.strip().splitlines()[-1])
    from cnnlab.models import presets, specs
    for name, count in keras_counts.items():
        cfg = presets.preset(name)
        _, infos = specs.build(cfg.layers, (1, 28, 28) if name == "mnist-cnn" else (3, 32, 32), 10, cfg.init)
        assert count == sum(i.params + i.buffers for i in infos), name
    for backend in ("tensorflow", "jax"):
        r = subprocess.run([sys.executable, "bench/keras_peer.py", "mlp", "--steps", "2", "--variants", "fit,bf16"],
                           capture_output=True, text=True, cwd=ROOT, env={**os.environ, "KERAS_BACKEND": backend})
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        assert r.returncode == 0 and [row["variant"] for row in rows] == ["fit", "bf16"], r.stderr
        assert all(row["images_per_s"] > 0 and row["backend"] == backend for row in rows)


def test_speed_bench_refuses_an_unknown_preset_in_one_line():
    r = run("bench/speed.py", "--presets", "resnet50", "--no-keras")
    assert r.returncode == 1 and r.stderr.strip() == ("bench: unknown preset(s) resnet50; choose from mlp, "
                                                      "mlp-deep, mnist-cnn, cifar-cnn")


def test_speed_bench_on_a_device_that_is_not_here_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: scripts/gpu_check.sh runs the bench there")
    r = run("bench/speed.py", "--device", "cuda", "--presets", "mlp", "--steps", "2", "--repeats", "1")
    assert r.returncode == 1 and r.stderr.strip().startswith("bench: device cuda: ") and r.stderr.count("\n") == 1


def test_time_to_accuracy_reports_the_epoch_that_reached_the_target(real_data, tmp_path):
    r = run("bench/time_to_accuracy.py", "mnist-cnn", "--target", 0.5, "--out", tmp_path,
            "--set", "train_subset=1000", "--set", "test_subset=300", "--set", "epochs=3",
            "--set", "init=he_uniform", data=real_data)  # He: past 0.5 within 3 short epochs (glorot is not)
    assert r.returncode == 0, r.stderr
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert curve["reached"]["epoch"] == len(curve["curve"])  # it stopped at the first epoch over the target
    assert curve["reached"]["test_accuracy"] >= 0.5 and (tmp_path / "curve.png").stat().st_size > 1000
    assert f"reached 0.5 at {curve['reached']['wall_s']:.1f} s wall" in r.stdout
    r = run("bench/time_to_accuracy.py", "mnist-cnn", "--target", 1.01, "--out", tmp_path / "never",
            "--set", "train_subset=500", "--set", "test_subset=100", "--set", "epochs=1", data=real_data)
    assert r.returncode == 0 and "did not reach 1.01" in r.stdout


def test_step_gemms_are_a_training_steps_multiplies():
    """Forward, weight gradient and input gradient of each layer: three times the forward FLOPs (summary's
    count), less the input gradient the first layer never computes and, for cifar-fast's frozen whitening
    layer, its weight gradient too; its mirrored test-time pass is not part of a training step."""
    sys.path.insert(0, str(ROOT / "bench"))
    import speed

    from cnnlab.models import presets, specs
    for name, shape, batch in [("mnist-cnn", (1, 28, 28), 32), ("cifar-cnn", (3, 32, 32), 64),
                               ("cifar-fast", (3, 32, 32), 512)]:
        cfg = presets.preset(name)
        model, infos = specs.build(cfg.layers, shape, 10, cfg.init)
        first = next(i for i in infos if i.flops)
        skipped = 2 if name == "cifar-fast" else 1
        gemms = speed.step_gemms(model, shape, batch)
        forward = sum(i.flops for i in infos) * batch
        assert sum(2 * m * k * n for m, k, n in gemms) == 3 * forward - skipped * first.flops * batch, name
        assert len(gemms) == 3 * sum(1 for i in infos if i.flops) - skipped, name


def test_photo_folder_and_decode_bench_side_by_side(real_data, tmp_path):
    """make_photo_folder.py makes every odd kind of picture from the CIFAR-10 (JPEG copy); bench/decode.py reads
    the folder with cnnlab and with Keras and prints both rows: the same pictures, bar the undecodable ones."""
    r = run("scripts/make_photo_folder.py", tmp_path / "photos", "--count", 200,
            "--cifar", real_data / "cifar10-jpeg.tar.gz")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("200 pictures in 10 classes") and "rotated" in r.stdout, r.stdout
    r = run("bench/decode.py", tmp_path / "photos", "--image-size", 16)
    assert r.returncode == 0, r.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:] for line in r.stdout.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"cnnlab", "keras"}
    pictures = {side: int(cells[0].replace(",", "")) for side, cells in rows.items() if side in ("cnnlab", "keras")}
    assert 180 <= pictures["cnnlab"] <= 200 and pictures["keras"] == pictures["cnnlab"]
    assert "cnnlab / Keras throughput:" in r.stdout


def test_profile_step_splits_a_step_into_categories():
    r = run("bench/profile_step.py", "--presets", "mnist-cnn", "--precision", "fp32", "--steps", 2)
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if line.startswith("| preset"))
    row = next(line for line in r.stdout.splitlines() if line.startswith("| mnist-cnn"))
    names = [c.strip() for c in header.split("|")[1:-1]]
    cells = dict(zip(names, [c.strip() for c in row.split("|")[1:-1]]))
    step = float(cells["step ms"])
    parts = [float(cells[c]) for c in names[3:-2]]
    assert float(cells["matmul/conv"]) > 0 and abs(sum(parts) - step) <= 0.1 * step + 0.5  # the parts make the step
    assert 0 < int(cells["not multiplying"].rstrip("%")) < 100
    assert int(cells["page faults"]) >= 0
