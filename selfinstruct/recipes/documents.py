"""The ``documents`` recipe: tasks grounded in the user's own documents (``--documents PATH…``).

The documents are read and cut into overlapping chunks once, when the recipe is made (see
``selfinstruct.documents``), so a missing, binary or malformed file is an error before ``--out`` is
touched. Unit ``n`` shows chunk ``n`` (with ``passes`` > 1, the chunks again in the same order with
new sampling seeds); after the last one ``request_for_unit`` returns None and the run ends
"exhausted: all K chunks of D documents were used" if ``--num`` was not reached.

**One unit.** The first request (a chat request: an instruction-tuned teacher answers best through
its chat template) shows the chunk and asks for ``per_request`` tasks of different kinds
(extraction, summary, question answering, rewriting, reasoning over the passage), each an
instruction and its output, in the labelled format the other recipes use. Every ``Instruction:``
label (or ``Task N: text`` line) starts a task. A task whose output is missing, or was cut off by
the token limit after a complete instruction, gets its output from a second chat request that shows
the chunk and the instruction and asks for the answer alone, instead of being thrown away; that
request depends only on the chunk and the instruction, so the journal replays it on resume. A
reply with no task in it, or a task without an instruction, is an ``unparseable`` reject; an
instruction cut off by the token limit is ``truncated``; an answer request that fails or comes
back empty is ``teacher_failed`` / ``no_answer``.

**The record.** ``instruction`` is the task ("Summarise the passage in two sentences."), ``input``
is the whole chunk, ``output`` the answer. The chunk is the input, rather than an excerpt the
teacher quotes, so that every example is self-contained and its answer checkable against exactly
what the teacher saw (a quoted excerpt may be misquoted, and a question about a detail needs the
text around it). ``meta["chunk"]`` is the citation ``file:char-offset`` (``file:line:offset`` for a
JSONL row): exact dedup on instruction + input then treats "summarise the passage" on two chunks as
two tasks, and ROUGE-L novelty compares a task with the tasks of its own chunk only.
"""
from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass
from typing import Sequence

from selfinstruct.documents import Chunk, load_chunks, split_paths
from selfinstruct.errors import UsageError
from selfinstruct.recipes.base import Recipe, UnitContext, stable_seed, take_answer
from selfinstruct.recipes.parsing import NUMBERED_LINE, clean_input, clean_instruction, label_re
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request, Response

PROMPTS = {
    "en": {
        "tasks": ("Here is a passage from a document:\n\n\"\"\"\n{chunk}\n\"\"\"\n\n"
                  "Write {what} that can be done with this passage alone. {kinds} {condition}"
                  "Each instruction refers to \"the passage\" instead of copying it, and each output is "
                  "correct and based only on the passage.\n\nUse exactly this format:\n\n{format}"),
        "what_one": "one task", "what_many": "{k} different tasks",
        "kinds_one": "Choose one kind: extract facts, summarise, answer a question about it, rewrite "
                     "part of it, or reason about what it says.",
        "kinds_many": "Make each a different kind: extract facts, summarise, answer a question about it, "
                      "rewrite part of it, reason about what it says.",
        "format_task": "Task {n}\nInstruction: <the instruction>\nOutput: <the output>\n",
        "task_header": "Task {n}",
        "answer": ("Passage:\n\"\"\"\n{chunk}\n\"\"\"\n\n{instruction}\n\n"
                   "Answer using only the passage above. Reply with the answer alone."),
    },
    "zh": {
        "tasks": ("下面是一篇文档中的一段文字：\n\n\"\"\"\n{chunk}\n\"\"\"\n\n"
                  "请写{what}，只凭这段文字就能完成。{kinds}{condition}"
                  "指令用“这段文字”来指代它，不要把原文抄进指令；输出必须正确，并且只依据这段文字。\n\n"
                  "请严格使用以下格式：\n\n{format}"),
        "what_one": "一个任务", "what_many": "{k}个不同的任务",
        "kinds_one": "任务类型任选一种：提取信息、总结、回答关于它的问题、改写其中一部分、根据其内容进行推理。",
        "kinds_many": "每个任务的类型都不同：提取信息、总结、回答关于它的问题、改写其中一部分、根据其内容进行推理。",
        "format_task": "任务{n}\n指令：<指令>\n输出：<输出>\n",
        "task_header": "任务{n}",
        "answer": "文段：\n\"\"\"\n{chunk}\n\"\"\"\n\n{instruction}\n\n请只依据上面的文段作答，直接给出答案。",
    },
}

# tokens asked for per task in the first request: a summary or a short rewrite of the passage
TOKENS_PER_TASK = 220
ANSWER_TOKENS = 320

_LINE_START = r"[ \t#*>-]*(?:\d+[.)][ \t]*)?"
# where a task starts: its instruction label at the start of a line, or a "Task N: text" line
_INSTRUCTION_RE = re.compile("^" + _LINE_START + label_re("instruction"), re.M | re.I)
_INPUT_RE = re.compile(r"\n" + _LINE_START + label_re("input"), re.I)
_OUTPUT_RE = re.compile(r"\n" + _LINE_START + rf"(?:{label_re('output')}|(?:\*\*)?(?:Answer|答案)(?:\*\*)?"
                        r"\s*[:：]\s*(?:\*\*)?)", re.I)
