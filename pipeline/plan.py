"""One run plan: every run a stage works on, built once from params.yaml and the CLI,
and one fan-out over it.

A ``Run`` is (suite variant, method, backbone, seed, resolved hyper-parameters, run
directory). ``run_plan`` builds a method's runs from its ``params.yaml`` entry: the
``backbones`` key is a sibling of the hyper-parameter overrides, not one of them.
``for_each_run`` runs a function over a plan, side by side in processes
(pipeline/parallel.py); pretrain, evaluate, transfer and perf use it, and the sweeps'
Tune trials resolve hyper-parameters through ``method_hparams`` as the plan does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench import paths
from bench.backbones import backbone_preset
from bench.config import Params, Suite
from bench.data import Dataset, at_resolution, load_cache, load_raw, pretraining_view
from bench.device import configure_threads
from bench.errors import SSLBenchError
from methods.registry import get_method, method_names, resolve_hparams
from pipeline.parallel import job_plan, run_each


@dataclass(frozen=True)
class Run:
    suite: Suite  # the suite with this run's backbone (and, under for_each_run, its thread share)
    method: str
    backbone: str
    seed: int
    hparams: object  # the method's resolved Hparams
    out_dir: Path
    position: int = 0  # its place in the plan (a progress bar's row)


def load_params(path: Path = Path("params.yaml")) -> Params:
    """``params.yaml`` checked against the registered methods (bench.config.load_params)."""
    from bench.config import load_params as load

    return load(path, method_names())


def seeds_for(suite: Suite, params: Params) -> list[int]:
    return list(params.seeds) if params.seeds else list(suite.seeds)


def split_overrides(method: str, entry: dict | None) -> tuple[dict, list[str] | None]:
    """A method's params.yaml entry as (hyper-parameter overrides, ``backbones`` list or None)."""
    overrides = dict(entry or {})
    backbones = overrides.pop("backbones", None)
    if backbones is not None and (not isinstance(backbones, list) or not all(isinstance(b, str) for b in backbones)):
        raise SSLBenchError(f"methods.{method}.backbones must be a list of backbone names, got {backbones!r}.")
    return overrides, backbones


def method_hparams(suite: Suite, method: str, entry: dict | None):
    """The hyper-parameters a method runs with: its paper defaults, the suite's optimizer choice
    and its params.yaml entry (without ``backbones``)."""
    overrides, _ = split_overrides(method, entry)
    return resolve_hparams(method, overrides, suite.optimizer.as_override())


def run_plan(suite: Suite, params: Params, method: str, runs: Path | None = None) -> list[Run]:
    """Every run of ``method``: each backbone it lists (default: the suite's, which keeps the short
    run path) times each seed. Bad overrides are refused here, before any data is loaded."""
    entry = params.methods.get(method)
    _, backbones = split_overrides(method, entry)
    backbones = backbones or [suite.backbone.name]
    if getattr(get_method(method), "backbone_name", None) and backbones != [suite.backbone.name]:
        raise SSLBenchError(f"methods.{method}.backbones: not applicable, '{method}' has no backbone to vary.")
    hp = method_hparams(suite, method, entry)
    plan = []
    for name in backbones:
        variant = None if name == suite.backbone.name else name
        sub = replace(suite, backbone=backbone_preset(name, suite.backbone)) if variant else suite
        for seed in seeds_for(suite, params):
            plan.append(Run(sub, method, sub.backbone.name, seed, hp,
                            paths.run_dir(suite.name, method, seed, runs, variant), len(plan)))
    return plan


def with_threads(suite: Suite, threads: int) -> Suite:
    return replace(suite, train=replace(suite.train, threads=threads)) if threads else suite


def for_each_run(plan: list[Run], fn: Callable[[Run], object], jobs: int = 0) -> list:
    """``[fn(run) for run in plan]``, side by side in ``jobs`` processes (0 = one per CPU core),
    each run's suite carrying its share of the threads. ``fn`` must be a module-level function."""
    if not plan:
        return []
    jobs, threads = job_plan(jobs, len(plan), plan[0].suite.device)
    configure_threads(threads)
    work = [replace(run, suite=with_threads(run.suite, threads)) for run in plan]
    return run_each(fn, work, jobs, threads)


def pretraining_data(suite: Suite, dataset: Dataset | None = None) -> Dataset:
    """What a run of ``suite`` pretrains on: its dataset (``dataset_for``) cut to ``pretrain_subset``."""
    return pretraining_view(dataset or dataset_for(suite), suite.dataset.pretrain_subset)


def dataset_for(suite: Suite) -> Dataset:
    """The suite's prepared dataset (``sslbench prepare``), else the raw one."""
    directory = paths.prepared_dir(suite.name)
    dataset = load_cache(directory) if (directory / "dataset.json").is_file() else load_raw(suite.dataset)
    return at_resolution(dataset, suite.resolution)
