"""The AWD-LSTM regularisers: Merity, Keskar and Socher 2017, "Regularizing and Optimizing LSTM
Language Models" (arXiv:1708.02182).

Two act inside a recurrent layer and are options of every layer (:mod:`rnnkit.nn.layers`):
``weight_drop`` (DropConnect on the recurrent matrix) and ``variational_dropout`` (between
layers, one mask per sequence). :class:`LayerRegularisation` declares them once, with help
text and checks, for every task's model options and command line. The rest act around the
layer, in a model that embeds tokens and predicts them:

- :func:`embedding_dropout`: drop whole rows of the embedding matrix (every occurrence of a
  token at once), the rest scaled by ``1 / (1 - p)``;
- :func:`locked_dropout`: variational dropout, one mask per sequence shared by all its steps,
  on the embedding output and on the last layer's output;
- :func:`activation_regularisation` (AR) and :func:`temporal_activation_regularisation` (TAR):
  penalties on the last layer's outputs, added to the loss;
- :func:`tie_weights`: one matrix for the input embedding and the output layer (Press and Wolf
  2017; Inan et al. 2017).

Each is the identity in eval mode (AR and TAR are only added to the training loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import RnnkitError
from ..training.config import option
from .cells import get_cell
from .dropout import dropout_mask
from .layers import locked_mask

LAYER_REGULARISATION = ("weight_drop", "variational_dropout")
# every AWD-LSTM option of a model that embeds tokens and predicts them, in --help order
AWD_OPTIONS = (*LAYER_REGULARISATION, "embedding_dropout", "input_dropout", "output_dropout", "ar", "tar",
               "tie_embeddings")


@dataclass(kw_only=True)
class LayerRegularisation:
    """The recurrent layer's own regularisers, as model options (a base of a task's model config).

    A task's ``dropout`` keeps its meaning everywhere but between layers, where
    ``variational_dropout``, when set, takes its place (:meth:`layer_kwargs`). Keyword-only, so a
    config that inherits them keeps its own positional fields.
    """

    weight_drop: float = option(0.0, "DropConnect on the recurrent weight matrix: a fraction of its entries "
                                     "zeroed, one mask per batch (AWD-LSTM weight drop)", "fraction")
    variational_dropout: float = option(0.0, "dropout between stacked layers with one mask per sequence, "
                                             "shared by all its steps (instead of --dropout there)", "fraction")

    @classmethod
    def checked(cls, cell: str, **options: float | None) -> LayerRegularisation:
        """The options (``weight_drop``, ``variational_dropout``; None for the default), checked for
        a layer of ``cell``: what a task's constructor calls before it builds anything."""
        reg = LayerRegularisation(**{k: v for k, v in options.items() if v is not None})
        reg.check_layer_options(cell)
        return reg

    def layer_options(self) -> dict[str, float]:
        """These options by name, to pass on (to a task's constructor, say)."""
        return {"weight_drop": self.weight_drop, "variational_dropout": self.variational_dropout}

    def layer_kwargs(self, dropout: float, layers: int) -> dict[str, float]:
        """The keyword arguments of :func:`rnnkit.nn.layers.make_layer` for a task whose ``dropout``
        option applies between its ``layers`` layers unless ``variational_dropout`` replaces it."""
        between = dropout if layers > 1 and not self.variational_dropout else 0.0
        return {"dropout": between, **self.layer_options()}

    def check_layer_options(self, cell: str) -> None:
        """One-line errors for out-of-range values, and for weight drop on a cell without a recurrent matrix."""
        from ..training.config import validate_fields

        validate_fields(self)
        if self.weight_drop > 0 and get_cell(cell).recurrent_weight is None:
            raise RnnkitError(f"--weight-drop needs a recurrent weight matrix, and cell {cell!r} has none")


