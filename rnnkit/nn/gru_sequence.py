r"""A whole-sequence GRU layer for CPU with a hand-derived backward pass.

torch has no fused GRU kernel on CPU: ``nn.GRU`` there runs a handful of small ops per time
step and autograd records each of them, then replays their backward one by one, weight
gradients included. This module runs one GRU layer over a whole sequence as a single
autograd node. Per step the forward pass does one matrix product and the element-wise work
below; the backward pass, derived by hand below, does one product and its own element-wise
work per step, and leaves the weight gradients to three large products over all steps at
once, which is where bf16 matrix units (AMX) pay off.

Each step's element-wise work runs in one C pass (``rnnkit/nn/_gru_kernels.c``, an optional
extension that ``pip install`` builds where there is a C compiler) for float32 states; where
the extension is missing, for other dtypes, or with ``RNNKIT_C_KERNELS=0``, the same steps run
as torch ops (a dozen small ops per step). Training is 1.1-1.6x ``nn.GRU``'s speed at the
same precision (BENCHMARKS.md).

Forward, PyTorch's formulation (gates in the order r, z, n):

.. math::
    r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
    z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
    n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
    h_t = n_t + z_t \odot (h_{t-1} - n_t)

Backward, with :math:`\delta h_t` the gradient reaching :math:`h_t` (from the output at
step t and from step t+1):

.. math::
    \delta n^{pre}_t = \delta h_t \odot (1 - z_t) \odot (1 - n_t^2) \\
    \delta z^{pre}_t = \delta h_t \odot (h_{t-1} - n_t) \odot z_t (1 - z_t) \\
    \delta r^{pre}_t = \delta n^{pre}_t \odot (W_{hn} h_{t-1} + b_{hn}) \odot r_t (1 - r_t) \\
    \delta h_{t-1} = \delta h_t \odot z_t + [\delta r^{pre}_t, \delta z^{pre}_t,
        \delta n^{pre}_t \odot r_t] W_{hh}

The bracket is the gradient of the recurrent pre-activations (``d_hidden`` below); the input
pre-activations get :math:`[\delta r^{pre}, \delta z^{pre}, \delta n^{pre}]`. Matrix products
run in ``compute_dtype`` (bf16 under autocast), gates and states in float32. The tests check
values and gradients against ``torch.nn.GRU``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

kernels: Any = None  # the optional C extension (setup.py); without it the same steps run as torch ops
if os.environ.get("RNNKIT_C_KERNELS", "1") != "0":
    try:
        from . import _gru_kernels as kernels
    except ImportError:  # pragma: no cover - depends on the install
        pass


def _use_kernels(states: Tensor, compute_dtype: torch.dtype) -> bool:
    """The C steps handle float32 states on CPU with float32 or bf16 products; anything else runs as torch ops."""
    return (kernels is not None and states.device.type == "cpu" and states.dtype == torch.float32
            and compute_dtype in (torch.float32, torch.bfloat16))


class GRUSequence(torch.autograd.Function):
    """One GRU layer, one direction, over ``x`` of shape ``(T, B, input_size)`` from ``h0`` ``(B, H)``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
                compute_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        hidden = w_hh.shape[1]
        dtype = torch.promote_types(x.dtype, w_hh.dtype)  # states stay in the weights' precision
        cd = compute_dtype
        w_ih_c, w_hh_c = w_ih.to(cd), w_hh.to(cd)
        # r and z take both biases at once; b_hn stays inside the reset gate's product.
        bias_in = torch.cat([b_ih[: 2 * hidden] + b_hh[: 2 * hidden], b_ih[2 * hidden:]]).to(cd)
        bias_hn = b_hh[2 * hidden:].to(dtype).contiguous()
        x_c = x.to(cd)
        # All steps' input products at once; then everything element-wise in the states' dtype, because
        # mixed-dtype element-wise ops are several times slower than a cast followed by same-dtype ones.
        gates_in = torch.addmm(bias_in, x_c.reshape(steps * batch, -1), w_ih_c.t()).to(dtype)
        gates_in = gates_in.view(steps, batch, 3 * hidden)
        # states[0] is h0 and states[t + 1] is h_t, so states[:-1] are the previous states without a copy;
        # states_c holds them in the products' dtype (the same tensor when that is the states' dtype).
        states = x.new_empty(steps + 1, batch, hidden, dtype=dtype)
        states[0] = h0
        states_c = states if cd == dtype else x.new_empty(steps + 1, batch, hidden, dtype=cd)
        if states_c is not states:
            states_c[0] = h0
        rz = x.new_empty(steps, batch, 2 * hidden, dtype=dtype)
        n = x.new_empty(steps, batch, hidden, dtype=dtype)
        hidden_n = x.new_empty(steps, batch, hidden, dtype=dtype)  # W_hn h_{t-1} + b_hn, for the reset gate
        steps_fn = _forward_steps_c if _use_kernels(states, cd) else _forward_steps_torch
        steps_fn(gates_in, w_hh_c, bias_hn, rz, n, hidden_n, states, states_c)
        ctx.compute_dtype = cd
        ctx.save_for_backward(x_c, w_ih_c, w_hh_c, states, states_c, rz, n, hidden_n)
        ctx.param_dtypes = (x.dtype, h0.dtype, w_ih.dtype, w_hh.dtype, b_ih.dtype, b_hh.dtype)
        return states[1:], states[-1].clone()

    @staticmethod
    @once_differentiable  # the backward writes into buffers: no graph through it
    def backward(ctx: Any, d_out: Tensor | None, d_last: Tensor | None) -> tuple[Tensor | None, ...]:
        x_c, w_ih_c, w_hh_c, states, states_c, rz, n, hidden_n = ctx.saved_tensors
        cd = ctx.compute_dtype
        steps, batch, hidden = n.shape
        dtype = n.dtype
        # d_hidden[t] = [d r_pre, d z_pre, r * d n_pre]: the recurrent pre-activations' gradient; the input
        # pre-activations' gradient shares its r and z parts and takes d n_pre as its third.
        d_n_pre = n.new_empty(steps, batch, hidden)
        d_hidden = n.new_empty(steps, batch, 3 * hidden)
        d_hidden_c = d_hidden if cd == dtype else n.new_empty(steps, batch, 3 * hidden, dtype=cd)
        dh = n.new_empty(batch, hidden).copy_(d_last) if d_last is not None else n.new_zeros(batch, hidden)
        d_out = d_out.to(dtype).contiguous() if d_out is not None else None
        steps_fn = _backward_steps_c if _use_kernels(n, cd) else _backward_steps_torch
        dh = steps_fn(dh, d_out, w_hh_c, rz, n, hidden_n, states, d_n_pre, d_hidden, d_hidden_c)
        # The input pre-activations' gradient is [d_hidden's r and z parts, d_n_pre]: the products below
        # take the two parts separately rather than copying them together.
        flat = steps * batch
        d_hidden_c = d_hidden_c.reshape(flat, -1)
        d_rz_c, d_n_pre_c = d_hidden_c[:, : 2 * hidden], d_n_pre.reshape(flat, -1).to(cd)
        d_hidden_sum = d_hidden.sum((0, 1))
        x_dtype, h0_dtype, w_ih_dtype, w_hh_dtype, b_ih_dtype, b_hh_dtype = ctx.param_dtypes
        grads: list[Tensor | None] = [None] * 7
        if ctx.needs_input_grad[0]:
            d_x = torch.addmm(torch.mm(d_n_pre_c, w_ih_c[2 * hidden:]), d_rz_c, w_ih_c[: 2 * hidden])
            grads[0] = d_x.reshape(steps, batch, -1).to(x_dtype)
        if ctx.needs_input_grad[1]:
            grads[1] = dh.to(h0_dtype)
        if ctx.needs_input_grad[2]:
            x_flat = x_c.reshape(flat, -1)
            grads[2] = torch.cat([d_rz_c.t() @ x_flat, d_n_pre_c.t() @ x_flat]).to(w_ih_dtype)
        if ctx.needs_input_grad[3]:
            grads[3] = (d_hidden_c.t() @ states_c[:-1].reshape(flat, -1)).to(w_hh_dtype)
        if ctx.needs_input_grad[4]:
            grads[4] = torch.cat([d_hidden_sum[: 2 * hidden], d_n_pre.sum((0, 1))]).to(b_ih_dtype)
        if ctx.needs_input_grad[5]:
            grads[5] = d_hidden_sum.to(b_hh_dtype)
        return tuple(grads)


