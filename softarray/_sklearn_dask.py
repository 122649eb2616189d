"""SoftmaxClassifier on Dask arrays: a fit over the blocks where they live,
and lazy predictions.

The fit persists X (with the class indices and sample weights) on the
workers once. Each evaluation of the L-BFGS-B objective sends the current
parameters to every block, where :meth:`LinearObjective.sums` runs the
fused loss-and-gradient kernel on the block's rows and returns the loss and
gradient sums only (``n_classes x n_features`` numbers); a tree of sums
adds them up and the client steps L-BFGS-B. X never travels to the
client. Losing a worker mid-fit costs the recomputation of its blocks from
their graph, which Dask's scheduler does by itself.

:mod:`softarray.sklearn` imports this module only for Dask input.
"""
import dask
import dask.array as da
import numpy as np
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets

from ._linear_objective import LinearObjective, ParameterLayout, penalized

# Blocks' sums added per task of the tree (Dask's own reductions use 4-32).
_FAN_IN = 8


def fit(estimator, X, y, sample_weight):
    """SoftmaxClassifier.fit on Dask input (see the module's text)."""
    X = _rows(X)
    y = _labels(y, X)
    weights = None if sample_weight is None else _sample_weight(sample_weight, X)
    classes = np.unique(da.unique(y).compute())
    check_classification_targets(classes)
    estimator.classes_ = classes
    n_classes = classes.shape[0]
    estimator._check_loss_options(n_classes)
    y_index = y.map_blocks(lambda block: np.searchsorted(classes, block), dtype=np.intp)
    X, y_index, weights = dask.persist(X, y_index, weights)

    counts, finite, non_negative = dask.compute(
        da.bincount(y_index, weights=weights, minlength=n_classes),
        da.isfinite(X).all(), True if weights is None else (weights >= 0).all())
    if not finite:
        raise ValueError("Input X contains NaN or infinity.")
    if not non_negative:
        raise ValueError("Negative values in data passed to `sample_weight`")
    weights = _class_weighted(estimator.class_weight, classes, y_index, weights, counts)
    if weights is not None:
        weights = weights.persist()
    total_weight = float(X.shape[0]) if weights is None else float(weights.sum().compute())
    if not total_weight > 0:
        raise ValueError("sample_weight times class_weight sums to zero: nothing to fit")

    options = estimator._model_options(n_classes)
    layout = ParameterLayout(n_classes, X.shape[1], options["fit_intercept"])
    blocks = _blocks(X, y_index, weights)

    def objective(theta):
        sums = _tree_sum([dask.delayed(_block_sums)(*block, theta, options) for block in blocks])
        return penalized(layout, options["alpha"], theta, sums.compute(), total_weight)

    theta = estimator._initial_parameters(
        layout, lambda: _centred_class_means(X, y_index, n_classes))
    estimator.n_features_in_ = X.shape[1]
    estimator._minimize(objective, theta, layout, X.dtype, np, "cpu")
    return estimator


def _rows(X):
    """X (a Dask array) as a Dask array of float32 or float64 rows, whole
    along the features."""
    if not isinstance(X, da.Array):
        raise TypeError(f"X must be a Dask array, got {type(X).__name__} (a Dask DataFrame "
                        "becomes one by X.to_dask_array(lengths=True))")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D Dask array for X, got {X.ndim}-D")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has blocks of unknown length: make it with "
                         "DataFrame.to_dask_array(lengths=True) or compute_chunk_sizes()")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"Found array with shape {X.shape}: SoftmaxClassifier needs at least "
                         "one sample and one feature")
    if X.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise ValueError(f"X must hold numbers, got dtype {X.dtype}")
        X = X.astype(np.float64)
    return X.rechunk({1: -1})


def _along_rows(v, X, name):
    """v (Dask or NumPy, 1-D, one entry per row of X) in X's row blocks."""
    v = v if isinstance(v, da.Array) else da.from_array(np.asarray(v), chunks=-1)
    if v.ndim != 1 or v.shape[0] != X.shape[0]:
        raise ValueError(f"{name} must hold one entry per sample of X ({X.shape[0]}), got shape "
                         f"{v.shape}")
    return v.rechunk((X.chunks[0],))


