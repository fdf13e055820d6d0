"""The training config: defaults, a YAML file, then ``key=value`` overrides from the command line.

Every key is declared in ``TrainConfig`` with its default; a key that is not declared is an error
that names it (and the closest known key), so a typo never trains with a silently ignored setting.
Every value is checked against its default's type (entries of ``tiny`` too), and every malformed
override (``lr=[``, ``lr=``, ``=3``, ``lr``, ``micro_batch_size=abc``…) is one UsageError that names it,
says what is wrong and shows what to write, e.g.
``override 'lr=': lr must be a number, e.g. lr=2e-05 (got nothing after '=')``. Only a key whose
default is None (max_steps, tokenizer…) may be left empty: ``max_steps=`` lifts the cap.
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
PEFTS = ("none", "lora")


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
    # Several examples per row, attention kept inside each (position ids restart at every example)
    packing: bool = False
    seed: int = 42
    # Parameter-efficient fine-tuning: none (every weight trains) | lora (adapters on lora_targets)
    peft: str = "none"
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_targets: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"])
    lora_export: str = "merged"           # merged (a plain model folder) | adapter (the adapter alone)
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
            _set(values, str(key), value, _Source(path))
    for item in overrides:
        key, value, source = parse_override(item)
        _set(values, key, value, source)
    config = TrainConfig(**values)
    validate(config)
    return config


@dataclass
class _Source:
    """Where a value comes from, for the messages: a config file, or one ``key=value`` override."""
    path: str | None = None
    item: str | None = None               # the override as given
    raw: str | None = None                # its text after '='

    def __str__(self) -> str:
        return f"override '{self.item}'" if self.item is not None else str(self.path)


def is_key(name: str) -> bool:
    """A config key (``lr``) or an entry of a mapping key (``tiny.layers``)."""
    top, _, sub = name.partition(".")
    default = getattr(_DEFAULTS, top, None) if top in KNOWN else None
    return top in KNOWN and (not sub or (isinstance(default, dict) and sub in default))


def parse_override(item: str) -> tuple[str, Any, _Source]:
    """``key=value`` → the key, the value as YAML reads it (nothing after '=' → None), the source.

    Every malformed override is a UsageError naming it and saying what to write instead.
    """
    import yaml

    key, eq, raw = item.partition("=")
    key = key.strip()
    if not eq:
        example = f"{item.strip()}={_example(item.strip())}" if is_key(item.strip()) else "lr=1e-4"
        raise UsageError(f"override '{item}' is not key=value (e.g. {example})")
    if not key:
        raise UsageError(f"override '{item}' has no key before '=' (write key=value, e.g. lr=1e-4)")
    source = _Source(item=item, raw=raw)
    _check_key(key, source)                   # an unknown key first: `lrr=[` is a typo, not a YAML error
    if not raw.strip():
        return key, None, source
    try:
        return key, yaml.safe_load(raw), source
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{source}: {raw!r} is not valid YAML ({problem}); "
                         f"{_expected(key, source)}{_quote_hint(key, source)}") from None


def _check_key(key: str, source: _Source) -> None:
    if is_key(key):
        return
    names = list(KNOWN) + [f"{n}.{k}" for n in KNOWN if isinstance(getattr(_DEFAULTS, n), dict)
                           for k in getattr(_DEFAULTS, n)]
    near = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    raise UsageError(f"unknown config key '{key}' in {source}{hint}")


def _set(values: dict, key: str, value: Any, source: _Source) -> None:
    _check_key(key, source)
    name, _, sub = key.partition(".")
    if sub:   # tiny.layers=4 updates one entry of a mapping
        merged = dict(values.get(name, getattr(_DEFAULTS, name)))
        merged[sub] = _coerce(key, value, source)
        values[name] = merged
        return
    value = _coerce(name, value, source)
    if isinstance(value, dict):                 # a partial mapping keeps the other defaults
        value = {**getattr(_DEFAULTS, name), **value}
    values[name] = value


# Examples for the messages where the default is empty or None.
_EXAMPLES = {"model": "/models/llama-7b", "data": "alpaca_data.json", "out": "runs/7b", "gguf_file": "model.gguf",
             "tokenizer": "smollm2", "shard_layer": "LlamaDecoderLayer", "max_steps": 1000, "stop_after": 100,
             "resume": True}
_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string", list: "a list",
          dict: "a mapping"}


def _default(key: str) -> Any:
    name, _, sub = key.partition(".")
    default = getattr(_DEFAULTS, name)
    return default[sub] if sub else default


def _kind(key: str) -> type:
    default = _default(key)
    if default is not None:
        return type(default)
    return int if key in ("max_steps", "stop_after") else str


def _flow(value: Any) -> str:
    """A value as one would type it after '=' (YAML flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**9).strip()


