"""Judge a JSON-lines file of records through a JournaledAsker, as ``selfinstruct filter`` does, in a
process of its own: tests/test_judge.py kills it with SIGKILL midway and runs it again.

    python tests/judge_driver.py --base-url URL --records in.jsonl --journal judge.jsonl \\
        --out results.jsonl [--cache cache.sqlite] [--concurrency 8] [--min-score 0]

Every record is judged concurrently (the asker bounds what is in flight). At the end ``--out`` gets
one line per record, in input order: its id, score, reason, and the rejection (if any); stdout gets
``STATS {…}`` (the asker's counts).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from selfinstruct.asker import JournaledAsker
from selfinstruct.cache import ResponseCache
from selfinstruct.filters.judge import Judge
from selfinstruct.record import Record
from selfinstruct.teachers.openai import OpenAITeacher


def read_records(path: str) -> list[Record]:
    with open(path, encoding="utf-8") as f:
        return [Record.from_dict(json.loads(line)) for line in f if line.strip()]


async def judge_all(args: argparse.Namespace, records: list[Record]) -> dict:
    teacher = OpenAITeacher(base_url=args.base_url, model="judge-model", api_key="",
                            concurrency=args.concurrency, backoff_base=0.001, timeout=600)
    cache = ResponseCache(args.cache) if args.cache else None
    try:
        async with JournaledAsker(teacher, args.journal, cache) as ask:
            judge = Judge(min_score=args.min_score).bind(ask)
            verdicts = await asyncio.gather(*(judge.check(r) for r in records))
            stats = ask.stats()
    finally:
        if cache is not None:
            cache.close()
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for record, verdict in zip(records, verdicts):
            f.write(json.dumps({"id": record.id, "judge_score": record.judge_score,
                                "judge_reason": record.judge_reason,
                                "reason": verdict.reason if verdict else None,
                                "detail": verdict.detail if verdict else None},
                               ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--records", required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--min-score", type=int, default=0)
    args = parser.parse_args()
    stats = asyncio.run(judge_all(args, read_records(args.records)))
    print("STATS " + json.dumps(stats["requests"]), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
