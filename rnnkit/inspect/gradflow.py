"""Gradient flow through time: how much the loss at the last step still "feels" earlier states.

For a character model and windows of real text, this measures ``‖∂L_T/∂h_t‖``, the norm of
the gradient of the loss at the last step ``T`` with respect to the hidden state at every
earlier step ``t``. Backpropagation through time multiplies one Jacobian ``∂h_{t+1}/∂h_t`` per
step; when those shrink vectors the norm decays geometrically with the distance ``T - t``
(vanishing gradients: the network cannot learn dependencies longer than a few dozen steps);
when they stretch them it grows geometrically (exploding gradients). Gated cells (LSTM, GRU)
have an additive path through their state and keep the gradient alive far longer.

The fused kernels do not expose the per-step states, so ``RecurrentLayer.unroll`` re-runs a
layer step by step with its cell's own step and the layer's own weights; every ``h_t`` is then
a node of the autograd graph and one backward pass gives all the gradients at once.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.text import Vocab, read_corpus
from ..errors import RnnkitError
from ..nn.cells import CELLS
from ..nn.init import SCHEMES, spectral_radius
from ..plotting import new_figure, save_figure
from ..tasks.charlm import CharLM, ModelConfig

HORIZON_RATIO = 1e-3  # the horizon is where the norm falls below this share of its value at t = T


def hidden_grad_norms(model: CharLM, inputs: Tensor, targets: Tensor, layer: int = -1,
                      state: Any = None) -> Tensor:
    """``‖∂L_T/∂h_t‖`` per window, ``(T, B)``, row ``k`` being ``k`` steps back from the last (t = T - k).

    ``inputs`` are ``(B, T)`` character ids, ``targets`` ``(B,)`` the character after each
    window; ``L_T`` is the cross-entropy of that prediction. Each window's loss depends on its
    own states only, so the gradient of their sum gives every window's own gradient.
    ``layer`` picks which layer's hidden state (default the top one).
    """
    un = model.rnn.unroll(model.embed(inputs), state)
    hs = un.part("h", layer)
    logits = model.head(hs[-1] if layer in (-1, model.rnn.num_layers - 1) else un.part("h", -1)[-1])
    loss = F.cross_entropy(logits, targets, reduction="sum")
    grads = torch.autograd.grad(loss, hs)
    return torch.stack([g.norm(dim=-1) for g in grads]).flip(0)


@dataclass
class GradFlow:
    """One configuration's gradient flow and its summary numbers."""

    label: str
    norms: np.ndarray                 # mean ‖∂L_T/∂h_t‖ over windows, index k = T - t (steps back)
    decay_per_step: float             # slope of log10 norm per step back (< 0: vanishing, > 0: exploding)
    horizon: int | None               # first k with norm < 1e-3 * norm[0]; None if it never falls that far
    spectral_radius: float            # of the recurrent weight matrix (largest over gate blocks)
    windows: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def factor_per_step(self) -> float:
        """How much the norm is multiplied by per step back, on average (10 ** slope)."""
        return 10.0 ** self.decay_per_step


def summarise(norms: np.ndarray) -> tuple[float, int | None]:
    """Decay rate (least-squares slope of log10 norm against steps back) and horizon of a norm curve.

    The fit skips k = 0, where the gradient comes straight from the output layer rather than
    through the recurrence, and norms that are zero or non-finite (underflow, overflow).
    """
    norms = np.asarray(norms, dtype=np.float64)
    k = np.arange(len(norms))
    ok = (k >= 1) & np.isfinite(norms) & (norms > 0)
    slope = float(np.polyfit(k[ok], np.log10(norms[ok]), 1)[0]) if ok.sum() >= 2 else math.nan
    below = np.nonzero(~(norms >= HORIZON_RATIO * norms[0]))[0] if norms[0] > 0 else np.array([0])
    return slope, (int(below[0]) if len(below) else None)


