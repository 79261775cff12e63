"""Equivariance errors of every layer and shipped network, as numbers for the README.

    python benchmarks/equivariance_report.py [--model cath-arch]

Cube rotations: max over the 24 rotations of |f(R·x) − R·f(x)| / |R·f(x)| on random
inputs (float32 and float64). Arbitrary rotations: the released model's top-1 agreement and
probability shift when the atoms of real domains are rotated at random.
"""
from __future__ import annotations

import argparse
import glob

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table

from cathnet import so3
from cathnet.networks import build
from cathnet.nn import (
    EquivariantAvgPool,
    EquivariantBatchNorm,
    FieldDropout,
    FieldType,
    Gate,
    GlobalPool,
    NormNonlinearity,
    SE3Conv,
)

CUBE = so3.cube_rotations()
T = FieldType.parse("2x0 + 2x1 + 2x2 + 2x3")


def cube_error(f, tin, tout, x) -> float:
    with torch.no_grad():
        y = f(x)
        outs = f(torch.cat([tin.transform(x, R) for R in CUBE])).split(len(x))
    return max(
        ((o - (y if tout is None else tout.transform(y, R))).norm() / y.norm()).item() for o, R in zip(outs, CUBE)
    )


def layers():
    tin = FieldType.parse("1x0 + 1x1")
    bn = EquivariantBatchNorm(T)
    bn(torch.randn(4, T.dim, 6, 6, 6))
    stack = nn.Sequential(
        SE3Conv(tin, T.gated(), 5), EquivariantBatchNorm(T.gated()), Gate(T), FieldDropout(T, 0.3),
        EquivariantAvgPool(2), SE3Conv(T, T, 5), GlobalPool(T),
    )
    stack(torch.randn(2, tin.dim, 12, 12, 12))
    for s in (3, 5, 7):
        yield f"SE3Conv {T}, kernel {s}", SE3Conv(T, T, s), T, T, 10
    yield "SE3Conv kernel 4, stride 2 (10 → 5)", SE3Conv(T, T, 4, 2, 1), T, T, 10
    yield "SE3Conv kernel 3, stride 2 (11 → 6)", SE3Conv(T, T, 3, 2, 1), T, T, 11
    yield "Gate", Gate(T), T.gated(), T, 10
    yield "NormNonlinearity", NormNonlinearity(T), T, T, 10
    yield "EquivariantBatchNorm (eval)", bn.eval(), T, T, 10
    yield "FieldDropout (eval)", FieldDropout(T, 0.5).eval(), T, T, 10
    yield "EquivariantAvgPool 2/2 (10 → 5)", EquivariantAvgPool(2), T, T, 10
    yield "EquivariantAvgPool 3/2/1 (11 → 6)", EquivariantAvgPool(3, 2, 1), T, T, 11
    yield "GlobalPool → invariants", GlobalPool(T), T, None, 10
    yield "stack conv→BN→gate→dropout→pool→conv→global pool", stack.eval(), tin, None, 12
    for name, kw, grid, c in (
        ("se3-compact", {}, 50, 1),
        ("se3resnet34", {"grid_size": 14}, 14, 1),
        ("se3-env", {}, 16, 4),
    ):
        net = build(name, in_channels=c, n_classes=10, **kw)
        net(torch.rand(2, c, grid, grid, grid) * 0.1)
        yield f"network {name} ({grid}³) logits", net.eval(), FieldType([c]), None, grid


def real_protein_rotations(model_name: str, n_rot: int = 8):
    import cathnet
    from cathnet.structure import read_structure

    model = cathnet.load_model(model_name)
    agree, shift = [], []
    for path in sorted(glob.glob("tests/data/cath/*.pdb")):
        s = read_structure(path)
        base = model.probabilities(model.grid(s)[0][None])[0]
        probs = model.probabilities(np.stack([model.grid(s, R)[0] for R in so3.random_rotation(n_rot, seed=0)]))
        agree.append((probs.argmax(1) == base.argmax()).mean())
        shift.append(np.abs(probs - base).sum(1).max() / 2)
    return float(np.mean(agree)), float(np.median(shift)), float(np.max(shift)), len(agree)


def residue_rotations(model_name: str, n_rot: int = 4):
    """Per-residue top-1 agreement and total-variation shift of an amino-acid model when
    the atoms of real domains are rotated at random."""
    import dataclasses

    import cathnet
    from cathnet.structure import read_structure

    model = cathnet.load_model(model_name)
    agree, shift = [], []
    for path in sorted(glob.glob("tests/data/cath/*.pdb"))[::4]:
        s = read_structure(path)
        base = np.stack([r.probabilities for r in model.predict(s)])
        for R in so3.random_rotation(n_rot, seed=0):
            moved = dataclasses.replace(s, coords=(s.coords.astype(np.float64) @ R.T).astype(np.float32))
            probs = np.stack([r.probabilities for r in model.predict(moved)])
            agree.append((probs.argmax(1) == base.argmax(1)).mean())
            shift.append(np.abs(probs - base).sum(1) / 2)
    shift = np.concatenate(shift)
    return float(np.mean(agree)), float(np.median(shift)), float(np.percentile(shift, 95)), len(shift)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cath-arch", help="released model for the real-protein check ('' to skip)")
    parser.add_argument(
        "--aa-model", default="aa-propensity", help="released amino-acid model for the per-residue check ('' to skip)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    table = Table(title="max relative error over the 24 cube rotations")
    for col in ("layer", "float32", "float64"):
        table.add_column(col)
    for name, f, tin, tout, n in layers():
        x = torch.rand(1, tin.dim, n, n, n)
        e32 = cube_error(f.float(), tin, tout, x)
        e64 = cube_error(f.double(), tin, tout, x.double())
        table.add_row(name, f"{e32:.1e}", f"{e64:.1e}")
    console = Console()
    console.print(table)
    if args.model:
        agree, med, worst, n = real_protein_rotations(args.model)
        console.print(
            f"{args.model}: {n} real domains × 8 random rotations of their atoms: top-1 agreement {agree:.3f}, "
            f"probability shift (total variation) median {med:.3f}, max {worst:.3f}"
        )
    if args.aa_model:
        agree, med, p95, n = residue_rotations(args.aa_model)
        console.print(
            f"{args.aa_model}: {n} residue predictions of 10 real domains under 4 random rotations of their atoms: "
            f"top-1 agreement {agree:.3f}, probability shift (total variation) median {med:.3f}, "
            f"95th percentile {p95:.3f}"
        )


if __name__ == "__main__":
    main()
