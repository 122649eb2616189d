"""softarray.topk (the gating family) through every backend, against
independent references written here:

* a NumPy reference: np.lexsort on (index, value, is-NaN) keys, so NaN
  ranks above every number, -0.0 ties with 0.0, and ties go to the lower
  index, as torch.topk's documented semantics plus the tie rule say;
* torch.sort(stable=True): equal keys keep their index order, NaN sorts
  first when descending and last when ascending, -0.0 ties with 0.0, so its
  first k entries are exactly the expected (values, indices);
* torch.topk itself. With torch 2.13 CPU it does NOT break ties by the lower
  index (checked on a 1000-long row of values in {0, 1, 2}: for k = 2, 8,
  300 and 1000, largest or not, its indices are not lower-index-first), so
  against it values are compared on every input and indices only on rows of
  distinct values.

sorted=False results are compared as sets of (value, index) pairs, both
sides put in index order first. Expected values are never taken from
softarray itself.
"""
import math
import warnings

import numpy as np
import pytest
import scipy.special
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softarray as sa
from layouts import memory_layouts

try:
    import torch
except ImportError:  # torch is an optional peer; torch-only tests skip
    torch = None


# ===================================================== references

def np_topk(x, k, axis=-1, largest=True):
    """(values, int64 indices) by a lexicographic sort of (is-NaN, value,
    index) along axis. float64 keys hold float32, int32 and bool exactly."""
    a = np.moveaxis(np.asarray(x), axis, -1)
    v = a.astype(np.float64)
    nan = np.isnan(v)
    v = np.where(nan, 0.0, v) + 0.0                  # -0.0 + 0.0 is +0.0: signed zeros tie
    index = np.broadcast_to(np.arange(a.shape[-1]), a.shape)
    keys = (index, -v, ~nan) if largest else (index, v, nan)   # last key is the primary one
    order = np.lexsort(keys, axis=-1)[..., :k].astype(np.int64)
    values = np.take_along_axis(a, order, axis=-1)
    return np.moveaxis(values, -1, axis), np.moveaxis(order, -1, axis)


def torch_sort_topk(x, k, axis=-1, largest=True):
    """The first k entries of torch's stable sort."""
    values, indices = torch.sort(torch.from_numpy(np.array(x)), dim=axis, descending=largest,
                                 stable=True)
    return values.narrow(axis, 0, k).numpy(), indices.narrow(axis, 0, k).numpy()


def by_index(values, indices, axis):
    """Both put in index order along axis: sorted=False results as sets."""
    order = np.argsort(indices, axis=axis, kind="stable")
    return np.take_along_axis(values, order, axis), np.take_along_axis(indices, order, axis)


def assert_same_entries(got, want):
    """Bitwise equal: NaN where NaN, and a -0.0 stays -0.0 (a value is one
    of x's own entries)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype.kind == "f":
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(got, want)


def check_topk(got_values, got_indices, x, k, axis, largest, sorted):
    """Against the NumPy reference; values also against x at the returned
    indices."""
    x = np.asarray(x)
    want_values, want_indices = np_topk(x, k, axis, largest)
    shape = list(x.shape)
    shape[axis] = k
    assert got_values.shape == tuple(shape) and got_indices.shape == tuple(shape)
    assert got_values.dtype == x.dtype and got_indices.dtype == np.int64
    assert_same_entries(got_values, np.take_along_axis(x, got_indices, axis))
    if not sorted:
        got_values, got_indices = by_index(got_values, got_indices, axis)
        want_values, want_indices = by_index(want_values, want_indices, axis)
    assert_same_entries(got_values, want_values)
    np.testing.assert_array_equal(got_indices, want_indices)


def run(backend, x, k, **opts):
    """sa.topk on backend's array of x: checks the result types and that the
    input is untouched, returns NumPy (values, indices)."""
    xb = backend.asarray(x)
    before = np.array(backend.to_numpy(xb))
    values, indices = sa.topk(xb, k, **opts)
    assert type(values) is type(xb) and type(indices) is type(xb)
    assert values.dtype == xb.dtype
    got_values, got_indices = backend.to_numpy(values), backend.to_numpy(indices)
    assert got_indices.dtype == np.int64
    assert_same_entries(backend.to_numpy(xb), before)
    return got_values, got_indices


def tied(rng, shape, dtype, levels=5, special=0.1):
    """Small integer values (many ties) with NaN, +-inf and -0.0 sprinkled
    in at rate `special` (floating dtypes)."""
    if np.dtype(dtype) == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    x = rng.integers(-levels, levels + 1, shape).astype(dtype)
    if np.dtype(dtype).kind == "f":
        pick = rng.random(shape) < special
        x[pick] = rng.choice(np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype), pick.sum())
    return x


FLOATS = [np.float32, np.float64]
ALL_DTYPES = FLOATS + [np.int32, np.bool_]


# ===================================================== the references themselves

def test_reference_on_a_hand_checked_row():
    x = np.array([1.0, 3.0, np.nan, 3.0, -0.0, np.inf, 0.0, np.nan, -np.inf])
    values, indices = np_topk(x, 9)
    np.testing.assert_array_equal(indices, [2, 7, 5, 1, 3, 0, 4, 6, 8])
    values, indices = np_topk(x, 9, largest=False)
    np.testing.assert_array_equal(indices, [8, 4, 6, 0, 1, 3, 5, 2, 7])
    assert np.signbit(values[1]) and not np.signbit(values[2])


# ===================================================== every backend

@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("sorted", [True, False])
def test_every_backend(backend, dtype, largest, sorted):
    rng = np.random.default_rng(1)
    x = tied(rng, (6, 9), dtype, levels=3, special=0.25)
    for k in (0, 1, 3, 9):
        got = run(backend, x, k, largest=largest, sorted=sorted)
        check_topk(*got, x, k, -1, largest, sorted)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_axis_of_a_3d_array(backend, axis):
    x = tied(np.random.default_rng(2), (4, 5, 6), np.float64, levels=2, special=0.2)
    for largest in (True, False):
        got = run(backend, x, 3, axis=axis, largest=largest)
        check_topk(*got, x, 3, axis, largest, True)


def test_defaults_are_last_axis_largest_sorted(backend):
    x = np.array([[0.5, 2.0, -1.0, 2.0], [np.nan, 1.0, 1.0, -np.inf]])
    got_values, got_indices = run(backend, x, 2)
    np.testing.assert_array_equal(got_indices, [[1, 3], [0, 1]])
    assert_same_entries(got_values, np.array([[2.0, 2.0], [np.nan, 1.0]]))


@pytest.mark.parametrize("shape, axis, k", [
    ((5,), 0, 0), ((3, 4), 1, 0), ((0, 5), 1, 2), ((3, 0), 1, 0), ((0,), 0, 0),
    ((2, 0, 3), 2, 1), ((1,), 0, 1), ((4, 1), 1, 1), ((4, 1), 0, 4)])
def test_empty_and_single(backend, shape, axis, k):
    x = tied(np.random.default_rng(3), shape, np.float32)
    got = run(backend, x, k, axis=axis)
    check_topk(*got, x, k, axis, True, True)


def test_numpy_integer_k(backend):
    x = tied(np.random.default_rng(4), (3, 7), np.float64)
    got = run(backend, x, np.int64(4), largest=False)
    check_topk(*got, x, 4, -1, False, True)


def test_special_values(backend):
    """NaN above +inf, -inf at the bottom, -0.0 tying with 0.0 (lower index
    first) and keeping its sign."""
    x = np.array([0.0, -np.inf, np.nan, -0.0, np.inf, np.nan, 0.0, -0.0, 1.0], np.float32)
    values, indices = run(backend, x, 9)
    np.testing.assert_array_equal(indices, [2, 5, 4, 8, 0, 3, 6, 7, 1])
    assert_same_entries(values, x[[2, 5, 4, 8, 0, 3, 6, 7, 1]])
    values, indices = run(backend, x, 9, largest=False)
    np.testing.assert_array_equal(indices, [1, 0, 3, 6, 7, 8, 4, 2, 5])
    assert_same_entries(values, x[[1, 0, 3, 6, 7, 8, 4, 2, 5]])
    values, indices = run(backend, x, 3, largest=False)
    np.testing.assert_array_equal(indices, [1, 0, 3])


def test_integer_extremes(backend):
    info = np.iinfo(np.int32)
    x = np.array([0, info.max, info.min, info.max, -1, info.min], np.int32)
    got = run(backend, x, 3)
    check_topk(*got, x, 3, 0, True, True)
    np.testing.assert_array_equal(got[1], [1, 3, 0])
    got = run(backend, x, 3, largest=False)
    np.testing.assert_array_equal(got[1], [2, 5, 4])


def test_torch_tensor_that_requires_grad():
    """Takes the portable path; the values' gradient lands at the indices."""
    torch = pytest.importorskip("torch")
    x = tied(np.random.default_rng(5), (4, 10), np.float64, special=0.0)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    values, indices = sa.topk(xt, 3)
    check_topk(values.detach().numpy(), indices.numpy(), x, 3, -1, True, True)
    values.sum().backward()
    want = np.zeros_like(x)
    np.put_along_axis(want, indices.numpy(), 1.0, axis=-1)
    np.testing.assert_array_equal(xt.grad.numpy(), want)


# ===================================================== against torch

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("n, k", [(7, 3), (50, 1), (50, 2), (50, 8), (1000, 300), (1000, 1000)])
def test_torch_references(dtype, largest, n, k):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = tied(rng, (5, n), dtype, levels=4, special=0.1)
    got = sa.topk(x, k, largest=largest)
    check_topk(*got, x, k, -1, largest, True)
    want_values, want_indices = torch_sort_topk(x, k, -1, largest)
    assert_same_entries(got[0], want_values)
    np.testing.assert_array_equal(got[1], want_indices)
    # torch.topk: values only (its tie order is unspecified) ...
    top = torch.topk(torch.from_numpy(x), k, dim=-1, largest=largest, sorted=True)
    np.testing.assert_array_equal(got[0], top.values.numpy())
    # ... and indices too on distinct values
    distinct = rng.permutation(5 * n).reshape(5, n).astype(dtype)
    got = sa.topk(distinct, k, largest=largest)
    top = torch.topk(torch.from_numpy(distinct), k, dim=-1, largest=largest, sorted=True)
    np.testing.assert_array_equal(got[1], top.indices.numpy())
    assert_same_entries(got[0], top.values.numpy())


# ===================================================== properties

SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0]


@st.composite
def topk_problems(draw):
    dtype = np.dtype(draw(st.sampled_from(ALL_DTYPES)))
    ndim = draw(st.integers(1, 3))
    shape = draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim))
    axis = draw(st.integers(-ndim, ndim - 1))
    if draw(st.integers(0, 3)) == 0:
        shape[axis] = draw(st.integers(7, 60))                # a longer row
    if dtype.kind == "f":
        small = st.integers(-3, 3).map(float)
        elements = st.one_of(small, small, small, st.sampled_from(SPECIAL))
    elif dtype.kind == "i":
        info = np.iinfo(dtype)
        elements = st.one_of(st.integers(-3, 3), st.sampled_from([int(info.min), int(info.max)]))
    else:
        elements = st.booleans()
    x = draw(hnp.arrays(dtype, tuple(shape), elements=elements))
    k = draw(st.integers(0, shape[axis]))
    opts = {"axis": axis, "largest": draw(st.booleans()), "sorted": draw(st.booleans())}
    return x, k, opts


# The backend fixture is a stateless description: sharing it across examples is fine.
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=topk_problems())
def test_topk_property(backend, problem):
    """Every backend against the NumPy reference on tie-heavy inputs."""
    x, k, opts = problem
    got = run(backend, x, k, **opts)
    check_topk(*got, x, k, opts["axis"], opts["largest"], opts["sorted"])


