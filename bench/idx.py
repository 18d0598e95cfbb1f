"""MNIST's IDX file format (gzipped), as Fashion-MNIST ships it: magic, dimensions, uint8 data."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from bench.errors import SSLBenchError

INSTALL_HINT = "sudo apt-get install -y dataset-fashion-mnist"


def read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
        ndim = data[3]
        dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, EOFError, IndexError, ValueError, zlib.error) as err:
        raise SSLBenchError(f"dataset file '{path}' is corrupt ({type(err).__name__}); reinstall it with "
                            f"`{INSTALL_HINT}`.") from None
