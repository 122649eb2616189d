"""Half-precision rows read directly by the softmax-family kernels
(src/_half.h, softarray._dispatch.half_rows): each result is the float32
kernel's on the widened input, rounded once to the input's dtype, so it
must equal that float32 result cast by NumPy (or torch) bit for bit, on
every layout and size the direct path takes."""
import numpy as np
import pytest

import softarray as sa

ml_dtypes = pytest.importorskip("ml_dtypes")

HALF = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
OPS = ["softmax", "log_softmax", "stablemax", "log_stablemax"]
# Short rows (the eight-rows-in-lanes kernel), rows in cache, rows longer
# than a chunk's scratch (65536 floats), and one row.
SHAPES = [(37, 10), (9, 1000), (2, 70000), (1, 5), (3, 4, 33)]


def _rows(dtype, shape, seed):
    """Values over the half type's range: probabilities deep in float16's
    subnormals, large logits, and rows with NaN, +inf and -inf."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.choice([0.5, 4.0, 30.0], size=shape[:-1] + (1,))
    flat = x.reshape(-1, shape[-1])
    if flat.shape[0] >= 4:
        flat[1, 0] = np.nan
        flat[2, -1] = np.inf
        flat[3, :] = -np.inf
    return x.astype(dtype)


def _want(name, x, dtype):
    with sa.threads(1), np.errstate(over="ignore"):
        if name == "logsumexp":
            return sa.logsumexp(x.astype(np.float32), axis=-1).astype(dtype)
        return getattr(sa, name)(x.astype(np.float32)).astype(dtype)


def _bits_equal(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    nan = np.isnan(want.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(got.astype(np.float32)), nan)
    np.testing.assert_array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", OPS + ["logsumexp"])
@pytest.mark.parametrize("dtype", list(HALF), ids=str)
def test_numpy_half_is_float32_rounded_once(dtype, name, shape):
    dtype = HALF[dtype]
    x = _rows(dtype, shape, seed=len(name) + shape[-1])
    with sa.threads(1):
        got = sa.logsumexp(x, axis=-1) if name == "logsumexp" else getattr(sa, name)(x)
    _bits_equal(got, _want(name, x, dtype))


@pytest.mark.parametrize("dtype", list(HALF), ids=str)
def test_every_half_value_comes_back(dtype):
    """logsumexp of a one-entry row is the entry: all 65536 bit patterns
    widen and narrow back to themselves (NaN to NaN; -0 gives +0, as the
    float32 kernel's m + log(1) does)."""
    dtype = HALF[dtype]
    x = np.arange(2**16, dtype=np.uint16).view(dtype).reshape(-1, 1)
    got = sa.logsumexp(x, axis=-1)
    want = x[:, 0].copy()
    want[want.view(np.uint16) == 0x8000] = 0
    _bits_equal(got, want)
    _bits_equal(got, _want("logsumexp", x, dtype))


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_give_the_same_bits(threads):
    x = _rows(np.float16, (300, 1000), seed=3)
    with sa.threads(threads):
        got = sa.softmax(x)
    _bits_equal(got, _want("softmax", x, np.float16))


@pytest.mark.parametrize("torch_dtype", ["float16", "bfloat16"])
def test_torch_half_tensors(torch_dtype):
    torch = pytest.importorskip("torch")
    dt = getattr(torch, torch_dtype)
    x = torch.from_numpy(_rows(np.float32, (64, 1000), seed=5)).to(dt)
    got = sa.log_softmax(x)
    assert type(got) is torch.Tensor and got.dtype == dt and got.shape == x.shape
    with sa.threads(1):
        want = sa.log_softmax(x.float().numpy())
    assert torch.equal(torch.isnan(got), torch.isnan(torch.from_numpy(want)))
    ok = ~torch.isnan(got)
    assert torch.equal(got[ok], torch.from_numpy(want).to(dt)[ok])
    lse = sa.logsumexp(x, axis=-1, keepdims=True)
    assert type(lse) is torch.Tensor and lse.dtype == dt and lse.shape == (64, 1)


def test_input_untouched_and_views_take_the_copy_path():
    x = _rows(np.float16, (16, 100), seed=7)
    before = x.copy()
    sa.softmax(x)
    np.testing.assert_array_equal(x.view(np.uint16), before.view(np.uint16))
    strided = x[:, ::2]             # not C-contiguous: the widened copy's path, same bits
    _bits_equal(sa.softmax(strided), _want("softmax", strided, np.float16))


LOSS_CALLS = {
    "cross_entropy": lambda x, y: sa.cross_entropy(x, y, return_grad=True),
    # class weights follow the logits' dtype (torch's rule): multiples of
    # 1/16, which both half types hold exactly
    "cross_entropy options": lambda x, y: sa.cross_entropy(
        x, y, weight=(np.round(np.linspace(0.5, 2.0, x.shape[-1]) * 16) / 16).astype(x.dtype),
        label_smoothing=0.1, ignore_index=1, return_grad=True),
    "cross_entropy none": lambda x, y: sa.cross_entropy(x, y, reduction="none", return_grad=True),
    "focal_loss": lambda x, y: sa.focal_loss(x, y, gamma=2.0, return_grad=True),
    "nll_loss": lambda x, y: sa.nll_loss(x, y, return_grad=True),
}


@pytest.mark.parametrize("shape", [(40, 10), (33, 1000), (3, 70000), (2, 3, 7)], ids=str)
@pytest.mark.parametrize("name", list(LOSS_CALLS))
@pytest.mark.parametrize("dtype", list(HALF), ids=str)
def test_half_losses_are_float32_rounded_once(dtype, name, shape):
    """Half logits read directly by the loss kernels: the loss and the
    gradient are the float32 call's, each rounded once to the logits' dtype."""
    dtype = HALF[dtype]
    rng = np.random.default_rng(shape[-1])
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[-1], shape[:-1])
    call = LOSS_CALLS[name]
    loss, grad = call(x, y)
    with sa.threads(1):
        want_loss, want_grad = call(x.astype(np.float32), y)
    _bits_equal(loss, np.asarray(want_loss).astype(dtype))
    _bits_equal(grad, want_grad.astype(dtype))


def test_torch_half_loss():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.standard_normal((64, 500), dtype=np.float32)).to(torch.bfloat16)
    y = torch.from_numpy(rng.integers(0, 500, 64))
    loss, grad = sa.cross_entropy(x, y, return_grad=True)
    assert type(grad) is torch.Tensor and grad.dtype == torch.bfloat16 and loss.dtype == torch.bfloat16
    with sa.threads(1):
        want_loss, want_grad = sa.cross_entropy(x.float().numpy(), y.numpy(), return_grad=True)
    assert torch.equal(grad, torch.from_numpy(want_grad).to(torch.bfloat16))
    assert torch.equal(loss, torch.tensor(float(want_loss)).to(torch.bfloat16))
