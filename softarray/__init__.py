"""softarray: fast, trusted CPU kernels for the softmax family (and, as they
land, classification losses, top-k gating and NMS) behind an array-API
namespace. ``import softarray as sa; sa.softmax(x)`` accepts arrays from any
array-API library and returns the caller's array type.
"""
__version__ = "0.1.0"

from ._config import show_config
from ._linear_cross_entropy import linear_cross_entropy
from ._softmax import log_softmax, log_stablemax, logsumexp, softmax, stablemax
from ._threads import get_num_threads, set_num_threads, threads

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "stablemax",
    "log_stablemax",
    "linear_cross_entropy",
    "show_config",
    "get_num_threads",
    "set_num_threads",
    "threads",
]
