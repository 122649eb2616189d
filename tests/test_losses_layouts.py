"""Every loss on every memory layout gives the contiguous call's result.

The logits of one sample may lie at any stride: a ``[:, ::2]`` view, a
negative stride, ``axis=0`` of a C array (classes along the rows), a
Fortran-ordered array, a broadcast (stride 0) view, a class axis in the
middle of three. Each is compared with the same values made contiguous and
with float64 references written below in plain NumPy (loss per sample and
the gradient of their sum).

Equality with the contiguous call:

* bit for bit wherever nothing is summed in double over the classes: the
  softmax-based losses' normalizer is summed by one blocked helper for
  every layout (a strided sample is gathered block by block and takes the
  contiguous pass);
* within ``DOUBLE_SUM_RTOL`` for the terms summed in double over the classes
  (label smoothing, probability targets, the Z-loss's moments, the
  Weston-Watkins hinge sum): the compiler vectorizes a unit-stride loop and a
  strided one with different partial sums, which moves the last bit.

Class counts reach 2**24 and 2**25 for cross_entropy and focal_loss, where one
float running sum over the classes (which stops counting at 2**24) would be
off by 1e-3.
"""
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, log_softmax, logsumexp

import softarray as sa

# Reference tolerances of float32 and float64 results (per entry, plus the
# same fraction of the largest entry: gradients mix entries near 0 with
# entries near 1).
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}
# Sums in double whose order differs between the unit-stride and the strided
# loop: a few units of 2**-53 relative to the summed terms, which a float32
# result may round across once.
DOUBLE_SUM_RTOL = {np.dtype(np.float32): 2.0 ** -23, np.dtype(np.float64): 1e-13}

W = "@classes"          # per-class weights drawn for the case
IGNORED = -100

CASES = [
    ("cross_entropy", "index", {}),
    ("cross_entropy", "index", {"weight": W, "ignore_index": IGNORED, "label_smoothing": 0.2}),
    ("cross_entropy", "prob", {"weight": W, "label_smoothing": 0.1}),
    ("nll_loss", "index", {"weight": W}),
    ("focal_loss", "index", {"gamma": 2.0, "alpha": W}),
    ("focal_loss", "index", {"gamma": 0.5, "ignore_index": IGNORED}),
    ("comp_sum_loss", "index", {"tau": 0.5, "weight": W}),
    ("generalized_cross_entropy", "index", {"q": 0.7}),
    ("mae_loss", "index", {}),
    ("z_loss", "index", {"a": 1.5, "b": 0.5, "weight": W}),
    ("multi_margin_loss", "index", {"p": 2, "margin": 0.5, "weight": W}),    # squared hinge
    ("multi_margin_loss", "index", {"p": 1, "form": "crammer_singer"}),
    ("logsumexp_penalty", None, {"weight": 0.1}),
    ("kl_div", "prob", {"from_logits": True}),
    ("kl_div", "prob", {}),                                                 # pointwise
    ("binary_cross_entropy_with_logits", "binary", {"pos_weight": W}),
    ("sigmoid_focal_loss", "binary", {"alpha": 0.25, "gamma": 2.0}),
]


def _double_sums(name, kind, opts):
    """Whether the loss sums terms in double over the classes."""
    return (opts.get("label_smoothing", 0) > 0 or name == "z_loss"
            or (name == "cross_entropy" and kind == "prob")
            or (name == "kl_div" and opts.get("from_logits"))
            or (name == "multi_margin_loss" and opts.get("form", "weston_watkins") == "weston_watkins"))


def _elementwise(name, opts):
    """A loss without a class axis (its kernel reads contiguous rows)."""
    return name in ("binary_cross_entropy_with_logits", "sigmoid_focal_loss") or (
        name == "kl_div" and not opts.get("from_logits"))


def _loss_per_element(name):
    """reduction="none" gives one loss per element, not per sample."""
    return name in ("binary_cross_entropy_with_logits", "sigmoid_focal_loss", "kl_div")


def _case_id(case):
    name, kind, opts = case
    return "-".join([name, str(kind)] + [f"{k}={v}" for k, v in opts.items()])


# ===================================================== float64 references
# Each returns (loss per sample (M,), or per element (M, C) for kl_div and
# the binary losses, gradient of their sum (M, C)) for float64 logits z (M, C) with the classes last.

def _one_hot(y, c):
    return np.arange(c) == y[:, None]


