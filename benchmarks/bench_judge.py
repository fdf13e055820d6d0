"""Judgements per second through ``JournaledAsker`` + ``Judge`` against the loopback fake server.

The server (tests/fake_openai_server.py's ``FakeOpenAI``, answering every prompt with a parseable
``Score: N`` / ``Reason: …``) runs in its own process with a fixed latency; this process judges
``--records`` records with every check gathered at once and the asker keeping ``--concurrency``
requests in flight. Ideal throughput is concurrency / latency (64 / 50 ms = 1,280 judgements/s).

Three passes over the same records:
  paid      a fresh journal and cache: every judgement is sent
  journal   the same journal again: every judgement is replayed, nothing sent
  cache     a fresh journal with the first pass's cache: every judgement is a cache hit

    python benchmarks/bench_judge.py                      # 5,000 records, 64 in flight, 50 ms
    python benchmarks/bench_judge.py --records 500        # smoke test

Prints ``RESULT name=... value=...`` lines (judgements/s, client CPU ms per judgement), and each
pass's client and server CPU seconds: on a machine with fewer free cores than the two processes
need, the paid pass is CPU-bound, not latency-bound.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def judge_text(prompt: str) -> str | None:
    """A parseable judgement that differs per prompt."""
    score = hashlib.sha256(prompt.encode("utf-8")).digest()[0] % 10 + 1
    return f"Score: {score}\nReason: benchmark judgement {score}."


def serve(latency: float) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fake_openai_server import FakeOpenAI

    async def run() -> None:
        server = FakeOpenAI(latency=latency, record=False, text_fn=judge_text, stats=True)
        await server.start()
        print(f"LISTENING {server.url}", flush=True)
        await asyncio.Event().wait()        # until the parent kills this process

    asyncio.run(run())


def records(n: int):
    from selfinstruct.record import Record
    tasks = [("Explain why the sky looks blue, case {i}.", "", "Air scatters short wavelengths more."),
             ("用一句话解释第{i}个成语的意思。", "画蛇添足", "做了多余的事，反而坏事。"),
             ("Add the numbers, case {i}.", "17 and 25", "42")]
    return [Record(instruction=t[0].format(i=i), input=t[1], output=t[2], id=str(i))
            for i in range(n) for t in [tasks[i % len(tasks)]]]


async def judge_pass(url: str, journal: Path, cache_path: Path, n: int, concurrency: int) -> dict:
    from selfinstruct.asker import JournaledAsker
    from selfinstruct.cache import ResponseCache
    from selfinstruct.filters.judge import Judge
    from selfinstruct.teachers.openai import OpenAITeacher

    batch = records(n)
    teacher = OpenAITeacher(base_url=url, model="bench-judge", api_key="", concurrency=concurrency)
    with ResponseCache(cache_path) as cache:
        t0, c0 = time.perf_counter(), time.process_time()
        async with JournaledAsker(teacher, journal, cache) as ask:
            judge = Judge().bind(ask)
            async with asyncio.TaskGroup() as group:
                for r in batch:
                    group.create_task(judge.check(r))
            stats = ask.stats()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    scored = sum(r.judge_score is not None for r in batch)
    return {"wall_s": wall, "cpu_s": cpu, "scored": scored, "requests": stats["requests"]}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", str(args.latency)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        if not line.startswith("LISTENING "):
            raise SystemExit(f"server did not start: {line!r}")
        url = line.split()[1]
        ideal = args.concurrency / args.latency
        print(f"{args.records} records, {args.concurrency} in flight, {args.latency * 1000:.0f} ms "
              f"latency: ideal {ideal:,.0f} judgements/s")
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            passes = [("paid", "j1.jsonl"), ("journal", "j1.jsonl"), ("cache", "j2.jsonl")]
            for name, journal in passes:
                server_cpu = cpu_s(proc.pid)
                r = asyncio.run(judge_pass(url, tmp_path / journal, tmp_path / "cache.sqlite",
                                           args.records, args.concurrency))
                server_cpu = cpu_s(proc.pid) - server_cpu
                assert r["scored"] == args.records, r
                rate = args.records / r["wall_s"]
                extra = f" ideal={ideal:.0f} ratio={rate / ideal:.3f}" if name == "paid" else ""
                print(f"RESULT name=judge_{name}_per_s value={rate:.0f}{extra}")
                print(f"RESULT name=judge_{name}_cpu_ms value={1000 * r['cpu_s'] / args.records:.3f}")
                print(f"  {name}: {json.dumps(r['requests'])} wall {r['wall_s']:.2f} s, client CPU "
                      f"{r['cpu_s']:.2f} s, server CPU {server_cpu:.2f} s")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
