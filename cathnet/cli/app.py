"""The Typer application object shared by all subcommands."""
import typer

from cathnet import __version__

app = typer.Typer(
    name="cathnet",
    help="SE(3)-equivariant steerable CNNs for protein structures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cathnet {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass
