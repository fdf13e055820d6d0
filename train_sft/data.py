"""Alpaca records → token ids and labels → length-grouped batches.

A training example is the prompt (the Alpaca template, or the tokenizer's chat template) followed by
the response and EOS. Labels are the token ids on the response and -100 on every prompt token (and
later on padding), so the loss is computed on the response only, as in Stanford Alpaca's train.py.
Prompt and response are tokenised separately and concatenated, so the boundary between them is
exact. The batch order of an epoch is a pure function of (seed, epoch): resuming at step N of an
epoch replays the same order and skips the first N steps.

Records come through ``selfinstruct.readers`` (Alpaca JSON, our own records.jsonl with its metadata,
parquet, datasets…), so every format trains the same. Each example remembers where it is in the data
file (the line to fix) and where its record was first read (a filtered records.jsonl keeps the
generate run's line), and errors name both.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from selfinstruct.errors import InputError, UsageError
from selfinstruct.record import Record

IGNORE = -100
PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n")
WINDOW = 512           # length grouping sorts within windows of this many examples (whole steps)
_CHUNK = 1024          # records tokenised per call (fast tokenizers batch in Rust)


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    origin: str                      # "file:line" of the record in the data file
    prompt_tokens: int               # before truncation
    truncated: bool                  # prompt + response + EOS was longer than max_length
    source: str = ""                 # "file:line" where the record was first read, when elsewhere

    @property
    def supervised(self) -> int:
        """Tokens the loss sees: labels that are not -100, after the one-token shift."""
        return sum(label != IGNORE for label in self.labels[1:])


def alpaca_prompt(record: Record) -> str:
    template = PROMPT_INPUT if record.input.strip() else PROMPT_NO_INPUT
    return template.format(instruction=record.instruction, input=record.input)


def chat_texts(record: Record, tokenizer) -> tuple[str, str]:
    """(prompt, response) rendered by the tokenizer's chat template; the response is what the
    template adds for the assistant turn (its end-of-turn token included)."""
    user = record.instruction + (f"\n\n{record.input}" if record.input.strip() else "")
    messages = [{"role": "user", "content": user}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": record.output}],
                                         tokenize=False)
    if not full.startswith(prompt):
        raise UsageError("template=chat: this tokenizer's chat template does not render the prompt as the "
                         "start of the conversation; use template=alpaca")
    return prompt, full[len(prompt):]


def encode_batch(records: list[Record], tokenizer, template: str, max_length: int,
                 origins: list[str] | None = None) -> list[Example]:
    """Token ids and labels of each record, truncated to ``max_length``. ``origins``: where each
    record is in the data file (default: where it was first read)."""
    eos = tokenizer.eos_token_id
    if template == "chat":
        prompts, responses = zip(*(chat_texts(r, tokenizer) for r in records))
        prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        response_ids = [ids if eos in ids else ids + [eos]
                        for ids in tokenizer(list(responses), add_special_tokens=False)["input_ids"]]
    else:
        # The prompt starts the sequence, so it gets the tokenizer's BOS (when it uses one).
        prompt_ids = tokenizer([alpaca_prompt(r) for r in records])["input_ids"]
        response_ids = [ids + [eos] for ids in
                        tokenizer([r.output for r in records], add_special_tokens=False)["input_ids"]]
    if origins is None:
        origins = [r.where for r in records]
    examples = []
    for record, origin, prompt, response in zip(records, origins, prompt_ids, response_ids):
        ids = (prompt + response)[:max_length]
        labels = ([IGNORE] * len(prompt) + response)[:max_length]
        examples.append(Example(ids, labels, origin, len(prompt), len(prompt) + len(response) > max_length,
                                _elsewhere(record, origin)))
    return examples


def load_examples(path: str, tokenizer, template: str, max_length: int,
                  too_long: str = "error") -> tuple[list[Example], list[str]]:
    """Read ``path`` with the project's readers and encode every record; returns the examples and
    the origins of the records skipped for ``too_long="skip"``.

    Raises InputError for a file that is not instruction data, a record without an output, and
    (``too_long="error"``) a record whose response is truncated away entirely; UsageError when
    that is every record.
    """
    from selfinstruct.readers import read_located

    examples: list[Example] = []
    chunk: list[Record] = []
    origins: list[str] = []
    for origin, record in read_located(path):
        if not record.output.strip():
            raise _at(origin, "record has no output to train on (expected Alpaca records: instruction, "
                              "input, output)" + _first_read(_elsewhere(record, origin)))
        chunk.append(record)
        origins.append(origin)
        if len(chunk) == _CHUNK:
            examples += encode_batch(chunk, tokenizer, template, max_length, origins)
            chunk, origins = [], []
    if chunk:
        examples += encode_batch(chunk, tokenizer, template, max_length, origins)
    if not examples:
        raise InputError("no examples to train on", path)
    empty = [e for e in examples if e.supervised == 0]
    if len(empty) == len(examples):
        shortest = min(e.prompt_tokens for e in examples)
        raise UsageError(f"max_length={max_length} leaves no room for a response: every prompt has at least "
                         f"{shortest} tokens; raise max_length above {shortest}")
    if empty and too_long != "skip":
        raise _at(empty[0].origin, f"the prompt fills max_length={max_length} tokens, leaving no response "
                                   f"tokens to train on; raise max_length, shorten this record, or set "
                                   f"too_long=skip" + _first_read(empty[0].source))
    return [e for e in examples if e.supervised], [e.origin for e in empty]


def _elsewhere(record: Record, origin: str) -> str:
    """Where ``record`` was first read, when that is not ``origin`` (else "")."""
    return record.source if record.source != origin else ""


def _first_read(source: str) -> str:
    return f" (first read at {source})" if source else ""


def _at(origin: str, what: str) -> InputError:
    path, _, line = origin.rpartition(":")
    if path and line.isdigit():
        return InputError(what, path, int(line))
    return InputError(what, origin or None)


# --- batching --------------------------------------------------------------------------------


def plan_epoch(lengths: list[int], epoch: int, seed: int, global_batch: int, micro: int,
               group_by_length: bool) -> list[list[list[int]]]:
    """The steps of one epoch, each a list of micro-batches of example indices.

    Which examples form a step depends only on (seed, epoch, global_batch), so a run resumed with
    another micro_batch_size or number of ranks sees the same steps. Micro-batch j of a step goes to
    rank j % world_size. Length grouping shuffles, sorts windows of ~WINDOW examples by length (so
    that a micro-batch, and the ranks of a step, hold similar lengths), then shuffles the steps.
    The last incomplete step of an epoch is dropped; the next epoch's shuffle reaches other examples.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = global_batch * math.ceil(WINDOW / global_batch)
        order = [i for start in range(0, len(order), window)
                 for i in sorted(order[start:start + window], key=lambda i: -lengths[i])]
    steps = [order[i:i + global_batch] for i in range(0, len(order) - global_batch + 1, global_batch)]
    if group_by_length:
        rng.shuffle(steps)
    return [[step[j:j + micro] for j in range(0, global_batch, micro)] for step in steps]