# The time loops. Each fills the buffers it is given (shapes in GRUSequence); the torch and C versions
# compute the same thing, the C one with one call per step where the torch one makes a dozen.

def _forward_steps_torch(gates_in: Tensor, w_hh_c: Tensor, bias_hn: Tensor, rz: Tensor, n: Tensor,
                         hidden_n: Tensor, states: Tensor, states_c: Tensor) -> None:
    hidden, dtype = n.shape[2], n.dtype
    # Views per step made once: indexing inside the loop costs as much as the small ops.
    in_rz, in_n = gates_in[..., : 2 * hidden].unbind(0), gates_in[..., 2 * hidden:].unbind(0)
    rz_t, r_t, z_t = rz.unbind(0), rz[..., :hidden].unbind(0), rz[..., hidden:].unbind(0)
    n_t, h_t, hc_t, hidden_n_t = n.unbind(0), states.unbind(0), states_c.unbind(0), hidden_n.unbind(0)
    w_hh_ct = w_hh_c.t()
    for t in range(n.shape[0]):
        gh_rz, gh_n = torch.mm(hc_t[t], w_hh_ct).to(dtype).split(2 * hidden, dim=1)
        torch.add(in_rz[t], gh_rz, out=rz_t[t]).sigmoid_()
        torch.add(gh_n, bias_hn, out=hidden_n_t[t])
        torch.addcmul(in_n[t], r_t[t], hidden_n_t[t], out=n_t[t]).tanh_()
        torch.lerp(n_t[t], h_t[t], z_t[t], out=h_t[t + 1])
        if states_c is not states:
            hc_t[t + 1].copy_(h_t[t + 1])


