"""Ablation sweeps: Ray Tune grid over (method x value x seed); each trial = pretrain + kNN + linear.

A spec sweeps one ``method`` or lists several in ``methods``; ``value_seeds`` gives some values their own
seeds (``{1: [0, 1], 2: [0]}``; other values use ``seeds``). The suite parameter ``budget`` multiplies the
suite's pretraining budget: each value is its own matched-budget run (schedule and EMA momenta follow its length).

Trial results live as ``row.json`` beside each run, so a restarted sweep (``Tuner.restore``)
never recomputes finished trials and ``results/ablations/<sweep>.csv`` is rebuilt from them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from bench.config import SWEEPS_DIR
from bench.errors import SSLBenchError, choices
from bench.io import atomic_write_text
from bench.protocols import FAMILY_KNN, FAMILY_LINEAR, KNN20, KNN200, LINEAR

METRICS = [KNN20, KNN200, LINEAR]  # a trial = pretrain + kNN + linear
COLUMNS = ["suite", "method", "parameter", "value", "seed", *METRICS, "seconds", "images_seen", "status"]
SUITE_PARAMS = {"batch_size", "ema_horizon_cap", "budget"}  # swept on the suite, not on the method's hparams


@dataclass(frozen=True)
class SweepSpec:
    name: str
    method: str = ""
    param: str = ""
    values: list = field(default_factory=list)
    suite: str = "tiny"
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    cpus: int = 1
    max_failures: int = 2
    max_concurrent: int = 0  # 0 = as many as the CPUs allow
    methods: list[str] = field(default_factory=list)  # several methods in one grid (else ``method``)
    value_seeds: dict = field(default_factory=dict)  # value -> its seeds (else ``seeds``)
    out_dir: str = "results/ablations"  # where <name>.csv is written, relative to the project root

    def method_list(self) -> list[str]:
        return list(self.methods) or [self.method]

    def seeds_for(self, value) -> list[int]:
        return list(self.value_seeds.get(value, self.seeds))

    def trials(self) -> list[tuple[str, object, int]]:
        """Every grid point (method, value, seed), in CSV order."""
        return [(m, v, s) for m in self.method_list() for v in self.values for s in self.seeds_for(v)]


def _parse_value(text: str):
    value = yaml.safe_load(text)
    return value if isinstance(value, (int, float, bool, str)) else text


def parse_grid(grid: str) -> tuple[str, list]:
    """``momentum=0,0.9,0.99`` -> ("momentum", [0, 0.9, 0.99])."""
    param, sep, values = grid.partition("=")
    if not sep or not param or not values:
        raise SSLBenchError(f"--grid '{grid}' must look like param=v1,v2,...")
    return param.strip(), [_parse_value(v.strip()) for v in values.split(",")]


def load_spec(name_or_path: str) -> SweepSpec:
    """Load ``bench/sweeps/<name>.yaml`` or a path to a YAML spec."""
    path = Path(name_or_path)
    if not path.is_file():
        path = SWEEPS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
        raise SSLBenchError(f"unknown sweep '{name_or_path}'; valid choices are: {choices(names)}.")
    data = yaml.safe_load(path.read_text()) or {}
    known = set(SweepSpec.__dataclass_fields__)
    for key in data:
        if key not in known:
            raise SSLBenchError(f"unknown key '{key}' in sweep '{path}'; valid choices are: {choices(known)}.")
    data.setdefault("name", path.stem)
    return make_spec(**data)


def make_spec(**fields) -> SweepSpec:
    """Validate a spec: registered methods, known parameter, 1-2 CPUs per trial, seeds for known values."""
    from methods.registry import get_method

    spec = SweepSpec(**fields)
    if bool(spec.method) == bool(spec.methods):
        raise SSLBenchError(f"sweep '{spec.name}' needs either 'method' or 'methods', not both or neither.")
    for method in spec.method_list():
        params = set(get_method(method).Hparams.__dataclass_fields__) | SUITE_PARAMS
        if spec.param not in params:
            raise SSLBenchError(f"sweep param '{spec.param}' is not a hyper-parameter of {method}; "
                                f"valid choices are: {choices(params)}.")
    if spec.cpus not in (1, 2):
        raise SSLBenchError(f"sweep key 'cpus' must be 1 or 2, got {spec.cpus!r}.")
    if not spec.values or not spec.seeds or not all(spec.seeds_for(v) for v in spec.values):
        raise SSLBenchError(f"sweep '{spec.name}' needs at least one value and one seed per value.")
    unknown = [v for v in spec.value_seeds if v not in spec.values]
    if unknown:
        raise SSLBenchError(f"sweep '{spec.name}': value_seeds names {unknown}, not in values {spec.values}.")
    return spec


def sweep_dir(spec: SweepSpec, root: Path) -> Path:
    return root / "runs" / "sweeps" / spec.name


def csv_path(spec: SweepSpec, root: Path) -> Path:
    return root / spec.out_dir / f"{spec.name}.csv"


def run_path(spec: SweepSpec, root: Path, value, seed: int, method: str = "") -> Path:
    runs = sweep_dir(spec, root) / "runs"
    if spec.methods:  # one folder per method; single-method sweeps keep their historical layout
        runs = runs / (method or spec.method)
    return runs / f"{spec.param}={value}" / f"seed{seed}"


def apply_suite_param(suite, param: str, value):
    """The suite with a swept suite parameter set (``budget``: a multiple of the suite's own budget)."""
    if param == "budget":
        return replace(suite, budget=replace(suite.budget, value=suite.budget.value * value))
    return replace(suite, train=replace(suite.train, **{param: value}))


def run_trial(spec: SweepSpec, root: Path, value, seed: int, method: str = "") -> dict:
    """Pretrain + evaluate one (method, value, seed); reuse a finished trial's ``row.json``."""
    from bench.config import load_suite
    from pipeline.engine import RunSpec, train
    from pipeline.plan import dataset_for, load_params, method_hparams, pretraining_data
    from pipeline.stages import evaluate_run

    method = method or spec.method
    out = run_path(spec, root, value, seed, method)
    done = out / "row.json"
    if done.is_file():
        return json.loads(done.read_text())
    os.chdir(root)  # the engine and stages resolve data/ and runs/ from the project root
    suite = load_suite(spec.suite)
    suite = replace(suite, train=replace(suite.train, threads=spec.cpus),  # trials share the cores
                    eval=replace(suite.eval, protocols=[FAMILY_KNN, FAMILY_LINEAR]))
    entry = dict(load_params(root / "params.yaml").methods.get(method) or {})  # the board's overrides
    if spec.param in SUITE_PARAMS:
        suite = apply_suite_param(suite, spec.param, value)
    else:
        entry[spec.param] = value
    hp = method_hparams(suite, method, entry)  # as pipeline/plan.py resolves the board's runs
    data = dataset_for(suite)
    record = train(RunSpec(suite, method, seed, hp, out, suite.device),
                   pretraining_data(suite, data), progress_bar=False)
    metrics = {r["protocol"]: r["value"] for r in evaluate_run(suite, out, data)}
    row = {"suite": spec.suite, "method": method, "parameter": spec.param, "value": value, "seed": seed,
           **{k: metrics.get(k, "") for k in METRICS},
           "seconds": record["seconds"], "images_seen": record["images_seen"], "status": record["status"]}
    atomic_write_text(done, json.dumps(row))
    return row


def write_csv(spec: SweepSpec, root: Path, out: Path) -> list[dict]:
    """One row per grid point (method x value x seed), from the trials' row files; missing = status ``missing``."""
    rows = []
    for method, value, seed in spec.trials():
        done = run_path(spec, root, value, seed, method) / "row.json"
        row = json.loads(done.read_text()) if done.is_file() else {"status": "missing"}
        rows.append({**row, "suite": spec.suite, "method": method, "parameter": spec.param,
                     "value": value, "seed": seed})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    return rows
