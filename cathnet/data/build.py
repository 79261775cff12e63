"""CATH architecture dataset: labels, atom extraction, superfamily-disjoint splits, npz
writing (reading and checking it: :mod:`cathnet.datasets`).

The dataset is one compressed ``.npz`` (no pickled objects) holding every domain's atoms
concatenated, plus a JSON summary next to it. With ``atoms="environment"`` it holds every
heavy C/N/O/S atom and a residue table, the input of the amino-acid task (voxel grids are
never stored: environments are cut out and voxelized batch by batch):

=================  ===========  ======================================================
key                shape/dtype  meaning
=================  ===========  ======================================================
positions          (M, 3) f32   atom coordinates in Å, domains concatenated
channels           (M,) u8      atom channel (see ``meta.atoms``: ca, backbone, heavy)
residue_index      (M,) i32     residue of each atom, 0-based within its domain
offsets, counts    (D+1,), (D,) atoms of domain d: ``offsets[d]:offsets[d+1]``
backbone           (M,) bool    ``environment`` datasets only: N, CA, C or O atom
res_offsets        (D+1,) i64   ``environment`` only: residues of domain d
res_ca/_n/_c/_o    (R,) i32     ``environment`` only: atom row (within the domain) or -1
res_labels         (R,) i8      ``environment`` only: amino acid (``AMINO_ACIDS``) or -1
labels             (D,) i64     index into ``class_codes``
class_codes/names  (K,) str     CATH architectures "C.A" and their names
ids, cath_codes    (D,) str     CATH domain ids and C.A.T.H codes
superfamilies      (D,) str     C.A.T.H (the unit kept whole by the splits)
resolutions        (D,) f32     structure resolution in Å
splits             (D,) i8      split (fold) of each domain, 0..n_splits-1
meta               () str       JSON: format, atoms, n_channels, n_splits, seed, ...
=================  ===========  ======================================================
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from cathnet import sources
from cathnet.environments import residue_atoms
from cathnet.fileio import atomic_save_npz, write_json
from cathnet.sources import DatasetError, Domain, read_labels
from cathnet.structure import StructureError, read_structure, select_atoms, selection_mask

__all__ = [
    "ARCHITECTURES",
    "FORMAT",
    "Domain",
    "DatasetError",
    "BuildResult",
    "ENVIRONMENT",
    "read_labels",
    "assign_splits",
    "build_dataset",
    "sha256",
]

FORMAT = "cathnet-cath/1"
ENVIRONMENT = "environment"  # atoms selection of amino-acid environment datasets

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
def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- splits


def assign_splits(superfamilies: Iterable[str], labels: Iterable, n_splits: int = 10, seed: int = 0) -> np.ndarray:
    """Assign whole superfamilies to ``n_splits`` splits so that every split holds every
    class with close to 1/n_splits of its domains.

    Per class, superfamilies are placed largest first (ties in random order, from
    ``seed``) into the split with the fewest domains of that class (ties: fewest domains
    overall, then random). Raises :class:`DatasetError` if a class has fewer
    superfamilies than splits.
    """
    sfs, labels = np.asarray(list(superfamilies)), np.asarray(list(labels))
    if n_splits < 1:
        raise DatasetError("the number of splits must be at least 1")
    rng = np.random.default_rng(seed)
    out = np.full(len(sfs), -1, dtype=np.int8)
    totals = np.zeros(n_splits, dtype=np.int64)
    for c in np.unique(labels):
        names, inverse, sizes = np.unique(sfs[labels == c], return_inverse=True, return_counts=True)
        if len(names) < n_splits:
            raise DatasetError(f"class {c} has {len(names)} superfamilies, fewer than {n_splits} splits")
        order = rng.permutation(len(names))
        order = order[np.argsort(-sizes[order], kind="stable")]
        counts = np.zeros(n_splits, dtype=np.int64)
        chosen = np.empty(len(names), dtype=np.int8)
        for s in order:
            j = np.lexsort((rng.random(n_splits), totals, counts))[0]
            chosen[s] = j
            counts[j] += sizes[s]
            totals[j] += sizes[s]
        out[labels == c] = chosen[inverse]
    return out


# ---------------------------------------------------------------------------- extraction


@dataclass
class BuildResult:
    """What :func:`build_dataset` wrote and skipped."""

    path: Path
    summary_path: Path
    summary: dict
    errors: list[tuple[str, str]] = field(default_factory=list)


def _extract(job: tuple[str, str, bytes | str | None, str]) -> tuple[str, object, tuple[str, ...]]:
    """Worker: (cath_id, path or archive member, its bytes, None to read the path, or the
    reason it was not read, atoms) -> (cath_id, (coords, channels, residue_index,
    n_channels, ...) or an error message, the structure's warnings)."""
    cath_id, name, data, atoms = job
    if isinstance(data, str):
        return cath_id, f"{name}: {data}", ()
    try:
        structure = read_structure(name, data=data)
        if atoms == ENVIRONMENT:
            a = residue_atoms(structure)
            if len(a.coords) == 0:
                raise StructureError(name, "no C, N, O or S atoms")
            return cath_id, (a.coords, a.channels, a.residue, 4, a.backbone, a.ca, a.n, a.c, a.labels, a.o), structure.warnings
        coords, channels, n_channels = select_atoms(structure, atoms)
        if len(coords) == 0:
            raise StructureError(name, f"no {atoms} atoms")
        mask = selection_mask(structure, atoms)
        return cath_id, (coords, channels, structure.residue_index[mask], n_channels), structure.warnings
    except StructureError as exc:
        return cath_id, str(exc), ()
    except Exception as exc:  # noqa: BLE001 - an unreadable file is reported and skipped
        return cath_id, f"{name}: {type(exc).__name__}: {exc}", ()


def _in_order(fn, jobs: Iterable, pool, window: int) -> Iterator:
    """``map(fn, jobs)`` on ``pool`` (or here when None) with at most ``window`` jobs in
    flight: ``Pool.imap`` would read every archive member into memory ahead of the workers."""
    if pool is None:
        yield from map(fn, jobs)
        return
    pending: collections.deque = collections.deque()
    for job in jobs:
        pending.append(pool.apply_async(fn, (job,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


# ---------------------------------------------------------------------------- build


def build_dataset(
    pdb: str | Path,
    out: str | Path,
    *,
    labels: str | Path | None = None,
    atoms: str = "ca",
    n_splits: int = 10,
    seed: int = 0,
    max_radius: float | None = None,
    one_per_s35: bool = True,
    workers: int = 1,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[], None] | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> BuildResult:
    """Extract ``atoms`` ("ca", "ca-ss", "backbone", "heavy" or "environment") of every labelled domain found in
    ``pdb`` (a directory of ``<cath_id>[.pdb|.ent|.cif][.gz]`` files or a tar archive
    such as ``pool.tar.xz``), assign superfamily-disjoint splits and write ``out``
    (npz) plus ``out`` with suffix ``.json`` (summary). ``labels`` defaults to the
    archive's ``labels.csv``. Domains of other architectures than the ten are skipped;
    with ``max_radius`` (Å) so are domains with an atom farther than that from their
    centre (mean atom position, the voxel-grid centre). Unreadable files are passed to
    ``on_error(cath_id, message)`` and skipped. Deterministic for a given ``seed``.
    """
    start = time.perf_counter()
    pdb, out = Path(pdb), Path(out)
    if not pdb.exists():
        raise DatasetError(f"{pdb}: no such file or directory")
    text = sources.labels_text(pdb, None if labels is None else Path(labels))
    all_domains = read_labels(text, str(labels or f"{pdb}:labels.csv"), one_per_s35=one_per_s35)
    duplicates = [i for i, n in Counter(d.cath_id for d in all_domains).items() if n > 1]
    if duplicates:
        raise DatasetError(f"{labels}: duplicate domain id(s) {', '.join(duplicates[:5])}")
    domains = [d for d in all_domains if d.architecture in ARCHITECTURES]
    if not domains:
        raise DatasetError(f"{labels or pdb}: no domain of the ten CATH architectures")
    wanted = {d.cath_id for d in domains}

    seen: set[str] = set()
    jobs, total = sources.structure_jobs(pdb, wanted, atoms, seen)
    if on_start:
        on_start(total)

    extracted: dict[str, tuple] = {}
    errors: list[tuple[str, str]] = []
    warnings: dict[str, list[str]] = {}
    with multiprocessing.get_context().Pool(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for cath_id, result, notes in _in_order(_extract, jobs, pool, 4 * workers):
            if notes:
                warnings[cath_id] = list(notes)
            if isinstance(result, str):
                errors.append((cath_id, result))
                if on_error:
                    on_error(cath_id, result)
            else:
                extracted[cath_id] = result
            if on_progress:
                on_progress()

    missing = sorted(wanted - seen)
    too_large = []
    if max_radius is not None:
        for cath_id, (xyz, *_rest) in list(extracted.items()):
            if np.linalg.norm(xyz - xyz.mean(0), axis=1).max() > max_radius:
                too_large.append(cath_id)
                del extracted[cath_id]
    kept = [d for d in domains if d.cath_id in extracted]
    if not kept:
        raise DatasetError(f"{pdb}: no domain could be read")
    codes = [c for c in ARCHITECTURES if any(d.architecture == c for d in kept)]
    labels_ = np.array([codes.index(d.architecture) for d in kept], dtype=np.int64)
    superfamilies = np.array([d.superfamily for d in kept])
    splits = assign_splits(superfamilies, [d.architecture for d in kept], n_splits, seed)

    arrays = [extracted[d.cath_id] for d in kept]
    n_channels = arrays[0][3]
    counts = np.array([len(a[0]) for a in arrays], dtype=np.int32)
    meta = {
        "format": FORMAT, "atoms": atoms, "n_channels": int(n_channels), "n_splits": n_splits,
        "seed": seed, "max_radius": max_radius, "one_per_s35": one_per_s35,
        "source": {"labels": str(labels) if labels else f"{pdb}:labels.csv", "pdb": str(pdb)},
        "licence": "Derived from CATH (http://cathdb.info), CC BY 4.0; coordinates wwPDB (CC0).",
    }
    extra = {}
    if atoms == ENVIRONMENT:
        n_res = np.array([len(a[5]) for a in arrays], dtype=np.int64)
        extra = dict(
            backbone=np.concatenate([a[4] for a in arrays]),
            res_offsets=np.concatenate([[0], np.cumsum(n_res)]),
            res_ca=np.concatenate([a[5] for a in arrays]).astype(np.int32),
            res_n=np.concatenate([a[6] for a in arrays]).astype(np.int32),
            res_c=np.concatenate([a[7] for a in arrays]).astype(np.int32),
            res_labels=np.concatenate([a[8] for a in arrays]).astype(np.int8),
            res_o=np.concatenate([a[9] for a in arrays]).astype(np.int32),
        )
    atomic_save_npz(
        out,
        compress=True,  # byte-reproducible: equal datasets, equal SHA-256
        **extra,
        positions=np.concatenate([a[0] for a in arrays]).astype(np.float32),
        channels=np.concatenate([a[1] for a in arrays]).astype(np.uint8),
        residue_index=np.concatenate([a[2] for a in arrays]).astype(np.int32),
        offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
        counts=counts,
        labels=labels_,
        class_codes=np.array(codes),
        class_names=np.array([ARCHITECTURES[c] for c in codes]),
        ids=np.array([d.cath_id for d in kept]),
        cath_codes=np.array([d.cath_code for d in kept]),
        superfamilies=superfamilies,
        resolutions=np.array([d.resolution for d in kept], dtype=np.float32),
        splits=splits,
        meta=np.array(json.dumps(meta)),
    )
    table = np.zeros((len(codes), n_splits), dtype=np.int64)
    np.add.at(table, (labels_, splits), 1)
    summary = {
        **meta,
        "file": out.name,
        "sha256": sha256(out),
        "n_domains": len(kept),
        "n_atoms": int(counts.sum()),
        "n_superfamilies": int(len(np.unique(superfamilies))),
        "atoms_per_domain": {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())},
        "classes": {c: ARCHITECTURES[c] for c in codes},
        "counts": {c: table[i].tolist() for i, c in enumerate(codes)},
        "superfamilies_per_split": [int(len(np.unique(superfamilies[splits == s]))) for s in range(n_splits)],
        "skipped": {
            "other_architecture": len(all_domains) - len(domains),
            "missing_file": missing,
            "unreadable": dict(errors),
            "too_large": too_large,
        },
        "warnings": warnings,
        "seconds": round(time.perf_counter() - start, 2),
    }
    if atoms == ENVIRONMENT:
        usable = (extra["res_labels"] >= 0) & (extra["res_ca"] >= 0)
        res_split = np.repeat(splits, np.diff(extra["res_offsets"]))
        summary["residues"] = {
            "total": int(len(usable)), "standard_with_ca": int(usable.sum()),
            "per_split": np.bincount(res_split[usable], minlength=n_splits).tolist(),
        }
    summary_path = out.with_suffix(".json")
    write_json(summary_path, summary)
    return BuildResult(out, summary_path, summary, errors)
