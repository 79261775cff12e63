"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

A released model is two files side by side, ``NAME.safetensors`` (weights) and
``NAME.json`` (self-describing metadata, format :data:`MODEL_FORMAT`): network name and
config, voxelization parameters, class codes and names, data checksum, parameter count,
metrics and the weights' SHA-256. :func:`load_model` rebuilds the network from it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from cathnet import networks
from cathnet.fileio import atomic_write, write_json

__all__ = [
    "MODEL_FORMAT",
    "CheckpointError",
    "cpu_tensors",
    "read_json",
    "save_model",
    "load_model",
    "optimizer_tensors",
    "load_optimizer",
]

MODEL_FORMAT = "cathnet-model/1"


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt or inconsistent (one-line message)."""


def read_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON file ({exc})") from None


def cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached contiguous CPU copies (safetensors refuses tensors sharing storage)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def save_model(stem: str | Path, model: nn.Module, metadata: dict) -> dict:
    """Write ``stem.safetensors`` then ``stem.json`` (``metadata`` plus the network
    config, parameter count and weights checksum); returns the JSON written."""
    stem = Path(stem)
    blob = st_save(cpu_tensors(model.state_dict()), metadata={"format": MODEL_FORMAT})
    weights = stem.with_name(stem.name + ".safetensors")
    atomic_write(weights, blob)
    meta = {
        "format": MODEL_FORMAT,
        **metadata,
        "network": {
            "name": model.config["name"],
            "config": model.config,
            "n_parameters": networks.n_parameters(model),
            "equivariant": networks.is_equivariant(model.config),
        },
        "weights": {"file": weights.name, "sha256": hashlib.sha256(blob).hexdigest()},
    }
    write_json(stem.with_name(stem.name + ".json"), meta)
    return meta


def _stem(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "best"
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a model from ``NAME.json``/``NAME.safetensors`` (either, or the stem, or a
    training folder meaning its ``best``); verifies format and weights checksum.
    Returns the network in eval mode and its metadata."""
    stem = _stem(path)
    meta = read_json(stem.with_name(stem.name + ".json"))
    if meta.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{stem}.json: format {meta.get('format')!r}, expected {MODEL_FORMAT!r}")
    weights = stem.with_name(meta["weights"]["file"])
    try:
        blob = weights.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{weights}: cannot read weights ({exc.strerror})") from None
    if hashlib.sha256(blob).hexdigest() != meta["weights"]["sha256"]:
        raise CheckpointError(f"{weights}: checksum does not match {stem}.json (corrupt or replaced)")
    try:
        model = networks.from_config(meta["network"]["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{stem}.json: cannot rebuild network ({exc})") from None
    model.load_state_dict(st_load(blob))
    return model.to(device).eval(), meta


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (``"<param>.<key>"``) and a JSON part."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return cpu_tensors(tensors), {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict] = {}
    for name, value in [*tensors.items(), *rest["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
