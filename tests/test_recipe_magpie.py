"""The magpie recipe: chat-template prefixes and end markers (families, Jinja files, a tokenizer's
own template), then whole runs through the CLI against the loopback server with scripted replies
(good, labelled, empty, never ending, chatter, Chinese), the errors a user can make, a resume after
SIGKILL, and one run on the real embedded model."""
import json
import os
import random
import sys
from types import SimpleNamespace

import pytest

from selfinstruct import chat_templates as ct
from selfinstruct.errors import UsageError
from selfinstruct.recipes.magpie import MagpieRecipe
from selfinstruct.teachers.base import Request
from selfinstruct.teachers.openai import OpenAITeacher
from tests.fake_openai_server import FakeOpenAI, default_text, hang, ok, serve_in_thread
from tests.kill_resume import assert_nothing_journaled_was_sent_again, journal_events, kill_and_resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHATML_USER = "<|im_start|>user\n"
# Raw requests beyond what a run needs get no answer (the server closes the connection after this
# long): they change no count. Short, because at --concurrency 1 the one connection they hold is
# the one the last answer waits for.
HANG_S = 2

# A template in the style of the [INST] models, written for these tests: BOS from the config, a
# system block inside the first turn, no generation prompt of its own.
INST_TEMPLATE = ("{{ bos_token }}{% for m in messages %}"
                 "{% if m['role'] == 'system' %}<<SYS>>{{ m['content'] }}<</SYS>>\n"
                 "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                 "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")
# chatml that writes a default system turn when the conversation has none (as many models do)
DEFAULT_SYSTEM_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are Wren, a careful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


# -- templates ----------------------------------------------------------------------------------


def test_chatml_prefix_is_the_user_header_after_an_optional_system_turn():
    chatml = ct.resolve("chatml")
    assert ct.query_prefix(chatml) == CHATML_USER
    assert ct.query_prefix(chatml, "你是助手。") == "<|im_start|>system\n你是助手。<|im_end|>\n" + CHATML_USER
    assert ct.end_markers(chatml) == ("<|im_end|>", "<|im_start|>")
    assert ct.conversation(chatml, "", "Name a river.") == (
        "<|im_start|>user\nName a river.<|im_end|>\n<|im_start|>assistant\n")


def test_llama3_prefix_leaves_the_bos_to_the_server_and_ends_at_eot():
    llama3 = ct.resolve("LLAMA3")
    assert ct.query_prefix(llama3) == "<|start_header_id|>user<|end_header_id|>\n\n"
    assert ct.query_prefix(llama3, "Be brief.") == (
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n")
    assert ct.end_markers(llama3) == ("<|eot_id|>", "<|start_header_id|>", "<|end_of_text|>")
    assert ct.conversation(llama3, "", " Hi ").endswith(
        "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_a_jinja_file_gives_its_prefix_and_markers(tmp_path):
    path = tmp_path / "inst.jinja"
    path.write_text(INST_TEMPLATE, encoding="utf-8")
    t = ct.resolve(str(path))
    assert ct.query_prefix(t) == "[INST] "
    assert ct.query_prefix(t, "Answer in French.") == "<<SYS>>Answer in French.<</SYS>>\n[INST] "
    assert ct.end_markers(t) == ("[/INST]",)


def test_a_tokenizer_config_brings_its_bos_and_eos(tmp_path):
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"chat_template": INST_TEMPLATE, "bos_token": {"content": "<s>"},
                                "eos_token": "</s>"}), encoding="utf-8")
    t = ct.resolve(str(path))
    assert ct.query_prefix(t) == "<s>[INST] "
    assert ct.end_markers(t) == ("[/INST]", "</s>")


def test_a_default_system_turn_of_the_template_stays_in_the_prefix(tmp_path):
    path = tmp_path / "wren.jinja"
    path.write_text(DEFAULT_SYSTEM_TEMPLATE, encoding="utf-8")
    t = ct.resolve(str(path))
    assert ct.query_prefix(t) == "<|im_start|>system\nYou are Wren, a careful assistant.<|im_end|>\n" + CHATML_USER
    assert ct.query_prefix(t, "Be terse.") == "<|im_start|>system\nBe terse.<|im_end|>\n" + CHATML_USER
    assert ct.end_markers(t) == ("<|im_end|>", "<|im_start|>")


