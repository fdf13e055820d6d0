"""Request throughput and client CPU of the whole ``selfinstruct generate --teacher openai`` loop
(teacher + alpaca parsing + filter chain + journal) against a loopback fake server, with the stock
``AsyncOpenAI`` client doing the same number of requests on the same server as the baseline.

benchmarks/bench_teacher_throughput.py measures the OpenAITeacher class alone; this one runs the whole
loop. The server (tests/fake_openai_server.py's ``FakeOpenAI`` answering with
``tests.sim_teacher.reply``: three new, distinct alpaca triples per request) runs in a child process
started from tests/fake_openai_server.py (``--sim --stats``), so this process's CPU time is the
client's alone.

Scenarios (ideal = in_flight / mean latency):
  a: 256 in flight, 1 s latency    -> ideal 256 req/s, target >= 95% of ideal   (5,000 requests)
  b:  64 in flight, 100 ms latency -> ideal 640 req/s, target >= 85% of ideal   (5,000 requests)
  c: client CPU ms per request (the loop's, against the stock client's), printed with a and b
  r:  64 in flight, latency drawn per request uniformly from 50-500 ms (seeded, ``--seed``)
     -> ideal 64 / 0.275 s = 233 req/s; baseline: the generate loop of the commit ``--baseline``
     (default HEAD~1) measured in the same run; target >= 90% of the baseline   (2,000 requests)

a and b run the loop in-process (``selfinstruct.generate.Settings`` + ``run_async``, ``teacher="openai"``,
no cache, no progress bar) against the stock ``AsyncOpenAI`` client and OpenAITeacher alone doing the
same number of requests on the same server. ``--num`` is 3 x requests (each reply holds three
triples), so the loop makes about ``requests`` paid requests; throughput = the requests the server
answered during the run (its ``/_stats`` counter, not the loop's summary, whose fields are being
reworked) / wall time of ``run_async`` (start-up, connection opening and the final render included:
what a user waits for). Requests cancelled in flight when the loop reaches ``num`` are not answered,
so not counted.

r runs two versions of the loop, each in its own interpreter, through the CLI (the one interface that
is the same in both): ``python -m selfinstruct.cli generate --teacher openai --base-url URL --model
fake --num 3xN --concurrency 64 --no-cache --no-progress --out TMP`` with a dummy OPENAI_API_KEY and
SELFINSTRUCT_CACHE_DIR in a scratch folder. "ours" is the working tree (or ``--ours REF``), the baseline
is ``--baseline REF`` exported with ``git archive`` and pip-installed (not editable) into a temporary
folder (see benchmarks/_baseline.py; both versions print where ``selfinstruct`` and
``selfinstruct.filters`` were imported from and the run stops if either comes from anywhere else).
Throughput is measured at the server: requests answered / (time the last answer was written - time
the first request arrived), from the server's counters reset before each run. This leaves out what
is not the loop (interpreter start-up, imports, numba loading its compiled kernels, reading seeds, the
final writes), which differs between versions and with the machine's load, and reads nothing from
either version (its summary.json's fields are changing), so the same measure applies to any commit.
It still includes everything the loop does while requests are in flight, including its ramp-up
to 64 in flight and the final drain. Each version first does a short warm-up run (numba compiles
the baseline's kernels into its fresh install there), then they alternate, ours then baseline,
``--repeat`` times (default 3); the median of each counts and ratio = ours / baseline. The latency
draws restart from the seed at every run, so each run sees the same sequence of latencies (in order
of arrival). For a change that spans several commits pass the commit before the change:
``--baseline <commit before the first one>``.

    python benchmarks/bench_generate_throughput.py                 # a, b and r, ~3 minutes
    python benchmarks/bench_generate_throughput.py --repeat 3      # best of 3 for a and b
    python benchmarks/bench_generate_throughput.py --only b --requests 1000   # smoke test
    python benchmarks/bench_generate_throughput.py --only r --baseline a2b5ca8  # vs that commit
    python benchmarks/bench_generate_throughput.py --only r --requests 300 --repeat 1 --baseline HEAD

Prints ``RESULT name=... value=... baseline=... ratio=...`` lines (ratio = value / baseline).
"""
from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"a": 0.95, "b": 0.85}
R_IN_FLIGHT, R_LATENCY, R_TARGET = 64, (0.05, 0.5), 0.90   # r: target is a fraction of the baseline


