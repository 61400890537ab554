"""Dynamic evaluation (Krause et al. 2017): scores before steps, the trained weights untouched, every cell."""

import shutil

import numpy as np
import pytest
import torch
from conftest import one_line, rnnkit_cli

import rnnkit
from rnnkit.cli import main
from rnnkit.data.text import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.nn.cells import CELLS
from rnnkit.tasks.charlm import CharLM, ModelConfig
from rnnkit.tasks.dynamic_eval import DynamicEval, dynamic_segments

LETTERS = "abcdefghij"


@pytest.fixture(scope="module")
def run(small_corpus, tmp_path_factory):
    """A tiny model trained briefly on real text, in its run folder.

    Without AR and TAR (the step budget would recommend them): at 32 units and 80 steps they shrink
    the hidden state the adaptation works through, and the thresholds below are set for this model.
    """
    out = tmp_path_factory.mktemp("dyneval") / "run"
    model, _ = rnnkit.train(str(small_corpus), out=out, max_steps=80, lr=1e-2, progress=False,
                            hidden=32, layers=1, batch_size=8, seq_len=32, precision="fp32", ar=0.0, tar=0.0)
    return out


def tiny(cell: str, seed: int = 0) -> CharLM:
    torch.manual_seed(seed)
    return CharLM(ModelConfig(cell=cell, hidden=16, layers=2, vocab_size=len(LETTERS)), Vocab(LETTERS)).eval()


def random_text(n: int, seed: int = 0) -> str:
    return "".join(np.random.default_rng(seed).choice(list(LETTERS), n))


def segment_scores(model, text, settings, train_tokens=None):
    settings = settings.resolve(model, train_tokens)
    return list(dynamic_segments(model, model.vocab.encode(text), settings))