def _labels(y, X):
    y = _along_rows(y, X, "y")
    if y.dtype.kind == "f":
        y = y.map_blocks(_finite_labels, dtype=y.dtype)
    return y


def _finite_labels(block):
    if not np.isfinite(block).all():
        raise ValueError("Input y contains NaN or infinity.")
    return block


def _sample_weight(sample_weight, X):
    if np.ndim(sample_weight) == 0:
        return da.full(X.shape[0], float(sample_weight), chunks=(X.chunks[0],))
    return _along_rows(sample_weight, X, "sample_weight").astype(np.float64)


def _class_weighted(class_weight, classes, y_index, weights, counts):
    """Per-sample weights times class_weight[y] (scikit-learn's
    compute_class_weight: "balanced" is the total weight over n_classes
    times each class's weight), or None when every weight is 1."""
    if class_weight is None:
        return weights
    if class_weight == "balanced":
        per_class = counts.sum() / (classes.shape[0] * counts)
    else:   # a dict, which does not depend on y beyond its classes
        per_class = compute_class_weight(class_weight, classes=classes, y=classes)
    per_sample = y_index.map_blocks(lambda block: per_class[block], dtype=np.float64)
    return per_sample if weights is None else weights * per_sample


def _blocks(X, y_index, weights):
    """(X block, class indices, weights or None) per non-empty block of rows."""
    xs = X.to_delayed().ravel()
    ys = y_index.to_delayed().ravel()
    ws = [None] * len(xs) if weights is None else weights.to_delayed().ravel()
    return [(x, y, w) for x, y, w, n in zip(xs, ys, ws, X.chunks[0]) if n]


def _block_sums(X, y_index, weights, theta, options):
    """The loss and gradient sums of one block's samples (runs on a worker)."""
    X = np.ascontiguousarray(X)
    return LinearObjective(X, np.ascontiguousarray(y_index), weights, **options).sums(theta)


def _tree_sum(parts):
    """One delayed (loss, gradient) total of delayed parts, added _FAN_IN at a time."""
    while len(parts) > 1:
        parts = [dask.delayed(_add)(*parts[i:i + _FAN_IN]) for i in range(0, len(parts), _FAN_IN)]
    return parts[0]


def _add(*sums):
    return sum(loss for loss, _ in sums), sum(grad for _, grad in sums)


def _centred_class_means(X, y_index, n_classes):
    """Each class's mean sample minus the mean of all samples, one pass."""
    sums = [dask.delayed(_class_sums)(x, y, n_classes)
            for x, y in zip(X.to_delayed().ravel(), y_index.to_delayed().ravel())]
    class_sums, class_counts = _tree_sum(sums).compute()
    means = class_sums / class_counts[:, None]
    return means - class_sums.sum(axis=0) / class_counts.sum()


def _class_sums(X, y_index, n_classes):
    sums = np.zeros((n_classes, X.shape[1]))
    np.add.at(sums, y_index, X)
    return sums, np.bincount(y_index, minlength=n_classes).astype(np.float64)


# ------------------------------------------------------------ lazy predictions

def lazy(estimator, method, X):
    """``estimator.method`` over the blocks of Dask X, lazily: a Dask array
    of one result block per row block of X."""
    X = _rows(X)
    call = getattr(estimator, method)
    if method == "predict":
        return X.map_blocks(call, drop_axis=1, dtype=estimator.classes_.dtype)
    if method == "decision_function" and estimator.classes_.shape[0] == 2:
        return X.map_blocks(call, drop_axis=1, dtype=X.dtype)
    return X.map_blocks(call, chunks=(X.chunks[0], (estimator.classes_.shape[0],)), dtype=X.dtype)


def score(estimator, X, y, sample_weight):
    """The (weighted) accuracy of ``estimator.predict`` on Dask X, lazily (a
    0-d Dask array)."""
    X = _rows(X)
    correct = lazy(estimator, "predict", X) == _along_rows(y, X, "y")
    if sample_weight is None:
        return correct.mean()
    weights = _along_rows(sample_weight, X, "sample_weight")
    return (correct * weights).sum() / weights.sum()
