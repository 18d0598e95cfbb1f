"""Raw-pixel baseline: the input itself as the representation, nothing learned.

Features are the image at the suite's resolution, normalised with the dataset's mean and
std (the same input every method's backbone sees) and flattened: channels x resolution^2
numbers (784 on Fashion-MNIST at 28 px). The method selects the parameter-free ``pixels``
backbone (``bench/backbones.py``), so kNN and the linear probe run the board's protocols
unchanged, and the semi-supervised fine-tune of "the whole network" is a linear classifier
on pixels trained on the 1 % / 10 % split (crop + flip, as for every method). Detection
transfer and ViT variants are not applicable (``sslbench transfer`` skips the run).

Paper defaults: none (a baseline). Deviations: none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import Method, OptimizerCfg
from methods.registry import register


@dataclass(frozen=True)
class PixelsHparams:
    optimizer: OptimizerCfg = field(default_factory=OptimizerCfg)  # unused: nothing is trained


@register
class Pixels(Method):
    name = "pixels"
    paper = "baseline: normalised raw pixels, flattened (no network)"
    family = "baseline"
    Hparams = PixelsHparams
    distributed = True
    trains = False
    backbone_name = "pixels"  # the engine builds this backbone instead of the suite's
