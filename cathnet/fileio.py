"""Safe file access: bounded reads of regular files only, and atomic writes.

Reading: :func:`read_regular` opens without blocking (a FIFO never hangs the reader),
refuses anything but a regular file (devices, FIFOs, sockets, directories) and files
larger than a stated bound, each with a one-line :class:`UnreadableFile` reason.

Writing: every writer goes through :func:`atomic_file`: a temporary file ``.NAME.*.tmp``
in the target's folder (same filesystem, so the final :func:`os.replace` is atomic),
flushed and fsynced before the rename. A new file gets the mode an ordinary
``open(path, "w")`` would give (``0o666`` minus the umask; :func:`tempfile.mkstemp` alone
creates ``0600``), a replaced file keeps its mode, and a symlink is written through (its
target is replaced, the link stays). On any exception, and on SIGTERM, the temporary file
is removed and the old file, if any, is left untouched.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from cathnet.errors import CathnetError

__all__ = ["UnreadableFile", "atomic_file", "atomic_write", "atomic_save_npz", "file_kind", "finite_json", "human_size", "read_regular",
           "regular_file_error", "sha256", "write_json"]

_UMASK = os.umask(0)  # read once at import: os.umask can only be read by setting it
os.umask(_UMASK)

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class UnreadableFile(CathnetError):
    """A file that cannot be read as data; ``reason`` is one line without the path."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def file_kind(mode: int) -> str:
    """"a directory", "a FIFO", ... for a non-regular ``st_mode``."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def human_size(n: int) -> str:
    """``123 bytes``, ``97.7 KiB``, ``4.5 MiB``, ``1.0 GiB``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _stat_error(st: os.stat_result, limit: int | None) -> str | None:
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({file_kind(st.st_mode)})"
    if limit is not None and st.st_size > limit:
        return f"too large: {human_size(st.st_size)}, more than the limit of {human_size(limit)}"
    return None


def regular_file_error(path, limit: int | None = None) -> str | None:
    """Why ``path`` is not a regular file of at most ``limit`` bytes, or None (follows
    symlinks; never opens the file)."""
    try:
        return _stat_error(os.stat(path), limit)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return exc.strerror or str(exc)


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of regular file ``path`` (symlinks followed), at most ``limit`` of them.

    Raises :class:`UnreadableFile` for a missing, unreadable, special (FIFO, device,
    socket) or too large file; the open never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UnreadableFile(path, "no such file") from None
    except PermissionError:
        raise UnreadableFile(path, "permission denied") from None
    except OSError as exc:
        raise UnreadableFile(path, exc.strerror or str(exc)) from None
    reason = _stat_error(os.fstat(fd), limit)
    if reason:
        os.close(fd)
        raise UnreadableFile(path, reason)
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise UnreadableFile(path, exc.strerror or str(exc)) from None
    if len(data) > limit:  # grew while being read
        raise UnreadableFile(path, f"too large: more than the limit of {human_size(limit)}")
    return data


class _Terminated(BaseException):
    """SIGTERM received inside :func:`atomic_file`: clean up, then die of the signal."""


def _raise_terminated(signum, frame):
    raise _Terminated


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`_Terminated` (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _target(path: Path) -> tuple[Path, int]:
    """The file to replace (a symlink's target) and the mode the new file gets."""
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return real, 0o666 & ~_UMASK
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "Is a directory", str(path))
    return real, stat.S_IMODE(st.st_mode)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """An open binary temporary file next to ``path`` that replaces ``path`` when the
    ``with`` block completes; if the block raises (or SIGTERM arrives), ``path`` is left
    as it was and the temporary file is removed. An existing target that is not a
    regular file (``/dev/null``, a FIFO with a reader) is written directly, like the
    shell's ``>``."""
    real, mode = _target(Path(path))
    if real.exists() and not real.is_file():
        with _open_special(real) as f:
            yield f
        return
    tmp = None
    try:
        with _terminate_raises():
            fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, mode)
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, real)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if not isinstance(exc, _Terminated):
            raise
        os.kill(os.getpid(), signal.SIGTERM)  # the default handler is back: die of the signal
        raise SystemExit(128 + signal.SIGTERM) from None  # (only if SIGTERM is blocked)


def _open_special(path: Path) -> BinaryIO:
    """A device or FIFO opened for writing without blocking (a FIFO without a reader
    raises OSError instead of hanging)."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


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


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (which JSON lacks) replaced by None (null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON plus a final newline, atomically; NaN and infinities are
    written as null (:func:`finite_json`)."""
    atomic_write(path, (json.dumps(finite_json(obj), indent=1, allow_nan=False) + "\n").encode())
