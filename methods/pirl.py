"""PIRL — Misra, van der Maaten 2019, "Self-Supervised Learning of Pretext-Invariant
Representations", arXiv 1912.01991 (CVPR 2020).

Mechanism: the representation of an image should be invariant to its jigsaw
transform. f(v_I): backbone + linear 128-d head of the image. g(v_I^t): the image
cut into 3x3 tiles, each tile randomly cropped, the tiles shuffled by a permutation
drawn per sample (:func:`jigsaw`), each tile encoded by the same
backbone and projected to 128-d, the nine projections concatenated in the shuffled
order and projected to 128-d. A memory bank holds m_I, an exponential moving average
(0.5) of f(v_I) for every training image. With NCE against N negatives drawn from
the bank (InstDisc's estimator, :func:`methods.losses.nce_loss`, T = 0.07):
L = lambda * L_NCE(m_I, g(v_I^t)) + (1 - lambda) * L_NCE(m_I, f(v_I)), lambda = 0.5.

Paper defaults: ResNet-50, 128-d, T = 0.07, 32,000 negatives, memory momentum 0.5,
lambda 0.5, SGD lr 0.12 at batch 1024 (0.03 x batch/256), momentum 0.9, weight
decay 1e-4, cosine schedule; images: random resized crop, colour jitter, flip;
jigsaw: a 255 px crop cut into 3x3 tiles of 85 px, a random 64 px crop per tile,
colour jitter per tile.

Deviations: at 28 px the jigsaw uses the top-left 27 px of the (augmented) view, tiles
of 9 px and random 7 px crops per tile (PIRL's 64/85 ratio); the tiles share their
view's augmentation (no per-tile jitter); the number of negatives is scaled to the
suite by the shared rule (``methods.modules.scale_length``, multiple 1;
``scale_to_dataset: false`` keeps 32,000); NCE uses InstDisc's partition estimate Z
(the paper's eq. 3 writes h without Z): one Z for both terms, estimated once from the
image term's first batch, as VISSL's reproduction (``nce_loss_with_memory``,
``norm_constant: -1``); each term draws its own negatives, as VISSL does; the bank
starts from the untrained network's image embeddings (``bank_init: network``;
``random`` = the paper; see :mod:`methods.instdisc` for why); image and jigsaw source
are two independent views of the MoCo v1 recipe (jitter, grayscale, flip) with VISSL's
crop scales: 0.08-1 for the image (``crop_scale_image``), 0.6-1 for the jigsaw source
(``crop_scale_patches``).

Fixed (issue 16): this file used to give each term its own Z, each fixed on its first
batch, and to share one draw of negatives between the terms. On the network-initialised
bank (entries at cosine ~0.9) the image term's log Z was 22.2 and the jigsaw term's 9.8,
and the jigsaw loss rose (tiny, 7.07 -> 18.7 by step 40; smoke on a 4096-image subset,
batch 64, fp32: 6.26 -> 14.9 over 50 steps) while the jigsaw embedding was pushed away
from the whole bank. With one Z it falls (smoke: 8.63 -> 6.07; tiny, per the issue's
measurement with the image term's Z: 18.6 -> 6.25, kNN-20 after 120 steps 71.20 instead
of 64.55). The crops were 0.2-1 for both views (MoCo v1's). All three changes together,
tiny suite cut to 120 steps, fp32, kNN-20 on a 10k/2k subset, seeds 0 / 1: 68.5 / 73.5
(before: 74.6 / 57.8; seed 1's jigsaw loss sat at 17.2 throughout, seed 0's did not rise).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from bench.views import ViewSpec, recipe
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import nce_loss
from methods.modules import initialise_banks, memory_banks, patch_grid, scaled_negatives
from methods.registry import register


@dataclass(frozen=True)
class PIRLHparams:
    temperature: float = field(default=0.07, metadata={"positive": True})
    negatives: int = field(default=32000, metadata={"positive": True})
    memory_momentum: float = field(default=0.5, metadata={"nonnegative": True})
    jigsaw_weight: float = field(default=0.5, metadata={"nonnegative": True, "doc": "lambda"})
    bank_init: str = field(default="network", metadata={"choices": ("network", "random"), "doc": "random = paper"})
    proj_dim: int = field(default=128, metadata={"positive": True})
    grid: int = field(default=3, metadata={"positive": True})
    tile_crop_ratio: float = field(default=64 / 85, metadata={"positive": True})
    scale_to_dataset: bool = True
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("sgd", 0.03, 1e-4))


def random_subcrops(tiles: torch.Tensor, size: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """Crop each tile of [B, T, C, t, t] at its own random offset to [B, T, C, size, size]."""
    b, t, c, h, w = tiles.shape
    dev = tiles.device
    oy = torch.randint(0, h - size + 1, (b, t), generator=gen, device=dev)
    ox = torch.randint(0, w - size + 1, (b, t), generator=gen, device=dev)
    rows = (oy.unsqueeze(-1) + torch.arange(size, device=dev)).view(b, t, 1, size, 1).expand(b, t, c, size, w)
    out = tiles.gather(3, rows)
    cols = (ox.unsqueeze(-1) + torch.arange(size, device=dev)).view(b, t, 1, 1, size).expand(b, t, c, size, size)
    return out.gather(4, cols)


def jigsaw(x: torch.Tensor, grid: int = 3, crop: int | None = None,
           gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PIRL's jigsaw transform of a batch [B, C, H, W].

    The image (its top-left ``grid * (H // grid)`` square) is cut into ``grid x grid``
    tiles, each tile is randomly cropped to ``crop`` pixels (PIRL: 64 of 85) and the
    tiles are shuffled with a permutation drawn per sample. Returns tiles
    [B, grid**2, C, crop, crop] in shuffled order and the permutations [B, grid**2]
    (position j holds the tile from grid cell ``perm[b, j]``, row-major).
    """
    b = x.shape[0]
    t = min(x.shape[-2], x.shape[-1]) // grid
    tiles = patch_grid(x[..., : grid * t, : grid * t], t, t).reshape(b, grid * grid, x.shape[1], t, t)
    if crop is not None and crop < t:
        tiles = random_subcrops(tiles, crop, gen)
    perm = torch.argsort(torch.rand(b, grid * grid, generator=gen, device=x.device), dim=1)
    return tiles[torch.arange(b, device=x.device).unsqueeze(1), perm], perm


