"""The figures: curves.png (loss and accuracy per epoch, training vs validation), and the report's confusion
matrix, misclassified-image grid and overlaid validation curves."""

import os
from pathlib import Path

import torch
from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend on servers and CI
from matplotlib.ticker import MaxNLocator


def _figure(rows=1, cols=1, **kwargs):
    fig = Figure(figsize=kwargs.pop("figsize"))
    return fig, fig.subplots(rows, cols, **kwargs)


def curves_figure(history: list, title: str = "", best_epoch: int | None = None) -> Figure:
    """Loss and accuracy per epoch, training vs validation: what curves.png and Run.plot() show."""
    epochs = list(range(1, len(history) + 1))
    fig, axes = _figure(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, [h[metric] for h in history], "o-", label=f"train {metric}")
        if all(f"val_{metric}" in h for h in history):
            ax.plot(epochs, [h[f"val_{metric}"] for h in history], "s-", label=f"validation {metric}")
        if best_epoch:
            ax.axvline(best_epoch, color="gray", linestyle="--", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(history: list, path: Path, title: str = "", best_epoch: int | None = None):
    _save(curves_figure(history, title, best_epoch), path, dpi=100)


def _save(fig, path: Path, **savefig_args):
    """Write through a temporary file of this process's own, then rename: a reader never sees half a PNG, and
    two processes writing the same figure (sweep workers finishing together) cannot trip over each other."""
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # .*.tmp: what a resumed run sweeps away
    try:
        fig.savefig(tmp, format="png", **({"dpi": 90, "bbox_inches": "tight"} | savefig_args))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def plot_confusion(confusion: list, classes: list, path: Path):
    """Rows: true class, columns: predicted; colour is the share of the true class, numbers are counts."""
    cm = torch.tensor(confusion, dtype=torch.float64)
    share = cm / cm.sum(1, keepdim=True).clamp(min=1)
    size = min(0.55 * len(classes) + 2, 14)
    fig, ax = _figure(figsize=(size + 1, size))
    im = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 20:  # beyond that the numbers would not fit their cells
        for (i, j), v in zip([(i, j) for i in range(len(classes)) for j in range(len(classes))], cm.flatten()):
            ax.text(j, i, int(v), ha="center", va="center", fontsize=8, color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    _save(fig, path)


def plot_errors(errors: list, classes: list, path: Path, cols: int = 6):
    rows = -(-len(errors) // cols)
    fig, axes = _figure(rows, cols, figsize=(cols * 1.7, rows * 2.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (x, true, pred, conf) in zip(axes.flat, errors):
        img = x.permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", interpolation="nearest")
        ax.set_title(f"{classes[true]} → {classes[pred]}\n({conf:.0%} sure)", fontsize=8)
    _save(fig, path)


def plot_overlay(runs: list, path: Path):
    fig, axes = _figure(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("val_accuracy", "val_loss")):
        for r in runs:
            h = [row for row in r.history if metric in row]
            ax.plot([row["epoch"] for row in h], [row[metric] for row in h], ".-", label=r.slug)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.set_ylabel(metric.replace("val_", "validation "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
