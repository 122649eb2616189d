"""A table of extreme inputs per function, checked against exact references
computed with mpmath (60 digits) from the very values the kernels read.

Errors are measured in units in the last place (ulp) of the output dtype,
at the exact result: |got - exact| / spacing(exact). An exact result of 0
or -inf must be returned as such. The bounds are the accuracy the
documentation promises (docs/numerics.md, "Extreme inputs"), not the errors
observed; ``python tests/test_numerics_extremes.py`` (with the package
installed) prints the observed maxima that docs/numerics.md reports.
"""
import math

import mpmath
import numpy as np
import pytest

import softarray as sa

DTYPES = (np.float32, np.float64)


@pytest.fixture(autouse=True)
def _sixty_digits():
    """Every reference here is computed at 60 digits, whatever precision
    another module's test left mpmath at (its precision is process-wide)."""
    with mpmath.workdps(60):
        yield


def _rows(dtype):
    """Named rows of extreme inputs, in dtype."""
    info = np.finfo(dtype)
    tiny = float(info.smallest_subnormal)
    big = float(info.max)
    eps = float(info.eps)
    rng = np.random.default_rng(7)
    rows = {
        "huge magnitudes": [big, big / 2, -big, 0.0],
        "huge, all positive": [big, big * 0.75, big * 0.5],
        "tiny magnitudes": [1e-30, -2e-30, 3e-31, 0.0],
        "subnormals": [tiny, 2 * tiny, 0.0, -tiny],
        "all equal": [7.5] * 9,
        "all equal, large": [1e4] * 5,
        "one huge entry": [1000.0] + [0.0] * 7,
        "one tiny entry": [-1000.0] + [0.0] * 7,
        "one dominant (log1p regime)": [1.0 - math.log(eps), 0.0],
        "-inf mask": [-math.inf, 1.0, 2.0, -math.inf, 0.5],
        "all -inf but one": [-math.inf, -math.inf, 3.0],
        "wide spread": list(np.linspace(-80.0, 80.0, 33)),
        "random normal, 600": list(rng.standard_normal(600) * 10),
        # long enough (62) for the long-row kernels: a first run of entries
        # whose exponentials are all normal, then ones whose exp(x - max)
        # is subnormal in float64 (-708 to -745), rounds to 0 (below -746)
        # or is exp(-inf), mixed in one vector, and a short last piece
        "long, subnormal tail": list(-0.7 * np.arange(16.0)) + list(np.linspace(-700.0, -752.0, 40))
                                + [-math.inf, -2.0, -math.inf, 1e-3, -744.5, -709.25],
    }
    return {name: np.asarray(row, dtype=dtype) for name, row in rows.items()}


def _mp(row):
    return [mpmath.mpf(float(v)) for v in row]


def _lse(xs):
    finite = [v for v in xs if mpmath.isfinite(v)]
    if not finite:
        return mpmath.mpf("-inf")
    m = max(finite)
    return m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in finite))


def _stable_s(v):
    if v == mpmath.mpf("-inf"):
        return mpmath.mpf(0)
    return v + 1 if v >= 0 else 1 / (1 - v)


REFERENCES = {
    "softmax": lambda xs: [mpmath.exp(v - _lse(xs)) if mpmath.isfinite(v) else mpmath.mpf(0) for v in xs],
    "log_softmax": lambda xs: [v - _lse(xs) if mpmath.isfinite(v) else mpmath.mpf("-inf") for v in xs],
    "logsumexp": lambda xs: [_lse(xs)],
    "stablemax": lambda xs: [_stable_s(v) / mpmath.fsum(_stable_s(u) for u in xs) for v in xs],
    "log_stablemax": lambda xs: [
        mpmath.log(_stable_s(v) / mpmath.fsum(_stable_s(u) for u in xs)) if _stable_s(v) > 0
        else mpmath.mpf("-inf") for v in xs],
}

# Where a function is not defined on a row (stablemax's s(x) = x + 1
# overflows the dtype for huge x: the kernels then return inf/nan, as the
# formula does), the row is left out for it.
SKIP = {
    ("stablemax", "huge magnitudes"), ("stablemax", "huge, all positive"),
    ("log_stablemax", "huge magnitudes"), ("log_stablemax", "huge, all positive"),
}

# The promised accuracy, in ulp of the output dtype.
BOUND_ULP = {"softmax": 8, "log_softmax": 4, "logsumexp": 2, "stablemax": 4, "log_stablemax": 4}


def _allowance(name, dtype, row):
    """Extra ulp allowed per output entry: float32 softmax computes exp(x -
    max) from the rounded float32 difference (docs/numerics.md), whose
    relative error is up to |x - max| * 2^-24, i.e. up to 2 |x - max| ulp."""
    if name == "softmax" and dtype == np.float32:
        finite = np.isfinite(row)
        extra = np.zeros(row.shape)
        extra[finite] = 2 * np.abs(row[finite].astype(np.float64) - row[finite].max())
        return extra
    return np.zeros(row.shape if name != "logsumexp" else (1,))


def _ulp_error(got, exact, dtype):
    """Error of got (a dtype value) against the exact mpf, in ulp at exact."""
    if exact == mpmath.mpf("-inf"):
        return 0.0 if got == -np.inf else np.inf
    if exact == 0:
        return 0.0 if got == 0 else np.inf
    with np.errstate(over="ignore"):
        exact_f = dtype(float(exact))           # nearest; +-inf beyond the range
        spacing = float(np.spacing(np.abs(exact_f)))
    if not np.isfinite(exact_f):
        return 0.0 if got == exact_f else np.inf
    return float(abs(mpmath.mpf(float(got)) - exact) / mpmath.mpf(spacing))


