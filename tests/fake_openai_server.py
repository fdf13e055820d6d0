"""A small, fast, scriptable OpenAI-compatible HTTP server for tests and benchmarks.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) on a raw asyncio protocol, with no
task per request, so one core serves thousands of requests a second and a client benchmark measures
the client. Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models.

Scripting: ``server.script(b1, b2, ...)`` queues behaviours that the next requests get in arrival
order; ``server.responder = fn(body, n) -> Behaviour | None`` decides per request (None: default);
everything else gets ``server.default`` (a deterministic numbered list derived from the prompt).
Every request is recorded (path, lower-cased headers, JSON body, arrival time), and the server counts
the most requests it had in flight at once.

Latency of the default answer: ``latency`` seconds, or with ``latency_range=(lo, hi)`` a draw per
request, uniform in [lo, hi], from ``random.Random(seed).uniform`` in arrival order (reproducible).
With ``stats=True``, ``GET /v1/_stats`` answers a JSON object: completion requests received and
answered (ok answers written) since the last reset, the monotonic times of the first one received and
the last answer written, the sum of the drawn latencies, the most in flight at once;
``GET /v1/_stats?reset=1`` answers the same, then resets these and reseeds the latency draws.

In tests (the ``fake_openai`` fixture of tests/conftest.py)::

    with serve_in_thread(FakeOpenAI()) as server:
        server.script(rate_limited(retry_after_ms=200), server_error(503))
        ... OpenAITeacher(base_url=server.url) ...

As a script (for benchmarks)::

    python tests/fake_openai_server.py --port 8123 --latency 1.0 [--fixed]
    python tests/fake_openai_server.py --latency-min 0.05 --latency-max 0.5 --seed 1 --sim --stats
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import random
import resource
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

# -- behaviours ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    kind: str = "ok"                  # ok | error | hang | reset | truncated | raw
    latency: float = 0.0              # seconds before answering (or, for hang, before giving up)
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None         # raw body for error / raw / truncated
    text: str | None = None           # ok: the completion text (default: derived from the prompt)
    finish_reason: str = "stop"
    usage: bool = True
    choices: bool = True              # False: "choices": []


def ok(text: str | None = None, latency: float = 0.0, headers: dict[str, str] | None = None,
       finish_reason: str = "stop", usage: bool = True) -> Behaviour:
    return Behaviour("ok", latency, headers=tuple((headers or {}).items()), text=text,
                     finish_reason=finish_reason, usage=usage)


def length(text: str = "1. A truncated answ") -> Behaviour:
    return ok(text=text, finish_reason="length")


def no_usage(text: str | None = None) -> Behaviour:
    return ok(text=text, usage=False)


def empty_choices() -> Behaviour:
    return Behaviour("ok", choices=False)


def api_error(status: int, message: str, code: str | None = None,
              type_: str = "invalid_request_error", headers: dict[str, str] | None = None,
              latency: float = 0.0) -> Behaviour:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Behaviour("error", latency, status, tuple((headers or {}).items()),
                     json.dumps(body).encode())


def rate_limited(retry_after: str | None = None, retry_after_ms: int | None = None) -> Behaviour:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    return api_error(429, "Rate limit reached for requests", "rate_limit_exceeded",
                     "requests", headers)


def server_error(status: int = 500) -> Behaviour:
    return api_error(status, "The server had an error while processing your request.", None,
                     "server_error")


def hang(seconds: float = 3600.0) -> Behaviour:
    """Accept the request and never answer (the connection closes after ``seconds``)."""
    return Behaviour("hang", seconds)


def reset() -> Behaviour:
    """Drop the connection (TCP RST) without answering."""
    return Behaviour("reset")


def truncated() -> Behaviour:
    """Announce a full body, send half of it, close."""
    return Behaviour("truncated")


def not_json(body: bytes = b"<html><body>502 Bad Gateway</body></html>") -> Behaviour:
    return Behaviour("raw", status=200, headers=(("Content-Type", "text/html"),), body=body)


# -- default answer --------------------------------------------------------------------------

_VOCAB = ("explain", "describe", "compare", "summarise", "list", "write", "design", "plan",
          "rivers", "poems", "budgets", "recipes", "planets", "proofs", "songs", "maps",
          "quickly", "gently", "three", "seven", "ancient", "modern", "tiny", "vast",
          "a", "the", "for", "about", "with", "without", "under", "between",
          "cats", "markets", "engines", "letters", "clouds", "gardens", "numbers", "stories",
          "why", "how", "when", "where", "green", "silent", "bright", "hidden",
          "teach", "sort", "count", "draw", "name", "fix", "test", "build",
          "robots", "islands", "forests", "castles", "oceans", "cities", "trains", "music")


def default_text(prompt: str, items: int = 3) -> str:
    """A deterministic numbered list, different for every prompt."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    lines = []
    for i in range(items):
        words = [_VOCAB[b % len(_VOCAB)] for b in digest[i * 8:(i + 1) * 8]]
        lines.append(f"{i + 1}. {' '.join(words).capitalize()}.")
    return "\n".join(lines)


