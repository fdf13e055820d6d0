"""Supervised fine-tuning of a causal LM on Alpaca records or conversations with FSDP2: one recipe,
top to bottom.

``train()`` reads in order: ``setup`` (process group, device, out folder) → ``build`` (model, optimiser,
schedule, resume) → the loop (``optimisation_step`` per step, ``save_checkpoint`` every
checkpoint_every) → ``export_model``. The config is a YAML file (train_sft/configs/) plus ``key=value``
overrides; the resolved config is logged at start and saved as out/config.yaml.

    # 1 GPU
    torchrun --standalone --nproc_per_node 1 -m selfinstruct.train_sft.train \\
        train_sft/configs/llama-7b-8gpu.yaml model=/models/llama-7b data=alpaca_data.json out=runs/7b

    # 8 GPUs, LLaMA-7B with Stanford Alpaca's settings (bf16, lr 2e-5, 3 epochs, batch 128, length 512)
    torchrun --standalone --nproc_per_node 8 -m selfinstruct.train_sft.train \\
        train_sft/configs/llama-7b-8gpu.yaml model=/models/llama-7b data=alpaca_data.json out=runs/7b

    # 2 nodes x 8 GPUs: run on each node with NODE_RANK=0 and NODE_RANK=1 (out= on a shared disk)
    torchrun --nnodes 2 --node_rank $NODE_RANK --master_addr $MASTER_ADDR --master_port 29500 \\
        --nproc_per_node 8 -m selfinstruct.train_sft.train train_sft/configs/llama-7b-8gpu.yaml \\
        model=/models/llama-7b data=alpaca_data.json out=/shared/runs/7b

    # CPU, 2 ranks, gloo (the tiny model: seconds per step)
    torchrun --standalone --nproc_per_node 2 -m selfinstruct.train_sft.train \\
        train_sft/configs/tiny-cpu.yaml data=data.json out=runs/tiny

    # conversations (a file of `messages` records: ShareGPT, OpenAI messages, records.jsonl), the
    # model's chat template, loss on every assistant turn; several examples per row; LoRA adapters
    torchrun --standalone --nproc_per_node 2 -m selfinstruct.train_sft.train \\
        train_sft/configs/tiny-cpu.yaml data=chats.jsonl template=chat packing=true peft=lora out=runs/chat

    # any of the above, continued from its latest complete checkpoint: add resume=true (or --resume)

``bash train_sft/launch.sh CONFIG key=value...`` picks the process count and multi-node settings for
you and checks the config and data first (``--check``: everything but the training, one process).
Without torchrun, ``python -m selfinstruct.train_sft.train CONFIG ...`` trains as one rank.

Habits from nanoGPT: the next step's tensors are built on a thread while the current step computes;
the loss and gradient norm stay on the device until a log, checkpoint or the end (no host sync per
step); a rank's gradients are reduced once per step, after its last micro-batch.

Out folder: config.yaml, metrics.jsonl (per step: step, loss, lr, grad_norm, tokens, tokens_per_s over
the log window; mfu and peak_memory_gib on a GPU), checkpoints/step_N/ (sharded, keep_last), final/
(save_pretrained folder with the tokenizer), final_check.json (the loss of the trained model and of
the exported one on a fixed batch: the export holds what was trained).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

from selfinstruct.errors import UsageError, user_errors
from selfinstruct.train_sft import checkpoint, config as config_module, data, modeling, runtime
from selfinstruct.train_sft.metrics import MetricsLog


@dataclass
class Plan:
    """Everything settled before the process group starts: a bad input fails here, on every rank
    alike, so no rank is left waiting in a collective."""
    config: config_module.TrainConfig
    device: str
    precision: str
    tokenizer: object
    examples: list
    skipped: list                # origins of the records dropped by too_long=skip
    world_size: int
    steps_per_epoch: int
    total_steps: int
    resume_from: str | None


def parse_args(argv: list[str]) -> tuple[str | None, list[str], bool]:
    path, overrides, check = None, [], False
    for arg in argv:
        if arg == "--check":
            check = True
        elif arg == "--resume":
            overrides.append("resume=true")
        elif arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg} (options: --check, --resume; settings are key=value)")
        elif "=" in arg or (config_module.is_key(arg) and not os.path.isfile(arg)):
            overrides.append(arg)             # `lr` alone: config.load says it is not key=value
        elif path is None:
            path = arg
        else:
            raise UsageError(f"'{arg}': one config file only (settings are key=value)")
    return path, overrides, check


def prepare(argv: list[str]) -> tuple[Plan, bool]:
    path, overrides, check = parse_args(argv)
    c = config_module.load(path, overrides)
    device = runtime.resolve_device(c)
    precision = runtime.resolve_precision(c, device)
    modeling.check_sources(c)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    per_pass = c.micro_batch_size * world_size
    if c.global_batch_size % per_pass:
        raise UsageError(f"global_batch_size={c.global_batch_size} is not a multiple of micro_batch_size="
                         f"{c.micro_batch_size} x {world_size} ranks = {per_pass}")
    root = os.path.join(c.out, "checkpoints")
    resume_from = checkpoint.find_resume(c.resume, root)
    if resume_from is None and checkpoint.complete_steps(root):
        raise UsageError(f"{c.out} already holds checkpoints; add resume=true to continue that run, "
                         f"or choose another out")
    if resume_from:
        checkpoint.check_same_run(resume_from, c.to_dict())
    tokenizer = modeling.load_tokenizer(c)
    examples, skipped = data.load_examples(c.data, tokenizer, c.template, c.max_length, c.too_long)
    per_epoch = data.steps_per_epoch(len(examples), c.global_batch_size)
    if per_epoch == 0:
        raise UsageError(f"{c.data}: {len(examples)} examples do not fill one step of global_batch_size="
                         f"{c.global_batch_size}; lower global_batch_size")
    total = c.epochs * per_epoch if c.max_steps is None else min(c.max_steps, c.epochs * per_epoch)
    return Plan(c, device, precision, tokenizer, examples, skipped, world_size, per_epoch, total,
                resume_from), check


def describe(plan: Plan) -> list[str]:
    """What the run is about to do: the config, the data and its padding, the batch arithmetic."""
    c, examples = plan.config, plan.examples
    lengths = [len(e.input_ids) for e in examples]
    supervised = sum(e.supervised for e in examples)
    steps = {grouped: data.plan_epoch(lengths, 0, c.seed, c.global_batch_size, c.micro_batch_size, grouped)
             for grouped in (True, False)}
    waste = {grouped: data.padding_waste(lengths, steps[grouped]) for grouped in (True, False)}
    packed = ""
    if c.packing:
        packed = data.packed_padding_waste(lengths, steps[c.group_by_length], c.max_length, c.micro_batch_size,
                                           plan.world_size)
        packed = f"{packed:.1%} packed; "
    accum = c.global_batch_size // (c.micro_batch_size * plan.world_size)
    return [
        "config:\n" + config_module.dump(c).rstrip(),
        f"data: {len(examples)} examples, {sum(lengths)} tokens, supervised share "
        f"{supervised / sum(lengths):.1%}, longest {max(lengths)}, truncated "
        f"{sum(e.truncated for e in examples)} (max_length={c.max_length})"
        + (f", skipped {len(plan.skipped)} whose prompt fills max_length (first: {plan.skipped[0]})"
           if plan.skipped else ""),
        f"padding waste: {packed}{waste[c.group_by_length]:.1%} "
        f"{'length-grouped' if c.group_by_length else 'random'}; "
        f"{waste[not c.group_by_length]:.1%} {'random' if c.group_by_length else 'length-grouped'}",
        f"batch: {c.global_batch_size} = {c.micro_batch_size} per micro-batch x {plan.world_size} ranks x "
        f"{accum} accumulation; {plan.steps_per_epoch} steps/epoch, {plan.total_steps} steps",
        f"device: {plan.device}, precision {plan.precision}"
        + (f", resume from {plan.resume_from}" if plan.resume_from else ""),
    ]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to the peak, then cosine down to min_ratio x peak at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# --- the recipe's steps, in the order train() calls them ------------------------------------------


@dataclass
class Runtime:
    """This rank's place in the process group."""
    rank: int
    world: int
    device: object                   # torch.device
    log: Callable[[str], None]       # rank 0 prints, the other ranks stay silent

    @property
    def master(self) -> bool:
        return self.rank == 0


