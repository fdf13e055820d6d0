"""README command 1 on the embedded teacher: the working tree against the commit before issue 13
(``76e3d8f``, today's behaviour), both measured in the same run, English and Chinese.

Each version runs ``selfinstruct generate --num N --out TMP`` (the embedded SmolLM2-135M teacher,
the alpaca recipe, every default) in its own interpreter: the baseline is exported with ``git
archive`` and pip-installed into a temporary folder by ``benchmarks/_baseline.py``. While a run goes,
a watcher thread reads its journal as it grows and notes when each event first appears, so that
the model's load can be told apart from generation without changing either version:

- *loaded*: the first ``start`` event (the scheduler writes it once the teacher has loaded);
- *accepted examples per minute* = accepted / (end of the run - loaded) x 60, the end being
  summary.json's elapsed_seconds (the process may exit later: a batch still running in a thread
  holds it) or the kill; target >= 5x the baseline's;
- *useful token share* = the completion tokens of the responses whose text became part of an
  accepted record (a unit's first response once per unit with an accepted record, plus the answer
  request of an accepted record that was answered separately) / all completion tokens the run's
  journal holds; target >= 40 %;
- *elapsed_seconds*: summary.json's (the whole command: imports, model load, generation, outputs);
  target <= 100 s for English, with under a third of the candidates ``unparseable``
  (candidates = accepted + rejected, ``over_quota`` left out: those were never judged).

A run that reaches ``--cap-minutes`` is killed (the journal keeps what it did) and measured up to
then: the baseline's Chinese run seldom reaches its first example in that time.

    python benchmarks/bench_embedded.py                       # en --num 5, zh --num 3, cap 12 min
    python benchmarks/bench_embedded.py --only ours --num-en 5
    python benchmarks/bench_embedded.py --baseline 76e3d8f --cap-minutes 8

Timings depend on what else runs on the machine: the load average is printed with every run.

Notes (measured while choosing the design, two shared cores, SmolLM2-135M fp32):

- Reading a prompt costs about as much per token as writing one: 16 alpaca prompts (4,623
  tokens, padded to 16 x 370) took 34.5 s to read, their next 64 tokens 4.5 s more. So the
  teacher is shown tasks without example outputs, one task per request, and each output comes from
  a short chat request (~40 prompt tokens).
- transformers 5.24's continuous batching (``model.generate_batch``, paged attention over sdpa)
  works on the CPU: 8 chat prompts, 48 tokens each forced (no end of turn), took 61.0 s against
  137.5 s for a static ``model.generate`` batch at the same load (about 6); with free ends (128
  tokens at most) 43.1 s / 29.4 s against 101.3 s / 144.7 s. But it drops the repetition penalty
  (unsupported there; without it SmolLM2 wrote different, shorter answers) and has no stop strings
  (a stop would have to be found in the streamed tokens and the request cancelled), so the
  teacher keeps static batches and keeps them from idling instead: answers before new prompts,
  stop strings that end a task at its end and an answer at its paragraph, one task per request.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _baseline  # noqa: E402

BASELINE = "76e3d8f"          # the commit before issue 13
POLL_S = 0.2


@dataclass
class Measured:
    version: str
    lang: str
    num: int
    finished: bool = False
    wall_s: float = 0.0                    # the process, start to exit (or kill)
    loaded_s: float | None = None          # when the first unit started
    accept_s: list[float] = field(default_factory=list)
    elapsed_seconds: float | None = None   # summary.json
    rejects: Counter = field(default_factory=Counter)
    completion_tokens: int = 0
    useful_tokens: int = 0
    requests: Counter = field(default_factory=Counter)     # stage -> responses journaled
    examples: list[dict] = field(default_factory=list)
    load_avg: tuple[float, float] = (0.0, 0.0)             # 1-minute load at start and end
    teacher: dict = field(default_factory=dict)             # summary.json's teacher stats (batches…)

    @property
    def accepted(self) -> int:
        return len(self.accept_s)

    @property
    def end_s(self) -> float:
        """When the run was over: summary.json's elapsed_seconds (a process may take longer to
        exit, waiting for a batch still running in a thread), else the kill at the cap."""
        return self.elapsed_seconds if self.elapsed_seconds is not None else self.wall_s

    @property
    def after_load_s(self) -> float:
        return self.end_s - (self.loaded_s if self.loaded_s is not None else self.end_s)

    @property
    def per_minute(self) -> float:
        return self.accepted / self.after_load_s * 60 if self.after_load_s > 0 else 0.0

    @property
    def useful_share(self) -> float:
        return self.useful_tokens / self.completion_tokens if self.completion_tokens else 0.0

    @property
    def candidates(self) -> int:
        return self.accepted + sum(n for r, n in self.rejects.items() if r != "over_quota")

    @property
    def unparseable_share(self) -> float:
        return self.rejects["unparseable"] / self.candidates if self.candidates else 0.0


class JournalWatcher(threading.Thread):
    """Notes the time each new ``start`` / ``accept`` event of a growing journal first shows."""

    def __init__(self, path: Path, t0: float):
        super().__init__(daemon=True)
        self.path, self.t0 = path, t0
        self.first_start: float | None = None
        self.accepts: list[float] = []
        self.done = threading.Event()
        self._offset, self._partial = 0, b""

    def run(self) -> None:
        while not self.done.wait(POLL_S):
            self.poll()
        self.poll()

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        now = time.perf_counter() - self.t0
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.startswith(b'{"ev": "start"') and self.first_start is None:
                self.first_start = now
            elif line.startswith(b'{"ev": "accept"'):
                self.accepts.append(now)


def events(path: Path) -> list[dict]:
    """The journal's complete lines (a line torn by the kill is left out)."""
    out = []
    for line in path.read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def answer_keys(record: dict, lang: str) -> set[str]:
    """The keys the working tree's alpaca recipe gives the answer request for ``record`` (short or
    not: the teacher decides which one it sent)."""
    from selfinstruct.recipes.alpaca import answer_request
    if record.get("meta", {}).get("answered") != "separately":
        return set()
    return {answer_request(lang, record["instruction"], record.get("input", ""), short=short).key()
            for short in (False, True)}


