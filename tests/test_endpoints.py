"""Several endpoints behind ``--teacher openai`` (selfinstruct/teachers/_endpoints.py): the
``--endpoints`` file, least-in-flight routing, pausing and probing a failing endpoint, and whole
``generate`` runs over three loopback servers. Assertions count requests; none times anything (the
only sleeps let a back-off pause lapse, and pauses are capped far below them)."""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from types import SimpleNamespace

import pytest

from selfinstruct.errors import InputError, UsageError
from selfinstruct.report.html import usage_html
from selfinstruct.report.stats import usage
from selfinstruct.teachers._endpoints import (FAILURES_TO_PAUSE, EndpointPool, EndpointSpec,
                                              parse_endpoints_file)
from selfinstruct.teachers.base import Request
from selfinstruct.teachers.openai import OpenAITeacher
from tests.multi_server import received, servers
from tests.sim_teacher import reply


def ask_all(teacher: OpenAITeacher, requests: list[Request]) -> list:
    async def main():
        await teacher.start()
        try:
            return await asyncio.gather(*(teacher.complete(r) for r in requests))
        finally:
            await teacher.aclose()
    return asyncio.run(main())


def prompts(n: int, tag: str = "") -> list[Request]:
    """English and Chinese requests, alternately (the bodies are UTF-8 JSON whatever the endpoint)."""
    return [Request(prompt=f"Prompt {tag}{i}" if i % 2 else f"写一句关于{tag}{i}号的话", max_tokens=16)
            for i in range(n)]


def pool_teacher(urls: list[str], **options) -> OpenAITeacher:
    options.setdefault("concurrency", 6)
    return OpenAITeacher(base_url=urls, model="fake-model", api_key="", backoff_base=0.02,
                         backoff_cap=0.2, **options)


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- the --endpoints file -------------------------------------------------------------------------


def test_an_endpoints_file_gives_each_endpoint_its_model_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("SECOND_KEY", "sk-second")
    path = write(tmp_path / "endpoints.txt",
                 "# three replicas\n"
                 "http://10.0.0.1:8000/v1\n"
                 "\n"
                 "http://10.0.0.2:8000/v1   model=qwen-7b  key_env=SECOND_KEY   # the big one\n"
                 "https://user:pw@gpu3.example/v1 model=qwen-7b\n")
    specs = parse_endpoints_file(path, "default-model", "sk-default")
    assert specs == [EndpointSpec("http://10.0.0.1:8000/v1", "default-model", "sk-default"),
                     EndpointSpec("http://10.0.0.2:8000/v1", "qwen-7b", "sk-second"),
                     EndpointSpec("https://user:pw@gpu3.example/v1", "qwen-7b", "sk-default")]
    teacher = OpenAITeacher(endpoints=path, model="default-model", api_key="sk-default")
    # answers differ between models: the cache namespace names both, and the report the URLs
    # without their credentials
    assert teacher.cache_namespace == "openai:default-model+qwen-7b|chat"
    assert teacher.base_url == "http://10.0.0.1:8000/v1"
    assert list(teacher.stats()["endpoints"]) == [
        "http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1", "https://gpu3.example/v1"]


@pytest.mark.parametrize("line, message", [
    ("model=qwen-7b", "expected a URL (http:// or https://) first, got 'model=qwen-7b'"),
    ("10.0.0.9:8000/v1", "expected a URL (http:// or https://) first, got '10.0.0.9:8000/v1'"),
    ("http://10.0.0.9/v1 modle=qwen", "unknown field 'modle=qwen' (fields: model=NAME, key_env=VARIABLE)"),
    ("http://10.0.0.9/v1 fast", "unknown field 'fast' (fields: model=NAME, key_env=VARIABLE)"),
    ("http://10.0.0.9/v1 model=", "model= needs a value"),
    ("http://10.0.0.9/v1 model=a model=b", "model= given twice"),
    ("http://10.0.0.9/v1 key_env=NO_SUCH_KEY_VARIABLE", "key_env=NO_SUCH_KEY_VARIABLE: the variable is not set"),
    ("http://10.0.0.1:8000/v1/ model=other", "duplicate endpoint http://10.0.0.1:8000/v1/ (also on line 2)"),
])
def test_a_bad_line_names_the_file_and_line(tmp_path, monkeypatch, line, message):
    monkeypatch.delenv("NO_SUCH_KEY_VARIABLE", raising=False)
    path = write(tmp_path / "eps.txt", f"# pool\nhttp://10.0.0.1:8000/v1\n{line}\n")
    with pytest.raises(InputError) as refused:
        parse_endpoints_file(path, "m", None)
    assert str(refused.value) == f"{path}:3: {message}"


