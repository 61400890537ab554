"""minGRU and minLSTM's CPU path (rnnkit/nn/scan_sequence.py): the C loop over time and its hand-derived
backward against the log-space scan and the float64 step loop, values and gradients; when the layer takes it
and when it falls back to the scan."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_min_cells import LENGTHS, MIN_CELLS, pair, signed_state, values_and_grads

from rnnkit.nn import scan_sequence
from rnnkit.nn.cells import CELLS, MinGRUType, log_space_scan
from rnnkit.nn.layers import make_layer

needs_kernels = pytest.mark.skipif(scan_sequence.kernel_kind("mingru") is None,
                                   reason="the optional C extension is not built (or is off)")
F32 = {"atol": 2e-5, "rtol": 1e-4}  # float32 C loop against float64 references


@pytest.fixture
def calls(monkeypatch):
    """Counts the layer's calls of the C node."""
    count = [0]
    real = scan_sequence.linear_scan

    def spy(*args):
        count[0] += 1
        return real(*args)

    monkeypatch.setattr(scan_sequence, "linear_scan", spy)
    return count


def node_inputs(cell: str, steps: int = 11, batch: int = 3, hidden: int = 5, scale: float = 3.0):
    gen = torch.Generator().manual_seed(7)
    xw = scale * torch.randn(steps, batch, CELLS[cell].gates * hidden, dtype=torch.float64, generator=gen)
    h0 = 2 * torch.randn(batch, hidden, dtype=torch.float64, generator=gen)
    h0[:, 0], h0[:, 1] = 0.0, -h0[:, 1].abs()
    return xw, h0


def steps_reference(cell: str, xw, h0):
    """The cell's own step (the plain equations), step by step."""
    ct = CELLS[cell]
    h, outs = h0, []
    for t in range(xw.shape[0]):
        (h,) = ct.step(xw[t], (h,), {})
        outs.append(h)
    return torch.stack(outs)


def grads(fn, xw, h0, weight):
    xw, h0 = xw.clone().requires_grad_(), h0.clone().requires_grad_()
    out = fn(xw, h0)
    d_xw, d_h0 = torch.autograd.grad((out * weight.to(out.dtype)).sum(), [xw, h0])
    return out.detach(), d_xw, d_h0


