r"""Recurrent cells, each defined once, from its equations, in one registry.

A cell *type* says everything the rest of rnnkit needs to know about a cell: the parameters of
one layer and direction (their names, shapes and initialisation), the state it carries (``h``,
or ``h`` and ``c``), how one time step maps an input and the previous state to the next state,
and, where one exists, a faster way to run a whole sequence (a fused kernel, or a parallel form
over time). Layers (:mod:`rnnkit.nn.layers`), fast generation (:mod:`rnnkit.nn.stepping`),
initialisation (:mod:`rnnkit.nn.init`), the gradient-flow and neuron tools and every command's
``--cell`` choices read this registry; adding a cell is one :class:`CellType` subclass passed to
:func:`register_cell`, plus its tests (see ``docs/adding-a-cell.md``).

Conventions, as in ``torch.nn``: a layer and direction holds ``weight_ih`` (``G*H x I``),
``weight_hh`` (``G*H x H``) and the biases ``bias_ih``, ``bias_hh`` (``G*H``) for ``G`` gate
blocks of ``H`` units, stacked in torch's gate order, so weights load to and from
``torch.nn.RNN/LSTM/GRU`` (and their ``*Cell`` versions). Inside rnnkit a state is always a
tuple of tensors, ``h`` first; the public layers and cells hand out ``h`` alone for one-part
states and ``(h, c)`` for the LSTM, as torch does. Cells with other parameters (the
layer-normalised and multiplicative LSTMs) name and describe them in their docstrings.

One step is split in two, as the maths is: :meth:`CellType.project` computes the input's
contribution for all time steps at once (one large matrix product), and :meth:`CellType.step`
takes one step's projection and the previous state. Cells whose gates see only the sum
``W_ih x + b_ih + W_hh h + b_hh`` (the Elman RNN, the LSTM) define :meth:`CellType.update` on
that sum instead, which lets the generator fuse both products into one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import RnnkitError
from . import scan_sequence

State = tuple[Tensor, ...]


def detach_state(state: Any) -> Any:
    """A recurrent state (a tensor, or tuples of them, nested for models made of several) cut from its graph:
    carried on, it no longer backpropagates into the steps that made it (truncated BPTT)."""
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state.detach()
Weights = dict[str, Tensor]
Linear = Callable[..., Tensor]  # (x, weight, bias=None) -> x @ weight.T + bias, as F.linear


class CellType:
    """One recurrent cell: its parameters, its state, its step, and its fast paths.

    Subclasses set the class attributes and define :meth:`update` (additive cells) or
    :meth:`step`. Optional: :meth:`parameter_shapes` and :meth:`reset_parameters` for
    parameters beyond torch's four, :meth:`sequence_kernel` for a whole-sequence fast path.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""                 # one line for ``--help`` and tables
    gates: ClassVar[int] = 1                    # blocks of ``hidden_size`` rows in weight_ih / weight_hh
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    additive: ClassVar[bool] = True             # gates read only W_ih x + b_ih + W_hh h + b_hh
    torch_kernel: ClassVar[str | None] = None   # torch's fused multi-layer kernel (torch._VF), same weights
    torch_layer: ClassVar[str | None] = None    # the torch.nn layer whose state_dict is ours ("LSTM", ...)
    recurrent_weight: ClassVar[str | None] = "weight_hh"  # the state-to-state matrix (None: gates see x only)
    init_schemes: ClassVar[tuple[str, ...]] = ("default", "orthogonal")
    forget_gate: ClassVar[int | None] = None    # gate block of an LSTM-style forget gate (forget1, chrono)
    input_gate: ClassVar[int | None] = None
    # the bias vectors added to the gate pre-activations: forget1 and chrono set the forget and
    # input gates' entries of the first one present and zero them in the others
    gate_biases: ClassVar[tuple[str, ...]] = ("bias_ih", "bias_hh")

    @property
    def state_size(self) -> int:
        return len(self.state_names)

    def parameter_shapes(self, input_size: int, hidden_size: int, bias: bool) -> dict[str, tuple[int, ...]]:
        """Names and shapes of one layer-direction's parameters (torch's four by default)."""
        g = self.gates * hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (g, input_size), "weight_hh": (g, hidden_size)}
        if bias:
            shapes.update(bias_ih=(g,), bias_hh=(g,))
        return shapes

    @torch.no_grad()
    def reset_parameters(self, weights: Weights, hidden_size: int) -> None:
        """PyTorch's default: every parameter uniform in ±1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(hidden_size)
        for w in weights.values():
            nn.init.uniform_(w, -bound, bound)

    def project(self, x: Tensor, w: Weights, linear: Linear = F.linear) -> Tensor:
        """The input's part of every step's pre-activations, ``W_ih x + b_ih``, for any leading shape."""
        return linear(x, w["weight_ih"], w.get("bias_ih"))

    def step(self, xw: Tensor, state: State, w: Weights, linear: Linear = F.linear) -> State:
        """The next state from one step's input projection ``xw`` and the previous ``state``."""
        return self.update(xw + linear(state[0], w["weight_hh"], w.get("bias_hh")), state)

    def update(self, pre: Tensor, state: State) -> State:
        """Additive cells: the next state from the summed pre-activations ``pre`` (``B x G*H``)."""
        raise NotImplementedError(f"cell {self.name!r} defines step(), not update()")

    def sequence_kernel(self, device: torch.device, bias: bool) -> Callable | None:
        """A whole-sequence function for one layer and direction, or None to use the step loop.

        It is called as ``kernel(x, state, w, lengths)`` with ``x`` time-major ``(T, B, I)`` and
        running forward in time (the layer reverses sequences for the backward direction), and
        returns every step's ``h`` ``(T, B, H)`` and the state after each sequence's last valid
        step (``lengths``; None means all ``T``). Outputs past a sequence's end may hold anything:
        the layer zeroes them.
        """
        return None

    def __repr__(self) -> str:
        return f"<cell {self.name}>"