@settings(max_examples=150, deadline=None)
@given(problem=topk_problems())
def test_topk_property_against_torch(problem):
    torch = pytest.importorskip("torch")
    x, k, opts = problem
    axis, largest = opts["axis"], opts["largest"]
    got_values, got_indices = sa.topk(x, k, axis=axis, largest=largest)
    want_values, want_indices = torch_sort_topk(x, k, axis, largest)
    assert_same_entries(got_values, want_values)
    np.testing.assert_array_equal(got_indices, want_indices)
    if x.dtype != np.bool_:                                   # no torch.topk for bool on CPU
        top = torch.topk(torch.from_numpy(x), k, dim=axis, largest=largest)
        np.testing.assert_array_equal(got_values, top.values.numpy())


# ===================================================== small k, large k, long rows

LARGE_CASES = {
    "k=1": ((256, 50), 1),
    "k=2": ((256, 50), 2),
    "k=8": ((256, 50), 8),
    "k=32": ((256, 50), 32),
    "k=33": ((256, 50), 33),
    "n=1000 k=300": ((16, 1000), 300),
    "n=100000 k=2": ((2, 100_000), 2),
    "n=100000 k=5000": ((2, 100_000), 5000),
    "router 65536x64 k=2": ((65536, 64), 2),
    "vocabulary 2x128000 k=50": ((2, 128_000), 50),
    "n=4096 k=64": ((8, 4096), 64),
    "n=20000 k=1000": ((2, 20_000), 1000),
}


