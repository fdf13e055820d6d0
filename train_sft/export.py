"""The final model as a folder that transformers (or peft) loads, with the tokenizer.

The full state dict is gathered shard by shard into CPU memory on rank 0 (``cpu_offload``), never
onto one GPU, and written into ``final.tmp/`` before it replaces ``final/``.

Full fine-tuning, and ``peft=lora`` with ``lora_export=merged``: a plain ``save_pretrained`` folder
that ``AutoModelForCausalLM.from_pretrained`` loads without peft. For LoRA, rank 0 rebuilds the
peft model around the gathered weights and lets peft merge (W + lora_alpha/lora_rank · B·A) in fp32,
before the cast to the export dtype.

``lora_export=adapter``: peft's adapter folder (``adapter_config.json``, ``adapter_model.safetensors``)
plus the tokenizer: ``PeftModel.from_pretrained(base, folder)``. Its ``base_model_name_or_path`` is
the ``model=`` folder. A base that is not a plain Hugging Face folder on disk (``model=tiny-llama``, a
seeded init; a GGUF file) is written beside the adapter as ``folder/base/`` (a save_pretrained folder
with the tokenizer), and ``base_model_name_or_path`` is its absolute path at export time; after
moving the folder, load the base from ``folder/base`` yourself:

    base = AutoModelForCausalLM.from_pretrained("runs/tiny/final/base")
    model = PeftModel.from_pretrained(base, "runs/tiny/final")
"""
from __future__ import annotations

import os
import shutil

BASE = "base"          # the subfolder holding the base model beside an adapter, when it has no folder


def export(model, config, tokenizer, folder: str, dtype, rank: int, c=None) -> None:
    """A collective: every rank calls it; rank 0 writes ``folder``. A LoRA model is merged unless
    ``c`` (the train config) says ``lora_export=adapter``."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from selfinstruct.train_sft import lora

    adapter_settings = lora.settings_of(model)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        tmp = folder + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if adapter_settings is not None:
            peft_model = rebuild_lora(config, full, adapter_settings)
            full.clear()        # the model holds the only reference: a merged or cast weight frees its old one
            if c is not None and c.lora_export == "adapter":
                write_adapter(peft_model, c, tokenizer, tmp, folder, dtype)
            else:
                # safe_merge: each merged weight is a new tensor. In a world of one rank the gathered
                # state is the training parameters themselves, which must not change.
                write_plain(peft_model.merge_and_unload(safe_merge=True), tokenizer, tmp, dtype)
        else:
            plain = plain_model(config, full)
            full.clear()
            write_plain(plain, tokenizer, tmp, dtype)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    del full
    dist.barrier()


def plain_model(config, state: dict):
    """The transformers model holding ``state`` (fp32, CPU), without a second random init."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(state, assign=True)
    plain.tie_weights()
    return plain


def rebuild_lora(config, state: dict, adapter_settings):
    """The peft model the training ran (its ``LoraConfig``: ``adapter_settings``), on CPU in fp32,
    holding the gathered ``state``."""
    import torch
    from transformers import AutoModelForCausalLM

    from selfinstruct.train_sft import lora

    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        peft_model = lora.with_adapters(base, adapter_settings)
    peft_model.load_state_dict(state, assign=True)
    peft_model.get_base_model().tie_weights()
    return peft_model


def write_plain(model, tokenizer, folder: str, dtype) -> None:
    model.to(dtype)
    model.config.dtype = dtype
    model.config.use_cache = True               # turned off for training only
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_adapter(peft_model, c, tokenizer, folder: str, final: str, dtype) -> None:
    """The adapter (in ``dtype``, as the merged export would be), the tokenizer, and the base beside
    them when ``model=`` is not a plain folder transformers can load."""
    from selfinstruct.train_sft import lora

    own_base = c.model == "tiny-llama" or bool(c.gguf_file)
    base_path = os.path.abspath(os.path.join(final, BASE)) if own_base else os.path.abspath(c.model)
    peft_model.peft_config[lora.ADAPTER].base_model_name_or_path = base_path
    peft_model.to(dtype)
    # save_embedding_layers=False: the vocabulary never changes here, and peft's "auto" would look the
    # base up on the Hub when its folder is not written yet.
    peft_model.save_pretrained(folder, save_embedding_layers=False)
    tokenizer.save_pretrained(folder)
    if own_base:
        write_plain(peft_model.unload(), tokenizer, os.path.join(folder, BASE), dtype)
