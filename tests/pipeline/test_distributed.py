"""All-gather with gradients: 2 gloo processes x 4 samples give the 1 x 8 NT-Xent loss and gradients."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from bench.distributed import gather_with_grad
from tests.conftest import needs_fmnist


def _nt_xent(z1, z2, t=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / t
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g), torch.randn(5, 3, generator=g)


def _join(rank: int, store: str) -> None:
    """Two-rank gloo group through a file store: no TCP store server; gloo's pairs on loopback."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)


def _worker(rank, store, out):
    _join(rank, store)
    x1, x2, w = _data()
    w.requires_grad_(True)
    part = slice(4 * rank, 4 * rank + 4)
    loss = _nt_xent(gather_with_grad(x1[part] @ w), gather_with_grad(x2[part] @ w))
    loss.backward()
    dist.all_reduce(w.grad)  # DDP sums then averages; with the same loss on each rank the sum / 2 is the mean
    out[rank] = torch.cat([loss.detach().view(1), (w.grad / 2).flatten()])
    dist.destroy_process_group()


def test_gathered_loss_and_gradients_match_single_process(tmp_path):
    x1, x2, w = _data()
    w.requires_grad_(True)
    loss = _nt_xent(x1 @ w, x2 @ w)
    loss.backward()
    out = mp.get_context("spawn").Manager().dict()
    mp.start_processes(_worker, args=(str(tmp_path / "store"), out), nprocs=2, start_method="spawn")
    for rank in (0, 1):
        torch.testing.assert_close(out[rank][0], loss.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[rank][1:], w.grad.flatten(), atol=1e-5, rtol=1e-5)


# --- a whole method step: 2 workers x 4 images against 1 process x 8 images -------------

def _method(name: str, overrides: dict, channels: int = 1):
    from bench.backbones import BackboneCfg, build_backbone
    from methods.base import Context
    from methods.registry import get_method, resolve_hparams

    torch.manual_seed(0)
    backbone = build_backbone(BackboneCfg(name="resnet18", width=4, small_stem=True, in_channels=channels))
    ctx = Context(dataset_size=64, num_classes=10, batch_size=8, total_steps=10, resolution=16, in_channels=channels)
    return get_method(name)(backbone, resolve_hparams(name, overrides), ctx).train()


def _views():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 1, 16, 16, generator=g) for _ in range(2)]


def _step(method, views, part=slice(None)):
    """One step on ``views`` (already this worker's share): images ``part`` of the batch of 8."""
    from methods.base import Batch

    out = method.training_step(Batch(views, torch.arange(8)[part], torch.zeros(8).long()[part]))
    out.loss.backward()
    return out.loss.detach(), out.carry


def _grads(method):
    return torch.cat([p.grad.flatten() for _, p in sorted(method.named_parameters()) if p.grad is not None])


def _method_worker(rank, store, name, overrides, out):
    from bench.distributed import average_gradients, broadcast_state, convert_global_bn

    _join(rank, store)
    method = convert_global_bn(_method(name, overrides))
    broadcast_state(method)
    part = slice(4 * rank, 4 * rank + 4)
    loss, carry = _step(method, [v[part] for v in _views()], part)
    dist.all_reduce(loss)
    average_gradients(method)
    method.after_step(0.5, carry)
    state = {k: v.clone() for k, v in method.state_dict().items()}
    out[rank] = (loss / 2, _grads(method), state)
    dist.destroy_process_group()


@pytest.mark.parametrize("name,overrides", [
    ("simclr", {}),
    ("mocov2", {"shuffle_bn_groups": 1}),  # one BN group: the keys' statistics are the whole batch's
    pytest.param("mocov3", {}, marks=pytest.mark.slow),  # slow: the default run keeps one EMA method (byol)
    ("byol", {}),
    pytest.param("barlowtwins", {}, marks=pytest.mark.slow),  # slow: no cross-batch state beyond simclr's
])
def test_two_workers_train_what_one_process_trains(name, overrides, tmp_path):
    """Same global batch: mean loss, averaged gradients and the state after the step (EMA
    targets, MoCo's queue, BN running statistics) match one process, within float tolerance."""
    threads = torch.get_num_threads()
    # A fresh process's thread count, as the workers have: an earlier test's engine run may have set
    # another in this process, and Barlow Twins / BYOL / MoCo v3 gradients then differ beyond tolerance.
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    try:
        method = _method(name, overrides)
        loss, carry = _step(method, _views())
    finally:
        torch.set_num_threads(threads)
    grads = _grads(method)
    method.after_step(0.5, carry)
    state = method.state_dict()
    out = mp.get_context("spawn").Manager().dict()  # spawn: this process already ran OpenMP threads
    mp.start_processes(_method_worker, args=(str(tmp_path / "store"), name, overrides, out), nprocs=2,
                       start_method="spawn")
    for rank in (0, 1):
        d_loss, d_grads, d_state = out[rank]
        torch.testing.assert_close(d_loss, loss, atol=1e-5, rtol=1e-4)
        scale = float(grads.abs().max().clamp(min=1.0))  # Barlow Twins' gradients reach the hundreds
        torch.testing.assert_close(d_grads, grads, atol=1e-5 * scale, rtol=1e-3)
        assert d_state.keys() == state.keys()
        for key, value in state.items():
            torch.testing.assert_close(d_state[key], value, atol=1e-5, rtol=1e-4, msg=f"{name}: {key}")


