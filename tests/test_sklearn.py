"""softarray.sklearn: SoftmaxClassifier against scikit-learn's own checks,
LogisticRegression and the objective written plainly with NumPy; log_loss
against sklearn.metrics.log_loss."""
import warnings

import numpy as np
import pytest
from scipy import optimize
from scipy.special import log_softmax as scipy_log_softmax
import sklearn
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss as sklearn_log_loss
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from softarray.sklearn import SoftmaxClassifier, log_loss

try:
    import torch
except ImportError:
    torch = None
import array_api_strict


@pytest.fixture(autouse=True)
def scipy_array_api(monkeypatch):
    """scikit-learn refuses array_api_dispatch unless SCIPY_ARRAY_API=1
    (and skips its array-API checks). The estimator and log_loss call no
    SciPy function on array-API arrays, so setting it here, after SciPy was
    imported, is enough for them."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


# ------------------------------------------------------------ scikit-learn's checks

def _torch_devices_named(check):
    """The torch devices an array-API check of scikit-learn will put arrays on."""
    keywords = getattr(check, "keywords", {})
    pairs = [(keywords.get("array_namespace"), keywords.get("device_name"))]
    pairs += [(getattr(keywords.get(name), "xp", None), getattr(keywords.get(name), "device", None))
              for name in ("X_ns_and_device", "other_ns_and_device")]
    return {device for xp, device in pairs if xp == "torch" and device not in (None, "cpu")}


def _unusable_torch_device(device):
    """scikit-learn runs its CUDA checks whenever torch was *built* with CUDA;
    PyPI's default torch is, so a machine without a working GPU driver raises
    there instead of skipping. Returns why the device cannot be used, or None."""
    try:
        torch.zeros(1, device=device)
    except Exception as error:  # noqa: BLE001 - any failure means "not usable"
        return f"torch device {device!r} is not usable here: {str(error).splitlines()[0][:80]}"
    return None


@parametrize_with_checks([SoftmaxClassifier()])
def test_sklearn_estimator_checks(estimator, check):
    for device in _torch_devices_named(check):
        reason = _unusable_torch_device(device)
        if reason:
            pytest.skip(reason)
    check(estimator)


# ------------------------------------------------------------ against LogisticRegression

def _digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
    return X_train, X_test, y_train, y_test


def _small_multiclass():
    X, y = make_classification(n_samples=2000, n_features=20, n_informative=10, n_classes=5,
                               random_state=0)
    return train_test_split(X, y, test_size=0.3, random_state=0)


def _separable():
    X, y = make_classification(n_samples=1500, n_features=10, n_informative=6, n_classes=4,
                               n_clusters_per_class=1, class_sep=2.0, random_state=0)
    return train_test_split(X, y, test_size=0.3, random_state=0)


def _binary():
    X, y = make_classification(n_samples=600, n_features=8, n_informative=4, random_state=1)
    return train_test_split(X, y, test_size=0.3, random_state=0)


@pytest.mark.parametrize("data", [_digits, _small_multiclass, _binary])
def test_accuracy_matches_logistic_regression(data):
    X_train, X_test, y_train, y_test = data()
    C = 1.0
    reference = LogisticRegression(C=C, max_iter=2000).fit(X_train, y_train)
    ours = SoftmaxClassifier(alpha=1.0 / (C * X_train.shape[0]), max_iter=2000).fit(X_train, y_train)
    assert abs(ours.score(X_test, y_test) - reference.score(X_test, y_test)) <= 0.005
    assert ours.coef_.shape == reference.coef_.shape
    assert ours.intercept_.shape == reference.intercept_.shape


@pytest.mark.parametrize("data", [_small_multiclass, _binary])
def test_same_optimum_as_logistic_regression(data):
    """At the documented C = 1 / (alpha * sum of weights) both solve one
    problem: converged tightly, the probabilities agree."""
    X_train, X_test, y_train, _ = data()
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.5, 2.0, X_train.shape[0])
    C = 0.5
    reference = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(X_train, y_train,
                                                                       sample_weight=weights)
    ours = SoftmaxClassifier(alpha=1.0 / (C * weights.sum()), tol=1e-10, max_iter=5000)
    ours.fit(X_train, y_train, sample_weight=weights)
    np.testing.assert_allclose(ours.predict_proba(X_test), reference.predict_proba(X_test), atol=1e-5)
    np.testing.assert_allclose(ours.decision_function(X_test), reference.decision_function(X_test),
                               rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------ the objective, written plainly

def _plain_loss(loss, z, y, label_smoothing):
    """Per-sample losses from the formulas in docs/losses.md, with NumPy."""
    log_p = scipy_log_softmax(z, axis=1)
    log_p_y = log_p[np.arange(len(y)), y]
    if loss == "cross_entropy":
        return -(1 - label_smoothing) * log_p_y - label_smoothing * log_p.mean(axis=1)
    if loss == "focal":
        return -(1 - np.exp(log_p_y)) ** 2 * log_p_y
    q = 0.7
    return (1 - np.exp(q * log_p_y)) / q


def _plain_objective(theta, X, y, s, alpha, n_classes, loss, label_smoothing):
    n_rows = 1 if n_classes == 2 else n_classes
    W = theta[:n_rows * X.shape[1]].reshape(n_rows, -1)
    b = theta[n_rows * X.shape[1]:]
    z = X @ W.T + b
    if n_classes == 2:
        z = np.column_stack([np.zeros(len(z)), z])
    return (s @ _plain_loss(loss, z, y, label_smoothing)) / s.sum() + alpha / 2 * np.sum(W * W)


@pytest.mark.parametrize("loss, label_smoothing", [("cross_entropy", 0.0), ("cross_entropy", 0.2),
                                                   ("focal", 0.0), ("generalized_cross_entropy", 0.0)])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_fit_is_a_stationary_point_of_the_documented_objective(loss, label_smoothing, n_classes):
    X, y = make_classification(n_samples=300, n_features=5, n_informative=3, n_classes=n_classes,
                               n_clusters_per_class=1, random_state=0)
    rng = np.random.default_rng(1)
    sample_weight = rng.uniform(0.2, 3.0, len(y))
    class_weight = {k: 1.0 + k for k in range(n_classes)}
    alpha = 1e-2
    clf = SoftmaxClassifier(loss, label_smoothing=label_smoothing, alpha=alpha,
                            class_weight=class_weight, tol=1e-9, max_iter=1000)
    clf.fit(X, y, sample_weight=sample_weight)
    s = sample_weight * np.array([class_weight[k] for k in y])
    theta = np.concatenate([clf.coef_.ravel(), clf.intercept_])
    args = (X, y, s, alpha, n_classes, loss, label_smoothing)
    grad = optimize.approx_fprime(theta, _plain_objective, 1e-7, *args)
    assert np.max(np.abs(grad)) < 1e-5
    # and a nearby point is worse: a minimum, not just a stationary point
    value = _plain_objective(theta, *args)
    assert value <= _plain_objective(theta + 1e-3 * rng.standard_normal(theta.size), *args)


@pytest.mark.parametrize("loss", ["z_loss", "multi_margin", "focal", "generalized_cross_entropy"])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the hinge is not smooth
def test_other_losses_learn(loss):
    """Each loss is a different problem; on well-separated classes each
    comes within 3 points of LogisticRegression's test accuracy."""
    X_train, X_test, y_train, y_test = _separable()
    reference = LogisticRegression().fit(X_train, y_train).score(X_test, y_test)
    clf = SoftmaxClassifier(loss, max_iter=200).fit(X_train, y_train)
    assert clf.score(X_test, y_test) > reference - 0.03
    np.testing.assert_allclose(clf.predict_proba(X_test).sum(axis=1), 1.0)


