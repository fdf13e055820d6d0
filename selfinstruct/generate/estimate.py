"""``generate --estimate``: see the bill before paying it.

The estimate runs the real thing, only less of it. The run is built exactly as ``generate`` would
build it (recipe, seeds, filters, teacher, judge, response cache) and run with
``Settings.sample_requests = --estimate-sample``: once that many requests were asked no unit starts
any more, the started ones finish, and the sample run stops (``stopped: "sampled: N requests"``).
It runs in a temporary folder, never in OUT: the real run must start fresh (or resume what OUT
holds). Its answers go to the same response cache, and since every prompt is a function of the
settings and the answers, the real run asks the same first requests and replays them from the cache.

What the sample is measured with: the run's teacher is wrapped (``_SampleTeacher``), which sees every
request a unit asks (the unit is the scheduler's ``current_unit``), with its tokens, and times each
request it pays for. The wrapper answers from the response cache itself (and tells the run it uses
none) because a cache hit never reaches a teacher: the tokens of a request an earlier run already
paid for still belong in the projection of a run that asks new ones. The candidates and accepted
records of each unit come from the sample's journal.

The projection is per unit of work (one first request and everything that follows from it): with
``A`` records accepted over the sample's units and ``X`` of some quantity (requests, prompt or
completion tokens, USD), the run needs ``remaining / (A / units)`` units and so ``remaining * X / A``
of it. The 90% intervals come from a seeded bootstrap over the sample's units (resampled with
replacement, the 5th and 95th percentiles), so they are as wide as the sample's spread between units
says; they cover sampling noise only, not drift later in the run: the sample sees the run's first
units, whose prompts show mostly seed tasks and whose candidates meet a small pool (the ROUGE-L
novelty rule rejects more as the pool grows). The last wave is added on top (``_with_tail``): the
units under way when the last record is accepted. Wall time is the slowest of the measured latency
at ``concurrency`` requests in flight and the rpm / tpm limits, plus the startup.

A folder that already holds part of a run is estimated for what remains (``--num`` minus what it
accepted): the sample resumes from a copy of its journal, so it asks the requests the resumed run
will ask. A finished run is refused (nothing remains).
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any, TextIO

import numpy as np

from selfinstruct import journal as jr
from selfinstruct.errors import UsageError
from selfinstruct.generate.context import current_unit, unit_number
from selfinstruct.generate.settings import Settings
from selfinstruct.publish import Publish
# cost_usd_batch: what --batch charges for the same tokens (OpenAI's Batch API discount), the
# factor the batch path itself prices at
from selfinstruct.teachers._batch import BATCH_PRICE_FACTOR
from selfinstruct.teachers.base import Request, Response
from selfinstruct.writers import write_json

FILENAME = "estimate.json"
# Bootstrap resamples and their seed: 2000 draws put the 5th/95th percentiles within a few tenths
# of a percent of where more draws would, in well under a second for any sample size we take; the
# seed makes the same sample always give the same interval.
RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LOW_Q, HIGH_Q = 0.05, 0.95        # a 90% interval
Z_90 = 1.6448536269514722         # the standard normal's 95th percentile (a two-sided 90% interval)
# The projected quantities, in the order estimate.json and the table show them.
PROJECTED = ("requests", "prompt_tokens", "completion_tokens", "acceptance_rate", "cost_usd",
             "cost_usd_batch", "wall_seconds")


# -- measuring the sample ----------------------------------------------------------------------


@dataclass
class UnitSample:
    """What one unit of the sample asked and got."""
    requests: int = 0             # asked: from the cache or paid
    paid: int = 0                 # sent to the teacher (timed)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0        # sum over the paid requests
    candidates: int = 0
    accepted: int = 0


class _SampleTeacher:
    """The run's teacher, measured: every attribute and hook is the wrapped teacher's, except that
    ``complete`` answers from the response cache itself (as ``cache.complete_cached`` would; hits
    carry their tokens too) and records, per unit, what was asked, the tokens and how long each paid
    request took; ``start`` is timed (model load)."""

    uses_cache = False        # the run opens no cache of its own: this wrapper holds it

    def __init__(self, inner, cache):
        """``cache``: the run's ResponseCache (``run.open_cache``), or None; closed by ``aclose``."""
        self._inner = inner
        self._cache = cache
        self._reuses = cache is not None
        self._slots: asyncio.Semaphore | None = None     # made in the run's event loop
        self.units: dict[int, UnitSample] = {}
        self.startup_s = 0.0

    def __getattr__(self, name: str):
        # only reached for what this class does not define: the wrapped teacher's attributes
        return getattr(self._inner, name)

    @property
    def inner(self):
        return self._inner

    @property
    def reuses_answers(self) -> bool:
        """Whether the sample's answers went to the response cache (the real run replays them)."""
        return self._reuses

    async def start(self) -> None:
        t0 = time.perf_counter()
        await self._inner.start()
        self.startup_s += time.perf_counter() - t0

    async def complete(self, request: Request) -> Response:
        from selfinstruct.cache import ResponseCache

        key = ResponseCache.key_for(request, self._inner) if self._cache is not None else None
        resp = self._cache.get(key) if key is not None else None
        unit = self.units.setdefault(current_unit.get(-1), UnitSample())
        if resp is None:
            # Timed from the moment the request may go out: a recipe that asks several requests of
            # a unit at once may have more than `concurrency` waiting, and the wall time projects
            # `concurrency` requests of this latency at a time, not their wait for a slot.
            if self._slots is None:
                self._slots = asyncio.Semaphore(max(1, int(self._inner.concurrency)))
            async with self._slots:
                t0 = time.perf_counter()
                resp = await self._inner.complete(request)
                unit.latency_s += time.perf_counter() - t0
            unit.paid += 1
            if key is not None:
                self._cache.put(key, request, resp, self._inner.label)
        unit.requests += 1
        unit.prompt_tokens += resp.prompt_tokens
        unit.completion_tokens += resp.completion_tokens
        return resp

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self.close_cache()

    def close_cache(self) -> None:
        if self._cache is not None:
            self._cache.close()         # writes the pending puts: the real run finds them
            self._cache = None