def tokens(m: Measured, journal: list[dict]) -> None:
    """All completion tokens, and those of the responses that ended in accepted records."""
    from selfinstruct.teachers.base import Request
    first_key = {ev["uid"]: Request.from_dict(ev["req"]).key() for ev in journal if ev["ev"] == "start"}
    spent = {}
    for ev in journal:
        if ev["ev"] == "resp":
            spent[ev["key"]] = ev["resp"].get("completion_tokens", 0)
            m.requests[ev.get("stage", "?")] += 1
    useful = set()
    for ev in journal:
        if ev["ev"] == "accept":
            rec = ev["record"]
            useful.add(first_key.get(ev["key"].split(":", 1)[0]))
            if m.version == "ours":
                useful |= answer_keys(rec, m.lang)
            if len(m.examples) < 3:
                m.examples.append({k: rec.get(k, "") for k in ("instruction", "input", "output")})
        elif ev["ev"] == "reject":
            m.rejects[ev["reason"]] += 1
    m.completion_tokens = sum(spent.values())
    m.useful_tokens = sum(spent.get(k, 0) for k in useful if k)


def measure(version: _baseline.Version, lang: str, num: int, cap_s: float, tmp: Path,
            env: dict[str, str]) -> Measured:
    out = tmp / f"out-{version.name}-{lang}"
    m = Measured(version.name, lang, num)
    args = ["generate", "--num", str(num), "--lang", lang, "--out", str(out), "--no-progress",
            "--no-report"]
    m.load_avg = (os.getloadavg()[0], 0.0)
    t0 = time.perf_counter()
    watcher = JournalWatcher(out / "journal.jsonl", t0)
    watcher.start()
    try:
        version.run_cli(args, env, cwd=tmp, timeout=cap_s)
        m.finished = True
    except subprocess.TimeoutExpired:
        pass                            # killed at the cap: the journal holds what it did
    finally:
        m.wall_s = time.perf_counter() - t0
        watcher.done.set()
        watcher.join()
    m.load_avg = (m.load_avg[0], os.getloadavg()[0])
    m.loaded_s, m.accept_s = watcher.first_start, watcher.accepts
    summary = out / "summary.json"
    if m.finished and summary.exists():
        done = json.loads(summary.read_text(encoding="utf-8"))
        m.elapsed_seconds, m.teacher = done.get("elapsed_seconds"), done.get("teacher", {})
    if (out / "journal.jsonl").exists():
        tokens(m, events(out / "journal.jsonl"))
    return m


