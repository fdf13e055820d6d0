"""Benchmark decontamination: the plain-Python set loop against Decontam, same records, same run.

Evaluation items are glued from synthetic records (``make_corpus``, another seed): an instruction of
two task sentences, sometimes an input, an output of two more sentences, 40-90 tokens an item, written
to a JSONL file that Decontam reads like any evaluation file. The candidate records are a
``make_corpus`` corpus in which ``--plant`` (1%) of the records get a span of one gram (13 words, 20
Han characters) copied from a random evaluation field into a random field, and as many get a span one
token short of a gram (near misses). The corpus and the evaluation items share templates, so some
records also overlap by chance; both sides must find exactly the same ones.

The plain loop is what one writes first: the evaluation grams (the same tokens and the same gram rule
as Decontam, see its docstring) as strings in a dict, then per record every start and every span
length a gram can have, joined and looked up. Decontam runs through a FilterChain (batches of 4,096
prepared at once). Both name the first shared gram, so their details are compared too.

    python benchmarks/bench_decontam.py                  # 100K English records x 10K items
    python benchmarks/bench_decontam.py --lang zh
    python benchmarks/bench_decontam.py --full           # 1M records x 100K items (a few minutes)
    python benchmarks/bench_decontam.py --full --no-baseline

Prints ``RESULT name=... ratio=... seconds=...``; exits 1 if the two disagree.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_corpus import make_records  # noqa: E402

from selfinstruct.filters.base import FilterChain  # noqa: E402
from selfinstruct.filters.decontam import CHECKED, Decontam, is_han, joined, normalised_tokens, shortened  # noqa: E402
from selfinstruct.record import Record  # noqa: E402

FIELDS = ("instruction", "input", "output")


def eval_items(n: int, lang: str, seed: int) -> list[dict[str, str]]:
    """``n`` evaluation items glued from 4n synthetic records (no near-copies among them)."""
    parts = make_records(4 * n, lang, seed + 1000, dup_share=0.0)
    space = "" if lang == "zh" else " "
    items = []
    for i in range(n):
        a, b, c, d = parts[4 * i:4 * i + 4]
        items.append({"instruction": a.instruction + space + b.instruction, "input": c.input,
                      "output": c.instruction + space + d.instruction})
    return items


def plant(records: list[Record], items: list[dict[str, str]], share: float, seed: int,
          span_tokens: int) -> tuple[set[int], set[int]]:
    """Copy a one-gram span (and, into as many other records, a span one token short) of a random
    evaluation field into a random field of ``share`` of the records. Returns (planted, near)."""
    rng = random.Random(seed)
    chosen = rng.sample(range(len(records)), 2 * int(share * len(records)))
    half = len(chosen) // 2
    planted, near = set(chosen[:half]), set(chosen[half:])
    for i in chosen:
        item = rng.choice(items)
        text = max((item[f] for f in FIELDS), key=len)
        toks = normalised_tokens(text)
        n = span_tokens - (i in near)
        start = rng.randrange(0, max(1, len(toks) - n))
        span = joined(toks[start:start + n])
        field = rng.choice(FIELDS)
        # A word that is in no evaluation item on both sides, so the span is all the two share.
        setattr(records[i], field, f"{getattr(records[i], field)} zzqx {span} zzqx")
    return planted, near


# ---- the plain-Python loop -------------------------------------------------------------------------
class PlainLoop:
    """Evaluation grams as joined strings in a dict; per record, every start, every span length."""

    def __init__(self, items: list[dict[str, str]], path: str, ngram: int, ngram_chars: int, min_ngram: int):
        self.ngram, self.ngram_chars = ngram, ngram_chars
        self.full, least = ngram * ngram_chars, min_ngram * ngram_chars
        self.grams: dict[str, str] = {}
        self.short_lengths: set[int] = set()
        for line, item in enumerate(items, 1):
            for name in FIELDS:
                toks = normalised_tokens(item[name])
                total = sum(map(self.weight, toks))
                if total < self.full:
                    if toks and total >= least:
                        self.short_lengths.add(len(toks))
                        self._add(toks, f"{path}:{line} {name}")
                    continue
                for p in range(len(toks)):
                    w = 0
                    for k in range(p, len(toks)):
                        w += self.weight(toks[k])
                        if w >= self.full:
                            self._add(toks[p:k + 1], f"{path}:{line} {name}")
                            break

    def weight(self, token: str) -> int:
        return self.ngram if is_han(token) else self.ngram_chars

    def _add(self, toks: list[str], where: str) -> None:
        self.grams.setdefault(" ".join(toks), f"{where}: {shortened(joined(toks))}")

    def check(self, record: Record) -> str | None:
        for name in CHECKED:
            toks = normalised_tokens(getattr(record, name))
            for i in range(len(toks)):
                w = 0
                for k in range(i, len(toks)):
                    w += self.weight(toks[k])
                    if w >= self.full or (k + 1 - i) in self.short_lengths:
                        hit = self.grams.get(" ".join(toks[i:k + 1]))
                        if hit is not None:
                            return hit
                    if w >= self.full:
                        break
        return None


# ---- timing ----------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_decontam(path: str, records: list[Record], args) -> tuple[dict[int, str], float, float, Decontam]:
    t0 = time.perf_counter()
    stage = Decontam((path,), ngram=args.ngram, ngram_chars=args.ngram_chars)
    t_index = time.perf_counter() - t0
    position = {id(r): i for i, r in enumerate(records)}
    rejected: dict[int, str] = {}
    chain = FilterChain([stage], on_reject=lambda r, v: rejected.__setitem__(position[id(r)], v.detail))
    t0 = time.perf_counter()
    for _ in chain.run(records):
        pass
    return rejected, t_index, time.perf_counter() - t0, stage


def run_plain(path: str, items, records: list[Record], args) -> tuple[dict[int, str], float, float]:
    t0 = time.perf_counter()
    loop = PlainLoop(items, path, args.ngram, args.ngram_chars, 8)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    rejected = {}
    for i, r in enumerate(records):
        hit = loop.check(r)
        if hit is not None:
            rejected[i] = hit
    return rejected, t_index, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, help="records (default 100,000; 1,000,000 with --full)")
    ap.add_argument("--eval", type=int, help="evaluation items (default 10,000; 100,000 with --full)")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--lang", choices=("en", "zh"), default="en")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plant", type=float, default=0.01, help="share of records given a gram (and as many a near miss)")
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--ngram-chars", type=int, default=20)
    ap.add_argument("--no-baseline", action="store_true", help="time Decontam alone")
    args = ap.parse_args(argv)
    n = args.n or (1_000_000 if args.full else 100_000)
    n_eval = args.eval or (100_000 if args.full else 10_000)

    t0 = time.perf_counter()
    items = eval_items(n_eval, args.lang, args.seed)
    records = make_records(n, args.lang, args.seed)
    planted, near = plant(records, items, args.plant, args.seed,
                          args.ngram_chars if args.lang == "zh" else args.ngram)
    folder = tempfile.mkdtemp(prefix="bench_decontam_")
    path = str(Path(folder) / "eval.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    eval_tokens = sum(len(normalised_tokens(item[k])) for item in items for k in FIELDS)
    print(f"{n:,} {args.lang} records, {n_eval:,} evaluation items ({eval_tokens:,} tokens), "
          f"{len(planted):,} planted grams, {len(near):,} near misses; made in {time.perf_counter() - t0:.0f} s",
          flush=True)
    rss_before = peak_rss_mb()

    ours, idx_ours, t_ours, stage = run_decontam(path, records, args)
    rss_ours = peak_rss_mb()
    found = len(planted & ours.keys())
    print(f"Decontam: index {idx_ours:.1f} s ({stage.grams:,} grams, {stage.skipped_short:,} short fields "
          f"skipped), check {t_ours:.1f} s ({n / t_ours:,.0f} records/s), {len(ours):,} rejected "
          f"({found:,}/{len(planted):,} planted found, {len(near & ours.keys()):,} near misses rejected by "
          f"chance overlaps); peak RSS {rss_ours:.0f} MB ({rss_ours - rss_before:+.0f} MB over the data)", flush=True)
    ok = found == len(planted)
    if args.no_baseline:
        print(f"RESULT name=decontam_{args.lang}_{n}x{n_eval} seconds={idx_ours + t_ours:.1f} "
              f"records_per_s={n / t_ours:.0f} peak_rss_mb={rss_ours:.0f} planted_found={found}/{len(planted)}")
        return 0 if ok else 1
    theirs, idx_theirs, t_theirs = run_plain(path, items, records, args)
    print(f"plain loop: index {idx_theirs:.1f} s, check {t_theirs:.1f} s ({n / t_theirs:,.0f} records/s), "
          f"{len(theirs):,} rejected; peak RSS {peak_rss_mb():.0f} MB", flush=True)
    same = ours == theirs
    if not same:
        diff = sorted(set(ours.items()) ^ set(theirs.items()))[:5]
        print(f"DISAGREE: {len(set(ours.items()) ^ set(theirs.items()))} differences, e.g. {diff}")
    ratio = t_theirs / t_ours
    total_ratio = (idx_theirs + t_theirs) / (idx_ours + t_ours)
    print(f"RESULT name=decontam_{args.lang}_{n}x{n_eval} ratio={ratio:.1f} ratio_with_index={total_ratio:.1f} "
          f"seconds={idx_ours + t_ours:.1f} identical={same} planted_found={found}/{len(planted)} "
          f"peak_rss_mb={rss_ours:.0f}")
    return 0 if same and ok else 1


if __name__ == "__main__":
    sys.exit(main())