def measure(model: CharLM, tokens: np.ndarray, length: int = 200, windows: int = 32,
            burn_in: int = 100, seed: int = 0, layer: int = -1, label: str = "") -> GradFlow:
    """Gradient flow of ``model`` over ``windows`` random windows of ``length`` steps of ``tokens``.

    Each window is preceded by ``burn_in`` characters run without gradients, so its first
    state is one the model meets on real text rather than zeros. Runs in float64 on a copy of
    the model, so long products neither underflow nor disturb the caller's model.
    """
    if length < 2 or windows < 1 or burn_in < 0:
        raise RnnkitError("--length must be >= 2, --windows >= 1 and --burn-in >= 0")
    need = burn_in + length + 1
    if len(tokens) < need:
        raise RnnkitError(f"text too short: {len(tokens)} characters, need at least {need} "
                          f"(--burn-in {burn_in} + --length {length} + 1)")
    model = copy.deepcopy(model).cpu().double().eval()
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(tokens) - need + 1, size=windows)
    ids = torch.from_numpy(np.stack([np.asarray(tokens[s:s + need], dtype=np.int64) for s in starts]))
    state = None
    if burn_in:
        with torch.no_grad():
            _, state = model(ids[:, :burn_in])
    inputs, targets = ids[:, burn_in:burn_in + length], ids[:, burn_in + length]
    norms = hidden_grad_norms(model, inputs, targets, layer, state).mean(dim=1).numpy()
    slope, horizon = summarise(norms)
    k = layer % model.rnn.num_layers
    recurrent = model.rnn.cell.recurrent_weight  # None for cells whose gates read the input only
    radius = (spectral_radius(model.rnn.layer_weights(k)[recurrent], model.rnn.hidden_size) if recurrent
              else math.nan)
    return GradFlow(label or model.config.cell, norms, slope, horizon, radius, windows,
                    {"grad_norm_T": float(norms[0]), "layer": k})


# --- what to measure: configurations and runs ------------------------------------------------

@dataclass
class Spec:
    """An untrained configuration: ``CELL[:INIT[:SCALE]]``, e.g. ``rnn``, ``lstm:chrono``, ``rnn_relu:identity:1.1``."""

    cell: str
    init: str = "default"
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str, init: str = "default", scale: float = 1.0) -> Spec:
        parts = text.split(":")
        if len(parts) > 3 or not parts[0]:
            raise RnnkitError(f"bad configuration {text!r}: expected CELL[:INIT[:SCALE]], e.g. lstm:chrono")
        spec = cls(parts[0], parts[1] if len(parts) > 1 and parts[1] else init, scale)
        if len(parts) == 3:
            try:
                spec.scale = float(parts[2])
            except ValueError:
                raise RnnkitError(f"bad scale in {text!r}: expected a number") from None
        if spec.cell not in CELLS:
            raise RnnkitError(f"unknown cell {spec.cell!r} in {text!r}: one of {', '.join(CELLS)}")
        if spec.init not in SCHEMES:
            raise RnnkitError(f"unknown init {spec.init!r} in {text!r}: one of {', '.join(SCHEMES)}")
        if not spec.scale > 0:
            raise RnnkitError(f"the init scale must be positive, got {spec.scale}")
        return spec

    @property
    def label(self) -> str:
        return self.cell + (f":{self.init}" if self.init != "default" else "") + (
            f" x{self.scale:g}" if self.scale != 1.0 else "")


def build_untrained(spec: Spec, vocab_size: int, hidden: int, layers: int, seed: int = 0) -> CharLM:
    """A fresh character model, initialised by ``spec.init`` through its constructor, recurrent weights times ``scale``.

    The scale stands for a "large init": multiplying the recurrent matrices past a spectral
    radius of 1 is how gradients are made to explode.
    """
    torch.manual_seed(seed)
    model = CharLM(ModelConfig(cell=spec.cell, hidden=hidden, layers=layers, init=spec.init,
                               vocab_size=vocab_size))
    if spec.scale != 1.0:
        with torch.no_grad():
            recurrent = model.rnn.cell.recurrent_weight
            if recurrent is None:
                raise RnnkitError(f"--cell {spec.cell} has no recurrent weight matrix to scale")
            for k in range(model.rnn.num_layers):
                weight = model.rnn.layer_weights(k)[recurrent].mul_(spec.scale)
                if not torch.isfinite(weight).all():
                    raise RnnkitError(f"init scale {spec.scale:g} overflows the recurrent weights (float32); "
                                      "use a smaller one")
    return model.eval()


