"""ROUGE-L novelty on two worker processes (``filter --workers 2``) decides exactly what one process
decides: the same kept records in the same order, the same reason for every reject, and every match
named in a rejection really above the threshold (recomputed here with rouge-score's ``_score_lcs``).

The inputs are template-heavy (many near-copies of a few instructions, in English and Chinese) and
hold pairs at exactly ROUGE-L 0.7 (kept: the rule is "> 0.7") and just above it. The batches are
made small so that the pool is flushed to the shards many times, ``--against`` preloads a pool
before the shards exist, and the paths outside a prepared batch (a check without ``prepare``, a
preload after the shards exist), evolved records (their ancestors left out) and chunk-grounded ones
are compared at the chain level.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from rouge_score.rouge_scorer import _score_lcs

from selfinstruct.curate import run_filter
from selfinstruct.engines import Engine, EngineSettings
from selfinstruct.engines.local import ProcessEngine
from selfinstruct.filters.base import FilterChain
from selfinstruct.filters.rouge import RougeNovelty
from selfinstruct.record import Record
from selfinstruct.text import tokens

THRESHOLD = 0.7

# Ten-token pairs sharing exactly seven tokens in order: F = 2 * 7 / 20 = 0.7, not above it (kept);
# and pairs sharing eight: 0.8 (rejected).
TIE_EN = [("alpha bravo charlie delta echo foxtrot golf hotel india juliet",
           "alpha bravo charlie delta echo foxtrot golf xray yankee zulu")]
ABOVE_EN = [("kilo lima mike november oscar papa quebec romeo sierra tango",
             "kilo lima mike november oscar papa quebec romeo uniform victor")]
TIE_ZH = [("春夏秋冬东南西北上下", "春夏秋冬东南西左右中")]
ABOVE_ZH = [("金木水火土日月星辰海", "金木水火土日月星辰山")]

EN_TEMPLATES = ["Write a {a} poem about {t} for {w}.", "Explain how {t} works to {w} in simple words.",
                "Give three tips about {t} for {w}.", "Summarise the main ideas of {t} for {w}."]
EN_TOPICS = ["the ocean", "bees", "rain", "volcanoes", "jazz", "bread", "trains", "the moon", "chess",
             "glaciers", "coffee", "birds", "tea", "maps", "clocks", "rivers"]
EN_WHO = ["children", "beginners", "a busy manager", "students", "my grandmother", "engineers"]
EN_ADJ = ["short", "funny", "sad", "long", "gentle"]
ZH_TEMPLATES = ["写一首关于{t}的{a}诗，给{w}看。", "用简单的话向{w}解释{t}是怎么回事。",
                "给{w}三条关于{t}的建议。", "为{w}总结{t}的主要内容。"]
ZH_TOPICS = ["大海", "蜜蜂", "下雨", "火山", "爵士乐", "面包", "火车", "月亮", "象棋", "冰川", "咖啡", "鸟类"]
ZH_WHO = ["孩子们", "初学者", "忙碌的经理", "学生", "我的奶奶", "工程师"]
ZH_ADJ = ["短", "有趣的", "悲伤的", "长", "温柔的"]


def template_heavy(lang: str, n: int, seed: int, boundary: bool = True, templates: int = 4) -> list[str]:
    """``n`` instructions from the first ``templates`` templates: many near-copies, some exact
    repeats; with ``boundary``, the pairs at and just above the threshold among them (a tie pair far
    apart, the pair above it side by side: in one batch, decided by the batch's own mates)."""
    rng = random.Random(seed)
    forms, topics, who, adj = ((EN_TEMPLATES, EN_TOPICS, EN_WHO, EN_ADJ) if lang == "en"
                               else (ZH_TEMPLATES, ZH_TOPICS, ZH_WHO, ZH_ADJ))
    forms = forms[:templates]
    out = [rng.choice(forms).format(t=rng.choice(topics), w=rng.choice(who), a=rng.choice(adj))
           for _ in range(n)]
    if boundary:
        (tie_a, tie_b), (above_a, above_b) = (TIE_EN + ABOVE_EN) if lang == "en" else (TIE_ZH + ABOVE_ZH)
        out[37:37] = [tie_a]
        out[150:150] = [tie_b]
        out[101:101] = [above_a, above_b]
    return out


def write_jsonl(path: Path, instructions: list[str]) -> str:
    path.write_text("".join(json.dumps({"instruction": t, "output": "ok"}, ensure_ascii=False) + "\n"
                            for t in instructions), encoding="utf-8")
    return str(path)


@pytest.fixture
def small_batches(monkeypatch):
    """FilterChain.run with batches of 23 records: the shards get many flushes and batches."""
    run = FilterChain.run

    def run_small(self, records, batch_size=4096, **kw):
        return run(self, records, batch_size=23, **kw)
    monkeypatch.setattr(FilterChain, "run", run_small)


def rejects_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]


