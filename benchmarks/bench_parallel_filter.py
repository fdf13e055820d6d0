"""Parallel ROUGE-L novelty: ``selfinstruct filter --only rouge`` with one worker, two local worker
processes and Ray on two local CPUs, on the same inputs; the outputs must be identical.

Two inputs: ``make_corpus`` records (Self-Instruct-like, 15% near-copies; 1M with --full) and a
template-heavy set of our own (``--templated`` records from 50 templates: most are near-copies of
each other, the case where candidate pairs grow with the square of a cluster). Each run is its own
process (``run_filter`` in a fresh interpreter, so that every run pays the same imports); timings
are the command's own ``elapsed_seconds`` (reading and writing included) and its "rouge" stage
seconds. The baseline is ``--workers 1``: with one worker ``RougeNovelty`` takes the code path of
the commit before issue 15 unchanged (the in-process engine; the sharded path only starts on an
engine with several workers).

Reported per run: wall seconds, the speed-up over one worker, the serial share (the coordinator
process's CPU seconds over the run's wall seconds: what it does while the workers wait or run),
the coordinator's peak RSS and each worker's peak RSS (``engine.peak_rss()``). The Ray row is
skipped, with a note, when ``selfinstruct.engines.ray`` or Ray itself is missing.

    python benchmarks/bench_parallel_filter.py                      # 200K corpus + 100K templated
    python benchmarks/bench_parallel_filter.py --full               # 1M corpus + 200K templated
    python benchmarks/bench_parallel_filter.py --records 50000 --templated 20000 --no-ray

Prints ``RESULT name=... ratio|seconds|mb=... target=...`` lines; exits 1 if outputs differ.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

# Runs in the child interpreter: python -c RUNNER INPUT OUT ENGINE WORKERS
RUNNER = r"""
import json, resource, sys, time
from contextlib import contextmanager
import selfinstruct.curate as curate
from selfinstruct.engines import EngineSettings

info = {}
opened = curate.open_engine

@contextmanager
def spied(settings):
    with opened(settings) as engine:
        try:
            yield engine
        finally:
            info["worker_rss"] = engine.peak_rss() if engine.workers > 1 or engine.name == "ray" else []
curate.open_engine = spied

path, out, name, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
started = time.monotonic()
cpu0 = time.process_time()
summary = curate.run_filter([path], out, only=["rouge"], progress=False, started=started,
                            engine=EngineSettings(name, workers))
children = resource.getrusage(resource.RUSAGE_CHILDREN)
info.update(wall=summary["elapsed_seconds"], coordinator_cpu=time.process_time() - cpu0,
            workers_cpu=children.ru_utime + children.ru_stime,
            coordinator_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            kept=summary["kept"], rouge_seconds=summary["seconds_per_stage"].get("rouge"))
print("BENCH_INFO " + json.dumps(info), flush=True)
"""


def templated(n: int, seed: int = 0, templates: int = 50) -> list[dict]:
    """``n`` English instructions from ``templates`` templates of 6-14 words with 2-3 slots filled
    from small word lists: clusters of thousands of records, most within ROUGE-L 0.7 of others."""
    rng = random.Random(seed)
    words = ("report story plan guide letter poem summary list recipe speech review email essay "
             "outline schedule budget checklist song riddle lesson").split()
    topics = ("rivers bees trains coffee volcanoes chess bread jazz the moon glaciers tea maps clocks "
              "birds rain forests cities gardens markets bridges").split()
    audiences = ("children beginners managers students engineers tourists parents teachers nurses "
                 "farmers").split()
    verbs = "write draft prepare create compose produce design sketch".split()
    forms = []
    for _ in range(templates):
        filler = rng.sample("a short clear simple detailed friendly formal brief useful careful "
                            "practical honest".split(), rng.randint(2, 4))
        head = rng.choice(verbs)
        tail = rng.sample("about for with using in under without before after during".split(), 2)
        forms.append(f"{head} {' '.join(filler)} {{w}} {tail[0]} {{t}} {tail[1]} {{a}}")
    rows = []
    for _ in range(n):
        text = rng.choice(forms).format(w=rng.choice(words), t=rng.choice(topics), a=rng.choice(audiences))
        rows.append({"instruction": text[0].upper() + text[1:] + ".", "output": "ok"})
    return rows


def write_inputs(folder: Path, records: int, templated_n: int) -> dict[str, Path]:
    from make_corpus import make_records
    paths = {}
    if records:
        paths[f"corpus_{records}"] = folder / "corpus.jsonl"
        with open(paths[f"corpus_{records}"], "w", encoding="utf-8") as f:
            for r in make_records(records, "en", 0):
                f.write(json.dumps({"instruction": r.instruction, "input": r.input, "output": r.output},
                                   ensure_ascii=False) + "\n")
    if templated_n:
        paths[f"templated_{templated_n}"] = folder / "templated.jsonl"
        with open(paths[f"templated_{templated_n}"], "w", encoding="utf-8") as f:
            for row in templated(templated_n):
                f.write(json.dumps(row) + "\n")
    return paths


def run_one(path: Path, out: Path, engine: str, workers: int, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(path), str(out), engine, str(workers)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_INFO ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"filter --engine {engine} --workers {workers} failed ({proc.returncode}):\n"
                         + "\n".join(proc.stderr.splitlines()[-20:]))
    return json.loads(lines[-1].split(" ", 1)[1])


def outputs(out: Path) -> tuple[bytes, list[tuple[str, str]]]:
    """data.json's bytes and (source, reason) of every reject, in order."""
    rejects = []
    with open(out / "rejects.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            rejects.append((row["source"], row["reason"]))
    return (out / "data.json").read_bytes(), rejects


def ray_available() -> str | None:
    """None when a Ray row can run, else why not."""
    if importlib.util.find_spec("selfinstruct.engines.ray") is None:
        return "selfinstruct.engines.ray is not there"
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install -e '.[ray]')"
    return None


