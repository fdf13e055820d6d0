"""train_sft proves its numbers: the loss it logs is transformers' loss on the same batch, the loss of
an accumulated step is the mean over all its tokens, the exported model holds the trained weights,
and a run killed with SIGKILL and resumed ends where the uninterrupted run ends.

Every reference is computed here from the data file alone (tests/train_helpers.py rebuilds the batch
of a step with the functions the loop uses) and from transformers' own code, not from the recipe's.
The recipe runs under torchrun with 2 CPU ranks (gloo) where ranks matter.
"""
from __future__ import annotations

import json

import pytest

from tests import train_helpers as th

pytestmark = [pytest.mark.train, pytest.mark.embedded]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """24 records: with global_batch_size=8, three steps per epoch."""
    return th.write_rows(tmp_path_factory.mktemp("data") / "data.json", th.instruction_rows(24))


def first_row(out) -> dict:
    rows = th.metrics(out)
    assert rows[0]["step"] == 1
    return rows[0]


# --- the loss against transformers ------------------------------------------------------------------


@pytest.mark.slow
def test_step_1_loss_of_one_micro_batch_is_transformers_loss_with_labels(data_file, tokenizer_dir, tokenizer,
                                                                         tmp_path):
    args = th.tiny_args(data_file, tokenizer_dir, tmp_path / "out", "global_batch_size=4", "micro_batch_size=4",
                        "max_steps=1", "export=false")
    result = th.train_one_rank(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 ranks x 1 accumulation" in result.stderr + result.stdout

    c = th.load_config(args)
    [batch] = th.step_micro_batches(c, tokenizer, th.examples(c, tokenizer), 0, rank=0, world=1)
    assert (batch["labels"] == -100).any(dim=1).all()          # padding and prompts are in the batch
    expected = th.hf_loss(th.initial_model(c, tokenizer), batch)
    assert first_row(tmp_path / "out")["loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_an_accumulated_step_over_two_ranks_is_the_mean_over_all_its_tokens(data_file, tokenizer_dir, tokenizer,
                                                                          tmp_path):
    # 8 examples a step, 2 per micro-batch, 2 ranks: 2 micro-batches per rank, of different sizes.
    args = th.tiny_args(data_file, tokenizer_dir, tmp_path / "out", "global_batch_size=8", "micro_batch_size=2",
                        "group_by_length=false", "max_steps=1", "export=false")
    result = th.torchrun(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 ranks x 2 accumulation" in result.stderr + result.stdout

    c = th.load_config(args)
    encoded = th.examples(c, tokenizer)
    batches = [b for rank in (0, 1) for b in th.step_micro_batches(c, tokenizer, encoded, 0, rank, world=2)]
    counts = [th.supervised_tokens(b) for b in batches]
    assert len(batches) == 4 and len(set(counts)) > 1
    model = th.initial_model(c, tokenizer)
    # transformers' Trainer accumulates this way: each micro-batch's token sum / the step's token count.
    token_mean = sum(th.hf_loss(model, b, num_items_in_batch=sum(counts)) for b in batches)
    mean_of_means = sum(th.hf_loss(model, b) for b in batches) / len(batches)
    assert abs(token_mean - mean_of_means) > 1e-3 * token_mean         # the data tells the two apart
    assert first_row(tmp_path / "out")["loss"] == pytest.approx(token_mean, rel=1e-6)
    assert first_row(tmp_path / "out")["supervised"] == sum(counts)
    # The gradient too (before clipping): micro-batches accumulated without reduction, ranks averaged.
    assert first_row(tmp_path / "out")["grad_norm"] == pytest.approx(th.hf_gradient_norm(model, batches), rel=1e-5)


# --- the export holds what was trained ---------------------------------------------------------------

# Full fine-tuning, LoRA merged, packed rows, and LoRA saved as an adapter on packed rows.
EXPORT_VARIANTS = {"full": [], "lora": ["peft=lora", "lora_dropout=0.1"], "packed": ["packing=true"],
                   "lora-adapter-packed": ["peft=lora", "lora_export=adapter", "packing=true"]}


@pytest.fixture(scope="module", params=list(EXPORT_VARIANTS))
def exported_run(request, tmp_path_factory, data_file, tokenizer_dir):
    """7 steps (two epochs and a bit) with 2 ranks, 2 micro-batches each, then the export."""
    out = tmp_path_factory.mktemp(f"exported-{request.param}") / "out"
    args = th.tiny_args(data_file, tokenizer_dir, out, "global_batch_size=8", "micro_batch_size=2", "epochs=5",
                        "max_steps=7", "lr=3e-3", "checkpoint_every=100", "log_every=100",
                        *EXPORT_VARIANTS[request.param])
    result = th.torchrun(args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, args, result.stderr + result.stdout


def test_every_export_variant_is_a_different_run():
    assert len({tuple(v) for v in EXPORT_VARIANTS.values()}) == len(EXPORT_VARIANTS)


@pytest.mark.slow
def test_the_exported_weights_are_the_gathered_training_state_after_the_last_step(exported_run, tokenizer,
                                                                                 tmp_path):
    import torch
    from safetensors.torch import load_file

    from selfinstruct.train_sft import checkpoint, lora

    out, args, _ = exported_run
    c = th.load_config(args)
    [(step, last)] = checkpoint.complete_steps(out / "checkpoints")
    assert step == 7
    trained = th.gathered_state(last, tmp_path)
    initial = th.base_state(c, tokenizer)
    if c.peft == "none":
        expected = trained
        exported = load_file(out / "final" / "model.safetensors")
    elif c.lora_export == "merged":
        # The checkpoint holds the adapters alone (the base is frozen): merge them by hand on the seeded base.
        assert trained and all("lora_" in name for name in trained)
        expected = th.merged_by_hand(initial, trained, c.lora_alpha / c.lora_rank)   # peft: alpha / r
        exported = load_file(out / "final" / "model.safetensors")
    else:
        # An adapter file (peft drops the adapter's name from the keys) and the seeded base beside it.
        base = load_file(out / "final" / "base" / "model.safetensors")
        assert base.keys() <= initial.keys() and all(torch.equal(w, initial[n]) for n, w in base.items())
        expected = {n.replace(f".{lora.ADAPTER}.", "."): w for n, w in trained.items()}
        exported = load_file(out / "final" / "adapter_model.safetensors")
        initial = {}
    # Only the tied output projection is left out of a model file (it is the embedding matrix).
    assert set(exported) <= set(expected) and set(expected) - set(exported) <= {"lm_head.weight"}
    exact = c.peft == "none" or c.lora_export == "adapter"
    for name, tensor in exported.items():
        assert tensor.dtype == torch.float32
        if exact:
            assert torch.equal(tensor, expected[name]), name
        else:                     # the merge's own rounding: W + scale·B·A computed in another order
            assert torch.allclose(tensor, expected[name], rtol=0, atol=1e-6), name
    # The weights did move away from the seeded init: every one, or every adapted one.
    moved = [name for name, tensor in exported.items()
             if name in initial and not torch.equal(initial[name], tensor)]
    if c.peft == "none":
        assert set(moved) == set(exported)
    elif c.lora_export == "merged":
        assert {name.split(".")[-2] for name in moved} == set(c.lora_targets)


def load_exported(out, c):
    from transformers import AutoModelForCausalLM

    if c.lora_export == "adapter" and c.peft == "lora":
        from peft import PeftModel

        return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(out / "final" / "base"),
                                         out / "final").eval()
    return AutoModelForCausalLM.from_pretrained(out / "final").eval()


@pytest.mark.slow
def test_the_exported_model_reproduces_the_training_models_loss_after_the_last_step(exported_run, tokenizer):
    import torch

    out, args, log = exported_run
    c = th.load_config(args)
    check = json.loads((out / "final_check.json").read_text())
    assert check["step"] == 7 and check["export_ok"] is True
    assert "export check: ok" in log

    # The check batch is rank 0's first micro-batch of step 1, rebuilt here from the data file.
    batch = th.step_micro_batches(c, tokenizer, th.examples(c, tokenizer), 0, rank=0, world=2)[0]
    assert ("position_ids" in batch) == c.packing
    saved = torch.load(out / "final_check.pt")
    assert saved.keys() == batch.keys() and all(torch.equal(saved[k], batch[k]) for k in batch)

    assert th.hf_loss(load_exported(out, c), batch) == pytest.approx(check["loss"], rel=1e-5)
    # The number is the trained model's: the seeded init gives another loss on the same batch.
    assert abs(th.hf_loss(th.initial_model(c, tokenizer), batch) - check["loss"]) > 0.05


# --- SIGKILL, then resume -----------------------------------------------------------------------------


def crash_args(data_file, tokenizer_dir, out, *extra: str) -> list[str]:
    # 3 steps an epoch; checkpoints at 4 and 8 fall mid-epoch, the run ends at 11.
    return th.tiny_args(data_file, tokenizer_dir, out, "global_batch_size=8", "micro_batch_size=2", "epochs=100",
                        "max_steps=11", "lr=3e-3", "checkpoint_every=4", "keep_last=3", "log_every=100", *extra)


# Full fine-tuning; LoRA (a checkpoint of adapters alone, dropout drawing from the restored RNG) on packed rows.
CRASH_VARIANTS = {"full": [], "lora-packed": ["peft=lora", "lora_dropout=0.1", "packing=true"]}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(CRASH_VARIANTS))
def test_a_run_killed_after_a_mid_epoch_checkpoint_and_resumed_follows_the_uninterrupted_run(
        data_file, tokenizer_dir, tmp_path, variant):
    import torch
    from safetensors.torch import load_file

    extra = CRASH_VARIANTS[variant]
    whole = tmp_path / "whole"
    result = th.torchrun(crash_args(data_file, tokenizer_dir, whole, *extra))
    assert result.returncode == 0, result.stderr[-3000:]

    crashed = tmp_path / "crashed"
    kill = th.kill_after_checkpoint(crash_args(data_file, tokenizer_dir, crashed, *extra), crashed, step=4)
    assert kill["running"], "the run ended before the kill: nothing was interrupted"
    assert kill["complete"] and max(kill["complete"]) < 11 and not (crashed / "final").exists()
    resumed_from = max(kill["complete"])
    assert resumed_from % 3 != 0                                      # mid-epoch

    result = th.torchrun(crash_args(data_file, tokenizer_dir, crashed, *extra, "resume=true"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed at step {resumed_from} (epoch {resumed_from // 3}, step {resumed_from % 3} of it)" in (
        result.stderr + result.stdout)

    expected, got = th.metrics(whole), th.metrics(crashed)
    assert [r["step"] for r in got] == [r["step"] for r in expected] == list(range(1, 12))
    for a, b in zip(expected, got):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-6), a["step"]
        assert b["lr"] == a["lr"]
    final_whole = load_file(whole / "final" / "model.safetensors")
    final_resumed = load_file(crashed / "final" / "model.safetensors")
    assert final_whole.keys() == final_resumed.keys()
    for name in final_whole:
        assert torch.allclose(final_resumed[name], final_whole[name], rtol=0, atol=1e-6), name
