"""The Self-Instruct recipe (Wang et al. 2022): a prompt of 8 numbered tasks (up to 2 from the machine
pool, the rest seeds) that the teacher continues; each new instruction that passes the instruction
filters joins the pool; then a classification check; then instances, output-first for classification
tasks (class label, then an input for it) and input-first otherwise.

An input-first instance reply that gives the input but no output (a small model writes the input and
stops) gets its output from a second request through the teacher's chat template, as in the alpaca
recipe (stage ``answer``, ``meta["answered"] = "separately"``), instead of being thrown away; the
request depends on the instruction and input alone, so the unit stays replayable."""
from __future__ import annotations

import asyncio
import random
import re
from typing import Sequence

from selfinstruct.errors import UsageError
from selfinstruct.recipes.alpaca import answer_request
from selfinstruct.recipes.base import Recipe, UnitContext, sample_tasks, stable_seed
from selfinstruct.recipes.parsing import COLON, clean_input, clean_instruction, parse_numbered_tasks
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request

PROMPTS = {
    "en": {
        "tasks_header": "Come up with a series of tasks:\n\n",
        "tasks_header_condition": "Come up with a series of tasks. {condition}\n\n",
        "task_line": "Task {n}: {text}\n",
        "cls_header": ("Can the following task be regarded as a classification task with finite output "
                       "labels?\n\n"),
        "cls_item": "Task: {text}\nIs it classification? {answer}\n\n",
        "cls_query": "Task: {text}\nIs it classification?",
        "yes": "Yes", "no": "No",
        "inst_header": ("Come up with an example for each task. If the task needs no input, write "
                        "<noinput> as the input.\n\n"),
        "inst_item": "Task: {text}\nInput: {input}\nOutput: {output}\n\n",
        "inst_query": "Task: {text}\nInput:",
        "out_header": ("Given a classification task and one of its class labels, write an input that "
                       "belongs to that label.\n\n"),
        "out_item": "Task: {text}\nClass label: {output}\nInput: {input}\n\n",
        "out_query": "Task: {text}\nClass label:",
        "task_label": "Task", "label_label": "Class label", "input_label": "Input", "output_label": "Output",
        "noinput": "<noinput>",
    },
    "zh": {
        "tasks_header": "请列出一系列任务：\n\n",
        "tasks_header_condition": "请列出一系列任务。{condition}\n\n",
        "task_line": "任务{n}：{text}\n",
        "cls_header": "下面的任务能否看作输出标签有限的分类任务？\n\n",
        "cls_item": "任务：{text}\n是分类任务吗？{answer}\n\n",
        "cls_query": "任务：{text}\n是分类任务吗？",
        "yes": "是", "no": "否",
        "inst_header": "请为每个任务写一个例子。如果任务不需要输入，输入写<无输入>。\n\n",
        "inst_item": "任务：{text}\n输入：{input}\n输出：{output}\n\n",
        "inst_query": "任务：{text}\n输入：",
        "out_header": "给定一个分类任务和它的一个类别标签，写一个属于该标签的输入。\n\n",
        "out_item": "任务：{text}\n类别标签：{output}\n输入：{input}\n\n",
        "out_query": "任务：{text}\n类别标签：",
        "task_label": "任务", "label_label": "类别标签", "input_label": "输入", "output_label": "输出",
        "noinput": "<无输入>",
    },
}


def parse_yes_no(text: str) -> bool:
    head = text.strip().lower()[:8]
    return head.startswith("yes") or head.startswith("是")


def _cut_at(text: str, label: str) -> str:
    m = re.search(rf"^[ \t]*{label}{COLON}", text, re.M)
    return text[: m.start()] if m else text


def parse_input_first(text: str, p: dict) -> tuple[str, str] | None:
    """The reply to a prompt ending with "Input:" → (input, output)."""
    text = _cut_at(text, p["task_label"])
    m = re.search(rf"(?s)^(.*?)\n[ \t]*{p['output_label']}{COLON}(.*)$", text)
    if not m:
        return None
    return clean_input(m.group(1)), m.group(2).strip().split("\n\n")[0].strip()