def test_the_embedded_style_template_renders_like_apply_chat_template_would():
    """A tokenizer's template (the embedded teacher's path) with its special tokens."""
    tok = SimpleNamespace(chat_template=DEFAULT_SYSTEM_TEMPLATE, bos_token="<|im_start|>", eos_token="<|im_end|>")
    t = ct.from_tokenizer(tok)
    assert ct.query_prefix(t).endswith("<|im_end|>\n" + CHATML_USER)
    assert ct.end_markers(t) == ("<|im_end|>", "<|im_start|>")
    with pytest.raises(UsageError, match="the tokenizer has no chat template; pass --chat-template"):
        ct.from_tokenizer(SimpleNamespace(chat_template=None))


@pytest.mark.parametrize("spec, message", [
    ("vicuna", "--chat-template vicuna: neither a file nor a known template (known: chatml, llama3)"),
    ("missing/dir/t.jinja", "--chat-template missing/dir/t.jinja: neither a file nor a known template"),
])
def test_an_unknown_template_is_a_usage_error(spec, message):
    with pytest.raises(UsageError) as e:
        ct.resolve(spec)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("source, message", [
    ("{% for m in messages %}{{ m['content'] }", "not a valid Jinja template (line 1"),
    ("{% for m in messages %}<user>{{ m['content'] }}{% endfor %}", "nothing marks the end of the user's turn"),
    ("{{ raise_exception('Only user turns') }}", "Only user turns"),
])
def test_a_template_that_cannot_serve_is_a_usage_error(tmp_path, source, message):
    path = tmp_path / "t.jinja"
    path.write_text(source, encoding="utf-8")
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("[", r"\[")):
        t = ct.resolve(str(path))
        ct.end_markers(t)


def test_a_template_without_a_system_turn_refuses_a_system_prompt(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}{% if m['role'] == 'user' %}<u>{{ m['content'] }}</u>"
                    "{% endif %}{% endfor %}", encoding="utf-8")
    t = ct.resolve(str(path))
    assert ct.query_prefix(t) == "<u>"
    with pytest.raises(UsageError, match="it leaves out the system turn"):
        ct.query_prefix(t, "用中文提问。")


def test_the_model_name_suggests_a_family():
    assert ct.family_for_model("Qwen/Qwen2.5-7B-Instruct") == "chatml"
    assert ct.family_for_model("HuggingFaceTB/SmolLM2-1.7B-Instruct") == "chatml"
    assert ct.family_for_model("meta-llama/Llama-3.1-8B-Instruct") == "llama3"
    assert ct.family_for_model("llama3.2:3b") == "llama3"
    assert ct.family_for_model("gpt-4o-mini") is None
    assert ct.family_for_model("meta-llama/Llama-2-7b-chat-hf") is None


def test_the_instruction_ends_at_the_first_marker():
    markers = ("<|im_end|>", "<|im_start|>")
    assert ct.cut_at_marker("Name a river.<|im_end|>\n<|im_start|>assistant", markers) == ("Name a river.", True)
    assert ct.cut_at_marker("Name a river.", markers) == ("Name a river.", False)


# -- the recipe on its own -----------------------------------------------------------------------


def recipe(lang="en", **options):
    return MagpieRecipe([], lang, **options)


def test_the_system_turn_steers_chinese_and_carries_topic_and_persona():
    assert recipe().system_text({}) == ""
    assert recipe().system_text({"topic": "tide pools", "persona": "a marine biology student"}) == (
        "You are a helpful assistant. The user asks about tide pools. The user is a marine biology student.")
    zh = recipe("zh").system_text({"topic": "茶文化"})
    assert zh.startswith("你是一个乐于助人的中文助手。用户总是用简体中文提问") and zh.endswith("用户的问题与茶文化有关。")
    assert recipe("zh").system_text({}) == "你是一个乐于助人的中文助手。用户总是用简体中文提问，你也用简体中文回答。"


