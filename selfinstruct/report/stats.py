"""The numbers of a report, computed once into ``ReportStats``; the figures and the page only draw
and print them, so tests check numbers, not pixels.

- funnel: summary.json's ``kept`` and ``rejected_per_stage``; candidates = kept + rejected_total
  (a plain dataset has no funnel: its records are all there is);
- lengths: ``selfinstruct.text.length`` (words for English, characters for Chinese), one histogram
  per field and language, since words and characters are not one unit;
- ROUGE-L of each kept instruction to its most similar other instruction, as the Self-Instruct
  paper's Figure 3: records.jsonl's ``nearest_seed_rouge`` when every kept record has it, else
  computed exactly by ``selfinstruct.report.nearest`` against the run's seeds (generate), the
  ``--against`` files (filter), or the set itself (anything else);
- verb–noun pairs per language (``selfinstruct.report.verbnoun``), the paper's Figure 2;
- language mix, judge scores, tokens / cost / requests of a generate run (per endpoint when it sent
  to several), and seeded samples.

The ROUGE-L and verb–noun functions are passed in (``nearest_fn``, ``top_pairs_fn``) or imported
when first needed, so the page's code does not depend on how they are computed.
"""
from __future__ import annotations

import bisect
import math
import os
import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from selfinstruct.record import Record
from selfinstruct.report.load import Source
from selfinstruct.text import length, script_lang

FIELDS = ("instruction", "input", "output")
STAGE_ORDER = ("read", "generate", "exact", "quality", "decontam", "minhash", "rouge", "judge")
LENGTH_BINS = 25           # at most this many bins below the overflow bin
ROUGE_BINS = 20            # bins of 0.05 on [0, 1], as in the paper's Figure 3
NEAREST_LIMIT = 20000      # exact nearest-instruction ROUGE-L up to this many records, then a sample
SAMPLE_SIZE = 20
SAMPLE_SEED = 0


@dataclass
class Histogram:
    """``counts[i]`` values fall in ``[edges[i], edges[i+1])``; the last bin also holds its right
    edge (``1.0`` for ROUGE-L), and a last edge of ``inf`` marks an open overflow bin."""
    edges: list[float]
    counts: list[int]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def labels(self, integer: bool = True) -> list[str]:
        out = []
        for lo, hi in zip(self.edges, self.edges[1:]):
            if math.isinf(hi):
                out.append(f"≥ {lo:g}")
            elif integer and hi - lo == 1:
                out.append(f"{lo:g}")
            elif integer:
                out.append(f"{lo:g}–{hi - 1:g}")
            else:
                out.append(f"{lo:.2f}–{hi:.2f}")
        return out


