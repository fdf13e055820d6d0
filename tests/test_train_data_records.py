"""train_sft's data loading on records.jsonl: the same examples as the run's Alpaca data.json, and
errors that name the line in the training file and where the record was first read.

The tokenizer is a byte-level BPE trained here on a few sentences (English and Chinese), so these
tests need transformers (the ``train`` extra) but no model file and no download."""
from __future__ import annotations

import json

import pytest

from selfinstruct.curate import run_filter
from selfinstruct.errors import InputError
from selfinstruct.generate import Settings, run_generate
from selfinstruct.record import Record
from selfinstruct.train_sft import data
from tests.sim_teacher import ScriptedTeacher

pytestmark = pytest.mark.train

CORPUS = ["Below is an instruction that describes a task. Write a response that appropriately completes "
          "the request.", "### Instruction: ### Input: ### Response:", "Each has its own charm and purpose.",
          "请介绍山水花鸟的特点。它们各有特色，值得一看。"]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    # A BOS on the prompt, as LLaMA's tokenizer adds: the records and the Alpaca file must agree on it too.
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bpe.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return tokenizer


def tokens(examples):
    return [(e.input_ids, e.labels, e.prompt_tokens, e.truncated) for e in examples]


@pytest.fixture(scope="module", params=[("en", "self-instruct"), ("zh", "alpaca")], ids=["en", "zh"])
def run(request, tmp_path_factory):
    """A generate run and a filter run of its records.jsonl."""
    lang, recipe = request.param
    folder = tmp_path_factory.mktemp(f"run_{lang}")
    run_generate(Settings(num=6, out=str(folder / "gen"), lang=lang, recipe=recipe, progress=False),
                 ScriptedTeacher(lang=lang))
    run_filter([str(folder / "gen" / "records.jsonl")], str(folder / "filtered"), progress=False)
    return folder


@pytest.mark.parametrize("template", ["alpaca", "chat"])
@pytest.mark.parametrize("step", ["gen", "filtered"])
def test_records_jsonl_gives_the_same_examples_as_the_alpaca_data_json(run, tokenizer, step, template):
    records_file, data_file = str(run / step / "records.jsonl"), str(run / step / "data.json")
    from_records, skipped = data.load_examples(records_file, tokenizer, template, 512)
    from_alpaca, _ = data.load_examples(data_file, tokenizer, template, 512)
    assert len(from_records) == len(json.load(open(data_file, encoding="utf-8"))) > 0 and skipped == []
    assert tokens(from_records) == tokens(from_alpaca)
    assert [e.origin for e in from_records] == [f"{records_file}:{i}" for i in range(1, len(from_records) + 1)]


def test_a_filtered_records_file_remembers_where_each_record_was_first_read(run, tokenizer):
    records_file = str(run / "filtered" / "records.jsonl")
    examples, _ = data.load_examples(records_file, tokenizer, "alpaca", 512)
    first_read = [json.loads(line)["source"] for line in open(records_file, encoding="utf-8")]
    assert [e.source for e in examples] == first_read
    assert all(s.startswith(str(run / "gen" / "records.jsonl") + ":") for s in first_read)
    # Read for the first time, the record's own line is its source: nothing to add.
    fresh, _ = data.load_examples(str(run / "gen" / "records.jsonl"), tokenizer, "alpaca", 512)
    assert {e.source for e in fresh} == {""}


def test_a_record_without_output_names_its_line_here_and_where_it_was_first_read(run, tokenizer, tmp_path):
    rows = [json.loads(line) for line in open(run / "filtered" / "records.jsonl", encoding="utf-8")]
    rows[1]["output"] = "  "
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(InputError) as info:
        data.load_examples(str(path), tokenizer, "alpaca", 512)
    assert str(info.value) == (f"{path}:2: record has no output to train on (expected Alpaca records: instruction, "
                               f"input, output) (first read at {rows[1]['source']})")


def test_a_prompt_that_fills_max_length_names_both_places(run, tokenizer, tmp_path):
    rows = [json.loads(line) for line in open(run / "filtered" / "records.jsonl", encoding="utf-8")]
    rows[0]["instruction"] += " Please answer" * 80
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    # Room for every other record's prompt and a few response tokens, not for the long one's prompt.
    limit = 4 + max(len(tokenizer(data.alpaca_prompt(Record(r["instruction"], r["input"])))["input_ids"])
                    for r in rows[1:])
    with pytest.raises(InputError) as info:
        data.load_examples(str(path), tokenizer, "alpaca", limit)
    assert str(info.value).startswith(f"{path}:1: the prompt fills max_length={limit} tokens")
    assert str(info.value).endswith(f"set too_long=skip (first read at {rows[0]['source']})")
    _, skipped = data.load_examples(str(path), tokenizer, "alpaca", limit, too_long="skip")
    assert skipped == [f"{path}:1"]
