"""Helpers shared by the subcommands: input expansion, one-line errors and warnings,
option bounds, outputs that must not overwrite inputs (atomic writes: :mod:`cathnet.fileio`)."""
from __future__ import annotations

import fnmatch
import glob
import os
from enum import Enum
from pathlib import Path
from typing import Iterable, NoReturn

import typer
from rich.console import Console

from cathnet.errors import CathnetError, UsageError
from cathnet.models import released_files
from cathnet.selection import SELECTIONS
from cathnet.structure import is_structure_file, parse_residue_ranges

__all__ = [
    "MAX_SEED", "PRECISION_HELP", "Precision", "bounded", "err_console", "expand_inputs", "fail", "refuse_overwrite",
    "report_error", "report_warning",
]

MAX_SEED = 2**32 - 1
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class Canonical(str, Enum):
    """``--canonical``: :data:`cathnet.canonical.CANONICAL` and ``none`` (a test keeps them equal)."""

    principal = "principal"
    none = "none"


class Precision(str, Enum):
    """``--precision`` (:mod:`cathnet.precision`)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


PRECISION_HELP = "auto (bf16 on CUDA and on CPUs with AMX or AVX512-BF16, else fp32), fp32 or bf16 (autocast)."


def report_error(path, reason: str | None = None) -> None:
    """Print one line ``error: PATH: REASON`` (or ``error: MESSAGE``) to stderr."""
    message = str(path) if reason is None else f"{path}: {reason}"
    err_console.print(f"error: {' '.join(message.splitlines())}", style="red", markup=False)


def fail(exc: CathnetError) -> NoReturn:
    """Report ``exc`` in one line and exit: status 2 for a usage error, else 1."""
    report_error(str(exc))
    raise typer.Exit(2 if isinstance(exc, UsageError) else 1)


def report_warning(path, message: str) -> None:
    """Print one line ``warning: PATH: MESSAGE`` to stderr."""
    err_console.print(f"warning: {path}: {' '.join(message.splitlines())}", style="yellow", markup=False)


def bounded(lo: float, hi: float):
    """Typer callback: a number in ``lo..hi`` (Click's own range check lets NaN through)."""
    def check(value):
        if value is not None and not lo <= value <= hi:
            raise typer.BadParameter(f"{value} is not in the range {lo:g}..{hi:g}")
        return value
    return check


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def refuse_overwrite(outputs: Iterable, inputs: Iterable, option: str) -> None:
    """A usage error if an output (symlinks followed) is one of ``inputs`` or a file of
    a released model."""
    protected = {_identity(p): "an input" for p in inputs}
    protected |= {_identity(p): "a released-model file" for p in released_files()}
    protected.pop(None, None)  # files that do not exist protect nothing
    for out in outputs:
        what = protected.get(_identity(out)) if out is not None else None
        if what:
            raise typer.BadParameter(f"{out} is {what}; refusing to overwrite it", param_hint=option)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Structure files named by ``inputs``, and (input, reason) for those that name none.

    A file is taken whatever its name (the reader refuses what is not a regular file); a
    directory is searched recursively for structure files (hidden entries skipped, symlinked
    folders inside it not followed); a pattern with ``*``, ``?`` or ``[`` is expanded like
    the shell (``**`` recursive, not through symlinked folders) and matching directories are
    searched. Results are sorted within each input, in input order, without duplicates.
    """
    paths: list[Path] = []
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(found: Iterable[Path]) -> None:
        for p in found:
            key = os.path.realpath(p)
            if key not in seen:
                seen.add(key)
                paths.append(p)

    for item in map(str, inputs):
        if os.path.isdir(item):
            found = _walk(Path(item), errors)
            if not found:
                errors.append((item, "no structure files in this directory"))
            add(found)
        elif os.path.lexists(item):
            add([Path(item)])
        elif any(c in item for c in "*?["):
            found = []
            for match in sorted(_glob(item)):
                if os.path.isdir(match):
                    found += _walk(Path(match), errors)
                elif is_structure_file(match):
                    found.append(Path(match))
            if not found:
                errors.append((item, "no structure files match this pattern"))
            add(found)
        else:
            errors.append((item, "no such file or directory"))
    return paths, errors


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, except that ``**`` does not descend into
    symlinked folders (a link loop would never end) and hidden entries are skipped."""
    parts = Path(pattern).parts
    if "**" not in parts:
        return glob.glob(pattern)
    i = parts.index("**")
    rest = parts[i:]
    out = []
    for base in glob.glob(os.path.join(*parts[:i])) if i else ["."]:
        for folder, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(os.path.relpath(folder, base)).parts if folder != base else ()
            out += [os.path.join(folder, n) for n in dirs + files if not n.startswith(".") and _match((*rel, n), rest)]
    return [p.removeprefix("./") if not pattern.startswith("./") else p for p in out]


def _match(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Whether path components match glob components (``**``: any number of them)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(parts[k:], pattern[1:]) for k in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(parts[1:], pattern[1:])


def _walk(root: Path, errors: list[tuple[str, str]]) -> list[Path]:
    def unreadable(exc: OSError) -> None:
        errors.append((exc.filename or str(root), exc.strerror or str(exc)))

    found = []
    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in sorted(files) if not f.startswith(".") and is_structure_file(f)]
    return found


class Task(str, Enum):
    """``--task``: the names of :data:`cathnet.tasks.TASKS` and :data:`cathnet.models.DEFAULT_MODELS`
    (a test keeps them equal), written out so that the CLI starts without torch."""

    cath = "cath"  # CATH architecture per domain
    aa = "aa"  # amino acid per residue


#: Atom selections as a CLI choice (values from :data:`cathnet.selection.SELECTIONS`).
Selection = Enum("Selection", {name.replace("-", "_"): name for name in SELECTIONS}, type=str)  # type: ignore[misc]


def check_residue_ranges(value: str | None) -> str | None:
    """Typer callback: a ``--residues`` value that :func:`parse_residue_ranges` accepts."""
    if value is not None:
        try:
            parse_residue_ranges(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value