def _forward_steps_c(gates_in: Tensor, w_hh_c: Tensor, bias_hn: Tensor, rz: Tensor, n: Tensor,
                     hidden_n: Tensor, states: Tensor, states_c: Tensor) -> None:
    steps, batch, hidden = n.shape
    recurrent = states_c.new_empty(batch, 3 * hidden)  # h_{t-1} W_hh^T, in the products' dtype
    scratch = n.new_empty(3 * hidden)  # one row of it widened to float32, when it is bf16
    hc_t, w_hh_ct = states_c.unbind(0), w_hh_c.t()
    args = (gates_in.data_ptr(), recurrent.data_ptr(), recurrent.dtype == torch.bfloat16, bias_hn.data_ptr(),
            rz.data_ptr(), n.data_ptr(), hidden_n.data_ptr(), states.data_ptr(),
            states_c.data_ptr() if states_c is not states else 0, scratch.data_ptr())
    for t in range(steps):
        torch.mm(hc_t[t], w_hh_ct, out=recurrent)
        kernels.forward_step(batch, hidden, t, *args)


def _backward_steps_torch(dh: Tensor, d_out: Tensor | None, w_hh_c: Tensor, rz: Tensor, n: Tensor,
                          hidden_n: Tensor, states: Tensor, d_n_pre: Tensor, d_hidden: Tensor,
                          d_hidden_c: Tensor) -> Tensor:
    """Returns the gradient reaching h0."""
    steps, batch, hidden = n.shape
    dtype, cd = n.dtype, d_hidden_c.dtype
    d_rz = n.new_empty(batch, 2 * hidden)
    d_r, d_z = d_rz.split(hidden, dim=1)
    r_t, z_t = rz[..., :hidden].unbind(0), rz[..., hidden:].unbind(0)
    d_hidden_t, d_hidden_rz, d_hidden_n = (d_hidden.unbind(0), d_hidden[..., : 2 * hidden].unbind(0),
                                           d_hidden[..., 2 * hidden:].unbind(0))
    d_n_pre_t, hidden_n_t, n_t, rz_t, h_t = (d_n_pre.unbind(0), hidden_n.unbind(0), n.unbind(0),
                                             rz.unbind(0), states.unbind(0))
    d_out_t = d_out.unbind(0) if d_out is not None else None
    one = n.new_ones(batch, hidden)
    for t in range(steps - 1, -1, -1):
        if d_out_t is not None:
            dh += d_out_t[t]
        z = z_t[t]
        n_now, rz_now = n_t[t], rz_t[t]
        d_tanh = torch.addcmul(one, n_now, n_now, value=-1)   # 1 - n^2
        torch.mul(torch.addcmul(dh, dh, z, value=-1), d_tanh, out=d_n_pre_t[t])  # dh (1-z) (1-n^2)
        torch.mul(d_n_pre_t[t], r_t[t], out=d_hidden_n[t])
        torch.mul(d_n_pre_t[t], hidden_n_t[t], out=d_r)
        torch.mul(dh, h_t[t] - n_now, out=d_z)
        torch.mul(d_rz, torch.addcmul(rz_now, rz_now, rz_now, value=-1), out=d_hidden_rz[t])  # s (1 - s)
        dh = torch.addcmul(torch.mm(d_hidden_t[t].to(cd), w_hh_c).to(dtype), dh, z)
    if d_hidden_c is not d_hidden:
        d_hidden_c.copy_(d_hidden)
    return dh


