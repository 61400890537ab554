"""AWD-LSTM's regularisers (Merity et al. 2017): weight drop and variational dropout in every layer,
embedding dropout, locked dropout, AR, TAR and tied embeddings in the character model."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import one_line
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.cli import main
from rnnkit.data.text import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.nn.cells import CELLS, ElmanTanh, register_cell
from rnnkit.nn.dropout import dropout
from rnnkit.nn.layers import locked_mask, make_layer
from rnnkit.nn.regularisation import (
    activation_regularisation,
    embedding_dropout,
    locked_dropout,
    temporal_activation_regularisation,
    tie_weights,
)
from rnnkit.tasks.charlm import CharLM, CharLMTask, ModelConfig
from rnnkit.training.checkpoint import load_checkpoint, save_checkpoint

TINY = dict(hidden=16, layers=2, batch_size=4, seq_len=8, precision="fp32")
AWD = dict(weight_drop=0.5, variational_dropout=0.2, embedding_dropout=0.1, input_dropout=0.1,
           output_dropout=0.1, ar=2.0, tar=1.0, tie_embeddings=True)


def pair(cell, weight_drop=0.0, variational_dropout=0.0, **kw):
    """The same layer twice, with torch's (or rnnkit's) fused kernel and with the step loop."""
    torch.manual_seed(0)
    fused = make_layer(cell, 3, 5, 2, impl="fused", weight_drop=weight_drop,
                       variational_dropout=variational_dropout, **kw)
    loop = make_layer(cell, 3, 5, 2, impl="loop", weight_drop=weight_drop,
                      variational_dropout=variational_dropout, **kw)
    loop.load_state_dict(fused.state_dict())
    return fused, loop


def run(layer, x, how, seed=1):
    """Output (padded, time-major) and final state of ``layer`` on ``x`` (T, B, I) given whole, with
    lengths, or packed; ``seed`` fixes the dropout masks."""
    lengths = torch.tensor([6, 3, 5])
    torch.manual_seed(seed)
    if how == "whole":
        return layer(x)
    if how == "lengths":
        return layer(x, lengths=lengths)
    out, state = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
    return pad_packed_sequence(out, total_length=x.shape[0])[0], state


def flat(state):
    return torch.cat([s.flatten() for s in (state if isinstance(state, tuple) else (state,))])


# --- weight drop ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("how", ["whole", "lengths", "packed"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_weight_drop_fused_kernel_equals_the_step_loop(cell, how, bidirectional):
    fused, loop = pair(cell, weight_drop=0.5, variational_dropout=0.3, bidirectional=bidirectional)
    x = torch.randn(6, 3, 3)
    out_f, state_f = run(fused, x, how)
    out_l, state_l = run(loop, x, how)
    torch.testing.assert_close(out_f, out_l, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(flat(state_f), flat(state_l), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out_f, run(fused, x, how, seed=2)[0])  # the masks are drawn anew


@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_drop_runs_the_layer_on_the_dropped_matrix(cell, impl):
    """In training the layer is the undropped layer with each weight_hh replaced by one dropped copy;
    the raw weights get gradients, zero exactly where an entry was dropped."""
    torch.manual_seed(0)
    layer = make_layer(cell, 3, 5, 2, impl=impl, weight_drop=0.4)
    x = torch.randn(4, 2, 3)
    torch.manual_seed(7)
    out, _ = layer(x)
    torch.manual_seed(7)  # the same draws, by hand: one mask per layer's recurrent matrix, layer order
    dropped = {f"weight_hh_l{k}": dropout(getattr(layer, f"weight_hh_l{k}").detach(), 0.4)
               for k in range(2)}
    plain = make_layer(cell, 3, 5, 2, impl=impl)
    plain.load_state_dict({**layer.state_dict(), **dropped})
    torch.testing.assert_close(out, plain(x)[0], rtol=1e-5, atol=1e-6)
    out.sum().backward()
    for k in range(2):
        grad = getattr(layer, f"weight_hh_l{k}").grad
        assert grad is not None and grad.abs().sum() > 0
        dropped_out = dropped[f"weight_hh_l{k}"] == 0
        assert dropped_out.any() and (grad[dropped_out] == 0).all()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_eval_mode_is_exactly_the_undropped_layer(cell):
    torch.manual_seed(0)
    layer = make_layer(cell, 3, 5, 3, weight_drop=0.5, variational_dropout=0.5).eval()
    plain = make_layer(cell, 3, 5, 3).eval()
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(6, 3, 3)
    for how in ("whole", "lengths", "packed"):
        assert torch.equal(run(layer, x, how)[0], run(plain, x, how)[0])


@pytest.fixture
def inputless_cell():
    """A cell whose gates read the input only (recurrent_weight None), as minGRU and minLSTM are."""
    class NoRecurrence(ElmanTanh):
        name, recurrent_weight = "test_norecurrence", None
        torch_kernel = None

    register_cell(NoRecurrence)
    yield "test_norecurrence"
    CELLS.pop("test_norecurrence")


def test_register_cell_refuses_what_is_not_a_cell_type():
    with pytest.raises(TypeError, match="CellType subclass or instance, got 'lstm'"):
        register_cell("lstm")


def test_weight_drop_needs_a_recurrent_matrix(inputless_cell):
    with pytest.raises(RnnkitError) as e:
        make_layer(inputless_cell, 3, 5, weight_drop=0.5)
    assert "has none" in one_line(e)
    make_layer(inputless_cell, 3, 5, variational_dropout=0.5)  # the other one is fine
    with pytest.raises(RnnkitError) as e:
        ModelConfig(cell=inputless_cell, hidden=8, layers=1, vocab_size=5, weight_drop=0.5).validate()
    assert "--weight-drop" in one_line(e)


def test_layer_refuses_bad_rates():
    for kw in (dict(weight_drop=1.0), dict(variational_dropout=-0.1), dict(dropout=0.2, variational_dropout=0.2)):
        with pytest.raises(ValueError):
            make_layer("lstm", 3, 5, 2, **kw)


# --- variational dropout -------------------------------------------------------------------------

def test_locked_dropout_shares_one_mask_per_sequence_over_time():
    x = torch.ones(7, 4, 50)
    torch.manual_seed(0)
    y = locked_dropout(x, 0.5)
    assert torch.equal(y, y[:1].expand_as(y))                     # the same mask at every step
    assert set(y.unique().tolist()) == {0.0, 2.0}                 # kept units scaled by 1 / (1 - p)
    assert all(not torch.equal(y[0, a], y[0, b]) for a in range(4) for b in range(a))  # not across sequences
    yb = locked_dropout(x.transpose(0, 1), 0.5, batch_first=True)
    assert torch.equal(yb, yb[:, :1].expand_as(yb))
    assert locked_dropout(x, 0.5, training=False) is x


@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("how", ["whole", "lengths", "packed"])
def test_variational_dropout_between_layers_is_one_mask_per_sequence(impl, how):
    """The two-layer layer in training is layer 1, its output times one (B, H) mask, then layer 2."""
    torch.manual_seed(0)
    layer = make_layer("lstm", 3, 5, 2, impl=impl, variational_dropout=0.5)
    first, second = make_layer("lstm", 3, 5, 1), make_layer("lstm", 5, 5, 1)
    first.load_state_dict({k: v for k, v in layer.state_dict().items() if "_l0" in k})
    second.load_state_dict({k.replace("_l1", "_l0"): v for k, v in layer.state_dict().items() if "_l1" in k})
    x = torch.randn(6, 3, 3)
    out, _ = run(layer, x, how, seed=3)
    h1 = run(first, x, how)[0]
    torch.manual_seed(3)
    mask = locked_mask(h1, 3, 0.5)
    assert mask.shape == (3, 5)
    expected = run(second, h1 * mask.unsqueeze(0), how)[0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_variational_kinds_replace_per_step_dropout_only_where_they_act():
    """A task's --dropout keeps its meaning elsewhere; between layers (and, in the character model,
    on the output) a variational rate takes its place."""
    cfg = dict(cell="lstm", hidden=8, layers=2, vocab_size=5, dropout=0.3)
    plain = CharLM(ModelConfig(**cfg))
    assert plain.rnn.dropout == 0.3 and plain.drop.p == 0.3
    between = CharLM(ModelConfig(**cfg, variational_dropout=0.2))
    assert between.rnn.dropout == 0 and between.rnn.variational_dropout == 0.2 and between.drop.p == 0.3
    torch.manual_seed(0)
    out = CharLM(ModelConfig(**cfg, output_dropout=0.5)).train()
    x = torch.randint(0, 5, (3, 6))
    _, _, (raw, dropped) = out(x, outputs=True)
    kept = dropped != 0
    assert torch.equal(kept, kept[:1].expand_as(kept))  # one mask per sequence, not the per-step --dropout
    torch.testing.assert_close(dropped[kept], raw[kept] * 2)


# --- around the layer: embedding dropout, AR, TAR, tying -----------------------------------------

def test_embedding_dropout_drops_whole_rows():
    w = torch.randn(40, 6)
    torch.manual_seed(0)
    d = embedding_dropout(w, 0.5)
    zero = (d == 0).all(1)
    assert 0 < zero.sum() < 40
    torch.testing.assert_close(d[~zero], w[~zero] * 2)
    assert embedding_dropout(w, 0.5, training=False) is w


def test_ar_and_tar_are_the_hand_computed_formulas():
    out = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]], [[0.0, 6.0]]])  # (T=3, B=1, H=2)
    assert activation_regularisation(out, 2.0).item() == pytest.approx(2.0 * (1 + 4 + 9 + 16 + 0 + 36) / 6)
    # differences: (2, 2) and (-3, 2)
    assert temporal_activation_regularisation(out, 0.5).item() == pytest.approx(0.5 * (4 + 4 + 9 + 4) / 4)
    assert temporal_activation_regularisation(out.transpose(0, 1), 0.5, time_dim=1).item() == pytest.approx(2.625)
    assert temporal_activation_regularisation(out[:1], 0.5).item() == 0.0


def test_ar_and_tar_sum_bf16_outputs_in_fp32_and_keep_float64():
    """bf16 outputs (autocast training) give an fp32 penalty equal to the fp32 formula on the same values."""
    torch.manual_seed(0)
    out = torch.randn(8, 4, 16).bfloat16().requires_grad_()
    wide = out.detach().double()
    ar, tar = activation_regularisation(out, 2.0), temporal_activation_regularisation(out, 1.0)
    assert ar.dtype == tar.dtype == torch.float32
    assert ar.item() == pytest.approx(2.0 * wide.pow(2).mean().item(), rel=1e-5)
    assert tar.item() == pytest.approx((wide[1:] - wide[:-1]).pow(2).mean().item(), rel=1e-2)  # differences in bf16
    (ar + tar).backward()
    assert out.grad.dtype == torch.bfloat16 and torch.isfinite(out.grad).all()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    assert activation_regularisation(x, 1.0).dtype == torch.float64
    def penalty(t):
        return activation_regularisation(t, 2.0) + temporal_activation_regularisation(t, 1.0)
    assert torch.autograd.gradcheck(penalty, (x,))


def test_the_training_loss_adds_ar_and_tar():
    vocab = Vocab("abcdefg")
    tokens = torch.randint(0, 7, (400,)).numpy()
    cfg = dict(cell="lstm", hidden=8, layers=2, vocab_size=7)
    torch.manual_seed(0)
    model = CharLM(ModelConfig(**cfg, ar=2.0, tar=3.0), vocab)
    task = CharLMTask(model, tokens, tokens[:50], batch_size=2, seq_len=5)
    loss, n = task.training_loss(0, 0)
    x, y = task.batcher.batch(0)
    logits, _, (raw, dropped) = model(x, outputs=True)
    assert torch.equal(raw, dropped)  # no dropout configured
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    expected = ce + 2.0 * raw.pow(2).mean() + 3.0 * (raw[1:] - raw[:-1]).pow(2).mean()
    assert n == 10
    torch.testing.assert_close(loss, expected)


def test_tied_embeddings_share_one_parameter_through_a_checkpoint(tmp_path):
    cfg = dict(cell="lstm", hidden=8, layers=1, vocab_size=7)
    tied = CharLM(ModelConfig(**cfg, tie_embeddings=True), Vocab("abcdefg"))
    untied = CharLM(ModelConfig(**cfg), Vocab("abcdefg"))
    assert tied.head.weight is tied.embed.weight
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters()) == 7 * 8
    assert "head.weight" not in tied.state_dict()
    state = tied.state_dict()
    state["embed.weight"] = torch.randn(7, 8)  # as a moving average of the weights is saved
    meta = {"task": "charlm", "model": {**tied.config.__dict__}, "vocab": "abcdefg"}
    save_checkpoint(tmp_path / "m.pt", {"model": state, "meta": json.dumps(meta)})
    loaded = CharLM.from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    assert loaded.head.weight is loaded.embed.weight
    assert torch.equal(loaded.head.weight, state["embed.weight"])
    with pytest.raises(RnnkitError) as e:
        tie_weights(torch.nn.Embedding(7, 8), torch.nn.Linear(9, 7))
    assert "cannot tie" in one_line(e)


# --- the command line and old runs ---------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(small_corpus, tmp_path_factory):
    """A few thousand characters: enough to train, sample and evaluate in well under a second."""
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(small_corpus.read_text(encoding="utf-8")[:5000], encoding="utf-8")
    return path


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rnnkit_train_with_every_regulariser_then_sample_eval_and_resume(corpus, tmp_path, capsys):
    run_dir = tmp_path / "run"
    flags = ["--weight-drop", 0.5, "--variational-dropout", 0.2, "--embedding-dropout", 0.1,
             "--input-dropout", 0.1, "--output-dropout", 0.1, "--ar", 2, "--tar", 1, "--tie-embeddings"]
    code, out, err = cli(capsys, "train", corpus, "--out", run_dir, "--hidden", 16, "--layers", 2,
                         "--batch-size", 4, "--seq-len", 8, "--max-steps", 3, "--precision", "fp32",
                         "--sample-length", 0, *flags)
    assert code == 0, err
    model_cfg = json.loads((run_dir / "config.json").read_text())["model"]
    assert {k: model_cfg[k] for k in AWD} == AWD
    assert model_cfg["dropout"] == 0.0  # the variational kinds replace the recommended per-step dropout
    model = CharLM.load(run_dir, device="cpu")
    assert model.head.weight is model.embed.weight and model.rnn.weight_drop == 0.5
    code, out, err = cli(capsys, "sample", run_dir, "--length", 20, "--seed", 0)
    assert code == 0 and len(out.strip()) > 0, err
    code, out, err = cli(capsys, "eval", run_dir, corpus)
    assert code == 0 and "bpc" in out, err
    code, out, err = cli(capsys, "train", "--resume", run_dir, "--max-steps", 4, "--sample-length", 0)
    assert code == 0, err
    code, out, err = cli(capsys, "train", "--resume", run_dir, "--max-steps", 5, "--ar", 1, "--sample-length", 0)
    assert code == 1 and "drop --ar" in err


@pytest.mark.parametrize("flags,fragment", [
    (["--weight-drop", "1.5"], "--weight-drop: must be in [0, 1)"),
    (["--ar", "-1"], "--ar: must be >= 0"),
    (["--input-dropout", "1"], "--input-dropout: must be in [0, 1)"),
    (["--tar", "x"], "--tar: expected a number"),
])
def test_bad_values_are_one_line_errors(corpus, tmp_path, capsys, flags, fragment):
    try:
        code = main(["train", str(corpus), "--out", str(tmp_path / "r"), "--max-steps", "1", *flags])
    except SystemExit as e:  # argparse's usage error
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "r").exists()
    with pytest.raises(RnnkitError) as e:
        rnnkit.train(str(corpus), out=tmp_path / "api", max_steps=1, weight_drop=1.5, progress=False)
    assert "--weight-drop must be in [0, 1)" in one_line(e)


def test_a_run_from_before_the_regularisers_still_loads_and_resumes(corpus, tmp_path, capsys):
    """A run folder whose config and checkpoints lack every new option, as earlier versions wrote them."""
    run_dir = tmp_path / "old"
    LATER = {*AWD, "embed"}  # noqa: N806 -- the model options added since
    rnnkit.train(str(corpus), out=run_dir, max_steps=2, progress=False, **TINY)
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(run_dir / name)
        meta = json.loads(state["meta"])
        meta["model"] = {k: v for k, v in meta["model"].items() if k not in LATER}
        assert set(meta["model"]) == {"cell", "hidden", "layers", "dropout", "init", "vocab_size"}
        state["meta"] = json.dumps(meta)
        save_checkpoint(run_dir / name, {k: v for k, v in state.items() if k != "format"})
    config = json.loads((run_dir / "config.json").read_text())
    config["model"] = {k: v for k, v in config["model"].items() if k not in LATER}
    (run_dir / "config.json").write_text(json.dumps(config))
    model = CharLM.load(run_dir, device="cpu")
    assert model.config.weight_drop == 0 and not model.config.tie_embeddings
    assert model.evaluate("to be or not to be")["bpc"] > 0
    code, _, err = cli(capsys, "sample", run_dir, "--length", 10, "--seed", 0)
    assert code == 0, err
    with pytest.raises(RnnkitError, match="conflicts"):
        rnnkit.train(resume=run_dir, max_steps=3, weight_drop=0.5, progress=False)
    _, result = rnnkit.train(resume=run_dir, max_steps=3, weight_drop=0.0, progress=False)
    assert result.steps == 3


# --- the layer options in the other tasks --------------------------------------------------------

LAYER_FLAGS = ["--weight-drop", "0.5", "--variational-dropout", "0.2"]


@pytest.mark.parametrize("command", [["forecast", "fit"], ["forecast", "backtest"], ["classify", "train"],
                                     ["music", "train"], ["speech", "train"]])
def test_every_task_with_dropout_takes_the_layer_options(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--weight-drop" in out and "--variational-dropout" in out
    with pytest.raises(SystemExit) as e:
        main([*command, "x", "--weight-drop", "1.5"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "--weight-drop: must be in [0, 1)" in err


def test_forecaster_builds_saves_and_loads_the_layer_options(tmp_path):
    import numpy as np
    import pandas as pd

    from rnnkit import Forecaster

    t = np.arange(60)
    df = pd.DataFrame({"date": pd.date_range("2000-01-01", periods=60, freq="MS"), "y": 10 + np.sin(t / 2)})
    f = Forecaster(input_len=12, hidden=8, layers=2, dropout=0.3, max_steps=2, progress=False, out=tmp_path / "f",
                   weight_drop=0.5, variational_dropout=0.2).fit(df, target="y", horizon=2)
    for net in (f.net, Forecaster.load(tmp_path / "f").net):
        assert (net.rnn.weight_drop, net.rnn.variational_dropout, net.rnn.dropout) == (0.5, 0.2, 0.0)
    with pytest.raises(RnnkitError) as e:
        Forecaster(weight_drop=-1)
    assert "--weight-drop" in one_line(e)


def test_classifier_builds_saves_and_loads_the_layer_options(tmp_path):
    from test_classify import FAST, synthetic

    from rnnkit.tasks.classify import Classifier

    clf = Classifier(layers=2, max_steps=2, out=tmp_path / "c", weight_drop=0.5, variational_dropout=0.2,
                     **FAST).fit(synthetic(40))
    for net in (clf.net, Classifier.load(tmp_path / "c").net):
        assert (net.rnn.weight_drop, net.rnn.variational_dropout, net.rnn.dropout) == (0.5, 0.2, 0.0)
        assert net.drop.p == 0.5  # --dropout still drops the embeddings and the pooled vector


def test_music_model_builds_saves_and_loads_the_layer_options(tmp_path):
    from test_music import chorale

    from rnnkit.tasks.music import MusicModel

    m = MusicModel(output="independent", hidden=8, layers=2, seq_len=16, batch_size=2, out=tmp_path / "m",
                   max_steps=2, weight_drop=0.5, variational_dropout=0.2)
    m.fit({"train": [chorale(0), chorale(1)], "valid": [chorale(2)]})
    for net in (m.net, MusicModel.load(tmp_path / "m").net):
        assert (net.rnn.weight_drop, net.rnn.variational_dropout) == (0.5, 0.2)


def test_speech_model_takes_the_layer_options():
    from rnnkit.tasks.speech import AcousticModel, FeatureConfig, ModelConfig, SpeechRecognizer

    rec = SpeechRecognizer(weight_drop=0.5, variational_dropout=0.2, max_steps=1)
    cfg = ModelConfig(labels="ab", features=FeatureConfig().to_dict(), **rec.options)
    rnn = AcousticModel(cfg).rnn
    assert (rnn.weight_drop, rnn.variational_dropout, rnn.dropout) == (0.5, 0.2, 0.0)
    old = {k: v for k, v in cfg.__dict__.items() if k not in ("weight_drop", "variational_dropout")}
    assert AcousticModel(ModelConfig(**old)).rnn.weight_drop == 0  # a checkpoint from before the options