@dataclass
class Run:
    """What the loop changes as it goes: the model, its optimiser and schedule, the step reached."""
    model_config: object
    model: object
    optimizer: object
    scheduler: object
    scaler: object
    step: int                        # optimiser steps done (the next step's index)
    trainable: int                   # parameters the optimiser updates (LoRA: the adapters)
    total: int                       # every parameter, frozen or not
    peak_flops: float | None         # the GPU's bf16 peak, for MFU; None on CPU or an unknown GPU


@dataclass
class StepBatch:
    """One optimiser step as this rank sees it: its micro-batches (host tensors) and the step's totals
    over every rank, known from the examples without any communication."""
    index: int                       # 0-based step
    epoch: int
    micro_batches: list[dict]
    supervised: int                  # unmasked tokens of the whole step, every rank's micro-batches
    tokens: int                      # tokens of the whole step (padding left out)


def setup(plan: Plan) -> Runtime:
    """Process group, device, the out folder and its config.yaml."""
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    c = plan.config
    if "RANK" not in os.environ:                     # plain `python -m …`: a world of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(free_port()))
    dist.init_process_group("nccl" if plan.device == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if plan.device == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        device = torch.device("cpu")
    log = (lambda msg: tqdm.write(msg)) if rank == 0 else (lambda msg: None)
    for line in describe(plan):
        log(line)
    os.makedirs(os.path.join(c.out, "checkpoints"), exist_ok=True)
    if rank == 0:
        with open(os.path.join(c.out, "config.yaml"), "w", encoding="utf-8") as f:
            f.write(config_module.dump(c))
    return Runtime(rank, world, device, log)


def build(plan: Plan, rt: Runtime) -> Run:
    """The sharded model (LoRA applied inside when peft=lora), AdamW on the trainable parameters, the
    learning-rate schedule, the fp16 grad scaler, and the checkpoint's state when resuming."""
    import torch
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    c = plan.config
    model_config = modeling.model_config(c, plan.tokenizer)
    model, sharding = modeling.build_sharded_model(
        c, model_config, rt.rank, rt.device, runtime.mixed_precision(plan.precision))
    torch.manual_seed(c.seed + rt.rank)               # dropout differs across ranks, repeats across runs
    trainable_params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())     # DTensor numel is the global size
    trainable = sum(p.numel() for p in trainable_params)
    rt.log(f"model: {trainable / 1e6:.3g}M trainable / {total / 1e6:.3g}M parameters, {sharding}, "
           f"{rt.world} ranks")
    optimizer = torch.optim.AdamW(trainable_params, lr=c.lr, betas=tuple(c.betas), weight_decay=c.weight_decay)
    warmup = math.ceil(c.warmup_ratio * plan.total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, plan.total_steps, warmup, c.min_lr_ratio))
    scaler = ShardedGradScaler(device=rt.device.type, enabled=plan.precision == "fp16")
    step = 0
    if plan.resume_from:
        state = checkpoint.load(plan.resume_from, model, optimizer, rt.rank)
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step = state["step"]
        rt.log(f"resumed at step {step} (epoch {state['epoch']}, step {state['position']} of it)")
    peak = runtime.peak_flops(torch.cuda.get_device_name(rt.device)) if rt.device.type == "cuda" else None
    return Run(model_config, model, optimizer, scheduler, scaler, step, trainable, total, peak)