def _backward_steps_c(dh: Tensor, d_out: Tensor | None, w_hh_c: Tensor, rz: Tensor, n: Tensor,
                      hidden_n: Tensor, states: Tensor, d_n_pre: Tensor, d_hidden: Tensor,
                      d_hidden_c: Tensor) -> Tensor:
    steps, batch, hidden = n.shape
    product = d_hidden_c.new_empty(batch, hidden)  # d_hidden[t + 1] W_hh, in the products' dtype
    d_hidden_ct = d_hidden_c.unbind(0)
    args = (d_out.data_ptr() if d_out is not None else 0, rz.data_ptr(), n.data_ptr(), hidden_n.data_ptr(),
            states.data_ptr(), d_n_pre.data_ptr(), d_hidden.data_ptr(),
            d_hidden_c.data_ptr() if d_hidden_c is not d_hidden else 0)
    dh_ptr, product_ptr, is_bf16 = dh.data_ptr(), product.data_ptr(), product.dtype == torch.bfloat16
    for t in range(steps - 1, -1, -1):
        # at the last step no product of a later step exists yet
        kernels.backward_step(batch, hidden, t, dh_ptr, product_ptr if t < steps - 1 else 0, is_bf16, *args)
        torch.mm(d_hidden_ct[t], w_hh_c, out=product)
    return dh.add_(product.to(dh.dtype))


def compute_dtype_for(x: Tensor) -> torch.dtype:
    """The matrix products' dtype: autocast's lower precision when it is on for this device."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def gru_sequence(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
                 ) -> tuple[Tensor, Tensor]:
    """Run one GRU layer forward in time over ``x`` ``(T, B, I)``; returns every step's ``h`` and the last one."""
    cd = compute_dtype_for(x)
    with torch.autocast(x.device.type, enabled=False):
        return GRUSequence.apply(x, h0, w_ih, w_hh, b_ih, b_hh, cd)