# ------------------------------------------------------------ weights, options, errors

def test_integer_sample_weight_equals_repeated_samples():
    X, y = make_classification(n_samples=120, n_features=4, n_informative=3, n_redundant=0,
                               n_classes=3, random_state=0)
    counts = np.random.default_rng(0).integers(0, 4, len(y))
    weighted = SoftmaxClassifier(tol=1e-10, max_iter=1000).fit(X, y, sample_weight=counts)
    repeated = SoftmaxClassifier(tol=1e-10, max_iter=1000).fit(np.repeat(X, counts, axis=0),
                                                               np.repeat(y, counts))
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-5, atol=1e-6)


def test_class_weight_equals_sample_weight_by_class():
    X, y = make_classification(n_samples=200, n_features=5, n_classes=3, n_informative=3,
                               random_state=2)
    class_weight = {0: 0.5, 1: 2.0, 2: 1.0}
    by_class = SoftmaxClassifier(class_weight=class_weight, tol=1e-10).fit(X, y)
    by_sample = SoftmaxClassifier(tol=1e-10).fit(X, y, sample_weight=np.array([class_weight[k] for k in y]))
    np.testing.assert_allclose(by_class.coef_, by_sample.coef_, rtol=1e-6, atol=1e-8)
    balanced = SoftmaxClassifier(class_weight="balanced", tol=1e-10).fit(X, y)
    counts = np.bincount(y)
    explicit = {k: len(y) / (3 * counts[k]) for k in range(3)}
    np.testing.assert_allclose(balanced.coef_, SoftmaxClassifier(class_weight=explicit, tol=1e-10)
                               .fit(X, y).coef_, rtol=1e-6, atol=1e-8)


