"""rnnkit's cells against torch.nn.RNNCell, LSTMCell and GRUCell, in float64."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rnnkit

INPUT, HIDDEN, BATCH = 5, 7, 3
TOL = {"atol": 1e-5, "rtol": 1e-5}

# kind -> (rnnkit constructor, torch constructor, state is (h, c))
KINDS = {
    "rnn_tanh": (lambda **kw: rnnkit.RNNCell(nonlinearity="tanh", **kw),
                 lambda **kw: nn.RNNCell(nonlinearity="tanh", **kw), False),
    "rnn_relu": (lambda **kw: rnnkit.RNNCell(nonlinearity="relu", **kw),
                 lambda **kw: nn.RNNCell(nonlinearity="relu", **kw), False),
    "lstm": (rnnkit.LSTMCell, nn.LSTMCell, True),
    "gru": (rnnkit.GRUCell, nn.GRUCell, False),
}


def make_pair(kind: str, bias: bool, direction: str) -> tuple[nn.Module, nn.Module]:
    """An rnnkit cell and a torch cell holding the same float64 weights, copied ``direction``."""
    ours_cls, torch_cls, _ = KINDS[kind]
    ours = ours_cls(input_size=INPUT, hidden_size=HIDDEN, bias=bias).double()
    ref = torch_cls(input_size=INPUT, hidden_size=HIDDEN, bias=bias).double()
    if direction == "ours_to_torch":
        ref.load_state_dict(ours.state_dict())
    else:
        ours.load_state_dict(ref.state_dict())
    for (n1, p1), (n2, p2) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        assert n1 == n2
        assert torch.equal(p1, p2)
    return ours, ref


def grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad for name, p in module.named_parameters()}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_and_shapes_match_torch(kind, bias):
    ours_cls, torch_cls, _ = KINDS[kind]
    ours = ours_cls(input_size=INPUT, hidden_size=HIDDEN, bias=bias)
    ref = torch_cls(input_size=INPUT, hidden_size=HIDDEN, bias=bias)
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    expected = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    assert list(ours_sd) == expected


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no_state"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_cell_matches_torch(kind, bias, with_state, batched, direction):
    torch.manual_seed(0)
    ours, ref = make_pair(kind, bias, direction)
    is_lstm = KINDS[kind][2]
    lead = (BATCH,) if batched else ()
    x = torch.randn(*lead, INPUT, dtype=torch.float64)
    state = None
    if with_state:
        h = torch.randn(*lead, HIDDEN, dtype=torch.float64)
        state = (h, torch.randn(*lead, HIDDEN, dtype=torch.float64)) if is_lstm else h

    def run(module):
        xi = x.clone().requires_grad_()
        si = None
        if state is not None:
            si = tuple(s.clone().requires_grad_() for s in state) if is_lstm else state.clone().requires_grad_()
        out = module(xi, si)
        outs = out if is_lstm else (out,)
        # weight every output differently so that no gradient is a plain sum
        gen = torch.Generator().manual_seed(1)
        loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outs)
        loss.backward()
        s_grads = () if si is None else tuple(s.grad for s in (si if is_lstm else (si,)))
        return outs, xi.grad, s_grads

    outs, x_grad, s_grads = run(ours)
    ref_outs, ref_x_grad, ref_s_grads = run(ref)
    for o, r in zip(outs, ref_outs, strict=True):
        assert o.shape == r.shape == (*lead, HIDDEN)
        assert o.dtype == torch.float64
        torch.testing.assert_close(o, r, **TOL)
    torch.testing.assert_close(x_grad, ref_x_grad, **TOL)
    assert len(s_grads) == len(ref_s_grads) == (0 if state is None else (2 if is_lstm else 1))
    for g, r in zip(s_grads, ref_s_grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)
    ours_g, ref_g = grads(ours), grads(ref)
    assert list(ours_g) == list(ref_g)
    for name in ours_g:
        assert ours_g[name] is not None, name
        torch.testing.assert_close(ours_g[name], ref_g[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_absent_state_is_zeros(kind):
    torch.manual_seed(0)
    ours_cls, _, is_lstm = KINDS[kind]
    cell = ours_cls(input_size=INPUT, hidden_size=HIDDEN).double()
    x = torch.randn(BATCH, INPUT, dtype=torch.float64)
    zeros = torch.zeros(BATCH, HIDDEN, dtype=torch.float64)
    a = cell(x)
    b = cell(x, (zeros, zeros.clone()) if is_lstm else zeros)
    for u, v in zip(a if is_lstm else (a,), b if is_lstm else (b,), strict=True):
        torch.testing.assert_close(u, v, atol=0, rtol=0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_several_steps_match_torch(kind):
    """State fed back over a few steps stays equal to torch's (errors would compound)."""
    torch.manual_seed(0)
    ours, ref = make_pair(kind, True, "torch_to_ours")
    is_lstm = KINDS[kind][2]
    xs = torch.randn(6, BATCH, INPUT, dtype=torch.float64)
    s_ours = s_ref = None
    for x in xs:
        s_ours, s_ref = ours(x, s_ours), ref(x, s_ref)
    for u, v in zip(s_ours if is_lstm else (s_ours,), s_ref if is_lstm else (s_ref,), strict=True):
        torch.testing.assert_close(u, v, **TOL)


@pytest.mark.parametrize("kind", list(KINDS))
def test_default_init_is_uniform_in_bound(kind):
    torch.manual_seed(0)
    cell = KINDS[kind][0](input_size=INPUT, hidden_size=HIDDEN)
    bound = 1 / math.sqrt(HIDDEN)
    for name, p in cell.named_parameters():
        assert p.abs().max() <= bound, name
        assert p.std() > bound / 4, name  # not left at zero or constant


def test_gate_counts():
    assert rnnkit.RNNCell(INPUT, HIDDEN).weight_ih.shape == (HIDDEN, INPUT)
    assert rnnkit.LSTMCell(INPUT, HIDDEN).weight_ih.shape == (4 * HIDDEN, INPUT)
    assert rnnkit.GRUCell(INPUT, HIDDEN).weight_hh.shape == (3 * HIDDEN, HIDDEN)


@pytest.mark.parametrize("cls", [rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell])
@pytest.mark.parametrize("sizes", [(0, 4), (4, 0), (-1, 4), (4, -3)])
def test_nonpositive_sizes_raise(cls, sizes):
    with pytest.raises(ValueError, match="positive"):
        cls(*sizes)


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "Tanh", "", None])
def test_rnncell_bad_nonlinearity_raises(nonlinearity):
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnkit.RNNCell(INPUT, HIDDEN, nonlinearity=nonlinearity)


@pytest.mark.parametrize("cls", [rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell])
def test_wrong_input_or_state_raises_naming_the_shapes(cls):
    cell = cls(INPUT, HIDDEN)
    pairs = 2 if cls is rnnkit.LSTMCell else 1
    for x in (torch.randn(3, INPUT + 1), [0.0] * INPUT, torch.randn(2, 3, INPUT)):
        with pytest.raises(ValueError, match=f"expected the input as a tensor \\(B, {INPUT}\\)"):
            cell(x)
    for state in ((torch.zeros(2, HIDDEN),) * pairs, (torch.zeros(3, HIDDEN),) * (pairs + 1)):
        with pytest.raises(ValueError, match=rf"state is .* of shape \(3, {HIDDEN}\)"):
            cell(torch.randn(3, INPUT), state if pairs > 1 or len(state) > 1 else state[0])
