"""``cathnet predict``: CATH architecture of every structure given."""
from __future__ import annotations

import csv
import io
import json
import re
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cathnet.checkpoint import CheckpointError
from cathnet.cli.app import app
from cathnet.cli.common import check_residue_ranges, err_console, expand_inputs, report_error
from cathnet.fileio import atomic_write
from cathnet.predict import DEFAULT_MODEL, Prediction, load_model
from cathnet.train import TrainError, resolve_device


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
    """The predictions as a JSON list, CSV or a plain-text table."""
    if fmt is Format.json:
        return json.dumps([p.to_dict(with_chain=per_chain) for p in predictions], indent=1) + "\n"
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["file", "chain", "architecture", "name", "probability", "top3", "rotation_agreement", "error"])
        for p in predictions:
            top = ";".join(f"{t['architecture']}:{t['probability']:.4f}" for t in p.top)
            writer.writerow([p.file, p.chain or "", p.architecture or "", p.name or "", p.probability if p.probability is not None else "",
                             top, p.agreement if p.agreement is not None else "", p.error or ""])
        return buf.getvalue()
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
    console = Console(file=io.StringIO(), width=200, highlight=False, color_system=None)
    console.print(table)
    return console.file.getvalue()


@app.command()
def predict(
    inputs: list[str] = typer.Argument(..., help="Structure files (PDB/mmCIF/PQR, optionally .gz), directories or globs."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Released model name or path to a model .json/.safetensors or training folder."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    output: Path = typer.Option(None, "--output", "-o", help="Write here (atomically) instead of standard output."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Grids per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    chain: str = typer.Option(None, "--chain", help="Use only this chain."),
    residues: str = typer.Option(None, "--residues", callback=check_residue_ranges, help="Use only these residue ranges, e.g. A:10-120 (cut a domain out of a chain)."),
    per_chain: bool = typer.Option(False, "--per-chain", help="One prediction per chain."),
    rotations: int = typer.Option(0, "--rotations", min=0, help="Average over N random rotations and report their agreement."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random rotations."),
    shard: str = typer.Option(None, "--shard", help="i/n: predict only the i-th of n interleaved parts of the sorted file list."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on standard error."),
) -> None:
    """Predict the CATH architecture of each structure."""
    index, n_shards = parse_shard(shard)
    try:
        dev = resolve_device(device)
        net = load_model(model, device=dev)
    except (CheckpointError, TrainError) as exc:
        report_error(str(exc))
        raise typer.Exit(2 if isinstance(exc, TrainError) else 1) from None
    paths, errors = expand_inputs(inputs)
    paths = paths[index::n_shards]
    for item, reason in errors:
        report_error(item, reason)

    results: list[Prediction] = []
    with Progress(
        TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True, disable=not progress or len(paths) < 2,
    ) as bar:
        task = bar.add_task("predict", total=len(paths))
        for pred in net.predict_many(paths, chain=chain, residues=residues, per_chain=per_chain, rotations=rotations, seed=seed,
                                     batch_size=batch_size, on_done=lambda n: bar.advance(task, n)):
            if pred.error is not None:
                report_error(pred.file, pred.error)
            elif pred.atoms_outside:
                err_console.print(f"warning: {pred.file}: {pred.atoms_outside} of {pred.n_atoms} atoms lie outside the "
                                  f"{net.grid_size * net.voxel_size:g} Å box and are ignored", style="yellow", markup=False)
            results.append(pred)

    text = render(results, fmt, per_chain)
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            atomic_write(output, text.encode())
        except OSError as exc:
            report_error(output, exc.strerror or str(exc))
            raise typer.Exit(1) from None
    if errors or any(p.error is not None for p in results):
        raise typer.Exit(1)