def test_bind_refuses_an_explicit_chat_api_and_an_unknown_model():
    with pytest.raises(UsageError, match=r"--recipe magpie needs raw completions \(/v1/completions\): use --api "
                                         "completions or leave --api out"):
        recipe().bind(OpenAITeacher(model="Qwen2.5-7B-Instruct"), {"api": "chat"})
    with pytest.raises(UsageError, match="cannot tell the chat template of --model gpt-4o-mini: pass --chat-template"):
        recipe().bind(OpenAITeacher(model="gpt-4o-mini"), {})
    r = recipe(chat_template="llama3")
    r.bind(OpenAITeacher(model="gpt-4o-mini"), {})           # a template given: any model name
    assert r.first_request(random.Random(0), []).prompt == "<|start_header_id|>user<|end_header_id|>\n\n"


def test_the_first_request_is_raw_and_the_answer_is_a_chat_request_or_a_rendered_conversation():
    r = recipe("zh")
    r.bind(OpenAITeacher(model="qwen2.5-7b-instruct"), {})
    first = r.first_request(random.Random(3), [])
    system = r.system_text({})
    assert (first.kind, first.stage, first.stop) == ("raw", "instructions", ("<|im_end|>", "<|im_start|>"))
    assert first.prompt == f"<|im_start|>system\n{system}<|im_end|>\n" + CHATML_USER
    answer = r.answer_request("写一首关于春雨的短诗。", system)
    assert (answer.kind, answer.system, answer.prompt, answer.stage) == ("chat", system, "写一首关于春雨的短诗。", "answer")
    raw = recipe("zh")
    raw.bind(OpenAITeacher(model="qwen2.5-7b-instruct", api="completions"), {"api": "completions"})
    answer = raw.answer_request("写一首关于春雨的短诗。", system)
    assert answer.kind == "raw" and answer.prompt == (f"<|im_start|>system\n{system}<|im_end|>\n"
                                                      "<|im_start|>user\n写一首关于春雨的短诗。<|im_end|>\n"
                                                      "<|im_start|>assistant\n")
    # draws: a seed per unit, so that the same prefix asks for a new instruction every time
    assert first.seed != r.first_request(random.Random(4), []).seed


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError, match="instruction_tokens must be at least 1"):
        recipe(instruction_tokens=0)
    with pytest.raises(UsageError, match="magpie samples its instructions"):
        recipe(temperature=0.0)


# -- whole runs against the loopback server --------------------------------------------------


@pytest.fixture
def magpie(invoke_cli):
    """``magpie(server, out, *args)``: ``generate --recipe magpie`` against ``server``, in-process."""
    def run(server, out, *args):
        return invoke_cli("generate", "--teacher", "openai", "--base-url", server.url, "--recipe", "magpie",
                          "--out", out, "--no-progress", "--no-report", "--no-cache", *args,
                          env={"OPENAI_API_KEY": ""})
    return run


class Script:
    """Replies to the raw (instruction) requests in the order they arrive, then no answer (a run
    that has its --num must not need more); chat and raw answers come from ``answer(question, body)``."""

    def __init__(self, instructions, answer):
        self.instructions, self.answer, self.raw = list(instructions), answer, 0

    def __call__(self, body, n):
        if "messages" in body:
            return self.answer(body["messages"][-1]["content"], body)
        if body["prompt"].endswith(("<|im_start|>assistant\n", "<|start_header_id|>assistant<|end_header_id|>\n\n")):
            question = body["prompt"].rsplit("<|end_header_id|>\n\n", 2)[-2].split("<|eot_id|>")[0]
            return self.answer(question, body)
        i, self.raw = self.raw, self.raw + 1
        return self.instructions[i] if i < len(self.instructions) else hang(HANG_S)