class StepLoader:
    """The tensors of step N+1 are built on a thread while step N computes (one slot: at most one
    step ahead). The forward and backward kernels release the GIL, so the thread's Python runs beside
    them; on CUDA the tensors are pinned so that their copy to the GPU does not block the host."""

    def __init__(self, plan: Plan, rt: Runtime):
        from concurrent.futures import ThreadPoolExecutor

        self.plan, self.rt = plan, rt
        self.lengths = [len(e.input_ids) for e in plan.examples]
        self.pin = rt.device.type == "cuda"
        self.epoch_plan: tuple[int, list] | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self.upcoming = None

    def steps_of_epoch(self, epoch: int) -> list:
        if self.epoch_plan is None or self.epoch_plan[0] != epoch:
            c = self.plan.config
            self.epoch_plan = (epoch, data.plan_epoch(self.lengths, epoch, c.seed, c.global_batch_size,
                                                      c.micro_batch_size, c.group_by_length))
        return self.epoch_plan[1]

    def build(self, index: int) -> StepBatch:
        c, examples = self.plan.config, self.plan.examples
        epoch, position = divmod(index, self.plan.steps_per_epoch)
        step = self.steps_of_epoch(epoch)[position]
        micro_batches = data.rank_micro_batches(examples, step, self.rt.rank, self.rt.world,
                                                self.plan.tokenizer.pad_token_id, packing=c.packing,
                                                max_length=c.max_length)
        if self.pin:
            micro_batches = [{k: v.pin_memory() for k, v in batch.items()} for batch in micro_batches]
        members = [i for batch in step for i in batch]
        return StepBatch(index, epoch, micro_batches, sum(examples[i].supervised for i in members),
                         sum(self.lengths[i] for i in members))

    def get(self, index: int) -> StepBatch:
        """Step ``index``'s batch (the prefetched one when it is that step), and starts on the next."""
        ready = self.upcoming.result() if self.upcoming is not None else None
        if ready is None or ready.index != index:
            ready = self.build(index)
        self.upcoming = self.pool.submit(self.build, index + 1) if index + 1 < self.plan.total_steps else None
        return ready

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def to_device(tensors: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}