sys.path.insert(0, str(Path(__file__).resolve().parent))
import _baseline  # noqa: E402
from bench_teacher_throughput import Run, Server  # noqa: E402  shared with the teacher benchmark


def SimServer(latency: float) -> Server:
    """The fake server in a child process answering like the simulated teacher (``--sim``)."""
    return Server(latency, answers="--sim")


async def run_generate_loop(server: SimServer, n: int, in_flight: int) -> Run:
    from selfinstruct.generate import Settings, run_async

    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        s = Settings(num=3 * n, out=os.path.join(tmp, "out"), teacher="openai", cache=None,
                     progress=False, teacher_options={"base_url": server.url, "model": "fake",
                                                      "api_key": "sk-bench", "concurrency": in_flight})
        server.stats(reset=True)
        cpu0, srv0, t0 = time.process_time(), server.cpu_s(), time.perf_counter()
        summary = await run_async(s)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        answered = server.stats(reset=True)["answered"]
    return Run("generate", answered, _failed(summary), wall, cpu, server.cpu_s() - srv0)


def _failed(summary) -> int:
    """Failed requests from the loop's summary if it still says so where it used to (0 if not)."""
    try:
        return int(summary["requests"].get("failed", 0))
    except (KeyError, TypeError, AttributeError, ValueError):
        return 0


def run_stock(server: SimServer, n: int, in_flight: int) -> Run:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_teacher_throughput import run_stock_openai
    return asyncio.run(run_stock_openai(server, n, in_flight))


