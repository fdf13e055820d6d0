"""One ``generate`` run, top to bottom: check the settings, open the journal (resuming what it
holds), run the units until exactly ``num`` examples are accepted, write the outputs."""
from __future__ import annotations

import asyncio
import functools
import gc
import os
import time
from contextlib import contextmanager
from typing import Any

from selfinstruct import journal as jr
from selfinstruct import options as opts
from selfinstruct.conditioning import Conditions
from selfinstruct.errors import UsageError
from selfinstruct.filters import FilterChain, build_chain
from selfinstruct.filters.registry import components as filter_components
from selfinstruct.filters.registry import select
from selfinstruct.generate.context import Context, unit_number
from selfinstruct.generate.ordering import Lanes
from selfinstruct.generate.outputs import RENDER_EVERY_S, Outputs, summary
from selfinstruct.generate.scheduler import Scheduler
from selfinstruct.generate.settings import GENERATE_DEFAULT_OFF, RECIPE_FLAGS, Settings
from selfinstruct.quality import judge_teacher
from selfinstruct.recipes import recipe_class
from selfinstruct.recipes.base import Recipe
from selfinstruct.report.nearest import SeedNearest
from selfinstruct.rules import resolve_rules
from selfinstruct.seedtasks import load_seeds
from selfinstruct.teachers import teacher_class
from selfinstruct.teachers.base import Teacher


def build(s: Settings, teacher: Teacher | None = None) -> tuple[Recipe, Teacher, list, FilterChain, Teacher | None]:
    """Everything that can be wrong with the input is found here, before --out is touched.
    Returns the recipe, the teacher, the seeds, the filter chain and the judge's teacher (None
    without a judge; the run's teacher when it judges too)."""
    s.validate()
    recipe_cls, teacher_cls = recipe_class(s.recipe), teacher_class(s.teacher)
    q = s.quality
    filter_classes = select(s.only, s.skip, GENERATE_DEFAULT_OFF + q.default_off())
    teacher_comp = opts.Component(teacher_cls.name, teacher_cls)
    recipe_comp = opts.Component(recipe_cls.name, recipe_cls)
    given = opts.resolve([*filter_components(filter_classes), teacher_comp, recipe_comp], s.options)
    for option in s.teacher_options:            # the dedicated flags (--model, --concurrency…)
        if option not in teacher_comp.options():
            raise UsageError(f"--{option.replace('_', '-')} does not apply to --teacher {teacher_cls.name}")
    for option in s.recipe_options:            # the dedicated flags (--from, --rounds…)
        if option not in recipe_comp.options():
            raise UsageError(f"{RECIPE_FLAGS.get(option, option)} does not apply to --recipe {recipe_cls.name}")
    q.add_judge_options(given)
    conditions = Conditions.load(s.topics, s.personas, s.lang)
    rules = resolve_rules(q.rules, command="generate", recipe=s.recipe, lang=s.lang)
    seeds = load_seeds(s.seed_files, s.lang)
    chain = build_chain(filter_classes, {"rouge_threshold": s.rouge_threshold, "lang": s.lang,
                                         **q.shared_options(rules)}, given)
    if teacher is None:
        teacher = teacher_cls(**{**s.teacher_options, **given[teacher_comp]})
    judges = [f for f in chain.filters if f.name == "judge"]
    judge_by = judge_teacher(q, teacher, teacher_cls.name) if judges else None
    recipe_options = {**s.recipe_options, **given[recipe_comp]}
    if teacher.tasks_per_request is not None and "per_request" in recipe_comp.options():
        recipe_options.setdefault("per_request", teacher.tasks_per_request)
    recipe = recipe_cls(seeds, s.lang, **recipe_options)
    recipe.conditions = conditions
    recipe.random_seed = s.random_seed
    recipe.bind(teacher, dict(s.teacher_options))
    return recipe, teacher, seeds, chain, judge_by


def open_journal(s: Settings) -> tuple[jr.Journal, jr.JournalState]:
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
    written = [name for name in ("data.json", "data.jsonl") if os.path.exists(os.path.join(s.out, name))]
    if written:
        raise UsageError(f"{s.out} has a {written[0]} but no {jr.FILENAME}: refusing to overwrite it; "
                         "choose another --out")
    try:
        os.makedirs(s.out, exist_ok=True)
        journal = jr.Journal(path)
    except OSError as e:
        raise UsageError(f"--out {s.out}: cannot write there ({e.strerror or e})") from None
    journal.write({"ev": "header", "settings": s.journal_identity()})
    return journal, jr.JournalState()


