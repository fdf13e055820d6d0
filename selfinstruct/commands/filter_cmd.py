"""The ``selfinstruct filter`` command: options in, ``run_filter`` out, a two-line report."""
from __future__ import annotations

from typing import List, Optional

import typer
from typing_extensions import Annotated

from selfinstruct.commands import common
from selfinstruct.commands.common import OPT_HELP


def filter_command(
    inputs: Annotated[List[str], typer.Argument(
        metavar="INPUT", show_default=False,
        help="Files to curate: Alpaca JSON, JSON lines, Self-Instruct/BELLE seed tasks, parquet, a "
             "save_to_disk folder, or hf:NAME[:split] from the local Hugging Face cache.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (data.json or data.jsonl, rejects.jsonl, "
                                                         "summary.json).", show_default=False)],
    against: Annotated[Optional[List[str]], typer.Option(
        "--against", help="Records the inputs must be novel against (e.g. the seed tasks); they fill "
                          "the dedup/novelty pools and are never written. Repeat for several files.",
        show_default=False)] = None,
    rouge_threshold: Annotated[float, typer.Option(
        help="Reject a record whose ROUGE-L F-measure with a kept one is above this.")] = 0.7,
    minhash_threshold: Annotated[float, typer.Option(
        help="Estimated Jaccard similarity above which MinHash calls two records near-duplicates.")] = 0.8,
    lang: Annotated[str, typer.Option(help="Language of the data: auto, en or zh.")] = "auto",
    fields: Annotated[Optional[str], typer.Option(
        help="Map other key names, e.g. instruction=question,output=answer (keys: instruction, input, "
             "output). Applies to the INPUT files.", show_default=False)] = None,
    only: Annotated[Optional[str], typer.Option(
        help="Run only these stages or filters, comma-separated (exact, quality, minhash, rouge, or "
             "filter names).", show_default=False)] = None,
    skip: Annotated[Optional[str], typer.Option(
        help="Leave out these stages or filters, comma-separated.", show_default=False)] = None,
    on_bad_record: Annotated[str, typer.Option(
        help="error: stop at the first malformed record (exit 2, nothing written); skip: write it to "
             "rejects.jsonl with reason 'malformed' and go on.")] = "error",
    opt: Annotated[Optional[List[str]], typer.Option("--opt", metavar="NAME=VALUE", help=OPT_HELP,
                                                     show_default=False)] = None,
    rules: common.Rules = "default",
    decontam_against: common.DecontamAgainst = None,
    judge: common.Judge = False,
    judge_teacher: common.JudgeTeacher = None,
    judge_model: common.JudgeModel = None,
    judge_base_url: common.JudgeBaseUrl = None,
    judge_min_score: common.JudgeMinScore = None,
    judge_concurrency: common.JudgeConcurrency = None,
    max_cost: Annotated[Optional[float], typer.Option(
        help="Stop (exit 2, judgements kept for a rerun) before the judge spends more than this many "
             "USD.", show_default=False)] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Let the judge reuse answers to identical "
                                        "requests from the on-disk response cache (openai judge).")] = True,
    fmt: common.Format = "alpaca",
    hf_out: common.HfOut = None,
    push_to_hub: common.PushToHub = None,
    test_size: common.TestSize = None,
    seed: Annotated[int, typer.Option(help="Random seed of the --test-size split.")] = 0,
    public: common.Public = False,
    report: common.Report = True,
    engine: Annotated[str, typer.Option(help="Where the filters' parallel work runs: local (this machine, "
                                             "--workers processes) or ray (a Ray cluster).")] = "local",
    workers: Annotated[int, typer.Option(help="Worker processes (local) or actors (ray) for the parallel "
                                              "filters; the results are the same for any number.")] = 1,
    ray_address: Annotated[Optional[str], typer.Option(help="--engine ray: the cluster to join (e.g. "
                                                            "ray://head:10001 or auto; default: start a "
                                                            "local one for the run).",
                                                       show_default=False)] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr (only on a terminal).")] = True,
) -> None:
    """Curate instruction data: exact dedup, quality rules, benchmark
    decontamination, MinHash, ROUGE-L novelty, an optional LLM judge.

    Kept records go to OUT/data.json (Alpaca JSON; or as --format says)
    and OUT/records.jsonl
    (with their metadata), rejected ones with their reason to
    OUT/rejects.jsonl, counts and timings to summary.json, a picture of
    it all to OUT/report.html.
    ROUGE-L tokenises like rouge-score on text without Han or kana, by
    character on Chinese, and both ways on mixed text.

    Examples:

    \b
      # Alpaca's 52K, novel against our seed tasks
      selfinstruct filter alpaca_data.json --out out/alpaca \\
          --against seeds/seed_tasks.jsonl
      # only the ROUGE-L novelty stage, stricter
      selfinstruct filter data.jsonl --only rouge \\
          --rouge-threshold 0.6 --out out/novel
      # a BELLE file (JSON lines despite the .json name)
      selfinstruct filter belle_data.json --lang zh --out out/belle
      # other key names; malformed rows to rejects.jsonl
      selfinstruct filter qa.parquet --out out/qa --on-bad-record skip \\
          --fields instruction=question,output=answer
      # allow longer instructions (an option the length filter declares)
      selfinstruct filter data.json --opt length.max_words=300 --out out/long
      # drop anything that overlaps an evaluation set
      selfinstruct filter data.json --decontam-against gsm8k_test.jsonl \\
          --decontam-against hf:cais/mmlu:test --out out/clean
      # score every record with a judge on a local server, keep 7+
      selfinstruct filter data.json --judge-base-url http://localhost:8000/v1 \\
          --judge-model Qwen2.5-7B-Instruct --judge-min-score 7 --out out/judged
      # the Self-Instruct paper's own rules (BELLE's for Chinese)
      selfinstruct filter data.json --rules paper --lang en --out out/paper
      # conversations (ShareGPT or OpenAI messages) in, OpenAI chat JSONL out, 5% held out
      selfinstruct filter chats.json --format messages --test-size 0.05 --out out/chat
      # a Hugging Face dataset folder, and a private push to the Hub (HF_TOKEN)
      selfinstruct filter data.json --hf-out out/hf --push-to-hub you/my-data --out out/d
    """
    import selfinstruct
    from selfinstruct.commands.generate_cmd import default_cache_path
    from selfinstruct.curate import REJECTS, run_filter
    from selfinstruct.engines import EngineSettings

    summary = run_filter(inputs, out, against=against or (), rouge_threshold=rouge_threshold,
                         minhash_threshold=minhash_threshold, lang=lang, fields=fields, only=only or (),
                         skip=skip or (), on_bad_record=on_bad_record, progress=progress,
                         options=opt or (), started=selfinstruct.STARTED,
                         quality=common.quality_settings(rules, decontam_against, judge, judge_teacher,
                                                         judge_model, judge_base_url, judge_min_score,
                                                         judge_concurrency, max_cost),
                         cache=default_cache_path() if cache else None,
                         publish=common.publish_settings(fmt, hf_out, push_to_hub, test_size, public),
                         engine=EngineSettings(engine, workers, ray_address),
                         random_seed=seed)
    reasons = sorted(summary["rejected"].items(), key=lambda kv: -kv[1])
    top = ", ".join(f"{reason} {n:,}" for reason, n in reasons)
    typer.echo(f"kept {summary['kept']:,} of {summary['input_records']:,} records -> {out}/{summary['outputs']['data']} "
               f"({summary['elapsed_seconds']:.1f}s)")
    typer.echo(f"rejected {summary['rejected_total']:,}" + (f": {top}" if top else "") + f" -> {out}/{REJECTS}")
    if report:
        common.end_of_run_report(out, progress)
