"""Residue environments for amino-acid propensity (Boomsma & Frellsen 2017; Weiler et al. 2018, §4.2).

The environment of a residue is every heavy atom within ``radius`` (default 12 Å) of its
Cα, minus the residue's own side chain (its backbone N, CA, C, O stays), one channel per
element C, N, O, S (Se counts as S; other elements are dropped), in Å relative to the Cα.
Two variants:

* unoriented: coordinates in the structure's own axes — a rotation-equivariant model must
  cope with any orientation, which is what steerable networks are for;
* oriented: coordinates in the residue's backbone frame (:func:`backbone_frame`), as in the
  original work, so that a plain CNN sees every environment in a canonical pose.

With ``backbone_channels`` the residue's own backbone gets channels of its own: its N, C
and O, and a virtual Cβ placed from N, Cα and C by ideal geometry (:func:`virtual_cb`;
for every residue, glycine included, so it reveals nothing of the residue type). The
environment then shows where the side chain points and which way the chain runs without
fixing any axes: the invariant that lets a rotation-invariant network use what the
oriented variant gives a CNN. Its own Cα, always at the centre, is left out.

:func:`residue_atoms` turns a structure into flat arrays once; :func:`environment` cuts
one residue's environment out of them. Training (:mod:`cathnet.tasks`) and prediction use
the same two functions, so both see identical environments.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cathnet.structure import Structure

__all__ = [
    "AMINO_ACIDS", "ONE_LETTER", "ENV_CHANNELS", "BACKBONE_CHANNELS", "ENVIRONMENT", "RADIUS", "Environment",
    "ResidueAtoms",
    "backbone_frame", "channel_names", "environment", "pad_environments", "residue_atoms", "residue_environments",
    "virtual_cb",
]

#: the 20 standard amino acids, in the order of their one-letter codes
AMINO_ACIDS = (
    "ALA", "CYS", "ASP", "GLU", "PHE", "GLY", "HIS", "ILE", "LYS", "LEU",
    "MET", "ASN", "PRO", "GLN", "ARG", "SER", "THR", "VAL", "TRP", "TYR",
)
ONE_LETTER = "ACDEFGHIKLMNPQRSTVWY"
ENV_CHANNELS = ("C", "N", "O", "S")
BACKBONE_CHANNELS = ("own N", "own C", "own O", "virtual CB")
BACKBONE = ("N", "CA", "C", "O")
RADIUS = 12.0
ENVIRONMENT = "environment"  # the atoms of environment datasets and models (beside the selections)
_ELEMENT_CHANNEL = {"C": 0, "N": 1, "O": 2, "S": 3, "SE": 3}  # selenomethionine's Se as S


@dataclass(frozen=True)
class ResidueAtoms:
    """The environment atoms (C, N, O, S) of a structure and a table of its residues.

    Atom arrays have M rows, residue arrays R rows (every residue of the structure, in
    order); ``ca``, ``n``, ``c`` index atom rows, -1 where the atom is missing.
    """

    coords: np.ndarray    # (M, 3) float32, Å
    channels: np.ndarray  # (M,) uint8, index into ENV_CHANNELS
    residue: np.ndarray   # (M,) int32, residue row of each atom
    backbone: np.ndarray  # (M,) bool, N, CA, C or O
    ca: np.ndarray        # (R,) int64
    n: np.ndarray         # (R,) int64
    c: np.ndarray         # (R,) int64
    o: np.ndarray         # (R,) int64
    labels: np.ndarray    # (R,) int8, index into AMINO_ACIDS, -1 for a non-standard residue
    chain: np.ndarray     # (R,) str
    resnum: np.ndarray    # (R,) int32
    icode: np.ndarray     # (R,) str
    native: np.ndarray    # (R,) str, residue name as in the file

    def usable(self, needs_frame: bool = False) -> np.ndarray:
        """Residues that have an environment: a Cα (and N and C when ``needs_frame``:
        oriented environments or backbone channels)."""
        ok = self.ca >= 0
        return ok & (self.n >= 0) & (self.c >= 0) if needs_frame else ok


def residue_atoms(structure: Structure) -> ResidueAtoms:
    """Flatten ``structure`` into environment atoms and a residue table."""
    residue_all = structure.residue_index
    n_res = int(residue_all.max()) + 1 if len(residue_all) else 0
    channel = np.array([_ELEMENT_CHANNEL.get(e, -1) for e in structure.element], dtype=np.int16)
    keep = np.flatnonzero(channel >= 0)
    names = structure.atom_name[keep]
    residue = residue_all[keep].astype(np.int32)

    def first(atom: str) -> np.ndarray:
        rows = np.full(n_res, -1, np.int64)
        hit = np.flatnonzero(names == atom)
        res, at = np.unique(residue[hit], return_index=True)  # first occurrence per residue
        rows[res] = hit[at]
        return rows

    first_atom = np.searchsorted(residue_all, np.arange(n_res))
    res_name = structure.res_name[first_atom]
    lookup = {name: i for i, name in enumerate(AMINO_ACIDS)}
    return ResidueAtoms(
        coords=structure.coords[keep].astype(np.float32), channels=channel[keep].astype(np.uint8),
        residue=residue, backbone=np.isin(names, BACKBONE), ca=first("CA"), n=first("N"), c=first("C"), o=first("O"),
        labels=np.array([lookup.get(r, -1) for r in res_name], dtype=np.int8),
        chain=structure.chain[first_atom], resnum=structure.res_num[first_atom].astype(np.int32),
        icode=structure.icode[first_atom], native=res_name,
    )


def backbone_frame(n: np.ndarray, ca: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Rotation whose rows are the residue's axes: x along Cα→N, z normal to the N-Cα-C
    plane (x × Cα→C), y = z × x. ``frame @ (p - ca)`` gives local coordinates."""
    x = n - ca
    x = x / np.linalg.norm(x)
    z = np.cross(x, c - ca)
    z = z / np.linalg.norm(z)
    return np.stack([x, np.cross(z, x), z])


