"""Tokenizer, model and FSDP2 sharding.

Only rank 0 ever holds the whole model in memory (on CPU): every rank builds the model on the meta
device, shards it with ``fully_shard`` (each decoder block, then the root), allocates its own shards,
and receives its slices of rank 0's weights by broadcast. A 7B model costs one host copy, not eight.
With ``peft=lora`` the adapters go into the meta model before sharding, and rank 0's copy carries
their seeded init (see ``lora.py``).
"""
from __future__ import annotations

import os

from selfinstruct.errors import UsageError
from selfinstruct.model_files import gguf_location

TINY = "tiny-llama"


def smollm2_tokenizer():
    """The tokenizer of the embedded SmolLM2 GGUF (about 10 s: the file is parsed)."""
    from transformers import AutoTokenizer

    folder, name = gguf_location()
    return AutoTokenizer.from_pretrained(folder, gguf_file=name)


def check_sources(c) -> None:
    """The model and tokenizer exist where the config says (cheap, before anything is loaded)."""
    if c.model == TINY:
        if not c.tokenizer:
            raise UsageError("model=tiny-llama needs a tokenizer: tokenizer=smollm2 or a tokenizer folder")
    elif not os.path.isdir(c.model):
        raise UsageError(f"model folder not found: {c.model} (expected a Hugging Face folder with "
                         f"config.json and weights, or model=tiny-llama)")
    elif c.gguf_file:
        if not os.path.isfile(os.path.join(c.model, c.gguf_file)):
            raise UsageError(f"gguf_file not found: {os.path.join(c.model, c.gguf_file)}")
    elif not os.path.isfile(os.path.join(c.model, "config.json")):
        raise UsageError(f"not a Hugging Face model folder (no config.json): {c.model}")
    if c.tokenizer == "smollm2":
        gguf_location()
    elif c.tokenizer and not os.path.isdir(c.tokenizer):
        raise UsageError(f"tokenizer folder not found: {c.tokenizer}")
    if c.peft == "lora":
        from selfinstruct.train_sft import lora

        lora.check_settings(c)
        lora.check_targets(meta_model(shape_config(c)), c.lora_targets)


def load_tokenizer(c):
    from transformers import AutoTokenizer

    if c.tokenizer == "smollm2":
        tokenizer = smollm2_tokenizer()
    elif c.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(c.tokenizer)
    else:
        tokenizer = AutoTokenizer.from_pretrained(c.model, gguf_file=c.gguf_file)
    if tokenizer.eos_token_id is None:
        raise UsageError("the tokenizer has no EOS token; responses could not be terminated")
    if tokenizer.pad_token_id is None:      # padding is masked out of attention and loss: any id will do
        tokenizer.pad_token = tokenizer.eos_token
    if c.template == "chat" and not tokenizer.chat_template:
        raise UsageError("template=chat but the tokenizer has no chat template; use template=alpaca")
    return tokenizer


def model_config(c, tokenizer):
    if c.model != TINY:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(c.model, gguf_file=c.gguf_file)
    return _tiny_config(c, len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def shape_config(c):
    """The model's config before the tokenizer is loaded: its layers and their names are right (what
    the checks need); tiny-llama's vocabulary size is not (it comes from the tokenizer)."""
    return model_config(c, None) if c.model != TINY else _tiny_config(c, vocab_size=256)


def _tiny_config(c, vocab_size: int, **special_tokens):
    from transformers import LlamaConfig

    t = c.tiny
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=t["hidden"], intermediate_size=t["intermediate"],
        num_hidden_layers=t["layers"], num_attention_heads=t["heads"], num_key_value_heads=t["heads"],
        max_position_embeddings=max(2048, c.max_length), tie_word_embeddings=True, **special_tokens)


def meta_model(config):
    """The model on the meta device: its structure, no memory, no init."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def load_full_model(c, config):
    """The whole model in fp32 on CPU (rank 0 only): the pretrained weights, or a seeded init; with
    peft=lora, wrapped with adapters drawn from the seed (the same on every run of the config)."""
    import torch
    from transformers import AutoModelForCausalLM

    if c.model == TINY:
        torch.manual_seed(c.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(c.model, gguf_file=c.gguf_file, dtype=torch.float32)
    if c.peft == "lora":
        from selfinstruct.train_sft import lora

        torch.manual_seed(c.seed)
        model = lora.wrap(model, c)
    return model


def block_class(model, name: str | None) -> str:
    """The class of the blocks to shard one by one: ``name``, else the model's ``_no_split_modules``,
    else the class of the entries of its largest ModuleList (the layers)."""
    import torch.nn as nn

    present = {type(m).__name__ for m in model.modules()}
    if name:
        if name not in present:
            raise UsageError(f"shard_layer={name}: no such module in {type(model).__name__} "
                             f"(its classes include: {', '.join(sorted(present)[:12])})")
        return name
    for candidate in getattr(model, "_no_split_modules", None) or []:
        if candidate in present:
            return candidate
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m)]
    if lists:
        return type(max(lists, key=len)[0]).__name__
    raise UsageError(f"found no decoder blocks to shard in {type(model).__name__}; set shard_layer=<class name>")


def build_sharded_model(c, config, rank: int, device, mp_policy):
    """Meta model → fully_shard each block, then the root → allocate shards → rank 0's weights."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.fsdp import fully_shard

    model = meta_model(config)
    architecture = type(model).__name__            # fully_shard renames the class to FSDP<name>
    model.config.use_cache = False                 # no KV cache while training
    if c.activation_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):          # transformers >= 5
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    name = block_class(model, c.shard_layer)
    adapters = ""
    if c.peft == "lora":
        from selfinstruct.train_sft import lora

        model = lora.wrap(model, c)                # on meta: rank 0's seeded init arrives below
        adapters = f"; {lora.describe(model, c)}"
    blocks = [m for m in model.modules() if type(m).__name__ == name]
    for block in blocks:
        fully_shard(block, mp_policy=mp_policy)
    fully_shard(model, mp_policy=mp_policy)
    model.to_empty(device=device)

    full = load_full_model(c, config) if rank == 0 else None
    set_model_state_dict(model, full.state_dict() if full is not None else {},
                         options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    # Non-persistent buffers (rotary frequencies) are not in a state dict: copy them the same way.
    reference = dict(full.named_buffers()) if full is not None else {}
    for buffer_name, buffer in model.named_buffers():
        if rank == 0:
            buffer.copy_(reference[buffer_name])
        dist.broadcast(buffer, src=0)
    del full, reference
    return model, f"{architecture}, fully_shard on {len(blocks)} x {name} then the root{adapters}"

