"""Sequence layers: any registered cell, stacked, optionally bidirectional, over padded or packed batches.

Constructor arguments, parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
shapes, and input/state conventions are those of ``torch.nn.RNN/LSTM/GRU``; a ``state_dict``
loads either way. A layer is a scan of its cell (:mod:`rnnkit.nn.cells`) over time, run one
of two ways with the same results:

- ``impl="fused"``: the cell's fast path. For RNN, LSTM and GRU that is torch's fused kernel
  (oneDNN on CPU, cuDNN on GPU), as ``torch.nn`` runs it; torch has no fused GRU kernel on
  CPU, so there a GRU runs each layer as one whole-sequence node with a hand-derived backward
  (:mod:`rnnkit.nn.gru_sequence`, 1.1-1.6x ``torch.nn.GRU``'s training speed, BENCHMARKS.md).
  Other cells bring their own whole-sequence kernel or parallel form, or have none.
- ``impl="loop"``: the cell's step, one time step after another (the input products of all
  steps done ahead in one matrix product): the readable path, and the one to change when
  experimenting with a cell.

``impl="auto"`` (the default) takes the fused path where the cell has one, else the loop.

Regularisation (Merity, Keskar and Socher 2017, "Regularizing and Optimizing LSTM Language
Models"; Gal and Ghahramani 2016): ``dropout`` drops the input of every layer but the first
with a new mask at every time step, as torch does. ``variational_dropout`` drops the same
place with one mask per sequence, shared by all its time steps. ``weight_drop`` is DropConnect
on the recurrent matrix (the cell's ``recurrent_weight``, ``weight_hh``): in training each
forward call samples one mask on that matrix, and the same kernel, fused or loop, runs with the
dropped weights; gradients reach the raw weights. In eval mode all three are the identity.
Per-step dropout and weight drop draw their masks with :func:`rnnkit.nn.dropout.dropout`, whose
mask is cheap on CPU; to use it between layers, the fused path on CPU runs one layer a call.

Variable-length batches: pass a ``PackedSequence`` (packed out, as torch does), or a padded
batch with ``lengths=`` (one per sequence). Either way each sequence is run as if alone: the
final state is its state after its own last step, the backward direction starts at its own
end, and outputs past its end are zero.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..errors import RnnkitError, is_whole
from .cells import CellType, State, Weights, get_cell
from .dropout import dropout, dropout_mask

PublicState = Tensor | tuple[Tensor, ...]
IMPLS = ("auto", "fused", "loop")


class RecurrentLayer(nn.Module):
    """A stacked, optionally bidirectional layer of any registered cell (``cell="lstm"``, ``"gru"``, ...).

    Arguments as ``torch.nn.LSTM`` (without ``proj_size``), plus ``cell``, ``impl``,
    ``variational_dropout`` (between layers, one mask per sequence; instead of ``dropout``) and
    ``weight_drop`` (DropConnect on the recurrent matrix), both in [0, 1).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 impl: str = "auto", cell: str | CellType = "lstm", variational_dropout: float = 0.0,
                 weight_drop: float = 0.0) -> None:
        super().__init__()
        for name, size in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not is_whole(size) or size <= 0:
                raise ValueError(f"{name} must be a positive whole number, got {size!r}")
        for name, rate in (("dropout", dropout), ("variational_dropout", variational_dropout),
                           ("weight_drop", weight_drop)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {rate}")
        if dropout > 0 and variational_dropout > 0:
            raise ValueError("dropout and variational_dropout both drop the input of layers 2 and up: "
                             "give one of them")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")
        self.cell = get_cell(cell)
        if weight_drop > 0 and self.cell.recurrent_weight is None:
            raise RnnkitError(f"weight_drop needs a recurrent weight matrix, and cell {self.cell.name!r} "
                              "has none (its gates read the input only)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.variational_dropout, self.weight_drop = float(variational_dropout), float(weight_drop)
        self.bidirectional, self.impl = bidirectional, impl
        self.num_directions = 2 if bidirectional else 1
        self._names: list[list[dict[str, str]]] = []  # [layer][direction]: role -> parameter name
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            names = []
            for suffix in self._suffixes(layer):
                shapes = self.cell.parameter_shapes(layer_in, hidden_size, bias)
                for role, shape in shapes.items():
                    self.register_parameter(role + suffix, nn.Parameter(torch.empty(shape)))
                names.append({role: role + suffix for role in shapes})
            self._names.append(names)
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.num_directions]

    def layer_weights(self, layer: int, direction: int = 0) -> Weights:
        """One layer and direction's parameters by role: ``weight_ih``, ``weight_hh``, ``bias_ih``, ..."""
        if not (0 <= layer < self.num_layers and 0 <= direction < self.num_directions):
            raise IndexError(f"no layer {layer}, direction {direction}: this layer stacks {self.num_layers} "
                             f"layer(s) of {self.num_directions} direction(s), counted from 0")
        return {role: getattr(self, name) for role, name in self._names[layer][direction].items()}

    def reset_parameters(self) -> None:
        """Each cell's own initialisation (PyTorch's default for RNN, LSTM, GRU)."""
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                self.cell.reset_parameters(self.layer_weights(layer, d), self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, cell={self.cell.name!r}"
        for name, default in [("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("variational_dropout", 0.0), ("weight_drop", 0.0),
                              ("bidirectional", False), ("impl", "auto")]:
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    def initial_state(self, batch_size: int, device=None, dtype=None) -> PublicState:
        """Zeros of the state's shape: ``(num_layers * num_directions, batch, hidden)`` (a pair for an LSTM)."""
        if not is_whole(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        return self._public(tuple(torch.zeros(shape, device=device, dtype=dtype)
                                  for _ in range(self.cell.state_size)))

    def _public(self, state: State) -> PublicState:
        return state[0] if len(state) == 1 else state

    @staticmethod
    def _internal(state: PublicState) -> State:
        return (state,) if isinstance(state, Tensor) else tuple(state)

    def _state_tensors(self, state: PublicState) -> State:
        """``state`` as a tuple, refused unless it has the cell's number of tensors (two for an LSTM)."""
        parts = self._internal(state) if isinstance(state, Tensor | tuple | list) else ()
        if len(parts) != self.cell.state_size or not all(isinstance(p, Tensor) for p in parts):
            want = "one tensor" if self.cell.state_size == 1 else f"a tuple of {self.cell.state_size} tensors"
            raise ValueError(f"the {self.cell.name} state is {want}, got {_describe(state)}")
        return parts

    def _checked_state(self, state: PublicState, batch: int) -> State:
        """A given initial state, its shape checked: torch's fused kernels do not check it themselves,
        and read past the tensor's memory when it is too small."""
        parts = self._state_tensors(state)
        want = (self.num_layers * self.num_directions, batch, self.hidden_size)
        for p in parts:
            if tuple(p.shape) != want:
                raise ValueError(f"expected the initial state's shape {want} (layers x directions, batch, "
                                 f"hidden), got {tuple(p.shape)}")
        return parts

    # --- which implementation ----------------------------------------------------------------
    def _kernel(self, device: torch.device) -> Callable | None:
        return self.cell.sequence_kernel(device, self.bias) if self.impl != "loop" else None

    def _uses_torch_kernel(self, device: torch.device) -> bool:
        return (self.impl != "loop" and self.cell.torch_kernel is not None
                and self.cell.sequence_kernel(device, self.bias) is None)

    # --- running -----------------------------------------------------------------------------
    def forward(self, input: Tensor | PackedSequence, state: PublicState | None = None,
                lengths: Tensor | list[int] | None = None) -> tuple[Tensor | PackedSequence, PublicState]:
        """Run the whole sequence.

        ``input`` is ``(T, B, input_size)`` (``(B, T, input_size)`` if ``batch_first``), unbatched
        ``(T, input_size)``, or a ``PackedSequence``. ``state`` is ``h0`` (``(h0, c0)`` for an
        LSTM), each ``(num_layers * num_directions, B, hidden_size)``; zeros when absent.
        ``lengths`` (``B`` values in 1..T) marks padded input. Returns the last layer's output
        at every step (packed if the input was) and each sequence's final state, shaped like
        ``state``.
        """
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("give lengths= or a PackedSequence, not both")
            return self._forward_packed(input, state)
        if not isinstance(input, Tensor):
            raise TypeError(f"expected the input as a tensor, got {type(input).__name__}")
        _check_floating(input)
        unbatched = input.dim() == 2
        if unbatched:
            if lengths is not None:
                raise ValueError("lengths= needs a batched (3-D) input")
            input = input.unsqueeze(0 if self.batch_first else 1)
            if state is not None:
                state = tuple(s.unsqueeze(1) for s in self._state_tensors(state))
        elif input.dim() != 3:
            raise ValueError(f"expected a 2-D or 3-D input, got {input.dim()}-D")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"expected input size {self.input_size}, got {input.shape[-1]}")
        steps, batch = (input.shape[1], input.shape[0]) if self.batch_first else input.shape[:2]
        if steps == 0 or batch == 0:
            raise ValueError(f"the input holds no steps or no sequences: {steps} steps of {batch}")
        hx = self._checked_state(state, batch) if state is not None else self._zeros(batch, input)
        if lengths is not None:
            lengths = _check_lengths(lengths, steps, batch)
        if self._uses_torch_kernel(input.device):
            if lengths is None:
                output, hx = self._torch_run(input, None, None, hx)
            else:
                packed = pack_padded_sequence(input, lengths, batch_first=self.batch_first, enforce_sorted=False)
                packed_out, hx = self._forward_packed(packed, hx)
                output, _ = pad_packed_sequence(packed_out, batch_first=self.batch_first, total_length=steps)
                hx = self._internal(hx)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
            output, hx = self._stacked(x, hx, lengths)
            output = output.transpose(0, 1) if self.batch_first else output
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            hx = tuple(s.squeeze(1) for s in hx)
        return output, self._public(hx)

    def _zeros(self, batch: int, like: Tensor) -> State:
        return self._internal(self.initial_state(batch, like.device, like.dtype))

    def _forward_packed(self, packed: PackedSequence, state: PublicState | None) -> tuple[PackedSequence, PublicState]:
        """A ``PackedSequence`` in and out; ``state`` in the batch's original order, as in torch."""
        data, batch_sizes, sorted_idx, unsorted_idx = packed
        _check_floating(data)
        if data.shape[-1] != self.input_size:
            raise ValueError(f"expected input size {self.input_size}, got {data.shape[-1]}")
        batch = int(batch_sizes[0])
        hx = self._checked_state(state, batch) if state is not None else self._zeros(batch, data)
        if self._uses_torch_kernel(data.device):
            if sorted_idx is not None:  # the kernel reads the batch sorted by length
                hx = tuple(h.index_select(1, sorted_idx) for h in hx)
            out, hx = self._torch_run(data, batch_sizes, sorted_idx, hx)
            if unsorted_idx is not None:
                hx = tuple(h.index_select(1, unsorted_idx) for h in hx)
            return PackedSequence(out, batch_sizes, sorted_idx, unsorted_idx), self._public(hx)
        padded, lengths = pad_packed_sequence(packed)  # time-major, original batch order
        out, hx = self._stacked(padded, hx, lengths)
        if sorted_idx is not None:
            out, lengths = out.index_select(1, sorted_idx), lengths[sorted_idx.cpu()]
        repacked = pack_padded_sequence(out, lengths, enforce_sorted=True)
        return PackedSequence(repacked.data, batch_sizes, sorted_idx, unsorted_idx), self._public(hx)

    def _run_weights(self) -> list[list[Weights]]:
        """Every layer and direction's weights for one forward call: ``[layer][direction]``.

        With ``weight_drop`` in training, the recurrent matrix is replaced by a dropped copy,
        one mask per matrix per call (DropConnect); everything else is the parameters themselves.
        """
        weights = [[self.layer_weights(k, d) for d in range(self.num_directions)] for k in range(self.num_layers)]
        if self.weight_drop > 0 and self.training:
            role = self.cell.recurrent_weight
            for per_layer in weights:
                for w in per_layer:
                    w[role] = dropout(w[role], self.weight_drop)
        return weights

    def _locked_dropout_on(self) -> bool:
        return self.variational_dropout > 0 and self.training and self.num_layers > 1

    def _locked_mask(self, x: Tensor, batch_sizes: Tensor | None, sorted_idx: Tensor | None) -> Tensor:
        """One variational-dropout mask per sequence, broadcast over time: for ``(T, B, F)``
        (``(B, T, F)`` if ``batch_first``) input, or a packed batch's data (``batch_sizes``).

        Masks are drawn in the batch's original order, so a sequence gets the same mask however
        it is passed (padded, packed, sorted or not).
        """
        batch = int(batch_sizes[0]) if batch_sizes is not None else x.shape[0 if self.batch_first else 1]
        mask = locked_mask(x, batch, self.variational_dropout)
        if batch_sizes is not None:  # packed rows are time-major: step t holds sorted sequences 0..batch_sizes[t]-1
            rows = torch.cat([torch.arange(int(b)) for b in batch_sizes]).to(x.device)
            return mask[sorted_idx[rows] if sorted_idx is not None else rows]
        return mask.unsqueeze(1 if self.batch_first else 0)

    def _torch_run(self, x: Tensor, batch_sizes: Tensor | None, sorted_idx: Tensor | None,
                   hx: State) -> tuple[Tensor, State]:
        """Torch's fused kernel over all layers in one call; with dropout between layers in
        training, one call per layer where rnnkit applies it: the locked mask of variational
        dropout, or on CPU :func:`rnnkit.nn.dropout.dropout` (torch's own is slow there)."""
        fn = getattr(torch._VF, self.cell.torch_kernel)
        weights = self._run_weights()
        own_dropout = self.dropout > 0 and self.training and self.num_layers > 1 and x.device.type == "cpu"
        split = own_dropout or self._locked_dropout_on()
        groups = [[k] for k in range(self.num_layers)] if split else [list(range(self.num_layers))]
        per = self.num_directions
        finals = []
        for group in groups:
            if group[0] > 0 and own_dropout:
                x = dropout(x, self.dropout)
            if group[0] > 0 and self._locked_dropout_on():
                x = x * self._locked_mask(x, batch_sizes, sorted_idx)
            flat = [w for k in group for d in range(per) for w in weights[k][d].values()]
            h = tuple(s[group[0] * per:(group[-1] + 1) * per] for s in hx)
            h = h if len(h) > 1 else h[0]
            args = (flat, self.bias, len(group), 0.0 if split else self.dropout, self.training, self.bidirectional)
            with warnings.catch_warnings():
                # cuDNN copies weights that are not one contiguous block; correct, just slower.
                warnings.filterwarnings("ignore", message=".*not part of single contiguous chunk.*")
                if batch_sizes is None:
                    result = fn(x, h, *args, self.batch_first)
                else:
                    result = fn(x, batch_sizes, h, *args)
            x = result[0]
            finals.append(result[1:])
        if len(finals) == 1:
            return x, tuple(finals[0])
        return x, tuple(torch.cat([f[i] for f in finals]) for i in range(self.cell.state_size))

    def _stacked(self, x: Tensor, hx: State, lengths: Tensor | None) -> tuple[Tensor, State]:
        """Layers bottom to top, each direction a forward scan; ``x`` is ``(T, B, features)``.

        The backward direction runs forward in time over each sequence reversed within its own
        length, so every direction function sees padding only after a sequence's end.
        """
        kernel = self._kernel(x.device)
        weights = self._run_weights()
        valid = None
        if lengths is not None:
            valid = (torch.arange(x.shape[0]).unsqueeze(1) < lengths.unsqueeze(0)).to(x.device).unsqueeze(-1)
            x = x.masked_fill(~valid, 0.0)  # whatever the padding held, it stays out of the arithmetic
        finals: list[State] = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = dropout(x, self.dropout, self.training)
            if layer > 0 and self._locked_dropout_on():
                x = x * locked_mask(x, x.shape[1], self.variational_dropout).unsqueeze(0)
            outputs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                w = weights[layer][direction]
                xd = x if direction == 0 else reverse_padded(x, lengths)
                state = tuple(h[k] for h in hx)
                if kernel is not None:
                    out, state = kernel(xd, state, w, lengths)
                else:
                    out, state = self._scan(xd, state, w, valid)
                outputs.append(out if direction == 0 else reverse_padded(out, lengths))
                finals.append(state)
            x = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
            if valid is not None:
                x = x.masked_fill(~valid, 0.0)
        return x, tuple(torch.stack([f[i] for f in finals]) for i in range(self.cell.state_size))

    def _scan(self, x: Tensor, state: State, w: Weights, valid: Tensor | None,
              record: list[State] | None = None) -> tuple[Tensor, State]:
        """The cell's step over time: ``x`` ``(T, B, I)`` forward; past a sequence's end the state holds."""
        xw = self.cell.project(x, w)  # all steps' input products in one matrix product
        outputs = []
        # unbind, not xw[t]: each indexing's backward would write a whole (T, B, G*H) gradient, T^2 in all
        for t, xw_t in enumerate(xw.unbind(0)):
            new = self.cell.step(xw_t, state, w)
            if valid is not None:
                new = tuple(torch.where(valid[t], n, s) for n, s in zip(new, state, strict=True))
            state = new
            outputs.append(state[0])
            if record is not None:
                record.append(state)
        return torch.stack(outputs), state

    def unroll(self, x: Tensor, state: PublicState | None = None) -> Unrolled:
        """Run step by step, keeping every layer's every state (``h``, and ``c`` for an LSTM) as a graph node.

        ``x`` is ``(T, B, I)`` (``(B, T, I)`` if ``batch_first``). The result equals the layer's
        own output in eval mode (no dropout between layers); one backward pass then gives the
        gradient with respect to every intermediate state (:mod:`rnnkit.inspect`).
        """
        if self.bidirectional:
            raise ValueError("unroll needs a unidirectional layer")
        if x.dim() != 3:
            raise ValueError(f"unroll expects a 3-D batched input, got {x.dim()}-D")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"expected input size {self.input_size}, got {x.shape[-1]}")
        x = x.transpose(0, 1) if self.batch_first else x
        hx = self._checked_state(state, x.shape[1]) if state is not None else self._zeros(x.shape[1], x)
        layers: list[list[State]] = []
        for k in range(self.num_layers):
            record: list[State] = []
            x, _ = self._scan(x, tuple(h[k] for h in hx), self.layer_weights(k), None, record)
            layers.append(record)
        return Unrolled(self.cell.state_names, layers)


@dataclass
class Unrolled:
    """Every step's state of every layer: ``states[layer][t]`` is the state tuple after step ``t``."""

    names: tuple[str, ...]
    states: list[list[State]]

    def part(self, name: str, layer: int) -> list[Tensor]:
        """One state part (``"h"``, ``"c"``) of one layer at every step, each ``(B, H)``."""
        i = self.names.index(name)
        return [s[i] for s in self.states[layer]]

    def output(self) -> Tensor:
        """The top layer's outputs stacked over time, ``(T, B, H)``: what the layer itself returns."""
        return torch.stack(self.part("h", -1))


def locked_mask(like: Tensor, batch: int, p: float) -> Tensor:
    """A ``(batch, features)`` dropout mask (kept units scaled by ``1 / (1 - p)``) to share over time."""
    return dropout_mask((batch, like.shape[-1]), p, like)


def _describe(state: Any) -> str:
    if isinstance(state, Tensor):
        return "one tensor"
    if isinstance(state, tuple | list):
        return f"a {type(state).__name__} of {len(state)}"
    return type(state).__name__


def _check_floating(input: Tensor) -> None:
    # the fused kernels read any tensor's memory as numbers, so integer input gave wrong outputs
    if not input.is_floating_point():
        raise TypeError(f"expected a floating-point input, got {input.dtype} (embed tokens first)")


def _check_lengths(lengths: Tensor | list[int], steps: int, batch: int) -> Tensor:
    try:
        given = torch.as_tensor(lengths).detach()
    except (TypeError, RuntimeError, ValueError):
        raise ValueError(f"lengths must be whole numbers, got {lengths!r}") from None
    if given.dtype == torch.bool or (given.is_floating_point() and not bool((given == given.round()).all())):
        raise ValueError(f"lengths must be whole numbers, got {given.tolist()}")
    lengths = given.to("cpu", torch.int64)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must hold one value per sequence ({batch}), got shape {tuple(lengths.shape)}")
    if len(lengths) and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(f"lengths must be in 1..{steps} (the padded length), got {lengths.min()}..{lengths.max()}")
    return lengths


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """``x`` ``(T, B, ...)`` with each sequence reversed within its own length; padding stays in place."""
    if lengths is None:
        return x.flip(0)
    t = torch.arange(x.shape[0]).unsqueeze(1)
    rev = torch.where(t < lengths.unsqueeze(0), lengths.unsqueeze(0) - 1 - t, t).to(x.device)
    return x.gather(0, rev.view(*rev.shape, *([1] * (x.dim() - 2))).expand_as(x))


class RNN(RecurrentLayer):
    r"""Stacked Elman RNN: :math:`h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`.

    ``nonlinearity="relu"`` replaces tanh with ReLU. Arguments as ``torch.nn.RNN``, plus ``impl``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", **kwargs) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers,
                         cell="rnn" if nonlinearity == "tanh" else "rnn_relu", **kwargs)


class LSTM(RecurrentLayer):
    """Stacked LSTM (:class:`rnnkit.nn.cells.LSTMType`). Arguments as ``torch.nn.LSTM`` (without
    ``proj_size``), plus ``impl``. The state is ``(h, c)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs) -> None:
        super().__init__(input_size, hidden_size, num_layers, cell="lstm", **kwargs)


class GRU(RecurrentLayer):
    """Stacked GRU (:class:`rnnkit.nn.cells.GRUType`, PyTorch's formulation). Arguments as
    ``torch.nn.GRU``, plus ``impl``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs) -> None:
        super().__init__(input_size, hidden_size, num_layers, cell="gru", **kwargs)


def make_layer(cell: str | CellType, input_size: int, hidden_size: int, num_layers: int = 1,
               **kwargs) -> RecurrentLayer:
    """A layer of any registered cell: what every task builds its network with."""
    return RecurrentLayer(input_size, hidden_size, num_layers, cell=cell, **kwargs)


__all__ = ["GRU", "LSTM", "RNN", "RecurrentLayer", "Unrolled", "locked_mask", "make_layer", "reverse_padded"]
