"""Prediction throughput of a model on CPU: domains per second, parse + voxelize vs network,
peak memory, and the collapsed network against the uncollapsed one.

    python benchmarks/predict_speed.py [--model cath-arch] [--pool DIR] [--batch-size 16]
                                       [--threads 1] [--repeats 3] [--quick] [--json OUT]

Everything goes through ``cathnet.predict.load_model(...).predict_many`` on the first 1, 100
and 1,000 pool files (sorted by name; ``--quick``: 1 and 100), the way ``cathnet predict``
runs. Times are medians of ``--repeats`` runs after one warm-up batch (files are in the page
cache after the first run). Per run:

* network: time inside ``ArchitectureModel.probabilities`` (numpy → tensor, forward, softmax);
* parse + voxelize: the rest of the run (read the file, select atoms, voxelize, stack the
  batch, assemble the predictions).

Peak memory is ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the process's high-water mark
so far: it never goes down, so each row shows the peak reached by the end of that row
(the uncollapsed model is loaded only after the throughput rows).

Collapsed vs uncollapsed: ``load_model(model)`` turns every steerable convolution into the
plain ``conv3d`` it computes; ``load_model(model, collapse=False)`` assembles the kernels
from the steerable basis on every call. Both networks run on the same grids (the first
``--batch-size`` readable pool files, voxelized once; and the first of them alone), calls
interleaved, and the largest difference of their class probabilities is printed as a check.

``--threads N`` sets ``torch.set_num_threads(N)`` and, unless already set, ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` (before numpy and torch load, so that the
voxelizer's BLAS calls obey it too); ``--threads 0`` keeps the libraries' defaults. The
default is 1: on a small shared machine multi-threaded timings measure the neighbours.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pool import HELP, pool_files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cath-arch", help="released model name or path (default cath-arch)")
    parser.add_argument("--pool", type=Path, default=None,
                        help=HELP)
    parser.add_argument("--batch-size", type=int, default=16, help="predict_many batch size (default 16)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch (and BLAS) threads; 0: library defaults (default 1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per size; the median is reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 and 100 files only")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1 or args.threads < 0:
        parser.error("--batch-size and --repeats must be ≥ 1, --threads ≥ 0")
    return args


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(args.threads))

    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from cathnet.fileio import write_json
    from cathnet.predict import load_model
    from cathnet.structure import StructureError, read_structure

    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=max(Console().width, 120))
    rss_start = peak_rss_mib()

    with tempfile.TemporaryDirectory() as tmp:
        pool, files = pool_files(args.pool, tmp, console.print)

        t0 = time.perf_counter()
        model = load_model(args.model)
        load_s = time.perf_counter() - t0
        rss_model = peak_rss_mib()
        meta = model.meta
        console.print(
            f"model {args.model} ({meta['network']['name']}, {meta['network']['n_parameters']:,} parameters; "
            f"{model.preprocessing.selection} atoms, {model.n_channels} channels, "
            f"{model.grid_size}³ × {model.voxel_size:g} Å), "
            f"loaded + collapsed in {load_s:.2f} s; pool {pool} ({len(files)} files); batch {args.batch_size}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians of {args.repeats}"
        )

        network_s = [0.0]
        probabilities = model.probabilities

        def timed_probabilities(grids):
            start = time.perf_counter()
            out = probabilities(grids)
            network_s[0] += time.perf_counter() - start
            return out

        model.probabilities = timed_probabilities  # instance attribute: predict_many calls it

        def run(paths: list[Path]) -> tuple[float, float, int]:
            network_s[0] = 0.0
            start = time.perf_counter()
            preds = list(model.predict_many(paths, batch_size=args.batch_size))
            total = time.perf_counter() - start
            return total, network_s[0], sum(p.error is not None for p in preds)

        run(files[: args.batch_size])  # warm-up: first-call allocations, thread pools, imports

        rows = []
        for n in (1, 100) if args.quick else (1, 100, 1000):
            paths = files[:n]
            runs = [run(paths) for _ in range(args.repeats)]
            total = statistics.median(r[0] for r in runs)
            network = statistics.median(r[1] for r in runs)
            parse = statistics.median(r[0] - r[1] for r in runs)
            rows.append({
                "files": len(paths), "errors": runs[0][2], "total_s": total, "parse_voxelize_s": parse,
                "network_s": network, "domains_per_s": len(paths) / total,
                "parse_voxelize_per_s": len(paths) / parse, "network_per_s": len(paths) / network,
                "ms_per_domain": 1e3 * total / len(paths), "peak_rss_mib": peak_rss_mib(),
            })
            console.print(f"  {len(paths)} file(s) timed", style="dim")

        # Collapsed vs uncollapsed on one batch.
        grids = []
        for path in files:
            if len(grids) == args.batch_size:
                break
            with contextlib.suppress(StructureError):
                grids.append(model.grid(read_structure(path))[0])
        grids = np.stack(grids)
        uncollapsed = load_model(args.model, collapse=False)
        uncollapsed.probabilities(grids[:1])  # warm-up
        collapse = []
        for batch in sorted({1, len(grids)}):  # one domain (interactive use) and the batch
            times: dict[str, list[float]] = {"collapsed": [], "uncollapsed": []}
            outputs = {}
            for _ in range(args.repeats):  # interleaved: a load spike hits both alike
                for name, fn in (("collapsed", probabilities), ("uncollapsed", uncollapsed.probabilities)):
                    start = time.perf_counter()
                    outputs[name] = fn(grids[:batch])
                    times[name].append(time.perf_counter() - start)
            collapse.append({
                "batch": batch, "collapsed_s": statistics.median(times["collapsed"]),
                "uncollapsed_s": statistics.median(times["uncollapsed"]),
                "max_abs_prob_diff": float(np.abs(outputs["collapsed"] - outputs["uncollapsed"]).max()),
            })
            collapse[-1]["speedup"] = collapse[-1]["uncollapsed_s"] / collapse[-1]["collapsed_s"]

    table = Table(title=f"Prediction on CPU, {torch.get_num_threads()} thread(s), batch {args.batch_size}")
    for col in ("files", "domains/s", "ms/domain", "parse+vox s", "parse+vox /s", "network s", "network /s",
                "network share", "peak RSS MiB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['files']:,}" + (f" ({r['errors']} failed)" if r["errors"] else ""),
            f"{r['domains_per_s']:.1f}", f"{r['ms_per_domain']:.1f}",
            f"{r['parse_voxelize_s']:.3f}", f"{r['parse_voxelize_per_s']:.1f}",
            f"{r['network_s']:.3f}", f"{r['network_per_s']:.1f}",
            f"{r['network_s'] / r['total_s']:.0%}", f"{r['peak_rss_mib']:.0f}",
        )
    console.print(table)
    console.print(f"times: medians of {args.repeats}; parse+vox = everything outside the network (read, select, "
                  f"voxelize, stack, assemble). Peak RSS: {rss_start:.0f} MiB after imports, {rss_model:.0f} MiB "
                  "after loading the model")

    ctable = Table(title="Network only (same grids): collapsed conv3d vs steerable kernels assembled per call")
    for col in ("batch", "collapsed s", "uncollapsed s", "uncollapsed / collapsed", "collapsed domains/s",
                "max |Δ probability|"):
        ctable.add_column(col, justify="right")
    for c in collapse:
        ctable.add_row(str(c["batch"]), f"{c['collapsed_s']:.4f}", f"{c['uncollapsed_s']:.4f}", f"{c['speedup']:.2f}×",
                       f"{c['batch'] / c['collapsed_s']:.1f}", f"{c['max_abs_prob_diff']:.1e}")
    console.print(ctable)

    if args.json:
        write_json(args.json, {
            "model": str(args.model), "network": meta["network"]["name"],
            "n_parameters": meta["network"]["n_parameters"], "input": meta["input"],
            "pool": str(pool), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
            "repeats": args.repeats, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "load_s": load_s,
            "peak_rss_mib": {"after_imports": rss_start, "after_load": rss_model},
            "throughput": rows, "collapse": collapse,
        })
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
