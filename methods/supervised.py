"""Supervised baseline: the same backbone trained with labels under the same budget.

Defaults: linear classifier on the pooled features, cross-entropy, SGD momentum
0.9, lr 0.1 x batch/256, weight decay 5e-4 (the standard CIFAR ResNet recipe),
crop + flip augmentation (torchvision's ImageNet recipe), cosine schedule.
Deviation: none of note; the budget (images seen) is the suite's, not 90 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import nn

from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.registry import register


@dataclass(frozen=True)
class SupervisedHparams:
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("sgd", 0.1, 5e-4))
    label_smoothing: float = field(default=0.0, metadata={"nonnegative": True, "below": 1.0})


@register
class Supervised(Method):
    name = "supervised"
    paper = "baseline: supervised cross-entropy training on the same budget"
    family = "baseline"
    view_recipe = "supervised"
    Hparams = SupervisedHparams
    distributed = True

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        self.classifier = nn.Linear(backbone.feature_dim, ctx.num_classes)

    def training_step(self, batch: Batch) -> StepOutput:
        feats = self.backbone(batch.views[0])
        logits = self.classifier(feats)
        loss = F.cross_entropy(logits.float(), batch.labels, label_smoothing=self.hp.label_smoothing)
        acc = (logits.argmax(1) == batch.labels).float().mean()
        return StepOutput(loss, {"train_acc": acc}, feats)
