"""Export a model for use without cathnet: ONNX or TorchScript, plus a JSON sidecar.

>>> from cathnet.export import export_onnx
>>> export_onnx("cath-arch", "cath-arch.onnx")        # doctest: +SKIP

The exported graph is the *collapsed* network (every steerable convolution replaced by the
plain ``conv3d`` it computes; the gated nonlinearity, batch norm in eval mode and pooling
are ordinary tensor operations). It maps a float32 grid ``(batch, channels, N, N, N)`` to
logits ``(batch, n_classes)``; the batch axis is dynamic.

Next to ``FILE`` goes ``FILE.json`` (format :data:`EXPORT_FORMAT`): how to build the input
grid (atom selection and channels, grid size, voxel size, Gaussian width, centring), the
class codes and names, the exported file's SHA-256, the measured deviation from the PyTorch
model, and the source model's full metadata. The same description (without the checksum)
is embedded in the file itself: ONNX ``metadata_props["cathnet"]``, TorchScript extra file
``cathnet.json``.

ONNX export needs the ``onnx`` package and is checked with ``onnxruntime`` when installed
(``pip install 'cathnet[export]'``). Both files are written atomically.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from cathnet.checkpoint import CheckpointError
from cathnet.errors import CathnetError
from cathnet.fileio import atomic_write, write_json
from cathnet.inference import Model
from cathnet.predict import load_model
from cathnet.voxel import TRUNCATE

__all__ = [
    "EXPORT_FORMAT", "FORMATS", "ONNX_OPSET", "ExportError", "export", "export_onnx", "export_torchscript",
    "sidecar_path",
]

EXPORT_FORMAT = "cathnet-export/1"
FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "grid", "logits"
#: Largest relative deviation ||exported − torch|| / ||torch|| accepted by the export check.
TOLERANCE = 1e-4


class ExportError(CathnetError):
    """An export that cannot be done or whose result disagrees with PyTorch (one line)."""


def sidecar_path(path: str | os.PathLike) -> Path:
    """``FILE.json`` for ``FILE`` (``model.onnx`` → ``model.onnx.json``), so that exporting
    into ``cathnet/models/`` never overwrites a model's own ``NAME.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _resolve(model_or_name) -> Model:
    if isinstance(model_or_name, Model):
        return model_or_name
    try:
        return load_model(model_or_name, device="cpu")
    except KeyError as exc:  # metadata without input/classes
        raise CheckpointError(f"{model_or_name}: not a cathnet model (metadata lacks {exc})") from None


def _network(model: Model) -> torch.nn.Module:
    """A CPU copy of the collapsed network in eval mode, without gradients."""
    net = copy.deepcopy(model.network).cpu().eval()
    if any(type(m).__name__ == "SE3Conv" for m in net.modules()):
        from cathnet import nn as enn

        net = enn.collapse(net)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _example(model: Model, batch: int, seed: int) -> torch.Tensor:
    """Random non-negative grids shaped like the model's input (densities are ≥ 0)."""
    g = torch.Generator().manual_seed(seed)
    n = model.grid_size
    return torch.rand(batch, model.n_channels, n, n, n, generator=g)


def _description(model: Model, fmt: str, extra: dict) -> dict:
    """The usage description embedded in the exported file and written to the sidecar."""
    inp, classes = dict(model.meta["input"]), model.meta["classes"]
    if model.task == "aa":
        inp["environment"] = ("C/N/O/S atoms within radius of the residue's Ca, its own side chain removed; see "
                              "cathnet.environments (backbone_channels: own N, C, O and a virtual Cb in channels 4-7)")
    inp.setdefault("truncate", TRUNCATE)
    inp.setdefault("centre", "mean atom position")
    return {
        "format": EXPORT_FORMAT,
        "export": {"format": fmt, **extra, "torch": torch.__version__},
        "input": {
            "name": INPUT_NAME, "shape": ["batch", model.n_channels, model.grid_size, model.grid_size, model.grid_size],
            "dtype": "float32", "layout": "(batch, channel, x, y, z)",
            "channels": inp.get("channels") or list(model.preprocessing.channels),
            "density": "each atom adds exp(-|p - x|^2 / 2 sigma^2) over voxel centres p within truncate*sigma "
                       "per axis, "
                       "normalised to sum 1; voxel (i,j,k) is centred at centre + ((i,j,k) - (N-1)/2) * voxel_size",
            **inp,
        },
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(classes["codes"])], "dtype": "float32",
                   "meaning": "logits over classes.codes; softmax along axis 1 gives probabilities"},
        "classes": {"codes": classes["codes"], "names": classes["names"]},
    }


