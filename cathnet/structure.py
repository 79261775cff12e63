"""Protein structures as flat per-atom arrays, read with gemmi.

Formats: PDB (``.pdb``, ``.ent``), mmCIF (``.cif``, ``.mmcif``) and PQR (``.pqr``), each
optionally gzipped. Compression and mmCIF are recognised from the content (gzip magic,
``data_``), PQR from the extension: its whitespace-separated records are rewritten into
PDB columns before gemmi parses them.

What is kept (one row per atom, file order):

* one model: the ``model``-th in the file (1 = first);
* protein residues: residues of a polymer entity that are amino acids (MSE and other
  modified residues written as HETATM inside a chain are protein). Ligands, ions and
  nucleic acids only with ``keep_hetero``, waters only with ``keep_water``;
* one conformer per atom: of an atom's alternate locations the highest occupancy wins
  (the first on ties), so a residue present only as altloc B or C is kept. Where the
  residue name itself alternates (microheterogeneity) the residue with the highest
  occupancy wins;
* insertion codes, hydrogens (:func:`select_atoms` drops them).

Elements: the element column (PDB 77-78, mmCIF ``type_symbol``) when the file has one.
Without it (CATH domain files, PQR) gemmi infers from the atom-name columns (``'CA  '`` is
calcium, ``' CA '`` carbon), which fails on left-justified names; so amino-acid and
nucleotide atoms take the element from the name (leading digits dropped, ``SE`` is
selenium, otherwise the first letter), and a single-atom residue named after an element
(``CA``, ``NA``, ``ZN``) is that ion.
"""
from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple, Sequence

import gemmi
import numpy as np

from cathnet.ss import assign_ca

__all__ = [
    "ELEMENT_CHANNELS", "SELECTIONS", "SS_CHANNELS", "ResidueRange", "Structure", "StructureError",
    "parse_residue_ranges", "read_structure", "select_atoms", "selection_mask",
]

SELECTIONS = ("ca", "ca-ss", "backbone", "heavy")
SS_CHANNELS = ("helix", "strand", "coil")
ELEMENT_CHANNELS = ("C", "N", "O", "S", "other")
HYDROGENS = ("H", "D")


class StructureError(Exception):
    """A structure file that cannot be used; ``str()`` is one line: ``path: reason``."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(frozen=True, eq=False)
class Structure:
    """Atoms of one model, one row per atom."""

    coords: np.ndarray     # (N, 3) float32, Å
    element: np.ndarray    # (N,) str, upper case: "C", "N", "O", "S", "SE", "H", ...
    atom_name: np.ndarray  # (N,) str, "CA"
    res_name: np.ndarray   # (N,) str, "ALA"
    res_num: np.ndarray    # (N,) int32, author numbering
    icode: np.ndarray      # (N,) str, insertion code, "" when none
    chain: np.ndarray      # (N,) str, author chain name
    path: str

    def __len__(self) -> int:
        return len(self.coords)

    @cached_property
    def residue_index(self) -> np.ndarray:
        """(N,) int64: 0..R-1, a new residue wherever (chain, res_num, icode) changes."""
        if len(self) == 0:
            return np.zeros(0, np.int64)
        new = (self.chain[1:] != self.chain[:-1]) | (self.res_num[1:] != self.res_num[:-1]) \
            | (self.icode[1:] != self.icode[:-1])
        return np.concatenate([[0], np.cumsum(new)])

    def chains(self) -> list[str]:
        """Chain names in order of appearance."""
        return list(dict.fromkeys(self.chain.tolist()))

    def subset(self, mask) -> Structure:
        """The atoms selected by a boolean mask or an index array."""
        return Structure(self.coords[mask], self.element[mask], self.atom_name[mask], self.res_name[mask],
                         self.res_num[mask], self.icode[mask], self.chain[mask], self.path)


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


def read_structure(
    path,
    *,
    model: int = 1,
    chains: Sequence[str] | None = None,
    residues: str | None = None,
    keep_hetero: bool = False,
    keep_water: bool = False,
    data: bytes | None = None,
) -> Structure:
    """Read one model of a PDB/mmCIF/PQR file (optionally gzipped) as a :class:`Structure`.

    ``chains`` keeps those author chains (all must exist); ``residues`` keeps residue
    ranges (see :func:`parse_residue_ranges`); ``data`` reads these bytes instead of the
    file, ``path`` then only names the source. Every unusable input raises
    :class:`StructureError`; a malformed ``residues`` string raises ValueError.
    """
    ranges = None if residues is None else parse_residue_ranges(residues)
    st, has_elements = _parse(path, _read_bytes(path) if data is None else data)
    if model < 1 or model > len(st):
        raise StructureError(path, f"model {model} not found: the file has {len(st)} model(s)")
    del st[model:]
    del st[: model - 1]
    if chains:
        present = [ch.name for ch in st[0]]
        missing = [c for c in chains if c not in present]
        if missing:
            raise StructureError(path, f"chain {', '.join(missing)} not found (chains: {', '.join(dict.fromkeys(present))})")
    keep = set(chains) if chains else None
    return _extract(path, st, keep, ranges, keep_hetero, keep_water, has_elements)


# ---------------------------------------------------------------------------- reading


def _read_bytes(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise StructureError(path, "no such file") from None
    except IsADirectoryError:
        raise StructureError(path, "is a directory") from None
    except PermissionError:
        raise StructureError(path, "permission denied") from None
    except OSError as exc:
        raise StructureError(path, exc.strerror or str(exc)) from None


_TEXT = bytes(range(32, 127)) + bytes(range(128, 256)) + b"\t\n\r\f\v"  # any byte but controls
_CIF_START = re.compile(rb"\s*(?:#[^\n]*\n\s*)*data_", re.I)
_FIRST_ATOM = re.compile(rb"^(?:ATOM  |HETATM)[^\n]*", re.M)


def _parse(path, data: bytes) -> tuple[gemmi.Structure, bool]:
    """gemmi Structure of the raw bytes, and whether the file states elements."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise StructureError(path, "corrupt or truncated gzip data") from None
    if not data.strip():
        raise StructureError(path, "empty file")
    head = data[:8192]
    if b"\0" in head or len(head.translate(None, _TEXT)) > 0.05 * len(head):
        raise StructureError(path, "binary data, not a PDB, mmCIF or PQR text file")
    name = str(path).lower().removesuffix(".gz")
    try:
        if _CIF_START.match(data):
            block = gemmi.cif.read_string(data)[0]
            st = gemmi.make_structure_from_block(block)
            has_elements = len(block.find_values("_atom_site.type_symbol")) > 0
        else:
            pqr = name.endswith(".pqr")
            if pqr:
                data = _pqr_as_pdb(path, data)
            st = gemmi.read_pdb_string(data)
            st.merge_chain_parts()
            first = _FIRST_ATOM.search(data)
            has_elements = not pqr and first is not None and first.group()[76:78].strip() != b""
    except (RuntimeError, ValueError, IndexError) as exc:
        raise StructureError(path, f"cannot parse: {str(exc).splitlines()[0].rstrip(':') or type(exc).__name__}") from None
    if len(st) == 0 or all(m.count_atom_sites() == 0 for m in st):
        raise StructureError(path, "no atom records")
    st.setup_entities()
    return st, has_elements


