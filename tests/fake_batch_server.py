"""A loopback server implementing the OpenAI Files and Batches APIs, for the ``--batch`` tests.

Endpoints: POST /v1/files (multipart: ``file``, ``purpose``), GET /v1/files/{id}/content,
POST /v1/batches, GET /v1/batches/{id}, GET /v1/batches (newest first, ``after`` / ``limit``),
POST /v1/batches/{id}/cancel.

Each batch walks validating -> in_progress -> finalizing -> its end, one step per poll (so a test
never depends on timing), and ends as its ``Outcome`` says (the next outcome scripted with
``script(...)`` when it was created, else completed):

- ``completed``, optionally with ``errors`` (line indices answered with ``error_status`` in the error
  file: a partial error file);
- ``failed`` (straight from validating, no output, ``errors.data`` set, as a file that fails
  validation);
- ``expired`` / ``cancelled`` after ``done`` lines: those are in the output file, the rest in the
  error file with code ``batch_expired`` / ``batch_cancelled``;
- ``hold=True``: stays in_progress until ``release()``.

Answers come from ``FakeOpenAI.answer_body`` (tests/fake_openai_server.py) with ``text_fn``, so their
usage is the loopback server's: prompt ``len(prompt) // 4 + 1``, completion ``len(text) // 4 + 1``
tokens. Every output file is made once, when its batch ends (a rerun downloads the same answers).

The server counts batches created and lines per batch, files uploaded, answers per custom_id, and
polls; ``fail_next_create(status, message)`` refuses the next create with an API error;
``fail_after_next_create(status)`` creates the next batch and answers the create with an error,
``stall_next_create()`` creates the next batch and then never answers the create call (the client
dies in the window between the create and its journal line), ``drop_next_create()`` never answers it
and creates nothing (the client dies before the create reached the server).

    with serve_batches_in_thread(FakeBatchServer(text_fn=reply)) as server:
        server.script(Outcome("expired", done=2))
        ... OpenAITeacher(base_url=server.url, batch=True) ...
"""
from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

from tests.fake_openai_server import Behaviour, FakeOpenAI, default_text, serve_in_thread

TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class Outcome:
    status: str = "completed"           # completed | failed | expired | cancelled
    done: int = 0                       # expired / cancelled: lines answered before the end
    errors: tuple[int, ...] = ()        # completed: line indices that get an error instead
    error_status: int = 500
    hold: bool = False                  # stay in_progress until release()


