"""The bootstrap loop of ``selfinstruct generate``.

It keeps ``concurrency`` units of work in flight (see ``recipes.base`` for what a unit is), runs every
candidate through the same filter chain ``selfinstruct filter`` uses, grows the pool with what it
accepts, and stops at exactly ``num`` accepted examples. Every paid response and every decision goes
to the journal before it counts; a rerun with the same ``--out`` replays the journal and continues.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import sys
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from selfinstruct import journal as jr
from selfinstruct.errors import TeacherError, UsageError
from selfinstruct.filters import FilterChain, Rejection, build_chain
from selfinstruct.record import Record
from selfinstruct.recipes import load_recipe_class
from selfinstruct.seedtasks import load_seeds
from selfinstruct.teachers import load_teacher_class
from selfinstruct.teachers.base import BudgetExhausted, Request, Response, Teacher
from selfinstruct.writers import atomic_open, reject_row, write_alpaca, write_json

LANGS = ("en", "zh")
RENDER_EVERY_S = 30.0
# A teacher that fails this many requests in a row (wrong --base-url, server down) stops the run
# instead of turning every unit into a teacher_failed reject forever.
MAX_CONSECUTIVE_FAILURES = 24
# Filters a generate run leaves out unless named in --only: near-duplicate prompts are already caught
# by the ROUGE-L novelty rule on instructions.
GENERATE_DEFAULT_OFF = ("minhash",)


@dataclass
class Settings:
    num: int
    out: str
    seeds: list[str] = field(default_factory=list)
    lang: str = "en"
    recipe: str = "alpaca"
    teacher: str = "embedded"
    seed: int = 0
    rouge_threshold: float = 0.7
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    cache: str | None = None              # response cache path; None = no cache
    teacher_options: dict[str, Any] = field(default_factory=dict)
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

    def journal_identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        return {"recipe": self.recipe, "lang": self.lang, "teacher": self.teacher}


class Run:
    """One generate run: state, the unit context offered to recipes, and the outputs."""

    def __init__(self, s: Settings, teacher: Teacher, recipe, chain: FilterChain, state: jr.JournalState,
                 journal: jr.Journal, cache=None):
        self.s, self.teacher, self.recipe, self.journal, self.cache = s, teacher, recipe, journal, cache
        self.chain = chain
        chain.on_reject = self._on_reject
        self.pre, self.post = chain.split({"instruction"})
        self.two_phase = getattr(recipe, "two_phase", False)
        self.offer_chain = self.post if self.two_phase else chain
        self.state = state
        self.accepted = len(state.accepted)
        self.records: list[Record] = list(state.accepted[: s.num])   # what data.json holds
        # records.jsonl's lines, encoded once when accepted (the renders rewrite the file whole)
        self.record_lines: list[str] = [jr.encode(jr.record_dict(r)) for r in self.records]
        self.machine: list[Record] = list(state.pooled if self.two_phase else state.accepted)
        self.rejected: Counter[str] = Counter(state.rejected)
        self.tokens: dict[str, Counter] = {}
        self.requests = Counter()
        self.failures_in_row = 0
        self.rng = random.Random(f"{s.seed}:{state.units}")
        self.next_uid = state.units
        self.stop_reason: str | None = None
        self._key: str | None = None
        self.pbar = None
        self._last_render = time.monotonic()
        self._asking = self._starting = 0        # see _refill
        self._tasks: set[asyncio.Task] = set()
        self._error: BaseException | None = None
        self._wake: asyncio.Event | None = None
        self._lane: deque[asyncio.Future] = deque()     # answers waiting for their turn (_turn)
        self._lane_wake: asyncio.Event | None = None

    # -- the UnitContext offered to recipes -------------------------------------------------------

    async def ask(self, request: Request) -> Response:
        key = request.key()
        replay = self.state.responses.get(key)
        if replay is not None:
            self.requests["replayed"] += 1
            return Response(**{**asdict(replay), "cached": True})
        self._asking += 1
        try:
            if self.cache is not None:
                from selfinstruct.cache import complete_cached
                resp = await complete_cached(self.teacher, self.cache, request)
            else:
                resp = await self.teacher.complete(request)
        finally:
            self._asking -= 1
        if resp.error:
            self.requests["failed"] += 1
            self.failures_in_row += 1
            if self.failures_in_row >= max(MAX_CONSECUTIVE_FAILURES, 2 * self.teacher.concurrency):
                raise TeacherError(f"the teacher failed {self.failures_in_row} requests in a row (last: "
                                   f"{resp.error}); check --base-url and that the server is up, then rerun "
                                   "to resume")
        else:
            self.failures_in_row = 0
            self.requests["cached" if resp.cached else "paid"] += 1
            if not resp.cached:
                tok = self.tokens.setdefault(request.stage, Counter())
                tok["prompt"] += resp.prompt_tokens
                tok["completion"] += resp.completion_tokens
            self.journal.write({"ev": "resp", "key": key, "stage": request.stage,
                                "resp": jr.response_dict(resp)})
        # A request slot just came free: the next unit's request goes out now, before this answer is
        # parsed and filtered, so the pipe stays full. A cache hit is worked on at once, as the
        # answer it stands for was: a rerun then samples every prompt from the same pool as the run
        # that paid for them (at --concurrency 1 exactly), and hits again.
        self._refill()
        if not resp.cached:
            await self._turn()
        return resp

    def offer(self, record: Record, key: str) -> bool:
        if key in self.state.decided:
            return self.state.decided[key]
        self._stamp(record, key)
        if self.accepted >= self.s.num:
            self.reject(record, key, "over_quota", f"{self.s.num} examples were already accepted")
            return False
        self._key = key
        if self.offer_chain.check(record) is not None:
            return False
        self.accepted += 1
        record.id = f"{self.s.lang}-{self.accepted:06d}"
        line = jr.encode(jr.record_dict(record))
        self.journal.write({"ev": "accept", "key": key}, record_json=line)
        self.state.decided[key] = True
        self.records.append(record)
        self.record_lines.append(line)
        if not self.two_phase:
            self.machine.append(record)
        if self.pbar is not None:
            self.pbar.update(1)
        if self.accepted >= self.s.num:
            self.stop_reason = "done"
            if self._wake is not None:
                self._wake.set()
        return True

    def offer_instruction(self, record: Record, key: str) -> bool:
        if key in self.state.decided:
            return self.state.decided[key]
        self._stamp(record, key)
        self._key = key
        if self.pre.check(record) is not None:
            return False
        self.journal.write({"ev": "pool", "key": key, "record": jr.record_dict(record)})
        self.state.decided[key] = True
        self.machine.append(record)
        return True

    def reject(self, record: Record, key: str, reason: str, detail: str = "") -> None:
        if key in self.state.decided:
            return
        self._stamp(record, key)
        self._on_reject(record, Rejection(reason, detail), key)

    # -- internals ------------------------------------------------------------------------------------

    def _stamp(self, record: Record, key: str) -> None:
        record.lang = record.lang or self.s.lang
        record.origin = record.origin or "machine"
        record.teacher = self.teacher.name
        record.request_id = key

    def _on_reject(self, record: Record, rej: Rejection, key: str | None = None) -> None:
        key = key or self._key
        self.state.decided[key] = False
        self.rejected[rej.reason] += 1
        self.journal.write({"ev": "reject", "key": key, "reason": rej.reason, "detail": rej.detail,
                            "record": jr.record_dict(record)})
        if self.pbar is not None:
            self.pbar.set_postfix_str(self._postfix(), refresh=False)

    def _postfix(self) -> str:
        rej = sum(self.rejected.values())
        top = ", ".join(f"{k} {v}" for k, v in self.rejected.most_common(2))
        live = getattr(self.teacher, "live", None)
        extra = ""
        if live is not None:
            extra = " " + " ".join(f"{k}={v}" for k, v in live().items())
        return f"rejected {rej}" + (f" ({top})" if top else "") + extra

    # -- keeping the pipe full ---------------------------------------------------------------------
    # The loop keeps ``teacher.concurrency`` requests wanted at all times: units waiting for an answer
    # (``_asking``) plus units spawned but not yet running (``_starting``). A unit that is parsing and
    # filtering an answer holds no slot, so the moment an answer arrives a new unit takes its slot,
    # instead of waiting for the whole unit (and, with many answers at once, for all of them).

    def _refill(self) -> None:
        """Spawn units until enough requests are wanted."""
        while (self._asking + self._starting < self.teacher.concurrency and self.stop_reason is None
               and self.accepted < self.s.num and self._error is None):
            self._spawn(*self._new_unit())

    async def _turn(self) -> None:
        """Wait for this answer's turn to be parsed and filtered: one answer per pass of the event
        loop, after everything else that pass had ready (new units sending, the HTTP writes,
        answers being read). When many answers land at once (the first wave, a pause), working
        through all of them before sending anything would send the next wave in one burst, and
        bursts come back as bursts: throughput would fall to waves."""
        fut = asyncio.get_running_loop().create_future()
        self._lane.append(fut)
        if self._lane_wake is not None:
            self._lane_wake.set()
        await fut

    async def _lane_keeper(self) -> None:
        while True:
            if not self._lane:
                self._lane_wake.clear()
                await self._lane_wake.wait()
            await asyncio.sleep(0)             # one pass of the loop per answer
            while self._lane:
                fut = self._lane.popleft()
                if not fut.done():             # a unit cancelled while waiting has no turn
                    fut.set_result(None)
                    break

    def _spawn(self, uid: str, first: Request, fresh: bool = True) -> None:
        if fresh:
            self._starting += 1
        task = asyncio.create_task(self._unit(uid, first, fresh))
        self._tasks.add(task)
        task.add_done_callback(self._unit_done)

    async def _unit(self, uid: str, first: Request, fresh: bool) -> None:
        if fresh:
            self._starting -= 1        # its first ask() comes in this same step: the slot stays counted
        await self.recipe.run(self, uid, first)
        self.journal.write({"ev": "end", "uid": uid})

    def _unit_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, BudgetExhausted):
            self.stop_reason = self.stop_reason or (f"max_cost: {exc}" if str(exc) else "max_cost")
        elif exc is not None and self._error is None:
            self._error = exc
        self._refill()                 # a unit answered from the journal asked for nothing
        if exc is not None or self.stop_reason is not None or not self._tasks:
            self._wake.set()

    def _new_unit(self) -> tuple[str, Request]:
        uid = f"u{self.next_uid}"
        self.next_uid += 1
        req = self.recipe.first_request(self.rng, self.machine)
        self.journal.write({"ev": "start", "uid": uid, "req": jr.request_dict(req)})
        return uid, req

    async def loop(self) -> None:
        self._wake = asyncio.Event()
        self._lane_wake = asyncio.Event()
        keeper = asyncio.create_task(self._lane_keeper())
        for uid, req in list(self.state.open_units.items()):      # finish what a crash interrupted
            self._spawn(uid, req, fresh=False)
        try:
            self._refill()
            while self.accepted < self.s.num and self.stop_reason is None and self._error is None \
                    and self._tasks:
                wait = self._last_render + RENDER_EVERY_S - time.monotonic()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(wait, 0.0))
                except asyncio.TimeoutError:
                    self.render()          # a peek at data.json while it runs; rejects come at the end
                self._wake.clear()
            if self._error is not None:
                raise self._error
        finally:
            tasks = list(self._tasks) + [keeper]
            for t in tasks:
                t.cancel()
            # collect every exception so none is reported as "never retrieved"; the first one that
            # stopped the loop is already propagating
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- outputs ----------------------------------------------------------------------------------------

    def render(self, started: float | None = None, final: bool = False) -> dict[str, Any]:
        """data.json, records.jsonl and summary.json (and, at the end, rejects.jsonl rendered from the
        journal), each replaced atomically."""
        out = self.s.out
        if final:
            with atomic_open(os.path.join(out, "rejects.jsonl")) as rf:
                for ev in jr.iter_events(self.journal.path, kinds=("reject",)):
                    rf.write(reject_row(ev["record"], ev["reason"], ev["detail"], source=ev["key"]))
        write_alpaca(os.path.join(out, "data.json"), self.records)
        with atomic_open(os.path.join(out, "records.jsonl")) as f:
            for line in self.record_lines:
                f.write(line + "\n")
        summary = self.summary(len(self.records), started)
        write_json(os.path.join(out, "summary.json"), summary)
        self._last_render = time.monotonic()
        return summary

    def summary(self, accepted: int, started: float | None) -> dict[str, Any]:
        tokens = {st: dict(c) for st, c in self.tokens.items()}
        total = Counter()
        for c in self.tokens.values():
            total.update(c)
        return {
            "requested": self.s.num,
            "accepted": accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "stopped": self.stop_reason or ("done" if accepted >= self.s.num else "interrupted"),
            "tokens": {"prompt": total["prompt"], "completion": total["completion"], "per_stage": tokens},
            "requests": dict(self.requests),
            "elapsed_seconds": round(time.monotonic() - started, 2) if started else None,
            "filter_seconds_per_stage": {k: round(v, 3) for k, v in
                                         (self.chain.seconds + self.pre.seconds + self.post.seconds).items()},
            "teacher": {"name": self.teacher.name, **self.teacher.stats()},
            "settings": {k: v for k, v in asdict(self.s).items() if k not in ("teacher_options", "progress")}
            | {"teacher_options": {k: v for k, v in self.s.teacher_options.items() if "key" not in k}},
        }


def open_journal(s: Settings) -> tuple[jr.Journal, jr.JournalState]:
    os.makedirs(s.out, exist_ok=True)
    path = os.path.join(s.out, jr.FILENAME)
    if os.path.exists(path):
        state = jr.load(path)
        if state.header and state.header != s.journal_identity():
            have = " ".join(f"--{k} {v}" for k, v in state.header.items())
            raise UsageError(f"{s.out} holds a run made with {have}; rerun with those options or "
                             "choose another --out")
        journal = jr.Journal(path)
        if state.header is None:
            journal.write({"ev": "header", "settings": s.journal_identity()})
        return journal, state
    if os.path.exists(os.path.join(s.out, "data.json")):
        raise UsageError(f"{s.out} has a data.json but no {jr.FILENAME}: refusing to overwrite it; "
                         "choose another --out")
    journal = jr.Journal(path)
    journal.write({"ev": "header", "settings": s.journal_identity()})
    return journal, jr.JournalState()


def build(s: Settings):
    """Validate everything that can be wrong with the input before touching --out."""
    s.validate()
    recipe_cls = load_recipe_class(s.recipe)
    teacher_cls = load_teacher_class(s.teacher)
    seeds = load_seeds(s.seeds, s.lang)
    chain = build_chain(only=s.only, skip=s.skip, default_off=GENERATE_DEFAULT_OFF,
                        options={"rouge_threshold": s.rouge_threshold, "lang": s.lang})
    teacher = teacher_cls(**s.teacher_options)
    return recipe_cls(seeds, s.lang), teacher, seeds, chain


async def run_async(s: Settings, teacher: Teacher | None = None) -> dict[str, Any]:
    recipe, built_teacher, seeds, chain = build(s)
    teacher = teacher or built_teacher
    recipe.per_request = getattr(teacher, "tasks_per_request", recipe.per_request)
    journal, state = open_journal(s)
    cache = None
    if s.cache:
        from selfinstruct.cache import ResponseCache
        cache = ResponseCache(s.cache)
    started = time.monotonic()
    # The pool: seeds first, then what earlier runs into this folder accepted.
    chain.seed(seeds)
    run = Run(s, teacher, recipe, chain, state, journal, cache)
    if run.two_phase:
        run.pre.seed(state.pooled)
        run.post.seed(state.accepted)
    else:
        chain.seed(state.accepted)
    try:
        if run.accepted < s.num:
            await teacher.start()
            run.pbar = _progress(s, run.accepted)
            try:
                with _fewer_gc_pauses():
                    await run.loop()
            except BaseException as e:
                # stopped by an error or Ctrl-C: show what there is (the journal has all of it)
                run.stop_reason = run.stop_reason or f"error: {type(e).__name__}"
                try:
                    run.render(started, final=True)
                except Exception:
                    pass
                raise
            finally:
                await teacher.aclose()
                if run.pbar is not None:
                    run.pbar.set_postfix_str(run._postfix())
                    run.pbar.close()
        return run.render(started, final=True)
    finally:
        journal.close()
        if cache is not None:
            cache.close()


@contextmanager
def _fewer_gc_pauses():
    """While the loop runs: the objects made before it (modules, seeds, the resumed pool) are moved
    out of the collector's sight (gc.freeze) and the youngest generation is collected 30x less often.
    Every request allocates a few hundred container objects; with the default thresholds the
    collector took ~6% of the loop's CPU and paused it up to 0.1 s at a time, long enough for every
    request in flight to come back while nothing new was sent."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _progress(s: Settings, initial: int):
    if not s.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=s.num, initial=initial, unit="ex", desc="generate", file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def run_generate(s: Settings, teacher: Teacher | None = None) -> dict[str, Any]:
    return asyncio.run(run_async(s, teacher))
