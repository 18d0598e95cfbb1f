"""Embedded detection / instance-segmentation data: Fashion-MNIST items placed on a canvas.

No detection dataset ships with this machine (the papers transfer to VOC and COCO, read
from user paths in the paper-scale suites), so ``sslbench prepare`` generates scenes:
1 to ``max_items`` real Fashion-MNIST items, each rescaled to a side of 16-32 px, at
random non-overlapping positions on a black square canvas. An item's instance mask is its
own pixels brighter than ``MASK_THRESHOLD`` after rescaling; its box is the tight box of
that mask; its category is its Fashion-MNIST class. Written as COCO-format JSON (RLE
masks) plus PNG images; the same layout holds a user's VOC / COCO converted to it. This
data is a deviation from the papers' transfer benchmarks, declared in the results.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils

from bench.errors import SSLBenchError
from bench.io import atomic_write_text

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MASK_THRESHOLD = 16  # of 255: drops the faint bilinear fringe around an item
SIDES = (16, 32)
TRIES = 20


def _overlaps(box, boxes) -> bool:
    x, y, s = box
    return any(x < bx + bs and bx < x + s and y < by + bs and by < y + s for bx, by, bs in boxes)


def generate_scenes(split, count: int, canvas: int, max_items: int, seed: int) -> tuple[torch.Tensor, dict]:
    """``count`` scenes (uint8 [count, 1, canvas, canvas]) and their COCO dict, from ``split``'s items."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 1, canvas, canvas, dtype=torch.uint8)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]}
    for index in range(count):
        coco["images"].append({"id": index + 1, "file_name": f"{index:06d}.png", "height": canvas, "width": canvas})
        placed = []
        for _ in range(int(torch.randint(1, max_items + 1, (1,), generator=gen))):
            side = int(torch.randint(SIDES[0], min(SIDES[1], canvas) + 1, (1,), generator=gen))
            for _ in range(TRIES):
                x, y = (int(v) for v in torch.randint(0, canvas - side + 1, (2,), generator=gen))
                if not _overlaps((x, y, side), placed):
                    break
            else:
                continue  # no room: fewer items in this scene
            item = int(torch.randint(len(split), (1,), generator=gen))
            patch = F.interpolate(split.images[item:item + 1, :1].float(), size=(side, side), mode="bilinear",
                                  align_corners=False).round().clamp(0, 255).to(torch.uint8)[0, 0]
            mask = np.zeros((canvas, canvas), np.uint8)
            mask[y:y + side, x:x + side] = (patch > MASK_THRESHOLD).numpy()
            if not mask.any():
                continue
            placed.append((x, y, side))
            images[index, 0, y:y + side, x:x + side] = torch.maximum(images[index, 0, y:y + side, x:x + side], patch)
            ys, xs = np.nonzero(mask)
            rle = mask_utils.encode(np.asfortranarray(mask))
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": index + 1,
                "category_id": int(split.labels[item]) + 1, "iscrowd": 0, "area": int(mask.sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    return images, coco


def write_scenes(directory: Path, name: str, images: torch.Tensor, coco: dict) -> None:
    """PNGs under ``directory/name/`` and ``directory/name.json`` (written last: its presence means complete)."""
    folder = Path(directory) / name
    folder.mkdir(parents=True, exist_ok=True)
    for image, meta in zip(images, coco["images"]):
        Image.fromarray(image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()).save(
            folder / meta["file_name"])
    atomic_write_text(Path(directory) / f"{name}.json", json.dumps(coco))


def load_scenes(directory: Path, name: str) -> tuple[torch.Tensor, dict]:
    """A COCO-format split in this layout: uint8 images [N, C, H, W] in ``coco['images']`` order, and the dict."""
    path = Path(directory) / f"{name}.json"
    if not path.is_file():
        raise SSLBenchError(f"no '{name}' scenes at '{path}'; run `sslbench prepare` for the suite first.")
    coco = json.loads(path.read_text())
    arrays = [np.asarray(Image.open(Path(directory) / name / image["file_name"])) for image in coco["images"]]
    tensor = torch.from_numpy(np.stack(arrays))
    return (tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)).contiguous(), coco


def prepare_scenes(ds, out: Path, cfg) -> None:
    """Train scenes from the train split (seed 0), val scenes from the test split (seed 1)."""
    if cfg.data_root:
        return
    for name, split, count, seed in (("train", ds.train, cfg.train_scenes, 0), ("val", ds.test, cfg.val_scenes, 1)):
        images, coco = generate_scenes(split, count, cfg.canvas, cfg.max_items, seed)
        write_scenes(Path(out), name, images, coco)
