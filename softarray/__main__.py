"""python -m softarray: print the configuration, check results against
SciPy on a few inputs (softmax family and cross_entropy), and print a small table of timings against SciPy and
NumPy. ``--config`` prints the configuration only. Exits 1 if a check fails.
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


def _agree(name, got, want, x):
    """Equal NaN pattern, and values within rtol; log-probabilities near 0
    carry SciPy's own absolute error of about eps * |logsumexp| (softarray's
    is smaller), so they are compared on that scale."""
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    atol = 0.0
    if name == "log_softmax":
        with np.errstate(all="ignore"):
            scale = np.abs(scipy.special.logsumexp(x, axis=-1, keepdims=True))
        atol = rtol * np.where(np.isfinite(scale), np.maximum(scale, 1.0), 0.0)
    with np.errstate(all="ignore"):
        return bool(np.all(np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)))


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
        want_grad = scipy.special.softmax(x, axis=-1)
        want_grad[np.arange(500), y] -= 1
        err = np.max(np.abs(loss / _scipy_cross_entropy(x, y) - 1))
        same = bool(np.allclose(loss, _scipy_cross_entropy(x, y), rtol=rtol, atol=0)
                    and np.allclose(grad, want_grad, rtol=rtol, atol=rtol * 1e-3))
        ok &= same
        label = f"random {np.dtype(dtype).name} (500, 300)"
        print(f"  {'ok  ' if same else 'FAIL'} {'cross_entropy':<12} {label:<28} {err:.1e}  (and its gradient)")
    return ok


def self_check():
    """Compare with scipy.special; return True if everything agrees."""
    ok = True
    print("\nSelf-check against scipy.special (max relative difference):")
    for label, x in _check_inputs().items():
        for name, ours, theirs in CHECKS:
            with np.errstate(all="ignore"):
                got, want = ours(x), theirs(x)
            same = _agree(name, got, want, x)
            finite = np.isfinite(want) & (want != 0)
            err = np.max(np.abs(got[finite] / want[finite] - 1), initial=0.0)
            ok &= same
            print(f"  {'ok  ' if same else 'FAIL'} {name:<12} {label:<28} {err:.1e}")
    return _loss_check() and ok


def _median_time(f, repeat=5):
    number = max(1, int(0.05 / max(timeit.timeit(f, number=1), 1e-7)))
    return np.median(timeit.repeat(f, number=number, repeat=repeat)) / number


def timings():
    print(f"\nTimings, softmax along the last axis (median, {sa.get_num_threads()} threads):")
    rng = np.random.default_rng(0)
    peers = {"scipy.special": lambda x: scipy.special.softmax(x, axis=-1), "numpy": _numpy_softmax}
    print(f"  {'shape':<16} {'dtype':<8} {'softarray':>10} " + " ".join(f"{k:>14}" for k in peers))
    for shape in [(100_000, 10), (1000, 1000), (2048, 2048)]:
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal(shape).astype(dtype)
            t_sa = _median_time(lambda: sa.softmax(x))
            cells = []
            for f in peers.values():
                t = _median_time(lambda: f(x))
                cells.append(f"{t * 1e3:7.2f} ms {t / t_sa:4.1f}x")
            print(f"  {str(shape):<16} {np.dtype(dtype).name:<8} {t_sa * 1e3:7.2f} ms " + " ".join(cells))
    print("  (Nx: how many times longer the peer took.)")
    print(f"\nTimings, cross_entropy mean loss, (16384, 1000) float32 (median, {sa.get_num_threads()} threads):")
    x = rng.standard_normal((16384, 1000)).astype(np.float32)
    y = rng.integers(0, 1000, 16384)
    t_sa = _median_time(lambda: sa.cross_entropy(x, y))
    t_scipy = _median_time(lambda: _scipy_cross_entropy(x, y).mean())
    print(f"  softarray {t_sa * 1e3:7.2f} ms   scipy.special.log_softmax + gather {t_scipy * 1e3:7.2f} ms "
          f"{t_scipy / t_sa:4.1f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m softarray", description=__doc__)
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
