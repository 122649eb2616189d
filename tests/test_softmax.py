"""The softmax family (softmax, log_softmax, logsumexp, stablemax,
log_stablemax) through every backend, against independent references:
scipy.special, NumPy formulas written here, and mpmath."""
import itertools
import math

import mpmath
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softarray as sa
from half_precision import assert_within_one_step
from layouts import memory_layouts

# float32: x - max rounds to 2^-24 relative, i.e. up to ~6e-6 in exp() for |x - max| ~ 100
RTOL = {np.float32: 1e-5, np.float64: 1e-14}
NORMALIZERS = ["softmax", "log_softmax", "stablemax", "log_stablemax"]
ALL_OPS = NORMALIZERS + ["logsumexp"]


# ---------------------------------------------------------------- references

def ref_stablemax(x, axis=-1):
    """StableMax as the paper writes it, in plain NumPy."""
    s = np.where(x >= 0, x + 1, 1 / (1 - np.minimum(x, 0)))
    return s / s.sum(axis=axis, keepdims=True)


def ref_log_stablemax(x, axis=-1):
    s = np.where(x >= 0, x + 1, 1 / (1 - np.minimum(x, 0)))
    return np.log(s) - np.log(s.sum(axis=axis, keepdims=True))


REFERENCES = {
    "softmax": lambda x, axis: scipy.special.softmax(x, axis=axis),
    "log_softmax": lambda x, axis: scipy.special.log_softmax(x, axis=axis),
    "logsumexp": lambda x, axis: scipy.special.logsumexp(x, axis=axis),
    "stablemax": ref_stablemax,
    "log_stablemax": ref_log_stablemax,
}


def run(backend, op, x, **kwargs):
    out = getattr(sa, op)(backend.asarray(x), **kwargs)
    return backend.to_numpy(out)


def assert_close_to_reference(got, want, dtype, op):
    rtol = RTOL[np.dtype(dtype).type]
    # log outputs near zero: the reference itself has absolute error ~eps*|log sum|
    atol = rtol * 64 if op.startswith("log") else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


# ----------------------------------------------------- values vs references

@pytest.mark.parametrize("op", ALL_OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape, axis",
    [((7,), -1), ((5, 33), -1), ((5, 33), 0), ((100, 10), 1), ((3, 4, 50), 1),
     ((2, 3, 40), (0, 2)), ((4, 6, 5), None), ((1, 70000), -1), ((3, 40000), -1),
     ((300, 17), 0), ((2, 5, 7), (0, 1, 2)),
     # a language model's vocabulary; the longest rows softmax keeps in L2
     # (512 KiB: 131072 float32, 65536 float64) and one entry more
     ((2, 128000), -1), ((1, 65537), -1), ((1, 131073), -1)],
)
def test_matches_reference(backend, op, dtype, shape, axis):
    x = (np.random.default_rng(0).standard_normal(shape) * 5).astype(dtype)
    want = REFERENCES[op](x.astype(np.float64), axis)
    got = run(backend, op, x, axis=axis)
    assert got.dtype == dtype
    assert got.shape == np.shape(want)
    assert_close_to_reference(got, want, dtype, op)


@pytest.mark.parametrize("op", ALL_OPS)
def test_special_values_elementwise(backend, op):
    """Every row of length 3 over {0, 1.5, -2, inf, -inf, nan}: softmax,
    log_softmax and logsumexp as scipy.special; stablemax and log_stablemax
    as IEEE arithmetic on the paper's formula."""
    values = [0.0, 1.5, -2.0, np.inf, -np.inf, np.nan]
    x = np.array(list(itertools.product(values, repeat=3)))
    with np.errstate(all="ignore"):
        want = REFERENCES[op](x, -1)
        got = run(backend, op, x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [16384, 20001, 65536, 128000, 131072, 131073, 300_000])
