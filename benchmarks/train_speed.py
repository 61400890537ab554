"""Training speed: rnnkit's training loop against a hand-written PyTorch script, side by side.

Both train the same model (embedding, recurrent layers, linear output) on the same contiguous
streams of tiny-shakespeare with the state carried, alternating; the plain script runs in a
fresh process each time, as a user's script would (rnnkit's Trainer tunes its own process's
allocator). Prints chars/s, the ratio, and achieved matrix-product FLOP/s as a share of the
measured peak.

    python benchmarks/train_speed.py            # full: LSTM and GRU 1x256, 2x512, 3x1024
    python benchmarks/train_speed.py --quick    # 2x512 LSTM only
    python benchmarks/train_speed.py --quick --precisions fp32   # fp32 only (AVX2-only CPUs)
    python benchmarks/train_speed.py --models lstm:1x256 gru:3x1024
    python benchmarks/train_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    corpus_tokens,
    flops_per_char,
    machine,
    matmul_peak,
    plain_train_rate_own_process,
    table,
)

from rnnkit.tasks.charlm import CharLM, CharLMTask, DataConfig, ModelConfig  # noqa: E402
from rnnkit.training.trainer import TrainConfig, Trainer  # noqa: E402

SIZES = [("lstm", 1, 256), ("lstm", 2, 512), ("lstm", 3, 1024), ("gru", 1, 256), ("gru", 2, 512), ("gru", 3, 1024)]


def rnnkit_train_rate(cell: str, tokens, vocab: int, hidden: int, layers: int, batch: int, seq_len: int,
                      precision: str, device: str, seconds: float) -> float:
    """Chars/s of rnnkit's own Trainer (the loop `rnnkit train` runs), validation left out."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = CharLM(ModelConfig(cell=cell, hidden=hidden, layers=layers, vocab_size=vocab)).to(dev)
    task = CharLMTask(model, tokens, tokens[:4096], batch, seq_len, dev)
    config = TrainConfig(max_steps=3, precision=precision, device=device, eval_every=10**9,
                         log_every=10**9, warmup_steps=1)
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(task, config, run, progress=False)
        warm = trainer.run()  # three warm-up steps, untimed, as for the plain script
        config.max_steps, config.max_time = None, warm.train_time + seconds
        timed = trainer.run()  # the same trainer carries on: its clock and counters continue
    return (timed.items_per_second * timed.train_time - warm.items_per_second * warm.train_time) / (
        timed.train_time - warm.train_time)


def parse_model(text: str, parser: argparse.ArgumentParser) -> tuple[str, int, int]:
    """``lstm:2x512`` -> ("lstm", 2, 512)."""
    try:
        cell, shape = text.split(":")
        layers, hidden = (int(v) for v in shape.split("x"))
        if cell in ("lstm", "gru") and layers > 0 and hidden > 0:
            return cell, layers, hidden
    except ValueError:
        pass
    parser.error(f"--models: expected CELL:LAYERSxHIDDEN such as lstm:2x512, got {text!r}")


def main() -> None:
    p = argparse.ArgumentParser(description="rnnkit training chars/s against a plain PyTorch script")
    p.add_argument("--quick", action="store_true", help="2x512 LSTM only, short timings")
    p.add_argument("--smoke", action="store_true", help="a tiny model for a second: checks the script runs")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seconds", type=float, help="timing per measurement (default 10, quick 4)")
    p.add_argument("--models", nargs="+", metavar="CELL:LxH",
                   help="measure only these, e.g. lstm:1x256 gru:3x1024 (default: all six)")
    p.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"],
                   help="default both (an AVX2-only CPU: fp32, where bf16 is no speed-up)")
    p.add_argument("--batch-size", type=int, default=DataConfig.batch_size)
    p.add_argument("--seq-len", type=int, default=DataConfig.seq_len)
    args = p.parse_args()
    sizes = [("lstm", 1, 32)] if args.smoke else [("lstm", 2, 512)] if args.quick else SIZES
    if args.models:
        sizes = [parse_model(m, p) for m in args.models]
    seconds = 0.5 if args.smoke else args.seconds or (4 if args.quick else 10)
    corpus_limit = 200_000 if args.smoke else None
    tokens, vocab = corpus_tokens(corpus_limit)
    print(f"# training speed: {machine()}; batch {args.batch_size} x seq {args.seq_len}, {seconds:.0f} s each")
    # smoke: small products only (bf16 ones are very slow on CPUs without bf16 instructions)
    peak = {p: matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16, args.device, n=256 if args.smoke else 2048)
            for p in args.precisions}
    print("# measured matrix-product peak: " + ", ".join(f"{p} {v / 1e12:.2f} TFLOP/s" for p, v in peak.items()))
    rows = []
    for cell, layers, hidden in sizes:
        rates = {}
        for precision in args.precisions:
            common = (hidden, layers, args.batch_size, args.seq_len, precision, args.device, seconds)
            # alternate, best of two each, so drift in the machine's speed hits both alike; the plain
            # script in its own process, as a user runs it
            plain = [plain_train_rate_own_process(cell, corpus_limit, *common)]
            ours = [rnnkit_train_rate(cell, tokens, vocab, *common)]
            plain.append(plain_train_rate_own_process(cell, corpus_limit, *common))
            ours.append(rnnkit_train_rate(cell, tokens, vocab, *common))
            rates[precision] = (max(ours), max(plain))
        for precision, (ours, plain) in rates.items():
            achieved = ours * flops_per_char(cell, vocab, hidden, layers)
            rows.append({"model": f"{cell} {layers}x{hidden}", "precision": precision,
                         "rnnkit chars/s": ours, "plain chars/s": plain, "ratio": ours / plain,
                         "vs plain fp32": ours / rates.get("fp32", (0, math.nan))[1],
                         "TFLOP/s": achieved / 1e12, "share of peak": achieved / peak[precision]})
        print(table(rows[-len(rates):]), flush=True)
    print()
    print(table(rows, "training chars/s, rnnkit vs plain PyTorch (same run)"))


if __name__ == "__main__":
    main()
