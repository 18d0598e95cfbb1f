"""``sslbench``: the pipeline's stages as subcommands (DVC calls exactly these)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path

from bench.errors import SSLBenchError
from bench.protocols import BY_ID, COMPLETE, std_column
from bench.protocols import LABELS as PROTOCOL_LABELS


def _context(args):
    from bench.config import load_suite
    from pipeline.plan import load_params

    params = load_params(Path(args.params))
    suite = load_suite(args.suite or params.suite)
    if getattr(args, "seeds", None):
        from dataclasses import asdict

        from bench.schema import build

        params = build(type(params), {**asdict(params), "seeds": args.seeds}, "--seeds")
    return suite, params


def _methods(args, params) -> list[str]:
    from methods.registry import get_method

    names = args.method or list(params.methods) or ["random", "supervised", "simclr", "mocov2", "byol"]
    for name in names:
        get_method(name)
    return names


def cmd_export_folder(args) -> None:
    """Fashion-MNIST as JPEG files in class folders: the streamed-folder path on real images."""
    from bench.data import DEBIAN_FASHION_MNIST, INSTALL_HINT
    from bench.folders import export_fashion_mnist_folder

    if not Path(DEBIAN_FASHION_MNIST, "train-images-idx3-ubyte.gz").is_file():
        raise SSLBenchError(f"Fashion-MNIST is not in {DEBIAN_FASHION_MNIST}; install it: {INSTALL_HINT}")
    out = export_fashion_mnist_folder(args.out, DEBIAN_FASHION_MNIST, limit=args.limit or None)
    print(f"wrote Fashion-MNIST as JPEG files under {out}/train and {out}/val (suite fmnist_folder reads it)")


def cmd_prepare(args) -> None:
    from pipeline.stages import prepare

    suite, params = _context(args)
    print(f"prepared {suite.dataset.name} for suite '{suite.name}' in {prepare(suite)}")
    if params.methods:
        try:
            _print_estimate(suite, params)
        except SSLBenchError as err:  # a bad override is the pretrain stage's to report, for its method
            print(f"no time estimate: {err}")


def _print_estimate(suite, params) -> None:
    """Calibrate this host (a few seconds) and print the pipeline's expected wall time."""
    from pipeline.estimate import summary, write_estimate
    from pipeline.plan import dataset_for, pretraining_data

    dataset = dataset_for(suite)
    estimate = write_estimate(suite, params, dataset, pretraining_data(suite, dataset))
    print(summary(estimate), flush=True)


def _announce(suite, params, method: str, stage: str) -> None:
    """One line before a method's stage: which method of how many, time for it and left in all."""
    from pipeline.estimate import progress_line
    from pipeline.plan import run_plan

    if method not in params.methods:
        return
    run_plan(suite, params, method)  # bad overrides are refused before anything is printed
    line = progress_line(suite, params, method, stage)
    if line:
        print(line, flush=True)


def cmd_estimate(args) -> None:
    suite, params = _context(args)
    if not params.methods:
        raise SSLBenchError(f"params file '{args.params}' lists no methods to estimate.")
    _print_estimate(suite, params)


def cmd_pretrain(args) -> None:
    from pipeline.stages import pretrain

    suite, params = _context(args)
    for method in _methods(args, params):
        _announce(suite, params, method, "pretrain")
        pretrain(suite, params, method, jobs=args.jobs, workers=args.workers,
                 gpus_per_worker=args.gpus_per_worker)


def cmd_evaluate(args) -> None:
    from pipeline.stages import evaluate

    suite, params = _context(args)
    for method in _methods(args, params):
        _announce(suite, params, method, "evaluate")
        rows = evaluate(suite, params, method, jobs=args.jobs)
        summary = ", ".join(f"{r['protocol']}={r['value']:.2f}" for r in rows if r["seed"] == rows[0]["seed"])
        print(f"{method}: {summary}")


def cmd_transfer(args) -> None:
    from pipeline.transfer import transfer

    suite, params = _context(args)
    for method in _methods(args, params):
        rows = transfer(suite, params, method, jobs=args.jobs)
        summary = ", ".join(f"{r['protocol']}={r['value']:.2f}" for r in rows if r["seed"] == rows[0]["seed"])
        print(f"{method}: {summary or 'no ResNet run to transfer'}")


