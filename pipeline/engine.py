"""The one training loop every method runs in.

It owns the budget (counted in source images seen by default), the optimizer and
schedule, mixed precision, checkpoints and resume, divergence detection, cost
accounting (steps, images, seconds, FLOPs, peak memory) and ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from bench.backbones import build_backbone
from bench.config import Suite, config_hash, with_precision
from bench.data import Dataset
from bench.distributed import all_finite, average_gradients, broadcast_state, convert_global_bn
from bench.distributed import rank as dist_rank
from bench.distributed import world_size as dist_world_size
from bench.errors import SSLBenchError
from bench.io import atomic_torch_save, atomic_write_text, safe_torch_load
from bench.optim import build_optimizer, lr_factor, set_lr
from bench.precision import autocast_for
from bench.progress import progress
from bench.views import ViewGenerator
from evaluations.diagnostics import representation_diagnostics
from methods.base import Batch, Context, Method
from methods.modules import collapse_metrics
from methods.registry import get_method

CHECKPOINT, PREVIOUS, ENCODER, RUN_JSON, METRICS = (
    "checkpoint.pt", "checkpoint.prev.pt", "encoder.pt", "run.json", "metrics.jsonl")


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


def code_digest(method_cls: type) -> str:
    """Hash of the source files a run's result depends on (the pretrain stage's DVC deps):
    a code change gives a new run identity, so a stale finished run is never reused."""
    import hashlib
    import inspect

    import bench.backbones
    import bench.optim
    import bench.views
    import methods.base
    import methods.losses
    import methods.modules

    modules = [sys.modules[__name__], bench.views, bench.backbones, bench.optim, methods.base, methods.losses,
               methods.modules]
    modules += [sys.modules[c.__module__] for c in method_cls.__mro__ if c.__module__.startswith("methods.")]
    h = hashlib.sha256()
    for module in dict.fromkeys(modules):
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()[:12]


def configure_threads(requested: int = 0) -> int:
    """Set torch's CPU threads: ``requested``, or the cores not already busy (at least 1).

    Two threads on two cores that other processes also use make every parallel region
    wait for both to be scheduled (measured here: 5 vs 113 images/s), so ``0`` (auto)
    subtracts the current load average from the available cores.
    """
    if not requested:
        cores = len(os.sched_getaffinity(0))
        requested = max(1, min(cores, cores - int(os.getloadavg()[0])))
    torch.set_num_threads(requested)
    return requested


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SSLBenchError("device 'cuda' was requested but no CUDA device is available; use device: cpu.")
        return torch.device("cuda")
    return torch.device("cpu")


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_method(spec: RunSpec, dataset: Dataset, total_steps: int) -> Method:
    """Seeded construction: the same seed gives every method the same backbone init."""
    torch.manual_seed(spec.seed)
    cfg = method_suite(spec.suite, get_method(spec.method)).backbone
    backbone = build_backbone(type(cfg)(**{**asdict(cfg), "in_channels": dataset.channels}))
    ctx = Context(len(dataset.train), dataset.num_classes, spec.suite.train.batch_size, total_steps,
                  spec.suite.resolution, dataset.channels, spec.suite.train.ema_horizon_cap)
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


def read_record(path: Path, strict: bool = True) -> dict | None:
    """A run's ``run.json``; a corrupt one is an error naming it (``strict``) or treated as absent."""
    if not path.is_file():
        if strict:
            raise SSLBenchError(f"run '{path.parent}' has no {RUN_JSON}; pretrain it first (`sslbench pretrain`).")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        if strict:
            raise SSLBenchError(f"run record '{path}' is corrupt; re-run `sslbench pretrain` to rebuild it.") from None
        tqdm.write(f"warning: run record '{path}' is corrupt; the run resumes from its checkpoint.")
        return None


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (no duplicates), and torn lines."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def load_checkpoint(out_dir: Path) -> dict | None:
    """The newest readable checkpoint; falls back to the previous one if the last is corrupt."""
    for name in (CHECKPOINT, PREVIOUS):
        path = out_dir / name
        if path.is_file():
            try:
                return safe_torch_load(path)
            except SSLBenchError as err:
                tqdm.write(f"warning: {err} Falling back to the previous checkpoint.")
    return None


