"""The pipeline stages (prepare, pretrain, evaluate, leaderboard) as plain functions.

The CLI and DVC call these; each stage reads the previous one's files only.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from bench import paths
from bench.backbones import BackboneCfg, build_backbone
from bench.config import Params, Suite
from bench.data import OWN_SPLIT, Dataset, at_resolution, load_raw, save_cache, semi_split
from bench.device import pick_device
from bench.errors import SSLBenchError
from bench.io import atomic_write_text, safe_torch_load
from bench.precision import autocast_for
from bench.protocols import (
    COMPLETE,
    FAMILY_KNN,
    FAMILY_LINEAR,
    FAMILY_SEMI,
    LINEAR,
    SEMI_1PCT,
    SEMI_FRACTIONS,
    knn_id,
    requested,
)
from bench.runs import CHECKPOINT, ENCODER, RUN_JSON, read_record
from bench.views import ViewGenerator
from evaluations.features import cached, extract, file_digest
from evaluations.knn import knn_accuracy
from evaluations.linear import linear_probe
from methods.base import Method
from methods.registry import get_method, resolve_hparams
from pipeline.engine import RunSpec, build_method, train
from pipeline.plan import Run, dataset_for, for_each_run, pretraining_data, run_plan
from pipeline.results import leaderboard, make_rows, read_rows, write_leaderboard, write_rows


def prepare(suite: Suite) -> Path:
    """Cache the dataset as uint8 tensors and write the class-balanced label splits."""
    out = paths.prepared_dir(suite.name)
    ds = at_resolution(load_raw(suite.dataset), suite.resolution)  # a streamed folder's index records it
    save_cache(ds, out)
    sources = {}
    for name, fraction in SEMI_FRACTIONS.items():
        idx, sources[name] = semi_split(ds.train, name, fraction, suite.dataset.semi_lists)
        atomic_write_text(out / "splits" / f"{name}.txt", "".join(f"{i}\n" for i in idx.tolist()))
    if suite.dataset.semi_lists:  # absent: sslbench's own splits
        atomic_write_text(out / "splits" / "sources.json", json.dumps(sources, indent=1))
    paths.scenes_dir(suite.name).mkdir(parents=True, exist_ok=True)  # a DVC output even when empty
    if suite.dataset.name == "fashion_mnist":  # bright items on black: their pixels are their masks
        from evaluations.detection.scenes import prepare_scenes

        prepare_scenes(ds, paths.scenes_dir(suite.name), suite.eval.transfer)
    return out


def pretrain(suite: Suite, params: Params, method: str, runs: Path | None = None,
             progress_bar: bool = True, jobs: int = 0, workers: int = 0, gpus_per_worker: float = 0.0) -> list[dict]:
    """Train ``method`` for every backbone and seed; diverged runs are recorded, not raised.

    Runs go side by side in ``jobs`` processes (0 = one per CPU core; see pipeline/parallel.py),
    or, with ``workers``, each run in turn as a Ray Train job of that many workers.
    """
    plan = run_plan(suite, params, method, runs)  # refuses bad overrides before loading data
    if workers:
        from pipeline.ray_train import train_on_ray

        records = [train_on_ray(run_spec(run), workers, gpus_per_worker) for run in plan]
    else:
        records = for_each_run(plan, partial(_pretrain_one, progress_bar=progress_bar), jobs)
    for record in records:
        tqdm.write(f"{method} ({record['backbone']}) seed {record['seed']}: {record['status']}, "
                   f"{record['steps']} steps, {record['images_seen']} images, {record['seconds']:.0f} s")
    return records


def run_spec(run: Run) -> RunSpec:
    """The engine's view of a planned run."""
    return RunSpec(run.suite, run.method, run.seed, run.hparams, run.out_dir, run.suite.device)


def _pretrain_one(run: Run, progress_bar: bool = True) -> dict:
    dataset = pretraining_data(run.suite)
    return train(run_spec(run), dataset, progress_bar=progress_bar, bar_position=run.position)


def load_encoder(run: Path) -> tuple[torch.nn.Module, dict]:
    record = read_record(run / RUN_JSON)
    encoder = build_backbone(BackboneCfg(**record["backbone_cfg"]))
    try:
        encoder.load_state_dict(safe_torch_load(run / ENCODER))
    except RuntimeError:
        raise SSLBenchError(f"checkpoint '{run / ENCODER}' does not match backbone {record['backbone']}.") from None
    return encoder, record


