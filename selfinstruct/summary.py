"""The one summary schema of ``generate`` and ``filter``, and the counts it is made from.

Both commands write ``summary.json`` with these fields, meaning the same thing in each:

    kept               records written (the data file, plus the test file with --test-size)
    rejected           reason code -> count (present, possibly empty)
    rejected_per_stage stage -> reason code -> count (the report's funnel): a filter's stage, or
                       "read" (malformed rows) and "generate" (the loop's own: unparseable…)
    rejected_total     sum of ``rejected``
    elapsed_seconds    the whole command, loading included
    seconds_per_stage  filter stage (and, for ``filter``, ``read``) -> seconds spent in it

and each adds its own (``generate``: requested, stopped, tokens, requests, requests_per_stage,
cost_usd, teacher, settings; ``filter``: input_records, malformed, inputs, against, filters, settings),
and both ``outputs`` (format, the data and test files, splits, languages, teachers, the Hugging Face
folder and Hub name) and ``command`` (the command line, for the dataset card).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selfinstruct.teachers.base import Request, Response


@dataclass
class Tally:
    """What a run rejected and where its filter time went: the one place they are counted (the filter
    chain counts into it, and so does the generate loop for its own reasons). What was kept is what
    each command wrote, counted where it writes."""
    rejected: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)       # per filter stage
    stage_of: dict = field(default_factory=dict)            # reason code -> the stage that gave it

    def reject(self, reason: str, stage: str, n: int = 1) -> None:
        self.rejected[reason] += n
        self.stage_of.setdefault(reason, stage)

    def per_stage(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for reason, count in sorted(self.rejected.items()):
            out.setdefault(self.stage_of.get(reason, "generate"), {})[reason] = count
        return out

    def top(self, n: int) -> str:
        """"reason count, …" for the ``n`` most common reasons (progress bars)."""
        return ", ".join(f"{reason} {count:,}" for reason, count in self.rejected.most_common(n))


def common_fields(kept: int, tally: Tally, started: float,
                  extra_seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """The fields every summary starts with; ``kept`` is the records written (data and test files),
    ``started`` the command's ``time.monotonic()`` at its start."""
    seconds = {**(extra_seconds or {}), **tally.seconds}
    return {
        "kept": kept,
        "rejected": dict(sorted(tally.rejected.items())),
        "rejected_total": sum(tally.rejected.values()),
        "rejected_per_stage": tally.per_stage(),
        "elapsed_seconds": round(time.monotonic() - started, 3),
        "seconds_per_stage": {k: round(v, 3) for k, v in seconds.items()},
    }


@dataclass
class Counts:
    """Requests and tokens of a run, counted where they are asked (the generate loop, the judge's
    asker in ``filter``): the one place they are counted."""
    requests: Counter = field(default_factory=Counter)     # paid, cached, replayed, failed
    per_stage: dict[str, Counter] = field(default_factory=dict)   # stage -> the same, per stage
    tokens: dict[str, Counter] = field(default_factory=dict)   # stage -> prompt/completion (paid)
    failures_in_row: int = 0

    def count(self, request: Request, outcome: str) -> None:
        self.requests[outcome] += 1
        self.per_stage.setdefault(request.stage, Counter())[outcome] += 1

    def answered(self, request: Request, resp: Response) -> None:
        if resp.error:
            self.count(request, "failed")
            self.failures_in_row += 1
            return
        self.failures_in_row = 0
        self.count(request, "cached" if resp.cached else "paid")
        if not resp.cached:
            tok = self.tokens.setdefault(request.stage, Counter())
            tok["prompt"] += resp.prompt_tokens
            tok["completion"] += resp.completion_tokens
