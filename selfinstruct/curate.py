"""``selfinstruct filter``: stream records from any input format through the filter chain and write
the kept ones (in ``--format``: Alpaca JSON, ShareGPT or OpenAI messages; ``selfinstruct.publish``),
the rejected ones with their reasons, a summary, and the dataset card (README.md) made from it; then,
when asked, the Hugging Face dataset (``--hf-out``) and the push to the Hub.

Nothing in the output folder changes unless the whole run succeeds: outputs are written to
temporary files and renamed at the end (``selfinstruct.writers``), so malformed input in error mode
stops the run (exit 2) with the previous outputs, if any, untouched; so does the first conversation
of several assistant turns read while the format is alpaca, which cannot hold it. Inputs are only
ever read. The Hugging Face outputs come last, once the folder is written: a failed push loses nothing.
"""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from selfinstruct import options as opts
from selfinstruct import publish as pub
from selfinstruct.commands.common import split_names
from selfinstruct.engines import EngineSettings, open_engine
from selfinstruct.errors import UsageError
from selfinstruct.filters.base import FilterChain, Rejection
from selfinstruct.filters.registry import build_chain, components, select
from selfinstruct.quality import QualitySettings, judge_teacher
from selfinstruct.readers import ON_BAD_RECORD, open_source, parse_fields, read_records
from selfinstruct.record import Record
from selfinstruct.rules import resolve_rules
from selfinstruct.summary import common_fields
from selfinstruct.teachers.base import BudgetExhausted
from selfinstruct.text import FILTER_LANGS, script_lang
from selfinstruct.writers import atomic_open, reject_line, to_json, write_json

DATA, RECORDS, REJECTS, SUMMARY = "data.json", "records.jsonl", "rejects.jsonl", "summary.json"
JUDGEMENTS = "judgements.jsonl"      # the judge's answers, kept across runs
MALFORMED = "malformed"


def run_filter(inputs: Sequence[str], out_dir: str, against: Sequence[str] = (), rouge_threshold: float = 0.7,
               minhash_threshold: float = 0.8, lang: str = "auto", fields: dict[str, str] | str | None = None,
               only: Iterable[str] = (), skip: Iterable[str] = (), on_bad_record: str = "error",
               progress: bool = True, options: Sequence[str] = (), started: float | None = None,
               quality: QualitySettings | None = None, cache: str | None = None,
               publish: pub.Publish | None = None, random_seed: int = 0,
               engine: EngineSettings | None = None) -> dict:
    """Filter ``inputs`` into ``out_dir``; returns the summary (also written to summary.json).
    ``options`` are ``--opt NAME=VALUE`` settings; ``started`` is when the command started
    (``time.monotonic()``), for elapsed_seconds; ``quality`` the rule set, decontamination and judge
    settings; ``cache`` the response cache the judge may answer from (None: no cache); ``publish`` the
    data file's format and the Hugging Face outputs (``random_seed`` draws the test split);
    ``engine`` where the filters' parallel work runs (the kept records are the same on any)."""
    started = time.monotonic() if started is None else started
    quality = quality or QualitySettings()
    inputs, against = [str(p) for p in inputs], [str(p) for p in against]
    only, skip = split_names(only), split_names(skip)
    fields = parse_fields(fields)
    _check_options(inputs, out_dir, rouge_threshold, minhash_threshold, lang, on_bad_record)
    publish = publish or pub.Publish()
    publish.validate(out=out_dir)
    quality.validate()
    engine = engine or EngineSettings()
    engine.validate()
    classes = select(only, skip, quality.default_off())
    per_filter = opts.resolve(components(classes), options)
    quality.add_judge_options(per_filter)
    for path in inputs + against:      # a missing or unrecognised file fails before any work
        open_source(path)
    rules = resolve_rules(quality.rules, command="filter", recipe=None, lang=lang)
    chain = build_chain(classes, {"lang": lang, "rouge_threshold": rouge_threshold,
                                  "minhash_threshold": minhash_threshold, **quality.shared_options(rules)},
                        per_filter)
    judging = Judging(chain, quality, cache) if any(f.name == "judge" for f in chain.tail) else None
    against_count, against_bad = _preload(chain, against, on_bad_record)

    out = Path(out_dir)
    created = _make_folder(out)
    counts = _Counts()
    try:
        with atomic_open(out / REJECTS) as rejects, atomic_open(out / RECORDS) as records_file, \
                _async_loop(chain.is_async, judging, out) as run_async, open_engine(engine) as workers:
            chain.use_engine(workers)
            def write_reject(record: Record, rejection: Rejection) -> None:
                rejects.write(reject_line(record, rejection.reason, rejection.detail))
            chain.on_reject = write_reject
            with _progress_bar(progress) as bar:
                records = _read_all(inputs, fields, on_bad_record, rejects, counts, chain, bar)
                if publish.format == "alpaca":
                    records = _single_turn(records)
                kept = _also_to(records_file, chain.run(records, run_async=run_async), counts)
                counts.splits = pub.write_data(out, kept, publish, random_seed)
                counts.kept = sum(counts.splits.values())
                if bar is not None:
                    bar.set_postfix_str(f"kept {counts.kept:,} | " + _postfix(chain))
    except BudgetExhausted:
        raise UsageError(f"--max-cost {quality.judge_max_cost}: the judge's budget is spent; what it judged "
                         f"is kept in {out / JUDGEMENTS}: rerun with a larger --max-cost to go on") from None
    except BaseException:
        for folder in reversed(created):   # leave no empty folder behind a failed run
            try:
                folder.rmdir()
            except OSError:
                break
        raise

    summary = _summary(chain, counts, inputs, against, against_count, against_bad, started, dict(
        rouge_threshold=rouge_threshold, minhash_threshold=minhash_threshold, lang=lang, fields=fields,
        only=only, skip=skip, on_bad_record=on_bad_record, options=list(options), **quality.shown(),
        **engine.shown()))
    if judging is not None:
        summary.update(judging.summary())
    summary["outputs"].update(pub.outputs_fields(publish, counts.splits, counts.languages, counts.teachers))
    summary["command"] = pub.command_line()
    write_json(out / SUMMARY, summary)
    pub.write_card(out, summary)
    pub.publish_hf(out, publish, summary)
    return summary


