"""rnnkit.data.labelled_text: reading labelled examples, tokens and vocabulary, stratified splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import one_line

from rnnkit.data.labelled_text import (
    LabelledText,
    Tokenizer,
    Vocab,
    check_examples,
    folds,
    holdout,
    label_ids,
    load_labelled,
    read_folder,
    read_pairs,
    read_table,
)
from rnnkit.errors import RnnkitError

SENTIMENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment"
RT_POS, RT_NEG = SENTIMENT / "rt-polarity.pos", SENTIMENT / "rt-polarity.neg"




def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.fixture(scope="module")
def rt_polarity() -> LabelledText:
    if not (RT_POS.is_file() and RT_NEG.is_file()):
        pytest.skip(f"{SENTIMENT} is absent")
    return load_labelled([f"pos={RT_POS}", f"neg={RT_NEG}"], encoding="cp1252")


# ---------------------------------------------------------------------------- tables


def test_csv_quoted_commas_newlines_bom_and_string_cells(tmp_path):
    p = write(tmp_path / "d.csv", '\ufefftext,label\n"good, really\ngood",1\nNA,0\n"said ""meh""",0\n')
    d = read_table(p)
    assert d.texts == ["good, really\ngood", "NA", 'said "meh"']
    assert d.labels == ["1", "0", "0"]  # labels are strings, "NA" is text, the BOM is not in the header
    assert d.origins == [f"{p} row 1", f"{p} row 2", f"{p} row 3"]


def test_csv_custom_columns_and_cp1252(tmp_path):
    p = write(tmp_path / "d.csv", "id,review,sentiment\n1,caf\xe9 \x85 ok,pos\n2,bad,neg\n".encode("latin-1"))
    d = read_table(p, text_col="review", label_col="sentiment", encoding="cp1252")
    assert d.texts == ["caf\xe9 \u2026 ok", "bad"] and d.labels == ["pos", "neg"]


def test_tsv_keeps_stray_quotes(tmp_path):
    p = write(tmp_path / "d.tsv", 'label\ttext\npos\t"a film\nneg\tit is "fine" , no\n')
    d = read_table(p)
    assert d.texts == ['"a film', 'it is "fine" , no'] and d.labels == ["pos", "neg"]


def test_jsonl_blank_lines_numbers_and_line_origins(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "fine", "label": 1}\n\n{"label": 0, "text": "caf\u00e9"}\r\n')
    d = read_table(p)
    assert d.texts == ["fine", "caf\u00e9"] and d.labels == ["1", "0"]
    assert d.origins == [f"{p} line 1", f"{p} line 3"]


def test_jsonl_errors_name_the_line(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label: 1}\n')
    with pytest.raises(RnnkitError) as e:
        read_table(p)
    assert one_line(e) == (f"{p} line 2 is not valid JSON: Expecting property name enclosed in double quotes "
                           "at column 15")
    p = write(tmp_path / "f.jsonl", '{"text": "a", "label": "x"}\n{"review": "b", "label": 1}\n')
    with pytest.raises(RnnkitError) as e:
        read_table(p)
    assert one_line(e) == (f"no text field 'text' at {p} line 2; its fields are review, label "
                           "(name it with --text-column)")
    p = write(tmp_path / "g.jsonl", '["a", "x"]\n')
    with pytest.raises(RnnkitError) as e:
        read_table(p)
    assert one_line(e) == f"{p} line 1 is a JSON list, not an object with 'text' and 'label'"
    p = write(tmp_path / "h.jsonl", '{"text": null, "label": "x"}\n')
    with pytest.raises(RnnkitError) as e:
        read_table(p)
    assert one_line(e) == f"missing text at {p} line 1"


