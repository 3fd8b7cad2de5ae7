"""The `cnnlab` command's arguments: one sub-parser per command, each flag with the help a user reads.
Errors are one line (OneLineParser), as every cnnlab error is."""

import argparse
import sys

from cnnlab.core import validation
from cnnlab.experiments import registry
from cnnlab.models import presets

DESCRIPTION = "The `cnnlab` command: train, evaluate, report, predict, export, serve, runs, sweep, compare, lab and more."


def preset_values(key: str) -> str:
    """A setting across the presets, for --help: 'mlp 50, mlp-deep 100, ...'."""
    return ", ".join(f"{name} {getattr(presets.preset(name), key):g}" for name in presets.PRESETS)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage too; the CLI's contract is one line
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def data_dir_arg(sp):
    sp.add_argument("--data-dir", help="folder holding the data set files (default: $CNNLAB_DATA)")


def model_file_arg(sp):
    sp.add_argument("model", help="a run folder (runs/NAME) or a checkpoint file it wrote (best.pt)")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="cnnlab", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def model_args(sp):
        sp.add_argument("target", help="a preset (see `cnnlab presets`) or a config .toml file")
        sp.add_argument("--dataset", help="mnist, fashion-mnist or cifar10")
        sp.add_argument("--data", help="your pictures: a folder, .zip or .tar.gz of class folders (<class>/..., or "
                        "train/<class>/ and test/<class>/), or with a labels.csv of path,label")
        sp.add_argument("--image-size", type=int, nargs="+", metavar="PIXELS",
                        help="the size the model sees a picture folder's pictures at: SIDE or HEIGHT WIDTH "
                             "(default: the one size they all share)")
        sp.add_argument("--crop-to-aspect-ratio", action="store_true", default=None,
                        help="centre-crop each picture to --image-size's aspect ratio instead of stretching it")
        sp.add_argument("--color-mode", choices=validation.CHOICES["color_mode"],
                        help="a picture folder's colours (default auto: grayscale only if every picture is)")
        sp.add_argument("--test-split", type=float, help="class folders without a test/ folder: each class's "
                        "share held out as the test set (default 0.2)")
        sp.add_argument("--class-weight", choices=["auto"], help="auto: weight each class's images by its inverse "
                        "frequency in the loss (a mapping: --set 'class_weight={cat = 2.0}')")
        sp.add_argument("--epochs", type=int, help=f"epochs to train; more than a finished run's extends it "
                        f"(default: the preset's: {preset_values('epochs')})")
        sp.add_argument("--batch-size", type=int, help=f"images per step (default: the preset's: "
                        f"{preset_values('batch_size')})")
        sp.add_argument("--seed", type=int, help="seed of the split, the initial weights, the shuffles and dropout "
                        "(default 0)")
        sp.add_argument("--val-split", type=float, help=f"fraction of each class of the training set held out for "
                        f"validation (default: the preset's: {preset_values('val_split')})")
        sp.add_argument("--validate-on", choices=validation.CHOICES["validate_on"])
        sp.add_argument("--precision", choices=validation.CHOICES["precision"],
                        help="training arithmetic (default auto: bf16 autocast where the CPU or GPU computes it "
                             "natively, fp16 on Volta/Turing GPUs, else fp32)")
        sp.add_argument("--device", help="auto (default: a CUDA GPU, else Apple's MPS, else the CPU), cpu, cuda, "
                                         "cuda:N or mps")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="any config key, e.g. optimizer.lr=0.1 or early_stopping.patience=5 (repeatable)")
        data_dir_arg(sp)

    t = sub.add_parser("train", help="train a preset or config; re-running the same command resumes")
    model_args(t)
    t.add_argument("--name", help="run folder name under --runs (default: the preset's name)")
    t.add_argument("--runs", default="runs", help="where run folders live (default: runs)")
    t.add_argument("--fresh", action="store_true", help="discard an existing run of the same name and start over")
    t.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to RUN/tensorboard/")
    t.add_argument("--procs", type=int, default=1,
                   help="data-parallel processes on this machine (runs torchrun; global batch = --batch-size)")

    s = sub.add_parser("summary", help="layers, output shapes, parameters and FLOPs, Keras-style")
    model_args(s)

    e = sub.add_parser("evaluate", help="test loss, accuracy and per-class accuracy of a run")
    e.add_argument("run", help="a run folder, e.g. runs/mnist-cnn")
    e.add_argument("--which", choices=["best", "last"], default="best",
                   help="best: ModelCheckpoint's newest file; last: the weights training ended with (default best)")
    data_dir_arg(e)

    rp = sub.add_parser("report", help="report.md and a self-contained report.html on one or more runs")
    rp.add_argument("runs", nargs="+", help="run folders, e.g. runs/mlp runs/cifar-cnn")
    rp.add_argument("--out", help="output folder (default: the run's own folder; reports/ for several runs)")
    data_dir_arg(rp)

    pr = sub.add_parser("predict", help="classify your own images with a trained run or model file")
    model_file_arg(pr)
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--top-k", type=int, default=3, help="classes shown per picture, most likely first (default 3)")
    pr.add_argument("--json", action="store_true", help="machine-readable output")

    ex = sub.add_parser("export", help="write a run's model as ONNX or TorchScript, checked against PyTorch")
    model_file_arg(ex)
    ex.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    ex.add_argument("--out", help="output file (default: model.onnx / model.torchscript.pt in the run folder)")
    ex.add_argument("--check-images", type=int, default=1000, help="real test images to check it on")
    data_dir_arg(ex)

    rn = sub.add_parser("runs", help="the run registry: every training, its status and best metrics")
    rn.add_argument("--runs", default="runs", help="the folder holding the runs and registry.sqlite")
    rn.add_argument("--status", choices=registry.STATUSES)
    rn.add_argument("--preset")
    rn.add_argument("--dataset")
    rn.add_argument("--name", help="runs whose name contains this")
    rn.add_argument("--scan", metavar="DIR", help="first register the run folders under DIR the registry does not "
                    "know (copied or moved runs)")
    rn.add_argument("--json", action="store_true")

    sw = sub.add_parser("sweep", help="hyperparameter search with Optuna (grid or TPE), resumable and shareable")
    model_args(sw)
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                    help="values to try, e.g. optimizer=sgd,adam or lr=1e-3,1e-2 (repeatable)")
    sw.add_argument("--space", help="a TOML search space: [grid] key = [values], [range] key = {low, high, log}")
    sw.add_argument("--sampler", choices=["grid", "tpe"], default="grid")
    sw.add_argument("--trials", type=int, default=0, help="TPE: finished trials wanted (default 20)")
    sw.add_argument("--stop-after", type=int, default=0, help="run at most this many trials now, continue later")
    sw.add_argument("--study", help="the Optuna study's name (default: NAME-sweep); workers naming it share it")
    sw.add_argument("--storage", help="SQLAlchemy URL (default: sqlite:///RUNS/sweeps.sqlite), e.g. postgresql://...")
    sw.add_argument("--runs", default="runs")
    sw.add_argument("--top", type=int, default=3, help="best trials in the sweep's report")

    cp = sub.add_parser("compare", help="one table comparing runs: parameters, FLOPs, s/epoch, accuracies, verdict")
    cp.add_argument("run", nargs="+", help="run folders, or ids/names from `cnnlab runs`")
    cp.add_argument("--runs", default="runs", help="where the registry lives, for ids and names")
    data_dir_arg(cp)

    lb = sub.add_parser("lab", help="run the whole lab (two MLPs, two CNNs) and write one report answering it")
    lb.add_argument("--quick", action="store_true", help="subsets and a few epochs: minutes instead of an hour")
    lb.add_argument("--cifar", help="CIFAR-10 to use if the built-in one is not found (e.g. the JPEG copy)")
    lb.add_argument("--runs", default="runs", help="the lab's runs go to RUNS/lab (or RUNS/lab-quick)")
    data_dir_arg(lb)

    ps = sub.add_parser("presets", help="the lab's networks, and where each setting comes from")
    ps.add_argument("name", nargs="?", choices=list(presets.PRESETS), help="one preset's settings and their source")
    d = sub.add_parser("datasets", help="the data sets and where each was found")
    data_dir_arg(d)

    ca = sub.add_parser("cache", help="where decoded data sets are cached, how much space they take; --clear frees it")
    ca.add_argument("--clear", action="store_true", help="delete the decoded arrays (downloads are kept)")

    sv = sub.add_parser("serve", help="a local web page and JSON API that classify uploaded or drawn pictures")
    model_file_arg(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="default 8000; 0 picks a free port")
    sv.add_argument("--quiet", action="store_true", help="no log line per request")
    sv.add_argument("--max-batch", type=int, default=64,
                    help="pictures that arrive together go through the model in one pass, up to this many (default 64; "
                         "1: one pass each)")
    return p
