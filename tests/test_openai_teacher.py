"""The OpenAI-compatible teacher against a scriptable fake server on loopback. Assertions count
requests and answers; the only time-based ones check an ordering the client guarantees (nothing sent
before a Retry-After ran out), which a slow machine cannot break. Client time-outs are at least 10x
anything the server is told to take, so that a loaded machine cannot turn an answer into a retry."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest

from selfinstruct.errors import TeacherError, UsageError
from selfinstruct.teachers import teacher_class
from selfinstruct.teachers._http import endpoint_url
from selfinstruct.teachers.base import BudgetExhausted, Request, Response
from selfinstruct.teachers.openai import OpenAITeacher
from tests.fake_openai_server import (api_error, default_text, empty_choices, hang, length, no_usage,
                                      not_json, ok, rate_limited, reset, server_error, truncated)

def ask_all(teacher: OpenAITeacher, requests: list[Request], in_flight: int | None = None) -> list:
    """Send ``requests`` keeping ``in_flight`` of them going, the way the generate loop does."""
    async def main():
        slots = asyncio.Semaphore(in_flight or len(requests))

        async def one(request):
            async with slots:
                return await teacher.complete(request)

        await teacher.start()
        try:
            return await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)
        finally:
            await teacher.aclose()
    return asyncio.run(main())


def prompts(n: int, stage: str = "instructions") -> list[Request]:
    return [Request(prompt=f"Prompt number {i}", max_tokens=16, stage=stage) for i in range(n)]


# -- what goes on the wire -------------------------------------------------------------------


def test_chat_request_carries_model_messages_and_sampling_options(fake_openai, openai_teacher):
    teacher = openai_teacher()
    request = Request(prompt="Name three rivers.", max_tokens=64, temperature=0.7, top_p=0.9,
                      stop=("\n\n", "10."), seed=42)
    [answer] = ask_all(teacher, [request])
    [received] = fake_openai.requests
    assert received.path == "/v1/chat/completions"
    assert received.json == {"model": "fake-model", "max_tokens": 64, "temperature": 0.7,
                             "top_p": 0.9, "messages": [{"role": "user",
                                                         "content": "Name three rivers."}],
                             "stop": ["\n\n", "10."], "seed": 42}
    assert "authorization" not in received.headers
    assert answer == Response(text=default_text("Name three rivers."), finish_reason="stop",
                              prompt_tokens=len("Name three rivers.") // 4 + 1,
                              completion_tokens=len(answer.text) // 4 + 1)


def test_completions_endpoint_sends_the_prompt_as_is_and_the_key_as_bearer(fake_openai):
    teacher = OpenAITeacher(base_url=fake_openai.url + "/", api="completions", model="m",
                            api_key="sk-test-key")
    [answer] = ask_all(teacher, [Request(prompt="1. Write a poem\n2.")])
    [received] = fake_openai.requests
    assert received.path == "/v1/completions"
    assert received.json["prompt"] == "1. Write a poem\n2."
    assert "messages" not in received.json and "seed" not in received.json
    assert received.headers["authorization"] == "Bearer sk-test-key"
    assert answer.text == default_text("1. Write a poem\n2.")


@pytest.mark.parametrize("base", ["http://h:1/v1", "http://h:1/v1/"])
def test_endpoint_url_joins_with_or_without_a_trailing_slash(base):
    assert endpoint_url(base, "chat") == "http://h:1/v1/chat/completions"
    assert endpoint_url(base, "completions") == "http://h:1/v1/completions"


def test_pool_keeps_exactly_concurrency_requests_in_flight(fake_openai, openai_teacher):
    fake_openai.latency = 0.1
    teacher = openai_teacher(concurrency=8)
    answers = ask_all(teacher, prompts(40))         # all 40 started at once: the teacher caps them
    assert [a.error for a in answers] == [None] * 40
    assert fake_openai.max_in_flight == 8


# -- faults ------------------------------------------------------------------------------------

FAULTS = [rate_limited(retry_after_ms=10), server_error(500), server_error(502),
          server_error(503), server_error(504), reset(), truncated(), not_json(),
          empty_choices(), hang()]


def test_every_transient_fault_is_retried_and_nothing_is_lost_or_doubled(fake_openai, openai_teacher):
    # The server answers at once; 2 s is only waited out by the hung request.
    fake_openai.script(*FAULTS)
    teacher = openai_teacher(concurrency=4, timeout=2.0)
    requests = prompts(30)
    answers = ask_all(teacher, requests)
    assert [a.text for a in answers] == [default_text(r.prompt) for r in requests]
    assert [a.error for a in answers] == [None] * 30
    assert fake_openai.count == 30 + len(FAULTS)
    ledger = teacher.ledger()
    assert (ledger["requests"], ledger["retries"], ledger["failures"]) == (30, len(FAULTS), 0)
    asked = {r.json["messages"][0]["content"] for r in fake_openai.requests}
    assert asked == {r.prompt for r in requests}


@pytest.mark.parametrize("fault, reason", [
    (server_error(503), "http 503"), (rate_limited(retry_after_ms=1), "http 429"),
    (hang(), "timeout"), (reset(), "connection error"), (truncated(), "truncated body"),
    (not_json(), "invalid json"), (empty_choices(), "empty choices"),
])
def test_a_fault_that_persists_is_returned_as_an_error_after_max_attempts(fake_openai, openai_teacher,
                                                                           fault, reason):
    fake_openai.script(*[fault] * 3)
    # Only a hang waits for the time-out (it never answers); the others answer at once, far within it.
    teacher = openai_teacher(max_attempts=3, timeout=0.5 if reason == "timeout" else 60.0)
    answers = ask_all(teacher, [Request(prompt="p")])
    assert answers == [Response(text="", error=f"{reason} after 3 attempts")]
    assert fake_openai.count == 3
    ledger = teacher.ledger()
    assert (ledger["requests"], ledger["retries"], ledger["failures"]) == (1, 2, 1)


def test_retry_after_pauses_the_whole_pool_until_it_has_passed(fake_openai, openai_teacher):
    # Four requests arrive together: the first is told to wait 600 ms, the other three are answered
    # after 300 ms. Without a pool-wide pause their workers would send again at ~300 ms.
    fake_openai.script(rate_limited(retry_after_ms=600), *[ok(latency=0.3)] * 3)
    teacher = openai_teacher(concurrency=4)
    answers = ask_all(teacher, prompts(12), in_flight=4)
    assert [a.error for a in answers] == [None] * 12
    first, *rest = fake_openai.requests
    assert first.behaviour == "error"
    later = [r for r in rest if r.n >= 4]
    assert len(later) == 12 + 1 - 4
    assert min(r.t for r in later) >= first.t + 0.6
    assert teacher.stats()["rate_limit_pauses"] == 1


def test_a_spent_rate_limit_window_pauses_the_pool_until_its_reset(fake_openai, openai_teacher):
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "500ms"}
    fake_openai.script(ok(headers=spent), *[ok(latency=0.2)] * 3)
    teacher = openai_teacher(concurrency=4)
    answers = ask_all(teacher, prompts(8), in_flight=4)
    assert [a.error for a in answers] == [None] * 8
    first = fake_openai.requests[0]
    assert first.t + 0.5 <= min(r.t for r in fake_openai.requests if r.n >= 4)


def test_rpm_spaces_out_the_pools_sends(fake_openai, openai_teacher):
    # 600 rpm: a one-second bucket of 10, then one every 100 ms: the 15th goes 500 ms after the
    # first ten (asserted with 200 ms to spare; without the limit all 15 arrive within a few ms).
    teacher = openai_teacher(concurrency=15, rpm=600)
    answers = ask_all(teacher, prompts(15))
    assert [a.error for a in answers] == [None] * 15
    arrivals = sorted(r.t for r in fake_openai.requests)
    assert arrivals[-1] - arrivals[0] >= 0.3


def test_an_unreachable_server_is_an_error_naming_host_and_port():
    with socket.socket() as probe:                  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    teacher = OpenAITeacher(base_url=f"http://127.0.0.1:{port}/v1", api_key="", max_attempts=2,
                            backoff_base=0.001)
    [answer] = ask_all(teacher, [Request(prompt="p")])
    assert answer.error == f"cannot connect to 127.0.0.1:{port} after 2 attempts"


def test_retry_after_in_seconds_is_obeyed(fake_openai, openai_teacher):
    fake_openai.script(rate_limited(retry_after="1"))
    teacher = openai_teacher()
    [answer] = ask_all(teacher, [Request(prompt="p")])
    first, second = fake_openai.requests
    assert answer.error is None and second.t >= first.t + 1.0


# -- answers that are not faults ----------------------------------------------------------------


def test_finish_reason_length_is_reported_as_length(fake_openai, openai_teacher):
    fake_openai.script(length("1. cut sho"))
    teacher = openai_teacher()
    [answer] = ask_all(teacher, [Request(prompt="p")])
    assert teacher.stats()["truncated"] == 1
    assert (answer.text, answer.finish_reason, answer.error) == ("1. cut sho", "length", None)
    assert fake_openai.count == 1


def test_missing_usage_is_estimated_from_characters_and_marked(fake_openai, openai_teacher):
    fake_openai.script(no_usage("x" * 40))
    teacher = openai_teacher(api="completions")
    [answer] = ask_all(teacher, [Request(prompt="y" * 100), ])
    assert (answer.prompt_tokens, answer.completion_tokens) == (25, 10)
    assert answer.extra == {"usage_estimated": True}
    assert teacher.stats()["usage_estimated"] == 1


def test_a_finished_answer_without_text_is_an_empty_answer_not_a_fault(fake_openai, openai_teacher):
    fake_openai.responder = lambda body, n: ok(finish_reason="content_filter")
    fake_openai.text_fn = lambda prompt: None
    [answer] = ask_all(openai_teacher(), [Request(prompt="p")])
    assert (answer.text, answer.finish_reason, answer.error) == ("", "stop", None)
    assert answer.extra == {"finish_reason": "content_filter"}
    assert fake_openai.count == 1


def test_chinese_text_is_estimated_at_one_token_per_character(fake_openai, openai_teacher):
    fake_openai.script(no_usage("这是一个回答"))
    teacher = openai_teacher(api="completions")
    [answer] = ask_all(teacher, [Request(prompt="请写一首诗。")])
    assert (answer.prompt_tokens, answer.completion_tokens) == (6, 6)


# -- final refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("status, message, code, expected", [
    (401, "Incorrect API key provided", "invalid_api_key",
     "teacher returned HTTP 401 (invalid_api_key): Incorrect API key provided — check OPENAI_API_KEY"),
    (404, "The model `nope` does not exist", "model_not_found",
     "teacher returned HTTP 404 (model_not_found): The model `nope` does not exist — check the "
     "model name and --base-url"),
    (400, "This model's maximum context length is 8192 tokens.", "context_length_exceeded",
     "teacher returned HTTP 400 (context_length_exceeded): This model's maximum context length "
     "is 8192 tokens."),
])
def test_a_4xx_raises_teacher_error_with_the_servers_message_and_is_not_retried(
        fake_openai, openai_teacher, status, message, code, expected):
    fake_openai.script(api_error(status, message, code))
    [raised] = ask_all(openai_teacher(), [Request(prompt="p")])
    assert isinstance(raised, TeacherError)
    assert str(raised) == expected
    assert fake_openai.count == 1


def test_the_api_key_is_removed_from_a_servers_error_message(fake_openai, openai_teacher):
    key = "sk-proj-abcdef1234567890"
    fake_openai.script(api_error(401, f"Incorrect API key provided: {key}. Also sk-ab***7890.",
                                 "invalid_api_key"))
    [raised] = ask_all(openai_teacher(api_key=key), [Request(prompt="p")])
    assert str(raised) == ("teacher returned HTTP 401 (invalid_api_key): Incorrect API key "
                           "provided: ***. Also sk-***. — check OPENAI_API_KEY")
    assert key not in repr(openai_teacher(api_key=key))


def test_no_key_for_api_openai_com_is_an_error_before_anything_is_sent(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(TeacherError, match=r"^no API key for https://api.openai.com/v1: set "
                                           r"OPENAI_API_KEY"):
        asyncio.run(OpenAITeacher().start())


# -- budget and accounting ----------------------------------------------------------------------


def test_max_cost_stops_before_the_budget_is_exceeded(fake_openai, openai_teacher):
    # $1 per completion token, prompts free: each request may cost up to $10 (max_tokens) and
    # really costs $4 (4 tokens). With $30, requests go while spent + 10 <= 30: six of them.
    fake_openai.responder = lambda body, n: ok(text="x" * 12)
    teacher = openai_teacher(concurrency=8, price_in=0.0, price_out=1_000_000.0,
                           max_cost=30.0)
    requests = [Request(prompt=f"p{i}", max_tokens=10) for i in range(20)]
    answers = ask_all(teacher, requests)
    stopped = [a for a in answers if isinstance(a, BudgetExhausted)]
    assert (len(answers) - len(stopped), len(stopped)) == (6, 14)
    assert fake_openai.count == 6
    assert teacher.cost_usd() == teacher.ledger()["cost_usd"] == 24.0
    assert str(stopped[0]) == ("max cost $30.0000 reached: $24.0000 spent, the next request may "
                               "cost up to $10.0000")


def test_the_ledger_counts_per_stage_and_ledger_and_stats_are_json(fake_openai, openai_teacher):
    fake_openai.script(server_error(500))
    teacher = openai_teacher(price_in=1.0, price_out=2.0, rpm=6000, tpm=10**6)
    ask_all(teacher, prompts(3, "instructions") + prompts(2, "instances"))
    ledger = json.loads(json.dumps(teacher.ledger()))
    assert ledger["per_stage"]["instances"]["requests"] == 2
    assert ledger["per_stage"]["instructions"]["requests"] == 3
    assert (ledger["requests"], ledger["retries"], ledger["teacher"]) == (5, 1, "openai:fake-model")
    assert ledger["tokens"] == ledger["prompt_tokens"] + ledger["completion_tokens"] > 0
    expected_cost = (ledger["prompt_tokens"] * 1.0 + ledger["completion_tokens"] * 2.0) / 1e6
    assert ledger["cost_usd"] == pytest.approx(expected_cost) == teacher.cost_usd()
    stats = json.loads(json.dumps(teacher.stats()))
    assert (stats["rpm"], stats["tpm"], stats["retries"], stats["model"]) == (6000, 10**6, 1, "fake-model")
    assert set(teacher.live()) == {"req_s", "tok_s", "cost_usd", "failures", "retries"}


# -- construction -------------------------------------------------------------------------------


def test_defaults_come_from_the_environment_and_the_price_table(monkeypatch):
    monkeypatch.setenv("OPENAI_MODEL", "gpt-4o-mini-2024-07-18")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    teacher = teacher_class("openai")()
    assert (teacher.label, teacher.base_url) == ("openai:gpt-4o-mini-2024-07-18",
                                                "http://localhost:8000/v1")
    assert (teacher.price_in, teacher.price_out) == (0.15, 0.60)
    assert OpenAITeacher(model="my-local-llama").price_in == 0.0


@pytest.mark.parametrize("options, message", [
    ({"api": "responses"}, "unknown --api 'responses' (choose from chat, completions)"),
    ({"concurrency": 0}, "--concurrency must be a whole number >= 1, got 0"),
    ({"rpm": 0}, "--rpm must be > 0, got 0"),
    ({"max_cost": -1}, "--max-cost must be >= 0, got -1"),
])
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(UsageError) as raised:
        OpenAITeacher(**options)
    assert str(raised.value) == message
