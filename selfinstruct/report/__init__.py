"""``selfinstruct report``: a self-contained HTML page and PNG figures that show what a run made.

``write_report(paths, out_dir)`` is the one entry point (the ``report`` command, and ``generate`` /
``filter`` at the end of a run). Each path is a ``generate`` or ``filter`` output folder or any
dataset the readers take; several paths make ONE page, an overview table comparing them and then a
section per input, in the order given.

Where it writes (``out_dir`` when given, else decided by the first path): an output folder holds its
own report; a dataset file gets ``<stem>_report/`` beside it (``load.default_out_dir``). The folder
receives ``report.html`` (figures embedded as data: URIs, so the one file opens offline and can be
mailed) and the same figures as PNG files, ``report_<figure>.png`` (``report_<n>_<figure>.png``
with several inputs), so they can be reused on their own.

Layout: ``load`` reads an input, ``stats`` computes every number (``ReportStats``; tests check
these), ``figures`` draws them with matplotlib, ``html`` writes the page; ``verbnoun`` and
``nearest`` are the verb–noun extraction and the exact nearest-instruction ROUGE-L.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from selfinstruct.errors import UsageError

REPORT = "report.html"

__all__ = ["write_report", "REPORT"]


def write_report(paths: Sequence[str], out_dir: str | None = None, *, progress: bool = False,
                 nearest_fn: Callable | None = None, top_pairs_fn: Callable | None = None) -> Path:
    """Write report.html and its PNG figures for ``paths`` into ``out_dir``; returns report.html's
    path. Every input is read before anything is written, so a bad path leaves no half report.
    ``nearest_fn`` / ``top_pairs_fn`` replace ``nearest.nearest_scores`` / ``verbnoun.top_pairs``."""
    from selfinstruct.report import figures as fg
    from selfinstruct.report import html as page
    from selfinstruct.report.load import default_out_dir, load
    from selfinstruct.report.stats import compute

    paths = [str(p) for p in paths]
    if not paths:
        raise UsageError("give at least one PATH (an output folder or a dataset file)")
    say = _say if progress else (lambda _msg: None)
    sources = []
    for p in paths:
        say(f"report: reading {p}")
        sources.append(load(p))
    out = Path(out_dir) if out_dir else default_out_dir(paths[0])
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the folder ({e.strerror})") from None

    sections, notes, written = [], [], set()
    for i, source in enumerate(sources, 1):
        say(f"report: computing {source.path} ({len(source.records):,} records)")
        stats = compute(source, nearest_fn=nearest_fn, top_pairs_fn=top_pairs_fn)
        figs = fg.figures(stats)
        prefix = f"report_{i}_" if len(sources) > 1 else "report_"
        for name, (png, _alt) in figs.items():
            _write(out / f"{prefix}{name}.png", png)
            written.add(f"{prefix}{name}.png")
        sections.append((stats, figs))
    if any("zh" in s.lang_mix for s, _ in sections) and fg.cjk_font() is None:
        notes.append("No CJK font is installed, so Chinese labels in the figures show as boxes: "
                     "pip install 'selfinstruct[report]' (it brings noto-cjk-sans-otc).")
    target = out / REPORT
    _write(target, page.page(sections, notes).encode("utf-8"))
    for stale in figure_files(target):      # figures of an earlier report that this one has not
        if stale.name not in written:
            stale.unlink()
    say(f"report: wrote {target}")
    return target


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically, readable as any new file would be (the temporary file that
    atomic_open renames is private to its owner)."""
    from selfinstruct.writers import atomic_open
    with atomic_open(path, "wb") as f:
        f.write(data)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def figure_files(report: str | os.PathLike) -> list[Path]:
    """The PNG files written beside ``report``."""
    folder = Path(report).parent
    return sorted(folder.glob("report_*.png"))
