"""Differential fuzzing: the compiled kernels against the portable path.

Every public function of ``softarray.__all__`` that computes something is
called twice on the same values: once on NumPy arrays (the compiled kernels,
reading the memory as laid out) and once on ``array_api_strict`` arrays
(which only the portable array-API implementation, ``softarray/_portable``,
accepts). Hypothesis chooses

* shapes: 0-d where allowed, empty arrays, reduction axes of length 0 and 1,
  odd lengths up to 67 (the kernels' vector tails), up to four axes, axis
  tuples and None where allowed;
* the NumPy input's memory layout: C, F, strided slices, negative strides,
  transposed copies, zero-stride broadcast views, read-only, non-native
  byte order, misaligned, and for 2-D inputs the layouts of
  ``tests/layouts.py``;
* dtypes: float32, float64, and integers / bool where the function promotes;
* values: normal ranges, huge and tiny magnitudes (up to the dtype's maximum,
  subnormals), all-equal rows and many ties, +-inf, NaN, -inf masks, where=
  masks (fully masked slices included), targets holding ignore_index or an
  invalid class.

Each comparison asserts the same exception type (when either path raises),
else the same array type, dtype and shape, the same NaN and +-inf
positions, finite values within the tolerance documented at each constant,
integer outputs (indices, slots) exactly equal, and that no NumPy input was
written to.

Budget: by default each test runs ``DEFAULT_EXAMPLES`` examples, derandomized
(a CI failure is a real, reproducible regression), well under a minute for
the module. Hunt for bugs with a larger, random budget::

    SA_FUZZ_EXAMPLES=2000 python -P -m pytest tests/test_fuzz.py -p no:cacheprovider

(``SA_FUZZ_EXAMPLES`` sets the examples of the cheapest tests; the costlier
ones run a fixed fraction of it, see ``fuzz``).
"""
import math
import os

import array_api_compat
import array_api_strict
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import softarray as sa
from layouts import memory_layouts
from soft_nms_tolerance import assert_soft_nms_close

