"""The inputs of a dataset build: the labels text and the structure files it names.

Labels: a file, or the ``labels.csv`` of a tar archive, UTF-8 with or without a byte-order
mark (parsed by :mod:`cathnet.data.labels`). Structures: a folder of
``<cath_id>[.pdb|.ent|.cif|.mmcif|.pqr][.gz]`` files, or a tar archive (any compression)
streamed member by member, each member read only when its turn comes and refused above
:data:`~cathnet.structure_text.MAX_BYTES`; a truncated or corrupt archive is a
:class:`~cathnet.errors.DatasetError`.
"""
from __future__ import annotations

import lzma
import os
import tarfile
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

from cathnet.errors import DatasetError
from cathnet.fileio import UnreadableFile, human_size, read_regular
from cathnet.structure import structure_id
from cathnet.structure_text import MAX_BYTES

__all__ = ["Job", "labels_text", "structure_jobs"]


class Job(NamedTuple):
    """One structure to extract."""

    cath_id: str
    name: str  # file path or archive member name
    data: bytes | str | None  # the member's bytes, None to read the file, or why it was not read
    atoms: str  # the dataset's atoms


def _directory_jobs(root: Path, wanted: set[str], atoms: str) -> list[Job]:
    files: dict[str, str] = {}
    for entry in os.scandir(root):
        if entry.is_file() and structure_id(entry.name) in wanted:
            files.setdefault(structure_id(entry.name), entry.path)
    return [Job(i, files[i], None, atoms) for i in sorted(files)]


def _tar_files(path: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, str, bytes | str]]:
    """(base name, member name, bytes or the reason they were not read) of the regular
    files of a tar archive whose base name is ``wanted``, streamed: each member is read
    when its turn comes. A truncated or corrupt archive raises :class:`DatasetError`."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                base = os.path.basename(member.name)
                if member.isfile() and wanted(base):
                    yield base, member.name, _member_bytes(tar, member)
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise DatasetError(f"{path}: truncated or corrupt archive ({exc})") from None


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | str:
    """The bytes of an archive member, or why they are not read."""
    if member.size > MAX_BYTES:
        return f"too large: {human_size(member.size)}, more than the limit of {human_size(MAX_BYTES)}"
    return tar.extractfile(member).read()  # type: ignore[union-attr]  # a regular file


def _tar_labels(path: Path) -> str:
    for _, _, data in _tar_files(path, lambda base: base == "labels.csv"):
        return _decode(data, f"{path}:labels.csv")
    raise DatasetError(f"{path}: no labels.csv in the archive; pass --labels")


def _tar_jobs(path: Path, wanted: set[str], atoms: str, seen: set[str]) -> Iterator[Job]:
    def new(base: str) -> bool:
        return base != "labels.csv" and structure_id(base) in wanted and structure_id(base) not in seen

    for base, name, data in _tar_files(path, new):
        seen.add(structure_id(base))
        yield Job(structure_id(base), name, data, atoms)


def _is_tar(path: Path) -> bool:
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except (EOFError, OSError):
        return False


def labels_text(pdb: Path, labels: Path | None) -> str:
    """The text of ``labels``, or of the ``labels.csv`` inside the ``pdb`` archive."""
    if labels is not None:
        return _read_labels_file(labels)
    if not _is_tar(pdb):
        raise DatasetError("--labels is required unless --pdb is a tar archive with labels.csv")
    return _tar_labels(pdb)


def structure_jobs(pdb: Path, wanted: set[str], atoms: str, seen: set[str]) -> tuple[Iterable[Job], int]:
    """Extraction :class:`Job` s for the ``wanted`` domains in ``pdb``, and how many to
    expect; ids found go into ``seen`` (as the archive streams by)."""
    if _is_tar(pdb):
        return _tar_jobs(pdb, wanted, atoms, seen), len(wanted)
    if pdb.is_dir():
        jobs = _directory_jobs(pdb, wanted, atoms)
        seen.update(j.cath_id for j in jobs)
        return jobs, len(jobs)
    raise DatasetError(f"{pdb}: neither a directory nor a tar archive")


def _read_labels_file(path: Path) -> str:
    try:
        return _decode(read_regular(path, MAX_BYTES), path)
    except UnreadableFile as exc:
        raise DatasetError(f"{path}: cannot read labels ({exc.reason})") from None


def _decode(data: bytes | str, source) -> str:
    """Labels text (UTF-8, a byte-order mark dropped)."""
    if isinstance(data, str):
        raise DatasetError(f"{source}: {data}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{source}: not a UTF-8 text file") from None
