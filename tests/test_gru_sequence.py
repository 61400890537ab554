"""The whole-sequence CPU GRU kernel: its hand-derived backward against autograd and torch.nn.GRU.

(The layer tests in test_layers.py run it through rnnkit.GRU across every option.)"""

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.gru_sequence import GRUSequence, gru_sequence


def weights(inp=3, hidden=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(3 * hidden, inp), (3 * hidden, hidden), (3 * hidden,), (3 * hidden,)]
    return [torch.randn(s, generator=g, dtype=dtype, requires_grad=True) for s in shapes]


def test_gradcheck_every_input():
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: GRUSequence.apply(*a, torch.float64), (x, h0, *weights()))


@pytest.mark.parametrize("use", ["outputs", "last"])
def test_gradient_through_only_one_output(use):
    """Only the outputs or only the final state in the loss: the other gradient arrives as None."""
    ref = nn.GRU(3, 4).double()
    ours = rnnkit.GRU(3, 4).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    grads = []
    for m in (ref, ours):
        out, last = m(x)
        (out.sum() if use == "outputs" else last.pow(2).sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_reverse_direction_is_the_flipped_sequence():
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    h0 = torch.zeros(2, 4, dtype=torch.float64)
    w = weights()
    out, last = gru_sequence(x, h0, *w, reverse=True)
    out_f, last_f = gru_sequence(x.flip(0), h0, *w)
    torch.testing.assert_close(out, out_f.flip(0))
    torch.testing.assert_close(last, last_f)


def test_bf16_autocast_close_to_torch():
    """Under bf16 autocast the products run in bf16 and the states in float32, as in nn.GRU."""
    torch.manual_seed(0)
    ref = nn.GRU(16, 32, 2)
    ours = rnnkit.GRU(16, 32, 2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(20, 8, 16)
    results = []
    for m in (ref, ours):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, last = m(x)
        assert out.dtype == torch.float32 or m is ref
        out.float().pow(2).mean().backward()
        results.append((out.float(), m.weight_hh_l0.grad.clone()))
    (o_ref, g_ref), (o_ours, g_ours) = results
    assert (o_ref - o_ours).abs().max() < 0.05
    assert torch.nn.functional.cosine_similarity(g_ref.flatten(), g_ours.flatten(), dim=0) > 0.99
