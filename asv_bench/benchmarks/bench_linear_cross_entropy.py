"""Fused linear cross-entropy beside "logits = E @ W.T, then cross-entropy".

Every variant is timed (and its extra peak memory tracked) in the same run
on the same input, forward only and forward + backward. The variants are
also what ``asv_bench/compare_linear_cross_entropy.py`` runs side by side at
the issue's size:

* softarray: ``sa.linear_cross_entropy(E, W, y[, return_grad=True])``;
* numpy: ``z = E @ W.T``, then a cross-entropy written with in-place NumPy
  operations (one N x V buffer in all), and for the backward its gradient G
  in place of z, then ``G @ W`` and ``G.T @ E``;
* torch-ce: ``z = E @ W.T`` in NumPy, then
  ``torch.nn.functional.cross_entropy`` on it (``backward()`` for G), then
  the same two NumPy products.
"""
import contextlib
import gc
import re
import tracemalloc

import numpy as np

import softarray as sa

from ._common import THREADS, limit_threads, sized

try:
    import torch
except ImportError:
    torch = None

MIB = 2**20
# Small enough for asv's repeats (about 0.1 s per forward at one thread);
# the compare script runs the N=8192, D=512, V=65536.
SIZE = sized((1024, 256, 16384), (64, 32, 512))
MODES = ["forward", "forward+backward"]


def problem(n, d, v, dtype="float32", seed=0):
    """E (n, d), W (v, d) scaled so the logits are of order 1, targets y."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, d), dtype=dtype)
    cls = rng.standard_normal((v, d), dtype=dtype)
    cls /= np.sqrt(d)
    return emb, cls, rng.integers(0, v, n)


# ------------------------------------------------------------- variants
# Each returns (loss, gradients); the forward-only ones return no gradients.

def softarray_forward(emb, cls, y):
    return sa.linear_cross_entropy(emb, cls, y), ()


def softarray_forward_backward(emb, cls, y):
    return sa.linear_cross_entropy(emb, cls, y, return_grad=True)


def _numpy_cross_entropy(z, y, want_grad):
    """Mean cross-entropy of logits z, which is overwritten: it ends as
    exp(z - max), or as the gradient with want_grad."""
    rows = np.arange(len(y))
    z -= z.max(axis=1, keepdims=True)
    z_target = z[rows, y]
    np.exp(z, out=z)
    sums = z.sum(axis=1)
    loss = np.mean(np.log(sums) - z_target)
    if want_grad:
        z /= sums[:, None]
        z[rows, y] -= 1
        z *= 1 / len(y)
    return loss


def numpy_forward(emb, cls, y):
    return _numpy_cross_entropy(emb @ cls.T, y, want_grad=False), ()


def numpy_forward_backward(emb, cls, y):
    g = emb @ cls.T
    loss = _numpy_cross_entropy(g, y, want_grad=True)
    return loss, (g @ cls, g.T @ emb)


def torch_ce_forward(emb, cls, y):
    z = torch.from_numpy(emb @ cls.T)
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(z, torch.from_numpy(y)), ()


def torch_ce_forward_backward(emb, cls, y):
    z = torch.from_numpy(emb @ cls.T).requires_grad_()
    loss = torch.nn.functional.cross_entropy(z, torch.from_numpy(y))
    loss.backward()
    g = z.grad.numpy()
    return loss.detach(), (g @ cls, g.T @ emb)


VARIANTS = {
    "softarray": dict(zip(MODES, (softarray_forward, softarray_forward_backward))),
    "numpy": dict(zip(MODES, (numpy_forward, numpy_forward_backward))),
    "torch-ce": dict(zip(MODES, (torch_ce_forward, torch_ce_forward_backward))),
}


# ---------------------------------------------------------- memory

def _status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def _reset_rss_peak():
    """Start a new resident-set high-water mark; False where Linux's
    /proc/self/clear_refs is not available."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def extra_peak_mib(fn, args):
    """(loss, tracemalloc MiB, RSS MiB) of one call: the most memory held
    during it beyond what was held before, less the returned gradients'
    bytes. tracemalloc sees NumPy's allocations but not torch's; the
    resident set's high-water mark sees everything (None where it cannot be
    reset)."""
    gc.collect()
    rss_before = _status_kib("VmRSS")
    has_rss = _reset_rss_peak()
    tracemalloc.start()
    try:
        loss, grads = fn(*args)
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_peak = _status_kib("VmHWM") if has_rss else None
    returned = sum(g.nbytes for g in grads)
    traced = (traced_peak - returned) / MIB
    rss = None if rss_peak is None else ((rss_peak - rss_before) * 1024 - returned) / MIB
    return float(loss), traced, rss


# -------------------------------------------------------------- asv

class LinearCrossEntropy:
    """Time and extra peak memory of each variant at SIZE."""

    params = [list(VARIANTS), MODES, THREADS]
    param_names = ["library", "mode", "threads"]
    timeout = 300

    def setup(self, library, mode, threads):
        # Created first: asv calls teardown even after a skip.
        self._limits = contextlib.ExitStack()
        if library == "torch-ce" and torch is None:
            raise NotImplementedError("torch is not installed")
        self.args = problem(*SIZE)
        self.fn = VARIANTS[library][mode]
        self._limits.enter_context(limit_threads(threads))
        # The first call pays one-off costs (thread start-up, BLAS buffers).
        self.fn(*self.args)

    def teardown(self, *params):
        self._limits.close()

    def time_call(self, *params):
        self.fn(*self.args)

    def track_extra_peak_memory(self, *params):
        _, traced, rss = extra_peak_mib(self.fn, self.args)
        return max(traced, rss or 0.0)

    track_extra_peak_memory.unit = "MiB"