def cmd_leaderboard(args) -> None:
    from pipeline.stages import build_leaderboard

    suite, params = _context(args)
    board = build_leaderboard(suite, _methods(args, params))
    print_leaderboard(board, suite.name)


def cmd_show(args) -> None:
    """Print the committed leaderboard of a suite without recomputing it."""
    import pandas as pd

    from bench import paths

    suite, _ = _context(args)
    path = paths.leaderboard_path(suite.name)
    if not path.is_file():
        raise SSLBenchError(f"no leaderboard at '{path}'; run `dvc repro` (or `sslbench leaderboard`) first.")
    try:
        board = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        raise SSLBenchError(f"leaderboard '{path}' is unreadable; rebuild it with `sslbench leaderboard`.") from None
    print_leaderboard(board, suite.name)
    print(f"table: {path}   metrics: {path.with_name('metrics.json')} (`dvc metrics show`)")


def cmd_run(args) -> None:
    """All stages for all selected methods, in-process (what ``dvc repro`` does, without DVC)."""
    from pipeline.stages import build_leaderboard, evaluate, prepare, pretrain
    from pipeline.transfer import transfer

    suite, params = _context(args)
    methods = _methods(args, params)
    prepare(suite)
    for method in methods:
        pretrain(suite, params, method, jobs=args.jobs, workers=args.workers,
                 gpus_per_worker=args.gpus_per_worker)
        evaluate(suite, params, method, jobs=args.jobs)
        if method in params.transfer:
            transfer(suite, params, method, jobs=args.jobs)
    print_leaderboard(build_leaderboard(suite, methods), suite.name)


def cmd_perf(args) -> None:
    """Benchmark table: training-step efficiency against the bare backbone, views, kNN, extraction."""
    from dataclasses import replace

    from rich.console import Console
    from rich.table import Table

    from bench import paths
    from bench.config import with_precision
    from bench.device import pick_device
    from pipeline.perf import perf_plan, run_perf
    from pipeline.plan import dataset_for

    suite, params = _context(args)
    if args.device:
        suite = replace(suite, device=args.device)
    suite = with_precision(suite, pick_device(suite.device))
    methods = _methods(args, params)
    from methods.registry import get_method

    methods = [m for m in methods if get_method(m).trains]  # baselines without training have no step
    plan = perf_plan(suite, params, methods)  # the board's runs: backbones and hyper-parameters as params.yaml
    if args.profile:
        from bench.io import atomic_write_text
        from pipeline.perf import profile_method

        for run in plan:
            text = profile_method(run, dataset_for(suite))
            atomic_write_text(paths.root() / "results" / "perf" / f"profile-{run.method}.txt", text)
            print(f"{run.method}: operators by self time (results/perf/profile-{run.method}.txt)\n{text}")
        return
    table = run_perf(suite, dataset_for(suite), plan, paths.root() / "results" / "perf")
    out = Table(title=f"sslbench perf — suite '{suite.name}', batch {suite.train.batch_size}, "
                      f"{suite.resolution}px, precision {suite.train.precision} (requested "
                      f"{_requested_precision(args)}), {table['device'][0]} {table['cpu_capability'][0]}, "
                      f"{table['threads'][0]} threads")
    cols = ["method", "backbone", "step_images_per_s", "backbone_images_per_s", "efficiency", "views_per_s",
            "views_over_step", "peak_mem_mb"]
    for col in cols:
        out.add_column(col)
    for _, row in table.iterrows():
        out.add_row(*[f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in cols])
    Console(width=160).print(out)
    print(f"feature extraction: {table['extract_images_per_s'][0]:.0f} images/s; "
          f"kNN 60k x 10k x 512: {table['knn_60k_10k_512_s'][0]:.2f} s")


def _requested_precision(args) -> str:
    from bench.config import load_suite
    from pipeline.plan import load_params

    return load_suite(args.suite or load_params(Path(args.params)).suite).train.precision


