"""Ctrl-C stops long compiled calls (src/_interrupt.h).

Each long call starts in the main thread; once that thread is inside the
compiled kernel (its innermost Python frame is at a ``_kernels.`` call in
softarray), a second thread waits SIGNAL_DELAY more and sends SIGINT to the
process, as Ctrl-C in a terminal does. The kernel must raise the
KeyboardInterrupt itself (the innermost frame of its traceback is the .pyx
wrapper; without the checks Python raises it only after the kernel returns,
from the next line of Python), within LATENCY_BOUND of the signal. Without
the signal the calls take 0.16-0.22 s (box_iou and the loss gradient, whose
outputs grow with the work) to 5 s on a 2-core machine. The process must
then work as before: a follow-up call agrees with a plain NumPy reference
written here. Repeated interrupts must not leak memory, and a SIGINT handler
that does not raise must run during a call without changing its result.

A call that never returned would hang CI: faulthandler dumps every thread's
stack and ends the process after HANG_GUARD seconds instead.
"""
import faulthandler
import gc
import linecache
import os
import signal
import sys
import threading
import time
import traceback
import tracemalloc

import numpy as np
import pytest
import scipy.special

import softarray as sa
from memory import rss_bytes

SIGNAL_DELAY = 0.01     # seconds from entering the kernel to SIGINT
LATENCY_BOUND = 1.0     # seconds from SIGINT to KeyboardInterrupt (measured: 7-24 ms, 200 ms loaded)
HANG_GUARD = 120        # seconds before a stuck test ends the process


