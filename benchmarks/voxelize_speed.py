"""Throughput of parse + voxelize over CATH pool domains, and the separable voxelizer
against the dense (every atom × every voxel) formulation.

    python benchmarks/voxelize_speed.py [--pool DIR] [--n 500] [--workers 2] [--selection ca]

Goals: ≥ 200 domains/s per core for parse + voxelize (Cα, 50³ grid, 2 Å, σ = 1 Å) and a
separable voxelizer ≥ 100× faster than the dense one. Times are medians of ``--repeats``.
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from pool import HELP, pool_files

from cathnet.selection import select_atoms
from cathnet.structure import read_structure
from cathnet.voxel import voxelize, voxelize_dense


def parse_and_voxelize(path: str, selection: str) -> int:
    coords, channels, n_channels = select_atoms(read_structure(path), selection)
    return voxelize(coords, channels, n_channels).n_outside


def _chunk(job: tuple[list[str], str]) -> int:
    paths, selection = job
    return sum(parse_and_voxelize(p, selection) for p in paths)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=None, help=HELP)
    parser.add_argument("--n", type=int, default=500, help="domains to parse and voxelize")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--selection", default="ca", choices=("ca", "backbone", "heavy"))
    parser.add_argument("--dense", type=int, default=3, help="domains for the dense comparison")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pool, files = pool_files(args.pool, tmp)
        paths = [str(p) for p in files[: args.n]]
        n = len(paths)
        print(f"{n} domains from {pool}, selection {args.selection}, grid 50³ × 2 Å, σ 1 Å, median of {args.repeats}")

        for p in paths[:20]:  # warm caches and imports
            parse_and_voxelize(p, args.selection)
        t_parse = median_time(lambda: [read_structure(p) for p in paths], args.repeats)
        t_one = median_time(lambda: [parse_and_voxelize(p, args.selection) for p in paths], args.repeats)
        print(f"parse only,        1 process : {n / t_parse:7.0f} domains/s")
        print(f"parse + voxelize,  1 process : {n / t_one:7.0f} domains/s")

        chunks = [(paths[i::args.workers * 8], args.selection) for i in range(args.workers * 8)]
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("fork")) as executor:
            list(executor.map(_chunk, [(paths[:4], args.selection)] * args.workers))  # start the workers
            t_many = median_time(lambda: list(executor.map(_chunk, chunks)), args.repeats)
        print(f"parse + voxelize, {args.workers} processes: {n / t_many:7.0f} domains/s"
              f" = {n / t_many / args.workers:.0f} per process")

        print(f"voxelizer alone vs dense ({args.dense} domains, {args.selection}):")
        ratios = []
        for p in paths[: args.dense]:
            coords, channels, n_channels = select_atoms(read_structure(p), args.selection)
            fast = median_time(functools.partial(voxelize, coords, channels, n_channels), max(args.repeats, 5))
            start = time.perf_counter()
            dense = voxelize_dense(coords, channels, n_channels)
            slow = time.perf_counter() - start
            diff = np.abs(voxelize(coords, channels, n_channels).grid - dense.grid).max()
            ratios.append(slow / fast)
            print(f"  {Path(p).stem}: {len(coords):5d} atoms  separable {fast * 1e3:7.2f} ms  "
                  f"dense {slow * 1e3:8.0f} ms"
                  f"  ratio {slow / fast:6.0f}×  max |Δ| {diff:.1e}")
        print(f"median ratio: {statistics.median(ratios):.0f}× faster than dense")


if __name__ == "__main__":
    main()
