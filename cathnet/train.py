"""Training loop for voxel-grid classifiers (tasks ``cath``: CATH architectures, ``aa``:
amino acids from residue environments; see :mod:`cathnet.tasks`).

The loop is task-agnostic: a *task* yields item indices per split, class labels per item
and padded atom batches; atoms are rotated and voxelized on the training device
(:func:`cathnet.inference.batch_grids`), then fed to a network from
:mod:`cathnet.networks`. Paper recipe (Weiler et al. 2018): Adam, learning rate decayed
by ``lr_decay`` per epoch after ``burn_in`` epochs, L1 + L2 weight penalties, random
rotations for plain CNNs, splits 7/1/2 of 10 for train/validation/test. Large tasks (0.8M residue environments) can
train on ``epoch_size`` items per epoch, read from an endless stream of seeded passes over
the training items (class-balanced draws with ``balance``), and validate on a fixed
seeded subset of ``val_size`` items.

Reproducibility: all randomness of epoch ``e`` (data order, rotations, dropout) is seeded
from ``(seed, e)``, so a run resumed from the checkpoint of epoch ``e`` continues exactly
as if never interrupted. Under ``torchrun`` (``WORLD_SIZE`` > 1) every global batch is
split between the processes (gloo on CPU, nccl on GPU) and the loss is scaled so the
averaged gradient equals the single-process gradient of the global batch; only rank 0
writes files.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from cathnet import __version__, networks
from cathnet.data import EpochStream, stratified_subset
from cathnet.errors import TrainError, UsageError
from cathnet.inference import batch_grids, predict, resolve_device
from cathnet.nn import convert_sync_batchnorm
from cathnet.precision import autocast, resolve_precision
from cathnet.run_state import load_initial, load_state, save_epoch, state_key
from cathnet.so3 import random_rotation
from cathnet.tasks import make_task
from cathnet.train_config import TrainConfig

__all__ = ["TrainConfig", "TrainError", "distributed", "train"]

_SYNC_EVERY = 10  # steps between reads of the running loss (each read synchronises a GPU)


# ---------------------------------------------------------------------------- training


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _penalty(params: list[torch.Tensor], l1: float, l2: float) -> torch.Tensor | float:
    if not (l1 or l2) or not params:
        return 0.0
    return sum(l1 * p.abs().sum() + l2 * p.pow(2).sum() for p in params)


def _learning_rate(config: TrainConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch``: constant for ``burn_in`` epochs, then × lr_decay per epoch."""
    return config.lr * config.lr_decay ** max(0, epoch + 1 - config.burn_in)


def _all_reduce(values: list[float], device: torch.device, world: int, op: Any = dist.ReduceOp.SUM) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op)
    return t.tolist()


