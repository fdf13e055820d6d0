"""train_sft packing: several whole examples per row, position ids restarting at each one, and the
proof that it changes nothing but the padding: a packed batch's loss (and every logit) equals the
same examples run one by one, on a real (tiny, random) LlamaForCausalLM with sdpa and eager
attention. Controls show that the proof fails when positions do not restart, or when an
attention_mask is passed with the packed rows (transformers then ignores the boundaries).

The examples are token ids made up here; no tokenizer, no model file, no download."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfinstruct.train_sft import data
from selfinstruct.train_sft.data import IGNORE, Example

pytestmark = pytest.mark.train

PAD = 0
VOCAB = 96


def example(n: int, prompt: int, seed: int) -> Example:
    """``n`` tokens, the first ``prompt`` of them masked (``prompt=0``: every label set, which the
    packed rows must still not train across examples)."""
    rng = random.Random(seed)
    ids = [rng.randrange(1, VOCAB) for _ in range(n)]
    return Example(ids, [IGNORE] * prompt + ids[prompt:], f"d.json:{seed}", prompt, False)


def mixed_examples(count: int, longest: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for k in range(count):
        n = rng.randint(3, longest)
        out.append(example(n, rng.randint(0, n - 2), seed * 1000 + k))
    return out


def one_step(count: int, micro: int) -> list[list[int]]:
    return [list(range(j, min(j + micro, count))) for j in range(0, count, micro)]


# --- rows ------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 64), max_size=60), st.integers(64, 200))
def test_pack_rows_places_every_example_once_in_rows_that_fit_fullest_first(lengths, max_length):
    rows = data.pack_rows(lengths, max_length)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    loads = [sum(lengths[i] for i in row) for row in rows]
    assert all(load <= max_length for load in loads) and loads == sorted(loads, reverse=True)
    # Never more than one row beyond first-fit decreasing (itself within 11/9 of the fewest possible).
    assert len(rows) <= first_fit_rows(lengths, max_length) + 1
    assert rows == data.pack_rows(lengths, max_length)


def first_fit_rows(lengths: list[int], max_length: int) -> int:
    room: list[int] = []
    for n in sorted(lengths, reverse=True):
        fit = next((r for r, free in enumerate(room) if n <= free), None)
        if fit is None:
            room.append(max_length - n)
        else:
            room[fit] -= n
    return len(room)


@pytest.mark.parametrize("count", [16, 64, 500])
def test_pack_rows_makes_few_rows_that_pad_little_side_by_side(count):
    lengths = [(i * 7919) % 200 + 10 for i in range(count)]
    rows = data.pack_rows(lengths, 512)
    loads = [sum(lengths[i] for i in row) for row in rows]
    assert len(rows) <= first_fit_rows(lengths, 512) + 1 <= sum(lengths) / 512 * 1.05 + 2
    # Padded side by side to the longest row (as a micro-batch does), the rows are nearly all tokens.
    assert len(rows) * max(loads) - sum(lengths) < 0.03 * sum(lengths)


def test_a_step_whose_first_fit_leaves_a_short_tail_row_gets_even_rows_instead():
    # First-fit decreasing: [300, 200] [300, 200] [300, 100, 100] [100], a tail row of 100 that a
    # micro-batch pads to 500. Even: [300, 100] x 3 and [200, 200], four rows of 400.
    lengths = [300, 300, 300, 200, 200, 100, 100, 100]
    rows = data.pack_rows(lengths, 512)
    loads = [sum(lengths[i] for i in row) for row in rows]
    assert len(rows) == first_fit_rows(lengths, 512) == 4
    assert loads == [400, 400, 400, 400]


def test_an_example_longer_than_a_row_or_a_missing_max_length_is_refused():
    with pytest.raises(ValueError, match="does not fit a packed row of max_length=8"):
        data.pack_rows([3, 9], 8)
    with pytest.raises(ValueError, match="packing needs max_length"):
        data.rank_micro_batches([example(4, 1, 0)], [[0]], 0, 1, PAD, packing=True, max_length=0)


def test_rows_are_shared_evenly_by_the_ranks_that_compute_them():
    # First-fit needs 5 rows of ~480 for these 16 examples: 3 rows on one rank, 2 on the other, which
    # would wait. For 2 ranks the rows are 6 (or 4) even ones: the same work on both.
    lengths = [260, 250, 240, 230, 220, 180, 170, 160, 130, 110, 100, 90, 80, 70, 60, 50]
    assert first_fit_rows(lengths, 512) == 5
    rows = data.pack_rows(lengths, 512, ranks=2)
    assert len(rows) % 2 == 0
    work = [len(rows[r::2]) * max(sum(lengths[i] for i in row) for row in rows[r::2]) for r in range(2)]
    assert max(work) <= 1.1 * sum(lengths) / 2 < 3 * 510        # first-fit: 3 rows of up to 510 on rank 0
    assert len(data.pack_rows(lengths, 512)) == 5          # one rank: fewest rows


# --- tensors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("count, micro, world, max_length", [
    (16, 2, 2, 48), (8, 1, 2, 64), (12, 4, 1, 40), (7, 1, 2, 20), (5, 1, 4, 256), (16, 4, 2, 24)])
def test_every_rank_gets_the_same_number_of_micro_batches_holding_the_steps_examples_whole(
        count, micro, world, max_length):
    examples = mixed_examples(count, min(max_length, 24), seed=count)
    step = one_step(count, micro)
    seen = []
    per_rank = []
    targets = 0
    for rank in range(world):
        batches = data.rank_micro_batches(examples, step, rank, world, PAD, packing=True, max_length=max_length)
        per_rank.append(len(batches))
        for batch in batches:
            targets += int((batch["labels"][:, 1:] != IGNORE).sum())
            assert set(batch) == {"input_ids", "labels", "attention_mask", "position_ids"}
            assert batch["input_ids"].shape[1] <= max(max_length, 2) and batch["input_ids"].shape[0] <= micro
            for ids, labels, mask, positions in zip(*(batch[k].tolist() for k in
                                                      ("input_ids", "labels", "attention_mask", "position_ids"))):
                seen += unpack_row(examples, ids, labels, mask, positions)
    assert len(set(per_rank)) == 1
    assert sorted(seen) == list(range(count))
    # The loss's denominator, the step's supervised tokens, is what the packed rows hold as targets.
    assert targets == sum(e.supervised for e in examples)


def unpack_row(examples: list[Example], ids, labels, mask, positions) -> list[int]:
    """The examples a row holds, checking each is whole, starts at position 0 with its first label
    masked, and that padding is only at the row's end (pad id, label -100, its own positions)."""
    width = sum(mask)
    assert mask == [1] * width + [0] * (len(mask) - width)
    assert ids[width:] == [PAD] * (len(ids) - width) and set(labels[width:]) <= {IGNORE}
    assert positions[width:] == list(range(len(ids) - width))
    found, start = [], 0
    while start < width:
        end = start + 1
        while end < width and positions[end] == positions[end - 1] + 1:
            end += 1
        assert positions[start] == 0
        index = next(i for i, e in enumerate(examples) if e.input_ids == ids[start:end])
        assert labels[start:end] == [IGNORE] + examples[index].labels[1:]
        found.append(index)
        start = end
    return found


