"""The Dask route: Dask arrays in, lazy Dask arrays out, blocks computed by
the compiled kernels.

The reference is the NumPy route on the computed inputs (itself tested
against SciPy, PyTorch and mpmath in the family test files), and, for a few
cases, SciPy or NumPy written out here. Results are compared exactly where
every output entry is computed by one call on a whole slice, and within a
few units in the last place where partial results of several blocks are
combined (split log-sum-exp axes, loss sums and means, summed gradients).
"""
import inspect
import itertools
import re

import numpy as np
import pytest
import scipy.special

import softarray as sa

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
pytest.importorskip("distributed")

RTOL = {np.float32: 2e-6, np.float64: 1e-14}


def compute(*arrays):
    """Compute on the synchronous scheduler (results of one graph)."""
    return dask.compute(*arrays, scheduler="sync")


def _fail_scheduler(*args, **kwargs):
    raise AssertionError("something was computed at call time")


@pytest.fixture
def no_compute():
    """Any compute inside the block fails the test."""
    with dask.config.set(scheduler=_fail_scheduler):
        yield


def random(shape, dtype=np.float64, seed=0, scale=3.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def assert_close(actual, expected, dtype=np.float64, factor=1):
    np.testing.assert_allclose(actual, expected, rtol=factor * RTOL[np.dtype(dtype).type],
                               atol=0, equal_nan=True)


def assert_same(actual, expected):
    """Equal values (NaN where NaN), dtype and shape."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def assert_lazy(result):
    for r in result if isinstance(result, tuple) else (result,):
        assert isinstance(r, da.Array), type(r)


# ------------------------------------------------------------------ the route

def test_numpy_calls_do_not_change():
    x = random((3, 4))
    out = sa.softmax(x)
    assert type(out) is np.ndarray
    assert list(inspect.signature(sa.softmax).parameters) == ["x", "axis", "temperature", "where"]
    assert "Examples" in sa.softmax.__doc__


def test_results_are_lazy_for_every_function(no_compute):
    """A call builds a graph and computes nothing (the scheduler raises)."""
    x = da.from_array(random((6, 5)), chunks=(2, 2))
    y = da.from_array(np.array([0, 1, 2, 3, 4, 0]), chunks=2)
    boxes = da.from_array(np.abs(random((6, 4))).cumsum(axis=1), chunks=(3, 4))
    scores = da.from_array(np.linspace(0.1, 0.9, 6), chunks=3)
    labels = da.from_array(np.array([0, 1, 0, 1, 0, 1]), chunks=3)
    rng = np.random.default_rng(0)
    calls = [
        lambda: sa.softmax(x), lambda: sa.log_softmax(x, axis=0), lambda: sa.stablemax(x),
        lambda: sa.log_stablemax(x, axis=None), lambda: sa.logsumexp(x, axis=1),
        lambda: sa.logsumexp(x, b=x, return_sign=True, axis=None),
        lambda: sa.topk(x, 2), lambda: sa.gumbel_topk(x, 2, rng=rng),
        lambda: sa.gumbel_softmax(x, rng=rng),
        lambda: sa.dense_to_sparse_gating(x, temperature=1.0),
        lambda: sa.topk_gating(x, 2, return_aux=True, capacity_factor=1.0)[:2],
        lambda: sa.topk_gating(x, 2, capacity_factor=1.0)[:4],
        lambda: sa.cross_entropy(x, y, return_grad=True), lambda: sa.nll_loss(x, y),
        lambda: sa.z_loss(x, y), lambda: sa.focal_loss(x, y),
        lambda: sa.comp_sum_loss(x, y, tau=0.5),
        lambda: sa.generalized_cross_entropy(x, y), lambda: sa.mae_loss(x, y),
        lambda: sa.multi_margin_loss(x, y), lambda: sa.logsumexp_penalty(x),
        lambda: sa.binary_cross_entropy_with_logits(x, x > 0),
        lambda: sa.sigmoid_focal_loss(x, x > 0), lambda: sa.kl_div(x, sa.softmax(x)),
        lambda: sa.linear_cross_entropy(x, x[:5], y, return_grad=True)[0],
        lambda: sa.box_area(boxes), lambda: sa.box_convert(boxes, "xyxy", "cxcywh"),
        lambda: sa.box_iou(boxes, boxes), lambda: sa.nms(boxes, scores, 0.5),
        lambda: sa.batched_nms(boxes, scores, labels, 0.5), lambda: sa.soft_nms(boxes, scores),
        lambda: sa.batched_soft_nms(boxes, scores, labels),
    ]
    for call in calls:
        assert_lazy(call())


def test_each_block_runs_the_public_function_on_numpy_blocks(monkeypatch):
    """The blocks reach the compiled route: the kernel sees NumPy blocks,
    one call per block (the axis rechunked whole); at call time it ran once,
    on the validation's tiny stand-in."""
    from softarray._lib import _softmax as kernels
    seen = []
    rows = kernels.rows

    def counting_rows(x2, *args):
        seen.append((type(x2), x2.shape))
        return rows(x2, *args)

    def counting(fast_path):                # the small blocks' fast paths
        def counted(x, *args):
            out = fast_path(x, *args)
            if out is not None:
                seen.append((type(x), x.shape))
            return out
        return counted

    monkeypatch.setattr(kernels, "rows", counting_rows)
    monkeypatch.setattr(kernels, "plain_rows", counting(kernels.plain_rows))
    monkeypatch.setattr(kernels, "plain_rows_at", counting(kernels.plain_rows_at))
    x = da.from_array(random((12, 5)), chunks=(4, 2))
    out = sa.softmax(x)
    assert len(seen) == 1 and seen[0][1][0] * seen[0][1][1] < 12
    out.compute(scheduler="sync")
    assert seen[1:] == [(np.ndarray, (4, 5))] * 3


# ------------------------------------------------------------------ softmax family

CHUNKINGS_2D = [(8, 7), (3, 7), (8, 2), ((1, 4, 3), (2, 5)), (1, 1)]


@pytest.mark.parametrize("op", [sa.softmax, sa.log_softmax, sa.stablemax, sa.log_stablemax])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_matches_numpy(op, dtype):
    a = random((8, 7), dtype)
    for chunks, axis in itertools.product(CHUNKINGS_2D, [-1, 0, None, (0, 1)]):
        out = op(da.from_array(a, chunks=chunks), axis=axis)
        assert out.dtype == dtype
        assert out.shape == a.shape
        # One call per whole slice: the NumPy route's kernel on the same rows.
        assert_same(*compute(out), op(a, axis=axis))


@pytest.mark.parametrize("op", [sa.softmax, sa.log_softmax, sa.stablemax])
def test_normalize_where_and_temperature(op):
    a = random((4, 9, 6))
    where = np.random.default_rng(1).random((9, 6)) > 0.3
    where[0] = False        # an empty slice
    kw = {"temperature": 2.5} if op is not sa.stablemax else {}
    expected = op(a, axis=1, where=where, **kw)
    for chunks in [(2, 4, 3), (4, 9, 6), (1, (2, 7), (5, 1))]:
        out = op(da.from_array(a, chunks=chunks), axis=1, where=where, **kw)
        assert_same(*compute(out), expected)
    dask_where = da.from_array(where, chunks=(3, 2))
    assert_same(*compute(op(da.from_array(a, chunks=2), axis=1, where=dask_where, **kw)), expected)


def test_normalize_promotes_integers_and_handles_empty_arrays():
    ints = np.arange(24).reshape(4, 6) % 5
    out = sa.softmax(da.from_array(ints, chunks=(2, 4)))
    assert out.dtype == np.float64
    assert_same(*compute(out), sa.softmax(ints))
    np.testing.assert_allclose(out.compute(scheduler="sync"),
                               scipy.special.softmax(ints, axis=-1), rtol=1e-15)
    for shape in [(0, 5), (3, 0)]:
        a = np.zeros(shape, np.float32)
        assert_same(*compute(sa.log_softmax(da.from_array(a, chunks=2))), sa.log_softmax(a))


def test_normalize_on_non_default_axis_of_3d_against_scipy():
    a = random((5, 6, 7))
    out = sa.log_softmax(da.from_array(a, chunks=(2, 3, 4)), axis=(0, 2))
    np.testing.assert_allclose(out.compute(scheduler="sync"),
                               scipy.special.log_softmax(a, axis=(0, 2)), rtol=1e-13)


# ------------------------------------------------------------------ logsumexp

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_matches_numpy(dtype, keepdims):
    a = random((6, 8), dtype)
    a[1, 2] = -np.inf
    chunkings = [(6, 8), (2, 8), (6, 3), ((1, 2, 3), (5, 3)), (1, 1)]
    for chunks, axis in itertools.product(chunkings, [-1, 0, None, ()]):
        out = sa.logsumexp(da.from_array(a, chunks=chunks), axis=axis, keepdims=keepdims)
        expected = sa.logsumexp(a, axis=axis, keepdims=keepdims)
        assert out.dtype == expected.dtype and out.shape == expected.shape
        # Split reduced axes combine block partials: a few units in the last place.
        got, = compute(out)
        assert_close(got, expected, dtype, factor=4)
        assert_close(got, scipy.special.logsumexp(a.astype(np.float64), axis=axis,
                                                  keepdims=keepdims), np.float32)


def test_logsumexp_whole_axes_are_exact():
    a = random((6, 8))
    assert_same(*compute(sa.logsumexp(da.from_array(a, chunks=(2, 8)), axis=1)),
                sa.logsumexp(a, axis=1))


def test_logsumexp_where_b_and_sign():
    rng = np.random.default_rng(3)
    a = random((5, 12))
    b = rng.standard_normal((5, 12))
    where = rng.random((5, 12)) > 0.4
    where[2] = False
    where[3, 6:] = False            # a whole block of row 3 masked out
    for chunks in [(5, 12), (2, 6), (1, (3, 3, 6))]:
        x = da.from_array(a, chunks=chunks)
        res, sign = sa.logsumexp(x, axis=1, b=b, where=where, return_sign=True)
        ref_res, ref_sign = sa.logsumexp(a, axis=1, b=b, where=where, return_sign=True)
        got_res, got_sign = compute(res, sign)
        assert_close(got_res, ref_res, factor=8)
        assert_same(got_sign, ref_sign)
        only = sa.logsumexp(x, axis=1, b=da.from_array(b, chunks=3), where=where)
        assert_close(*compute(only), sa.logsumexp(a, axis=1, b=b, where=where), factor=8)
    # Against SciPy: the signed sum of all entries.
    res, sign = sa.logsumexp(da.from_array(a, chunks=4), axis=None, b=b, return_sign=True)
    ref = scipy.special.logsumexp(a, axis=None, b=b, return_sign=True)
    got = compute(res, sign)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
    assert got[1] == ref[1]


def test_logsumexp_broadcasting_b_and_unweighted_sign():
    a = random((4, 1))
    b = np.array([1.0, 2.0, 0.5])
    out = sa.logsumexp(da.from_array(a, chunks=2), axis=None, b=b, keepdims=True)
    assert_close(*compute(out), sa.logsumexp(a, axis=None, b=b, keepdims=True), factor=4)
    res, sign = sa.logsumexp(da.from_array(a, chunks=2), axis=0, return_sign=True)
    got = compute(res, sign)
    assert_close(got[0], sa.logsumexp(a, axis=0), factor=4)
    assert_same(got[1], np.ones(1))


def test_logsumexp_special_values_across_blocks():
    a = np.array([[0.0, 1.0, np.inf, 2.0], [np.nan, 0.0, 1.0, 2.0],
                  [-np.inf, -np.inf, -np.inf, -np.inf], [1.0, 1.0, 1.0, 1.0]])
    out = sa.logsumexp(da.from_array(a, chunks=(1, 2)), axis=1)
    assert_close(*compute(out), scipy.special.logsumexp(a, axis=1), factor=4)


# ------------------------------------------------------------------ topk and samplers

@pytest.mark.parametrize("largest", [True, False])
def test_topk_matches_numpy(largest):
    a = np.round(random((5, 9)), 1)     # ties
    a[2, 3] = np.nan
    for chunks, (axis, k) in itertools.product([(5, 9), (2, 4), ((1, 4), (3, 3, 3))],
                                               [(-1, 3), (0, 2), (1, 0), (0, 5)]):
        values, indices = sa.topk(da.from_array(a, chunks=chunks), k, axis=axis, largest=largest)
        ref_values, ref_indices = sa.topk(a, k, axis=axis, largest=largest)
        got = compute(values, indices)
        assert_same(got[0], ref_values)
        assert_same(got[1], ref_indices)


def test_topk_of_integers():
    a = np.random.default_rng(0).integers(0, 5, (6, 7))
    got = compute(*sa.topk(da.from_array(a, chunks=(2, 3)), 3))
    ref = sa.topk(a, 3)
    assert_same(got[0], ref[0])
    assert_same(got[1], ref[1])


def per_block_reference(func, a, chunks, seed, **kwargs):
    """func on each NumPy block with the generators rng.spawn gives, in C
    order of the blocks: what the Dask route guarantees."""
    x = da.from_array(a, chunks=chunks)
    children = iter(np.random.default_rng(seed).spawn(int(np.prod(x.numblocks))))
    blocks = np.empty(x.numblocks, object)
    for index in itertools.product(*map(range, x.numblocks)):
        block = x.blocks[index].compute(scheduler="sync")
        blocks[index] = func(block, rng=next(children), **kwargs)
    return np.block(blocks.tolist())


def test_gumbel_samplers_use_one_spawned_generator_per_block():
    a = random((6, 5))
    chunks = (2, 5)
    for func, kwargs in [(sa.gumbel_softmax, {"tau": 0.7}), (sa.gumbel_softmax, {"hard": True}),
                         (sa.gumbel_topk, {"k": 2})]:
        out = func(da.from_array(a, chunks=chunks), rng=np.random.default_rng(5), **kwargs)
        expected = per_block_reference(func, a, chunks, 5, **kwargs)
        assert_same(*compute(out), expected)
    # Each compute of one graph draws the same noise (on a local scheduler
    # the graph's generators are not copied by pickling).
    out = sa.gumbel_softmax(da.from_array(a, chunks=chunks), rng=np.random.default_rng(5))
    assert_same(*compute(out), out.compute(scheduler="threads"))
    # The axis is rechunked whole, so a split axis gives the same blocks.
    out = sa.gumbel_softmax(da.from_array(a, chunks=(2, 2)), rng=np.random.default_rng(5))
    assert_same(*compute(out), per_block_reference(sa.gumbel_softmax, a, (2, 5), 5))


def test_gumbel_validation_does_not_advance_the_generator():
    rng = np.random.default_rng(11)
    sa.gumbel_softmax(da.from_array(random((4, 3)), chunks=2), rng=rng)
    spawned = np.random.default_rng(11)
    spawned.spawn(2)
    assert rng.random() == spawned.random()


def test_dense_to_sparse_gating_matches_numpy():
    a = random((7, 6))
    for kwargs in [{"temperature": 0.5, "threshold": 0.1},
                   {"temperature": 2.0, "activation": "sigmoid", "axis": 0}]:
        out = sa.dense_to_sparse_gating(da.from_array(a, chunks=(3, 2)), **kwargs)
        assert_same(*compute(out), sa.dense_to_sparse_gating(a, **kwargs))


@pytest.mark.parametrize("order", ["softmax_topk", "topk_softmax"])
def test_topk_gating_rows_blocked(order):
    a = random((9, 6), np.float32)
    gate = sa.topk_gating(da.from_array(a, chunks=(4, 3)), 2, order=order, renormalize=False)
    ref = sa.topk_gating(a, 2, order=order, renormalize=False)
    assert gate.positions is None and gate.aux is None
    got = compute(gate.weights, gate.indices)
    assert_same(got[0], ref.weights)
    assert_same(got[1], ref.indices)


@pytest.mark.parametrize("capacity_factor", [0.5, 1.0, 3.0])
def test_topk_gating_slots_combined_across_blocks(capacity_factor):
    """Slots are global (every first choice before any second choice) while
    the tokens stay blocked."""
    a = random((23, 5))
    ref = sa.topk_gating(a, 3, capacity_factor=capacity_factor)
    for chunks in [(23, 5), (4, 2), (1, 5), ((10, 0, 3, 10), 5)]:
        gate = sa.topk_gating(da.from_array(a, chunks=chunks), 3, capacity_factor=capacity_factor)
        assert gate.capacity == ref.capacity and gate.aux is None
        assert gate.positions.numblocks[0] == len(da.from_array(a, chunks=chunks).chunks[0])
        for name in ("weights", "indices", "positions", "kept"):
            assert_same(*compute(getattr(gate, name)), getattr(ref, name))
    # Slots written out: the rank of each (token, choice) among the
    # assignments to its expert in order (choice, token).
    order = sorted(np.ndindex(23, 3), key=lambda tj: (tj[1], tj[0]))
    expected = np.empty((23, 3), np.int64)
    taken = {}
    for t, j in order:
        e = ref.indices[t, j]
        expected[t, j] = taken.get(e, 0)
        taken[e] = expected[t, j] + 1
    assert_same(*compute(sa.topk_gating(da.from_array(a, chunks=4), 3,
                                        capacity_factor=capacity_factor).positions), expected)


def test_topk_gating_aux_with_all_tokens():
    a = random((10, 4))
    gate = sa.topk_gating(da.from_array(a, chunks=(3, 2)), 2, capacity_factor=0.8, return_aux=True)
    ref = sa.topk_gating(a, 2, capacity_factor=0.8, return_aux=True)
    assert gate.capacity == ref.capacity
    for name in ("weights", "indices", "positions", "kept"):
        assert_same(*compute(getattr(gate, name)), getattr(ref, name))
    for name, value in ref.aux.items():
        assert_same(*compute(gate.aux[name]), value)


def test_topk_gating_noise_per_block():
    a = random((8, 5))
    gate = sa.topk_gating(da.from_array(a, chunks=(3, 5)), 2, noise_std=1.0,
                          rng=np.random.default_rng(2), capacity_factor=1.0)
    children = iter(np.random.default_rng(2).spawn(3))
    expected = [sa.topk_gating(a[i:i + 3], 2, noise_std=1.0, rng=next(children)).indices
                for i in (0, 3, 6)]
    indices, positions = compute(gate.indices, gate.positions)
    assert_same(indices, np.concatenate(expected))
    # The slots are those of the noisy choices.
    counts = {}
    for t, j in sorted(np.ndindex(8, 2), key=lambda tj: (tj[1], tj[0])):
        assert positions[t, j] == counts.get(indices[t, j], 0)
        counts[indices[t, j]] = positions[t, j] + 1


# ------------------------------------------------------------------ losses

INDEX_LOSSES = [
    (sa.cross_entropy, {"label_smoothing": 0.1}),
    (sa.nll_loss, {}),
    (sa.z_loss, {"a": 2.0, "b": 0.5}),
    (sa.focal_loss, {"gamma": 1.5}),
    (sa.comp_sum_loss, {"tau": 0.4}),
    (sa.generalized_cross_entropy, {"q": 0.5}),
    (sa.mae_loss, {}),
    (sa.multi_margin_loss, {"p": 2}),
]


def _loss_pair(func, logits, target, kwargs, chunks, target_chunks):
    dask_out = func(da.from_array(logits, chunks=chunks),
                    da.from_array(target, chunks=target_chunks), **kwargs)
    return compute(*(dask_out if isinstance(dask_out, tuple) else (dask_out,))), func(
        logits, target, **kwargs)


def _check_loss(got, expected, dtype, exact_none):
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        if exact_none:
            assert_same(g, e)
        else:       # block sums added up, the mean's factor applied afterwards
            assert_close(g, e, dtype, factor=16)


@pytest.mark.parametrize("func,kwargs", INDEX_LOSSES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_index_losses_match_numpy(func, kwargs, reduction, dtype):
    logits = random((11, 5), dtype)
    target = np.random.default_rng(1).integers(0, 5, 11)
    weight_name = "alpha" if func is sa.focal_loss else "weight"
    weight = np.array([0.5, 1.0, 2.0, 0.0, 1.5], dtype)
    extra = {} if func is sa.multi_margin_loss else {"ignore_index": 2}
    kw = dict(kwargs, reduction=reduction, return_grad=True, **{weight_name: weight}, **extra)
    for chunks in [(11, 5), (4, 5), ((1, 6, 4), (2, 3))]:
        got, expected = _loss_pair(func, logits, target, kw, chunks, 3)
        _check_loss(got, expected, dtype, exact_none=reduction == "none")
        # without return_grad and weights, with a NumPy target
        plain = dict(kwargs, reduction=reduction)
        out = func(da.from_array(logits, chunks=chunks), target, **plain)
        _check_loss(compute(out), func(logits, target, **plain), dtype, reduction == "none")


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_cross_entropy_class_axis_and_probability_targets(reduction):
    logits = random((3, 4, 5))
    target = np.random.default_rng(2).integers(0, 4, (3, 5))
    kw = {"axis": 1, "reduction": reduction, "return_grad": True}
    got, expected = _loss_pair(sa.cross_entropy, logits, target, kw, (2, 2, 3), (1, 2))
    _check_loss(got, expected, np.float64, reduction == "none")
    probs = sa.softmax(random((3, 4, 5), seed=3), axis=1)
    got, expected = _loss_pair(sa.cross_entropy, logits, probs, kw, (2, 2, 3), (3, 4, 2))
    _check_loss(got, expected, np.float64, reduction == "none")


def test_cross_entropy_mean_against_numpy_written_out():
    logits = random((13, 4))
    target = np.random.default_rng(4).integers(0, 4, 13)
    weight = np.array([1.0, 2.0, 0.5, 3.0])
    loss, grad = sa.cross_entropy(da.from_array(logits, chunks=(5, 2)),
                                  da.from_array(target, chunks=4), weight=weight, ignore_index=1,
                                  return_grad=True)
    kept = target != 1
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    w = weight[target] * kept
    expected = -(w * log_p[np.arange(13), target]).sum() / w.sum()
    onehot = np.eye(4)[target]
    expected_grad = w[:, None] * (np.exp(log_p) - onehot) / w.sum()
    got = compute(loss, grad)
    np.testing.assert_allclose(got[0], expected, rtol=1e-13)
    np.testing.assert_allclose(got[1], expected_grad, rtol=1e-12, atol=1e-16)


def test_mean_with_every_sample_ignored_is_nan_like_numpy():
    logits = random((4, 3))
    target = np.full(4, 7)
    loss, grad = sa.cross_entropy(da.from_array(logits, chunks=2), target, ignore_index=7,
                                  return_grad=True)
    ref_loss, ref_grad = sa.cross_entropy(logits, target, ignore_index=7, return_grad=True)
    got = compute(loss, grad)
    assert_same(got[0], ref_loss)
    assert_same(got[1], ref_grad)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_elementwise_losses_match_numpy(reduction):
    x = random((6, 7), np.float32)
    t = (np.random.default_rng(5).random((6, 7)) > 0.5).astype(np.float32)
    weight = np.linspace(0.5, 2.0, 7).astype(np.float32)
    kw = {"reduction": reduction, "return_grad": True}
    cases = [
        (sa.binary_cross_entropy_with_logits,
         dict(kw, weight=weight, pos_weight=weight[::-1].copy())),
        (sa.sigmoid_focal_loss, dict(kw, alpha=0.3, gamma=1.0)),
        (sa.logsumexp_penalty, dict(kw, weight=0.1)),
    ]
    for func, kwargs in cases:
        args = (x,) if func is sa.logsumexp_penalty else (x, t)
        dask_args = [da.from_array(a, chunks=(4, 3)) for a in args]
        got = compute(*func(*dask_args, **kwargs))
        _check_loss(got, func(*args, **kwargs), np.float32, reduction == "none")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_numpy(reduction, from_logits, log_target):
    x = random((5, 6))
    inputs = x if from_logits else sa.log_softmax(x)
    target = sa.softmax(random((5, 6), seed=8))
    if log_target:
        target = np.log(target)
    kw = {"reduction": reduction, "from_logits": from_logits, "log_target": log_target,
          "return_grad": True}
    got, expected = _loss_pair(sa.kl_div, inputs, target, kw, (2, 6), (3, 6))
    _check_loss(got, expected, np.float64, reduction == "none")


def test_losses_on_integer_logits_and_no_samples():
    logits = np.arange(12).reshape(4, 3) % 4
    target = np.array([0, 2, 1, 1])
    got, expected = _loss_pair(sa.cross_entropy, logits, target, {}, (2, 3), 2)
    _check_loss(got, expected, np.float64, False)
    empty = np.zeros((0, 3), np.float32)
    for reduction in ["none", "sum", "mean"]:
        got, expected = _loss_pair(sa.cross_entropy, empty, np.zeros(0, np.int64),
                                   {"reduction": reduction, "return_grad": True}, 2, 2)
        _check_loss(got, expected, np.float32, True)


def test_bad_target_values_raise_at_compute_time():
    loss = sa.cross_entropy(da.from_array(random((4, 3)), chunks=2),
                            da.from_array(np.array([0, 1, 5, 0])))
    with pytest.raises(ValueError, match=re.escape("target has class indices outside [0, 3)")):
        loss.compute(scheduler="sync")


# ------------------------------------------------------------------ linear_cross_entropy

@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_cross_entropy_matches_numpy(reduction, with_bias):
    rng = np.random.default_rng(6)
    emb, cls = rng.standard_normal((10, 4)), rng.standard_normal((7, 4))
    bias = rng.standard_normal(7) if with_bias else None
    target = rng.integers(0, 7, 10)
    target[3] = -100
    kw = {"bias": bias, "ignore_index": -100, "label_smoothing": 0.05, "reduction": reduction,
          "return_grad": True}
    loss, grads = sa.linear_cross_entropy(da.from_array(emb, chunks=(3, 2)),
                                          da.from_array(cls, chunks=(4, 4)),
                                          da.from_array(target, 4), **kw)
    ref_loss, ref_grads = sa.linear_cross_entropy(emb, cls, target, **kw)
    got_loss, *got_grads = compute(loss, *grads)
    assert len(got_grads) == len(ref_grads)
    _check_loss((got_loss,), ref_loss, np.float64, reduction == "none")
    for g, e in zip(got_grads, ref_grads):
        assert g.shape == e.shape
        assert_close(g, e, factor=64)
    plain = {"ignore_index": -100, "reduction": reduction}
    got = compute(sa.linear_cross_entropy(da.from_array(emb, chunks=5), cls, target, **plain))
    _check_loss(got, sa.linear_cross_entropy(emb, cls, target, **plain), np.float64, False)


# ------------------------------------------------------------------ boxes

def random_boxes(n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, (n, 2))
    wh = rng.uniform(1, 20, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_ops_match_numpy(dtype):
    boxes = random_boxes(11, dtype=dtype)
    for chunks in [(11, 4), (3, 2), ((5, 6), 4)]:
        x = da.from_array(boxes, chunks=chunks)
        assert_same(*compute(sa.box_area(x)), sa.box_area(boxes))
        assert_same(*compute(sa.clip_boxes_to_image(x, (0.5, 0.75))),
                    sa.clip_boxes_to_image(boxes, (0.5, 0.75)))
        assert_same(*compute(sa.remove_small_boxes(x, 0.1)), sa.remove_small_boxes(boxes, 0.1))
        y = da.from_array(boxes[::-1].copy(), chunks=4)       # chunked unlike x: rechunked to it
        for fn in (sa.generalized_box_iou_loss, sa.distance_box_iou_loss, sa.complete_box_iou_loss):
            for reduction in ("none", "mean", "sum"):
                loss, (g1, g2) = fn(x, y, reduction, return_grad=True)
                want, (w1, w2) = fn(boxes, boxes[::-1], reduction, return_grad=True)
                got = compute(loss, g1, g2)
                np.testing.assert_allclose(got[0], want, rtol=1e-6 if dtype == np.float32 else 1e-14)
                assert_same(got[1], w1)
                assert_same(got[2], w2)
                assert_same(*compute(fn(x, y, reduction)), compute(loss)[0])
            empty = da.from_array(boxes[:0], chunks=(3, 4))
            assert_same(*compute(fn(empty, empty, "mean")), fn(boxes[:0], boxes[:0], "mean"))
        for fmts in [("xyxy", "cxcywh"), ("xywh", "xyxy"), ("xyxy", "xyxy")]:
            assert_same(*compute(sa.box_convert(x, *fmts)), sa.box_convert(boxes, *fmts))
        other = random_boxes(9, seed=1, dtype=dtype)
        iou = sa.box_iou(x, da.from_array(other, chunks=4))
        assert iou.numblocks == (x.numblocks[0], 3)
        assert_same(*compute(iou), sa.box_iou(boxes, other))
        for fn in (sa.generalized_box_iou, sa.distance_box_iou, sa.complete_box_iou):
            got = fn(x, da.from_array(other, chunks=4))
            assert got.numblocks == (x.numblocks[0], 3)
            assert_same(*compute(got), fn(boxes, other))
    batch = np.stack([boxes[:10].reshape(2, 5, 4)] * 2)
    got = compute(sa.box_area(da.from_array(batch, chunks=(1, 2, 3, 2))))
    assert_same(*got, sa.box_area(batch))


def test_nms_family_returns_unknown_lengths_and_numpy_values():
    boxes = random_boxes(40, seed=2)
    scores = np.random.default_rng(3).random(40)
    labels = np.random.default_rng(4).integers(0, 3, 40)
    x, s, lab = (da.from_array(a, chunks=7) if a.ndim == 1 else da.from_array(a, chunks=(7, 2))
                 for a in (boxes, scores, labels))
    kept = sa.nms(x, s, 0.3, max_output=12)
    assert len(kept.shape) == 1 and np.isnan(kept.shape[0])
    assert_same(*compute(kept), sa.nms(boxes, scores, 0.3, max_output=12))
    assert_same(*compute(sa.batched_nms(x, s, lab, 0.3)),
                sa.batched_nms(boxes, scores, labels, 0.3))
    for got, ref in [(sa.soft_nms(x, s, method="gaussian"),
                      sa.soft_nms(boxes, scores, method="gaussian")),
                     (sa.batched_soft_nms(x, s, lab), sa.batched_soft_nms(boxes, scores, labels))]:
        computed = compute(*got)
        assert_same(computed[0], ref[0])
        assert_same(computed[1], ref[1])


def test_boxes_of_unknown_count_from_boolean_indexing():
    boxes = random_boxes(20, seed=6)
    scores = np.random.default_rng(7).random(20)
    keep = scores > 0.3
    mask = da.from_array(keep, chunks=6)
    x = da.from_array(boxes, chunks=(6, 4))[mask]
    s = da.from_array(scores, chunks=6)[mask]
    assert np.isnan(x.shape[0])
    assert_same(*compute(sa.box_area(x)), sa.box_area(boxes[keep]))
    assert_same(*compute(sa.nms(x, s, 0.5)), sa.nms(boxes[keep], scores[keep], 0.5))
    with pytest.raises(ValueError, match="iou_threshold"):
        sa.nms(x, s, -0.5)


# ------------------------------------------------------------------ validation at call time

def _bad_calls(x, y):
    """(function, args, kwargs) that the NumPy route refuses."""
    boxes = np.zeros((3, 4))
    return [
        (sa.softmax, (x,), {"temperature": -1.0}),
        (sa.softmax, (x,), {"axis": 2}),
        (sa.log_softmax, (x,), {"where": np.ones(3, bool)}),
        (sa.logsumexp, (x,), {"keepdims": 1}),
        (sa.logsumexp, (x,), {"b": np.ones((2, 2))}),
        (sa.topk, (x,), {"k": 6}),
        (sa.cross_entropy, (x, y[:3]), {}),
        (sa.cross_entropy, (x, y), {"weight": np.ones(4)}),
        (sa.nll_loss, (x, y), {"weight": -np.ones(5)}),
        (sa.cross_entropy, (x, y), {"reduction": "avg"}),
        (sa.cross_entropy, (x, y.astype(np.float64)), {}),
        (sa.focal_loss, (x, y), {"gamma": -1.0}),
        (sa.kl_div, (x, x[:2]), {}),
        (sa.binary_cross_entropy_with_logits, (x, x), {"pos_weight": np.ones(4)}),
        (sa.linear_cross_entropy, (x, x[:, :3], y), {}),
        (sa.topk_gating, (x,), {"k": 9}),
        (sa.gumbel_softmax, (x,), {"tau": 0.0}),
        (sa.box_iou, (boxes, x), {}),
        (sa.nms, (boxes, np.ones(2)), {"iou_threshold": 0.5}),
        (sa.soft_nms, (boxes, np.ones(3)), {"method": "cubic"}),
    ]


def test_bad_arguments_raise_the_numpy_errors_at_call_time(no_compute):
    x = random((4, 5))
    y = np.array([0, 1, 2, 3])
    for (func, args, kwargs), (_, dask_args, _) in zip(
            _bad_calls(x, y), _bad_calls(da.from_array(x, chunks=2), da.from_array(y, chunks=2))):
        with pytest.raises((TypeError, ValueError)) as numpy_error:
            func(*args, **kwargs)
        with pytest.raises(numpy_error.type, match=re.escape(str(numpy_error.value))):
            func(*dask_args, **kwargs)


# ------------------------------------------------------------------ a distributed cluster

def test_distributed_cluster(client):
    rng = np.random.default_rng(9)
    a = random((40, 30), np.float32)
    target = rng.integers(0, 30, 40)
    boxes, scores = random_boxes(30, seed=5), rng.random(30)
    x = da.from_array(a, chunks=(10, 12))
    emb, cls = rng.standard_normal((24, 6)), rng.standard_normal((9, 6))
    lce_target = rng.integers(0, 9, 24)
    lazy = {
        "softmax": sa.softmax(x, axis=0),
        "logsumexp": sa.logsumexp(x, axis=None),
        "cross_entropy": sa.cross_entropy(x, da.from_array(target, chunks=10), return_grad=True),
        "topk": sa.topk(x, 4),
        "box_iou": sa.box_iou(da.from_array(boxes, chunks=(8, 4)),
                              da.from_array(boxes, chunks=(12, 4))),
        "nms": sa.nms(da.from_array(boxes, chunks=(8, 4)), da.from_array(scores, chunks=8), 0.4),
        "linear_cross_entropy": sa.linear_cross_entropy(
            da.from_array(emb, chunks=(8, 6)), cls, da.from_array(lce_target, chunks=8),
            return_grad=True),
        "gumbel_softmax": sa.gumbel_softmax(x, rng=np.random.default_rng(1)),
    }
    got = client.compute(lazy, sync=True)
    # Blocks of 12 columns take the transposed-copy layout, the whole array
    # the column kernel: the same arithmetic up to rounding.
    assert_close(got["softmax"], sa.softmax(a, axis=0), np.float32, factor=4)
    assert_close(got["logsumexp"], sa.logsumexp(a, axis=None), np.float32, factor=4)
    ref = sa.cross_entropy(a, target, return_grad=True)
    _check_loss(got["cross_entropy"], ref, np.float32, False)
    for g, e in zip(got["topk"], sa.topk(a, 4)):
        assert_same(g, e)
    assert_same(got["box_iou"], sa.box_iou(boxes, boxes))
    assert_same(got["nms"], sa.nms(boxes, scores, 0.4))
    ref_loss, ref_grads = sa.linear_cross_entropy(emb, cls, lce_target, return_grad=True)
    assert_close(got["linear_cross_entropy"][0], ref_loss, factor=16)
    for g, e in zip(got["linear_cross_entropy"][1], ref_grads):
        assert_close(g, e, factor=64)
    assert_same(got["gumbel_softmax"], per_block_reference(sa.gumbel_softmax, a, (10, 30), 1))
