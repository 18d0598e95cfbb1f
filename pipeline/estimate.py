"""Expected wall time of a suite's pipeline on this host, and where a running pipeline is.

``calibrate`` times a few training steps of every selected method (about half a second
each, at the suite's resolved precision and with the threads each run will have when
seeds run side by side), a feature extraction and a fine-tuning step, and turns them into
seconds per method for pretraining and for evaluation. ``sslbench prepare`` (the first
stage of ``dvc repro``) prints the total and writes ``runs/<suite>/estimate.json``; each
``pretrain`` / ``evaluate`` stage then prints one line saying which method of how many it
is on and how much is left, e.g. ``method 7 of 20 (simclr), seeds 0-1: about 1:10 for this
method, about 41 min left in all``. Estimates, not promises: a shared host drifts.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import torch

from bench import paths
from bench.config import Params, Suite, with_precision
from bench.data import Dataset
from bench.io import atomic_write_text
from bench.precision import median_seconds
from bench.protocols import FAMILY_KNN, FAMILY_LINEAR, FAMILY_SEMI

PARALLEL_SLOWDOWN = 1.1  # two one-thread runs side by side share memory bandwidth
STAGE_OVERHEAD_S = 3.5  # process start, imports, data loading and DVC, per stage (workers forked)


def _layout(suite: Suite, params: Params) -> tuple[int, int, int]:
    """(seeds, processes side by side, torch threads each) as ``pretrain`` will run them."""
    from pipeline.parallel import job_plan
    from pipeline.plan import seeds_for

    seeds = len(seeds_for(suite, params))
    jobs, threads = job_plan(0, seeds, suite.device)
    return seeds, jobs, threads or torch.get_num_threads()


def calibrate(suite: Suite, params: Params, dataset: Dataset, pretraining: Dataset) -> dict:
    """Seconds per method (pretrain, evaluate) on this host; a few seconds in all."""
    from bench.device import pick_device
    from evaluations.features import extract
    from methods.registry import get_method
    from pipeline.engine import total_steps_for
    from pipeline.perf import _training_step, backbone_step, perf_plan

    device = pick_device(suite.device)
    suite = with_precision(suite, device)
    seeds, jobs, threads = _layout(suite, params)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        steps = total_steps_for(suite, len(pretraining.train))
        per_method = {}
        encoder = None
        for method in params.methods:
            if not get_method(method).trains:
                per_method[method] = {"pretrain_s": 0.0}
                continue
            per_method[method] = {"pretrain_s": 0.0}
            for run in perf_plan(suite, params, [method]):  # the board's runs: one per listed backbone
                step, model, *_ = _training_step(run, pretraining)
                per_method[method]["pretrain_s"] += steps * median_seconds(step, 1, 3)
                encoder = encoder or model.encoder
        evaluate_s = _evaluation_seconds(suite, dataset, encoder, device, extract, backbone_step)
    finally:
        torch.set_num_threads(before)
    rounds = math.ceil(seeds / jobs)
    slow = PARALLEL_SLOWDOWN if jobs > 1 else 1.0
    for entry in per_method.values():
        entry["pretrain_s"] = round(rounds * slow * entry["pretrain_s"] + STAGE_OVERHEAD_S, 1)
        entry["evaluate_s"] = round(rounds * slow * evaluate_s + STAGE_OVERHEAD_S, 1)
    return {"suite": suite.name, "precision": suite.train.precision, "device": str(device),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "seeds": seeds, "jobs": jobs,
            "threads": threads, "methods": per_method,
            "total_s": round(sum(e["pretrain_s"] + e["evaluate_s"] for e in per_method.values()), 1)}


def _evaluation_seconds(suite: Suite, dataset: Dataset, encoder, device, extract, backbone_step) -> float:
    """One seed's evaluation: extraction of both splits, kNN, the linear probe and fine-tuning."""
    if encoder is None:
        return 0.0
    from bench.views import ViewGenerator

    plain = ViewGenerator(None, dataset.mean, dataset.std, device)
    sample = dataset.train.images[:1024]
    def extract_sample():
        extract(encoder, sample, lambda x: plain.plain(x, suite.resolution), suite.eval.batch_size, device,
                desc=None, precision=suite.train.precision)

    per_image = median_seconds(extract_sample, 1, 3) / len(sample)
    n_train, n_test = len(dataset.train), len(dataset.test)
    seconds = (n_train + n_test) * per_image
    protocols = suite.eval.protocols
    if FAMILY_KNN in protocols:  # top-k over the whole bank: about linear in train x test
        seconds += 4.0 * (n_train * n_test) / (60000 * 10000)
    if FAMILY_LINEAR in protocols:
        seconds += 2.0 * suite.eval.linear.epochs * n_train / (20 * 60000)
    if FAMILY_SEMI in protocols:
        step = backbone_step(encoder, dataset, replace(suite, train=replace(suite.train,
                                                                            batch_size=suite.eval.semi.batch_size)),
                             device)
        per_train_image = median_seconds(step, 1, 3) / suite.eval.semi.batch_size
        cfg, n = suite.eval.semi, n_train
        seen = cfg.epochs_1pct * math.ceil(0.01 * n) + cfg.epochs_10pct * math.ceil(0.10 * n)
        seconds += seen * per_train_image + 2 * n_test * per_image
    return seconds


