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
* insertion codes, hydrogens (:func:`cathnet.selection.select_atoms` drops them).

Elements: the element column (PDB 77-78, mmCIF ``type_symbol``) when the file has one.
Without it (CATH domain files, PQR) gemmi infers from the atom-name columns (``'CA  '`` is
calcium, ``' CA '`` carbon), which fails on left-justified names; so amino-acid and
nucleotide atoms take the element from the name (leading digits dropped, ``SE`` is
selenium, otherwise the first letter), and a single-atom residue named after an element
(``CA``, ``NA``, ``ZN``) is that ion.

Bad input (raw text repairs: :mod:`cathnet.structure_text`). Only regular files of at most
:data:`~cathnet.structure_text.MAX_BYTES` are read. Names in Latin-1 or UTF-8 are decoded.
Problems that leave a usable structure are listed in :attr:`Structure.warnings`:

* atoms whose coordinates are not numbers, not finite or beyond ±10⁶ Å are dropped (a
  structure left without protein atoms is refused);
* duplicated protein atoms (same chain, residue number, insertion code, residue name,
  atom name and position to 0.001 Å, after the choice of conformers): the first is kept;
* a possibly truncated file: no END record (mmCIF: the file ends inside the atom_site
  table) and its last residue, an amino acid, lacks one of N, CA, C, O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Sequence

import gemmi
import numpy as np

from cathnet import structure_masks as masks
from cathnet import structure_text as text
from cathnet.errors import CathnetError
from cathnet.fileio import UnreadableFile, read_regular
from cathnet.structure_masks import ResidueRange, parse_residue_ranges

__all__ = [
    "STRUCTURE_SUFFIXES", "ResidueRange", "Structure", "StructureError", "is_structure_file", "parse_residue_ranges",
    "read_structure", "structure_id",
]

#: file name suffixes of structure files, each also gzipped (``.pdb.gz``)
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pqr")
MAX_COORDINATE = 1e6  # Å: beyond this a coordinate is garbage


class StructureError(CathnetError):
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
    warnings: tuple[str, ...] = ()  # problems that did not stop the read, one line each

    def __post_init__(self):
        if not np.isfinite(self.coords).all():
            raise StructureError(self.path, "non-finite coordinates")

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
                         self.res_num[mask], self.icode[mask], self.chain[mask], self.path, self.warnings)


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
    raw = _text(path, _read_bytes(path) if data is None else data)
    options = (model, chains, ranges, keep_hetero, keep_water)
    try:
        return _read(path, raw, *options)
    except UnicodeDecodeError:  # gemmi hands chain names to Python as UTF-8: Latin-1 ones fail
        structure = _read(path, text.ascii_placeholders(raw), *options)
        return replace(structure, warnings=(*structure.warnings, _NOT_UTF8))


_NOT_UTF8 = "chain names with bytes that are not UTF-8: every non-ASCII byte read as '?'"


def _read(path, data: bytes, model, chains, ranges, keep_hetero, keep_water) -> Structure:
    st, has_elements, ends_cleanly = _parse(path, data)
    if model < 1 or model > len(st):
        raise StructureError(path, f"model {model} not found: the file has {len(st)} model(s)")
    check_end = not ends_cleanly and model == len(st)
    del st[model:]
    del st[: model - 1]
    if chains:
        present = [ch.name for ch in st[0]]
        missing = [c for c in chains if c not in present]
        if missing:
            raise StructureError(path, f"chain {', '.join(missing)} not found (chains: {', '.join(dict.fromkeys(present))})")
    keep = set(chains) if chains else None
    return _extract(path, st, keep, ranges, keep_hetero, keep_water, has_elements, check_end)


def _split_name(path) -> tuple[str, str]:
    """(stem, structure suffix in lower case, or "" for none) of a file name, ``.gz`` dropped."""
    name = Path(path).name
    name = name[:-3] if name.lower().endswith(".gz") else name
    stem, dot, suffix = name.rpartition(".")
    suffix = f".{suffix.lower()}"
    return (stem, suffix) if dot and suffix in STRUCTURE_SUFFIXES else (name, "")


def is_structure_file(path) -> bool:
    """Whether the file name ends in a structure suffix (.pdb .ent .cif .mmcif .pqr, optionally .gz)."""
    return _split_name(path)[1] != ""


def structure_id(path) -> str:
    """The file name without its structure suffix and .gz: ``1abc.cif.gz`` → ``1abc``."""
    return _split_name(path)[0]


# ---------------------------------------------------------------------------- reading


def _read_bytes(path) -> bytes:
    try:
        return read_regular(path, text.MAX_BYTES)
    except UnreadableFile as exc:
        raise StructureError(path, exc.reason) from None


_FIRST_ATOM = re.compile(rb"^(?:ATOM  |HETATM)[^\n]*", re.M)


def _text(path, data: bytes) -> bytes:
    try:
        return text.decode_raw(data)
    except ValueError as exc:
        raise StructureError(path, str(exc)) from None