# the end of an output: the next task's header or any label at the start of a line
_NEXT_LABEL_RE = re.compile(
    rf"^[ \t#*>-]*(?:(?:\*\*)?(?:Task|任务)\s*\d+|{label_re('instruction')}|{label_re('input')}"
    rf"|{label_re('output')}|###)", re.M | re.I)
# a task header line ("Task 2", "### 任务2") after an instruction that has no output
_HEADER_LINE_RE = re.compile(r"^[ \t#*]*(?:Task|任务)\s*\d+[ \t]*[:：.]?[ \t*]*$|^[ \t]*###", re.M | re.I)
_ANSWER_LABEL_RE = re.compile(r"^\s*(?:\*\*)?(?:Output|Answer|输出|答案|回答)(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*", re.I)


@dataclass
class Task:
    """One task parsed from a reply: its instruction, its output (None: ask for it), an excerpt
    the teacher set apart under an ``Input:`` label, and why it cannot be used ("" when it can)."""
    instruction: str
    output: str | None = None
    reason: str = ""
    detail: str = ""
    material: str = ""

    def with_material(self, chunk_text: str) -> str:
        """The instruction, followed by its excerpt unless the excerpt is most of the passage
        itself (the passage is the record's input already)."""
        material = self.material
        if not material or (material in chunk_text and 2 * len(material) > len(chunk_text)):
            return self.instruction
        return f"{self.instruction}\n{material}"


def parse_tasks(text: str, truncated: bool) -> list[Task]:
    """The tasks of a reply, in order. ``truncated``: the teacher stopped on its token limit, so
    the last task's output (or its instruction, when no output label follows it) is cut off."""
    starts = [m.start() for m in _INSTRUCTION_RE.finditer(text)]
    # "Task 2: Summarise the passage." starts a task too, unless it is a titled header that an
    # Instruction: label follows ("Task 2: Summary\nInstruction: …")
    starts += [m.start() for m in NUMBERED_LINE.finditer(text) if m.group(2).strip()
               and not _INSTRUCTION_RE.match(text[m.end():].lstrip())]
    starts = sorted(set(starts))
    if not starts:
        reason = "truncated" if truncated else "unparseable"
        return [Task(text.strip()[:500], reason=reason, detail="no Instruction: label in the reply")]
    # what comes before the first task is the reply's preamble ("Here are three tasks:"), not a task
    pieces = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    return [_task(piece, truncated and i == len(pieces) - 1) for i, piece in enumerate(pieces)]


def _task(piece: str, cut_off: bool) -> Task:
    body = _strip_start_label(piece)
    out_m = _OUTPUT_RE.search(body)
    head = body[: out_m.start()] if out_m else body
    in_m = _INPUT_RE.search(head)
    instruction = head[: in_m.start()] if in_m else head
    nxt = _HEADER_LINE_RE.search(instruction)
    if nxt:                   # a "Task 2" header after an instruction with no output
        instruction = instruction[: nxt.start()]
    if not out_m:
        instruction = instruction.strip().split("\n\n")[0]     # what follows is not labelled: not used
    material = clean_input(head[in_m.end():]) if in_m else ""
    instruction = clean_instruction(instruction)
    if not instruction:
        return Task("", reason="unparseable", detail="an Instruction: label with no instruction")
    if out_m is None:
        if cut_off:           # the instruction itself may be cut off
            return Task(instruction, reason="truncated", detail="the teacher stopped on its token limit "
                                                                 "inside the instruction")
        return Task(instruction, material=material)
    if cut_off:               # the instruction is whole; its output is not
        return Task(instruction, material=material)
    output = body[out_m.end():]
    nxt = _NEXT_LABEL_RE.search(output)
    if nxt:
        output = output[: nxt.start()]
    return Task(instruction, output.strip() or None, material=material)


def _strip_start_label(piece: str) -> str:
    m = _INSTRUCTION_RE.match(piece)
    if m:
        return piece[m.end():]
    m = NUMBERED_LINE.match(piece)
    return piece[m.start(2):] if m else piece


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def clean_answer(text: str) -> str:
    """An answer without an "Answer:" / "输出：" label in front of it."""
    return _ANSWER_LABEL_RE.sub("", text.strip(), count=1).strip()


