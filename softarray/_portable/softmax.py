"""Softmax family with array-API calls only: the same formulas as the
compiled kernels (``src/_softmax_kernels.h``), on whole arrays.

``x`` arrives validated: real floating dtype, ``axes`` a sorted tuple,
``mask`` None or a boolean array broadcast to ``x.shape``.
"""
import math

from array_api_compat import device


def _stats(xp, y, axes, stable):
    """Per slice (keepdims): the maximum (NaN if any entry is NaN), rest =
    the sum over entries below the maximum of exp(y - max) (or s(y)), and
    count = how many entries equal the maximum."""
    m = xp.max(y, axis=axes, keepdims=True)
    has_nan = xp.any(xp.isnan(y), axis=axes, keepdims=True)
    m = xp.where(has_nan, xp.asarray(math.nan, dtype=y.dtype, device=device(y)), m)
    finite = xp.isfinite(m)
    below = y < m
    if stable:
        terms = _stable_s(xp, y)
    else:
        terms = xp.exp(y - xp.where(finite, m, xp.zeros_like(m)))
    rest = xp.sum(xp.where(below, terms, xp.zeros_like(terms)), axis=axes, keepdims=True)
    count = xp.sum(xp.astype(y == m, y.dtype), axis=axes, keepdims=True)
    # A NaN slice's result is NaN whatever count is; 1 keeps log1p(count - 1)
    # from warning about log1p(-1) in the formulas that do not select it.
    count = xp.where(has_nan, xp.ones_like(count), count)
    return m, finite, rest, count


def _stable_s(xp, y):
    one = xp.ones_like(y)
    return xp.where(y >= 0, y + one, one / (one - y))


def _log_stable_s(xp, y):
    mag = xp.log1p(xp.abs(y))
    return xp.where(y < 0, -mag, mag)


def _masked(xp, y, mask):
    return y if mask is None else xp.where(mask, y, xp.asarray(-math.inf, dtype=y.dtype, device=device(y)))


def _fill(xp, out, mask, value):
    return out if mask is None else xp.where(mask, out, xp.asarray(value, dtype=out.dtype, device=device(out)))


def _reduce_axes(axes, ndim):
    # array-API reductions treat axis=() as "no reduction", which is what we
    # mean too; None would mean every axis.
    return axes if axes or ndim else None


def normalize(xp, op, x, axes, scale, mask):
    """softmax, log_softmax, stablemax or log_stablemax of x."""
    if math.prod(x.shape) == 0:
        return xp.empty_like(x)
    y = x * scale if scale != 1.0 else x
    y = _masked(xp, y, mask)
    axes = _reduce_axes(axes, y.ndim)
    stable = op in ("stablemax", "log_stablemax")
    m, finite, rest, count = _stats(xp, y, axes, stable)
    nan = xp.asarray(math.nan, dtype=y.dtype, device=device(y))
    if op == "softmax":
        out = xp.where(finite, xp.exp(y - xp.where(finite, m, xp.zeros_like(m))) / (rest + count), nan)
        return _fill(xp, out, mask, 0.0)
    if op == "log_softmax":
        shift = xp.where(finite, m, xp.zeros_like(m))
        log_sum = xp.where(finite, xp.log1p(rest + (count - 1)), m)
        return _fill(xp, (y - shift) - log_sum, mask, -math.inf)
    if op == "stablemax":
        out = _stable_s(xp, y) / (rest + count * _stable_s(xp, m))
        return _fill(xp, out, mask, 0.0)
    sm = _stable_s(xp, m)
    share = xp.log1p(rest / sm + (count - 1))
    log_sum = xp.where(finite, xp.log(sm) + share, m)
    top = xp.where(finite, -share, nan)
    out = xp.where(y < m, _log_stable_s(xp, y) - log_sum, top)
    return _fill(xp, out, mask, -math.inf)


def logsumexp(xp, x, axes, keepdims, mask):
    """log(sum(exp(x))) over axes."""
    y = _masked(xp, x, mask)
    n = math.prod(y.shape[k] for k in axes)
    if n == 0:
        shape = tuple(1 if k in axes else s for k, s in enumerate(y.shape))
        out = xp.full(shape, -math.inf, dtype=y.dtype, device=device(y))
    else:
        m, finite, rest, count = _stats(xp, y, _reduce_axes(axes, y.ndim), stable=False)
        out = xp.where(finite, m + xp.log1p(rest + (count - 1)), m)
    if not keepdims and axes:
        out = xp.squeeze(out, axis=axes)
    return out