# -- the projection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What the whole run's wall time is bounded by: requests in flight, and the rate limits."""
    concurrency: int
    rpm: float | None = None
    tpm: float | None = None
    startup_s: float = 0.0        # paid once (the sample's model load / session start)


def project(units: list[UnitSample], remaining: int, price_in: float, price_out: float,
            limits: Limits) -> tuple[dict[str, dict[str, float | None] | None], list[str]]:
    """The projected totals of a run that still has to accept ``remaining`` records, each
    ``{"value", "low", "high"}`` (a 90% bootstrap interval over ``units``), and the warnings.
    ``None`` (in JSON ``null``) wherever the sample cannot say: never infinity, never NaN."""
    warnings: list[str] = []
    cols = _columns(units, price_in, price_out)
    candidates, accepted = cols["candidates"].sum(), cols["accepted"].sum()
    draws = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(units), size=(RESAMPLES, len(units))) \
        if units else np.zeros((RESAMPLES, 0), dtype=int)
    resampled = {name: col[draws].sum(axis=1) for name, col in cols.items()}

    rate = float(accepted / candidates) if candidates else 0.0
    rates = np.divide(resampled["accepted"], resampled["candidates"],
                      out=np.zeros(RESAMPLES), where=resampled["candidates"] > 0)
    out: dict[str, Any] = {name: None for name in PROJECTED}
    out["acceptance_rate"] = _widened(_interval(rate, rates), _wilson(int(accepted), int(candidates)))
    if accepted == 0:
        warnings.append(f"the sample accepted nothing ({int(candidates)} candidates from {len(units)} "
                        "units): no projection; see the sample's rejects by running a small --num")
        return out, warnings

    # remaining * X / A for each quantity; a resample that accepted nothing needs infinitely much
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(resampled["accepted"] > 0, remaining / resampled["accepted"], np.inf)
    totals = {}
    for name in ("requests", "prompt_tokens", "completion_tokens", "cost_usd"):
        value = remaining * float(cols[name].sum()) / float(accepted)
        totals[name] = (value, _times(resampled[name], scale))
    for name, (value, draws_of) in totals.items():
        out[name] = _with_tail(_interval(value, draws_of), name, cols, limits.concurrency)
    # the cost's value from the token values, so that it is exactly tokens x prices; its interval
    # from the resampled per-unit costs (the two token counts move together)
    out["cost_usd"] = _contain(_cost(out["prompt_tokens"]["value"], out["completion_tokens"]["value"],
                                     price_in, price_out), out["cost_usd"])
    out["cost_usd_batch"] = {k: None if v is None else v * BATCH_PRICE_FACTOR for k, v in out["cost_usd"].items()}
    out["wall_seconds"] = _wall(cols, resampled, totals, limits, warnings)
    for name in PROJECTED:
        if out[name] is not None and out[name]["high"] is None:
            warnings.append(f"{name}: the sample is too small to bound it from above (some resamples "
                            "accepted nothing); raise --estimate-sample")
    return out, warnings