def assert_named_match_exceeds(reject: dict) -> None:
    match = re.fullmatch(r"rouge-l (\d\.\d{3}) with: (.*)", reject["detail"], re.S)
    assert match, reject["detail"]
    score = _score_lcs(tokens(reject["record"]["instruction"]), tokens(match.group(2))).fmeasure
    assert score > THRESHOLD and f"{score:.3f}" == match.group(1), reject


def filter_with(workers: int, inputs: list[str], out: Path, **kw) -> dict:
    return run_filter(inputs, str(out), only=["rouge"], progress=False,
                      engine=EngineSettings("local", workers), **kw)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_two_workers_keep_and_reject_exactly_what_one_process_does(tmp_path, small_batches, lang):
    data = template_heavy(lang, 700, seed=1)
    against = write_jsonl(tmp_path / "against.jsonl", template_heavy(lang, 60, seed=2, boundary=False, templates=1))
    inputs = [write_jsonl(tmp_path / "in.jsonl", data)]
    one, two = tmp_path / "one", tmp_path / "two"
    s1 = filter_with(1, inputs, one, against=[against])
    s2 = filter_with(2, inputs, two, against=[against])

    assert (one / "data.json").read_bytes() == (two / "data.json").read_bytes()
    r1, r2 = rejects_of(one), rejects_of(two)
    assert [(r["source"], r["reason"]) for r in r1] == [(r["source"], r["reason"]) for r in r2]
    for reject in r2:
        assert_named_match_exceeds(reject)
    # The merge breaks ties as the single index does (the earliest), so even the details agree.
    assert [r["detail"] for r in r1] == [r["detail"] for r in r2]
    assert (s1["kept"], s1["settings"]["workers"], s2["settings"]["workers"]) == (s2["kept"], 1, 2)
    # The data really is template-heavy, and the preloaded pool really was used.
    assert len(r1) > len(data) // 2
    pool = set(template_heavy(lang, 60, seed=2, boundary=False, templates=1)) - set(data)
    assert any(r["detail"].split("with: ", 1)[1] in pool for r in r2)

    kept = json.loads((two / "data.json").read_text(encoding="utf-8"))
    kept_texts = {k["instruction"] for k in kept}
    ties, aboves = (TIE_EN, ABOVE_EN) if lang == "en" else (TIE_ZH, ABOVE_ZH)
    for first, second in ties:          # exactly 0.7 is not above 0.7: both kept
        assert _score_lcs(tokens(first), tokens(second)).fmeasure == THRESHOLD
        assert {first, second} <= kept_texts
    for first, second in aboves:
        assert first in kept_texts and second not in kept_texts


def chain_run(engine, records, against=(), batch_size=9):
    rouge = RougeNovelty(THRESHOLD)
    rejected = []
    chain = FilterChain([rouge], on_reject=lambda r, v: rejected.append((r.instruction, v.reason, v.detail)))
    chain.preload(against)
    chain.use_engine(engine)
    kept = [r.instruction for r in chain.run(records, batch_size=batch_size)]
    return chain, kept, rejected