@pytest.mark.parametrize("case", list(LARGE_CASES))
@pytest.mark.parametrize("largest", [True, False])
def test_small_and_large_k(backend, case, largest):
    shape, k = LARGE_CASES[case]
    rng = np.random.default_rng(7)
    # values rounded to 0.1: many ties, and a few NaN / inf
    x = np.round(3 * rng.standard_normal(shape), 1).astype(np.float32)
    x.flat[rng.choice(x.size, max(1, x.size // 5000), replace=False)] = np.nan
    x.flat[rng.choice(x.size, max(1, x.size // 5000), replace=False)] = -np.inf
    got = run(backend, x, k, largest=largest)
    check_topk(*got, x, k, -1, largest, True)
    if largest and case.startswith("n=100000"):
        got = run(backend, x, k, sorted=False)
        check_topk(*got, x, k, -1, True, False)


ROW_KINDS = {
    "constant": lambda n: np.full(n, 2.0),
    "all NaN": lambda n: np.full(n, np.nan),
    "signed zeros": lambda n: np.where(np.arange(n) % 3 == 0, -0.0, 0.0),
    "two levels": lambda n: (np.arange(n) % 2).astype(float),
    "increasing": lambda n: np.arange(n, dtype=float),
    "decreasing": lambda n: np.arange(n, 0, -1, dtype=float),
    "organ pipe": lambda n: np.minimum(np.arange(n), np.arange(n)[::-1]).astype(float),
}


@pytest.mark.parametrize("kind", list(ROW_KINDS))
@pytest.mark.parametrize("dtype", FLOATS)
def test_degenerate_rows(kind, dtype):
    """Rows that are all ties or already ordered, through the buffer
    (k <= 16, or 32 on long rows) and the selection (larger k) paths, sorted
    or not."""
    x = np.stack([ROW_KINDS[kind](5000)] * 3).astype(dtype)
    for k in (1, 2, 16, 17, 32, 33, 2500, 4999, 5000):
        for largest in (True, False):
            for sorted in (True, False):
                got = sa.topk(x, k, largest=largest, sorted=sorted)
                check_topk(*got, x, k, -1, largest, sorted)


# Around the kernel's choices (src/_gating_kernels.h): with AVX-512, the
# sorting network (rows of up to 8, 16, 32 and 64 entries; up to 32
# entries float32 from k = 5, float64 from 2; beyond, from 8 and 4), the float32 lanes
# (k <= 2, n <= 512) and passes (k <= 4, n <= 256; k <= 8, n <= 128), the
# lane bound (k up to 64 from 64 entries: float64 from k = 3, or any k from
# 512 entries; float32 up to 4096 k entries below k = 12, with 64 lanes
# from 2049 entries), placing by counting (up to 512 bytes a row, k > 16),
# the small-k buffer (k <= 16, or 32 from 16384 entries), the radix
# selection and its counting (<= 64 kept) or LSD radix sort.
BOUNDARY_LENGTHS = [5, 8, 9, 16, 17, 32, 33, 48, 63, 64, 65, 100, 128, 129, 256, 257, 511, 512, 513, 2048, 2049, 4096, 4097,
                    8192, 8193, 16383, 16384, 16385, 32768, 32769]
BOUNDARY_KS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 16, 17, 32, 33, 64, 65, 300]


@pytest.mark.parametrize("n", BOUNDARY_LENGTHS)
@pytest.mark.parametrize("dtype", FLOATS)
def test_every_path_at_its_bounds(n, dtype):
    """Tie-heavy rows with NaN, infinities and signed zeros at the row
    lengths and k where the kernel changes path, largest and smallest,
    sorted or not."""
    rng = np.random.default_rng(n)
    x = np.round(2 * rng.standard_normal((4, n)), 0)
    x[0, rng.choice(n, max(1, n // 10), replace=False)] = np.nan
    x[1, rng.choice(n, max(1, n // 10), replace=False)] = -np.inf
    x[2, ::3] = -0.0
    x = x.astype(dtype)
    for k in [k for k in BOUNDARY_KS if k <= n] + [n]:
        for largest in (True, False):
            for sorted in (True, False):
                got = sa.topk(x, k, largest=largest, sorted=sorted)
                check_topk(*got, x, k, -1, largest, sorted)


@pytest.mark.parametrize("dtype", FLOATS)
def test_keys_that_differ_only_in_their_last_bits(dtype):
    """Distinct values one ulp apart, shuffled: the radix selection runs to
    its last byte and the radix sort skips the bytes every key shares."""
    one = np.ones(1, dtype)
    ladder = np.empty(3000, dtype)
    ladder[0] = one[0]
    for i in range(1, ladder.size):
        ladder[i] = np.nextafter(ladder[i - 1], dtype(2))
    x = np.stack([np.random.default_rng(s).permutation(ladder) for s in range(3)])
    for k in (40, 64, 65, 700, 2999):
        for largest in (True, False):
            got = sa.topk(x, k, largest=largest)
            check_topk(*got, x, k, -1, largest, True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [33, 40, 63, 64])
def test_short_rows_of_keys_a_few_ulps_apart(dtype, n):
    """Rows of 33 to 64 entries whose largest (or smallest) are a few ulps
    apart, some equal: with AVX-512 the first k <= 8 of float64 rows come
    from packs of each key's top bits above its index, exact only where the
    first k + 1 differ in those bits; the others must take the whole sort."""
    rng = np.random.default_rng(n)
    ladder = [np.ones(1, dtype)[0]]
    while len(ladder) < 200:
        ladder.append(np.nextafter(ladder[-1], dtype(2)))
    ladder = np.array(ladder, dtype)
    rows = [rng.choice(ladder[:span], n) for span in (3, 12, 64, 200)]
    spread = rng.standard_normal(n).astype(dtype)
    spread[rng.choice(n, 9, replace=False)] = rng.choice(ladder[:40], 9)
    # the eighth largest one ulp above the ninth, which comes first in the row
    eighth = np.zeros(n, dtype)
    eighth[rng.choice(np.arange(4, n), 8, replace=False)] = 10 + np.arange(8, dtype=dtype)
    eighth[np.flatnonzero(eighth)[-1]] = ladder[33]
    eighth[2] = ladder[32]      # keys 32 and 33 steps above 1.0's agree in their top bits
    x = np.stack(rows + [spread, -spread, eighth, -eighth])
    for k in range(1, 10):
        for largest in (True, False):
            for sorted in (True, False):
                got = sa.topk(x, k, largest=largest, sorted=sorted)
                check_topk(*got, x, k, -1, largest, sorted)


def _bound_rows(n, reaching, rng):
    """Rows of zeros (and a negative ramp, so that keys differ) in which
    `reaching` entries equal 1, spread over every lane: that many entries
    reach the lane bound of any k up to `reaching`."""
    x = -np.arange(n, dtype=float) / n
    x[rng.choice(n, reaching, replace=False)] = 1.0
    return x


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("n", "reaching"), [(n, r) for n in (64, 65, 128, 1000, 4096)
                                             for r in (17, 64, 127, 128, 129, 160) if r <= n])
def test_lane_bound_at_its_candidate_limit(dtype, n, reaching):
    """The lane bound (k = 3 to 64) places at most 128 entries that reach it
    and hands rows with more to the other paths: around that limit the
    result is the reference's, the ties among the ones in index order."""
    rng = np.random.default_rng(n + reaching)
    x = np.stack([_bound_rows(n, reaching, rng), -_bound_rows(n, reaching, rng)]).astype(dtype)
    for k in (3, 8, 16, 17, 33, 64):
        if k <= min(n, reaching):
            for largest in (True, False):
                got = sa.topk(x, k, largest=largest)
                check_topk(*got, x, k, -1, largest, True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [31, 32, 33, 65, 257, 513, 1000, 2049, 5000])
def test_top_1_takes_the_first_of_equal_winners(dtype, n):
    """k = 1 (the row's largest number over four quarters, then the first
    entry equal to it): the winner appears again later, in other quarters
    and the same one, and as -0.0 against +0.0; the first index wins, as
    torch.topk's order has it, largest and smallest. A row of one infinity
    must find its maximum (a reduction that starts at the largest finite
    number would not, and the find pass would run off the row)."""
    rng = np.random.default_rng(n)
    x = rng.uniform(-1, 1, (4, n))
    first, later = sorted(rng.choice(n, 2, replace=False))
    x[0, [first, later, n - 1]] = 3.0                     # the same number three times
    x[1, first], x[1, -1] = -0.0, 0.0                     # signed zeros tie ...
    x[1, x[1] > 0] = -x[1, x[1] > 0]                      # ... as the largest of a row of negatives
    x[2, :] = -np.inf                                     # every entry ties at the start value
    x[3, first::64] = 2.0                                 # ties every 64 entries, in one quarter or several
    x = x.astype(dtype)
    for largest in (True, False):
        y = x if largest else -x
        got = sa.topk(y, 1, largest=largest)
        check_topk(*got, y, 1, -1, largest, True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [2, 3, 15, 16, 17, 95, 96, 97, 1000, 4097])
def test_top_2_places_the_second_before_after_or_on_a_copy(dtype, n):
    """k = 2 (the first as for k = 1, then the largest of the other
    entries): the second comes before the first, after it, or is a later
    copy of it (also -0.0 against +0.0, and a row of one infinity); the
    first is the row's first or last entry; a NaN sends the row to the
    other paths. Largest and smallest, against the lexsort reference."""
    rng = np.random.default_rng(n)
    x = rng.uniform(-1, 1, (9, n))
    first, later = sorted(rng.choice(n, 2, replace=False))
    x[0, later], x[0, first] = 3.0, 2.0                   # the second before the first
    x[1, first], x[1, later] = 3.0, 2.0                   # ... and after it
    x[2, [first, later]] = 3.0                            # the second is a copy of the first
    x[3, first], x[3, later] = -0.0, 0.0                  # signed zeros tie ...
    x[3, x[3] > 0] = -x[3, x[3] > 0]                      # ... as the largest of a row of negatives
    x[4, :] = -np.inf                                     # every entry ties
    x[5, 0], x[5, -1] = 3.0, 2.0                          # the first and the second at the ends
    x[6, -1], x[6, 0] = 3.0, 2.0
    x[7, later] = np.nan                                  # a NaN ranks above +inf
    x[8, :] = 1.0                                         # one number throughout
    x[8, later] = 0.5
    x = x.astype(dtype)
    for largest in (True, False):
        y = x if largest else -x
        got = sa.topk(y, 2, largest=largest)
        check_topk(*got, y, 2, -1, largest, True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [100, 1000])
def test_lane_bound_below_the_finite_numbers(dtype, n):
    """Rows of -inf with a few numbers (and their negation for the smallest):
    the k-th lane maximum is the infinity, the lane bound falls below the
    finite numbers, and every entry reaches it; with a NaN the row goes to
    the other paths."""
    x = np.full((4, n), -np.inf)
    x[:, ::37] = np.arange(len(x[0, ::37]))
    x[1, 5] = np.nan
    x[2:] = -x[:2]
    x = x.astype(dtype)
    for k in (3, 16, 33, 64):
        for largest in (True, False):
            got = sa.topk(x, k, largest=largest)
            check_topk(*got, x, k, -1, largest, True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("period", [32, 64, 128])
def test_lane_bound_of_rows_periodic_in_its_lanes(dtype, period):
    """Rows that repeat with the lane count: every lane holds the same
    keys, the bound is the k-th distinct value, and all its copies reach it
    (more than the kernel places that way), so another path answers."""
    rng = np.random.default_rng(period)
    x = np.tile(rng.permutation(period).astype(dtype), (3, 1000 // period + 1))[:, :1000]
    for k in (3, 16, 17, 32, 64):
        for largest in (True, False):
            got = sa.topk(x, k, largest=largest)
            check_topk(*got, x, k, -1, largest, True)


def _filter_rows(n, k):
    """Rows for the running-threshold filter of long rows (n >= 8 k)."""
    rng = np.random.default_rng(12)
    return {
        "unordered": rng.standard_normal(n),
        # every entry beats the threshold so far: the kept entries are cut back again and again
        "increasing": np.arange(n, dtype=float),
        # the first k entries are the result: the threshold is final after one cut
        "decreasing": np.arange(n, 0, -1, dtype=float),
        # many entries tie with the k-th, before and after each cut
        "ties at the k-th": np.round(rng.standard_normal(n), 1),
        "NaN and inf": np.where(rng.random(n) < 2 * k / n, np.nan,
                                np.where(rng.random(n) < k / n, np.inf, rng.standard_normal(n))),
    }


@pytest.mark.parametrize("kind", list(_filter_rows(128_000, 50)))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("n", "k"), [(128_000, 50), (4096, 64), (20_000, 1000), (528, 33), (264, 33)])
def test_long_rows_through_the_threshold_filter(kind, dtype, n, k):
    """Long rows with large k, where the running threshold is final early,
    never rises past most entries, or ties with many of them: the same
    result as the reference, largest and smallest, sorted or not."""
    x = np.stack([_filter_rows(n, k)[kind], -_filter_rows(n, k)[kind]]).astype(dtype)
    for largest in (True, False):
        for sorted in (True, False):
            got = sa.topk(x, k, largest=largest, sorted=sorted)
            check_topk(*got, x, k, -1, largest, sorted)


def _sampled_rows(n):
    """Rows for the large-k paths from 2048 entries: the sampled bound (the
    kernel reads s = 256 entries, 1024 from 8192 on, at a stride of n // s,
    from half a stride in), a sample that misleads it both ways, and the
    bucket sort's key ranges."""
    rng = np.random.default_rng(31)
    s = 1024 if n >= 8192 else 256
    stride = n // s
    sampled = np.arange(s) * stride + stride // 2
    high_sample = rng.standard_normal(n)
    high_sample[sampled] = 1e6 * (1 + np.arange(s))      # fewer than k reach the bound
    low_sample = rng.standard_normal(n)
    low_sample[sampled] = -1e6                           # nearly every entry reaches it
    magnitude = 10.0 ** rng.uniform(-300, 300, n) * rng.choice([-1.0, 1.0], n)
    magnitude[rng.random(n) < 0.05] = 5e-324             # subnormals and both zeros
    magnitude[rng.random(n) < 0.05] = -0.0
    magnitude[rng.random(n) < 0.05] = 0.0
    return {
        "unordered": rng.standard_normal(n),
        "increasing": np.arange(n, dtype=float),
        "decreasing": np.arange(n, 0, -1, dtype=float),
        "ties": np.round(rng.standard_normal(n), 1),
        "NaN and inf": np.where(rng.random(n) < 0.02, np.nan,
                                np.where(rng.random(n) < 0.02, np.inf, rng.standard_normal(n))),
        # the smallest-k takes NaN too, after every number
        "mostly NaN": np.where(rng.random(n) < 0.9, np.nan, rng.standard_normal(n)),
        "sample too high": high_sample,
        "sample too low": low_sample,
        # keys from every exponent: buckets of equal width over the keys recurse deeply
        "every magnitude": magnitude,
        "powers of two": 2.0 ** (np.arange(n) % 120 - 60) * (1 + (np.arange(n) // 120 % 3) * 2.0 ** -30),
        "one value and a few above": np.where(rng.random(n) < 0.1, 2.0, 1.0),
        # float64 keys equal in their upper bits but not whole, in runs of a few
        # entries, and in runs of hundreds (few values)
        "near ties": np.round(rng.standard_normal(n), 2) + 1e-13 * rng.standard_normal(n),
        "near ties of few values": np.round(rng.standard_normal(n)) + 1e-12 * rng.standard_normal(n),
    }


@pytest.mark.parametrize("kind", list(_sampled_rows(2048)))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("n", "k"), [(2048, 300), (4096, 1000), (4096, 2000), (8192, 1000), (33_000, 1000),
                                      (5000, 4900)])
def test_large_k_through_the_sampled_bound_and_the_bucket_sort(kind, dtype, n, k):
    """Large k on rows of 2048 entries and more: a bound from a sample of the
    row, a sample that misleads it (the row then takes the paths without
    one), the selection as the first level of a bucket sort over the keys,
    keys of every magnitude and sign, ties and NaN: the reference's result,
    largest and smallest, sorted or not."""
    row = _sampled_rows(n)[kind]
    x = np.stack([row, -row, row[::-1]]).astype(dtype)
    for largest in (True, False):
        for sorted in (True, False):
            got = sa.topk(x, k, largest=largest, sorted=sorted)
            check_topk(*got, x, k, -1, largest, sorted)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("rows", "n", "k"), [(1, 40_000, 1), (1, 128_000, 50), (1, 200_000, 12_500),
                                              (1, 200_001, 1000), (3, 1_000_000, 8)])
def test_a_long_row_split_over_threads(dtype, rows, n, k):
    """Fewer long rows than threads: each row is cut into one chunk per
    thread and the chunks' results merged (src/_gating.pyx, _split_rows),
    with ties across the chunks' border going to the lower index. Checked
    against the reference, at 2 and 3 threads (one chunk idle at 3 when k is
    large beside the row), and equal to one thread."""
    rng = np.random.default_rng(n)
    x = np.round(rng.standard_normal((rows, n)), 1).astype(dtype)
    x[0, rng.choice(n, 20, replace=False)] = np.nan
    x[:, n // 2 - 3:n // 2 + 3] = x.max() if k == 1 else x[:, :6]     # ties on the border
    for largest in (True, False):
        with sa.threads(1):
            one = sa.topk(x, k, largest=largest)
        check_topk(*one, x, k, -1, largest, True)
        for threads in (2, 3):
            with sa.threads(threads):
                split = sa.topk(x, k, largest=largest)
            np.testing.assert_array_equal(split[1], one[1])
            np.testing.assert_array_equal(split[0], one[0])


def test_byte_swapped_input():
    x = tied(np.random.default_rng(11), (6, 40), np.float64).astype(">f8")
    values, indices = sa.topk(x, 5)
    want_values, want_indices = np_topk(x, 5)
    assert values.dtype.kind == "f" and values.dtype.itemsize == 8
    assert_same_entries(values.astype(np.float64), want_values.astype(np.float64))
    np.testing.assert_array_equal(indices, want_indices)


def test_router_shape_float64_classes_on_axis_0():
    """The router logits transposed: 64 experts along axis 0, a strided
    read."""
    rng = np.random.default_rng(8)
    x = np.round(rng.standard_normal((65536, 64)), 2).T
    got = sa.topk(x, 2, axis=0)
    check_topk(*got, x, 2, 0, True, True)


# ===================================================== memory layouts

def _layouts():
    base = np.round(3 * np.random.default_rng(9).standard_normal((30, 17)))
    base[4, 3] = base[11, 7] = np.nan
    base[6, 2] = -0.0
    return {
        **memory_layouts(base),
        "int32 negative strides": np.nan_to_num(base[::-1]).astype(np.int32)[::-1],
    }


@pytest.mark.parametrize("layout", list(_layouts()))
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("largest", [True, False])
def test_any_memory_layout(layout, axis, largest):
    x = _layouts()[layout]
    before = x.copy()
    for k in (1, 5, x.shape[axis]):
        got = sa.topk(x, k, axis=axis, largest=largest)
        check_topk(*got, x, k, axis, largest, True)
    assert_same_entries(x, before)


def test_non_contiguous_torch_tensors():
    torch = pytest.importorskip("torch")
    x = _layouts()["float32 F"]
    xt = torch.from_numpy(np.ascontiguousarray(x.T)).T          # a transposed view
    assert not xt.is_contiguous()
    for axis in (0, 1):
        values, indices = sa.topk(xt, 4, axis=axis)
        assert isinstance(values, torch.Tensor) and indices.dtype == torch.int64
        check_topk(values.numpy(), indices.numpy(), x, 4, axis, True, True)
    sliced = torch.from_numpy(np.ascontiguousarray(x))[:, ::2]
    values, indices = sa.topk(sliced, 3, largest=False)
    check_topk(values.numpy(), indices.numpy(), x[:, ::2], 3, -1, False, True)


# ===================================================== bad input

def _names(arg):
    """A regex for an error message naming argument `arg` (as in
    test_losses: a one-letter name must stand as a word before =, 'must',
    'is', ':' ... or be quoted)."""
    if len(arg) > 1:
        return rf"\b{arg}\b"
    return rf"(?<![\w.]){arg}\s*(=|must|should|is|has|in|:|<|>|\(|\))|['\"`]{arg}['\"`]"


BAD_INPUTS = [
    ("k < 0", np.zeros((4, 3)), -1, {}, ValueError, _names("k")),
    ("k > n", np.zeros((4, 3)), 4, {}, ValueError, _names("k")),
    ("k > n on axis 0", np.zeros((4, 3)), 5, {"axis": 0}, ValueError, _names("k")),
    ("k float", np.zeros((4, 3)), 1.5, {}, TypeError, _names("k")),
    ("k integral float", np.zeros((4, 3)), 2.0, {}, TypeError, _names("k")),
    ("k bool", np.zeros((4, 3)), True, {}, TypeError, _names("k")),
    ("k None", np.zeros((4, 3)), None, {}, TypeError, _names("k")),
    ("k str", np.zeros((4, 3)), "2", {}, TypeError, _names("k")),
    ("complex x", np.zeros((4, 3)) + 1j, 1, {}, TypeError, "complex"),
    ("axis too large", np.zeros((4, 3)), 1, {"axis": 2}, ValueError, "axis"),
    ("axis too small", np.zeros((4, 3)), 1, {"axis": -3}, ValueError, "axis"),
    ("axis float", np.zeros((4, 3)), 1, {"axis": 1.0}, TypeError, "axis"),
]


@pytest.mark.parametrize("case, x, k, opts, error, match", BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_naming_the_argument(backend, case, x, k, opts, error, match):
    xb = backend.asarray(x)
    before = np.array(backend.to_numpy(xb))
    with pytest.raises(error, match=match):
        sa.topk(xb, k, **opts)
    np.testing.assert_array_equal(backend.to_numpy(xb), before)


# ===================================================== threads

@pytest.mark.parametrize("shape, k, axis", [
    ((65536, 64), 2, -1), ((3, 100_000), 2, -1), ((3, 100_000), 5000, -1),
    ((512, 1000), 300, -1), ((1000, 512), 8, 0)])
def test_thread_counts_agree(shape, k, axis):
    """1 and 2 threads: the same values (bitwise) and indices."""
    rng = np.random.default_rng(10)
    x = np.round(rng.standard_normal(shape), 1).astype(np.float32)
    x.flat[rng.choice(x.size, 100, replace=False)] = np.nan
    for largest in (True, False):
        with sa.threads(1):
            values1, indices1 = sa.topk(x, k, axis=axis, largest=largest)
        with sa.threads(2):
            values2, indices2 = sa.topk(x, k, axis=axis, largest=largest)
        assert_same_entries(values1, values2)
        np.testing.assert_array_equal(indices1, indices2)
    check_topk(values2, indices2, x, k, axis, False, True)


# ===================================================== topk_gating: references
#
# Written here in float64 NumPy from topk_gating's docstring, never taken
# from softarray: the k largest logits per row (ties: the lower expert
# index), softmax weights, capacity slots by an explicit loop (every
# token's first choice before any second choice), and the auxiliary losses.


def np_gate_experts(z, k, vectorized=False):
    """(tokens, k) int64 experts, largest logit first, ties by the lower
    index: np.lexsort on (index, -z), or a stable argsort of -z."""
    z = np.asarray(z, np.float64)
    if vectorized:
        return np.argsort(-z, axis=1, kind="stable")[:, :k].astype(np.int64)
    index = np.broadcast_to(np.arange(z.shape[1]), z.shape)
    return np.lexsort((index, -z), axis=-1)[:, :k].astype(np.int64)


def np_softmax64(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_gate(z, k, order="softmax_topk", renormalize=True, temperature=1.0, vectorized=False):
    """(weights, experts): softmax over the selected logits / temperature
    (topk_softmax, or renormalized), else softmax over all experts taken at
    the selected ones."""
    z = np.asarray(z, np.float64)
    experts = np_gate_experts(z, k, vectorized)
    if order == "topk_softmax" or renormalize:
        weights = np_softmax64(np.take_along_axis(z, experts, 1) / temperature)
    else:
        weights = np.take_along_axis(np_softmax64(z / temperature), experts, 1)
    return weights, experts


def np_slots(experts, n_experts):
    """Slot of each (token, choice): loop over choice rank j, then tokens in
    order, one counter per expert. Also the counts per expert."""
    n, k = experts.shape
    rows = experts.tolist()
    counter = [0] * n_experts
    slots = [[0] * k for _ in range(n)]
    for j in range(k):
        for t in range(n):
            e = rows[t][j]
            slots[t][j] = counter[e]
            counter[e] += 1
    return np.array(slots, np.int64).reshape(n, k), np.array(counter, np.int64)


def np_capacity(capacity_factor, k, n, e):
    return math.ceil(capacity_factor * k * n / e)


def np_aux(z_given, z_routed, experts, temperature):
    """load_balancing_loss = E sum_e (count_e / N) mean_t softmax(z/T)[t, e]
    (on the routed logits); router_z_loss = mean(logsumexp(z_given)**2)."""
    z_routed = np.asarray(z_routed, np.float64)
    n, e = z_routed.shape
    counts = np.bincount(experts.ravel(), minlength=e).astype(np.int64)
    mean_prob = np_softmax64(z_routed / temperature).mean(axis=0)
    z = np.asarray(z_given, np.float64)
    m = z.max(axis=1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    return {"load_balancing_loss": e * np.sum(counts / n * mean_prob),
            "router_z_loss": np.mean(lse ** 2), "expert_counts": counts}


def gate_rtol(dtype):
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def run_gate(backend, z, k, **opts):
    """sa.topk_gating on backend's array of z: checks the result types and
    dtypes and that z is untouched; returns the fields as NumPy arrays (None
    where not asked for, capacity as is)."""
    zb = backend.asarray(z)
    before = np.array(backend.to_numpy(zb))
    gate = sa.topk_gating(zb, k, **opts)
    assert isinstance(gate, sa.TopKGating)
    n = z.shape[0]
    out = {}
    for name, dtype in [("weights", z.dtype), ("indices", np.int64), ("positions", np.int64),
                        ("kept", np.bool_)]:
        value = getattr(gate, name)
        if value is None:
            out[name] = None
            continue
        assert type(value) is type(zb), name
        out[name] = np.asarray(backend.to_numpy(value))
        assert out[name].dtype == dtype and out[name].shape == (n, k), name
    want_fields = opts.get("capacity_factor") is not None
    assert (gate.positions is not None) == want_fields and (gate.kept is not None) == want_fields
    assert (gate.capacity is not None) == want_fields
    out["capacity"] = gate.capacity
    assert (gate.aux is not None) == opts.get("return_aux", False)
    if gate.aux is not None:
        assert set(gate.aux) == {"load_balancing_loss", "router_z_loss", "expert_counts"}
        aux = {}
        for name, value in gate.aux.items():
            # (0-d NumPy results are checked to be arrays, not scalars, in
            # test_gating_aux_losses_are_0d_arrays)
            assert type(value) is type(zb) or (type(zb) is np.ndarray and isinstance(value, np.generic)), name
            aux[name] = np.asarray(backend.to_numpy(value))
        assert aux["expert_counts"].dtype == np.int64 and aux["expert_counts"].shape == (z.shape[1],)
        for name in ("load_balancing_loss", "router_z_loss"):
            assert aux[name].dtype == z.dtype and aux[name].shape == (), name
        out["aux"] = aux
    else:
        out["aux"] = None
    assert_same_entries(backend.to_numpy(zb), before)
    return out


def check_gate(got, z, k, order="softmax_topk", renormalize=True, temperature=1.0,
               capacity_factor=None, return_aux=False, vectorized=False, z_routed=None):
    """Every field of run_gate's result against the references."""
    rtol = gate_rtol(z.dtype)
    z_routed = z if z_routed is None else z_routed
    weights, experts = np_gate(z_routed, k, order, renormalize, temperature, vectorized)
    np.testing.assert_array_equal(got["indices"], experts)
    np.testing.assert_allclose(got["weights"], weights, rtol=rtol, atol=0)
    slots, counts = np_slots(experts, z.shape[1])
    if capacity_factor is not None:
        capacity = np_capacity(capacity_factor, k, *z.shape)
        assert got["capacity"] == capacity and isinstance(got["capacity"], int)
        np.testing.assert_array_equal(got["positions"], slots)
        np.testing.assert_array_equal(got["kept"], slots < capacity)
    if return_aux:
        want = np_aux(z, z_routed, experts, temperature)
        np.testing.assert_array_equal(got["aux"]["expert_counts"], want["expert_counts"])
        for name in ("load_balancing_loss", "router_z_loss"):
            np.testing.assert_allclose(got["aux"][name], want[name], rtol=rtol, atol=0, err_msg=name)


def router_logits(rng, shape, dtype, scale=2.0, decimals=None):
    z = scale * rng.standard_normal(shape)
    return (z if decimals is None else np.round(z, decimals)).astype(dtype)


# ===================================================== topk_gating: the references themselves

def test_gate_references_on_hand_checked_rows():
    z = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.25, 0.25, 0.5]]))
    weights, experts = np_gate(z, 2)
    np.testing.assert_array_equal(experts, [[1, 2], [0, 2], [2, 0]])
    np.testing.assert_allclose(weights, [[2 / 3, 1 / 3], [0.625, 0.375], [2 / 3, 1 / 3]], rtol=1e-14)
    weights, _ = np_gate(z, 2, renormalize=False)
    np.testing.assert_allclose(weights, [[0.6, 0.3], [0.5, 0.3], [0.5, 0.25]], rtol=1e-14)
    ties = np.array([[1.0, 2.0, 2.0, 1.0, 2.0], [-0.0, 0.0, -1.0, 0.0, -0.0]])
    for vectorized in (False, True):
        np.testing.assert_array_equal(np_gate_experts(ties, 4, vectorized), [[1, 2, 4, 0], [0, 1, 3, 4]])
    slots, counts = np_slots(np.array([[0, 1], [1, 0], [0, 2], [0, 1]]), 3)
    np.testing.assert_array_equal(slots, [[0, 1], [0, 3], [1, 0], [2, 2]])
    np.testing.assert_array_equal(counts, [4, 3, 1])


# ===================================================== topk_gating: every backend

GATE_MODES = [("softmax_topk", True), ("softmax_topk", False), ("topk_softmax", True),
              ("topk_softmax", False)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("order, renormalize", GATE_MODES)
@pytest.mark.parametrize("temperature", [1.0, 0.7, 3.0])
def test_gating_every_backend(backend, dtype, order, renormalize, temperature):
    rng = np.random.default_rng(20)
    z = router_logits(rng, (37, 8), dtype)
    z[3] = z[3, 0]                                   # an all-tie row
    z[5, 2:6] = z[5].max() + 1                       # ties at the top
    for k in (1, 2, 3, 8):
        opts = dict(order=order, renormalize=renormalize, temperature=temperature)
        check_gate(run_gate(backend, z, k, **opts), z, k, **opts)
        opts.update(capacity_factor=1.0 if k % 2 else 0.6, return_aux=True)
        check_gate(run_gate(backend, z, k, **opts), z, k, **opts)


def test_gating_defaults_and_docstring_example(backend):
    z = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    got = run_gate(backend, z, 2)
    np.testing.assert_array_equal(got["indices"], [[1, 2], [0, 2]])
    np.testing.assert_allclose(got["weights"], [[2 / 3, 1 / 3], [0.625, 0.375]], rtol=1e-12)
    assert got["positions"] is got["kept"] is got["capacity"] is got["aux"] is None


def test_gating_single_expert_and_k_equals_experts(backend):
    z = router_logits(np.random.default_rng(21), (9, 1), np.float64)
    got = run_gate(backend, z, 1, capacity_factor=2.0, return_aux=True)
    np.testing.assert_array_equal(got["weights"], np.ones((9, 1)))
    np.testing.assert_array_equal(got["positions"][:, 0], np.arange(9))
    check_gate(got, z, 1, capacity_factor=2.0, return_aux=True)
    z = router_logits(np.random.default_rng(22), (9, 5), np.float32)
    got = run_gate(backend, z, 5, renormalize=False)
    np.testing.assert_allclose(got["weights"].sum(axis=1), 1.0, rtol=1e-5)
    check_gate(got, z, 5, renormalize=False)


def test_gating_aux_losses_are_0d_arrays(backend):
    """The losses are 0-d arrays of the caller's type (as sa.cross_entropy's
    scalar reductions), not NumPy scalars."""
    zb = backend.asarray(router_logits(np.random.default_rng(29), (10, 4), np.float32))
    aux = sa.topk_gating(zb, 2, return_aux=True).aux
    for name in ("load_balancing_loss", "router_z_loss"):
        assert type(aux[name]) is type(zb) and aux[name].shape == (), (name, type(aux[name]))


# ===================================================== topk_gating: capacity by hand

# (name, logits, k, capacity_factor, capacity, positions, kept, expert_counts)
HAND_CAPACITY = [
    # 4 tokens, 2 experts, k=1: experts 0, 0, 1, 0
    ("k1 cf1", [[2, 1], [3, 0], [0, 1], [5, 4]], 1, 1.0, 2,
     [[0], [1], [0], [2]], [[1], [1], [1], [0]], [3, 1]),
    ("k1 cf0.5", [[2, 1], [3, 0], [0, 1], [5, 4]], 1, 0.5, 1,
     [[0], [1], [0], [2]], [[1], [0], [1], [0]], [3, 1]),
    # all ties: every token's choice is expert 0
    ("k1 ties cf1", [[0, 0]] * 4, 1, 1.0, 2, [[0], [1], [2], [3]], [[1], [1], [0], [0]], [4, 0]),
    # k=2: (0, 1), (1, 0), (0, 1), (1, 0); first choices fill slots 0-1 of both
    ("k2 cf1", [[2, 1], [0, 3], [1, 0], [0, 1]], 2, 1.0, 4,
     [[0, 2], [0, 2], [1, 3], [1, 3]], [[1, 1]] * 4, [4, 4]),
    ("k2 cf0.5", [[2, 1], [0, 3], [1, 0], [0, 1]], 2, 0.5, 2,
     [[0, 2], [0, 2], [1, 3], [1, 3]], [[1, 0]] * 4, [4, 4]),
    # 3 experts, k=2: (0, 1), (1, 0), (0, 2), (0, 1)
    ("3 experts cf1", [[3, 2, 1], [2, 3, 1], [3, 1, 2], [3, 2, 1]], 2, 1.0, 3,
     [[0, 1], [0, 3], [1, 0], [2, 2]], [[1, 1], [1, 0], [1, 1], [1, 1]], [4, 3, 1]),
    ("3 experts cf0.5", [[3, 2, 1], [2, 3, 1], [3, 1, 2], [3, 2, 1]], 2, 0.5, 2,
     [[0, 1], [0, 3], [1, 0], [2, 2]], [[1, 1], [1, 0], [1, 1], [0, 0]], [4, 3, 1]),
]


@pytest.mark.parametrize("case", HAND_CAPACITY, ids=[c[0] for c in HAND_CAPACITY])
@pytest.mark.parametrize("dtype", FLOATS)
def test_gating_capacity_by_hand(backend, case, dtype):
    _, z, k, factor, capacity, positions, kept, counts = case
    z = np.array(z, dtype)
    got = run_gate(backend, z, k, capacity_factor=factor, return_aux=True)
    assert got["capacity"] == capacity
    np.testing.assert_array_equal(got["positions"], positions)
    np.testing.assert_array_equal(got["kept"], np.array(kept, bool))
    np.testing.assert_array_equal(got["aux"]["expert_counts"], counts)
    check_gate(got, z, k, capacity_factor=factor, return_aux=True)


def test_gating_aux_by_hand(backend):
    """Equal logits, 2 experts, k=1: every token goes to expert 0, so
    f = (1, 0), P = (1/2, 1/2), loss = 2 * 1/2; logsumexp = log 2 + c."""
    z = np.full((4, 2), 0.5)
    got = run_gate(backend, z, 1, return_aux=True, temperature=2.0)
    np.testing.assert_allclose(got["aux"]["load_balancing_loss"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(got["aux"]["router_z_loss"], (np.log(2) + 0.5) ** 2, rtol=1e-12)
    np.testing.assert_array_equal(got["aux"]["expert_counts"], [4, 0])


@pytest.mark.parametrize("shape, k", [((200, 8), 1), ((200, 8), 2), ((333, 16), 4), ((64, 5), 5)])
@pytest.mark.parametrize("factor", [0.25, 1.0, 1.25, 3.0])
def test_gating_capacity_random(backend, shape, k, factor):
    rng = np.random.default_rng(23)
    z = router_logits(rng, shape, np.float32, decimals=0)        # ties and skewed loads
    z[:, 0] += 1.0
    opts = dict(capacity_factor=factor, return_aux=True, temperature=1.5)
    check_gate(run_gate(backend, z, k, **opts), z, k, **opts)


# ===================================================== topk_gating: noise

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("order, renormalize", GATE_MODES[:3])
def test_gating_noise_is_added_logits(backend, dtype, order, renormalize):
    rng = np.random.default_rng(24)
    z = router_logits(rng, (60, 8), dtype, scale=1.0)
    opts = dict(order=order, renormalize=renormalize, temperature=0.8, capacity_factor=1.0,
                return_aux=True)
    got = run_gate(backend, z, 2, noise_std=0.5, rng=np.random.default_rng(7), **opts)
    noisy = z + 0.5 * np.random.default_rng(7).standard_normal(z.shape).astype(dtype)
    assert noisy.dtype == dtype
    want = run_gate(backend, noisy, 2, **opts)
    for name in ("indices", "positions", "kept", "capacity"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    np.testing.assert_allclose(got["weights"], want["weights"], rtol=gate_rtol(dtype), atol=0)
    np.testing.assert_array_equal(got["aux"]["expert_counts"], want["aux"]["expert_counts"])
    np.testing.assert_allclose(got["aux"]["load_balancing_loss"], want["aux"]["load_balancing_loss"],
                               rtol=gate_rtol(dtype))
    # the z-loss is on the logits as given, before the noise
    check_gate(got, z, 2, z_routed=noisy, **opts)
    assert not np.array_equal(got["indices"], np_gate_experts(z, 2))       # the noise mattered
    # the same seed routes the same way; another seed differently
    again = run_gate(backend, z, 2, noise_std=0.5, rng=np.random.default_rng(7), **opts)
    for name in ("indices", "weights", "positions", "kept"):
        np.testing.assert_array_equal(again[name], got[name], err_msg=name)
    other = run_gate(backend, z, 2, noise_std=0.5, rng=np.random.default_rng(8), **opts)
    assert not np.array_equal(other["indices"], got["indices"])


def test_gating_noise_default_rng_and_zero_noise(backend):
    z = router_logits(np.random.default_rng(25), (30, 6), np.float64)
    got = run_gate(backend, z, 2, noise_std=0.1)                     # rng=None: any valid routing
    assert ((got["indices"] >= 0) & (got["indices"] < 6)).all()
    np.testing.assert_allclose(got["weights"].sum(axis=1), 1.0, rtol=1e-12)
    rng = np.random.default_rng(3)
    got = run_gate(backend, z, 2, noise_std=0.0, rng=rng)             # no noise: no draw
    check_gate(got, z, 2)


@pytest.mark.parametrize("bad_rng", [np.random.RandomState(0), 0, np.random.SeedSequence(0)],
                         ids=["RandomState", "int", "SeedSequence"])
def test_gating_rng_of_the_wrong_type(backend, bad_rng):
    z = backend.asarray(np.zeros((4, 3)))
    with pytest.raises(TypeError, match=r"\brng\b"):
        sa.topk_gating(z, 1, noise_std=1.0, rng=bad_rng)


# ===================================================== topk_gating: against torch

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("order, renormalize", GATE_MODES[:3])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("k", [1, 2, 4, 8, 13])
def test_gating_against_torch(dtype, order, renormalize, temperature, k):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(26)
    z = router_logits(rng, (300, 16), dtype)
    assert all(len(np.unique(row)) == row.size for row in z)          # no ties
    zt = torch.from_numpy(z.copy())
    if order == "softmax_topk":
        weights, indices = torch.topk(torch.softmax(zt / temperature, dim=-1), k, dim=-1)
        if renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
    else:
        values, indices = torch.topk(zt, k, dim=-1)
        weights = torch.softmax(values / temperature, dim=-1)
    gate = sa.topk_gating(z, k, order=order, renormalize=renormalize, temperature=temperature)
    np.testing.assert_array_equal(gate.indices, indices.numpy())
    np.testing.assert_allclose(gate.weights, weights.numpy(), rtol=gate_rtol(dtype), atol=0)
    # torch tensors in, torch tensors out, the same numbers
    tgate = sa.topk_gating(zt, k, order=order, renormalize=renormalize, temperature=temperature)
    assert isinstance(tgate.weights, torch.Tensor) and tgate.indices.dtype == torch.int64
    np.testing.assert_array_equal(tgate.indices.numpy(), gate.indices)
    np.testing.assert_allclose(tgate.weights.numpy(), gate.weights, rtol=gate_rtol(dtype), atol=0)


# ===================================================== topk_gating: the router shape

_ROUTER_REFERENCE = {}


def _router_case():
    """65536 x 64 float32 logits rounded to 0.1 (many ties), and the
    vectorized reference's experts (computed once)."""
    if not _ROUTER_REFERENCE:
        z = router_logits(np.random.default_rng(27), (65536, 64), np.float32, scale=1.0, decimals=1)
        _ROUTER_REFERENCE["z"] = z
    return _ROUTER_REFERENCE["z"]


def test_gating_router_shape(backend):
    z = _router_case()
    opts = dict(capacity_factor=1.25, return_aux=True)
    got = run_gate(backend, z, 2, **opts)
    check_gate(got, z, 2, vectorized=True, **opts)
    assert got["capacity"] == 2560
    got = run_gate(backend, z, 2, order="topk_softmax", temperature=0.7)
    check_gate(got, z, 2, order="topk_softmax", temperature=0.7, vectorized=True)


# ===================================================== topk_gating: bad input

_Z = np.zeros((4, 3))
_NAN_Z = np.where(np.eye(4, 3) > 0, np.nan, 0.0)

GATE_BAD_INPUTS = [
    ("k = 0", _Z, 0, {}, ValueError, _names("k")),
    ("k < 0", _Z, -1, {}, ValueError, _names("k")),
    ("k > experts", _Z, 4, {}, ValueError, _names("k")),
    ("k float", _Z, 1.5, {}, TypeError, _names("k")),
    ("k integral float", _Z, 2.0, {}, TypeError, _names("k")),
    ("k bool", _Z, True, {}, TypeError, _names("k")),
    ("k None", _Z, None, {}, TypeError, _names("k")),
    ("k str", _Z, "2", {}, TypeError, _names("k")),
    ("1-D logits", np.zeros(3), 1, {}, ValueError, "router_logits"),
    ("3-D logits", np.zeros((2, 4, 3)), 1, {}, ValueError, "router_logits"),
    ("NaN logits", _NAN_Z, 1, {}, ValueError, "router_logits"),
    ("one NaN", np.array([[0.0, 1.0], [2.0, np.nan]]), 1, {}, ValueError, "router_logits"),
    ("temperature 0", _Z, 1, {"temperature": 0.0}, ValueError, "temperature"),
    ("temperature < 0", _Z, 1, {"temperature": -1.0}, ValueError, "temperature"),
    ("temperature inf", _Z, 1, {"temperature": np.inf}, ValueError, "temperature"),
    ("temperature str", _Z, 1, {"temperature": "1"}, TypeError, "temperature"),
    ("noise_std < 0", _Z, 1, {"noise_std": -0.1}, ValueError, "noise_std"),
    ("noise_std nan", _Z, 1, {"noise_std": np.nan}, ValueError, "noise_std"),
    ("noise_std None", _Z, 1, {"noise_std": None}, TypeError, "noise_std"),
    ("capacity_factor 0", _Z, 1, {"capacity_factor": 0.0}, ValueError, "capacity_factor"),
    ("capacity_factor < 0", _Z, 1, {"capacity_factor": -1.0}, ValueError, "capacity_factor"),
    ("capacity_factor str", _Z, 1, {"capacity_factor": "1"}, TypeError, "capacity_factor"),
    ("unknown order", _Z, 1, {"order": "topk"}, ValueError, "order"),
    ("order None", _Z, 1, {"order": None}, (ValueError, TypeError), "order"),
    ("renormalize int", _Z, 1, {"renormalize": 1}, TypeError, "renormalize"),
    ("renormalize None", _Z, 1, {"renormalize": None}, TypeError, "renormalize"),
    ("return_aux str", _Z, 1, {"return_aux": "yes"}, TypeError, "return_aux"),
    ("return_aux int", _Z, 1, {"return_aux": 0}, TypeError, "return_aux"),
]


@pytest.mark.parametrize("case, z, k, opts, error, match", GATE_BAD_INPUTS,
                         ids=[b[0] for b in GATE_BAD_INPUTS])
def test_gating_bad_input_raises_naming_the_argument(backend, case, z, k, opts, error, match):
    zb = backend.asarray(z)
    before = np.array(backend.to_numpy(zb))
    with pytest.raises(error, match=match):
        sa.topk_gating(zb, k, **opts)
    assert_same_entries(backend.to_numpy(zb), before)


# ===================================================== topk_gating: threads

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("order, renormalize", [("softmax_topk", True), ("softmax_topk", False)])
def test_gating_thread_counts_agree(dtype, order, renormalize):
    """1 and 2 threads: every field identical (bitwise), the input untouched.
    Two threads run several times: a result that depends on how the rows
    were shared out would show as a difference in one of the runs."""
    z = router_logits(np.random.default_rng(28), (32768, 64), dtype, decimals=1)
    before = z.copy()
    opts = dict(order=order, renormalize=renormalize, capacity_factor=1.0, return_aux=True)
    with sa.threads(1):
        one = sa.topk_gating(z, 2, **opts)
    for _ in range(6):
        with sa.threads(2):
            two = sa.topk_gating(z, 2, **opts)
        for name in ("weights", "indices", "positions", "kept"):
            assert_same_entries(getattr(two, name), getattr(one, name))
        assert one.capacity == two.capacity
        for name in one.aux:
            assert_same_entries(np.asarray(two.aux[name]), np.asarray(one.aux[name]))
    assert_same_entries(z, before)
    check_gate({**two._asdict()}, z, 2, **opts)


# ===================================================== dense_to_sparse_gating, gumbel_softmax, gumbel_topk
# References written here in float64 NumPy / SciPy from the docstrings,
# never taken from softarray:
#
# * dense_to_sparse_gating: scipy.special.softmax(activation(z) / T) along
#   axis; weights strictly below the threshold become 0 except each row's
#   largest (all of a row's tied largest are kept); renormalized by default;
# * gumbel_softmax: scipy.special.softmax((z + g) / tau) with g =
#   np.random.default_rng(seed).gumbel(size=z.shape) cast to z's dtype (the
#   sum z + g in that dtype); hard: the one-hot of its argmax, ties to the
#   lower index;
# * gumbel_topk: the indices of the k largest of z + g (the same g), by a
#   stable sort (ties: the lower index).
# The sampling statistics are checked against the categorical / Plackett-Luce
# probabilities softmax(z) gives.

def sparse_gate_activation(name):
    """The reference activations, on float64 NumPy arrays."""
    return {None: lambda v: v, "sigmoid": scipy.special.expit, "tanh": np.tanh,
            "relu": lambda v: np.maximum(v, 0.0)}[name]


def np_dense_sparse(z, temperature, activation=None, threshold=0.0, renormalize=True, axis=-1):
    z = np.asarray(z, np.float64)
    act = activation if callable(activation) else sparse_gate_activation(activation)
    w = scipy.special.softmax(act(z) / temperature, axis=axis)
    if threshold > 0:
        keep = (w >= threshold) | (w == w.max(axis=axis, keepdims=True))
        w = np.where(keep, w, 0.0)
        if renormalize:
            w = w / w.sum(axis=axis, keepdims=True)
    return w


def np_gumbel_noise(seed, shape, dtype, draws=1):
    """The noise of `draws` consecutive calls on default_rng(seed), cast to dtype."""
    rng = np.random.default_rng(seed)
    return [rng.gumbel(size=shape).astype(dtype) for _ in range(draws)]


def np_gumbel_softmax(z, noise, tau=1.0, hard=False, axis=-1):
    s = z + noise                                   # in z's dtype
    assert s.dtype == z.dtype
    if hard:
        winner = np.expand_dims(np.argmax(s, axis=axis), axis)   # argmax: first of equals
        shape = [1] * s.ndim
        shape[axis] = s.shape[axis]
        return (np.arange(s.shape[axis]).reshape(shape) == winner).astype(z.dtype)
    return scipy.special.softmax(s.astype(np.float64) / tau, axis=axis)


def np_gumbel_topk(z, noise, k, axis=-1):
    s = np.moveaxis(z + noise, axis, -1)
    order = np.argsort(-s, axis=-1, kind="stable")[..., :k].astype(np.int64)
    return np.moveaxis(order, -1, axis)


def sample_rtol(dtype):
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def sample_atol(dtype):
    """Below the normal range relative precision is lost; nothing else is
    excused."""
    return 1e-35 if np.dtype(dtype) == np.float32 else 1e-300


def call_new(backend, func, z, *args, dtype=None, **opts):
    """func on backend's array of z: checks the result's type, dtype
    (z's, or `dtype`) and that z is untouched; returns the result as NumPy."""
    zb = backend.asarray(z)
    before = np.array(backend.to_numpy(zb))
    out = func(zb, *args, **opts)
    assert type(out) is type(zb)
    got = np.asarray(backend.to_numpy(out))
    assert got.dtype == (z.dtype if dtype is None else dtype)
    assert_same_entries(backend.to_numpy(zb), before)
    return got


def clear_of_threshold(rng, shape, dtype, temperature, threshold, activation=None, axis=-1,
                       scale=2.0):
    """Logits whose float64 reference weights are all at least 1e-3
    (relative) away from the threshold, so float32 rounding cannot move a
    weight across it."""
    for _ in range(100):
        z = (scale * rng.standard_normal(shape)).astype(dtype)
        w = np_dense_sparse(z, temperature, activation, axis=axis)
        if threshold == 0 or (np.abs(w - threshold) > 1e-3 * threshold).all():
            return z
    raise AssertionError("no clear logits drawn")


def _square(v):
    return v * v


SPARSE_ACTIVATIONS = [None, "sigmoid", "tanh", "relu", _square]


# ----------------------------------------------------- dense_to_sparse_gating

def test_dense_sparse_docstring_example_by_hand(backend):
    z = np.array([[2.0, 1.0, -1.0]])
    # softmax([4, 2, -2]) = [0.87887824, 0.11894324, 0.00217852]; the last < 0.1
    p = np.exp([4.0, 2.0, -2.0]) / np.exp([4.0, 2.0, -2.0]).sum()
    got = call_new(backend, sa.dense_to_sparse_gating, z, temperature=0.5, threshold=0.1)
    np.testing.assert_allclose(got, [[p[0] / (p[0] + p[1]), p[1] / (p[0] + p[1]), 0.0]], rtol=1e-12)
    np.testing.assert_allclose(got.round(4), [[0.8808, 0.1192, 0.0]])
    assert got[0, 2] == 0.0
    got = call_new(backend, sa.dense_to_sparse_gating, z, temperature=0.5, threshold=0.1,
                   renormalize=False)
    np.testing.assert_allclose(got, [[p[0], p[1], 0.0]], rtol=1e-12)
    np.testing.assert_allclose(np_dense_sparse(z, 0.5, threshold=0.1), [[0.8808, 0.1192, 0.0]],
                               atol=5e-5)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("activation", SPARSE_ACTIVATIONS,
                         ids=["none", "sigmoid", "tanh", "relu", "callable"])
@pytest.mark.parametrize("threshold, renormalize", [(0.0, True), (0.15, True), (0.15, False)])
def test_dense_sparse_every_backend(backend, dtype, activation, threshold, renormalize):
    temperature = 0.2 if activation in ("sigmoid", "tanh") else 0.7   # a sparse gate either way
    z = clear_of_threshold(np.random.default_rng(40), (40, 6), dtype, temperature, threshold,
                           activation)
    got = call_new(backend, sa.dense_to_sparse_gating, z, temperature=temperature,
                   activation=activation, threshold=threshold, renormalize=renormalize)
    want = np_dense_sparse(z, temperature, activation, threshold, renormalize)
    np.testing.assert_allclose(got, want, rtol=sample_rtol(dtype), atol=sample_atol(dtype))
    np.testing.assert_array_equal(got == 0, want == 0)
    if threshold > 0:
        assert (want == 0).any() and (want > 0).sum(axis=1).max() > 1       # some dropped, some not
        assert (got[want == 0] == 0).all()
    if renormalize or threshold == 0:
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=10 * sample_rtol(dtype))


@pytest.mark.parametrize("temperature", [0.3, 1.0, 4.0])
def test_dense_sparse_threshold_0_is_softmax(backend, temperature):
    z = router_logits(np.random.default_rng(41), (25, 7), np.float64)
    want = scipy.special.softmax(z / temperature, axis=-1)
    for opts in ({}, {"threshold": 0.0}, {"threshold": 0, "renormalize": False}):
        got = call_new(backend, sa.dense_to_sparse_gating, z, temperature=temperature, **opts)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape, axis", [((6, 30), 0), ((30, 6), -1), ((4, 6, 5), 1),
                                         ((4, 5, 6), 2), ((6, 4, 5), -3)])
@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_dense_sparse_axis(backend, dtype, shape, axis, activation):
    temperature = 0.1 if activation else 0.6
    z = clear_of_threshold(np.random.default_rng(42), shape, dtype, temperature, 0.2, activation,
                           axis=axis)
    got = call_new(backend, sa.dense_to_sparse_gating, z, temperature=temperature,
                   activation=activation, threshold=0.2, axis=axis)
    want = np_dense_sparse(z, temperature, activation, 0.2, axis=axis)
    np.testing.assert_allclose(got, want, rtol=sample_rtol(dtype), atol=sample_atol(dtype))
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=10 * sample_rtol(dtype))


def test_dense_sparse_threshold_edges(backend):
    """A weight equal to the threshold stays; all of a row's tied largest
    weights stay even above the threshold; a threshold near 1 leaves the
    row's largest only."""
    z = np.array([[0.0, 0.0, 0.0, 0.0],                  # 0.25 each (exact)
                  [0.0, 0.0, -np.inf, -np.inf],          # 0.5, 0.5, 0, 0
                  [1.0, 3.0, 2.0, 3.0 - 1e-9]])
    kw = dict(temperature=1.0)
    got = call_new(backend, sa.dense_to_sparse_gating, z, threshold=0.25, **kw)
    np.testing.assert_allclose(got[:2], [[0.25] * 4, [0.5, 0.5, 0, 0]], rtol=1e-15, atol=0)
    got = call_new(backend, sa.dense_to_sparse_gating, z, threshold=0.9, **kw)
    np.testing.assert_allclose(got, [[0.25] * 4, [0.5, 0.5, 0, 0], [0, 1, 0, 0]], rtol=1e-15, atol=0)
    got = call_new(backend, sa.dense_to_sparse_gating, z, threshold=0.9, renormalize=False, **kw)
    top = np.exp(0.0) / np.exp(z[2] - 3.0).sum()
    np.testing.assert_allclose(got, [[0.25] * 4, [0.5, 0.5, 0, 0], [0, top, 0, 0]], rtol=1e-12, atol=0)
    # masked (-inf) experts get 0 whatever the threshold
    for threshold in (0.0, 0.3):
        got = call_new(backend, sa.dense_to_sparse_gating, z[1:2], threshold=threshold, **kw)
        np.testing.assert_array_equal(got, [[0.5, 0.5, 0.0, 0.0]])


@pytest.mark.parametrize("dtype", FLOATS)
def test_dense_sparse_weight_equal_to_the_threshold_stays(backend, dtype):
    """Only weights strictly below the threshold go: with the threshold set
    to a (non-largest) weight the dense gate gives, that weight stays."""
    z = np.array([[2.0, 1.0, -1.0, 0.5]], dtype)
    dense = call_new(backend, sa.dense_to_sparse_gating, z, temperature=1.0)
    t = float(dense[0, 1])
    got = call_new(backend, sa.dense_to_sparse_gating, z, temperature=1.0, threshold=t,
                   renormalize=False)
    assert_same_entries(got, np.where(dense >= dense[0, 1], dense, 0).astype(dtype))
    assert got[0, 1] == dense[0, 1] and got[0, 2] == 0 and got[0, 3] == 0
    got = call_new(backend, sa.dense_to_sparse_gating, z, temperature=1.0,
                   threshold=float(np.nextafter(dense[0, 1], dtype(1))), renormalize=False)
    assert got[0, 1] == 0 and got[0, 0] == dense[0, 0]


def test_dense_sparse_callable_gets_the_callers_arrays(backend):
    seen = []

    def act(v):
        seen.append((type(v), v.dtype, tuple(v.shape)))
        return 3.0 * v - 1.0

    zb = backend.asarray(np.arange(12.0).reshape(3, 4) / 4)
    got = sa.dense_to_sparse_gating(zb, temperature=2.0, activation=act, threshold=0.3)
    assert seen == [(type(zb), zb.dtype, (3, 4))]
    want = np_dense_sparse(backend.to_numpy(zb), 2.0, lambda v: 3.0 * v - 1.0, 0.3)
    np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(0, 5), (5, 1), (5,)])
def test_dense_sparse_small_shapes(backend, shape):
    z = router_logits(np.random.default_rng(43), shape, np.float64)
    got = call_new(backend, sa.dense_to_sparse_gating, z, temperature=0.5, threshold=0.3)
    assert got.shape == shape
    np.testing.assert_allclose(got, np_dense_sparse(z, 0.5, threshold=0.3), rtol=1e-12, atol=0)


def test_dense_sparse_integer_logits_become_floating():
    z = np.array([[3, 1, 0], [0, 0, 2]], np.int32)
    got = sa.dense_to_sparse_gating(z, temperature=1.0, threshold=0.1)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, np_dense_sparse(z, 1.0, threshold=0.1), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", FLOATS)
def test_dense_sparse_sigmoid_of_extreme_logits(backend, dtype):
    """Logits far in the tails: right values, and no overflow warning from
    the sigmoid (exp(-z) for very negative z)."""
    z = np.array([[-1e3, -100.0, 0.0, 100.0, 1e3], [-200.0, -90.0, 5.0, -5.0, 40.0]], dtype)
    zb = backend.asarray(z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sa.dense_to_sparse_gating(zb, temperature=0.05, activation="sigmoid", threshold=0.01)
    want = np_dense_sparse(z, 0.05, "sigmoid", 0.01)
    np.testing.assert_allclose(backend.to_numpy(got), want, rtol=sample_rtol(dtype),
                               atol=sample_atol(dtype))


_GZ = np.zeros((4, 3))

SPARSE_BAD_INPUTS = [
    ("temperature 0", {"temperature": 0.0}, ValueError, "temperature"),
    ("temperature < 0", {"temperature": -1.0}, ValueError, "temperature"),
    ("temperature inf", {"temperature": np.inf}, ValueError, "temperature"),
    ("temperature nan", {"temperature": np.nan}, ValueError, "temperature"),
    ("temperature None", {"temperature": None}, TypeError, "temperature"),
    ("temperature str", {"temperature": "1"}, TypeError, "temperature"),
    ("threshold < 0", {"threshold": -0.1}, ValueError, "threshold"),
    ("threshold 1", {"threshold": 1.0}, ValueError, "threshold"),
    ("threshold > 1", {"threshold": 1.5}, ValueError, "threshold"),
    ("threshold nan", {"threshold": np.nan}, ValueError, "threshold"),
    ("threshold None", {"threshold": None}, TypeError, "threshold"),
    ("threshold str", {"threshold": "0.1"}, TypeError, "threshold"),
    ("unknown activation", {"activation": "softplus"}, ValueError, "activation"),
    ("activation case", {"activation": "Sigmoid"}, ValueError, "activation"),
    ("activation int", {"activation": 3}, (ValueError, TypeError), "activation"),
    ("renormalize int", {"renormalize": 1}, TypeError, "renormalize"),
    ("renormalize None", {"renormalize": None}, TypeError, "renormalize"),
    ("renormalize str", {"renormalize": "yes"}, TypeError, "renormalize"),
    ("axis too large", {"axis": 2}, ValueError, "axis"),
    ("axis float", {"axis": 1.0}, TypeError, "axis"),
    ("axis tuple", {"axis": (0, 1)}, TypeError, "axis"),
]


@pytest.mark.parametrize("case, opts, error, match", SPARSE_BAD_INPUTS,
                         ids=[b[0] for b in SPARSE_BAD_INPUTS])
def test_dense_sparse_bad_input_raises_naming_the_argument(backend, case, opts, error, match):
    zb = backend.asarray(_GZ)
    opts = {"temperature": 1.0, "threshold": 0.1, **opts}
    with pytest.raises(error, match=match):
        sa.dense_to_sparse_gating(zb, **opts)
    assert_same_entries(backend.to_numpy(zb), _GZ)


def test_dense_sparse_temperature_is_required(backend):
    zb = backend.asarray(_GZ)
    with pytest.raises(TypeError, match="temperature"):
        sa.dense_to_sparse_gating(zb)
    with pytest.raises(TypeError, match="temperature"):
        sa.dense_to_sparse_gating(zb, threshold=0.1)
    with pytest.raises(TypeError):
        sa.dense_to_sparse_gating(zb, 1.0)                               # keyword-only
    with pytest.raises(ValueError, match="router_logits"):
        sa.dense_to_sparse_gating(backend.asarray(np.float64(1.0)), temperature=1.0)


# ----------------------------------------------------- gumbel_softmax

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("tau", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_is_softmax_of_noisy_logits(backend, dtype, tau, hard):
    z = router_logits(np.random.default_rng(50), (64, 7), dtype)
    (noise,) = np_gumbel_noise(5, z.shape, dtype)
    got = call_new(backend, sa.gumbel_softmax, z, tau=tau, hard=hard, rng=np.random.default_rng(5))
    want = np_gumbel_softmax(z, noise, tau, hard)
    if hard:
        assert_same_entries(got, want)
        # the one-hot marks the largest entry of the soft sample of the same noise
        soft = np_gumbel_softmax(z, noise, tau)
        np.testing.assert_array_equal(np.argmax(got, axis=1), np.argmax(soft, axis=1))
    else:
        np.testing.assert_allclose(got, want, rtol=sample_rtol(dtype), atol=sample_atol(dtype))
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=10 * sample_rtol(dtype))
    assert ((got >= 0) & (got <= 1)).all()
    # the same seed, the same sample; another seed, another
    again = call_new(backend, sa.gumbel_softmax, z, tau=tau, hard=hard, rng=np.random.default_rng(5))
    assert_same_entries(again, got)
    other = call_new(backend, sa.gumbel_softmax, z, tau=tau, hard=hard, rng=np.random.default_rng(6))
    assert not np.array_equal(other, got)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape, axis", [((7, 20), 0), ((3, 7, 4), 1), ((3, 4, 7), -1),
                                         ((7, 3, 4), -3)])
@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_axis(backend, dtype, shape, axis, hard):
    z = router_logits(np.random.default_rng(51), shape, dtype)
    (noise,) = np_gumbel_noise(9, shape, dtype)
    got = call_new(backend, sa.gumbel_softmax, z, tau=0.7, hard=hard, rng=np.random.default_rng(9),
                   axis=axis)
    want = np_gumbel_softmax(z, noise, 0.7, hard, axis)
    np.testing.assert_allclose(got, want, rtol=sample_rtol(dtype), atol=sample_atol(dtype))
    np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=10 * sample_rtol(dtype))


def test_gumbel_softmax_consecutive_calls_are_consecutive_draws(backend):
    z = router_logits(np.random.default_rng(52), (10, 5), np.float64)
    rng = np.random.default_rng(11)
    noises = np_gumbel_noise(11, z.shape, np.float64, draws=3)
    for noise, hard in zip(noises, [False, True, False]):
        got = call_new(backend, sa.gumbel_softmax, z, hard=hard, rng=rng)
        np.testing.assert_allclose(got, np_gumbel_softmax(z, noise, 1.0, hard), rtol=1e-12, atol=1e-300)


def test_gumbel_softmax_defaults_and_default_rng(backend):
    z = np.log(np.array([[0.2, 0.3, 0.5]] * 50))
    (noise,) = np_gumbel_noise(0, z.shape, np.float64)
    got = call_new(backend, sa.gumbel_softmax, z, rng=np.random.default_rng(0))   # tau 1, soft
    np.testing.assert_allclose(got, np_gumbel_softmax(z, noise), rtol=1e-12, atol=1e-300)
    one = call_new(backend, sa.gumbel_softmax, z)                                  # rng=None
    two = call_new(backend, sa.gumbel_softmax, z)
    np.testing.assert_allclose(one.sum(axis=1), 1.0, rtol=1e-12)
    assert ((one > 0) & (one < 1)).all() and not np.array_equal(one, two)
    hard = call_new(backend, sa.gumbel_softmax, z, hard=True)
    assert set(np.unique(hard)) <= {0.0, 1.0} and (hard.sum(axis=1) == 1).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_gumbel_softmax_hard_ties_go_to_the_lower_index(backend, dtype):
    """Logits of 1e30 swallow the noise: the noisy logits tie exactly."""
    z = np.array([[0.0, 1e30, 1e30], [1e30, 0.0, 1e30], [1e30, 1e30, 1e30]], dtype)
    (noise,) = np_gumbel_noise(3, z.shape, dtype)
    assert ((z + noise) == z)[z == np.asarray(1e30, dtype)].all()
    got = call_new(backend, sa.gumbel_softmax, z, hard=True, rng=np.random.default_rng(3))
    assert_same_entries(got, np.array([[0, 1, 0], [1, 0, 0], [1, 0, 0]], dtype))
    soft = call_new(backend, sa.gumbel_softmax, z, rng=np.random.default_rng(3))
    np.testing.assert_allclose(soft, [[0, 0.5, 0.5], [0.5, 0, 0.5], [1 / 3] * 3],
                               rtol=sample_rtol(dtype), atol=0)
    got = call_new(backend, sa.gumbel_softmax, np.ascontiguousarray(z.T), hard=True, axis=0,
                   rng=np.random.default_rng(3))
    assert_same_entries(got, np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0]], dtype))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0])
def test_gumbel_softmax_hard_samples_are_categorical(backend, dtype, axis):
    """20000 hard samples of one row of logits: each class's frequency is
    softmax(logits) within 4 standard errors."""
    n = 20000
    logits = np.array([1.0, 0.0, -1.0, 2.0, 0.5, -3.0])
    p = scipy.special.softmax(logits)
    z = np.tile(logits, (n, 1)).astype(dtype)
    if axis == 0:
        z = np.ascontiguousarray(z.T)
    got = call_new(backend, sa.gumbel_softmax, z, tau=0.3, hard=True, axis=axis,
                   rng=np.random.default_rng(12))
    assert (got.sum(axis=axis) == 1).all()
    freq = got.mean(axis=1 - (axis % 2), dtype=np.float64)
    se = np.sqrt(p * (1 - p) / n)
    assert (np.abs(freq - p) < 4 * se).all(), (freq, p)


def test_gumbel_softmax_against_torch_distribution():
    """torch.nn.functional.gumbel_softmax draws its own noise: the two are
    compared as distributions (per-class means of soft samples, and the
    class frequencies of hard ones), each within 4 standard errors."""
    torch = pytest.importorskip("torch")
    n = 20000
    logits = np.array([0.5, -1.0, 1.5, 0.0, -0.5])
    z = np.tile(logits, (n, 1))
    for tau in (0.5, 2.0):
        ours = sa.gumbel_softmax(torch.from_numpy(z.copy()), tau=tau, rng=np.random.default_rng(13))
        assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float64
        with torch.random.fork_rng():
            torch.manual_seed(13)
            theirs = torch.nn.functional.gumbel_softmax(torch.from_numpy(z.copy()), tau=tau)
        ours, theirs = ours.numpy(), theirs.numpy()
        se = np.sqrt(ours.var(axis=0) / n + theirs.var(axis=0) / n)
        assert (np.abs(ours.mean(axis=0) - theirs.mean(axis=0)) < 4 * se).all()
        se = np.sqrt((ours.max(axis=1).var() + theirs.max(axis=1).var()) / n)
        assert abs(ours.max(axis=1).mean() - theirs.max(axis=1).mean()) < 4 * se
    ours = sa.gumbel_softmax(z, hard=True, rng=np.random.default_rng(14))
    with torch.random.fork_rng():
        torch.manual_seed(14)
        theirs = torch.nn.functional.gumbel_softmax(torch.from_numpy(z.copy()), hard=True).numpy()
    f_ours = np.bincount(ours.argmax(axis=1), minlength=5) / n
    f_theirs = np.bincount(theirs.argmax(axis=1), minlength=5) / n
    p = scipy.special.softmax(logits)
    assert (np.abs(f_ours - f_theirs) < 4 * np.sqrt(2 * p * (1 - p) / n)).all()


@pytest.mark.parametrize("shape", [(0, 5), (5, 1), (5,)])
def test_gumbel_softmax_small_shapes(backend, shape):
    z = router_logits(np.random.default_rng(53), shape, np.float64)
    (noise,) = np_gumbel_noise(4, shape, np.float64)
    for hard in (False, True):
        got = call_new(backend, sa.gumbel_softmax, z, hard=hard, rng=np.random.default_rng(4))
        assert got.shape == shape
        np.testing.assert_allclose(got, np_gumbel_softmax(z, noise, 1.0, hard), rtol=1e-12,
                                   atol=1e-300)


GUMBEL_BAD_INPUTS = [
    ("tau 0", {"tau": 0.0}, ValueError, r"\btau\b"),
    ("tau < 0", {"tau": -1.0}, ValueError, r"\btau\b"),
    ("tau inf", {"tau": np.inf}, ValueError, r"\btau\b"),
    ("tau nan", {"tau": np.nan}, ValueError, r"\btau\b"),
    ("tau str", {"tau": "1"}, TypeError, r"\btau\b"),
    ("tau None", {"tau": None}, TypeError, r"\btau\b"),
    ("hard int", {"hard": 1}, TypeError, r"\bhard\b"),
    ("hard None", {"hard": None}, TypeError, r"\bhard\b"),
    ("rng int", {"rng": 0}, TypeError, r"\brng\b"),
    ("rng RandomState", {"rng": np.random.RandomState(0)}, TypeError, r"\brng\b"),
    ("rng SeedSequence", {"rng": np.random.SeedSequence(0)}, TypeError, r"\brng\b"),
    ("axis too large", {"axis": 2}, ValueError, "axis"),
    ("axis too small", {"axis": -3}, ValueError, "axis"),
    ("axis float", {"axis": 1.0}, TypeError, "axis"),
    ("axis None", {"axis": None}, TypeError, "axis"),
]


@pytest.mark.parametrize("case, opts, error, match", GUMBEL_BAD_INPUTS,
                         ids=[b[0] for b in GUMBEL_BAD_INPUTS])
def test_gumbel_softmax_bad_input_raises_naming_the_argument(backend, case, opts, error, match):
    zb = backend.asarray(_GZ)
    with pytest.raises(error, match=match):
        sa.gumbel_softmax(zb, **opts)
    assert_same_entries(backend.to_numpy(zb), _GZ)


def test_gumbel_bad_logits(backend):
    for func, args in ((sa.gumbel_softmax, ()), (sa.gumbel_topk, (1,))):
        with pytest.raises(ValueError, match="logits"):
            func(backend.asarray(np.float64(0.0)), *args)
    with pytest.raises(TypeError, match="complex"):
        sa.gumbel_softmax(np.zeros((2, 3)) + 1j)
    with pytest.raises(TypeError, match="complex"):
        sa.gumbel_topk(np.zeros((2, 3)) + 1j, 1)


# ----------------------------------------------------- gumbel_topk

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("k", [0, 1, 3, 8])
def test_gumbel_topk_is_topk_of_noisy_logits(backend, dtype, k):
    z = router_logits(np.random.default_rng(60), (50, 8), dtype)
    (noise,) = np_gumbel_noise(21, z.shape, dtype)
    got = call_new(backend, sa.gumbel_topk, z, k, rng=np.random.default_rng(21), dtype=np.int64)
    want = np_gumbel_topk(z, noise, k)
    assert got.shape == (50, k)
    np.testing.assert_array_equal(got, want)
    assert all(len(set(row)) == k for row in got.tolist())                # distinct per row
    if k == 8:
        np.testing.assert_array_equal(np.sort(got, axis=1), np.broadcast_to(np.arange(8), (50, 8)))
    again = call_new(backend, sa.gumbel_topk, z, k, rng=np.random.default_rng(21), dtype=np.int64)
    np.testing.assert_array_equal(again, got)
    if k:
        other = call_new(backend, sa.gumbel_topk, z, k, rng=np.random.default_rng(22), dtype=np.int64)
        assert not np.array_equal(other, got)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape, axis, k", [((9, 20), 0, 4), ((3, 9, 4), 1, 9), ((3, 4, 9), -1, 2),
                                            ((9, 3, 4), -3, 0)])
def test_gumbel_topk_axis(backend, dtype, shape, axis, k):
    z = router_logits(np.random.default_rng(61), shape, dtype)
    (noise,) = np_gumbel_noise(23, shape, dtype)
    got = call_new(backend, sa.gumbel_topk, z, k, rng=np.random.default_rng(23), axis=axis,
                   dtype=np.int64)
    want_shape = list(shape)
    want_shape[axis] = k
    assert got.shape == tuple(want_shape)
    np.testing.assert_array_equal(got, np_gumbel_topk(z, noise, k, axis))


def test_gumbel_topk_consecutive_calls_and_default_rng(backend):
    z = router_logits(np.random.default_rng(62), (20, 6), np.float64)
    rng = np.random.default_rng(24)
    for noise in np_gumbel_noise(24, z.shape, np.float64, draws=3):
        got = call_new(backend, sa.gumbel_topk, z, 3, rng=rng, dtype=np.int64)
        np.testing.assert_array_equal(got, np_gumbel_topk(z, noise, 3))
    one = call_new(backend, sa.gumbel_topk, z, 6, dtype=np.int64)           # rng=None
    two = call_new(backend, sa.gumbel_topk, z, 6, dtype=np.int64)
    for got in (one, two):
        np.testing.assert_array_equal(np.sort(got, axis=1), np.broadcast_to(np.arange(6), (20, 6)))
    assert not np.array_equal(one, two)


@pytest.mark.parametrize("dtype", FLOATS)
def test_gumbel_topk_ties_and_masked_logits(backend, dtype):
    """1e30 swallows the noise (exact ties: lower index first); -inf logits
    (probability 0) come after every finite one."""
    z = np.array([[1e30, 0.0, 1e30, 1e30, -np.inf],
                  [-np.inf, 2.0, -np.inf, -1.0, 0.5]], dtype)
    got = call_new(backend, sa.gumbel_topk, z, 5, rng=np.random.default_rng(25), dtype=np.int64)
    np.testing.assert_array_equal(got[0], [0, 2, 3, 1, 4])
    assert sorted(got[1, :3].tolist()) == [1, 3, 4]
    np.testing.assert_array_equal(got[1, 3:], [0, 2])                       # -inf ties: by index
    got = call_new(backend, sa.gumbel_topk, np.ascontiguousarray(z.T), 3, axis=0,
                   rng=np.random.default_rng(25), dtype=np.int64)
    np.testing.assert_array_equal(got[:, 0], [0, 2, 3])


@pytest.mark.parametrize("dtype", FLOATS)
def test_gumbel_topk_samples_without_replacement(backend, dtype):
    """40000 draws of k=2 from one row: the first index is distributed as
    softmax(logits), the ordered pair (i, j) as p_i p_j / (1 - p_i), each
    cell within 4 standard errors; k = C gives permutations whose first
    entry has the same law."""
    n, logits = 40000, np.array([1.0, -0.5, 0.3, 0.0])
    c = logits.size
    p = scipy.special.softmax(logits)
    pair = p[:, None] * p[None, :] / (1 - p[:, None])
    np.fill_diagonal(pair, 0.0)
    assert np.isclose(pair.sum(), 1.0)
    z = np.tile(logits, (n, 1)).astype(dtype)
    got = call_new(backend, sa.gumbel_topk, z, 2, rng=np.random.default_rng(26), dtype=np.int64)
    freq = np.bincount(got[:, 0] * c + got[:, 1], minlength=c * c).reshape(c, c) / n
    assert np.diag(freq).sum() == 0
    assert (np.abs(freq - pair) <= 4 * np.sqrt(pair * (1 - pair) / n)).all(), (freq, pair)
    first = np.bincount(got[:, 0], minlength=c) / n
    assert (np.abs(first - p) < 4 * np.sqrt(p * (1 - p) / n)).all()
    got = call_new(backend, sa.gumbel_topk, np.ascontiguousarray(z.T), c, axis=0,
                   rng=np.random.default_rng(27), dtype=np.int64)
    np.testing.assert_array_equal(np.sort(got, axis=0), np.broadcast_to(np.arange(c)[:, None], (c, n)))
    first = np.bincount(got[0], minlength=c) / n
    assert (np.abs(first - p) < 4 * np.sqrt(p * (1 - p) / n)).all()
    # second index given the first: p_j / (1 - p_i), through the pair law
    freq = np.bincount(got[0] * c + got[1], minlength=c * c).reshape(c, c) / n
    assert (np.abs(freq - pair) <= 4 * np.sqrt(pair * (1 - pair) / n)).all()


_KZ = np.zeros((4, 3))

TOPK_SAMPLE_BAD_INPUTS = [
    ("k < 0", -1, {}, ValueError, _names("k")),
    ("k > n", 4, {}, ValueError, _names("k")),
    ("k > n on axis 0", 5, {"axis": 0}, ValueError, _names("k")),
    ("k float", 1.5, {}, TypeError, _names("k")),
    ("k integral float", 2.0, {}, TypeError, _names("k")),
    ("k bool", True, {}, TypeError, _names("k")),
    ("k None", None, {}, TypeError, _names("k")),
    ("k str", "2", {}, TypeError, _names("k")),
    ("rng int", 1, {"rng": 0}, TypeError, r"\brng\b"),
    ("rng RandomState", 1, {"rng": np.random.RandomState(0)}, TypeError, r"\brng\b"),
    ("axis too large", 1, {"axis": 2}, ValueError, "axis"),
    ("axis float", 1, {"axis": 1.0}, TypeError, "axis"),
]


@pytest.mark.parametrize("case, k, opts, error, match", TOPK_SAMPLE_BAD_INPUTS,
                         ids=[b[0] for b in TOPK_SAMPLE_BAD_INPUTS])
def test_gumbel_topk_bad_input_raises_naming_the_argument(backend, case, k, opts, error, match):
    zb = backend.asarray(_KZ)
    with pytest.raises(error, match=match):
        sa.gumbel_topk(zb, k, **opts)
    assert_same_entries(backend.to_numpy(zb), _KZ)


def test_gumbel_topk_numpy_integer_k(backend):
    z = router_logits(np.random.default_rng(63), (5, 6), np.float64)
    (noise,) = np_gumbel_noise(28, z.shape, np.float64)
    got = call_new(backend, sa.gumbel_topk, z, np.int32(3), rng=np.random.default_rng(28),
                   dtype=np.int64)
    np.testing.assert_array_equal(got, np_gumbel_topk(z, noise, 3))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "torch_float16", "torch_bfloat16"])
def test_topk_of_half_arrays_keeps_their_values_and_dtype(dtype):
    """Half input runs the compiled kernel on a float32 copy: every value
    and the order survive the widening, so the values are the input's own."""
    rng = np.random.default_rng(22)
    x = rng.permutation(np.arange(-300, 300, dtype=np.float32) / 8).reshape(20, 30)
    if dtype in ("float16", "bfloat16"):
        ml_dtypes = pytest.importorskip("ml_dtypes")
        half = x.astype(np.float16 if dtype == "float16" else ml_dtypes.bfloat16)
        host = half.astype(np.float64)
    else:
        torch = pytest.importorskip("torch")
        half = torch.from_numpy(x).to(getattr(torch, dtype.removeprefix("torch_")))
        host = half.double().numpy()
    values, indices = sa.topk(half, 4, axis=0)
    assert values.dtype == half.dtype and type(values) is type(half)
    order = np.argsort(-host, axis=0, kind="stable")[:4]
    np.testing.assert_array_equal(np.asarray(indices), order)
    np.testing.assert_array_equal(np.asarray(values.float() if hasattr(values, "float") else values,
                                             dtype=np.float64),
                                  np.take_along_axis(host, order, axis=0))
