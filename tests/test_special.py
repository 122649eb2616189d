"""SciPy's conventions: ``softarray.special`` (drop-ins with SciPy's
signatures and defaults) and ``softarray.logsumexp``'s ``b=`` and
``return_sign=``, checked against scipy.special itself, including SciPy's own
documented examples; and softarray's fused loss and gradient driving
``scipy.optimize.minimize``.
"""
import doctest
import json
import math
import pathlib
import re
import subprocess
import sys

import array_api_compat
import numpy as np
import pytest
import scipy.optimize
import scipy.special

import promotion_cases
import softarray as sa
from softarray import special

RNG = np.random.default_rng(20261127)


# ----------------------------------------------------- SciPy's own examples

class NumericOutputChecker(doctest.OutputChecker):
    """Accepts output equal to the expected one as numbers, as SciPy's own
    doctests do (scipy_doctest): SciPy's docstrings show more digits than
    a float prints, and NumPy 2 prints scalars as ``np.float64(...)``."""

    NAMESPACE = {"array": np.array, "nan": np.nan, "inf": np.inf, "np": np,
                 "float64": np.float64, "float32": np.float32}

    def check_output(self, want, got, optionflags):
        if super().check_output(want, got, optionflags):
            return True
        try:
            expected = eval(want, dict(self.NAMESPACE))  # noqa: S307 (test data)
            actual = eval(got, dict(self.NAMESPACE))  # noqa: S307
        except Exception:
            return False
        return _numerically_equal(expected, actual)


def _numerically_equal(expected, actual):
    if isinstance(expected, tuple) != isinstance(actual, tuple):
        return False
    if isinstance(expected, tuple):
        return len(expected) == len(actual) and all(map(_numerically_equal, expected, actual))
    expected, actual = np.asarray(expected, float), np.asarray(actual, float)
    # Printed values: compare to the precision they are printed with.
    return expected.shape == actual.shape and np.allclose(actual, expected, rtol=1e-5,
                                                          atol=1e-8, equal_nan=True)


def _scipy_examples(name):
    """SciPy's docstring examples of scipy.special.<name>, importing from
    softarray.special instead."""
    doc = getattr(scipy.special, name).__doc__
    examples = doc[doc.index("Examples"):]
    examples = re.sub(r"from scipy\.special import (\w+)", r"from softarray.special import \1",
                      examples)
    assert "from softarray.special import" in examples
    return doctest.DocTestParser().get_doctest(examples, {}, f"scipy.special.{name}", None, 0)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_scipy_documented_examples_pass(name):
    runner = doctest.DocTestRunner(checker=NumericOutputChecker(),
                                   optionflags=doctest.NORMALIZE_WHITESPACE)
    options = np.get_printoptions()
    try:
        result = runner.run(_scipy_examples(name), out=lambda text: None)
    finally:
        np.set_printoptions(**options)
    assert result.attempted >= 3
    assert result.failed == 0, f"{result.failed} of SciPy's {name} examples failed"


def test_numeric_checker_rejects_wrong_numbers():
    checker = NumericOutputChecker()
    assert checker.check_output("9.4586297444267107\n", "np.float64(9.45862974442671)\n", 0)
    assert not checker.check_output("9.4586297444267107\n", "np.float64(9.46)\n", 0)
    assert not checker.check_output("array([1., 1.])\n", "array([1., 1., 1.])\n", 0)
    assert not checker.check_output("(1.0, -1.0)\n", "(1.0, 1.0)\n", 0)


# ------------------------------------------- against scipy.special directly

def _special_values(shape, dtype):
    # SciPy's exp(a) overflows beyond |a| ~ 709 (88 in float32) and then
    # turns exact results into NaN (see the tests below): stay inside.
    limit = 700.0 if dtype == np.float64 else 80.0
    a = np.clip(RNG.normal(size=shape) * RNG.choice([1.0, 10.0, 300.0]), -limit, limit)
    b = RNG.normal(size=shape)
    if a.size:
        a.flat[RNG.random(a.size) < 0.15] = RNG.choice([np.inf, -np.inf, np.nan])
        b.flat[RNG.random(b.size) < 0.2] = RNG.choice([0.0, -0.0, np.inf, -np.inf, np.nan])
    return a.astype(dtype), b.astype(dtype)


def _assert_same(got, want, dtype):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True)


