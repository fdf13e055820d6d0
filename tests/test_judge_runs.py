"""The judge inside real runs: `generate --judge` and `filter --judge` from the CLI in a subprocess,
against loopback OpenAI-compatible servers that generate and judge (scripted scores): what is kept,
what the records and the summary say, and that a run killed with SIGKILL and rerun pays for no
judgement twice."""
from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.fake_openai_server import FakeOpenAI, prompt_of, serve_in_thread
from selfinstruct.teachers.base import Request
from tests import sim_teacher
from tests.sim_teacher import reply

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JUDGE_MARK = re.compile(r"<<<(example-[0-9a-f]+)>>>")


def judged_instruction(prompt: str) -> str:
    """The instruction inside a judge prompt (the line after the instruction label)."""
    lines = prompt.split("\n")
    label = next(i for i, line in enumerate(lines) if line in ("[Instruction]", "【指令】"))
    return lines[label + 1]


def scripted_judge(prompt: str) -> str:
    """Low scores for 'Explain …' / '请介绍山…' tasks, an unreadable answer for 'Compare …', high
    scores for the rest; generation prompts get the simulated teacher's answers."""
    if not JUDGE_MARK.search(prompt):
        return reply(prompt)
    instruction = judged_instruction(prompt)
    if instruction.startswith("Compare"):
        return "I think this example is rather good overall."          # no score: unparseable
    if instruction.startswith("Explain") or instruction.startswith("请介绍山"):
        return "Score: 3\nReason: vague and incomplete"
    return "Score: 8\nReason: clear and correct"


@pytest.fixture
def server(monkeypatch):
    # The simulated teacher draws its tasks from a process-wide counter: start it afresh, so that
    # every test sees the same tasks (among the first: an 'Explain …' and a 'Compare …') whatever
    # ran before it.
    monkeypatch.setattr(sim_teacher, "_counter", itertools.count())
    with serve_in_thread(FakeOpenAI(text_fn=scripted_judge, latency=0.01)) as s:
        yield s


def judge_prompts(server) -> list[str]:
    return [prompt_of(r.json) for r in server.received() if JUDGE_MARK.search(prompt_of(r.json))]


def run_cli(*args, env_extra=None, timeout=300):
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", **(env_extra or {})}
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def generate_args(server, out, *extra):
    return ("generate", "--teacher", "openai", "--base-url", server.url, "--model", "fake-model",
            "--out", out, "--no-progress", "--no-report", *extra)


def test_generate_with_the_judge_keeps_only_well_scored_examples(server, tmp_path, read_json, read_jsonl):
    out = tmp_path / "o"
    r = run_cli(*generate_args(server, out, "--num", "12", "--concurrency", "4", "--judge"))
    assert r.returncode == 0, r.stderr
    data = read_json(out / "data.json")
    assert len(data) == 12
    assert not any(d["instruction"].startswith(("Explain", "Compare")) for d in data)
    records = read_jsonl(out / "records.jsonl")
    assert [r["instruction"] for r in records] == [d["instruction"] for d in data]
    assert {(r["judge_score"], r["judge_reason"]) for r in records} == {(8, "clear and correct")}
    rejects = [json.loads(line) for line in open(out / "rejects.jsonl", encoding="utf-8")]
    low = [x for x in rejects if x["reason"] == "judge_low_score"]
    unreadable = [x for x in rejects if x["reason"] == "judge_unparseable"]
    assert low and all(x["detail"] == "vague and incomplete" and x["record"]["judge_score"] == 3 for x in low)
    assert all(x["record"]["instruction"].startswith("Compare") for x in unreadable)
    summary = read_json(out / "summary.json")
    assert summary["rejected_per_stage"]["judge"] == {
        k: v for k, v in {"judge_low_score": len(low), "judge_unparseable": len(unreadable)}.items() if v}
    assert summary["tokens"]["per_stage"]["judge"]["prompt"] > 0
    # every decided candidate was judged, an unreadable one three times (different requests); more
    # may have been judged when the run stopped (in flight then, like generation requests)
    requests = {(prompt_of(r.json), r.json.get("seed")) for r in server.received()
                if JUDGE_MARK.search(prompt_of(r.json))}
    decided = [d["instruction"] for d in data] + [x["record"]["instruction"] for x in low + unreadable]
    judged = Counter(judged_instruction(prompt) for prompt, _ in requests)
    assert {i: judged[i] for i in decided} == {i: 3 if i.startswith("Compare") else 1 for i in decided}
    per_stage = summary["requests_per_stage"]
    assert len(decided) + 2 * len(unreadable) <= per_stage["judge"]["paid"] <= len(requests)
    assert per_stage["triples"]["paid"] + per_stage["judge"]["paid"] == summary["requests"]["paid"]
    keys = Counter((prompt_of(r.json), r.json.get("seed"), r.json.get("temperature"))
                   for r in server.received() if JUDGE_MARK.search(prompt_of(r.json)))
    assert max(keys.values()) == 1                       # no request sent twice


