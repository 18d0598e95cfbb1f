"""CPC v2 — Hénaff, Srinivas, De Fauw, Razavi, Doersch, Eslami, van den Oord 2019,
"Data-Efficient Image Recognition with Contrastive Predictive Coding",
arXiv 1905.09272 (CPC: van den Oord, Li, Vinyals 2018, arXiv 1807.03748).

Mechanism: the image is cut into an overlapping grid of patches
(:func:`methods.modules.patch_grid`); every patch is encoded on its own by the
backbone (all patches of the batch in one batched call) into z[r, c]; an
autoregressive, PixelCNN-style masked-convolution context network
(:class:`methods.modules.AutoregressiveContext`) summarises, for every grid cell,
the rows at and above it into c[r, c]; a linear map W_k per step k = 1..K predicts
z[r + k, c] from c[r, c]; InfoNCE (:func:`methods.losses.cpc_info_nce`) scores each
prediction against every patch embedding of the batch (the true patch is the
positive; all other patches, of the same and of other images, are negatives),
averaged over the predictions of every step. Patch-level augmentation: each patch
gets its own random horizontal flip and brightness / contrast change.

Paper defaults (CPC v2): 240 px images (crops of 260 px) cut into a 7x7 grid of
64 px patches with stride 32 (50 % overlap), ResNet-161 patch encoder with layer
norm instead of batch norm, a PixelCNN-style context network, predictions of rows
below the context (and, in v2, also from other directions), InfoNCE with negatives
from all patches of the batch, patch-based augmentation (colour dropping, random
crops / flips and further per-patch transforms), Adam.

Deviations: at 28 px the grid is 6x6 patches of 8 px with stride 4 (the paper's
50 % overlap; ``patch_size`` / ``patch_stride``), predictions reach K = 3 rows below
(``steps``) in one direction (top to bottom); the patch encoder is the suite's
backbone, which keeps batch norm (patch statistics of one image share a batch, the
leak v2 removed with layer norm); patch augmentation is flip + brightness /
contrast only; image-level augmentation is a random resized crop (0.2-1) + flip;
the optimizer is the suite's. The declared evaluation protocol feeds whole 28 px
images to a backbone trained on 8 px patches (the paper evaluates on the patch
grid's pooled features), which disadvantages this method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.views import Augment, ViewSpec
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import cpc_info_nce
from methods.modules import AutoregressiveContext, patch_grid
from methods.registry import register


@dataclass(frozen=True)
class CPCv2Hparams:
    patch_size: int = field(default=8, metadata={"positive": True})
    patch_stride: int = field(default=4, metadata={"positive": True})
    steps: int = field(default=3, metadata={"positive": True, "doc": "K: rows predicted below the context"})
    context_blocks: int = field(default=3, metadata={"positive": True})
    patch_jitter: float = field(default=0.4, metadata={"nonnegative": True})
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("adamw", 4e-4, 0.0))


@register
class CPCv2(Method):
    name = "cpc_v2"
    paper = "CPC v2 — Hénaff et al. 2019, arXiv 1905.09272"
    family = "predictive contrastive"
    Hparams = CPCv2Hparams

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim = backbone.feature_dim
        self.grid = (ctx.resolution - hp.patch_size) // hp.patch_stride + 1
        if self.grid < hp.steps + 1:
            from bench.errors import SSLBenchError

            raise SSLBenchError(f"cpc_v2: a {self.grid}x{self.grid} patch grid cannot predict {hp.steps} rows "
                                "ahead; lower steps or patch_size.")
        self.context = AutoregressiveContext(dim, dim, hp.context_blocks)
        self.predictors = torch.nn.ModuleList(torch.nn.Linear(dim, dim, bias=False) for _ in range(hp.steps))

    def views(self, resolution: int) -> ViewSpec:
        return ViewSpec((Augment(resolution, scale=(0.2, 1.0), jitter_p=0.0, grayscale_p=0.0),))

    def augment_patches(self, patches: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Per-patch random flip and brightness / contrast change of [M, C, p, p] (normalised units)."""
        m, dev = len(patches), patches.device
        flip = torch.rand(m, generator=gen, device=dev) < 0.5
        patches = torch.where(flip.view(-1, 1, 1, 1), patches.flip(-1), patches)
        j = self.hp.patch_jitter
        if j > 0:
            contrast = 1 + (torch.rand(m, 1, 1, 1, generator=gen, device=dev) * 2 - 1) * j
            bright = (torch.rand(m, 1, 1, 1, generator=gen, device=dev) * 2 - 1) * j
            mean = patches.mean(dim=(1, 2, 3), keepdim=True)
            patches = (patches - mean) * contrast + mean + bright
        return patches

    def encode_grid(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Patch embeddings [B, D, G, G] of a batch of images."""
        b, g = len(x), self.grid
        patches = patch_grid(x, self.hp.patch_size, self.hp.patch_stride).reshape(
            b * g * g, x.shape[1], self.hp.patch_size, self.hp.patch_size)
        if self.training:
            patches = self.augment_patches(patches, gen)
        z = self.backbone(patches.contiguous(memory_format=torch.channels_last))
        return z.view(b, g, g, -1).permute(0, 3, 1, 2)

    def training_step(self, batch: Batch) -> StepOutput:
        z = self.encode_grid(batch.views[0], batch.generator)  # [B, D, G, G]
        c = self.context(z)
        b, d, g, _ = z.shape
        candidates = z.permute(0, 2, 3, 1).reshape(b * g * g, d)
        index = torch.arange(b * g * g, device=z.device).view(b, g, g)
        losses = []
        for k, predictor in enumerate(self.predictors, start=1):
            pred = predictor(c[:, :, : g - k].permute(0, 2, 3, 1).reshape(-1, d))  # rows 0 .. G-1-k
            targets = index[:, k:].reshape(-1)  # the patch k rows below
            losses.append(cpc_info_nce(pred, candidates, targets))
        loss = torch.stack(losses).mean()
        logs = {f"loss_k{k}": v.detach() for k, v in enumerate(losses, start=1)}
        return StepOutput(loss, logs, z.mean(dim=(2, 3)))