def _kept(y):
    return y != IGNORED


def _class_weights(opts, c):
    w = opts.get("weight", opts.get("alpha"))
    return np.ones(c) if w is None else np.asarray(w, np.float64)


def ref_cross_entropy(z, target, opts):
    """Every form is l = sum_c a_c (-log p_c), a_c >= 0; dl/dz = p sum(a) - a."""
    c = z.shape[1]
    w, eps = _class_weights(opts, c), opts.get("label_smoothing", 0.0)
    if target.ndim == 2:                                    # probabilities
        a = w * ((1 - eps) * target + eps / c)
    else:
        y = np.where(_kept(target), target, 0)
        a = w * ((1 - eps) * _one_hot(y, c) + eps / c) * _kept(target)[:, None]
    logp = log_softmax(z, axis=1)
    return -(a * logp).sum(1), np.exp(logp) * a.sum(1, keepdims=True) - a


def ref_kl_from_logits(z, t, opts):
    """t_c (log t_c - log p_c) per element; gradient of the sum p sum(t) - t."""
    logp = log_softmax(z, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(t > 0, t * (np.log(t) - logp), 0.0)
    return per, np.exp(logp) * t.sum(1, keepdims=True) - t


def ref_nll_loss(z, y, opts):
    wy = _class_weights(opts, z.shape[1])[y]
    return -wy * z[np.arange(len(y)), y], -wy[:, None] * _one_hot(y, z.shape[1])


def _of_log_p_target(f, df):
    """A loss w_y f(s) of s = log p_y: its gradient is w_y f'(s) (onehot - p)."""
    def ref(z, target, opts):
        kept = _kept(target)
        y = np.where(kept, target, 0)
        logp = log_softmax(z, axis=1)
        s = logp[np.arange(len(y)), y]
        wy = _class_weights(opts, z.shape[1])[y] * kept
        return wy * f(s, opts), (wy * df(s, opts))[:, None] * (_one_hot(y, z.shape[1]) - np.exp(logp))
    return ref


def _focal(s, o):
    return -(-np.expm1(s)) ** o["gamma"] * s


def _focal_ds(s, o):
    g, q = o["gamma"], np.exp(s)
    return g * (1 - q) ** (g - 1) * q * s - (1 - q) ** g


def _comp_sum(tau):
    """Phi_tau(1/p - 1) = ((1/p)^(1 - tau) - 1) / (1 - tau), through s = log p."""
    return (_of_log_p_target(lambda s, o: np.expm1(-(1 - tau) * s) / (1 - tau),
                             lambda s, o: -np.exp(-(1 - tau) * s)))


def ref_logsumexp_penalty(z, _, opts):
    lse = logsumexp(z, axis=1)
    p = np.exp(z - lse[:, None])
    return opts["weight"] * lse ** 2, 2 * opts["weight"] * lse[:, None] * p


def ref_z_loss(z, y, opts):
    """w_y softplus(a (b - zeta_y)) / a, zeta = (z - mean) / std (population);
    d zeta_y / d z_c = ([c == y] - 1/C - zeta_y zeta_c / C) / std. Equal
    logits (std 0) take zeta = 0 and no gradient, as documented."""
    a, b, c = opts["a"], opts["b"], z.shape[1]
    mu, sigma = z.mean(1, keepdims=True), z.std(1, keepdims=True)
    equal = (z == z[:, :1]).all(1, keepdims=True)
    sigma = np.where(equal, np.inf, sigma)          # zeta 0, gradient 0
    zeta = (z - mu) / sigma
    zeta_y = zeta[np.arange(len(y)), y][:, None]
    wy = _class_weights(opts, c)[y][:, None]
    u = a * (b - zeta_y)
    dzeta = (_one_hot(y, c) - 1 / c - zeta_y * zeta / c) / sigma
    return (wy * np.logaddexp(0, u) / a)[:, 0], -wy * expit(u) * dzeta


def ref_multi_margin_loss(z, y, opts):
    """h_c = margin - z_y + z_c over c != y; Weston-Watkins: w_y sum max(0, h)^p / C,
    Crammer-Singer: w_y max(0, max_c h_c)^p."""
    m, c = z.shape
    p, wy = opts.get("p", 1), _class_weights(opts, c)[y]
    h = opts.get("margin", 1.0) - z[np.arange(m), y][:, None] + z
    other = ~_one_hot(y, c)
    if opts.get("form", "weston_watkins") == "weston_watkins":
        hinge = np.where(other, np.maximum(h, 0), 0.0)
        dh = wy[:, None] * p * hinge ** (p - 1) * (hinge > 0) / c
        per = wy * (hinge ** p).sum(1) / c
    else:
        h = np.where(other, h, -np.inf)
        top = h.argmax(1)
        worst = np.maximum(h[np.arange(m), top], 0)
        per = wy * worst ** p
        dh = np.zeros((m, c))
        dh[np.arange(m), top] = wy * p * worst ** (p - 1) * (worst > 0)
    return per, dh - _one_hot(y, c) * dh.sum(1, keepdims=True)


def ref_binary_cross_entropy(x, t, opts):
    """(1 - t) x + lw softplus(-x), lw = 1 + (pos_weight - 1) t; gradient (1 - t) - lw sigmoid(-x)."""
    lw = 1 + (opts["pos_weight"] - 1) * t
    return (1 - t) * x + lw * np.logaddexp(0, -x), (1 - t) - lw * expit(-x)


def ref_sigmoid_focal(x, t, opts):
    """alpha_t (1 - p_t)^gamma ce, ce = t softplus(-x) + (1 - t) softplus(x),
    1 - p_t = p (1 - t) + (1 - p) t, whose derivative is p (1 - p) (1 - 2t)."""
    al, g = opts["alpha"], opts["gamma"]
    p = expit(x)
    ce = t * np.logaddexp(0, -x) + (1 - t) * np.logaddexp(0, x)
    r = p * (1 - t) + (1 - p) * t
    alpha_t = al * t + (1 - al) * (1 - t)
    dr = p * (1 - p) * (1 - 2 * t)
    return alpha_t * r ** g * ce, alpha_t * ((p - t) * r ** g + ce * g * r ** (g - 1) * dr)


def ref_kl_pointwise(x, t, opts):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t > 0, t * (np.log(t) - x), 0.0), -t


