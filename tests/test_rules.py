"""Rule sets: resolving ``--rules``, every quality/language filter taking ``rules``, paper sets that
keep what their projects kept, and the default set's precision on human-written check sets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfinstruct.errors import UsageError
from selfinstruct.filters.registry import REGISTRY, build_chain, components, select
from selfinstruct.options import resolve as resolve_options
from selfinstruct.record import Record
from selfinstruct.rules import RULE_SETS, check_rules, paper_set_for, resolve_rules

DATA = Path(__file__).parent / "data"
ERROR = "--rules must be one of default, paper, self-instruct, alpaca, belle, not '{}'"
DEFAULT_ONLY = ("missing_material", "broken_text", "prompt_label", "chatter", "nooutput", "lang")


def quality_classes():
    return [cls for cls in select() if cls.stage == "quality"]


def test_rule_sets_are_the_four_named():
    assert RULE_SETS == ("default", "self-instruct", "alpaca", "belle")


@pytest.mark.parametrize("name, command, recipe, lang, expected", [
    ("default", "generate", "alpaca", "en", "default"),
    ("Alpaca", "filter", None, "auto", "alpaca"),
    ("paper", "generate", "alpaca", "en", "alpaca"),
    ("paper", "generate", "self-instruct", "en", "self-instruct"),
    ("paper", "generate", "alpaca", "zh", "belle"),
    ("paper", "generate", "self-instruct", "zh", "belle"),
    ("paper", "filter", None, "en", "self-instruct"),
    ("paper", "filter", None, "zh", "belle"),
    ("paper", "filter", None, "auto", "paper"),          # decided per record by the filters
])
def test_resolve_rules(name, command, recipe, lang, expected):
    assert resolve_rules(name, command=command, recipe=recipe, lang=lang) == expected


@pytest.mark.parametrize("name", ["x", "papers", "selfinstruct"])
def test_resolve_rules_refuses_an_unknown_set(name):
    with pytest.raises(UsageError) as e:
        resolve_rules(name, command="filter", recipe=None, lang="en")
    assert str(e.value) == ERROR.format(name)


def test_paper_per_record_is_belle_for_chinese_and_self_instruct_otherwise():
    assert paper_set_for("请写一首关于春天的诗。") == "belle"
    assert paper_set_for("Write a poem about spring.") == "self-instruct"
    assert check_rules("paper") == "paper"


def test_every_quality_filter_declares_rules_and_refuses_an_unknown_set():
    classes = quality_classes()
    assert {"truncated", "length", "bad_start", "blacklist", "url", "empty_output", "nooutput", "echo",
            "refusal", "lang", "missing_material", "broken_text", "prompt_label", "chatter"} <= {c.name for c in classes}
    for cls in classes:
        assert "rules" in components([cls])[0].options(), cls.name
        with pytest.raises(UsageError) as e:
            cls(rules="x")
        assert str(e.value) == ERROR.format("x")


def test_build_chain_hands_the_run_rule_set_to_every_filter():
    chain = build_chain(quality_classes(), {"rules": "alpaca", "lang": "en"})
    assert {f.rules for f in chain.filters} == {"alpaca"}


def test_opt_sets_one_filter_rule_set():
    comps = components(quality_classes())
    per_filter = resolve_options(comps, ["blacklist.rules=alpaca"])
    chain = build_chain(quality_classes(), {"rules": "default"}, per_filter)
    by_name = {f.name: f.rules for f in chain.filters}
    assert by_name["blacklist"] == "alpaca" and by_name["length"] == "default"


# Records that the default set rejects, one per default-only rule.
DEFAULT_ONLY_REJECTS = [
    Record("Summarize the following article.", "", "It is about a storm."),
    Record("Write a poem\ufffd about the sea.", "", "The sea is wide."),
    Record("Instruction: Write a poem about the sea.", "", "The sea is wide."),
    Record("Certainly! Here's a new task: write a poem about the sea.", "", "The sea is wide."),
    Record("Give three tips for staying healthy.", "", "<nooutput>"),
    Record("请给出三个保持健康的建议。", "", "Eat well and sleep well every single night."),
]


@pytest.mark.parametrize("rules", ["self-instruct", "alpaca", "belle", "paper"])
@pytest.mark.parametrize("record", DEFAULT_ONLY_REJECTS, ids=lambda r: r.instruction[:24])
def test_default_only_rules_keep_everything_under_the_paper_sets(rules, record):
    default_chain = build_chain([REGISTRY[n] for n in DEFAULT_ONLY], {"lang": "auto"})
    assert default_chain.check(record) is not None
    paper_chain = build_chain([REGISTRY[n] for n in DEFAULT_ONLY], {"lang": "auto", "rules": rules})
    assert paper_chain.check(record) is None


def test_paper_per_record_applies_belle_to_chinese_and_self_instruct_to_english():
    chain = build_chain(quality_classes(), {"rules": "paper", "lang": "auto"})
    # Self-Instruct's ASCII start rule would reject every Chinese record; BELLE's rules apply instead.
    assert chain.check(Record("请写一首关于春天的诗。", "", "春风又绿江南岸。")) is None
    assert chain.check(Record("请描述这张图片的内容。", "", "一只猫。")).reason == "blacklist_word"
    assert chain.check(Record("Explain human behavior.", "", "People act on motives.")).reason == "too_short"


def test_self_instruct_reproduces_its_finetuning_instance_checks():
    chain = build_chain(quality_classes(), {"rules": "self-instruct", "lang": "en"})
    assert chain.check(Record("Complete the sentence below.", "The capital of France is", "Paris")) is None
    v = chain.check(Record("List the options for the sentence below.", "Options:", "A and B"))
    assert (v.reason, v.detail) == ("ends_with_colon", "input ends with ':'")
    assert chain.check(Record("Repeat the sentence below exactly.", "Hello there.", "Hello there.")).reason == \
        "output_echoes_input"
    assert chain.check(Record("Give three tips for staying healthy.", "", "")).reason == "empty_output"
    # The default set leaves an input ending with a colon alone.
    default = build_chain(quality_classes(), {"lang": "en"})
    assert default.check(Record("List the options for the sentence below.", "Options:", "A and B")) is None


def _read(name: str) -> list[Record]:
    with open(DATA / name, encoding="utf-8") as f:
        return [Record(**json.loads(line)) for line in f]


@pytest.mark.parametrize("name, lang", [("good_human_en.jsonl", "en"), ("good_human_zh.jsonl", "zh")])
def test_default_rejects_at_most_one_percent_of_good_human_written_records(name, lang):
    records = _read(name)
    assert len(records) >= 150
    chain = build_chain(quality_classes(), {"lang": lang})
    rejected = [(r.instruction, v.reason, v.detail) for r in records if (v := chain.check(r)) is not None]
    assert len(rejected) <= 0.01 * len(records), rejected


@pytest.mark.parametrize("name, lang", [("good_human_en.jsonl", "en"), ("good_human_zh.jsonl", "zh")])
def test_the_paper_sets_reject_some_of_the_same_records(name, lang):
    # The check sets hold the kinds the papers misfire on: the test above means something.
    records = _read(name)
    chain = build_chain(quality_classes(), {"lang": lang, "rules": "alpaca"})
    assert sum(chain.check(r) is not None for r in records) >= 0.05 * len(records)
