"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

A released model is two files side by side, ``NAME.safetensors`` (weights) and
``NAME.json`` (self-describing metadata, format :data:`MODEL_FORMAT`): network name and
config, voxelization parameters, class codes and names, data checksum, parameter count,
metrics and the weights' SHA-256. :func:`load_model` rebuilds the network from it.

Loading trusts nothing: the JSON must be an object of the expected shape (grid and class
counts in range and consistent with the network), the ``weights`` field must name a
regular file in the same folder, the tensors must fit the network exactly and be finite.
Anything else is a :class:`CheckpointError` with one line naming the file and the problem.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from cathnet import networks
from cathnet.errors import CathnetError
from cathnet.fileio import UnreadableFile, atomic_write, read_regular, write_json
from cathnet.selection import SELECTIONS

__all__ = [
    "MODEL_FORMAT",
    "CheckpointError",
    "check_metadata",
    "cpu_tensors",
    "read_json",
    "require_fields",
    "save_model",
    "load_model",
    "load_tensors",
    "load_weights",
    "model_files",
    "sibling",
    "tensors_from",
    "optimizer_tensors",
    "load_optimizer",
]

MODEL_FORMAT = "cathnet-model/1"
MAX_JSON_BYTES = 64 << 20
MAX_WEIGHTS_BYTES = 4 << 30
MAX_GRID = 256  # voxels per side


class CheckpointError(CathnetError):
    """A checkpoint that is missing, corrupt or inconsistent (one-line message)."""


def read_json(path: str | Path) -> dict:
    """A JSON object from a regular file (one-line :class:`CheckpointError` otherwise)."""
    try:
        obj = json.loads(read_regular(path, MAX_JSON_BYTES))
    except UnreadableFile as exc:
        raise CheckpointError(str(exc)) from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a JSON object but {type(obj).__name__}")
    return obj


def sibling(folder: Path, name, what: str, where) -> Path:
    """``folder / name`` for a plain file name (no folder part): a checkpoint never
    points outside its own folder."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise CheckpointError(f"{where}: {what} {name!r} is not a file name in the same folder")
    return folder / name


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; refuses special files, truncation and NaN."""
    try:
        return tensors_from(read_regular(path, MAX_WEIGHTS_BYTES), path)
    except UnreadableFile as exc:
        raise CheckpointError(str(exc)) from None


def tensors_from(blob: bytes, where) -> dict[str, torch.Tensor]:
    """The tensors of safetensors bytes, all finite."""
    try:
        tensors = st_load(blob)
    except SafetensorError as exc:
        raise CheckpointError(f"{where}: not a readable safetensors file ({exc})") from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(f"{where}: tensor {bad[0]} has NaN or infinite values{more}")
    return tensors


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


def model_files(path: str | Path) -> tuple[Path, Path]:
    """(``NAME.json``, ``NAME.safetensors``) of a model named as :func:`load_model` takes it
    (the weights as usually named; the JSON's ``weights`` field has the last word)."""
    path = Path(path)
    if path.is_dir():
        path = path / "best"
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a model from ``NAME.json``/``NAME.safetensors`` (either, or the stem, or a
    training folder meaning its ``best``); verifies the metadata, the weights checksum and
    that the weights fit the network. Returns the network in eval mode and its metadata."""
    where, _ = model_files(path)
    meta = read_json(where)
    check_metadata(meta, where)
    weights = sibling(where.parent, meta["weights"]["file"], "weights file", where)
    try:
        blob = read_regular(weights, MAX_WEIGHTS_BYTES)
    except UnreadableFile as exc:
        raise CheckpointError(f"{weights}: cannot read weights ({exc.reason})") from None
    if hashlib.sha256(blob).hexdigest() != meta["weights"]["sha256"]:
        raise CheckpointError(f"{weights}: checksum does not match {where} (corrupt or replaced)")
    try:
        model = networks.from_config(meta["network"]["config"])
    except Exception as exc:  # noqa: BLE001 - any constructor error means a bad config
        raise CheckpointError(f"{where}: cannot rebuild network ({type(exc).__name__}: {exc})") from None
    load_weights(model, tensors_from(blob, weights), weights)
    return model.to(device).eval(), meta


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], where) -> None:
    """``model.load_state_dict(tensors)`` after checking names and shapes (one-line error)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    for problem, keys in (("missing tensor", missing), ("unexpected tensor", extra), ("wrong shape for", wrong)):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise CheckpointError(f"{where}: weights do not fit the network: {problem} {keys[0]}{more}")
    model.load_state_dict(tensors)


def require_fields(obj: dict, fields: dict[str, type], where) -> None:
    """Raise :class:`CheckpointError` unless ``obj[key]`` is a ``fields[key]`` for every key."""
    for key, kind in fields.items():
        if not isinstance(obj.get(key), kind) or (kind is int and isinstance(obj[key], bool)):
            _fail(where, f"{key!r} is missing or not a{'n' if kind.__name__[0] in 'aeiou' else ''} {kind.__name__}")


def _fail(where, message: str):
    raise CheckpointError(f"{where}: {message}")


def _positive_int(value, top: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= top


def _positive_float(value, top: float = 100.0) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 < value <= top


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_metadata(meta: dict, where) -> None:
    """Raise :class:`CheckpointError` unless ``meta`` is model metadata that loading,
    voxelizing and predicting can use."""
    if meta.get("format") != MODEL_FORMAT:
        _fail(where, f"format {meta.get('format')!r}, expected {MODEL_FORMAT!r}")
    for key in ("weights", "network", "input", "classes"):
        if not isinstance(meta.get(key), dict):
            _fail(where, f"{key!r} is missing or not an object")
    weights, config, inp, classes = meta["weights"], meta["network"].get("config"), meta["input"], meta["classes"]
    if not isinstance(weights.get("sha256"), str):
        _fail(where, "weights.sha256 is missing")
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        _fail(where, "network.config is missing or has no name")
    if not _positive_int(inp.get("grid_size"), MAX_GRID):
        _fail(where, f"input.grid_size {inp.get('grid_size')!r} is not an integer in 1..{MAX_GRID}")
    for key in ("voxel_size", "sigma") + (("radius",) if meta.get("task") == "aa" else ()):
        if not _positive_float(inp.get(key)):
            _fail(where, f"input.{key} {inp.get(key)!r} is not a number in (0, 100]")
    if not _positive_int(inp.get("n_channels"), 64) or inp["n_channels"] != config.get("in_channels"):
        _fail(where, f"input.n_channels {inp.get('n_channels')!r} does not match the network's {config.get('in_channels')!r} input channels")
    if "grid_size" in config and config["grid_size"] != inp["grid_size"]:
        _fail(where, f"input.grid_size {inp['grid_size']} differs from the network's {config['grid_size']!r}")
    if meta.get("task", "cath") != "aa" and inp.get("atoms") not in SELECTIONS:
        _fail(where, f"input.atoms {inp.get('atoms')!r} is not one of {', '.join(SELECTIONS)}")
    codes, names = classes.get("codes"), classes.get("names")
    if not _strings(codes) or not _strings(names) or len(codes) != len(names) or len(codes) != config.get("n_classes"):
        _fail(where, f"classes.codes and classes.names must be lists of {config.get('n_classes')!r} strings (the network's classes)")


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