# comp-sum's tau of the losses built on it (GCE: 1 + q; MAE: 2)
TAU = {
    "comp_sum_loss": lambda o: o["tau"],
    "generalized_cross_entropy": lambda o: 1 + o.get("q", 0.7),
    "mae_loss": lambda o: 2.0,
}
REFERENCES = {
    "cross_entropy": ref_cross_entropy,
    "nll_loss": ref_nll_loss,
    "focal_loss": _of_log_p_target(_focal, _focal_ds),
    "z_loss": ref_z_loss,
    "multi_margin_loss": ref_multi_margin_loss,
    "logsumexp_penalty": ref_logsumexp_penalty,
    "binary_cross_entropy_with_logits": ref_binary_cross_entropy,
    "sigmoid_focal_loss": ref_sigmoid_focal,
}


def reference(name, z, target, opts):
    if name in TAU:
        return _comp_sum(TAU[name](opts))(z, target, opts)
    if name == "kl_div":
        return (ref_kl_from_logits if opts.get("from_logits") else ref_kl_pointwise)(z, target, opts)
    return REFERENCES[name](z, target, opts)


# ===================================================== layouts
# A layout takes the logical (N, C) values (classes last) and returns
# (values, array, axis, to_logical): values are what the array holds,
# logically (a broadcast view holds other values than it was given), array
# is what the loss is called with, to_logical maps a result of the array's
# shape (a gradient, an elementwise loss) back to (N, C). N is 6.

def _strided(x):
    big = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
    big[:, ::2] = x
    return x, big[:, ::2], -1, lambda r: r


def _negative_stride(x):
    return x, np.ascontiguousarray(x[:, ::-1])[:, ::-1], -1, lambda r: r


def _axis0_c_order(x):
    return x, np.ascontiguousarray(x.T), 0, lambda r: r.T


def _axis0_view(x):         # F-ordered (C, N): classes contiguous, samples strided
    return x, x.T, 0, lambda r: r.T


def _fortran(x):
    return x, np.asfortranarray(x), -1, lambda r: r


def _broadcast_rows(x):     # stride 0 between samples
    v = np.broadcast_to(x[0], x.shape)
    return np.ascontiguousarray(v), v, -1, lambda r: r


def _broadcast_classes(x):  # stride 0 along the classes: one value per sample
    v = np.broadcast_to(x[:, :1], x.shape)
    return np.ascontiguousarray(v), v, -1, lambda r: r


