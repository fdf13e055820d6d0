"""train_sft: masking, config, batching and bad inputs in-process; the FSDP2 path under torchrun (2 CPU
ranks, gloo, a 2-layer LLaMA) for loss, checkpoints, resume and export."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from selfinstruct.errors import InputError, UsageError
from selfinstruct.record import Record
from selfinstruct.train_sft import checkpoint, config, data
from selfinstruct.train_sft.train import lr_factor, main
from tests.train_helpers import env, launch, torchrun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "train_sft", "configs")
LAUNCH = os.path.join(ROOT, "train_sft", "launch.sh")

# Needs the `train` extra and the embedded model package (its tokenizer): said, not skipped.
pytestmark = [pytest.mark.train, pytest.mark.embedded]

ROWS = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "Eat well, sleep enough, and exercise."},
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "把这句话翻译成英文。", "input": "今天天气很好。", "output": "The weather is nice today."},
    {"instruction": "What is 2+2?", "input": "", "output": "4"},
    {"instruction": "Name a primary color.", "input": "", "output": "Red"},
    {"instruction": "Summarize the text.", "input": "Cats are small domesticated carnivores kept as pets.",
     "output": "Cats are common pets."},
    {"instruction": "写一首关于春天的短诗。", "input": "", "output": "春风拂面来，花开满山间。"},
    {"instruction": "Sort the numbers.", "input": "3, 1, 2", "output": "1, 2, 3"},
]


@pytest.fixture(scope="session")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "data.json"
    path.write_text(json.dumps(ROWS, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- masking ------------------------------------------------------------------------------------


def test_alpaca_prompts_are_stanford_alpacas_templates_verbatim():
    assert data.alpaca_prompt(Record("Sort.", "3, 1", "1, 3")) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nSort.\n\n"
        "### Input:\n3, 1\n\n### Response:\n")
    assert data.alpaca_prompt(Record("Say hi.", "", "Hi")) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nSay hi.\n\n### Response:\n")


@pytest.mark.parametrize("record", [
    Record("Translate to French.", "Good morning", "Bonjour", origin="d.json:1"),
    Record("What is 2+2?", "", "4", origin="d.json:2"),
    Record("把这句话翻译成英文。", "今天天气很好。", "The weather is nice today.", origin="d.json:3"),
    Record("写一首关于春天的短诗。", "", "春风拂面来，花开满山间。", origin="d.json:4"),
], ids=["with-input", "no-input", "chinese-with-input", "chinese-no-input"])
def test_labels_are_minus_100_exactly_on_the_prompt_and_response_plus_eos_is_supervised(tokenizer, record):
    [example] = data.encode_batch([record], tokenizer, "alpaca", 512)
    prompt = tokenizer(data.alpaca_prompt(record))["input_ids"]
    response = tokenizer(record.output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert example.input_ids == prompt + response
    assert example.labels == [-100] * len(prompt) + response
    assert tokenizer.decode([t for t in example.labels if t != -100]) == record.output + tokenizer.eos_token
    assert example.supervised == len(response)


def test_padding_positions_get_label_minus_100_and_the_pad_id(tokenizer):
    records = [Record("What is 2+2?", "", "4"), Record("Summarize the text.", "A long input " * 5, "Short.")]
    short, long = data.encode_batch(records, tokenizer, "alpaca", 512)
    batch = data.collate([short, long], pad_id=tokenizer.pad_token_id)
    pad = len(long.input_ids) - len(short.input_ids)
    assert pad > 0
    assert batch["labels"][0].tolist() == short.labels + [-100] * pad
    assert batch["input_ids"][0].tolist() == short.input_ids + [tokenizer.pad_token_id] * pad
    assert batch["labels"][1].tolist() == long.labels


def test_chat_template_masks_the_rendered_prompt_and_supervises_the_assistant_turn(tokenizer):
    record = Record("把这句话翻译成英文。", "今天天气很好。", "The weather is nice today.")
    [example] = data.encode_batch([record], tokenizer, "chat", 512)
    prompt, response = data.chat_texts(record, tokenizer)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert example.labels[:n_prompt] == [-100] * n_prompt
    assert -100 not in example.labels[n_prompt:]
    assert tokenizer.decode(example.labels[n_prompt:]).startswith("The weather is nice today.<|im_end|>")
    assert tokenizer.eos_token_id in example.labels


def test_truncation_cuts_the_response_and_keeps_the_labels_aligned(tokenizer):
    record = Record("Count.", "", "one two three four five six seven eight nine ten")
    [full] = data.encode_batch([record], tokenizer, "alpaca", 512)
    [cut] = data.encode_batch([record], tokenizer, "alpaca", len(full.input_ids) - 3)
    assert cut.input_ids == full.input_ids[:-3] and cut.labels == full.labels[:-3] and cut.truncated
    assert not full.truncated


def test_a_record_whose_response_is_truncated_away_is_an_error_naming_its_line(tmp_path, tokenizer):
    rows = [{"instruction": "Hi", "output": "Hello"},
            {"instruction": "Explain. " + "word " * 80, "output": "Too long."}]
    path = write(tmp_path, "d.json", "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]")
    with pytest.raises(InputError) as e:
        data.load_examples(path, tokenizer, "alpaca", 64)
    assert str(e.value) == (f"{path}:3: the prompt fills max_length=64 tokens, leaving no response tokens "
                            f"to train on; raise max_length, shorten this record, or set too_long=skip")
    examples, skipped = data.load_examples(path, tokenizer, "alpaca", 64, too_long="skip")
    assert len(examples) == 1 and skipped == [f"{path}:3"]


def test_supervised_share_and_padding_waste_are_measured(tokenizer, data_file):
    examples, _ = data.load_examples(data_file, tokenizer, "alpaca", 512)
    lengths = [len(e.input_ids) for e in examples]
    grouped = data.padding_waste(lengths, data.plan_epoch(lengths, 0, 1, 4, 2, True))
    shuffled = data.padding_waste(lengths, data.plan_epoch(lengths, 0, 1, 4, 2, False))
    assert 0 < sum(e.supervised for e in examples) < sum(lengths)
    assert 0 <= grouped < shuffled


# --- batching and schedule -------------------------------------------------------------------------


def test_an_epoch_plan_is_a_pure_function_of_seed_and_epoch_and_uses_each_example_at_most_once():
    lengths = [(i * 37) % 50 + 1 for i in range(103)]
    plan = data.plan_epoch(lengths, 3, 7, global_batch=16, micro=4, group_by_length=True)
    assert plan == data.plan_epoch(lengths, 3, 7, global_batch=16, micro=4, group_by_length=True)
    assert plan != data.plan_epoch(lengths, 4, 7, global_batch=16, micro=4, group_by_length=True)
    used = [i for step in plan for batch in step for i in batch]
    assert len(plan) == data.steps_per_epoch(103, 16) == 6
    assert len(used) == len(set(used)) == 96
    assert all(len(step) == 4 and all(len(b) == 4 for b in step) for step in plan)


@pytest.mark.parametrize("grouped", [True, False])
def test_the_examples_of_each_step_do_not_depend_on_the_micro_batch_size(grouped):
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]
    by_two = data.plan_epoch(lengths, 0, 7, global_batch=32, micro=2, group_by_length=grouped)
    by_eight = data.plan_epoch(lengths, 0, 7, global_batch=32, micro=8, group_by_length=grouped)
    assert [sum(step, []) for step in by_two] == [sum(step, []) for step in by_eight]


def test_length_grouping_cuts_padding_waste_on_mixed_lengths():
    lengths = [(i * 7919) % 500 + 10 for i in range(2000)]
    grouped = data.padding_waste(lengths, data.plan_epoch(lengths, 0, 1, 32, 4, True))
    shuffled = data.padding_waste(lengths, data.plan_epoch(lengths, 0, 1, 32, 4, False))
    assert grouped < 0.05 < 0.3 < shuffled


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    assert [lr_factor(s, 100, 4, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 100, 4, 0.1) == 1.0
    assert lr_factor(52, 100, 4, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 100, 4, 0.1) == pytest.approx(0.1)


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(CONFIGS) if n.endswith(".yaml")))
def test_every_shipped_config_loads_and_validates(name, tmp_path):
    path = os.path.join(CONFIGS, name)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    needs = ["data=d.json", f"out={tmp_path}"] + ([] if "\nmodel:" in text else ["model=/m"])
    c = config.load(path, needs)
    assert text.startswith("# ") and "Usage" in text and "launch.sh" in text
    assert c.global_batch_size % c.micro_batch_size == 0


def test_a_partial_mapping_keeps_the_other_defaults():
    assert config.load("tiny-cpu", ["data=d.json", "tiny={layers: 3}"]).tiny == {
        "layers": 3, "hidden": 64, "heads": 4, "intermediate": 256}


def test_the_7b_config_carries_stanford_alpacas_settings():
    c = config.load("llama-7b-8gpu", ["model=/m", "data=d.json"])
    assert (c.lr, c.epochs, c.global_batch_size, c.max_length, c.precision, c.warmup_ratio) == (
        2e-5, 3, 128, 512, "bf16", 0.03)
    assert c.global_batch_size // (c.micro_batch_size * 8) == 4


def test_overrides_are_coerced_to_the_type_of_the_default():
    c = config.load("tiny-cpu", ["data=d.json", "lr=1e-4", "epochs=2", "tiny.layers=4", "resume=true",
                                 "max_steps=7", "group_by_length=false"])
    assert (c.lr, c.epochs, c.tiny["layers"], c.tiny["hidden"], c.resume, c.max_steps, c.group_by_length) == (
        1e-4, 2, 4, 64, True, 7, False)


@pytest.mark.parametrize("override, message", [
    ("lrr=0.1", "unknown config key 'lrr' in override 'lrr=0.1'; did you mean 'lr'?"),
    ("epochs=two", "override 'epochs=two': epochs must be a whole number, e.g. epochs=3 (got the string 'two')"),
    ("lr", "override 'lr' is not key=value (e.g. lr=2e-05)"),
    ("template=llama", "template=llama is not one of alpaca, chat"),
    ("micro_batch_size=0", "micro_batch_size=0 must be at least 1"),
])
def test_bad_overrides_are_refused_with_the_fix(override, message):
    with pytest.raises(UsageError) as e:
        config.load("tiny-cpu", ["data=d.json", override])
    assert str(e.value) == message


def test_a_null_or_wrongly_typed_value_in_a_config_file_names_the_file_and_key(tmp_path):
    path = write(tmp_path, "c.yaml", "model: tiny-llama\ndata: d.json\nlr:\n")
    with pytest.raises(UsageError) as e:
        config.load(path)
    assert str(e.value) == f"{path}: lr must be a number, e.g. lr: 2e-05 (got null)"


def test_empty_value_unsets_a_key_whose_default_is_none_and_the_other_checks_are_unchanged():
    assert config.load("tiny-cpu", ["data=d.json", "max_steps="]).max_steps is None
    c = config.load("tiny-cpu", ["data=d.json", "grad_clip=.inf", "betas=[0.8, 1]", "tiny={layers: 3}",
                                 "resume=runs/x/checkpoints/step_0000010", "tokenizer=null"])
    assert (c.grad_clip, c.betas, c.tiny["layers"], c.resume, c.tokenizer) == (
        float("inf"), [0.8, 1.0], 3, "runs/x/checkpoints/step_0000010", None)


# Every malformed override: one line naming it, what is wrong and what to write instead.
MALFORMED = [
    ("lr=[", "override 'lr=[': '[' is not valid YAML (expected the node content, but found '<stream end>'); "
             "lr must be a number, e.g. lr=2e-05"),
    ("lr=: x", "override 'lr=: x': ': x' is not valid YAML (expected <block end>, but found ':'); "
               "lr must be a number, e.g. lr=2e-05"),
    ('model="abc', "override 'model=\"abc': '\"abc' is not valid YAML (found unexpected end of stream); "
                   "model must be a string, e.g. model=/models/llama-7b; quote it: model='\"abc'"),
    ("lr=", "override 'lr=': lr must be a number, e.g. lr=2e-05 (got nothing after '=')"),
    ("lr=null", "override 'lr=null': lr must be a number, e.g. lr=2e-05 (got null)"),
    ("resume=", "override 'resume=': resume must be true, false or a checkpoint folder, e.g. resume=true "
                "(got nothing after '=')"),
    ("=3", "override '=3' has no key before '=' (write key=value, e.g. lr=1e-4)"),
    ("lr", "override 'lr' is not key=value (e.g. lr=2e-05)"),
    ("tiny.layers", "override 'tiny.layers' is not key=value (e.g. tiny.layers=2)"),
    ("micro_batch_size=abc", "override 'micro_batch_size=abc': micro_batch_size must be a whole number, "
                             "e.g. micro_batch_size=4 (got the string 'abc')"),
    ("epochs=2.5", "override 'epochs=2.5': epochs must be a whole number, e.g. epochs=3 (got 2.5)"),
    ("seed=true", "override 'seed=true': seed must be a whole number, e.g. seed=42 (got true)"),
    ("max_steps=abc", "override 'max_steps=abc': max_steps must be a whole number, e.g. max_steps=1000 "
                      "(got the string 'abc')"),
    ("group_by_length=maybe", "override 'group_by_length=maybe': group_by_length must be true or false, "
                              "e.g. group_by_length=true (got the string 'maybe')"),
    ("lr=[1, 2]", "override 'lr=[1, 2]': lr must be a number, e.g. lr=2e-05 (got a list: [1, 2])"),
    ("lr={a: 1}", "override 'lr={a: 1}': lr must be a number, e.g. lr=2e-05 (got a mapping: {a: 1})"),
    ("lr=.nan", "override 'lr=.nan': lr must be a number, e.g. lr=2e-05 (got nan)"),
    ("lr=.inf", "lr=inf must be finite, e.g. lr=2e-05"),
    ("data=foo: bar", "override 'data=foo: bar': data must be a string, e.g. data=alpaca_data.json "
                      "(got a mapping: {foo: bar}); quote it: data='foo: bar'"),
    ("out=#x", "override 'out=#x': out must be a string, e.g. out=runs/7b (got null); quote it: out='#x'"),
    ("resume=[1]", "override 'resume=[1]': resume must be true, false or a checkpoint folder, e.g. resume=true "
                   "(got a list: [1])"),
    ("betas=0.9", "override 'betas=0.9': betas must be a list of 2 numbers, e.g. betas=[0.9, 0.999] (got 0.9)"),
    ("betas=[0.9, x]", "override 'betas=[0.9, x]': betas must be a list of 2 numbers, e.g. betas=[0.9, 0.999] "
                       "(got a list: [0.9, x])"),
    ("tiny=3", "override 'tiny=3': tiny must be a mapping, e.g. tiny={layers: 2, hidden: 64, heads: 4, "
               "intermediate: 256} (got 3)"),
    ("tiny.layers=abc", "override 'tiny.layers=abc': tiny.layers must be a whole number, e.g. tiny.layers=2 "
                        "(got the string 'abc')"),
    ("tiny={layer: 3}", "unknown config key 'tiny.layer' in override 'tiny={layer: 3}'; did you mean "
                        "'tiny.layers'?"),
    ("lrr=[", "unknown config key 'lrr' in override 'lrr=['; did you mean 'lr'?"),
]


@pytest.mark.parametrize("override, message", MALFORMED, ids=[o for o, _ in MALFORMED])
def test_a_malformed_override_is_one_error_line_naming_it_and_exit_2(capsys, override, message):
    with pytest.raises(SystemExit) as e:
        main(["tiny-cpu", "data=d.json", override, "--check"])
    captured = capsys.readouterr()
    assert (e.value.code, captured.err, captured.out) == (2, f"Error: {message}\n", "")


@pytest.mark.parametrize("override", ["lr=[", "micro_batch_size=abc", "=3", "lr"])
def test_run_directly_a_malformed_override_is_one_line_and_exit_2_without_a_traceback(override):
    result = subprocess.run([sys.executable, "-m", "selfinstruct.train_sft.train", "tiny-cpu", "data=d.json",
                             override], cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env())
    assert (result.returncode, result.stderr) == (2, f"Error: {dict(MALFORMED)[override]}\n")
    assert result.stdout == ""


# --- checkpoints ----------------------------------------------------------------------------------


def test_only_complete_checkpoints_are_resumed_from(tmp_path):
    root = tmp_path / "checkpoints"
    for name, complete in [("step_0000005", True), ("step_0000010", True), ("step_0000015", False),
                           ("step_0000020.tmp", True)]:
        (root / name).mkdir(parents=True)
        if complete:
            (root / name / checkpoint.MARKER).write_text("")
    assert checkpoint.find_resume(True, str(root)) == str(root / "step_0000010")
    assert checkpoint.find_resume(str(root / "step_0000005"), "-") == str(root / "step_0000005")
    assert checkpoint.find_resume(False, str(root)) is None


# --- bad input: one Error line, exit 2 ------------------------------------------------------------


@pytest.fixture
def run_main(capsys, tokenizer_dir, data_file, tmp_path):
    def run(*overrides: str) -> tuple[int, str]:
        args = ["tiny-cpu", f"data={data_file}", f"out={tmp_path / 'out'}", f"tokenizer={tokenizer_dir}",
                *overrides]
        with pytest.raises(SystemExit) as e:
            main(args)
        return e.value.code, capsys.readouterr().err
    return run


def test_a_missing_model_folder_is_refused(run_main, tmp_path):
    code, err = run_main(f"model={tmp_path}/nope")
    assert (code, err) == (2, f"Error: model folder not found: {tmp_path}/nope (expected a Hugging Face folder "
                              f"with config.json and weights, or model=tiny-llama)\n")


def test_a_folder_without_config_json_is_not_a_model(run_main, tmp_path):
    code, err = run_main(f"model={tmp_path}")
    assert (code, err) == (2, f"Error: not a Hugging Face model folder (no config.json): {tmp_path}\n")


@pytest.mark.parametrize("text, where_what", [
    ('[\n {"prompt": "x", "completion": "y"}\n]', ":2: record has no 'instruction' field"),
    ('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c"}\n]', ":3: record has no 'output' field"),
    ('[\n {"instruction": "a", "output": "b"},\n {"instruction": \n', ":4:1: invalid JSON: Expecting value"),
    ('{"instruction": "a"}\n', ":1: record has no output to train on (expected Alpaca records: instruction, "
                               "input, output)"),
    ("hello world\n", ": not JSON, JSON lines or parquet"),
], ids=["other-keys", "missing-output", "broken-json", "instructions-only", "not-json"])
def test_a_data_file_that_is_not_alpaca_names_its_file_and_line(run_main, tmp_path, text, where_what):
    path = write(tmp_path, "bad.json", text)
    code, err = run_main(f"data={path}")
    assert (code, err) == (2, f"Error: {path}{where_what}\n")


def test_an_empty_dataset_is_refused(run_main, tmp_path):
    path = write(tmp_path, "empty.json", "[]")
    assert run_main(f"data={path}") == (2, f"Error: {path}: no records\n")


def test_a_dataset_smaller_than_one_global_batch_is_refused(run_main, tmp_path):
    path = write(tmp_path, "three.json", json.dumps(ROWS[:3]))
    assert run_main(f"data={path}") == (2, f"Error: {path}: 3 examples do not fill one step of "
                                           f"global_batch_size=8; lower global_batch_size\n")


def test_max_length_shorter_than_every_prompt_is_refused(run_main):
    code, err = run_main("max_length=16")
    assert (code, err) == (2, "Error: max_length=16 leaves no room for a response: every prompt has at least "
                              "35 tokens; raise max_length above 35\n")


def test_resuming_from_a_folder_without_a_complete_checkpoint_is_refused(run_main, tmp_path):
    (tmp_path / "ck" / "step_0000004.tmp").mkdir(parents=True)
    (tmp_path / "ck" / "step_0000002").mkdir()
    code, err = run_main(f"resume={tmp_path}/ck")
    assert (code, err) == (2, f"Error: no complete checkpoint in {tmp_path}/ck (complete = a step_N folder "
                              f"holding COMPLETE); run without resume to start over\n")


def test_resume_true_without_any_checkpoint_is_refused(run_main, tmp_path):
    code, err = run_main("--resume")
    assert (code, err) == (2, f"Error: no complete checkpoint in {tmp_path}/out/checkpoints (complete = a "
                              f"step_N folder holding COMPLETE); run without resume to start over\n")


def test_resuming_with_settings_that_change_the_run_is_refused(run_main, tmp_path, data_file, tokenizer_dir):
    import torch

    folder = tmp_path / "out" / "checkpoints" / "step_0000003"
    folder.mkdir(parents=True)
    (folder / "COMPLETE").write_text("")
    saved = config.load("tiny-cpu", [f"data={data_file}", f"tokenizer={tokenizer_dir}", "global_batch_size=16",
                                     "lr=1", "micro_batch_size=4"]).to_dict()
    torch.save({"config": saved}, folder / "train_state.pt")
    code, err = run_main("--resume")
    assert (code, err) == (2, f"Error: resume: global_batch_size=8 but {folder} was trained with "
                              f"global_batch_size=16; set global_batch_size=16 to continue that run\n")


def test_a_fresh_run_into_an_out_folder_with_checkpoints_is_refused(run_main, tmp_path):
    folder = tmp_path / "out" / "checkpoints" / "step_0000003"
    folder.mkdir(parents=True)
    (folder / "COMPLETE").write_text("")
    assert run_main() == (2, f"Error: {tmp_path}/out already holds checkpoints; add resume=true to continue "
                             f"that run, or choose another out\n")


def test_fp16_on_cpu_is_refused_with_the_fix(run_main):
    assert run_main("precision=fp16") == (
        2, "Error: precision=fp16 needs a CUDA GPU; on CPU use precision=fp32 (or precision=bf16)\n")


def test_an_unknown_config_key_is_refused(run_main):
    assert run_main("epoch=3") == (2, "Error: unknown config key 'epoch' in override 'epoch=3'; "
                                      "did you mean 'epochs'?\n")


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(run_main, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert run_main() == (2, "Error: global_batch_size=8 is not a multiple of micro_batch_size=2 x 3 ranks "
                             "= 6\n")


def test_check_validates_everything_and_trains_nothing(tokenizer_dir, data_file, tmp_path, capsys):
    assert main(["tiny-cpu", "--check", f"data={data_file}", f"out={tmp_path}/o",
                 f"tokenizer={tokenizer_dir}"]) == 0
    out = capsys.readouterr().out
    assert "data: 8 examples" in out and "padding waste:" in out and out.endswith("check: ok\n")
    assert not os.path.exists(tmp_path / "o")


# --- torchrun: 2 CPU ranks, gloo ------------------------------------------------------------------


def tiny_args(data_file, tokenizer_dir, out, *extra) -> list[str]:
    # 8 examples, 2 per micro-batch, 2 ranks x 2 accumulation: one step per epoch.
    return ["train_sft/configs/tiny-cpu.yaml", f"data={data_file}", f"out={out}", f"tokenizer={tokenizer_dir}",
            "epochs=100", "max_steps=16", "lr=3e-3", "checkpoint_every=5", "keep_last=2", "log_every=100",
            *extra]


def _env() -> dict:
    return env()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data_file, tokenizer_dir):
    """16 uninterrupted steps through launch.sh (check, then torchrun with 2 CPU ranks)."""
    out = tmp_path_factory.mktemp("full")
    result = launch(tiny_args(data_file, tokenizer_dir, out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def metrics(out) -> list[dict]:
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_loss_goes_down_when_overfitting_eight_examples(full_run):
    rows = metrics(full_run)
    assert [r["step"] for r in rows] == list(range(1, 17))
    assert set(rows[0]) >= {"step", "loss", "lr", "tokens", "tokens_per_s"}
    assert rows[-1]["loss"] < rows[0]["loss"] - 2.0


@pytest.mark.slow
def test_checkpoints_are_sharded_per_rank_complete_and_only_the_last_k_are_kept(full_run):
    root = full_run / "checkpoints"
    assert sorted(os.listdir(root)) == ["step_0000015", "step_0000016"]
    files = set(os.listdir(root / "step_0000016"))
    assert files >= {"__0_0.distcp", "__1_0.distcp", ".metadata", "COMPLETE", "train_state.pt",
                     "rng_rank0.pt", "rng_rank1.pt"}


@pytest.mark.slow
def test_the_exported_folder_loads_with_transformers_and_generates(full_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(full_run / "final")
    tokenizer = AutoTokenizer.from_pretrained(full_run / "final")
    prompt = tokenizer(data.alpaca_prompt(Record("What is 2+2?")), return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 4
    assert model.config.vocab_size == len(tokenizer) == 49152


@pytest.mark.slow
def test_an_interrupted_then_resumed_run_follows_the_uninterrupted_one(full_run, data_file, tokenizer_dir,
                                                                       tmp_path):
    out = tmp_path / "resumed"
    first = torchrun(tiny_args(data_file, tokenizer_dir, out, "stop_after=7"))
    assert first.returncode == 0, first.stderr[-3000:]
    assert [r["step"] for r in metrics(out)] == list(range(1, 8)) and not (out / "final").exists()
    second = torchrun(tiny_args(data_file, tokenizer_dir, out, "stop_after=7", "--resume"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed at step 7" in second.stderr + second.stdout

    whole, resumed = metrics(full_run), metrics(out)
    assert [r["step"] for r in resumed] == list(range(1, 17))
    for a, b in zip(whole, resumed):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5) and b["lr"] == pytest.approx(a["lr"], abs=1e-12)
    from safetensors.torch import load_file

    expected = load_file(full_run / "final" / "model.safetensors")
    got = load_file(out / "final" / "model.safetensors")
    assert expected.keys() == got.keys()
    assert max((expected[k] - got[k]).abs().max().item() for k in expected) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("bad, message", [
    ("precision=fp16", "precision=fp16 needs a CUDA GPU; on CPU use precision=fp32 (or precision=bf16)"),
    ("lr=[", dict(MALFORMED)["lr=["]),
    ("micro_batch_size=abc", dict(MALFORMED)["micro_batch_size=abc"]),
], ids=["fp16-on-cpu", "unparseable", "wrong-type"])
def test_under_torchrun_a_bad_input_is_one_error_line_from_rank_0_and_no_rank_hangs(data_file, tokenizer_dir,
                                                                                    tmp_path, bad, message):
    result = torchrun(tiny_args(data_file, tokenizer_dir, tmp_path / "o", bad), timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {message}"]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr.split("Error:")[0]


# Under torchrun the first rank to exit makes the agent stop the others. These wrap the recipe's
# main so that one rank is slow: whichever rank gets there first, the user sees the error.
SLOW_RANK_MAIN = """
import os, sys, time
from selfinstruct.errors import UsageError
from selfinstruct.train_sft import runtime, train
runtime.ERROR_WAIT_S = {wait}
rank = os.environ["RANK"]
if rank == {slow!r}:
    time.sleep(4)