@dataclass(kw_only=True)
class AWDRegularisation(LayerRegularisation):
    """All of AWD-LSTM's regularisers, as the model options of a model that embeds tokens, runs
    a recurrent layer and predicts tokens from its last layer's output (the character model)."""

    embedding_dropout: float = option(0.0, "drop whole rows of the embedding matrix (every occurrence of a "
                                           "token in the batch), the rest scaled up", "fraction")
    input_dropout: float = option(0.0, "dropout on the embedding output, one mask per sequence", "fraction")
    output_dropout: float = option(0.0, "dropout on the last layer's output, one mask per sequence (instead of "
                                        "--dropout there)", "fraction")
    ar: float = option(0.0, "activation regularisation: adds AR times the mean squared (dropped) output of the "
                            "last layer to the training loss", "nonneg")
    tar: float = option(0.0, "temporal activation regularisation: adds TAR times the mean squared step-to-step "
                             "change of the last layer's output to the training loss", "nonneg")
    tie_embeddings: bool = option(False, "one matrix for the input embedding and the output layer")

    def check_awd_options(self, cell: str) -> None:
        """One-line errors for out-of-range values, and for weight drop on a cell without a recurrent matrix."""
        self.check_layer_options(cell)


def embedding_dropout(weight: Tensor, p: float, training: bool = True) -> Tensor:
    """``weight`` ``(V, E)`` with whole rows zeroed with probability ``p``, the rest scaled by ``1 / (1 - p)``."""
    if not training or p == 0:
        return weight
    mask = dropout_mask((weight.shape[0], 1), p, weight)
    return weight * mask


def locked_dropout(x: Tensor, p: float, training: bool = True, batch_first: bool = False) -> Tensor:
    """Variational dropout of ``x`` ``(T, B, F)`` (``(B, T, F)`` if ``batch_first``): one mask per
    sequence, the same at every time step."""
    if not training or p == 0:
        return x
    mask = locked_mask(x, x.shape[0 if batch_first else 1], p)
    return x * mask.unsqueeze(1 if batch_first else 0)


def mean_square(x: Tensor) -> Tensor:
    """The mean of ``x``'s squared elements, summed in at least fp32 without an fp32 copy of a bf16 ``x``."""
    return torch.linalg.vector_norm(x, dtype=torch.promote_types(x.dtype, torch.float32)).square() / x.numel()


def activation_regularisation(dropped: Tensor, alpha: float) -> Tensor:
    """AR: ``alpha`` times the mean of the squared (dropped) outputs of the last layer."""
    return alpha * mean_square(dropped)


def temporal_activation_regularisation(outputs: Tensor, beta: float, time_dim: int = 0) -> Tensor:
    """TAR: ``beta`` times the mean squared difference of consecutive (undropped) outputs along ``time_dim``.

    Zero for a single time step.
    """
    steps = outputs.shape[time_dim]
    if steps < 2:
        return outputs.new_zeros(())
    diff = outputs.narrow(time_dim, 1, steps - 1) - outputs.narrow(time_dim, 0, steps - 1)
    return beta * mean_square(diff)


def tie_weights(embedding: nn.Embedding, head: nn.Linear) -> None:
    """Make ``head`` use ``embedding``'s matrix: one parameter, ``(vocabulary, width)``.

    The output layer's input must be as wide as the embedding; there is no hidden projection.
    """
    if head.weight.shape != embedding.weight.shape:
        raise RnnkitError(f"cannot tie the embedding ({tuple(embedding.weight.shape)}) and the output layer "
                          f"({tuple(head.weight.shape)}): they need the same vocabulary and width")
    head.weight = embedding.weight


def tied_state_dict_hooks(module: nn.Module, source: str, tied: str) -> None:
    """Keep a tied parameter once in ``module``'s state dict: ``tied`` (say ``head.weight``) is left
    out on saving, and loaded from ``source`` (``embed.weight``). A moving average of the weights
    saved under ``source`` alone then reaches both."""

    def drop(_module: nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:
        state.pop(prefix + tied, None)

    def fill(_module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
        if prefix + source in state:
            state[prefix + tied] = state[prefix + source]

    module.register_state_dict_post_hook(drop)
    module.register_load_state_dict_pre_hook(fill)


__all__ = ["AWD_OPTIONS", "AWDRegularisation", "LAYER_REGULARISATION", "LayerRegularisation",
           "activation_regularisation", "embedding_dropout", "locked_dropout", "temporal_activation_regularisation",
           "tie_weights", "tied_state_dict_hooks"]