class DocumentsRecipe(Recipe):
    name = "documents"

    def __init__(self, seeds: Sequence[Record], lang: str, per_request: int = 3,
                 documents: str | list[str] | None = None, chunk_tokens: int = 400,
                 overlap_tokens: int = 50, text_field: str | None = None, passes: int = 1):
        """``documents``: files and folders (a list from ``--documents``, or one string of paths
        joined by the path separator from ``--opt``); ``chunk_tokens``/``overlap_tokens``: chunk
        size and overlap in tokens (words; Han characters); ``text_field``: the JSONL field holding
        the text (default ``text``, else ``content``); ``passes``: times each chunk is shown."""
        super().__init__(seeds, lang, per_request)
        paths = split_paths(documents)
        if not paths:
            raise UsageError("--recipe documents needs --documents PATH… (.txt, .md or .jsonl files, or "
                             "folders of them)")
        if passes < 1:
            raise UsageError(f"passes must be at least 1 (got {passes})")
        corpus = load_chunks(paths, chunk_tokens, overlap_tokens, text_field)
        if not corpus.chunks:
            raise UsageError(f"--documents: no text in {_count(corpus.documents, 'document')} of "
                             f"{_count(corpus.files, 'file')}")
        self.chunks, self.documents, self.passes = corpus.chunks, corpus.documents, passes
        self._by_citation = {c.citation: c for c in self.chunks}

    # -- which chunk a unit shows --------------------------------------------------------------

    def request_for_unit(self, n: int, rng: random.Random, pool: Sequence[Record]) -> Request | None:
        if n >= len(self.chunks) * self.passes:
            return None
        return self.tasks_request(self.chunks[n % len(self.chunks)], rng)

    def exhausted_reason(self) -> str:
        passes = f" ({self.passes} passes)" if self.passes > 1 else ""
        return (f"all {_count(len(self.chunks), 'chunk')} of {_count(self.documents, 'document')} "
                f"were used{passes}")

    # -- the requests --------------------------------------------------------------------------

    def tasks_request(self, chunk: Chunk, rng: random.Random) -> Request:
        p = PROMPTS[self.lang]
        picked = self.condition(rng)
        condition = self.condition_text(picked)
        k = self.per_request
        prompt = p["tasks"].format(
            chunk=chunk.text, what=p["what_one"] if k == 1 else p["what_many"].format(k=k),
            kinds=p["kinds_one"] if k == 1 else p["kinds_many"],
            condition=condition + (" " if condition and self.lang == "en" else ""),
            format="\n".join(p["format_task"].format(n=i) for i in range(1, min(k, 2) + 1))
            + ("…\n" if k > 2 else ""))
        return Request(prompt=prompt, max_tokens=TOKENS_PER_TASK * k, temperature=0.7, top_p=0.95,
                       stop=(p["task_header"].format(n=k + 1),), seed=rng.randrange(2**31),
                       stage="tasks", kind="chat", carry={**picked, "chunk": chunk.citation})

    def answer_request(self, chunk: Chunk, instruction: str) -> Request:
        """The output of a task the first reply did not give one for (depends on nothing else)."""
        prompt = PROMPTS[self.lang]["answer"].format(chunk=chunk.text, instruction=instruction)
        return Request(prompt=prompt, max_tokens=ANSWER_TOKENS, temperature=0.3, top_p=0.95,
                       seed=stable_seed(chunk.citation, instruction), stage="answer", kind="chat")

    # -- one unit --------------------------------------------------------------------------------

    def chunk_of(self, first: Request) -> Chunk:
        citation = (first.carry or {}).get("chunk")
        chunk = self._by_citation.get(citation)
        if chunk is None:
            raise UsageError(f"the run in --out showed chunk {citation}, which the --documents given now "
                             "do not have; resume with the same --documents or choose another --out")
        return chunk

    async def run(self, ctx: UnitContext, uid: str, first: Request) -> None:
        chunk = self.chunk_of(first)
        resp = await ctx.ask(first)
        tasks = [] if resp.error else parse_tasks(resp.text, resp.finish_reason == "length")
        answers = await asyncio.gather(*(self._answer(ctx, chunk, t) for t in tasks))
        async with ctx.turn("accept"):
            if resp.error:
                ctx.reject(Record(instruction="", meta={"chunk": chunk.citation}), f"{uid}:0",
                           "teacher_failed", resp.error)
                return
            for i, (task, answer) in enumerate(zip(tasks, answers)):
                await self._decide(ctx, f"{uid}:{i}", chunk, first, task, answer)

    async def _answer(self, ctx: UnitContext, chunk: Chunk, task: Task) -> Response | None:
        """The answer request's reply for a task that has an instruction but no output."""
        if task.reason or task.output is not None:
            return None
        return await ctx.ask(self.answer_request(chunk, task.with_material(chunk.text)))

    async def _decide(self, ctx: UnitContext, key: str, chunk: Chunk, first: Request, task: Task,
                      answer: Response | None) -> None:
        rec = self.stamp_carry(Record(instruction=task.with_material(chunk.text), input=chunk.text,
                                      meta={"chunk": chunk.citation}), first.carry)
        if task.reason:
            ctx.reject(rec, key, task.reason, task.detail)
            return
        if answer is None:
            rec.output = task.output or ""
        else:
            problem = take_answer(rec, answer, clean_answer(answer.text))
            if problem is not None:
                ctx.reject(rec, key, *problem)
                return
        await ctx.offer(rec, key)
