"""Command-line interface: thin wrappers around the library.

Each subcommand lives in its own module and registers itself on :data:`app`.
"""
from cathnet.cli.app import app
# Each import registers its commands, in the order of the pipeline.
from cathnet.cli import predict, voxelize, dataset, train, evaluate, export, tetris  # noqa: F401,E402


def main() -> None:
    app()
