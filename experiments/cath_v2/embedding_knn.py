"""Nearest neighbours in the networks' invariant embedding: does retrieval from the pool add
to the released ensemble's softmax on superfamilies it has never seen?

``embed``: run a released or trained CATH model (an ensemble or one network) over every
domain of a dataset, as ``cathnet evaluate`` does (collapsed, canonical frame, no rotation),
and keep per member the pooled invariant features its linear classifier reads and its
logits. ``report``: for each member, classify the domains of its own validation split by
their k nearest training domains (cosine similarity of the features, votes weighted by
``exp(sim / T)``), mix with the member's softmax (``(1 - w) p_softmax + w p_knn``) and print
top-1 over a grid of k, T, w; the references are the member's training domains, never its
validation or test split, so every query's superfamily is absent from the references.

    python experiments/cath_v2/embedding_knn.py embed cathnet/models/cath-arch.json \
        --data cath10-ss.npz -o knn-embed.npz
    python experiments/cath_v2/embedding_knn.py report knn-embed.npz --folds 8,7,6
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch
from scipy.special import softmax

from cathnet import nn as enn
from cathnet.checkpoint import load_model
from cathnet.inference import predict
from cathnet.preprocess import Preprocessing
from cathnet.tasks import task_for


def embed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.model, torch.device("cpu"))
    model = enn.collapse(model).eval()
    members = list(model.members) if hasattr(model, "members") else [model]
    heads = [[m for m in member.modules() if isinstance(m, torch.nn.Linear)][-1] for member in members]
    features: list[list[torch.Tensor]] = [[] for _ in members]
    member_logits: list[list[torch.Tensor]] = [[] for _ in members]

    def hook(k: int):
        def keep(module, inputs, output):
            features[k].append(inputs[0].detach().float().cpu())
            member_logits[k].append(output.detach().float().cpu())
        return keep

    for k, head in enumerate(heads):
        head.register_forward_hook(hook(k))
    task = task_for(meta["task"], args.data, Preprocessing.from_metadata(meta))
    items = task.items(list(range(meta["data"]["n_splits"])))
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        if done[0] % 512 < n:
            print(f"{done[0]}/{len(items)}", flush=True)

    predict(model, task, items, device=torch.device("cpu"), batch_size=args.batch_size, precision="fp32",
            on_batch=progress)
    np.savez(args.output, items=items, labels=task.labels[items], splits=task.data.splits[items],
             features=np.stack([torch.cat(f).numpy() for f in features]),
             logits=np.stack([torch.cat(g).numpy() for g in member_logits]),
             meta=json.dumps({"model": str(args.model), "classes": meta["classes"]["codes"]}))
    print(f"wrote {args.output}")


def knn_probabilities(
    q: np.ndarray, ref: np.ndarray, ref_y: np.ndarray, n_classes: int, k: int, t: float
) -> np.ndarray:
    """Similarity-weighted votes of each query's ``k`` nearest references (cosine)."""
    sim = q @ ref.T
    idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sim, idx, axis=1)
    w = np.exp((s - s.max(1, keepdims=True)) / t)
    p = np.zeros((len(q), n_classes))
    np.add.at(p, (np.repeat(np.arange(len(q)), k), ref_y[idx].ravel()), w.ravel())
    return p / p.sum(1, keepdims=True)


def normalise(f: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    z = (f - mean) / std
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def report(args: argparse.Namespace) -> None:
    d = np.load(args.embedding, allow_pickle=False)
    y, splits, feats, logits = d["labels"], d["splits"], d["features"], d["logits"]
    n_classes = logits.shape[-1]
    folds = [int(s) for s in args.folds.split(",")]
    grid = list(itertools.product(args.k, args.t, args.w))
    acc, alone = np.zeros((len(folds), len(grid))), np.zeros(len(folds))
    for m, fold in enumerate(folds):
        train = ~np.isin(splits, [fold, args.test_split])
        val = splits == fold
        mean, std = feats[m][train].mean(0), feats[m][train].std(0) + 1e-6
        ref, q = normalise(feats[m][train], mean, std), normalise(feats[m][val], mean, std)
        p_soft = softmax(logits[m][val], axis=1)
        for j, (k, t, w) in enumerate(grid):
            p = (1 - w) * p_soft + w * knn_probabilities(q, ref, y[train], n_classes, k, t)
            acc[m, j] = (p.argmax(1) == y[val]).mean()
        alone[m] = (p_soft.argmax(1) == y[val]).mean()
        print(f"member {m} (fold {fold}, n = {val.sum()}): softmax {alone[m]:.3f}")
    order = np.argsort(-acc.mean(0))
    print("k     T      w     " + "  ".join(f"fold {f}" for f in folds) + "  mean")
    for j in order[: args.top]:
        k, t, w = grid[j]
        print(f"{k:<5d} {t:<6.3f} {w:<5.2f} " + "  ".join(f"{a:.3f} " for a in acc[:, j]) + f"  {acc[:, j].mean():.3f}")
    print(f"softmax alone: mean {alone.mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed")
    e.add_argument("model")
    e.add_argument("--data", required=True)
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("-o", "--output", required=True)
    r = sub.add_parser("report")
    r.add_argument("embedding")
    r.add_argument("--folds", default="8,7,6", help="each member's validation split, in member order")
    r.add_argument("--test-split", type=int, default=9)
    r.add_argument("--k", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    r.add_argument("--t", type=float, nargs="+", default=[0.02, 0.05, 0.1, 1.0])
    r.add_argument("--w", type=float, nargs="+", default=[0.0, 0.2, 0.35, 0.5, 0.75, 1.0])
    r.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    (embed if args.command == "embed" else report)(args)


if __name__ == "__main__":
    main()
