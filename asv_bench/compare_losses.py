"""softarray's losses beside PyTorch and scikit-learn, in one process.

Usage: python asv_bench/compare_losses.py [--repeat N] [--n N] [--classes C]

Issue 3's targets, float32 unless stated, N=65536 samples, C=1000 classes,
at one thread and at all threads (each library limited to the same count):

* cross_entropy forward >= 2x torch.nn.functional.cross_entropy;
* cross_entropy forward + gradient >= 2x torch forward + backward;
* cross_entropy per-sample losses >= 3x scikit-learn's compiled
  HalfMultinomialLoss.loss on float64 (the closest compiled peer); the
  float32 problem is the target's, float64 against float64 is shown too.

The other losses are timed beside their torch counterparts (forward +
gradient) for information. Each time is a median over N repeats.
"""
import argparse
import os

import numpy as np

import softarray as sa
from benchmarks._common import limit_threads, median_seconds

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
try:
    from sklearn._loss.loss import HalfMultinomialLoss
except ImportError:
    HalfMultinomialLoss = None

ALL_THREADS = os.cpu_count() or 1
THREADS = sorted({1, ALL_THREADS})


def torch_forward_backward(loss_fn, x):
    """Seconds-callable: torch forward then backward on a leaf copy of x."""
    leaf = torch.from_numpy(x).requires_grad_(True)

    def run():
        leaf.grad = None
        loss_fn(leaf).backward()
    return run


def cross_entropy_cases(x, y):
    """(label, softarray call, peer call, target ratio) for the targets."""
    cases = []
    if torch is not None:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        cases.append(("cross_entropy forward", lambda: sa.cross_entropy(x, y),
                      lambda: F.cross_entropy(xt, yt), 2.0))
        cases.append(("cross_entropy forward+grad", lambda: sa.cross_entropy(x, y, return_grad=True),
                      torch_forward_backward(lambda v: F.cross_entropy(v, yt), x), 2.0))
    if HalfMultinomialLoss is not None:
        # The target: softarray on the float32 problem against
        # scikit-learn's compiled loss on float64 (its LogisticRegression's
        # dtype); the like-for-like float64 ratio is reported beside it.
        x64 = np.ascontiguousarray(x, np.float64)
        y64 = y.astype(np.float64)
        sk = HalfMultinomialLoss(n_classes=x.shape[1])

        def sklearn_loss():
            return sk.loss(y_true=y64, raw_prediction=x64, n_threads=sa.get_num_threads())
        cases.append(("cross_entropy f32 per-sample vs sklearn f64",
                      lambda: sa.cross_entropy(x, y, reduction="none"), sklearn_loss, 3.0))
        cases.append(("cross_entropy f64 per-sample vs sklearn f64",
                      lambda: sa.cross_entropy(x64, y, reduction="none"), sklearn_loss, None))
    return cases


def other_cases(x, y):
    """Forward + gradient of the other losses beside torch (information only)."""
    if torch is None:
        return []
    yt = torch.from_numpy(y)
    probs = sa.softmax(x[:, ::-1].copy())
    binary = (x > 0).astype(np.float32)
    bt, pt = torch.from_numpy(binary), torch.from_numpy(probs)
    log_p = np.asarray(sa.log_softmax(x))
    return [
        ("nll_loss", lambda: sa.nll_loss(log_p, y, return_grad=True),
         torch_forward_backward(lambda v: F.nll_loss(v, yt), log_p)),
        ("cross_entropy probs", lambda: sa.cross_entropy(x, probs, return_grad=True),
         torch_forward_backward(lambda v: F.cross_entropy(v, pt), x)),
        ("bce_with_logits", lambda: sa.binary_cross_entropy_with_logits(x, binary, return_grad=True),
         torch_forward_backward(lambda v: F.binary_cross_entropy_with_logits(v, bt), x)),
        ("multi_margin_loss", lambda: sa.multi_margin_loss(x, y, return_grad=True),
         torch_forward_backward(lambda v: F.multi_margin_loss(v, yt), x)),
        ("kl_div from logits", lambda: sa.kl_div(x, probs, from_logits=True, reduction="batchmean",
                                                 return_grad=True),
         torch_forward_backward(lambda v: F.kl_div(F.log_softmax(v, -1), pt, reduction="batchmean"), x)),
        ("focal_loss", lambda: sa.focal_loss(x, y, return_grad=True), None),
        ("z_loss", lambda: sa.z_loss(x, y, return_grad=True), None),
    ]


def report(label, sa_fn, peer_fn, target, n_threads, repeat):
    with limit_threads(n_threads):
        sa_time = median_seconds(sa_fn, repeat)
        peer_time = None if peer_fn is None else median_seconds(peer_fn, repeat)
    ratio = None if peer_time is None else peer_time / sa_time
    verdict = ""
    if target is not None:
        verdict = f"  target >= {target}x: {'met' if ratio >= target else 'MISSED'}"
    peer = "-" if peer_time is None else f"{peer_time * 1e3:9.2f}"
    speedup = "-" if ratio is None else f"{ratio:.2f}x"
    print(f"{label:<44} {n_threads:>7} | {sa_time * 1e3:9.2f} {peer:>9} | {speedup:>7}{verdict}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--n", type=int, default=65536)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--skip-others", action="store_true", help="only the issue's targets")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.classes), dtype=np.float32)
    y = rng.integers(0, args.classes, args.n)
    versions = f"softarray {sa.__version__}, numpy {np.__version__}"
    if torch is not None:
        versions += f", torch {torch.__version__}"
    print(f"{versions}; {ALL_THREADS} CPUs; N={args.n}, C={args.classes}, float32 unless stated; "
          f"median of {args.repeat}")
    print(f"{'case':<44} {'threads':>7} | {'sa ms':>9} {'peer ms':>9} | {'peer/sa':>7}")
    for n_threads in THREADS:
        for label, sa_fn, peer_fn, target in cross_entropy_cases(x, y):
            report(label, sa_fn, peer_fn, target, n_threads, args.repeat)
        if not args.skip_others:
            for label, sa_fn, peer_fn in other_cases(x, y):
                report(label, sa_fn, peer_fn, None, n_threads, args.repeat)


if __name__ == "__main__":
    main()
