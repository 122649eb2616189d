"""linear_cross_entropy through every backend, against torch autograd in
float64 and a plain NumPy reference that forms the whole logits matrix."""
import concurrent.futures
import tracemalloc

import numpy as np
import pytest
import scipy.special

import softarray as sa
from softarray import _linear_cross_entropy as lce

try:
    import torch
except ImportError:  # torch is an optional peer
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
REDUCTIONS = ["mean", "sum", "none"]


# ---------------------------------------------------------------- references

def numpy_reference(emb, cls, target, bias=None, ignore_index=None, eps=0.0, reduction="mean"):
    """float64 loss and gradients from the full logits, written from the
    formulas: loss_n = -(1 - eps) log p_{n, y_n} - eps mean_c log p_{n, c},
    G = scale (p - (1 - eps) onehot - eps / V)."""
    emb, cls = emb.astype(np.float64), cls.astype(np.float64)
    z = emb @ cls.T + (0.0 if bias is None else bias.astype(np.float64))
    n, v = z.shape
    valid = np.ones(n, bool) if ignore_index is None else target != ignore_index
    y = np.where(valid, target, 0)
    logp = z - scipy.special.logsumexp(z, axis=1, keepdims=True)
    rows = np.where(valid, -(1 - eps) * logp[np.arange(n), y] - eps * logp.mean(axis=1), 0.0)
    n_valid = int(valid.sum())
    if reduction == "none":
        loss, scale = rows, 1.0
    elif reduction == "sum":
        loss, scale = rows.sum(), 1.0
    else:
        loss = rows.sum() / n_valid if n_valid else np.nan
        scale = 1.0 / n_valid if n_valid else 0.0
    onehot = np.zeros_like(z)
    onehot[np.arange(n), y] = 1.0
    g = scale * (np.exp(logp) - (1 - eps) * onehot - eps / v) * valid[:, None]
    grads = (g @ cls, g.T @ emb) + ((g.sum(axis=0),) if bias is not None else ())
    return loss, grads


def torch_reference(emb, cls, target, bias=None, ignore_index=None, eps=0.0, reduction="mean"):
    """torch.nn.functional.cross_entropy on the full logits, float64 autograd."""
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
              for a in (emb, cls) + (() if bias is None else (bias,))]
    z = leaves[0] @ leaves[1].T + (0.0 if bias is None else leaves[2])
    loss = torch.nn.functional.cross_entropy(
        z, torch.tensor(target), reduction=reduction, label_smoothing=eps,
        ignore_index=-100 if ignore_index is None else ignore_index,
    )
    loss.sum().backward()
    return loss.detach().numpy(), tuple(t.grad.numpy() for t in leaves)


def problem(n=12, d=5, v=40, dtype=np.float64, seed=0, with_bias=True, ignored=()):
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, d)).astype(dtype)
    cls = rng.standard_normal((v, d)).astype(dtype)
    bias = rng.standard_normal(v).astype(dtype) if with_bias else None
    target = rng.integers(0, v, n)
    target[list(ignored)] = -100
    return emb, cls, target, bias


def run(backend, emb, cls, target, bias=None, **kwargs):
    """Call through a backend; results back as NumPy."""
    out = sa.linear_cross_entropy(
        backend.asarray(emb), backend.asarray(cls), backend.asarray(target),
        bias=None if bias is None else backend.asarray(bias), **kwargs,
    )
    if not kwargs.get("return_grad"):
        return backend.to_numpy(out)
    loss, grads = out
    return backend.to_numpy(loss), tuple(backend.to_numpy(g) for g in grads)