def test_an_empty_file_and_conflicting_options_are_refused(tmp_path):
    empty = write(tmp_path / "empty.txt", "# nothing yet\n\n")
    with pytest.raises(InputError, match=r"empty.txt: no endpoint in the file"):
        OpenAITeacher(endpoints=empty)
    good = write(tmp_path / "good.txt", "http://10.0.0.1/v1\nhttp://10.0.0.2/v1\n")
    with pytest.raises(UsageError, match="--endpoints FILE and --base-url: give one of them"):
        OpenAITeacher(endpoints=good, base_url="http://10.0.0.3/v1")
    for options in (dict(endpoints=good), dict(base_url=["http://a.test/v1", "http://b.test/v1"])):
        with pytest.raises(UsageError, match="--batch sends every request to one endpoint"):
            OpenAITeacher(batch=True, **options)
    with pytest.raises(UsageError, match="--base-url http://a.test/v1/ is given twice"):
        OpenAITeacher(base_url=["http://a.test/v1", "http://a.test/v1/"])


def test_one_url_in_a_list_is_the_single_endpoint_teacher():
    one = OpenAITeacher(base_url=["http://a.test/v1"], model="m", api_key="")
    same = OpenAITeacher(base_url="http://a.test/v1", model="m", api_key="")
    assert one.cache_namespace == same.cache_namespace == "openai:m|chat"
    assert one.stats() == same.stats() and "endpoints" not in one.stats()
    assert one.all_down() and same.all_down()      # the run's stop rule works as it always has


def test_generate_with_a_bad_endpoints_file_exits_2_with_one_line(tmp_path, invoke_cli, error_line):
    path = write(tmp_path / "bad.txt", "http://127.0.0.1:9/v1\nhttp://127.0.0.1:10/v1 weight=2\n")
    result = invoke_cli("generate", "--teacher", "openai", "--endpoints", path, "--num", "3",
                        "--out", tmp_path / "out", "--no-progress", "--no-report")
    assert error_line(result) == (f"Error: {path}:2: unknown field 'weight=2' "
                                  "(fields: model=NAME, key_env=VARIABLE)")


# -- the pool's rules, on a clock the test moves ------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def three(clock: Clock) -> EndpointPool:
    specs = [EndpointSpec(f"http://e{i}.test/v1", "m", None) for i in range(3)]
    return EndpointPool(specs, backoff_base=1.0, backoff_cap=8.0, clock=clock)


def test_routing_takes_the_fewest_in_flight_then_the_first():
    pool = three(Clock())
    e0, e1, e2 = pool.endpoints
    chosen = []
    for _ in range(5):
        e = pool.pick()
        pool.sent(e)
        chosen.append(e.index)
    assert chosen == [0, 1, 2, 0, 1]
    pool.answered(e0, 0.0)
    pool.answered(e0, 0.0)                      # e0 is the quick one: it has room again first
    assert pool.pick() is e0
    assert pool.pick(avoid=e0) is e2            # a retry goes elsewhere when it can


def test_a_failing_endpoint_is_paused_then_probed_once_then_healthy_again():
    clock = Clock()
    pool = three(clock)
    e0, e1, e2 = pool.endpoints
    for _ in range(FAILURES_TO_PAUSE - 1):
        pool.sent(e0)
        pool.failed(e0)
    assert e0.healthy and pool.pick() is e0     # a failure or two is noise
    pool.sent(e0)
    pool.failed(e0)
    assert not e0.healthy and e0.pauses == 1
    assert all(pool.pick() is not e0 for _ in range(3))
    assert not pool.all_down()                  # the others carry the traffic
    clock.now = e0.paused_until                 # the pause is over: one probe goes to it
    assert pool.pick() is e0
    pool.sent(e0)
    assert pool.pick() in (e1, e2)              # and only one while the probe is out
    pool.failed(e0)                             # the probe failed: paused again, longer at most
    assert e0.pauses == 2 and clock.now <= e0.paused_until <= clock.now + 2.0
    clock.now = e0.paused_until
    probe = pool.pick()
    assert probe is e0
    pool.answered(e0, pool.sent(e0))
    assert e0.healthy and e0.failures == FAILURES_TO_PAUSE + 1 and e0.answered == 1
    # a 429 says nothing of the server's health
    for _ in range(FAILURES_TO_PAUSE + 2):
        pool.sent(e1)
        pool.failed(e1, unhealthy=False)
    assert e1.healthy


