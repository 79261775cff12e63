"""The folder of a training run: per epoch the weights and optimizer state
(``epoch-NNNN.safetensors``, ``epoch-NNNN.optim.safetensors``, only the last kept), the
best model so far (``best.*``, :func:`cathnet.checkpoint.save_model`), ``metrics.jsonl``
and ``last.json`` (format :data:`STATE_FORMAT`), which names them. A run resumes only
with the options and the dataset it was started with."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import nn

from cathnet.checkpoint import (
    CheckpointError,
    cpu_tensors,
    load_model,
    load_optimizer,
    load_tensors,
    load_weights,
    model_files,
    optimizer_tensors,
    read_json,
    require_fields,
    save_model,
    sibling,
)
from cathnet.errors import TrainError
from cathnet.fileio import atomic_write, finite_json, write_json
from cathnet.networks import is_equivariant
from cathnet.networks.widen import widen

#: network options that change training, not the weights: ``--init`` may set them afresh
REGULARISATION = ("dropout", "head_dropout")
#: network options a steerable network may grow in under ``--init`` (fields per order and stage, head scalars, head MLP)
WIDTHS = ("widths", "head_scalars", "head_hidden")

__all__ = ["REGULARISATION", "RESUME_KEYS", "STATE_FORMAT", "WIDTHS", "load_initial", "load_state", "save_epoch",
           "state_key"]

STATE_FORMAT = "cathnet-train-state/1"
_STATE_FIELDS = {"config": dict, "data_sha256": str, "weights": str, "optimizer": str, "optimizer_state": dict,
                 "epoch": int, "best": dict}
#: Options that must not change when a run is resumed.
RESUME_KEYS = (
    "model", "model_kwargs", "task", "batch_size", "lr", "lr_decay", "burn_in", "l1", "l2",
    "augment", "val_splits", "test_splits", "train_fraction", "grid_size", "voxel_size", "sigma", "seed",
    "oriented", "backbone_channels", "fields", "epoch_size", "val_size", "balance", "canonical", "init",
)


def state_key(config: dict, grid: dict) -> dict:
    """The options of ``config`` a resumed run must share, with the ``grid`` as actually used."""
    return {**{k: v for k, v in config.items() if k in RESUME_KEYS}, **grid}


def _epoch(line: str) -> float:
    """The epoch of a metrics.jsonl line; infinity for a damaged one (dropped on resume)."""
    try:
        return float(json.loads(line)["epoch"])
    except (ValueError, TypeError, KeyError):
        return math.inf


def load_state(
    out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, *, key: dict, defaults: dict, data_sha256: str,
    data: str, trim_metrics: bool,
) -> tuple[int, dict]:
    """Load the last epoch of the run in ``out`` into ``model`` and ``optimizer`` after
    checking that its options (:func:`state_key`; ``defaults`` for those its checkpoint
    predates) and dataset are ``key`` and ``data_sha256``; drop the metrics of later
    epochs when ``trim_metrics``. Returns the epoch and the best epoch's metrics."""
    path = out / "last.json"
    state = read_json(path)
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: format {state.get('format')!r}, expected {STATE_FORMAT!r}")
    require_fields(state, _STATE_FIELDS, path)
    saved, now = state["config"], json.loads(json.dumps(key))
    changed = [f"{k} ({saved.get(k, defaults[k])!r} -> {now[k]!r})" for k in now if saved.get(k, defaults[k]) != now[k]]
    if changed:
        raise TrainError(f"--resume: options differ from the checkpoint in {out}: {', '.join(changed)}")
    if state["data_sha256"] != data_sha256:
        raise TrainError(f"--resume: {data} is not the dataset the checkpoint was trained on")
    weights, optim = (sibling(out, state[k], k, path) for k in ("weights", "optimizer"))
    load_weights(model, load_tensors(weights), weights)
    try:
        load_optimizer(optimizer, load_tensors(optim), state["optimizer_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{optim}: optimizer state does not fit ({type(exc).__name__}: {exc})") from None
    metrics = out / "metrics.jsonl"
    if trim_metrics and metrics.exists():
        lines = [line for line in metrics.read_text().splitlines() if _epoch(line) <= state["epoch"]]
        atomic_write(metrics, "".join(line + "\n" for line in lines).encode())
    return state["epoch"], state["best"]


def _weights_config(network: nn.Module) -> dict:
    """The network's config without its :data:`REGULARISATION` options."""
    config: dict = network.config  # type: ignore[assignment]  # every cathnet network has its registry config
    return {k: v for k, v in config.items() if k not in REGULARISATION}


def load_initial(model: nn.Module, path: str, *, task: dict) -> None:
    """Start ``model`` from the weights of the trained model ``path`` (``--init``: a warm
    restart or fine-tuning; the optimizer and learning-rate schedule start afresh). Its
    network, task, input and classes must be ``model``'s and ``task``'s (:meth:`metadata`); the
    network's :data:`REGULARISATION` options (which no weight depends on) may differ, and a
    steerable network may be wider (:data:`WIDTHS`): it starts as the same function
    (:func:`cathnet.networks.widen.widen`)."""
    where = model_files(path)[0]
    net, meta = load_model(path)
    ours, theirs = (json.loads(json.dumps(_weights_config(n))) for n in (model, net))
    checks = [("task", task["task"], meta["task"]), ("input", task["input"], meta["input"]),
              ("classes", task["classes"]["codes"], meta["classes"]["codes"])]
    design = [{k: v for k, v in c.items() if k not in WIDTHS} for c in (ours, theirs)]
    if not (design[0] == design[1] and is_equivariant(ours)):
        checks.insert(0, ("network", ours, theirs))
    for key, a, b in checks:
        if json.loads(json.dumps(a)) != json.loads(json.dumps(b)):
            raise TrainError(f"--init {where}: its {key} differs from this run's ({b!r}, not {a!r})")
    if ours == theirs:
        load_weights(model, net.state_dict(), where)
        return
    try:
        widen(net, model)
    except ValueError as exc:
        raise TrainError(f"--init {where}: its network cannot be widened to this run's: {exc}") from None


def save_epoch(
    out: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, *, key: dict, data_sha256: str,
    best: dict, metrics: dict, best_metadata: dict | None,
) -> None:
    """Write epoch ``epoch`` of the run in ``out``: its weights and optimizer state,
    ``best.*`` when ``best_metadata`` is given (the epoch improved), ``last.json``, and its
    line of ``metrics.jsonl``; the previous epoch's files are removed."""
    stem = f"epoch-{epoch:04d}"
    atomic_write(out / f"{stem}.safetensors", st_save(cpu_tensors(model.state_dict())))
    tensors, rest = optimizer_tensors(optimizer)
    atomic_write(out / f"{stem}.optim.safetensors", st_save(tensors))
    if best_metadata is not None:
        save_model(out / "best", model, best_metadata)
    write_json(out / "last.json", {
        "format": STATE_FORMAT, "epoch": epoch, "weights": f"{stem}.safetensors",
        "optimizer": f"{stem}.optim.safetensors", "optimizer_state": rest, "best": best,
        "config": key, "data_sha256": data_sha256, "metrics": metrics,
    })
    for old in out.glob("epoch-*.safetensors"):
        if not old.name.startswith(stem + "."):
            old.unlink()
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(finite_json(metrics)) + "\n")
