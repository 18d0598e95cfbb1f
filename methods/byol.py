"""BYOL — Grill et al. 2020, "Bootstrap Your Own Latent", arXiv 2006.07733.

Mechanism: an online network (backbone, projector, predictor) regresses the
projection of a target network (EMA of backbone + projector, no predictor) of the
other view; normalised MSE (2 - 2 cos), symmetrised over the two views; the target
is never updated by the optimizer; its decay rises from tau_base to 1 on a cosine.

Paper defaults: LARS lr 0.2 x batch/256, weight decay 1.5e-6 (not on biases/BN),
tau_base 0.996, projector and predictor MLP 4096-256 with BN, batch 4096, the
asymmetric augmentation (blur 1.0/0.1, solarize 0/0.2).

Deviations: tau_base is scaled to the suite by the shared rule
(``methods.modules.scale_momentum``; ``scale_to_dataset: false`` keeps 0.996) and its
horizon is capped at the suite's ``train.ema_horizon_cap`` of the run
(``scale_momentum``; the tiny suite's 0.1 = 32 of its 320 steps, instead of 125;
``results/ablations/byol_ema_cap.csv``, 2 seeds: kNN-20 76.8 with the cap vs 72.5
without); hidden widths are 2x the backbone's feature dimension (4096 for ResNet-50's
2048).

Fixed (issue 16): the loss is the paper's sum of the two directions,
L(p1, sg(t2)) + L(p2, sg(t1)) (eq. 2-3; its range is [0, 8]); it used to be their mean,
which halved the gradient relative to weight decay (and LARS's trust ratio). Tiny suite
cut to 320 steps, fp32, kNN-20 on a 10k/2k subset, seeds 0 / 1: 73.5 / 74.3 with the
sum, 66.55 / 70.15 with the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import byol_regression
from methods.modules import cosine_increase, ema_update, frozen_copy, mlp, per_view, scale_momentum
from methods.registry import register


@dataclass(frozen=True)
class BYOLHparams:
    tau_base: float = field(default=0.996, metadata={"nonnegative": True})
    proj_dim: int = field(default=256, metadata={"positive": True})
    hidden_factor: int = field(default=2, metadata={"positive": True})
    scale_to_dataset: bool = True
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("lars", 0.2, 1.5e-6, 0.9, True))


@register
class BYOL(Method):
    name = "byol"
    paper = "BYOL — Grill et al. 2020, arXiv 2006.07733"
    family = "self-distillation"
    view_recipe = "byol"
    Hparams = BYOLHparams
    distributed = True

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim = backbone.feature_dim
        hidden = dim * hp.hidden_factor
        self.online = torch.nn.Sequential(backbone, mlp(dim, hidden, hp.proj_dim))
        self.predictor = mlp(hp.proj_dim, hidden, hp.proj_dim)
        self.target = frozen_copy(self.online)
        self.tau_base = hp.tau_base
        if hp.scale_to_dataset:
            self.tau_base = scale_momentum(hp.tau_base, 4096, ctx)
        self.tau = self.tau_base

    def training_step(self, batch: Batch) -> StepOutput:
        v1, v2 = batch.views
        z1, z2 = per_view(self.online, v1, v2)
        p1, p2 = per_view(self.predictor, z1, z2)
        with torch.no_grad():
            t1, t2 = per_view(self.target, v1, v2)
        loss = byol_regression(p1, t2) + byol_regression(p2, t1)  # the paper's sum (eq. 2-3)
        return StepOutput(loss, {"tau": torch.tensor(self.tau)}, z1)

    def after_step(self, progress: float, carry: object = None) -> None:
        self.tau = cosine_increase(self.tau_base, progress)
        ema_update(self.target, self.online, self.tau)