def test_softmax_long_rows_with_special_values(dtype, n, threads):
    """Rows of a vocabulary's length, at and past the 512 KiB kept in L2
    between the passes: a leading run of -inf, a maximum that rises in a
    late block, +inf, NaN and a row dominated by one entry, against
    scipy.special. With two threads each row alone is split in two
    segments (cached while a segment fits 512 KiB) and their sums merged,
    from 32768 entries (rows of 16384 and 20001 stay whole)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, n)) * 4
    x[0, :3000] = -np.inf                   # the first blocks hold nothing
    x[1, n - 7] = 60.0                      # the maximum rises in the last block
    x[2, n // 2] = np.inf
    x[3, n // 3] = np.nan
    x[4, 5] = 200.0                         # one entry holds almost all the mass
    x = x.astype(dtype)
    with np.errstate(all="ignore"):
        want = scipy.special.softmax(x.astype(np.float64), axis=-1)
    with sa.threads(threads):
        got = np.concatenate([sa.softmax(row) for row in x[:, None, :]])
    assert got.dtype == dtype
    # rtol: the reference rounds x - max, about 200 here, so its exp is off by
    # up to 200 ulp of the difference; atol: probabilities below the type's
    # smallest normal number underflow
    rtol = max(RTOL[np.dtype(dtype).type], 256 * np.finfo(np.float64).eps)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=np.finfo(dtype).tiny, equal_nan=True)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype, n", [(np.float32, 8191), (np.float32, 32000), (np.float64, 4099),
                                      (np.float64, 70001)])
def test_outputs_beyond_the_caches_equal_the_same_rows_in_smaller_calls(dtype, n, op, threads):
    """An output of 32 MiB or more is written by non-temporal stores
    (sa_rows_streamed: softmax from a staged row of up to 512 KiB, so not
    the 70001-entry float64 rows; log_softmax from x, any length), smaller
    ones in place. Both must give the same bits, row by row: the whole call
    against the same rows in three calls of about 11 MiB, with special rows
    among them (a leading run of -inf, a late rise of the maximum, +inf,
    NaN, one dominant entry), row lengths whose rows start off the vectors'
    alignment, and a strided view whose rows are not contiguous with each
    other. Checked against SciPy too."""
    rows = -(-(32 * 2**20) // (n * np.dtype(dtype).itemsize)) + 3
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
    x[0, :3000] = -np.inf
    x[1, n - 7] = 60.0
    x[2, n // 2] = np.inf
    x[3, n // 3] = np.nan
    x[4, 5] = 200.0
    f = getattr(sa, op)
    with sa.threads(threads):
        whole = f(x, axis=-1)
        # about 11 MiB of output each, in place; never a row alone, which
        # two threads would split in segments (other bits, by design)
        parts = np.concatenate([f(part, axis=-1) for part in np.array_split(x, 3)])
        view = np.empty((rows, n + 5), dtype)[:, 3:n + 3]
        view[...] = x
        strided = f(view, axis=-1)
    np.testing.assert_array_equal(whole, parts)
    np.testing.assert_array_equal(strided, parts)
    reference = getattr(scipy.special, op)
    with np.errstate(all="ignore"):
        want = reference(x[:8].astype(np.float64), axis=-1)
    rtol = max(RTOL[np.dtype(dtype).type], 256 * np.finfo(np.float64).eps)
    # atol for log_softmax: SciPy gives 0 at a dominant maximum, where the
    # correctly rounded value is -exp(-gap), 1e-20 and less here
    atol = np.finfo(dtype).tiny if op == "softmax" else np.finfo(dtype).eps
    np.testing.assert_allclose(whole[:8], want, rtol=rtol, atol=atol, equal_nan=True)


def test_log_softmax_dominant_entry_float32(backend):
    """SciPy returns exactly 0 here; the correctly rounded value is -exp(-x0).
    The kernels' own exp and log1p give it; the portable path's are the
    array library's (NumPy's float32 exp is within 2.4 ulp on AVX2 and
    AVX-512 CPUs, measured), so there it is within 3 ulp."""
    x0 = 1 - np.log(np.finfo(np.float32).eps)
    x = np.array([x0, 0], dtype=np.float32)
    got = run(backend, "log_softmax", x)
    exact = np.float32(-float(mpmath.log1p(mpmath.exp(-mpmath.mpf(float(np.float32(x0)))))))
    ulps = 0 if backend.compiled else 3
    assert got[0] < 0 and abs(got[0] - exact) <= ulps * np.spacing(-exact)
    # x0's share is far below half an ulp of -x0: exact on either path
    assert got[1] == np.float32(-float(np.float32(x0)) + float(exact))


def test_log_stablemax_dominant_entry(backend):
    x = np.array([1e12, 0.0, -3.0])
    got = run(backend, "log_stablemax", x)
    with mpmath.workdps(50):
        s = [mpmath.mpf(1e12) + 1, mpmath.mpf(1), 1 / mpmath.mpf(4)]
        want = [float(mpmath.log(v / sum(s))) for v in s]
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert got[0] < 0


# ----------------------------------------------------------- ulp accuracy

def _mp_results(row):
    with mpmath.workdps(50):
        xs = [mpmath.mpf(float(v)) for v in row]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in xs))
        s = [v + 1 if v >= 0 else 1 / (1 - v) for v in xs]
        total = mpmath.fsum(s)
        return {
            "softmax": [mpmath.exp(v - lse) for v in xs],
            "log_softmax": [v - lse for v in xs],
            "logsumexp": [lse],
            "stablemax": [v / total for v in s],
            "log_stablemax": [mpmath.log(v / total) for v in s],
        }


def _ulp_errors(got, exact, dtype):
    exact = np.array([float(v) for v in exact])
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


# float64: within a few ulps outright (the kernels recover the rounding error
# of x - max). float32: a few ulps plus the input's own conditioning, since
# x - max is rounded to float32: |x - max| * 2^-24 relative for exponentials.
# softmax and stablemax also carry the rounding of their normalizer, a sum of
# n terms in SIMD lanes, which grows like sqrt(n).
MAX_ULP = 4.0
SUM_ULP_PER_SQRT_N = 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [3, 20, 40, 700])
def test_ulp_accuracy_against_mpmath(dtype, n):
    """Inputs are exactly representable and spread over a wide range; the
    rows are long enough (40, 700) to use the short-row, row and block
    paths. Errors are measured in ulps of the exact result."""
    rng = np.random.default_rng(n)
    for _ in range(3):
        row = (rng.standard_normal(n) * 8).astype(dtype)
        exact = _mp_results(row)
        # a relative error of |x - max| * 2^-24 is up to |x - max| ulps (an ulp is >= 2^-24 relative)
        conditioning = np.abs(row.astype(np.float64) - row.max())
        for op in ALL_OPS:
            got = np.atleast_1d(getattr(sa, op)(row))
            allowed = MAX_ULP + (conditioning if dtype == np.float32 and op == "softmax" else 0.0)
            if op in ("softmax", "stablemax"):
                allowed = allowed + SUM_ULP_PER_SQRT_N * math.sqrt(n)   # the normalizer's rounding
            err = _ulp_errors(got, exact[op], dtype)
            assert np.all(err <= allowed), (op, np.max(err - allowed + MAX_ULP))


# -------------------------------------------------------------- parameters

@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("temperature", [0.25, 1.0, 7.0])
def test_temperature_divides_logits(backend, op, temperature):
    x = np.random.default_rng(1).standard_normal((6, 50))
    got = run(backend, op, x, temperature=temperature)
    want = REFERENCES[op](x / temperature, -1)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("op", ALL_OPS)
def test_where_leaves_masked_entries_out(backend, op):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 12))
    mask = rng.random((40, 12)) < 0.7
    mask[3] = False                                  # a fully masked row
    got = run(backend, op, x, where=backend.asarray(mask))
    for i in range(x.shape[0]):
        kept = x[i][mask[i]]
        if op == "logsumexp":
            want = REFERENCES[op](kept, -1) if kept.size else -np.inf
            np.testing.assert_allclose(got[i], want, rtol=1e-14)
            continue
        fill = -np.inf if op.startswith("log") else 0.0
        want = np.full(x.shape[1], fill)
        if kept.size:
            want[mask[i]] = REFERENCES[op](kept, -1)
        np.testing.assert_allclose(got[i], want, rtol=1e-14, atol=1e-15)


def test_where_broadcasts_along_rows(backend):
    x = np.arange(12.0).reshape(3, 4)
    mask = np.array([True, False, True, True])
    got = run(backend, "softmax", x, where=backend.asarray(mask))
    want = scipy.special.softmax(np.where(mask, x, -np.inf), axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_where_on_columns(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 40))
    mask = rng.random((30, 40)) < 0.5
    got = run(backend, "log_softmax", x, axis=0, where=backend.asarray(mask))
    want = np.where(mask, scipy.special.log_softmax(np.where(mask, x, -np.inf), axis=0), -np.inf)
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_logsumexp_keepdims(backend):
    x = np.random.default_rng(4).standard_normal((3, 4, 5))
    for axis in [0, 1, -1, (0, 2), None]:
        got = run(backend, "logsumexp", x, axis=axis, keepdims=True)
        want = scipy.special.logsumexp(x, axis=axis, keepdims=True)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-14)


# ----------------------------------------------------------------- layouts

def _layouts():
    base = np.random.default_rng(5).standard_normal((40, 60)) * 3
    return {
        **memory_layouts(base),
        "transposed view": base.T.copy().T,
        "big-endian": base.astype(">f8"),
    }


@pytest.mark.parametrize("layout", list(_layouts()))
@pytest.mark.parametrize("axis", [-1, 0, None])
@pytest.mark.parametrize("op", ALL_OPS)
def test_any_memory_layout(layout, axis, op):
    x = _layouts()[layout]
    before = x.copy()
    got = getattr(sa, op)(x, axis=axis)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    want = REFERENCES[op](x.astype(np.float64), axis)
    assert_close_to_reference(got, want, dtype, op)
    np.testing.assert_array_equal(x, before)          # input untouched


@pytest.mark.parametrize("op", ALL_OPS)
def test_zero_dimensional(backend, op):
    got = run(backend, op, np.array(2.5))
    assert got.shape == ()
    want = {"softmax": 1.0, "stablemax": 1.0, "log_softmax": 0.0, "log_stablemax": 0.0,
            "logsumexp": 2.5}[op]
    assert float(got) == want


@pytest.mark.parametrize("op", NORMALIZERS)
@pytest.mark.parametrize("shape, axis", [((0, 5), -1), ((5, 0), -1), ((5, 0), 0), ((0,), -1)])
def test_empty_arrays(backend, op, shape, axis):
    got = run(backend, op, np.zeros(shape), axis=axis)
    assert got.shape == shape


@pytest.mark.parametrize("shape, axis, out_shape", [((5, 0), -1, (5,)), ((0, 5), -1, (0,)),
                                                    ((0,), -1, ()), ((3, 0, 2), 1, (3, 2))])
def test_logsumexp_of_empty_slices_is_minus_inf(backend, shape, axis, out_shape):
    got = run(backend, "logsumexp", np.zeros(shape), axis=axis)
    assert got.shape == out_shape
    assert np.all(got == -np.inf)


@pytest.mark.parametrize("op", ALL_OPS)
def test_reduction_axis_of_length_one(backend, op):
    x = np.random.default_rng(6).standard_normal((4, 1, 3))
    got = run(backend, op, x, axis=1)
    want = REFERENCES[op](x, 1)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)


def test_empty_axis_tuple_normalizes_each_element_alone(backend):
    got = run(backend, "softmax", np.array([[1.0, -np.inf], [np.inf, 3.0]]), axis=())
    np.testing.assert_array_equal(got, [[1.0, np.nan], [np.nan, 1.0]])


# ------------------------------------------------------------------ dtypes

@pytest.mark.parametrize("op", ALL_OPS)
def test_integer_and_bool_inputs_become_default_float(backend, op):
    x = np.array([[1, 2, 3], [0, 0, 5]])
    got = getattr(sa, op)(backend.asarray(x))
    expected_dtype = "float32" if backend.name == "torch" else "float64"   # each library's default
    assert str(got.dtype).rpartition(".")[2] == expected_dtype
    got_b = backend.to_numpy(getattr(sa, op)(backend.asarray(x > 1)))
    np.testing.assert_allclose(got_b, REFERENCES[op]((x > 1).astype(float), -1), rtol=1e-6)


def test_complex_input_raises_type_error():
    with pytest.raises(TypeError, match="complex"):
        sa.softmax(np.array([1 + 1j, 2]))


_FLOAT64_NORMALIZERS = {
    "softmax": lambda x, axis: scipy.special.softmax(x, axis=axis),
    "log_softmax": lambda x, axis: scipy.special.log_softmax(x, axis=axis),
}


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("name", list(_FLOAT64_NORMALIZERS))
def test_float16_is_computed_in_float32_and_keeps_dtype(name, axis):
    """NumPy float16 is read, computed in float32 by the kernels and
    rounded once: within one float16 step of the exact result, even where
    float16 arithmetic would overflow (logits of 60000: exp(x) would)."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((40, 300)) * 6).astype(np.float16)
    x[3, :5] = [60000, 59000, -60000, 0, 1]
    got = getattr(sa, name)(x, axis=axis)
    assert got.dtype == np.float16 and got.shape == x.shape
    assert_within_one_step(got, _FLOAT64_NORMALIZERS[name](x.astype(np.float64), axis))