def test_a_run_against_a_server_sends_prefixes_cuts_instructions_and_counts_exactly(magpie, tmp_path, read_json,
                                                                                    read_jsonl):
    def answer(question, body):
        if "sky" in question:
            return ok("Sunlight is scattered by the molecules of the air, and blue light", finish_reason="length")
        return ok(f"Here is how, step by step: first consider what {question.rstrip('?.').lower()} means.")

    script = Script([
        ok("Question: How do I convert a temperature from Celsius to Fahrenheit?"),    # label copied
        ok(""),                                                                         # closed at once
        ok("Write a story about a dragon who " * 20, finish_reason="length"),          # never ends
        ok("How can I assist you today?"),                                              # the assistant's line
        ok("How do I convert a temperature from Celsius to Fahrenheit?"),              # the same task again
        ok("Explain why the sky looks blue during the day but red at sunset.<|im_end|>\n<|im_start|>assistant"),
        ok("List three practical ways a small bakery can reduce food waste."),
        ok("**Task:** Write a short poem about the first snowfall in a quiet village."),
    ], answer)
    with serve_in_thread(FakeOpenAI(responder=script)) as server:
        r = magpie(server, tmp_path / "o", "--model", "Qwen/Qwen2.5-7B-Instruct", "--num", "3",
                    "--concurrency", "1")
        assert r.exit_code == 0, r.output
        received = list(server.requests)
    summary = read_json(tmp_path / "o" / "summary.json")
    assert (summary["kept"], summary["stopped"]) == (3, "done")
    assert summary["rejected"] == {"chatter": 1, "empty_instruction": 1, "rouge_too_similar": 1, "truncated": 2}
    data = read_json(tmp_path / "o" / "data.json")
    assert [d["instruction"] for d in data] == [
        "How do I convert a temperature from Celsius to Fahrenheit?",
        "List three practical ways a small bakery can reduce food waste.",
        "Write a short poem about the first snowfall in a quiet village."]
    assert all(d["input"] == "" and d["output"].startswith("Here is how, step by step") for d in data)
    rejects = [(x["reason"], x["record"]["instruction"][:40]) for x in read_jsonl(tmp_path / "o" / "rejects.jsonl")]
    # (instruction-stage and answer-stage decisions are journaled in two lanes: compare as sets)
    assert sorted(rejects) == sorted([
        ("empty_instruction", ""), ("truncated", "Write a story about a dragon who Write a"),
        ("chatter", "How can I assist you today?"), ("rouge_too_similar", "How do I convert a temperature from Cels"),
        ("truncated", "Explain why the sky looks blue during th")])

    raw = [q for q in received if q.path.endswith("/v1/completions")]
    chat = [q for q in received if q.path.endswith("/v1/chat/completions")]
    # the ninth, if the run sent it before it stopped, is the unit in flight (never answered)
    assert len(raw) in (8, 9) and all(q.json["prompt"] == CHATML_USER for q in raw)
    assert all(q.json["stop"] == ["<|im_end|>", "<|im_start|>"] and q.json["temperature"] == 1.0 for q in raw)
    assert len({q.json["seed"] for q in raw}) == len(raw)
    # answers only for instructions that passed the instruction filters, as chat turns without system
    asked = [q.json["messages"] for q in chat]
    assert all(len(m) == 1 and m[0]["role"] == "user" for m in asked)
    assert [m[0]["content"] for m in asked] == [
        "How do I convert a temperature from Celsius to Fahrenheit?", "How can I assist you today?",
        "Explain why the sky looks blue during the day but red at sunset.",
        "List three practical ways a small bakery can reduce food waste.",
        "Write a short poem about the first snowfall in a quiet village."]


def test_rejects_say_why_and_a_turn_cut_by_its_limit_keeps_its_whole_paragraphs(magpie, tmp_path, read_jsonl,
                                                                                  read_json):
    script = Script([ok(""), ok("Write a story about a dragon who " * 20, finish_reason="length"),
                     ok("What should I pack for a week of hiking in Patagonia in March?\n\n(Note: I am going",
                        finish_reason="length"),
                     ok("Name three rivers that flow through more than two countries.")],
                    lambda q, body: ok("It depends on the season; here are the essentials in order."))
    with serve_in_thread(FakeOpenAI(responder=script)) as server:
        r = magpie(server, tmp_path / "o", "--model", "smollm2-1.7b", "--num", "2", "--concurrency", "1",
                   "--opt", "magpie.instruction_tokens=40")
        assert r.exit_code == 0, r.output
    rejects = read_jsonl(tmp_path / "o" / "rejects.jsonl")
    assert [(x["reason"], x["detail"]) for x in rejects] == [
        ("empty_instruction", "the model closed the user's turn without writing in it"),
        ("truncated", "the user's turn did not end within 40 tokens")]
    assert rejects[1]["record"]["meta"]["truncated"] is True
    assert [d["instruction"] for d in read_json(tmp_path / "o" / "data.json")] == [
        "What should I pack for a week of hiking in Patagonia in March?",
        "Name three rivers that flow through more than two countries."]
    records = read_jsonl(tmp_path / "o" / "records.jsonl")
    assert [r.get("meta", {}).get("cut_at_paragraph") for r in records] == [True, None]


