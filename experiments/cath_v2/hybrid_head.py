"""A head that reads the network's pooled invariants *and* the 49 secondary-structure
descriptors: does the classical baseline's information add to the steerable network when
the two are fitted together on the training domains (not stacked out of fold)?

For every member of an embedded ensemble (``embedding_knn.py embed``), fit a head on the
member's own training domains (every split but its validation split and the test split)
and score it on its validation split, next to the member's released linear head:

- ``refit``: a linear head on the pooled invariants alone (the released head's input);
- ``hybrid``: a linear or one-hidden-layer head on the invariants + the standardised
  descriptors (``ss_features.features``, rotation invariant);
- ``logits + descriptors``: a head on the member's logits and the descriptors;
- ``residual``: the member's own logits + a head on the descriptors alone.

Weight decay and width come from a small grid; every cell is printed, the test split is
never read. The descriptors are computed here (``ss_features.table``, 15 s for the pool) or
read from ``--cache``.

    python experiments/cath_v2/hybrid_head.py knn-embed.npz --data cath10-ss.npz --folds 8,7,6,5,4
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cathnet.evaluate import classification_metrics

sys.path.insert(0, str(Path(__file__).parent))
from ss_features import table  # noqa: E402


def descriptors(data: Path, cache: Path | None) -> np.ndarray:
    """The 49 descriptors of every domain, signed log for the counts' heavy tails."""
    if cache is not None and cache.exists():
        x = np.load(cache)["x"]
    else:
        x = table(data)[0]
        if cache is not None:
            np.savez(cache, x=x)
    return np.sign(x) * np.log1p(np.abs(x))


def fit_head(x: np.ndarray, y: np.ndarray, base: np.ndarray | None, hidden: int, decay: float,
             dropout: float, epochs: int = 300, seed: int = 0) -> nn.Module:
    """Full-batch Adam on cross entropy; ``base`` logits (fixed) are added when given."""
    torch.manual_seed(seed)
    n_in, n_out = x.shape[1], int(y.max()) + 1
    head: nn.Module = (nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, n_out)) if hidden == 0 else
                       nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, n_out)))
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    bt = None if base is None else torch.tensor(base, dtype=torch.float32)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=decay)
    for _ in range(epochs):
        opt.zero_grad()
        out = head(xt) if bt is None else head(xt) + bt
        nn.functional.cross_entropy(out, yt).backward()
        opt.step()
    return head.eval()


def scores(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    logp = torch.log_softmax(torch.tensor(logits, dtype=torch.float64), 1).numpy()
    return float((logp.argmax(1) == y).mean()), float(-logp[np.arange(len(y)), y].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("embedding")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache", type=Path, help="descriptors .npz (written when missing)")
    p.add_argument("--folds", default="8,7,6,5,4", help="each member's validation split, in member order")
    p.add_argument("--test-split", type=int, default=9)
    p.add_argument("--hidden", type=int, nargs="+", default=[0, 128])
    p.add_argument("--decay", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1])
    p.add_argument("--dropout", type=float, nargs="+", default=[0.3, 0.6])
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    e = np.load(args.embedding)
    items, labels, splits = e["items"], e["labels"], e["splits"]
    feats, logits = e["features"], e["logits"]
    d = descriptors(args.data, args.cache)[items]
    folds = [int(f) for f in args.folds.split(",")]
    rows: dict[str, list[float]] = {}
    losses: dict[str, list[float]] = {}
    predicted: dict[str, list[np.ndarray]] = {}
    truth: dict[str, list[np.ndarray]] = {}

    def record(name: str, member_logits: np.ndarray, y: np.ndarray) -> None:
        acc, loss = scores(member_logits, y)
        rows.setdefault(name, []).append(acc)
        losses.setdefault(name, []).append(loss)
        predicted.setdefault(name, []).append(member_logits.argmax(1))
        truth.setdefault(name, []).append(y)

    for m, fold in enumerate(folds):
        train = (splits != fold) & (splits != args.test_split)
        val = splits == fold
        f = feats[m]
        mu, sd = f[train].mean(0), f[train].std(0) + 1e-6
        dm, ds = d[train].mean(0), d[train].std(0) + 1e-6
        fz, dz = (f - mu) / sd, (d - dm) / ds
        record("member's own head", logits[m][val], labels[val])
        record("member's own head, training domains", logits[m][train], labels[train])
        for hidden in args.hidden:
            for decay in args.decay:
                for drop in args.dropout:
                    tag = f"hidden {hidden}, decay {decay:g}, dropout {drop:g}"
                    for name, x, base in (("refit", fz, None), ("hybrid", np.hstack([fz, dz]), None),
                                          ("logits + descriptors", np.hstack([logits[m] / 4, dz]), None),
                                          ("residual", dz, logits[m]), ("descriptors alone", dz, None)):
                        if name == "refit" and hidden:
                            continue
                        head = fit_head(x[train], labels[train], None if base is None else base[train],
                                        hidden, decay, drop)
                        with torch.no_grad():
                            out = head(torch.tensor(x[val], dtype=torch.float32)).numpy()
                        record(f"{name}: {tag}", out if base is None else out + base[val], labels[val])
        print(f"member {m} (fold {fold}) done", flush=True)
    n_classes = logits.shape[2]
    recall = {name: classification_metrics(np.concatenate(truth[name]), np.concatenate(predicted[name]),
                                           n_classes)["recall"] for name in rows}  # per class, pooled over the folds
    print(f"{'head':60s} " + " ".join(f"fold {f:>2d}" for f in folds) + "    mean  loss  lowest recall (pooled)")
    for name, acc in rows.items():
        print(f"{name:60s} " + " ".join(f"{a:7.3f}" for a in acc) +
              f"  {np.mean(acc):.4f} {np.mean(losses[name]):.3f}  {min(recall[name]):.2f}")
    if args.json:
        args.json.write_text(json.dumps({"folds": folds, "top1": rows, "log_loss": losses, "recall_pooled": recall},
                                        indent=1))


if __name__ == "__main__":
    main()
