"""``python -m cathnet``: the command-line interface."""
from cathnet.cli import main

main()