def test_float16_with_where_and_temperature():
    x = np.random.default_rng(5).standard_normal((6, 9)).astype(np.float16)
    where = np.arange(9) % 3 != 0
    got = sa.softmax(x, temperature=0.5, where=where)
    assert got.dtype == np.float16
    want = np.zeros((6, 9))
    want[:, where] = scipy.special.softmax(x[:, where].astype(np.float64) / 0.5, axis=-1)
    assert_within_one_step(got, want)


def test_python_sequences_are_accepted():
    np.testing.assert_allclose(sa.softmax([1.0, 2.0]), scipy.special.softmax([1.0, 2.0]))


# -------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"axis": 2}, ValueError, "axis=2 is out of bounds"),
        ({"axis": (0, 0)}, ValueError, "repeated"),
        ({"axis": 1.5}, TypeError, "axis must be"),
        ({"axis": True}, TypeError, "axis must be"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1}, ValueError, "temperature"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"temperature": float("inf")}, ValueError, "temperature"),
        ({"temperature": "1"}, TypeError, "temperature"),
        ({"temperature": True}, TypeError, "temperature"),
        ({"where": np.ones((2, 3), dtype=int)}, TypeError, "where must have a boolean dtype"),
        ({"where": np.ones((3, 2), dtype=bool)}, ValueError, "does not broadcast"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    x = np.zeros((2, 3))
    before = x.copy()
    with pytest.raises(error, match=match):
        sa.softmax(x, **kwargs)
    np.testing.assert_array_equal(x, before)


def test_logsumexp_keepdims_must_be_bool():
    with pytest.raises(TypeError, match="keepdims"):
        sa.logsumexp(np.zeros(3), keepdims="yes")


def test_object_arrays_are_refused():
    with pytest.raises(TypeError, match="numeric"):
        sa.softmax([object(), object()])


# --------------------------------------- compiled and portable paths agree

@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    op=st.sampled_from(ALL_OPS),
)
def test_compiled_and_portable_paths_agree(data, dtype, op):
    x = data.draw(hnp.arrays(
        dtype, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=40),
        elements=st.floats(-50, 50, width=np.finfo(dtype).bits) | st.sampled_from(
            [np.inf, -np.inf, np.nan]),
    ))
    axis = data.draw(st.sampled_from([-1, 0, None, tuple(range(x.ndim))]))
    with np.errstate(all="ignore"):
        compiled = getattr(sa, op)(x, axis=axis)
        portable = np.from_dlpack(getattr(sa, op)(
            __import__("array_api_strict").asarray(x), axis=axis))
    np.testing.assert_array_equal(np.isnan(compiled), np.isnan(portable))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(compiled, portable, rtol=rtol, atol=rtol)


