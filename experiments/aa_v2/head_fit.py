"""Give a trained amino-acid model an MLP head, fitted on its frozen features.

The network stays as trained. Its head gains a one-hidden-layer MLP beside the linear
classifier (``head_hidden``; logits = linear + MLP), fitted on the classifier inputs that
``readout_probe.py extract`` kept for a sample of training residues (splits 0-7) and
scored on the same 10,000 validation residues of split 8 after every epoch. The MLP's
output layer starts at zero, so the fit starts at the model's own accuracy; the linear
classifier stays as trained unless ``--train-linear``. Inputs are standardised for the
fit and the standardisation is folded into the MLP's first layer, so the written model
(``-o STEM``: ``STEM.json`` + ``STEM.safetensors``) is an ordinary cathnet model that
``cathnet evaluate`` and ``cathnet predict`` load. The MLP costs no grid work.

    python experiments/aa_v2/readout_probe.py extract MODEL.json --data cath10-env.npz --train 60000 -o a.npz
    python experiments/aa_v2/head_fit.py MODEL.json a.npz [b.npz ...] --hidden 256 -o runs/mlp/best
"""
from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cathnet.checkpoint import load_model, save_model
from cathnet.networks import from_config
from cathnet.networks.widen import widen


def load_features(paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training features and labels of every file (each residue once), validation from the first."""
    files = [np.load(p) for p in paths]
    val_items = files[0]["val_items"]
    if any("val_items" in f and not np.array_equal(f["val_items"], val_items) for f in files):
        sys.exit("the files hold different validation residues: extract them with the same --val (or --val 0)")
    items = np.concatenate([f["train_items"] for f in files])
    _, first = np.unique(items, return_index=True)
    X = np.concatenate([f["train_F"] for f in files])[first]
    y = np.concatenate([f["train_labels"] for f in files])[first]
    return X, y, files[0]["val_F"], files[0]["val_labels"]


def fit(head: nn.Module, X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, args) -> list[dict]:
    """Fit ``head.mlp`` (and ``head.classifier`` with ``--train-linear``) by AdamW with a cosine
    schedule; the MLP sees standardised features, folded into its first layer at the end."""
    torch.manual_seed(args.seed)
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Xt, Xvt = torch.tensor(X), torch.tensor(Xv)
    yt, yvt = torch.as_tensor(y, dtype=torch.long), torch.as_tensor(yv, dtype=torch.long)
    mu_t, sd_t = torch.tensor(mu), torch.tensor(sd)
    mlp = nn.Sequential(nn.Dropout(args.dropout_in), nn.Linear(X.shape[1], args.hidden), nn.ReLU(),
                        nn.Dropout(args.dropout_hidden), nn.Linear(args.hidden, head.classifier[1].out_features))
    nn.init.zeros_(mlp[4].weight)
    nn.init.zeros_(mlp[4].bias)
    linear = head.classifier[1]
    params = [{"params": mlp.parameters(), "weight_decay": args.wd}]
    if args.train_linear:  # otherwise the linear classifier stays as trained (outside the optimizer)
        params.append({"params": linear.parameters(), "weight_decay": 0.0, "lr": args.lr * args.linear_lr})
    opt = torch.optim.AdamW(params, args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)

    def logits(x: torch.Tensor) -> torch.Tensor:
        return linear(x) + mlp((x - mu_t) / sd_t)

    history = []
    for epoch in range(1, args.epochs + 1):
        mlp.train()
        total = 0.0
        for b in torch.randperm(len(Xt)).split(args.batch_size):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(logits(Xt[b]), yt[b])
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        sched.step()
        mlp.eval()
        with torch.no_grad():
            z = logits(Xvt)
            val, val_loss = float((z.argmax(1) == yvt).float().mean()), float(nn.functional.cross_entropy(z, yvt))
        history.append({"epoch": epoch, "train_loss": total / len(Xt), "val_loss": val_loss, "val_acc": val})
        print(f"epoch {epoch:3d}  train loss {total / len(Xt):.4f}  val loss {val_loss:.4f}  top-1 {val:.4f}",
              flush=True)
    with torch.no_grad():  # fold the standardisation: W (x - mu) / sd + b = (W / sd) x + (b - (W / sd) mu)
        w = mlp[1].weight / sd_t
        head.mlp[1].weight.copy_(w)
        head.mlp[1].bias.copy_(mlp[1].bias - w @ mu_t)
        head.mlp[4].weight.copy_(mlp[4].weight)
        head.mlp[4].bias.copy_(mlp[4].bias)
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the trained model (NAME.json)")
    parser.add_argument("features", nargs="+", help="readout_probe.py extract outputs of this model")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--dropout-in", type=float, default=0.2)
    parser.add_argument("--dropout-hidden", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--wd", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--train-linear", action="store_true", help="fine-tune the linear classifier too")
    parser.add_argument("--linear-lr", type=float, default=0.1, help="its learning rate, relative to --lr")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-o", "--output", required=True, help="model stem to write (STEM.json, STEM.safetensors)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X, y, Xv, yv = load_features(args.features)
    narrow, meta = load_model(args.model)
    config = {**meta["network"]["config"], "head_hidden": args.hidden}
    model = from_config(config).eval()
    widen(narrow, model)  # the same network and linear classifier; the MLP's output at zero
    print(f"{len(X):,} training residues, {len(Xv):,} validation, {X.shape[1]} features", flush=True)
    history = fit(model.head, X, y, Xv, yv, args)

    with torch.no_grad():  # the written head reproduces the fit on the validation features
        head = model.head.eval()
        x = torch.tensor(Xv)
        own = float((head.classifier(x).argmax(1) == torch.as_tensor(yv)).float().mean())
        val = float(((head.classifier(x) + head.mlp(x)).argmax(1) == torch.as_tensor(yv)).float().mean())
    assert abs(val - history[-1]["val_acc"]) < 2e-3, (val, history[-1]["val_acc"])
    out = {k: v for k, v in copy.deepcopy(meta).items() if k not in ("format", "network", "weights", "name")}
    out["training"]["head_fit"] = {
        "from": args.model, "features": args.features, "n_train": len(X), "hidden": args.hidden,
        "dropout_in": args.dropout_in, "dropout_hidden": args.dropout_hidden, "epochs": args.epochs, "lr": args.lr,
        "wd": args.wd, "batch_size": args.batch_size, "train_linear": args.train_linear, "seed": args.seed,
        "history": history, "command": shlex.join(["python", *sys.argv]),
    }
    out["metrics"] = {**history[-1], "val_acc": val, "linear_only_val_acc": own, "n_val": len(Xv)}  # as train's
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_model(args.output, model, out)
    print(json.dumps(out["metrics"]))


if __name__ == "__main__":
    main()
