"""``cathnet dataset build``: CATH labels + structures → superfamily-disjoint npz dataset."""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cathnet.cli.app import app
from cathnet.cli.common import MAX_SEED, bounded, fail, refuse_overwrite, report_error
from cathnet.data import ENVIRONMENT, build_dataset
from cathnet.errors import CathnetError
from cathnet.selection import SELECTIONS

DatasetAtoms = Enum("DatasetAtoms", {n.replace("-", "_"): n for n in (*SELECTIONS, ENVIRONMENT)}, type=str)  # type: ignore[misc]

dataset_app = typer.Typer(help="Build datasets from CATH structures.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def build(
    pdb: Path = typer.Option(..., "--pdb", help="Folder of <cath_id>[.pdb] files, or a tar archive such as pool.tar.xz."),
    out: Path = typer.Option(..., "-o", "--out", help="Output .npz; a JSON summary is written next to it."),
    labels: Path = typer.Option(None, "--labels", help="labels.csv of the pool or a CATH domain list (CLF). Default: labels.csv inside the --pdb archive."),
    atoms: DatasetAtoms = typer.Option(DatasetAtoms["ca"], "--atoms", help="Atoms per domain: Cα, Cα typed by secondary structure (ca-ss), backbone (N, CA, C, O), all heavy atoms, or 'environment' (C/N/O/S atoms + residue table, for --task aa)."),
    n_splits: int = typer.Option(10, "--splits", min=1, max=100, help="Number of superfamily-disjoint splits."),
    max_radius: float = typer.Option(None, "--max-radius", callback=bounded(0, 1e4), help="Drop domains with an atom farther than this (Å) from their centre; 50 = the paper's 50³ × 2 Å grid."),
    one_per_s35: bool = typer.Option(True, "--one-per-s35/--all-domains", help="CATH domain list only: keep one domain per S35 cluster (40 % identity)."),
    workers: int = typer.Option(os.cpu_count() or 1, "--workers", min=1, max=256, help="Parallel parser processes."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Seed of the split assignment."),
) -> None:
    """Build a superfamily-disjoint CATH dataset (npz + JSON summary).

    Extracts the atoms of every labelled domain and assigns superfamily-disjoint splits in
    which every class appears."""
    console = Console(stderr=True, soft_wrap=True)
    if out.suffix != ".npz":
        raise typer.BadParameter(f"{out}: the output must end in .npz", param_hint="-o")
    refuse_overwrite([out, out.with_suffix(".json")], [pdb, *([labels] if labels else [])], "-o")
    if not out.parent.is_dir():
        report_error(out.parent, "output folder does not exist")
        raise typer.Exit(1) from None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
            bar = progress.add_task("reading structures", total=None)
            result = build_dataset(
                pdb, out, labels=labels, atoms=atoms.value, n_splits=n_splits, seed=seed,
                max_radius=max_radius, one_per_s35=one_per_s35, workers=workers,
                on_start=lambda n: progress.update(bar, total=n),
                on_progress=lambda: progress.advance(bar),
                on_error=lambda cath_id, msg: console.print(f"skipped {cath_id}: {msg}", markup=False, highlight=False),
            )
    except CathnetError as exc:
        fail(exc)
    except OSError as exc:
        report_error(exc.filename or out, exc.strerror or str(exc))
        raise typer.Exit(1) from None
    s = result.summary
    table = Table(title=f"{out}: domains per class and split", title_justify="left", box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    table.add_column("class", no_wrap=True)
    for k in range(n_splits):
        table.add_column(str(k), justify="right", min_width=3)
    table.add_column("total", justify="right", style="bold", min_width=5)
    for code, row in s["counts"].items():
        table.add_row(f"{code} {s['classes'][code]}", *map(str, row), str(sum(row)))
    totals = [sum(col) for col in zip(*s["counts"].values())]
    table.add_row("total", *map(str, totals), str(sum(totals)), style="bold")
    table.add_row("superfamilies", *map(str, s["superfamilies_per_split"]), str(s["n_superfamilies"]), style="dim")
    Console().print(table)
    skipped = s["skipped"]
    if "residues" in s:
        console.print(f"{s['residues']['standard_with_ca']} standard residues with a Cα (environments) per split: {s['residues']['per_split']}", highlight=False)
    console.print(
        f"{s['n_domains']} domains, {s['n_atoms']} atoms ({atoms.value}), {s['n_superfamilies']} superfamilies; "
        f"skipped: {len(skipped['unreadable'])} unreadable, {len(skipped['missing_file'])} without a structure file, "
        f"{len(skipped['too_large'])} too large, {skipped['other_architecture']} of other architectures; "
        f"{len(s['warnings'])} with warnings (listed in the summary); "
        f"{s['seconds']:.1f} s. Summary: {result.summary_path}",
        highlight=False,
    )