# ------------------------------------------------------------------ threads

@pytest.mark.parametrize("shape, axis", [((3, 200_000), -1), ((64, 5000), -1), ((5000, 64), 0),
                                         ((20000, 10), -1)])
@pytest.mark.parametrize("op", ALL_OPS)
def test_thread_counts_agree(shape, axis, op):
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32) * 4
    with sa.threads(1):
        one = getattr(sa, op)(x, axis=axis)
    with sa.threads(4):
        many = getattr(sa, op)(x, axis=axis)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-6)
    assert_close_to_reference(many, REFERENCES[op](x.astype(np.float64), axis), np.float32, op)


@pytest.mark.parametrize("dtype, shape", [
    (np.float64, (1, 4096)), (np.float64, (2, 2048)), (np.float64, (1, 16384)),
    (np.float64, (8, 1000)), (np.float64, (1024, 10)), (np.float64, (1, 4095)),
    (np.float32, (1, 8192)), (np.float32, (3, 2731)), (np.float32, (1, 32000))])
@pytest.mark.parametrize("op", ALL_OPS)
def test_thread_counts_agree_at_the_byte_threshold(dtype, shape, op):
    """Calls of about 32 KiB, where the row kernels start waking a team (a
    single unsplit row stays on one thread), give what one thread gives."""
    x = np.random.default_rng(11).standard_normal(shape).astype(dtype) * 4
    with sa.threads(1):
        one = getattr(sa, op)(x, axis=-1)
    with sa.threads(2):
        two = getattr(sa, op)(x, axis=-1)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(one, two, rtol=rtol, atol=rtol)
    assert_close_to_reference(two, REFERENCES[op](x.astype(np.float64), -1), dtype, op)


