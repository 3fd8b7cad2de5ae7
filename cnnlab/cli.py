"""The `cnnlab` command: train, evaluate, report, predict, export, serve, runs, sweep, compare, lab and more.

Any CnnlabError (bad input, unreadable file, model that does not fit the data) is printed as one line on
stderr with exit status 2; nothing already saved is touched. No traceback ever reaches the terminal: `guarded`
is the last line of defence for whatever a command lets escape.
"""

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import cnnlab
from cnnlab import cli_parser
from cnnlab.core import config, errors
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
    serve(Path(args.model), args.host, args.port, args.quiet, args.max_batch)


COMMANDS = {"train": cmd_train, "summary": cmd_summary, "evaluate": cmd_evaluate, "report": cmd_report,
            "predict": cmd_predict, "export": cmd_export, "runs": cmd_runs, "sweep": cmd_sweep, "compare": cmd_compare,
            "lab": cmd_lab, "presets": cmd_presets, "datasets": cmd_datasets, "cache": cmd_cache, "serve": cmd_serve}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = cli_parser.parser().parse_args(argv)
    args.argv = argv
    return guarded(COMMANDS[args.command], args)


def one_line(e: BaseException) -> str:
    return errors.one_line(e) or type(e).__name__


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
