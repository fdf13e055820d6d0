"""Chat templates, for recipes that write a model's markup themselves (Magpie).

An aligned chat model, shown its chat template rendered up to the point where the user's text
begins, writes a user's request: that is Magpie's whole trick. This module turns a template into
that *pre-query prefix*, into the whole conversation up to the assistant's reply (for a server that
only offers raw completions), and into the *end markers* that close the user's turn (where the
instruction the model wrote ends).

A template is one of:

- a family name: ``chatml`` (``<|im_start|>user … <|im_end|>``: SmolLM2, Qwen, Hermes…) or
  ``llama3`` (``<|start_header_id|>user<|end_header_id|> … <|eot_id|>``), rendered in Python so
  that a server run needs no Jinja;
- a Jinja file (a model's ``chat_template``, as in its ``tokenizer_config.json``), or the template
  of a loaded tokenizer (the embedded teacher's own), rendered the way transformers renders it
  (a sandboxed environment, ``trim_blocks``/``lstrip_blocks``, ``raise_exception``).

Nothing here is written per template: the prefix and the markers are *found* by rendering a
conversation whose user message is a sentinel and reading what surrounds it, so a template from a
file works like a family. The BOS token is left out of the families' text: a server adds it when it
tokenizes a prompt, and a second one in the text would double it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Protocol

from selfinstruct.errors import UsageError

# Stands in for the user's text while a template is rendered; no template writes it by itself.
SENTINEL = "SELFINSTRUCTUSERTURN7F3A"
# OpenAI-compatible servers accept at most four stop strings
MAX_STOPS = 4
# The head of a turn header that is a special token ("<|im_start|>", "<|start_header_id|>",
# "<start_of_turn>"): a model that skips the end marker and opens the next turn stops there too.
_SPECIAL_HEAD = re.compile(r"^\s*(<\|?[^<>\s|]+\|?>)")


class Renderer(Protocol):
    name: str

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        """The template's text for ``messages`` (and the assistant's header when asked)."""


@dataclass(frozen=True)
class Family:
    """A template written as one format per turn (no Jinja needed)."""
    name: str
    turn: str                  # one message: {role} and {content}
    generation: str            # the assistant's header the reply follows
    eos: str = ""              # the model's end-of-text token, a marker too
    strip_content: bool = False

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        text = "".join(self.turn.format(role=m["role"], content=m["content"].strip()
                                        if self.strip_content else m["content"]) for m in messages)
        return text + (self.generation if add_generation_prompt else "")


FAMILIES: dict[str, Family] = {
    "chatml": Family("chatml", "<|im_start|>{role}\n{content}<|im_end|>\n", "<|im_start|>assistant\n"),
    "llama3": Family("llama3", "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>",
                     "<|start_header_id|>assistant<|end_header_id|>\n\n", eos="<|end_of_text|>",
                     strip_content=True),
}

# Model-name hints for a server's model (--model) when no --chat-template is given
_MODEL_FAMILIES = (
    (re.compile(r"qwen|smollm|hermes|chatml|yi-.*chat|internlm", re.I), "chatml"),
    (re.compile(r"llama[-_ .]?3", re.I), "llama3"),
)


class JinjaTemplate:
    """A Jinja chat template, rendered as transformers renders it."""

    def __init__(self, source: str, name: str, bos_token: str = "", eos_token: str = ""):
        self.name, self.source = name, source
        self.bos_token, self.eos = bos_token or "", eos_token or ""
        self._template = _compile(source, name)

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        import jinja2
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         bos_token=self.bos_token, eos_token=self.eos)
        except jinja2.TemplateError as e:
            raise UsageError(f"chat template {self.name}: {e}") from None


def _compile(source: str, name: str):
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise UsageError(f"chat template {name}: a Jinja template needs jinja2 (pip install 'jinja2>=3.1.6'), "
                         "or use a family name: " + ", ".join(FAMILIES)) from None

    def raise_exception(message):
        raise jinja2.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise UsageError(f"chat template {name}: not a valid Jinja template (line {e.lineno}: {e.message})") from None


# -- what a recipe asks of a template ---------------------------------------------------------


def turns(system: str, user: str) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def query_prefix(template: Renderer, system: str = "") -> str:
    """The conversation up to where the user's text begins (after ``system`` when given; else
    whatever the template puts first, e.g. a default system turn)."""
    text = template.render(turns(system, SENTINEL), add_generation_prompt=False)
    if text.count(SENTINEL) != 1:
        raise UsageError(f"chat template {template.name}: the user's message does not appear in it once")
    if system and system not in text:
        raise UsageError(f"chat template {template.name}: it leaves out the system turn (needed for "
                         "--lang zh, --topics and --personas)")
    return text[: text.index(SENTINEL)]


def conversation(template: Renderer, system: str, user: str) -> str:
    """The whole conversation up to the assistant's reply, for a server that only completes text."""
    return template.render(turns(system, user), add_generation_prompt=True)