def steps_per_epoch(n_examples: int, global_batch: int) -> int:
    return n_examples // global_batch


def padding_waste(lengths: list[int], steps: list[list[list[int]]]) -> float:
    """Share of the tokens in padded micro-batches that are padding."""
    padded = real = 0
    for step in steps:
        for batch in step:
            longest = max(lengths[i] for i in batch)
            padded += longest * len(batch)
            real += sum(lengths[i] for i in batch)
    return 1 - real / padded if padded else 0.0


def collate(examples: list[Example], pad_id: int):
    """Right-padded tensors: input_ids, labels (-100 on padding), attention_mask."""
    import torch

    longest = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def rank_micro_batches(examples: list[Example], step: list[list[int]], rank: int, world: int, pad_id: int,
                       packing: bool = False, max_length: int = 0) -> list[dict]:
    """The micro-batches rank ``rank`` computes for one step (``step``: the step's micro-batches of
    example indices from ``plan_epoch``), as tensors: input_ids, labels, attention_mask and, when
    packed, position_ids. Every rank gets the same number of micro-batches (FSDP's collectives run
    once per forward on every rank).

    (Packing is being written for issue 14; without it micro-batch j goes to rank j % world.)"""
    if packing:
        raise NotImplementedError("packing")
    return [collate([examples[i] for i in batch], pad_id) for batch in step[rank::world]]
