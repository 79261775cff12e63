"""SE3Conv: the steerable convolution, learned weights × fixed basis → ``F.conv3d``."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from cathnet.basis import basis_count, kernel_basis
from cathnet.nn.field import FieldType

__all__ = ["SE3Conv", "check_centred"]

DC_FRACTION = 0.75  # share of an input's power assumed constant over a kernel window (init)


def check_centred(size: int, kernel_size: int, stride: int, padding: int, what: str) -> int:
    """Output size of a strided window op; raise unless the grid centre maps to the output
    centre (then windows map to windows under all 24 cube rotations)."""
    out = (size + 2 * padding - kernel_size) // stride + 1
    if out < 1:
        raise ValueError(f"{what}: grid of {size} is smaller than the window {kernel_size}")
    # centre of output window o sits at input index stride*o - padding + (kernel_size-1)/2
    if stride * (out - 1) - 2 * padding + kernel_size - 1 != size - 1:
        raise ValueError(
            f"{what}: kernel {kernel_size}, stride {stride}, padding {padding} on a grid of {size} "
            f"shifts the grid centre, which breaks rotation equivariance; e.g. use an even kernel "
            f"on an even grid or an odd kernel on an odd grid with padding (kernel-1)//2"
        )
    return out


class SE3Conv(nn.Module):
    """Steerable 3D convolution between field types (Weiler et al. 2018).

    The kernel block from every order-``l`` input field to every order-``j`` output field is
    a learned combination of :func:`cathnet.basis.kernel_basis` (j, l, kernel_size), so the
    layer is equivariant: ``conv(in_type.transform(x, R)) == out_type.transform(conv(x), R)``.
    ``bias`` is added to scalar output fields only. Weights are initialised so that the
    output keeps the input's variance (times ``gain``²) for white fields and for ReLU-like
    scalars with a positive mean (see :meth:`_fan_in`).
    """

    def __init__(
        self,
        in_type: FieldType,
        out_type: FieldType,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
        *,
        sigma: float = 0.6,
        bandlimit: str = "compromise",
        gain: float = 1.0,
    ):
        super().__init__()
        if not isinstance(in_type, FieldType) or not isinstance(out_type, FieldType):
            raise TypeError("SE3Conv needs FieldType in/out types, e.g. FieldType.parse('4x0 + 4x1')")
        if in_type.dim == 0 or out_type.dim == 0:
            raise ValueError(f"SE3Conv: empty field type ({in_type} -> {out_type})")
        self.in_type, self.out_type = in_type, out_type
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.padding = self.kernel_size // 2 if padding is None else int(padding)
        self.sigma, self.bandlimit = float(sigma), bandlimit
        self.pairs: list[tuple[int, int]] = []
        for j, m_out in enumerate(out_type.multiplicities):
            fan_in = sum(self._fan_in(j, l) * m_in for l, m_in in enumerate(in_type.multiplicities))
            for l, m_in in enumerate(in_type.multiplicities):
                n = basis_count(j, l, self.kernel_size, bandlimit)
                if m_out == 0 or m_in == 0 or n == 0:
                    continue
                basis = kernel_basis(j, l, self.kernel_size, sigma=self.sigma, rule=bandlimit)
                self.register_buffer(f"basis_{j}_{l}", torch.tensor(basis, dtype=torch.float32), persistent=False)
                std = gain / math.sqrt(fan_in)
                self.register_parameter(f"weight_{j}_{l}", nn.Parameter(torch.randn(m_out, m_in, n) * std))
                self.pairs.append((j, l))
        if not self.pairs:
            raise ValueError(
                f"SE3Conv {in_type} -> {out_type} with kernel {kernel_size} has no basis kernels "
                f"(the bandlimit leaves none); use a larger kernel"
            )
        self.bias = nn.Parameter(torch.zeros(out_type.mult(0))) if bias and out_type.mult(0) else None

    def _fan_in(self, j: int, l: int) -> float:
        """Output power per component, per unit-power input field of order l, for unit
        weight variance. A white input gives 1/(2j+1) per unit-norm basis kernel; a
        constant (DC) input gives ``|Σ_x κ_b(x)|² / (2j+1)``, large for the isotropic
        kernels. Real feature maps are smooth, so we count 3/4 of their power as DC —
        otherwise activations grow layer after layer (see tests/test_nn.py)."""
        if basis_count(j, l, self.kernel_size, self.bandlimit) == 0:
            return 0.0
        B = kernel_basis(j, l, self.kernel_size, sigma=self.sigma, rule=self.bandlimit)
        white = len(B) / (2 * j + 1)
        dc = float((B.sum(axis=(3, 4, 5)) ** 2).sum()) / (2 * j + 1)
        return (1 - DC_FRACTION) * white + DC_FRACTION * dc

    def _apply(self, fn, *args, **kwargs):
        # Re-cast the basis from its float64 source so that .double() is exact, not a
        # widened float32 copy.
        super()._apply(fn, *args, **kwargs)
        for j, l in self.pairs:
            w = getattr(self, f"weight_{j}_{l}")
            basis = kernel_basis(j, l, self.kernel_size, sigma=self.sigma, rule=self.bandlimit)
            setattr(self, f"basis_{j}_{l}", torch.tensor(basis, dtype=w.dtype, device=w.device))
        return self

    def kernel(self) -> torch.Tensor:
        """The full (out_dim, in_dim, s, s, s) kernel for the current weights."""
        s = self.kernel_size
        ref = next(self.parameters())
        rows = []
        for j, m_out in enumerate(self.out_type.multiplicities):
            if m_out == 0:
                continue
            cols = []
            for l, m_in in enumerate(self.in_type.multiplicities):
                if m_in == 0:
                    continue
                if (j, l) in self.pairs:
                    w, b = getattr(self, f"weight_{j}_{l}"), getattr(self, f"basis_{j}_{l}")
                    block = torch.einsum("uvn,najxyz->uavjxyz", w, b)
                    cols.append(block.reshape(m_out * (2 * j + 1), m_in * (2 * l + 1), s, s, s))
                else:
                    cols.append(ref.new_zeros(m_out * (2 * j + 1), m_in * (2 * l + 1), s, s, s))
            rows.append(torch.cat(cols, dim=1))
        return torch.cat(rows, dim=0)

    def full_bias(self) -> torch.Tensor | None:
        if self.bias is None:
            return None
        return torch.cat([self.bias, self.bias.new_zeros(self.out_type.dim - len(self.bias))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_type.dim:
            raise ValueError(f"SE3Conv expects {self.in_type.dim} channels ({self.in_type}), got {x.shape[1]}")
        for n in x.shape[-3:]:
            check_centred(n, self.kernel_size, self.stride, self.padding, "SE3Conv")
        with torch.autocast(x.device.type, enabled=False):  # assemble the kernel in full precision
            kernel, bias = self.kernel(), self.full_bias()
        return F.conv3d(x, kernel, bias, self.stride, self.padding)

    @torch.no_grad()
    def to_conv3d(self) -> nn.Conv3d:
        """A plain ``nn.Conv3d`` with the current kernel computed once (for inference)."""
        conv = nn.Conv3d(
            self.in_type.dim, self.out_type.dim, self.kernel_size, self.stride, self.padding, bias=self.bias is not None
        )
        ref = next(self.parameters())
        conv = conv.to(device=ref.device, dtype=ref.dtype)
        conv.weight.copy_(self.kernel())
        if self.bias is not None:
            conv.bias.copy_(self.full_bias())
        return conv

    def extra_repr(self) -> str:
        return (
            f"{self.in_type} -> {self.out_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}"
        )
