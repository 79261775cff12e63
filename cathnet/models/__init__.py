"""The released models, shipped inside the package: ``NAME.safetensors`` + ``NAME.json``
(model card: ``README.md`` here). ``$CATHNET_MODELS`` names another folder to look in.

Imports neither torch nor the networks, so that the command line can name the defaults
without loading them.

>>> DEFAULT_MODELS["aa"]
'aa-propensity'
>>> "cath-arch" in available_models()
True
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODELS", "available_models", "models_dir"]

DEFAULT_MODEL = "cath-arch"
#: the released model used for each task when none is named
DEFAULT_MODELS = {"cath": "cath-arch", "aa": "aa-propensity"}


def models_dir() -> Path:
    """Where named models are looked up: ``$CATHNET_MODELS`` or this package folder."""
    return Path(os.environ.get("CATHNET_MODELS") or str(resources.files(__name__)))


def available_models() -> list[str]:
    """Names of the released models found in :func:`models_dir`."""
    return sorted(p.stem for p in models_dir().glob("*.json") if p.with_suffix(".safetensors").exists())