if {only_rank_1_fails} and rank == "0":
    time.sleep(120)                  # rank 0 carries on (as if training) while rank 1 fails alone
    sys.exit(0)
if {only_rank_1_fails}:
    train.prepare = lambda argv: (_ for _ in ()).throw(UsageError("rank 1's own trouble"))
sys.exit(train.main())
"""


@pytest.mark.slow
def test_under_torchrun_a_bad_input_is_shown_even_when_rank_0_is_the_last_to_fail(tmp_path):
    script = tmp_path / "slow_rank_0.py"
    script.write_text(SLOW_RANK_MAIN.format(slow="0", only_rank_1_fails=False, wait=60))
    result = torchrun(["train_sft/configs/tiny-cpu.yaml", "data=d.json", "lr=["], timeout=120, script=str(script))
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {dict(MALFORMED)['lr=[']}"]
    assert result.returncode != 0


@pytest.mark.slow
def test_under_torchrun_an_error_of_rank_1_alone_is_printed_by_rank_1_after_waiting_for_rank_0(tmp_path):
    script = tmp_path / "rank_1_fails.py"
    script.write_text(SLOW_RANK_MAIN.format(slow=None, only_rank_1_fails=True, wait=3))
    result = torchrun(["train_sft/configs/tiny-cpu.yaml"], timeout=120, script=str(script))
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: rank 1: rank 1's own trouble"]
    assert result.returncode != 0


# launch.sh's --check step refuses these before torchrun starts (no worker, no model): not slow.
@pytest.mark.parametrize("bad, message", [
    ("lrr=1", "unknown config key 'lrr' in override 'lrr=1'; did you mean 'lr'?"),
    ("lr=[", dict(MALFORMED)["lr=["]),
    ("shuffled", "'shuffled': one config file only (settings are key=value)"),
], ids=["unknown-key", "unparseable", "no-equals"])
def test_launch_sh_stops_a_bad_input_before_torchrun_with_one_line_and_exit_2(data_file, tokenizer_dir,
                                                                             tmp_path, bad, message):
    result = subprocess.run(["bash", LAUNCH, *tiny_args(data_file, tokenizer_dir, tmp_path / "o", bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env={**_env(), "NPROC": "2"})
    assert (result.returncode, result.stderr) == (2, f"Error: {message}\n")
    assert not (tmp_path / "o").exists()


# --- the loop's prefetch ----------------------------------------------------------------------------


def test_the_prefetched_step_tensors_are_the_ones_the_step_asks_for(tokenizer_dir, data_file, tmp_path):
    import torch

    from selfinstruct.train_sft.train import Runtime, StepLoader, prepare

    plan, _ = prepare(["tiny-cpu", f"data={data_file}", f"out={tmp_path}", f"tokenizer={tokenizer_dir}",
                       "global_batch_size=4", "micro_batch_size=1", "epochs=3", "max_steps=5"])
    rt = Runtime(rank=1, world=2, device=torch.device("cpu"), log=lambda msg: None)
    loader = StepLoader(plan, rt)
    lengths = [len(e.input_ids) for e in plan.examples]
    try:
        for index in [0, 1, 2, 4, 3]:            # in order, then out of order (a resume starts anywhere)
            batch = loader.get(index)
            epoch, position = divmod(index, plan.steps_per_epoch)
            step = data.plan_epoch(lengths, epoch, 42, 4, 1, True)[position]
            expected = data.rank_micro_batches(plan.examples, step, 1, 2, plan.tokenizer.pad_token_id)
            assert (batch.index, batch.epoch) == (index, epoch)
            assert len(batch.micro_batches) == len(expected) == 2
            for got, want in zip(batch.micro_batches, expected):
                assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
            assert batch.supervised == sum(plan.examples[i].supervised for mb in step for i in mb)
            assert batch.tokens == sum(lengths[i] for mb in step for i in mb)
            # the next step is already being built; none after the last
            assert (loader.upcoming.result().index if loader.upcoming else None) == (
                index + 1 if index + 1 < plan.total_steps else None)
    finally:
        loader.close()


# --- metrics.jsonl on resume --------------------------------------------------------------------------


def test_on_resume_metrics_keep_the_rows_up_to_the_checkpoint_and_drop_a_torn_last_line(tmp_path):
    from selfinstruct.train_sft.metrics import MetricsLog

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 10.0 / s, "note": "第" + str(s) + "步"} for s in range(1, 6)]
    # killed while writing step 6: the line has no end
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "lo', encoding="utf-8")
    log = MetricsLog(str(path), resume_step=4)
    log.write({"step": 5, "loss": 0.5})
    log.close()
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == rows[:4] + [
        {"step": 5, "loss": 0.5}]


def test_on_resume_a_damaged_metrics_line_before_the_last_is_an_error_naming_it(tmp_path):
    from selfinstruct.train_sft.metrics import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n{"step": 3, "loss": 1.0}\n', encoding="utf-8")
    with pytest.raises(InputError) as e:
        MetricsLog(str(path), resume_step=3)
    assert str(e.value).startswith(f"{path}:2: not a metrics row (")
    assert path.read_text(encoding="utf-8").count("\n") == 3            # left as it was


def test_a_fresh_run_starts_an_empty_metrics_file(tmp_path):
    from selfinstruct.train_sft.metrics import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n', encoding="utf-8")
    MetricsLog(str(path), resume_step=None).close()
    assert path.read_text(encoding="utf-8") == ""


# --- one optimisation step, in-process (no process group: a plain module standing in for FSDP's) -------


class _RecordingLM:
    """A tiny causal LM with FSDP2's ``set_requires_gradient_sync``, recording each call."""

    def __init__(self, vocab: int = 11, width: int = 8):
        import torch

        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Embedding(vocab, width), torch.nn.Linear(width, vocab))
        self.sync_calls: list[bool] = []

    def set_requires_gradient_sync(self, requires: bool) -> None:
        self.sync_calls.append(requires)

    def parameters(self):
        return self.net.parameters()

    def __call__(self, input_ids, use_cache=None, position_ids=None):
        from types import SimpleNamespace

        assert use_cache is False
        return SimpleNamespace(logits=self.net(input_ids))


