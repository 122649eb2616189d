"""scikit-learn integration: a softmax classifier fitted on softarray's fused
losses, and ``log_loss``.

``SoftmaxClassifier`` is a multinomial linear classifier: each evaluation of
its L-BFGS-B objective computes the logits with one matrix product, the loss
and its gradient with respect to the logits with one softarray call, and the
gradient of the weights with a second matrix product. ``log_loss`` returns
what ``sklearn.metrics.log_loss`` returns, reading one probability per sample
instead of the whole matrix when the labels are classes.

This module imports scikit-learn; ``import softarray`` does not.
"""
import math
import sys
import warnings
from numbers import Integral, Real

import numpy as np
from scipy import optimize
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._array_api import (
    check_same_namespace,
    get_namespace,
    get_namespace_and_device,
    move_to,
    supported_float_dtypes,
)
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from ._linear_objective import LinearObjective
from ._losses import cross_entropy, focal_loss, generalized_cross_entropy, multi_margin_loss, z_loss
from ._softmax import log_softmax, softmax

__all__ = ["SoftmaxClassifier", "log_loss"]

_LOSSES = {
    "cross_entropy": cross_entropy,
    "z_loss": z_loss,
    "focal": focal_loss,
    "multi_margin": multi_margin_loss,
    "generalized_cross_entropy": generalized_cross_entropy,
}


def _to_numpy(a):
    """A NumPy array of an array of any array-API library (or a list)."""
    if a is None or isinstance(a, np.ndarray):
        return a
    if hasattr(a, "__array_namespace__") or hasattr(a, "__dlpack__"):
        return move_to(a, xp=np, device="cpu")
    return np.asarray(a)


def _is_dask(X):
    """Whether X is a Dask collection (without importing Dask: an object can
    only be one once its caller has imported it)."""
    dask = sys.modules.get("dask")
    return dask is not None and dask.is_dask_collection(X)


def _dask_support():
    """softarray._sklearn_dask, imported only for Dask input (Dask is not a
    dependency of scikit-learn users who do not use it)."""
    from . import _sklearn_dask
    return _sklearn_dask


def _lazy(estimator, method, X):
    """estimator.method over the blocks of Dask X, lazily."""
    check_is_fitted(estimator)
    return _dask_support().lazy(estimator, method, X)


def _centred_class_means(X, y_index, n_classes):
    """Each class's mean sample minus the mean of all samples, (n_classes, n_features)."""
    means = np.stack([X[y_index == k].mean(axis=0) for k in range(n_classes)])
    return means - X.mean(axis=0)