def cmd_sweep(args) -> None:
    from pipeline.sweep import load_spec, make_spec, parse_grid
    from pipeline.tune import run_sweep

    if args.spec:
        spec = load_spec(args.spec)
    elif args.method and args.grid:
        param, values = parse_grid(args.grid)
        spec = make_spec(name=args.name or f"{args.method}_{param}", method=args.method, param=param, values=values,
                         suite=args.suite or "tiny", seeds=args.seeds or [0, 1], cpus=args.cpus)
    else:
        raise SSLBenchError("sweep needs a SPEC (bench/sweeps/*.yaml name or path) or --method with --grid.")
    rows = run_sweep(spec, Path.cwd())
    done = sum(r["status"] == COMPLETE for r in rows)
    print(f"sweep {spec.name}: {done}/{len(rows)} trials complete -> {spec.out_dir}/{spec.name}.csv")


def cmd_budget(args) -> None:
    from pipeline.budget import read_baselines, read_rows, report
    from pipeline.sweep import csv_path, load_spec

    spec = load_spec(args.sweep)
    path = csv_path(spec, Path.cwd())
    if not path.is_file():
        raise SSLBenchError(f"budget sweep '{spec.name}' not run yet ({path} does not exist): "
                            f"sslbench sweep {args.sweep}")
    print(report(read_rows(path), read_baselines(Path(args.board or f"results/{spec.suite}/leaderboard.csv"))))


def cmd_claims(args) -> None:
    from pipeline.claims import build

    rows = build(Path(args.ablations), Path(args.out))
    for row in rows:
        print(f"{row['verdict']:>15}  {row['claim']}")
    print(f"wrote {args.out}")


def cmd_convert(args) -> None:
    """A run's backbone in another framework's format (Detectron2: MoCo's key mapping)."""
    from evaluations.detection.convert import write_detectron2

    out = write_detectron2(Path(args.run), Path(args.out) if args.out else None)
    print(f"wrote {out} (Detectron2: MODEL.WEIGHTS {out})")


def cmd_methods(args) -> None:
    from methods.registry import get_method, method_names

    for name in method_names():
        cls = get_method(name)
        print(f"{name:12s} {cls.family:24s} {cls.paper}")


def cmd_suites(args) -> None:
    from bench.config import load_suite, suite_names

    for name in suite_names():
        s = load_suite(name)
        print(f"{name:12s} {s.dataset.name:14s} {s.backbone.name} w{s.backbone.width} {s.resolution}px "
              f"budget {s.budget.value:g} {s.budget.unit}  {s.description}")


