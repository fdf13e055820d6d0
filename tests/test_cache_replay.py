"""An identical run into a new folder, with the cache an earlier uninterrupted run left, sends no
request: prompts depend on the settings and the answers, not on when the answers arrived."""
import json
import os

import pytest

from selfinstruct.generate import Settings, run_generate
from tests.fake_openai_server import FakeOpenAI, serve_in_thread
from tests.sim_teacher import reply


def run(server, out, cache, recipe, num):
    s = Settings(num=num, out=str(out), recipe=recipe, teacher="openai", cache=str(cache), progress=False,
                 teacher_options={"base_url": server.url, "model": "fake", "api_key": "sk-test",
                                  "concurrency": 8})
    return run_generate(s)


@pytest.mark.parametrize("recipe, num", [("alpaca", 40), ("self-instruct", 25)])
def test_an_identical_rerun_with_random_latency_is_served_by_the_cache(tmp_path, recipe, num):
    cache = tmp_path / "cache" / "responses.sqlite"
    # every request waits 5-60 ms, drawn at random: answers come back in another order each run
    with serve_in_thread(FakeOpenAI(text_fn=reply, latency_range=(0.005, 0.06), seed=3)) as server:
        first = run(server, tmp_path / "a", cache, recipe, num)
        sent = len(server.requests)      # the answered ones, and those still in flight at the end
        assert sent >= first["requests"]["paid"] > 8          # more than one round of 8 in flight
        second = run(server, tmp_path / "b", cache, recipe, num)
        assert len(server.requests) == sent                   # not one request more
    assert second["requests"].get("paid", 0) == 0 and second["requests"]["cached"] > 0
    data = [json.load(open(tmp_path / d / "data.json")) for d in ("a", "b")]
    assert data[0] == data[1] and len(data[0]) == num


def test_answers_that_arrive_out_of_order_are_decided_in_unit_order(tmp_path):
    """Unit 0's answer comes last; its candidates still get the first ids."""
    with serve_in_thread(FakeOpenAI(text_fn=reply, latency_range=(0.005, 0.06), seed=11)) as server:
        run(server, tmp_path / "a", tmp_path / "c.sqlite", "alpaca", 30)
    recs = [json.loads(line) for line in open(tmp_path / "a" / "records.jsonl")]
    units = [int(r["request_id"].split(":")[0][1:]) for r in recs]
    assert units == sorted(units)
    assert [r["id"] for r in recs] == [f"en-{i:06d}" for i in range(1, 31)]
