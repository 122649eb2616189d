"""A forked child gets correct results from every family and never hangs,
whatever the parent ran before (docs/threads.md, "Fork").

GNU libgomp's thread pool does not survive ``fork``: a child that opens a
parallel region of more than one thread waits forever for workers that
were not copied. Every test here first runs a parallel kernel in this
process, so the pool exists when the child is forked, and waits on the
child with a deadline, so that a hang fails the test instead of the suite.
"""
import functools
import multiprocessing
import operator
import os
import pickle
import select
import signal
import time

import numpy as np
import pytest

import softarray as sa
from softarray._lib import _runtime

DEADLINE = 120          # seconds; the child's work takes well under 5
pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform"),
    # Python >= 3.12 warns that forking a multi-threaded process may deadlock:
    # that is the very situation these tests check.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def _boxes(rng, n):
    xy = rng.random((n, 2), dtype=np.float32) * 200
    return np.concatenate([xy, xy + rng.random((n, 2), dtype=np.float32) * 30 + 1], axis=1)


def _cases():
    """(name, callable) pairs; each callable is picklable by reference (a
    public function, or a partial of one) so a fork Pool can send it."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((512, 4096), dtype=np.float32)
    x64 = rng.standard_normal((256, 1024))
    target = rng.integers(0, 4096, 512)
    router = rng.standard_normal((8192, 64), dtype=np.float32)
    boxes, scores = _boxes(rng, 3000), rng.random(3000, dtype=np.float32)
    labels = rng.integers(0, 4, 3000)
    emb = rng.standard_normal((256, 64), dtype=np.float32)
    cls = rng.standard_normal((2000, 64), dtype=np.float32)
    p = functools.partial
    return [
        ("softmax", p(sa.softmax, x)),
        ("log_softmax_axis0", p(sa.log_softmax, x64, axis=0)),
        ("logsumexp", p(sa.logsumexp, x)),
        ("stablemax", p(sa.stablemax, x64)),
        ("cross_entropy_grad", p(sa.cross_entropy, x, target, return_grad=True)),
        ("focal_loss", p(sa.focal_loss, x64, target[:256] % 1024, reduction="none")),
        ("topk", p(sa.topk, x, 8)),
        ("topk_gating", p(sa.topk_gating, router, 2)),
        ("nms", p(sa.nms, boxes, scores, 0.5)),
        ("batched_nms", p(sa.batched_nms, boxes, scores, labels, 0.5)),
        ("soft_nms", p(sa.soft_nms, boxes[:1000], scores[:1000])),
        ("box_iou", p(sa.box_iou, boxes[:500], boxes[500:1000])),
        ("linear_cross_entropy", p(sa.linear_cross_entropy, emb, cls, target[:256] % 2000,
                                   return_grad=True)),
    ]


CASES = _cases()


def _leaves(result):
    if isinstance(result, dict):
        return [leaf for k in sorted(result) for leaf in _leaves(result[k])]
    if isinstance(result, tuple):
        return [leaf for item in result for leaf in _leaves(item)]
    return [np.asarray(result)]


def _assert_same(got, want, name):
    got, want = _leaves(got), _leaves(want)
    assert len(got) == len(want), name
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        assert g.tobytes() == w.tobytes(), f"{name}: the forked child's result differs"


@pytest.fixture(scope="module")
def reference():
    """Start OpenMP's pool in this process (a kernel on two threads), then
    the results of every case on one thread, the count a forked child uses."""
    with sa.threads(2):
        sa.softmax(np.ones((2048, 2048), np.float32))
    with sa.threads(1):
        return {name: call() for name, call in CASES}


def _run_all():
    return {name: call() for name, call in CASES}


def _check(results, reference):
    assert sorted(results) == sorted(reference)
    for name, result in results.items():
        _assert_same(result, reference[name], name)


def test_os_fork_child_runs_every_family(reference):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: never return into pytest
        status = 1
        try:
            with os.fdopen(write_end, "wb") as out:
                pickle.dump((sa.get_num_threads(), _runtime.in_forked_child(), _run_all()), out)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], DEADLINE)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung for {DEADLINE} s")
        n_threads, forked, results = pickle.load(pipe)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert (n_threads, forked) == (1, True)
    _check(results, reference)


def test_fork_pool(reference):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pending = pool.map_async(operator.call, [call for _, call in CASES])
        results = pending.get(timeout=DEADLINE)     # TimeoutError instead of a hang
    _check(dict(zip([name for name, _ in CASES], results)), reference)


def test_joblib_multiprocessing_backend(reference):
    joblib = pytest.importorskip("joblib")
    parallel = joblib.Parallel(n_jobs=2, backend="multiprocessing", timeout=DEADLINE)
    results = parallel(joblib.delayed(operator.call)(call) for _, call in CASES)
    _check(dict(zip([name for name, _ in CASES], results)), reference)


class _CaseDataset:
    """A map-style dataset whose item i is the result of case i."""

    def __len__(self):
        return len(CASES)

    def __getitem__(self, i):
        return CASES[i][0], CASES[i][1]()


def test_torch_dataloader_workers(reference):
    torch = pytest.importorskip("torch")
    loader = torch.utils.data.DataLoader(
        _CaseDataset(), batch_size=None, num_workers=2, multiprocessing_context="fork",
        collate_fn=lambda item: item, timeout=DEADLINE)
    results = dict(loader)
    _check(results, reference)


def test_parent_keeps_its_threads_after_forking(reference):
    """The one-thread rule binds the child only."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert not _runtime.in_forked_child()
    with sa.threads(2):
        assert sa.get_num_threads() == 2
        start = time.perf_counter()
        assert np.allclose(sa.softmax(np.zeros((64, 64))).sum(axis=-1), 1.0)
        assert time.perf_counter() - start < DEADLINE
