"""Records (Alpaca or conversations) → token ids and labels → length-grouped or packed batches.

A training example is the prompt followed by the response, labels being the token ids on the
response and -100 on every prompt token (and later on padding), so the loss is computed on the
response only, as in Stanford Alpaca's train.py. template=alpaca: Stanford Alpaca's prompt, the
output and EOS. template=chat: the conversation (a record's ``messages``, or its single exchange)
through the tokenizer's chat template, rendered turn by turn so that every assistant turn and its
end-of-turn token are supervised and the system turn, user turns and role headers are not. Prompt
and response pieces are tokenised separately and concatenated, so the boundaries are exact.

The batch order of an epoch is a pure function of (seed, epoch): resuming at step N of an epoch
replays the same order and skips the first N steps. With packing, the same examples of a step go
into rows of up to max_length tokens, position ids restarting at each example (see ``pack_rows``).

Records come through ``selfinstruct.readers`` (Alpaca JSON, our own records.jsonl with its metadata,
parquet, datasets…), so every format trains the same. Each example remembers where it is in the data
file (the line to fix) and where its record was first read (a filtered records.jsonl keeps the
generate run's line), and errors name both.
"""
from __future__ import annotations

import heapq
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


def chat_segments(record: Record, tokenizer, origin: str = "") -> list[tuple[str, bool]]:
    """The record's conversation rendered by the tokenizer's chat template as consecutive pieces of
    text, each with whether it is an assistant turn: [(prompt, False), (reply, True), (next user
    turn…, False), (reply, True), …]. Their concatenation is the conversation rendered through its
    last assistant turn (user turns after it teach nothing and are left out).

    Rendered incrementally: the prompt up to each assistant turn with the generation prompt, then the
    conversation through that turn; each render must start with the one before, so the pieces are
    exactly what the template adds and the role headers fall in the prompt pieces. A template that
    rewrites earlier turns once later ones follow (some drop past reasoning) fails that check and is
    a UsageError: its turns cannot be masked one by one. ``origin``: where the record is in the data
    file, for errors (default: where it was first read)."""
    origin = origin or record.where
    messages = record.conversation()
    replies = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    segments: list[tuple[str, bool]] = []
    rendered = ""
    for k in replies:
        prompt = _render(tokenizer, messages[:k], record, origin, generation_prompt=True)
        through = _render(tokenizer, messages[:k + 1], record, origin, generation_prompt=False)
        if not prompt.startswith(rendered) or not through.startswith(prompt):
            raise UsageError(
                f"template=chat: this tokenizer's chat template does not render a conversation as its "
                f"earlier turns followed by the next ones (assistant turn {replies.index(k) + 1} of the record "
                f"at {origin or '?'}), so its turns cannot be masked one by one; "
                + ("use template=alpaca" if record.messages is None else
                   "use a tokenizer folder whose chat template keeps earlier turns as they were"))
        segments += [(prompt[len(rendered):], False), (through[len(prompt):], True)]
        rendered = through
    return segments


