"""What the CPU can do, for the ``auto`` choices (training precision, generation weights, kernels).

CPUs differ more than their names suggest: with AMX tiles a bf16 matrix product runs several
times faster than fp32; with AVX-512 BF16 alone, somewhat faster; with AVX2 only, many times
slower. Every ``auto`` choice asks here, and the tests fake the answers to check both paths.
"""

from __future__ import annotations

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


__all__ = ["cpu_capability", "cpu_has_amx", "cpu_has_avx512_bf16"]