DEFAULT_EXAMPLES = 50
EXAMPLES = int(os.environ.get("SA_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))


def fuzz(weight=1.0):
    """Hypothesis settings for a test costing ``1 / weight`` times the cheapest."""
    return settings(
        max_examples=max(1, round(EXAMPLES * weight)),
        deadline=None,
        derandomize="SA_FUZZ_EXAMPLES" not in os.environ,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


# ================================================================ tolerances
#
# Both paths are different implementations of the same formulas: the kernels
# use their own vectorized exp/log1p polynomials (src/_simd.h, documented
# within a few ulp), sum in SIMD lanes and, in float64, recover the rounding
# of x - max (TwoSum); the portable path uses NumPy's libm and pairwise sums.
# Bounds are therefore stated in eps of the output dtype:
#
# ULPS: slack for the handful of roundings each elementwise result goes
#   through on each path (an exp or log1p of a few ulp each, a division, the
#   final rounding), doubled since both paths err.
ULPS = 16
# Sums of n terms: any summation order of n non-negative terms is within
# (n - 1) eps relatively of the exact sum, so a normalizer or a reduction over
# n entries adds n eps (SUM_ULPS_PER_TERM per term) to the relative bound of
# everything divided by it or taken the log of.
SUM_ULPS_PER_TERM = 1
# Subnormal results carry no relative accuracy: an absolute floor of a few
# smallest-normal numbers (finfo.tiny) covers an exp that rounds, or flushes,
# a subnormal result.
SUBNORMAL_FLOOR_TINIES = 4


def eps_of(dtype):
    return float(np.finfo(dtype).eps)


# ================================================================ arrays

FLOATS = (np.float32, np.float64)
PROMOTED = (np.int8, np.int32, np.int64, np.uint8, np.bool_)
MAX_SIZE = 3000     # elements per generated array: keeps a test example in milliseconds


def specials(dtype):
    """Values that break naive kernels, in dtype."""
    info = np.finfo(dtype)
    values = [math.nan, math.inf, -math.inf, 0.0, -0.0, float(info.max), -float(info.max),
              float(info.tiny), float(info.smallest_subnormal), -float(info.smallest_subnormal),
              1e30, -1e30, float(info.eps), 1.0, -1.0, 88.7, -745.2, 1e4]
    with np.errstate(over="ignore"):
        return [float(np.dtype(dtype).type(v)) for v in values]


def sides():
    """Lengths of one axis: hypothesis favours the small ones (0, 1 and the
    first vector tails), the second branch reaches odd tails up to 67."""
    return st.one_of(st.integers(0, 4), st.integers(1, 67))


@st.composite
def shapes(draw, min_dims=0, max_dims=4, min_side=0):
    ndim = draw(st.integers(min_dims, max_dims))
    shape = [max(min_side, draw(sides())) for _ in range(ndim)]
    while math.prod(shape) > MAX_SIZE:      # shrink the largest axis until it fits
        k = shape.index(max(shape))
        shape[k] = max(min_side, shape[k] // 3)
    return tuple(shape)


@st.composite
def values(draw, shape, dtype, regimes=None, allow_special=True):
    """An array of shape and dtype in one of several value regimes, from a
    seeded generator (hypothesis picks the regime and seed, and where the
    special values go)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = math.prod(shape)
    if dtype == np.bool_:
        return rng.random(shape) < draw(st.sampled_from([0.0, 0.5, 1.0]))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = draw(st.sampled_from([(-3, 3), (info.min, info.max)]))
        return rng.integers(max(low, info.min), min(high, info.max), shape, endpoint=True, dtype=dtype)
    regime = draw(st.sampled_from(regimes or ("normal", "normal", "wide", "ties", "equal", "drawn")))
    info = np.finfo(dtype)
    if regime == "normal":
        x = rng.standard_normal(shape) * draw(st.sampled_from([1e-3, 1.0, 4.0, 30.0]))
    elif regime == "wide":      # magnitudes from subnormal to the dtype's maximum
        exponent = rng.uniform(math.log10(float(info.smallest_subnormal)), math.log10(float(info.max)), shape)
        x = np.where(rng.random(shape) < 0.5, -1.0, 1.0) * 10.0 ** exponent
    elif regime == "ties":
        x = rng.integers(-2, 3, shape).astype(np.float64)
    elif regime == "equal":
        x = np.full(shape, draw(st.sampled_from(specials(dtype) + [2.5, -7.0])))
    else:       # drawn value by value: hypothesis shrinks these
        n = min(size, 24)
        drawn = draw(st.lists(st.floats(width=8 * dtype.itemsize, allow_nan=allow_special,
                                        allow_infinity=allow_special), min_size=n, max_size=n))
        x = np.resize(np.asarray(drawn or [0.0]), shape)
    with np.errstate(over="ignore"):
        x = np.asarray(x).astype(dtype)
    if size and allow_special:
        for _ in range(draw(st.integers(0, 3))):
            x.flat[draw(st.integers(0, size - 1))] = draw(st.sampled_from(specials(dtype)))
        if draw(st.booleans()):     # a -inf mask over a random share of the entries
            x[rng.random(shape) < draw(st.sampled_from([0.1, 0.5, 1.0]))] = -np.inf
    return x


LAYOUTS = ("C", "F", "strided", "negative", "transposed", "broadcast", "read-only",
           "byteswapped", "misaligned", "layouts.py")


@st.composite
def laid_out(draw, base, layouts=LAYOUTS):
    """base's values (or, for "broadcast", values made constant along one
    axis) in a memory layout hypothesis picks."""
    name = draw(st.sampled_from(layouts))
    if name == "layouts.py" and base.ndim == 2:
        views = memory_layouts(base)
        return views[draw(st.sampled_from(sorted(views)))]
    if base.ndim == 0 or base.size == 0 or name == "C":
        return np.ascontiguousarray(base)
    if name == "F":
        return np.asfortranarray(base)
    if name == "strided":
        steps = tuple(draw(st.integers(1, 3)) for _ in range(base.ndim))
        big = np.zeros(tuple(n * s for n, s in zip(base.shape, steps)), base.dtype)
        view = big[tuple(slice(None, None, s) for s in steps)]
        view[...] = base
        return view
    if name == "negative":
        flip = tuple(slice(None, None, -1) for _ in range(base.ndim))
        return base[flip].copy()[flip]
    if name == "transposed":
        perm = draw(st.permutations(range(base.ndim)))
        return np.ascontiguousarray(base.transpose(perm)).transpose(np.argsort(perm))
    if name == "broadcast":
        axis = draw(st.integers(0, base.ndim - 1))
        return np.broadcast_to(np.take(base, [0], axis=axis), base.shape)
    if name == "read-only":
        a = base.copy()
        a.setflags(write=False)
        return a
    if name == "byteswapped":
        return base.astype(base.dtype.newbyteorder())
    if name == "misaligned" and base.dtype.itemsize > 1:
        buffer = np.zeros(base.nbytes + 1, np.uint8)
        a = buffer[1:].view(base.dtype).reshape(base.shape)
        a[...] = base
        return a
    return np.ascontiguousarray(base)


@st.composite
def arrays(draw, shape, dtypes=FLOATS, **kwargs):
    dtype = draw(st.sampled_from(dtypes))
    return draw(laid_out(draw(values(shape, dtype, **kwargs))))


# ================================================================ running both paths

def to_strict(a):
    """The NumPy array's values (native byte order) as an array_api_strict array."""
    if a is None:
        return None
    a = np.asarray(a)
    return array_api_strict.asarray(np.array(a, dtype=a.dtype.newbyteorder("=")))


def from_strict(r):
    return np.from_dlpack(r)


def outcome(call):
    try:
        return call(), None
    except Exception as exc:    # compared by type with the other path's
        return None, exc


def run_both(fn, np_args, kwargs=None, strict_kwargs=None):
    """Call fn on NumPy arrays and on their array_api_strict twins.

    Returns (compiled result, portable result), or None when both raised
    the same exception type; asserts that NumPy inputs are not modified."""
    kwargs = kwargs or {}
    strict_kwargs = {**kwargs, **(strict_kwargs or {})}
    array_kwargs = {k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    for k, v in array_kwargs.items():
        strict_kwargs[k] = to_strict(v)
    inputs = [a for a in list(np_args) + list(array_kwargs.values()) if isinstance(a, np.ndarray)]
    before = [a.copy() for a in inputs]
    strict_args = [to_strict(a) if isinstance(a, np.ndarray) else a for a in np_args]
    with np.errstate(all="ignore"):
        got, got_exc = outcome(lambda: fn(*np_args, **kwargs))
        ref, ref_exc = outcome(lambda: fn(*strict_args, **strict_kwargs))
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b, err_msg="a NumPy input was modified", strict=True)
    if got_exc is not None or ref_exc is not None:
        assert type(got_exc) is type(ref_exc), (
            f"compiled raised {got_exc!r}, portable raised {ref_exc!r}")
        return None
    return got, ref


def assert_matches(got, ref, atol=0.0, rtol=0.0, what="result", skip=None):
    """got (compiled, NumPy) against ref (portable, array_api_strict): same
    type, dtype, shape, NaN and +-inf positions; finite values within
    atol + rtol |ref| (scalars or arrays broadcasting against ref). Entries
    where ``skip`` (broadcast against ref) is True are not compared."""
    assert isinstance(got, np.ndarray), f"{what}: compiled path returned {type(got).__name__}"
    assert array_api_compat.is_array_api_strict_namespace(array_api_compat.array_namespace(ref)), (
        f"{what}: portable path returned {type(ref).__name__}")
    ref = from_strict(ref)
    assert _native(got.dtype) == ref.dtype, f"{what}: dtype {got.dtype} != portable {ref.dtype}"
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != portable {ref.shape}"
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got.astype(ref.dtype), ref, err_msg=what, strict=True)
        return
    compared = np.ones(ref.shape, bool) if skip is None else ~np.broadcast_to(skip, ref.shape)
    for name, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        mismatch = (test(got) != test(ref)) & compared
        assert not mismatch.any(), (
            f"{what}: {name} positions differ, e.g. at {_first(mismatch)}: compiled "
            f"{got[_first(mismatch)]!r}, portable {ref[_first(mismatch)]!r}")
    finite = np.isfinite(ref) & np.isfinite(got) & compared
    g, r = got.astype(np.float64), ref.astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(g - r), 0.0)
        bound = np.broadcast_to(atol + rtol * np.abs(r), r.shape)
    bad = err > bound
    assert not bad.any(), (
        f"{what}: compiled {g[_first(bad)]!r} vs portable {r[_first(bad)]!r} at {_first(bad)} "
        f"(error {err[_first(bad)]:.3g} > bound {bound[_first(bad)]:.3g}; "
        f"{int(bad.sum())} of {bad.size} entries)")


def assert_exact(got, ref, what="result"):
    """Equal to the bit (NaN where NaN), same type, dtype and shape."""
    assert isinstance(got, np.ndarray), f"{what}: compiled path returned {type(got).__name__}"
    ref = from_strict(ref)
    assert _native(got.dtype) == ref.dtype and got.shape == ref.shape, (
        f"{what}: {got.dtype}{got.shape} != portable {ref.dtype}{ref.shape}")
    if got.dtype.kind == "f":
        same = (got == ref) | (np.isnan(got) & np.isnan(ref))
        same &= (np.signbit(got) == np.signbit(ref)) | np.isnan(got)
        assert same.all(), (f"{what}: compiled {got[_first(~same)]!r} vs portable "
                            f"{ref[_first(~same)]!r} at {_first(~same)}")
    else:
        np.testing.assert_array_equal(got.astype(ref.dtype), ref, err_msg=what, strict=True)


def _native(dtype):
    """The byte order of a result is not compared: a NumPy result may keep a
    non-native input's (box_convert to the same format, topk of integers,
    gumbel_softmax(hard=True)), which array_api_strict cannot hold."""
    return dtype.newbyteorder("=")


def _first(mask):
    return tuple(int(i[0]) for i in np.nonzero(mask)) if mask.ndim else ()


# ================================================================ softmax family

def axes_for(ndim):
    """Valid axis arguments for an ndim array (None, (), ints, tuples), and
    now and then an invalid one (out of bounds, repeated)."""
    ints = st.integers(-ndim, ndim - 1) if ndim else st.sampled_from([0, -1])
    subsets = st.lists(st.integers(-ndim, ndim - 1), unique_by=lambda k: k % ndim,
                       max_size=ndim).map(tuple) if ndim else st.just(())
    invalid = st.sampled_from([ndim, -ndim - 1, (0, 0) if ndim else 1])
    return st.one_of(st.none(), ints, ints, subsets, invalid)


def reduced(shape, axis):
    """The sorted non-negative reduction axes (None if axis is invalid)."""
    ndim = len(shape)
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    if ndim == 0:
        return () if all(k in (0, -1) for k in items) else None
    norm = [k % ndim for k in items if -ndim <= k < ndim]
    if len(norm) != len(items) or len(set(norm)) != len(norm):
        return None
    return tuple(sorted(norm))


@st.composite
def masks(draw, shape, axes):
    """None, or a boolean where= of shape broadcasting to shape: random,
    all False, all True, or constant along the reduction axes (whole
    slices masked out)."""
    kind = draw(st.sampled_from(["none", "none", "random", "all False", "all True", "slices"]))
    if kind == "none":
        return None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mshape = tuple(1 if draw(st.booleans()) else n for n in shape)
    if kind == "slices":
        mshape = tuple(1 if k in (axes or ()) else n for k, n in enumerate(mshape))
    p = {"random": draw(st.sampled_from([0.2, 0.5, 0.9])), "all False": 0.0, "all True": 1.0,
         "slices": 0.5}[kind]
    mask = rng.random(mshape) < p
    return draw(laid_out(mask, ("C", "F", "negative", "strided", "read-only")))


@st.composite
def softmax_cases(draw):
    shape = draw(shapes())
    x = draw(arrays(shape, dtypes=FLOATS + FLOATS + PROMOTED))
    axis = draw(axes_for(len(shape)))
    where = draw(masks(shape, reduced(shape, axis)))
    return x, axis, where


def _slice_stats(x, axes, where, scale):
    """(n, |y - max|) in float64: the slice length and, per element, the
    distance of y = x * scale to its slice's largest finite unmasked entry."""
    y = np.asarray(x, np.float64) * scale
    if where is not None:
        y = np.where(where, y, -np.inf)
    n = math.prod(y.shape[k] for k in axes) if y.ndim else 1
    if y.size == 0:
        return n, y
    finite = np.isfinite(y)
    m = np.max(np.where(finite, y, -np.inf), axis=axes if y.ndim else None, keepdims=True)
    with np.errstate(invalid="ignore"):
        return n, np.where(finite & np.isfinite(m), np.abs(y - m), 0.0)


def _softmax_tolerance(op, n, gap, dtype):
    """(atol, rtol) for op's results in dtype: n is the slice length, gap
    each entry's |y - max| (y = x / temperature)."""
    eps = eps_of(dtype)
    sums = ULPS + SUM_ULPS_PER_TERM * n
    if op == "softmax":
        # exp(y - max) / sum: y - max is rounded the same way on both paths,
        # but the float64 kernel recovers that rounding (TwoSum) where NumPy's
        # exp does not: |y - max| eps more, relatively. Subnormal results
        # have only the absolute floor.
        return SUBNORMAL_FLOOR_TINIES * float(np.finfo(dtype).tiny), eps * (sums + gap)
    if op == "stablemax":
        # s(y) / sum: s is one addition or division, no exp.
        return SUBNORMAL_FLOOR_TINIES * float(np.finfo(dtype).tiny), eps * sums
    if op == "log_stablemax":
        # log s(y) - (log s(max) + log1p(share)): the two logs (gap holds
        # their magnitudes) cancel, each rounded on its own path.
        return eps * (sums + ULPS * gap), eps * ULPS
    # logsumexp, log_softmax: the log of a normalizer with a relative error
    # of n eps is off by n eps absolutely (the portable float64 exp's
    # |y - max| eps error, weighted by its share p <= e^-|y - max|, is below
    # eps per term); the rest is rounding relative to the result.
    return eps * sums, eps * ULPS


SOFTMAX_OPS = ("softmax", "log_softmax", "stablemax", "log_stablemax")


@fuzz()
@given(case=softmax_cases(), op=st.sampled_from(SOFTMAX_OPS),
       temperature=st.sampled_from([1.0, 1.0, 0.5, 3.0, 1e-3, 1e3]))
def test_softmax_family_matches_portable(case, op, temperature):
    x, axis, where = case
    kwargs = {"axis": axis, "where": where}
    if op in ("softmax", "log_softmax"):
        kwargs["temperature"] = temperature
    else:
        temperature = 1.0
    pair = run_both(getattr(sa, op), [x], kwargs)
    if pair is None:
        return
    got, ref = pair
    axes = reduced(x.shape, axis)
    n, gap = _slice_stats(x, axes, where, 1.0 / temperature)
    if op == "log_stablemax":
        gap = _log_s_magnitudes(x, axes, where)
    atol, rtol = _softmax_tolerance(op, n, gap, got.dtype)
    skip = _stablemax_overflows(x, axes, where, got.dtype) if "stablemax" in op else None
    assert_matches(got, ref, atol, rtol, op, skip)


def _log_s_magnitudes(x, axes, where):
    """|log s(y)| + |log s(max)| per element (finite entries; 0 elsewhere)."""
    y = np.asarray(x, np.float64)
    if where is not None:
        y = np.where(where, y, -np.inf)
    if y.size == 0:
        return y
    log_s = np.where(np.isfinite(y), np.log1p(np.abs(np.where(np.isfinite(y), y, 0.0))), 0.0)
    top = np.max(np.where(np.isfinite(y), y, -np.inf), axis=axes if y.ndim else None, keepdims=True)
    return log_s + np.where(np.isfinite(top), np.log1p(np.abs(np.where(np.isfinite(top), top, 0.0))), 0.0)


def _stablemax_overflows(x, axes, where, dtype):
    """Slices whose sum of s(x) nears the dtype's maximum: the normalizer of
    stablemax and log_stablemax overflows there (huge rows are undefined for
    them, docs/numerics.md), on one path and not the other depending on how
    each sums."""
    y = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        s = np.where(y >= 0, y + 1, 1 / (1 - y))
    s = np.where(np.isfinite(s), s, 0.0)
    if where is not None:
        s = np.where(where, s, 0.0)
    if s.size == 0:
        return None
    return np.sum(s, axis=axes if s.ndim else None, keepdims=True) > float(np.finfo(dtype).max) / 2


@fuzz()
@given(case=softmax_cases(), keepdims=st.booleans())
def test_logsumexp_matches_portable(case, keepdims):
    x, axis, where = case
    pair = run_both(sa.logsumexp, [x], {"axis": axis, "where": where, "keepdims": keepdims})
    if pair is None:
        return
    got, ref = pair
    axes = reduced(x.shape, axis)
    n = math.prod(x.shape[k] for k in axes) if x.ndim else 1
    atol, rtol = _softmax_tolerance("logsumexp", n, None, got.dtype)
    assert_matches(got, ref, atol, rtol, "logsumexp")


# ================================================================ losses
#
# A loss's error on each path is a few roundings of every term it adds up,
# so its tolerance is eps * (ULPS + n) times the magnitude of those terms,
# per sample: LOSS_SCALES below give, in float64, one magnitude per sample
# for the loss (L) and one for its gradient entries (G), from the logits'
# largest finite magnitude Z, the class count C, the class weight W and the
# loss's own parameters. A reduction adds the N per-sample values: the
# kernels sum them in float64, the portable path in the dtype (N eps
# relatively, on the sum of the per-sample losses' magnitudes).
#
# The gradient of a sample whose loss is not finite (an overflow such as
# comp_sum_loss's exp((tau - 1) (-log p_y)), or an infinite target, which
# validation lets through) is not compared: there the kernels' A p_c + B form
# gives NaN (inf * 0 + B) where the portable path gives +-inf.

def _per_sample(x64, axis, fn):
    """fn over each sample's finite entries (classes along axis), 0 where none."""
    finite = np.isfinite(x64)
    return fn(np.where(finite, x64, 0.0), finite, axis)


def _max_abs(x64, axis):
    if x64.shape[axis] == 0:
        return np.zeros(np.delete(x64.shape, axis))
    return _per_sample(x64, axis, lambda v, f, a: np.max(np.abs(v), axis=a))


def _std_ratio(x64, axis):
    """Z / sigma per sample: how many digits standardizing the logits loses
    (1 where all finite logits are equal, so sigma is 0 exactly)."""
    z = _max_abs(x64, axis)
    spread = np.ptp(np.where(np.isfinite(x64), x64, 0.0), axis=axis)
    sigma = np.std(np.where(np.isfinite(x64), x64, 0.0), axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 0, (z + 1) / sigma, 1.0), np.where(spread > 0, sigma, 1.0)


def _max_of(x):
    """The largest finite value of x's floating dtype (float64 for integers)."""
    dtype = x.dtype if x.dtype.kind == "f" else np.float64
    return float(np.finfo(dtype).max)


def _class_weight_of(weight, target, C):
    """w[y] per sample (1 without weight; 0 at ignored or invalid entries)."""
    if weight is None:
        return np.ones(target.shape)
    w = np.asarray(weight, np.float64)
    t = np.asarray(target, np.int64)
    inside = (t >= 0) & (t < C)
    return np.where(inside, w[np.clip(t, 0, max(C - 1, 0))], 0.0)


INDEX_LOSSES = {
    # name: (extra keyword strategies, supports ignore_index, weight keyword)
    "cross_entropy": ({"label_smoothing": st.sampled_from([0.0, 0.0, 0.1, 1.0])}, True, "weight"),
    "nll_loss": ({}, True, "weight"),
    "z_loss": ({"a": st.sampled_from([1.0, 0.5, 10.0]), "b": st.sampled_from([0.0, 1.5, -2.0])},
               True, "weight"),
    "focal_loss": ({"gamma": st.sampled_from([0.0, 0.5, 2.0])}, True, "alpha"),
    "comp_sum_loss": ({"tau": st.sampled_from([0.0, 0.5, 1.0, 1.7, 2.0, 3.0])}, True, "weight"),
    "generalized_cross_entropy": ({"q": st.sampled_from([0.3, 0.7, 1.0])}, True, "weight"),
    "mae_loss": ({}, True, "weight"),
    "multi_margin_loss": ({"p": st.sampled_from([1, 2]), "margin": st.sampled_from([1.0, 0.0, -0.5, 2.0]),
                           "form": st.sampled_from(["weston_watkins", "crammer_singer"])},
                          False, "weight"),
    "logsumexp_penalty": ({"weight": st.sampled_from([1.0, 1e-3, 0.0])}, False, None),
}


def _loss_scales(name, x64, axis, target, weight, params):
    """(L, G): per-sample magnitudes of the loss's terms and of its gradient
    entries (see the section's comment)."""
    C = x64.shape[axis]
    Z = _max_abs(x64, axis)
    if name == "logsumexp_penalty":
        w = params["weight"]
        return w * (Z + C + 1) ** 2, w * (Z + C + 1) * (C + 1)
    W = _class_weight_of(weight, target, C) if target is not None else np.ones(Z.shape)
    if name == "nll_loss":
        return W * (Z + 1), W
    if name == "multi_margin_loss":
        terms = (abs(params["margin"]) + 2 * Z + 1) ** params["p"]
        return W * C * terms, W * C * terms
    if name == "z_loss":
        ratio, sigma = _std_ratio(x64, axis)
        spread = C * ratio + abs(params["b"]) + math.sqrt(C)
        return W * spread, W * spread * 3 / sigma
    # softmax-based: log p is off by (Z + n) eps; powers (focal's gamma,
    # comp-sum's tau - 1) multiply relative errors.
    power = 1 + params.get("gamma", 0.0) + abs(params.get("tau", 1.0) - 1) + params.get("q", 0.0)
    return W * (2 * Z + C + 1) * power * 2, W * (C + 1) * power * 2


SIGNED_TARGETS = (np.int64, np.int64, np.int32, np.int16)
TARGET_DTYPES = SIGNED_TARGETS + (np.uint8,)


@st.composite
def index_targets(draw, shape, axis, ignore_index, invalid, dtypes=TARGET_DTYPES):
    """Class indices of shape without axis, some equal to ignore_index, one
    outside [0, C) when invalid."""
    C = shape[axis]
    tshape = shape[:axis] + shape[axis + 1:]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = rng.integers(0, max(C, 1), tshape)
    if ignore_index is not None and t.size:
        t[rng.random(tshape) < draw(st.sampled_from([0.2, 1.0]))] = ignore_index
    if invalid and t.size:
        t.flat[draw(st.integers(0, t.size - 1))] = draw(st.sampled_from([C, -1, C + 1000]))
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    with np.errstate(over="ignore"):
        t = t.astype(dtype)     # wraps -100 in uint8: then an invalid class, on both paths
    return draw(laid_out(t))


@st.composite
def class_weights(draw, C, invalid):
    kind = draw(st.sampled_from(["none", "none", "random", "zeros", "ints"]))
    if kind == "none" and not invalid:
        return None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.random(C) * 2
    if kind == "zeros":
        w[rng.random(C) < 0.5] = 0.0
    w = w.astype(draw(st.sampled_from([np.float64, np.float32]))) if kind != "ints" else np.round(w * 2).astype(np.int64)
    if invalid and C:
        w = w.astype(np.float64)
        w[draw(st.integers(0, C - 1))] = draw(st.sampled_from([-1.0, math.nan, math.inf]))
    return draw(laid_out(w, ("C", "strided", "negative", "byteswapped")))


@st.composite
def index_loss_cases(draw):
    name = draw(st.sampled_from(sorted(INDEX_LOSSES)))
    extras, ignores, weight_name = INDEX_LOSSES[name]
    shape = draw(shapes(min_dims=1, max_dims=3))
    x = draw(arrays(shape, dtypes=FLOATS + FLOATS + (np.int32,)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    kwargs = {"axis": axis, "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
              "return_grad": draw(st.booleans())}
    kwargs.update({k: draw(v) for k, v in extras.items()})
    invalid = draw(st.sampled_from(["none"] * 8 + ["target", "weight"]))
    target = None
    if name != "logsumexp_penalty":
        ignore_index = draw(st.sampled_from([None, None, -100, 0, 3])) if ignores else None
        if ignores:
            kwargs["ignore_index"] = ignore_index
        target = draw(index_targets(shape, axis % len(shape), ignore_index, invalid == "target",
                                    TARGET_DTYPES))
        if weight_name is not None:
            kwargs[weight_name] = draw(class_weights(shape[axis], invalid == "weight"))
    return name, x, target, kwargs


@st.composite
def probability_targets(draw, x):
    """cross_entropy's class probabilities: the logits' shape, >= 0, rows
    that sum to 1 or not, with zeros (and, rarely, a negative or NaN entry,
    which both paths must refuse)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = rng.random(x.shape)
    if draw(st.booleans()):
        t[rng.random(x.shape) < 0.5] = 0.0
    if t.size and draw(st.integers(0, 9)) == 0:
        t.flat[draw(st.integers(0, t.size - 1))] = draw(st.sampled_from([-0.5, math.nan, math.inf]))
    return draw(laid_out(t.astype(draw(st.sampled_from(FLOATS)))))


def _mean_denominator(name, target, weight, kwargs, n_samples):
    """The documented denominator of reduction="mean", in float64."""
    if target is None or name in ("multi_margin_loss",) or np.asarray(target).dtype.kind == "f":
        return float(n_samples)
    t = np.asarray(target, np.int64)
    ignore_index = kwargs.get("ignore_index")
    kept = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    if name == "focal_loss" or weight is None:
        return float(np.count_nonzero(kept))
    return float(np.asarray(weight, np.float64)[t[kept]].sum())


def _loss_tolerances(per_ref, L, G, reduction, denominator, n_classes, dtype, axis):
    """(loss atol, grad atol): per_ref is the portable path's reduction="none"
    result, L and G the per-sample magnitudes, n_classes the terms each
    sample adds up; G is spread along the gradient's class axis (None: G
    already has the gradient's shape)."""
    eps = eps_of(dtype)
    n_terms = ULPS + SUM_ULPS_PER_TERM * n_classes
    G = G if axis is None else np.expand_dims(G, axis)
    if reduction == "none":
        return eps * n_terms * L, eps * n_terms * G
    scale = 1.0
    if reduction == "mean":
        scale = 1.0 / denominator if denominator > 0 else math.inf
    per_abs = np.where(np.isfinite(per_ref), np.abs(per_ref), 0.0)
    loss_atol = eps * scale * (n_terms * L.sum() + (ULPS + per_ref.size) * per_abs.sum())
    if per_abs.sum() > float(np.finfo(dtype).max) / 2:
        # The portable path sums in the dtype, the kernels in float64: where
        # the sum nears the dtype's maximum only the former overflows (None:
        # compare no values).
        loss_atol = None
    return loss_atol, eps * n_terms * scale * G


def _portable_per_sample(name, args, kwargs):
    """The portable path's reduction="none" losses, as float64 NumPy."""
    none_kwargs = {k: to_strict(v) if isinstance(v, np.ndarray) else v
                   for k, v in dict(kwargs, reduction="none", return_grad=False).items()}
    with np.errstate(all="ignore"):
        per = getattr(sa, name)(*[to_strict(a) for a in args], **none_kwargs)
    return from_strict(per).astype(np.float64)


def _check_loss_pair(name, pair, args, kwargs, L, G, denominator, axis):
    got, ref = pair
    got_loss, got_grad = got if kwargs["return_grad"] else (got, None)
    ref_loss, ref_grad = ref if kwargs["return_grad"] else (ref, None)
    dtype = got_loss.dtype
    n_classes = args[0].shape[axis]
    per_ref = _portable_per_sample(name, args, kwargs)
    loss_atol, grad_atol = _loss_tolerances(per_ref, L, G, kwargs["reduction"], denominator,
                                            n_classes, dtype, axis)
    _assert_loss(got_loss, ref_loss, loss_atol, f"{name} loss")
    if kwargs["return_grad"]:
        assert_matches(got_grad, ref_grad, grad_atol, eps_of(dtype) * ULPS, f"{name} grad",
                       skip=np.expand_dims(~np.isfinite(per_ref), axis))


def _assert_loss(got, ref, atol, what):
    """assert_matches, or (atol None: a sum that overflows the dtype on the
    portable path only) the same type, dtype and shape."""
    if atol is None:
        assert isinstance(got, np.ndarray) and _native(got.dtype) == from_strict(ref).dtype
        assert got.shape == tuple(ref.shape), what
        return
    assert_matches(got, ref, atol, eps_of(got.dtype) * ULPS, what)


@fuzz(0.5)
@given(case=index_loss_cases())
def test_index_losses_match_portable(case):
    name, x, target, kwargs = case
    args = [x] if target is None else [x, target]
    pair = run_both(getattr(sa, name), args, kwargs)
    if pair is None:
        return
    axis = kwargs["axis"] % x.ndim
    weight = kwargs.get("alpha") if name == "focal_loss" else kwargs.get("weight")
    weight = weight if isinstance(weight, np.ndarray) else None
    params = {k: v for k, v in kwargs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    L, G = _loss_scales(name, np.asarray(x, np.float64), axis, target, weight, params)
    n_samples = x.size // x.shape[axis]
    denominator = _mean_denominator(name, target, weight, kwargs, n_samples)
    if name == "multi_margin_loss" and not np.all(
            (abs(kwargs["margin"]) + 2 * _max_abs(np.asarray(x, np.float64), axis) + 1)
            ** kwargs["p"] < _max_of(x)):
        # A hinge (squared) beyond the dtype's maximum overflows on the
        # portable path only (the kernel works in float64): 0 * inf is NaN
        # there for a zero class weight.
        return
    _check_loss_pair(name, pair, args, kwargs, L, G, denominator, axis)


@fuzz(0.3)
@given(data=st.data())
def test_cross_entropy_probabilities_match_portable(data):
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    x = data.draw(arrays(shape))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    target = data.draw(probability_targets(x))
    weight = data.draw(class_weights(shape[axis], invalid=False))
    kwargs = {"axis": axis, "weight": weight,
              "label_smoothing": data.draw(st.sampled_from([0.0, 0.0, 0.2, 1.0])),
              "reduction": data.draw(st.sampled_from(["mean", "sum", "none"])),
              "return_grad": data.draw(st.booleans())}
    pair = run_both(sa.cross_entropy, [x, target], kwargs)
    if pair is None:
        return
    axis %= x.ndim
    x64 = np.asarray(x, np.float64)
    C = x.shape[axis]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    # sum_c t_c w_c (-log p_c): each -log p_c is off by (2 Z + C) eps.
    t_w = np.sum(np.asarray(target, np.float64) * np.expand_dims(w, tuple(
        k for k in range(x.ndim) if k != axis)), axis=axis) + w.sum() / max(C, 1)
    Z = _max_abs(x64, axis)
    L, G = t_w * (2 * Z + C + 1), t_w * (C + 1)
    _check_loss_pair("cross_entropy", pair, [x, target], kwargs, L, G, x.size // max(C, 1), axis)


ELEMENTWISE = ("binary_cross_entropy_with_logits", "sigmoid_focal_loss", "kl_div")


@st.composite
def elementwise_cases(draw):
    name = draw(st.sampled_from(ELEMENTWISE))
    shape = draw(shapes(max_dims=3))
    x = draw(arrays(shape, dtypes=FLOATS + FLOATS + (np.int32,)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["binary", "unit", "any"]))
    t = {"binary": (rng.random(shape) < 0.5) * 1.0, "unit": rng.random(shape),
         "any": rng.standard_normal(shape) * 3}[kind]
    kwargs = {"reduction": draw(st.sampled_from(["mean", "sum", "none"])),
              "return_grad": draw(st.booleans())}
    if name == "binary_cross_entropy_with_logits":
        for key in ("weight", "pos_weight"):
            if draw(st.booleans()):
                pshape = tuple(1 if draw(st.booleans()) else n for n in shape)[draw(st.integers(0, len(shape))):]
                kwargs[key] = draw(laid_out(rng.random(pshape) * 3, ("C", "negative", "byteswapped")))
        t = t.astype(draw(st.sampled_from([np.float64, np.float32, np.int64]))) if kind == "binary" else t
    elif name == "sigmoid_focal_loss":
        kwargs.update(alpha=draw(st.sampled_from([0.25, -1.0, 1.0, 0.0])),
                      gamma=draw(st.sampled_from([0.0, 0.5, 2.0])))
    else:
        kwargs.update(log_target=draw(st.booleans()), from_logits=draw(st.booleans()),
                      reduction=draw(st.sampled_from(["mean", "batchmean", "sum", "none"])))
        if kwargs["from_logits"] and shape:
            kwargs["axis"] = draw(st.integers(-len(shape), len(shape) - 1))
        t = np.abs(t)
        if kwargs["log_target"]:
            with np.errstate(divide="ignore"):
                t = np.log(t)
    if t.size and t.dtype.kind == "f" and draw(st.integers(0, 9)) == 0:     # invalid (or borderline) entries
        pool = [math.nan, -1.0, math.inf, -math.inf]
        t.flat[draw(st.integers(0, t.size - 1))] = draw(st.sampled_from(pool))
    if t.dtype.kind == "f":
        t = t.astype(draw(st.sampled_from(FLOATS)))
    return name, x, draw(laid_out(t)), kwargs


def _elementwise_scales(name, x64, t64, kwargs):
    """(L, G) per element: the magnitudes of the terms of the loss and of its
    gradient (softplus(+-x) <= |x| + log 2, sigmoids <= 1)."""
    with np.errstate(all="ignore"):
        tmag = np.where(np.isfinite(t64), np.abs(t64), 0.0)
        xmag = np.where(np.isfinite(x64), np.abs(x64), 0.0)
    if name == "binary_cross_entropy_with_logits":
        factor = np.ones(x64.shape)
        for key in ("weight", "pos_weight"):
            if kwargs.get(key) is not None:
                factor = factor * (1 + np.broadcast_to(np.asarray(kwargs[key], np.float64), x64.shape))
        return factor * (1 + tmag) * (xmag + 1), factor * (1 + tmag)
    if name == "sigmoid_focal_loss":
        power = 1 + kwargs["gamma"]
        return (1 + tmag) * (xmag + 1) * power, (1 + tmag) ** 2 * power * 4
    t = np.exp(np.minimum(t64, 700)) if kwargs["log_target"] else tmag
    with np.errstate(all="ignore"):
        log_t = np.where(t > 0, np.abs(np.log(np.where(t > 0, t, 1.0))), 0.0)
    if not kwargs["from_logits"]:
        return t * (log_t + xmag + 1), t
    axis = kwargs.get("axis", -1) % x64.ndim
    Z = np.expand_dims(_max_abs(x64, axis), axis)
    C = x64.shape[axis]
    row_t = np.sum(np.where(np.isfinite(t), t, 0.0), axis=axis, keepdims=True)
    return t * (log_t + 2 * Z + C + 1), np.broadcast_to(row_t * (C + 1) + t, x64.shape)


@fuzz(0.5)
@given(case=elementwise_cases())
def test_elementwise_losses_match_portable(case):
    name, x, target, kwargs = case
    pair = run_both(getattr(sa, name), [x, target], kwargs)
    if pair is None:
        return
    got = pair[0][0] if kwargs["return_grad"] else pair[0]
    dtype = got.dtype
    L, G = _elementwise_scales(name, np.asarray(x, np.float64), np.asarray(target, np.float64), kwargs)
    per_ref = _portable_per_sample(name, [x, target], kwargs)
    n = max(x.size, 1)
    denominator = {"mean": float(n), "batchmean": float(x.shape[0] if x.ndim else 1)}.get(
        kwargs["reduction"], 1.0)
    reduction = "mean" if kwargs["reduction"] == "batchmean" else kwargs["reduction"]
    # Elementwise: the "samples" are the elements, each one term (from_logits:
    # a log-softmax over the class axis, whose length L and G already hold).
    loss_atol, grad_atol = _loss_tolerances(per_ref, L, G, reduction, denominator, 1, dtype, None)
    got_loss, ref_loss = (pair[0][0], pair[1][0]) if kwargs["return_grad"] else pair
    _assert_loss(got_loss, ref_loss, loss_atol, f"{name} loss")
    if kwargs["return_grad"]:
        overflowed = ~np.isfinite(per_ref)
        if kwargs.get("from_logits") and x.ndim:
            overflowed = np.any(overflowed, axis=kwargs.get("axis", -1), keepdims=True)
        assert_matches(pair[0][1], pair[1][1], grad_atol, eps_of(dtype) * ULPS, f"{name} grad",
                       skip=overflowed)


# ================================================================ linear_cross_entropy

@st.composite
def linear_cross_entropy_cases(draw):
    n, d, v = draw(sides()), draw(sides()), draw(sides())
    dtype = draw(st.sampled_from(FLOATS))
    emb = draw(laid_out(draw(values((n, d), dtype, regimes=("normal", "ties", "drawn"))), LAYOUTS))
    cls = draw(laid_out(draw(values((v, d), dtype, regimes=("normal", "ties", "drawn"))), LAYOUTS))
    if draw(st.integers(0, 19)) == 0:       # mismatched dtypes: a TypeError on both paths
        cls = cls.astype(np.float32 if dtype == np.float64 else np.float64)
    bias = None
    if draw(st.booleans()):
        bias = draw(laid_out(draw(values((v,), dtype, regimes=("normal", "equal"))), LAYOUTS))
    ignore_index = draw(st.sampled_from([None, None, -100, 0]))
    invalid = draw(st.integers(0, 9)) == 0
    target = draw(index_targets((n, v), 1, ignore_index, invalid, TARGET_DTYPES)) if v else np.zeros(n, np.int64)
    kwargs = {"bias": bias, "ignore_index": ignore_index,
              "label_smoothing": draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])),
              "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
              "chunk_size": draw(st.sampled_from([None, None, 1, 3, 16])),
              "return_grad": draw(st.booleans())}
    return emb, cls, target, kwargs


def _lce_tolerances(emb, cls, target, kwargs, dtype):
    """Per-sample loss and per-entry gradient bounds: a logit e_i . c_v + b_v
    is off by D eps times M_i = max_v (|e_i| . |c_v| + |b_v|) on each path
    (BLAS sums in any order); the loss adds a log-sum-exp over V entries and,
    with label smoothing, the sum of the V logits; each gradient entry sums N,
    V or D such terms."""
    n, d = emb.shape
    v = cls.shape[0]
    e, c = _finite_abs(emb), _finite_abs(cls)
    b = np.zeros(v) if kwargs["bias"] is None else _finite_abs(kwargs["bias"])
    M = (np.max(e @ c.T + b, axis=1) if v and n else np.zeros(n)) + 1
    K = eps_of(dtype) * (ULPS + n + d + v)
    t = np.asarray(target, np.int64)
    kept = np.ones(n, bool) if kwargs["ignore_index"] is None else t != kwargs["ignore_index"]
    s = 1.0
    if kwargs["reduction"] == "mean":
        s = 1.0 / kept.sum() if kept.any() else 0.0
    loss = K * 2 * M * (v if kwargs["label_smoothing"] else 1)
    if kwargs["reduction"] != "none":
        loss = loss.sum() * s
    c_max = np.max(c, axis=0) if v else np.zeros(d)
    grads = (K * s * 2 * M[:, None] * c_max[None, :],
             np.broadcast_to(K * s * 2 * (M @ e), (v, d)),
             np.full(v, K * s * 2 * M.sum()))
    return loss, grads


def _finite_abs(a):
    a = np.asarray(a, np.float64)
    return np.where(np.isfinite(a), np.abs(a), 0.0)


@fuzz(0.3)
@given(case=linear_cross_entropy_cases())
def test_linear_cross_entropy_matches_portable(case):
    emb, cls, target, kwargs = case
    pair = run_both(sa.linear_cross_entropy, [emb, cls, target], kwargs)
    if pair is None:
        return
    got, ref = pair
    got_loss, ref_loss = (got[0], ref[0]) if kwargs["return_grad"] else (got, ref)
    dtype = got_loss.dtype
    loss_atol, grad_atols = _lce_tolerances(emb, cls, target, kwargs, dtype)
    assert_matches(got_loss, ref_loss, loss_atol, eps_of(dtype) * ULPS, "linear_cross_entropy loss")
    if kwargs["return_grad"]:
        assert len(got[1]) == len(ref[1])
        for name, g, r, atol in zip(("embeddings", "classifier", "bias"), got[1], ref[1], grad_atols):
            assert_matches(g, r, atol, eps_of(dtype) * ULPS, f"linear_cross_entropy d_{name}")


# ================================================================ gating

@st.composite
def topk_cases(draw):
    shape = draw(shapes(min_dims=0, max_dims=3))
    x = draw(arrays(shape, dtypes=FLOATS + FLOATS + PROMOTED))
    axis = draw(st.integers(-len(shape), len(shape) - 1)) if shape else draw(st.sampled_from([0, -1]))
    n = shape[axis] if shape else 1
    k = draw(st.one_of(st.integers(0, min(n, 40)), st.integers(0, n + 1)))
    return x, k, {"axis": axis, "largest": draw(st.booleans()), "sorted": draw(st.booleans())}


def _by_index(values, indices, axis):
    """Both sorted along axis by index: sorted=False promises only the set."""
    order = np.argsort(indices, axis=axis, kind="stable")
    return np.take_along_axis(values, order, axis=axis), np.take_along_axis(indices, order, axis=axis)


@fuzz()
@given(case=topk_cases())
def test_topk_matches_portable(case):
    x, k, kwargs = case
    pair = run_both(sa.topk, [x, k], kwargs)
    if pair is None:
        return
    (got_values, got_indices), (ref_values, ref_indices) = pair
    if not kwargs["sorted"]:
        axis = kwargs["axis"]
        got_values, got_indices = _by_index(got_values, got_indices, axis)
        ref_values, ref_indices = (array_api_strict.asarray(a) for a in _by_index(
            from_strict(ref_values), from_strict(ref_indices), axis))
    assert_exact(got_indices, ref_indices, "topk indices")
    assert_exact(got_values, ref_values, "topk values")


def _gate_tolerance(z, inv_t, dtype):
    """softmax's bound (rtol per entry) for weights of rows of z."""
    n, gap = _slice_stats(z, (1,), None, inv_t)
    gap = np.max(gap, axis=1, keepdims=True) if gap.size else np.zeros((z.shape[0], 1))
    return _softmax_tolerance("softmax", n, gap, dtype)


@st.composite
def gating_cases(draw):
    shape = draw(shapes(min_dims=2, max_dims=2))
    dtype = draw(st.sampled_from(FLOATS + FLOATS + (np.int32,)))
    z = draw(laid_out(draw(values(shape, dtype, regimes=("normal", "ties", "equal", "drawn", "wide"))),
                      LAYOUTS))
    kwargs = {"order": draw(st.sampled_from(["softmax_topk", "topk_softmax"])),
              "renormalize": draw(st.booleans()),
              "temperature": draw(st.sampled_from([1.0, 0.5, 4.0])),
              "noise_std": draw(st.sampled_from([0.0, 0.0, 1.0])),
              "capacity_factor": draw(st.sampled_from([None, 0.5, 1.0, 2.0])),
              "return_aux": draw(st.booleans())}
    k = draw(st.integers(0, shape[1] + 1))
    return z, k, kwargs, draw(st.integers(0, 2**32 - 1))


@fuzz(0.5)
@given(case=gating_cases())
def test_topk_gating_matches_portable(case):
    z, k, kwargs, seed = case
    pair = run_both(sa.topk_gating, [z, k], dict(kwargs, rng=np.random.default_rng(seed)),
                    {"rng": np.random.default_rng(seed)})
    if pair is None:
        return
    got, ref = pair
    dtype = got.weights.dtype
    routed = np.asarray(z, np.float64)
    if kwargs["noise_std"]:     # the same draw as the function's
        routed = routed + kwargs["noise_std"] * np.random.default_rng(seed).standard_normal(z.shape)
    atol, rtol = _gate_tolerance(routed, 1.0 / kwargs["temperature"], dtype)
    assert_exact(got.indices, ref.indices, "topk_gating indices")
    assert_matches(got.weights, ref.weights, atol, rtol, "topk_gating weights")
    assert got.capacity == ref.capacity
    for field in ("positions", "kept"):
        if getattr(got, field) is None or getattr(ref, field) is None:
            assert getattr(got, field) is getattr(ref, field) is None, field
        else:
            assert_exact(getattr(got, field), getattr(ref, field), f"topk_gating {field}")
    if kwargs["return_aux"]:
        n, e = z.shape
        x64 = _finite_abs(z)
        Z = float(x64.max()) if x64.size else 0.0
        K = eps_of(dtype) * (ULPS + n + e)
        assert_exact(got.aux["expert_counts"], ref.aux["expert_counts"], "expert_counts")
        # sum_e f_e P_e * e, f_e <= k, P_e <= 1: e (k + 1) terms of rtol K
        assert_matches(got.aux["load_balancing_loss"], ref.aux["load_balancing_loss"],
                       K * e * (k + 1), 0.0, "load_balancing_loss")
        with np.errstate(over="ignore"):
            lse_squared = np.square(np.float64(Z) + e + 1)
        assert_matches(got.aux["router_z_loss"], ref.aux["router_z_loss"],
                       K * 2 * lse_squared, 0.0, "router_z_loss")


@st.composite
def dense_gate_cases(draw):
    shape = draw(shapes(min_dims=1, max_dims=3))
    z = draw(arrays(shape, dtypes=FLOATS + FLOATS + (np.int64,)))
    kwargs = {"temperature": draw(st.sampled_from([1.0, 0.3, 5.0])),
              "activation": draw(st.sampled_from([None, "sigmoid", "tanh", "relu"])),
              "threshold": draw(st.sampled_from([0.0, 0.0, 0.1, 0.5])),
              "renormalize": draw(st.booleans()),
              "axis": draw(st.integers(-len(shape), len(shape) - 1))}
    return z, kwargs


@fuzz(0.5)
@given(case=dense_gate_cases())
def test_dense_to_sparse_gating_matches_portable(case):
    z, kwargs = case
    pair = run_both(sa.dense_to_sparse_gating, [z], kwargs)
    if pair is None:
        return
    got, ref = pair
    dtype = got.dtype
    # The weights before the threshold, on the portable path: an entry within
    # rounding of the threshold may be kept by one path and not the other.
    dense = from_strict(sa.dense_to_sparse_gating(to_strict(z), **dict(kwargs, threshold=0.0))).astype(np.float64)
    axis = kwargs["axis"] % z.ndim
    with np.errstate(all="ignore"):
        scores = np.asarray(from_strict(_activated(to_strict(z), kwargs["activation"])), np.float64)
    n, gap = _slice_stats(scores, (axis,), None, 1.0 / kwargs["temperature"])
    atol, rtol = _softmax_tolerance("softmax", n, gap, dtype)
    # So may an entry within rounding of its slice's largest (always kept).
    slack = 2 * (atol + rtol * np.abs(dense))
    top = np.max(np.where(np.isnan(dense), -np.inf, dense), axis=axis, keepdims=True) if dense.size else dense
    near = (np.abs(dense - kwargs["threshold"]) <= slack) | ((dense != top) & (np.abs(dense - top) <= slack))
    if kwargs["threshold"] and near.any():
        return      # the kept set is not determined by the values
    # Renormalizing divides by a sum of kept weights: one more n eps.
    assert_matches(got, ref, atol, 2 * rtol, "dense_to_sparse_gating")


def _activated(z, activation):
    xp = array_api_strict
    z = xp.astype(z, xp.float64) if not xp.isdtype(z.dtype, "real floating") else z
    if activation == "sigmoid":
        return 1 / (1 + xp.exp(-z))
    if activation == "tanh":
        return xp.tanh(z)
    if activation == "relu":
        return xp.maximum(z, xp.zeros_like(z))
    return z


@st.composite
def gumbel_cases(draw):
    shape = draw(shapes(min_dims=1, max_dims=3))
    dtype = draw(st.sampled_from(FLOATS + FLOATS + (np.int32,)))
    z = draw(laid_out(draw(values(shape, dtype, regimes=("normal", "ties", "equal"))), LAYOUTS))
    return z, draw(st.integers(-len(shape), len(shape) - 1)), draw(st.integers(0, 2**32 - 1))


@fuzz(0.5)
@given(case=gumbel_cases(), tau=st.sampled_from([1.0, 0.1, 3.0]), hard=st.booleans())
def test_gumbel_softmax_matches_portable(case, tau, hard):
    """Both paths draw the noise on the host from the given Generator, so
    one seed gives them the same sample."""
    z, axis, seed = case
    pair = run_both(sa.gumbel_softmax, [z], {"tau": tau, "hard": hard, "axis": axis,
                                            "rng": np.random.default_rng(seed)},
                    {"rng": np.random.default_rng(seed)})
    if pair is None:
        return
    got, ref = pair
    noisy = np.asarray(z, np.float64) + np.random.default_rng(seed).gumbel(size=z.shape)
    n, gap = _slice_stats(noisy, (axis % z.ndim,), None, 1.0 / tau)
    atol, rtol = _softmax_tolerance("softmax", n, gap, got.dtype)
    if not hard:
        assert_matches(got, ref, atol, rtol, "gumbel_softmax")
        return
    soft = from_strict(sa.gumbel_softmax(to_strict(z), tau=tau, axis=axis,
                                         rng=np.random.default_rng(seed))).astype(np.float64)
    # The one-hot may differ only where the soft sample's two largest entries
    # are within rounding of each other.
    ref = from_strict(ref)
    differ = np.any(got != ref, axis=axis, keepdims=True)
    top = np.max(np.where(np.isnan(soft), -np.inf, soft), axis=axis, keepdims=True)
    close = np.sum(np.abs(soft - top) <= 2 * (atol + rtol * top), axis=axis, keepdims=True) > 1
    assert not (differ & ~close).any(), f"gumbel_softmax(hard=True): {got} vs {ref}"
    assert _native(got.dtype) == ref.dtype and got.shape == ref.shape


@fuzz(0.5)
@given(case=gumbel_cases(), k=st.integers(0, 70))
def test_gumbel_topk_matches_portable(case, k):
    z, axis, seed = case
    pair = run_both(sa.gumbel_topk, [z, k], {"axis": axis, "rng": np.random.default_rng(seed)},
                    {"rng": np.random.default_rng(seed)})
    if pair is not None:
        assert_exact(*pair, "gumbel_topk")


# ================================================================ boxes

@st.composite
def box_arrays(draw, n=None, batch=False):
    """Boxes (n, 4), or (..., 4) with batch: on a coarse grid (duplicates,
    touching boxes, exact IoU ties) or random, with degenerate boxes and,
    now and then, NaN, +-inf or huge coordinates."""
    if batch:
        shape = draw(shapes(min_dims=0, max_dims=2)) + (draw(st.sampled_from([4, 4, 4, 3])),)
    else:
        shape = (draw(st.one_of(sides(), st.integers(68, 300))) if n is None else n, 4)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["grid", "random", "wide"]))
    lead = shape[:-1] + (2,)
    if kind == "grid":
        xy = rng.integers(0, 6, lead) * 0.5
        wh = rng.integers(-1, 5, lead) * 0.5
    else:
        scale = 1.0 if kind == "random" else 10.0 ** rng.uniform(-20, 30, lead)
        xy = rng.standard_normal(lead) * 10 * scale
        wh = rng.exponential(5.0, lead) * scale * np.where(rng.random(lead) < 0.1, -1, 1)
    dtype = draw(st.sampled_from(FLOATS))
    with np.errstate(over="ignore"):
        boxes = np.concatenate([xy, xy + wh], axis=-1)[..., :shape[-1]].astype(dtype)
    if boxes.size and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            boxes.flat[draw(st.integers(0, boxes.size - 1))] = draw(st.sampled_from(specials(dtype)))
    return draw(laid_out(boxes))


