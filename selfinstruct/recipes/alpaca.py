"""The Alpaca recipe: a few seed triples in the prompt, the teacher writes several new numbered
triples (instruction / input / output, with a no-input marker) in one request.

Each block of the reply is decided on its own:

- a whole triple is a candidate;
- a block with an instruction (and maybe an input) but no output — a small model often writes a good
  task and stops, or its reply ends on the token limit inside the output — gets its output from a
  second request, sent through the teacher's chat template (``kind="chat"``, stage ``answer``): an
  instruction-tuned model answers best so, and it costs a short prompt instead of the few-shot one.
  The record says so (``meta["answered"] = "separately"``);
- a block with no instruction is ``unparseable``; one whose instruction the token limit cut off is
  ``truncated``.

The answer request depends on the instruction and input alone, so a unit stays replayable: on resume
the journal answers it. A unit's decisions wait for its answers and are made in one turn, in block
order.
"""
from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass
from typing import Sequence

from selfinstruct.errors import UsageError
from selfinstruct.recipes.base import Recipe, UnitContext, sample_tasks, stable_seed
from selfinstruct.recipes.parsing import clean_input, clean_instruction, label_re, parse_triple, split_blocks
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request, Response

PROMPTS = {
    "en": {
        "header": ("Below are examples of diverse tasks. Each has an instruction, an optional input "
                   "(<noinput> when there is none) and a correct, helpful output. Continue the list with "
                   "{k} new tasks that differ from these in topic and type, in the same format.{condition}\n\n"),
        "task": "Task {n}\n", "instruction": "Instruction: ", "input": "Input: ", "output": "Output: ",
        "noinput": "<noinput>",
        "answer_system": "",
    },
    "zh": {
        "header": ("下面是一些不同类型任务的例子。每个任务有一条指令、一个可选的输入（没有输入时写<无输入>）和一个正确、"
                   "有用的输出。请按照同样的格式继续写{k}个新任务，主题和类型要与这些例子不同。{condition}\n\n"),
        "task": "任务{n}\n", "instruction": "指令：", "input": "输入：", "output": "输出：",
        "noinput": "<无输入>",
        # a small model trained mostly on English answers a Chinese task in English unless told
        "answer_system": "你是一个乐于助人的助手。请用简体中文回答。",
    },
}

# Completion tokens a triple may take in the first reply; the answer request's own limit.
TOKENS_PER_TRIPLE = 110
ANSWER_TOKENS = 256
ANSWER_TEMPERATURE = 0.3          # an answer wants the likely words, the task the varied ones

# In a block without an output label, a line that opens with one of these labels ends the
# instruction: the model answering under another name, or starting a new task. Labels that belong
# to a task ("Options:", "Example:", "例如：") are not among them.
_END_LABELS = ("Answer", "Response", "Solution", "Result", "Explanation", "Output", "Question", "Title",
               "Task", "Instruction", "答案", "回答", "解答", "输出", "回复", "问题", "标题", "任务", "指令")
_LABEL_LINE = re.compile(r"^[ \t*#]*(?:" + "|".join(_END_LABELS) + r")\b[ \t*\d]*[:：]", re.M | re.I)


@dataclass
class Block:
    """One block of the reply: what it holds, and what becomes of it."""
    instruction: str = ""
    input: str = ""
    output: str | None = None      # None: ask for it
    reason: str = ""               # set: rejected before the filters
    detail: str = ""


def _instruction_only(block: str, truncated: bool) -> Block:
    """A block without an output label: the instruction (and input) when they are whole."""
    if truncated:
        # the token limit cut the block's last field on its last line: an instruction without its
        # last line is usually still one (a small model's task is its first line), an input is not
        whole, _, _ = block.rpartition("\n")
        if (not re.search(label_re("instruction") + r"[^\n]*\S", whole, re.I)
                or re.search(r"\n[ \t]*" + label_re("input"), block, re.I)):
            return Block(instruction=block.strip()[:500], reason="truncated",
                         detail="the teacher stopped on its token limit")
        block = whole
    m = re.search(rf"(?s){label_re('instruction')}(.*?)(?:\n[ \t]*{label_re('input')}(.*))?$", block, re.I)
    if not m:
        return Block(instruction=block.strip()[:500], reason="unparseable",
                     detail="no instruction/output labels")
    inst = clean_instruction(_first_paragraph(m.group(1)))
    if not inst:
        return Block(instruction=block.strip()[:500], reason="unparseable", detail="an empty instruction")
    return Block(instruction=inst, input=clean_input(_first_paragraph(m.group(2) or "")))


def _first_paragraph(text: str) -> str:
    text = text.strip().split("\n\n")[0]
    nxt = _LABEL_LINE.search(text, 1)
    return (text[: nxt.start()] if nxt else text).strip()


