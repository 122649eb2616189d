"""Softmax family: softarray beside scipy.special and torch.

Every peer is timed in the same run on the same input, so the ratios in one
``asv run`` (or ``asv show``) compare libraries on one machine state rather
than across runs.
"""
import contextlib

import numpy as np
import scipy.special
import softarray as sa

from ._common import THREADS, limit_threads, sized

try:
    import torch
except ImportError:
    torch = None

SIZES = {
    "tiny": (8, 10),
    "small-rows": sized((100_000, 10), (100, 10)),
    "in-cache": sized((1000, 1000), (50, 100)),
    "out-of-cache": sized((4096, 4096), (64, 128)),
}
PEERS = ["softarray", "scipy", "torch"]
COMMON_PARAMS = [list(SIZES), ["float32", "float64"], [-1, 0], THREADS]
COMMON_NAMES = ["size", "dtype", "axis", "threads"]


def _module(library):
    return {"softarray": sa, "scipy": scipy.special, "torch": torch}[library]


class _SoftmaxFamily:
    """Times ``function`` of each library over sizes, dtypes, axes, threads."""

    function = None  # set by each subclass; a name all its libraries share
    params = [PEERS] + COMMON_PARAMS
    param_names = ["library"] + COMMON_NAMES

    def setup(self, library, size, dtype, axis, threads):
        # Created first: asv calls teardown even after a skip.
        self._limits = contextlib.ExitStack()
        if library == "torch" and torch is None:
            raise NotImplementedError("torch is not installed")
        # The 4096x4096 case costs most of the suite's time; one layout of it
        # is enough to track the memory-bound regime.
        if size == "out-of-cache" and (dtype, axis) != ("float32", -1):
            raise NotImplementedError("out-of-cache runs float32, axis -1 only")
        rng = np.random.default_rng(0)
        x = rng.standard_normal(SIZES[size], dtype=dtype)
        self.x = torch.from_numpy(x) if library == "torch" else x
        self.fn = getattr(_module(library), self.function)
        self.axis = axis
        self._limits.enter_context(limit_threads(threads))
        # The first call pays one-off costs (lazy imports, thread-pool
        # start-up); quick mode times a single call, so take them here.
        self.fn(self.x, self.axis)

    def teardown(self, *params):
        self._limits.close()


class Softmax(_SoftmaxFamily):
    function = "softmax"

    def time_softmax(self, *params):
        self.fn(self.x, self.axis)


class LogSoftmax(_SoftmaxFamily):
    function = "log_softmax"

    def time_log_softmax(self, *params):
        self.fn(self.x, self.axis)


class Logsumexp(_SoftmaxFamily):
    function = "logsumexp"

    def time_logsumexp(self, *params):
        self.fn(self.x, self.axis)


class Stablemax(_SoftmaxFamily):
    # No peer library implements stablemax.
    function = "stablemax"
    params = [["softarray"]] + COMMON_PARAMS

    def time_stablemax(self, *params):
        self.fn(self.x, self.axis)


class LogStablemax(_SoftmaxFamily):
    function = "log_stablemax"
    params = [["softarray"]] + COMMON_PARAMS

    def time_log_stablemax(self, *params):
        self.fn(self.x, self.axis)
