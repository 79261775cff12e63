"""Evaluate a trained model: accuracy, per-class precision/recall/F1, confusion matrix and
rotation robustness (accuracy and top-1 agreement under random rotations of every
structure)."""
from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cathnet import nn as enn
from cathnet.checkpoint import load_model
from cathnet.errors import TrainError, UsageError
from cathnet.fileio import atomic_save_npz, atomic_write
from cathnet.inference import channels_last, predict, resolve_device
from cathnet.networks import reads_frame
from cathnet.precision import resolve_precision
from cathnet.preprocess import Preprocessing
from cathnet.so3 import random_rotation
from cathnet.tasks import task_for

__all__ = ["evaluate", "classification_metrics", "load_logits", "plot_confusion"]


def load_logits(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read what ``evaluate(logits_path=...)`` wrote: per-item log-probabilities (float64,
    normalised), labels and dataset indices."""
    with np.load(path) as f:
        z = f["logits"].astype(np.float64)
        return z - np.logaddexp.reduce(z, axis=1, keepdims=True), f["labels"], f["items"]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion
    matrix (rows: true class, columns: predicted class)."""
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    predicted, support = confusion.sum(0), confusion.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros(n_classes), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n_classes), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n_classes), where=precision + recall > 0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "macro_f1": float(f1[support > 0].mean()) if (support > 0).any() else 0.0,
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.tolist(),
        "confusion": confusion.tolist(),
    }


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    *,
    splits: list[int] | None = None,
    rotations: int = 8,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    max_items: int | None = None,
    canonical: str | None = None,
    oriented: bool | None = None,
    logits_path: str | Path | None = None,
    on_start=None,
    on_batch=None,
) -> dict:
    """Evaluate ``checkpoint`` on ``splits`` of ``data`` (default: the checkpoint's test
    splits). ``rotations`` extra passes rotate every structure by an independent
    Haar-random rotation (seeded); reported per pass: accuracy and agreement of the
    top-1 prediction with the unrotated one. ``max_items`` evaluates a seeded uniform
    sample of that many items (e.g. residues). ``canonical``: ``principal`` or ``none``
    overrides the model's canonical frame (:mod:`cathnet.canonical`); ``oriented`` overrides whether
    an amino-acid model's environments are turned into their backbone frames. ``precision``: auto, fp32 or bf16
    (:mod:`cathnet.precision`). ``logits_path``: also write the unrotated logits as .npz (``items``: dataset
    indices, ``labels``, ``logits``) for analyses of one's own. ``on_start(n_items)`` and ``on_batch(n)``
    report progress."""
    try:
        dev = resolve_device(device)
        precision = resolve_precision(precision, dev)
    except UsageError as exc:
        raise TrainError(str(exc)) from None
    model, meta = load_model(checkpoint, dev)
    model = enn.collapse(model)  # plain conv3d, as in prediction
    layout = torch.channels_last_3d if channels_last(dev, precision) else None
    if layout is not None:
        model = model.to(memory_format=layout)  # type: ignore[call-overload]  # stubs lack memory_format
    if not isinstance(meta.get("data"), dict) or not {"sha256", "test_splits"} <= set(meta["data"]):
        raise TrainError(f"{checkpoint}: the metadata lacks data.sha256 and data.test_splits (not a trained model)")
    prep, readout = Preprocessing.from_metadata(meta), reads_frame(meta["network"]["config"])
    if canonical is not None:
        if canonical == "none" and readout == "axes":
            raise TrainError(f"{checkpoint}: the network reads its features along the principal axes (readout=axes); "
                             "--canonical none does not apply")
        prep = replace(prep, canonical=None if canonical == "none" else canonical)
    if oriented is not None:
        if meta["task"] != "aa":
            raise TrainError("--oriented / --as-given apply to amino-acid (--task aa) models")
        if not oriented and readout == "frame":
            raise TrainError(f"{checkpoint}: the network reads its features in the backbone frame (readout=frame); "
                             "--as-given does not apply")
        prep = replace(prep, oriented=oriented)
    task = task_for(meta["task"], data, prep)
    codes, info = meta["classes"]["codes"], task.metadata()
    if info["classes"]["codes"] != codes:
        raise TrainError(f"{data}: classes {info['classes']['codes']} differ from the model's {codes}")
    if task.preprocessing != prep:
        raise TrainError(f"{data}: input {info['input']} differs from the model's {meta['input']}")
    splits = list(meta["data"]["test_splits"] if splits is None else splits)
    items = task.items(splits)
    n_in_splits = int(len(items))
    if len(items) == 0:
        raise TrainError(f"{data}: no item in split(s) {splits}")
    if max_items is not None and max_items < len(items):
        items = np.sort(np.random.default_rng([seed, 1]).choice(items, max_items, replace=False))
    if prep.oriented:  # rotating a backbone-frame environment takes it out of its frame
        rotations = 0
    if on_start:
        on_start(len(items) * (1 + rotations))
    y = task.labels[items]

    def run(R=None):
        return predict(model, task, items, device=dev, batch_size=batch_size, rotations=R, on_batch=on_batch,
                       precision=precision, layout=layout)

    logits = run()
    if logits_path is not None:
        atomic_save_npz(logits_path, items=items, labels=y, logits=logits.numpy())
    reference = logits.argmax(1).numpy()
    result = classification_metrics(y, reference, len(codes))
    top3 = logits.topk(min(3, len(codes)), dim=1).indices.numpy()
    result["top3_accuracy"] = float((top3 == y[:, None]).any(1).mean())
    result["log_loss"] = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y.astype(np.int64))))
    rng = np.random.default_rng(seed)
    passes: list[dict] = []
    probabilities, votes = torch.zeros(len(items), len(codes)), []
    for _ in range(rotations):
        rotated = run(random_rotation(len(items), rng))
        predicted = rotated.argmax(1).numpy()
        passes.append({"accuracy": float((predicted == y).mean()), "agreement": float((predicted == reference).mean())})
        probabilities += rotated.softmax(1)
        votes.append(predicted)
    acc = np.array([p["accuracy"] for p in passes])
    agree = np.array([p["agreement"] for p in passes])
    result["rotation"] = {
        "n_rotations": rotations,
        "seed": seed,
        "accuracy_mean": float(acc.mean()) if rotations else None,
        "accuracy_std": float(acc.std()) if rotations else None,
        "accuracy_min": float(acc.min()) if rotations else None,
        "agreement_mean": float(agree.mean()) if rotations else None,
        # what `cathnet predict --rotations N` reports: probabilities averaged over the N rotations
        "averaged_accuracy": float((probabilities.argmax(1).numpy() == y).mean()) if rotations else None,
        "all_agree": float((np.stack(votes) == votes[0]).all(0).mean()) if rotations else None,
        "passes": passes,
    }
    return {
        "checkpoint": str(checkpoint),
        "network": meta["network"]["name"],
        "n_parameters": meta["network"]["n_parameters"],
        "input": prep.metadata(),  # the model's input with --canonical / --oriented applied
        "data": str(data),
        "data_sha256": task.sha256,
        "data_matches_training": task.sha256 == meta["data"]["sha256"],
        "splits": splits,
        "n_items_in_splits": n_in_splits,
        "max_items_seed": seed if max_items is not None and max_items < n_in_splits else None,
        "classes": {"codes": codes, "names": meta["classes"]["names"]},
        "device": str(dev),
        "numeric_precision": precision,  # bf16 or fp32 ("precision" is per class)
        **result,
    }


def plot_confusion(result: dict, path: str | Path) -> None:
    """Write the confusion matrix of :func:`evaluate` as a PNG (row-normalised colours,
    counts in the cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.array(result["confusion"])
    support = confusion.sum(1, keepdims=True)
    rates = np.divide(confusion, support, out=np.zeros(confusion.shape), where=support > 0)
    labels = [f"{c} {n}" for c, n in zip(result["classes"]["codes"], result["classes"]["names"])]
    big = len(labels) > 12  # e.g. the 20 amino acids
    fig, ax = plt.subplots(figsize=(11, 10) if big else (8, 7), dpi=120)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=5 if big else 7,
                color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result['network']}: accuracy {result['accuracy']:.3f} (n = {result['n']})")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
