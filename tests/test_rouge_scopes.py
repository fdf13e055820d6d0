"""ROUGE-L novelty for evolved and grounded records (ISSUE-NOTES §13): an evolved record is compared
with the pool except its ancestors; a task grounded in a document chunk only with the tasks of the
same chunk. Decisions are checked against rouge-score's own ``_score_lcs`` over the whole pool, in
``generate``'s chain and through ``selfinstruct filter`` alike."""
import json
import random

import pytest
from rouge_score import rouge_scorer

from filters.rouge import RougeNovelty
from selfinstruct.record import Record
from selfinstruct.text import tokens


def evolved(text: str, *ancestors: str) -> Record:
    return Record(instruction=text, meta={"lineage": {"parent": "p", "operation": "deepen", "round": 1,
                                                      "ancestors": list(ancestors)}})


def grounded(text: str, chunk: str) -> Record:
    return Record(instruction=text, meta={"chunk": chunk})


def rouge_with(seeds, threshold=0.7):
    f = RougeNovelty(threshold)
    for s in seeds:
        f.add(Record(instruction=s))
    return f


PARENT = "Write a short poem about the sea."
OTHER = "List five common kitchen tools and explain their uses."


def test_an_evolved_record_close_to_its_parent_is_kept_and_one_close_to_a_stranger_is_not():
    f = rouge_with([PARENT, OTHER])
    close_to_parent = "Write a short poem about the sea in exactly four lines."
    assert f.check(Record(instruction=close_to_parent)) is not None           # without its lineage
    assert f.check(evolved(close_to_parent, PARENT)) is None
    stranger = "List five common kitchen tools and explain their uses to a child."
    verdict = f.check(evolved(stranger, PARENT))
    assert verdict.reason == "rouge_too_similar" and verdict.detail.endswith(OTHER)


def test_every_copy_of_an_ancestor_text_is_left_out_and_chinese_works_the_same():
    parent = "写一首关于大海的短诗。"
    f = rouge_with([parent, "列出五种常见的厨房工具。", parent])
    child = evolved("写一首关于大海的短诗，只写四行。", parent)
    assert f.check(child) is None
    f.add(child)
    grandchild = evolved("写一首关于大海的短诗，只写四行，并押韵。", parent, child.instruction)
    assert f.check(grandchild) is None
    # a sibling lineage is not an ancestor: it counts
    assert f.check(evolved("写一首关于大海的短诗，只写四行。", "另一个任务")).reason == "rouge_too_similar"


def _oracle(record: Record, pool: list[str]) -> bool:
    """rejected? by rouge-score over the pool except the record's ancestors"""
    ancestors = set(record.meta["lineage"]["ancestors"])
    new = tokens(record.instruction)
    return any(rouge_scorer._score_lcs(new, tokens(p)).fmeasure > 0.7 for p in pool if p not in ancestors)


def _mutated(rng, toks, vocab, changes):
    toks = list(toks)
    for _ in range(changes):
        toks[rng.randrange(len(toks))] = rng.choice(vocab)
    return toks


@pytest.mark.parametrize("words, clusters, queries", [(8, 60, 150), (14, 60, 150), (60, 10, 40)])
def test_exclusion_decides_exactly_as_rouge_score_over_the_rest_of_the_pool(words, clusters, queries):
    """Clusters of five near-copies: leaving out a parent and some of its cluster sometimes leaves a
    close sibling (rejected) and sometimes none (kept)."""
    rng = random.Random(words)
    vocab = [f"w{i}" for i in range(40)]
    groups = []
    for _ in range(clusters):
        base = [rng.choice(vocab) for _ in range(words)]
        groups.append([" ".join(_mutated(rng, base, vocab, rng.randint(0, max(1, words // 5)))) for _ in range(5)])
    pool = [text for group in groups for text in group]
    f = rouge_with(pool)
    outcomes = []
    for _ in range(queries):
        group = rng.choice(groups)
        parent = rng.choice(group)
        ancestors = rng.sample(group, rng.randint(0, 5)) + [parent]
        record = evolved(" ".join(_mutated(rng, parent.split(), vocab, rng.randint(0, 2))), *ancestors)
        want = _oracle(record, pool)
        assert (f.check(record) is not None) == want, record.instruction
        outcomes.append(want)
    assert any(outcomes) and not all(outcomes)     # both happen, so the comparison means something


def test_exclusion_holds_where_every_pool_item_is_compared():
    """At threshold 0 any shared token rejects, and the index compares the query with every item
    (no positional tables): the ancestors must stay out there too."""
    f = rouge_with([PARENT, OTHER], threshold=0.0)
    assert f.check(evolved("Write a poem.", PARENT)) is None
    assert f.check(evolved("Write a list.", PARENT)).detail.endswith(OTHER)


def test_tasks_of_two_chunks_are_two_tasks_and_near_copies_on_one_chunk_are_not():
    f = rouge_with(["Summarize the passage."])                 # a seed: not a chunk's task
    kept = []
    for r in [grounded("Summarize the passage.", "a.md:0"), grounded("Summarize the passage.", "b.md:1200"),
              grounded("What year did the bridge open?", "a.md:0"),
              grounded("In what year did the bridge open?", "a.md:0"),
              grounded("总结这段文字。", "文章.txt:0"), grounded("请总结这段文字。", "文章.txt:0")]:
        verdict = f.check(r)
        if verdict is None:
            f.add(r)
            kept.append((r.instruction, r.meta["chunk"]))
        else:
            assert verdict.reason == "rouge_too_similar"
    assert kept == [("Summarize the passage.", "a.md:0"), ("Summarize the passage.", "b.md:1200"),
                    ("What year did the bridge open?", "a.md:0"), ("总结这段文字。", "文章.txt:0")]


def test_filter_honours_lineage_and_chunks_in_records_it_reads(invoke_cli, tmp_path, read_jsonl):
    rows = [Record(instruction=PARENT, id="p1"),
            evolved("Write a short poem about the sea in exactly four lines.", PARENT),
            Record(instruction="Write a short poem about the sea in four lines."),      # no lineage
            grounded("Summarize the passage.", "a.md:0"), grounded("Summarize the passage.", "b.md:0"),
            grounded("Please summarize the passage.", "b.md:0")]
    for r in rows:
        r.output = "An answer long enough to pass the quality rules of the default set, surely."
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    result = invoke_cli("filter", src, "--out", tmp_path / "out", "--only", "rouge", "--no-report", "--no-progress")
    assert result.exit_code == 0, result.output
    kept = [(r["instruction"], (r.get("meta") or {}).get("chunk")) for r in read_jsonl(tmp_path / "out" / "records.jsonl")]
    assert kept == [(PARENT, None), ("Write a short poem about the sea in exactly four lines.", None),
                    ("Summarize the passage.", "a.md:0"), ("Summarize the passage.", "b.md:0")]
