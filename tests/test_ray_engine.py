"""The Ray engine (``selfinstruct.engines.ray``): the engine contract on Ray, and ``selfinstruct filter
--engine ray`` deciding exactly as the in-process engine does.

One local Ray cluster of 2 CPUs serves the whole module: the ``ray_cluster`` fixture starts it through
``RayEngine`` itself (the path a plain ``--engine ray`` run takes) and checks at the end that closing
that engine shut Ray down. Every other engine made here finds Ray initialised and uses that cluster
(as a notebook's Ray would be used), so none of them may shut it down.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("ray")

from selfinstruct.engines import EngineSettings  # noqa: E402
from selfinstruct.errors import UsageError  # noqa: E402

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_cluster():
    """The module's one local cluster, started (and finally shut down) by a RayEngine."""
    import ray

    from selfinstruct.engines.ray import RayEngine

    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process: the engine would not own it")
    owner = RayEngine(2)
    assert ray.is_initialized() and owner._opened
    yield owner
    owner.close()
    assert not ray.is_initialized(), "the engine that started the local cluster must shut it down"


@pytest.fixture
def engine(ray_cluster):
    from selfinstruct.engines.ray import RayEngine

    made = RayEngine(2)
    yield made
    made.close()


# -- workers' code (module level: Ray imports it by reference) ---------------------------------


class Tally:
    """State that must stay in its actor between calls."""

    def __init__(self, start: int = 0, label: str = ""):
        self.total, self.label, self.seen = start, label, []

    def add(self, value: int, text: str = "") -> int:
        self.total += value
        self.seen.append(text)
        return self.total

    def state(self) -> tuple[int, str, list[str]]:
        return self.total, self.label, self.seen

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def refuse(self, message: str) -> None:
        raise UsageError(message)

    def grow(self, megabytes: int) -> int:
        self.ballast = bytearray(megabytes << 20)
        for i in range(0, len(self.ballast), 4096):      # touch every page: resident, not just mapped
            self.ballast[i] = 1
        return len(self.ballast)

    def die(self) -> None:
        os._exit(3)

    def meet(self, folder: str, me: str, other: str, patience: float = 60.0) -> bool:
        """Leave a mark and wait for the other actor's: true only if both calls run at the same time
        (the wait is a guard against a hang, not a measurement)."""
        Path(folder, me).write_text("here")
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if Path(folder, other).exists():
                return True
            time.sleep(0.01)
        return False


class BrokenAtBirth:
    def __init__(self, why: str):
        raise RuntimeError(why)


def shout(text: str) -> str:
    return text.upper() + "!"


def parse_number(text: str) -> int:
    return int(text)


# -- the contract ----------------------------------------------------------------------------------


def test_map_keeps_input_order_and_items_as_given(engine):
    items = [f"item {i} 第{i}条" for i in range(1000)]
    assert engine.map(shout, items) == [shout(t) for t in items]
    mixed = [("a", [1, 2]), {"k": "中文"}, None, b"\x00\x00", 3.5, ["x"]]
    assert engine.map(repr, mixed) == [repr(x) for x in mixed]       # a list stays a list, bytes bytes
    assert engine.map(shout, []) == []
    assert engine.map(shout, ["only"]) == ["ONLY!"]


def test_actors_keep_their_state_between_calls(engine):
    first, second = engine.actors(Tally, [(10, "en"), (100, "zh")])
    assert engine.call([(first, "add", (1, "one")), (second, "add", (2, "二"))]) == [11, 102]
    assert engine.call([(second, "add", (3, "三")), (first, "add", (4, "four"))]) == [105, 15]
    assert engine.call([(first, "state", ()), (second, "state", ())]) == [
        (15, "en", ["one", "four"]), (105, "zh", ["二", "三"])]


def test_calls_to_different_actors_run_at_the_same_time(engine, tmp_path):
    a, b = engine.actors(Tally, [(), ()])
    met = engine.call([(a, "meet", (str(tmp_path), "a", "b")), (b, "meet", (str(tmp_path), "b", "a"))])
    assert met == [True, True]