def virtual_cb(n: np.ndarray, ca: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Ideal Cβ position from the backbone N, Cα, C (the usual tetrahedral construction)."""
    b, cc = ca - n, c - ca
    return -0.58273431 * np.cross(b, cc) + 0.56802827 * b - 0.54067466 * cc + ca


def channel_names(backbone_channels: bool = False) -> tuple[str, ...]:
    """Input channels of an environment grid."""
    return ENV_CHANNELS + BACKBONE_CHANNELS if backbone_channels else ENV_CHANNELS


def environment(
    coords: np.ndarray, channels: np.ndarray, residue: np.ndarray, backbone: np.ndarray,
    r: int | np.integer, ca: int, n: int = -1, c: int = -1, o: int = -1, *, radius: float = RADIUS,
    oriented: bool = False, backbone_channels: bool = False, candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (K, 3) float32 relative to the Cα (rotated into the backbone frame when
    ``oriented``) and channels (K,) of residue ``r``'s environment, given the atom arrays of
    its structure and the rows of its CA (and N, C, O) atoms. ``candidates``: sorted atom
    rows that include every atom within ``radius`` (e.g. from a k-d tree), to skip the
    others; the result is the same."""
    centre = coords[ca].astype(np.float64)
    rows = slice(None) if candidates is None else candidates
    rel = coords[rows].astype(np.float64) - centre
    other = residue[rows] != r
    keep = (np.einsum("ij,ij->i", rel, rel) <= radius * radius) & (other | (backbone[rows] & (not backbone_channels)))
    rel, ch = rel[keep], channels[rows][keep]
    if oriented or backbone_channels:
        N, C = coords[n].astype(np.float64), coords[c].astype(np.float64)
    if backbone_channels:
        own = [N, C] + ([coords[o].astype(np.float64)] if o >= 0 else []) + [virtual_cb(N, centre, C)]
        rel = np.concatenate([rel, np.stack(own) - centre])
        ch = np.concatenate([ch, np.array([4, 5] + ([6] if o >= 0 else []) + [7], dtype=ch.dtype)])
    if oriented:
        rel = rel @ backbone_frame(N, centre, C).T
    return rel.astype(np.float32), ch


def pad_environments(envs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack environments into padded (B, A, 3) coordinates, (B, A) channels and mask."""
    width = max([1] + [len(xyz) for xyz, _ in envs])
    coords = np.zeros((len(envs), width, 3), np.float32)
    channels = np.zeros((len(envs), width), np.int64)
    mask = np.zeros((len(envs), width), bool)
    for b, (xyz, ch) in enumerate(envs):
        coords[b, : len(xyz)], channels[b, : len(xyz)], mask[b, : len(xyz)] = xyz, ch, True
    return coords, channels, mask


@dataclass(frozen=True)
class Environment:
    """The atoms around one residue."""

    chain: str
    resnum: int
    icode: str
    native: str  # residue name as in the file
    label: int  # index in AMINO_ACIDS, -1 for a non-standard residue
    coords: np.ndarray  # (M, 3) float32, Å, relative to the Cα (in the backbone frame if oriented)
    channels: np.ndarray  # (M,) int64 index into ENV_CHANNELS


def residue_environments(
    structure: Structure, *, radius: float = RADIUS, oriented: bool = False, backbone_channels: bool = False,
) -> list[Environment]:
    """One :class:`Environment` per residue with a Cα (with ``oriented`` or
    ``backbone_channels`` also N and C)."""
    a = residue_atoms(structure)
    out = []
    for r in np.flatnonzero(a.usable(oriented or backbone_channels)):
        xyz, ch = environment(a.coords, a.channels, a.residue, a.backbone, r, a.ca[r], a.n[r], a.c[r], a.o[r],
                              radius=radius, oriented=oriented, backbone_channels=backbone_channels)
        out.append(Environment(
            chain=str(a.chain[r]), resnum=int(a.resnum[r]), icode=str(a.icode[r]), native=str(a.native[r]),
            label=int(a.labels[r]), coords=xyz, channels=ch.astype(np.int64),
        ))
    return out