class ElmanTanh(CellType):
    r"""Elman cell: :math:`h' = \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`."""

    name, summary = "rnn", "Elman RNN, tanh"
    torch_kernel, torch_layer = "rnn_tanh", "RNN"

    def update(self, pre: Tensor, state: State) -> State:
        return (torch.tanh(pre),)


class ElmanReLU(CellType):
    r"""Elman cell with ReLU: :math:`h' = \max(0, W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`.

    With the ``identity`` initialisation this is the IRNN (Le et al. 2015).
    """

    name, summary = "rnn_relu", "Elman RNN, ReLU (IRNN with --init identity)"
    torch_kernel, torch_layer = "rnn_relu", "RNN"
    init_schemes = ("default", "orthogonal", "identity")

    def update(self, pre: Tensor, state: State) -> State:
        return (torch.relu(pre),)


class LSTMType(CellType):
    r"""Long short-term memory (Hochreiter and Schmidhuber 1997, with a forget gate).

    .. math::
        i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \qquad
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \qquad
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' = f \odot c + i \odot g \qquad h' = o \odot \tanh(c')

    Gates are stacked in the order i, f, g, o, as in ``torch.nn.LSTM``.
    """

    name, summary = "lstm", "LSTM (torch's fused kernel: oneDNN, cuDNN)"
    gates, state_names = 4, ("h", "c")
    torch_kernel, torch_layer = "lstm", "LSTM"
    init_schemes = ("default", "orthogonal", "forget1", "chrono")
    input_gate, forget_gate = 0, 1

    def update(self, pre: Tensor, state: State) -> State:
        i, f, g, o = pre.chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


LN_EPS = 1e-5  # as torch.nn.LayerNorm