@pytest.mark.parametrize("text, kept", [
    ("What should I pack for a week of hiking?\n\n(Note: I am going", "What should I pack for a week of hiking?"),
    ("I run a bakery.\n\nHow can I cut food waste?\n\n1. First, you sh",
     "I run a bakery.\n\nHow can I cut food waste?"),
    ("Summarise the passage below.\n\n\"The tide came in.\"\n\nThe passage is about", 
     "Summarise the passage below.\n\n\"The tide came in.\""),
    ("请帮我制定一份为期一周的健身计划。\n\n（注意：我每天只有半小时", "请帮我制定一份为期一周的健身计划。"),
    ("我开了一家小面馆，生意不好。\n\n有什么办法吗？\n\n第一，", "我开了一家小面馆，生意不好。\n\n有什么办法吗？"),
    # nothing finished before the cut: no instruction
    ("Write a story about a dragon who lives in a", ""),
    ("Here is my code:\n\ndef f(x):\n    return", ""),
    ("请写一个故事，讲述一条龙住在", ""),
])
def test_a_cut_turn_keeps_the_paragraphs_that_end_like_a_finished_sentence(text, kept):
    from selfinstruct.recipes.magpie import complete_paragraphs
    assert complete_paragraphs(text) == kept


ZH_TOPICS = {
    "茶文化": ["请比较绿茶和红茶在制作工艺上的主要区别。", "任务：为一家新开的茶馆写一段两百字左右的开业介绍。",
             "泡乌龙茶时水温应该控制在多少度？为什么？", "宋代点茶和今天的泡茶方法有什么不同？",
             "给第一次喝普洱茶的朋友推荐一种入门的冲泡方式。"],
    "城市交通": ["如何设计一条能缓解早高峰拥堵的公交专线？", "请解释地铁换乘站为什么常常设在城市中心。",
              "共享单车给城市交通管理带来了哪些新问题？", "为一座中等城市提出三条减少私家车出行的建议。",
              "夜间公交线路应该怎样规划才既安全又经济？"],
    "家庭理财": ["刚工作的年轻人应该怎样制定第一份月度预算？", "请列出三种适合家庭的低风险储蓄方式并说明理由。",
              "指令：解释一下复利是什么，并举一个生活中的例子。", "退休前十年，家庭资产配置应该注意什么？",
              "怎样教小学生认识零花钱和储蓄的关系？"],
}


