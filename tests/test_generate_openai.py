"""`selfinstruct generate --teacher openai` end to end, from the real CLI in a subprocess, against the
loopback OpenAI-compatible server: output, cache, auth errors, budget, and SIGKILL in mid-run."""
import os
import subprocess
import sys

import pytest

from selfinstruct.cache import ResponseCache
from selfinstruct.teachers.base import Request
from tests.fake_openai_server import FakeOpenAI, api_error, prompt_of, serve_in_thread
from tests.kill_resume import assert_nothing_journaled_was_sent_again, kill_and_resume
from tests.sim_teacher import reply

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "sk-test-SECRET-4242"


@pytest.fixture
def server():
    with serve_in_thread(FakeOpenAI(text_fn=reply, latency=0.02)) as s:
        yield s


def cli(server, out, *args, env_extra=None, cache_dir=None):
    """The command line and environment of a generate run; the response cache goes to ``cache_dir``,
    by default the test's own $SELFINSTRUCT_CACHE_DIR (see conftest.py)."""
    cache_dir = cache_dir or os.environ["SELFINSTRUCT_CACHE_DIR"]
    env = {**os.environ, "OPENAI_API_KEY": KEY, "SELFINSTRUCT_CACHE_DIR": str(cache_dir), **(env_extra or {})}
    cmd = [sys.executable, "cli.py", "generate", "--teacher", "openai", "--base-url", server.url,
           "--model", "fake-model", "--out", out, "--no-progress", "--no-report", *args]
    return cmd, env


def run(server, out, *args, **kw):
    cmd, env = cli(server, out, *args, **kw)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def files_under(*dirs):
    for d in dirs:
        for base, _, names in os.walk(d):
            for n in names:
                yield os.path.join(base, n)


def test_generate_against_a_server_writes_exactly_num_and_never_the_key(server, tmp_path, selfinstruct_cache_dir,
                                                                        read_json):
    out = str(tmp_path / "out")
    r = run(server, out, "--num", "10", "--concurrency", "4", "--price-in", "1", "--price-out", "2")
    assert r.returncode == 0, r.stderr
    data = read_json(os.path.join(out, "data.json"))
    assert len(data) == 10 and len({d["instruction"] for d in data}) == 10
    summary = read_json(os.path.join(out, "summary.json"))
    assert summary["teacher"]["name"] == "openai:fake-model"
    assert summary["tokens"]["completion"] > 0 and summary["cost_usd"] > 0
    assert all(h["authorization"] == f"Bearer {KEY}" for h in (q.headers for q in server.requests))
    # The cache is where $SELFINSTRUCT_CACHE_DIR says and holds the answers, so scanning it means something.
    cache_file = selfinstruct_cache_dir / "responses.sqlite"
    assert cache_file.is_file()
    with ResponseCache(cache_file) as cache:
        assert 0 < len(cache) <= server.count
    scanned = list(files_under(out, selfinstruct_cache_dir))
    assert str(cache_file) in scanned and os.path.join(out, "journal.jsonl") in scanned
    for path in scanned:
        assert KEY.encode() not in open(path, "rb").read(), path


def test_a_rerun_into_a_new_folder_is_served_by_the_cache(server, tmp_path, read_json):
    cache = tmp_path / "cache"
    a = run(server, str(tmp_path / "a"), "--num", "6", "--concurrency", "1", cache_dir=cache)
    assert a.returncode == 0, a.stderr
    assert (cache / "responses.sqlite").is_file()
    paid = server.count
    b = run(server, str(tmp_path / "b"), "--num", "6", "--concurrency", "1", cache_dir=cache)
    assert b.returncode == 0, b.stderr
    assert server.count == paid            # not one request more
    assert read_json(tmp_path / "a" / "data.json") == read_json(tmp_path / "b" / "data.json")
    assert read_json(tmp_path / "b" / "summary.json")["requests"].get("cached", 0) >= 1


def test_a_bad_key_stops_with_one_line_and_exit_2(server, tmp_path, error_line):
    server.responder = lambda body, n: api_error(401, "Incorrect API key provided: sk-tes**4242.",
                                                 "invalid_api_key")
    r = run(server, str(tmp_path / "o"), "--num", "3")
    assert error_line(r).startswith("Error: teacher returned HTTP 401 (invalid_api_key)")


def test_max_cost_stops_cleanly_before_the_budget(server, tmp_path, read_json):
    out = str(tmp_path / "o")
    r = run(server, out, "--num", "500", "--concurrency", "2", "--price-in", "1000", "--price-out", "1000",
            "--max-cost", "1.5")
    assert r.returncode == 0, r.stderr
    summary = read_json(os.path.join(out, "summary.json"))
    assert summary["stopped"].startswith("max_cost")
    assert 0 < summary["kept"] < 500
    assert summary["cost_usd"] <= 1.5


def request_key(body: dict) -> str:
    """The journal's key (``Request.key``) of a chat request the server received."""
    return Request(prompt=prompt_of(body), max_tokens=body["max_tokens"], temperature=body["temperature"],
                   top_p=body["top_p"], stop=tuple(body.get("stop", ())), seed=body.get("seed")).key()


@pytest.mark.slow
def test_sigkill_in_mid_run_then_resume_ends_with_exactly_num_and_never_pays_twice(server, tmp_path, read_json):
    out = str(tmp_path / "o")
    n = 100
    cmd, env = cli(server, out, "--num", str(n), "--concurrency", "4", "--no-cache", "--recipe", "self-instruct")
    runs = kill_and_resume(cmd, out, env, seed=7, num=n)
    data = read_json(os.path.join(out, "data.json"))
    assert len(data) == n
    assert len({(d["instruction"], d["input"]) for d in data}) == n
    assert [d["instruction"] for d in data][: len(runs.seen)] == runs.seen
    sent = [(r.t, request_key(r.json)) for r in server.requests]
    assert_nothing_journaled_was_sent_again(runs, out, sent)
    assert sum(t > runs.journaled_by[-1][0] for t, _ in sent) > 0      # the last run did send