def _softmax_float32_differences(y):
    """softmax of float32 y along the last axis, written plainly: y - max
    rounded to float32 as every float32 softmax rounds it (SciPy's and
    PyTorch's too; the input's own conditioning), the rest in float64."""
    with np.errstate(invalid="ignore"):
        d = (y - y.max(axis=-1, keepdims=True)).astype(np.float64)
        e = np.exp(d)
        return e / e.sum(axis=-1, keepdims=True)


# float32 softmax of short rows runs eight rows at a time in SIMD lanes
# (src/_softmax_avx2.h on CPUs with AVX2 and FMA, every row; otherwise
# src/_softmax_rows8.h for contiguous rows, the last n_rows % 8 rows taking
# the tile path). Every row length it serves, row counts around multiples of
# 8 and of its 32-row tiles, both thread counts (chunk boundaries between
# threads), temperature, the in-place masked call (masked-out entries are 0
# whatever the row holds), special values, and differences down through
# float32's subnormal range (exp(-90) is subnormal, below -104 it is 0),
# element by element.
@pytest.mark.parametrize("n", range(1, 34))
@pytest.mark.parametrize("n_rows", [8, 13, 67])
def test_short_float32_rows_against_plain_numpy(n, n_rows):
    rng = np.random.default_rng(n * 100 + n_rows)
    x = (rng.standard_normal((n_rows, n)) * 6).astype(np.float32)
    x[1, 0] = np.nan
    x[2, -1] = np.inf
    x[3, :] = -np.inf
    x[4, :] = 7.0                                   # ties at the maximum
    x[5, 0] = -np.inf
    x[6, -1] = 80.0                                 # the others' exp near the float32 minimum
    x[0, :] = -9.0 * np.arange(n)                   # 0, -9, ..., -90, -99, -108, ...
    x[n_rows - 1, n // 2] = np.nan
    mask = rng.random((n_rows, n)) < 0.8
    mask[:, 0] = True
    scale = np.float32(1 / 0.7)                     # temperature 0.7, as the kernel scales
    cases = {
        "plain": (lambda: sa.softmax(x), _softmax_float32_differences(x)),
        "temperature": (lambda: sa.softmax(x, temperature=0.7), _softmax_float32_differences(x * scale)),
        "where": (lambda: sa.softmax(x, where=mask),
                  np.where(mask, _softmax_float32_differences(np.where(mask, x, np.float32(-np.inf))), 0.0)),
    }
    for threads in (1, 2):
        for name, (call, want) in cases.items():
            with sa.threads(threads):
                got = call()
            assert got.dtype == np.float32, name
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-44, err_msg=name)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 10, 16, 17, 31, 32])
def test_short_float32_rows_same_bits_in_any_layout(n):
    """Rows with a stride other than n (a column slice of a wider array),
    and the in-place masked call (every entry kept), give the contiguous
    call's bits: on AVX2 CPUs they run the same kernel through a local copy,
    and the in-place call stores without spilling past its rows."""
    x = (np.random.default_rng(n).standard_normal((75, n + 5)) * 5).astype(np.float32)
    whole = sa.softmax(np.ascontiguousarray(x[:, :n]))
    np.testing.assert_array_equal(sa.softmax(x[:, :n]), whole)
    np.testing.assert_array_equal(sa.softmax(x[:, :n], where=np.ones((75, n), bool)), whole)
    np.testing.assert_allclose(whole, _softmax_float32_differences(x[:, :n]), rtol=1e-6, atol=0)


