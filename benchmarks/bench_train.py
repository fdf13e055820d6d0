"""train_sft on CPU: padding waste and training tokens/s, random order vs length grouping vs packing.

    python benchmarks/bench_train.py                 # 2 ranks, 12 steps per run
    python benchmarks/bench_train.py --ranks 1 --steps 20

Data: the 175 Self-Instruct seed tasks from ../shared/data when present (real instruction lengths),
else 400 synthetic Alpaca records with lengths spread like Alpaca's. The three runs train the tiny
LLaMA of configs/tiny-cpu.yaml under torchrun (gloo) in this same invocation, on the same steps'
examples: random order (micro-batches of examples padded to their longest), length-grouped, and
packed (packing=true: the step's examples in rows of up to max_length, in random order, which mixes
lengths and packs best). Tokens/s counts real (non-padding) tokens, the median over the steps after
the first two. Prints ``RESULT`` lines with the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "benchmarks", "_data", "train")
SEEDS = os.path.join(ROOT, "..", "shared", "data", "self_instruct_seed_tasks.jsonl")


def dataset() -> tuple[str, str]:
    if os.path.isfile(SEEDS):
        return SEEDS, "self-instruct seed tasks"
    rng = random.Random(0)
    words = "the model writes a short answer to each question about data and code in plain words".split()
    rows = [{"instruction": " ".join(rng.choices(words, k=rng.randint(4, 30))),
             "input": " ".join(rng.choices(words, k=rng.choice([0, 0, rng.randint(5, 80)]))),
             "output": " ".join(rng.choices(words, k=int(rng.lognormvariate(3.5, 0.9)) + 1))}
            for _ in range(400)]
    path = os.path.join(WORK, "synthetic.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f)
    return path, "synthetic alpaca-like"


def tokenizer_folder() -> str:
    """The SmolLM2 tokenizer saved once as a folder (reading the GGUF costs ~10 s per rank)."""
    folder = os.path.join(WORK, "tokenizer")
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")):
        from selfinstruct.train_sft import modeling

        modeling.smollm2_tokenizer().save_pretrained(folder)
    return folder


def padding(data_path: str, tokenizer_dir: str, global_batch: int, micro: int, ranks: int) -> dict[str, float]:
    """Padding waste of each mode, the mean over three epochs' plans (no training needed)."""
    from transformers import AutoTokenizer

    from selfinstruct.train_sft import data

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    examples, _ = data.load_examples(data_path, tokenizer, "alpaca", MAX_LENGTH, too_long="skip")
    lengths = [len(e.input_ids) for e in examples]
    waste: dict[str, list[float]] = {mode: [] for mode in MODES}
    for epoch in range(3):
        for mode in MODES:
            steps = data.plan_epoch(lengths, epoch, 42, global_batch, micro, mode == "grouped")
            waste[mode].append(data.packed_padding_waste(lengths, steps, MAX_LENGTH, micro, ranks)
                               if mode == "packed" else data.padding_waste(lengths, steps))
    print(f"data: {len(examples)} examples, mean length {statistics.mean(lengths):.0f}, "
          f"max {max(lengths)} tokens")
    return {mode: statistics.mean(values) for mode, values in waste.items()}


MODES = ("random", "grouped", "packed")
MAX_LENGTH = 512


def train(data_path: str, tokenizer_dir: str, ranks: int, steps: int, mode: str, micro: int,
          global_batch: int) -> float:
    out = os.path.join(WORK, f"run-{mode}-{ranks}")
    subprocess.run(["rm", "-rf", out], check=True)
    from selfinstruct.train_sft.train import free_port

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "selfinstruct.train_sft.train",
               "train_sft/configs/tiny-cpu.yaml", f"data={data_path}", f"out={out}",
               f"tokenizer={tokenizer_dir}", f"max_steps={steps}", "epochs=100", f"micro_batch_size={micro}",
               f"global_batch_size={global_batch}", f"group_by_length={str(mode == 'grouped').lower()}",
               f"packing={str(mode == 'packed').lower()}", "checkpoint_every=100000", "export=false",
               "log_every=1", f"max_length={MAX_LENGTH}", "too_long=skip"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode:
        sys.exit(result.stderr[-3000:])
    # log_every=1: the loop times its steps over each logging window; one step a window gives the
    # per-step rates, whose median leaves out the first steps' warm-up.
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return statistics.median(r["tokens_per_s"] for r in rows[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--global-batch", type=int, default=16)
    args = parser.parse_args()
    os.makedirs(WORK, exist_ok=True)
    data_path, what = dataset()
    tokenizer_dir = tokenizer_folder()
    print(f"dataset: {what} ({data_path})")

    waste = padding(data_path, tokenizer_dir, args.global_batch, args.micro, args.ranks)
    print(f"RESULT padding_waste grouped={waste['grouped']:.3f} random={waste['random']:.3f} "
          f"ratio_random_over_grouped={waste['random'] / max(waste['grouped'], 1e-9):.1f}x")
    print(f"RESULT padding_waste_packed ranks={args.ranks} packed={waste['packed']:.3f} "
          f"grouped={waste['grouped']:.3f} ratio_grouped_over_packed={waste['grouped'] / max(waste['packed'], 1e-9):.2f}x")

    speed = {mode: train(data_path, tokenizer_dir, args.ranks, args.steps, mode, args.micro, args.global_batch)
             for mode in MODES}
    print(f"RESULT tokens_per_s ranks={args.ranks} grouped={speed['grouped']:.0f} random={speed['random']:.0f} "
          f"ratio_grouped_over_random={speed['grouped'] / speed['random']:.2f}x")
    print(f"RESULT tokens_per_s_packed ranks={args.ranks} packed={speed['packed']:.0f} "
          f"grouped={speed['grouped']:.0f} ratio_packed_over_grouped={speed['packed'] / speed['grouped']:.2f}x")


if __name__ == "__main__":
    main()
