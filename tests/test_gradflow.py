"""Gradient flow: the unrolled layer equals the layer, the gradient norms equal a direct autograd computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, rnnkit_cli

from rnnkit.errors import RnnkitError
from rnnkit.inspect.gradflow import (
    Spec,
    build_untrained,
    gradflow,
    hidden_grad_norms,
    measure,
    summarise,
)
from rnnkit.nn.cells import CELLS
from rnnkit.tasks.charlm import CharLM, ModelConfig


@pytest.mark.parametrize("cell", list(CELLS))
def test_gradient_norms_match_direct_autograd(cell):
    """‖∂L_T/∂h_t‖ from one backward pass equals, for each t, restarting the fused layer from (h_t, c_t, ...)."""
    torch.manual_seed(1)
    model = CharLM(ModelConfig(cell=cell, hidden=6, layers=1, vocab_size=11)).double().eval()
    B, T = 3, 8
    ids = torch.randint(0, 11, (B, T))
    targets = torch.randint(0, 11, (B,))
    norms = hidden_grad_norms(model, ids, targets)  # (T, B), row k = k steps back
    assert norms.shape == (T, B)
    x = model.embed(ids).detach()
    for j in range(T):  # state after step j, i.e. T-1-j steps back
        _, state = model.rnn(x[:, : j + 1])
        parts = state if isinstance(state, tuple) else (state,)
        h = parts[0].detach().requires_grad_()
        rest = tuple(p.detach() for p in parts[1:])  # c, for an LSTM
        if j < T - 1:
            out, _ = model.rnn(x[:, j + 1:], (h, *rest) if rest else h)
            last = out[:, -1]
        else:
            last = h[-1]
        loss = torch.nn.functional.cross_entropy(model.head(last), targets, reduction="sum")
        (g,) = torch.autograd.grad(loss, h)
        torch.testing.assert_close(norms[T - 1 - j], g[0].norm(dim=-1))


def test_summary_of_a_geometric_curve():
    k = np.arange(200)
    slope, horizon = summarise(0.9 ** k)
    assert slope == pytest.approx(math.log10(0.9))
    assert horizon == 66  # 0.9**65 = 1.06e-3, 0.9**66 = 9.6e-4
    slope, horizon = summarise(1.02 ** k)
    assert slope > 0 and horizon is None


def test_vanilla_rnn_vanishes_chrono_lstm_keeps_large_init_explodes(small_corpus):
    from rnnkit.data.text import Vocab
    text = small_corpus.read_text(encoding="utf-8")
    vocab = Vocab.from_text(text)
    tokens = vocab.encode(text)
    results = {}
    for name in ["rnn", "lstm:chrono", "rnn_relu:identity:1.05"]:
        model = build_untrained(Spec.parse(name), len(vocab), hidden=32, layers=1)
        results[name] = measure(model, tokens, length=80, windows=4, burn_in=10, label=name)
    rnn, lstm, big = results["rnn"], results["lstm:chrono"], results["rnn_relu:identity:1.05"]
    assert rnn.horizon is not None and rnn.horizon < 40 and rnn.decay_per_step < -0.05
    assert lstm.horizon is None or lstm.horizon > 2 * rnn.horizon
    assert lstm.decay_per_step > rnn.decay_per_step
    assert big.decay_per_step > 0 and big.norms[-1] > big.norms[0]
    assert big.spectral_radius == pytest.approx(1.05, rel=1e-4)
    assert rnn.norms.shape == (80,) and rnn.windows == 4


def test_trained_run_reads_its_validation_text(tmp_path, small_corpus, monkeypatch):
    """From the run's own token file, not from the corpus path it recorded: that path was relative, and
    another folder's file of the same name must not be read in its place."""
    import rnnkit
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "corpus.txt").write_text(small_corpus.read_text())
    monkeypatch.chdir(tmp_path / "a")
    rnnkit.train("corpus.txt", out=tmp_path / "run", hidden=16, layers=1, batch_size=4, seq_len=16,
                 max_steps=3, progress=False, precision="fp32")
    (r,) = gradflow([], [tmp_path / "run"], length=30, windows=2, burn_in=5)
    assert "trained" in r.label and r.norms.shape == (30,) and np.all(np.isfinite(r.norms))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "corpus.txt").write_text("x" * 3000)
    monkeypatch.chdir(tmp_path / "b")
    (elsewhere,) = gradflow([], [tmp_path / "run"], length=30, windows=2, burn_in=5)
    np.testing.assert_array_equal(elsewhere.norms, r.norms)
    (one,) = gradflow([], tmp_path / "run", length=30, windows=2, burn_in=5)  # one run, not a list of them
    np.testing.assert_array_equal(one.norms, r.norms)
    (tmp_path / "run" / "tokens.bin").unlink()
    with pytest.raises(RnnkitError, match=r"tokens.bin is missing\); give the text with --corpus"):
        gradflow([], [tmp_path / "run"], length=30, windows=2, burn_in=5)


def test_one_configuration_may_be_given_as_a_string(small_corpus):
    (r,) = gradflow("gru", corpus=[small_corpus], hidden=8, length=10, windows=2, burn_in=5)  # not g, r, u
    assert r.label == "gru"


def test_bad_specs_raise():
    for bad in ["lstmx", "rnn:nope", "rnn:default:zero", "rnn:default:-1", "a:b:c:d"]:
        with pytest.raises(RnnkitError):
            Spec.parse(bad)
    with pytest.raises(RnnkitError, match="identity does not apply to --cell lstm: use it with --cell rnn_relu"):
        build_untrained(Spec.parse("lstm:identity"), 10, 8, 1)


def test_cli_table_and_plot(tmp_path, small_corpus):
    out = tmp_path / "g.png"
    proc = rnnkit_cli("gradflow", "--cell", "rnn", "gru:orthogonal", "--hidden", "16", "--length", "40",
                      "--windows", "2", "--burn-in", "5", "--corpus", small_corpus, "--out", out)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[0] == "configuration" and "horizon" in lines[0]
    assert lines[2].startswith("rnn ") and lines[3].startswith("gru:orthogonal")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_input_is_one_line(tmp_path, small_corpus):
    assert_one_line_error(rnnkit_cli("gradflow", tmp_path / "missing"), "no checkpoint")
    assert_one_line_error(rnnkit_cli("gradflow", "--cell", "lstm:identity", "--corpus", small_corpus,
                                     "--out", tmp_path / "x.png"), "rnn_relu")
    short = tmp_path / "short.txt"
    short.write_text("hello world\n")
    assert_one_line_error(rnnkit_cli("gradflow", "--corpus", short, "--out", tmp_path / "x.png"), "too short")
