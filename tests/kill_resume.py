"""Kill a ``generate`` run with SIGKILL in mid-run, again and again, then let it finish: the loop
every resume test shares, and the checks every one of them makes.

``kill_and_resume`` starts the command, waits until the run has accepted something new since the
last kill (bounded), waits a random moment more, and kills it; at least ``min_kills`` times (a run
that finishes on its own ends the loop). After each kill it checks that nothing accepted before was
lost, and remembers which responses were journaled by then: a later run must never send those
requests again (``assert_nothing_journaled_was_sent_again``). Then it runs the command to the end.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def journal_events(out: str | os.PathLike, kind: str) -> list[dict]:
    """The journal's events of one kind; a torn last line (a process killed while writing it) is left out."""
    path = Path(out) / "journal.jsonl"
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    events = []
    for n, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
        except ValueError:
            if n == len(lines):
                break
            raise
        if event["ev"] == kind:
            events.append(event)
    return events


@dataclass
class KilledRuns:
    seen: list[str]                          # the instructions accepted when the last run was killed
    kills: int
    final: subprocess.CompletedProcess       # the run that finished
    # (when the next run started, the keys of the responses journaled by then), one per kill
    journaled_by: list[tuple[float, set[str]]] = field(default_factory=list)
    interrupted: set[str] = field(default_factory=set)   # units started, not ended, at some kill


def kill_and_resume(cmd: list[str], out: str | os.PathLike, env: dict, seed: int, num: int | None = None,
                    min_kills: int = 3, tries: int = 6, timeout: float = 300) -> KilledRuns:
    """``num``: when given, each killed run must have accepted fewer than ``num`` (killed under way)."""
    rng = random.Random(seed)
    seen: list[str] = []
    runs = KilledRuns(seen=[], kills=0, final=None)
    for _ in range(tries):
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while p.poll() is None and len(journal_events(out, "accept")) <= len(seen) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.1))
        if p.poll() is not None:
            break                                # it finished on its own: no kill to count
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL
        runs.kills += 1
        now = [ev["record"]["instruction"] for ev in journal_events(out, "accept")]
        assert now[: len(seen)] == seen          # nothing accepted before was lost
        if num is not None:
            assert len(seen) < len(now) < num    # killed while under way: more than before, not all
        seen = now
        time.sleep(0.2)                          # what the dead process had sent reaches the server
        runs.journaled_by.append((time.monotonic(), {ev["key"] for ev in journal_events(out, "resp")}))
        runs.interrupted |= ({ev["uid"] for ev in journal_events(out, "start")}
                             - {ev["uid"] for ev in journal_events(out, "end")})
    assert runs.kills >= min_kills
    runs.seen = seen
    runs.final = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert runs.final.returncode == 0, runs.final.stderr
    return runs


def assert_nothing_journaled_was_sent_again(runs: KilledRuns, out: str | os.PathLike,
                                            sent: list[tuple[float, str]]) -> None:
    """No answer is paid for twice: once a response is in the journal, no later run sends its request
    again. (A request in flight when the process was killed has no journaled answer and is sent again
    by the run that resumes its unit: that is the one repeat there may be.) ``sent``: (time, request
    key) of every request the server received."""
    assert {ev["key"] for ev in journal_events(out, "resp")} <= {key for _, key in sent}   # keys map to bodies
    for started, journaled in runs.journaled_by:
        assert [key for t, key in sent if t > started and key in journaled] == []
