"""``python -m cathnet``: the command-line interface."""
from cathnet.cli import main

if __name__ == "__main__":
    main()
