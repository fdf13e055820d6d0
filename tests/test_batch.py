"""``--batch``: the OpenAI Batch API path of the OpenAI teacher, against the loopback files + batches
server (tests/fake_batch_server.py, one state step per poll, so nothing here depends on timing).

The teacher in-process: waves, shared lines, every terminal state and the partial error file
(retries and counts exact), max_attempts, fatal and passing refusals of the create, a create whose
answer was lost, torn output, --max-cost and batch prices, a resumed batch. The generate command
(in-process): whole runs in English and Chinese (the waves the server saw, every line answered once,
the cost at half price), the pool growing between waves, a bad key. The command in a subprocess,
SIGKILLed while a batch is in progress, between the create and its journal line, and before the
create reached the server: each resumes with one batch per wave, never a second one."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfinstruct.errors import TeacherError
from selfinstruct.teachers._batch import BATCH_PRICE_FACTOR, pending_in
from selfinstruct.teachers.base import BudgetExhausted, Request
from selfinstruct.teachers.openai import OpenAITeacher
from tests.fake_batch_server import FakeBatchServer, Outcome, serve_batches_in_thread
from tests.fake_openai_server import default_text
from tests.kill_resume import journal_events
from tests.sim_teacher import reply

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-batch-test-7777"


@pytest.fixture
def server():
    with serve_batches_in_thread(FakeBatchServer()) as s:
        yield s


def teacher_for(server, **options) -> OpenAITeacher:
    options.setdefault("concurrency", 4)
    return OpenAITeacher(base_url=server.url, batch=True, batch_poll=0.01, api_key="",
                         model="fake-model", **options)


def ask(teacher: OpenAITeacher, requests: list[Request], events=()) -> tuple[list, list]:
    """All ``requests`` at once (as the loop keeps ``concurrency`` wanted); returns the answers (or
    exceptions) and the journal events the teacher wrote."""
    written: list[dict] = []
    teacher.attach(written.append, list(events))

    async def main():
        await teacher.start()
        try:
            return await asyncio.gather(*(teacher.complete(r) for r in requests), return_exceptions=True)
        finally:
            await teacher.aclose()
    return asyncio.run(main()), written


def prompts(n: int, lang: str = "en") -> list[Request]:
    text = "Name {} rivers." if lang == "en" else "列出{}条河流。"
    return [Request(prompt=text.format(i), max_tokens=32) for i in range(n)]


def tokens(prompt: str) -> tuple[int, int]:
    """What the loopback server reports for a chat request of one user turn."""
    return len(prompt) // 4 + 1, len(default_text(prompt)) // 4 + 1


def assert_answered_once(server, requests: list[Request], answers: list) -> None:
    assert [a.text for a in answers] == [default_text(r.prompt) for r in requests]
    assert all(a.error is None for a in answers)
    assert set(server.answered) == {r.key() for r in requests}
    assert set(server.answered.values()) == {1}            # never answered twice


# -- waves ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_wave_is_concurrency_lines_and_the_rest_follow_at_batch_prices(server, lang):
    requests = prompts(6, lang)
    teacher = teacher_for(server, price_in=2.0, price_out=8.0)
    answers, events = ask(teacher, requests)
    assert_answered_once(server, requests, answers)
    assert server.lines_per_batch == [4, 2]
    for answer, request in zip(answers, requests):
        assert (answer.prompt_tokens, answer.completion_tokens) == tokens(request.prompt)
    paid = sum(a.prompt_tokens * 2.0 + a.completion_tokens * 8.0 for a in answers) / 1e6
    assert teacher.cost_usd() == pytest.approx(paid * BATCH_PRICE_FACTOR, abs=1e-6)
    assert teacher.stats()["price_in"] == 2.0            # the list price is what the summary shows
    assert teacher._batcher.stats() == {"batches_created": 2, "batches_resumed": 0,
                                        "requests_batched": 6, "retried": 0, "failed": 0,
                                        "by_status": {"completed": 2}}
    assert [(e["kind"], e.get("id")) for e in events] == [
        ("batch_file", None), ("batch", "batch_0001"), ("batch_done", "batch_0001"),
        ("batch_file", None), ("batch", "batch_0002"), ("batch_done", "batch_0002")]
    assert events[0]["keys"] == [r.key() for r in requests[:4]]
    assert server.created()[0]["endpoint"] == "/v1/chat/completions"


def test_identical_requests_share_one_line_and_one_answer(server):
    requests = prompts(2) + prompts(1)
    answers, _ = ask(teacher_for(server), requests)
    assert server.lines_per_batch == [2]
    assert answers[0] == answers[2]
    assert dict(server.answered) == {requests[0].key(): 1, requests[1].key(): 1}


def test_the_input_file_carries_each_request_as_the_online_body(server):
    request = Request(prompt="Give one example.", max_tokens=64, temperature=0.5, top_p=0.9,
                      stop=("\n\n",), seed=3)
    raw = Request(prompt="<|im_start|>user\nHi<|im_end|>\n", kind="raw", max_tokens=8)
    answers, _ = ask(teacher_for(server, concurrency=2), [request, raw])
    assert all(a.error is None for a in answers)
    by_endpoint = {b["endpoint"]: server.files[b["input_file_id"]]["content"] for b in server.created()}
    [chat_line] = [json.loads(line) for line in by_endpoint["/v1/chat/completions"].splitlines()]
    assert chat_line == {"custom_id": request.key(), "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "fake-model", "max_tokens": 64, "temperature": 0.5,
                                  "top_p": 0.9, "stop": ["\n\n"], "seed": 3,
                                  "messages": [{"role": "user", "content": "Give one example."}]}}
    [raw_line] = [json.loads(line) for line in by_endpoint["/v1/completions"].splitlines()]
    assert raw_line["body"]["prompt"] == raw.prompt and raw_line["custom_id"] == raw.key()


# -- every way a batch can end ------------------------------------------------------------------------


@pytest.mark.parametrize("outcome, waves, status", [
    (Outcome("expired", done=1), [4, 3], "expired"),
    (Outcome("cancelled", done=2), [4, 2], "cancelled"),
    (Outcome("failed"), [4, 2, 2], "failed"),           # nothing answered: waves of half its size
    (Outcome("expired", done=0), [4, 2, 2], "expired"),
    (Outcome(errors=(1, 3)), [4, 2], "completed"),      # a partial error file
])
def test_unfinished_lines_are_retried_in_a_smaller_wave_and_counted(server, outcome, waves, status):
    server.script(outcome)
    requests = prompts(4, "zh" if status == "cancelled" else "en")
    teacher = teacher_for(server)
    answers, events = ask(teacher, requests)
    assert_answered_once(server, requests, answers)
    assert server.lines_per_batch == waves
    retried = sum(waves[1:])
    stats = teacher._batcher.stats()
    assert (stats["retried"], stats["failed"], stats["batches_created"]) == (retried, 0, len(waves))
    assert stats["by_status"] == ({"completed": len(waves)} if status == "completed"
                                  else {status: 1, "completed": len(waves) - 1})
    assert teacher.ledger()["retries"] == retried and teacher.ledger()["failures"] == 0
    first_wave = set(events[0]["keys"])
    later = [e for e in events if e["kind"] == "batch_file"][1:]
    assert sorted(k for e in later for k in e["keys"]) == sorted(     # exactly the unanswered lines
        k for k in first_wave if not server.batches["batch_0001"]["output_file_id"]
        or k not in server.files[server.batches["batch_0001"]["output_file_id"]]["content"].decode())


def test_a_request_that_never_succeeds_is_an_error_answer_after_max_attempts(server):
    server.script(Outcome("expired", done=1), Outcome(errors=(0,), error_status=500))
    requests = prompts(2)
    teacher = teacher_for(server, max_attempts=2)
    answers, _ = ask(teacher, requests)
    assert server.lines_per_batch == [2, 1]
    assert answers[0].error is None and answers[0].text == default_text(requests[0].prompt)
    assert answers[1].text == ""
    assert answers[1].error == "batch: http 500 (server_error) after 2 attempts"
    stats = teacher._batcher.stats()
    assert (stats["retried"], stats["failed"]) == (1, 1)
    assert teacher.ledger()["failures"] == 1 and teacher.ledger()["requests"] == 2


def test_a_failed_batch_every_time_fails_every_request_with_its_reason(server):
    server.script(Outcome("failed"), Outcome("failed"), Outcome("failed"))
    teacher = teacher_for(server, max_attempts=2)
    answers, _ = ask(teacher, prompts(3))
    assert [a.error for a in answers] == ["batch: failed after 2 attempts"] * 3
    assert server.lines_per_batch == [3, 2, 1] and not server.answered
    assert teacher.cost_usd() == 0.0 and teacher._batcher.stats()["failed"] == 3


@pytest.mark.parametrize("status, code, message", [
    (401, "invalid_api_key", "Incorrect API key provided."),
    (404, "model_not_found", "The model `nope` does not exist."),
])
def test_a_refused_create_is_a_teacher_error_with_the_servers_message(server, status, code, message):
    server.fail_next_create(status, message, code)
    answers, events = ask(teacher_for(server), prompts(2))
    assert all(isinstance(a, TeacherError) for a in answers)
    assert str(answers[0]).startswith(f"teacher returned HTTP {status} ({code}): {message}")
    assert server.creates == 1 and not server.batches          # not retried
    assert [e["kind"] for e in events] == ["batch_file", "batch_file_unused"]
    assert pending_in(events).files == []        # a rerun with a good key does not adopt it


def test_a_create_whose_answer_was_lost_is_found_by_its_file_not_made_twice(server):
    server.fail_after_next_create(500)
    requests = prompts(3)
    teacher = teacher_for(server)
    answers, events = ask(teacher, requests)
    assert_answered_once(server, requests, answers)
    assert server.creates == 1 and server.uploads == 1 and server.lines_per_batch == [3]
    assert teacher._batcher.stats()["retried"] == 0
    assert [e["kind"] for e in events] == ["batch_file", "batch", "batch_done"]


def test_a_create_refused_for_now_is_retried_from_a_new_file_and_the_old_one_never_adopted(server):
    server.fail_next_create(503, "Service unavailable", "server_error")
    requests = prompts(3, "zh")
    teacher = teacher_for(server, max_attempts=2, backoff_base=0.001)
    answers, events = ask(teacher, requests)
    assert_answered_once(server, requests, answers)
    assert server.creates == 2 and server.uploads == 2 and server.lines_per_batch == [3]
    assert [e["kind"] for e in events] == ["batch_file", "batch_file_unused", "batch_file", "batch",
                                           "batch_done"]
    assert events[1]["file"] == events[0]["file"] != events[2]["file"]
    assert pending_in(events).files == [] and pending_in(events).batches == []
    assert teacher._batcher.stats()["retried"] == 3


def test_an_output_line_that_is_not_json_is_retried(server):
    requests = prompts(2)
    teacher = teacher_for(server)
    real_finish = server._finish

    def torn_output(batch, outcome):        # the first output file ends in a torn line
        real_finish(batch, outcome)
        if batch["id"] == "batch_0001":
            file = server.files[batch["output_file_id"]]
            file["content"] = file["content"].splitlines(keepends=True)[0] + b'{"custom_id": "x'
    server._finish = torn_output
    answers, _ = ask(teacher, requests)
    assert [a.text for a in answers] == [default_text(r.prompt) for r in requests]
    assert server.lines_per_batch == [2, 1] and teacher._batcher.stats()["retried"] == 1


def test_max_cost_counts_worst_cases_at_batch_prices_before_anything_is_uploaded(server):
    request = prompts(1)[0]
    # worst case at list price: (prompt estimate + 32 tokens) x $1000/M, about $0.04; half of it fits
    teacher = teacher_for(server, price_in=1000.0, price_out=1000.0, max_cost=0.03)
    [answer], _ = ask(teacher, [request])
    assert answer.error is None and server.lines_per_batch == [1]
    assert 0 < teacher.cost_usd() <= 0.03
    # a budget under the batch-price worst case is refused before anything is sent
    tight = teacher_for(server, price_in=1000.0, price_out=1000.0, max_cost=0.001)
    [refused], _ = ask(tight, prompts(3)[2:])
    assert isinstance(refused, BudgetExhausted) and server.uploads == 1


# -- resuming in-process --------------------------------------------------------------------------


def test_a_resumed_batch_is_polled_not_resubmitted_and_answers_requests_asked_later(server):
    server.script(Outcome(hold=True))
    requests = prompts(3)
    first = teacher_for(server)
    written: list[dict] = []
    first.attach(written.append, [])

    async def crash_while_in_progress():
        await first.start()
        asking = [asyncio.ensure_future(first.complete(r)) for r in requests]
        while not [e for e in written if e["kind"] == "batch"]:
            await asyncio.sleep(0.01)
        for task in asking:
            task.cancel()
        await asyncio.gather(*asking, return_exceptions=True)
        await first.aclose()                    # no batch_done: as if the process had died
    asyncio.run(crash_while_in_progress())
    assert pending_in(written).batches == [("batch_0001", [r.key() for r in requests])]
    server.release()
    # the resumed run asks two of the three now (the third would come later), plus a new one
    again = teacher_for(server)
    answers, events = ask(again, requests[:2] + prompts(4)[3:], events=written)
    assert server.creates == 2 and server.lines_per_batch == [3, 1]    # the new request only
    assert [a.text for a in answers] == [default_text(r.prompt) for r in requests[:2] + prompts(4)[3:]]
    stats = again._batcher.stats()
    assert (stats["batches_resumed"], stats["batches_created"]) == (1, 1)
    assert ("batch_done", "batch_0001") in [(e["kind"], e.get("id")) for e in events]
    # the unclaimed third answer was paid for all the same
    assert again.ledger()["per_stage"]["unclaimed"]["requests"] == 1


def test_pending_in_reads_only_what_an_earlier_run_left_out():
    events = [{"ev": "teacher", "kind": "batch_file", "file": "f1", "keys": ["a"], "t": 1},
              {"ev": "teacher", "kind": "batch", "id": "b1", "file": "f1"},
              {"ev": "teacher", "kind": "batch_done", "id": "b1"},
              {"ev": "teacher", "kind": "batch_file", "file": "f2", "keys": ["b", "c"], "t": 2},
              {"ev": "teacher", "kind": "batch", "id": "b2", "file": "f2"},
              {"ev": "teacher", "kind": "batch_file", "file": "f3", "keys": ["d"], "t": 3},
              {"ev": "teacher", "kind": "batch_file", "file": "f4", "keys": ["e"], "t": 4},
              {"ev": "teacher", "kind": "batch_file_unused", "file": "f4"}]
    plan = pending_in(events)
    assert plan.batches == [("b2", ["b", "c"])]
    assert plan.files == [("f3", ["d"], 3.0)]


# -- the real command line -------------------------------------------------------------------------


def generate_cmd(server, out, cache, *args):
    env = {**os.environ, "OPENAI_API_KEY": KEY, "SELFINSTRUCT_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "cli.py", "generate", "--teacher", "openai", "--batch",
           "--base-url", server.url, "--model", "fake-model", "--out", str(out), "--no-progress",
           "--no-report", "--num", "20", "--concurrency", "4", "--opt", "openai.batch_poll=0.05",
           "--price-in", "1", "--price-out", "2", *args]
    return cmd, env


@pytest.fixture
def generate(invoke_cli, monkeypatch, tmp_path):
    """``generate(server, out, *args)``: the same command in-process (no interpreter to start)."""
    def run(server, out, *args):
        cmd, env = generate_cmd(server, out, tmp_path / "cache", *args)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("SELFINSTRUCT_CACHE_DIR", env["SELFINSTRUCT_CACHE_DIR"])
        return invoke_cli(*cmd[2:])
    return run


@pytest.fixture
def sim_server():
    with serve_batches_in_thread(FakeBatchServer(text_fn=reply)) as s:
        yield s


def lines_of(server, batch) -> list[dict]:
    return [json.loads(line) for line in server.files[batch["input_file_id"]]["content"].splitlines()]


def assert_one_batch_per_wave(server, waves: list[int]) -> None:
    """The batches polled to their end are ``waves``; at most one more was created as the run reached
    --num (the loop had already asked for its next units' requests) and abandoned unfinished; no
    wave's lines were ever submitted twice."""
    assert server.ended_lines() == waves
    abandoned = len(server.batches) - len(waves)
    assert abandoned in (0, 1) and server.creates == len(server.batches)
    assert server.uploads - len(waves) in (0, 1) and abandoned <= server.uploads - len(waves)
    keys = [line["custom_id"] for batch in server.created() for line in lines_of(server, batch)]
    assert len(keys) == len(set(keys))


def assert_run_complete(server, out, read_json) -> dict:
    data = read_json(out / "data.json")
    assert len(data) == 20 and len({d["instruction"] for d in data}) == 20
    summary = read_json(out / "summary.json")
    assert summary["requests"]["paid"] == sum(server.answered.values())
    assert set(server.answered.values()) == {1}
    half = (summary["tokens"]["prompt"] * 1 + summary["tokens"]["completion"] * 2) / 1e6 * BATCH_PRICE_FACTOR
    assert summary["cost_usd"] == pytest.approx(half, abs=2e-6)
    batch = summary["teacher"]["batch"]           # the batcher's own figures reach summary.json
    assert set(batch) == {"batches_created", "batches_resumed", "requests_batched", "retried", "failed",
                          "by_status"}
    assert batch["batches_created"] + batch["batches_resumed"] >= 1
    return summary


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_generate_with_batch_sends_waves_and_answers_every_line_once(sim_server, generate, tmp_path,
                                                                    read_json, lang):
    out = tmp_path / "out"
    r = generate(sim_server, out, "--lang", lang)
    assert r.exit_code == 0, r.stderr
    assert_run_complete(sim_server, out, read_json)
    # each request brings 3 new tasks: 4 requests, then 4 more, make 24 >= 20
    assert_one_batch_per_wave(sim_server, [4, 4])
    assert sim_server.authorization == {f"Bearer {KEY}"}
    kinds = [e["kind"] for e in journal_events(out, "teacher")]
    assert kinds == ["batch_file", "batch", "batch_done"] * 2
    assert KEY not in (out / "journal.jsonl").read_text(encoding="utf-8")


def test_the_pool_grows_between_waves(sim_server, generate, tmp_path, read_json):
    """Self-Instruct shows up to 2 tasks from the machine pool per prompt: a later wave's prompts show
    tasks an earlier wave's answers brought."""
    out = tmp_path / "out"
    r = generate(sim_server, out, "--recipe", "self-instruct")
    assert r.exit_code == 0, r.stderr
    assert_run_complete(sim_server, out, read_json)
    pooled = [e["record"]["instruction"] for e in journal_events(out, "pool")]
    batches = [b for b in sim_server.created() if b["status"] == "completed"]
    answered_in = {}                 # instruction -> the first batch whose answers brought it
    for n, batch in enumerate(batches):
        text = sim_server.files[batch["output_file_id"]]["content"].decode("utf-8")
        for instruction in pooled:
            if json.dumps(instruction)[1:-1] in text:
                answered_in.setdefault(instruction, n)
    shown_later = [(instruction, n) for n, batch in enumerate(batches)
                   for line in lines_of(sim_server, batch)
                   for instruction in pooled if instruction in line["body"]["messages"][-1]["content"]
                   and answered_in.get(instruction, n) < n]
    assert shown_later


def test_a_bad_key_stops_the_batch_run_with_one_line(sim_server, generate, tmp_path, error_line):
    sim_server.fail_next_create(401, "Incorrect API key provided: sk-bat**7777.", "invalid_api_key")
    r = generate(sim_server, tmp_path / "out")
    assert error_line(r).startswith("Error: teacher returned HTTP 401 (invalid_api_key)")


def wait_for(condition, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def kill_then_resume(server, tmp_path, read_json, killed_when) -> tuple[dict, list[dict]]:
    """Start the run, SIGKILL it once ``killed_when(out)`` holds, release the server, run the same
    command to the end; return the summary and the journal's teacher events."""
    out = tmp_path / "out"
    cmd, env = generate_cmd(server, out, tmp_path / "cache")
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: killed_when(out), "the moment to kill")
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL
    server.release()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return assert_run_complete(server, out, read_json), journal_events(out, "teacher")


def test_sigkill_while_a_batch_is_in_progress_resumes_by_polling_it(sim_server, tmp_path, read_json):
    sim_server.script(Outcome(hold=True))
    journaled = lambda out: any(e["kind"] == "batch" for e in journal_events(out, "teacher"))
    in_progress = lambda out: journaled(out) and sim_server.status_of("batch_0001") == "in_progress"
    _, events = kill_then_resume(sim_server, tmp_path, read_json, in_progress)
    # one batch for the first wave (polled again, not resubmitted), one for the second
    assert_one_batch_per_wave(sim_server, [4, 4])
    # batch_0001 journaled once (by the killed run), done once (by the resumed one)
    assert sorted((e["kind"], e.get("id")) for e in events if e["kind"] != "batch_file") == [
        ("batch", "batch_0001"), ("batch", "batch_0002"),
        ("batch_done", "batch_0001"), ("batch_done", "batch_0002")]


def test_sigkill_between_the_create_and_its_journal_line_finds_the_batch_by_its_file(
        sim_server, tmp_path, read_json):
    sim_server.stall_next_create()                 # created on the server, never answered
    created = lambda out: sim_server.batches and journal_events(out, "teacher")
    _, events = kill_then_resume(sim_server, tmp_path, read_json, created)
    assert_one_batch_per_wave(sim_server, [4, 4])
    assert sim_server.created()[0]["input_file_id"] == events[0]["file"]
    # the resumed run journaled the batch it found, then followed it to its end
    assert [(e["kind"], e.get("id")) for e in events if e.get("id") == "batch_0001"] == [
        ("batch", "batch_0001"), ("batch_done", "batch_0001")]


def test_sigkill_before_the_create_reached_the_server_creates_it_from_the_same_file(
        sim_server, tmp_path, read_json):
    sim_server.drop_next_create()                  # never answered, nothing created
    asked = lambda out: sim_server.creates == 1 and journal_events(out, "teacher")
    _, events = kill_then_resume(sim_server, tmp_path, read_json, asked)
    sim_server.creates -= 1                        # the lost one (nothing was created)
    assert_one_batch_per_wave(sim_server, [4, 4])
    # the killed run's file (its first upload) became exactly one batch, made by the resumed run
    assert events[0]["kind"] == "batch_file" and events[0]["file"] == "file-0001"
    [made] = [b for b in sim_server.created() if b["input_file_id"] == "file-0001"]
    assert [(e["kind"], e.get("id")) for e in events if e.get("id") == made["id"]] == [
        ("batch", made["id"]), ("batch_done", made["id"])]
