"""Conversations (``--turns K``): every recipe's candidate, however its first exchange was made,
grows into a conversation of K exchanges before it is decided.

A turn after the first is two requests:

1. the teacher plays the user (stage ``user_turn``): a chat request whose system turn tells it to
   write the user's next message only, and whose prompt holds the conversation so far as a
   transcript. A transcript in one user turn is what a small model follows best: given the real
   turns as history it answers the last one instead of writing the user's next. Its reply is
   cleaned (``clean_user_turn``: speaker labels, wrapping quotes, "Sure, here is the next
   question:"), and cut where the model goes on to write the assistant's reply; one cut at its
   token limit keeps its finished sentences (``whole_sentences``), and is ``truncated`` without any;
2. the teacher answers it (stage ``turn_answer``): a chat request with the conversation so far as
   ``history`` and the new user message as ``prompt``, with the recipe's usual answer budget.

Both requests are functions of the conversation so far (their seeds too), so a resumed run sends
the same ones and the journal answers them, and a rerun with the same cache pays for nothing.
After each new exchange the filter chain's per-turn rules judge it (``FilterChain.check_turns``),
so that a conversation that went wrong at turn 2 costs no turn 3.

A conversation that cannot go on is rejected with a reason of its own, the turn in its detail:
``turn_failed`` (the teacher failed a request), ``turn_unparseable`` (nothing of the simulated
user's reply is a message), ``turn_repeated`` (the user asked an earlier turn's question again),
``no_answer`` (an empty answer, or a short one that stopped before its content).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Awaitable, Callable

from selfinstruct.filters.base import FilterChain
from selfinstruct.recipes import alpaca
from selfinstruct.recipes.base import stable_seed
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request, Response
from selfinstruct.text import normalise

USER_SIMULATOR = {
    "en": {
        "system": ("You play the user in a conversation with an AI assistant. Write only the user's next "
                   "message, in the user's own words: one short follow-up to the conversation so far (a "
                   "question about the answer, a request for more detail or a change, or a related task), "
                   "one or two sentences. Do not answer it, and do not write the assistant's reply."),
        "intro": "The conversation so far:",
        "user": "User", "assistant": "Assistant",
        "ask": "Write the user's next message.",
    },
    "zh": {
        "system": ("你在一段与AI助手的对话中扮演用户。只写出用户的下一条消息，用用户自己的口吻：简短地接着目前的对话，"
                   "可以是对回答的追问、要求更多细节或修改，或者一个相关的新任务，一两句话即可。不要回答它，"
                   "也不要写助手的回复。请用简体中文。"),
        "intro": "目前的对话：",
        "user": "用户", "assistant": "助手",
        "ask": "请写出用户的下一条消息。",
    },
}

# Completion tokens for the user's next message: a message, not an essay (the rest is rambling).
USER_TURN_TOKENS = 128
USER_TURN_TEMPERATURE = 0.8       # the follow-ups should vary; the answers want the likely words
# A turn longer than this is shortened in the user simulator's transcript (a document the first
# turn carries): the simulator needs the gist, and a small model's context is short.
TRANSCRIPT_TURN_CHARS = 1500

# -- cleaning the simulated user's reply ----------------------------------------------------------

_LEAD = r"^[ \t>#*_\-]*"          # markdown decoration before a label
# The assistant's turn: the model went on past the user's message (or wrote the answer instead).
_ASSISTANT_LABEL = re.compile(_LEAD + r"(?:assistant|ai(?: assistant)?|chatbot|bot|助手|AI助手|回答|回复)"
                              r"[ \t*_]*[:：]", re.I | re.M)
# A label before the user's message ("User:", "Follow-up question:", "用户：", "追问：").
_USER_LABEL = re.compile(
    _LEAD + r"(?:(?:the )?user(?:'s)?(?: next)?(?: message| question| turn| reply)?|next (?:user )?(?:message|question)|"
    r"follow[- ]?up(?: question| message)?|question|"
    r"用户(?:的)?(?:下一条)?(?:消息|问题|追问)?|下一条消息|追问|问题)[ \t*_]*[:：][ \t*_]*", re.I)
# Chatter before the message: "Sure!", "Sure, here is the next question:", "好的，以下是用户的下一条消息：".
_EN_CHATTER = re.compile(
    r"^(?:(?:sure|certainly|of course|okay|ok|alright|absolutely)\b[ \t]*[!,.]*[ \t]*)?"
    r"(?:here(?:'s| is| are)|below is|this is)[ \t]+(?:(?:the|a|my|your|one|an)[ \t]+)?(?:possible[ \t]+|natural[ \t]+)?"
    r"(?:next[ \t]+)?(?:user(?:'s)?[ \t]+)?(?:follow[- ]?up|message|question|reply|turn)\b[^:\n]{0,60}[:：][ \t]*\n*",
    re.I)
_ZH_CHATTER = re.compile(r"^(?:(?:好的|当然|没问题|可以)[ \t]*[，,！!。.]*[ \t]*)?"
                         r"(?:以下是|下面是|这是)[^：:\n]{0,30}(?:消息|问题|追问|回复)[^：:\n]{0,10}[：:][ \t]*\n*")
_ACK_LINE = re.compile(r"^(?:sure|certainly|of course|okay|ok|alright|absolutely|好的|当然|没问题)[ \t]*[!.,，！。]*[ \t]*(?:\n|$)",
                       re.I)
_QUOTES = (('"', '"'), ("“", "”"), ("'", "'"), ("「", "」"), ("『", "』"), ("‘", "’"))
# The end of a finished sentence (closing quotes and brackets may follow; an English full stop only
# before a space or the end: "3.5", "e.g." go on).
_SENTENCE_END = re.compile(r"(?:[。？！…]|[.?!](?=[\"'”’)）]*(?:\s|$)))[\"'”’)）]*")


def whole_sentences(text: str) -> str:
    """Of a message cut at its token limit: the text up to its last finished sentence ("" when
    none is finished). The user's message is a question or two; what a model rambles on with
    after them is not part of it."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