def _parse(path, data: bytes) -> tuple[gemmi.Structure, bool, bool]:
    """gemmi Structure of the text, whether the file states elements, and whether it ends
    the way complete files do (:func:`cathnet.structure_text.ends_cleanly`)."""
    cif = text.is_mmcif(data)
    try:
        if cif:
            block, data = text.with_fallback(lambda d: gemmi.cif.read_string(d)[0], data, text.quote_non_ascii)
            st = gemmi.make_structure_from_block(block)
            has_elements = len(block.find_values("_atom_site.type_symbol")) > 0
        else:
            pqr = _split_name(path)[1] == ".pqr"
            data = text.pqr_as_pdb(data) if pqr else text.mark_bad_coordinates(data)
            st, data = text.with_fallback(gemmi.read_pdb_string, data, text.fix_element_columns)
            st.merge_chain_parts()
            first = _FIRST_ATOM.search(data)
            has_elements = not pqr and first is not None and first.group()[76:78].strip() != b""
    except UnicodeDecodeError:
        raise  # for read_structure's fallback
    except (RuntimeError, ValueError, IndexError) as exc:
        raise StructureError(path, f"cannot parse: {str(exc).splitlines()[0].rstrip(':') or type(exc).__name__}") from None
    if len(st) == 0 or all(m.count_atom_sites() == 0 for m in st):
        raise StructureError(path, "no atom records")
    st.setup_entities()
    return st, has_elements, text.ends_cleanly(data, cif)


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


def _decode(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _strings(chars) -> np.ndarray:
    """gemmi's (N, k) int8 character arrays as a numpy str array (UTF-8, else Latin-1)."""
    a = np.ascontiguousarray(chars)
    raw = a.view(f"S{a.shape[1]}")[:, 0]
    return raw.astype(str) if (a >= 0).all() else _by_name(raw, _decode).astype(str)


def _by_name(values: np.ndarray, fn) -> np.ndarray:
    """``fn`` applied to each distinct value of a str array (computed once per value)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    return np.array([fn(v) for v in distinct.tolist()])[inverse]


def _extract(path, st, keep_chains, ranges, keep_hetero, keep_water, has_elements, check_end) -> Structure:
    """The atoms of the first model of ``st`` (via gemmi.FlatStructure) as a Structure."""
    flat = gemmi.FlatStructure(st)
    if len(flat.resnums) == 0:
        raise StructureError(path, "no atoms in the selected model")
    chain, res_name, name = _strings(flat.chain_ids), _strings(flat.residue_names), _strings(flat.atom_names)
    res_num = np.asarray(flat.resnums, dtype=np.int32)
    icode = np.char.strip(_strings(np.asarray(flat.icodes)[:, None]))
    entity = np.asarray(flat.entity_type)
    residue = masks.runs(chain, res_num, icode, res_name)

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
        keep &= masks.in_ranges(chain, res_num, icode, ranges)
    if not (keep & protein).any():
        raise StructureError(path, "no protein atoms" + (" in the selected chains/residues" if keep_chains or ranges else ""))
    pos = np.asarray(flat.pos)
    unusable = keep & ~(np.abs(pos) <= MAX_COORDINATE).all(axis=1)  # NaN fails the comparison too
    keep &= ~unusable
    if not (keep & protein).any():
        raise StructureError(path, f"no usable protein atoms: {unusable.sum()} atom(s) have non-numeric or non-finite coordinates")

    element = _elements(flat, name, res_name, residue, polymer_like, has_elements)
    alt = np.asarray(flat.altlocs)
    if (alt[keep] != 0).any():
        keep[keep] = masks.one_conformer(residue[keep], masks.runs(chain, res_num, icode)[keep], name[keep],
                                    alt[keep] != 0, np.asarray(flat.occ)[keep])
    duplicate = masks.later_duplicates(keep & protein, pos, chain, res_num, icode, res_name, name)
    keep &= ~duplicate
    warnings = []
    if unusable.any():
        warnings.append(f"{unusable.sum()} atom(s) with non-numeric or non-finite coordinates ignored")
    if duplicate.any():
        warnings.append(f"{duplicate.sum()} duplicated atom(s) (same chain, residue, name and position) ignored; the first of each kept")
    last = residue == residue[-1]
    missing = [n for n in ("N", "CA", "C", "O") if n not in name[last]]
    if check_end and amino[-1] and missing:
        warnings.append(f"the file has no END record and its last residue ({chain[-1]} {res_name[-1]} {res_num[-1]}"
                        f"{icode[-1]}) lacks {', '.join(missing)}: it may be truncated")
    return Structure(
        coords=pos[keep].astype(np.float32), element=element[keep], atom_name=name[keep],
        res_name=res_name[keep], res_num=res_num[keep], icode=icode[keep], chain=chain[keep], path=str(path),
        warnings=tuple(warnings),
    )


def _elements(flat, name, res_name, residue, polymer_like, has_elements) -> np.ndarray:
    """(N,) element symbols: the file's, else guessed from atom names (see the module doc)."""
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
    return element
