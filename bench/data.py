"""Dataset registry. Every dataset yields uint8 image tensors [N, C, H, W] and int64 labels.

Images stay uint8 until the training step (views convert them on the device).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.errors import SSLBenchError, choices
from bench.idx import INSTALL_HINT, read_idx
from bench.protocols import SIMCLR_LISTS
from bench.sources import DEFAULT_RES, PAPERS_CROP, FolderImages, is_lazy

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class DatasetCfg:
    name: str = field(
        default="fashion_mnist",
        metadata={"choices": ("fashion_mnist", "cifar10", "cifar100", "stl10", "imagefolder")},
    )
    root: str | None = field(default=None, metadata={"doc": "where the user's copy lives"})
    classes_file: str | None = field(default=None, metadata={"doc": "ImageNet-100 class list (CMC's imagenet100.txt)"})
    semi_lists: str | None = field(default=None, metadata={
        "doc": "folder with SimCLR's 1percent.txt / 10percent.txt (ImageNet train file names)"})
    load_size: int = field(default=0, metadata={"nonnegative": True, "doc": "imagefolder: resize shorter side"})
    center_crop: float = field(default=PAPERS_CROP, metadata={
        "positive": True, "at_most": 1.0,
        "doc": "imagefolder evaluation: shorter side to resolution / center_crop, then the center resolution "
               "square (0.875 = the papers' 224 of 256; 1.0 = the whole image, as for 28-32 px images)"})
    stream: bool = field(default=True, metadata={
        "doc": "imagefolder: decode each batch from its files (bench/sources.py), never the whole folder; "
               "false: decode it once into load_size squares (small folders only)"})
    download: bool = field(default=False, metadata={"doc": "allow torchvision's downloader as a fallback"})
    pretrain_subset: int = field(default=0, metadata={
        "nonnegative": True, "doc": "pretrain on this many train images (class-balanced; 0 = all)"})


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    names: list[str] | None = None  # image file names (imagefolder), for published subset lists

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def channels(self) -> int:
        return self.train.images.shape[1]


def _fashion_mnist(cfg: DatasetCfg) -> tuple[Split, Split, str]:
    root = Path(cfg.root or DEBIAN_FASHION_MNIST)
    names = {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
    if all((root / f).is_file() for pair in names.values() for f in pair):
        splits = []
        for img_name, lbl_name in names.values():
            images = torch.from_numpy(read_idx(root / img_name).copy()).unsqueeze(1)
            labels = torch.from_numpy(read_idx(root / lbl_name).astype(np.int64))
            splits.append(Split(images, labels))
        return splits[0], splits[1], str(root)
    if cfg.download:
        return _torchvision("FashionMNIST", Path("data/downloads"), download=True)
    missing = next(f for pair in names.values() for f in pair if not (root / f).is_file())
    if cfg.root:
        raise SSLBenchError(
            f"dataset.root '{root}' does not hold Fashion-MNIST: expected the four idx .gz files "
            f"(missing {missing})."
        )
    raise SSLBenchError(
        f"Fashion-MNIST is not installed at {root}; install it with `{INSTALL_HINT}` "
        "(or set dataset.root, or dataset.download: true where the network allows)."
    )


def _torchvision(cls_name: str, root: Path, download: bool = False, **kw) -> tuple[Split, Split, str]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    out = []
    for train in (True, False):
        try:
            if cls_name == "STL10":
                ds = cls(str(root), split="train" if train else "test", download=download)
            else:
                ds = cls(str(root), train=train, download=download)
        except (RuntimeError, OSError) as err:
            raise SSLBenchError(f"dataset {cls_name} is not readable at '{root}': {err}") from None
        data = ds.data if not isinstance(ds.data, torch.Tensor) else ds.data.numpy()
        images = torch.from_numpy(np.asarray(data))
        if images.ndim == 3:
            images = images.unsqueeze(1)
        elif images.shape[-1] in (1, 3):
            images = images.permute(0, 3, 1, 2)
        labels = torch.as_tensor(np.asarray(getattr(ds, "targets", getattr(ds, "labels", None))), dtype=torch.int64)
        out.append(Split(images.contiguous(), labels))
    return out[0], out[1], str(root)


def _need_root(cfg: DatasetCfg) -> Path:
    if not cfg.root:
        raise SSLBenchError(f"dataset '{cfg.name}' needs dataset.root pointing at your local copy.")
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise SSLBenchError(f"dataset.root '{root}' does not exist (expected the {cfg.name} dataset there).")
    return root


def _streamed_folder(cfg: DatasetCfg) -> tuple[Split, Split, str]:
    """ImageNet-style train/ and val/ folders as lazy splits (bench/sources.py): an index, no pixels."""
    from bench import folders

    root = _need_root(cfg)
    for sub in folders.SPLITS:
        if not (root / sub).is_dir():
            raise SSLBenchError(f"dataset.root '{root}' has no '{sub}/' folder (expected ImageFolder layout).")
    index = folders.scan(root)
    if cfg.classes_file:
        index = folders.filter_classes(index, _wanted_classes(cfg))
    res = cfg.load_size or DEFAULT_RES
    splits = (_lazy_split(root, index[s]["files"], index[s]["labels"], res, cfg.center_crop) for s in folders.SPLITS)
    return (*splits, str(root))


def _lazy_split(root, files: list[str], labels: list[int], res: int, crop: float) -> Split:
    """A split left on disk: its files (relative to ``root``), labels and file names."""
    return Split(FolderImages(root, files, res=res, crop=crop), torch.tensor(labels, dtype=torch.int64),
                 [f.rsplit("/", 1)[-1] for f in files])


def _wanted_classes(cfg: DatasetCfg) -> list[str]:
    return [ln.split()[0] for ln in Path(cfg.classes_file).read_text().splitlines() if ln.strip()]


def _imagefolder(cfg: DatasetCfg) -> tuple[Split, Split, str]:
    """ImageNet-style train/ and val/ folders: streamed (``dataset.stream``), or decoded once to
    ``load_size`` squares."""
    from PIL import Image

    if cfg.stream:
        return _streamed_folder(cfg)
    root = _need_root(cfg)
    size = cfg.load_size or 64
    wanted = _wanted_classes(cfg) if cfg.classes_file else None
    splits = []
    for sub in ("train", "val"):
        folder = root / sub
        if not folder.is_dir():
            raise SSLBenchError(f"dataset.root '{root}' has no '{sub}/' folder (expected ImageFolder layout).")
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        if wanted is not None:
            classes = [c for c in classes if c in set(wanted)]
        files = [(p, i) for i, c in enumerate(classes) for p in sorted((folder / c).iterdir())]
        images = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
        for n, (path, _) in enumerate(files):
            img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
            images[n] = torch.from_numpy(np.asarray(img)).permute(2, 0, 1)
        splits.append(Split(images, torch.tensor([i for _, i in files], dtype=torch.int64),
                            [path.name for path, _ in files]))
    return splits[0], splits[1], str(root)


LOADERS = {
    "fashion_mnist": _fashion_mnist,
    "cifar10": lambda cfg: _torchvision("CIFAR10", _need_root(cfg)),
    "cifar100": lambda cfg: _torchvision("CIFAR100", _need_root(cfg)),
    "stl10": lambda cfg: _torchvision("STL10", _need_root(cfg)),
    "imagefolder": _imagefolder,
}


def load_raw(cfg: DatasetCfg) -> Dataset:
    """Read a dataset from its source (slow path; ``prepare`` caches the result)."""
    if cfg.name not in LOADERS:
        raise SSLBenchError(f"unknown dataset '{cfg.name}'; valid choices are: {choices(LOADERS)}.")
    train, test, source = LOADERS[cfg.name](cfg)
    return _finish(cfg.name, train, test, source)


def _finish(name: str, train: Split, test: Split, source: str) -> Dataset:
    if is_lazy(train.images):  # measured on 512 evenly spaced files, decoded at 64 px
        pixels = train.images[torch.linspace(0, len(train) - 1, min(512, len(train))).long()]
        pixels = pixels.decode_plain(64).float().div_(255)
    else:
        pixels = train.images[:10000].float().div_(255)
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3)).tolist())
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    return Dataset(name, train, test, num_classes, mean, std, source)


def save_cache(ds: Dataset, directory: Path) -> None:
    """Write the dataset as uint8 tensors (loaded later with weights_only=True)."""
    from bench.io import atomic_torch_save, atomic_write_text

    directory.mkdir(parents=True, exist_ok=True)
    stream = is_lazy(ds.train.images)
    for split_name, split in (("train", ds.train), ("test", ds.test)):
        if stream:  # an index of the files (paths and labels), never the pixels
            index = {"root": str(split.images.root), "files": split.images.selected_files(),
                     "labels": split.labels.tolist(), "res": split.images.res, "crop": split.images.crop}
            atomic_write_text(directory / f"{split_name}.index.json", json.dumps(index, separators=(",", ":")))
        else:
            atomic_torch_save({"images": split.images, "labels": split.labels}, directory / f"{split_name}.pt")
    meta = {"name": ds.name, "num_classes": ds.num_classes, "mean": ds.mean, "std": ds.std, "source": ds.source,
            "train": len(ds.train), "test": len(ds.test), "shape": list(ds.train.images.shape[1:]), "stream": stream}
    atomic_write_text(directory / "dataset.json", json.dumps(meta, indent=2))


def load_cache(directory: Path) -> Dataset:
    meta_path = directory / "dataset.json"
    if not meta_path.is_file():
        raise SSLBenchError(f"no prepared dataset in '{directory}'; run `sslbench prepare` (or `dvc repro`) first.")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        raise SSLBenchError(f"prepared dataset file '{meta_path}' is unreadable; re-run prepare.") from None
    splits = []
    for name in ("train", "test"):
        if meta.get("stream"):
            splits.append(_load_index(directory / f"{name}.index.json"))
            continue
        path = directory / f"{name}.pt"
        try:
            blob = torch.load(path, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same sentence
            raise SSLBenchError(
                f"prepared dataset file '{path}' is unreadable ({type(err).__name__}); re-run prepare.") from None
        splits.append(Split(blob["images"], blob["labels"]))
    return Dataset(meta["name"], splits[0], splits[1], meta["num_classes"], tuple(meta["mean"]),
                   tuple(meta["std"]), meta["source"])


def _load_index(path: Path) -> Split:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        raise SSLBenchError(f"prepared index '{path}' is unreadable; re-run prepare.") from None
    return _lazy_split(index["root"], index["files"], index["labels"], index["res"], index.get("crop", PAPERS_CROP))


def label_fraction_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Deterministic, class-balanced subset of indices holding ``fraction`` of each class."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        count = max(1, round(len(idx) * fraction))
        picked.append(idx[torch.randperm(len(idx), generator=gen)[:count]])
    return torch.sort(torch.cat(picked)).values


OWN_SPLIT = "sslbench class-balanced split, seed 0"


def semi_split(train: Split, name: str, fraction: float, lists: str | None) -> tuple[torch.Tensor, str]:
    """Indices of the ``name`` label split of ``train`` and where they come from.

    With ``lists`` (a folder holding SimCLR's published ``1percent.txt`` / ``10percent.txt``,
    one ImageNet train file name per line) the listed images that the split holds (an
    ImageNet-100 suite keeps its classes' share); otherwise sslbench's own split.
    """
    if not lists:
        return label_fraction_split(train.labels, fraction, seed=0), OWN_SPLIT
    path = Path(lists).expanduser() / SIMCLR_LISTS[name]
    if not path.is_file():
        raise SSLBenchError(f"dataset.semi_lists: '{path}' is missing; put SimCLR's {SIMCLR_LISTS[name]} there "
                            "or remove semi_lists to use sslbench's own split.")
    if train.names is None:
        raise SSLBenchError("dataset.semi_lists needs an imagefolder dataset (file names to match the lists).")
    index = {file: i for i, file in enumerate(train.names)}
    listed = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    found = sorted(index[file] for file in listed if file in index)
    if not found:
        raise SSLBenchError(f"none of the {len(listed)} files in '{path}' is in the train split; "
                            "is dataset.root the ImageNet the lists were made for?")
    return torch.tensor(found, dtype=torch.int64), f"SimCLR list {path.name} ({len(found)} of {len(listed)} files)"


def at_resolution(ds: Dataset, res: int) -> Dataset:
    """A streamed folder's splits decoded at the suite's resolution (tensor datasets: unchanged)."""
    if not is_lazy(ds.train.images):
        return ds
    train, test = (Split(s.images.at(res), s.labels, s.names) for s in (ds.train, ds.test))
    return Dataset(ds.name, train, test, ds.num_classes, ds.mean, ds.std, ds.source)


def pretraining_view(ds: Dataset, subset: int) -> Dataset:
    """The dataset restricted to a deterministic, class-balanced subset of its train split."""
    if not subset or subset >= len(ds.train):
        return ds
    idx = label_fraction_split(ds.train.labels, subset / len(ds.train), seed=12345)
    names = [ds.train.names[i] for i in idx.tolist()] if ds.train.names else None
    train = Split(ds.train.images[idx], ds.train.labels[idx], names)
    return Dataset(ds.name, train, ds.test, ds.num_classes, ds.mean, ds.std, ds.source)
