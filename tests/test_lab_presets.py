"""The lab's presets are the lab's code: every setting its cells write (and every Keras default those cells rely
on) read against the presets, the built models' layers against the cells' Keras layers, and the settings
`cnnlab lab` adds (sections 3 and 4 validate on the test set)."""

from pathlib import Path

import pytest
import torch.nn as nn

import cnnlab
from cnnlab.experiments import lab
from cnnlab.models import origins, presets, specs

NOTEBOOK = Path(__file__).resolve().parents[2] / "shared" / "lab" / "lab3-notebook.txt"

# Transcribed from the lab's code cells; Keras' defaults where a cell leaves a setting to them: SGD() is
# learning_rate 0.01, momentum 0, no decay, no nesterov; Adam is beta 0.9/0.999, epsilon 1e-7; EarlyStopping
# monitors val_loss, min_delta 0, restore_best_weights False; ModelCheckpoint(name) saves every epoch.
LAB_CODE = {
    "mlp": {"epochs": 50, "batch_size": 128, "optimizer.name": "sgd", "optimizer.lr": 0.01, "optimizer.momentum": 0,
            "optimizer.decay": 0, "optimizer.nesterov": False, "optimizer.weight_decay": 0, "init": "glorot_uniform",
            "early_stopping.enabled": False, "checkpoint.save_best_only": False, "label_smoothing": 0,
            "lr_schedule": "constant"},
    "mlp-deep": {"epochs": 100, "batch_size": 128, "optimizer.name": "adam", "optimizer.lr": 0.001,
                 "optimizer.beta1": 0.9, "optimizer.beta2": 0.999, "optimizer.epsilon": 1e-7, "init": "glorot_uniform",
                 "early_stopping.enabled": False, "checkpoint.save_best_only": False},
    "mnist-cnn": {"epochs": 5, "batch_size": 32, "optimizer.name": "sgd", "optimizer.lr": 0.01,
                  "optimizer.momentum": 0.7, "optimizer.nesterov": False, "init": "glorot_uniform",
                  "early_stopping.enabled": True, "early_stopping.monitor": "val_loss",
                  "early_stopping.min_delta": 0.001, "early_stopping.patience": 10,
                  "early_stopping.restore_best_weights": False, "checkpoint.save_best_only": False},
    "cifar-cnn": {"epochs": 100, "batch_size": 64, "val_split": 0.2, "validate_on": "val", "optimizer.name": "adam",
                  "optimizer.lr": 0.001, "optimizer.epsilon": 1e-7, "init": "glorot_uniform",
                  "early_stopping.enabled": True, "early_stopping.monitor": "val_loss", "early_stopping.min_delta": 0,
                  "early_stopping.patience": 10, "early_stopping.restore_best_weights": True,
                  "checkpoint.save_best_only": True, "checkpoint.monitor": "val_loss", "augment.flip": False,
                  "augment.translate": 0},
}
# The cells' layers, in order: (Keras layer, units or filters, kernel, padding) - Dense(10, softmax) is the
# logits (softmax is in the loss); MaxPooling2D is 2x2, stride 2; BatchNormalization momentum 0.99, eps 1e-3.
LAB_LAYERS = {
    "mlp": [("Flatten",), ("Dense", 1024), ("Dense", 10)],
    "mlp-deep": [("Flatten",), ("Dense", 1024), ("Dense", 512), ("Dense", 256), ("Dense", 10)],
    "mnist-cnn": [("Conv2D", 32, 5, "same"), ("MaxPooling2D",), ("Conv2D", 64, 5, "valid"), ("Conv2D", 128, 5, "valid"),
                  ("Conv2D", 64, 5, "valid"), ("MaxPooling2D",), ("Flatten",), ("Dense", 1024), ("Dropout", 0.1),
                  ("Dense", 10)],
    "cifar-cnn": [*(layer for f, rate in ((32, 0.3), (64, 0.5), (128, 0.5)) for layer in (
                      ("Conv2D", f, 3, "same"), ("BatchNormalization",), ("Conv2D", f, 3, "same"),
                      ("BatchNormalization",), ("MaxPooling2D",), ("Dropout", rate))),
                  ("Flatten",), ("Dense", 128), ("BatchNormalization",), ("Dropout", 0.5), ("Dense", 10)],
}
LAB_INPUT = {"mlp": (3, 32, 32), "mlp-deep": (3, 32, 32), "mnist-cnn": (1, 28, 28), "cifar-cnn": (3, 32, 32)}