@st.composite
def scores_for(draw, n, dtype, soft=False):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "levels", "constant"] + (["signed"] if soft else [])))
    s = {"uniform": rng.random(n), "levels": rng.integers(0, 4, n) / 4.0, "constant": np.full(n, 0.5),
         "signed": rng.standard_normal(n)}[kind]
    s = s.astype(dtype)
    if n and draw(st.booleans()):
        pool = [math.nan, -0.0, 0.0] + ([] if soft else [math.inf, -math.inf])
        for _ in range(draw(st.integers(1, 3))):
            s[draw(st.integers(0, n - 1))] = draw(st.sampled_from(pool))
    return draw(laid_out(s.astype(draw(st.sampled_from([dtype, dtype, np.float32, np.float64]))),
                         ("C", "strided", "negative", "byteswapped", "read-only", "misaligned")))


@st.composite
def labels_for(draw, n):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = draw(st.sampled_from([np.array([0]), np.array([0, 1, 2]), np.array([-7, 2**40, 3, -2**62])]))
    labels = pool[rng.integers(0, pool.size, n)]
    dtype = draw(st.sampled_from([np.int64, np.int32, np.int16]))
    with np.errstate(over="ignore"):
        labels = labels.astype(dtype)
    return draw(laid_out(labels, ("C", "strided", "negative", "byteswapped")))


