"""Deep InfoMax — Hjelm, Fedorov, Lavoie-Marchildon, Grewal, Bachman, Trischler,
Bengio 2018, "Learning Deep Representations by Mutual Information Estimation and
Maximization", arXiv 1808.06670 (ICLR 2019).

Mechanism (local DIM, the paper's DIM(L)): the global feature Y of an image (here the
backbone's pooled output, the feature that is evaluated) is scored against every
position of a local feature map M of the same network (``backbone.feature_maps``)
with the paper's "encoder-and-dot-product" discriminator: Y and each local vector
are embedded by small residual networks (1x1 convolutions for the map,
:class:`methods.modules.ResidualEmbed`) and the score is their dot product. Positives:
Y with the positions of its own image's map; negatives: Y with the positions of the
other images of the batch. The mutual information is estimated with the
Jensen-Shannon estimator in its softplus form (:func:`methods.losses.jsd_mi_loss`),
averaged over positions. Optional prior matching (``prior_weight`` > 0): a
discriminator learns to tell sigmoid(Y) from a uniform prior and the encoder is
trained adversarially against it through a gradient-reversal layer.

Paper defaults: alpha (global MI) 0, beta (local MI) 1, gamma (prior) 0.1 for DIM(L);
JSD estimator; score embeddings of 2048 units; local map 8x8 for 32 px inputs;
64-d global feature; Adam lr 1e-4, batch 64.

Deviations: the local map is ``layer3`` of the ResNet (7x7 at 28 px with the small
stem; ``local_layer``), the global feature is the pooled ``layer4`` output (the
backbone's feature, not an extra FC layer); score embeddings are 512-d
(``embed_dim``; compute on a 2-core CPU); prior matching is off by default
(``prior_weight: 0``; the paper's DIM(L) uses 0.1): it needs an adversarial
discriminator whose balance is outside the shared training loop's control; the
optimizer is the suite's (the paper used Adam; the paper-default here is AdamW with
weight decay 0 at the paper's lr).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import jsd_mi_loss
from methods.modules import ResidualEmbed, global_and_maps, global_local_scores, mlp, stage_channels
from methods.registry import register


@dataclass(frozen=True)
class DIMHparams:
    local_layer: int = field(default=3, metadata={"choices": (1, 2, 3, 4), "doc": "ResNet stage of the local map"})
    embed_dim: int = field(default=512, metadata={"positive": True})
    prior_weight: float = field(default=0.0, metadata={"nonnegative": True, "doc": "gamma; paper 0.1"})
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("adamw", 1e-4, 0.0))


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


@register
class DIM(Method):
    name = "dim"
    paper = "Deep InfoMax — Hjelm et al. 2018, arXiv 1808.06670"
    family = "mutual-information"
    view_recipe = "mocov1"
    Hparams = DIMHparams

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim = backbone.feature_dim
        self.global_embed = ResidualEmbed(dim, hp.embed_dim)
        self.local_embed = ResidualEmbed(stage_channels(backbone, hp.local_layer), hp.embed_dim, conv=True)
        if hp.prior_weight > 0:
            self.prior_disc = mlp(dim, 1000, 1, layers=3, bn_hidden=False)

    def views(self, resolution: int):
        from bench.views import ViewSpec, recipe

        return ViewSpec(recipe(self.view_recipe, resolution).crops[:1])  # one view per image

    def prior_loss(self, y: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Discriminator BCE (prior samples = 1, sigmoid(Y) = 0); the encoder's gradient is reversed."""
        fake = torch.sigmoid(_ReverseGrad.apply(y.float()))
        real = torch.rand(fake.shape, generator=gen, device=fake.device)
        logits = self.prior_disc(torch.cat([real, fake])).squeeze(1).float()
        labels = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).to(logits.device)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def training_step(self, batch: Batch) -> StepOutput:
        y, maps = global_and_maps(self.backbone, batch.views[0])
        scores = global_local_scores(self.global_embed(y), self.local_embed(maps[self.hp.local_layer - 1]))
        n = len(scores)
        eye = torch.eye(n, dtype=torch.bool, device=scores.device)
        loss = jsd_mi_loss(scores[eye], scores[~eye])
        logs = {"mi_jsd": -loss.detach()}
        if self.hp.prior_weight > 0:
            prior = self.prior_loss(y, batch.generator)
            loss = loss + self.hp.prior_weight * prior
            logs["prior"] = prior.detach()
        return StepOutput(loss, logs, y)
