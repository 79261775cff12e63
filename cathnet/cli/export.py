"""``cathnet export``: a model as ONNX or TorchScript, usable without cathnet."""
from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from cathnet.cli.app import app
from cathnet.cli.common import err_console, fail, refuse_overwrite, report_error
from cathnet.errors import CathnetError
from cathnet.models import DEFAULT_MODEL, resolve_model


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


#: Output suffix → format, when --format is not given.
SUFFIXES = {".onnx": ExportFormat.onnx, ".pt": ExportFormat.torchscript, ".ts": ExportFormat.torchscript,
            ".torchscript": ExportFormat.torchscript}


@app.command()
def export(
    model: str = typer.Argument(DEFAULT_MODEL, help="Released model name or path to a model .json/.safetensors or training folder."),
    output: Path = typer.Option(..., "--output", "-o", help="Exported file; FILE.json (metadata sidecar) is written next to it."),
    fmt: ExportFormat = typer.Option(None, "--format", "-f", help="onnx or torchscript (default: from the suffix of -o: .onnx, .pt, .ts)."),
    opset: int = typer.Option(None, "--opset", min=17, help="ONNX opset, 17 or newer (default 17)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Run the exported model on random grids and compare with PyTorch."),
) -> None:
    """Export a model as ONNX or TorchScript (collapsed to plain conv3d).

    The exported network has a dynamic batch axis; a JSON sidecar holds the voxelization
    parameters and class names. Both files are written atomically."""
    from cathnet.checkpoint import model_files
    from cathnet.export import export as run_export
    from cathnet.export import sidecar_path

    if fmt is None:
        fmt = SUFFIXES.get(output.suffix.lower())
        if fmt is None:
            raise typer.BadParameter(f"cannot tell the format from {output.name!r}; give --format onnx|torchscript", param_hint="--format")
    if not output.parent.is_dir():
        report_error(output, f"no such directory {str(output.parent)!r}")
        raise typer.Exit(1)
    kwargs = {"opset": opset} if fmt is ExportFormat.onnx and opset is not None else {}
    try:
        path = resolve_model(model)
        refuse_overwrite([output, sidecar_path(output)], model_files(path), "--output")
        sidecar = run_export(path, output, fmt.value, verify=verify, **kwargs)
    except CathnetError as exc:
        fail(exc)
    except OSError as exc:
        report_error(output, exc.strerror or str(exc))
        raise typer.Exit(1) from None
    check = sidecar["check"]
    agreement = f"; relative error vs PyTorch {check['relative_error']:.1e} ({check['runtime']})" if check else ""
    err_console.print(f"wrote {output} ({sidecar['export']['bytes'] / 1e6:.1f} MB) and {sidecar_path(output)}{agreement}",
                      markup=False, highlight=False)
