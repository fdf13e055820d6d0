"""Prompt building and parsing on realistic teacher outputs, English and Chinese, garbled ones too."""
import random

from selfinstruct.recipes.alpaca import AlpacaRecipe
from selfinstruct.recipes.parsing import parse_numbered_tasks, parse_triple, split_blocks
from selfinstruct.recipes.self_instruct import (PROMPTS, SelfInstructRecipe, parse_input_first,
                                                parse_output_first, parse_yes_no)
from selfinstruct.record import Record

SEEDS_EN = [Record(f"Give {k} tips for staying healthy.", "", f"Tip {k}.", meta={"is_classification": False})
            for k in range(1, 9)] + [
    Record("Classify the sentiment of this review as positive or negative.", "Great food!", "Positive",
           meta={"is_classification": True})]
SEEDS_ZH = [Record(f"给出{k}个保持健康的建议。", "", f"建议{k}。") for k in range(1, 9)]


def test_alpaca_prompt_shows_three_examples_and_ends_inside_the_fourth_instruction():
    req = AlpacaRecipe(SEEDS_EN, "en").first_request(random.Random(0), [])
    assert req.prompt.count("Instruction: ") == 3
    assert req.prompt.endswith("Task 4\nInstruction:")
    assert "<noinput>" in req.prompt
    assert req.stop == ("Task 9",)
    assert req.stage == "triples"


def test_alpaca_chinese_prompt_uses_chinese_labels():
    req = AlpacaRecipe(SEEDS_ZH, "zh").first_request(random.Random(0), [])
    assert req.prompt.endswith("任务4\n指令：")
    assert "<无输入>" in req.prompt and "输出：" in req.prompt


def test_alpaca_parses_a_clean_reply_into_triples():
    text = ("Instruction: Name three rivers in Africa.\nInput: <noinput>\nOutput: The Nile, the Congo and "
            "the Niger.\n\nTask 5\nInstruction: Convert the temperature to Celsius.\nInput: 212 F\n"
            "Output: 100 C\n\n### Task 6:\nInstruction: Suggest a title for the essay.\nOutput: Roots")
    blocks = split_blocks(text)
    assert [parse_triple(b) for b in blocks] == [
        ("Name three rivers in Africa.", "", "The Nile, the Congo and the Niger."),
        ("Convert the temperature to Celsius.", "212 F", "100 C"),
        ("Suggest a title for the essay.", "", "Roots"),
    ]


def test_alpaca_output_ends_where_a_small_model_starts_rambling():
    text = ("Instruction: Choose a team of 3 and lead a team project.\nOutput: We will work together.\n\n"
            "Output: The answer to this question is:")
    assert parse_triple(split_blocks(text)[0]) == (
        "Choose a team of 3 and lead a team project.", "", "We will work together.")


def test_alpaca_parses_chinese_with_full_width_colons_and_markdown_bold():
    text = "指令：把这句话翻译成英文。\n**输入**：今天天气很好。\n输出： The weather is nice today.\n\n任务5\n指令：说出三种水果。\n输入：<无输入>\n输出：苹果、香蕉、橙子。"
    assert [parse_triple(b) for b in split_blocks(text)] == [
        ("把这句话翻译成英文。", "今天天气很好。", "The weather is nice today."),
        ("说出三种水果。", "", "苹果、香蕉、橙子。"),
    ]


def test_garbled_blocks_are_not_triples():
    assert parse_triple("使用客户美美花的萨油火火烟。\n任务10：从中间开始") is None
    assert parse_triple("Instruction: only an instruction and nothing else") is None


def test_self_instruct_prompt_has_eight_tasks_with_at_most_two_machine_ones():
    machine = [Record(f"Machine task number {i} about rivers.") for i in range(5)]
    req = SelfInstructRecipe(SEEDS_EN, "en").first_request(random.Random(1), machine)
    lines = [l for l in req.prompt.splitlines() if l.startswith("Task ")]
    assert len(lines) == 9 and lines[-1] == "Task 9:"
    assert sum("Machine task" in l for l in lines) == 2


def test_numbered_tasks_parse_continuation_and_later_numbers():
    text = " Create a list of the United States Presidents.\nTask 10: Calculate the total cost of a loaf.\nTask 11:  \nTask 12: Translate the sentence into Spanish."
    assert parse_numbered_tasks(text) == [
        "Create a list of the United States Presidents.", "Calculate the total cost of a loaf.",
        "Translate the sentence into Spanish."]


def test_numbered_tasks_parse_chinese():
    text = "对煮良良的人的意怀。\n任务10：免费旅行的扩全。\n任务11：对赫程的狼狩进一点。"
    assert parse_numbered_tasks(text) == ["对煮良良的人的意怀。", "免费旅行的扩全。", "对赫程的狼狩进一点。"]


def test_numbered_tasks_stop_the_first_one_at_a_blank_line():
    text = " Describe the top three cities.\n\nThe task is to create a list of tasks."
    assert parse_numbered_tasks(text) == ["Describe the top three cities."]


def test_classification_answers():
    assert parse_yes_no(" Yes") and parse_yes_no("是")
    assert not parse_yes_no(" No.") and not parse_yes_no("否") and not parse_yes_no("")


def test_classification_request_is_deterministic_and_greedy():
    r = SelfInstructRecipe(SEEDS_EN, "en")
    a, b = r.classification_request("Is this email spam?"), r.classification_request("Is this email spam?")
    assert a == b and a.temperature == 0.0 and a.prompt.endswith("Task: Is this email spam?\nIs it classification?")


def test_instance_requests_are_output_first_for_classification_and_input_first_otherwise():
    r = SelfInstructRecipe(SEEDS_EN, "en")
    assert r.instance_request("Is this email spam?", True).prompt.endswith("Class label:")
    assert r.instance_request("Write a haiku about rain.", False).prompt.endswith("Input:")


def test_instance_replies_parse():
    p = PROMPTS["en"]
    assert parse_input_first(" <noinput>\nOutput: Rain taps the roof.\n\nTask: something else", p) == (
        "", "Rain taps the roof.")
    assert parse_output_first(" Spam\nInput: You won a prize! Click now.\nClass label: Not spam", p) == (
        "You won a prize! Click now.", "Spam")
    assert parse_input_first("no labels at all", p) is None
    pz = PROMPTS["zh"]
    assert parse_input_first("今天下雨了。\n输出：It is raining today.", pz) == ("今天下雨了。", "It is raining today.")
