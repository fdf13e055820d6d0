"""``generate --estimate``: the projection's arithmetic (``project``, on units made up here), and the
real command against the loopback OpenAI-compatible server, whose ``usage`` is known (prompt and
completion tokens are len(text) // 4 + 1): the sample's token counts, the projected values, the
files written, and the real run that follows (it asks none of the sample's requests again, and what
it pays lies in the estimate's interval)."""
import json
import os
import subprocess
import sys

import pytest

from selfinstruct.generate.estimate import (BATCH_PRICE_FACTOR, PROJECTED, Limits, UnitSample,
                                            _budget_warning, _sample_settings, project)
from selfinstruct.generate.settings import Settings
from selfinstruct.publish import Publish
from tests.fake_openai_server import FakeOpenAI, prompt_of, serve_in_thread
from tests.sim_teacher import reply

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def strict_json(path):
    """estimate.json parsed, failing on NaN or Infinity (which json.dumps writes unless told not to)."""
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}")
    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_constant=refuse)


def assert_intervals(est):
    for name in PROJECTED:
        cell = est[name]
        assert set(cell) == {"value", "low", "high"}, name
        assert cell["low"] <= cell["value"] <= cell["high"], (name, cell)


# -- the projection, on made-up units ---------------------------------------------------------------


def unit(requests=1, prompt=100, completion=50, candidates=3, accepted=2, latency=1.0, paid=None):
    paid = requests if paid is None else paid
    return UnitSample(requests=requests, paid=paid, prompt_tokens=prompt, completion_tokens=completion,
                      latency_s=latency * paid, candidates=candidates, accepted=accepted)


def test_identical_units_project_exactly_with_the_last_wave_as_the_only_spread():
    units = [unit() for _ in range(10)]          # 1 request, 100 + 50 tokens, 2 of 3 accepted each
    est, warnings = project(units, remaining=100, price_in=1.0, price_out=2.0, limits=Limits(concurrency=4))
    assert warnings == []
    # 100 records at 2 per unit: 50 units, 50 requests; the last wave adds half a pipe (2 units) to
    # the value and up to twice the pipe (8) to the interval
    assert est["requests"] == {"value": 52.0, "low": 50.0, "high": 58.0}
    assert est["prompt_tokens"] == {"value": 5200.0, "low": 5000.0, "high": 5800.0}
    assert est["completion_tokens"] == {"value": 2600.0, "low": 2500.0, "high": 2900.0}
    # every resample accepts 2 of 3: the candidates' Wilson interval (20 of 30) still bounds the rate
    assert est["acceptance_rate"]["value"] == 2 / 3
    assert est["acceptance_rate"]["low"] == pytest.approx(0.5166, abs=1e-4)
    assert est["acceptance_rate"]["high"] == pytest.approx(0.7892, abs=1e-4)
    assert est["cost_usd"]["value"] == pytest.approx((5200 * 1.0 + 2600 * 2.0) / 1e6, rel=1e-12)
    assert est["cost_usd"]["low"] == pytest.approx(0.01, rel=1e-12)
    for end in ("value", "low", "high"):
        assert est["cost_usd_batch"][end] == pytest.approx(est["cost_usd"][end] * BATCH_PRICE_FACTOR, rel=1e-12)
    # 50 requests of 1 s, 4 at a time
    assert est["wall_seconds"]["value"] == pytest.approx(12.5)


def test_the_interval_follows_the_spread_of_the_units():
    even = [unit(accepted=2) for _ in range(20)]
    uneven = [unit(accepted=a) for a in (0, 3, 1, 3, 0, 3, 2, 3, 1, 3, 0, 3, 2, 3, 1, 3, 0, 3, 2, 3)]
    limits = Limits(concurrency=1)
    tight, _ = project(even, 100, 1.0, 1.0, limits)
    wide, warnings = project(uneven, 100, 1.0, 1.0, limits)
    assert warnings == []
    assert_intervals(wide)
    spread = wide["requests"]["high"] - wide["requests"]["low"]
    assert spread > 10 * (tight["requests"]["high"] - tight["requests"]["low"])
    # and the same sample gives the same interval (a seeded bootstrap)
    assert project(uneven, 100, 1.0, 1.0, limits)[0] == wide


