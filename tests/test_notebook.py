"""What a Keras student does in Jupyter, run in a real kernel (nbclient + ipykernel): load MNIST, train a preset
for one epoch with a callback of their own, read the history, evaluate, predict on a numpy batch and on a PNG
file, plot. The assertions read the executed notebook's outputs."""

import json

import nbformat
import pytest
from nbclient import NotebookClient

CELLS = [
    """import cnnlab, numpy as np
data = cnnlab.load_dataset("mnist", train_subset=1500, test_subset=300)
print(data.input_shape, len(data.train), len(data.test))""",
    """class EpochRecorder(cnnlab.callbacks.Callback):
    def __init__(self):
        self.epochs = []
    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((epoch, round(logs["val_accuracy"], 4)))

recorder = EpochRecorder()
run = cnnlab.train("mnist-cnn", epochs=1, train_subset=1500, test_subset=300, init="he_uniform",
                   run_dir="runs/notebook", callbacks=[recorder])""",
    """print(json.dumps({"recorded": recorder.epochs, "history": run.history["val_accuracy"]}))""",
    """ev = run.evaluate()
print(json.dumps({"accuracy": ev.accuracy, "loss": ev.loss}))""",
    """x = data.test.x[:10].numpy().transpose(0, 2, 3, 1) / 255.0   # as a Keras user holds images: N x 28 x 28 x 1
p = run.predict(x)
print(json.dumps({"predicted": [int(i) for i in p.indices], "true": data.test.y[:10].tolist()}))""",
    """from PIL import Image
Image.fromarray(data.test.x[0, 0].numpy()).resize((112, 112)).save("digit.png")
print(json.dumps({"png": run.predict("digit.png").classes[0], "true": data.classes[int(data.test.y[0])]}))""",
    """run.plot()""",
    """run""",
]


@pytest.fixture(scope="module")
def executed(real_data, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNLAB_DATA", str(real_data))  # the kernel inherits it
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import json")]
                                  + [nbformat.v4.new_code_cell(c) for c in CELLS])
    folder = tmp_path_factory.mktemp("notebook")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}},
                   ).execute()
    mp.undo()
    return nb.cells[1:]


def printed(cell) -> dict:
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def test_the_students_notebook(executed):
    load, train, history, evaluate, batch, png, plot, run = executed
    assert "(1, 28, 28) 1500 300" in load.outputs[0]["text"]
    epoch_lines = [line for o in train.outputs if o.get("name") == "stdout" for line in o["text"].splitlines()
                   if line.startswith("Epoch 1/1")]
    assert len(epoch_lines) == 1 and "val_accuracy" in epoch_lines[0]  # one line per epoch, whatever the bar does
    h = printed(history)
    assert h["recorded"] == [[0, round(h["history"][0], 4)]] and h["history"][0] > 0.5  # chance is 0.1
    e = printed(evaluate)
    assert 0.5 < e["accuracy"] <= 1 and e["loss"] > 0
    b = printed(batch)
    assert sum(p == t for p, t in zip(b["predicted"], b["true"])) >= 5
    assert printed(png)["png"] == printed(png)["true"]
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)  # a picture, not "<Figure size ...>"
    assert "text/html" in run.outputs[0]["data"] and "mnist-cnn" in run.outputs[0]["data"]["text/html"]
