"""Data efficiency (paper Fig. 3): steerable vs plain CNN at decreasing training fractions.

For every model and training fraction f, trains with ``cathnet.train`` (class-stratified
subsample, nested across fractions) and evaluates the best-validation checkpoint on the
test splits. As in the paper's runs, a fraction f trains for ``epochs / f`` epochs with
burn-in ``burn_in / f`` and decay ``lr_decay ** f`` per epoch, so every run takes the same
number of optimizer steps on the same learning-rate schedule (``--no-scale-epochs`` turns
this off). Runs are resumable: rerunning continues unfinished trainings.

Writes OUT/results.json, OUT/data_efficiency.png and OUT/data_efficiency.md.

    python experiments/data_efficiency.py --data cath10.npz --out runs/data_efficiency
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import typer
from rich.console import Console

from cathnet.fileio import atomic_write, write_json
from cathnet.evaluate import evaluate
from cathnet.train import TrainConfig, train

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _per_model(value: str, models: list[str]) -> dict[str, float]:
    """"5e-4" or "cnn-compact=5e-4,se3-compact=1e-2" → {model: value}."""
    if "=" not in value:
        return {m: float(value) for m in models}
    out = {k.strip(): float(v) for k, v in (p.split("=", 1) for p in value.split(","))}
    missing = [m for m in models if m not in out]
    if missing:
        raise typer.BadParameter(f"no value for {', '.join(missing)}", param_hint="--lr")
    return out


def plot(results: list[dict], path: Path) -> None:
    """Test accuracy against training fraction (log₂ axis), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for model in dict.fromkeys(r["model"] for r in results):
        rows = sorted((r for r in results if r["model"] == model), key=lambda r: r["fraction"])
        ax.plot([r["fraction"] for r in rows], [r["test_accuracy"] for r in rows], "o-", label=model)
    ax.set_xscale("log", base=2)
    fractions = sorted({r["fraction"] for r in results})
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("fraction of training data")
    ax.set_ylabel("test accuracy")
    ax.set_title("CATH architecture: data efficiency")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def table(results: list[dict]) -> str:
    """Markdown table: one row per fraction, test accuracy per model."""
    models = list(dict.fromkeys(r["model"] for r in results))
    fractions = sorted({r["fraction"] for r in results}, reverse=True)
    acc = {(r["model"], r["fraction"]): r for r in results}
    lines = [
        "| training fraction | " + " | ".join(f"{m} test acc" for m in models) + " |",
        "| --- |" + " --- |" * len(models),
    ]
    for f in fractions:
        cells = [f"{acc[m, f]['test_accuracy']:.3f} (n_train {acc[m, f]['n_train']})" if (m, f) in acc else "" for m in models]
        lines.append(f"| {f:g} | " + " | ".join(cells) + " |")
    params = ", ".join(f"{m}: {next(r['n_parameters'] for r in results if r['model'] == m):,} parameters" for m in models)
    return "\n".join(lines) + f"\n\n{params}\n"


@cli.command()
def main(
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False),
    out: Path = typer.Option(Path("runs/data_efficiency"), "--out"),
    models: str = typer.Option("se3-compact,cnn-compact", "--models", help="Comma-separated networks."),
    fractions: str = typer.Option("1,0.5,0.25,0.125", "--fractions"),
    epochs: int = typer.Option(100, "--epochs", help="Epochs at fraction 1."),
    burn_in: int = typer.Option(40, "--burn-in", help="Burn-in epochs at fraction 1."),
    lr_decay: float = typer.Option(0.94, "--lr-decay", help="Per-epoch decay at fraction 1."),
    scale_epochs: bool = typer.Option(True, "--scale-epochs/--no-scale-epochs"),
    lr: str = typer.Option("5e-4", "--lr", help="Learning rate, or MODEL=LR,... per model."),
    batch_size: int = typer.Option(16, "--batch-size"),
    grid_size: int = typer.Option(50, "--grid-size"),
    voxel_size: float = typer.Option(2.0, "--voxel-size"),
    sigma: float = typer.Option(1.0, "--sigma"),
    val_splits: str = typer.Option("7", "--val-splits"),
    test_splits: str = typer.Option("8,9", "--test-splits"),
    rotations: int = typer.Option(0, "--rotations", help="Random-rotation passes in the test evaluation."),
    device: str = typer.Option("auto", "--device"),
    seed: int = typer.Option(0, "--seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    console = Console(stderr=True)
    names = [m.strip() for m in models.split(",") if m.strip()]
    fracs = sorted((float(f) for f in fractions.split(",")), reverse=True)
    lrs = _per_model(lr, names)
    vals = tuple(int(s) for s in val_splits.split(",") if s.strip())
    tests = tuple(int(s) for s in test_splits.split(",") if s.strip())
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for model in names:
        for f in fracs:
            scale = 1 / f if scale_epochs else 1
            run_dir = out / model / f"fraction-{f:g}"
            console.print(f"[bold]{model}[/], training fraction {f:g} -> {run_dir}")
            config = TrainConfig(
                data=str(data), model=model, out=str(run_dir), epochs=math.ceil(epochs * scale),
                burn_in=math.ceil(burn_in * scale), lr_decay=lr_decay ** (1 / scale), lr=lrs[model],
                batch_size=batch_size, val_splits=vals, test_splits=tests, train_fraction=f,
                grid_size=grid_size, voxel_size=voxel_size, sigma=sigma, device=device, seed=seed,
                resume=True, progress=progress,
            )
            best = train(config, console)["best"]
            metrics = evaluate(run_dir / "best.json", data, rotations=rotations, device=device, seed=seed)
            meta = json.loads((run_dir / "best.json").read_text())
            results.append({
                "model": model, "fraction": f, "epochs": config.epochs, "n_train": meta["data"]["n_train"],
                "n_parameters": metrics["n_parameters"], "best_epoch": best["epoch"], "val_accuracy": best["val_acc"],
                "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"],
                "rotated_test_accuracy": metrics["rotation"]["accuracy_mean"],
            })
            console.print(f"  test accuracy {metrics['accuracy']:.4f} (best epoch {best['epoch']})")
            write_json(out / "results.json", {"data": str(data), "seed": seed, "results": results})
    plot(results, out / "data_efficiency.png")
    atomic_write(out / "data_efficiency.md", table(results).encode())
    Console().print(table(results))
    console.print(f"wrote {out / 'results.json'}, {out / 'data_efficiency.png'}, {out / 'data_efficiency.md'}")


if __name__ == "__main__":
    cli()