def test_with_every_endpoint_paused_attempts_wait_for_the_first_pause_to_end():
    clock = Clock()
    pool = three(clock)
    for e in pool.endpoints:
        for _ in range(FAILURES_TO_PAUSE):
            pool.sent(e)
            pool.failed(e)
    assert pool.all_down() and pool.pick() is None
    first = min(pool.endpoints, key=lambda e: e.paused_until)
    clock.now = first.paused_until
    # nowhere else to go: every waiting attempt goes to the endpoint being probed
    assert pool.pick() is first
    pool.sent(first)
    assert pool.pick() is first
    assert pool.all_down()                      # probed is not healthy yet

    async def waits():
        clock.now -= 1.0                        # back inside every pause: choose must wait
        waiter = asyncio.ensure_future(pool.choose())
        await asyncio.sleep(0)
        assert not waiter.done()
        clock.now += 1.0
        pool.answered(first, clock.now)         # the probe answered: healthy, waiters look again
        return await asyncio.wait_for(waiter, 5)
    assert asyncio.run(waits()) is first and not pool.all_down()


def test_a_single_endpoint_is_never_paused():
    pool = EndpointPool([EndpointSpec("http://one.test/v1", "m", None)], clock=Clock())
    e = pool.endpoints[0]
    for _ in range(10 * FAILURES_TO_PAUSE):
        pool.sent(e)
        pool.failed(e)
    assert e.healthy and pool.pick() is e and pool.all_down() and e.pauses == 0


# -- three loopback servers ----------------------------------------------------------------------


def assert_figures_match_the_servers(stats: dict, made) -> None:
    for server in made:
        figures = stats["endpoints"][server.url]
        assert figures["requests"] == received(server)
        assert figures["requests"] == figures["answered"] + figures["failures"] + figures["abandoned"]
        # an attempt the run abandoned at its end (it had enough) may still have been answered
        late = figures["abandoned"]
        assert figures["answered"] <= server.answered_n <= figures["answered"] + late
        assert figures["failures"] <= server.served["http 503"] <= figures["failures"] + late


def test_a_slow_server_gets_fewer_requests_and_the_total_in_flight_stays_bounded():
    # the slow one first: ties go to the first endpoint, so only its requests in flight keep it back
    with servers(3, latencies=[0.5, 0.02, 0.02]) as (made, shared):
        teacher = pool_teacher([s.url for s in made], concurrency=6)
        answers = ask_all(teacher, prompts(90))
        assert all(a.error is None and a.text for a in answers)
        assert all(e["abandoned"] == 0 for e in teacher.stats()["endpoints"].values())
        slow, fast1, fast2 = (received(s) for s in made)
        assert slow + fast1 + fast2 == 90
        assert slow * 2 < min(fast1, fast2), (slow, fast1, fast2)
        assert shared.peak <= 6
        assert max(s.max_in_flight for s in made) <= 6
        stats = teacher.stats()
        assert_figures_match_the_servers(stats, made)
        assert all(None not in e["latency_s"].values() for e in stats["endpoints"].values())
        assert sum(e["in_flight_peak"] for e in stats["endpoints"].values()) >= 6