def _pqr_as_pdb(path, data: bytes) -> bytes:
    """Whitespace-separated PQR records (serial name resname [chain] resnum[icode] x y z q r)
    rewritten in PDB columns."""
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        if line.startswith((b"ATOM", b"HETATM")):
            f = line.split()
            if len(f) not in (10, 11):
                raise StructureError(path, f"cannot parse: PQR line {n} has {len(f)} fields, expected 10 or 11")
            chain = f[4] if len(f) == 11 else b" "
            m = re.fullmatch(rb"(-?\d+)([A-Za-z]?)", f[-6])
            try:
                x, y, z = (float(v) for v in f[-5:-2])
                if m is None or len(f[2]) > 4 or len(chain) > 2:
                    raise ValueError
            except ValueError:
                raise StructureError(path, f"cannot parse: PQR line {n} is malformed") from None
            name = f[2] if len(f[2]) == 4 else b" " + f[2]
            out.append(b"%-6s%5s %-4s %3s%2s%4s%1s   %8.3f%8.3f%8.3f  1.00  0.00"
                       % (f[0][:6], f[1][-5:], name, f[3][:3], chain, m[1], m[2] or b" ", x, y, z))
        elif line.startswith((b"MODEL", b"ENDMDL", b"TER", b"END")):
            out.append(line)
    return b"\n".join(out) + b"\n"


# ---------------------------------------------------------------------------- extraction


@lru_cache(maxsize=None)
def _residue_kind(name: str) -> tuple[bool, bool]:
    """(amino acid, amino acid or nucleotide) according to gemmi's residue table."""
    info = gemmi.find_tabulated_residue(name)
    if info is None:
        return False, False
    return info.is_amino_acid(), info.is_amino_acid() or info.is_nucleic_acid()


@lru_cache(maxsize=None)
def _element_from_name(name: str) -> str:
    """Element of a polymer atom from its name ('CA' carbon, 'SE' selenium, '1HG2'
    hydrogen); "" when the name does not tell."""
    s = name.lstrip("0123456789")
    if s.startswith("SE"):
        return "SE"
    return s[0] if s[:1] in ("C", "N", "O", "S", "H", "P", "D") else ""


@lru_cache(maxsize=None)
def _ion_element(res_name: str) -> str:
    el = gemmi.Element(res_name)
    return el.name.upper() if el.atomic_number > 0 else ""


