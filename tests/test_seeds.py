"""The project's own seed tasks (seeds/en.jsonl, seeds/zh.jsonl) are hand-written examples that the
generate loop shows the teacher, so they must pass the same bar as the data we keep: the
Self-Instruct schema, enough classification tasks, the quality rules, and instructions that are
not near-duplicates of each other under the project's ROUGE-L tokenisation.

The files are read with plain ``json`` on purpose: this checks the data, not the project's reader.
"""
from __future__ import annotations

import importlib.resources
import itertools
import json
import re
from functools import cache

import pytest
from rouge_score.rouge_scorer import _score_lcs

from selfinstruct.text import cjk_count, is_cjk, tokens

LANGS = ("en", "zh")
ID_PREFIX = {"en": "seed_task_", "zh": "zh_seed_task_"}
KEYS = {"id", "name", "instruction", "instances", "is_classification"}

# The Self-Instruct / Alpaca list of things a text-only model cannot do, plus its Chinese counterpart.
BLACKLIST_EN = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)
BLACKLIST_ZH = (
    "图片", "图像", "图表", "照片", "视频", "音频", "音乐", "文件", "链接", "网址", "画", "流程图", "地图",
)
_BLACKLIST_EN_RE = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(w.replace(" ", r"\s+") for w in BLACKLIST_EN) + r")(?![A-Za-z0-9_])",
    re.IGNORECASE,
)
_URL_RE = re.compile(r"https?://|www\.", re.IGNORECASE)
_SNAKE_RE = re.compile(r"[a-z][a-z0-9_]*")


@cache
def load(lang: str) -> tuple[dict, ...]:
    path = importlib.resources.files("selfinstruct.seeds") / f"{lang}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def instructions(lang: str) -> list[str]:
    return [task["instruction"] for task in load(lang)]


def all_text(task: dict) -> str:
    parts = [task["instruction"]]
    for instance in task["instances"]:
        parts += [instance["input"], instance["output"]]
    return "\n".join(parts)


@pytest.mark.parametrize("lang", LANGS)
def test_each_line_is_a_seed_task_with_the_self_instruct_schema(lang):
    for task in load(lang):
        assert set(task) == KEYS, task.get("id")
        assert isinstance(task["is_classification"], bool), task["id"]
        assert _SNAKE_RE.fullmatch(task["name"]), task["name"]
        assert isinstance(task["instruction"], str) and task["instruction"].strip(), task["id"]
        assert isinstance(task["instances"], list) and task["instances"], task["id"]
        for instance in task["instances"]:
            assert set(instance) == {"input", "output"}, task["id"]
            assert isinstance(instance["input"], str) and isinstance(instance["output"], str), task["id"]


@pytest.mark.parametrize("lang", LANGS)
def test_ids_count_up_from_zero_with_the_language_prefix(lang):
    ids = [task["id"] for task in load(lang)]
    assert ids == [f"{ID_PREFIX[lang]}{n}" for n in range(len(ids))]


@pytest.mark.parametrize("lang", LANGS)
def test_each_file_holds_at_least_100_tasks(lang):
    assert len(load(lang)) >= 100


@pytest.mark.parametrize("lang", LANGS)
def test_at_least_15_percent_of_tasks_are_classification(lang):
    tasks = load(lang)
    share = sum(task["is_classification"] for task in tasks) / len(tasks)
    assert share >= 0.15


@pytest.mark.parametrize("lang", LANGS)
def test_classification_outputs_are_short_labels(lang):
    # A label from a small set, not an explanation: a few words (en) or characters (zh).
    limit = 4 if lang == "en" else 6
    for task in load(lang):
        if task["is_classification"]:
            for instance in task["instances"]:
                label = instance["output"]
                size = len(label.split()) if lang == "en" else len(label)
                assert 0 < size <= limit, (task["id"], label)


@pytest.mark.parametrize("lang", LANGS)
def test_every_task_has_an_instance_with_a_non_empty_output(lang):
    for task in load(lang):
        assert any(instance["output"].strip() for instance in task["instances"]), task["id"]


@pytest.mark.parametrize("lang", LANGS)
def test_no_output_repeats_its_input(lang):
    for task in load(lang):
        for instance in task["instances"]:
            assert instance["output"].strip() != instance["input"].strip(), task["id"]


@pytest.mark.parametrize("lang", LANGS)
def test_ids_names_and_instructions_are_unique(lang):
    tasks = load(lang)
    for key in ("id", "name", "instruction"):
        values = [task[key] for task in tasks]
        assert len(set(values)) == len(values), key


@pytest.mark.parametrize("lang", LANGS)
def test_instructions_avoid_the_blacklisted_words(lang):
    for text in instructions(lang):
        assert not _BLACKLIST_EN_RE.search(text), text
        assert not any(word in text for word in BLACKLIST_ZH), text
        assert not re.match(r"\s*write\s+a\s+program", text, re.IGNORECASE), text


@pytest.mark.parametrize("lang", LANGS)
def test_instructions_contain_no_urls(lang):
    for task in load(lang):
        assert not _URL_RE.search(all_text(task)), task["id"]


def test_english_instructions_have_4_to_150_words_and_start_with_a_letter():
    for text in instructions("en"):
        assert 4 <= len(text.split()) <= 150, text
        assert text[0].isascii() and text[0].isalpha(), text


def test_chinese_instructions_have_5_to_300_characters_and_start_with_a_han_character():
    for text in instructions("zh"):
        assert 5 <= len(text) <= 300, text
        assert cjk_count(text[0]) == 1, text


def test_english_file_contains_no_han():
    for task in load("en"):
        assert cjk_count(all_text(task)) == 0, task["id"]


def test_chinese_file_is_mostly_han_text():
    tasks = load("zh")
    for text in instructions("zh"):
        assert is_cjk(text), text
    text = "\n".join(all_text(task) for task in tasks)
    han, latin_words = cjk_count(text), len(re.findall(r"[A-Za-z]+", text))
    assert han / (han + latin_words) >= 0.9
    # Code and English translations are fine, but only in a few tasks.
    assert sum(is_cjk(all_text(task)) for task in tasks) >= 0.9 * len(tasks)


@pytest.mark.parametrize("lang", LANGS)
def test_no_two_instructions_reach_rouge_l_0_7(lang):
    texts = instructions(lang)
    token_lists = [tokens(text) for text in texts]
    assert all(token_lists), "every instruction has tokens"
    too_similar = [
        (round(score, 3), texts[i], texts[j])
        for (i, a), (j, b) in itertools.combinations(enumerate(token_lists), 2)
        # LCS <= the shorter length, so pairs whose lengths differ a lot cannot reach 0.7: skip them.
        if 2 * min(len(a), len(b)) / (len(a) + len(b)) >= 0.7
        and (score := _score_lcs(a, b).fmeasure) >= 0.7
    ]
    assert too_similar == []
