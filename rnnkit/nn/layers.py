"""Sequence layers: stacked, optionally bidirectional RNN, LSTM and GRU.

Constructor arguments, parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
shapes, and input/state conventions are those of ``torch.nn.RNN/LSTM/GRU``; a
``state_dict`` loads either way. Two implementations give the same results:

- ``impl="fused"`` calls torch's fused kernels (oneDNN on CPU, cuDNN on GPU), as
  ``torch.nn.LSTM`` does: the fast path. torch has no fused GRU kernel on CPU, so there a GRU
  runs each layer as one whole-sequence node with a hand-derived backward and each step's
  element-wise work in one C pass (:mod:`rnnkit.nn.gru_sequence`), 1.1-1.6x ``torch.nn.GRU``'s
  training speed, fp32 or bf16 (BENCHMARKS.md).
- ``impl="loop"`` runs the cells' equations from :mod:`rnnkit.nn.cells` step by step: the
  readable path, and the one to change when experimenting with a cell.

``impl="auto"`` (the default) takes the fused path unless ``loop`` is needed.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cells import gru_gates_step, lstm_gates_step, rnn_step
from .gru_sequence import gru_sequence

State = Tensor | tuple[Tensor, Tensor]
IMPLS = ("auto", "fused", "loop")


class RecurrentLayer(nn.Module):
    """Shared machinery; use :class:`RNN`, :class:`LSTM` or :class:`GRU`."""

    mode = ""  # "lstm", "gru", "rnn_tanh" or "rnn_relu"
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 impl: str = "auto") -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0 or num_layers <= 0:
            raise ValueError("input_size, hidden_size and num_layers must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.impl = bidirectional, impl
        self.num_directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes(layer):
                g = self.gates * hidden_size
                self.register_parameter("weight_ih" + suffix, nn.Parameter(torch.empty(g, layer_in)))
                self.register_parameter("weight_hh" + suffix, nn.Parameter(torch.empty(g, hidden_size)))
                if bias:
                    self.register_parameter("bias_ih" + suffix, nn.Parameter(torch.empty(g)))
                    self.register_parameter("bias_hh" + suffix, nn.Parameter(torch.empty(g)))
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.num_directions]

    def reset_parameters(self) -> None:
        """PyTorch's default: every weight uniform in ±1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def layer_weights(self, layer: int, direction: int = 0) -> list[Tensor]:
        """``[weight_ih, weight_hh, bias_ih, bias_hh]`` of one layer and direction (no biases if bias=False)."""
        suffix = self._suffixes(layer)[direction]
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        return [getattr(self, n + suffix) for n in names]

    def _flat_weights(self) -> list[Tensor]:
        return [w for layer in range(self.num_layers) for d in range(self.num_directions)
                for w in self.layer_weights(layer, d)]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        for name, default in [("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("impl", "auto")]:
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State:
        """Zeros of the state's shape: ``(num_layers * num_directions, batch, hidden)``."""
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        h = torch.zeros(shape, device=device, dtype=dtype)
        return (h, h.clone()) if self.mode == "lstm" else h

    def forward(self, input: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run the whole sequence.

        ``input`` is ``(T, B, input_size)`` (``(B, T, input_size)`` if ``batch_first``) or
        unbatched ``(T, input_size)``. ``state`` is ``h0`` (``(h0, c0)`` for LSTM), each
        ``(num_layers * num_directions, B, hidden_size)``; zeros when absent. Returns the last
        layer's output at every step and the final state, shaped like ``state``.
        """
        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(0 if self.batch_first else 1)
            if state is not None:
                state = tuple(s.unsqueeze(1) for s in state) if isinstance(state, tuple) else state.unsqueeze(1)
        elif input.dim() != 3:
            raise ValueError(f"expected a 2-D or 3-D input, got {input.dim()}-D")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"expected input size {self.input_size}, got {input.shape[-1]}")
        batch = input.shape[0] if self.batch_first else input.shape[1]
        if state is None:
            state = self.initial_state(batch, input.device, input.dtype)
        output, state = (self._loop if self.impl == "loop" else self._fused)(input, state)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            state = tuple(s.squeeze(1) for s in state) if isinstance(state, tuple) else state.squeeze(1)
        return output, state

    def _fused(self, input: Tensor, state: State) -> tuple[Tensor, State]:
        if self.mode == "gru" and input.device.type == "cpu" and self.bias:
            return self._stacked(input, state, self._gru_sequence_direction)
        args = (self._flat_weights(), self.bias, self.num_layers, self.dropout, self.training,
                self.bidirectional, self.batch_first)
        with warnings.catch_warnings():
            # cuDNN copies weights that are not one contiguous block; correct, just slower.
            warnings.filterwarnings("ignore", message=".*not part of single contiguous chunk.*")
            if self.mode == "lstm":
                output, h, c = torch._VF.lstm(input, state, *args)
                return output, (h, c)
            fn = torch._VF.gru if self.mode == "gru" else getattr(torch._VF, self.mode)
            return fn(input, state, *args)

    def _loop(self, input: Tensor, state: State) -> tuple[Tensor, State]:
        return self._stacked(input, state, self._run_direction)

    def _stacked(self, input: Tensor, state: State, run_direction) -> tuple[Tensor, State]:
        """Layers bottom to top, each direction by ``run_direction(x, state, layer, direction)``."""
        x = input.transpose(0, 1) if self.batch_first else input  # time first from here on
        is_lstm = self.mode == "lstm"
        h0, c0 = state if is_lstm else (state, None)
        final_h, final_c = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            outputs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                cell_state = (h0[k], c0[k]) if is_lstm else h0[k]
                out, cell_state = run_direction(x, cell_state, layer, direction)
                outputs.append(out)
                final_h.append(cell_state[0] if is_lstm else cell_state)
                if is_lstm:
                    final_c.append(cell_state[1])
            x = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
        output = x.transpose(0, 1) if self.batch_first else x
        h = torch.stack(final_h)
        return output, ((h, torch.stack(final_c)) if is_lstm else h)

    def _gru_sequence_direction(self, x: Tensor, h: Tensor, layer: int, direction: int) -> tuple[Tensor, Tensor]:
        """CPU GRU: one layer and direction as one whole-sequence node (:mod:`rnnkit.nn.gru_sequence`)."""
        return gru_sequence(x, h, *self.layer_weights(layer, direction), reverse=direction == 1)

    def _run_direction(self, x: Tensor, state: State, layer: int, direction: int
                       ) -> tuple[Tensor, State]:
        """One layer in one direction over time, ``x`` being ``(T, B, features)``."""
        w_ih, w_hh, *biases = self.layer_weights(layer, direction)
        b_ih, b_hh = biases if biases else (None, None)
        steps = range(x.shape[0] - 1, -1, -1) if direction else range(x.shape[0])
        outputs: list[Tensor] = [None] * x.shape[0]  # type: ignore[list-item]
        if self.mode.startswith("rnn"):
            act = self.mode[4:]
            for t in steps:
                state = outputs[t] = rnn_step(x[t], state, w_ih, w_hh, b_ih, b_hh, act)
            return torch.stack(outputs), state
        xw = F.linear(x, w_ih, b_ih)  # all input projections in one product
        for t in steps:
            if self.mode == "lstm":
                state = lstm_gates_step(xw[t], *state, w_hh, b_hh)
                outputs[t] = state[0]
            else:
                state = outputs[t] = gru_gates_step(xw[t], state, w_hh, b_hh)
        return torch.stack(outputs), state


class RNN(RecurrentLayer):
    r"""Stacked Elman RNN: :math:`h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`.

    ``nonlinearity="relu"`` replaces tanh with ReLU. Arguments as ``torch.nn.RNN``, plus ``impl``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", **kwargs) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
        self.nonlinearity, self.mode = nonlinearity, f"rnn_{nonlinearity}"
        super().__init__(input_size, hidden_size, num_layers, **kwargs)


class LSTM(RecurrentLayer):
    """Stacked LSTM; each layer applies :class:`rnnkit.LSTMCell` at every step.

    Arguments as ``torch.nn.LSTM`` (without ``proj_size``), plus ``impl``. The state is ``(h, c)``.
    """

    mode, gates = "lstm", 4


class GRU(RecurrentLayer):
    """Stacked GRU; each layer applies :class:`rnnkit.GRUCell` (PyTorch's formulation) at every step.

    Arguments as ``torch.nn.GRU``, plus ``impl``.
    """

    mode, gates = "gru", 3
