"""The public functions that do not need a run: presets, summary, load_dataset, load_model, report, compare."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.core import config, paths
from cnnlab.core.errors import CnnlabError
from cnnlab.data import datasets
from cnnlab.data.arrays import images_from_array
from cnnlab.data.datasets import Split
from cnnlab.data.splits import picture_options, prepare_data
from cnnlab.models import inference, origins
from cnnlab.models import presets as _presets
from cnnlab.models.summary import Summary
from cnnlab.reports import facts
from cnnlab.reports import report as _report
from cnnlab.serving import export as _export
from cnnlab.serving import predict as _predict


def presets() -> dict:
    """Every preset's name and what it is: {"mlp": "3072-1024-10 dense net, ...", ...}."""
    return dict(_presets.DESCRIPTIONS)


def resolve(target, overrides: dict, data_dir=None) -> tuple:
    """(Config, default run name): a preset's name, a .toml file, a Config or a Run, with dotted-key overrides."""
    return _presets.resolve(getattr(target, "config", target), {k: v for k, v in overrides.items() if v is not None},
                            data_dir)


def summary(target="mnist-cnn", input_shape=None, num_classes: int | None = None, data_dir=None,
            **overrides) -> Summary:
    """Keras' model.summary() of a preset, config, Run or Model: layers, output shapes, parameters, FLOPs.
    input_shape (C, H, W) defaults to the data set's; a `data` folder is loaded to learn it."""
    about = getattr(target, "about", None)
    cfg, _ = resolve(target, overrides, data_dir)
    if about:
        input_shape, num_classes = input_shape or about["input_shape"], num_classes or len(about["classes"])
    elif input_shape is None and cfg.data:  # a user's images: their own size, channels and classes
        ds = datasets.load(data=cfg.data, data_dir=data_dir, pictures=picture_options(cfg))
        input_shape, num_classes = ds.input_shape, num_classes or len(ds.classes)
    elif input_shape is None and cfg.image_size:  # the preset at the size a user's pictures will have
        input_shape = (datasets.BUILTIN[cfg.dataset]["shape"][0], *cfg.image_size)
    shape = tuple(input_shape or datasets.BUILTIN[cfg.dataset]["shape"])
    _, rows = _presets.build_model(cfg, shape, num_classes or 10)
    return Summary(cfg.preset or "custom", shape, rows, origins.origins(cfg.preset, cfg))


@dataclass
class Data:
    """A data set split as a run splits it: uint8 N x C x H x W images and int64 labels per split."""
    name: str
    classes: list
    input_shape: tuple
    source: str  # where the files were found
    verified: bool  # matched the published digests
    train: Split
    validation: Split | None
    test: Split
    skipped: list = field(default_factory=list)  # a picture folder's unreadable pictures: [name, reason]

    def __repr__(self):
        n = len(self.validation) if self.validation is not None else 0
        return (f"Data({self.name}: {len(self.train)} train / {n} validation / {len(self.test)} test images of "
                f"{'x'.join(map(str, self.input_shape))}, {len(self.classes)} classes, from {self.source})")


def load_dataset(name_or_path="mnist", *, data_dir=None, **settings) -> Data:
    """A built-in data set by name (mnist, fashion-mnist, cifar10) or a path (picture folder or archive, CIFAR
    tarball, IDX folder, .npz), through the same source chain and checks as `cnnlab train`, split as a run with
    these settings would be (val_split, validate_on, seed, train_subset, test_subset; a picture folder's
    image_size, crop_to_aspect_ratio, color_mode, test_split, strict)."""
    where = {"data": str(name_or_path)} if Path(str(name_or_path)).exists() else {"dataset": name_or_path}
    cfg, _ = resolve(config.Config(), where | settings, data_dir)
    ds, train, val = prepare_data(cfg, data_dir)
    return Data(ds.name, ds.classes, ds.input_shape, ds.source, ds.verified, train, val, ds.test, ds.skipped)


