"""MoCo v3 — Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised
Vision Transformers", arXiv 2104.02057.

Mechanism: a query encoder (backbone + projector) followed by a predictor, and a
momentum encoder (EMA of backbone + projector, no predictor). No queue: the keys
of the *same batch* are the negatives. Symmetrised InfoNCE,
ctr(q1, k2) + ctr(q2, k1), with ctr = CrossEntropy(q k^T / T) x 2T (the paper's
code). The momentum rises from m to 1 on a half-cosine. For ViTs the patch
projection is a frozen random layer (the paper's stability trick, Sec. 4.2).

Paper defaults: ResNet-50: projector 2 layers (the released code; the paper says
"3-layer" for the ViT projector) 2048-4096-256 with BN on every layer (last BN
without affine), predictor 256-4096-256 (BN on the hidden layer), T = 1.0, m = 0.99
(100 and 300-epoch recipes), LARS lr 0.6 (100 ep) x batch/256, weight decay 1e-6,
batch 4096, BYOL's asymmetric augmentation. ViT: 3-layer projector, T = 0.2,
m = 0.99, AdamW lr 1.5e-4 x batch/256, weight decay 0.1, 40-epoch warm-up.

Deviations: hidden widths are 2x the backbone's feature dimension (4096 on ResNet-50's
2048; ``hidden_factor``; the paper keeps 4096 for ViTs too, 384 here for ViT-Tiny);
``temperature: 0`` (the default) picks the paper's per-backbone value (1.0 ResNet, 0.2
ViT); the base momentum is scaled to the suite by the shared rule
(``methods.modules.scale_momentum`` from batch 4096 on ImageNet; ``scale_to_dataset:
false`` keeps 0.99), with its horizon capped at the suite's ``train.ema_horizon_cap`` of
the run (``scale_momentum``; the tiny suite's 0.1 = 32 of its 320 steps, instead of 50;
``results/ablations/mocov3_ema_cap.csv``, 2 seeds: kNN-20 79.2 with the cap vs 78.2
without), and then follows the paper's cosine to 1. The default optimizer is the ResNet
recipe; the ViT recipe (AdamW 1.5e-4, wd 0.1) must be set as an override, and a suite
may impose one optimizer for every method (the tiny suite does). Our ViT uses learned
position embeddings (the paper: fixed 2-D sin-cos) and the patch projection's default
initialisation (the paper: Xavier-uniform over the flattened patch). BN statistics are
per device (the paper uses SyncBN). Fixed in issue 16: the EMA copied the online
network's BN buffers into the momentum encoder; it now averages parameters only, as the
paper's code, and the momentum encoder's BN statistics come from its own (train-mode)
forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bench.distributed import gather_with_grad
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import in_batch_info_nce
from methods.modules import cosine_increase, ema_update, frozen_copy, is_vit, mlp, per_view, scale_momentum
from methods.registry import register


@dataclass(frozen=True)
class MoCoV3Hparams:
    temperature: float = field(default=0.0, metadata={"nonnegative": True,
                                                      "doc": "0 = the paper's value (1.0 ResNet, 0.2 ViT)"})
    momentum: float = field(default=0.99, metadata={"nonnegative": True, "doc": "base of the cosine to 1"})
    proj_dim: int = field(default=256, metadata={"positive": True})
    hidden_factor: float = field(default=2.0, metadata={"positive": True})
    freeze_patch_embed: bool = field(default=True, metadata={"doc": "ViT only: frozen random patch projection"})
    scale_to_dataset: bool = True
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("lars", 0.6, 1e-6, 0.9, True))


@register
class MoCoV3(Method):
    name = "mocov3"
    paper = "MoCo v3 — Chen, Xie and He 2021, arXiv 2104.02057"
    family = "momentum contrastive"
    view_recipe = "byol"
    Hparams = MoCoV3Hparams
    distributed = True

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim = backbone.feature_dim
        vit = is_vit(backbone)
        hidden = max(8, int(round(dim * hp.hidden_factor)))
        if vit and hp.freeze_patch_embed:
            for p in backbone.patch_embed.parameters():
                p.requires_grad_(False)
        self.projector = mlp(dim, hidden, hp.proj_dim, layers=3 if vit else 2, bn_last=True)
        self.predictor = mlp(hp.proj_dim, hidden, hp.proj_dim, layers=2)
        self.online = nn.Sequential(backbone, self.projector)
        self.momentum_encoder = frozen_copy(self.online)
        self.temperature = hp.temperature or (0.2 if vit else 1.0)
        self.m_base = hp.momentum
        if hp.scale_to_dataset:
            self.m_base = scale_momentum(hp.momentum, 4096, ctx)
        self.m = self.m_base

    def training_step(self, batch: Batch) -> StepOutput:
        v1, v2 = batch.views[:2]
        z1, z2 = per_view(self.online, v1, v2)
        q1, q2 = per_view(self.predictor, z1, z2)
        with torch.no_grad():
            k1, k2 = per_view(self.momentum_encoder, v1, v2)
        t = self.temperature
        q1, q2, k1, k2 = (gather_with_grad(x) for x in (q1, q2, k1, k2))  # keys of every worker
        loss = in_batch_info_nce(q1, k2, t) + in_batch_info_nce(q2, k1, t)
        return StepOutput(loss, {"momentum": torch.tensor(self.m)}, z1)

    def after_step(self, progress: float, carry: object = None) -> None:
        self.m = cosine_increase(self.m_base, progress)
        ema_update(self.momentum_encoder, self.online, self.m)