class LayerNormLSTM(CellType):
    r"""Layer-normalised LSTM (Ba, Kiros and Hinton 2016, "Layer Normalization", their LSTM appendix).

    .. math::
        (i, f, g, o) = \mathrm{LN}(W_{ih} x; \alpha_{ih}, \beta_{ih})
                     + \mathrm{LN}(W_{hh} h; \alpha_{hh}, \beta_{hh}) + b \\
        c' = \sigma(f) \odot c + \sigma(i) \odot \tanh(g) \qquad
        h' = \sigma(o) \odot \tanh(\mathrm{LN}(c'; \alpha_c, \beta_c))

    with :math:`\mathrm{LN}(z; \alpha, \beta) = \alpha \odot (z - \mu(z)) / \sqrt{\mathrm{var}(z) + \epsilon}
    + \beta`, mean and (biased) variance over the elements of one vector, :math:`\epsilon = 10^{-5}`.

    The two products are each normalised over the **whole** ``4H`` gate vector, not gate by
    gate: the paper defines LN on the summed inputs of a layer (``W_h h`` and ``W_x x`` as a
    whole, its ``LN: R^D -> R^D`` with ``D = 4H``), and so do the authors' code and PyTorch's
    own layer-norm LSTM benchmark (``benchmarks/fastrnns/custom_lstms.py``). TensorFlow's
    ``LayerNormBasicLSTMCell`` normalises each gate's block separately, on one product of
    ``[x, h]``; that is a different cell. The cell state is normalised over its ``H`` units.

    Parameters: ``weight_ih`` (``4H x I``), ``weight_hh`` (``4H x H``), gates stacked i, f, g, o
    as in ``torch.nn.LSTM``; :math:`b`, ``bias_gates`` (``4H``); the gains :math:`\alpha`,
    ``ln_ih_gain``, ``ln_hh_gain`` (``4H``) and ``ln_c_gain`` (``H``), initialised to 1; the
    shifts :math:`\beta`, ``ln_ih_bias``, ``ln_hh_bias`` and ``ln_c_bias``, initialised to 0.
    ``bias=False`` drops :math:`b` and the shifts, keeping the gains. The input normalisation is
    per step and per sequence, so :meth:`project` does it (with :math:`b` added) for all steps
    at once; a step then normalises only ``W_hh h`` and ``c'``. Like the paper's, the three
    normalisations have their own parameters, and :math:`b` and the two gate shifts add up
    to one bias (kept apart as in the paper; ``forget1`` and ``chrono`` set :math:`b`).

    ``recurrent_weight`` is ``weight_hh``, the state-to-state matrix; because the normalisation
    divides out the size of ``W_hh h``, its spectral radius says nothing about exploding or
    vanishing here (scaling ``weight_hh`` leaves the cell unchanged, up to ``epsilon``).
    """

    name, summary = "lnlstm", "layer-normalised LSTM (Ba et al. 2016; rnnkit's sequence kernel on CPU)"
    gates, state_names, additive = 4, ("h", "c"), False
    init_schemes = ("default", "orthogonal", "forget1", "chrono")
    input_gate, forget_gate = 0, 1
    gate_biases = ("bias_gates", "ln_ih_bias", "ln_hh_bias")

    def parameter_shapes(self, input_size: int, hidden_size: int, bias: bool) -> dict[str, tuple[int, ...]]:
        g = 4 * hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (g, input_size), "weight_hh": (g, hidden_size)}
        if bias:
            shapes["bias_gates"] = (g,)
        for part, size in (("ih", g), ("hh", g), ("c", hidden_size)):
            shapes[f"ln_{part}_gain"] = (size,)
            if bias:
                shapes[f"ln_{part}_bias"] = (size,)
        return shapes

    @torch.no_grad()
    def reset_parameters(self, weights: Weights, hidden_size: int) -> None:
        """Weights and ``bias_gates`` as PyTorch's LSTM (uniform in ±1/sqrt(hidden)); gains 1, shifts 0."""
        bound = 1.0 / math.sqrt(hidden_size)
        for role, w in weights.items():
            if role.endswith("_gain"):
                nn.init.ones_(w)
            elif role.startswith("ln_"):
                nn.init.zeros_(w)
            else:
                nn.init.uniform_(w, -bound, bound)

    def project(self, x: Tensor, w: Weights, linear: Linear = F.linear) -> Tensor:
        """``LN(W_ih x) + b`` for any leading shape (the input's shift and ``b`` in one addition)."""
        shift = w.get("ln_ih_bias")
        if shift is not None and "bias_gates" in w:
            shift = shift + w["bias_gates"]
        xw = linear(x, w["weight_ih"])
        return F.layer_norm(xw, xw.shape[-1:], w["ln_ih_gain"], shift, LN_EPS)

    def step(self, xw: Tensor, state: State, w: Weights, linear: Linear = F.linear) -> State:
        h, c = state
        hw = linear(h, w["weight_hh"])
        i, f, g, o = (xw + F.layer_norm(hw, hw.shape[-1:], w["ln_hh_gain"], w.get("ln_hh_bias"), LN_EPS)).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        c_norm = F.layer_norm(c, c.shape[-1:], w["ln_c_gain"], w.get("ln_c_bias"), LN_EPS)
        return torch.sigmoid(o) * torch.tanh(c_norm), c

    def sequence_kernel(self, device: torch.device, bias: bool) -> Callable | None:
        return self._cpu_kernel if device.type == "cpu" and bias else None

    def _cpu_kernel(self, x: Tensor, state: State, w: Weights, lengths: Tensor | None) -> tuple[Tensor, State]:
        from .lnlstm_sequence import lnlstm_sequence

        h, c = lnlstm_sequence(self.project(x, w), state[0], state[1], w["weight_hh"], w["ln_hh_gain"],
                               w["ln_hh_bias"], w["ln_c_gain"], w["ln_c_bias"])
        if lengths is None:
            return h, (h[-1], c[-1])
        return h, (last_valid(h, lengths), last_valid(c, lengths))


