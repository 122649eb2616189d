"""How many threads the compiled kernels use.

The default follows OpenMP: ``OMP_NUM_THREADS`` at start-up, or a later
``threadpoolctl.threadpool_limits(n)`` (which calls ``omp_set_num_threads``).
``set_num_threads`` and the ``threads`` context manager override it for
softarray alone; the override is per context (thread-safe, asyncio-safe).
"""
import contextlib
import contextvars
import numbers

from ._lib import _runtime

_override = contextvars.ContextVar("softarray_num_threads", default=None)


def _check_count(n):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n_threads must be a positive integer or None, got {n!r}")
    return int(n)


def get_num_threads():
    """Number of threads the next softarray call will use.

    Returns
    -------
    int
        The override set by :func:`set_num_threads` or :func:`threads` if
        any, else OpenMP's current limit for the calling thread.

    Examples
    --------
    >>> import softarray as sa
    >>> with sa.threads(1):
    ...     sa.get_num_threads()
    1
    """
    n = _override.get()
    return n if n is not None else max(1, _runtime.omp_max_threads())


def set_num_threads(n):
    """Set the number of threads softarray's kernels use; ``None`` restores
    the OpenMP default.

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
    _override.set(None if n is None else _check_count(n))


@contextlib.contextmanager
def threads(n):
    """Context manager: use ``n`` threads inside the ``with`` block.

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
    token = _override.set(None if n is None else _check_count(n))
    try:
        yield
    finally:
        _override.reset(token)
