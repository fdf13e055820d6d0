"""Sharded, atomic, resumable checkpoints (torch.distributed.checkpoint).

    out/checkpoints/step_0000500.tmp/   every rank writes its shards here (one .distcp per rank)
    out/checkpoints/step_0000500/       renamed by rank 0 once all ranks are done and COMPLETE is written

A folder without COMPLETE (a crash mid-save leaves ``.tmp``) is never resumed from. Besides the
model and optimiser shards a checkpoint holds ``train_state.pt`` (step, data position, scheduler,
grad scaler) and each rank's RNG state, so a resumed run replays the uninterrupted one.

Frozen parameters (the base model under ``peft=lora``) are not saved: they never change, and a
resume rebuilds them from ``model=`` as the first run did (``model`` must stay the same; see
SAME_ON_RESUME). A LoRA checkpoint is the adapters and their optimiser state, megabytes for a 7B model.
"""
from __future__ import annotations

import os
import random
import re
import shutil

from selfinstruct.errors import UsageError

MARKER = "COMPLETE"
# What decides the weights and the order of the steps: a resume must keep them. The rest (epochs,
# max_steps, lr, micro_batch_size, the number of ranks, precision…) may change.
SAME_ON_RESUME = ("model", "gguf_file", "tokenizer", "tiny", "data", "template", "max_length", "too_long",
                  "seed", "global_batch_size", "group_by_length", "peft", "lora_rank", "lora_alpha",
                  "lora_dropout", "lora_targets")
_STEP = re.compile(r"^step_(\d+)$")


def step_dir(root: str, step: int) -> str:
    return os.path.join(root, f"step_{step:07d}")


def complete_steps(root: str) -> list[tuple[int, str]]:
    """(step, folder) of the complete checkpoints under ``root``, oldest first."""
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = _STEP.match(name)
        if match and os.path.isfile(os.path.join(root, name, MARKER)):
            found.append((int(match.group(1)), os.path.join(root, name)))
    return sorted(found)


def find_resume(resume, root: str) -> str | None:
    """The checkpoint folder to resume from: None for resume=false; the latest complete one under
    ``root`` for resume=true; for a path, that checkpoint or the latest complete one inside it."""
    if resume is False or resume is None:
        return None
    folder = root if resume is True else str(resume)
    if os.path.isfile(os.path.join(folder, MARKER)):
        return folder
    found = complete_steps(folder)
    if not found:
        raise UsageError(f"no complete checkpoint in {folder} (complete = a step_N folder holding {MARKER}); "
                         f"run without resume to start over")
    return found[-1][1]


def check_same_run(folder: str, config: dict) -> None:
    """Refuse to resume with settings that would make a different run than the checkpoint's."""
    import torch

    saved = torch.load(os.path.join(folder, "train_state.pt"), weights_only=False)["config"]
    for key in SAME_ON_RESUME:
        if saved.get(key) != config[key]:
            raise UsageError(f"resume: {key}={config[key]} but {folder} was trained with {key}={saved.get(key)}; "
                             f"set {key}={saved.get(key)} to continue that run")


def rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(root: str, step: int, model, optimizer, train_state: dict, rank: int, keep_last: int) -> str:
    """Write step ``step`` atomically (a collective: every rank calls it); returns the folder."""
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    final = step_dir(root, step)
    tmp = final + ".tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)        # left by a crash during an earlier save
        os.makedirs(tmp)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    model_state = _without_frozen(model, model_state)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp)
    torch.save(rng_state(), os.path.join(tmp, f"rng_rank{rank}.pt"))
    dist.barrier()                                    # every rank's shards are on disk
    if rank == 0:
        torch.save(train_state, os.path.join(tmp, "train_state.pt"))
        with open(os.path.join(tmp, MARKER), "w") as f:
            f.write(f"step {step}\n")
            f.flush()
            os.fsync(f.fileno())
        if os.path.isdir(final):                      # the same step saved again (stop, then end)
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in complete_steps(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def load(folder: str, model, optimizer, rank: int) -> dict:
    """Restore model and optimiser shards (DCP reshards if the world size changed) and this rank's
    RNG; returns train_state."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    trainable_state = _without_frozen(model, model_state)
    state = {"model": trainable_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=folder)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=StateDictOptions(strict=len(trainable_state) == len(model_state)))
    rng_file = os.path.join(folder, f"rng_rank{rank}.pt")
    if os.path.isfile(rng_file):                      # absent when resuming on more ranks than saved
        set_rng_state(torch.load(rng_file, weights_only=False))
    return torch.load(os.path.join(folder, "train_state.pt"), weights_only=False)


def _without_frozen(model, model_state: dict) -> dict:
    """``model_state`` less the frozen parameters, under every name they have: a tied output layer is
    the embedding under a second name, which torch's own ignore_frozen_params keeps (it visits each
    parameter once, by its first name)."""
    frozen = {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    return {key: value for key, value in model_state.items() if key not in frozen}
