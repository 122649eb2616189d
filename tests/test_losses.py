"""The losses family (issue 3, docs/losses_spec_draft.md) through every
backend, against independent references written here:

* float64 NumPy formulas (values; for cross_entropy also the gradient, from
  the textbook identity d/dz sum_c a_c (lse - z_c) = p sum(a) - a);
* PyTorch float64 with autograd: torch.nn.functional where torch has the loss
  (cross_entropy, nll_loss, binary_cross_entropy_with_logits, kl_div,
  multi_margin_loss), otherwise the paper's formula written with torch ops
  (z_loss, focal_loss, sigmoid_focal_loss as torchvision documents it,
  comp_sum_loss, generalized_cross_entropy, mae_loss, logsumexp_penalty,
  crammer_singer, kl_div from_logits);
* central finite differences of the NumPy values for the losses torch lacks.

Expected values are never taken from softarray itself.
"""
import math
import warnings

import numpy as np
import pytest
import scipy.special
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import softarray as sa
from half_precision import assert_within_one_step
from layouts import memory_layouts

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch is an optional peer; torch-only tests skip
    torch = F = None

# float64: the kernels and the references agree to a few ulps per operation;
# 1e-10 leaves room for sums over rows and exp/log conditioning.
# float32: the input rounding propagated through exp (|z - max| * 2^-24).
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
DTYPES = [np.float32, np.float64]

SOFTMAX_INDEX_LOSSES = ["cross_entropy", "z_loss", "focal_loss", "comp_sum_loss",
                        "generalized_cross_entropy", "mae_loss"]
INDEX_LOSSES = SOFTMAX_INDEX_LOSSES + ["nll_loss", "multi_margin_loss"]
# the scalar options some losses need (z_loss's a and b have no settled default)
REQUIRED = {"z_loss": {"a": 1.0, "b": 0.0}, "comp_sum_loss": {"tau": 0.5}}


# ===================================================== NumPy references

def _class_last(x, axis):
    """float64 rows (M, C) with the class axis last, and the batch shape."""
    z = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    return z.reshape(-1, z.shape[-1]), z.shape[:-1]


def _log_softmax(z):
    """log_softmax of rows as (z - max) - log1p(rest), rest the sum of
    exp(z - max) over the entries below the max (plus the count of other
    entries equal to it): accurate where p_y -> 1 and lse - z_y ~ eps, where
    z - logsumexp(z) would lose digits to cancellation."""
    m = z.max(-1, keepdims=True, initial=-np.inf)
    at_max = z == m
    with np.errstate(invalid="ignore"):
        rest = np.where(at_max, 0.0, np.exp(z - m)).sum(-1, keepdims=True) + (
            at_max.sum(-1, keepdims=True) - 1)
        return (z - m) - np.log1p(rest)


def _log_softmax_along(x, axis):
    z = np.moveaxis(x, axis, -1)
    return np.moveaxis(_log_softmax(z.reshape(-1, z.shape[-1])).reshape(z.shape), -1, axis)


def _index_rows(x, target, axis, ignore_index):
    z, batch = _class_last(x, axis)
    t = np.asarray(target).astype(np.int64).reshape(-1)
    valid = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    return z, np.where(valid, t, 0), valid, batch


def _class_weights(weight, c):
    return np.ones(c) if weight is None else np.asarray(weight, dtype=np.float64)


def _reduce(per, reduction, shape, denom):
    if reduction == "none":
        return per.reshape(shape)
    if reduction == "sum":
        return per.sum()
    # A mean over a total weight of 0 is NaN, as torch's, even where label
    # smoothing leaves the zero-weight samples a nonzero sum (x / 0 = inf)
    return np.divide(per.sum(), denom) if denom != 0 else np.float64(np.nan)


def np_cross_entropy(x, target, axis=-1, weight=None, ignore_index=None,
                     label_smoothing=0.0, reduction="mean"):
    """(loss, grad). Every form is l = sum_c a_c (lse - z_c) for coefficients
    a_c >= 0, whose gradient is p_c sum_k a_k - a_c."""
    eps = label_smoothing
    z, batch = _class_last(x, axis)
    m, c = z.shape
    w = _class_weights(weight, c)
    if np.issubdtype(np.asarray(target).dtype, np.floating):
        t, _ = _class_last(target, axis)
        a = w * ((1 - eps) * t + eps / c)
        valid, denom = np.ones(m, bool), m
    else:
        z, y, valid, batch = _index_rows(x, target, axis, ignore_index)
        a = np.zeros((m, c))
        a[np.arange(m), y] = (1 - eps) * w[y]
        a += eps / c * w
        a *= valid[:, None]
        denom = (w[y] * valid).sum()
    logp = _log_softmax(z)
    with np.errstate(invalid="ignore"):
        per = -np.where(a == 0, 0.0, a * logp).sum(-1)
        g = np.exp(logp) * a.sum(-1, keepdims=True) - a
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            g = g * np.divide(1.0, denom)
    g[~valid] = 0.0                                   # ignored: exactly no gradient
    moved = np.moveaxis(np.empty(np.shape(x)), axis, -1).shape
    return _reduce(per, reduction, batch, denom), np.moveaxis(g.reshape(moved), -1, axis)


def np_nll_loss(x, target, axis=-1, weight=None, ignore_index=None, reduction="mean"):
    z, y, valid, batch = _index_rows(x, target, axis, ignore_index)
    wy = _class_weights(weight, z.shape[1])[y] * valid
    return _reduce(-wy * z[np.arange(len(y)), y], reduction, batch, wy.sum())


def np_z_loss(x, target, a, b, axis=-1, weight=None, ignore_index=None, reduction="mean"):
    """de Brebisson & Vincent (2016): softplus(a (b - zeta_y)) / a, zeta the
    z-score of the target logit (population standard deviation)."""
    z, y, valid, batch = _index_rows(x, target, axis, ignore_index)
    mu = z.mean(-1)
    sigma = np.sqrt(((z - mu[:, None]) ** 2).mean(-1))
    zy = z[np.arange(len(y)), y]
    with np.errstate(invalid="ignore", divide="ignore"):
        zeta = np.where(sigma > 0, (zy - mu) / sigma, 0.0)
    wy = _class_weights(weight, z.shape[1])[y] * valid
    return _reduce(wy * np.logaddexp(0.0, a * (b - zeta)) / a, reduction, batch, wy.sum())


def np_focal_loss(x, target, gamma=2.0, alpha=None, axis=-1, ignore_index=None,
                  reduction="mean"):
    """Lin et al. (2017), softmax form: -alpha_y (1 - p_y)^gamma log p_y."""
    z, y, valid, batch = _index_rows(x, target, axis, ignore_index)
    logq = _log_softmax(z)[np.arange(len(y)), y]
    al = _class_weights(alpha, z.shape[1])[y]
    per = np.where(valid, -al * (-np.expm1(logq)) ** gamma * logq, 0.0)
    return _reduce(per, reduction, batch, valid.sum())


def _p_target(z, y):
    return np.exp(_log_softmax(z)[np.arange(len(y)), y])


def _weighted_index_loss(phi):
    """A per-sample loss phi(z_rows, y) with class weights w_y and the
    weighted mean."""
    def ref(x, target, axis=-1, weight=None, ignore_index=None, reduction="mean", **kw):
        z, y, valid, batch = _index_rows(x, target, axis, ignore_index)
        wy = _class_weights(weight, z.shape[1])[y] * valid
        per = np.where(valid, wy * phi(z, y, **kw), 0.0)
        return _reduce(per, reduction, batch, wy.sum())
    return ref


def _phi_comp_sum(z, y, tau):
    """Mao, Mohri & Zhong: Phi_tau(u) at u = sum_{c != y} exp(z_c - z_y) = 1/p_y - 1,
    written through log p_y to stay accurate."""
    logq = _log_softmax(z)[np.arange(len(y)), y]
    if tau == 1:
        return -logq
    return np.expm1(-(1 - tau) * logq) / (1 - tau)


np_comp_sum_loss = _weighted_index_loss(_phi_comp_sum)
np_generalized_cross_entropy = _weighted_index_loss(
    lambda z, y, q=0.7: (1 - _p_target(z, y) ** q) / q)
np_mae_loss = _weighted_index_loss(lambda z, y: 1 - _p_target(z, y))


def np_multi_margin_loss(x, target, p=1, margin=1.0, weight=None, form="weston_watkins",
                         axis=-1, reduction="mean"):
    z, y, _, batch = _index_rows(x, target, axis, None)
    m, c = z.shape
    h = margin - z[np.arange(m), y][:, None] + z
    other = np.arange(c)[None, :] != y[:, None]
    if form == "weston_watkins":
        per = np.where(other, np.maximum(h, 0.0) ** p, 0.0).sum(-1) / c
    else:  # crammer_singer: the largest violation only; none when C == 1
        per = np.maximum(np.where(other, h, -np.inf).max(-1, initial=-np.inf), 0.0) ** p
    return _reduce(_class_weights(weight, c)[y] * per, reduction, batch, m)