def _wilson(successes: int, n: int) -> tuple[float, float]:
    """The 90% Wilson score interval of a proportion (0..1 when nothing was tried)."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, Z_90 ** 2
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_90 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def _widened(cell: dict[str, float | None], bounds: tuple[float, float]) -> dict[str, float | None]:
    """A bootstrap over units cannot see a rate it never sampled: when every candidate of the sample
    was accepted (or none), each resample says the same and the interval collapses to a point. The
    Wilson interval of the candidates still bounds it, so the rate's interval spans both."""
    low, high = bounds
    return {"value": cell["value"], "low": min(cell["low"], low), "high": max(cell["high"], high)}


def _with_tail(cell: dict[str, float | None], name: str, cols: dict[str, np.ndarray],
               concurrency: int) -> dict[str, float | None]:
    """The last wave: when the last record the run needs is accepted, later units are under way
    (the scheduler runs up to 2 x concurrency units ahead of the oldest unfinished one), and those
    already answered were paid for; those still in flight when it stops are not. How many were
    answered depends on the latency against the loop's own work, so the value counts half a pipe
    (``concurrency / 2`` units at the sample's mean per unit) and the interval runs from none to
    the scheduler's bound of ``2 x concurrency`` units."""
    per_unit = float(cols[name].mean()) if len(cols[name]) else 0.0
    low, value, high = cell["low"], cell["value"], cell["high"]
    return {"value": value + concurrency / 2 * per_unit, "low": low,
            "high": None if high is None else high + 2 * concurrency * per_unit}


def _columns(units: list[UnitSample], price_in: float, price_out: float) -> dict[str, np.ndarray]:
    cols = {name: np.array([getattr(u, name) for u in units], dtype=float)
            for name in ("requests", "paid", "prompt_tokens", "completion_tokens", "latency_s",
                         "candidates", "accepted")}
    cols["cost_usd"] = _cost(cols["prompt_tokens"], cols["completion_tokens"], price_in, price_out)
    cols["tokens"] = cols["prompt_tokens"] + cols["completion_tokens"]
    return cols


def _cost(prompt_tokens, completion_tokens, price_in: float, price_out: float):
    """USD for these tokens at prices in USD per 1M tokens."""
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000


