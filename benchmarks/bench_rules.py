"""Rule sets on good human-written data: how much each rule rejects under each set.

Reads the shared seed files when present (``../shared/data/self_instruct_seed_tasks.jsonl``,
``../shared/data/belle_zh_seed_tasks.json``) and this project's own check sets
(``tests/data/good_human_en.jsonl``, ``tests/data/good_human_zh.jsonl``: instructions written for this
check, of the kinds that misfire: translation of quoted text, maths starting with a number or a
quote, code, tasks carrying a dialogue or an article, requests for links, topic words such as
"language model", "music", "file", "video"). Each set runs through the quality-stage filters (the
language filter included; no exact, MinHash or ROUGE-L) under each rule set, with the run's
``lang`` (en or zh, from the file), ``paper`` being self-instruct or belle by that lang.

Prints, per data set, the share of records rejected by each reason under each rule set, then every
rejection under ``default`` (reason, detail, instruction head) for review, and a
``RESULT name=rules_default_<set> rejected=… of=… share=… target=0.01`` line per set: the share of
records with a non-empty output that the default set rejects (empty outputs are not counted).

    python benchmarks/bench_rules.py
    python benchmarks/bench_rules.py --data extra.jsonl:en --data other.json:zh

Always exits 0.
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

from selfinstruct.filters.registry import build_chain, select
from selfinstruct.readers import read_records
from selfinstruct.rules import RULE_SETS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = (
    (ROOT.parent / "shared" / "data" / "self_instruct_seed_tasks.jsonl", "en"),
    (ROOT.parent / "shared" / "data" / "belle_zh_seed_tasks.json", "zh"),
    (ROOT / "tests" / "data" / "good_human_en.jsonl", "en"),
    (ROOT / "tests" / "data" / "good_human_zh.jsonl", "zh"),
)
# Reasons that say nothing about a rule's precision: the output is missing.
NOT_COUNTED = {"empty_output"}


def quality_classes():
    return [cls for cls in select() if cls.stage == "quality"]


def run(records, rules: str, lang: str):
    """(reason counts, [(record, rejection)]) of the quality chain under ``rules``."""
    chain = build_chain(quality_classes(), {"lang": lang, "rules": rules})
    counts: collections.Counter = collections.Counter()
    rejected = []
    for r in records:
        v = chain.check(r)
        if v is not None:
            counts[v.reason] += 1
            rejected.append((r, v))
    return counts, rejected


def report(path: Path, lang: str) -> None:
    records = list(read_records(str(path)))
    with_output = sum(1 for r in records if r.output.strip())
    print(f"\n== {path.name} ({lang}): {len(records)} records, {with_output} with an output")
    per_set = {rules: run(records, rules, lang) for rules in RULE_SETS}
    reasons = sorted({reason for counts, _ in per_set.values() for reason in counts})
    print(f"{'reason':<26}" + "".join(f"{rules:>15}" for rules in RULE_SETS))
    for reason in reasons:
        cells = "".join(f"{100 * per_set[rules][0][reason] / max(1, len(records)):>14.1f}%" for rules in RULE_SETS)
        print(f"{reason:<26}{cells}")
    totals = "".join(f"{100 * sum(per_set[r][0].values()) / max(1, len(records)):>14.1f}%" for r in RULE_SETS)
    print(f"{'any':<26}{totals}")
    counted = [(r, v) for r, v in per_set["default"][1] if v.reason not in NOT_COUNTED and r.output.strip()]
    print(f"-- default-set rejections ({len(counted)} counted):")
    for r, v in per_set["default"][1]:
        head = " ".join(r.instruction.split())[:70]
        print(f"   {v.reason:<20} {v.detail[:40]:<40} | {head}")
    share = len(counted) / max(1, with_output)
    print(f"RESULT name=rules_default_{path.stem} rejected={len(counted)} of={with_output} "
          f"share={share:.4f} target=0.01")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", action="append", default=[],
                    help="PATH:LANG (en or zh); repeatable; replaces the default data sets")
    args = ap.parse_args(argv)
    data = [(Path(p.rsplit(":", 1)[0]), p.rsplit(":", 1)[1]) for p in args.data] or DEFAULT_DATA
    for path, lang in data:
        if not path.exists():
            print(f"\n== {path}: not present, skipped")
            continue
        report(path, lang)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
