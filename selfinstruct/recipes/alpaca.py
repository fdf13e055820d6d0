"""The Alpaca recipe: a few seed triples in the prompt, the teacher writes several new numbered
triples (instruction / input / output, with a no-input marker) in one request."""
from __future__ import annotations

import random
from typing import Sequence

from selfinstruct.errors import UsageError
from selfinstruct.recipes.base import Recipe, UnitContext, sample_tasks
from selfinstruct.recipes.parsing import parse_triple, split_blocks
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request

PROMPTS = {
    "en": {
        "header": ("Below are examples of diverse tasks. Each has an instruction, an optional input "
                   "(<noinput> when there is none) and a correct, helpful output. Continue the list with "
                   "{k} new tasks that differ from these in topic and type, in the same format.\n\n"),
        "task": "Task {n}\n", "instruction": "Instruction: ", "input": "Input: ", "output": "Output: ",
        "noinput": "<noinput>",
    },
    "zh": {
        "header": ("下面是一些不同类型任务的例子。每个任务有一条指令、一个可选的输入（没有输入时写<无输入>）和一个正确、"
                   "有用的输出。请按照同样的格式继续写{k}个新任务，主题和类型要与这些例子不同。\n\n"),
        "task": "任务{n}\n", "instruction": "指令：", "input": "输入：", "output": "输出：",
        "noinput": "<无输入>",
    },
}


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
        text = p["header"].format(k=self.per_request)
        for n, r in enumerate(shown, 1):
            text += (p["task"].format(n=n) + p["instruction"] + r.instruction + "\n"
                     + p["input"] + (r.input or p["noinput"]) + "\n" + p["output"] + r.output + "\n\n")
        nxt = len(shown) + 1
        text += p["task"].format(n=nxt) + p["instruction"].rstrip()
        last = nxt + self.per_request
        stop = (p["task"].format(n=last).strip(),)
        return Request(prompt=text, max_tokens=110 * self.per_request, temperature=0.7, top_p=0.95,
                       stop=stop, seed=rng.randrange(2**31), stage="triples")

    async def run(self, ctx: UnitContext, uid: str, first: Request) -> None:
        resp = await ctx.ask(first)
        async with ctx.turn("accept"):
            await self._decide(ctx, uid, resp)

    async def _decide(self, ctx: UnitContext, uid: str, resp) -> None:
        if resp.error:
            ctx.reject(Record(instruction=""), f"{uid}:0", "teacher_failed", resp.error)
            return
        p = PROMPTS[self.lang]
        # the prompt ended inside "Instruction:", so the reply starts with the instruction text
        text = p["instruction"] + resp.text.lstrip()
        blocks = split_blocks(text)
        for i, block in enumerate(blocks):
            key = f"{uid}:{i}"
            parsed = parse_triple(block)
            last = i == len(blocks) - 1
            if parsed is None:
                if not (last and resp.finish_reason == "length"):
                    ctx.reject(Record(instruction=block.strip()[:500]), key, "unparseable",
                               "no instruction/output labels")
                else:
                    ctx.reject(Record(instruction=block.strip()[:500], meta={"truncated": True}), key,
                               "truncated", "the teacher stopped on its token limit")
                continue
            inst, inp, out = parsed
            rec = Record(instruction=inst, input=inp, output=out)
            if last and resp.finish_reason == "length":
                rec.meta["truncated"] = True
            await ctx.offer(rec, key)
