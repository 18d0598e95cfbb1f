"""All-gather with gradients: 2 gloo processes x 4 samples give the 1 x 8 NT-Xent loss and gradients."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from bench.distributed import gather_with_grad


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


def _worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    x1, x2, w = _data()
    w.requires_grad_(True)
    part = slice(4 * rank, 4 * rank + 4)
    loss = _nt_xent(gather_with_grad(x1[part] @ w), gather_with_grad(x2[part] @ w))
    loss.backward()
    dist.all_reduce(w.grad)  # DDP sums then averages; with the same loss on each rank the sum / 2 is the mean
    out[rank] = torch.cat([loss.detach().view(1), (w.grad / 2).flatten()])
    dist.destroy_process_group()


def test_gathered_loss_and_gradients_match_single_process():
    x1, x2, w = _data()
    w.requires_grad_(True)
    loss = _nt_xent(x1 @ w, x2 @ w)
    loss.backward()
    out = mp.get_context("fork").Manager().dict()  # fork: children need none of the parent's imports
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(port, out), nprocs=2, start_method="fork")
    for rank in (0, 1):
        torch.testing.assert_close(out[rank][0], loss.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[rank][1:], w.grad.flatten(), atol=1e-5, rtol=1e-5)
