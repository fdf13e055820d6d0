"""The ``selfinstruct report`` command: paths in, ``write_report`` out, the page's path printed.

matplotlib is imported by ``write_report`` only when the command runs, so the CLI starts fast."""
from __future__ import annotations

from typing import List, Optional

import typer
from typing_extensions import Annotated


def report_command(
    paths: Annotated[List[str], typer.Argument(
        metavar="PATH", show_default=False,
        help="A generate or filter output folder, or any dataset: Alpaca JSON, JSON lines, "
             "Self-Instruct/BELLE seed tasks, parquet, a save_to_disk folder, hf:NAME[:split]. "
             "Several paths make one page: an overview comparing them, then a section each.")],
    out: Annotated[Optional[str], typer.Option(
        "--out", "-o", show_default=False,
        help="Folder for report.html and the PNG figures. Default: the output folder itself, or "
             "<file stem>_report/ beside a dataset file (decided by the first PATH).")] = None,
    progress: Annotated[bool, typer.Option(help="Say what it is doing on stderr.")] = False,
) -> None:
    """Write a self-contained HTML report (report.html) and its PNG figures.

    The page shows the funnel (candidates, rejects per stage and reason,
    kept), length distributions (words for English, characters for
    Chinese), ROUGE-L of each instruction to its most similar one (the
    Self-Instruct paper's Figure 3), the top verbs and their objects
    (Figure 2), the language mix, judge scores, tokens, cost and requests
    of a generate run, and samples of kept and rejected records. It runs
    no script and opens offline.

    Examples:

    \b
      # the report of a generate run (also written at the end of the run)
      selfinstruct report out/en
      # any dataset file: writes alpaca_data_report/report.html beside it
      selfinstruct report alpaca_data.json
      # two runs side by side, into a folder of your choice
      selfinstruct report out/en out/zh --out reports/en-vs-zh
    """
    from selfinstruct.errors import UsageError
    from selfinstruct.report import write_report

    try:
        path = write_report(paths, out, progress=progress)
    except ImportError as e:        # matplotlib comes with the `report` extra
        raise UsageError(f"the report needs matplotlib ({e}): pip install 'selfinstruct[report]'") from None
    typer.echo(f"report -> {path}")
