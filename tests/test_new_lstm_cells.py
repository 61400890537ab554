"""The layer-normalised LSTM (lnlstm) and the multiplicative LSTM (mlstm) against their equations.

Each reference below is written from the papers' equations, step by step, in float64, sharing
nothing with rnnkit's cells but the parameter tensors. What every registered cell is checked for
(padded and packed batches against per-sequence runs, padding that never leaks, ``unroll``, the
step generator, gradient norms) runs over the whole registry in test_variable_length.py,
test_layers.py, test_charlm.py and test_gradflow.py, these two cells included.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY, rnnkit_cli
from test_charlm import assert_generator_matches_model

from rnnkit.inspect.gradflow import Spec, build_untrained, gradflow, plot_gradflow
from rnnkit.inspect.neurons import neurons
from rnnkit.nn.cells import CELLS, Cell
from rnnkit.nn.init import init_recurrent, spectral_radius
from rnnkit.nn.layers import make_layer
from rnnkit.tasks.charlm import CharLM

NEW = ["lnlstm", "mlstm"]
INPUT, HIDDEN, T, B = 3, 4, 5, 2
EPS = 1e-5
TOL = {"atol": 1e-10, "rtol": 1e-8}


# --- the references ------------------------------------------------------------------------

def ln(z, gain, shift):
    """Layer normalisation of each row over its elements (biased variance), as in Ba et al."""
    mu = z.mean(-1, keepdim=True)
    var = ((z - mu) ** 2).mean(-1, keepdim=True)
    out = gain * (z - mu) / torch.sqrt(var + EPS)
    return out if shift is None else out + shift


def lnlstm_step(x, h, c, w):
    H = h.shape[-1]
    gates = ln(x @ w["weight_ih"].T, w["ln_ih_gain"], w.get("ln_ih_bias")) \
        + ln(h @ w["weight_hh"].T, w["ln_hh_gain"], w.get("ln_hh_bias"))
    if "bias_gates" in w:
        gates = gates + w["bias_gates"]
    i, f = torch.sigmoid(gates[:, :H]), torch.sigmoid(gates[:, H:2 * H])
    g, o = torch.tanh(gates[:, 2 * H:3 * H]), torch.sigmoid(gates[:, 3 * H:])
    c = f * c + i * g
    h = o * torch.tanh(ln(c, w["ln_c_gain"], w.get("ln_c_bias")))
    return h, c


def mlstm_step(x, h, c, w):
    H = h.shape[-1]
    w_x, w_mx = w["weight_ih"][:4 * H], w["weight_ih"][4 * H:]  # the gates' input weights, then W_mx
    m = (x @ w_mx.T) * (h @ w["weight_hm"].T)
    gates = x @ w_x.T + m @ w["weight_mh"].T
    if "bias_gates" in w:
        gates = gates + w["bias_gates"]
    i, f = torch.sigmoid(gates[:, :H]), torch.sigmoid(gates[:, H:2 * H])
    g, o = torch.tanh(gates[:, 2 * H:3 * H]), torch.sigmoid(gates[:, 3 * H:])
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


STEPS = {"lnlstm": lnlstm_step, "mlstm": mlstm_step}


def reference_direction(cell, x, h, c, w):
    """One layer and direction over ``x`` (T, B, I), a plain loop over time."""
    outs = []
    for t in range(x.shape[0]):
        h, c = STEPS[cell](x[t], h, c, w)
        outs.append(h)
    return torch.stack(outs), h, c


def reference_stack(cell, layer, x, h0, c0):
    """The whole layer: layers bottom to top, the backward direction on the time-reversed input."""
    hs, cs = [], []
    for k in range(layer.num_layers):
        outs = []
        for d in range(layer.num_directions):
            i = k * layer.num_directions + d
            xd = x if d == 0 else x.flip(0)
            out, h, c = reference_direction(cell, xd, h0[i], c0[i], layer.layer_weights(k, d))
            outs.append(out if d == 0 else out.flip(0))
            hs.append(h)
            cs.append(c)
        x = torch.cat(outs, -1)
    return x, torch.stack(hs), torch.stack(cs)


def random_layer(cell, num_layers=1, bidirectional=False, bias=True, seed=0):
    """A float64 layer with every parameter random, the normalisations' gains and shifts too."""
    torch.manual_seed(seed)
    layer = make_layer(cell, INPUT, HIDDEN, num_layers, bidirectional=bidirectional, bias=bias).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.6)
    return layer


def inputs(layer, seed=1):
    g = torch.Generator().manual_seed(seed)
    n = layer.num_layers * layer.num_directions
    x = torch.randn(T, B, INPUT, dtype=torch.float64, generator=g)
    h0 = torch.randn(n, B, HIDDEN, dtype=torch.float64, generator=g)
    c0 = torch.randn(n, B, HIDDEN, dtype=torch.float64, generator=g)
    return x, h0, c0


