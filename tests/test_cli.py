"""The command line as a whole: version, start-up without torch, choices kept in step with the library."""
import subprocess
import sys

from typer.testing import CliRunner

import cathnet
from cathnet import fields, networks
from cathnet.canonical import CANONICAL
from cathnet.cli import app
from cathnet.cli.common import Canonical, Task
from cathnet.cli.train import NETWORK_NAMES, Fields
from cathnet.cli.voxelize import VoxelFields
from cathnet.models import DEFAULT_MODELS
from cathnet.tasks import TASKS


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"cathnet {cathnet.__version__}\n"
    assert not hasattr(cathnet, "version")


def test_help_does_not_import_torch():
    code = "import sys; from cathnet.cli import main; sys.argv = ['cathnet', '--help']\n" \
           "try: main()\nexcept SystemExit: pass\nassert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "predict" in result.stdout


def test_choices_match_the_library():
    assert {t.value for t in Task} == set(TASKS) == set(DEFAULT_MODELS)
    assert {f.value for f in Fields} == {*fields.FIELDS, fields.FRAME}
    assert {f.value for f in VoxelFields} == set(fields.FIELDS)
    assert {c.value for c in Canonical} == {*CANONICAL, "none"}
    assert list(NETWORK_NAMES) == networks.available()
