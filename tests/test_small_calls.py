"""The fast path of small calls (softarray._dispatch.plain_rows and the
functions that use it) gives the general path's results bit for bit and
its errors, and is taken only where its conditions hold.

The general path is reached on the same values by a tuple axis (``(-1,)``),
an int32 target or a non-contiguous array, which the fast path leaves alone;
both then run the same kernel on the same rows.
"""
import numpy as np
import pytest

import softarray as sa
from softarray import _dispatch
from softarray._lib import _softmax as kernels

SHAPES = [(10,), (8, 10), (3, 4, 5), (1, 1), (64, 1000)]
DTYPES = [np.float32, np.float64]


def _logits(shape, dtype, seed=0):
    x = (np.random.default_rng(seed).standard_normal(shape) * 4).astype(dtype)
    x.flat[0] = -np.inf         # special values go down the same kernel
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "stablemax", "log_stablemax"])
def test_normalizers_equal_the_general_path(name, shape, dtype):
    x = _logits(shape, dtype)
    f = getattr(sa, name)
    fast = f(x)
    general = f(x, axis=(x.ndim - 1,))
    assert fast.dtype == general.dtype == dtype and fast.shape == general.shape == shape
    np.testing.assert_array_equal(fast, general)
    assert not np.shares_memory(fast, x)