SHAPES_AXES = [((7,), None), ((7,), 0), ((3, 5), None), ((3, 5), 1), ((3, 5), 0),
               ((3, 5), -1), ((2, 3, 4), (0, 2)), ((2, 3, 4), 1), ((1, 6), 0), ((4, 1), 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("return_sign", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_logsumexp_matches_scipy(dtype, shape, axis, keepdims, return_sign, weighted):
    for _ in range(20):
        a, b = _special_values(shape, dtype)
        b = b if weighted else None
        with np.errstate(all="ignore"):
            want = scipy.special.logsumexp(a, axis=axis, b=b, keepdims=keepdims,
                                           return_sign=return_sign)
        got = special.logsumexp(a, axis, b, keepdims, return_sign)
        if not return_sign:
            want, got = (want,), (got,)
        for g, w in zip(got, want):
            assert type(g) is type(w)  # a NumPy scalar for a full reduction, as SciPy
            _assert_same(g, w, dtype)


def test_infinite_sums_stay_infinite_where_scipy_float32_overflows():
    # inf + exp(100) - 0.5 exp(100) is +inf; SciPy computes b * exp(a)
    # directly once a result is not finite, and float32 exp(100) = inf
    # gives inf - inf = NaN there. softarray sums a + log|b| in log space.
    a = np.array([np.inf, 100.0, 100.0], np.float32)
    b = np.array([1.0, 1.0, -0.5], np.float32)
    assert special.logsumexp(a, b=b) == np.inf
    assert special.logsumexp(a.astype(np.float64), b=b.astype(np.float64)) == np.inf
    assert scipy.special.logsumexp(a.astype(np.float64), b=b.astype(np.float64)) == np.inf


def test_zero_weight_leaves_out_a_term_whose_exp_overflows():
    # 0 * exp(800) is 0, so the sum is empty: -inf. SciPy computes 0 * inf.
    assert special.logsumexp([800.0], b=[0.0]) == -np.inf


@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4,)), ((3, 1), (3, 4)), ((), (5,)),
                                              ((2, 1, 3), (4, 1))])
def test_logsumexp_broadcasts_a_and_b_together(a_shape, b_shape):
    a = RNG.normal(size=a_shape)
    b = RNG.normal(size=b_shape)
    for axis in (None, -1):
        want = scipy.special.logsumexp(a, axis=axis, b=b, return_sign=True)
        got = special.logsumexp(a, axis, b, return_sign=True)
        for g, w in zip(got, want):
            _assert_same(g, w, np.float64)


# ------------------------------------- dtype promotion, on every library

@pytest.fixture(scope="module")
def scipy_dtypes():
    """What scipy.special returns on each library with SCIPY_ARRAY_API=1,
    case by case (tests/promotion_cases.py, run in a fresh process: SciPy
    reads the variable when first imported)."""
    script = pathlib.Path(__file__).with_name("promotion_cases.py")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _as_numpy(out):
    return np.asarray(out) if isinstance(out, (np.ndarray, np.generic)) else np.from_dlpack(out)


def _scipy_float64(function, a, b, **options):
    """SciPy's result on float64 copies of the inputs: the values to match."""
    a = np.asarray(a, np.float64)
    if function != "logsumexp":
        return getattr(scipy.special, function)(a, **options)
    b = None if b is None else np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):  # a negative sum without its sign: NaN
        return scipy.special.logsumexp(a, b=b, **options)


PROMOTION_OPTIONS = {
    "softmax": [{"axis": axis} for axis in (None, 0, -1)],
    "log_softmax": [{"axis": axis} for axis in (None, 0, -1)],
    "logsumexp": [{"axis": axis, "keepdims": keepdims, "return_sign": sign}
                  for axis in (None, 0, -1) for keepdims in (False, True)
                  for sign in (False, True)],
}