@dataclass
class Predictions:
    """Per image: the predicted class's index and name, and every class's probability."""
    indices: np.ndarray
    classes: list
    probabilities: np.ndarray  # N x K
    class_names: list

    def __len__(self):
        return len(self.indices)

    def top(self, k: int = 3) -> list:
        """[(class name, probability), ...] per image, most likely first."""
        order = np.argsort(-self.probabilities, axis=1)[:, :k]
        return [[(self.class_names[j], float(p[j])) for j in row] for row, p in zip(order, self.probabilities)]

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{i}</td><td>{', '.join(f'{c} {p:.3f}' for c, p in t)}</td></tr>"
                       for i, t in enumerate(self.top()))
        return f"<table><tr><th>image</th><th>top classes</th></tr>{rows}</table>"


class Model:
    """A trained model file (best.pt, last.pt or a run folder's best), for prediction anywhere."""

    def __init__(self, path):
        self.path = Path(path)
        self.module, self.about, trained_with = _predict.load_model_and_config(self.path)
        self.config = config.from_dict(trained_with)
        self.classes, self.input_shape = self.about["classes"], tuple(self.about["input_shape"])

    def predict(self, images) -> Predictions:
        """Images as file paths, PIL images, or one numpy array / tensor batch (N x H x W [x C] or N x C x H x W,
        uint8 or floats in [0, 1]), prepared exactly as `cnnlab predict` prepares a file."""
        x = self._batch(images)
        p = inference.probabilities(self.module, x).numpy()
        idx = p.argmax(1)
        return Predictions(idx, [self.classes[i] for i in idx], p, list(self.classes))

    def predict_files(self, paths, top_k: int = 3) -> list:
        """What `cnnlab predict --json` prints: per file (folders expanded, sorted) its top-k classes, or the one
        line saying why it could not be read; a broken file costs only its own entry."""
        return _predict.classify_files(self.module, self.about, _predict.expand(paths), top_k)

    def export(self, format: str = "onnx", out=None, check_images: int = 1000, data_dir=None, say=print) -> dict:
        """model.onnx or model.torchscript.pt beside the model, checked against PyTorch on real test images."""
        return _export.export(self.path, format, Path(out) if out else None, check_images, data_dir, say)

    def _batch(self, images) -> torch.Tensor:
        if isinstance(images, (np.ndarray, torch.Tensor)):
            x = torch.from_numpy(images_from_array(images))
            if tuple(x.shape[1:]) != self.input_shape:
                raise CnnlabError(f"images are {tuple(x.shape[1:])}, the model takes {self.input_shape} (C x H x W); "
                                  f"pass files or PIL images to have them resized")
            return x
        if isinstance(images, (str, Path, Image.Image)):
            images = [images]
        crop = self.about.get("crop_to_aspect_ratio", False)
        return torch.stack([_predict.prepare(img if isinstance(img, Image.Image) else _read(Path(img)),
                                             self.input_shape, crop, str(img)) for img in images])

    def __repr__(self):
        return f"Model({self.path}: {len(self.classes)} classes, input {self.input_shape})"


def _read(path: Path) -> bytes:
    if not path.exists():
        raise CnnlabError(f"{path}: no such image file")
    return paths.read_bytes(path, "image")


def load_model(path) -> Model:
    """A model for prediction: a run folder (its best checkpoint) or a checkpoint file cnnlab wrote."""
    return Model(path)


@dataclass
class Report:
    """The report's files; shown in a notebook as the report itself."""
    markdown: Path
    html: Path

    def _repr_html_(self) -> str:
        return self.html.read_text()


def report(runs, out=None, data_dir=None, title: str = "", intro_md: str = "") -> Report:
    """report.md and a self-contained report.html on one or more runs (Run objects or folders); `out` defaults
    to the run's own folder, or reports/ for several."""
    folders = [Path(getattr(r, "path", r)) for r in ([runs] if isinstance(runs, (str, Path)) or hasattr(runs, "path")
                                                     else runs)]
    out = Path(out) if out else folders[0] if len(folders) == 1 else Path("reports")
    return Report(*_report.write_report(folders, out, title=title, intro_md=intro_md, data_dir=data_dir))


def compare(runs, data_dir=None) -> list:
    """One RunSummary per run (folders or Run objects): parameters, FLOPs, s/epoch, accuracies, verdict."""
    return [facts.run_summary(Path(getattr(r, "path", r)), data_dir) for r in runs]
