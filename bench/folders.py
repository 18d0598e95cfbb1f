"""ImageNet-style folders streamed at bounded memory (issue 17, the standalone parts).

- ``write_index(root)`` scans ``root/train/<class>/*`` and ``root/val/<class>/*`` (JPEG/PNG) into
  ``root/index.json``: the class list (sorted folder names) and, per split, relative paths and
  labels. Paths only: the index is ~50 B an image (ImageNet-1k: ~70 MB of JSON), nothing decoded.
- ``filter_classes(index, IMAGENET100)`` keeps CMC's ImageNet-100 (labels re-numbered);
  ``filter_files(index, list_path)`` keeps the train files of SimCLR's ``imagenet_subsets/
  1percent.txt`` / ``10percent.txt`` (one ``n01440764_10026.JPEG`` per line; read from a path the
  user gives, the lists are not in this repository).
- ``decode_crops(path, crops, rng)`` decodes one file for pretraining, with JPEG draft mode
  (DCT-domain 1/2, 1/4, 1/8 down-scaling) when the crops are much smaller than the source: one
  RandomResizedCrop per view on the ORIGINAL image (the view's ``Augment.scale`` / ``ratio``,
  torchvision's ``get_params`` semantics) and a flip, then the rest of the view's recipe with the
  tensor path's code (``bench.views.recolour``: jitter, grayscale, blur, solarize on floats), so
  a folder and a tensor dataset get the same recipe. ``decode_eval(path, res, crop=...)``: shorter
  side to ``res / crop``, center crop ``res`` (``crop`` 224 / 256 as the papers, 1 = whole image).
  ``bench/sources.py`` runs them over a batch's files in a thread pool (PIL and torch release the
  GIL).
- ``shard_indices(n, rank, world_size, epoch, seed)``: a seeded permutation split
  DistributedSampler-style (``perm[rank::world_size]``), disjoint across ranks.
- ``export_fashion_mnist_folder`` and ``synthetic_folder`` write real / synthetic JPEG folders.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.idx import read_idx
from bench.views import Augment, recolour

INDEX_NAME = "index.json"
SPLITS = ("train", "val")
EXTENSIONS = (".jpeg", ".jpg", ".png")
PAPERS_CROP = 224 / 256  # evaluation: the center 224 of the shorter side resized to 256

# CMC's ImageNet-100 (Tian et al. 2019), https://github.com/HobbitLong/CMC/blob/master/imagenet100.txt
IMAGENET100 = (
    "n02869837 n01749939 n02488291 n02107142 n13037406 n02091831 n04517823 n04589890 n03062245 n01773797 "
    "n01735189 n07831146 n07753275 n03085013 n04485082 n02105505 n01983481 n02788148 n03530642 n04435653 "
    "n02086910 n02859443 n13040303 n03594734 n02085620 n02099849 n01558993 n04493381 n02109047 n04111531 "
    "n02877765 n04429376 n02009229 n01978455 n02106550 n01820546 n01692333 n07714571 n02974003 n02114855 "
    "n03785016 n03764736 n03775546 n02087046 n07836838 n04099969 n04592741 n03891251 n02701002 n03379051 "
    "n02259212 n07715103 n03947888 n04026417 n02326432 n03637318 n01980166 n02113799 n02086240 n03903868 "
    "n02483362 n04127249 n02089973 n03017168 n02093428 n02804414 n02396427 n04418357 n02172182 n01729322 "
    "n02113978 n03787032 n02089867 n02119022 n03777754 n04238763 n02231487 n03032252 n02138441 n02104029 "
    "n03837869 n03494278 n04136333 n03794056 n03492542 n02018207 n04067472 n03930630 n03584829 n02123045 "
    "n04229816 n02100583 n03642806 n04336792 n03259280 n02116738 n02108089 n03424325 n01855672 n02090622"
).split()

FASHION_CLASSES = ("0_tshirt", "1_trouser", "2_pullover", "3_dress", "4_coat",
                   "5_sandal", "6_shirt", "7_sneaker", "8_bag", "9_boot")


# --------------------------------------------------------------------------- index

def scan(root: Path | str) -> dict:
    """The index of an ImageFolder tree, without writing it."""
    root = Path(root)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    index = {"root": str(root), "classes": classes}
    for split in SPLITS:
        files, labels = [], []
        for label, cls in enumerate(classes):
            folder = root / split / cls
            if not folder.is_dir():
                continue
            for f in sorted(folder.iterdir()):
                if f.suffix.lower() in EXTENSIONS:
                    files.append(f"{split}/{cls}/{f.name}")
                    labels.append(label)
        index[split] = {"files": files, "labels": labels}
    return index


def write_index(root: Path | str, path: Path | str | None = None) -> Path:
    """Scan ``root`` and write its index (default ``root/index.json``); returns the path."""
    index = scan(root)
    out = Path(path) if path else Path(root) / INDEX_NAME
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, separators=(",", ":")))
    tmp.replace(out)
    return out


def read_index(path: Path | str) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / INDEX_NAME
    index = json.loads(path.read_text())
    if (path.parent / "train").is_dir():  # an index inside its folder follows the folder when moved
        index["root"] = str(path.parent)
    return index


def filter_classes(index: dict, keep) -> dict:
    """Keep the classes in ``keep`` (e.g. ``IMAGENET100``); labels re-numbered in sorted order."""
    keep = set(keep)
    classes = [c for c in index["classes"] if c in keep]
    old_to_new = {index["classes"].index(c): i for i, c in enumerate(classes)}
    out = {"root": index["root"], "classes": classes}
    for split in SPLITS:
        pairs = [(f, old_to_new[lb]) for f, lb in zip(index[split]["files"], index[split]["labels"])
                 if lb in old_to_new]
        out[split] = {"files": [f for f, _ in pairs], "labels": [lb for _, lb in pairs]}
    return out


def read_file_list(path: Path | str) -> set[str]:
    """SimCLR's semi lists: one file name a line (``n01440764_10026.JPEG``)."""
    return {Path(line.strip()).name for line in Path(path).read_text().splitlines() if line.strip()}


