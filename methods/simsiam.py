"""SimSiam — Chen, He 2020, "Exploring Simple Siamese Representation Learning",
arXiv 2011.10566.

Mechanism: one encoder f (backbone + 3-layer projection MLP with BN on every layer,
the output BN without affine) and a 2-layer bottleneck prediction MLP h; for two
views, p = h(f(x)), z = f(x); loss D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2
with D the negative cosine similarity. No negatives, no momentum encoder: the
stop-gradient alone prevents collapse (the paper's Fig. 2 shows the collapse
without it; ``stop_gradient: false`` reproduces that ablation).

Paper defaults: SGD lr 0.05 x batch/256, momentum 0.9, weight decay 1e-4, cosine
schedule, the predictor's lr **not** decayed (fixed at the base lr), batch 512,
projector 2048-2048-2048 on ResNet-50, predictor 2048-512-2048 (bottleneck 1/4),
the MoCo v2 / BYOL-style augmentation (crop 0.2-1, jitter 0.4/0.4/0.4/0.1 p 0.8,
grayscale 0.2, blur 0.5).

Deviations: the projector width equals the backbone's feature dimension (2048 on
ResNet-50, as in the paper) and the predictor's bottleneck is a quarter of it
(``proj_factor``, ``pred_bottleneck``); the suite may impose one optimizer for every
method (the tiny suite does), in which case the predictor keeps that optimizer's
base lr without decay (``fixed_lr`` param group). The embedding logged for the
collapse metrics is the projector output z (the paper's Fig. 2 measures the std
of l2-normalised z).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import symmetric_negative_cosine
from methods.modules import mlp, per_view
from methods.registry import register


@dataclass(frozen=True)
class SimSiamHparams:
    proj_factor: float = field(default=1.0, metadata={"positive": True,
                                                      "doc": "projector width / backbone feature dim"})
    pred_bottleneck: float = field(default=0.25, metadata={"positive": True,
                                                           "doc": "predictor hidden width / projector width"})
    fixed_predictor_lr: bool = True
    stop_gradient: bool = field(default=True, metadata={"doc": "false = the paper's collapse ablation"})
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("sgd", 0.05, 1e-4))


@register
class SimSiam(Method):
    name = "simsiam"
    paper = "SimSiam — Chen and He 2020, arXiv 2011.10566"
    family = "self-distillation"
    view_recipe = "mocov2"
    Hparams = SimSiamHparams
    distributed = True

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim = backbone.feature_dim
        proj = max(8, int(round(dim * hp.proj_factor)))
        bottleneck = max(4, int(round(proj * hp.pred_bottleneck)))
        self.projector = mlp(dim, proj, proj, layers=3, bn_last=True)
        self.predictor = mlp(proj, bottleneck, proj, layers=2)

    def param_groups(self) -> list[dict]:
        pred = list(self.predictor.parameters())
        pred_ids = {id(p) for p in pred}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in pred_ids]
        return [{"params": rest}, {"params": pred, "fixed_lr": self.hp.fixed_predictor_lr}]

    def training_step(self, batch: Batch) -> StepOutput:
        v1, v2 = batch.views[:2]
        z1, z2 = per_view(self.projector, *per_view(self.backbone, v1, v2))
        p1, p2 = per_view(self.predictor, z1, z2)
        loss = symmetric_negative_cosine(p1, p2, z1, z2, self.hp.stop_gradient)
        return StepOutput(loss, {}, z1)
