"""The inputs of a dataset build: CATH labels and the structure files they name.

Labels: a pool ``labels.csv`` or a CATH domain list (CLF), UTF-8 with or without a
byte-order mark; a bad row is a :class:`DatasetError` naming its line. Structures: a
folder of ``<cath_id>[.pdb|.ent|.cif][.gz]`` files, or a tar archive (any compression)
streamed member by member, each member read only when its turn comes and refused above
:data:`~cathnet.structure_text.MAX_BYTES`; a truncated or corrupt archive is a
:class:`DatasetError`.
"""
from __future__ import annotations

import csv
import io
import lzma
import math
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from cathnet.fileio import UnreadableFile, human_size, read_regular
from cathnet.structure_text import MAX_BYTES

__all__ = ["DatasetError", "Domain", "labels_text", "read_labels", "structure_jobs"]

_STRUCTURE_SUFFIXES = (".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz", ".pdb", ".ent", ".cif", ".mmcif")


class DatasetError(Exception):
    """A labels file, structure source or option that cannot be used (one-line message)."""


@dataclass(frozen=True)
class Domain:
    """One labelled CATH domain."""

    cath_id: str
    cath_code: str  # C.A.T.H
    resolution: float

    @property
    def architecture(self) -> str:
        return ".".join(self.cath_code.split(".")[:2])

    @property
    def superfamily(self) -> str:
        return ".".join(self.cath_code.split(".")[:4])


# ---------------------------------------------------------------------------- labels


def read_labels(text: str, source: str = "labels", *, one_per_s35: bool = True) -> list[Domain]:
    """Parse a pool ``labels.csv`` (header ``cath_id,cath_code,...``) or a CATH domain
    list (CLF: ``id C A T H S35 S60 S95 S100 count length resolution``, ``#`` comments).

    For a CLF, ``one_per_s35`` keeps one domain per S35 cluster (best resolution, then
    smallest id), which gives the 40 %-identity non-redundant set used in the paper.
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark from a spreadsheet
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.startswith("cath_id,"):
        return _read_pool_csv(text, source)
    return _read_domain_list(text, source, one_per_s35)


def _read_pool_csv(text: str, source: str) -> list[Domain]:
    rows = csv.DictReader(io.StringIO(text))
    missing = {"cath_id", "cath_code", "resolution"} - set(rows.fieldnames or ())
    if missing:
        raise DatasetError(f"{source}: missing column(s) {', '.join(sorted(missing))}")
    out = []
    for line, row in enumerate(rows, start=2):
        cells = {k: (v or "").strip() for k, v in row.items() if isinstance(k, str) and isinstance(v, (str, type(None)))}
        empty = [k for k in ("cath_id", "cath_code", "resolution") if not cells.get(k)]
        if empty:
            raise DatasetError(f"{source}:{line}: empty or missing {', '.join(empty)}")
        code = cells["cath_code"]
        if len(code.split(".")) < 4:
            raise DatasetError(f"{source}:{line}: cath_code {code!r} is not C.A.T.H")
        domain = Domain(cells["cath_id"], ".".join(code.split(".")[:4]), _float(cells["resolution"], source, line))
        if cells.get("architecture") and cells["architecture"] != domain.architecture:
            raise DatasetError(f"{source}:{line}: architecture {cells['architecture']!r} disagrees with {code}")
        out.append(domain)
    return out


def _read_domain_list(text: str, source: str, one_per_s35: bool) -> list[Domain]:
    best: dict[str, tuple[float, str, Domain]] = {}
    out = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cols = raw.split()
        if len(cols) < 12 or not all(c.isdigit() for c in cols[1:6]):
            raise DatasetError(f"{source}:{line}: not a CATH domain list line (need 12 columns: id C A T H S35 ... resolution)")
        domain = Domain(cols[0], ".".join(cols[1:5]), _float(cols[11], source, line))
        if not one_per_s35:
            out.append(domain)
            continue
        key, rank = ".".join(cols[1:6]), (domain.resolution, domain.cath_id)
        if key not in best or rank < best[key][:2]:
            best[key] = (*rank, domain)
    return out if not one_per_s35 else sorted((v[2] for v in best.values()), key=lambda d: d.cath_id)


def _float(value: str, source: str, line: int) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if math.isnan(number):
        raise DatasetError(f"{source}:{line}: resolution {value!r} is not a number")
    return number


def _domain_id(name: str) -> str:
    base = os.path.basename(name)
    for suffix in _STRUCTURE_SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _directory_jobs(root: Path, wanted: set[str], atoms: str) -> tuple[list, int]:
    files: dict[str, str] = {}
    for entry in os.scandir(root):
        if entry.is_file() and _domain_id(entry.name) in wanted:
            files.setdefault(_domain_id(entry.name), entry.path)
    return [(i, files[i], None, atoms) for i in sorted(files)], len(files)


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


def _tar_jobs(path: Path, wanted: set[str], atoms: str, seen: set[str]) -> Iterator[tuple]:
    def new(base: str) -> bool:
        return base != "labels.csv" and _domain_id(base) in wanted and _domain_id(base) not in seen

    for base, name, data in _tar_files(path, new):
        seen.add(_domain_id(base))
        yield _domain_id(base), name, data, atoms


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


def structure_jobs(pdb: Path, wanted: set[str], atoms: str, seen: set[str]) -> tuple[Iterable[tuple], int]:
    """Extraction jobs ``(cath_id, file or member name, bytes | None | reason, atoms)`` for
    the ``wanted`` domains in ``pdb``, and how many to expect; ids found go into ``seen``
    (as the archive streams by)."""
    if _is_tar(pdb):
        return _tar_jobs(pdb, wanted, atoms, seen), len(wanted)
    if pdb.is_dir():
        jobs, total = _directory_jobs(pdb, wanted, atoms)
        seen.update(j[0] for j in jobs)
        return jobs, total
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
