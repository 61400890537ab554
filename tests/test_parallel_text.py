"""Parallel corpora for translation: reading and its refusals, the SentencePiece tokeniser, batches, sacreBLEU."""

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.data.parallel_text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    ParallelCorpus,
    ParallelTokenizer,
    SubwordTokenizer,
    batch_indices,
    corpus_bleu,
    corpus_chrf,
    encode_parallel,
    find_split,
    make_batch,
    read_lines,
    read_parallel,
    train_parallel_tokenizer,
    translation_scores,
)
from rnnkit.errors import RnnkitError

MULTI30K = Path(__file__).resolve().parents[2] / "shared" / "data" / "translation" / "multi30k"
needs_multi30k = pytest.mark.skipif(not (MULTI30K / "train.de.gz").is_file(), reason="Multi30k not in shared/data")

DE = ["Ein Hund läuft über die Wiese.", "Zwei Männer spielen Fußball.", "Eine Frau liest ein Buch."]
EN = ["A dog runs across the meadow.", "Two men are playing soccer.", "A woman is reading a book."]


def write(path: Path, lines: list[str], *, compress: bool = False, bom: bool = False) -> Path:
    data = ("\ufeff" if bom else "") + "".join(line + "\n" for line in lines)
    raw = data.encode("utf-8")
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path


def error(fn, *args, **kwargs) -> str:
    """The one-line message of the RnnkitError that ``fn`` raises."""
    with pytest.raises(RnnkitError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- reading -------------------------------------------------------------------------------------------------


def test_gzip_by_suffix_or_magic_reads_like_plain(tmp_path):
    plain = read_parallel(write(tmp_path / "a.de", DE), write(tmp_path / "a.en", EN))
    gz = read_parallel(write(tmp_path / "b.de.gz", DE, compress=True), write(tmp_path / "b.en.gz", EN, compress=True))
    # no .gz suffix: the magic bytes alone say gzip
    magic = read_parallel(write(tmp_path / "c.de", DE, compress=True), write(tmp_path / "c.en", EN))
    for corpus in (plain, gz, magic):
        assert corpus.src == DE and corpus.tgt == EN and corpus.line_numbers == [1, 2, 3]


def test_byte_order_mark_is_not_text(tmp_path):
    corpus = read_parallel(write(tmp_path / "a.de", DE, bom=True), write(tmp_path / "a.en", EN, bom=True,
                                                                       compress=True))
    assert corpus.src[0] == DE[0] and corpus.tgt[0] == EN[0]
    assert read_lines(write(tmp_path / "b.de", DE, bom=True), encoding="utf-8-sig") == DE


def test_crlf_and_missing_final_newline(tmp_path):
    (tmp_path / "a.de").write_bytes("\r\n".join(DE).encode())
    assert read_lines(tmp_path / "a.de") == DE


def test_line_counts_that_differ_name_both(tmp_path):
    msg = error(read_parallel, write(tmp_path / "a.de", DE), write(tmp_path / "a.en", EN[:2]))
    assert "3 lines" in msg and "has 2" in msg and "a.de" in msg and "a.en" in msg


def test_empty_line_is_refused_by_number_or_dropped(tmp_path):
    en = [EN[0], "   ", EN[2]]  # whitespace only counts as empty
    src, tgt = write(tmp_path / "a.de", DE), write(tmp_path / "a.en", en)
    msg = error(read_parallel, src, tgt)
    assert "a.en line 2 is empty" in msg and "--drop-empty" in msg
    corpus = read_parallel(src, tgt, drop_empty=True)
    assert corpus.src == [DE[0], DE[2]] and corpus.line_numbers == [1, 3] and corpus.dropped["empty"] == 1


def test_long_sentence_is_refused_by_number_or_dropped(tmp_path):
    src, tgt = write(tmp_path / "a.de", DE), write(tmp_path / "a.en", EN)
    msg = error(read_parallel, src, tgt, max_chars=27)
    assert "a.de line 1 has 30 characters, over the cap of 27" in msg
    corpus = read_parallel(src, tgt, max_chars=27, drop_long=True)
    assert corpus.line_numbers == [3] and corpus.dropped["long"] == 2


def test_undecodable_bytes_give_the_byte_offset(tmp_path):
    path = tmp_path / "a.de"
    path.write_bytes(b"\xef\xbb\xbfGut\nStra\xdfe\n")  # a BOM, then latin-1 where UTF-8 was promised
    msg = error(read_lines, path)
    assert "byte offset 11" in msg and "line 2" in msg and "--encoding" in msg  # offset counts the BOM
    assert read_lines(path, encoding="latin-1")[1] == "Straße"
    path.write_bytes(gzip.compress(b"Gut\nStra\xdfe\n"))
    assert "byte offset 8 of the decompressed text" in error(read_lines, path)
    assert "unknown encoding" in error(read_lines, path, encoding="klingon")


def test_missing_empty_binary_and_bad_gzip_files(tmp_path):
    assert "no such file" in error(read_lines, tmp_path / "nope.de")
    (tmp_path / "empty.de").write_bytes(b"")
    assert "empty" in error(read_lines, tmp_path / "empty.de")
    (tmp_path / "empty.de.gz").write_bytes(gzip.compress(b""))
    assert "empty once decompressed" in error(read_lines, tmp_path / "empty.de.gz")
    (tmp_path / "fake.de.gz").write_text("not compressed\n")
    assert "not gzip-compressed" in error(read_lines, tmp_path / "fake.de.gz")
    (tmp_path / "cut.de.gz").write_bytes(gzip.compress("\n".join(DE * 50).encode())[:40])
    assert "damaged gzip" in error(read_lines, tmp_path / "cut.de.gz")
    (tmp_path / "bin.de").write_bytes(b"abc\x00def\n")
    assert "looks binary" in error(read_lines, tmp_path / "bin.de")


def test_tsv_columns_by_header_name_or_first_two(tmp_path):
    rows = ["id\ttgt\tsrc"] + [f"{i}\t{e}\t{d}" for i, (d, e) in enumerate(zip(DE, EN, strict=True))]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(rows) + "\n")
    corpus = read_parallel(path)
    assert corpus.src == DE and corpus.tgt == EN and corpus.line_numbers == [2, 3, 4]  # header is line 1
    flipped = read_parallel(path, columns=("tgt", "src"))
    assert flipped.src == EN and flipped.tgt == DE
    assert "no column 'de'" in error(read_parallel, path, columns=("de", "en"))
    bare = tmp_path / "bare.tsv.gz"  # no header: the first two fields
    bare.write_bytes(gzip.compress("".join(f"{d}\t{e}\n" for d, e in zip(DE, EN, strict=True)).encode()))
    assert read_parallel(bare).src == DE
    bad = tmp_path / "bad.tsv"
    bad.write_text(f"{DE[0]}\t{EN[0]}\n{DE[1]}\n")
    assert "bad.tsv line 2 has 1 tab-separated field(s), needs 2" in error(read_parallel, bad)


