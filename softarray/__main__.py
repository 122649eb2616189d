"""python -m softarray: print the configuration, check results against
SciPy on a few inputs (softmax family and cross_entropy), and print a small
table of timings against SciPy and NumPy at one thread and at all threads.
--config prints the configuration only. Exits 1 if a check fails.
"""
import argparse
import sys
import timeit

import numpy as np
import scipy.special

import softarray as sa


def _numpy_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


CHECKS = [
    ("softmax", sa.softmax, lambda x: scipy.special.softmax(x, axis=-1)),
    ("log_softmax", sa.log_softmax, lambda x: scipy.special.log_softmax(x, axis=-1)),
    ("logsumexp", sa.logsumexp, lambda x: scipy.special.logsumexp(x, axis=-1)),
]


def _check_inputs():
    rng = np.random.default_rng(0)
    special = np.array(
        [[0.0, 1.0, 2.0], [np.inf, 1.0, 0.0], [-np.inf, -np.inf, -np.inf], [np.nan, 1.0, 2.0],
         [-np.inf, 3.0, 700.0], [1e300, -1e300, 0.0]]
    )
    return {
        "random float64 (300, 1000)": rng.standard_normal((300, 1000)) * 10,
        "random float32 (300, 1000)": (rng.standard_normal((300, 1000)) * 10).astype(np.float32),
        "special values": special,
        "one long row (1, 100000)": rng.standard_normal((1, 100_000)),
    }


def _tolerance(name, want, x):
    """The allowed difference from SciPy, per entry: a relative tolerance of
    the dtype; log-probabilities near 0 carry SciPy's own absolute error of
    about eps * |logsumexp| (softarray's is smaller), so they get that scale."""
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    atol = 0.0
    if name == "log_softmax":
        with np.errstate(all="ignore"):
            scale = np.abs(scipy.special.logsumexp(x, axis=-1, keepdims=True))
        atol = rtol * np.where(np.isfinite(scale), np.maximum(scale, 1.0), 0.0)
    return rtol, atol + rtol * np.abs(want)


