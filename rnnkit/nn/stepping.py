"""Fast step-by-step generation from a character model.

At batch 1 a step costs a handful of small matrix-vector products, so the per-call overhead
of a full layer (``nn.LSTM`` on a length-1 sequence) dominates. Here each layer is one fused
product per step on weights prepared once:

- layer 0's input projection of a one-hot character is a row of ``E @ W_ih^T + biases``,
  so it becomes a table lookup (no product at all);
- in higher layers the input and recurrent products are one product on ``[x, h]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from ..data.text import Vocab
    from ..tasks.charlm import CharLM


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
        # torch's int8 kernel is wrong for inner sizes that are not a multiple of 16 (seen with 24):
        # there, multiply by the same quantised values, widened to bf16
        self.fallback = None if w.shape[1] % 32 == 0 else (self.q.float() * self.scale.float()[:, None]).bfloat16()

    def nbytes(self) -> int:
        return self.q.numel() + 2 * self.scale.numel()


def matvec(w: Tensor | Int8Weight, x: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ w.T (+ bias)`` in float32, ``w`` stored in its own (possibly smaller) type.

    At batch 1 the product is bound by reading ``w`` from memory, so smaller weights are
    faster; ``torch.mv`` is the fastest kernel for that shape.
    """
    if isinstance(w, Int8Weight):
        if w.fallback is not None:
            return matvec(w.fallback, x, bias)
        y = torch._weight_int8pack_mm(x.to(torch.bfloat16), w.q, w.scale).float()
    elif x.shape[0] == 1:
        y = torch.mv(w, x[0].to(w.dtype)).float().unsqueeze(0)
    else:
        y = F.linear(x.to(w.dtype), w).float()
    return y if bias is None else y + bias


def default_sample_dtype(batch: int = 1) -> torch.dtype:
    """The step weights' type for ``batch`` samples at once, on CPUs with AVX-512 BF16/VNNI (else fp32).

    Few samples: weight-only int8 with per-row scales, which left a character model's bits per
    character unchanged to four digits (BENCHMARKS.md) and halves the bytes a step reads against
    bf16. Many samples: bf16, whose matrix products (AMX) outrun the int8 kernel there.
    """
    if not getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return torch.float32
    return torch.int8 if batch < 16 and hasattr(torch, "_weight_int8pack_mm") else torch.bfloat16


SAMPLE_PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}


class StepGenerator:
    """Prepared weights of a :class:`~rnnkit.charlm.CharLM` for one-character-at-a-time stepping."""

    def __init__(self, model: CharLM, dtype: torch.dtype | None = None, batch: int = 1) -> None:
        rnn = model.rnn
        if rnn.bidirectional:
            raise ValueError("a bidirectional model cannot generate text")
        self.model, self.mode, self.hidden = model, rnn.mode, rnn.hidden_size
        dtype = dtype or default_sample_dtype(batch)
        self.layers: list[tuple[Tensor, ...]] = []
        with torch.no_grad():
            def prep(w: Tensor) -> Tensor | Int8Weight:
                if dtype == torch.int8:
                    return Int8Weight(w)
                return w.detach().to("cpu", dtype).contiguous()

            for k in range(rnn.num_layers):
                w_ih, w_hh, *b = [w.detach().float().cpu() for w in rnn.layer_weights(k)]
                b_ih, b_hh = b if b else (torch.zeros(w_ih.shape[0]),) * 2
                if self.mode == "gru":  # the reset gate needs the recurrent product on its own
                    self.layers.append((prep(w_ih), b_ih, prep(w_hh), b_hh))
                elif k == 0:  # input product and both biases live in the table
                    self.layers.append((prep(w_hh),))
                else:
                    self.layers.append((prep(torch.cat([w_ih, w_hh], 1)), b_ih + b_hh))
            w_ih0, _, *b0 = [w.detach().float().cpu() for w in rnn.layer_weights(0)]
            self.table = model.embed.weight.detach().float().cpu() @ w_ih0.t()
            if b0:
                self.table += b0[0]
                if self.mode != "gru":  # the recurrent bias joins the input bias in the table
                    self.table += b0[1]
            # the output layer is small: float32 costs little memory, and its kernel at batch 1
            # (torch.mv) is several times faster than the bf16 one
            self.head_w = model.head.weight.detach().float().cpu().contiguous()
            self.head_b = model.head.bias.detach().float().cpu()

    def _layer_step(self, k: int, x: Tensor | None, token: Tensor, h: Tensor, c: Tensor | None):
        w = self.layers[k]
        if self.mode == "gru":
            xw = self.table.index_select(0, token) if k == 0 else matvec(w[0], x, w[1])
            x_r, x_z, x_n = xw.chunk(3, 1)
            h_r, h_z, h_n = matvec(w[2], h, w[3]).chunk(3, 1)
            r, z = torch.sigmoid(torch.cat([x_r + h_r, x_z + h_z], 1)).chunk(2, 1)
            n = torch.tanh(x_n + r * h_n)
            return n + z * (h - n), None
        if k == 0:
            pre = matvec(w[0], h, self.table.index_select(0, token))
        else:
            pre = matvec(w[0], torch.cat([x, h], 1), w[1])
        if self.mode == "lstm":
            i, f, _, o = torch.sigmoid(pre).chunk(4, 1)
            g = torch.tanh(pre[:, 2 * self.hidden: 3 * self.hidden])
            c = torch.addcmul(f * c, i, g)
            return o * torch.tanh(c), c
        return (torch.tanh(pre) if self.mode == "rnn_tanh" else torch.relu(pre)), None

    def step(self, token: Tensor, hs: list[Tensor], cs: list[Tensor | None]) -> Tensor:
        """Advance every layer by one character (``token``: (B,) ids); return next-char logits."""
        x = None
        for k in range(len(self.layers)):
            hs[k], cs[k] = self._layer_step(k, x, token, hs[k], cs[k])
            x = hs[k]
        return matvec(self.head_w, x, self.head_b)

    def prime_state(self, ids: Tensor, batch: int) -> tuple[list[Tensor], list[Tensor | None], Tensor]:
        """Run the prime (all but its last char) through the full layer; return the state and last id."""
        n = len(self.layers)
        hs = [torch.zeros(batch, self.hidden) for _ in range(n)]
        cs: list[Tensor | None] = [torch.zeros(batch, self.hidden) if self.mode == "lstm" else None
                                   for _ in range(n)]
        if len(ids) > 1:
            device = next(self.model.parameters()).device
            _, state = self.model(ids[:-1].to(device).unsqueeze(0).expand(batch, -1))
            if self.mode == "lstm":
                hs, cs = [h.float().cpu() for h in state[0]], [c.float().cpu() for c in state[1]]
            else:
                hs = [h.float().cpu() for h in state]
        return hs, cs, ids[-1].expand(batch).clone()

    def generate(self, vocab: Vocab, prime: str, length: int, num_samples: int,
                 generator: torch.Generator, temperature: float, top_k: int | None,
                 top_p: float | None, greedy: bool, stop: str | None,
                 on_text: Callable[[str], None] | None) -> list[str]:
        if not prime:
            prime = "\n" if "\n" in vocab.index else vocab.chars[0]
        ids = torch.from_numpy(vocab.encode(prime).astype("int64"))
        hs, cs, token = self.prime_state(ids, num_samples)
        choose = Picker(generator, temperature, top_k, top_p, greedy)
        out: list[list[str]] = [[] for _ in range(num_samples)]
        done = [False] * num_samples
        for _ in range(length):
            token = choose(self.step(token, hs, cs))
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