_SYMBOLS = np.array([gemmi.Element(z).name.upper() if z else "X" for z in range(256)])  # by atomic number
_POLYMER, _WATER = int(gemmi.EntityType.Polymer.value), int(gemmi.EntityType.Water.value)
_PEPTIDE = (gemmi.PolymerType.PeptideL, gemmi.PolymerType.PeptideD)


def _strings(chars) -> np.ndarray:
    """gemmi's (N, 8) int8 character arrays as a numpy str array."""
    a = np.ascontiguousarray(chars)
    return a.view(f"S{a.shape[1]}")[:, 0].astype(str)


def _runs(*keys: np.ndarray) -> np.ndarray:
    """Ids 0, 1, ... that increase wherever any of the per-atom ``keys`` changes."""
    change = np.zeros(len(keys[0]), bool)
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.cumsum(change)


def _by_name(values: np.ndarray, fn) -> np.ndarray:
    """``fn`` applied to each distinct value of a str array (computed once per value)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    return np.array([fn(v) for v in distinct.tolist()])[inverse]


def _extract(path, st, keep_chains, ranges, keep_hetero, keep_water, has_elements) -> Structure:
    """The atoms of the first model of ``st`` (via gemmi.FlatStructure) as a Structure."""
    flat = gemmi.FlatStructure(st)
    if len(flat.resnums) == 0:
        raise StructureError(path, "no atoms in the selected model")
    chain, res_name, name = _strings(flat.chain_ids), _strings(flat.residue_names), _strings(flat.atom_names)
    res_num = np.asarray(flat.resnums, dtype=np.int32)
    icode = np.char.strip(np.asarray(flat.icodes).view("S1").astype(str))
    entity = np.asarray(flat.entity_type)
    residue = _runs(chain, res_num, icode, res_name)

    amino, polymer_like = _by_name(res_name, _residue_kind).reshape(-1, 2).T
    peptide = {s for e in st.entities if e.polymer_type in _PEPTIDE for s in e.subchains}
    if peptide:  # residues of peptide entities count as amino acids whatever their name
        amino |= np.isin(_strings(flat.subchains), list(peptide))
    protein = (entity == _POLYMER) & amino
    odd = (entity == _POLYMER) & ~amino
    if odd.any():  # a polymer residue unknown to gemmi (e.g. CHARMM's HSD) with a peptide backbone
        backbone = np.zeros((residue[-1] + 1, 3), bool)
        for j, n in enumerate(("N", "CA", "C")):
            backbone[residue[name == n], j] = True
        protein |= odd & backbone.all(axis=1)[residue]
    water = entity == _WATER
    keep = protein | (water & keep_water) | (~protein & ~water & keep_hetero)
    if keep_chains is not None:
        keep &= np.isin(chain, list(keep_chains))
    if ranges is not None:
        keep &= _in_ranges(chain, res_num, icode, ranges)
    if not (keep & protein).any():
        raise StructureError(path, "no protein atoms" + (" in the selected chains/residues" if keep_chains or ranges else ""))

    element = _SYMBOLS[np.asarray(flat.elements)]
    guess = polymer_like & ((element == "X") | (not has_elements))
    if guess.any():
        named = _by_name(name[guess], _element_from_name)
        element[guess] = np.where(named != "", named, element[guess])
    if not has_elements:  # a lone atom named after its residue is an ion: CA in CA is calcium
        ion = (np.bincount(residue)[residue] == 1) & (name == res_name) & ~polymer_like
        if ion.any():
            named = _by_name(name[ion], _ion_element)
            element[ion] = np.where(named != "", named, element[ion])

    alt = np.asarray(flat.altlocs)
    if (alt[keep] != 0).any():
        keep[keep] = _one_conformer(residue[keep], _runs(chain, res_num, icode)[keep], name[keep],
                                    alt[keep] != 0, np.asarray(flat.occ)[keep])
    return Structure(
        coords=np.asarray(flat.pos)[keep].astype(np.float32), element=element[keep], atom_name=name[keep],
        res_name=res_name[keep], res_num=res_num[keep], icode=icode[keep], chain=chain[keep], path=str(path),
    )


def _in_ranges(chain, res_num, icode, ranges) -> np.ndarray:
    inside = np.zeros(len(chain), bool)
    for r in ranges:
        after = (res_num > r.start[0]) | ((res_num == r.start[0]) & (icode >= r.start[1]))
        before = (res_num < r.end[0]) | ((res_num == r.end[0]) & (icode <= r.end[1]))
        inside |= after & before & ((chain == r.chain) if r.chain is not None else True)
    return inside


def _one_conformer(residue, site, name, has_alt, occ) -> np.ndarray:
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


# ---------------------------------------------------------------------------- selections


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