@pytest.mark.parametrize("n", [1, 3, 10, 17, 32])
def test_short_float32_rows_same_bits_in_any_grouping(n):
    """A row's result does not depend on whether it ran in a group of eight
    or in the remainder (blockwise callers such as Dask rely on it)."""
    x = (np.random.default_rng(n).standard_normal((67, n)) * 5).astype(np.float32)
    whole = sa.softmax(x)
    for piece in (1, 5, 7, 9):
        parts = np.concatenate([sa.softmax(x[i:i + piece]) for i in range(0, len(x), piece)])
        np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("n", [1, 3, 10, 17, 32])
def test_short_float32_rows_nan_row_leaves_its_lane_neighbours_alone(op, n):
    """The tile runs eight rows in a register's lanes and four registers at
    once, and scales their exponentials the fast way when no lane is below
    a bound. A NaN in one row must not hide from that check a -inf or a
    difference near float32's subnormal range in the same lane of another
    register (a row 8, 16 or 24 rows away)."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((64, n)) * 3).astype(np.float32)
    col = n // 2
    low = [-np.inf, -100.0, -88.0, -np.inf]
    for lane in range(4):           # the NaN in the register after the low entry's, or three after it
        x[lane, col] = low[lane]
        x[8 + lane, col] = np.nan
        x[16 + 4 + lane, col] = low[lane]
        x[24 + 4 + lane, col] = np.nan
    x[32:, col] = low[0]            # the next tile: no NaN
    got = getattr(sa, op)(x, axis=-1)
    if op == "softmax":
        want = _softmax_float32_differences(x)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-44)
    else:
        assert_close_to_reference(got, REFERENCES[op](x.astype(np.float64), -1), np.float32, op)
    assert np.all(np.isnan(got[8:12])) and np.all(np.isnan(got[28:32]))   # the rest: as the reference


@pytest.mark.parametrize("fill", [-np.inf, np.inf])
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("n", [2, 3, 10, 32])
def test_short_float32_rows_infinite_row_leaves_its_lane_neighbours_alone(op, n, fill):
    """The same check for a row whose maximum is infinite: its differences
    (-inf - -inf, inf - inf) are NaN as well, and must not hide a -inf of
    another row in the same lane (a tile of 32 rows, the rest all `fill`;
    this once made the first row NaN)."""
    x = np.full((32, n), fill, np.float32)
    x[0, 0] = 0.0
    x[0, n - 1] = -np.inf
    x[1, :] = np.arange(n, dtype=np.float32)
    x[1, n // 2] = -np.inf
    with np.errstate(invalid="ignore"):
        got = getattr(sa, op)(x, axis=-1)
        want = REFERENCES[op](x.astype(np.float64), -1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[:2], want[:2], rtol=1e-6, atol=1e-44)


# float64 rows of up to 32 entries run in tiles whose exponential step takes
# the rows across SIMD lanes (the intrinsics kernels on x86-64-v3 and
# AVX-512, the last lanes masked). Each row length, row counts around the
# lane widths and the 64-row tile, special values and differences down into
# the subnormal range, against NumPy in extended precision.
def _short_float64_rows(n, n_rows, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_rows, n)) * 6
    x[1, 0] = np.nan
    x[2, -1] = np.inf
    x[3, :] = -np.inf
    x[4, :] = 7.0                                   # ties at the maximum
    x[5, 0] = -np.inf
    x[0, :] = -31.0 * np.arange(n)                  # 0, -31, ..., -744 (subnormal), -775 (0)
    return x


def _softmax_rows_mpmath(x):
    """softmax, log_softmax and logsumexp of each row at 100 bits, rounded
    once to float64; a NaN row is NaN, and a row whose maximum is infinite
    follows SciPy's convention (logsumexp is that maximum)."""
    shape = x.shape
    soft, logsoft, lse = np.empty(shape), np.empty(shape), np.empty(shape[0])
    with mpmath.workprec(100):
        for r, row in enumerate(x):
            top = row.max()
            if np.isnan(top) or np.isinf(top):
                lse[r] = top
                soft[r] = np.nan        # NaN, inf / inf or 0 / 0
                with np.errstate(invalid="ignore"):
                    logsoft[r] = row - top
                continue
            e = [mpmath.exp(mpmath.mpf(v) - mpmath.mpf(top)) for v in row]
            log_total = mpmath.log(mpmath.fsum(e)) + mpmath.mpf(top)
            soft[r] = [float(v / mpmath.fsum(e)) for v in e]
            logsoft[r] = [float(mpmath.mpf(v) - log_total) for v in row]
            lse[r] = float(log_total)
    return soft, logsoft, lse


