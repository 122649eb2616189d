"""Losses: softarray beside torch.nn.functional and scikit-learn.

Every peer is timed in the same run on the same input, forward alone and
forward plus gradient (torch: forward then ``backward()``), so the ratios
come from one machine state. The issue's target case is ``large``
(65536 x 1000, float32); scikit-learn's compiled ``HalfMultinomialLoss`` is
the peer of ``cross_entropy`` (its ``loss`` and ``loss_gradient``).
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
    from sklearn._loss.loss import HalfMultinomialLoss
    from sklearn.metrics import log_loss
except ImportError:
    HalfMultinomialLoss = log_loss = None

SIZES = {"small-classes": sized((100_000, 10), (100, 10)), "large": sized((65_536, 1000), (64, 100))}
MODES = ["forward", "forward+grad"]


def _inputs(size, dtype):
    rng = np.random.default_rng(0)
    n, c = SIZES[size]
    logits = rng.standard_normal((n, c), dtype=dtype)
    return logits, rng.integers(0, c, n)


class _Loss:
    """Times one loss of each library over sizes, dtypes, modes and threads.

    Subclasses set ``peers`` (library names) and implement ``prepare``,
    which returns the zero-argument callable to time.
    """

    peers = ["softarray", "torch"]
    dtypes = ["float32"]
    param_names = ["library", "size", "dtype", "mode", "threads"]

    def __init_subclass__(cls, **kwargs):
        # asv reads params from the class: build them from each subclass's peers.
        super().__init_subclass__(**kwargs)
        cls.params = [cls.peers, list(SIZES), cls.dtypes, MODES, THREADS]

    def setup(self, library, size, dtype, mode, threads):
        self._limits = contextlib.ExitStack()   # first: asv tears down after a skip too
        if library == "torch" and torch is None:
            raise NotImplementedError("torch is not installed")
        if library.startswith("sklearn") and HalfMultinomialLoss is None:
            raise NotImplementedError("scikit-learn is not installed")
        logits, target = _inputs(size, dtype)
        self.run = self.prepare(library, logits, target, mode == "forward+grad")
        self._limits.enter_context(limit_threads(threads))
        self.run()      # one-off costs (thread-pool start-up) outside the timing

    def teardown(self, *params):
        self._limits.close()

    def prepare(self, library, logits, target, with_grad):
        raise NotImplementedError


def _torch_call(loss_fn, logits, with_grad):
    leaf = torch.from_numpy(logits).requires_grad_(with_grad)

    def run():
        loss = loss_fn(leaf)
        if with_grad:
            leaf.grad = None
            loss.backward()
    return run


class CrossEntropy(_Loss):
    """sklearn: the compiled HalfMultinomialLoss (loss, or loss_gradient);
    sklearn_log_loss: sklearn.metrics.log_loss on the probabilities (given
    it, so its time leaves out the softmax), forward only."""
    peers = ["softarray", "torch", "sklearn", "sklearn_log_loss"]
    dtypes = ["float32", "float64"]

    def prepare(self, library, logits, target, with_grad):
        if library == "sklearn_log_loss":
            if with_grad:
                raise NotImplementedError("log_loss has no gradient")
            probs = np.asarray(sa.softmax(logits))
            labels = np.arange(logits.shape[1])
            return lambda: log_loss(target, probs, labels=labels)
        if library == "softarray":
            return lambda: sa.cross_entropy(logits, target, return_grad=with_grad)
        if library == "torch":
            t = torch.from_numpy(target)
            return _torch_call(lambda v: F.cross_entropy(v, t), logits, with_grad)
        loss = HalfMultinomialLoss(n_classes=logits.shape[1])
        y = target.astype(logits.dtype)
        fn = loss.loss_gradient if with_grad else loss.loss
        return lambda: fn(y_true=y, raw_prediction=logits, n_threads=sa.get_num_threads())

    def time_cross_entropy(self, *params):
        self.run()


class NllLoss(_Loss):
    def prepare(self, library, logits, target, with_grad):
        log_p = np.asarray(sa.log_softmax(logits))
        if library == "softarray":
            return lambda: sa.nll_loss(log_p, target, return_grad=with_grad)
        t = torch.from_numpy(target)
        return _torch_call(lambda v: F.nll_loss(v, t), log_p, with_grad)

    def time_nll_loss(self, *params):
        self.run()


class BinaryCrossEntropyWithLogits(_Loss):
    def prepare(self, library, logits, target, with_grad):
        binary = (logits > 0).astype(logits.dtype)
        if library == "softarray":
            return lambda: sa.binary_cross_entropy_with_logits(logits, binary, return_grad=with_grad)
        t = torch.from_numpy(binary)
        return _torch_call(lambda v: F.binary_cross_entropy_with_logits(v, t), logits, with_grad)

    def time_binary_cross_entropy_with_logits(self, *params):
        self.run()


class MultiMarginLoss(_Loss):
    def prepare(self, library, logits, target, with_grad):
        if library == "softarray":
            return lambda: sa.multi_margin_loss(logits, target, p=2, return_grad=with_grad)
        t = torch.from_numpy(target)
        return _torch_call(lambda v: F.multi_margin_loss(v, t, p=2), logits, with_grad)

    def time_multi_margin_loss(self, *params):
        self.run()


class KlDivFromLogits(_Loss):
    def prepare(self, library, logits, target, with_grad):
        probs = np.asarray(sa.softmax(logits[::-1].copy()))
        if library == "softarray":
            return lambda: sa.kl_div(logits, probs, from_logits=True, reduction="batchmean",
                                     return_grad=with_grad)
        t = torch.from_numpy(probs)
        return _torch_call(lambda v: F.kl_div(F.log_softmax(v, -1), t, reduction="batchmean"),
                           logits, with_grad)

    def time_kl_div(self, *params):
        self.run()


class FocalLoss(_Loss):
    # torch has no softmax focal loss; its peer is the textbook composition.
    def prepare(self, library, logits, target, with_grad):
        if library == "softarray":
            return lambda: sa.focal_loss(logits, target, return_grad=with_grad)
        t = torch.from_numpy(target)

        def focal(v):
            log_p = F.log_softmax(v, -1).gather(1, t[:, None])
            return (-(1 - log_p.exp()) ** 2 * log_p).mean()
        return _torch_call(focal, logits, with_grad)

    def time_focal_loss(self, *params):
        self.run()


class LogsumexpPenalty(_Loss):
    def prepare(self, library, logits, target, with_grad):
        if library == "softarray":
            return lambda: sa.logsumexp_penalty(logits, return_grad=with_grad)
        return _torch_call(lambda v: (torch.logsumexp(v, -1) ** 2).mean(), logits, with_grad)

    def time_logsumexp_penalty(self, *params):
        self.run()


class SoftarrayOnly(_Loss):
    """Losses without a library peer: z_loss, generalized cross-entropy."""
    peers = ["z_loss", "generalized_cross_entropy", "multi_margin_crammer_singer"]

    def prepare(self, library, logits, target, with_grad):
        if library == "multi_margin_crammer_singer":
            return lambda: sa.multi_margin_loss(logits, target, form="crammer_singer",
                                                return_grad=with_grad)
        fn = getattr(sa, library)
        return lambda: fn(logits, target, return_grad=with_grad)

    def time_loss(self, *params):
        self.run()
