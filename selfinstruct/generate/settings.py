"""What a ``generate`` run is asked to do, checked before anything is touched."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from selfinstruct.errors import UsageError
from selfinstruct.publish import Publish
from selfinstruct.quality import QualitySettings
from selfinstruct.text import LANGS

# A teacher that fails this many requests in a row (wrong --base-url, server down) stops the run
# instead of turning every unit into a teacher_failed reject forever (at least 2 x concurrency).
MAX_CONSECUTIVE_FAILURES = 24
# A run whose last this-many units accepted nothing stops ("stalled: …") instead of paying forever:
# every candidate is rejected (a teacher that cannot follow the format, --turns on a model that only
# repeats itself, filters set too strict). Far beyond any dry spell of a healthy run.
STALL_UNITS = 1000
# Requests an --estimate runs before it projects the whole run (--estimate-sample).
ESTIMATE_SAMPLE = 20
# The recipe options that have a flag of their own, and the flag (for "does not apply" errors).
RECIPE_FLAGS = {"source": "--from", "rounds": "--rounds", "documents": "--documents",
                "chat_template": "--chat-template"}
# Filters a generate run leaves out unless named in --only: near-duplicate prompts are already caught
# by the ROUGE-L novelty rule on instructions.
GENERATE_DEFAULT_OFF = ("minhash",)


@dataclass
class Settings:
    num: int
    out: str
    seed_files: list[str] = field(default_factory=list)   # seed-task files (default: the project's)
    lang: str = "en"
    recipe: str = "alpaca"
    teacher: str = "embedded"
    random_seed: int = 0
    rouge_threshold: float = 0.7
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    cache: str | None = None              # response cache path; None = no cache
    teacher_options: dict[str, Any] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)      # --opt NAME=VALUE settings
    # the recipe flags the user gave (--from, --rounds, --documents, --chat-template), by option name
    recipe_options: dict[str, Any] = field(default_factory=dict)
    topics: str | None = None             # --topics FILE or "builtin"
    personas: str | None = None           # --personas FILE
    quality: QualitySettings = field(default_factory=QualitySettings)   # rules, decontam, judge
    turns: int = 1                        # assistant turns per record (--turns; > 1: conversations)
    publish: Publish = field(default_factory=Publish)       # --format, --hf-out, --push-to-hub…
    # --estimate: run a sample of this many requests (then the started units finish) and project
    # the whole run from it instead of running it
    estimate: bool = False
    estimate_sample: int = ESTIMATE_SAMPLE
    # stop starting units once this many requests were asked (the estimate's sample run); None: no cap
    sample_requests: int | None = None
    progress: bool = True

    def validate(self) -> None:
        if self.num < 1:
            raise UsageError(f"--num must be at least 1 (got {self.num})")
        if self.lang not in LANGS:
            raise UsageError(f"unknown language '{self.lang}' (choose from {', '.join(LANGS)})")
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise UsageError(f"--out {self.out} is a file; give a folder")
        if not 0 < self.rouge_threshold <= 1:
            raise UsageError(f"--rouge-threshold must be in (0, 1] (got {self.rouge_threshold})")
        if self.estimate_sample < 1:
            raise UsageError(f"--estimate-sample must be at least 1 (got {self.estimate_sample})")
        if self.turns < 1:
            raise UsageError(f"--turns must be at least 1 (got {self.turns})")
        self.quality.validate()
        self.publish.validate(turns=self.turns, out=self.out, num=self.num)

    def journal_identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues (the journal replays
        judgements, so a run judged by one model cannot be resumed with another)."""
        identity = {"recipe": self.recipe, "lang": self.lang, "teacher": self.teacher}
        judge = self.quality.judge_identity()
        if judge:
            identity["judge"] = judge
        # what the recipe works through (--from, --documents, --rounds…): unit n means one thing
        if self.recipe_options:
            identity["recipe_options"] = dict(sorted(self.recipe_options.items()))
        if self.turns != 1:
            identity["turns"] = self.turns
        return identity

    def shown(self) -> dict[str, Any]:
        """The settings as summary.json shows them (never an API key)."""
        out = {k: v for k, v in asdict(self).items()
               if k not in ("teacher_options", "progress", "quality", "publish", "estimate",
                            "estimate_sample", "sample_requests")}
        out.update(self.quality.shown())
        out.update(self.publish.shown())
        out["teacher_options"] = {k: v for k, v in self.teacher_options.items() if "key" not in k}
        out["recipe_options"] = dict(self.recipe_options)
        return out
