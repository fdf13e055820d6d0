"""The machinery every recipe shares: request kinds (chat template, system turn, raw completions),
what a unit carries, prompt labels stripped from parsed instructions, topic and persona conditioning,
recipe flags, and a recipe that runs out of work."""
import asyncio
import hashlib
import json
import random

import pytest

from selfinstruct.conditioning import Conditions, builtin_topics_path, read_entries
from selfinstruct.errors import InputError, UsageError
from selfinstruct.recipes.parsing import clean_instruction, parse_numbered_tasks, parse_triple
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request


# -- requests --------------------------------------------------------------------------------------

def _old_key(r: Request) -> str:
    """The key as every cache and journal written before request kinds existed computed it."""
    d = {"max_tokens": r.max_tokens, "prompt": r.prompt, "seed": r.seed, "stop": list(r.stop),
         "temperature": r.temperature, "top_p": r.top_p}
    return hashlib.sha256(json.dumps(d, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def test_a_text_request_keeps_the_key_it_always_had_and_kind_or_system_change_it():
    base = Request(prompt="列出三种水果", max_tokens=64, stop=("\n\n",), seed=3)
    assert base.key() == _old_key(base)
    keys = {base.key(), Request(prompt=base.prompt, max_tokens=64, stop=("\n\n",), seed=3, kind="chat").key(),
            Request(prompt=base.prompt, max_tokens=64, stop=("\n\n",), seed=3, kind="raw").key(),
            Request(prompt=base.prompt, max_tokens=64, stop=("\n\n",), seed=3, kind="chat", system="s").key()}
    assert len(keys) == 4


def test_carry_travels_with_the_request_but_is_not_part_of_its_key():
    a = Request(prompt="p", carry={"topic": "茶文化", "persona": "a chef"})
    assert a.key() == Request(prompt="p").key()
    back = Request.from_dict(json.loads(json.dumps(a.to_dict(), ensure_ascii=False)))
    assert back.carry == {"topic": "茶文化", "persona": "a chef"} and back == a


def test_an_unknown_request_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Request(prompt="p", kind="voice")


def _one(teacher, request):
    async def go():
        try:
            return await teacher.complete(request)
        finally:
            await teacher.aclose()
    return asyncio.run(go())


def test_a_raw_request_goes_to_completions_even_on_a_chat_teacher(fake_openai, openai_teacher):
    resp = _one(openai_teacher(api="chat"), Request(prompt="<|im_start|>user\n", kind="raw", max_tokens=20))
    assert resp.error is None
    [got] = fake_openai.requests
    assert got.path.endswith("/v1/completions") and got.json["prompt"] == "<|im_start|>user\n"


def test_a_chat_request_with_a_system_turn_sends_two_messages(fake_openai, openai_teacher):
    _one(openai_teacher(api="chat"), Request(prompt="Explain tides.", kind="chat", system="Be brief."))
    [got] = fake_openai.requests
    assert got.path.endswith("/v1/chat/completions")
    assert got.json["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Explain tides."}]


def test_a_chat_request_to_a_completions_endpoint_leads_with_the_system_text(fake_openai, openai_teacher):
    _one(openai_teacher(api="completions"), Request(prompt="解释潮汐。", kind="chat", system="简短回答。"))
    [got] = fake_openai.requests
    assert got.path.endswith("/v1/completions") and got.json["prompt"] == "简短回答。\n\n解释潮汐。"


@pytest.mark.embedded
def test_the_embedded_teacher_reads_a_chat_request_through_its_own_template():
    from transformers import AutoTokenizer

    from selfinstruct.model_files import gguf_location
    from selfinstruct.teachers.embedded import prompt_text
    folder, name = gguf_location()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    chat = prompt_text(tok, Request(prompt="Name a fruit.", kind="chat", system="Answer in one word."))
    assert chat == ("<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\nName a fruit."
                    "<|im_end|>\n<|im_start|>assistant\n")
    assert prompt_text(tok, Request(prompt="Task 1:")) == "Task 1:"
    raw = prompt_text(tok, Request(prompt="<|im_start|>user\n", kind="raw"))
    assert tok(raw)["input_ids"][0] == tok.convert_tokens_to_ids("<|im_start|>")   # markup → special token


# -- prompt labels ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, task", [
    ("Task 5 Instructions: Write a haiku about rain.", "Write a haiku about rain."),
    ("**Question:** What is the boiling point of water?", "What is the boiling point of water?"),
    ("Title: Summarize the article below.", "Summarize the article below."),
    ("Task: Instruction: List three fruits.", "List three fruits."),
    ("1. Instruction: Sort the list in ascending order.", "Sort the list in ascending order."),
    ("任务3：写一首关于秋天的诗。", "写一首关于秋天的诗。"),
    ("指令：把下面的句子翻译成英文。", "把下面的句子翻译成英文。"),
    ("问题：为什么天空是蓝色的？", "为什么天空是蓝色的？"),
])
def test_prompt_labels_are_stripped_from_parsed_instructions(text, task):
    assert clean_instruction(text) == task


