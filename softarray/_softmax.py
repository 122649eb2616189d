"""softmax, log_softmax, logsumexp, stablemax, log_stablemax: the public
functions. They validate, then hand the work to the compiled kernels
(``softarray._lib._softmax``) or to the portable array-API implementation
(``softarray._portable.softmax``); ``softarray._dispatch`` decides which.
"""
import math

import array_api_compat
import numpy as np

from . import _dispatch
from ._declare import AlongAxes, LogSumExpReduction, VectorJacobian, declare
from ._layout import ReductionLayout
from ._output_cache import empty as output_empty
from ._lib import _softmax as _kernels
from ._portable import softmax as _portable
from ._threads import threads_for_call
from ._validate import (check_bool, check_real_numeric, check_temperature, floating_input, isdtype,
                        floating_result_type, is_python_scalar, known_any, mask_for,
                        normalize_axes, possibly_any)

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


def _prepare(x, axis, where, b=None):
    """(xp, x, axes, mask, b): x floating, promoted and broadcast with the
    weights b when given (logsumexp's), then axes and mask checked against
    x's final shape."""
    if b is not None and is_python_scalar(x):  # x takes b's library, as in SciPy
        xp, b = _dispatch.namespace_of(b, "b")
        x_array = _dispatch.companion_array(xp, b, x, "x", "b")
    else:
        xp, x_array = _dispatch.namespace_of(x)
    if b is None:
        x = floating_input(xp, x_array)
    else:
        x, b = _with_weights(xp, x, x_array, b)
    axes = normalize_axes(axis, x.ndim)
    mask = mask_for(xp, where, x)
    return xp, x, axes, mask, b


def _normalize(op, x, axis, temperature, where):
    """Shared body of the four elementwise-output ops."""
    if where is None:
        # A NumPy array's small call: one compiled call that checks the
        # array, axis and temperature (None where any is not plain) and runs
        # the kernel.
        out = _kernels.plain_rows_at(x, axis, _kernels.OPS[op], temperature, threads_for_call())
        if out is not None:
            return out
    scale = check_temperature(temperature)
    if where is None:
        out = _normalize_plain(op, x, axis, scale)
        if out is not None:
            return out
        half = _dispatch.half_rows(x, axis)
        if half is not None:
            rows, kind, out, out_rows = half
            _kernels.rows_half(rows, out_rows, _kernels.OPS[op], scale, kind, threads_for_call())
            return out
    xp, x, axes, mask, _ = _prepare(x, axis, where)
    a, narrow = _dispatch.kernel_operand(x)
    if a is None:
        return _portable.normalize(xp, op, x, axes, scale, mask)
    out = _normalize_compiled(op, a, axes, scale, None if mask is None else np.asarray(mask))
    return _dispatch.to_caller(xp, out, x, narrow)


def _normalize_plain(op, x, axis, scale):
    """op along rows that the kernels read as they are, of a NumPy array or
    of a tensor that _dispatch.plain_tensor takes, into a new array of the
    caller's type; None for anything else. It sees the NumPy arrays that
    plain_rows_at left (larger, or a temperature not a float); they skip the
    tensor test."""
    tensor = None if type(x) is np.ndarray else _dispatch.plain_tensor(x)
    plain = x if tensor is None else tensor
    out = _kernels.plain_rows(plain, axis, _kernels.OPS[op], scale, threads_for_call())
    if out is None:
        rows = _dispatch.plain_rows(plain, axis)
        if rows is None:
            return None
        out = output_empty(plain.shape, plain.dtype)
        _kernels.rows(rows, out.reshape(rows.shape), _kernels.OPS[op], scale, threads_for_call())
    return out if tensor is None else _dispatch.as_tensor(out)


def _minus_inf_outside(mask, a):
    """A new array: a where mask is True, -inf (exp of it 0) elsewhere."""
    return np.where(mask, a, -np.inf).astype(a.dtype, copy=False)


def _normalize_compiled(op, a, axes, scale, mask):
    if a.size == 0:
        return np.empty(a.shape, a.dtype)
    if mask is not None:
        # The masked-out entries become -inf (probability 0) in the output
        # buffer and the kernel then works in place on it: no further copy.
        a = _minus_inf_outside(mask, a)
    layout = ReductionLayout(a, axes)
    code = _kernels.OPS[op]
    n_threads = threads_for_call()
    if layout.uses_rows:
        x2 = layout.rows_view()
        out = output_empty(x2.shape, x2.dtype) if mask is None else x2
        _kernels.rows(x2, out, code, scale, n_threads)
    else:
        x3 = layout.cols_view()
        out = output_empty(x3.shape, x3.dtype) if mask is None else x3
        _kernels.cols(x3, out, code, scale, n_threads)
    result = layout.restore(out)
    if mask is not None:
        np.copyto(result, _MASK_FILL[op], where=~mask)
    return result


