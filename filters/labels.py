"""``prompt_label``: prompt scaffolding left in a field. A teacher that copies the prompt's format
writes "Task 12 Instructions:", "Instruction:", "### Response", "指令：", "任务3：" into what should be
the task or its answer, or runs on into a second task ("\\n2. Instruction: …").

Where such a label is scaffolding and where it is content:

- a field that *starts* with an instruction/response label (``Instruction:``, ``Task 3:``,
  ``Task 12 Instructions:``, ``### Response``, ``指令：``, ``任务3：``) is scaffolding (a bare "Task:"
  or "任务：" is not: people head a task that way too); so is an instruction that
  starts with ``Input:`` / ``Output:`` (``输入：`` / ``输出：``) and an output that starts with
  ``Output:`` (``输出：``): the teacher's record format, not a task or an answer;
- further down a field, a ``###`` prompt heading or a numbered record label ("2. Instruction:") is
  a second record run on; in an output, so is a line starting with "Task 3:", "任务3：" or "指令："
  (an instruction may list its own parts that way);
- ``Input:`` / ``Output:`` lines inside a field, and an output that starts with ``Input:`` (a
  worked example), are left alone: a human spec says "Input: a list of numbers / Output: their sum".

Default rule set only. Reason code: prompt_label, detail the field and the label.
"""
from __future__ import annotations

import re

from selfinstruct.filters.base import Rejection
from selfinstruct.filters.quality import RuleSetFilter
from selfinstruct.record import Record

_COLON = r"\s*[:：]"
_NUMBER = r"\d+\s*[.)、]\s*"
# A prompt heading or a task label: only scaffolding puts these at the start of a line.
_HEADING = r"###\s*(?:Instruction|Input|Output|Response|Task|Answer)s?\b"
_TASK_LABEL = r"(?:Task\s*\d+\s*(?:Instructions?)?|任务\s*\d+)" + _COLON
_NUMBERED_LABEL = _NUMBER + r"(?:Instructions?|Task|Input|Output|指令|任务|输入|输出)\s*\d*" + _COLON
# At the start of a field, a few more: the record format the teacher was shown.
_START_RE = {
    "instruction": re.compile(r"\s*(?:" + "|".join((_HEADING, _TASK_LABEL, _NUMBERED_LABEL)) +
                              r"|(?:Instructions?|Input|Output|指令|输入|输出)" + _COLON + ")", re.I),
    "output": re.compile(r"\s*(?:" + "|".join((_HEADING, _TASK_LABEL, _NUMBERED_LABEL)) +
                         r"|(?:Instruction|Response|Output|指令|回复|输出)" + _COLON + ")", re.I),
}
# Further down: an instruction may list its own parts ("Task 1: … / 任务2：…"); an output that starts
# a new task or instruction has run on into the next record.
_LINE_RE = {
    "instruction": re.compile(r"\n\s*(" + "|".join((_HEADING, _NUMBERED_LABEL)) + ")", re.I),
    "output": re.compile(r"\n\s*(" + "|".join((_HEADING, _TASK_LABEL, _NUMBERED_LABEL, r"指令" + _COLON)) + ")", re.I),
}
_HINTS = ("#", ":", "：")


class PromptLabel(RuleSetFilter):
    name = "prompt_label"
    stage = "quality"
    order = 150
    fields = ("instruction", "output")

    def check(self, record: Record) -> Rejection | None:
        if self.rules_for(record) != "default":
            return None
        for field in ("instruction", "output"):
            text = getattr(record, field)
            if not any(h in text for h in _HINTS):     # cheap: a label has a colon or a '#'
                continue
            m = _START_RE[field].match(text) or _LINE_RE[field].search(text)
            if m:
                label = m.group(1) if m.re is _LINE_RE[field] else m.group(0)
                return self.reject("prompt_label", f"{field}: '{' '.join(label.split())[:40]}'")
        return None