@pytest.mark.parametrize("library", promotion_cases.libraries())
def test_dtypes_follow_scipy_on_every_library(library, scipy_dtypes):
    """Every integer, boolean, float32 and float64 combination of a and b
    (and Python scalars, which promote weakly): the dtype SciPy returns on
    the same library, or, where SciPy refuses the input (booleans in
    softmax; integers in softmax on array-api-strict), the dtype SciPy's
    logsumexp gives it; the values SciPy gives in float64, to the
    precision of that dtype."""
    asarray, context, dtypes = promotion_cases.library(library)
    # JAX compiles each operation anew for each dtype and shape: one set of
    # options there (array-api-strict runs the same portable code through
    # all of them).
    on_jax = library.startswith("jax")
    namespace = array_api_compat.array_namespace(asarray(np.zeros(1)))
    expected = scipy_dtypes[library]
    with context():
        for function, a, b in promotion_cases.cases(dtypes):
            case = promotion_cases.key(function, a, b)
            want = expected[case] or expected[promotion_cases.key("logsumexp", a)]
            tolerance = 16 * np.finfo(want).eps
            a_value, b_value = (promotion_cases.operand(a, "a"),
                                promotion_cases.operand(b, "b") if b is not None else None)
            args = {"b": promotion_cases.on_library(asarray, b, "b")} if b is not None else {}
            for options in PROMOTION_OPTIONS[function][-1:] if on_jax else PROMOTION_OPTIONS[function]:
                got = getattr(special, function)(promotion_cases.on_library(asarray, a, "a"),
                                                 **args, **options)
                reference = _scipy_float64(function, a_value, b_value, **options)
                got, reference = ((got, reference) if options.get("return_sign")
                                  else ((got,), (reference,)))
                for g, r in zip(got, reference):
                    if isinstance(a, str) or isinstance(b, str):  # not Python scalars only
                        assert array_api_compat.array_namespace(g) is namespace, case
                    assert promotion_cases.dtype_name(g.dtype) == want, (case, options)
                    np.testing.assert_allclose(_as_numpy(g).astype(np.float64), r,
                                               rtol=tolerance, atol=tolerance, equal_nan=True,
                                               err_msg=f"{case} {options}")
            if function == "logsumexp" and not on_jax:  # the main namespace promotes alike
                main = sa.logsumexp(promotion_cases.on_library(asarray, a, "a"), **args)
                assert promotion_cases.dtype_name(main.dtype) == want, case


def test_case_list_covers_scipy_refusals_and_weak_scalars(scipy_dtypes):
    # The comparison above reaches both branches of its rule.
    numpy_cases = scipy_dtypes["numpy"]
    assert numpy_cases[promotion_cases.key("softmax", "bool")] is None
    assert numpy_cases[promotion_cases.key("softmax", "int8")] == "float16"
    assert numpy_cases[promotion_cases.key("logsumexp", "int8", "float32")] == "float32"
    assert numpy_cases[promotion_cases.key("logsumexp", "int32", "float32")] == "float64"
    assert numpy_cases[promotion_cases.key("logsumexp", "float32", 0.5)] == "float32"
    strict = scipy_dtypes["array_api_strict"]
    assert strict[promotion_cases.key("logsumexp", "float32", "int8")] == "float64"


def test_integer_weights_on_every_backend(backend):
    # log|e - e - e| = 1, negative; array-api-strict has no int-float promotion.
    out, sign = special.logsumexp(backend.asarray(np.array([1, 1, 1])),
                                  b=backend.asarray(np.array([1, -1, -1])), return_sign=True)
    assert math.isclose(float(backend.to_numpy(out)), 1.0, rel_tol=1e-15)
    assert float(backend.to_numpy(sign)) == -1.0


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
def test_softmax_drop_ins_match_scipy(name, shape, axis):
    a, _ = _special_values(shape, np.float64)
    with np.errstate(all="ignore"):
        want = getattr(scipy.special, name)(a, axis=axis)
    _assert_same(getattr(special, name)(a, axis=axis), want, np.float64)
    a = np.abs(RNG.normal(size=shape))  # and finite values, where no NaN hides a difference
    _assert_same(getattr(special, name)(a), getattr(scipy.special, name)(a), np.float64)


def test_drop_ins_keep_scipy_signatures_and_defaults():
    import inspect
    for name in ("softmax", "log_softmax", "logsumexp"):
        ours = inspect.signature(getattr(special, name))
        theirs = inspect.signature(getattr(scipy.special, name))
        assert list(ours.parameters) == list(theirs.parameters)
        assert [p.default for p in ours.parameters.values()] == [
            p.default for p in theirs.parameters.values()]


# ------------------------------- the main namespace, on every backend

@pytest.mark.parametrize("axis", [-1, 0, None])
def test_weighted_logsumexp_on_every_backend(backend, axis):
    a, b = _special_values((4, 6), np.float64)
    with np.errstate(all="ignore"):
        want_out, want_sign = scipy.special.logsumexp(a, axis=axis, b=b, return_sign=True)
        want_plain = scipy.special.logsumexp(a, axis=axis, b=b)
    out, sign = sa.logsumexp(backend.asarray(a), axis=axis, b=backend.asarray(b), return_sign=True)
    plain = sa.logsumexp(backend.asarray(a), axis=axis, b=backend.asarray(b))
    assert type(out) is type(backend.asarray(a))
    _assert_same(backend.to_numpy(out), want_out, np.float64)
    _assert_same(backend.to_numpy(sign), want_sign, np.float64)
    _assert_same(backend.to_numpy(plain), want_plain, np.float64)


