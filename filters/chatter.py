"""``chatter``: a field that is conversation instead of content.

- an instruction that announces a task ("Certainly! Here's a new task: …", "好的，以下是一个新任务"),
  or is the assistant's opening line ("How may I assist you?"); an assent alone ("OK, and what
  about…", "好的，那…") opens many human follow-up questions and passes;
- an output that is only an announcement of content that is not there ("Of course! Below are some
  ideas:", "好的，以下是几个建议：" and nothing after), only a closing pleasantry ("Hope that
  helps!", "希望对你有帮助"), or only the assistant's greeting ("Hi! How may I assist you today?")
  where the task does not ask for a greeting.

All of these are anchored on the whole field or its opening, so an answer that *contains* "hope that
helps" after its content, or a dialogue the task asks for, passes. Default rule set only.
Reason code: chatter, detail the field and its opening.
"""
from __future__ import annotations

import re

from selfinstruct.filters.base import Rejection
from selfinstruct.filters.quality import RuleSetFilter
from selfinstruct.record import Record

_ASSENT = (r"(?:sure(?: thing)?|certainly|of course|absolutely|okay|ok|alright|no problem|gladly|"
           r"(?:i['’]d|i would|i['’]m|i am) (?:be )?(?:happy|glad) to(?: help)?)")
_ASSENT_ZH = r"(?:好的|当然(?:可以)?|没问题|可以的|乐意效劳)"
_ANNOUNCE = r"(?:here(?:['’]s| is| are)|below (?:is|are)|以下是|下面是|如下)"
# An instruction that announces a task instead of being one; an assent alone opens many human
# follow-up questions ("OK, and what about…", "好的，那…") and is not enough.
_GREETING = r"(?:hello|hi|hey|greetings|你好|您好)"
_INSTRUCTION_RE = re.compile(
    r"\s*(?:" + _GREETING + r"\s*[!,.！，。]?\s*)?"
    r"(?:(?:" + _ASSENT + r"|" + _ASSENT_ZH + r")\s*[!,.！，。]?\s*)?"
    r"(?:here(?:['’]s| is| are) (?:(?:a|an|another|the|some|your|my)\s+)?(?:new |next |different |sample |possible )?"
    r"(?:task|instruction|question|prompt|example)s?\b"
    r"|以下是(?:一个|一些|几个)?新?的?(?:任务|指令|问题)|how (?:can|may) i (?:help|assist) you"
    r"|有什么(?:我)?可以帮(?:你|您|助你|助您)的)",
    re.IGNORECASE,
)
_OUTPUT_ANNOUNCE_RE = re.compile(
    r"\s*(?:(?:" + _ASSENT + r"|" + _ASSENT_ZH + r")\s*[!,.！，。]?\s*)?" + _ANNOUNCE + r"[^\n]{0,80}?[:：]\s*",
    re.IGNORECASE,
)
_OUTPUT_PLEASANTRY_RE = re.compile(
    r"\s*(?:(?:i )?hope (?:this|that|it|these) helps?(?: you)?|let me know if you (?:have|need) (?:any )?"
    r"(?:other|more|further|additional)? ?(?:questions?|help|assistance)|希望(?:这些|这|以上(?:内容)?)?(?:能)?(?:对你|对您)"
    r"有(?:所)?帮助|如果(?:你|您)还有(?:其他|任何)(?:问题|疑问)[^\n]{0,20})[!.。！]*\s*",
    re.IGNORECASE,
)
_OUTPUT_GREETING_RE = re.compile(
    r"\s*(?:hello|hi|hey|你好|您好)[!,.！，。]?\s*(?:how (?:can|may) i (?:help|assist) you(?: today)?\??"
    r"|有什么(?:我)?可以帮(?:你|您|助你|助您)的(?:吗)?[？?]?)\s*",
    re.IGNORECASE,
)
_ASKS_FOR_GREETING_RE = re.compile(r"(?i:\bgreet\w*|\bhello\b|\bwelcome\b|customer|chatbot|assistant|opening line)"
                                   r"|打招呼|问候|欢迎|客服|开场白|机器人|助手")
_HINTS = ("sure", "certain", "course", "absolute", "ok", "alright", "problem", "glad", "happy", "here",
          "below", "hope", "let me", "hello", "hi", "hey", "how can", "how may", "好的", "当然", "没问题", "可以的",
          "乐意", "以下是", "下面是", "如下", "希望", "如果", "你好", "您好", "有什么", "greetings")


class Chatter(RuleSetFilter):
    name = "chatter"
    stage = "quality"
    order = 150
    fields = ("instruction", "output")

    def check(self, record: Record) -> Rejection | None:
        if self.rules_for(record) != "default":
            return None
        inst = record.instruction
        if _hinted(inst[:40]) and _INSTRUCTION_RE.match(inst):
            return self.reject("chatter", f"instruction: '{_head(inst)}'")
        out = record.output
        if len(out) > 200 or not out.strip() or not _hinted(out):
            return None
        if _OUTPUT_ANNOUNCE_RE.fullmatch(out) or _OUTPUT_PLEASANTRY_RE.fullmatch(out):
            return self.reject("chatter", f"output: '{_head(out)}'")
        if _OUTPUT_GREETING_RE.fullmatch(out) and not _ASKS_FOR_GREETING_RE.search(inst):
            return self.reject("chatter", f"output: '{_head(out)}'")
        return None


def _hinted(text: str) -> bool:
    lowered = text.lower()
    return any(h in lowered for h in _HINTS)


def _head(text: str) -> str:
    return " ".join(text.split())[:40]
