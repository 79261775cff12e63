"""Building a dataset: the atoms of every labelled domain, read from its structure file in
worker processes, superfamily-disjoint splits, the npz (its keys: :mod:`cathnet.data`) and
a JSON summary next to it."""
from __future__ import annotations

import collections
import contextlib
import json
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

from cathnet.data import sources
from cathnet.data.datasets import FORMAT
from cathnet.data.labels import ARCHITECTURES, Domain, read_labels
from cathnet.data.splits import assign_splits
from cathnet.environments import ENV_CHANNELS, ENVIRONMENT, ResidueAtoms, residue_atoms
from cathnet.errors import DatasetError
from cathnet.fileio import atomic_save_npz, sha256, write_json
from cathnet.preprocess import Preprocessing
from cathnet.selection import selection_mask
from cathnet.structure import StructureError, read_structure

__all__ = ["BuildResult", "build_dataset"]


@dataclass
class BuildResult:
    """What :func:`build_dataset` wrote and skipped."""

    path: Path
    summary_path: Path
    summary: dict
    errors: list[tuple[str, str]] = field(default_factory=list)


class DomainAtoms(NamedTuple):
    """The atoms of one domain as a dataset stores them."""

    coords: np.ndarray  # (n, 3) float32, Å
    channels: np.ndarray  # (n,)
    residue_index: np.ndarray  # (n,) residue of each atom, 0-based within the domain
    n_channels: int
    residues: ResidueAtoms | None = None  # environment datasets: the residue table


class Extracted(NamedTuple):
    """A worker's result: the atoms of a structure file, or why they could not be read."""

    cath_id: str
    atoms: DomainAtoms | str
    warnings: tuple[str, ...]


def _extract(job: sources.Job) -> Extracted:
    """Worker: the atoms of one structure file (an error message for an unreadable one)."""
    if isinstance(job.data, str):
        return Extracted(job.cath_id, f"{job.name}: {job.data}", ())
    try:
        structure = read_structure(job.name, data=job.data)
        if job.atoms == ENVIRONMENT:
            a = residue_atoms(structure)
            if len(a.coords) == 0:
                raise StructureError(job.name, "no C, N, O or S atoms")
            return Extracted(job.cath_id, DomainAtoms(a.coords, a.channels, a.residue, len(ENV_CHANNELS), a),
                             structure.warnings)
        coords, channels, n_channels = Preprocessing(job.atoms).select(structure)
        residue_index = structure.residue_index[selection_mask(structure, job.atoms)]
        return Extracted(job.cath_id, DomainAtoms(coords, channels, residue_index, n_channels), structure.warnings)
    except StructureError as exc:
        return Extracted(job.cath_id, str(exc), ())
    except Exception as exc:  # noqa: BLE001 - an unreadable file is reported and skipped
        return Extracted(job.cath_id, f"{job.name}: {type(exc).__name__}: {exc}", ())


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


def _labelled(pdb: Path, labels: str | Path | None, one_per_s35: bool) -> tuple[list[Domain], list[Domain]]:
    """All labelled domains, and those of the ten architectures."""
    text = sources.labels_text(pdb, None if labels is None else Path(labels))
    every = read_labels(text, str(labels or f"{pdb}:labels.csv"), one_per_s35=one_per_s35)
    duplicates = [i for i, n in Counter(d.cath_id for d in every).items() if n > 1]
    if duplicates:
        raise DatasetError(f"{labels}: duplicate domain id(s) {', '.join(duplicates[:5])}")
    domains = [d for d in every if d.architecture in ARCHITECTURES]
    if not domains:
        raise DatasetError(f"{labels or pdb}: no domain of the ten CATH architectures")
    return every, domains


def _extract_all(jobs: Iterable[sources.Job], workers: int, on_progress, on_error):
    """The atoms of every readable job by domain id, the errors, and the warnings."""
    extracted: dict[str, DomainAtoms] = {}
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
    return extracted, errors, warnings


def _residue_arrays(domains: list[DomainAtoms]) -> dict[str, np.ndarray]:
    """The residue table of an environment dataset."""
    tables = [d.residues for d in domains if d.residues is not None]
    n_res = np.array([len(t.ca) for t in tables], dtype=np.int64)
    return dict(
        backbone=np.concatenate([t.backbone for t in tables]),
        res_offsets=np.concatenate([[0], np.cumsum(n_res)]),
        res_ca=np.concatenate([t.ca for t in tables]).astype(np.int32),
        res_n=np.concatenate([t.n for t in tables]).astype(np.int32),
        res_c=np.concatenate([t.c for t in tables]).astype(np.int32),
        res_labels=np.concatenate([t.labels for t in tables]).astype(np.int8),
        res_o=np.concatenate([t.o for t in tables]).astype(np.int32),
    )


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
    ``pdb`` (a directory of ``<cath_id>[.pdb|.ent|.cif|.mmcif|.pqr][.gz]`` files or a tar archive
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
    all_domains, domains = _labelled(pdb, labels, one_per_s35)
    wanted = {d.cath_id for d in domains}
    seen: set[str] = set()
    jobs, total = sources.structure_jobs(pdb, wanted, atoms, seen)
    if on_start:
        on_start(total)
    extracted, errors, warnings = _extract_all(jobs, workers, on_progress, on_error)

    too_large = []
    if max_radius is not None:
        for cath_id, d in list(extracted.items()):
            if np.linalg.norm(d.coords - d.coords.mean(0), axis=1).max() > max_radius:
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
    counts = np.array([len(a.coords) for a in arrays], dtype=np.int32)
    meta = {
        "format": FORMAT, "atoms": atoms, "n_channels": int(arrays[0].n_channels), "n_splits": n_splits,
        "seed": seed, "max_radius": max_radius, "one_per_s35": one_per_s35,
        "source": {"labels": str(labels) if labels else f"{pdb}:labels.csv", "pdb": str(pdb)},
        "licence": "Derived from CATH (http://cathdb.info), CC BY 4.0; coordinates wwPDB (CC0).",
    }
    extra = _residue_arrays(arrays) if atoms == ENVIRONMENT else {}
    atomic_save_npz(
        out,
        compress=True,  # byte-reproducible: equal datasets, equal SHA-256
        **extra,
        positions=np.concatenate([a.coords for a in arrays]).astype(np.float32),
        channels=np.concatenate([a.channels for a in arrays]).astype(np.uint8),
        residue_index=np.concatenate([a.residue_index for a in arrays]).astype(np.int32),
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
            "missing_file": sorted(wanted - seen),
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
