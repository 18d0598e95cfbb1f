"""MoCo v1 — He, Fan, Wu, Xie, Girshick 2019, "Momentum Contrast for Unsupervised
Visual Representation Learning", arXiv 1911.05722.

Mechanism: a query encoder (backbone + linear 128-d head, L2-normalised) and a
momentum key encoder (its EMA, m = 0.999); a FIFO queue of K = 65536 past keys
provides the negatives; InfoNCE with temperature 0.07; shuffle-BN. The mechanism is
:class:`methods.mocov2.MomentumContrast`; v1 differs from v2 only in the linear head
(``mlp_head: false``), the temperature and the augmentation.

Paper defaults: SGD lr 0.03 x batch/256, momentum 0.9, weight decay 1e-4, batch 256,
200 epochs with the lr divided by 10 at epochs 120 and 160, K 65536, m 0.999,
T 0.07, 128-d linear head, augmentation: random resized crop (scale 0.2-1), colour
jitter 0.4 (always), random grayscale 0.2, horizontal flip (recipe ``mocov1``).

Deviations: K and m are scaled to the suite by the shared rule
(``methods.modules.scale_length`` / ``scale_momentum``; ``scale_to_dataset: false``
restores the literal values), the EMA's horizon capped at the suite's
``train.ema_horizon_cap`` of the run (the tiny suite's 0.1 = 32 of its 320 steps; m's
scaled horizon, 31 steps, is already shorter, see :mod:`methods.mocov2`); the lr
schedule is the suite's (warm-up + cosine) instead of the step schedule; single-device
shuffle-BN as in MoCo v2 here (``shuffle_bn_groups`` = 8 chunks of a shuffled key batch:
8 samples each at batch 64; see :mod:`methods.mocov2` for why the number of chunks, not
their size, is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import OptimizerCfg
from methods.mocov2 import MoCoHparams, MomentumContrast
from methods.registry import register


@dataclass(frozen=True)
class MoCoV1Hparams(MoCoHparams):
    temperature: float = field(default=0.07, metadata={"positive": True})
    mlp_head: bool = False
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("sgd", 0.03, 1e-4))


@register
class MoCoV1(MomentumContrast):
    name = "mocov1"
    paper = "MoCo — He et al. 2019, arXiv 1911.05722"
    view_recipe = "mocov1"
    Hparams = MoCoV1Hparams
