"""The whole-sequence CPU GRU kernel: its hand-derived backward against autograd and torch.nn.GRU.

(The layer tests in test_layers.py run it through rnnkit.GRU across every option.)"""

import os
import shutil
import sysconfig

import pytest
import torch
from conftest import torch_steps
from torch import nn

import rnnkit
import rnnkit.nn.gru_sequence as gru_seq_module
from rnnkit.nn.gru_sequence import GRUSequence


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


# The C steps (rnnkit/nn/_gru_kernels.c, built by `pip install`) run float32 states; the tests above are float64
# and take the torch steps. These check the C steps against torch.nn.GRU and against the torch steps.

needs_kernels = pytest.mark.skipif(gru_seq_module.kernels is None, reason="the optional C extension is not built")


def test_kernels_built_where_a_compiler_is():
    """pip install builds the extension wherever there is a C compiler; only then may it be missing."""
    if os.environ.get("RNNKIT_C_KERNELS") == "0":
        pytest.skip("RNNKIT_C_KERNELS=0 turns the C steps off")
    compiler = shutil.which(sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var("CC") else "cc")
    if compiler is None:
        pytest.skip("no C compiler on this machine")
    assert gru_seq_module.kernels is not None, "a C compiler is present but rnnkit.nn._gru_kernels was not built"


def run_and_grads(model, x, h0, loss_of):
    for t in (x, h0):
        t.grad = None
    model.zero_grad()
    out, last = model(x, h0)
    loss_of(out.float(), last.float()).backward()
    return [out.detach(), last.detach(), x.grad, h0.grad] + [p.grad for p in model.parameters()]


@needs_kernels
@pytest.mark.parametrize("layers, bidirectional, batch_first", [(1, False, False), (2, True, False), (2, False, True)])
@pytest.mark.parametrize("loss", ["both", "outputs", "last"])
def test_c_steps_match_torch_gru_float32(layers, bidirectional, batch_first, loss):
    torch.manual_seed(0)
    ref = nn.GRU(5, 7, layers, bidirectional=bidirectional, batch_first=batch_first)
    ours = rnnkit.GRU(5, 7, layers, bidirectional=bidirectional, batch_first=batch_first)
    ours.load_state_dict(ref.state_dict())
    shape = (3, 6, 5) if batch_first else (6, 3, 5)
    x = torch.randn(shape, requires_grad=True)
    h0 = torch.randn(layers * (2 if bidirectional else 1), 3, 7, requires_grad=True)
    loss_of = {"both": lambda o, h: o.pow(2).sum() + (h * h.detach().sign()).sum(),
               "outputs": lambda o, h: o.pow(2).sum(), "last": lambda o, h: h.pow(3).sum()}[loss]
    for a, b in zip(run_and_grads(ours, x, h0, loss_of), run_and_grads(ref, x, h0, loss_of), strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


@needs_kernels
def test_c_steps_saturated_gates_and_nan():
    """Pre-activations of +-100 saturate the gates exactly as torch does; a NaN input stays NaN."""
    torch.manual_seed(0)
    ref = nn.GRU(4, 6)
    ours = rnnkit.GRU(4, 6)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(8, 2, 4) * 100
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-5, rtol=1e-5)
        x[3, 1, 0] = float("nan")
        out = ours(x)[0]
    assert out[3:, 1].isnan().all() and not out[:, 0].isnan().any()


@needs_kernels
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_c_steps_match_torch_steps(precision):
    """The same layer with the C steps and with the torch steps, in float32 and under bf16 autocast."""
    torch.manual_seed(0)
    model = rnnkit.GRU(16, 32, 2)
    x = torch.randn(12, 4, 16, requires_grad=True)
    h0 = torch.randn(2, 4, 32, requires_grad=True)

    def loss_of(o, h):
        return o.pow(2).mean() + h.sum()

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        fast = run_and_grads(model, x, h0, loss_of)
        fast = [t.clone() for t in fast]
        with torch_steps(gru_seq_module):
            slow = run_and_grads(model, x, h0, loss_of)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
