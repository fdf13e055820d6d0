"""What a ``generate`` run writes: the data file in ``--format`` (data.json or data.jsonl, and the
test file with ``--test-size``), records.jsonl, rejects.jsonl, summary.json and the dataset card
README.md, each replaced atomically, and the progress bar; at the end of a run that did not fail,
the Hugging Face dataset (``--hf-out``) and the push to the Hub (``selfinstruct.publish``).

The outputs are rendered again every ``RENDER_EVERY_S`` while the run goes on. A test split that the
records so far cannot fill yet (``--test-size 100`` with 40 accepted) is left out of those
intermediate renders; at the end it is drawn, or its error is the run's."""
from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import replace
from typing import Any

from selfinstruct import journal as jr
from selfinstruct import publish as pub
from selfinstruct.errors import UsageError
from selfinstruct.generate.settings import Settings
from selfinstruct.record import Record
from selfinstruct.summary import Tally, common_fields
from selfinstruct.text import script_lang
from selfinstruct.writers import atomic_open, reject_row, to_json, write_json

RENDER_EVERY_S = 30.0


class Outputs:
    def __init__(self, s: Settings, state: jr.JournalState, tally: Tally):
        self.s, self.tally = s, tally
        self.records: list[Record] = list(state.accepted[: s.num])     # what the data file holds
        # records.jsonl's lines, encoded once when accepted (each render rewrites the file whole)
        self.record_lines: list[str] = [to_json(r.to_dict()) for r in self.records]
        tally.rejected.update(state.rejected)
        tally.stage_of.update(state.stage_of)
        self.pbar = None

    @property
    def accepted(self) -> int:
        return len(self.records)

    def accept(self, record: Record, key: str, journal: jr.Journal) -> None:
        """Number ``record``, journal it, and hold it for data.json."""
        record.id = record_id(self.s.lang, self.s.random_seed, len(self.records) + 1)
        journal.write({"ev": "accept", "key": key, "record": record.to_dict()})
        self.records.append(record)
        self.record_lines.append(to_json(record.to_dict()))
        if self.pbar is not None:
            self.pbar.update(1)

    def rejected(self) -> None:
        if self.pbar is not None:
            self.pbar.set_postfix_str(self.postfix(), refresh=False)

    def postfix(self, live: dict[str, Any] | None = None) -> str:
        top = self.tally.top(2)
        extra = "".join(f" {k}={v}" for k, v in (live or {}).items())
        return f"rejected {sum(self.tally.rejected.values())}" + (f" ({top})" if top else "") + extra

    def open_progress(self) -> None:
        if self.s.progress:
            from tqdm import tqdm
            self.pbar = tqdm(total=self.s.num, initial=self.accepted, unit="ex", desc="generate",
                             file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def close_progress(self, live: dict[str, Any]) -> None:
        if self.pbar is not None:
            self.pbar.set_postfix_str(self.postfix(live))
            self.pbar.close()
            self.pbar = None

    def publishing(self, final: bool) -> pub.Publish:
        """The publish settings this render writes with: without the test split while the records so
        far cannot fill it, unless this is the end of the run."""
        p = self.s.publish
        if p.test_size is not None and not final:
            try:
                pub.test_count(self.accepted, p.test_size)
            except UsageError:
                return replace(p, test_size=None)
        return p

    def splits(self, final: bool) -> dict[str, int]:
        p = self.publishing(final)
        if p.test_size is None:
            return {"train": self.accepted}
        test = pub.test_count(self.accepted, p.test_size)
        return {"train": self.accepted - test, "test": test}

    def render(self, summary: dict[str, Any], journal_path: str | None = None) -> None:
        """The data file, records.jsonl, summary.json and README.md (and, given the journal, which
        only the end of a run passes, rejects.jsonl; then, unless the run failed, the Hugging Face
        outputs)."""
        out = self.s.out
        final = journal_path is not None
        try:
            if final:
                with atomic_open(os.path.join(out, "rejects.jsonl")) as rf:
                    for ev in jr.iter_events(journal_path, kinds=("reject",)):
                        rf.write(reject_row(ev["record"], ev["reason"], ev["detail"], source=ev["key"]))
            with atomic_open(os.path.join(out, "records.jsonl")) as f:
                for line in self.record_lines:
                    f.write(line + "\n")
            pub.write_data(out, self.records, self.publishing(final), self.s.random_seed)
            write_json(os.path.join(out, "summary.json"), summary)
            pub.write_card(out, summary)
        except OSError as e:
            raise UsageError(f"cannot write the outputs in {out} ({e.strerror or e}); the journal "
                             "holds everything: free the space or fix the folder, then rerun the "
                             "same command") from None
        if final and not summary["stopped"].startswith("error"):
            pub.publish_hf(out, self.s.publish, summary)


def summary(s: Settings, outputs: Outputs, counts, teacher, started: float, stopped: str,
            judge_teacher=None) -> dict[str, Any]:
    """summary.json of a generate run (the schema: ``selfinstruct.summary``); ``judge_teacher`` is
    the judge's own teacher when it is not the run's."""
    total: Counter = Counter()
    for c in counts.tokens.values():
        total.update(c)
    return {
        **common_fields(outputs.accepted, outputs.tally, started),
        "requested": s.num,
        "stopped": stopped,
        "tokens": {"prompt": total["prompt"], "completion": total["completion"],
                   "per_stage": {stage: dict(c) for stage, c in counts.tokens.items()}},
        "requests": dict(counts.requests),
        "requests_per_stage": _requests_per_stage(counts, teacher, judge_teacher),
        "cost_usd": teacher.cost_usd() + (judge_teacher.cost_usd() if judge_teacher else 0.0),
        "teacher": {"name": teacher.label, **teacher.stats()},
        **({"judge_teacher": {"name": judge_teacher.label, "cost_usd": judge_teacher.cost_usd(),
                              **judge_teacher.stats()}} if judge_teacher else {}),
        "settings": s.shown(),
        "outputs": pub.outputs_fields(s.publish, outputs.splits(final=stopped != "running"),
                                      Counter(r.lang or script_lang(r.instruction) for r in outputs.records),
                                      Counter(r.teacher for r in outputs.records if r.teacher)),
        "command": pub.command_line(),
    }


def _requests_per_stage(counts, teacher, judge_teacher) -> dict[str, dict[str, int]]:
    """stage -> paid / cached / replayed / failed (counted by the loop) and retried (by the teachers)."""
    out = {stage: dict(c) for stage, c in sorted(counts.per_stage.items())}
    for t in (teacher, judge_teacher):
        for stage, retries in (t.retries_per_stage() if t is not None else {}).items():
            out.setdefault(stage, {})
            out[stage]["retried"] = out[stage].get("retried", 0) + retries
    return out


def record_id(lang: str, random_seed: int, number: int) -> str:
    """``en-000001``; a run with ``--seed 3`` writes ``en-s3-000001``: the shards of a sharded run
    (one ``--seed`` each, merged by ``selfinstruct filter``) never share an id."""
    return f"{lang}-{number:06d}" if random_seed == 0 else f"{lang}-s{random_seed}-{number:06d}"
