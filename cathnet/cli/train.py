"""``cathnet train``: train a network on a CATH dataset (single process or torchrun)."""
from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from cathnet.cli.app import app
from cathnet.cli.common import MAX_SEED, PRECISION_HELP, Canonical, Precision, Task, bounded, fail, report_error
from cathnet.errors import CathnetError

#: ``--model`` choices, for the help text (a test keeps it equal to ``cathnet.networks.available()``)
NETWORK_NAMES = ("cnn-compact", "cnn-env", "cnn-resnet34", "se3-compact", "se3-env", "se3resnet34")


class Fields(str, Enum):
    """``--fields``: the names in :data:`cathnet.fields.FIELDS` and :data:`cathnet.fields.FRAME`
    (a test keeps them equal), written out so that the CLI starts without torch."""

    ss_orientation = "ss-orientation"
    ss_pairing = "ss-pairing"
    frame = "frame"


def parse_splits(value: str, option: str) -> tuple[int, ...]:
    """"8,9" → (8, 9); "" → ()."""
    try:
        return tuple(int(s) for s in value.split(",") if s.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of split numbers", param_hint=option) from None


def parse_model_args(pairs: list[str]) -> dict:
    """["widths=[8,16]", "norm=group"] → {"widths": [8, 16], "norm": "group"} (JSON values, else strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--model-arg")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@app.command()
def train(
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="Dataset .npz from `cathnet dataset build`."),
    model: str = typer.Option(..., "--model", help=f"Network: {', '.join(NETWORK_NAMES)}."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Folder for checkpoints, best.*, metrics.jsonl."),
    model_arg: list[str] = typer.Option([], "--model-arg", help="KEY=VALUE passed to the network constructor (JSON value), repeatable."),
    task: Task = typer.Option(Task.cath, "--task", help="cath (architecture per domain; dataset --atoms ca/ca-ss/...) or aa (amino acid per residue; dataset --atoms environment)."),
    oriented: bool = typer.Option(False, "--oriented", help="--task aa: put each environment in its residue's backbone frame (default: the structure's axes)."),
    backbone_channels: bool = typer.Option(False, "--backbone-channels", help="--task aa: the residue's own N, C, O and a virtual Cβ in channels of their own (shows the backbone frame without fixing axes)."),
    fields: Fields = typer.Option(None, "--fields", help="Oriented input fields: --task cath on a ca-ss dataset: ss-orientation (helix and strand directions, order 1, and axes, order 2, at every Cα), ss-pairing (the same plus parallel and antiparallel strand pairing as two scalar channels); --task aa with --backbone-channels: frame (Cα→N, Cα→C, Cα→Cβ as order-1 fields at the centre)."),
    canonical: Canonical = typer.Option(None, "--canonical", help="--task cath: principal turns every structure into its principal-axes frame before voxelization (then any rotation of the input leaves the prediction of a steerable network unchanged); none: as is."),
    epoch_size: int = typer.Option(None, "--epoch-size", min=1, help="Items per epoch, from a stream of seeded passes (default: one pass)."),
    val_size: int = typer.Option(None, "--val-size", min=1, help="Validate on a fixed seeded subset of this many items."),
    balance: bool = typer.Option(False, "--balance", help="Draw training items with class-balanced probabilities."),
    epochs: int = typer.Option(100, "--epochs", min=1),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Global batch size (split across torchrun processes)."),
    lr: float = typer.Option(5e-4, "--lr", callback=bounded(0, 10), help="Adam learning rate."),
    lr_decay: float = typer.Option(0.94, "--lr-decay", callback=bounded(0, 1), help="Learning-rate factor per epoch after the burn-in."),
    burn_in: int = typer.Option(40, "--burn-in", min=0, help="Epochs at the initial learning rate."),
    l1: float = typer.Option(1e-7, "--l1", callback=bounded(0, 1), help="L1 penalty on weights."),
    l2: float = typer.Option(1e-7, "--l2", callback=bounded(0, 1), help="L2 penalty on weights."),
    augment: bool = typer.Option(None, "--augment/--no-augment", help="Random rotations of the training structures (default: on for CNNs, off for equivariant networks)."),
    val_splits: str = typer.Option("7", "--val-splits", help="Validation splits, comma-separated."),
    test_splits: str = typer.Option("8,9", "--test-splits", help="Test splits (excluded from training), comma-separated."),
    train_fraction: float = typer.Option(1.0, "--train-fraction", callback=bounded(0, 1), help="Class-stratified fraction of the training domains (seeded)."),
    grid_size: int = typer.Option(None, "--grid-size", min=1, max=256, help="Voxels per side (default: 50 for cath, 16 for aa)."),
    voxel_size: float = typer.Option(None, "--voxel-size", callback=bounded(0.01, 100), help="Voxel edge in Å (default: 2 for cath, 1.5 for aa)."),
    sigma: float = typer.Option(None, "--sigma", callback=bounded(0.01, 100), help="Gaussian atom width in Å (default: half the voxel edge)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: Precision = typer.Option(Precision.auto, "--precision", help=PRECISION_HELP),
    patience: int = typer.Option(None, "--patience", min=1, max=10_000, help="Stop early when validation accuracy has not improved for this many epochs."),
    time_limit: float = typer.Option(None, "--time-limit", min=0.1, help="Minutes of training: no epoch starts that would end later (judged by the longest epoch so far)."),
    compile_step: bool = typer.Option(False, "--compile", help="torch.compile the training step (needs a C++ compiler; about a minute to compile, then faster)."),
    init: Path = typer.Option(None, "--init", exists=True, help="Start from this trained model's weights (NAME.json, e.g. RUN/best.json or a released model; same network, task and input; dropout may differ; a steerable network may be wider, --model-arg widths=..., head_scalars=... or head_hidden=..., and starts as the same function) with a fresh optimizer and learning-rate schedule: a warm restart, fine-tuning on other data, or a widened network."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress bar; without it, one line per epoch (for logs)."),
) -> None:
    """Train a network on a dataset built by `cathnet dataset build` (--task cath or aa).

    Adam, exponential learning-rate decay, on-the-fly voxelization; the best validation
    epoch is kept as OUT/best.{safetensors,json}. Data-parallel:
    torchrun --no-python --nproc-per-node N cathnet train ..."""
    from cathnet import networks
    from cathnet.train import TrainConfig
    from cathnet.train import train as run_training

    if model not in networks.NETWORKS:
        raise typer.BadParameter(f"unknown network {model!r}; available: {', '.join(networks.available())}", param_hint="--model")
    if device not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter(f"{device!r} is not auto, cpu or cuda", param_hint="--device")
    if (oriented or backbone_channels) and task is not Task.aa:
        raise typer.BadParameter("--oriented and --backbone-channels apply to --task aa only", param_hint="--task")
    if fields is not None and (fields is Fields.frame) != (task is Task.aa):
        raise typer.BadParameter(f"--fields {fields.value} does not apply to --task {task.value}", param_hint="--fields")
    if oriented and augment:
        raise typer.BadParameter("--augment would rotate the environments out of their backbone frame", param_hint="--oriented")
    config = TrainConfig(
        data=str(data), model=model, out=str(out), model_kwargs=parse_model_args(model_arg), task=task.value,
        epochs=epochs, batch_size=batch_size, lr=lr, lr_decay=lr_decay, burn_in=burn_in, l1=l1, l2=l2,
        augment=augment, val_splits=parse_splits(val_splits, "--val-splits"),
        test_splits=parse_splits(test_splits, "--test-splits"), train_fraction=train_fraction,
        grid_size=grid_size, voxel_size=voxel_size, sigma=sigma, oriented=oriented, backbone_channels=backbone_channels,
        fields=None if fields is None else fields.value, epoch_size=epoch_size,
        canonical=None if canonical in (None, Canonical.none) else canonical.value,
        val_size=val_size, balance=balance, device=device, precision=precision.value, compile=compile_step, patience=patience, time_limit=time_limit, seed=seed,
        init=None if init is None else str(init),
        resume=resume, progress=progress,
    )
    console = Console(stderr=True)
    try:
        result = run_training(config, console)
    except CathnetError as exc:
        fail(exc)
    except OSError as exc:
        report_error(exc.filename or out, exc.strerror or str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print(f"interrupted; continue with --resume --out {out}")
        raise typer.Exit(130) from None
    best = result["best"]
    if os.environ.get("RANK", "0") == "0":
        console.print(f"best epoch {best['epoch']}: val acc {best['val_acc']:.4f}, loss {best['val_loss']:.4f} -> {out / 'best.safetensors'}")
