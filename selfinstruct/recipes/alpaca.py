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
from selfinstruct.recipes.base import Recipe, UnitContext, sample_tasks, stable_seed, take_answer
from selfinstruct.recipes.parsing import clean_input, clean_instruction, label_re, parse_triple, split_blocks
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request, Response

PROMPTS = {
    "en": {
        "header": ("Below are examples of diverse tasks. Each has an instruction, an optional input "
                   "(<noinput> when there is none) and a correct, helpful output. Continue the list with "
                   "{k} new tasks that differ from these in topic and type, in the same format.{condition}\n\n"),
        # a teacher that answers each task separately is shown tasks without outputs (a shorter
        # prompt: on a CPU the prompt is most of a request's cost)
        "tasks_header": ("Below are examples of diverse tasks. Each has an instruction and an optional input "
                         "(<noinput> when there is none). Continue the list with {what} from these in topic "
                         "and type, in the same format.{condition}\n\n"),
        "what_one": "one new task that differs", "what_many": "{k} new tasks that differ",
        "task": "Task {n}\n", "instruction": "Instruction: ", "input": "Input: ", "output": "Output: ",
        "noinput": "<noinput>",
        "answer_system": "",
        "answer_system_short": "Answer in one short paragraph.",
    },
    "zh": {
        "header": ("下面是一些不同类型任务的例子。每个任务有一条指令、一个可选的输入（没有输入时写<无输入>）和一个正确、"
                   "有用的输出。请按照同样的格式继续写{k}个新任务，主题和类型要与这些例子不同。{condition}\n\n"),
        "tasks_header": ("下面是一些不同类型任务的例子。每个任务有一条指令和一个可选的输入（没有输入时写<无输入>）。"
                         "请按照同样的格式继续写{what}，主题和类型要与这些例子不同。{condition}\n\n"),
        "what_one": "一个新任务", "what_many": "{k}个新任务",
        "task": "任务{n}\n", "instruction": "指令：", "input": "输入：", "output": "输出：",
        "noinput": "<无输入>",
        # a small model trained mostly on English answers a Chinese task in English unless told
        "answer_system": "你是一个乐于助人的助手。请用简体中文回答。",
        "answer_system_short": "你是一个乐于助人的助手。请用简体中文简短回答，只写一段。",
    },
}

# Completion tokens a triple may take in the first reply (a task without its output, when the
# teacher answers separately: ~30 Han characters cost SmolLM2's tokenizer 60-90 tokens); the answer
# request's own limit.
TOKENS_PER_TRIPLE = 110
TOKENS_PER_TASK = 80
ANSWER_TOKENS = 256
# A small model asked for one short paragraph, stopped at the blank line after it: its rows end
# early (a batch runs as long as its longest row), and it has less room to ramble; the limit is for
# the rows that never write a blank line (a Chinese reply of SmolLM2 seldom does)
SHORT_ANSWER_TOKENS = 160
ANSWER_TEMPERATURE = 0.3          # an answer wants the likely words, the task the varied ones

# In a block without an output label, a line that opens with one of these labels ends the
# instruction: the model answering under another name, or starting a new task. Labels that belong
# to a task ("Options:", "Example:", "例如：") are not among them.
_END_LABELS = ("Answer", "Response", "Solution", "Result", "Explanation", "Output", "Question", "Title",
               "Task", "Instruction", "答案", "回答", "解答", "输出", "回复", "问题", "标题", "任务", "指令")
_LABEL_LINE = re.compile(r"^[ \t*#]*(?:" + "|".join(_END_LABELS) + r")\b[ \t*\d]*[:：]", re.M | re.I)


# Where a sentence ends (an English full stop only before a space: "3.5", "e.g." go on).
_SENTENCE_END = re.compile(r"[。？！]|[.?!](?=\s)")


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
    block_text = block.strip()
    if truncated:
        block = _whole_part(block)
        if block is None:
            return Block(instruction=block_text[:500], reason="truncated",
                         detail="the teacher stopped on its token limit")
    m = re.search(rf"(?s){label_re('instruction')}(.*?)(?:\n[ \t]*{label_re('input')}(.*))?$", block, re.I)
    if not m:
        return Block(instruction=block.strip()[:500], reason="unparseable",
                     detail="no instruction/output labels")
    inst = clean_instruction(_first_paragraph(m.group(1)))
    if not inst:
        return Block(instruction=block.strip()[:500], reason="unparseable", detail="an empty instruction")
    return Block(instruction=inst, input=clean_input(_first_paragraph(m.group(2) or "")))


