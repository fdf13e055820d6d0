"""What a teacher has sent, received and spent, per stage; and the ``max_cost`` guard.

The guard reserves each request's worst-case cost (estimated prompt + max_tokens) while it is in
flight, so a full pool of concurrent requests cannot jointly overshoot the budget: a request waits
while in-flight reservations might crowd it out, and ``BudgetExhausted`` is raised only when what is
already *spent* leaves no room for it.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from selfinstruct.teachers.base import BudgetExhausted


@dataclass
class StageCounts:
    requests: int = 0               # answers returned (successful or failed after retries)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0                # attempts beyond the first
    failures: int = 0               # answers returned with ``error`` set
    rejected: int = 0               # final 4xx refusals (raised as TeacherError)
    truncated: int = 0              # finish_reason "length"
    usage_estimated: int = 0        # answers whose token counts are estimates (server sent no usage)
    cost_usd: float = 0.0


class Accounting:
    def __init__(self, price_in: float, price_out: float, max_cost: float | None):
        self.price_in, self.price_out, self.max_cost = price_in, price_out, max_cost
        self.stages: dict[str, StageCounts] = {}
        self.spent = 0.0
        self._reserved = 0.0
        self._settled = asyncio.Event()
        self._started = time.monotonic()

    def start(self) -> None:
        self._started = time.monotonic()
        self._settled = asyncio.Event()

    def stage(self, name: str) -> StageCounts:
        counts = self.stages.get(name)
        if counts is None:
            counts = self.stages[name] = StageCounts()
        return counts

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1_000_000

    # -- the max_cost guard -------------------------------------------------------------------
    async def reserve(self, estimate: float) -> None:
        if self.max_cost is None:
            return
        while True:
            if self.spent + estimate > self.max_cost:
                raise BudgetExhausted(
                    f"max cost ${self.max_cost:.4f} reached: ${self.spent:.4f} spent, the next "
                    f"request may cost up to ${estimate:.4f}")
            if self.spent + self._reserved + estimate <= self.max_cost:
                self._reserved += estimate
                return
            await self._settled.wait()      # an in-flight request settles, then look again

    def release(self, estimate: float) -> None:
        if self.max_cost is None:
            return
        self._reserved = max(0.0, self._reserved - estimate)
        self._settled.set()
        self._settled = asyncio.Event()

    # -- counting ---------------------------------------------------------------------------
    def answered(self, stage: str, prompt_tokens: int, completion_tokens: int, *,
                 truncated: bool = False, estimated: bool = False) -> None:
        counts = self.stage(stage)
        cost = self.cost(prompt_tokens, completion_tokens)
        counts.requests += 1
        counts.prompt_tokens += prompt_tokens
        counts.completion_tokens += completion_tokens
        counts.cost_usd += cost
        counts.truncated += truncated
        counts.usage_estimated += estimated
        self.spent += cost

    def failed(self, stage: str) -> None:
        counts = self.stage(stage)
        counts.requests += 1
        counts.failures += 1

    def retried(self, stage: str) -> None:
        self.stage(stage).retries += 1

    def rejected(self, stage: str) -> None:
        self.stage(stage).rejected += 1

    # -- reporting --------------------------------------------------------------------------
    def totals(self) -> dict[str, Any]:
        total = StageCounts()
        for counts in self.stages.values():
            for name, value in asdict(counts).items():
                setattr(total, name, getattr(total, name) + value)
        out = asdict(total)
        out["tokens"] = total.prompt_tokens + total.completion_tokens
        out["cost_usd"] = round(total.cost_usd, 6)
        out["per_stage"] = {name: {**asdict(c), "cost_usd": round(c.cost_usd, 6)}
                            for name, c in sorted(self.stages.items())}
        return out

    def live(self) -> dict[str, Any]:
        """A few numbers for a progress bar."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        requests = sum(c.requests for c in self.stages.values())
        tokens = sum(c.prompt_tokens + c.completion_tokens for c in self.stages.values())
        return {"req_s": round(requests / elapsed, 2), "tok_s": round(tokens / elapsed, 1),
                "cost_usd": round(self.spent, 4),
                "failures": sum(c.failures for c in self.stages.values()),
                "retries": sum(c.retries for c in self.stages.values())}
