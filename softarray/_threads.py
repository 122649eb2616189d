"""How many threads the compiled kernels use: one limit for the whole process.

The limit binds kernels called from every Python thread. It comes from, in
order: a forked child of a parent that may have started OpenMP's thread pool
(one thread: the pool does not survive ``fork``); ``set_num_threads`` /
``threads`` / ``threadpoolctl.threadpool_limits`` (which reaches softarray
through the controller registered below); else OpenMP's limit for the
calling thread (``OMP_NUM_THREADS`` at start-up, else the number of CPUs).
The state itself lives in the compiled runtime (``src/_runtime.pyx``) so that
a kernel call reads it without Python overhead.
"""
import contextlib
import numbers
import threading

import threadpoolctl

from ._lib import _runtime
from ._version import __version__


def _check_count(n):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n_threads must be a positive integer or None, got {n!r}")
    return int(n)


# The thread count to pass to the kernel call about to start: the compiled
# function itself, which small calls reach without a Python frame between.
threads_for_call = _runtime.threads_for_call


def get_num_threads():
    """Number of threads the next softarray call will use.

    Returns
    -------
    int
        1 in a forked child whose parent ran kernels in parallel; else the
        process-wide limit set by :func:`set_num_threads`, :func:`threads` or
        ``threadpoolctl.threadpool_limits``; else OpenMP's limit
        (``OMP_NUM_THREADS``, or the number of CPUs).

    Examples
    --------
    >>> import softarray as sa
    >>> with sa.threads(1):
    ...     sa.get_num_threads()
    1
    """
    return _runtime.thread_limit()


def set_num_threads(n):
    """Set the number of threads softarray's kernels use, for the whole
    process (kernels called from any Python thread); ``None`` restores the
    OpenMP default.

    Parameters
    ----------
    n : int or None
        A positive thread count, or None.

    Examples
    --------
    >>> import softarray as sa
    >>> sa.set_num_threads(1)
    >>> sa.get_num_threads()
    1
    >>> sa.set_num_threads(None)
    """
    _runtime.set_thread_limit(0 if n is None else _check_count(n))


@contextlib.contextmanager
def threads(n):
    """Context manager: the process uses ``n`` threads inside the ``with``
    block, and the previous limit again after it (as
    ``threadpoolctl.threadpool_limits`` does). Blocks open at once in several
    Python threads: the most recently entered one that is still open binds,
    and the limit from before them returns when the last one closes.

    Parameters
    ----------
    n : int or None
        A positive thread count, or None for the OpenMP default.

    Examples
    --------
    >>> import numpy as np, softarray as sa
    >>> with sa.threads(1):
    ...     p = sa.softmax(np.zeros((2, 3)))
    >>> p.sum(axis=-1)
    array([1., 1.])
    """
    entry = _OpenLimit(0 if n is None else _check_count(n))
    with _open_limits_lock:
        if not _open_limits:
            _OpenLimit.base = _runtime.explicit_thread_limit()
        _open_limits.append(entry)
        _runtime.set_thread_limit(entry.value)
    try:
        yield
    finally:
        with _open_limits_lock:
            _open_limits.remove(entry)
            _runtime.set_thread_limit(_open_limits[-1].value if _open_limits else _OpenLimit.base)


class _OpenLimit:
    """One open ``threads`` block. Compared by identity: blocks with the
    same limit are still different blocks."""
    base = 0    # the limit from before the first of the blocks now open

    def __init__(self, value):
        self.value = value


# The threads blocks open now, in every Python thread, in the order entered.
# The limit is process-wide, so the newest open block's binds, and a block
# that closes is taken out wherever it stands: worker threads' blocks close
# in any order, and restoring what each found on entry would let a closing
# block undo a limit that another, still open, relies on (its calls would
# run with another thread count, and so round differently).
_open_limits = []
_open_limits_lock = threading.Lock()


class _SoftarrayController(threadpoolctl.LibController):
    """threadpoolctl's handle on softarray's process-wide limit, found as the
    loaded ``softarray/_lib/_runtime`` extension. Its user API is "openmp",
    so ``threadpool_limits(n)`` and ``threadpool_limits(n, user_api="openmp")``
    limit softarray's kernels in every Python thread, not only in the thread
    whose OpenMP limit they set."""

    user_api = "openmp"
    internal_api = "softarray"
    filename_prefixes = ("_runtime",)
    check_symbols = ("softarray_get_thread_limit",)

    def get_num_threads(self):
        return _runtime.thread_limit()

    def set_num_threads(self, num_threads):
        _runtime.set_thread_limit(max(1, int(num_threads)))

    def get_version(self):
        return __version__


threadpoolctl.register(_SoftarrayController)
