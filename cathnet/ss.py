"""Secondary structure from Cα positions alone (P-SEA distance criteria).

Labesse, Colloc'h, Pothier & Mornon (1997), *CABIOS* 13:291: a residue window is helical
or extended when its Cα(i)–Cα(i+k) distances, k = 2, 3, 4, match those of an ideal α-helix
or β-strand. Rotation invariant, needs no hydrogens or backbone carbonyls, and agrees
with DSSP on about 80-85 % of residues — enough to type Cα densities by secondary
structure (channels helix / strand / coil) as network input.
"""
from __future__ import annotations

import numpy as np

__all__ = ["HELIX", "STRAND", "COIL", "assign_ca", "chain_segments"]

HELIX, STRAND, COIL = 0, 1, 2
#: ideal distance and tolerance (Å) for k = 2, 3, 4
_HELIX = ((5.5, 0.5), (5.3, 0.5), (6.4, 0.6))
_STRAND = ((6.7, 0.6), (9.9, 0.9), (12.4, 1.1))
_MAX_CA_CA = 4.2  # consecutive Cα further apart than this are a chain break


def chain_segments(ca: np.ndarray, same_chain: np.ndarray | None = None) -> np.ndarray:
    """Segment id per residue: a new segment starts at every chain break (Cα–Cα > 4.2 Å or a
    change of chain)."""
    ca = np.asarray(ca, dtype=np.float64)
    if len(ca) == 0:
        return np.zeros(0, dtype=np.int64)
    gap = np.linalg.norm(np.diff(ca, axis=0), axis=1) > _MAX_CA_CA
    if same_chain is not None:
        gap |= ~np.asarray(same_chain, dtype=bool)
    return np.concatenate([[0], np.cumsum(gap)])


def _windows(ca: np.ndarray, seg: np.ndarray, ideal) -> np.ndarray:
    """Whether each 5-residue window starting at i (within one segment) fits ``ideal``."""
    n = len(ca)
    ok = np.zeros(n, dtype=bool)
    if n < 5:
        return ok
    ok[: n - 4] = seg[: n - 4] == seg[4:]
    for k, (d0, tol) in zip((2, 3, 4), ideal):
        d = np.linalg.norm(ca[k:] - ca[:-k], axis=1)
        ok[: n - k] &= np.abs(d - d0) <= tol
        ok[n - k :] = False
    return ok


def _spread(start: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros(len(start), dtype=bool)
    for s in range(width):
        out[s:] |= start[: len(start) - s]
    return out


def _min_runs(mask: np.ndarray, length: int) -> np.ndarray:
    """Drop runs of True shorter than ``length``."""
    out = mask.copy()
    i = 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            if j - i < length:
                out[i:j] = False
            i = j
        else:
            i += 1
    return out


def assign_ca(ca: np.ndarray, same_chain: np.ndarray | None = None) -> np.ndarray:
    """Per-residue class (``HELIX``, ``STRAND``, ``COIL``) from consecutive Cα coordinates
    (N, 3) in chain order. ``same_chain[i]`` (N-1) says whether residues i and i+1 are in
    the same chain (default: all). Helices need 5 residues, strands 3."""
    ca = np.asarray(ca, dtype=np.float64)
    seg = chain_segments(ca, same_chain)
    helix = _min_runs(_spread(_windows(ca, seg, _HELIX), 5), 5)
    strand = _min_runs(_spread(_windows(ca, seg, _STRAND), 5) & ~helix, 3)
    out = np.full(len(ca), COIL, dtype=np.int64)
    out[strand] = STRAND
    out[helix] = HELIX
    return out