def open_cache(s: Settings, teacher: Teacher):
    if not s.cache or not teacher.uses_cache:
        return None
    from selfinstruct.cache import ResponseCache
    try:
        return ResponseCache(s.cache)
    except Exception as e:    # OSError from the folder, sqlite3.Error from the file
        raise UsageError(f"cannot open the response cache {s.cache} ({e}); set SELFINSTRUCT_CACHE_DIR "
                         "to a writable folder, or pass --no-cache") from None


async def run_async(s: Settings, teacher: Teacher | None = None, started: float | None = None) -> dict[str, Any]:
    """Run ``s``; ``started`` is when the command started (``time.monotonic()``), for elapsed_seconds."""
    started = time.monotonic() if started is None else started
    recipe, teacher, seeds, chain, judge_by = build(s, teacher)
    cache = open_cache(s, teacher)
    journal = None
    try:
        journal, state = open_journal(s)
        teacher.attach(journal.write, state.teacher_events)
        lanes = Lanes({unit_number(uid) for uid in state.ended})
        outputs = Outputs(s, state, chain.tally)
        scheduler = Scheduler(recipe, teacher.concurrency, lanes, journal, s.random_seed, state.units)
        ctx = scheduler.ctx = Context(s, teacher, chain, journal, state, lanes, scheduler, outputs,
                                      recipe.two_phase, cache)
        ctx.seed_nearest = SeedNearest(list(dict.fromkeys(r.instruction for r in seeds)))
        for f in chain.filters:
            if f.name == "judge":
                f.bind(functools.partial(ctx.ask, teacher=judge_by))
        # The filters' memory: the seed tasks, then what earlier runs into this folder accepted (and
        # what passed every filter but the judge, which counts for novelty too).
        chain.preload(seeds)
        if recipe.two_phase:
            ctx.instruction_filters.preload(state.pooled)
            ctx.example_filters.preload(state.accepted + state.judged_out)
        else:
            chain.preload(state.accepted + state.judged_out)

        def report(stopped: str) -> dict[str, Any]:
            return summary(s, outputs, ctx.counts, teacher, started, stopped,
                           judge_by if judge_by is not teacher else None)

        stopped = "done" if outputs.accepted >= s.num else ""
        if not stopped:
            stopped = await _run_units(scheduler, outputs, teacher, state, report, journal.path,
                                       judge_by if judge_by is not teacher else None)
        result = report(stopped)
        outputs.render(result, journal.path)
        return result
    finally:
        if journal is not None:
            journal.close()
        if cache is not None:
            cache.close()


async def _run_units(scheduler: Scheduler, outputs: Outputs, teacher: Teacher, state, report,
                     journal_path: str, other_judge: Teacher | None) -> str:
    await teacher.start()
    if other_judge is not None:
        await other_judge.start()
    outputs.open_progress()
    try:
        with _fewer_gc_pauses():
            await scheduler.run(state.open_units, RENDER_EVERY_S,
                                tick=lambda: outputs.render(report("running")))
        return scheduler.stop_reason or ("done" if outputs.accepted >= outputs.s.num else "interrupted")
    except BaseException as e:
        # stopped by an error or Ctrl-C: show what there is (the journal has all of it); the error
        # that stopped the run is the one reported
        try:
            outputs.render(report(scheduler.stop_reason or f"error: {type(e).__name__}"), journal_path)
        except Exception:
            pass
        raise
    finally:
        await teacher.aclose()
        if other_judge is not None:
            await other_judge.aclose()
        outputs.close_progress(teacher.live())


@contextmanager
def _fewer_gc_pauses():
    """While the loop runs: the objects made before it (modules, seeds, the resumed pool) are moved
    out of the collector's sight (gc.freeze) and the youngest generation is collected 30x less often.
    Every request allocates a few hundred container objects; with the default thresholds the
    collector took a noticeable share of the loop's CPU and paused it long enough for every request
    in flight to come back while nothing new was sent."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def run_generate(s: Settings, teacher: Teacher | None = None, started: float | None = None) -> dict[str, Any]:
    return asyncio.run(run_async(s, teacher, started))
