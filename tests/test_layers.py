"""rnnkit's RNN, LSTM and GRU layers against torch.nn.RNN, LSTM and GRU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
import rnnkit.nn.layers
from rnnkit.nn.cells import CELLS

INPUT, HIDDEN, T, B = 5, 7, 6, 3
TOL = {"atol": 1e-5, "rtol": 1e-5}

# mode -> (rnnkit constructor, torch constructor, state is (h, c))
MODES = {
    "rnn_tanh": (lambda *a, **kw: rnnkit.RNN(*a, nonlinearity="tanh", **kw),
                 lambda *a, **kw: nn.RNN(*a, nonlinearity="tanh", **kw), False),
    "rnn_relu": (lambda *a, **kw: rnnkit.RNN(*a, nonlinearity="relu", **kw),
                 lambda *a, **kw: nn.RNN(*a, nonlinearity="relu", **kw), False),
    "lstm": (rnnkit.LSTM, nn.LSTM, True),
    "gru": (rnnkit.GRU, nn.GRU, False),
}


def make_pair(mode: str, impl: str = "fused", dtype=torch.float64, **kwargs) -> tuple[nn.Module, nn.Module]:
    """An rnnkit layer with torch's weights loaded into it, both in ``dtype``."""
    ours_cls, torch_cls, _ = MODES[mode]
    ref = torch_cls(INPUT, HIDDEN, **kwargs).to(dtype)
    ours = ours_cls(INPUT, HIDDEN, impl=impl, **kwargs).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def random_state(mode: str, num_layers: int, bidirectional: bool, lead: tuple[int, ...], dtype=torch.float64):
    shape = (num_layers * (2 if bidirectional else 1), *lead, HIDDEN)
    h = torch.randn(shape, dtype=dtype)
    return (h, torch.randn(shape, dtype=dtype)) if MODES[mode][2] else h


def as_tuple(state) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def run(module: nn.Module, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple, torch.Tensor, tuple, dict]:
    """Forward and backward through a loss that weights every output and final state differently.

    Returns output, final state (as a tuple), grad of x, grads of the initial state, parameter grads.
    """
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    if state is not None:
        state = tuple(s.clone().requires_grad_() for s in as_tuple(state))
        state = state if len(state) == 2 else state[0]
    out, final = module(x, state)
    final = as_tuple(final)
    gen = torch.Generator().manual_seed(123)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for f in final:
        loss = loss + (f * torch.randn(f.shape, generator=gen, dtype=f.dtype)).sum()
    loss.backward()
    s_grads = () if state is None else tuple(s.grad for s in as_tuple(state))
    return out, final, x.grad, s_grads, {n: p.grad for n, p in module.named_parameters()}


