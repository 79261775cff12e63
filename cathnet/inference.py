"""Running trained networks: the device, the base of the released-model wrappers
(:class:`~cathnet.predict.ArchitectureModel`, :class:`~cathnet.propensity.PropensityModel`)
and batched logits over the items of a task (validation and :mod:`cathnet.evaluate`)."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from cathnet.errors import UsageError
from cathnet.models import MAX_ROTATIONS
from cathnet.precision import autocast, resolve_precision
from cathnet.preprocess import Preprocessing
from cathnet.structure import Structure, StructureError, read_structure

__all__ = ["Model", "batch_grids", "channels_last", "predict", "resolve_device", "source_label"]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def channels_last(device: torch.device, precision: str) -> bool:
    """Whether trained networks run in the ``channels_last_3d`` layout: fp32 on CPU, where
    oneDNN's ``conv3d`` measured 1.3–1.4× faster in it (``benchmarks/layout_speed.py``)."""
    return device.type == "cpu" and precision == "fp32"


class Model:
    """A trained network with its metadata: its task, its :class:`Preprocessing` and its classes."""

    task: str  # "cath" or "aa", the task of the model's metadata

    def __init__(self, network: nn.Module, meta: dict, device: str | torch.device = "cpu", precision: str = "auto"):
        self.meta = meta
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        self.channels_last = channels_last(self.device, self.precision)
        layout = torch.channels_last_3d if self.channels_last else torch.contiguous_format
        self.network = network.to(self.device, memory_format=layout).eval()  # type: ignore[call-overload]  # stubs lack memory_format
        self.preprocessing = Preprocessing.from_metadata(meta)
        self.codes: list[str] = list(meta["classes"]["codes"])
        self.names: list[str] = list(meta["classes"]["names"])

    @property
    def grid_size(self) -> int:
        return self.preprocessing.voxels.grid_size

    @property
    def voxel_size(self) -> float:
        return self.preprocessing.voxels.voxel_size

    @property
    def n_channels(self) -> int:
        return self.preprocessing.n_channels

    @staticmethod
    def structure(source: str | os.PathLike | Structure, chain: str | None, residues: str | None) -> Structure:
        """A file read with ``chain`` and ``residues`` (ranges), or a :class:`Structure` cut to ``chain``."""
        if not isinstance(source, Structure):
            return read_structure(source, chains=[chain] if chain else None, residues=residues)
        if residues is not None:
            raise ValueError("residues= applies to files; subset a Structure with Structure.subset")
        if not chain:
            return source
        structure = source.subset(source.chain == chain)
        if len(structure) == 0:
            raise StructureError(source.path, f"no chain {chain!r}")
        return structure

    @staticmethod
    def check_rotations(rotations: int) -> None:
        if not 0 <= rotations <= MAX_ROTATIONS:
            raise ValueError(f"rotations must be in 0..{MAX_ROTATIONS}, got {rotations}")

    @torch.no_grad()
    def softmax(self, x: torch.Tensor) -> np.ndarray:
        """Class probabilities (B, n_classes) of input grids ``x`` on the model's device."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with autocast(self.precision, self.device):
            logits = self.network(x)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


def source_label(source: str | os.PathLike | Structure) -> str:
    """How predictions and errors name a file or :class:`Structure`."""
    return str(source.path if isinstance(source, Structure) else source)


def batch_grids(
    preprocessing: Preprocessing, batch, rotations: np.ndarray | None, device: torch.device
) -> torch.Tensor:
    """The input grids of a task's :class:`~cathnet.tasks.Batch` on ``device`` (channels-last
    on CUDA); ``rotations`` (B, 3, 3) turn each structure first."""
    R = None if rotations is None else torch.as_tensor(rotations, dtype=torch.float32, device=device)
    coords, mask, channels = (t.to(device, non_blocking=True) for t in (batch.coords, batch.mask, batch.channels))
    x = preprocessing.voxelize_batch(
        coords, mask, channels, None if batch.directions is None else batch.directions.to(device),
        center=None if batch.center is None else batch.center.to(device), rotations=R,
    )
    return x.contiguous(memory_format=torch.channels_last_3d) if device.type == "cuda" else x


@torch.no_grad()
def predict(
    model: nn.Module, task, items: np.ndarray, *, device: torch.device, batch_size: int = 32,
    rotations: np.ndarray | None = None, on_batch=None, precision: str = "auto",
    layout: torch.memory_format | None = None,
) -> torch.Tensor:
    """Logits (len(items), n_classes) float32 on CPU of a task's items, in eval mode;
    ``rotations`` (len(items), 3, 3) rotates each structure before voxelization;
    ``precision`` as in :mod:`cathnet.precision`; ``layout``: the input grids' memory format
    (None: as :func:`batch_grids` makes them)."""
    model.eval()
    precision = resolve_precision(precision, device)
    out = []
    for lo in range(0, len(items), batch_size):
        batch = task.batch(items[lo: lo + batch_size])
        R = None if rotations is None else rotations[lo: lo + batch_size]
        x = batch_grids(task.preprocessing, batch, R, device)
        if layout is not None:
            x = x.contiguous(memory_format=layout)
        with autocast(precision, device):
            out.append(model(x).float().cpu())
        if on_batch:
            on_batch(len(batch.targets))
    return torch.cat(out) if out else torch.zeros(0, task.n_classes)
