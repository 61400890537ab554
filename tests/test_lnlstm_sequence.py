"""The whole-sequence CPU LN-LSTM kernel (rnnkit/nn/lnlstm_sequence.py): its hand-derived backward against
autograd, and its C steps against the cell's step loop.

(test_new_lstm_cells.py checks the layer, through this kernel, against the paper's equations in float64;
the registry-wide tests run it with padding, packing and every layer option.)"""

import copy

import pytest
import torch
from conftest import torch_steps

import rnnkit.nn.lnlstm_sequence as module
from rnnkit.nn.layers import make_layer
from rnnkit.nn.lnlstm_sequence import LNLSTMSequence

HIDDEN = 4


def sequence_inputs(steps=5, batch=2, hidden=HIDDEN, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(steps, batch, 4 * hidden), (batch, hidden), (batch, hidden), (4 * hidden, hidden),
              (4 * hidden,), (4 * hidden,), (hidden,), (hidden,)]
    return [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]


def test_gradcheck_every_input():
    """The hand-derived backward (torch steps, float64) against finite differences, for all eight inputs."""
    assert torch.autograd.gradcheck(lambda *a: LNLSTMSequence.apply(*a, torch.float64), sequence_inputs())


@pytest.mark.parametrize("use", ["h", "c"])
def test_gradient_through_only_one_output(use):
    """Only the h or only the c sequence in the loss: the other's gradient arrives as None."""
    inputs = sequence_inputs()
    h, c = LNLSTMSequence.apply(*inputs, torch.float64)
    ((h if use == "h" else c) ** 2).sum().backward()
    assert all(t.grad is not None and t.grad.isfinite().all() for t in inputs)


def run(layer, x, h0, c0):
    """Outputs, final state and every gradient of a loss that reads all three."""
    leaves = [t.clone().requires_grad_() for t in (x, h0, c0)]
    layer.zero_grad()
    out, (h, c) = layer(*leaves[:1], tuple(leaves[1:]))
    loss = out.float().pow(2).mean() + h.float().sum() + (c.float() * c.float().detach().sign()).sum()
    loss.backward()
    return [out.detach().to(h.dtype), h.detach(), c.detach()] + [t.grad for t in leaves] + \
        [p.grad.clone() for p in layer.parameters()]


needs_kernels = pytest.mark.skipif(module.kernels is None or not hasattr(module.kernels, "lnlstm_forward_step"),
                                   reason="the optional C extension is not built")


def layer_and_inputs(bidirectional=False, seed=0):
    torch.manual_seed(seed)
    layer = make_layer("lnlstm", 6, 16, 2, bidirectional=bidirectional)
    with torch.no_grad():  # gains and shifts away from 1 and 0, so that each one's gradient matters
        for name, p in layer.named_parameters():
            if "ln_" in name:
                p.add_(0.3 * torch.randn_like(p))
    n = 2 * (2 if bidirectional else 1)
    return layer, torch.randn(9, 3, 6), torch.randn(n, 3, 16), torch.randn(n, 3, 16)


@needs_kernels
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_c_steps_float32_as_close_to_float64_as_the_loop(bidirectional):
    """float32: the C steps and the cell's step loop (autograd through every op) against the loop in float64,
    values and every gradient, each within 1e-4 of the largest entry of its tensor. (Compared with each
    other directly, the two float32 runs differ by more than float32's rounding wherever a normalised
    vector's spread is small and the norm amplifies it: float64 is the oracle.)"""
    layer, x, h0, c0 = layer_and_inputs(bidirectional)
    fast = run(layer, x, h0, c0)
    layer.impl = "loop"
    slow = run(layer, x, h0, c0)
    exact = run(copy.deepcopy(layer).double(), x.double(), h0.double(), c0.double())
    for a, b, r in zip(fast, slow, exact, strict=True):
        scale = r.abs().max().item()
        assert (a.double() - r).abs().max().item() <= 1e-4 * scale
        assert (b.double() - r).abs().max().item() <= 1e-4 * scale


@needs_kernels
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_c_steps_match_torch_steps(precision):
    """The same kernel with the C steps and with the torch steps, in float32 and under bf16 autocast."""
    layer, x, h0, c0 = layer_and_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        fast = run(layer, x, h0, c0)
        with torch_steps(module):
            slow = run(layer, x, h0, c0)
    # under bf16 a float32 difference in the last bits can round a product's operand to the next bf16 value
    tolerance = {"atol": 1e-4, "rtol": 1e-3} if precision == "fp32" else {"atol": 1e-2, "rtol": 1e-2}
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, **tolerance)


@needs_kernels
def test_c_steps_saturated_gates_and_nan():
    """Large pre-activations saturate the gates as the loop's do; a NaN input poisons only its own sequence."""
    layer, x, h0, c0 = layer_and_inputs()
    x = x * 100
    with torch.no_grad():
        fast = layer(x, (h0, c0))[0]
        layer.impl = "loop"
        torch.testing.assert_close(fast, layer(x, (h0, c0))[0], atol=1e-5, rtol=1e-5)
        layer.impl = "auto"
        x[3, 1, 0] = float("nan")
        out = layer(x, (h0, c0))[0]
    assert out[3:, 1].isnan().all() and not out[:, 0].isnan().any()
