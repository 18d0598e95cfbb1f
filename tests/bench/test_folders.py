"""Streaming ImageNet-style folders (bench/folders.py): index, subsets, shards, crops, export."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from bench import folders
from bench.sources import FolderImages
from bench.views import Augment, recipe
from tests.conftest import FMNIST, needs_fmnist


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    wnids = folders.IMAGENET100[:3] + ["n01440764", "n01443537"]
    folders.synthetic_folder(root, 30, wnids, seed=0, sides=(64, 160))
    folders.write_index(root)
    return root


def test_index_lists_every_file_with_its_class(tiny):
    index = folders.read_index(tiny)
    assert index["classes"] == sorted(index["classes"]) and len(index["classes"]) == 5
    assert len(index["train"]["files"]) == 27 and len(index["val"]["files"]) == 3
    for split in folders.SPLITS:
        for f, lb in zip(index[split]["files"], index[split]["labels"]):
            assert f.split("/")[1] == index["classes"][lb] and (tiny / f).is_file()
    assert index["train"]["files"][0].split("/")[-1].startswith(index["classes"][0] + "_")


def test_imagenet100_and_semi_list_filtering(tiny, tmp_path):
    index = folders.read_index(tiny)
    sub = folders.filter_classes(index, folders.IMAGENET100)
    assert len(folders.IMAGENET100) == len(set(folders.IMAGENET100)) == 100
    assert sub["classes"] == sorted(folders.IMAGENET100[:3])
    for split in folders.SPLITS:
        assert all(f.split("/")[1] == sub["classes"][lb] for f, lb in zip(sub[split]["files"], sub[split]["labels"]))
    keep = index["train"]["files"][::4]
    lst = tmp_path / "1percent.txt"
    lst.write_text("".join(f.split("/")[-1] + "\n" for f in keep))
    semi = folders.filter_files(index, lst)
    assert semi["train"]["files"] == keep and semi["val"] == index["val"]


def test_shards_are_disjoint_and_cover_the_epoch():
    a, b = (folders.shard_indices(101, r, 2, epoch=3, seed=7) for r in (0, 1))
    assert not set(a) & set(b) and sorted(a + b) == list(range(101))
    assert a != folders.shard_indices(101, 0, 2, epoch=4, seed=7)
    assert a == folders.shard_indices(101, 0, 2, epoch=3, seed=7)
    even = [folders.shard_indices(101, r, 2, 3, 7, even=True) for r in (0, 1)]
    assert len(even[0]) == len(even[1]) == 50


def test_rrc_matches_torchvision_bounds_on_a_wide_image():
    rng = random.Random(0)
    for scale in ((0.08, 1.0), (1.0, 1.0)):
        for _ in range(300):
            top, left, h, w = folders.rrc_params(300, 100, scale, (3 / 4, 4 / 3), rng)
            assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 300
            if scale == (1.0, 1.0):  # area 30000 never fits at 3/4-4/3: torchvision's fallback
                assert (round(h), round(w)) == tuple(transforms.RandomResizedCrop.get_params(
                    torch.zeros(3, 100, 300), list(scale), [3 / 4, 4 / 3])[2:])
            assert 3 / 4 - 0.03 <= w / h <= 4 / 3 + 0.03
    # same rule as torchvision on a large image: areas in the scale range
    areas = [math.prod(folders.rrc_params(1000, 800, (0.2, 1.0), (3 / 4, 4 / 3), rng)[2:]) / 8e5 for _ in range(200)]
    assert min(areas) >= 0.19 and max(areas) <= 1.0


def test_eval_transform_is_resize_then_center_crop(tmp_path):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).resize((300, 200), Image.BILINEAR)
    path = tmp_path / "a.png"
    base.save(path)
    ours = folders.decode_eval(path, 112)
    ref = transforms.Compose([transforms.Resize(128), transforms.CenterCrop(112), transforms.PILToTensor()])(base)
    assert ours.shape == ref.shape == (3, 112, 112)
    assert (ours.int() - ref.int()).abs().max() <= 1


def test_folder_images_yield_fixed_size_views_reproducibly(tiny):
    index = folders.read_index(tiny)
    images = FolderImages(tiny, index["train"]["files"], res=32, threads=2, seed=1)
    spec = recipe("simclr", 32)
    idx = torch.tensor(folders.shard_indices(len(images), 0, 1, 0, 0))
    views = images[idx[:8]].decode_views(spec, draw=3)
    assert len(views) == 2 and views[0].dtype == torch.float32 and views[0].shape == (8, 3, 32, 32)
    assert 0 <= views[0].min() and views[0].max() <= 1
    assert torch.equal(images[idx[:8]].decode_views(spec, draw=3)[0], views[0])  # per-image seeds, any thread order
    assert not torch.equal(images[idx[:8]].decode_views(spec, draw=4)[0], views[0])
    val = FolderImages(tiny, index["val"]["files"], res=32)
    assert val[0:3].decode_plain().shape == (3, 3, 32, 32)


def test_eval_crop_one_keeps_the_whole_image(tmp_path):
    """``dataset.center_crop: 1.0``: an image already at the resolution comes back unchanged."""
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    whole = folders.decode_eval(tmp_path / "a.png", 28, crop=1.0)
    assert torch.equal(whole, torch.from_numpy(pixels).permute(2, 0, 1))
    assert folders.eval_size(224) == 256 and folders.eval_size(28) == 32 and folders.eval_size(28, 1.0) == 28


@needs_fmnist
def test_fashion_mnist_export_round_trips(tmp_path):
    from bench.idx import read_idx

    folders.export_fashion_mnist_folder(tmp_path, FMNIST.parent, limit=50)
    index = folders.read_index(folders.write_index(tmp_path))
    src = read_idx(FMNIST.parent / "train-images-idx3-ubyte.gz")
    lbl = read_idx(FMNIST.parent / "train-labels-idx1-ubyte.gz")
    assert len(index["train"]["files"]) == len(index["val"]["files"]) == 50
    errs = []
    for f, lb in zip(index["train"]["files"], index["train"]["labels"]):
        i = int(f.rsplit("/", 1)[-1].split(".")[0])
        assert lb == lbl[i]
        errs.append(np.abs(np.asarray(Image.open(tmp_path / f).convert("L"), dtype=np.int16) - src[i]).mean())
    assert np.mean(errs) < 3


def test_draft_decode_is_close_to_a_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((1600, 1200), Image.BILINEAR).save(
        path, quality=95)
    crops = (folders.Augment(112, scale=(0.5, 1.0)),)
    fast, full = (folders.decode_crops(path, crops, random.Random(1), draft=d)[0].float() for d in (True, False))
    assert fast.shape == (3, 112, 112) and (fast - full).abs().mean() < 1.5
    fast, full = (folders.decode_eval(path, 112, draft=d).float() for d in (True, False))
    assert (fast - full).abs().mean() < 1.5


def test_the_recipe_after_the_crop_is_the_tensor_paths_on_floats(tmp_path):
    """After the PIL crop and flip, a folder view gets ``bench.views.recolour`` on floats: every op
    off leaves the crop alone; brightness alone scales it by one factor, unquantised (PIL's 8-bit
    enhance would round every pixel); the same rng gives the same views."""
    from dataclasses import replace

    gray = np.repeat(np.random.default_rng(0).integers(40, 200, (24, 24, 1), dtype=np.uint8), 3, axis=2)
    path = tmp_path / "g.png"
    Image.fromarray(gray).save(path)
    off = Augment(24, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
    crop = folders.decode_crops(path, (off,), random.Random(0))[0]
    plain = torch.from_numpy(gray).permute(2, 0, 1).float() / 255
    assert crop.dtype == torch.float32 and torch.allclose(crop, plain, atol=1e-6)
    flipped = folders.decode_crops(path, (replace(off, flip_p=1.0),), random.Random(0))[0]
    assert torch.allclose(flipped, plain.flip(-1), atol=1e-6)
    bright = replace(off, jitter_p=1.0, brightness=0.3, contrast=0.0, saturation=0.0, hue=0.0)
    out = folders.decode_crops(path, (bright,), random.Random(5))[0]
    ratio = out / plain
    assert 0.7 <= ratio.mean() <= 1.3 and ratio.std() < 1e-5 and not torch.equal(out, plain)
    assert (out * 255 - (out * 255).round()).abs().max() > 0.01  # floats, not 8-bit levels
    full = recipe("simclr", 24).crops
    a, b = (folders.decode_crops(path, full, random.Random(7)) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # all draws from the image's own rng
