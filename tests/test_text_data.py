"""rnnkit.data.text: reading text files and corpora, the character vocabulary, and stream batches."""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.data import text as data
from rnnkit.data.text import StreamBatcher, Vocab, read_corpus, read_text, resolve_corpus
from rnnkit.errors import RnnkitError

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared/data/text/tinyshakespeare.txt"


@pytest.fixture(scope="module")
def shakespeare() -> str:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} is absent")
    return read_text(SHAKESPEARE)


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, f"not a one-line message: {msg!r}"
    return msg


# ---------------------------------------------------------------------------- read_text


def test_read_text_plain_utf8(tmp_path):
    p = tmp_path / "a.txt"
    text = "héllo wörld €\n😀 line two\n"
    p.write_bytes(text.encode("utf-8"))
    assert read_text(p) == text


@pytest.mark.parametrize("encoding", ["utf-8", "UTF-8", "utf8", "utf-8-sig"])
def test_read_text_drops_bom(tmp_path, encoding):
    p = tmp_path / "bom.txt"
    p.write_bytes(codecs.BOM_UTF8 + "first line é\nsecond\n".encode())
    text = read_text(p, encoding)
    assert text == "first line é\nsecond\n"
    assert not text.startswith("\ufeff")


def test_read_text_keeps_a_zero_width_space_after_the_start(tmp_path):
    p = tmp_path / "mid.txt"
    p.write_bytes(codecs.BOM_UTF8 + "a\ufeffb".encode())
    assert read_text(p) == "a\ufeffb"


def test_read_text_latin1_names_byte_offset(tmp_path):
    p = tmp_path / "latin1.txt"
    prefix = "naïve\n"  # valid UTF-8 with a 2-byte character: byte offset != character offset
    p.write_bytes(prefix.encode("utf-8") + "café au lait\n".encode("latin-1"))
    offset = len(prefix.encode("utf-8")) + len("caf")
    assert offset == 10
    with pytest.raises(RnnkitError) as err:
        read_text(p)
    msg = one_line(err)
    assert f"byte offset {offset}:" in msg
    assert str(p) in msg
    assert "utf-8" in msg and "--encoding" in msg
    # the file as a whole is latin-1 (the UTF-8 'ï' reads as two latin-1 characters)
    assert read_text(p, encoding="latin-1") == "naÃ¯ve\ncafé au lait\n"


def test_read_text_bad_byte_offset_counts_the_bom(tmp_path):
    p = tmp_path / "bom_latin1.txt"
    p.write_bytes(codecs.BOM_UTF8 + b"abc\xe9def")
    with pytest.raises(RnnkitError) as err:
        read_text(p)
    assert "byte offset 6:" in one_line(err)


def test_read_text_latin1_file_read_with_latin1(tmp_path):
    p = tmp_path / "l.txt"
    p.write_bytes("Größe: 5 €?".encode("cp1252"))
    with pytest.raises(RnnkitError, match="byte offset 2:"):
        read_text(p)
    assert read_text(p, encoding="latin-1") == "Größe: 5 \x80?"
    assert read_text(p, encoding="cp1252") == "Größe: 5 €?"


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "ascii"])
def test_read_text_refuses_binary(tmp_path, encoding):
    p = tmp_path / "blob.bin"
    p.write_bytes(b"PK\x03\x04abc\x00\xff\x00")
    with pytest.raises(RnnkitError) as err:
        read_text(p, encoding=encoding)
    msg = one_line(err)
    assert "offset 7" in msg and "binary" in msg and str(p) in msg


def test_read_text_utf16_is_not_taken_for_binary(tmp_path):
    p = tmp_path / "u16.txt"
    p.write_bytes("hello é\n".encode("utf-16"))  # full of NUL bytes, yet text
    assert read_text(p, encoding="utf-16") == "hello é\n"


