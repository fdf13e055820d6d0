"""The one record type that flows through generate → filter → train.

Readers build ``Record``s, filters look at them, writers turn them into Alpaca JSON at the edge.
``to_dict`` / ``from_dict`` are its one serialisation (records.jsonl, rejects.jsonl, the journal).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Record:
    instruction: str
    input: str = ""
    output: str = ""
    id: str = ""
    lang: str = ""                      # "en", "zh", or "" when unknown
    origin: str = ""                    # "seed", "machine", or the source "file:line"
    source: str = ""                    # "file:line" where it was first read ("" if never read)
    most_similar: str | None = None     # the most similar pool instruction when it was checked
    rouge: float | None = None          # its ROUGE-L F-measure
    nearest_seed: str | None = None     # the most similar seed instruction (the report's figure)
    nearest_seed_rouge: float | None = None
    judge_score: int | None = None      # the LLM judge's 1-10 score, when judged
    judge_reason: str | None = None     # its one-line reason
    teacher: str | None = None          # "embedded:SmolLM2-135M-Instruct", "openai:gpt-4o-mini", …
    request_id: str | None = None       # the teacher request this record came from
    meta: dict[str, Any] = field(default_factory=dict)  # anything else (is_classification, task id…)
    # A conversation: [{"role": "system"|"user"|"assistant", "content": str}, …], the whole of it.
    # None for single-turn data. When set, the first user turn is the instruction (then the input after
    # a blank line, when there is one) and output mirrors the first assistant turn, so every rule
    # written for Alpaca records reads the first exchange. (A file of conversations read back has
    # input "": its first user turn is the instruction.)
    messages: list[dict[str, str]] | None = None

    @property
    def where(self) -> str:
        """The place to cite for this record: the ``file:line`` it was first read from, else its
        origin ("machine", "seed"); records.jsonl keeps ``origin`` as generate wrote it."""
        return self.source or self.origin

    @classmethod
    def from_messages(cls, messages: list[dict[str, str]], **fields_) -> "Record":
        """A record holding ``messages``, with instruction/output taken from its first exchange."""
        first_user = next((m["content"] for m in messages if m["role"] == "user"), "")
        first_reply = next((m["content"] for m in messages if m["role"] == "assistant"), "")
        return cls(instruction=first_user, output=first_reply, messages=list(messages), **fields_)

    def conversation(self) -> list[dict[str, str]]:
        """The record as chat turns: its ``messages``, else one user turn (the instruction, then the
        input after a blank line) and the assistant's output."""
        if self.messages is not None:
            return self.messages
        user = self.instruction + (f"\n\n{self.input}" if self.input.strip() else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": self.output}]

    @property
    def turns(self) -> int:
        """Assistant turns: 1 for single-turn data."""
        if self.messages is None:
            return 1
        return sum(m["role"] == "assistant" for m in self.messages)

    def to_alpaca(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}

    def to_dict(self) -> dict[str, Any]:
        """Every field, ``meta`` only when it holds something. Shallow (the values are strings,
        numbers and a JSON-ready ``meta``): dataclasses.asdict's deep copy cost the generate loop
        more CPU per request than its HTTP client."""
        d = {name: getattr(self, name) for name in _FIELDS}
        if self.meta:
            d["meta"] = dict(self.meta)
        else:
            del d["meta"]
        if self.messages is None:          # single-turn records serialise as they always have
            del d["messages"]
        else:
            d["messages"] = [dict(m) for m in self.messages]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


_FIELDS = tuple(f.name for f in fields(Record))