@contextmanager
def _async_loop(needed: bool, judging: "Judging | None", out: Path):
    """The runner the chain's asynchronous filters run batches through: one event loop for the
    whole run, in a thread (the judge's HTTP session belongs to one loop), with the judge's teacher
    started on it."""
    if not needed:
        yield asyncio.run
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="judge-loop", daemon=True)
    thread.start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
    try:
        if judging is not None:
            run(judging.start(out / JUDGEMENTS))
        try:
            yield run
        finally:
            if judging is not None:
                run(judging.aclose())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


class Judging:
    """The judge's teacher and the journal of its answers (OUT/judgements.jsonl: a rerun of the
    same command, after a crash or a kill, pays for no judgement twice)."""

    def __init__(self, chain: FilterChain, quality: QualitySettings, cache: str | None):
        self.judges = [f for f in chain.tail if f.name == "judge"]
        self.teacher = judge_teacher(quality)
        self.cache_path = cache if self.teacher.uses_cache else None
        self.asker = None

    async def start(self, journal_path: Path) -> None:
        from selfinstruct.asker import JournaledAsker
        cache = None
        if self.cache_path:
            from selfinstruct.cache import ResponseCache
            try:
                cache = ResponseCache(self.cache_path)
            except Exception as e:      # OSError from the folder, sqlite3.Error from the file
                raise UsageError(f"cannot open the response cache {self.cache_path} ({e}); set "
                                 "SELFINSTRUCT_CACHE_DIR to a writable folder, or pass --no-cache") from None
        self.asker = JournaledAsker(self.teacher, journal_path, cache)
        await self.asker.start()
        for judge in self.judges:
            judge.bind(self.asker)

    async def aclose(self) -> None:
        if self.asker is not None:
            await self.asker.aclose()

    def summary(self) -> dict:
        a = self.asker
        return {"requests": dict(a.counts.requests),
                "requests_per_stage": {stage: dict(c) for stage, c in a.counts.per_stage.items()},
                "tokens": {stage: dict(c) for stage, c in a.counts.tokens.items()},
                "cost_usd": self.teacher.cost_usd(),
                "judge_teacher": {"name": self.teacher.label, **self.teacher.stats()}}


def _also_to(records_file, records: Iterable[Record], counts: "_Counts") -> Iterator[Record]:
    """``records``, each also written to records.jsonl (every field, the one serialisation), their
    languages and teachers counted for the dataset card."""
    for r in records:
        records_file.write(to_json(r.to_dict()) + "\n")
        counts.languages[r.lang or script_lang(r.instruction)] += 1
        if r.teacher:
            counts.teachers[r.teacher] += 1
        yield r