def test_a_separate_judge_endpoint_gets_every_judgement_and_nothing_else(server, tmp_path, read_json):
    with serve_in_thread(FakeOpenAI(text_fn=scripted_judge, latency=0.01)) as judge_server:
        out = tmp_path / "o"
        r = run_cli(*generate_args(server, out, "--num", "6", "--concurrency", "2",
                                   "--judge-base-url", judge_server.url, "--judge-model", "judge-model",
                                   "--judge-min-score", "5"))
        assert r.returncode == 0, r.stderr
        assert judge_prompts(server) == []
        assert len(judge_prompts(judge_server)) == len(judge_server.received()) > 0
        assert {r.json["model"] for r in judge_server.received()} == {"judge-model"}
        summary = read_json(out / "summary.json")
        assert summary["judge_teacher"]["name"] == "openai:judge-model"
        assert summary["settings"]["judge"]["min_score"] == 5


def test_filter_with_the_judge_scores_every_record_and_a_rerun_pays_nothing(server, tmp_path, read_jsonl):
    data = tmp_path / "d.json"
    rows = [{"instruction": f"{verb} item number {i} of the list in detail.", "input": "",
             "output": f"A detailed answer about item {i}."}
            for i, verb in enumerate(["Describe", "Explain", "Summarize", "Outline"] * 10)]
    data.write_text(json.dumps(rows))
    args = ("filter", data, "--out", tmp_path / "f", "--no-progress", "--no-report", "--skip", "rouge,minhash",
            "--judge-base-url", server.url, "--judge-model", "m", "--judge-min-score", "5")
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    kept = read_jsonl(tmp_path / "f" / "records.jsonl")
    assert len(kept) == 30 and all(k["judge_score"] == 8 for k in kept)
    assert "judge_low_score 10" in r.stdout
    sent = len(server.received())
    assert sent == 40
    again = run_cli(*args)                                # the journal in the output folder answers
    assert again.returncode == 0, again.stderr
    assert len(server.received()) == sent
    assert again.stdout.splitlines()[1:] == r.stdout.splitlines()[1:]
    fresh = run_cli(*args[:3], tmp_path / "g", *args[4:])  # a new folder: the response cache answers
    assert fresh.returncode == 0, fresh.stderr
    assert len(server.received()) == sent


def test_filter_killed_while_judging_and_rerun_judges_each_record_once(tmp_path, read_jsonl):
    n = 300
    data = tmp_path / "d.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"instruction": f"Describe case {i} of the study in two sentences.",
                                "output": f"Case {i} is described here in two sentences."}) + "\n")
    with serve_in_thread(FakeOpenAI(text_fn=scripted_judge, latency=0.05)) as slow:
        args = ("filter", data, "--out", tmp_path / "f", "--no-progress", "--no-report", "--no-cache",
                "--skip", "rouge,minhash", "--judge-base-url", slow.url, "--judge-concurrency", "8")
        env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
        p = subprocess.Popen([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(slow.received()) < n // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        before = len(slow.received())
        assert n // 3 <= before < n
        time.sleep(0.3)                                   # what the dead process sent has arrived
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        kept = read_jsonl(tmp_path / "f" / "records.jsonl")
        assert len(kept) == n and all(k["judge_score"] == 8 for k in kept)
        prompts = Counter(judge_prompts(slow))
        assert len(prompts) == n
        # Only requests in flight at the kill (at most the concurrency) may have been sent twice.
        assert sum(c - 1 for c in prompts.values()) <= 8


@pytest.mark.report
def test_generate_writes_the_report_with_the_judge_scores_and_prints_its_path(server, tmp_path):
    out = tmp_path / "o"
    args = [a for a in generate_args(server, out, "--num", "12", "--judge-min-score", "5") if a != "--no-report"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"report: {out / 'report.html'}"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "judge_low_score" in page and "clear and correct" in page
    assert (out / "report_judge.png").is_file()


def test_filter_judge_defaults_to_the_endpoint_of_the_environment(server, tmp_path, read_jsonl):
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"instruction": "Describe a quiet harbor at dawn in two sentences.",
                                 "input": "", "output": "Boats rest. Gulls wake."}]))
    r = run_cli("filter", data, "--out", tmp_path / "f", "--no-progress", "--no-report", "--judge",
                env_extra={"OPENAI_BASE_URL": server.url, "OPENAI_MODEL": "env-model"})
    assert r.returncode == 0, r.stderr
    assert [k["judge_score"] for k in read_jsonl(tmp_path / "f" / "records.jsonl")] == [8]
    assert {q.json["model"] for q in server.received()} == {"env-model"}


def test_a_judge_that_cannot_follow_the_format_stops_the_run_with_one_error_line(tmp_path, error_line):
    with serve_in_thread(FakeOpenAI(text_fn=lambda prompt: "What a lovely example!")) as babbler:
        data = tmp_path / "d.jsonl"
        data.write_text("".join(json.dumps({"instruction": f"Describe harbor number {i} at dawn.",
                                            "output": f"Harbor {i} is calm."}) + "\n" for i in range(40)))
        r = run_cli("filter", data, "--out", tmp_path / "f", "--no-progress", "--no-report",
                    "--skip", "rouge,minhash", "--judge-base-url", babbler.url, "--judge-concurrency", "1")
        assert error_line(r) == (
            "Error: the judge gave 24 records in a row no readable score, even when asked again (last "
            "answer: 'What a lovely example!'); it cannot follow the answer format: use a stronger judge "
            "model (--judge-model, --judge-base-url)")
        # records are judged together: others had asked once or twice when the 24th failed a third time
        assert 24 * 3 <= len(babbler.received()) < 40 * 3
        assert (tmp_path / "f" / "judgements.jsonl").is_file()      # what was paid for is kept


