"""Backbones: torchvision's ResNet architecture and init, written out, at any width and stem."""

import math
from dataclasses import asdict

import pytest
import torch

from bench.backbones import BackboneCfg, backbone_preset, build_backbone
from bench.errors import SSLBenchError


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_is_torchvisions_network(name):
    """Same parameter names and shapes as torchvision (the Detectron2 mapping relies on them), same function."""
    import torchvision.models as tvm

    reference = getattr(tvm, name)()
    reference.fc = torch.nn.Identity()
    ours = build_backbone(BackboneCfg(name=name, width=64))
    theirs = reference.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.items()}
    ours.load_state_dict(theirs)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), rtol=1e-4, atol=1e-4)


def test_narrow_trunk_has_kaiming_init():
    """Width-8 trunks got PyTorch's default conv init (std 0.069 in layer1) instead of Kaiming's fan-out (0.167)."""
    torch.manual_seed(0)
    net = build_backbone(BackboneCfg(name="resnet18", width=8, small_stem=True, in_channels=1))
    for name, conv in [("layer1.0.conv1", net.layer1[0].conv1), ("layer3.1.conv2", net.layer3[1].conv2)]:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.15), name
    assert torch.all(net.bn1.weight == 1) and torch.all(net.bn1.bias == 0)


@pytest.mark.parametrize("stride, size", [(1, 28), (2, 14)])
def test_small_stem_stride_sets_layer1_resolution(stride, size):
    net = build_backbone(BackboneCfg(name="resnet18", width=8, small_stem=True, stem_stride=stride, in_channels=1))
    maps = net.feature_maps(torch.zeros(1, 1, 28, 28))
    assert maps[0].shape[-1] == size and net(torch.zeros(2, 1, 28, 28)).shape == (2, 64)


@pytest.mark.parametrize("name,dim", [("vit_tiny", 192), ("vit_small", 384)])
def test_vit_shapes_and_feature_dim(name, dim):
    base = BackboneCfg(name="resnet18", width=8, small_stem=True, in_channels=1)
    cfg = backbone_preset(name, base)
    vit = build_backbone(cfg)
    assert vit.feature_dim == dim and len(vit.blocks) == 12
    assert vit.blocks[0].attn.heads == {"vit_tiny": 3, "vit_small": 6}[name]
    assert hasattr(vit, "patch_embed") and vit.patch_embed.patch == 4
    for size in (28, 32, 12):  # 28 px (interpolated grid), 32 px (native), a small crop
        assert vit(torch.randn(2, 1, size, size)).shape == (2, dim)
    again = build_backbone(BackboneCfg(**asdict(cfg)))  # how evaluations reload an encoder
    again.load_state_dict(vit.state_dict())
    with pytest.raises(SSLBenchError, match="vit_tiny"):
        backbone_preset("vit_huge", base)
