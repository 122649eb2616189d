"""No memory leaks: every public function, on its compiled path and on its
error paths (calls that raise ValueError, whose tracebacks hold references to
frames and arrays), is called thousands of times, and neither the memory
Python's allocators hold (tracemalloc, which also sees NumPy's array buffers)
nor the process's resident memory may grow beyond a small bound.

The inputs are sized so that a leak would show: each call's arrays are a few
KiB to a few hundred KiB, so leaking one output, gradient or workspace per
call over CALLS calls exceeds the bounds below many times over, while the
bounds stay well above the noise of allocator caches and free lists.
"""
import gc
import tracemalloc

import numpy as np
import pytest

import softarray as sa
from memory import rss_bytes

# Warm-up calls per function before measuring: caches, lazy imports, free
# lists. linear_cross_entropy's threadpoolctl calls (ctypes symbol look-ups)
# keep allocating for a few hundred calls before they level off (measured:
# +16 KiB over calls 100-300, +2 KiB over 300-1100, then nothing).
WARMUP = 300
CALLS = 200         # measured calls per function (about 12 000 in all)

# tracemalloc: growth of Python-allocated memory over CALLS calls of one
# function. 16 KiB is 80 bytes per call: leaking a NumPy array per call
# (header ~112 bytes, let alone its buffer), a dict (>= 64 + entries) or a
# traceback with its frame fails. Legitimate growth stays below ~6 KiB once
# warm (measured over 200 calls: free lists, and NumPy's own caches behind
# np.array(..., dtype=) and dtype.__str__ on the gumbel paths, which add a
# ~56-byte object every ten calls or so and level off near 10 KiB).
TRACEMALLOC_BOUND = 16 * 1024

# Resident memory over all functions together (about 60 x CALLS calls). RSS
# also sees what tracemalloc cannot: malloc in the C kernels and the OpenMP
# runtime. Leaking one logits-sized buffer (64 KiB) per call over CALLS calls
# of one function is 12.5 MiB; 8 MiB leaves room for glibc arena growth and
# runtime buffers made once (measured: under 2 MiB).
RSS_BOUND = 8 * 1024 * 1024


def _boxes(rng, n):
    xy = rng.random((n, 2), dtype=np.float32) * 100
    wh = rng.random((n, 2), dtype=np.float32) * 20 + 1
    return np.concatenate([xy, xy + wh], axis=1)


