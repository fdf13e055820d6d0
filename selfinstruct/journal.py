"""The run journal: an append-only JSON-lines log in the output folder that is the single source of
truth of a ``generate`` run. Every paid teacher response and every decision (a candidate accepted,
rejected, or an instruction entering the pool) is written and flushed to the OS before it counts, so
a process killed at any moment (SIGKILL included) loses at most the line it was writing, and that
line is discarded on the next start. A resumed run rebuilds its state from it, and ``rejects.jsonl``
is rendered from it; ``data.json``, ``records.jsonl`` and ``summary.json`` are written from the
run's state (which the journal holds), each atomically.

Events (``ev``): ``header`` (settings), ``start`` (a unit's first request), ``resp`` (a response,
by request key), ``pool`` / ``accept`` / ``reject`` (decisions, by candidate key), ``end`` (a unit),
``teacher`` (the teacher's own, e.g. a submitted batch: ``Teacher.attach``).
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from selfinstruct.errors import InputError, UsageError
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request, Response
from selfinstruct.writers import to_json as encode   # one line's JSON, no newline

FILENAME = "journal.jsonl"
FSYNC_EVERY_S = 2.0


@dataclass
class JournalState:
    """What a journal says about a run so far."""
    header: dict[str, Any] | None = None
    accepted: list[Record] = field(default_factory=list)
    pooled: list[Record] = field(default_factory=list)
    decided: dict[str, bool] = field(default_factory=dict)
    responses: dict[str, Response] = field(default_factory=dict)
    open_units: dict[str, Request] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    stage_of: dict[str, str] = field(default_factory=dict)     # reason -> stage (older journals: none)
    # candidates rejected after passing the synchronous filters (by the judge, or at a later turn of a
    # conversation): those filters remembered them, so they count for novelty
    judged_out: list[Record] = field(default_factory=list)
    teacher_events: list[dict[str, Any]] = field(default_factory=list)   # oldest first
    units: int = 0                                       # units started
    ended: set[str] = field(default_factory=set)         # uids of the units that ended


def iter_events(path: str, kinds: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    """The journal's complete events; a torn last line (the process died writing it) is skipped.

    ``kinds``: only events of these kinds. Lines that start like another kind's (``Journal.write``
    puts ``ev`` first) are skipped unparsed; the final render reads the whole journal for its rejects."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    wanted = None if kinds is None else tuple(b'{"ev": "%s"' % k.encode() for k in kinds)
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        if wanted is not None and raw.startswith(b'{"ev": "') and not raw.startswith(wanted):
            continue
        try:
            ev = json.loads(raw)
        except ValueError:
            if n == len(lines):       # no newline after it: torn by a crash
                return
            raise InputError("corrupt journal line (not JSON); move the folder away to start over",
                             path, n) from None
        if kinds is not None and ev.get("ev") not in kinds:
            continue
        yield ev


def load(path: str) -> JournalState:
    st = JournalState()
    for ev in iter_events(path):
        kind = ev["ev"]
        if kind == "header":
            st.header = ev["settings"]
        elif kind == "start":
            st.open_units[ev["uid"]] = Request.from_dict(ev["req"])
            st.units += 1
        elif kind == "end":
            st.open_units.pop(ev["uid"], None)
            st.ended.add(ev["uid"])
        elif kind == "teacher":
            st.teacher_events.append(ev)
        elif kind == "resp":
            st.responses[ev["key"]] = Response.from_dict(ev["resp"])
        elif kind == "accept":
            st.accepted.append(Record.from_dict(ev["record"]))
            st.decided[ev["key"]] = True
        elif kind == "pool":
            st.pooled.append(Record.from_dict(ev["record"]))
            st.decided[ev["key"]] = True
        elif kind == "reject":
            st.decided[ev["key"]] = False
            st.rejected[ev["reason"]] = st.rejected.get(ev["reason"], 0) + 1
            if "stage" in ev:
                st.stage_of.setdefault(ev["reason"], ev["stage"])
                # passed the synchronous filters, then was rejected (by the judge, or at a later turn of
                # a conversation): the stateful filters remembered it, so a resumed run preloads it too
                if ev["stage"] == "judge" or ev.get("passed_head"):
                    st.judged_out.append(Record.from_dict(ev["record"]))
    return st


def repair(path: str) -> None:
    """Cut a torn last line so that new events start on a line of their own."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


class Journal:
    """Appends events; holds an exclusive lock so two runs never write one folder."""

    def __init__(self, path: str):
        self.path = path
        if os.path.exists(path):
            repair(path)
        self._f = open(path, "a", encoding="utf-8")
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise UsageError(f"another selfinstruct generate is writing to {os.path.dirname(path) or '.'}") \
                from None
        self._last_sync = time.monotonic()

    def write(self, event: dict[str, Any]) -> None:
        """Append ``event`` (``ev`` first)."""
        self._f.write(encode(event) + "\n")
        self._f.flush()                     # in the OS now: survives the process being killed
        if time.monotonic() - self._last_sync > FSYNC_EVERY_S:   # and on disk, every few seconds
            os.fsync(self._f.fileno())
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
