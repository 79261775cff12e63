"""Per-atom numpy masks behind :func:`cathnet.structure.read_structure`: residue runs,
residue ranges (and their ``[CHAIN:]START[-END]`` syntax), the choice of one conformer,
duplicated atoms. Pure functions of per-atom arrays (file order)."""
from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

__all__ = ["ResidueRange", "in_ranges", "later_duplicates", "one_conformer", "parse_residue_ranges", "runs"]


class ResidueRange(NamedTuple):
    """Residues ``start``..``end`` (inclusive; (number, insertion code) order) of ``chain``,
    or of every chain when ``chain`` is None."""

    chain: str | None
    start: tuple[int, str]
    end: tuple[int, str]


_RANGE = re.compile(r"(?:([^:\s]+):)?(-?\d+)([A-Za-z]?)(?:-(-?\d+)([A-Za-z]?))?")


def parse_residue_ranges(spec: str) -> list[ResidueRange]:
    """Parse ``[CHAIN:]START[-END][,...]``, e.g. ``"10-50"``, ``"A:52A-60,B:-3-20"``, ``"7"``.

    Raises ValueError on bad syntax or a range whose end precedes its start.
    """
    ranges = []
    for part in spec.split(","):
        m = _RANGE.fullmatch(part.strip())
        if m is None:
            raise ValueError(f"bad residue range {part.strip()!r}: expected [CHAIN:]START[-END], e.g. A:10-50")
        chain, num, icode, end_num, end_icode = m.groups()
        start = (int(num), icode)
        end = start if end_num is None else (int(end_num), end_icode)
        if end < start:
            raise ValueError(f"bad residue range {part.strip()!r}: end before start")
        ranges.append(ResidueRange(chain, start, end))
    return ranges


def runs(*keys: np.ndarray) -> np.ndarray:
    """Ids 0, 1, ... that increase wherever any of the per-atom ``keys`` changes."""
    change = np.zeros(len(keys[0]), bool)
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.cumsum(change)


def later_duplicates(mask: np.ndarray, positions: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """(N,) bool: the atoms of ``mask`` whose position (to 0.001 Å) and ``keys`` equal
    those of an earlier atom of ``mask``."""
    rows = np.flatnonzero(mask)
    grid = np.ascontiguousarray(np.round(positions[rows] * 1000).astype(np.int64))
    if len(np.unique(grid.view(f"V{grid.itemsize * 3}"))) == len(rows):  # no shared position: the usual case
        return np.zeros(len(mask), bool)
    keys = (*grid.T, *(k[rows] for k in keys))
    _, first = np.unique(np.rec.fromarrays(keys), return_index=True)
    out = np.zeros(len(mask), bool)
    out[rows] = True
    out[rows[first]] = False
    return out


def in_ranges(chain, res_num, icode, ranges: list[ResidueRange]) -> np.ndarray:
    """(N,) bool: the atoms inside any of ``ranges``."""
    inside = np.zeros(len(chain), bool)
    for r in ranges:
        after = (res_num > r.start[0]) | ((res_num == r.start[0]) & (icode >= r.start[1]))
        before = (res_num < r.end[0]) | ((res_num == r.end[0]) & (icode <= r.end[1]))
        inside |= after & before & ((chain == r.chain) if r.chain is not None else True)
    return inside


def one_conformer(residue, site, name, has_alt, occ) -> np.ndarray:
    """Mask keeping, per residue position (site), the residue with the highest altloc
    occupancy and, per atom name, the alternate location with the highest occupancy
    (the first on ties)."""
    keep = np.ones(len(name), bool)
    for s in np.unique(site[has_alt]):
        candidates = np.unique(residue[site == s])
        if len(candidates) > 1:
            score = [occ[(residue == c) & has_alt].max(initial=0.0) for c in candidates]
            keep &= ~np.isin(residue, np.delete(candidates, int(np.argmax(score))))
    disordered = np.flatnonzero(keep & np.isin(residue, residue[has_alt]))
    best: dict[tuple[int, str], int] = {}
    for i in disordered.tolist():
        j = best.setdefault((residue[i], name[i]), i)
        if occ[i] > occ[j]:
            best[(residue[i], name[i])] = i
    keep[disordered] = False
    keep[list(best.values())] = True
    return keep
