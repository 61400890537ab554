r"""A whole-sequence layer-normalised LSTM layer for CPU with a hand-derived backward pass.

Run step by step, the LN-LSTM (:class:`rnnkit.nn.cells.LayerNormLSTM`) records some twenty small ops
a step, two layer norms among them, and autograd replays each one's backward, weight gradients
included. This module runs one layer over a whole sequence as a single autograd node: per step the
forward pass does one matrix product and the element-wise work below, the backward pass one
product and its own element-wise work, and the recurrent weight's gradient is one large product
over all steps at once, where bf16 matrix units (AMX) pay off. The input's part of every step,
:math:`u_t = \mathrm{LN}(W_{ih} x_t) + b`, is one product over all steps in the cell's ``project``,
outside this node, so autograd takes ``W_ih``'s and the input norm's gradients from it.

Forward, for each step (``LN`` over a vector's own elements, :math:`\hat z = (z - \mu(z)) / \sigma(z)`):

.. math::
    a_t = W_{hh} h_{t-1}, \qquad p_t = u_t + \alpha_{hh} \odot \hat a_t + \beta_{hh} \\
    (i, f, o) = \sigma(p_t^{i, f, o}), \quad g = \tanh(p_t^g), \qquad c_t = f \odot c_{t-1} + i \odot g \\
    n_t = \alpha_c \odot \hat c_t + \beta_c, \qquad h_t = o \odot \tanh(n_t)

Backward, with :math:`\delta h_t` and :math:`\delta c_t` the whole gradients reaching :math:`h_t`
and :math:`c_t` (from the outputs at step t and from step t+1), and the layer norm's backward
:math:`\mathrm{LN}'(\delta \hat z) = (\delta \hat z - \overline{\delta \hat z} - \hat z\,
\overline{\delta \hat z \odot \hat z}) / \sigma(z)` (bars: means over the vector):

.. math::
    \delta p^o = \delta h_t \odot \tanh(n_t) \odot o (1 - o), \qquad
    \delta n_t = \delta h_t \odot o \odot (1 - \tanh^2 n_t) \\
    \delta c_t \mathrel{+}= \mathrm{LN}'(\alpha_c \odot \delta n_t) \\
    \delta p^f = \delta c_t \odot c_{t-1} \odot f (1 - f), \quad
    \delta p^i = \delta c_t \odot g \odot i (1 - i), \quad
    \delta p^g = \delta c_t \odot i \odot (1 - g^2) \\
    \delta a_t = \mathrm{LN}'(\alpha_{hh} \odot \delta p_t), \qquad
    \delta h_{t-1} \mathrel{+}= W_{hh}^\top \delta a_t, \qquad \delta c_{t-1} \mathrel{+}= f \odot \delta c_t

:math:`\delta u_t = \delta p_t`; the gains and shifts take :math:`\sum \delta p \odot \hat a`,
:math:`\sum \delta p`, :math:`\sum \delta n \odot \hat c` and :math:`\sum \delta n` over all steps.
Matrix products run in ``compute_dtype`` (bf16 under autocast), everything else in float32 (or
float64). Each step's element-wise work runs in one C pass (``rnnkit/nn/_gru_kernels.c``) for
float32; without the extension, for other dtypes, or with ``RNNKIT_C_KERNELS=0``, the same steps
run as torch ops. The tests check values and gradients against the cell's step loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .cells import LN_EPS
from .gru_sequence import compute_dtype_for
from .gru_sequence import kernels as kernels  # the same optional extension (None without it, or switched off)


def _use_kernels(states: Tensor, compute_dtype: torch.dtype) -> bool:
    """The C steps handle float32 states on CPU with float32 or bf16 products; anything else runs as torch ops."""
    return (kernels is not None and hasattr(kernels, "lnlstm_forward_step") and states.device.type == "cpu"
            and states.dtype == torch.float32 and compute_dtype in (torch.float32, torch.bfloat16))


class LNLSTMSequence(torch.autograd.Function):
    """One LN-LSTM layer-direction: every ``h`` and ``c`` ``(T, B, H)`` from ``u`` ``(T, B, 4H)`` and ``h0``, ``c0``."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, gain_hh: Tensor, shift_hh: Tensor,
                gain_c: Tensor, shift_c: Tensor, compute_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        steps, batch, _ = u.shape
        hidden = w_hh.shape[1]
        dtype = torch.promote_types(torch.promote_types(u.dtype, h0.dtype), torch.float32)
        cd = compute_dtype if compute_dtype != torch.float32 else dtype
        w_hh_c = w_hh.to(cd)
        params = [p.to(dtype).contiguous() for p in (gain_hh, shift_hh, gain_c, shift_c)]
        # The recurrent norm's shift joins the input part once for all steps.
        u_shifted = (u.to(dtype) + params[1]).contiguous()
        # h[0] = h0 and h[t + 1] = h_t, so h[:-1] are the previous states without a copy; h_c holds them
        # in the products' dtype (the same tensor when that is the states' dtype). Likewise c.
        h = u.new_empty(steps + 1, batch, hidden, dtype=dtype)
        h[0] = h0
        h_c = h if cd == dtype else u.new_empty(steps + 1, batch, hidden, dtype=cd)
        if h_c is not h:
            h_c[0] = h0
        c = u.new_empty(steps + 1, batch, hidden, dtype=dtype)
        c[0] = c0
        gates = u.new_empty(steps, batch, 4 * hidden, dtype=dtype)   # sigma(i), sigma(f), tanh(g), sigma(o)
        a_hat = u.new_empty(steps, batch, 4 * hidden, dtype=dtype)   # the normalised recurrent product
        c_hat = u.new_empty(steps, batch, hidden, dtype=dtype)       # the normalised cell
        tanh_n = u.new_empty(steps, batch, hidden, dtype=dtype)
        rstd = u.new_empty(steps, batch, 2, dtype=dtype)             # 1 / sigma of a_t and of c_t
        buffers = (u_shifted, gates, a_hat, c_hat, tanh_n, rstd, h, h_c, c)
        steps_fn = _forward_steps_c if _use_kernels(h, cd) else _forward_steps_torch
        steps_fn(w_hh_c, params[0], params[2], params[3], *buffers)
        ctx.compute_dtype = cd
        ctx.save_for_backward(w_hh_c, params[0], params[2], gates, a_hat, c_hat, tanh_n, rstd, h_c, c)
        ctx.param_dtypes = (u.dtype, h0.dtype, c0.dtype, w_hh.dtype, gain_hh.dtype, shift_hh.dtype,
                            gain_c.dtype, shift_c.dtype)
        return h[1:], c[1:]

    @staticmethod
    @once_differentiable  # the backward writes into buffers: no graph through it
    def backward(ctx: Any, d_h: Tensor | None, d_c: Tensor | None) -> tuple[Tensor | None, ...]:
        w_hh_c, gain_hh, gain_c, gates, a_hat, c_hat, tanh_n, rstd, h_c, c = ctx.saved_tensors
        cd = ctx.compute_dtype
        steps, batch, hidden = c_hat.shape
        dtype = c_hat.dtype
        d_h = d_h.to(dtype).contiguous() if d_h is not None else None
        d_c = d_c.to(dtype).contiguous() if d_c is not None else None
        d_pre = gates.new_empty(steps, batch, 4 * hidden)   # the gates' pre-activations', u's gradient
        d_a = gates.new_empty(steps, batch, 4 * hidden)     # the recurrent product's
        d_a_c = d_a if cd == dtype else gates.new_empty(steps, batch, 4 * hidden, dtype=cd)
        d_n = gates.new_empty(steps, batch, hidden)         # the cell norm's output's
        dh, dc = gates.new_zeros(batch, hidden), gates.new_zeros(batch, hidden)
        steps_fn = _backward_steps_c if _use_kernels(gates, cd) else _backward_steps_torch
        dh = steps_fn(dh, dc, d_h, d_c, w_hh_c, gain_hh, gain_c, gates, a_hat, c_hat, tanh_n, rstd, c,
                      d_pre, d_a, d_a_c, d_n)
        flat = steps * batch
        grads: list[Tensor | None] = [None] * 9
        u_dtype, h0_dtype, c0_dtype, w_hh_dtype, gain_hh_dtype, shift_hh_dtype, gain_c_dtype, shift_c_dtype = \
            ctx.param_dtypes
        d_pre_sum = d_pre.sum((0, 1))
        if ctx.needs_input_grad[0]:
            grads[0] = d_pre.to(u_dtype)
        if ctx.needs_input_grad[1]:
            grads[1] = dh.to(h0_dtype)
        if ctx.needs_input_grad[2]:
            grads[2] = dc.to(c0_dtype)
        if ctx.needs_input_grad[3]:
            grads[3] = (d_a_c.reshape(flat, -1).t() @ h_c[:-1].reshape(flat, -1)).to(w_hh_dtype)
        if ctx.needs_input_grad[4]:
            grads[4] = (d_pre * a_hat).sum((0, 1)).to(gain_hh_dtype)
        if ctx.needs_input_grad[5]:
            grads[5] = d_pre_sum.to(shift_hh_dtype)
        if ctx.needs_input_grad[6]:
            grads[6] = (d_n * c_hat).sum((0, 1)).to(gain_c_dtype)
        if ctx.needs_input_grad[7]:
            grads[7] = d_n.sum((0, 1)).to(shift_c_dtype)
        return tuple(grads)


