"""The Magpie recipe (Xu et al. 2024): seedless data from an aligned chat model's own template.

An aligned model has learnt what users write after its user-turn header. Shown only the start of a
conversation (the chat template rendered up to where the user's text begins), it writes a user's
request and closes the turn with its end marker: that text is the instruction. The same model then
answers it as an ordinary chat request. No seed task is shown and the pool is not sampled, so
units never run out; the seeds only count for novelty, like any earlier task.

- The first request of a unit is a *raw* completion (``Request.kind == "raw"``): the embedded model
  reads the prefix with its special tokens; an OpenAI-compatible server gets it on
  ``/v1/completions`` (``--api chat`` is refused: a chat endpoint wraps the text in a user turn of
  its own, and the model answers the markup instead of continuing it).
- The template is ``--chat-template`` (a family or a Jinja file, see ``selfinstruct.chat_templates``),
  else the embedded model's own, else the family a server's ``--model`` name suggests.
- ``--lang zh`` puts a system turn in Chinese before the user's turn, so that the user the model
  imagines writes Chinese; a unit's topic and persona, when configured, go in that system turn
  too. The answer is asked with the same system turn: it is one conversation.
- The instruction is the text up to the template's end marker, without copied labels
  (``parsing.clean_instruction``). A small model often asks its question, then rambles on in the
  same turn until its token limit: such a turn keeps its whole paragraphs up to the last one that
  ends like a finished sentence (``meta["cut_at_paragraph"]``), and is ``truncated`` when none
  does. A turn closed at once is ``empty_instruction``; the filters judge the rest.
  Instructions go through the instruction-only filters before their answer is paid for (as in
  Self-Instruct), then the answer through the others. An answer cut at its token limit is
  ``truncated`` too.
- The answer is a chat request (``kind="chat"``): the embedded model applies its template, a server
  its chat endpoint. With ``--api completions`` the recipe renders the conversation itself and asks
  for a raw completion, so that the answer still comes through the template.
"""
from __future__ import annotations

import random
import re
from typing import Any, Sequence

from selfinstruct import chat_templates as ct
from selfinstruct.errors import UsageError
from selfinstruct.recipes.base import Recipe, UnitContext, stable_seed
from selfinstruct.recipes.parsing import clean_instruction
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request, Response, Teacher

SYSTEM = {
    # English without a topic or persona: no system turn of ours; the template's own default (if
    # any) stays, as in the paper
    "en": {"base": "You are a helpful assistant.",
           "topic": "The user asks about {topic}.",
           "persona": "The user is {persona}."},
    "zh": {"base": "你是一个乐于助人的中文助手。用户总是用简体中文提问，你也用简体中文回答。",
           "topic": "用户的问题与{topic}有关。",
           "persona": "用户是{persona}。"},
}

# A paragraph break, and the end of a finished sentence (closing quotes and brackets may follow)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_FINISHED = re.compile(r"[.?!。？！…][\"'”’)）]*$")


def complete_paragraphs(text: str) -> str:
    """Of a turn cut by its token limit: the longest run of whole paragraphs (the text before a
    blank line) that ends like a finished sentence; "" when there is none."""
    for brk in reversed(list(_BLANK_LINE.finditer(text))):
        head = text[: brk.start()].strip()
        if _FINISHED.search(head):
            return head
    return ""


