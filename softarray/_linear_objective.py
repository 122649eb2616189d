"""The objective that SoftmaxClassifier minimizes, as a function of its flat
parameters: the weighted mean loss of a linear model plus an L2 penalty.

It lives apart from the estimator so that the in-memory fit
(:mod:`softarray.sklearn`) and the fit over the blocks of a Dask array
(:mod:`softarray._sklearn_dask`) evaluate the same sums: each block of
samples gives its loss and gradient sums (:meth:`LinearObjective.sums`),
and :func:`penalized` turns their total into the objective.
"""
import numpy as np

from ._linear_cross_entropy import weighted_loss_and_classifier_grads
from ._losses import cross_entropy


class ParameterLayout:
    """Where a linear model's parameters lie in the flat vector L-BFGS-B
    steps: ``n_rows`` coefficient rows of ``n_features`` (one row for two
    classes), then the intercepts."""

    def __init__(self, n_classes, n_features, fit_intercept):
        self.n_rows = 1 if n_classes == 2 else n_classes
        self.n_features, self.fit_intercept = n_features, fit_intercept

    @property
    def size(self):
        return self.n_rows * (self.n_features + self.fit_intercept)

    def split(self, theta):
        """(coef of shape (n_rows, n_features), intercept or None) views of theta."""
        n_coef = self.n_rows * self.n_features
        coef = theta[:n_coef].reshape(self.n_rows, self.n_features)
        return coef, (theta[n_coef:] if self.fit_intercept else None)


def penalized(layout, alpha, theta, sums, total_weight):
    """(value, gradient) of the objective at ``theta`` from ``sums``, the
    loss and gradient summed over all samples (whose weights total
    ``total_weight``): the mean loss plus ``alpha / 2`` times the squared
    norm of the coefficients (not the intercepts)."""
    loss_sum, grad_sum = sums
    coef, _ = layout.split(theta)
    scale = 1.0 / total_weight
    value = loss_sum * scale + 0.5 * alpha * float(np.vdot(coef, coef))
    grad = grad_sum * scale
    grad[:coef.size] += alpha * coef.ravel()
    return value, grad


class LinearObjective:
    """The penalized weighted mean loss and its gradient as one function of
    the flat parameters (coefficient rows, then intercepts), for L-BFGS-B.

    Two classes use one coefficient row ``w`` and the logits ``[0, X w + b]``
    (every loss here depends on logit differences only), so the binary model
    is LogisticRegression's, not an over-parametrized pair of rows.

    Cross-entropy is evaluated by the fused linear kernel
    (:func:`softarray.linear_cross_entropy`'s): one pass over X per
    evaluation, each block of rows making its logits, their loss and
    gradient, and its share of the coefficients' gradient while it is in
    cache. The other losses make the (n_samples, n_classes) logits with
    BLAS, call the loss, and multiply its gradient back by X.
    """

    def __init__(self, X, y, weights, *, alpha, n_classes, fit_intercept, loss, loss_kwargs):
        self.X, self.y, self.weights = X, y, weights
        self.alpha, self.fit_intercept = alpha, fit_intercept
        self.loss, self.loss_kwargs = loss, loss_kwargs
        self.binary = n_classes == 2
        self.layout = ParameterLayout(n_classes, X.shape[1], fit_intercept)
        self.n_rows = self.layout.n_rows
        self.total_weight = float(X.shape[0]) if weights is None else float(weights.sum())
        self.fused = loss is cross_entropy
        # Reused by every evaluation; for two classes row (column) 0 stays 0.
        if self.fused:
            self.classifier = np.zeros((n_classes, X.shape[1]), X.dtype)
            self.bias = np.zeros(n_classes, X.dtype) if fit_intercept else None
        else:
            self.logits = np.zeros((X.shape[0], n_classes), X.dtype)

    def split(self, theta):
        return self.layout.split(theta)

    def __call__(self, theta):
        return penalized(self.layout, self.alpha, theta, self.sums(theta), self.total_weight)

    def sums(self, theta):
        """(the weighted loss summed over this objective's samples, its
        gradient as flat float64 parameters): what blocks of samples add up."""
        coef, intercept = self.split(theta)
        evaluate = self._fused_loss_and_grads if self.fused else self._loss_and_grads
        loss_sum, grad_coef, grad_intercept = evaluate(coef, intercept)
        grad = grad_coef.astype(np.float64).ravel()
        if self.fit_intercept:
            grad = np.concatenate([grad, grad_intercept.astype(np.float64)])
        return float(loss_sum), grad

    def _fused_loss_and_grads(self, coef, intercept):
        """(sum of weighted cross-entropies, its gradients w.r.t. coef and
        intercept (None without)) from the fused linear kernel."""
        rows = slice(1, None) if self.binary else slice(None)
        self.classifier[rows] = coef
        if intercept is not None:
            self.bias[rows] = intercept
        loss_sum, d_cls, d_bias = weighted_loss_and_classifier_grads(
            self.X, self.classifier, self.bias, self.y, self.weights, **self.loss_kwargs)
        return loss_sum, d_cls[rows], (None if d_bias is None else d_bias[rows])

    def _loss_and_grads(self, coef, intercept):
        """The same from the logits: BLAS, the loss, BLAS."""
        self._scores(coef.astype(self.X.dtype, copy=False), intercept)
        loss_sum, grad = self._loss_and_logit_grad()
        if self.binary:
            grad = grad[:, 1:]      # the gradient with respect to X w + b
        # X.T @ grad, not grad.T @ X: the same product, but OpenBLAS's
        # threaded kernel for the latter shape ran 5-30x slower at 2 threads.
        grad_coef = (self.X.T @ grad).T
        grad_intercept = grad.sum(axis=0, dtype=np.float64) if self.fit_intercept else None
        return loss_sum, grad_coef, grad_intercept

    def _scores(self, coef, intercept):
        """Write X @ coef.T + intercept into the logits (the model's columns)."""
        if self.binary:
            self.logits[:, 1] = self.X @ coef[0]
            scores = self.logits[:, 1:]
        else:
            scores = np.matmul(self.X, coef.T, out=self.logits)    # no temporary
        if intercept is not None:
            scores += intercept.astype(self.X.dtype)

    def _loss_and_logit_grad(self):
        """(sum of weighted per-sample losses, its gradient w.r.t. the logits)."""
        if self.weights is None:
            loss, grad = self.loss(self.logits, self.y, reduction="sum", return_grad=True,
                                   **self.loss_kwargs)
            return float(loss), grad
        # reduction="none": grad is each sample's own gradient, so the
        # weighted sum's gradient scales each row by its weight.
        losses, grad = self.loss(self.logits, self.y, reduction="none", return_grad=True,
                                 **self.loss_kwargs)
        grad *= self.weights[:, None].astype(grad.dtype)
        return float(np.dot(losses.astype(np.float64), self.weights)), grad
