"""Data efficiency (paper Fig. 3): steerable vs plain CNN across training-set sizes.

The paper's setting: Cα densities only (a dataset of ``--atoms ca``), 50³ grids of 2 Å
voxels, σ = 1 Å; the same validation and test splits for every run. For every model,
training fraction (class-stratified, nested across fractions for one seed) and seed (a
different subset and initialisation), trains with ``cathnet.train`` and tests the best
validation checkpoint once. Every run has the same schedule in optimiser steps: an epoch
is ``--epoch-size`` items drawn from the run's subset (repeated passes when the subset is
smaller), so a small fraction is not starved of steps by a learning rate that decays per
pass. Validation after every epoch; early stopping selects the epoch of the best validation
accuracy out of ``--epochs``. ``--patience N`` would also end a run after N epochs without a
better one, but the steerable network's validation accuracy swings by ±5 points from epoch
to epoch, and a patience of 10 ended its runs at 14–17 epochs while its training accuracy
was still rising, so by default every run has the full schedule.

Resumable and piecewise: finished runs are read back from ``--json`` and skipped, an
interrupted run continues from its checkpoint folder, and ``--max-runs N`` stops after N
runs (pieces of a few CPU hours). Several workers may share the grid on one machine (e.g.
two at one thread each on two cores): each claims a run with a lock next to its checkpoint
folder and merges its result into ``--json`` under a lock (POSIX ``fcntl``). Under
``torchrun`` each run is data parallel instead, all runs in one process group. Writes
``--json`` after every run, and the plot (mean ± std per point, log₂ x-axis, parameter
counts in the legend) and a Markdown table when a worker stops.

    python experiments/data_efficiency.py --data cath10-ca.npz --max-runs 2
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import statistics
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch.distributed as dist
import typer
from rich.console import Console

from cathnet.evaluate import evaluate
from cathnet.fileio import atomic_write, write_json
from cathnet.networks import build, n_parameters
from cathnet.train import TrainConfig, distributed, train

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
DOCS = Path(__file__).resolve().parent.parent / "docs"
#: the pair compared, and their constructor arguments (the CNN is the steerable network's plain twin)
MODELS: dict[str, dict] = {"se3-compact": {}, "cnn-compact": {}}


def _key(run: dict) -> tuple:
    return run["model"], run["fraction"], run["seed"]


@contextmanager
def _lock(path: Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the block; yields whether it
    was taken (always, when ``wait``). Released when the block ends or the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _read(json_path: Path, config: dict) -> dict:
    """Runs so far in ``json_path`` (none if it does not exist), checked to be of ``config``."""
    result = json.loads(json_path.read_text()) if json_path.exists() else {"config": config, "runs": []}
    if result["config"] != config:
        raise typer.BadParameter(f"{json_path} holds runs of another configuration; use another --json",
                                 param_hint="--json")
    return result


def summary(runs: list[dict]) -> dict[tuple[str, float], tuple[float, float, int]]:
    """(model, fraction) → (mean, sample std (0 for one seed), number of seeds) of the test accuracy."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["fraction"]), []).append(r["test_accuracy"])
    return {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


def differences(runs: list[dict], first: str, second: str) -> dict[float, list[float]]:
    """Fraction → test accuracy of ``first`` minus ``second``, paired by seed (same subset)."""
    acc = {_key(r): r["test_accuracy"] for r in runs}
    out: dict[float, list[float]] = {}
    for m, f, seed in sorted(acc):
        if m == first and (second, f, seed) in acc:
            out.setdefault(f, []).append(acc[m, f, seed] - acc[second, f, seed])
    return out


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
    paired = differences(result["runs"], *models[:2]) if len(models) >= 2 else {}
    header = " | ".join(models) + (f" | {models[0]} − {models[1]}, paired by seed" if paired else "")
    lines = [f"| training fraction | {header} |", "| --- |" + " --- |" * (len(models) + bool(paired))]
    for f in sorted({f for _, f in stats}, reverse=True):
        cells = [f"{stats[m, f][0]:.3f} ± {stats[m, f][1]:.3f} ({stats[m, f][2]} seed{'s' * (stats[m, f][2] > 1)})"
                 if (m, f) in stats else ""
                 for m in models]
        if paired:
            d = paired.get(f, [])
            cells.append(f"{statistics.mean(d):+.3f} ({' '.join(f'{x:+.3f}' for x in d)})" if d else "")
        size = next((n for (m, g), n in n_train.items() if g == f), "?")
        lines.append(f"| {f:g} ({size:,} domains) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def runs_table(result: dict) -> str:
    """Markdown: one row per run (best epoch, validation and test accuracy)."""
    epochs = result["config"]["epochs"]
    lines = [f"| model | fraction | seed | training domains | best epoch (of {epochs}) | val top-1 | test top-1 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(result["runs"], key=lambda r: (r["seed"], -r["fraction"], r["model"])):
        lines.append(f"| `{r['model']}` | {r['fraction']:g} | {r['seed']} | {r['n_train']:,} | {r['best_epoch']} | "
                     f"{r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def _grid(grid: list[tuple[str, float, int]], world: int, base: TrainConfig, config: dict, json_path: Path,
          runs_dir: Path, max_runs: int | None, console: Console) -> None:
    """Train and test the runs of ``grid`` not yet in ``json_path``. One process: runs are claimed by
    locks, so several workers share the grid. Under ``torchrun`` (``world`` > 1) every rank trains the
    same runs in one process group, rank 0 tests them while the others wait at a barrier."""
    lead, shared = os.environ.get("RANK", "0") == "0", world == 1
    started, done_at_start = 0, {_key(r) for r in _read(json_path, config)["runs"]}
    for model, f, seed in grid:
        if max_runs is not None and started >= max_runs:
            break
        out = runs_dir / f"{model}-f{f:g}-s{seed}"
        # under torchrun all ranks train the same runs together: no claims (rank 1 would wait on rank 0), and
        # the runs done when they started, so that a rank reading the JSON late does not skip a run the others train
        claim = _lock(runs_dir / f"{out.name}.lock", wait=False) if shared else nullcontext(True)
        with claim as mine:
            done = {_key(r) for r in _read(json_path, config)["runs"]} if shared else done_at_start
            if not mine or (model, f, seed) in done:
                continue  # another worker holds it, or it is done
            started += 1
            if lead:
                console.print(f"[bold]{model}[/], fraction {f:g}, seed {seed} -> {out}")
            run = replace(base, model=model, out=str(out), model_kwargs=MODELS[model], train_fraction=f, seed=seed)
            best = train(run, console)["best"]
            if lead:
                _test(run, best, json_path, runs_dir, config, console)
            if not shared:
                dist.barrier()  # the other ranks wait for rank 0's test before the next run


def _test(trained: TrainConfig, best: dict, json_path: Path, runs_dir: Path, config: dict, console: Console) -> None:
    """Test the best validation checkpoint of a run once and merge the run into ``json_path``."""
    out, data = Path(trained.out), Path(trained.data)
    tested = evaluate(out / "best.json", data, rotations=0, device=trained.device, seed=trained.seed)
    if tested["input"]["atoms"] != "ca":
        atoms = tested["input"]["atoms"]
        raise typer.BadParameter(f"{data} holds {atoms} atoms; the paper's setting is --atoms ca")
    meta = json.loads((out / "best.json").read_text())
    run = {"model": trained.model, "fraction": trained.train_fraction, "seed": trained.seed,
           "n_train": meta["data"]["n_train"], "best_epoch": best["epoch"], "val_accuracy": best["val_acc"],
           "test_accuracy": tested["accuracy"]}
    with _lock(runs_dir / f"{json_path.name}.lock"):
        result = _read(json_path, config)
        result["runs"].append(run)
        write_json(json_path, result)
    console.print(f"  best epoch {best['epoch']}, val {best['val_acc']:.4f}, test {tested['accuracy']:.4f}")


@cli.command()
def main(
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="Dataset of --atoms ca."),
    json_path: Path = typer.Option(DOCS / "data_efficiency.json", "--json"),
    png: Path = typer.Option(DOCS / "data_efficiency.png", "--png"),
    runs_dir: Path = typer.Option(Path("runs/data_efficiency"), "--runs", help="Checkpoint folders."),
    fractions: str = typer.Option("1,0.5,0.25,0.125,0.0625", "--fractions"),
    seeds: str = typer.Option("0,1,2", "--seeds"),
    epochs: int = typer.Option(30, "--epochs", help="Epochs of every run (learning rate ×0.9 per epoch)."),
    epoch_size: int = typer.Option(2048, "--epoch-size", min=1, help="Training items per epoch, at every fraction."),
    patience: int = typer.Option(None, "--patience", help="Stop after this many epochs without a better val accuracy."),
    lr: float = typer.Option(1e-3, "--lr"),
    lr_decay: float = typer.Option(0.9, "--lr-decay"),
    burn_in: int = typer.Option(4, "--burn-in"),
    batch_size: int = typer.Option(16, "--batch-size"),
    val_splits: str = typer.Option("8", "--val-splits"),
    test_splits: str = typer.Option("9", "--test-splits"),
    max_runs: int = typer.Option(None, "--max-runs", min=1, help="Stop after this many runs (a piece of the grid)."),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    report: bool = typer.Option(False, "--report", help="Only write the plot and print the tables of --json."),
) -> None:
    console = Console(stderr=True)
    lead = os.environ.get("RANK", "0") == "0"
    val, test = tuple(int(s) for s in val_splits.split(",")), tuple(int(s) for s in test_splits.split(","))
    config = {
        "grid_size": 50, "voxel_size": 2.0, "sigma": 1.0, "atoms": "ca", "epochs": epochs, "epoch_size": epoch_size,
        "patience": patience,
        "lr": lr, "lr_decay": lr_decay, "burn_in": burn_in, "batch_size": batch_size,
        "val_splits": list(val), "test_splits": list(test),
        "models": {m: {"kwargs": kw, "n_parameters": n_parameters(build(m, in_channels=1, n_classes=10, **kw))}
                   for m, kw in MODELS.items()},
    }
    grid = [(m, float(f), int(s)) for s in seeds.split(",") for f in fractions.split(",") for m in MODELS]
    base = TrainConfig(
        data=str(data), model="", out="", epochs=epochs, epoch_size=epoch_size, patience=patience, lr=lr,
        lr_decay=lr_decay, burn_in=burn_in, batch_size=batch_size, val_splits=val, test_splits=test,
        grid_size=50, voxel_size=2.0, sigma=1.0, device=device, resume=True, progress=progress,
    )
    if not report:
        with distributed(device) as world:
            _grid(grid, world, base, config, json_path, runs_dir, max_runs, console)
    result = _read(json_path, config)
    if lead and result["runs"]:
        plot(result, png)
        print(table(result))
        print(runs_table(result))
        wrote = f"{png}" if report else f"{json_path} and {png}"
        console.print(f"{len(result['runs'])} of {len(grid)} runs done; wrote {wrote}")


if __name__ == "__main__":
    cli()
