"""Top-k and top-k gating: softarray beside torch and NumPy, in one run.

The router case of issue 4 is ``router`` (65536 tokens x 64 experts,
float32, k = 2); ``wide`` exercises the large-k path.
"""
import contextlib

import numpy as np

import softarray as sa

from ._common import THREADS, limit_threads, sized

try:
    import torch
except ImportError:
    torch = None

CASES = {
    "router": (sized((65_536, 64), (128, 64)), 2),
    "router-k8": (sized((65_536, 64), (128, 64)), 8),
    "wide": (sized((256, 20_000), (16, 2000)), 1000),
}


def _argpartition_topk(x, k):
    """NumPy's fastest route to sorted top-k: partition, then sort the k."""
    part = np.argpartition(-x, k - 1, axis=-1)[:, :k]
    vals = np.take_along_axis(x, part, axis=-1)
    order = np.argsort(-vals, axis=-1, kind="stable")
    return np.take_along_axis(vals, order, axis=-1), np.take_along_axis(part, order, axis=-1)


class TopK:
    params = [["softarray", "torch", "numpy-argpartition"], list(CASES), THREADS]
    param_names = ["library", "case", "threads"]

    def setup(self, library, case, threads):
        self._limits = contextlib.ExitStack()   # first: asv tears down after a skip too
        if library == "torch" and torch is None:
            raise NotImplementedError("torch is not installed")
        shape, k = CASES[case]
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        if library == "softarray":
            self.run = lambda: sa.topk(x, k)
        elif library == "torch":
            xt = torch.from_numpy(x)
            self.run = lambda: torch.topk(xt, k)
        else:
            self.run = lambda: _argpartition_topk(x, k)
        self._limits.enter_context(limit_threads(threads))
        self.run()

    def teardown(self, *params):
        self._limits.close()

    def time_topk(self, *params):
        self.run()


def _torch_gate(logits, k):
    """The PyTorch sequence a router runs: softmax, top-k, renormalize."""
    probs = torch.softmax(logits, dim=-1)
    values, indices = torch.topk(probs, k, dim=-1)
    return values / values.sum(dim=-1, keepdim=True), indices


def _numpy_gate(logits, k):
    """NumPy's fastest route: argpartition the logits, softmax over the k."""
    part = np.argpartition(-logits, k - 1, axis=-1)[:, :k]
    chosen = np.take_along_axis(logits, part, axis=-1)
    order = np.argsort(-chosen, axis=-1, kind="stable")
    chosen = np.take_along_axis(chosen, order, axis=-1)
    weights = np.exp(chosen - chosen[:, :1])
    return weights / weights.sum(axis=-1, keepdims=True), np.take_along_axis(part, order, axis=-1)


class TopKGating:
    """Issue 4's router case: 65536 tokens, 64 experts, float32, k = 2."""
    params = [["softarray", "torch", "numpy-argpartition"], [2, 8], THREADS]
    param_names = ["library", "k", "threads"]

    def setup(self, library, k, threads):
        self._limits = contextlib.ExitStack()
        if library == "torch" and torch is None:
            raise NotImplementedError("torch is not installed")
        x = np.random.default_rng(0).standard_normal((65_536, 64), dtype=np.float32)
        if library == "softarray":
            self.run = lambda: sa.topk_gating(x, k)
        elif library == "torch":
            xt = torch.from_numpy(x)
            self.run = lambda: _torch_gate(xt, k)
        else:
            self.run = lambda: _numpy_gate(x, k)
        self._limits.enter_context(limit_threads(threads))
        self.run()

    def teardown(self, *params):
        self._limits.close()

    def time_topk_gating(self, *params):
        self.run()


def torch_sample(logits, generator, temperature=0.8, top_k=None, top_p=None, min_p=None):
    """One token per row the way a PyTorch decoding loop draws it
    (temperature, topk or a full sort, softmax, a cumulative sum for top-p,
    multinomial; Hugging Face's order of filters)."""
    z = logits / temperature
    values, indices = torch.topk(z, top_k) if top_k else torch.sort(z, descending=True)
    probs = torch.softmax(values, dim=-1)
    if top_p is not None:
        before = torch.cumsum(probs, dim=-1) - probs
        probs = probs.masked_fill(before >= top_p, 0.0)
    if min_p is not None:
        probs = probs.masked_fill(probs < min_p * probs[:, :1], 0.0)
    choice = torch.multinomial(probs, 1, generator=generator)
    return indices.gather(1, choice)[:, 0]


SAMPLE_FILTERS = {"top_k=50": {"top_k": 50}, "top_p=0.9": {"top_p": 0.9},
                  "top_k=50,top_p=0.9": {"top_k": 50, "top_p": 0.9}}


class Sample:
    """sample at a language model's vocabulary (8 x 128000, one decoding
    step of a batch of 8) beside the same steps composed in torch."""
    params = [["softarray", "torch"], list(SAMPLE_FILTERS), THREADS]
    param_names = ["library", "filters", "threads"]

    def setup(self, library, filters, threads):
        self._limits = contextlib.ExitStack()
        if library == "torch" and torch is None:
            raise NotImplementedError("torch is not installed")
        x = np.random.default_rng(0).standard_normal(sized((8, 128_000), (2, 2000)), dtype=np.float32) * 3
        options = SAMPLE_FILTERS[filters]
        if library == "softarray":
            rng = np.random.default_rng(0)
            self.run = lambda: sa.sample(x, temperature=0.8, rng=rng, **options)
        else:
            xt, generator = torch.from_numpy(x), torch.Generator().manual_seed(0)
            self.run = lambda: torch_sample(xt, generator, **options)
        self._limits.enter_context(limit_threads(threads))
        self.run()

    def teardown(self, *params):
        self._limits.close()

    def time_sample(self, *params):
        self.run()
