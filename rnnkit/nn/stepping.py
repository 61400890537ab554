"""Fast step-by-step generation from an embedding, a recurrent layer and a linear head.

At batch 1 a step costs a handful of small matrix-vector products, so the per-call overhead
of a full layer (``nn.LSTM`` on a length-1 sequence) dominates. Here each layer is one fused
product per step on weights prepared once:

- layer 0's input projection of a one-hot character is a row of ``E @ W_ih^T + biases``,
  so it becomes a table lookup (no product at all);
- in higher layers the input and recurrent products are one product on ``[x, h]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import hardware
from .cells import State
from .layers import RecurrentLayer

if TYPE_CHECKING:
    from ..data.text import Vocab


class Int8Weight:
    """A weight matrix stored as int8 with one scale per row (weight-only quantisation).

    Four times fewer bytes than float32: a 2x512 LSTM's step weights then fit the CPU's L2
    caches, and batch-1 steps run about twice as fast as with bf16, at a small cost in fidelity.
    """

    def __init__(self, w: Tensor) -> None:
        w = w.detach().float().cpu()
        self.scale = (w.abs().amax(1).clamp_min(1e-12) / 127).to(torch.bfloat16)
        self.q = (w / self.scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
        self.shape = w.shape
        # torch's int8 kernel is wrong for some inner sizes that are not a multiple of 32 (seen with 24):
        # there, multiply by the same quantised values, widened to bf16
        self.fallback = None if w.shape[1] % 32 == 0 else (self.q.float() * self.scale.float()[:, None]).bfloat16()

    def nbytes(self) -> int:
        return self.q.numel() + 2 * self.scale.numel()


def matvec(x: Tensor, w: Tensor | Int8Weight, bias: Tensor | None = None) -> Tensor:
    """``x @ w.T (+ bias)`` in float32, ``w`` stored in its own (possibly smaller) type (``F.linear``'s arguments).

    At batch 1 the product is bound by reading ``w`` from memory, so smaller weights are
    faster; ``torch.mv`` is the fastest kernel for that shape.
    """
    if isinstance(w, Int8Weight):
        if w.fallback is not None:
            return matvec(x, w.fallback, bias)
        y = torch._weight_int8pack_mm(x.to(torch.bfloat16), w.q, w.scale).float()
    elif x.shape[0] == 1:
        y = torch.mv(w, x[0].to(w.dtype)).float().unsqueeze(0)
    else:
        y = F.linear(x.to(w.dtype), w).float()
    return y if bias is None else y + bias


def default_sample_dtype(batch: int = 1) -> torch.dtype:
    """The step weights' type for ``batch`` samples at once, from what the CPU can do (:mod:`rnnkit.hardware`).

    Few samples, on x86 CPUs with AVX2 or AVX-512: weight-only int8 with per-row scales, which
    left a character model's bits per character unchanged to four digits (BENCHMARKS.md) and
    reads a quarter of float32's bytes per step (torch's int8 kernel has AVX2 and AVX-512
    versions). Many samples: bf16 on CPUs with AVX-512 BF16 (and AMX), whose matrix products
    outrun the int8 kernel there; elsewhere float32, because without bf16 instructions both bf16
    products and the int8 kernel at large batches run slower than float32 products.
    """
    native_bf16 = hardware.cpu_has_avx512_bf16()
    vector_int8 = hardware.cpu_capability() in ("AVX2", "AVX512")
    if batch < 16 and hasattr(torch, "_weight_int8pack_mm") and (native_bf16 or vector_int8):
        return torch.int8
    return torch.bfloat16 if native_bf16 else torch.float32


SAMPLE_PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}


class Stepper:
    """Generates text a token at a time from a model's :meth:`prime_state` and :meth:`step`."""

    def prime_state(self, ids: Tensor, batch: int) -> tuple[Any, Tensor]:
        """The state after all of ``ids`` but its last, for ``batch`` samples, and the last id for each."""
        raise NotImplementedError

    def step(self, token: Tensor, states: Any) -> Tensor:
        """Advance by one token (``token``: (B,) ids), updating ``states`` in place; return next-token logits."""
        raise NotImplementedError

    def generate(self, vocab: Vocab, prime: str, length: int, num_samples: int,
                 generator: torch.Generator, temperature: float, top_k: int | None,
                 top_p: float | None, greedy: bool, stop: str | None,
                 on_text: Callable[[str], None] | None) -> list[str]:
        if not prime:
            prime = "\n" if "\n" in vocab.index else vocab.chars[0]
        ids = torch.from_numpy(vocab.encode(prime).astype("int64"))
        states, token = self.prime_state(ids, num_samples)
        choose = Picker(generator, temperature, top_k, top_p, greedy)
        out: list[list[str]] = [[] for _ in range(num_samples)]
        done = [False] * num_samples
        for _ in range(length):
            token = choose(self.step(token, states))
            for b, t in enumerate(token.tolist()):
                if done[b]:
                    continue
                ch = vocab.chars[t]
                out[b].append(ch)
                if b == 0 and on_text is not None:
                    on_text(ch)
                if stop and ch == stop[-1] and "".join(out[b][-len(stop):]) == stop:
                    done[b] = True
            if all(done):
                break
        return ["".join(o) for o in out]