def bench(name: str, path: Path, tmp: Path, with_ray: bool, timeout: float) -> bool:
    runs = [("local", 1), ("local", 2)] + ([("ray", 2)] if with_ray else [])
    results, first = {}, None
    identical = True
    for engine, workers in runs:
        out = tmp / f"{name}-{engine}-{workers}"
        info = run_one(path, out, engine, workers, timeout)
        got = outputs(out)
        if first is None:
            first = got
        elif got != first:
            identical = False
            print(f"  DIFFERENT outputs: {engine} x{workers} vs local x1", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        results[(engine, workers)] = info
        rss = ", ".join(f"{r / 2**20:.0f}" for r in info["worker_rss"]) or "-"
        print(f"  {engine} x{workers}: {info['wall']:.1f} s wall, rouge stage {info['rouge_seconds'] or 0:.1f} s, "
              f"coordinator {info['coordinator_cpu']:.1f} CPU s ({info['coordinator_cpu'] / info['wall']:.0%} "
              f"of wall), local workers {info['workers_cpu']:.1f} CPU s, kept {info['kept']:,}, peak RSS coordinator {info['coordinator_rss'] / 2**20:.0f} MB, "
              f"workers [{rss}] MB", flush=True)
    one, two = results[("local", 1)], results[("local", 2)]
    print(f"RESULT name=parallel_rouge_{name}_workers2_vs_1 ratio={one['wall'] / two['wall']:.2f} target=1.6 "
          f"identical={identical}", flush=True)
    print(f"RESULT name=parallel_rouge_{name}_serial_share ratio={two['coordinator_cpu'] / two['wall']:.2f} "
          f"target=info", flush=True)
    print(f"RESULT name=parallel_rouge_{name}_worker_peak_rss mb={max(two['worker_rss']) / 2**20:.0f} "
          f"target=info", flush=True)
    if ("ray", 2) in results:
        ray = results[("ray", 2)]
        print(f"RESULT name=parallel_rouge_{name}_ray2_vs_local2 ratio={ray['wall'] / two['wall']:.2f} "
              f"target=<=1.5 identical={identical}", flush=True)
    return identical


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, help="make_corpus records (default 200,000; 1M with --full; 0: skip)")
    ap.add_argument("--templated", type=int, help="template-heavy records (default 100,000; 200K with --full; 0: skip)")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--no-ray", action="store_true", help="leave out the Ray row")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed per run")
    args = ap.parse_args(argv)
    records = args.records if args.records is not None else (1_000_000 if args.full else 200_000)
    templated_n = args.templated if args.templated is not None else (200_000 if args.full else 100_000)
    why_not = "--no-ray" if args.no_ray else ray_available()
    if why_not:
        print(f"note: no Ray row ({why_not})", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    try:
        same = True
        for name, path in write_inputs(tmp, records, templated_n).items():
            print(f"== {name}", flush=True)
            same &= bench(name, path, tmp, why_not is None, args.timeout)
        return 0 if same else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