@pytest.mark.parametrize("human", [
    "Task management apps: compare three of them for a small team.",
    "Question everything you read in this paragraph and list the doubtful claims.",
    "Titles of five books about the sea.",
    "Request a refund politely in an email to an airline.",
    "问题解决能力在面试中如何体现？请举例说明。",
    "标题党文章有哪些特点？",
    "Task:",
])
def test_a_task_that_merely_begins_with_such_a_word_is_left_alone(human):
    assert clean_instruction(human) == human


def test_the_parsers_strip_labels_in_both_languages():
    assert parse_triple("Instruction: Task 2: Name a planet.\nInput: <noinput>\nOutput: Mars") == \
        ("Name a planet.", "", "Mars")
    assert parse_numbered_tasks("Question: Why is the sea salty?\nTask 10: 问题：水为什么会结冰？") == \
        ["Why is the sea salty?", "水为什么会结冰？"]


# -- topics and personas ---------------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_builtin_topics_ship_with_the_package(lang):
    topics = read_entries(builtin_topics_path(lang), "--topics")
    assert len(topics) >= 30 and len(set(topics)) == len(topics)
    assert all(not t.startswith("#") for t in topics)


def test_topic_files_skip_blank_and_comment_lines_and_bad_files_are_one_line_errors(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("# mine\n\nsailing\n  knots  \n", encoding="utf-8")
    assert read_entries(str(f), "--topics") == ["sailing", "knots"]
    (tmp_path / "empty.txt").write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty.txt: no entries \(one topic per line\)"):
        read_entries(str(tmp_path / "empty.txt"), "--topics")
    with pytest.raises(UsageError, match="--personas .*nope.txt: no such file"):
        read_entries(str(tmp_path / "nope.txt"), "--personas")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00x")
    with pytest.raises(InputError, match="bin.txt: not UTF-8"):
        read_entries(str(tmp_path / "bin.txt"), "--topics")


def test_conditioning_draws_nothing_when_unconfigured_and_speaks_the_run_language(tmp_path):
    rng = random.Random(7)
    state = rng.getstate()
    assert Conditions([], [], "en").pick(rng) == {} and rng.getstate() == state
    zh = Conditions(["茶文化"], ["一位退休的中学老师"], "zh")
    picked = zh.pick(random.Random(1))
    assert picked == {"topic": "茶文化", "persona": "一位退休的中学老师"}
    assert zh.text(picked) == "任务的主题是：茶文化。 请以这样一个人的口吻来写：一位退休的中学老师。"
    assert Conditions(["sailing"], [], "en").text({"topic": "sailing"}) == "The task should be about sailing."
    from selfinstruct.recipes.base import Recipe
    r = Recipe.stamp_carry(Record(instruction="x"), {"topic": "sailing", "parent": "u1"})
    assert r.meta == {"topic": "sailing"}


# -- flags and running out of work -----------------------------------------------------------------

def test_a_recipe_flag_the_recipe_does_not_take_is_refused(invoke_cli, error_line, tmp_path):
    r = invoke_cli("generate", "--num", "2", "--out", tmp_path / "o", "--recipe", "alpaca", "--rounds", "2")
    assert error_line(r) == "Error: --rounds does not apply to --recipe alpaca"
    r = invoke_cli("generate", "--num", "2", "--out", tmp_path / "o", "--recipe", "self-instruct",
                   "--chat-template", "chatml")
    assert error_line(r) == "Error: --chat-template does not apply to --recipe self-instruct"
    assert not (tmp_path / "o").exists()


def test_a_missing_topics_file_is_refused_before_anything_is_written(invoke_cli, error_line, tmp_path):
    r = invoke_cli("generate", "--num", "2", "--out", tmp_path / "o", "--topics", tmp_path / "none.txt")
    assert error_line(r) == f"Error: --topics {tmp_path / 'none.txt'}: no such file"
    assert not (tmp_path / "o").exists()


def test_a_recipe_that_runs_out_of_work_stops_and_says_so(fake_openai, openai_teacher, tmp_path, monkeypatch):
    from selfinstruct.generate import Settings, run_async
    from tests.sim_teacher import reply
    fake_openai.text_fn = reply
    from selfinstruct.generate import run as run_module
    from selfinstruct.recipes.alpaca import AlpacaRecipe

    class TwoUnits(AlpacaRecipe):
        def request_for_unit(self, n, rng, pool):
            return super().request_for_unit(n, rng, pool) if n < 2 else None

        def exhausted_reason(self):
            return "both units were used"

    monkeypatch.setattr(run_module, "recipe_class", lambda name: TwoUnits)
    s = Settings(num=1000, out=str(tmp_path / "o"), teacher="openai", progress=False, cache=None)
    summary = asyncio.run(run_async(s, openai_teacher(concurrency=4)))
    assert summary["stopped"] == "exhausted: both units were used"
    journal = [json.loads(line) for line in open(tmp_path / "o" / "journal.jsonl", encoding="utf-8")]
    assert sorted(e["uid"] for e in journal if e["ev"] == "start") == ["u0", "u1"]
    assert 0 < summary["kept"] < 1000
    # resumed, it has nothing more to start and says the same
    again = asyncio.run(run_async(s, openai_teacher(concurrency=4)))
    assert again["stopped"] == "exhausted: both units were used" and again["kept"] == summary["kept"]


def test_the_recipe_gets_the_runs_seed_topics_and_flags(openai_teacher, tmp_path):
    from selfinstruct.generate import Settings
    from selfinstruct.generate.run import build
    s = Settings(num=1, out=str(tmp_path / "o"), teacher="openai", recipe="evol-instruct", random_seed=3,
                 recipe_options={"rounds": 2}, topics="builtin", lang="zh")
    recipe = build(s, openai_teacher())[0]
    assert (recipe.random_seed, recipe.rounds) == (3, 2)
    assert "茶文化" in recipe.conditions.topics
    other = build(Settings(num=1, out=str(tmp_path / "p"), teacher="openai", recipe="evol-instruct",
                           random_seed=4, lang="zh"), openai_teacher())[0]
    assert recipe.order() != other.order() and sorted(recipe.order()) == sorted(other.order())


def test_evol_instruct_asks_a_small_teacher_for_short_rewrites_and_answers(openai_teacher):
    from selfinstruct.recipes.evol_instruct import EvolInstructRecipe, Parent
    from selfinstruct.seedtasks import load_seeds
    seeds = load_seeds(None, "en")
    small, large = openai_teacher(), openai_teacher()
    small.answers_separately = True
    short, full = EvolInstructRecipe(seeds, "en"), EvolInstructRecipe(seeds, "en")
    short.bind(small, {})
    full.bind(large, {})
    parent = Parent("p", "Name three rivers.")
    assert (short.evolve_request(parent, 1, {}).max_tokens, full.evolve_request(parent, 1, {}).max_tokens) == (128, 320)
    a, b = short.answer_request("Name three rivers.", ""), full.answer_request("Name three rivers.", "")
    assert a.stop == ("\n\n",) and a.max_tokens < b.max_tokens == 768 and a.kind == b.kind == "chat"
