"""``cathnet voxelize``: structure files → Gaussian density grids (.npz).

Per structure (``OUT/<id>.npz``): ``grid`` (C, N, N, N) float32, ``center`` (3,) Å,
``n_atoms`` and ``n_outside`` (selected atoms, those outside the box), ``source``, and the
settings ``channels``, ``selection``, ``grid_size``, ``voxel_size``, ``sigma`` and
``in_type``, the channels' field type (e.g. ``3x0`` for scalars, ``3x0 + 2x1 + 2x2`` with
``--fields ss-orientation``). With ``--canonical principal`` each structure is turned into
its principal-axes frame first: ``rotation`` (3, 3) is the turn applied (the grid shows
``rotation @ (x − center)``; identity without it) and the settings add ``canonical``. With
``--stacked`` one npz holds ``grids`` (S, C, N, N, N), ``ids``, ``sources``, ``centers``,
``rotations``, ``n_atoms``, ``n_outside`` (one row per structure, input order) and the same
settings.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterator

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cathnet.cli.app import app
from cathnet.cli.common import (
    Canonical,
    Selection,
    bounded,
    check_residue_ranges,
    err_console,
    expand_inputs,
    refuse_overwrite,
    report_error,
    report_warning,
)
from cathnet.fileio import atomic_save_npz
from cathnet.preprocess import Preprocessing
from cathnet.structure import StructureError, read_structure, structure_id
from cathnet.voxel import GRID_SIZE, SIGMA, VOXEL_SIZE, Voxels


class VoxelFields(str, Enum):
    """``--fields`` of ``cathnet voxelize`` (the structure-level fields of :mod:`cathnet.fields`)."""

    ss_orientation = "ss-orientation"
    ss_pairing = "ss-pairing"


@dataclass(frozen=True)
class _Job:
    path: str
    out: str | None  # npz to write, or None to return the grid (--stacked)
    preprocessing: Preprocessing
    model: int
    chains: tuple[str, ...] | None
    residues: str | None
    compress: bool


@app.command()
def voxelize(
    inputs: list[str] = typer.Argument(..., metavar="INPUT", help="Structure files, directories (searched recursively for .pdb .ent .cif .mmcif .pqr, optionally .gz) or glob patterns."),
    out: Path = typer.Option(..., "-o", "--out", help="Output directory (one <id>.npz per structure), or the .npz file with --stacked."),
    stacked: bool = typer.Option(False, "--stacked", help="Write all grids into one npz, with their ids."),
    grid_size: int = typer.Option(GRID_SIZE, "--grid-size", min=1, max=256, help="Voxels per axis (at most 256)."),
    voxel_size: float = typer.Option(VOXEL_SIZE, "--voxel-size", callback=bounded(0.01, 100), help="Voxel edge in Å (0.01..100)."),
    sigma: float = typer.Option(SIGMA, "--sigma", callback=bounded(0.01, 100), help="Gaussian σ of each atom in Å (0.01..100)."),
    selection: Selection = typer.Option(Selection["ca"], "--selection", help="Atoms: Cα; Cα typed helix/strand/coil (ca-ss); backbone (N, CA, C, O); or all heavy atoms in channels C, N, O, S, other."),
    fields: VoxelFields = typer.Option(None, "--fields", help="With --selection ca-ss: ss-orientation adds helix and strand directions (order 1) and axes (order 2) as oriented fields, ss-pairing also the strands' parallel and antiparallel pairing (two scalar channels); the npz records the field type (in_type)."),
    canonical: Canonical = typer.Option(None, "--canonical", help="principal: turn each structure into the frame of its atoms' principal axes first (largest variance along x); the npz records the rotation. none: as is (the default)."),
    chain: list[str] = typer.Option(None, "--chain", help="Keep only this chain; repeat or comma-separate for several."),
    residues: str = typer.Option(None, "--residues", callback=check_residue_ranges, help="Keep only residue ranges [CHAIN:]START[-END][,...], e.g. A:10-50,A:60A-72."),
    model: int = typer.Option(1, "--model", min=1, help="Model to read (1 = the first)."),
    workers: int = typer.Option(1, "--workers", min=1, max=256, help="Parallel processes."),
    compress: bool = typer.Option(False, "--compress", help="Compress the npz files (smaller, slower)."),
) -> None:
    """Voxelize structures into Gaussian density grids (.npz).

    Grids of N³ voxels are centred on the selected atoms' mean position. Bad inputs get one
    error line each and exit code 1; the good ones are written."""
    if stacked and out.is_dir():
        raise typer.BadParameter(f"{out} is a directory; --stacked writes one .npz file", param_hint="'-o'")
    if not stacked and out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a directory", param_hint="'-o'")
    if fields is not None and selection.value != "ca-ss":
        raise typer.BadParameter(f"--fields {fields.value} needs --selection ca-ss", param_hint="--fields")
    chains = tuple(c for item in chain or () for c in item.split(",") if c) or None
    paths, failures = expand_inputs(inputs)
    for item, reason in failures:
        report_error(item, reason)

    refuse_overwrite([out] if stacked else [out / f"{structure_id(p)}.npz" for p in paths], paths, "'-o'")
    outputs: dict[Path, Path] = {}
    jobs: list[_Job] = []
    for path in paths:
        npz = out / f"{structure_id(path)}.npz"
        if npz in outputs:
            failures.append((str(path), f"same output {npz.name} as {outputs[npz]}"))
            report_error(*failures[-1])
            continue
        outputs[npz] = path
        prep = Preprocessing(selection.value, Voxels(grid_size, voxel_size, sigma), None if fields is None else fields.value,
                             canonical=None if canonical in (None, Canonical.none) else canonical.value)
        jobs.append(_Job(str(path), None if stacked else str(npz), prep, model, chains, residues, compress))
    try:
        (out.parent if stacked else out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        report_error(out, exc.strerror or str(exc))
        raise typer.Exit(1) from None

    results: list[dict | None] = [None] * len(jobs)
    for i, result in _run(jobs, workers):
        for message in result[1]:
            report_warning(jobs[i].path, message)
        if isinstance(result[0], str):
            failures.append((jobs[i].path, result[0]))
            report_error(*failures[-1])
        else:
            results[i] = result[0]
    done = [r for r in results if r is not None]
    if stacked and done:
        try:
            atomic_save_npz(
                out, compress=compress, grids=np.stack([r.pop("grid") for r in done]),
                ids=np.array([structure_id(r["source"]) for r in done]), sources=np.array([r["source"] for r in done]),
                centers=np.stack([r["center"] for r in done]), rotations=np.stack([r["rotation"] for r in done]),
                n_atoms=np.array([r["n_atoms"] for r in done]),
                n_outside=np.array([r["n_outside"] for r in done]), **_settings(jobs[0]),
            )
        except OSError as exc:
            report_error(out, exc.strerror or str(exc))
            raise typer.Exit(1) from None
    outside = [r["n_outside"] for r in done if r["n_outside"]]
    Console(highlight=False, soft_wrap=True).print(
        f"written: {len(done)}{f' (in {out})' if stacked and done else ''}, failed: {len(failures)}, "
        f"atoms outside the box: {sum(outside)} (in {len(outside)} structure{'' if len(outside) == 1 else 's'})"
    )
    if failures or not done:
        raise typer.Exit(1)


def _settings(job: _Job) -> dict:
    p = job.preprocessing
    return dict(channels=np.array(p.channels), selection=np.array(p.selection), grid_size=np.array(p.voxels.grid_size),
                voxel_size=np.array(p.voxels.voxel_size), sigma=np.array(p.voxels.sigma),
                in_type=np.array(p.in_type or f"{len(p.channels)}x0"),
                **({"canonical": np.array(p.canonical)} if p.canonical else {}))


def _process(job: _Job) -> tuple[dict | str, tuple[str, ...]]:
    """Voxelize one file: a summary dict (with the grid when not written) or the error
    reason, and the warnings of the file."""
    warnings: tuple[str, ...] = ()
    try:
        structure = read_structure(job.path, model=job.model, chains=job.chains, residues=job.residues)
        warnings = structure.warnings
        g = job.preprocessing.grids(structure)
        result = dict(source=job.path, center=g.center, rotation=g.rotations[0], n_atoms=g.n_atoms, n_outside=g.n_outside)
        if job.out is None:
            return {**result, "grid": g.grids[0]}, warnings
        atomic_save_npz(job.out, compress=job.compress, grid=g.grids[0], **{k: np.array(v) for k, v in result.items()},
                        **_settings(job))
        return result, warnings
    except StructureError as exc:
        return exc.reason, warnings
    except OSError as exc:
        return f"cannot write {job.out}: {exc.strerror or exc}", warnings
    except Exception as exc:  # noqa: BLE001 - one line per bad input, never a traceback
        return f"{type(exc).__name__}: {exc}", warnings


def _run(jobs: list[_Job], workers: int) -> Iterator[tuple[int, tuple[dict | str, tuple[str, ...]]]]:
    """(job index, result) in completion order, with a progress bar on a terminal."""
    progress = Progress(TextColumn("voxelizing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err_console, transient=True, disable=not err_console.is_terminal)
    if workers == 1 or len(jobs) < 2:
        with progress:
            for i in progress.track(range(len(jobs))):
                yield i, _process(jobs[i])
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context)
    try:
        futures = {pool.submit(_process, job): i for i, job in enumerate(jobs)}  # forks before the bar's thread
        with progress:
            task = progress.add_task("voxelizing", total=len(jobs))
            for future in as_completed(futures):
                progress.advance(task)
                yield futures[future], future.result()
    finally:
        pool.shutdown(cancel_futures=True)
