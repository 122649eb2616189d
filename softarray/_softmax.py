"""softmax, log_softmax, logsumexp, stablemax, log_stablemax: the public
functions. They validate, then hand the work to the compiled kernels
(``softarray._lib._softmax``) or to the portable array-API implementation
(``softarray._portable.softmax``); ``softarray._dispatch`` decides which.
"""
import numpy as np

from . import _dispatch
from ._layout import ReductionLayout
from ._lib import _softmax as _kernels
from ._portable import softmax as _portable
from ._threads import get_num_threads
from ._validate import check_bool, check_temperature, floating_input, mask_for, normalize_axes

# What a masked-out entry of each op's output holds.
_MASK_FILL = {
    "softmax": 0.0,
    "stablemax": 0.0,
    "log_softmax": -np.inf,
    "log_stablemax": -np.inf,
}

_WHERE_DOC = """where : array of bool, optional
        Entries where ``where`` is False are left out of the normalization:
        they get probability 0 (log-probability ``-inf``). A slice with no
        entry left is empty: all its outputs are 0 (``-inf``), and its
        ``logsumexp`` is ``-inf``. Broadcast against ``x``."""


def _prepare(x, axis, where):
    xp, x = _dispatch.namespace_of(x)
    x = floating_input(xp, x)
    axes = normalize_axes(axis, x.ndim)
    mask = mask_for(xp, where, x)
    return xp, x, axes, mask


def _normalize(op, x, axis, scale, where):
    """Shared body of the four elementwise-output ops."""
    xp, x, axes, mask = _prepare(x, axis, where)
    a = _dispatch.as_compiled_input(x)
    if a is None:
        return _portable.normalize(xp, op, x, axes, scale, mask)
    out = _normalize_compiled(op, a, axes, scale, None if mask is None else np.asarray(mask))
    return _dispatch.to_caller(xp, out, x)


def _normalize_compiled(op, a, axes, scale, mask):
    if a.size == 0:
        return np.empty(a.shape, a.dtype.newbyteorder("="))
    if mask is not None:
        # The masked-out entries become -inf (probability 0) in the output
        # buffer and the kernel then works in place on it: no further copy.
        a = np.where(mask, a, -np.inf).astype(a.dtype.newbyteorder("="), copy=False)
    layout = ReductionLayout(a, axes)
    code = _kernels.OPS[op]
    n_threads = get_num_threads()
    if layout.uses_rows:
        x2 = layout.rows_view()
        out = np.empty(x2.shape, x2.dtype) if mask is None else x2
        _kernels.rows(x2, out, code, scale, n_threads)
    else:
        x3 = layout.cols_view()
        out = np.empty(x3.shape, x3.dtype) if mask is None else x3
        _kernels.cols(x3, out, code, scale, n_threads)
    result = layout.restore(out)
    if mask is not None:
        np.copyto(result, _MASK_FILL[op], where=~mask)
    return result


def softmax(x, /, axis=-1, *, temperature=1.0, where=None):
    r"""Softmax along ``axis``: ``exp(x / T) / sum(exp(x / T))``.

    Computed in two passes over the data (running maximum and rescaled sum
    together, then the output), so no temporary of ``x``'s size is made.

    Parameters
    ----------
    x : array
        Any array-API array (NumPy, PyTorch, CuPy, JAX, Dask,
        array-api-strict), or anything ``numpy.asarray`` accepts. Integer and
        boolean inputs are promoted to the namespace's default floating type.
    axis : int, tuple of ints or None, default -1
        Axes over which the entries sum to one; None means all axes.
    temperature : float, default 1.0
        Positive ``T``; larger values flatten the distribution.
    {where}

    Returns
    -------
    array
        Same type, shape, dtype and device as ``x`` (promoted dtype for
        integer inputs).

    Notes
    -----
    Non-finite inputs give what ``scipy.special.softmax`` gives: a slice
    whose maximum is NaN, ``+inf`` or ``-inf`` (all entries ``-inf``) is all
    NaN; ``-inf`` entries of other slices get probability 0.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.softmax(np.array([1.0, 2.0, 3.0]))
    array([0.09003057, 0.24472847, 0.66524096])
    >>> sa.softmax(np.array([1.0, 2.0, 3.0]), temperature=100.0).round(3)
    array([0.33 , 0.333, 0.337])
    >>> sa.softmax(np.array([1.0, 2.0, 3.0]), where=np.array([True, True, False]))
    array([0.26894142, 0.73105858, 0.        ])
    """
    return _normalize("softmax", x, axis, check_temperature(temperature), where)


def log_softmax(x, /, axis=-1, *, temperature=1.0, where=None):
    r"""Logarithm of :func:`softmax`: ``x / T - logsumexp(x / T)``.

    Accurate where one entry dominates: the largest entry's result is
    ``-log1p(sum of the others' exp(x - max))``, a correctly rounded tiny
    negative number where ``x - logsumexp(x)`` would return exactly 0.

    Parameters
    ----------
    x : array
        Any array-API array, or anything ``numpy.asarray`` accepts.
    axis : int, tuple of ints or None, default -1
        Axes over which ``exp`` of the result sums to one.
    temperature : float, default 1.0
        Positive ``T`` dividing ``x``.
    {where}

    Returns
    -------
    array
        Same type, shape, dtype and device as ``x``.

    Notes
    -----
    Non-finite inputs give what ``scipy.special.log_softmax`` gives: with a
    ``+inf`` entry, ``+inf`` entries are NaN and the others ``-inf``; a slice
    of only ``-inf``, or with a NaN, is all NaN.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.log_softmax(np.array([1000.0, 1.0]))
    array([   0., -999.])
    >>> x = np.array([1 - np.log(np.finfo(np.float32).eps), 0], dtype=np.float32)
    >>> float(sa.log_softmax(x)[0])  # SciPy returns exactly 0 here; mpmath: -4.38546649e-08
    -4.3854665676690274e-08
    """
    return _normalize("log_softmax", x, axis, check_temperature(temperature), where)