@dataclass
class FakeBatchServer:
    text_fn: Callable[[str], str | None] = default_text
    host: str = "127.0.0.1"
    port: int = 0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)     # in creation order
    uploads: int = 0                                    # files uploaded with purpose "batch"
    lines_per_batch: list[int] = field(default_factory=list)
    answered: collections.Counter = field(default_factory=collections.Counter)   # custom_id -> 200s
    polls: int = 0
    creates: int = 0                                    # POST /v1/batches received (answered or not)
    authorization: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._outcomes: collections.deque[Outcome] = collections.deque()
        self._create_errors: collections.deque[tuple[int, str, str]] = collections.deque()
        self._create_tricks: collections.deque[str] = collections.deque()
        self._outcome_of: dict[str, Outcome] = {}
        self._released = threading.Event()
        self._answers = FakeOpenAI(text_fn=self.text_fn)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- scripting (from the test's thread) -------------------------------------------------------
    def script(self, *outcomes: Outcome) -> None:
        with self._lock:
            self._outcomes.extend(outcomes)

    def fail_next_create(self, status: int, message: str, code: str = "invalid_request_error") -> None:
        with self._lock:
            self._create_errors.append((status, message, code))

    def stall_next_create(self) -> None:
        with self._lock:
            self._create_tricks.append("stall")

    def fail_after_next_create(self, status: int = 500) -> None:
        """Make the next batch, then answer the create with ``status`` (the answer is lost)."""
        with self._lock:
            self._create_tricks.append(f"fail {status}")

    def drop_next_create(self) -> None:
        with self._lock:
            self._create_tricks.append("drop")

    def release(self) -> None:
        """Let every held batch go on."""
        self._released.set()

    def created(self) -> list[dict[str, Any]]:
        return list(self.batches.values())

    def ended_lines(self) -> list[int]:
        """Lines per batch, of the batches polled to their end (a batch a run abandoned when it had
        its --num, created just before, never is: nothing of it was answered)."""
        return [n for n, batch in zip(self.lines_per_batch, self.batches.values())
                if batch["status"] in TERMINAL]

    def status_of(self, batch_id: str) -> str:
        return self.batches[batch_id]["status"]

    # -- files -----------------------------------------------------------------------------------
    def _new_file(self, content: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = f"file-{len(self.files) + 1:04d}"
        meta = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[file_id] = {**meta, "content": content}
        return meta

    async def upload(self, request: web.Request) -> web.Response:
        self._saw(request)
        form = await request.post()
        upload, purpose = form.get("file"), str(form.get("purpose", ""))
        if upload is None or not hasattr(upload, "file"):
            return _error(400, "no file", "invalid_request_error")
        content = upload.file.read()
        if purpose == "batch":
            self.uploads += 1
        return web.json_response(self._new_file(content, purpose, upload.filename or "upload"))

    async def content(self, request: web.Request) -> web.Response:
        self._saw(request)
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            return _error(404, "No such File object", "not_found")
        return web.Response(body=file["content"], content_type="application/octet-stream")

    # -- batches ---------------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        self._saw(request)
        self.creates += 1
        body = await request.json()
        with self._lock:
            refusal = self._create_errors.popleft() if self._create_errors else None
            trick = self._create_tricks.popleft() if self._create_tricks else None
        if refusal is not None:
            return _error(*refusal)
        if trick == "drop":
            await asyncio.sleep(3600)
        file = self.files.get(body.get("input_file_id", ""))
        if file is None or file["purpose"] != "batch":
            return _error(400, f"invalid input_file_id {body.get('input_file_id')!r}",
                          "invalid_request_error")
        if body.get("completion_window") != "24h" or body.get("endpoint") not in (
                "/v1/chat/completions", "/v1/completions"):
            return _error(400, "bad endpoint or completion_window", "invalid_request_error")
        lines = [json.loads(raw) for raw in file["content"].splitlines() if raw.strip()]
        if any(line.get("url") != body["endpoint"] for line in lines):
            return _error(400, "every line's url must be the batch's endpoint", "invalid_request_error")
        batch_id = f"batch_{len(self.batches) + 1:04d}"
        with self._lock:
            outcome = self._outcomes.popleft() if self._outcomes else Outcome()
        self._outcome_of[batch_id] = outcome
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": file["id"], "completion_window": "24h", "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata")}
        self.lines_per_batch.append(len(lines))
        if trick == "stall":
            await asyncio.sleep(3600)
        if trick is not None and trick.startswith("fail "):
            return _error(int(trick.split()[1]), "The server had an error.", "server_error")
        return web.json_response(self.batches[batch_id])

    async def retrieve(self, request: web.Request) -> web.Response:
        self._saw(request)
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return _error(404, "No such Batch object", "not_found")
        self.polls += 1
        self._advance(batch)
        return web.json_response(batch)

    async def cancel(self, request: web.Request) -> web.Response:
        self._saw(request)
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return _error(404, "No such Batch object", "not_found")
        if batch["status"] not in TERMINAL:
            batch["status"] = "cancelling"
            self._outcome_of[batch["id"]] = Outcome("cancelled", done=0)
        return web.json_response(batch)

    async def listing(self, request: web.Request) -> web.Response:
        self._saw(request)
        newest_first = list(reversed(self.batches.values()))
        after = request.query.get("after")
        if after is not None:
            ids = [b["id"] for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1:] if after in ids else []
        limit = int(request.query.get("limit", 20))
        page = newest_first[:limit]
        return web.json_response({"object": "list", "data": page,
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None,
                                  "has_more": len(newest_first) > limit})

    def _advance(self, batch: dict[str, Any]) -> None:
        """One step of the batch's life per poll."""
        outcome = self._outcome_of[batch["id"]]
        status = batch["status"]
        now = int(time.time())
        if status == "validating":
            if outcome.status == "failed":
                batch.update(status="failed", failed_at=now, errors={"object": "list", "data": [
                    {"code": "invalid_request", "message": "the input file failed validation",
                     "line": 1, "param": None}]})
                return
            batch.update(status="in_progress", in_progress_at=now)
        elif status == "in_progress":
            if outcome.hold and not self._released.is_set():
                return
            if outcome.status == "cancelled":
                batch.update(status="cancelling", cancelling_at=now)
            else:
                batch.update(status="finalizing", finalizing_at=now)
        elif status in ("finalizing", "cancelling"):
            self._finish(batch, outcome)

    def _finish(self, batch: dict[str, Any], outcome: Outcome) -> None:
        lines = [json.loads(raw) for raw in self.files[batch["input_file_id"]]["content"].splitlines()
                 if raw.strip()]
        out, errors = [], []
        for i, line in enumerate(lines):
            answered_by_now = outcome.status == "completed" or i < outcome.done
            if outcome.status == "completed" and i in outcome.errors:
                errors.append(self._error_line(line, outcome.error_status))
            elif answered_by_now:
                out.append(self._answer_line(line))
            else:
                code = "batch_expired" if outcome.status == "expired" else "batch_cancelled"
                errors.append({"id": f"batch_req_{i}", "custom_id": line["custom_id"], "response": None,
                               "error": {"code": code, "message": "This request could not be "
                                         "executed before the batch ended."}})
        for name, rows in (("output_file_id", out), ("error_file_id", errors)):
            if rows:
                content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
                batch[name] = self._new_file(content, "batch_output", f"{batch['id']}_{name}.jsonl")["id"]
        for row in out:
            self.answered[row["custom_id"]] += 1
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(errors)}
        batch["status"] = outcome.status
        batch[{"completed": "completed_at", "expired": "expired_at",
               "cancelled": "cancelled_at"}[outcome.status]] = int(time.time())

    def _answer_line(self, line: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(self._answers.answer_body(Behaviour(), line["url"], line["body"]))
        return {"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"],
                "response": {"status_code": 200, "request_id": "req", "body": body}, "error": None}

    def _error_line(self, line: dict[str, Any], status: int) -> dict[str, Any]:
        body = {"error": {"message": "The server had an error processing this request.",
                          "type": "server_error", "param": None, "code": "server_error"}}
        return {"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": "req", "body": body}, "error": None}

    def _saw(self, request: web.Request) -> None:
        self.authorization.add(request.headers.get("Authorization", ""))

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self._runner.cleanup()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.add_routes([web.post("/v1/files", self.upload),
                        web.get("/v1/files/{file_id}/content", self.content),
                        web.post("/v1/batches", self.create),
                        web.get("/v1/batches", self.listing),
                        web.get("/v1/batches/{batch_id}", self.retrieve),
                        web.post("/v1/batches/{batch_id}/cancel", self.cancel)])
        return app


def _error(status: int, message: str, code: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error",
                                        "param": None, "code": code}}, status=status)


def serve_batches_in_thread(server: FakeBatchServer):
    """Run ``server`` on its own event loop in a daemon thread for the duration of the block (the
    same runner as the chat server's)."""
    return serve_in_thread(server)
