"""The CLI is a shell over the Python API: train, evaluate, predict, report and export give the same results
either way, on the same run."""

import json

import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.core import checkpoints
from conftest import cnnlab as cli

SETTINGS = {"epochs": 1, "train_subset": 1500, "test_subset": 300}


@pytest.fixture(scope="module")
def two_runs(real_data, tmp_path_factory):
    """The same preset and settings trained once by `cnnlab train` and once by `cnnlab.train`."""
    root = tmp_path_factory.mktemp("cli-api")
    r = cli("train", "mnist-cnn", "--runs", root, "--name", "by-cli", "--epochs", 1, "--set", "train_subset=1500",
            "--set", "test_subset=300", env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    run = cnnlab.train("mnist-cnn", run_dir=root / "by-api", data_dir=str(real_data), say=lambda *_: None, **SETTINGS)
    return root / "by-cli", run


def test_train_gives_the_same_weights_and_scores(two_runs):
    by_cli, run = two_runs
    a, b = checkpoints.load(by_cli / "best.pt"), checkpoints.load(run.path / "best.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # bit for bit
    cli_result = json.loads((by_cli / "results.json").read_text())
    untimed = lambda final: {k: v for k, v in final.items() if k != "seconds"}  # noqa: E731
    assert cli_result["test"] == run.result["test"] and untimed(cli_result["final"]) == untimed(run.result["final"])
    assert run.result.test.accuracy == cli_result["test"]["accuracy"] and run.result.weights == cli_result["weights"]


def test_evaluate(two_runs, real_data):
    by_cli, run = two_runs
    r = cli("evaluate", run.path, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    e = run.evaluate(data_dir=str(real_data))
    assert f"test loss {e.loss:.4f}, test accuracy {e.accuracy:.4f}" in r.stdout
    per_class = [float(line.split()[-1]) for line in r.stdout.splitlines()[1:]]
    assert per_class == [round(a, 4) for a in e.per_class_accuracy]


def test_predict(two_runs, tmp_path):
    _, run = two_runs
    Image.new("L", (280, 280), 255).save(tmp_path / "blank.png")
    digit = cnnlab.load_dataset("mnist", test_subset=5).test.x[0, 0].numpy()
    Image.fromarray(digit).resize((84, 84)).save(tmp_path / "digit.png")
    r = cli("predict", run.path, tmp_path, "--json", "--top-k", 3)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == run.model().predict_files([tmp_path], top_k=3)
    p = run.predict([tmp_path / "blank.png", tmp_path / "digit.png"])
    assert [t["top"][0]["class"] for t in json.loads(r.stdout)] == p.classes
    assert [round(float(x), 6) for x in p.probabilities.max(1)] == [t["top"][0]["probability"]
                                                                  for t in json.loads(r.stdout)]


def test_report(two_runs, tmp_path, real_data):
    _, run = two_runs
    r = cli("report", run.path, "--out", tmp_path / "cli", env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    api = cnnlab.report(run, out=tmp_path / "api", data_dir=str(real_data))
    assert (tmp_path / "cli" / "report.md").read_text() == api.markdown.read_text()


def test_export(two_runs, tmp_path, real_data):
    _, run = two_runs
    r = cli("export", run.path, "--format", "torchscript", "--out", tmp_path / "cli.pt", "--check-images", 200,
            env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    api = run.export("torchscript", out=tmp_path / "api.pt", check_images=200, data_dir=str(real_data),
                     say=lambda *_: None)
    assert f"same top-1 on {api['top1_agreement']:.2%}" in r.stdout and f"{api['max_abs_diff']:.2e}" in r.stdout
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(torch.jit.load(tmp_path / "cli.pt")(x), torch.jit.load(tmp_path / "api.pt")(x))
