"""Building blocks shared by the methods: heads, EMA targets, queues, schedules.

Also the one rule that scales paper hyper-parameters to a suite's dataset and
batch, applied identically to every method (see :func:`scale_momentum`).
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

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


def expander(feature_dim: int, factor: float) -> nn.Sequential:
    """Barlow Twins' projector / VICReg's expander: 3 linear layers of width ``factor`` x the
    backbone's feature dim (both papers: 8192 = 4 x 2048), BN + ReLU between them."""
    width = max(8, int(round(feature_dim * factor)))
    return mlp(feature_dim, width, width, layers=3)


def is_vit(backbone: nn.Module) -> bool:
    """A ViT backbone (the methods whose papers give separate ViT and ResNet recipes ask)."""
    return hasattr(backbone, "patch_embed")


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that the optimizer never sees (momentum / target encoder)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target = m * target + (1 - m) * online, for parameters only (as the authors' DINO, MoCo and
    BYOL code): buffers are left alone, so the target's BN running statistics are estimated by its
    own forward passes, which run in train mode (``Method.train()`` covers the target too)."""
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1 - momentum)


def multicrop_forward(backbone: nn.Module, head: nn.Module, crops: list[torch.Tensor]) -> list[torch.Tensor]:
    """Multi-crop as DINO's MultiCropWrapper and SwAV's forward: the backbone runs once per run of
    consecutive equal-resolution crops, the head once on all the features (its BN sees every crop
    together). Returns one output per crop (crops hold the same images, so equal batch sizes)."""
    feats = []
    start = 0
    while start < len(crops):
        end = start + 1
        while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
            end += 1
        feats.append(backbone(torch.cat(crops[start:end])))
        start = end
    return list(head(torch.cat(feats)).chunk(len(crops)))


def cosine_increase(base: float, progress: float, final: float = 1.0) -> float:
    """BYOL's schedule: ``final - (final - base) * (cos(pi * progress) + 1) / 2``."""
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def scale_momentum(momentum: float, paper_batch: int, ctx, paper_dataset: int = IMAGENET_TRAIN_IMAGES) -> float:
    """The suite's EMA momentum for a paper's ``momentum`` at ``paper_batch`` (one rule for every EMA).

    An EMA with momentum m at batch b averages over about b / (1 - m) images. The paper's
    horizon, as a fraction of its dataset, is kept on the suite's dataset (``ctx.dataset_size``),
    but spans at most ``ctx.ema_horizon_cap`` of the run's ``ctx.total_steps`` (the suite's
    ``train.ema_horizon_cap``; 1 = uncapped): on a run of a few epochs an epoch-long horizon
    would make the target lag a large share of training (BYOL on the 320-step ``tiny``: 39 %).
    """
    if momentum <= 0 or momentum >= 1:
        return momentum
    horizon_epochs = paper_batch / (1 - momentum) / paper_dataset
    horizon_steps = horizon_epochs * ctx.dataset_size / ctx.batch_size
    cap = getattr(ctx, "ema_horizon_cap", 1.0)
    if ctx.total_steps and cap < 1.0:
        horizon_steps = min(horizon_steps, cap * ctx.total_steps)
    return max(0.0, 1 - 1 / horizon_steps) if horizon_steps > 0 else 0.0


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


# --- first-generation contrastive methods: memory bank, NCE partition, views, patches ---