# --- the same step from a streamed folder: each worker decodes only its own files ---------

FOLDER_BATCH = torch.arange(0, 80, 10)  # the 8 files of the step, spread over the 10 classes


def _folder_views(root: str, part=slice(None)) -> list[torch.Tensor]:
    """SimCLR's views of ``FOLDER_BATCH[part]``, decoded from the folder with one fixed draw
    (as the tensor test fixes its views): a file's crops depend on its index, not on its batch."""
    from bench.data import DatasetCfg, at_resolution, load_raw
    from bench.views import ViewGenerator, recipe

    ds = at_resolution(load_raw(DatasetCfg(name="imagefolder", root=root)), 16)
    views = ViewGenerator(recipe("simclr", 16), ds.mean, ds.std, torch.device("cpu"))
    return views(ds.train.images[FOLDER_BATCH[part]], torch.Generator().manual_seed(7))


def _folder_worker(rank, store, root, out):
    import bench.sources
    from bench.distributed import average_gradients, broadcast_state, convert_global_bn

    opened, real = [], bench.sources.decode_crops
    bench.sources.decode_crops = lambda path, *a, **k: opened.append(path.name) or real(path, *a, **k)
    _join(rank, store)
    method = convert_global_bn(_method("simclr", {}, channels=3)).double()
    broadcast_state(method)
    part = slice(4 * rank, 4 * rank + 4)
    views = _folder_views(root, part)
    loss, _ = _step(method, [v.double() for v in views], part)
    dist.all_reduce(loss)
    average_gradients(method)
    out[rank] = (loss / 2, _grads(method), views, opened)
    dist.destroy_process_group()


@needs_fmnist
def test_two_workers_decode_disjoint_files_of_a_streamed_folder_and_train_what_one_process_trains(tmp_path):
    """Each of 2 gloo workers opens only its 4 files of the step (disjoint; together the step's 8);
    its views equal the one-process batch's rows bit for bit, and the mean loss and averaged
    gradients match one process. The step runs in float64: on these real images float32's own
    rounding moves some gradients by 3e-4 (one process, float32 against float64), ten times the
    tolerance, so a float32 comparison could not tell a sharding bug from rounding."""
    from bench import folders
    from tests.conftest import FMNIST

    root = str(folders.export_fashion_mnist_folder(tmp_path / "folder", FMNIST.parent, limit=80))
    threads = torch.get_num_threads()
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # as the spawned workers have (see above)
    try:
        views = _folder_views(root)
        method = _method("simclr", {}, channels=3).double()  # see the docstring
        loss, _ = _step(method, [v.double() for v in views])
    finally:
        torch.set_num_threads(threads)
    grads = _grads(method)
    out = mp.get_context("spawn").Manager().dict()
    mp.start_processes(_folder_worker, args=(str(tmp_path / "store"), root, out), nprocs=2, start_method="spawn")
    files = folders.scan(root)["train"]["files"]
    for rank in (0, 1):
        d_loss, d_grads, d_views, opened = out[rank]
        part = slice(4 * rank, 4 * rank + 4)
        assert sorted(opened) == sorted(files[i].rsplit("/", 1)[-1] for i in FOLDER_BATCH[part].tolist())
        assert all(torch.equal(d, v[part]) for d, v in zip(d_views, views, strict=True))
        torch.testing.assert_close(d_loss, loss, atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(d_grads, grads, atol=1e-9, rtol=1e-7)
    assert not set(out[0][3]) & set(out[1][3])


@needs_fmnist
def test_ray_train_job_writes_one_run(ray_cluster, workdir):
    """``pretrain --workers 2``: a TorchTrainer job (gloo, loopback Ray) writes one run, from rank 0."""
    import json

    from bench.config import Params, load_suite
    from bench.errors import SSLBenchError
    from pipeline.stages import pretrain

    suite = load_suite("smoke")
    params = Params(suite="smoke", seeds=[0], methods={"simclr": {}, "swav": {}})
    [record] = pretrain(suite, params, "simclr", workers=2)
    run = workdir / "runs" / "smoke" / "simclr" / "seed0"
    assert record["status"] == "complete" and record["workers"] == 2 and record["steps"] == 8
    assert json.loads((run / "run.json").read_text())["workers"] == 2 and (run / "encoder.pt").is_file()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]  # one writer: no line twice
    with pytest.raises(SSLBenchError, match="cannot run on several workers yet"):
        pretrain(suite, params, "swav", workers=2)