def values_and_grads(layer, run, x, h0, c0):
    """Outputs, final state and the gradients of a fixed weighted loss w.r.t. input, state and parameters."""
    leaves = [t.clone().requires_grad_() for t in (x, h0, c0)]
    out, h, c = run(*leaves)
    g = torch.Generator().manual_seed(7)
    loss = sum((v * torch.randn(v.shape, dtype=v.dtype, generator=g)).sum() for v in (out, h, c))
    params = list(layer.parameters())
    grads = torch.autograd.grad(loss, leaves + params)
    return [out, h, c], grads


# --- the cells against their equations -------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("cell", NEW)
def test_layer_equals_the_equations(cell, impl, bias):
    """A one-layer run against the reference: outputs, final (h, c), and every gradient."""
    layer = random_layer(cell, bias=bias)
    layer.impl = impl
    x, h0, c0 = inputs(layer)

    def ours(x, h0, c0):
        out, (h, c) = layer(x, (h0, c0))
        return out, h, c

    def ref(x, h0, c0):
        return reference_stack(cell, layer, x, h0, c0)

    got, got_grads = values_and_grads(layer, ours, x, h0, c0)
    want, want_grads = values_and_grads(layer, ref, x, h0, c0)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    names = ["x", "h0", "c0"] + [n for n, _ in layer.named_parameters()]
    for name, a, b in zip(names, got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"d/d{n}: {m}")


@pytest.mark.parametrize("cell", NEW)
def test_stacked_bidirectional_equals_the_equations(cell):
    layer = random_layer(cell, num_layers=2, bidirectional=True, seed=3)
    x, h0, c0 = inputs(layer, seed=4)

    def ours(x, h0, c0):
        out, (h, c) = layer(x, (h0, c0))
        return out, h, c

    got, got_grads = values_and_grads(layer, ours, x, h0, c0)
    want, want_grads = values_and_grads(layer, lambda *a: reference_stack(cell, layer, *a), x, h0, c0)
    for a, b in zip(got + list(got_grads), want + list(want_grads), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("cell", NEW)
def test_cell_module_is_one_step_of_the_equations(cell):
    torch.manual_seed(0)
    module = Cell(cell, INPUT, HIDDEN).double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.6)
    x = torch.randn(B, INPUT, dtype=torch.float64)
    h, c = torch.randn(B, HIDDEN, dtype=torch.float64), torch.randn(B, HIDDEN, dtype=torch.float64)
    got = module(x, (h, c))
    want = STEPS[cell](x, h, c, module.weights())
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    assert all(s.shape == (B, HIDDEN) for s in module(x))  # a zero state when none is given


def test_parameters_and_their_initialisation():
    ln_layer = make_layer("lnlstm", INPUT, HIDDEN)
    w = ln_layer.layer_weights(0)
    assert {n: tuple(p.shape) for n, p in w.items()} == {
        "weight_ih": (4 * HIDDEN, INPUT), "weight_hh": (4 * HIDDEN, HIDDEN), "bias_gates": (4 * HIDDEN,),
        "ln_ih_gain": (4 * HIDDEN,), "ln_ih_bias": (4 * HIDDEN,), "ln_hh_gain": (4 * HIDDEN,),
        "ln_hh_bias": (4 * HIDDEN,), "ln_c_gain": (HIDDEN,), "ln_c_bias": (HIDDEN,)}
    for part in ("ih", "hh", "c"):
        assert torch.equal(w[f"ln_{part}_gain"], torch.ones_like(w[f"ln_{part}_gain"]))
        assert not w[f"ln_{part}_bias"].any()
    assert set(make_layer("lnlstm", INPUT, HIDDEN, bias=False).layer_weights(0)) == {
        "weight_ih", "weight_hh", "ln_ih_gain", "ln_hh_gain", "ln_c_gain"}

    m_layer = make_layer("mlstm", INPUT, HIDDEN)
    assert {n: tuple(p.shape) for n, p in m_layer.layer_weights(0).items()} == {
        "weight_ih": (5 * HIDDEN, INPUT), "weight_hm": (HIDDEN, HIDDEN), "weight_mh": (4 * HIDDEN, HIDDEN),
        "bias_gates": (4 * HIDDEN,)}
    bound = 1 / math.sqrt(HIDDEN)
    assert all(p.abs().max() <= bound for p in m_layer.parameters())
    for name in NEW:
        cell = CELLS[name]
        assert cell.torch_kernel is None and cell.torch_layer is None and not cell.additive
        assert cell.summary and "\n" not in cell.summary and cell.state_names == ("h", "c")