def print_leaderboard(board, suite_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sslbench leaderboard — suite '{suite_name}' (top-1 % / AP, mean ± std over seeds)")
    protocols = [p for p in PROTOCOL_LABELS if p in board]
    columns = ["rank", "method", "backbone", *[PROTOCOL_LABELS[p] for p in protocols],
               "seeds", "images", "CPU s", "status"]
    for col in columns:
        table.add_column(col)
    for _, row in board.iterrows():
        cells = [str(row.get("rank", "")), row["method"], row["backbone"]]
        cells += [_mean_std(row[p], row[std_column(p)], BY_ID[p].decimals) for p in protocols]
        cells += [str(row["n_seeds"]), f"{row['images_seen']:.0f}", f"{row['seconds']:.0f}", row["status"]]
        table.add_row(*cells)
    console = Console(width=shutil.get_terminal_size((200, 24)).columns)  # the terminal's (COLUMNS), else 200
    console.print(table)
    for _, row in board.iterrows():
        if isinstance(row.get("notes"), str) and row["notes"]:
            console.print(f"note: {row['method']} ({row['backbone']}): {row['notes']}")


def _mean_std(mean: float, std: float, decimals: int = 2) -> str:
    if mean != mean:  # NaN: not measured
        return "—"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}" if std == std else f"{mean:.{decimals}f} (1 seed)"


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslbench", description=(
        "Reproducible self-supervised learning benchmark: pretrain every method under a matched "
        "budget, evaluate with one declared protocol, publish leaderboards."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, fn, help_text, methods=True):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--suite", help="suite name (bench/suites/*.yaml) or path; default: params.yaml")
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        if methods:
            p.add_argument("--method", action="append", help="method name (repeatable); default: params.yaml")
            p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: params.yaml, then the suite)")
        p.set_defaults(fn=fn)
        return p

    add("prepare", cmd_prepare, "cache the dataset, write the 1%%/10%% label splits and print the expected "
                                "wall time of the pipeline on this host", methods=False)
    add("estimate", cmd_estimate, "calibrate this host (a few seconds) and print the expected wall time of "
                                  "`dvc repro` for params.yaml", methods=False)
    parsers = {}
    for name, fn, text in (
            ("pretrain", cmd_pretrain, "pretrain methods to the suite's budget (resumes interrupted runs)"),
            ("evaluate", cmd_evaluate, "kNN, linear probe and fine-tuning of pretrained backbones "
                                       "-> results/<suite>/rows"),
            ("transfer", cmd_transfer, "detection / instance-segmentation transfer (Mask R-CNN) of pretrained "
                                       "backbones -> results/<suite>/rows/<method>-transfer.csv"),
            ("run", cmd_run, "all stages for all methods, in-process (no DVC)")):
        parsers[name] = add(name, fn, text)
        parsers[name].add_argument(
            "--jobs", type=_count, default=0, metavar="N",
            help="runs (seeds) side by side in N processes, the CPU cores shared between them "
                 "(default 0: one per core on a CPU, one on a GPU)")
    for name in ("pretrain", "run"):
        parsers[name].add_argument(
            "--workers", type=_count, default=0, metavar="N",
            help="each run as a Ray Train job of N data-parallel workers (RAY_ADDRESS joins a cluster; "
                 "otherwise a local Ray on 127.0.0.1)")
        parsers[name].add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                                   help="GPUs per Ray Train worker (default 0: CPU workers, gloo)")
    add("leaderboard", cmd_leaderboard, "aggregate rows into results/<suite>/leaderboard.csv and print it")
    add("show", cmd_show, "print a suite's leaderboard (results/<suite>/leaderboard.csv)", methods=False)
    perf = add("perf", cmd_perf, "benchmark: step images/s vs the bare backbone, views, kNN, extraction")
    perf.add_argument("--device", choices=["cpu", "cuda"], help="override the suite's device")
    perf.add_argument("--profile", action="store_true",
                      help="instead of the table: torch profiler of each method's step, operators by self time")
    sweep = sub.add_parser("sweep", help="Ray Tune ablation sweep -> results/ablations/<sweep>.csv (resumes)")
    sweep.add_argument("spec", nargs="?", help="sweep name (bench/sweeps/*.yaml) or path to a spec")
    sweep.add_argument("--method", help="method to sweep (with --grid)")
    sweep.add_argument("--grid", help="param=v1,v2,... (with --method)")
    sweep.add_argument("--suite", help="suite for --grid sweeps (default: tiny)")
    sweep.add_argument("--seeds", type=int, nargs="+", help="seeds for --grid sweeps (default: 0 1)")
    sweep.add_argument("--cpus", type=int, default=1, help="CPUs per trial, 1 or 2 (default: 1)")
    sweep.add_argument("--name", help="sweep name for --grid sweeps (default: <method>_<param>)")
    sweep.set_defaults(fn=cmd_sweep)
    budget = sub.add_parser("budget", help="budget curves: Kendall's tau vs the largest budget, baseline crossings")
    budget.add_argument("sweep", nargs="?", default="budget", help="budget sweep name or spec path (default: budget)")
    budget.add_argument("--board", help="leaderboard with random / pixels (default: results/<suite>/leaderboard.csv)")
    budget.set_defaults(fn=cmd_budget)
    claims = sub.add_parser("claims", help="paper-claim verdicts from results/ablations -> results/claims.csv")
    claims.add_argument("--ablations", default="results/ablations", help="folder of sweep CSVs")
    claims.add_argument("--out", default="results/claims.csv", help="ledger CSV to write")
    claims.set_defaults(fn=cmd_claims)
    convert = sub.add_parser("convert", help="write a run's ResNet backbone as Detectron2 weights (MoCo's key mapping)")
    convert.add_argument("--to", required=True, choices=["detectron2"], help="target format")
    convert.add_argument("run", metavar="RUN", help="run directory, e.g. runs/tiny/simclr/seed0")
    convert.add_argument("-o", "--out", metavar="OUT", help="output pickle (default: RUN/detectron2.pkl)")
    convert.set_defaults(fn=cmd_convert)
    export = sub.add_parser("export-folder", help="write Fashion-MNIST as an ImageNet-style JPEG folder (train/, val/)")
    export.add_argument("--out", default="data/fmnist_folder", help="folder to write (default: data/fmnist_folder)")
    export.add_argument("--limit", type=_count, default=0, metavar="N", help="at most N images a split (default: all)")
    export.set_defaults(fn=cmd_export_folder)
    sub.add_parser("methods", help="list registered methods").set_defaults(fn=cmd_methods)
    sub.add_parser("suites", help="list suites").set_defaults(fn=cmd_suites)
    return parser


PER_METHOD = {"pretrain", "evaluate", "transfer"}  # commands run method by method: one failure does not stop the others


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Exit codes: 0 ok, 2 bad input (one sentence), 1 internal failure, 130 interrupted.

    An unexpected exception becomes one line ``sslbench: error: ...`` naming the stage,
    the method and the exception; the full traceback goes to a log file named in that line.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 0
    suite = None
    try:
        if args.command not in PER_METHOD:
            args.fn(args)
            return 0
        suite, params = _context(args)
        codes = [_run_method(args, suite, method) for method in _methods(args, params)]
        return 1 if 1 in codes else max(codes, default=0)
    except SSLBenchError as err:
        _fail(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        print("sslbench: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the catch-all: one line here, the traceback in a log
        return _internal_error(err, args.command, getattr(suite, "name", None), None)


def _run_method(args, suite, method: str) -> int:
    """One method of ``pretrain``/``evaluate``; the outcome is reported here, the others still run."""
    log = _error_log(suite.name, method, args.command)
    try:
        args.fn(argparse.Namespace(**{**vars(args), "method": [method]}))
    except SSLBenchError as err:
        _fail(str(err))
        return err.exit_code
    except Exception as err:  # noqa: BLE001 - KeyboardInterrupt still stops everything
        return _internal_error(err, args.command, suite.name, method)
    with contextlib.suppress(OSError):
        log.unlink(missing_ok=True)  # a retry that succeeds clears the old failure
    return 0


def _error_log(suite: str | None, method: str | None, command: str) -> Path:
    from bench import paths

    folder = paths.root() / "runs" / (suite or "") / "errors"
    return folder / (f"{method}.{command}.log" if method else f"{command}.log")


def _fail(message: str) -> None:
    _close_progress_bars()
    print("sslbench: error: " + " ".join(message.splitlines()), file=sys.stderr)


def _close_progress_bars() -> None:
    """A run that raised leaves its progress bar open: clear it so the error line starts clean."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


def _internal_error(err: BaseException, command: str, suite: str | None, method: str | None) -> int:
    """Report an unexpected exception in one line, with the traceback written to a log file."""
    import time
    import traceback

    what = f"{command} of method '{method}'" if method else command
    detail = " ".join(str(err).split())
    detail = f"{type(err).__name__}: {detail[:200]}" if detail else type(err).__name__
    if isinstance(err, MemoryError) or "OutOfMemoryError" in type(err).__name__:
        detail += " (out of memory: lower train.batch_size or eval.batch_size in the suite)"
    log = _error_log(suite, method, command)
    text = "".join(traceback.format_exception(err))
    header = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} sslbench {command} suite={suite} method={method}\n"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(header + text)
    except OSError as log_err:
        _fail(f"{what} failed: {detail}; the traceback follows (could not write {log}: {log_err.strerror}).")
        print(text, file=sys.stderr)
        return 1
    _fail(f"{what} failed: {detail}; traceback in {log}; re-run the same command to retry.")
    return 1


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    sys.exit(main())
