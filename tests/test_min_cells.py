"""minGRU and minLSTM (Feng et al. 2024): the parallel log-space scan against the step, the step against the
paper's equations, sampling against training-time outputs, and the commands and tools on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY, rnnkit_cli
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.data.text import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.inspect.gradflow import Spec, build_untrained, gradflow
from rnnkit.inspect.neurons import record, top_units
from rnnkit.nn.cells import CELLS, Cell, log_space_scan
from rnnkit.nn.init import init_recurrent
from rnnkit.nn.layers import make_layer
from rnnkit.nn.stepping import StepGenerator
from rnnkit.tasks.charlm import CharLM, ModelConfig

MIN_CELLS = ["mingru", "minlstm"]
INPUT, HIDDEN = 3, 4
LENGTHS = [7, 3, 5, 1]
TOL = {"atol": 1e-10, "rtol": 1e-8}


def g(x):
    """The paper's positive candidate activation, written out again."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def reference(cell: str, x, h, w):
    """One layer, one direction, as a plain loop over the paper's equations (Feng et al. 2024, sections 3.1-3.2)."""
    outs = []
    for t in range(x.shape[0]):
        pre = x[t] @ w["weight_ih"].T + w["bias_ih"]
        if cell == "mingru":
            z = torch.sigmoid(pre[:, :HIDDEN])
            h_tilde = g(pre[:, HIDDEN:])
            h = (1 - z) * h + z * h_tilde
        else:
            f, i = torch.sigmoid(pre[:, :HIDDEN]), torch.sigmoid(pre[:, HIDDEN:2 * HIDDEN])
            h_tilde = g(pre[:, 2 * HIDDEN:])
            f_norm, i_norm = f / (f + i), i / (f + i)
            h = f_norm * h + i_norm * h_tilde
        outs.append(h)
    return torch.stack(outs), h


def pair(cell: str, num_layers: int = 2, bidirectional: bool = True):
    """The same layer twice: the parallel scan (fused) and the step loop."""
    torch.manual_seed(0)
    scan = make_layer(cell, INPUT, HIDDEN, num_layers, bidirectional=bidirectional, impl="fused").double()
    loop = make_layer(cell, INPUT, HIDDEN, num_layers, bidirectional=bidirectional, impl="loop").double()
    loop.load_state_dict(scan.state_dict())
    with torch.no_grad():  # gates away from 1/2, candidates on both sides of 0
        for p in [*scan.parameters(), *loop.parameters()]:
            p.mul_(3)
    return scan, loop


def signed_state(layer, batch: int, scale: float = 2.0):
    """An initial state of both signs and zeros, as a state carried from an earlier segment can be."""
    g_ = torch.Generator().manual_seed(5)
    h0 = scale * torch.randn(layer.num_layers * layer.num_directions, batch, HIDDEN, dtype=torch.float64, generator=g_)
    h0[..., 0] = 0.0
    h0[..., 1] = -h0[..., 1].abs()
    return h0


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_registered_with_input_weights_only(cell):
    ct = CELLS[cell]
    assert ct.recurrent_weight is None and not ct.additive and ct.state_names == ("h",)
    layer = make_layer(cell, INPUT, HIDDEN, 2, bidirectional=True)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {f"{w}_l{k}{d}" for w in ("weight_ih", "bias_ih") for k in (0, 1) for d in ("", "_reverse")}
    assert layer.weight_ih_l1.shape == (ct.gates * HIDDEN, 2 * HIDDEN)
    assert {n for n, _ in Cell(cell, INPUT, HIDDEN, bias=False).named_parameters()} == {"weight_ih"}
    assert ct.sequence_kernel(torch.device("cpu"), True) is not None  # the scan, on every device
    assert ct.sequence_kernel(torch.device("cuda"), False) is not None


