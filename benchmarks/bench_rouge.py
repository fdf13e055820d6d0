"""ROUGE-L novelty: NoveltyIndex against the reference loop, then NoveltyIndex alone at scale.

The reference loop is what Self-Instruct / Alpaca do: for each instruction in order, score it with
rouge-score's ``_score_lcs`` against every kept instruction and reject it at the first F > 0.7.
Both sides get the same pre-tokenised English instructions (``selfinstruct.text.tokens``, checked
here to equal rouge-score's own tokenizer on them); the kept sets must be identical.

    python benchmarks/bench_rouge.py            # 1,000 vs reference, 50K en, 50K zh (~3 min)
    python benchmarks/bench_rouge.py --full     # 3,000 vs reference (~10 min of reference), 1M en
    python benchmarks/bench_rouge.py --ref-n 3000 --big 20000

Prints ``RESULT name=... ratio|seconds=... target=...`` lines; exits 1 only if the kept sets differ.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_corpus import make_records  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402

from selfinstruct.filters.rouge import NoveltyIndex  # noqa: E402
from selfinstruct.text import tokens  # noqa: E402


def reference_kept(token_lists: list[list[str]], threshold: float) -> list[int]:
    kept: list[int] = []
    pool: list[list[str]] = []
    for i, new in enumerate(token_lists):
        if any(rouge_scorer._score_lcs(new, old).fmeasure > threshold for old in pool):
            continue
        kept.append(i)
        pool.append(new)
    return kept


def index_kept(token_lists: list[list[str]], texts: list[str], threshold: float) -> list[int]:
    index = NoveltyIndex(threshold)
    kept: list[int] = []
    for i, new in enumerate(token_lists):
        if index.find(new) is None:
            index.add(new, texts[i])
            kept.append(i)
    scanned, survivors, verified = index.work_done()
    print(f"  per query: {scanned / len(token_lists):,.0f} postings read, {survivors / len(token_lists):,.0f} "
          f"passed the positional test, {verified / len(token_lists):,.1f} LCS verifications")
    return kept


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def corpus(n: int, lang: str, seed: int) -> tuple[list[list[str]], list[str]]:
    texts = [r.instruction for r in make_records(n, lang, seed)]
    return [tokens(t) for t in texts], texts


def check_tokenizer(texts: list[str]) -> None:
    rouge_tok = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)._tokenizer
    bad = [t for t in texts[:2000] if rouge_tok.tokenize(t) != tokens(t)]
    if bad:
        sys.exit(f"tokens() differs from rouge-score's tokenizer on: {bad[0]!r}")


def warm_up(threshold: float) -> float:
    """Import numba and load (or, on a new machine, compile) the index's kernel once per process,
    outside the timings: it is a fixed cost of seconds, not a per-instruction one."""
    t0 = time.perf_counter()
    index = NoveltyIndex(threshold)
    index.add(["warm", "up"], "warm up")
    index.find(["warm", "up"])
    return time.perf_counter() - t0


def against_reference(n: int, seed: int, threshold: float) -> None:
    toks, texts = corpus(n, "en", seed)
    check_tokenizer(texts)
    print(f"kernel warm-up (numba import, compiled-code load): {warm_up(threshold):.2f} s, not timed below")
    ref, t_ref = timed(reference_kept, toks, threshold)
    new, t_new = timed(index_kept, toks, texts, threshold)
    same = ref == new
    print(f"{n} en instructions: reference {t_ref:.1f} s, NoveltyIndex {t_new:.3f} s, "
          f"kept {len(new)} ({'identical' if same else 'DIFFERENT'} kept sets)")
    print(f"RESULT name=rouge_vs_reference_{n} ratio={t_ref / t_new:.0f} target={1000 if n >= 3000 else '1000@3000'} "
          f"identical={same}", flush=True)
    if not same:
        sys.exit(1)


def at_scale(n: int, lang: str, seed: int, threshold: float, target_s: float) -> None:
    toks, texts = corpus(n, lang, seed)
    warm_up(threshold)
    kept, t = timed(index_kept, toks, texts, threshold)
    print(f"{n} {lang} instructions: NoveltyIndex {t:.1f} s ({n / t:,.0f}/s), kept {len(kept)}")
    print(f"RESULT name=rouge_{lang}_{n} seconds={t:.1f} target={target_s:g}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref-n", type=int, help="instructions for the reference comparison "
                    "(default 1000; 3000, the target's size, with --full: the reference is quadratic)")
    ap.add_argument("--big", type=int, default=50_000, help="instructions for the at-scale runs")
    ap.add_argument("--full", action="store_true", help="also run 1M English instructions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.7)
    args = ap.parse_args(argv)
    against_reference(args.ref_n or (3000 if args.full else 1000), args.seed, args.threshold)
    at_scale(args.big, "en", args.seed, args.threshold, target_s=15)
    at_scale(args.big, "zh", args.seed, args.threshold, target_s=15)
    if args.full:
        at_scale(1_000_000, "en", args.seed, args.threshold, target_s=600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
