"""Export a trained model to ONNX or TorchScript, and prove the export computes what PyTorch computes.

The exported graph takes what `predict.prepare` makes — uint8 pixels, N x C x H x W — and returns class
probabilities, so the scaling to [0, 1] and the softmax travel inside the file and no consumer can get them
wrong. A JSON description (classes, input shape, preprocessing) is written beside it and, for ONNX, also
stored in the model's metadata.
"""

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.core import checkpoints, config
from cnnlab.core.errors import CnnlabError
from cnnlab.data import datasets, splits
from cnnlab.models import inference
from cnnlab.serving import predict

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
MAX_PROB_DIFF = 1e-4  # on probabilities, not logits: what a user of the exported file reads
MIN_TOP1_AGREEMENT = 0.999


class Classifier(nn.Module):
    """uint8 images in, probabilities out: the whole of inference in one module."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image.float() * (1.0 / 255)), dim=1)


def description(about: dict, fmt: str) -> dict:
    c, h, w = about["input_shape"]
    return {
        "format": fmt, "classes": about["classes"], "dataset": about.get("dataset", ""),
        "input": {"name": "image", "dtype": "uint8", "shape": ["batch", c, h, w], "layout": "NCHW",
                  "channels": "grayscale" if c == 1 else "RGB"},
        "output": {"name": "probabilities", "dtype": "float32", "shape": ["batch", len(about["classes"])]},
        "preprocessing": (f"resize to {w}x{h} (bilinear when enlarging; when shrinking, the picture's values at the "
                          "small pixels' centres if it is an enlargement of them, else Lanczos), "
                          f"{'grayscale' if c == 1 else 'RGB'}, uint8; scaling "
                          "by 1/255 and softmax are inside the model"
                          + ("; a dark digit on light paper is inverted to MNIST's light-on-dark" if c == 1 else "")),
    }


def export(model_path: Path, fmt: str, out: Path | None = None, check_images: int = 1000,
           data_dir: str | None = None, say=print) -> dict:
    """Write the export and its description, then check it on up to `check_images` real test images."""
    if fmt not in FORMATS:
        raise CnnlabError(f"unknown export format {fmt!r}: choose {' or '.join(FORMATS)}")
    model, about = predict.load_model(Path(model_path))
    wrapped = Classifier(model).eval()
    stem = Path(model_path).resolve().name.removesuffix(".pt")
    out = Path(out) if out else Path(model_path) / f"model{FORMATS[fmt]}" if Path(model_path).is_dir() \
        else Path(model_path).with_name(stem + FORMATS[fmt])
    example = torch.zeros(2, *about["input_shape"], dtype=torch.uint8)
    info = description(about, fmt)
    tmp = out.with_name(f".{out.name}.tmp")  # the previous export stays whole until this one is complete
    try:
        if fmt == "onnx":
            _write_onnx(wrapped, example, tmp, info)
        else:
            _write_torchscript(wrapped, example, tmp, info)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    checkpoints.atomic_write(out.with_name(out.name + ".json"), json.dumps(info, indent=2).encode())
    images = _test_images(Path(model_path), about, data_dir, check_images, say)
    parity = check(out, fmt, wrapped, images)
    say(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.name}.json")
    say(f"checked on {parity['images']} {parity['source']}: max |probability difference| "
        f"{parity['max_abs_diff']:.2e}, same top-1 on {parity['top1_agreement']:.2%}")
    if parity["max_abs_diff"] > MAX_PROB_DIFF or parity["top1_agreement"] < MIN_TOP1_AGREEMENT:
        raise CnnlabError(f"{out} does not match PyTorch (max diff {parity['max_abs_diff']:.2e}, top-1 "
                          f"agreement {parity['top1_agreement']:.2%}): do not use it")
    return {"path": str(out), **parity}


def _write_onnx(wrapped: nn.Module, example: torch.Tensor, path: Path, info: dict):
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError:
        raise CnnlabError("ONNX export needs the onnx extra: pip install 'cnnlab[onnx]'") from None
    # The exporter narrates its steps and warns about torchvision ops we never use: keep the console ours.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapped, (example,), input_names=["image"], output_names=["probabilities"],
                                    dynamic_shapes=({0: "batch"},), dynamo=True, verbose=False)
    program.model.metadata_props.update({"cnnlab": json.dumps(info)})  # readable by any ONNX consumer
    program.save(str(path))


def _write_torchscript(wrapped: nn.Module, example: torch.Tensor, path: Path, info: dict):
    with torch.no_grad():
        traced = torch.jit.trace(wrapped, example)  # a Sequential of plain layers: tracing records it whole
    torch.jit.save(traced, str(path), _extra_files={"cnnlab.json": json.dumps(info)})


def _test_images(model_path: Path, about: dict, data_dir, n: int, say) -> tuple:
    """The first n images of the model's own test set: a run's data as its config names it (built-in or the
    user's --data), else the built-in set the model file names; random pixels if neither can be loaded."""
    run_config = model_path / "config.toml" if model_path.is_dir() else model_path.parent / "config.toml"
    try:
        if run_config.is_file():
            cfg = config.from_dict(config.load_toml(str(run_config)))
            ds = datasets.load(cfg.dataset, cfg.data or None, data_dir, splits.picture_options(cfg))
        elif about.get("dataset", "") in datasets.BUILTIN:
            ds = datasets.load(about["dataset"], data_dir=data_dir)
        else:
            raise CnnlabError(f"no run folder beside {model_path} names its data")
        if list(ds.input_shape) == list(about["input_shape"]):
            return ds.test.x[:n], f"{ds.name} test images"
        say(f"note: {ds.name} images are {ds.input_shape}, the model takes {about['input_shape']}")
    except CnnlabError as e:
        say(f"note: {e}; checking on random images instead")
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, *about["input_shape"]), dtype=torch.uint8, generator=g), "random images"


def run_export(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """Probabilities from the exported file alone, as a consumer would compute them."""
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise CnnlabError("checking an ONNX export needs onnxruntime: pip install 'cnnlab[onnx]'") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"image": x})[0]
    with torch.inference_mode():
        return torch.jit.load(str(path))(torch.from_numpy(x)).numpy()


def check(path: Path, fmt: str, wrapped: Classifier, images: tuple, batch: int = 250) -> dict:
    """The export's probabilities against PyTorch's (inference.probabilities, as predict computes them)."""
    x, source = images
    diffs, same = [], 0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        want = inference.probabilities(wrapped.model, xb).numpy()
        got = run_export(path, fmt, xb.numpy())
        diffs.append(float(np.abs(got - want).max()))
        same += int((got.argmax(1) == want.argmax(1)).sum())
    return {"images": len(x), "source": source, "max_abs_diff": max(diffs), "top1_agreement": same / len(x)}
