"""LoRA for train_sft (``peft=lora``), with Hugging Face peft as the engine.

peft's ``LoraConfig``/``get_peft_model`` put the adapters in and its ``merge_and_unload`` merges them:
the layers, the scale (``lora_alpha / lora_rank``) and the merge are the ones users already trust, and
the adapter folder is the one ``PeftModel.from_pretrained`` reads. peft is imported only when a run
asks for LoRA.

Under FSDP2 nothing changes in the order of things (``modeling.build_sharded_model``): the meta model
gets its adapters on the meta device too, each decoder block (frozen base weights and trainable
adapters in one FSDP unit: FSDP2 shards per parameter and reduces only the gradients that exist) is
sharded, then the root, and rank 0's weights arrive by broadcast. Rank 0 builds the same wrapped
model on CPU: the base weights (pretrained, or tiny-llama's seeded init), then the adapters drawn
after ``torch.manual_seed(seed)`` (lora_A random, lora_B zero, so step 0 is the base model exactly).

Only the adapters train: the optimiser gets the parameters with ``requires_grad``, the checkpoints
(``checkpoint.save``) hold those and their optimiser state (the base is rebuilt from ``model=`` on
resume, which must be the same model), and ``export`` merges or saves the adapter.
"""
from __future__ import annotations

import importlib.util

from selfinstruct.errors import UsageError

ADAPTER = "default"                      # peft's name for the one adapter of a run
PEFT_INSTALL = "pip install 'peft>=0.21'"


def linear_module_names(model) -> list[str]:
    """The last name component of every linear layer (what ``lora_targets`` may name), sorted.
    transformers' Conv1D (GPT-2's linear layers) counts: peft adapts it like nn.Linear."""
    import torch.nn as nn

    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if name and (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D")}
    return sorted(names)


def check_targets(model, targets: list[str]) -> None:
    """Every target names a linear layer of ``model``; else one line listing the ones it has."""
    if not targets:
        raise UsageError("lora_targets is empty; name the linear layers to adapt, e.g. "
                         "lora_targets=[q_proj,v_proj]")
    found = linear_module_names(model)
    unknown = [t for t in targets if t not in found]
    if unknown:
        verb = "is not a linear layer" if len(unknown) == 1 else "are not linear layers"
        raise UsageError(f"lora_targets: {', '.join(unknown)} {verb} of {type(model).__name__} "
                         f"(its linear layers: {', '.join(found)})")


def check_settings(c) -> None:
    """What needs no model: peft is installed and the numbers make sense."""
    if importlib.util.find_spec("peft") is None:
        raise UsageError(f"peft=lora needs the peft package: {PEFT_INSTALL} (or install the train extra)")
    if not c.lora_alpha > 0:
        raise UsageError(f"lora_alpha={c.lora_alpha} must be positive (the adapter's scale is "
                         f"lora_alpha / lora_rank)")
    if not 0 <= c.lora_dropout < 1:
        raise UsageError(f"lora_dropout={c.lora_dropout} must be in [0, 1)")
    if not isinstance(c.lora_targets, list) or not all(isinstance(t, str) for t in c.lora_targets):
        raise UsageError(f"lora_targets={c.lora_targets!r} must be a list of layer names, "
                         f"e.g. lora_targets=[q_proj,v_proj]")


def lora_config(c):
    from peft import LoraConfig

    return LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                      target_modules=list(c.lora_targets), bias="none", task_type="CAUSAL_LM")


def wrap(model, c):
    """``model`` (meta or real) with adapters on ``c.lora_targets``; only the adapters train.

    On a real model the adapters' init follows the global RNG: seed it first for a repeatable run."""
    check_settings(c)
    check_targets(model, c.lora_targets)
    return with_adapters(model, lora_config(c))


def with_adapters(model, settings):
    """peft's ``get_peft_model`` with ``settings`` (a LoraConfig), under our adapter name."""
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():     # peft asks transformers a question under its deprecated name
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return get_peft_model(model, settings, adapter_name=ADAPTER)


def describe(model, c) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return (f"LoRA r={c.lora_rank} alpha={c.lora_alpha:g} dropout={c.lora_dropout:g} on "
            f"{', '.join(c.lora_targets)}: {trainable / 1e6:.3f}M trainable of {total / 1e6:.1f}M")


def settings_of(model):
    """A copy of the ``LoraConfig`` of a peft model (sharded or not: fully_shard keeps its class as a
    base), None for a plain model. Never imports peft: a model with adapters has imported it."""
    import copy
    import sys

    peft = sys.modules.get("peft")
    if peft is None or not isinstance(model, peft.PeftModel):
        return None
    return copy.deepcopy(model.peft_config[ADAPTER])