def test_filter_max_cost_stops_the_judge_and_a_rerun_with_more_goes_on_without_paying_twice(
        server, tmp_path, error_line, read_jsonl):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Describe lighthouse number {i} in one line.",
                                        "output": f"Lighthouse {i} stands tall."}) + "\n" for i in range(60)))
    args = ["filter", data, "--out", tmp_path / "f", "--no-progress", "--no-report", "--skip", "rouge,minhash",
            "--judge-base-url", server.url, "--judge-model", "gpt-4o-mini", "--judge-concurrency", "2"]
    r = run_cli(*args, "--max-cost", "0.0005")
    assert error_line(r) == (f"Error: --max-cost 0.0005: the judge's budget is spent; what it judged is kept "
                             f"in {tmp_path / 'f' / 'judgements.jsonl'}: rerun with a larger --max-cost to go on")
    paid = len(server.received())
    assert 0 < paid < 60
    r = run_cli(*args, "--max-cost", "1")
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(tmp_path / "f" / "records.jsonl")) == 60
    assert len(server.received()) == 60                  # the first run's judgements were not paid again


def test_generate_with_the_judge_reruns_from_the_cache_identically_and_sends_nothing(server, tmp_path, read_json):
    cache = tmp_path / "cache"
    env = {"SELFINSTRUCT_CACHE_DIR": str(cache)}
    a = run_cli(*generate_args(server, tmp_path / "a", "--num", "10", "--concurrency", "4", "--judge"),
                env_extra=env)
    assert a.returncode == 0, a.stderr
    sent = len(server.received())
    b = run_cli(*generate_args(server, tmp_path / "b", "--num", "10", "--concurrency", "4", "--judge"),
                env_extra=env)
    assert b.returncode == 0, b.stderr
    assert len(server.received()) == sent
    assert read_json(tmp_path / "a" / "data.json") == read_json(tmp_path / "b" / "data.json")
    # (the reject counts may differ: units past the quota are decided as far as they got when it
    # was reached, which depends on timing)
    assert all(read_json(tmp_path / run / "summary.json")["rejected"]["judge_low_score"] > 0 for run in "ab")


def test_generate_with_the_judge_killed_and_resumed_ends_with_num_and_pays_no_judgement_twice(
        tmp_path, read_json, read_jsonl, monkeypatch):
    monkeypatch.setattr(sim_teacher, "_counter", itertools.count())
    with serve_in_thread(FakeOpenAI(text_fn=scripted_judge, latency=0.05)) as slow:
        out = tmp_path / "o"
        args = generate_args(slow, out, "--num", "40", "--concurrency", "4", "--judge", "--no-cache")
        env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
        journal = out / "journal.jsonl"
        p = subprocess.Popen([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            accepted = [e for e in read_jsonl(journal, torn_ok=True) if e["ev"] == "accept"] if journal.exists() else []
            if len(accepted) >= 10:
                break
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        before = [e["record"]["instruction"] for e in read_jsonl(journal, torn_ok=True) if e["ev"] == "accept"]
        assert 10 <= len(before) < 40
        journaled = {e["key"] for e in read_jsonl(journal, torn_ok=True) if e["ev"] == "resp"}
        time.sleep(0.3)                                   # what the dead process sent has arrived
        resumed_at = time.monotonic()
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        data = read_json(out / "data.json")
        assert len(data) == 40 and [d["instruction"] for d in data][: len(before)] == before
        records = read_jsonl(out / "records.jsonl")
        assert all(rec["judge_score"] == 8 for rec in records)
        resent = [q for q in slow.received() if q.t > resumed_at
                  and request_key(q.json) in journaled]
        assert resent == []


def request_key(body: dict) -> str:
    """The journal's key (``Request.key``) of a chat request the server received."""
    return Request(prompt=prompt_of(body), max_tokens=body["max_tokens"], temperature=body["temperature"],
                   top_p=body["top_p"], stop=tuple(body.get("stop", ())), seed=body.get("seed")).key()


def test_a_run_judged_by_one_model_is_not_resumed_with_another(server, tmp_path, error_line):
    out = tmp_path / "o"
    r = run_cli(*generate_args(server, out, "--num", "3", "--judge-base-url", server.url, "--judge-model", "a"))
    assert r.returncode == 0, r.stderr
    again = run_cli(*generate_args(server, out, "--num", "5", "--judge-base-url", server.url, "--judge-model", "b"))
    assert error_line(again) == (f"Error: {out} holds a run made with --recipe alpaca --lang en --teacher openai "
                                 f"--judge a,{server.url}; rerun with those options or choose another --out")
