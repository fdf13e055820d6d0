"""``selfinstruct filter --workers 2`` decides exactly what one process decides.

The default chain with ``--workers 2`` puts the filters that remember nothing (the quality rules,
the language check, decontamination) on two worker processes and sketches MinHash signatures there;
exact, MinHash and ROUGE-L still decide in input order here. These tests run the same inputs with
1 and 2 workers and compare the outputs byte for byte: data.json, records.jsonl, rejects.jsonl (every
reason and detail, in order) and summary.json's counts. The inputs are written so that every default
filter's reason occurs in English and in Chinese (each record's expected reason is asserted against
the one-process run, so a rule that stopped firing would fail here, not hide), with a decontamination
set, conversations whose later turn is bad, several batches, and a malformed line skipped mid-file.
(``ends_with_colon`` is in the default chain but fires only under the Self-Instruct rule set.)

The mechanism's edges run on an in-process stand-in engine that pickles everything crossing it:
edits a worker's filter makes to its copy of a record come back, an unpicklable plugin filter is
judged here in chain order, one worker keeps the one-process path, and MinHash sketched on workers
decides as here. One test (marked ``ray``, ``slow``) repeats the comparison on Ray with two local CPUs.
"""
from __future__ import annotations

import json
import pickle
import random
import threading
from functools import partialmethod
from pathlib import Path

import pytest

from selfinstruct import options as opts
from selfinstruct import publish as pub
from selfinstruct.curate import run_filter
from selfinstruct.engines import Engine, EngineSettings
from selfinstruct.filters import minhash as minhash_module
from selfinstruct.filters.base import Filter, FilterChain, Rejection, _dumps
from selfinstruct.filters.lang import LanguageMismatch
from selfinstruct.filters.minhash import MinHashDedup
from selfinstruct.filters.registry import build_chain, components, select
from selfinstruct.quality import QualitySettings
from selfinstruct.record import Record
from selfinstruct.rules import resolve_rules

LONG_EN = " ".join(["word"] * 160)
LONG_ZH = "很" * 320
BENCH_EN = ("The capital of Australia is Canberra, which was chosen as a compromise between Sydney "
            "and Melbourne in the early twentieth century.")
BENCH_ZH = "澳大利亚的首都是堪培拉，它在二十世纪初被选为悉尼和墨尔本之间的折中方案而建成的城市。"
NEAR_EN = ("Write a detailed weekly meal plan for a family of four who want to eat more vegetables, "
           "spend less money at the supermarket and cook most dinners in under thirty minutes.")
NEAR_ZH = "为一个想多吃蔬菜、少花钱买菜并且大多数晚餐都在三十分钟内做好的四口之家制定一份详细的每周饮食计划。"