def _errors(name, dtype):
    """{row name: (ulp errors, allowed extra ulp)} of sa.<name> over the table."""
    fn = getattr(sa, name)
    out = {}
    for row_name, row in _rows(dtype).items():
        if (name, row_name) in SKIP:
            continue
        got = np.atleast_1d(fn(row))
        assert got.dtype == dtype
        exact = REFERENCES[name](_mp(row))
        errors = np.array([_ulp_error(g, e, dtype) for g, e in zip(got, exact)])
        out[row_name] = (errors, _allowance(name, dtype, row))
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_extreme_inputs_within_promised_ulp(name, dtype):
    worst = {}
    for row, (errors, extra) in _errors(name, dtype).items():
        over = errors > BOUND_ULP[name] + extra
        if over.any():
            worst[row] = float(errors[over].max())
    assert not worst, f"{name} {dtype.__name__}: ulp errors above {BOUND_ULP[name]}: {worst}"


def _per_sample_cross_entropy_exact(xs, target):
    return _lse(xs) - xs[target]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_cross_entropy_extremes(dtype):
    """Per-sample cross-entropy, lse(x) - x[target], on the same rows (each
    row's target: its largest entry, whose loss is the hardest to get
    right, and its smallest finite one)."""
    for row_name, row in _rows(dtype).items():
        if "huge" in row_name:
            continue            # lse - x[t] of huge logits cancels to 0 in any dtype: see test below
        finite = np.flatnonzero(np.isfinite(row))
        for target in (int(finite[np.argmax(row[finite])]), int(finite[np.argmin(row[finite])])):
            got = sa.cross_entropy(row[None, :], np.array([target]), reduction="none")[0]
            exact = _per_sample_cross_entropy_exact(_mp(row), target)
            # relative to the loss, with an absolute floor of one ulp of 1
            # (a loss of about 0 cannot be returned more accurately than
            # the rounding of its own terms)
            err = abs(mpmath.mpf(float(got)) - exact)
            allowed = 4 * float(np.finfo(dtype).eps) * max(abs(float(exact)), 1.0)
            assert err <= allowed, (row_name, target, float(got), float(exact))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_cross_entropy_gradient_subnormal_tail(dtype):
    """The gradient softmax(x) - onehot on the long row with a subnormal
    tail, kept and recomputed (contiguous and strided logits): relative to
    each entry, with the losses' rounded shift (|x - max| eps) and an
    absolute floor of two of the dtype's smallest subnormals."""
    row = _rows(dtype)["long, subnormal tail"]
    target = int(np.nanargmax(row))
    xs = _mp(row)
    lse = _lse(xs)
    exact = [mpmath.exp(v - lse) if mpmath.isfinite(v) else mpmath.mpf(0) for v in xs]
    exact[target] -= 1
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).smallest_subnormal)
    shift = np.where(np.isfinite(row), np.abs(row.astype(np.float64) - row.max()), 0.0)
    for logits in (row[None, :], np.asfortranarray(np.stack([row, row]))[:1]):
        _, grad = sa.cross_entropy(logits, np.array([target]), reduction="sum", return_grad=True)
        for g, e, s in zip(grad[0], exact, shift):
            assert abs(mpmath.mpf(float(g)) - e) <= (4 + 2 * s) * eps * abs(float(e)) + 2 * tiny, (float(g), float(e))


def test_cross_entropy_huge_logits_finite():
    for dtype in DTYPES:
        big = np.finfo(dtype).max
        row = np.array([[big, big / 2, -big]], dtype=dtype)
        loss = sa.cross_entropy(row, np.array([0]), reduction="none")
        assert np.isfinite(loss).all() and loss[0] == 0
        loss = sa.cross_entropy(row, np.array([1]), reduction="none")
        assert loss[0] == dtype(big / 2)        # lse = big exactly; big - big/2


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_bce_with_logits_extremes(dtype):
    xs = np.array([-1e4, -100.0, -30.0, -1e-30, 0.0, 1e-30, 30.0, 100.0, 1e4], dtype=dtype)
    for y in (0.0, 1.0, 0.25):
        ys = np.full_like(xs, y)
        got = sa.binary_cross_entropy_with_logits(xs, ys, reduction="none")
        for g, x in zip(got, xs):
            x = mpmath.mpf(float(x))
            p = 1 / (1 + mpmath.exp(-x))
            # -(y log p + (1 - y) log(1 - p)), with log(1 - p) = log p - x
            exact = -(y * mpmath.log(p) + (1 - y) * (mpmath.log(p) - x))
            err = abs(mpmath.mpf(float(g)) - exact)
            assert err <= 4 * float(np.finfo(dtype).eps) * max(abs(float(exact)), 1e-300) + \
                float(np.finfo(dtype).smallest_subnormal), (float(x), y, float(g), float(exact))


if __name__ == "__main__":      # the observed maxima, for docs/numerics.md
    mpmath.mp.dps = 60
    for name in sorted(REFERENCES):
        for dtype in DTYPES:
            errors = {row: float(e.max()) for row, (e, _) in _errors(name, dtype).items()}
            row, err = max(errors.items(), key=lambda kv: kv[1])
            print(f"{name:14s} {dtype.__name__:8s} max {err:6.2f} ulp  (worst row: {row})")
