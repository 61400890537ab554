"""Shared pieces of the benchmarks: the machine, the plain-PyTorch reference, tables, FLOP counts."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHAKESPEARE = SHARED / "text" / "tinyshakespeare.txt"


def machine() -> str:
    """One line naming the hardware and software a figure was measured on."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{datetime.date.today()}  {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads{gpu}")


def table(rows: list[dict], title: str = "") -> str:
    """A Markdown table (what BENCHMARKS.md holds) from a list of dicts; a missing key is a blank cell."""
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    fmt = [[f"{r[k]:,.3f}" if isinstance(r.get(k), float) and abs(r[k]) < 100 else
             f"{r[k]:,.0f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys] for r in rows]
    lines = ([f"### {title}", ""] if title else []) + ["| " + " | ".join(keys) + " |",
                                                       "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r) + " |" for r in fmt]
    return "\n".join(lines)


def corpus_tokens(limit: int | None = None) -> tuple[np.ndarray, int]:
    """Token ids of tiny-shakespeare (or Python's sources where it is absent) and the vocabulary size."""
    from rnnkit.data.text import Vocab, read_corpus

    text = SHAKESPEARE.read_text(encoding="utf-8") if SHAKESPEARE.exists() else read_corpus(None)
    text = text[:limit] if limit else text
    vocab = Vocab.from_text(text)
    return vocab.encode(text), len(vocab)


class PlainCharModel(nn.Module):
    """What a user writes by hand: nn.Embedding + nn.LSTM/GRU + nn.Linear."""

    def __init__(self, cell: str, vocab: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(hidden, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def plain_train_rate(cell: str, tokens: np.ndarray, vocab: int, hidden: int, layers: int, batch: int,
                     seq_len: int, precision: str, device: str, seconds: float) -> float:
    """Chars/s of a hand-written training loop: contiguous streams, state carried and detached, Adam."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = PlainCharModel(cell, vocab, hidden, layers).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    n = (len(tokens) - 1) // batch
    data = torch.from_numpy(tokens[: n * batch + 1].astype(np.int64))
    x_all, y_all = data[:-1].view(batch, n), data[1:].view(batch, n)
    state, steps, chars, start = None, 0, 0, None
    while True:
        i = (steps % (n // seq_len)) * seq_len
        x, y = x_all[:, i:i + seq_len].to(dev), y_all[:, i:i + seq_len].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits, state = model(x, state)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        steps += 1
        if steps == 3:  # warm-up steps are not timed
            start, chars = time.perf_counter(), 0
        elif start is not None:
            chars += batch * seq_len
            if time.perf_counter() - start > seconds:
                return chars / (time.perf_counter() - start)


def plain_train_rate_own_process(cell: str, corpus_limit: int | None, hidden: int, layers: int, batch: int,
                                 seq_len: int, precision: str, device: str, seconds: float) -> float:
    """:func:`plain_train_rate` in a fresh Python process, as a user's own script runs.

    rnnkit's Trainer tunes the process's allocator (rnnkit/training/allocator.py); measured in the same
    process, the plain script would inherit that tuning and not be what a user runs.
    """
    args = [cell, corpus_limit, hidden, layers, batch, seq_len, precision, device, seconds]
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import common; "
            "cell, limit, *rest = json.loads(sys.argv[2]); tokens, vocab = common.corpus_tokens(limit); "
            "print(common.plain_train_rate(cell, tokens, vocab, *rest))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), json.dumps(args)],
                         capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.split()[-1])


def flops_per_char(cell: str, vocab: int, hidden: int, layers: int) -> float:
    """Matrix-product FLOPs of one training character (forward x 3 for backward), input = hidden."""
    gates = 4 if cell == "lstm" else 3
    forward = layers * 2 * gates * hidden * (2 * hidden) + 2 * hidden * vocab
    return 3 * forward


def matmul_peak(dtype: torch.dtype, device: str = "cpu", n: int = 2048, reps: int = 8,
                seconds: float = 3.0) -> float:
    """Measured FLOP/s of an n x n matrix product in ``dtype``: the practical peak.

    ``n`` is halved (down to 256) until ``reps`` products should fit in ``seconds``, judged by a
    256 x 256 product timed first. Where the machine has no fast kernel for ``dtype`` (bf16 on a
    CPU with neither AVX-512 BF16 nor AMX runs generic loops, orders of magnitude slower), eight
    2048 x 2048 products would take minutes, and a smaller product measures such a kernel just
    as well. Smoke runs pass a small ``n`` so that no large product runs at all.
    """
    probe = min(n, 256)
    rate = _product_rate(dtype, device, probe, 1)
    while n > probe and 2 * n**3 * (reps + 1) > seconds * rate:
        n = max(probe, n // 2)
    return _product_rate(dtype, device, n, reps)


def _product_rate(dtype: torch.dtype, device: str, n: int, reps: int) -> float:
    """FLOP/s of ``reps`` n x n products, after one untimed product (first-call set-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