# ------------------------------------------------ gradients (vector-Jacobian)
# Each takes the call's arguments, its result and the result's cotangent
# ``g`` as NumPy arrays (the autograd adapter's VectorJacobian rule) and
# returns the gradient of sum(result * g) for each declared input.

def _masked(arguments, g):
    """axes of the call, and g with zeros outside ``where``."""
    axes = normalize_axes(arguments["axis"], g.ndim)
    where = arguments["where"]
    return axes, (g if where is None else np.where(where, g, 0))


def _row_dot(g, y, axes):
    """sum(g * y) over ``axes``, kept; one pass without a temporary for one axis."""
    if len(axes) == 1:
        return np.expand_dims(np.vecdot(g, y, axis=axes[0]), axes)
    return np.sum(g * y, axis=axes, keepdims=True)


def _divided(dx, by):
    """dx / by in place (nothing to do for a temperature of 1)."""
    if np.ndim(by) or float(by) != 1.0:
        dx /= by
    return dx


def _softmax_vjp(arguments, y, g):
    """softmax: y * (g - sum(g * y)) / T (y is 0 outside ``where``)."""
    dx = g - _row_dot(g, y, normalize_axes(arguments["axis"], y.ndim))
    dx *= y
    return (_divided(dx, arguments["temperature"]),)


def _log_softmax_vjp(arguments, logp, g):
    """log_softmax: (g - softmax * sum(g)) / T."""
    axes, g = _masked(arguments, g)
    dx = g - np.exp(logp) * np.sum(g, axis=axes, keepdims=True)
    return (_divided(dx, arguments["temperature"]),)


def _stablemax_vjp(arguments, y, g):
    """stablemax: s'(x) / s(x) = 1 / (1 + |x|), so y * (g - sum(g * y)) / (1 + |x|)."""
    dx = g - _row_dot(g, y, normalize_axes(arguments["axis"], y.ndim))
    dx *= y
    return (_divided(dx, 1 + np.abs(arguments["x"])),)


def _log_stablemax_vjp(arguments, logy, g):
    """log_stablemax: (g - stablemax * sum(g)) / (1 + |x|)."""
    axes, g = _masked(arguments, g)
    dx = g - np.exp(logy) * np.sum(g, axis=axes, keepdims=True)
    return (dx / (1 + np.abs(arguments["x"])),)


def _summed_to(a, shape):
    """a summed over the axes that broadcasting added to ``shape``."""
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and a.shape[lead + i] != 1)
    return np.sum(a, axis=axes).reshape(shape) if axes else a


def _logsumexp_vjp(arguments, result, g):
    """logsumexp: d/dx = sign * b * exp(x - out), d/db = sign * exp(x - out)."""
    x, b, where = arguments["x"], arguments["b"], arguments["where"]
    out, sign = result if arguments["return_sign"] else (result, None)
    if arguments["return_sign"]:
        g = g[0]
    shape = np.broadcast_shapes(np.shape(x), () if b is None else np.shape(b))
    axes = normalize_axes(arguments["axis"], len(shape))
    if not arguments["keepdims"]:
        out, g = np.expand_dims(out, axes), np.expand_dims(g, axes)
        sign = None if sign is None else np.expand_dims(sign, axes)
    share = np.exp(x - out) * (g if sign is None else g * sign)
    if where is not None:
        share = np.where(where, share, 0)
    dx = share if b is None else share * b
    return (_summed_to(np.broadcast_to(dx, shape), np.shape(x)),
            None if b is None else _summed_to(np.broadcast_to(share, shape), np.shape(b)))


@declare(AlongAxes("x"), gradient=VectorJacobian(("x",), _softmax_vjp))
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
    return _normalize("softmax", x, axis, temperature, where)


@declare(AlongAxes("x"), gradient=VectorJacobian(("x",), _log_softmax_vjp))
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
    return _normalize("log_softmax", x, axis, temperature, where)


@declare(AlongAxes("x"), gradient=VectorJacobian(("x",), _stablemax_vjp))
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


@declare(AlongAxes("x"), gradient=VectorJacobian(("x",), _log_stablemax_vjp))
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


