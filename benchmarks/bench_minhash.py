"""MinHash near-duplicate filtering: the plain datasketch loop against MinHashDedup, same records.

The plain loop is what one writes with datasketch: per record one ``MinHash``, ``update`` once per
shingle (the same shingles as MinHashDedup: token bigrams for English, character trigrams for
Chinese), ``MinHashLSH.query``, the candidates verified with ``jaccard`` >= threshold, and
``insert`` when kept. MinHashDedup runs through a FilterChain (batches of 4,096 prepared at once).
The two use different hash functions, so they flag *roughly* the same duplicates: the overlap of
the two rejected sets is reported.

    python benchmarks/bench_minhash.py             # 100K English records (~2 min)
    python benchmarks/bench_minhash.py --lang zh
    python benchmarks/bench_minhash.py --full      # 1M records (the datasketch loop takes a while)
    python benchmarks/bench_minhash.py --full --no-baseline   # 1M, MinHashDedup alone

Prints ``RESULT name=... ratio=... target=...`` (and ``seconds=`` for 1M); always exits 0.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasketch import MinHash, MinHashLSH  # noqa: E402
from make_corpus import make_records  # noqa: E402

from selfinstruct.filters._minhash_sketch import SHINGLE_N  # noqa: E402
from selfinstruct.filters.base import FilterChain  # noqa: E402
from selfinstruct.filters.minhash import MinHashDedup  # noqa: E402
from selfinstruct.record import Record  # noqa: E402
from selfinstruct.text import script_lang, tokens  # noqa: E402


def shingles(text: str) -> list[str]:
    toks = tokens(text)
    n = min(SHINGLE_N[script_lang(text)], len(toks))
    return [" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)] if toks else []


def datasketch_rejected(records: list[Record], threshold: float, num_perm: int) -> set[int]:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[int, MinHash] = {}
    rejected: set[int] = set()
    for i, r in enumerate(records):
        grams = shingles(r.instruction + "\n" + r.input)
        if not grams:
            continue
        m = MinHash(num_perm=num_perm)
        for g in grams:
            m.update(g.encode("utf-8"))
        if any(kept[k].jaccard(m) >= threshold for k in lsh.query(m)):
            rejected.add(i)
            continue
        lsh.insert(i, m)
        kept[i] = m
    return rejected


def dedup_rejected(records: list[Record], threshold: float, num_perm: int) -> set[int]:
    position = {id(r): i for i, r in enumerate(records)}
    rejected: set[int] = set()
    chain = FilterChain([MinHashDedup(threshold, num_perm)], on_reject=lambda r, v: rejected.add(position[id(r)]))
    for _ in chain.run(records):
        pass
    return rejected


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, help="records (default 100,000; 1,000,000 with --full)")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--lang", choices=("en", "zh"), default="en")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--no-baseline", action="store_true", help="time MinHashDedup alone")
    args = ap.parse_args(argv)
    n = args.n or (1_000_000 if args.full else 100_000)
    records = make_records(n, args.lang, args.seed)
    rss_before = peak_rss_mb()

    ours, t_ours = timed(dedup_rejected, records, args.threshold, args.num_perm)
    rss_ours = peak_rss_mb()
    print(f"MinHashDedup: {t_ours:.1f} s ({n / t_ours:,.0f} records/s), {len(ours)} rejected, "
          f"peak RSS {rss_ours:.0f} MB ({rss_ours - rss_before:+.0f} MB over the corpus)", flush=True)
    if args.no_baseline:
        print(f"RESULT name=minhash_{args.lang}_{n} seconds={t_ours:.1f} target={60 if n >= 1_000_000 else '-'} "
              f"peak_rss_mb={rss_ours:.0f}")
        return 0
    theirs, t_theirs = timed(datasketch_rejected, records, args.threshold, args.num_perm)
    print(f"datasketch loop: {t_theirs:.1f} s ({n / t_theirs:,.0f} records/s), {len(theirs)} rejected, "
          f"peak RSS {peak_rss_mb():.0f} MB")
    both = len(ours & theirs)
    print(f"overlap: {both} rejected by both, {len(ours - theirs)} only by MinHashDedup, "
          f"{len(theirs - ours)} only by datasketch (Jaccard {both / max(1, len(ours | theirs)):.3f})")
    print(f"RESULT name=minhash_{args.lang}_{n} ratio={t_theirs / t_ours:.1f} target=4 "
          f"seconds={t_ours:.1f} overlap={both / max(1, len(ours | theirs)):.3f} peak_rss_mb={rss_ours:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
