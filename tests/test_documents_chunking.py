"""Reading documents and cutting them into chunks (selfinstruct.documents): exact offsets, sizes in
tokens (words; Han characters), cuts at paragraphs and sentences, overlap, and every way a
document can be wrong (binary, unreadable, not a document, a JSONL row without its text)."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfinstruct.documents import (LONG_TOKEN_CHARS, chunk_text, count_tokens, find_files, load_chunks,
                                    read_documents, split_paths, token_spans)
from selfinstruct.errors import InputError, UsageError
from selfinstruct.text import tokens

EN_SENTENCES = [
    "The river rises in the northern hills and runs south for two hundred kilometres.",
    "Its valley was settled early because the soil is rich and the water reliable.",
    "In the spring the snowmelt raises the water by several metres within a week.",
    "Farmers built stone walls along the banks to protect their fields from floods.",
    "A railway reached the valley in 1887 and the first bridge opened two years later.",
    "Today the river supplies drinking water to three towns and a small paper mill.",
]
ZH_SENTENCES = [
    "这条河发源于北部山区，向南流淌两百多公里。",
    "河谷土地肥沃，水源稳定，所以很早就有人定居。",
    "每年春天，融雪会在一周之内使水位上涨好几米。",
    "农民沿着河岸修筑石墙，保护田地不被洪水淹没。",
    "一八八七年铁路通到河谷，两年后第一座桥建成。",
    "如今这条河为三个城镇和一家小造纸厂供水。",
]


def en_text(paragraphs: int = 4, per: int = 6) -> str:
    return "\n\n".join(" ".join(EN_SENTENCES[(p + i) % 6] for i in range(per)) for p in range(paragraphs))


def zh_text(paragraphs: int = 4, per: int = 6) -> str:
    return "\n\n".join("".join(ZH_SENTENCES[(p + i) % 6] for i in range(per)) for p in range(paragraphs))


def spans_of(text, chunks):
    return [(off, off + len(c)) for off, c, _ in chunks]


def check_chunks(text, chunks, size, overlap):
    """What every chunking must satisfy: exact offsets, sizes, order, overlap, every token covered."""
    assert chunks
    spans = token_spans(text)
    covered = set()
    for i, (off, piece, n) in enumerate(chunks):
        assert text[off:off + len(piece)] == piece
        assert piece == piece.strip() and piece
        assert n == count_tokens(piece) and 1 <= n <= size
        if i < len(chunks) - 1:
            assert n >= (size + 1) // 2            # only the last chunk may be short
        covered |= {j for j, (a, b) in enumerate(spans) if off <= a and b <= off + len(piece)}
    assert covered == set(range(len(spans)))
    for (a_off, a, _), (b_off, b, _) in zip(chunks, chunks[1:]):
        assert a_off < b_off                        # always forward
        shared = max(0, a_off + len(a) - b_off)
        assert count_tokens(text[b_off:b_off + shared]) <= overlap


# -- sizes and boundaries ------------------------------------------------------------------------


def test_english_chunks_end_at_sentences_and_overlap_by_whole_sentences():
    text = en_text(paragraphs=1, per=24)          # one paragraph of 24 sentences (~14 words each)
    chunks = chunk_text(text, chunk_tokens=60, overlap_tokens=20)
    check_chunks(text, chunks, 60, 20)
    assert len(chunks) > 3
    for _, piece, _ in chunks:
        assert piece.endswith(".")                  # cut after a sentence, never inside one
        assert piece[0].isupper()                   # and started at one
    # consecutive chunks share a sentence: the overlap starts at a sentence within its budget
    for (a_off, a, _), (b_off, _, _) in zip(chunks, chunks[1:]):
        assert b_off < a_off + len(a)


def test_chinese_counts_one_token_per_character_and_cuts_after_the_full_stop():
    text = zh_text(paragraphs=1, per=30)
    assert count_tokens(text) == len(tokens(text))      # the same count as ROUGE's tokens
    assert count_tokens("河流发源于北部") == 7
    chunks = chunk_text(text, chunk_tokens=80, overlap_tokens=20)
    check_chunks(text, chunks, 80, 20)
    assert len(chunks) > 5
    for _, piece, _ in chunks:
        assert piece.endswith("。")
    assert all(b_off < a_off + len(a) for (a_off, a, _), (b_off, _, _) in zip(chunks, chunks[1:]))


def test_mixed_chinese_and_english_counts_both_and_keeps_offsets():
    text = "\n\n".join(f"{ZH_SENTENCES[i % 6]}The GDP grew 3.5% in {1990 + i}. 数据来自 World Bank。"
                       for i in range(20))
    assert count_tokens("数据来自 World Bank。") == 6
    chunks = chunk_text(text, chunk_tokens=50, overlap_tokens=10)
    check_chunks(text, chunks, 50, 10)


def test_a_paragraph_break_wins_over_a_sentence_end_near_the_limit():
    para1 = " ".join(EN_SENTENCES[:3])               # 44 tokens
    para2 = " ".join(EN_SENTENCES[3:])
    text = para1 + "\n\n" + para2
    chunks = chunk_text(text, chunk_tokens=60, overlap_tokens=0)
    assert chunks[0] == (0, para1, count_tokens(para1))
    assert chunks[1][1] == para2 and chunks[1][0] == text.index(para2)


def test_without_overlap_chunks_tile_the_text():
    text = en_text(paragraphs=3, per=7)
    chunks = chunk_text(text, chunk_tokens=45, overlap_tokens=0)
    check_chunks(text, chunks, 45, 0)
    assert sum(n for _, _, n in chunks) == count_tokens(text)
    for (a_off, a, _), (b_off, _, _) in zip(chunks, chunks[1:]):
        assert text[a_off + len(a):b_off].strip() == ""     # nothing but white space between them


def test_a_short_text_is_one_chunk_and_no_text_is_none():
    assert chunk_text("  Rivers shape valleys.\n", 400, 50) == [(2, "Rivers shape valleys.", 3)]
    assert chunk_text("", 400, 50) == []
    assert chunk_text(" \n\n\t ", 400, 50) == []
    assert chunk_text("... --- !!!", 400, 50) == []       # punctuation only: nothing to ask about


def test_a_text_without_sentence_ends_is_still_cut_within_the_limit():
    text = " ".join(f"word{i}" for i in range(500))          # no punctuation at all
    chunks = chunk_text(text, chunk_tokens=100, overlap_tokens=10)
    check_chunks(text, chunks, 100, 10)
    # Chinese characters without punctuation: cut between characters
    zh = "河流山川湖泊" * 100
    check_chunks(zh, chunk_text(zh, 70, 5), 70, 5)


def test_a_long_run_of_letters_counts_one_token_per_piece_so_chunks_stay_bounded():
    blob = "a" * (LONG_TOKEN_CHARS * 40)
    assert count_tokens(blob) == 40
    chunks = chunk_text("Start. " + blob + " End.", chunk_tokens=10, overlap_tokens=0)
    check_chunks("Start. " + blob + " End.", chunks, 10, 0)
    assert max(len(c) for _, c, _ in chunks) <= 10 * LONG_TOKEN_CHARS + 10


def test_decimal_points_and_abbreviations_inside_words_are_not_sentence_ends():
    text = ("Pi is about 3.14159 and e is about 2.71828 in value. " * 30).strip()
    chunks = chunk_text(text, chunk_tokens=30, overlap_tokens=0)
    check_chunks(text, chunks, 30, 0)
    assert all(c.endswith("value.") for _, c, _ in chunks[:-1])


def test_sizes_are_checked():
    with pytest.raises(UsageError, match="chunk_tokens"):
        chunk_text("a b c", 0, 0)
    with pytest.raises(UsageError, match="overlap_tokens"):
        chunk_text("a b c", 100, 50)
    with pytest.raises(UsageError, match="overlap_tokens"):
        chunk_text("a b c", 100, -1)


_PIECES = st.sampled_from(["river", "valley", "3.14", "don't", "e.g.", "河", "流", "山", "。", "，", "！", ".", ",",
                           "?", " ", " ", " ", "\n", "\n\n", "“", "”", "(", ")", "-", "Z" * 40, "\ufeff", "\r\n"])


@settings(max_examples=150, deadline=None)
@given(st.lists(_PIECES, max_size=300), st.integers(1, 40), st.integers(0, 19))
def test_any_text_chunks_with_exact_offsets_bounded_sizes_and_full_coverage(pieces, size, overlap):
    text = "".join(pieces)
    overlap = min(overlap, max(0, (size + 1) // 2 - 1))
    chunks = chunk_text(text, size, overlap)
    if count_tokens(text) == 0:
        assert chunks == []
    else:
        check_chunks(text, chunks, size, overlap)


# -- reading files ---------------------------------------------------------------------------------


def test_offsets_index_the_file_as_read_crlf_and_bom_included(tmp_path):
    path = tmp_path / "notes.txt"
    body = "\ufeff" + "\r\n\r\n".join(" ".join(EN_SENTENCES[i:i + 3]) for i in range(0, 6, 3)) * 5
    path.write_bytes(body.encode("utf-8"))
    corpus = load_chunks([str(path)], chunk_tokens=40, overlap_tokens=8)
    with open(path, encoding="utf-8", newline="") as f:
        as_read = f.read()
    assert len(corpus.chunks) > 2
    for c in corpus.chunks:
        assert as_read[c.offset:c.offset + len(c.text)] == c.text
        assert c.citation == f"{path}:{c.offset}" and c.line is None
        assert not c.text.startswith("\ufeff")


def test_an_empty_file_gives_no_chunks(tmp_path):
    (tmp_path / "empty.md").write_text("", encoding="utf-8")
    (tmp_path / "a.md").write_text("# Rivers\n\nRivers shape valleys.", encoding="utf-8")
    corpus = load_chunks([str(tmp_path)], 400, 50)
    assert [c.path for c in corpus.chunks] == [str(tmp_path / "a.md")]
    assert corpus.documents == 2 and corpus.files == 2
    assert corpus.chunks[0].text == "# Rivers\n\nRivers shape valleys."


def test_a_binary_file_is_an_input_error_naming_it(tmp_path):
    path = tmp_path / "scan.txt"
    path.write_bytes(b"GIF89a\x00\x01\x02text")
    with pytest.raises(InputError) as e:
        read_documents(str(path))
    assert str(path) in str(e.value) and "binary" in str(e.value)
    latin1 = tmp_path / "old.txt"
    latin1.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(InputError, match=r"old\.txt: not UTF-8 text \(byte 3\)"):
        read_documents(str(latin1))


def test_an_unreadable_file_in_a_folder_is_an_input_error_naming_it(tmp_path):
    (tmp_path / "good.txt").write_text("Rivers shape valleys.", encoding="utf-8")
    os.symlink(tmp_path / "gone.txt", tmp_path / "link.txt")        # a dangling link
    with pytest.raises(InputError) as e:
        load_chunks([str(tmp_path)], 400, 50)
    assert str(tmp_path / "link.txt") in str(e.value) and "cannot read" in str(e.value)


def test_a_file_that_is_not_a_document_is_an_input_error_naming_it(tmp_path):
    (tmp_path / "a.txt").write_text("Rivers.", encoding="utf-8")
    (tmp_path / "slides.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(InputError) as e:
        load_chunks([str(tmp_path)], 400, 50)
    assert str(e.value).startswith(f"{tmp_path / 'slides.pdf'}: not a document (documents are .txt, .md")


def test_a_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"--documents .*nowhere: no such file or folder"):
        load_chunks([str(tmp_path / "nowhere")], 400, 50)


def test_folders_are_walked_recursively_in_sorted_order_hidden_entries_left_out(tmp_path):
    for rel in ("b.md", "a/z.txt", "a/b/y.jsonl", "a/a.txt", "c.txt", ".git/config.txt", "a/.notes.txt"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"text": "x"}' if rel.endswith(".jsonl") else "x", encoding="utf-8")
    found = [os.path.relpath(p, tmp_path) for p in find_files([str(tmp_path)])]
    assert found == ["a/a.txt", "a/b/y.jsonl", "a/z.txt", "b.md", "c.txt"]
    # a file named twice (on its own and in its folder) is read once, where it was first named
    again = find_files([str(tmp_path / "c.txt"), str(tmp_path)])
    assert [os.path.relpath(p, tmp_path) for p in again] == ["c.txt", "a/a.txt", "a/b/y.jsonl", "a/z.txt", "b.md"]


def test_split_paths_takes_a_list_or_a_path_separated_string():
    assert split_paths(["a.txt", "notes/"]) == ["a.txt", "notes/"]
    assert split_paths(f"a.txt{os.pathsep}notes/{os.pathsep}") == ["a.txt", "notes/"]
    assert split_paths(None) == [] and split_paths("") == []


# -- JSONL -------------------------------------------------------------------------------------------


def test_jsonl_rows_are_documents_with_line_and_offset_in_the_text(tmp_path, write_jsonl):
    rows = [{"id": 1, "text": en_text(2, 6)}, {"id": 2, "content": "ignored", "text": zh_text(2, 6)},
            {"id": 3, "text": ""}]
    path = write_jsonl(tmp_path / "articles.jsonl", rows)
    corpus = load_chunks([path], chunk_tokens=60, overlap_tokens=10)
    assert corpus.documents == 3
    assert {c.line for c in corpus.chunks} == {1, 2}
    for c in corpus.chunks:
        text = rows[c.line - 1]["text"]
        assert text[c.offset:c.offset + len(c.text)] == c.text
        assert c.citation == f"{path}:{c.line}:{c.offset}"


def test_jsonl_falls_back_to_content_and_takes_a_named_field(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "a.jsonl", [{"content": "Rivers shape valleys."}])
    assert [d.text for d in read_documents(path)] == ["Rivers shape valleys."]
    path = write_jsonl(tmp_path / "b.jsonl", [{"body": "河流塑造山谷。", "text": "not this"}])
    assert [d.text for d in read_documents(path, text_field="body")] == ["河流塑造山谷。"]


def test_a_jsonl_row_without_its_text_is_an_input_error_at_file_and_line(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "fine"}, {"title": "no text here"}])
    with pytest.raises(InputError) as e:
        read_documents(path)
    assert str(e.value) == (f"{path}:2: no 'text' or 'content' field (name the field with "
                            "--opt documents.text_field=NAME)")
    with pytest.raises(InputError, match=r"a\.jsonl:1: no 'body' field$"):
        read_documents(path, text_field="body")


def test_bad_jsonl_rows_are_input_errors_at_their_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.jsonl:3: the 'text' field is int, not text"):
        read_documents(str(path))
    path.write_text('{"text": "ok"}\n["a list"]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.jsonl:2: expected a JSON object"):
        read_documents(str(path))
    path.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.jsonl:2:\d+: invalid JSON"):
        read_documents(str(path))
    path.write_bytes(json.dumps({"text": "ok"}).encode() + b"\n\xff\xfe\n")
    with pytest.raises(InputError, match=r"a\.jsonl:2: not UTF-8 text"):
        read_documents(str(path))
