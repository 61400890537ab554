"""Initialisations for recurrent layers, applied by name through the model constructors.

- ``default``: PyTorch's, every weight uniform in ±1/sqrt(hidden).
- ``orthogonal``: recurrent matrices orthogonal per gate block (eigenvalues on the unit
  circle, so repeated products neither shrink nor grow), input weights Xavier, biases 0.
- ``identity``: the IRNN of Le, Jaitly and Hinton (2015) for ReLU RNNs: recurrent matrix
  the identity, biases 0, input weights small Gaussian (std 0.001).
- ``forget1``: PyTorch's default, then the LSTM forget-gate bias at 1 (Gers et al. 2000;
  Jozefowicz et al. 2015), so the cell starts by remembering.
- ``chrono``: chrono initialisation (Tallec and Ollivier 2018) for LSTMs: forget bias
  log(u), u ~ U[1, T_max - 1], input bias its negative; the memory's time scales then
  spread up to ``T_max`` steps.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import RnnkitError

SCHEMES = ("default", "orthogonal", "identity", "forget1", "chrono")


@torch.no_grad()
def init_recurrent(layer: nn.Module, scheme: str = "default", t_max: int = 100) -> None:
    """Re-initialise a :class:`rnnkit.nn.layers.RecurrentLayer` in place with ``scheme``."""
    if scheme not in SCHEMES:
        raise RnnkitError(f"--init must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    layer.reset_parameters()
    if scheme == "default":
        return
    mode, hidden, gates = layer.mode, layer.hidden_size, layer.gates
    if scheme in ("identity",) and mode != "rnn_relu":
        raise RnnkitError("--init identity (IRNN) is for the ReLU RNN: use --cell rnn_relu")
    if scheme in ("forget1", "chrono") and mode != "lstm":
        raise RnnkitError(f"--init {scheme} sets LSTM forget-gate biases: use --cell lstm")
    for k in range(layer.num_layers):
        for d in range(layer.num_directions):
            w_ih, w_hh, *biases = layer.layer_weights(k, d)
            if scheme == "orthogonal":
                nn.init.xavier_uniform_(w_ih)
                for g in range(gates):
                    nn.init.orthogonal_(w_hh[g * hidden:(g + 1) * hidden])
                for b in biases:
                    b.zero_()
            elif scheme == "identity":
                nn.init.normal_(w_ih, std=0.001)
                w_hh.copy_(torch.eye(hidden))
                for b in biases:
                    b.zero_()
            elif biases:
                b_ih, b_hh = biases
                forget, inputs = slice(hidden, 2 * hidden), slice(0, hidden)
                b_hh[forget] = 0.0
                b_hh[inputs] = 0.0
                if scheme == "forget1":
                    b_ih[forget] = 1.0
                else:
                    u = torch.empty(hidden).uniform_(1, max(2, t_max - 1))
                    b_ih[forget] = torch.log(u)
                    b_ih[inputs] = -torch.log(u)


def spectral_radius(weight: torch.Tensor, hidden: int) -> float:
    """Largest |eigenvalue| among the square gate blocks of a recurrent weight ``(G*H, H)``."""
    blocks = weight.detach().float().cpu().split(hidden)
    return max(torch.linalg.eigvals(b).abs().max().item() for b in blocks)


__all__ = ["SCHEMES", "init_recurrent", "spectral_radius"]
