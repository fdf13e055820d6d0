"""Evol-Instruct (WizardLM, Xu et al. 2023): grow harder and rarer tasks out of existing ones.

Unit ``n`` takes parent ``n`` (the records of ``--from FILE``, else the unique seed tasks, in one
order shuffled by the run's ``--seed``) and evolves it for up to ``rounds`` rounds. In round ``r`` an
operation is picked from the parent's text and ``r`` (so a resumed unit picks the same one): one of
the paper's five *in-depth* operators (add a constraint, deepen, concretise, ask for more reasoning
steps, complicate the input) or *in-breadth* mutation (a new, rarer task of the same domain). The
teacher rewrites the parent through its chat template, then answers the rewritten task in the run's
language. The paper's elimination rules come first, as rejects with their own reason codes:

- ``evol_copied_prompt``: the rewrite copies the operator prompt's own words ("#Given Prompt#",
  "rewritten prompt", 给定提示…) instead of being a task;
- ``evol_no_gain``: the rewrite adds nothing over its parent (fewer than ``MIN_NEW_TOKENS`` content
  tokens that the parent does not have). The paper asks the teacher whether the two are equal; this
  token rule costs no request and catches a parent handed back unchanged, reworded with stop words
  or cut down, though not a paraphrase with new words and no new demand;
- ``evol_answer_failed``: the answer is a short apology ("sorry" / 抱歉 in fewer than
  ``SHORT_ANSWER`` words; quoted text is a mention, and a task that asks for an apology gets one),
  or only punctuation and stop words.

An evolution that passes these rules becomes the parent of the next round; one that fails them
leaves the parent as it was, and the next round evolves that parent again (the paper puts failed
evolutions back into the pool). The run's filters then decide on every evolution of the unit, in
round order, in one block taken in unit order (``ctx.offer``): so the chain of parents depends on the
teacher's answers alone, never on what other units had accepted by then, and a rerun with the same
answers sends the same requests and makes the same decisions (a filter reject, say a near-copy of
another unit's task, still parents the next round; its children are judged on their own). Parents
themselves are never written and never count toward ``--num``.

Each record carries ``meta["lineage"]``: the parent's id (the seed or ``--from`` record's id, else
its ``file:line``; for an evolved parent its request key), the operation, the round and the
instruction of every ancestor, root first. ROUGE-L novelty leaves those ancestors out (an evolved
task is close to its parent by design; ``evol_no_gain`` is the check against the parent), and still
rejects a near-copy of any unrelated task.

Replay: the unit's first request (round 1's rewrite) carries the parent and the unit's topic and
persona; every later request follows from the answers alone, so a resumed unit sends the same
requests and the journal answers them.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Sequence

from selfinstruct.errors import InputError, UsageError
from selfinstruct.readers import read_records
from selfinstruct.recipes.alpaca import answer_request as short_answer_request
from selfinstruct.recipes.base import Recipe, UnitContext, stable_seed
from selfinstruct.recipes.parsing import clean_input, clean_instruction
from selfinstruct.record import Record
from selfinstruct.teachers.base import Request, Response
from selfinstruct.text import is_cjk, length, tokens

IN_DEPTH = ("add_constraints", "deepen", "concretise", "increase_reasoning", "complicate_input")
IN_BREADTH = ("mutation",)
OPERATIONS = IN_DEPTH + IN_BREADTH

# The rewrite must bring at least this many content tokens its parent lacks (a Chinese token is one
# character, so a new constraint there is several of them).
MIN_NEW_TOKENS = {"en": 2, "zh": 3}
# The paper's "sorry and relatively short": under 80 words; Chinese counted in characters, where 80
# words are about 120 of them.
SHORT_ANSWER = {"en": 80, "zh": 120}
EVOLVE_TOKENS, ANSWER_TOKENS = 320, 768
SMALL_EVOLVE_TOKENS = 128        # a small teacher's rewrite (see ``bind``)

PROMPTS = {
    "en": {
        "depth": ("You make prompts harder. Rewrite the prompt below so that strong AI assistants such "
                  "as ChatGPT and GPT-4 find it more demanding, while a person can still read, "
                  "understand and answer it. {method} Keep whatever material the prompt carries "
                  "(text, tables, code) unless the method says otherwise. Add no more than 10 to 20 "
                  "words. Write the new prompt in English and reply with it alone: no heading, no "
                  "comment, no answer. If it works on an input (a text, table or code), put that "
                  "input after a line #Input#.{condition}"),
        "breadth": ("You invent prompts. Taking the prompt below as inspiration, write a brand-new "
                    "prompt from the same domain on a rarer, less common subject. It should be about "
                    "as long and as hard as the prompt below, and a person must be able to read, "
                    "understand and answer it. Write it in English and reply with it alone: no "
                    "heading, no comment, no answer. If it works on an input (a text, table or "
                    "code), put that input after a line #Input#.{condition}"),
        "methods": {
            "add_constraints": "Method: add one more constraint or requirement.",
            "deepen": ("Method: where it asks about a particular matter, ask about it in more depth "
                       "and breadth."),
            "concretise": "Method: replace general concepts with more specific ones.",
            "increase_reasoning": ("Method: if a few simple steps of thought solve it, rewrite it to ask "
                                   "explicitly for reasoning in several steps."),
            "complicate_input": ("Method: give it an input in a structured format (a table, JSON, XML, "
                                 "SQL or code) that the task must work on."),
        },
        "given": "\n\n#Given Prompt#:\n{prompt}",
        "ask": {"depth": "\n\n#Rewritten Prompt#:", "breadth": "\n\n#Created Prompt#:"},
        "input": "\n#Input#:\n{input}",
        "answer_system": "Answer the user's request helpfully, accurately and completely, in English.",
    },
    "zh": {
        "depth": ("你的工作是把提示改得更难。请改写下面的提示，让ChatGPT、GPT-4这样强大的AI助手觉得更有挑战，"
                  "同时人仍然能读懂、能理解、能回答。{method}除非方法另有要求，保留提示所带的材料（文本、表格、"
                  "代码）。最多增加20到40个字。用中文写新提示，只回复新提示本身：不要标题，不要说明，不要答案。"
                  "如果它需要处理一份输入（文本、表格或代码），把输入放在单独一行#输入#之后。{condition}"),
        "breadth": ("你的工作是构思新提示。以下面的提示为灵感，写一个全新的提示：属于同一领域，但话题更少见。"
                    "长度和难度与下面的提示相当，人能读懂、能理解、能回答。用中文写，只回复新提示本身：不要"
                    "标题，不要说明，不要答案。如果它需要处理一份输入（文本、表格或代码），把输入放在单独一行"
                    "#输入#之后。{condition}"),
        "methods": {
            "add_constraints": "方法：再加一条限制或要求。",
            "deepen": "方法：如果它问的是某个具体问题，把这个问题问得更深、更广。",
            "concretise": "方法：把笼统的概念换成更具体的概念。",
            "increase_reasoning": "方法：如果几步简单的思考就能解决，改成明确要求多步推理。",
            "complicate_input": "方法：给它加上一份结构化的输入（表格、JSON、XML、SQL或代码），要求任务基于这份输入完成。",
        },
        "given": "\n\n#给定提示#：\n{prompt}",
        "ask": {"depth": "\n\n#改写后的提示#：", "breadth": "\n\n#新提示#："},
        "input": "\n#输入#：\n{input}",
        "answer_system": "请用中文回答用户的请求，做到有用、准确、完整。",
    },
}

# A heading the teacher put before its rewrite (stripped: the rewrite follows it).
_LEAD_LABEL = re.compile(
    r"^\s*(?:\*\*)?\s*#*\s*(?:(?:the\s+)?(?:rewritten|created|new|evolved)\s+prompt|改写后的?提示|新提示)"
    r"\s*(?:#+\s*(?:\*\*)?\s*[:：]?|(?:\*\*)?\s*[:：])\s*(?:\*\*)?\s*", re.I)
# The line that opens the rewrite's input.
_INPUT_MARK = re.compile(r"^[ \t]*(?:\*\*)?#\s*(?:input|输入)\s*#(?:\*\*)?[ \t]*[:：]?[ \t]*\n?", re.I | re.M)
# The operator prompt's own words: a rewrite that still holds them copied the prompt, not a task.
_COPIED = re.compile(r"#\s*(?:given|rewritten|created)\s+prompt\s*#|\b(?:given|rewritten|created)\s+prompt\b"
                     r"|给定提示|改写后的?提示|#\s*新提示\s*#|原提示", re.I)
_QUOTES = {'"': '"', "'": "'", "“": "”", "「": "」", "『": "』", "《": "》"}
_SORRY = re.compile(r"\b(?:sorry|apologi[sz]e)\b|抱歉|对不起|很遗憾", re.I)
_QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”|「[^」\n]*」|『[^』\n]*』')
_ASKS_APOLOGY = re.compile(r"\b(?:sorry|apolog\w*)\b|道歉|致歉|歉意", re.I)

STOP_WORDS = frozenset("""
a an the and or but nor of to in on at for with by from as into onto over under about above below
is are was were be been being am do does did done have has had having it its this that these those
i you he she we they me him her us them my your his our their mine yours what which who whom whose
how why when where not no yes so than then there here too very can could will would shall should
may might must just also if else all any some such only own same other each few more most both
again once up down out off s t ok okay well oh um uh hmm
""".split()) | frozenset("的了是在和与或也就都而及着吗呢吧啊呀哦嗯这那我你他她它们个之其把被对从向给很不没有么什怎哪谁")


@dataclass(frozen=True)
class Parent:
    """A task being evolved: a ``--from`` or seed record, or an accepted evolution."""
    id: str
    instruction: str
    input: str = ""
    ancestors: tuple[str, ...] = ()          # every earlier instruction of its line, root first

    def as_carry(self) -> dict[str, str]:
        return {"id": self.id, "instruction": self.instruction, "input": self.input}

    @classmethod
    def from_carry(cls, d: dict[str, Any]) -> "Parent":
        return cls(str(d["id"]), d["instruction"], d.get("input", ""))


class EvolInstructRecipe(Recipe):
    name = "evol-instruct"
    short = False                 # set by ``bind``: the teacher is a small model that answers separately

    def __init__(self, seeds: Sequence[Record], lang: str, source: str | None = None, rounds: int = 3,
                 operations: str = ",".join(OPERATIONS), evolve_tokens: int | None = None,
                 answer_tokens: int | None = None):
        """``source``: the file whose records are evolved (any format ``selfinstruct.readers`` reads;
        default the seed tasks). ``rounds``: evolution depth per parent. ``operations``: the
        operators to draw from, comma-separated (default all six). ``evolve_tokens`` /
        ``answer_tokens``: the token limits of the rewrite and of the answer (default 320 and 768;
        for a small teacher that answers separately, 128 and a short answer)."""
        super().__init__(seeds, lang)
        if rounds < 1:
            raise UsageError(f"--rounds must be at least 1 (got {rounds})")
        ops = tuple(o.strip() for o in operations.split(",") if o.strip())
        unknown = [o for o in ops if o not in OPERATIONS]
        if unknown or not ops:
            raise UsageError(f"operations: unknown operation '{(unknown or [''])[0]}' "
                             f"(choose from {', '.join(OPERATIONS)})")
        if (evolve_tokens or 16) < 16 or (answer_tokens or 16) < 16:
            raise UsageError("evolve_tokens and answer_tokens must be at least 16")
        self.source, self.rounds, self.operations = source, rounds, ops
        self.evolve_tokens, self.answer_tokens = evolve_tokens, answer_tokens
        self.parents = read_parents(source) if source else [
            Parent(r.id or r.where, r.instruction, r.input) for r in self.tasks]
        self._order: list[int] | None = None

    # -- the units ---------------------------------------------------------------------------------

    def bind(self, teacher, teacher_flags) -> None:
        # A small model (the embedded one) rambles until its token limit: a rewrite gets fewer
        # tokens and the answer is one short paragraph, cut at the blank line after it.
        self.short = bool(getattr(teacher, "answers_separately", False))
        if self.evolve_tokens is None:
            self.evolve_tokens = SMALL_EVOLVE_TOKENS if self.short else EVOLVE_TOKENS

    def order(self) -> list[int]:
        """Parent indices in unit order: shuffled once by the run's seed, the same on every resume."""
        if self._order is None:
            self._order = list(range(len(self.parents)))
            random.Random(f"evol-instruct:{self.random_seed}").shuffle(self._order)
        return self._order

    def request_for_unit(self, n: int, rng: random.Random, pool: Sequence[Record]) -> Request | None:
        if n >= len(self.parents):
            return None
        parent = self.parents[self.order()[n]]
        picked = self.condition(rng)
        return self.evolve_request(parent, 1, picked, carry={**picked, "parent": parent.as_carry()})

    def exhausted_reason(self) -> str:
        where = f"records of {self.source}" if self.source else "seed tasks"
        return (f"all {len(self.parents)} {where} were evolved, up to {self.rounds} "
                f"round{'s' if self.rounds != 1 else ''} each")

    def operation(self, parent: Parent, r: int) -> str:
        """The operation of round ``r`` on ``parent``: a function of its text, never of the rng."""
        return self.operations[stable_seed(parent.instruction, parent.input, str(r)) % len(self.operations)]

    # -- the requests (each a function of the parent, the round and the unit's conditions) ----------

    def evolve_request(self, parent: Parent, r: int, picked: dict[str, str],
                       carry: dict[str, Any] | None = None) -> Request:
        p = PROMPTS[self.lang]
        op = self.operation(parent, r)
        condition = self.condition_text(picked)
        condition = (" " + condition if self.lang == "en" else condition) if condition else ""
        if op in IN_BREADTH:
            head, ask = p["breadth"].format(condition=condition), p["ask"]["breadth"]
        else:
            head = p["depth"].format(method=p["methods"][op], condition=condition)
            ask = p["ask"]["depth"]
        given = parent.instruction + (p["input"].format(input=parent.input) if parent.input else "")
        prompt = head + p["given"].format(prompt=given) + ask
        return Request(prompt=prompt, max_tokens=self.evolve_tokens or EVOLVE_TOKENS, temperature=0.7, top_p=0.95,
                       seed=stable_seed(parent.instruction, parent.input, op, str(r)), stage="evolve",
                       kind="chat", carry=carry)

    def answer_request(self, instruction: str, inp: str) -> Request:
        if self.short and self.answer_tokens is None:
            return short_answer_request(self.lang, instruction, inp, short=True)
        p = PROMPTS[self.lang]
        prompt = instruction + ("\n\n" + inp if inp else "")
        return Request(prompt=prompt, max_tokens=self.answer_tokens or ANSWER_TOKENS, temperature=0.7, top_p=0.95,
                       seed=stable_seed(instruction, inp), stage="answer", kind="chat",
                       system=p["answer_system"])

    # -- a unit ------------------------------------------------------------------------------------

    async def run(self, ctx: UnitContext, uid: str, first: Request) -> None:
        carry = first.carry or {}
        picked = {k: carry[k] for k in ("topic", "persona") if k in carry}
        parent = Parent.from_carry(carry["parent"])
        outcomes = []
        for r in range(1, self.rounds + 1):
            request = first if r == 1 else self.evolve_request(parent, r, picked)
            record, reason, detail = await self._evolve(ctx, parent, r, request)
            key = f"{uid}:{r}"
            outcomes.append((key, self.stamp_carry(record, carry), reason, detail))
            if not reason:     # it passed the elimination rules: the next round evolves it
                parent = Parent(key, record.instruction, record.input, parent.ancestors + (parent.instruction,))
        # One block of decisions per unit, in unit order: the filters' memory and the --num cut then
        # grow the same way in every run with the same answers.
        async with ctx.turn("accept"):
            for key, record, reason, detail in outcomes:
                if reason:
                    ctx.reject(record, key, reason, detail)
                else:
                    await ctx.offer(record, key)

    async def _evolve(self, ctx: UnitContext, parent: Parent, r: int,
                      request: Request) -> tuple[Record, str, str]:
        """Round ``r`` on ``parent``: (candidate, "", "") or (what there is, reason, detail). Asks,
        decides nothing (decisions wait for the unit's turn)."""
        op = self.operation(parent, r)
        lineage = {"parent": parent.id, "operation": op, "round": r,
                   "ancestors": list(parent.ancestors + (parent.instruction,))}
        resp = await ctx.ask(request)
        failed = _failure(resp, "the rewrite")
        if failed:
            return Record(instruction="", meta={"lineage": lineage}), *failed
        inst, inp = parse_evolved(resp.text)
        record = Record(instruction=inst, input=inp, meta={"lineage": lineage})
        if resp.finish_reason == "length":
            record.instruction = record.instruction or resp.text.strip()[:500]
            record.meta["truncated"] = True
            return record, "truncated", "the teacher stopped on its token limit inside the rewrite"
        if not inst:
            record.instruction = resp.text.strip()[:500]
            return record, "unparseable", "no rewritten prompt in the reply"
        copied = copied_prompt_words(parent, inst, inp)
        if copied:
            return record, "evol_copied_prompt", f"the rewrite holds the prompt's words '{copied}'"
        new = new_content_tokens(parent, inst, inp)
        need = MIN_NEW_TOKENS["zh" if is_cjk(inst) else "en"]
        if len(new) < need:
            return record, "evol_no_gain", (f"{len(new)} new content token{'s' if len(new) != 1 else ''} "
                                            f"over the parent (need {need})")
        answer = await ctx.ask(self.answer_request(inst, inp))
        failed = _failure(answer, "the answer")
        if failed:
            return record, *failed
        record.output = answer.text.strip()
        if answer.finish_reason == "length":
            record.meta["truncated"] = True        # the truncated filter decides
        why = answer_failure(record.output, inst)
        if why:
            return record, "evol_answer_failed", why
        return record, "", ""


