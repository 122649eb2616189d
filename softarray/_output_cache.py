"""Reuse of large output buffers between calls.

A fresh NumPy buffer of tens of MiB is mapped from the system, which zeroes
every page on first write: for a 4096 x 4096 float32 softmax that costs about
as much as the kernel's own output pass, on every call. softarray allocates
its large outputs (softmax-family results, loss gradients, box IoU matrices)
through a NumPy memory handler (NEP 49, ``src/_output_cache.h``) that keeps
the last few freed blocks of at least ``OUTPUT_CACHE_MIN_BYTES`` and hands
one back for the next request of the same size. Kept memory is marked
reclaimable (``MADV_FREE`` on Linux): the system takes it back under memory
pressure. Other arrays are untouched.

The limit (bytes the cache may hold) defaults to 256 MiB, or
``SOFTARRAY_OUTPUT_CACHE_MB`` from the environment at import;
``set_output_cache(0)`` turns the cache off and frees what it holds.
"""
import math
import numbers
import os

import numpy as np

from ._lib import _runtime

DEFAULT_LIMIT_MB = 256
OUTPUT_CACHE_MIN_BYTES = _runtime.OUTPUT_CACHE_MIN_BYTES


def _limit_from_environment():
    text = os.environ.get("SOFTARRAY_OUTPUT_CACHE_MB", "").strip()
    if not text:
        return DEFAULT_LIMIT_MB << 20
    try:
        megabytes = int(text)
    except ValueError:
        megabytes = -1
    if megabytes < 0:
        raise ValueError(
            f"SOFTARRAY_OUTPUT_CACHE_MB must be a non-negative integer (MiB), got {text!r}"
        )
    return megabytes << 20


def empty(shape, dtype):
    """``np.empty(shape, dtype)`` for an output the caller will fill: through
    the output cache when it is large and the cache is on."""
    dtype = np.dtype(dtype)
    if math.prod(shape) * dtype.itemsize < OUTPUT_CACHE_MIN_BYTES or not _runtime.output_cache_limit():
        return np.empty(shape, dtype)
    return _runtime.empty_cached(shape, dtype)


def set_output_cache(max_bytes):
    """Set how many bytes of freed output buffers softarray keeps for reuse.

    softarray allocates large outputs (at least 32 MiB) through a NumPy
    memory handler that keeps up to four freed blocks, at most ``max_bytes``
    in all, and hands one back for the next output of the same size: repeated
    calls on same-sized batches then skip the system's zeroing of fresh pages
    (a third of the time of a 4096 x 4096 float32 softmax). Kept memory is
    marked reclaimable (``MADV_FREE`` on Linux). Setting a limit frees what is
    kept now.

    Parameters
    ----------
    max_bytes : int
        The new limit in bytes; 0 turns the cache off. The default, 256 MiB,
        can also be set with the environment variable
        ``SOFTARRAY_OUTPUT_CACHE_MB`` (in MiB) before import.

    Returns
    -------
    int
        The previous limit.

    Examples
    --------
    >>> import softarray as sa
    >>> previous = sa.set_output_cache(0)        # off, and free what it holds
    >>> sa.set_output_cache(previous)
    0
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral) or max_bytes < 0:
        raise ValueError(f"max_bytes must be a non-negative integer, got {max_bytes!r}")
    previous = _runtime.output_cache_limit()
    _runtime.set_output_cache_limit(int(max_bytes))
    return previous


def output_cache_info():
    """``(limit, held)``: the cache's limit and the bytes it keeps now."""
    return _runtime.output_cache_limit(), _runtime.output_cache_held()


_runtime.set_output_cache_limit(_limit_from_environment())
