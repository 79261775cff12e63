"""bf16 against fp32 for the shipped models: equivariance error, agreement of predictions,
and end-to-end prediction speed (``load_model(...).predict_many``, what ``cathnet predict``
runs).

    python benchmarks/precision_report.py [--pool DIR] [--domains 500] [--aa-files 20]
                                          [--repeats 3] [--threads 2] [--json OUT]

* Equivariance: max over the 24 cube rotations of |f(R x) − f(x)| / |f(x)| of the logits of
  each shipped network (collapsed, as loaded) on fixture inputs, in fp32 and under bf16
  autocast, and the bf16 logits' distance from the fp32 ones; for a network whose head
  reads the backbone frame, |f(R x) − D(R) f(x)| / |f(x)| of its equivariant features.
* Agreement: top-1 of ``cath-arch`` on the first ``--domains`` pool files (sorted), and
  per residue of ``aa-propensity`` on the first ``--aa-files``; largest |Δp| of the reported
  probabilities.
* Speed: domains/s and residues/s, fp32 and bf16 runs interleaved, medians of ``--repeats``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from pool import HELP, pool_files

ROOT = Path(__file__).resolve().parent.parent


def _equivariance(model, x, precision: str) -> tuple[float, "object"]:
    """Largest relative error over the 24 cube rotations, and the unrotated logits. The error
    is the logits', or for a network whose head reads the frame (``readout="frame"``, not a
    grid invariant by design) its equivariant features', rotated with their field type."""
    import torch

    from cathnet import so3
    from cathnet.networks import reads_frame
    from cathnet.networks.steerable import input_type
    from cathnet.precision import autocast

    t = input_type(x.shape[1], model.preprocessing.in_type)  # oriented input fields rotate their components too
    rotations = so3.cube_rotations()
    batch = torch.cat([t.transform(x, R) for R in rotations])
    f, out_type = model.network, None
    if reads_frame(model.meta["network"]["config"]):
        f = model.network.features
        out_type = f[-1].out_type
    with torch.no_grad(), autocast(precision, torch.device("cpu")):
        out, logits = f(batch).float(), model.network(x).float()
    ref = out[:1]
    err = max(((o[None] - (ref if out_type is None else out_type.transform(ref, R))).norm() / ref.norm()).item()
              for o, R in zip(out, rotations))
    return err, logits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=None, help=HELP)
    parser.add_argument("--domains", type=int, default=500)
    parser.add_argument("--aa-files", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import numpy as np
    import torch

    from cathnet import load_model
    from cathnet.structure import read_structure

    torch.set_num_threads(args.threads)
    report: dict = {"threads": args.threads, "repeats": args.repeats}
    fixtures = sorted((ROOT / "tests" / "data" / "cath").glob("*.pdb"))
    with tempfile.TemporaryDirectory() as tmp:
        _, files = pool_files(args.pool, tmp)
        for name in ("cath-arch", "aa-propensity"):
            models = {p: load_model(name, precision=p) for p in ("fp32", "bf16")}
            m = models["fp32"]
            if name == "cath-arch":
                x = torch.from_numpy(m.grid(read_structure(fixtures[0]))[0][None])
            else:
                _, _, envs = m.environments(read_structure(fixtures[0]))
                x = m.grids(envs[:1])
            eq = {p: _equivariance(mod, x, p) for p, mod in models.items()}
            gap = ((eq["bf16"][1] - eq["fp32"][1]).norm() / eq["fp32"][1].norm()).item()
            entry = {"equivariance_fp32": eq["fp32"][0], "equivariance_bf16": eq["bf16"][0], "bf16_vs_fp32_logits": gap}
            chosen = files[: args.domains] if name == "cath-arch" else files[: args.aa_files]
            runs: dict = {"fp32": [], "bf16": []}
            results: dict = {}
            for _ in range(args.repeats):
                for p, mod in models.items():
                    tic = time.perf_counter()
                    results[p] = list(mod.predict_many(chosen, **({"top": 10} if name == "cath-arch" else {})))
                    runs[p].append(time.perf_counter() - tic)
            if name == "cath-arch":
                ok = [(a, b) for a, b in zip(results["fp32"], results["bf16"]) if a.error is None and b.error is None]
                n = len(ok)
                entry["agreement"] = float(np.mean([a.architecture == b.architecture for a, b in ok]))
                probs = [
                    (
                        {t["architecture"]: t["probability"] for t in a.top},
                        {t["architecture"]: t["probability"] for t in b.top},
                    )
                    for a, b in ok
                ]
                entry["max_dp"] = max(abs(pa[k] - pb[k]) for pa, pb in probs for k in pa)
                unit = "domains"
            else:
                pairs = [(ra, rb) for a, b in zip(results["fp32"], results["bf16"]) if a.error is None
                         for ra, rb in zip(a.residues, b.residues)]
                n = len(pairs)
                entry["agreement"] = float(np.mean([ra.predicted == rb.predicted for ra, rb in pairs]))
                entry["max_dp"] = float(max(np.abs(ra.probabilities - rb.probabilities).max() for ra, rb in pairs))
                unit = "residues"
            for p in runs:
                entry[f"{unit}_per_s_{p}"] = n / statistics.median(runs[p])
            entry["speedup"] = statistics.median(runs["fp32"]) / statistics.median(runs["bf16"])
            entry["n"], entry["unit"] = n, unit
            report[name] = entry
            print(name, json.dumps(entry), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
