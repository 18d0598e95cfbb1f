"""SimCLR — Chen, Kornblith, Norouzi, Hinton 2020, "A Simple Framework for
Contrastive Learning of Visual Representations", arXiv 2002.05709.

Mechanism: two augmented views per image, one encoder, a 2-layer MLP projection
head (Linear-BN-ReLU-Linear), NT-Xent over the 2N views of the batch (each view's
pair is its positive, the other 2N - 2 views its negatives).

Paper defaults: LARS, lr 0.3 x batch/256, weight decay 1e-6 (not on biases/BN),
10-epoch warm-up then cosine, head 2048-2048-128 on ResNet-50, batch 4096,
temperature 0.1 (ImageNet); the CIFAR-10 recipe (App. B.9) uses temperature 0.5.

Deviations: temperature 0.5, the paper's own setting for small images and small
batches (0.1 is its large-batch ImageNet optimum); the head's hidden width equals
the backbone's feature dimension (2048 on ResNet-50, as in the paper); warm-up is
the suite's fraction of the budget. Single device: negatives are the local batch;
distributed runs gather them with gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.distributed import gather_with_grad
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import nt_xent
from methods.modules import mlp
from methods.registry import register


@dataclass(frozen=True)
class SimCLRHparams:
    temperature: float = field(default=0.5, metadata={"positive": True})
    proj_dim: int = field(default=128, metadata={"positive": True})
    proj_layers: int = field(default=2, metadata={"nonnegative": True, "doc": "0 = no head (ablation)"})
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("lars", 0.3, 1e-6, 0.9, True))


@register
class SimCLR(Method):
    name = "simclr"
    paper = "SimCLR — Chen et al. 2020, arXiv 2002.05709"
    family = "end-to-end contrastive"
    view_recipe = "simclr"
    Hparams = SimCLRHparams
    distributed = True

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim = backbone.feature_dim
        self.projector = mlp(dim, dim, hp.proj_dim, hp.proj_layers) if hp.proj_layers else None

    def project(self, x):
        h = self.backbone(x)
        return self.projector(h) if self.projector is not None else h

    def training_step(self, batch: Batch) -> StepOutput:
        # both views in one batch, as SimCLR's code does (its global BN sees all 2N views)
        z1, z2 = self.project(torch.cat(batch.views)).chunk(2)
        loss = nt_xent(gather_with_grad(z1), gather_with_grad(z2), self.hp.temperature)
        return StepOutput(loss, {}, z1)