def histogram(values: Sequence[float], edges: Sequence[float]) -> Histogram:
    """Count ``values`` into the bins ``edges`` describes (see ``Histogram``); a value past the last
    finite edge goes into the last bin."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        i = bisect.bisect_right(edges, v) - 1
        counts[min(max(i, 0), len(counts) - 1)] += 1
    return Histogram(list(edges), counts)


def length_edges(values: Sequence[int], max_bins: int = LENGTH_BINS) -> list[float]:
    """Integer bins of one width, from the smallest value (rounded down to the width) up to the
    99th percentile; when the largest value lies far beyond it, the rest share one open overflow bin
    (a few 5,000-word outputs would otherwise squeeze everything else into the first bar)."""
    if not values:
        return [0, 1]
    ordered = sorted(values)
    top = ordered[-1]
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    cap = p99 if top > 2 * max(p99, 1) else top
    width = max(1, math.ceil((cap - ordered[0] + 1) / max_bins))
    start = (ordered[0] // width) * width
    edges: list[float] = list(range(start, cap + 1, width)) + [((cap // width) + 1) * width]
    if top >= edges[-1]:
        edges.append(math.inf)
    return edges


@dataclass
class FunnelRow:
    stage: str
    reason: str
    count: int
    share: float                 # of the candidates


@dataclass
class Funnel:
    candidates: int              # kept + rejected_total
    kept: int
    rows: list[FunnelRow]        # in stage order, then by count

    @property
    def kept_share(self) -> float:
        return self.kept / self.candidates if self.candidates else 0.0

    def stage_totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row.stage] = out.get(row.stage, 0) + row.count
        return out


@dataclass
class RougeStats:
    scores: list[float]
    histogram: Histogram
    against: str                 # what each instruction was compared with, in words
    origin: str                  # "records.jsonl" (the run's own field) or "computed"
    sampled: bool = False
    n_total: int = 0

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores) if self.scores else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.scores) if self.scores else 0.0


@dataclass
class Usage:
    """What a generate run spent: from summary.json."""
    requests: dict[str, int]                      # paid, cached, replayed, failed, retried
    requests_per_stage: dict[str, dict[str, int]]  # request stage -> the same
    tokens_per_stage: dict[str, dict[str, int]]   # request stage -> prompt / completion
    cost_usd: float | None
    cost_per_stage: dict[str, float]              # when the teacher's prices are known
    elapsed_seconds: float | None
    seconds_per_stage: dict[str, float]
    teacher: str
    stopped: str
    # the teacher's endpoints when it had several: URL -> requests, answered, failures, pauses,
    # paused_s, in_flight_peak, latency_s {mean, p50, p90} (summary.json's teacher.endpoints)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ReportStats:
    source: Source
    n: int                                        # kept records
    funnel: Funnel | None
    lengths: dict[str, dict[str, Histogram]]      # field -> lang -> histogram
    length_means: dict[str, dict[str, float]]     # field -> lang -> mean
    length_medians: dict[str, dict[str, float]]
    with_input: int
    classification: tuple[int, int] | None        # (classification tasks, records that say)
    lang_mix: dict[str, int]
    judge: Histogram | None
    rouge: RougeStats | None
    verb_noun: dict[str, list[tuple[str, int, list[tuple[str, int]]]]]  # lang -> top pairs
    usage: Usage | None
    samples: list[Record]
    reject_samples: dict[str, list[dict]]
    notes: list[str] = field(default_factory=list)   # what could not be shown, and why
    turns: dict[int, int] | None = None           # assistant turns -> records, when any is a conversation

    @property
    def input_share(self) -> float:
        return self.with_input / self.n if self.n else 0.0


def record_lang(record: Record) -> str:
    return record.lang or script_lang(record.instruction)


def compute(source: Source, *, nearest_fn: Callable | None = None, top_pairs_fn: Callable | None = None,
            sample_size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED,
            nearest_limit: int = NEAREST_LIMIT) -> ReportStats:
    """Every number the report shows, for one input."""
    records = source.records
    langs = [record_lang(r) for r in records]
    notes: list[str] = []
    lengths, means, medians = _lengths(records, langs)
    rouge = _rouge(source, langs, nearest_fn, nearest_limit, seed, notes) if records else None
    return ReportStats(
        source=source, n=len(records), funnel=funnel(source.summary), lengths=lengths,
        length_means=means, length_medians=medians,
        with_input=sum(1 for r in records if r.input.strip()),
        classification=_classification(records), lang_mix=dict(Counter(langs).most_common()),
        judge=_judge(records), rouge=rouge, verb_noun=_verb_noun(records, langs, top_pairs_fn),
        usage=usage(source.summary) if source.kind == "generate" else None,
        samples=_sample(records, sample_size, seed), reject_samples=source.reject_samples, notes=notes,
        turns=_turns(records))


def funnel(summary: dict[str, Any] | None) -> Funnel | None:
    """candidates → rejects per stage and reason → kept, from summary.json."""
    if summary is None:
        return None
    kept = int(summary.get("kept", 0))
    per_stage = summary.get("rejected_per_stage")
    if per_stage is None:     # a summary from before rejected_per_stage: reasons without stages
        per_stage = {"?": summary.get("rejected", {})}
    total = int(summary.get("rejected_total", sum(sum(r.values()) for r in per_stage.values())))
    candidates = kept + total
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    rows = [FunnelRow(stage, reason, int(n), int(n) / candidates if candidates else 0.0)
            for stage in sorted(per_stage, key=lambda s: (order.get(s, len(order)), s))
            for reason, n in sorted(per_stage[stage].items(), key=lambda kv: (-kv[1], kv[0]))]
    return Funnel(candidates=candidates, kept=kept, rows=rows)


def _lengths(records: list[Record], langs: list[str]):
    values: dict[str, dict[str, list[int]]] = {f: {} for f in FIELDS}
    for r, lang in zip(records, langs):
        for f in FIELDS:
            values[f].setdefault(lang, []).append(length(getattr(r, f)))
    hists = {f: {lang: histogram(v, length_edges(v)) for lang, v in sorted(per.items())}
             for f, per in values.items()}
    means = {f: {lang: statistics.fmean(v) for lang, v in per.items()} for f, per in values.items()}
    medians = {f: {lang: statistics.median(v) for lang, v in per.items()} for f, per in values.items()}
    return hists, means, medians


def _turns(records: list[Record]) -> dict[int, int] | None:
    if not any(r.messages is not None for r in records):
        return None
    return dict(sorted(Counter(r.turns for r in records).items()))


def _classification(records: list[Record]) -> tuple[int, int] | None:
    said = [bool(r.meta.get("is_classification")) for r in records if "is_classification" in r.meta]
    return (sum(said), len(said)) if said else None


def _judge(records: list[Record]) -> Histogram | None:
    scores = [r.judge_score for r in records if r.judge_score is not None]
    if not scores:
        return None
    lo, hi = min(1, min(scores)), max(10, max(scores))
    return histogram(scores, list(range(lo, hi + 2)))


def rouge_edges() -> list[float]:
    return [i / ROUGE_BINS for i in range(ROUGE_BINS + 1)]


def _rouge(source: Source, langs: list[str], nearest_fn, limit: int, seed: int,
           notes: list[str]) -> RougeStats | None:
    records = source.records
    if all(r.nearest_seed_rouge is not None for r in records):
        scores = [float(r.nearest_seed_rouge) for r in records]
        return RougeStats(scores, histogram(scores, rouge_edges()), "its most similar seed instruction",
                          "records.jsonl", n_total=len(scores))
    against, said = _against(source, langs, notes)
    if nearest_fn is None:
        from selfinstruct.report.nearest import nearest_scores as nearest_fn
    result = nearest_fn([r.instruction for r in records], against, limit=limit, seed=seed)
    scores = [float(s) for s in result.scores]
    return RougeStats(scores, histogram(scores, rouge_edges()), said, "computed",
                      sampled=bool(result.sampled), n_total=int(result.n_total))


def _against(source: Source, langs: list[str], notes: list[str]) -> tuple[list[str] | None, str]:
    """What the instructions are compared with: the seeds of a generate run, a filter run's
    ``--against`` files, else the other instructions of the set."""
    summary = source.summary or {}
    if source.kind == "generate":
        from selfinstruct.seedtasks import load_seeds
        settings = summary.get("settings", {})
        files = [p for p in settings.get("seed_files") or [] if p]
        lang = settings.get("lang") or (Counter(langs).most_common(1)[0][0] if langs else "en")
        missing = [p for p in files if not os.path.isfile(p)]
        if missing:
            notes.append(f"ROUGE-L: the seed file {missing[0]} is gone; compared with the "
                         "instructions of the set instead")
        else:
            seeds = load_seeds(files, lang)
            named = ", ".join(files) if files else f"the package's {lang} seed tasks"
            return [r.instruction for r in seeds], f"its most similar seed instruction ({named})"
    elif source.kind == "filter":
        paths = (summary.get("against") or {}).get("paths") or []
        if paths and all(os.path.exists(p) for p in paths):
            from selfinstruct.readers import read_records
            against = [r.instruction for p in paths for r in read_records(p)]
            return against, f"its most similar --against instruction ({', '.join(paths)})"
        if paths:
            notes.append(f"ROUGE-L: an --against file of the run is gone ({', '.join(paths)}); "
                         "compared with the instructions of the set instead")
    return None, "its most similar other instruction of the set"


def _verb_noun(records: list[Record], langs: list[str], top_pairs_fn) -> dict[str, list]:
    out: dict[str, list] = {}
    for lang in ("en", "zh"):
        items = [(r.instruction, lang) for r, rl in zip(records, langs) if rl == lang]
        if not items:
            continue
        if top_pairs_fn is None:
            from selfinstruct.report.verbnoun import top_pairs as top_pairs_fn
        out[lang] = top_pairs_fn(items, n_verbs=20, n_nouns=4)
    return out


def usage(summary: dict[str, Any] | None) -> Usage | None:
    if not summary:
        return None
    requests = {k: int(v) for k, v in (summary.get("requests") or {}).items()}
    teacher = summary.get("teacher") or {}
    if "retries" in teacher:
        requests["retried"] = int(teacher["retries"])
    tokens = {stage: {k: int(v) for k, v in c.items()}
              for stage, c in ((summary.get("tokens") or {}).get("per_stage") or {}).items()}
    price_in, price_out = teacher.get("price_in"), teacher.get("price_out")
    cost_per_stage = {}
    if price_in is not None and price_out is not None:
        cost_per_stage = {stage: (c.get("prompt", 0) * price_in + c.get("completion", 0) * price_out) / 1e6
                          for stage, c in tokens.items()}
    per_stage = {stage: {k: int(v) for k, v in c.items()}
                 for stage, c in (summary.get("requests_per_stage") or {}).items()}
    return Usage(requests=requests, requests_per_stage=per_stage, tokens_per_stage=tokens, cost_usd=summary.get("cost_usd"),
                 cost_per_stage=cost_per_stage, elapsed_seconds=summary.get("elapsed_seconds"),
                 seconds_per_stage=dict(summary.get("seconds_per_stage") or {}),
                 teacher=str(teacher.get("name", "")), stopped=str(summary.get("stopped", "")),
                 endpoints=_endpoints(teacher.get("endpoints")))


def _endpoints(figures: Any) -> dict[str, dict[str, Any]]:
    """summary.json's per-endpoint figures, those of another shape left out (hand-edited files)."""
    if not isinstance(figures, dict):
        return {}
    return {str(url): f for url, f in figures.items() if isinstance(f, dict)}


def _sample(records: list[Record], k: int, seed: int) -> list[Record]:
    """A seeded sample, in record order: the same data gives the same sample."""
    if len(records) <= k:
        return list(records)
    picked = sorted(random.Random(seed).sample(range(len(records)), k))
    return [records[i] for i in picked]
