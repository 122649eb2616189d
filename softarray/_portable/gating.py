"""Gating with array-API calls only: the portable half of the gating family
(top-k, the top-k gate of mixture-of-experts routers). Capacity slots,
shared with the compiled path, are in ``softarray._conventions``.

``x`` arrives validated: a real (floating, integer or bool) array, ``axis`` a
non-negative int below ``x.ndim``, ``k`` an int with 0 <= k <= x.shape[axis].

The order is the compiled kernel's: NaN above every number (+inf included),
-0.0 equal to 0.0, and ties broken by the lower index first. Stable sorts
give it: a stable descending sort keeps equal keys in index order just as an
ascending one does.
"""
from array_api_compat import device


def topk(xp, x, k, *, axis, largest, sorted):
    """softarray.topk: (values, int64 indices), axis of length k.

    sorted=False returns the same (value, index) pairs as sorted=True; this
    implementation simply returns them in sorted order."""
    order = _order(xp, x, axis, descending=largest)
    first_k = (slice(None),) * axis + (slice(0, k), ...)
    indices = order[first_k]
    index_dtype = _index_dtype(xp)
    if indices.dtype != index_dtype:
        indices = xp.astype(indices, index_dtype)
    return _take_along(xp, x, indices, axis), indices


def _index_dtype(xp):
    """int64, or the namespace's indexing dtype where it has no int64 (JAX
    without ``jax_enable_x64``, whose int64 requests warn and give int32)."""
    indexing = xp.__array_namespace_info__().default_dtypes()["indexing"]
    return indexing if xp.iinfo(indexing).bits < 64 else xp.int64


def _order(xp, x, axis, descending):
    """The permutation along axis that sorts x by (value with NaN largest,
    index)."""
    if xp.isdtype(x.dtype, "bool"):
        return xp.argsort(xp.astype(x, xp.uint8), axis=axis, descending=descending, stable=True)
    if not xp.isdtype(x.dtype, "real floating"):
        return xp.argsort(x, axis=axis, descending=descending, stable=True)
    nan = xp.isnan(x)
    # First by value, NaN standing in as +inf and -0.0 as 0.0 (so no sort's
    # own NaN or signed-zero conventions matter) ...
    key = xp.where(nan | (x == 0), xp.zeros_like(x), x)
    key = xp.where(nan, xp.full_like(x, float("inf")), key)
    by_value = xp.argsort(key, axis=axis, descending=descending, stable=True)
    # ... then, stably, NaN after +inf: first when descending, last otherwise.
    nan_sorted = xp.astype(_take_along(xp, nan, by_value, axis), xp.uint8)
    by_nan = xp.argsort(nan_sorted, axis=axis, descending=descending, stable=True)
    return _take_along(xp, by_value, by_nan, axis)


def _take_along(xp, a, indices, axis):
    """take_along_axis, or its equivalent on a flattened copy for namespaces
    older than the 2024.12 standard."""
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(a, indices, axis=axis)
    a_last = xp.moveaxis(a, axis, -1)
    i_last = xp.moveaxis(indices, axis, -1)
    n, k = a_last.shape[-1], i_last.shape[-1]
    rows = 1
    for size in i_last.shape[:-1]:
        rows *= size
    start = xp.arange(rows, dtype=i_last.dtype, device=device(i_last)) * n
    flat = xp.reshape(i_last, (rows, k)) + xp.reshape(start, (rows, 1))
    out = xp.take(xp.reshape(a_last, (-1,)), xp.reshape(flat, (-1,)))
    return xp.moveaxis(xp.reshape(out, i_last.shape), -1, axis)


def gate(xp, z, k, *, inv_temperature, over_selected, with_probs):
    """The top-k gate of router logits z (tokens, experts), no NaN: weights
    and int64 experts (tokens, k), and every expert's summed softmax
    probability (or None). See softarray.topk_gating."""
    values, indices = topk(xp, z, k, axis=1, largest=True, sorted=True)
    top = values[:, :1]
    selected = xp.exp((values - top) * inv_temperature)
    if over_selected:
        weights = selected / xp.sum(selected, axis=1, keepdims=True)
    else:
        total = xp.sum(xp.exp((z - top) * inv_temperature), axis=1, keepdims=True)
        weights = selected / total
    prob_sum = None
    if with_probs:
        e = xp.exp((z - top) * inv_temperature)
        prob_sum = xp.sum(e / xp.sum(e, axis=1, keepdims=True), axis=0)
    return weights, indices, prob_sum


def sample(xp, z, u, temperature, top_k, top_p, min_p):
    """softarray.sample on validated logits (..., n) for the row uniforms u
    (NumPy, one per row in row order): the same filters, and the same
    inversion over the survivors in vocabulary order, as the compiled path,
    with a full sort of each row."""
    n = z.shape[-1]
    rows = xp.reshape(z, (-1, n))
    order = xp.argsort(rows, axis=1, descending=True, stable=True)
    ordered = xp.take_along_axis(rows, order, axis=1)
    if _has_float64(xp):    # the compiled path's weights, to the bit where exp agrees
        ordered = xp.astype(ordered, xp.float64)
    weights = xp.exp((ordered - ordered[:, :1]) / temperature)   # relative to the largest
    rank = xp.arange(n, device=device(z))
    keep = weights > 0
    if top_k is not None:
        keep = keep & (rank < top_k)
    if top_p is not None:
        kept = xp.where(keep, weights, xp.zeros_like(weights))
        running = xp.cumulative_sum(kept, axis=1)
        keep = keep & (running - kept < top_p * running[:, -1:])
    if min_p is not None:
        keep = keep & (weights >= min_p)
    # Back to vocabulary order (the inverse permutation of the sort).
    back = xp.argsort(order, axis=1)
    kept = xp.take_along_axis(xp.where(keep, weights, xp.zeros_like(weights)), back, axis=1)
    running = xp.cumulative_sum(kept, axis=1)
    total = running[:, -1:]
    # The target stays below the total: a zero weight is never drawn.
    target = xp.asarray(u, dtype=running.dtype, device=device(z))[:, None] * total
    target = xp.minimum(target, total * (1 - xp.finfo(running.dtype).eps))
    position = xp.clip(xp.count_nonzero(running <= target, axis=1), max=n - 1)
    return xp.reshape(xp.astype(position, _index_dtype(xp)), z.shape[:-1])


def _has_float64(xp):
    """Whether the namespace holds float64 (JAX without x64 does not)."""
    return "float64" in xp.__array_namespace_info__().dtypes()