def test_chinese_with_topics_on_a_completions_server_keeps_the_topic_in_meta(magpie, tmp_path, read_json):
    topics = tmp_path / "topics.txt"
    topics.write_text("\n".join(ZH_TOPICS) + "\n", encoding="utf-8")
    used = {topic: 0 for topic in ZH_TOPICS}
    answered = []

    def responder(body, n):
        prompt = body["prompt"]
        if prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n"):
            answered.append(prompt)
            return ok("好的问题。" + "要点如下：先说明背景，再给出具体做法，最后总结。")
        topic = next(t for t in ZH_TOPICS if f"用户的问题与{t}有关。" in prompt)
        used[topic] += 1
        items = ZH_TOPICS[topic]
        if used[topic] > len(items):
            return hang(HANG_S)              # more than the run needs
        # the model writes past its turn here: the server sent the end marker and the next header
        return ok(items[used[topic] - 1] + "<|eot_id|><|start_header_id|>assistant")

    with serve_in_thread(FakeOpenAI(responder=responder)) as server:
        r = magpie(server, tmp_path / "o", "--model", "my-local-model", "--chat-template", "llama3",
                    "--api", "completions", "--lang", "zh", "--topics", str(topics), "--num", "5",
                    "--concurrency", "1")
        assert r.exit_code == 0, r.output
        received = list(server.requests)
    summary = read_json(tmp_path / "o" / "summary.json")
    assert summary["kept"] == 5 and summary["rejected"] == {}
    data = read_json(tmp_path / "o" / "data.json")
    records = [json.loads(line) for line in open(tmp_path / "o" / "records.jsonl", encoding="utf-8")] \
        if os.path.exists(tmp_path / "o" / "records.jsonl") else None
    instructions = [d["instruction"] for d in data]
    assert not any(i.startswith(("任务", "指令")) for i in instructions)     # labels stripped
    assert all(i in [x.replace("任务：", "").replace("指令：", "") for v in ZH_TOPICS.values() for x in v]
               for i in instructions)
    # every request went to /v1/completions: the instruction after the Chinese system turn, the answer
    # as the whole conversation rendered through the template
    assert {q.path for q in received} == {"/v1/completions"}
    system_start = "<|start_header_id|>system<|end_header_id|>\n\n你是一个乐于助人的中文助手。"
    assert all(q.json["prompt"].startswith(system_start) for q in received)
    # (a sixth answer may be the unit in flight when the fifth was accepted)
    assert len(answered) in (5, 6) and all(any(i in p for p in answered) for i in instructions)
    journal = [json.loads(line) for line in open(tmp_path / "o" / "journal.jsonl", encoding="utf-8")]
    accepted = [ev["record"] for ev in journal if ev["ev"] == "accept"]
    assert len(accepted) == 5
    for rec in accepted:
        topic = rec["meta"]["topic"]
        assert any(rec["instruction"] in x for x in ZH_TOPICS[topic])    # the topic that was asked for
    if records is not None:
        assert all(r["meta"]["topic"] in ZH_TOPICS for r in records)


def test_an_explicit_chat_api_is_refused_before_anything_is_sent(magpie, error_line, tmp_path, fake_openai):
    r = magpie(fake_openai, tmp_path / "o", "--model", "Qwen2.5-7B-Instruct", "--api", "chat", "--num", "2")
    assert error_line(r) == ("Error: --recipe magpie needs raw completions (/v1/completions): use --api "
                             "completions or leave --api out")
    assert fake_openai.requests == [] and not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("args, message", [
    (["--model", "qwen2.5-7b-instruct", "--lang", "zh", "--chat-template", "NO_SYSTEM"],
     "Error: chat template NO_SYSTEM: it leaves out the system turn (needed for --lang zh, --topics and --personas)"),
    (["--model", "gpt-4o-mini"],
     "Error: --recipe magpie cannot tell the chat template of --model gpt-4o-mini: pass --chat-template "
     "(chatml, llama3 or a Jinja file)"),
    (["--model", "gpt-4o-mini", "--chat-template", "vicuna"],
     "Error: --chat-template vicuna: neither a file nor a known template (known: chatml, llama3)"),
])
def test_a_template_that_cannot_be_found_or_cannot_serve_is_one_error_line(magpie, error_line, tmp_path,
                                                                           fake_openai, args, message):
    no_system = tmp_path / "user-only.jinja"
    no_system.write_text("{% for m in messages %}{% if m['role'] == 'user' %}<u>{{ m['content'] }}</u>"
                         "{% endif %}{% endfor %}", encoding="utf-8")
    args = [str(no_system) if a == "NO_SYSTEM" else a for a in args]
    r = magpie(fake_openai, tmp_path / "o", *args, "--num", "2")
    assert error_line(r) == message.replace("NO_SYSTEM", str(no_system))
    assert not os.path.exists(tmp_path / "o")
    assert fake_openai.requests == []


