"""Parsing teacher text into candidates, shared by the recipes. Teacher text is messy: labels in
English or Chinese, full-width colons, markdown bold, a chat model restating the header, a small model
rambling on after the last field. Everything that cannot be parsed becomes an ``unparseable`` reject,
never a silent drop."""
from __future__ import annotations

import re

COLON = r"\s*[:：]\s*"
# "Task 4", "### Task 4:", "**Task 4**", "任务4", "任务 4：", "4." on a line of its own
TASK_HEADER = re.compile(r"^[ \t#*]*(?:Task|任务)\s*(\d+)[ \t]*[:：.]?[ \t*]*$", re.M | re.I)
NO_INPUT = {"", "<noinput>", "<no input>", "noinput", "none", "n/a", "<无输入>", "无输入", "无", "空", "<空>"}

LABELS = {
    "instruction": ("Instruction", "指令"),
    "input": ("Input", "输入"),
    "output": ("Output", "输出"),
}


def label_re(field: str) -> str:
    en, zh = LABELS[field]
    return rf"(?:\*\*)?(?:{en}|{zh})(?:\*\*)?{COLON}(?:\*\*)?"


_ANY_LABEL_LINE = re.compile(
    rf"^[ \t]*(?:{label_re('instruction')}|{label_re('input')}|{label_re('output')}|Task\b|任务\s*\d|###)",
    re.M | re.I)


# A label the prompt's format put before the task ("Task 5 Instructions:", "**Question:**", "任务3："):
# the teacher copied the scaffolding; the task is what follows it.
_LEADING_LABEL = re.compile(
    r"^[ \t#*>-]*(?:\d+\s*[.)、]\s*)?(?:\*\*)?"
    r"(?:(?:Task|Instructions?|Question|Title|Prompt|Request|Query|New task)\s*\d*\s*(?:Instructions?)?"
    r"|(?:任务|指令|问题|题目|标题|要求)\s*\d*)"
    r"(?:\*\*)?[ \t]*[:：][ \t]*(?:\*\*)?[ \t]*", re.I)


def clean_instruction(text: str) -> str:
    """A parsed instruction without the prompt labels in front of it (repeated labels too:
    "Task 5: Instruction: …"), stripped; the task's own text is left as it is."""
    text = text.strip()
    while True:
        m = _LEADING_LABEL.match(text)
        if not m or m.end() == len(text.rstrip()):      # a label with nothing after it: keep as is
            return text
        text = text[m.end():].strip()


def clean_input(text: str) -> str:
    text = text.strip()
    return "" if text.lower() in NO_INPUT else text


def split_blocks(text: str) -> list[str]:
    """Split numbered triples on their "Task N" headers (the text before the first header is block 0)."""
    parts = TASK_HEADER.split(text)
    blocks = [parts[0]] + [parts[i + 1] for i in range(1, len(parts) - 1, 2)]
    return [b for b in blocks if b.strip()]


def parse_triple(block: str) -> tuple[str, str, str] | None:
    """(instruction, input, output) from one block, or None when the labels are not there."""
    m = re.search(rf"(?s){label_re('instruction')}(.*?)(?:\n[ \t]*{label_re('input')}(.*?))?"
                  rf"\n[ \t]*{label_re('output')}(.*)", block, re.I)
    if not m:
        return None
    instruction, inp, output = m.group(1), m.group(2) or "", m.group(3)
    # a second label after the output is the model rambling on: the output ends there
    nxt = _ANY_LABEL_LINE.search(output)
    if nxt:
        output = output[: nxt.start()]
    return clean_instruction(instruction), clean_input(inp), output.strip()


NUMBERED_LINE = re.compile(r"^[ \t]*(?:Task|任务)[ \t]*(\d+)[ \t]*[:：.][ \t]*(.*)$", re.M | re.I)


def parse_numbered_tasks(text: str) -> list[str]:
    """Instructions from "Task N: text" lines; the text before the first header is the task the
    prompt's last "Task N:" opened."""
    out = []
    m0 = NUMBERED_LINE.search(text)
    head = text[: m0.start()] if m0 else text
    head = head.strip().split("\n\n")[0].strip()
    if head:
        out.append(clean_instruction(head))
    for m in NUMBERED_LINE.finditer(text):
        body = clean_instruction(m.group(2))
        if body:
            out.append(body)
    return out