# (expected reason on the one-process run or None for kept, the record). Reasons are the filters'
# codes; a conversation's later-turn rejection keeps the rule's code and names the turn.
EN = [
    (None, {"instruction": "Give three tips for staying healthy during the winter.",
            "output": "Eat well, sleep enough and keep moving every day."}),
    ("exact_duplicate", {"instruction": "give three tips for staying healthy during the winter",
                         "output": "Dress warmly."}),
    ("truncated", {"instruction": "Describe the water cycle for a school project.",
                   "output": "Water evaporates from the", "meta": {"truncated": True}}),
    ("too_short", {"instruction": "Hi.", "output": "Hello!"}),
    ("too_long", {"instruction": LONG_EN, "output": "Too long to answer."}),
    ("bad_start", {"instruction": "and then explain why the sky looks blue at noon.",
                   "output": "Sunlight scatters off air molecules."}),
    ("blacklist_word", {"instruction": "Draw a picture of a cat sleeping on a sunny windowsill.",
                        "output": "I imagine a ginger cat curled up in the light."}),
    ("contains_url", {"instruction": "Summarise the news story at https://example.com/news/today in two lines.",
                      "output": "The council approved the new park."}),
    ("empty_output", {"instruction": "List four common kitchen herbs and their uses.", "output": ""}),
    ("nooutput_marker", {"instruction": "Name a famous bridge in San Francisco.", "output": "<nooutput>"}),
    ("output_echoes_instruction", {"instruction": "Suggest a catchy name for a neighbourhood bakery.",
                                   "output": "Suggest a catchy name for a neighbourhood bakery."}),
    ("refusal", {"instruction": "Plan a two day hiking trip in the Scottish Highlands.",
                 "output": "I'm sorry, but as an AI language model I cannot help with that."}),
    ("broken_text", {"instruction": "Explain how a bicycle gear system works.",
                     "output": "The chain moves between cogs \ufffd\ufffd of different sizes."}),
    ("chatter", {"instruction": "Describe the taste of a ripe mango to a friend.",
                 "output": "Sure! Here is a description of the taste:"}),
    ("prompt_label", {"instruction": "### Instruction: Write a haiku about autumn leaves.",
                      "output": "Red leaves drift and fall, the cold wind carries them home."}),
    ("output_echoes_input", {"instruction": "Correct the spelling in this sentence.",
                             "input": "The quick brown fox jumps over the lazy dog.",
                             "output": "The quick brown fox jumps over the lazy dog."}),
    ("missing_material", {"instruction": "Summarize the following article in three sentences.",
                          "output": "The article says that prices rose."}),
    ("language_mismatch", {"instruction": "Explain how photosynthesis works in green plants.",
                           "output": "植物利用阳光、水和二氧化碳制造葡萄糖并释放氧气。"}),
    ("benchmark_overlap", {"instruction": "Tell me a fact about the capital city of Australia.",
                           "output": BENCH_EN}),
    (None, {"instruction": NEAR_EN, "output": "Monday: lentil soup. Tuesday: vegetable curry."}),
    ("minhash_duplicate", {"instruction": NEAR_EN.replace("detailed", "thorough"),
                           "output": "Monday: bean stew. Tuesday: stir fry."}),
    (None, {"instruction": "Compose a short poem about the sea at night for children.",
            "output": "The waves whisper softly under the silver moon."}),
    ("rouge_too_similar", {"instruction": "Compose a short poem about the sea at dawn for young children.",
                           "output": "Gulls wake as the sun paints the water gold."}),
]
EN_CHAT = [
    (None, {"messages": [{"role": "user", "content": "Recommend a classic novel for a long train journey."},
                         {"role": "assistant", "content": "Try Middlemarch by George Eliot."},
                         {"role": "user", "content": "Why that one?"},
                         {"role": "assistant", "content": "Its many characters reward slow reading."}]}),
    ("empty_turn", {"messages": [{"role": "user", "content": "Suggest a board game for four players."},
                                 {"role": "assistant", "content": "Ticket to Ride works well for four."},
                                 {"role": "user", "content": "  "},
                                 {"role": "assistant", "content": "Anything else?"}]}),
    ("refusal", {"messages": [{"role": "user", "content": "Recommend a good stretching routine after running."},
                              {"role": "assistant", "content": "Stretch your calves, hamstrings and quads."},
                              {"role": "user", "content": "How long should each stretch last?"},
                              {"role": "assistant",
                               "content": "I'm sorry, but as an AI language model I cannot give advice."}]}),
]
ZH = [
    (None, {"instruction": "给出三个冬季保持健康的建议。", "output": "均衡饮食，保证睡眠，坚持每天运动。"}),
    ("exact_duplicate", {"instruction": "给出三个冬季保持健康的建议", "output": "注意保暖。"}),
    ("truncated", {"instruction": "为学校作业描述一下水循环的过程。", "output": "水从海洋中蒸",
                   "meta": {"truncated": True}}),
    ("too_short", {"instruction": "你好", "output": "你好！"}),
    ("too_long", {"instruction": LONG_ZH, "output": "太长了。"}),
    ("bad_start", {"instruction": "并且解释一下为什么中午的天空是蓝色的。", "output": "阳光被空气分子散射。"}),
    ("blacklist_word", {"instruction": "根据这张图片描述一下画面中的小猫在做什么。", "output": "小猫在窗台上睡觉。"}),
    ("contains_url", {"instruction": "用两句话总结 https://example.com/news/today 上的新闻。",
                      "output": "市议会批准了新公园的建设。"}),
    ("empty_output", {"instruction": "列出四种常见的厨房香草及其用途。", "output": ""}),
    ("nooutput_marker", {"instruction": "说出旧金山一座著名的大桥的名字。", "output": "<nooutput>"}),
    ("output_echoes_instruction", {"instruction": "为一家社区面包店起一个好记的名字。",
                                   "output": "为一家社区面包店起一个好记的名字。"}),
    ("refusal", {"instruction": "规划一次为期两天的黄山徒步旅行。",
                 "output": "抱歉，作为一个AI语言模型，我无法帮助你完成这个请求。"}),
    ("broken_text", {"instruction": "解释一下自行车的变速系统是如何工作的。",
                     "output": "链条在不同大小的齿轮\ufffd\ufffd之间移动。"}),
    ("chatter", {"instruction": "向朋友描述一下熟透的芒果是什么味道。",
                 "output": "好的，以下是我的描述："}),
    ("prompt_label", {"instruction": "指令：写一首关于秋天落叶的短诗。", "output": "红叶飘落，秋风送它们回家。"}),
    ("output_echoes_input", {"instruction": "改正这句话中的错别字。", "input": "今天天气很好，我们去公园散步吧。",
                             "output": "今天天气很好，我们去公园散步吧。"}),
    ("missing_material", {"instruction": "用三句话总结下面这篇文章。", "output": "文章说物价上涨了。"}),
    ("language_mismatch", {"instruction": "解释一下绿色植物的光合作用是如何进行的。",
                           "output": "Plants use sunlight, water and carbon dioxide to make glucose."}),
    ("benchmark_overlap", {"instruction": "告诉我一个关于澳大利亚首都的事实。", "output": BENCH_ZH}),
    (None, {"instruction": NEAR_ZH, "output": "周一：扁豆汤。周二：蔬菜咖喱。"}),
    ("minhash_duplicate", {"instruction": NEAR_ZH.replace("详细的", "完整的"), "output": "周一：炖豆子。周二：炒青菜。"}),
    (None, {"instruction": "为孩子们写一首关于夜晚大海的短诗。", "output": "海浪在银色的月光下轻声低语。"}),
    ("rouge_too_similar", {"instruction": "为小朋友们写一首关于夜晚大海的短诗。", "output": "海鸥在金色的晨光中醒来。"}),
]
ZH_CHAT = [
    (None, {"messages": [{"role": "user", "content": "推荐一本适合长途火车旅行读的经典小说。"},
                         {"role": "assistant", "content": "可以读《红楼梦》。"},
                         {"role": "user", "content": "为什么推荐这本？"},
                         {"role": "assistant", "content": "它人物众多，适合慢慢品读。"}]}),
    ("empty_turn", {"messages": [{"role": "user", "content": "推荐一款适合四个人玩的桌游。"},
                                 {"role": "assistant", "content": "《车票之旅》很适合四个人玩。"},
                                 {"role": "user", "content": ""},
                                 {"role": "assistant", "content": "还有别的问题吗？"}]}),
    ("refusal", {"messages": [{"role": "user", "content": "推荐一套跑步后的拉伸动作。"},
                              {"role": "assistant", "content": "拉伸小腿、大腿后侧和大腿前侧。"},
                              {"role": "user", "content": "每个动作保持多久？"},
                              {"role": "assistant", "content": "抱歉，作为一个AI语言模型，我无法提供建议。"}]}),
]
BENCHMARK = [{"question": BENCH_EN, "answer": "Canberra"}, {"question": BENCH_ZH, "answer": "堪培拉"}]
ALL = (("en", EN), ("zh", ZH), ("en_chat", EN_CHAT), ("zh_chat", ZH_CHAT))
DECONTAM_FIELDS = "decontam_fields=instruction=question,output=answer"