@pytest.mark.parametrize("n", range(1, 34))
@pytest.mark.parametrize("n_rows", [6, 9, 67])
def test_short_float64_rows_against_extended_precision(n, n_rows):
    x = _short_float64_rows(n, n_rows, n * 100 + n_rows)
    want, want_log, want_lse = _softmax_rows_mpmath(x)
    # the log ops' results are x - logsumexp: absolute errors of a few ulp
    # of the row's largest finite entry, whatever the result's size
    row_ulp = np.spacing(np.where(np.isfinite(x), np.abs(x), 0).max(axis=1))
    for threads in (1, 2):
        with sa.threads(threads):
            got = {"softmax": sa.softmax(x), "log_softmax": sa.log_softmax(x),
                   "logsumexp": sa.logsumexp(x, axis=-1), "softmax down columns": sa.softmax(x.T, axis=0).T}
        for name, ref, atol in (("softmax", want, 1e-320), ("log_softmax", want_log, 4 * row_ulp[:, None]),
                                ("logsumexp", want_lse, 4 * row_ulp), ("softmax down columns", want, 1e-320)):
            a = got[name]
            np.testing.assert_array_equal(np.isnan(a), np.isnan(ref), err_msg=name)
            np.testing.assert_array_equal(a[np.isinf(ref)], ref[np.isinf(ref)], err_msg=name)
            with np.errstate(invalid="ignore"):
                close = np.abs(a - ref) <= 2e-15 * np.abs(ref) + atol
            assert np.all(close | ~np.isfinite(ref)), (name, a[~close], ref[~close])


