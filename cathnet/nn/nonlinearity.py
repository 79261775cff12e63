"""Equivariant nonlinearities: the gated nonlinearity of the paper and norm nonlinearity."""
from __future__ import annotations

import torch
import torch.nn as nn

from cathnet.nn.field import FieldType

__all__ = ["Gate", "NormNonlinearity"]


def _fields(x: torch.Tensor, t: FieldType, l: int) -> torch.Tensor:
    """View the order-l block of ``x`` as (B, m_l, 2l+1, X, Y, Z)."""
    block = x[:, t.slices()[l]]
    return block.reshape(x.shape[0], t.mult(l), 2 * l + 1, *x.shape[2:])


class Gate(nn.Module):
    """Gated nonlinearity (Weiler et al. 2018, §3.3).

    Input: ``out_type.gated()`` (the scalars of ``out_type``, then one gate scalar per
    field of order l > 0, then the l > 0 fields), typically straight from an
    :class:`SE3Conv`. Output: ``out_type``; ReLU on scalars, and every l > 0 field
    multiplied by the sigmoid of its own gate.
    """

    def __init__(self, out_type: FieldType):
        super().__init__()
        self.out_type, self.in_type = out_type, out_type.gated()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n0 = self.out_type.mult(0)
        gates = torch.sigmoid(x[:, n0 : self.in_type.mult(0)])
        parts, g = [torch.relu(x[:, :n0])], 0
        for l in range(1, self.out_type.lmax + 1):
            m = self.out_type.mult(l)
            if m:
                f = _fields(x, self.in_type, l) * gates[:, g : g + m].unsqueeze(2)
                parts.append(f.flatten(1, 2))
                g += m
        return torch.cat(parts, dim=1)

    def extra_repr(self) -> str:
        return f"{self.in_type} -> {self.out_type}"


class NormNonlinearity(nn.Module):
    """ReLU on scalars; every l > 0 field ``f`` becomes ``f · relu(|f| + b) / |f|`` with a
    learned bias ``b`` per field (initialised to 0: the identity on nonzero fields)."""

    def __init__(self, field_type: FieldType, eps: float = 1e-6):
        super().__init__()
        self.field_type, self.eps = field_type, eps
        self.bias = nn.Parameter(torch.zeros(field_type.n_fields - field_type.mult(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.field_type
        parts, k = [torch.relu(x[:, : t.mult(0)])], 0
        for l in range(1, t.lmax + 1):
            m = t.mult(l)
            if m:
                f = _fields(x, t, l)
                norm = f.pow(2).sum(2, keepdim=True).add(self.eps**2).sqrt()
                scale = torch.relu(norm + self.bias[k : k + m].view(1, m, 1, 1, 1, 1)) / norm
                parts.append((f * scale).flatten(1, 2))
                k += m
        return torch.cat(parts, dim=1)