# The time loops. Each fills the buffers it is given (shapes in LNLSTMSequence); the torch and C versions
# compute the same thing, the C one with one call per step where the torch one makes twenty.

def _normalise(z: Tensor, out: Tensor, rstd: Tensor) -> None:
    """``out`` = ``z`` normalised over its last dimension; ``rstd`` (``B x 1``) = 1 / its standard deviation."""
    centred = z - z.mean(-1, keepdim=True)
    torch.rsqrt(centred.square().mean(-1, keepdim=True) + LN_EPS, out=rstd)
    torch.mul(centred, rstd, out=out)


def _forward_steps_torch(w_hh_c: Tensor, gain_hh: Tensor, gain_c: Tensor, shift_c: Tensor, u_shifted: Tensor,
                         gates: Tensor, a_hat: Tensor, c_hat: Tensor, tanh_n: Tensor, rstd: Tensor, h: Tensor,
                         h_c: Tensor, c: Tensor) -> None:
    hidden, dtype = c.shape[2], c.dtype
    w_hh_ct = w_hh_c.t()
    for t in range(gates.shape[0]):
        _normalise(torch.mm(h_c[t], w_hh_ct).to(dtype), a_hat[t], rstd[t, :, :1])
        torch.addcmul(u_shifted[t], a_hat[t], gain_hh, out=gates[t])
        i, f, g, o = gates[t].split(hidden, dim=1)
        gates[t, :, : 2 * hidden].sigmoid_()
        g.tanh_()
        o.sigmoid_()
        torch.addcmul(f * c[t], i, g, out=c[t + 1])
        _normalise(c[t + 1], c_hat[t], rstd[t, :, 1:])
        torch.addcmul(shift_c, c_hat[t], gain_c, out=tanh_n[t]).tanh_()
        torch.mul(o, tanh_n[t], out=h[t + 1])
        if h_c is not h:
            h_c[t + 1].copy_(h[t + 1])


