"""The ``selfinstruct generate`` command: options in, ``run_generate`` out, a short report."""
from __future__ import annotations

import os
from typing import List, Optional

import typer
from typing_extensions import Annotated

from selfinstruct.commands import common
from selfinstruct.commands.common import OPT_HELP, split_names


# SmolLM2-135M was trained mostly on English: it runs Chinese prompts, but its Chinese is weak.
ZH_EMBEDDED_NOTICE = ("note: the embedded SmolLM2-135M writes weak Chinese; for Chinese data of quality use a "
                      "Chinese-capable teacher, e.g. --teacher openai --base-url http://localhost:8000/v1 "
                      "--model Qwen/Qwen2.5-7B-Instruct")


def default_cache_path() -> str:
    base = os.environ.get("SELFINSTRUCT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "selfinstruct")
    return os.path.join(base, "responses.sqlite")


def generate_command(
    num: Annotated[int, typer.Option("--num", "-n", help="Accepted examples to end with.",
                                     show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (data.json or data.jsonl, rejects.jsonl, "
                                     "summary.json, journal.jsonl). Rerun with the same folder to resume.",
                                     show_default=False)],
    seeds: Annotated[Optional[List[str]], typer.Option(
        "--seeds", help="Seed task files (Self-Instruct JSONL, BELLE, Alpaca JSON…); repeat for several. "
                        "Default: the project's seeds for --lang.", show_default=False)] = None,
    lang: Annotated[str, typer.Option(help="Language of prompts and data: en or zh.")] = "en",
    recipe: Annotated[str, typer.Option(help="alpaca (triples in one request), self-instruct "
                                             "(instructions, classification check, instances), "
                                             "evol-instruct (rewrite tasks harder, --rounds deep), "
                                             "magpie (seedless, from the chat template) or documents "
                                             "(tasks grounded in --documents).")] = "alpaca",
    from_file: Annotated[Optional[str], typer.Option("--from", help="evol-instruct: the tasks to evolve "
                                                     "(any file `filter` reads; default: the seeds).",
                                                     show_default=False)] = None,
    rounds: Annotated[Optional[int], typer.Option(help="evol-instruct: evolution rounds per task "
                                                       "(default 3).", show_default=False)] = None,
    documents: Annotated[Optional[List[str]], typer.Option(
        "--documents", help="documents: .txt, .md or JSONL files, or folders of them; repeat for several.",
        show_default=False)] = None,
    chat_template: Annotated[Optional[str], typer.Option(help="magpie: the teacher's chat template, a "
                                                               "Jinja file or chatml / llama3 (default: the "
                                                               "embedded model's own, or guessed from --model).",
                                                          show_default=False)] = None,
    topics: Annotated[Optional[str], typer.Option(help="One topic per line, one drawn per request and kept in "
                                                       "each record's meta; 'builtin' for the project's list.",
                                                  show_default=False)] = None,
    personas: Annotated[Optional[str], typer.Option(help="One persona per line, one drawn per request.",
                                                    show_default=False)] = None,
    turns: Annotated[int, typer.Option(help="Assistant turns per example: above 1, the teacher plays the "
                                            "user for each next turn, then answers it (conversations "
                                            "in `messages`; any recipe).")] = 1,
    teacher: Annotated[str, typer.Option(help="embedded (SmolLM2-135M on this machine, no key) or "
                                              "openai (any OpenAI-compatible endpoint).")] = "embedded",
    model: Annotated[Optional[str], typer.Option(help="Teacher model name (openai; default "
                                                      "$OPENAI_MODEL or gpt-4o-mini).", show_default=False)] = None,
    base_url: Annotated[Optional[List[str]], typer.Option(
        help="OpenAI-compatible base URL (default $OPENAI_BASE_URL or OpenAI's); repeat for several "
             "servers: each request goes to the healthy one with the fewest requests in flight.",
        show_default=False)] = None,
    endpoints: Annotated[Optional[str], typer.Option(
        help="A file of endpoints, one per line: URL [model=NAME] [key_env=VARIABLE] (instead of "
             "--base-url).", show_default=False)] = None,
    batch: Annotated[bool, typer.Option("--batch", help="Send requests through the OpenAI Batch API "
                                        "(/v1/files and /v1/batches) in waves of --concurrency "
                                        "requests, at batch prices; a killed run resumes polling the "
                                        "same batch.")] = False,
    estimate: Annotated[bool, typer.Option("--estimate", help="Run a sample of the requests (cached, so "
                                           "the real run reuses them) and write OUT/estimate.json: the "
                                           "projected requests, tokens, cost and wall time of the "
                                           "whole run, with 90% intervals. Nothing else is written.")] = False,
    # settings.ESTIMATE_SAMPLE (importing it here would load the generate loop at every CLI start)
    estimate_sample: Annotated[int, typer.Option(help="Requests the --estimate sample runs.")] = 20,
    api: Annotated[Optional[str], typer.Option(help="openai endpoint: chat (/v1/chat/completions, the "
                                                    "default) or completions (/v1/completions, better for "
                                                    "base models).", show_default=False)] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Requests in flight (openai default 16; "
                                                            "embedded: batch size, default 32).",
                                                       show_default=False)] = None,
    rpm: Annotated[Optional[float], typer.Option(help="Requests per minute limit.", show_default=False)] = None,
    tpm: Annotated[Optional[float], typer.Option(help="Tokens per minute limit.", show_default=False)] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop cleanly before spending more than this "
                                                           "many USD.", show_default=False)] = None,
    price_in: Annotated[Optional[float], typer.Option(help="USD per 1M prompt tokens (overrides the "
                                                           "built-in table).", show_default=False)] = None,
    price_out: Annotated[Optional[float], typer.Option(help="USD per 1M completion tokens.",
                                                       show_default=False)] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse responses to identical requests "
                                        "from an on-disk cache ($SELFINSTRUCT_CACHE_DIR, default "
                                        "~/.cache/selfinstruct); openai teacher only.")] = True,
    only: Annotated[Optional[List[str]], typer.Option(help="Run only these filters or stages "
                                                           "(comma-separated).", show_default=False)] = None,
    skip: Annotated[Optional[List[str]], typer.Option(help="Leave out these filters or stages.",
                                                      show_default=False)] = None,
    rouge_threshold: Annotated[float, typer.Option(help="Reject instructions whose ROUGE-L F with a pool "
                                                        "instruction is above this.")] = 0.7,
    seed: Annotated[int, typer.Option(help="Random seed for sampling prompt examples.")] = 0,
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
    fmt: common.Format = "alpaca",
    hf_out: common.HfOut = None,
    push_to_hub: common.PushToHub = None,
    test_size: common.TestSize = None,
    public: common.Public = False,
    report: common.Report = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Bootstrap instruction/input/output examples from seed tasks with a teacher LLM.

    Each request shows the teacher a sample of seed and earlier machine
    tasks; every candidate passes the same filters as `selfinstruct filter`
    (length, blacklist, bad start, echo, refusal, language, ROUGE-L novelty
    > 0.7 against the whole pool) before it joins the pool. Writes
    OUT/data.json (Alpaca JSON; or as --format says), OUT/rejects.jsonl (each reject with its
    reason) and OUT/summary.json. Killed or stopped, the same command with
    the same --out resumes and ends with exactly --num examples.

    Examples:

    \b
      # 20 English examples from the embedded teacher (no key, no server)
      selfinstruct generate --num 20 --out out/en
      # Chinese, Self-Instruct recipe
      selfinstruct generate --num 20 --lang zh --recipe self-instruct --out out/zh
      # OpenAI, 32 requests in flight, at most $5
      OPENAI_API_KEY=sk-... selfinstruct generate --teacher openai \\
          --model gpt-4o-mini --num 50000 --concurrency 32 --max-cost 5 --out out/big
      # a local vLLM server, base model, completions endpoint
      selfinstruct generate --teacher openai --base-url http://localhost:8000/v1 \\
          --model meta-llama/Llama-3.1-8B --api completions --num 1000 --out out/vllm
      # your own seeds (Self-Instruct JSONL, BELLE, Alpaca JSON)
      selfinstruct generate --seeds my_seeds.jsonl --num 100 --out out/mine
      # any option a filter, teacher or recipe declares
      selfinstruct generate --num 20 --out out/long --opt length.max_words=200 \\
          --opt alpaca.examples=4
      # judged by another model, decontaminated against an eval set
      selfinstruct generate --teacher openai --num 1000 --out out/judged \\
          --judge-model gpt-4o --judge-min-score 7 --decontam-against mmlu_test.jsonl
      # Stanford Alpaca's own filtering rules instead of the precise default
      selfinstruct generate --num 100 --rules paper --out out/alpaca-rules
      # one of the project's topics per request (or --topics my_topics.txt)
      selfinstruct generate --num 20 --topics builtin --out out/topics
      # Evol-Instruct: each seed rewritten harder, 3 rounds deep
      selfinstruct generate --recipe evol-instruct --rounds 3 --num 30 --out out/evol
      # Magpie on a llama.cpp / vLLM server (raw completions)
      selfinstruct generate --recipe magpie --teacher openai --api completions \\
          --base-url http://localhost:8080/v1 --model qwen2.5-7b-instruct --num 100 --out out/magpie
      # tasks grounded in your own documents (.txt, .md, JSONL; folders walked)
      selfinstruct generate --recipe documents --documents notes/ --num 50 --out out/docs
      # conversations of 3 assistant turns (the teacher plays the user), OpenAI chat JSONL
      selfinstruct generate --num 100 --turns 3 --format messages --out out/chat
      # three vLLM replicas, least-in-flight routing, a failing one paused and probed
      selfinstruct generate --teacher openai --base-url http://gpu1:8000/v1 \\
          --base-url http://gpu2:8000/v1 --base-url http://gpu3:8000/v1 --num 500000 --out out/big
      # what the run will cost, before paying for it (writes out/big/estimate.json)
      selfinstruct generate --teacher openai --num 50000 --out out/big --estimate
      # OpenAI's Batch API at half price, in waves of 2000 requests
      selfinstruct generate --teacher openai --batch --concurrency 2000 --num 50000 --out out/batch
      # ShareGPT, 5% held out, also as a Hugging Face dataset
      selfinstruct generate --num 200 --format sharegpt --test-size 0.05 --hf-out out/hf --out out/sg
    """
    import selfinstruct
    from selfinstruct.generate import Settings, run_generate

    # The teacher flags the user gave; each must be one the chosen teacher declares.
    urls = list(base_url or [])
    flags = dict(model=model, base_url=(urls[0] if len(urls) == 1 else urls) or None,
                 endpoints=endpoints, batch=batch or None, api=api, concurrency=concurrency, rpm=rpm, tpm=tpm,
                 max_cost=max_cost, price_in=price_in, price_out=price_out)
    recipe_flags = dict(source=from_file, rounds=rounds, documents=list(documents or []) or None,
                        chat_template=chat_template)
    s = Settings(num=num, out=out, seed_files=list(seeds or []), lang=lang, recipe=recipe, teacher=teacher,
                 recipe_options={k: v for k, v in recipe_flags.items() if v is not None},
                 topics=topics, personas=personas,
                 random_seed=seed, rouge_threshold=rouge_threshold, only=split_names(only),
                 skip=split_names(skip), cache=default_cache_path() if cache else None,
                 teacher_options={k: v for k, v in flags.items() if v is not None},
                 options=list(opt or []), progress=progress, turns=turns,
                 estimate=estimate, estimate_sample=estimate_sample,
                 publish=common.publish_settings(fmt, hf_out, push_to_hub, test_size, public),
                 quality=common.quality_settings(rules, decontam_against, judge, judge_teacher, judge_model,
                                                 judge_base_url, judge_min_score, judge_concurrency))
    if lang == "zh" and teacher == "embedded":
        typer.echo(ZH_EMBEDDED_NOTICE, err=True)
    if estimate:
        from selfinstruct.generate.estimate import print_estimate, run_estimate
        print_estimate(run_estimate(s, started=selfinstruct.STARTED), out)
        return
    summary = run_generate(s, started=selfinstruct.STARTED)
    typer.echo(f"{summary['kept']}/{summary['requested']} examples in {out}/{summary['outputs']['data']} "
               f"({summary['rejected_total']} rejected, see rejects.jsonl; stopped: {summary['stopped']})")
    if report:
        common.end_of_run_report(out, progress)
