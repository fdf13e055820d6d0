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
    python benchmarks/bench_judge.py --resume 50000       # SIGKILL halfway through 50,000, rerun

``--resume N`` instead judges N records in a child process (tests/judge_driver.py) against a server
in this process that answers the first N/2 judgements and then holds every request open; the child
is killed with SIGKILL once its journal holds N/2 answers, and run again to the end. The server
counts the answers it gave per prompt: ``repeats`` (answers given twice) must be 0 and every record
must come back scored.

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


def resume(n: int, concurrency: int) -> None:
    """The SIGKILL-and-rerun scenario (see the module docstring)."""
    import collections
    import os
    import signal
    sys.path.insert(0, str(ROOT))
    from tests.fake_openai_server import FakeOpenAI, hang, ok, prompt_of, serve_in_thread

    half = n // 2
    answers: collections.Counter = collections.Counter()
    killed = False

    def responder(body, arrival):
        if not killed and arrival >= half:
            return hang(3600)
        prompt = prompt_of(body)
        answers[hashlib.sha1(prompt.encode("utf-8")).digest()] += 1
        return ok(text=judge_text(prompt))

    server = FakeOpenAI(responder=responder, record=False)
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(server):
        tmp_path = Path(tmp)
        (tmp_path / "records.jsonl").write_text(
            "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records(n)), encoding="utf-8")
        journal = tmp_path / "judge.jsonl"
        cmd = [sys.executable, str(ROOT / "tests" / "judge_driver.py"), "--base-url", server.url,
               "--records", str(tmp_path / "records.jsonl"), "--journal", str(journal),
               "--out", str(tmp_path / "results.jsonl"), "--concurrency", str(concurrency)]
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        while not journal.exists() or journal.read_bytes().count(b"\n") < half:
            if child.poll() is not None:
                raise SystemExit("the judging process ended before it was killed")
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        first = time.perf_counter() - t0
        killed = True
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True).stdout
        second = time.perf_counter() - t0
        results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    scored = sum(r["judge_score"] is not None for r in results)
    print(f"killed after {first:.1f} s with {half} judgements journaled; rerun {second:.1f} s: {out.strip()}")
    print(f"RESULT name=resume_records_scored value={scored} of={n}")
    print(f"RESULT name=resume_distinct_prompts_answered value={len(answers)}")
    print(f"RESULT name=resume_repeated_answers value={sum(c - 1 for c in answers.values())}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--resume", type=int, default=None, metavar="N",
                        help="the SIGKILL-and-rerun scenario over N records instead")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    if args.resume is not None:
        resume(args.resume, args.concurrency)
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
