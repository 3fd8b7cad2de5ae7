"""`cnnlab export`: ONNX and TorchScript files that compute what PyTorch computes, on real MNIST test images."""

import json

import numpy as np
import onnxruntime
import pytest
import torch

from cnnlab.data import datasets
from cnnlab.serving import export, predict
from conftest import cnnlab


@pytest.fixture(scope="module")
def trained(real_data, mnist_cnn_run):
    return mnist_cnn_run, datasets.load("mnist", data_dir=str(real_data)).test


def pytorch_probabilities(run, x):
    model, _ = predict.load_model(run)
    with torch.inference_mode():
        return torch.softmax(model(x.float() / 255), 1).numpy()


def test_onnx_export_matches_pytorch_with_any_batch(trained, real_data):
    run, test = trained
    r = cnnlab("export", run, "--check-images", 300, env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    assert "checked on 300 mnist test images" in r.stdout and "same top-1 on 100.00%" in r.stdout
    assert r.stderr == ""  # the exporter's own chatter stays out of the user's console
    session = onnxruntime.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    info = json.loads(session.get_modelmeta().custom_metadata_map["cnnlab"])
    assert info["classes"] == [str(d) for d in range(10)] and info["input"]["dtype"] == "uint8"
    assert json.loads((run / "model.onnx.json").read_text()) == info
    for n in (1, 7):  # the batch axis is dynamic
        x = test.x[-n:]
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == (n, 10)
        assert np.abs(got - pytorch_probabilities(run, x)).max() <= export.MAX_PROB_DIFF


def test_torchscript_export_loads_without_cnnlab_code(trained, real_data):
    run, test = trained
    out = run.parent / "digits.ts"
    r = cnnlab("export", run, "--format", "torchscript", "--out", out, "--check-images", 100,
               env={"CNNLAB_DATA": real_data})
    assert r.returncode == 0, r.stderr
    files = {"cnnlab.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=files)
    assert json.loads(files["cnnlab.json"])["format"] == "torchscript"
    x = test.x[:50]
    with torch.inference_mode():
        assert np.abs(loaded(x).numpy() - pytorch_probabilities(run, x)).max() <= export.MAX_PROB_DIFF


def test_a_damaged_export_fails_its_check(trained):
    """The check runs the exported file itself: an export that disagrees with PyTorch is caught."""
    run, test = trained
    model, about = predict.load_model(run)
    wrapped = export.Classifier(model).eval()
    path = run.parent / "check.ts"
    torch.jit.save(torch.jit.trace(wrapped, test.x[:2]), str(path))
    good = export.check(path, "torchscript", wrapped, (test.x[:100], "mnist"))
    assert good["max_abs_diff"] == 0 and good["top1_agreement"] == 1
    with torch.no_grad():
        model[-1].bias += 5 * torch.arange(10.0)  # the file was traced before this: it now differs
    bad = export.check(path, "torchscript", wrapped, (test.x[:100], "mnist"))
    assert bad["max_abs_diff"] > export.MAX_PROB_DIFF


def test_bad_requests_get_one_line(tmp_path):
    r = cnnlab("export", tmp_path / "missing")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such run folder" in r.stderr
    r = cnnlab("export", tmp_path, "--format", "pickle")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
