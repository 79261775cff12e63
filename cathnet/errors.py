"""The errors cathnet raises on purpose: every one is a :class:`CathnetError` whose ``str()``
is one line naming the input and the problem, so that a command catches them once and
prints that line. Errors of one layer live with it (:class:`~cathnet.structure.StructureError`,
:class:`~cathnet.checkpoint.CheckpointError`, :class:`~cathnet.precision.PrecisionError`,
:class:`~cathnet.export.ExportError`, :class:`~cathnet.fileio.UnreadableFile`); those shared
by several modules are here."""
from __future__ import annotations

__all__ = ["CathnetError", "DatasetError", "TrainError", "UsageError"]


class CathnetError(Exception):
    """Base class of cathnet's errors (one-line message)."""


class UsageError(CathnetError):
    """An option value that cannot be used (the command line exits with status 2)."""


class DatasetError(CathnetError):
    """A labels file, structure source, dataset file or option that cannot be used."""


class TrainError(CathnetError):
    """A training or evaluation option or state that cannot be used."""
