"""Small calls side by side: microseconds per call of softarray and its peers
(PyTorch, scipy.special, torchvision, scikit-learn) on tiny and medium
inputs, one thread, float32, in one process.

    python asv_bench/compare_small.py [--repeat 9] [--threads 1] [--cases softmax nms ...]

Each figure is the median over ``--repeat`` samples of the mean time of a
loop of calls (the loop sized to about 20 ms); the ratio is the fastest
peer's time over softarray's (above 1: softarray faster). NumPy input for
softarray and SciPy, a tensor of the same data for torch; the "tensor" rows
give softarray the torch tensor.
"""
import argparse
import statistics
import timeit

import numpy as np

import softarray as sa

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


def per_call(f, repeat):
    """Median over repeat samples of the seconds per call of f."""
    f()
    number = max(1, int(0.02 / max(timeit.timeit(f, number=1), 1e-7)))
    samples = [timeit.timeit(f, number=number) / number for _ in range(repeat)]
    return statistics.median(samples)


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
        peers = {}
        if torch:
            peers["torch"] = lambda t=t: torch.softmax(t, -1)
        if scipy:
            peers["scipy"] = lambda x=x: scipy.special.softmax(x, axis=-1)
        out[f"softmax {shape}"] = (lambda x=x: sa.softmax(x), peers)
        peers = {}
        if torch:
            peers["torch"] = lambda t=t: torch.log_softmax(t, -1)
        if scipy:
            peers["scipy"] = lambda x=x: scipy.special.log_softmax(x, axis=-1)
        out[f"log_softmax {shape}"] = (lambda x=x: sa.log_softmax(x), peers)
        out[f"logsumexp {shape}"] = (
            lambda x=x: sa.logsumexp(x),
            ({"torch": lambda t=t: torch.logsumexp(t, -1)} if torch else {})
            | ({"scipy": lambda x=x: scipy.special.logsumexp(x, axis=-1)} if scipy else {}))
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", nargs="*", help="substrings of the case names to run")
    args = parser.parse_args()
    if torch:
        torch.set_num_threads(args.threads)
    table = cases(np.random.default_rng(0))
    print(f"us per call, median of {args.repeat}; {args.threads} thread(s); "
          f"ratio = fastest peer / softarray")
    print(f"{'call':<40} {'softarray':>10}  peers")
    with sa.threads(args.threads):
        for name, (ours, peers) in table.items():
            if args.cases and not any(c in name for c in args.cases):
                continue
            mine = per_call(ours, args.repeat)
            theirs = {peer: per_call(f, args.repeat) for peer, f in peers.items()}
            ratio = f"{min(theirs.values()) / mine:5.2f}x" if theirs else "   -  "
            listed = "  ".join(f"{peer} {t * 1e6:8.1f}" for peer, t in theirs.items())
            print(f"{name:<40} {mine * 1e6:10.1f}  {ratio}  {listed}", flush=True)


if __name__ == "__main__":
    main()
