"""Speed of one steerable convolution layer: cathnet SE3Conv vs nn.Conv3d (and escnn, e3nn).

    python benchmarks/conv_speed.py            # 32³ and 50³, 7 repeats (~6 min on 1 core)
    python benchmarks/conv_speed.py --quick    # 32³ only, 3 repeats

Layer: in = out = ``4x0 + 4x1 + 4x2 + 4x3`` (64 channels), kernel 5, padding 2, batch 2,
float32, CPU. Every implementation is timed in training mode (the kernel is assembled from
its weights on every call, as during training), interleaved call by call so that a load
spike hits all of them alike; the table shows medians and ratios to ``nn.Conv3d`` with the
same channel counts (the floor for any method that ends in a dense conv3d).

* forward: under ``torch.no_grad()``; forward+backward: ``y.sum().backward()`` with the input
  requiring grad too (a hidden layer).
* construction (basis build): in a fresh interpreter, imports excluded; for SE3Conv once with
  ``CATHNET_CACHE=off`` (cold: nothing cached anywhere) and once with the disk cache filled
  (warm), plus a second construction in the same process (in-memory caches). escnn keeps
  its own disk cache (``escnn.group.__cache_path__``), so its "first" is warm after one run.
  With ``--threads N`` the subprocesses also get ``OMP/OPENBLAS/MKL_NUM_THREADS=N``: the cold
  basis is many small LAPACK calls, and multi-threaded OpenBLAS on a busy 2-core machine
  makes it 20x slower (4-20 s instead of 0.2 s per layer).

Threads default to 1: on a small shared machine, multi-threaded timings of the many small
kernel-assembly ops collapse whenever another job holds a core (OpenMP waits for the
descheduled thread), which measures the neighbours, not the code. Pass ``--threads 0`` for
torch's default.

Optional comparisons (the ``bench`` extra). Rows are skipped with a note when missing.

* e3nn: ``pip install e3nn`` (pure Python). Layer: ``e3nn.nn.models.v2104.voxel_convolution
  .Convolution`` (the newest voxel convolution e3nn 0.6 ships; there is no v2106), irreps
  ``4x0e + 4x1o + 4x2e + 4x3o``, spherical harmonics up to l = 5 (SE3Conv's bandlimit for
  kernel 5), 3 radial functions, diameter 5 with steps (1, 1, 1) = a 5³ kernel. Parity
  restricts it to the parity-even couplings, and its forward adds a self-connection.
* escnn: ``R3Conv`` on ``gspaces.rot3dOnR3()`` with 4 copies of each SO(3) irrep 0..3
  (escnn's default radial/frequency choices for kernel 5). Working recipe on Python 3.11 with
  numpy 2, without gfortran::

      pip install e3nn joblib cython
      pip install --no-deps escnn lie_learn     # lie_learn 0.0.2 ships a cp311 wheel but pins numpy<2
      python benchmarks/conv_speed.py --rebuild-lie-learn   # recompiles lie_learn's irrep_bases.pyx
                                                            # against the installed numpy 2

  Plain ``pip install escnn`` fails or downgrades numpy: py3nj has no wheel and needs
  gfortran, and lie_learn's wheel is compiled against numpy 1.x ("numpy.core.multiarray
  failed to import"). py3nj is optional (escnn computes Clebsch–Gordan coefficients
  numerically instead and caches them on disk, with a warning); pymanopt and autograd
  are optional imports too. escnn only imports ``lie_learn.representations.SO3.wigner_d``,
  whose one compiled dependency is ``irrep_bases``; the other lie_learn extensions are
  Python-2 era Cython that no longer compiles, and stay unused.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
import warnings

import torch
import torch.nn as nn

FIELDS = "4x0 + 4x1 + 4x2 + 4x3"
KERNEL = 5
BATCH = 2

# --------------------------------------------------------------------------- layers
# Each builder returns (module, call) where call(x) runs the layer on a plain tensor.


def build_conv3d():
    from cathnet.nn import FieldType

    dim = FieldType.parse(FIELDS).dim
    m = nn.Conv3d(dim, dim, KERNEL, padding=KERNEL // 2)
    return m, m


def build_se3conv():
    from cathnet.nn import FieldType, SE3Conv

    t = FieldType.parse(FIELDS)
    m = SE3Conv(t, t, KERNEL)
    return m, m


def build_escnn():
    from escnn import gspaces
    from escnn import nn as enn

    g = gspaces.rot3dOnR3()
    ft = enn.FieldType(g, [g.fibergroup.irrep(l) for l in range(4) for _ in range(4)])
    m = enn.R3Conv(ft, ft, kernel_size=KERNEL, padding=KERNEL // 2)
    return m, lambda x: m(enn.GeometricTensor(x, ft)).tensor


def build_e3nn():
    from e3nn import o3
    from e3nn.nn.models.v2104.voxel_convolution import Convolution

    irreps = o3.Irreps("4x0e + 4x1o + 4x2e + 4x3o")
    m = Convolution(
        irreps, irreps, o3.Irreps.spherical_harmonics(5), diameter=KERNEL, num_radial_basis=3, steps=(1.0, 1.0, 1.0)
    )
    return m, m


BUILDERS = {
    "conv3d": build_conv3d,
    "SE3Conv": build_se3conv,
    "escnn R3Conv": build_escnn,
    "e3nn voxel conv": build_e3nn,
}
MODULES = {"escnn R3Conv": "escnn", "e3nn voxel conv": "e3nn"}
IMPORTS = {  # everything a builder imports, loaded before construction is timed
    "conv3d": ["cathnet.nn"],
    "SE3Conv": ["cathnet.nn"],
    "escnn R3Conv": ["escnn.gspaces", "escnn.nn"],
    "e3nn voxel conv": ["e3nn.o3", "e3nn.nn.models.v2104.voxel_convolution"],
}


def available(name: str) -> str | None:
    """None if the implementation can be built, else why not."""
    module = MODULES.get(name)
    if module is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            __import__(module)
            if module == "escnn":
                from escnn import gspaces  # noqa: F401  (fails when lie_learn is broken)
    except Exception as exc:  # ImportError, or lie_learn's numpy ABI error
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    return None


# --------------------------------------------------------------------------- timing


def _forward(call, x):
    with torch.no_grad():
        call(x)


def _forward_backward(call, x):
    x.grad = None
    call(x).sum().backward()


def time_layers(names: list[str], size: int, repeats: int, verbose: bool = False) -> dict[str, dict[str, float]]:
    """Median (and min) seconds of forward and forward+backward per implementation, interleaved."""
    layers = {}
    for name in names:
        torch.manual_seed(0)
        module, call = BUILDERS[name]()
        module.train()
        layers[name] = (module, call)
    x = torch.randn(BATCH, 64, size, size, size, requires_grad=True)
    samples = {name: {"forward": [], "forward+backward": []} for name in names}
    for _, call in layers.values():  # warm-up (allocator, lazy init, compiled paths)
        _forward(call, x)
        _forward_backward(call, x)
    order = list(layers)
    for r in range(repeats):
        # rotate the order each round so that no implementation always runs right after another
        ring = order[r % len(order):] + order[: r % len(order)]
        for what, fn in (("forward", _forward), ("forward+backward", _forward_backward)):
            for name in ring:
                call = layers[name][1]
                t0 = time.perf_counter()
                fn(call, x)
                samples[name][what].append(time.perf_counter() - t0)
    if verbose:
        for name in order:
            for what, v in samples[name].items():
                print(f"    {size}³ {name:16s} {what:17s}", " ".join(f"{t * 1e3:7.0f}" for t in v), "ms")
    out = {}
    for name, (module, _) in layers.items():
        out[name] = {k: statistics.median(v) for k, v in samples[name].items()}
        out[name].update({f"{k} min": min(v) for k, v in samples[name].items()})
        out[name]["params"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return out


KERNEL_FNS = {  # the part of each layer that is not F.conv3d: building the dense kernel
    "SE3Conv": lambda m: m.kernel(),
    "escnn R3Conv": lambda m: m.expand_parameters()[0],
    "e3nn voxel conv": lambda m: m.kernel(),
}


def time_kernel_assembly(name: str, repeats: int) -> dict[str, float]:
    """Median seconds to build the dense (64, 64, 5, 5, 5) kernel from the weights, alone."""
    torch.manual_seed(0)
    module, _ = BUILDERS[name]()
    module.train()
    make = KERNEL_FNS[name]
    make(module).sum().backward()
    f, fb = [], []
    for _ in range(max(repeats, 5) * 4):
        t0 = time.perf_counter()
        with torch.no_grad():
            make(module)
        t1 = time.perf_counter()
        module.zero_grad(set_to_none=True)
        make(module).sum().backward()
        t2 = time.perf_counter()
        f.append(t1 - t0)
        fb.append(t2 - t1)
    return {"forward": statistics.median(f), "forward+backward": statistics.median(fb)}


_BUILD_SNIPPET = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import torch
torch.set_num_threads({threads})
sys.path.insert(0, {here!r})
import conv_speed as cs
import importlib
for module in cs.IMPORTS[{name!r}]:  # imports stay outside the timed region
    importlib.import_module(module)
t0 = time.perf_counter(); cs.BUILDERS[{name!r}](); t1 = time.perf_counter()
cs.BUILDERS[{name!r}](); t2 = time.perf_counter()
print(json.dumps({{"first": t1 - t0, "again": t2 - t1}}))
"""


