"""float64 softarray beside scipy.special and scikit-learn's multinomial loss, in one process.

Usage: python asv_bench/compare_float64.py [--repeat N] [--samples N]

The float64 issue's targets, at one thread: softmax of a 1000x1000 array
>= 3x scipy.special.softmax(x, axis=-1), and the per-sample cross-entropy
(reduction="none") of 65536x1000 logits >= 3x scikit-learn's
HalfMultinomialLoss().loss (n_threads=1; it is the same per-sample
quantity, log-sum-exp minus the target's logit). log_softmax and logsumexp
beside scipy.special are for reading alongside. Every case runs at one
thread and at all threads (each library limited to the same count); each
time is the median over N repeats of a timeit loop sized by
``Timer.autorange``.
"""
import argparse

import numpy as np
import scipy.special
from sklearn._loss.loss import HalfMultinomialLoss

import softarray as sa
from benchmarks._common import THREADS, limit_threads, median_seconds

TARGET = 3.0


def softmax_cases(x):
    """(name, softarray call, peer call) of the softmax family on x."""
    return [(name, lambda f=getattr(sa, name): f(x, axis=-1),
             lambda f=getattr(scipy.special, name): f(x, axis=-1))
            for name in ("softmax", "log_softmax", "logsumexp")]


def loss_case(x, y, n_threads):
    loss = HalfMultinomialLoss(n_classes=x.shape[1])
    y_float = y.astype(np.float64)
    return ("cross_entropy", lambda: sa.cross_entropy(x, y, reduction="none"),
            lambda: loss.loss(y_true=y_float, raw_prediction=x, n_threads=n_threads))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--samples", type=int, default=65536)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 1000)) * 4.0
    logits = rng.standard_normal((args.samples, 1000)) * 4.0
    labels = rng.integers(0, 1000, size=args.samples)
    print(f"softarray {sa.__version__}, float64, median of {args.repeat}; peer: "
          f"scipy.special (1000x1000), sklearn HalfMultinomialLoss ({args.samples}x1000)")
    print(f"{'case':<34}{'threads':>8}{'softarray ms':>14}{'peer ms':>10}{'peer/sa':>9}  target")
    for n_threads in THREADS:
        with limit_threads(n_threads):
            cases = [(name, "1000x1000", ours, peer) for name, ours, peer in softmax_cases(x)]
            name, ours, peer = loss_case(logits, labels, n_threads)
            cases.append((name + ' "none"', f"{args.samples}x1000", ours, peer))
            for name, shape, ours, peer in cases:
                ours_s = median_seconds(ours, args.repeat)
                peer_s = median_seconds(peer, args.repeat)
                ratio = peer_s / ours_s
                judged = n_threads == 1 and name.split()[0] in ("softmax", "cross_entropy")
                verdict = ("met" if ratio >= TARGET else "MISSED") if judged else ""
                print(f"{name + ' ' + shape:<34}{n_threads:>8}{ours_s * 1e3:>14.2f}{peer_s * 1e3:>10.2f}"
                      f"{ratio:>8.2f}x  {verdict}")


if __name__ == "__main__":
    main()
