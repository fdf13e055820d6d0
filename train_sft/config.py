"""The training config: defaults, a YAML file, then ``key=value`` overrides from the command line.

Every key is declared in ``TrainConfig`` with its default; a key that is not declared is an error
that names it (and the closest known key), so a typo never trains with a silently ignored setting.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from selfinstruct.errors import UsageError

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
TEMPLATES = ("alpaca", "chat")
PRECISIONS = ("auto", "bf16", "fp32", "fp16")
DEVICES = ("auto", "cuda", "cpu")


@dataclass
class TrainConfig:
    # model: a Hugging Face causal LM folder (config.json + weights), a folder holding `gguf_file`,
    # or "tiny-llama": a small LLaMA built here from `tiny` (random init, for CPU runs and tests).
    model: str = ""
    gguf_file: str | None = None
    tokenizer: str | None = None          # None: the model's; "smollm2": the embedded GGUF's; or a folder
    tiny: dict = field(default_factory=lambda: {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 256})
    data: str = ""                        # Alpaca JSON, JSON lines, parquet… (selfinstruct.readers)
    template: str = "alpaca"              # alpaca | chat (the tokenizer's chat template)
    max_length: int = 512
    too_long: str = "error"               # a record whose prompt fills max_length: error | skip (logged)
    out: str = ""
    # Optimisation (Stanford Alpaca's defaults)
    epochs: int = 3
    max_steps: int | None = None          # caps the run (and the cosine schedule) at this many steps
    stop_after: int | None = None         # stop after this step with a checkpoint, as if interrupted
    global_batch_size: int = 128          # examples per optimiser step, over all ranks and micro-steps
    micro_batch_size: int = 4             # examples per rank per forward pass
    lr: float = 2e-5
    min_lr_ratio: float = 0.0
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0
    group_by_length: bool = True
    seed: int = 42
    # Hardware
    device: str = "auto"                  # auto | cuda | cpu
    precision: str = "auto"               # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32 | fp16
    activation_checkpointing: bool = False
    shard_layer: str | None = None        # class name of the blocks to shard; None: detected
    # Checkpoints, export, logging
    checkpoint_every: int = 500
    keep_last: int = 2
    resume: Any = False                   # false | true (latest in out/checkpoints) | a checkpoint folder
    export: bool = True
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


KNOWN = {f.name: f for f in fields(TrainConfig)}
_DEFAULTS = TrainConfig()


def resolve_path(name: str) -> str:
    """A config file: the path as given, else relative to train_sft/, else a shipped config's name."""
    for candidate in (name, os.path.join(os.path.dirname(CONFIGS_DIR), name),
                      os.path.join(CONFIGS_DIR, name), os.path.join(CONFIGS_DIR, name + ".yaml")):
        if os.path.isfile(candidate):
            return candidate
    shipped = ", ".join(sorted(n[:-5] for n in os.listdir(CONFIGS_DIR) if n.endswith(".yaml")))
    raise UsageError(f"config file not found: {name} (shipped configs: {shipped})")


def load(path: str | None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults ← the YAML file ← the overrides, each key checked and coerced to its default's type."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        path = resolve_path(path)
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise UsageError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{path}: expected a mapping of config keys, got {type(loaded).__name__}")
        for key, value in loaded.items():
            _set(values, str(key), value, f"{path}")
    for item in overrides:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise UsageError(f"override '{item}' is not key=value (e.g. lr=1e-4)")
        _set(values, key.strip(), yaml.safe_load(raw) if raw.strip() else None, f"override '{item}'")
    config = TrainConfig(**values)
    validate(config)
    return config


def _set(values: dict, key: str, value: Any, source: str) -> None:
    name, _, sub = key.partition(".")
    if name not in KNOWN or (sub and not isinstance(getattr(_DEFAULTS, name), dict)):
        near = difflib.get_close_matches(name, KNOWN, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise UsageError(f"unknown config key '{key}' in {source}{hint}")
    if sub:   # tiny.layers=4 updates one entry of a mapping
        merged = dict(values.get(name, getattr(_DEFAULTS, name)))
        merged[sub] = value
        values[name] = merged
        return
    value = _coerce(name, value, source)
    if isinstance(value, dict):                 # a partial mapping keeps the other defaults
        value = {**getattr(_DEFAULTS, name), **value}
    values[name] = value


def _coerce(name: str, value: Any, source: str) -> Any:
    """YAML reads 1e-4 as a string and 3 as an int where a float is meant: convert to the default's type."""
    if value is None or name == "resume":
        return value
    default = getattr(_DEFAULTS, name)
    kind = type(default) if default is not None else (int if name in ("max_steps", "stop_after") else str)
    if kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise UsageError(f"{name}={value!r} in {source}: expected {kind.__name__}")


def validate(c: TrainConfig) -> None:
    """Checks that need no files, no tokenizer and no GPU."""
    for name in ("model", "data", "out"):
        if not getattr(c, name):
            raise UsageError(f"{name} is not set (add {name}=... to the command line or the config file)")
    choices = {"template": TEMPLATES, "precision": PRECISIONS, "device": DEVICES,
               "too_long": ("error", "skip")}
    for name, allowed in choices.items():
        if getattr(c, name) not in allowed:
            raise UsageError(f"{name}={getattr(c, name)} is not one of {', '.join(allowed)}")
    positive = ["max_length", "epochs", "global_batch_size", "micro_batch_size", "checkpoint_every",
                "keep_last", "log_every", "max_steps", "stop_after"]
    for name in positive:
        value = getattr(c, name)
        if value is not None and value < 1:
            raise UsageError(f"{name}={value} must be at least 1")
    if not 0 <= c.warmup_ratio < 1:
        raise UsageError(f"warmup_ratio={c.warmup_ratio} must be in [0, 1)")
    if c.lr <= 0:
        raise UsageError(f"lr={c.lr} must be positive")
    if c.model == "tiny-llama":
        missing = {"layers", "hidden", "heads", "intermediate"} - set(c.tiny)
        if missing:
            raise UsageError(f"tiny: missing {', '.join(sorted(missing))}")
    if not isinstance(c.resume, (bool, str)):
        raise UsageError(f"resume={c.resume!r} must be true, false or a checkpoint folder")


def dump(c: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(c.to_dict(), sort_keys=False, allow_unicode=True)
