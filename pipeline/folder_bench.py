"""Throughput and memory of the streaming folder path (issue 17), beside torchvision's ImageFolder.

    python -m pipeline.folder_bench --root DIR [--images N] [--threads T] [--rss]
    python -m pipeline.folder_bench --synthetic DIR --images 10000   # write a folder first

(a) ours: ``bench.sources.FolderImages`` as pretraining uses it (thread pool, JPEG draft decode,
RandomResizedCrop on the original image per view and a flip, then SimCLR's jitter / grayscale / blur on
the float crop in the same thread, ``bench.views.recolour``).
(b) torchvision ``datasets.ImageFolder`` + ``transforms.v2`` on PIL, two views an image as SimCLR
needs (RandomResizedCrop, flip, ColorJitter(0.8, 0.8, 0.8, 0.2) p=0.8, RandomGrayscale 0.2,
GaussianBlur p=0.5, ToImage + ToDtype): the lightly / solo-learn pipeline without DALI, in a
DataLoader with as many workers as (a) has threads. Both print images/s per core (T cores).
``--rss`` runs a child process that indexes the folder and streams ``--batches`` batches, and prints
its peak resident memory (``resource.getrusage``): run it on a 10k and a 100k folder to compare.
Run on an idle machine; on a busy one the figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench import folders
from bench.sources import FolderImages
from bench.views import recipe


def _batches(images: FolderImages, n: int, batch: int, res: int, epoch: int = 0):
    """SimCLR's two views of ``n`` images of an epoch's permutation, ``batch`` at a time."""
    spec = recipe("simclr", res)
    idx = torch.tensor(folders.shard_indices(len(images), 0, 1, epoch, 0)[:n])
    for k in range(0, len(idx), batch):
        yield images[idx[k: k + batch]].decode_views(spec, draw=epoch * len(idx) + k)


def _ours(root: Path, n: int, threads: int, batch: int, res: int) -> float:
    index = folders.read_index(root) if (root / folders.INDEX_NAME).is_file() else folders.scan(root)
    images = FolderImages(root, index["train"]["files"], res=res, threads=threads)
    t0, count = None, 0
    for views in _batches(images, n, batch, res):
        if t0 is None:  # the first batch is warm-up, as for (b)
            t0 = time.perf_counter()
        else:
            count += len(views[0])
    return count / (time.perf_counter() - t0) / threads


class _TwoViews:
    """Two independent views of one PIL image (picklable for spawned DataLoader workers)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        return self.transform(image), self.transform(image)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)


def _torchvision(root: Path, n: int, threads: int, batch: int, res: int) -> float:
    from torchvision import datasets
    from torchvision.transforms import v2

    one = v2.Compose([
        v2.RandomResizedCrop(res, antialias=True), v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), v2.RandomGrayscale(0.2),
        v2.RandomApply([v2.GaussianBlur(23, (0.1, 2.0))], p=0.5), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
    ])
    ds = datasets.ImageFolder(str(root / "train"), transform=_TwoViews(one))
    sub = torch.utils.data.Subset(ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n].tolist())
    loader = torch.utils.data.DataLoader(sub, batch_size=batch, num_workers=threads,
                                         multiprocessing_context="spawn" if threads else None,
                                         worker_init_fn=_one_thread)
    t0, count = None, 0
    for _, y in loader:
        if t0 is None:  # the first batch is warm-up (worker spawn)
            t0 = time.perf_counter()
        else:
            count += len(y)
    return count / (time.perf_counter() - t0) / max(1, threads)


def _rss_child(root: Path, batches: int, batch: int, threads: int, res: int) -> None:
    index = folders.read_index(folders.write_index(root, Path("/tmp") / f"folder_bench_index_{root.name}.json"))
    images = FolderImages(root, index["train"]["files"], res=res, threads=threads)
    done, epoch = 0, 0
    while done < batches:
        for _ in _batches(images, len(images), batch, res, epoch):
            done += 1
            if done >= batches:
                break
        epoch += 1
    print(json.dumps({"images": len(images), "batches": done,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_rss(root: Path, batches: int, batch: int, threads: int, res: int) -> dict:
    cmd = [sys.executable, "-m", "pipeline.folder_bench", "--root", str(root), "--rss-child",
           "--batches", str(batches), "--batch", str(batch), "--threads", str(threads), "--res", str(res)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path)
    ap.add_argument("--synthetic", type=Path, help="write a synthetic folder of --images JPEGs here and stop")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--rss", action="store_true", help="also measure peak RSS of index + --batches batches")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.synthetic:
        folders.synthetic_folder(args.synthetic, args.images, 100, seed=0)
        print(f"wrote {args.images} JPEGs under {args.synthetic}")
        return
    if args.root is None:
        ap.error("--root is required")
    torch.set_num_threads(args.threads)
    if args.rss_child:
        _rss_child(args.root, args.batches, args.batch, args.threads, args.res)
        return
    rows = [("ours: stream + draft decode + RRC + SimCLR recipe", _ours(args.root, args.images, args.threads,
                                                                      args.batch, args.res)),
            ("torchvision ImageFolder + transforms.v2 (PIL)", _torchvision(args.root, args.images, args.threads,
                                                                           args.batch, args.res))]
    print(f"{'pipeline':<52} {'images/s/core':>14}   ({args.images} images, {args.threads} threads, {args.res} px)")
    for name, rate in rows:
        print(f"{name:<52} {rate:>14.1f}")
    print(f"{'ratio ours / torchvision':<52} {rows[0][1] / rows[1][1]:>14.2f}")
    if args.rss:
        r = peak_rss(args.root, args.batches, args.batch, args.threads, args.res)
        print(f"peak RSS, index + {r['batches']} batches of {args.batch} over {r['images']} images: "
              f"{r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
