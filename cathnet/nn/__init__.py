"""Equivariant layers: field types, steerable convolution, gates, norms, pooling.

Tensors are (batch, channels, X, Y, Z); voxel (i, j, k) sits at ``(i, j, k) - (N-1)/2``
voxels from the grid centre, so a 3×3 rotation acts on index triples directly. Channels
are the fields of a :class:`FieldType` in order of increasing l, each field's 2l+1
components contiguous in the order of :mod:`cathnet.so3` (order 1 = (x, y, z)).
"""
import copy

import torch.nn as nn

from cathnet.nn.conv import SE3Conv, check_centred
from cathnet.nn.field import FieldType
from cathnet.nn.nonlinearity import Gate, NormNonlinearity
from cathnet.nn.norm import EquivariantBatchNorm, FieldDropout, convert_sync_batchnorm
from cathnet.nn.pool import EquivariantAvgPool, GlobalPool, centre_weights

__all__ = [
    "FieldType",
    "SE3Conv",
    "Gate",
    "NormNonlinearity",
    "EquivariantBatchNorm",
    "FieldDropout",
    "EquivariantAvgPool",
    "GlobalPool",
    "centre_weights",
    "check_centred",
    "collapse",
    "convert_sync_batchnorm",
]


def collapse(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every :class:`SE3Conv` replaced by the plain ``nn.Conv3d``
    it computes (no basis at inference). Call after training, in eval mode."""
    if isinstance(module, SE3Conv):
        return module.to_conv3d()
    out = copy.deepcopy(module)
    _collapse_children(out)
    return out


def _collapse_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, SE3Conv):
            setattr(module, name, child.to_conv3d())
        else:
            _collapse_children(child)
