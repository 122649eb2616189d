"""softarray.sample: tokens drawn from filtered softmax distributions.

The reference is the filtered distribution written plainly in this file in
float64 (a full sort of the row, Hugging Face's order of filters); draws
are checked against it with a chi-square test, and the compiled path, the
portable path and torch tensors give the same tokens for the same
generator."""
import numpy as np
import pytest
import scipy.stats

import softarray as sa

LOGITS = np.log(np.array([0.22, 0.18, 0.15, 0.12, 0.1, 0.08, 0.06, 0.04, 0.03, 0.015, 0.004, 0.001]))
FILTERS = [
    {},
    {"temperature": 0.6},
    {"top_k": 4},
    {"top_p": 0.75},
    {"min_p": 0.3},
    {"top_k": 6, "top_p": 0.6, "temperature": 1.7},
    {"top_k": 8, "min_p": 0.2, "temperature": 0.8},
    {"top_p": 0.93, "min_p": 0.05},
]


def filtered_distribution(logits, temperature=1.0, top_k=None, top_p=None, min_p=None):
    """The probabilities sample draws from, in float64: top_k, then top_p
    renormalized over what top_k kept, then min_p against the largest."""
    z = np.asarray(logits, np.float64) / temperature
    order = np.argsort(-z, kind="stable")
    p = np.exp(z[order] - z[order][0])
    keep = np.ones(z.size, bool)
    if top_k is not None:
        keep[top_k:] = False
    if top_p is not None:
        kept = np.where(keep, p, 0.0)
        keep &= np.cumsum(kept) - kept < top_p * kept.sum()
    if min_p is not None:
        keep &= p >= min_p
    out = np.zeros(z.size)
    out[order] = np.where(keep, p, 0.0)
    return out / out.sum()


def library_logits(library, x):
    if library == "numpy":
        return x
    if library == "torch":
        return pytest.importorskip("torch").from_numpy(x)
    return pytest.importorskip("array_api_strict").asarray(x)


@pytest.mark.parametrize("library", ["numpy", "torch", "array_api_strict"])
@pytest.mark.parametrize("filters", FILTERS, ids=str)
def test_draws_follow_the_filtered_softmax(library, filters):
    rows = 20000
    x = np.tile(LOGITS.astype(np.float32), (rows, 1))
    tokens = np.asarray(sa.sample(library_logits(library, x), rng=np.random.default_rng(7), **filters))
    assert tokens.shape == (rows,)
    want = filtered_distribution(LOGITS.astype(np.float32), **filters)
    counts = np.bincount(tokens, minlength=LOGITS.size)
    assert np.all(counts[want == 0] == 0)          # filtered tokens are never drawn
    kept = want > 0
    if kept.sum() > 1:
        result = scipy.stats.chisquare(counts[kept], rows * want[kept])
        assert result.pvalue > 1e-4, (counts, rows * want)


@pytest.mark.parametrize("filters", FILTERS + [{"top_p": 0.9, "temperature": 3.0}], ids=str)
def test_every_path_draws_the_same_tokens_for_the_same_generator(filters):
    """Compiled (NumPy, torch CPU tensors) and portable (array-api-strict)
    paths filter alike and invert over the survivors in vocabulary order."""
    x = (np.random.default_rng(3).standard_normal((6, 5000)) * 2).astype(np.float32)
    ours = sa.sample(x, rng=np.random.default_rng(11), **filters)
    for library in ("torch", "array_api_strict"):
        got = sa.sample(library_logits(library, x), rng=np.random.default_rng(11), **filters)
        np.testing.assert_array_equal(np.asarray(got), ours)


def test_same_tokens_at_any_thread_count():
    x = (np.random.default_rng(4).standard_normal((64, 32000)) * 3).astype(np.float32)
    draws = []
    for n in (1, 2):
        with sa.threads(n):
            draws.append(sa.sample(x, top_p=0.9, temperature=0.8, rng=np.random.default_rng(5)))
    np.testing.assert_array_equal(draws[0], draws[1])


