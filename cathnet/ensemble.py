"""Combine trained models of one task and input into one released ensemble model."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cathnet import checkpoint, networks

__all__ = ["combine"]

#: metadata that every member must share
_SHARED = ("task", "input", "classes")


def _shared(meta: dict, key: str):
    """``meta[key]`` as members must share it: class frequencies differ between folds."""
    value = meta.get(key)
    return {k: v for k, v in value.items() if k != "train_frequency"} if key == "classes" and value else value


def combine(members: list[str | Path], stem: str | Path) -> dict:
    """Write ``stem.safetensors`` / ``stem.json``: the ensemble of the model files
    ``members`` (same task, input and classes), its metadata listing every member's
    training, validation metrics and weights checksum; creates ``stem``'s folder.
    Returns the metadata written."""
    if not members:
        raise checkpoint.CheckpointError("an ensemble needs at least one member")
    nets, metas = zip(*(checkpoint.load_model(m) for m in members))
    first = metas[0]
    for path, meta in zip(members[1:], metas[1:]):
        for key in _SHARED:
            if _shared(meta, key) != _shared(first, key):
                raise checkpoint.CheckpointError(f"{path}: {key} differs from {members[0]}'s")
    model = networks.build("ensemble", in_channels=nets[0].config["in_channels"], n_classes=nets[0].config["n_classes"],
                           members=[n.config for n in nets])
    for net, member in zip(nets, model.members):
        member.load_state_dict(net.state_dict())
    metadata = {key: _shared(first, key) for key in _SHARED}
    frequencies = [meta["classes"]["train_frequency"] for meta in metas if "train_frequency" in meta["classes"]]
    if len(frequencies) == len(metas):  # members trained on different folds: their mean (else none)
        metadata["classes"]["train_frequency"] = np.mean(frequencies, 0).round(6).tolist()
    per_member = ("val_splits", "n_train", "n_val")  # members may hold out different splits (cross-validation folds)
    data = [meta.get("data", {}) for meta in metas]
    metadata["data"] = {k: v for k, v in data[0].items() if k not in per_member}
    metadata["data"]["val_splits"] = sorted({s for d in data for s in d.get("val_splits", [])})
    metadata["members"] = [
        {"file": str(path), "training": meta.get("training"), "validation": meta.get("metrics", {}).get("validation"),
         **{k: d[k] for k in per_member if k in d},
         "weights_sha256": meta["weights"]["sha256"], "n_parameters": meta["network"]["n_parameters"]}
        for path, meta, d in zip(members, metas, data)
    ]
    metadata["training"] = {**(first.get("training") or {}), "ensemble_of": len(members)}
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    return checkpoint.save_model(stem, model, metadata)

