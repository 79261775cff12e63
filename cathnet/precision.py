"""Numerical precision of the network's forward pass: ``fp32`` or ``bf16`` autocast.

Under ``bf16`` convolutions and matrix products run in bfloat16 (AMX / AVX512-BF16 on
CPUs that have them, tensor cores on CUDA) while weights stay fp32, and batch-norm
statistics, global pooling, losses and softmax stay fp32. ``auto`` picks ``bf16`` on CUDA
and on CPUs with native bf16 instructions, ``fp32`` elsewhere (where bf16 is emulated and
slower).
"""
from __future__ import annotations

import contextlib

import torch

from cathnet.errors import UsageError

__all__ = ["PRECISIONS", "PrecisionError", "native_bf16", "resolve_precision", "autocast"]

PRECISIONS = ("auto", "fp32", "bf16")


class PrecisionError(UsageError, ValueError):
    """An unknown precision name (one-line message)."""


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix work natively (CUDA; CPUs with AMX or AVX512-BF16)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(name: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``name`` in :data:`PRECISIONS` on ``device``."""
    if name not in PRECISIONS:
        raise PrecisionError(f"--precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved ``precision`` on ``device``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
