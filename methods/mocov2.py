"""MoCo v2 — Chen, Fan, Girshick, He 2020, "Improved Baselines with Momentum
Contrastive Learning", arXiv 2003.04297 (MoCo: He et al. 2019, arXiv 1911.05722).

Mechanism: a query encoder (backbone + 2-layer MLP head) and a momentum key
encoder (its EMA, m = 0.999); a FIFO queue of K = 65536 past keys provides the
negatives; InfoNCE with temperature 0.2; keys are enqueued after each step.
Shuffle-BN prevents the batch-norm "leak" between a query and its key.

Paper defaults: SGD lr 0.03 x batch/256, momentum 0.9, weight decay 1e-4, cosine
schedule, batch 256, MLP head 2048-2048-128 (no BN), MoCo v2 augmentation
(crop 0.2-1, jitter, grayscale, blur).

Deviations: K and m are scaled to the suite by the rule shared by every method
(``methods.modules.scale_length`` / ``scale_momentum``: the queue keeps its fraction of
the dataset, the EMA its horizon in epochs, capped at the suite's
``train.ema_horizon_cap`` of the run: the tiny suite's 0.1 = 32 of its 320 steps, longer
than m's scaled horizon of 31 steps, so the cap does not bind there);
``scale_to_dataset: false`` restores the literal values. On one device shuffle-BN is
emulated: the key batch is shuffled and encoded in ``shuffle_bn_groups`` = 8 chunks
(MoCo's 8 GPUs), the query batch in one piece. The chunks go through the key encoder in
one pass whose BN layers normalise each chunk with its own statistics
(``grouped_batchnorm``; equal to 8 separate passes, running statistics included, and
1.4x faster at batch 64 here). The number of chunks, not their size, follows the paper:
8 chunks of 32 at its batch 256, 8 chunks of 8 at batch 64 (the tiny suite). Keeping 8
keeps a key's BN batch a random eighth of the batch, as in MoCo, so its statistics
differ from those of its query's batch; chunks of a fixed 32 would be 2 halves of the
query's batch at batch 64, and at batch 32 one chunk, i.e. no shuffle and the BN leak
back. The price: a key's BN statistics come from 8 samples, not 32. Distributed runs
shuffle across workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bench.distributed import gather_with_grad
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import info_nce
from methods.modules import (
    FeatureQueue,
    ema_update,
    frozen_copy,
    grouped_batchnorm,
    mlp,
    scale_length,
    scale_momentum,
)
from methods.registry import register


@dataclass(frozen=True)
class MoCoHparams:
    temperature: float = field(default=0.2, metadata={"positive": True})
    momentum: float = field(default=0.999, metadata={"nonnegative": True})
    queue_length: int = field(default=65536, metadata={"positive": True})
    proj_dim: int = field(default=128, metadata={"positive": True})
    mlp_head: bool = True
    shuffle_bn_groups: int = field(default=8, metadata={"positive": True})
    scale_to_dataset: bool = True
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("sgd", 0.03, 1e-4))


class MomentumContrast(Method):
    """MoCo's mechanism; v1 and v2 differ in head, augmentation and temperature."""

    Hparams = MoCoHparams
    family = "momentum contrastive"
    distributed = True

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim = backbone.feature_dim
        head = mlp(dim, dim, hp.proj_dim, 2, bn_hidden=False) if hp.mlp_head else torch.nn.Linear(dim, hp.proj_dim)
        self.query = torch.nn.Sequential(backbone, head)
        self.key = frozen_copy(self.query)
        momentum, length = hp.momentum, hp.queue_length
        if hp.scale_to_dataset:
            momentum = scale_momentum(hp.momentum, 256, ctx)
            length = scale_length(hp.queue_length, ctx.dataset_size, ctx.batch_size)
        self.momentum = momentum
        self.queue = FeatureQueue(length, hp.proj_dim)

    @torch.no_grad()
    def encode_keys(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Key features with shuffled, chunked batch-norm (single-device shuffle-BN)."""
        groups = min(self.hp.shuffle_bn_groups, len(x))
        perm = torch.randperm(len(x), device=x.device, generator=gen)
        shuffled = x[perm]
        with grouped_batchnorm(self.key, groups):  # each BN layer runs chunk by chunk, whatever its kind
            keys = self.key(shuffled)
        return F.normalize(keys[torch.argsort(perm)].float(), dim=1)

    def training_step(self, batch: Batch) -> StepOutput:
        x_q, x_k = batch.views
        q = F.normalize(self.query(x_q).float(), dim=1)
        k = self.encode_keys(x_k, batch.generator)
        loss = info_nce(q, k, self.queue.keys.clone(), self.hp.temperature)
        keys = gather_with_grad(k)  # every worker's keys, in rank order
        return StepOutput(loss, {"momentum": torch.tensor(self.momentum)}, q, keys)

    def after_step(self, progress: float, carry: object = None) -> None:
        ema_update(self.key, self.query, self.momentum)
        self.queue.push(carry)


@register
class MoCoV2(MomentumContrast):
    name = "mocov2"
    paper = "MoCo v2 — Chen et al. 2020, arXiv 2003.04297"
    view_recipe = "mocov2"