def prompt_of(body: dict[str, Any]) -> str:
    if "messages" in body:
        return "\n".join(str(m.get("content", "")) for m in body.get("messages") or [])
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


# -- the server --------------------------------------------------------------------------------


@dataclass
class Received:
    n: int                            # arrival order, from 0
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    t: float                          # time.monotonic() at arrival
    behaviour: str = ""


@dataclass
class FakeOpenAI:
    latency: float = 0.0                              # for the default behaviour
    record: bool = True                               # keep every Received (off in benchmarks)
    text_fn: Callable[[str], str | None] = default_text       # None: "content": null
    responder: Callable[[Any, int], Behaviour | None] | None = None
    fixed: bool = False                               # benchmarks: one canned answer, no parsing
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    served: collections.Counter = field(default_factory=collections.Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    count: int = 0
    latency_range: tuple[float, float] | None = None  # default latency drawn uniformly per request
    seed: int = 0                                     # of the latency draws
    stats: bool = False                               # answer GET .../_stats (benchmarks)
    # since the last stats reset: completion requests received, ok answers written, times
    received_n: int = 0
    answered_n: int = 0
    first_received: float | None = None               # time.monotonic()
    last_answered: float | None = None
    latency_sum: float = 0.0                          # of the default latencies drawn

    def __post_init__(self) -> None:
        self._queue: collections.deque[Behaviour] = collections.deque()
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Conn] = set()
        self._rng = random.Random(self.seed)

    def default_latency(self) -> float:
        """The default answer's latency: fixed, or the next draw from ``latency_range``."""
        if self.latency_range is None:
            latency = self.latency
        else:
            latency = self._rng.uniform(*self.latency_range)
        self.latency_sum += latency
        return latency

    def stats_dict(self) -> dict[str, Any]:
        return {"received": self.received_n, "answered": self.answered_n,
                "first_received": self.first_received, "last_answered": self.last_answered,
                "latency_sum": self.latency_sum, "max_in_flight": self.max_in_flight,
                "in_flight": self.in_flight, "count": self.count}

    def reset_stats(self) -> None:
        self.received_n = self.answered_n = 0
        self.first_received = self.last_answered = None
        self.latency_sum = 0.0
        self.max_in_flight = self.in_flight
        self._rng = random.Random(self.seed)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *behaviours: Behaviour) -> None:
        self._queue.extend(behaviours)

    def pending(self) -> int:
        return len(self._queue)

    def received(self, path_suffix: str = "completions") -> list[Received]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), self.host, self.port,
                                                backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._conns):
                conn.transport.abort()
            await self._server.wait_closed()
            self._server = None

    # called by connections
    def choose(self, body: Any) -> Behaviour:
        n = self.count
        self.count += 1
        if self._queue:
            try:
                return self._queue.popleft()
            except IndexError:
                pass
        if self.responder is not None:
            chosen = self.responder(body, n)
            if chosen is not None:
                return chosen
        return Behaviour("ok", self.default_latency())

    def canned(self, path: str) -> bytes:
        """The whole HTTP response for the fixed benchmark answer on ``path``, built once."""
        cache = self.__dict__.setdefault("_canned", {})
        if path not in cache:
            body = {"model": "fake", "messages": [{"role": "user", "content": "benchmark"}]}
            cache[path] = _response(200, self.answer_body(Behaviour(), path, body))
        return cache[path]

    def answer_body(self, b: Behaviour, path: str, body: Any) -> bytes:
        prompt = prompt_of(body) if isinstance(body, dict) else ""
        text = b.text if b.text is not None else self.text_fn(prompt)
        if path.endswith("/chat/completions"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "finish_reason": b.finish_reason, "logprobs": None}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": b.finish_reason, "logprobs": None}
            obj = "text_completion"
        out: dict[str, Any] = {"id": f"cmpl-{self.count}", "object": obj,
                               "created": int(time.time()),
                               "model": body.get("model", "fake") if isinstance(body, dict) else "fake",
                               "choices": [choice] if b.choices else []}
        if b.usage:
            pt, ct = len(prompt) // 4 + 1, len(text) // 4 + 1 if text else 0
            out["usage"] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        return json.dumps(out).encode()


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


