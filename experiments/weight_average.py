"""Average the weights of snapshots of one training run (stochastic weight averaging, Izmailov
et al. 2018, after the fact) and re-estimate every batch norm's statistics on training items.

The snapshots are ``*.safetensors`` of one run (``best``, ``epoch-NNNN``); the reference
model (a ``best.json``) gives the network and the metadata. The statistics are the plain
mean over ``--bn-items`` training items (splits other than the model's validation and test
splits) shown as in evaluation: in the principal-axes frame with ``--canonical principal``,
turned by random rotations with ``--canonical none`` for a CATH model. The result is a model
(``OUT.json`` + ``OUT.safetensors``) for ``cathnet evaluate``.

    python experiments/weight_average.py experiments/cath_v2/v2-fields-s1.5/best.json \
        --data cath10-ss.npz --canonical principal -o avg \
        experiments/cath_v2/v2-fields-s1.5/best.safetensors experiments/cath_v2/v2-fields-s1.5/epoch-0018.safetensors
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from safetensors.torch import load_file

from cathnet import nn as enn
from cathnet.checkpoint import load_model, save_model
from cathnet.inference import batch_grids
from cathnet.preprocess import Preprocessing
from cathnet.so3 import random_rotation
from cathnet.tasks import task_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference")
    ap.add_argument("snapshots", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--canonical", choices=("principal", "none"), help="override the model's canonical frame")
    ap.add_argument("--bn-items", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("-o", "--output", required=True, help="output stem")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    model, meta = load_model(args.reference, dev)
    states = [load_file(p) for p in args.snapshots]
    model.load_state_dict(
        {k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v for k, v in states[0].items()}
    )
    prep = Preprocessing.from_metadata(meta)
    if args.canonical is not None:
        prep = replace(prep, canonical=None if args.canonical == "none" else args.canonical)
    task = task_for(meta["task"], args.data, prep)
    held_out = set(meta["data"]["val_splits"]) | set(meta["data"]["test_splits"])
    train = task.items([s for s in range(meta["data"]["n_splits"]) if s not in held_out])
    rng = np.random.default_rng(0)
    train = rng.choice(train, min(args.bn_items, len(train)), replace=False)
    norms = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm3d, enn.EquivariantBatchNorm))]
    for m in norms:
        if isinstance(m, torch.nn.BatchNorm3d):
            m.reset_running_stats()
            m.momentum = None  # cumulative mean
    model.eval()
    for m in norms:
        m.train()  # batch statistics in the norms only: dropout stays off
    turn = prep.canonical is None and meta["task"] == "cath"
    for k, lo in enumerate(range(0, len(train), args.batch_size)):
        for m in norms:
            if isinstance(m, enn.EquivariantBatchNorm):
                m.momentum = 1 / (k + 1)  # its running mean, made cumulative (the first batch overwrites it)
        batch = task.batch(train[lo : lo + args.batch_size])
        R = random_rotation(len(batch.targets), rng) if turn else None
        model(batch_grids(task.preprocessing, batch, R, dev))
    model.eval()
    kept = {k: v for k, v in meta.items() if k not in ("format", "network", "weights")}
    save_model(args.output, model, {**kept, "averaged_from": args.snapshots, "bn_items": len(train)})
    print(f"wrote {args.output}.json: mean of {len(states)} snapshots, norms re-estimated on {len(train)} items")


if __name__ == "__main__":
    with torch.no_grad():
        main()
