"""softarray.sklearn: SoftmaxClassifier.fit beside LogisticRegression(solver="lbfgs"),
and log_loss beside sklearn.metrics.log_loss.

Both classifiers solve the same problem (C = 1 / (alpha * n_samples)) at the
same tol and max_iter, each limited to the benchmark's thread count. The
size here keeps asv's repeats short; ``asv_bench/compare_sklearn.py`` runs
the issue's make_classification(200000, 100 features, 20 classes).
"""
import contextlib
import warnings

import numpy as np

from ._common import THREADS, limit_threads, sized

try:
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss as sklearn_log_loss

    from softarray.sklearn import SoftmaxClassifier, log_loss
except ImportError:
    make_classification = None

FIT_SIZE = sized((20_000, 100, 20), (500, 10, 3))    # samples, features, classes
LOG_LOSS_SIZE = sized((200_000, 20), (1000, 5))       # samples, classes
MAX_ITER = 30     # the same number of iterations for both in practice: fit time ~ cost per iteration


def _skip_without_sklearn():
    if make_classification is None:
        raise NotImplementedError("scikit-learn is not installed")


def fit_problem():
    n, d, c = FIT_SIZE
    return make_classification(n_samples=n, n_features=d, n_informative=d // 2, n_classes=c,
                               random_state=0)


def classifiers(n_samples):
    return {
        "softarray": SoftmaxClassifier(alpha=1.0 / n_samples, max_iter=MAX_ITER),
        "sklearn": LogisticRegression(C=1.0, max_iter=MAX_ITER),
    }


class Fit:
    """Fit time of each classifier, MAX_ITER L-BFGS-B iterations at most."""

    params = [["softarray", "sklearn"], THREADS]
    param_names = ["library", "threads"]
    timeout = 300

    def setup(self, library, threads):
        self._limits = contextlib.ExitStack()   # first: asv tears down after a skip too
        _skip_without_sklearn()
        self.X, self.y = fit_problem()
        self.model = classifiers(len(self.y))[library]
        self._limits.enter_context(limit_threads(threads))
        self._limits.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore", ConvergenceWarning)

    def teardown(self, *params):
        self._limits.close()

    def time_fit(self, *params):
        self.model.fit(self.X, self.y)

    def track_n_iter(self, *params):
        return int(self.model.fit(self.X, self.y).n_iter_[0])


class LogLoss:
    """log_loss of class labels against a probability matrix."""

    params = [["softarray", "sklearn"]]
    param_names = ["library"]

    def setup(self, library):
        _skip_without_sklearn()
        n, c = LOG_LOSS_SIZE
        rng = np.random.default_rng(0)
        self.proba = rng.dirichlet(np.ones(c), size=n)
        self.y = rng.integers(0, c, n)
        self.y[:c] = np.arange(c)
        self.fn = log_loss if library == "softarray" else sklearn_log_loss

    def time_log_loss(self, library):
        self.fn(self.y, self.proba)
