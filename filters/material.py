"""``missing_material``: the instruction points at material it does not carry ("Summarize the
following article.", "Translate this sentence into French.", "请总结以下文章。", "这段话是什么意思？")
and the input is empty. Small teachers do this a lot: they copy a task's wording without its text.

The material counts as carried when the input is not empty, or when the instruction holds more than
the sentence that points: a colon or line break followed by text, a quoted span, another sentence
of some length (before or after the pointer). That leaves a rejection only for an instruction that is
the pointing sentence alone, which has nothing for the answer to work on. "The following question"
counts, "this question" does not ("Write an interview question. Why did you choose this
question?" points at what the task makes).

Default rule set only. Reason code: missing_material, detail the pointer ("the following article").
"""
from __future__ import annotations

import re

from selfinstruct.filters.base import Rejection
from selfinstruct.filters.quality import RuleSetFilter
from selfinstruct.record import Record
from selfinstruct.text import cjk_count, strip_quoted

_EN_NOUNS = (r"(?:article|passage|text|paragraph|sentence|story|poem|essay|e-?mail|letter|review|dialogue|dialog|"
             r"conversation|table|code|snippet|program|function|list|data|dataset|document|report|statement|"
             r"excerpt|quote|quotation|word|phrase|lyrics|tweet|post|speech|transcript|equation|expression|recipe|"
             r"json|xml|csv|information|number|string|item|news|summary|abstract|headline|description|argument|"
             r"claim|passage|song lyrics|bio|biography|resume|cv|query|sql|script)(?:s|es)?")
_EN_POINTER_RE = re.compile(
    r"\b(?:(?:the|these)\s+(?:following|given|provided|above|below|attached|aforementioned)|this|these)\s+(?:[\w-]+\s+){0,2}?" + _EN_NOUNS + r"\b"
    r"|\bthe following (?:questions?|problems?|options?|choices?|words?)\b"
    r"|\b" + _EN_NOUNS + r"\s+(?:below|above)\b",
    re.IGNORECASE,
)
_ZH_NOUNS = (r"(?:文章|段落|文本|文字|句子|内容|对话|诗歌|诗|代码|程序|表格|数据|问题|新闻|材料|信息|评论|单词|词语|"
             r"词汇|列表|短文|故事|段话|句话|邮件|信件|报告|摘要|文段|语句|字符串|数字|方程|公式|歌词|清单|选项|"
             r"名单|陈述|观点|论点|演讲|评价|函数|句)")
_ZH_POINTER_RE = re.compile(
    r"(?:以下|下面|下列|如下|上述|上面|给定|所给|提供|所提供)的?(?:这|那)?[段篇个首则句些份组条]?"
    r"[^，。！？；：:\s]{0,4}?" + _ZH_NOUNS +
    r"|这(?:段|篇|首|则|份|句)(?:话|" + _ZH_NOUNS + r")?|这(?:个|些)(?:文章|段落|文本|句子|对话|代码|表格|数据|列表|"
    r"单词|词语|故事|诗)|下表"
)
_EN_HINTS = ("follow", "this", "these", "given", "provided", "below", "above", "attached")
_ZH_HINTS = ("以下", "下面", "下列", "如下", "上述", "上面", "给定", "所给", "提供", "这", "下表")
_SENTENCE_END_RE = re.compile(r"[.!?。！？\n]")
_CARRIES_RE = re.compile(r"[:：]\s*\S|\n\s*\S")
# Beside the pointing sentence, this much more text is taken for the material itself.
MIN_OTHER_WORDS, MIN_OTHER_CHARS = 4, 6


class MissingMaterial(RuleSetFilter):
    name = "missing_material"
    stage = "quality"
    order = 150
    fields = ("instruction", "input")

    def check(self, record: Record) -> Rejection | None:
        if record.input.strip() or self.rules_for(record) != "default":
            return None
        text = record.instruction
        m = None
        if any(h in text for h in _ZH_HINTS):
            m = _ZH_POINTER_RE.search(text)
        if m is None and any(h in text.lower() for h in _EN_HINTS):
            m = _EN_POINTER_RE.search(text)
        if m is None or self._carries(text, m.start(), m.end()):
            return None
        return self.reject("missing_material", f"points at '{' '.join(m.group(0).split())}'")

    @staticmethod
    def _carries(text: str, start: int, end: int) -> bool:
        """Whether the instruction holds material beside the sentence that points."""
        if strip_quoted(text) != text or _CARRIES_RE.search(text, end):
            return True
        before = _SENTENCE_END_RE.split(text[:start])[:-1]
        after = _SENTENCE_END_RE.split(text[end:])[1:]
        other = " ".join(before + after)
        if cjk_count(other) >= MIN_OTHER_CHARS:
            return True
        return len(re.findall(r"[A-Za-z0-9]+", other)) >= MIN_OTHER_WORDS
