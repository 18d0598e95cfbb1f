"""``sslbench pretrain --workers N``: the same engine as a Ray Train ``TorchTrainer`` job.

Each worker trains on its share of every global batch (``train.batch_size`` split
over the workers); batch norm is synchronised over workers, contrastive negatives and
queued keys are gathered with gradients (``bench.distributed``), gradients are averaged
after the backward pass, and rank 0 alone writes checkpoints, metrics and ``run.json``
(the run directory must be on storage every worker sees: a local disk for local Ray, a
shared file system on a cluster). ``RAY_ADDRESS`` joins an existing cluster; otherwise
Ray starts on this machine, bound to 127.0.0.1.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from bench.errors import SSLBenchError
from pipeline.engine import RunSpec
from pipeline.plan import with_threads


def _worker_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from pipeline.engine import train
    from pipeline.plan import pretraining_data

    os.chdir(config["root"])  # data/ and relative paths resolve as in the driver
    spec: RunSpec = config["spec"]
    spec = replace(spec, device=ray.train.torch.get_device().type)
    dataset = pretraining_data(spec.suite)
    first = ray.train.get_context().get_world_rank() == 0
    record = train(spec, dataset, progress_bar=first)
    ray.train.report({"status": record["status"], "steps": record["steps"], "seconds": record["seconds"]})


def train_on_ray(spec: RunSpec, workers: int, gpus_per_worker: float = 0.0, cpus_per_worker: int = 1) -> dict:
    """Train one run with ``workers`` Ray Train workers; returns rank 0's ``run.json`` record."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from bench.distributed import ray_init
    from bench.runs import RUN_JSON, read_record
    from methods.registry import get_method
    from pipeline.engine import check_workers

    if workers < 2:
        raise SSLBenchError(f"--workers must be at least 2 (got {workers}); without it the run is in-process.")
    check_workers(get_method(spec.method), spec.suite.train.batch_size, workers)
    root = Path.cwd().resolve()
    out = (root / spec.out_dir).resolve()
    ray_init()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"spec": replace(spec, out_dir=out, suite=with_threads(spec.suite, cpus_per_worker)),
                           "root": str(root)},
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker={"CPU": cpus_per_worker,
                                                           **({"GPU": gpus_per_worker} if gpus_per_worker else {})}),
        run_config=RunConfig(name=f"{spec.method}-seed{spec.seed}", storage_path=str(root / "runs" / "ray")),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    return read_record(out / RUN_JSON)
