"""Residue environments for amino-acid propensity (Boomsma & Frellsen 2017; Weiler et al. 2018, §4.2).

The environment of a residue is every heavy atom within ``radius`` (default 12 Å) of its
Cα, minus the residue's own side chain (its backbone N, CA, C, O stays), one channel per
element C, N, O, S (other elements are dropped), in Å relative to the Cα. Two variants:

* unoriented: coordinates in the structure's own axes — a rotation-equivariant model must
  cope with any orientation, which is what steerable networks are for;
* oriented: coordinates in the residue's backbone frame (:func:`backbone_frame`), as in the
  original work, so that a plain CNN sees every environment in a canonical pose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from cathnet.structure import Structure

__all__ = ["AMINO_ACIDS", "ENV_CHANNELS", "Environment", "backbone_frame", "residue_environments"]

#: the 20 standard amino acids, in the order of their one-letter codes
AMINO_ACIDS = (
    "ALA", "CYS", "ASP", "GLU", "PHE", "GLY", "HIS", "ILE", "LYS", "LEU",
    "MET", "ASN", "PRO", "GLN", "ARG", "SER", "THR", "VAL", "TRP", "TYR",
)
ENV_CHANNELS = ("C", "N", "O", "S")
BACKBONE = ("N", "CA", "C", "O")
_ELEMENT_CHANNEL = {"C": 0, "N": 1, "O": 2, "S": 3, "SE": 3}  # selenomethionine's Se as S


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


def backbone_frame(n: np.ndarray, ca: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Rotation whose rows are the residue's axes: x along Cα→N, z normal to the N-Cα-C
    plane (x × Cα→C), y = z × x. ``frame @ (p - ca)`` gives local coordinates."""
    x = n - ca
    x = x / np.linalg.norm(x)
    z = np.cross(x, c - ca)
    z = z / np.linalg.norm(z)
    return np.stack([x, np.cross(z, x), z])


def residue_environments(structure: Structure, *, radius: float = 12.0, oriented: bool = False) -> list[Environment]:
    """One :class:`Environment` per residue with a Cα (oriented ones also need N and C)."""
    element = structure.element
    channel = np.array([_ELEMENT_CHANNEL.get(e, -1) for e in element], dtype=np.int64)
    usable = channel >= 0
    atoms = np.flatnonzero(usable)
    tree = cKDTree(structure.coords[atoms])
    residue = structure.residue_index
    name = structure.atom_name
    is_backbone = np.isin(name, BACKBONE)
    out = []
    for r in np.unique(residue):
        own = np.flatnonzero(residue == r)
        named = {name[i]: i for i in own}
        if "CA" not in named or (oriented and not ("N" in named and "C" in named)):
            continue
        ca = structure.coords[named["CA"]].astype(np.float64)
        near = atoms[tree.query_ball_point(ca, radius)]
        near = near[(residue[near] != r) | is_backbone[near]]  # drop the own side chain only
        near.sort()
        rel = structure.coords[near].astype(np.float64) - ca
        if oriented:
            frame = backbone_frame(structure.coords[named["N"]].astype(np.float64), ca, structure.coords[named["C"]].astype(np.float64))
            rel = rel @ frame.T
        i = own[0]
        res_name = structure.res_name[i]
        out.append(Environment(
            chain=str(structure.chain[i]), resnum=int(structure.res_num[i]), icode=str(structure.icode[i]),
            native=str(res_name), label=AMINO_ACIDS.index(res_name) if res_name in AMINO_ACIDS else -1,
            coords=rel.astype(np.float32), channels=channel[near],
        ))
    return out