def _single_turn(records: Iterable[Record]) -> Iterator[Record]:
    """``records``, stopping at the first conversation the alpaca format cannot hold, where it was read."""
    for r in records:
        if r.turns > 1:
            raise UsageError(f"{r.where}: {pub.alpaca_refusal(r)}")
        yield r


def _check_options(inputs, out_dir, rouge_threshold, minhash_threshold, lang, on_bad_record) -> None:
    if not inputs:
        raise UsageError("give at least one INPUT file")
    if lang not in FILTER_LANGS:
        raise UsageError(f"--lang must be one of {', '.join(FILTER_LANGS)}, not '{lang}'")
    if on_bad_record not in ON_BAD_RECORD:
        raise UsageError(f"--on-bad-record must be one of {', '.join(ON_BAD_RECORD)}, not '{on_bad_record}'")
    for option, value in (("--rouge-threshold", rouge_threshold), ("--minhash-threshold", minhash_threshold)):
        if not 0.0 < value <= 1.0:
            raise UsageError(f"{option} must be in (0, 1], not {value}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UsageError(f"--out {out_dir} is a file; give a folder")


def _preload(chain: FilterChain, against: list[str], on_bad_record: str) -> tuple[int, int]:
    """Put the ``--against`` records into the filters' memory; (records, malformed rows)."""
    count = malformed = 0
    for path in against:
        bad: list = []
        # --fields maps the INPUT files' keys; --against files (seeds, Alpaca) are read as they are.
        for record in read_records(path, on_bad_record=on_bad_record, bad=bad):
            chain.preload((record,))
            count += 1
        malformed += len(bad)
    return count, malformed


def _make_folder(out: Path) -> list[Path]:
    """Create ``out`` and its missing parents; the folders created, outermost first."""
    missing = [p for p in [out, *out.parents] if not p.exists()][::-1]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    return missing


class _Counts:
    def __init__(self) -> None:
        self.read = 0            # input records, malformed rows included
        self.malformed = 0
        self.kept = 0            # written to the data file and the test file (known once they are)
        self.splits: dict[str, int] = {}      # split -> records
        self.languages: Counter = Counter()   # of the kept records
        self.teachers: Counter = Counter()
        self.per_input: dict[str, int] = {}
        self.read_seconds = 0.0


def _read_all(inputs, fields, on_bad_record, rejects, counts: _Counts, chain: FilterChain,
              bar) -> Iterator[Record]:
    """Every input record in order; malformed rows go straight to rejects.jsonl."""
    for path in inputs:
        bad: list = []
        before = counts.read
        stream = iter(read_records(path, fields=fields, on_bad_record=on_bad_record, bad=bad))
        while True:
            t0 = time.perf_counter()
            record = next(stream, None)
            counts.read_seconds += time.perf_counter() - t0
            if bad:
                _write_malformed(bad, rejects, counts, chain, bar)
            if record is None:
                break
            counts.read += 1
            if bar is not None:
                bar.update(1)
                if counts.read % 2048 == 0:
                    bar.set_postfix_str(_postfix(chain), refresh=False)
            yield record
        counts.per_input[path] = counts.read - before


def _write_malformed(bad: list, rejects, counts: _Counts, chain: FilterChain, bar) -> None:
    for record, origin, message in bad:
        rejects.write(reject_line(record or Record("", origin=origin), MALFORMED, message, source=origin))
    counts.malformed += len(bad)
    chain.tally.reject(MALFORMED, "read", len(bad))
    counts.read += len(bad)
    if bar is not None:
        bar.update(len(bad))
    bad.clear()


def _postfix(chain: FilterChain) -> str:
    top = chain.tally.top(3)
    return f"rejected {sum(chain.tally.rejected.values()):,}" + (f" | {top}" if top else "")


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress_bar(progress: bool):
    """A tqdm bar on stderr (records/s, kept, top reasons) when wanted and stderr is a terminal."""
    if not progress or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm
    return tqdm(unit=" records", unit_scale=True, desc="filter", file=sys.stderr, mininterval=0.5)


def _summary(chain: FilterChain, counts: _Counts, inputs, against, against_count, against_bad, started,
             settings) -> dict:
    return {
        **common_fields(counts.kept, chain.tally, started, extra_seconds={"read": counts.read_seconds}),
        "input_records": counts.read,
        "malformed": counts.malformed,
        "inputs": [{"path": p, "records": counts.per_input.get(p, 0)} for p in inputs],
        "against": {"paths": against, "records": against_count, "malformed": against_bad},
        "filters": chain.names,
        "settings": settings,
        "outputs": {"data": DATA, "records": RECORDS, "rejects": REJECTS},
    }
