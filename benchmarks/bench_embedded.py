"""Embedded teacher inside the real generate loop vs raw batched ``model.generate``, same run.

Baseline: the very batches the loop sent (recorded by the teacher), again straight into
``model.generate`` with the same generation settings and sampling seed; tokens/s = generated
non-padding tokens / seconds. Loop: ``selfinstruct generate``'s loop with the same model
already loaded, until ``--num`` examples; tokens/s = tokens the teacher generated / loop seconds
(parsing, filtering, journaling and batching gaps included). Target ratio ≥ 0.8. Also accepted
examples per minute for English and Chinese.

    python benchmarks/bench_embedded.py                 # batch 16, en num 4, zh num 2 (~10-20 min)
    python benchmarks/bench_embedded.py --batch 32 --num-en 10 --num-zh 4
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time

from selfinstruct.generate import Settings, run_async
from selfinstruct.teachers.base import Request
from selfinstruct.teachers.embedded import EmbeddedTeacher, generation_kwargs


def raw_tokens_per_s(teacher: EmbeddedTeacher, batches: list[list[Request]]) -> float:
    """The loop's own batches again, straight into ``model.generate`` with the same settings and the
    same sampling seed: the same tokens come out, so the ratio is the loop's overhead alone."""
    import torch
    tok, model = teacher.tokenizer, teacher.model
    made, secs = 0, 0.0
    for reqs in batches:
        enc = tok([r.prompt for r in reqs], return_tensors="pt", padding=True)
        kw = generation_kwargs(reqs[0], tok)
        kw["max_new_tokens"] = max(r.max_tokens for r in reqs)
        if reqs[0].seed is not None:
            torch.manual_seed(reqs[0].seed)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, **kw)
        secs += time.perf_counter() - t0
        new = out[:, enc["input_ids"].shape[1]:]
        made += int((new != tok.pad_token_id).sum())
    return made / secs


def loop_run(teacher: EmbeddedTeacher, lang: str, num: int) -> tuple[float, float, int]:
    out = tempfile.mkdtemp(prefix=f"bench-embedded-{lang}-")
    try:
        tokens0, t0 = teacher.generated_tokens, time.perf_counter()
        summary = asyncio.run(run_async(Settings(num=num, out=out, lang=lang, progress=False), teacher))
        secs = time.perf_counter() - t0
        return (teacher.generated_tokens - tokens0) / secs, summary["kept"] / secs * 60, summary["kept"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--num-en", type=int, default=4)
    ap.add_argument("--num-zh", type=int, default=2)
    args = ap.parse_args()
    teacher = EmbeddedTeacher(concurrency=args.batch)
    t0 = time.perf_counter()
    asyncio.run(teacher.start())
    asyncio.run(teacher.aclose())
    print(f"model loaded in {time.perf_counter() - t0:.1f}s", flush=True)
    teacher.batch_log = []
    in_loop, per_min_en, n_en = loop_run(teacher, "en", args.num_en)
    batches, teacher.batch_log = teacher.batch_log, None
    raw = raw_tokens_per_s(teacher, batches)
    print(f"raw model.generate on the loop's {len(batches)} batches: {raw:.1f} tok/s", flush=True)
    print(f"RESULT name=embedded_loop_tokens_per_s value={in_loop:.1f} baseline={raw:.1f} "
          f"ratio={in_loop / raw:.2f} target=0.8", flush=True)
    print(f"RESULT name=embedded_accepted_per_minute_en value={per_min_en:.2f} accepted={n_en}", flush=True)
    _, per_min_zh, n_zh = loop_run(teacher, "zh", args.num_zh)
    print(f"RESULT name=embedded_accepted_per_minute_zh value={per_min_zh:.2f} accepted={n_zh}", flush=True)


if __name__ == "__main__":
    main()
