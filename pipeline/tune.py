"""Run a sweep with Ray Tune: grid over (method x value x seed), retries, resume with ``Tuner.restore``."""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path

from bench.distributed import ray_init
from pipeline.sweep import SweepSpec, csv_path, run_trial, sweep_dir, write_csv


def _trainable(config: dict) -> None:
    from ray import tune

    spec, root = SweepSpec(**config["spec"]), Path(config["root"])
    os.environ["OMP_NUM_THREADS"] = str(spec.cpus)
    # grids written before ``trial`` existed carry value and seed as their own axes
    trial = config.get("trial") or {"method": spec.method, "value": config["value"], "seed": config["seed"]}
    row = run_trial(spec, root, trial["value"], trial["seed"], trial["method"])
    tune.report({k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})


def run_sweep(spec: SweepSpec, root: Path, out: Path | None = None) -> list[dict]:
    """Run (or resume) every missing trial of ``spec``; write and return the CSV rows."""
    from ray import tune

    ray_init(num_cpus=max(spec.cpus, os.cpu_count() or 1))
    experiment = sweep_dir(spec, root) / "tune"
    trainable = tune.with_resources(_trainable, {"cpu": spec.cpus})
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    else:
        trials = [{"method": m, "value": v, "seed": s} for m, v, s in spec.trials()]
        # each trial carries its own (method, value, seed); value_seeds (int keys) stays out of Ray's config
        space = {"spec": asdict(replace(spec, value_seeds={})), "root": str(root), "trial": tune.grid_search(trials)}
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent or None),
            run_config=tune.RunConfig(name="tune", storage_path=str(experiment.parent),
                                      failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                      verbose=0))
    tuner.fit()
    return write_csv(spec, root, out or csv_path(spec, root))
