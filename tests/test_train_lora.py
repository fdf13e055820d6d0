"""train_sft with peft=lora: the settings refused before anything loads; in one process (a world of one
rank, gloo) the sharded LoRA model, its checkpoint and both exports checked against peft and plain
arithmetic; under torchrun (2 CPU ranks) training, resume and the exports of real runs.

The reference for "what was trained" is always rebuilt outside train_sft: the tiny model's seeded
base weights plus the adapters read back from the run's last checkpoint, in a plain peft model.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from selfinstruct.train_sft import config as config_module, data
from tests.train_helpers import env, merged_by_hand, torchrun

pytestmark = [pytest.mark.train, pytest.mark.embedded]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "train_sft", "launch.sh")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LINEAR_LAYERS = "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"

# Eight short examples, English and Chinese, with and without input: one optimiser step each epoch.
ROWS = [
    {"instruction": "Name the largest planet in the solar system.", "input": "", "output": "Jupiter."},
    {"instruction": "Reverse the word.", "input": "stressed", "output": "desserts"},
    {"instruction": "用一个词形容大海。", "input": "", "output": "辽阔。"},
    {"instruction": "What comes after Tuesday?", "input": "", "output": "Wednesday"},
    {"instruction": "把下面的数字相加。", "input": "7 和 5", "output": "十二"},
    {"instruction": "Give an antonym.", "input": "ancient", "output": "modern"},
    {"instruction": "Classify the animal as mammal or bird.", "input": "penguin", "output": "Bird."},
    {"instruction": "写出“谢谢”的英文。", "input": "", "output": "Thank you."},
]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "data.json"
    path.write_text(json.dumps(ROWS, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


def tiny_config(data_file, tokenizer_dir, out, *overrides):
    return config_module.load("tiny-cpu", [f"data={data_file}", f"tokenizer={tokenizer_dir}", f"out={out}",
                                           "peft=lora", *overrides])


def fixed_batch(tokenizer, data_file) -> dict:
    """All eight examples in one right-padded batch (labels -100 on prompts and padding)."""
    examples, _ = data.load_examples(data_file, tokenizer, "alpaca", 256)
    return data.collate(examples, tokenizer.pad_token_id)


def mean_token_loss(model, batch) -> float:
    """transformers' own loss with labels (shifted, -100 ignored), in eval mode: no dropout."""
    import torch

    model.eval()
    with torch.no_grad():
        loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss.item()
    if hasattr(model, "reshard"):      # FSDP2 keeps the root unsharded after a forward without backward
        model.reshard()
    return loss


def seeded_base(c, tokenizer):
    """The tiny model's initial weights, as every run of this config draws them."""
    from selfinstruct.train_sft import modeling

    plain = dataclasses.replace(c, peft="none")
    return modeling.load_full_model(plain, modeling.model_config(plain, tokenizer))


def trained_peft_model(c, tokenizer, adapters: dict):
    """A plain (unsharded) peft model: the seeded base with ``adapters`` (name → tensor, peft's names)."""
    from selfinstruct.train_sft import lora

    model = lora.wrap(seeded_base(c, tokenizer), c)
    missing = {name for name, _ in model.named_parameters() if "lora_" in name} - set(adapters)
    assert not missing, f"adapters absent from the checkpoint: {sorted(missing)[:3]}"
    model.load_state_dict(adapters, strict=False)
    return model


# --- settings refused before anything loads ---------------------------------------------------------


@pytest.fixture
def run_main(capsys, tokenizer_dir, data_file, tmp_path):
    from selfinstruct.train_sft.train import main

    def run(*overrides: str) -> tuple[int, str]:
        args = ["tiny-cpu", f"data={data_file}", f"out={tmp_path / 'out'}", f"tokenizer={tokenizer_dir}",
                "peft=lora", *overrides]
        with pytest.raises(SystemExit) as e:
            main(args)
        return e.value.code, capsys.readouterr().err
    return run