def _normalise_backward(d_hat: Tensor, z_hat: Tensor, rstd: Tensor) -> Tensor:
    """The gradient reaching ``z`` from ``d_hat``, the one reaching ``z_hat`` = ``z`` normalised."""
    mean_d = d_hat.mean(-1, keepdim=True)
    mean_dz = (d_hat * z_hat).mean(-1, keepdim=True)
    return (d_hat - mean_d - z_hat * mean_dz) * rstd


def _backward_steps_torch(dh: Tensor, dc: Tensor, d_h: Tensor | None, d_c: Tensor | None, w_hh_c: Tensor,
                          gain_hh: Tensor, gain_c: Tensor, gates: Tensor, a_hat: Tensor, c_hat: Tensor,
                          tanh_n: Tensor, rstd: Tensor, c: Tensor, d_pre: Tensor, d_a: Tensor, d_a_c: Tensor,
                          d_n: Tensor) -> Tensor:
    """Returns the gradient reaching h0; ``dc`` ends as the one reaching c0."""
    hidden = c.shape[2]
    for t in range(gates.shape[0] - 1, -1, -1):
        if d_h is not None:
            dh += d_h[t]
        if d_c is not None:
            dc += d_c[t]
        i, f, g, o = gates[t].split(hidden, dim=1)
        d_i, d_f, d_g, d_o = d_pre[t].split(hidden, dim=1)
        torch.mul(dh * tanh_n[t], o * (1 - o), out=d_o)
        torch.mul(dh * o, 1 - tanh_n[t].square(), out=d_n[t])
        dc += _normalise_backward(d_n[t] * gain_c, c_hat[t], rstd[t, :, 1:])
        torch.mul(dc * c[t], f * (1 - f), out=d_f)
        torch.mul(dc * g, i * (1 - i), out=d_i)
        torch.mul(dc * i, 1 - g.square(), out=d_g)
        dc.mul_(f)
        d_a[t] = _normalise_backward(d_pre[t] * gain_hh, a_hat[t], rstd[t, :, :1])
        if d_a_c is not d_a:
            d_a_c[t].copy_(d_a[t])
        dh = torch.mm(d_a_c[t], w_hh_c).to(dh.dtype)
    return dh


