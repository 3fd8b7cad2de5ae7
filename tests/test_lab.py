"""`cnnlab lab`: the four networks on their real data sets (tiny subsets here) and one report that answers
every question of the lab with the run's own numbers."""

import re

import pytest

from cnnlab.data import sources
from cnnlab.experiments import lab, registry
from conftest import cnnlab


@pytest.fixture()
def cifar(real_data):
    path = real_data / sources.JPEG_COPY
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_quick_lab_answers_every_question(real_data, cifar, tmp_path, monkeypatch):
    # --quick's shape on fewer images, so the test takes seconds per network, not minutes.
    monkeypatch.setattr(lab, "QUICK", {name: {"epochs": 2, "train_subset": 600} for name in lab.LAB})
    monkeypatch.setattr(lab, "QUICK_TEST_SUBSET", 300)
    monkeypatch.setenv("CNNLAB_DATA", str(real_data))
    md, html, seconds = lab.run_lab(tmp_path, quick=True, say=lambda *_: None)
    text = md.read_text()
    for question in ("## Why 3072 inputs?", "## The designs", "## Are the MLPs over- or underfitting?",
                     "## What did going deeper and wider, with Adam, change?",
                     "## Why does a CNN beat a dense network on images?", "## The CNN on MNIST"):
        assert question in text
    assert "**3072** numbers" in text and "**3,146,752** parameters" in text  # 3072 x 1024 + 1024
    for name in ("mlp", "mlp-deep"):
        assert re.search(rf"\*\*{name}: (overfitting|underfitting|good fit)\.\*\*", text)
    assert re.search(r"cifar-cnn reaches \*\*\d+\.\d\d%\*\* test accuracy against the MLP's \*\*\d+\.\d\d%\*\*", text)
    assert "minutes** of training (every epoch of the four runs" in text
    page = html.read_text()
    assert page.count("data:image/png;base64,") >= 8 and 'src="http' not in page
    rows = registry.runs(tmp_path / registry.FILENAME)
    assert sorted(r["name"] for r in rows) == sorted(lab.LAB) and {r["status"] for r in rows} == {"finished"}
    # Running it again trains nothing and writes the same answers.
    md2, _, _ = lab.run_lab(tmp_path, quick=True, say=lambda *_: None)
    assert md2.read_text().split("## Why 3072")[1] == text.split("## Why 3072")[1]


def test_without_cifar_the_lab_says_what_it_needs(tmp_path):
    r = cnnlab("lab", "--quick", "--runs", tmp_path, env={"CNNLAB_DATA": str(tmp_path), "CNNLAB_CACHE": str(tmp_path)})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--cifar PATH" in r.stderr
