"""Backbone registry: ResNets with a small-image stem and a width option, and ViTs.

Every backbone returns pooled features of size ``backbone.feature_dim``. The ResNets are
torchvision's architecture and init written out here (importing torchvision costs 1.4 s
per process, paid by every pipeline stage and worker) with torchvision's module and
parameter names (``conv1``, ``bn1``, ``layer1..4``, ``downsample.0/1``), which the
Detectron2 converter and torchvision's detection heads rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from bench.errors import SSLBenchError, choices


@dataclass(frozen=True)
class BackboneCfg:
    name: str = field(default="resnet18", metadata={"choices": ("resnet18", "resnet50", "vit_tiny", "vit_small")})
    width: int = field(default=64, metadata={"positive": True, "doc": "channels of the stem (64 = torchvision)"})
    small_stem: bool = field(default=False, metadata={"doc": "3x3 stem, no max-pool (CIFAR-style)"})
    stem_stride: int = field(default=1, metadata={"choices": (1, 2), "doc": "small stem only: 1 keeps full "
                                                  "resolution in layer1 (CIFAR), 2 halves it (2.7x cheaper at 28 px)"})
    in_channels: int = field(default=3, metadata={"positive": True})
    patch_size: int = field(default=4, metadata={"positive": True, "doc": "ViT only: 4 for 28-32 px, 16 at 224 px"})
    image_size: int = field(default=32, metadata={"positive": True, "doc": "ViT only: resolution of the learned "
                                                  "position grid (other sizes interpolate it)"})


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a residual (He et al. 2016; torchvision's ``BasicBlock``)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, planes, 3, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided), 1x1 x4 and a residual (torchvision's ``Bottleneck``, stride on the 3x3)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, planes, 1), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv(planes, planes * 4, 1), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _stage(block, cin: int, planes: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    downsample = None
    if stride != 1 or cin != planes * block.expansion:
        downsample = nn.Sequential(_conv(cin, planes * block.expansion, 1, stride),
                                   nn.BatchNorm2d(planes * block.expansion))
    layers = [block(cin, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers), planes * block.expansion


class ResNetTrunk(nn.Module):
    """A ResNet without its classifier; ``forward`` returns pooled features."""

    def __init__(self, cfg: BackboneCfg):
        super().__init__()
        block, depths = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}[cfg.name]
        w = cfg.width
        if cfg.small_stem:  # CIFAR-style: 3x3, no max-pool
            self.conv1, self.maxpool = _conv(cfg.in_channels, w, 3, cfg.stem_stride), nn.Identity()
        else:
            self.conv1 = nn.Conv2d(cfg.in_channels, w, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1, self.relu = nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        self.layer1, cin = _stage(block, w, w, depths[0], 1)
        self.layer2, cin = _stage(block, cin, w * 2, depths[1], 2)
        self.layer3, cin = _stage(block, cin, w * 4, depths[2], 2)
        self.layer4, cin = _stage(block, cin, w * 8, depths[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin
        self.cfg = cfg
        _torchvision_init(self)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of layer1..layer4 (for local / dense methods)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.feature_maps(x)[-1]), 1)


def _torchvision_init(net: nn.Module) -> None:
    """torchvision's ResNet init (He et al. 2015): Kaiming-normal fan-out convolutions, BN weight 1, bias 0."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Pixels(nn.Module):
    """No parameters: the (normalised) input flattened, ``in_channels`` x ``image_size``^2 features.
    The ``pixels`` baseline's encoder (``methods/pixels.py`` selects it); no other method may use it."""

    def __init__(self, cfg: BackboneCfg):
        super().__init__()
        self.feature_dim = cfg.in_channels * cfg.image_size**2
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1)  # (C, H, W) order whatever the memory format


BACKBONES = {"resnet18": ResNetTrunk, "resnet50": ResNetTrunk, "pixels": Pixels}


def backbone_preset(name: str, base: BackboneCfg) -> BackboneCfg:
    """The backbone ``name`` for a method that asks for another than the suite's (e.g. a ViT)."""
    if name == "pixels":
        raise SSLBenchError("backbone 'pixels' is the pixels baseline's own input, not a backbone to train.")
    if name not in BACKBONES:
        raise SSLBenchError(f"unknown backbone '{name}'; valid choices are: {choices(BACKBONES)}.")
    return replace(base, name=name)


def build_backbone(cfg: BackboneCfg) -> nn.Module:
    """Build a backbone by registry name, in channels_last memory format."""
    if cfg.name not in BACKBONES:
        raise SSLBenchError(f"unknown backbone '{cfg.name}'; valid choices are: {choices(BACKBONES)}.")
    return BACKBONES[cfg.name](cfg).to(memory_format=torch.channels_last)


# --- Vision Transformers (Dosovitskiy et al. 2020, arXiv 2010.11929; DeiT sizes) -----------------
# ViT-Tiny: dim 192, depth 12, heads 3; ViT-Small: dim 384, depth 12, heads 6; MLP ratio 4,
# pre-norm blocks, learned position embeddings, a [CLS] token whose final (layer-normed)
# state is the feature. Patch size is ``BackboneCfg.patch_size`` (4 for 28-32 px images);
# the position grid is learned for ``image_size`` and bicubically interpolated for other
# sizes (e.g. 28 px, or multi-crop's small crops). ``width`` and ``small_stem`` are ignored.

VIT_SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6)}


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch`` x ``patch`` patches linearly projected to ``dim`` (a strided conv)."""

    def __init__(self, in_channels: int, dim: int, patch: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, dim]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """A ViT whose ``forward`` returns the final [CLS] feature (``feature_dim``);
    ``patch_embed`` is the patch projection (MoCo v3 freezes it)."""

    def __init__(self, cfg: BackboneCfg):
        super().__init__()
        dim, depth, heads = VIT_SIZES[cfg.name]
        self.patch_embed = PatchEmbed(cfg.in_channels, dim, cfg.patch_size)
        self.grid = max(1, cfg.image_size // cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.feature_dim = dim
        self.cfg = cfg
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The learned grid, interpolated to ``h`` x ``w`` patches when it differs."""
        if h == w == self.grid:
            return self.pos_embed
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        dim = grid.shape[-1]
        grid = grid.reshape(1, self.grid, self.grid, dim).permute(0, 3, 1, 2)
        grid = nn.functional.interpolate(grid.float(), size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.to(cls.dtype).permute(0, 2, 3, 1).reshape(1, h * w, dim)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // self.patch_embed.patch, x.shape[-1] // self.patch_embed.patch
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1).to(tokens.dtype), tokens], dim=1)
        tokens = tokens + self.position_embedding(h, w).to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


BACKBONES.update({"vit_tiny": VisionTransformer, "vit_small": VisionTransformer})
