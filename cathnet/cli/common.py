"""Helpers shared by the subcommands: input expansion, one-line errors (atomic writes:
:mod:`cathnet.fileio`)."""
from __future__ import annotations

import glob
import os
from enum import Enum
from pathlib import Path
from typing import Iterable

import typer
from rich.console import Console

from cathnet.structure import SELECTIONS, parse_residue_ranges

__all__ = [
    "PRECISION_HELP", "Precision", "STRUCTURE_SUFFIXES", "err_console", "expand_inputs", "is_structure_file", "report_error", "structure_id",
]

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pqr")
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


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


def _stem_suffix(name: str) -> str:
    name = name.lower()
    return name[:-3] if name.endswith(".gz") else name


def is_structure_file(path) -> bool:
    """Whether the file name has a structure extension (.pdb .ent .cif .mmcif .pqr, optionally .gz)."""
    return _stem_suffix(Path(path).name).endswith(STRUCTURE_SUFFIXES)


def structure_id(path) -> str:
    """The file name without its structure extension and .gz: ``1abc.cif.gz`` → ``1abc``."""
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in STRUCTURE_SUFFIXES else name


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Structure files named by ``inputs``, and (input, reason) for those that name none.

    A file is taken whatever its name; a directory is searched recursively for structure
    files (hidden entries skipped); a pattern with ``*``, ``?`` or ``[`` is expanded like the
    shell (``**`` recursive) and matching directories are searched. Results are sorted within
    each input, in input order, without duplicates.
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
            for match in sorted(glob.glob(item, recursive=True)):
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


#: Atom selections as a CLI choice (values from :data:`cathnet.structure.SELECTIONS`).
Selection = Enum("Selection", {name.replace("-", "_"): name for name in SELECTIONS}, type=str)  # type: ignore[misc]


def check_residue_ranges(value: str | None) -> str | None:
    """Typer callback: a ``--residues`` value that :func:`parse_residue_ranges` accepts."""
    if value is not None:
        try:
            parse_residue_ranges(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value