def test_a_flat_nucleus_over_a_language_model_vocabulary():
    """top_p alone over 128000 nearly equal logits: the candidates grow to
    most of the row; the draws stay within the nucleus and agree with the
    portable path's full sort."""
    xs = pytest.importorskip("array_api_strict")
    x = (np.random.default_rng(8).standard_normal((2, 128000)) * 0.01).astype(np.float32)
    ours = sa.sample(x, top_p=0.5, rng=np.random.default_rng(1))
    theirs = sa.sample(xs.asarray(x), top_p=0.5, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(np.asarray(theirs), ours)
    for row, token in zip(x, ours):
        assert filtered_distribution(row, top_p=0.5)[token] > 0


def test_greedy_filters_give_the_largest_logits():
    x = np.random.default_rng(9).standard_normal((50, 300))
    x[:, 7] = x.max(axis=1) + 1.0
    x[:, 9] = x[:, 7]           # a tie: top_k and top_p keep the lower index
    for filters in ({"top_k": 1}, {"top_p": 1e-9}):
        np.testing.assert_array_equal(sa.sample(x, rng=np.random.default_rng(0), **filters),
                                      np.full(50, 7))
    # min_p=1 keeps every token as probable as the largest: both of the tie.
    tokens = sa.sample(x, min_p=1.0, rng=np.random.default_rng(0))
    assert set(np.unique(tokens)) == {7, 9}


def test_masked_tokens_are_never_drawn_and_shapes_follow_the_rows():
    x = np.zeros((3, 4, 10))
    x[..., ::2] = -np.inf
    tokens = sa.sample(x, rng=np.random.default_rng(2))
    assert tokens.shape == (3, 4) and tokens.dtype == np.int64
    assert np.all(tokens % 2 == 1)
    one = sa.sample(np.array([0.0, -np.inf, 5.0]), top_k=1)
    assert one.shape == () and int(one) == 2


def test_half_precision_logits():
    x = np.tile(LOGITS, (4000, 1)).astype(np.float16)
    tokens = sa.sample(x, top_k=5, rng=np.random.default_rng(3))
    assert set(np.unique(tokens)) <= set(range(5))


def test_dask_rows_draw_from_block_generators():
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(1).standard_normal((100, 3, 50)).astype(np.float32)
    lazy = sa.sample(da.from_array(x, chunks=(30, 2, 20)), top_k=5, rng=np.random.default_rng(0))
    assert isinstance(lazy, da.Array) and lazy.shape == (100, 3)
    first = lazy.compute()
    np.testing.assert_array_equal(lazy.compute(), first)     # the graph's draws are fixed
    top5 = np.argsort(-x, axis=-1, kind="stable")[..., :5]
    assert np.all((top5 == first[..., None]).any(axis=-1))


@pytest.mark.parametrize("logits, kwargs, error, match", [
    (np.array([[0.0, np.nan]]), {}, ValueError, "NaN or \\+inf"),
    (np.array([[0.0, np.inf]]), {}, ValueError, "NaN or \\+inf"),
    (np.array([[0.0, 1.0], [-np.inf, -np.inf]]), {}, ValueError, "without a finite entry"),
    (np.zeros((2, 0)), {}, ValueError, "no categories"),
    (np.zeros((2, 3)), {"top_k": 0}, ValueError, "top_k must be at least 1"),
    (np.zeros((2, 3)), {"top_k": 1.5}, TypeError, "top_k"),
    (np.zeros((2, 3)), {"top_p": 0.0}, ValueError, "top_p"),
    (np.zeros((2, 3)), {"top_p": 1.5}, ValueError, "top_p"),
    (np.zeros((2, 3)), {"min_p": -0.1}, ValueError, "min_p"),
    (np.zeros((2, 3)), {"temperature": 0.0}, ValueError, "temperature"),
    (np.zeros((2, 3)), {"rng": 5}, TypeError, "rng must be a numpy.random.Generator"),
    (np.zeros((2, 3), complex), {}, TypeError, "complex"),
])
def test_bad_input_gets_a_clear_error(logits, kwargs, error, match):
    with pytest.raises(error, match=match):
        sa.sample(logits, **kwargs)


@pytest.mark.parametrize("filters", FILTERS, ids=str)
@pytest.mark.parametrize("library", ["numpy", "torch", "array_api_strict"])
def test_no_rows_give_no_tokens(library, filters):
    """An empty batch (no rows, a vocabulary of 5) draws nothing and takes no
    number from the generator, as an empty torch.multinomial batch would."""
    for shape in [(0, 5), (2, 0, 5)]:
        rng = np.random.default_rng(0)
        tokens = sa.sample(library_logits(library, np.zeros(shape, np.float32)), rng=rng, **filters)
        assert tuple(tokens.shape) == shape[:-1]
        assert rng.random() == np.random.default_rng(0).random()