def test_parquet_numbers_and_gaps(tmp_path):
    p = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["good", "bad", "ok"], "label": [1, 0, 1], "x": [0.5, 1.5, 2.5]}).to_parquet(p)
    d = read_table(p, encoding="cp1252")  # encoding does not apply to Parquet: ignored
    assert d.texts == ["good", "bad", "ok"] and d.labels == ["1", "0", "1"]
    q = tmp_path / "gap.parquet"
    pd.DataFrame({"text": ["good", "bad"], "label": pd.array([1, None], dtype="Int64")}).to_parquet(q)
    with pytest.raises(RnnkitError) as e:
        read_table(q)
    assert one_line(e) == f"missing label at {q} row 2"
    r = write(tmp_path / "broken.parquet", b"PAR1 not really parquet")
    with pytest.raises(RnnkitError) as e:
        read_table(r)
    assert one_line(e).startswith(f"cannot read {r} as Parquet: ")


def test_table_missing_column_names_the_columns_found(tmp_path):
    p = write(tmp_path / "d.csv", "review,stars\ngood,5\n")
    with pytest.raises(RnnkitError) as e:
        read_table(p)
    assert one_line(e) == f"no text column 'text' in {p}; the columns are review, stars (name it with --text-column)"
    with pytest.raises(RnnkitError) as e:
        read_table(p, text_col="review")
    assert one_line(e) == f"no label column 'label' in {p}; the columns are review, stars (name it with --label-column)"
    q = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["a"], "y": ["b"]}).to_parquet(q)
    with pytest.raises(RnnkitError) as e:
        read_table(q)
    assert one_line(e) == f"no label column 'label' in {q}; the columns are text, y (name it with --label-column)"


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_files(tmp_path, content):
    for name in ("d.csv", "d.tsv", "d.jsonl") + (("d.parquet",) if not content else ()):
        p = write(tmp_path / name, content)
        with pytest.raises(RnnkitError) as e:
            read_table(p)
        assert one_line(e) == f"{p} is empty"
    p = write(tmp_path / "pos.txt", content)
    with pytest.raises(RnnkitError) as e:
        read_pairs([f"pos={p}"])
    assert one_line(e) == f"{p} is empty"


