"""Helpers shared by the asv suites (benchmarks/bench_*.py) and the
side-by-side scripts (asv_bench/compare_*.py, which import them as
``benchmarks._common`` since running ``python asv_bench/compare_X.py`` puts
asv_bench/ on sys.path): thread limits that every library obeys, and a
median timer."""
import contextlib
import os
import statistics
import timeit

from threadpoolctl import threadpool_limits

import softarray as sa

try:
    import torch
except ImportError:
    torch = None

# The thread counts every suite runs at: one and all (a set, so that a
# one-core machine does not get a duplicate parameter value).
THREADS = sorted({1, os.cpu_count() or 1})

# SA_ASV_SMOKE=1 (CI's quick run, .ci/asv-smoke): every benchmark and every
# parameter combination runs once on small inputs, so that no benchmark rots
# unnoticed; the timings of such a run mean nothing.
SMOKE = os.environ.get("SA_ASV_SMOKE") == "1"


def sized(full, smoke):
    """A problem size: full, or smoke in a smoke run."""
    return smoke if SMOKE else full


@contextlib.contextmanager
def limit_threads(n):
    """Cap every pool a library may use. threadpoolctl covers OpenMP and BLAS,
    but softarray's override and torch's intra-op pool take precedence over
    the OpenMP default, so they are set as well."""
    with threadpool_limits(n), sa.threads(n), pool_threads(torch, n):
        yield


@contextlib.contextmanager
def pool_threads(library, n):
    """Set a library's own thread count (torch, cv2: ``get_num_threads`` /
    ``set_num_threads`` or ``getNumThreads`` / ``setNumThreads``) for the
    block; nothing when the library is None (not installed)."""
    if library is None:
        yield
        return
    get = getattr(library, "get_num_threads", None) or library.getNumThreads
    put = getattr(library, "set_num_threads", None) or library.setNumThreads
    previous = get()
    put(n)
    try:
        yield
    finally:
        put(previous)


def median_seconds(fn, repeat):
    """Median seconds per call. autorange picks the loop count (>= 0.2 s per
    sample) and, running first, takes the one-off first-call costs."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return statistics.median(timer.repeat(repeat=repeat, number=number)) / number