def test_a_rank_short_of_rows_runs_a_padding_row_that_carries_no_loss():
    # Three examples that each fill a row, two ranks, one row per micro-batch: rank 1 gets one row,
    # rank 0 two, so rank 1's second micro-batch is padding (its forward keeps FSDP's collectives paired).
    examples = [example(30, 5, k) for k in range(3)]
    batches = [data.rank_micro_batches(examples, [[0], [1], [2]], rank, 2, PAD, packing=True, max_length=32)
               for rank in range(2)]
    assert [len(b) for b in batches] == [2, 2]
    filler = batches[1][1]
    assert filler["input_ids"].tolist() == [[PAD, PAD]] and filler["labels"].tolist() == [[IGNORE, IGNORE]]
    assert filler["attention_mask"].sum() == 0


def test_without_packing_the_micro_batches_are_the_plans():
    examples = mixed_examples(8, 20)
    step = one_step(8, 2)
    batches = data.rank_micro_batches(examples, step, 1, 2, PAD)
    assert len(batches) == 2 and "position_ids" not in batches[0]
    assert batches[0]["input_ids"].tolist() == data.collate([examples[2], examples[3]], PAD)["input_ids"].tolist()


# --- padding waste ---------------------------------------------------------------------------------


def test_packed_padding_waste_is_what_the_tensors_hold_and_far_below_grouped_and_random():
    examples = mixed_examples(256, 120, seed=3)
    lengths = [len(e.input_ids) for e in examples]
    steps = data.plan_epoch(lengths, 0, 5, global_batch=32, micro=4, group_by_length=True)
    waste = data.packed_padding_waste(lengths, steps, 128, micro=4, world=2)
    real = total = 0
    for step in steps:
        for rank in range(2):
            for batch in data.rank_micro_batches(examples, step, rank, 2, PAD, packing=True, max_length=128):
                real += int(batch["attention_mask"].sum())
                total += batch["input_ids"].numel()
    assert waste == pytest.approx(1 - real / total)
    grouped = data.padding_waste(lengths, steps)
    random_order = data.padding_waste(lengths, data.plan_epoch(lengths, 0, 5, 32, 4, False))
    # Length grouping already pads little on these lengths (rows of 128 leave gaps at their ends);
    # both are far below random order.
    assert waste < 0.05 and grouped < 0.05 < 0.3 < random_order