@pytest.mark.parametrize("method", ["sgd", "rms"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_zero_lr_and_decay_give_the_static_loss_exactly(cell, method):
    model, text = tiny(cell), random_text(230)
    got = model.evaluate(text, dynamic=DynamicEval(method=method, lr=0.0, decay=0.0, segment=20),
                         train_tokens=random_text(400, seed=1))
    assert got["method"] == method
    assert got["dynamic_loss"] == got["loss"]
    assert got["chars"] == 229
    assert got["loss"] == pytest.approx(model.evaluate(text)["loss"], rel=1e-5)  # the plain evaluation


@pytest.mark.parametrize("cell", list(CELLS))
def test_adapts_a_copy_and_leaves_the_trained_weights_bit_exact(cell):
    """Gradients flow through every cell's path (fused kernels included), and only the copy moves."""
    model = tiny(cell)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = model.evaluate(random_text(60) * 4, dynamic=DynamicEval(method="rms", lr=1e-2, decay=0.01, segment=20),
                         train_tokens=random_text(400, seed=1))
    assert got["dynamic_loss"] != got["loss"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_kernels_adapt_as_the_step_by_step_loop(cell):
    """The fused paths' gradients (oneDNN LSTM, rnnkit's GRU sequence kernel) give the loop's adaptation."""
    fused, text = tiny(cell), random_text(50) * 3
    loop = tiny(cell)
    loop.rnn.impl = "loop"
    settings = DynamicEval(method="sgd", lr=0.5, decay=0.01, segment=25)
    a, b = fused.evaluate(text, dynamic=settings), loop.evaluate(text, dynamic=settings)
    assert a["dynamic_loss"] < a["loss"] - 0.01
    assert a["dynamic_loss"] == pytest.approx(b["dynamic_loss"], rel=1e-4)


def test_each_segment_is_scored_before_its_own_step():
    model, settings = tiny("lstm"), DynamicEval(method="sgd", lr=1.0, decay=0.0, segment=20)
    text = random_text(100)
    scores = segment_scores(model, text, settings)
    first_chars, first_static, first_dynamic = scores[0]
    assert first_chars == 20 and first_dynamic == first_static  # nothing read yet, nothing learned
    assert scores[1][2] != scores[1][1]  # the step on segment 0 counts from segment 1 on
    changed = segment_scores(model, text[:-15] + random_text(15, seed=2), settings)
    assert [s[2] for s in changed[:-1]] == [s[2] for s in scores[:-1]]  # the last segment's text comes after
    assert changed[-1][2] != scores[-1][2]


@pytest.mark.parametrize("method", ["rms", "sgd"])
def test_dynamic_evaluation_learns_a_repeated_text(run, method):
    """A random string seen again and again: the adapted weights predict it far better than the trained ones."""
    model = CharLM.load(run)
    chars = [c for c in model.vocab.chars if c.isalpha()]
    text = "".join(np.random.default_rng(0).choice(chars, 100)) * 8
    got = model.evaluate(text, dynamic=DynamicEval(method=method, stats_chars=4000))
    assert got["method"] == method and got["lr"] > 0 and got["segment"] == 50
    assert got["dynamic_loss"] < got["loss"] - 0.15  # nats per character


def test_rms_statistics_come_from_the_run_else_sgd(run, tmp_path):
    model = CharLM.load(run)
    settings = DynamicEval(stats_chars=2000).resolve(model)
    assert settings.method == "rms" and "tokens.bin" in settings.source
    assert "1,600 training characters" in settings.source  # 32 streams x 50 characters, once
    assert len(settings.rms) == len(list(model.parameters())) and all((r >= 0).all() for r in settings.rms)
    assert sum(float(r.sum()) for r in settings.rms) > 0

    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(run / "best.pt", lone / "best.pt")  # a checkpoint without its training text
    model = CharLM.load(lone)
    fallback = DynamicEval().resolve(model)
    assert fallback.method == "sgd" and "sgd, as" in fallback.source and "missing" in fallback.source
    with pytest.raises(RnnkitError) as e:
        DynamicEval(method="rms").resolve(model)
    assert "--method sgd" in one_line(e)
    given = DynamicEval(method="rms", stats_chars=500).resolve(model, train_tokens="hello " * 50)
    assert given.method == "rms" and "train_tokens" in given.source


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(segment=0), dict(decay=1.5), dict(method="adam"),
                                 dict(lr=float("nan")), dict(stats_chars=0)])
def test_bad_settings_are_one_line_errors(bad):
    with pytest.raises(RnnkitError) as e:
        tiny("lstm").evaluate(random_text(50), dynamic=DynamicEval(**bad))
    one_line(e)


def test_evaluate_refuses_what_is_not_its_text_or_settings():
    """a list of texts and a method's name gave AttributeErrors from inside"""
    model = tiny("lstm")
    with pytest.raises(TypeError, match="the text as one string, got list"):
        model.evaluate([random_text(50)])
    with pytest.raises(TypeError, match="dynamic takes True or DynamicEval"):
        model.evaluate(random_text(50), dynamic="rms")


def test_cli_prints_static_and_dynamic_figures(run, small_corpus, tmp_path):
    text = tmp_path / "repeat.txt"
    text.write_text(small_corpus.read_text(encoding="utf-8")[:300] * 3, encoding="utf-8")
    proc = rnnkit_cli("eval", run, text, "--dynamic", "--stats-chars", "3000", "--segment", "40")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("dynamic evaluation: rms, lr 0.0001, decay 0.01, segment 40;")
    assert "tokens.bin" in lines[0]
    assert "dynamic loss" in lines[1] and "bpc" in lines[1]
    dynamic, static = lines[-2].split(), lines[-1].split()
    assert dynamic[:2] == ["dynamic", "loss"] and dynamic[-2] == "bpc"
    assert static[0] == "loss" and static[-2] == "bpc"  # the last line is the static figure, as without --dynamic
    assert float(dynamic[-1]) < float(static[-1])
    plain = CharLM.load(run).evaluate(text.read_text(encoding="utf-8"))["loss"]
    assert float(static[1]) == pytest.approx(plain, abs=2e-4)  # the static loss of plain rnnkit eval


@pytest.mark.parametrize("args,fragment", [(["--dynamic", "--lr", "-1"], "--lr"),
                                           (["--dynamic", "--segment", "0"], "--segment"),
                                           (["--dynamic", "--decay", "2"], "--decay"),
                                           (["--dynamic", "--method", "adam"], "--method"),
                                           (["--dynamic", "--stats-chars", "many"], "--stats-chars"),
                                           (["--lr", "0.1"], "add --dynamic")])
def test_cli_bad_dynamic_options_are_one_line_errors(run, small_corpus, args, fragment, capsys):
    try:
        code = main(["eval", str(run), str(small_corpus), *args])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and fragment in err, err


def test_progress_in_a_log_is_a_line_with_rate_and_eta(monkeypatch, capsys):
    from rnnkit.tasks import dynamic_eval

    monkeypatch.setattr(dynamic_eval._Bar, "EVERY", 0.0)  # a line per segment instead of a minute apart
    tiny("gru").evaluate(random_text(120), dynamic=DynamicEval(method="sgd", segment=30), progress=None)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("dynamic evaluation: 119/119 chars")
    assert all("chars/s" in line and "ETA" in line and "dynamic bpc" in line for line in lines)