@pytest.mark.parametrize("cell", NEW)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_every_listed_init_scheme(cell, bias):
    torch.manual_seed(0)
    layer = make_layer(cell, INPUT, HIDDEN, 2, bidirectional=True, bias=bias)
    rec = layer.cell.recurrent_weight
    forget = slice(HIDDEN, 2 * HIDDEN)      # gate order i, f, g, o
    inputs_ = slice(0, HIDDEN)
    x = torch.randn(T, B, INPUT)
    for scheme in layer.cell.init_schemes:
        init_recurrent(layer, scheme, t_max=50)
        for k in range(2):
            for d in range(2):
                w = layer.layer_weights(k, d)
                for role in w:  # normalisation gains stay at 1 whatever the scheme
                    if role.endswith("_gain"):
                        assert torch.equal(w[role], torch.ones_like(w[role])), (scheme, role)
                if scheme == "orthogonal":
                    for block in w[rec].split(HIDDEN):
                        torch.testing.assert_close(block @ block.T, torch.eye(HIDDEN), atol=1e-5, rtol=0)
                    assert not any(w[r].any() for r in w if r.startswith("bias"))
                if scheme in ("forget1", "chrono") and bias:
                    b = w["bias_gates"]
                    if scheme == "forget1":
                        assert torch.equal(b[forget], torch.ones(HIDDEN))
                    else:
                        assert (b[forget] >= 0).all() and (b[forget] <= math.log(49) + 1e-6).all()
                        torch.testing.assert_close(b[inputs_], -b[forget])
                    for other in layer.cell.gate_biases[1:]:  # the other gate biases add nothing there
                        if other in w:
                            assert not w[other][forget].any() and not w[other][inputs_].any()
        out, _ = layer(x)
        assert torch.isfinite(out).all(), scheme


def test_lnlstm_ignores_the_scale_of_its_recurrent_matrix():
    """What its docstring says of gradflow's spectral radius: LN divides out the size of W_hh h."""
    layer = random_layer("lnlstm")
    x, h0, c0 = inputs(layer)
    out, _ = layer(x, (h0, c0))
    with torch.no_grad():
        layer.weight_hh_l0.mul_(3.0)
    scaled, _ = layer(x, (h0, c0))
    torch.testing.assert_close(scaled, out, atol=1e-4, rtol=0)


def test_gradflow_scales_the_mlstm_state_matrix():
    model = build_untrained(Spec.parse("mlstm:orthogonal:1.5"), vocab_size=11, hidden=8, layers=1)
    w = model.rnn.layer_weights(0)
    assert spectral_radius(w["weight_hm"], 8) == pytest.approx(1.5, rel=1e-4)


# --- the char-LM, its sampler, and the command line ---------------------------------------

@pytest.mark.parametrize("cell", NEW)
def test_step_generator_float32_matches_the_model_without_biases(cell):
    """With biases, every cell and step type is checked in test_charlm.py."""
    assert_generator_matches_model(cell, torch.float32, 1e-5, hidden=8, layers=2, bias=False)


@pytest.fixture(scope="module")
def runs(small_corpus, tmp_path_factory):
    """A few training steps of each cell, from the command line as a user runs it."""
    root = tmp_path_factory.mktemp("new_cells")
    out = {}
    for cell in NEW:
        out[cell] = root / cell
        proc = rnnkit_cli("train", small_corpus, "--out", out[cell], "--cell", cell, "--max-steps", "3",
                          "--eval-every", "3", *TINY, "--hidden", "16", "--seq-len", "16", "--batch-size", "4")
        assert proc.returncode == 0, proc.stderr
        assert "val bpc" in proc.stdout
    return out


def test_cli_trains_and_the_model_samples(runs):
    for cell, run in runs.items():
        model = CharLM.load(run, device="cpu")
        assert model.config.cell == cell and model.rnn.cell.name == cell
        (text,) = model.sample(20, prime="The", seed=0)
        assert len(text) == 20
        assert model.sample(20, prime="The", seed=0) == [text]


def test_gradflow_and_neurons_run_on_them(runs, small_corpus, tmp_path):
    """The tools' Python faces, which their commands call (their command lines are tested in
    test_gradflow.py and test_neurons.py): untrained configurations and the trained runs."""
    results = gradflow(["lnlstm:chrono", "mlstm:orthogonal"], list(runs.values()), corpus=[str(small_corpus)],
                       hidden=8, length=20, windows=2, burn_in=3)
    assert [r.label.split()[0] for r in results] == ["lnlstm:chrono", "mlstm:orthogonal", "lnlstm", "mlstm"]
    assert "(mlstm 1x16, trained)" in results[3].label
    for r in results:
        assert r.norms.shape == (20,) and np.isfinite(r.norms).all() and r.norms[0] > 0
        assert r.spectral_radius > 0
    assert results[1].spectral_radius == pytest.approx(1.0, rel=1e-4)  # orthogonal weight_hm
    plot_gradflow(results, tmp_path / "g.png")
    text = small_corpus.read_text(encoding="utf-8")[:300]
    for cell, run in runs.items():
        rec, matches, unit = neurons(run, text, out=tmp_path / cell, top=1)
        assert rec.units.shape == (300, 2 * 16) and rec.names[16] == "c0:0"
        assert np.isfinite(rec.units).all() and np.isfinite(rec.confidence[1:]).all()
        assert matches and unit in rec.names
        assert (tmp_path / cell / "neurons.html").exists() and (tmp_path / cell / "neurons.png").exists()