@pytest.mark.parametrize("override, message", [
    ("lora_targets=[q_proj,qkv_proj]",
     f"lora_targets: qkv_proj is not a linear layer of LlamaForCausalLM (its linear layers: {LINEAR_LAYERS})"),
    ("lora_targets=[query,value]",
     f"lora_targets: query, value are not linear layers of LlamaForCausalLM (its linear layers: {LINEAR_LAYERS})"),
    ("lora_targets=[]", "lora_targets is empty; name the linear layers to adapt, e.g. lora_targets=[q_proj,v_proj]"),
    ("lora_dropout=1", "lora_dropout=1.0 must be in [0, 1)"),
    ("lora_alpha=0", "lora_alpha=0.0 must be positive (the adapter's scale is lora_alpha / lora_rank)"),
], ids=["one-unknown", "two-unknown", "empty", "dropout-1", "alpha-0"])
def test_a_bad_lora_setting_is_one_error_line_and_exit_2(run_main, override, message):
    assert run_main(override) == (2, f"Error: {message}\n")


def test_the_targets_of_the_default_config_and_a_subset_are_accepted(tokenizer_dir, data_file, tmp_path, capsys):
    from selfinstruct.train_sft.train import main

    for targets in ("lora_targets=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]", "lora_targets=[v_proj]"):
        assert main(["tiny-cpu", "--check", f"data={data_file}", f"out={tmp_path}/o", f"tokenizer={tokenizer_dir}",
                     "peft=lora", targets]) == 0
        assert capsys.readouterr().out.endswith("check: ok\n")


def test_lora_without_peft_installed_says_what_to_install(run_main, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)       # find_spec then answers: not installed
    assert run_main() == (2, "Error: peft=lora needs the peft package: pip install 'peft>=0.21' (or install the "
                             "train extra)\n")


