"""What the CPU can do, for the ``auto`` choices (training precision, generation weights, kernels).

CPUs differ more than their names suggest: with AMX tiles a bf16 matrix product runs several
times faster than fp32; with AVX-512 BF16 alone, somewhat faster; with AVX2 only, many times
slower. Every ``auto`` choice asks here, and the tests fake the answers to check both paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def cpu_has_amx() -> bool:
    """AMX tiles: bf16 matrix products several times faster than fp32."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def cpu_has_avx512_bf16() -> bool:
    """AVX-512 BF16/VNNI: bf16 and int8 products in hardware, without AMX tiles."""
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def cpu_capability() -> str:
    """The vector ISA torch's own kernels run with here (``AVX2``, ``AVX512``, ...)."""
    return str(torch.backends.cpu.get_cpu_capability())


def memory_bytes() -> int | None:
    """The machine's physical memory, or None where the system does not say."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(n_params: int, what: str) -> None:
    """Refuse in one line a model whose training state cannot fit this machine's memory.

    Training holds each parameter four times in float32 (weights, gradients and AdamW's two
    moments), before any activations: a model past that would fail deep inside an allocation.
    """
    from .errors import RnnkitError

    need, have = 16 * n_params, memory_bytes()
    if have and need > 0.8 * have:
        raise RnnkitError(f"{what} needs about {need / 1e9:,.0f} GB for weights, gradients and optimizer state; "
                          f"this machine has {have / 1e9:,.0f} GB: choose a smaller model")


__all__ = ["check_fits_in_memory", "cpu_capability", "cpu_has_amx", "cpu_has_avx512_bf16", "memory_bytes"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (None: as set), then restore the number set before.

    Small recurrent nets are latency-bound, so on a busy machine extra threads mostly wait on each
    other; and a model meant to train on a share of the CPU is measured on that share."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