@fuzz()
@given(boxes=box_arrays(batch=True), fmts=st.tuples(*[st.sampled_from(["xyxy", "xywh", "cxcywh"])] * 2))
def test_box_convert_and_area_match_portable_to_the_bit(boxes, fmts):
    pair = run_both(sa.box_convert, [boxes, *fmts])
    if pair is not None:
        assert_exact(*pair, f"box_convert {fmts}")
    pair = run_both(sa.box_area, [boxes])
    if pair is not None:
        assert_exact(*pair, "box_area")


@fuzz(0.5)
@given(boxes1=box_arrays(), boxes2=box_arrays())
def test_box_iou_matches_portable_to_the_bit(boxes1, boxes2):
    pair = run_both(sa.box_iou, [boxes1, boxes2])
    if pair is not None:
        assert_exact(*pair, "box_iou")


@st.composite
def nms_cases(draw, soft=False):
    boxes = draw(box_arrays())
    n = boxes.shape[0]
    scores = draw(scores_for(n, boxes.dtype, soft))
    labels = draw(labels_for(n)) if draw(st.booleans()) else None
    max_output = draw(st.one_of(st.none(), st.integers(0, n + 2)))
    return boxes, scores, labels, max_output


@fuzz(0.5)
@given(case=nms_cases(), iou_threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]),
       score_threshold=st.sampled_from([None, None, 0.25, 0.5, -math.inf]))