def run_teacher_alone(server: SimServer, n: int, in_flight: int) -> Run:
    """OpenAITeacher without the loop (bench_teacher_throughput's client): what the loop adds."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_teacher_throughput import run_teacher
    return asyncio.run(run_teacher(server, n, in_flight))


def run_generate(server: SimServer, n: int, in_flight: int) -> Run:
    return asyncio.run(run_generate_loop(server, n, in_flight))


CLIENTS = {"generate": run_generate, "AsyncOpenAI": run_stock, "OpenAITeacher": run_teacher_alone}


def scenario(tag: str, in_flight: int, latency: float, n: int, repeat: int) -> None:
    """The loop, the stock client and OpenAITeacher alone ``repeat`` times each, interleaved; the
    fastest run counts, the spread of the loop's runs is printed (a shared machine's noise only slows
    a run down)."""
    ideal = in_flight / latency
    runs: dict[str, list[Run]] = {name: [] for name in CLIENTS}
    server = SimServer(latency)
    try:
        run_generate(server, in_flight, in_flight)       # warm-up: imports, seeds, filter set-up
        for _ in range(repeat):
            for name, client in CLIENTS.items():
                run = client(server, n, in_flight)
                runs[name].append(run)
                print(f"  [{tag}] run: {name:13s} {run.req_s:7.1f} req/s ({run.req_s / ideal:6.1%}), "
                      f"{run.requests} requests, {run.cpu_ms:.3f} ms CPU/req, load "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    finally:
        server.close()
    best = {k: max(v, key=lambda r: r.req_s) for k, v in runs.items()}
    ours, stock, alone = best["generate"], best["AsyncOpenAI"], best["OpenAITeacher"]
    fractions = [r.req_s / ideal for r in runs["generate"]]
    cpus = [r.cpu_ms for r in runs["generate"]]
    waves = -(-ours.requests // in_flight)
    print(f"  [{tag}] {n} requests, {in_flight} in flight, {latency:g} s latency: ideal {ideal:.0f} "
          f"req/s; even a perfect client needs {waves} round trips for {ours.requests} requests "
          f"({ours.requests / (waves * latency) / ideal:.1%} of ideal end to end)")
    for name, run in best.items():
        print(f"  [{tag}] best {name:13s} {run.req_s:7.1f} req/s ({run.req_s / ideal:6.1%} of "
              f"{ideal:.0f}), client CPU {run.cpu_ms:.3f} ms/req ({run.cpu_s / run.wall_s:.0%} of a "
              f"core), server CPU {1000 * run.server_cpu_s / max(run.requests, 1):.3f} ms/req, "
              f"errors {run.errors}", flush=True)
    if repeat > 1:
        print(f"  [{tag}] generate over {repeat} runs: fraction of ideal min {min(fractions):.1%} "
              f"median {statistics.median(fractions):.1%} max {max(fractions):.1%}; CPU ms/req min "
              f"{min(cpus):.3f} max {max(cpus):.3f}")
    print(f"RESULT name=generate_throughput_{tag}_fraction_of_ideal value={ours.req_s / ideal:.4f} "
          f"baseline={stock.req_s / ideal:.4f} ratio={ours.req_s / stock.req_s:.3f}")
    print(f"RESULT name=generate_cpu_ms_per_request_{tag} value={ours.cpu_ms:.4f} "
          f"baseline={stock.cpu_ms:.4f} ratio={ours.cpu_ms / stock.cpu_ms:.3f}")
    print(f"RESULT name=generate_cpu_ms_per_request_{tag}_vs_teacher_alone value={ours.cpu_ms:.4f} "
          f"baseline={alone.cpu_ms:.4f} ratio={ours.cpu_ms / alone.cpu_ms:.3f}")
    verdict = "meets" if ours.req_s / ideal >= TARGETS[tag] else "MISSES"
    print(f"  [{tag}] {verdict} the target of {TARGETS[tag]:.0%} of ideal")
    if ours.errors:
        print(f"WARNING: {ours.errors} failed requests in scenario {tag}")


# -- scenario r: random latency, the working tree against a previous commit, both through the CLI --


@dataclass
class CliRun:
    version: str
    answered: int          # ok answers the server wrote during the run
    received: int          # completion requests it received
    window_s: float        # first request received -> last answer written
    wall_s: float          # the whole subprocess (start-up and shutdown included), for reference
    max_in_flight: int
    mean_latency: float    # of the latencies the server drew during the run

    @property
    def req_s(self) -> float:
        return self.answered / self.window_s


def perfect_client_s(n: int, in_flight: int, lo: float, hi: float, seed: int) -> float:
    """When a client with no overhead, keeping ``in_flight`` requests in flight until it has ``n``
    answers (then dropping the rest, as the loop does), gets its ``n``-th answer, on the server's
    latency sequence (``random.Random(seed).uniform(lo, hi)`` in order of arrival)."""
    rng = random.Random(seed)
    ends = [rng.uniform(lo, hi) for _ in range(in_flight)]
    heapq.heapify(ends)
    for _ in range(n - 1):
        heapq.heappush(ends, heapq.heappop(ends) + rng.uniform(lo, hi))
    return heapq.heappop(ends)


def cli_run(version: _baseline.Version, server: Server, n: int, in_flight: int, tmp: Path,
            env: dict[str, str]) -> CliRun:
    out = Path(tempfile.mkdtemp(prefix=f"out-{version.name}-", dir=tmp))
    args = ["generate", "--teacher", "openai", "--base-url", server.url, "--model", "fake",
            "--num", str(3 * n), "--concurrency", str(in_flight), "--no-cache", "--no-progress",
            "--out", str(out / "out")]
    server.stats(reset=True)
    t0 = time.perf_counter()
    try:
        version.run_cli(args, env, cwd=out, timeout=120 + 30 * n / in_flight)
    finally:
        wall = time.perf_counter() - t0
        st = server.stats(reset=True)
        shutil.rmtree(out, ignore_errors=True)
    if not st["answered"] or st["first_received"] is None:
        raise _baseline.VersionError(f"{version.name}: the server answered no request")
    return CliRun(version.name, st["answered"], st["received"],
                  st["last_answered"] - st["first_received"], wall, st["max_in_flight"],
                  st["latency_sum"] / max(st["received"], 1))


def scenario_r(n: int, repeat: int, baseline_ref: str, ours_ref: str | None, seed: int) -> bool:
    """Scenario r (see the module docstring); returns whether it met its target."""
    lo, hi = R_LATENCY
    in_flight, mean = R_IN_FLIGHT, (lo + hi) / 2
    ideal = in_flight / mean
    tmp = _baseline.make_tmp("bench_generate_r_")
    server = None
    try:
        t0 = time.perf_counter()
        base = _baseline.install(baseline_ref, tmp, "baseline")
        ours = _baseline.working_tree() if ours_ref is None else _baseline.install(ours_ref, tmp, "ours")
        print(f"  [r] baseline {baseline_ref} = {base.label}"
              + ("" if ours_ref is None else f", ours {ours_ref} = {ours.label}")
              + f": installed under {tmp} in {time.perf_counter() - t0:.1f} s", flush=True)
        (tmp / "cache").mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPENAI_BASE_URL")}
        env.update(OPENAI_API_KEY="sk-bench-dummy", SELFINSTRUCT_CACHE_DIR=str(tmp / "cache"),
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        server = Server(0.0, answers="--sim", latency_range=R_LATENCY, seed=seed)
        versions = (ours, base)
        for v in versions:                  # warm-up; also checks where each imports from
            t0 = time.perf_counter()
            cli_run(v, server, in_flight, in_flight, tmp, env)
            print(f"  [r] {v.name:8s} ({v.label}): selfinstruct={v.files[0]} "
                  f"selfinstruct.filters={v.files[1]} (warm-up {time.perf_counter() - t0:.1f} s)",
                  flush=True)
        runs: dict[str, list[CliRun]] = {v.name: [] for v in versions}
        for i in range(repeat):
            for v in versions:
                run = cli_run(v, server, n, in_flight, tmp, env)
                runs[v.name].append(run)
                print(f"  [r] run {i + 1}: {v.name:8s} {run.req_s:7.1f} req/s ({run.req_s / ideal:6.1%} "
                      f"of ideal), {run.answered} answered of {run.received} received in "
                      f"{run.window_s:.2f} s, max {run.max_in_flight} in flight, mean latency "
                      f"{1000 * run.mean_latency:.0f} ms, process {run.wall_s:.1f} s, load "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {name: statistics.median(r.req_s for r in rs) for name, rs in runs.items()}
    answered = statistics.median(r.answered for r in runs["ours"])
    perfect = answered / perfect_client_s(int(answered), in_flight, lo, hi, seed)
    print(f"  [r] {n} requests, {in_flight} in flight, latency uniform {1000 * lo:.0f}-{1000 * hi:.0f} "
          f"ms (seed {seed}): ideal {in_flight} / {mean:.3f} s = {ideal:.1f} req/s; a client with no "
          f"overhead on the same latencies: {perfect:.1f} req/s ({perfect / ideal:.1%} of ideal) for "
          f"{answered:.0f} answers (ramp-up and the random latencies' spread)")
    for v in versions:
        rates = sorted(r.req_s for r in runs[v.name])
        print(f"  [r] median {v.name:8s} ({v.label}) {med[v.name]:7.1f} req/s ({med[v.name] / ideal:6.1%} "
              f"of ideal) over {len(rates)} runs, min {rates[0]:.1f} max {rates[-1]:.1f}")
    ratio = med["ours"] / med["baseline"]
    print(f"RESULT name=generate_throughput_r_vs_previous_commit value={med['ours']:.1f} "
          f"baseline={med['baseline']:.1f} ratio={ratio:.3f}")
    print(f"RESULT name=generate_throughput_r_fraction_of_ideal value={med['ours'] / ideal:.4f} "
          f"baseline={med['baseline'] / ideal:.4f} ratio={ratio:.3f}")
    verdict = "meets" if ratio >= R_TARGET else "MISSES"
    print(f"  [r] {verdict} the target of {R_TARGET:.0%} of the previous commit "
          f"({baseline_ref} = {base.label}): ours/baseline = {ratio:.1%}", flush=True)
    return ratio >= R_TARGET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per run (num = 3x); default 5,000 for a and b, 2,000 for r")
    parser.add_argument("--only", choices=["a", "b", "r"], action="append")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per client, interleaved; default 1 for a and b (the fastest "
                             "counts), 3 for r (the median counts)")
    parser.add_argument("--baseline", default="HEAD~1", metavar="REF",
                        help="r: the git commit whose loop is the baseline (default HEAD~1; for a "
                             "change spanning several commits, pass the commit before the change)")
    parser.add_argument("--ours", default=None, metavar="REF",
                        help="r: measure this commit instead of the working tree (e.g. --ours X "
                             "--baseline X checks the machinery: the ratio should be about 1)")
    parser.add_argument("--seed", type=int, default=0, help="r: seed of the latency draws")
    args = parser.parse_args()
    todo = args.only or ["a", "b", "r"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; scenarios {', '.join(todo)}")
    if "a" in todo:
        scenario("a", in_flight=256, latency=1.0, n=args.requests or 5000, repeat=args.repeat or 1)
    if "b" in todo:
        scenario("b", in_flight=64, latency=0.1, n=args.requests or 5000, repeat=args.repeat or 1)
    if "r" in todo:
        try:
            scenario_r(args.requests or 2000, args.repeat or 3, args.baseline, args.ours, args.seed)
        except _baseline.VersionError as e:
            print(f"ERROR in scenario r: {e}", flush=True)
            sys.exit(1)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