class MultiplicativeLSTM(CellType):
    r"""Multiplicative LSTM (Krause, Lu, Murray and Renals 2016, "Multiplicative LSTM for sequence modelling").

    .. math::
        m = (W_{xm} x) \odot (W_{hm} h) \\
        (i, f, g, o) = W_{ih} x + W_{mh} m + b \\
        c' = \sigma(f) \odot c + \sigma(i) \odot \tanh(g) \qquad
        h' = \sigma(o) \odot \tanh(c')

    The gates and the candidate read the intermediate state ``m`` where an LSTM reads ``h``, so
    each input character selects its own recurrent transition ``W_mh diag(W_xm x) W_hm``. As in
    the paper, ``m`` has ``H`` units and no bias, and the gates have one bias each.

    Parameters, named from-to as torch names ``weight_ih`` (the paper writes them to-from:
    its :math:`W_{mx}` is ``W_xm``, its :math:`W_{mh}` is ``weight_hm``, its :math:`W_{*m}` are
    ``weight_mh``):

    - ``weight_ih`` (``5H x I``): every product of the input, stacked: the gates' ``W_ih``
      (i, f, g, o, as ``torch.nn.LSTM``) then ``W_xm``, so :meth:`project` is one matrix
      product over all steps;
    - ``weight_hm`` (``H x H``): state to ``m``; ``weight_mh`` (``4H x H``): ``m`` to the gates;
    - ``bias_gates`` (``4H``), the gates' bias (added in the step's ``W_mh m`` product).

    ``recurrent_weight`` is ``weight_hm``, the one matrix that reads the state, and a square
    one: scaling it scales the step's Jacobian as scaling ``weight_hh`` does in an LSTM, and
    ``--init orthogonal`` makes it orthogonal (``weight_mh`` keeps its default).
    """

    name, summary = "mlstm", "multiplicative LSTM (Krause et al. 2016)"
    gates, state_names, additive = 4, ("h", "c"), False
    init_schemes = ("default", "orthogonal", "forget1", "chrono")
    input_gate, forget_gate = 0, 1
    recurrent_weight = "weight_hm"
    gate_biases = ("bias_gates",)

    def parameter_shapes(self, input_size: int, hidden_size: int, bias: bool) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (5 * hidden_size, input_size),
                                              "weight_hm": (hidden_size, hidden_size),
                                              "weight_mh": (4 * hidden_size, hidden_size)}
        if bias:
            shapes["bias_gates"] = (4 * hidden_size,)
        return shapes

    def project(self, x: Tensor, w: Weights, linear: Linear = F.linear) -> Tensor:
        """``[W_ih x, W_xm x]`` (``5H`` wide) for any leading shape; the bias joins in the step."""
        return linear(x, w["weight_ih"])

    def step(self, xw: Tensor, state: State, w: Weights, linear: Linear = F.linear) -> State:
        h, c = state
        split = 4 * h.shape[-1]
        m = xw[..., split:] * linear(h, w["weight_hm"])
        i, f, g, o = (xw[..., :split] + linear(m, w["weight_mh"], w.get("bias_gates"))).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class GRUType(CellType):
    r"""Gated recurrent unit, in PyTorch's (and cuDNN's) formulation.

    .. math::
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \qquad
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \qquad
        h' = (1 - z) \odot n + z \odot h

    The reset gate multiplies the recurrent product ``W_hn h + b_hn`` after it is computed.
    Cho et al. (2014) apply it before, ``W_hn (r ⊙ h)``; this form lets all three recurrent
    products be one matrix product per step, which is why cuDNN and PyTorch use it. The two
    are different functions: weights do not transfer between them.

    On CPU (with biases) a layer runs each direction as one whole-sequence node with a
    hand-derived backward and a C pass per step (:mod:`rnnkit.nn.gru_sequence`): torch has no
    fused GRU kernel there.
    """

    name, summary = "gru", "GRU (cuDNN on GPU, rnnkit's sequence kernel on CPU)"
    gates, additive = 3, False
    torch_kernel, torch_layer = "gru", "GRU"

    def step(self, xw: Tensor, state: State, w: Weights, linear: Linear = F.linear) -> State:
        h = state[0]
        hidden = h.shape[-1]
        gh = linear(h, w["weight_hh"], w.get("bias_hh"))
        r, z = torch.sigmoid(xw[..., : 2 * hidden] + gh[..., : 2 * hidden]).chunk(2, dim=-1)
        n = torch.tanh(xw[..., 2 * hidden:] + r * gh[..., 2 * hidden:])
        return (n + z * (h - n),)

    def sequence_kernel(self, device: torch.device, bias: bool) -> Callable | None:
        return _gru_cpu_kernel if device.type == "cpu" and bias else None