def _render(tokenizer, messages: list[dict], record: Record, origin: str, generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
    except Exception as e:          # jinja's raise_exception: roles that do not alternate, a system turn…
        raise _at(origin, f"the tokenizer's chat template refuses this conversation: {e}"
                  + _first_read(_elsewhere(record, origin))) from e


def _check_generation_prompt(tokenizer) -> None:
    """The template must add the assistant's header for add_generation_prompt: else the header would
    fall in the reply's piece, and be trained on as if the assistant said it."""
    probe = [{"role": "user", "content": "?"}]
    if (tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
            == tokenizer.apply_chat_template(probe, add_generation_prompt=False, tokenize=False)):
        raise UsageError("template=chat: this tokenizer's chat template ignores add_generation_prompt, so the "
                         "assistant's role header cannot be told from its reply; use a tokenizer folder whose "
                         "template supports it, or template=alpaca")


def chat_texts(record: Record, tokenizer) -> tuple[str, str]:
    """(prompt, response) of a single-turn record rendered by the tokenizer's chat template; the
    response is what the template adds for the assistant turn."""
    (prompt, _), (response, _) = chat_segments(record, tokenizer)[:2]
    return prompt, response


def _end_of_turn_ids(tokenizer) -> frozenset[int]:
    """Ids that can close an assistant turn: EOS and the tokenizer's other special tokens
    (<|im_end|>, <|eot_id|>, <end_of_turn>…)."""
    special = {i for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items() if token.special}
    return frozenset(special | set(tokenizer.all_special_ids) | {tokenizer.eos_token_id})


def _conversation_ids(pieces: list[list[int]], is_reply: list[bool], tokenizer,
                      end_of_turn: frozenset[int]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one rendered conversation from its tokenised pieces.

    A reply is supervised through its end-of-turn token (the last special token the template put in
    it); what follows that token (the template's separator, "\n" in ChatML) stays in the input for
    the next turn but is -100, and after the last reply it is dropped: nothing learns from it. A
    template that closes replies with no special token (the last special token is followed by more
    than whitespace, or there is none) gets EOS appended to each reply, so that every supervised
    reply ends in a token that stops generation."""
    ids: list[int] = []
    labels: list[int] = []
    last_reply = max(k for k, reply in enumerate(is_reply) if reply)
    for k, (piece, reply) in enumerate(zip(pieces, is_reply)):
        if not reply:
            ids += piece
            labels += [IGNORE] * len(piece)
            continue
        closing = max((j for j, t in enumerate(piece) if t in end_of_turn), default=None)
        if closing is None or tokenizer.decode(piece[closing + 1:]).strip():
            supervised, separator = piece + [tokenizer.eos_token_id], []
        else:
            supervised, separator = piece[:closing + 1], piece[closing + 1:]
        if k == last_reply:
            separator = []
        ids += supervised + separator
        labels += supervised + [IGNORE] * len(separator)
    return ids, labels


def encode_batch(records: list[Record], tokenizer, template: str, max_length: int,
                 origins: list[str] | None = None) -> list[Example]:
    """Token ids and labels of each record, truncated to ``max_length``. ``origins``: where each
    record is in the data file (default: where it was first read).

    template=alpaca: Stanford Alpaca's prompt, then the response and EOS. A record holding more
    than one user/assistant exchange (or a system turn) is an InputError: Alpaca has no place for
    it. template=chat: the conversation (``Record.conversation()``: a single-turn record is one
    exchange) through the tokenizer's chat template, loss on every assistant turn and nothing else."""
    if origins is None:
        origins = [r.where for r in records]
    if template == "chat":
        encoded = _encode_chats(records, origins, tokenizer)
    else:
        for record, origin in zip(records, origins):
            if record.messages is not None and [m["role"] for m in record.messages] != ["user", "assistant"]:
                raise _at(origin, f"this record is a conversation ({record.turns} assistant "
                                  f"turn{'s' if record.turns != 1 else ''}"
                                  f"{', a system turn' if any(m['role'] == 'system' for m in record.messages) else ''}"
                                  f"); template=alpaca holds one instruction and one response: train it with "
                                  f"template=chat" + _first_read(_elsewhere(record, origin)))
        eos = tokenizer.eos_token_id
        # The prompt starts the sequence, so it gets the tokenizer's BOS (when it uses one).
        prompt_ids = tokenizer([alpaca_prompt(r) for r in records])["input_ids"]
        response_ids = [ids + [eos] for ids in
                        tokenizer([r.output for r in records], add_special_tokens=False)["input_ids"]]
        encoded = [(p + r, [IGNORE] * len(p) + r, len(p)) for p, r in zip(prompt_ids, response_ids)]
    examples = []
    for record, origin, (ids, labels, prompt_tokens) in zip(records, origins, encoded):
        examples.append(Example(ids[:max_length], labels[:max_length], origin, prompt_tokens,
                                len(ids) > max_length, _elsewhere(record, origin)))
    return examples


def _encode_chats(records: list[Record], origins: list[str], tokenizer) -> list[tuple[list[int], list[int], int]]:
    """(input_ids, labels, prompt tokens before the first reply) of each record, untruncated. The
    pieces of every record are tokenised in one call (fast tokenizers batch in Rust), each piece on
    its own so that the boundary between prompt and reply is exact."""
    _check_generation_prompt(tokenizer)
    rendered = [chat_segments(r, tokenizer, origin) for r, origin in zip(records, origins)]
    texts = [text for segments in rendered for text, _ in segments]
    pieces = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
    end_of_turn = _end_of_turn_ids(tokenizer)
    encoded = []
    for segments in rendered:
        own = [next(pieces) for _ in segments]
        ids, labels = _conversation_ids(own, [reply for _, reply in segments], tokenizer, end_of_turn)
        encoded.append((ids, labels, len(own[0])))
    return encoded


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
        if not _has_reply(record):
            raise _at(origin, ("conversation has no assistant turn to train on" if record.messages is not None
                               else "record has no output to train on (expected Alpaca records: "
                                    "instruction, input, output)") + _first_read(_elsewhere(record, origin)))
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


def _has_reply(record: Record) -> bool:
    return any(m["role"] == "assistant" and m["content"].strip() for m in record.conversation())


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

    Unpacked, micro-batch j goes to rank j % world. Packed, the step's examples (the same ones) go
    into rows of at most ``max_length`` tokens (``pack_rows``) and the rows are dealt to the ranks
    (``rank_rows``). Pass position_ids and NO attention_mask to the model with packed rows: the
    position ids restarting at 0 are what tell transformers where each example ends; given an
    attention_mask it ignores them and the examples of a row attend to each other; the same with a
    KV cache (``model.config.use_cache`` must be False, as for any training)."""
    if not packing:
        return [collate([examples[i] for i in batch], pad_id) for batch in step[rank::world]]
    rows = step_rows(step, {i: len(examples[i].input_ids) for batch in step for i in batch}, max_length, world)
    return [collate_packed([[examples[i] for i in row] for row in batch], pad_id)
            for batch in rank_rows(rows, rank, world, len(step[0]))]


# --- packing -----------------------------------------------------------------------------------
# Several whole examples per row, each with position ids from 0, so that transformers' mask (sdpa,
# eager, flex; flash-attention's varlen path) is block-diagonal causal: no token attends to another
# example. The examples of a step are the ones plan_epoch chose, so the step's loss is the same
# mean over its supervised tokens whether packed or not; only the rows and their padding change.


def pack_rows(lengths: list[int], max_length: int, ranks: int = 1) -> list[list[int]]:
    """Indices into ``lengths`` grouped into rows whose lengths sum to at most ``max_length``, few
    and even, fullest first, for ``ranks`` ranks to share (row r goes to rank r % ranks).

    Even rows matter twice: a micro-batch pads its rows to the longest one, and a step lasts as long
    as its slowest rank. First-fit decreasing needs few rows but leaves them full and one short tail
    row per step (padded to a full row), and a number of rows that may not divide among the ranks.
    So the examples are also dealt longest first, each to the emptiest row (LPT scheduling: rows end
    within one example of each other), into as many rows as first-fit needed, one more, and those
    counts rounded up to a multiple of ``ranks``. Of the layouts where every row fits, the one whose
    busiest rank computes the fewest token slots (its rows x its longest row) wins, the fewer rows on
    a tie. Deterministic (ties broken by index), so every rank computes the same rows alone."""
    if lengths and max(lengths) > max_length:
        raise ValueError(f"an example of {max(lengths)} tokens does not fit a packed row of max_length={max_length}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    first_fit = _fullest_first(_first_fit(order, lengths, max_length), lengths)
    layouts = [first_fit]
    fewest = len(first_fit)
    for count in sorted({n for rows in (fewest, fewest + 1) for n in (rows, math.ceil(rows / ranks) * ranks)}):
        even = _emptiest_first(order, lengths, max_length, min(count, len(lengths)))
        if even is not None:
            layouts.append(_fullest_first(even, lengths))

    def cost(rows: list[list[int]]) -> tuple[int, int]:
        loads = [sum(lengths[i] for i in row) for row in rows]
        busiest = max((len(loads[r::ranks]) * max(loads[r::ranks], default=0) for r in range(ranks)), default=0)
        return busiest, len(rows)

    return min(layouts, key=cost)


def _fullest_first(rows: list[list[int]], lengths: list[int]) -> list[list[int]]:
    loads = [sum(lengths[i] for i in row) for row in rows]
    return [rows[r] for r in sorted(range(len(rows)), key=lambda r: (-loads[r], r))]


def _first_fit(order: list[int], lengths: list[int], max_length: int) -> list[list[int]]:
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        row = next((r for r, free in enumerate(room) if lengths[i] <= free), None)
        if row is None:
            rows.append([i])
            room.append(max_length - lengths[i])
        else:
            rows[row].append(i)
            room[row] -= lengths[i]
    return rows


def _emptiest_first(order: list[int], lengths: list[int], max_length: int, count: int) -> list[list[int]] | None:
    """``order`` dealt to ``count`` rows, each example to the emptiest; None when one does not fit."""
    rows: list[list[int]] = [[] for _ in range(count)]
    emptiest = [(0, r) for r in range(count)]          # a heap of (load, row)
    for i in order:
        load, row = emptiest[0]
        if load + lengths[i] > max_length:
            return None
        rows[row].append(i)
        heapq.heapreplace(emptiest, (load + lengths[i], row))
    return [row for row in rows if row]


def step_rows(step: list[list[int]], lengths, max_length: int, ranks: int = 1) -> list[list[int]]:
    """The packed rows of one step, as example indices (``lengths[i]``: example i's token count)."""
    if max_length < 1:
        raise ValueError("packing needs max_length, the length of a packed row")
    members = [i for batch in step for i in batch]
    return [[members[k] for k in row] for row in pack_rows([lengths[i] for i in members], max_length, ranks)]


def rank_rows(rows: list, rank: int, world: int, micro: int) -> list[list]:
    """The micro-batches (lists of at most ``micro`` rows) of rank ``rank``: rows are dealt round
    robin (the fullest first, so ranks get similar token counts), and every rank splits its rows
    into the same number of micro-batches, ceil(rows / (micro x world)). A rank with fewer rows than
    that gets an empty micro-batch (``collate_packed`` makes it one padding row): it must still run a
    forward and backward, or the other ranks would wait forever in FSDP's all-gather."""
    count = max(1, math.ceil(len(rows) / (micro * world)))
    mine = rows[rank::world]
    size, extra = divmod(len(mine), count)
    batches, start = [], 0
    for j in range(count):                      # sizes differ by at most one row
        end = start + size + (j < extra)
        batches.append(mine[start:end])
        start = end
    return batches


def collate_packed(rows: list[list[Example]], pad_id: int):
    """Rows of concatenated examples, right-padded to the longest row: input_ids, labels (-100 on
    padding), attention_mask (1 on real tokens: for counting, not for the model) and position_ids
    (0, 1, … within each example; the padding counts from 0 too, a segment of its own, so no real
    token's mask changes). No rows at all: one row of two padding tokens, which carries no loss."""
    import torch

    widths = [sum(len(e.input_ids) for e in row) for row in rows]
    longest = max(widths, default=0) or 2
    count = max(len(rows), 1)
    ids = torch.full((count, longest), pad_id, dtype=torch.long)
    labels = torch.full((count, longest), IGNORE, dtype=torch.long)
    mask = torch.zeros((count, longest), dtype=torch.long)
    positions = torch.zeros((count, longest), dtype=torch.long)
    for r, (row, width) in enumerate(zip(rows, widths)):
        start = 0
        for e in row:
            n = len(e.input_ids)
            ids[r, start:start + n] = torch.tensor(e.input_ids)
            labels[r, start:start + n] = torch.tensor(e.labels)
            # An example's first token is never a target (nothing before it in its own sequence);
            # packed, the previous example's last token would otherwise be trained to predict it.
            labels[r, start] = IGNORE
            positions[r, start:start + n] = torch.arange(n)
            start += n
        mask[r, :width] = 1
        positions[r, width:] = torch.arange(longest - width)
    if not rows:
        positions[0] = torch.arange(longest)
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "position_ids": positions}


def packed_padding_waste(lengths: list[int], steps: list[list[list[int]]], max_length: int, micro: int,
                         world: int, most: int = 1000) -> float:
    """Share of the tokens in packed micro-batches that are padding (row ends, rows shorter than
    their micro-batch's longest, the padding rows of ranks short of rows): comparable with
    ``padding_waste`` of the same steps unpacked. Measured on at most ``most`` steps, evenly spaced
    (packing a step takes milliseconds: an epoch of millions of examples would take minutes)."""
    padded = real = 0
    for step in steps[::math.ceil(len(steps) / most) if steps else 1]:
        rows = step_rows(step, lengths, max_length, world)
        for rank in range(world):
            for batch in rank_rows(rows, rank, world, micro):
                widths = [sum(lengths[i] for i in row) for row in batch]
                padded += (max(widths, default=0) or 2) * max(len(batch), 1)
                real += sum(widths)
    return 1 - real / padded if padded else 0.0