class SoftmaxClassifier(ClassifierMixin, BaseEstimator):
    r"""Multinomial linear classifier fitted with softarray's fused losses.

    Minimizes, over the coefficients ``W`` and intercepts ``b``,

    .. math::

        \frac{1}{\sum_i s_i} \sum_i s_i \, \ell(W x_i + b, y_i)
        + \frac{\alpha}{2} \lVert W \rVert_F^2

    with L-BFGS-B, where ``s_i`` is the sample weight times
    ``class_weight[y_i]`` (1 by default) and ``ell`` the chosen loss. The
    intercepts are not penalized. With ``loss="cross_entropy"`` this is
    ``LogisticRegression(solver="lbfgs", C=1 / (alpha * sum(s)))``, i.e.
    ``C = 1 / (alpha * n_samples)`` without weights; for two classes too,
    since a binary problem keeps one coefficient row (the logits are
    ``[0, X w + b]``), as LogisticRegression does.

    With ``loss="cross_entropy"`` each evaluation is one call of the fused
    linear kernel behind :func:`softarray.linear_cross_entropy`: one pass
    over X, each block of rows making its logits, loss and gradient share
    while it is in cache, on softarray's threads (:func:`softarray.threads`;
    BLAS is held to one thread meanwhile). The other losses compute the
    logits ``X @ W.T + b`` with BLAS (its own threads), the loss and its
    gradient with respect to the logits in one softarray call, then the
    gradient of ``W`` as ``G.T @ X``.

    Parameters
    ----------
    loss : str, default="cross_entropy"
        The per-sample loss, "cross_entropy", "z_loss", "focal",
        "multi_margin" or "generalized_cross_entropy":
        :func:`softarray.cross_entropy`,
        :func:`softarray.z_loss`, :func:`softarray.focal_loss`,
        :func:`softarray.multi_margin_loss` or
        :func:`softarray.generalized_cross_entropy`, with their default
        parameters. ``"z_loss"`` needs three or more classes (with two, the
        standardized logits are always ``+-1`` and the loss is constant) and
        starts from the class centroids (at ``W = 0`` its gradient is 0); it
        is scale-invariant, so ``alpha`` only shrinks ``W``'s norm.
    label_smoothing : float in [0, 1], default=0.0
        Cross-entropy against the targets mixed with the uniform
        distribution. Only ``loss="cross_entropy"`` has it: a nonzero value
        with another loss raises ``ValueError``.
    alpha : float >= 0, default=1e-4
        Strength of the L2 penalty, relative to the mean loss as above.
    fit_intercept : bool, default=True
        Whether to fit the intercepts ``b`` (else they are 0).
    class_weight : dict, "balanced" or None, default=None
        Weights per class multiplied into the sample weights; "balanced" is
        ``n_samples / (n_classes * bincount(y))`` (weighted by
        ``sample_weight`` when given), as in scikit-learn.
    max_iter : int >= 1, default=100
        Maximum number of L-BFGS-B iterations.
    tol : float >= 0, default=1e-4
        L-BFGS-B stops when the largest projected gradient entry is at most
        ``tol`` (its ``gtol``, as LogisticRegression).
    warm_start : bool, default=False
        Start from the previous fit's ``coef_`` and ``intercept_``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    coef_ : array of shape (1, n_features) for two classes, else (n_classes, n_features)
        In X's dtype (float32 for float32 data, as LogisticRegression keeps
        it; else float64), array namespace and device.
    intercept_ : array of shape (1,) or (n_classes,)
    n_iter_ : array of shape (1,)
        L-BFGS-B iterations run.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Only when X has string feature names (a pandas DataFrame).

    Notes
    -----
    With ``sklearn.set_config(array_api_dispatch=True)`` X may be an array of
    any array-API library: the fit runs on a NumPy copy (shared memory for
    PyTorch CPU tensors), the fitted arrays are moved to X's namespace and
    device, and ``decision_function``, ``predict_proba``,
    ``predict_log_proba`` and ``predict`` return that namespace's arrays
    (``predict`` returns NumPy when the classes are strings).

    The scores, probabilities and log-probabilities come in the dtype that
    X and ``coef_`` promote to: float32 for float32 data and a model fitted
    on float32 data, as with LogisticRegression. ``predict_log_proba``
    (``softarray.log_softmax`` of the scores) stays accurate where a float32
    probability rounds to 1.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from softarray.sklearn import SoftmaxClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SoftmaxClassifier(alpha=1e-3, max_iter=300).fit(X, y)
    >>> clf.coef_.shape
    (3, 4)
    >>> clf.predict_proba(X[:2]).sum(axis=1)
    array([1., 1.])
    >>> clf.score(X, y) > 0.95
    True
    """

    _parameter_constraints = {
        "loss": [StrOptions(set(_LOSSES))],
        "label_smoothing": [Interval(Real, 0, 1, closed="both")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
    }

    def __init__(self, loss="cross_entropy", *, label_smoothing=0.0, alpha=1e-4, fit_intercept=True,
                 class_weight=None, max_iter=100, tol=1e-4, warm_start=False):
        self.loss = loss
        self.label_smoothing = label_smoothing
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the coefficients and intercepts by L-BFGS-B.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data. float32 data is fitted with float32 matrix
            products and losses, and the fitted ``coef_`` and
            ``intercept_`` are float32 (L-BFGS-B itself steps in float64);
            other dtypes become float64.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight per sample.

        Returns
        -------
        self : SoftmaxClassifier
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from softarray.sklearn import SoftmaxClassifier
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> clf = SoftmaxClassifier().fit(X, ["a", "a", "b", "b"])
        >>> clf.classes_, clf.coef_.shape
        (array(['a', 'b'], dtype='<U1'), (1, 1))
        """
        if _is_dask(X):
            return _dask_support().fit(self, X, y, sample_weight)
        xp, _, device = get_namespace_and_device(X)
        X, y = validate_data(self, X, y, dtype=[xp.float64, xp.float32], order="C")
        check_classification_targets(y)
        X_np = np.ascontiguousarray(_to_numpy(X))
        self.classes_, y_index = np.unique(_to_numpy(y), return_inverse=True)
        n_classes = self.classes_.shape[0]
        self._check_loss_options(n_classes)
        weights = self._sample_weights(X_np, y_index, _to_numpy(sample_weight))
        objective = LinearObjective(X_np, y_index, weights, **self._model_options(n_classes))
        theta = self._initial_parameters(
            objective.layout, lambda: _centred_class_means(X_np, y_index, n_classes))
        self._minimize(objective, theta, objective.layout, X_np.dtype, xp, device)
        return self

    def _model_options(self, n_classes):
        """The LinearObjective options of this estimator (beside the data)."""
        return dict(alpha=float(self.alpha), n_classes=n_classes, fit_intercept=self.fit_intercept,
                    loss=_LOSSES[self.loss],
                    loss_kwargs=({"label_smoothing": self.label_smoothing}
                                 if self.loss == "cross_entropy" else {}))

    def _minimize(self, objective, theta, layout, dtype, xp, device):
        """L-BFGS-B from theta; sets coef_, intercept_ (in dtype) and n_iter_."""
        result = optimize.minimize(
            objective, theta, method="L-BFGS-B",
            jac=True, options={"maxiter": self.max_iter, "maxls": 50, "gtol": self.tol,
                               "ftol": 64 * np.finfo(float).eps},
        )
        if result.status != 0:
            warnings.warn(f"L-BFGS-B did not converge ({result.message}); raise max_iter or scale "
                          "the data", ConvergenceWarning, stacklevel=4)   # past _fit_context
        coef, intercept = layout.split(result.x)
        if intercept is None:
            intercept = np.zeros(layout.n_rows)
        self.coef_, self.intercept_, self.n_iter_ = move_to(
            coef.astype(dtype), intercept.astype(dtype),
            np.array([min(result.nit, self.max_iter)], np.int32), xp=xp, device=device)

    def _check_loss_options(self, n_classes):
        if n_classes < 2:
            raise ValueError(f"SoftmaxClassifier needs samples of at least 2 classes, but y holds "
                             f"one class: {self.classes_[0]!r}")
        if self.label_smoothing != 0 and self.loss != "cross_entropy":
            raise ValueError(f"label_smoothing applies to loss='cross_entropy' only, got "
                             f"label_smoothing={self.label_smoothing!r} with loss={self.loss!r}")
        if self.loss == "z_loss" and n_classes == 2:
            raise ValueError("loss='z_loss' needs at least 3 classes: with 2 the standardized "
                             "logits are always +-1 and the loss is constant")

    def _sample_weights(self, X, y_index, sample_weight):
        """Per-sample weights (sample_weight times class_weight[y]) as
        float64, or None when every weight is 1."""
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        if self.class_weight is not None:
            per_class = compute_class_weight(self.class_weight, classes=self.classes_,
                                             y=self.classes_[y_index], sample_weight=sample_weight)
            per_sample = per_class[y_index]
            sample_weight = per_sample if sample_weight is None else sample_weight * per_sample
        if sample_weight is not None and not sample_weight.sum() > 0:
            raise ValueError("sample_weight times class_weight sums to zero: nothing to fit")
        return sample_weight

    def _initial_parameters(self, layout, centred_class_means):
        """Zeros, the previous fit (warm_start), or for z_loss the centred
        class means (at W = 0 the z-loss's gradient is 0), which
        ``centred_class_means()`` computes only then."""
        theta = np.zeros(layout.size)
        coef, intercept = layout.split(theta)
        if self.warm_start and hasattr(self, "coef_"):
            previous = _to_numpy(self.coef_)
            if previous.shape != coef.shape:
                raise ValueError(f"warm_start: the previous coef_ has shape {previous.shape}, this "
                                 f"fit needs {coef.shape} (different classes or features)")
            coef[...] = previous
            if intercept is not None:
                intercept[...] = _to_numpy(self.intercept_)
        elif self.loss == "z_loss":
            coef[...] = centred_class_means()
        return theta

    def decision_function(self, X):
        """The logits ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : array of shape (n_samples,) for two classes, else (n_samples, n_classes)
            For two classes, the logit of ``classes_[1]`` against ``classes_[0]``.

        Examples
        --------
        >>> import numpy as np
        >>> from softarray.sklearn import SoftmaxClassifier
        >>> X = np.array([[-1.0], [-0.5], [0.5], [1.0]])
        >>> clf = SoftmaxClassifier().fit(X, [0, 0, 1, 1])
        >>> clf.decision_function(np.array([[2.0]])).shape
        (1,)
        """
        check_is_fitted(self)
        if _is_dask(X):
            return _lazy(self, "decision_function", X)
        xp, _ = get_namespace(X)
        check_same_namespace(X, self, attribute="coef_", method="decision_function")
        X = validate_data(self, X, dtype=[xp.float64, xp.float32], reset=False)
        dtype = xp.result_type(X.dtype, self.coef_.dtype)
        scores = xp.astype(X, dtype, copy=False) @ xp.astype(self.coef_, dtype, copy=False).T
        scores = scores + xp.astype(self.intercept_, dtype, copy=False)
        return xp.reshape(scores, (-1,)) if self.classes_.shape[0] == 2 else scores

    def _logits(self, X, method):
        """The logits of every class, (n_samples, n_classes)."""
        check_same_namespace(X, self, attribute="coef_", method=method)
        xp, _ = get_namespace(X)
        scores = self.decision_function(X)
        if scores.ndim == 2:
            return scores
        return xp.stack([xp.zeros_like(scores), scores], axis=1)

    def predict_proba(self, X):
        """Class probabilities, ``softarray.softmax`` of the logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : array of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from softarray.sklearn import SoftmaxClassifier
        >>> X = np.array([[-1.0], [-0.5], [0.5], [1.0]])
        >>> clf = SoftmaxClassifier().fit(X, [0, 0, 1, 1])
        >>> p = clf.predict_proba(np.array([[0.0], [5.0]]))
        >>> p.shape, bool(p[1, 1] > 0.9)
        ((2, 2), True)
        """
        if _is_dask(X):
            return _lazy(self, "predict_proba", X)
        return softmax(self._logits(X, "predict_proba"), axis=-1)

    def predict_log_proba(self, X):
        """Log-probabilities, ``softarray.log_softmax`` of the logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : array of shape (n_samples, n_classes)

        Examples
        --------
        >>> import numpy as np
        >>> from softarray.sklearn import SoftmaxClassifier
        >>> X = np.array([[-1.0], [-0.5], [0.5], [1.0]])
        >>> clf = SoftmaxClassifier().fit(X, [0, 0, 1, 1])
        >>> bool(np.allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X)))
        True
        """
        if _is_dask(X):
            return _lazy(self, "predict_log_proba", X)
        return log_softmax(self._logits(X, "predict_log_proba"), axis=-1)

    def predict(self, X):
        """The class of largest logit for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : array of shape (n_samples,)
            Labels from ``classes_``; in X's namespace unless they are strings.

        Examples
        --------
        >>> import numpy as np
        >>> from softarray.sklearn import SoftmaxClassifier
        >>> X = np.array([[-1.0], [-0.5], [0.5], [1.0]])
        >>> SoftmaxClassifier().fit(X, ["no", "no", "yes", "yes"]).predict(np.array([[2.0]]))
        array(['yes'], dtype='<U3')
        """
        if _is_dask(X):
            return _lazy(self, "predict", X)
        check_same_namespace(X, self, attribute="coef_", method="predict")
        xp, _, device = get_namespace_and_device(X)
        scores = self.decision_function(X)
        index = xp.astype(scores > 0, xp.int64) if scores.ndim == 1 else xp.argmax(scores, axis=1)
        labels = self.classes_[_to_numpy(index)]
        if labels.dtype.kind in "OUS":
            return labels
        return move_to(labels, xp=xp, device=device)

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
            The (weighted) fraction of correct predictions; for Dask X, a
            lazy 0-d Dask array.

        Examples
        --------
        >>> import numpy as np
        >>> from softarray.sklearn import SoftmaxClassifier
        >>> X = np.array([[-1.0], [-0.5], [0.5], [1.0]])
        >>> SoftmaxClassifier().fit(X, [0, 0, 1, 1]).score(X, [0, 0, 1, 0])
        0.75
        """
        if _is_dask(X):
            check_is_fitted(self)
            return _dask_support().score(self, X, y, sample_weight)
        return super().score(X, y, sample_weight=sample_weight)