def parse_block(block: str, truncated: bool) -> Block:
    """Decide what a block is; ``truncated``: the reply ended on the token limit inside it."""
    triple = parse_triple(block)
    if triple is not None:
        inst, inp, out = triple
        inst = clean_instruction(inst)
        if not inst:
            return Block(instruction=block.strip()[:500], reason="unparseable", detail="an empty instruction")
        # a cut or empty output is asked for again: the instruction and input before it are whole
        return Block(instruction=inst, input=inp, output=None if truncated or not out else out)
    return _instruction_only(block, truncated)


def answer_request(lang: str, instruction: str, input: str = "") -> Request:
    """The output of a task a reply gave none for, through the teacher's chat template (a function
    of the task alone, so that a resumed unit sends the same request and the journal answers it).
    The self-instruct recipe asks the same way."""
    prompt = instruction if not input else f"{instruction}\n\n{input}"
    return Request(prompt=prompt, max_tokens=ANSWER_TOKENS, temperature=ANSWER_TEMPERATURE, top_p=0.95,
                   seed=stable_seed(instruction, input), stage="answer", kind="chat",
                   system=PROMPTS[lang]["answer_system"])


class AlpacaRecipe(Recipe):
    name = "alpaca"

    def __init__(self, seeds: Sequence[Record], lang: str, per_request: int = 5, examples: int = 3):
        """``examples``: example triples shown per prompt (one may come from the pool)."""
        super().__init__(seeds, lang, per_request)
        if examples < 1:
            raise UsageError(f"examples must be at least 1 (got {examples})")
        self.examples = examples

    def first_request(self, rng: random.Random, pool: Sequence[Record]) -> Request:
        p = PROMPTS[self.lang]
        shown = sample_tasks(rng, self.tasks, pool, self.examples, from_pool=1)
        picked = self.condition(rng)
        condition = self.condition_text(picked)
        text = p["header"].format(k=self.per_request,
                                  condition=(" " if condition and self.lang == "en" else "") + condition)
        for n, r in enumerate(shown, 1):
            text += (p["task"].format(n=n) + p["instruction"] + r.instruction + "\n"
                     + p["input"] + (r.input or p["noinput"]) + "\n" + p["output"] + r.output + "\n\n")
        nxt = len(shown) + 1
        text += p["task"].format(n=nxt) + p["instruction"].rstrip()
        last = nxt + self.per_request
        stop = (p["task"].format(n=last).strip(),)
        return Request(prompt=text, max_tokens=TOKENS_PER_TRIPLE * self.per_request, temperature=0.7,
                       top_p=0.95, stop=stop, seed=rng.randrange(2**31), stage="triples",
                       carry=picked or None)

    def answer_request(self, instruction: str, input: str = "") -> Request:
        return answer_request(self.lang, instruction, input)

    def parse_reply(self, resp: Response) -> list[Block]:
        # the prompt ended inside "Instruction:", so the reply starts with the instruction text
        blocks = split_blocks(PROMPTS[self.lang]["instruction"] + resp.text.lstrip())
        cut = resp.finish_reason == "length"
        return [parse_block(b, cut and i == len(blocks) - 1) for i, b in enumerate(blocks)]

    async def run(self, ctx: UnitContext, uid: str, first: Request) -> None:
        resp = await ctx.ask(first)
        blocks = [] if resp.error else self.parse_reply(resp)
        answers = await asyncio.gather(*(self._answer(ctx, b) for b in blocks))
        async with ctx.turn("accept"):
            if resp.error:
                ctx.reject(self.stamp_carry(Record(instruction=""), first.carry), f"{uid}:0",
                           "teacher_failed", resp.error)
                return
            for i, (block, answer) in enumerate(zip(blocks, answers)):
                await self._decide(ctx, f"{uid}:{i}", first, block, answer)

    async def _answer(self, ctx: UnitContext, block: Block) -> Response | None:
        if block.reason or block.output is not None:
            return None
        return await ctx.ask(self.answer_request(block.instruction, block.input))

    async def _decide(self, ctx: UnitContext, key: str, first: Request, block: Block,
                      answer: Response | None) -> None:
        rec = self.stamp_carry(Record(instruction=block.instruction, input=block.input), first.carry)
        if block.reason:
            if block.reason == "truncated":
                rec.meta["truncated"] = True
            ctx.reject(rec, key, block.reason, block.detail)
            return
        if answer is None:
            rec.output = block.output or ""
        elif answer.error:
            ctx.reject(rec, key, "teacher_failed", answer.error)
            return
        else:
            rec.output = answer.text.strip()
            rec.meta["answered"] = "separately"          # the output came from the answer request
            if answer.finish_reason == "length":
                rec.meta["truncated"] = True
            if not rec.output:
                ctx.reject(rec, key, "no_answer", "the answer request came back empty")
                return
        await ctx.offer(rec, key)