def micro_batch_loss(model, tensors: dict):
    """Sum of the token losses of one micro-batch (fp32). Right padding + causal attention: real
    tokens never attend to the padding after them, so no attention mask is passed (SDPA keeps its
    fused kernels; padding has label -100). Packed rows carry position_ids, from which transformers
    finds the examples' boundaries and keeps attention inside each, but only without a KV cache
    (with one it attends across them): use_cache=False is passed, for a loaded model too."""
    import torch.nn.functional as F

    inputs = {"input_ids": tensors["input_ids"], "use_cache": False}
    if "position_ids" in tensors:
        inputs["position_ids"] = tensors["position_ids"]
    logits = model(**inputs).logits
    labels = tensors["labels"]
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                           ignore_index=data.IGNORE, reduction="sum")


def optimisation_step(plan: Plan, rt: Runtime, run: Run, batch: StepBatch):
    """The micro-batches of one step, then clip, step, zero_grad. Returns this rank's summed token loss
    and the gradient norm as device tensors (read only when logging: no host sync here) and the lr.

    The loss is the sum of token losses / the step's supervised tokens: every token weighs the same
    whatever its micro-batch or rank (not a mean of micro-batch means). FSDP averages gradients over
    ranks, hence x world. Gradients are reduced only after a rank's last micro-batch: the earlier
    ones accumulate unsharded, with no communication."""
    import torch

    c, model = plan.config, run.model
    loss_sum = torch.zeros((), device=rt.device)
    last = len(batch.micro_batches) - 1
    for j, host_tensors in enumerate(batch.micro_batches):
        model.set_requires_gradient_sync(j == last)
        token_loss = micro_batch_loss(model, to_device(host_tensors, rt.device))
        run.scaler.scale(token_loss * rt.world / batch.supervised).backward()
        loss_sum += token_loss.detach()
    run.scaler.unscale_(run.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], c.grad_clip)
    lr = run.scheduler.get_last_lr()[0]
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    run.step += 1
    return loss_sum, grad_norm, lr


