"""Asking a teacher outside ``generate`` (the judge in ``selfinstruct filter``) so that no answer is
ever paid for twice: ``JournaledAsker`` = journal replay → response cache → teacher.

It is what ``generate``'s ``Context.ask`` does for a run, for a caller with no run around it:

- the journal is an append-only JSON-lines file of answers, in the run journal's ``resp`` event
  format (``selfinstruct.journal``). Every good answer is written and flushed to the OS *before* it
  is returned, so a process killed at any moment (SIGKILL included) keeps every answer a caller has
  seen; a line torn by the kill is cut on the next open. A rerun with the same journal answers those
  requests from it (``cached=True``, nothing sent) and asks only the rest. The journal is keyed like
  the response cache, by teacher namespace and request (``ResponseCache.key_for``): a rerun with
  another judge model replays nothing.
- the response cache (optional, shared across runs) answers identical requests of other runs;
- failed answers (``error`` set) are neither journaled nor cached: a rerun asks them again.
- at most ``teacher.concurrency`` requests are in flight, however many callers wait, so a caller may
  ``gather`` thousands of judgements at once; two callers asking the same request at the same time
  share one answer.
- requests and tokens are counted by ``generate``'s own ``summary.Counts``: requests (paid, cached,
  replayed, failed, also per stage) and tokens (per stage: prompt, completion; paid answers only).
- ``max_cost`` is the teacher's (``OpenAITeacher(max_cost=…)``): when the budget cannot cover the
  next request the teacher raises ``BudgetExhausted``, which propagates from ``__call__`` unchanged;
  everything answered before it is in the journal, so a rerun with a larger budget resumes.
- a teacher that fails ``max_failures_in_row`` answers in a row (the server is down, the URL is
  wrong) stops the run with a ``TeacherError`` instead of failing every remaining record slowly.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from selfinstruct import journal as jr
from selfinstruct.cache import ResponseCache, complete_cached
from selfinstruct.errors import TeacherError, UsageError
from selfinstruct.summary import Counts
from selfinstruct.teachers.base import Request, Response, Teacher

# As in generate: a long run of failures means the server is gone, not that requests are unlucky.
MIN_FAILURES_IN_ROW = 24


class JournaledAsker:
    """``await asker(request)`` → the teacher's answer, journaled (see the module docstring).

    Use as ``async with JournaledAsker(teacher, path, cache) as ask: ...`` or call ``start()`` and
    ``aclose()``. The cache stays the caller's to close (it may outlive this asker)."""

    def __init__(self, teacher: Teacher, journal_path: str | Path, cache: ResponseCache | None = None,
                 max_failures_in_row: int | None = None):
        self.teacher = teacher
        self.journal_path = Path(journal_path)
        self.cache = cache if teacher.uses_cache else None
        self.max_failures_in_row = max_failures_in_row or max(MIN_FAILURES_IN_ROW,
                                                              2 * teacher.concurrency)
        self.counts = Counts()                          # requests and tokens, as generate counts them
        self._answers: dict[str, Response] = {}         # journaled answers by key
        self._in_flight: dict[str, asyncio.Future] = {}
        self._journal: jr.Journal | None = None
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open (and lock) the journal, load its answers, start the teacher."""
        if self._closed:
            raise RuntimeError("this JournaledAsker was closed; make a new one")
        if self._journal is not None:
            return
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._journal = jr.Journal(str(self.journal_path))     # locks, cuts a torn last line
        except UsageError:
            raise UsageError(f"another selfinstruct run is writing the journal {self.journal_path}") \
                from None
        for ev in jr.iter_events(str(self.journal_path), ("resp",)):
            self._answers[ev["key"]] = Response.from_dict(ev["resp"])
        self._slots = asyncio.Semaphore(self.teacher.concurrency)
        await self.teacher.start()

    async def aclose(self) -> None:
        """Close the teacher and the journal (fsynced). The cache is flushed, not closed. Requests
        still waiting (the siblings of a failed ``gather``) then fail instead of restarting the
        teacher; callers should prefer ``asyncio.TaskGroup``, which cancels them."""
        self._closed = True
        try:
            await self.teacher.aclose()
        finally:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if self.cache is not None:
                self.cache.flush()

    async def __aenter__(self) -> "JournaledAsker":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def journaled(self) -> int:
        """Answers the journal holds (from earlier runs and this one)."""
        return len(self._answers)

    # -- asking -----------------------------------------------------------------------------------

    def key(self, request: Request) -> str:
        return ResponseCache.key_for(request, self.teacher)

    async def __call__(self, request: Request) -> Response:
        if self._journal is None:
            await self.start()
        key = self.key(request)
        known = self._answers.get(key)
        if known is not None:
            self.counts.count(request, "replayed")
            return _copy(known, cached=True)
        shared = self._in_flight.get(key)
        if shared is not None:              # the same request is on its way: wait for its answer
            response = await asyncio.shield(shared)
            self.counts.count(request, "replayed" if not response.error else "failed")
            return _copy(response, cached=True)
        future = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            response = await self._ask(key, request)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()          # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            self._in_flight.pop(key, None)
        future.set_result(response)
        return response

    async def _ask(self, key: str, request: Request) -> Response:
        assert self._slots is not None and self._journal is not None
        async with self._slots:
            if self._closed:
                raise RuntimeError("the JournaledAsker was closed while this request waited")
            response = await complete_cached(self.teacher, self.cache, request)
        self.counts.answered(request, response)
        if response.error:
            if self.counts.failures_in_row >= self.max_failures_in_row:
                raise TeacherError(f"the teacher failed {self.counts.failures_in_row} requests in a row "
                                   f"(last: {response.error}); check the judge's base URL and that "
                                   "the server is up, then rerun to resume")
            return response
        # Journaled before anyone sees it: whatever a killed run acted on, a rerun replays.
        self._journal.write({"ev": "resp", "key": key, "stage": request.stage,
                             "resp": response.to_dict()})
        self._answers[key] = response
        return response

    @property
    def requests(self) -> Counter:
        """paid, cached, replayed, failed"""
        return self.counts.requests

    def stats(self) -> dict[str, Any]:
        """For summary.json: requests, tokens, cost, and what the teacher and cache counted."""
        out: dict[str, Any] = {
            "teacher": self.teacher.label,
            "requests": {k: self.requests[k] for k in ("paid", "cached", "replayed", "failed")},
            "tokens": {stage: dict(c) for stage, c in self.counts.tokens.items()},
            "cost_usd": self.teacher.cost_usd(),
            "teacher_stats": self.teacher.stats(),
        }
        if self.cache is not None:
            out["cache"] = self.cache.stats()
        return out


def _copy(response: Response, cached: bool) -> Response:
    """A caller's own copy (callers may not share one mutable Response)."""
    return Response.from_dict({**response.to_dict(), "cached": cached})