class MemoryBank(nn.Module):
    """One L2-normalised feature per training image (InstDisc, PIRL, CMC), indexed by
    ``Batch.indices``; an entry is updated when its image is seen:
    v <- normalise(m * v + (1 - m) * f) (InstDisc sec. 3.3, m = 0.5).

    The momentum is per entry (one update per epoch of the dataset), so it is not
    rescaled with the suite: its horizon is already counted in epochs.
    """

    def __init__(self, size: int, dim: int, momentum: float = 0.5):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("features", nn.functional.normalize(torch.randn(size, dim), dim=1))

    def sample(self, n: int, k: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """[n, k] indices drawn uniformly with replacement (the uniform noise distribution)."""
        dev = self.features.device
        return torch.randint(0, len(self.features), (n, k), generator=gen, device=dev)

    def scores(self, query: torch.Tensor, indices: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Dot products [N, 1 + K] of ``query`` [N, D] with the bank's entry for its own
        image (column 0) and with the ``negatives`` [N, K] entries (no gradient to the bank)."""
        idx = torch.cat([indices.view(-1, 1), negatives], dim=1)
        bank = self.features[idx].detach()  # [N, 1 + K, D]
        return torch.einsum("nkd,nd->nk", bank, query.float())

    @torch.no_grad()
    def fill(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """Set entries outright (the initial bank, from the untrained network)."""
        self.features.index_copy_(0, indices, nn.functional.normalize(features.detach().float(), dim=1))

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        old = self.features[indices]
        new = self.momentum * old + (1 - self.momentum) * features.detach().float()
        self.features.index_copy_(0, indices, nn.functional.normalize(new, dim=1))


def scaled_negatives(k: int, ctx, scale: bool) -> int:
    """Noise samples for NCE: the shared rule on the dataset fraction, never more than the bank."""
    k = scale_length(k, ctx.dataset_size, 1) if scale else k
    return min(k, ctx.dataset_size)


class PartitionEstimate(nn.Module):
    """NCE's normalisation constant Z (InstDisc): estimated once, from the first batch,
    as Z = n * mean(exp(v.f / T)) (the Monte-Carlo estimate of the paper's eq. 7 and
    its code), then kept fixed (a buffer, so a resumed run keeps it)."""

    def __init__(self, dataset_size: int):
        super().__init__()
        self.dataset_size = dataset_size
        self.register_buffer("z", torch.tensor(-1.0))
        self._ready = False

    def forward(self, exp_scores: torch.Tensor) -> torch.Tensor:
        """``exp_scores`` / Z, fixing Z on the first call."""
        if not self._ready:  # one host sync per run; a restored Z is kept
            if self.z.item() < 0:
                self.z.copy_(exp_scores.detach().float().mean() * self.dataset_size)
            self._ready = True
        return exp_scores / self.z


def memory_banks(hp, ctx, n: int = 1) -> tuple[list[MemoryBank], list[PartitionEstimate]]:
    """The memory-bank methods' set-up (InstDisc, PIRL, CMC): ``n`` banks of ``hp.proj_dim``
    features per training image (``hp.memory_momentum``), then one NCE partition estimate each."""
    banks = [MemoryBank(ctx.dataset_size, hp.proj_dim, hp.memory_momentum) for _ in range(n)]
    return banks, [PartitionEstimate(ctx.dataset_size) for _ in range(n)]


def initialise_banks(hp, batches, embed, *banks: MemoryBank) -> None:
    """``Method.initialise`` of the memory-bank methods: with ``hp.bank_init: network`` each bank
    starts from the untrained network's embeddings (``embed(x)``: one tensor, or one per bank);
    with ``random`` it keeps its random unit vectors (the paper)."""
    if hp.bank_init != "network":
        return
    for idx, x in batches:
        z = embed(x)
        for bank, zi in zip(banks, z if isinstance(z, tuple) else (z,), strict=True):
            bank.fill(idx, zi)


def patch_grid(x: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """Overlapping patches [B, G, G, C, patch, patch] of ``x`` [B, C, H, W], row-major
    (grid row r covers pixels r * stride .. r * stride + patch - 1); G = (H - patch) // stride + 1."""
    return x.unfold(2, patch, stride).unfold(3, patch, stride).permute(0, 2, 3, 1, 4, 5)


class ResidualEmbed(nn.Module):
    """Deep InfoMax's "encoder-and-dot-product" embedding (also AMDIM's): a 2-layer
    network plus a linear shortcut, applied per vector [B, D] or per position with
    1x1 convolutions [B, D, H, W] (``conv=True``); scores are dot products of embeddings."""

    def __init__(self, in_dim: int, out_dim: int, conv: bool = False):
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.block = nn.Sequential(layer(in_dim, out_dim), nn.ReLU(), layer(out_dim, out_dim))
        self.shortcut = layer(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + self.shortcut(x)


# Deep InfoMax / AMDIM: global vs local features

def global_local_scores(g: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Dot-product scores [N, N, P] of global embeddings [N, D] against every position
    of every image's local embedding map [N, D, H, W] (entry i, j, p: image i's global
    feature with position p of image j)."""
    return torch.einsum("id,jdp->ijp", g.float(), local.flatten(2).float())


def stage_channels(backbone, layer: int) -> int:
    return backbone.feature_dim // 2 ** (4 - layer)


def global_and_maps(backbone, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The pooled global feature (exactly ``backbone(x)``) and the layer1..4 maps, in one pass."""
    maps = backbone.feature_maps(x)
    return torch.flatten(backbone.avgpool(maps[-1]), 1), maps


def _grouped_bn(bn: nn.modules.batchnorm._BatchNorm, groups: int, x: torch.Tensor) -> torch.Tensor:
    """BN of ``x`` chunk by chunk (``groups`` equal chunks of consecutive samples): each chunk
    normalised with its own statistics, running statistics updated once per chunk."""
    forward = type(bn).forward
    return torch.cat([forward(bn, chunk) for chunk in x.chunk(groups)])


@contextmanager
def grouped_batchnorm(module: nn.Module, groups: int):
    """Within the block, every BN layer of ``module`` normalises each of ``groups`` equal chunks of
    its batch separately: one forward pass equal to ``groups`` passes of one chunk each, with the
    convolutions and linear layers batched."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.forward = lambda x, bn=bn: _grouped_bn(bn, groups, x)
    try:
        yield
    finally:
        for bn in bns:
            del bn.forward


def per_view(module: nn.Module, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``module`` on each view, as separate calls (the authors' code: BN statistics per view), run
    as one batched pass with per-view BN where the views have one shape: same outputs, gradients
    and running statistics, and faster on small batches."""
    if len(views) == 1 or len({v.shape for v in views}) > 1:
        return tuple(module(v) for v in views)
    with grouped_batchnorm(module, len(views)):
        return module(torch.cat(views)).chunk(len(views))
