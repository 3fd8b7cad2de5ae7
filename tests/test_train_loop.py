"""The loop's mechanics on a small slice of real MNIST: optimizers, Keras' legacy decay, resumable state."""

import io

import pytest
import torch

from cnnlab.core import checkpoints, config
from cnnlab.data import datasets
from cnnlab.data.datasets import Split
from cnnlab.models import specs
from cnnlab.training.callbacks import Callback, ProgressBar
from cnnlab.training.trainer import Trainer

TINY = [{"type": "conv2d", "filters": 4, "kernel": 3, "activation": "relu"}, {"type": "maxpool"},
        {"type": "flatten"}, {"type": "dropout", "rate": 0.2}, {"type": "dense", "units": "classes"}]


@pytest.fixture(scope="module")
def mnist_slice(real_data):
    ds = datasets.load("mnist", data_dir=str(real_data))
    return Split(ds.train.x[:256], ds.train.y[:256]), Split(ds.test.x[:200], ds.test.y[:200])


def make_trainer(tmp_path, data, **optimizer):
    cfg = config.from_dict({"layers": TINY, "epochs": 1, "batch_size": 32, "optimizer": optimizer})
    torch.manual_seed(0)
    model, _ = specs.build(cfg.layers, (1, 28, 28), 10)
    return Trainer(model, cfg, data[0], data[1], [], tmp_path)


def test_keras_legacy_decay_per_step(tmp_path, mnist_slice):
    t = make_trainer(tmp_path, mnist_slice, name="sgd", lr=0.1, decay=0.01)
    history = t.fit()
    assert t.step == 8
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / (1 + 0.01 * 7))  # the 8th step's rate
    assert history[-1]["lr"] == pytest.approx(0.1 / (1 + 0.01 * 8))


@pytest.mark.parametrize("optimizer", [
    {"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    {"name": "adam"}, {"name": "adamw", "weight_decay": 0.01}, {"name": "rmsprop", "momentum": 0.5},
])
def test_optimizer_state_survives_a_checkpoint(tmp_path, mnist_slice, optimizer):
    """Two epochs straight == one epoch, save, load into a new trainer, one more epoch."""
    straight = make_trainer(tmp_path / "a", mnist_slice, lr=1e-3, **optimizer)
    straight.cfg.epochs = 2
    straight.fit()
    first = make_trainer(tmp_path / "b", mnist_slice, lr=1e-3, **optimizer)
    first.fit()
    second = make_trainer(tmp_path / "b", mnist_slice, lr=1e-3, **optimizer)
    second.load_state_dict(checkpoints.load(tmp_path / "b" / "last.pt"))
    second.cfg.epochs = 2
    second.fit()
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.history == [dict(h, seconds=s["seconds"]) for h, s in zip(second.history, straight.history)]


def test_nan_loss_stops_with_the_epoch_and_step(tmp_path, mnist_slice):
    t = make_trainer(tmp_path, mnist_slice, name="sgd", lr=1e30)
    with pytest.raises(Exception, match=r"loss became (nan|inf) at epoch 1, step \d+"):
        t.fit()


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_only_and_one_line_per_epoch(tmp_path, mnist_slice, capsys):
    """A live bar where someone watches (a terminal); nothing but the epoch line in a pipe or a CI log."""
    for stream in (Tty(), io.StringIO()):
        t = make_trainer(tmp_path / str(type(stream).__name__), mnist_slice, name="sgd", lr=0.05)
        t.callbacks.append(ProgressBar(stream))
        t.callbacks[-1].set_trainer(t)
        t.fit()
        if isinstance(stream, Tty):
            assert "Epoch 1/1" in stream.getvalue() and f"/{t.steps_per_epoch}" in stream.getvalue()
        else:
            assert stream.getvalue() == ""
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * t.cfg.epochs and all(line.startswith("Epoch ") for line in lines)


class StopAt(Callback):
    """Raises KeyboardInterrupt at one step, as Ctrl-C would: a user callback sees every batch's end."""

    def __init__(self, epoch, step):
        self.at = (epoch, step)

    def on_train_batch_end(self, batch, logs=None):
        if (self.trainer.epoch, batch + 1) == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("ema", [{}, {"use_ema": True, "ema_momentum": 0.9}], ids=["plain", "ema"])
def test_mid_epoch_resume_is_bit_exact(tmp_path, mnist_slice, monkeypatch, ema):
    """Killed at step 5 of epoch 2 with a resume point after every step: the resumed run ends bit-identical
    (with use_ema, the moving average too: it is saved in the resume point)."""
    straight = make_trainer(tmp_path / "a", mnist_slice, name="sgd", lr=0.05, momentum=0.9, **ema)
    straight.cfg.epochs = 3
    straight.fit()

    killed = make_trainer(tmp_path / "b", mnist_slice, name="sgd", lr=0.05, momentum=0.9, **ema)
    killed.cfg.epochs, killed.cfg.autosave_seconds = 3, 1e-9
    killed.callbacks.append(StopAt(epoch=1, step=5))
    killed.callbacks[-1].set_trainer(killed)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    torch.manual_seed(12345)  # a new process would start from some other RNG state
    resumed = make_trainer(tmp_path / "b", mnist_slice, name="sgd", lr=0.05, momentum=0.9, **ema)
    resumed.cfg.epochs = 3
    resumed.load_state_dict(checkpoints.load(tmp_path / "b" / "last.pt"))
    assert (resumed.epoch, resumed.batch) == (1, 4)
    resumed.fit()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    def drop_seconds(hs):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in hs]
    assert drop_seconds(straight.history) == drop_seconds(resumed.history)