def line_of(row: dict) -> str:
    """A JSONL line: conversations as they are, single-turn rows as records.jsonl writes them (so
    that ``meta`` — the truncated flag — is read back)."""
    return json.dumps(row if "messages" in row else Record(**row).to_dict(), ensure_ascii=False) + "\n"


def write_inputs(folder: Path, bad_line_at: int | None = None) -> list[str]:
    """The four input files (a malformed line inserted before row ``bad_line_at`` of the English one,
    when given) and the decontamination set; the input paths."""
    (folder / "bench.jsonl").write_text("".join(json.dumps(b, ensure_ascii=False) + "\n" for b in BENCHMARK),
                                        encoding="utf-8")
    paths = []
    for name, rows in ALL:
        lines = [line_of(r) for _, r in rows]
        if bad_line_at is not None and name == "en":
            lines.insert(bad_line_at, '{"instruction": "Name three rivers in Africa.", "output": \n')
        (folder / f"{name}.jsonl").write_text("".join(lines), encoding="utf-8")
        paths.append(str(folder / f"{name}.jsonl"))
    return paths


def filter_with(workers: int, inputs: list[str], out: Path, **kwargs) -> dict:
    quality = QualitySettings(decontam_against=[str(Path(inputs[0]).parent / "bench.jsonl")])
    return run_filter(inputs, str(out), progress=False, quality=quality, options=[DECONTAM_FIELDS],
                      publish=pub.Publish(format="messages"), engine=EngineSettings("local", workers), **kwargs)