def _class_axis_1_of_3(x):  # (2, C, 3), axis=1: samples (a, h) -> n = 3 a + h
    n, c = x.shape
    v = np.ascontiguousarray(x.reshape(2, n // 2, c).transpose(0, 2, 1))
    return x, v, 1, lambda r: r.transpose(0, 2, 1).reshape(n, c)


LAYOUTS = {
    "strided": _strided,
    "negative stride": _negative_stride,
    "axis=0 C order": _axis0_c_order,
    "axis=0 F order": _axis0_view,
    "F order": _fortran,
    "broadcast samples": _broadcast_rows,
    "broadcast classes": _broadcast_classes,
    "axis=1 of 3": _class_axis_1_of_3,
}
# An elementwise loss has no class axis: it sees the layouts that keep the shape.
SAME_SHAPE = ["strided", "negative stride", "F order", "broadcast samples", "broadcast classes"]


def _lay_target(layout, target):
    """The target laid out as the logits (probabilities, elementwise targets)
    or shaped as their samples (class indices)."""
    if target is None:
        return None
    if target.ndim == 2:
        fn = _strided if layout in ("strided", "broadcast samples", "broadcast classes") else LAYOUTS[layout]
        return fn(target)[1]
    return target.reshape(2, -1) if layout == "axis=1 of 3" else target


def make_case(case, dtype, n, c, seed):
    name, kind, opts = case
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal((n, c))).astype(dtype)
    target = None
    if kind == "index":
        target = rng.integers(0, c, n)
        if opts.get("ignore_index") is not None:
            target[1] = IGNORED
    elif kind == "prob":
        t = rng.random((n, c))
        t[:, ::5] = 0.0
        target = (t / t.sum(1, keepdims=True)).astype(dtype)
    elif kind == "binary":
        target = (rng.random((n, c)) < 0.4).astype(dtype)
    opts = {k: (rng.uniform(0.3, 2.0, c).astype(dtype) if v is W else v) for k, v in opts.items()}
    return x, target, opts


def run(name, x, target, opts, axis, reduction="none"):
    kw = dict(opts)
    if not _elementwise(name, opts):
        kw["axis"] = axis
    args = [x] if target is None else [x, target]
    return getattr(sa, name)(*args, **kw, reduction=reduction, return_grad=True)


def assert_near(got, want, rtol):
    want = np.asarray(want, np.float64)
    atol = rtol * max(np.abs(want).max(initial=0.0), 1.0)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


def _layout_params():
    for case in CASES:
        layouts = SAME_SHAPE if _elementwise(case[0], case[2]) else list(LAYOUTS)
        for layout in layouts:
            yield pytest.param(case, layout, id=f"{_case_id(case)}-{layout}")


# ===================================================== every loss, every layout

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [37, 1300])          # one block; three blocks of 512
@pytest.mark.parametrize("case, layout", list(_layout_params()))
def test_layout_matches_contiguous_and_reference(case, layout, c, dtype):
    name, kind, _ = case
    x, target, opts = make_case(case, dtype, 6, c, seed=c)
    values, arr, axis, to_logical = LAYOUTS[layout](x)
    want_loss, want_grad = run(name, values, target, opts, -1)
    loss, grad = run(name, arr, _lay_target(layout, target), opts, axis)
    assert grad.shape == arr.shape and grad.dtype == arr.dtype
    loss = to_logical(loss) if _loss_per_element(name) else np.asarray(loss).reshape(-1)
    grad = to_logical(grad)
    if _double_sums(name, kind, opts):
        assert_near(loss, want_loss, DOUBLE_SUM_RTOL[np.dtype(dtype)])
        assert_near(grad, want_grad, DOUBLE_SUM_RTOL[np.dtype(dtype)])
    else:
        np.testing.assert_array_equal(loss, want_loss)
        np.testing.assert_array_equal(grad, want_grad)

    ref_loss, ref_grad = reference(name, values.astype(np.float64),
                                   None if target is None else np.asarray(target, np.float64)
                                   if kind in ("prob", "binary") else target, opts)
    assert_near(loss, ref_loss, RTOL[np.dtype(dtype)])
    assert_near(grad, ref_grad, RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", [c for c in CASES if not _elementwise(c[0], c[2])], ids=_case_id)
def test_reductions_on_axis0(case, reduction):
    """The reductions run over the per-sample losses, whatever the layout."""
    name, kind, _ = case
    x, target, opts = make_case(case, np.float32, 6, 700, seed=5)
    want_loss, want_grad = run(name, x, target, opts, -1, reduction)
    loss, grad = run(name, np.ascontiguousarray(x.T), _lay_target("axis=0 C order", target),
                     opts, 0, reduction)
    assert loss.shape == () and loss.dtype == np.float32
    if _double_sums(name, kind, opts):
        rtol = DOUBLE_SUM_RTOL[np.dtype(np.float32)]
        np.testing.assert_allclose(loss, want_loss, rtol=rtol)
        assert_near(grad.T, want_grad, rtol)
    else:
        np.testing.assert_array_equal(loss, want_loss)
        np.testing.assert_array_equal(grad.T, want_grad)


def test_every_loss_is_covered():
    """The cases above name every loss of the family: the functions of
    __all__ defined in softarray._losses and those docs/losses.md lists."""
    names = {name for name in sa.__all__
             if getattr(getattr(sa, name), "__module__", "") == "softarray._losses"}
    doc = (Path(__file__).parent.parent / "docs" / "losses.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)\(", doc, flags=re.M)) - {"linear_cross_entropy"}
    assert names and names == documented
    assert {case[0] for case in CASES} == names