class MagpieRecipe(Recipe):
    name = "magpie"
    two_phase = True     # the instruction is checked (novelty, length…) before its answer is paid for

    def __init__(self, seeds: Sequence[Record], lang: str, chat_template: str | None = None,
                 instruction_tokens: int = 128, answer_tokens: int = 512, temperature: float = 1.0,
                 top_p: float = 1.0):
        """``chat_template``: a family name (chatml, llama3) or a Jinja file (default: the embedded
        model's own template, or the family a server's model name suggests);
        ``instruction_tokens`` / ``answer_tokens``: token limits of the two requests;
        ``temperature`` / ``top_p``: sampling of the instruction (the paper's 1.0 / 1.0; the answer
        is greedy, as in the paper)."""
        super().__init__(seeds, lang, per_request=1)
        for option, value in (("instruction_tokens", instruction_tokens), ("answer_tokens", answer_tokens)):
            if value < 1:
                raise UsageError(f"{option} must be at least 1 (got {value})")
        if not temperature > 0 or not 0 < top_p <= 1:
            raise UsageError(f"magpie samples its instructions: need temperature > 0 and 0 < top_p <= 1 "
                             f"(got temperature={temperature}, top_p={top_p})")
        self.instruction_tokens, self.answer_tokens = instruction_tokens, answer_tokens
        self.temperature, self.top_p = temperature, top_p
        # a --chat-template that is wrong is found now, before --out is touched
        self._template: ct.Renderer | None = ct.resolve(chat_template) if chat_template else None
        self._teacher: Teacher | None = None
        self._answer_raw = False
        self._markers: tuple[str, ...] | None = None

    # -- the teacher and its template ----------------------------------------------------------

    def bind(self, teacher: Teacher, teacher_flags: dict[str, Any]) -> None:
        if teacher_flags.get("api") == "chat":
            raise UsageError("--recipe magpie needs raw completions (/v1/completions): use --api completions "
                             "or leave --api out")
        self._teacher = teacher
        # a server that only completes text gets the conversation rendered by us
        self._answer_raw = getattr(teacher, "api", None) == "completions"
        if self._template is None and hasattr(teacher, "tokenizer"):
            return             # the embedded model's own template is read once it has loaded
        if self._template is None:
            model = getattr(teacher, "model", None)
            family = ct.family_for_model(model) if isinstance(model, str) else None
            if family is None:
                what = f"--model {model}" if isinstance(model, str) else f"--teacher {teacher.name}"
                raise UsageError(f"--recipe magpie cannot tell the chat template of {what}: pass --chat-template "
                                 f"({', '.join(ct.FAMILIES)} or a Jinja file)")
            self._template = ct.FAMILIES[family]
        self._check_template()

    def _check_template(self) -> None:
        """Render the template as the run will, now, so that a template that cannot serve is one
        error line before --out is touched: it must mark the end of the user's turn, and have a
        system turn when the run uses one (--lang zh, topics, personas)."""
        _ = self.markers
        if self.lang != "en" or self.conditions:
            ct.query_prefix(self.template, SYSTEM[self.lang]["base"])

    @property
    def template(self) -> ct.Renderer:
        if self._template is None:
            tokenizer = getattr(self._teacher, "tokenizer", None)
            if tokenizer is None:
                raise UsageError("--recipe magpie: no chat template (pass --chat-template)")
            self._template = ct.from_tokenizer(tokenizer, f"the {self._teacher.name} teacher's template")
        return self._template

    @property
    def markers(self) -> tuple[str, ...]:
        if self._markers is None:
            self._markers = ct.end_markers(self.template)
        return self._markers

    # -- requests ----------------------------------------------------------------------------------

    def system_text(self, picked: dict[str, str] | None) -> str:
        """The system turn for a unit's topic and persona ("" in English with neither)."""
        words = SYSTEM[self.lang]
        picked = picked or {}
        if self.lang == "en" and not picked:
            return ""
        sentences = [words["base"]] + [words[k].format(**{k: picked[k]}) for k in ("topic", "persona") if k in picked]
        return ("" if self.lang == "zh" else " ").join(sentences)

    def first_request(self, rng: random.Random, pool: Sequence[Record]) -> Request:
        picked = self.condition(rng)
        prefix = ct.query_prefix(self.template, self.system_text(picked))
        return Request(prompt=prefix, kind="raw", max_tokens=self.instruction_tokens,
                       temperature=self.temperature, top_p=self.top_p, stop=self.markers,
                       seed=rng.randrange(2**31), stage="instructions", carry=picked)

    def answer_request(self, instruction: str, system: str) -> Request:
        """The same model's answer, greedy (depends only on the instruction: replayable)."""
        if self._answer_raw:
            return Request(prompt=ct.conversation(self.template, system, instruction), kind="raw",
                           max_tokens=self.answer_tokens, temperature=0.0, stop=self.markers,
                           seed=stable_seed(instruction), stage="answer")
        return Request(prompt=instruction, kind="chat", system=system, max_tokens=self.answer_tokens,
                       temperature=0.0, seed=stable_seed(instruction), stage="answer")

    # -- a unit ----------------------------------------------------------------------------------

    async def run(self, ctx: UnitContext, uid: str, first: Request) -> None:
        resp = await ctx.ask(first)
        async with ctx.turn("pool"):
            task = await self._pool_instruction(ctx, uid, resp, first)
        if task is None:
            return
        answer = await ctx.ask(self.answer_request(task.instruction, self.system_text(first.carry)))
        async with ctx.turn("accept"):
            await self._decide(ctx, f"{uid}:0:0", task, answer)

    async def _pool_instruction(self, ctx: UnitContext, uid: str, resp: Response,
                                first: Request) -> Record | None:
        """The instruction, once it joined the pool (None when it was rejected)."""
        key = f"{uid}:0"
        if resp.error:
            ctx.reject(self.stamp_carry(Record(instruction=""), first.carry), key, "teacher_failed", resp.error)
            return None
        text, closed = ct.cut_at_marker(resp.text, self.markers)
        rec = self.stamp_carry(Record(instruction=""), first.carry)
        if not closed and resp.finish_reason == "length":
            whole = complete_paragraphs(text)
            if not whole:
                rec.instruction = text.strip()[:500]
                rec.meta["truncated"] = True
                ctx.reject(rec, key, "truncated",
                           f"the user's turn did not end within {first.max_tokens} tokens")
                return None
            text = whole
            rec.meta["cut_at_paragraph"] = True
        rec.instruction = instruction = clean_instruction(text)
        if not instruction:
            ctx.reject(rec, key, "empty_instruction", "the model closed the user's turn without writing in it")
            return None
        return rec if await ctx.offer_instruction(rec, key) else None

    async def _decide(self, ctx: UnitContext, key: str, task: Record, answer: Response) -> None:
        rec = Record(instruction=task.instruction, meta=dict(task.meta))
        rec.most_similar, rec.rouge = task.most_similar, task.rouge
        if answer.error:
            ctx.reject(rec, key, "teacher_failed", answer.error)
            return
        text, closed = ct.cut_at_marker(answer.text, self.markers)
        rec.output = text.strip()
        if answer.finish_reason == "length" and not closed:
            rec.meta["truncated"] = True
            ctx.reject(rec, key, "truncated", "the answer stopped at its token limit")
            return
        await ctx.offer(rec, key)
