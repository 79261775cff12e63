"""Amino-acid propensity throughput on CPU: residues per second of ``cathnet predict --task aa``.

    python benchmarks/predict_aa_speed.py [--model aa-propensity] [--pool DIR] [--files 1,20,100]
                                          [--batch-size 128] [--threads 1,2] [--repeats 3] [--json OUT]

Runs ``load_model(model).predict_many`` (what the CLI runs) on the first N pool files
(sorted by name) for each N and each thread count, one warm-up run first, medians of
``--repeats``. Split per run: *network* = time inside ``PropensityModel.probabilities``
minus its voxelization (measured by timing ``PropensityModel.grids`` inside it), *voxelize* =
``PropensityModel.grids``, *read + environments* = the rest (parse the file, cut out every
residue's environment, assemble the results).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from pool import HELP, pool_files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="aa-propensity")
    parser.add_argument("--pool", type=Path, default=None, help=HELP)
    parser.add_argument("--files", default="1,20,100", help="comma-separated numbers of files (default 1,20,100)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = parser.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    from cathnet.fileio import write_json
    from cathnet.predict import load_model

    console = Console(width=max(Console().width, 110))
    with tempfile.TemporaryDirectory() as tmp:
        _, files = pool_files(args.pool, tmp, console.print)
        model = load_model(args.model)
        meta = model.meta
        console.print(
            f"model {args.model} ({meta['network']['name']}, {meta['network']['n_parameters']:,} parameters, "
            f"{model.grid_size}³ × {model.voxel_size:g} Å, radius {model.preprocessing.radius:g} Å); "
            f"batch {args.batch_size}; "
            f"torch {torch.__version__}; {os.cpu_count()} CPUs; medians of {args.repeats}"
        )

        timers = {"net": 0.0, "vox": 0.0}
        probabilities, grids = model.probabilities, model.grids

        def timed_probabilities(envs, rotations=None):
            t = time.perf_counter()
            out = probabilities(envs, rotations)
            timers["net"] += time.perf_counter() - t
            return out

        def timed_grids(*a, **k):
            t = time.perf_counter()
            out = grids(*a, **k)
            timers["vox"] += time.perf_counter() - t
            return out

        model.probabilities = timed_probabilities
        model.grids = timed_grids

        def run(paths):
            timers.update(net=0.0, vox=0.0)
            t = time.perf_counter()
            results = list(model.predict_many(paths, batch_size=args.batch_size))
            total = time.perf_counter() - t
            return total, timers["net"] - timers["vox"], timers["vox"], sum(len(r.residues) for r in results)

        rows = []
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            run(files[:2])
            for n in [int(f) for f in args.files.split(",")]:
                runs = [run(files[:n]) for _ in range(args.repeats)]
                total, net, vox = (statistics.median(r[i] for r in runs) for i in range(3))
                residues = runs[0][3]
                rows.append({
                    "threads": threads, "files": n, "residues": residues, "seconds": total,
                    "residues_per_s": residues / total, "network_s": net, "voxelize_s": vox,
                    "read_environments_s": total - net - vox,
                })

    table = Table("threads", "files", "residues", "time (s)", "residues/s", "network", "voxelize",
                  "read + environments",
                  title="cathnet predict --task aa throughput (CPU)", title_justify="left")
    for r in rows:
        table.add_row(str(r["threads"]), str(r["files"]), f"{r['residues']:,}", f"{r['seconds']:.2f}",
                      f"{r['residues_per_s']:,.0f}", f"{r['network_s'] / r['seconds']:.0%}",
                      f"{r['voxelize_s'] / r['seconds']:.0%}", f"{r['read_environments_s'] / r['seconds']:.0%}")
    console.print(table)
    if args.json:
        write_json(args.json, {"model": args.model, "batch_size": args.batch_size, "rows": rows})


if __name__ == "__main__":
    main()
