"""Barlow Twins — Zbontar, Jing, Misra, LeCun, Deny 2021, "Barlow Twins:
Self-Supervised Learning via Redundancy Reduction", arXiv 2103.03230.

Mechanism: one encoder (backbone + 3-layer projector, Linear-BN-ReLU x 2 then
Linear); the embeddings of the two views are standardised over the batch and
their cross-correlation matrix C (D x D) is driven to the identity:
loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2. No negatives, no
momentum encoder, no predictor, no stop-gradient.

Paper defaults: projector 8192-8192-8192 on ResNet-50 (2048-d features), lambda
5e-3 (0.0051 in the released code), LARS lr 0.2 for weights and 0.0048 for
biases/BN x batch/256, weight decay 1.5e-6, batch 2048, 1000 epochs, 10-epoch
warm-up then cosine; BYOL's asymmetric augmentation (blur 1.0/0.1, solarize 0/0.2).

Deviations: the projector width is 4x the backbone's feature dimension
(``proj_factor``; 8192 on ResNet-50 as in the paper). lambda stays at the paper's
5e-3 whatever D is (the released code does not rescale it either). At random
initialisation the off-diagonal / on-diagonal balance is about lambda x D / N
(batch N): 0.02 in the paper (8192 / 2048), 0.01 with 5e-3 at D = 256, N = 128.
``scale_lambda: true`` is an ablation that keeps lambda x D constant instead
(lambda = 5e-3 x 8192 / D, 0.16 at D = 256); on the tiny suite it weighted the
off-diagonal term 16x more than the paper and ended below the random-init
baseline (dimensional collapse: effective rank ~6 of 256), so it is off. The separate bias
learning rate of the paper's LARS is not reproduced (biases and BN are excluded
from weight decay and adaptation, as for the other LARS methods). The suite may
impose one optimizer for every method (the tiny suite does). The embedding
logged for the collapse metrics is the projector output of the first view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.distributed import gather_with_grad
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import barlow_twins_loss
from methods.modules import expander, per_view
from methods.registry import register

PAPER_PROJ_DIM = 8192


@dataclass(frozen=True)
class BarlowTwinsHparams:
    lambd: float = field(default=5e-3, metadata={"positive": True, "doc": "off-diagonal weight at D = 8192"})
    scale_lambda: bool = field(default=False, metadata={"doc": "ablation: keep lambda x D constant (D != 8192)"})
    proj_factor: float = field(default=4.0, metadata={"positive": True,
                                                      "doc": "projector width / backbone feature dim"})
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("lars", 0.2, 1.5e-6, 0.9, True))


@register
class BarlowTwins(Method):
    name = "barlowtwins"
    paper = "Barlow Twins — Zbontar et al. 2021, arXiv 2103.03230"
    family = "redundancy reduction"
    view_recipe = "byol"
    Hparams = BarlowTwinsHparams
    distributed = True

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        self.projector = expander(backbone.feature_dim, hp.proj_factor)
        proj = self.projector[-1].out_features
        self.lambd = hp.lambd * PAPER_PROJ_DIM / proj if hp.scale_lambda else hp.lambd

    def training_step(self, batch: Batch) -> StepOutput:
        v1, v2 = batch.views[:2]
        z1, z2 = per_view(self.projector, *per_view(self.backbone, v1, v2))
        loss = barlow_twins_loss(gather_with_grad(z1), gather_with_grad(z2), self.lambd)
        return StepOutput(loss, {"lambda": torch.tensor(self.lambd)}, z1)