def test_header_only_and_ragged_csv(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\n")
    with pytest.raises(RnnkitError) as e:
        read_table(p)
    assert one_line(e) == f"{p} has a header but no rows"
    p = write(tmp_path / "r.csv", "text,label\na,b\nc,d,e\n")
    with pytest.raises(RnnkitError) as e:
        read_table(p)
    assert one_line(e) == f"cannot read {p} as CSV: Error tokenizing data. C error: Expected 2 fields in line 3, saw 3"


def test_unknown_suffix(tmp_path):
    p = write(tmp_path / "d.xlsx", "x")
    with pytest.raises(RnnkitError) as e:
        read_table(p)
    assert one_line(e) == (f"cannot tell the format of {p} from its suffix; use one of .csv, .tsv, .jsonl, .ndjson, "
                           ".parquet, .pq, or give LABEL=FILE pairs for plain text")


# ---------------------------------------------------------------------------- LABEL=FILE and encodings


def test_pairs_cp1252_ellipsis_is_not_a_line_break(tmp_path):
    # 0x85 is an ellipsis in cp1252 and U+0085 (NEL) in Latin-1; str.splitlines breaks at NEL
    pos = write(tmp_path / "good.txt", b"great\x85 film\r\nloved it\n")
    neg = write(tmp_path / "bad.txt", b"dull\nno\x85\n")
    d = read_pairs([f"pos={pos}", f"neg={neg}"], encoding="cp1252")
    assert d.texts == ["great\u2026 film", "loved it", "dull", "no\u2026"]
    assert d.labels == ["pos", "pos", "neg", "neg"]
    assert d.origins[3] == f"{neg} line 2"
    latin = read_pairs({"pos": pos}, encoding="latin-1")
    assert latin.texts == ["great\x85 film", "loved it"]


def test_pairs_without_encoding_name_the_byte_offset(tmp_path):
    p = write(tmp_path / "pos.txt", b"fine\nbad\x85 one\n")
    with pytest.raises(RnnkitError) as e:
        read_pairs([f"pos={p}"])
    assert one_line(e) == f"{p} is not valid UTF-8 at byte offset 8: give its encoding with --encoding (e.g. cp1252)"
    bad = write(tmp_path / "neg.txt", b"ok\n\x81\n")  # 0x81 is unassigned in cp1252
    with pytest.raises(RnnkitError) as e:
        read_pairs([f"neg={bad}"], encoding="cp1252")
    assert one_line(e) == f"{bad} is not valid cp1252 at byte offset 3 (byte 0x81): check --encoding"
    with pytest.raises(RnnkitError) as e:
        read_pairs([f"neg={bad}"], encoding="klingon")
    assert one_line(e) == "unknown encoding 'klingon'"


def test_pair_syntax_and_missing_file(tmp_path):
    for bad in ("posfile.txt", "=file.txt", "pos="):
        with pytest.raises(RnnkitError) as e:
            read_pairs([bad])
        assert one_line(e) == f"expected LABEL=FILE, got {bad!r}"
    with pytest.raises(RnnkitError) as e:
        read_pairs([f"pos={tmp_path / 'nope.txt'}"])
    assert one_line(e) == f"no such file: {tmp_path / 'nope.txt'}"


def test_rt_polarity_reads_one_example_a_line(rt_polarity):
    assert rt_polarity.counts() == {"neg": 5331, "pos": 5331}  # as many as b"\n" bytes in each file
    assert RT_POS.read_bytes().count(b"\n") == 5331
    assert sum("\u2026" in t for t in rt_polarity.texts) > 0 and not any("\x85" in t for t in rt_polarity.texts)


# ---------------------------------------------------------------------------- folders


def test_folder_of_label_folders(tmp_path):
    write(tmp_path / "pos" / "10_9.txt", "ten\n")
    write(tmp_path / "pos" / "2_8.txt", "two\r\nlines\r\n")
    write(tmp_path / "pos" / ".DS_Store", b"\x00\x01")
    write(tmp_path / "neg" / "0_1.txt", "awful")
    write(tmp_path / "unsup" / "0_0.txt", "unlabelled")
    write(tmp_path / "urls_pos.txt", "http://x\n")  # loose files beside label folders are not examples
    d = read_folder(tmp_path)
    assert d.labels == ["neg", "pos", "pos", "unsup"]
    assert d.texts == ["awful", "two\r\nlines", "ten", "unlabelled"]  # 2_8 before 10_9: numeric order
    assert d.origins[1] == str(tmp_path / "pos" / "2_8.txt")
    assert read_folder(tmp_path, labels=["pos", "neg"]).labels == ["neg", "pos", "pos"]
    with pytest.raises(RnnkitError) as e:
        read_folder(tmp_path, labels=["pos", "negative"])
    assert one_line(e) == f"no sub-folder for label 'negative' in {tmp_path}; found neg, pos, unsup"
    (tmp_path / "empty").mkdir()
    with pytest.raises(RnnkitError) as e:
        read_folder(tmp_path)
    assert one_line(e) == f"folder {tmp_path / 'empty'} holds no files"


def test_folder_of_label_files(tmp_path):
    write(tmp_path / "pos.txt", "good\nfine\n")
    write(tmp_path / "neg.txt", "bad")
    d = read_folder(tmp_path)
    assert list(zip(d.labels, d.texts, strict=True)) == [("neg", "bad"), ("pos", "good"), ("pos", "fine")]
    write(tmp_path / "neg.csv", "x")
    with pytest.raises(RnnkitError) as e:
        read_folder(tmp_path)
    assert one_line(e) == f"two files in {tmp_path} give the label 'neg'; rename one"


def test_folder_errors(tmp_path):
    with pytest.raises(RnnkitError) as e:
        read_folder(tmp_path)
    assert one_line(e) == f"folder {tmp_path} holds no sub-folders or files"
    with pytest.raises(RnnkitError) as e:
        read_folder(tmp_path / "nope")
    assert one_line(e) == f"no such folder: {tmp_path / 'nope'}"


# ---------------------------------------------------------------------------- load_labelled and checks


def test_load_labelled_picks_the_reader(tmp_path):
    write(tmp_path / "f" / "pos.txt", "good\n")
    write(tmp_path / "f" / "neg.txt", "bad\n")
    assert load_labelled(tmp_path / "f").labels == ["neg", "pos"]
    assert load_labelled([str(tmp_path / "f")]).labels == ["neg", "pos"]
    t = write(tmp_path / "t.csv", "text,label\ngood,pos\nbad,neg\n")
    assert load_labelled(t).labels == ["pos", "neg"]
    pairs = [f"pos={tmp_path / 'f' / 'pos.txt'}", f"neg={tmp_path / 'f' / 'neg.txt'}"]
    assert load_labelled(pairs).texts == ["good", "bad"]
    with pytest.raises(RnnkitError) as e:
        load_labelled([str(t), pairs[0]])
    assert one_line(e) == f"expected one table file, one folder, or LABEL=FILE pairs; got {str(t)!r} among 2 sources"
    with pytest.raises(RnnkitError) as e:
        load_labelled(tmp_path / "missing")
    assert one_line(e) == f"no such file or folder: {tmp_path / 'missing'}"
    with pytest.raises(RnnkitError) as e:
        load_labelled([])
    assert one_line(e) == "no data given: name a table file, a folder, or LABEL=FILE pairs"


def test_checks_empty_text_names_the_line(tmp_path):
    pos = write(tmp_path / "pos.txt", "good\n  \nfine\n")
    neg = write(tmp_path / "neg.txt", "bad\n")
    with pytest.raises(RnnkitError) as e:
        load_labelled([f"pos={pos}", f"neg={neg}"])
    assert one_line(e) == f"empty text at {pos} line 2; remove the line or give it text"
    t = write(tmp_path / "t.csv", "text,label\ngood,pos\n,neg\n")
    with pytest.raises(RnnkitError) as e:
        load_labelled(t)
    assert one_line(e) == f"empty text at {t} row 2; remove the line or give it text"
    t = write(tmp_path / "u.csv", "text,label\ngood,pos\nbad,\n")
    with pytest.raises(RnnkitError) as e:
        load_labelled(t)
    assert one_line(e) == f"empty label at {t} row 2"


def test_checks_length_cap_names_the_line(tmp_path):
    pos = write(tmp_path / "pos.txt", "good\n" + "x" * 31 + "\n")
    neg = write(tmp_path / "neg.txt", "bad\n")
    with pytest.raises(RnnkitError) as e:
        load_labelled([f"pos={pos}", f"neg={neg}"], max_chars=30)
    assert one_line(e) == f"text at {pos} line 2 is 31 characters long, over the cap of 30; raise it with --max-chars"
    assert len(load_labelled([f"pos={pos}", f"neg={neg}"], max_chars=31)) == 3
    # examples already in memory are checked, but not capped: the cap guards reading files, and a run
    # on examples read with a higher --max-chars (cross-validation's folds) must not be refused
    held = load_labelled([f"pos={pos}", f"neg={neg}"], max_chars=31)
    assert load_labelled(held, max_chars=30) is held
    with pytest.raises(RnnkitError, match="empty text at example 2"):
        load_labelled(LabelledText(["good", " "], ["pos", "neg"]))


def test_checks_single_class(tmp_path):
    pos = write(tmp_path / "pos.txt", "good\nfine\n")
    with pytest.raises(RnnkitError) as e:
        load_labelled([f"pos={pos}"])
    assert one_line(e) == "2 examples but only the label 'pos'; a classifier needs at least 2 classes"
    assert load_labelled([f"pos={pos}"], min_classes=1).labels == ["pos", "pos"]  # evaluation data may be one class
    with pytest.raises(RnnkitError) as e:
        check_examples(LabelledText([], []))
    assert one_line(e) == "no examples were read"


def test_label_ids_against_known_classes():
    assert label_ids(["pos", "neg", "pos"], ["neg", "pos"]).tolist() == [1, 0, 1]
    with pytest.raises(RnnkitError) as e:
        label_ids(["pos", "neutral"], ["neg", "pos"], origins=["a.csv row 1", "a.csv row 2"])
    assert one_line(e) == "unknown label 'neutral' at a.csv row 2; the model knows 'neg', 'pos'"
    with pytest.raises(RnnkitError) as e:
        label_ids(["Pos"], ["neg", "pos"])
    assert one_line(e) == "unknown label 'Pos'; the model knows 'neg', 'pos'"


def test_subset_and_classes():
    d = LabelledText(["a", "b", "c"], ["y", "x", "y"])
    assert d.classes == ["x", "y"] and d.counts() == {"x": 1, "y": 2}
    s = d.subset([2, 0])
    assert (s.texts, s.labels, s.origins) == (["c", "a"], ["y", "y"], ["example 3", "example 1"])


# ---------------------------------------------------------------------------- tokens and vocabulary


def test_word_tokenizer():
    tok = Tokenizer()
    assert tok("Don\u2019t miss it -- it's the 21st century's page-turner, 3.5 stars!") == [
        "do", "n't", "miss", "it", "-", "-", "it", "'s", "the", "21st", "century", "'s", "page-turner", ",",
        "3.5", "stars", "!"]
    assert tok("I can't, we'll, they've 'quoted'") == [
        "i", "ca", "n't", ",", "we", "'ll", ",", "they", "'ve", "'", "quoted", "'"]
    assert Tokenizer(lower=False)("DON'T Go") == ["DO", "N'T", "Go"]
    assert tok("caf\u00e9 \u2026 \U0001f600") == ["caf\u00e9", "\u2026", "\U0001f600"]
    assert Tokenizer("char")("Ab c") == ["a", "b", " ", "c"]
    with pytest.raises(RnnkitError) as e:
        Tokenizer("bpe")
    assert one_line(e) == "tokeniser level must be 'word' or 'char', not 'bpe'"


def test_vocab_ids_order_min_count_and_max_size():
    texts = ["b a a", "c a b", "d"]
    v = Vocab.build(texts)
    assert v.itos == ["<pad>", "<unk>", "a", "b", "c", "d"]  # by falling count, ties alphabetical
    assert v.encode("a zz d") == [2, 1, 5] and v.decode([2, 1]) == ["a", "<unk>"]
    assert Vocab.build(texts, min_count=2).itos == ["<pad>", "<unk>", "a", "b"]
    assert Vocab.build(texts, max_size=4).itos == ["<pad>", "<unk>", "a", "b"]  # max_size counts the specials
    assert Vocab.build(["<pad> <unk>"], Tokenizer("char")).itos[:2] == ["<pad>", "<unk>"]
    with pytest.raises(RnnkitError) as e:
        Vocab.build(texts, max_size=2)
    assert one_line(e) == "max vocabulary size must be at least 3 (<pad>, <unk> and a token), not 2"


def test_vocab_json_round_trip_keeps_the_tokenizer(tmp_path):
    v = Vocab.build(["Don't STOP", "Stop now"], Tokenizer(lower=False), min_count=1)
    v.save(tmp_path / "run" / "vocab.json")
    w = Vocab.load(tmp_path / "run" / "vocab.json")
    assert w.itos == v.itos and w.tokenizer == Tokenizer(lower=False)
    assert w.encode("STOP stop Don't") == v.encode("STOP stop Don't") != Vocab.build(["x"]).encode("STOP stop Don't")
    assert json.loads((tmp_path / "run" / "vocab.json").read_text())["tokens"][0] == "Do"
    write(tmp_path / "bad.json", "{not json")
    with pytest.raises(RnnkitError) as e:
        Vocab.load(tmp_path / "bad.json")
    assert one_line(e) == f"{tmp_path / 'bad.json'} is not a JSON vocabulary file"
    write(tmp_path / "other.json", '{"tokens": 3}')
    with pytest.raises(RnnkitError) as e:
        Vocab.load(tmp_path / "other.json")
    assert one_line(e) == (f"{tmp_path / 'other.json'}: not an rnnkit vocabulary (expected format 'rnnkit-vocab' "
                           "with a token list)")


def test_vocab_from_training_fold_only(rt_polarity):
    train, test = folds(rt_polarity.labels, 10, seed=0)[0]
    train, test = train[::4], test[::4]  # a quarter of each part keeps this well under a second
    tok = Tokenizer()
    v = Vocab.build(rt_polarity.subset(train).texts, tok)
    train_tokens = {t for i in train for t in tok(rt_polarity.texts[i])}
    test_only = {t for i in test for t in tok(rt_polarity.texts[i])} - train_tokens
    assert len(test_only) > 50 and len(v) == len(train_tokens) + 2
    assert all(v.encode(t) == [v.unk_id] for t in sorted(test_only))


# ---------------------------------------------------------------------------- splits


def test_folds_are_stratified_disjoint_covering_and_seeded():
    labels = ["a"] * 23 + ["b"] * 7 + ["c"] * 11
    rng = np.random.default_rng(1)
    labels = [labels[i] for i in rng.permutation(len(labels))]
    k = 5
    result = folds(labels, k, seed=3)
    assert len(result) == k
    seen = np.concatenate([test for _, test in result])
    assert sorted(seen.tolist()) == list(range(len(labels)))  # disjoint and covering
    total = Counter(labels)
    for train, test in result:
        assert np.intersect1d(train, test).size == 0 and len(train) + len(test) == len(labels)
        assert np.all(np.diff(test) > 0) and np.all(np.diff(train) > 0)
        per_class = Counter(labels[i] for i in test)
        for c, n in total.items():
            assert per_class[c] in (n // k, -(-n // k)), (c, per_class[c])
    sizes = [len(test) for _, test in result]
    assert max(sizes) - min(sizes) <= 1
    same = folds(labels, k, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(result, same, strict=True))
    other = folds(labels, k, seed=4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(result, other, strict=True))


def test_folds_errors():
    with pytest.raises(RnnkitError) as e:
        folds(["a"] * 10 + ["b"] * 3, 5)
    assert one_line(e) == "class 'b' has 3 example(s), fewer than the 5 folds; lower --folds"
    with pytest.raises(RnnkitError) as e:
        folds(["a", "b"], 1)
    assert one_line(e) == "cross-validation needs at least 2 folds, not 1"


def test_rt_polarity_ten_folds(rt_polarity):
    result = folds(rt_polarity.labels, 10, seed=0)
    for _, test in result:
        assert Counter(rt_polarity.labels[i] for i in test).most_common(1)[0][1] in (533, 534)


def test_holdout_stratified_and_seeded():
    labels = ["a"] * 50 + ["b"] * 10 + ["c"] * 3
    train, val = holdout(labels, 0.2, seed=0)
    assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == len(labels)
    assert Counter(labels[i] for i in val) == {"a": 10, "b": 2, "c": 1}
    assert np.array_equal(holdout(labels, 0.2, seed=0)[1], val)
    assert not np.array_equal(holdout(labels, 0.2, seed=1)[1], val)
    _, tiny = holdout(["a", "a", "b", "b"], 0.01)
    assert Counter(["a", "a", "b", "b"][i] for i in tiny) == {"a": 1, "b": 1}  # every class in both parts
    with pytest.raises(RnnkitError) as e:
        holdout(["a", "a", "b"], 0.5)
    assert one_line(e) == "class 'b' has 1 example; a validation split needs at least 2 of each class"
    with pytest.raises(RnnkitError) as e:
        holdout(labels, 1.0)
    assert one_line(e) == "validation fraction must be between 0 and 1, not 1.0"
