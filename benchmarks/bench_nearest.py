"""Exact nearest-neighbour ROUGE-L (the report's figure): ``nearest_scores`` against a brute-force
loop on a small set, then at scale.

The brute-force loop is the definition: for each instruction, rouge-score's ``_score_lcs`` against
every seed (or every other instruction of the set), the highest F, ties to the earliest. Both sides
get the same instructions; scores and chosen instructions must be identical.

Seeds are the shared Self-Instruct (English) and BELLE (Chinese) seed files when ../shared/data has
them, else the project's own seeds; instructions come from ``make_corpus``.

    python benchmarks/bench_nearest.py                 # 300 vs brute force, 50K vs seeds, 20K self (en, zh)
    python benchmarks/bench_nearest.py --big 100000    # also 100K against itself: a 20K sample, each exact
    python benchmarks/bench_nearest.py --ref-n 1000 --n 20000

Prints ``RESULT name=... ratio|seconds=... target=...`` lines; exits 1 only if a result differs.
Timings include tokenising and indexing (what a report pays); the compiled code's load is not.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_corpus import make_records  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402

from selfinstruct.report import nearest as nearest_module  # noqa: E402
from selfinstruct.report.nearest import nearest_scores  # noqa: E402
from selfinstruct.seedtasks import load_seeds  # noqa: E402
from selfinstruct.text import tokens  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_SEEDS = {"en": SHARED / "self_instruct_seed_tasks.jsonl", "zh": SHARED / "belle_zh_seed_tasks.json"}


def brute_force(texts: list[str], against: list[str] | None) -> tuple[list[float], list[str | None]]:
    pool = texts if against is None else against
    pool_tokens = [tokens(t) for t in pool]
    scores, nearest = [], []
    for i, text in enumerate(texts):
        new = tokens(text)
        best, best_f = None, 0.0
        for j, old in enumerate(pool_tokens):
            if against is None and j == i:
                continue
            f = rouge_scorer._score_lcs(new, old).fmeasure
            if f > best_f:
                best, best_f = pool[j], f
        scores.append(best_f)
        nearest.append(best)
    return scores, nearest


def seeds_for(lang: str) -> tuple[list[str], str]:
    path = SHARED_SEEDS[lang]
    records = load_seeds([str(path)] if path.exists() else None, lang)
    return [r.instruction for r in records], path.name if path.exists() else f"seeds/{lang}.jsonl"


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def warm_up() -> float:
    """Load (on a new machine: compile) the search kernel once, outside the timings."""
    t0 = time.perf_counter()
    nearest_scores(["warm up", "warm up the kernel"])
    return time.perf_counter() - t0


class _CountingPool(nearest_module._Pool):
    """The real index, remembering itself so the benchmark can print the work it did."""
    last = None

    def __init__(self, texts):
        super().__init__(texts)
        _CountingPool.last = self


def work_line(queries: int) -> str:
    scanned, verified = _CountingPool.last.work
    return f"per query: {scanned / max(queries, 1):,.0f} postings read, {verified / max(queries, 1):,.1f} LCS computed"


def against_brute_force(n: int, lang: str, seed: int) -> bool:
    texts = [r.instruction for r in make_records(n, lang, seed)]
    seeds, seed_name = seeds_for(lang)
    same_all = True
    for name, against in (("seeds", seeds), ("self", None)):
        ref, t_ref = timed(brute_force, texts, against)
        got, t_new = timed(nearest_scores, texts, against)
        same = ref == (got.scores, got.nearest)
        same_all &= same
        what = f"vs {len(seeds)} seeds ({seed_name})" if against is not None else "each vs the others"
        print(f"{n} {lang} instructions {what}: brute force {t_ref:.2f} s, nearest_scores {t_new:.3f} s "
              f"({'identical' if same else 'DIFFERENT'} scores and nearest instructions)")
        print(f"RESULT name=nearest_{name}_vs_brute_force_{lang}_{n} ratio={t_ref / t_new:.0f} identical={same}",
              flush=True)
    return same_all


def at_scale(n: int, lang: str, seed: int, against_seeds: bool, limit: int, target_s: float,
             dup_share: float = 0.15) -> None:
    texts = [r.instruction for r in make_records(n, lang, seed, dup_share=dup_share)]
    seeds, seed_name = seeds_for(lang)
    result, t = timed(nearest_scores, texts, seeds if against_seeds else None, limit=limit)
    what = f"vs {len(seeds)} seeds" if against_seeds else (
        f"self, a sample of {len(result.indices):,}" if result.sampled else "self")
    what += "" if dup_share else " (no near copies)"
    mean = sum(result.scores) / max(len(result.scores), 1)
    print(f"{n:,} {lang} instructions {what}: {t:.1f} s, mean nearest ROUGE-L {mean:.3f}; "
          f"{work_line(len(result.indices))}")
    name = "seeds" if against_seeds else ("self_sampled" if result.sampled else "self")
    name += "" if dup_share else "_no_copies"
    print(f"RESULT name=nearest_{name}_{lang}_{n} seconds={t:.1f} target={target_s:g}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref-n", type=int, default=300, help="instructions for the brute-force comparison")
    ap.add_argument("--seeds-n", type=int, default=50_000, help="instructions scored against the seeds")
    ap.add_argument("--n", type=int, default=20_000, help="instructions scored against each other")
    ap.add_argument("--big", type=int, help="also a set this large against itself, sampled to --limit")
    ap.add_argument("--limit", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    nearest_module._Pool = _CountingPool
    print(f"kernel warm-up (numba import, compiled-code load): {warm_up():.2f} s, not timed below")
    same = all([against_brute_force(args.ref_n, lang, args.seed) for lang in ("en", "zh")])
    for lang in ("en", "zh"):
        at_scale(args.seeds_n, lang, args.seed, True, args.limit, target_s=5)
        at_scale(args.n, lang, args.seed, False, args.limit, target_s=30)
    # Without near copies most best matches are weak, the bounds prune less: the harder case.
    at_scale(args.n, "en", args.seed, False, args.limit, target_s=30, dup_share=0.0)
    if args.big:
        at_scale(args.big, "en", args.seed, False, args.limit, target_s=120)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
