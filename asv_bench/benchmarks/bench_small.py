"""Small calls beside their peers: tiny and medium inputs of each family
(8x10 and 64x1000 logits, 10 and 1000 boxes, one sample for the
estimator), where the Python layer, not the kernel, decides the time
(docs/performance.md, "Small calls"). One case table serves the asv suite
below and the side-by-side script ``asv_bench/compare_small.py``.
"""
import contextlib

import numpy as np

import softarray as sa

from ._common import limit_threads

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
try:
    import torchvision.ops
except Exception:      # torchvision missing or not matching torch
    torchvision = None
try:
    import scipy.special
except ImportError:
    scipy = None


def _boxes(rng, n):
    xy = rng.random((n, 2), dtype=np.float32) * 100
    wh = rng.random((n, 2), dtype=np.float32) * 30 + 1
    return np.concatenate([xy, xy + wh], axis=1), rng.random(n, dtype=np.float32)


def cases(rng):
    """{name: (softarray call, {peer: call})}."""
    out = {}
    for rows, cols in ((8, 10), (64, 1000)):
        x = rng.standard_normal((rows, cols), dtype=np.float32)
        y = rng.integers(0, cols, rows)
        t = torch.from_numpy(x) if torch else None
        ty = torch.from_numpy(y) if torch else None
        shape = f"{rows}x{cols}"
        # The same name in torch and scipy.special, over the last axis.
        for name in ("softmax", "log_softmax", "logsumexp"):
            peers = {}
            if torch:
                peers["torch"] = lambda t=t, f=getattr(torch, name): f(t, -1)
            if scipy:
                peers["scipy"] = lambda x=x, f=getattr(scipy.special, name): f(x, axis=-1)
            out[f"{name} {shape}"] = (lambda x=x, f=getattr(sa, name): f(x), peers)
        out[f"cross_entropy {shape}"] = (
            lambda x=x, y=y: sa.cross_entropy(x, y),
            {"torch": lambda t=t, ty=ty: F.cross_entropy(t, ty)} if torch else {})
        out[f"topk(x, 2) {shape}"] = (
            lambda x=x: sa.topk(x, 2),
            {"torch": lambda t=t: torch.topk(t, 2)} if torch else {})
        out[f"topk_gating(x, 2) {shape}"] = (
            lambda x=x: sa.topk_gating(x, 2),
            {"torch": lambda t=t: torch.topk(torch.softmax(t, -1), 2)} if torch else {})
        if torch:
            out[f"softmax {shape} tensor"] = (lambda t=t: sa.softmax(t),
                                              {"torch": lambda t=t: torch.softmax(t, -1)})
            out[f"cross_entropy {shape} tensor"] = (
                lambda t=t, ty=ty: sa.cross_entropy(t, ty),
                {"torch": lambda t=t, ty=ty: F.cross_entropy(t, ty)})
    for n in (10, 1000):
        boxes, scores = _boxes(rng, n)
        peers = {}
        if torchvision:
            tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
            peers["torchvision"] = lambda tb=tb, ts=ts: torchvision.ops.nms(tb, ts, 0.5)
        out[f"nms {n} boxes"] = (lambda b=boxes, s=scores: sa.nms(b, s, 0.5), peers)
        peers = {}
        if torchvision:
            peers["torchvision"] = lambda tb=tb: torchvision.ops.box_iou(tb, tb)
        out[f"box_iou {n}x{n}"] = (lambda b=boxes: sa.box_iou(b, b), peers)
    out.update(_classifier_cases(rng))
    return out


def _classifier_cases(rng):
    """predict_proba / predict on one sample, against LogisticRegression."""
    try:
        from sklearn.linear_model import LogisticRegression
        from softarray.sklearn import SoftmaxClassifier
    except ImportError:
        return {}
    X = rng.standard_normal((300, 20), dtype=np.float32)
    y = rng.integers(0, 5, 300)
    ours = SoftmaxClassifier().fit(X, y)
    theirs = LogisticRegression().fit(X, y)
    one = X[:1]
    return {
        "SoftmaxClassifier.predict_proba 1x20": (
            lambda: ours.predict_proba(one), {"LogisticRegression": lambda: theirs.predict_proba(one)}),
        "SoftmaxClassifier.predict 1x20": (
            lambda: ours.predict(one), {"LogisticRegression": lambda: theirs.predict(one)}),
    }


# Built once at import: asv reads the parameters from the class.
CASES = cases(np.random.default_rng(0))
LIBRARIES = ["softarray", "torch", "scipy", "torchvision", "LogisticRegression"]


class SmallCalls:
    """One thread: a small call is too short to share between threads."""
    params = [list(CASES), LIBRARIES]
    param_names = ["case", "library"]

    def setup(self, case, library):
        self._limits = contextlib.ExitStack()   # first: asv tears down after a skip too
        ours, peers = CASES[case]
        self.run = ours if library == "softarray" else peers.get(library)
        if self.run is None:
            raise NotImplementedError(f"{library} has no call for {case} (or is not installed)")
        self._limits.enter_context(limit_threads(1))
        self.run()

    def teardown(self, *params):
        self._limits.close()

    def time_call(self, *params):
        self.run()