def assert_same_outputs(one: Path, two: Path) -> None:
    for name in ("data.jsonl", "records.jsonl", "rejects.jsonl"):     # data.jsonl: --format messages
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    a, b = (json.loads((folder / "summary.json").read_text()) for folder in (one, two))
    for key in ("kept", "rejected", "rejected_total", "rejected_per_stage", "input_records", "malformed"):
        assert a[key] == b[key], key
    assert (a["settings"]["workers"], b["settings"]["workers"]) == (1, 2)


def reasons_by_source(out: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["source"]: r["reason"] for r in rows}


def test_two_workers_give_every_default_reason_exactly_as_one_process(tmp_path):
    inputs = write_inputs(tmp_path)
    one = filter_with(1, inputs, tmp_path / "one")
    two = filter_with(2, inputs, tmp_path / "two")
    # The one-process run really gives each reason this data was written for (else the comparison
    # below could pass on a chain that rejects nothing).
    got = reasons_by_source(tmp_path / "one")
    for path, (_, rows) in zip(inputs, ALL):
        for line, (expected, _) in enumerate(rows, 1):
            assert got.get(f"{path}:{line}") == expected, (path, line)
    assert_same_outputs(tmp_path / "one", tmp_path / "two")
    assert set(one["rejected"]) >= {"empty_turn", "benchmark_overlap", "minhash_duplicate", "language_mismatch"}
    # The workers' time is put on the stages they worked for.
    assert two["seconds_per_stage"]["quality"] > 0 and two["seconds_per_stage"]["decontam"] > 0


def test_many_batches_and_a_skipped_malformed_line_give_the_same_outputs(tmp_path, monkeypatch):
    # Batches of 4: the workers' verdicts, MinHash's prepared candidates and the kept records cross
    # batch boundaries; the malformed line sits in the middle of a batch.
    monkeypatch.setattr(FilterChain, "run", partialmethod(FilterChain.run, batch_size=4))
    monkeypatch.setattr(minhash_module, "PARALLEL_MIN", 1)     # sketch every batch on the workers
    inputs = write_inputs(tmp_path, bad_line_at=9)
    one = filter_with(1, inputs, tmp_path / "one", on_bad_record="skip")
    filter_with(2, inputs, tmp_path / "two", on_bad_record="skip")
    assert one["malformed"] == 1 and one["rejected"]["malformed"] == 1
    assert_same_outputs(tmp_path / "one", tmp_path / "two")


# ---- the mechanism, on an in-process stand-in engine ------------------------------------------
class PicklingEngine(Engine):
    """Two "workers" in this process, but everything crosses a pickle boundary as it would between
    processes (so an edit a worker makes to its copy of a record is lost unless sent back); counts
    what it was asked."""

    name, workers = "local", 2

    def __init__(self):
        self.asked: list[str] = []

    def map(self, fn, items):
        self.asked.append(f"map:{fn.__name__}")
        return [pickle.loads(pickle.dumps(fn(pickle.loads(pickle.dumps(item))))) for item in items]

    def actors(self, cls, args_list):
        self.asked.append(f"actors:{cls.__name__}")
        return super().actors(cls, pickle.loads(pickle.dumps(list(args_list))))

    def call(self, calls):
        self.asked.append("call")
        copied = [(actor, method, pickle.loads(pickle.dumps(args))) for actor, method, args in calls]
        return pickle.loads(pickle.dumps(super().call(copied)))


class HoldsALock(Filter):
    """A stateless plugin filter that cannot be pickled: it stays in this process."""
    name = "holds_a_lock"

    def __init__(self):
        self.lock = threading.Lock()

    def check(self, record):
        return self.reject("has_x", "x") if "xylophone" in record.instruction else None


def default_chain(*extra: Filter) -> FilterChain:
    classes = select((), (), QualitySettings().default_off())
    rules = resolve_rules("default", command="filter", recipe=None, lang="auto")
    chain = build_chain(classes, {"lang": "auto", "rouge_threshold": 0.7, "minhash_threshold": 0.8,
                                  **QualitySettings().shared_options(rules)}, opts.resolve(components(classes), ()))
    return FilterChain(list(extra) + chain.filters) if extra else chain


def single_turn(rows) -> list[Record]:
    return [Record(**row, source=f"mem:{n}") for n, (_, row) in enumerate(rows, 1)]


def decisions(chain: FilterChain, records: list[Record], batch_size: int = 8) -> list:
    reasons: list = []
    chain.on_reject = lambda record, rejection: reasons.append((record.source, rejection))
    kept = [(r.source, r.lang) for r in chain.run(records, batch_size=batch_size)]
    return [kept, reasons, dict(chain.tally.rejected)]


