r"""A whole-sequence scan-cell layer for CPU: one pass over time in C, with a hand-derived backward.

The scan cells (:class:`rnnkit.nn.cells.ScanCell`: minGRU, minLSTM) have gates that read the input
only, so one layer-direction is, unit by unit,

.. math:: h_t = a_t \odot h_{t-1} + b_t, \qquad a_t \in (0, 1),

with :math:`a_t` and :math:`b_t` functions of that step's input projection :math:`u_t = W_{ih} x_t +
b_{ih}` alone (``xw``, ``T x B x G*H``, computed for all steps by one matrix product in the cell's
``project``, outside this node, so autograd takes the weights' gradients from it). Their parallel form,
:func:`rnnkit.nn.cells.log_space_scan`, suits GPUs, but on a CPU its cumulative log-sum-exp and its
dozen element-wise passes over ``T x B x G*H`` tensors, forward and backward, cost more than the
sequential loop they replace. Here the loop runs in C (``rnnkit/nn/_gru_kernels.c``): one pass over
time reads each step's ``xw`` row once, computes :math:`a_t, b_t` and writes :math:`h_t`; the backward
pass is one reverse loop. Since :math:`0 < a_t < 1` the linear-space recurrence is as safe as the
cell's step: no logarithms are needed.

Backward. With :math:`\delta h_t` the whole gradient reaching :math:`h_t` (from the output at step t
and, through :math:`h_{t+1}`, from later steps), for :math:`t = T, \dots, 1`:

.. math::
    \delta h_t = \frac{\partial L}{\partial h_t}\Big|_{\text{output}} + a_{t+1} \odot \delta h_{t+1}
        \quad (\delta h_{T+1} = 0) \\
    \delta a_t = \delta h_t \odot h_{t-1}, \qquad \delta b_t = \delta h_t \\
    \delta u_t = \frac{\partial a_t}{\partial u_t}^\top \delta a_t
        + \frac{\partial b_t}{\partial u_t}^\top \delta b_t, \qquad
    \delta h_0 = a_1 \odot \delta h_1

The Jacobians are diagonal per unit (unit ``j`` of every gate block reads only unit ``j`` of ``u``);
each cell's docstring gives its :math:`a, b` and their derivatives as the kernel computes them:

- minGRU (blocks :math:`k, c`): :math:`z = \sigma(k)`, :math:`a = 1 - z`, :math:`b = z\,g(c)`;
  :math:`\delta k = \delta h\,(g(c) - h_{t-1})\,z(1 - z)`, :math:`\delta c = \delta h\,z\,g'(c)`.
- minLSTM (blocks :math:`k_f, k_i, c`): :math:`f = \sigma(k_f)`, :math:`i = \sigma(k_i)`,
  :math:`a = f / (f + i)`, :math:`b = (1 - a)\,g(c)`; with :math:`\delta a = \delta h\,(h_{t-1} - g(c))`:
  :math:`\delta k_f = \delta a\,a(1 - a)(1 - f)`, :math:`\delta k_i = -\delta a\,a(1 - a)(1 - i)`,
  :math:`\delta c = \delta h\,(1 - a)\,g'(c)`.

with :math:`g(c) = c + \tfrac12` for :math:`c \ge 0`, :math:`\sigma(c)` otherwise, so :math:`g'(c) = 1`
or :math:`\sigma(c)(1 - \sigma(c))`. The backward pass saves ``xw``, ``h0`` and the outputs and recomputes
:math:`a_t, b_t` from ``xw`` rather than storing them (the exponentials cost less than the memory).

The C loops run float32 (the recurrence also runs in float32 under bf16 autocast, where only the
projection is bf16). Where the extension is missing or has no kernel for the cell, for other dtypes,
on other devices, or with ``RNNKIT_C_KERNELS=0``, the layer runs the log-space scan instead, the
reference these kernels are tested against (values and gradients, tests/test_scan_sequence.py).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

kernels: Any = None  # the optional C extension (setup.py); without it scan cells run the log-space scan
if os.environ.get("RNNKIT_C_KERNELS", "1") != "0":
    try:
        from . import _gru_kernels as kernels
    except ImportError:  # pragma: no cover - depends on the install
        pass


def kernel_kind(name: str | None) -> int | None:
    """The C kernel's number for the scan cell whose coefficients are called ``name``; None if it has none.

    None where the extension is missing or off, or built from sources without that cell.
    """
    if kernels is None or name is None:
        return None
    return getattr(kernels, "scan_kinds", {}).get(name)


def can_run(kind: int | None, xw: Tensor, h0: Tensor) -> bool:
    """Whether the C loop takes these: a known kind, CPU tensors, float32."""
    return (kind is not None and kernels is not None and xw.device.type == "cpu" and h0.device.type == "cpu"
            and xw.dtype == torch.float32 and h0.dtype == torch.float32)


class ScanSequence(torch.autograd.Function):
    """One scan-cell layer-direction: every ``h`` ``(T, B, H)`` from ``xw`` ``(T, B, G*H)`` and ``h0`` ``(B, H)``."""

    @staticmethod
    def forward(ctx: Any, xw: Tensor, h0: Tensor, kind: int) -> Tensor:
        steps, batch, _ = xw.shape
        hidden = h0.shape[-1]
        xw, h0 = xw.contiguous(), h0.contiguous()
        out = xw.new_empty(steps, batch, hidden)
        if steps:
            kernels.scan_forward(kind, steps, batch, hidden, xw.data_ptr(), h0.data_ptr(), out.data_ptr())
        ctx.kind = kind
        ctx.save_for_backward(xw, h0, out)
        return out

    @staticmethod
    @once_differentiable  # the backward writes into buffers: no graph through it
    def backward(ctx: Any, d_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        xw, h0, out = ctx.saved_tensors
        steps, batch, hidden = out.shape
        d_out = d_out.to(torch.float32).contiguous()
        d_xw = torch.empty_like(xw)
        dh = h0.new_zeros(batch, hidden)  # ends as h0's gradient
        if steps:
            kernels.scan_backward(ctx.kind, steps, batch, hidden, xw.data_ptr(), h0.data_ptr(), out.data_ptr(),
                                  d_out.data_ptr(), dh.data_ptr(), d_xw.data_ptr())
        return (d_xw if ctx.needs_input_grad[0] else None), (dh if ctx.needs_input_grad[1] else None), None


def linear_scan(xw: Tensor, h0: Tensor, kind: int) -> Tensor:
    """Every ``h`` ``(T, B, H)`` of the scan cell numbered ``kind`` (:func:`kernel_kind`), in C.

    ``xw`` ``(T, B, G*H)`` and ``h0`` (``(B, H)``, or anything that broadcasts to it) float32 on CPU;
    the caller checks :func:`can_run`.
    """
    h0_full = h0.expand(xw.shape[1], h0.shape[-1])
    return ScanSequence.apply(xw, h0_full, kind)