# ===================================================== linear_cross_entropy

@pytest.mark.parametrize("layout", ["strided", "F order", "row-strided"])
def test_linear_cross_entropy_layouts(layout):
    """Embeddings and classifier in other layouts give the contiguous
    result (BLAS may block a strided product differently: float32 rounding)
    and match cross_entropy of the float64 logits."""
    rng = np.random.default_rng(3)
    n, d, v = 6, 24, 1300
    e = rng.standard_normal((n, d)).astype(np.float32)
    w = (0.5 * rng.standard_normal((v, d))).astype(np.float32)
    y = rng.integers(0, v, n)

    def lay(a):
        if layout == "strided":
            return _strided(a)[1]
        if layout == "F order":
            return np.asfortranarray(a)
        big = np.zeros((2 * a.shape[0], a.shape[1]), a.dtype)
        big[::2] = a
        return big[::2]

    want_loss, want_grads = sa.linear_cross_entropy(e, w, y, reduction="sum", return_grad=True)
    loss, grads = sa.linear_cross_entropy(lay(e), lay(w), y, reduction="sum", return_grad=True)
    for got, want in zip((loss,) + grads, (want_loss,) + want_grads):
        assert_near(got, want, 1e-6)
    ref_loss, ref_grad = ref_cross_entropy(e.astype(np.float64) @ w.T.astype(np.float64), y, {})
    assert_near(loss, ref_loss.sum(), RTOL[np.dtype(np.float32)])
    assert_near(grads[0], ref_grad @ w.astype(np.float64), RTOL[np.dtype(np.float32)])
    assert_near(grads[1], ref_grad.T @ e.astype(np.float64), RTOL[np.dtype(np.float32)])


# ===================================================== many classes

def _check_rows_against_float64(loss, grad, z_rows, y, name):
    """Per-sample float32 loss and gradient rows against float64, a chunk of
    classes at a time (a 2**24-class row is 128 MB in float64). A float32
    running sum over the classes was off by 1e-3 relative here and left the
    gradient rows summing to 6e-3; blocked sums are not."""
    chunks = [slice(s, s + 2 ** 20) for s in range(0, z_rows.shape[1], 2 ** 20)]
    for i, (zi, yi) in enumerate(zip(z_rows, y)):
        m = float(zi.max())
        total = sum(np.exp(zi[s].astype(np.float64) - m).sum() for s in chunks)
        log_q = (float(zi[yi]) - m) - np.log(total)
        q = np.exp(log_q)
        if name == "cross_entropy":
            want, k = -log_q, -1.0              # gradient k (onehot - p)
        else:                                   # focal, gamma = 2
            want, k = -(1 - q) ** 2 * log_q, 2 * (1 - q) * q * log_q - (1 - q) ** 2
        np.testing.assert_allclose(loss[i], want, rtol=1e-6)
        row_sum = 0.0
        for s in chunks:
            want_g = -k * np.exp(zi[s].astype(np.float64) - m) / total
            if s.start <= yi < s.stop:
                want_g[yi - s.start] += k
            g = grad[i, s].astype(np.float64)
            np.testing.assert_allclose(g, want_g, rtol=1e-5, atol=0)
            row_sum += g.sum()
        assert abs(row_sum) < 1e-6, row_sum


