"""Memory layout of the released networks' forward pass on CPU: contiguous (NCDHW) against
``channels_last_3d`` (NDHWC), per batch size, on real inputs.

    python benchmarks/layout_speed.py [--pool DIR] [--threads 1] [--repeats 5] [--precision fp32]

Inputs are grids of real pool domains (``cath-arch``: the first 16 files; ``aa-propensity``:
the residue environments of the first files, 256 of them). Both layouts run the collapsed
network on the same grids, calls interleaved; medians of ``--repeats``. ``layout`` is what
``cathnet.inference.Model`` does with it: its network in channels_last_3d and each input
batch converted (the conversion is inside the timing). Also printed: the largest difference
of a class probability between the layouts, and whether every top-1 call agrees.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pool import HELP, pool_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=None, help=HELP)
    parser.add_argument("--threads", type=int, default=1, help="torch (and BLAS) threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per layout and size (default 5)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import numpy as np
    import torch

    from cathnet.predict import load_model
    from cathnet.structure import read_structure

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        _, files = pool_files(args.pool, tmp)
        structures = [read_structure(f) for f in files[:16]]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"{args.precision}, medians of {args.repeats}")
    print("| model | batch | contiguous (ms) | channels_last_3d (ms) | speed-up | largest Δp | top-1 agree |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, sizes in (("cath-arch", (1, 4, 16)), ("aa-propensity", (1, 32, 128, 256))):
        plain = load_model(name, precision=args.precision)
        if name == "cath-arch":
            grids = torch.from_numpy(np.concatenate([plain.grids(s)[0] for s in structures]))
        else:
            envs = [e for s in structures for e in plain.environments(s)[2]][:max(sizes)]
            grids = plain.grids(envs)
        plain.channels_last = False
        plain.network = plain.network.to(memory_format=torch.contiguous_format)
        last = load_model(name, precision=args.precision)
        last.channels_last = True
        last.network = last.network.to(memory_format=torch.channels_last_3d)
        for size in sizes:
            x = grids[:size].contiguous()
            times: dict[bool, list[float]] = {False: [], True: []}
            outputs = {}
            for repeat in range(args.repeats + 1):  # the first round warms up
                for model in (plain, last):
                    start = time.perf_counter()
                    outputs[model.channels_last] = model.softmax(x)
                    if repeat:
                        times[model.channels_last].append(time.perf_counter() - start)
            t0, t1 = (statistics.median(times[k]) for k in (False, True))
            delta = float(np.abs(outputs[False] - outputs[True]).max())
            agree = bool((outputs[False].argmax(1) == outputs[True].argmax(1)).all())
            print(f"| {name} | {size} | {1e3 * t0:.0f} | {1e3 * t1:.0f} | {t0 / t1:.2f}× | {delta:.1e} | {agree} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