def run_validation_tokens(model: CharLM, run: str | Path) -> np.ndarray:
    """The held-out tail of a run's own token file, the text it was never trained on."""
    tokens, where = model.run_tokens("val")
    if tokens is None:
        raise RnnkitError(f"{run}: no validation text to measure on ({where}); give the text with --corpus")
    return tokens


def gradflow(configs: Sequence[str] = ("rnn", "lstm", "gru"), runs: Sequence[str | Path] = (),
             corpus: Sequence[str] | None = None, hidden: int = 128, layers: int = 1,
             init: str = "default", init_scale: float = 1.0, length: int = 200, windows: int = 32,
             burn_in: int = 100, seed: int = 0, encoding: str = "utf-8") -> list[GradFlow]:
    """Measure gradient flow for untrained ``configs`` and trained ``runs``; the Python face of ``rnnkit gradflow``.

    Untrained configurations read windows of ``corpus`` (default: the built-in corpus, Python's
    standard library sources); a run reads its own validation text unless ``corpus`` is given.
    """
    if hidden <= 0 or layers <= 0:
        raise RnnkitError("--hidden and --layers must be positive")
    configs = [configs] if isinstance(configs, str) else configs  # one name, not its letters
    runs = [runs] if isinstance(runs, str | Path) else runs
    specs = [Spec.parse(c, init, init_scale) for c in configs]
    results: list[GradFlow] = []
    if specs:
        text = read_corpus(corpus, encoding)
        vocab = Vocab.from_text(text)
        tokens = vocab.encode(text)
        for spec in specs:
            model = build_untrained(spec, len(vocab), hidden, layers, seed)
            results.append(measure(model, tokens, length, windows, burn_in, seed, label=spec.label))
    for run in runs:
        model = CharLM.load(run, "best", device="cpu").eval()
        tokens = (model._require_vocab().encode(read_corpus(corpus, encoding), strict=False) if corpus
                  else run_validation_tokens(model, run))
        cfg = model.config
        label = f"{Path(run).name} ({cfg.cell} {cfg.layers}x{cfg.hidden}, trained)"
        results.append(measure(model, tokens, length, windows, burn_in, seed, label=label))
    if not results:
        raise RnnkitError("nothing to measure: give a run folder or --cell configurations")
    return results


# --- showing it ------------------------------------------------------------------------------

def format_table(results: Sequence[GradFlow]) -> str:
    """A plain-text table, one row per configuration."""
    rows = [("configuration", "|dL/dh_T|", "|dL/dh_1| rel", "log10/step", "x/step", "horizon", "spectral r")]
    for r in results:
        rel = r.norms[-1] / r.norms[0] if r.norms[0] > 0 else math.nan
        horizon = str(r.horizon) if r.horizon is not None else f">{len(r.norms) - 1}"
        rows.append((r.label, f"{r.norms[0]:.3g}", f"{rel:.2e}", f"{r.decay_per_step:+.4f}",
                     f"{r.factor_per_step:.4f}", horizon, f"{r.spectral_radius:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_gradflow(results: Sequence[GradFlow], path: str | Path, title: str = "") -> None:
    """Norm relative to its value at t = T against steps back, log scale, one line per configuration."""

    fig, ax = new_figure(figsize=(7.5, 4.5), dpi=100)
    for r in results:
        rel = r.norms / r.norms[0] if r.norms[0] > 0 else r.norms
        ax.plot(np.arange(len(rel)), np.where(rel > 0, rel, np.nan), lw=1.6,
                label=f"{r.label}  (x{r.factor_per_step:.3f}/step, ρ={r.spectral_radius:.2f})")
    ax.axhline(HORIZON_RATIO, color="grey", ls="--", lw=1)
    ax.text(len(results[0].norms) - 1, HORIZON_RATIO, "horizon threshold 1e-3 ", va="bottom", ha="right",
            fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("steps back from the last step (T - t)")
    ax.set_ylabel("‖∂L_T/∂h_t‖ / ‖∂L_T/∂h_T‖")
    ax.set_title(title or f"Gradient flow through time (mean of {results[0].windows} text windows)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


__all__ = ["GradFlow", "Spec", "build_untrained", "format_table", "gradflow",
           "hidden_grad_norms", "measure", "plot_gradflow", "summarise"]