def end_markers(template: Renderer) -> tuple[str, ...]:
    """What closes the user's turn: the marker right after the user's text, the special token that
    opens the next turn, and the model's end-of-text token (at most ``MAX_STOPS``)."""
    closed = template.render(turns("", SENTINEL), add_generation_prompt=False)
    opened = template.render(turns("", SENTINEL), add_generation_prompt=True)
    after = closed.split(SENTINEL, 1)[1].strip() if SENTINEL in closed else ""
    if not after:
        raise UsageError(f"chat template {template.name}: nothing marks the end of the user's turn, so "
                         "the instruction the model writes has no end to cut at")
    markers = [after.split()[0]]
    header = opened[len(closed):] if opened.startswith(closed) else ""
    head = _SPECIAL_HEAD.match(header)
    if head:
        markers.append(head.group(1))
    eos = getattr(template, "eos", "")
    if eos:
        markers.append(eos)
    return tuple(dict.fromkeys(m for m in markers if m))[:MAX_STOPS]


def cut_at_marker(text: str, markers: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` up to the first marker; True when one was there (the model closed its turn)."""
    cut = min((i for i in (text.find(m) for m in markers) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


# -- finding the template ---------------------------------------------------------------------


def resolve(spec: str) -> Renderer:
    """``--chat-template``: a family name or a Jinja file (a JSON file holding a ``chat_template``,
    such as ``tokenizer_config.json``, works too)."""
    if spec.lower() in FAMILIES:
        return FAMILIES[spec.lower()]
    if not os.path.isfile(spec):
        raise UsageError(f"--chat-template {spec}: neither a file nor a known template "
                         f"(known: {', '.join(FAMILIES)})")
    try:
        with open(spec, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--chat-template {spec}: cannot read it ({e})") from None
    bos = eos = ""
    if spec.endswith(".json"):
        source, bos, eos = _from_json(spec, source)
    return JinjaTemplate(source, spec, bos, eos)


def _from_json(path: str, text: str) -> tuple[str, str, str]:
    try:
        config: Any = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--chat-template {path}: not JSON ({e})") from None
    source = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(source, list):        # named templates: the default one
        source = next((t.get("template") for t in source if t.get("name") == "default"), None)
    if not isinstance(source, str):
        raise UsageError(f"--chat-template {path}: no chat_template in it")
    return source, _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))


def _token_text(token: Any) -> str:
    if isinstance(token, dict):         # {"content": "<s>", ...} in older configs
        token = token.get("content")
    return token if isinstance(token, str) else ""


def from_tokenizer(tokenizer, name: str = "the model's own template") -> Renderer:
    """A loaded tokenizer's template (the embedded teacher's), with its BOS and EOS tokens, as
    ``apply_chat_template`` renders it: the text a raw request then sends is the text a chat request
    to the same model reads."""
    source = getattr(tokenizer, "chat_template", None)
    if not isinstance(source, str) or not source:
        raise UsageError(f"{name}: the tokenizer has no chat template; pass --chat-template")
    return JinjaTemplate(source, name, getattr(tokenizer, "bos_token", "") or "",
                         getattr(tokenizer, "eos_token", "") or "")


def family_for_model(model: str) -> str | None:
    """The family a served model's name suggests (None when it suggests none)."""
    for pattern, family in _MODEL_FAMILIES:
        if pattern.search(model or ""):
            return family
    return None
