"""VICReg — Bardes, Ponce, LeCun 2021, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", arXiv 2105.04906.

Mechanism: one encoder (backbone + 3-layer "expander", Linear-BN-ReLU x 2 then
Linear); loss = lambda * invariance (MSE between the two views' embeddings)
+ mu * variance (hinge keeping each dimension's std >= gamma = 1, eps 1e-4)
+ nu * covariance (sum of squared off-diagonal covariances / D), the last two
computed on each branch separately. No negatives, no momentum encoder.

Paper defaults: lambda = mu = 25, nu = 1, expander 8192-8192-8192 on ResNet-50,
LARS lr 0.2 x batch/256 (base_lr 0.2 in the code), weight decay 1e-6, batch 2048,
1000 epochs, 10-epoch warm-up then cosine; BYOL's asymmetric augmentation.

Deviations: the expander width is 4x the backbone's feature dimension
(``proj_factor``; 8192 on ResNet-50 as in the paper); the covariance term is
already normalised by D, so the weights are kept as in the paper. The suite may
impose one optimizer for every method (the tiny suite does). The embedding logged
for the collapse metrics is the expander output of the first view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.distributed import gather_with_grad
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import vicreg_loss
from methods.modules import expander, per_view
from methods.registry import register


@dataclass(frozen=True)
class VICRegHparams:
    sim_weight: float = field(default=25.0, metadata={"nonnegative": True, "doc": "lambda (invariance)"})
    var_weight: float = field(default=25.0, metadata={"nonnegative": True, "doc": "mu (variance)"})
    cov_weight: float = field(default=1.0, metadata={"nonnegative": True, "doc": "nu (covariance)"})
    proj_factor: float = field(default=4.0, metadata={"positive": True,
                                                      "doc": "expander width / backbone feature dim"})
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("lars", 0.2, 1e-6, 0.9, True))


@register
class VICReg(Method):
    name = "vicreg"
    paper = "VICReg — Bardes, Ponce and LeCun 2021, arXiv 2105.04906"
    family = "redundancy reduction"
    view_recipe = "byol"
    Hparams = VICRegHparams
    distributed = True

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        self.projector = expander(backbone.feature_dim, hp.proj_factor)

    def training_step(self, batch: Batch) -> StepOutput:
        v1, v2 = batch.views[:2]
        z1, z2 = per_view(self.projector, *per_view(self.backbone, v1, v2))
        hp = self.hp
        loss, t = vicreg_loss(gather_with_grad(z1), gather_with_grad(z2), hp.sim_weight, hp.var_weight, hp.cov_weight)
        return StepOutput(loss, {k: v.detach() for k, v in t.items()}, z1)