@pytest.mark.parametrize("temperature", [2.0, 0.3, 2, np.float32(0.3), np.float64(2.0), 1e-300, 1e300])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_temperatures_equal_the_general_path(name, temperature):
    """A Python float temperature goes with the array down the compiled
    fast path (plain_rows_at); any other number down the general path: both
    scale by the same 1 / T."""
    x = _logits((8, 10), np.float32)
    f = getattr(sa, name)
    fast = f(x, temperature=temperature)
    general = f(x, axis=(-1,), temperature=temperature)
    np.testing.assert_array_equal(fast, general)
    taken = kernels.plain_rows_at(x, -1, kernels.OPS[name], temperature, 1)
    assert (taken is not None) == (type(temperature) is float)
    if taken is not None:
        np.testing.assert_array_equal(taken, fast)
    if not 1e-3 < float(temperature) < 1e3:      # y = x / T leaves float32's range: bits only
        return
    y = x.astype(np.float64) / float(temperature)     # the reference, plainly in float64
    shifted = y - y.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_sum = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    want = np.exp(shifted - log_sum) if name == "softmax" else shifted - log_sum
    np.testing.assert_allclose(fast, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("temperature, error", [
    (0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
    (-0.0, ValueError), ("2", TypeError), (None, TypeError), (1j, TypeError),
])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_bad_temperatures_raise_on_the_fast_path(name, temperature, error):
    x = _logits((8, 10), np.float64)
    assert kernels.plain_rows_at(x, -1, kernels.OPS[name], temperature, 1) is None
    with pytest.raises(error, match="temperature"):
        getattr(sa, name)(x, temperature=temperature)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_logsumexp_equals_the_general_path(shape, dtype, keepdims):
    x = _logits(shape, dtype)
    fast, sign = sa.logsumexp(x, keepdims=keepdims, return_sign=True)
    general, general_sign = sa.logsumexp(x, axis=(x.ndim - 1,), keepdims=keepdims,
                                         return_sign=True)
    assert fast.shape == general.shape and fast.dtype == general.dtype == dtype
    np.testing.assert_array_equal(fast, general)
    np.testing.assert_array_equal(sign, general_sign)
    # and it is the log-sum-exp, written plainly in float64
    with np.errstate(divide="ignore"):      # a row of only -inf
        want = np.log(np.sum(np.exp(x.astype(np.float64)), axis=-1, keepdims=keepdims))
    np.testing.assert_allclose(fast, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_equals_the_general_path(shape, dtype, reduction):
    x = _logits(shape, dtype)
    x.flat[0] = 1.0
    target = np.random.default_rng(1).integers(0, shape[-1], shape[:-1])
    fast = sa.cross_entropy(x, target, reduction=reduction)
    general = sa.cross_entropy(x, target.astype(np.int32), reduction=reduction)
    assert fast.shape == general.shape and fast.dtype == general.dtype == dtype
    np.testing.assert_array_equal(fast, general)
    x64 = x.astype(np.float64)
    per = (np.log(np.sum(np.exp(x64), axis=-1))
           - np.take_along_axis(x64, target[..., None], axis=-1)[..., 0])
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(fast, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_gradient_equals_the_general_path(shape, dtype, reduction):
    """return_grad=True takes the fast path too: the loss and a new gradient
    array with the general path's bits, and softmax minus the one-hot target
    (over the rows for a mean) written plainly in float64."""
    x = _logits(shape, dtype)
    x.flat[0] = 1.0
    target = np.random.default_rng(1).integers(0, shape[-1], shape[:-1])
    fast, fast_grad = sa.cross_entropy(x, target, reduction=reduction, return_grad=True)
    general, general_grad = sa.cross_entropy(x, target.astype(np.int32), reduction=reduction,
                                             return_grad=True)
    np.testing.assert_array_equal(fast, general)
    assert fast_grad.dtype == general_grad.dtype == dtype and fast_grad.shape == shape
    np.testing.assert_array_equal(fast_grad, general_grad)
    assert not np.shares_memory(fast_grad, x)
    x64 = x.astype(np.float64)
    p = np.exp(x64 - x64.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.put_along_axis(p, target[..., None], np.take_along_axis(p, target[..., None], -1) - 1, -1)
    if reduction == "mean":
        p /= target.size
    np.testing.assert_allclose(fast_grad, p, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-7 if dtype == np.float32 else 1e-15)


def test_cross_entropy_out_of_range_target_raises_the_general_error():
    x = _logits((4, 3), np.float32)
    for bad in (np.array([0, 1, 3, 0]), np.array([0, -1, 2, 0])):
        with pytest.raises(ValueError, match=r"class indices outside \[0, 3\)"):
            sa.cross_entropy(x, bad)


@pytest.mark.parametrize("call, error", [
    (lambda x: sa.softmax(x, axis=True), TypeError),
    (lambda x: sa.softmax(x, axis=2), ValueError),
    (lambda x: sa.softmax(x, temperature=0.0), ValueError),
    (lambda x: sa.logsumexp(x, keepdims=1), TypeError),
    (lambda x: sa.cross_entropy(x, np.zeros(8, np.int64), reduction="avg"), ValueError),
    (lambda x: sa.cross_entropy(x, np.zeros(7, np.int64)), ValueError),
    (lambda x: sa.cross_entropy(x, np.zeros(8, np.int64), label_smoothing=np.ones(2)), TypeError),
])
def test_bad_arguments_still_raise(call, error):
    with pytest.raises(error):
        call(_logits((8, 10), np.float32))


@pytest.mark.parametrize("x, axis, taken", [
    (np.zeros((8, 10), np.float32), -1, True),
    (np.zeros((8, 10), np.float64), 1, True),
    (np.zeros((8, 10), np.float32), 0, False),            # not the last axis
    (np.zeros((8, 10), np.float32), (-1,), False),        # a tuple goes the general way
    (np.zeros((8, 10), np.float32), True, False),         # a bool is no axis
    (np.zeros((8, 10), np.float16), -1, False),           # widened on the general path
    (np.zeros((8, 10), ">f4"), -1, False),                # byte-swapped: copied there
    (np.zeros((8, 20), np.float32)[:, ::2], -1, False),   # strided
    (np.zeros((0, 10), np.float32), -1, False),           # empty
    (np.zeros((), np.float32), -1, False),                # 0-d
    (np.ma.zeros((8, 10), np.float32), -1, False),        # a subclass
    ([[1.0, 2.0]], -1, False),                            # a list
])
def test_plain_rows_takes_only_plain_input(x, axis, taken):
    rows = _dispatch.plain_rows(x, axis)
    assert (rows is not None) == taken
    if taken:
        assert rows.shape == (8, 10) and np.shares_memory(rows, x)


def test_unaligned_input_is_not_plain():
    buffer = np.zeros(8 * 10 * 4 + 1, np.uint8)
    x = buffer[1:].view(np.float32).reshape(8, 10)
    assert not x.flags.aligned
    assert _dispatch.plain_rows(x, -1) is None
    np.testing.assert_allclose(sa.softmax(x), np.full((8, 10), 0.1), rtol=1e-6)


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp", "cross_entropy"])
def test_torch_tensors_equal_the_numpy_result(name, dtype):
    """A plain CPU tensor takes the fast path too; the result is a tensor of
    the NumPy call's values, dtype and shape, sharing nothing with the input."""
    torch = _torch()
    x = _logits((8, 10), dtype)
    x.flat[0] = 1.0
    target = np.random.default_rng(2).integers(0, 10, 8)
    args = (x, target) if name == "cross_entropy" else (x,)
    f = getattr(sa, name)
    want = f(*args)
    got = f(*(torch.from_numpy(a.copy()) for a in args))
    assert type(got) is torch.Tensor and got.dtype == torch.from_numpy(want).dtype
    np.testing.assert_array_equal(got.numpy(), want)
    if name == "logsumexp":
        value, sign = f(torch.from_numpy(x), return_sign=True)
        assert type(sign) is torch.Tensor
        np.testing.assert_array_equal(sign.numpy(), np.ones(8, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_tensors_get_a_tensor_gradient(dtype):
    torch = _torch()
    x = _logits((8, 10), dtype)
    target = np.random.default_rng(2).integers(0, 10, 8)
    want, want_grad = sa.cross_entropy(x, target, return_grad=True)
    got, got_grad = sa.cross_entropy(torch.from_numpy(x.copy()), torch.from_numpy(target),
                                     return_grad=True)
    assert type(got) is type(got_grad) is torch.Tensor
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(got_grad.numpy(), want_grad)


def test_tensors_that_are_not_plain_keep_their_path():
    """requires_grad keeps autograd (the autograd adapter, not the fast
    path), a Parameter stays a subclass, mixed libraries are refused as
    before."""
    torch = _torch()
    x = torch.from_numpy(_logits((8, 10), np.float32)).requires_grad_()
    y = sa.softmax(x)
    assert y.requires_grad
    assert _dispatch.plain_tensor(x) is None
    assert _dispatch.plain_tensor(torch.nn.Parameter(torch.zeros(2, 3))) is None
    with pytest.raises(TypeError, match="same library"):
        sa.cross_entropy(torch.zeros(8, 10), np.zeros(8, np.int64))


@pytest.mark.parametrize("largest, sorted", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_topk_equals_the_general_path(shape, dtype, largest, sorted):
    x = _logits(shape, dtype)
    if x.size > 2:
        x.flat[1] = np.nan
        x.flat[-1] = x.flat[-2]     # a tie: the lower index first
    k = min(3, shape[-1])
    values, indices = sa.topk(x, k, largest=largest, sorted=sorted)
    # axis=-1 given as a NumPy integer is not plain: the general path
    general_values, general_indices = sa.topk(x, k, axis=np.int64(-1), largest=largest,
                                              sorted=sorted)
    np.testing.assert_array_equal(values, general_values)
    np.testing.assert_array_equal(indices, general_indices)
    assert values.dtype == dtype and indices.dtype == np.int64
    # the values are the entries at the indices
    np.testing.assert_array_equal(np.take_along_axis(x, indices, axis=-1), values)


@pytest.mark.parametrize("order, renormalize", [("softmax_topk", True), ("softmax_topk", False),
                                                ("topk_softmax", True)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 10), (1, 1), (64, 1000)])
def test_topk_gating_equals_the_general_path(shape, dtype, order, renormalize):
    x = _logits(shape, dtype)
    k = min(2, shape[1])
    fast = sa.topk_gating(x, k, order=order, renormalize=renormalize)
    # a NumPy float temperature of 1 is not a plain Python value: the general path
    general = sa.topk_gating(x, k, order=order, renormalize=renormalize, temperature=np.float64(1))
    np.testing.assert_array_equal(fast.weights, general.weights)
    np.testing.assert_array_equal(fast.indices, general.indices)
    assert fast.weights.dtype == dtype and fast.indices.dtype == np.int64
    assert fast[2:] == (None, None, None, None)
    # and they are the gate, written plainly: softmax over all experts in
    # float64, the k largest, renormalized over the selection when asked
    z = x.astype(np.float64)
    with np.errstate(invalid="ignore"):     # the (1, 1) row is -inf alone: NaN weights
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
    want_indices = np.argsort(-z, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(fast.indices, want_indices)
    want = np.take_along_axis(p, want_indices, axis=1)
    if renormalize or order == "topk_softmax":
        want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fast.weights, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-30)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"k": 0}, ValueError, "k must be"),
    ({"k": 11}, ValueError, "k must be"),
    ({"k": 2.0}, TypeError, None),
    ({"k": 2, "order": "other"}, ValueError, None),
    ({"k": 2, "temperature": 0}, ValueError, "temperature"),
    ({"k": 2, "renormalize": 1}, TypeError, "renormalize"),
    ({"k": 2, "temperature": np.array([1.0, 2.0])}, TypeError, "temperature"),
])
def test_topk_gating_bad_arguments_still_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        sa.topk_gating(_logits((8, 10), np.float32), **kwargs)


def test_topk_gating_nan_and_tensors():
    x = _logits((8, 10), np.float32)
    x[3, 4] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        sa.topk_gating(x, 2)
    torch = _torch()
    x = _logits((8, 10), np.float32)
    want = sa.topk_gating(x, 2)
    got = sa.topk_gating(torch.from_numpy(x), 2)
    assert type(got.weights) is torch.Tensor and type(got.indices) is torch.Tensor
    np.testing.assert_array_equal(got.weights.numpy(), want.weights)
    np.testing.assert_array_equal(got.indices.numpy(), want.indices)


def test_calls_of_numpy_arrays_and_scalars_ask_no_adapter(monkeypatch):
    """The adapters' claims (Dask, autograd) are asked only when an argument
    is of another type than ndarray, int, float, bool, str or None: no
    adapter claims a call by such values, and asking costs a small call a
    third of its time."""
    from softarray import _declare
    asked = []

    def spy(declaration, args, kwargs):
        asked.append(declaration.public.__name__)
        return False

    monkeypatch.setattr(_declare, "_ADAPTERS", [*_declare._ADAPTERS, (spy, None)])
    x = _logits((8, 10), np.float32)
    sa.softmax(x, axis=-1, temperature=2.0)
    sa.cross_entropy(x, np.zeros(8, np.int64), reduction="sum", label_smoothing=0.1)
    sa.topk_gating(x, 2, order="topk_softmax", capacity_factor=None)
    assert asked == []
    sa.softmax(x.tolist())                  # a list: any engine's, asked
    sa.softmax(x, axis=(1,))                # a tuple
    sa.softmax(x, temperature=np.float32(2))
    assert asked == ["softmax"] * 3
