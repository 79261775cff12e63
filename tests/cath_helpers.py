"""Shared paths (relative to this file, so that pytest runs from any folder) and helpers
for the dataset / training / evaluation tests."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from cathnet.data import build_dataset
from cathnet.train import TrainConfig, train

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parent.parent / "examples"
FIXTURES = DATA / "cath"
CATH = sorted(str(p) for p in FIXTURES.glob("*.pdb"))  # the fixture domains, as the CLI is given them
N_SPLITS = 4  # 4 fixture domains per class, each from its own superfamily


def build_fixture_dataset(path: Path) -> Path:
    build_dataset(FIXTURES, path, labels=FIXTURES / "labels.csv", n_splits=N_SPLITS, seed=0, workers=1)
    return path


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    """A compact CNN on 24³ × 4 Å grids: about 0.1 s per step on one core."""
    base = TrainConfig(
        data=str(data), model="cnn-compact", out=str(out), model_kwargs={"widths": [8, 16, 16, 16]},
        epochs=2, batch_size=8, lr=1e-3, burn_in=1, lr_decay=0.5, val_splits=(2,), test_splits=(3,),
        grid_size=24, voxel_size=4.0, device="cpu", precision="fp32", progress=False,
    )
    return replace(base, **changes)


def run_ddp(config: TrainConfig, world: int = 2) -> None:
    """Train ``config`` with ``world`` gloo processes, launched as ``torchrun`` does: this
    process hosts the rendezvous store (on a free port), so no worker has to outlive the
    others to serve it while they tear down their process groups."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    mp.spawn(ddp_worker, args=(world, store.port, config), nprocs=world)


def ddp_worker(rank: int, world: int, port: int, config: TrainConfig) -> None:
    """torch.multiprocessing.spawn target: one gloo process of a CPU DDP run."""
    torch.set_num_threads(1)
    os.environ.update(
        WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        TORCHELASTIC_USE_AGENT_STORE="True",
    )
    train(config)
