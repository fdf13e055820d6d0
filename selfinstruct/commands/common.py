"""What the commands share: how a list of names is split, the help of ``--opt``, and the quality
flags (rule set, decontamination, judge, report) of ``generate`` and ``filter``."""
from __future__ import annotations

from typing import Iterable, List, Optional

import typer
from typing_extensions import Annotated

OPT_HELP = ("Set an option a filter, teacher or recipe declares, NAME=VALUE (repeatable); prefix the "
            "component (length.max_words=200, quality.max_words=200, openai.timeout=30) where several "
            "declare the name. An unknown option is an error that lists the known ones.")


def split_names(values: Iterable[str] | str | None) -> list[str]:
    """``"exact,rouge"``, ``["exact,rouge", "minhash"]`` → ``["exact", "rouge", "minhash"]``."""
    if not values:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


Rules = Annotated[str, typer.Option(
    "--rules", help="Quality rule set: default (precise), paper (the recipe's source project: "
                    "self-instruct, alpaca, or belle for Chinese), self-instruct, alpaca or belle.")]
DecontamAgainst = Annotated[Optional[List[str]], typer.Option(
    "--decontam-against", metavar="FILE|hf:NAME",
    help="Evaluation sets (any readable format): reject a record that shares a long n-gram with "
         "one of their items (benchmark_overlap). Repeat for several.", show_default=False)]
Judge = Annotated[bool, typer.Option(
    "--judge", help="Score each record 1-10 with an LLM judge and reject low scores "
                    "(judge_low_score).", show_default=False)]
JudgeTeacher = Annotated[Optional[str], typer.Option(
    "--judge-teacher", help="Who judges: openai or embedded (default: the generating teacher; in "
                            "filter, openai: $OPENAI_BASE_URL, $OPENAI_MODEL).", show_default=False)]
JudgeModel = Annotated[Optional[str], typer.Option(
    "--judge-model", help="Judge model on an OpenAI-compatible server (implies --judge).",
    show_default=False)]
JudgeBaseUrl = Annotated[Optional[str], typer.Option(
    "--judge-base-url", help="The judge's OpenAI-compatible base URL (implies --judge; key from "
                             "$OPENAI_API_KEY).", show_default=False)]
JudgeMinScore = Annotated[Optional[int], typer.Option(
    "--judge-min-score", help="Reject records the judge scores below this (implies --judge; "
                              "default 6; 0 scores without rejecting).", show_default=False)]
JudgeConcurrency = Annotated[Optional[int], typer.Option(
    "--judge-concurrency", help="Judge requests in flight (default: the judge teacher's own).",
    show_default=False)]
Report = Annotated[bool, typer.Option(
    "--report/--no-report", help="Write report.html (and the figures as PNG) at the end.")]


def quality_settings(rules: str, decontam_against, judge: bool, judge_teacher, judge_model,
                     judge_base_url, judge_min_score, judge_concurrency, judge_max_cost=None):
    from selfinstruct.quality import QualitySettings
    return QualitySettings(rules=rules, decontam_against=list(decontam_against or []), judge=judge,
                           judge_teacher=judge_teacher, judge_model=judge_model,
                           judge_base_url=judge_base_url, judge_min_score=judge_min_score,
                           judge_concurrency=judge_concurrency, judge_max_cost=judge_max_cost)


def end_of_run_report(out_dir: str, progress: bool) -> None:
    """Write OUT/report.html and print its path. The run's data is already safe, so a report that
    cannot be made (the `report` extra missing, a figure failing) is a warning, not a failure."""
    try:
        from selfinstruct.report import write_report
        path = write_report([out_dir], progress=progress)
    except ImportError as e:
        typer.echo(f"warning: no report ({e}); install the `report` extra: "
                   "pip install 'selfinstruct[report]'", err=True)
        return
    typer.echo(f"report: {path}")


Format = Annotated[str, typer.Option(
    "--format", help="The data file's format: alpaca (data.json; single-turn data only), sharegpt "
                     "(data.json, conversations of from/value turns) or messages (data.jsonl, OpenAI "
                     "chat messages). records.jsonl, with every field, is always written.")]
HfOut = Annotated[Optional[str], typer.Option(
    "--hf-out", metavar="DIR", help="Also write a Hugging Face dataset, with its card (datasets."
                                    "load_from_disk reads it).", show_default=False)]
PushToHub = Annotated[Optional[str], typer.Option(
    "--push-to-hub", metavar="NAME", help="Push the dataset to the Hugging Face Hub as NAME (private "
                                          "unless --public; token from HF_TOKEN or `hf auth login`).",
    show_default=False)]
TestSize = Annotated[Optional[float], typer.Option(
    "--test-size", help="Split off a test set: a share (0.05) or a number of records (500), drawn with "
                        "--seed; it goes to test.json / test.jsonl beside the data file.",
    show_default=False)]
Public = Annotated[bool, typer.Option("--public", help="Make the pushed dataset public.")]


def publish_settings(fmt: str, hf_out, push_to_hub, test_size, public: bool):
    from selfinstruct.publish import Publish

    settings = Publish(format=fmt, hf_out=hf_out, push_to_hub=push_to_hub, test_size=test_size,
                       private=not public)
    settings.validate()
    return settings
