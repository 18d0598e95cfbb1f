"""AMDIM — Bachman, Hjelm, Buchwalter 2019, "Learning Representations by Maximizing
Mutual Information Across Views", arXiv 1906.00910 (NeurIPS 2019).

Mechanism: Deep InfoMax across two augmented views and several scales. The global
feature of one view is scored against every position of local feature maps of the
other view, at two scales (here the ResNet's ``layer4`` and ``layer3`` maps), with
the "encoder-and-dot-product" embeddings shared with :mod:`methods.dim`
(:class:`methods.modules.ResidualEmbed`, :func:`methods.dim.global_local_scores`);
each positive (view-1 global, view-2 position of the same image) is contrasted
with all positions of the other images by InfoNCE
(:func:`methods.losses.global_local_info_nce`), in both directions (1 -> 2 and
2 -> 1) and at both scales; the loss is the mean of the four terms. As in the
authors' code, scores are divided by sqrt(embedding width), soft-clipped with
c * tanh(s / c), c = 10, and regularised by 0.05 * mean(raw score^2).

Paper defaults: its own ResNet-like encoder (no padding, 128 px; 1x1, 5x5 and 7x7
feature scales; comparisons 1-5, 1-7 and 5-5), embeddings (n_rkhs) of 1024 units,
tanh clip 10, score regularisation 0.05, Adam lr 2e-4, batch 200, augmentation:
random resized crop, colour jitter, random grayscale, flip.

Deviations: the encoder is the suite's ResNet; the scales are global (1x1) against
``layer4`` (4x4 at 28 px) and ``layer3`` (7x7) maps, so the 5-5 local-to-local
comparison is left out; embeddings are 512-d (``embed_dim``); augmentation is the
MoCo v1 recipe; the optimizer is the suite's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import global_local_info_nce, tanh_clip
from methods.modules import ResidualEmbed, global_and_maps, global_local_scores, stage_channels
from methods.registry import register


@dataclass(frozen=True)
class AMDIMHparams:
    local_layers: tuple[int, ...] = (4, 3)
    embed_dim: int = field(default=512, metadata={"positive": True})
    tanh_clip: float = field(default=10.0, metadata={"nonnegative": True})
    score_reg: float = field(default=0.05, metadata={"nonnegative": True})
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("adamw", 2e-4, 0.0))


@register
class AMDIM(Method):
    name = "amdim"
    paper = "AMDIM — Bachman et al. 2019, arXiv 1906.00910"
    family = "mutual-information"
    view_recipe = "mocov1"
    Hparams = AMDIMHparams

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        self.global_embed = ResidualEmbed(backbone.feature_dim, hp.embed_dim)
        self.local_embeds = torch.nn.ModuleList(
            ResidualEmbed(stage_channels(backbone, layer), hp.embed_dim, conv=True) for layer in hp.local_layers)

    def encode(self, x: torch.Tensor):
        y, maps = global_and_maps(self.backbone, x)
        locals_ = [embed(maps[layer - 1]) for embed, layer in zip(self.local_embeds, self.hp.local_layers)]
        return y, self.global_embed(y), locals_

    def training_step(self, batch: Batch) -> StepOutput:
        y1, g1, l1 = self.encode(batch.views[0])
        _, g2, l2 = self.encode(batch.views[1])
        scale = 1 / math.sqrt(self.hp.embed_dim)
        terms, reg = [], 0.0
        for g, locals_ in ((g1, l2), (g2, l1)):
            for local in locals_:
                raw = global_local_scores(g, local) * scale
                reg = reg + raw.pow(2).mean()
                terms.append(global_local_info_nce(tanh_clip(raw, self.hp.tanh_clip)))
        nce = torch.stack(terms).mean()
        loss = nce + self.hp.score_reg * reg / len(terms)
        return StepOutput(loss, {"nce": nce.detach()}, y1)
