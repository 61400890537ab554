"""Variable-length batches: padded input with lengths= and PackedSequence, against per-sequence runs and torch.nn."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

from rnnkit.nn.cells import CELLS
from rnnkit.nn.layers import make_layer

INPUT, HIDDEN = 4, 5
LENGTHS = [6, 2, 4, 1, 6]
TOL = {"atol": 1e-9, "rtol": 1e-7}
TORCH = {"rnn": lambda *a, **k: nn.RNN(*a, nonlinearity="tanh", **k),
         "rnn_relu": lambda *a, **k: nn.RNN(*a, nonlinearity="relu", **k), "lstm": nn.LSTM, "gru": nn.GRU}


def as_tuple(state) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def layer_for(cell: str, impl: str, bidirectional: bool, num_layers: int = 2):
    torch.manual_seed(0)
    return make_layer(cell, INPUT, HIDDEN, num_layers, bidirectional=bidirectional, impl=impl).double()


def sequences():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, INPUT, dtype=torch.float64, generator=g) for n in LENGTHS]


def initial_state(layer):
    g = torch.Generator().manual_seed(2)
    parts = as_tuple(layer.initial_state(len(LENGTHS), dtype=torch.float64))
    return tuple(torch.randn(p.shape, dtype=torch.float64, generator=g) for p in parts)


def loss_of(outputs: list[torch.Tensor], finals: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """A loss weighting every valid output and final state differently, the same for either layout."""
    g = torch.Generator().manual_seed(3)
    total = sum((o * torch.randn(o.shape, dtype=o.dtype, generator=g)).sum() for o in outputs)
    for f in finals:
        total = total + (f * torch.randn(f.shape, dtype=f.dtype, generator=g)).sum()
    return total


def per_sequence(layer, xs, state):
    """Each sequence alone (batch of one), as the reference."""
    outs, finals = [], []
    for b, x in enumerate(xs):
        s = tuple(p[:, b:b + 1] for p in state)
        out, final = layer(x.unsqueeze(1), s if len(s) > 1 else s[0])
        outs.append(out[:, 0])
        finals.append(as_tuple(final))
    return outs, tuple(torch.cat([f[i] for f in finals], dim=1) for i in range(len(finals[0])))


def grads(layer, xs, state, run):
    layer.zero_grad(set_to_none=True)
    xs = [x.clone().requires_grad_() for x in xs]
    state = tuple(s.clone().requires_grad_() for s in state)
    outs, finals = run(layer, xs, state)
    loss_of(outs, finals).backward()
    return outs, finals, [x.grad for x in xs], [s.grad for s in state], {n: p.grad for n, p in layer.named_parameters()}


def padded_run(layer, xs, state):
    out, final = layer(pad_sequence(xs), state if len(state) > 1 else state[0], lengths=torch.tensor(LENGTHS))
    return [out[:n, b] for b, n in enumerate(LENGTHS)], as_tuple(final)


def packed_run(layer, xs, state):
    packed = pack_padded_sequence(pad_sequence(xs), torch.tensor(LENGTHS), enforce_sorted=False)
    out, final = layer(packed, state if len(state) > 1 else state[0])
    padded, lengths = pad_packed_sequence(out)
    assert lengths.tolist() == LENGTHS
    return [padded[:n, b] for b, n in enumerate(LENGTHS)], as_tuple(final)


def assert_same(a, b) -> None:
    for x, y in zip(a[0], b[0], strict=True):
        torch.testing.assert_close(x, y, **TOL)
    for x, y in zip(a[1], b[1], strict=True):
        torch.testing.assert_close(x, y, **TOL)
    for x, y in zip(a[2], b[2], strict=True):
        torch.testing.assert_close(x, y, **TOL)
    for x, y in zip(a[3], b[3], strict=True):
        torch.testing.assert_close(x, y, **TOL)
    assert a[4].keys() == b[4].keys()
    for name in a[4]:
        torch.testing.assert_close(a[4][name], b[4][name], **TOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("run", [padded_run, packed_run], ids=["lengths", "packed"])
def test_batch_equals_each_sequence_alone(cell, impl, bidirectional, run):
    layer = layer_for(cell, impl, bidirectional)
    xs = sequences()
    state = initial_state(layer)
    assert_same(grads(layer, xs, state, run), grads(layer, xs, state, per_sequence))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("cell", list(TORCH))
def test_packed_matches_torch_packed(cell, impl, bidirectional):
    ours = layer_for(cell, impl, bidirectional)
    ref = TORCH[cell](INPUT, HIDDEN, 2, bidirectional=bidirectional).double()
    ref.load_state_dict(ours.state_dict())
    xs = sequences()
    state = initial_state(ours)
    assert_same(grads(ours, xs, state, packed_run), grads(ref, xs, state, packed_run))


@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_packed_output_keeps_the_input_packing(cell, impl):
    """Packed in, packed out with the same batch sizes and sort order, also for an input sorted by the caller."""
    layer = layer_for(cell, impl, True)
    xs = sorted(sequences(), key=len, reverse=True)
    packed = pack_padded_sequence(pad_sequence(xs), torch.tensor([len(x) for x in xs]), enforce_sorted=True)
    out, _ = layer(packed)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    assert out.sorted_indices is None and out.unsorted_indices is None
    ref, _ = layer(pad_sequence(xs), lengths=[len(x) for x in xs])
    torch.testing.assert_close(pad_packed_sequence(out)[0], ref, **TOL)


@pytest.mark.parametrize("impl", ["fused", "loop"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_padding_never_reaches_valid_results(cell, impl):
    """Whatever the padding holds (here NaN), outputs past each end are zero and nothing else changes."""
    layer = layer_for(cell, impl, True)
    xs = sequences()
    x = pad_sequence(xs)
    poisoned = x.clone()
    for b, n in enumerate(LENGTHS):
        poisoned[n:, b] = float("nan")
    poisoned.requires_grad_()
    out, final = layer(poisoned, lengths=LENGTHS)
    clean, clean_final = layer(x, lengths=LENGTHS)
    torch.testing.assert_close(out, clean, **TOL)
    for b, n in enumerate(LENGTHS):
        assert not out[n:, b].any()
    (out.sum() + sum(f.sum() for f in as_tuple(final))).backward()
    assert torch.isfinite(poisoned.grad).all()
    for b, n in enumerate(LENGTHS):
        assert not poisoned.grad[n:, b].any()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_batch_first_lengths():
    layer = make_layer("gru", INPUT, HIDDEN, 1, batch_first=True).double()
    xs = sequences()
    out, h = layer(pad_sequence(xs, batch_first=True), lengths=LENGTHS)
    for b, x in enumerate(xs):
        alone, h_alone = layer(x.unsqueeze(0))
        torch.testing.assert_close(out[b, : len(x)], alone[0], **TOL)
        torch.testing.assert_close(h[:, b], h_alone[:, 0], **TOL)


@pytest.mark.parametrize("lengths,message", [([7, 1, 1, 1, 1], "lengths must be in 1..6"),
                                             ([0, 1, 1, 1, 1], "lengths must be in 1..6"),
                                             ([1, 2], "one value per sequence")])
def test_bad_lengths_raise(lengths, message):
    layer = make_layer("lstm", INPUT, HIDDEN)
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(6, 5, INPUT), lengths=lengths)
