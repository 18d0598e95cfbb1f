"""InvaSpread — Ye, Zhang, Yuen, Chang 2019, "Unsupervised Embedding Learning via
Invariant and Spreading Instance Feature", arXiv 1904.03436 (CVPR 2019).

Mechanism: end-to-end, one encoder, no memory bank. Each image of the mini-batch and
its augmented copy are embedded (backbone + linear 128-d head, L2-normalised). The
softmax embedding over the batch gives P(i | x) = exp(f_i.f_x / T) / sum_k exp(f_k.f_x / T);
the loss asks the augmented copy to be recognised as its instance (-log P(i | x^_i),
invariance) and every other instance not to be recognised as i
(-sum_{j != i} log(1 - P(i | x_j)), spreading); the negatives are the other
instances of the same mini-batch (:func:`methods.losses.softmax_embedding_loss`).

Paper defaults: ResNet-18 (CIFAR-10) / ResNet-50, 128-d embedding, T = 0.1,
batch 128, SGD lr 0.03, momentum 0.9, weight decay 5e-4, augmentation as InstDisc
(random resized crop 0.2-1, colour jitter 0.4, random grayscale 0.2, flip).

Deviations: both copies are augmented with the InstDisc / MoCo v1 recipe (``mocov1``),
and the loss is the batch-symmetric form of the authors' code: all 2N embeddings
are anchors and each anchor's negatives are the other 2N - 2 embeddings (both
copies of the other instances), the probabilities normalised over the 2N - 1
embeddings other than the anchor; the lr schedule is the suite's.

Fixed (issue 16): as in the authors' code (``BatchCriterion``: ``x.t().data``,
``reordered_x.data``), each similarity z_k.z_a carries the gradient through its anchor
z_a only; the other side is detached. The loss value is unchanged; we used to
back-propagate through both sides (a gradient 0.76 off the authors' on a 6-pair
example, ``tests/methods/test_invaspread.py``). Tiny suite cut to 320 steps, fp32, kNN-20 on a
10k/2k subset, seeds 0 / 1: 75.6 / 76.95 detached, 76.6 / 77.25 through both sides (within
seed noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import softmax_embedding_loss
from methods.registry import register


@dataclass(frozen=True)
class InvaSpreadHparams:
    temperature: float = field(default=0.1, metadata={"positive": True})
    proj_dim: int = field(default=128, metadata={"positive": True})
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("sgd", 0.03, 5e-4))


@register
class InvaSpread(Method):
    name = "invaspread"
    paper = "InvaSpread — Ye et al. 2019, arXiv 1904.03436"
    family = "end-to-end contrastive"
    view_recipe = "mocov1"
    Hparams = InvaSpreadHparams

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        self.head = torch.nn.Linear(backbone.feature_dim, hp.proj_dim)

    def training_step(self, batch: Batch) -> StepOutput:
        z1, z2 = (self.head(self.backbone(v)) for v in batch.views)
        loss = softmax_embedding_loss(z1, z2, self.hp.temperature)
        return StepOutput(loss, {}, z1)