def test_warm_start_resumes():
    X_train, _, y_train, _ = _small_multiclass()
    clf = SoftmaxClassifier(warm_start=True, tol=1e-6, max_iter=1000).fit(X_train, y_train)
    first = clf.n_iter_[0]
    clf.fit(X_train, y_train)
    assert clf.n_iter_[0] < first / 2


def test_no_intercept():
    X, y = make_classification(n_samples=200, n_features=5, n_classes=3, n_informative=3, random_state=0)
    clf = SoftmaxClassifier(fit_intercept=False).fit(X, y)
    np.testing.assert_array_equal(clf.intercept_, np.zeros(3))
    np.testing.assert_allclose(clf.decision_function(X), X @ clf.coef_.T)


def test_float32_input_stays_float32_like_logistic_regression():
    """float32 data is fitted in float32 arithmetic and the model, scores
    and probabilities stay float32, as LogisticRegression's do: the same
    model within float32 accuracy."""
    X, y = make_classification(n_samples=300, n_features=6, n_classes=3, n_informative=4, random_state=0)
    X32 = X.astype(np.float32)
    clf32 = SoftmaxClassifier(tol=1e-6).fit(X32, y)
    clf64 = SoftmaxClassifier(tol=1e-6).fit(X, y)
    reference = LogisticRegression().fit(X32, y)
    assert clf32.coef_.dtype == clf32.intercept_.dtype == reference.coef_.dtype == np.float32
    for method in ("decision_function", "predict_proba", "predict_log_proba"):
        assert getattr(clf32, method)(X32).dtype == getattr(reference, method)(X32).dtype, method
    # float64 data on a float32 model promotes, as NumPy (and LogisticRegression) do
    assert clf32.predict_proba(X).dtype == np.float64
    np.testing.assert_allclose(clf32.coef_, clf64.coef_, rtol=1e-3, atol=1e-4)
    scores = X32.astype(np.float64) @ clf32.coef_.T.astype(np.float64) + clf32.intercept_
    np.testing.assert_allclose(clf32.predict_log_proba(X32), scipy_log_softmax(scores, axis=1),
                               rtol=1e-5, atol=1e-5)
    assert (clf32.predict(X32) == clf64.predict(X)).mean() > 0.99


@pytest.mark.parametrize("params, match", [
    ({"loss": "focal", "label_smoothing": 0.1}, "label_smoothing"),
    ({"loss": "hinge"}, "loss"),
    ({"alpha": -1.0}, "alpha"),
    ({"max_iter": 0}, "max_iter"),
    ({"class_weight": "uniform"}, "class_weight"),
])
def test_bad_parameters_raise(params, match):
    X, y = make_classification(n_samples=50, n_features=4, random_state=0)
    with pytest.raises(ValueError, match=match):
        SoftmaxClassifier(**params).fit(X, y)


def test_z_loss_needs_three_classes():
    X, y = make_classification(n_samples=50, n_features=4, random_state=0)
    with pytest.raises(ValueError, match="z_loss"):
        SoftmaxClassifier("z_loss").fit(X, y)


