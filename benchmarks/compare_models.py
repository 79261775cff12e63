"""Two or more CATH models side by side: domains per second of ``cathnet predict`` on the same
pool files, runs interleaved, medians, and each model's ratio to the first.

    python benchmarks/compare_models.py cath-arch NEW.json [--files 100] [--threads 2] [--repeats 3]

Each model goes through ``load_model(model).predict_many`` (what the CLI runs) at the
default precision; one warm-up batch each, then ``--repeats`` rounds, each round running
every model once in turn, so that a busy neighbour slows all of them alike. Also prints how
often the models' top-1 agree on these files.
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
    parser.add_argument("models", nargs="+", help="released model names or paths; ratios are to the first")
    parser.add_argument("--pool", type=Path, default=None, help=HELP)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: the library's default)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.files < 1 or args.repeats < 1 or args.batch_size < 1 or args.threads < 0:
        parser.error("--files, --repeats and --batch-size must be ≥ 1, --threads ≥ 0")
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(args.threads))

    import torch

    from cathnet.predict import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        _, files = pool_files(args.pool, tmp)
        paths = files[: args.files]
        models = [load_model(m) for m in args.models]
        for m in models:
            list(m.predict_many(paths[: args.batch_size], batch_size=args.batch_size))  # warm-up
        times: list[list[float]] = [[] for _ in models]
        top1: list[list[str | None]] = [[] for _ in models]
        for _ in range(args.repeats):
            for k, m in enumerate(models):
                start = time.perf_counter()
                preds = list(m.predict_many(paths, batch_size=args.batch_size))
                times[k].append(time.perf_counter() - start)
                top1[k] = [p.architecture for p in preds]
    print(f"{len(paths)} pool files, batch {args.batch_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {models[0].precision}; medians of {args.repeats} interleaved rounds")
    w = max(len(m) for m in args.models)
    print(f"{'model':{w}s} {'parameters':>10s} {'grid':>10s} {'domains/s':>10s} {'ratio':>7s} {'top-1 = first':>14s}")
    base = statistics.median(times[0])
    for name, m, t, labels in zip(args.models, models, times, top1):
        same = sum(a == b for a, b in zip(labels, top1[0])) / len(labels)
        grid = f"{m.grid_size}³×{m.voxel_size:g}Å"
        print(f"{name:{w}s} {m.meta['network']['n_parameters']:>10,d} {grid:>10s} "
              f"{len(paths) / statistics.median(t):10.1f} {base / statistics.median(t):6.2f}× {same:14.3f}")


if __name__ == "__main__":
    main()
