"""``cathnet predict``: CATH architecture of every structure, or (``--task aa``) the
amino-acid propensities of every residue."""
from __future__ import annotations

import csv
import io
import json
import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cathnet.cli.app import app
from cathnet.cli.common import (
    MAX_SEED,
    PRECISION_HELP,
    Precision,
    Task,
    check_residue_ranges,
    err_console,
    expand_inputs,
    fail,
    refuse_overwrite,
    report_error,
    report_warning,
)
from cathnet.environments import AMINO_ACIDS
from cathnet.errors import CathnetError
from cathnet.fileio import atomic_write
from cathnet.models import DEFAULT_MODELS, MAX_ROTATIONS

if TYPE_CHECKING:
    from cathnet.predict import Prediction
    from cathnet.propensity import FilePrediction


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 ≤ i < n; None → (0, 1)."""
    if text is None:
        return 0, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise typer.BadParameter(f"{text!r} is not i/n with 0 <= i < n", param_hint="--shard")
    return int(match.group(1)), int(match.group(2))


def render(predictions: list[Prediction], fmt: Format, per_chain: bool) -> str:
    """The predictions as a JSON list, CSV or a plain-text table (empty when all failed)."""
    if fmt is Format.json:
        return json.dumps([p.to_dict(with_chain=per_chain) for p in predictions], indent=1, allow_nan=False) + "\n"
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["file", "chain", "architecture", "name", "probability", "top3", "rotation_agreement", "error"])
        for p in predictions:
            top = ";".join(f"{t['architecture']}:{t['probability']:.4f}" for t in p.top)
            writer.writerow([p.file, p.chain or "", p.architecture or "", p.name or "", p.probability if p.probability is not None else "",
                             top, p.agreement if p.agreement is not None else "", p.error or ""])
        return buf.getvalue()
    if all(p.error is not None for p in predictions):
        return ""
    table = Table(show_edge=False, header_style="bold")
    for column in ["file", *(["chain"] if per_chain else []), "architecture", "name", "probability", "top-3"]:
        table.add_column(column, justify="right" if column == "probability" else "left")
    if any(p.agreement is not None for p in predictions):
        table.add_column("agreement", justify="right")
    for p in predictions:
        if p.error is not None:
            continue
        row = [p.file, *([p.chain or ""] if per_chain else []), p.architecture, p.name, f"{p.probability:.3f}",
               "  ".join(f"{t['architecture']} {t['probability']:.2f}" for t in p.top)]
        if p.agreement is not None:
            row.append(f"{p.agreement:.2f}")
        table.add_row(*row)
    buf = io.StringIO()
    Console(file=buf, width=200, highlight=False, color_system=None).print(table)
    return buf.getvalue()


def _opt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def render_residues(results: list[FilePrediction], fmt: Format) -> str:
    """Per-residue amino-acid predictions as a JSON list (one object per residue, one
    ``{"file", "error"}`` object per failed file, as for the cath task), CSV (one row per
    residue with all 20 probabilities, one row with the error per failed file) or a table
    per file (top-3)."""
    done = [f for f in results if f.error is None]
    if fmt is Format.json:
        rows = [row for f in results for row in _json_rows(f)]
        return json.dumps(rows, indent=1, allow_nan=False) + "\n"
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["file", "chain", "resnum", "icode", "native", "predicted", "p_native", "log_odds", *AMINO_ACIDS, "error"])
        for f in results:
            if f.error is not None:
                writer.writerow([f.file, *[""] * (7 + len(AMINO_ACIDS)), f.error])
            for r in f.residues:
                writer.writerow([f.file, r.chain, r.resnum, r.icode, r.native, r.predicted, _opt(r.p_native, 5),
                                 _opt(r.log_odds, 4), *(f"{p:.5f}" for p in r.probabilities), ""])
        return buf.getvalue()
    buf = io.StringIO()
    console = Console(file=buf, width=200, highlight=False, color_system=None)
    for f in done:
        recovery = f.recovery
        console.print(f"{f.file}: {len(f.residues)} residues"
                      + (f", top-1 prediction = native residue for {recovery:.1%}" if recovery is not None else "")
                      + (f", {f.skipped} without the atoms an environment needs" if f.skipped else ""))
        table = Table(show_edge=False, header_style="bold")
        for column in ("chain", "resnum", "native", "predicted", "p(predicted)", "p(native)", "log-odds", "top-3"):
            table.add_column(column, justify="right" if column.startswith(("p(", "log", "resnum")) else "left")
        for r in f.residues:
            top = np.argsort(-r.probabilities, kind="stable")[:3]
            table.add_row(r.chain, f"{r.resnum}{r.icode}", r.native, r.predicted, f"{r.probabilities.max():.3f}",
                          _opt(r.p_native, 3), _opt(r.log_odds, 2),
                          "  ".join(f"{AMINO_ACIDS[i]} {r.probabilities[i]:.2f}" for i in top))
        console.print(table)
    return buf.getvalue()


def _json_rows(f: FilePrediction) -> list[dict]:
    if f.error is not None:
        return [{"file": f.file, "error": f.error}]
    return [{"file": f.file, **r.to_dict()} for r in f.residues]


@app.command()
def predict(
    inputs: list[str] = typer.Argument(..., help="Structure files (PDB/mmCIF/PQR, optionally .gz), directories or globs."),
    task: Task = typer.Option(None, "--task", "-t", help="cath: architecture per structure (model cath-arch); aa: amino-acid propensities per residue (model aa-propensity). Default: the model's task."),
    model: str = typer.Option(None, "--model", "-m", help="Released model name or path to a model .json/.safetensors or training folder (default: the task's released model)."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    output: Path = typer.Option(None, "--output", "-o", help="Write here (atomically) instead of standard output."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, max=4096, help="Grids per forward pass (default 16 domains, or 128 residues for --task aa)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: Precision = typer.Option(Precision.auto, "--precision", help=PRECISION_HELP),
    chain: str = typer.Option(None, "--chain", help="Use only this chain."),
    residues: str = typer.Option(None, "--residues", callback=check_residue_ranges, help="Use only these residue ranges, e.g. A:10-120 (cut a domain out of a chain)."),
    per_chain: bool = typer.Option(False, "--per-chain", help="One prediction per chain (cath)."),
    rotations: int = typer.Option(0, "--rotations", min=0, max=MAX_ROTATIONS, help=f"Average over N (at most {MAX_ROTATIONS}) random rotations (cath: and report their agreement; aa: per residue)."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Seed of the random rotations."),
    shard: str = typer.Option(None, "--shard", help="i/n: predict only the i-th of n interleaved parts of the sorted file list."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on standard error."),
) -> None:
    """Predict the CATH architecture of each structure, or (--task aa) amino-acid propensities.

    --task aa: per residue, the probabilities of the 20 amino acids given the residue's atomic
    environment, and ln(p(native) / training frequency of native), the log-odds."""
    from cathnet.inference import resolve_device
    from cathnet.predict import load_model

    index, n_shards = parse_shard(shard)
    paths, errors = expand_inputs(inputs)
    paths = paths[index::n_shards]
    refuse_overwrite([output], paths, "--output")
    try:
        dev = resolve_device(device)
        net = load_model(model or DEFAULT_MODELS[(task or Task.cath).value], device=dev, precision=precision.value)
    except CathnetError as exc:
        fail(exc)
    if task is not None and task.value != net.task:
        raise typer.BadParameter(f"model {model} is a {net.task!r} model, not {task.value!r}", param_hint="--task")
    if net.task == "aa" and per_chain:
        raise typer.BadParameter("--per-chain applies to --task cath only (--task aa reports every residue with its chain)", param_hint="--task aa")
    if net.task == "aa" and rotations and net.preprocessing.oriented:
        raise typer.BadParameter("the model works in each residue's backbone frame: rotations change nothing", param_hint="--rotations")
    for item, reason in errors:
        report_error(item, reason)
    if net.task == "aa":
        failed = _predict_residues(net, paths, fmt, output, batch_size or 128, chain, residues, rotations, seed, progress)
        if errors or failed:
            raise typer.Exit(1)
        return
    batch_size = batch_size or 16

    results: list[Prediction] = []
    warned: set[tuple[str, str]] = set()  # a file's own warnings come with each of its chains
    with Progress(
        TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True, disable=not progress or len(paths) < 2 or not err_console.is_terminal,
    ) as bar:
        bar_task = bar.add_task("predict", total=len(paths))
        for pred in net.predict_many(paths, chain=chain, residues=residues, per_chain=per_chain, rotations=rotations, seed=seed,
                                     batch_size=batch_size, on_done=lambda n: bar.advance(bar_task, n)):
            for message in pred.warnings:
                if (pred.file, message) not in warned:
                    warned.add((pred.file, message))
                    report_warning(pred.file, message)
            if pred.error is not None:
                report_error(pred.file, pred.error)
            elif pred.atoms_outside:
                err_console.print(f"warning: {pred.file}: {pred.atoms_outside} of {pred.n_atoms} atoms lie outside the "
                                  f"{net.grid_size * net.voxel_size:g} Å box and are ignored", style="yellow", markup=False)
            results.append(pred)

    _write(render(results, fmt, per_chain), output)
    if errors or any(p.error is not None for p in results):
        raise typer.Exit(1)


def _predict_residues(net, paths, fmt, output, batch_size, chain, residues, rotations, seed, progress) -> bool:
    """The --task aa branch; returns whether any file failed."""
    results: list[FilePrediction] = []
    with Progress(
        TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TextColumn("files, {task.fields[residues]} residues"),
        TimeRemainingColumn(), console=err_console, transient=True, disable=not progress or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("predict", total=len(paths), residues=0)
        for result in net.predict_many(paths, chain=chain, residues=residues, rotations=rotations, seed=seed, batch_size=batch_size,
                                       on_done=lambda n: bar.update(task, residues=bar.tasks[0].fields["residues"] + n)):
            bar.advance(task)
            for message in result.warnings:
                report_warning(result.file, message)
            if result.error is not None:
                report_error(result.file, result.error)
            results.append(result)
    _write(render_residues(results, fmt), output)
    return any(r.error is not None for r in results)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        atomic_write(output, text.encode())
    except OSError as exc:
        report_error(output, exc.strerror or str(exc))
        raise typer.Exit(1) from None
