"""Supervised fine-tuning of a causal LM on Alpaca records with FSDP2: one recipe, top to bottom.

Setup → data → model → loop → checkpoint → export. The config is a YAML file (train_sft/configs/)
plus ``key=value`` overrides; the resolved config is logged at start and saved as out/config.yaml.

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

    # any of the above, continued from its latest complete checkpoint: add resume=true (or --resume)

``bash train_sft/launch.sh CONFIG key=value...`` picks the process count and multi-node settings for
you and checks the config and data first (``--check``: everything but the training, one process).
Without torchrun, ``python -m selfinstruct.train_sft.train CONFIG ...`` trains as one rank.

Out folder: config.yaml, metrics.jsonl (per step: step, loss, lr, tokens, tokens_per_s…),
checkpoints/step_N/ (sharded, keep_last), final/ (save_pretrained folder with the tokenizer).
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

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
    waste = {grouped: data.padding_waste(lengths, data.plan_epoch(
        lengths, 0, c.seed, c.global_batch_size, c.micro_batch_size, grouped)) for grouped in (True, False)}
    accum = c.global_batch_size // (c.micro_batch_size * plan.world_size)
    return [
        "config:\n" + config_module.dump(c).rstrip(),
        f"data: {len(examples)} examples, {sum(lengths)} tokens, supervised share "
        f"{supervised / sum(lengths):.1%}, longest {max(lengths)}, truncated "
        f"{sum(e.truncated for e in examples)} (max_length={c.max_length})"
        + (f", skipped {len(plan.skipped)} whose prompt fills max_length (first: {plan.skipped[0]})"
           if plan.skipped else ""),
        f"padding waste: {waste[c.group_by_length]:.1%} ({'length-grouped' if c.group_by_length else 'random'}"
        f"; {waste[not c.group_by_length]:.1%} {'random' if c.group_by_length else 'length-grouped'})",
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


def train(plan: Plan) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
    from tqdm import tqdm

    from selfinstruct.train_sft.export import export

    c = plan.config

    # --- setup --------------------------------------------------------------------------------
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
    master = rank == 0
    log = (lambda msg: tqdm.write(msg)) if master else (lambda msg: None)
    for line in describe(plan):
        log(line)
    os.makedirs(os.path.join(c.out, "checkpoints"), exist_ok=True)
    if master:
        with open(os.path.join(c.out, "config.yaml"), "w", encoding="utf-8") as f:
            f.write(config_module.dump(c))

    # --- model ----------------------------------------------------------------------------------
    model_config = modeling.model_config(c, plan.tokenizer)
    model, sharding = modeling.build_sharded_model(
        c, model_config, rank, device, runtime.mixed_precision(plan.precision))
    torch.manual_seed(c.seed + rank)                  # dropout differs across ranks, repeats across runs
    n_params = sum(p.numel() for p in model.parameters())   # DTensor numel is the global size
    log(f"model: {n_params / 1e6:.1f}M parameters, {sharding}, {world} ranks")
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=tuple(c.betas),
                                  weight_decay=c.weight_decay)
    warmup = math.ceil(c.warmup_ratio * plan.total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, plan.total_steps, warmup, c.min_lr_ratio))
    scaler = ShardedGradScaler(device=device.type, enabled=plan.precision == "fp16")
    step = 0
    if plan.resume_from:
        state = checkpoint.load(plan.resume_from, model, optimizer, rank)
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step = state["step"]
        log(f"resumed at step {step} (epoch {state['epoch']}, step {state['position']} of it)")
    peak = runtime.peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None

    # --- loop -----------------------------------------------------------------------------------
    examples, pad_id = plan.examples, plan.tokenizer.pad_token_id
    lengths = [len(e.input_ids) for e in examples]
    metrics = MetricsLog(os.path.join(c.out, "metrics.jsonl"), step if plan.resume_from else None) \
        if master else None
    bar = tqdm(total=plan.total_steps, initial=step, disable=not master, unit="step", dynamic_ncols=True)
    epoch_plan, planned_epoch = None, None
    while step < plan.total_steps:
        epoch, position = divmod(step, plan.steps_per_epoch)
        if planned_epoch != epoch:
            epoch_plan = data.plan_epoch(lengths, epoch, c.seed, c.global_batch_size, c.micro_batch_size,
                                         c.group_by_length)
            planned_epoch = epoch
        batches = epoch_plan[position]
        # Sum of token losses / supervised tokens of the whole step: every token weighs the same
        # whatever its micro-batch or rank. FSDP averages gradients over ranks, hence x world.
        supervised = sum(examples[i].supervised for batch in batches for i in batch)
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for batch in batches[rank::world]:
            tensors = data.collate([examples[i] for i in batch], pad_id)
            input_ids, labels = tensors["input_ids"].to(device), tensors["labels"].to(device)
            # Right padding + causal attention: real tokens never attend to the padding after them,
            # so no attention mask is passed (SDPA keeps its fused kernels); padding has label -100.
            logits = model(input_ids=input_ids).logits
            token_loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                         ignore_index=data.IGNORE, reduction="sum")
            scaler.scale(token_loss * world / supervised).backward()
            loss_sum += token_loss.detach()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        lr = scheduler.get_last_lr()[0]
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        dist.all_reduce(loss_sum)
        elapsed = time.perf_counter() - started
        tokens = sum(lengths[i] for batch in batches for i in batch)
        row = {"step": step, "epoch": epoch, "loss": loss_sum.item() / supervised, "lr": lr,
               "grad_norm": _full(grad_norm).item(), "tokens": tokens, "tokens_per_s": tokens / elapsed}
        if peak:
            row["mfu"] = 6 * n_params * row["tokens_per_s"] / (peak * world)
        if master:
            metrics.write(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}", tok_s=f"{row['tokens_per_s']:.0f}",
                            **({"mfu": f"{row['mfu']:.1%}"} if peak else {}))
            bar.update()
            if step % c.log_every == 0 or step == plan.total_steps:
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

        # --- checkpoint -------------------------------------------------------------------------
        stopping = step == c.stop_after and step < plan.total_steps
        if step % c.checkpoint_every == 0 or step == plan.total_steps or stopping:
            train_state = {"step": step, "epoch": step // plan.steps_per_epoch,
                           "position": step % plan.steps_per_epoch, "scheduler": scheduler.state_dict(),
                           "scaler": scaler.state_dict(), "world_size": world, "config": c.to_dict()}
            folder = checkpoint.save(os.path.join(c.out, "checkpoints"), step, model, optimizer,
                                     train_state, rank, c.keep_last)
            log(f"checkpoint: {folder}")
        if stopping:
            log(f"stopped after step {step} (stop_after={c.stop_after}); continue with resume=true")
            break
    bar.close()
    if metrics:
        metrics.close()

    # --- export ---------------------------------------------------------------------------------
    if c.export and step == plan.total_steps:
        final = os.path.join(c.out, "final")
        export(model, model_config, plan.tokenizer, final,
               torch.bfloat16 if plan.precision == "bf16" else torch.float32, rank)
        log(f"exported: {final} (AutoModelForCausalLM.from_pretrained / AutoTokenizer.from_pretrained)")
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
    exits the same way and only rank 0 prints."""
    rank = int(os.environ.get("RANK", "0"))
    with user_errors(show=rank == 0, interrupted=INTERRUPTED):
        plan, check_only = prepare(sys.argv[1:] if argv is None else argv)
        if check_only:
            for line in describe(plan):
                print(line)
            print("check: ok")
            return 0
        train(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