def _response(status: int, body: bytes, headers: tuple[tuple[str, str], ...] = (),
              content_length: int | None = None) -> bytes:
    names = {k.lower() for k, _ in headers}
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    if "content-type" not in names:
        head.append("Content-Type: application/json")
    head.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    head.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Conn(asyncio.Protocol):
    """One client connection: parse requests, answer them in order (no pipelining overlap)."""

    def __init__(self, server: FakeOpenAI):
        self.server = server
        self.buffer = bytearray()
        self.waiting: collections.deque[tuple[str, str, dict[str, str], bytes]] = collections.deque()
        self.busy = False
        self.pending_handle: asyncio.TimerHandle | None = None
        self.counted = False           # the request being answered counts as in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport     # type: ignore[assignment]
        self.server._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._conns.discard(self)
        if self.pending_handle is not None:
            self.pending_handle.cancel()
        self._done()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            size = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + size:
                return
            body = bytes(self.buffer[end + 4:end + 4 + size])
            del self.buffer[:end + 4 + size]
            self.waiting.append((method, path, headers, body))
            self._next()

    def _next(self) -> None:
        if self.busy or not self.waiting or self.transport.is_closing():
            return
        self.busy = True
        method, path, headers, raw = self.waiting.popleft()
        server = self.server
        if server.stats and method == "GET" and path.partition("?")[0].endswith("/_stats"):
            self._stats(path, headers)
            return
        if method == "POST" and path.endswith("completions"):
            server.received_n += 1
            if server.first_received is None:
                server.first_received = time.monotonic()
        server.in_flight += 1
        server.max_in_flight = max(server.max_in_flight, server.in_flight)
        self.counted = True
        if server.fixed and not server._queue and method == "POST":
            self._canned(path, headers)
            return
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if method == "GET" and path.rstrip("/").endswith("/models"):
            b = Behaviour("raw", body=json.dumps({"object": "list", "data": [
                {"id": "fake", "object": "model", "owned_by": "tests"}]}).encode())
        elif method != "POST" or not path.endswith("completions"):
            b = api_error(404, f"Unknown request URL: {method} {path}", "unknown_url")
        else:
            b = server.choose(body)
        keep_alive = headers.get("connection", "").lower() != "close"
        if server.record:
            server.requests.append(Received(len(server.requests), method, path, headers, body,
                                            time.monotonic(), b.kind))
        server.served[b.kind if b.kind != "error" else f"http {b.status}"] += 1
        if b.latency > 0:
            loop = asyncio.get_running_loop()
            self.pending_handle = loop.call_later(b.latency, self._act, b, path, body, keep_alive)
        else:
            self._act(b, path, body, keep_alive)

    def _canned(self, path: str, headers: dict[str, str]) -> None:
        """The benchmark's fast path: a prepared answer after the default latency."""
        server = self.server
        server.count += 1
        canned = server.canned(path)
        keep_alive = headers.get("connection", "").lower() != "close"
        latency = server.default_latency()
        if latency > 0:
            self.pending_handle = asyncio.get_running_loop().call_later(
                latency, self._send_canned, canned, keep_alive)
        else:
            self._send_canned(canned, keep_alive)

    def _send_canned(self, canned: bytes, keep_alive: bool) -> None:
        self.pending_handle = None
        if self.transport.is_closing():
            return
        self.transport.write(canned)
        self._answered()
        self._done()
        if not keep_alive:
            self.transport.close()
            return
        self._next()

    def _act(self, b: Behaviour, path: str, body: Any, keep_alive: bool) -> None:
        self.pending_handle = None
        t = self.transport
        if t.is_closing():
            return
        if b.kind == "hang":
            t.close()                   # gave up waiting: the client should have timed out long ago
            return
        if b.kind == "reset":
            sock = t.get_extra_info("socket")
            if sock is not None:        # linger 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            t.abort()
            return
        if b.kind == "truncated":
            full = self.server.answer_body(Behaviour(), path, body)
            t.write(_response(200, full[: len(full) // 2], content_length=len(full)))
            t.close()
            return
        if b.kind == "ok":
            payload = self.server.answer_body(b, path, body)
        else:
            payload = b.body or b""
        t.write(_response(b.status, payload, b.headers))
        if b.kind == "ok":
            self._answered()
        self._done()
        if not keep_alive:
            t.close()
            return
        self._next()

    def _stats(self, path: str, headers: dict[str, str]) -> None:
        """``GET .../_stats[?reset=1]``: the counters (then reset them); not counted as a request."""
        server = self.server
        payload = json.dumps(server.stats_dict()).encode()
        if "reset=1" in path.partition("?")[2].split("&"):
            server.reset_stats()
        self.transport.write(_response(200, payload))
        self.busy = False
        if headers.get("connection", "").lower() == "close":
            self.transport.close()
            return
        self._next()

    def _answered(self) -> None:
        server = self.server
        server.answered_n += 1
        server.last_answered = time.monotonic()

    def _done(self) -> None:
        if self.counted:
            self.counted = False
            self.server.in_flight -= 1
        self.busy = False


# -- running it --------------------------------------------------------------------------------


@contextlib.contextmanager
def serve_in_thread(server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """Run ``server`` on its own event loop in a daemon thread for the duration of the block."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:        # surfaced in the caller's thread
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=run, name="fake-openai", daemon=True)
    thread.start()
    ready.wait(10)
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--latency-min", type=float, default=None,
                        help="with --latency-max: seconds per answer drawn uniformly per request")
    parser.add_argument("--latency-max", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed of the latency draws")
    parser.add_argument("--stats", action="store_true",
                        help="answer GET /v1/_stats[?reset=1] (counters for benchmarks)")
    parser.add_argument("--record", action="store_true", help="keep every request in memory")
    parser.add_argument("--fixed", action="store_true",
                        help="one canned answer for every request (benchmarks: least server CPU)")
    parser.add_argument("--sim", action="store_true",
                        help="answer like tests/sim_teacher.py (new alpaca triples per request)")
    args = parser.parse_args()
    if (args.latency_min is None) != (args.latency_max is None):
        parser.error("--latency-min and --latency-max go together")
    extra: dict[str, Any] = {}
    if args.latency_min is not None:
        if not 0 <= args.latency_min <= args.latency_max:
            parser.error("need 0 <= --latency-min <= --latency-max")
        extra["latency_range"] = (args.latency_min, args.latency_max)
    if args.sim:
        from sim_teacher import reply      # this script's folder is on sys.path
        extra["text_fn"] = reply

    async def serve() -> None:
        server = FakeOpenAI(latency=args.latency, record=args.record, fixed=args.fixed,
                            host=args.host, port=args.port, seed=args.seed, stats=args.stats,
                            **extra)
        await server.start()
        # The benchmark reads this line to learn the port.
        print(f"LISTENING {server.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(f"SERVED {server.count} cpu_s={usage.ru_utime + usage.ru_stime:.3f} "
              f"max_in_flight={server.max_in_flight}", flush=True)
        await server.stop()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
