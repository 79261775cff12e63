"""Would averaging over rotations help a frame-readout amino-acid model? Measure it.

Such a model (``readout=frame``, trained in the backbone frame) reads the grid means of
its last l > 0 fields, which rotate by D(R) when its input is turned by R. So the
environment can be turned by R before voxelization and the readout turned back by D(R)ᵀ
before the linear classifier. With exact equivariance the logits come back unchanged: a
test-time average over rotations would then smooth the grid's discretisation. This script
measures, on validation residues, the top-1 accuracy and the agreement with the unturned
prediction, for random cube rotations (exact on the grid) and Haar-random rotations, with
and without turning the readout back.

    python experiments/aa_v2/frame_rotation.py experiments/aa_v2/stage2-wide/best.json \
        --data cath10-env.npz --split 8 --max-items 1000
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from cathnet import nn as enn
from cathnet.checkpoint import load_model
from cathnet.inference import predict
from cathnet.nn import FieldType
from cathnet.preprocess import Preprocessing
from cathnet.so3 import cube_rotations, random_rotation
from cathnet.tasks import task_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", type=int, default=8)
    ap.add_argument("--max-items", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", help="write the numbers as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    network, meta = load_model(args.checkpoint, dev)
    config = meta["network"]["config"]
    if config.get("readout") != "frame":
        raise SystemExit(f"{args.checkpoint}: not a frame-readout network")
    model = enn.collapse(network).eval()
    prep = Preprocessing.from_metadata(meta)
    task = task_for(meta["task"], args.data, prep)
    items = task.items([args.split])
    items = np.sort(np.random.default_rng([args.seed, 1]).choice(items, min(args.max_items, len(items)), replace=False))
    y = task.labels[items]
    readout = FieldType(config["widths"][-1]).higher()  # the l > 0 fields the head reads, in channel order
    head = model.head
    captured: list[torch.Tensor] = []
    head.classifier.register_forward_hook(lambda m, inputs, out: captured.append(inputs[0].detach().float()))

    def run(R: np.ndarray | None) -> torch.Tensor:
        """Inputs of the linear classifier (pooled scalars, then the readout components)."""
        captured.clear()
        predict(model, task, items, device=dev, batch_size=256, rotations=R, precision="fp32")
        return torch.cat(captured)

    classifier = head.classifier[1]
    reference = classifier(run(None)).argmax(1).numpy()
    rng = np.random.default_rng(args.seed)
    result: dict = {
        "checkpoint": args.checkpoint,
        "split": args.split,
        "n": len(items),
        "top1": float((reference == y).mean()),
    }
    for kind in ("cube", "random"):
        R = cube_rotations()[rng.integers(1, 24, len(items))] if kind == "cube" else random_rotation(len(items), rng)
        features = run(R)
        D = torch.stack([readout.representation(r) for r in R])  # (B, n, n): how the readout turned
        n = readout.dim
        back = torch.cat([features[:, :-n], torch.einsum("bji,bj->bi", D, features[:, -n:])], dim=1)
        for turned, f in (("readout turned back", back), ("readout as computed", features)):
            p = classifier(f).argmax(1).numpy()
            result[f"{kind}, {turned}"] = {"top1": float((p == y).mean()), "agreement": float((p == reference).mean())}
    print(json.dumps(result, indent=1))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    with torch.no_grad():
        main()