def _error_ratio(got, want, allowed):
    """The worst |difference| / allowed over the finite entries (1 is the
    limit), and whether the non-finite entries (NaN, +-inf) are the same."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    finite = np.isfinite(want)
    same_special = bool(np.array_equal(got[~finite], want[~finite], equal_nan=True))
    with np.errstate(all="ignore"):
        difference = np.abs(got - want)[finite]
        ratio = difference / np.broadcast_to(allowed, want.shape)[finite]
    ratio = np.where(difference == 0, 0.0, ratio)     # equal, even where nothing is allowed
    return np.max(ratio, initial=0.0), same_special


def _report(name, label, ratio, same_special, rtol):
    ok = ratio <= 1.0 and same_special
    note = "" if same_special else "  (NaN/inf entries differ)"
    print(f"  {'ok  ' if ok else 'FAIL'} {name:<13} {label:<28} {ratio:9.2e}  rtol {rtol:.0e}{note}")
    return ok


def _scipy_cross_entropy(x, y):
    """Per-sample cross-entropy from scipy.special.log_softmax."""
    return -np.take_along_axis(scipy.special.log_softmax(x, axis=-1), y[:, None], axis=-1)[:, 0]


def _loss_check():
    """cross_entropy (per sample) and its gradient against SciPy."""
    rng = np.random.default_rng(1)
    ok = True
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        x = (rng.standard_normal((500, 300)) * 5).astype(dtype)
        y = rng.integers(0, 300, 500)
        loss, grad = sa.cross_entropy(x, y, reduction="none", return_grad=True)
        want_loss = _scipy_cross_entropy(x, y)
        want_grad = scipy.special.softmax(x, axis=-1)
        want_grad[np.arange(500), y] -= 1
        # the gradient's entries near 0 are compared on the scale of its largest
        allowed_grad = rtol * (np.abs(want_grad) + 1e-3)
        label = f"random {np.dtype(dtype).name} (500, 300)"
        ratio, same = _error_ratio(loss, want_loss, rtol * np.abs(want_loss))
        ok &= _report("cross_entropy", label, ratio, same, rtol)
        ratio, same = _error_ratio(grad, want_grad, allowed_grad)
        ok &= _report("  its gradient", label, ratio, same, rtol)
    return ok


def self_check():
    """Compare with scipy.special; return True if everything agrees."""
    ok = True
    print("\nSelf-check against scipy.special. Each figure is the worst difference from SciPy")
    print("divided by the difference allowed (relative tolerance rtol; for log_softmax also")
    print("rtol x |logsumexp| absolute): at most 1 passes, and 0 means equal.")
    for label, x in _check_inputs().items():
        for name, ours, theirs in CHECKS:
            with np.errstate(all="ignore"):
                got, want = ours(x), theirs(x)
                rtol, allowed = _tolerance(name, want, x)
            ratio, same = _error_ratio(got, want, allowed)
            ok &= _report(name, label, ratio, same, rtol)
    return _loss_check() and ok


REPEAT = 7


def _times(f):
    """Seconds per call: median, lowest and highest of REPEAT samples, each
    of as many calls as fill about 20 ms."""
    number = max(1, int(0.02 / max(timeit.timeit(f, number=1), 1e-7)))
    samples = np.array(timeit.repeat(f, number=number, repeat=REPEAT)) / number
    return np.median(samples), samples.min(), samples.max()


def _cell(t):
    median, low, high = t
    return f"{median * 1e3:8.3f} ({low * 1e3:.3f}-{high * 1e3:.3f})"


def _timing_rows(n_threads):
    rng = np.random.default_rng(0)
    peers = {"scipy.special": lambda x: scipy.special.softmax(x, axis=-1), "numpy": _numpy_softmax}
    with sa.threads(n_threads):
        for shape in [(100_000, 10), (1000, 1000), (2048, 2048)]:
            for dtype in (np.float32, np.float64):
                x = rng.standard_normal(shape).astype(dtype)
                mine = _times(lambda: sa.softmax(x))
                theirs = [_times(lambda: f(x)) for f in peers.values()]
                ratios = " ".join(f"{t[0] / mine[0]:6.1f}x" for t in theirs)
                print(f"  softmax {str(shape):<13} {np.dtype(dtype).name:<8} {n_threads:>3} "
                      f"{_cell(mine):>24} {ratios}")
        x = rng.standard_normal((16384, 1000)).astype(np.float32)
        y = rng.integers(0, 1000, 16384)
        mine = _times(lambda: sa.cross_entropy(x, y))
        scipy_time = _times(lambda: _scipy_cross_entropy(x, y).mean())
        print(f"  cross_entropy (16384, 1000) float32  {n_threads:>3} {_cell(mine):>24} "
              f"{scipy_time[0] / mine[0]:6.1f}x")


def timings():
    print(f"\nTimings: softarray's ms per call, median (lowest-highest) of {REPEAT} samples;")
    print("then how many times longer SciPy (scipy.special.softmax; for cross_entropy,")
    print("log_softmax and a gather) and NumPy (softmax written with np.exp) took, medians.")
    print("A shared or busy machine is noisy: compare medians, and run again to see the spread.")
    print(f"  {'call':<37} {'threads':>7} {'softarray ms':>24} {'scipy':>7} {'numpy':>7}")
    counts = sorted({1, sa.get_num_threads()})
    for n_threads in counts:
        _timing_rows(n_threads)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m softarray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="store_true", help="print the configuration only")
    args = parser.parse_args(argv)
    print("softarray configuration:")
    sa.show_config()
    if args.config:
        return 0
    ok = self_check()
    timings()
    print("\nAll checks passed." if ok else "\nSOME CHECKS FAILED.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
