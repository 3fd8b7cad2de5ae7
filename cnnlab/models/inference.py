"""Inference: a model's outputs over a batch of uint8 images, and the one `evaluate` every score comes from
(the epochs' validation, results.json's test scores, `cnnlab evaluate`, the report's confusion matrix,
`Run.evaluate`)."""

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.core import checkpoints, config, devices
from cnnlab.core.errors import CnnlabError
from cnnlab.data.datasets import Dataset, Split
from cnnlab.data.splits import prepare_data
from cnnlab.data.transforms import to_input
from cnnlab.models import specs

EVAL_BATCH = 1000  # large batches: evaluation has no gradient to keep, and oneDNN is faster on them
# ...of 32x32 pictures; bigger ones come in smaller batches of as many pixels: a batch of 1,000 at 224x224 would
# hold 6.4 GB in small-cnn's first activation alone.
EVAL_PIXELS = EVAL_BATCH * 32 * 32


def eval_batch(x: torch.Tensor) -> int:
    """Pictures per evaluation batch for uint8 pictures shaped like `x` (N x C x H x W)."""
    return max(1, min(EVAL_BATCH, EVAL_PIXELS // (x.shape[-1] * x.shape[-2]))) if x.dim() >= 3 else EVAL_BATCH


@dataclass
class Evaluation:
    """Loss, accuracy and the confusion matrix of a model on a split (rows: true class, columns: predicted)."""
    loss: float
    accuracy: float
    per_class_accuracy: list
    confusion: list
    classes: list = field(default_factory=list)
    probabilities: torch.Tensor | None = field(default=None, repr=False)  # N x classes, with keep_probabilities
    checkpoint: str = ""  # which weights, when a run's checkpoint was scored
    epoch: int | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return {"loss": self.loss, "accuracy": self.accuracy, "per_class_accuracy": self.per_class_accuracy,
                "confusion": self.confusion}

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{c}</td><td>{a:.4f}</td></tr>" for c, a in
                       zip(self.classes or range(len(self.per_class_accuracy)), self.per_class_accuracy))
        return (f"<p>test loss {self.loss:.4f}, accuracy {self.accuracy:.4f}</p><table><tr><th>class</th>"
                f"<th>accuracy</th></tr>{rows}</table>")


def channels_last_layout(model: torch.nn.Module, wanted: bool) -> bool:
    """Lay a conv net's weights out channels_last when the config asks (faster on CPU, same math), as training
    does, so a checkpoint scored later computes exactly what training's own scoring did. True if it did."""
    laid_out = wanted and specs.uses_conv(model)
    if laid_out:
        model.to(memory_format=torch.channels_last)
    return laid_out


def logits(model: torch.nn.Module, x_uint8: torch.Tensor, autocast: torch.dtype | None = None,
           channels_last: bool | None = None) -> torch.Tensor:
    """Float32 logits of one batch of uint8 N x C x H x W images, on the images' device; autocast to bf16 or fp16
    if asked (the training precision). The input goes channels_last for conv nets unless told otherwise."""
    with torch.autocast(x_uint8.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        return model(to_input(x_uint8, specs.uses_conv(model) if channels_last is None else channels_last)).float()


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """F.cross_entropy; on a CUDA tensor with deterministic algorithms on (cuda's nll_loss is not deterministic)
    one_hot_cross_entropy."""
    if logits.is_cuda and torch.are_deterministic_algorithms_enabled():
        return one_hot_cross_entropy(logits, y, reduction, label_smoothing)
    return F.cross_entropy(logits, y, reduction=reduction, label_smoothing=label_smoothing)


def one_hot_cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean",
                          label_smoothing: float = 0.0) -> torch.Tensor:
    """F.cross_entropy's sum written with one-hot targets and no gather or scatter: equal to rounding, and made of
    kernels that are deterministic on every device."""
    classes = logits.shape[1]
    target = (y[:, None] == torch.arange(classes, device=y.device)).to(logits.dtype)
    target = target * (1 - label_smoothing) + label_smoothing / classes
    per_sample = -(logits.log_softmax(1) * target).sum(1)
    return {"sum": per_sample.sum, "mean": per_sample.mean}.get(reduction, lambda: per_sample)()


@torch.inference_mode()
def probabilities(model: torch.nn.Module, x_uint8: torch.Tensor, batch: int = 0) -> torch.Tensor:
    """Class probabilities for any number of images, in fp32, in eval mode."""
    model.eval()
    batch = batch or eval_batch(x_uint8)
    return torch.cat([logits(model, x_uint8[i:i + batch]).softmax(1) for i in range(0, len(x_uint8), batch)]) \
        if len(x_uint8) else torch.zeros(0)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: Split, num_classes: int, classes: list | None = None,
             autocast: torch.dtype | None = None, keep_probabilities: bool = False, rank: int = 0, world: int = 1,
             all_sum=None, channels_last: bool | None = None) -> Evaluation:
    """Score `model` on `data`, on the data's device. autocast: the training precision, as Keras validates under
    a mixed policy (the epochs' validation); None: fp32, the reference that predict, serve and export
    reproduce. With several ranks each scores every world-th chunk and `all_sum` adds the ranks' sums."""
    model.eval()
    device = data.x.device
    loss_sum = torch.zeros((), dtype=devices.sum_dtype(device), device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64)  # counted on the CPU: CUDA's bincount
    # is not among the deterministic kernels
    kept = []
    batch = eval_batch(data.x)
    for i in range(rank * batch, len(data), world * batch):
        out, y = logits(model, data.x[i:i + batch], autocast, channels_last), data.y[i:i + batch]
        loss_sum += cross_entropy(out, y, reduction="sum").to(loss_sum.dtype)
        confusion += torch.bincount((y * num_classes + out.argmax(1)).cpu(), minlength=num_classes * num_classes)
        if keep_probabilities:
            kept.append(out.softmax(1))
    if all_sum is not None:
        confusion = confusion.to(device)  # nccl sums GPU tensors only
        all_sum(loss_sum, confusion)
    confusion = confusion.cpu().reshape(num_classes, num_classes)
    right, total = confusion.diagonal(), confusion.sum(1)
    n = max(len(data), 1)
    return Evaluation(loss=loss_sum.item() / n, accuracy=right.sum().item() / n,
                      per_class_accuracy=(right / total.clamp(min=1)).tolist(), confusion=confusion.tolist(),
                      classes=list(classes or []), probabilities=torch.cat(kept).cpu() if kept else None)