def clean_user_turn(text: str) -> str:
    """The user's message in the simulator's reply ("" when there is none)."""
    text = text.strip()
    m = _ASSISTANT_LABEL.search(text)
    if m is not None:
        text = text[: m.start()].strip()
    for _ in range(4):          # "Sure! Here is the next question:\nUser: …": each prefix in turn
        before = text
        for pattern in (_ACK_LINE, _EN_CHATTER, _ZH_CHATTER, _USER_LABEL):
            text = pattern.sub("", text, count=1).strip()
        if text == before:
            break
    m = re.search(r"\n" + _USER_LABEL.pattern[1:], text, re.I)     # it wrote more turns of its own
    if m is not None:
        text = text[: m.start()].strip()
    for opening, closing in _QUOTES:
        inner = text[len(opening): -len(closing)]
        if len(text) > 2 and text.startswith(opening) and text.endswith(closing) and opening not in inner \
                and closing not in inner:
            text = inner.strip()
            break
    return text


# -- the requests ---------------------------------------------------------------------------------


def transcript(messages: list[dict[str, str]], lang: str) -> str:
    """The conversation as the user simulator reads it."""
    p = USER_SIMULATOR[lang]
    sep = "：" if lang == "zh" else ": "
    lines = []
    for m in messages:
        if m["role"] not in ("user", "assistant"):
            continue
        content = m["content"].strip()
        if len(content) > TRANSCRIPT_TURN_CHARS:
            content = content[:TRANSCRIPT_TURN_CHARS].rstrip() + " …"
        lines.append(p[m["role"]] + sep + content)
    return "\n\n".join(lines)


@dataclass(frozen=True)
class Stopped:
    """Why a conversation was not finished: a reason, a detail naming the turn, and the stage to
    count it under ("generate", or the stage of the filter that rejected the turn)."""
    reason: str
    detail: str
    stage: str = "generate"


Ask = Callable[[Request], Awaitable[Response]]