class EnsembleStepper(Stepper):
    """Several models stepped together; the next token is drawn from the average of their distributions.

    The logits given to the sampler are the log of that average, so temperature, top-k and top-p
    act on the ensemble's distribution as on one model's.
    """

    def __init__(self, members: list[Stepper]) -> None:
        self.members = members

    def prime_state(self, ids: Tensor, batch: int) -> tuple[list[Any], Tensor]:
        primed = [member.prime_state(ids, batch) for member in self.members]
        return [state for state, _ in primed], primed[0][1]

    def step(self, token: Tensor, states: list[Any]) -> Tensor:
        log_probs = torch.stack([torch.log_softmax(member.step(token, state), -1)
                                 for member, state in zip(self.members, states, strict=True)])
        return torch.logsumexp(log_probs, 0) - math.log(len(self.members))


class StepGenerator(Stepper):
    """An embedding, a unidirectional recurrent layer (any registered cell) and a linear head,
    prepared for one-token-at-a-time stepping.

    Each cell's own projection and step run, on weight matrices stored in ``dtype`` (vectors
    stay float32); for additive cells (RNN, LSTM: gates read the summed pre-activations) the
    input and recurrent products are one product.
    """

    def __init__(self, embedding: nn.Embedding, rnn: RecurrentLayer, head: nn.Linear,
                 dtype: torch.dtype | None = None, batch: int = 1) -> None:
        if rnn.bidirectional:
            raise ValueError("a bidirectional model cannot generate text")
        self.rnn, self.cell, self.hidden = rnn, rnn.cell, rnn.hidden_size
        self.embedding = embedding
        dtype = dtype or default_sample_dtype(batch)

        def prep(w: Tensor) -> Tensor | Int8Weight:
            if dtype == torch.int8:
                return Int8Weight(w)
            return w.detach().to("cpu", dtype).contiguous()

        cpu = [{role: w.detach().float().cpu() for role, w in rnn.layer_weights(k).items()}
               for k in range(rnn.num_layers)]
        self.layers: list[dict[str, Any]] = []
        with torch.no_grad():
            for k in range(rnn.num_layers):
                w = cpu[k]
                zeros = torch.zeros(w["weight_ih"].shape[0])
                b_ih, b_hh = w.get("bias_ih", zeros), w.get("bias_hh", zeros)
                standard = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                extra = {role: v for role, v in w.items() if role not in standard}
                if self.cell.additive and k > 0:  # one product on [x, h]
                    self.layers.append({"both": prep(torch.cat([w["weight_ih"], w["weight_hh"]], 1)),
                                        "bias": b_ih + b_hh, **extra})
                elif self.cell.additive:  # layer 0: the input product and both biases live in the table
                    self.layers.append({"weight_hh": prep(w["weight_hh"]), **extra})
                else:  # the cell's own parameters: matrices in the step type, vectors in float32
                    self.layers.append({role: prep(v) if v.dim() == 2 else v for role, v in w.items()})
            # layer 0's input projection of a one-hot token is a row of E W_ih^T + biases: a lookup
            w0 = cpu[0]
            table = self.cell.project(embedding.weight.detach().float().cpu(), w0)
            if self.cell.additive and "bias_hh" in w0:
                table = table + w0["bias_hh"]
            self.table = table
            # the output layer is small: float32 costs little memory, and its kernel at batch 1
            # (torch.mv) is several times faster than the bf16 one
            self.head_w = head.weight.detach().float().cpu().contiguous()
            self.head_b = head.bias.detach().float().cpu()

    def weight_bytes(self) -> int:
        """Bytes of the step weights read per step (the head included)."""
        total = self.head_w.numel() * self.head_w.element_size()
        for layer in self.layers:
            for w in layer.values():
                if isinstance(w, Int8Weight):
                    total += w.nbytes()
                elif w.dim() == 2:
                    total += w.numel() * w.element_size()
        return total

    def _layer_step(self, k: int, x: Tensor | None, token: Tensor, state: State) -> State:
        w = self.layers[k]
        if not self.cell.additive:
            xw = self.table.index_select(0, token) if k == 0 else self.cell.project(x, w, linear=matvec)
            return self.cell.step(xw, state, w, linear=matvec)
        if k == 0:
            pre = matvec(state[0], w["weight_hh"], self.table.index_select(0, token))
        else:
            pre = matvec(torch.cat([x, state[0]], 1), w["both"], w["bias"])
        return self.cell.update(pre, state)

    def step(self, token: Tensor, states: list[State]) -> Tensor:
        """Advance every layer by one token (``token``: (B,) ids), updating ``states``; return next-token logits."""
        x = None
        for k in range(len(self.layers)):
            states[k] = self._layer_step(k, x, token, states[k])
            x = states[k][0]
        return matvec(x, self.head_w, self.head_b)

    @torch.no_grad()
    def prime_state(self, ids: Tensor, batch: int) -> tuple[list[State], Tensor]:
        """Run the prime (all but its last token) through the full layer; return the state and last id."""
        n, parts = len(self.layers), self.cell.state_size
        states: list[State] = [tuple(torch.zeros(batch, self.hidden) for _ in range(parts)) for _ in range(n)]
        if len(ids) > 1:
            device = self.embedding.weight.device
            x = self.embedding(ids[:-1].to(device)).unsqueeze(0 if self.rnn.batch_first else 1)
            _, final = self.rnn(x.expand(batch, -1, -1) if self.rnn.batch_first else x.expand(-1, batch, -1))
            final = self.rnn._internal(final)
            states = [tuple(f[k].float().cpu() for f in final) for k in range(n)]
        return states, ids[-1].expand(batch).clone()

