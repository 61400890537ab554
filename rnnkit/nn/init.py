"""Initialisations for recurrent layers, applied by name through the model constructors.

Each cell lists the schemes that fit it (``CellType.init_schemes``).

- ``default``: PyTorch's, every weight uniform in ±1/sqrt(hidden).
- ``orthogonal``: recurrent matrices orthogonal per gate block (eigenvalues on the unit
  circle, so repeated products neither shrink nor grow), input weights Xavier, biases 0.
- ``identity``: the IRNN of Le, Jaitly and Hinton (2015) for ReLU RNNs: recurrent matrix
  the identity, biases 0, input weights small Gaussian (std 0.001).
- ``forget1``: PyTorch's default, then the LSTM forget-gate bias at 1 (Gers et al. 2000;
  Jozefowicz et al. 2015), so the cell starts by remembering; the forget and input gates'
  entries of the other gate biases (``CellType.gate_biases``: the recurrent bias of torch's
  LSTM) are zeroed, so one bias alone sets the gates' starting values. Also for minLSTM (its gates see
  the input only).
- ``chrono``: chrono initialisation (Tallec and Ollivier 2018) for LSTMs and minLSTM: forget bias
  log(u), u ~ U[1, T_max - 1], input bias its negative; the memory's time scales then
  spread up to ``T_max`` steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import RnnkitError
from .cells import CELLS
from .layers import RecurrentLayer

SCHEMES = ("default", "orthogonal", "identity", "forget1", "chrono")


@torch.no_grad()
def init_recurrent(layer: RecurrentLayer, scheme: str = "default", t_max: int = 100) -> None:
    """Re-initialise a :class:`rnnkit.nn.layers.RecurrentLayer` in place with ``scheme``.

    Which schemes a cell takes is part of its definition (``CellType.init_schemes``).
    """
    if scheme not in SCHEMES:
        raise RnnkitError(f"--init must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    cell, hidden = layer.cell, layer.hidden_size
    if scheme not in cell.init_schemes:
        fits = [name for name, c in CELLS.items() if scheme in c.init_schemes]
        raise RnnkitError(f"--init {scheme} does not apply to --cell {cell.name}: use it with "
                          f"--cell {' or '.join(fits)}")
    layer.reset_parameters()
    if scheme == "default":
        return
    for k in range(layer.num_layers):
        for d in range(layer.num_directions):
            w = layer.layer_weights(k, d)
            biases = [b for role, b in w.items() if role.startswith("bias")]
            if scheme == "orthogonal":
                nn.init.xavier_uniform_(w["weight_ih"])
                for block in w[cell.recurrent_weight].split(hidden):  # each square gate block
                    nn.init.orthogonal_(block)
                for b in biases:
                    b.zero_()
            elif scheme == "identity":
                nn.init.normal_(w["weight_ih"], std=0.001)
                w[cell.recurrent_weight].copy_(torch.eye(hidden))
                for b in biases:
                    b.zero_()
            else:  # forget1, chrono: the gate biases of an LSTM-style cell (none without bias)
                gate_biases = [w[role] for role in cell.gate_biases if role in w]
                if not gate_biases:
                    continue
                forget = slice(cell.forget_gate * hidden, (cell.forget_gate + 1) * hidden)
                inputs = slice(cell.input_gate * hidden, (cell.input_gate + 1) * hidden)
                first, *others = gate_biases
                for b in others:
                    b[forget] = 0.0
                    b[inputs] = 0.0
                if scheme == "forget1":
                    first[forget] = 1.0
                else:
                    u = torch.empty(hidden).uniform_(1, max(2, t_max - 1))
                    first[forget] = torch.log(u)
                    first[inputs] = -torch.log(u)


def spectral_radius(weight: torch.Tensor, hidden: int) -> float:
    """Largest |eigenvalue| among the square gate blocks of a recurrent weight ``(G*H, H)``; NaN if any
    entry is not finite (LAPACK's eigenvalue routine may crash the process on such a matrix)."""
    blocks = weight.detach().float().cpu().split(hidden)
    if not all(torch.isfinite(b).all() for b in blocks):
        return math.nan
    return max(torch.linalg.eigvals(b).abs().max().item() for b in blocks)


__all__ = ["SCHEMES", "init_recurrent", "spectral_radius"]
