"""``cathnet evaluate``: test metrics, confusion matrix and rotation robustness of a model."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cathnet.cli.app import app
from cathnet.cli.common import MAX_SEED, PRECISION_HELP, Canonical, Precision, fail, refuse_overwrite, report_error
from cathnet.cli.train import parse_splits
from cathnet.errors import CathnetError
from cathnet.fileio import write_json
from cathnet.models import MAX_ROTATIONS, resolve_model


@app.command()
def evaluate(
    checkpoint: str = typer.Argument(..., help="Released model name, or best.json / best.safetensors (or the training folder)."),
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="Dataset .npz."),
    splits: str = typer.Option(None, "--splits", help="Splits to evaluate, comma-separated (default: the model's test splits)."),
    rotations: int = typer.Option(8, "--rotations", min=0, max=MAX_ROTATIONS, help=f"Random-rotation passes for the robustness check (at most {MAX_ROTATIONS})."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: Precision = typer.Option(Precision.auto, "--precision", help=PRECISION_HELP),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Seed of the random rotations and of --max-items."),
    max_items: int = typer.Option(None, "--max-items", min=1, help="Evaluate a seeded uniform sample of this many items (e.g. residues for --task aa)."),
    canonical: Canonical = typer.Option(None, "--canonical", help="Override the model's canonical frame: principal turns every structure into its principal axes first, none does not (default: the model's)."),
    oriented: bool = typer.Option(None, "--oriented/--as-given", help="Amino-acid models: turn every environment into its residue's backbone frame, or keep the structure's axes (default: the model's)."),
    output: Path = typer.Option(None, "-o", "--output", help="Write all metrics as JSON."),
    png: Path | None = typer.Option(None, "--png", help="Confusion-matrix PNG (default: next to -o)."),
    logits: Path | None = typer.Option(None, "--logits", help="Also write the unrotated logits as .npz (items, labels, logits)."),
) -> None:
    """Test a model: accuracy, per-class P/R/F1, confusion matrix, rotation robustness.

    Rotation robustness: accuracy and top-1 agreement under random rotations of every
    structure."""
    from cathnet.checkpoint import model_files
    from cathnet.evaluate import evaluate as run_evaluation
    from cathnet.evaluate import plot_confusion

    if device not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter(f"{device!r} is not auto, cpu or cuda", param_hint="--device")
    console = Console(stderr=True)
    png = png or (output.with_suffix(".png") if output else None)
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        model = resolve_model(checkpoint)
        refuse_overwrite([output, png, logits], [data, *model_files(model)], "-o/--png/--logits")
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
            bar = progress.add_task("evaluate", total=None)
            result = run_evaluation(
                model, data, splits=None if splits is None else list(parse_splits(splits, "--splits")),
                rotations=rotations, batch_size=batch_size, device=device, precision=precision.value, seed=seed,
                max_items=max_items, canonical=None if canonical is None else canonical.value, oriented=oriented,
                logits_path=logits,
                on_start=lambda n: progress.update(bar, total=n), on_batch=lambda n: progress.advance(bar, n),
            )
    except CathnetError as exc:
        fail(exc)
    except OSError as exc:
        report_error(exc.filename or checkpoint, exc.strerror or str(exc))
        raise typer.Exit(1) from None
    show(result, Console())
    if not result["data_matches_training"]:
        console.print(f"warning: {data} is not the dataset the model was trained on (checksum differs)")
    try:
        if output:
            write_json(output, result)
        if png:
            plot_confusion(result, png)
    except OSError as exc:
        report_error(exc.filename or output or png, exc.strerror or str(exc))
        raise typer.Exit(1) from None
    for path in (output, png, logits):
        if path:
            console.print(f"wrote {path}")


def show(result: dict, console: Console) -> None:
    """Print the metrics of :func:`cathnet.evaluate.evaluate` as rich tables."""
    codes, names = result["classes"]["codes"], result["classes"]["names"]
    console.print(
        f"{result['network']} on {result['data']} splits {','.join(map(str, result['splits']))}: "
        f"accuracy {result['accuracy']:.4f}, top-3 {result['top3_accuracy']:.4f}, macro F1 {result['macro_f1']:.4f} "
        f"(n = {result['n']} of {result['n_items_in_splits']})"
    )
    per_class = Table("class", "name", "precision", "recall", "F1", "support", title="per class", title_justify="left")
    for k, code in enumerate(codes):
        per_class.add_row(
            code, names[k], f"{result['precision'][k]:.3f}", f"{result['recall'][k]:.3f}", f"{result['f1'][k]:.3f}",
            str(result["support"][k]),
        )
    console.print(per_class)
    confusion = Table("true \\ predicted", *codes, title="confusion matrix", title_justify="left")
    for k, row in enumerate(result["confusion"]):
        confusion.add_row(codes[k], *(f"[bold]{v}[/]" if j == k else str(v) for j, v in enumerate(row)))
    console.print(confusion)
    rot = result["rotation"]
    if rot["n_rotations"]:
        console.print(
            f"rotation robustness ({rot['n_rotations']} random rotations): accuracy {rot['accuracy_mean']:.4f} "
            f"± {rot['accuracy_std']:.4f} (min {rot['accuracy_min']:.4f}), top-1 agreement with the unrotated "
            f"prediction {rot['agreement_mean']:.4f}; probabilities averaged over the {rot['n_rotations']} "
            f"rotations (predict --rotations {rot['n_rotations']}): accuracy {rot['averaged_accuracy']:.4f}, "
            f"all {rot['n_rotations']} agree for {rot['all_agree']:.4f}"
        )