def _gru_cpu_kernel(x: Tensor, state: State, w: Weights, lengths: Tensor | None) -> tuple[Tensor, State]:
    from .gru_sequence import gru_sequence

    out, last = gru_sequence(x, state[0], w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"])
    # Padding lies after each sequence's end and time runs forward, so the state after the last
    # valid step is simply that step's output.
    return out, ((last,) if lengths is None else (last_valid(out, lengths),))


# --- minimal gated cells: gates from the input only, trained by a parallel scan over time -----

class ScanCell(CellType):
    r"""A cell whose gates read the input only, so that its step is linear in the state:
    :math:`h_t = a_t \odot h_{t-1} + b_t` with :math:`a_t \in (0, 1)` and :math:`b_t > 0`
    functions of :math:`x_t` alone.

    Such a recurrence needs no step-by-step loop: a subclass gives :math:`\log a_t` and
    :math:`\log b_t` from the input projection (:meth:`log_coefficients`) and the layer runs the
    whole sequence at once (:func:`log_space_scan`, on every device). Its :meth:`step` is the
    same cell written plainly from its equations, as generation and ``impl="loop"`` run it.

    On CPU in float32 a cell with a C kernel (``scan_kernel``, the name of its coefficients in
    ``rnnkit/nn/_gru_kernels.c``) runs instead one pass over time in C with a hand-derived
    backward (:mod:`rnnkit.nn.scan_sequence`), the same function several times faster there; a
    cell without one, other dtypes and other devices take the scan. A subclass that changes
    the coefficients sets ``scan_kernel`` to its own kernel's name, or to None.
    One layer-direction holds ``weight_ih`` (``G*H x I``, its gate blocks stacked) and
    ``bias_ih`` (``G*H``); there is no recurrent weight. The cell is the cell alone: layers stack
    it like any other, and the extras that papers put around stacked layers (normalisation,
    residual connections, ...) belong to a model, not to the cell.
    """

    additive = False
    recurrent_weight = None
    init_schemes = ("default",)
    scan_kernel: ClassVar[str | None] = None  # the C kernel of these coefficients (scan_sequence.kernel_kind)

    def parameter_shapes(self, input_size: int, hidden_size: int, bias: bool) -> dict[str, tuple[int, ...]]:
        g = self.gates * hidden_size
        return {"weight_ih": (g, input_size), "bias_ih": (g,)} if bias else {"weight_ih": (g, input_size)}

    def log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        """``log a`` and ``log b`` of every step from the input projections ``xw`` (``... x G*H``)."""
        raise NotImplementedError

    def sequence_kernel(self, device: torch.device, bias: bool) -> Callable | None:
        return self._scan_kernel

    def _scan_kernel(self, x: Tensor, state: State, w: Weights, lengths: Tensor | None) -> tuple[Tensor, State]:
        xw = self.project(x, w)
        # the recurrence runs in at least float32 whatever the products ran in (autocast)
        dtype = torch.promote_types(torch.promote_types(xw.dtype, state[0].dtype), torch.float32)
        xw, h0 = xw.to(dtype), state[0].to(dtype)
        kind = scan_sequence.kernel_kind(self.scan_kernel)
        if scan_sequence.can_run(kind, xw, h0):
            out = scan_sequence.linear_scan(xw, h0, kind)
        else:
            out = log_space_scan(*self.log_coefficients(xw), h0)
        return out, ((out[-1],) if lengths is None else (last_valid(out, lengths),))


def log_space_scan(log_a: Tensor, log_b: Tensor, h0: Tensor, chunk: int = 128) -> Tensor:
    r"""Every :math:`h_t = a_t h_{t-1} + b_t` (``t`` along dim 0) at once, from ``log a``, ``log b`` and any ``h0``.

    With :math:`A_t = \prod_{s \le t} a_s`,

    .. math:: h_t = A_t h_0 + A_t \sum_{s \le t} b_s / A_s
              = A_t h_0 + \exp\big(\log A_t + \operatorname{logcumsumexp}_s(\log b_s - \log A_s)\big)

    (Heinsen 2023): a cumulative sum and a cumulative log-sum-exp, both parallel over time.
    ``h0`` may be negative or zero (a state carried from an earlier segment, or given), so it is
    kept out of the logarithms. Every term is finite for finite inputs (``log b`` is finite,
    never ``-inf``), and so is every gradient; ``A_t`` underflowing to 0 is harmless.

    The scan runs over ``chunk`` steps at a time, each chunk starting from the state the one
    before ended in: ``log A`` then grows only over a chunk, not over the whole sequence, so
    ``log b - log A`` keeps ``log b``'s precision in float32 however long the sequence is.
    ``log a`` and ``log b`` are ``(T, ...)``, ``h0`` broadcasts against one step.
    """
    outputs = []
    for start in range(0, log_a.shape[0], chunk):
        log_A = torch.cumsum(log_a[start:start + chunk], dim=0)
        b_sum = torch.logcumsumexp(log_b[start:start + chunk] - log_A, dim=0)
        outputs.append(torch.exp(log_A + b_sum) + torch.exp(log_A) * h0)
        h0 = outputs[-1][-1]
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _g(x: Tensor) -> Tensor:
    """The positive activation of minGRU and minLSTM's candidate: ``x + 1/2`` for ``x >= 0``, else ``sigmoid(x)``."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def _log_g(x: Tensor) -> Tensor:
    """``log g(x)``, finite everywhere with a finite gradient (``log sigmoid(x) = -softplus(-x)``).

    ``clamp_min``, not ``relu``: its gradient at ``x = 0`` is 1, as ``g``'s on that side (``relu``'s is 0).
    """
    return torch.where(x >= 0, torch.log(x.clamp_min(0) + 0.5), -F.softplus(-x))


class MinGRUType(ScanCell):
    r"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gates see the input only.

    .. math::
        z = \sigma(W_{iz} x + b_{iz}) \qquad \tilde h = g(W_{ih} x + b_{ih}) \qquad
        h' = (1 - z) \odot h + z \odot \tilde h

    with the paper's positive :math:`g(x) = x + \tfrac12` for :math:`x \ge 0`, :math:`\sigma(x)`
    otherwise (the same in the step and the scan, so both are one function). Blocks are
    stacked in the order z, h̃. Trained by the parallel scan (:class:`ScanCell`).

    As :math:`h' = a \odot h + b`, with :math:`k, c` the two blocks of ``xw``: :math:`a = 1 - z =
    \sigma(-k)`, :math:`b = z\,g(c)`; the scan takes :math:`\log a = -\operatorname{softplus}(k)`,
    :math:`\log b = k - \operatorname{softplus}(k) + \log g(c)`. The C kernel (``mingru``,
    :mod:`rnnkit.nn.scan_sequence`) computes :math:`z` and :math:`1 - z` each from
    :math:`e^{-|k|}` (no cancellation), and its backward
    :math:`\delta k = \delta h\,(g(c) - h)\,z(1 - z)`, :math:`\delta c = \delta h\,z\,g'(c)`,
    :math:`\delta h \leftarrow a\,\delta h`.
    """

    name, summary = "mingru", "minGRU (Feng et al. 2024): gates from the input only, parallel scan"
    gates = 2
    scan_kernel = "mingru"

    def step(self, xw: Tensor, state: State, w: Weights, linear: Linear = F.linear) -> State:
        k, candidate = xw.chunk(2, dim=-1)
        z = torch.sigmoid(k)
        return ((1 - z) * state[0] + z * _g(candidate),)

    def log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        k, candidate = xw.chunk(2, dim=-1)
        # log(1 - z) = -softplus(k), log z = -softplus(-k) = k - softplus(k)
        sp = F.softplus(k)
        return -sp, k - sp + _log_g(candidate)


