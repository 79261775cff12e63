"""CATH datasets: labels (:mod:`~cathnet.data.labels`), the structure files they name
(:mod:`~cathnet.data.sources`), splits and sampling (:mod:`~cathnet.data.splits`), building
(:mod:`~cathnet.data.build`) and loading (:mod:`~cathnet.data.datasets`).

The dataset is one compressed ``.npz`` (no pickled objects) holding every domain's atoms
concatenated, plus a JSON summary next to it. With ``atoms="environment"`` it holds every
heavy C/N/O/S atom and a residue table, the input of the amino-acid task (voxel grids are
never stored: environments are cut out and voxelized batch by batch):

=================  ===========  ======================================================
key                shape/dtype  meaning
=================  ===========  ======================================================
positions          (M, 3) f32   atom coordinates in Å, domains concatenated
channels           (M,) u8      atom channel (see ``meta.atoms``: ca, backbone, heavy)
residue_index      (M,) i32     residue of each atom, 0-based within its domain
offsets, counts    (D+1,), (D,) atoms of domain d: ``offsets[d]:offsets[d+1]``
backbone           (M,) bool    ``environment`` datasets only: N, CA, C or O atom
res_offsets        (D+1,) i64   ``environment`` only: residues of domain d
res_ca/_n/_c/_o    (R,) i32     ``environment`` only: atom row (within the domain) or -1
res_labels         (R,) i8      ``environment`` only: amino acid (``AMINO_ACIDS``) or -1
labels             (D,) i64     index into ``class_codes``
class_codes/names  (K,) str     CATH architectures "C.A" and their names
ids, cath_codes    (D,) str     CATH domain ids and C.A.T.H codes
superfamilies      (D,) str     C.A.T.H (the unit kept whole by the splits)
resolutions        (D,) f32     structure resolution in Å
splits             (D,) i8      split (fold) of each domain, 0..n_splits-1
meta               () str       JSON: format, atoms, n_channels, n_splits, seed, ...
=================  ===========  ======================================================
"""
from cathnet.data.build import BuildResult, build_dataset
from cathnet.data.datasets import FORMAT, CathData, EnvironmentData
from cathnet.data.labels import ARCHITECTURES, Domain, read_labels
from cathnet.data.splits import EpochStream, assign_splits, stratified_subset
from cathnet.environments import ENVIRONMENT
from cathnet.errors import DatasetError
from cathnet.fileio import sha256

__all__ = [
    "ARCHITECTURES", "ENVIRONMENT", "FORMAT", "BuildResult", "CathData", "DatasetError", "Domain", "EnvironmentData",
    "EpochStream", "assign_splits", "build_dataset", "read_labels", "sha256", "stratified_subset",
]
