"""Read what a report is about: a ``generate`` or ``filter`` output folder, or any dataset file.

An output folder is recognised by its ``summary.json``. Its kept records come from
``records.jsonl`` (every field: language, nearest seed and its ROUGE-L, judge score…) when it is
there, else from ``data.json`` (Alpaca JSON, instruction/input/output only). Its rejects are
streamed from ``rejects.jsonl``: the funnel's counts come from summary.json, so only the first few
rejects of each reason are held (the report's samples), however large the file.

Anything else is a dataset path for ``selfinstruct.readers.read_records`` (Alpaca JSON, JSON lines,
parquet, a save_to_disk folder, ``hf:NAME``): its records are all "kept", there is no funnel. An
empty file is a dataset with no records (the report says so), not an error; a path that does not
exist is an ``InputError``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfinstruct.errors import InputError
from selfinstruct.record import Record

SUMMARY, RECORDS, DATA, REJECTS = "summary.json", "records.jsonl", "data.json", "rejects.jsonl"
REJECTS_PER_REASON = 3


@dataclass
class Source:
    """One input of a report."""
    path: str
    kind: str                                   # "generate", "filter" or "dataset"
    records: list[Record]                       # the kept records
    summary: dict[str, Any] | None = None       # summary.json, for output folders
    reject_samples: dict[str, list[dict]] = field(default_factory=dict)   # reason -> first rows
    records_file: str | None = None             # the file the records were read from

    @property
    def is_run(self) -> bool:
        return self.summary is not None


def load(path: str, rejects_per_reason: int = REJECTS_PER_REASON) -> Source:
    """The records (and, for an output folder, summary and reject samples) at ``path``."""
    path = str(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, SUMMARY)):
        return _load_run(path, rejects_per_reason)
    return Source(path=path, kind="dataset", records=_read_dataset(path), records_file=path)


def _load_run(folder: str, rejects_per_reason: int) -> Source:
    summary = _read_json(os.path.join(folder, SUMMARY))
    if not isinstance(summary, dict):
        raise InputError("summary.json is not a JSON object", os.path.join(folder, SUMMARY))
    kind = "generate" if "requested" in summary else "filter" if "input_records" in summary else "run"
    records_path = os.path.join(folder, RECORDS)
    if os.path.isfile(records_path):
        records = _read_dataset(records_path)      # the readers know our own rows, every field
    elif os.path.isfile(os.path.join(folder, DATA)):
        records_path = os.path.join(folder, DATA)
        records = _read_dataset(records_path)
    else:
        records_path, records = None, []
    samples = _reject_samples(os.path.join(folder, REJECTS), rejects_per_reason)
    return Source(path=folder, kind=kind, records=records, summary=summary, reject_samples=samples,
                  records_file=records_path)


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg})", path, e.lineno, e.colno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"not readable ({getattr(e, 'strerror', None) or e})", path) from None


def _read_dataset(path: str) -> list[Record]:
    from selfinstruct.readers import read_records
    if os.path.isfile(path) and _is_blank(path):
        return []          # an empty dataset gets a report that says "no records"
    try:
        return list(read_records(path))
    except InputError as e:
        if e.what == "no records" and e.line is None:     # an empty list: a report, not an error
            return []
        raise


def _is_blank(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return not head.strip(b" \t\r\n\xef\xbb\xbf") and os.path.getsize(path) <= len(head)


def _reject_samples(path: str, per_reason: int) -> dict[str, list[dict]]:
    """reason -> the first ``per_reason`` lines of rejects.jsonl with that reason, in file order."""
    samples: dict[str, list[dict]] = {}
    if not os.path.isfile(path):
        return samples
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise InputError("not valid JSON", path, n) from None
            if not isinstance(row, dict):
                raise InputError("not a JSON object", path, n)
            got = samples.setdefault(str(row.get("reason", "?")), [])
            if len(got) < per_reason:
                got.append(row)
    return samples


def default_out_dir(path: str) -> Path:
    """Where a report on ``path`` goes by default: an output folder holds its own report; a dataset
    file ``<stem>_report/`` beside it, a dataset folder ``<name>_report/`` beside it; ``hf:NAME``
    ``<NAME>_report/`` in the current folder (a hub cache is no place to write)."""
    p = Path(path)
    if p.is_dir() and (p / SUMMARY).is_file():
        return p
    if p.is_file():
        return p.with_name(p.stem + "_report")
    if p.is_dir():
        return p.with_name(p.name + "_report")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in p.name or str(path)).strip("._")
    return Path((name or "dataset") + "_report")