def _failure(resp: Response, what: str) -> tuple[str, str] | None:
    return ("teacher_failed", f"{what}: {resp.error}") if resp.error else None


# -- parsing and the elimination rules -------------------------------------------------------------


def parse_evolved(text: str) -> tuple[str, str]:
    """(instruction, input) of a rewrite: the teacher's heading ("#Rewritten Prompt#:", 新提示：)
    stripped, the input after its ``#Input#`` line, prompt labels removed; ("", "") for nothing."""
    text = text.strip()
    while True:
        m = _LEAD_LABEL.match(text)
        if not m or not m.group(0).strip():
            break
        text = text[m.end():]
    mark = _INPUT_MARK.search(text)
    inst, inp = (text[: mark.start()], text[mark.end():]) if mark else (text, "")
    return clean_instruction(_unquote(inst.strip())), clean_input(inp)


def copied_prompt_words(parent: Parent, instruction: str, inp: str) -> str:
    """The operator prompt's words the rewrite copied ("" for none); words its parent already had
    are the task's own ("Write a story from the given prompt")."""
    had = {m.group(0).lower() for m in _COPIED.finditer(parent.instruction + "\n" + parent.input)}
    for m in _COPIED.finditer(instruction + "\n" + inp):
        if m.group(0).lower() not in had:
            return m.group(0)
    return ""


