"""The pipeline stages (prepare, pretrain, evaluate, leaderboard) as plain functions.

The CLI and DVC call these; each stage reads the previous one's files only.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from bench import paths
from bench.backbones import BackboneCfg, backbone_preset, build_backbone
from bench.config import Params, Suite
from bench.data import Dataset, label_fraction_split, load_cache, load_raw, pretraining_view, save_cache
from bench.engine import ENCODER, RUN_JSON, RunSpec, configure_threads, pick_device, read_record, train
from bench.errors import SSLBenchError
from bench.io import atomic_write_text, safe_torch_load
from bench.results import leaderboard, make_rows, read_rows, write_leaderboard, write_rows
from bench.views import ViewGenerator
from evaluations.features import cached, extract, file_digest
from evaluations.knn import knn_accuracy
from evaluations.linear import linear_probe
from methods.registry import resolve_hparams

SEMI_FRACTIONS = {"semi_1pct": 0.01, "semi_10pct": 0.10}


def prepare(suite: Suite) -> Path:
    """Cache the dataset as uint8 tensors and write the class-balanced label splits."""
    out = paths.prepared_dir(suite.name)
    ds = load_raw(suite.dataset)
    save_cache(ds, out)
    for name, fraction in SEMI_FRACTIONS.items():
        idx = label_fraction_split(ds.train.labels, fraction, seed=0)
        atomic_write_text(out / "splits" / f"{name}.txt", "".join(f"{i}\n" for i in idx.tolist()))
    return out


def dataset_for(suite: Suite) -> Dataset:
    directory = paths.prepared_dir(suite.name)
    return load_cache(directory) if (directory / "dataset.json").is_file() else load_raw(suite.dataset)


def seeds_for(suite: Suite, params: Params) -> list[int]:
    return list(params.seeds) if params.seeds else list(suite.seeds)


def run_plan(suite: Suite, params: Params, method: str, runs: Path | None = None):
    """Every (suite-with-backbone, hyper-parameters, seed, run directory) that ``method`` runs.

    A method's params entry may list ``backbones`` (e.g. ``[resnet18, vit_tiny]``);
    the suite's own backbone is the default and keeps the short run path.
    """
    overrides = dict(params.methods.get(method) or {})
    backbones = overrides.pop("backbones", None) or [suite.backbone.name]
    if not isinstance(backbones, list) or not all(isinstance(b, str) for b in backbones):
        raise SSLBenchError(f"methods.{method}.backbones must be a list of backbone names, got {backbones!r}.")
    hp = resolve_hparams(method, overrides, suite.optimizer.as_override())
    for name in backbones:
        variant = None if name == suite.backbone.name else name
        sub = replace(suite, backbone=backbone_preset(name, suite.backbone)) if variant else suite
        for seed in seeds_for(suite, params):
            yield sub, hp, seed, paths.run_dir(suite.name, method, seed, runs, variant)


def pretrain(suite: Suite, params: Params, method: str, runs: Path | None = None,
             progress_bar: bool = True) -> list[dict]:
    """Train ``method`` for every backbone and seed; diverged runs are recorded, not raised."""
    plan = list(run_plan(suite, params, method, runs))  # refuses bad overrides before loading data
    dataset = pretraining_view(dataset_for(suite), suite.dataset.pretrain_subset)
    records = []
    for sub, hp, seed, out in plan:
        record = train(RunSpec(sub, method, seed, hp, out, suite.device), dataset, progress_bar=progress_bar)
        tqdm.write(f"{method} ({sub.backbone.name}) seed {seed}: {record['status']}, {record['steps']} steps, "
                   f"{record['images_seen']} images, {record['seconds']:.0f} s")
        records.append(record)
    return records


def load_encoder(run: Path) -> tuple[torch.nn.Module, dict]:
    record = read_record(run / RUN_JSON)
    encoder = build_backbone(BackboneCfg(**record["backbone_cfg"]))
    try:
        encoder.load_state_dict(safe_torch_load(run / ENCODER))
    except RuntimeError:
        raise SSLBenchError(f"checkpoint '{run / ENCODER}' does not match backbone {record['backbone']}.") from None
    return encoder, record


def evaluate_run(suite: Suite, run: Path, dataset: Dataset) -> list[dict]:
    """kNN (k = 20, 200) and linear probe of one run's backbone; NaN rows if it diverged."""
    encoder, record = load_encoder(run)
    wanted = []
    if "knn" in suite.eval.protocols:
        wanted += [f"knn_k{k}" for k in suite.eval.knn.k]
    if "linear" in suite.eval.protocols:
        wanted.append("linear")
    if record["status"] != "complete":
        return make_rows(record, {p: math.nan for p in wanted})
    device = pick_device(suite.device)
    views = ViewGenerator(None, dataset.mean, dataset.std, device)

    def compute():
        return {split: extract(encoder, getattr(dataset, split).images,
                               lambda x: views.plain(x, suite.resolution), suite.eval.batch_size, device,
                               desc=f"{record['method']} s{record['seed']} {split}")
                for split in ("train", "test")}

    key = f"{record['method']}-{record['backbone']}-seed{record['seed']}-{file_digest(run / ENCODER)}"
    feats = cached(paths.features_cache(suite.name), key, compute)
    tr, te = feats["train"], feats["test"]
    ytr, yte = dataset.train.labels, dataset.test.labels
    metrics: dict[str, float] = {}
    if "knn" in suite.eval.protocols:
        acc = knn_accuracy(tr, ytr, te, yte, suite.eval.knn.k, suite.eval.knn.temperature, dataset.num_classes)
        metrics.update({f"knn_k{k}": v for k, v in acc.items()})
    if "linear" in suite.eval.protocols:
        metrics["linear"] = linear_probe(tr, ytr, te, yte, dataset.num_classes, suite.eval.linear,
                                         seed=record["seed"])["top1"]
    return make_rows(record, metrics)


def evaluate(suite: Suite, params: Params, method: str, runs: Path | None = None) -> list[dict]:
    configure_threads(suite.train.threads)
    plan = list(run_plan(suite, params, method, runs))
    dataset = dataset_for(suite)
    rows = []
    for sub, _, _, out in plan:
        rows += evaluate_run(sub, out, dataset)
    write_rows(paths.rows_path(suite.name, method), rows)
    return rows


def build_leaderboard(suite: Suite, methods: list[str]):
    rows = read_rows([paths.rows_path(suite.name, m) for m in methods])
    board = leaderboard(rows)
    write_leaderboard(board, paths.results_dir(suite.name))
    return board
