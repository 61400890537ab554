r"""Dynamic evaluation of a character model: the weights adapt to the text as it is read.

Krause, Kahembwe, Murray and Renals (2017), "Dynamic Evaluation of Neural Sequence Models"
(arXiv:1709.07432). The text is read in order, one segment of ``segment`` characters at a
time, the recurrent state carried from segment to segment. Each segment is first scored with
the current weights (that score is what counts), then the weights take one gradient step on
that segment's mean loss and decay towards the trained weights :math:`\theta_g`:

.. math::
    \text{sgd:}\quad \theta \leftarrow \theta - \eta \nabla L(s_i) + \lambda (\theta_g - \theta) \\
    \text{rms:}\quad \theta \leftarrow \theta - \eta \frac{\nabla L(s_i)}{\mathrm{RMS} + \epsilon \bar r}
        + \min(\lambda \frac{\mathrm{RMS}}{\bar r}, 1) \odot (\theta_g - \theta)

``rms`` is the paper's "RMS with a global decay prior": RMS is the root mean square of the
gradients of the same loss on the run's training text, collected once before reading (by
:func:`gradient_statistics`, ``stats_streams`` streams of ``segment`` characters, the state
carried, up to ``stats_chars`` characters spread over the whole training split), and
:math:`\bar r` is the mean over the parameter tensors of each tensor's mean RMS. Each weight's
step is divided by its typical training gradient, and it decays faster the more that gradient
says it matters; the decay rate is capped at 1 so that decay never overshoots the trained
value (as in the authors' code). :math:`\epsilon` is relative to :math:`\bar r` (the paper's is
absolute), so the update does not change when the loss is scaled, and a weight whose training
gradient was zero in the sample (the embedding of a character not met there) still takes a
bounded step.

``method="auto"`` is ``rms`` when the training text is at hand (the run folder's
``tokens.bin``, checked against the run's record of it, or ``train_tokens``) and ``sgd``
otherwise; :attr:`DynamicEval.source` says which was used and why.

The model itself is never changed: a copy adapts, and the static loss comes from the trained
weights in the same segmentation, computed by the same forward pass (so that with ``lr=0``
and ``decay=0`` the two figures are equal to the last bit). Each text is adapted from the
trained weights afresh, as each starts from a zero state.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import RnnkitError
from ..nn.cells import detach_state
from ..training.monitor import Progress

if TYPE_CHECKING:
    from .charlm import CharModel

LN2 = math.log(2)
METHODS = ("auto", "rms", "sgd")
# (lr, decay) by method when not given; see DynamicEval
DEFAULTS = {"rms": (1e-4, 0.01), "sgd": (0.05, 0.002)}


@dataclass
class DynamicEval:
    """Settings of dynamic evaluation (see the module's docstring for the update rules).

    ``lr`` and ``decay`` default by method (:data:`DEFAULTS`). ``segment``: characters scored
    between two steps. ``eps``: the RMS update's stabiliser, relative to the mean RMS.
    ``stats_chars`` and ``stats_streams``: how much training text the RMS statistics read, in
    how many parallel streams. After :meth:`resolve`, ``method``, ``lr`` and ``decay`` are
    the values used, ``rms`` holds the statistics (``rms`` method) and ``source`` says where
    they came from (or why the method fell back to ``sgd``).
    """

    method: str = "auto"
    lr: float | None = None
    decay: float | None = None
    segment: int = 50
    eps: float = 0.1
    stats_chars: int = 200_000
    stats_streams: int = 32
    rms: list[Tensor] | None = field(default=None, repr=False, compare=False)
    source: str = ""

    def validate(self) -> None:
        if self.method not in METHODS:
            raise RnnkitError(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}")
        checks = [("lr", self.lr, lambda v: v >= 0, "non-negative"),
                  ("decay", self.decay, lambda v: 0 <= v <= 1, "in [0, 1]"),
                  ("segment", self.segment, lambda v: v >= 1, "a positive whole number"),
                  ("eps", self.eps, lambda v: v > 0, "positive"),
                  ("stats-chars", self.stats_chars, lambda v: v >= 1, "positive"),
                  ("stats-streams", self.stats_streams, lambda v: v >= 1, "positive")]
        for name, value, ok, need in checks:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not ok(value):
                raise RnnkitError(f"--{name} must be {need}, got {value!r}")
        if not isinstance(self.segment, int) or not isinstance(self.stats_chars, int) \
                or not isinstance(self.stats_streams, int):
            raise RnnkitError("--segment, --stats-chars and --stats-streams must be whole numbers")

    @property
    def resolved(self) -> bool:
        return (self.method != "auto" and self.lr is not None and self.decay is not None
                and (self.method == "sgd" or self.rms is not None))

    def resolve(self, model: CharModel, train_tokens: np.ndarray | str | None = None,
                progress: bool | None = False) -> DynamicEval:
        """These settings made concrete for ``model``: method chosen, defaults filled, statistics collected.

        ``train_tokens`` (token ids, or text in the model's vocabulary) overrides the run
        folder's training text. Resolve once to evaluate several texts with the same statistics.
        """
        self.validate()
        if self.resolved:
            return self
        tokens, where = (_given_tokens(model, train_tokens) if train_tokens is not None
                         else model.run_tokens("train"))
        method = self.method
        if method == "auto":
            method = "rms" if tokens is not None else "sgd"
        if method == "rms" and tokens is None:
            raise RnnkitError(f"the rms method needs the run's training text for its gradient statistics, "
                              f"and {where}; use --method sgd")
        lr, decay = DEFAULTS[method]
        out = replace(self, method=method, lr=self.lr if self.lr is not None else lr,
                      decay=self.decay if self.decay is not None else decay)
        if method == "sgd":
            out.rms, out.source = None, ("no gradient statistics (sgd)" if self.method == "sgd"
                                         else f"sgd, as {where}")
            return out
        out.rms, chars = gradient_statistics(model, tokens, self.segment, self.stats_streams, self.stats_chars,
                                             progress)
        out.source = f"gradient statistics from {chars:,} training characters ({where})"
        return out

    def describe(self) -> str:
        """One line: the method and values used, and where the statistics came from."""
        return (f"dynamic evaluation: {self.method}, lr {self.lr:g}, decay {self.decay:g}, "
                f"segment {self.segment}; {self.source}")


def _given_tokens(model: CharModel, given: np.ndarray | str) -> tuple[np.ndarray, str]:
    if isinstance(given, str):
        return model._require_vocab().encode(given, strict=False), "train_tokens given"
    tokens = np.asarray(given)
    if tokens.ndim != 1 or (len(tokens) and (tokens.min() < 0 or tokens.max() >= len(model._require_vocab()))):
        raise RnnkitError("train_tokens must be a 1-D array of the model's token ids")
    return tokens, "train_tokens given"


@contextlib.contextmanager
def _backward_in_eval_mode(device: torch.device) -> Iterator[None]:
    """cuDNN's recurrent kernels take a backward pass in training mode only, which would turn
    dropout on; torch's own CUDA kernels take it in eval mode too. Nothing to do on CPU."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = before


def gradient_statistics(model: CharModel, tokens: np.ndarray, segment: int = 50, streams: int = 32,
                        max_chars: int = 200_000, progress: bool | None = False) -> tuple[list[Tensor], int]:
    """Root mean square of the model's gradients on ``tokens``, one tensor per parameter, and the characters read.

    The text is cut into ``streams`` contiguous streams spread over all of it; each batch is
    ``segment`` characters of every stream, the state carried, its loss the batch's mean,
    as in training (no dropout). Reads ``max_chars`` characters, or all the text if shorter.
    """
    from ..data.text import StreamBatcher

    streams = max(1, min(streams, (len(tokens) - 1) // segment))
    if len(tokens) < segment + 1:
        raise RnnkitError(f"the training text is too short for gradient statistics: {len(tokens)} characters, "
                          f"need {segment + 1}")
    batcher = StreamBatcher(tokens, streams, segment)
    batches = max(1, min(len(batcher), max_chars // (streams * segment)))
    device = next(model.parameters()).device
    params = list(model.parameters())
    squares = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    was_training, state = model.training, None
    model.eval()
    bar = _Bar("gradient statistics", batches * streams * segment, progress)
    try:
        for i in range(batches):
            x, y = (t.to(device) for t in batcher.batch(i))
            with torch.enable_grad(), _backward_in_eval_mode(device):
                logits, state = model(x, state)
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
                grads = torch.autograd.grad(loss, params, materialize_grads=True)
            state = detach_state(state)
            torch._foreach_addcmul_(squares, [g.float() for g in grads], [g.float() for g in grads])
            bar.update((i + 1) * streams * segment, {})
    finally:
        model.train(was_training)
        bar.close()
    for s in squares:
        s.div_(batches).sqrt_()
    return squares, batches * streams * segment


def dynamic_segments(model: CharModel, tokens: np.ndarray, settings: DynamicEval) -> Iterator[tuple[int, float, float]]:
    """Read ``tokens`` segment by segment: per segment, its characters scored and their summed
    static and dynamic losses (nats). ``settings`` must be resolved (:meth:`DynamicEval.resolve`).

    Each segment is scored before its own step: a segment's score depends on the text before
    it only.
    """
    if not settings.resolved:
        raise ValueError("resolve the settings first: settings.resolve(model)")
    if len(tokens) < 2:
        raise RnnkitError("text too short to evaluate: need at least 2 characters")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    adapted = copy.deepcopy(model)
    trained = [p.detach() for p in model.parameters()]
    params = [p.requires_grad_(True) for p in adapted.parameters()]
    lr, decay = float(settings.lr), float(settings.decay)
    if settings.method == "rms":
        rms = [r.to(device=device, dtype=p.dtype) for r, p in zip(settings.rms, trained, strict=True)]
        mean_rms = sum(float(r.mean()) for r in rms) / len(rms)
        if not mean_rms > 0:
            raise RnnkitError("the gradient statistics are all zero; use --method sgd")
        denominators = [r + settings.eps * mean_rms for r in rms]
        rates = [(r * (decay / mean_rms)).clamp_(max=1.0) for r in rms]
    ids = torch.from_numpy(np.ascontiguousarray(tokens).astype(np.int64)).to(device)
    static_state = dynamic_state = None
    try:
        for start in range(0, len(ids) - 1, settings.segment):
            end = min(start + settings.segment, len(ids) - 1)
            x, y = ids[start:end].unsqueeze(0), ids[start + 1:end + 1]
            with torch.enable_grad(), _backward_in_eval_mode(device):  # the same forward pass for both scores
                logits, static_state = model(x, static_state)
                static = F.cross_entropy(logits.float().flatten(0, 1), y, reduction="sum").item()
                logits, dynamic_state = adapted(x, dynamic_state)
                loss = F.cross_entropy(logits.float().flatten(0, 1), y, reduction="sum")
                grads = torch.autograd.grad(loss / (end - start), params, materialize_grads=True)
            static_state, dynamic_state = detach_state(static_state), detach_state(dynamic_state)
            score = loss.item()
            if math.isfinite(score) and bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
                with torch.no_grad():
                    towards = torch._foreach_sub(trained, params)  # theta_g - theta, before the step
                    if settings.method == "rms":
                        torch._foreach_addcdiv_(params, grads, denominators, value=-lr)
                        torch._foreach_addcmul_(params, towards, rates)
                    else:
                        torch._foreach_add_(params, grads, alpha=-lr)
                        torch._foreach_add_(params, towards, alpha=decay)
            yield end - start, static, score
    finally:
        model.train(was_training)


def dynamic_evaluate(model: CharModel, tokens: np.ndarray, settings: DynamicEval | None = None,
                     train_tokens: np.ndarray | str | None = None, progress: bool | None = False,
                     label: str = "dynamic evaluation") -> dict[str, Any]:
    """Static and dynamic loss (nats per character) and bits per character of ``tokens``.

    Returns ``loss``, ``bpc`` (static, the trained weights, in the same segmentation),
    ``dynamic_loss``, ``dynamic_bpc``, ``chars``, and the settings used (``method``, ``lr``,
    ``decay``, ``segment``, ``source``). ``progress``: None shows a bar on a terminal.
    """
    settings = (settings or DynamicEval()).resolve(model, train_tokens, progress)
    total = len(tokens) - 1
    static = dynamic = 0.0
    done = 0
    bar = _Bar(label, total, progress)
    try:
        for chars, s, d in dynamic_segments(model, tokens, settings):
            static, dynamic, done = static + s, dynamic + d, done + chars
            bar.update(done, {"static bpc": static / done / LN2, "dynamic bpc": dynamic / done / LN2})
    finally:
        bar.close()
    static, dynamic = static / total, dynamic / total
    return {"loss": static, "bpc": static / LN2, "dynamic_loss": dynamic, "dynamic_bpc": dynamic / LN2,
            "chars": float(total), "method": settings.method, "lr": settings.lr, "decay": settings.decay,
            "segment": settings.segment, "source": settings.source}


class _Bar:
    """Progress of a long pass: a bar with rate and ETA on a terminal; a line a minute in a log."""

    EVERY = 60.0  # seconds between lines when stderr is not a terminal

    def __init__(self, label: str, total: int, enabled: bool | None) -> None:
        self.label, self.total, self.silent = label, max(1, total), enabled is False
        self.progress = Progress("chars", enabled) if not self.silent else None
        if self.progress is not None:
            self.progress.bar.set_description_str(label, refresh=False)
        self.started = self.last_line = time.perf_counter()

    def update(self, done: int, fields: dict[str, float]) -> None:
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        self.progress.update(done / self.total, {**fields, "chars/s": round(rate)})
        if not self.progress.tty and time.perf_counter() - self.last_line >= self.EVERY:
            self.last_line = time.perf_counter()
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            shown = "  ".join(f"{k} {v:.3f}" for k, v in fields.items())
            self.progress.message(f"{self.label}: {done:,}/{self.total:,} chars  {rate:,.0f} chars/s  "
                                  f"ETA {eta:.0f}s  {shown}".rstrip())

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()


__all__ = ["DEFAULTS", "DynamicEval", "dynamic_evaluate", "dynamic_segments", "gradient_statistics"]