class Picker:
    """Chooses next ids from logits (B, V): argmax, or a sample after temperature, top-k and top-p.

    Samples by the Gumbel-max trick, ``argmax(logits / T + G)`` with ``G = -log(-log(U))``,
    which draws exactly from ``softmax(logits / T)``; the noise is drawn from ``generator`` in
    blocks, so a step costs two small operations instead of a softmax and a multinomial draw.
    """

    BLOCK = 256  # steps of noise drawn at once

    def __init__(self, generator: torch.Generator, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, greedy: bool = False) -> None:
        self.generator, self.temperature, self.top_k, self.top_p, self.greedy = \
            generator, temperature, top_k, top_p, greedy
        self.noise: Tensor | None = None
        self.used = 0

    def _gumbel(self, shape: torch.Size) -> Tensor:
        if self.noise is None or self.used == self.BLOCK or self.noise.shape[1:] != shape:
            u = torch.rand((self.BLOCK, *shape), generator=self.generator)
            self.noise, self.used = -torch.log(-torch.log(u)), 0
        self.used += 1
        return self.noise[self.used - 1]

    def __call__(self, logits: Tensor) -> Tensor:
        if self.greedy:
            return logits.argmax(1)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[1]:
            kth = torch.topk(logits, self.top_k, dim=1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1:
            sorted_logits, order = torch.sort(logits, dim=1, descending=True)
            probs = torch.softmax(sorted_logits, 1)
            drop = probs.cumsum(1) - probs >= self.top_p  # keep the smallest set reaching top_p
            logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        return (logits + self._gumbel(logits.shape)).argmax(1)
