"""Dropout (Srivastava et al. 2014) with a mask that is cheap to draw on CPU.

In training each element is zeroed with probability ``p`` and the rest are scaled by
``1 / (1 - p)``, as :func:`torch.nn.functional.dropout` does. Torch's CPU dropout draws one
Bernoulli number per element, which costs several times a pass over the tensor and is the
largest cost outside the matrix products in a wide character model's step (BENCHMARKS.md,
"Dropout on CPU"). Here each element takes 16 bits of one 64-bit draw of the same generator
(so ``torch.manual_seed`` makes masks repeat), and is kept when those bits are at least
``round(p * 65536)``: ``p`` is honoured to within ``2**-17``, and the kept elements are scaled
by the exact inverse of their probability, so the expected output is the input. On other
devices torch's own dropout is already fused and fast, and is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 1 << 16  # the mask's resolution: 16 random bits per element


def dropout_mask(shape: tuple[int, ...] | torch.Size, p: float, like: Tensor) -> Tensor:
    """A ``shape`` mask in ``like``'s dtype and device: 0 with probability ``p``, else ``1 / (1 - p)``.

    The one way rnnkit draws a dropout mask (per element, per sequence, per embedding row). On CPU
    the cheap 16-bit draw; elsewhere, or where ``p`` is finer than 16 bits resolve, a Bernoulli draw.
    """
    dropped = round(p * _LEVELS)
    if like.device.type != "cpu" or dropped in (0, _LEVELS):
        return like.new_empty(shape).bernoulli_(1 - p).div_(1 - p)
    numel = torch.Size(shape).numel()
    words = torch.empty((numel + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)  # all 64 bits random
    kept = words.view(torch.int16)[:numel].view(shape) >= dropped - _LEVELS // 2
    return kept.to(like.dtype).mul_(_LEVELS / (_LEVELS - dropped))


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``x`` with each element zeroed with probability ``p`` in training, the rest scaled by ``1 / (1 - p)``."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or p == 1 or not x.is_floating_point():
        return F.dropout(x, p, training)  # fused on GPUs; torch's own result and errors at the edges
    return x * dropout_mask(x.shape, p, x)


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` that draws its mask with :func:`dropout`."""

    def forward(self, input: Tensor) -> Tensor:
        return dropout(input, self.p, self.training)


__all__ = ["Dropout", "dropout", "dropout_mask"]