def show(m: Measured) -> None:
    status = "finished" if m.finished else "killed at the cap"
    loaded = f"{m.loaded_s:.1f}" if m.loaded_s is not None else "-"
    print(f"  {m.version:8s} {m.lang}: {status} in {m.wall_s:.1f} s (loaded at {loaded} s, "
          f"summary elapsed_seconds {m.elapsed_seconds}); {m.accepted} accepted "
          f"({', '.join(f'{t:.0f}' for t in m.accept_s)} s); {m.per_minute:.2f}/min after load; "
          f"tokens {m.useful_tokens}/{m.completion_tokens} useful ({m.useful_share:.1%}); requests "
          f"{dict(m.requests)}; rejects {dict(m.rejects)} ({m.unparseable_share:.0%} of "
          f"{m.candidates} candidates unparseable); load {m.load_avg[0]:.1f} -> {m.load_avg[1]:.1f}; "
          f"teacher {m.teacher}", flush=True)
    for ex in m.examples:
        print(f"    e.g. {json.dumps(ex, ensure_ascii=False)[:300]}", flush=True)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "inf"


def results(ours: dict[str, Measured], base: dict[str, Measured]) -> None:
    for lang, m in ours.items():
        b = base.get(lang)
        bpm = b.per_minute if b else 0.0
        print(f"RESULT name=embedded_accepted_per_minute_{lang} value={m.per_minute:.2f} "
              f"baseline={bpm:.2f} ratio={ratio(m.per_minute, bpm)} target=5 accepted={m.accepted} "
              f"baseline_accepted={b.accepted if b else '-'}", flush=True)
        print(f"RESULT name=embedded_useful_token_share_{lang} value={m.useful_share:.3f} "
              f"baseline={b.useful_share if b else 0:.3f} target=0.40", flush=True)
        print(f"RESULT name=embedded_unparseable_share_{lang} value={m.unparseable_share:.3f} "
              f"baseline={b.unparseable_share if b else 0:.3f} target=0.333", flush=True)
        if lang == "en":
            print(f"RESULT name=embedded_readme_command_1_elapsed_s value={m.end_s:.1f} "
                  f"baseline={b.end_s if b else 0:.1f} ratio={ratio(m.end_s, b.end_s if b else 0)} target=100 "
                  f"after_load={m.after_load_s:.1f} baseline_after_load={b.after_load_s if b else 0:.1f} "
                  f"process_exit={m.wall_s:.1f} baseline_process_exit={b.wall_s if b else 0:.1f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default=BASELINE, metavar="REF", help="today's behaviour (default %(default)s)")
    ap.add_argument("--num-en", type=int, default=5)
    ap.add_argument("--num-zh", type=int, default=3)
    ap.add_argument("--cap-minutes", type=float, default=12.0, help="per run; a run still going is killed")
    ap.add_argument("--only", choices=["ours", "baseline"], help="measure one version")
    ap.add_argument("--langs", nargs="+", default=["en", "zh"], choices=["en", "zh"])
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
          flush=True)
    tmp = _baseline.make_tmp("bench_embedded_")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SELFINSTRUCT_CACHE_DIR=str(tmp / "cache"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    nums = {"en": args.num_en, "zh": args.num_zh}
    measured: dict[str, dict[str, Measured]] = {"ours": {}, "baseline": {}}
    try:
        versions = []
        if args.only != "baseline":
            versions.append(_baseline.working_tree())
        if args.only != "ours":
            versions.append(_baseline.install(args.baseline, tmp, "baseline"))
            print(f"baseline {args.baseline} = {versions[-1].label} installed under {tmp}", flush=True)
        for lang in args.langs:
            for v in versions:
                m = measure(v, lang, nums[lang], args.cap_minutes * 60, tmp, env)
                measured[v.name][lang] = m
                show(m)
    except _baseline.VersionError as e:
        print(f"ERROR: {e}", flush=True)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if measured["ours"]:
        results(measured["ours"], measured["baseline"])
    else:
        for lang, b in measured["baseline"].items():
            print(f"RESULT name=embedded_accepted_per_minute_{lang}_baseline value={b.per_minute:.2f} "
                  f"useful_share={b.useful_share:.3f} accepted={b.accepted}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
