"""Data efficiency (paper Fig. 3): steerable vs plain CNN across training-set sizes.

The paper's setting: Cα densities only (a dataset of ``--atoms ca``), 50³ grids of 2 Å
voxels, σ = 1 Å; the same validation and test splits for every run. For every model,
training fraction (class-stratified, nested across fractions for one seed) and seed (a
different subset and initialisation), trains with ``cathnet.train`` until validation
accuracy has not improved for ``--patience`` epochs (at most ``--epochs / fraction``
epochs, so small fractions may take as many steps as the full set), then tests the best
validation checkpoint once.

Resumable and piecewise: finished runs are read back from ``--json`` and skipped, an
interrupted run continues from its checkpoint folder, and ``--max-runs N`` stops after N
runs (pieces of a few CPU hours). One run at a time; under ``torchrun`` each run is data
parallel. Writes ``--json`` after every run, and the plot (mean ± std per point, log₂
x-axis, parameter counts in the legend) and a Markdown table at the end of each piece.

    python experiments/data_efficiency.py --data cath10-ca.npz --max-runs 2
"""
from __future__ import annotations

import io
import json
import math
import os
import statistics
from pathlib import Path

import typer
from rich.console import Console

from cathnet.evaluate import evaluate
from cathnet.fileio import atomic_write, write_json
from cathnet.networks import build, n_parameters
from cathnet.train import TrainConfig, train

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
DOCS = Path(__file__).resolve().parent.parent / "docs"
#: the pair compared, and their constructor arguments (the CNN is the steerable network's plain twin)
MODELS = {"se3-compact": {}, "cnn-compact": {}}


def _key(run: dict) -> tuple:
    return run["model"], run["fraction"], run["seed"]


def summary(runs: list[dict]) -> dict[tuple[str, float], tuple[float, float, int]]:
    """(model, fraction) → (mean, std, number of seeds) of the test accuracy."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["fraction"]), []).append(r["test_accuracy"])
    return {k: (statistics.mean(v), statistics.pstdev(v), len(v)) for k, v in groups.items()}


def plot(result: dict, path: Path) -> None:
    """Mean ± std test accuracy against training fraction (log₂ axis), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = summary(result["runs"])
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for model, info in result["config"]["models"].items():
        points = sorted((f, *v) for (m, f), v in stats.items() if m == model)
        if points:
            f, mean, std, _ = zip(*points)
            label = f"{model} ({info['n_parameters']:,} parameters)"
            ax.errorbar(f, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    fractions = sorted({f for _, f in stats})
    ax.set_xticks(fractions, [f"1/{round(1 / f)}" if f < 1 else "1" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("fraction of the training set")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title("CATH architecture, 50³ Cα grids: data efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def table(result: dict) -> str:
    """Markdown: one row per fraction, mean ± std test accuracy (seeds) per model."""
    stats = summary(result["runs"])
    models = list(result["config"]["models"])
    n_train = {(r["model"], r["fraction"]): r["n_train"] for r in result["runs"]}
    lines = ["| training fraction | " + " | ".join(models) + " |", "| --- |" + " --- |" * len(models)]
    for f in sorted({f for _, f in stats}, reverse=True):
        cells = [f"{stats[m, f][0]:.3f} ± {stats[m, f][1]:.3f} ({stats[m, f][2]} seeds)" if (m, f) in stats else ""
                 for m in models]
        size = next((n for (m, g), n in n_train.items() if g == f), "?")
        lines.append(f"| {f:g} ({size} domains) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@cli.command()
def main(
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="Dataset of --atoms ca."),
    json_path: Path = typer.Option(DOCS / "data_efficiency.json", "--json"),
    png: Path = typer.Option(DOCS / "data_efficiency.png", "--png"),
    runs_dir: Path = typer.Option(Path("runs/data_efficiency"), "--runs", help="Checkpoint folders."),
    fractions: str = typer.Option("1,0.5,0.25,0.125,0.0625", "--fractions"),
    seeds: str = typer.Option("0,1,2", "--seeds"),
    epochs: int = typer.Option(40, "--epochs", help="Most epochs at fraction 1 (fraction f: epochs / f)."),
    patience: int = typer.Option(6, "--patience", help="Stop after this many epochs without a better val accuracy."),
    lr: float = typer.Option(1e-3, "--lr"),
    lr_decay: float = typer.Option(0.9, "--lr-decay"),
    burn_in: int = typer.Option(4, "--burn-in"),
    batch_size: int = typer.Option(16, "--batch-size"),
    val_splits: str = typer.Option("8", "--val-splits"),
    test_splits: str = typer.Option("9", "--test-splits"),
    max_runs: int = typer.Option(None, "--max-runs", min=1, help="Stop after this many runs (a piece of the grid)."),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    console = Console(stderr=True)
    lead = os.environ.get("RANK", "0") == "0"
    config = {
        "grid_size": 50, "voxel_size": 2.0, "sigma": 1.0, "atoms": "ca", "epochs": epochs, "patience": patience,
        "lr": lr, "lr_decay": lr_decay, "burn_in": burn_in, "batch_size": batch_size,
        "val_splits": [int(s) for s in val_splits.split(",")], "test_splits": [int(s) for s in test_splits.split(",")],
        "models": {m: {"kwargs": kw, "n_parameters": n_parameters(build(m, in_channels=1, n_classes=10, **kw))}
                   for m, kw in MODELS.items()},
    }
    result = json.loads(json_path.read_text()) if json_path.exists() else {"config": config, "runs": []}
    if result["config"] != config:
        raise typer.BadParameter(f"{json_path} holds runs of another configuration; use another --json",
                                 param_hint="--json")
    done = {_key(r) for r in result["runs"]}
    grid = [(m, float(f), int(s)) for s in seeds.split(",") for f in fractions.split(",") for m in MODELS]
    todo = [k for k in grid if k not in done][:max_runs]
    for model, f, seed in todo:
        out = runs_dir / f"{model}-f{f:g}-s{seed}"
        console.print(f"[bold]{model}[/], fraction {f:g}, seed {seed} -> {out}")
        best = train(TrainConfig(
            data=str(data), model=model, out=str(out), model_kwargs=MODELS[model], epochs=math.ceil(epochs / f),
            patience=patience, lr=lr, lr_decay=lr_decay, burn_in=burn_in, batch_size=batch_size,
            val_splits=tuple(config["val_splits"]), test_splits=tuple(config["test_splits"]), train_fraction=f,
            grid_size=50, voxel_size=2.0, sigma=1.0, device=device, seed=seed, resume=True, progress=progress,
        ), console)["best"]
        if not lead:
            continue
        test = evaluate(out / "best.json", data, rotations=0, device=device, seed=seed)
        if test["input"]["atoms"] != "ca":
            raise typer.BadParameter(f"{data} holds {test['input']['atoms']} atoms; the paper's setting is --atoms ca")
        meta = json.loads((out / "best.json").read_text())
        result["runs"].append({
            "model": model, "fraction": f, "seed": seed, "n_train": meta["data"]["n_train"],
            "best_epoch": best["epoch"], "val_accuracy": best["val_acc"], "test_accuracy": test["accuracy"],
        })
        write_json(json_path, result)
        console.print(f"  best epoch {best['epoch']}, val {best['val_acc']:.4f}, test {test['accuracy']:.4f}")
    if lead and result["runs"]:
        plot(result, png)
        Console().print(table(result))
        console.print(f"{len(result['runs'])} of {len(grid)} runs done; wrote {json_path} and {png}")


if __name__ == "__main__":
    cli()