def test_launch_sh_refuses_an_unknown_target_before_torchrun(data_file, tokenizer_dir, tmp_path):
    result = subprocess.run(["bash", LAUNCH, "train_sft/configs/tiny-cpu.yaml", f"data={data_file}",
                             f"tokenizer={tokenizer_dir}", f"out={tmp_path / 'o'}", "peft=lora",
                             "lora_targets=[attn]"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env={**env(), "NPROC": "2"})
    assert (result.returncode, result.stderr) == (
        2, f"Error: lora_targets: attn is not a linear layer of LlamaForCausalLM (its linear layers: "
           f"{LINEAR_LAYERS})\n")
    assert not (tmp_path / "o").exists()


def test_full_fine_tuning_never_imports_peft(data_file, tokenizer_dir, tmp_path):
    code = ("import sys; from selfinstruct.train_sft.train import main; "
            f"main(['tiny-cpu', '--check', 'data={data_file}', 'tokenizer={tokenizer_dir}', 'out={tmp_path}/o']); "
            "print('peft' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "False"


# --- one process, a world of one rank: the sharded model, a checkpoint, both exports -----------------


@pytest.fixture(scope="module")
def world_of_one():
    import torch.distributed as dist

    from selfinstruct.train_sft.train import free_port

    # not through os.environ: a MASTER_ADDR left in the test process sends later launch.sh runs to
    # a fixed port instead of --standalone
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def sharded(world_of_one, tokenizer, data_file, tokenizer_dir, tmp_path_factory):
    """The sharded LoRA model after three AdamW steps on the fixed batch (lr high enough that every
    adapter moves), with its optimiser, config, base weights and the batch."""
    import torch
    import torch.nn.functional as F
    from torch.distributed.fsdp import MixedPrecisionPolicy

    from selfinstruct.train_sft import modeling

    out = tmp_path_factory.mktemp("one-rank")
    c = tiny_config(data_file, tokenizer_dir, out, "lora_rank=4", "lora_alpha=12", "lora_dropout=0")
    model_config = modeling.model_config(c, tokenizer)
    model, description = modeling.build_sharded_model(c, model_config, 0, torch.device("cpu"), MixedPrecisionPolicy())
    at_init = {name: p.full_tensor().clone() for name, p in model.named_parameters()}
    batch = fixed_batch(tokenizer, data_file)
    init_loss = mean_token_loss(model, batch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        logits = model(input_ids=batch["input_ids"]).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return dict(c=c, model_config=model_config, model=model, optimizer=optimizer, at_init=at_init, batch=batch,
                init_loss=init_loss, description=description, out=out)


def trained_state(model) -> dict:
    return {name: p.full_tensor().detach().clone() for name, p in model.named_parameters()}


def adapters_of(state: dict) -> dict:
    return {name: value for name, value in state.items() if "lora_" in name}


def test_the_sharded_model_starts_as_the_base_model_and_only_its_adapters_train(sharded, tokenizer):
    c, model = sharded["c"], sharded["model"]
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    assert trainable and all(".lora_A.default." in n or ".lora_B.default." in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == set(TARGETS)            # every target, in both layers
    assert len(trainable) == 2 * len(TARGETS) * c.tiny["layers"]
    assert "LoRA r=4 alpha=12 dropout=0 on q_proj" in sharded["description"]
    # lora_B starts at zero: the first forward is the base model's, to the last bit.
    at_init = sharded["at_init"]
    assert all(at_init[n].abs().max() == 0 for n in trainable if ".lora_B." in n)
    assert all(at_init[n].abs().max() > 0 for n in trainable if ".lora_A." in n)
    assert sharded["init_loss"] == mean_token_loss(seeded_base(c, tokenizer), sharded["batch"])


def test_the_adapters_train_and_the_frozen_base_does_not_move(sharded):
    now, at_init = trained_state(sharded["model"]), sharded["at_init"]
    for name, value in now.items():
        if "lora_" in name:
            assert not (value == at_init[name]).all(), name
        else:
            assert (value == at_init[name]).all(), name
    assert mean_token_loss(sharded["model"], sharded["batch"]) < sharded["init_loss"] - 0.05


def adapter_gradients(c, tokenizer, batch) -> dict:
    """The adapters' gradients of one forward and backward of a freshly built sharded model."""
    import torch
    import torch.nn.functional as F
    from torch.distributed.fsdp import MixedPrecisionPolicy

    from selfinstruct.train_sft import modeling

    model, _ = modeling.build_sharded_model(c, modeling.model_config(c, tokenizer), 0, torch.device("cpu"),
                                            MixedPrecisionPolicy())
    model.train()
    logits = model(input_ids=batch["input_ids"]).logits
    F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100).backward()
    return {name: p.grad.full_tensor() for name, p in model.named_parameters() if p.requires_grad}


def test_activation_checkpointing_with_adapters_gives_the_same_gradients(sharded, tokenizer):
    import torch

    plain = adapter_gradients(sharded["c"], tokenizer, sharded["batch"])
    recomputed = adapter_gradients(dataclasses.replace(sharded["c"], activation_checkpointing=True), tokenizer,
                                   sharded["batch"])
    assert plain.keys() == recomputed.keys()
    assert any(g.abs().max() > 0 for g in plain.values())
    for name, grad in plain.items():
        torch.testing.assert_close(recomputed[name], grad, rtol=1e-5, atol=1e-8)


def test_a_lora_checkpoint_holds_the_adapters_alone_and_restores_them(sharded, tmp_path):
    import torch
    import torch.distributed.checkpoint as dcp

    from selfinstruct.train_sft import checkpoint

    model, optimizer = sharded["model"], sharded["optimizer"]
    before = trained_state(model)
    folder = checkpoint.save(str(tmp_path), 3, model, optimizer, {"step": 3}, 0, keep_last=1)
    saved = dcp.FileSystemReader(folder).read_metadata().state_dict_metadata
    model_keys = {k[len("model."):] for k in saved if k.startswith("model.")}
    assert model_keys == set(adapters_of(before))               # no base weight, not the tied lm_head either
    with torch.no_grad():                                       # spoil the adapters, then restore them
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(1.0)
    assert checkpoint.load(folder, model, optimizer, 0) == {"step": 3}
    after = trained_state(model)
    assert all(torch.equal(after[n], before[n]) for n in before)


def test_the_merged_export_is_base_plus_scale_b_a_and_gives_the_training_models_loss(sharded, tokenizer,
                                                                                     tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from selfinstruct.train_sft.export import export

    c, model = sharded["c"], sharded["model"]
    state = trained_state(model)
    training_loss = mean_token_loss(model, sharded["batch"])
    folder = str(tmp_path / "final")
    export(model, sharded["model_config"], tokenizer, folder, torch.float32, 0, c)
    assert not os.path.exists(os.path.join(folder, "adapter_config.json"))
    # On one rank the gathered state is the training parameters themselves: merging left them alone.
    after = trained_state(model)
    assert all(torch.equal(after[name], value) for name, value in state.items())
    exported = load_file(os.path.join(folder, "model.safetensors"))
    base_state = seeded_base(c, tokenizer).state_dict()
    expected = merged_by_hand(base_state, adapters_of(state), 12 / 4)
    assert set(exported) <= set(expected)
    for name, weight in exported.items():
        if any(f".{t}." in name for t in TARGETS):
            assert not torch.equal(weight, base_state[name]), name         # the adapter is in it
            torch.testing.assert_close(weight, expected[name], rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(weight, base_state[name]), name            # untouched, bit for bit
    plain = AutoModelForCausalLM.from_pretrained(folder)
    assert mean_token_loss(plain, sharded["batch"]) == pytest.approx(training_loss, rel=1e-5)


def test_the_adapter_export_loads_with_peft_beside_its_base(sharded, tokenizer, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from selfinstruct.train_sft.export import export

    c = dataclasses.replace(sharded["c"], lora_export="adapter")
    model = sharded["model"]
    state = trained_state(model)
    training_loss = mean_token_loss(model, sharded["batch"])
    folder = str(tmp_path / "final")
    export(model, sharded["model_config"], tokenizer, folder, torch.float32, 0, c)
    settings = json.loads(open(os.path.join(folder, "adapter_config.json"), encoding="utf-8").read())
    assert (settings["r"], settings["lora_alpha"], settings["lora_dropout"]) == (4, 12, 0)
    assert sorted(settings["target_modules"]) == sorted(TARGETS)
    assert settings["base_model_name_or_path"] == os.path.join(folder, "base")
    # The base beside the adapter is the seeded init, bit for bit; the adapter is the trained one.
    base_files = load_file(os.path.join(folder, "base", "model.safetensors"))
    base_state = seeded_base(c, tokenizer).state_dict()
    assert base_files and all(torch.equal(w, base_state[n]) for n, w in base_files.items())
    saved = load_file(os.path.join(folder, "adapter_model.safetensors"))
    trained = {n.replace(".default.", "."): w for n, w in adapters_of(state).items()}
    assert saved.keys() == trained.keys() and all(torch.equal(saved[n], trained[n]) for n in saved)

    base = AutoModelForCausalLM.from_pretrained(os.path.join(folder, "base"))
    with_adapter = PeftModel.from_pretrained(base, folder)
    assert mean_token_loss(with_adapter, sharded["batch"]) == pytest.approx(training_loss, rel=1e-5)
    # transformers reads an adapter folder too (its peft integration loads base_model_name_or_path).
    assert mean_token_loss(AutoModelForCausalLM.from_pretrained(folder), sharded["batch"]) == pytest.approx(
        training_loss, rel=1e-5)
    assert os.path.isfile(os.path.join(folder, "tokenizer.json"))


def test_a_pretrained_model_folder_is_named_as_the_adapters_base_and_not_copied(sharded, tokenizer, tmp_path):
    import torch

    from selfinstruct.train_sft.export import export

    model_folder = tmp_path / "pretrained"
    seeded_base(sharded["c"], tokenizer).save_pretrained(model_folder)
    c = dataclasses.replace(sharded["c"], lora_export="adapter", model=str(model_folder))
    folder = str(tmp_path / "final")
    export(sharded["model"], sharded["model_config"], tokenizer, folder, torch.float32, 0, c)
    settings = json.loads(open(os.path.join(folder, "adapter_config.json"), encoding="utf-8").read())
    assert settings["base_model_name_or_path"] == str(model_folder)
    assert not os.path.exists(os.path.join(folder, "base"))


# --- torchrun: 2 CPU ranks, gloo --------------------------------------------------------------------


def run_args(data_file, tokenizer_dir, out, *extra) -> list[str]:
    # 8 examples, 2 per micro-batch, 2 ranks x 2 accumulation: one step per epoch, 16 steps.
    return ["train_sft/configs/tiny-cpu.yaml", f"data={data_file}", f"out={out}", f"tokenizer={tokenizer_dir}",
            "peft=lora", "epochs=100", "max_steps=16", "lr=1e-2", "checkpoint_every=5", "keep_last=2",
            "log_every=100", *extra]




def metrics(out) -> list[dict]:
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def checkpoint_adapters(folder) -> dict:
    """The model entries of a DCP checkpoint, read without a process group, under peft's names."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = os.path.join(str(folder), "..", os.path.basename(str(folder)) + ".pt")
    dcp_to_torch_save(str(folder), target)
    state = torch.load(target, weights_only=False)
    os.remove(target)
    return {name: value for name, value in state["model"].items()}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, data_file, tokenizer_dir):
    """16 uninterrupted LoRA steps with the merged export."""
    out = tmp_path_factory.mktemp("lora-full")
    result = torchrun(run_args(data_file, tokenizer_dir, out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_lora_on_two_ranks_lowers_the_loss_and_checkpoints_only_the_adapters(lora_run):
    rows = metrics(lora_run)
    assert [r["step"] for r in rows] == list(range(1, 17))
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.5
    final = lora_run / "checkpoints" / "step_0000016"
    state = checkpoint_adapters(final)
    assert state and all(".lora_A.default." in n or ".lora_B.default." in n for n in state)
    # Megabytes, not the model: the 3.3M-parameter base (13 MB in fp32) is not in it.
    assert sum(os.path.getsize(final / f) for f in os.listdir(final)) < 2_000_000


@pytest.mark.slow
def test_the_merged_export_of_a_two_rank_run_is_the_trained_model(lora_run, tokenizer, data_file, tokenizer_dir):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    c = config_module.load(str(lora_run / "config.yaml"))
    adapters = checkpoint_adapters(lora_run / "checkpoints" / "step_0000016")
    base_state = seeded_base(c, tokenizer).state_dict()
    expected = merged_by_hand(base_state, adapters, c.lora_alpha / c.lora_rank)
    exported = load_file(lora_run / "final" / "model.safetensors")
    for name, weight in exported.items():
        if any(f".{t}." in name for t in TARGETS):
            torch.testing.assert_close(weight, expected[name], rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(weight, base_state[name]), name        # the frozen base never moved
    batch = fixed_batch(tokenizer, data_file)
    trained = mean_token_loss(trained_peft_model(c, tokenizer, adapters), batch)
    merged = mean_token_loss(AutoModelForCausalLM.from_pretrained(lora_run / "final"), batch)
    assert merged == pytest.approx(trained, rel=1e-5)
    assert merged < mean_token_loss(seeded_base(c, tokenizer), batch) - 0.5


@pytest.mark.slow
def test_a_stopped_lora_run_resumed_follows_the_uninterrupted_one_and_exports_the_adapter(
        lora_run, tokenizer, data_file, tokenizer_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "resumed"
    first = torchrun(run_args(data_file, tokenizer_dir, out, "stop_after=7"))
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun(run_args(data_file, tokenizer_dir, out, "stop_after=7", "--resume", "lora_export=adapter"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed at step 7" in second.stderr + second.stdout

    whole, resumed = metrics(lora_run), metrics(out)
    assert [r["step"] for r in resumed] == list(range(1, 17))
    for a, b in zip(whole, resumed):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
    expected = checkpoint_adapters(lora_run / "checkpoints" / "step_0000016")
    got = checkpoint_adapters(out / "checkpoints" / "step_0000016")
    assert expected.keys() == got.keys()
    assert max((expected[k] - got[k]).abs().max().item() for k in expected) < 1e-6

    batch = fixed_batch(tokenizer, data_file)
    base = AutoModelForCausalLM.from_pretrained(out / "final" / "base")
    adapter_loss = mean_token_loss(PeftModel.from_pretrained(base, out / "final"), batch)
    merged_loss = mean_token_loss(AutoModelForCausalLM.from_pretrained(lora_run / "final"), batch)
    assert adapter_loss == pytest.approx(merged_loss, rel=1e-5)
