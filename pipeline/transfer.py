"""The transfer stage: detection and instance segmentation on each run's backbone.

``sslbench transfer`` (DVC: ``transfer@<method>``) fine-tunes a detector on the suite's
scenes (``sslbench prepare`` writes them; ``eval.transfer.data_root`` points at a user's
COCO-format VOC / COCO instead) and writes ``results/<suite>/rows/<method>-transfer.csv``
with the protocol ids below, which the leaderboard reads beside the other rows.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench import paths, protocols
from bench.config import Params, Suite
from bench.device import pick_device
from bench.errors import SSLBenchError
from pipeline.plan import Run, dataset_for, for_each_run, run_plan
from pipeline.results import make_rows, write_rows
from pipeline.stages import load_encoder

TRANSFER_PROTOCOLS = protocols.TRANSFER_IDS  # box AP, AP50, AP75 and mask AP (bench/protocols.py)


def scenes_dir(suite: Suite) -> Path:
    root = suite.eval.transfer.data_root
    return Path(root) if root else paths.scenes_dir(suite.name)


def transfer_run(suite: Suite, run: Path) -> list[dict]:
    """The four AP values of one run (NaN when its pretraining diverged); [] for a ViT run."""
    encoder, record = load_encoder(run)
    if record["backbone"] == "pixels":
        print(f"transfer: {run} skipped: not applicable to the pixels baseline (no backbone to fine-tune).")
        return []
    if not record["backbone"].startswith("resnet"):
        print(f"transfer: {run} skipped: detection transfer needs a ResNet backbone, not {record['backbone']}.")
        return []
    if record["status"] != protocols.COMPLETE:
        return make_rows(record, dict.fromkeys(TRANSFER_PROTOCOLS, math.nan), metric="ap")
    cfg = suite.eval.transfer
    if cfg.backend == "detectron2":
        metrics = _detectron2(suite, run, record["seed"])
    else:
        from evaluations.detection.scenes import load_scenes
        from evaluations.detection.torchvision_backend import transfer

        dataset = dataset_for(suite)
        where = scenes_dir(suite)
        metrics = transfer(encoder, load_scenes(where, "train"), load_scenes(where, "val"), cfg, dataset.mean,
                           dataset.std, record["seed"], pick_device(suite.device),
                           desc=f"{record['method']} s{record['seed']} transfer")
    values = {p: metrics[p] for p in TRANSFER_PROTOCOLS if p in metrics}
    if any(math.isnan(v) for v in values.values()):  # the detector's fine-tune diverged, not the run
        print(f"transfer: {run}: the detector's loss became NaN; its rows are marked 'diverged'.")
        record = {**record, "status": protocols.DIVERGED}
    return make_rows(record, values, metric="ap")


def _detectron2(suite: Suite, run: Path, seed: int) -> dict[str, float]:
    from evaluations.detection.convert import write_detectron2
    from evaluations.detection.detectron2_backend import CONFIGS, run_detectron2

    where = scenes_dir(suite)
    datasets = {split: (where / f"{split}.json", where / split) for split in ("train", "val")}
    return run_detectron2(CONFIGS / "scenes_R_18_FPN.yaml", write_detectron2(run), run / "detectron2", datasets,
                          _detectron2_recipe(suite.eval.transfer), seed=seed)


def _detectron2_recipe(cfg) -> list[str]:
    """The torchvision backend's schedule as Detectron2 overrides (``KEY VALUE`` pairs)."""
    from evaluations.detection.torchvision_backend import warmup_iterations

    steps = f"({int(0.75 * cfg.iterations)},{int(0.92 * cfg.iterations)})"
    return ["SOLVER.MAX_ITER", str(cfg.iterations), "SOLVER.IMS_PER_BATCH", str(cfg.batch_size),
            "SOLVER.BASE_LR", str(cfg.lr * cfg.batch_size / 16), "SOLVER.STEPS", steps,
            "SOLVER.WEIGHT_DECAY", str(cfg.weight_decay), "SOLVER.WARMUP_ITERS", str(warmup_iterations(cfg.iterations))]


def transfer(suite: Suite, params: Params, method: str, runs: Path | None = None, jobs: int = 0) -> list[dict]:
    """Transfer every run of ``method`` (side by side as in ``pretrain``); write its rows."""
    if not scenes_dir(suite).is_dir():
        raise SSLBenchError(f"no transfer data in '{scenes_dir(suite)}'; run `sslbench prepare --suite {suite.name}` "
                            "(scenes are generated for fashion_mnist suites) or set eval.transfer.data_root.")
    plan = run_plan(suite, params, method, runs)
    rows = [row for run_rows in for_each_run(plan, _transfer_one, jobs) for row in run_rows]
    write_rows(paths.transfer_rows_path(suite.name, method), rows)
    return rows


def _transfer_one(run: Run) -> list[dict]:
    return transfer_run(run.suite, run.out_dir)
