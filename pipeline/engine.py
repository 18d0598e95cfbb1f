"""The one training loop every method runs in.

It owns the budget (counted in source images seen by default), the optimizer and
schedule, mixed precision, checkpoints and resume, divergence detection, cost
accounting (steps, images, seconds, FLOPs, peak memory) and ``metrics.jsonl``.
``train`` reads as its parts: ``run_identity`` / ``reusable_record`` (is a finished run
reused?), ``resume`` (the checkpointed ``LoopState``), ``_loop`` (the steps) and
``training_step`` (one optimizer step, shared with ``perf``). The run-directory format
is bench/runs.py's; device and thread set-up bench/device.py's.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch

from bench.backbones import build_backbone
from bench.config import Suite, config_hash, with_precision
from bench.data import Dataset
from bench.device import configure_threads, git_revision, peak_memory_mb, pick_device
from bench.distributed import all_finite, average_gradients, broadcast_state, convert_global_bn
from bench.distributed import rank as dist_rank
from bench.distributed import world_size as dist_world_size
from bench.errors import SSLBenchError
from bench.io import atomic_torch_save
from bench.optim import build_optimizer, lr_factor, set_lr
from bench.precision import autocast_for
from bench.progress import progress
from bench.protocols import COMPLETE, DIVERGED
from bench.runs import (
    ENCODER,
    METRICS,
    RUN_JSON,
    code_digest,
    load_checkpoint,
    read_record,
    save_checkpoint,
    trim_metrics,
    write_record,
)
from bench.views import ViewGenerator
from evaluations.diagnostics import collapse_metrics, representation_diagnostics
from methods.base import Batch, Context, Method
from methods.registry import get_method


class Interrupted(Exception):
    """Raised by ``stop_after`` to simulate a killed run in tests."""


@dataclass
class RunSpec:
    suite: Suite
    method: str
    seed: int
    hparams: object
    out_dir: Path
    device: str = "cpu"


def build_method(spec: RunSpec, dataset: Dataset, total_steps: int) -> Method:
    """Seeded construction: the same seed gives every method the same backbone init."""
    torch.manual_seed(spec.seed)
    cfg = method_suite(spec.suite, get_method(spec.method)).backbone
    backbone = build_backbone(type(cfg)(**{**asdict(cfg), "in_channels": dataset.channels}))
    ctx = Context(len(dataset.train), dataset.num_classes, spec.suite.train.batch_size, total_steps,
                  spec.suite.resolution, dataset.channels, spec.suite.train.ema_horizon_cap,
                  tuple(dataset.mean), tuple(dataset.std))
    return get_method(spec.method)(backbone, spec.hparams, ctx)


def method_suite(suite: Suite, cls: type[Method]) -> Suite:
    """The suite with the backbone a method fixes (``pixels``: the input at the suite's resolution)."""
    fixed = getattr(cls, "backbone_name", None)
    return replace(suite, backbone=replace(suite.backbone, name=fixed, image_size=suite.resolution)) if fixed else suite


def total_steps_for(suite: Suite, dataset_size: int, flops_per_step: float | None = None) -> int:
    """Optimizer steps the budget allows (``seconds`` budgets are open-ended: 0)."""
    b, bs = suite.budget, suite.train.batch_size
    if b.unit == "images_seen":
        return max(1, math.ceil(b.value / bs))
    if b.unit == "epochs":
        return max(1, math.ceil(b.value * dataset_size / bs))
    if b.unit == "flops":
        return max(1, math.ceil(b.value / flops_per_step)) if flops_per_step else 1
    return 0


class Sampler:
    """Deterministic batches: a fresh permutation per epoch from (seed, epoch); drop-last."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if batch_size > n:
            raise SSLBenchError(f"train.batch_size {batch_size} is larger than the dataset ({n} images).")
        self.n, self.bs, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, offset = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen)
        return self._perm[offset * self.bs : (offset + 1) * self.bs]


def _count_flops(fn) -> tuple[float, object]:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        out = fn()
    return float(counter.get_total_flops()), out


def _sigterm_as_interrupt() -> None:
    """Let SIGTERM (preemption, DVC/Ray cancellation) end a run like Ctrl-C: checkpoint, then exit."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pretraining_identity(suite: Suite) -> dict:
    """What a pretraining run's identity covers: the suite minus its description, its
    evaluation protocols and the CPU thread count, none of which change the weights it learns
    (so adding a protocol, or running seeds side by side, re-uses finished runs). The
    evaluation batch size stays: memory banks are filled in batches of that size."""
    ident = asdict(suite)
    ident.pop("description")
    ident["eval"] = {"batch_size": suite.eval.batch_size}
    ident["train"].pop("threads")
    return ident


def run_identity(spec: RunSpec, suite: Suite) -> str:
    """The run's identity: its resolved configuration, method, seed, hyper-parameters and code."""
    return config_hash(pretraining_identity(suite), spec.method, spec.seed, spec.hparams,
                       code_digest(get_method(spec.method)))


def reusable_record(out: Path, digest: str) -> dict | None:
    """The finished record in ``out`` if it was made with this identity (the run is then reused)."""
    record = read_record(out / RUN_JSON, strict=False)
    if record and record.get("config_hash") == digest and record.get("status") in (COMPLETE, DIVERGED):
        return record
    return None


def steps_for_run(spec: RunSpec, suite: Suite, dataset: Dataset, device: torch.device) -> int:
    """Optimizer steps of the run; a flops budget counts one step's FLOPs on a throwaway copy first."""
    total = total_steps_for(suite, len(dataset.train))
    if suite.budget.unit == "flops":
        total = total_steps_for(suite, len(dataset.train), step_flops(spec, suite, dataset, device))
    return total


def run_record(spec: RunSpec, suite: Suite, method: Method, dataset: Dataset, device: torch.device,
               digest: str, world: int) -> dict:
    """The run record's fields known before the first step (``_finish`` adds the outcome)."""
    cls = type(method)
    return {
        "suite": suite.name, "method": spec.method, "seed": spec.seed, "backbone": suite.backbone.name,
        "backbone_cfg": {**asdict(suite.backbone), "in_channels": dataset.channels},
        "family": cls.family, "paper": cls.paper, "deviation": cls.deviation,
        "hparams": asdict(spec.hparams), "budget": asdict(suite.budget), "batch_size": suite.train.batch_size,
        "resolution": suite.resolution, "precision": suite.train.precision,
        "precision_requested": spec.suite.train.precision, "config_hash": digest,
        "device": str(device),
        "device_name": (torch.cuda.get_device_name() if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(), "workers": world, "torch": torch.__version__,
        "git_rev": git_revision(),
        "dataset": dataset.name, "dataset_size": len(dataset.train),
    }


@dataclass
class LoopState:
    """Where the loop stands: what a checkpoint saves and a resumed run starts from."""

    step: int = 0
    seconds: float = 0.0
    flops_per_step: float | None = None


def resume(out: Path, digest: str, method: Method, optimizer, rank: int = 0) -> LoopState:
    """Load the newest checkpoint of this identity into ``method`` and ``optimizer`` (trimming the
    metrics log to it), or start afresh (dropping a stale log)."""
    ckpt = load_checkpoint(out)
    if ckpt is not None and ckpt.get("config_hash") == digest:
        method.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if rank == 0:
            trim_metrics(out / METRICS, ckpt["step"])
        return LoopState(ckpt["step"], ckpt["seconds"], ckpt["flops_per_step"])
    if (out / METRICS).exists() and rank == 0:
        (out / METRICS).unlink()
    return LoopState()


class StepOutcome(NamedTuple):
    result: object  # the method's StepResult
    flops: float | None  # counted FLOPs of forward + backward (``count_flops``), else None
    finite: bool  # False: the loss was not finite and no update was made


def training_step(method: Method, optimizer, batch: Batch, autocast, at: float, at_next: float, *,
                  world: int = 1, check_finite: bool = False, count_flops: bool = False) -> StepOutcome:
    """One optimizer step, the engine's and ``perf``'s: zero the gradients, forward (under
    ``autocast``) and backward, [stop on a non-finite loss], average gradients over ``world``
    workers, ``before_optimizer_step(at)``, ``optimizer.step()``, ``after_step(at_next, carry)``
    (``at`` / ``at_next``: the run's progress in [0, 1] before and after this step)."""
    optimizer.zero_grad(set_to_none=True)
    if count_flops:
        flops, result = _count_flops(lambda: forward_backward(method, batch, autocast))
    else:
        flops, result = None, forward_backward(method, batch, autocast)
    if check_finite and not all_finite(result.loss):
        return StepOutcome(result, flops, False)
    if world > 1:
        average_gradients(method)
    method.before_optimizer_step(at)
    optimizer.step()
    method.after_step(at_next, result.carry)
    return StepOutcome(result, flops, True)


def train(spec: RunSpec, dataset: Dataset, stop_after: int | None = None, progress_bar: bool = True,
          bar_position: int | None = None) -> dict:
    """Train one (method, seed) run to its budget, resuming if a checkpoint exists.

    Returns the run record (also written to ``run.json``). A non-finite loss ends
    the run with status ``diverged``; it does not raise.
    """
    device = pick_device(spec.device)
    spec = replace(spec, suite=method_suite(spec.suite, get_method(spec.method)))
    suite, out = with_precision(spec.suite, device), spec.out_dir
    out.mkdir(parents=True, exist_ok=True)
    digest = run_identity(spec, suite)
    done = reusable_record(out, digest)
    if done:
        return done
    configure_threads(suite.train.threads)
    world, rank = dist_world_size(), dist_rank()
    total = steps_for_run(spec, suite, dataset, device)
    method = build_method(spec, dataset, total).to(device)
    if world > 1:
        check_workers(type(method), suite.train.batch_size, world)
        method = convert_global_bn(method)
    record = run_record(spec, suite, method, dataset, device, digest, world)
    views = ViewGenerator(method.views(suite.resolution), dataset.mean, dataset.std, device)
    if not type(method).trains:  # baselines take no step, but ``initialise`` (random's BN statistics)
        _initialise(method, dataset.train.images, views, suite, device)
        return _finish(out, method, record, 0, 0.0, 0.0, COMPLETE, device, rank, dataset)

    optimizer = build_optimizer(method.optimizer_cfg(), method.param_groups(), suite.train.batch_size)
    state = resume(out, digest, method, optimizer, rank)
    if world > 1:
        broadcast_state(method)
    _sigterm_as_interrupt()
    status, diverged_step = _loop(spec, suite, method, optimizer, views, dataset, device, total, state, digest,
                                  stop_after, progress_bar, bar_position, world, rank)
    record["diverged_step"] = diverged_step
    return _finish(out, method, record, state.step, state.seconds, state.flops_per_step or 0.0, status, device,
                   rank, dataset)


def _loop(spec: RunSpec, suite: Suite, method: Method, optimizer, views: ViewGenerator, dataset: Dataset,
          device: torch.device, total: int, state: LoopState, digest: str, stop_after: int | None,
          progress_bar: bool, bar_position: int | None, world: int, rank: int) -> tuple[str, int | None]:
    """Steps from ``state`` to the budget, logging and checkpointing; updates ``state`` in place and
    returns (status, diverged step)."""
    out, bs = spec.out_dir, suite.train.batch_size
    sampler = Sampler(len(dataset.train), bs, spec.seed)
    autocast = autocast_for(device, suite.train.precision)
    method.train()
    images = dataset.train.images.pin_memory() if device.type == "cuda" else dataset.train.images
    if state.step == 0:
        _initialise(method, images, views, suite, device)
    labels = dataset.train.labels
    log_every, ckpt_every = suite.train.log_every, suite.train.checkpoint_every
    status, diverged_step = COMPLETE, None
    limit_seconds = suite.budget.value if suite.budget.unit == "seconds" else None
    bar = progress(total=total or None, initial=state.step, desc=f"{spec.method} seed{spec.seed}", unit="step",
                   disable=not progress_bar or rank != 0, position=bar_position)
    t_start, t_window, window_start = time.perf_counter() - state.seconds, time.perf_counter(), state.step

    def progress_at(s: int) -> float:
        if limit_seconds:
            return min(1.0, (time.perf_counter() - t_start) / limit_seconds)
        return min(1.0, s / total)

    def save() -> None:
        state.seconds = time.perf_counter() - t_start
        _save(out, method, optimizer, state.step, state.seconds, state.flops_per_step, digest)

    try:
        with (out / METRICS).open("a") if rank == 0 else open(os.devnull, "w") as metrics:
            while True:
                step = state.step
                if limit_seconds is not None and time.perf_counter() - t_start >= limit_seconds:
                    break
                if total and step >= total:
                    break
                if stop_after is not None and step >= stop_after:
                    raise Interrupted(f"stopped after {step} steps")
                set_lr(optimizer, lr_factor(progress_at(step), suite.train.warmup_fraction))
                batch = step_batch(sampler, views, images, labels, spec.seed, step, device, world, rank)
                done = training_step(method, optimizer, batch, autocast, progress_at(step), progress_at(step + 1),
                                     world=world, check_finite=device.type == "cpu" or (step + 1) % log_every == 0,
                                     count_flops=state.flops_per_step is None)
                if done.flops is not None:
                    state.flops_per_step = done.flops
                if not done.finite:
                    status, diverged_step = DIVERGED, step
                    break
                result = done.result
                state.step = step = step + 1
                bar.update(1)
                if step % log_every == 0 or step == total:
                    now = time.perf_counter()
                    rate = (step - window_start) * bs / max(1e-9, now - t_window)
                    t_window, window_start = now, step
                    line = {"step": step, "images_seen": step * bs, "loss": result.loss.item(),
                            "lr": optimizer.param_groups[0]["lr"], "images_per_s": rate,
                            "seconds": now - t_start}
                    line.update({k: float(v) for k, v in result.logs.items()})
                    if result.embedding is not None:
                        line.update({k: float(v) for k, v in collapse_metrics(result.embedding).items()})
                    metrics.write(json.dumps(line) + "\n")
                    metrics.flush()
                    bar.set_postfix(loss=f"{line['loss']:.3f}", img_s=f"{rate:.0f}", refresh=False)
                if step % ckpt_every == 0 and step != total and rank == 0:
                    save()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the work done so far, then stop
        bar.close()
        if status == COMPLETE and state.step and rank == 0:
            save()
        raise
    except BaseException:
        bar.close()
        raise
    bar.close()
    state.seconds = time.perf_counter() - t_start
    if status == COMPLETE and rank == 0:
        _save(out, method, optimizer, state.step, state.seconds, state.flops_per_step, digest)
    return status, diverged_step


def _initialise(method: Method, images: torch.Tensor, views: ViewGenerator, suite: Suite, device) -> None:
    """``method.initialise`` with the whole training set, un-augmented, in batches of ``eval.batch_size``."""
    with torch.no_grad(), autocast_for(device, suite.train.precision):
        method.initialise((idx.to(device), views.plain(images[idx].to(device, non_blocking=True)))
                          for idx in torch.arange(len(images)).split(suite.eval.batch_size))


def step_batch(sampler: Sampler, views: ViewGenerator, images: torch.Tensor, labels: torch.Tensor, seed: int,
               step: int, device: torch.device, world: int = 1, rank: int = 0) -> Batch:
    """This worker's share of step ``step``'s batch, with its views drawn from the step's own seed
    (so a resumed or distributed run sees the same views)."""
    idx = sampler.indices(step).chunk(world)[rank]
    gen = torch.Generator(device=device).manual_seed((seed * 1_000_003 + step) * world + rank)
    return Batch(views(images[idx], gen), idx.to(device), labels[idx].to(device, non_blocking=True), gen)


def step_flops(spec: RunSpec, suite: Suite, dataset: Dataset, device: torch.device) -> float:
    """FLOPs of one training step (forward and backward) of a freshly built method, on the run's first batch."""
    method = build_method(spec, dataset, 1).to(device).train()
    views = ViewGenerator(method.views(suite.resolution), dataset.mean, dataset.std, device)
    sampler = Sampler(len(dataset.train), suite.train.batch_size, spec.seed)
    batch = step_batch(sampler, views, dataset.train.images, dataset.train.labels, spec.seed, 0, device)
    flops, _ = _count_flops(lambda: forward_backward(method, batch, autocast_for(device, suite.train.precision)))
    return flops


def check_workers(cls: type[Method], batch_size: int, world: int) -> None:
    if not cls.distributed:
        from methods.registry import method_names

        ready = ", ".join(n for n in method_names() if get_method(n).distributed)
        raise SSLBenchError(f"method '{cls.name}' cannot run on several workers yet (its cross-batch state is "
                            f"not gathered); methods that can: {ready}.")
    if batch_size % world:
        raise SSLBenchError(f"train.batch_size {batch_size} does not split over {world} workers; "
                            f"use a multiple of {world}.")


def forward_backward(method: Method, batch: Batch, autocast):
    """Forward (under autocast) and backward of one training step (the engine's and ``perf``'s)."""
    with autocast:
        result = method.training_step(batch)
    result.loss.backward()
    return result


def _save(out, method, optimizer, step, seconds, flops_per_step, digest) -> None:
    save_checkpoint(out, {"step": step, "seconds": seconds, "flops_per_step": flops_per_step,
                          "config_hash": digest, "model": method.state_dict(),
                          "optimizer": optimizer.state_dict()})


def _finish(out: Path, method: Method, record: dict, steps: int, seconds: float, flops_per_step: float,
            status: str, device: torch.device = torch.device("cpu"), rank: int = 0,
            dataset: Dataset | None = None) -> dict:
    """Write the encoder and ``run.json`` (rank 0 only) and return the record; a complete run's
    record gets the final encoder's alignment and uniformity on test images (evaluations/diagnostics.py)."""
    bs = record["batch_size"]
    record.update({
        "status": status, "steps": steps, "images_seen": steps * bs, "seconds": round(seconds, 2),
        "flops_per_step": flops_per_step, "flops": flops_per_step * steps,
        "peak_mem_mb": round(peak_memory_mb(device), 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    if rank == 0 and status == COMPLETE and dataset is not None:
        record.update(representation_diagnostics(method.encoder, dataset, record["resolution"], device,
                                                 autocast_for(device, record["precision"])))
    if rank == 0:
        atomic_torch_save(method.encoder.state_dict(), out / ENCODER)
        write_record(out, record)
    return record
