"""The data file in the format a trainer reads, a Hugging Face dataset, a push to the Hub, and the
dataset card: what ``generate`` and ``filter`` write besides records.jsonl (always written).

Formats (``--format``), each one row per record:

    alpaca     data.json   [{"instruction", "input", "output"}, …]   single-turn records only
    sharegpt   data.json   [{"conversations": [{"from": "system"|"human"|"gpt", "value"}, …]}, …]
    messages   data.jsonl  {"messages": [{"role": "system"|"user"|"assistant", "content"}, …]} a line

sharegpt is what LLaMA-Factory (``formatting: sharegpt``) and axolotl read; messages is OpenAI's chat
fine-tuning file and TRL's conversational format. A single-turn record becomes a conversation through
``Record.conversation()``; a record of several assistant turns cannot be Alpaca, and saying so is an
error that names the formats that can hold it (no turn is dropped silently).

``--test-size`` draws the test records with the run's seed (``random.Random(seed).sample`` of the row
numbers: the same seed and the same kept records give the same split); both parts keep the kept
order. The data file holds the train part and test.json / test.jsonl sits beside it. The rows are
spooled to a temporary file while they stream in (filter never holds its output in memory), and
the split is drawn once their number is known.

``--hf-out DIR`` saves a ``DatasetDict`` ("train", plus "test") whose columns are the format's,
built from the files just written (so the three can never disagree); it replaces an earlier
dataset in DIR only once the new one is whole. ``--push-to-hub NAME`` pushes the same
``DatasetDict`` (private unless ``--public``; the token is huggingface_hub's own: ``HF_TOKEN`` or
``hf auth login``), then the dataset card as the repo's README.md. By then the local outputs are
written, so a Hub failure loses nothing: it is one ``Error:`` line.

The dataset card (``README.md`` in every output folder) is rendered from summary.json alone, so it
can never say something summary.json does not: counts, recipe, teacher, settings, every reject
reason with its count, the command line, and a reminder of the terms the teacher's provider sets on
using its outputs (a short table keyed by model family; a reminder, not legal advice).
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import shlex
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from selfinstruct.errors import UsageError
from selfinstruct.record import Record
from selfinstruct.writers import atomic_open, to_json

FORMATS = ("alpaca", "sharegpt", "messages")
DATA_FILE = {"alpaca": "data.json", "sharegpt": "data.json", "messages": "data.jsonl"}
TEST_FILE = {"alpaca": "test.json", "sharegpt": "test.json", "messages": "test.jsonl"}
CARD = "README.md"
HF_SAVED = "dataset_dict.json"      # what save_to_disk writes at the top of a DatasetDict folder
# ShareGPT's speaker names for our roles, and every name a reader accepts for each role.
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


@dataclass
class Publish:
    format: str = "alpaca"               # the data file: alpaca (data.json) | sharegpt | messages
    hf_out: str | None = None            # a save_to_disk folder
    push_to_hub: str | None = None       # a Hub dataset name ("user/name")
    test_size: float | None = None       # a share (0 < x < 1) or a count (>= 1) split off as "test"
    private: bool = True                 # a pushed dataset is private unless --public

    def validate(self, turns: int = 1, out: str | None = None, num: int | None = None) -> None:
        """Everything wrong with these settings, found before any work: ``turns`` and ``num`` are
        generate's ``--turns`` and ``--num``, ``out`` its or filter's ``--out``."""
        if self.format not in FORMATS:
            raise UsageError(f"--format {self.format} is not one of {', '.join(FORMATS)}")
        if self.test_size is not None and (self.test_size <= 0 or (self.test_size >= 1
                                                                   and self.test_size != int(self.test_size))):
            raise UsageError(f"--test-size must be a share between 0 and 1 or a whole number of records "
                             f"(got {self.test_size:g})")
        if turns > 1 and self.format == "alpaca":
            raise UsageError(f"--turns {turns} makes conversations, which the alpaca format cannot hold: "
                             "add --format messages or --format sharegpt")
        if self.test_size is not None and num is not None:
            test_count(num, self.test_size)
        if self.push_to_hub is not None and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", self.push_to_hub):
            raise UsageError(f"--push-to-hub {self.push_to_hub} is not a dataset name (NAME or USER/NAME)")
        if self.hf_out is not None:
            _check_hf_out(self.hf_out, out)

    def shown(self) -> dict:
        return {"format": self.format, "hf_out": self.hf_out, "push_to_hub": self.push_to_hub,
                "test_size": self.test_size, "private": self.private}

    @property
    def data_file(self) -> str:
        return DATA_FILE[self.format]

    @property
    def test_file(self) -> str:
        return TEST_FILE[self.format]


def _check_hf_out(hf_out: str, out: str | None) -> None:
    path = Path(hf_out)
    if out is not None and path.resolve() == Path(out).resolve():
        raise UsageError(f"--hf-out {hf_out} is the --out folder: give the dataset a folder of its own")
    if path.exists() and not path.is_dir():
        raise UsageError(f"--hf-out {hf_out} is a file; give a folder")
    if path.is_dir() and any(path.iterdir()) and not (path / HF_SAVED).exists():
        raise UsageError(f"--hf-out {hf_out} holds other files: give an empty folder or one an earlier "
                         "--hf-out wrote")


# -- rows ---------------------------------------------------------------------------------------


def alpaca_refusal(record: Record) -> str:
    """Why ``record`` cannot be written as Alpaca (the caller adds where it is)."""
    return (f"a conversation of {record.turns} assistant turns cannot be written in the alpaca format: "
            "add --format messages or --format sharegpt")


def row(record: Record, fmt: str) -> dict[str, Any]:
    """``record`` as one row of ``fmt``."""
    if fmt == "alpaca":
        if record.turns > 1:
            raise UsageError(f"{record.where}: {alpaca_refusal(record)}")
        return record.to_alpaca()
    turns = record.conversation()
    if fmt == "sharegpt":
        return {"conversations": [{"from": SHAREGPT_FROM[t["role"]], "value": t["content"]} for t in turns]}
    return {"messages": [{"role": t["role"], "content": t["content"]} for t in turns]}


def _features(fmt: str):
    """The columns of ``fmt`` for ``datasets`` (stated, so that an empty split has them too)."""
    from datasets import Features, List, Value

    if fmt == "alpaca":
        return Features({key: Value("string") for key in ("instruction", "input", "output")})
    key, role, content = ("conversations", "from", "value") if fmt == "sharegpt" else ("messages", "role", "content")
    return Features({key: List({role: Value("string"), content: Value("string")})})


# -- the data file and the test split ------------------------------------------------------------


class _RowFile:
    """A data file being written: a JSON list (data.json) or JSON lines (data.jsonl)."""

    def __init__(self, f, lines: bool):
        self.f, self.lines, self.n = f, lines, 0

    def write(self, encoded: str) -> None:
        if self.lines:
            self.f.write(encoded + "\n")
        else:
            self.f.write((",\n  " if self.n else "[\n  ") + encoded)
        self.n += 1

    def close(self) -> None:
        if not self.lines:
            self.f.write("\n]\n" if self.n else "[]\n")


def test_count(n: int, test_size: float) -> int:
    """How many of ``n`` records a ``--test-size`` takes (a share rounds up, as ``datasets``'
    ``train_test_split`` does); an error when that leaves no training record."""
    k = int(test_size) if test_size >= 1 else math.ceil(n * test_size)
    if k >= n:
        raise UsageError(f"--test-size {test_size:g} takes {k} of {n} records, leaving none to train on: "
                         "give a smaller share or count")
    return k


def test_rows(n: int, test_size: float, seed: int) -> set[int]:
    """The row numbers (0-based, in write order) of the test split, drawn with ``seed``."""
    return set(random.Random(seed).sample(range(n), test_count(n, test_size)))


def write_data(out: str | os.PathLike, records: Iterable[Record], publish: Publish, seed: int = 0) -> dict[str, int]:
    """Write ``records`` in ``publish.format`` into ``out`` (the data file, and the test file with a
    test size); the rows per split. Files appear whole or not at all."""
    out = Path(out)
    lines = publish.data_file.endswith(".jsonl")
    encoded = (to_json(row(r, publish.format)) for r in records)
    if publish.test_size is None:
        with atomic_open(out / publish.data_file) as f:
            data = _RowFile(f, lines)
            for text in encoded:
                data.write(text)
            data.close()
        _remove_stale(out / publish.test_file)
        return {"train": data.n}
    with tempfile.TemporaryFile("w+", encoding="utf-8", dir=out, prefix=".rows.") as spool:
        n = 0
        for text in encoded:
            spool.write(text + "\n")
            n += 1
        in_test = test_rows(n, publish.test_size, seed)
        spool.seek(0)
        with atomic_open(out / publish.data_file) as f, atomic_open(out / publish.test_file) as g:
            data, test = _RowFile(f, lines), _RowFile(g, lines)
            for i, text in enumerate(spool):
                (test if i in in_test else data).write(text.rstrip("\n"))
            data.close()
            test.close()
    return {"train": data.n, "test": test.n}


def _remove_stale(path: Path) -> None:
    """A test file an earlier run with --test-size left would read as this run's."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_rows(path: str | os.PathLike) -> Iterator[dict]:
    """The rows of a data file ``write_data`` wrote."""
    with open(path, encoding="utf-8") as f:
        if str(path).endswith(".jsonl"):
            for line in f:
                if line.strip():
                    yield json.loads(line)
        else:
            yield from json.load(f)


