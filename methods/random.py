"""Random-initialisation baseline: the backbone exactly as built, never trained.

Every SSL method must beat this row on the same backbone; it measures how much
of a score comes from the architecture and the evaluation alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import Method, OptimizerCfg
from methods.registry import register


@dataclass(frozen=True)
class RandomHparams:
    optimizer: OptimizerCfg = field(default_factory=OptimizerCfg)


@register
class RandomInit(Method):
    name = "random"
    paper = "baseline: untrained backbone (PyTorch default initialisation)"
    family = "baseline"
    Hparams = RandomHparams
    distributed = True
    trains = False