def test_wall_time_is_bound_by_the_slowest_of_latency_rpm_and_tpm_plus_the_startup():
    units = [unit(requests=2, prompt=300, completion=100, accepted=1, latency=0.5) for _ in range(5)]
    # 10 records: 10 units, 20 requests of 0.5 s, 4000 tokens; concurrency 2 (the last wave counts in
    # the money, not in the time: its requests run alongside the last ones needed)
    free = project(units, 10, 0.0, 0.0, Limits(concurrency=2, startup_s=3.0))[0]["wall_seconds"]
    assert free["value"] == pytest.approx(20 * 0.5 / 2 + 3.0)
    by_rpm = project(units, 10, 0.0, 0.0, Limits(concurrency=2, rpm=60))[0]["wall_seconds"]
    assert by_rpm["value"] == pytest.approx(20 / 60 * 60)
    by_tpm = project(units, 10, 0.0, 0.0, Limits(concurrency=2, rpm=60, tpm=1200))[0]["wall_seconds"]
    assert by_tpm["value"] == pytest.approx(4000 / 1200 * 60)


def test_a_sample_that_accepted_nothing_projects_nothing_and_says_so():
    units = [unit(accepted=0) for _ in range(6)]
    est, warnings = project(units, 50, 1.0, 2.0, Limits(concurrency=4))
    # 0 of 18 candidates: the rate is 0, and at most what the Wilson interval of 0/18 allows
    assert est["acceptance_rate"] == {"value": 0.0, "low": 0.0, "high": pytest.approx(0.1307, abs=1e-4)}
    assert all(est[name] is None for name in PROJECTED if name != "acceptance_rate")
    assert "accepted nothing" in warnings[0]
    json.dumps(est, allow_nan=False)
    # no candidate at all (every request failed): the same, no division by zero
    est, warnings = project([unit(candidates=0, accepted=0)], 50, 1.0, 2.0, Limits(concurrency=4))
    assert est["acceptance_rate"] == {"value": 0.0, "low": 0.0, "high": 1.0} and "accepted nothing" in warnings[0]


def test_a_sample_too_small_to_bound_the_run_leaves_the_high_end_open_never_infinite():
    # one unit in ten accepted: about a third of the resamples (0.9 ** 10) accept nothing and would
    # need infinitely much
    units = [unit(accepted=1)] + [unit(accepted=0) for _ in range(9)]
    est, warnings = project(units, 20, 1.0, 1.0, Limits(concurrency=1))
    assert est["requests"]["value"] == pytest.approx(20 * 10 / 1 + 0.5)
    assert est["requests"]["high"] is None and est["requests"]["low"] <= est["requests"]["value"]
    assert any("too small" in w and w.startswith("requests") for w in warnings)
    json.dumps(est, allow_nan=False)


def test_a_sample_served_whole_from_the_cache_has_no_latency_to_project_from():
    units = [unit(paid=0) for _ in range(4)]
    est, warnings = project(units, 10, 1.0, 1.0, Limits(concurrency=4))
    assert est["wall_seconds"] is None and est["requests"] is not None
    assert any("from the cache" in w for w in warnings)
    # a rate limit still bounds it
    est, _ = project(units, 10, 1.0, 1.0, Limits(concurrency=4, rpm=30))
    assert est["wall_seconds"]["value"] == pytest.approx(5 / 30 * 60)


def test_a_budget_below_the_projected_cost_is_pointed_out():
    cost = {"value": 4.0, "low": 3.0, "high": 5.0}
    assert _budget_warning(cost, 1.0, 200) == ("the projected cost $4.0000 is above --max-cost $1.0000: the run "
                                               "will stop there, with about 50 of the 200 examples still to accept")
    assert _budget_warning(cost, 4.0, 200) == _budget_warning(cost, None, 200) == ""
    assert _budget_warning(None, 1.0, 200) == ""        # nothing projected (nothing accepted)


def test_the_sample_runs_online_into_its_own_folder_and_publishes_nothing(tmp_path):
    s = Settings(num=10, out=str(tmp_path / "out"), teacher="openai", estimate=True, estimate_sample=7,
                 teacher_options={"batch": True, "model": "m"},
                 publish=Publish(format="sharegpt", hf_out=str(tmp_path / "hf"), test_size=0.1))
    sample = _sample_settings(s, str(tmp_path / "tmp"))
    assert sample.out == str(tmp_path / "tmp") and sample.sample_requests == 7
    assert sample.teacher_options == {"model": "m"} and sample.publish == Publish()
    assert not sample.estimate and not sample.progress
    assert sample.journal_identity() == s.journal_identity()      # the same run, so the same prompts


# -- the command, against the loopback server -------------------------------------------------------


