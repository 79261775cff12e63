"""The released models, shipped inside the package: ``NAME.safetensors`` + ``NAME.json``
(model card: ``README.md`` here). ``$CATHNET_MODELS`` names another folder to look in.

Imports neither torch nor the networks, so that the command line can name the defaults and
resolve names without loading them.

>>> DEFAULT_MODELS["aa"]
'aa-propensity'
>>> "cath-arch" in available_models()
True
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_MODELS", "MAX_ROTATIONS", "available_models", "models_dir", "released_files",
    "resolve_model",
]

DEFAULT_MODEL = "cath-arch"
#: the released model used for each task when none is named
DEFAULT_MODELS = {"cath": "cath-arch", "aa": "aa-propensity"}
#: the most random rotations a prediction averages over
MAX_ROTATIONS = 64


def models_dir() -> Path:
    """Where named models are looked up: ``$CATHNET_MODELS`` or this package folder."""
    return Path(os.environ.get("CATHNET_MODELS") or str(resources.files(__name__)))


def available_models() -> list[str]:
    """Names of the released models found in :func:`models_dir`."""
    return sorted(p.stem for p in models_dir().glob("*.json") if p.with_suffix(".safetensors").exists())


def released_files() -> set[Path]:
    """Resolved paths of the files that belong to a released model (``NAME.json``,
    ``NAME.safetensors``, ``NAME-confusion.png``, ...): never an output."""
    names = available_models()
    if not names:
        return set()
    prefixes = tuple(f"{n}{c}" for n in names for c in ".-")
    return {p.resolve() for p in models_dir().iterdir() if p.name.startswith(prefixes)}


def resolve_model(name: str | os.PathLike) -> Path:
    """Where the model ``name`` lives: a released model for a bare name (a string without
    a folder part) that is one, else the path itself. Raises
    :class:`~cathnet.checkpoint.CheckpointError` for a bare name that is neither."""
    text = str(name)
    if isinstance(name, os.PathLike) or "/" in text or os.sep in text:
        return Path(name)
    if text in available_models():
        return models_dir() / text
    if os.path.lexists(text) or os.path.lexists(f"{text}.json"):
        return Path(text)
    from cathnet.checkpoint import CheckpointError  # imports torch: only on this error

    known = ", ".join(available_models()) or "none"
    raise CheckpointError(f"unknown model {text!r}; released models: {known} (in {models_dir()})")