def test_nms_matches_portable(case, iou_threshold, score_threshold):
    boxes, scores, labels, max_output = case
    kwargs = {"score_threshold": score_threshold, "max_output": max_output}
    if labels is None:
        pair = run_both(sa.nms, [boxes, scores, iou_threshold], kwargs)
    else:
        pair = run_both(sa.batched_nms, [boxes, scores, labels, iou_threshold], kwargs)
    if pair is not None:
        assert_exact(*pair, "nms" if labels is None else "batched_nms")


@fuzz(0.3)
@given(case=nms_cases(soft=True), method=st.sampled_from(["linear", "gaussian"]),
       sigma=st.sampled_from([0.5, 0.1]), iou_threshold=st.sampled_from([0.0, 0.3, 0.7]),
       score_threshold=st.sampled_from([0.001, 0.0, 0.3, -1.0]))
def test_soft_nms_matches_portable(case, method, sigma, iou_threshold, score_threshold):
    boxes, scores, labels, max_output = case
    kwargs = {"method": method, "sigma": sigma, "iou_threshold": iou_threshold,
              "score_threshold": score_threshold, "max_output": max_output}
    if labels is None:
        pair = run_both(sa.soft_nms, [boxes, scores], kwargs)
    else:
        pair = run_both(sa.batched_soft_nms, [boxes, scores, labels], kwargs)
    if pair is None:
        return
    (got_indices, got_scores), ref = pair
    if method == "linear":      # 1 - iou and the products: the same arithmetic on both paths
        assert_exact(got_indices, ref[0], "soft_nms indices")
        assert_exact(got_scores, ref[1], "soft_nms scores")
        return
    # The Gaussian weight is the C library's exp in the kernel, NumPy's on
    # the portable path (soft_nms_tolerance).
    ref_indices, ref_scores = (from_strict(a) for a in ref)
    assert _native(got_scores.dtype) == ref_scores.dtype and got_indices.dtype == ref_indices.dtype
    assert_soft_nms_close((got_indices, got_scores.astype(ref_scores.dtype)),
                          (ref_indices, ref_scores), boxes=boxes, score_threshold=score_threshold,
                          labels=labels, what="soft_nms" if labels is None else "batched_soft_nms")


