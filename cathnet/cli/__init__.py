"""Command-line interface: thin wrappers around the library.

Each subcommand lives in its own module and registers itself on :data:`app`.
"""
from cathnet.cli.app import app
from cathnet.cli import tetris  # noqa: F401  (registers `cathnet tetris`)
from cathnet.cli import predict  # noqa: F401
from cathnet.cli import voxelize  # noqa: F401
from cathnet.cli import dataset, train, evaluate  # noqa: F401  (`cathnet dataset build`, `train`, `evaluate`)
from cathnet.cli import export  # noqa: F401


def main() -> None:
    app()
