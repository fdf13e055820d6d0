"""`selfinstruct generate --teacher openai` end to end, from the real CLI in a subprocess, against the
loopback OpenAI-compatible server: output, cache, auth errors, budget, and SIGKILL at random moments."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.fake_openai_server import FakeOpenAI, api_error, serve_in_thread
from tests.sim_teacher import reply

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "sk-test-SECRET-4242"


@pytest.fixture
def server():
    with serve_in_thread(FakeOpenAI(text_fn=reply, latency=0.02)) as s:
        yield s


def cli(server, out, *args, env_extra=None, cache_dir=None):
    env = {**os.environ, "OPENAI_API_KEY": KEY, "SELFINSTRUCT_CACHE_DIR": str(cache_dir or out + ".cache"),
           **(env_extra or {})}
    cmd = [sys.executable, "cli.py", "generate", "--teacher", "openai", "--base-url", server.url,
           "--model", "fake-model", "--out", out, "--no-progress", *args]
    return cmd, env


def run(server, out, *args, **kw):
    cmd, env = cli(server, out, *args, **kw)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def files_under(*dirs):
    for d in dirs:
        for base, _, names in os.walk(d):
            for n in names:
                yield os.path.join(base, n)


def test_generate_against_a_server_writes_exactly_num_and_never_the_key(server, tmp_path):
    out = str(tmp_path / "out")
    r = run(server, out, "--num", "10", "--concurrency", "4", "--price-in", "1", "--price-out", "2")
    assert r.returncode == 0, r.stderr
    data = json.load(open(os.path.join(out, "data.json")))
    assert len(data) == 10 and len({d["instruction"] for d in data}) == 10
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["teacher"]["name"] == "openai:fake-model"
    assert summary["tokens"]["completion"] > 0 and summary["teacher"]["cost_usd"] > 0
    assert all(h["authorization"] == f"Bearer {KEY}" for h in (q.headers for q in server.requests))
    for path in files_under(out, out + ".cache"):
        assert KEY.encode() not in open(path, "rb").read(), path


def test_a_rerun_into_a_new_folder_is_served_by_the_cache(server, tmp_path):
    cache = tmp_path / "cache"
    a = run(server, str(tmp_path / "a"), "--num", "6", "--concurrency", "1", cache_dir=cache)
    assert a.returncode == 0, a.stderr
    paid = server.count
    b = run(server, str(tmp_path / "b"), "--num", "6", "--concurrency", "1", cache_dir=cache)
    assert b.returncode == 0, b.stderr
    assert server.count == paid            # not one request more
    assert json.load(open(tmp_path / "a" / "data.json")) == json.load(open(tmp_path / "b" / "data.json"))
    assert json.load(open(tmp_path / "b" / "summary.json"))["requests"].get("cached", 0) >= 1


def test_a_bad_key_stops_with_one_line_and_exit_2(server, tmp_path):
    server.responder = lambda body, n: api_error(401, "Incorrect API key provided: sk-tes**4242.",
                                                 "invalid_api_key")
    r = run(server, str(tmp_path / "o"), "--num", "3")
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: teacher returned HTTP 401 (invalid_api_key)")
    assert "Traceback" not in r.stderr


def test_max_cost_stops_cleanly_before_the_budget(server, tmp_path):
    out = str(tmp_path / "o")
    r = run(server, out, "--num", "500", "--concurrency", "2", "--price-in", "1000", "--price-out", "1000",
            "--max-cost", "1.5")
    assert r.returncode == 0, r.stderr
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["stopped"].startswith("max_cost")
    assert 0 < summary["accepted"] < 500
    assert summary["teacher"]["cost_usd"] <= 1.5


def accepted_in(journal):
    got = []
    if not os.path.exists(journal):
        return got
    for line in open(journal, encoding="utf-8"):
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev["ev"] == "accept":
            got.append(ev["record"]["instruction"])
    return got


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_ends_with_exactly_num(server, tmp_path):
    out = str(tmp_path / "o")
    n = 60
    cmd, env = cli(server, out, "--num", str(n), "--concurrency", "4", "--no-cache", "--recipe", "self-instruct")
    rng = random.Random(7)
    seen: list[str] = []
    kills = 0
    for _ in range(6):
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.8, 2.5))
        if p.poll() is not None:
            break
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        kills += 1
        now = accepted_in(os.path.join(out, "journal.jsonl"))
        assert now[: len(seen)] == seen          # nothing accepted before was lost
        seen = now
    assert kills >= 2
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.load(open(os.path.join(out, "data.json")))
    assert len(data) == n
    assert len({(d["instruction"], d["input"]) for d in data}) == n
    assert [d["instruction"] for d in data][: len(seen)] == seen