# ================================================================ bugs found here
#
# Each of these was found by the tests above, fixed, and kept as a plain
# regression test; while a bug was open its test was a strict xfail and its
# inputs were left out of the strategies.

def test_linear_cross_entropy_takes_a_non_native_byte_order():
    """A big-endian float32 classifier beside float32 embeddings used to be
    refused (the dtype check compared byte orders)."""
    emb = np.ones((2, 3), np.float32)
    cls = np.ones((4, 3), np.dtype(np.float32).newbyteorder())
    expected = sa.linear_cross_entropy(emb, cls.astype(np.float32), np.array([0, 1]))
    assert sa.linear_cross_entropy(emb, cls, np.array([0, 1])) == expected


def test_gumbel_softmax_of_non_native_float32_stays_float32():
    """'>f4' input used to draw float64 noise and return float64."""
    z = np.zeros(3, np.dtype(np.float32).newbyteorder())
    assert sa.gumbel_softmax(z, rng=np.random.default_rng(0)).dtype == np.float32


def test_linear_cross_entropy_unsigned_target_ignore_index():
    """Ignored samples were marked -1 in the target's own dtype, which wraps
    to 255 in uint8: they were not ignored on the compiled path."""
    rng = np.random.default_rng(0)
    emb, cls = rng.standard_normal((2, 3)), rng.standard_normal((4, 3))
    signed = sa.linear_cross_entropy(emb, cls, np.array([0, 1]), ignore_index=1, reduction="sum")
    unsigned = sa.linear_cross_entropy(emb, cls, np.array([0, 1], np.uint8), ignore_index=1,
                                       reduction="sum")
    assert unsigned == signed


