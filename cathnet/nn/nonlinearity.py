"""Equivariant nonlinearities: the gated nonlinearity of the paper and norm nonlinearity.

Both work on whole blocks of fields of one order (:meth:`FieldType.split`), never field by
field, and produce their output with one concatenation.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from cathnet.nn.field import FieldType

__all__ = ["Gate", "NormNonlinearity"]


class Gate(nn.Module):
    """Gated nonlinearity (Weiler et al. 2018, §3.3).

    ``in_type = out_type.gated()``: the scalars of ``out_type``, then one gate scalar per
    field of order l > 0, then the l > 0 fields, typically straight from an
    :class:`SE3Conv`. ``out_type``: ReLU on scalars, and every l > 0 field multiplied by the
    sigmoid of its own gate.
    """

    def __init__(self, out_type: FieldType):
        super().__init__()
        self.out_type, self.in_type = out_type, out_type.gated()
        self.high = out_type.higher()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n0, n_gates = self.out_type.mult(0), self.high.n_fields
        scalars, gates, high = x.split([n0, n_gates, self.high.dim], dim=1)
        gate = torch.sigmoid(gates).split([m for m in self.high.multiplicities if m], dim=1)
        gated = [(f * g.unsqueeze(2)).flatten(1, 2) for f, g in zip(self.high.split(high).values(), gate)]
        return torch.cat([torch.relu(scalars), *gated], dim=1)

    def extra_repr(self) -> str:
        return f"{self.in_type} -> {self.out_type}"


class NormNonlinearity(nn.Module):
    """ReLU on scalars; every l > 0 field ``f`` becomes ``f · relu(|f| + b) / |f|`` with a
    learned bias ``b`` per field (initialised to 0: the identity on nonzero fields)."""

    def __init__(self, field_type: FieldType, eps: float = 1e-6):
        super().__init__()
        self.field_type, self.in_type, self.out_type, self.eps = field_type, field_type, field_type, eps
        self.high = field_type.higher()
        self.bias = nn.Parameter(torch.zeros(self.high.n_fields))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scalars, high = x.split([self.field_type.mult(0), self.high.dim], dim=1)
        bias = self.bias.split([m for m in self.high.multiplicities if m])
        parts = [torch.relu(scalars)]
        for f, b in zip(self.high.split(high).values(), bias):
            norm = f.pow(2).sum(2, keepdim=True).add(self.eps**2).sqrt()
            scale = torch.relu(norm + b.to(f.dtype).view(1, -1, 1, *([1] * (f.dim() - 3)))) / norm
            parts.append((f * scale).flatten(1, 2))
        return torch.cat(parts, dim=1)
