"""The output cache (softarray/_output_cache.py, src/_output_cache.h): large
outputs come from a NumPy memory handler that keeps a few freed blocks for
the next output of the same size.

What must hold: a reused block gives the same results as a fresh one (every
entry is overwritten; nothing of the previous contents shows), two live
outputs never share memory, the cache never holds more than its limit, arrays
from the handler behave as any NumPy array (resize, views, pickling), and the
cache can be turned off.
"""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.special

import softarray as sa
from softarray import _output_cache

MIN = _output_cache.OUTPUT_CACHE_MIN_BYTES
# 2048 x 4096 float32 rows: 32 MiB, the smallest cached size; float64: 64 MiB.
SHAPE = (2048, MIN // (2048 * 4))


def _address(a):
    return a.__array_interface__["data"][0]


def _owner(a):
    """The array that owns a's memory."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _handler_name(a):
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    return multiarray.get_handler_name(_owner(a))


@pytest.fixture
def cache_limit():
    """Run with a known limit (64 MiB), and restore the session's after."""
    previous = sa.set_output_cache(64 << 20)
    yield 64 << 20
    sa.set_output_cache(previous)


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)


def test_large_output_comes_from_the_cache_handler_and_small_does_not(cache_limit, x):
    assert _handler_name(sa.softmax(x)) == "softarray_output_cache"
    assert _handler_name(sa.softmax(x[:4])) != "softarray_output_cache"


def test_freed_block_is_reused_and_fully_overwritten(cache_limit, x):
    first = sa.softmax(x)
    address = _address(first)
    first[...] = np.nan                  # what a reuse must not show
    del first
    assert _output_cache.output_cache_info()[1] == x.nbytes
    second = sa.log_softmax(x)
    assert _address(second) == address
    assert _output_cache.output_cache_info()[1] == 0
    np.testing.assert_allclose(second, scipy.special.log_softmax(x, axis=-1), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="huge-page alignment is Linux's")
def test_blocks_are_whole_huge_pages(cache_limit, x):
    """A block starts on a 2 MiB boundary (its 64-byte header, then the
    data), so that MADV_FREE on keeping it covers whole huge pages."""
    out = sa.softmax(x)
    assert (_address(out) - 64) % (2 << 20) == 0
    del out
    again = sa.softmax(x)
    assert (_address(again) - 64) % (2 << 20) == 0


def test_live_outputs_never_share_memory(cache_limit, x):
    outputs = [sa.softmax(x) for _ in range(3)]
    assert len({_address(a) for a in outputs}) == 3
    del outputs[1]
    outputs.append(sa.softmax(-x))
    np.testing.assert_allclose(outputs[0], scipy.special.softmax(x, axis=-1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(outputs[-1], scipy.special.softmax(-x, axis=-1), rtol=1e-5, atol=1e-7)
    assert not np.shares_memory(outputs[0], outputs[-1])


def test_cache_holds_at_most_its_limit_and_four_blocks(cache_limit, x):
    outputs = [sa.softmax(x) for _ in range(6)]                     # 6 x 32 MiB
    outputs += [sa.softmax(x.astype(np.float64)) for _ in range(2)]  # 2 x 64 MiB
    del outputs
    limit, held = _output_cache.output_cache_info()
    assert 0 < held <= limit == cache_limit
    assert held // MIN <= 4


def test_block_larger_than_the_limit_is_not_kept(x):
    previous = sa.set_output_cache(MIN)         # room for one 32 MiB block only
    try:
        big = sa.softmax(x.astype(np.float64))  # 64 MiB
        del big
        assert _output_cache.output_cache_info()[1] == 0
        small = sa.softmax(x)
        del small
        assert _output_cache.output_cache_info()[1] == MIN
    finally:
        sa.set_output_cache(previous)


def test_turning_the_cache_off_frees_it_and_uses_numpy_memory(cache_limit, x):
    del_me = sa.softmax(x)
    del del_me
    assert _output_cache.output_cache_info()[1] > 0
    assert sa.set_output_cache(0) == cache_limit
    assert _output_cache.output_cache_info() == (0, 0)
    out = sa.softmax(x)
    assert _handler_name(out) != "softarray_output_cache"
    np.testing.assert_allclose(out, scipy.special.softmax(x, axis=-1), rtol=1e-5, atol=1e-7)


def test_handler_arrays_behave_as_numpy_arrays(cache_limit, x):
    out = sa.softmax(x)
    expected = scipy.special.softmax(x, axis=-1)
    view = out[::2, 5:]
    np.testing.assert_allclose(pickle.loads(pickle.dumps(view)), expected[::2, 5:], rtol=1e-5, atol=1e-7)
    del view
    owner = _owner(out)                 # out's own memory (out may be a view of it)
    del out
    assert owner.shape == expected.shape
    owner.resize((2 * SHAPE[0], SHAPE[1]), refcheck=False)     # realloc through the handler
    np.testing.assert_allclose(owner[: SHAPE[0]], expected, rtol=1e-5, atol=1e-7)
    owner.resize((10, 3), refcheck=False)
    np.testing.assert_allclose(owner.ravel(), expected.ravel()[:30], rtol=1e-5, atol=1e-7)


def test_gradients_and_iou_matrices_use_the_cache_too(cache_limit, x):
    t = np.zeros(SHAPE[0], np.int64)
    _, grad = sa.cross_entropy(x, t, return_grad=True)
    assert _handler_name(grad) == "softarray_output_cache"
    box = np.array([[0, 0, 1, 1]], np.float32)
    iou = sa.box_iou(np.tile(box, (SHAPE[0], 1)), np.tile(box, (SHAPE[1], 1)))   # SHAPE's float32 bytes
    assert iou.nbytes == MIN and _handler_name(iou) == "softarray_output_cache"


@pytest.mark.parametrize("bad", [-1, 1.5, "64", True, None])
def test_set_output_cache_refuses_bad_limits(bad):
    with pytest.raises(ValueError, match="max_bytes"):
        sa.set_output_cache(bad)


@pytest.mark.parametrize(("value", "expected"), [("0", "0"), ("32", str(32 << 20)), ("", str(256 << 20))])
def test_environment_sets_the_limit_at_import(value, expected):
    code = "import softarray._output_cache as c; print(c.output_cache_info()[0])"
    env = dict(os.environ, SOFTARRAY_OUTPUT_CACHE_MB=value)
    out = subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(__file__))
    assert out.stdout.strip() == expected


def test_environment_with_a_bad_limit_fails_the_import_clearly():
    env = dict(os.environ, SOFTARRAY_OUTPUT_CACHE_MB="lots")
    out = subprocess.run([sys.executable, "-P", "-c", "import softarray"], env=env,
                         capture_output=True, text=True, cwd=os.path.dirname(__file__))
    assert out.returncode != 0
    assert "SOFTARRAY_OUTPUT_CACHE_MB must be a non-negative integer" in out.stderr


def test_outputs_made_and_freed_from_many_threads(cache_limit, x):
    from concurrent.futures import ThreadPoolExecutor

    expected = scipy.special.softmax(x, axis=-1)

    def work(sign):
        for _ in range(4):
            out = sa.softmax(sign * x)
            np.testing.assert_allclose(out, expected if sign > 0 else scipy.special.softmax(-x, axis=-1),
                                       rtol=1e-5, atol=1e-7)
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, [1, -1, 1, -1]))
    assert _output_cache.output_cache_info()[1] <= cache_limit
