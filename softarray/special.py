"""Drop-in replacements for ``scipy.special.softmax``, ``log_softmax`` and
``logsumexp``, with SciPy's signatures and defaults.

``from softarray.special import softmax`` in place of ``from scipy.special
import softmax`` keeps a SciPy user's code and results: ``axis=None`` by
default (the whole array), ``logsumexp(a, axis, b, keepdims, return_sign)``
positionally, a NumPy scalar, not a 0-d array, for a full reduction of a
NumPy input, and SciPy's result dtype on every library, integer and boolean
inputs included (docs/scipy.md, "Dtypes"). The computation is softarray's:
compiled kernels for NumPy arrays and CPU tensors, the portable path for
other array-API arrays.

The functions in the main namespace (``softarray.softmax``, ...) reduce the
last axis by default instead, as PyTorch and the other softarray functions
do; docs/scipy.md lists every remaining difference from SciPy.
"""
import array_api_compat
import numpy as np

from . import _dispatch, _softmax
from ._validate import floating_result_type, is_python_scalar

__all__ = ["softmax", "log_softmax", "logsumexp"]


def _scipy_result(out):
    """A 0-d NumPy result becomes a NumPy scalar, as SciPy returns."""
    return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out


def _as_scipy_floating(x):
    """x as an array of the floating dtype SciPy's softmax and log_softmax
    return for it: the dtype of ``xp.exp`` of x's dtype, since SciPy
    computes ``exp(x - max(x))`` on x as it is (NumPy: float16 for int8 and
    uint8, float32 for int16, float64 for wider integers; PyTorch: its
    default floating dtype; JAX: what ``jax.numpy.exp`` gives). Where
    SciPy refuses x (booleans, which it subtracts; integers on
    array-api-strict, whose ``exp`` takes floats only), the dtype that
    SciPy's logsumexp gives x. Other dtypes are left to the main
    namespace's checks."""
    xp, x = _dispatch.namespace_of(x)
    if xp.isdtype(x.dtype, "integral"):
        try:
            dtype = xp.exp(xp.empty((0,), dtype=x.dtype, device=array_api_compat.device(x))).dtype
        except TypeError:
            dtype = floating_result_type(xp, x)
    elif xp.isdtype(x.dtype, "bool"):
        dtype = floating_result_type(xp, x)
    else:
        return x
    return xp.astype(x, dtype)


def _at_least_one_dimension(a, b):
    """(a, b) where the two broadcast to at least one dimension: SciPy sums
    a 0-d input as one of shape (1,). A Python scalar a beside an array b
    stays a Python scalar (b gets the dimension), so that it promotes
    weakly, as in SciPy."""
    if b is not None and is_python_scalar(a) and not is_python_scalar(b):
        xp, b = _dispatch.namespace_of(b, "b")
        return a, (xp.reshape(b, (1,)) if b.ndim == 0 else b)
    xp, a = _dispatch.namespace_of(a, "a")
    return (xp.reshape(a, (1,)) if a.ndim == 0 else a), b


def softmax(x, axis=None):
    """Softmax with ``scipy.special.softmax``'s signature: the whole array by
    default.

    Parameters
    ----------
    x : array_like
        Input array (any array-API array, or anything ``numpy.asarray``
        accepts).
    axis : int, tuple of ints or None, default None
        Axes over which to normalize; None normalizes over all elements.

    Returns
    -------
    array
        ``exp(x) / sum(exp(x, axis))``, of ``x``'s array type; a floating
        ``x``'s dtype, or for an integer ``x`` the dtype of ``exp`` of it,
        as in SciPy.

    See Also
    --------
    softarray.softmax : The same with ``temperature`` and ``where``,
        reducing the last axis by default.

    Examples
    --------
    >>> import numpy as np
    >>> from softarray.special import softmax
    >>> m = softmax(np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> float(m.sum())
    1.0
    >>> softmax(np.array([[1.0, 2.0], [3.0, 4.0]]), axis=1)
    array([[0.26894142, 0.73105858],
           [0.26894142, 0.73105858]])
    """
    return _scipy_result(_softmax.softmax(_as_scipy_floating(x), axis=axis))


def log_softmax(x, axis=None):
    """Log-softmax with ``scipy.special.log_softmax``'s signature: the whole
    array by default.

    Parameters
    ----------
    x : array_like
        Input array (any array-API array, or anything ``numpy.asarray``
        accepts).
    axis : int, tuple of ints or None, default None
        Axes over which to normalize; None normalizes over all elements.

    Returns
    -------
    array
        ``x - logsumexp(x, axis)``, of ``x``'s array type and the dtype
        :func:`softmax` gives, accurate where one entry dominates.

    See Also
    --------
    softarray.log_softmax : The same with ``temperature`` and ``where``,
        reducing the last axis by default.

    Examples
    --------
    >>> import numpy as np
    >>> from softarray.special import log_softmax
    >>> log_softmax(np.array([1000.0, 1.0]))
    array([   0., -999.])
    """
    return _scipy_result(_softmax.log_softmax(_as_scipy_floating(x), axis=axis))


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """Log-sum-exp with ``scipy.special.logsumexp``'s signature: the whole
    array by default.

    Parameters
    ----------
    a : array_like
        Input array (any array-API array, or anything ``numpy.asarray``
        accepts).
    axis : int, tuple of ints or None, default None
        Axes over which to sum; None sums all elements.
    b : array_like, optional
        Weights of ``exp(a)``, broadcast with ``a``; negative weights
        subtract, zero weights leave their entry out.
    keepdims : bool, default False
        Keep the reduced axes with length one.
    return_sign : bool, default False
        Also return the sign of the sum (the result is then the log of its
        magnitude); without it a negative sum gives NaN.

    Returns
    -------
    res : array or scalar
        ``log(sum(b * exp(a)))``, in the floating dtype SciPy promotes
        ``a`` and ``b`` to; a NumPy scalar when a NumPy input is reduced to
        0 dimensions.
    sgn : array or scalar
        Only with ``return_sign``: +1, 0 or -1.

    See Also
    --------
    softarray.logsumexp : The same with ``where``, reducing the last axis by
        default.

    Examples
    --------
    >>> import numpy as np
    >>> from softarray.special import logsumexp
    >>> float(logsumexp(np.arange(10)))
    9.45862974442671
    >>> res, sgn = logsumexp([1, 2], b=[1, -1], return_sign=True)
    >>> float(res), float(sgn)
    (1.5413248546129181, -1.0)
    """
    a, b = _at_least_one_dimension(a, b)
    out = _softmax.logsumexp(a, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)
    if return_sign:
        return _scipy_result(out[0]), _scipy_result(out[1])
    return _scipy_result(out)