def _calls():
    """name -> (public function it covers, zero-argument call)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 256), dtype=np.float32)       # 64 KiB
    x64 = rng.standard_normal((32, 256))
    t = rng.integers(0, 256, 64)
    y = (rng.random((64, 256)) > 0.5).astype(np.float32)
    p = sa.softmax(x[::-1].copy())
    mask = rng.random((64, 256)) > 0.1
    emb = rng.standard_normal((64, 32), dtype=np.float32)
    cls = rng.standard_normal((256, 32), dtype=np.float32)
    bias = rng.standard_normal(256, dtype=np.float32)
    et = rng.integers(0, 256, 64)
    router = rng.standard_normal((128, 16), dtype=np.float32)
    boxes = _boxes(rng, 256)
    scores = rng.random(256, dtype=np.float32)
    labels = rng.integers(0, 4, 256)
    bad_box = boxes[:, :3]
    gen = np.random.default_rng(1)

    def threads_block():
        with sa.threads(1):
            return sa.get_num_threads()

    def set_threads():
        previous = sa.get_num_threads()     # 1: the test runs in sa.threads(1)
        sa.set_num_threads(None)
        sa.set_num_threads(previous)

    ok = {
        "softmax": ("softmax", lambda: sa.softmax(x)),
        "softmax_where": ("softmax", lambda: sa.softmax(x64, axis=0, where=mask[:32])),
        "log_softmax": ("log_softmax", lambda: sa.log_softmax(x, axis=0, temperature=2.0)),
        "logsumexp": ("logsumexp", lambda: sa.logsumexp(x, keepdims=True)),
        "stablemax": ("stablemax", lambda: sa.stablemax(x)),
        "log_stablemax": ("log_stablemax", lambda: sa.log_stablemax(x64, axis=0)),
        "cross_entropy": ("cross_entropy", lambda: sa.cross_entropy(
            x, t, label_smoothing=0.1, ignore_index=3, return_grad=True)),
        "nll_loss": ("nll_loss", lambda: sa.nll_loss(
            sa.log_softmax(x), t, reduction="none", return_grad=True)),
        "bce": ("binary_cross_entropy_with_logits",
                lambda: sa.binary_cross_entropy_with_logits(x, y, return_grad=True)),
        "kl_div": ("kl_div", lambda: sa.kl_div(x, p, from_logits=True, return_grad=True)),
        "z_loss": ("z_loss", lambda: sa.z_loss(x, t, b=1e-4, return_grad=True)),
        "logsumexp_penalty": ("logsumexp_penalty",
                              lambda: sa.logsumexp_penalty(x, return_grad=True)),
        "multi_margin_loss": ("multi_margin_loss",
                              lambda: sa.multi_margin_loss(x, t, p=2, return_grad=True)),
        "focal_loss": ("focal_loss", lambda: sa.focal_loss(x, t, return_grad=True)),
        "sigmoid_focal_loss": ("sigmoid_focal_loss",
                               lambda: sa.sigmoid_focal_loss(x, y, return_grad=True)),
        "comp_sum_loss": ("comp_sum_loss",
                          lambda: sa.comp_sum_loss(x, t, tau=0.5, return_grad=True)),
        "generalized_cross_entropy": ("generalized_cross_entropy",
                                      lambda: sa.generalized_cross_entropy(x, t, return_grad=True)),
        "mae_loss": ("mae_loss", lambda: sa.mae_loss(x, t, return_grad=True)),
        "linear_cross_entropy": ("linear_cross_entropy", lambda: sa.linear_cross_entropy(
            emb, cls, et, bias=bias, return_grad=True)),
        "linear_cross_entropy_fwd": ("linear_cross_entropy", lambda: sa.linear_cross_entropy(
            emb, cls, et, chunk_size=64, reduction="none")),
        "topk": ("topk", lambda: sa.topk(x, 4)),
        "topk_quickselect": ("topk", lambda: sa.topk(x, 40, axis=0, sorted=False)),
        "topk_gating": ("topk_gating", lambda: sa.topk_gating(
            router, 2, capacity_factor=1.0, return_aux=True)),
        "TopKGating": ("TopKGating", lambda: sa.TopKGating(x, t)),
        "BoxShapeError": ("BoxShapeError", lambda: sa.BoxShapeError("boxes")),
        "dense_to_sparse_gating": ("dense_to_sparse_gating",
                                   lambda: sa.dense_to_sparse_gating(router, temperature=0.5)),
        "gumbel_softmax": ("gumbel_softmax", lambda: sa.gumbel_softmax(router, hard=True, rng=gen)),
        "gumbel_topk": ("gumbel_topk", lambda: sa.gumbel_topk(router, 2, rng=gen)),
        "sample": ("sample", lambda: sa.sample(x, top_k=8, top_p=0.9, rng=gen)),
        "sample_nucleus": ("sample", lambda: sa.sample(x, temperature=0.5, top_p=0.5, rng=gen)),
        "box_convert": ("box_convert", lambda: sa.box_convert(boxes, "xyxy", "cxcywh")),
        "box_area": ("box_area", lambda: sa.box_area(boxes)),
        **{f"{v}_box_iou_loss": (f"{v}_box_iou_loss", lambda v=v: getattr(sa, f"{v}_box_iou_loss")(
            boxes, boxes[::-1], "mean", return_grad=True))
           for v in ("generalized", "distance", "complete")},
        "clip_boxes_to_image": ("clip_boxes_to_image",
                                lambda: sa.clip_boxes_to_image(boxes, (50, 60))),
        "remove_small_boxes": ("remove_small_boxes", lambda: sa.remove_small_boxes(boxes, 5.0)),
        "box_iou": ("box_iou", lambda: sa.box_iou(boxes, boxes)),
        "generalized_box_iou": ("generalized_box_iou",
                                lambda: sa.generalized_box_iou(boxes, boxes)),
        "distance_box_iou": ("distance_box_iou", lambda: sa.distance_box_iou(boxes, boxes)),
        "complete_box_iou": ("complete_box_iou", lambda: sa.complete_box_iou(boxes, boxes)),
        "nms": ("nms", lambda: sa.nms(boxes, scores, 0.5, score_threshold=0.1)),
        "batched_nms": ("batched_nms", lambda: sa.batched_nms(boxes, scores, labels, 0.5)),
        "soft_nms": ("soft_nms", lambda: sa.soft_nms(boxes, scores, method="gaussian")),
        "batched_soft_nms": ("batched_soft_nms",
                             lambda: sa.batched_soft_nms(boxes, scores, labels, max_output=50)),
        "show_config": ("show_config", lambda: sa.show_config(print_out=False)),
        "get_num_threads": ("get_num_threads", sa.get_num_threads),
        "set_num_threads": ("set_num_threads", set_threads),
        "threads": ("threads", threads_block),
        "set_output_cache": ("set_output_cache", lambda: sa.set_output_cache(sa.set_output_cache(0))),
    }
    # Error paths: each raises ValueError (checked below), some in validation,
    # some after inputs were converted or arrays allocated.
    failing = {
        "softmax_axis": ("softmax", lambda: sa.softmax(x, axis=2)),
        "log_softmax_where": ("log_softmax", lambda: sa.log_softmax(x, where=mask[:3])),
        "logsumexp_axis": ("logsumexp", lambda: sa.logsumexp(x, axis=-3)),
        "stablemax_axis": ("stablemax", lambda: sa.stablemax(x, axis=5)),
        "cross_entropy_target": ("cross_entropy", lambda: sa.cross_entropy(
            x, t + 256, return_grad=True)),
        "cross_entropy_reduction": ("cross_entropy",
                                    lambda: sa.cross_entropy(x, t, reduction="bogus")),
        "nll_loss_shape": ("nll_loss", lambda: sa.nll_loss(x, t[:3])),
        "bce_shape": ("binary_cross_entropy_with_logits",
                      lambda: sa.binary_cross_entropy_with_logits(x, y[:2])),
        "kl_div_shape": ("kl_div", lambda: sa.kl_div(x, p[:, :2])),
        "focal_gamma": ("focal_loss", lambda: sa.focal_loss(x, t, gamma=-1.0)),
        "gce_q": ("generalized_cross_entropy", lambda: sa.generalized_cross_entropy(x, t, q=2.0)),
        "linear_cross_entropy_shape": ("linear_cross_entropy",
                                       lambda: sa.linear_cross_entropy(emb, cls[:, :3], et)),
        "topk_k": ("topk", lambda: sa.topk(x, 257)),
        "topk_gating_k": ("topk_gating", lambda: sa.topk_gating(router, 17)),
        "gumbel_tau": ("gumbel_softmax", lambda: sa.gumbel_softmax(router, tau=0.0, rng=gen)),
        "sample_top_p": ("sample", lambda: sa.sample(x, top_p=2.0, rng=gen)),
        "box_convert_fmt": ("box_convert", lambda: sa.box_convert(boxes, "xyxy", "nope")),
        "box_iou_shape": ("box_iou", lambda: sa.box_iou(boxes, bad_box)),
        "nms_threshold": ("nms", lambda: sa.nms(boxes, scores, -0.5)),
        "batched_nms_labels": ("batched_nms", lambda: sa.batched_nms(boxes, scores, labels[:3], 0.5)),
        "soft_nms_method": ("soft_nms", lambda: sa.soft_nms(boxes, scores, method="cubic")),
        "set_num_threads_zero": ("set_num_threads", lambda: sa.set_num_threads(0)),
        "threads_zero": ("threads", lambda: sa.threads(0).__enter__()),
        "set_output_cache_negative": ("set_output_cache", lambda: sa.set_output_cache(-1)),
    }
    return ok, failing


OK_CALLS, FAILING_CALLS = _calls()


def _raising(call):
    def run():
        try:
            call()
        except ValueError:
            return
        raise AssertionError("expected ValueError")
    return run


ALL_CALLS = {name: (fn, call) for name, (fn, call) in OK_CALLS.items()}
ALL_CALLS.update({name: (fn, _raising(call)) for name, (fn, call) in FAILING_CALLS.items()})


def test_every_public_function_is_covered():
    covered = {fn for fn, _ in ALL_CALLS.values()}
    assert covered == set(sa.__all__)


def test_error_paths_raise_value_error():
    for name, (_, call) in FAILING_CALLS.items():
        with pytest.raises(ValueError):
            call()


@pytest.fixture
def traced():
    """tracemalloc on for the measurements, and off afterwards. The objects
    that exist beforehand (the test session's: torch alone has hundreds of
    thousands) are frozen out of the collector so that each ``gc.collect``
    looks at the calls' garbage only and takes milliseconds, not a tenth of
    a second."""
    gc.collect()
    gc.freeze()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        yield
    finally:
        if not was_tracing:
            tracemalloc.stop()
        gc.unfreeze()


def _settle():
    """Free the reference cycles that exceptions' tracebacks make."""
    gc.collect()