def keras_layers(model: nn.Module) -> list:
    """The built model as the lab's Keras layers: ReLU is part of its conv or dense, as Keras' activation=."""
    out = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            out.append(("Conv2D", m.out_channels, m.kernel_size[0], "same" if m.padding != (0, 0) else "valid"))
        elif isinstance(m, nn.Linear):
            out.append(("Dense", m.out_features))
        elif isinstance(m, nn.MaxPool2d):
            assert (m.kernel_size, m.stride) in ((2, 2), ((2, 2), (2, 2)))
            out.append(("MaxPooling2D",))
        elif isinstance(m, nn.Dropout):
            out.append(("Dropout", m.p))
        elif isinstance(m, nn.Flatten):
            out.append(("Flatten",))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert m.momentum == pytest.approx(0.01) and m.eps == pytest.approx(1e-3)  # Keras' 0.99 and 1e-3
            out.append(("BatchNormalization",))
    return out


@pytest.mark.parametrize("name", lab.LAB)
def test_each_lab_preset_is_the_labs_code(name):
    cfg = presets.preset(name)
    assert {key: origins.setting(cfg, key) for key in LAB_CODE[name]} == LAB_CODE[name]
    model, _ = specs.build(cfg.layers, LAB_INPUT[name], 10, cfg.init)
    assert keras_layers(model) == LAB_LAYERS[name]
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):  # zero biases, glorot_uniform kernels: |w| <= sqrt(6/(in+out))
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            limit, widest = (6 / (fan_in + fan_out)) ** 0.5, float(m.weight.detach().abs().max())
            assert float(m.bias.detach().abs().max()) == 0 and 0.9 * limit < widest <= limit * (1 + 1e-6)  # not He's wider one


def test_the_lab_run_validates_where_the_labs_code_does():
    for name in ("mlp", "mlp-deep", "mnist-cnn"):  # fit(..., validation_data=(test_x, test_y))
        assert lab.lab_config(name, False, "").validate_on == "test"
    assert lab.lab_config("cifar-cnn", False, "").validate_on == "val"  # validation_split=0.2
    assert cnnlab.lab_settings("mlp", quick=True)["train_subset"] == lab.QUICK["mlp"]["train_subset"]


def test_every_lab_setting_says_where_it_comes_from():
    for name in lab.LAB:
        sources = {key: source for key, _, source in origins.origins(name, presets.preset(name))}
        for key in ("layers", "epochs", "batch_size", "optimizer.name", "optimizer.lr", "init",
                    "checkpoint.save_best_only", "val_split", "precision"):
            assert sources[key].startswith(("lab ", "Keras' default", "cnnlab")), (name, key)
    assert sources["val_split"].startswith("lab 5: fit(validation_split=0.2)")
    assert origins.origins("cifar-fast", presets.preset("cifar-fast")) == []  # not the lab's: no claim


@pytest.mark.skipif(not NOTEBOOK.is_file(), reason=f"{NOTEBOOK} not found")
def test_the_transcription_is_in_the_labs_notebook():
    text = NOTEBOOK.read_text()
    for code in ("optimizer=SGD()", "epochs = 50", "batch_size = 128", "Adam(learning_rate=0.001)", "epochs = 100",
                 "SGD(lr=0.01, momentum=0.7)", "EarlyStopping(min_delta=0.001, patience=10)", "batch_size=32",
                 "validation_split=0.2", "batch_size=64, epochs=100", "patience=10, verbose=1, restore_best_weights=True",
                 "save_best_only=True", "Dropout(0.1)", "Dropout(0.3)", "Dense(128, activation='relu')",
                 "validation_data=(x_test.reshape(-1, 32*32*3), y_test)", "validation_data=(test_x, test_y)"):
        assert code in text, code
    assert "kernel_initializer" not in text and "momentum=0.9" not in text  # Keras' default init; no momentum