@pytest.mark.parametrize("name", ["cross_entropy", "focal_loss"])
@pytest.mark.parametrize("c", [2 ** 17, 2 ** 20])
def test_many_classes_strided_view(name, c):
    """The report's case: four rows, a [:, ::2] view, against the same
    values made contiguous (bit for bit) and float64; also as a torch
    tensor view (shared through DLPack)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(c)
    x = (3 * rng.standard_normal((4, 2 * c), dtype=np.float32))[:, ::2]
    y = np.array([0, c // 3, c // 2, c - 1])
    fn = getattr(sa, name)
    loss, grad = fn(x, y, reduction="none", return_grad=True)
    want_loss, want_grad = fn(np.ascontiguousarray(x), y, reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(grad, want_grad)
    tl, tg = fn(torch.from_numpy(x.base)[:, ::2], torch.from_numpy(y), reduction="none", return_grad=True)
    np.testing.assert_array_equal(tl.numpy(), want_loss)
    np.testing.assert_array_equal(tg.numpy(), want_grad)
    _check_rows_against_float64(loss, grad, x, y, name)


@pytest.fixture(scope="module")
def two_samples_of_2_24_classes():
    """Two samples of 2**24 float32 logits stored as (C, 2): classes along
    axis 0, at a stride of two elements (128 MB)."""
    c = 2 ** 24
    rng = np.random.default_rng(24)
    cols = np.empty((c, 2), np.float32)
    cols[:, 0] = rng.standard_normal(c, dtype=np.float32) * 3
    cols[:, 1] = rng.standard_normal(c, dtype=np.float32) * 1
    return cols, np.array([5, c - 7])


def assert_identical(got, want):
    """Bit-for-bit equality, without assert_array_equal's temporaries (a few
    times the size of a 128 MB gradient)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    if not np.array_equal(got, want):
        differ = np.count_nonzero(got != want)
        raise AssertionError(f"{differ} of {got.size} entries differ")


@pytest.mark.parametrize("name", ["cross_entropy", "focal_loss"])
def test_2_24_classes_axis0_and_transposed_view(name, two_samples_of_2_24_classes):
    """axis=0 of the (C, 2) array and its (2, C) transposed view (class
    stride 2) equal the contiguous (2, C) call bit for bit and match float64."""
    cols, y = two_samples_of_2_24_classes
    fn = getattr(sa, name)
    want_loss, want_grad = fn(np.ascontiguousarray(cols.T), y, reduction="none", return_grad=True)
    loss, grad = fn(cols, y, axis=0, reduction="none", return_grad=True)
    assert_identical(loss, want_loss)
    assert_identical(grad.T, want_grad)
    del grad
    loss, grad = fn(cols.T, y, reduction="none", return_grad=True)
    assert_identical(loss, want_loss)
    assert_identical(grad, want_grad)
    del want_grad
    _check_rows_against_float64(loss, grad, cols.T, y, name)


@pytest.mark.parametrize("name", ["cross_entropy", "focal_loss"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_equal_logits_broadcast_past_2_24_classes(name, axis):
    """2**25 zero logits broadcast with stride 0: p = 2**-25 for every class,
    so cross-entropy is 25 log 2 (a float count of the classes stops at
    2**24 and gave 24 log 2) and the gradient is p - onehot."""
    c = 2 ** 25
    shape = (1, c) if axis == -1 else (c, 1)
    x = np.broadcast_to(np.zeros((1, 1), np.float32), shape)
    loss, grad = getattr(sa, name)(x, np.array([3]), axis=axis, reduction="sum", return_grad=True)
    log_q = -25 * np.log(2.0)
    q = 2.0 ** -25
    want = -log_q if name == "cross_entropy" else -(1 - q) ** 2 * log_q
    k = -1.0 if name == "cross_entropy" else 2 * (1 - q) * q * log_q - (1 - q) ** 2
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    g = grad.reshape(-1)
    np.testing.assert_allclose(g[[0, 1, c // 2, c - 1]], -k * q, rtol=1e-6)
    np.testing.assert_allclose(g[3], k * (1 - q), rtol=1e-6)
    assert np.all(g[4:] == g[0])