def test_bad_sample_weight_raises():
    X, y = make_classification(n_samples=50, n_features=4, random_state=0)
    with pytest.raises(ValueError, match="Negative"):
        SoftmaxClassifier().fit(X, y, sample_weight=-np.ones(50))
    with pytest.raises(ValueError):
        SoftmaxClassifier().fit(X, y, sample_weight=np.ones(49))


def test_inputs_unchanged():
    X, y = make_classification(n_samples=100, n_features=4, random_state=0)
    w = np.linspace(0.5, 1.5, 100)
    X0, y0, w0 = X.copy(), y.copy(), w.copy()
    SoftmaxClassifier(class_weight="balanced").fit(X, y, sample_weight=w).predict_proba(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(w, w0)


# ------------------------------------------------------------ composition

def test_pipeline_grid_search_and_clone():
    X_train, X_test, y_train, y_test = _separable()
    pipe = make_pipeline(StandardScaler(), SoftmaxClassifier())
    search = GridSearchCV(pipe, {"softmaxclassifier__alpha": [1e-4, 1e-2],
                                 "softmaxclassifier__loss": ["cross_entropy", "focal"]}, cv=3)
    search.fit(X_train, y_train)
    assert search.best_estimator_.score(X_test, y_test) > 0.9
    copy = clone(search.best_estimator_)
    assert copy.get_params()["softmaxclassifier__alpha"] == search.best_params_["softmaxclassifier__alpha"]
    assert not hasattr(copy[-1], "coef_")


# ------------------------------------------------------------ array API

def _namespaces():
    cases = [pytest.param(array_api_strict.asarray, lambda a: np.asarray(a._array), id="array_api_strict")]
    if torch is not None:
        cases.append(pytest.param(torch.asarray, lambda t: t.numpy(), id="torch"))
    return cases


@pytest.mark.parametrize("to_xp, to_numpy", _namespaces())
@pytest.mark.parametrize("n_classes", [2, 3])
def test_array_api_dispatch(to_xp, to_numpy, n_classes):
    X, y = make_classification(n_samples=120, n_features=5, n_classes=n_classes, n_informative=3,
                               random_state=0)
    reference = SoftmaxClassifier().fit(X, y)
    X_xp, y_xp = to_xp(X), to_xp(y)
    with sklearn.config_context(array_api_dispatch=True):
        clf = SoftmaxClassifier().fit(X_xp, y_xp)
        outputs = {name: getattr(clf, name)(X_xp) for name in
                   ("predict_proba", "predict_log_proba", "decision_function", "predict")}
    for name, value in outputs.items():
        assert type(value) is type(X_xp), name
        np.testing.assert_allclose(to_numpy(value), getattr(reference, name)(X), atol=1e-6,
                                   err_msg=name)
    assert type(clf.coef_) is type(X_xp)


# ------------------------------------------------------------ log_loss

def _both(y_true, y_proba, **kwargs):
    """(softarray's value, scikit-learn's value), and the same warnings."""
    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter("always")
        ours = log_loss(y_true, y_proba, **kwargs)
    with warnings.catch_warnings(record=True) as theirs_warned:
        warnings.simplefilter("always")
        theirs = sklearn_log_loss(y_true, y_proba, **kwargs)
    assert [w.category for w in ours_warned] == [w.category for w in theirs_warned]
    return ours, theirs


def _random_case(rng):
    n = int(rng.integers(2, 60))
    n_classes = int(rng.integers(2, 7))
    dtype = rng.choice([np.float64, np.float32])
    proba = rng.dirichlet(np.full(n_classes, 0.5), size=n).astype(dtype)
    if rng.random() < 0.3:      # exact 0 and 1 entries: clipped at eps
        proba[0] = 0
        proba[0, 0] = 1
    if rng.random() < 0.2:      # rows that do not sum to 1
        proba = proba * dtype(0.9)
    y = rng.integers(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)[:n] if n >= n_classes else y[:n_classes]
    kwargs = {}
    if rng.random() < 0.5:
        kwargs["sample_weight"] = rng.uniform(0, 2, n)
    if rng.random() < 0.3:
        kwargs["normalize"] = False
    if rng.random() < 0.3:
        kwargs["labels"] = list(range(n_classes))
    names = np.array(["ant", "bee", "cat", "dog", "eel", "fox"])[:n_classes]
    if rng.random() < 0.3:
        y = names[y]
        if "labels" in kwargs:
            kwargs["labels"] = list(names)
    if n_classes == 2 and rng.random() < 0.5:
        proba = proba[:, 1] if rng.random() < 0.5 else proba[:, 1:]
    return y, proba, kwargs


def test_log_loss_matches_sklearn_on_generated_inputs():
    rng = np.random.default_rng(0)
    tested = 0
    for _ in range(300):
        y, proba, kwargs = _random_case(rng)
        if "labels" not in kwargs and len(np.unique(y)) != (2 if proba.ndim == 1 else proba.shape[1]):
            continue
        ours, theirs = _both(y, proba, **kwargs)
        assert ours == pytest.approx(theirs, rel=1e-12, abs=0)
        tested += 1
    assert tested > 200


@pytest.mark.parametrize("y, proba, kwargs", [
    ([0, 1, 1], [0.0, 1.0, 1.0], {}),                                   # clipped at both ends
    (["spam", "ham"], [[0.3, 0.7], [0.6, 0.4]], {}),
    ([1, 2, 2], [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.5, 0.2, 0.3]], {"labels": [0, 1, 2]}),
    ([2, 0], [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], {"labels": [2, 0, 1]}),    # unsorted: warns
    ([[1, 0, 0], [0, 1, 1]], [[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]], {}),      # indicator y_true
    ([0, 1], [[0.2, 0.5], [0.5, 0.5]], {}),                              # rows not summing to 1
    ([0, 1, 0], np.array([0.1, 0.8, 0.3], np.float32), {"sample_weight": [1, 0, 2]}),
])
def test_log_loss_matches_sklearn_on_edge_cases(y, proba, kwargs):
    ours, theirs = _both(y, proba, **kwargs)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=0)


