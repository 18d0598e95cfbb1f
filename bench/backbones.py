"""Backbone registry: torchvision ResNets with a small-image stem and a width option.

Every backbone returns pooled features of size ``backbone.feature_dim`` and keeps
torchvision's module names (``conv1``, ``bn1``, ``layer1..4``), which the
Detectron2 converter relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torchvision.models import resnet

from bench.errors import SSLBenchError, choices


@dataclass(frozen=True)
class BackboneCfg:
    name: str = field(default="resnet18", metadata={"choices": ("resnet18", "resnet50")})
    width: int = field(default=64, metadata={"positive": True, "doc": "channels of the stem (64 = torchvision)"})
    small_stem: bool = field(default=False, metadata={"doc": "3x3 stride-1 stem, no max-pool (CIFAR-style)"})
    in_channels: int = field(default=3, metadata={"positive": True})


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its classifier; ``forward`` returns pooled features."""

    def __init__(self, cfg: BackboneCfg):
        super().__init__()
        block, layers = {
            "resnet18": (resnet.BasicBlock, [2, 2, 2, 2]),
            "resnet50": (resnet.Bottleneck, [3, 4, 6, 3]),
        }[cfg.name]
        net = resnet.ResNet(block, layers, width_per_group=64)
        _rescale_width(net, block, layers, cfg.width)
        if cfg.small_stem or cfg.in_channels != 3:
            k, s, p = (3, 1, 1) if cfg.small_stem else (7, 2, 3)
            net.conv1 = nn.Conv2d(cfg.in_channels, cfg.width, k, s, p, bias=False)
        if cfg.small_stem:
            net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.avgpool = net.avgpool
        self.feature_dim = cfg.width * 8 * block.expansion
        self.cfg = cfg

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


def _rescale_width(net: resnet.ResNet, block, layers, width: int) -> None:
    """Rebuild the stages of ``net`` with ``width`` stem channels (64 = standard)."""
    if width == 64:
        return
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    net.layer1 = net._make_layer(block, width, layers[0])
    net.layer2 = net._make_layer(block, width * 2, layers[1], stride=2)
    net.layer3 = net._make_layer(block, width * 4, layers[2], stride=2)
    net.layer4 = net._make_layer(block, width * 8, layers[3], stride=2)


BACKBONES = {"resnet18": ResNetTrunk, "resnet50": ResNetTrunk}


def backbone_preset(name: str, base: BackboneCfg) -> BackboneCfg:
    """The backbone ``name`` for a method that asks for another than the suite's (e.g. a ViT)."""
    if name not in BACKBONES:
        raise SSLBenchError(f"unknown backbone '{name}'; valid choices are: {choices(BACKBONES)}.")
    return replace(base, name=name)


def build_backbone(cfg: BackboneCfg) -> nn.Module:
    """Build a backbone by registry name, in channels_last memory format."""
    if cfg.name not in BACKBONES:
        raise SSLBenchError(f"unknown backbone '{cfg.name}'; valid choices are: {choices(BACKBONES)}.")
    return BACKBONES[cfg.name](cfg).to(memory_format=torch.channels_last)