def _times(sums: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``sums * scale`` where a zero sum times an infinite scale is 0 (nothing of it, however
    many units), not NaN."""
    with np.errstate(invalid="ignore"):
        return np.where(sums == 0, 0.0, sums * scale)


def _wall(cols, resampled, totals, limits: Limits, warnings: list[str]) -> dict[str, float | None] | None:
    """max(requests x mean latency / concurrency, requests / rpm x 60, tokens / tpm x 60) plus the
    startup: the run is held back by whichever of the three is slowest."""
    paid = cols["paid"].sum()
    bounded_by_limits = limits.rpm is not None or limits.tpm is not None
    if paid == 0 and not bounded_by_limits:
        warnings.append("every request of the sample came from the cache: no latency was measured, "
                        "so no wall time is projected (--no-cache, or another --out's sample, measures it)")
        return None
    mean_latency = float(cols["latency_s"].sum() / paid) if paid else 0.0
    # a resample without a paid request keeps the whole sample's mean latency
    latencies = np.divide(resampled["latency_s"], resampled["paid"], out=np.full(RESAMPLES, mean_latency),
                          where=resampled["paid"] > 0)
    requests_value, requests_draws = totals["requests"]
    tokens_value = totals["prompt_tokens"][0] + totals["completion_tokens"][0]
    tokens_draws = totals["prompt_tokens"][1] + totals["completion_tokens"][1]

    def seconds(requests, tokens, latency):
        s = requests * latency / limits.concurrency
        if limits.rpm is not None:
            s = np.maximum(s, requests / limits.rpm * 60)
        if limits.tpm is not None:
            s = np.maximum(s, tokens / limits.tpm * 60)
        return s + limits.startup_s

    with np.errstate(invalid="ignore"):
        draws = seconds(requests_draws, tokens_draws, latencies)
    return _interval(float(seconds(requests_value, tokens_value, mean_latency)), np.nan_to_num(draws, nan=np.inf))


def _interval(value: float, draws: np.ndarray) -> dict[str, float | None]:
    """``{"value", "low", "high"}``: the bootstrap's 5th and 95th percentiles (nearest rank, so an
    infinite draw never turns into NaN). A percentile interval need not contain the point estimate
    when the resampled ratio is skewed; it is widened to contain it, since a range that excludes the
    number printed next to it reads as a bug. An unbounded end is None."""
    ordered = np.sort(np.asarray(draws, dtype=float))
    if len(ordered) == 0:
        return {"value": value, "low": value, "high": value}
    low = float(ordered[int(math.floor(LOW_Q * (len(ordered) - 1)))])
    high = float(ordered[int(math.ceil(HIGH_Q * (len(ordered) - 1)))])
    return _contain(value, {"low": low if math.isfinite(low) else None,
                            "high": high if math.isfinite(high) else None})


def _contain(value: float, cell: dict[str, float | None]) -> dict[str, float | None]:
    """``cell``'s interval around ``value``, widened to contain it (None: unbounded)."""
    low, high = cell["low"], cell["high"]
    return {"value": value, "low": None if low is None else min(low, value),
            "high": None if high is None else max(high, value)}


# -- running the sample ----------------------------------------------------------------------------


def _already(s: Settings) -> int:
    """Records OUT already holds (0 for a fresh folder); refuses what the real run would refuse, and a
    finished run (nothing remains to estimate)."""
    path = os.path.join(s.out, jr.FILENAME)
    if not os.path.exists(path):
        written = [n for n in ("data.json", "data.jsonl") if os.path.exists(os.path.join(s.out, n))]
        if written:
            raise UsageError(f"{s.out} has a {written[0]} but no {jr.FILENAME}: the run would refuse to "
                             "overwrite it; choose another --out")
        return 0
    state = jr.load(path)
    if state.header and state.header != s.journal_identity():
        have = " ".join(f"--{k} {v}" for k, v in state.header.items())
        raise UsageError(f"{s.out} holds a run made with {have}; rerun with those options or choose "
                         "another --out")
    if len(state.accepted) >= s.num:
        raise UsageError(f"{s.out} already holds a finished run ({min(len(state.accepted), s.num)}/{s.num} "
                         "examples): nothing left to estimate; raise --num or choose another --out")
    return len(state.accepted)


def _sample_settings(s: Settings, folder: str) -> Settings:
    """The real run's settings, into ``folder``, stopping after the sample; nothing published, no
    progress bar; online even for --batch (a batch may take a day; the cache key is the same, so
    the batch run replays the sample too)."""
    teacher_options = {k: v for k, v in s.teacher_options.items() if k != "batch"}
    return replace(s, out=folder, publish=Publish(), progress=False, estimate=False,
                   sample_requests=s.estimate_sample, teacher_options=teacher_options)


def _units_of(journal_path: str, offset: int, measured: dict[int, UnitSample]) -> list[UnitSample]:
    """The sample's units (those it started, after ``offset`` bytes of a copied journal), with
    their candidates and accepted records; over_quota rejects are no candidates (the quota, not
    the candidate, decided)."""
    units: dict[int, UnitSample] = {}
    with open(journal_path, "rb") as f:
        f.seek(offset)
        tail = f.read()
    for raw in tail.split(b"\n"):
        if not raw.strip():
            continue
        ev = json.loads(raw)
        kind = ev.get("ev")
        if kind == "start":
            n = unit_number(ev["uid"])
            units[n] = measured.get(n, UnitSample())
        elif kind in ("accept", "reject") and unit_number(ev["key"]) in units:
            if kind == "reject" and ev.get("reason") == "over_quota":
                continue
            unit = units[unit_number(ev["key"])]
            unit.candidates += 1
            unit.accepted += kind == "accept"
    return [units[n] for n in sorted(units)]


