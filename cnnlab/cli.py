"""The `cnnlab` command: train, evaluate, summary, presets, datasets.

Any CnnlabError (bad input, unreadable file, model that does not fit the data) is printed as one line on
stderr with exit status 2; nothing already saved is touched.
"""

import argparse
import sys
from pathlib import Path

from cnnlab import CnnlabError, config, datasets, models, presets


def build_config(args) -> config.Config:
    target = args.target
    if target.endswith(".toml"):
        d = config.load_toml(target)
        base = presets.preset(d.pop("preset")) if d.get("preset") else None
        cfg = config.from_dict(d, base)
        cfg.preset = cfg.preset or Path(target).stem
    else:
        cfg = presets.preset(target)
    for key, flag in (("dataset", args.dataset), ("data", args.data), ("epochs", args.epochs),
                      ("batch_size", args.batch_size), ("seed", args.seed), ("val_split", args.val_split),
                      ("validate_on", args.validate_on)):
        if flag is not None:
            config.set_value(cfg, key, flag)
    if args.dataset:
        datasets.canonical_name(args.dataset)
        cfg.data = ""
    for item in args.set or []:
        config.set_value(cfg, *config.parse_set(item))
    return cfg


def default_run_name(cfg: config.Config, args) -> str:
    name = cfg.preset or "run"
    if cfg.data:
        return f"{name}-{Path(cfg.data.rstrip('/')).name.split('.')[0]}"
    if cfg.preset in presets.PRESETS and cfg.dataset != presets.PRESETS[cfg.preset]["dataset"]:
        return f"{name}-{cfg.dataset}"
    return name


def cmd_train(args):
    from cnnlab.run import train_run  # torch import deferred: `cnnlab presets` stays instant
    cfg = build_config(args)
    run_dir = Path(args.runs) / (args.name or default_run_name(cfg, args))
    train_run(cfg, run_dir, args.data_dir, args.fresh)


def cmd_evaluate(args):
    from cnnlab.run import evaluate_run
    r = evaluate_run(Path(args.run), args.which, args.data_dir)
    print(f"{r['checkpoint']} (epoch {r['epoch']}): test loss {r['loss']:.4f}, test accuracy {r['accuracy']:.4f}")
    width = max(len(c) for c in r["classes"])
    for c, acc in zip(r["classes"], r["per_class_accuracy"]):
        print(f"  {c.ljust(width)}  {acc:.4f}")


def cmd_summary(args):
    cfg = build_config(args)
    shape, classes = ((3, 32, 32) if cfg.dataset == "cifar10" else (1, 28, 28)), 10
    if cfg.data:  # a user's images: their own size, channels and classes
        ds = datasets.load(data=cfg.data)
        shape, classes = ds.input_shape, len(ds.classes)
    _, infos = models.build(cfg.layers, shape, classes)
    print(f"Model: {cfg.preset} (input {shape[1]}x{shape[2]}x{shape[0]})")
    print(models.summary(infos, shape))


def cmd_presets(args):
    for name, text in presets.DESCRIPTIONS.items():
        print(f"{name:10s} {text}")


def cmd_datasets(args):
    for name, where in datasets.describe_all(args.data_dir):
        print(f"{name:14s} {where}")
    print("any folder, .tar.gz or .zip with train/<class>/*.png|jpg and test/<class>/*: pass --data PATH")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnnlab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp):
        sp.add_argument("target", help="a preset (see `cnnlab presets`) or a config .toml file")
        sp.add_argument("--dataset", help="mnist, fashion-mnist or cifar10")
        sp.add_argument("--data", help="folder/.tar.gz/.zip with train/<class>/ and test/<class>/, or a CIFAR tarball")
        sp.add_argument("--epochs", type=int)
        sp.add_argument("--batch-size", type=int)
        sp.add_argument("--seed", type=int)
        sp.add_argument("--val-split", type=float)
        sp.add_argument("--validate-on", choices=["val", "test"])
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="any config key, e.g. optimizer.lr=0.1 or early_stopping.patience=5 (repeatable)")
        sp.add_argument("--data-dir", help="folder holding the data set files (default: $CNNLAB_DATA)")

    t = sub.add_parser("train", help="train a preset or config; re-running the same command resumes")
    model_args(t)
    t.add_argument("--name", help="run folder name under --runs (default: the preset's name)")
    t.add_argument("--runs", default="runs", help="where run folders live (default: runs)")
    t.add_argument("--fresh", action="store_true", help="discard an existing run of the same name and start over")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("summary", help="layers, output shapes, parameters and FLOPs, Keras-style")
    model_args(s)
    s.set_defaults(func=cmd_summary)

    e = sub.add_parser("evaluate", help="test loss, accuracy and per-class accuracy of a run")
    e.add_argument("run", help="a run folder, e.g. runs/mnist-cnn")
    e.add_argument("--which", choices=["best", "last"], default="best")
    e.add_argument("--data-dir")
    e.set_defaults(func=cmd_evaluate)

    sub.add_parser("presets", help="the lab's networks").set_defaults(func=cmd_presets)
    d = sub.add_parser("datasets", help="the data sets and where each was found")
    d.add_argument("--data-dir")
    d.set_defaults(func=cmd_datasets)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except CnnlabError as e:
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a full disk while saving: the previous checkpoint is still whole
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