def np_logsumexp_penalty(x, axis=-1, weight=1.0, reduction="mean"):
    z, batch = _class_last(x, axis)
    lse = scipy.special.logsumexp(z, axis=-1)
    return _reduce(weight * lse ** 2, reduction, batch, z.shape[0])


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def np_binary_cross_entropy_with_logits(x, target, weight=None, pos_weight=None,
                                        reduction="mean"):
    """-w [pw t log sigmoid(x) + (1 - t) log sigmoid(-x)], pw along the last axis."""
    x = np.asarray(x, np.float64)
    t = np.asarray(target, np.float64)
    w = 1.0 if weight is None else np.asarray(weight, np.float64)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    per = np.broadcast_to(-w * (pw * t * _log_sigmoid(x) + (1 - t) * _log_sigmoid(-x)), x.shape)
    return _reduce(per, reduction, x.shape, x.size)


def np_sigmoid_focal_loss(x, target, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss, as its documentation writes it."""
    x = np.asarray(x, np.float64)
    t = np.asarray(target, np.float64)
    p = scipy.special.expit(x)
    ce = -(t * _log_sigmoid(x) + (1 - t) * _log_sigmoid(-x))
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return _reduce(loss, reduction, x.shape, x.size)


def np_kl_div(x, target, axis=-1, reduction="mean", log_target=False, from_logits=False):
    x = np.asarray(x, np.float64)
    t = np.asarray(target, np.float64)
    inp = _log_softmax_along(x, axis) if from_logits else x
    if log_target:
        per = np.exp(t) * (t - inp)
    else:
        per = scipy.special.xlogy(t, t) - t * inp
    if reduction == "batchmean":
        return per.sum() / x.shape[0]
    return _reduce(per, reduction, x.shape, x.size)


NP_REF = {
    "cross_entropy": lambda *a, **k: np_cross_entropy(*a, **k)[0],
    "nll_loss": np_nll_loss,
    "z_loss": np_z_loss,
    "focal_loss": np_focal_loss,
    "comp_sum_loss": np_comp_sum_loss,
    "generalized_cross_entropy": np_generalized_cross_entropy,
    "mae_loss": np_mae_loss,
    "multi_margin_loss": np_multi_margin_loss,
    "logsumexp_penalty": np_logsumexp_penalty,
    "binary_cross_entropy_with_logits": np_binary_cross_entropy_with_logits,
    "sigmoid_focal_loss": np_sigmoid_focal_loss,
    "kl_div": np_kl_div,
}


def np_ref(name, x, target, **opts):
    return NP_REF[name](x, **opts) if target is None else NP_REF[name](x, target, **opts)


# ===================================================== torch references

def _tt(a, dtype=None):
    return None if a is None else torch.tensor(np.array(a, dtype=dtype))   # own copy


def _torch_reduce(per, reduction, denom):
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / denom


def _torch_index(xt, target, axis, ignore_index):
    """Logits with the class axis last, targets, validity mask."""
    z = xt.movedim(axis, -1)
    t = _tt(target, np.int64)
    valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
    return z, torch.where(valid, t, torch.zeros_like(t)), valid


def _class_dim_1(xt, axis):
    return xt if xt.ndim == 1 else xt.movedim(axis, 1).contiguous()


def tr_cross_entropy(xt, target, axis=-1, weight=None, ignore_index=None,
                     label_smoothing=0.0, reduction="mean"):
    target = np.asarray(target)
    t = _tt(target, np.float64 if target.dtype.kind == "f" else np.int64)
    if t.is_floating_point():
        t = _class_dim_1(t, axis)
    return F.cross_entropy(_class_dim_1(xt, axis), t, weight=_tt(weight, np.float64),
                           ignore_index=-100 if ignore_index is None else ignore_index,
                           label_smoothing=label_smoothing, reduction=reduction)


def tr_nll_loss(xt, target, axis=-1, weight=None, ignore_index=None, reduction="mean"):
    return F.nll_loss(_class_dim_1(xt, axis), _tt(target, np.int64),
                      weight=_tt(weight, np.float64),
                      ignore_index=-100 if ignore_index is None else ignore_index,
                      reduction=reduction)


def _torch_weighted(per_fn):
    def ref(xt, target, axis=-1, weight=None, ignore_index=None, reduction="mean", **kw):
        z, y, valid = _torch_index(xt, target, axis, ignore_index)
        w = torch.ones(z.shape[-1], dtype=z.dtype) if weight is None else _tt(weight, np.float64)
        wy = w[y] * valid
        per = torch.where(valid, wy * per_fn(z, y, **kw), torch.zeros_like(wy))
        return _torch_reduce(per, reduction, wy.sum())
    return ref


def _gather(z, y):
    return z.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def _z_per(z, y, a, b):
    mu = z.mean(-1)
    sigma = ((z - mu.unsqueeze(-1)) ** 2).mean(-1).sqrt()
    u = a * (b - (_gather(z, y) - mu) / sigma)
    # softplus as log(1 + e^u): F.softplus is linear beyond u = 20 (error e^-20)
    return torch.logaddexp(torch.zeros_like(u), u) / a


def _comp_sum_per(z, y, tau):
    """Phi_tau(u), u = sum_{c != y} exp(z_c - z_y), the paper's form."""
    other = torch.ones_like(z).scatter(-1, y.unsqueeze(-1), 0.0)
    u = ((z - _gather(z, y).unsqueeze(-1)).exp() * other).sum(-1)
    # ((1 + u)^(1 - tau) - 1) / (1 - tau), through expm1 so tau near 1 stays accurate
    return torch.log1p(u) if tau == 1 else torch.expm1((1 - tau) * torch.log1p(u)) / (1 - tau)


def _softmax_target(z, y):
    return _gather(torch.softmax(z, -1), y)


tr_z_loss = _torch_weighted(_z_per)
tr_comp_sum_loss = _torch_weighted(_comp_sum_per)
tr_generalized_cross_entropy = _torch_weighted(
    lambda z, y, q=0.7: (1 - _softmax_target(z, y) ** q) / q)
tr_mae_loss = _torch_weighted(lambda z, y: 1 - _softmax_target(z, y))


def tr_focal_loss(xt, target, gamma=2.0, alpha=None, axis=-1, ignore_index=None,
                  reduction="mean"):
    z, y, valid = _torch_index(xt, target, axis, ignore_index)
    logq = _gather(torch.log_softmax(z, -1), y)
    al = torch.ones(z.shape[-1], dtype=z.dtype) if alpha is None else _tt(alpha, np.float64)
    per = -al[y] * (-torch.expm1(logq)) ** gamma * logq
    per = torch.where(valid, per, torch.zeros_like(per))
    return _torch_reduce(per, reduction, valid.sum())


def tr_multi_margin_loss(xt, target, p=1, margin=1.0, weight=None, form="weston_watkins",
                         axis=-1, reduction="mean"):
    z = xt.movedim(axis, -1)
    batch = z.shape[:-1]
    z = z.reshape(-1, z.shape[-1])
    y = _tt(target, np.int64).reshape(-1)
    w = _tt(weight, np.float64)
    if form == "weston_watkins":
        per = F.multi_margin_loss(z, y, p=p, margin=margin, weight=w, reduction="none")
    else:
        h = margin - _gather(z, y).unsqueeze(-1) + z
        h = h.masked_fill(F.one_hot(y, z.shape[-1]).bool(), -math.inf)
        per = h.max(-1).values.clamp(min=0) ** p
        if w is not None:
            per = w[y] * per
    return _torch_reduce(per.reshape(batch), reduction, per.numel())


def tr_logsumexp_penalty(xt, axis=-1, weight=1.0, reduction="mean"):
    per = weight * torch.logsumexp(xt, dim=axis) ** 2
    return _torch_reduce(per, reduction, per.numel())


def tr_binary_cross_entropy_with_logits(xt, target, weight=None, pos_weight=None,
                                        reduction="mean"):
    return F.binary_cross_entropy_with_logits(xt, _tt(target, np.float64),
                                              weight=_tt(weight, np.float64),
                                              pos_weight=_tt(pos_weight, np.float64),
                                              reduction=reduction)


def tr_sigmoid_focal_loss(xt, target, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss's documented formula in torch ops."""
    t = _tt(target, np.float64)
    p = torch.sigmoid(xt)
    ce = F.binary_cross_entropy_with_logits(xt, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return _torch_reduce(loss, reduction, loss.numel())


def tr_kl_div(xt, target, axis=-1, reduction="mean", log_target=False, from_logits=False):
    inp = torch.log_softmax(xt, dim=axis) if from_logits else xt
    with warnings.catch_warnings():   # torch's notice that "mean" is not "batchmean"
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(inp, _tt(target, np.float64), reduction=reduction, log_target=log_target)


TORCH_REF = {name: globals()["tr_" + name] for name in NP_REF}


def torch_ref(name, x, target, **opts):
    """(loss, grad) in float64 by autograd; with reduction "none" the gradient
    of the sum of the losses."""
    xt = torch.tensor(np.array(x, dtype=np.float64), requires_grad=True)
    loss = TORCH_REF[name](xt, **opts) if target is None else TORCH_REF[name](xt, target, **opts)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


# ===================================================== calling softarray

def assert_close(got, want, dtype, rtol=None, floor=0.0):
    """rtol on each entry, atol at rtol of the largest finite reference entry
    (gradients and per-sample losses mix large entries with ones near 0), or
    of `floor` where entries that cancel to 0 may all be rounding noise."""
    rtol = RTOL[np.dtype(dtype)] if rtol is None else rtol
    want = np.asarray(want, dtype=np.float64)
    finite = np.abs(want[np.isfinite(want)])
    atol = rtol * max(finite.max() if finite.size else 0.0, floor)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol,
                               equal_nan=True)


def _is_array(v):
    return not isinstance(v, (bool, int, float, str, type(None)))


def to_backend(backend, x, target, opts):
    args = [backend.asarray(x)] + ([] if target is None else [backend.asarray(target)])
    kw = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
    return args, kw


def call(backend, name, x, target=None, return_grad=True, **opts):
    args, kw = to_backend(backend, x, target, opts)
    return getattr(sa, name)(*args, **kw, return_grad=return_grad)


def to_numpy_checked(backend, out, like, dtype, shape):
    """The result is the caller's array type, of the logits' dtype and the
    expected shape."""
    assert type(out) is type(like), (type(out), type(like))
    got = backend.to_numpy(out)
    assert got.dtype == np.dtype(dtype), got.dtype
    assert got.shape == tuple(shape), (got.shape, shape)
    return np.array(got)


def run_loss(backend, name, x, target, dtype, loss_shape, **opts):
    """(loss, grad) as NumPy arrays after the type, dtype, shape and
    inputs-unchanged checks."""
    args, kw = to_backend(backend, np.asarray(x, dtype=dtype), target, opts)
    arrays = args + [v for v in kw.values() if _is_array(v)]
    before = [np.array(backend.to_numpy(a)) for a in arrays]
    loss, grad = getattr(sa, name)(*args, **kw, return_grad=True)
    got_loss = to_numpy_checked(backend, loss, args[0], dtype, loss_shape)
    got_grad = to_numpy_checked(backend, grad, args[0], dtype, np.shape(x))
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(backend.to_numpy(a), b)    # inputs untouched
    return got_loss, got_grad


# ===================================================== test inputs

ELEMENTWISE = {"binary_cross_entropy_with_logits", "sigmoid_focal_loss", "kl_div"}


def loss_shape(name, x_shape, axis, reduction):
    """Scalar reductions give 0-d; "none" gives one loss per sample (the
    logits' shape without the class axis), or per element."""
    if reduction != "none":
        return ()
    if name in ELEMENTWISE:
        return tuple(x_shape)
    return tuple(s for i, s in enumerate(x_shape) if i != axis % len(x_shape))


def make_inputs(kind, opts, dtype, shape=(6, 5), axis=-1, seed=0, scale=2.0):
    """Deterministic logits, target and options. Option values "@classes"
    and "@full" become positive weights of shape (C,) and of the logits'
    shape; "ignore_index" marks every third target as ignored."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal(shape)).astype(dtype)
    c = shape[axis]
    batch = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    target = None
    if kind == "index":
        target = np.asarray(rng.integers(0, c, size=batch))
        if opts.get("ignore_index") is not None:
            target.reshape(-1)[::3] = opts["ignore_index"]
    elif kind in ("prob", "logprob"):
        t = rng.random(shape) + (kind == "logprob")
        if kind == "prob":
            t.reshape(-1)[::7] = 0.0                    # zero probabilities occur
        t = t / t.sum(axis=axis, keepdims=True)
        target = (np.log(t) if kind == "logprob" else t).astype(dtype)
    elif kind == "binary":
        t = rng.random(shape)
        t.reshape(-1)[::4] = 1.0
        t.reshape(-1)[1::4] = 0.0
        target = t.astype(dtype)
    resolved = {}
    for k, v in opts.items():
        if v == "@classes":
            v = rng.uniform(0.2, 2.0, shape[-1] if kind == "binary" else c).astype(dtype)
        elif v == "@full":
            v = rng.uniform(0.2, 2.0, shape).astype(dtype)
        resolved[k] = v
    return x, target, resolved


W, WF = "@classes", "@full"
CASES = [
    ("cross_entropy", "index", {}),
    ("cross_entropy", "index", {"weight": W}),
    ("cross_entropy", "index", {"ignore_index": -100}),
    ("cross_entropy", "index", {"ignore_index": 2}),               # an in-range class
    ("cross_entropy", "index", {"label_smoothing": 0.2}),
    ("cross_entropy", "index", {"label_smoothing": 1.0}),
    ("cross_entropy", "index", {"weight": W, "ignore_index": -100, "label_smoothing": 0.35}),
    ("cross_entropy", "prob", {}),
    ("cross_entropy", "prob", {"weight": W}),
    ("cross_entropy", "prob", {"weight": W, "label_smoothing": 0.15}),
    ("nll_loss", "index", {}),
    ("nll_loss", "index", {"weight": W, "ignore_index": -100}),
    ("z_loss", "index", {"a": 1.0, "b": 0.0}),
    ("z_loss", "index", {"a": 0.5, "b": 2.0, "weight": W}),
    ("z_loss", "index", {"a": 3.0, "b": -1.0, "ignore_index": -100}),
    ("focal_loss", "index", {}),
    ("focal_loss", "index", {"gamma": 0.0}),
    ("focal_loss", "index", {"gamma": 0.5, "alpha": W}),
    ("focal_loss", "index", {"gamma": 1.5, "alpha": W, "ignore_index": -100}),
    ("comp_sum_loss", "index", {"tau": 0.0}),
    ("comp_sum_loss", "index", {"tau": 0.5, "weight": W}),
    ("comp_sum_loss", "index", {"tau": 1.0}),
    ("comp_sum_loss", "index", {"tau": 1.7, "ignore_index": -100}),
    ("comp_sum_loss", "index", {"tau": 2.0}),
    ("comp_sum_loss", "index", {"tau": 3.0, "weight": W}),
    ("generalized_cross_entropy", "index", {}),
    ("generalized_cross_entropy", "index", {"q": 0.3, "weight": W, "ignore_index": -100}),
    ("generalized_cross_entropy", "index", {"q": 1.0}),
    ("mae_loss", "index", {}),
    ("mae_loss", "index", {"weight": W, "ignore_index": -100}),
    ("multi_margin_loss", "index", {}),
    ("multi_margin_loss", "index", {"p": 2, "margin": 0.5, "weight": W}),
    ("multi_margin_loss", "index", {"p": 1, "margin": 2.0, "weight": W}),
    ("multi_margin_loss", "index", {"form": "crammer_singer"}),
    ("multi_margin_loss", "index", {"form": "crammer_singer", "p": 2, "margin": 0.7, "weight": W}),
    ("logsumexp_penalty", "none", {}),
    ("logsumexp_penalty", "none", {"weight": 1e-4}),
    ("binary_cross_entropy_with_logits", "binary", {}),
    ("binary_cross_entropy_with_logits", "binary", {"weight": WF}),
    ("binary_cross_entropy_with_logits", "binary", {"weight": W}),   # broadcasts
    ("binary_cross_entropy_with_logits", "binary", {"pos_weight": W}),
    ("binary_cross_entropy_with_logits", "binary", {"weight": WF, "pos_weight": W}),
    ("sigmoid_focal_loss", "binary", {}),
    ("sigmoid_focal_loss", "binary", {"alpha": -1.0}),
    ("sigmoid_focal_loss", "binary", {"alpha": 0.6, "gamma": 0.0}),
    ("sigmoid_focal_loss", "binary", {"alpha": 0.5, "gamma": 1.5}),
    ("kl_div", "prob", {}),
    ("kl_div", "logprob", {"log_target": True}),
    ("kl_div", "prob", {"from_logits": True}),
    ("kl_div", "logprob", {"log_target": True, "from_logits": True}),
]


def _case_id(case):
    name, kind, opts = case
    return "-".join([name, kind] + [f"{k}={v}" for k, v in opts.items()])


REDUCED_CASES = [
    pytest.param(case, reduction, id=f"{_case_id(case)}-{reduction}")
    for case in CASES
    for reduction in ["none", "mean", "sum"] + (["batchmean"] if case[0] == "kl_div" else [])
]


def check_case(backend, case, reduction, dtype, shape=(6, 5), axis=None, seed=0):
    """softarray vs the NumPy value reference and the torch autograd
    gradient, on one backend."""
    name, kind, opts = case
    x, target, opts = make_inputs(kind, opts, dtype, shape, -1 if axis is None else axis, seed)
    if axis is not None:
        opts["axis"] = axis
    opts["reduction"] = reduction
    got_loss, got_grad = run_loss(backend, name, x, target, dtype,
                                  loss_shape(name, shape, opts.get("axis", -1), reduction),
                                  **opts)
    assert_close(got_loss, np_ref(name, x, target, **opts), dtype)
    plain = call(backend, name, x, target, return_grad=False, **opts)   # the loss alone
    assert_close(to_numpy_checked(backend, plain, backend.asarray(x), dtype, got_loss.shape),
                 np_ref(name, x, target, **opts), dtype)
    if torch is None:
        pytest.skip("torch is needed for the gradient reference")
    want_loss, want_grad = torch_ref(name, x, target, **opts)
    assert_close(got_loss, want_loss, dtype)
    assert_close(got_grad, want_grad, dtype)


# ===================================================== values and gradients

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case, reduction", REDUCED_CASES)
def test_loss_and_gradient_match_references(backend, case, reduction, dtype):
    check_case(backend, case, reduction, dtype)


AXIS_CASES = [
    ("cross_entropy", "index", {"weight": W, "ignore_index": -100, "label_smoothing": 0.35}),
    ("cross_entropy", "index", {"weight": W}),
    ("cross_entropy", "prob", {"weight": W, "label_smoothing": 0.15}),
    ("nll_loss", "index", {"weight": W, "ignore_index": -100}),
    ("z_loss", "index", {"a": 0.5, "b": 2.0, "weight": W}),
    ("focal_loss", "index", {"gamma": 1.5, "alpha": W, "ignore_index": -100}),
    ("comp_sum_loss", "index", {"tau": 0.5, "weight": W}),
    ("generalized_cross_entropy", "index", {}),
    ("mae_loss", "index", {}),
    ("multi_margin_loss", "index", {"p": 2, "margin": 0.5, "weight": W}),
    ("multi_margin_loss", "index", {"form": "crammer_singer"}),
    ("logsumexp_penalty", "none", {}),
    ("kl_div", "prob", {"from_logits": True}),
    ("kl_div", "logprob", {"log_target": True}),
]


@pytest.mark.parametrize("shape, axis", [((4, 5, 3), 1), ((5, 6), 0), ((7,), -1),
                                         ((2, 3, 4, 5), -2), ((3, 4, 6), -1)])
@pytest.mark.parametrize("case", AXIS_CASES, ids=_case_id)
def test_class_axis_anywhere(backend, case, shape, axis):
    for reduction in ["none", "mean"]:
        check_case(backend, case, reduction, np.float64, shape=shape, axis=axis, seed=1)


@pytest.mark.parametrize("target_kind, opts", [
    ("index", {}),
    ("index", {"weight": W, "ignore_index": -100, "label_smoothing": 0.1}),
    ("prob", {"weight": W, "label_smoothing": 0.25}),
])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_segmentation_layout_class_dim_1_like_torch(backend, target_kind, opts, reduction):
    """(N, C, H, W) logits with axis=1: exactly torch's convention, so the
    torch call needs no transposition."""
    torch = pytest.importorskip("torch")
    x, target, opts = make_inputs(target_kind, opts, np.float64, (2, 5, 3, 4), axis=1, seed=2)
    got_loss, got_grad = run_loss(backend, "cross_entropy", x, target, np.float64,
                                  (2, 3, 4) if reduction == "none" else (), axis=1,
                                  reduction=reduction, **opts)
    xt = torch.tensor(x, requires_grad=True)
    want = F.cross_entropy(xt, torch.tensor(target), reduction=reduction,
                           weight=_tt(opts.get("weight")),
                           ignore_index=opts.get("ignore_index", -100),
                           label_smoothing=opts.get("label_smoothing", 0.0))
    want.sum().backward()
    assert_close(got_loss, want.detach().numpy(), np.float64)
    assert_close(got_grad, xt.grad.numpy(), np.float64)


@pytest.mark.parametrize("target_dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64])
def test_any_integer_target_dtype(backend, target_dtype):
    x, target, _ = make_inputs("index", {}, np.float64)
    loss, grad = call(backend, "cross_entropy", x, target.astype(target_dtype))
    want, want_grad = np_cross_entropy(x, target)
    assert_close(backend.to_numpy(loss), want, np.float64)
    assert_close(backend.to_numpy(grad), want_grad, np.float64)


# ===================================================== finite differences

FD_CASES = [
    ("z_loss", "index", {"a": 1.5, "b": 0.5, "weight": W}),
    ("focal_loss", "index", {"gamma": 2.0, "alpha": W}),
    ("focal_loss", "index", {"gamma": 0.5}),
    ("comp_sum_loss", "index", {"tau": 0.0}),
    ("comp_sum_loss", "index", {"tau": 2.5, "weight": W}),
    ("generalized_cross_entropy", "index", {"q": 0.6}),
    ("mae_loss", "index", {"weight": W}),
    ("multi_margin_loss", "index", {"form": "crammer_singer", "p": 2, "weight": W}),
    ("multi_margin_loss", "index", {"form": "crammer_singer", "p": 1}),
    ("logsumexp_penalty", "none", {"weight": 0.3}),
    ("sigmoid_focal_loss", "binary", {"alpha": 0.25, "gamma": 2.0}),
    ("kl_div", "prob", {"from_logits": True}),
    ("kl_div", "logprob", {"from_logits": True, "log_target": True}),
    ("cross_entropy", "index", {"weight": W, "label_smoothing": 0.3}),
]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("case", FD_CASES, ids=_case_id)
def test_gradient_matches_central_differences(case, reduction):
    """The compiled float64 gradient against central differences of the
    NumPy reference value: error ~ h^2 |f'''| + eps |f| / h, about 1e-9
    of the largest entry."""
    name, kind, opts = case
    x, target, opts = make_inputs(kind, opts, np.float64, (3, 4), seed=3)
    opts["reduction"] = reduction
    _, grad = getattr(sa, name)(*([x] if target is None else [x, target]), **opts,
                                return_grad=True)
    h = 1e-6
    fd = np.empty_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        fd[i] = (np_ref(name, x + e, target, **opts) - np_ref(name, x - e, target, **opts)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(fd).max()))


# ===================================================== special cases

@pytest.mark.parametrize("name", SOFTMAX_INDEX_LOSSES + ["nll_loss"])
def test_all_targets_ignored(backend, name):
    """Nothing left: "mean" is 0/0 = NaN (as torch), "sum" is 0, "none" is 0
    everywhere, and every gradient is exactly 0."""
    x = np.random.default_rng(4).standard_normal((4, 3))
    target = np.full(4, -100)
    extra = dict(REQUIRED.get(name, {}), ignore_index=-100)
    if name == "cross_entropy":
        extra["label_smoothing"] = 0.2
    for reduction, want in [("mean", np.nan), ("sum", 0.0), ("none", np.zeros(4))]:
        loss, grad = call(backend, name, x, target, reduction=reduction, **extra)
        np.testing.assert_array_equal(backend.to_numpy(loss), want)
        np.testing.assert_array_equal(backend.to_numpy(grad), np.zeros_like(x))


@pytest.mark.parametrize("name, opts", [
    ("cross_entropy", {"weight": np.array([0.5, 2.0, 1.0, 3.0])}),
    ("focal_loss", {"gamma": 2.0}),
    ("comp_sum_loss", {"tau": 0.5}),
    ("generalized_cross_entropy", {"q": 0.7}),
    ("mae_loss", {}),
    ("nll_loss", {}),
])
def test_minus_inf_logit_at_another_class(backend, name, opts):
    """exp(-inf) = 0: the loss is that of the row without the class, and the
    class gets exactly 0 gradient. (nll_loss reads only the target entry.)"""
    x = np.random.default_rng(5).standard_normal((3, 4))
    x[:, 2] = -np.inf
    target = np.array([0, 3, 1])
    loss, grad = call(backend, name, x, target, reduction="sum", **opts)
    kept = [0, 1, 3]
    sub_opts = {k: (v[kept] if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    sub_target = np.array([0, 2, 1])
    want = np_ref(name, x[:, kept], sub_target, reduction="sum", **sub_opts)
    assert_close(backend.to_numpy(loss), want, np.float64)
    g = backend.to_numpy(grad)
    np.testing.assert_array_equal(g[:, 2], 0.0)
    assert np.all(np.isfinite(g))
    if torch is not None:
        _, want_grad = torch_ref(name, x[:, kept], sub_target, reduction="sum", **sub_opts)
        assert_close(g[:, kept], want_grad, np.float64)


def test_minus_inf_logit_with_label_smoothing_gives_inf(backend):
    """Smoothing puts eps/C on every class: eps/C * (lse - (-inf)) = +inf (torch too)."""
    x = np.array([[1.0, -np.inf, 0.5]])
    loss = call(backend, "cross_entropy", x, np.array([0]), return_grad=False,
                   label_smoothing=0.1)
    assert backend.to_numpy(loss) == np.inf


def _zero(z):
    return 0 * z


@pytest.mark.parametrize("name, opts, want_loss, want_grad", [
    pytest.param(*p, id=f"{p[0]}-{p[1]}") for p in [
        # one class: p = 1 and lse = z, so log p_y = 0
        ("cross_entropy", {}, _zero, _zero),
        ("cross_entropy", {"label_smoothing": 0.4}, _zero, _zero),
        ("focal_loss", {"gamma": 2.0}, _zero, _zero),
        ("focal_loss", {"gamma": 0.5}, _zero, _zero),        # (1-q)^(gamma-1) term is 0
        ("comp_sum_loss", {"tau": 0.3}, _zero, _zero),
        ("generalized_cross_entropy", {}, _zero, _zero),
        ("mae_loss", {}, _zero, _zero),
        ("nll_loss", {}, lambda z: -z, lambda z: -np.ones_like(z)),
        # sigma = 0: zeta := 0, l = softplus(a b) / a, no gradient (documented)
        ("z_loss", {"a": 2.0, "b": 0.75}, lambda z: 0 * z + math.log1p(math.exp(1.5)) / 2,
         _zero),
        ("multi_margin_loss", {}, _zero, _zero),             # no other class, no hinge
        ("logsumexp_penalty", {"weight": 0.5}, lambda z: 0.5 * z ** 2, lambda z: z),
    ]])
def test_single_class(backend, name, opts, want_loss, want_grad):
    z = np.array([[-3.0], [0.0], [0.25], [40.0]])
    target = None if name == "logsumexp_penalty" else np.zeros(4, dtype=np.int64)
    loss, grad = call(backend, name, z, target, reduction="none", **opts)
    np.testing.assert_allclose(backend.to_numpy(loss), want_loss(z[:, 0]), rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(grad), want_grad(z), rtol=1e-15, atol=1e-15)


def test_z_loss_equal_logits(backend):
    """sigma == 0 in a row of C > 1 equal logits: zeta_y := 0, gradient 0
    (documented); other rows are unaffected."""
    x = np.array([[1.5, 1.5, 1.5], [0.0, 1.0, 3.0]])
    target = np.array([1, 2])
    loss, grad = call(backend, "z_loss", x, target, a=1.0, b=2.0, reduction="none")
    loss, grad = backend.to_numpy(loss), backend.to_numpy(grad)
    assert_close(loss[0], math.log1p(math.exp(2.0)), np.float64)
    np.testing.assert_array_equal(grad[0], 0.0)
    assert_close(loss[1], np_z_loss(x[1:], target[1:], 1.0, 2.0, reduction="none")[0],
                 np.float64)


def test_z_loss_two_classes(backend):
    """With C = 2 the z-scores are +1 (the larger logit) and -1 whatever the
    logits: l = softplus(a (b -+ 1)) / a and the gradient is 0, up to
    rounding relative to the terms that cancel (~ sigmoid / sigma)."""
    x = np.array([[0.3, -1.2], [5.0, 5.5], [0.1, 0.1 + 1e-6], [-40.0, 3.0]])
    target = np.array([0, 0, 1, 0])
    a, b = 1.5, 0.5
    loss, grad = call(backend, "z_loss", x, target, a=a, b=b, reduction="none")
    zeta = np.array([1.0, -1.0, 1.0, -1.0])
    assert_close(backend.to_numpy(loss), np.logaddexp(0, a * (b - zeta)) / a, np.float64)
    sigma = np.abs(x[:, 0] - x[:, 1]) / 2
    assert np.all(np.abs(backend.to_numpy(grad)) <= 1e-14 / sigma[:, None])


def test_crammer_singer_tie_goes_to_the_first_class(backend):
    """h = margin - z_y + z_c ties between classes 1 and 3: only class 1 (the
    first attaining the max) gets the hinge gradient."""
    x = np.array([[0.0, 0.5, -1.0, 0.5]])
    loss, grad = call(backend, "multi_margin_loss", x, np.array([0]),
                           form="crammer_singer", p=2, reduction="sum")
    assert backend.to_numpy(loss) == 1.5 ** 2
    np.testing.assert_array_equal(backend.to_numpy(grad), [[-3.0, 3.0, 0.0, 0.0]])


def test_zero_class_weights_drop_samples(backend):
    """A zero weight removes a class's samples from "sum" and from the
    mean's denominator, like ignore_index (but smoothing still counts them)."""
    x, target, _ = make_inputs("index", {}, np.float64, (8, 4), seed=6)
    target[:3] = 1
    weight = np.array([1.0, 0.0, 2.0, 0.5])
    for reduction in ["sum", "mean"]:
        loss, grad = call(backend, "cross_entropy", x, target, weight=weight,
                               reduction=reduction)
        want, want_grad = np_cross_entropy(x, target, weight=weight, reduction=reduction)
        assert_close(backend.to_numpy(loss), want, np.float64)
        assert_close(backend.to_numpy(grad), want_grad, np.float64)
        np.testing.assert_array_equal(backend.to_numpy(grad)[:3], 0.0)


@pytest.mark.parametrize("shape", [(0, 5), (0, 3, 4)])
def test_empty_batch(backend, shape):
    """No samples: "mean" is 0/0 = NaN (torch gives nan), "sum" 0, "none" empty."""
    x = np.zeros(shape)
    target = np.zeros(shape[:1] + shape[2:], dtype=np.int64)
    for reduction, want in [("mean", np.nan), ("sum", 0.0)]:
        loss, grad = call(backend, "cross_entropy", x, target, axis=1, reduction=reduction)
        np.testing.assert_array_equal(backend.to_numpy(loss), want)
        assert backend.to_numpy(grad).shape == shape
    loss, _ = call(backend, "cross_entropy", x, target, axis=1, reduction="none")
    assert backend.to_numpy(loss).shape == target.shape


# ===================================================== long rows, threads

@pytest.mark.parametrize("form", ["index", "weighted-smoothed", "probabilities"])
def test_hundred_thousand_classes_float32(backend, form):
    """Rows of 100000 float32 logits against the float64 reference. The
    normalizer sums 1e5 terms: its float32 rounding grows like sqrt(C) ulps
    (~2e-5 relative), which bounds the gradient's relative error."""
    rng = np.random.default_rng(7)
    n, c = 3, 100_000
    x = (3 * rng.standard_normal((n, c))).astype(np.float32)
    kw = {}
    if form == "probabilities":
        t = rng.random((n, c))
        target = (t / t.sum(-1, keepdims=True)).astype(np.float32)
    else:
        target = np.array([0, c // 2, c - 1])
        if form == "weighted-smoothed":
            kw = {"weight": rng.uniform(0.5, 1.5, c).astype(np.float32), "label_smoothing": 0.1}
    got_loss, got_grad = run_loss(backend, "cross_entropy", x, target, np.float32, (), **kw)
    want_loss, want_grad = np_cross_entropy(x, target, **kw)
    assert_close(got_loss, want_loss, np.float32)
    assert_close(got_grad, want_grad, np.float32, rtol=3e-5)


@pytest.mark.parametrize("shape", [(20_000, 37), (3, 200_000), (512, 3000)])
def test_thread_counts_agree(shape):
    """Same inputs with 1 and 2 threads: each gradient entry within a few
    ulps, the loss (a sum over samples, possibly split across threads) within
    ~16 ulps, both within float32 tolerance of the float64 reference."""
    rng = np.random.default_rng(8)
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    target = rng.integers(0, shape[1], shape[0])
    weight = rng.uniform(0.5, 2.0, shape[1]).astype(np.float32)
    kw = dict(weight=weight, label_smoothing=0.05, return_grad=True)
    with sa.threads(1):
        loss1, grad1 = sa.cross_entropy(x, target, **kw)
    with sa.threads(2):
        loss2, grad2 = sa.cross_entropy(x, target, **kw)
    np.testing.assert_array_max_ulp(grad1, grad2, maxulp=4)
    np.testing.assert_allclose(loss1, loss2, rtol=16 * np.finfo(np.float32).eps)
    want_loss, want_grad = np_cross_entropy(x, target, weight=weight, label_smoothing=0.05)
    assert_close(loss2, want_loss, np.float32)
    assert_close(grad2, want_grad, np.float32, rtol=3e-5)


@pytest.mark.parametrize("dtype, shape", [(np.float32, (819, 10)), (np.float32, (820, 10)),
                                          (np.float32, (8, 1024)), (np.float64, (409, 10)),
                                          (np.float64, (410, 10)), (np.float64, (8, 1000))])
def test_thread_counts_agree_at_the_byte_threshold(dtype, shape):
    """Calls on either side of PARALLEL_MIN_BYTES (32 KiB of logits: 8192
    float32 or 4096 float64 entries), the first of each dtype on one thread
    whatever the count, the others on two: each sample's loss and gradient
    are computed alone, so the two counts give the same bits, and both
    match the plain float64 reference."""
    rng = np.random.default_rng(shape[0])
    x = (4 * rng.standard_normal(shape)).astype(dtype)
    target = rng.integers(0, shape[1], shape[0])
    with sa.threads(1):
        loss1, grad1 = sa.cross_entropy(x, target, reduction="none", return_grad=True)
    with sa.threads(2):
        loss2, grad2 = sa.cross_entropy(x, target, reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss1, loss2)
    np.testing.assert_array_equal(grad1, grad2)
    want_loss, want_grad = np_cross_entropy(x, target, reduction="none")
    assert_close(loss2, want_loss, dtype)
    assert_close(grad2, want_grad, dtype)


SPLIT_CASES = [
    ("cross_entropy", "index", {}),
    ("cross_entropy", "index", {"weight": W, "label_smoothing": 0.1, "ignore_index": 7}),
    ("focal_loss", "index", {"gamma": 2.0, "alpha": W}),
    ("comp_sum_loss", "index", {"tau": 0.5}),
    ("logsumexp_penalty", "none", {"weight": 0.3}),
]


def _split_layouts(x):
    """x (samples, classes) in the layouts that reach the split by other
    strides: (array, axis, back) with back(grad) giving x's layout again."""
    return {
        "contiguous": (x, -1, lambda g: g),
        "class stride 2": (np.repeat(x, 2, axis=1)[:, ::2], -1, lambda g: g),
        "classes on axis 0, F-ordered": (np.asfortranarray(x.T), 0, lambda g: g.T),
        "classes on axis 0, C-ordered": (np.ascontiguousarray(x.T), 0, lambda g: g.T),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_samples, n_threads", [(1, 2), (3, 4)])
@pytest.mark.parametrize("case", SPLIT_CASES, ids=_case_id)
def test_long_samples_split_across_threads(case, n_samples, n_threads, dtype):
    """Fewer samples than threads, each of at least 16384 classes: each
    sample's classes are cut across the threads and the segments'
    statistics merged. Loss and gradient match one thread's (every sample
    whole) to rounding, and the plain float64 reference for
    cross-entropy; an ignored sample keeps a zero loss and gradient; every
    layout gives the contiguous array's bits."""
    name, _, opts = case
    rng = np.random.default_rng(n_samples)
    c = 70_001
    x = (4 * rng.standard_normal((n_samples, c))).astype(dtype)
    x[0, 5] = 40.0                          # a maximum in the first segment
    x[-1, c - 3] = 45.0                     # and one in the last
    target = rng.integers(0, c, n_samples)
    target[-1] = c - 3
    if "ignore_index" in opts:
        target[0] = 7
    kw = {k: (rng.uniform(0.5, 2.0, c).astype(dtype) if v == W else v) for k, v in opts.items()}
    args = () if name == "logsumexp_penalty" else (target,)

    def run(logits, axis, threads):
        with sa.threads(threads):
            return getattr(sa, name)(logits, *args, axis=axis, reduction="none", return_grad=True, **kw)

    one_loss, one_grad = run(x, -1, 1)
    loss, grad = run(x, -1, n_threads)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(loss, one_loss, rtol=8 * eps)
    np.testing.assert_allclose(grad, one_grad, rtol=4 * eps, atol=4 * eps * np.abs(one_grad).max())
    if "ignore_index" in opts:
        assert loss[0] == 0 and not grad[0].any()
    if name == "cross_entropy":
        want_loss, want_grad = np_cross_entropy(x.astype(np.float64), target, reduction="none", **kw)
        assert_close(loss, want_loss, dtype)
        assert_close(grad, want_grad, dtype)
    for layout, (logits, axis, back) in _split_layouts(x).items():
        other_loss, other_grad = run(logits, axis, n_threads)
        np.testing.assert_array_equal(other_loss, loss, err_msg=layout)
        np.testing.assert_array_equal(back(other_grad), grad, err_msg=layout)


# ===================================================== memory layouts

def _layouts():
    return memory_layouts(3 * np.random.default_rng(9).standard_normal((30, 17)))


LAYOUT_CASES = [
    ("cross_entropy", "index", {"weight": W, "ignore_index": -100, "label_smoothing": 0.2}),
    ("cross_entropy", "prob", {}),
    ("z_loss", "index", {"a": 1.0, "b": 1.0}),
    ("focal_loss", "index", {"alpha": W}),
    ("multi_margin_loss", "index", {"p": 2}),
    ("logsumexp_penalty", "none", {}),
    ("binary_cross_entropy_with_logits", "binary", {"pos_weight": W}),
    ("kl_div", "prob", {"from_logits": True}),
]


@pytest.mark.parametrize("case, axis", [
    pytest.param(case, axis, id=f"{_case_id(case)}-axis={axis}")
    for case in LAYOUT_CASES for axis in ([-1] if case[1] == "binary" else [-1, 0])])
@pytest.mark.parametrize("layout", list(_layouts()))
def test_any_memory_layout(case, layout, axis):
    """Non-contiguous, F-ordered, negative-stride and read-only logits (and
    targets laid out the same way), classes along either axis."""
    name, kind, opts = case
    x = _layouts()[layout]
    dtype = x.dtype
    _, target, opts = make_inputs(kind, opts, dtype, x.shape, axis, seed=10)
    if kind != "binary":
        opts["axis"] = axis
    if target is not None and target.ndim == 2:
        target = np.asfortranarray(target) if "F" in layout else target[::-1].copy()[::-1]
    if target is not None and layout == "read-only":
        target.setflags(write=False)
    before = (x.copy(), None if target is None else target.copy())
    loss, grad = getattr(sa, name)(*([x] if target is None else [x, target]), **opts,
                                   reduction="sum", return_grad=True)
    np.testing.assert_array_equal(x, before[0])
    if target is not None:
        np.testing.assert_array_equal(target, before[1])
    assert loss.dtype == dtype and grad.dtype == dtype and grad.shape == x.shape
    assert_close(loss, np_ref(name, x, target, reduction="sum", **opts), dtype)
    if torch is not None:
        assert_close(grad, torch_ref(name, x, target, reduction="sum", **opts)[1], dtype)


def test_non_contiguous_torch_tensors():
    torch = pytest.importorskip("torch")
    x, target, _ = make_inputs("index", {}, np.float32, (9, 6), seed=11)
    xt = torch.from_numpy(np.ascontiguousarray(x.T)).T           # a transposed view
    assert not xt.is_contiguous()
    loss, grad = sa.cross_entropy(xt, torch.from_numpy(target), return_grad=True)
    assert isinstance(loss, torch.Tensor) and isinstance(grad, torch.Tensor)
    want = F.cross_entropy(xt.double(), torch.from_numpy(target))
    assert_close(loss.numpy(), want.numpy(), np.float32)
    assert_close(grad.numpy(), np_cross_entropy(x, target)[1], np.float32)


# ===================================================== bad input

def _names(arg):
    """A regex for an error message naming argument `arg`. One-letter
    names must appear as a word followed by =, 'must', 'is', ':' ... so that
    the article 'a' does not count."""
    if len(arg) > 1:
        return rf"\b{arg}\b"
    return rf"(?<![\w.]){arg}\s*(=|must|should|is|has|in|:|<|>|\))|['\"`]{arg}['\"`]"


X = np.zeros((4, 3))
Y = np.array([0, 1, 2, 1])
PROB = np.full((4, 3), 1 / 3)


def _with(a, index, value):
    a = np.array(a, dtype=float if isinstance(value, float) else a.dtype)
    a[index] = value
    return a


def _bad_label_cases():
    out = []
    for name in INDEX_LOSSES:
        req = REQUIRED.get(name, {})
        out += [
            (name, (X, np.array([0, 1, 3, 1])), req, ValueError, "target"),     # label == C
            (name, (X, np.array([0, -1, 2, 1])), req, ValueError, "target"),    # negative
        ]
        if name != "multi_margin_loss":
            out.append((name, (X, np.array([0, -5, 2, 1])), dict(req, ignore_index=-100),
                        ValueError, "target"))
        out.append((name, (X, np.array([0, 1, 2])), req, ValueError, "target"))   # shape
    return out


BAD_INPUTS = _bad_label_cases() + [
    ("cross_entropy", (X, Y.reshape(2, 2)), {}, ValueError, "target"),
    ("cross_entropy", (X, np.full((4, 4), 0.25)), {}, ValueError, "target"),
    ("cross_entropy", (X, Y), {"weight": np.array([1.0, -1.0, 1.0])}, ValueError, "weight"),
    ("cross_entropy", (X, Y), {"weight": np.array([1.0, 1.0])}, ValueError, "weight"),
    ("cross_entropy", (X, Y), {"weight": np.ones(4)}, ValueError, "weight"),
    ("nll_loss", (X, Y), {"weight": np.array([1.0, -0.5, 1.0])}, ValueError, "weight"),
    ("multi_margin_loss", (X, Y), {"weight": np.ones(2)}, ValueError, "weight"),
    ("focal_loss", (X, Y), {"alpha": np.ones(5)}, ValueError, "alpha"),
    ("cross_entropy", (X, _with(PROB, (1, 2), np.nan)), {}, ValueError, "target"),
    ("cross_entropy", (X, _with(PROB, (0, 0), np.inf)), {}, ValueError, "target"),
    ("cross_entropy", (X, _with(PROB, (2, 1), -0.25)), {}, ValueError, "target"),
    ("cross_entropy", (X, PROB), {"ignore_index": -100}, ValueError, "ignore_index"),
    ("cross_entropy", (X + 1j, Y), {}, TypeError, "logits"),
    ("focal_loss", (X + 1j, Y), {}, TypeError, "logits"),
    ("cross_entropy", (X, Y), {"reduction": "avg"}, ValueError, "reduction"),
    ("cross_entropy", (X, Y), {"reduction": None}, (ValueError, TypeError), "reduction"),
    ("binary_cross_entropy_with_logits", (X, PROB), {"reduction": "mena"}, ValueError, "reduction"),
    ("kl_div", (X, PROB), {"reduction": "average"}, ValueError, "reduction"),
    ("multi_margin_loss", (X, Y), {"reduction": "max"}, ValueError, "reduction"),
    ("cross_entropy", (X, Y), {"label_smoothing": -0.1}, ValueError, "label_smoothing"),
    ("cross_entropy", (X, Y), {"label_smoothing": 1.5}, ValueError, "label_smoothing"),
    ("cross_entropy", (X, Y), {"label_smoothing": float("nan")}, ValueError, "label_smoothing"),
    ("focal_loss", (X, Y), {"gamma": -0.5}, ValueError, "gamma"),
    ("sigmoid_focal_loss", (X, PROB), {"gamma": -1.0}, ValueError, "gamma"),
    ("generalized_cross_entropy", (X, Y), {"q": 0.0}, ValueError, _names("q")),
    ("generalized_cross_entropy", (X, Y), {"q": 1.5}, ValueError, _names("q")),
    ("generalized_cross_entropy", (X, Y), {"q": -0.2}, ValueError, _names("q")),
    ("multi_margin_loss", (X, Y), {"p": 3}, ValueError, _names("p")),
    ("multi_margin_loss", (X, Y), {"p": 0}, ValueError, _names("p")),
    ("multi_margin_loss", (X, Y), {"form": "hinge"}, ValueError, "form"),
    ("z_loss", (X, Y), {"a": 0.0, "b": 1.0}, ValueError, _names("a")),
    ("z_loss", (X, Y), {"a": -1.0, "b": 1.0}, ValueError, _names("a")),
    ("comp_sum_loss", (X, Y), {"tau": -0.5}, ValueError, "tau"),
    ("binary_cross_entropy_with_logits", (X, PROB), {"pos_weight": np.ones(2)}, ValueError,
     "pos_weight"),
    ("binary_cross_entropy_with_logits", (X, np.zeros((4, 2))), {}, ValueError, "target"),
    ("kl_div", (X, np.zeros((3, 3))), {}, ValueError, "target"),
]


@pytest.mark.parametrize(
    "name, args, opts, error, match", BAD_INPUTS,
    ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_raises_naming_the_argument(name, args, opts, error, match):
    before = [np.array(a) for a in args]
    with pytest.raises(error, match=match):
        getattr(sa, name)(*args, **opts)
    for a, b in zip(args, before):
        np.testing.assert_array_equal(a, b)


# ===================================================== properties

@st.composite
def ce_problems(draw):
    n = draw(st.integers(0, 50))
    c = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    x = scale * rng.standard_normal((n, c))
    opts = {"reduction": draw(st.sampled_from(["none", "mean", "sum"])),
            "label_smoothing": draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0))}
    if draw(st.booleans()):
        w = rng.uniform(0.0, 2.0, c)
        w[rng.random(c) < 0.2] = 0.0                          # masked classes
        opts["weight"] = w
    if draw(st.booleans()):
        t = rng.random((n, c)) * (rng.random((n, c)) < 0.7)
        target = t / np.maximum(t.sum(-1, keepdims=True), 1e-300)   # rows may be all zero
    else:
        target = rng.integers(0, c, n)
        ignore = draw(st.sampled_from([None, -100, "class"]))
        if ignore is not None:
            opts["ignore_index"] = int(rng.integers(0, c)) if ignore == "class" else ignore
            target[rng.random(n) < draw(st.sampled_from([0.0, 0.3, 1.0]))] = opts["ignore_index"]
    return x, target, opts


def want_denominator(target, opts):
    valid = target != opts.get("ignore_index")
    w = opts.get("weight")
    d = valid.sum() if w is None else np.asarray(w, np.float64)[np.where(valid, target, 0)][valid].sum()
    return d if d > 0 else np.inf


@settings(max_examples=150, deadline=None)
@given(problem=ce_problems(), dtype=st.sampled_from(DTYPES))
def test_cross_entropy_property(problem, dtype):
    """Compiled NumPy path vs the float64 NumPy reference over random shapes
    and options. A mean whose denominator is 0 while some samples remain
    (their weights are all 0) has no defined gradient: only its NaN loss is
    checked."""
    x, target, opts = problem
    x = x.astype(dtype)
    if target.dtype.kind == "f":
        target = target.astype(dtype)
    if "weight" in opts:
        opts["weight"] = opts["weight"].astype(dtype)
    loss, grad = sa.cross_entropy(x, target, return_grad=True, **opts)
    want_loss, want_grad = np_cross_entropy(x, target, **opts)
    assert loss.dtype == dtype and grad.dtype == dtype
    assert np.shape(loss) == np.shape(want_loss) and grad.shape == x.shape
    assert_close(loss, want_loss, dtype)
    undefined = (opts["reduction"] == "mean" and target.dtype.kind != "f"
                 and np.isnan(want_loss) and np.any(target != opts.get("ignore_index")))
    if not undefined:
        # grad_c = s (p_c sum_k a_k - a_c) cancels (to exactly 0 when C == 1):
        # its rounding is relative to s sum_k a_k <= s max(w)
        s = 1.0
        if opts["reduction"] == "mean":
            s = 1.0 / max(len(target), 1) if target.dtype.kind == "f" else 1.0 / want_denominator(
                target, opts)
        assert_close(grad, want_grad, dtype, floor=s * np.max(opts.get("weight", 1.0), initial=1e-3))


@st.composite
def loss_problems(draw):
    name = draw(st.sampled_from(["nll_loss", "z_loss", "focal_loss", "comp_sum_loss",
                                 "generalized_cross_entropy", "mae_loss", "multi_margin_loss",
                                 "logsumexp_penalty", "kl_div", "binary_cross_entropy_with_logits",
                                 "sigmoid_focal_loss"]))
    n = draw(st.integers(0, 30))
    c = draw(st.integers(3 if name == "z_loss" else 2, 25))     # C = 2: test_z_loss_two_classes
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    x = draw(st.sampled_from([0.3, 1.0, 3.0])) * rng.standard_normal((n, c))
    opts = {"reduction": draw(st.sampled_from(["none", "mean", "sum"]))}
    weight = rng.uniform(0.1, 2.0, c)
    target = rng.integers(0, c, n)
    if name in INDEX_LOSSES and name != "multi_margin_loss" and draw(st.booleans()):
        opts["ignore_index"] = -1
        target[rng.random(n) < 0.3] = -1
    if name in ("nll_loss", "z_loss", "comp_sum_loss", "generalized_cross_entropy", "mae_loss",
                "multi_margin_loss") and draw(st.booleans()):
        opts["weight"] = weight
    if name == "z_loss":
        opts.update(a=draw(st.floats(0.1, 5.0)), b=draw(st.floats(-3.0, 3.0)))
    elif name == "focal_loss":
        opts["gamma"] = draw(st.floats(0.0, 4.0))
        if draw(st.booleans()):
            opts["alpha"] = weight
    elif name == "comp_sum_loss":
        opts["tau"] = draw(st.sampled_from([0.0, 1.0, 2.0]) | st.floats(0.0, 3.0))
    elif name == "generalized_cross_entropy":
        opts["q"] = draw(st.floats(0.01, 1.0))
    elif name == "multi_margin_loss":
        opts.update(p=draw(st.sampled_from([1, 2])), margin=draw(st.floats(0.0, 2.0)),
                    form=draw(st.sampled_from(["weston_watkins", "crammer_singer"])))
    elif name == "logsumexp_penalty":
        opts["weight"] = draw(st.floats(1e-4, 2.0))
        target = None
    elif name == "kl_div":
        opts.update(log_target=draw(st.booleans()), from_logits=draw(st.booleans()))
        opts["reduction"] = draw(st.sampled_from(["none", "mean", "sum", "batchmean"]))
        assume(n > 0 or opts["reduction"] != "batchmean")
        t = rng.random((n, c)) + 0.05
        target = t / t.sum(-1, keepdims=True)
        target = np.log(target) if opts["log_target"] else target
    elif name in ("binary_cross_entropy_with_logits", "sigmoid_focal_loss"):
        target = rng.random((n, c))
        if name == "sigmoid_focal_loss":
            opts.update(alpha=draw(st.sampled_from([-1.0, 0.25, 0.8])),
                        gamma=draw(st.floats(0.0, 3.0)))
        elif draw(st.booleans()):
            opts["pos_weight"] = weight
    return name, x, target, opts


@settings(max_examples=150, deadline=None)
@given(problem=loss_problems())
def test_other_losses_property(problem):
    """Compiled float64 NumPy path: values vs the NumPy reference, gradients
    vs torch autograd. (z_loss with C = 2 has z-scores +-1 whatever the
    logits: its gradient is 0 and both sides are rounding noise, hence a floor.)"""
    torch = pytest.importorskip("torch")  # noqa: F841 (the references use it)
    name, x, target, opts = problem
    loss, grad = getattr(sa, name)(*([x] if target is None else [x, target]), **opts,
                                   return_grad=True)
    assert_close(loss, np_ref(name, x, target, **opts), np.float64)
    want_loss, want_grad = torch_ref(name, x, target, **opts)
    assert_close(loss, want_loss, np.float64)
    assert_close(grad, want_grad, np.float64, floor=1e-3)


def test_a_misspelt_kernel_option_is_an_error():
    """The kernels' options travel by name; a name the kernel does not read
    is refused instead of leaving that option silently at its default."""
    from softarray._lib import _losses as kernels
    x = np.zeros((2, 3, 1))
    y = np.zeros(2, np.int64)
    loss = np.empty(2)
    with pytest.raises(ValueError, match=r"unknown loss options \['smothing'\]"):
        kernels.samples(x, y, x, np.empty((0, 0, 0)), loss, np.empty(0),
                        {"kind": "cross_entropy", "smothing": 0.1}, 1)
    rows = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"unknown loss options \['gama'\]"):
        kernels.elementwise(rows, rows, np.empty((0, 0)), np.empty((0, 0)), np.empty((2, 3)),
                            np.empty((0, 0)), np.empty(2), {"kind": "sigmoid_focal", "gama": 2.0}, 1)


# ------------------------------------------------------------ half precision

def _half_arrays(dtype):
    """(half logits in NumPy or torch, their exact float64 values, targets)."""
    rng = np.random.default_rng(21)
    x = (rng.standard_normal((40, 9)) * 3).astype(np.float32)
    y = rng.integers(0, 9, 40)
    if dtype in ("float16", "bfloat16"):
        ml_dtypes = pytest.importorskip("ml_dtypes")
        half = x.astype(np.float16 if dtype == "float16" else ml_dtypes.bfloat16)
        return half, half.astype(np.float64), y
    torch = pytest.importorskip("torch")
    half = torch.from_numpy(x).to(getattr(torch, dtype.removeprefix("torch_")))
    return half, half.double().numpy(), torch.from_numpy(y)


def _reference_cross_entropy(x64, y, weight=None, smoothing=0.0):
    """Per-sample losses and the gradient of their weighted mean, written
    plainly in float64 (torch's definition)."""
    n, c = x64.shape
    w = np.ones(c) if weight is None else weight
    log_p = scipy.special.log_softmax(x64, axis=1)
    q = (1 - smoothing) * np.eye(c)[y] + smoothing / c
    losses = -(q * w * log_p).sum(axis=1)
    denominator = w[y].sum()
    grad = (scipy.special.softmax(x64, axis=1) * (q * w).sum(axis=1, keepdims=True) - q * w) / denominator
    return losses, losses.sum() / denominator, grad


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "torch_float16", "torch_bfloat16"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "weight": True}])
def test_half_logits_are_computed_in_float32_and_rounded_once(dtype, options):
    """Half logits (NumPy float16, ml_dtypes bfloat16, torch float16 and
    bfloat16) run the compiled kernels on a float32 copy; the loss and the
    gradient come back in the logits' library and dtype, as torch returns
    them, each within one step of that dtype of the exact result."""
    logits, x64, y = _half_arrays(dtype)
    weight = np.linspace(0.5, 1.5, 9) if options.get("weight") else None
    kwargs = {"label_smoothing": options.get("label_smoothing", 0.0)}
    if weight is not None:
        kwargs["weight"] = weight.astype(np.float32) if isinstance(logits, np.ndarray) else \
            __import__("torch").from_numpy(weight.astype(np.float32))
    per_sample = sa.cross_entropy(logits, y, reduction="none", **kwargs)
    mean, grad = sa.cross_entropy(logits, y, return_grad=True, **kwargs)
    want_losses, want_mean, want_grad = _reference_cross_entropy(
        x64, np.asarray(y), weight, kwargs["label_smoothing"])
    for got in (per_sample, mean, grad):
        assert type(got) is type(logits) and got.dtype == logits.dtype
    assert_within_one_step(per_sample, want_losses)
    assert_within_one_step(mean, np.asarray(want_mean))
    assert_within_one_step(grad, want_grad)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "torch_bfloat16"])
def test_other_losses_take_half_logits(dtype):
    logits, x64, y = _half_arrays(dtype)
    for name in ("nll_loss", "multi_margin_loss", "focal_loss"):
        got = getattr(sa, name)(logits, y)
        assert got.dtype == logits.dtype
        want = getattr(sa, name)(x64, np.asarray(y))    # the float64 kernels
        assert_within_one_step(got, np.asarray(want))


@pytest.mark.parametrize("C", [1, 2, 3, 4, 5, 8, 9, 17, 32])
def test_short_float64_rows_cross_entropy_against_scipy(C):
    """float64 samples of up to 32 classes run in a tile whose exponential
    step takes the samples across SIMD lanes: loss and gradient against
    scipy.special's logsumexp and softmax, with ignored samples, a row of
    equal logits and entries whose exponentials are subnormal or 0."""
    rng = np.random.default_rng(C)
    x = rng.standard_normal((37, C)) * 6
    x[1, :] = 3.0
    x[2, :] = -31.0 * np.arange(C)
    y = rng.integers(0, C, 37)
    y[3] = -100
    loss, grad = sa.cross_entropy(x, y, reduction="none", ignore_index=-100, return_grad=True)
    kept = y >= 0
    want = scipy.special.logsumexp(x, axis=1) - x[np.arange(37), np.where(kept, y, 0)]
    want_grad = scipy.special.softmax(x, axis=1)
    want_grad[np.arange(37), np.where(kept, y, 0)] -= 1.0
    np.testing.assert_allclose(loss[kept], want[kept], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(grad[kept], want_grad[kept], rtol=1e-13, atol=1e-15)
    assert loss[3] == 0 and np.all(grad[3] == 0)
