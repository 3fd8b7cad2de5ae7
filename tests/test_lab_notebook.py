"""examples/lab.ipynb in its quick mode, executed in a real Jupyter kernel (nbclient + ipykernel) as a student would
run it: every question answered from the run's numbers, every section's table beside the lab's figures, the
interrupted run resumed. The committed notebook (full mode, with its outputs) is checked for those outputs too."""

import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cnnlab.data import sources

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "lab.ipynb"
ANSWERS = [f"Answer {n}." for n in (1, 6, 7, 8, 9, 10, 11)]


def text_of(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", "") if o["output_type"] == "stream" else o.get("data", {}).get("text/markdown", "")
                     or o.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def outputs(nb) -> str:
    return "\n".join(text_of(c) for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def quick(real_data, tmp_path_factory):
    if not (real_data / sources.JPEG_COPY).is_file():
        pytest.skip("the CIFAR-10 JPEG copy is not here")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = "QUICK = True"
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNLAB_DATA", str(real_data))  # the kernel inherits it
    folder = tmp_path_factory.mktemp("lab-notebook")
    started = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    print(f"the quick lab notebook ran in {time.perf_counter() - started:.0f} s")
    mp.undo()
    return nb, folder


def check_answers(nb, quick: bool):
    out = outputs(nb)
    for answer in ANSWERS:
        assert answer in out, answer
    assert "Answer 1. Each image is 32 x 32 pixels x 3 colour channels = 3072 numbers" in out
    assert "3072 x 1024 weights + 1024 biases = 3,146,752 parameters" in out
    assert "Total params: 538,698" in out  # the lab's MNIST CNN, as Keras counts it
    assert len(re.findall(r"verdict: (overfitting|underfitting|good fit) \(", out)) == 3  # 3.2, 3.3, 5
    assert re.search(r"Test accuracy: 0\.9\d, loss: 0\.\d\d \(unrounded 0\.9\d{3}, ", out)
    assert re.search(r"epoch 1: val_loss \d\.\d{4} - improved \(best \d\.\d{4}, 0 of 10 epochs without\)", out)
    assert "resuming mnist-cnn-resume at epoch 2" in out and "interrupted" in out and "2 epochs in its history" in out
    assert re.search(r"Answer 11\. The CNN reaches \d+\.\d% test accuracy against \d+\.\d% \(3\.2\)", out)
    assert "CIFAR-10 (JPEG copy)" in out and "| 3.2 mlp | final training / validation accuracy" in out
    for section in ("3.2 mlp", "3.3 mlp-deep", "4.4 mnist-cnn", "5 cifar-cnn"):
        assert f"| {section} |" in out, section
    pictures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pictures == 3  # the curves of 3.2, 3.3 and 5
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert ("- quick" in out) == quick


def test_the_quick_lab_notebook_answers_every_question(quick):
    nb, folder = quick
    check_answers(nb, quick=True)
    for name in ("mlp", "mlp-deep", "mnist-cnn", "cifar-cnn"):  # the folders `cnnlab lab --quick` uses
        assert (folder / "runs" / "lab-quick" / name / "results.json").is_file()


def test_the_committed_notebook_is_the_executed_full_lab():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert parameters.source.startswith("QUICK = False")
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    check_answers(nb, quick=False)
    assert "after 50 epochs: training accuracy" in outputs(nb)  # the lab's 50 epochs of 3.2, not a subset
