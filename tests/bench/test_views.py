"""Batched view generation: shapes, value ranges, parameter ranges, determinism."""


import torch

from bench.backbones import BackboneCfg, backbone_preset, build_backbone
from bench.views import Augment, ViewGenerator, augment, crop_flip, gaussian_blur, recipe
from methods.base import Context
from methods.registry import get_method, resolve_hparams
from tests.methods.helpers import DINO, _registered

IDENTITY = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_full_crop_without_flip_is_identity():
    x = torch.rand(4, 3, 16, 16)
    out = crop_flip(x, Augment(16, **IDENTITY), _gen())
    assert torch.allclose(out, x, atol=1e-5)


def test_flip_mirrors_the_image():
    x = torch.rand(2, 1, 8, 8)
    out = crop_flip(x, Augment(8, **{**IDENTITY, "flip_p": 1.0}), _gen())
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def test_views_have_the_spec_shapes_and_stay_in_range():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=_gen(1))
    spec = recipe("byol", 24, small_crops=2, small_size=12)
    views = ViewGenerator(spec, (0.5,) * 3, (0.25,) * 3, torch.device("cpu"))(x, _gen())
    assert [tuple(v.shape) for v in views] == [(16, 3, 24, 24)] * 2 + [(16, 3, 12, 12)] * 2
    for aug in spec.crops:
        raw = augment(x.float() / 255, aug, _gen())
        assert raw.min() >= 0 and raw.max() <= 1 + 1e-6  # blur is a convex combination, up to rounding


def test_each_sample_gets_its_own_parameters():
    x = torch.rand(1, 1, 28, 28).expand(32, -1, -1, -1).contiguous()
    out = augment(x, Augment(28), _gen())
    distinct = {tuple(o.flatten()[:50].round(decimals=4).tolist()) for o in out}
    assert len(distinct) > 25


def test_same_generator_seed_gives_same_views():
    x = torch.rand(8, 3, 20, 20)
    a = augment(x, Augment(20, blur_p=0.5, solarize_p=0.5), _gen(3))
    b = augment(x, Augment(20, blur_p=0.5, solarize_p=0.5), _gen(3))
    assert torch.equal(a, b)


def test_crop_area_respects_the_scale_range():
    # a constant image with a bright square: the crop area fraction shows in how much of it survives
    x = torch.zeros(512, 1, 64, 64)
    out = crop_flip(x + 1, Augment(64, scale=(0.5, 0.5), ratio=(1.0, 1.0)), _gen())
    assert torch.allclose(out, torch.ones_like(out))  # crops never leave the image


def test_blur_keeps_mean_and_reduces_variance():
    x = torch.rand(8, 1, 28, 28)
    out = gaussian_blur(x, Augment(224, blur_p=1.0), _gen())  # sigma range of the papers at 224 px
    assert torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=2e-2)
    assert (out.var(dim=(1, 2, 3)) < x.var(dim=(1, 2, 3))).all()


def test_solarize_inverts_bright_pixels_only():
    x = torch.tensor([0.2, 0.7]).view(1, 1, 1, 2).expand(1, 1, 2, 2).contiguous()
    out = augment(x, Augment(2, **IDENTITY, solarize_p=1.0), _gen())
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.2, 0.3]), atol=1e-5)


def _edge_energy_removed(size, aug):
    """Share of the gradient energy of a bright square on black that ``aug``'s blur removes."""
    x = torch.zeros(1, 1, size, size)
    x[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1.0
    y = gaussian_blur(x, aug, _gen())

    def energy(t):
        return (t.diff(dim=-1) ** 2).sum() + (t.diff(dim=-2) ** 2).sum()

    return (1 - energy(y) / energy(x)).item(), (y - x).abs().max().item()


def test_blur_at_28_px_changes_the_image_as_at_224_px():
    """Sigma stays in pixels (the papers' 0.1-2.0 at every size), so the top of the range blurs a
    28-px edge as it blurs a 224-px one; scaled by 28/224 it changed no pixel by one grey level."""
    top = dict(blur_p=1.0, blur_sigma=(2.0, 2.0))
    removed_28, change_28 = _edge_energy_removed(28, Augment(28, **top))
    removed_224, _ = _edge_energy_removed(224, Augment(224, **top))
    assert change_28 > 1 / 255
    assert removed_28 > 0.5 and abs(removed_28 - removed_224) < 0.1
    _, change_low = _edge_energy_removed(28, Augment(28, blur_p=1.0, blur_sigma=(0.1, 0.1)))
    assert change_low < 1 / 255  # the bottom of the range leaves the image as it is, as at 224 px


def test_default_blur_range_is_the_papers():
    assert Augment(28).blur_sigma == Augment(224).blur_sigma == (0.1, 2.0)


def test_multicrop_view_shapes():
    ctx = Context(256, 4, 8, 10, 28, 1)
    backbone = build_backbone(BackboneCfg(width=8, small_stem=True, in_channels=1))
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    for name, n_small in _registered([("swav", 6), ("dino", 8)]):
        method = get_method(name)(backbone, resolve_hparams(name, {}), ctx)
        spec = method.views(28)
        views = ViewGenerator(spec, (0.5,), (0.25,), torch.device("cpu"))(images, gen)
        shapes = [tuple(v.shape) for v in views]
        assert shapes == [(4, 1, 28, 28)] * 2 + [(4, 1, 12, 12)] * n_small, (name, shapes)
    if DINO:
        vit = build_backbone(backbone_preset("vit_tiny", BackboneCfg(in_channels=1)))
        dino_vit = get_method("dino")(vit, resolve_hparams("dino", {}), ctx)
        assert all(a.size % 4 == 0 for a in dino_vit.views(28).crops)  # local crops fit the patch grid
