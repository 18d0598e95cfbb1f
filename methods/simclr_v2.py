"""SimCLR v2 — Chen, Kornblith, Swersky, Norouzi, Hinton 2020, "Big Self-Supervised
Models are Strong Semi-Supervised Learners", arXiv 2006.10029.

Mechanism: SimCLR (NT-Xent over the 2N views of the batch) with a deeper, 3-layer
projection head (Linear-BN-ReLU, Linear-BN-ReLU, Linear-BN), and fine-tuning
from the head's *first* layer instead of from the backbone's output; optionally a
MoCo-style memory: a momentum copy of encoder + head whose keys fill a FIFO
queue of extra negatives.

Paper defaults: head 2048-2048-2048-128 on ResNet-50 (hidden width = feature
dimension), temperature 0.1, LARS lr 0.3 x batch/256 (the released code; the
paper also uses 0.1 x sqrt(batch)), weight decay 1e-6, batch 4096, 800 epochs,
SimCLR's augmentation; memory of 65536 keys with momentum 0.999 ("a modest ~1 %
improvement", Sec. 3). Fine-tuning from the first projection layer (Sec. 2).

Deviations: temperature 0.5, SimCLR's own setting for small images and batches (as in
``methods/simclr.py``); the memory is **off by default** (``queue_length: 0``): the
released code has none and the paper credits it with ~1 % only at its scale;
``queue_length: 65536`` turns it on, with the queue length and momentum scaled to the
suite by the shared rule (``scale_length`` / ``scale_momentum``, the EMA's horizon
capped at the suite's ``train.ema_horizon_cap`` of the run: the tiny suite's 0.1 = 32 of
its 320 steps, instead of 500; ``scale_to_dataset: false`` keeps the literal values).
The suite may impose one optimizer for every method (the tiny suite does).

For the semi-supervised evaluation: ``SimCLRv2.finetune_encoder()`` returns
``nn.Sequential(backbone, first projection layer (Linear-BN-ReLU))`` with a
``feature_dim`` attribute (the head's hidden width); ``finetune_layers`` (default
1) is how many projection layers it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import info_nce, nt_xent
from methods.modules import FeatureQueue, ema_update, frozen_copy, mlp, scale_length, scale_momentum
from methods.registry import register


@dataclass(frozen=True)
class SimCLRv2Hparams:
    temperature: float = field(default=0.5, metadata={"positive": True})
    proj_dim: int = field(default=128, metadata={"positive": True})
    proj_layers: int = field(default=3, metadata={"positive": True})
    finetune_layers: int = field(default=1, metadata={"nonnegative": True,
                                                      "doc": "projection layers kept for fine-tuning"})
    queue_length: int = field(default=0, metadata={"nonnegative": True, "doc": "0 = no memory (default)"})
    momentum: float = field(default=0.999, metadata={"nonnegative": True})
    scale_to_dataset: bool = True
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("lars", 0.3, 1e-6, 0.9, True))


class _FinetuneEncoder(nn.Sequential):
    def __init__(self, backbone: nn.Module, layers: nn.Module, feature_dim: int):
        super().__init__(backbone, layers)
        self.feature_dim = feature_dim


@register
class SimCLRv2(Method):
    name = "simclr_v2"
    paper = "SimCLR v2 — Chen et al. 2020, arXiv 2006.10029"
    family = "end-to-end contrastive"
    view_recipe = "simclr"
    Hparams = SimCLRv2Hparams

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim = backbone.feature_dim
        # Linear-BN-ReLU x (layers - 1), then Linear-BN (BN without affine on the output)
        self.projector = mlp(dim, dim, hp.proj_dim, hp.proj_layers, bn_last=True)
        self.hidden_dim = dim
        self.key = None
        if hp.queue_length:
            self.online = nn.Sequential(backbone, self.projector)
            self.key = frozen_copy(self.online)
            length, momentum = hp.queue_length, hp.momentum
            if hp.scale_to_dataset:
                length = scale_length(hp.queue_length, ctx.dataset_size, ctx.batch_size)
                momentum = scale_momentum(hp.momentum, 4096, ctx)
            self.momentum = momentum
            self.queue = FeatureQueue(length, hp.proj_dim)

    def finetune_encoder(self) -> nn.Module:
        """Backbone + the first ``finetune_layers`` projection layers (SimCLR v2 Sec. 2)."""
        keep = 3 * min(self.hp.finetune_layers, self.hp.proj_layers - 1)  # Linear, BN, ReLU per layer
        return _FinetuneEncoder(self.backbone, nn.Sequential(*list(self.projector)[:keep]),
                                self.hidden_dim if keep else self.backbone.feature_dim)

    def training_step(self, batch: Batch) -> StepOutput:
        v1, v2 = batch.views[:2]
        z1, z2 = self.projector(self.backbone(v1)), self.projector(self.backbone(v2))
        loss = nt_xent(z1, z2, self.hp.temperature)
        logs, carry = {}, None
        if self.key is not None:
            with torch.no_grad():
                k1, k2 = (F.normalize(self.key(v).float(), dim=1) for v in (v1, v2))
            negatives = self.queue.keys.clone()
            q1, q2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
            memory = (info_nce(q1, k2, negatives, self.hp.temperature)
                      + info_nce(q2, k1, negatives, self.hp.temperature)) / 2
            loss = (loss + memory) / 2
            carry = k1  # one key per image, as MoCo enqueues
            logs["memory_loss"] = memory.detach()
        return StepOutput(loss, logs, z1, carry)

    def after_step(self, progress: float, carry: object = None) -> None:
        if self.key is not None:
            ema_update(self.key, self.online, self.momentum)
            self.queue.push(carry)
