"""The classical baseline, measured here: secondary-structure features + gradient boosting.

Per domain, from its Cα trace and P-SEA secondary structure (the ``ca-ss`` dataset):
composition and element counts and lengths; size and shape (radius of gyration, principal
moments); contacts (density, relative contact order, helix/strand/coil pair shares);
element packing (for each helix-helix, helix-strand and strand-strand pair in contact, the
angle between their axes, histogrammed, and parallel vs antiparallel strand pairs); the
strand pairing graph (strands with 0, 1, 2, ≥ 3 partners: a barrel has no edge strands);
and layers (helices on each side of the largest sheet's plane: two-layer against
three-layer α/β). All are rotation invariant.

``HistGradientBoostingClassifier`` (scikit-learn, not a cathnet dependency:
``pip install scikit-learn``) on splits 0–7, its settings chosen on split 8; with
``--test`` it is refitted on 0–8 and tested once on split 9. ``--oof`` writes out-of-fold
probabilities for folds 6, 7, 8 (trained on the other splits 0–8) and split 9, and
prints how the network's out-of-fold predictions (``eval/logits/foldK.npz``) combine with
them: log p = w log p_network + (1 − w) log p_features.

    python experiments/cath_v2/ss_features.py --data cath10-ss.npz [--test] [--oof OUT.npz]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

from cathnet.evaluate import classification_metrics, load_logits
from cathnet.ss import COIL, HELIX, STRAND

ANGLE_BINS = np.array([0, 30, 60, 90, 120, 150, 180.001])


def elements(ss: np.ndarray) -> list[tuple[int, int, int]]:
    """(type, first, last+1) of every helix (≥ 5) and strand (≥ 3) run."""
    runs, start = [], 0
    for i in range(1, len(ss) + 1):
        if i == len(ss) or ss[i] != ss[start]:
            if ss[start] == HELIX and i - start >= 5 or ss[start] == STRAND and i - start >= 3:
                runs.append((int(ss[start]), start, i))
            start = i
    return runs


def features(ca: np.ndarray, ss: np.ndarray) -> np.ndarray:
    n = len(ca)
    f = [n, np.log(n), *(np.mean(ss == t) for t in (HELIX, STRAND, COIL))]
    els = elements(ss)
    for t in (HELIX, STRAND):
        lengths = [b - a for k, a, b in els if k == t] or [0]
        f += [sum(k == t for k, _, _ in els), np.mean(lengths), np.max(lengths)]
    centred = ca - ca.mean(0)
    moments = np.sort(np.linalg.eigvalsh(centred.T @ centred / n))[::-1]
    rg = np.sqrt(moments.sum())
    f += [rg, rg / n ** (1 / 3), moments[1] / moments[0], moments[2] / moments[0]]
    d = cdist(ca, ca)
    i, j = np.nonzero(np.triu(d < 8.0, k=4))
    f += [len(i) / n, (np.abs(i - j).mean() / n) if len(i) else 0.0]
    for a, b in ((HELIX, HELIX), (HELIX, STRAND), (STRAND, STRAND), (COIL, COIL)):
        f.append(np.mean(((ss[i] == a) & (ss[j] == b)) | ((ss[i] == b) & (ss[j] == a))) if len(i) else 0.0)
    axes = []
    for _, a, b in els:
        x = ca[a:b] - ca[a:b].mean(0)
        axis = np.linalg.svd(x, full_matrices=False)[2][0]
        axes.append(axis if axis @ (ca[b - 1] - ca[a]) >= 0 else -axis)  # along the chain
    hist = {key: np.zeros(len(ANGLE_BINS) - 1) for key in ("HH", "HE", "EE")}
    partners = np.zeros(len(els), dtype=int)
    for p in range(len(els)):
        for q in range(p + 1, len(els)):
            (tp, ap, bp), (tq, aq, bq) = els[p], els[q]
            gap = d[ap:bp, aq:bq].min()
            if gap > (5.5 if tp == tq == STRAND else 10.0):
                continue
            angle = np.degrees(np.arccos(np.clip(axes[p] @ axes[q], -1, 1)))
            key = "".join(sorted("H" if t == HELIX else "E" for t in (tp, tq))).replace("EH", "HE")
            hist[key][np.searchsorted(ANGLE_BINS, angle, side="right") - 1] += 1
            if tp == tq == STRAND:
                partners[p] += 1
                partners[q] += 1
    for key in ("HH", "HE", "EE"):
        f += [*hist[key], hist[key].sum() / max(len(els), 1)]
    strands = partners[[k == STRAND for k, _, _ in els]] if els else np.zeros(0, int)
    f += [np.sum(strands == c) for c in (0, 1, 2)] + [np.sum(strands >= 3)]
    f.append(np.mean(strands == 1) if len(strands) else 0.0)  # edge strands: none in a barrel
    strand_ca = np.concatenate([ca[a:b] for k, a, b in els if k == STRAND] or [np.zeros((0, 3))])
    above = below = 0
    if len(strand_ca) >= 6:
        centre = strand_ca.mean(0)
        normal = np.linalg.svd(strand_ca - centre, full_matrices=False)[2][2]
        for k, a, b in els:
            if k == HELIX:
                side = (ca[a:b].mean(0) - centre) @ normal
                above, below = above + (side > 4), below + (side < -4)
    f += [above + below, min(above, below)]
    return np.asarray(f, dtype=np.float64)


def table(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(path) as data:
        pos, ch, off = data["positions"], data["channels"], data["offsets"]
        x = np.stack([features(pos[off[k]:off[k + 1]].astype(np.float64), ch[off[k]:off[k + 1]].astype(np.int64))
                      for k in range(len(off) - 1)])
        return x, data["labels"], data["splits"]


def booster(**settings):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=0, **settings)


def fit(x, y, **settings):
    return booster(**settings).fit(x, y)


def scores(model, x, y) -> dict:
    p = model.predict_proba(x)
    m = classification_metrics(y, p.argmax(1), p.shape[1])
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "recall": m["recall"],
            "log_loss": float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())}


def out_of_fold(arrays: dict) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per fold 6, 7, 8: the network's and the feature model's out-of-fold log-probabilities,
    the labels and the dataset indices (``eval/logits/foldK.npz`` against ``arrays``)."""
    folds = {}
    for k in (6, 7, 8):
        net, labels, items = load_logits(Path(__file__).parent / "eval" / "logits" / f"fold{k}.npz")
        if not np.array_equal(items, arrays[f"items{k}"]):
            raise SystemExit(f"fold {k}: the network's logits are of other domains")
        folds[k] = (net, np.log(np.maximum(arrays[f"prob{k}"], 1e-9)), labels, items)
    return folds


