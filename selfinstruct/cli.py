"""The ``selfinstruct`` command line (also ``python cli.py`` from a checkout): one Typer app.

Commands import their heavy libraries (torch, transformers, datasets) only when they run, so
``selfinstruct --help`` starts fast. A ``SelfInstructError`` becomes one ``Error: …`` line on stderr and
exit status 2, without a traceback (``selfinstruct.errors.user_errors``, shared with train_sft).
"""
from __future__ import annotations

import typer

from selfinstruct.commands.filter_cmd import filter_command
from selfinstruct.commands.generate_cmd import generate_command
from selfinstruct.commands.report_cmd import report_command
from selfinstruct.errors import user_errors

app = typer.Typer(
    name="selfinstruct",
    help="Generate, curate and fine-tune on instruction data (Self-Instruct / Alpaca).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,           # plain help and usage errors, no boxes
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("generate")(user_errors(generate_command))
app.command("filter")(user_errors(filter_command))
app.command("report")(user_errors(report_command))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
