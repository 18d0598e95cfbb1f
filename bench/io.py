"""Atomic file writes (temp file in the same directory + fsync + rename) and safe loads.

A writer killed at any moment (even with SIGKILL) leaves the previous file intact:
the new content goes to a hidden temp file ``.<name>.<host>.<pid>.<random>.tmp``
that is renamed over the target only once complete. Temp files left behind by a
dead writer on this host are removed by the next write of the same target.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.errors import SSLBenchError

_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "host"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files of ``path`` written by processes of this host that no longer exist."""
    prefix = f".{path.name}.{_HOST}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            rest = entry.name[len(prefix):] if entry.name.startswith(prefix) else ""
            pid = rest.split(".", 1)[0]
            if rest.endswith(".tmp") and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the table the usual permissions
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    with _atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch  # lazily: the app reads result tables without importing torch

    with _atomic_path(path) as tmp:
        torch.save(obj, tmp)


def safe_torch_load(path: Path, map_location: str = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True``; a bad file gets one sentence naming it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise SSLBenchError(f"checkpoint '{path}' does not exist.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, corrupt or code-carrying pickles alike
        raise SSLBenchError(
            f"checkpoint '{path}' is corrupt or not a plain weights file ({type(err).__name__}); "
            "it was not loaded."
        ) from None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock for read-modify-write of a shared table.

    The lock is taken on the table's directory, so no lock file is left next to
    the tables (nothing extra in DVC's dependencies or in git); the kernel releases
    it when the holder dies, even by SIGKILL.
    """
    directory = Path(path).parent
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