def _example(key: str) -> str:
    default = _default(key)
    return _flow(_EXAMPLES[key] if key in _EXAMPLES or default in ("", None) else default)


def _expected(key: str, source: _Source) -> str:
    """'lr must be a number, e.g. lr=2e-05' (``lr: 2e-05`` for a config file)."""
    kind, default = _kind(key), _default(key)
    if key == "resume":
        what = "true, false or a checkpoint folder"
    elif kind is list and default and all(type(v) is float for v in default):
        what = f"a list of {len(default)} numbers"
    else:
        what = _WORDS.get(kind, kind.__name__)
    return f"{key} must be {what}, e.g. {key}{'=' if source.item is not None else ': '}{_example(key)}"


def _quote_hint(key: str, source: _Source) -> str:
    """A string key whose text YAML reads as something else: show it quoted."""
    if _kind(key) is not str or source.item is None or not (source.raw or "").strip():
        return ""
    import yaml

    quoted = yaml.safe_dump(source.raw.strip(), default_style="'", width=10**9).strip()
    return f"; quote it: {key}={quoted}"


def _got(value: Any, source: _Source) -> str:
    if value is None:
        return "nothing after '='" if source.item is not None and not (source.raw or "").strip() else "null"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return f"a list: {_flow(value)}"
    if isinstance(value, dict):
        return f"a mapping: {_flow(value)}"
    return _flow(value)


def _coerce(key: str, value: Any, source: _Source) -> Any:
    """Check a value against its default's type, converting where YAML reads it differently: YAML reads
    1e-4 as a string and 3 as an int where a float is meant. None is kept for keys whose default is None."""
    kind, default = _kind(key), _default(key)
    converted = _convert(key, kind, default, value, source)
    if converted is not _WRONG:
        return converted
    hint = _quote_hint(key, source) if not isinstance(value, str) else ""
    raise UsageError(f"{source}: {_expected(key, source)} (got {_got(value, source)}){hint}")


_WRONG = object()


def _convert(key: str, kind: type, default: Any, value: Any, source: _Source) -> Any:
    if value is None:
        return None if default is None else _WRONG
    if key == "resume":                         # true (latest checkpoint), false, or a folder
        return value if isinstance(value, (bool, str)) else _WRONG
    if isinstance(value, bool) and kind is not bool:
        return _WRONG
    if kind is float and isinstance(value, (int, float, str)):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return _WRONG
        return _WRONG if number != number else number          # nan
    if kind is str and isinstance(value, (int, float)):
        return str(value)
    if kind is list and isinstance(value, list) and default and all(type(v) is float for v in default):
        if len(value) != len(default):
            return _WRONG
        items = [_convert(key, float, 0.0, v, source) for v in value]
        return _WRONG if any(v is _WRONG for v in items) else items
    if kind is dict and isinstance(value, dict):
        for sub in value:                       # entries: known ones only, each of its default's type
            _check_key(f"{key}.{sub}", source)
        return {sub: _coerce(f"{key}.{sub}", v, source) for sub, v in value.items()}
    return value if isinstance(value, kind) else _WRONG


def validate(c: TrainConfig) -> None:
    """Checks that need no files, no tokenizer and no GPU."""
    for name in ("model", "data", "out"):
        if not getattr(c, name):
            raise UsageError(f"{name} is not set (add {name}=... to the command line or the config file)")
    choices = {"template": TEMPLATES, "precision": PRECISIONS, "device": DEVICES,
               "too_long": ("error", "skip"), "peft": PEFTS, "lora_export": ("merged", "adapter")}
    for name, allowed in choices.items():
        if getattr(c, name) not in allowed:
            raise UsageError(f"{name}={getattr(c, name)} is not one of {', '.join(allowed)}")
    positive = ["max_length", "epochs", "global_batch_size", "micro_batch_size", "checkpoint_every",
                "keep_last", "log_every", "max_steps", "stop_after", "lora_rank"]
    for name in positive:
        value = getattr(c, name)
        if value is not None and value < 1:
            raise UsageError(f"{name}={value} must be at least 1")
    if not 0 <= c.warmup_ratio < 1:
        raise UsageError(f"warmup_ratio={c.warmup_ratio} must be in [0, 1)")
    if c.lr <= 0:
        raise UsageError(f"lr={c.lr} must be positive")
    if c.lr == float("inf"):
        raise UsageError("lr=inf must be finite, e.g. lr=2e-05")
    if c.model == "tiny-llama":
        missing = {"layers", "hidden", "heads", "intermediate"} - set(c.tiny)
        if missing:
            raise UsageError(f"tiny: missing {', '.join(sorted(missing))}")
    if not isinstance(c.resume, (bool, str)):
        raise UsageError(f"resume={c.resume!r} must be true, false or a checkpoint folder")


def dump(c: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(c.to_dict(), sort_keys=False, allow_unicode=True)