def time_construction(name: str, repeats: int, threads: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """Median (over fresh interpreters) of the first and of a second construction."""
    code = _BUILD_SNIPPET.format(name=name, threads=threads or torch.get_num_threads(), here=os.path.dirname(__file__))
    env = {**os.environ, **(env or {})}
    if threads:  # the basis is numpy/scipy work: hold BLAS to the same thread count as torch
        env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    firsts, agains = [], []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        firsts.append(result["first"])
        agains.append(result["again"])
    return {"first": statistics.median(firsts), "again": statistics.median(agains)}


# --------------------------------------------------------------------------- lie_learn fix


def rebuild_lie_learn() -> None:
    """Recompile lie_learn's ``irrep_bases`` extension in place against the installed numpy
    (the PyPI wheel is built for numpy 1.x). Needs Cython and a C compiler."""
    import glob
    import importlib.util
    import tempfile

    import numpy
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    spec = importlib.util.find_spec("lie_learn")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("lie_learn is not installed: pip install --no-deps lie_learn")
    root = os.path.dirname(list(spec.submodule_search_locations)[0])
    pyx = os.path.join(root, "lie_learn", "representations", "SO3", "irrep_bases.pyx")
    ext = Extension("lie_learn.representations.SO3.irrep_bases", [pyx], include_dirs=[numpy.get_include()])
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(root)
        try:
            setup(
                name="lie_learn_irrep_bases",
                ext_modules=cythonize([ext], language_level=2, quiet=True, build_dir=tmp),
                script_args=["build_ext", "--inplace", "--build-temp", tmp, "--build-lib", tmp],
            )
        finally:
            os.chdir(cwd)
    print("rebuilt", glob.glob(pyx[:-4] + "*.so"))


# --------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="32³ only, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per implementation (default 7; 3 quick)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="grid sizes (default 32 50; 32 quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--only", nargs="+", choices=list(BUILDERS), default=None, help="implementations to run")
    parser.add_argument("--samples", action="store_true", help="print every timed call")
    parser.add_argument("--no-build", action="store_true", help="skip the construction timings (subprocesses)")
    parser.add_argument("--rebuild-lie-learn", action="store_true", help="fix lie_learn for numpy 2 and exit")
    args = parser.parse_args(argv)
    if args.rebuild_lie_learn:
        rebuild_lie_learn()
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 7)
    sizes = args.sizes or ([32] if args.quick else [32, 50])
    names, notes = [], []
    for name in args.only or list(BUILDERS):
        why = available(name)
        if why is None:
            names.append(name)
        else:
            notes.append(f"{name}: skipped ({why}); see the recipe at the top of benchmarks/conv_speed.py")
    if "conv3d" not in names:
        names.insert(0, "conv3d")
    # Fill the cathnet disk cache in this process so the "warm" subprocess finds it.
    build_se3conv()

    console.print(
        f"layer {FIELDS} -> {FIELDS} (64 ch), kernel {KERNEL}, batch {BATCH}, float32; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); medians of {repeats}"
    )
    timings = {}
    for size in sizes:
        t0 = time.perf_counter()
        timings[size] = time_layers(names, size, repeats, verbose=args.samples)
        console.print(f"  {size}³ timed in {time.perf_counter() - t0:.0f} s", style="dim")
    kernels = {name: time_kernel_assembly(name, repeats) for name in names if name in KERNEL_FNS}

    table = Table(title="One layer, training mode (kernel assembled every call)")
    for col, justify in (("implementation", "left"), ("grid", "right"), ("params", "right"), ("forward ms", "right"),
                         ("× conv3d", "right"), ("(min)", "right"), ("fwd+bwd ms", "right"), ("× conv3d", "right"),
                         ("(min)", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    for size in sizes:
        ref = timings[size]["conv3d"]
        for name in names:
            t = timings[size][name]
            table.add_row(
                name, f"{size}³", f"{t['params']:,}",
                f"{t['forward'] * 1e3:,.0f}", f"{t['forward'] / ref['forward']:.2f}",
                f"{t['forward min'] / ref['forward min']:.2f}",
                f"{t['forward+backward'] * 1e3:,.0f}", f"{t['forward+backward'] / ref['forward+backward']:.2f}",
                f"{t['forward+backward min'] / ref['forward+backward min']:.2f}",
            )
        for name, k in kernels.items():
            table.add_row(
                f"  {name.split()[0]}: kernel only", f"{size}³", "",
                f"{k['forward'] * 1e3:,.1f}", f"{k['forward'] / ref['forward']:.3f}", "",
                f"{k['forward+backward'] * 1e3:,.1f}", f"{k['forward+backward'] / ref['forward+backward']:.3f}", "",
                style="dim",
            )
        table.add_section()
    console.print(table)
    console.print(
        "ratios: of medians (the goals), and of the fastest calls (min), which shrugs off load spikes from "
        "other jobs. 'kernel only': building the dense kernel from the weights (SE3Conv.kernel(), escnn "
        "expand_parameters(), e3nn kernel()), the only work besides F.conv3d (and e3nn's self-connection)",
        style="dim",
    )

    builds = {}
    if not args.no_build:
        n = max(1, repeats // 2 + 1)
        for name in names:
            if name == "SE3Conv":
                builds["SE3Conv (CATHNET_CACHE=off)"] = time_construction(
                    name, n, args.threads, {"CATHNET_CACHE": "off"}
                )
                builds["SE3Conv (disk cache)"] = time_construction(name, n, args.threads)
            else:
                builds[name] = time_construction(name, n, args.threads)
        table = Table(title="Construction of one layer (basis build), fresh interpreter, imports excluded")
        table.add_column("implementation", no_wrap=True)
        table.add_column("first ms", justify="right")
        table.add_column("again in process ms", justify="right")
        for name, b in builds.items():
            table.add_row(name, f"{b['first'] * 1e3:,.1f}", f"{b['again'] * 1e3:,.2f}")
        console.print(table)

    # Goals of issue 2 §6.
    lines = []
    for size in sizes:
        if "SE3Conv" not in names:
            break
        t = timings[size]
        ratio = t["SE3Conv"]["forward+backward"] / t["conv3d"]["forward+backward"]
        best = t["SE3Conv"]["forward+backward min"] / t["conv3d"]["forward+backward min"]
        lines.append((f"{size}³ SE3Conv fwd+bwd ≤ 1.15× conv3d", ratio <= 1.15, f"{ratio:.2f}× (min: {best:.2f}×)"))
        for other in ("escnn R3Conv", "e3nn voxel conv"):
            if other in t:
                r = t["SE3Conv"]["forward+backward"] / t[other]["forward+backward"]
                b = t["SE3Conv"]["forward+backward min"] / t[other]["forward+backward min"]
                lines.append((f"{size}³ SE3Conv faster than {other} (fwd+bwd)", r < 1, f"{r:.2f}× (min: {b:.2f}×)"))
    for key in ("SE3Conv (CATHNET_CACHE=off)", "SE3Conv (disk cache)"):
        if key in builds:
            lines.append((f"basis build ≤ 0.1 s per layer, {key}", builds[key]["first"] <= 0.1,
                          f"{builds[key]['first']:.3f} s"))
    for text, ok, value in lines:
        console.print(f"[{'green' if ok else 'red'}]{'PASS' if ok else 'MISS'}[/] {text}: {value}")
    for note in notes:
        console.print(textwrap.fill(note, width=100), style="yellow")


if __name__ == "__main__":
    main()