class UsageLog:
    """The server's text function, logging each prompt and answer (the server's usage is
    len // 4 + 1 of each)."""

    def __init__(self, answer=reply):
        self.answer, self.seen = answer, []

    def __call__(self, prompt):
        text = self.answer(prompt)
        self.seen.append((prompt, text))
        return text

    def prompt_tokens(self, since=0):
        return sum(len(p) // 4 + 1 for p, _ in self.seen[since:])

    def completion_tokens(self, since=0):
        return sum(len(t) // 4 + 1 for _, t in self.seen[since:])


@pytest.fixture
def logged():
    log = UsageLog()
    with serve_in_thread(FakeOpenAI(text_fn=log)) as server:
        server.log = log
        yield server


def generate(server, out, *args):
    cmd = [sys.executable, "cli.py", "generate", "--teacher", "openai", "--base-url", server.url,
           "--model", "fake-model", "--out", str(out), "--no-progress", "--no-report",
           "--price-in", "1", "--price-out", "2", *[str(a) for a in args]]
    env = {**os.environ, "OPENAI_API_KEY": ""}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def prompts(server, since=0):
    return [prompt_of(r.json) for r in server.received()[since:]]


def test_estimate_then_run_the_run_replays_the_sample_and_pays_within_the_interval(logged, tmp_path, read_json):
    out = tmp_path / "out"
    r = generate(logged, out, "--num", 120, "--concurrency", 4, "--estimate")
    assert r.returncode == 0, r.stderr
    assert os.listdir(out) == ["estimate.json"]
    est = strict_json(out / "estimate.json")
    assert {"num", "sample", "sample_reused", "teacher", "prices", "settings", *PROJECTED} <= set(est)
    assert_intervals(est)
    assert est["num"] == 120 and est["sample_reused"] is True and est["warnings"] == []
    assert est["prices"]["in"] == 1.0 and est["prices"]["out"] == 2.0
    sample = est["sample"]
    assert sample["stopped"] == "sampled: 20 requests"
    # every request the sample asked reached the server (a fresh cache), with the server's usage
    assert sample["requests"] == sample["paid"] == len(logged.log.seen) >= 20
    P, C = logged.log.prompt_tokens(), logged.log.completion_tokens()
    assert (sample["prompt_tokens"], sample["completion_tokens"]) == (P, C)
    assert sample["cost_usd"] == pytest.approx((P * 1 + C * 2) / 1e6, abs=1e-6)     # what the teacher paid
    # the projection: remaining x (per unit) / (accepted per unit), plus half a pipe (2 units)
    R, A, U = sample["requests"], sample["accepted"], sample["units"]
    assert A > 0
    assert est["requests"]["value"] == pytest.approx(120 * R / A + 2 * R / U, rel=1e-12)
    assert est["prompt_tokens"]["value"] == pytest.approx(120 * P / A + 2 * P / U, rel=1e-12)
    assert est["completion_tokens"]["value"] == pytest.approx(120 * C / A + 2 * C / U, rel=1e-12)
    cost = (est["prompt_tokens"]["value"] * 1 + est["completion_tokens"]["value"] * 2) / 1e6
    assert est["cost_usd"]["value"] == pytest.approx(cost, rel=1e-12)
    assert est["cost_usd_batch"]["value"] == pytest.approx(cost / 2, rel=1e-12)
    assert est["acceptance_rate"]["value"] == pytest.approx(A / sample["candidates"])
    assert "90% interval" in r.stdout and "cost (USD)" in r.stdout and "estimate.json" in r.stdout

    before = len(logged.received())
    r = generate(logged, out, "--num", 120, "--concurrency", 4)
    assert r.returncode == 0, r.stderr
    assert not set(prompts(logged, before)) & set(prompts(logged)[:before])     # nothing asked twice
    summary = read_json(out / "summary.json")
    assert summary["requests"]["cached"] == sample["requests"]
    # the real run pays for what the sample did not: together they are the run the estimate projected
    whole = summary["cost_usd"] + sample["cost_usd"]
    assert est["cost_usd"]["low"] <= whole <= est["cost_usd"]["high"]
    asked = summary["requests"]["cached"] + summary["requests"]["paid"]
    assert est["requests"]["low"] <= asked <= est["requests"]["high"]


def test_a_sample_that_accepts_nothing_warns_and_exits_0(tmp_path):
    log = UsageLog(answer=lambda prompt: "I am not sure what you mean.")
    with serve_in_thread(FakeOpenAI(text_fn=log)) as server:
        r = generate(server, tmp_path / "zero", "--num", 50, "--concurrency", 2, "--estimate-sample", 6,
                     "--estimate")
    assert r.returncode == 0, r.stderr
    est = strict_json(tmp_path / "zero" / "estimate.json")
    assert est["acceptance_rate"]["value"] == est["acceptance_rate"]["low"] == 0.0
    assert 0 < est["acceptance_rate"]["high"] < 0.5
    assert all(est[name] is None for name in PROJECTED if name != "acceptance_rate")
    assert "accepted nothing" in est["warning"]
    assert est["sample"]["accepted"] == 0 and est["sample"]["candidates"] > 0
    assert "warning: the sample accepted nothing" in r.stdout


def test_estimate_sample_0_is_refused(invoke_cli, error_line, tmp_path):
    r = invoke_cli("generate", "--teacher", "openai", "--base-url", "http://127.0.0.1:9/v1", "--num", 5,
                   "--out", tmp_path / "out", "--estimate", "--estimate-sample", 0)
    assert error_line(r) == "Error: --estimate-sample must be at least 1 (got 0)"
    assert not (tmp_path / "out").exists()


def test_chinese_estimate_for_a_batch_run_samples_online(tmp_path):
    log = UsageLog(answer=lambda prompt: reply(prompt, "zh"))
    with serve_in_thread(FakeOpenAI(text_fn=log)) as server:
        r = generate(server, tmp_path / "zh", "--lang", "zh", "--num", 60, "--concurrency", 2,
                     "--estimate-sample", 6, "--batch", "--estimate")
        paths = {q.path for q in server.requests}
    assert r.returncode == 0, r.stderr
    est = strict_json(tmp_path / "zh" / "estimate.json")
    assert_intervals(est)
    assert est["settings"]["lang"] == "zh" and est["sample"]["accepted"] > 0
    assert est["sample"]["prompt_tokens"] == log.prompt_tokens()
    assert any("任务" in p for p, _ in log.seen)          # the Chinese prompts were what was sampled
    # a batch may take a day: the sample went online (no file, no batch), the batch price is half
    assert paths == {"/v1/chat/completions"}
    assert est["settings"]["batch"] is True and any(w.startswith("--batch") for w in est["warnings"])
    assert est["cost_usd_batch"]["value"] == pytest.approx(est["cost_usd"]["value"] / 2, rel=1e-12)


def test_without_a_cache_the_real_run_pays_for_the_sample_again(logged, tmp_path):
    out = tmp_path / "out"
    r = generate(logged, out, "--num", 30, "--concurrency", 2, "--estimate-sample", 4, "--no-cache", "--estimate")
    assert r.returncode == 0, r.stderr
    est = strict_json(out / "estimate.json")
    assert est["sample_reused"] is False
    assert "pays for the sample's requests again" in r.stdout
    sampled = prompts(logged)
    r = generate(logged, out, "--num", 30, "--concurrency", 2, "--no-cache")
    assert r.returncode == 0, r.stderr
    assert set(sampled) <= set(prompts(logged, len(sampled)))


def test_a_partial_run_is_estimated_for_what_remains_and_a_finished_one_is_refused(logged, tmp_path, read_json,
                                                                                 error_line):
    out = tmp_path / "out"
    assert generate(logged, out, "--num", 15, "--concurrency", 2).returncode == 0
    journal = (out / "journal.jsonl").read_bytes()
    r = generate(logged, out, "--num", 60, "--concurrency", 2, "--estimate-sample", 6, "--estimate")
    assert r.returncode == 0, r.stderr
    assert (out / "journal.jsonl").read_bytes() == journal         # OUT's run is left as it was
    est = strict_json(out / "estimate.json")
    assert est["settings"]["already_accepted"] == 15 and est["settings"]["remaining"] == 45
    assert "45 still to accept" in r.stdout
    sample = est["sample"]
    assert est["requests"]["value"] == pytest.approx(45 * sample["requests"] / sample["accepted"]
                                                  + 1 * sample["requests"] / sample["units"])
    # the sample resumed OUT's run, so the resumed real run asks none of its requests again
    before = len(logged.received())
    assert generate(logged, out, "--num", 60, "--concurrency", 2).returncode == 0
    assert not set(prompts(logged, before)) & set(prompts(logged)[:before])
    assert read_json(out / "summary.json")["requests"]["cached"] == sample["requests"]
    # nothing remains: refused
    r = generate(logged, out, "--num", 60, "--estimate")
    assert "already holds a finished run (60/60 examples)" in error_line(r)
