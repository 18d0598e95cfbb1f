"""``sslbench perf``: how much of the hardware goes into learning.

Per method: images/s of the full training step (views counted as images; small
multi-crop views counted by pixels relative to a global crop), images/s of the
bare backbone's supervised step at the same batch and resolution, their ratio
(efficiency), view generation alone, and peak memory. Also the time of a kNN
over 60k x 10k features of dimension 512 and of feature extraction.
The runs are the board's (``pipeline.plan.run_plan``: each method's backbones and params.yaml
hyper-parameters; one seed), measured one after another through ``for_each_run`` with one job,
since runs side by side would time each other.
Warm-up steps first, then several timed repeats; the median is reported. The method's
step and the bare backbone's step alternate within one loop, so that a drift of the
machine's speed (a shared host) moves both and not their ratio.
"""

from __future__ import annotations

import gc
import io
import statistics
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from bench.config import Params, Suite, with_precision
from bench.data import Dataset
from bench.device import peak_memory_mb, pick_device
from bench.io import atomic_write_text
from bench.optim import build_optimizer
from bench.precision import autocast_for
from bench.views import ViewGenerator
from evaluations.features import extract
from evaluations.knn import knn_predict
from methods.base import Batch
from methods.registry import resolve_hparams
from pipeline.engine import RunSpec, build_method, training_step
from pipeline.plan import Run, for_each_run, run_plan


def _median_rate(fn, items: float, warmup: int, repeats: int, sync) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return items / statistics.median(times)


def _interleaved_medians(fns, warmup: int, repeats: int, sync) -> list[float]:
    """Median seconds of each of ``fns``, timed in turn within each repeat."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seconds in zip(fns, times):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            seconds.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def _sync(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def perf_plan(suite: Suite, params: Params, methods: list[str]) -> list[Run]:
    """The board's runs of ``methods`` (every backbone a method lists), one seed each."""
    plan = [run for method in methods for run in run_plan(suite, params, method)]
    first = plan[0].seed if plan else 0
    return [replace(run, position=n) for n, run in enumerate(r for r in plan if r.seed == first)]


