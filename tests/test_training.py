"""Training end to end on the real data (small seeded subsets), through the CLI a user types."""

import json
import os
import signal
import subprocess
import sys

import pytest

from cnnlab.core import checkpoints
from conftest import ROOT, cnnlab, picture_folder

QUICK = ["--set", "train_subset=1500", "--set", "test_subset=500"]


def metrics(run):
    return (run / "metrics.csv").read_text().splitlines()


def test_mnist_cnn_learns_and_writes_its_run_folder(real_data, tmp_path):
    r = cnnlab("train", "mnist-cnn", "--runs", tmp_path, "--epochs", 2, "--set", "train_subset=4000",
               "--set", "test_subset=1000", env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    run = tmp_path / "mnist-cnn"
    result = json.loads((run / "results.json").read_text())
    assert result["test"]["accuracy"] > 0.8 and result["verified"]  # chance is 0.1
    assert {"config.toml", "metrics.csv", "last.pt", "best.pt", "results.json", "curves.png"} <= {
        p.name for p in run.iterdir()}
    assert metrics(run)[0] == "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds" and len(metrics(run)) == 3
    assert "Epoch 2/2" in r.stdout and "test accuracy" in r.stdout
    # the written config re-runs: same run, nothing left to do
    again = cnnlab("train", run / "config.toml", "--runs", tmp_path, "--name", "mnist-cnn",
                   env={"CNNLAB_DATA": real_data})
    assert again.returncode == 0 and "already finished" in again.stdout
    ev = cnnlab("evaluate", run, env={"CNNLAB_DATA": real_data})
    assert ev.returncode == 0 and "test accuracy" in ev.stdout and len(ev.stdout.splitlines()) == 11


def test_same_seed_same_metrics(real_data, tmp_path):
    args = ["train", "mnist-cnn", "--runs", tmp_path, "--epochs", 1, *QUICK]
    a = cnnlab(*args, "--name", "a", env={"CNNLAB_DATA": real_data})
    b = cnnlab(*args, "--name", "b", env={"CNNLAB_DATA": real_data})
    assert a.returncode == b.returncode == 0
    def strip(rows):
        return [r.rsplit(",", 1)[0] for r in rows]  # all but the seconds column
    assert strip(metrics(tmp_path / "a")) == strip(metrics(tmp_path / "b"))


def test_ctrl_c_then_same_command_resumes_exactly(real_data, tmp_path):
    env = {**os.environ, "CNNLAB_DATA": str(real_data)}
    args = [sys.executable, "-m", "cnnlab", "train", "mnist-cnn", "--runs", str(tmp_path), "--epochs", "4", *QUICK]
    whole = subprocess.run(args + ["--name", "whole"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert whole.returncode == 0, whole.stderr
    # A shell started without job control (CI, nohup, `&`) ignores SIGINT in its children: restore Ctrl-C.
    p = subprocess.Popen(args + ["--name", "cut"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env, cwd=ROOT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in p.stdout:
        if line.startswith("Epoch 2/4"):
            p.send_signal(signal.SIGINT)  # Ctrl-C during epoch 3
            break
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 130 and "run the same command to resume" in out
    assert checkpoints.load(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed = subprocess.run(args + ["--name", "cut"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert resumed.returncode == 0 and "resuming cut at epoch 3" in resumed.stdout
    def strip(rows):
        return [r.rsplit(",", 1)[0] for r in rows]
    assert strip(metrics(tmp_path / "cut")) == strip(metrics(tmp_path / "whole"))


def test_extend_a_finished_run(real_data, tmp_path):
    base = ["train", "mnist-cnn", "--runs", tmp_path, *QUICK]
    assert cnnlab(*base, "--epochs", 1, env={"CNNLAB_DATA": real_data}).returncode == 0
    r = cnnlab(*base, "--epochs", 2, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0 and "extending mnist-cnn from epoch 1 to 2" in r.stdout and "Epoch 1/2" not in r.stdout
    assert len(metrics(tmp_path / "mnist-cnn")) == 3


def test_changed_settings_on_an_existing_run_are_refused(real_data, tmp_path):
    base = ["train", "mnist-cnn", "--runs", tmp_path, "--epochs", 1, *QUICK]
    assert cnnlab(*base, env={"CNNLAB_DATA": real_data}).returncode == 0
    before = (tmp_path / "mnist-cnn" / "last.pt").read_bytes()
    r = cnnlab(*base, "--set", "optimizer.lr=0.5", env={"CNNLAB_DATA": real_data})
    assert r.returncode == 2 and "optimizer.lr: 0.01 -> 0.5" in r.stderr and "--fresh" in r.stderr
    assert (tmp_path / "mnist-cnn" / "last.pt").read_bytes() == before


def test_second_writer_is_refused(real_data, tmp_path):
    from cnnlab.core.locks import lock
    held = lock(tmp_path / "mnist-cnn")
    r = cnnlab("train", "mnist-cnn", "--runs", tmp_path, *QUICK, env={"CNNLAB_DATA": real_data})
    held.close()
    assert r.returncode == 2 and "being trained by another process" in r.stderr


def test_image_folder_zip_trains_with_a_toml_config(tmp_path):
    import zipfile
    root = picture_folder(tmp_path / "shapes", classes=("a", "b", "c"), per_class=10, size=(12, 12))
    with zipfile.ZipFile(tmp_path / "shapes.zip", "w") as z:
        for f in root.rglob("*.png"):
            z.write(f, f.relative_to(tmp_path).as_posix())
    (tmp_path / "tiny.toml").write_text(f'''
data = "{tmp_path / 'shapes.zip'}"
epochs = 2
batch_size = 8
val_split = 0.2
layers = [{{ type = "conv2d", filters = 4, kernel = 3, padding = "same", activation = "relu" }},
          {{ type = "maxpool", size = 2 }}, {{ type = "flatten" }}, {{ type = "dense", units = "classes" }}]
[optimizer]
name = "rmsprop"
lr = 0.001
[reduce_lr]
enabled = true
patience = 1
''')
    r = cnnlab("train", tmp_path / "tiny.toml", "--runs", tmp_path / "runs")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "runs" / "tiny-shapes" / "results.json").read_text())
    assert result["classes"] == ["a", "b", "c"] and not result["verified"] and result["epochs_run"] == 2


@pytest.mark.parametrize("args, message", [
    (["train", "resnet"], "unknown preset 'resnet'"),
    (["train", "mlp", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "mlp", "--set", "optimizer.momentun=0.9"], "unknown config key"),
    (["train", "mlp", "--set", "batch_size=-3"], "batch_size must be an integer > 0"),
    (["train", "mlp", "--set", "epochs=2.5"], "epochs must be an integer"),
    (["train", "missing.toml"], "cannot read config missing.toml"),
    (["train", "mlp", "--data", "/no/such/folder"], "no such file or folder"),
    (["evaluate", "/no/such/run"], "/no/such/run is not a run folder"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    r = cnnlab(*args, "--runs", tmp_path) if args[0] == "train" else cnnlab(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_model_that_does_not_fit_the_data(tmp_path):
    picture_folder(tmp_path / "tiny", size=(6, 6))
    r = cnnlab("train", "mnist-cnn", "--data", tmp_path / "tiny", "--runs", tmp_path / "runs")
    assert r.returncode == 2 and "needs at least 5x5 input" in r.stderr and "Traceback" not in r.stderr


def test_summary_prints_keras_totals():
    r = cnnlab("summary", "cifar-cnn")
    assert r.returncode == 0 and "Trainable params: 551,722" in r.stdout and "Total params: 552,874" in r.stdout


def test_run_name_must_be_a_plain_folder_name(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    r = cnnlab("train", "mnist-cnn", "--runs", tmp_path / "runs", "--name", "..", "--fresh")
    assert r.returncode == 2 and "plain folder name" in r.stderr and (tmp_path / "keep.txt").exists()


def test_fresh_with_a_bad_model_keeps_the_old_run(real_data, tmp_path):
    base = ["train", "mnist-cnn", "--runs", tmp_path, "--epochs", 1, *QUICK]
    assert cnnlab(*base, env={"CNNLAB_DATA": real_data}).returncode == 0
    r = cnnlab(*base, "--fresh", "--set", 'layers=[{type="dense", units=10}]', env={"CNNLAB_DATA": real_data})
    assert r.returncode == 2 and "needs a flat input" in r.stderr
    assert checkpoints.load(tmp_path / "mnist-cnn" / "last.pt")["epoch"] == 1


def test_rerunning_a_finished_run_changes_nothing(real_data, tmp_path):
    base = ["train", "mnist-cnn", "--runs", tmp_path, "--epochs", 1, *QUICK]
    assert cnnlab(*base, env={"CNNLAB_DATA": real_data}).returncode == 0
    run = tmp_path / "mnist-cnn"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    r = cnnlab(*base, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0 and "already finished at epoch 1: test accuracy" in r.stdout
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_usage_errors_are_one_line():
    r = cnnlab("train")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "target" in r.stderr