def filter_files(index: dict, file_list, split: str = "train") -> dict:
    """Keep the ``split`` files whose base name is in ``file_list`` (a set, or a path to a list)."""
    names = read_file_list(file_list) if isinstance(file_list, (str, Path)) else set(file_list)
    out = dict(index)
    pairs = [(f, lb) for f, lb in zip(index[split]["files"], index[split]["labels"])
             if f.rsplit("/", 1)[-1] in names]
    out[split] = {"files": [f for f, _ in pairs], "labels": [lb for _, lb in pairs]}
    return out


# --------------------------------------------------------------------------- sharding

def shard_indices(n: int, rank: int, world_size: int, epoch: int, seed: int, even: bool = False) -> list[int]:
    """This rank's indices of a seeded epoch permutation (``perm[rank::world_size]``).

    Shards are disjoint and together cover the epoch. ``even=True`` drops the last
    ``n % world_size`` so every rank has the same count (equal step counts under DDP)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    gen = torch.Generator().manual_seed(int(seed) * 100003 + int(epoch))
    perm = torch.randperm(n, generator=gen)
    if even:
        perm = perm[: n - n % world_size]
    return perm[rank::world_size].tolist()


# --------------------------------------------------------------------------- crops

def rrc_params(width: int, height: int, scale, ratio, rng: random.Random) -> tuple[float, float, float, float]:
    """(top, left, h, w) of a RandomResizedCrop, torchvision's ``get_params`` rule: area fraction
    uniform in ``scale``, log aspect (w/h) uniform in ``ratio``, 10 tries, then a center crop
    with the aspect clamped to ``ratio``. Deviation: the box is not rounded to whole pixels (PIL
    resamples a fractional box), as on tensors; at 28 px the rounding cost SimCLR 1.5 points of
    kNN-20 (4 seeds, docs/performance.md), at 224 px it is below a pixel in 100."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = math.sqrt(target * aspect), math.sqrt(target / aspect)
        if w <= width and h <= height:
            return rng.uniform(0, height - h), rng.uniform(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, width / min(ratio)
    elif in_ratio > max(ratio):
        h, w = height, height * max(ratio)
    else:
        w, h = width, height
    return (height - h) / 2, (width - w) / 2, h, w


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def _decode(img: Image.Image, request: tuple[int, int], draft: bool) -> tuple[Image.Image, float, float]:
    """Decode a just-opened ``img`` as RGB, with JPEG draft mode when ``draft`` so that it stays at
    least ``request``; returns it and the x / y factors from original to decoded pixels."""
    w0, h0 = img.size
    if draft and img.format == "JPEG":
        img.draft("RGB", (max(1, request[0]), max(1, request[1])))
    img = img.convert("RGB")
    return img, img.size[0] / w0, img.size[1] / h0


def decode_crops(path: Path | str, crops: tuple[Augment, ...], rng: random.Random,
                 draft: bool = True) -> list[torch.Tensor]:
    """Each view of ``crops`` from one decode: a RandomResizedCrop on the original image and a flip
    (PIL), then the view's recipe with the tensor path's own code (``bench.views.recolour`` on the
    crop, a batch of one) -> float [3, size, size] in [0, 1]. Every random draw comes from ``rng``."""
    with Image.open(path) as source:  # the header gives the size; the pixels are decoded once, below
        w0, h0 = source.size
        boxes = [rrc_params(w0, h0, a.scale, a.ratio, rng) for a in crops]
        # the decode must keep every crop at >= its output size: the smallest source/target ratio wins
        need = max(max(a.size / b[3], a.size / b[2]) for a, b in zip(crops, boxes))
        img, fx, fy = _decode(source, (math.ceil(w0 * need), math.ceil(h0 * need)), draft)
    out = []
    for a, (top, left, h, w) in zip(crops, boxes):
        crop = img.resize((a.size, a.size), Image.BILINEAR, box=(left * fx, top * fy, (left + w) * fx, (top + h) * fy))
        if rng.random() < a.flip_p:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        gen = torch.Generator().manual_seed(rng.getrandbits(63))
        out.append(recolour(_to_tensor(crop).float().div_(255).unsqueeze(0), a, gen)[0])
    return out


def eval_size(res: int, crop: float = PAPERS_CROP) -> int:
    """The shorter side before the center crop: 256 at 224 (``crop`` 0.875), ``res`` at ``crop`` 1."""
    return int(round(res / crop))


def decode_eval(path: Path | str, res: int, draft: bool = True, crop: float = PAPERS_CROP) -> torch.Tensor:
    """Resize the shorter side to ``eval_size(res, crop)``, center-crop ``res`` (torchvision's
    Resize + CenterCrop on PIL, bilinear) -> uint8 [3, res, res]."""
    short = eval_size(res, crop)
    with Image.open(path) as source:
        w0, h0 = source.size
        if w0 <= h0:
            nw, nh = short, int(short * h0 / w0)
        else:
            nw, nh = int(short * w0 / h0), short
        img = _decode(source, (nw, nh), draft)[0].resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - res) / 2.0)), int(round((nw - res) / 2.0))
    return _to_tensor(img.crop((left, top, left + res, top + res)))


