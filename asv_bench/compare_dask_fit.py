"""SoftmaxClassifier on a Dask cluster, measured (docs/dask.md, "Fitting
SoftmaxClassifier on Dask arrays"):

    python asv_bench/compare_dask_fit.py --part memory      # X larger than a worker's memory limit
    python asv_bench/compare_dask_fit.py --part evaluation  # time per objective evaluation
    python asv_bench/compare_dask_fit.py --part dask-ml     # beside dask-ml's LogisticRegression

Every part starts a LocalCluster of 2 worker processes with one thread each.

* memory: X (float64, made on the workers by dask.array.random) is larger
  than each worker's memory limit; prints the fit's time, the client's
  resident-memory growth as a share of X's size, and the training accuracy.
* evaluation: the same in-memory data fitted in one process at 2 threads
  and on the cluster with the same max_iter; prints the time per objective
  evaluation of each in the steady state (from the first evaluation's end
  to the last one's, over the evaluations between; median over --repeat
  fits) and their ratio. The cluster fit's set-up (persist, classes,
  counts: about two passes over X) comes before and is not counted.
* dask-ml: a binary problem on the cluster, dask_ml.linear_model.
  LogisticRegression (its default solver, L-BFGS) against SoftmaxClassifier
  at the same penalty; prints times, accuracies and the ratio.
"""
import argparse
import os
import statistics
import threading
import time

import dask
import dask.array as da
import distributed
import numpy as np
import psutil
from threadpoolctl import threadpool_limits

import softarray as sa
from softarray import _linear_objective, _sklearn_dask
from softarray.sklearn import SoftmaxClassifier


def cluster(memory_limit="auto"):
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    memory_limit=memory_limit, dashboard_address=None)


def lazy_problem(n, d, n_classes, chunk_rows, seed=0):
    """(X, y) made blockwise on the workers: y is the class of largest
    score under fixed random weights plus noise."""
    rng = da.random.default_rng(seed)
    X = rng.standard_normal((n, d), chunks=(chunk_rows, d))
    W = np.random.default_rng(seed + 1).standard_normal((d, n_classes))
    noise = rng.gumbel(size=(n, n_classes), chunks=(chunk_rows, n_classes))
    y = da.argmax(X @ W + 2.0 * noise, axis=1)
    return X, y


class Counted:
    """Counts the calls of a module function it replaces, and times them:
    ``steady`` is the mean time from one call's end to the next one's, the
    time per evaluation without the fit's set-up."""

    def __init__(self, module, name):
        self.module, self.name, self.calls, self.ends = module, name, 0, []
        self.original = getattr(module, name)

    @property
    def steady(self):
        return (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)

    def __enter__(self):
        def counted(*args, **kwargs):
            self.calls += 1
            result = self.original(*args, **kwargs)
            self.ends.append(time.perf_counter())
            return result
        setattr(self.module, self.name, counted)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)


class PeakRSS:
    """The client's largest resident set size, sampled every 10 ms."""

    def __enter__(self):
        self.rss, self._done = psutil.Process().memory_info().rss, threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def _sample(self):
        while not self._done.wait(0.01):
            self.rss = max(self.rss, psutil.Process().memory_info().rss)

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def part_memory(args):
    n, d = args.rows, 100
    x_bytes = n * d * 8
    limit = int(x_bytes * 0.6)
    print(f"X: {n} x {d} float64 = {x_bytes / 2**30:.2f} GiB; worker memory limit "
          f"{limit / 2**30:.2f} GiB each (2 workers)")
    with cluster(memory_limit=limit) as c, distributed.Client(c):
        X, y = lazy_problem(n, d, 4, 20_000)
        client_rss = psutil.Process().memory_info().rss
        with PeakRSS() as peak, Counted(_sklearn_dask, "penalized") as evaluations:
            t0 = time.perf_counter()
            model = SoftmaxClassifier(max_iter=args.max_iter).fit(X, y)
            seconds = time.perf_counter() - t0
        accuracy = float(model.score(X, y).compute())
    growth = peak.rss - client_rss
    print(f"fit: {seconds:.1f} s, {evaluations.calls} objective evaluations, "
          f"n_iter_ {model.n_iter_[0]}, training accuracy {accuracy:.4f}")
    print(f"client RSS growth: {growth / 2**20:.1f} MiB = {100 * growth / x_bytes:.2f}% of X")


def part_evaluation(args):
    n, d, k = args.rows, 50, 10
    X, y = dask.compute(*lazy_problem(n, d, k, max(n // 16, 1)), scheduler="threads")
    print(f"X: {n} x {d} float64 ({X.nbytes / 2**20:.0f} MiB), {k} classes, "
          f"max_iter={args.max_iter}, median of {args.repeat}")
    params = {"max_iter": args.max_iter, "tol": 1e-12}
    memory = []
    for _ in range(args.repeat):
        with threadpool_limits(2), sa.threads(2), \
                Counted(_linear_objective.LinearObjective, "sums") as calls:
            SoftmaxClassifier(**params).fit(X, y)
            memory.append(calls.steady)
    spread = []
    with cluster() as c, distributed.Client(c):
        Xd = da.from_array(X, chunks=(max(n // 16, 1), d))
        yd = da.from_array(y, chunks=max(n // 16, 1))
        Xd, yd = dask.persist(Xd, yd)
        for _ in range(args.repeat):
            with Counted(_sklearn_dask, "penalized") as calls:
                SoftmaxClassifier(**params).fit(Xd, yd)
                spread.append(calls.steady)
    m, s = statistics.median(memory), statistics.median(spread)
    print(f"in memory, 2 threads:        {1e3 * m:8.2f} ms per evaluation")
    print(f"cluster, 2 processes:        {1e3 * s:8.2f} ms per evaluation")
    print(f"cluster / in memory:         {s / m:8.2f}x")


def part_dask_ml(args):
    try:
        from dask_ml.linear_model import LogisticRegression
    except ImportError as error:
        print(f"dask-ml does not import: {error}")
        return
    n, d = args.rows, 50
    with cluster() as c, distributed.Client(c):
        X, y = lazy_problem(n, d, 2, max(n // 16, 1))
        X, y = dask.persist(X, y)
        C = 1.0
        times = {"dask-ml": [], "softarray": []}
        scores = {}
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            theirs = LogisticRegression(C=C, solver="lbfgs", max_iter=args.max_iter).fit(X, y)
            times["dask-ml"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            # the same objective: dask-ml's penalty is |w|^2 / (2 C) on the
            # summed loss; SoftmaxClassifier's alpha / 2 |w|^2 on the mean.
            ours = SoftmaxClassifier(alpha=1.0 / (C * n), max_iter=args.max_iter).fit(X, y)
            times["softarray"].append(time.perf_counter() - t0)
        scores["dask-ml"] = float(da.mean(theirs.predict(X) == y).compute())
        scores["softarray"] = float(ours.score(X, y).compute())
    for name in times:
        print(f"{name:<10} fit {statistics.median(times[name]):7.2f} s (median of {args.repeat}), "
              f"training accuracy {scores[name]:.4f}")
    print(f"dask-ml / softarray: {statistics.median(times['dask-ml']) / statistics.median(times['softarray']):.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["memory", "evaluation", "dask-ml"], required=True)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    default_rows = {"memory": 2_000_000, "evaluation": 400_000, "dask-ml": 1_000_000}
    args.rows = args.rows or default_rows[args.part]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    {"memory": part_memory, "evaluation": part_evaluation, "dask-ml": part_dask_ml}[args.part](args)


if __name__ == "__main__":
    main()
