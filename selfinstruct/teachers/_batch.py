"""``--batch``: the OpenAI Batch API (``/v1/files`` + ``/v1/batches``) behind the teacher's
``complete(request)``, for OpenAI and any compatible server.

The generate loop keeps ``concurrency`` requests wanted and awaits each answer, as for the online
path; here each ``complete`` queues its request and awaits a future. A **wave** is sent when
``concurrency`` distinct requests are queued, or when none has arrived for ``GATHER_S`` (the loop
refills its requests within milliseconds of an answer, so a pause means "that is all for now").
A wave becomes one JSONL input file per endpoint (``custom_id`` = ``Request.key()``; identical
requests share one line), uploaded and submitted as a batch, polled every ``teacher.batch_poll``
seconds until it ends; the output and error files are downloaded and mapped back by ``custom_id``.
The pool grows between waves because the loop's next units see the pool as earlier waves left it.

Crash safety, through the run's journal (``write``; None outside a generate run: no resume):

- ``batch_file`` {file, keys, t} is written after the upload and BEFORE ``batches.create``;
- ``batch`` {id, file} right after the create, before anything waits on it;
- ``batch_done`` {id} once its results are handed to the requests waiting for them;
- ``batch_file_unused`` {file} when an uploaded file made no batch (the create was refused, or failed
  and no batch of that file is listed): its requests go out in a new wave, the file never.

A resumed run (``events``) polls every batch without ``batch_done`` again (never resubmits it), and
looks a ``batch_file`` without a batch id up in ``batches.list`` (a crash between the create and its
journal line) before creating that batch from the same file. The resumed run re-asks the same
requests; one whose key is in such a pending batch waits for that batch instead of joining a wave.
``batches.create`` goes without the client's own retries: a retried create whose first answer was
lost would make a second batch of the same lines; a failed create is looked up by its file instead.

Failures: a per-request error (error-file line, non-200 ``status_code``, an unusable line or body)
and the unfinished requests of an expired or cancelled batch go back to the queue, ahead of new
requests, and into a later, smaller wave; a batch that answered nothing (failed, or ended before it
started) is retried as waves of half its size. After ``max_attempts`` batches a request's answer is
``Response(text="", error="batch: <reason> after N attempts")``, as on the online path. A 4xx that
retrying cannot fix (bad key, unknown model) raises ``TeacherError`` with the server's message. The
other calls (upload, poll, list, download) use the ``openai`` client's own retries; a poll or
download that still fails stops the run with ``TeacherError`` (rerun to resume: nothing is lost).
A queued request whose caller was cancelled (the run reached --num) is never sent.

Usage is accounted at batch prices in the teacher's ``_accounting`` (``teacher.cost_usd()``).
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from selfinstruct.errors import TeacherError
from selfinstruct.pricing import CHAT_OVERHEAD_TOKENS, estimate_tokens
from selfinstruct.ratelimit import backoff_s
from selfinstruct.teachers._http import (Decoded, Transient, api_for, decode_body, fatal_message,
                                         is_retryable, request_body, usage_of)
from selfinstruct.teachers.base import Request, Response

# OpenAI bills Batch API requests at 50% of the synchronous price ("50% lower costs", OpenAI's Batch
# API guide): what a batched request costs is tokens x half of --price-in / --price-out.
BATCH_PRICE_FACTOR = 0.5

# How long a wave waits for one more request before it is sent short: the loop asks again within
# milliseconds of an answer, and a quarter second is nothing against a batch's minutes or hours.
GATHER_S = 0.25

# The Batch API takes at most 50,000 requests per input file.
MAX_LINES = 50_000

# Looking a lost batch up by its input file stops at batches created this long before the upload
# (clocks differ; the list is newest first, and an account may hold thousands of old batches).
FIND_SLACK_S = 3600

ENDPOINTS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass
class _Line:
    """One distinct request (by key) not answered yet, and everyone waiting for it."""
    request: Request
    api: str
    future: asyncio.Future
    prompt_estimate: int
    worst_cost: float
    attempts: int = 0               # batches it has been sent in
    wave_cap: int | None = None     # the most lines of a wave it leads (after a batch that failed)
    waiters: int = 0                # callers awaiting it now


@dataclass
class _Resume:
    """What the journal says is still out: batches to poll, uploaded files that may lack a batch."""
    batches: list[tuple[str, list[str]]] = field(default_factory=list)     # (batch id, keys)
    files: list[tuple[str, list[str], float]] = field(default_factory=list)   # (file id, keys, time)


def pending_in(events: list[dict[str, Any]]) -> _Resume:
    """The batches an earlier run submitted (or may have) without mapping their results back."""
    keys_of: dict[str, list[str]] = {}
    uploaded_at: dict[str, float] = {}
    batch_of_file: dict[str, str] = {}
    done: set[str] = set()
    unused: set[str] = set()                   # uploaded, then never made a batch (and never will)
    order: list[str] = []                      # file ids, oldest first
    for ev in events:
        kind = ev.get("kind")
        if kind == "batch_file":
            keys_of[ev["file"]] = list(ev["keys"])
            uploaded_at[ev["file"]] = float(ev.get("t", 0))
            order.append(ev["file"])
        elif kind == "batch":
            batch_of_file[ev["file"]] = ev["id"]
        elif kind == "batch_done":
            done.add(ev["id"])
        elif kind == "batch_file_unused":
            unused.add(ev["file"])
    plan = _Resume()
    for file_id in order:
        batch_id = batch_of_file.get(file_id)
        if batch_id is None:
            if file_id not in unused:
                plan.files.append((file_id, keys_of[file_id], uploaded_at[file_id]))
        elif batch_id not in done:
            plan.batches.append((batch_id, keys_of[file_id]))
    return plan


class Batcher:
    def __init__(self, teacher: Any, write: Callable[[dict[str, Any]], None] | None,
                 events: list[dict[str, Any]]):
        self.teacher = teacher
        self._write = write
        self._accounting = teacher._accounting
        self._accounting.price_in = teacher.price_in * BATCH_PRICE_FACTOR
        self._accounting.price_out = teacher.price_out * BATCH_PRICE_FACTOR
        self._wave_size = min(teacher.concurrency, MAX_LINES)
        self._client = None
        self._lines: dict[str, _Line] = {}          # every request asked and not answered, by key
        self._queued: dict[str, _Line] = {}         # those waiting for a wave, oldest first
        # keys of an earlier run's pending batches -> that batch (a request for one waits for it)
        self._resumed: dict[str, str] = {}
        self._ready: dict[str, Decoded] = {}        # answers of a resumed batch not asked for yet
        self._broken: dict[str, Exception] = {}     # keys of a resumed batch that cannot be followed
        self._resume = pending_in(events) if write is not None else _Resume()
        for batch_id, keys in self._resume.batches:
            self._resumed.update(dict.fromkeys(keys, batch_id))
        for file_id, keys, _ in self._resume.files:
            self._resumed.update(dict.fromkeys(keys, file_id))
        self._arrived: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self._running = False
        self._stats = {"batches_created": 0, "batches_resumed": 0, "requests_batched": 0,
                       "retried": 0, "failed": 0, "by_status": {}}

    # -- the teacher's side -----------------------------------------------------------------------
    async def complete(self, request: Request) -> Response:
        self._ensure_running()
        key = request.key()
        if key in self._broken:
            raise self._broken[key]
        ready = self._ready.pop(key, None)
        if ready is not None:
            api = api_for(request, self.teacher.api)
            return self._answer(request, ready, _prompt_estimate(request, api))
        line = self._lines.get(key)
        if line is None:
            line = await self._new_line(request, key)
        line.waiters += 1
        try:
            # shielded: one caller cancelled (the run stopping) does not cancel the answer others await
            return await asyncio.shield(line.future)
        except asyncio.CancelledError:
            self._forget_if_unwanted(key, line)
            raise
        finally:
            line.waiters -= 1

    def _forget_if_unwanted(self, key: str, line: _Line) -> None:
        """A queued line nobody awaits any more (its unit was cancelled: the run has what it needs)
        is not sent; one already in a batch stays (that batch is journaled, a rerun may use it)."""
        if line.waiters == 1 and self._queued.get(key) is line:
            del self._queued[key]
            del self._lines[key]
            self._accounting.release(line.worst_cost)

    async def _new_line(self, request: Request, key: str) -> _Line:
        api = api_for(request, self.teacher.api)
        estimate = _prompt_estimate(request, api)
        worst = self._accounting.cost(estimate, request.max_tokens)
        await self._accounting.reserve(worst)
        line = self._lines.get(key)
        if line is not None:                    # an identical request got in while we waited
            self._accounting.release(worst)
            return line
        line = _Line(request, api, asyncio.get_running_loop().create_future(), estimate, worst)
        self._lines[key] = line
        if key in self._resumed:
            line.attempts = 1                   # it is in an earlier run's batch: wait for that one
        else:
            self._enqueue([line])
        return line

    def stats(self) -> dict[str, Any]:
        return {**self._stats, "by_status": dict(sorted(self._stats["by_status"].items()))}

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for line in self._lines.values():
            if not line.future.done():
                line.future.cancel()
        # Answers of a resumed batch that no request came back for: paid all the same.
        for decoded in self._ready.values():
            self._accounting.answered("unclaimed", decoded.prompt_tokens or 0,
                                      decoded.completion_tokens or 0)
        self._ready.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- running -----------------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        if self._running:
            return
        self._running = True
        from openai import AsyncOpenAI

        # The client retries its own calls (connection errors, 408/409/429/5xx) with back-off.
        self._client = AsyncOpenAI(base_url=self.teacher.base_url,
                                   api_key=self.teacher._api_key or "none",
                                   max_retries=max(self.teacher.max_attempts - 1, 0),
                                   timeout=self.teacher.timeout)
        self._arrived = asyncio.Event()
        self._spawn(self._dispatch())
        for batch_id, keys in self._resume.batches:
            self._stats["batches_resumed"] += 1
            self._spawn(self._follow(batch_id, keys, ENDPOINT_UNKNOWN))
        for file_id, keys, uploaded in self._resume.files:
            self._spawn(self._adopt(file_id, keys, uploaded))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, lines: list[_Line], first: bool = False) -> None:
        """Queue lines for the next wave (retries ``first``: they have waited longest)."""
        if first:
            rest = self._queued
            self._queued = {line.request.key(): line for line in lines}
            self._queued.update(rest)
        else:
            for line in lines:
                self._queued[line.request.key()] = line
        if self._arrived is not None:
            self._arrived.set()

    async def _dispatch(self) -> None:
        assert self._arrived is not None
        while True:
            await self._arrived.wait()
            while len(self._queued) < self._wave_size:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), GATHER_S)
                except asyncio.TimeoutError:
                    break
            self._arrived.clear()
            if not self._queued:                # all of it was cancelled while it gathered
                continue
            queued = list(self._queued.values())
            wave = queued[:min(self._wave_size, queued[0].wave_cap or self._wave_size)]
            for line in wave:
                del self._queued[line.request.key()]
            if self._queued:
                self._arrived.set()             # the rest make the next wave at once
            for api in ENDPOINTS:
                lines = [line for line in wave if line.api == api]
                if lines:
                    self._spawn(self._submit(api, lines))

    async def _submit(self, api: str, lines: list[_Line]) -> None:
        keys = [line.request.key() for line in lines]
        for line in lines:
            line.attempts += 1
            if line.attempts > 1:
                self._accounting.retried(line.request.stage)
                self._stats["retried"] += 1
        data = b"".join(_jsonl_line(key, api, request_body(line.request, self.teacher.model, api))
                        for key, line in zip(keys, lines))
        try:
            uploaded = await self._client.files.create(file=("wave.jsonl", data), purpose="batch")
        except Exception as error:              # noqa: BLE001 - sorted into fatal / transient
            self._call_failed(error, keys)
            return
        self._journal(kind="batch_file", file=uploaded.id, keys=keys, t=time.time())
        try:
            batch = await self._create(uploaded.id, ENDPOINTS[api])
        except Exception as error:              # noqa: BLE001
            # a create that timed out or failed at the server may have made the batch all the same
            batch = await self._find_or_none(uploaded.id, time.time()) if _maybe_done(error) else None
            if batch is None:
                self._journal(kind="batch_file_unused", file=uploaded.id)     # never adopted later
                if _retryable(error):
                    await asyncio.sleep(backoff_s(max(line.attempts for line in lines),
                                                  self.teacher.backoff_base, self.teacher.backoff_cap))
                self._call_failed(error, keys)
                return
        self._journal(kind="batch", id=batch.id, file=uploaded.id)
        self._stats["batches_created"] += 1
        self._stats["requests_batched"] += len(lines)
        await self._follow(batch.id, keys, api, first_poll_after=self.teacher.batch_poll)

    async def _adopt(self, file_id: str, keys: list[str], uploaded: float) -> None:
        """A file journaled without its batch id: the batch may exist (the process died between the
        create and its journal line). Find it by input file, else create it now from that file."""
        try:
            found = await self._find(file_id, uploaded)
        except Exception as error:              # noqa: BLE001
            # Unknown whether it exists: a new wave might pay twice, so the run stops (resumable).
            reason = self._transient_reason(error, keys)
            if reason is not None:
                self._fail_waiting(keys, TeacherError(
                    f"cannot look up the batch of file {file_id} ({reason}); rerun the same "
                    "command to resume"))
            return
        if found is not None:
            self._stats["batches_resumed"] += 1
        else:
            try:
                found = await self._create(file_id, await self._endpoint_of(file_id))
            except Exception as error:          # noqa: BLE001
                # the old file cannot become a batch (gone, expired): fresh waves send its requests
                self._journal(kind="batch_file_unused", file=file_id)
                self._call_failed(error, keys, fatal_only_for=(401, 403))
                return
            self._stats["batches_created"] += 1
            self._stats["requests_batched"] += len(keys)
        self._journal(kind="batch", id=found.id, file=file_id)
        await self._follow(found.id, keys, _api_of(found.endpoint))

    async def _create(self, file_id: str, endpoint: str):
        """``batches.create``, without the client's own retries: a retried create whose first answer
        was lost would make a second batch of the same lines; the caller looks the first one up."""
        return await self._client.with_options(max_retries=0).batches.create(
            input_file_id=file_id, endpoint=endpoint, completion_window="24h")

    async def _find(self, file_id: str, uploaded: float):
        """The batch made from ``file_id``, or None (``batches.list`` is newest first)."""
        async for batch in self._client.batches.list(limit=100):
            if batch.input_file_id == file_id:
                return batch
            if batch.created_at < uploaded - FIND_SLACK_S:
                return None
        return None

    async def _find_or_none(self, file_id: str, uploaded: float):
        try:
            return await self._find(file_id, uploaded)
        except Exception:                       # noqa: BLE001 - the create's own error is reported
            return None

    def _call_failed(self, error: Exception, keys: list[str],
                     fatal_only_for: tuple[int, ...] | None = None) -> None:
        """A files/batches call failed for these keys: retried in a later wave, or (a refusal that
        retrying cannot fix) ``TeacherError`` for the requests waiting."""
        reason = self._transient_reason(error, keys, fatal_only_for)
        if reason is not None:
            self._settle_failures({key: f"submit: {reason}" for key in keys})

    async def _endpoint_of(self, file_id: str) -> str:
        """The endpoint the lines of an uploaded input file name (all lines of a file share one)."""
        content = await self._client.files.content(file_id)
        first = content.content.split(b"\n", 1)[0]
        return json.loads(first)["url"]

    async def _follow(self, batch_id: str, keys: list[str], api: str,
                      first_poll_after: float = 0.0) -> None:
        """Poll the batch until it ends, then hand its answers and failures to the requests."""
        await asyncio.sleep(first_poll_after)
        try:
            batch = await self._poll(batch_id)
            if batch is None:                       # the server does not know it (any more)
                self._settle_failures({key: "batch not found" for key in keys})
                self._journal(kind="batch_done", id=batch_id)
                return
            if api == ENDPOINT_UNKNOWN:
                api = _api_of(batch.endpoint)
            answers, failures = await self._results(batch, keys, api)
        except Exception as error:                  # noqa: BLE001
            reason = self._transient_reason(error, keys)
            if reason is not None:
                # the batch is journaled and still out there: a rerun polls it again
                self._fail_waiting(keys, TeacherError(
                    f"cannot follow batch {batch_id} ({reason}); rerun the same command to resume"))
            return
        self._stats["by_status"][batch.status] = self._stats["by_status"].get(batch.status, 0) + 1
        for key, decoded in answers.items():
            self._settle_answer(key, decoded)
        # A batch that answered nothing (failed validation, e.g. over the enqueued-token limit, or
        # ended before it started) is retried as waves of half its size.
        self._settle_failures(failures, wave_cap=None if answers else max(1, (len(keys) + 1) // 2))
        # Let the requests just answered reach the journal (they run on the next loop turn) before
        # the batch is marked done: a crash in between then costs a download, not a second payment.
        await asyncio.sleep(0)
        self._journal(kind="batch_done", id=batch_id)

    async def _poll(self, batch_id: str):
        from openai import NotFoundError

        while True:
            try:
                batch = await self._client.batches.retrieve(batch_id)
            except NotFoundError:
                return None
            if batch.status in TERMINAL:
                return batch
            await asyncio.sleep(self.teacher.batch_poll)

    async def _results(self, batch, keys: list[str], api: str) -> tuple[dict[str, Decoded], dict[str, str]]:
        """Answers by key, and for every other key of the batch why it has none."""
        answers: dict[str, Decoded] = {}
        failures: dict[str, str] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self._client.files.content(file_id)
            for raw in content.content.splitlines():
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue                    # its key, answered nowhere else, is retried
                if not isinstance(row, dict):
                    continue
                key, outcome = _outcome(row, api)
                if isinstance(outcome, Decoded):
                    answers[key] = outcome
                    failures.pop(key, None)
                elif key not in answers:
                    failures[key] = outcome
        missing = "missing from the output" if batch.status == "completed" else batch.status
        for key in keys:
            if key not in answers and key not in failures:
                failures[key] = missing
        return answers, failures

    # -- handing results to the requests --------------------------------------------------------------
    def _settle_answer(self, key: str, decoded: Decoded) -> None:
        self._resumed.pop(key, None)
        line = self._lines.pop(key, None)
        if line is None:
            self._ready[key] = decoded              # a resumed batch's answer, asked for later
            return
        self._accounting.release(line.worst_cost)
        if not line.future.done():
            line.future.set_result(self._answer(line.request, decoded, line.prompt_estimate))

    def _settle_failures(self, failures: dict[str, str], wave_cap: int | None = None) -> None:
        again = []
        for key, reason in failures.items():
            self._resumed.pop(key, None)
            line = self._lines.get(key)
            if line is None:
                continue                            # a resumed key nobody asked for yet: asked later
            if line.attempts < self.teacher.max_attempts:
                line.wave_cap = wave_cap
                again.append(line)
                continue
            del self._lines[key]
            self._accounting.release(line.worst_cost)
            self._accounting.failed(line.request.stage)
            self._stats["failed"] += 1
            if not line.future.done():
                line.future.set_result(Response(
                    text="", error=f"batch: {reason} after {line.attempts} attempts"))
        if again:
            self._enqueue(again, first=True)

    def _fail_waiting(self, keys: list[str], error: Exception) -> None:
        for key in keys:
            line = self._lines.pop(key, None)
            if line is None:
                if key in self._resumed:        # asked later: the same error, never a new batch
                    self._broken[key] = error
                continue
            self._queued.pop(key, None)
            self._accounting.release(line.worst_cost)
            if not line.future.done():
                line.future.set_exception(error)
                line.future.exception()             # retrieved: no "never retrieved" warning

    def _transient_reason(self, error: Exception, keys: list[str],
                          fatal_only_for: tuple[int, ...] | None = None) -> str | None:
        """A failed call's short reason when another try may fix it; a refusal that retrying cannot
        fix (a 4xx, or only the statuses ``fatal_only_for``) fails the waiting requests with
        ``TeacherError`` and returns None."""
        from openai import APIConnectionError, APIStatusError

        if isinstance(error, APIStatusError):
            status = error.status_code
            fatal = status in fatal_only_for if fatal_only_for is not None else not is_retryable(status)
            if not fatal:
                return f"http {status}"
            self._fail_waiting(keys, TeacherError(
                fatal_message(status, error.response.content, self.teacher._api_key)))
            return None
        if isinstance(error, APIConnectionError):
            return "timeout" if "timed out" in str(error).lower() else "connection error"
        self._fail_waiting(keys, error)         # a bug: surface it
        return None

    def _answer(self, request: Request, decoded: Decoded, prompt_estimate: int) -> Response:
        prompt_tokens, completion_tokens, extra = usage_of(decoded, prompt_estimate)
        estimated = "usage_estimated" in extra
        self._accounting.answered(request.stage, prompt_tokens, completion_tokens,
                                  truncated=decoded.finish_reason == "length", estimated=estimated)
        return Response(text=decoded.text, finish_reason=decoded.finish_reason,
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, extra=extra)

    def _journal(self, **event: Any) -> None:
        if self._write is not None:
            self._write({"ev": "teacher", **event})


ENDPOINT_UNKNOWN = ""          # a resumed batch: its endpoint comes with the first poll


def _retryable(error: Exception) -> bool:
    from openai import APIConnectionError, APIStatusError

    return isinstance(error, APIConnectionError) or (
        isinstance(error, APIStatusError) and is_retryable(error.status_code))


def _maybe_done(error: Exception) -> bool:
    """Whether a failed create may have made the batch anyway (the answer was lost, not refused)."""
    from openai import APIConnectionError, APIStatusError

    return isinstance(error, APIConnectionError) or (
        isinstance(error, APIStatusError) and error.status_code >= 500)


def _api_of(endpoint: str) -> str:
    return "chat" if endpoint.rstrip("/").endswith("chat/completions") else "completions"


def _prompt_estimate(request: Request, api: str) -> int:
    estimate = (estimate_tokens(request.prompt) + estimate_tokens(request.system)
                + sum(estimate_tokens(content) for _, content in request.history))
    return estimate + (CHAT_OVERHEAD_TOKENS if api == "chat" else 0)


def _jsonl_line(key: str, api: str, body: bytes) -> bytes:
    """One input-file line; the body goes in as request_body encoded it (no second encoding)."""
    head = json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINTS[api]})
    return head[:-1].encode() + b', "body": ' + body + b"}\n"


def _outcome(row: dict[str, Any], api: str) -> tuple[str, Decoded | str]:
    """(custom_id, the decoded answer or why there is none) of one output- or error-file line."""
    key = str(row.get("custom_id"))
    response = row.get("response") or {}
    error = row.get("error")
    status = response.get("status_code")
    if status == 200 and not error:
        try:
            return key, decode_body(json.dumps(response.get("body")).encode(), api)
        except Transient as unusable:
            return key, unusable.reason
    if isinstance(error, dict) and (error.get("code") or error.get("message")):
        return key, str(error.get("code") or error.get("message"))
    if not status:
        return key, "no response"
    body_error = (response.get("body") or {}).get("error") if isinstance(response.get("body"), dict) else None
    code = body_error.get("code") if isinstance(body_error, dict) else None
    return key, f"http {status}" + (f" ({code})" if code else "")