@register
class PIRL(Method):
    name = "pirl"
    paper = "PIRL — Misra & van der Maaten 2019, arXiv 1912.01991"
    family = "memory-bank contrastive"
    view_recipe = "mocov1"
    Hparams = PIRLHparams

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim, tiles = backbone.feature_dim, hp.grid * hp.grid
        self.image_head = torch.nn.Linear(dim, hp.proj_dim)
        self.tile_head = torch.nn.Linear(dim, hp.proj_dim)
        self.jigsaw_head = torch.nn.Linear(tiles * hp.proj_dim, hp.proj_dim)
        (self.memory,), (self.partition,) = memory_banks(hp, ctx)  # one Z for both terms, as VISSL
        self.negatives = scaled_negatives(hp.negatives, ctx, hp.scale_to_dataset)
        tile = ctx.resolution // hp.grid
        self.tile_crop = max(1, min(tile, round(tile * hp.tile_crop_ratio)))

    def views(self, resolution: int) -> ViewSpec:
        """The MoCo v1 recipe with VISSL's crop scales: image 0.08-1, jigsaw source 0.6-1."""
        image, source = recipe(self.view_recipe, resolution).crops
        return ViewSpec((replace(image, scale=(0.08, 1.0)), replace(source, scale=(0.6, 1.0))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_head(self.backbone(x)).float(), dim=1)

    def initialise(self, batches) -> None:
        initialise_banks(self.hp, batches, self.embed, self.memory)

    def encode_jigsaw(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        tiles, _ = jigsaw(x, self.hp.grid, self.tile_crop, gen)  # [B, 9, C, t, t], shuffled per sample
        b, n = tiles.shape[:2]
        feats = self.tile_head(self.backbone(tiles.flatten(0, 1).contiguous(memory_format=torch.channels_last)))
        return self.jigsaw_head(feats.view(b, n * feats.shape[-1]))

    def _nce(self, query: torch.Tensor, batch: Batch) -> torch.Tensor:
        noise = self.memory.sample(len(query), self.negatives, batch.generator)
        scores = self.memory.scores(query, batch.indices, noise)
        return nce_loss(self.partition(torch.exp(scores / self.hp.temperature)), self.ctx.dataset_size)

    def training_step(self, batch: Batch) -> StepOutput:
        image, source = batch.views
        f = self.embed(image)
        g = F.normalize(self.encode_jigsaw(source, batch.generator).float(), dim=1)
        # each term draws its own negatives; Z is fixed by the image term's first batch
        loss_image = self._nce(f, batch)
        loss_jigsaw = self._nce(g, batch)
        lam = self.hp.jigsaw_weight
        loss = lam * loss_jigsaw + (1 - lam) * loss_image
        logs = {"loss_jigsaw": loss_jigsaw.detach(), "loss_image": loss_image.detach()}
        return StepOutput(loss, logs, f, (batch.indices, f.detach()))

    def after_step(self, progress: float, carry: object = None) -> None:
        self.memory.update(*carry)
