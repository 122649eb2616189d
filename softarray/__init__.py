"""softarray: fast, trusted CPU kernels for the softmax family, classification
losses, top-k gating and non-maximum suppression behind an array-API
namespace. ``import softarray as sa; sa.softmax(x)`` accepts arrays from any
array-API library and returns the caller's array type.
"""
from ._version import __version__

from ._boxes import (
    BoxShapeError,
    batched_nms,
    batched_soft_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    complete_box_iou,
    complete_box_iou_loss,
    distance_box_iou,
    distance_box_iou_loss,
    generalized_box_iou,
    generalized_box_iou_loss,
    nms,
    remove_small_boxes,
    soft_nms,
)
from ._config import show_config
from ._losses import (
    binary_cross_entropy_with_logits,
    comp_sum_loss,
    cross_entropy,
    focal_loss,
    generalized_cross_entropy,
    kl_div,
    logsumexp_penalty,
    mae_loss,
    multi_margin_loss,
    nll_loss,
    sigmoid_focal_loss,
    z_loss,
)
from ._gating import (
    TopKGating,
    dense_to_sparse_gating,
    gumbel_softmax,
    gumbel_topk,
    sample,
    topk,
    topk_gating,
)
from ._linear_cross_entropy import linear_cross_entropy
from ._softmax import log_softmax, log_stablemax, logsumexp, softmax, stablemax
from ._output_cache import set_output_cache
from ._threads import get_num_threads, set_num_threads, threads
# The adapters register their routes at import (softarray._declare).
from ._adapters import dask as _dask_adapter  # noqa: F401
from ._adapters import torch_autograd as _autograd_adapter  # noqa: F401
from ._adapters import jax as _jax_adapter  # noqa: F401
from . import special  # noqa: F401 (softarray.special: SciPy's signatures and defaults: softarray.special.softmax(x)

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "stablemax",
    "log_stablemax",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "z_loss",
    "logsumexp_penalty",
    "multi_margin_loss",
    "focal_loss",
    "sigmoid_focal_loss",
    "comp_sum_loss",
    "generalized_cross_entropy",
    "mae_loss",
    "linear_cross_entropy",
    "topk",
    "topk_gating",
    "TopKGating",
    "dense_to_sparse_gating",
    "gumbel_softmax",
    "gumbel_topk",
    "sample",
    "box_convert",
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "distance_box_iou",
    "complete_box_iou",
    "generalized_box_iou_loss",
    "distance_box_iou_loss",
    "complete_box_iou_loss",
    "nms",
    "batched_nms",
    "soft_nms",
    "batched_soft_nms",
    "clip_boxes_to_image",
    "remove_small_boxes",
    "BoxShapeError",
    "show_config",
    "get_num_threads",
    "set_num_threads",
    "threads",
    "set_output_cache",
]
