"""The teacher interface: one async method, ``complete(request) -> response``.

The generate loop keeps ``teacher.concurrency`` requests in flight; a teacher that works in batches
(the embedded model) gathers whatever is queued into one batch; an HTTP teacher sends them
concurrently. A teacher is one module under ``selfinstruct/teachers/`` (or an installed plugin's,
through the ``selfinstruct.teachers`` entry points) defining a ``Teacher`` subclass with a ``name``
(the ``--teacher`` value). Its options are its ``__init__``'s keyword arguments (see
``selfinstruct.options``); the hooks the loop calls are all declared below, with their defaults.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar


# json.dumps(d, sort_keys=True, ensure_ascii=False) with the encoder built once (dumps builds one per
# call when given options); the keys in every cache and journal already written depend on this format.
_encode_sorted = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


class BudgetExhausted(Exception):
    """Raised by ``complete`` when sending the request would exceed ``--max-cost``: the loop stops
    cleanly (writes its outputs, exit 0) instead of failing."""


REQUEST_KINDS = ("text", "chat", "raw")


@dataclass(frozen=True)
class Request:
    prompt: str                        # completion-style text; chat teachers send it as one user turn
    max_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stage: str = "instructions"        # accounting bucket: instructions | classification | instances | triples | answer…
    # How a teacher sends ``prompt``: "text" (a chat endpoint wraps it as one user turn, a
    # completions endpoint and the embedded model take it as is), "chat" (through the model's chat
    # template, after ``system`` when given: an instruction-tuned model answers best so) or "raw" (a
    # raw completion even on a chat teacher: the text already holds a chat template's markup)
    kind: str = "text"
    system: str = ""
    # For kind "chat": the conversation before ``prompt`` (the last user turn), as (role, content)
    # pairs with roles "user" / "assistant", oldest first; a multi-turn record's next answer
    history: tuple[tuple[str, str], ...] = ()
    # What the recipe chose for this unit (topic, persona, parent, chunk…): journaled with the unit's
    # first request so a resumed unit gets it back; not part of the key (it changes no answer)
    carry: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    def __post_init__(self):
        if self.kind not in REQUEST_KINDS:
            raise ValueError(f"Request.kind must be one of {', '.join(REQUEST_KINDS)} (got {self.kind!r})")
        if self.history and self.kind != "chat":
            raise ValueError("Request.history is for kind 'chat' only")

    def turns(self) -> list[dict[str, str]]:
        """The chat turns of a "chat" request: the system turn, the history, then ``prompt``."""
        turns = [{"role": "system", "content": self.system}] if self.system else []
        turns += [{"role": role, "content": content} for role, content in self.history]
        turns.append({"role": "user", "content": self.prompt})
        return turns

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
        # only when not the default: the keys of every cache and journal written before stay valid
        if self.kind != "text":
            d["kind"] = self.kind
        if self.system:
            d["system"] = self.system
        if self.history:
            d["history"] = [list(turn) for turn in self.history]
        key = hashlib.sha256(_encode_sorted(d).encode("utf-8")).hexdigest()[:32]
        object.__setattr__(self, "_key", key)      # frozen: the fields it hashes cannot change
        return key

    def to_dict(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _REQUEST_FIELDS}
        d["stop"] = list(self.stop)
        d["history"] = [list(turn) for turn in self.history]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Request":
        d = {k: v for k, v in d.items() if k in _REQUEST_FIELDS}
        d["stop"] = tuple(d.get("stop") or ())
        d["history"] = tuple(tuple(turn) for turn in d.get("history") or ())
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
        d = {name: getattr(self, name) for name in _RESPONSE_FIELDS}
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Response":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


_REQUEST_FIELDS = tuple(f.name for f in fields(Request))
_RESPONSE_FIELDS = tuple(f.name for f in fields(Response))


class Teacher:
    """Base class. Subclasses set ``name`` and implement ``complete``."""

    name: ClassVar[str] = ""           # the --teacher value: "embedded", "openai"
    # Whether identical requests may be answered from the response cache (a teacher whose answers
    # are cheap to make again, or not reproducible, says False).
    uses_cache: ClassVar[bool] = True
    label: str = ""                    # what made the data, e.g. "openai:gpt-4o-mini"
    concurrency: int = 1               # requests the loop should keep in flight
    # New tasks a recipe should ask for per request; None: the recipe's own number.
    tasks_per_request: int | None = None
    # True for a small instruction-tuned model (the embedded one): recipes ask it for tasks alone and
    # each task's output separately, briefly, through its chat template
    answers_separately: bool = False

    @property
    def cache_namespace(self) -> str:
        """What besides the request decides the answer (the cache keys on it): the label, plus
        anything else that changes answers (the OpenAI teacher adds its endpoint kind)."""
        return self.label

    async def start(self) -> None:
        """Load models, open sessions. Called once before the first request."""

    async def complete(self, request: Request) -> Response:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release sessions, threads."""

    def stats(self) -> dict[str, Any]:
        """What only the teacher knows, for summary.json (retries, rate-limit pauses, batches…);
        requests and tokens are counted by the loop."""
        return {}

    def cost_usd(self) -> float:
        """What the run has paid so far."""
        return 0.0

    def retries_per_stage(self) -> dict[str, int]:
        """Attempts beyond the first, per request stage (a teacher that never retries: none)."""
        return {}

    def live(self) -> dict[str, Any]:
        """A few numbers for the progress bar."""
        return {}

    def all_down(self) -> bool:
        """Whether no endpoint this teacher sends to is healthy now. The run stops after many
        failed requests in a row only while this holds: a teacher with several endpoints moves the
        traffic of a failing one to the others and says False while any of them is up."""
        return True

    def attach(self, write: Callable[[dict[str, Any]], None], events: list[dict[str, Any]]) -> None:
        """Give the teacher the run's journal: ``write(event)`` appends an event (``{"ev":
        "teacher", ...}``; flushed before it returns) and ``events`` are the teacher events an
        earlier run into the same folder wrote, oldest first. A teacher with work that outlives a
        process (a submitted batch) journals it here before waiting on it, and picks it up again
        from ``events`` on resume instead of paying for it twice. Called before ``start``."""
