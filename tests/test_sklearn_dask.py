"""SoftmaxClassifier on Dask arrays (softarray/_sklearn_dask.py): the fit over
blocks reaches the in-memory fit's optimum with every option, predictions
are lazy and equal the in-memory ones, bad input is refused before any
fitting, and on a cluster of worker processes the fit survives losing a
worker."""
import os
import signal
import threading

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pytest.importorskip("distributed")

from softarray.sklearn import SoftmaxClassifier  # noqa: E402


def _problem(n=600, d=5, n_classes=3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    X = rng.standard_normal((n, d)) + 0.8 * np.eye(n_classes, d)[y]
    return X.astype(dtype), y


def _fit_both(X, y, chunks=(97, 5), sample_weight=None, **params):
    """(in-memory fit, fit over Dask blocks of X) with the same parameters."""
    params = {"tol": 1e-12, "max_iter": 2000, "alpha": 1e-2} | params
    memory = SoftmaxClassifier(**params).fit(X, y, sample_weight=sample_weight)
    dask_weight = (None if sample_weight is None
                   else da.from_array(sample_weight, chunks=chunks[0]))
    blocks = SoftmaxClassifier(**params).fit(
        da.from_array(X, chunks=chunks), da.from_array(y, chunks=chunks[0]),
        sample_weight=dask_weight)
    return memory, blocks


def _assert_same_optimum(memory, blocks):
    assert blocks.coef_.dtype == memory.coef_.dtype
    assert blocks.intercept_.dtype == memory.intercept_.dtype
    np.testing.assert_array_equal(blocks.classes_, memory.classes_)
    scale = max(np.abs(memory.coef_).max(), np.abs(memory.intercept_).max())
    np.testing.assert_allclose(blocks.coef_, memory.coef_, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(blocks.intercept_, memory.intercept_, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("loss, params", [
    ("cross_entropy", {}),
    ("cross_entropy", {"label_smoothing": 0.1}),
    ("cross_entropy", {"fit_intercept": False}),
    ("z_loss", {}),
    ("focal", {}),
    ("multi_margin", {}),
    ("generalized_cross_entropy", {}),
])
def test_same_optimum_as_the_in_memory_fit(loss, params):
    X, y = _problem()
    memory, blocks = _fit_both(X, y, loss=loss, **params)
    if loss != "z_loss":
        _assert_same_optimum(memory, blocks)
        return
    # The z-loss of standardized logits is flat along the coefficients'
    # scale, so L-BFGS-B stops at slightly different points of the valley
    # (0.1% apart) from sums rounded differently; the models agree.
    np.testing.assert_allclose(blocks.predict_proba(X), memory.predict_proba(X), atol=2e-3)
    np.testing.assert_array_equal(blocks.predict(X), memory.predict(X))


@pytest.mark.parametrize("class_weight", [None, "balanced", {0: 2.0, 2: 0.5}])
@pytest.mark.parametrize("with_sample_weight", [False, True])
def test_sample_and_class_weights(class_weight, with_sample_weight):
    X, y = _problem(seed=1)
    y[y == 2] = np.where(np.arange((y == 2).sum()) % 3 == 0, 2, 1)   # unbalanced classes
    weight = np.random.default_rng(2).random(len(y)) * 2 if with_sample_weight else None
    _assert_same_optimum(*_fit_both(X, y, sample_weight=weight, class_weight=class_weight))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_labels_of_any_kind(dtype):
    X, y = _problem(n_classes=2, dtype=dtype, seed=3)
    labels = np.array(["no", "yes"])[y]
    if dtype == np.float64:
        memory, blocks = _fit_both(X, labels)
        _assert_same_optimum(memory, blocks)
    else:   # float32 losses and sums: an optimum to float32's resolution
        memory, blocks = _fit_both(X, labels, tol=1e-5)
        assert blocks.coef_.dtype == np.float32
        np.testing.assert_allclose(blocks.coef_, memory.coef_, rtol=0, atol=1e-3)
    assert blocks.coef_.shape == (1, X.shape[1])
    np.testing.assert_array_equal(blocks.classes_, ["no", "yes"])


def test_predictions_are_lazy_and_equal_the_in_memory_ones():
    X, y = _problem(seed=4)
    labels = np.array(["a", "b", "c"])[y]
    memory, blocks = _fit_both(X, labels)
    Xd = da.from_array(X, chunks=(128, 5))
    for method in ["decision_function", "predict_proba", "predict_log_proba", "predict"]:
        lazy = getattr(blocks, method)(Xd)
        assert isinstance(lazy, da.Array), method
        want = getattr(blocks, method)(X)   # the same fitted model, in memory
        got = lazy.compute()
        assert got.shape == want.shape and got.dtype == want.dtype, method
        if method == "predict":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    score = blocks.score(Xd, da.from_array(labels, chunks=128))
    assert isinstance(score, da.Array)
    correct = blocks.predict(X) == labels
    assert float(score.compute()) == pytest.approx(correct.mean(), abs=1e-12)
    weight = np.random.default_rng(5).random(len(y))
    weighted = blocks.score(Xd, labels, sample_weight=da.from_array(weight, chunks=200))
    assert float(weighted.compute()) == pytest.approx(np.sum(correct * weight) / weight.sum())


def test_binary_decision_function_is_one_column():
    X, y = _problem(n_classes=2, seed=6)
    _, blocks = _fit_both(X, y)
    scores = blocks.decision_function(da.from_array(X, chunks=(100, 5)))
    assert scores.shape == (X.shape[0],)
    np.testing.assert_allclose(scores.compute(), X @ blocks.coef_[0] + blocks.intercept_[0])


def _dask(X, rows=100):
    return da.from_array(X, chunks=(rows, X.shape[1]) if X.ndim == 2 else rows)


@pytest.mark.parametrize("make, error, match", [
    (lambda X, y: (_dask(np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X)), _dask(y)),
     ValueError, "NaN or infinity"),
    (lambda X, y: (_dask(X), _dask(y[:-1])), ValueError, "one entry per sample"),
    (lambda X, y: (_dask(X)[_dask(X)[:, 0] > 0], _dask(y)), ValueError, "unknown length"),
    (lambda X, y: (_dask(X[:, 0]), _dask(y)), ValueError, "2-D"),
    (lambda X, y: (_dask(X), _dask(np.zeros_like(y))), ValueError, "at least 2 classes"),
    (lambda X, y: (_dask(X), _dask(y + 0.5)), ValueError, "Unknown label type"),
])
def test_bad_input_is_refused(make, error, match):
    X, y = _problem(n=300)
    Xd, yd = make(X, y)
    with pytest.raises(error, match=match):
        SoftmaxClassifier().fit(Xd, yd)


def test_bad_sample_weights_are_refused():
    X, y = _problem(n=300)
    with pytest.raises(ValueError, match="Negative values"):
        SoftmaxClassifier().fit(_dask(X), _dask(y), sample_weight=_dask(-np.ones(300)))
    with pytest.raises(ValueError, match="sums to zero"):
        SoftmaxClassifier().fit(_dask(X), _dask(y), sample_weight=_dask(np.zeros(300)))


def test_unfitted_predictions_raise_at_once():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        SoftmaxClassifier().predict_proba(_dask(np.zeros((10, 2))))


# ------------------------------------------------------------------ a cluster of processes

def test_fit_on_a_cluster_of_processes(client):
    X, y = _problem(n=2000, d=8, n_classes=4, seed=7)
    memory, blocks = _fit_both(X, y, chunks=(250, 8))
    _assert_same_optimum(memory, blocks)
    # the blocks were spread over both workers
    assert len(client.scheduler_info()["workers"]) == 2


def test_a_worker_lost_mid_fit_is_recovered(client, monkeypatch):
    """A worker process killed between two evaluations of the objective (its
    persisted blocks lost with it): the nanny restarts it, the scheduler
    recomputes the blocks from their graph, and the fit ends at the
    in-memory optimum."""
    from softarray import _sklearn_dask
    X, y = _problem(n=4000, d=20, n_classes=5, seed=8)
    params = {"tol": 1e-12, "max_iter": 2000, "alpha": 1e-3}
    memory = SoftmaxClassifier(**params).fit(X, y)
    victim = next(iter(client.run(os.getpid).values()))
    evaluations = []

    def penalized_then_kill(*args):
        evaluations.append(1)
        if len(evaluations) == 3:
            os.kill(victim, signal.SIGKILL)
        return _sklearn_dask_penalized(*args)

    _sklearn_dask_penalized = _sklearn_dask.penalized
    monkeypatch.setattr(_sklearn_dask, "penalized", penalized_then_kill)
    result = {}

    def fit():
        try:
            result["model"] = SoftmaxClassifier(**params).fit(
                da.from_array(X, chunks=(400, 20)), da.from_array(y, chunks=400))
        except Exception as error:     # reported below
            result["error"] = error

    thread = threading.Thread(target=fit)
    thread.start()
    thread.join(timeout=180)
    assert not thread.is_alive(), "the fit hung after a worker was lost"
    assert "error" not in result, result.get("error")
    assert len(evaluations) > 3     # the fit went on after the loss
    _assert_same_optimum(memory, result["model"])


def test_convergence_warning_points_at_the_callers_line():
    X, y = _problem(n=300)
    with pytest.warns(Warning) as caught:
        SoftmaxClassifier(max_iter=1).fit(_dask(X), _dask(y))
    assert [w.filename for w in caught] == [__file__]