class Continuation:
    """How the conversations of a run grow: the language, the number of exchanges, the answer
    budget."""

    def __init__(self, lang: str, turns: int, answer_tokens: int, short: bool):
        """``short``: a small teacher that answers best briefly (one paragraph, stopped at its end:
        the recipes' answer step for such a teacher)."""
        self.lang, self.turns, self.answer_tokens, self.short = lang, turns, answer_tokens, short

    @classmethod
    def for_recipe(cls, recipe, teacher, lang: str, turns: int) -> "Continuation":
        """The recipe's usual answer budget: its ``answer_tokens`` option when it has one and it is
        set, else its module's ``ANSWER_TOKENS`` (the alpaca recipe's for a recipe without);
        a teacher that answers separately gets the alpaca recipe's short answers unless the
        recipe's option says otherwise."""
        explicit = getattr(recipe, "answer_tokens", None)
        short = explicit is None and bool(getattr(teacher, "answers_separately", False))
        if short:
            return cls(lang, turns, alpaca.SHORT_ANSWER_TOKENS, True)
        module = sys.modules.get(type(recipe).__module__)
        budget = explicit or getattr(module, "ANSWER_TOKENS", alpaca.ANSWER_TOKENS)
        return cls(lang, turns, int(budget), False)

    def user_turn_request(self, messages: list[dict[str, str]]) -> Request:
        p = USER_SIMULATOR[self.lang]
        text = f"{p['intro']}\n\n{transcript(messages, self.lang)}\n\n{p['ask']}"
        sep = "：" if self.lang == "zh" else ":"
        return Request(prompt=text, max_tokens=USER_TURN_TOKENS, temperature=USER_TURN_TEMPERATURE, top_p=0.95,
                       stop=(f"\n{p['assistant']}{sep}",), seed=stable_seed("user_turn", text),
                       stage="user_turn", kind="chat", system=p["system"])

    def answer_request(self, messages: list[dict[str, str]], user_message: str) -> Request:
        p = alpaca.PROMPTS[self.lang]
        history = tuple((m["role"], m["content"]) for m in messages if m["role"] in ("user", "assistant"))
        seed = stable_seed("turn_answer", *(content for _, content in history), user_message)
        if self.short:
            return Request(prompt=user_message, max_tokens=self.answer_tokens, temperature=alpaca.ANSWER_TEMPERATURE,
                           top_p=0.95, stop=("\n\n",), seed=seed, stage="turn_answer", kind="chat",
                           system=p["answer_system_short"], history=history)
        return Request(prompt=user_message, max_tokens=self.answer_tokens, temperature=alpaca.ANSWER_TEMPERATURE,
                       top_p=0.95, seed=seed, stage="turn_answer", kind="chat", system=p["answer_system"],
                       history=history)

    async def grow(self, record: Record, ask: Ask, chain: FilterChain) -> Stopped | None:
        """Make ``record`` a conversation of ``turns`` exchanges (``record.messages``), each new one
        judged by ``chain``'s per-turn rules; None when it has them all, else why it stopped (the
        turns made so far stay in the record, for its reject row)."""
        messages = [dict(m) for m in record.conversation()]
        record.messages = messages
        for k in range(2, self.turns + 1):
            asked = await ask(self.user_turn_request(messages))
            if asked.error:
                return Stopped("turn_failed", f"turn {k}: the user's message: {asked.error}")
            user_message = clean_user_turn(asked.text)
            cut = asked.finish_reason == "length"
            if cut and whole_sentences(user_message):
                user_message, cut = whole_sentences(user_message), False
            if not user_message:
                return Stopped("turn_unparseable", f"turn {k}: no user message in the reply: {asked.text[:200]!r}")
            if _asked_before(user_message, messages):
                return Stopped("turn_repeated", f"turn {k}: the user asked an earlier turn's message again")
            answer = await ask(self.answer_request(messages, user_message))
            if answer.error:
                return Stopped("turn_failed", f"turn {k}: the answer: {answer.error}")
            reply = answer.text.strip()
            messages += [{"role": "user", "content": user_message}, {"role": "assistant", "content": reply}]
            if cut or answer.finish_reason == "length":
                record.meta.setdefault("truncated_turns", []).append(k)
            if not reply:
                return Stopped("no_answer", f"turn {k}: the answer request came back empty")
            if self.short and reply.endswith((":", "：")):
                # a short answer stops at its first blank line: one that announces its content
                # ("here is a revised version:") stopped before the content came
                return Stopped("no_answer", f"turn {k}: the answer stopped before its content: {reply[-80:]!r}")
            outcome = chain.judge_turns(record, first=k, last=k)
            if outcome is not None:
                stage, verdict = outcome
                return Stopped(verdict.reason, verdict.detail, stage)
        return None


def _asked_before(message: str, messages: list[dict[str, str]]) -> bool:
    key = normalise(message)
    return any(m["role"] == "user" and normalise(m["content"]) == key for m in messages)