@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_layer_equals_the_equations(cell, impl):
    """Both forms against a plain loop over the paper's equations, from a negative/zero initial state."""
    scan, loop = pair(cell, num_layers=1, bidirectional=False)
    layer = scan if impl == "fused" else loop
    x = torch.randn(9, 3, INPUT, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    h0 = signed_state(layer, 3)
    out, last = layer(x, h0)
    expected, expected_last = reference(cell, x, h0[0], layer.layer_weights(0))
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(last[0], expected_last, **TOL)
    # and the module form of one step
    one = Cell(cell, INPUT, HIDDEN).double()
    one.load_state_dict(layer.layer_weights(0))
    torch.testing.assert_close(one(x[0], h0[0]), expected[0], **TOL)


def run_layout(layer, x, h0, layout):
    """Outputs at valid steps and the final state, for a full, padded (lengths=) or packed batch."""
    if layout == "full":
        out, last = layer(x, h0)
        return [out], last
    if layout == "lengths":
        out, last = layer(x, h0, lengths=LENGTHS)
        return [out[:n, b] for b, n in enumerate(LENGTHS)], last
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    out, last = layer(packed, h0)
    out, lengths = pad_packed_sequence(out)
    assert lengths.tolist() == LENGTHS
    return [out[:n, b] for b, n in enumerate(LENGTHS)], last


def values_and_grads(layer, x, h0, layout):
    """Outputs, last state and every gradient of a random linear loss (its weights drawn in float64)."""
    layer.zero_grad(set_to_none=True)
    x, h0 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    outs, last = run_layout(layer, x, h0, layout)
    gen = torch.Generator().manual_seed(9)
    loss = sum((o * torch.randn(o.shape, dtype=torch.float64, generator=gen)).sum() for o in outs)
    loss = loss + (last * torch.randn(last.shape, dtype=torch.float64, generator=gen)).sum()
    loss.backward()
    return [*outs, last, x.grad, h0.grad, *(p.grad for p in layer.parameters())]


@pytest.mark.parametrize("layout", ["full", "lengths", "packed"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_scan_equals_step_values_and_gradients(cell, bidirectional, layout):
    """The parallel form (training) and the sequential form (sampling) are one function: stacked, both
    directions, padded and packed, from a signed initial state; outputs, final states and every gradient."""
    scan, loop = pair(cell, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(7, len(LENGTHS), INPUT, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    h0 = signed_state(scan, len(LENGTHS))
    for a, b in zip(values_and_grads(scan, x, h0, layout), values_and_grads(loop, x, h0, layout), strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_log_space_scan_against_the_recurrence():
    gen = torch.Generator().manual_seed(3)
    log_a = -4 * torch.rand(12, 2, 5, dtype=torch.float64, generator=gen)
    log_b = 3 * torch.randn(12, 2, 5, dtype=torch.float64, generator=gen)
    h0 = torch.tensor([[-3.0, 0.0, 1.5, -0.0, 7.0]], dtype=torch.float64).expand(2, 5)
    h, expected = h0, []
    for t in range(12):
        h = log_a[t].exp() * h + log_b[t].exp()
        expected.append(h)
    for chunk in (1, 5, 12, 128):  # chunks of any size, the last one short or not
        torch.testing.assert_close(log_space_scan(log_a, log_b, h0, chunk), torch.stack(expected), **TOL)
    args = (log_a[:6, :1, :3].clone().requires_grad_(), log_b[:6, :1, :3].clone().requires_grad_(),
            h0[:1, :3].clone().requires_grad_())
    assert torch.autograd.gradcheck(log_space_scan, args)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_long_and_saturated_sequences_stay_finite(cell):
    """T = 2000 in float32 with weights large enough to saturate every gate: outputs and gradients finite,
    and the scan still tracks the float64 step loop."""
    torch.manual_seed(4)
    layer = make_layer(cell, 2, 3)
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(40)
    x = torch.randn(2000, 2, 2, requires_grad=True)
    h0 = torch.tensor([[[-5.0, 0.0, 3.0], [1e-30, -1e-30, 0.0]]], requires_grad=True)
    out, last = layer(x, h0)
    (out.sum() + last.sum()).backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all() and torch.isfinite(h0.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    ref = make_layer(cell, 2, 3, impl="loop").double()
    ref.load_state_dict(layer.state_dict())
    with torch.no_grad():
        expected, _ = ref(x[:300].double(), h0.double())
    torch.testing.assert_close(out[:300].double(), expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_float32_scan_keeps_its_precision_on_long_sequences(cell):
    """Over 2000 steps the float32 scan stays within 3e-5 of the float64 step loop (chunked, ``log A`` stays small;
    one scan over all 2000 steps is off by about 1.5e-4 here)."""
    torch.manual_seed(0)
    layer = make_layer(cell, 3, 4)
    ref = make_layer(cell, 3, 4, impl="loop").double()
    ref.load_state_dict(layer.state_dict())
    x, h0 = torch.randn(2000, 2, 3), 5 * torch.randn(1, 2, 4)
    with torch.no_grad():
        out, _ = layer(x, h0)
        expected, _ = ref(x.double(), h0.double())
    assert ((out.double() - expected).abs() / expected.abs().clamp_min(1e-2)).max() < 3e-5


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_extreme_inputs_give_finite_gradients(cell):
    """Pre-activations of ±1e4 (gates at exactly 0 or 1 in float32): no -inf/NaN trap in the scan's backward."""
    layer = make_layer(cell, 1, 2)
    with torch.no_grad():
        signs = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])[: layer.weight_ih_l0.shape[0]]
        layer.weight_ih_l0.copy_(signs[:, None])
        layer.bias_ih_l0.zero_()
    x = torch.tensor([1e4, -1e4, 0.0, 1e4, 1e4, -1e4]).view(6, 1, 1).requires_grad_()
    out, last = layer(x, torch.full((1, 1, 2), -2.0))
    (out.sum() + last.sum()).backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_autocast_runs_the_scan_in_float32(cell):
    torch.manual_seed(0)
    layer = make_layer(cell, INPUT, HIDDEN)
    x = torch.randn(50, 2, INPUT)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, last = layer(x)
    ref, _ = layer(x)
    assert out.dtype == torch.float32 and last.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("cell", MIN_CELLS)
@pytest.mark.parametrize("dtype,tol,hidden", [(torch.float32, 1e-5, 24), (torch.bfloat16, 3e-2, 24),
                                              (torch.int8, 6e-2, 32)])
def test_a_primed_state_carries_on_step_by_step_as_the_scan_does(cell, dtype, tol, hidden):
    """The char model's StepGenerator continues a state the parallel scan built (whole sequences are checked
    against the scan for every cell in test_charlm.py)."""
    torch.manual_seed(0)
    model = CharLM(ModelConfig(cell=cell, hidden=hidden, layers=3, vocab_size=11), Vocab("abcdefghijk")).eval()
    ids = torch.randint(0, 11, (4, 9))
    with torch.no_grad():
        full, _ = model(ids)  # the parallel scan
        gen = StepGenerator(model.embed, model.rnn, model.head, dtype)
        states, token = gen.prime_state(ids[0, :6], 1)
        cont = gen.step(token, states)
    torch.testing.assert_close(cont, full[:1, 5], atol=tol, rtol=tol)


def test_initialisations():
    layer = make_layer("minlstm", INPUT, HIDDEN)
    init_recurrent(layer, "forget1")
    assert (layer.bias_ih_l0[HIDDEN:2 * HIDDEN] != 1).all() and (layer.bias_ih_l0[:HIDDEN] == 1).all()
    init_recurrent(layer, "chrono", t_max=50)
    forget, inputs = layer.bias_ih_l0[:HIDDEN], layer.bias_ih_l0[HIDDEN:2 * HIDDEN]
    torch.testing.assert_close(forget, -inputs)
    # the normalised forget share f / (f + i) then starts at u / (u + 1), u = exp(forget bias)
    u = forget.exp()
    share = torch.sigmoid(forget) / (torch.sigmoid(forget) + torch.sigmoid(inputs))
    torch.testing.assert_close(share, u / (u + 1))
    for cell, scheme in [("mingru", "orthogonal"), ("minlstm", "identity"), ("mingru", "chrono")]:
        with pytest.raises(RnnkitError, match=f"does not apply to --cell {cell}"):
            init_recurrent(make_layer(cell, INPUT, HIDDEN), scheme)


# --- the commands and tools ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def mingru_run(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("min") / "run"
    proc = rnnkit_cli("train", small_corpus, "--out", out, "--cell", "mingru", "--max-steps", "4", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "val bpc" in proc.stdout
    return out


def test_cli_trains_minlstm(small_corpus, tmp_path):
    proc = rnnkit_cli("train", small_corpus, "--out", tmp_path / "r", "--cell", "minlstm", "--init", "chrono",
                      "--max-steps", "4", *TINY, "--layers", "2", "--hidden", "16")
    assert proc.returncode == 0, proc.stderr
    assert "val bpc" in proc.stdout


def test_cli_samples_from_a_mingru_run(mingru_run):
    proc = rnnkit_cli("sample", mingru_run, "--length", "40", "--prime", "The", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.rstrip("\n")) >= 30


def test_gradflow_and_neurons_on_min_cells(mingru_run, small_corpus):
    results = gradflow(["minlstm:chrono"], runs=[mingru_run], corpus=[str(small_corpus)], hidden=8, length=20,
                       windows=2, burn_in=5)
    assert [r.label.split()[0] for r in results] == ["minlstm:chrono", "run"]
    for r in results:
        assert np.isfinite(r.norms).all() and r.norms[0] > 0
        assert math.isnan(r.spectral_radius)  # no recurrent matrix, so no spectral radius
    with pytest.raises(RnnkitError, match="no recurrent weight matrix to scale"):
        build_untrained(Spec.parse("mingru::2"), vocab_size=5, hidden=4, layers=1)
    model = CharLM.load(mingru_run, device="cpu")
    rec = record(model, small_corpus.read_text(encoding="utf-8")[:300])
    assert rec.units.shape == (300, 32) and rec.names[0] == "h0:0"
    assert top_units(rec, ["after_newline"], top=1)[0].unit.startswith("h0:")
