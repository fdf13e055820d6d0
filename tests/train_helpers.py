"""Shared helpers for the train_sft tests that run the recipe: the tiny model's arguments, torchrun with
2 CPU ranks (gloo), a SIGKILL in mid-run, and the references the proofs compare with (transformers'
own loss, the gathered state of a checkpoint).

The recipe runs in subprocesses (``python -m torch.distributed.run …``), never in the test process,
so a process group, an environment variable or a thread never leaks into other tests.
``examples``/``step_micro_batches`` rebuild, from the data file alone, exactly the tensors the loop
fed a rank at a step (the same functions the loop calls), so that a reference computed here sees the
same batch.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = "train_sft/configs/tiny-cpu.yaml"
LAUNCH = str(ROOT / "train_sft" / "launch.sh")


# torchrun's settings: a run started from the tests gets its own, never the test process's
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                   "GROUP_RANK", "NODE_RANK", "NNODES")


def env() -> dict:
    """One thread per rank (2 cores shared), nothing fetched from a hub, no inherited torchrun settings."""
    inherited = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    return {**inherited, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}


def save_tokenizer(folder) -> str:
    """The SmolLM2 tokenizer read once from the embedded GGUF and saved as a folder (loads in 0.3 s)."""
    from selfinstruct.train_sft import modeling

    modeling.smollm2_tokenizer().save_pretrained(folder)
    return str(folder)


def instruction_rows(n: int) -> list[dict]:
    """``n`` Alpaca records in English and Chinese whose responses differ in length (1 to ~40 tokens),
    so micro-batches of a step hold different numbers of supervised tokens."""
    rows = []
    for i in range(n):
        a, b = 3 + 7 * i, 11 + 5 * i
        kind = i % 4
        if kind == 0:
            rows.append({"instruction": f"What is {a} plus {b}?", "input": "", "output": str(a + b)})
        elif kind == 1:
            rows.append({"instruction": f"{a}加{b}等于多少？", "input": "", "output": f"{a}加{b}等于{a + b}。"})
        elif kind == 2:
            rows.append({"instruction": "List the numbers in order.", "input": f"from {a} to {a + i}",
                         "output": ", ".join(str(k) for k in range(a, a + i + 1))})
        else:
            rows.append({"instruction": "把下面的数字从小到大排列。", "input": f"{b}、{a}、{a + b}",
                         "output": f"{a}、{b}、{a + b}。这是从小到大的顺序，共有三个数字。" * (1 + i % 3)})
    return rows


def write_rows(path, rows: list[dict]) -> str:
    Path(path).write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


def tiny_args(data_file, tokenizer_dir, out, *extra: str) -> list[str]:
    """The tiny model on ``data_file`` (fp32, CPU); ``extra`` key=value settings win."""
    return [TINY_CONFIG, f"data={data_file}", f"out={out}", f"tokenizer={tokenizer_dir}", *extra]


def torchrun_command(args: list[str], nproc: int = 2, script: str | None = None) -> list[str]:
    """The recipe (or ``script``, a file that runs it) under torchrun."""
    from selfinstruct.train_sft.train import free_port

    target = [script] if script else ["-m", "selfinstruct.train_sft.train"]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
            "127.0.0.1", "--master_port", str(free_port()), *target, *args]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300,
             script: str | None = None) -> subprocess.CompletedProcess:
    return run_job(lambda: torchrun_command(args, nproc, script), timeout)


def launch(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """train_sft/launch.sh with 2 CPU ranks (``torchrun --standalone``)."""
    return run_job(lambda: ["bash", LAUNCH, *args], timeout, NPROC="2")


# A free port is found by binding port 0 and closing it; torchrun binds it again a moment later, and
# in between any socket may take it (a client's ephemeral port). The rendezvous then fails before
# any rank starts, with nothing written: such a run is started again, on another port.
PORT_CLASH = "EADDRINUSE"


def run_job(command, timeout: float, attempts: int = 3, **extra_env: str) -> subprocess.CompletedProcess:
    """``command()`` (built anew each attempt: a new port) run to the end, again on a port clash."""
    for _ in range(attempts):
        result = subprocess.run(command(), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                                env={**env(), **extra_env})
        if result.returncode == 0 or PORT_CLASH not in result.stderr:
            return result
    return result


def train_one_rank(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """The recipe without torchrun: a world of one."""
    return subprocess.run([sys.executable, "-m", "selfinstruct.train_sft.train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env())


def metrics(out) -> list[dict]:
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --- a crash ----------------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:                          # the task ended meanwhile
                continue
            found += children
            todo += children
    return found


def kill_process_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process under it, each process group at once. torchrun starts each
    worker in a session of its own, so killing torchrun's group alone would leave the workers running."""
    groups = set()
    for member in [pid, *_descendants(pid)]:
        try:
            groups.add(os.getpgid(member))
        except ProcessLookupError:
            pass
    groups.discard(os.getpgid(0))                   # never the test process's own group
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_after_checkpoint(args: list[str], out, step: int, nproc: int = 2, timeout: float = 300) -> dict:
    """Start the recipe under torchrun, wait until checkpoint ``step`` is complete, SIGKILL the whole
    process tree at once. Returns what the kill found: ``running`` (the run had not finished, so
    later steps were computing), ``complete`` (the complete checkpoints' steps at that moment)."""
    from selfinstruct.train_sft import checkpoint

    root = os.path.join(out, "checkpoints")
    marker = os.path.join(checkpoint.step_dir(root, step), checkpoint.MARKER)
    log = open(Path(out).parent / f"{Path(out).name}.killed.log", "w")
    process = subprocess.Popen(torchrun_command(args, nproc), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env=env(), start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not os.path.isfile(marker):
            if process.poll() is not None:
                raise AssertionError(f"the run ended (status {process.returncode}) before checkpoint {step}; "
                                     f"log: {log.name}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint {step} after {timeout} s; log: {log.name}")
            time.sleep(0.01)
        running = process.poll() is None
        kill_process_tree(process.pid)
        complete = [s for s, _ in checkpoint.complete_steps(root)]
    finally:
        if process.poll() is None:
            kill_process_tree(process.pid)
        process.wait(timeout=60)
        log.close()
    return {"running": running, "complete": complete, "returncode": process.returncode}


# --- the references --------------------------------------------------------------------------------


def load_config(args: list[str]):
    """The TrainConfig a run with ``args`` uses (args as given to the recipe, config file first)."""
    from selfinstruct.train_sft import config

    return config.load(args[0], [a for a in args[1:] if not a.startswith("-")])


def examples(c, tokenizer) -> list:
    from selfinstruct.train_sft import data

    return data.load_examples(c.data, tokenizer, c.template, c.max_length, c.too_long)[0]


def step_micro_batches(c, tokenizer, encoded: list, step_index: int, rank: int, world: int) -> list[dict]:
    """The tensors the loop gave rank ``rank`` of ``world`` at step ``step_index`` (0-based)."""
    from selfinstruct.train_sft import data

    lengths = [len(e.input_ids) for e in encoded]
    steps = data.steps_per_epoch(len(encoded), c.global_batch_size)
    epoch, position = divmod(step_index, steps)
    plan = data.plan_epoch(lengths, epoch, c.seed, c.global_batch_size, c.micro_batch_size, c.group_by_length)
    return data.rank_micro_batches(encoded, plan[position], rank, world, tokenizer.pad_token_id,
                                   packing=c.packing, max_length=c.max_length)


def initial_model(c, tokenizer):
    """The model as the run starts it (the same seeded init), plain, fp32, on CPU, in eval mode."""
    from selfinstruct.train_sft import modeling

    model = modeling.load_full_model(c, modeling.model_config(c, tokenizer))
    return model.eval()


def _hf_inputs(tensors: dict, num_items_in_batch=None) -> dict:
    inputs = {"input_ids": tensors["input_ids"], "labels": tensors["labels"]}
    if "position_ids" in tensors:              # packed rows: found from the positions, without a cache
        inputs.update(position_ids=tensors["position_ids"], use_cache=False)
    else:
        inputs["attention_mask"] = tensors["attention_mask"]
    if num_items_in_batch is not None:
        inputs["num_items_in_batch"] = num_items_in_batch
    return inputs


def hf_loss(model, tensors: dict, num_items_in_batch=None) -> float:
    """transformers' own causal-LM loss with ``labels`` (it shifts them and ignores -100): the mean over
    the batch's unmasked tokens, or their sum / ``num_items_in_batch`` (how its Trainer accumulates)."""
    import torch

    with torch.no_grad():
        return model(**_hf_inputs(tensors, num_items_in_batch)).loss.item()


def hf_gradient_norm(model, batches: list[dict]) -> float:
    """The norm of the gradient of the mean token loss over all of ``batches`` (before any clipping),
    accumulated the way transformers' Trainer does: each batch's token sum / the total token count."""
    import torch

    total = sum(supervised_tokens(b) for b in batches)
    model.zero_grad(set_to_none=True)
    for batch in batches:
        model(**_hf_inputs(batch, total)).loss.backward()
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return norm.item()


def supervised_tokens(tensors: dict) -> int:
    """Labels the loss sees after the one-token shift."""
    return int((tensors["labels"][:, 1:] != -100).sum())


def gathered_state(checkpoint_folder, scratch) -> dict:
    """The full model state a sharded checkpoint holds (every rank's shards joined), as torch tensors."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    path = os.path.join(scratch, "gathered.pt")
    dcp_to_torch_save(checkpoint_folder, path)
    return torch.load(path, weights_only=False)["model"]


def base_state(c, tokenizer) -> dict:
    """The seeded init of the base model (without adapters), fp32, as a plain state dict."""
    import dataclasses

    from selfinstruct.train_sft import modeling

    plain = dataclasses.replace(c, peft="none")
    return modeling.load_full_model(plain, modeling.model_config(plain, tokenizer)).state_dict()


PEFT_PREFIX = "base_model.model."        # where peft puts the wrapped model in its parameter names


def merged_by_hand(base: dict, adapters: dict, scale: float) -> dict:
    """W + scale · B·A for every adapted layer, W for the rest (``adapters``: peft's parameter names,
    as in a checkpoint): the merge written out, not peft's."""
    merged = dict(base)
    for name, a in adapters.items():
        if ".lora_A." not in name:
            continue
        layer = name[len(PEFT_PREFIX):].split(".lora_A.")[0]
        b = adapters[name.replace(".lora_A.", ".lora_B.")]
        merged[layer + ".weight"] = base[layer + ".weight"] + scale * (b @ a)
    return merged
