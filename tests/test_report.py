"""`cnnlab report` on real runs: a small finished MNIST run, a run killed mid-training, and one that lost its
results.json. Every report must come out whole, with images embedded and nothing fetched from elsewhere."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from cnnlab.reports import facts, report
from conftest import ROOT, cnnlab

TINY = ["--set", 'layers=[{type="flatten"}, {type="dense", units=32, activation="relu"}, {type="dense", units="classes"}]',
        "--set", "train_subset=2000", "--set", "test_subset=500", "--set", "optimizer.lr=0.1"]


@pytest.fixture(scope="module")
def runs(real_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    env = {"CNNLAB_DATA": str(real_data)}
    r = cnnlab("train", "mlp", "--dataset", "mnist", "--epochs", 3, "--name", "small", "--runs", root, *TINY, env=env)
    assert r.returncode == 0, r.stderr
    # A run killed with SIGKILL (no chance to clean up) in the middle of training.
    p = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", "mlp", "--dataset", "mnist", "--epochs", "500",
                          "--name", "killed", "--runs", str(root), *TINY], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, cwd=ROOT, env={**os.environ, **env})
    for line in p.stdout:
        if line.startswith("Epoch 3/500"):
            p.send_signal(signal.SIGKILL)
            break
    p.communicate(timeout=60)
    # A run that finished its epochs but died before writing results.json.
    shutil.copytree(root / "small", root / "no-results")
    (root / "no-results" / "results.json").unlink()
    return root


def test_one_run_report(runs, tmp_path):
    md_path, html_path = report.write_report([runs / "small"], tmp_path)
    md, page = md_path.read_text(), html_path.read_text()
    assert "| Hyperparameter | What I used |" in md and "| Learning rate | 0.1 |" in md
    assert "## small — finished" in md and "ran all 3 epochs it was set to" in md
    assert re.search(r"### Fit verdict: (underfitting|good fit|overfitting)", md) and "Rule: Overfitting if" in md
    assert "#### Confusion matrix" in md and "| true \\ predicted | 0 | 1 |" in md
    for section in ("#### Per-class accuracy", "#### Most confused pairs", "#### Misclassified test images"):
        assert section in md
    counts = re.findall(r"\n\| (\d) \| (\d+) \| (\d+) \| 0\.\d{4} \|", md)  # class, training, test images
    assert "| Class | Training images | Test images | Accuracy |" in md and len(counts) == 10
    assert sum(int(train) for _, train, _ in counts) == 2000 and sum(int(test) for _, _, test in counts) == 500
    images = re.findall(r"\]\((report_images/[^)]+\.png)\)", md)
    assert len(images) == 3 and all((tmp_path / i).stat().st_size > 1000 for i in images)  # curves, matrix, errors
    assert page.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(?!data:)', page) and "http" not in page  # self-contained
    assert "<th>Hyperparameter</th>\n<th>What I used</th>" in page and "<table>" in page


def test_results_match_the_run(runs):
    s = facts.run_summary(runs / "small")
    result = json.loads((runs / "small" / "results.json").read_text())
    assert s.status == "finished" and s.epochs == 3 and s.test_accuracy == result["test"]["accuracy"]
    assert s.params == 784 * 32 + 32 + 33 * 10 and s.flops == 2 * (784 * 32 + 32 * 10)
    assert s.test_accuracy > 0.8 and s.sec_per_epoch > 0  # chance is 0.1
    info = facts.gather(runs / "small")
    assert sum(map(sum, info.test.confusion)) == 500


def test_crashed_runs_are_reported_as_crashed(runs, tmp_path):
    md_path, html_path = report.write_report([runs / "small", runs / "killed", runs / "no-results"], tmp_path,
                                             title="Three runs", intro_md="## Answers\n\nSee **below**.")
    md = md_path.read_text()
    assert md.startswith("# Three runs\n\n## Answers\n\nSee **below**.\n\n## Comparison")
    assert "## killed — crashed" in md and "crashed or interrupted after" in md and "of 500 epochs" in md
    assert "## no-results — crashed" in md and "after 3 of 3 epochs" in md
    killed = facts.run_summary(runs / "killed")
    assert killed.status == "crashed" and killed.epochs >= 3 and killed.test_accuracy is None
    table = md.split("## Comparison")[1].split("\n\n")[1]
    assert table.startswith("| Run | Preset |") and len(table.splitlines()) == 5
    assert "| killed | mlp | MNIST | crashed |" in table and " * |" in table  # scored here, not from results.json
    assert "comparison-curves.png" in md and html_path.read_text().count("data:image/png;base64,") == 10


def test_cli(runs, tmp_path, real_data):
    r = cnnlab("report", runs / "no-results", env={"CNNLAB_DATA": real_data})  # default: into the run's folder
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(runs / "no-results" / "report.md"), str(runs / "no-results" / "report.html")]
    bad = cnnlab("report", tmp_path)
    assert bad.returncode == 2 and "is not a run folder" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_a_run_being_trained_is_reported_as_running(runs):
    from cnnlab.core.locks import lock
    held = lock(runs / "killed")  # what a training process holds; the OS drops it when that process dies
    try:
        assert facts.run_summary(runs / "killed").status == "running"
    finally:
        held.close()
    assert facts.run_summary(runs / "killed").status == "crashed"


def test_html_follows_the_markdown(tmp_path):
    # as `cnnlab lab` writes its answers: a heading and its text on adjacent lines, blocks apart
    md = "## Why?\nBecause **3072** = 32 x 32 x 3.\n\n- one\n- two <b>\n\n| a | b | c |\n|---|---|---|\n| x | 1.5 | 2 |\n\n"
    page = report.to_html(md + "![gone](nowhere.png)\n", tmp_path, "t")
    assert "<h2>Why?</h2>\n<p>Because <strong>3072</strong> = 32 x 32 x 3.</p>" in page
    assert "<li>one</li>\n<li>two &lt;b&gt;</li>" in page  # the user's text is never markup
    assert "<td>x</td>\n<td>1.5</td>\n<td>2</td>" in page
    assert "[missing image: nowhere.png]" in page and "<img" not in page


def test_recipe_rows_name_each_training_choice():
    from cnnlab.models import presets
    cfg = presets.preset("cifar-fast")
    cfg.optimizer.use_ema, cfg.optimizer.ema_momentum, cfg.augment.blur = True, 0.98, 0.8
    rows = dict(facts.hyperparameters(cfg, 10, 1, 1))
    assert rows["Weight averaging"].startswith("moving average, momentum 0.98 per step")
    assert rows["Label smoothing"] == "0.2"
    assert "one-cycle: 3.5 epochs of warm-up" in rows["Learning rate"]
    assert rows["Augmentation"] == "left-right flips, shifts up to 2 px, Gaussian blur up to 0.8 px"
    plain = dict(facts.hyperparameters(presets.preset("mnist-cnn"), 10, 1, 1))
    assert "Weight averaging" not in plain and "Label smoothing" not in plain
