"""Command-line interface: thin wrappers around the library.

Each subcommand lives in its own module and registers itself on :data:`app`. torch is
imported inside the commands only, so that ``cathnet --help`` starts fast.
"""
from cathnet.cli.app import app

# Each import registers its commands; `cathnet --help` lists them in the order of the pipeline.
from cathnet.cli import predict, voxelize, dataset, train, evaluate, export, tetris  # isort: skip  # noqa: F401


def main() -> None:
    app()