def lineage_and_chunks() -> list[Record]:
    """Evolved records (close to their ancestors by design) and chunk-grounded tasks (compared
    within their chunk only), among plain near-copies."""
    base = "Write a short poem about the ocean for children."
    evolved = "Write a short poem about the ocean for children, in exactly four rhyming lines."
    return [Record(instruction=base),
            Record(instruction=evolved, meta={"lineage": {"ancestors": [base]}}),
            Record(instruction=evolved + " Use no adjectives."),            # no ancestors: too close
            Record(instruction="Summarise the passage in one sentence.", meta={"chunk": "doc1#0"}),
            Record(instruction="Summarise the passage in one sentence.", meta={"chunk": "doc1#1"}),
            Record(instruction="Summarise the passage in one sentence, please.", meta={"chunk": "doc1#1"}),
            Record(instruction="写一首关于大海的短诗，给孩子们看。"),
            Record(instruction="写一首关于大海的短诗，给孩子们看，要押韵。",
                   meta={"lineage": {"ancestors": ["写一首关于大海的短诗，给孩子们看。"]}}),
            Record(instruction="写一首关于大海的短诗，给孩子们看，要押韵吗。")]


@pytest.fixture(scope="module")
def two_workers():
    engine = ProcessEngine(2)
    yield engine
    engine.close()


def test_chain_level_lineage_chunks_and_many_batches_match_one_process(two_workers):
    records = lineage_and_chunks() + [Record(instruction=t) for t in template_heavy("en", 150, 3)]
    against = [Record(instruction=t) for t in template_heavy("zh", 30, 4, boundary=False)]
    _, kept1, rej1 = chain_run(Engine(), [Record(**r.to_dict()) for r in records], against)
    _, kept2, rej2 = chain_run(two_workers, [Record(**r.to_dict()) for r in records], against)
    assert kept1 == kept2 and rej1 == rej2
    assert lineage_and_chunks()[1].instruction in kept2            # its ancestor left out
    assert "Summarise the passage in one sentence, please." not in kept2   # same chunk: compared
    assert kept2.count("Summarise the passage in one sentence.") == 2      # other chunk: not


def test_records_outside_a_prepared_batch_ask_the_shards(two_workers):
    """generate-style use (check and add without prepare) and a preload after the shards exist give
    the single-process decisions."""
    texts = template_heavy("en", 120, 5) + template_heavy("zh", 80, 6)
    decisions = []
    for engine in (Engine(), two_workers):
        rouge = RougeNovelty(THRESHOLD)
        chain = FilterChain([rouge])
        chain.use_engine(engine)
        chain.preload([Record(instruction=t) for t in texts[:20]])
        got = [chain.check(Record(instruction=t)) for t in texts[20:90]]
        # then batches again, which must see everything kept so far
        got += list(r.instruction for r in chain.run([Record(instruction=t) for t in texts[90:]], batch_size=17))
        # and a check outside the batch right after it
        got.append(chain.check(Record(instruction=texts[25])))
        decisions.append([None if g is None else (g if isinstance(g, str) else (g.reason, g.detail)) for g in got])
    assert decisions[0] == decisions[1]
    assert sum(d is not None and not isinstance(d, str) for d in decisions[0]) > 10


def test_a_record_added_mid_batch_from_outside_it_is_seen_by_the_rest_of_the_batch(two_workers):
    records = [Record(instruction=t) for t in ("Plant three tomato seeds in a small pot today.",
                                               "Paint the garden fence a bright blue colour.",
                                               "Plant three tomato seeds in a large pot today.")]
    for engine, expect in ((Engine(), [True, True, False]), (two_workers, [True, True, False])):
        rouge = RougeNovelty(THRESHOLD)
        chain = FilterChain([rouge])
        chain.use_engine(engine)
        batch = [Record(**r.to_dict()) for r in records[1:]]
        rouge.prepare(batch)
        outsider = Record(**records[0].to_dict())
        assert rouge.check(outsider) is None
        rouge.add(outsider)                       # not in the prepared batch
        verdicts = []
        for r in batch:
            verdict = rouge.check(r)
            if verdict is None:
                rouge.add(r)
            verdicts.append(verdict is None)
        assert [True] + verdicts == expect
