"""Building blocks shared by the methods: heads, EMA targets, queues, schedules.

Also the one rule that scales paper hyper-parameters to a suite's dataset and
batch, applied identically to every method (see :func:`scale_momentum`).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

IMAGENET_TRAIN_IMAGES = 1_281_167


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, bn_hidden: bool = True,
        bn_last: bool = False) -> nn.Sequential:
    """``layers`` linear layers; BN + ReLU between them; optional BN (no affine) at the end."""
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        mods.append(nn.Linear(dim, hidden_dim, bias=not bn_hidden))
        if bn_hidden:
            mods.append(nn.BatchNorm1d(hidden_dim))
        mods.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    mods.append(nn.Linear(dim, out_dim, bias=not bn_last))
    if bn_last:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that the optimizer never sees (momentum / target encoder)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target = m * target + (1 - m) * online, for parameters; buffers are copied."""
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1 - momentum)
    for t_buf, o_buf in zip(target.buffers(), online.buffers()):
        t_buf.copy_(o_buf)


def cosine_increase(base: float, progress: float, final: float = 1.0) -> float:
    """BYOL's schedule: ``final - (final - base) * (cos(pi * progress) + 1) / 2``."""
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def scale_momentum(momentum: float, paper_batch: int, batch: int, dataset_size: int,
                   paper_dataset: int = IMAGENET_TRAIN_IMAGES) -> float:
    """Keep an EMA's time constant fixed when measured in epochs of the dataset.

    An EMA with momentum m at batch b averages over about b / (1 - m) images; the
    paper's horizon, as a fraction of its dataset, is kept on the suite's dataset.
    """
    if momentum <= 0 or momentum >= 1:
        return momentum
    horizon_epochs = paper_batch / (1 - momentum) / paper_dataset
    return max(0.0, 1 - batch / (horizon_epochs * dataset_size))


def scale_length(length: int, dataset_size: int, multiple: int,
                 paper_dataset: int = IMAGENET_TRAIN_IMAGES) -> int:
    """Keep a queue / memory length fixed as a fraction of the dataset (multiple of the batch)."""
    scaled = length * dataset_size / paper_dataset
    return max(multiple, int(round(scaled / multiple)) * multiple)


class FeatureQueue(nn.Module):
    """FIFO queue of L2-normalised keys (MoCo's dictionary), updated in place."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.register_buffer("keys", nn.functional.normalize(torch.randn(length, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Replace the oldest ``len(keys)`` entries (wrapping around)."""
        n, length = len(keys), len(self.keys)
        idx = (self.ptr + torch.arange(n, device=keys.device)) % length
        self.keys.index_copy_(0, idx, keys.detach().to(self.keys.dtype))
        self.ptr.copy_((self.ptr + n) % length)


def collapse_metrics(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-channel std of L2-normalised embeddings (collapse -> 0; healthy ~ 1/sqrt(d))
    and effective rank (exp of the entropy of the normalised singular values)."""
    z = nn.functional.normalize(z.detach().float(), dim=1)
    std = z.std(dim=0).mean()
    s = torch.linalg.svdvals(z - z.mean(dim=0))
    p = s / s.sum().clamp_min(1e-12)
    rank = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
    return {"embed_std": std, "embed_std_ideal": torch.tensor(1 / math.sqrt(z.shape[1])), "eff_rank": rank}
