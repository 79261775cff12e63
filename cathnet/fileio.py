"""Atomic file writes: readers see the old file or the whole new one, never a partial write.

Every writer goes through :func:`atomic_file`: a temporary file ``.NAME.*.tmp`` in the
target's folder (same filesystem, so the final :func:`os.replace` is atomic), flushed and
fsynced before the rename, with the mode an ordinary ``open(path, "w")`` would give
(``0o666`` minus the umask; :func:`tempfile.mkstemp` alone creates ``0600``). On any
exception the temporary file is removed and the old file, if any, is left untouched.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

__all__ = ["atomic_file", "atomic_write", "atomic_save_npz", "write_json"]

_UMASK = os.umask(0)  # read once at import: os.umask can only be read by setting it
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """An open binary temporary file next to ``path`` that replaces ``path`` when the
    ``with`` block completes; if the block raises, ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o666 & ~_UMASK)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_save_npz(path: str | os.PathLike, *, compress: bool = False, **arrays: Any) -> None:
    """``np.savez`` (``np.savez_compressed`` if ``compress``) ``arrays`` to exactly ``path``
    (no ``.npz`` appended), atomically. Byte-reproducible: equal arrays give equal files
    (zip entries carry a fixed 1980 timestamp, and the temporary file is seekable, so the
    archive has no data descriptors: the bytes equal those of a save to memory)."""
    with atomic_file(path) as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON plus a final newline, atomically."""
    atomic_write(path, (json.dumps(obj, indent=1) + "\n").encode())
