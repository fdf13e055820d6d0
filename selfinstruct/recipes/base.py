"""What a recipe is: how to build the first prompt of a unit of work, and how to run that unit.

A *unit* starts with one request built from a random sample of seed and machine tasks; everything
after that (parsing, classification check, instance requests) must depend only on the teacher's
responses, never on random state or on the pool. That makes a unit replayable: after a crash the loop
re-runs every unfinished unit from its journaled first request, the journal answers the requests that
were already paid for, and candidates already decided are not decided twice.

A recipe is one module under ``selfinstruct/recipes/`` exposing ``RECIPE`` (``--recipe self-instruct``
imports ``selfinstruct.recipes.self_instruct``).
"""
from __future__ import annotations

import hashlib
import random
from typing import ClassVar, Protocol, Sequence

from selfinstruct.record import Record
from selfinstruct.teachers.base import Request, Response


class UnitContext(Protocol):
    """What the generate loop offers a running unit."""

    async def ask(self, request: Request) -> Response:
        """The teacher's answer (journaled; replayed from the journal on resume)."""

    def offer(self, record: Record, key: str) -> bool:
        """Run the whole filter chain on a finished candidate; True when it was accepted."""

    def offer_instruction(self, record: Record, key: str) -> bool:
        """Run the instruction-only filters; True when the instruction joined the pool."""

    def reject(self, record: Record, key: str, reason: str, detail: str = "") -> None:
        """Record a candidate rejected before the filters (unparseable, teacher failure)."""


class Recipe:
    name: ClassVar[str] = ""
    # new tasks asked for per first request; teachers may lower it (a 135M model rambles after two)
    per_request: int = 5
    # True: instructions are checked by the instruction-only filters and join the pool on their own,
    # before the teacher writes their instances (offer_instruction); False: whole candidates (offer)
    two_phase: ClassVar[bool] = False

    def __init__(self, seeds: Sequence[Record], lang: str):
        self.seeds = list(seeds)
        self.tasks = unique_tasks(self.seeds)     # one record per seed task, for prompts
        self.lang = lang

    def first_request(self, rng: random.Random, machine: Sequence[Record]) -> Request:
        raise NotImplementedError

    async def run(self, ctx: UnitContext, uid: str, first: Request) -> None:
        raise NotImplementedError


def stable_seed(*parts: str) -> int:
    """A sampling seed derived from text, so that replayed requests are identical."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:4], "big")


def unique_tasks(seeds: Sequence[Record]) -> list[Record]:
    """One record per seed task (seed files hold several instances per task)."""
    seen, out = set(), []
    for r in seeds:
        if r.instruction not in seen:
            seen.add(r.instruction)
            out.append(r)
    return out


def sample_tasks(rng: random.Random, seeds: Sequence[Record], machine: Sequence[Record],
                 total: int, from_machine: int) -> list[Record]:
    """``total`` distinct tasks: up to ``from_machine`` from the machine pool, the rest seeds, shuffled."""
    picked = rng.sample(machine, min(from_machine, len(machine))) if machine else []
    picked += rng.sample(seeds, min(total - len(picked), len(seeds)))
    rng.shuffle(picked)
    return picked