# -- Hugging Face ------------------------------------------------------------------------------


def dataset_dict(out: str | os.PathLike, publish: Publish):
    """The ``DatasetDict`` of the files in ``out``: "train", plus "test" when split."""
    from datasets import Dataset, DatasetDict

    out, features = Path(out), _features(publish.format)
    splits = {"train": out / publish.data_file}
    if publish.test_size is not None:
        splits["test"] = out / publish.test_file
    return DatasetDict({name: Dataset.from_list(list(read_rows(path)), features=features)
                        for name, path in splits.items()})


def save_hf(dataset, hf_out: str, card: str) -> None:
    """``save_to_disk`` into a sibling folder, the card beside it, then swap it in for ``hf_out``."""
    target = Path(hf_out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        dataset.save_to_disk(str(fresh))
        (fresh / CARD).write_text(card, encoding="utf-8")
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
        fresh.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise


def push(dataset, publish: Publish, card: str) -> str:
    """Push ``dataset`` and its card to the Hub; the repo's URL. Any failure is one UsageError."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    name = publish.push_to_hub
    if get_token() is None:          # HF_TOKEN, or the token `hf auth login` stored
        raise UsageError(f"--push-to-hub {name}: no Hugging Face token: set HF_TOKEN or run `hf auth login` "
                         "(the local outputs are written)")
    try:
        dataset.push_to_hub(name, private=publish.private, commit_message="selfinstruct: the dataset")
        HfApi().upload_file(path_or_fileobj=card.encode("utf-8"), path_in_repo=CARD, repo_id=name,
                            repo_type="dataset", commit_message="selfinstruct: the dataset card")
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise UsageError(f"--push-to-hub {name}: the Hub refused the push ({_one_line(e)}); the local "
                         "outputs are written") from None
    return f"{_endpoint()}/datasets/{name}"


def _endpoint() -> str:
    from huggingface_hub import constants
    return constants.ENDPOINT.rstrip("/")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def publish_hf(out: str | os.PathLike, publish: Publish, summary: dict[str, Any]) -> dict[str, str]:
    """--hf-out and --push-to-hub for the files written in ``out``: where each went."""
    if publish.hf_out is None and publish.push_to_hub is None:
        return {}
    where = {}
    with _quiet_hf():
        dataset = dataset_dict(out, publish)
        if publish.hf_out is not None:
            save_hf(dataset, publish.hf_out, card(summary, target="disk"))
            where["hf_out"] = publish.hf_out
        if publish.push_to_hub is not None:
            where["hub"] = push(dataset, publish, card(summary, target="hub"))
    return where


@contextmanager
def _quiet_hf():
    """No progress bars or notices from datasets and huggingface_hub while they save and push: a
    handful of small files, and an error must stay the one line the command prints."""
    import datasets
    from huggingface_hub import utils as hub_utils

    bars, hub_bars = datasets.is_progress_bar_enabled(), not hub_utils.are_progress_bars_disabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bar()
    hub_utils.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bar()
        if hub_bars:
            hub_utils.enable_progress_bars()


def outputs_fields(publish: Publish, splits: dict[str, int], languages: dict[str, int],
                   teachers: dict[str, int]) -> dict[str, Any]:
    """What summary.json says about the published data (the card is made from it)."""
    return {
        "format": publish.format,
        "data": publish.data_file,
        **({"test": publish.test_file} if "test" in splits else {}),
        "splits": dict(splits),
        "languages": dict(sorted(languages.items())),
        "teachers": dict(sorted(teachers.items())),
        **({"hf_out": publish.hf_out} if publish.hf_out else {}),
        **({"push_to_hub": publish.push_to_hub, "private": publish.private} if publish.push_to_hub else {}),
    }


def command_line() -> str | None:
    """The selfinstruct command this process runs, as typed (None when it is not the CLI: tests,
    a library call)."""
    prog = sys.argv[0] if sys.argv else ""
    if os.path.basename(prog) == "selfinstruct" or prog.replace("\\", "/").endswith("selfinstruct/__main__.py"):
        return shlex.join(["selfinstruct", *sys.argv[1:]])
    return None


# -- the dataset card ----------------------------------------------------------------------------

# (pattern on the model name, provider, the terms to remember). The label's "openai:" prefix names
# the API, not who made the model (a vLLM server speaks it too), so only the model name is matched.
# Sources: each provider's published terms or the model's license.
LICENSE_TERMS: tuple[tuple[str, str, str], ...] = (
    (r"smollm", "SmolLM2 (Hugging Face)", "Apache-2.0: no terms on using its outputs beyond that license."),
    (r"gpt-oss", "OpenAI gpt-oss", "Apache-2.0 weights (with OpenAI's gpt-oss usage policy)."),
    (r"\bgpt-|chatgpt|\bo[134](-|$)|davinci", "OpenAI",
     "Terms of Use: you may not use Output to develop models that compete with OpenAI."),
    (r"llama", "Meta Llama 3.x",
     "Community License: a model trained on Llama output that you share must show \"Built with Llama\" "
     "and its name must begin with \"Llama\"."),
    (r"qwen", "Qwen (Alibaba)",
     "Most open Qwen2.5 models are Apache-2.0; some sizes carry the Qwen License: check the model card."),
    (r"gemma", "Google Gemma",
     "Gemma Terms of Use: a model trained on Gemma's synthetic output is a Model Derivative; the use "
     "restrictions pass on to it."),
    (r"mistral|mixtral|ministral|codestral|magistral", "Mistral AI",
     "Open-weight models are mostly Apache-2.0; others carry Mistral's research or commercial terms: "
     "check the model card."),
    (r"claude", "Anthropic",
     "Usage terms: no use of the services to build a competing product, including training competing models."),
    (r"deepseek", "DeepSeek",
     "R1 and V3-0324 weights are MIT-licensed; earlier V3 weights and the API have their own terms: check them."),
)
UNKNOWN_TERMS = "Unknown provider: check your provider's terms on using generated data to train models."


def license_terms(teacher: str) -> tuple[str, str]:
    """(provider, the terms to remember) for a teacher label ("embedded:SmolLM2-135M-Instruct",
    "openai:gpt-4o-mini", or a bare model name)."""
    model = teacher.split(":", 1)[1] if ":" in teacher else teacher
    model = model.lower()
    for pattern, provider, terms in LICENSE_TERMS:
        if re.search(pattern, model):
            return provider, terms
    return "?", UNKNOWN_TERMS


# The Hub's size_categories, by their upper bound (a dataset of instruction records stays far below 1B).
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def _size_category(n: int) -> str:
    return next((label for limit, label in _SIZES if n < limit), "1B<n<10B")


def _languages(summary: dict[str, Any]) -> list[str]:
    known = [lang for lang in summary.get("outputs", {}).get("languages", {}) if lang]
    if known:
        return known
    lang = summary.get("settings", {}).get("lang")
    return [lang] if lang in ("en", "zh") else []


def _data_files(summary: dict[str, Any], target: str) -> dict[str, str]:
    """split -> the path the card's ``configs`` point at: the files in the output folder, or the
    parquet shards ``push_to_hub`` writes (a save_to_disk folder is read by load_from_disk, no config)."""
    splits = summary.get("outputs", {}).get("splits", {})
    if target == "hub":
        return {name: f"data/{name}-*" for name in splits}
    if target == "folder":
        files = {"train": summary["outputs"]["data"], "test": summary["outputs"].get("test")}
        return {name: files[name] for name in splits if files.get(name)}
    return {}


def _front_matter(summary: dict[str, Any], target: str) -> list[str]:
    total = sum(summary.get("outputs", {}).get("splits", {}).values())
    lines = ["---"]
    languages = _languages(summary)
    if languages:
        lines += ["language:", *(f"- {lang}" for lang in languages)]
    lines += ["task_categories:", "- text-generation", "size_categories:", f"- {_size_category(total)}",
              "tags:", "- synthetic", "- selfinstruct"]
    files = _data_files(summary, target)
    if files:
        lines += ["configs:", "- config_name: default", "  data_files:"]
        for split, path in files.items():
            lines += [f"  - split: {split}", f"    path: {path}"]
    return lines + ["---", ""]


_FORMAT_HELP = {
    "alpaca": "Alpaca JSON: a list of `{\"instruction\", \"input\", \"output\"}`.",
    "sharegpt": "ShareGPT JSON: a list of `{\"conversations\": [{\"from\": \"system\"|\"human\"|\"gpt\", "
                "\"value\"}, …]}` (LLaMA-Factory `formatting: sharegpt`, axolotl).",
    "messages": "OpenAI chat JSON lines: `{\"messages\": [{\"role\", \"content\"}, …]}` a line (OpenAI "
                "fine-tuning, TRL's conversational format).",
}


def _cell(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text.replace("|", "\\|").replace("\n", " ")


def card(summary: dict[str, Any], target: str = "folder") -> str:
    """The dataset card (README.md) for ``summary``; ``target`` is where it goes: "folder" (generate's
    or filter's --out), "disk" (--hf-out) or "hub"."""
    outputs = summary.get("outputs", {})
    splits = outputs.get("splits", {"train": summary.get("kept", 0)})
    fmt = outputs.get("format", "alpaca")
    settings = summary.get("settings", {})
    made_by = "selfinstruct generate" if "requested" in summary else "selfinstruct filter"
    lines = _front_matter(summary, target)
    lines += [f"# {outputs.get('push_to_hub') or 'Instruction data'}", "",
              f"Made by `{made_by}`. This card is rendered from the run's summary.json.", "",
              "## Data", "", "| split | records |", "|---|---|"]
    lines += [f"| {name} | {count:,} |" for name, count in splits.items()]
    lines += ["", f"Format: **{fmt}**. {_FORMAT_HELP.get(fmt, '')}", ""]
    if target == "folder":
        lines += [f"Files: `{outputs.get('data', 'data.json')}`"
                  + (f", `{outputs['test']}` (test split)" if outputs.get("test") else "")
                  + "; `records.jsonl` (every field of every kept record), `rejects.jsonl` (each reject "
                    "with its reason), `summary.json`.", ""]
    lines += _provenance(summary, made_by, settings)
    lines += _filters(summary)
    lines += _terms(summary)
    return "\n".join(lines) + "\n"


def _provenance(summary: dict[str, Any], made_by: str, settings: dict[str, Any]) -> list[str]:
    lines = ["## How it was made", ""]
    if "requested" in summary:
        turns = settings.get("turns", 1)
        lines += [f"- Recipe: `{settings.get('recipe', '?')}`, language `{settings.get('lang', '?')}`"
                  + (f", {turns} assistant turns per conversation" if turns and turns > 1 else ""),
                  f"- Teacher: `{summary.get('teacher', {}).get('name', '?')}`",
                  f"- Requested {summary['requested']:,}, kept {summary.get('kept', 0):,}; stopped: "
                  f"{summary.get('stopped', '?')}"]
        if summary.get("cost_usd"):
            lines.append(f"- Cost: ${summary['cost_usd']:.4f}")
    else:
        inputs = ", ".join(f"`{i['path']}` ({i['records']:,})" for i in summary.get("inputs", []))
        lines += [f"- Inputs: {inputs or '?'}; {summary.get('input_records', 0):,} records read, "
                  f"{summary.get('kept', 0):,} kept"]
        teachers = summary.get("outputs", {}).get("teachers", {})
        if teachers:
            lines.append("- Teachers of the kept records: "
                         + ", ".join(f"`{name}` ({n:,})" for name, n in teachers.items()))
    command = summary.get("command")
    if command:
        lines.append(f"- Command: `{command}`")
    lines += ["", "<details><summary>Settings</summary>", "", "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {_cell(value)} |" for key, value in settings.items()
              if value not in (None, [], {}, "")]
    return lines + ["", "</details>", ""]


def _filters(summary: dict[str, Any]) -> list[str]:
    lines = ["## Filters", ""]
    if summary.get("filters"):
        lines += ["Chain: " + " → ".join(f"`{name}`" for name in summary["filters"]), ""]
    per_stage = summary.get("rejected_per_stage", {})
    if not per_stage:
        return lines + ["No record was rejected.", ""]
    lines += [f"{summary.get('rejected_total', 0):,} rejected:", "", "| stage | reason | rejected |",
              "|---|---|---|"]
    for stage, reasons in per_stage.items():
        lines += [f"| {stage} | {reason} | {count:,} |" for reason, count in reasons.items()]
    return lines + [""]


def _teacher_names(summary: dict[str, Any]) -> list[str]:
    names = []
    if summary.get("teacher", {}).get("name"):
        names.append(summary["teacher"]["name"])
    names += [n for n in summary.get("outputs", {}).get("teachers", {}) if n not in names]
    return names      # not the judge's: it scored records, it wrote none of them


def _terms(summary: dict[str, Any]) -> list[str]:
    lines = ["## The teacher's terms (a reminder, not legal advice)", "",
             "Generated data can carry the terms of the model that wrote it. Check them before you "
             "train on this data or share a model trained on it.", ""]
    names = _teacher_names(summary)
    if not names:
        return lines + [f"- {UNKNOWN_TERMS}", ""]
    lines += ["| teacher | provider | terms |", "|---|---|---|"]
    for name in names:
        provider, terms = license_terms(name)
        lines.append(f"| `{_cell(name)}` | {provider} | {terms} |")
    return lines + [""]


def write_card(out: str | os.PathLike, summary: dict[str, Any]) -> None:
    with atomic_open(Path(out) / CARD) as f:
        f.write(card(summary, target="folder"))


__all__ = ["FORMATS", "DATA_FILE", "TEST_FILE", "CARD", "Publish", "row", "write_data", "test_count",
           "test_rows", "read_rows", "dataset_dict", "save_hf", "push", "publish_hf", "outputs_fields",
           "card", "write_card", "license_terms", "command_line", "alpaca_refusal"]