def evaluate_run(suite: Suite, run: Path, dataset: Dataset) -> list[dict]:
    """The suite's protocols on one run's backbone: kNN (each ``eval.knn.k``), linear probe and
    semi-supervised fine-tuning, as ``eval.protocols`` lists them; NaN rows if it diverged."""
    encoder, record = load_encoder(run)
    wanted = requested(suite.eval.protocols, suite.eval.knn.k)
    if record["status"] != COMPLETE:
        return make_rows(record, {p: math.nan for p in wanted})
    device = pick_device(suite.device)
    precision = evaluation_precision(record, device)
    views = ViewGenerator(None, dataset.mean, dataset.std, device)

    def compute():
        return {split: extract(encoder, getattr(dataset, split).images,
                               lambda x: views.plain(x, suite.resolution), suite.eval.batch_size, device,
                               desc=f"{record['method']} s{record['seed']} {split}", precision=precision)
                for split in ("train", "test")}

    key = f"{record['method']}-{record['backbone']}-seed{record['seed']}-{file_digest(run / ENCODER)}"
    feats = cached(paths.features_cache(suite.name), key, compute)
    tr, te = feats["train"], feats["test"]
    ytr, yte = dataset.train.labels, dataset.test.labels
    metrics: dict[str, float] = {}
    if FAMILY_KNN in suite.eval.protocols:
        acc = knn_accuracy(tr, ytr, te, yte, suite.eval.knn.k, suite.eval.knn.temperature, dataset.num_classes)
        metrics.update({knn_id(k): v for k, v in acc.items()})
    if FAMILY_LINEAR in suite.eval.protocols:
        metrics[LINEAR] = linear_probe(tr, ytr, te, yte, dataset.num_classes, suite.eval.linear,
                                         seed=record["seed"])["top1"]
    if FAMILY_SEMI in suite.eval.protocols:
        metrics.update(semi_supervised(suite, run, record, dataset, device, precision))
    rows = make_rows(record, metrics)
    label = own_split_label(suite)
    for row in rows:
        if label and row["protocol"] in SEMI_FRACTIONS:
            row["deviation"] = "; ".join(filter(None, [row["deviation"], label]))
    return rows


def evaluation_precision(record: dict, device) -> str:
    """Evaluate in the run's precision where this host computes it natively, else fp32
    (a bf16 run evaluated on an AVX2-only CPU would be emulated, 7x slower)."""
    from bench.precision import resolve

    return "fp32" if record.get("precision", "fp32") == "fp32" else resolve("auto", device)


def own_split_label(suite: Suite) -> str:
    """The deviation label of an ImageNet-style suite fine-tuned on sslbench's own split, not SimCLR's lists."""
    sources = paths.prepared_dir(suite.name) / "splits" / "sources.json"
    if suite.dataset.name != "imagefolder":
        return ""
    own = not sources.is_file() or OWN_SPLIT in json.loads(sources.read_text()).values()
    return "semi split: sslbench's own (SimCLR's lists not given)" if own else ""


def finetune_start(suite: Suite, run: Path, record: dict, dataset: Dataset) -> tuple[torch.nn.Module, int]:
    """What fine-tuning starts from: the backbone, or the method's ``finetune_encoder()``
    (SimCLR v2: backbone + first projection layer) rebuilt from the final checkpoint. The
    default ``Method.finetune_encoder`` is the encoder, which the run saved on its own."""
    encoder, _ = load_encoder(run)
    if get_method(record["method"]).finetune_encoder is Method.finetune_encoder or not (run / CHECKPOINT).is_file():
        return encoder, encoder.feature_dim
    sub = replace(suite, backbone=BackboneCfg(**{k: v for k, v in record["backbone_cfg"].items()
                                                 if k != "in_channels"}))
    hp = resolve_hparams(record["method"], record["hparams"])  # the run's own, as recorded
    pretraining = pretraining_data(suite, dataset)  # the sizes of banks and queues
    method = build_method(RunSpec(sub, record["method"], record["seed"], hp, run, suite.device), pretraining, 1)
    method.load_state_dict(safe_torch_load(run / CHECKPOINT)["model"])
    start = method.finetune_encoder()
    return start, start.feature_dim


def semi_supervised(suite: Suite, run: Path, record: dict, dataset: Dataset, device,
                    precision: str = "fp32") -> dict[str, float]:
    """semi_1pct / semi_10pct: fine-tune on the prepared split files, final-epoch test top-1."""
    from evaluations.semi_supervised import finetune

    start, dim = finetune_start(suite, run, record, dataset)
    cfg = suite.eval.semi
    autocast = autocast_for(device, precision)
    out = {}
    for name in SEMI_FRACTIONS:
        split = paths.prepared_dir(suite.name) / "splits" / f"{name}.txt"
        if not split.is_file():
            raise SSLBenchError(f"split file '{split}' is missing; run `sslbench prepare --suite {suite.name}` first.")
        idx = torch.tensor([int(line) for line in split.read_text().split()])
        epochs = cfg.epochs_1pct if name == SEMI_1PCT else cfg.epochs_10pct
        acc = finetune(start, dim, dataset.train.images[idx], dataset.train.labels[idx], dataset.test.images,
                       dataset.test.labels, dataset.num_classes, dataset.mean, dataset.std, suite.resolution,
                       epochs, cfg, device, seed=record["seed"], autocast=autocast)
        out[name] = acc["top1"]
    return out


def evaluate(suite: Suite, params: Params, method: str, runs: Path | None = None, jobs: int = 0) -> list[dict]:
    """Every protocol for every run of ``method`` (runs side by side as in ``pretrain``)."""
    plan = run_plan(suite, params, method, runs)
    rows = [row for run_rows in for_each_run(plan, _evaluate_one, jobs) for row in run_rows]
    write_rows(paths.rows_path(suite.name, method), rows)
    return rows


def _evaluate_one(run: Run) -> list[dict]:
    return evaluate_run(run.suite, run.out_dir, dataset_for(run.suite))


def build_leaderboard(suite: Suite, methods: list[str]):
    rows = read_rows([path for m in methods
                      for path in (paths.rows_path(suite.name, m), paths.transfer_rows_path(suite.name, m))])
    board = leaderboard(rows)
    write_leaderboard(board, paths.results_dir(suite.name))
    return board