class MinLSTMType(ScanCell):
    r"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): an LSTM whose gates see the input only.

    .. math::
        f = \sigma(W_{if} x + b_{if}) \qquad i = \sigma(W_{ii} x + b_{ii}) \qquad
        \tilde h = g(W_{ih} x + b_{ih}) \\
        h' = \frac{f}{f + i} \odot h + \frac{i}{f + i} \odot \tilde h

    with :math:`g` as in minGRU. The gates are normalised, so the state does not grow with
    time, and there is no cell state apart from ``h``. Blocks are stacked in the order f, i, h̃;
    ``forget1`` and ``chrono`` set the forget and input biases (with ``chrono`` the forget share
    ``f / (f + i)`` starts at ``u / (u + 1)``, a memory of about ``u + 1`` steps).

    As :math:`h' = a \odot h + b`, with :math:`k_f, k_i, c` the blocks of ``xw``:
    :math:`a = f / (f + i)`, :math:`b = (1 - a)\,g(c)`; the scan takes, with
    :math:`d = \log(i / f) = \operatorname{softplus}(-k_f) - \operatorname{softplus}(-k_i)`,
    :math:`\log a = -\operatorname{softplus}(d)`, :math:`\log b = d - \operatorname{softplus}(d) + \log g(c)`.
    The C kernel (``minlstm``, :mod:`rnnkit.nn.scan_sequence`) computes, with
    :math:`E_f = 1 + e^{-k_f}`, :math:`E_i = 1 + e^{-k_i}`, :math:`a = E_i / (E_i + E_f)` and
    :math:`1 - a = E_f / (E_i + E_f)`, both :math:`E` scaled by :math:`e^{-\max(0, -k_f, -k_i)}` (finite,
    no 0/0 when both gates are shut), and its backward, with :math:`\delta a = \delta h\,(h - g(c))`:
    :math:`\delta k_f = \delta a\,a(1 - a)(1 - f)`, :math:`\delta k_i = -\delta a\,a(1 - a)(1 - i)`,
    :math:`\delta c = \delta h\,(1 - a)\,g'(c)`, :math:`\delta h \leftarrow a\,\delta h`.
    """

    name, summary = "minlstm", "minLSTM (Feng et al. 2024): gates from the input only, parallel scan"
    gates = 3
    scan_kernel = "minlstm"
    init_schemes = ("default", "forget1", "chrono")
    forget_gate, input_gate = 0, 1

    def step(self, xw: Tensor, state: State, w: Weights, linear: Linear = F.linear) -> State:
        kf, ki, candidate = xw.chunk(3, dim=-1)
        f, i = torch.sigmoid(kf), torch.sigmoid(ki)
        return ((f * state[0] + i * _g(candidate)) / (f + i),)

    def log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        kf, ki, candidate = xw.chunk(3, dim=-1)
        # log(i / f) = log sigmoid(ki) - log sigmoid(kf) = softplus(-kf) - softplus(-ki), and
        # f / (f + i) = sigmoid(-log(i / f)), i / (f + i) = sigmoid(log(i / f))
        d = F.softplus(-kf) - F.softplus(-ki)
        sp = F.softplus(d)
        return -sp, d - sp + _log_g(candidate)


def last_valid(out: Tensor, lengths: Tensor) -> Tensor:
    """Each sequence's output at its last valid step: ``out`` ``(T, B, H)``, lengths ``(B,)`` >= 1."""
    index = (lengths.to(out.device) - 1).view(1, -1, 1).expand(1, out.shape[1], out.shape[2])
    return out.gather(0, index).squeeze(0)


