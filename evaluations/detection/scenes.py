"""Embedded detection / instance-segmentation data: Fashion-MNIST items placed on a canvas.

No detection dataset ships with this machine (the papers transfer to VOC and COCO, read
from user paths in the paper-scale suites), so ``sslbench prepare`` generates scenes:
1 to ``max_items`` real Fashion-MNIST items, each rescaled (bilinear) to a side of 16-32 px,
at random positions whose squares never overlap, on a black square canvas. An item's
instance mask is its own pixels brighter than ``MASK_THRESHOLD`` after rescaling; its box
is the tight box of that mask; its category is its Fashion-MNIST class. Written as
COCO-format JSON (RLE masks) plus PNG images; the same layout holds a user's VOC / COCO
converted to it. This data is a deviation from the papers' transfer benchmarks, declared
in the results.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils

from bench.errors import SSLBenchError
from bench.io import atomic_write_text

if TYPE_CHECKING:
    from bench.config import TransferCfg
    from bench.data import Dataset, Split

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MASK_THRESHOLD = 16  # of 255: pixels above it are the item's; drops the faint bilinear fringe around it
SIDES = (16, 32)  # an item's rescaled side in pixels, drawn uniformly (inclusive)
TRIES = 20  # positions tried per item before it is left out (the scene then holds fewer items)
_PNG = re.compile(r"\d{6}\.png")


def _overlaps(box, boxes) -> bool:
    x, y, s = box
    return any(x < bx + bs and bx < x + s and y < by + bs and by < y + s for bx, by, bs in boxes)


def generate_scenes(split: Split, count: int, canvas: int, max_items: int, seed: int) -> tuple[torch.Tensor, dict]:
    """``count`` scenes (uint8 [count, 1, canvas, canvas]) and their COCO dict, from ``split``'s items.

    Deterministic: every draw comes from one generator seeded with ``seed``.
    """
    if canvas < SIDES[0]:
        raise SSLBenchError(f"eval.transfer.canvas must be at least {SIDES[0]} px (the smallest item), got {canvas}.")
    if len(split) == 0:
        raise SSLBenchError("cannot generate detection scenes from an empty split.")
    gen = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 1, canvas, canvas, dtype=torch.uint8)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]}

    def place(index: int, placed: list) -> None:
        """Draw one item and a free position for it; add it unless no position fits or its mask is empty."""
        side = int(torch.randint(SIDES[0], min(SIDES[1], canvas) + 1, (1,), generator=gen))
        for _ in range(TRIES):
            x, y = (int(v) for v in torch.randint(0, canvas - side + 1, (2,), generator=gen))
            if not _overlaps((x, y, side), placed):
                break
        else:
            return  # no room: fewer items in this scene
        item = int(torch.randint(len(split), (1,), generator=gen))
        patch = F.interpolate(split.images[item:item + 1, :1].float(), size=(side, side), mode="bilinear",
                              align_corners=False).round().clamp(0, 255).to(torch.uint8)[0, 0]
        mask = np.zeros((canvas, canvas), np.uint8)
        mask[y:y + side, x:x + side] = (patch > MASK_THRESHOLD).numpy()
        if not mask.any():
            return  # an item with no pixel above the threshold has no instance
        placed.append((x, y, side))
        images[index, 0, y:y + side, x:x + side] = patch  # squares never overlap: nothing to blend
        ys, xs = np.nonzero(mask)
        rle = mask_utils.encode(np.asfortranarray(mask))
        coco["annotations"].append({
            "id": len(coco["annotations"]) + 1, "image_id": index + 1,
            "category_id": int(split.labels[item]) + 1, "iscrowd": 0, "area": int(mask.sum()),
            "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}})

    for index in range(count):
        coco["images"].append({"id": index + 1, "file_name": f"{index:06d}.png", "height": canvas, "width": canvas})
        placed: list[tuple[int, int, int]] = []
        for _ in range(int(torch.randint(1, max_items + 1, (1,), generator=gen))):
            place(index, placed)
        for _ in range(TRIES):  # the first item always fits, but its mask may be empty: draw others
            if placed:
                break
            place(index, placed)
        if not placed:
            raise SSLBenchError(f"no item of the split has a pixel above {MASK_THRESHOLD} after rescaling; "
                                "detection scenes need bright items on a black background.")
    return images, coco


def write_scenes(directory: Path, name: str, images: torch.Tensor, coco: dict) -> None:
    """PNGs under ``directory/name/`` and ``directory/name.json``.

    The old JSON goes first and the new one is written last (atomically): a JSON file
    present means its PNGs are complete. PNGs of an earlier, larger set are removed.
    """
    directory = Path(directory)
    folder = directory / name
    (directory / f"{name}.json").unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    keep = {meta["file_name"] for meta in coco["images"]}
    for stale in folder.iterdir():
        if _PNG.fullmatch(stale.name) and stale.name not in keep:
            stale.unlink()
    for image, meta in zip(images, coco["images"]):
        array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).contiguous().numpy()
        Image.fromarray(array).save(folder / meta["file_name"])
    atomic_write_text(directory / f"{name}.json", json.dumps(coco))


def _read_image(path: Path) -> np.ndarray:
    """HxW (grayscale) or HxWx3 uint8; other PIL modes are converted to one of the two."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "RGB"):
                img = img.convert("L" if img.mode in ("1", "LA") else "RGB")
            return np.array(img)  # a writable copy
    except (OSError, ValueError) as err:
        raise SSLBenchError(f"image '{path}' is missing or unreadable ({type(err).__name__}); "
                            "re-run `sslbench prepare` or fix the dataset.") from None


