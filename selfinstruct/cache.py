"""A persistent cache of teacher answers, so a re-run (or a resumed run) pays nothing for prompts it
has already sent.

One SQLite file in WAL mode: readers never block the writer, several processes may write at once
(each write waits up to ``busy_timeout`` for the lock instead of failing), and a commit is a WAL
append without fsync (``synchronous=NORMAL``: a power cut may lose the last commits, never corrupt
the file). Puts are written in small batches (every ``batch`` puts, or on the first put a second
after the oldest unwritten one, and on ``flush``/``close``): one transaction per batch costs a
third of a commit per put (benchmarks/bench_teacher_throughput.py, scenario c), so puts stay in the
tens of microseconds on the event loop. A crash loses at most the unwritten batch, which a re-run
simply asks again.

The key is ``Request.key()`` (everything that changes the answer) combined with the teacher's
namespace (name, model, endpoint kind): the same prompt to another model is a miss. Stored: the
request fields, the answer text, finish reason and usage. Never stored: API keys, headers, URLs.
Failed answers (``error`` set) are not cached, so they are retried next run.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Awaitable, Callable

from selfinstruct.teachers.base import Request, Response, Teacher

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    teacher TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    extra TEXT NOT NULL,
    created REAL NOT NULL
)"""
_BUSY_TIMEOUT_S = 30.0


_REQUEST_FIELDS = tuple(Request.__dataclass_fields__)


class ResponseCache:
    def __init__(self, path: str | Path, batch: int = 32, max_delay_s: float = 1.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: every statement commits on its own (one INSERT = one transaction).
        self._db = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()           # one connection, possibly used from worker threads
        self.batch, self.max_delay_s = max(1, batch), max_delay_s
        self._pending: dict[str, tuple] = {}    # key -> row, not yet written
        self._closed = False
        self._oldest_pending = 0.0
        self.hits = self.misses = self.puts = 0

    @staticmethod
    def key_for(request: Request, teacher: Teacher | str) -> str:
        namespace = teacher if isinstance(teacher, str) else teacher.cache_namespace
        blob = f"{namespace}\n{request.key()}".encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:40]

    def get(self, key: str) -> Response | None:
        with self._lock:
            pending = self._pending.get(key)
            row = pending[3:8] if pending is not None else self._db.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens, extra "
                "FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        text, finish_reason, prompt_tokens, completion_tokens, extra = row
        return Response(text=text, finish_reason=finish_reason, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, cached=True, extra=json.loads(extra))

    def put(self, key: str, request: Request, response: Response, teacher_name: str) -> None:
        if response.error is not None:
            return
        # What request.to_dict() gives (json writes the stop tuple as a list), without asdict's cost.
        fields = {name: getattr(request, name) for name in _REQUEST_FIELDS}
        row = (key, teacher_name, json.dumps(fields, ensure_ascii=False), response.text,
               response.finish_reason, response.prompt_tokens, response.completion_tokens,
               json.dumps(response.extra, ensure_ascii=False, default=str), time.time())
        now = time.monotonic()
        with self._lock:
            if not self._pending:
                self._oldest_pending = now
            self._pending[key] = row
            if len(self._pending) >= self.batch or now - self._oldest_pending >= self.max_delay_s:
                self._write_pending()
        self.puts += 1

    def flush(self) -> None:
        """Write every pending put now."""
        with self._lock:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        # IMMEDIATE: take the write lock up front (waiting up to busy_timeout for other processes)
        # rather than fail on upgrading a read lock half-way.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?)",
                                 list(self._pending.values()))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._pending.clear()

    def __len__(self) -> int:
        with self._lock:
            self._write_pending()
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "puts": self.puts}

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._write_pending()
                self._db.close()
                self._closed = True

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def complete_cached(teacher: Teacher, cache: ResponseCache | None, request: Request,
                          before_miss: Callable[[], Awaitable[None]] | None = None) -> Response:
    """The answer from ``cache`` when it has one (``cached=True``: nothing was sent or paid), else
    from the teacher (after awaiting ``before_miss``, when given), cached when it succeeded."""
    if cache is None:
        return await teacher.complete(request)
    key = ResponseCache.key_for(request, teacher)
    hit = cache.get(key)
    if hit is not None:
        return hit
    if before_miss is not None:
        await before_miss()
    response = await teacher.complete(request)
    cache.put(key, request, response, teacher.label)
    return response
