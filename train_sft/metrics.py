"""metrics.jsonl: one JSON object per optimiser step, appended and flushed as the run goes."""
from __future__ import annotations

import json
import os

from selfinstruct.writers import atomic_open


class MetricsLog:
    """Rank 0's per-step log. On resume the rows after the checkpoint's step are dropped, so the
    file reads as one run (the steps redone after an interruption appear once)."""

    def __init__(self, path: str, resume_step: int | None):
        kept = []
        if resume_step is not None and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= resume_step]
        with atomic_open(path) as f:
            f.writelines(kept)
        self.file = open(path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