def load_scenes(directory: Path, name: str) -> tuple[torch.Tensor, dict]:
    """A COCO-format split in this layout: uint8 images [N, C, H, W] in ``coco['images']`` order, and the dict.

    ``directory/name.json`` and the images under ``directory/name/`` (their ``file_name``);
    generated scenes or a user's VOC / COCO converted to it. C is 3 if any image is in
    colour (grayscale ones are repeated), else 1. Images of different sizes are padded
    with black to the largest height and width at the bottom and right, so annotation
    coordinates stay valid; ``coco['images']`` keeps each image's own height and width.
    """
    directory = Path(directory)
    path = directory / f"{name}.json"
    if not path.is_file():
        raise SSLBenchError(f"no '{name}' scenes at '{path}'; run `sslbench prepare` for the suite first "
                            "(or point eval.transfer.data_root at COCO-format train.json / val.json).")
    try:
        coco = json.loads(path.read_text())
        entries = coco["images"]
        files = [directory / name / entry["file_name"] for entry in entries]
        sizes = [(int(entry["height"]), int(entry["width"])) for entry in entries]
        if not isinstance(coco["annotations"], list) or not isinstance(coco["categories"], list):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SSLBenchError(f"scenes file '{path}' is not readable COCO-format JSON with images, annotations and "
                            f"categories ({type(err).__name__}); re-run `sslbench prepare`.") from None
    if not entries:
        raise SSLBenchError(f"scenes file '{path}' lists no images; re-run `sslbench prepare`.")
    arrays = [_read_image(file) for file in files]
    for file, array, size in zip(files, arrays, sizes):
        if array.shape[:2] != size:
            raise SSLBenchError(f"image '{file}' is {array.shape[0]}x{array.shape[1]} px but '{path}' says "
                                f"{size[0]}x{size[1]}; its annotations would not match.")
    channels = 3 if any(array.ndim == 3 for array in arrays) else 1
    height, width = max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
    if all(a.shape[:2] == (height, width) and a.ndim == arrays[0].ndim for a in arrays):
        tensor = torch.from_numpy(np.stack(arrays))
        return (tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)).contiguous(), coco
    out = torch.zeros(len(arrays), channels, height, width, dtype=torch.uint8)
    for i, array in enumerate(arrays):
        pixels = torch.from_numpy(array)
        pixels = pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
        out[i, :, :pixels.shape[1], :pixels.shape[2]] = pixels  # a grayscale image broadcasts to RGB
    return out, coco


def prepare_scenes(ds: Dataset, out: Path, cfg: TransferCfg) -> None:
    """Train scenes from the train split (seed 0), val scenes from the test split (seed 1); none with data_root."""
    if cfg.data_root:
        return  # the user's COCO-format data is read from there
    for name, split, count, seed in (("train", ds.train, cfg.train_scenes, 0), ("val", ds.test, cfg.val_scenes, 1)):
        images, coco = generate_scenes(split, count, cfg.canvas, cfg.max_items, seed)
        write_scenes(Path(out), name, images, coco)