@dataclass
class Sample:
    """What the sample run did: its units, measured; the teacher (wrapped); its summary."""
    units: list[UnitSample]
    teacher: _SampleTeacher
    summary: dict[str, Any]
    seconds: float            # the sample run, start to end
    began: float              # when it began (time.monotonic())


def run_estimate(s: Settings, started: float | None = None) -> dict[str, Any]:
    """Run the sample, project the whole run, write OUT/estimate.json (and nothing else into OUT)
    and return it. ``started``: when the command started (``time.monotonic()``)."""
    started = time.monotonic() if started is None else started
    s.validate()
    already = _already(s)
    sample = _run_sample(s)
    estimate = _estimate(s, sample, already, started)
    _write(s.out, estimate)
    return estimate


def _run_sample(s: Settings) -> Sample:
    """The run, built as the real one, into a temporary folder (resuming a copy of OUT's journal when
    there is one), until the sample's requests were asked and its started units ended."""
    from selfinstruct.generate.run import build, open_cache, run_async

    with tempfile.TemporaryDirectory(prefix="selfinstruct-estimate-") as folder:
        sample_s = _sample_settings(s, folder)
        offset = 0
        if os.path.exists(os.path.join(s.out, jr.FILENAME)):
            copied = os.path.join(folder, jr.FILENAME)
            shutil.copyfile(os.path.join(s.out, jr.FILENAME), copied)
            jr.repair(copied)
            offset = os.path.getsize(copied)
        inner = build(sample_s)[1]
        teacher = _SampleTeacher(inner, open_cache(sample_s, inner))
        print(f"estimate: running a sample of {s.estimate_sample} requests…", file=sys.stderr)
        began = time.monotonic()
        try:
            summary = asyncio.run(run_async(sample_s, teacher=teacher, started=began))
        finally:
            teacher.close_cache()
        seconds = time.monotonic() - began
        units = _units_of(os.path.join(folder, jr.FILENAME), offset, teacher.units)
    return Sample(units, teacher, summary, seconds, began)


def _estimate(s: Settings, sample: Sample, already: int, started: float) -> dict[str, Any]:
    """estimate.json: the projection of what remains (``--num`` minus what OUT ``already`` holds)."""
    inner, remaining = sample.teacher.inner, s.num - already
    price_in = float(getattr(inner, "price_in", 0.0) or 0.0)
    price_out = float(getattr(inner, "price_out", 0.0) or 0.0)
    # what the real run spends before its first request too: the command's start (imports,
    # reading seeds, building the filters) and the teacher's (a model load)
    startup_s = (sample.began - started) + sample.teacher.startup_s
    limits = Limits(concurrency=max(1, int(inner.concurrency)), rpm=getattr(inner, "rpm", None),
                    tpm=getattr(inner, "tpm", None), startup_s=startup_s)
    projected, warnings = project(sample.units, remaining, price_in, price_out, limits)
    budget = _budget_warning(projected["cost_usd"], getattr(inner, "max_cost", None), remaining)
    if budget:
        warnings.append(budget)
    reused = sample.teacher.reuses_answers
    if not reused:
        warnings.append("no response cache (--no-cache, or a teacher that uses none): the real run "
                        "pays for the sample's requests again")
    if s.teacher_options.get("batch"):
        warnings.append("--batch: the sample ran online; wall_seconds is the online run's, while a batch "
                        "run waits for each wave's batch (OpenAI: up to 24 h each)")
    stopped = sample.summary["stopped"]
    if not stopped.startswith("sampled:") and stopped != "done":
        warnings.append(f"the sample run stopped early ({stopped}); the real run may stop the same way")
    estimate = {
        "num": s.num,
        **projected,
        "sample": _sample_fields(sample, inner.cost_usd()),
        "sample_reused": reused,
        "teacher": {"name": inner.label, "concurrency": limits.concurrency},
        "prices": {"in": price_in, "out": price_out, "unit": "USD per 1M tokens",
                   "batch_factor": BATCH_PRICE_FACTOR},
        "settings": {"num": s.num, "already_accepted": already, "remaining": remaining,
                     "estimate_sample": s.estimate_sample, "concurrency": limits.concurrency,
                     "rpm": limits.rpm, "tpm": limits.tpm, "startup_seconds": round(startup_s, 3),
                     "batch": bool(s.teacher_options.get("batch")), "interval": round(HIGH_Q - LOW_Q, 2),
                     "bootstrap_resamples": RESAMPLES, "bootstrap_seed": BOOTSTRAP_SEED,
                     "recipe": s.recipe, "lang": s.lang, "random_seed": s.random_seed},
        "warnings": warnings,
        "elapsed_seconds": round(time.monotonic() - started, 3),
    }
    if warnings:
        estimate["warning"] = warnings[0]
    return estimate