def test_unsigned_target_negative_ignore_index_on_the_portable_path():
    """target != -100 on a uint8 array_api_strict target raised OverflowError."""
    logits = array_api_strict.asarray(np.zeros((2, 3)))
    target = array_api_strict.asarray(np.array([0, 2], np.uint8))
    loss = sa.cross_entropy(logits, target, ignore_index=-100)
    assert float(loss) == pytest.approx(math.log(3))


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_infinite_binary_target_is_refused(backend):
    """Infinite targets used to pass validation, and the two paths' algebra
    then gave -inf and NaN."""
    convert = np.asarray if backend == "numpy" else to_strict
    with pytest.raises(ValueError, match="target must be finite"):
        sa.binary_cross_entropy_with_logits(convert(np.array([0.5])), convert(np.array([-np.inf])))
    with pytest.raises(ValueError, match="target must be finite"):
        sa.binary_cross_entropy_with_logits(np.array([0.5]), np.array([np.inf]))


# ================================================================ fixed bugs
#
# Found by the tests above and fixed; kept as plain regression tests.

def test_elementwise_losses_of_empty_rows_sum_to_zero():
    """Rows of no elements (shape (2, 0), or (0,) as one empty row) used to
    leave the kernel's per-row sums uninitialized: "sum" returned garbage."""
    for _ in range(20):     # garbage in freed memory that np.empty may hand back
        np.full(64, np.nan).sum()
        for shape in [(0,), (2, 0), (3, 1, 0)]:
            x = np.zeros(shape, np.float32)
            assert sa.binary_cross_entropy_with_logits(x, x, reduction="sum") == 0
            assert sa.sigmoid_focal_loss(x, x, reduction="sum") == 0
            assert sa.kl_div(x, x, reduction="sum") == 0


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_cross_entropy_probabilities_on_rows_with_no_finite_maximum(backend):
    """A class with zero target weight contributes 0 (docs/losses.md), also
    in a row whose maximum is not finite; a one-hot target gives what the
    index target gives. The kernel used to return NaN for every such row."""
    convert = np.asarray if backend == "numpy" else to_strict
    rows = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [np.nan, 1.0]])
    probabilities = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    loss = sa.cross_entropy(convert(rows), convert(probabilities), reduction="none")
    index_loss = sa.cross_entropy(convert(rows[1:2]), convert(np.array([1])), reduction="none")
    np.testing.assert_array_equal(np.asarray(from_strict(loss) if backend != "numpy" else loss),
                                  [0.0, np.inf, np.nan])
    assert float(index_loss[0]) == np.inf


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("logits, target, a, b", [
    (np.full((1, 10), 0.00012573, np.float32), 8, 1.0, 1.5),
    (np.full((1, 7), 0.00034558), 5, 1.0, 0.0),     # float64: the kernel's double mean rounds too
])
def test_z_loss_of_equal_logits(backend, logits, target, a, b):
    """Equal logits have sigma 0, hence zeta 0 and loss softplus(a b) / a,
    even where their mean rounds away from them (both paths used to
    standardize by the rounding error: zeta = +-1)."""
    convert = np.asarray if backend == "numpy" else to_strict
    loss = sa.z_loss(convert(logits), convert(np.array([target])), a=a, b=b)
    assert float(loss) == pytest.approx(math.log1p(math.exp(a * b)) / a, rel=1e-6)