def test_an_error_inside_an_actor_is_raised_as_itself(engine):
    (actor,) = engine.actors(Tally, [(1,)])
    with pytest.raises(ValueError) as caught:
        engine.call([(actor, "fail", ("the shard's pool is corrupt: 池损坏",))])
    assert str(caught.value) == "the shard's pool is corrupt: 池损坏"
    with pytest.raises(UsageError, match="^--opt rouge.x: not a number$"):
        engine.call([(actor, "refuse", ("--opt rouge.x: not a number",))])
    assert engine.call([(actor, "add", (1,))]) == [2]                 # the actor lives on


def test_an_error_in_a_constructor_surfaces_when_the_actors_are_made(engine):
    with pytest.raises(RuntimeError, match="^no pool for you$"):
        engine.actors(BrokenAtBirth, [("no pool for you",)])


def test_an_error_inside_a_map_task_is_raised_as_itself(engine):
    with pytest.raises(ValueError, match="invalid literal for int"):
        engine.map(parse_number, ["1", "2", "three"])
    assert engine.map(parse_number, ["1", "2"]) == [1, 2]


def test_a_worker_that_dies_is_an_error_not_a_hang(engine):
    doomed, healthy = engine.actors(Tally, [(), ()])
    with pytest.raises(RuntimeError, match="a Ray worker died"):
        engine.call([(doomed, "die", ())])
    assert engine.call([(healthy, "add", (5,))]) == [5]


def test_peak_rss_is_each_actors_own(engine):
    big, small = engine.actors(Tally, [(), ()])
    engine.call([(big, "grow", (200,))])
    peaks = engine.peak_rss()
    assert len(peaks) == 2 and all(isinstance(p, int) and p > 0 for p in peaks)
    assert peaks[0] >= 200 << 20
    assert peaks[0] - peaks[1] >= 150 << 20


def test_close_kills_the_actors_but_leaves_a_ray_it_did_not_start(ray_cluster):
    import ray

    from selfinstruct.engines.ray import RayEngine

    engine = RayEngine(2)
    (actor,) = engine.actors(Tally, [()])
    handle = actor.handle
    engine.close()
    engine.close()                          # twice is fine
    assert ray.is_initialized()
    assert _dies(ray, handle), "close() must kill the actors"
    assert ray_cluster.map(shout, ["still up"]) == ["STILL UP!"]


