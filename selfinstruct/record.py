"""The one record type that flows through generate → filter → report → train.

Readers build ``Record``s, filters look at them, writers turn them into Alpaca JSON at the edge.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Record:
    instruction: str
    input: str = ""
    output: str = ""
    id: str = ""
    lang: str = ""                      # "en", "zh", or "" when unknown
    origin: str = ""                    # "seed", "machine", or the source "file:line"
    most_similar: str | None = None     # the most similar pool instruction when it was checked
    rouge: float | None = None          # its ROUGE-L F-measure
    teacher: str | None = None          # "embedded:SmolLM2-135M-Instruct", "openai:gpt-4o-mini", …
    request_id: str | None = None       # the teacher request this record came from
    meta: dict[str, Any] = field(default_factory=dict)  # anything else (is_classification, task id…)

    def to_alpaca(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["meta"]:
            del d["meta"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)
