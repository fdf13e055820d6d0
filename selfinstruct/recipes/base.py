"""What a recipe is: how to build the first prompt of a unit of work, and how to run that unit.

A *unit* starts with one request built from a random sample of seed and pool tasks; everything
after that (parsing, classification check, instance requests) must depend only on the teacher's
responses, never on random state or on the pool. That makes a unit replayable: after a crash the loop
re-runs every unfinished unit from its journaled first request, the journal answers the requests that
were already paid for, and candidates already decided are not decided twice.

Decisions (``offer``, ``offer_instruction``, ``reject``) are made inside ``async with
ctx.turn(lane):`` blocks, which run in unit order: the pool and the filters then grow the same way
in every run with the same answers, so an identical rerun sends the same prompts and replays them
from the cache.

A recipe is one module under ``selfinstruct/recipes/`` (or an installed plugin's, through the
``selfinstruct.recipes`` entry points) defining a ``Recipe`` subclass whose ``name`` is the
``--recipe`` value; its options are its ``__init__``'s keyword arguments.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, AsyncContextManager, ClassVar, Protocol, Sequence

from selfinstruct.conditioning import Conditions
from selfinstruct.errors import UsageError
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request, Response, Teacher


class UnitContext(Protocol):
    """What the generate loop offers a running unit."""

    async def ask(self, request: Request) -> Response:
        """The teacher's answer (journaled; replayed from the journal on resume)."""

    def turn(self, lane: str) -> AsyncContextManager[None]:
        """A block of decisions that runs after every earlier unit's block in ``lane``."""

    async def offer(self, record: Record, key: str) -> bool:
        """Run the whole filter chain on a finished candidate; True when it was accepted."""

    async def offer_instruction(self, record: Record, key: str) -> bool:
        """Run the instruction-only filters; True when the instruction joined the pool."""

    def reject(self, record: Record, key: str, reason: str, detail: str = "") -> None:
        """Record a candidate rejected before the filters (unparseable, teacher failure)."""


class Recipe:
    name: ClassVar[str] = ""
    # True: instructions are checked by the instruction-only filters and join the pool on their own,
    # before the teacher writes their instances (offer_instruction); False: whole candidates (offer)
    two_phase: ClassVar[bool] = False

    def __init__(self, seeds: Sequence[Record], lang: str, per_request: int = 5):
        """``per_request``: new tasks asked for per first request (a teacher may ask for fewer: a
        135M model rambles after two)."""
        if per_request < 1:
            raise UsageError(f"per_request must be at least 1 (got {per_request})")
        self.seeds = list(seeds)
        self.tasks = unique_tasks(self.seeds)     # one record per seed task, for prompts
        self.lang = lang
        self.per_request = per_request

    # topics/personas drawn per unit (set by the loop; empty unless --topics/--personas)
    conditions: Conditions | None = None
    random_seed: int = 0          # the run's --seed (set by the loop), for orders fixed once per run

    def bind(self, teacher: Teacher, teacher_flags: dict[str, Any]) -> None:
        """Called once the teacher is made (``teacher_flags``: the teacher flags the user gave): a
        recipe that needs something of its teacher checks it here and raises ``UsageError``."""

    def request_for_unit(self, n: int, rng: random.Random, pool: Sequence[Record]) -> Request | None:
        """The first request of unit ``n`` (units are numbered from 0, the same across resumes), or
        None when the recipe has no more work (its sources are used up): the run then ends once
        the running units end, saying ``exhausted_reason()``."""
        return self.first_request(rng, pool)

    def exhausted_reason(self) -> str:
        return "the recipe has no more work"

    def first_request(self, rng: random.Random, pool: Sequence[Record]) -> Request:
        raise NotImplementedError

    # -- topics and personas ----------------------------------------------------------------------

    def condition(self, rng: random.Random) -> dict[str, str]:
        """The unit's topic and persona ({} when none is configured: ``rng`` is then not drawn
        from, so runs without conditioning send the prompts they always sent)."""
        return self.conditions.pick(rng) if self.conditions else {}

    def condition_text(self, picked: dict[str, str]) -> str:
        """The prompt sentence for ``picked`` in the recipe's language ("" for nothing)."""
        return self.conditions.text(picked) if self.conditions and picked else ""

    @staticmethod
    def stamp_carry(record: Record, carry: dict[str, Any] | None) -> Record:
        """Copy the unit's topic and persona into the record's metadata."""
        for name in ("topic", "persona"):
            if carry and name in carry:
                record.meta[name] = carry[name]
        return record

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


def sample_tasks(rng: random.Random, seeds: Sequence[Record], pool: Sequence[Record],
                 total: int, from_pool: int) -> list[Record]:
    """``total`` distinct tasks: up to ``from_pool`` from the pool of generated tasks, the rest
    seeds, shuffled."""
    picked = rng.sample(pool, min(from_pool, len(pool))) if pool else []
    picked += rng.sample(seeds, min(total - len(picked), len(seeds)))
    rng.shuffle(picked)
    return picked


def take_answer(record: Record, answer: Response, text: str) -> tuple[str, str] | None:
    """Make ``text`` (the answer request's reply, cleaned) the record's output, marked as answered
    separately (and truncated when the answer was cut); the reject reason and detail when the
    answer cannot be used."""
    if answer.error:
        return "teacher_failed", answer.error
    record.output = text
    record.meta["answered"] = "separately"          # the output came from the answer request
    if answer.finish_reason == "length":
        record.meta["truncated"] = True
    if not record.output:
        return "no_answer", "the answer request came back empty"
    return None