def save_checkpoint(out_dir: Path, state: dict) -> None:
    current = out_dir / CHECKPOINT
    if current.is_file():
        os.replace(current, out_dir / PREVIOUS)
    atomic_torch_save(state, current)


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
    digest = config_hash(pretraining_identity(suite), spec.method, spec.seed, spec.hparams,
                         code_digest(get_method(spec.method)))
    record = read_record(out / RUN_JSON, strict=False)
    if record and record.get("config_hash") == digest and record.get("status") in ("complete", "diverged"):
        return record
    configure_threads(suite.train.threads)
    bs = suite.train.batch_size
    world, rank = dist_world_size(), dist_rank()
    total = total_steps_for(suite, len(dataset.train))
    if suite.budget.unit == "flops":  # the step count follows from one step's FLOPs, counted on a throwaway copy
        total = total_steps_for(suite, len(dataset.train), step_flops(spec, suite, dataset, device))
    method = build_method(spec, dataset, total).to(device)
    cls = type(method)
    if world > 1:
        check_workers(cls, bs, world)
        method = convert_global_bn(method)
    record = {
        "suite": suite.name, "method": spec.method, "seed": spec.seed, "backbone": suite.backbone.name,
        "backbone_cfg": {**asdict(suite.backbone), "in_channels": dataset.channels},
        "family": cls.family, "paper": cls.paper, "deviation": cls.deviation,
        "hparams": asdict(spec.hparams), "budget": asdict(suite.budget), "batch_size": bs,
        "resolution": suite.resolution, "precision": suite.train.precision,
        "precision_requested": spec.suite.train.precision, "config_hash": digest,
        "device": str(device),
        "device_name": (torch.cuda.get_device_name() if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(), "workers": world, "torch": torch.__version__,
        "git_rev": git_revision(),
        "dataset": dataset.name, "dataset_size": len(dataset.train),
    }
    views = ViewGenerator(method.views(suite.resolution), dataset.mean, dataset.std, device)
    if not cls.trains:  # baselines take no step, but ``initialise`` (random's BN statistics)
        _initialise(method, dataset.train.images, views, suite, device)
        return _finish(out, method, record, 0, 0.0, 0.0, "complete", device, rank, dataset)

    optimizer = build_optimizer(method.optimizer_cfg(), method.param_groups(), bs)
    sampler = Sampler(len(dataset.train), bs, spec.seed)
    step, seconds, flops_per_step = 0, 0.0, None
    ckpt = load_checkpoint(out)
    if ckpt is not None and ckpt.get("config_hash") == digest:
        method.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, seconds, flops_per_step = ckpt["step"], ckpt["seconds"], ckpt["flops_per_step"]
        if rank == 0:
            _trim_metrics(out / METRICS, step)
    elif (out / METRICS).exists() and rank == 0:
        (out / METRICS).unlink()
    if world > 1:
        broadcast_state(method)
    _sigterm_as_interrupt()
    autocast = autocast_for(device, suite.train.precision)
    method.train()
    images = dataset.train.images.pin_memory() if device.type == "cuda" else dataset.train.images
    if step == 0:
        _initialise(method, images, views, suite, device)
    labels = dataset.train.labels
    log_every, ckpt_every = suite.train.log_every, suite.train.checkpoint_every
    status, diverged_step = "complete", None
    limit_seconds = suite.budget.value if suite.budget.unit == "seconds" else None
    bar = progress(total=total or None, initial=step, desc=f"{spec.method} seed{spec.seed}", unit="step",
                   disable=not progress_bar or rank != 0, position=bar_position)
    t_start, t_window, window_start = time.perf_counter() - seconds, time.perf_counter(), step

    def progress_at(s: int) -> float:
        if limit_seconds:
            return min(1.0, (time.perf_counter() - t_start) / limit_seconds)
        return min(1.0, s / total)

    try:
        with (out / METRICS).open("a") if rank == 0 else open(os.devnull, "w") as metrics:
            while True:
                if limit_seconds is not None and time.perf_counter() - t_start >= limit_seconds:
                    break
                if total and step >= total:
                    break
                if stop_after is not None and step >= stop_after:
                    raise Interrupted(f"stopped after {step} steps")
                set_lr(optimizer, lr_factor(progress_at(step), suite.train.warmup_fraction))
                batch = step_batch(sampler, views, images, labels, spec.seed, step, device, world, rank)

                optimizer.zero_grad(set_to_none=True)

                if flops_per_step is None:
                    flops_per_step, result = _count_flops(lambda b=batch: forward_backward(method, b, autocast))
                else:
                    result = forward_backward(method, batch, autocast)
                if device.type == "cpu" or (step + 1) % log_every == 0:
                    if not all_finite(result.loss):
                        status, diverged_step = "diverged", step
                        break
                if world > 1:
                    average_gradients(method)
                method.before_optimizer_step(progress_at(step))
                optimizer.step()
                method.after_step(progress_at(step + 1))
                step += 1
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
                    _save(out, method, optimizer, step, time.perf_counter() - t_start, flops_per_step, digest)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the work done so far, then stop
        bar.close()
        if status == "complete" and step and rank == 0:
            _save(out, method, optimizer, step, time.perf_counter() - t_start, flops_per_step, digest)
        raise
    except BaseException:
        bar.close()
        raise
    bar.close()
    seconds = time.perf_counter() - t_start
    if status == "complete" and rank == 0:
        _save(out, method, optimizer, step, seconds, flops_per_step, digest)
    record["diverged_step"] = diverged_step
    return _finish(out, method, record, step, seconds, flops_per_step or 0.0, status, device, rank, dataset)


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
    if rank == 0 and status == "complete" and dataset is not None:
        record.update(representation_diagnostics(method.encoder, dataset, record["resolution"], device,
                                                 autocast_for(device, record["precision"])))
    if rank == 0:
        atomic_torch_save(method.encoder.state_dict(), out / ENCODER)
        atomic_write_text(out / RUN_JSON, json.dumps(record, indent=2))
    return record
