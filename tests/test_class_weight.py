"""Keras' class_weight: the weights "auto" gives, a mapping by class name or index, and what they do to training."""

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.core.errors import CnnlabError
from cnnlab.models import presets
from cnnlab.training.class_weight import class_weights


def test_auto_is_inverse_frequency_averaging_one_per_image():
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    w = class_weights("auto", y, ["a", "b", "c"], 3)
    assert torch.allclose(w, torch.tensor([6 / 9, 6 / 3, 6 / 6]))
    assert torch.isclose(w[y].mean(), torch.tensor(1.0))  # the loss keeps its scale
    assert class_weights("", y, None, 3) is None


def test_a_mapping_names_classes_by_name_or_index():
    y = torch.tensor([0, 1, 2])
    assert class_weights({"cat": 5.0, "2": 0.5}, y, ["cat", "dog", "owl"], 3).tolist() == [5.0, 1.0, 0.5]
    with pytest.raises(CnnlabError, match="'cow', which is not a class; the classes are cat, dog, owl"):
        class_weights({"cow": 2.0}, y, ["cat", "dog", "owl"], 3)
    with pytest.raises(CnnlabError, match="weight 0"):
        class_weights({"cat": 0, "dog": 0, "owl": 0}, y, ["cat", "dog", "owl"], 3)


@pytest.mark.parametrize("value, message", [("balanced", "must be \"auto\""), ({"a": -1}, "0 or more")])
def test_bad_class_weights_are_refused_before_training(value, message):
    with pytest.raises(CnnlabError, match=message):
        presets.resolve("mlp", {"class_weight": value})


def test_a_class_weighted_zero_is_never_learned(tmp_path):
    """Two classes told apart by brightness; with class 0's weight 0 the loss only ever asks for class 1, so the
    trained model calls everything class 1. With equal weights it tells them apart."""
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    x = (rng.random((200, 1, 8, 8)) * 0.3 + y[:, None, None, None] * 0.6).astype(np.float32)
    layers = [{"type": "flatten"}, {"type": "dense", "units": "classes"}]
    answers = {}
    for name, weight in (("equal", ""), ("zero", {"0": 0.0})):
        run = cnnlab.train("mlp", x=x, y=y, epochs=5, layers=layers, optimizer={"name": "adam", "lr": 0.05},
                           class_weight=weight, val_split=0.0, run_dir=tmp_path / name, say=lambda *_: None)
        answers[name] = run.predict(x[:, 0]).indices.tolist()
    assert answers["zero"] == [1] * 200
    assert sum(a == b for a, b in zip(answers["equal"], y)) > 190
