"""Training throughput on CPU: samples/s of one training step, fp32 vs bf16, per network.

    python benchmarks/train_speed.py [--models se3-compact,cnn-compact,...] [--repeats 5]
                                     [--threads 2] [--baseline 0ca11f4] [--json OUT]

A step is what ``cathnet train`` does per batch: voxelize real atoms (Cα of the fixture
domains typed by secondary structure for the CATH networks; residue environments with
backbone channels for the amino-acid networks), forward, cross-entropy, backward, Adam.
Each configuration (code version × network × precision) lives in a worker process that
keeps its model warm; the main process asks the workers for one timed step at a time,
round-robin, so every configuration sees the same machine load, and reports medians.

``--baseline REV`` adds the fp32 (and, where it runs, bf16) code of git revision REV,
unpacked with ``git archive`` and run by the same worker code, so "× vs REV" compares
today's code against REV's in one run. ``--profile`` adds, per configuration, the share of
a step spent in convolutions (forward and backward), in voxelization, and in everything
else (elementwise, norms, gates, copies, optimizer), from ``torch.profiler``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "data" / "cath"
#: network -> (task, grid, voxel, sigma, batch, constructor kwargs)
SETUPS = {
    "se3-compact": (
        "cath", 50, 2.0, 1.0, 16, {"widths": [[8, 4, 2], [16, 8, 4], [32, 16, 8], [64, 32, 16]], "head_scalars": 192}
    ),
    "cnn-compact": ("cath", 50, 2.0, 1.0, 16, {}),
    "se3-env": ("aa", 16, 1.5, 0.75, 128, {}),
    "cnn-env": ("aa", 16, 1.5, 0.75, 128, {}),
    "se3resnet34": ("cath", 50, 2.0, 1.0, 2, {}),
    "cnn-resnet34": ("cath", 50, 2.0, 1.0, 2, {}),
}
CONV_OPS = ("conv", "Convolution")


# ---------------------------------------------------------------------------- worker


def _worker(name: str, variant: str, threads: int) -> None:
    """Serve timed training steps of one configuration (``variant``: a precision, optionally
    ``+cl`` for channels_last_3d and ``+compile`` for torch.compile): a line in, a JSON line out."""
    import time

    import numpy as np
    import torch
    import torch.nn.functional as F

    from cathnet import networks
    from cathnet.environments import pad_environments, residue_environments
    from cathnet.selection import select_atoms
    from cathnet.structure import read_structure
    from cathnet.voxel import voxelize_batch

    torch.set_num_threads(threads)
    task, grid, voxel, sigma, batch, kwargs = SETUPS[name]
    structures = [read_structure(p) for p in sorted(FIXTURES.glob("*.pdb"))]
    if task == "cath":
        atoms = [select_atoms(s, "ca-ss")[:2] for s in structures][:batch]
        n_channels, n_classes, center = 3, 10, None
    else:
        atoms = [
            (e.coords, e.channels) for s in structures[:3] for e in residue_environments(s, backbone_channels=True)
        ]
        atoms = atoms[:batch]
        n_channels, n_classes, center = 8, 20, torch.zeros(len(atoms), 3)
    coords, channels, mask = (torch.from_numpy(a) for a in pad_environments(atoms))
    y = torch.arange(len(atoms)) % n_classes
    if name in networks.GRID_SIZED:
        kwargs = {**kwargs, "grid_size": grid}
    torch.manual_seed(0)
    precision, *options = variant.split("+")
    model = networks.build(name, in_channels=n_channels, n_classes=n_classes, **kwargs).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    layout = torch.channels_last_3d if "cl" in options else torch.contiguous_format
    model = model.to(memory_format=layout)
    net = torch.compile(model) if "compile" in options else model
    rng = np.random.default_rng(0)

    def step() -> float:
        tic = time.perf_counter()
        R = torch.as_tensor(np.stack([np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in atoms]), dtype=torch.float32)
        R = R * torch.linalg.det(R).sign()[:, None, None]
        x = voxelize_batch(coords, mask, channels, n_channels, grid_size=grid, voxel_size=voxel, sigma=sigma,
                           center=center, rotations=R).contiguous(memory_format=layout)
        vox = time.perf_counter() - tic
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = net(x).float()
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()  # random labels on tiny batches may diverge: timing does not depend on values
        return vox

    try:
        step()  # warm-up: kernel choices, allocator
    except Exception as exc:  # noqa: BLE001 - a code version that cannot run this configuration says so
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:200]}), flush=True)
        return
    print(json.dumps({"ready": True, "batch": len(atoms), "parameters": networks.n_parameters(model)}), flush=True)
    for line in sys.stdin:
        if line.strip() == "profile":
            from torch.profiler import profile

            with profile() as prof:
                tic = time.perf_counter()
                vox = step()
                total = time.perf_counter() - tic
            conv = sum(e.self_cpu_time_total for e in prof.key_averages() if any(k in e.key for k in CONV_OPS)) / 1e6
            own = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6
            print(json.dumps({"conv": conv / own, "voxelize": vox / total, "other": 1 - conv / own - vox / total}),
                  flush=True)
        else:
            tic = time.perf_counter()
            step()
            print(json.dumps({"seconds": time.perf_counter() - tic}), flush=True)


# ---------------------------------------------------------------------------- driver


class Worker:
    def __init__(self, code: Path, name: str, precision: str, threads: int):
        env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", name, precision, str(threads)], env=env, cwd=code,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"error": "worker died"}

    def ask(self, what: str) -> dict:
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def _unpack(rev: str, tmp: str) -> Path:
    """The cathnet package of git revision ``rev`` in a folder of its own."""
    archive = Path(tmp) / "code.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "cathnet", "tests/data/cath"], check=True
    )
    out = Path(tmp) / rev
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="se3-compact,cnn-compact,se3-env,cnn-env,se3resnet34,cnn-resnet34")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated: fp32, bf16, optionally with +cl (channels_last_3d) "
                             "or +compile (torch.compile)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", default=None, metavar="REV", help="also time the code of this git revision")
    parser.add_argument("--profile", action="store_true", help="share of conv / voxelize / other per configuration")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = parser.parse_args(argv)
    models, precisions = args.models.split(","), args.precisions.split(",")
    unknown = sorted(set(models) - set(SETUPS))
    if unknown:
        parser.error(f"unknown models {unknown}; available: {', '.join(SETUPS)}")

    with tempfile.TemporaryDirectory() as tmp:
        codes = {"now": ROOT, **({args.baseline: _unpack(args.baseline, tmp)} if args.baseline else {})}
        rows = []
        for name in models:
            workers = {(code, p): Worker(path, name, p, args.threads)
                       for code, path in codes.items() for p in precisions
                       if code == "now" or "+" not in p}
            times: dict = {key: [] for key in workers}
            for _ in range(args.repeats):
                for key, w in workers.items():
                    if "error" not in w.info:
                        times[key].append(w.ask("step")["seconds"])
            for (code, p), w in workers.items():
                row = {"model": name, "code": code, "precision": p, **w.info}
                if times[(code, p)]:
                    row["step_s"] = statistics.median(times[(code, p)])
                    row["samples_per_s"] = w.info["batch"] / row["step_s"]
                    if args.profile and code == "now":
                        row.update(w.ask("profile"))
                rows.append(row)
                w.close()
            ref = next((r for r in rows if r["model"] == name and r["code"] == (args.baseline or "now")
                        and r["precision"] == "fp32" and "step_s" in r), None)
            for r in rows:
                if r["model"] == name and ref and "step_s" in r:
                    r["speedup"] = ref["step_s"] / r["step_s"]
                print(json.dumps(r), flush=True) if r["model"] == name else None
        _table(rows, args)
        if args.json:
            args.json.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "rows": rows}, indent=1))


def _table(rows: list[dict], args) -> None:
    ref = args.baseline or "now"
    print(f"\n| network | batch | code | variant | samples/s | × vs {ref} fp32 | conv | voxelize | other |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "step_s" not in r:
            print(f"| {r['model']} | | {r['code']} | {r['precision']} | fails: {r.get('error', '?')} | | | | |")
            continue
        shares = [f"{r[k]:.0%}" if k in r else "" for k in ("conv", "voxelize", "other")]
        speedup = f"{r['speedup']:.2f}×" if "speedup" in r else ""
        print(f"| {r['model']} | {r['batch']} | {r['code']} | {r['precision']} | {r['samples_per_s']:.1f} | "
              f"{speedup} | {' | '.join(shares)} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