class StepRows:
    """The metrics rows of the steps since the last flush, held as device tensors: the loss and the
    gradient norm reach the host once per flush (log_every, a checkpoint, the end), not once per step.
    Every rank flushes at the same steps (the all-reduce of the losses is a collective); rank 0
    writes. Throughput is measured over the whole window, after the device has finished it."""

    def __init__(self, rt: Runtime, run: Run, metrics: MetricsLog | None):
        self.rt, self.run, self.metrics = rt, run, metrics
        # Training FLOPs per token: 2N forward, 2N for the activations' gradients, 2N for the weights'
        # gradients of the trainable parameters only (LoRA: the adapters).
        self.flops_per_token = 4 * run.total + 2 * run.trainable
        self.pending: list[tuple[dict, object, object]] = []
        self.restart()

    def restart(self) -> None:
        """Start a new timing window (after a flush, and after a checkpoint's save)."""
        self.started, self.tokens = time.perf_counter(), 0

    def add(self, batch: StepBatch, loss_sum, grad_norm, lr: float) -> None:
        facts = {"step": batch.index + 1, "epoch": batch.epoch, "lr": lr, "tokens": batch.tokens,
                 "supervised": batch.supervised}
        self.pending.append((facts, loss_sum, grad_norm))
        self.tokens += batch.tokens

    def flush(self) -> list[dict]:
        import torch
        import torch.distributed as dist

        if not self.pending:
            return []
        losses = torch.stack([loss for _, loss, _ in self.pending])
        dist.all_reduce(losses)
        norms = torch.stack([_full(norm) for _, _, norm in self.pending]).tolist()
        losses = losses.tolist()
        elapsed = time.perf_counter() - self.started      # .tolist() waited for the device
        tokens_per_s = self.tokens / elapsed
        rows = []
        for (facts, _, _), loss, norm in zip(self.pending, losses, norms):
            row = {"step": facts["step"], "epoch": facts["epoch"], "loss": loss / facts["supervised"],
                   "lr": facts["lr"], "grad_norm": norm, "tokens": facts["tokens"],
                   "supervised": facts["supervised"], "tokens_per_s": tokens_per_s}
            if self.run.peak_flops:
                row["mfu"] = self.flops_per_token * tokens_per_s / (self.run.peak_flops * self.rt.world)
            if self.rt.device.type == "cuda":
                row["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.rt.device) / 2**30
            rows.append(row)
            if self.metrics:
                self.metrics.write(row)
        self.pending = []
        self.restart()
        return rows


def save_checkpoint(plan: Plan, rt: Runtime, run: Run) -> None:
    """Model and optimiser shards, the data position, schedule and RNG: a resumed run replays this one."""
    c = plan.config
    train_state = {"step": run.step, "epoch": run.step // plan.steps_per_epoch,
                   "position": run.step % plan.steps_per_epoch, "scheduler": run.scheduler.state_dict(),
                   "scaler": run.scaler.state_dict(), "world_size": rt.world, "config": c.to_dict()}
    folder = checkpoint.save(os.path.join(c.out, "checkpoints"), run.step, run.model, run.optimizer,
                             train_state, rt.rank, c.keep_last)
    rt.log(f"checkpoint: {folder}")


def check_batch(plan: Plan, loader: StepLoader) -> dict:
    """The fixed batch the export is checked on: rank 0's first micro-batch of the first step, the same
    tensors on every rank (each rank runs the forward: FSDP's all-gathers are collectives)."""
    c = plan.config
    first_step = loader.steps_of_epoch(0)[0]
    return data.rank_micro_batches(plan.examples, first_step, 0, loader.rt.world,
                                   plan.tokenizer.pad_token_id, packing=c.packing, max_length=c.max_length)[0]


def batch_loss(model, tensors: dict, device) -> float:
    """Mean token loss of one batch in eval mode (no dropout), as transformers computes it with labels."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss_sum = micro_batch_loss(model, to_device(tensors, device))
    model.train(was_training)
    return loss_sum.item() / int((tensors["labels"][:, 1:] != data.IGNORE).sum())


def export_model(plan: Plan, rt: Runtime, run: Run, check: dict) -> None:
    """final/: a save_pretrained folder with the tokenizer. Then rank 0 checks it: the exported model,
    loaded with transformers, must give the training model's loss on the fixed batch (computed just
    before, after the last step); both numbers go to final_check.json and the log."""
    import torch

    from selfinstruct.train_sft.export import export

    c = plan.config
    final = os.path.join(c.out, "final")
    dtype = torch.bfloat16 if plan.precision == "bf16" else torch.float32
    export(run.model, run.model_config, plan.tokenizer, final, dtype, rt.rank, c)
    how = ("PeftModel.from_pretrained(base, folder)" if adapter_export(c)
           else "AutoModelForCausalLM.from_pretrained")
    rt.log(f"exported: {final} ({how} / AutoTokenizer.from_pretrained)")
    if not rt.master:
        return
    result = dict(check["result"])
    if run.total > EXPORT_CHECK_MAX_PARAMS:
        rt.log(f"export check: skipped ({run.total / 1e9:.1f}B parameters to load on the CPU); the training "
               f"loss on the check batch is in final_check.json")
    else:
        exported = load_export(c, final, dtype)
        result["export_loss"] = batch_loss(exported, check["tensors"], "cpu")
        tolerance = EXPORT_TOLERANCE[plan.precision]
        result["export_ok"] = abs(result["export_loss"] - result["loss"]) <= tolerance * abs(result["loss"])
        rt.log(f"export check: {'ok' if result['export_ok'] else 'MISMATCH'}: training model loss "
               f"{result['loss']:.6f}, exported model loss {result['export_loss']:.6f} on the check batch "
               f"(relative tolerance {tolerance:g})")
    with open(os.path.join(c.out, "final_check.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    torch.save(check["tensors"], os.path.join(c.out, "final_check.pt"))


def adapter_export(c) -> bool:
    return c.peft == "lora" and c.lora_export == "adapter"


def load_export(c, final: str, dtype):
    """The exported model as a user loads it: a plain folder with transformers; an adapter with peft,
    on the base written beside it (a seeded or GGUF base) or on the model= folder."""
    from transformers import AutoModelForCausalLM

    if not adapter_export(c):
        return AutoModelForCausalLM.from_pretrained(final, dtype=dtype)
    from peft import PeftModel

    from selfinstruct.train_sft.export import BASE

    base = os.path.join(final, BASE) if os.path.isdir(os.path.join(final, BASE)) else c.model
    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=dtype), final)


# The loop's own check of the export loads the model on rank 0's CPU: done up to this size.
EXPORT_CHECK_MAX_PARAMS = 2e9
# fp32: the same arithmetic, only the order of a few sums may differ. bf16: the exported weights
# are the training weights rounded as the bf16 compute saw them, but kernels may differ.
EXPORT_TOLERANCE = {"fp32": 1e-5, "bf16": 2e-2, "fp16": 2e-2}


def log_rows(rt: Runtime, bar, rows: list[dict], log_every: int, total: int) -> None:
    """The progress bar's figures from the newest row; a log line for each row at log_every or the end."""
    if not rows:
        return
    newest = rows[-1]
    bar.set_postfix(loss=f"{newest['loss']:.4f}", lr=f"{newest['lr']:.2e}", tok_s=f"{newest['tokens_per_s']:.0f}",
                    **({"mfu": f"{newest['mfu']:.1%}"} if "mfu" in newest else {}))
    for row in rows:
        if row["step"] % log_every == 0 or row["step"] == total:
            rt.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