# ------------------------------------------------------------------ log_loss

@validate_params(
    {
        "y_true": ["array-like"],
        "y_proba": ["array-like"],
        "normalize": ["boolean"],
        "sample_weight": ["array-like", None],
        "labels": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def log_loss(y_true, y_proba, *, normalize=True, sample_weight=None, labels=None):
    r"""Log loss (cross-entropy of predicted probabilities), as scikit-learn's.

    The same arguments, result, warnings and exception types as
    ``sklearn.metrics.log_loss`` (the installed 1.9 keyword ``y_pred``, a
    deprecated alias of ``y_proba``, is not accepted). Probabilities are
    clipped to ``[eps, 1 - eps]`` (``eps`` of their dtype), and rows that do
    not sum to 1 are used as given, with a ``UserWarning``. When ``y_true``
    holds class labels (not an indicator matrix) only the probability of each
    sample's own class is clipped and logged, not the whole matrix.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_classes)
        Class labels, or a label indicator matrix.
    y_proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, columns in the sorted order of the labels
        (as ``predict_proba``); 1-D means the probability of the positive
        (larger) label of a binary problem.
    normalize : bool, default=True
        Return the (weighted) mean over samples, else the (weighted) sum.
    sample_weight : array-like of shape (n_samples,), default=None
    labels : array-like, default=None
        All the class labels, when ``y_true`` lacks some.

    Returns
    -------
    loss : float

    Examples
    --------
    >>> from softarray.sklearn import log_loss
    >>> round(log_loss(["spam", "ham", "ham", "spam"],
    ...                [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]), 5)
    0.21616
    """
    xp, _, device = get_namespace_and_device(y_proba)
    y_proba = check_array(y_proba, ensure_2d=False, dtype=supported_float_dtypes(xp, device=device))
    proba = _to_numpy(y_proba)
    if proba.max() > 1:
        raise ValueError(f"y_proba contains values greater than 1: {proba.max()}")
    if proba.min() < 0:
        raise ValueError(f"y_proba contains values lower than 0: {proba.min()}")
    y_true = _to_numpy(y_true)
    sample_weight = _to_numpy(sample_weight)
    check_consistent_length(proba, y_true, sample_weight)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, proba, force_float_dtype=False)
    binarizer = _label_binarizer(y_true, labels)
    n_columns = 2 if proba.ndim == 1 or proba.shape[1] == 1 else proba.shape[1]
    # A positive-class column alone is completed to rows summing to 1.
    if proba.ndim == 2 and proba.shape[1] > 1 and not np.all(np.isclose(proba.sum(axis=1), 1,
                                               rtol=math.sqrt(np.finfo(proba.dtype).eps))):
        warnings.warn("The y_proba values do not sum to one. Make sure to pass probabilities.",
                      UserWarning, stacklevel=2)
    n_classes = binarizer.classes_.shape[0]
    if n_classes != n_columns:
        if labels is None:
            raise ValueError(f"y_true and y_proba contain different numbers of classes: {n_classes} "
                             f"vs {n_columns}. Pass all the labels through the labels argument. "
                             f"Classes found in y_true: {binarizer.classes_}")
        raise ValueError(f"The number of classes in labels ({n_classes}) differs from that in "
                         f"y_proba ({n_columns}). Classes found in labels: {binarizer.classes_}")
    losses = _per_sample_log_loss(y_true, proba, binarizer)
    if normalize:
        return float(np.average(losses, weights=sample_weight))
    return float(losses.sum() if sample_weight is None else np.dot(losses, sample_weight))


def _label_binarizer(y_true, labels):
    """scikit-learn's label checks: a LabelBinarizer fitted on labels (or y_true)."""
    if labels is None:
        binarizer = LabelBinarizer().fit(y_true)
        if binarizer.classes_.shape[0] == 1:
            raise ValueError(f"y_true contains only one label ({binarizer.classes_[0]}). Pass the "
                             "list of all expected class labels through the labels argument.")
        return binarizer
    labels = _to_numpy(labels)
    binarizer = LabelBinarizer().fit(labels)
    if not np.all(binarizer.classes_ == labels):
        warnings.warn(f"Labels passed were {labels}. But this function assumes labels are ordered "
                      f"lexicographically. Pass the ordered labels={binarizer.classes_.tolist()} and "
                      "ensure that the columns of y_proba correspond to this ordering.",
                      UserWarning, stacklevel=3)
    if not np.all(np.isin(y_true, labels)):
        raise ValueError(f"y_true contains values {set(np.unique(y_true)) - set(labels)} not "
                         f"belonging to the passed labels {labels}.")
    if binarizer.classes_.shape[0] == 1:
        raise ValueError(f"The labels array needs to contain at least two labels, got "
                         f"{binarizer.classes_}.")
    return binarizer


def _per_sample_log_loss(y_true, proba, binarizer):
    """-log of each sample's clipped probability of its class; for an
    indicator y_true, -sum_c t_c log(clipped p_c)."""
    eps = np.finfo(proba.dtype).eps
    if proba.ndim == 1 or proba.shape[1] == 1:
        positive = proba.reshape(-1)
        proba = np.stack([1 - positive, positive], axis=1)
    if type_of_target(y_true) in ("binary", "multiclass"):
        index = np.searchsorted(binarizer.classes_, y_true)
        picked = np.take_along_axis(proba, index[:, None], axis=1)[:, 0]
        return -np.log(np.clip(picked, eps, 1 - eps))
    indicator = binarizer.transform(y_true)
    if indicator.shape[1] == 1:
        indicator = np.concatenate([1 - indicator, indicator], axis=1)
    indicator = indicator.astype(proba.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = indicator * np.log(np.clip(proba, eps, 1 - eps))
    return -np.where(indicator == 0, 0, terms).sum(axis=1)
