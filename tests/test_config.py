import math
import tomllib

import pytest

from cnnlab.core import config, validation
from cnnlab.core.errors import CnnlabError
from cnnlab.models import presets


def test_set_dotted_keys_with_toml_values():
    cfg = presets.preset("mnist-cnn")
    for item in ["optimizer.lr=1e-3", "early_stopping.patience=5", "optimizer.name=adam", "epochs=7",
                 "early_stopping.restore_best_weights=true", "early_stopping.baseline=0.5"]:
        config.set_value(cfg, *config.parse_set(item))
    assert (cfg.optimizer.lr, cfg.early_stopping.patience, cfg.optimizer.name, cfg.epochs) == (1e-3, 5, "adam", 7)
    assert cfg.early_stopping.restore_best_weights is True and cfg.early_stopping.baseline == 0.5
    assert presets.preset("mnist-cnn").optimizer.lr == 0.01  # presets are not mutated


@pytest.mark.parametrize("item, message", [
    ("optimizer.lrr=0.1", "unknown config key 'optimizer.lrr'"),
    ("epochs=many", "epochs must be an integer"),
    ("epochs=-1", "epochs must be an integer > 0"),
    ("batch_size=0", "batch_size must be an integer > 0"),
    ("optimizer.lr=nan", "optimizer.lr must be float"),
    ("optimizer.lr=-0.1", "optimizer.lr must be > 0"),
    ("optimizer.name=lbfgs", "must be one of sgd, adam, adamw, rmsprop"),
    ("val_split=1.5", "must be below 1"),
    ("early_stopping=3", "is a section"),
    ("nokey", "expects key=value"),
])
def test_bad_values_are_refused(item, message):
    with pytest.raises(CnnlabError, match=message):
        config.set_value(presets.preset("mlp"), *config.parse_set(item))


def test_toml_roundtrip_of_every_preset():
    for name in presets.PRESETS:
        cfg = presets.preset(name)
        again = config.from_dict(tomllib.loads(config.to_toml(cfg)))
        assert again == cfg


def test_unknown_preset():
    with pytest.raises(CnnlabError, match="unknown preset 'resnet'"):
        presets.preset("resnet")


def test_infinite_values_refused():
    with pytest.raises(CnnlabError):
        config.set_value(config.Config(), "optimizer.lr", math.inf)


@pytest.mark.parametrize("key, value, message", [
    ("checkpoint.filepath", "../../outside.pt", "inside the run folder"),
    ("checkpoint.filepath", "/etc/best.pt", "inside the run folder"),
    ("checkpoint.filepath", "{lr!s:.0}../x.pt", "inside the run folder"),
    ("checkpoint.filepath", "best-{nope}.pt", "not a valid pattern"),
    ("checkpoint.filepath", "e{epoch[0]}.pt", "not a valid pattern"),
    ("checkpoint.filepath", "last.pt", "last.pt"),
    ("checkpoint.filepath", "last{lr!s:.0}.pt", "last.pt"),
    ("checkpoint.filepath", ".lock", "hidden file"),
    ("checkpoint.monitor", "val_acc", "'val_acc' is not a logged metric"),
    ("optimizer.beta1", 1.5, "beta1 must be below 1"),
    ("optimizer.ema_momentum", 1.0, "ema_momentum must be below 1"),
    ("augment.blur", 1.5, "augment.blur must be from 0 to 1 pixel"),
    ("seed", 2**40, "below 2\\*\\*32"),
    ("dataset", "imagenet", "unknown dataset"),
])
def test_validate_refuses(key, value, message):
    """presets.resolve: the one check of a config (keys, types, ranges, data set names) before anything loads."""
    with pytest.raises(CnnlabError, match=message):
        presets.resolve("cifar-cnn", {key: value})  # its checkpoint keeps the best: its monitor counts


def test_validation_metrics_vanish_without_a_validation_set():
    cfg = presets.preset("cifar-cnn")  # early stopping and best-only checkpoint watch val_loss
    config.set_value(cfg, "val_split", 0.0)
    with pytest.raises(CnnlabError, match="'val_loss' is not a logged metric; choose one of loss, accuracy, lr"):
        validation.validate(cfg)


def test_dataset_aliases_are_canonical():
    cfg, name = presets.resolve("mlp", {"dataset": "FMNIST"})
    assert (cfg.dataset, name) == ("fashion-mnist", "mlp-fashion-mnist")


def test_toml_strings_with_control_characters_roundtrip():
    cfg = presets.preset("mlp")
    cfg.data = 'odd\nname "quoted" \\ tab\t'
    assert tomllib.loads(config.to_toml(cfg))["data"] == cfg.data


def test_the_readme_toml_example_is_a_valid_config():
    """The README's example file, overlaid on its preset as `cnnlab train FILE.toml` does: every key exists."""
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    d = tomllib.loads(readme.split("```toml\n", 1)[1].split("```", 1)[0])
    cfg = config.from_dict({k: v for k, v in d.items() if k != "preset"}, presets.preset(d["preset"]))
    assert cfg.optimizer.use_ema is True and cfg.optimizer.ema_momentum == 0.99
    assert cfg.early_stopping.min_delta == 0.001 and cfg.reduce_lr.enabled
