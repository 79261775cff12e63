"""Field types: how the channels of a feature map transform under rotations."""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import torch

from cathnet import so3

__all__ = ["FieldType"]

_TERM = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+)\s*$")


class FieldType:
    """A stack of fields: ``multiplicities[l]`` fields of order ``l`` (dimension 2l+1 each).

    Channels are ordered by increasing ``l``; within an order, field by field, each field's
    2l+1 components contiguous in the component order of :mod:`cathnet.so3`.

    >>> t = FieldType.parse("2x0 + 2x1 + 2x2 + 2x3")
    >>> t.dim, str(t)
    (32, '2x0 + 2x1 + 2x2 + 2x3')
    """

    def __init__(self, multiplicities: Sequence[int]):
        mults = [int(m) for m in multiplicities]
        if any(m < 0 for m in mults):
            raise ValueError(f"multiplicities must be non-negative, got {mults}")
        while mults and mults[-1] == 0:
            mults.pop()
        self.multiplicities: tuple[int, ...] = tuple(mults)

    @classmethod
    def parse(cls, text: str) -> "FieldType":
        """Parse ``"4x0 + 2x1 + 3"`` (a bare ``l`` means one field of order l)."""
        mults: dict[int, int] = {}
        for term in text.split("+"):
            match = _TERM.match(term)
            if match is None:
                raise ValueError(f"cannot parse field type {text!r}: term {term.strip()!r} is not 'MxL'")
            m, l = int(match.group(1) or 1), int(match.group(2))
            mults[l] = mults.get(l, 0) + m
        return cls([mults.get(l, 0) for l in range(max(mults) + 1)])

    @classmethod
    def scalars(cls, n: int) -> "FieldType":
        return cls([n])

    def __str__(self) -> str:
        return " + ".join(f"{m}x{l}" for l, m in enumerate(self.multiplicities) if m) or "0x0"

    def __repr__(self) -> str:
        return f"FieldType('{self}')"

    def __eq__(self, other) -> bool:
        return isinstance(other, FieldType) and self.multiplicities == other.multiplicities

    def __hash__(self) -> int:
        return hash(self.multiplicities)

    def __add__(self, other: "FieldType") -> "FieldType":
        n = max(len(self.multiplicities), len(other.multiplicities))
        return FieldType([self.mult(l) + other.mult(l) for l in range(n)])

    def mult(self, l: int) -> int:
        """Number of fields of order ``l``."""
        return self.multiplicities[l] if l < len(self.multiplicities) else 0

    @property
    def lmax(self) -> int:
        return len(self.multiplicities) - 1

    @property
    def dim(self) -> int:
        """Number of channels."""
        return sum(m * (2 * l + 1) for l, m in enumerate(self.multiplicities))

    @property
    def n_fields(self) -> int:
        return sum(self.multiplicities)

    @property
    def orders(self) -> list[int]:
        """The order of every field, in channel order."""
        return [l for l, m in enumerate(self.multiplicities) for _ in range(m)]

    def slices(self) -> dict[int, slice]:
        """Channel range of all fields of each order present."""
        out, start = {}, 0
        for l, m in enumerate(self.multiplicities):
            if m:
                out[l] = slice(start, start + m * (2 * l + 1))
                start += m * (2 * l + 1)
        return out

    def split(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Views of ``x`` (B, dim, ...) per order present: (B, m_l, 2l+1, ...) blocks.

        Built with ``torch.split``, whose backward concatenates the gradients: no per-slice
        zero-filled gradient buffers as with indexing."""
        if x.shape[1] != self.dim:
            raise ValueError(f"tensor has {x.shape[1]} channels, field type {self} has {self.dim}")
        if not self.dim:
            return {}
        blocks = x.split([sl.stop - sl.start for sl in self.slices().values()], dim=1)
        return {l: b.unflatten(1, (self.mult(l), 2 * l + 1)) for l, b in zip(self.slices(), blocks)}

    def higher(self) -> "FieldType":
        """The fields of order l > 0 alone (channels start at 0: the block after the scalars)."""
        return FieldType([0, *self.multiplicities[1:]])

    def gated(self) -> "FieldType":
        """This type plus one extra scalar (a gate) per field of order l > 0, as produced by
        the convolution that feeds :class:`cathnet.nn.Gate`."""
        n_gates = self.n_fields - self.mult(0)
        return FieldType([self.mult(0) + n_gates, *self.multiplicities[1:]])

    def representation(self, R, *, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Block-diagonal (dim, dim) matrix by which the channels transform under ``R``; of
        ``R``'s dtype and device when ``R`` is a tensor (else float32), unless ``dtype`` is given."""
        device = R.device if isinstance(R, torch.Tensor) else None
        dtype = dtype or (R.dtype if isinstance(R, torch.Tensor) else torch.float32)
        R = np.asarray(R.detach().cpu() if isinstance(R, torch.Tensor) else R, dtype=np.float64)
        blocks = [so3.wigner_D(l, R) for l in self.orders]
        matrix = scipy.linalg.block_diag(*blocks) if blocks else np.zeros((0, 0))
        return torch.as_tensor(matrix, dtype=dtype, device=device)

    def transform(self, x: torch.Tensor, R) -> torch.Tensor:
        """Rotate a feature map (B, dim, X, Y, Z) of this type by ``R``: move the voxels
        (exactly for the 24 cube rotations, by trilinear resampling otherwise) and rotate
        every field's components."""
        from cathnet.grid import is_cube_rotation, resample_grid, rotate_grid

        if x.shape[1] != self.dim:
            raise ValueError(f"tensor has {x.shape[1]} channels, field type {self} has {self.dim}")
        moved = (rotate_grid(x, R) if is_cube_rotation(R) else resample_grid(x, R)).contiguous()
        out = moved.clone()
        for l, sl in self.slices().items():
            if l:
                D = torch.as_tensor(so3.wigner_D(l, np.asarray(R, dtype=np.float64)), dtype=x.dtype, device=x.device)
                block = moved[:, sl].reshape(x.shape[0], self.mult(l), 2 * l + 1, -1)
                out[:, sl] = torch.matmul(D, block).reshape(out[:, sl].shape)
        return out
