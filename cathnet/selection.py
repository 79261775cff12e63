"""Atom selections: which atoms of a :class:`~cathnet.structure.Structure` a grid holds, and
in which channels (the names of each selection's channels: :data:`CHANNELS`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cathnet.ss import assign_ca

if TYPE_CHECKING:
    from cathnet.structure import Structure

__all__ = ["CHANNELS", "ELEMENT_CHANNELS", "SELECTIONS", "SS_CHANNELS", "select_atoms", "selection_mask"]

SELECTIONS = ("ca", "ca-ss", "backbone", "heavy")
SS_CHANNELS = ("helix", "strand", "coil")
ELEMENT_CHANNELS = ("C", "N", "O", "S", "other")
#: selection -> names of its channels, in channel order
CHANNELS: dict[str, tuple[str, ...]] = {
    "ca": ("CA",), "ca-ss": SS_CHANNELS, "backbone": ("backbone",), "heavy": ELEMENT_CHANNELS,
}
HYDROGENS = ("H", "D")


def selection_mask(structure: Structure, selection: str) -> np.ndarray:
    """(N,) bool: the atoms of ``selection`` ("ca", "backbone" or "heavy"); never hydrogens."""
    if selection in ("ca", "ca-ss"):
        return (structure.atom_name == "CA") & (structure.element == "C")
    if selection == "backbone":  # the element must fit the name: keeps a calcium named CA out
        name, element = structure.atom_name, structure.element
        return ((name == "N") & (element == "N")) | (((name == "CA") | (name == "C")) & (element == "C")) \
            | ((name == "O") & (element == "O"))
    if selection == "heavy":
        return ~np.isin(structure.element, HYDROGENS)
    raise ValueError(f"unknown selection {selection!r}; expected one of {', '.join(SELECTIONS)}")


def select_atoms(structure: Structure, selection: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(coords (M, 3) float32, channel (M,) int64, n_channels) of ``selection``.

    "ca" and "backbone" have one channel; "ca-ss" types every Cα by its secondary
    structure (:data:`SS_CHANNELS`, assigned from Cα geometry by :func:`cathnet.ss.assign_ca`);
    "heavy" has :data:`ELEMENT_CHANNELS` (C, N, O, S, other), selenium counted as S
    (selenomethionine stands in for methionine).
    """
    mask = selection_mask(structure, selection)
    coords = structure.coords[mask]
    if selection == "ca-ss":
        chain = structure.chain[mask]
        return coords, assign_ca(coords, chain[1:] == chain[:-1]), len(SS_CHANNELS)
    if selection != "heavy":
        return coords, np.zeros(len(coords), np.int64), 1
    element = structure.element[mask]
    channel = np.full(len(coords), ELEMENT_CHANNELS.index("other"), np.int64)
    for c, symbols in enumerate((("C",), ("N",), ("O",), ("S", "SE"))):
        channel[np.isin(element, symbols)] = c
    return coords, channel, len(ELEMENT_CHANNELS)