def test_packed_padding_waste_of_a_long_epoch_is_measured_on_evenly_spaced_steps():
    lengths = [(i * 7919) % 300 + 10 for i in range(640)]
    steps = data.plan_epoch(lengths, 0, 5, global_batch=32, micro=4, group_by_length=False)
    assert len(steps) == 20
    assert data.packed_padding_waste(lengths, steps, 512, 4, 2, most=5) == data.packed_padding_waste(
        lengths, steps[::4], 512, 4, 2)
    assert data.packed_padding_waste(lengths, steps, 512, 4, 2, most=5) != data.packed_padding_waste(
        lengths, steps, 512, 4, 2)


# --- the loss proof ---------------------------------------------------------------------------------


def tiny_llama(attention: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=PAD, attn_implementation=attention, use_cache=False)
    return LlamaForCausalLM(config).float().eval()    # no KV cache, as in training (see the control below)


def token_loss_sum(model, batch: dict, with_mask: bool = False):
    """Sum of the token losses as the training loop computes them (shift by one, -100 ignored)."""
    import torch.nn.functional as F

    inputs = {"input_ids": batch["input_ids"]}
    if "position_ids" in batch:
        inputs["position_ids"] = batch["position_ids"]
    if with_mask:
        inputs["attention_mask"] = batch["attention_mask"]
    logits = model(**inputs).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=IGNORE,
                           reduction="sum")


@pytest.fixture(scope="module")
def packed_case():
    """Ten examples of mixed lengths (some with every label set) packed three or four to a row."""
    examples = mixed_examples(10, 30, seed=7) + [example(12, 0, 99)]
    batches = data.rank_micro_batches(examples, one_step(len(examples), 4), 0, 1, PAD, packing=True,
                                      max_length=64)
    assert any((b["position_ids"][:, 1:] == 0).any() for b in batches)       # rows do hold several examples
    return examples, batches


def unpacked_mean(model, examples: list[Example]) -> float:
    import torch

    with torch.no_grad():
        total = sum(float(token_loss_sum(model, data.collate([e], PAD))) for e in examples)
    return total / sum(e.supervised for e in examples)


def packed_mean(model, examples: list[Example], batches: list[dict], **options) -> float:
    import torch

    with torch.no_grad():
        total = sum(float(token_loss_sum(model, b, **options)) for b in batches)
    return total / sum(e.supervised for e in examples)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_packed_batch_has_the_loss_of_its_examples_run_one_by_one(packed_case, attention):
    examples, batches = packed_case
    model = tiny_llama(attention)
    assert packed_mean(model, examples, batches) == pytest.approx(unpacked_mean(model, examples), rel=1e-6)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_each_packed_token_has_the_logits_it_has_alone(packed_case, attention):
    import torch

    examples, batches = packed_case
    model = tiny_llama(attention)
    with torch.no_grad():
        for batch in batches:
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
            for r, row in enumerate(batch["input_ids"].tolist()):
                positions, start = batch["position_ids"][r].tolist(), 0
                while start < int(batch["attention_mask"][r].sum()):
                    end = start + 1
                    while end < len(row) and positions[end] == positions[end - 1] + 1:
                        end += 1
                    alone = model(input_ids=torch.tensor([row[start:end]])).logits[0]
                    torch.testing.assert_close(logits[r, start:end], alone, rtol=1e-5, atol=1e-5)
                    start = end


def test_control_positions_that_do_not_restart_let_examples_attend_to_each_other(packed_case):
    import torch

    examples, batches = packed_case
    model = tiny_llama("sdpa")
    running = [{**b, "position_ids": torch.arange(b["input_ids"].shape[1]).expand_as(b["input_ids"])}
               for b in batches]
    assert abs(packed_mean(model, examples, running) - unpacked_mean(model, examples)) > 1e-3


def test_control_an_attention_mask_passed_with_packed_rows_undoes_the_boundaries(packed_case):
    examples, batches = packed_case
    model = tiny_llama("sdpa")
    assert abs(packed_mean(model, examples, batches, with_mask=True) - unpacked_mean(model, examples)) > 1e-3


def test_control_a_model_that_keeps_a_kv_cache_ignores_the_boundaries(packed_case):
    # transformers looks for packed rows only without a cache: the loop must run with use_cache=False.
    examples, batches = packed_case
    model = tiny_llama("sdpa")
    model.config.use_cache = True
    assert abs(packed_mean(model, examples, batches) - unpacked_mean(model, examples)) > 1e-3


def test_packed_and_length_grouped_steps_have_the_same_loss():
    examples = mixed_examples(16, 40, seed=11)
    lengths = [len(e.input_ids) for e in examples]
    [step] = data.plan_epoch(lengths, 0, 1, global_batch=16, micro=4, group_by_length=True)
    model = tiny_llama("sdpa")
    grouped = data.rank_micro_batches(examples, step, 0, 1, PAD)
    packed = data.rank_micro_batches(examples, step, 0, 1, PAD, packing=True, max_length=48)
    assert len(packed) < len(grouped)
    assert packed_mean(model, examples, packed) == pytest.approx(packed_mean(model, examples, grouped), rel=1e-6)
