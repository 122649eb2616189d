"""Top-k selection (and, as issue 4 lands, mixture-of-experts gating): the
public functions. They validate, then run the compiled kernels
(``softarray._lib._gating``) on NumPy arrays and CPU DLPack arrays, or the
portable array-API implementation (``softarray._portable.gating``)."""
import numpy as np

from . import _dispatch
from ._lib import _gating as _kernels
from ._portable import gating as _portable
from ._threads import get_num_threads
from ._validate import check_bool, check_int, normalize_axes


def topk(x, k, *, axis=-1, largest=True, sorted=True):
    r"""The ``k`` largest (or smallest) entries along ``axis``, and their indices.

    ``torch.topk`` semantics, made deterministic: entries that tie keep the
    lower index first, and NaN counts as larger than every number (as in
    PyTorch), so it comes first for ``largest=True`` and last otherwise.
    ``-0.0`` and ``0.0`` tie.

    Parameters
    ----------
    x : array
        Real array (float32 and float64 run the compiled kernel; integer
        and boolean arrays the portable path).
    k : int
        How many entries to keep, ``0 <= k <= x.shape[axis]``.
    axis : int, default -1
    largest : bool, default True
        The largest entries, in decreasing order; False: the smallest, in
        increasing order.
    sorted : bool, default True
        Return them in that order; False allows any order of the same set
        (the compiled kernel then skips the final sort for large ``k``).

    Returns
    -------
    values : array
        ``x``'s type and dtype, ``x.shape`` with ``axis`` of length ``k``.
    indices : array of int64
        Their positions along ``axis``.

    Notes
    -----
    For ``k`` up to 32 each row is read once, keeping the best ``k`` in a
    small sorted buffer; for larger ``k`` a quickselect puts the ``k`` best in
    front and only they are sorted. A non-last ``axis`` whose entries are not
    contiguous is copied once to contiguous rows.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> values, indices = sa.topk(np.array([1.0, 3.0, np.nan, 3.0, 2.0]), 3)
    >>> values
    array([nan,  3.,  3.])
    >>> indices
    array([2, 1, 3])
    """
    xp, x = _dispatch.namespace_of(x)
    if xp.isdtype(x.dtype, "complex floating"):
        raise TypeError(f"x has complex dtype {x.dtype}; topk needs a real array (complex numbers are not ordered)")
    if not xp.isdtype(x.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"x must have a real numeric dtype, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension")
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(f"axis must be an int, got {axis!r}")
    axis = normalize_axes(axis, x.ndim)[0]
    k = check_int(k, "k")
    n = x.shape[axis]
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}] (the length of axis {axis}), got {k}")
    largest = check_bool(largest, "largest")
    sorted = check_bool(sorted, "sorted")
    a = _dispatch.as_compiled_input(x)
    if a is None:
        return _portable.topk(xp, x, k, axis=axis, largest=largest, sorted=sorted)
    values, indices = _topk_compiled(a, k, axis, largest, sorted)
    return _dispatch.to_caller(xp, values, x), _dispatch.to_caller(xp, indices, x)


def _topk_compiled(a, k, axis, largest, sorted):
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    moved = np.moveaxis(a, axis, -1)
    lead, n = moved.shape[:-1], moved.shape[-1]
    values = np.empty(lead + (k,), a.dtype)
    indices = np.empty(lead + (k,), np.int64)
    if k > 0 and values.size:
        rows = moved.reshape(-1, n)             # a view when the layout allows
        if rows.strides[1] != rows.itemsize:
            rows = np.ascontiguousarray(rows)
        _kernels.topk_rows(rows, k, largest, sorted, values.reshape(-1, k), indices.reshape(-1, k),
                           get_num_threads())
    return np.moveaxis(values, -1, axis), np.moveaxis(indices, -1, axis)