@pytest.mark.parametrize("y, proba, kwargs", [
    ([0, 0], [0.3, 0.4], {}),                                  # one label
    ([0, 1], [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], {}),          # class count mismatch
    ([0, 1, 2], [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], {"labels": [0, 1, 2]}),
    ([0, 3], [[0.5, 0.5], [0.5, 0.5]], {"labels": [0, 1]}),    # y_true outside labels
    ([0, 1], [[0.5, 0.5], [0.5, 0.5]], {"labels": [1]}),       # one label given
    ([0, 1], [1.5, 0.2], {}),                                  # > 1
    ([0, 1], [-0.1, 0.2], {}),                                 # < 0
    ([0, 1], [np.nan, 0.2], {}),
    ([0, 1, 1], [0.1, 0.2], {}),                               # lengths differ
    ([0, 1], [0.1, 0.2], {"sample_weight": [1, 2, 3]}),
    ([0, 1], [0.1, 0.2], {"normalize": "yes"}),
    ([0, 1], "probabilities", {}),
    ([0.5, 1.5], [0.1, 0.2], {}),                              # continuous y_true
    ([0, 1], np.zeros((2, 2, 2)), {}),
    ([0, 1], [0.1, 0.2], {"sample_weight": [0, 0]}),           # weights sum to 0
])
def test_log_loss_raises_what_sklearn_raises(y, proba, kwargs):
    with pytest.raises(Exception) as theirs:
        sklearn_log_loss(y, proba, **kwargs)
    with pytest.raises(Exception) as ours:
        log_loss(y, proba, **kwargs)
    assert type(ours.value) is type(theirs.value)


def test_log_loss_array_api_input():
    y = np.array([0, 1, 2, 1])
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]])
    expected = sklearn_log_loss(y, proba)
    with sklearn.config_context(array_api_dispatch=True):
        value = log_loss(array_api_strict.asarray(y), array_api_strict.asarray(proba))
    assert value == pytest.approx(expected, rel=1e-12)


def test_convergence_warning_points_at_the_callers_line():
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    with pytest.warns(Warning) as caught:
        SoftmaxClassifier(max_iter=1).fit(X, y)
    assert [w.filename for w in caught] == [__file__]
