"""Images that stay on disk: a streamed folder split that the code indexes like a uint8 tensor.

A ``FolderImages`` stands where a ``Split`` holds its uint8 tensor, for ImageNet-style folders
(``dataset.name: imagefolder``, ``dataset.stream: true``). It never holds decoded images:

- ``images[idx]`` (a tensor of indices or a slice) is another ``FolderImages`` over those files,
  so the sampler, ``pretraining_view``'s subset, the semi-supervised split and each Ray Train
  rank's share of a step all select files, not pixels: a worker decodes only its own indices;
- ``ViewGenerator`` (bench/views.py) asks it to decode: ``decode_views`` for pretraining (per
  file, one RandomResizedCrop per view on the original image and a flip, then the view's recipe
  on floats with the tensor path's code, in a thread pool: ``bench.folders.decode_crops``),
  ``decode_plain`` for evaluation (shorter side to ``res / crop``, center crop ``res``:
  ``bench.folders.decode_eval``; ``crop`` is the suite's ``dataset.center_crop``).

The random draws of a batch's views come from one number drawn from the step's generator, mixed
per file with its index (``image_seed``): a resumed or distributed run decodes the same crops.
``len``, ``shape`` (N, 3, res, res), ``to(...)`` and ``pin_memory()`` behave as the engine
expects of a tensor; nothing else of the tensor API is offered.
"""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.folders import PAPERS_CROP, decode_crops, decode_eval
from bench.views import ViewSpec

DEFAULT_RES = 224  # the evaluation size when a caller asks for none (the papers' 224 px)


def image_seed(seed: int, draw: int, index: int) -> int:
    """The seed of one file's random draws in one batch: independent of thread order and rank."""
    return int.from_bytes(hashlib.blake2b(f"{seed}/{draw}/{index}".encode(), digest_size=8).digest(), "little")


class FolderImages:
    def __init__(self, root: Path | str, files: list[str], indices: torch.Tensor | None = None,
                 res: int = DEFAULT_RES, seed: int = 0, threads: int = 0, crop: float = PAPERS_CROP):
        self.root, self.files, self.res, self.seed, self.crop = Path(root), files, res, seed, crop
        self.indices = torch.arange(len(files)) if indices is None else indices.long().cpu()
        self.threads = threads or len(os.sched_getaffinity(0))

    def _with(self, indices: torch.Tensor, res: int) -> FolderImages:
        return FolderImages(self.root, self.files, indices, res, self.seed, self.threads, self.crop)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key) -> FolderImages:
        picked = self.indices[key.cpu() if isinstance(key, torch.Tensor) else key]
        return self._with(picked.reshape(-1), self.res)

    def at(self, res: int) -> FolderImages:
        """The same files, evaluated (and reported in ``shape``) at ``res`` px."""
        return self._with(self.indices, res)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), 3, self.res, self.res)

    def to(self, *args, **kwargs) -> FolderImages:
        return self  # decoded where ViewGenerator puts the result

    def pin_memory(self) -> FolderImages:
        return self

    def selected_files(self) -> list[str]:
        """The selected files, relative to ``root`` (as the index lists them)."""
        return [self.files[i] for i in self.indices.tolist()]

    def paths(self) -> list[Path]:
        return [self.root / f for f in self.selected_files()]

    def _map(self, fn, items) -> list:
        """``fn`` over ``items`` in the decode threads. Torch runs one intra-op thread meanwhile: the
        threads are the parallelism (two threads each splitting its ops in two ran 12 % slower)."""
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(min(self.threads, max(1, len(items)))) as pool:
                return list(pool.map(fn, items))
        finally:
            torch.set_num_threads(before)

    def decode_views(self, spec: ViewSpec, draw: int) -> list[torch.Tensor]:
        """float [B, 3, size, size] in [0, 1] per view of ``spec``; ``draw`` seeds this batch's views."""
        def one(item):
            index, path = item
            return decode_crops(path, spec.crops, random.Random(image_seed(self.seed, draw, index)))

        per_file = self._map(one, list(zip(self.indices.tolist(), self.paths(), strict=True)))
        return [torch.stack(view) for view in zip(*per_file, strict=True)]

    def decode_plain(self, size: int | None = None) -> torch.Tensor:
        """uint8 [B, 3, size, size]: shorter side to ``size / crop``, center crop ``size``."""
        size = size or self.res
        return torch.stack(self._map(lambda path: decode_eval(path, size, crop=self.crop), self.paths()))


def is_lazy(images) -> bool:
    return isinstance(images, FolderImages)
