"""Run every benchmark under benchmarks/ and collect their RESULT lines.

    python benchmarks/run_all.py            # default sizes (about 30-40 minutes on two cores)
    python benchmarks/run_all.py --full     # adds the 1M-record ROUGE-L (one and two workers, Ray) / MinHash / decontamination runs
    python benchmarks/run_all.py --only rouge minhash

Each benchmark measures its own baseline in the same run and prints a ratio; this script only runs
them one after the other (never in parallel: they time CPU work) and repeats the RESULT lines at the end.
"generate" includes its scenario r, whose baseline is the previous commit's loop (HEAD~1, exported
with git archive and pip-installed into a temporary folder): run it from a git checkout.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = {
    "rouge": ["bench_rouge.py"],
    "parallel": ["bench_parallel_filter.py"],
    "minhash": ["bench_minhash.py"],
    "decontam": ["bench_decontam.py"],
    "nearest": ["bench_nearest.py"],
    "rules": ["bench_rules.py"],
    "judge": ["bench_judge.py"],
    "teacher": ["bench_teacher_throughput.py"],
    "generate": ["bench_generate_throughput.py"],
    "train": ["bench_train.py"],
    "embedded": ["bench_embedded.py"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHES))
    args = ap.parse_args()
    results, failed = [], []
    for name in args.only or BENCHES:
        cmd = [sys.executable, os.path.join(HERE, BENCHES[name][0])]
        if args.full and name in ("rouge", "parallel", "minhash", "decontam"):
            cmd.append("--full")
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith("RESULT"):
                results.append(line.rstrip())
        if proc.wait() != 0:
            failed.append(name)
    print("\n".join(["", "== results"] + results))
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
