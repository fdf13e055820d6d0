"""metrics.jsonl: one JSON object per optimiser step, appended and flushed as the run goes."""
from __future__ import annotations

import json
import os

from selfinstruct.errors import InputError
from selfinstruct.writers import atomic_open


class MetricsLog:
    """Rank 0's per-step log. On resume the rows after the checkpoint's step are dropped, so the
    file reads as one run (the steps redone after an interruption appear once). A process killed
    while writing leaves a torn last line: it is dropped too (its step is redone)."""

    def __init__(self, path: str, resume_step: int | None):
        kept = []
        if resume_step is not None and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                kept = [json.dumps(row) + "\n" for row in _whole_rows(f, path) if row["step"] <= resume_step]
        with atomic_open(path) as f:
            f.writelines(kept)
        self.file = open(path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _whole_rows(file, path: str) -> list[dict]:
    """The rows of complete lines. Only the last line can be torn (rows are appended one at a time,
    each ending with its newline); a bad line elsewhere is a damaged file, and an error."""
    lines = file.readlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number < len(lines) or line.endswith("\n"):
                raise InputError(f"not a metrics row ({e.msg}); move the file away to resume without "
                                 f"the earlier rows", path, number) from None
    return rows