def estimate_path(suite: Suite) -> Path:
    return paths.root() / "runs" / suite.name / "estimate.json"


def write_estimate(suite: Suite, params: Params, dataset: Dataset, pretraining: Dataset) -> dict:
    estimate = calibrate(suite, params, dataset, pretraining)
    atomic_write_text(estimate_path(suite), json.dumps(estimate, indent=1))
    return estimate


def read_estimate(suite: Suite) -> dict | None:
    try:
        return json.loads(estimate_path(suite).read_text())
    except (OSError, ValueError):
        return None


def clock(seconds: float) -> str:
    """``1:10`` under an hour, ``about 41 min`` style is left to the caller."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def summary(estimate: dict) -> str:
    methods = estimate["methods"]
    pretrain = sum(e["pretrain_s"] for e in methods.values())
    evaluate = sum(e["evaluate_s"] for e in methods.values())
    return (f"expected wall time on this host ({estimate['device']} {estimate['cpu_capability']}, precision "
            f"{estimate['precision']}, {estimate['seeds']} seeds in {estimate['jobs']} process(es) of "
            f"{estimate['threads']} thread(s)): about {pretrain / 60:.0f} min pretraining + {evaluate / 60:.0f} min "
            f"evaluation = {estimate['total_s'] / 60:.0f} min for {len(methods)} methods")


def _done(suite: Suite, method: str, stage: str, seeds: list[int]) -> bool:
    """Whether ``stage`` of ``method`` looks finished (all seeds' run.json; a rows file newer than them)."""
    runs = [paths.run_dir(suite.name, method, s) / "run.json" for s in seeds]
    if not all(r.is_file() for r in runs):
        return False
    if stage == "pretrain":
        return True
    rows = paths.rows_path(suite.name, method)
    return rows.is_file() and rows.stat().st_mtime >= max(r.stat().st_mtime for r in runs)


def progress_line(suite: Suite, params: Params, method: str, stage: str) -> str | None:
    """Where the pipeline is, for the line a stage prints before it starts (None without an estimate)."""
    from pipeline.plan import seeds_for

    estimate = read_estimate(suite)
    methods = list(params.methods)
    if not estimate or method not in methods or method not in estimate["methods"]:
        return None
    seeds = seeds_for(suite, params)
    left = 0.0
    for name in methods:
        entry = estimate["methods"].get(name, {})
        for part in ("pretrain", "evaluate"):
            current = name == method and part == stage
            if current or not _done(suite, name, part, seeds):
                left += entry.get(f"{part}_s", 0.0)
    this = estimate["methods"][method][f"{stage}_s"]
    span = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
    return (f"{stage} method {methods.index(method) + 1} of {len(methods)} ({method}), {span}: about "
            f"{clock(this)} for this method, about {math.ceil(left / 60)} min left in all")