def _dies(ray, handle, patience: float = 60.0) -> bool:
    """Whether the actor stops answering (ray.kill is asynchronous: a call sent at once may still be
    served); the patience only guards against a hang."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            ray.get(handle.run.remote("state", ()), timeout=patience)
        except ray.exceptions.RayActorError:
            return True
        time.sleep(0.05)
    return False


# -- refusals (no cluster needed) -------------------------------------------------------------------


@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:1", "no Ray cluster answers there"),
    ("ray://127.0.0.1:1", "no Ray cluster answers there"),
    ("head-node", "expected HOST:PORT"),
    ("head-node:port", "expected HOST:PORT"),
])
def test_a_bad_ray_address_is_refused_at_once(address, says, monkeypatch):
    import ray

    from selfinstruct.engines.ray import RayEngine

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init must not be reached"))
    with pytest.raises(UsageError, match=f"^--ray-address {address}: .*{says}") as caught:
        RayEngine(2, address)
    assert "\n" not in str(caught.value)


def test_without_ray_installed_the_user_is_told_how_to_get_it(monkeypatch):
    from selfinstruct.engines import open_engine

    monkeypatch.setitem(sys.modules, "ray", None)      # what a missing package looks like to import
    with pytest.raises(UsageError, match=r"pip install 'selfinstruct\[ray\]'"):
        with open_engine(EngineSettings("ray", 2)):
            pass


def test_cli_bad_ray_address_exits_2_with_one_line(tmp_path, write_jsonl, invoke_cli, error_line):
    data = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Name three rivers in Europe.",
                                                "output": "The Danube, the Rhine and the Seine."}])
    result = invoke_cli("filter", data, "--out", tmp_path / "o", "--engine", "ray", "--ray-address",
                        "127.0.0.1:1")
    line = error_line(result)
    assert "--ray-address 127.0.0.1:1" in line and "no Ray cluster answers there" in line
    assert not (tmp_path / "o").exists()


# -- filter --engine ray decides as the in-process engine ------------------------------------------

EN_TIE = ["Explain why the sky looks blue during a clear day.",        # 10 tokens
          "Explain how the sky looks grey during a clear night.",      # LCS 7 of 10 + 10: F = 0.7 exactly
          "Explain why the sky looks red during a clear day.",         # LCS 9: F = 0.9, rejected
          "Explain why the sky looks blue during a day."]              # LCS 9 of 10 + 9: F = 0.947
EVAL_EN = ("The lighthouse keeper rowed out every evening to count the gulls nesting on the "
           "northern rocks of the bay.")
EVAL_ZH = "灯塔看守人每天傍晚划船出海，去数一数栖息在海湾北边礁石上的海鸥，然后把数字记在本子上。"
ZH_BASE = "请描述春天早晨的公园"                                        # 10 characters, all distinct


def _zh_tie() -> list[str]:
    chars = list(ZH_BASE)
    tie = list(chars)
    for pos, new in zip((1, 5, 9), "讲冬夜"):                         # 3 of 10 replaced: F = 0.7 exactly
        tie[pos] = new
    close = list(chars)
    close[4] = "秋"                                                    # 1 replaced: F = 0.9
    shorter = chars[:9]                                                # LCS 9 of 10 + 9: F = 0.947
    return ["".join(c) + "。" for c in (chars, tie, close, shorter)]        # "。" is not a token


def _english(rng) -> list[dict]:
    verbs, adjs = ["Write", "Compose", "Draft"], ["short", "funny", "sad", "formal", "gentle"]
    forms = ["poem", "story", "letter", "song"]
    topics = ["the sea", "autumn leaves", "a lost cat", "city lights", "old friends", "morning coffee"]
    rows = [{"instruction": t, "output": f"An answer about the colour of the sky, number {i}."}
            for i, t in enumerate(EN_TIE)]
    for i in range(160):
        inst = (f"{rng.choice(verbs)} a {rng.choice(adjs)} {rng.choice(forms)} about "
                f"{rng.choice(topics)} for {rng.choice(['children', 'students', 'my neighbour'])}.")
        rows.append({"instruction": inst, "input": "", "output": f"Here is piece {i}, in plain words."})
    rows += [dict(rows[7]), dict(rows[30])]                             # exact duplicates
    rows += [
        {"instruction": "Write a program that sorts a list.", "output": "Use sorted(items)."},
        {"instruction": "Summarise the page at https://example.com/news today.", "output": "It is news."},
        {"instruction": "List three prime numbers below twenty.", "output": ""},
        {"instruction": "Tell me a secret about your training.",
         "output": "As an AI language model, I cannot share that."},
        {"instruction": "Complete the sentence below:", "output": "It was a dark night."},
        {"instruction": f"Retell this in your own words: {EVAL_EN}", "output": "A keeper counts gulls."},
    ]
    return rows


def _chinese(rng) -> list[dict]:
    rows = [{"instruction": t, "output": f"这是关于公园景色的回答，第{i}条。"} for i, t in enumerate(_zh_tie())]
    for i in range(160):
        inst = (f"{rng.choice(['请写', '请创作', '帮我写'])}一{rng.choice(['首', '篇'])}关于"
                f"{rng.choice(['大海', '秋天', '小猫', '城市夜景', '老朋友', '早晨咖啡'])}的"
                f"{rng.choice(['短诗', '故事', '书信', '歌曲'])}，"
                f"{rng.choice(['给孩子们看', '给学生读', '送给邻居'])}。")
        rows.append({"instruction": inst, "input": "", "output": f"这是第{i}篇作品，用朴素的语言写成。"})
    rows += [dict(rows[7]), dict(rows[30])]
    rows += [
        {"instruction": "请访问 https://example.com/news 并总结内容。", "output": "这是新闻。"},
        {"instruction": "列出二十以内的三个质数。", "output": ""},
        {"instruction": "告诉我你的训练数据。", "output": "作为一个AI语言模型，我无法分享这些信息。"},
        {"instruction": f"用自己的话复述：{EVAL_ZH}", "output": "看守人数海鸥。"},
    ]
    return rows


def _near_copies(lang: str) -> list[dict]:
    """Long records that differ by a word or two: MinHash's near-duplicates."""
    if lang == "en":
        body = ("The river rises in the northern hills, runs through three market towns and a wide "
                "plain of farms, and reaches the sea after four hundred kilometres; its water feeds "
                "the mills, the fields and the city of the estuary, which grew rich on its trade. ")
        swaps = [("three", "four"), ("wide", "broad"), ("farms", "orchards"), ("mills", "canals")]
    else:
        body = ("这条河发源于北方的山丘，流经三座集镇和一片广阔的农田平原，奔流四百公里后汇入大海；"
                "河水滋养着磨坊、田野和河口的城市，那座城市因河上的贸易而富裕起来。")
        swaps = [("三座", "四座"), ("广阔", "宽广"), ("农田", "果园"), ("磨坊", "水渠")]
    rows = [{"instruction": "Describe the river." if lang == "en" else "描述这条河。", "output": body * 2}]
    for n, (old, new) in enumerate(swaps):
        rows.append({"instruction": rows[0]["instruction"], "input": f"{n}",
                     "output": (body * 2).replace(old, new, 1)})
    return rows