def assert_same_results(a, b, **tol) -> None:
    out, final, x_grad, s_grads, p_grads = a
    r_out, r_final, r_x_grad, r_s_grads, r_p_grads = b
    assert out.shape == r_out.shape
    torch.testing.assert_close(out, r_out, **tol)
    assert len(final) == len(r_final)
    for f, r in zip(final, r_final, strict=True):
        assert f.shape == r.shape
        torch.testing.assert_close(f, r, **tol)
    torch.testing.assert_close(x_grad, r_x_grad, **tol)
    assert len(s_grads) == len(r_s_grads)
    for g, r in zip(s_grads, r_s_grads, strict=True):
        assert g is not None
        torch.testing.assert_close(g, r, **tol)
    assert list(p_grads) == list(r_p_grads)
    for name, g in p_grads.items():
        assert g is not None, f"no gradient for {name}"
        torch.testing.assert_close(g, r_p_grads[name], **tol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no_state"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_first", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("mode", list(MODES))
def test_layer_matches_torch(mode, impl, num_layers, bidirectional, batch_first, bias, with_state):
    torch.manual_seed(0)
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    ours, ref = make_pair(mode, impl, **kwargs)
    x = torch.randn((B, T, INPUT) if batch_first else (T, B, INPUT), dtype=torch.float64)
    state = random_state(mode, num_layers, bidirectional, (B,)) if with_state else None
    result = run(ours, x, state)
    out = result[0]
    directions = 2 if bidirectional else 1
    assert out.shape == ((B, T, directions * HIDDEN) if batch_first else (T, B, directions * HIDDEN))
    assert out.dtype == torch.float64
    for f in result[1]:
        assert f.shape == (num_layers * directions, B, HIDDEN)
    assert_same_results(result, run(ref, x, state), **TOL)


@pytest.mark.parametrize("mode", list(MODES))
def test_auto_impl_matches_torch(mode):
    torch.manual_seed(0)
    ours, ref = make_pair(mode, "auto", num_layers=2, bidirectional=True)
    assert ours.impl == "auto"
    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    assert_same_results(run(ours, x, None), run(ref, x, None), **TOL)


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no_state"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("mode", list(MODES))
def test_unbatched_input_matches_torch(mode, impl, bidirectional, with_state):
    torch.manual_seed(0)
    ours, ref = make_pair(mode, impl, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(T, INPUT, dtype=torch.float64)
    state = random_state(mode, 2, bidirectional, ()) if with_state else None
    result = run(ours, x, state)
    directions = 2 if bidirectional else 1
    assert result[0].shape == (T, directions * HIDDEN)
    for f in result[1]:
        assert f.shape == (2 * directions, HIDDEN)
    assert_same_results(result, run(ref, x, state), **TOL)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("impl", ["fused", "loop"])
def test_unbatched_equals_batch_of_one(mode, impl):
    torch.manual_seed(0)
    ours, _ = make_pair(mode, impl, num_layers=2)
    x = torch.randn(T, INPUT, dtype=torch.float64)
    out, final = ours(x)
    out1, final1 = ours(x.unsqueeze(1))
    torch.testing.assert_close(out, out1.squeeze(1), atol=0, rtol=0)
    for f, f1 in zip(as_tuple(final), as_tuple(final1), strict=True):
        torch.testing.assert_close(f, f1.squeeze(1), atol=0, rtol=0)


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no_state"])
@pytest.mark.parametrize("impl", ["fused", "loop"])
def test_unbatched_input_batch_first_matches_torch(impl, with_state):
    torch.manual_seed(0)
    ours, ref = make_pair("gru", impl, batch_first=True)
    x = torch.randn(T, INPUT, dtype=torch.float64)
    state = random_state("gru", 1, False, ()) if with_state else None
    assert_same_results(run(ours, x, state), run(ref, x, state), **TOL)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("mode", list(MODES))
def test_state_dict_round_trip(mode, bias):
    torch.manual_seed(0)
    kwargs = dict(num_layers=2, bidirectional=True, bias=bias)
    ours_cls, torch_cls, _ = MODES[mode]
    ours = ours_cls(INPUT, HIDDEN, **kwargs).double()
    ref = torch_cls(INPUT, HIDDEN, **kwargs).double()
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    assert ("bias_hh_l1_reverse" in ours_sd) == bias

    x = torch.randn(T, B, INPUT, dtype=torch.float64)
    # rnnkit -> torch
    ref.load_state_dict(ours_sd)
    for k in ours_sd:
        assert torch.equal(ref.state_dict()[k], ours_sd[k])
    torch.testing.assert_close(ours(x)[0], ref(x)[0], **TOL)
    # torch -> rnnkit, with fresh torch weights
    fresh = torch_cls(INPUT, HIDDEN, **kwargs).double()
    ours.load_state_dict(fresh.state_dict())
    for k, v in fresh.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v)
    torch.testing.assert_close(ours(x)[0], fresh(x)[0], **TOL)
    # a mismatched layout refuses to load
    other = torch_cls(INPUT, HIDDEN, num_layers=1, bias=bias)
    with pytest.raises(RuntimeError):
        ours.load_state_dict(other.state_dict())


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_first", "batch_first"])
@pytest.mark.parametrize("mode", list(MODES))
def test_fused_and_loop_agree_float32(mode, batch_first):
    torch.manual_seed(0)
    ours_cls, _, _ = MODES[mode]
    layer = ours_cls(INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=batch_first, impl="fused")
    x = torch.randn((B, T, INPUT) if batch_first else (T, B, INPUT))
    state = random_state(mode, 2, True, (B,), dtype=torch.float32)
    fused = run(layer, x, state)
    layer.impl = "loop"
    loop = run(layer, x, state)
    assert fused[0].dtype == loop[0].dtype == torch.float32
    assert_same_results(fused, loop, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_dropout_active_in_training_only(mode, impl):
    torch.manual_seed(0)
    layer = MODES[mode][0](INPUT, HIDDEN, num_layers=2, dropout=0.5, impl=impl)
    x = torch.randn(T, B, INPUT)
    layer.eval()
    eval_out, _ = layer(x)
    torch.testing.assert_close(layer(x)[0], eval_out, atol=0, rtol=0)
    # without dropout, in eval mode, it is torch's layer
    _, torch_cls, _ = MODES[mode]
    ref = torch_cls(INPUT, HIDDEN, num_layers=2, dropout=0.5).eval()
    ref.load_state_dict(layer.state_dict())
    torch.testing.assert_close(eval_out, ref(x)[0], **TOL)

    layer.train()
    train_out, _ = layer(x)
    assert train_out.shape == eval_out.shape
    assert torch.isfinite(train_out).all()
    assert not torch.allclose(train_out, eval_out, atol=1e-4)
    assert not torch.allclose(layer(x)[0], train_out, atol=1e-4)  # a new mask each call
    train_out.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


@pytest.mark.parametrize("impl", ["fused", "loop"])
def test_dropout_not_applied_after_last_layer(impl):
    """As in torch, dropout sits between layers: a single layer is unaffected by it."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(INPUT, HIDDEN, num_layers=1, dropout=0.5, impl=impl).train()
    x = torch.randn(T, B, INPUT)
    train_out, _ = layer(x)
    torch.testing.assert_close(train_out, layer.eval()(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(impl="x"),
        dict(impl="Fused"),
        dict(dropout=1.5),
        dict(dropout=1.0),
        dict(dropout=-0.1),
        dict(hidden_size=0),
        dict(input_size=0),
        dict(num_layers=0),
        dict(hidden_size=-2),
    ],
    ids=repr,
)
@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU])
def test_invalid_arguments_raise(cls, kwargs):
    args = dict(input_size=INPUT, hidden_size=HIDDEN) | kwargs
    with pytest.raises(ValueError):
        cls(**args)


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "TANH", ""])
def test_invalid_nonlinearity_raises(nonlinearity):
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnkit.RNN(INPUT, HIDDEN, nonlinearity=nonlinearity)


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU])
def test_wrong_input_size_raises(cls, impl, batched):
    layer = cls(INPUT, HIDDEN, impl=impl)
    x = torch.randn((T, B, INPUT + 1) if batched else (T, INPUT + 1))
    with pytest.raises(ValueError, match=f"expected input size {INPUT}, got {INPUT + 1}"):
        layer(x)


@pytest.mark.parametrize("shape", [(INPUT,), (2, T, B, INPUT)])
def test_wrong_input_rank_raises(shape):
    with pytest.raises(ValueError, match="2-D or 3-D"):
        rnnkit.GRU(INPUT, HIDDEN)(torch.randn(shape))


@pytest.mark.parametrize("impl", ["auto", "loop"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_a_wrong_initial_state_or_empty_input_is_refused_before_any_kernel(cell, impl):
    """torch's fused kernels do not check the state: one too small for the batch corrupted memory."""
    layer = rnnkit.nn.layers.make_layer(cell, INPUT, HIDDEN, impl=impl)
    x = torch.randn(T, B, INPUT)
    good = layer.initial_state(B)
    parts = good if isinstance(good, tuple) else (good,)
    for shape in [(1, B - 1, HIDDEN), (1, B, HIDDEN + 1), (2, B, HIDDEN), (B, HIDDEN)]:
        bad = tuple(torch.zeros(shape) for _ in parts)
        with pytest.raises(ValueError, match="initial state's shape"):
            layer(x, bad if len(bad) > 1 else bad[0])
    with pytest.raises(ValueError, match="state is"):
        layer(x, (*parts, parts[0]))
    for empty in [torch.randn(0, B, INPUT), torch.randn(T, 0, INPUT)]:
        with pytest.raises(ValueError, match="no steps or no sequences"):
            layer(empty)
    for lengths in [[2.5] * B, [True] * B, [None] * B]:
        with pytest.raises(ValueError, match="whole numbers"):
            layer(x, lengths=lengths)
    # the fused GRU read integer input as if it were floats
    for integer_input in [x.long(), pack_padded_sequence(x.long(), [T] * B)]:
        with pytest.raises(TypeError, match="floating-point input"):
            layer(integer_input)
    assert layer(x, good)[0].shape == (T, B, HIDDEN)


def test_layer_sizes_and_indices_are_checked_with_their_names():
    for size in [2.5, 0, True]:
        with pytest.raises(ValueError, match="hidden_size must be a positive whole number"):
            rnnkit.LSTM(INPUT, size)
    layer = rnnkit.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True)
    with pytest.raises(IndexError, match="no layer 2, direction 0: this layer stacks 2 layer"):
        layer.layer_weights(2)
    with pytest.raises(IndexError, match="direction 2"):
        layer.layer_weights(0, 2)
    for batch in [-1, 0, 2.0]:
        with pytest.raises(ValueError, match="batch_size must be a positive whole number"):
            layer.initial_state(batch)
    assert layer.initial_state(np.int64(3))[0].shape == (4, 3, HIDDEN)
    assert layer.layer_weights(1, 1)["weight_hh"] is layer.weight_hh_l1_reverse


@pytest.mark.parametrize("mode", list(MODES))
def test_initial_state_shape(mode):
    layer = MODES[mode][0](INPUT, HIDDEN, num_layers=3, bidirectional=True)
    state = layer.initial_state(B, dtype=torch.float64)
    parts = as_tuple(state)
    assert len(parts) == (2 if MODES[mode][2] else 1)
    for p in parts:
        assert p.shape == (6, B, HIDDEN) and p.dtype == torch.float64
        assert not p.any()
    if len(parts) == 2:
        assert parts[0].data_ptr() != parts[1].data_ptr()


@pytest.mark.parametrize("cell", list(CELLS))
def test_unrolled_forward_equals_the_layer(cell):
    """unroll keeps every step's state as a graph node and gives the layer's own output and final state."""
    torch.manual_seed(0)
    layer = rnnkit.nn.layers.make_layer(cell, INPUT, HIDDEN, 2, batch_first=True).double()
    x = torch.randn(3, 9, INPUT, dtype=torch.float64)
    state = tuple(torch.randn_like(s) for s in as_tuple(layer.initial_state(3, dtype=torch.float64)))
    state = state if len(state) > 1 else state[0]
    out, final = layer(x, state)
    un = layer.unroll(x, state)
    torch.testing.assert_close(un.output(), out.transpose(0, 1))
    assert un.names == layer.cell.state_names
    for i, name in enumerate(un.names):
        torch.testing.assert_close(torch.stack([un.part(name, k)[-1] for k in range(2)]), as_tuple(final)[i])
