"""What machine and which tool versions produced a number: recorded in every sidecar and result.

Kept free of heavy imports: versions are read from installed package metadata, not by importing
the packages.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from importlib import metadata
from typing import Any

# CPU features that change which int8 / fp16 kernels a runtime picks (x86 and Arm names).
_INTERESTING_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "fphp", "asimdhp", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip


def package_versions(*names: str) -> dict[str, str | None]:
    """Installed versions of these distributions (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@cache
def cpu_info() -> dict[str, Any]:
    """CPU model, logical cores and the SIMD flags that matter for quantized kernels."""
    model, flags = platform.processor() or "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux: the model string from platform is all we get
        pass
    return {
        "machine": platform.machine(),
        "model": model,
        "logical_cores": os.cpu_count(),
        "flags": [f for f in _INTERESTING_FLAGS if f in flags],
    }


def environment(*packages: str) -> dict[str, Any]:
    """Python, OS, CPU and the versions of ``packages`` (plus selinet-compress itself)."""
    from selinet_compress import __version__

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "versions": {"selinet-compress": __version__, **package_versions(*packages)},
    }
