"""The compiled kernels release the GIL and are safe to call from many Python
threads at once: the same calls run from 8 Python threads (alone and with
OpenMP threads inside each call) give results bitwise equal to the serial
ones, and the thread limit is one for the whole process: set in one Python
thread (``sa.threads``, ``sa.set_num_threads``, ``threadpoolctl``), it binds
kernels called from every other."""
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import softarray as sa
from softarray._lib import _runtime

WORKERS = 8
ITERATIONS = 3        # each worker runs every case this many times


def _boxes(rng, n, scale=200.0):
    xy = rng.random((n, 2), dtype=np.float32) * scale
    wh = rng.random((n, 2), dtype=np.float32) * 30 + 1
    return np.concatenate([xy, xy + wh], axis=1)


def _cases():
    """name -> zero-argument call. Inputs are sized so that each call runs
    for a few milliseconds on one core: long enough that calls from different
    Python threads overlap inside the kernels, short enough to keep the module
    well under 30 s on two cores."""
    rng = np.random.default_rng(20240601)
    x = rng.standard_normal((256, 2048), dtype=np.float32)
    x64 = rng.standard_normal((128, 1024))
    target = rng.integers(0, x.shape[1], x.shape[0])
    router = rng.standard_normal((4096, 64), dtype=np.float32)
    boxes = _boxes(rng, 4000)
    scores = rng.random(4000, dtype=np.float32)
    labels = rng.integers(0, 5, 4000)
    iou_boxes = _boxes(rng, 600)
    cases = {
        "softmax": lambda: sa.softmax(x),
        "softmax_f64_axis0": lambda: sa.softmax(x64, axis=0),
        "log_softmax_axis0": lambda: sa.log_softmax(x, axis=0),
        "logsumexp": lambda: sa.logsumexp(x),
        "logsumexp_axis0": lambda: sa.logsumexp(x, axis=0),
        "cross_entropy_grad": lambda: sa.cross_entropy(
            x, target, label_smoothing=0.1, return_grad=True),
        "cross_entropy_none": lambda: sa.cross_entropy(x64, target[:128] % 1024, reduction="none"),
        "topk": lambda: sa.topk(x, 8),
        "topk_quickselect_axis0": lambda: sa.topk(x, 64, axis=0, largest=False),
        "topk_gating": lambda: sa.topk_gating(router, 2, capacity_factor=1.25, return_aux=True),
        "nms": lambda: sa.nms(boxes, scores, 0.5),
        "batched_nms": lambda: sa.batched_nms(boxes, scores, labels, 0.5, max_output=1000),
        "soft_nms": lambda: sa.soft_nms(boxes[:1500], scores[:1500], method="gaussian"),
        "box_iou": lambda: sa.box_iou(iou_boxes, iou_boxes[::-1]),
    }
    return cases


CASES = _cases()


def _leaves(result):
    """Flatten a result (array, tuple of arrays, NamedTuple with an ``aux``
    dict, nested tuples) into a list of (path, value) pairs."""
    if isinstance(result, dict):
        return [(f"[{k!r}]{p}", v) for k in sorted(result) for p, v in _leaves(result[k])]
    if isinstance(result, tuple):
        return [(f"[{i}]{p}", v) for i, item in enumerate(result) for p, v in _leaves(item)]
    return [("", result)]


def _assert_bitwise_equal(got, want, name):
    got, want = _leaves(got), _leaves(want)
    assert [p for p, _ in got] == [p for p, _ in want], name
    for (path, g), (_, w) in zip(got, want):
        if g is None or w is None or isinstance(w, (int, float, str)):
            assert g == w, f"{name}{path}"
            continue
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, f"{name}{path}"
        # bitwise: compare the raw bytes, so -0.0 vs 0.0 and NaN payloads count
        assert g.tobytes() == w.tobytes(), f"{name}{path} differs"


def _serial(cases, n_threads):
    with sa.threads(n_threads):
        return {name: call() for name, call in cases.items()}


def _worker(cases, seed, n_threads, reference):
    """Run every case ITERATIONS times in a shuffled order (a different order
    per worker, so different kernels overlap) and compare with the serial
    results. The limit was set by the submitting thread and binds here too."""
    order = [name for name in cases for _ in range(ITERATIONS)]
    random.Random(seed).shuffle(order)
    assert sa.get_num_threads() == n_threads
    for name in order:
        _assert_bitwise_equal(cases[name](), reference[name], name)
    return len(order)


def _check_threads_match_serial(cases, n_threads):
    reference = _serial(cases, n_threads)
    # the serial results themselves are reproducible
    for name, result in _serial(cases, n_threads).items():
        _assert_bitwise_equal(result, reference[name], name)
    with sa.threads(n_threads), ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(_worker, cases, seed, n_threads, reference)
                   for seed in range(WORKERS)]
        done = [f.result() for f in futures]     # re-raises a worker's failure
    assert done == [ITERATIONS * len(cases)] * WORKERS