def test_workers_hand_back_what_their_filters_write_onto_the_record():
    # The language check fills record.lang; the kept records (and rejects.jsonl) must carry it as in
    # one process, though the workers only see copies.
    rows = EN + ZH
    serial = decisions(default_chain(), single_turn(rows))
    engine = PicklingEngine()
    chain = default_chain()
    chain.use_engine(engine)
    assert decisions(chain, single_turn(rows)) == serial
    assert {lang for _, lang in serial[0]} == {"en", "zh"}
    assert engine.asked.count("actors:_VerdictWorker") == 1 and "call" in engine.asked
    assert chain.tally.seconds["quality"] > 0


def test_a_filter_that_cannot_be_pickled_is_judged_here_in_chain_order():
    rows = [(None, {"instruction": "Describe the sound of a xylophone to a child.", "output": "Bright."}),
            (None, {"instruction": "Hi.", "output": "Hello"})] + EN
    serial = decisions(default_chain(HoldsALock()), single_turn(rows))
    chain = default_chain(HoldsALock())
    chain.use_engine(PicklingEngine())
    assert 0 not in chain._remote.index_of            # the lock holder is not on the workers
    assert decisions(chain, single_turn(rows)) == serial
    assert serial[1][0] == ("mem:1", Rejection("has_x", "x"))


def test_one_worker_keeps_the_one_process_path():
    chain = default_chain()
    chain.use_engine(Engine())
    assert chain._remote is None
    assert all(f._engine is None for f in chain.filters if isinstance(f, MinHashDedup))


def test_the_language_checks_own_cache_survives_pickling():
    lang = next(f for f in default_chain().filters if isinstance(f, LanguageMismatch))
    copy = pickle.loads(_dumps(lang))
    record = Record("Escribe un poema corto sobre el mar.", output="El mar canta.")
    assert copy.check(record) == lang.check(Record(record.instruction, output=record.output))
    assert copy._detect("Bonjour tout le monde, comment allez-vous aujourd'hui ?") == "fr"


def near_copies(lang: str, n: int) -> list[Record]:
    """``n`` instructions of random words (English) or characters (Chinese), about a third of them
    a random earlier one with a word or character added at the end: a near copy (about 0.95
    Jaccard). Copies sit at irregular places, so records swapped between chunks would show."""
    rng = random.Random(lang)
    if lang == "en":
        vocab, sep, size, extra = [f"{a}{b}" for a in "bcdfglmnprst" for b in ("at", "ow", "ine", "ust")], " ", 25, " again"
    else:
        vocab, sep, size, extra = list("天地人和山水日月风云花草鸟鱼春夏秋冬东西南北上下左右大小多少高低长短"), "", 40, "了"
    out: list[Record] = []
    for i in range(n):
        copy = i > 0 and rng.random() < 0.35
        text = out[rng.randrange(i)].instruction + extra if copy else sep.join(rng.choices(vocab, k=size))
        out.append(Record(text, output="…", source=f"mem:{i + 1}", meta={"copy": copy}))
    return out


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_minhash_signatures_on_the_workers_decide_as_here(lang, monkeypatch):
    records = near_copies(lang, 90)
    here = MinHashDedup()
    serial = [here.check(r) or here.add(r) for r in _prepared(here, records)]
    monkeypatch.setattr(minhash_module, "PARALLEL_MIN", 1)
    engine = PicklingEngine()
    there = MinHashDedup()
    there.use_engine(engine)
    parallel = [there.check(r) or there.add(r) for r in _prepared(there, records)]
    assert parallel == serial
    assert [v is not None for v in serial] == [r.meta["copy"] for r in records]    # every copy, no other
    assert engine.asked == ["actors:SketchWorker"] + ["call"] * engine.asked.count("call")
    assert len(engine.asked) > 1


def _prepared(f: MinHashDedup, records: list[Record]) -> list[Record]:
    f.prepare(records)
    return records


@pytest.mark.ray
@pytest.mark.slow
def test_ray_on_two_local_cpus_gives_the_same_outputs_as_one_process(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setattr(minhash_module, "PARALLEL_MIN", 1)     # MinHash sketched by Ray actors too
    inputs = write_inputs(tmp_path)
    filter_with(1, inputs, tmp_path / "one")
    quality = QualitySettings(decontam_against=[str(tmp_path / "bench.jsonl")])
    summary = run_filter(inputs, str(tmp_path / "ray"), progress=False, quality=quality, options=[DECONTAM_FIELDS],
                         publish=pub.Publish(format="messages"), engine=EngineSettings("ray", 2))
    assert summary["settings"]["engine"] == "ray"
    for name in ("data.jsonl", "records.jsonl", "rejects.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
