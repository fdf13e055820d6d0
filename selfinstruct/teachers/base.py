"""The teacher interface: one async method, ``complete(request) -> response``.

The generate loop keeps ``teacher.concurrency`` requests in flight; a teacher that works in batches
(the embedded model) gathers whatever is queued into one batch; an HTTP teacher sends them
concurrently. A teacher is one module under ``selfinstruct/teachers/`` that exposes ``TEACHER``
(a ``Teacher`` subclass); ``--teacher NAME`` imports ``selfinstruct.teachers.NAME``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


# json.dumps(d, sort_keys=True, ensure_ascii=False) with the encoder built once (dumps builds one per
# call when given options); the keys in every cache and journal already written depend on this format.
_encode_sorted = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


class BudgetExhausted(Exception):
    """Raised by ``complete`` when sending the request would exceed ``--max-cost``: the loop stops
    cleanly (writes its outputs, exit 0) instead of failing."""


@dataclass(frozen=True)
class Request:
    prompt: str                        # completion-style text; chat teachers send it as one user turn
    max_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stage: str = "instructions"        # accounting bucket: instructions | classification | instances | triples

    def key(self) -> str:
        """Identity of the request for caches and journals: everything that changes the answer.

        The sha256 of the sorted-key JSON of every field but ``stage``. Built without
        ``dataclasses.asdict`` (a deep copy that cost more than the hash) and kept on the instance:
        the journal, the cache and the loop all ask for it."""
        try:
            return self.__dict__["_key"]
        except KeyError:
            pass
        d = {"max_tokens": self.max_tokens, "prompt": self.prompt, "seed": self.seed,
             "stop": list(self.stop), "temperature": self.temperature, "top_p": self.top_p}
        key = hashlib.sha256(_encode_sorted(d).encode("utf-8")).hexdigest()[:32]
        object.__setattr__(self, "_key", key)      # frozen: the fields it hashes cannot change
        return key

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Request":
        d = dict(d)
        d["stop"] = tuple(d.get("stop") or ())
        return cls(**d)


@dataclass
class Response:
    text: str
    finish_reason: str = "stop"        # "stop" or "length" (truncated)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False               # served from a cache or the resume journal: nothing paid
    error: str | None = None           # set when the request failed for good after retries
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Response":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class Teacher:
    """Base class. Subclasses set ``name`` and implement ``complete``."""

    kind: ClassVar[str] = ""           # the --teacher name
    name: str = ""                     # e.g. "embedded:SmolLM2-135M-Instruct", "openai:gpt-4o-mini"
    concurrency: int = 1               # requests the loop should keep in flight

    async def start(self) -> None:
        """Load models, open sessions. Called once before the first request."""

    async def complete(self, request: Request) -> Response:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release sessions, threads."""

    def stats(self) -> dict[str, Any]:
        """Teacher-specific accounting for summary.json (requests, retries, cost…)."""
        return {}