def _whole_part(block: str) -> str | None:
    """What the token limit left whole of a block without an output label (None: nothing).

    The cut is in the block's last field. An input without its end is not whole. An instruction
    without its last line, or without its unfinished last sentence, usually still is: a small model's
    task is its first line or sentence, and what it rambles on with afterwards is not the task."""
    if re.search(r"\n[ \t]*" + label_re("input"), block, re.I):
        return None
    has_task = re.compile(label_re("instruction") + r"[^\n]*\S", re.I)
    whole = block.rpartition("\n")[0]
    if has_task.search(whole):
        return whole
    ends = [m.end() for m in _SENTENCE_END.finditer(block)]
    if ends and has_task.search(block[: ends[-1]]):
        return block[: ends[-1]]
    return None


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


def answer_request(lang: str, instruction: str, input: str = "", short: bool = False) -> Request:
    """The output of a task a reply gave none for, through the teacher's chat template (a function
    of the task alone, so that a resumed unit sends the same request and the journal answers it).
    ``short``: one short paragraph, for a teacher that answers separately (a small model). The
    self-instruct recipe asks the same way."""
    prompt = instruction if not input else f"{instruction}\n\n{input}"
    p = PROMPTS[lang]
    if short:
        return Request(prompt=prompt, max_tokens=SHORT_ANSWER_TOKENS, temperature=ANSWER_TEMPERATURE,
                       top_p=0.95, stop=("\n\n",), seed=stable_seed(instruction, input), stage="answer",
                       kind="chat", system=p["answer_system_short"])
    return Request(prompt=prompt, max_tokens=ANSWER_TOKENS, temperature=ANSWER_TEMPERATURE, top_p=0.95,
                   seed=stable_seed(instruction, input), stage="answer", kind="chat", system=p["answer_system"])


class AlpacaRecipe(Recipe):
    name = "alpaca"

    # Set by ``bind`` from the teacher: ask for tasks only and answer each through the chat template
    answers_separately: bool = False

    def __init__(self, seeds: Sequence[Record], lang: str, per_request: int = 5, examples: int = 3):
        """``examples``: example triples shown per prompt (one may come from the pool)."""
        super().__init__(seeds, lang, per_request)
        if examples < 1:
            raise UsageError(f"examples must be at least 1 (got {examples})")
        self.examples = examples

    def bind(self, teacher, teacher_flags) -> None:
        # a small instruction-tuned model (the embedded one) writes a good task in a few-shot list
        # and a poor few-shot answer: it says so, and its outputs come from the answer step
        self.answers_separately = bool(getattr(teacher, "answers_separately", False))

    def first_request(self, rng: random.Random, pool: Sequence[Record]) -> Request:
        p = PROMPTS[self.lang]
        shown = sample_tasks(rng, self.tasks, pool, self.examples, from_pool=1)
        picked = self.condition(rng)
        condition = self.condition_text(picked)
        condition = (" " if condition and self.lang == "en" else "") + condition
        k, tasks_only = self.per_request, self.answers_separately
        if tasks_only:
            what = p["what_one"] if k == 1 else p["what_many"].format(k=k)
            text = p["tasks_header"].format(what=what, condition=condition)
        else:
            text = p["header"].format(k=k, condition=condition)
        for n, r in enumerate(shown, 1):
            text += (p["task"].format(n=n) + p["instruction"] + r.instruction + "\n"
                     + p["input"] + (r.input or p["noinput"]) + "\n")
            text += "\n" if tasks_only else p["output"] + r.output + "\n\n"
        nxt = len(shown) + 1
        text += p["task"].format(n=nxt) + p["instruction"].rstrip()
        stop = (p["task"].format(n=nxt + k).strip(),)
        if tasks_only:
            # the task ends where the model starts its output, or (one task asked for) at a blank
            # line: a small model rambles on after its task instead of closing the list
            stop += ("\n" + p["output"].strip().rstrip(":："),) + (("\n\n",) if k == 1 else ())
        return Request(prompt=text, max_tokens=(TOKENS_PER_TASK if tasks_only else TOKENS_PER_TRIPLE) * k,
                       temperature=0.7, top_p=0.95, stop=stop, seed=rng.randrange(2**31), stage="triples",
                       carry=picked or None)

    def answer_request(self, instruction: str, input: str = "") -> Request:
        return answer_request(self.lang, instruction, input, short=self.answers_separately)

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
        else:
            problem = take_answer(rec, answer, answer.text.strip())
            if problem is not None:
                ctx.reject(rec, key, *problem)
                return
        await ctx.offer(rec, key)
