"""Compiled extension modules, built by meson from ``src/``.

Each module picks its code path when it is loaded (src/_simd.h): the
x86-64-v3 code where the CPU has it, unless ``SOFTARRAY_SIMD=baseline`` asks
for the baseline code. The value is checked here, before any module loads,
so that a misspelt request fails instead of silently testing the v3 code.
"""
import os

SIMD_CHOICES = ("auto", "baseline")

_request = os.environ.get("SOFTARRAY_SIMD", "")
if _request not in ("",) + SIMD_CHOICES:
    raise ValueError(f"SOFTARRAY_SIMD must be one of {', '.join(SIMD_CHOICES)} (or unset), got {_request!r}")
