"""The `cnnlab` command: train, evaluate, report, predict, export, serve, runs, sweep, compare, lab and more.

Any CnnlabError (bad input, unreadable file, model that does not fit the data) is printed as one line on
stderr with exit status 2; nothing already saved is touched. No traceback ever reaches the terminal: `guarded`
is the last line of defence for whatever a command lets escape.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import cnnlab
from cnnlab.core import config
from cnnlab.core.errors import CnnlabError
from cnnlab.data import sources
from cnnlab.experiments import registry, runs
from cnnlab.models import origins, presets
from cnnlab.reports import report
from cnnlab.training import distributed


def overrides(args) -> dict:
    """The model options as config keys, in the order they apply: the flags, then each --set."""
    flags = {key: getattr(args, key) for key in ("dataset", "data", "image_size", "crop_to_aspect_ratio", "color_mode",
                                                  "test_split", "class_weight", "epochs", "batch_size", "seed",
                                                  "val_split", "validate_on", "precision", "device")}
    return {k: v for k, v in flags.items() if v is not None} | dict(config.parse_set(i) for i in args.set or [])


def cmd_train(args):
    cfg, name = cnnlab.api.library.resolve(args.target, overrides(args), args.data_dir)  # bad input stops before torchrun starts
    if args.procs > 1 and distributed.world_size() == 1:  # become torchrun's N ranks on this machine
        distributed.launch(args.argv, args.procs)
        return
    if args.data and args.data != cfg.data:
        print(f"--data {args.data} is {cfg.data}; the run records that path, and the data's digest to find it if it "
              f"moves")
    cnnlab.train(cfg, run_dir=runs.run_folder(args.runs, args.name or name), fresh=args.fresh,
                 data_dir=args.data_dir, **({"tensorboard": True} if args.tensorboard else {}))


def cmd_evaluate(args):
    e = cnnlab.load_run(args.run).evaluate(args.which, args.data_dir)
    if e.note:
        print(f"note: {e.note}")
    print(f"{e.checkpoint} (epoch {e.epoch}): test loss {e.loss:.4f}, test accuracy {e.accuracy:.4f}")
    width = max(len(c) for c in e.classes)
    for c, acc in zip(e.classes, e.per_class_accuracy):
        print(f"  {c.ljust(width)}  {acc:.4f}")


def cmd_report(args):
    r = cnnlab.report(args.runs, args.out, args.data_dir)
    print(r.markdown, r.html, sep="\n")


def cmd_predict(args):
    results = cnnlab.load_model(args.model).predict_files(args.images, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            shown = r.get("error") or "  ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
            print(f"{r['file']}: {shown}")
    failed = sum("error" in r for r in results)
    if failed:
        raise CnnlabError(f"{failed} of {len(results)} file(s) could not be classified (see above)")


def cmd_export(args):
    cnnlab.load_model(args.model).export(args.format, args.out, args.check_images, args.data_dir)


def cmd_runs(args):
    db = Path(args.runs) / registry.FILENAME
    if args.scan:
        if not Path(args.scan).is_dir():
            raise CnnlabError(f"--scan {args.scan}: no such folder")
        print(f"registered {registry.scan(db, Path(args.scan))} run folder(s) found under {args.scan}")
    rows = registry.runs(db, args.status or "", args.preset or "", args.dataset or "", args.name or "")
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(registry.table(rows))
    else:
        filtered = any([args.status, args.preset, args.dataset, args.name])
        print(f"no recorded runs{' match' if filtered else ''} in {db}")


def cmd_sweep(args):
    from cnnlab.experiments import sweep
    cfg, name = cnnlab.api.library.resolve(args.target, overrides(args), args.data_dir)
    space = sweep.load_space(args.space) if args.space else sweep.Space()
    space.grid |= sweep.parse_grid(args.grid or [])
    study_name = args.study or f"{name}-sweep"
    study = sweep.run_sweep(cfg, space, study_name, Path(args.runs), args.storage or "", args.trials,
                            args.sampler, args.stop_after, args.data_dir)
    rows = sweep.ranking(study)
    print(f"study {study_name}: {len(rows)} finished trial(s)")
    print(sweep.ranking_table(rows))
    best = [Path(r["run"]) for r in rows if r["state"] == "complete" and r["run"]][:args.top]
    if best:
        intro = f"Trials ranked by best validation accuracy.\n\n{sweep.ranking_table(rows)}\n"
        r = cnnlab.report(best, Path(args.runs) / f"{study_name}-report", args.data_dir, f"Sweep {study_name}", intro)
        print(r.markdown, r.html, sep="\n")


def cmd_compare(args):
    db = Path(args.runs) / registry.FILENAME
    folders = [Path(r) if Path(r).is_dir() else Path(registry.lookup(db, [r])[0]["path"]) for r in args.run]
    print(report.comparison_table(cnnlab.compare(folders, args.data_dir)))


def cmd_lab(args):
    from cnnlab.experiments.lab import run_lab
    md, html, seconds = run_lab(Path(args.runs), args.quick, args.cifar, args.data_dir)
    print(f"this invocation of the lab took {seconds / 60:.1f} minutes; report: {html} (and {md})")


def cmd_summary(args):
    print(cnnlab.summary(args.target, data_dir=args.data_dir, **overrides(args)))


def cmd_presets(args):
    if args.name:  # one preset's settings, each with where it comes from
        cfg, _ = presets.resolve(args.name)
        print(f"{args.name}: {presets.DESCRIPTIONS[args.name]}")
        for key, value, source in origins.origins(args.name, cfg) or [("", "", "not one of the lab's networks")]:
            print(f"  {key} = {value}: {source}" if key else f"  {source}")
        return
    for name, text in cnnlab.presets().items():
        print(f"{name:10s} {text}")
    print("`cnnlab presets NAME` shows where each of a lab preset's settings comes from")


def cmd_datasets(args):
    for name, where in sources.describe_all(args.data_dir):
        print(f"{name:14s} {where}")
    print("any folder, .tar.gz or .zip with train/<class>/*.png|jpg and test/<class>/*, or an .npz of x_train, "
          "y_train, x_test, y_test: pass --data PATH")


def cmd_cache(args):
    from cnnlab.data import datasets
    if args.clear:
        print(f"freed {datasets.clear_decoded_cache() / 1e6:.1f} MB of decoded arrays (downloads kept)")
    root, used = datasets.cache_usage()
    print(f"cache: {root} (CNNLAB_CACHE moves it)")
    print(f"  decoded arrays  {used['decoded'] / 1e6:9.1f} MB  rebuilt from the files when needed: "
          f"`cnnlab cache --clear` frees them")
    print(f"  downloads       {used['downloads'] / 1e6:9.1f} MB  data sets fetched from the internet")


def cmd_serve(args):
    from cnnlab.serving.serve import serve
    if not 1 <= args.max_batch <= 4096:
        raise CnnlabError(f"--max-batch must be from 1 to 4096, got {args.max_batch}")
    serve(Path(args.model), args.host, args.port, args.quiet, args.max_batch)


def preset_values(key: str) -> str:
    """A setting across the presets, for --help: 'mlp 50, mlp-deep 100, ...'."""
    return ", ".join(f"{name} {getattr(presets.preset(name), key):g}" for name in presets.PRESETS)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage too; the CLI's contract is one line
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="cnnlab", description=__doc__.splitlines()[0])
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
        sp.add_argument("--color-mode", choices=["auto", "grayscale", "rgb"],
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
        sp.add_argument("--validate-on", choices=["val", "test"])
        sp.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"],
                        help="training arithmetic (default auto: bf16 autocast where the CPU or GPU computes it "
                             "natively, fp16 on Volta/Turing GPUs, else fp32)")
        sp.add_argument("--device", help="auto (default: a CUDA GPU, else Apple's MPS, else the CPU), cpu, cuda, "
                                         "cuda:N or mps")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="any config key, e.g. optimizer.lr=0.1 or early_stopping.patience=5 (repeatable)")
        sp.add_argument("--data-dir", help="folder holding the data set files (default: $CNNLAB_DATA)")

    t = sub.add_parser("train", help="train a preset or config; re-running the same command resumes")
    model_args(t)
    t.add_argument("--name", help="run folder name under --runs (default: the preset's name)")
    t.add_argument("--runs", default="runs", help="where run folders live (default: runs)")
    t.add_argument("--fresh", action="store_true", help="discard an existing run of the same name and start over")
    t.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to RUN/tensorboard/")
    t.add_argument("--procs", type=int, default=1,
                   help="data-parallel processes on this machine (runs torchrun; global batch = --batch-size)")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("summary", help="layers, output shapes, parameters and FLOPs, Keras-style")
    model_args(s)
    s.set_defaults(func=cmd_summary)

    e = sub.add_parser("evaluate", help="test loss, accuracy and per-class accuracy of a run")
    e.add_argument("run", help="a run folder, e.g. runs/mnist-cnn")
    e.add_argument("--which", choices=["best", "last"], default="best",
                   help="best: ModelCheckpoint's newest file; last: the weights training ended with (default best)")
    e.add_argument("--data-dir")
    e.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser("report", help="report.md and a self-contained report.html on one or more runs")
    rp.add_argument("runs", nargs="+", help="run folders, e.g. runs/mlp runs/cifar-cnn")
    rp.add_argument("--out", help="output folder (default: the run's own folder; reports/ for several runs)")
    rp.add_argument("--data-dir")
    rp.set_defaults(func=cmd_report)

    pr = sub.add_parser("predict", help="classify your own images with a trained run or model file")
    pr.add_argument("model", help="a run folder (runs/NAME) or a checkpoint file it wrote (best.pt)")
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--top-k", type=int, default=3, help="classes shown per picture, most likely first (default 3)")
    pr.add_argument("--json", action="store_true", help="machine-readable output")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="write a run's model as ONNX or TorchScript, checked against PyTorch")
    ex.add_argument("model", help="a run folder (runs/NAME) or a checkpoint file it wrote (best.pt)")
    ex.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    ex.add_argument("--out", help="output file (default: model.onnx / model.torchscript.pt in the run folder)")
    ex.add_argument("--check-images", type=int, default=1000, help="real test images to check it on")
    ex.add_argument("--data-dir")
    ex.set_defaults(func=cmd_export)

    rn = sub.add_parser("runs", help="the run registry: every training, its status and best metrics")
    rn.add_argument("--runs", default="runs", help="the folder holding the runs and registry.sqlite")
    rn.add_argument("--status", choices=["running", "finished", "stopped early", "pruned", "interrupted",
                                                     "failed", "crashed"])
    rn.add_argument("--preset")
    rn.add_argument("--dataset")
    rn.add_argument("--name", help="runs whose name contains this")
    rn.add_argument("--scan", metavar="DIR", help="first register the run folders under DIR the registry does not "
                    "know (copied or moved runs)")
    rn.add_argument("--json", action="store_true")
    rn.set_defaults(func=cmd_runs)

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
    sw.set_defaults(func=cmd_sweep)

    cp = sub.add_parser("compare", help="one table comparing runs: parameters, FLOPs, s/epoch, accuracies, verdict")
    cp.add_argument("run", nargs="+", help="run folders, or ids/names from `cnnlab runs`")
    cp.add_argument("--runs", default="runs", help="where the registry lives, for ids and names")
    cp.add_argument("--data-dir")
    cp.set_defaults(func=cmd_compare)

    lb = sub.add_parser("lab", help="run the whole lab (two MLPs, two CNNs) and write one report answering it")
    lb.add_argument("--quick", action="store_true", help="subsets and a few epochs: minutes instead of an hour")
    lb.add_argument("--cifar", help="CIFAR-10 to use if the built-in one is not found (e.g. the JPEG copy)")
    lb.add_argument("--runs", default="runs", help="the lab's runs go to RUNS/lab (or RUNS/lab-quick)")
    lb.add_argument("--data-dir")
    lb.set_defaults(func=cmd_lab)

    ps = sub.add_parser("presets", help="the lab's networks, and where each setting comes from")
    ps.add_argument("name", nargs="?", choices=list(presets.PRESETS), help="one preset's settings and their source")
    ps.set_defaults(func=cmd_presets)
    d = sub.add_parser("datasets", help="the data sets and where each was found")
    d.add_argument("--data-dir")
    d.set_defaults(func=cmd_datasets)

    ca = sub.add_parser("cache", help="where decoded data sets are cached, how much space they take; --clear frees it")
    ca.add_argument("--clear", action="store_true", help="delete the decoded arrays (downloads are kept)")
    ca.set_defaults(func=cmd_cache)

    sv = sub.add_parser("serve", help="a local web page and JSON API that classify uploaded or drawn pictures")
    sv.add_argument("model", help="a run folder (runs/NAME) or a checkpoint file it wrote (best.pt)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="default 8000; 0 picks a free port")
    sv.add_argument("--quiet", action="store_true", help="no log line per request")
    sv.add_argument("--max-batch", type=int, default=64,
                    help="pictures that arrive together go through the model in one pass, up to this many (default 64; "
                         "1: one pass each)")
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    return guarded(args.func, args)


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def guarded(command, *args) -> int:
    """Run a command: 0 when it succeeds; 2 and one line on stderr for a failure the input caused (CnnlabError,
    an unreadable file, a parser's ValueError or UnicodeError, input nested deep enough to exhaust the stack);
    1 and one line naming a saved traceback for anything else, which is cnnlab's own bug."""
    try:
        command(*args)
    except BrokenPipeError:  # the reader went away (`cnnlab runs | head -1`): nobody is left to tell, as for SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 141
    except (CnnlabError, OSError) as e:  # OSError: e.g. an unreadable folder; what was saved stays whole
        print(f"cnnlab: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except RecursionError:
        print("cnnlab: error: the input is nested too deeply to read", file=sys.stderr)
        return 2
    except ValueError as e:  # UnicodeError among them
        print(f"cnnlab: error: {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        with tempfile.NamedTemporaryFile("w", prefix=f"cnnlab-crash-{time.strftime('%Y%m%d-%H%M%S')}-",
                                         suffix=".txt", delete=False) as f:
            f.write(f"cnnlab {cnnlab.__version__}, command: {' '.join(map(str, sys.argv))}\n")
            traceback.print_exc(file=f)
        print(f"cnnlab: internal error ({type(e).__name__}: {one_line(e)[:200]}); this is a bug in cnnlab, not in "
              f"your input: the traceback is in {f.name}, please report it", file=sys.stderr)
        return 1
    return 0