# --------------------------------------------------------------------------- writers

def export_fashion_mnist_folder(out_root: Path | str, source_dir: Path | str = "/usr/share/datasets/fashion-mnist",
                                limit: int | None = None, quality: int = 95) -> Path:
    """Fashion-MNIST as a JPEG ImageFolder: train/ (60k) and val/ (the 10k test set), 10 class
    folders named ``<label>_<name>`` so that sorted order is label order. ``limit`` caps each split."""
    out_root, source_dir = Path(out_root), Path(source_dir)
    sources = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    for split, (img_name, lbl_name) in sources.items():
        images, labels = read_idx(source_dir / img_name), read_idx(source_dir / lbl_name)
        n = len(images) if limit is None else min(limit, len(images))
        for cls in FASHION_CLASSES:
            (out_root / split / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(images[i]).save(out_root / split / FASHION_CLASSES[labels[i]] / f"{i:05d}.jpg",
                                            quality=quality)
    return out_root


def synthetic_folder(out_root: Path | str, n_images: int, classes: int | list[str] = 10, seed: int = 0,
                     val_fraction: float = 0.1, sides: tuple[int, int] = (200, 500)) -> Path:
    """JPEGs of mixed sizes and aspect ratios in ImageNet's layout: train/<wnid>/<wnid>_<k>.JPEG,
    val/<wnid>/ILSVRC2012_val_<k>.JPEG. ``classes`` is a count (fake wnids) or a wnid list."""
    out_root = Path(out_root)
    wnids = [f"n{10000000 + i:08d}" for i in range(classes)] if isinstance(classes, int) else list(classes)
    rng = np.random.default_rng(seed)
    n_val = int(round(n_images * val_fraction))
    for k in range(n_images):
        cls = wnids[k % len(wnids)]
        split = "val" if k < n_val else "train"
        name = f"ILSVRC2012_val_{k + 1:08d}.JPEG" if split == "val" else f"{cls}_{k}.JPEG"
        w, h = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        base = rng.integers(0, 256, size=(max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BILINEAR)
        folder = out_root / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / name, quality=90)
    return out_root
