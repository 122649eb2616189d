"""Definitions that a family's compiled path and its portable twin (and the
adapters, through the declarations) must share exactly, so they live below
both: ``softarray/_portable`` holds only the portable twins."""
import math

import array_api_compat
import numpy as np


def threshold_in_dtype(threshold, dtype, *, strict):
    """The threshold as a value t of ``dtype`` such that, for every v of that
    dtype, ``v > t`` (strict) or ``v >= t`` holds exactly when it holds for
    float64(v) against the float64 threshold (as the compiled kernels and
    torchvision compare): the threshold rounded down, or up. Comparing an
    array with a Python float would round it to nearest instead."""
    npdtype = {"float16": np.float16, "float32": np.float32}.get(str(dtype).split(".")[-1], np.float64)
    with np.errstate(over="ignore"):
        t = npdtype(threshold)
    if strict and float(t) > threshold:
        t = np.nextafter(t, npdtype(-np.inf))
    elif not strict and float(t) < threshold:
        t = np.nextafter(t, npdtype(np.inf))
    return float(t)


def expert_capacity(capacity_factor, k, n_tokens, n_experts):
    """Slots per expert: capacity_factor times an even share of the k * n_tokens
    assignments, rounded up (GShard, Switch Transformer)."""
    return math.ceil(capacity_factor * k * n_tokens / n_experts)


def capacity_slots(xp, indices, num_experts):
    """Each (token, choice)'s slot in its expert, assigned in order of
    arrival: every token's first choice before any second choice (GShard,
    Switch Transformer), tokens in order within a choice. Returns the slots
    (tokens, k) and the number of assignments per expert, both int64.

    A stable sort of the experts in priority order groups each expert's
    assignments in arrival order; an entry's slot is its position in the
    sorted order less its group's first position (found by searchsorted)."""
    n, k = indices.shape
    flat = xp.reshape(xp.permute_dims(indices, (1, 0)), (-1,))
    order = xp.argsort(flat, stable=True)
    grouped = xp.take(flat, order)
    first = xp.searchsorted(grouped, grouped, side="left")
    slot_sorted = xp.arange(n * k, dtype=xp.int64, device=array_api_compat.device(first)) - xp.astype(first, xp.int64)
    slots = xp.take(slot_sorted, xp.argsort(order))
    experts = xp.arange(num_experts, dtype=grouped.dtype, device=array_api_compat.device(grouped))
    counts = (xp.searchsorted(grouped, experts, side="right")
              - xp.searchsorted(grouped, experts, side="left"))
    return xp.permute_dims(xp.reshape(slots, (k, n)), (1, 0)), xp.astype(counts, xp.int64)