def test_jsonl_columns_and_refusals(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"de": d, "en": e, "src": d, "tgt": e}) + "\n" for d, e in zip(DE, EN,
                                                                                                      strict=True)))
    assert read_parallel(path).src == DE
    assert read_parallel(path, columns=("en", "de")).src == EN
    first_two = tmp_path / "two.jsonl"
    first_two.write_text("".join(json.dumps({"de": d, "en": e}) + "\n" for d, e in zip(DE, EN, strict=True)))
    corpus = read_parallel(first_two)
    assert corpus.src == DE and corpus.tgt == EN and "column 'de'" in corpus.src_name
    first_two.write_text(json.dumps({"de": DE[0], "en": EN[0]}) + "\n" + json.dumps({"de": DE[1], "en": None}) + "\n")
    assert "column 'en' line 2 is empty" in error(read_parallel, first_two)
    first_two.write_text(json.dumps({"de": DE[0], "en": 3}) + "\n")
    assert "line 1: 'en' holds a int" in error(read_parallel, first_two)
    first_two.write_text("{oops\n")
    assert "line 1 is not valid JSON" in error(read_parallel, first_two)


def test_parquet_columns_and_null_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"de": DE, "en": EN, "n": [1, 2, 3]}), path)
    assert read_parallel(path).src == DE  # no src/tgt columns: the first two
    assert read_parallel(path, columns=("en", "de")).tgt == DE
    assert "column 'n' holds int64, not strings" in error(read_parallel, path, columns=("de", "n"))
    pq.write_table(pa.table({"src": DE, "tgt": [EN[0], None, EN[2]]}), path)
    assert "column 'tgt' row 2 is empty" in error(read_parallel, path)
    assert read_parallel(path, drop_empty=True).line_numbers == [1, 3]
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    assert "not a readable Parquet file" in error(read_parallel, tmp_path / "junk.parquet")
    assert "give two plain text files" in error(read_parallel, tmp_path / "pairs.txt")