def test_per_endpoint_model_and_key_reach_the_server(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICA_KEY", "sk-replica")
    with servers(3) as (made, shared):
        path = write(tmp_path / "eps.txt", f"{made[0].url}\n{made[1].url} model=other key_env=REPLICA_KEY\n"
                                           f"{made[2].url} model=fake-model\n")
        teacher = OpenAITeacher(endpoints=path, model="fake-model", api_key="sk-main", concurrency=3)
        assert teacher.cache_namespace == "openai:fake-model+other|chat"
        assert all(a.error is None for a in ask_all(teacher, prompts(12)))
        assert any("写一句" in r.json["messages"][0]["content"] for s in made for r in s.received())
        for server, model, key in zip(made, ("fake-model", "other", "fake-model"),
                                      ("sk-main", "sk-replica", "sk-main")):
            assert received(server) > 0
            assert {r.json["model"] for r in server.received()} == {model}
            assert {r.headers["authorization"] for r in server.received()} == {f"Bearer {key}"}


def test_a_failing_server_loses_its_traffic_while_paused_and_gets_it_back_after():
    outage = threading.Event()
    with servers(3, latencies=[0.01, 0.01, 0.01], failing={1: lambda place: outage.is_set()}) as (made, shared):
        teacher = pool_teacher([s.url for s in made], concurrency=6)

        def phase(tag: str) -> list[int]:
            start = len(shared.arrivals)
            answers = ask_all(teacher, prompts(60, tag))
            assert all(a.error is None for a in answers)     # every request answered by someone
            part = shared.arrivals[start:]
            return [part.count(i) for i in range(3)]

        before = phase("before")
        outage.set()
        during = phase("during")
        outage.clear()
        time.sleep(0.3)                 # longer than any pause (backoff_cap=0.2): the next is a probe
        after = phase("after")
        print("requests per endpoint before/during/after the outage:", before, during, after)
        broken = teacher.stats()["endpoints"][made[1].url]
        assert before[1] >= 60 // 6                          # a fair share while healthy
        # during: everything it got failed; it was paused, so it got far less than a third
        assert broken["failures"] == made[1].served["http 503"] == during[1]
        assert broken["pauses"] >= 1 and during[1] < sum(during) / 4, during
        assert during[0] + during[2] >= 60                    # the others answered every request
        # after: probed, healthy again, a fair share
        assert after[1] >= 60 // 6, after
        assert not teacher.all_down() and teacher.live()["endpoints_up"] == "3/3"
        assert_figures_match_the_servers(teacher.stats(), made)


# -- whole generate runs ---------------------------------------------------------------------------


def generate(invoke_cli, made, out, *args, backoff=(0.02, 0.2)):
    """``selfinstruct generate`` over the servers ``made``; ``backoff``: the back-off's base and cap
    in seconds (the pauses of a failing endpoint too)."""
    urls = [arg for s in made for arg in ("--base-url", s.url)]
    return invoke_cli("generate", "--teacher", "openai", *urls, "--model", "fake-model",
                      "--out", out, "--no-progress", "--no-report", "--opt", f"backoff_base={backoff[0]}",
                      "--opt", f"backoff_cap={backoff[1]}", *args)


def read_jsonl(path) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_a_generate_run_over_three_servers_one_failing_halfway(tmp_path, invoke_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    # a run of --num 200 sends about 90 requests (several tasks per answer): server 1 answers 503
    # from the run's 15th request to its 45th, then recovers
    with servers(3, latencies=[0.03, 0.03, 0.03], failing={1: lambda place: 15 <= place < 45},
                 text_fn=reply) as (made, shared):
        out = tmp_path / "out"
        result = generate(invoke_cli, made, out, "--num", "200", "--concurrency", "4",
                          backoff=(0.1, 0.2))
        assert result.exit_code == 0, result.output
        with open(out / "summary.json", encoding="utf-8") as f:
            summary = json.load(f)
        with open(out / "data.json", encoding="utf-8") as f:
            assert summary["kept"] == len(json.load(f)) == 200
        assert made[1].served["http 503"] > 0 and len(shared.arrivals) > 45
        before, during, after = ([shared.arrivals[a:b].count(i) for i in range(3)]
                                 for a, b in ((0, 15), (15, 45), (45, None)))
        print("requests per endpoint before/during/after the outage:", before, during, after)
        assert during[1] < sum(during) / 3                         # less than its share: paused
        # nothing lost or doubled: every answer the servers wrote is journaled once, under its own key
        answers = [e for e in read_jsonl(out / "journal.jsonl") if e.get("ev") == "resp"]
        keys = [e["key"] for e in answers]
        assert len(keys) == len(set(keys))
        endpoints = summary["teacher"]["endpoints"].values()
        assert sum(1 for e in answers if not e["resp"]["cached"]) == sum(e["answered"] for e in endpoints)
        assert sum(e["answered"] for e in endpoints) == sum(c.get("paid", 0) for c in summary["requests_per_stage"].values())
        assert summary["requests_per_stage"] and not any(
            c.get("failed") for c in summary["requests_per_stage"].values())
        assert_figures_match_the_servers(summary["teacher"], made)
        assert summary["teacher"]["endpoints"][made[1].url]["pauses"] >= 1
        assert after[1] > 0                                        # traffic again after recovery
        # the report's Endpoints table shows the same figures
        shown = usage_html(SimpleNamespace(usage=usage(summary)), {})
        for server in made:
            figures = summary["teacher"]["endpoints"][server.url]
            assert (f"<tr><td>{server.url}</td><td>fake-model</td><td class=n>{figures['requests']}</td>"
                    f"<td class=n>{figures['answered']}</td><td class=n>{figures['failures']}</td>") in shown


def test_the_report_shows_endpoints_as_text_and_only_when_there_are_several():
    summary = {"teacher": {"name": "openai:<b>m</b>", "endpoints": {
        "http://a.test/v1": {"model": "<script>alert(1)</script>", "requests": 1200, "answered": 1190,
                             "failures": 10, "pauses": 2, "paused_s": 1.5, "in_flight_peak": 8,
                             "latency_s": {"mean": 0.25, "p50": 0.2, "p90": 0.5}},
        "http://b.test/v1": {"model": "m", "requests": 0, "answered": 0, "failures": 0, "pauses": 0,
                             "paused_s": 0.0, "in_flight_peak": 0,
                             "latency_s": {"mean": None, "p50": None, "p90": None}}}}}
    shown = usage_html(SimpleNamespace(usage=usage(summary)), {})
    assert "<h4>Endpoints</h4>" in shown and "<script>" not in shown
    assert ("<tr><td>http://a.test/v1</td><td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td class=n>1,200</td>"
            "<td class=n>1,190</td><td class=n>10</td><td class=n>2</td><td class=n>1.500</td>"
            "<td class=n>8</td><td class=n>0.250</td><td class=n>0.200</td><td class=n>0.500</td></tr>") in shown
    assert "<tr><td>http://b.test/v1</td><td>m</td>" + "<td class=n>0</td>" * 4 in shown
    assert shown.count("<td class=n>–</td>") == 3                # no answer, no latency
    del summary["teacher"]["endpoints"]
    assert "Endpoints" not in usage_html(SimpleNamespace(usage=usage(summary)), {})


def test_one_server_down_for_good_does_not_stop_the_run(tmp_path, invoke_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with servers(3, latencies=[0.02, 0.02, 0.0], failing={2: lambda place: True},
                 text_fn=reply) as (made, shared):
        result = generate(invoke_cli, made, tmp_path / "out", "--num", "100", "--concurrency", "4",
                          backoff=(0.1, 0.4))
        assert result.exit_code == 0, result.output
        with open(tmp_path / "out" / "summary.json", encoding="utf-8") as f:
            summary = json.load(f)
        assert summary["kept"] == 100
        down = summary["teacher"]["endpoints"][made[2].url]
        print("requests per endpoint, the third down:", [received(s) for s in made], down)
        assert down["answered"] == 0 and down["failures"] >= FAILURES_TO_PAUSE
        assert down["failures"] + down["abandoned"] == received(made[2])
        assert down["requests"] < received(made[0]) and down["requests"] < received(made[1])


def test_every_server_down_stops_the_run_only_once_all_are_paused(tmp_path, invoke_cli, monkeypatch,
                                                                   error_line):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with servers(3, failing={i: (lambda place: True) for i in range(3)}, text_fn=reply) as (made, shared):
        result = generate(invoke_cli, made, tmp_path / "out", "--num", "20", "--concurrency", "2",
                          "--opt", "max_attempts=2")
        failed = re.match(r"Error: the teacher failed (\d+) requests in a row \(last: http 503 after 2 attempts\)",
                          error_line(result))
        assert failed and int(failed.group(1)) >= 24
        # it stopped only after every endpoint had failed enough to be paused
        assert all(received(s) >= FAILURES_TO_PAUSE for s in made)
        assert sum(received(s) for s in made) >= 24 * 2
