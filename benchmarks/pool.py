"""The shared CATH pool for the benchmarks: a folder with ``pdb/*.pdb``, unpacked on demand."""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

POOL_TAR = Path("/work/shared/data/cath10/pool.tar.xz")
DEFAULT_POOL = Path("/tmp/pool")
HELP = f"folder with pdb/*.pdb (default {DEFAULT_POOL}, else unpack {POOL_TAR})"


def pool_files(pool: Path | None, tmp: str, say=print) -> tuple[Path, list[Path]]:
    """The pool folder and its PDB files, sorted by name: ``pool``, else :data:`DEFAULT_POOL`
    if unpacked there, else :data:`POOL_TAR` unpacked into ``tmp``."""
    pool = pool or (DEFAULT_POOL if (DEFAULT_POOL / "pdb").is_dir() else None)
    if pool is None:
        say(f"unpacking {POOL_TAR} ...")
        with tarfile.open(POOL_TAR) as tar:
            tar.extractall(tmp, filter="data")
        pool = Path(tmp)
    files = sorted((pool / "pdb").glob("*.pdb"))
    if not files:
        sys.exit(f"error: no pdb/*.pdb files in {pool}")
    return pool, files