def test_binary_cross_entropy_byte_swapped_logits_with_broadcast_weight():
    """Casting a broadcast weight to the native dtype could give rows whose
    entries are not one element apart, and the kernel read the wrong
    weights."""
    x = np.array([[[1.2573e-4, -1.321e-4], [6.4042e-4, 1.049e-4]]], np.float32)
    t = np.array([[[0, 1], [1, 1]]], np.float32)
    w = np.array([2.5, 0.1])
    for name in ("weight", "pos_weight"):
        native = sa.binary_cross_entropy_with_logits(x, t, reduction="none", **{name: w})
        swapped = sa.binary_cross_entropy_with_logits(x.astype(">f4"), t, reduction="none",
                                                      **{name: w})
        np.testing.assert_array_equal(swapped, native)


def _plain_multi_margin(logits, target, p, form, weight):
    """multi_margin_loss per sample, written plainly (finite rows only)."""
    losses = []
    for z, y in zip(logits, target):
        hinges = [max(0.0, 1.0 - z[y] + z[c]) ** p for c in range(len(z)) if c != y]
        loss = sum(hinges) / len(z) if form == "weston_watkins" else max(hinges, default=0.0)
        losses.append(weight[y] * loss)
    return np.array(losses)


@pytest.mark.parametrize("form", ["weston_watkins", "crammer_singer"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin_loss_nan_hinges(form, p, weighted):
    """A NaN hinge margin - z_y + z_c for some c != y (NaN logits, or
    -inf - -inf) makes the sample's loss and its gradient row NaN on both
    paths; the target's own class is no hinge, so with one class the loss
    is 0 whatever the logit. The portable path used to drop NaN hinges
    (h > 0 is False for NaN), the kernel to count the target's own."""
    inf, nan = np.inf, np.nan
    cases = [
        # NaN logit; -inf - -inf; a finite row; NaN beside the target; NaN target logit
        (np.array([[0.0, nan, 1.0], [-inf, -inf, 0.5], [0.5, -1.0, 2.0], [nan, 1.0, 0.0],
                   [0.5, nan, 2.0]]),
         np.array([0, 0, 1, 1, 1]), [True, True, False, True, True]),
        (np.array([[-inf], [nan], [3.0], [inf]]), np.array([0, 0, 0, 0]), [False] * 4),
    ]
    for logits, target, nan_rows in cases:
        C = logits.shape[1]
        weight = np.array([0.5, 2.0, 0.0][:C]) if weighted else None
        kwargs = {"p": p, "form": form, "reduction": "none", "return_grad": True}
        loss, grad = sa.multi_margin_loss(logits, target, weight=weight, **kwargs)
        ref_loss, ref_grad = sa.multi_margin_loss(to_strict(logits), to_strict(target),
                                                  weight=to_strict(weight), **kwargs)
        ref_loss, ref_grad = from_strict(ref_loss), from_strict(ref_grad)
        nan_rows = np.array(nan_rows)
        for got, ref in ((loss, ref_loss), (grad, ref_grad)):
            np.testing.assert_allclose(got, ref, rtol=1e-14, atol=0)     # NaN where NaN
        np.testing.assert_array_equal(np.isnan(loss), nan_rows)
        np.testing.assert_array_equal(np.isnan(grad).all(axis=1), nan_rows)
        assert not np.isnan(grad[~nan_rows]).any()
        w = np.ones(C) if weight is None else weight
        expected = _plain_multi_margin(logits[~nan_rows], target[~nan_rows], p, form, w)
        np.testing.assert_allclose(loss[~nan_rows], expected, rtol=1e-14)
        if C == 1:
            np.testing.assert_array_equal(grad, 0.0)
        for reduction in ("sum", "mean"):
            total = sa.multi_margin_loss(logits, target, weight=weight, p=p, form=form,
                                         reduction=reduction)
            assert np.isnan(total) == nan_rows.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [0.25, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_focal_loss_of_infinite_logit(dtype, alpha, gamma):
    """At x = +-inf the loss and gradient are their limits, on both paths:
    ce = (1 - t) softplus(x) + t softplus(-x) and (1 - p_t)^gamma give +inf
    unless the coefficient of the infinite softplus is 0, and the gradient
    tends to alpha_t (p - t) (1 - p_t)^gamma. The kernel used to take
    x t = inf * 0 = NaN (torchvision's formula gives NaN there too)."""
    x = np.array([np.inf, -np.inf, np.inf, -np.inf, np.inf, -np.inf], dtype)
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.3, 0.3], dtype)
    t64 = t.astype(np.float64)
    p = (x > 0).astype(np.float64)
    alpha_t = np.ones(len(x)) if alpha < 0 else alpha * t64 + (1 - alpha) * (1 - t64)
    miss = p * (1 - t64) + (1 - p) * t64
    infinite_softplus = np.where(x > 0, 1 - t64, t64) != 0
    expected_loss = np.where(infinite_softplus, np.inf, 0.0)
    expected_grad = alpha_t * (p - t64) * miss ** gamma
    kwargs = {"alpha": alpha, "gamma": gamma, "return_grad": True}
    loss, grad = sa.sigmoid_focal_loss(x, t, **kwargs)
    ref_loss, ref_grad = sa.sigmoid_focal_loss(to_strict(x), to_strict(t), **kwargs)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    for got in (loss, from_strict(ref_loss)):
        np.testing.assert_array_equal(got, expected_loss)
    for got in (grad, from_strict(ref_grad)):
        np.testing.assert_allclose(got, expected_grad, rtol=rtol, atol=0)
    # Independent check of the gradient's limit: torchvision's formula with
    # autograd at |x| = 60, where p (1 - p) is below 1e-25.
    torch = pytest.importorskip("torch")
    xt = torch.tensor(np.where(x > 0, 60.0, -60.0), requires_grad=True)
    tt = torch.tensor(t64)
    pt = torch.sigmoid(xt)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(xt, tt, reduction="none")
    p_t = pt * tt + (1 - pt) * (1 - tt)
    torch_loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        torch_loss = (alpha * tt + (1 - alpha) * (1 - tt)) * torch_loss
    torch_loss.sum().backward()
    torch_grad = xt.grad.numpy()
    usable = np.isfinite(torch_grad)        # 0^(gamma - 1) * 0 is NaN in autograd
    np.testing.assert_allclose(grad[usable], torch_grad[usable], rtol=rtol, atol=1e-20)
