"""The reductions of per-sample losses, shared by the loss families and the
adapters that combine partial sums of blocks (so a Dask mean is the NumPy
mean): one place for the conventions of an empty mean."""
import math

import numpy as np

from ._lib._losses import total


def reduce_losses(per_item, reduction, denominator, shape, dtype):
    """Apply ``reduction`` to float64 per-sample (or per-row) losses: "none"
    gives them in ``shape``; "mean" divides the sum by ``denominator`` (NaN
    when it is 0, as torch's mean of no samples)."""
    if reduction == "none":
        return per_item.reshape(shape).astype(dtype)
    summed = total(per_item)
    if reduction == "sum":
        return np.asarray(summed, dtype)
    return np.asarray(summed / denominator if denominator != 0 else math.nan, dtype)


def grad_scale(reduction, denominator, *, when_empty=math.nan):
    """d loss / d (one sample's loss): 1 for "none" and "sum", 1 /
    denominator for a mean ("mean", kl_div's "batchmean"), and ``when_empty`` for a mean over nothing (the
    losses' gradient is then NaN, as torch's; linear_cross_entropy's is 0,
    as torch's for a linear layer whose every row is ignored)."""
    if reduction in ("none", "sum"):
        return 1.0
    return 1.0 / denominator if denominator != 0 else when_empty