def test_read_text_empty_file(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(RnnkitError) as err:
        read_text(p)
    msg = one_line(err)
    assert "empty" in msg and str(p) in msg


def test_read_text_missing_path(tmp_path):
    p = tmp_path / "nope.txt"
    with pytest.raises(RnnkitError) as err:
        read_text(p)
    msg = one_line(err)
    assert str(p) in msg and "No such file" in msg


def test_read_text_unknown_encoding(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("abc")
    with pytest.raises(RnnkitError) as err:
        read_text(p, encoding="no-such-codec")
    assert "no-such-codec" in one_line(err)


# ---------------------------------------------------------------------------- resolve_corpus / read_corpus


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "corpus"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "b.txt").write_text("bee\n")
    (root / "a.txt").write_text("ay\n")
    (root / "notes.md").write_text("md\n")
    (root / ".hidden").write_text("secret\n")
    (root / "sub" / "c.txt").write_text("sea\n")
    (root / "sub" / "deeper" / "d.txt").write_text("dee\n")
    return root


def test_resolve_corpus_directory(tree):
    files = resolve_corpus([tree])
    assert files == [tree / "a.txt", tree / "b.txt", tree / "notes.md",
                     tree / "sub" / "c.txt", tree / "sub" / "deeper" / "d.txt"]


def test_resolve_corpus_file_and_str(tree):
    assert resolve_corpus([str(tree / "b.txt"), tree / "a.txt"]) == [tree / "b.txt", tree / "a.txt"]


def test_resolve_corpus_glob(tree):
    assert resolve_corpus([str(tree / "*.txt")]) == [tree / "a.txt", tree / "b.txt"]
    assert resolve_corpus([str(tree / "**" / "*.txt")]) == [
        tree / "a.txt", tree / "b.txt", tree / "sub" / "c.txt", tree / "sub" / "deeper" / "d.txt"]
    # a pattern matching only a directory matches no files
    with pytest.raises(RnnkitError) as err:
        resolve_corpus([str(tree / "su?")])
    assert "matches no files" in one_line(err)


def test_resolve_corpus_glob_matching_nothing(tree):
    with pytest.raises(RnnkitError) as err:
        resolve_corpus([str(tree / "*.csv")])
    assert "matches no files" in one_line(err)


def test_resolve_corpus_missing_path(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(RnnkitError) as err:
        resolve_corpus([missing])
    msg = one_line(err)
    assert "no such file or directory" in msg and str(missing) in msg


def test_resolve_corpus_empty_dir(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".only_hidden").write_text("x")
    with pytest.raises(RnnkitError) as err:
        resolve_corpus([empty])
    msg = one_line(err)
    assert "holds no files" in msg and str(empty) in msg


def test_read_corpus_joins_files_with_newline(tree):
    assert read_corpus([tree / "b.txt", str(tree / "sub" / "*.txt")]) == "bee\n\nsea\n"


def test_read_corpus_default_is_python_stdlib():
    text = read_corpus(None)
    files = data.default_corpus_files()
    assert len(files) > 50
    assert all(f.suffix == ".py" for f in files)
    assert files == sorted(files)
    assert len(text) > 2_000_000
    assert "def " in text and "import " in text
    assert text.startswith(files[0].read_text(encoding="utf-8-sig"))
    assert read_corpus([]) == text


# ---------------------------------------------------------------------------- Vocab


def test_vocab_from_text_sorted():
    v = Vocab.from_text("hello, world")
    assert v.chars == sorted(set("hello, world"))
    assert v.chars == [" ", ",", "d", "e", "h", "l", "o", "r", "w"]
    assert len(v) == 9
    assert v.index == {c: i for i, c in enumerate(v.chars)}
    assert Vocab(["z", "a", "m"]).chars == ["a", "m", "z"]


def test_vocab_round_trip_non_ascii():
    text = "Café crème: 5 € 😀 — naïve ∑ 中文 \t\n"
    v = Vocab.from_text(text)
    ids = v.encode(text)
    assert ids.dtype == np.uint8
    assert ids.shape == (len(text),)
    assert v.decode(ids) == text
    assert v.decode(ids.tolist()) == text
    # ids are the sorted positions
    assert [v.chars[i] for i in ids] == list(text)
    assert ids[text.index("😀")] == len(v) - 1  # the highest code point sorts last


def test_vocab_large_uses_a_wider_compact_type():
    text = "".join(chr(c) for c in range(0x400, 0x400 + 300)) + "😀a"
    v = Vocab.from_text(text)
    assert len(v) == 302
    ids = v.encode(text[::-1])
    assert ids.dtype == np.uint16
    assert v.decode(ids) == text[::-1]
    assert ids.max() == 301


def test_vocab_strict_encode_names_unknown():
    v = Vocab.from_text("abc")
    with pytest.raises(RnnkitError) as err:
        v.encode("abxé😀")
    msg = one_line(err)
    assert "'x'" in msg and "'é'" in msg and "'😀'" in msg
    assert "'a'" not in msg
    # without UNKNOWN in the vocabulary, non-strict cannot map them either
    with pytest.raises(RnnkitError):
        v.encode("abx", strict=False)


def test_vocab_strict_encode_caps_the_list():
    v = Vocab.from_text("a")
    with pytest.raises(RnnkitError, match="and 5 more"):
        v.encode("bcdefghijklmnop")


def test_vocab_max_size_maps_rare_chars_to_unknown():
    text = "a" * 10 + "b" * 8 + "c" * 6 + "d" * 2 + "é" + "€"
    v = Vocab.from_text(text, max_size=4)
    assert len(v) == 4
    assert v.chars == sorted(["a", "b", "c", data.UNKNOWN])
    ids = v.encode(text, strict=False)
    unk = v.index[data.UNKNOWN]
    assert (ids[text.index("d"):] == unk).all()
    assert (ids[: text.index("d")] != unk).all()
    assert v.decode(ids) == "a" * 10 + "b" * 8 + "c" * 6 + data.UNKNOWN * 4
    with pytest.raises(RnnkitError, match="'d'"):
        v.encode(text)
    # large enough: nothing dropped, no UNKNOWN added
    assert Vocab.from_text(text, max_size=6).chars == sorted(set(text))


def test_vocab_max_size_with_unknown_in_text():
    text = data.UNKNOWN * 5 + "aaab"
    v = Vocab.from_text(text, max_size=2)
    assert len(set(v.chars)) == len(v) == 2
    assert v.chars == sorted(["a", data.UNKNOWN])


def test_vocab_on_real_corpus(shakespeare):
    v = Vocab.from_text(shakespeare)
    assert len(v) == 65
    ids = v.encode(shakespeare)
    assert ids.dtype == np.uint8 and len(ids) == len(shakespeare)
    assert v.decode(ids[:5000]) == shakespeare[:5000]


# ---------------------------------------------------------------------------- StreamBatcher


def check_contiguous(tokens: np.ndarray, batch_size: int, seq_len: int) -> StreamBatcher:
    sb = StreamBatcher(tokens, batch_size, seq_len)
    stream_len = (len(tokens) - 1) // batch_size
    assert len(sb) == stream_len // seq_len > 0
    full = torch.from_numpy(tokens.astype(np.int64))
    prev = None
    for i in range(len(sb)):
        x, y = sb.batch(i)
        assert x.shape == y.shape == (batch_size, seq_len)
        assert x.dtype == y.dtype == torch.int64
        # targets are inputs shifted by one
        assert torch.equal(y[:, :-1], x[:, 1:])
        for b in range(batch_size):
            start = b * stream_len + i * seq_len
            assert torch.equal(x[b], full[start: start + seq_len])
            assert torch.equal(y[b], full[start + 1: start + seq_len + 1])
        if prev is not None:
            # stream b of batch i goes on exactly where stream b of batch i-1 ended
            px, py = prev
            assert torch.equal(x[:, 0], py[:, -1])
            assert torch.equal(x[:, 0], full[torch.arange(batch_size) * stream_len + i * seq_len])
        prev = (x, y)
    # each stream read across the epoch is one contiguous slice of the text
    xs = torch.cat([sb.batch(i)[0] for i in range(len(sb))], dim=1)
    for b in range(batch_size):
        assert torch.equal(xs[b], full[b * stream_len: b * stream_len + len(sb) * seq_len])
    return sb


@pytest.mark.parametrize("n,batch_size,seq_len", [(101, 4, 5), (100, 4, 5), (57, 3, 4), (21, 4, 5), (1000, 7, 13)])
def test_stream_batcher_contiguous(n, batch_size, seq_len):
    tokens = np.arange(n, dtype=np.int64) % 251
    check_contiguous(tokens.astype(np.uint8), batch_size, seq_len)


def test_stream_batcher_does_not_mix_streams():
    # with distinct token values, no token appears twice in an epoch of inputs
    tokens = np.arange(1001, dtype=np.int32)
    sb = check_contiguous(tokens, 5, 10)
    xs = torch.cat([sb.batch(i)[0] for i in range(len(sb))], dim=1)
    assert xs.unique().numel() == xs.numel() == 5 * 200


def test_stream_batcher_on_real_corpus(shakespeare):
    v = Vocab.from_text(shakespeare)
    tokens = v.encode(shakespeare[:20_000])
    sb = check_contiguous(tokens, 16, 64)
    x, y = sb.batch(len(sb) - 1)
    assert v.decode(y[0, :-1].tolist()) == v.decode(x[0, 1:].tolist())


@pytest.mark.parametrize("n,batch_size,seq_len", [(20, 4, 5), (10, 4, 5), (1, 1, 1), (63, 8, 8)])
def test_stream_batcher_too_short(n, batch_size, seq_len):
    tokens = np.zeros(n, dtype=np.uint8)
    with pytest.raises(RnnkitError) as err:
        StreamBatcher(tokens, batch_size, seq_len)
    msg = one_line(err)
    assert "--batch-size" in msg and "--seq-len" in msg
    assert f"need at least {batch_size * seq_len + 1}" in msg and f"{n} characters" in msg
    StreamBatcher(np.zeros(batch_size * seq_len + 1, dtype=np.uint8), batch_size, seq_len)  # just enough


def test_split_tokens():
    tokens = np.arange(100)
    train, val = data.split_tokens(tokens, 0.1)
    assert len(train) == 90 and len(val) == 10
    assert np.array_equal(np.concatenate([train, val]), tokens)


def test_encode_ascii_text_with_a_wide_vocabulary():
    from rnnkit.data.text import Vocab as V
    v = V.from_text("abc\u201c\u201d")  # curly quotes make code points past 255
    assert v.decode(v.encode("cab")) == "cab"
    assert v.decode(v.encode("a\u201cb\u201d")) == "a\u201cb\u201d"


# ---------------------------------------------------------------------------- tokenize_to_file

MIXED = "plain ASCII line\ncaf\u00e9 na\u00efve \u4e2d\u6587 \U0001f600 end\n" * 7


@pytest.mark.parametrize("chunk_bytes", [3, 4, 5, 7, 64, 1 << 24])  # 3+: the BOM in one chunk
def test_tokenize_to_file_matches_the_decoded_text(tmp_path, monkeypatch, chunk_bytes):
    """Multi-byte characters cut by chunk ends, a BOM, ASCII-only and mixed files, a latin-1 one."""
    monkeypatch.setattr(data, "CHUNK_BYTES", chunk_bytes)
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbf" + MIXED.encode("utf-8"))
    (tmp_path / "b.txt").write_bytes(b"only ascii here\n" * 5)
    (tmp_path / "c.txt").write_bytes(MIXED[:40].encode("utf-8"))
    files = sorted(tmp_path.glob("*.txt"))
    text = "\n".join(read_text(f) for f in files)
    vocab, tokens = data.tokenize_to_file(files, tmp_path / "tokens.bin")
    assert vocab.chars == sorted(set(text))
    assert vocab.decode(tokens) == text
    counts = data.count_chars(data.iter_corpus_text(files, utf8_bytes=True))
    assert counts == {c: text.count(c) for c in set(text)}


def test_tokenize_to_file_latin1(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CHUNK_BYTES", 5)
    text = "caf\u00e9 ascii only then \u00e0 la fin\n" * 3
    (tmp_path / "l.txt").write_bytes(text.encode("latin-1"))
    vocab, tokens = data.tokenize_to_file([tmp_path / "l.txt"], tmp_path / "t.bin", encoding="latin-1")
    assert vocab.decode(tokens) == text


def test_encode_bytes_and_str_agree_with_unknowns(tmp_path):
    v = Vocab.from_counts(data.count_chars([MIXED]), max_size=8)
    assert data.UNKNOWN in v.chars
    from_str = v.encode(MIXED, strict=False)
    from_bytes = v.encode(MIXED.encode("utf-8"), strict=False)
    assert np.array_equal(from_str, from_bytes)
    expected = "".join(c if c in v.index else data.UNKNOWN for c in MIXED)
    assert v.decode(from_bytes) == expected
    wide = Vocab(set(MIXED) | {data.UNKNOWN} | {chr(0x3000 + i) for i in range(300)})  # ids past 255
    assert wide.dtype == np.uint16
    assert wide.decode(wide.encode(MIXED.encode("utf-8"))) == MIXED
    with pytest.raises(RnnkitError, match="not in the model's vocabulary"):
        Vocab.from_text("plain").encode("plain \u00e9".encode("utf-8"))