def request_key(body: dict) -> str:
    """The journal's key of a request the server received (raw instruction or chat answer)."""
    common = dict(max_tokens=body["max_tokens"], temperature=body["temperature"], top_p=body["top_p"],
                  stop=tuple(body.get("stop", ())), seed=body.get("seed"))
    if "messages" in body:
        turns = body["messages"]
        system = turns[0]["content"] if turns[0]["role"] == "system" else ""
        return Request(prompt=turns[-1]["content"], kind="chat", system=system, **common).key()
    return Request(prompt=body["prompt"], kind="raw", **common).key()


def unique_instruction(body, n):
    """A different instruction for every seed, an answer for every question."""
    if "messages" in body:
        return ok(default_text(body["messages"][-1]["content"], items=2), latency=0.03)
    words = default_text(str(body["seed"]), items=1)[3:].rstrip(".")
    return ok(f"Explain {words.lower()} in plain words.", latency=0.03)


@pytest.mark.slow
def test_sigkill_in_mid_run_then_resume_ends_with_exactly_num_and_never_pays_twice(tmp_path, read_json):
    out = str(tmp_path / "o")
    n = 150
    with serve_in_thread(FakeOpenAI(responder=unique_instruction)) as server:
        cmd = [sys.executable, "cli.py", "generate", "--teacher", "openai", "--base-url", server.url,
               "--model", "qwen2.5-7b-instruct", "--recipe", "magpie", "--topics", "builtin", "--out", out,
               "--no-progress", "--no-report", "--no-cache", "--num", str(n), "--concurrency", "4"]
        runs = kill_and_resume(cmd, out, {**os.environ, "OPENAI_API_KEY": ""}, seed=11, num=n)
        sent = [(q.t, request_key(q.json)) for q in server.requests]
    data = read_json(os.path.join(out, "data.json"))
    assert len(data) == n and len({d["instruction"] for d in data}) == n
    assert [d["instruction"] for d in data][: len(runs.seen)] == runs.seen
    assert_nothing_journaled_was_sent_again(runs, out, sent)
    # a unit's topic stays with it across the kills: in its record, in its first request, and in the
    # system turn its answer was asked with (rebuilt from the journaled carry by a resumed unit)
    first_of = {ev["uid"]: ev["req"] for ev in journal_events(out, "start")}
    systems = {q.json["messages"][-1]["content"]: q.json["messages"][0]["content"]
               for q in server.requests if "messages" in q.json}
    accepted = [ev["record"] for ev in journal_events(out, "accept")]
    for rec in accepted:
        topic = rec["meta"]["topic"]
        first = first_of[rec["request_id"].split(":")[0]]
        assert first["carry"] == {"topic": topic}
        assert f"The user asks about {topic}." in first["prompt"]
        assert systems[rec["instruction"]] == f"You are a helpful assistant. The user asks about {topic}."
    # some of them were units a kill interrupted
    assert runs.interrupted & {rec["request_id"].split(":")[0] for rec in accepted}


# -- the real embedded model --------------------------------------------------------------------


@pytest.mark.embedded
@pytest.mark.slow
def test_the_embedded_model_writes_accepted_magpie_examples_through_its_own_template(tmp_path, read_json):
    import asyncio

    from selfinstruct.generate import Settings, run_generate
    from selfinstruct.teachers.embedded import EmbeddedTeacher

    teacher = EmbeddedTeacher(concurrency=8)
    asyncio.run(teacher.start())
    asyncio.run(teacher.aclose())
    # the prefix our renderer finds is the one transformers renders for the model
    tok = teacher.tokenizer
    mine = ct.from_tokenizer(tok)
    theirs = tok.apply_chat_template([{"role": "user", "content": ct.SENTINEL}], tokenize=False)
    assert ct.query_prefix(mine) == theirs[: theirs.index(ct.SENTINEL)]
    assert tok.eos_token in ct.end_markers(mine)

    out = tmp_path / "en"
    summary = run_generate(Settings(num=1, out=str(out), recipe="magpie", progress=False), teacher)
    assert summary["kept"] == 1 and summary["stopped"] == "done"
    data = read_json(out / "data.json")
    assert data[0]["instruction"].strip() and data[0]["output"].strip() and data[0]["input"] == ""
    assert "<|im_" not in data[0]["instruction"] + data[0]["output"]
    assert summary["tokens"]["completion"] > 0