def test_weighted_logsumexp_respects_where(backend):
    a, b = _special_values((3, 5), np.float64)
    where = RNG.random((3, 5)) < 0.6
    got, sign = sa.logsumexp(backend.asarray(a), b=backend.asarray(b), return_sign=True,
                             where=backend.asarray(where))
    # Leaving an entry out is giving it weight zero, where the entry is finite.
    finite_a = np.where(where, a, 0.0)
    with np.errstate(all="ignore"):
        want, want_sign = scipy.special.logsumexp(finite_a, axis=-1, b=np.where(where, b, 0.0),
                                                  return_sign=True)
    _assert_same(backend.to_numpy(got), want, np.float64)
    _assert_same(backend.to_numpy(sign), want_sign, np.float64)


def test_sign_without_weights():
    x = np.array([[0.0, 1.0], [-np.inf, -np.inf], [np.nan, 1.0]])
    out, sign = sa.logsumexp(x, return_sign=True)
    np.testing.assert_array_equal(sign, [1.0, 0.0, np.nan])
    np.testing.assert_array_equal(out, sa.logsumexp(x))


def test_weighted_logsumexp_is_accurate_where_terms_cancel_little():
    # log(e^1000 - e^0): the subtraction is done in log space, with log1p.
    got = sa.logsumexp(np.array([1000.0, 0.0]), b=np.array([1.0, -1.0]))
    assert got == 1000.0 + math.log1p(-math.exp(-1000.0))
    got = sa.logsumexp(np.array([1.0, 1.0 + 1e-12]), b=np.array([1.0, -1.0]), return_sign=True)
    want = 1.0 + math.log(math.expm1(1e-12))
    assert got[1] == -1.0
    assert math.isclose(got[0], want, rel_tol=1e-3)  # the inputs' rounding limits it


def test_logsumexp_does_not_write_into_its_inputs():
    a, b = _special_values((4, 5), np.float64)
    a0, b0 = a.copy(), b.copy()
    sa.logsumexp(a, b=b, return_sign=True)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"b": np.ones(4)}, ValueError, "b of shape"),
    ({"b": np.ones(3, complex)}, TypeError, "b must have a real numeric dtype"),
    ({"b": "weights"}, TypeError, "b must have a real numeric dtype"),
    ({"return_sign": "yes"}, TypeError, "return_sign"),
])
def test_bad_weights_and_flags_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        sa.logsumexp(np.zeros((2, 3)), **kwargs)


def test_weights_of_another_library_are_refused():
    array_api_strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="b must be an array of the same library as x"):
        sa.logsumexp(np.zeros(3), b=array_api_strict.ones(3))


# --------------------------------------- scipy.optimize with a fused gradient

def _multinomial_objective(X, y, n_classes, alpha):
    """Mean cross-entropy of a linear model plus alpha/2 ||W||^2, and its
    gradient, from softarray's fused loss-and-gradient."""
    n, d = X.shape

    def objective(w):
        W = w.reshape(n_classes, d)
        loss, grad_logits = sa.cross_entropy(X @ W.T, y, return_grad=True)
        return loss + 0.5 * alpha * w @ w, (grad_logits.T @ X).ravel() + alpha * w

    return objective


def _plain_numpy_objective(X, y, n_classes, alpha):
    """The same objective written plainly, value only."""
    def objective(w):
        logits = X @ w.reshape(n_classes, -1).T
        log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
        return -log_p[np.arange(len(y)), y].mean() + 0.5 * alpha * w @ w

    return objective


def test_fused_loss_and_gradient_drives_scipy_optimize():
    n, d, k, alpha = 300, 5, 4, 1e-2
    X = RNG.normal(size=(n, d))
    y = np.argmax(X @ RNG.normal(size=(d, k)) + RNG.gumbel(size=(n, k)), axis=1)
    fused = _multinomial_objective(X, y, k, alpha)
    plain = _plain_numpy_objective(X, y, k, alpha)
    w0 = np.zeros(k * d)
    # The gradient is the plain objective's, by finite differences.
    w_test = RNG.normal(size=k * d)
    assert scipy.optimize.check_grad(lambda w: fused(w)[0], lambda w: fused(w)[1], w_test) < 1e-5
    assert math.isclose(fused(w_test)[0], plain(w_test), rel_tol=1e-12)
    result = scipy.optimize.minimize(fused, w0, jac=True, method="L-BFGS-B",
                                     options={"gtol": 1e-10})
    reference = scipy.optimize.minimize(plain, w0, method="L-BFGS-B", options={"gtol": 1e-10})
    assert result.success
    assert result.fun <= reference.fun + 1e-9
    np.testing.assert_allclose(result.x, reference.x, atol=1e-4)
