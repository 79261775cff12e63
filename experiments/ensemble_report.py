"""Which ensemble? Metrics of every subset of models from their saved logits.

Each ``--logits`` file is the output of ``cathnet evaluate ... --logits FILE.npz`` on the
same items (same split, ``--max-items`` and seed). An ensemble averages its members' class
probabilities, as ``cathnet.ensemble.combine`` does. Prints top-1, top-3, macro F1, log
loss and the lowest class recall of each model and each subset of 2 or more, best first.

    python experiments/ensemble_report.py runs/a.npz runs/b.npz runs/c.npz [--json out.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from cathnet.evaluate import classification_metrics, load_logits


def load(paths: list[Path]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels and per-model log-probabilities; every file must hold the same items."""
    logps, labels, items = [], None, None
    for path in paths:
        logp, y, ids = load_logits(path)
        if items is None:
            labels, items = y, ids
        elif not np.array_equal(ids, items):
            raise SystemExit(f"{path}: other items than {paths[0]}")
        logps.append(logp)
    assert labels is not None
    return labels, logps


def metrics(labels: np.ndarray, logp: np.ndarray) -> dict:
    n_classes = logp.shape[1]
    m = classification_metrics(labels, logp.argmax(1), n_classes)
    top3 = np.argsort(-logp, axis=1)[:, :3]
    present = np.array(m["support"]) > 0
    return {
        "top1": m["accuracy"], "top3": float((top3 == labels[:, None]).any(1).mean()), "macro_f1": m["macro_f1"],
        "log_loss": float(-logp[np.arange(len(labels)), labels].mean()),
        "min_recall": float(np.array(m["recall"])[present].min()), "recall": m["recall"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logits", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="also write every row as JSON")
    args = parser.parse_args()
    labels, logps = load(args.logits)
    names = [p.stem for p in args.logits]
    rows = []
    for k in range(1, len(names) + 1):
        for subset in itertools.combinations(range(len(names)), k):
            mean = np.logaddexp.reduce(np.stack([logps[i] for i in subset]), axis=0) - np.log(len(subset))
            rows.append({"members": [names[i] for i in subset], **metrics(labels, mean)})
    print(f"n = {len(labels)}")
    print("| members | top-1 | top-3 | macro F1 | log loss | lowest recall |\n| --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (len(r["members"]) > 1, -r["top1"])):
        print(f"| {' + '.join(r['members'])} | {r['top1']:.4f} | {r['top3']:.4f} | {r['macro_f1']:.4f} | "
              f"{r['log_loss']:.4f} | {r['min_recall']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
