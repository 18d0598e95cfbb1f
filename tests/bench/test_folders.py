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
                assert (h, w) == tuple(transforms.RandomResizedCrop.get_params(
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


def test_stream_yields_fixed_size_views_and_labels(tiny):
    index = folders.read_index(tiny)
    spec = recipe("simclr", 32)
    stream = folders.FolderStream(index, threads=2, seed=1)
    idx = folders.shard_indices(len(stream), 0, 1, 0, 0)
    got = list(stream.pretrain_batches(idx, 8, spec, epoch=0))
    assert [v[0][0].shape[0] for v in got] == [8, 8, 8, 3]
    views, labels = got[0]
    assert len(views) == 2 and views[0].dtype == torch.uint8 and views[0].shape[1:] == (3, 32, 32)
    assert labels.tolist() == [index["train"]["labels"][i] for i in idx[:8]]
    again = next(iter(stream.pretrain_batches(idx, 8, spec, epoch=0)))[0]
    assert torch.equal(again[0], views[0])  # per-image seeds: reproducible whatever the thread order
    out = folders.finish_views(views)
    assert out[0].shape == (8, 3, 32, 32) and 0 <= out[0].min() and out[0].max() <= 1
    ev, _ = next(iter(folders.FolderStream(index, "val").eval_batches(range(3), 3, 32)))
    assert ev.shape == (3, 3, 32, 32)


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


def test_photometric_applies_each_op_of_the_view_as_pil_does():
    """The recipe after the crop runs in the decode threads with PIL (as the papers' pipelines):
    each op at probability 0 leaves the crop alone, at probability 1 does what PIL does."""
    from dataclasses import replace

    from PIL import ImageOps

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    off = Augment(16, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)
    assert np.array_equal(np.asarray(folders.photometric(img, off, random.Random(0))), np.asarray(img))
    flipped = folders.photometric(img, replace(off, flip_p=1.0), random.Random(0))
    assert np.array_equal(np.asarray(flipped), np.asarray(img)[:, ::-1])
    gray = np.asarray(folders.photometric(img, replace(off, grayscale_p=1.0), random.Random(0)))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    solar = folders.photometric(img, replace(off, solarize_p=1.0), random.Random(0))
    assert np.array_equal(np.asarray(solar), np.asarray(ImageOps.solarize(img, 128)))
    blurred = np.asarray(folders.photometric(img, replace(off, blur_p=1.0), random.Random(0)), dtype=float)
    assert blurred.std() < np.asarray(img, dtype=float).std()  # sigma >= 0.1 px: smoother
    full = Augment(16, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur_p=0.5)
    a, b = (np.asarray(folders.photometric(img, full, random.Random(7))) for _ in range(2))
    assert np.array_equal(a, b)  # all draws from the image's own rng: reproducible in any thread