def parse_input_only(text: str, p: dict) -> str | None:
    """The input of a reply to a prompt ending with "Input:" that stopped before any output label
    (None when there is no text at all: a reply that wrote nothing is not an input)."""
    text = _cut_at(text, p["task_label"])
    if not text.strip():
        return None
    return clean_input(text.strip().split("\n\n")[0])


def parse_output_first(text: str, p: dict) -> tuple[str, str] | None:
    """The reply to a prompt ending with "Class label:" → (input, output=label)."""
    text = _cut_at(text, p["task_label"])
    m = re.search(rf"(?s)^(.*?)\n[ \t]*{p['input_label']}{COLON}(.*)$", text)
    if not m:
        return None
    label = m.group(1).strip()
    inp = _cut_at(m.group(2), p["label_label"]).strip().split("\n\n")[0].strip()
    return clean_input(inp), label


class SelfInstructRecipe(Recipe):
    name = "self-instruct"
    two_phase = True      # instructions join the pool (instruction filters) before instances exist

    def __init__(self, seeds: Sequence[Record], lang: str, per_request: int = 5, prompt_tasks: int = 8,
                 from_pool: int = 2):
        """``prompt_tasks``: numbered tasks shown per prompt, ``from_pool`` of them at most from the
        pool of generated tasks (the paper's 8 and 2)."""
        super().__init__(seeds, lang, per_request)
        if not 0 <= from_pool <= prompt_tasks or prompt_tasks < 1:
            raise UsageError(f"need 0 <= from_pool <= prompt_tasks and prompt_tasks >= 1 (got "
                             f"prompt_tasks={prompt_tasks}, from_pool={from_pool})")
        self.prompt_tasks, self.from_pool = prompt_tasks, from_pool

    # Set by ``bind``: the teacher is a small model that answers best briefly (see the alpaca recipe)
    answers_separately: bool = False

    def bind(self, teacher, teacher_flags) -> None:
        self.answers_separately = bool(getattr(teacher, "answers_separately", False))

    def first_request(self, rng: random.Random, pool: Sequence[Record]) -> Request:
        p = PROMPTS[self.lang]
        shown = sample_tasks(rng, self.tasks, pool, self.prompt_tasks, self.from_pool)
        picked = self.condition(rng)
        condition = self.condition_text(picked)
        header = p["tasks_header_condition"].format(condition=condition) if condition else p["tasks_header"]
        text = header + "".join(p["task_line"].format(n=n, text=r.instruction) for n, r in enumerate(shown, 1))
        text += p["task_line"].format(n=len(shown) + 1, text="").rstrip()
        stop = (p["task_line"].format(n=len(shown) + 1 + self.per_request, text="").strip(), "\n\n\n")
        return Request(prompt=text, max_tokens=40 * self.per_request, temperature=0.7, top_p=0.95, stop=stop,
                       seed=rng.randrange(2**31), stage="instructions", carry=picked or None)

    # -- the requests after the first depend on the instruction only (replayable) ---------------

    def _examples(self, inst: str, classification: bool, k: int) -> list[Record]:
        pool = [r for r in self.seeds if bool(r.meta.get("is_classification")) == classification and r.output]
        pool = pool or [r for r in self.seeds if r.output]
        return random.Random(stable_seed(inst, str(classification))).sample(pool, min(k, len(pool)))

    def classification_request(self, inst: str) -> Request:
        p = PROMPTS[self.lang]
        shots = self._examples(inst, True, 3) + self._examples(inst, False, 3)
        random.Random(stable_seed(inst)).shuffle(shots)
        text = p["cls_header"] + "".join(
            p["cls_item"].format(text=r.instruction, answer=p["yes"] if r.meta.get("is_classification")
                                 else p["no"]) for r in shots)
        text += p["cls_query"].format(text=inst)
        return Request(prompt=text, max_tokens=3, temperature=0.0, stop=("\n",), stage="classification")

    def instance_request(self, inst: str, classification: bool) -> Request:
        p = PROMPTS[self.lang]
        shots = self._examples(inst, classification, 3)
        if classification:
            body = "".join(p["out_item"].format(text=r.instruction, output=r.output,
                                                input=r.input or p["noinput"]) for r in shots)
            text = p["out_header"] + body + p["out_query"].format(text=inst)
        else:
            body = "".join(p["inst_item"].format(text=r.instruction, input=r.input or p["noinput"],
                                                 output=r.output) for r in shots)
            text = p["inst_header"] + body + p["inst_query"].format(text=inst)
        return Request(prompt=text, max_tokens=256, temperature=0.7, top_p=0.95,
                       stop=("\n\n" + p["task_label"],), seed=stable_seed(inst), stage="instances")

    async def run(self, ctx: UnitContext, uid: str, first: Request) -> None:
        resp = await ctx.ask(first)
        async with ctx.turn("pool"):
            tasks = await self._pool_instructions(ctx, uid, resp, first)
        outcomes = await asyncio.gather(*(self._instance(ctx, key, task) for key, task in tasks))
        async with ctx.turn("accept"):
            for key, (record, reason, detail) in zip((k for k, _ in tasks), outcomes):
                self.stamp_carry(record, first.carry)
                if reason:
                    ctx.reject(record, f"{key}:0", reason, detail)
                else:
                    await ctx.offer(record, f"{key}:0")

    async def _pool_instructions(self, ctx: UnitContext, uid: str, resp, first: Request) -> list[tuple[str, Record]]:
        """The new instructions that joined the pool, with their keys."""
        if resp.error:
            ctx.reject(self.stamp_carry(Record(instruction=""), first.carry), f"{uid}:0", "teacher_failed",
                       resp.error)
            return []
        instructions = [clean_instruction(inst) for inst in parse_numbered_tasks(resp.text)]
        truncated_last = resp.finish_reason == "length"
        pooled = []
        for i, inst in enumerate(instructions):
            rec = self.stamp_carry(Record(instruction=inst), first.carry)
            if truncated_last and i == len(instructions) - 1:
                rec.meta["truncated"] = True
            if await ctx.offer_instruction(rec, f"{uid}:{i}"):
                pooled.append((f"{uid}:{i}", rec))
        return pooled

    async def _instance(self, ctx: UnitContext, key: str, task: Record) -> tuple[Record, str, str]:
        """(candidate, "", "") or (what there is, reason, detail): asks only, decides nothing."""
        p = PROMPTS[self.lang]
        cls = await ctx.ask(self.classification_request(task.instruction))
        if cls.error:
            return task, "teacher_failed", cls.error
        classification = parse_yes_no(cls.text)
        resp = await ctx.ask(self.instance_request(task.instruction, classification))
        if resp.error:
            return task, "teacher_failed", resp.error
        parsed = (parse_output_first if classification else parse_input_first)(resp.text, p)
        if not classification and resp.finish_reason != "length" and (parsed is None or not parsed[1]):
            return await self._answered(ctx, task, resp.text if parsed is None else None, parsed)
        if parsed is None:
            what = "truncated" if resp.finish_reason == "length" else "unparseable"
            return (Record(instruction=task.instruction, output=resp.text[:500]), what,
                    "no input/output labels in the instance reply")
        inp, out = parsed
        rec = Record(instruction=task.instruction, input=inp, output=out,
                     meta={"is_classification": classification})
        rec.most_similar, rec.rouge = task.most_similar, task.rouge
        if resp.finish_reason == "length":
            rec.meta["truncated"] = True
        return rec, "", ""

    async def _answered(self, ctx: UnitContext, task: Record, reply: str | None,
                        parsed: tuple[str, str] | None) -> tuple[Record, str, str]:
        """An instance whose reply gave an input but no output: the output from an answer request."""
        p = PROMPTS[self.lang]
        inp = parsed[0] if parsed is not None else parse_input_only(reply or "", p)
        if inp is None:
            return (Record(instruction=task.instruction, output=(reply or "")[:500]), "unparseable",
                    "no input/output labels in the instance reply")
        answer = await ctx.ask(answer_request(self.lang, task.instruction, inp, short=self.answers_separately))
        rec = Record(instruction=task.instruction, input=inp, output=answer.text.strip(),
                     meta={"is_classification": False, "answered": "separately"})
        rec.most_similar, rec.rouge = task.most_similar, task.rouge
        if answer.error:
            return rec, "teacher_failed", answer.error
        if answer.finish_reason == "length":
            rec.meta["truncated"] = True
        if not rec.output:
            return rec, "no_answer", "the answer request came back empty"
        return rec, "", ""