def _budget_warning(cost: dict[str, float | None] | None, max_cost: float | None, remaining: int) -> str:
    """What --max-cost will do to the projected run ("" when it is not in the way)."""
    if cost is None or max_cost is None or cost["value"] <= max_cost:
        return ""
    reached = int(remaining * max_cost / cost["value"]) if cost["value"] > 0 else remaining
    return (f"the projected cost ${cost['value']:.4f} is above --max-cost ${max_cost:.4f}: the run will "
            f"stop there, with about {reached} of the {remaining} examples still to accept")


def _sample_fields(sample: Sample, paid_usd: float) -> dict[str, Any]:
    units = sample.units
    return {"requests": sum(u.requests for u in units), "paid": sum(u.paid for u in units),
            "units": len(units), "candidates": sum(u.candidates for u in units),
            "accepted": sum(u.accepted for u in units),
            "prompt_tokens": sum(u.prompt_tokens for u in units),
            "completion_tokens": sum(u.completion_tokens for u in units),
            "cost_usd": paid_usd, "seconds": round(sample.seconds, 3),
            "startup_seconds": round(sample.teacher.startup_s, 3), "stopped": sample.summary["stopped"]}


def _write(out: str, estimate: dict[str, Any]) -> None:
    try:
        os.makedirs(out, exist_ok=True)
        write_json(os.path.join(out, FILENAME), estimate)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write {FILENAME} there ({e.strerror or e})") from None


# -- the table ---------------------------------------------------------------------------------------

_LABELS = {"requests": "requests", "prompt_tokens": "prompt tokens", "completion_tokens": "completion tokens",
           "acceptance_rate": "acceptance rate", "cost_usd": "cost (USD)", "cost_usd_batch": "cost with --batch",
           "wall_seconds": "wall time"}


def _shown(name: str, x: float | None) -> str:
    if x is None:
        return "?"
    if name == "acceptance_rate":
        return f"{100 * x:.1f}%"
    if name.startswith("cost"):
        return f"${x:,.4f}" if x < 100 else f"${x:,.0f}"
    if name == "wall_seconds":
        return _duration(x)
    return f"{x:,.0f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def print_estimate(estimate: dict[str, Any], out: str, stream: TextIO | None = None) -> None:
    """The estimate as a short table on stdout (value and 90% interval per line); warnings last."""
    stream = stream or sys.stdout
    sample, settings = estimate["sample"], estimate["settings"]
    rest = (f", {settings['remaining']} still to accept" if settings["already_accepted"] else "")
    lines = [f"estimate for --num {estimate['num']}{rest} with {estimate['teacher']['name']}, from a sample of "
             f"{sample['requests']} requests ({sample['units']} units, {sample['accepted']}/"
             f"{sample['candidates']} candidates accepted, {sample['seconds']:.1f}s):",
             f"  {'':<18} {'value':>12}   90% interval"]
    for name in PROJECTED:
        cell = estimate[name]
        if cell is None:
            lines.append(f"  {_LABELS[name]:<18} {'-':>12}")
            continue
        lines.append(f"  {_LABELS[name]:<18} {_shown(name, cell['value']):>12}   "
                     f"{_shown(name, cell['low'])} - {_shown(name, cell['high'])}")
    if estimate["sample_reused"]:
        lines.append(f"the sample's answers are cached: the real run replays them (the sample paid "
                     f"${sample['cost_usd']:.4f} of the cost above)")
    for warning in estimate["warnings"]:
        lines.append(f"warning: {warning}")
    lines.append(f"written to {os.path.join(out, FILENAME)}; the same command without --estimate runs it")
    stream.write("\n".join(lines) + "\n")
