"""The quality settings ``generate`` and ``filter`` share: the rule set, benchmark decontamination and
the LLM judge, turned into what the filter chain is built from.

The judge is off unless asked for: ``--judge`` (the generating teacher judges in ``generate``; in ``filter`` the OpenAI-compatible
endpoint the environment names), or any of ``--judge-teacher`` / ``--judge-model`` /
``--judge-base-url`` / ``--judge-min-score``, or naming it in ``--only``. Decontamination is on when
``--decontam-against`` names a file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from selfinstruct.errors import UsageError

@dataclass
class QualitySettings:
    rules: str = "default"
    decontam_against: list[str] = field(default_factory=list)
    judge: bool = False
    judge_teacher: str | None = None       # None: the generating teacher (generate), openai (filter)
    judge_model: str | None = None
    judge_base_url: str | None = None
    judge_min_score: int | None = None
    judge_concurrency: int | None = None
    judge_max_cost: float | None = None     # filter's --max-cost: what the judge may spend

    @property
    def judge_asked(self) -> bool:
        return bool(self.judge or self.judge_teacher or self.judge_model or self.judge_base_url
                    or self.judge_min_score is not None)

    def judge_identity(self) -> str | None:
        """Who judges, as a resumed run must repeat it: None without a judge; "teacher" when the
        generating teacher judges."""
        if not self.judge_asked:
            return None
        return ",".join(v for v in (self.judge_teacher, self.judge_model, self.judge_base_url) if v) or "teacher"

    def validate(self) -> None:
        if self.judge_min_score is not None and not 0 <= self.judge_min_score <= 10:
            raise UsageError(f"--judge-min-score must be between 0 and 10 (got {self.judge_min_score})")
        if self.judge_concurrency is not None and self.judge_concurrency < 1:
            raise UsageError(f"--judge-concurrency must be at least 1 (got {self.judge_concurrency})")

    def default_off(self) -> tuple[str, ...]:
        """The stages left out unless asked for: the judge unless asked, decontam without files."""
        off: list[str] = []
        if not self.judge_asked:
            off.append("judge")
        if not self.decontam_against:
            off.append("decontam")
        return tuple(off)

    def shared_options(self, rules: str) -> dict[str, Any]:
        """What every filter that declares these options gets (``build_chain``'s shared options)."""
        return {"rules": rules, "decontam_against": tuple(self.decontam_against)}

    def add_judge_options(self, given: dict) -> None:
        """Into ``given`` (``options.resolve``'s result): the judge filter's options the dedicated
        flags set; ``--opt judge.…`` wins."""
        from selfinstruct.filters.judge import DEFAULT_MIN_SCORE
        min_score = DEFAULT_MIN_SCORE if self.judge_min_score is None else self.judge_min_score
        for comp in given:
            if comp.name == "judge":
                given[comp] = {"min_score": min_score, **given[comp]}

    def shown(self) -> dict[str, Any]:
        return {"rules": self.rules, "decontam_against": list(self.decontam_against),
                "judge": {"teacher": self.judge_teacher, "model": self.judge_model,
                          "base_url": self.judge_base_url, "min_score": self.judge_min_score}
                if self.judge_asked else None}


def judge_teacher(q: QualitySettings, run_teacher=None, run_teacher_name: str | None = None):
    """The teacher that judges: the run's own when nothing names another (``generate``), else a new
    one. A model or base URL means an OpenAI-compatible server, keys from the same environment;
    ``filter`` has no teacher of its own, so there the environment's OpenAI-compatible endpoint
    judges (the embedded SmolLM2-135M cannot follow a judge's answer format)."""
    from selfinstruct.options import Component
    from selfinstruct.teachers import teacher_class

    own_endpoint = bool(q.judge_model or q.judge_base_url)
    named = q.judge_teacher or ("openai" if own_endpoint else None)
    if run_teacher is not None and named in (None, run_teacher_name) and not own_endpoint:
        if q.judge_concurrency is not None:
            raise UsageError("--judge-concurrency applies to a judge of its own (--judge-model, "
                             "--judge-base-url or --judge-teacher); the generating teacher judges "
                             "within its --concurrency")
        return run_teacher
    name = named or "openai"
    cls = teacher_class(name)
    declared = Component(cls.name, cls).options()
    flags = {"model": q.judge_model, "base_url": q.judge_base_url, "concurrency": q.judge_concurrency,
             "max_cost": q.judge_max_cost}
    kwargs = {}
    for option, value in flags.items():
        if value is None:
            continue
        if option not in declared:
            flag = "--max-cost" if option == "max_cost" else f"--judge-{option.replace('_', '-')}"
            raise UsageError(f"{flag} does not apply to the {name} judge")
        kwargs[option] = value
    return cls(**kwargs)