def _traced_growth(call):
    """Growth of tracemalloc's current memory over CALLS calls, after WARMUP."""
    for _ in range(WARMUP):
        call()
    _settle()
    before, _ = tracemalloc.get_traced_memory()
    for _ in range(CALLS):
        call()
    _settle()
    after, _ = tracemalloc.get_traced_memory()
    return after - before


def test_no_growth(traced):
    # One OpenMP thread: on a small, shared machine a team of threads waiting
    # at barriers for a descheduled peer makes tiny calls take milliseconds;
    # the multi-threaded paths' allocations are the same per-call buffers.
    with sa.threads(1):
        first_name, (_, first_call) = next(iter(ALL_CALLS.items()))
        for _ in range(WARMUP):
            first_call()
        _settle()
        rss_before = rss_bytes()
        growth = {name: _traced_growth(call) for name, (_, call) in ALL_CALLS.items()}
        rss_growth = rss_bytes() - rss_before
    leaking = {name: g for name, g in growth.items() if g > TRACEMALLOC_BOUND}
    assert not leaking, f"tracemalloc grew by (bytes over {CALLS} calls): {leaking}"
    assert rss_growth < RSS_BOUND, f"RSS grew by {rss_growth / 2**20:.1f} MiB"
    print(f"max tracemalloc growth {max(growth.values())} B "
          f"({max(growth, key=growth.get)}), RSS growth {rss_growth / 2**20:.2f} MiB")