def _relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def _check(err: float, fmt: str) -> None:
    if not err <= TOLERANCE:
        raise ExportError(f"{fmt} export disagrees with the PyTorch model (relative error {err:.2e} > {TOLERANCE:g})")


def _write(path: Path, blob: bytes, description: dict, check: dict | None, source: dict) -> dict:
    sidecar = {
        **description,
        "export": {
            **description["export"], "file": path.name, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()
        },
        "check": check,
        "source": source,
    }
    atomic_write(path, blob)
    write_json(sidecar_path(path), sidecar)
    return sidecar


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' deprecation and tracer chatter (the result is checked instead)."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        yield


def export_onnx(model_or_name, path: str | os.PathLike, *, opset: int = ONNX_OPSET, verify: bool = True) -> dict:
    """Export to ONNX (``opset`` ≥ 17, dynamic batch axis) at ``path`` and its sidecar;
    returns the sidecar. With ``verify`` (and onnxruntime installed) the graph is run on
    random grids and must match PyTorch to :data:`TOLERANCE`. Raises
    :class:`~cathnet.checkpoint.CheckpointError` for a bad model, :class:`ExportError`
    otherwise (missing ``onnx``, opset < 17, disagreement)."""
    if opset < 17:
        raise ExportError(f"opset {opset} is too old; 17 or newer is needed")
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'cathnet[export]'") from None
    model = _resolve(model_or_name)
    net = _network(model)
    path = Path(path)
    buf = io.BytesIO()
    kwargs: dict = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript-based exporter: no onnxscript needed, exact for these ops
    try:
        with _quiet():
            torch.onnx.export(
                net, (_example(model, 2, 0),), buf, opset_version=opset, input_names=[INPUT_NAME],  # type: ignore[arg-type]  # a file object is fine
                output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True, **kwargs,
            )
    except Exception as exc:  # noqa: BLE001 — exporter failures come in many types
        raise ExportError(f"ONNX export failed: {' '.join(str(exc).split())[:300]}") from exc
    description = _description(model, "onnx", {"opset": opset, "onnx": onnx.__version__})
    proto = onnx.load_from_string(buf.getvalue())
    what = "amino-acid propensity network" if model.task == "aa" else "CATH architecture classifier"
    proto.doc_string = f"cathnet {model.meta.get('network', {}).get('name', '')} {what}"
    entry = proto.metadata_props.add()
    entry.key, entry.value = "cathnet", json.dumps(description)
    onnx.checker.check_model(proto)
    blob = proto.SerializeToString()

    check = None
    if verify:
        try:
            import onnxruntime as ort
        except ImportError:
            ort = None
        if ort is not None:
            x = _example(model, 3, 1)  # another batch size than the export's: the batch axis is dynamic
            with torch.no_grad():
                ref = net(x).numpy()
            session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
            err = _relative_error(session.run(None, {INPUT_NAME: x.numpy()})[0], ref)
            _check(err, "ONNX")
            check = {"runtime": f"onnxruntime {ort.__version__}", "batch": 3, "relative_error": err}
    return _write(path, blob, description, check, model.meta)


def export_torchscript(model_or_name, path: str | os.PathLike, *, verify: bool = True) -> dict:
    """Export to TorchScript (``torch.jit.trace`` of the collapsed network; load with
    ``torch.jit.load``) at ``path`` and its sidecar; returns the sidecar. With ``verify``
    the saved module is reloaded and must match PyTorch to :data:`TOLERANCE` on another
    batch size than the trace's."""
    model = _resolve(model_or_name)
    net = _network(model)
    path = Path(path)
    description = _description(model, "torchscript", {"method": "trace"})
    check = None
    try:
        with _quiet():
            with torch.no_grad():
                traced = torch.jit.trace(net, (_example(model, 2, 0),), check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf, _extra_files={"cathnet.json": json.dumps(description)})
            blob = buf.getvalue()
            if verify:
                loaded = torch.jit.load(io.BytesIO(blob), map_location="cpu")
                x = _example(model, 3, 1)  # another batch size than the trace's: the batch axis is dynamic
                with torch.no_grad():
                    err = _relative_error(loaded(x).numpy(), net(x).numpy())
                _check(err, "TorchScript")
                check = {"runtime": f"torch.jit {torch.__version__}", "batch": 3, "relative_error": err}
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"TorchScript export failed: {' '.join(str(exc).split())[:300]}") from exc
    return _write(path, blob, description, check, model.meta)


def export(model_or_name, path: str | os.PathLike, fmt: str, **kwargs) -> dict:
    """:func:`export_onnx` or :func:`export_torchscript` by ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "onnx":
        return export_onnx(model_or_name, path, **kwargs)
    if fmt == "torchscript":
        return export_torchscript(model_or_name, path, **kwargs)
    raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