def _training_step(run: Run, dataset: Dataset):
    """A run's full training step on a fixed batch (views, forward, backward, optimizer,
    EMA/queue updates) with the hyper-parameters the plan resolved, plus what the rates need."""
    suite, method = run.suite, run.method
    device = pick_device(suite.device)
    bs = suite.train.batch_size
    model = build_method(RunSpec(suite, method, 0, run.hparams, Path("."), suite.device), dataset, 1000).to(device)
    model.train()
    spec = model.views(suite.resolution)
    views = ViewGenerator(spec, dataset.mean, dataset.std, device)
    optimizer = build_optimizer(model.optimizer_cfg(), model.param_groups(), bs)
    autocast = autocast_for(device, suite.train.precision)
    images = dataset.train.images[:bs]
    labels = dataset.train.labels[:bs].to(device)
    idx = torch.arange(bs, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def train_step():
        training_step(model, optimizer, Batch(views(images, gen), idx, labels, gen), autocast, 0.5, 0.5)

    return train_step, model, spec, lambda: views(images, gen), device


def method_row(run: Run, dataset: Dataset, warmup: int = 3, repeats: int = 15) -> dict:
    suite = run.suite
    train_step, model, spec, make_views, device = _training_step(run, dataset)
    bs = suite.train.batch_size
    sync = _sync(device)
    view_units = spec.pixels_per_image() / (spec.crops[0].size ** 2)
    row = {"method": run.method, "backbone": run.backbone, "batch_size": bs, "resolution": suite.resolution,
           "views": spec.count, "view_units": round(view_units, 2)}
    bare_step = backbone_step(model.encoder, dataset, suite, device)
    step_s, bare_s = _interleaved_medians([train_step, bare_step], warmup, repeats, sync)
    row["step_images_per_s"] = bs * view_units / step_s
    row["views_per_s"] = _median_rate(make_views, bs * view_units, warmup, repeats, sync)
    row["backbone_images_per_s"] = bs / bare_s
    row["efficiency"] = row["step_images_per_s"] / row["backbone_images_per_s"]
    row["views_over_step"] = row["views_per_s"] / row["step_images_per_s"]
    row["peak_mem_mb"] = peak_memory_mb(device)
    gc.collect()
    print(f"{run.method} ({run.backbone}): {row['step_images_per_s']:.0f} img/s, efficiency {row['efficiency']:.2f}")
    return row


def profile_method(run: Run, dataset: Dataset, steps: int = 5, rows: int = 15) -> str:
    """Where a run's training step's time goes: torch profiler, operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    train_step, _, _, _, device = _training_step(run, dataset)
    for _ in range(2):
        train_step()
    activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * (device.type == "cuda")
    with profile(activities=activities) as prof:
        for _ in range(steps):
            train_step()
        _sync(device)()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=rows)


def backbone_step(encoder: torch.nn.Module, dataset: Dataset, suite: Suite, device: torch.device):
    """The ceiling: a supervised step of the bare backbone (+ linear classifier) on one plain view."""
    import copy

    net = copy.deepcopy(encoder).to(device).train().requires_grad_(True)  # a target network's copy is frozen
    head = torch.nn.Linear(net.feature_dim, dataset.num_classes).to(device)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=True)
    bs = suite.train.batch_size
    plain = ViewGenerator(None, dataset.mean, dataset.std, device)
    x = plain.plain(dataset.train.images[:bs], suite.resolution)
    y = dataset.train.labels[:bs].to(device)
    autocast = autocast_for(device, suite.train.precision)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = head(net(x))
        F.cross_entropy(logits.float(), y).backward()
        opt.step()

    return step


KNN_SIZE = (60000, 10000, 512)  # train x test features x dimension of the kNN timing


def evaluation_row(suite: Suite, dataset: Dataset, encoder: torch.nn.Module,
                   knn_size: tuple[int, int, int] = KNN_SIZE) -> dict:
    """Feature extraction rate and the time of a kNN of ``knn_size`` (60k x 10k at dimension 512)."""
    device = pick_device(suite.device)
    plain = ViewGenerator(None, dataset.mean, dataset.std, device)
    sample = dataset.train.images[:8192]
    start = time.perf_counter()
    extract(encoder, sample, lambda x: plain.plain(x, suite.resolution), suite.eval.batch_size, device,
            precision=suite.train.precision)
    extract_rate = len(sample) / (time.perf_counter() - start)
    g = torch.Generator().manual_seed(0)
    n_train, n_test, dim = knn_size
    train_x, test_x = torch.randn(n_train, dim, generator=g), torch.randn(n_test, dim, generator=g)
    train_y = torch.randint(0, 10, (n_train,), generator=g)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        knn_predict(train_x, train_y, test_x, [20, 200], 0.07, 10)
        times.append(time.perf_counter() - start)
    return {"extract_images_per_s": extract_rate, "knn_60k_10k_512_s": statistics.median(times)}


def run_perf(suite: Suite, dataset: Dataset, plan: list[Run], out_dir: Path,
             warmup: int = 3, repeats: int = 15, knn_size: tuple[int, int, int] = KNN_SIZE) -> pd.DataFrame:
    """The perf table of ``plan`` (``perf_plan``: the board's runs) at the suite's resolved precision."""
    suite = with_precision(suite, pick_device(suite.device))
    plan = [replace(run, suite=with_precision(run.suite, pick_device(run.suite.device))) for run in plan]
    rows = for_each_run(plan, partial(method_row, dataset=dataset, warmup=warmup, repeats=repeats), jobs=1)
    table = pd.DataFrame(rows)
    device = pick_device(suite.device)
    encoder = build_method(RunSpec(suite, "random", 0, resolve_hparams("random", {}), Path("."), suite.device),
                           dataset, 1).encoder
    for key, value in evaluation_row(suite, dataset, encoder, knn_size).items():
        table[key] = value
    table.insert(0, "device", device.type)
    table.insert(1, "threads", torch.get_num_threads())
    table.insert(2, "precision", suite.train.precision)
    table.insert(3, "cpu_capability", torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else "")
    buf = io.StringIO()
    table.to_csv(buf, index=False, float_format="%.3f")
    atomic_write_text(out_dir / f"{device.type}.csv", buf.getvalue())
    return table
