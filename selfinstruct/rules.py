"""Rule sets: which version of the quality and language rules a run applies.

``default`` is this project's precise set: each rule judges what the task asks for (the
instruction's own words, the answer's stance), so that good human-written data passes, and it adds
rules the papers lack (``missing_material``, ``broken_text``, ``prompt_label``, ``chatter``).

``self-instruct``, ``alpaca`` and ``belle`` reproduce the filtering code each project released, for
users who reproduce those datasets:

- ``self-instruct`` (yizhongw/self-instruct): ``bootstrap_instructions.py`` at generation time (the
  instruction is whitespace-collapsed and ``capitalize()``d, then: ≤ 3 or > 150 words, 13 blacklist
  words as ``\\b``-bounded case-insensitive regexes, "Write a program" at the start, a first
  character that is ASCII punctuation or not ASCII) and ``prepare_for_finetuning.py``'s instance
  checks (empty output, input equal to output, input or output ending with ":").
- ``alpaca`` (tatsu-lab/stanford_alpaca ``generate_instruction.py``): the same instruction rules on
  the stripped (not collapsed, not capitalised) instruction, 18 blacklist words, no instance checks.
- ``belle`` (LianjiaTech/BELLE ``generate_instruction.py``): case-sensitive substrings anywhere in
  the record (image words, "链接", "http", "OpenAI", "chatgpt", "gpt-3"…), "GPT" in the instruction
  (once BELLE's "要求GPT模型能够"-style phrases are removed) or the input, an instruction of ≤ 3
  characters, and, when the input is not empty, one of ≥ 100 characters (≥ 150 when it gives an
  example: 示例 / 例子). No start rule.

BELLE's one list of substrings is reported under the reason its words stand for: the image words and
"链接" as ``blacklist_word``, "http" as ``contains_url`` (the url filter), the model names and
"GPT" as ``refusal`` (the refusal filter).

Not reproduced here (other stages or no record-level meaning): the novelty checks (ROUGE-L > 0.7 in
Self-Instruct and Alpaca is the rouge stage's; BELLE's BM25 score > 18 over bloomz tokens is not
reproduced), and Self-Instruct's per-task instance rules at fine-tuning time (a task whose instances
share an input with different outputs is dropped whole; at most 5 instances per task).

A rule a paper set does not have keeps every record under that set. Those projects filtered at
generation time; the rules are reproduced as a filter over records, so what they decided to keep is
the same, but an instruction they rewrote while keeping it (capitalised, BELLE's GPT phrases cut
out) is not rewritten here.

``paper`` names the source project's set: in ``generate`` the recipe's (``--lang zh`` → belle; a
recipe without a released set of its own → self-instruct, the method the others build on); in
``filter``, self-instruct for ``--lang en`` and belle for ``--lang zh``. With ``filter --lang auto``
it stays ``paper``, which the filters read per record: belle for a record whose instruction is
mostly Han, self-instruct otherwise (a mixed file is judged by each record's own paper rules,
instead of every Chinese record failing self-instruct's ASCII start rule).
"""
from __future__ import annotations

from selfinstruct.errors import UsageError
from selfinstruct.text import is_cjk

RULE_SETS = ("default", "self-instruct", "alpaca", "belle")
PAPER = "paper"
# What a filter's ``rules`` option takes: a set, or "paper" decided per record.
FILTER_RULES = (*RULE_SETS, PAPER)

# The recipe whose source project has a released rule set of its own.
_RECIPE_SETS = {"alpaca": "alpaca", "self-instruct": "self-instruct", "self_instruct": "self-instruct"}


def _refuse(name: str) -> UsageError:
    return UsageError(f"--rules must be one of default, paper, {', '.join(RULE_SETS[1:])}, not '{name}'")


def resolve_rules(name: str, *, command: str, recipe: str | None, lang: str) -> str:
    """The rule set a run applies for ``--rules name`` (``paper`` resolved as the module says).

    Returns one of ``RULE_SETS``, or ``"paper"`` for ``filter --lang auto`` (decided per record).
    """
    name = (name or "default").strip().lower()
    if name in RULE_SETS:
        return name
    if name != PAPER:
        raise _refuse(name)
    lang = (lang or "auto").lower()
    if lang.startswith("zh"):
        return "belle"
    if command == "generate":
        return _RECIPE_SETS.get((recipe or "").lower(), "self-instruct")
    if lang == "en":
        return "self-instruct"
    return PAPER


def check_rules(name: str) -> str:
    """A filter's ``rules`` option, validated (``UsageError`` listing the sets)."""
    value = (name or "default").strip().lower()
    if value not in FILTER_RULES:
        raise _refuse(name)
    return value


def paper_set_for(instruction: str) -> str:
    """The paper set of one record under ``rules="paper"``: by the instruction's script."""
    return "belle" if is_cjk(instruction) else "self-instruct"