@declare(LogSumExpReduction(), gradient=VectorJacobian(("x", "b"), _logsumexp_vjp))
def logsumexp(x, /, axis=-1, *, b=None, keepdims=False, return_sign=False, where=None):
    r"""``log(sum(b * exp(x)))`` along ``axis``, without overflow.

    Parameters
    ----------
    x : array
        Any array-API array, or anything ``numpy.asarray`` accepts.
    axis : int, tuple of ints or None, default -1
        Axes to reduce; None reduces all of them (SciPy's default).
    b : array, optional
        Weights of ``exp(x)``, broadcast with ``x`` as in
        ``scipy.special.logsumexp``. They may be negative (to subtract);
        a zero weight leaves its entry out, even an infinite or NaN one,
        unless the rest of the sum is not finite: then, as in SciPy,
        ``0 * exp(+inf)`` and ``0 * exp(NaN)`` make the result NaN.
    keepdims : bool, default False
        Keep the reduced axes with length one.
    return_sign : bool, default False
        Also return the sign of the sum: then the result is
        ``log(abs(sum))``. Without it, a negative sum gives NaN.
    where : array of bool, optional
        Only entries where ``where`` is True are summed; a slice with none
        gives ``-inf`` (the log of an empty sum). Broadcast against ``x``.

    Returns
    -------
    res : array
        ``x``'s array type, dtype (promoted with ``b``'s as
        ``scipy.special.logsumexp`` promotes them) and device, with
        the reduced axes removed (or of length one with ``keepdims``).
    sgn : array
        Only with ``return_sign``: the sign of the sum, +1, 0 or -1 (NaN
        where ``res`` is NaN), in ``res``'s dtype.

    Notes
    -----
    Like ``scipy.special.logsumexp``: a slice containing ``+inf`` gives
    ``+inf``, one of only ``-inf`` (or an empty one) gives ``-inf``, NaN
    propagates. The result is ``max + log1p(rest)``, accurate when one entry
    dominates. With ``b``, the terms of each sign are summed separately as
    ``logsumexp(x + log|b|)`` and the two sums are subtracted once, in log
    space.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.logsumexp(np.array([[0.0, 0.0], [10.0, 10.0]]))
    array([ 0.69314718, 10.69314718])
    >>> sa.logsumexp(np.arange(6.0).reshape(2, 3), axis=0, keepdims=True)
    array([[3.04858735, 4.04858735, 5.04858735]])

    ``log(e - e**2)`` is the log of a negative number; with its sign:

    >>> sa.logsumexp(np.array([1.0, 2.0]), b=np.array([1.0, -1.0]), return_sign=True)
    (array(1.54132485), array(-1.))
    """
    if keepdims is not False or return_sign is not False:     # the defaults need no check
        check_bool(keepdims, "keepdims")
        check_bool(return_sign, "return_sign")
    # NumPy arrays skip the tensor test (_normalize_plain says why)
    tensor = _dispatch.plain_tensor(x) if b is None and where is None and type(x) is not np.ndarray else None
    plain = x if tensor is None else tensor
    if b is None and where is None and not keepdims and not return_sign:
        out = _kernels.plain_rows(plain, axis, _kernels.LOGSUMEXP, 1.0, threads_for_call())
        if out is not None:
            return out if tensor is None else _dispatch.as_tensor(out)
    half = _dispatch.half_rows(x, axis, reduces=True) if b is None and where is None and not return_sign else None
    if half is not None:
        rows, kind, out, out_rows = half
        _kernels.rows_half(rows, out_rows, _kernels.LOGSUMEXP, 1.0, kind, threads_for_call())
        return out.reshape(tuple(x.shape[:-1]) + (1,) * keepdims)
    rows = _dispatch.plain_rows(plain, axis) if b is None and where is None else None
    if rows is not None:
        out = np.empty(rows.shape[0], plain.dtype)
        _kernels.rows_logsumexp(rows, out, 1.0, threads_for_call())
        out = out.reshape(plain.shape[:-1] + (1,) * keepdims)
        result = (out, _sign_of_exp_sum(np, out)) if return_sign else (out,)
        if tensor is not None:
            result = tuple(_dispatch.as_tensor(r) for r in result)
        return result if return_sign else result[0]
    xp, x, axes, mask, b = _prepare(x, axis, where, b)
    if b is None:
        out = _logsumexp(xp, x, axes, keepdims, mask)
        return (out, _sign_of_exp_sum(xp, out)) if return_sign else out
    out, sign = _signed_logsumexp(xp, x, b, axes, keepdims, mask)
    if return_sign:
        return out, sign
    return xp.where(sign < 0, xp.asarray(math.nan, dtype=out.dtype, device=array_api_compat.device(out)), out)


