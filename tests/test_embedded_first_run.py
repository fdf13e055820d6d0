"""README command 1's path for real: the embedded SmolLM2-135M teacher, the alpaca recipe, every
default, and the answer step that completes an instruction-only block through the model's chat
template; and how the teacher chooses what to run next. The model is loaded once for the module;
``-m "not slow"`` loads none. Nothing here is timed: how long the first run takes is
benchmarks/bench_embedded.py's business."""
import asyncio
import json
import os
import time

import pytest

from selfinstruct.generate import Settings, run_generate
from selfinstruct.recipes.alpaca import answer_request
from selfinstruct.teachers.base import Request
from selfinstruct.teachers.embedded import PASSED_OVER_MAX, EmbeddedTeacher, _Pending

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def teacher():
    t = EmbeddedTeacher()
    asyncio.run(t.start())
    asyncio.run(t.aclose())
    return t


@pytest.mark.slow
def test_the_first_run_accepts_examples_answered_through_the_chat_template(teacher, tmp_path):
    out = str(tmp_path / "en")
    summary = run_generate(Settings(num=3, out=out, lang="en", progress=False), teacher)
    assert summary["kept"] == 3 and summary["stopped"] == "done"
    records = [json.loads(line) for line in open(os.path.join(out, "records.jsonl"), encoding="utf-8")]
    answered = [r for r in records if r["meta"].get("answered") == "separately"]
    assert answered, "no accepted record came from an answer request"
    for r in answered:
        assert r["instruction"].strip() and r["output"].strip()
        assert "<|im_start|>" not in r["output"] and "<|im_end|>" not in r["output"]
    assert summary["requests_per_stage"]["answer"]["paid"] >= len(answered)
    assert summary["tokens"]["per_stage"]["answer"]["completion"] > 0


@pytest.mark.slow
def test_an_answer_request_is_answered_in_the_chat_template_not_continued(teacher):
    """A chat request gets the assistant's reply: not the instruction echoed or continued as text,
    no template markup, ended by the model's end-of-turn (not the token limit)."""
    req = answer_request("en", "What is the capital of France?", short=True)
    [resp] = teacher.generate_batch([req])
    assert resp.finish_reason == "stop" and "Paris" in resp.text
    assert "<|im_" not in resp.text and "capital of France?" not in resp.text[:40]


@pytest.mark.slow
def test_chinese_answer_requests_are_answered_in_chinese(teacher):
    """The Chinese system turn steers the small model to answer in Han script (what it says is
    capped by the model: the test checks the script, not the content)."""
    reqs = [answer_request("zh", q, short=True) for q in ("请介绍一下长城。", "写一句关于春天的话。", "推荐一种健康的早餐。")]
    out = teacher.generate_batch(reqs)
    assert len(out) == 3
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in r.text) for r in out) >= 2


# -- which requests run next (no model needed) ----------------------------------------------------


def _held(*requests: Request) -> list[_Pending]:
    loop = asyncio.new_event_loop()
    try:
        return [_Pending(r, loop.create_future()) for r in requests]
    finally:
        loop.close()


FEW_SHOT = "Below are examples of diverse tasks. " + "Task 1\nInstruction: Name a colour.\n\n" * 8
FIRST = Request(prompt=FEW_SHOT + "Task 9\nInstruction:", temperature=0.7, top_p=0.95, stop=("Task 10",))


def test_answer_requests_run_before_new_units_that_arrived_first():
    """A new unit's few-shot prompt queued before the answer requests of the units that just got
    their replies: the answers (short prompts, they finish candidates) run first."""
    teacher = EmbeddedTeacher(concurrency=4)
    answers = [answer_request("en", f"Name {n} colours.") for n in range(3)]
    held = _held(FIRST, FIRST, *answers)
    batch = teacher._take_batch(held)
    assert [p.request for p in batch] == answers
    assert [p.request for p in held] == [FIRST, FIRST]


def test_a_batch_holds_one_sampling_setting_and_at_most_concurrency_rows():
    teacher = EmbeddedTeacher(concurrency=2)
    answers = [answer_request("en", f"Name {n} colours.") for n in range(3)]
    held = _held(*answers, FIRST)
    batch = teacher._take_batch(held)
    assert len(batch) == 2 and all(p.request.kind == "chat" for p in batch)
    assert len(held) == 2


def test_a_long_prompt_passed_over_too_often_goes_first():
    teacher = EmbeddedTeacher(concurrency=2)
    [first] = _held(FIRST)
    held = [first]
    for n in range(PASSED_OVER_MAX):
        held += _held(answer_request("en", f"Name {n} colours."))
        assert teacher._take_batch(held)[0].request.kind == "chat"
    held += _held(answer_request("en", "Name a fruit."))
    assert [p.request for p in teacher._take_batch(held)] == [FIRST]


def test_requests_of_cancelled_units_are_dropped():
    teacher = EmbeddedTeacher(concurrency=4)
    held = _held(FIRST, answer_request("en", "Name a colour."))
    held[1].future.cancel()
    assert [p.request for p in teacher._take_batch(held)] == [FIRST] and held == []


@pytest.mark.slow
def test_a_batch_running_when_the_teacher_closes_stops_at_its_next_token(teacher):
    """The run is over (its units were cancelled): the batch's thread must not keep the process
    from exiting until the batch would have ended."""
    import threading
    long = answer_request("en", "Write a long story about a lighthouse keeper.")
    long = Request(**{**long.to_dict(), "max_tokens": 2000, "stop": ()})
    out: list = []
    worker = threading.Thread(target=lambda: out.extend(teacher.generate_batch([long])))
    worker.start()
    time.sleep(1.0)                   # the batch is running
    teacher.stop_running_batches()
    worker.join()
    assert out and 0 < out[0].completion_tokens < 2000
    # a batch started afterwards runs as usual
    [again] = teacher.generate_batch([answer_request("en", "What is the capital of France?", short=True)])
    assert again.completion_tokens > 1