@pytest.fixture(autouse=True)
def default_sigint_and_hang_guard():
    """Python's default SIGINT handler (it raises KeyboardInterrupt) during
    each test, and the hang guard around it."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run only in the main thread")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.dump_traceback_later(HANG_GUARD, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGINT, previous)


def in_kernel(thread_id):
    """Whether the thread is in a compiled kernel: its innermost Python frame
    is at a line of softarray that calls one (``_kernels.name(...)``)."""
    frame = sys._current_frames().get(thread_id)
    if frame is None or "softarray" not in frame.f_code.co_filename:
        return False
    return "_kernels." in linecache.getline(frame.f_code.co_filename, frame.f_lineno)


def send_sigint_in_kernel(thread_id, returned, delay, sent_at):
    """Thread body: once the thread is in a compiled kernel (or its call has
    returned, an Event), wait delay seconds more (less if the call returns),
    then send SIGINT to the process; its time goes to sent_at."""
    while not (in_kernel(thread_id) or returned.is_set()):
        time.sleep(0.001)
    returned.wait(delay)
    sent_at.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)


def interrupt(call, delay=SIGNAL_DELAY):
    """Run call() while another thread sends SIGINT delay seconds after
    call() enters a compiled kernel. Returns (seconds from the signal to the
    KeyboardInterrupt, the file of the innermost frame that raised it)."""
    returned, sent_at = threading.Event(), []
    sender = threading.Thread(target=send_sigint_in_kernel,
                              args=(threading.get_ident(), returned, delay, sent_at))
    sender.start()
    try:
        call()
        returned.set()
        sender.join()
        time.sleep(LATENCY_BOUND)       # the pending KeyboardInterrupt is raised here
    except KeyboardInterrupt as exc:
        raised_at = time.perf_counter()
        raised_in = traceback.extract_tb(exc.__traceback__)[-1].filename
    else:
        pytest.fail("SIGINT raised no KeyboardInterrupt")
    finally:
        returned.set()
        sender.join()
    return raised_at - sent_at[0], raised_in


# ============================================================ references

def ref_iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def by_score(indices, scores):
    """indices by decreasing score, ties by the lower index."""
    indices = np.sort(np.asarray(indices, np.int64))
    return indices[np.argsort(-scores[indices], kind="stable")]


def ref_nms(boxes, scores, threshold):
    iou = ref_iou(boxes, boxes)
    suppressed = np.zeros(len(scores), bool)
    kept = []
    for i in by_score(np.arange(len(scores)), scores):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= iou[i] > threshold
    return np.array(kept, np.int64)


def ref_soft_nms(boxes, scores, iou_threshold=0.3, score_threshold=0.001):
    """Linear Soft-NMS: (selected indices, their decayed scores) in order of selection."""
    iou = ref_iou(boxes, boxes)
    current = scores.astype(np.float64)
    remaining = [i for i in range(len(scores)) if current[i] >= score_threshold]
    kept, kept_scores = [], []
    while remaining:
        best = max(remaining, key=lambda i: (current[i], -i))
        kept.append(best)
        kept_scores.append(current[best])
        remaining.remove(best)
        for i in remaining:
            if iou[best, i] > iou_threshold:
                current[i] *= 1 - iou[best, i]
        remaining = [i for i in remaining if current[i] >= score_threshold]
    return np.array(kept, np.int64), np.array(kept_scores)


def per_label(ref, boxes, scores, labels, **opts):
    """ref on each label's boxes; indices into boxes, merged by decreasing
    (decayed) score."""
    kept, values = [], np.zeros(len(scores))
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        result = ref(boxes[idx], scores[idx], **opts)
        if isinstance(result, tuple):
            values[idx[result[0]]] = result[1]
            result = result[0]
        else:
            values[idx[result]] = scores[idx[result]]
        kept.extend(idx[result])
    return by_score(kept, values), values


def softmax(z):
    return np.exp(z - scipy.special.logsumexp(z, axis=-1, keepdims=True))


def ref_cross_entropy(logits, target):
    """Mean cross-entropy and its gradient, in float64."""
    z = logits.astype(np.float64)
    n = len(target)
    loss = np.mean(scipy.special.logsumexp(z, axis=1) - z[np.arange(n), target])
    grad = softmax(z)
    grad[np.arange(n), target] -= 1
    return loss, grad / n


# ================================================================ cases

def _boxes(rng, n, extent):
    xy = rng.random((n, 2), dtype=np.float32) * extent
    wh = rng.random((n, 2), dtype=np.float32) * 30 + 1
    return np.concatenate([xy, xy + wh], axis=1)


def _small_boxes(rng, n=120):
    """float64 boxes that overlap often, scores without ties."""
    return _boxes(rng, n, 100).astype(np.float64), rng.permutation(n) / n + 0.01


def case_nms(rng):
    boxes, scores = _boxes(rng, 2_000_000, 2500), rng.random(2_000_000, dtype=np.float32)
    small, small_scores = _small_boxes(rng)

    def check():
        np.testing.assert_array_equal(sa.nms(small, small_scores, 0.4),
                                      ref_nms(small, small_scores, 0.4))
    return lambda: sa.nms(boxes, scores, 0.5), check


def case_batched_nms(rng):
    n = 3_000_000
    boxes, scores = _boxes(rng, n, 2500), rng.random(n, dtype=np.float32)
    labels = rng.integers(0, 8, n)
    small, small_scores = _small_boxes(rng)
    small_labels = rng.integers(0, 3, len(small_scores))

    def check():
        want, _ = per_label(ref_nms, small, small_scores, small_labels, threshold=0.4)
        np.testing.assert_array_equal(sa.batched_nms(small, small_scores, small_labels, 0.4), want)
    return lambda: sa.batched_nms(boxes, scores, labels, 0.5), check


def case_soft_nms(rng):
    boxes, scores = _boxes(rng, 1_000_000, 2500), rng.random(1_000_000, dtype=np.float32)
    small, small_scores = _small_boxes(rng, 60)

    def check():
        got, got_scores = sa.soft_nms(small, small_scores)
        want, want_scores = ref_soft_nms(small, small_scores)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-12)
    return lambda: sa.soft_nms(boxes, scores), check


def case_batched_soft_nms(rng):
    n = 2_000_000
    boxes, scores = _boxes(rng, n, 2500), rng.random(n, dtype=np.float32)
    labels = rng.integers(0, 20, n)
    small, small_scores = _small_boxes(rng, 60)
    small_labels = rng.integers(0, 3, len(small_scores))

    def check():
        got, got_scores = sa.batched_soft_nms(small, small_scores, small_labels)
        want, decayed = per_label(ref_soft_nms, small, small_scores, small_labels)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got_scores, decayed[want], rtol=1e-12)
    return lambda: sa.batched_soft_nms(boxes, scores, labels), check


def case_box_iou(rng):
    boxes = _boxes(rng, 16000, 1000)          # a 1 GB result
    small, _ = _small_boxes(rng, 50)

    def check():
        np.testing.assert_allclose(sa.box_iou(small, small[::-1]), ref_iou(small, small[::-1]),
                                   rtol=1e-12, atol=0)
    return lambda: sa.box_iou(boxes, boxes), check


def _wide_rows(rng):
    return rng.random((6000, 20000), dtype=np.float32)


def case_topk(rng):
    x = _wide_rows(rng)
    small = rng.standard_normal((40, 300))

    def check():
        values, indices = sa.topk(small, 7)
        want = np.argsort(-small, axis=1, kind="stable")[:, :7]
        np.testing.assert_array_equal(indices, want)
        np.testing.assert_array_equal(values, np.take_along_axis(small, want, axis=1))
    return lambda: sa.topk(x, 2000), check


def case_topk_gating(rng):
    x = _wide_rows(rng)
    small = rng.standard_normal((40, 16))

    def check():
        gate = sa.topk_gating(small, 3)
        want = np.argsort(-small, axis=1, kind="stable")[:, :3]
        p = np.take_along_axis(softmax(small), want, axis=1)
        np.testing.assert_array_equal(gate.indices, want)
        np.testing.assert_allclose(gate.weights, p / p.sum(axis=1, keepdims=True), rtol=1e-12)
    return lambda: sa.topk_gating(x, 2000), check


def _check_cross_entropy(rng):
    small, small_target = rng.standard_normal((30, 7)), rng.integers(0, 7, 30)

    def check():
        loss, grad = sa.cross_entropy(small, small_target, return_grad=True)
        want_loss, want_grad = ref_cross_entropy(small, small_target)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-15)
    return check


def case_cross_entropy(rng):
    """With the gradient: its output grows with the work (640 MB here)."""
    logits = rng.random((80_000, 2000), dtype=np.float32) * 8
    target = rng.integers(0, 2000, 80_000)
    return (lambda: sa.cross_entropy(logits, target, return_grad=True),
            _check_cross_entropy(rng))


def case_cross_entropy_loss(rng):
    """The loss alone, of 4e9 logits that are one row read again (stride 0):
    the same loop over samples as with the gradient, for seconds."""
    logits = np.broadcast_to(rng.random((1, 1000), dtype=np.float32) * 8, (4_000_000, 1000))
    target = rng.integers(0, 1000, 4_000_000)
    return lambda: sa.cross_entropy(logits, target), _check_cross_entropy(rng)


def case_linear_cross_entropy(rng):
    emb = rng.random((2048, 1024), dtype=np.float32) - 0.5
    cls = (rng.random((16384, 1024), dtype=np.float32) - 0.5) * 0.1
    target = rng.integers(0, 16384, 2048)
    small_emb, small_cls = rng.standard_normal((25, 6)), rng.standard_normal((9, 6))
    small_target = rng.integers(0, 9, 25)

    def check():
        loss, (d_emb, d_cls) = sa.linear_cross_entropy(small_emb, small_cls, small_target,
                                                       return_grad=True)
        want_loss, g = ref_cross_entropy(small_emb @ small_cls.T, small_target)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
        np.testing.assert_allclose(d_emb, g @ small_cls, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(d_cls, g.T @ small_emb, rtol=1e-10, atol=1e-15)
    return lambda: sa.linear_cross_entropy(emb, cls, target, return_grad=True), check


CASES = [case_nms, case_batched_nms, case_soft_nms, case_batched_soft_nms, case_box_iou,
         case_topk, case_topk_gating, case_cross_entropy, case_cross_entropy_loss,
         case_linear_cross_entropy]
# Two threads everywhere (the stop flag crosses threads; batched NMS's calling
# thread waits for the other's classes); one thread where the loop differs.
RUNS = ([(case, 2) for case in CASES]
        + [(case_nms, 1), (case_cross_entropy, 1), (case_linear_cross_entropy, 1)])


@pytest.mark.parametrize("case, threads", RUNS,
                         ids=[f"{case.__name__[5:]}-{threads}t" for case, threads in RUNS])
def test_ctrl_c_stops_a_long_call(case, threads):
    call, check = case(np.random.default_rng(7))
    with sa.threads(threads):
        latency, raised_in = interrupt(call)
        where = f"KeyboardInterrupt {latency:.3f} s after SIGINT, raised in {raised_in}"
        assert raised_in.endswith(".pyx"), where
        assert latency < LATENCY_BOUND, where
        check()


def test_repeated_interrupts_do_not_leak():
    """Scratch memory of an interrupted call is freed: neither Python's
    allocations (tracemalloc sees NumPy's buffers) nor the resident memory
    grow over repeated interrupts. Each call's scratch and outputs are tens
    to hundreds of MiB, so keeping one per interrupt would exceed the bounds
    many times over."""
    rng = np.random.default_rng(8)
    calls = [case(rng)[0] for case in (case_nms, case_topk, case_cross_entropy,
                                        case_linear_cross_entropy)]
    rounds = 4

    def interrupt_each():
        for call in calls:
            assert interrupt(call)[1].endswith(".pyx")

    interrupt_each()                     # warm-up: lazy imports, caches, free lists
    gc.collect()
    tracemalloc.start()
    try:
        traced_before, rss_before = tracemalloc.get_traced_memory()[0], rss_bytes()
        for _ in range(rounds):
            interrupt_each()
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
        rss_growth = rss_bytes() - rss_before
    finally:
        tracemalloc.stop()
    assert traced_growth < 64 * 1024, f"tracemalloc grew by {traced_growth} bytes"
    assert rss_growth < 32 * 2**20, f"RSS grew by {rss_growth / 2**20:.1f} MiB"


def test_handler_that_does_not_raise_runs_during_the_call():
    """A SIGINT handler that only records its call runs while the kernel
    works (not after it), and the call goes on to the same result as without
    the signal."""
    rng = np.random.default_rng(9)
    emb = rng.random((2048, 512), dtype=np.float32) - 0.5
    cls = (rng.random((16384, 512), dtype=np.float32) - 0.5) * 0.1
    target = rng.integers(0, 16384, 2048)

    def call():
        return sa.linear_cross_entropy(emb, cls, target, return_grad=True)

    want_loss, (want_d_emb, want_d_cls) = call()
    handled_at, returned = [], threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: handled_at.append(time.perf_counter()))
    sender = threading.Thread(target=send_sigint_in_kernel,
                              args=(threading.get_ident(), returned, SIGNAL_DELAY, []))
    sender.start()
    loss, (d_emb, d_cls) = call()
    returned_at = time.perf_counter()
    returned.set()
    sender.join()
    assert len(handled_at) == 1 and handled_at[0] < returned_at - 0.05, \
        "the handler did not run inside the call"
    assert loss == want_loss
    np.testing.assert_array_equal(d_emb, want_d_emb)
    np.testing.assert_array_equal(d_cls, want_d_cls)
