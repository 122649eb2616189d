"""Helpers shared by the asv suites (benchmarks/bench_*.py) and the
side-by-side scripts (asv_bench/compare_*.py, which import them as
``benchmarks._common`` since running ``python asv_bench/compare_X.py`` puts
asv_bench/ on sys.path): thread limits that every library obeys, and a
median timer."""
import contextlib
import statistics
import timeit

from threadpoolctl import threadpool_limits

import softarray as sa

try:
    import torch
except ImportError:
    torch = None


@contextlib.contextmanager
def limit_threads(n):
    """Cap every pool a library may use. threadpoolctl covers OpenMP and BLAS,
    but softarray's override and torch's intra-op pool take precedence over
    the OpenMP default, so they are set as well."""
    with threadpool_limits(n), sa.threads(n):
        if torch is None:
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def median_seconds(fn, repeat):
    """Median seconds per call. autorange picks the loop count (>= 0.2 s per
    sample) and, running first, takes the one-off first-call costs."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return statistics.median(timer.repeat(repeat=repeat, number=number)) / number