def combine(folds: dict) -> list[dict]:
    """Top-1 of the weighted geometric mean of network and feature probabilities, out of fold."""
    rows = []
    for w in np.linspace(0, 1, 11):
        metrics = [classification_metrics(y, (w * net + (1 - w) * feat).argmax(1), net.shape[1])
                   for net, feat, y, _ in folds.values()]
        pooled = sum(m["accuracy"] * m["n"] for m in metrics) / sum(m["n"] for m in metrics)
        rows.append({"w": round(float(w), 2), "folds": [m["accuracy"] for m in metrics], "pooled": pooled})
        per_fold = " / ".join(f"{m['accuracy']:.3f}" for m in metrics)
        print(f"w = {w:.1f}: top-1 folds 6/7/8 {per_fold}, pooled {pooled:.4f}")
    return rows


def stack(x: np.ndarray, folds: dict) -> dict:
    """Top-1 of stackers trained on two folds' out-of-fold predictions and applied to the third."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    inputs = {k: ({"49 features": np.hstack([net, x[items]]), "feature model's probabilities": np.hstack([net, feat])},
                  y) for k, (net, feat, y, items) in folds.items()}
    makers = {"gradient boosting": lambda: booster(learning_rate=0.03, max_leaf_nodes=15, max_iter=300,
                                                     l2_regularization=1.0),
              "logistic regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))}
    result = {}
    for name, make in makers.items():
        for what in ("49 features", "feature model's probabilities"):
            accuracy = []
            for k in (6, 7, 8):
                rest = [j for j in (6, 7, 8) if j != k]
                model = make().fit(np.vstack([inputs[j][0][what] for j in rest]),
                                   np.concatenate([inputs[j][1] for j in rest]))
                accuracy.append(float((model.predict(inputs[k][0][what]) == inputs[k][1]).mean()))
            result[f"{name}, network + {what}"] = accuracy
            print(f"stacker: {name} on the network's log-probabilities + the {what}: "
                  f"top-1 folds 6/7/8 {' / '.join(f'{a:.3f}' for a in accuracy)}, mean {np.mean(accuracy):.3f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the ca-ss dataset .npz")
    parser.add_argument("--test", action="store_true",
                        help="refit on splits 0-8 with the chosen settings; test split 9")
    parser.add_argument("--oof", type=Path, help="write out-of-fold probabilities of folds 6, 7, 8 and split 9")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    x, y, split = table(args.data)
    print(f"{x.shape[1]} features of {len(y)} domains")
    train, val = split <= 7, split == 8
    grid = [{"learning_rate": lr, "max_leaf_nodes": leaves, "max_iter": 400, "l2_regularization": 1.0}
            for lr in (0.03, 0.1) for leaves in (7, 15, 31)]
    results = []
    for settings in grid:
        r = scores(fit(x[train], y[train], **settings), x[val], y[val])
        results.append({"settings": settings, "val8": r})
        print(f"{settings}: split 8 top-1 {r['accuracy']:.3f}, macro F1 {r['macro_f1']:.3f}")
    best = max(results, key=lambda r: r["val8"]["accuracy"])
    out = {"n_features": x.shape[1], "grid": results, "chosen": best["settings"]}
    print(f"chosen on split 8: {best['settings']} ({best['val8']['accuracy']:.3f})")
    if args.test:
        r = scores(fit(x[split <= 8], y[split <= 8], **best["settings"]), x[split == 9], y[split == 9])
        out["test9"] = r
        print(f"split 9 (trained on 0-8): top-1 {r['accuracy']:.3f}, macro F1 {r['macro_f1']:.3f}, "
              f"recall {np.round(r['recall'], 2).tolist()}")
    if args.oof:
        arrays = {}
        for k in (6, 7, 8, 9):
            fold = split == k
            model = fit(x[(split <= 8) & ~fold], y[(split <= 8) & ~fold], **best["settings"])
            arrays[f"items{k}"], arrays[f"prob{k}"] = np.flatnonzero(fold), model.predict_proba(x[fold])
        np.savez(args.oof, **arrays)
        folds = out_of_fold(arrays)
        out["combined_oof"] = combine(folds)
        out["stacked_oof"] = stack(x, folds)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