def test_long_row_float64_exponential_within_an_ulp():
    """softmax of [0, d, -inf, ...] is exp(d) itself for d in [-708, -40]
    (1 + exp(d) rounds to 1), so rows of 64 entries show the long-row
    exponential kernel's own error: the AVX2 polynomial's is 1.02 ulp at
    most, AVX-512's table-driven one 0.55, the portable one 0.9."""
    d = -40.0 - np.random.default_rng(11).random(4000) * 668.0
    x = np.full((d.size, 64), -np.inf)
    x[:, 0] = 0.0
    x[:, 1] = d
    got = sa.softmax(x)[:, 1]
    with mpmath.workprec(100):
        exact = np.array([float(mpmath.exp(mpmath.mpf(float(v)))) for v in d])
        err = np.array([abs(mpmath.mpf(float(g)) - mpmath.exp(mpmath.mpf(float(v)))) / np.spacing(e)
                        for g, v, e in zip(got, d, exact)], dtype=float)
    assert err.max() <= 1.1, (err.max(), d[err.argmax()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [33, 47, 63, 64, 65, 100, 127, 128, 129, 511, 512, 513])
def test_maximum_and_nan_found_at_every_position(dtype, n):
    """The maximum pass runs four vectors at a time, then whole vectors, then
    a masked or scalar tail: row r holds its maximum at entry r, and row
    n + r a NaN at entry r (and +inf at r in a third copy), so every entry
    of every part of the loop is the one that decides."""
    rng = np.random.default_rng(n)
    base = rng.standard_normal((n, n)) * 3
    top = base.copy()
    top[np.arange(n), np.arange(n)] = 25.0
    nan = base.copy()
    nan[np.arange(n), np.arange(n)] = np.nan
    inf = base.copy()
    inf[np.arange(n), np.arange(n)] = np.inf
    x = np.concatenate([top, nan, inf]).astype(dtype)
    wide = x.astype(np.float64)
    with np.errstate(all="ignore"):
        want = {sa.softmax: scipy.special.softmax(wide, axis=-1),
                sa.log_softmax: scipy.special.log_softmax(wide, axis=-1),
                sa.logsumexp: scipy.special.logsumexp(wide, axis=-1)}
    for f, expected in want.items():
        np.testing.assert_allclose(f(x, axis=-1), expected, rtol=RTOL[dtype], atol=RTOL[dtype], equal_nan=True)
    assert np.all(np.isnan(want[sa.softmax][n:]))      # the NaN and +inf rows decide something
    loss = sa.cross_entropy(x, np.zeros(3 * n, dtype=np.int64), reduction="none")
    # atol: the reference's difference of two numbers near 25
    np.testing.assert_allclose(loss[:n], want[sa.logsumexp][:n] - wide[:n, 0], rtol=RTOL[dtype], atol=25 * RTOL[dtype])
    assert np.all(np.isnan(loss[n:2 * n]))


def test_long_row_float32_exponential_within_an_ulp():
    """float32's counterpart of the test above: for d in [-103, -17], 1 +
    exp(d) rounds to 1, and d's results down to -87.3 are normal, below it
    subnormal. The AVX-512 kernel's table-driven exponential is 0.8 ulp at
    most over every float32 argument (0.69 where the result is normal), the
    AVX2 polynomial 0.87, the portable one 0.96 here."""
    d = (-17.0 - np.random.default_rng(11).random(4000) * 86.0).astype(np.float32)
    x = np.full((d.size, 64), -np.inf, dtype=np.float32)
    x[:, 0] = 0.0
    x[:, 1] = d
    got = sa.softmax(x)[:, 1]
    with mpmath.workprec(100):
        exact = [mpmath.exp(mpmath.mpf(float(v))) for v in d]
        err = np.array([abs(mpmath.mpf(float(g)) - e) / float(np.spacing(np.float32(float(e))))
                        for g, e in zip(got, exact)])
    assert err.max() <= 1.0, (err.max(), d[err.argmax()])


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 10, 17, 32])
def test_short_float64_rows_same_bits_in_any_grouping(n):
    """A row's result does not depend on its place in the tile (the lanes
    masked at the end of a tile compute as full ones)."""
    x = np.random.default_rng(n).standard_normal((67, n)) * 5
    for f in (sa.softmax, sa.log_softmax, lambda a: sa.logsumexp(a, axis=-1)):
        whole = f(x)
        for piece in (1, 3, 5, 9):
            parts = np.concatenate([f(x[i:i + piece]) for i in range(0, len(x), piece)])
            np.testing.assert_array_equal(parts, whole)


# ------------------------------------------------------------------- torch

def test_torch_tensor_in_torch_tensor_out():
    torch = pytest.importorskip("torch")
    t = torch.randn(4, 9)
    out = sa.softmax(t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.softmax(t, dim=-1))


def test_torch_requires_grad_keeps_autograd():
    torch = pytest.importorskip("torch")
    t = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    out = sa.log_softmax(t)
    assert out.requires_grad
    (out[:, 0].sum()).backward()
    ref = t.detach().clone().requires_grad_(True)
    torch.log_softmax(ref, dim=-1)[:, 0].sum().backward()
    torch.testing.assert_close(t.grad, ref.grad)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", list(_FLOAT64_NORMALIZERS))
def test_torch_half_tensors_are_computed_in_float32(name, dtype):
    """torch float16 and bfloat16 CPU tensors: computed in float32, rounded
    once to the tensor's dtype (within one step of the exact result)."""
    torch = pytest.importorskip("torch")
    half = getattr(torch, dtype)
    t = (torch.randn(50, 257, generator=torch.Generator().manual_seed(3)) * 5).to(half)
    out = getattr(sa, name)(t)
    assert type(out) is torch.Tensor and out.dtype == half and out.shape == t.shape
    assert_within_one_step(out, _FLOAT64_NORMALIZERS[name](t.double().numpy(), -1))


def test_compiled_path_shares_torch_memory():
    torch = pytest.importorskip("torch")
    from softarray import _dispatch

    t = torch.randn(5, 6)
    a = _dispatch.as_compiled_input(t)
    assert a is not None and a.ctypes.data == t.data_ptr()


@pytest.mark.parametrize("name", list(_FLOAT64_NORMALIZERS))
def test_ml_dtypes_bfloat16_arrays_are_computed_in_float32(name):
    """NumPy arrays of ml_dtypes' bfloat16 (what JAX users hold): computed
    in float32, rounded once to bfloat16."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = (np.random.default_rng(6).standard_normal((30, 70)) * 4).astype(ml_dtypes.bfloat16)
    got = getattr(sa, name)(x, axis=0)
    assert got.dtype == x.dtype
    assert_within_one_step(got, _FLOAT64_NORMALIZERS[name](x.astype(np.float64), 0))