def stablemax(x, /, axis=-1, *, where=None):
    r"""StableMax: ``s(x) / sum(s(x))`` with ``s(x) = x + 1`` for ``x >= 0``
    and ``1 / (1 - x)`` below.

    From "Grokking at the Edge of Numerical Stability" (Prieto et al.): a
    softmax replacement whose normalizer grows linearly rather than
    exponentially, so it does not saturate to exact zeros.

    Parameters
    ----------
    x : array
        Any array-API array, or anything ``numpy.asarray`` accepts.
    axis : int, tuple of ints or None, default -1
        Axes over which the entries sum to one.
    {where}

    Returns
    -------
    array
        Same type, shape, dtype and device as ``x``.

    Notes
    -----
    ``s(+inf) = +inf`` and ``s(-inf) = 0``, and IEEE arithmetic does the
    rest: a slice with a ``+inf`` entry gives NaN there and 0 elsewhere; a
    slice of only ``-inf`` is all NaN (0 / 0).

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.stablemax(np.array([-1.0, 0.0, 1.0]))
    array([0.14285714, 0.28571429, 0.57142857])
    """
    return _normalize("stablemax", x, axis, 1.0, where)


def log_stablemax(x, /, axis=-1, *, where=None):
    r"""Logarithm of :func:`stablemax`, computed without forming it.

    ``log s(x) = sign(x) * log1p(|x|)``; the largest entry's result uses
    ``log1p`` of the others' share so it stays accurate when it dominates.

    Parameters
    ----------
    x : array
        Any array-API array, or anything ``numpy.asarray`` accepts.
    axis : int, tuple of ints or None, default -1
        Axes over which ``exp`` of the result sums to one.
    {where}

    Returns
    -------
    array
        Same type, shape, dtype and device as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.log_stablemax(np.array([-1.0, 0.0, 1.0]))
    array([-1.94591015, -1.25276297, -0.55961579])
    """
    return _normalize("log_stablemax", x, axis, 1.0, where)


def logsumexp(x, /, axis=-1, *, keepdims=False, where=None):
    r"""``log(sum(exp(x)))`` along ``axis``, without overflow.

    Parameters
    ----------
    x : array
        Any array-API array, or anything ``numpy.asarray`` accepts.
    axis : int, tuple of ints or None, default -1
        Axes to reduce; None reduces all of them.
    keepdims : bool, default False
        Keep the reduced axes with length one.
    where : array of bool, optional
        Only entries where ``where`` is True are summed; a slice with none
        gives ``-inf`` (the log of an empty sum). Broadcast against ``x``.

    Returns
    -------
    array
        ``x``'s array type, dtype and device, with the reduced axes removed
        (or of length one with ``keepdims``).

    Notes
    -----
    Like ``scipy.special.logsumexp``: a slice containing ``+inf`` gives
    ``+inf``, one of only ``-inf`` (or an empty one) gives ``-inf``, NaN
    propagates. The result is ``max + log1p(rest)``, accurate when one entry
    dominates.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.logsumexp(np.array([[0.0, 0.0], [10.0, 10.0]]))
    array([ 0.69314718, 10.69314718])
    >>> sa.logsumexp(np.arange(6.0).reshape(2, 3), axis=0, keepdims=True)
    array([[3.04858735, 4.04858735, 5.04858735]])
    """
    check_bool(keepdims, "keepdims")
    xp, x, axes, mask = _prepare(x, axis, where)
    a = _dispatch.as_compiled_input(x)
    if a is None:
        return _portable.logsumexp(xp, x, axes, keepdims, mask)
    out = _logsumexp_compiled(a, axes, keepdims, None if mask is None else np.asarray(mask))
    return _dispatch.to_caller(xp, out, x)


def _logsumexp_compiled(a, axes, keepdims, mask):
    if mask is not None:
        a = np.where(mask, a, -np.inf).astype(a.dtype.newbyteorder("="), copy=False)
    layout = ReductionLayout(a, axes)
    dtype = layout.view.dtype
    n_threads = get_num_threads()
    if layout.n == 0:
        out = np.full(layout.outer * layout.inner, -np.inf, dtype)
    elif layout.uses_rows:
        x2 = layout.rows_view()
        out = np.empty(x2.shape[0], dtype)
        _kernels.rows_logsumexp(x2, out, 1.0, n_threads)
    else:
        x3 = layout.cols_view()
        out = np.empty((layout.outer, 1, layout.inner), dtype)
        _kernels.cols(x3, out, _kernels.LOGSUMEXP, 1.0, n_threads)
    return layout.restore_reduced(out, keepdims)


for _f in (softmax, log_softmax, stablemax, log_stablemax):
    _f.__doc__ = _f.__doc__.replace("{where}", _WHERE_DOC)
del _f
