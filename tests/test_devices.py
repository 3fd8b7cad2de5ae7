"""Devices: which one a name means here and the one-line errors for those that are not here; the precision each
device kind gets (the selection logic, driven with capabilities, not fake GPUs); CPU results unchanged by the
device plumbing; checkpoints that hold no device; the GPU's reading rhythm (every READ_EVERY steps) still
stopping at the right step on a NaN; glibc keeping freed memory for the next step. The GPU itself is checked
by scripts/gpu_check.sh on a GPU machine."""

import json
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.core import checkpoints, devices
from cnnlab.core.errors import CnnlabError
from cnnlab.experiments import registry
from conftest import cnnlab as run_cli

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_names(name):
    assert devices.check_name(name) == name


@pytest.mark.parametrize("name", ["gpu", "tpu", "cuda:", "cuda:x", "CPU", "", "cuda:1234", 0])
def test_bad_device_names_are_refused(name):
    with pytest.raises(CnnlabError, match="device must be one of auto, cpu, cuda, cuda:N or mps"):
        devices.check_name(name)


def test_cpu_and_auto_here():
    assert devices.resolve("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if devices.mps_available() else "cpu"
    assert devices.resolve("auto").type == expected


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:3"])
def test_a_missing_gpu_is_one_line_and_exit_2(name):
    r = run_cli("train", "mlp", "--device", name)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"cnnlab: error: device {name}: " in r.stderr and "use --device cpu or auto" in r.stderr


@pytest.mark.skipif(devices.mps_available(), reason="this machine has MPS")
def test_missing_mps_is_one_line():
    with pytest.raises(CnnlabError, match="device mps: Apple's Metal backend is not available here"):
        devices.resolve("mps")


@pytest.mark.parametrize("kind, wanted, capability, cpu_bf16, chosen", [
    ("cpu", "auto", None, True, "bf16"),  # AVX512-BF16 or AMX
    ("cpu", "auto", None, False, "fp32"),  # emulated bf16 is slower than fp32
    ("cuda", "auto", (9, 0), False, "bf16"),  # Hopper
    ("cuda", "auto", (8, 0), False, "bf16"),  # Ampere: native bf16
    ("cuda", "auto", (7, 5), False, "fp16"),  # Turing: fast fp16 only
    ("cuda", "auto", (7, 0), False, "fp16"),  # Volta
    ("cuda", "auto", (6, 1), False, "fp32"),  # Pascal: neither
    ("mps", "auto", None, False, "fp32"),
    ("cuda", "fp32", (9, 0), False, "fp32"),  # what the config asks for wins
    ("cpu", "bf16", None, False, "bf16"),
    ("cuda", "fp16", (8, 6), False, "fp16"),
])
def test_precision_by_device_and_capability(kind, wanted, capability, cpu_bf16, chosen):
    assert devices.choose_precision(kind, wanted, capability, cpu_bf16) == chosen


def test_gradient_scaler_by_device_and_precision():
    assert devices.scaler_settings("cpu", "bf16") is None and devices.scaler_settings("mps", "fp16") is None
    assert devices.scaler_settings("cuda", "fp16") == {}  # dynamic loss scale
    for precision in ("bf16", "fp32"):  # a scale of 1 that never grows: the update is the unscaled one
        assert devices.scaler_settings("cuda", precision) == {"init_scale": 1.0, "growth_interval": 2 ** 30}
    scaler = torch.amp.GradScaler("cpu", **devices.scaler_settings("cuda", "bf16"))
    assert scaler.get_scale() == 1.0


def arrays(n=320, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), np.arange(n) % 10


@pytest.mark.skipif(devices.resolve("auto").type != "cpu", reason="auto is a GPU here")
def test_device_cpu_and_auto_train_the_same_weights_and_say_so(tmp_path):
    x, y = arrays()
    runs = {d: cnnlab.train("mnist-cnn", x=x, y=y, validation_data=(x[:64], y[:64]), epochs=1, device=d,
                            run_dir=tmp_path / d, say=lambda *_: None) for d in ("cpu", "auto")}
    weights = {d: checkpoints.load(tmp_path / d / "last.pt")["model"] for d in runs}
    assert all(torch.equal(weights["cpu"][k], weights["auto"][k]) for k in weights["cpu"])
    result = json.loads((tmp_path / "cpu" / "results.json").read_text())
    assert result["device"] == "cpu" and result["precision"] in ("bf16", "fp32")
    recorded = {r["name"]: r["device"] for r in registry.runs(tmp_path / registry.FILENAME)}
    assert recorded == {"cpu": f"cpu {result['precision']}", "auto": f"cpu {result['precision']}"}
    # the device is not part of what a resume must match: a GPU run resumes on a CPU-only machine
    more = cnnlab.train("mnist-cnn", x=x, y=y, validation_data=(x[:64], y[:64]), epochs=2, device="cpu",
                        run_dir=tmp_path / "auto", say=lambda *_: None)
    assert len(more.history["loss"]) == 2


def test_checkpoints_hold_no_device(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3).to(memory_format=torch.contiguous_format)}, "epoch": 1}
    checkpoints.save(tmp_path / "x.pt", state)
    header = (tmp_path / "x.pt").read_bytes()[8:8 + int.from_bytes((tmp_path / "x.pt").read_bytes()[:8], "little")]
    assert b"cpu" not in header and b"cuda" not in header and b"device" not in header
    loaded = checkpoints.load(tmp_path / "x.pt")
    assert loaded["model"]["w"].device.type == "cpu" and torch.equal(loaded["model"]["w"], state["model"]["w"])