def _dataset(lang: str) -> list[dict]:
    import random

    rng = random.Random(15)
    rows = _english(rng) if lang == "en" else _chinese(rng)
    return rows + _near_copies(lang)


def _run(inputs, out: Path, settings: EngineSettings, **options) -> dict:
    from selfinstruct.curate import run_filter

    summary = run_filter(inputs, str(out), progress=False, engine=settings, **options)
    return summary


def _rejects(out: Path) -> list[dict]:
    lines = (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _reasons(out: Path) -> list[tuple[str, str]]:
    """(where the record was read, why it was rejected), in the order of the rejects."""
    return [(row["source"], row["reason"]) for row in _rejects(out)]


def _kept_fields(out: Path) -> list[dict]:
    """records.jsonl without ``rouge``/``most_similar``: for a KEPT record these are the best
    verified match below the threshold, which depends on what the pruning let through (notes:
    "identical" is about the kept records and the reasons)."""
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text("utf-8").splitlines() if line]
    return [{k: v for k, v in row.items() if k not in ("rouge", "most_similar")} for row in rows]


def _named_matches_exceed(out: Path, threshold: float = 0.7) -> None:
    """A ROUGE-L reject may name another earlier record than one process did (notes: "identical"),
    but the one it names must really exceed the threshold."""
    from selfinstruct.filters.rouge import _lcs_length, rouge_f
    from selfinstruct.text import tokens

    for row in _rejects(out):
        if row["reason"] == "rouge_too_similar":
            named = row["detail"].split(" with: ", 1)[1]
            mine, theirs = tokens(row["record"]["instruction"]), tokens(named)
            assert rouge_f(_lcs_length(mine, theirs), len(mine), len(theirs)) > threshold, row


def _compare(tmp_path: Path, name: str, inputs: list[str], **options) -> tuple[dict, list]:
    local, ray_out = tmp_path / f"{name}-local", tmp_path / f"{name}-ray"
    want = _run(inputs, local, EngineSettings("local", 1), **options)
    got = _run(inputs, ray_out, EngineSettings("ray", 2), **options)
    assert (ray_out / "data.json").read_bytes() == (local / "data.json").read_bytes()
    assert _kept_fields(ray_out) == _kept_fields(local)
    reasons = _reasons(local)
    assert _reasons(ray_out) == reasons
    _named_matches_exceed(ray_out)
    for key in ("input_records", "malformed", "kept", "rejected", "rejected_total", "rejected_per_stage"):
        assert got[key] == want[key], key
    assert (got["settings"]["engine"], got["settings"]["workers"]) == ("ray", 2)
    assert (want["settings"]["engine"], want["settings"]["workers"]) == ("local", 1)
    return want, reasons


