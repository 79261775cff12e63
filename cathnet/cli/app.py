"""The Typer application object shared by all subcommands."""
import typer

app = typer.Typer(
    name="cathnet",
    help="SE(3)-equivariant steerable CNNs for protein structures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