def _unquote(text: str) -> str:
    """A rewrite the teacher wrapped in quotes, without them (quotes inside are kept)."""
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1] and text[-1] not in text[1:-1]:
        return text[1:-1].strip()
    return text


def content_tokens(text: str) -> set[str]:
    return {t for t in tokens(text) if t not in STOP_WORDS}


def new_content_tokens(parent: Parent, instruction: str, inp: str) -> set[str]:
    """The content tokens of the rewrite (instruction and input) that its parent does not have."""
    return content_tokens(instruction + "\n" + inp) - content_tokens(parent.instruction + "\n" + parent.input)


def answer_failure(answer: str, instruction: str = "") -> str:
    """Why an answer shows the evolved task failed ("" when it does not): a short apology, or
    nothing but punctuation and stop words. Quoted text is a mention, not an apology, and a task
    that asks for an apology gets one."""
    if not content_tokens(answer):
        return "the answer is only punctuation and stop words"
    if _ASKS_APOLOGY.search(instruction):
        return ""
    sorry = _SORRY.search(_QUOTED.sub(" ", answer))
    limit = SHORT_ANSWER["zh" if is_cjk(answer) else "en"]
    if sorry and length(answer) < limit:
        unit = "characters" if is_cjk(answer) else "words"
        return f"a short apology ('{sorry.group(0)}' in {length(answer)} {unit})"
    return ""


def read_parents(path: str) -> list[Parent]:
    """The unique (instruction, input) tasks of ``path``, in file order."""
    seen, out = set(), []
    for r in read_records(path):
        inst = r.instruction.strip()
        if not inst or (inst, r.input.strip()) in seen:
            continue
        seen.add((inst, r.input.strip()))
        out.append(Parent(r.id or r.where, inst, r.input.strip()))
    if not out:
        raise InputError("no instructions to evolve", path)
    return out
