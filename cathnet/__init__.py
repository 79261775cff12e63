"""cathnet: SE(3)-equivariant 3D steerable CNNs for protein structures.

Pipeline: :mod:`cathnet.structure` (PDB/mmCIF → atom arrays; :mod:`cathnet.selection`
picks atoms and channels, :mod:`cathnet.environments` cuts out residue environments) →
:mod:`cathnet.voxel` (Gaussian density grids; :mod:`cathnet.preprocess` is the whole step, as
a model's metadata records it) → :mod:`cathnet.so3` (rotations, harmonics, Wigner D) →
:mod:`cathnet.basis` (steerable kernel basis) → :mod:`cathnet.nn` (equivariant layers) →
:mod:`cathnet.networks` → :mod:`cathnet.data` / :mod:`cathnet.tasks` / :mod:`cathnet.train` →
:mod:`cathnet.inference` → :mod:`cathnet.predict` (architectures) and :mod:`cathnet.propensity`
(amino acids per residue) → :mod:`cathnet.cli`. Released models: :mod:`cathnet.models`.
"""

#: The package version; pyproject.toml reads it from here.
__version__ = "0.1.0"


def load_model(name="cath-arch", **kwargs):
    """A released model (``"cath-arch"``, ``"aa-propensity"``) by name or path; see
    :func:`cathnet.predict.load_model`."""
    from cathnet.predict import load_model as _load

    return _load(name, **kwargs)


__all__ = ["__version__", "load_model"]
