"""Training steps, forward and backward, beside the frameworks' own.

PyTorch: softarray's functions on CPU tensors that require grad (the
autograd adapter: compiled forward, declared gradient backward) beside
torch.nn.functional, forward then ``backward()``. JAX:
``jax.jit(jax.value_and_grad(...))`` of softarray's function beside the
same loss written with ``jax.nn``. ``asv_bench/compare_autograd.py`` and
``asv_bench/compare_jax.py`` print the side-by-side tables.
"""
import contextlib

import numpy as np

import softarray as sa

from ._common import THREADS, limit_threads, sized

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
try:
    import jax
except ImportError:
    jax = None

ROWS, CLASSES = sized((16384, 1000), (64, 100))
LCE_N, LCE_D, LCE_V = sized((4096, 512, 32768), (64, 32, 256))


def training_step(loss_fn, *leaves):
    """A callable that clears the leaves' gradients, then runs the loss
    forward and backward."""
    def run():
        for leaf in leaves:
            leaf.grad = None
        loss_fn(*leaves).backward()
    return run


def _torch_cases(library):
    """case name -> the step of ``library`` ("softarray" or "torch")."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((ROWS, CLASSES), dtype=np.float32)).requires_grad_()
    y = torch.from_numpy(rng.integers(0, CLASSES, ROWS))
    emb = torch.from_numpy(rng.standard_normal((LCE_N, LCE_D), dtype=np.float32)).requires_grad_()
    cls = torch.from_numpy(rng.standard_normal((LCE_V, LCE_D), dtype=np.float32) * 0.05).requires_grad_()
    t = torch.from_numpy(rng.integers(0, LCE_V, LCE_N))
    if library == "softarray":
        return {"cross_entropy": training_step(lambda v: sa.cross_entropy(v, y), x),
                "softmax_square_sum": training_step(lambda v: sa.softmax(v).square().sum(), x),
                "linear_cross_entropy": training_step(lambda e, c: sa.linear_cross_entropy(e, c, t), emb, cls)}
    return {"cross_entropy": training_step(lambda v: F.cross_entropy(v, y), x),
            "softmax_square_sum": training_step(lambda v: torch.softmax(v, -1).square().sum(), x),
            "linear_cross_entropy": training_step(lambda e, c: F.cross_entropy(e @ c.T, t), emb, cls)}


class TorchTrainingStep:
    params = [["softarray", "torch"], ["cross_entropy", "softmax_square_sum", "linear_cross_entropy"],
              THREADS]
    param_names = ["library", "case", "threads"]
    timeout = 300

    def setup(self, library, case, threads):
        self._limits = contextlib.ExitStack()
        if torch is None:
            raise NotImplementedError("torch is not installed")
        self.run = _torch_cases(library)[case]
        self._limits.enter_context(limit_threads(threads))
        self.run()

    def teardown(self, *params):
        self._limits.close()

    def time_forward_backward(self, *params):
        self.run()


def jax_cross_entropy(z, y):
    """The mean cross-entropy of class indices written with jax.nn."""
    log_p = jax.nn.log_softmax(z, axis=-1)
    return -jax.numpy.mean(jax.numpy.take_along_axis(log_p, y[:, None], axis=1))


class JaxTrainingStep:
    params = [["softarray", "jax"], ["cross_entropy", "softmax_square_sum"]]
    param_names = ["library", "case"]

    def setup(self, library, case):
        if jax is None:
            raise NotImplementedError("jax is not installed")
        rng = np.random.default_rng(0)
        x = jax.numpy.asarray(rng.standard_normal((ROWS, CLASSES), dtype=np.float32))
        y = jax.numpy.asarray(rng.integers(0, CLASSES, ROWS))
        softmax = sa.softmax if library == "softarray" else jax.nn.softmax
        losses = {"cross_entropy": sa.cross_entropy if library == "softarray" else jax_cross_entropy,
                  "softmax_square_sum": lambda z, _: jax.numpy.sum(softmax(z) ** 2)}
        step = jax.jit(jax.value_and_grad(losses[case]))
        self.run = lambda: jax.block_until_ready(step(x, y))
        self.run()

    def time_forward_backward(self, *params):
        self.run()