@pytest.fixture
def batches_of(monkeypatch):
    """Run the chain in small batches, so that several prepare rounds (shard flushes) happen."""
    from selfinstruct.filters.base import FilterChain

    def use(size: int) -> None:
        real = FilterChain.run

        def run(self, records, batch_size=4096, **kwargs):
            return real(self, records, batch_size=size, **kwargs)
        monkeypatch.setattr(FilterChain, "run", run)
    return use


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_filter_on_ray_keeps_and_rejects_exactly_as_one_process(lang, tmp_path, write_jsonl, batches_of):
    from selfinstruct.filters.rouge import _lcs_length, rouge_f
    from selfinstruct.text import tokens

    ties = EN_TIE if lang == "en" else _zh_tie()
    base, tie, close, shorter = (tokens(t) for t in ties)
    assert rouge_f(_lcs_length(base, tie), len(tie), len(base)) == 0.7       # the tie the rule keeps
    assert rouge_f(_lcs_length(base, close), len(close), len(base)) > 0.7
    assert rouge_f(_lcs_length(base, shorter), len(shorter), len(base)) > 0.7

    from selfinstruct.quality import QualitySettings

    batches_of(64)
    data = write_jsonl(tmp_path / f"{lang}.jsonl", _dataset(lang))
    bench = write_jsonl(tmp_path / "eval.jsonl", [{"instruction": EVAL_EN, "output": "Twelve."},
                                                  {"instruction": EVAL_ZH, "output": "十二只。"}])
    summary, reasons = _compare(tmp_path, lang, [data], quality=QualitySettings(decontam_against=[bench]))
    kept = [r["instruction"] for r in json.loads((tmp_path / f"{lang}-local" / "data.json").read_text("utf-8"))]
    assert ties[0] in kept and ties[1] in kept                               # F = 0.7 is not > 0.7
    assert ties[2] not in kept and ties[3] not in kept
    why = Counter(reason for _, reason in reasons)
    assert why["rouge_too_similar"] > 20 and why["exact_duplicate"] >= 2, why
    assert why["contains_url"] == 1 and why["empty_output"] == 1 and why["refusal"] == 1, why
    assert why["benchmark_overlap"] == 1, why
    assert summary["kept"] > 10


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_minhash_on_ray_decides_as_one_process(lang, tmp_path, write_jsonl):
    data = write_jsonl(tmp_path / f"{lang}.jsonl", _dataset(lang))
    _, reasons = _compare(tmp_path, f"mh-{lang}", [data], only=["minhash"])
    why = Counter(reason for _, reason in reasons)
    assert why and set(why) == {"minhash_duplicate"}, why
    assert why["minhash_duplicate"] >= 4, why                             # the river's near-copies at least


def test_against_pool_on_ray_decides_as_one_process(tmp_path, write_jsonl):
    rows = _dataset("en")
    pool = write_jsonl(tmp_path / "pool.jsonl", rows[:40])
    data = write_jsonl(tmp_path / "new.jsonl", rows[40:])
    _, reasons = _compare(tmp_path, "against", [data], against=[pool], only=["rouge"])
    assert Counter(r for _, r in reasons)["rouge_too_similar"] > 10


def test_cli_filter_engine_ray_exits_0(tmp_path, write_jsonl, invoke_cli, ray_cluster):
    data = write_jsonl(tmp_path / "in.jsonl", _dataset("zh"))
    result = invoke_cli("filter", data, "--out", tmp_path / "o", "--engine", "ray", "--workers", "2",
                        "--no-progress")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text("utf-8"))
    assert (summary["settings"]["engine"], summary["settings"]["workers"]) == ("ray", 2)
    assert summary["kept"] > 10


@pytest.mark.slow          # a second interpreter imports Ray and joins: ~20 s on 2 busy cores
def test_cli_joins_a_running_cluster_and_leaves_it_running(tmp_path, write_jsonl, ray_cluster):
    """Another process joins this module's cluster by its address, as a cluster node's user would."""
    import ray

    address = ray.get_runtime_context().gcs_address
    data = write_jsonl(tmp_path / "in.jsonl", _dataset("en"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    result = subprocess.run([sys.executable, "-m", "selfinstruct.cli", "filter", data, "--out",
                             str(tmp_path / "o"), "--engine", "ray", "--workers", "2", "--ray-address",
                             address, "--no-progress"], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text("utf-8"))
    assert summary["settings"]["ray_address"] == address and summary["settings"]["engine"] == "ray"
    assert ray_cluster.map(shout, ["still up"]) == ["STILL UP!"]
