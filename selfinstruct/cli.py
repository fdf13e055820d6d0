"""The ``selfinstruct`` command line (also ``python cli.py`` from a checkout): one Typer app.

Commands import their heavy libraries (torch, transformers, datasets) only when they run, so
``selfinstruct --help`` starts fast. A ``SelfInstructError`` becomes one ``Error: …`` line on stderr and
exit status 2, without a traceback.
"""
from __future__ import annotations

import functools

import typer

from selfinstruct.commands.filter_cmd import filter_command
from selfinstruct.commands.generate_cmd import generate_command
from selfinstruct.errors import SelfInstructError

app = typer.Typer(
    name="selfinstruct",
    help="Generate, curate and fine-tune on instruction data (Self-Instruct / Alpaca).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,           # plain help and usage errors, no boxes
    context_settings={"help_option_names": ["-h", "--help"]},
)


def user_errors(fn):
    """Turn the errors users should see into one line and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SelfInstructError as e:
            typer.echo(f"Error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted: rerun the same command to resume.", err=True)
            raise typer.Exit(130) from None
    return wrapper


app.command("generate")(user_errors(generate_command))
app.command("filter")(user_errors(filter_command))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
