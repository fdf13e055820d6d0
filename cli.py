"""``python cli.py …`` from a checkout: the same Typer app as the installed ``selfinstruct`` command."""
from selfinstruct.cli import app, main

__all__ = ["app"]

if __name__ == "__main__":
    main()
