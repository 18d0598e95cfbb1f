"""Random-initialisation baseline: the backbone's random weights, never trained.

Definition (the literature's untrained backbone): torchvision's initialisation of the
suite's backbone with the run's seed, and batch-norm running statistics estimated on the
pretraining images, with no gradient step. ``initialise`` runs every pretraining image
once, un-augmented, through the backbone in training mode (each BN normalises with its
batch's statistics, as in training) and sets each BN's running mean / variance to the
average of its per-batch statistics (momentum ``None``: PyTorch's cumulative average,
batches of ``eval.batch_size``). Every trained method carries statistics estimated from
data; with the init values (mean 0, variance 1) BN is the identity in eval mode.

Paper defaults: none (a baseline). ``bn_stats: data`` is the definition above.
Deviations: ``bn_stats: init`` keeps the init statistics (the board's definition before
issue 18): an override, not a default row. On tiny (fp32, seeds 0 / 1) it scores kNN-20 70.4 /
70.7 and linear 69.2 / 69.4 against 48.0 / 51.1 and 46.0 / 44.9 with ``data``; the
semi-supervised rows do not change (the fine-tune re-estimates BN).
Every SSL method must beat this row on the same backbone; it measures how much of a
score comes from the architecture and the evaluation alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from methods.base import Method, OptimizerCfg
from methods.registry import register


@dataclass(frozen=True)
class RandomHparams:
    bn_stats: str = field(default="data", metadata={
        "choices": ("data", "init"), "doc": "BN running statistics: estimated on the pretraining images, or init"})
    optimizer: OptimizerCfg = field(default_factory=OptimizerCfg)


@register
class RandomInit(Method):
    name = "random"
    paper = "baseline: untrained backbone (torchvision init, BN statistics of the pretraining images)"
    family = "baseline"
    Hparams = RandomHparams
    distributed = True
    trains = False

    @torch.no_grad()
    def initialise(self, batches) -> None:
        """Estimate every BN's running statistics on ``batches`` (no gradient step)."""
        if self.hp.bn_stats == "init":
            return
        norms = [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta, was_training = [m.momentum for m in norms], self.backbone.training
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
        self.backbone.train()
        for _, images in batches:
            self.backbone(images)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        self.backbone.train(was_training)