def evaluate_run(run_dir: Path, which: str = "best", data_dir: str | None = None,
                 keep_probabilities: bool = False) -> tuple[Evaluation, Dataset]:
    """A run's best (ModelCheckpoint's newest file, else last.pt) or last weights scored on the run's own test
    set, with the threads and memory layout it trained with; the Evaluation names the checkpoint, its epoch and
    any note. Returned with the data set, whose test pictures the report shows."""
    state, path, note = checkpoints.load_run_model(Path(run_dir), which)
    try:
        cfg = config.from_dict(state["config"])
    except (KeyError, TypeError) as e:
        raise CnnlabError(f"{path} holds no usable config ({type(e).__name__}: {e})") from None
    devices.set_threads(cfg.threads)
    ds, _, _ = prepare_data(cfg, data_dir, state.get("about", {}).get("data_digest", ""))
    if not len(ds.test):
        raise CnnlabError(f"{run_dir} has no test set (trained from arrays without validation_data)")
    model = specs.from_state(state, ds.input_shape, len(ds.classes), path)
    laid_out = channels_last_layout(model, cfg.channels_last)  # as training scored it
    test = evaluate(model, ds.test, len(ds.classes), ds.classes, keep_probabilities=keep_probabilities,
                    channels_last=laid_out)
    test.checkpoint, test.epoch, test.note = str(path), state["epoch"], note
    return test, ds