class ReadLikeAGpu(cnnlab.callbacks.Callback):
    """The host reads the losses every 7 steps, as on a CUDA GPU; from step 8 on the learning rate is 1e38."""

    def on_train_begin(self, logs=None):
        self.trainer.read_every = 7

    def on_train_batch_end(self, batch, logs=None):
        if self.trainer.step == 7:
            self.trainer.lr = 1e38


def test_reading_every_few_steps_still_stops_at_the_first_nan_step(tmp_path):
    x, y = arrays(1280)
    with pytest.raises(CnnlabError) as stop:
        cnnlab.train("mlp", x=x, y=y, validation_data=(x[:64], y[:64]), epochs=1, batch_size=64,
                     autosave_seconds=1e-9, callbacks=[ReadLikeAGpu()], run_dir=tmp_path / "run", say=lambda *_: None)
    # read at step 7 (saved), lr raised; step 8 updates with it; step 9's loss (from step 8's weights) is NaN,
    # seen at the read of step 14: named step 9, and the resume point of step 7 kept
    assert "loss became nan at epoch 1, step 9" in str(stop.value), stop.value
    assert "from epoch 1, step 7" in str(stop.value)
    assert np.isfinite(cnnlab.load_run(tmp_path / "run").evaluate("last").loss)


@pytest.mark.parametrize("reduction, smoothing", [("mean", 0.0), ("sum", 0.0), ("mean", 0.2), ("sum", 0.1)])
def test_the_deterministic_cross_entropy_is_f_cross_entropy(reduction, smoothing):
    """What a CUDA run in deterministic mode computes its loss with, against F.cross_entropy: values and gradients."""
    from cnnlab.models import inference
    torch.manual_seed(0)
    logits, y = torch.randn(64, 10, requires_grad=True, dtype=torch.float64), torch.randint(0, 10, (64,))
    ours = inference.one_hot_cross_entropy(logits, y, reduction, smoothing)
    theirs = torch.nn.functional.cross_entropy(logits, y, reduction=reduction, label_smoothing=smoothing)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    assert torch.allclose(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(theirs, logits)[0], atol=1e-12)
    assert inference.cross_entropy(logits, y, reduction, smoothing).item() == theirs.item()  # on a CPU: F's own


FAULTS = """
import resource, sys, torch
from cnnlab.core import devices
if sys.argv[1] == "keep":
    assert devices.keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for round in range(6):  # 16 activations of 4 MiB written, then all freed, as a training step does
    if round == 1:
        start = faults()
    batch = [torch.ones(1 << 20) for _ in range(16)]
    del batch
print((faults() - start) / 5)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt: Linux with glibc only")
def test_freed_memory_is_reused_without_page_faults(tmp_path):
    """After the first round the same 64 MiB of tensors lands on pages already mapped (about 200 page faults a
    round), where by default glibc returns the memory and a round faults up to its 16,384 pages in again."""
    script = tmp_path / "faults.py"
    script.write_text(FAULTS)
    per_round = {mode: float(subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True,
                                            check=True).stdout) for mode in ("default", "keep")}
    assert per_round["default"] > 2000, per_round  # 3,500 or 16,400 here, as glibc's own thresholds move
    assert per_round["keep"] < 500, per_round