def _logsumexp(xp, x, axes, keepdims, mask):
    """The unweighted log-sum-exp on whichever path runs x."""
    a = _dispatch.as_compiled_input(x)
    if a is None:
        return _portable.logsumexp(xp, x, axes, keepdims, mask)
    out = _logsumexp_compiled(a, axes, keepdims, None if mask is None else np.asarray(mask))
    return _dispatch.to_caller(xp, out, x)


def _with_weights(xp, x, x_array, b):
    """x and b as arrays of one floating dtype and one shape: promoted as
    SciPy promotes them (a Python scalar x or b is weak) and broadcast.
    x_array is x as an array of xp."""
    check_real_numeric(xp, x_array)
    b_array = _dispatch.companion_array(xp, x_array, b, "b")
    if not isdtype(xp, b_array.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"b must have a real numeric dtype, got {b_array.dtype}")
    dtype = floating_result_type(xp, x if is_python_scalar(x) else x_array,
                                 b if is_python_scalar(b) else b_array)
    try:
        x, b = xp.broadcast_arrays(x_array, b_array)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"b of shape {tuple(b_array.shape)} does not broadcast with x's shape "
                         f"{tuple(x_array.shape)}") from exc
    return xp.astype(x, dtype, copy=False), xp.astype(b, dtype, copy=False)


def _sign_of_exp_sum(xp, out):
    """Sign of a sum of exponentials from its log: 0 for an empty sum, NaN
    for NaN, else +1."""
    return xp.where(out == -math.inf, xp.zeros_like(out), xp.where(xp.isnan(out), out, xp.ones_like(out)))


def _signed_logsumexp(xp, x, b, axes, keepdims, mask):
    """(log|sum(b exp(x))|, sign) from two unweighted log-sum-exps, one over
    the positive terms and one over the negative ones."""
    zero = b == 0
    negative = b < 0
    positive = ~negative & ~zero  # a NaN weight counts here, so it propagates
    # 0 * exp(+inf) and 0 * exp(NaN) are NaN. Like SciPy, leave such terms
    # out when the rest of the sum is finite, and let them make a sum that is
    # not finite NaN (SciPy's direct formula).
    poison = zero & ~(x < math.inf)
    if mask is not None:
        negative, positive, poison = negative & mask, positive & mask, poison & mask
    with np.errstate(invalid="ignore"):  # -inf + log(inf) is NaN, as inf * exp(-inf)
        y = x + xp.log(xp.where(zero, xp.ones_like(b), xp.abs(b)))
    out = _logsumexp(xp, y, axes, keepdims, positive)
    if possibly_any(xp, negative):
        out, sign = _log_difference(xp, out, _logsumexp(xp, y, axes, keepdims, negative))
    else:
        sign = _sign_of_exp_sum(xp, out)
    if possibly_any(xp, poison):
        poisoned = xp.any(poison, axis=axes, keepdims=keepdims) & ~xp.isfinite(out)
        nan = xp.full_like(out, math.nan)
        out, sign = xp.where(poisoned, nan, out), xp.where(poisoned, nan, sign)
    return out, sign


def _log_difference(xp, pos, neg):
    """log|exp(pos) - exp(neg)| and its sign, with the larger term factored
    out: hi + log1p(-exp(lo - hi))."""
    hi, lo = xp.maximum(pos, neg), xp.minimum(pos, neg)
    equal = pos == neg  # cancels exactly; both +inf is inf - inf, NaN
    gap = xp.where(equal, xp.full_like(hi, -math.inf), lo - xp.where(equal, xp.zeros_like(hi), hi))
    with np.errstate(divide="ignore"):  # exp(gap) rounds to 1: the difference is lost, -inf
        out = hi + xp.log1p(-xp.exp(gap))
    out = xp.where(equal, xp.where(pos == math.inf, xp.full_like(hi, math.nan),
                                   xp.full_like(hi, -math.inf)), out)
    one = xp.ones_like(out)
    sign = xp.where(pos > neg, one, xp.where(neg > pos, -one, xp.zeros_like(out)))
    return out, xp.where(xp.isnan(out), out, sign)


def _logsumexp_compiled(a, axes, keepdims, mask):
    if mask is not None:
        a = _minus_inf_outside(mask, a)
    layout = ReductionLayout(a, axes)
    dtype = layout.view.dtype
    n_threads = threads_for_call()
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