class _Run:
    """State of one training run on one process."""

    def __init__(self, config: TrainConfig, console: Console):
        self.config, self.console = config, console
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        try:
            self.device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
            self.precision = resolve_precision(config.precision, self.device)
        except UsageError as exc:
            raise TrainError(str(exc)) from None
        self.out = Path(config.out)
        self.task = make_task(config.task, config.data, oriented=config.oriented, backbone_channels=config.backbone_channels,
                              fields=config.fields, canonical=config.canonical, grid_size=config.grid_size,
                              voxel_size=config.voxel_size, sigma=config.sigma)
        self.voxels = self.task.preprocessing.voxels
        self._split_items()
        if config.model not in networks.NETWORKS:
            raise TrainError(f"--model: unknown network {config.model!r}; available: {', '.join(networks.available())}")
        if config.oriented and config.augment:
            raise TrainError("--augment rotates the environments out of the backbone frame that --oriented puts them in")
        readout = networks.reads_frame({"name": config.model, **config.model_kwargs})
        if readout == "frame" and not config.oriented:
            raise TrainError("--model-arg readout=frame reads field components in the residue's frame: it needs --oriented")
        if readout == "axes" and config.canonical is None:
            raise TrainError("--model-arg readout=axes reads field components along the principal axes: "
                             "it needs --canonical principal")
        self.augment = config.augment if config.augment is not None else (
            config.model not in networks.EQUIVARIANT and not config.oriented
        )
        kwargs = dict(config.model_kwargs)
        if config.model in networks.GRID_SIZED:
            kwargs.setdefault("grid_size", self.voxels.grid_size)
        if self.task.preprocessing.in_type and config.model in networks.EQUIVARIANT:
            kwargs.setdefault("in_type", self.task.preprocessing.in_type)
        torch.manual_seed(config.seed)
        try:
            self.model = networks.build(
                config.model, in_channels=self.task.preprocessing.n_channels, n_classes=self.task.n_classes, **kwargs
            ).to(self.device)
        except TypeError as exc:
            raise TrainError(f"--model-arg: {exc}") from None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.penalised = [p for n, p in self.model.named_parameters() if p.requires_grad and not n.endswith("bias")]
        self.start_epoch, self.best = 0, {"epoch": None, "val_acc": -1.0, "val_loss": math.inf}
        if config.resume:
            self._resume()
        elif (self.out / "last.json").exists():
            raise TrainError(f"--out {self.out} already holds a training run; pass --resume or choose another --out")
        if config.init and self.start_epoch == 0:
            load_initial(self.model, config.init, task=self.task.metadata())
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last_3d)
            torch.backends.cudnn.benchmark = True
        self.net = self.model
        if self.world > 1:
            if self.device.type == "cuda":
                self.net = convert_sync_batchnorm(self.net)
            self.net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if config.compile:  # the training steps only; validation runs the plain model in eval mode
            self.net = torch.compile(self.net)

    def _split_items(self) -> None:
        c, n = self.config, self.task.n_splits
        held_out = set(c.val_splits) | set(c.test_splits)
        if set(c.val_splits) & set(c.test_splits):
            raise TrainError("--val-splits and --test-splits overlap")
        if not c.val_splits:
            raise TrainError("--val-splits: at least one validation split is needed (best checkpoint)")
        bad = sorted(s for s in held_out if not 0 <= s < n)
        if bad:
            raise TrainError(f"split(s) {bad} out of range: {c.data} has splits 0..{n - 1}")
        train = self.task.items([s for s in range(n) if s not in held_out])
        self.train_items = stratified_subset(train, self.task.labels, c.train_fraction, c.seed)
        self.stream = EpochStream(self.train_items, self.task.labels, seed=c.seed, epoch_size=c.epoch_size,
                                  balance=c.balance)
        self.val_items = self.task.items(c.val_splits)
        if c.val_size is not None and c.val_size < 1:
            raise TrainError(f"--val-size must be at least 1, got {c.val_size}")
        if c.val_size is not None and c.val_size < len(self.val_items):
            rng = np.random.default_rng([c.seed, 1])
            self.val_items = np.sort(rng.choice(self.val_items, c.val_size, replace=False))
        if len(self.val_items) < self.world:
            raise TrainError(f"validation split(s) {list(c.val_splits)} hold {len(self.val_items)} items, fewer than the {self.world} processes")
        if c.epoch_size is not None and c.epoch_size < self.world:
            raise TrainError(f"--epoch-size must be at least the {self.world} process(es), got {c.epoch_size}")
        if len(self.train_items) < self.world:
            raise TrainError("no training split left: every split is a validation or test split")
        if c.batch_size < self.world:
            raise TrainError(f"--batch-size {c.batch_size} is smaller than the {self.world} processes")

    # -- checkpoints

    def _state_key(self) -> dict:
        return state_key(asdict(self.config), asdict(self.voxels))

    def _resume(self) -> None:
        if not (self.out / "last.json").exists():
            if self.rank == 0:
                self.console.print(f"no checkpoint in {self.out}; starting from scratch")
            return
        self.start_epoch, self.best = load_state(
            self.out, self.model, self.optimizer, key=self._state_key(),
            defaults=asdict(TrainConfig(data="", model="", out="")),  # options added after a checkpoint was written
            data_sha256=self.task.sha256, data=self.config.data, trim_metrics=self.rank == 0,
        )
        if self.rank == 0:
            self.console.print(f"resuming {self.out} after epoch {self.start_epoch}")

    def _metadata(self, metrics: dict) -> dict:
        c = self.config
        meta = self.task.metadata()
        meta["data"].update(
            val_splits=list(c.val_splits), test_splits=list(c.test_splits), train_fraction=c.train_fraction,
            n_train=len(self.train_items), n_val=len(self.val_items),
        )
        meta["training"] = {
            **{k: v for k, v in asdict(c).items() if k not in ("data", "out", "resume", "progress", "device")},
            **asdict(self.voxels),
            "augment": self.augment, "world_size": self.world, "precision": self.precision,
        }
        meta["metrics"] = metrics
        counts = np.bincount(self.task.labels[self.train_items], minlength=self.task.n_classes)
        meta["classes"]["train_frequency"] = (counts / counts.sum()).round(6).tolist()
        meta["software"] = {"cathnet": __version__, "torch": torch.__version__}
        meta["licence"] = "Trained on CATH (http://cathdb.info) data, CC BY 4.0."
        return meta

    # -- loop

    def _epoch(self, epoch: int, progress: Progress | None) -> tuple[float, float]:
        c, world, rank = self.config, self.world, self.rank
        rng = np.random.default_rng([c.seed, epoch])
        torch.manual_seed(_seed(c.seed, epoch, rank))
        if c.epoch_size is None and not c.balance:
            order = rng.permutation(self.train_items)  # one pass per epoch, as before epoch streams
        else:
            order = self.stream.epoch(epoch)
        rotations = random_rotation(len(order), rng) if self.augment else None
        starts = [s for s in range(0, len(order), c.batch_size) if len(order) - s >= world]
        bar = progress.add_task("train", total=len(starts), epoch=f"{epoch}/{c.epochs}", loss=0.0, acc=0.0) if progress else None
        self.net.train()
        stats = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, correct, seen
        for step, start in enumerate(starts):
            size = min(c.batch_size, len(order) - start)
            local = start + np.array_split(np.arange(size), world)[rank]
            batch = self.task.batch(order[local])
            x = batch_grids(self.task.preprocessing, batch, None if rotations is None else rotations[local], self.device)
            y = batch.targets.to(self.device)
            with autocast(self.precision, self.device):
                logits = self.net(x).float()
            batch_loss = F.cross_entropy(logits, y, reduction="sum")
            loss = batch_loss * (world / size) + _penalty(self.penalised, c.l1, c.l2)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            stats += torch.stack([batch_loss.detach().double(), (logits.argmax(1) == y).sum().double(), stats.new_tensor(len(y))])
            if step % _SYNC_EVERY == _SYNC_EVERY - 1 or step == len(starts) - 1:  # read back rarely (GPU sync)
                loss_sum, correct, seen = stats.tolist()
                if not math.isfinite(loss_sum):
                    raise TrainError(f"training loss is {loss_sum} at epoch {epoch}, step {step + 1}; try a lower --lr")
                if bar is not None:
                    progress.update(bar, completed=step + 1, loss=loss_sum / seen, acc=correct / seen)
        if bar is not None:
            progress.remove_task(bar)
        loss_sum, correct, seen = _all_reduce(stats.tolist(), self.device, world)
        return loss_sum / seen, correct / seen

    def _validate(self) -> tuple[float, float]:
        if self.world > 1:  # evaluate every shard with rank 0's batch-norm statistics
            for buffer in self.model.buffers():
                dist.broadcast(buffer, 0)
        items = self.val_items[self.rank:: self.world]
        logits = predict(self.model, self.task, items, device=self.device, batch_size=self.config.batch_size,
                         precision=self.precision)
        y = torch.from_numpy(self.task.labels[items].astype(np.int64))
        loss = F.cross_entropy(logits, y, reduction="sum").item() if len(items) else 0.0
        loss, correct, n = _all_reduce([loss, (logits.argmax(1) == y).sum().item(), len(items)], self.device, self.world)
        return loss / n, correct / n

    def run(self) -> dict:
        c, lead = self.config, self.rank == 0
        if lead:
            self.out.mkdir(parents=True, exist_ok=True)
            self.console.print(
                f"{c.model}: {networks.n_parameters(self.model):,} parameters, task {c.task}, {len(self.train_items)} train / "
                f"{len(self.val_items)} val items, {len(self.stream.epoch(1))} per epoch, grid {self.voxels.grid_size}³ × "
                f"{self.voxels.voxel_size} Å, augment={self.augment}, device={self.device}, {self.precision}, processes={self.world}"
            )
        columns = (
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f}"), TimeRemainingColumn(),
        )
        progress = Progress(*columns, console=self.console, transient=True) if lead and c.progress else None
        started, longest = time.perf_counter(), 0.0
        with progress or contextlib.nullcontext():
            for epoch in range(self.start_epoch, c.epochs):
                if self._stalled(epoch) or self._out_of_time(time.perf_counter() - started + longest, epoch):
                    break
                tic = time.perf_counter()
                lr = _learning_rate(c, epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                train_loss, train_acc = self._epoch(epoch + 1, progress)
                val_loss, val_acc = self._validate()
                metrics = {
                    "epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                    "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "time": time.perf_counter() - tic,
                }
                longest = max(longest, metrics["time"])
                improved = (val_acc, -val_loss) > (self.best["val_acc"], -self.best["val_loss"])
                if improved:  # identical on every rank: the metrics are all-reduced
                    self.best = {"epoch": epoch + 1, "val_acc": val_acc, "val_loss": val_loss}
                if lead:
                    save_epoch(self.out, epoch + 1, self.model, self.optimizer, key=self._state_key(),
                               data_sha256=self.task.sha256, best=self.best, metrics=metrics,
                               best_metadata=self._metadata(metrics) if improved else None)
                    self.console.print(  # also without the bar: background logs need it most
                        f"epoch {epoch + 1}/{c.epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
                        f"val loss {val_loss:.4f} acc {val_acc:.4f}  lr {lr:.2e}  {metrics['time']:.1f}s"
                    )
        if self.world > 1:
            dist.barrier()
        return {"out": str(self.out), "best": self.best, "epochs": c.epochs, "augment": self.augment}

    def _out_of_time(self, projected: float, done: int) -> bool:
        """``--time-limit``: the next epoch, as long as the longest so far, would end past it
        (decided on the slowest process, so every rank stops after the same epoch). The
        first epoch of a process always runs: nothing estimates it."""
        if self.config.time_limit is None or done == self.start_epoch:
            return False
        projected = _all_reduce([projected], self.device, self.world, dist.ReduceOp.MAX)[0]
        stop = projected > 60 * self.config.time_limit
        if stop and self.rank == 0:
            self.console.print(f"stopping after epoch {done}: another epoch would pass --time-limit {self.config.time_limit:g} min")
        return stop

    def _stalled(self, done: int) -> bool:
        """Early stopping: ``patience`` epochs after ``done`` brought no better validation accuracy."""
        best, patience = self.best["epoch"], self.config.patience
        stalled = patience is not None and best is not None and done - best >= patience
        if stalled and self.rank == 0:
            self.console.print(f"stopping after epoch {done}: no better validation accuracy since epoch {best}")
        return stalled


@contextlib.contextmanager
def distributed(device: str = "auto") -> Iterator[int]:
    """The process group of a ``torchrun`` launch (``WORLD_SIZE`` > 1; gloo on CPU, nccl on
    GPU) for the block; yields the world size. A group that is already initialised is used
    and left alone, so a caller that trains several runs holds one group for all of them
    (tearing it down and initialising it again per run can hang on the rendezvous store)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    owned = world > 1 and not dist.is_initialized()
    if owned:
        cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        yield world
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def train(config: TrainConfig, console: Console | None = None) -> dict:
    """Train ``config.model`` on ``config.data``; checkpoints, ``best.*`` and
    ``metrics.jsonl`` go to ``config.out``. Returns the best epoch and its validation
    metrics (on every rank). Under ``torchrun`` joins the caller's process group, or
    initialises (and tears down) one (:func:`distributed`)."""
    with distributed(config.device):
        return _Run(config, console or Console(stderr=True)).run()