@needs_multi30k
def test_multi30k_splits_read_in_full():
    sizes = {"train": 29000, "val": 1014, "test_2016_flickr": 1000}
    for split, n in sizes.items():
        corpus = read_parallel(*find_split(MULTI30K, split, "de", "en"))
        assert len(corpus) == n and corpus.dropped == {"empty": 0, "long": 0}
    assert "no test_2099.de[.gz]" in error(find_split, MULTI30K, "test_2099", "de", "en")


# --- tokeniser -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> ParallelCorpus:
    """Real Multi30k training pairs when present (3000, for speed), else made-up sentences."""
    if (MULTI30K / "train.de.gz").is_file():
        full = read_parallel(MULTI30K / "train.de.gz", MULTI30K / "train.en.gz")
        return ParallelCorpus(full.src[:3000], full.tgt[:3000], full.line_numbers[:3000], full.src_name,
                              full.tgt_name)
    de = [f"{a} {b} {c}." for a, b, c in itertools.product(["Ein Hund", "Eine Frau", "Zwei Männer", "Ein Kind"],
                                                             ["läuft", "spielt", "sitzt", "springt"],
                                                             ["im Park", "am Strand", "über die Wiese"])]
    en = [s.replace("Ein", "A").replace("Eine", "A") for s in de]
    return ParallelCorpus(de * 20, en * 20, list(range(1, 20 * len(de) + 1)), "made-up.de", "made-up.en")


@pytest.fixture(scope="module")
def tok(corpus) -> ParallelTokenizer:
    return train_parallel_tokenizer(corpus, vocab_size=400 if corpus.src_name == "made-up.de" else 1000)