def test_a_step_syncs_gradients_only_on_its_last_micro_batch_and_weighs_every_token_alike():
    import torch
    import torch.nn.functional as F
    from types import SimpleNamespace

    from selfinstruct.train_sft.train import Run, Runtime, StepBatch, optimisation_step

    model = _RecordingLM()
    micro_batches = [  # three micro-batches with 1, 4 and 2 supervised tokens after the shift
        {"input_ids": torch.tensor([[1, 2, 3]]), "labels": torch.tensor([[-100, -100, 3]])},
        {"input_ids": torch.tensor([[4, 5, 6, 7, 8]]), "labels": torch.tensor([[-100, 5, 6, 7, 8]])},
        {"input_ids": torch.tensor([[9, 1, 2], [3, 4, 0]]),
         "labels": torch.tensor([[-100, -100, 2], [-100, 4, -100]])},
    ]
    reference = [p.detach().clone().requires_grad_() for p in model.parameters()]
    optimizer = torch.optim.SGD(list(model.parameters()), lr=0.1)
    run = Run(None, model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
              torch.amp.GradScaler("cpu", enabled=False), step=0, trainable=0, total=0, peak_flops=None)
    plan = SimpleNamespace(config=SimpleNamespace(grad_clip=1e9))
    rt = Runtime(rank=0, world=1, device=torch.device("cpu"), log=lambda msg: None)
    loss_sum, grad_norm, lr = optimisation_step(plan, rt, run, StepBatch(0, 0, micro_batches, 7, 13))

    assert model.sync_calls == [False, False, True] and run.step == 1 and lr == 0.1
    # The reference: the mean over the step's 7 tokens, not the mean of the 3 micro-batch means.
    embedding, linear_w, linear_b = reference
    token_losses = []
    for mb in micro_batches:
        logits = F.linear(F.embedding(mb["input_ids"], embedding), linear_w, linear_b)
        token_losses.append(F.cross_entropy(logits[:, :-1].flatten(0, 1), mb["labels"][:, 1:].flatten(),
                                            ignore_index=-100, reduction="sum"))
    mean = sum(token_losses) / 7
    mean.backward()
    assert loss_sum.item() == pytest.approx(sum(t.item() for t in token_losses), rel=1e-6)
    assert loss_sum.item() / 7 != pytest.approx(sum(t.item() / n for t, n in zip(token_losses, [1, 4, 2])) / 3)
    expected_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in reference))
    assert grad_norm.item() == pytest.approx(expected_norm.item(), rel=1e-5)
    for trained, start in zip(model.parameters(), reference):
        assert torch.allclose(trained, start.detach() - 0.1 * start.grad, atol=1e-7)