def train(plan: Plan) -> None:
    import torch.distributed as dist
    from tqdm import tqdm

    c = plan.config
    rt = setup(plan)
    run = build(plan, rt)
    metrics = MetricsLog(os.path.join(c.out, "metrics.jsonl"), run.step if plan.resume_from else None) \
        if rt.master else None
    rows = StepRows(rt, run, metrics)
    loader = StepLoader(plan, rt)
    bar = tqdm(total=plan.total_steps, initial=run.step, disable=not rt.master, unit="step", dynamic_ncols=True)
    try:
        while run.step < plan.total_steps:
            batch = loader.get(run.step)
            rows.add(batch, *optimisation_step(plan, rt, run, batch))
            bar.update()
            stopping = run.step == c.stop_after and run.step < plan.total_steps
            checkpointing = run.step % c.checkpoint_every == 0 or run.step == plan.total_steps or stopping
            if run.step % c.log_every == 0 or checkpointing:
                log_rows(rt, bar, rows.flush(), c.log_every, plan.total_steps)
            if checkpointing:
                save_checkpoint(plan, rt, run)
                rows.restart()
            if stopping:
                rt.log(f"stopped after step {run.step} (stop_after={c.stop_after}); continue with resume=true")
                break
    finally:
        loader.close()
        bar.close()
        if metrics:
            metrics.close()
    if c.export and run.step == plan.total_steps:
        tensors = check_batch(plan, loader)      # the trained model's loss on it, after the last step
        result = {"step": run.step, "loss": batch_loss(run.model, tensors, rt.device)}
        export_model(plan, rt, run, {"tensors": tensors, "result": result})
    dist.barrier()
    dist.destroy_process_group()


def _full(tensor):
    """clip_grad_norm_ returns a DTensor for sharded parameters."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


INTERRUPTED = "Interrupted: rerun with resume=true to continue from the last complete checkpoint."


def main(argv: list[str] | None = None) -> int:
    """0 on success; a bad config or input exits with status 2 and one ``Error:`` line (SystemExit; the
    mapping is ``selfinstruct.errors.user_errors``, shared with the CLI). Under torchrun every rank
    exits the same way and only rank 0 prints; the others exit only once it has
    (``runtime.settle_user_error``)."""
    rank = int(os.environ.get("RANK", "0"))
    try:
        with user_errors(show=rank == 0, interrupted=INTERRUPTED):
            plan, check_only = prepare(sys.argv[1:] if argv is None else argv)
            if check_only:
                for line in describe(plan):
                    print(line)
                print("check: ok")
                return 0
            train(plan)
    except SystemExit as stop:
        if stop.code == 2:           # a user error: the exception user_errors turned into the exit
            runtime.settle_user_error(rank, stop.__context__)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
