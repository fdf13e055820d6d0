"""The final model as a plain ``save_pretrained`` folder (with the tokenizer) that transformers loads.

The full state dict is gathered shard by shard into CPU memory on rank 0 (``cpu_offload``), never
onto one GPU, and written into ``final.tmp/`` before it replaces ``final/``.
"""
from __future__ import annotations

import os
import shutil


def export(model, config, tokenizer, folder: str, dtype, rank: int) -> None:
    """A collective: every rank calls it; rank 0 writes ``folder``."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from transformers import AutoModelForCausalLM

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        with torch.device("meta"):                   # no second random init of the weights
            plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
        plain.load_state_dict({k: v.to(dtype) for k, v in full.items()}, assign=True)
        plain.tie_weights()
        plain.config.dtype = dtype
        plain.config.use_cache = True               # turned off for training only
        tmp = folder + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    del full
    dist.barrier()