def _forward_steps_c(w_hh_c: Tensor, gain_hh: Tensor, gain_c: Tensor, shift_c: Tensor, u_shifted: Tensor,
                     gates: Tensor, a_hat: Tensor, c_hat: Tensor, tanh_n: Tensor, rstd: Tensor, h: Tensor,
                     h_c: Tensor, c: Tensor) -> None:
    steps, batch, hidden = c_hat.shape
    recurrent = h_c.new_empty(batch, 4 * hidden)  # h_{t-1} W_hh^T, in the products' dtype
    scratch = gates.new_empty(8 * hidden)  # one row of it in float32, and room for the norm's work
    h_ct, w_hh_ct = h_c.unbind(0), w_hh_c.t()
    args = (recurrent.data_ptr(), recurrent.dtype == torch.bfloat16, scratch.data_ptr(), gain_hh.data_ptr(),
            gain_c.data_ptr(), shift_c.data_ptr(), u_shifted.data_ptr(), gates.data_ptr(), a_hat.data_ptr(),
            c_hat.data_ptr(), tanh_n.data_ptr(), rstd.data_ptr(), h.data_ptr(),
            h_c.data_ptr() if h_c is not h else 0, c.data_ptr())
    for t in range(steps):
        torch.mm(h_ct[t], w_hh_ct, out=recurrent)
        kernels.lnlstm_forward_step(batch, hidden, t, *args)


def _backward_steps_c(dh: Tensor, dc: Tensor, d_h: Tensor | None, d_c: Tensor | None, w_hh_c: Tensor,
                      gain_hh: Tensor, gain_c: Tensor, gates: Tensor, a_hat: Tensor, c_hat: Tensor,
                      tanh_n: Tensor, rstd: Tensor, c: Tensor, d_pre: Tensor, d_a: Tensor, d_a_c: Tensor,
                      d_n: Tensor) -> Tensor:
    steps, batch, hidden = c_hat.shape
    product = d_a_c.new_empty(batch, hidden)  # W_hh^T d_a[t + 1], in the products' dtype
    d_a_ct = d_a_c.unbind(0)
    args = (d_h.data_ptr() if d_h is not None else 0, d_c.data_ptr() if d_c is not None else 0,
            gain_hh.data_ptr(), gain_c.data_ptr(), gates.data_ptr(), a_hat.data_ptr(), c_hat.data_ptr(),
            tanh_n.data_ptr(), rstd.data_ptr(), c.data_ptr(), d_pre.data_ptr(), d_n.data_ptr(), d_a.data_ptr(),
            d_a_c.data_ptr() if d_a_c is not d_a else 0)
    dh_ptr, dc_ptr, product_ptr, is_bf16 = dh.data_ptr(), dc.data_ptr(), product.data_ptr(), \
        product.dtype == torch.bfloat16
    for t in range(steps - 1, -1, -1):
        # at the last step no product of a later step exists yet
        kernels.lnlstm_backward_step(batch, hidden, t, dh_ptr, dc_ptr, product_ptr if t < steps - 1 else 0,
                                     is_bf16, *args)
        torch.mm(d_a_ct[t], w_hh_c, out=product)
    return dh.copy_(product)  # the gradient reaching h0: W_hh^T d_a[0]


def lnlstm_sequence(u: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, gain_hh: Tensor, shift_hh: Tensor,
                    gain_c: Tensor, shift_c: Tensor) -> tuple[Tensor, Tensor]:
    """Run one LN-LSTM layer forward in time from its input part ``u`` ``(T, B, 4H)``.

    Returns every step's ``h`` and ``c`` ``(T, B, H)``."""
    cd = compute_dtype_for(u)
    with torch.autocast(u.device.type, enabled=False):
        return LNLSTMSequence.apply(u, h0, c0, w_hh, gain_hh, shift_hh, gain_c, shift_c, cd)