def test_training_is_deterministic_and_ids_are_fixed(corpus, tok):
    again = train_parallel_tokenizer(corpus, vocab_size=tok.src.vocab_size)
    assert again.src.model_bytes == tok.src.model_bytes
    ids = tok.tgt.encode(corpus.tgt[0], bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and PAD_ID not in ids
    assert tok.tgt.decode([BOS_ID, *ids[1:-1], EOS_ID, 57, 99, PAD_ID]) == corpus.tgt[0]  # stops at EOS
    assert tok.tgt.decode(torch.tensor(ids)) == corpus.tgt[0]


@needs_multi30k
def test_round_trip_on_multi30k_lines(tok):
    """Decoded ids must give back the exact sentence: that text is what sacreBLEU scores."""
    lines = []
    for split in ("val", "test_2016_flickr"):  # sentences the model never saw
        corpus = read_parallel(*find_split(MULTI30K, split, "de", "en"))
        lines += corpus.src + corpus.tgt
    train = read_lines(MULTI30K / "train.de.gz")
    odd = [s for s in train if "\xa0" in s or "  " in s or "„" in s][:50]  # no-break spaces, doubled spaces
    lines += odd + ["Zoë isst Crème brûlée in Łódź — 北京!"]  # characters absent from training: byte fallback
    ids = tok.src.encode_batch(lines)
    assert tok.src.decode_batch(ids) == lines
    assert len(odd) == 50 and all(1 not in row for row in ids)  # no <unk>


def test_save_and_load_give_identical_ids(tmp_path, corpus, tok):
    paths = tok.save(tmp_path / "run")
    assert [p.name for p in paths] == ["subword.model"]
    back = ParallelTokenizer.load(tmp_path / "run")
    assert back.joint and back.src.model_bytes == tok.src.model_bytes
    assert back.src.encode_batch(corpus.src[:200]) == tok.src.encode_batch(corpus.src[:200])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["subword.model"]  # no temp file left
    split = train_parallel_tokenizer(corpus, joint=False, vocab_size=(400, 350))
    split.save(tmp_path / "run")  # replaces the joint layout
    back = ParallelTokenizer.load(tmp_path / "run")
    assert not back.joint and (back.src.vocab_size, back.tgt.vocab_size) == (400, 350)
    assert back.tgt.encode(corpus.tgt[5]) == split.tgt.encode(corpus.tgt[5])
    assert "no subword model" in error(ParallelTokenizer.load, tmp_path)
    (tmp_path / "subword.model").write_bytes(b"\x00garbage")
    assert "is not a SentencePiece model" in error(ParallelTokenizer.load, tmp_path)


def test_vocabulary_size_out_of_reach_is_one_line(corpus):
    assert "too large for this training text" in error(SubwordTokenizer.train, corpus.tgt[:20], vocab_size=8000)
    assert "too small" in error(SubwordTokenizer.train, corpus.tgt[:20], vocab_size=100)


# --- ids and batches -----------------------------------------------------------------------------------------


def test_encode_caps_subword_tokens_by_line(corpus, tok):
    data = encode_parallel(corpus, tok)
    assert len(data) == len(corpus) and data.src(3).tolist() == tok.src.encode(corpus.src[3])
    longest = np.maximum(data.src_lengths, data.tgt_lengths)
    cap = int(longest.max()) - 1  # the longest pairs must go
    first = int(np.flatnonzero(longest > cap)[0])
    msg = error(encode_parallel, corpus, tok, max_tokens=cap)
    assert f"line {corpus.line_numbers[first]} has" in msg and f"over the cap of {cap}" in msg
    kept = encode_parallel(corpus, tok, max_tokens=cap, drop_long=True)
    assert kept.dropped > 0 and len(kept) + kept.dropped == len(corpus)
    assert max(kept.src_lengths.max(), kept.tgt_lengths.max()) <= cap
    assert corpus.line_numbers[first] not in kept.line_numbers.tolist()


def test_batch_pads_and_frames_targets(corpus, tok):
    data = encode_parallel(corpus, tok)
    idx = [4, 0, 7]
    batch = make_batch(data, idx)
    for row, i in enumerate(idx):
        src, tgt = data.src(i).tolist(), data.tgt(i).tolist()
        n, m = len(src) + 1, len(tgt) + 1
        assert batch.src_lengths[row] == n and batch.tgt_lengths[row] == m
        assert batch.src[row, :n].tolist() == src + [EOS_ID] and (batch.src[row, n:] == PAD_ID).all()
        assert batch.tgt_in[row, :m].tolist() == [BOS_ID] + tgt and (batch.tgt_in[row, m:] == PAD_ID).all()
        assert batch.tgt_out[row, :m].tolist() == tgt + [EOS_ID] and (batch.tgt_out[row, m:] == PAD_ID).all()
    assert batch.src.shape == (3, int(batch.src_lengths.max())) and batch.src.dtype == torch.int64
    assert batch.num_target_tokens == int(batch.tgt_lengths.sum())
    assert tok.tgt.decode_batch(batch.tgt_out) == [corpus.tgt[i] for i in idx]
    assert make_batch(data, idx, src_eos=False).src_lengths.tolist() == [len(data.src(i)) for i in idx]
    assert "out of range" in error(make_batch, data, [len(data)])


def test_batches_cover_each_pair_once_with_little_padding(corpus, tok):
    data = encode_parallel(corpus, tok)
    batches = batch_indices(data, 16, seed=3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(data)))
    assert all(np.array_equal(a, b) for a, b in zip(batches, batch_indices(data, 16, seed=3), strict=True))
    assert not np.array_equal(flat, np.concatenate(batch_indices(data, 16, seed=4)))
    in_order = batch_indices(data, 16, shuffle=False)
    assert np.concatenate(in_order).tolist() == list(range(len(data)))

    def padding(bs: list[np.ndarray]) -> float:
        lengths = [data.src_lengths[b] for b in bs]
        return sum(len(x) * x.max() - x.sum() for x in lengths) / sum(x.sum() for x in lengths)

    if data.src_lengths.std() > 1:  # real text: sorting within pools must cut padding well below random
        assert padding(batches) < 0.5 * padding(batch_indices(data, 16, seed=3, pool=1))


# --- scores --------------------------------------------------------------------------------------------------


def test_bleu_and_chrf_are_sacrebleus():
    sacrebleu = pytest.importorskip("sacrebleu")
    refs = ["The cat sat on the mat.", "A man is playing a guitar in the street."]
    hyps = ["The cat sat on a mat.", "A man plays the guitar on the street."]
    same = corpus_bleu(refs, refs)
    assert same.score == pytest.approx(100.0) and "tok:13a" in same.signature and "case:mixed" in same.signature
    bleu = corpus_bleu(hyps, refs)
    assert bleu.score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert 0 < bleu.score < 100 and bleu.text.startswith("BLEU = ")
    chrf = corpus_chrf(hyps, refs)
    assert chrf.score == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score) and chrf.name == "chrF2"
    shouted = [h.upper() for h in hyps]
    cased, lc = corpus_bleu(shouted, refs), corpus_bleu(shouted, refs, lowercase=True)
    assert lc.score >= cased.score and lc.score == pytest.approx(bleu.score) and "case:lc" in lc.signature
    two_refs = corpus_bleu(hyps, [refs, hyps])
    assert two_refs.score == pytest.approx(100.0) and "nrefs:2" in two_refs.signature
    assert set(translation_scores(hyps, refs)) == {"bleu", "bleu_lc", "chrf"}
    assert "2 hypotheses but 1 references" in error(corpus_bleu, hyps, refs[:1])
