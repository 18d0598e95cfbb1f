"""Progress bars that are lively on a terminal and sparse in logs (DVC, CI)."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    interval = 0.5 if sys.stderr.isatty() else 30.0
    return tqdm(iterable, dynamic_ncols=True, leave=False, mininterval=interval, **kwargs)
