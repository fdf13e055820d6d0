"""train_sft on CPU: padding waste and training tokens/s, with and without length grouping.

    python benchmarks/bench_train.py                 # 2 ranks, 12 steps per run
    python benchmarks/bench_train.py --ranks 1 --steps 20

Data: the 175 Self-Instruct seed tasks from ../shared/data when present (real instruction lengths),
else 400 synthetic Alpaca records with lengths spread like Alpaca's. Both runs train the tiny LLaMA of
configs/tiny-cpu.yaml under torchrun (gloo) in this same invocation; tokens/s counts real (non-padding)
tokens, the median over the steps after the first two. Prints ``RESULT`` lines with the ratios.
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


def padding(data_path: str, tokenizer_dir: str, global_batch: int, micro: int) -> dict[bool, float]:
    from transformers import AutoTokenizer

    from selfinstruct.train_sft import data

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    examples, _ = data.load_examples(data_path, tokenizer, "alpaca", 512, too_long="skip")
    lengths = [len(e.input_ids) for e in examples]
    waste = {}
    for grouped in (True, False):
        per_epoch = [data.padding_waste(lengths, data.plan_epoch(lengths, epoch, 42, global_batch, micro,
                                                                 grouped)) for epoch in range(3)]
        waste[grouped] = statistics.mean(per_epoch)
    print(f"data: {len(examples)} examples, mean length {statistics.mean(lengths):.0f}, "
          f"max {max(lengths)} tokens")
    return waste


def train(data_path: str, tokenizer_dir: str, ranks: int, steps: int, grouped: bool, micro: int,
          global_batch: int) -> float:
    out = os.path.join(WORK, f"run-{'grouped' if grouped else 'random'}-{ranks}")
    subprocess.run(["rm", "-rf", out], check=True)
    from selfinstruct.train_sft.train import free_port

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "selfinstruct.train_sft.train",
               "train_sft/configs/tiny-cpu.yaml", f"data={data_path}", f"out={out}",
               f"tokenizer={tokenizer_dir}", f"max_steps={steps}", "epochs=100", f"micro_batch_size={micro}",
               f"global_batch_size={global_batch}",
               f"group_by_length={str(grouped).lower()}", "checkpoint_every=100000", "export=false",
               "log_every=100000", "max_length=512", "too_long=skip"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode:
        sys.exit(result.stderr[-3000:])
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

    waste = padding(data_path, tokenizer_dir, args.global_batch, args.micro)
    print(f"RESULT padding_waste grouped={waste[True]:.3f} random={waste[False]:.3f} "
          f"ratio_random_over_grouped={waste[False] / max(waste[True], 1e-9):.1f}x")

    speed = {grouped: train(data_path, tokenizer_dir, args.ranks, args.steps, grouped, args.micro,
                            args.global_batch) for grouped in (False, True)}
    print(f"RESULT tokens_per_s ranks={args.ranks} grouped={speed[True]:.0f} random={speed[False]:.0f} "
          f"ratio_grouped_over_random={speed[True] / speed[False]:.2f}x")


if __name__ == "__main__":
    main()
