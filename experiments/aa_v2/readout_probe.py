"""Would a richer head lift a trained amino-acid model? Linear probes on its frozen features.

``extract`` runs the model (collapsed, fp32) over a seeded sample of training residues
(splits 0-7) and validation residues (the same 10,000 of split 8 as ``cathnet evaluate
--max-items 10000``) and keeps, per residue: the classifier's input (pooled scalars and the
frame readout), octant means (2×2×2 cells of the 4³ grid) of the head's scalar map and of
the last stage's l > 0 components, and the logits. ``fit`` trains multinomial logistic
regressions (and a one-hidden-layer MLP) on the training residues' features and reports
validation top-1, against the same refit on the classifier's input alone:

* ``+ dihedrals``: the residue's backbone φ, ψ (Fourier features up to order 2) and ω;
* ``+ octant scalars`` / ``+ octant components``: where in the grid the features lie, which
  a backbone-frame model may read (the frame fixes the pose);
* ``MLP``: a nonlinear head on the same features.

    python experiments/aa_v2/readout_probe.py extract MODEL.json --data cath10-env.npz --train 60000 -o probe.npz
    python experiments/aa_v2/readout_probe.py fit probe.npz --data cath10-env.npz

For ``head_fit.py`` on every training residue, in pieces: ``extract MODEL.json --train 0
--part I/4 --no-octants`` for I = 1..4 (``--val 0`` after the first).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from cathnet import nn as enn
from cathnet.checkpoint import load_model
from cathnet.data.datasets import EnvironmentData
from cathnet.inference import predict
from cathnet.preprocess import Preprocessing
from cathnet.tasks import task_for


def _octants(t: torch.Tensor) -> torch.Tensor:
    """(B, C, 4, 4, 4) → (B, C·8): means over the 2×2×2 cells of the grid."""
    B, C = t.shape[:2]
    return t.float().reshape(B, C, 2, 2, 2, 2, 2, 2).mean(dim=(3, 5, 7)).reshape(B, C * 8)


def _features(model: torch.nn.Module, task, items: np.ndarray, octants: bool = True) -> dict[str, np.ndarray]:
    """Labels, logits and the features described above for ``items`` (without the octant
    means unless ``octants``)."""
    head, F, S, V = model.head, [], [], []  # the frame readout: the last head.n_frame channels of the head's input
    hooks = [head.classifier.register_forward_pre_hook(lambda m, a: F.append(a[0].float()))]
    if octants:
        hooks += [head.conv.register_forward_hook(lambda m, a, o: S.append(_octants(o))),
                  head.register_forward_pre_hook(
                      lambda m, a: V.append(_octants(a[0][:, a[0].shape[1] - head.n_frame:])))]
    logits = predict(model, task, items, device=torch.device("cpu"), batch_size=256, precision="fp32")
    for h in hooks:
        h.remove()
    out = {"items": items, "labels": task.labels[items], "logits": logits.numpy(), "F": torch.cat(F).numpy()}
    if octants:
        out |= {"S": torch.cat(S).numpy().astype(np.float16), "V": torch.cat(V).numpy().astype(np.float16)}
    return out


def extract(args) -> None:
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.model)
    model = enn.collapse(model).eval()
    task = task_for("aa", args.data, Preprocessing.from_metadata(meta))
    val = np.sort(np.random.default_rng([0, 1]).choice(task.items([8]), args.val, replace=False))
    pool = task.items(range(8))
    train = np.random.default_rng([args.seed, 7]).choice(pool, args.train or len(pool), replace=False)
    i, n = map(int, args.part.split("/"))  # part i of n: every n-th of the seeded sample, from the i-th
    train = np.sort(train[i - 1::n])
    out: dict[str, np.ndarray] = {}
    for name, items in (("val", val), ("train", train)):
        if len(items):
            out |= {f"{name}_{k}": v for k, v in _features(model, task, items, not args.no_octants).items()}
    np.savez(args.output, **out)


def _dihedral(p0, p1, p2, p3):
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
    v, w = b0 - (b0 * b1).sum(1, keepdims=True) * b1, b2 - (b2 * b1).sum(1, keepdims=True) * b1
    return np.arctan2((np.cross(b1, v) * w).sum(1), (v * w).sum(1))


def dihedral_features(data: str, rows: np.ndarray) -> np.ndarray:
    """cos/sin of kφ + lψ (0 ≤ k ≤ 2, |l| ≤ 2), of ω, and flags for a missing φ or ψ (chain
    ends and breaks: peptide C–N over 2 Å)."""
    d = EnvironmentData(data)
    base = d.offsets[d.res_domain]
    atom = {k: np.where((i >= 0)[:, None], d.positions[np.maximum(base + i, 0)], np.nan)
            for k, i in (("N", d.res_n), ("CA", d.res_ca), ("C", d.res_c))}
    prev = np.r_[False, d.res_domain[1:] == d.res_domain[:-1]]
    nxt = np.r_[prev[1:], False]
    with np.errstate(invalid="ignore"):
        prev &= np.linalg.norm(np.roll(atom["C"], 1, 0) - atom["N"], axis=1) < 2.0
        nxt &= np.linalg.norm(np.roll(atom["N"], -1, 0) - atom["C"], axis=1) < 2.0
        phi = np.where(prev, _dihedral(np.roll(atom["C"], 1, 0), atom["N"], atom["CA"], atom["C"]), np.nan)[rows]
        psi = np.where(nxt, _dihedral(atom["N"], atom["CA"], atom["C"], np.roll(atom["N"], -1, 0)), np.nan)[rows]
        omega = np.where(prev, _dihedral(np.roll(atom["CA"], 1, 0), np.roll(atom["C"], 1, 0), atom["N"], atom["CA"]),
                         np.nan)[rows]
    cols = []
    for k in range(3):
        for l in range(-2, 3):
            if k or l > 0:
                a = k * np.nan_to_num(phi) + l * np.nan_to_num(psi)
                ok = ~((k != 0) & np.isnan(phi) | (l != 0) & np.isnan(psi))
                cols += [np.cos(a) * ok, np.sin(a) * ok]
    ok = ~np.isnan(omega)
    cols += [np.cos(np.nan_to_num(omega)) * ok, np.sin(np.nan_to_num(omega)) * ok, np.isnan(phi), np.isnan(psi)]
    return np.stack(cols, 1).astype(np.float32)


def _fit(Xtr, ytr, Xva, yva, *, wd: float, hidden: int = 0, epochs: int = 40) -> tuple[float, float]:
    """Train and validation top-1 of a standardised linear (or one-hidden-layer) classifier (AdamW, cosine)."""
    torch.manual_seed(0)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    Xt, Xv = torch.tensor((Xtr - mu) / sd), torch.tensor((Xva - mu) / sd)
    yt, yv = torch.as_tensor(ytr, dtype=torch.long), torch.as_tensor(yva, dtype=torch.long)
    net = torch.nn.Linear(Xt.shape[1], 20) if not hidden else torch.nn.Sequential(
        torch.nn.Dropout(0.2), torch.nn.Linear(Xt.shape[1], hidden), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(hidden, 20))
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=wd if hidden else 0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        net.train()
        for b in torch.randperm(len(Xt)).split(512):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(Xt[b]), yt[b])
            if not hidden:
                loss = loss + wd * net.weight.pow(2).sum()  # type: ignore[union-attr]
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        return float((net(Xt).argmax(1) == yt).float().mean()), float((net(Xv).argmax(1) == yv).float().mean())


def fit(args) -> None:
    torch.set_num_threads(args.threads)
    z = np.load(args.probe)
    y = {s: z[f"{s}_labels"] for s in ("train", "val")}
    print(f"model as trained: validation top-1 {(z['val_logits'].argmax(1) == y['val']).mean():.4f}")
    feats = {s: {"F": z[f"{s}_F"], "D": dihedral_features(args.data, z[f"{s}_items"]),
                 "S": z[f"{s}_S"].astype(np.float32), "V": z[f"{s}_V"].astype(np.float32)} for s in ("train", "val")}
    rows = [("classifier input, refit", "F", 0), ("+ dihedrals", "FD", 0), ("+ octant scalars", "FS", 0),
            ("+ octant components", "FV", 0), ("+ both octant sets", "FSV", 0), ("MLP, 256 hidden", "F", 256)]
    for label, keys, hidden in rows:
        X = {s: np.hstack([feats[s][k] for k in keys]) for s in feats}
        for wd in (1e-4, 1e-3):
            train, val = _fit(X["train"], y["train"], X["val"], y["val"], wd=wd, hidden=hidden)
            n = X["train"].shape[1]
            print(f"{label:28s} {n:5d} features  wd {wd:g}  train {train:.4f}  val {val:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract")
    e.add_argument("model")
    e.add_argument("--data", required=True)
    e.add_argument("--train", type=int, default=60000, help="training residues to sample (0: all of splits 0-7)")
    e.add_argument("--part", default="1/1", help="I/N: keep every N-th of the sample from the I-th")
    e.add_argument("--no-octants", action="store_true", help="keep only the classifier input and the logits")
    e.add_argument("--val", type=int, default=10000)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("-o", "--output", required=True)
    f = sub.add_parser("fit")
    f.add_argument("probe")
    f.add_argument("--data", required=True)
    f.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    (extract if args.command == "extract" else fit)(args)


if __name__ == "__main__":
    main()
