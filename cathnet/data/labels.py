"""CATH labels: a pool ``labels.csv`` or a CATH domain list (CLF), parsed into
:class:`Domain` records; a bad row is a :class:`~cathnet.errors.DatasetError` naming its
line. :data:`ARCHITECTURES` are the ten classes of the paper."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from cathnet.errors import DatasetError

__all__ = ["ARCHITECTURES", "Domain", "read_labels"]

#: The ten CATH architectures classified in the paper (label order).
ARCHITECTURES: dict[str, str] = {
    "1.10": "Orthogonal Bundle",
    "1.20": "Up-down Bundle",
    "2.30": "Roll",
    "2.40": "Beta Barrel",
    "2.60": "Sandwich",
    "3.10": "Roll (alpha-beta)",
    "3.20": "Alpha-Beta Barrel",
    "3.30": "2-Layer Sandwich",
    "3.40": "3-Layer (aba) Sandwich",
    "3.90": "Alpha-Beta Complex",
}


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
