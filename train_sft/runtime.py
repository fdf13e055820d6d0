"""Device, precision and the numbers that depend on the hardware (peak FLOP/s for MFU)."""
from __future__ import annotations

import os
import sys

from selfinstruct.errors import UsageError

# Dense bf16 tensor-core peak per GPU, FLOP/s (vendor datasheets, without sparsity). Matched by
# substring of torch.cuda.get_device_name(), first match wins. V100 has no bf16: its fp16 peak.
PEAK_FLOPS = [
    ("GB200", 2450e12), ("B200", 2250e12), ("H200", 989e12), ("H100", 989e12), ("H800", 989e12),
    ("GH200", 989e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12),
    ("L4", 121e12), ("A6000", 155e12), ("A10", 125e12), ("4090", 165e12), ("3090", 71e12),
    ("V100", 125e12), ("MI300X", 1307e12), ("MI250X", 383e12),
]


def peak_flops(device_name: str) -> float | None:
    for key, flops in PEAK_FLOPS:
        if key in device_name:
            return flops
    return None


def resolve_device(c) -> str:
    """"cuda" or "cpu" (checked before the process group starts)."""
    import torch

    has_gpu = torch.cuda.is_available()
    if c.device == "cuda" and not has_gpu:
        raise UsageError("device=cuda but no GPU is visible; use device=cpu")
    return "cuda" if c.device == "cuda" or (c.device == "auto" and has_gpu) else "cpu"


def resolve_precision(c, device: str) -> str:
    """"bf16", "fp16" or "fp32"; refuses what the device cannot do, with the fix."""
    import torch

    if device == "cpu":
        if c.precision == "fp16":
            raise UsageError("precision=fp16 needs a CUDA GPU; on CPU use precision=fp32 (or precision=bf16)")
        return "fp32" if c.precision == "auto" else c.precision
    bf16_ok = torch.cuda.is_bf16_supported()
    if c.precision == "bf16" and not bf16_ok:
        raise UsageError(f"precision=bf16: {torch.cuda.get_device_name()} does not support bf16; "
                         f"use precision=fp16 (or precision=fp32)")
    if c.precision == "auto":
        return "bf16" if bf16_ok else "fp16"
    return c.precision


def mixed_precision(precision: str):
    """FSDP2 policy: compute in bf16/fp16, keep fp32 master weights, reduce gradients in fp32."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


# Under torchrun, the first rank to exit makes the agent stop every other rank at once. A bad input
# fails every rank alike, and only rank 0 prints it: were rank 1 to exit first, rank 0 would be
# stopped before printing and the user would see no error at all. So rank 0 marks in the agent's
# store that it has printed, and the other ranks wait for that mark before they exit.
ERROR_SHOWN_KEY = "selfinstruct/error-shown"
ERROR_WAIT_S = 60


def settle_user_error(rank: int, error: BaseException | None) -> None:
    """Called by every rank that is about to exit on a user error (rank 0 after printing it).

    A rank other than 0 that waits in vain (the error was its own: rank 0 is still training) prints its
    error itself, with its rank. Without torchrun's agent store there is nothing to wait on."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return
    from datetime import timedelta

    from torch.distributed import TCPStore

    key = f"{ERROR_SHOWN_KEY}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    wait = timedelta(seconds=ERROR_WAIT_S)
    try:
        store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                         timeout=wait)
        if rank == 0:
            store.set(key, "1")
            return
        store.wait([key], wait)
    except Exception:                 # no mark in time, or no store to reach: this rank speaks itself
        if rank != 0:
            print(f"Error: rank {rank}: {error}", file=sys.stderr, flush=True)