@pytest.mark.parametrize("n_threads", [1, 2], ids=["omp1", "omp2"])
def test_threads_match_serial(n_threads):
    _check_threads_match_serial(CASES, n_threads)


# linear_cross_entropy holds BLAS to one thread for the whole process while
# its OpenMP threads call it. threadpoolctl >= 3.6 lets only one
# "controlling" Python thread change a pthreads OpenBLAS's limit and silently
# ignored the others, so calls from several Python threads once ran a
# multi-threaded BLAS inside the kernel's OpenMP team: results differed by
# rounding, and in CI (torch loaded) the calls hung. The check runs in a
# subprocess with a deadline, with torch imported where it is installed, so
# that a hang fails the test instead of the suite.
_LINEAR_CROSS_ENTROPY_SCRIPT = """
import importlib.util
if importlib.util.find_spec("torch"):
    import torch  # noqa: F401 (its BLAS and OpenMP runtime, as in CI)
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import softarray as sa

rng = np.random.default_rng(7)
emb = rng.standard_normal((512, 128), dtype=np.float32)
cls = rng.standard_normal((3000, 128), dtype=np.float32)
target = rng.integers(0, 3000, 512)

def call():
    return sa.linear_cross_entropy(emb, cls, target, label_smoothing=0.1, return_grad=True)

def same(a, b):
    return a[0] == b[0] and all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))

for n_threads in (1, 2):
    with sa.threads(n_threads):
        reference = call()

    def worker(_):
        with sa.threads(n_threads):
            return all(same(call(), reference) for _ in range(%(iterations)d))

    with ThreadPoolExecutor(%(workers)d) as pool:
        assert all(pool.map(worker, range(%(workers)d))), f"differs at {n_threads} OpenMP threads"
print("ok")
"""


def test_linear_cross_entropy_from_many_threads_matches_serial(tmp_path):
    script = _LINEAR_CROSS_ENTROPY_SCRIPT % {"iterations": ITERATIONS, "workers": WORKERS}
    # -P and a scratch directory: the installed build, never the source tree.
    done = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def _seen_from_worker_threads(n_workers=4):
    """get_num_threads and the count a kernel call would get, from fresh
    Python threads."""
    with ThreadPoolExecutor(n_workers) as pool:
        return set(pool.map(lambda _: (sa.get_num_threads(), _runtime.thread_limit()),
                            range(n_workers)))


def test_thread_limit_binds_every_python_thread():
    default = sa.get_num_threads()
    with sa.threads(1):
        assert _seen_from_worker_threads() == {(1, 1)}
    assert _seen_from_worker_threads() == {(default, default)}
    sa.set_num_threads(1)
    try:
        assert _seen_from_worker_threads() == {(1, 1)}
    finally:
        sa.set_num_threads(None)
    assert sa.get_num_threads() == default


def test_threads_blocks_that_close_out_of_order_keep_the_open_ones_limit():
    """Worker threads' ``with sa.threads(1)`` blocks close in any order: one
    closing must not undo the limit of another still open (whose calls
    would then run, and round, with the default thread count)."""
    default = sa.get_num_threads()
    first, second = sa.threads(1), sa.threads(1)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)        # the first block closes first
    assert sa.get_num_threads() == 1
    second.__exit__(None, None, None)
    assert sa.get_num_threads() == default
    with sa.threads(1):
        inner = sa.threads(2)
        inner.__enter__()
        assert sa.get_num_threads() == 2    # the newest open block binds
        inner.__exit__(None, None, None)
        assert sa.get_num_threads() == 1
    assert sa.get_num_threads() == default


def test_limit_set_in_a_worker_binds_the_main_thread():
    default = sa.get_num_threads()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(sa.set_num_threads, 1).result()
    try:
        assert sa.get_num_threads() == 1
    finally:
        sa.set_num_threads(None)
    assert sa.get_num_threads() == default


@pytest.mark.skipif(not _runtime.openmp_enabled(), reason="built without OpenMP")
@pytest.mark.parametrize("user_api", [None, "openmp"])
def test_threadpoolctl_limit_binds_every_python_thread(user_api):
    """threadpool_limits sets OpenMP's limit for the calling thread only;
    softarray's controller carries it to kernels called from any thread."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    default = sa.get_num_threads()
    info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "softarray"]
    assert len(info) == 1 and info[0]["user_api"] == "openmp"
    with threadpoolctl.threadpool_limits(limits=1, user_api=user_api):
        assert _seen_from_worker_threads() == {(1, 1)}
        assert sa.get_num_threads() == 1
    assert _seen_from_worker_threads() == {(default, default)}
    # a limit that does not name OpenMP leaves softarray alone
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert _seen_from_worker_threads() == {(default, default)}