# --- the registry -------------------------------------------------------------------------------

CELLS: dict[str, CellType] = {}


def register_cell(cell: CellType | type[CellType]) -> CellType:
    """Add a cell type to the registry (usable as a class decorator); its ``name`` is the ``--cell`` value."""
    instance = cell() if isinstance(cell, type) else cell
    if not isinstance(instance, CellType):
        raise TypeError(f"register_cell takes a CellType subclass or instance, got {cell!r}")
    if not instance.name:
        raise ValueError("a cell type needs a name")
    CELLS[instance.name] = instance
    return instance


def get_cell(name: str | CellType) -> CellType:
    """The registered cell type called ``name`` (a one-line error listing the choices otherwise)."""
    if isinstance(name, CellType):
        return name
    try:
        return CELLS[name]
    except KeyError:
        raise RnnkitError(f"unknown cell {name!r}: one of {', '.join(CELLS)}") from None


def cell_names() -> list[str]:
    return list(CELLS)


for _cell in (LSTMType, GRUType, ElmanTanh, ElmanReLU, LayerNormLSTM, MultiplicativeLSTM, MinGRUType, MinLSTMType):
    register_cell(_cell)


# --- cells as modules ---------------------------------------------------------------------------

class Cell(nn.Module):
    """One step of a registered cell as a module, with the same parameters as a layer's layer-direction.

    ``Cell("lstm", 10, 20)`` holds ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` like
    ``torch.nn.LSTMCell`` and runs the very step the layers run.
    """

    def __init__(self, cell: str | CellType, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError("input_size and hidden_size must be positive")
        self.cell = get_cell(cell)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        for name, shape in self.cell.parameter_shapes(input_size, hidden_size, bias).items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def weights(self) -> Weights:
        return dict(self.named_parameters())

    def reset_parameters(self) -> None:
        self.cell.reset_parameters(self.weights(), self.hidden_size)

    def forward(self, x: Tensor, state: Tensor | tuple[Tensor, ...] | None = None) -> Any:
        """``x`` ``(B, I)`` or ``(I,)``; ``state`` as torch's cell takes it (zeros if None)."""
        if not isinstance(x, Tensor) or x.dim() not in (1, 2) or x.shape[-1] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected the input as a tensor (B, {self.input_size}) or ({self.input_size},), "
                             f"got {got}")
        want = (*x.shape[:-1], self.hidden_size)
        if state is None:
            state = (x.new_zeros(want),) * self.cell.state_size
        elif isinstance(state, Tensor):
            state = (state,)
        if (not isinstance(state, tuple | list) or len(state) != self.cell.state_size
                or any(not isinstance(p, Tensor) or tuple(p.shape) != want for p in state)):
            count = "one tensor" if self.cell.state_size == 1 else f"{self.cell.state_size} tensors"
            raise ValueError(f"the {self.cell.name} cell's state is {count} of shape {want}")
        w = self.weights()
        new = self.cell.step(self.cell.project(x, w), tuple(state), w)
        return new[0] if len(new) == 1 else new

    def extra_repr(self) -> str:
        return f"{self.cell.name}, {self.input_size}, {self.hidden_size}, bias={self.bias}"


class RNNCell(Cell):
    r"""Elman cell: :math:`h' = \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})` (or ReLU), as ``torch.nn.RNNCell``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("rnn" if nonlinearity == "tanh" else "rnn_relu", input_size, hidden_size, bias)


class LSTMCell(Cell):
    __doc__ = LSTMType.__doc__

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__("lstm", input_size, hidden_size, bias)


class GRUCell(Cell):
    __doc__ = GRUType.__doc__

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__("gru", input_size, hidden_size, bias)


__all__ = ["CELLS", "Cell", "CellType", "GRUCell", "LSTMCell", "RNNCell", "ScanCell", "State", "cell_names",
           "get_cell", "last_valid", "log_space_scan", "register_cell"]