def test_use_ema_scores_saves_and_ends_with_the_moving_average(tmp_path, mnist_slice):
    """ema = 0.8 * ema + 0.2 * weights after each of the 8 steps, from the initial weights: the run ends with
    exactly that average, and its logged validation loss is the average's, not the last weights'."""
    trainer = make_trainer(tmp_path, mnist_slice, name="sgd", lr=0.05, momentum=0.9, use_ema=True, ema_momentum=0.8)
    expected = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    live = {}
    real_step = trainer.optimizer.step

    def step_and_record():  # observes the weights after each real step
        real_step()
        live.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
        for k, v in expected.items():
            v.copy_(0.8 * v + 0.2 * live[k] if v.is_floating_point() else live[k])
    trainer.optimizer.step = step_and_record
    history = trainer.fit()
    final = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(torch.allclose(final[k].float(), expected[k].float(), atol=1e-6) for k in final)
    assert not torch.allclose(final["5.weight"], live["5.weight"], atol=1e-4)  # the average is not the last weights
    assert trainer.evaluate(mnist_slice[1], fast=True).loss == pytest.approx(history[-1]["val_loss"], abs=1e-9)
    trainer.model.load_state_dict(live)
    assert trainer.evaluate(mnist_slice[1], fast=True).loss != pytest.approx(history[-1]["val_loss"], abs=1e-6)
    saved = checkpoints.load(tmp_path / "last.pt")  # the resume point keeps both
    assert torch.equal(saved["model"]["5.weight"], final["5.weight"].contiguous())
    assert torch.equal(saved["live_model"]["5.weight"], live["5.weight"].contiguous())


def test_a_last_batch_of_one_joins_the_previous_one(tmp_path, mnist_slice):
    """33 images at batch 32 with BatchNorm after a dense layer: one batch of 33, not a crash on a batch of 1."""
    layers = [{"type": "flatten"}, {"type": "dense", "units": 16}, {"type": "batchnorm"}, {"type": "dense", "units": "classes"}]
    cfg = config.from_dict({"layers": layers, "epochs": 1, "batch_size": 32})
    model, _ = specs.build(layers, (1, 28, 28), 10)
    t = Trainer(model, cfg, Split(mnist_slice[0].x[:33], mnist_slice[0].y[:33]), None, [], tmp_path)
    t.fit()
    assert t.step == 1


class Recorder(Callback):
    """A user's callback written with Keras' signatures, `logs` required everywhere."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs):
        self.calls.append(("train_begin", logs))

    def on_epoch_begin(self, epoch, logs):
        self.calls.append(("epoch_begin", epoch, logs))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs):
        self.calls.append(("train_end", logs))


def test_every_hook_gets_logs_as_in_keras(tmp_path, mnist_slice):
    t = make_trainer(tmp_path, mnist_slice, name="sgd", lr=0.05)
    t.cfg.epochs = 2
    recorder = Recorder()
    recorder.set_trainer(t)
    t.callbacks.append(recorder)
    history = t.fit()
    assert [c[0] for c in recorder.calls] == ["train_begin", "epoch_begin", "epoch_end", "epoch_begin", "epoch_end",
                                              "train_end"]
    assert recorder.calls[0][1] == {} and recorder.calls[1][1:] == (0, {}) and recorder.calls[3][1] == 1
    assert recorder.calls[4][2] == history[-1]
    assert recorder.calls[-1][1] == history[-1]  # on_train_end sees the last epoch's logs, as Keras' fit passes them
