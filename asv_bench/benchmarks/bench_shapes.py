"""Issue 22's grids of shapes: the softmax family and per-sample
cross-entropy over rows x row length, and top-k over rows x row length x k,
softarray beside torch (and np.argpartition, which does not sort, as a floor
for top-k), float32 and float64, at one and all threads.

asv times every combination, so these grids are coarser than
``asv_bench/compare_shapes.py --grid`` (which prints the whole grid with
ratios in a few minutes): the corners and the middle of each axis, arrays
of at most 2**24 entries. The smoke run keeps two rows, two lengths and
float32.
"""
import contextlib

import numpy as np
import softarray as sa

from ._common import SMOKE, THREADS, limit_threads

try:
    import torch
except ImportError:
    torch = None

ROWS = [1, 8] if SMOKE else [1, 64, 65536]
LENGTHS = [10, 1000] if SMOKE else [10, 4096, 128000, 1000000]
TOPK_ROWS = [1, 8] if SMOKE else [1, 64, 4096]
TOPK_LENGTHS = [64, 1000] if SMOKE else [64, 4096, 128000]
TOPK_KS = [1, 8] if SMOKE else [1, 50, 1000]
DTYPES = ["float32"] if SMOKE else ["float32", "float64"]
MAX_ENTRIES = 2**24

CALLS = {
    "softmax": (lambda x, y: sa.softmax(x), lambda t, ty: torch.softmax(t, -1)),
    "log_softmax": (lambda x, y: sa.log_softmax(x), lambda t, ty: torch.log_softmax(t, -1)),
    "logsumexp": (lambda x, y: sa.logsumexp(x, axis=-1), lambda t, ty: torch.logsumexp(t, -1)),
    "cross_entropy": (lambda x, y: sa.cross_entropy(x, y, reduction="none"),
                      lambda t, ty: torch.nn.functional.cross_entropy(t, ty, reduction="none")),
}


def _skip_unless_runnable(library, n_entries):
    if library == "torch" and torch is None:
        raise NotImplementedError("torch is not installed")
    if n_entries > MAX_ENTRIES:
        raise NotImplementedError(f"more than {MAX_ENTRIES} entries")


class SoftmaxShapes:
    params = [["softarray", "torch"], list(CALLS), ROWS, LENGTHS, DTYPES, THREADS]
    param_names = ["library", "call", "rows", "length", "dtype", "threads"]

    def setup(self, library, call, rows, length, dtype, threads):
        self._limits = contextlib.ExitStack()   # first: asv tears down after a skip too
        _skip_unless_runnable(library, rows * length)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, length)).astype(dtype)
        y = rng.integers(0, length, rows)
        ours, theirs = CALLS[call]
        if library == "softarray":
            self.run = lambda: ours(x, y)
        else:
            t, ty = torch.from_numpy(x), torch.from_numpy(y)
            self.run = lambda: theirs(t, ty)
        self._limits.enter_context(limit_threads(threads))
        self.run()

    def teardown(self, *params):
        self._limits.close()

    def time_call(self, *params):
        self.run()


class TopKShapes:
    params = [["softarray", "torch", "numpy-argpartition"], TOPK_ROWS, TOPK_LENGTHS, TOPK_KS, DTYPES,
              THREADS]
    param_names = ["library", "rows", "length", "k", "dtype", "threads"]

    def setup(self, library, rows, length, k, dtype, threads):
        self._limits = contextlib.ExitStack()
        _skip_unless_runnable(library, rows * length)
        if k >= length:
            raise NotImplementedError("k must be below the row length")
        x = np.random.default_rng(0).standard_normal((rows, length)).astype(dtype)
        if library == "softarray":
            self.run = lambda: sa.topk(x, k)
        elif library == "torch":
            t = torch.from_numpy(x)
            self.run = lambda: torch.topk(t, k)
        else:
            self.run = lambda: np.argpartition(x, -k, axis=-1)
        self._limits.enter_context(limit_threads(threads))
        self.run()

    def teardown(self, *params):
        self._limits.close()

    def time_topk(self, *params):
        self.run()