def assert_close(got, want, dtype):
    """float64: agreement to rounding; float32 inputs are compared with the
    float64 result on the same values, relative to the largest entry."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13 * np.abs(want).max(initial=1))
    else:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * np.abs(want).max(initial=1))


def assert_matches(result, reference, dtype):
    (loss, grads), (want_loss, want_grads) = result, reference
    assert len(grads) == len(want_grads)
    assert_close(loss, want_loss, dtype)
    for g, w in zip(grads, want_grads):
        assert g.shape == w.shape and g.dtype == dtype
        assert_close(g, w, dtype)


# ----------------------------------------------------- values vs references

@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
# 8 divides V = 40, 13 does not, 1000 > V; None is the default (one chunk here)
@pytest.mark.parametrize("chunk_size", [None, 8, 13, 1000])
def test_matches_torch_autograd(backend, dtype, reduction, with_bias, eps, chunk_size):
    emb, cls, target, bias = problem(dtype=dtype, with_bias=with_bias, ignored=(2, 7))
    got = run(backend, emb, cls, target, bias, ignore_index=-100, label_smoothing=eps,
              reduction=reduction, chunk_size=chunk_size, return_grad=True)
    want = torch_reference(emb, cls, target, bias, -100, eps, reduction)
    assert_matches(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("chunk_size", [None, 1, 7, 40])
def test_matches_numpy_reference(backend, dtype, reduction, chunk_size):
    emb, cls, target, bias = problem(n=9, d=3, v=40, dtype=dtype, ignored=(0,))
    got = run(backend, emb, cls, target, bias, ignore_index=-100, label_smoothing=0.25,
              reduction=reduction, chunk_size=chunk_size, return_grad=True)
    assert_matches(got, numpy_reference(emb, cls, target, bias, -100, 0.25, reduction), dtype)


@pytest.mark.parametrize("tile_bytes", [64, 1000, 4096])
@pytest.mark.parametrize("chunk_size", [None, 16, 50, 64])
def test_many_tiles(monkeypatch, tile_bytes, chunk_size):
    """A small tile budget forces several row blocks, each with one chunk
    (the backward reuses the forward's exponentials) or several (the
    backward recomputes the logits)."""
    monkeypatch.setattr(lce, "TILE_BYTES", tile_bytes)
    emb, cls, target, bias = problem(n=70, d=6, v=64, ignored=(5, 69))
    rows, chunk = lce.tile_shape(70, 64, 8, chunk_size, want_grad=True)
    assert -(-70 // rows) * -(-64 // chunk) > 1
    want = numpy_reference(emb, cls, target, bias, -100, 0.05)
    got = sa.linear_cross_entropy(emb, cls, target, bias=bias, ignore_index=-100,
                                  label_smoothing=0.05, chunk_size=chunk_size, return_grad=True)
    assert_matches(got, want, np.float64)
    loss = sa.linear_cross_entropy(emb, cls, target, bias=bias, ignore_index=-100,
                                   label_smoothing=0.05, chunk_size=chunk_size)
    assert_close(loss, want[0], np.float64)


def test_larger_float32_problem_against_float64():
    """Rows long enough for the float-block sums, chunks that do not divide V."""
    emb, cls, target, bias = problem(n=64, d=32, v=5000, dtype=np.float32, seed=1)
    want = numpy_reference(emb, cls, target, bias)
    for chunk_size in (None, 999):
        got = sa.linear_cross_entropy(emb, cls, target, bias=bias, chunk_size=chunk_size,
                                      return_grad=True)
        assert_matches(got, want, np.float32)


def test_ignore_index_inside_the_class_range():
    """ignore_index may be a valid class: samples of that class are ignored."""
    emb, cls, target, bias = problem(v=6, with_bias=False)
    target[:4] = 3
    got = sa.linear_cross_entropy(emb, cls, target, ignore_index=3, return_grad=True)
    assert_matches(got, numpy_reference(emb, cls, target, None, 3), np.float64)


def test_unsigned_target_with_negative_ignore_index(backend):
    """An ignore_index outside the target's dtype ignores nothing."""
    emb, cls, target, bias = problem(v=200)
    got = run(backend, emb, cls, target.astype(np.uint8), bias, ignore_index=-100,
              return_grad=True)
    assert_matches(got, numpy_reference(emb, cls, target, bias), np.float64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_every_sample_ignored(backend, reduction):
    """As torch: the mean is NaN, the sum 0, and every gradient 0."""
    emb, cls, target, bias = problem(n=4, ignored=range(4))
    loss, grads = run(backend, emb, cls, target, bias, ignore_index=-100, reduction=reduction,
                      return_grad=True)
    want = {"mean": np.nan, "sum": 0.0, "none": np.zeros(4)}[reduction]
    np.testing.assert_array_equal(loss, want)
    for g in grads:
        np.testing.assert_array_equal(g, 0.0)


def test_no_samples(backend):
    emb, cls, target, bias = problem(n=0)
    loss, (d_emb, d_cls, d_bias) = run(backend, emb, cls, target, bias, reduction="sum",
                                       return_grad=True)
    assert loss == 0.0 and d_emb.shape == (0, 5)
    np.testing.assert_array_equal(d_cls, np.zeros_like(cls))
    np.testing.assert_array_equal(d_bias, np.zeros_like(bias))
    assert run(backend, emb, cls, target, bias, reduction="none").shape == (0,)
    assert np.isnan(run(backend, emb, cls, target, bias))


def test_no_features():
    """D = 0: the logits are the bias alone."""
    emb, cls, target, bias = problem(n=3, d=0, v=4)
    got = sa.linear_cross_entropy(emb, cls, target, bias=bias, return_grad=True)
    assert_matches(got, numpy_reference(emb, cls, target, bias), np.float64)


@needs_torch
# chunks of 8 (row-major tiles, several chunks) and whole rows (V = 20: a
# class-major tile)
@pytest.mark.parametrize("chunk_size", [8, None])
def test_non_finite_logits_as_torch(backend, chunk_size):
    """-inf in the bias masks classes out (the loss stays finite); a NaN
    embedding, or a +inf logit, gives a NaN loss for that row, as torch, and
    a NaN gradient row."""
    emb, cls, target, bias = problem(n=5, v=20, with_bias=True)
    bias[:8] = -np.inf                  # the whole first chunk of 8 is masked out
    target[:] = 10
    emb[1, 0] = np.nan
    bias_inf = bias.copy()
    bias_inf[12] = np.inf
    for b in (bias, bias_inf):
        with np.errstate(invalid="ignore"):     # array-api-strict computes with NumPy
            loss, grads = run(backend, emb, cls, target, b, reduction="none",
                              chunk_size=chunk_size, return_grad=True)
        want, _ = torch_reference(emb, cls, target, b, reduction="none")
        np.testing.assert_allclose(loss, want, rtol=1e-12)
        finite_rows = np.isfinite(want)
        assert np.isnan(grads[0][~finite_rows]).all()
        assert np.isfinite(grads[0][finite_rows]).all()
    assert np.isnan(loss).all()


def test_inputs_are_not_modified():
    emb, cls, target, bias = problem(ignored=(1,))
    copies = [a.copy() for a in (emb, cls, target, bias)]
    sa.linear_cross_entropy(emb, cls, target, bias=bias, ignore_index=-100, chunk_size=7,
                            return_grad=True)
    for a, c in zip((emb, cls, target, bias), copies):
        np.testing.assert_array_equal(a, c)


def test_strided_and_foreign_layouts():
    """Views with a row stride wider than the row, Fortran order, reversed
    rows and non-native byte order all give the same result."""
    emb, cls, target, bias = problem(n=10, d=4, v=30)
    want = numpy_reference(emb, cls, target, bias)
    wide = np.zeros((10, 9))
    wide[:, 2:6] = emb
    layouts = [
        (wide[:, 2:6], cls, bias),
        (np.asfortranarray(emb), np.asfortranarray(cls), bias),
        (emb[::-1].copy()[::-1], cls[::-1].copy()[::-1], bias[::-1].copy()[::-1]),
        (emb.astype(">f8"), cls.astype(">f8"), bias.astype(">f8")),
        (emb, np.repeat(cls, 2, axis=1)[:, ::2], bias),
    ]
    for e, c, b in layouts:
        got = sa.linear_cross_entropy(e, c, target, bias=b, return_grad=True)
        assert_matches(got, want, np.float64)


def test_read_only_inputs():
    emb, cls, target, bias = problem()
    for a in (emb, cls, target, bias):
        a.flags.writeable = False
    got = sa.linear_cross_entropy(emb, cls, target, bias=bias, return_grad=True)
    assert_matches(got, numpy_reference(emb, cls, target, bias), np.float64)


def test_thread_counts_agree():
    emb, cls, target, bias = problem(n=300, d=16, v=700, dtype=np.float32)
    results = []
    for n in (1, 2):
        with sa.threads(n):
            results.append(sa.linear_cross_entropy(emb, cls, target, bias=bias,
                                                   return_grad=True))
    assert_matches(results[1], results[0], np.float32)


# V <= 64 with whole rows: class-major tiles; V = 65: row-major ones
@pytest.mark.parametrize("v", [1, 3, 20, 64, 65])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_narrow_vocabularies_in_row_teams(monkeypatch, v, dtype, with_bias):
    """Many small row blocks (16 rows, or 64 entries), shared out as row
    teams at two threads; then one block of all 600 rows, which the row
    loops take in strips of 256."""
    emb, cls, target, bias = problem(n=600, d=7, v=v, dtype=dtype, with_bias=with_bias, seed=v,
                                     ignored=(0, 299, 599))
    want = numpy_reference(emb, cls, target, bias, -100, 0.1, "sum")
    for rows, entries in ((16, 64), (lce.GRAD_ROWS, 10**6)):
        monkeypatch.setattr(lce, "GRAD_ROWS", rows)
        monkeypatch.setattr(lce, "SMALL_TILE_ENTRIES", entries)
        assert lce.tile_shape(600, v, 8, None, True)[0] == (600 if entries > 600 * v else
                                                             max(16, 64 // v))
        for threads in (1, 2):
            with sa.threads(threads):
                got = sa.linear_cross_entropy(emb, cls, target, bias=bias, ignore_index=-100,
                                              label_smoothing=0.1, reduction="sum",
                                              return_grad=True)
            assert_matches(got, want, dtype)


def test_row_teams_need_a_block_each_and_small_partial_sums():
    assert lce.row_teams(n=600, v=20, d=7, itemsize=8, rows=300, want_grad=True, n_threads=2) == 2
    assert lce.row_teams(n=600, v=20, d=7, itemsize=8, rows=600, want_grad=True, n_threads=2) == 1
    assert lce.row_teams(n=600, v=20, d=7, itemsize=8, rows=10, want_grad=True, n_threads=1) == 1
    # a (V, D + 1) partial sum per extra team must fit in TILE_BYTES
    big_v = lce.TILE_BYTES // (8 * 8) + 1
    assert lce.row_teams(n=600, v=big_v, d=7, itemsize=8, rows=10, want_grad=True,
                         n_threads=2) == 1
    assert lce.row_teams(n=600, v=big_v, d=7, itemsize=8, rows=10, want_grad=False,
                         n_threads=2) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("v", [2, 20, 100])
def test_weighted_loss_and_classifier_grads(dtype, eps, v):
    """SoftmaxClassifier's evaluation: the sample-weighted sum of the losses
    and its gradients with respect to the classifier and bias, against the
    formulas written plainly on the whole logits."""
    emb, cls, target, bias = problem(n=700, d=6, v=v, dtype=dtype, seed=3)
    weights = np.random.default_rng(4).uniform(0.0, 3.0, 700)
    z = emb.astype(np.float64) @ cls.astype(np.float64).T + bias
    logp = z - scipy.special.logsumexp(z, axis=1, keepdims=True)
    rows = -(1 - eps) * logp[np.arange(700), target] - eps * logp.mean(axis=1)
    onehot = np.eye(v)[target]
    g = weights[:, None] * (np.exp(logp) - (1 - eps) * onehot - eps / v)
    for threads in (1, 2):
        with sa.threads(threads):
            loss, d_cls, d_bias = lce.weighted_loss_and_classifier_grads(
                emb, cls, bias, target.astype(np.intp), weights, eps)
        assert_close(loss, weights @ rows, dtype)
        assert d_cls.dtype == dtype and d_bias.dtype == dtype
        assert_close(d_cls, g.T @ emb.astype(np.float64), dtype)
        assert_close(d_bias, g.sum(axis=0), dtype)
    unweighted = lce.weighted_loss_and_classifier_grads(emb, cls, None, target.astype(np.intp),
                                                         None, eps)
    want = numpy_reference(emb, cls, target, None, None, eps, "sum")
    assert unweighted[2] is None
    assert_close(unweighted[0], want[0], dtype)
    assert_close(unweighted[1], want[1][1], dtype)


def test_blas_threads_restored_after_concurrent_calls():
    """The kernel limits BLAS to one thread while it runs; calls from several
    Python threads at once still leave the original limits behind."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
              if lib["user_api"] == "blas"]
    emb, cls, target, bias = problem(n=256, d=64, v=3000, dtype=np.float32)
    want = sa.linear_cross_entropy(emb, cls, target, bias=bias, return_grad=True)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(sa.linear_cross_entropy, emb, cls, target, bias=bias,
                            return_grad=True) for _ in range(8)]
        for run_ in runs:
            assert_matches(run_.result(), want, np.float32)
    after = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
             if lib["user_api"] == "blas"]
    assert after == before


def test_returns_the_callers_array_type(backend):
    emb, cls, target, bias = problem(dtype=np.float32)
    args = [backend.asarray(a) for a in (emb, cls, target)]
    loss, grads = sa.linear_cross_entropy(*args, bias=backend.asarray(bias), return_grad=True)
    assert type(loss) is type(args[0]) and loss.shape == ()
    assert all(type(g) is type(args[0]) and g.dtype == args[0].dtype for g in grads)


@needs_torch
def test_torch_autograd_through_the_adapter():
    """Tensors that require grad go through the autograd adapter (compiled
    forward, returned gradients), and backward() gives torch's gradients."""
    emb, cls, target, bias = problem(ignored=(3,))
    leaves = [torch.tensor(a, requires_grad=True) for a in (emb, cls, bias)]
    loss = sa.linear_cross_entropy(leaves[0], leaves[1], torch.tensor(target),
                                   bias=leaves[2], ignore_index=-100, label_smoothing=0.1,
                                   chunk_size=9)
    loss.backward()
    got = (loss.detach().numpy(), tuple(t.grad.numpy() for t in leaves))
    assert_matches(got, torch_reference(emb, cls, target, bias, -100, 0.1), np.float64)


def test_list_inputs_become_numpy():
    loss = sa.linear_cross_entropy([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], [0, 1])
    assert isinstance(loss, np.ndarray)
    np.testing.assert_allclose(loss, np.log1p(np.exp(-1.0)))


# ---------------------------------------------------------------- memory

def test_extra_memory_is_one_tile_not_the_logits(monkeypatch):
    """With a 256 KiB tile the call's extra NumPy memory stays near the tile
    plus O(N) state, while the logits would take 16 MiB."""
    monkeypatch.setattr(lce, "TILE_BYTES", 256 * 1024)
    emb, cls, target, bias = problem(n=512, d=16, v=8192, dtype=np.float32, with_bias=True)
    for return_grad in (False, True):
        returned = (emb.nbytes + cls.nbytes + bias.nbytes) if return_grad else 0
        tracemalloc.start()
        try:
            sa.linear_cross_entropy(emb, cls, target, bias=bias, return_grad=return_grad)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        state = 512 * (8 * 4 + 8 + 8 + 8)     # row state, row losses, targets, slack
        assert peak - returned < 256 * 1024 + state + 64 * 1024, peak - returned


@pytest.mark.parametrize(
    "n, v, itemsize, chunk_size, want_grad, want",
    [
        (8192, 65536, 4, None, True, (128, 65536)),     # whole vocabulary: no recompute
        (8192, 65536, 8, None, True, (64, 65536)),
        (8192, 262144, 4, None, True, (64, 131072)),    # 64 rows do not fit: chunks of V
        (8192, 1000, 4, None, True, (256, 1000)),       # small vocabulary: up to 256 rows
        (10, 65536, 4, None, True, (10, 65536)),        # few rows: all of them
        (8192, 65536, 4, 4096, True, (256, 4096)),      # chunk_size given
        (8192, 100, 4, 1000, True, (327, 100)),         # chunk_size above V; narrow: taller
        (200_000, 20, 8, None, True, (1638, 20)),       # narrow vocabulary: 32768-entry tile
        (8192, 65536, 4, None, False, (1024, 8192)),    # forward: taller tiles
        (8192, 1000, 4, None, False, (1024, 1000)),
        (10, 65536, 4, None, False, (10, 65536)),
        (8192, 65536, 4, 512, False, (1024, 512)),
    ],
)
def test_tile_shape(n, v, itemsize, chunk_size, want_grad, want):
    assert lce.tile_shape(n, v, itemsize, chunk_size, want_grad) == want


# ---------------------------------------------------------------- bad input

def _bad_cases():
    emb, cls, target, bias = problem(n=4, d=3, v=5)
    ok = dict(embeddings=emb, classifier=cls, target=target)
    return [
        (dict(ok, embeddings=emb[0]), {}, ValueError, "embeddings"),
        (dict(ok, embeddings=emb.astype(int)), {}, TypeError, "embeddings"),
        (dict(ok, embeddings="abc"), {}, TypeError, "embeddings"),
        (dict(ok, classifier=cls[:, :2]), {}, ValueError, "classifier"),
        (dict(ok, classifier=cls[:0]), {}, ValueError, "classifier"),
        (dict(ok, classifier=cls.astype(np.float32)), {}, TypeError, "classifier"),
        (ok, dict(bias=bias[:4]), ValueError, "bias"),
        (ok, dict(bias=bias.astype(np.float32)), TypeError, "bias"),
        (dict(ok, target=target[:3]), {}, ValueError, "target"),
        (dict(ok, target=target.astype(float)), {}, TypeError, "target"),
        (dict(ok, target=target > 0), {}, TypeError, "target"),
        (dict(ok, target=np.array([0, 1, 5, 2])), {}, ValueError, "target"),
        (dict(ok, target=np.array([0, 1, -1, 2])), dict(ignore_index=-100), ValueError, "target"),
        (ok, dict(ignore_index=True), TypeError, "ignore_index"),
        (ok, dict(ignore_index=1.0), TypeError, "ignore_index"),
        (ok, dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (ok, dict(label_smoothing=1.5), ValueError, "label_smoothing"),
        (ok, dict(label_smoothing=float("nan")), ValueError, "label_smoothing"),
        (ok, dict(label_smoothing="0.1"), TypeError, "label_smoothing"),
        (ok, dict(reduction="avg"), ValueError, "reduction"),
        (ok, dict(reduction=None), ValueError, "reduction"),
        (ok, dict(chunk_size=0), ValueError, "chunk_size"),
        (ok, dict(chunk_size=2.0), TypeError, "chunk_size"),
        (ok, dict(chunk_size=True), TypeError, "chunk_size"),
        (ok, dict(return_grad="yes"), TypeError, "return_grad"),
    ]


@pytest.mark.parametrize("args, kwargs, error, name", _bad_cases())
def test_bad_input_names_the_argument(args, kwargs, error, name):
    with pytest.raises(error, match=name):
        sa.linear_cross_entropy(args["embeddings"], args["classifier"], args["target"], **kwargs)


@needs_torch
def test_mixed_libraries_are_rejected():
    emb, cls, target, _ = problem()
    with pytest.raises(TypeError, match="classifier"):
        sa.linear_cross_entropy(torch.tensor(emb), cls, target)