@needs_kernels
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_node_against_log_space_scan_and_step_loop(cell):
    """Values, d xw and d h0 of the float32 C node against the float64 log-space scan and the float64 step loop."""
    xw, h0 = node_inputs(cell)
    weight = torch.randn(xw.shape[0], *h0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    ct, kind = CELLS[cell], scan_sequence.kernel_kind(CELLS[cell].scan_kernel)
    ours = grads(lambda x, h: scan_sequence.linear_scan(x, h, kind), xw.float(), h0.float(), weight)
    scan = grads(lambda x, h: log_space_scan(*ct.log_coefficients(x), h), xw, h0, weight)
    loop = grads(lambda x, h: steps_reference(cell, x, h), xw, h0, weight)
    for a, b, c in zip(ours, scan, loop, strict=True):
        torch.testing.assert_close(b, c, atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(a.double(), b, **F32)
    # h0 of one row for the whole batch broadcasts, and its gradient sums over the batch
    one = grads(lambda x, h: scan_sequence.linear_scan(x, h, kind), xw.float(), h0[:1].float(), weight)
    one_ref = grads(lambda x, h: steps_reference(cell, x, h.expand(xw.shape[1], -1)), xw, h0[:1], weight)
    for a, b in zip(one, one_ref, strict=True):
        torch.testing.assert_close(a.double(), b, **F32)


@needs_kernels
@pytest.mark.parametrize("layout", ["full", "lengths", "packed"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_layer_on_the_c_path_equals_the_float64_loop(cell, bidirectional, layout, calls):
    """Two stacked float32 layers on the C path, padded and packed, both directions, signed initial state:
    outputs, final states and every gradient (input, h0, weights) against the float64 step loop."""
    fused, loop = pair(cell, num_layers=2, bidirectional=bidirectional)
    fused = fused.float()
    x = torch.randn(7, len(LENGTHS), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    h0 = signed_state(loop, len(LENGTHS))
    ours = values_and_grads(fused, x.float(), h0.float(), layout)
    assert calls[0] == 2 * (2 if bidirectional else 1)
    for a, b in zip(ours, values_and_grads(loop, x, h0, layout), strict=True):
        torch.testing.assert_close(a.double(), b, **F32)


def run_layer(layer, x, h0):
    layer.zero_grad(set_to_none=True)
    x, h0 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    out, last = layer(x, h0, lengths=LENGTHS)
    (out.square().sum() + last.sum()).backward()
    # copies: converting the layer's dtype later converts its parameters' .grad in place
    return [t.detach().clone() for t in (out, last, x.grad, h0.grad, *(p.grad for p in layer.parameters()))]


@needs_kernels
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_falls_back_to_the_scan_without_kernels_or_for_float64(cell, monkeypatch, calls):
    """Without the extension (as RNNKIT_C_KERNELS=0 leaves it) and for float64 the layer runs the log-space
    scan; all three give the same values and gradients."""
    torch.manual_seed(0)
    layer = make_layer(cell, 3, 4, 2, bidirectional=True)
    x, h0 = torch.randn(7, len(LENGTHS), 3), torch.randn(4, len(LENGTHS), 4)
    c_path = run_layer(layer, x, h0)
    assert calls[0] == 4
    as_float64 = run_layer(layer.double(), x.double(), h0.double())
    assert calls[0] == 4  # float64: the scan
    layer.float()
    monkeypatch.setattr(scan_sequence, "kernels", None)
    assert scan_sequence.kernel_kind(CELLS[cell].scan_kernel) is None
    no_kernels = run_layer(layer, x, h0)
    assert calls[0] == 4
    for a, b, c in zip(c_path, as_float64, no_kernels, strict=True):
        torch.testing.assert_close(a.double(), b, **F32)
        torch.testing.assert_close(a, c, **F32)


def test_rnnkit_c_kernels_0_turns_the_c_path_off():
    code = ("import torch; from rnnkit.nn import scan_sequence as s; from rnnkit.nn.layers import make_layer; "
            "assert s.kernels is None and s.kernel_kind('mingru') is None; "
            "out, _ = make_layer('mingru', 3, 4)(torch.randn(5, 2, 3)); "
            "assert 'ScanSequence' not in type(out.grad_fn).__name__; print('ok')")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "RNNKIT_C_KERNELS": "0", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@needs_kernels
def test_a_scan_cell_without_a_kernel_takes_the_scan(calls):
    """A new scan cell (here minGRU's equations without its kernel's name) works through the log-space scan."""

    class Plain(MinGRUType):
        name, scan_kernel = "plain_mingru", None

    torch.manual_seed(0)
    plain, ours = make_layer(Plain(), 3, 4), make_layer("mingru", 3, 4)
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(9, 2, 3)
    torch.testing.assert_close(plain(x)[0], ours(x)[0], **F32)
    assert calls[0] == 1
    assert scan_sequence.kernel_kind("no such cell") is None


@needs_kernels
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_autocast_projects_in_bf16_and_runs_the_recurrence_in_float32(cell, calls):
    torch.manual_seed(0)
    layer = make_layer(cell, 3, 4)
    x = torch.randn(50, 2, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, last = layer(x)
    assert calls[0] == 1 and out.dtype == torch.float32 and last.dtype == torch.float32
    out.sum().backward()
    assert layer.weight_ih_l0.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    torch.testing.assert_close(out, layer(x)[0], atol=0.05, rtol=0.05)


@needs_kernels
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_saturated_gates_over_2000_steps_stay_finite_and_exact(cell):
    """Pre-activations of ±1e4, ±100 and 0 mixed over 2000 steps (gates at 0 or 1 in float32, both of minLSTM's
    gates shut at once): outputs and gradients finite, and equal to the float64 log-space scan (the float64 step
    loop itself gives 0/0 where both of minLSTM's gates are shut)."""
    ct = CELLS[cell]
    gen = torch.Generator().manual_seed(3)
    levels = torch.tensor([-1e4, -100.0, -3.0, 0.0, 3.0, 100.0, 1e4], dtype=torch.float64)
    xw = levels[torch.randint(0, len(levels), (2000, 2, ct.gates * 3), generator=gen)]
    h0 = torch.tensor([[-5.0, 0.0, 3.0], [1e-30, -1e-30, 0.0]], dtype=torch.float64)
    weight = torch.randn(2000, 2, 3, dtype=torch.float64, generator=gen)
    kind = scan_sequence.kernel_kind(ct.scan_kernel)
    ours = grads(lambda x, h: scan_sequence.linear_scan(x, h, kind), xw.float(), h0.float(), weight)
    scan = grads(lambda x, h: log_space_scan(*ct.log_coefficients(x), h), xw, h0, weight)
    for a, b in zip(ours, scan, strict=True):
        assert torch.isfinite(a).all() and torch.isfinite(b).all()
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


@needs_kernels
def test_sequence_kernel_on_cpu_and_elsewhere():
    for cell in MIN_CELLS:
        ct = CELLS[cell]
        assert scan_sequence.kernel_kind(ct.scan_kernel) is not None
        assert ct.sequence_kernel(torch.device("cpu"), True) is not None
        assert ct.sequence_kernel(torch.device("cuda"), True) is not None  # the scan there
        meta = torch.zeros(2, 1, 2 * ct.gates, device="meta")
        assert not scan_sequence.can_run(0, meta, torch.zeros(1, 2, device="meta"))
