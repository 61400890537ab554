"""Translation: the attentional encoder-decoder, beam search under padding, training, and the command line."""

import gzip
import json
import random

import pytest
import torch
from conftest import SHARED, assert_one_line_error, rnnkit_cli

from rnnkit.data.parallel_text import EOS_ID, PAD_ID
from rnnkit.errors import RnnkitError
from rnnkit.tasks.translate import ModelConfig, Seq2Seq, Translator, beam_search

# a toy language pair: German words to English words, the order kept, so a few hundred steps learn it
WORDS = {"der": "the", "hund": "dog", "katze": "cat", "mann": "man", "frau": "woman", "rennt": "runs",
         "springt": "jumps", "schläft": "sleeps", "rot": "red", "blau": "blue", "groß": "big", "klein": "small",
         "im": "in the", "park": "park", "haus": "house", "und": "and"}
TINY = ["--embed", "32", "--hidden", "32", "--batch-size", "16", "--vocab-size", "320", "--precision", "fp32",
        "--warmup-steps", "5", "--lr", "1e-2"]


def toy_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    words = sorted(WORDS)
    src = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 6))) for _ in range(n)]
    return src, [" ".join(WORDS[w] for w in s.split()) for s in src]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Training, validation and test files of the toy pair (training gzip-compressed, as Multi30k's)."""
    d = tmp_path_factory.mktemp("toy")
    for split, n, seed in (("train", 600, 0), ("val", 40, 1), ("test", 30, 2)):
        src, tgt = toy_pairs(n, seed)
        for lang, lines in (("de", src), ("en", tgt)):
            text = "".join(line + "\n" for line in lines).encode()
            if split == "train":
                (d / f"{split}.{lang}.gz").write_bytes(gzip.compress(text))
            else:
                (d / f"{split}.{lang}").write_bytes(text)
    return d


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    """A translator trained briefly on the toy pair (Python API) with additive attention."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "api"
    t = Translator(out=out, embed=32, hidden=48, batch_size=16, vocab_size=320, max_steps=200, eval_every=200,
                   lr=1e-2, warmup_steps=10, precision="fp32", dropout=0.1)
    return t.fit(toy / "train.de.gz", toy / "train.en.gz", toy / "val.de", toy / "val.en")


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --- the network ---------------------------------------------------------------------------------

def _batch(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    src = torch.full((len(rows), int(lengths.max())), PAD_ID)
    for i, r in enumerate(rows):
        src[i, :len(r)] = torch.tensor(r)
    return src, lengths


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["additive", "multiplicative", "none"])
def test_teacher_forcing_in_one_call_equals_stepping(cell, attention):
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(50, 60, cell, 16, 24, 2, attention, dropout=0.0)).eval()
    src, lengths = _batch([[5, 6, 7, 8, EOS_ID], [9, 10, EOS_ID]])
    tgt_in = torch.randint(4, 60, (2, 6))
    parallel = model(src, lengths, tgt_in)
    memory, state = model.encode(src, lengths)
    feed, stepped = None, []
    for t in range(6):
        logits, state, feed, _ = model.step(tgt_in[:, t], state, feed, memory)
        stepped.append(logits)
    torch.testing.assert_close(parallel, torch.stack(stepped, 1), atol=1e-5, rtol=1e-5)


def test_attention_ignores_padding():
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(50, 60, "gru", 16, 24, 1, "additive", dropout=0.0)).eval()
    src, lengths = _batch([[5, 6, 7, 8, 9, 10, EOS_ID], [11, 12, EOS_ID]])
    memory, state = model.encode(src, lengths)
    _, _, _, w = model.step(torch.tensor([2, 2]), state, None, memory)
    assert torch.all(w[1, 3:] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2))


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_a_sentence_alone_and_in_a_batch_translates_the_same(beam, input_feeding):
    torch.manual_seed(1)
    model = Seq2Seq(ModelConfig(40, 40, "lstm", 16, 24, 2, "multiplicative", input_feeding, dropout=0.0)).eval()
    rows = [[5 + (i * 7 + j) % 30 for j in range(n)] + [EOS_ID] for i, n in enumerate([3, 11, 1, 7, 5])]
    together = beam_search(model, *_batch(rows), beam=beam, n_best=beam)
    for row, hyps in zip(rows, together, strict=True):
        alone = beam_search(model, *_batch([row]), beam=beam, n_best=beam)[0]
        assert [h.ids for h in alone] == [h.ids for h in hyps]
        assert [h.score for h in alone] == pytest.approx([h.score for h in hyps], abs=1e-4)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)  # best first
        assert all(len(h.ids) <= 2 * len(row) + 10 for h in hyps)  # the sentence's own length limit


def test_beam_arguments_are_checked():
    model = Seq2Seq(ModelConfig(20, 20, dropout=0.0)).eval()
    with pytest.raises(RnnkitError, match="n-best"):
        beam_search(model, *_batch([[5, EOS_ID]]), beam=2, n_best=3)


# --- training and the Python API -----------------------------------------------------------------

def test_learns_the_toy_pair_and_scores_with_sacrebleu(trained, toy):
    assert trained.result.best_metric > 40  # validation BLEU picked best.pt
    scores = trained.evaluate(toy / "test.de", toy / "test.en", beam=3)
    assert scores.bleu > 40 and scores.bleu_lowercase >= scores.bleu - 1e-9
    assert "tok:13a" in scores.signatures["bleu"] and "case:lc" in scores.signatures["bleu_lc"]
    assert trained.predict(["der hund rennt"], beam=3) == ["the dog runs"]


def test_load_gives_the_same_translations(trained, toy):
    again = Translator.load(trained.run_dir)
    sentences = (toy / "test.de").read_text().splitlines()[:8]
    assert again.predict(sentences, beam=2) == trained.predict(sentences, beam=2)
    n_best = again.translate(sentences[:1], beam=4, n_best=3)[0]
    assert len(n_best) == 3 and len({text for text, _ in n_best}) == 3


def test_attention_plot(trained, tmp_path, capsys):
    from rnnkit.cli import main

    text = trained.plot_attention("der hund rennt im park", tmp_path / "attn.png")
    assert text and (tmp_path / "attn.png").stat().st_size > 1000
    # the command line's --attention (in this process: quicker than a new one)
    assert main(["translate", "predict", str(trained.run_dir), "der hund rennt", "--attention",
                 str(tmp_path / "cli.png")]) == 0
    assert capsys.readouterr().out.splitlines() == trained.predict("der hund rennt")
    assert (tmp_path / "cli.png").stat().st_size > 1000
    # sentences after an option: argparse alone took positionals in one run ("unrecognized arguments")
    assert main(["translate", "predict", str(trained.run_dir), "--beam", "2", "der hund rennt", "im park"]) == 0
    assert capsys.readouterr().out.splitlines() == trained.predict(["der hund rennt", "im park"], beam=2)


def test_table_input_split_vocabularies_and_scheduled_sampling(toy, tmp_path):
    src, tgt = toy_pairs(300, 3)
    table = _write(tmp_path / "pairs.tsv", "de\ten\n" + "".join(f"{s}\t{t}\n" for s, t in zip(src, tgt, strict=True)))
    t = Translator(out=tmp_path / "ss", embed=16, hidden=16, batch_size=16, vocab_size=300, joint_vocab=False,
                   columns=("de", "en"), max_steps=6, scheduled_sampling=0.5, attention="multiplicative",
                   input_feeding=True, cell="lstm", precision="fp32")
    t.fit(table)  # one table file, no validation data: 15 pairs (5%) are held out
    assert t.result.steps == 6 and not t.tokenizer.joint
    assert {p.name for p in (tmp_path / "ss").glob("subword*")} == {"subword.src.model", "subword.tgt.model"}
    assert json.loads((tmp_path / "ss" / "config.json").read_text())["val_pairs"] == 15
    assert len(Translator.load(tmp_path / "ss").predict(["der hund", "katze"])) == 2


def test_translator_refuses_bad_options():
    for bad in ({"cell": "nope"}, {"attention": "dot"}, {"attention": "none", "input_feeding": True},
                {"label_smoothing": 1.5}, {"scheduled_sampling": 2.0}):
        with pytest.raises(RnnkitError):
            Translator(**bad)


# --- the command line ----------------------------------------------------------------------------

def test_cli_train_eval_predict_resume(toy, tmp_path):
    run = tmp_path / "run"
    proc = rnnkit_cli("translate", "train", "--src", toy / "train.de.gz", "--tgt", toy / "train.en.gz",
                      "--val-src", toy / "val.de", "--val-tgt", toy / "val.en", "--out", run, *TINY,
                      "--max-steps", "15", "--eval-every", "15", "--attention", "multiplicative")
    assert proc.returncode == 0, proc.stderr
    assert "run folder" in proc.stdout and (run / "best.pt").is_file() and (run / "subword.model").is_file()

    proc = rnnkit_cli("translate", "train", "--resume", run, "--max-steps", "25")
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 25 and 15 in steps and 16 in steps  # continued from step 15, not restarted

    proc = rnnkit_cli("translate", "eval", run, "--src", toy / "test.de", "--ref", toy / "test.en", "--beam", "2")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert {"bleu", "bleu_lowercase", "chrf"} <= set(lines)
    assert float(lines["bleu_lowercase"]) >= float(lines["bleu"]) >= 0

    proc = rnnkit_cli("translate", "predict", run, "--input", toy / "test.de", "--beam", "3", "--n-best", "2",
                      "--output", tmp_path / "nbest.txt")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in (tmp_path / "nbest.txt").read_text().splitlines()]
    assert len(rows) == 60 and [r[0] for r in rows] == [str(i // 2) for i in range(60)]


def test_cli_predict_streams_stdin(trained, toy):
    import subprocess
    import sys

    lines = (toy / "test.de").read_text()
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "translate", "predict", str(trained.run_dir),
                           "--batch-size", "7"], input=lines, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == trained.predict(lines.splitlines())


def test_cli_bad_input_one_line_errors_nothing_written(toy, tmp_path):
    """The issue's bad inputs through the real command: one line on stderr, non-zero exit, no run folder."""
    good_de, good_en = toy / "val.de", toy / "val.en"
    empty = _write(tmp_path / "empty.de", "")
    short = _write(tmp_path / "short.en", "a dog\n")
    blank = _write(tmp_path / "blank.de", "ein hund\n\nder mann\n")
    three = _write(tmp_path / "three.en", "a dog\nthe cat\nthe man\n")
    cases = [
        ((empty, good_en), ["empty"]),
        ((good_de, short), ["40 lines", "has 1"]),
        ((blank, three), ["line 2 is empty", "--drop-empty"]),
    ]
    out = tmp_path / "never"
    for (src, tgt, *extra), fragments in cases:
        proc = rnnkit_cli("translate", "train", "--src", src, "--tgt", tgt, "--out", out, *extra, "--max-steps", "1")
        assert_one_line_error(proc, *fragments)
        assert not out.exists()  # refused before the run folder was made


def _main_error(capsys, *argv) -> str:
    """The command line run in this process (quicker than a new one): its exit code and one-line stderr."""
    from rnnkit.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_more_bad_input_one_line_errors(trained, toy, tmp_path, capsys):
    run, out = trained.run_dir, tmp_path / "never"
    de, en = toy / "val.de", toy / "val.en"
    assert "--max-chars" in _main_error(capsys, "translate", "train", "--src", de, "--tgt", en, "--out", out,
                                        "--max-chars", "5", "--max-steps", "1")
    assert "--max-tokens" in _main_error(capsys, "translate", "train", "--src", de, "--tgt", en, "--out", out,
                                         "--max-tokens", "2", "--vocab-size", "320", "--max-steps", "1")
    assert "--vocab-size" in _main_error(capsys, "translate", "train", "--src", de, "--tgt", en, "--out", out,
                                         "--vocab-size", "30", "--max-steps", "1")
    assert not out.exists()
    for beam in ("0", "-2", "five", "1.5"):
        assert "--beam" in _main_error(capsys, "translate", "predict", run, "der hund", "--beam", beam)
    assert "--n-best" in _main_error(capsys, "translate", "predict", run, "hund", "--beam", "2", "--n-best", "3")
    assert "no run folder" in _main_error(capsys, "translate", "predict", tmp_path / "nothing", "hund")
    assert "one sentence" in _main_error(capsys, "translate", "predict", run, "a", "b", "--attention",
                                         tmp_path / "a.png")
    assert "--hidden" in _main_error(capsys, "translate", "train", "--resume", run, "--hidden", "64")
    assert "--lr" in _main_error(capsys, "translate", "train", "--resume", run, "--lr", "0.5", "--max-steps", "400")
    # a second training into an existing run is refused, and the run is left as it was
    before = (run / "best.pt").read_bytes()
    assert "already holds a run" in _main_error(capsys, "translate", "train", "--src", de, "--tgt", en, "--out", run,
                                                "--vocab-size", "320", "--max-steps", "1")
    assert (run / "best.pt").read_bytes() == before


MULTI30K = SHARED / "translation" / "multi30k"


@pytest.mark.skipif(not (MULTI30K / "val.de.gz").exists(), reason="shared Multi30k data not present")
def test_multi30k_files_read_and_tokenise(tmp_path):
    from rnnkit.data.parallel_text import encode_parallel, read_parallel, train_parallel_tokenizer

    val = read_parallel(MULTI30K / "val.de.gz", MULTI30K / "val.en.gz")
    assert len(val) == 1014
    tok = train_parallel_tokenizer(val, vocab_size=2000)
    data = encode_parallel(val, tok, max_tokens=100)
    assert tok.tgt.decode(data.tgt(0)) == val.tgt[0]  # lossless: references are the raw text
