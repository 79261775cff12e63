"""Options of a training run (:func:`cathnet.train.train`), kept apart from the loop so
that checkpoints and the CLI can name them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Options of :func:`train` (defaults: the paper's CNN recipe; grid from the task:
    50³ × 2 Å for ``cath``, 16³ × 1.5 Å for ``aa``)."""

    data: str
    model: str
    out: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    task: str = "cath"
    epochs: int = 100
    batch_size: int = 16
    lr: float = 5e-4
    lr_decay: float = 0.94
    burn_in: int = 40
    l1: float = 1e-7
    l2: float = 1e-7
    augment: bool | None = None  # None: on for plain CNNs, off for equivariant networks
    val_splits: tuple[int, ...] = (7,)
    test_splits: tuple[int, ...] = (8, 9)
    train_fraction: float = 1.0
    grid_size: int | None = None
    voxel_size: float | None = None
    sigma: float | None = None
    oriented: bool = False  # aa: environments in the residue's backbone frame
    backbone_channels: bool = False  # aa: own N, C, O and virtual Cβ in channels of their own
    fields: str | None = None  # oriented input fields (cathnet.fields): cath "ss-orientation", aa "frame"
    canonical: str | None = None  # cath: "principal" turns every structure into its principal axes (cathnet.canonical)
    epoch_size: int | None = None  # items per epoch (None: one pass over the training items)
    val_size: int | None = None  # validate on a fixed seeded subset of this many items
    balance: bool = False  # draw training items with class-balanced probabilities
    device: str = "auto"
    precision: str = "auto"  # auto, fp32 or bf16 (autocast; see cathnet.precision)
    patience: int | None = None  # stop when validation accuracy has not improved for this many epochs
    time_limit: float | None = None  # minutes: no epoch starts that would end after this much training time
    compile: bool = False  # torch.compile the training step (a minute of compilation, then ~10 % faster on CPU)
    init: str | None = None  # start from this trained model's weights (fresh optimizer and schedule)
    seed: int = 0
    resume: bool = False
    progress: bool = True
