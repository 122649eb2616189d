"""softarray's box operations (box_convert, box_area, box_iou, nms,
batched_nms, soft_nms, batched_soft_nms) through every backend, against
independent references written here in plain NumPy (never taken from
softarray):

* ``ref_nms``: torchvision's C++ CPU NMS kernel line by line (stable
  descending sort of the scores, NaN first; per pair xx1 = max, ...,
  w = max(0, xx2 - xx1), inter = w * h, ovr = inter / (area_i + area_j -
  inter) in the input dtype, the kept box's area first; suppress when
  float64(ovr) > iou_threshold), with only the inner loop over j vectorized;
* ``ref_nms_fast``: the same greedy loop filtering the unsuppressed tail
  (for large N);
* ``ref_batched_nms``: ``ref_nms`` once per distinct label, merged and sorted
  by decreasing score (NaN first), ties by the lower index;
* ``ref_soft_nms``: the Soft-NMS loop exactly as SPEC states it: the IoU in
  the input dtype (0 unless both boxes are finite with positive width and
  height and inter > 0), the weight in float64 (``math.exp`` for the
  gaussian), the product in float64 rounded once to the dtype, so the
  compiled kernel's decayed scores (its exp is the same C library's) are
  compared bit for bit; the portable path's Gaussian ones, whose exp is the
  array library's, within the bound of ``soft_nms_tolerance``;
* box_convert / box_area / box_iou by torchvision's formulas in the input
  dtype.

torchvision.ops (nms, batched_nms, box_iou, box_convert, box_area) checks
both the references and softarray where it is importable.
"""
import inspect
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softarray as sa
from layouts import memory_layouts
from soft_nms_tolerance import assert_soft_nms_close

try:
    import torch
except ImportError:  # torch is an optional peer; torch-only tests skip
    torch = None
try:
    import ml_dtypes    # NumPy bfloat16 boxes
except ImportError:
    ml_dtypes = None

FLOATS = [np.float32, np.float64]
IOU_THRESHOLDS = [0.0, 0.3, 0.5, 0.7, 1.0]
FORMATS = ["xyxy", "xywh", "cxcywh"]


def tv():
    """torchvision.ops, or skip the test."""
    return pytest.importorskip("torchvision").ops


# ===================================================== references

def descending_order(scores):
    """Indices by decreasing score, NaN first, ties (and -0.0 vs 0.0) by the
    lower index: torch.sort(stable=True, descending=True)."""
    s = np.asarray(scores).astype(np.float64)        # float32 -> float64 is exact
    nan = np.isnan(s)
    v = np.where(nan, 0.0, s) + 0.0                  # -0.0 + 0.0 is +0.0: signed zeros tie
    return np.lexsort((np.arange(s.size), -v, ~nan)).astype(np.int64)


def sort_kept(indices, scores):
    """indices reordered by decreasing scores[indices] (NaN first), ties by
    the lower index."""
    indices = np.sort(np.asarray(indices, np.int64))
    return indices[descending_order(np.asarray(scores)[indices])]


def columns(boxes):
    return tuple(np.ascontiguousarray(boxes[:, k]) for k in range(4))


def cmax(a, b):
    """std::max(a, b) = (a < b) ? b : a."""
    return np.where(a < b, b, a)


def cmin(a, b):
    """std::min(a, b) = (b < a) ? b : a."""
    return np.where(b < a, b, a)


def ref_nms(boxes, scores, iou_threshold):
    """torchvision/csrc/ops/cpu/nms_kernel.cpp, the inner loop vectorized
    (marking an already suppressed j again changes nothing)."""
    boxes = np.asarray(boxes)
    n = boxes.shape[0]
    zero = boxes.dtype.type(0)
    with np.errstate(all="ignore"):
        x1, y1, x2, y2 = columns(boxes)
        areas = (x2 - x1) * (y2 - y1)
        order = descending_order(scores)
        suppressed = np.zeros(n, bool)
        keep = []
        for _i in range(n):
            i = order[_i]
            if suppressed[i]:
                continue
            keep.append(i)
            j = order[_i + 1:]
            xx1 = cmax(x1[i], x1[j])
            yy1 = cmax(y1[i], y1[j])
            xx2 = cmin(x2[i], x2[j])
            yy2 = cmin(y2[i], y2[j])
            w = cmax(zero, xx2 - xx1)
            h = cmax(zero, yy2 - yy1)
            inter = w * h
            ovr = inter / (areas[i] + areas[j] - inter)
            assert ovr.dtype == boxes.dtype
            suppressed[j[ovr.astype(np.float64) > iou_threshold]] = True
    return np.array(keep, np.int64)


def ref_nms_fast(boxes, scores, iou_threshold):
    """The same greedy loop over the shrinking list of unsuppressed boxes."""
    boxes = np.asarray(boxes)
    zero = boxes.dtype.type(0)
    with np.errstate(all="ignore"):
        x1, y1, x2, y2 = columns(boxes)
        areas = (x2 - x1) * (y2 - y1)
        order = descending_order(scores)
        keep = []
        while order.size:
            i, rest = order[0], order[1:]
            keep.append(i)
            w = cmax(zero, cmin(x2[i], x2[rest]) - cmax(x1[i], x1[rest]))
            h = cmax(zero, cmin(y2[i], y2[rest]) - cmax(y1[i], y1[rest]))
            inter = w * h
            ovr = inter / (areas[i] + areas[rest] - inter)
            order = rest[~(ovr.astype(np.float64) > iou_threshold)]
    return np.array(keep, np.int64)


def considered(scores, score_threshold):
    """Indices of the boxes NMS considers: score > score_threshold (exact
    comparison, in float64; NaN never), or all of them."""
    scores = np.asarray(scores)
    if score_threshold is None:
        return np.arange(scores.shape[0])
    return np.flatnonzero(scores.astype(np.float64) > score_threshold)


def ref_nms_full(boxes, scores, iou_threshold, score_threshold=None, max_output=None,
                 nms=ref_nms):
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    idx = considered(scores, score_threshold)
    keep = idx[nms(boxes[idx], scores[idx], iou_threshold)]
    return keep[:max_output].astype(np.int64)


def ref_batched_nms(boxes, scores, labels, iou_threshold, score_threshold=None,
                    max_output=None, nms=ref_nms):
    boxes, scores, labels = np.asarray(boxes), np.asarray(scores), np.asarray(labels)
    idx = considered(scores, score_threshold)
    keep = [np.zeros(0, np.int64)]
    for label in np.unique(labels[idx]):
        sub = idx[labels[idx] == label]
        keep.append(sub[nms(boxes[sub], scores[sub], iou_threshold)])
    return sort_kept(np.concatenate(keep), scores)[:max_output]


def ref_soft_nms(boxes, scores, method="linear", sigma=0.5, iou_threshold=0.3,
                 score_threshold=0.001, max_output=None):
    """SPEC's Soft-NMS loop. Current scores are kept as float64 holding
    values of the dtype; `remaining` stays in index order, so np.argmax's
    first maximum is the lowest index among the ties."""
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    dtype = boxes.dtype.type
    n = boxes.shape[0]
    with np.errstate(all="ignore"):
        x1, y1, x2, y2 = columns(boxes)
        areas = (x2 - x1) * (y2 - y1)
        valid = np.isfinite(boxes).all(axis=1) & (x2 > x1) & (y2 > y1)
        cur = scores.astype(np.float64)
        remaining = np.flatnonzero(cur >= score_threshold)       # NaN never qualifies
        kept, kept_scores = [], []
        while remaining.size and (max_output is None or len(kept) < max_output):
            m = remaining[np.argmax(cur[remaining])]
            kept.append(m)
            kept_scores.append(cur[m])
            rest = remaining[remaining != m]
            w = np.maximum(dtype(0), np.minimum(x2[m], x2[rest]) - np.maximum(x1[m], x1[rest]))
            h = np.maximum(dtype(0), np.minimum(y2[m], y2[rest]) - np.maximum(y1[m], y1[rest]))
            inter = w * h
            iou = np.where(valid[m] & valid[rest] & (inter > 0),
                           inter / (areas[m] + areas[rest] - inter), dtype(0))
            assert iou.dtype == boxes.dtype
            iou = iou.astype(np.float64)
            if method == "linear":
                weight = np.where(iou > iou_threshold, 1.0 - iou, 1.0)
            else:
                weight = np.array([math.exp(-(v * v) / sigma) for v in iou.tolist()])
            cur[rest] = (cur[rest] * weight).astype(dtype)
            remaining = rest[~(cur[rest] < score_threshold)]
    return np.array(kept, np.int64), np.array(kept_scores, np.float64).astype(dtype)


def ref_batched_soft_nms(boxes, scores, labels, max_output=None, **opts):
    boxes, scores, labels = np.asarray(boxes), np.asarray(scores), np.asarray(labels)
    kept, kept_scores = [np.zeros(0, np.int64)], [np.zeros(0, boxes.dtype)]
    for label in np.unique(labels):
        sub = np.flatnonzero(labels == label)
        k, s = ref_soft_nms(boxes[sub], scores[sub], **opts)
        kept.append(sub[k])
        kept_scores.append(s)
    kept, kept_scores = np.concatenate(kept), np.concatenate(kept_scores)
    order = np.lexsort((kept, -kept_scores.astype(np.float64)))[:max_output]
    return kept[order], kept_scores[order]


def ref_box_convert(boxes, in_fmt, out_fmt):
    """torchvision's formulas; xywh <-> cxcywh through xyxy."""
    b = np.asarray(boxes)
    if in_fmt == out_fmt:
        return b.copy()
    with np.errstate(all="ignore"):
        if in_fmt != "xyxy":
            a, c, d, e = (b[..., k] for k in range(4))
            if in_fmt == "xywh":
                b = np.stack([a, c, a + d, c + e], axis=-1)
            else:
                b = np.stack([a - 0.5 * d, c - 0.5 * e, a + 0.5 * d, c + 0.5 * e], axis=-1)
        if out_fmt == "xyxy":
            return b
        x1, y1, x2, y2 = (b[..., k] for k in range(4))
        if out_fmt == "xywh":
            return np.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)
        return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def ref_box_area(boxes):
    b = np.asarray(boxes)
    with np.errstate(all="ignore"):
        return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def ref_box_iou(boxes1, boxes2):
    """torchvision's _box_inter_union: torch.max/min propagate NaN as
    np.maximum/np.minimum do."""
    b1, b2 = np.asarray(boxes1), np.asarray(boxes2)
    with np.errstate(all="ignore"):
        area1, area2 = ref_box_area(b1), ref_box_area(b2)
        lt = np.maximum(b1[:, None, :2], b2[None, :, :2])
        rb = np.minimum(b1[:, None, 2:], b2[None, :, 2:])
        wh = np.maximum(rb - lt, b1.dtype.type(0))
        inter = wh[..., 0] * wh[..., 1]
        return inter / (area1[:, None] + area2[None, :] - inter)


# ===================================================== helpers

def assert_values_equal(got, want):
    """The same dtype, shape, NaN positions and values."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got, want)


def assert_bits_equal(got, want):
    """Bit for bit (soft_nms scores): -0.0 stays -0.0."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype.kind == "f" and got.dtype.itemsize == want.dtype.itemsize, got.dtype
    assert got.shape == want.shape, (got.shape, want.shape)
    uint = np.uint32 if want.dtype.itemsize == 4 else np.uint64
    got_bits = got.astype(got.dtype.newbyteorder("=")).view(uint)
    want_bits = want.astype(want.dtype.newbyteorder("=")).view(uint)
    np.testing.assert_array_equal(got_bits, want_bits, err_msg=f"{got!r} != {want!r}")


def assert_indices(got, want):
    got = np.asarray(got)
    assert got.dtype == np.int64, got.dtype
    assert got.ndim == 1
    np.testing.assert_array_equal(got, np.asarray(want, np.int64))


def call(backend, fn, arrays, *args, **kwargs):
    """fn(*arrays as backend arrays, *args, **kwargs): checks every output is
    the caller's array type and the inputs are untouched; returns the
    outputs as NumPy arrays (a tuple when fn returns one)."""
    xs = [backend.asarray(a) for a in arrays]
    before = [np.array(backend.to_numpy(x)) for x in xs]
    out = fn(*xs, *args, **kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        assert type(o) is type(xs[0]), (type(o), type(xs[0]))
    got = tuple(np.asarray(backend.to_numpy(o)) for o in outs)
    for x, b in zip(xs, before):
        assert_values_equal(backend.to_numpy(x), b)
    return got if isinstance(out, tuple) else got[0]


def check_nms_family(backend, boxes, scores, labels=None, *, iou_threshold=0.5,
                     score_threshold=None, max_output=None, nms=ref_nms):
    """nms (and batched_nms when labels are given) on backend arrays against
    the references: the same indices."""
    opts = dict(score_threshold=score_threshold, max_output=max_output)
    got = call(backend, sa.nms, [boxes, scores], iou_threshold, **opts)
    assert_indices(got, ref_nms_full(boxes, scores, iou_threshold, nms=nms, **opts))
    if labels is not None:
        got = call(backend, sa.batched_nms, [boxes, scores, labels], iou_threshold, **opts)
        assert_indices(got, ref_batched_nms(boxes, scores, labels, iou_threshold, nms=nms, **opts))


SOFT_NMS_SCORE_THRESHOLD = inspect.signature(sa.soft_nms).parameters["score_threshold"].default


def assert_soft_nms_matches(backend, got, want, boxes, opts, labels=None):
    """(indices, decayed scores) of soft_nms or batched_soft_nms of boxes with
    options opts, from backend, against want from the compiled kernel or the
    reference: the same indices and the same bits where both sides do the
    same arithmetic (the linear decay; the kernel, whose Gaussian weight
    is the C library's exp, as the reference's math.exp); the portable
    path's Gaussian decay, whose exp is the array library's, within
    soft_nms_tolerance's bound."""
    assert got[1].dtype == want[1].dtype, (got[1].dtype, want[1].dtype)
    if getattr(backend, "compiled", True) or opts.get("method", "linear") == "linear":
        assert_indices(got[0], want[0])
        assert_bits_equal(got[1], want[1])
        return
    assert got[0].dtype == np.int64 and got[0].ndim == 1, got[0].dtype
    assert_soft_nms_close(got, want, boxes=boxes, labels=labels,
                          score_threshold=opts.get("score_threshold", SOFT_NMS_SCORE_THRESHOLD))


def check_soft_nms(backend, boxes, scores, labels=None, **opts):
    """soft_nms (and batched_soft_nms) against the reference, in the input
    dtype (assert_soft_nms_matches)."""
    got = call(backend, sa.soft_nms, [boxes, scores], **opts)
    assert got[1].dtype == np.asarray(boxes).dtype
    assert_soft_nms_matches(backend, got, ref_soft_nms(boxes, scores, **opts), boxes, opts)
    if labels is not None:
        got = call(backend, sa.batched_soft_nms, [boxes, scores, labels], **opts)
        assert got[1].dtype == np.asarray(boxes).dtype
        assert_soft_nms_matches(backend, got, ref_batched_soft_nms(boxes, scores, labels, **opts),
                                boxes, opts, labels)


NUMPY = type("NumPyBackend", (), {"asarray": staticmethod(np.asarray),
                                  "to_numpy": staticmethod(np.asarray), "name": "numpy"})()


# ===================================================== input generators

def make_boxes(rng, n, dtype, layout="cluster", p_dup=0.0, p_degenerate=0.0,
               p_nonfinite=0.0, p_huge=0.0):
    """(n, 4) xyxy boxes:
    cluster: many boxes in a 10 x 10 area (heavy overlap);
    grid: multiples of 1/8 in [0, 16] (exact arithmetic, IoU ties such as 1/2);
    scattered: 10-100 px boxes in a 1000 x 1000 image;
    then rows copied from other rows (exact duplicates), degenerate rows
    (x2 < x1, y2 < y1, zero width or height), non-finite and huge entries."""
    if layout == "cluster":
        xy, wh = rng.uniform(0, 4, (n, 2)), rng.uniform(0.5, 6, (n, 2))
    elif layout == "grid":
        xy, wh = rng.integers(0, 64, (n, 2)) / 8, rng.integers(1, 64, (n, 2)) / 8
    else:
        xy, wh = rng.uniform(0, 1000, (n, 2)), rng.uniform(10, 100, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    if n:
        dup = rng.random(n) < p_dup
        boxes[dup] = boxes[rng.integers(0, n, dup.sum())]
        for row in np.flatnonzero(rng.random(n) < p_degenerate):
            kind = rng.integers(0, 4)
            if kind == 0:
                boxes[row, [0, 2]] = boxes[row, [2, 0]]             # x2 < x1
            elif kind == 1:
                boxes[row, [1, 3]] = boxes[row, [3, 1]]             # y2 < y1
            elif kind == 2:
                boxes[row, 2] = boxes[row, 0]                       # zero width
            else:
                boxes[row, 3] = boxes[row, 1]                       # zero height
        nonfinite = rng.random((n, 4)) < p_nonfinite
        boxes[nonfinite] = rng.choice([np.nan, np.inf, -np.inf], nonfinite.sum())
        huge = rng.random((n, 4)) < p_huge
        big = 1e30 if np.dtype(dtype) == np.float32 else 1e300        # areas overflow
        boxes[huge] = rng.choice([big, -big], huge.sum())
    return boxes.astype(dtype)


def make_scores(rng, n, dtype, kind="uniform", p_nan=0.0, p_inf=0.0):
    if kind == "uniform":
        s = rng.random(n)
    elif kind == "levels":                                          # many equal scores
        s = rng.integers(0, 4, n) / 4
    elif kind == "constant":
        s = np.full(n, 0.5)
    else:                                                           # "signed"
        s = rng.uniform(-1, 1, n)
    s[rng.random(n) < p_nan] = np.nan
    inf = rng.random(n) < p_inf
    s[inf] = rng.choice([np.inf, -np.inf], inf.sum())
    return s.astype(dtype)


def make_labels(rng, n, n_classes, odd_values=False):
    labels = rng.integers(0, n_classes, n).astype(np.int64)
    if odd_values:                                                  # any integer values
        values = np.array([-7, 0, 2**40, -2**62, 3, 2**63 - 1], np.int64)
        labels = values[labels % values.size]
    return labels


@st.composite
def random_problems(draw, max_n=300, finite_coords=False, scores_for="nms",
                    layouts=("cluster", "grid", "scattered")):
    """(boxes, scores, labels) from a seeded generator, hypothesis choosing
    the size, dtype and the rates of every awkward case."""
    dtype = draw(st.sampled_from(FLOATS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = draw(st.sampled_from(["small", "medium", "large"]))      # (hypothesis favours
    if size == "small":                                             # small integers)
        n = draw(st.integers(0, 12))
    elif size == "medium":
        n = int(rng.integers(13, min(80, max_n) + 1))
    else:
        n = int(rng.integers(min(80, max_n), max_n + 1))
    rates = st.sampled_from([0.0, 0.0, 0.05, 0.3])
    layout = draw(st.sampled_from(layouts))
    boxes = make_boxes(
        rng, n, dtype, layout, p_dup=draw(rates), p_degenerate=draw(rates),
        p_nonfinite=0.0 if finite_coords else draw(st.sampled_from([0.0, 0.0, 0.02, 0.2])),
        p_huge=0.0 if finite_coords or scores_for == "soft" else draw(rates) / 4)
    if scores_for == "soft":
        kind = draw(st.sampled_from(["uniform", "levels", "constant", "signed"]))
        scores = make_scores(rng, n, dtype, kind, p_nan=draw(rates))
    else:
        kind = draw(st.sampled_from(["uniform", "levels", "constant"]))
        scores = make_scores(rng, n, dtype, kind, p_nan=draw(rates), p_inf=draw(rates) / 3)
    n_classes = draw(st.sampled_from([1, 2, 5, 40]))
    labels = make_labels(rng, n, n_classes, odd_values=not finite_coords and draw(st.booleans()))
    return boxes, scores, labels


SMALL_XY = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
SMALL_WH = [-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


@st.composite
def small_problems(draw, scores_for="nms"):
    """A few boxes on a coarse grid (many exact duplicates, touching boxes,
    IoU exactly 1/2 ...), with NaN / inf entries now and then; hypothesis
    shrinks these entry by entry."""
    dtype = np.dtype(draw(st.sampled_from(FLOATS)))
    n = draw(st.integers(0, 8))
    specials = draw(st.booleans())
    def elements(values):
        plain = st.sampled_from(values)
        if not specials:
            return plain
        return st.one_of(plain, plain, plain, st.sampled_from([np.nan, np.inf, -np.inf]))
    xy = draw(hnp.arrays(np.float64, (n, 2), elements=elements(SMALL_XY)))
    wh = draw(hnp.arrays(np.float64, (n, 2), elements=elements(SMALL_WH)))
    with np.errstate(all="ignore"):
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(dtype)
    if scores_for == "soft":
        score_values = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, -0.0, np.nan, -0.5])
    else:
        score_values = st.sampled_from([0.0, 0.25, 0.5, 1.0, -0.0, np.nan, np.inf, -np.inf])
    scores = draw(hnp.arrays(dtype, (n,), elements=score_values))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.sampled_from([0, 1, -3, 2**40])))
    return boxes, scores, labels


def nms_problems(max_n=300, **kwargs):
    return st.one_of(small_problems(), random_problems(max_n=max_n, **kwargs))


def soft_problems(max_n=200):
    return st.one_of(small_problems("soft"), random_problems(max_n=max_n, scores_for="soft"))


def max_outputs(n):
    return st.one_of(st.none(), st.integers(0, n + 2))


SOFT_OPTIONS = st.fixed_dictionaries({
    "method": st.sampled_from(["linear", "gaussian"]),
    "sigma": st.sampled_from([0.5, 0.1, 1.0, 2.0, 0.003]),
    "iou_threshold": st.sampled_from(IOU_THRESHOLDS + [0.25]),
    "score_threshold": st.sampled_from([0.001, 0.0, 0.1, 0.5, -1.0]),
})


# ===================================================== the references themselves

HAND_BOXES = np.array([
    [0, 0, 2, 2],        # A: area 4
    [1, 0, 3, 2],        # B: IoU(A, B) = 2 / 6 = 1/3
    [0, 0, 2, 1],        # C: IoU(A, C) = 2 / 4 = 1/2, IoU(B, C) = 1 / 5
    [10, 10, 11, 11],    # D: apart
], np.float64)
HAND_SCORES = np.array([0.9, 0.8, 0.7, 0.95])


@pytest.mark.parametrize("iou_threshold, want", [
    (0.5, [3, 0, 1, 2]),   # 1/2 is not > 1/2: C stays
    (0.4, [3, 0, 1]),      # C goes (1/2 > 0.4), B stays (1/3)
    (0.3, [3, 0]),         # B goes too
    (0.0, [3, 0]),
    (1.0, [3, 0, 1, 2]),
])
def test_reference_nms_by_hand(iou_threshold, want):
    for nms in (ref_nms, ref_nms_fast):
        assert_indices(nms(HAND_BOXES, HAND_SCORES, iou_threshold), want)
    assert_indices(ref_nms_full(HAND_BOXES, HAND_SCORES, iou_threshold, max_output=2), want[:2])


def test_reference_soft_nms_by_hand():
    """linear, iou_threshold 0.3: A keeps 0.9; B (IoU 1/3) -> 0.8 * 2/3,
    C (IoU 1/2) -> 0.7 / 2; then B, whose IoU with C (1/5) is below 0.3."""
    boxes, scores = HAND_BOXES[:3], HAND_SCORES[:3]
    indices, decayed = ref_soft_nms(boxes, scores, method="linear", iou_threshold=0.3)
    assert_indices(indices, [0, 1, 2])
    np.testing.assert_allclose(decayed, [0.9, 0.8 * 2 / 3, 0.35], rtol=1e-15)
    # gaussian, sigma 0.5: B -> 0.8 exp(-(1/9)/0.5), C -> 0.7 exp(-(1/4)/0.5),
    # then B (0.64 > 0.42) decays C once more by exp(-(1/25)/0.5)
    indices, decayed = ref_soft_nms(boxes, scores, method="gaussian", sigma=0.5)
    assert_indices(indices, [0, 1, 2])
    np.testing.assert_allclose(
        decayed, [0.9, 0.8 * math.exp(-2 / 9), 0.7 * math.exp(-0.5) * math.exp(-0.08)],
        rtol=1e-15)
    # identical boxes, linear with threshold 0: the copies drop to 0 < 0.001
    same = np.tile([[0.0, 0.0, 1.0, 1.0]], (3, 1))
    indices, decayed = ref_soft_nms(same, np.array([0.5, 0.5, 0.7]), iou_threshold=0.0)
    assert_indices(indices, [2])


def test_reference_nms_against_python_scalars():
    """ref_nms's vectorized inner loop against a scalar loop over Python
    floats (float64 boxes) on cluster boxes with many ties."""
    rng = np.random.default_rng(0)
    boxes = make_boxes(rng, 60, np.float64, "grid", p_dup=0.2, p_degenerate=0.1)
    scores = make_scores(rng, 60, np.float64, "levels", p_nan=0.1)
    b = boxes.tolist()
    area = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in b]
    order = sorted(range(60), key=lambda i: (not math.isnan(scores[i]),
                                             0.0 if math.isnan(scores[i]) else -scores[i], i))
    for thr in IOU_THRESHOLDS:
        suppressed, keep = [False] * 60, []
        for _i, i in enumerate(order):
            if suppressed[i]:
                continue
            keep.append(i)
            for j in order[_i + 1:]:
                w = max(0.0, min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]))
                h = max(0.0, min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]))
                inter = w * h
                with np.errstate(all="ignore"):
                    ovr = np.float64(inter) / np.float64(area[i] + area[j] - inter)
                if ovr > thr:
                    suppressed[j] = True
        assert_indices(ref_nms(boxes, scores, thr), keep)
        assert_indices(ref_nms_fast(boxes, scores, thr), keep)


@settings(max_examples=40, deadline=None)
@given(problem=nms_problems(), iou_threshold=st.sampled_from(IOU_THRESHOLDS))
def test_reference_nms_matches_torchvision(problem, iou_threshold):
    ops = tv()
    boxes, scores, _ = problem
    want = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou_threshold).numpy()
    assert_indices(ref_nms(boxes, scores, iou_threshold), want)
    assert_indices(ref_nms_fast(boxes, scores, iou_threshold), want)


# ===================================================== nms / batched_nms: properties

@settings(max_examples=120, deadline=None)
@given(problem=nms_problems(), iou_threshold=st.sampled_from(IOU_THRESHOLDS + [0.25, 1.5]),
       data=st.data())
def test_nms_property(problem, iou_threshold, data):
    """Overlapping, duplicated, tied, NaN-scored, degenerate and non-finite
    boxes: nms and batched_nms return exactly the references' indices."""
    boxes, scores, labels = problem
    n = boxes.shape[0]
    score_threshold = data.draw(st.sampled_from([None, None, 0.0, 0.25, 0.5, -1e300]))
    max_output = data.draw(max_outputs(n))
    check_nms_family(NUMPY, boxes, scores, labels, iou_threshold=iou_threshold,
                     score_threshold=score_threshold, max_output=max_output)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=nms_problems(max_n=60), iou_threshold=st.sampled_from(IOU_THRESHOLDS),
       data=st.data())
def test_nms_property_every_backend(backend, problem, iou_threshold, data):
    boxes, scores, labels = problem
    score_threshold = data.draw(st.sampled_from([None, 0.25]))
    max_output = data.draw(max_outputs(boxes.shape[0]))
    check_nms_family(backend, boxes, scores, labels, iou_threshold=iou_threshold,
                     score_threshold=score_threshold, max_output=max_output)


@settings(max_examples=100, deadline=None)
@given(problem=nms_problems(), iou_threshold=st.sampled_from(IOU_THRESHOLDS + [0.25]))
def test_nms_property_against_torchvision(problem, iou_threshold):
    ops = tv()
    boxes, scores, _ = problem
    want = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou_threshold).numpy()
    assert_indices(sa.nms(boxes, scores, iou_threshold), want)


@settings(max_examples=80, deadline=None)
@given(problem=random_problems(max_n=300, finite_coords=True, layouts=("grid",)),
       iou_threshold=st.sampled_from(IOU_THRESHOLDS + [0.25]))
def test_batched_nms_property_against_torchvision(problem, iou_threshold):
    """Non-negative multiples of 1/8 and small labels: torchvision's
    coordinate-offset trick is exact, so its answer is the per-class one."""
    ops = tv()
    boxes, scores, labels = problem
    boxes = boxes.astype(np.float32)
    scores = scores.astype(np.float32)
    labels = labels % 6
    want = ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                           torch.from_numpy(labels), iou_threshold).numpy()
    assert_indices(ref_batched_nms(boxes, scores, labels, iou_threshold), want)
    assert_indices(sa.batched_nms(boxes, scores, labels, iou_threshold), want)


@st.composite
def scattered_problems(draw, min_n=500, max_n=5000):
    """Realistic detections: 10-100 px boxes in a 1000 x 1000 image, scores
    rounded (ties) or not, a few duplicates, NaN scores and degenerate
    boxes now and then."""
    dtype = draw(st.sampled_from(FLOATS))
    n = draw(st.integers(min_n, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    boxes = make_boxes(rng, n, dtype, "scattered",
                       p_dup=draw(st.sampled_from([0.0, 0.01, 0.1])),
                       p_degenerate=draw(st.sampled_from([0.0, 0.01])),
                       p_nonfinite=draw(st.sampled_from([0.0, 0.001])))
    if draw(st.booleans()):
        boxes = np.round(boxes).astype(dtype)                       # integer pixels
    scores = make_scores(rng, n, dtype, draw(st.sampled_from(["uniform", "levels"])),
                         p_nan=draw(st.sampled_from([0.0, 0.002])))
    if draw(st.booleans()):
        scores = np.round(scores, 2).astype(dtype)
    labels = make_labels(rng, n, draw(st.sampled_from([1, 3, 80])))
    return boxes, scores, labels


@settings(max_examples=12, deadline=None)
@given(problem=scattered_problems(), iou_threshold=st.sampled_from(IOU_THRESHOLDS),
       data=st.data())
def test_nms_scattered_boxes(problem, iou_threshold, data):
    """Thousands of scattered boxes (the sub-quadratic path)."""
    boxes, scores, labels = problem
    score_threshold = data.draw(st.sampled_from([None, 0.05]))
    max_output = data.draw(st.sampled_from([None, 100]))
    check_nms_family(NUMPY, boxes, scores, labels, iou_threshold=iou_threshold,
                     score_threshold=score_threshold, max_output=max_output, nms=ref_nms_fast)


# ===================================================== nms / batched_nms: by hand and edges

def test_nms_by_hand(backend):
    for thr, want in [(0.5, [3, 0, 1, 2]), (0.4, [3, 0, 1]), (0.3, [3, 0]), (0.0, [3, 0])]:
        assert_indices(call(backend, sa.nms, [HAND_BOXES, HAND_SCORES], thr), want)
    # score_threshold is strict and drops first: D, A, B remain at 0.75 ...
    assert_indices(call(backend, sa.nms, [HAND_BOXES, HAND_SCORES], 0.3, score_threshold=0.75),
                   [3, 0])
    # ... and at 0.8 B is dropped (0.8 is not > 0.8), so C (0.7) too
    assert_indices(call(backend, sa.nms, [HAND_BOXES, HAND_SCORES], 0.5, score_threshold=0.8),
                   [3, 0])
    assert_indices(call(backend, sa.nms, [HAND_BOXES, HAND_SCORES], 0.5, max_output=1), [3])
    assert_indices(call(backend, sa.nms, [HAND_BOXES, HAND_SCORES], 0.5, max_output=0), [])
    assert_indices(call(backend, sa.nms, [HAND_BOXES, HAND_SCORES], 0.5, max_output=9),
                   [3, 0, 1, 2])


def test_nms_dropped_boxes_do_not_suppress(backend):
    """A NaN score ranks first and suppresses, unless score_threshold drops
    it first."""
    boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 2.5]], np.float64)     # IoU 4 / 5
    scores = np.array([np.nan, 0.6])
    assert_indices(call(backend, sa.nms, [boxes, scores], 0.5), [0])
    assert_indices(call(backend, sa.nms, [boxes, scores], 0.5, score_threshold=0.0), [1])
    assert_indices(call(backend, sa.nms, [boxes, scores], 0.5, score_threshold=0.6), [])
    labels = np.array([4, 4])
    assert_indices(call(backend, sa.batched_nms, [boxes, scores, labels], 0.5), [0])
    assert_indices(call(backend, sa.batched_nms, [boxes, scores, labels], 0.5,
                        score_threshold=0.5), [1])


def test_nms_nan_scores_first_and_ties_by_index(backend):
    boxes = np.tile([[0.0, 0.0, 1.0, 1.0]], (4, 1))
    assert_indices(call(backend, sa.nms, [boxes, np.array([0.5, np.nan, 0.9, np.nan])], 0.5),
                   [1])
    assert_indices(call(backend, sa.nms, [boxes, np.array([0.5, 0.9, 0.9, 0.1])], 0.5), [1])
    assert_indices(call(backend, sa.nms, [boxes, np.array([0.0, -0.0, 0.0, -0.0])], 0.5), [0])
    # NaN and -inf scores are dropped by a score threshold
    apart = boxes + 2 * np.arange(4)[:, None]
    got = call(backend, sa.nms, [apart, np.array([0.5, np.nan, 0.9, -np.inf])], 0.5,
               score_threshold=-1e300)
    assert_indices(got, [2, 0])
    got = call(backend, sa.nms, [apart, np.array([0.5, np.nan, 0.9, -np.inf])], 0.5)
    assert_indices(got, [1, 2, 0, 3])


def test_nms_degenerate_and_nonfinite_boxes_neither_suppress_nor_are_suppressed(backend):
    good = [0.0, 0.0, 4.0, 4.0]
    rows = [good, good,                                   # 0, 1: duplicates
            [0.0, 0.0, 0.0, 4.0], [0.0, 0.0, 0.0, 4.0],   # 2, 3: zero width, duplicated
            [4.0, 0.0, 0.0, 4.0],                         # 4: x2 < x1
            [0.0, 4.0, 4.0, 0.0],                         # 5: y2 < y1
            [np.nan, 0.0, 4.0, 4.0],                      # 6
            [0.0, 0.0, np.inf, 4.0], [0.0, 0.0, np.inf, 4.0],   # 7, 8: infinite width
            [-np.inf, -np.inf, np.inf, np.inf]]           # 9
    boxes = np.array(rows)
    scores = np.linspace(1.0, 0.1, len(rows))
    for thr in (0.0, 0.5):
        want = [0] + list(range(2, len(rows)))            # only 1 (a duplicate of 0) goes
        assert_indices(call(backend, sa.nms, [boxes, scores], thr), want)
        assert_indices(ref_nms(boxes, scores, thr), want)
    # and with the degenerate boxes first
    assert_indices(call(backend, sa.nms, [boxes, scores[::-1].copy()], 0.0),
                   [9, 8, 7, 6, 5, 4, 3, 2, 1])


@pytest.mark.parametrize("dtype", FLOATS)
def test_nms_huge_finite_coordinates(backend, dtype):
    """Finite boxes reaching 1e20: B = (1, 1, 3, 1e20) meets A = (0, 0, 4, 4)
    in a 2 x 3 rectangle, IoU = 6 / (16 + 2e20 - 6) = 3e-20 > 0, so at
    iou_threshold 0 A suppresses B (torchvision's formula; B is neither
    degenerate nor non-finite)."""
    boxes = np.array([[0, 0, 4, 4], [1, 1, 3, 1e20], [20, 20, 21, 21]], dtype)
    scores = np.array([0.9, 0.5, 0.4], dtype)
    assert ref_box_iou(boxes[:1], boxes[1:2])[0, 0] > 0
    assert_indices(ref_nms(boxes, scores, 0.0), [0, 2])
    assert_indices(call(backend, sa.nms, [boxes, scores], 0.0), [0, 2])
    assert_indices(call(backend, sa.batched_nms, [boxes, scores, np.zeros(3, np.int64)], 0.0),
                   [0, 2])
    assert_indices(call(backend, sa.nms, [boxes, scores], 1e-19), [0, 1, 2])   # 3e-20 < 1e-19
    for big in (1e10, 1e15, 1e19, 1e21, 1e25, 1e30):
        boxes[1, 3] = big
        assert_indices(call(backend, sa.nms, [boxes, scores], 0.0),
                       ref_nms(boxes, scores, 0.0))


def test_nms_iou_threshold_comparison_is_float64_and_strict():
    """A float32 IoU of 3/10 rounds to 0.30000001192...: above the Python
    float 0.3, so the box goes (torchvision compares as double); an IoU of
    exactly 1/2 is not above 0.5."""
    boxes = np.array([[0, 0, 10, 1], [0, 0, 3, 1]], np.float32)     # IoU 3/10
    scores = np.array([0.9, 0.8], np.float32)
    assert np.float64(np.float32(3) / np.float32(10)) > 0.3
    assert_indices(sa.nms(boxes, scores, 0.3), [0])
    assert_indices(sa.nms(boxes.astype(np.float64), scores.astype(np.float64), 0.3), [0, 1])
    assert_indices(ref_nms(boxes, scores, 0.3), [0])
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1]], np.float32)      # IoU 1/2
    assert_indices(sa.nms(boxes, scores, 0.5), [0, 1])
    assert_indices(sa.nms(boxes, scores, np.nextafter(0.5, 0)), [0])


def test_nms_score_threshold_is_exact():
    """A float32 score of 0.3 is 0.30000001192..., strictly above the Python
    float 0.3."""
    boxes = np.array([[0, 0, 1, 1], [5, 5, 6, 6]], np.float32)
    scores = np.array([0.3, 0.2], np.float32)
    assert_indices(sa.nms(boxes, scores, 0.5, score_threshold=0.3), [0])
    assert_indices(sa.nms(boxes.astype(np.float64), np.array([0.3, 0.2]), 0.5,
                          score_threshold=0.3), [])


def test_nms_iou_threshold_above_1_suppresses_nothing(backend):
    boxes = np.tile([[0.0, 0.0, 1.0, 1.0]], (3, 1))
    for thr in (1.0, 1.5, 1e300):
        assert_indices(call(backend, sa.nms, [boxes, np.array([0.1, 0.3, 0.2])], thr), [1, 2, 0])


def test_batched_nms_by_hand(backend):
    """A and C in one class, B and D in another: C goes at 0.4 (IoU 1/2
    with A), B stays (IoU with D is 0)."""
    labels = np.array([7, -2, 7, -2])
    got = call(backend, sa.batched_nms, [HAND_BOXES, HAND_SCORES, labels], 0.4)
    assert_indices(got, [3, 0, 1])
    got = call(backend, sa.batched_nms, [HAND_BOXES, HAND_SCORES, labels], 0.0)
    assert_indices(got, [3, 0, 1])
    # every box its own class: nothing is suppressed, merged by score
    got = call(backend, sa.batched_nms, [HAND_BOXES, HAND_SCORES, np.arange(4)], 0.0)
    assert_indices(got, [3, 0, 1, 2])
    got = call(backend, sa.batched_nms, [HAND_BOXES, HAND_SCORES, np.arange(4)], 0.0,
               max_output=2)
    assert_indices(got, [3, 0])
    # one class: plain nms
    got = call(backend, sa.batched_nms, [HAND_BOXES, HAND_SCORES, np.full(4, 5)], 0.3,
               score_threshold=0.75)
    assert_indices(got, [3, 0])


def test_batched_nms_merge_order_nan_and_ties():
    """Identical boxes in three classes: one survivor per class, merged by
    score with NaN first and ties by the lower index."""
    boxes = np.tile([[1.0, 1.0, 3.0, 3.0]], (6, 1))
    scores = np.array([0.5, 0.7, np.nan, 0.7, 0.9, 0.5])
    labels = np.array([0, 1, 2, 1, 0, 3])
    # class 0: 4 (0.9); class 1: 1 (0.7, lower index); class 2: 2 (NaN); class 3: 5
    assert_indices(sa.batched_nms(boxes, scores, labels, 0.5), [2, 4, 1, 5])
    assert_indices(ref_batched_nms(boxes, scores, labels, 0.5), [2, 4, 1, 5])


def _trick_case():
    """Class 0 holds the largest coordinate, 2**24 - 1, so class 1's boxes
    move by 2**24, where float32 spacing is 2: A = (0, 0, 10, 10) and
    B = (1, 0, 11, 10) (IoU 90/110 = 0.818) become (0, 0, 10, 10) and
    (0, 0, 12, 10) (IoU 100/120 = 0.833). At 0.82 B stays per class, but not
    after the shift."""
    big = 2.0**24 - 1
    boxes = np.array([[0, 0, big, big], [0, 0, 10, 10], [1, 0, 11, 10]], np.float32)
    scores = np.array([0.5, 0.9, 0.8], np.float32)
    labels = np.array([0, 1, 1])
    return boxes, scores, labels, 0.82


def simulated_offset_trick(boxes, scores, labels, iou_threshold):
    """torchvision's _batched_nms_coordinate_trick in NumPy."""
    top = boxes.max()
    offsets = labels.astype(boxes.dtype) * (top + boxes.dtype.type(1))
    return ref_nms(boxes + offsets[:, None], scores, iou_threshold)


def test_batched_nms_offset_trick_loses_precision_softarray_does_not():
    boxes, scores, labels, thr = _trick_case()
    per_class = ref_batched_nms(boxes, scores, labels, thr)
    assert_indices(per_class, [1, 2, 0])
    trick = simulated_offset_trick(boxes, scores, labels, thr)
    assert_indices(trick, [1, 0])                                   # B wrongly suppressed
    assert_indices(sa.batched_nms(boxes, scores, labels, thr), per_class)
    try:
        ops = tv()
    except pytest.skip.Exception:
        return
    got = ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                          torch.from_numpy(labels), thr).numpy()
    assert_indices(got, trick)


def test_batched_nms_large_coordinates_many_classes():
    """Random float32 boxes with fractional coordinates up to 5e4 in 300
    classes: the offset trick's shifted coordinates round (spacing up to 2
    at 1.5e7), and softarray still equals the per-class reference."""
    rng = np.random.default_rng(12)
    n = 3000
    labels = rng.integers(0, 300, n)
    centres = rng.uniform(0, 5e4, (300, 2))                  # each class's boxes overlap
    xy = centres[labels] + rng.uniform(0, 20, (n, 2)) + 0.37
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], 1).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    for thr in (0.3, 0.5, 0.7):
        want = ref_batched_nms(boxes, scores, labels, thr)
        assert_indices(sa.batched_nms(boxes, scores, labels, thr), want)
    differs = [not np.array_equal(simulated_offset_trick(boxes, scores, labels, thr),
                                  ref_batched_nms(boxes, scores, labels, thr))
               for thr in (0.3, 0.5, 0.7)]
    assert any(differs)                                            # the trick does go wrong


def test_batched_nms_any_label_values():
    """Labels are any integers (negative, beyond float precision): 2**53 and
    2**53 + 1 are different classes."""
    boxes = np.tile([[0.0, 0.0, 1.0, 1.0]], (4, 1))
    scores = np.array([0.4, 0.3, 0.2, 0.1])
    labels = np.array([2**53, 2**53 + 1, -2**63, 2**53], np.int64)
    assert_indices(sa.batched_nms(boxes, scores, labels, 0.5), [0, 1, 2])
    for dtype in (np.int32, np.int16, np.uint8, np.uint64):
        got = sa.batched_nms(boxes, scores, np.array([1, 2, 1, 0]).astype(dtype), 0.5)
        assert_indices(got, [0, 1, 3])


@pytest.mark.parametrize("n", [1500, 4000])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_batched_nms_against_torchvision_vanilla_path(n, iou_threshold):
    """Over 1000 boxes torchvision runs nms per class (its unstable final
    sort: distinct scores here)."""
    ops = tv()
    rng = np.random.default_rng(n)
    boxes = np.round(make_boxes(rng, n, np.float32, "scattered"))
    scores = (rng.permutation(n) / n).astype(np.float32)
    labels = make_labels(rng, n, 20)
    want = ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                           torch.from_numpy(labels), iou_threshold).numpy()
    assert_indices(sa.batched_nms(boxes, scores, labels, iou_threshold), want)


# ===================================================== soft_nms: properties and by hand

@settings(max_examples=120, deadline=None)
@given(problem=soft_problems(), opts=SOFT_OPTIONS, data=st.data())
def test_soft_nms_property(problem, opts, data):
    """Indices and bit-equal decayed scores against the reference, both
    methods, every threshold, with and without max_output."""
    boxes, scores, labels = problem
    opts = dict(opts, max_output=data.draw(max_outputs(boxes.shape[0])))
    check_soft_nms(NUMPY, boxes, scores, labels, **opts)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=soft_problems(max_n=40), opts=SOFT_OPTIONS)
def test_soft_nms_property_every_backend(backend, problem, opts):
    boxes, scores, labels = problem
    check_soft_nms(backend, boxes, scores, labels, **opts)


@settings(max_examples=6, deadline=None)
@given(problem=scattered_problems(min_n=300, max_n=1500),
       method=st.sampled_from(["linear", "gaussian"]),
       iou_threshold=st.sampled_from([0.3, 0.5]), max_output=st.sampled_from([None, 200]))
def test_soft_nms_scattered_boxes(problem, method, iou_threshold, max_output):
    boxes, scores, labels = problem
    check_soft_nms(NUMPY, boxes, scores, labels, method=method, iou_threshold=iou_threshold,
                   max_output=max_output)


def test_soft_nms_by_hand(backend):
    boxes, scores = HAND_BOXES[:3], HAND_SCORES[:3]
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores])     # linear, 0.3, 0.001
    assert_indices(indices, [0, 1, 2])
    np.testing.assert_allclose(decayed, [0.9, 0.8 * 2 / 3, 0.35], rtol=1e-15)
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], method="gaussian")
    assert_indices(indices, [0, 1, 2])
    np.testing.assert_allclose(
        decayed, [0.9, 0.8 * math.exp(-2 / 9), 0.7 * math.exp(-0.5) * math.exp(-0.08)],
        rtol=1e-15)
    # linear with iou_threshold 0.4: only C (IoU 1/2) decays
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], iou_threshold=0.4)
    assert_indices(indices, [0, 1, 2])
    np.testing.assert_allclose(decayed, [0.9, 0.8, 0.35], rtol=1e-15)
    # score_threshold 0.4 removes C after A (0.35 < 0.4), max_output cuts
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], score_threshold=0.4)
    assert_indices(indices, [0, 1])
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], max_output=1)
    assert_indices(indices, [0])
    np.testing.assert_array_equal(decayed, [0.9])


def test_soft_nms_reorders_by_decayed_score(backend):
    """Two identical boxes and a third overlapping half of them: after the
    first, its copy (IoU 1, linear weight 0) drops out and the third, decayed
    from 0.8 to 0.4, still beats the low-scored distant box at 0.3."""
    boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 1], [5, 5, 6, 6]], np.float64)
    scores = np.array([0.9, 0.85, 0.8, 0.3])
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], iou_threshold=0.3)
    assert_indices(indices, [0, 2, 3])
    np.testing.assert_array_equal(decayed, [0.9, 0.4, 0.3])
    # gaussian keeps the copy, decayed by exp(-1/sigma)
    opts = dict(method="gaussian", sigma=1.0)
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], **opts)
    assert_soft_nms_matches(backend, (indices, decayed), ref_soft_nms(boxes, scores, **opts),
                            boxes, opts)
    assert 1 in indices


def test_soft_nms_threshold_is_inclusive_and_nan_never_qualifies(backend):
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]], np.float64)
    scores = np.array([0.25, np.nan, 0.5])
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], score_threshold=0.25)
    assert_indices(indices, [2, 0])
    np.testing.assert_array_equal(decayed, [0.5, 0.25])
    indices, _ = call(backend, sa.soft_nms, [boxes, scores], score_threshold=-1e300)
    assert_indices(indices, [2, 0])


def test_soft_nms_score_threshold_is_exact():
    """score >= score_threshold and the removal score < score_threshold
    compare the exact values: a float32 score of 0.3 (0.30000001192...) is
    not >= a threshold 1e-9 above it, though the threshold rounds to that
    float32."""
    boxes = np.array([[0, 0, 1, 1], [5, 5, 6, 6]], np.float32)
    s = np.float32(0.3)
    threshold = float(s) + 1e-9
    assert np.float32(threshold) == s
    indices, _ = sa.soft_nms(boxes, np.array([s, 0.9], np.float32), score_threshold=threshold)
    assert_indices(indices, [1])
    indices, _ = sa.soft_nms(boxes, np.array([s, 0.9], np.float32), score_threshold=float(s))
    assert_indices(indices, [1, 0])


def test_soft_nms_negative_scores_take_the_largest_current_score(backend):
    """Decay moves a negative score up toward 0: the next box is still the
    one with the largest current score. A = B (IoU 1), C apart; linear,
    iou_threshold 0: after A, B's -0.9 becomes -0.0, above C's -0.1."""
    boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [10, 10, 11, 11]], np.float64)
    scores = np.array([0.5, -0.9, -0.1])
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], iou_threshold=0.0,
                            score_threshold=-1.0)
    assert_indices(indices, [0, 1, 2])
    assert_bits_equal(decayed, np.array([0.5, -0.0, -0.1]))
    # gaussian, sigma 0.1, B = (0, 0, 2, 1) (IoU 1/2): -0.9 exp(-2.5) = -0.074 > -0.3
    boxes[1] = [0, 0, 2, 1]
    scores = np.array([0.5, -0.9, -0.3])
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], method="gaussian", sigma=0.1,
                            score_threshold=-1.0)
    assert_indices(indices, [0, 1, 2])
    np.testing.assert_allclose(decayed, [0.5, -0.9 * math.exp(-2.5), -0.3], rtol=1e-15)


def test_batched_soft_nms_sorts_by_decayed_score(backend):
    """With negative scores the selection order is not the order of the
    decayed scores: P (-0.2) is picked before its copy Q, whose -0.3 then
    decays (IoU 1, linear weight 0) up to -0.0. soft_nms lists P, Q in the
    order picked; batched_soft_nms sorts by decayed score: Q before P."""
    boxes = np.array([[10, 10, 11, 11], [0, 0, 2, 2], [0, 0, 2, 2]], np.float64)
    scores = np.array([0.5, -0.2, -0.3])
    opts = dict(iou_threshold=0.0, score_threshold=-1.0)
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores], **opts)
    assert_indices(indices, [0, 1, 2])
    assert_bits_equal(decayed, np.array([0.5, -0.2, -0.0]))
    indices, decayed = call(backend, sa.batched_soft_nms, [boxes, scores, np.zeros(3, np.int64)],
                            **opts)
    assert_indices(indices, [0, 2, 1])
    assert_bits_equal(decayed, np.array([0.5, -0.0, -0.2]))
    assert_indices(ref_batched_soft_nms(boxes, scores, np.zeros(3), **opts)[0], [0, 2, 1])
    # max_output keeps the first of that list: Q (selected third), not P
    indices, decayed = call(backend, sa.batched_soft_nms, [boxes, scores, np.zeros(3, np.int64)],
                            max_output=2, **opts)
    assert_indices(indices, [0, 2])
    assert_bits_equal(decayed, np.array([0.5, -0.0]))
    assert_indices(ref_batched_soft_nms(boxes, scores, np.zeros(3), max_output=2, **opts)[0],
                   [0, 2])


def test_soft_nms_degenerate_boxes_overlap_nothing():
    """IoU 0 unless both boxes are finite with positive width and height."""
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 0, 4], [4, 0, 0, 4],
                      [0, 0, np.inf, 4], [np.nan, 0, 4, 4]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], np.float32)
    indices, decayed = sa.soft_nms(boxes, scores, iou_threshold=0.0)
    assert_indices(indices, [0, 2, 3, 4, 5])                          # 1: weight 0, dropped
    assert_bits_equal(decayed, scores[[0, 2, 3, 4, 5]])
    # gaussian: the copy decays to 0.8 exp(-1) = 0.29 and comes last
    indices, decayed = sa.soft_nms(boxes, scores, method="gaussian", sigma=1.0)
    assert_indices(indices, [0, 2, 3, 4, 5, 1])
    assert_bits_equal(decayed[:5], scores[[0, 2, 3, 4, 5]])
    assert decayed[5] == np.float32(np.float64(np.float32(0.8)) * math.exp(-1.0))


def test_gaussian_weights_of_the_two_paths_differ_by_an_ulp():
    """soft_nms_tolerance's premise, on this machine: the portable path's
    weight exp(-iou**2 / sigma) from the array library (NumPy; PyTorch where
    installed) is within an ulp of float64 of the C library's, which the
    kernel and the reference use."""
    iou = np.concatenate([np.linspace(0.0, 1.0, 1001),
                          np.random.default_rng(8).random(20000)])
    for sigma in (0.1, 0.3, 0.5, 1.0, 2.0):
        x = -(iou * iou) / sigma
        c_library = np.array([math.exp(v) for v in x.tolist()])
        portable = [np.exp(x)] + ([torch.exp(torch.from_numpy(x)).numpy()] if torch else [])
        for w in portable:
            assert np.max(np.abs(w - c_library) / np.spacing(c_library)) <= 1.0, sigma


def test_soft_nms_tolerance_parts_only_at_near_ties():
    """assert_soft_nms_close accepts scores within the decay bound and two
    selections that part at a near tie or at the threshold, nothing else."""
    # boxes 1 and 2 overlap box 0 (one decay each at most), box 3 nothing
    boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 1], [0, 1, 2, 2], [5, 5, 6, 6]], np.float64)
    eps = np.finfo(np.float64).eps
    indices = np.array([0, 1, 3])
    scores = np.array([0.9, 0.6, 0.5])

    def close(got, want, threshold=0.001):
        assert_soft_nms_close(got, want, boxes=boxes, score_threshold=threshold)

    close((indices, scores), (indices, scores))
    close((indices, scores * [1, 1 + 2 * eps, 1]), (indices, scores))     # one decay: 2 eps
    with pytest.raises(AssertionError, match="beyond"):
        close((indices, scores * [1, 1 + 8 * eps, 1]), (indices, scores))
    with pytest.raises(AssertionError, match="beyond"):                 # box 3 is never decayed
        close((indices, scores * [1, 1, 1 + 2 * eps]), (indices, scores))
    # boxes 1 and 2 tie to the last bits: either may come first
    close((np.array([0, 1, 2]), np.array([0.9, 0.6, 0.6 * (1 - eps)])),
          (np.array([0, 2, 1]), np.array([0.9, 0.6 * (1 + eps), 0.6])))
    with pytest.raises(AssertionError, match="part at position 1"):
        close((np.array([0, 1, 2]), np.array([0.9, 0.6, 0.3])),
              (np.array([0, 2, 1]), np.array([0.9, 0.3, 0.6])))
    # box 1 decays onto the threshold: one path keeps it, the other not
    close((np.array([0, 1]), np.array([0.9, 0.5])), (np.array([0]), np.array([0.9])),
          threshold=0.5 * (1 - eps))
    with pytest.raises(AssertionError, match="part at position 1"):
        close((np.array([0, 1]), np.array([0.9, 0.5])), (np.array([0]), np.array([0.9])),
              threshold=0.4)


def test_soft_nms_float32_product_rounds_once():
    """The decayed float32 score is float32(float64(score) * w), not a
    float32 product of float32 factors: on these inputs the two differ."""
    rng = np.random.default_rng(5)
    boxes = np.array([[0, 0, 10, 10], [3, 1, 12, 11]], np.float32)
    found = False
    for s in rng.uniform(0.01, 1.0, 200).astype(np.float32):
        scores = np.array([1.0, s], np.float32)
        _, got = sa.soft_nms(boxes, scores, method="gaussian", sigma=0.5)
        _, want = ref_soft_nms(boxes, scores, method="gaussian", sigma=0.5)
        assert_bits_equal(got, want)
        iou = ref_box_iou(boxes[:1], boxes[1:])[0, 0]
        w32 = np.float32(math.exp(-(float(iou) ** 2) / 0.5))
        found |= bool(np.float32(s * w32) != want[1])
    assert found


def test_batched_soft_nms_by_hand(backend):
    """Identical boxes in two classes: per class the copy decays to 0
    (linear, IoU 1) and goes; merged by decayed score."""
    boxes = np.tile([[0.0, 0.0, 2.0, 2.0]], (4, 1))
    scores = np.array([0.6, 0.9, 0.7, 0.8])
    labels = np.array([1, 0, 1, 0])
    indices, decayed = call(backend, sa.batched_soft_nms, [boxes, scores, labels],
                            iou_threshold=0.5)
    assert_indices(indices, [1, 2])
    np.testing.assert_array_equal(decayed, [0.9, 0.7])
    indices, decayed = call(backend, sa.batched_soft_nms, [boxes, scores, labels],
                            iou_threshold=0.5, max_output=1)
    assert_indices(indices, [1])
    indices, decayed = call(backend, sa.batched_soft_nms, [boxes, scores, np.arange(4)])
    assert_indices(indices, [1, 3, 2, 0])
    np.testing.assert_array_equal(decayed, scores[[1, 3, 2, 0]])


# ===================================================== box_convert / box_area / box_iou

def coordinate_arrays(rng, shape, dtype, specials=True):
    """Coordinates in [-50, 50], a third of them whole numbers, with NaN,
    +-inf and signed zeros sprinkled in."""
    x = rng.uniform(-50, 50, shape)
    x = np.where(rng.random(shape) < 0.3, np.round(x), x)
    if specials:
        pick = rng.random(shape) < 0.05
        x[pick] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], pick.sum())
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_box_convert(backend, dtype, in_fmt, out_fmt):
    rng = np.random.default_rng(20)
    for shape in [(7, 4), (3, 5, 4), (4,), (0, 4)]:
        boxes = coordinate_arrays(rng, shape, dtype)
        got = call(backend, sa.box_convert, [boxes], in_fmt, out_fmt)
        assert_values_equal(got, ref_box_convert(boxes, in_fmt, out_fmt))


def test_box_convert_by_hand():
    xyxy = np.array([[1.0, 2.0, 5.0, 4.0]])
    xywh = np.array([[1.0, 2.0, 4.0, 2.0]])
    cxcywh = np.array([[3.0, 3.0, 4.0, 2.0]])
    by_format = {"xyxy": xyxy, "xywh": xywh, "cxcywh": cxcywh}
    for a in FORMATS:
        for b in FORMATS:
            assert_values_equal(sa.box_convert(by_format[a], a, b), by_format[b])


def test_box_convert_same_format_is_a_copy():
    boxes = coordinate_arrays(np.random.default_rng(21), (5, 4), np.float32)
    got = sa.box_convert(boxes, "xywh", "xywh")
    assert_values_equal(got, boxes)
    assert not np.shares_memory(got, boxes)


@pytest.mark.parametrize("dtype", FLOATS)
def test_box_area_and_iou(backend, dtype):
    rng = np.random.default_rng(22)
    boxes1 = make_boxes(rng, 30, dtype, "grid", p_dup=0.2, p_degenerate=0.2, p_nonfinite=0.02)
    boxes2 = make_boxes(rng, 17, dtype, "cluster", p_degenerate=0.2, p_nonfinite=0.02)
    for b in (boxes1, boxes2, boxes1[:0], boxes1.reshape(5, 6, 4)):
        assert_values_equal(call(backend, sa.box_area, [b]), ref_box_area(b))
    for b1, b2 in [(boxes1, boxes2), (boxes2, boxes1), (boxes1, boxes1), (boxes1[:0], boxes2),
                   (boxes1, boxes2[:0]), (boxes1[:1], boxes2[:1])]:
        got = call(backend, sa.box_iou, [b1, b2])
        assert_values_equal(got, ref_box_iou(b1, b2))
        assert got.shape == (b1.shape[0], b2.shape[0])


def test_box_area_and_iou_by_hand():
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [0, 0, 2, 1], [3, 0, 1, 2], [1, 1, 1, 1]],
                     np.float64)
    np.testing.assert_array_equal(sa.box_area(boxes), [4, 4, 2, -4, 0])        # not clamped
    iou = sa.box_iou(boxes[:3], boxes[:3])
    np.testing.assert_array_equal(iou, [[1, 1 / 3, 1 / 2], [1 / 3, 1, 1 / 5], [1 / 2, 1 / 5, 1]])
    # a point box against itself: 0 / 0
    assert np.isnan(sa.box_iou(boxes[4:], boxes[4:])[0, 0])
    # (..., 4): one box alone has a 0-d area
    area = sa.box_area(boxes[3])
    assert np.shape(area) == () and area == -4 and np.asarray(area).dtype == np.float64


@settings(max_examples=60, deadline=None)
@given(problem=nms_problems(max_n=80), in_fmt=st.sampled_from(FORMATS),
       out_fmt=st.sampled_from(FORMATS))
def test_box_ops_against_torchvision(problem, in_fmt, out_fmt):
    ops = tv()
    boxes, _, _ = problem
    t = torch.from_numpy(boxes)
    for got, want in [
        (sa.box_convert(boxes, in_fmt, out_fmt), ops.box_convert(t, in_fmt, out_fmt)),
        (sa.box_area(boxes), ops.box_area(t)),
        (sa.box_iou(boxes, boxes[::-1].copy()), ops.box_iou(t, t.flip(0))),
    ]:
        assert_values_equal(got, want.numpy())
    assert_values_equal(ref_box_convert(boxes, in_fmt, out_fmt),
                        ops.box_convert(t, in_fmt, out_fmt).numpy())
    assert_values_equal(ref_box_iou(boxes, boxes), ops.box_iou(t, t).numpy())


def test_integer_and_bool_boxes_become_float64():
    """Except in box_area, whose integer boxes keep torchvision's integer
    dtype (test_box_area_of_integer_boxes_is_torchvisions_integer)."""
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [0, 0, 2, 1]], np.int32)
    f = boxes.astype(np.float64)
    assert_values_equal(sa.box_area(boxes), ref_box_area(boxes))
    assert_values_equal(sa.box_iou(boxes, boxes), ref_box_iou(f, f))
    assert_values_equal(sa.box_convert(boxes, "xyxy", "cxcywh"), ref_box_convert(f, "xyxy", "cxcywh"))
    scores = np.array([0.9, 0.8, 0.7])
    assert_indices(sa.nms(boxes, scores, 0.3), ref_nms(f, scores, 0.3))
    assert_indices(sa.batched_nms(boxes, scores, np.array([0, 1, 0]), 0.3), [0, 1])
    assert_values_equal(sa.box_area(np.ones((2, 4), bool)), np.zeros(2, np.int32))
    assert_values_equal(sa.box_area(np.array([[0, 0, 3, 2]], np.int64)), np.array([6]))


def test_integer_boxes_array_api_strict():
    import array_api_strict as xp
    boxes = xp.asarray([[0, 0, 2, 2], [1, 0, 3, 2]])
    area = sa.box_area(boxes)
    assert type(area) is type(boxes) and area.dtype == xp.int64
    np.testing.assert_array_equal(np.from_dlpack(area), [4, 4])
    iou = sa.box_iou(boxes, boxes)
    assert type(iou) is type(boxes) and iou.dtype == xp.float64


# ===================================================== empty and single inputs

@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_inputs(backend, dtype):
    boxes, scores = np.zeros((0, 4), dtype), np.zeros(0, dtype)
    labels = np.zeros(0, np.int64)
    for got in (call(backend, sa.nms, [boxes, scores], 0.5),
                call(backend, sa.nms, [boxes, scores], 0.5, score_threshold=0.1, max_output=3),
                call(backend, sa.batched_nms, [boxes, scores, labels], 0.5)):
        assert_indices(got, [])
    for fn, arrays in [(sa.soft_nms, [boxes, scores]),
                       (sa.batched_soft_nms, [boxes, scores, labels])]:
        indices, decayed = call(backend, fn, arrays)
        assert_indices(indices, [])
        assert decayed.dtype == dtype and decayed.shape == (0,)
    assert_values_equal(call(backend, sa.box_area, [boxes]), np.zeros(0, dtype))
    assert_values_equal(call(backend, sa.box_convert, [boxes], "xyxy", "cxcywh"), boxes)
    assert_values_equal(call(backend, sa.box_iou, [boxes, np.ones((3, 4), dtype)]),
                        np.zeros((0, 3), dtype))
    assert_values_equal(call(backend, sa.box_iou, [np.ones((3, 4), dtype), boxes]),
                        np.zeros((3, 0), dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_single_box(backend, dtype):
    boxes, scores = np.array([[0, 0, 1, 1]], dtype), np.array([0.5], dtype)
    assert_indices(call(backend, sa.nms, [boxes, scores], 0.0), [0])
    assert_indices(call(backend, sa.nms, [boxes, scores], 0.0, score_threshold=0.5), [])
    assert_indices(call(backend, sa.batched_nms, [boxes, scores, np.array([3])], 0.0), [0])
    indices, decayed = call(backend, sa.soft_nms, [boxes, scores])
    assert_indices(indices, [0])
    assert_values_equal(decayed, scores)


# ===================================================== array-API dispatch

@pytest.mark.parametrize("dtype", FLOATS)
def test_every_backend_equals_numpy(backend, dtype):
    """Tie-heavy grid boxes through every backend: the same results as the
    NumPy call, as the caller's array type, indices int64."""
    rng = np.random.default_rng(30)
    boxes = make_boxes(rng, 150, dtype, "grid", p_dup=0.1, p_degenerate=0.1, p_nonfinite=0.01)
    scores = make_scores(rng, 150, dtype, "levels", p_nan=0.05)
    soft_scores = make_scores(rng, 150, dtype, "uniform", p_nan=0.05)
    labels = make_labels(rng, 150, 4)
    for thr in IOU_THRESHOLDS:
        for opts in ({}, {"score_threshold": 0.25, "max_output": 20}):
            assert_indices(call(backend, sa.nms, [boxes, scores], thr, **opts),
                           sa.nms(boxes, scores, thr, **opts))
            assert_indices(call(backend, sa.batched_nms, [boxes, scores, labels], thr, **opts),
                           sa.batched_nms(boxes, scores, labels, thr, **opts))
    for opts in ({}, {"method": "gaussian", "sigma": 0.3, "max_output": 40},
                 {"iou_threshold": 0.5, "score_threshold": 0.2}):
        for fn, arrays, by in [(sa.soft_nms, [boxes, soft_scores], None),
                               (sa.batched_soft_nms, [boxes, soft_scores, labels], labels)]:
            assert_soft_nms_matches(backend, call(backend, fn, arrays, **opts),
                                    fn(*arrays, **opts), boxes, opts, by)
    check_nms_family(backend, boxes, scores, labels, iou_threshold=0.5)
    check_soft_nms(backend, boxes, soft_scores, labels, method="gaussian")


def test_torch_non_contiguous_tensors():
    pytest.importorskip("torch")
    rng = np.random.default_rng(31)
    boxes = make_boxes(rng, 80, np.float32, "cluster", p_dup=0.1)
    scores = make_scores(rng, 80, np.float32, "levels")
    bt = torch.from_numpy(np.ascontiguousarray(boxes.T)).T                 # a transposed view
    st_ = torch.from_numpy(np.repeat(scores, 2))[::2]
    assert not bt.is_contiguous() and not st_.is_contiguous()
    got = sa.nms(bt, st_, 0.5)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    assert_indices(got.numpy(), ref_nms(boxes, scores, 0.5))
    indices, decayed = sa.soft_nms(bt, st_)
    assert isinstance(decayed, torch.Tensor) and decayed.dtype == torch.float32
    want = ref_soft_nms(boxes, scores)
    assert_indices(indices.numpy(), want[0])
    assert_bits_equal(decayed.numpy(), want[1])
    assert_values_equal(sa.box_iou(bt, bt).numpy(), ref_box_iou(boxes, boxes))


# ===================================================== memory layouts

def _layout_problem():
    rng = np.random.default_rng(40)
    boxes = make_boxes(rng, 120, np.float64, "grid", p_dup=0.1, p_degenerate=0.1,
                       p_nonfinite=0.01)
    scores = make_scores(rng, 120, np.float64, "levels", p_nan=0.03)
    soft_scores = make_scores(rng, 120, np.float64, "uniform")
    labels = make_labels(rng, 120, 3)
    return boxes, scores, soft_scores, labels


def _box_layouts():
    boxes = _layout_problem()[0]
    return {**memory_layouts(boxes),
            "big-endian": boxes.astype(">f8"),
            "big-endian float32": boxes.astype(">f4")}


def _vector_layouts(v):
    readonly = v.copy()
    readonly.setflags(write=False)
    return {"C": v.copy(), "strided": np.repeat(v, 3)[::3], "negative strides": v[::-1].copy()[::-1],
            "read-only": readonly, "big-endian": v.astype(v.dtype.newbyteorder(">"))}


@pytest.mark.parametrize("layout", list(_box_layouts()))
def test_any_box_layout(layout):
    boxes = _box_layouts()[layout]
    _, scores, soft_scores, labels = _layout_problem()
    native = np.ascontiguousarray(boxes, dtype=boxes.dtype.newbyteorder("="))
    scores = scores.astype(native.dtype)
    soft_scores = soft_scores.astype(native.dtype)
    before = boxes.copy()
    assert_values_equal(sa.box_area(boxes).astype(native.dtype), ref_box_area(native))
    assert_values_equal(sa.box_iou(boxes, boxes[:9]).astype(native.dtype),
                        ref_box_iou(native, native[:9]))
    for fmt in ("xywh", "cxcywh"):
        assert_values_equal(sa.box_convert(boxes, "xyxy", fmt).astype(native.dtype),
                            ref_box_convert(native, "xyxy", fmt))
    for thr in (0.3, 0.5):
        assert_indices(sa.nms(boxes, scores, thr), ref_nms(native, scores, thr))
        assert_indices(sa.batched_nms(boxes, scores, labels, thr),
                       ref_batched_nms(native, scores, labels, thr))
    for method in ("linear", "gaussian"):
        indices, decayed = sa.soft_nms(boxes, soft_scores, method=method)
        want = ref_soft_nms(native, soft_scores, method=method)
        assert_indices(indices, want[0])
        assert_bits_equal(decayed, want[1])
    assert_values_equal(boxes, before)


@pytest.mark.parametrize("layout", ["strided", "negative strides", "read-only", "big-endian"])
def test_any_scores_and_labels_layout(layout):
    boxes, scores, soft_scores, labels = _layout_problem()
    s = _vector_layouts(scores)[layout]
    ss = _vector_layouts(soft_scores)[layout]
    lab = _vector_layouts(labels)[layout]
    copies = [a.copy() for a in (s, ss, lab)]
    for thr in (0.3, 0.5):
        assert_indices(sa.nms(boxes, s, thr), ref_nms(boxes, scores, thr))
        assert_indices(sa.batched_nms(boxes, s, lab, thr),
                       ref_batched_nms(boxes, scores, labels, thr))
    indices, decayed = sa.soft_nms(boxes, ss, method="gaussian")
    want = ref_soft_nms(boxes, soft_scores, method="gaussian")
    assert_indices(indices, want[0])
    assert_bits_equal(decayed, want[1])
    indices, decayed = sa.batched_soft_nms(boxes, ss, lab)
    want = ref_batched_soft_nms(boxes, soft_scores, labels)
    assert_indices(indices, want[0])
    assert_bits_equal(decayed, want[1])
    for a, b in zip((s, ss, lab), copies):
        assert_values_equal(a, b)


# ===================================================== bad input

def _names(arg):
    return rf"\b{arg}\b"


_B = np.array([[0, 0, 1, 1], [0, 0, 2, 2], [1, 1, 3, 3]], np.float64)
_S = np.array([0.9, 0.8, 0.7])
_L = np.array([0, 1, 0])

# (id, function, array arguments, other positional arguments, keywords, error, argument named)
BAD_INPUTS = [
    # nms
    ("nms boxes 1-D", sa.nms, [_B[0], _S[:1]], (0.5,), {}, ValueError, "boxes"),
    ("nms boxes 3 columns", sa.nms, [_B[:, :3], _S], (0.5,), {}, ValueError, "boxes"),
    ("nms boxes 3-D", sa.nms, [_B[None], _S], (0.5,), {}, ValueError, "boxes"),
    ("nms boxes complex", sa.nms, [_B + 0j, _S], (0.5,), {}, TypeError, "boxes"),
    ("nms scores complex", sa.nms, [_B, _S + 0j], (0.5,), {}, TypeError, "scores"),
    ("nms scores 2-D", sa.nms, [_B, _S[:, None]], (0.5,), {}, ValueError, "scores"),
    ("nms scores too short", sa.nms, [_B, _S[:2]], (0.5,), {}, ValueError, "scores"),
    ("nms scores too long", sa.nms, [_B[:2], _S], (0.5,), {}, ValueError, "scores"),
    ("nms iou nan", sa.nms, [_B, _S], (np.nan,), {}, ValueError, "iou_threshold"),
    ("nms iou negative", sa.nms, [_B, _S], (-0.1,), {}, ValueError, "iou_threshold"),
    ("nms iou str", sa.nms, [_B, _S], ("0.5",), {}, (TypeError, ValueError), "iou_threshold"),
    ("nms iou None", sa.nms, [_B, _S], (None,), {}, (TypeError, ValueError), "iou_threshold"),
    ("nms iou complex", sa.nms, [_B, _S], (0.5j,), {}, (TypeError, ValueError), "iou_threshold"),
    ("nms max_output negative", sa.nms, [_B, _S], (0.5,), {"max_output": -1}, ValueError,
     "max_output"),
    ("nms max_output float", sa.nms, [_B, _S], (0.5,), {"max_output": 1.5},
     (TypeError, ValueError), "max_output"),
    ("nms score_threshold str", sa.nms, [_B, _S], (0.5,), {"score_threshold": "0.1"},
     (TypeError, ValueError), "score_threshold"),
    # batched_nms
    ("batched labels float", sa.batched_nms, [_B, _S, _L.astype(float)], (0.5,), {},
     (TypeError, ValueError), "labels"),
    ("batched labels complex", sa.batched_nms, [_B, _S, _L + 0j], (0.5,), {},
     (TypeError, ValueError), "labels"),
    ("batched labels too short", sa.batched_nms, [_B, _S, _L[:2]], (0.5,), {},
     (TypeError, ValueError), "labels"),
    ("batched labels 2-D", sa.batched_nms, [_B, _S, _L[:, None]], (0.5,), {},
     (TypeError, ValueError), "labels"),
    ("batched scores too short", sa.batched_nms, [_B, _S[:2], _L], (0.5,), {},
     (TypeError, ValueError), "scores"),
    ("batched boxes 5 columns", sa.batched_nms, [np.zeros((3, 5)), _S, _L], (0.5,), {},
     (TypeError, ValueError), "boxes"),
    ("batched iou nan", sa.batched_nms, [_B, _S, _L], (np.nan,), {}, ValueError,
     "iou_threshold"),
    ("batched iou negative", sa.batched_nms, [_B, _S, _L], (-1.0,), {}, ValueError,
     "iou_threshold"),
    ("batched max_output negative", sa.batched_nms, [_B, _S, _L], (0.5,), {"max_output": -2},
     ValueError, "max_output"),
    # soft_nms
    ("soft method", sa.soft_nms, [_B, _S], (), {"method": "hard"}, ValueError, "method"),
    ("soft method empty", sa.soft_nms, [_B, _S], (), {"method": ""}, ValueError, "method"),
    ("soft sigma 0", sa.soft_nms, [_B, _S], (), {"method": "gaussian", "sigma": 0.0},
     ValueError, "sigma"),
    ("soft sigma negative", sa.soft_nms, [_B, _S], (), {"method": "gaussian", "sigma": -0.5},
     ValueError, "sigma"),
    ("soft sigma nan", sa.soft_nms, [_B, _S], (), {"method": "gaussian", "sigma": np.nan},
     ValueError, "sigma"),
    ("soft sigma inf", sa.soft_nms, [_B, _S], (), {"method": "gaussian", "sigma": np.inf},
     ValueError, "sigma"),
    ("soft sigma str", sa.soft_nms, [_B, _S], (), {"method": "gaussian", "sigma": "0.5"},
     (TypeError, ValueError), "sigma"),
    ("soft iou negative", sa.soft_nms, [_B, _S], (), {"iou_threshold": -0.3}, ValueError,
     "iou_threshold"),
    ("soft iou nan", sa.soft_nms, [_B, _S], (), {"iou_threshold": np.nan}, ValueError,
     "iou_threshold"),
    ("soft score_threshold nan", sa.soft_nms, [_B, _S], (), {"score_threshold": np.nan},
     ValueError, "score_threshold"),
    ("soft score_threshold str", sa.soft_nms, [_B, _S], (), {"score_threshold": "a"},
     (TypeError, ValueError), "score_threshold"),
    ("soft max_output negative", sa.soft_nms, [_B, _S], (), {"max_output": -1}, ValueError,
     "max_output"),
    ("soft max_output float", sa.soft_nms, [_B, _S], (), {"max_output": 2.0},
     (TypeError, ValueError), "max_output"),
    ("soft boxes complex", sa.soft_nms, [_B + 0j, _S], (), {}, TypeError, "boxes"),
    ("soft boxes 3 columns", sa.soft_nms, [_B[:, :3], _S], (), {}, ValueError, "boxes"),
    ("soft scores mismatch", sa.soft_nms, [_B, _S[:2]], (), {}, ValueError, "scores"),
    ("soft scores complex", sa.soft_nms, [_B, _S + 0j], (), {}, TypeError, "scores"),
    ("batched soft labels float", sa.batched_soft_nms, [_B, _S, _L + 0.5], (), {},
     (TypeError, ValueError), "labels"),
    ("batched soft labels mismatch", sa.batched_soft_nms, [_B, _S, _L[:1]], (), {},
     (TypeError, ValueError), "labels"),
    ("batched soft method", sa.batched_soft_nms, [_B, _S, _L], (), {"method": "gauss"},
     ValueError, "method"),
    ("batched soft sigma", sa.batched_soft_nms, [_B, _S, _L], (),
     {"method": "gaussian", "sigma": 0}, ValueError, "sigma"),
    ("batched soft max_output", sa.batched_soft_nms, [_B, _S, _L], (), {"max_output": -5},
     ValueError, "max_output"),
    # box_convert / box_area / box_iou
    ("convert in_fmt", sa.box_convert, [_B], ("xyzw", "xyxy"), {}, ValueError, "in_fmt"),
    ("convert out_fmt", sa.box_convert, [_B], ("xyxy", "cxcy"), {}, ValueError, "out_fmt"),
    ("convert in_fmt None", sa.box_convert, [_B], (None, "xyxy"), {}, (TypeError, ValueError),
     "in_fmt"),
    ("convert 3 columns", sa.box_convert, [_B[:, :3]], ("xyxy", "xywh"), {}, ValueError,
     "boxes"),
    ("convert complex", sa.box_convert, [_B + 0j], ("xyxy", "xywh"), {}, TypeError, "boxes"),
    ("area 5 columns", sa.box_area, [np.zeros((2, 5))], (), {}, ValueError, "boxes"),
    ("area 0-d", sa.box_area, [np.float64(1.0)], (), {}, ValueError, "boxes"),
    ("area complex", sa.box_area, [_B + 0j], (), {}, TypeError, "boxes"),
    ("iou boxes1 1-D", sa.box_iou, [_B[0], _B], (), {}, ValueError, "boxes1"),
    ("iou boxes1 3 columns", sa.box_iou, [_B[:, :3], _B], (), {}, ValueError, "boxes1"),
    ("iou boxes2 5 columns", sa.box_iou, [_B, np.zeros((2, 5))], (), {}, ValueError, "boxes2"),
    ("iou boxes2 3-D", sa.box_iou, [_B, _B[None]], (), {}, ValueError, "boxes2"),
    ("iou boxes2 complex", sa.box_iou, [_B, _B + 0j], (), {}, TypeError, "boxes2"),
]


@pytest.mark.parametrize("case, fn, arrays, args, kwargs, error, name", BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_naming_the_argument(backend, case, fn, arrays, args, kwargs, error,
                                              name):
    xs = [backend.asarray(a) for a in arrays]
    before = [np.array(backend.to_numpy(x)) for x in xs]
    with pytest.raises(error, match=_names(name)):
        fn(*xs, *args, **kwargs)
    for x, b in zip(xs, before):
        np.testing.assert_array_equal(backend.to_numpy(x), b)


def test_good_scalar_arguments_are_accepted():
    """NumPy scalars and ints are real numbers; max_output may be a NumPy
    integer."""
    want = ref_nms(HAND_BOXES, HAND_SCORES, 0.4)
    assert_indices(sa.nms(HAND_BOXES, HAND_SCORES, np.float32(0.4)), want)
    assert_indices(sa.nms(HAND_BOXES, HAND_SCORES, 1), ref_nms(HAND_BOXES, HAND_SCORES, 1.0))
    assert_indices(sa.nms(HAND_BOXES, HAND_SCORES, 0.4, max_output=np.int64(2)), want[:2])
    indices, _ = sa.soft_nms(HAND_BOXES, HAND_SCORES, sigma=np.float64(0.5), method="gaussian",
                             max_output=np.int32(3))
    assert_indices(indices, ref_soft_nms(HAND_BOXES, HAND_SCORES, method="gaussian")[0][:3])


# ===================================================== large N, threads

_LARGE = {}


def _large_problem():
    """20000 scattered float32 boxes in a 1000 x 1000 image (integer
    coordinates half the time, so exact duplicates and IoU ties), scores
    rounded to 1e-3 (ties), and the expected indices at 0.5 (torchvision's
    nms where importable, else the vectorized reference), computed once."""
    if not _LARGE:
        rng = np.random.default_rng(50)
        n = 20000
        boxes = make_boxes(rng, n, np.float32, "scattered", p_dup=0.02)
        half = rng.random(n) < 0.5
        boxes[half] = np.round(boxes[half])
        scores = np.round(rng.random(n), 3).astype(np.float32)
        labels = make_labels(rng, n, 10)
        try:
            ops = tv()
            want = {thr: ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
                    for thr in (0.5, 0.7)}
        except pytest.skip.Exception:
            want = {thr: ref_nms_fast(boxes, scores, thr) for thr in (0.5, 0.7)}
        _LARGE.update(boxes=boxes, scores=scores, labels=labels, want=want)
    return _LARGE


@pytest.mark.parametrize("iou_threshold", [0.5, 0.7])
def test_large_n_nms_exact(iou_threshold):
    p = _large_problem()
    assert_indices(sa.nms(p["boxes"], p["scores"], iou_threshold), p["want"][iou_threshold])


def test_large_n_nms_exact_every_backend(backend):
    """The first 5000 of the large problem (the portable path is slower)."""
    p = _large_problem()
    boxes, scores = p["boxes"][:5000], p["scores"][:5000]
    got = call(backend, sa.nms, [boxes, scores], 0.5)
    assert_indices(got, ref_nms_fast(boxes, scores, 0.5))


def test_large_n_batched_nms_exact():
    p = _large_problem()
    boxes, scores, labels = p["boxes"], p["scores"], p["labels"]
    want = ref_batched_nms(boxes, scores, labels, 0.5, nms=ref_nms_fast)
    assert_indices(sa.batched_nms(boxes, scores, labels, 0.5), want)
    want = ref_batched_nms(boxes, scores, labels, 0.5, score_threshold=0.3, max_output=500,
                           nms=ref_nms_fast)
    assert_indices(sa.batched_nms(boxes, scores, labels, 0.5, score_threshold=0.3,
                                  max_output=500), want)


def test_large_n_float64_nms_exact():
    p = _large_problem()
    boxes, scores = p["boxes"][:8000].astype(np.float64), p["scores"][:8000].astype(np.float64)
    for thr in (0.0, 0.3):
        assert_indices(sa.nms(boxes, scores, thr), ref_nms_fast(boxes, scores, thr))


def test_thread_counts_agree():
    p = _large_problem()
    boxes, scores, labels = p["boxes"][:6000], p["scores"][:6000], p["labels"][:6000]
    results = []
    for n_threads in (1, 2):
        with sa.threads(n_threads):
            results.append((sa.nms(boxes, scores, 0.5),
                            sa.batched_nms(boxes, scores, labels, 0.5),
                            sa.soft_nms(boxes[:2000], scores[:2000], method="gaussian")))
    for a, b in zip(*results):
        if isinstance(a, tuple):
            assert_indices(a[0], b[0])
            assert_bits_equal(a[1], b[1])
        else:
            assert_indices(a, b)
    assert_indices(results[0][0], ref_nms_fast(boxes, scores, 0.5))


# ===================================================== half precision

# torchvision's own box_iou test boxes (test_ops.py FLOAT_BOXES): areas about
# 6e5, far above float16's largest number (65504).
TV_FLOAT_BOXES = [[285.3538, 185.5758, 1193.5110, 851.4551],
                  [285.1472, 188.7374, 1192.4984, 851.0669],
                  [279.2440, 197.9812, 1189.4746, 849.2019]]


def half_cases():
    """(name, make(array of float64) -> caller's half array, to float32 NumPy)."""
    cases = [("numpy float16", lambda a: np.asarray(a).astype(np.float16))]
    if ml_dtypes is not None:
        cases.append(("numpy bfloat16", lambda a: np.asarray(a).astype(ml_dtypes.bfloat16)))
    if torch is not None:
        cases += [("torch float16", lambda a: torch.tensor(np.asarray(a), dtype=torch.float16)),
                  ("torch bfloat16", lambda a: torch.tensor(np.asarray(a), dtype=torch.bfloat16))]
    return cases


def as_float32_numpy(x):
    """A half array's values (exact in float32) as a float32 NumPy array."""
    if torch is not None and isinstance(x, torch.Tensor):
        return x.float().numpy()
    return np.asarray(x, np.float32)


def large_half_boxes(rng, n):
    """Boxes up to 60000 (finite in float16) with sides from 1 to 20000."""
    xy = rng.uniform(0, 40000, (n, 2))
    wh = rng.uniform(1, 20000, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("name, make", half_cases(), ids=[c[0] for c in half_cases()])
def test_half_boxes_against_torchvision(name, make):
    """torchvision's FLOAT_BOXES and large random boxes in float16/bfloat16:
    box_iou and box_area in float32 as torchvision computes them (its
    box_area and box_iou upcast), not NaN and inf."""
    ops = tv()
    rng = np.random.default_rng(40)
    for raw in (TV_FLOAT_BOXES, large_half_boxes(rng, 50)):
        boxes = make(raw)
        exact = torch.from_numpy(as_float32_numpy(boxes))      # the half values, in float32
        iou = sa.box_iou(boxes, boxes)
        assert type(iou) is type(boxes)
        assert_values_equal(as_float32_numpy(iou), ops.box_iou(exact, exact).numpy())
        assert np.isfinite(as_float32_numpy(iou)).all()
        area = sa.box_area(boxes)
        assert_values_equal(as_float32_numpy(area), ops.box_area(exact).numpy())
        if isinstance(boxes, torch.Tensor):      # torchvision takes tensors only
            assert iou.dtype == ops.box_iou(boxes, boxes).dtype == torch.float32
            assert area.dtype == ops.box_area(boxes).dtype == torch.float32
        else:
            assert iou.dtype == area.dtype == np.float32
    if "bfloat16" not in name:      # torchvision's expected IoUs (float16 tolerance 0.002)
        np.testing.assert_allclose(as_float32_numpy(sa.box_iou(make(TV_FLOAT_BOXES),
                                                               make(TV_FLOAT_BOXES))),
                                   [[1.0, 0.9933, 0.9673], [0.9933, 1.0, 0.9737],
                                    [0.9673, 0.9737, 1.0]], atol=0.002, rtol=0)


@pytest.mark.parametrize("name, make", half_cases(), ids=[c[0] for c in half_cases()])
def test_half_box_convert_rounds_once(name, make):
    """box_convert of half boxes keeps their dtype, and is the float32
    conversion rounded once: no overflow where x1 + x2 > 65504."""
    rng = np.random.default_rng(41)
    boxes = make(large_half_boxes(rng, 40))
    exact = as_float32_numpy(boxes)
    for in_fmt in FORMATS:
        for out_fmt in FORMATS:
            with np.errstate(over="ignore"):    # xywh -> xyxy of sides up to 20000 overflows
                got = sa.box_convert(boxes, in_fmt, out_fmt)
            assert got.dtype == boxes.dtype and type(got) is type(boxes)
            with np.errstate(over="ignore"):
                want = make(ref_box_convert(exact, in_fmt, out_fmt))
            assert_values_equal(as_float32_numpy(got), as_float32_numpy(want))
    assert np.isfinite(as_float32_numpy(sa.box_convert(boxes, "xyxy", "cxcywh"))).all()


@pytest.mark.parametrize("name, make", half_cases(), ids=[c[0] for c in half_cases()])
def test_half_nms_keeps_what_float32_keeps(name, make):
    """nms, batched_nms, soft_nms of half boxes and scores select what the
    same values in float32 select (in float16 the areas overflow: the
    issue's nms kept [1, 0, 2] of torchvision's boxes where float32 keeps
    [1]); torchvision's nms of the float32 values agrees."""
    ops = tv()
    rng = np.random.default_rng(42)
    cases = [(TV_FLOAT_BOXES, [0.5, 0.9, 0.3])]
    raw = large_half_boxes(rng, 200)
    raw[100:] = raw[:100] + rng.uniform(-500, 500, (100, 4))     # near duplicates
    cases.append((raw, rng.random(200)))
    for raw_boxes, raw_scores in cases:
        boxes, scores = make(raw_boxes), make(raw_scores)
        b32, s32 = as_float32_numpy(boxes), as_float32_numpy(scores)
        labels = np.arange(len(s32)) % 3
        for thr in (0.3, 0.5, 0.7):
            want = ops.nms(torch.from_numpy(b32), torch.from_numpy(s32), thr).numpy()
            assert_indices(np.asarray(sa.nms(boxes, scores, thr)), want)
            assert_indices(np.asarray(sa.nms(boxes, scores, thr)), sa.nms(b32, s32, thr))
            t_labels = labels if isinstance(boxes, np.ndarray) else torch.from_numpy(labels)
            assert_indices(np.asarray(sa.batched_nms(boxes, scores, t_labels, thr)),
                           sa.batched_nms(b32, s32, labels, thr))
        for method in ("linear", "gaussian"):
            indices, decayed = sa.soft_nms(boxes, scores, method=method)
            want_indices, want_decayed = sa.soft_nms(b32, s32, method=method)
            assert_indices(np.asarray(indices), want_indices)
            assert decayed.dtype == scores.dtype
            assert_values_equal(as_float32_numpy(decayed), as_float32_numpy(make(want_decayed)))
    assert_indices(np.asarray(sa.nms(make(TV_FLOAT_BOXES), make([0.5, 0.9, 0.3]), 0.5)), [1])


def test_half_boxes_portable_path():
    """float16 tensors that require grad (the portable path) widen too."""
    pytest.importorskip("torch")
    boxes = torch.tensor(TV_FLOAT_BOXES, dtype=torch.float16, requires_grad=True)
    exact = np.asarray(TV_FLOAT_BOXES, np.float16).astype(np.float32)
    iou = sa.box_iou(boxes, boxes)
    assert iou.dtype == torch.float32 and iou.requires_grad
    assert_values_equal(iou.detach().numpy(), ref_box_iou(exact, exact))
    assert_values_equal(sa.box_area(boxes).detach().numpy(), ref_box_area(exact))
    scores = torch.tensor([0.5, 0.9, 0.3], dtype=torch.float16, requires_grad=True)
    assert_indices(sa.nms(boxes, scores, 0.5).numpy(), [1])


# ===================================================== torchvision compatibility

SHAPE_CASES = ["nms boxes 1-D", "nms boxes 3 columns", "nms boxes 3-D", "nms scores 2-D",
               "nms scores too short", "nms scores too long", "batched labels too short",
               "batched labels 2-D", "batched scores too short", "batched boxes 5 columns",
               "soft boxes 3 columns", "soft scores mismatch", "batched soft labels mismatch",
               "convert 3 columns", "area 5 columns", "area 0-d", "iou boxes1 1-D",
               "iou boxes1 3 columns", "iou boxes2 5 columns", "iou boxes2 3-D"]


@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if c[0] in SHAPE_CASES],
                         ids=lambda c: c[0])
def test_shape_errors_are_value_and_runtime_errors(case):
    """Shape errors raise BoxShapeError, which torchvision users catch as
    RuntimeError and softarray's as ValueError."""
    _, fn, arrays, args, kwargs, _, name = case
    with pytest.raises(sa.BoxShapeError, match=_names(name)) as info:
        fn(*arrays, *args, **kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)


def test_shape_errors_caught_like_torchvision():
    """The same mistakes raise RuntimeError in torchvision and are caught by
    the same except clause with softarray."""
    ops = tv()
    cases = [(torch.zeros((3, 5)), torch.zeros(3)), (torch.zeros((3, 4)), torch.zeros(2)),
             (torch.zeros(3), torch.zeros(3))]
    for boxes, scores in cases:
        for fn in (ops.nms, sa.nms):
            with pytest.raises(RuntimeError):
                fn(boxes, scores, 0.5)
    for fn, args in [(sa.box_iou, (torch.zeros((3, 5)), torch.zeros((3, 4)))),
                     (sa.box_area, (torch.zeros((3, 5)),))]:
        with pytest.raises(RuntimeError):
            fn(*args)


def test_batched_nms_of_no_boxes_with_none_like_torchvision():
    ops = tv()
    empty = torch.empty((0,), dtype=torch.int64)
    want = ops.batched_nms(empty, None, None, None)
    got = sa.batched_nms(empty, None, None, None)
    assert type(got) is torch.Tensor and got.dtype == want.dtype == torch.int64
    assert got.shape == want.shape == (0,)
    assert_indices(sa.batched_nms(np.zeros((0, 4)), None, None, 0.5), [])
    with pytest.raises(TypeError, match="labels"):      # boxes present: labels are required
        sa.batched_nms(np.zeros((1, 4)), np.zeros(1), None, 0.5)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "bool"])
def test_box_area_of_integer_boxes_is_torchvisions_integer(dtype):
    ops = tv()
    raw = np.array([[0, 0, 100, 100], [0, 0, 0, 0], [10, 20, 5, 90]])
    if dtype == "uint8":
        raw = np.array([[0, 0, 100, 100], [0, 0, 0, 0], [10, 20, 50, 90]])
    if dtype == "bool":
        raw = np.array([[0, 0, 1, 1], [1, 0, 1, 1], [0, 1, 1, 0]])
    t = torch.from_numpy(raw.astype(dtype))
    want = ops.box_area(t)
    got = sa.box_area(t)
    assert got.dtype == want.dtype
    assert_values_equal(got.numpy(), want.numpy())
    got_np = sa.box_area(raw.astype(dtype))
    assert_values_equal(got_np, want.numpy())
    # torchvision's test: areas 10000 and 0, int32 for int8..int32
    if dtype in ("int8", "int16", "int32"):
        assert got_np.dtype == np.int32


# ===================================================== GIoU, DIoU, CIoU

def ref_iou_variant(boxes1, boxes2, variant, eps=1e-7):
    """The papers' formulas in plain NumPy, in the boxes' dtype (torchvision's
    order of operations; eps on the squared diagonal and alpha's denominator)."""
    b1, b2 = np.asarray(boxes1), np.asarray(boxes2)
    t = b1.dtype.type
    with np.errstate(all="ignore"):
        a, b = b1[:, None, :], b2[None, :, :]
        w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), t(0))
        h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), t(0))
        inter = w * h
        union = ref_box_area(b1)[:, None] + ref_box_area(b2)[None, :] - inter
        iou = inter / union
        ew = np.maximum(np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0]), t(0))
        eh = np.maximum(np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1]), t(0))
        if variant == "generalized":
            enclosing = ew * eh
            return iou - (enclosing - union) / enclosing
        diagonal = ew * ew + eh * eh + t(eps)
        dx = (a[..., 0] + a[..., 2]) / t(2) - (b[..., 0] + b[..., 2]) / t(2)
        dy = (a[..., 1] + a[..., 3]) / t(2) - (b[..., 1] + b[..., 3]) / t(2)
        diou = iou - (dx * dx + dy * dy) / diagonal
        if variant == "distance":
            return diou
        ratio1 = np.arctan((b1[:, 2] - b1[:, 0]) / (b1[:, 3] - b1[:, 1]))
        ratio2 = np.arctan((b2[:, 2] - b2[:, 0]) / (b2[:, 3] - b2[:, 1]))
        d = ratio1[:, None] - ratio2[None, :]
        v = t(4 / math.pi ** 2) * (d * d)
        alpha = v / (t(1) - iou + v + t(eps))
        return diou - alpha * v


IOU_VARIANT_FUNCTIONS = {"generalized": sa.generalized_box_iou, "distance": sa.distance_box_iou,
                         "complete": sa.complete_box_iou}


def variant_call(fn, variant, b1, b2, eps):
    return fn(b1, b2) if variant == "generalized" else fn(b1, b2, eps=eps)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("variant", list(IOU_VARIANT_FUNCTIONS))
def test_iou_variants(backend, dtype, variant):
    """Every backend against the NumPy reference (compiled: to the bit but
    CIoU's arctan, a library's; portable: within a few ulps)."""
    fn = IOU_VARIANT_FUNCTIONS[variant]
    rng = np.random.default_rng(50)
    boxes1 = make_boxes(rng, 40, dtype, "grid", p_dup=0.2)
    boxes2 = make_boxes(rng, 23, dtype, "cluster")
    tol = dict(rtol=0, atol=0) if backend.compiled and variant != "complete" else \
        dict(rtol=0, atol=(1e-5 if dtype == np.float32 else 1e-12))
    for b1, b2 in [(boxes1, boxes2), (boxes2, boxes1), (boxes1, boxes1), (boxes1[:0], boxes2),
                   (boxes1, boxes2[:0])]:
        for eps in (1e-7, 0.0, 0.5):
            if variant == "generalized" and eps != 1e-7:
                continue
            got = call(backend, lambda x, y: variant_call(fn, variant, x, y, eps), [b1, b2])
            want = ref_iou_variant(b1, b2, variant, eps)
            assert got.dtype == dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, **tol)


@settings(max_examples=40, deadline=None)
@given(problem=random_problems(max_n=60, finite_coords=True, layouts=("grid", "cluster")),
       variant=st.sampled_from(list(IOU_VARIANT_FUNCTIONS)))
def test_iou_variants_against_torchvision(problem, variant):
    ops = tv()
    boxes = problem[0]
    other = boxes[::-1].copy()
    t1, t2 = torch.from_numpy(boxes), torch.from_numpy(other)
    want = getattr(ops, f"{variant}_box_iou")(t1, t2).numpy()
    got = IOU_VARIANT_FUNCTIONS[variant](boxes, other)
    assert got.dtype == want.dtype
    if variant == "complete":      # arctan: NumPy's against torch's
        np.testing.assert_allclose(got, want, rtol=0,
                                   atol=1e-5 if boxes.dtype == np.float32 else 1e-12)
    else:
        assert_values_equal(got, want)


@pytest.mark.parametrize("variant", list(IOU_VARIANT_FUNCTIONS))
def test_iou_variants_torchvision_test_values(variant):
    """torchvision's own expected values (test_ops.py) for integer, float and
    float16 boxes with its tolerances, and its dtypes out."""
    ops = tv()
    fn = IOU_VARIANT_FUNCTIONS[variant]
    int_boxes = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300], [0, 0, 25, 25]]
    int_boxes2 = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300]]
    int_expected = {
        "generalized": [[1.0, 0.25, -0.7778], [0.25, 1.0, -0.8611], [-0.7778, -0.8611, 1.0],
                        [0.0625, 0.25, -0.8819]],
        "distance": [[1.0, 0.1875, -0.4444], [0.1875, 1.0, -0.5625], [-0.4444, -0.5625, 1.0],
                     [-0.0781, 0.1875, -0.6267]],
    }
    int_expected["complete"] = int_expected["distance"]
    float_expected = [[1.0, 0.9933, 0.9673], [0.9933, 1.0, 0.9737], [0.9673, 0.9737, 1.0]]
    for dtype in (torch.int16, torch.int32, torch.int64):
        b1, b2 = torch.tensor(int_boxes, dtype=dtype), torch.tensor(int_boxes2, dtype=dtype)
        got = fn(b1, b2)
        assert got.dtype == getattr(ops, f"{variant}_box_iou")(b1, b2).dtype
        np.testing.assert_allclose(got.numpy(), int_expected[variant], atol=1e-4, rtol=0)
    for dtype, atol in [(torch.float16, 0.002), (torch.float32, 1e-3), (torch.float64, 1e-3)]:
        b = torch.tensor(TV_FLOAT_BOXES, dtype=dtype)
        got = fn(b, b)
        assert got.dtype == getattr(ops, f"{variant}_box_iou")(b, b).dtype
        np.testing.assert_allclose(got.numpy(), float_expected, atol=atol, rtol=0)
    # bfloat16 rounds the coordinates by up to 4: the float32 values of the
    # rounded boxes (torchvision's GIoU mixes bfloat16 and float32 steps)
    b = torch.tensor(TV_FLOAT_BOXES, dtype=torch.bfloat16)
    got = fn(b, b)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), getattr(ops, f"{variant}_box_iou")(b.float(), b.float()),
                               atol=1e-6, rtol=0)
    b16 = np.asarray(TV_FLOAT_BOXES, np.float16)
    got = fn(b16, b16)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref_iou_variant(b16.astype(np.float32),
                                                    b16.astype(np.float32), variant),
                               rtol=0, atol=1e-6)


def test_iou_variants_by_hand():
    unit, diagonal = np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 2.0, 2.0]])
    assert sa.generalized_box_iou(unit, diagonal)[0, 0] == -0.5       # enclosing 4, union 2
    # DIoU: centres sqrt(2) apart, enclosing diagonal sqrt(8): 0 - 2/8
    np.testing.assert_allclose(sa.distance_box_iou(unit, diagonal, eps=0.0), [[-0.25]], rtol=1e-15)
    # CIoU of boxes of equal aspect: v = 0, so CIoU = DIoU
    np.testing.assert_array_equal(sa.complete_box_iou(unit, diagonal),
                                  sa.distance_box_iou(unit, diagonal))
    wide = np.array([[0.0, 0.0, 2.0, 1.0]])
    v = 4 / math.pi ** 2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    iou = 0.5
    diou = iou - 0.25 / (4 + 1 + 1e-7)
    np.testing.assert_allclose(sa.complete_box_iou(wide, unit),
                               [[diou - v / (1 - iou + v + 1e-7) * v]], rtol=1e-14)
    with pytest.raises(ValueError, match="eps"):
        sa.distance_box_iou(unit, unit, eps=-1.0)
    with pytest.raises(ValueError, match="eps"):
        sa.complete_box_iou(unit, unit, eps=math.nan)
    with pytest.raises(sa.BoxShapeError, match="boxes2"):
        sa.generalized_box_iou(unit, np.zeros((1, 3)))


def test_iou_variants_thread_counts_agree():
    rng = np.random.default_rng(51)
    boxes1 = make_boxes(rng, 1200, np.float32, "cluster")
    boxes2 = make_boxes(rng, 1000, np.float32, "grid")
    for fn in IOU_VARIANT_FUNCTIONS.values():
        with sa.threads(1):
            one = fn(boxes1, boxes2)
        with sa.threads(2):
            assert_values_equal(fn(boxes1, boxes2), one)


# ===================================================== clip_boxes_to_image, remove_small_boxes

def test_clip_boxes_to_image(backend):
    rng = np.random.default_rng(60)
    boxes = rng.uniform(-50, 150, (40, 4))
    boxes[3, 1] = np.nan
    for size in [(80, 100), (0, 0), (80.5, 99.25)]:
        got = call(backend, sa.clip_boxes_to_image, [boxes], size)
        want = boxes.copy()
        with np.errstate(invalid="ignore"):
            want[:, 0::2] = np.where(want[:, 0::2] < 0, 0, np.where(want[:, 0::2] > size[1],
                                                                    size[1], want[:, 0::2]))
            want[:, 1::2] = np.where(want[:, 1::2] < 0, 0, np.where(want[:, 1::2] > size[0],
                                                                    size[0], want[:, 1::2]))
        assert_values_equal(got, want)
    got = call(backend, sa.clip_boxes_to_image, [boxes.reshape(2, 20, 4)], (80, 100))
    assert got.shape == (2, 20, 4)


def test_clip_and_remove_small_against_torchvision():
    ops = tv()
    rng = np.random.default_rng(61)
    raw = rng.uniform(-50, 150, (60, 4))
    raw[::7, 2] = raw[::7, 0] + 3.0          # exactly 3 wide: min_size 3 keeps them
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32,
                  torch.int64):
        t = torch.tensor(raw).to(dtype)
        for size in [(80, 100), (64.5, 0)]:
            want = ops.clip_boxes_to_image(t, size)
            got = sa.clip_boxes_to_image(t, size)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got.float().numpy(), want.float().numpy())
        for min_size in (0.0, 3.0, 20.0, -1.0):
            want = ops.remove_small_boxes(t.float(), min_size)     # float32 sides
            got = sa.remove_small_boxes(t, min_size)
            assert got.dtype == torch.int64
            np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_remove_small_boxes(backend):
    boxes = np.array([[0, 0, 4, 4], [0, 0, 1, 9], [0, 0, 9, 1], [2, 2, 5, 5], [np.nan, 0, 9, 9],
                      [5, 5, 0, 0]], np.float64)
    assert_indices(call(backend, sa.remove_small_boxes, [boxes], 3.0), [0, 3])
    assert_indices(call(backend, sa.remove_small_boxes, [boxes], 1.0), [0, 1, 2, 3])
    assert_indices(call(backend, sa.remove_small_boxes, [boxes[:0]], 1.0), [])
    with pytest.raises(sa.BoxShapeError, match="boxes"):
        sa.remove_small_boxes(boxes[:, :3], 1.0)
    with pytest.raises(ValueError, match="min_size"):
        sa.remove_small_boxes(boxes, math.nan)
    with pytest.raises(ValueError, match="size"):
        sa.clip_boxes_to_image(boxes, (-1, 4))
    with pytest.raises(TypeError, match="size"):
        sa.clip_boxes_to_image(boxes, 4)


# ===================================================== IoU losses

LOSS_FUNCTIONS = {"generalized": sa.generalized_box_iou_loss, "distance": sa.distance_box_iou_loss,
                  "complete": sa.complete_box_iou_loss}


def loss_pairs(rng, n, dtype):
    """Predictions near their targets, with overlaps, disjoint pairs, exact
    duplicates and shared edges (ties of max/min) and a few far off."""
    target = make_boxes(rng, n, dtype, "cluster")
    pred = (target + rng.normal(0, 8, (n, 4))).astype(dtype)
    pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
    pred[::7] = target[::7]                      # identical: every max/min ties
    pred[1::7, 0] = target[1::7, 0]              # one shared edge
    pred[2::7] = target[2::7] + 500              # disjoint
    return pred, target


def torchvision_loss(variant, b1, b2, reduction, eps):
    """torchvision's loss and torch autograd's gradients (NumPy arrays)."""
    ops = tv()
    t1 = torch.from_numpy(np.array(b1)).requires_grad_()
    t2 = torch.from_numpy(np.array(b2)).requires_grad_()
    loss = getattr(ops, f"{variant}_box_iou_loss")(t1, t2, reduction=reduction, eps=eps)
    loss.sum().backward()
    return loss.detach().numpy(), t1.grad.numpy(), t2.grad.numpy()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("variant", list(LOSS_FUNCTIONS))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_box_losses_against_torchvision(backend, variant, reduction, dtype):
    """Loss and both gradients against torchvision's loss under torch
    autograd, through every backend."""
    fn = LOSS_FUNCTIONS[variant]
    rng = np.random.default_rng(70)
    pred, target = loss_pairs(rng, 140, dtype)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    for eps in (1e-7, 0.5):
        want, want1, want2 = torchvision_loss(variant, pred, target, reduction, eps)
        loss, g1, g2 = call(backend, lambda a, b: _flat(fn(a, b, reduction, eps,
                                                            return_grad=True)), [pred, target])
        assert loss.dtype == dtype and loss.shape == want.shape
        np.testing.assert_allclose(loss, want, **tol)
        for got, ref in ((g1, want1), (g2, want2)):
            assert got.dtype == dtype and got.shape == pred.shape
            np.testing.assert_allclose(got, ref, rtol=tol["rtol"],
                                       atol=tol["atol"] * max(1.0, np.abs(ref).max()))
        plain = call(backend, lambda a, b: fn(a, b, reduction, eps), [pred, target])
        np.testing.assert_array_equal(plain, loss)


def _flat(result):
    """(loss, (g1, g2)) as the three arrays call() checks."""
    loss, (g1, g2) = result
    return loss, g1, g2


def test_box_losses_torchvision_test_values():
    """torchvision's test_ops.py values (float32 and half) and its empty case."""
    pytest.importorskip("torch")
    box1 = [-1.0, -1.0, 1.0, 1.0]
    box2, box3, box4 = [0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 2.0], [1.0, 1.0, 2.0, 2.0]
    cases = {
        "generalized": [(box1, box1, 0.0), (box1, box2, 0.75), (box2, box3, 1.0), (box2, box4, 1.5)],
        "distance": [(box1, box1, 0.0), (box1, box2, 0.8125), (box1, box3, 1.1923),
                     (box1, box4, 1.25)],
        "complete": [(box1, box1, 0.0), (box1, box2, 0.8125), (box1, box3, 1.1923),
                     (box1, box4, 1.25)],
    }
    batched = {"generalized": (2.5, 1.25), "distance": (2.45, 1.225), "complete": (2.45, 1.225)}
    for variant, fn in LOSS_FUNCTIONS.items():
        for dtype in (torch.float32, torch.float16):
            for b1, b2, want in cases[variant]:
                got = fn(torch.tensor(b1, dtype=dtype), torch.tensor(b2, dtype=dtype))
                assert got.dtype == torch.float32 and got.shape == ()
                np.testing.assert_allclose(got.numpy(), want, atol=1e-4)
            pairs1 = torch.tensor([box2, box2], dtype=dtype)
            pairs2 = torch.tensor([box3, box4], dtype=dtype)
            np.testing.assert_allclose(fn(pairs1, pairs2, reduction="sum").numpy(),
                                       batched[variant][0], atol=1e-4)
            np.testing.assert_allclose(fn(pairs1, pairs2, reduction="mean").numpy(),
                                       batched[variant][1], atol=1e-4)
        with pytest.raises(ValueError, match="reduction"):
            fn(pairs1, pairs2, reduction="xyz")
        empty = np.zeros((0, 4), np.float32)
        loss, (g1, g2) = fn(empty, empty, reduction="mean", return_grad=True)
        assert loss.shape == () and loss == 0 and g1.shape == g2.shape == (0, 4)
        assert fn(empty, empty).shape == (0,)


def test_box_losses_half_boxes_like_torchvision():
    """float16 and bfloat16 boxes: float32 losses as torchvision's
    (_upcast_non_float), gradients in the boxes' dtype."""
    ops = tv()
    rng = np.random.default_rng(71)
    pred, target = loss_pairs(rng, 50, np.float64)
    for dtype in (torch.float16, torch.bfloat16):
        t1, t2 = torch.tensor(pred, dtype=dtype), torch.tensor(target, dtype=dtype)
        for variant, fn in LOSS_FUNCTIONS.items():
            want = getattr(ops, f"{variant}_box_iou_loss")(t1, t2)
            loss, (g1, g2) = fn(t1, t2, return_grad=True)
            assert loss.dtype == want.dtype == torch.float32
            np.testing.assert_allclose(loss.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
            assert g1.dtype == g2.dtype == dtype


def test_box_losses_bad_input_and_batches():
    fn = sa.complete_box_iou_loss
    b = np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
    with pytest.raises(sa.BoxShapeError, match="boxes2"):
        fn(b, b[:1])
    with pytest.raises(ValueError, match="eps"):
        fn(b, b, eps=-1.0)
    with pytest.raises((TypeError, ValueError), match="return_grad"):
        fn(b, b, return_grad="yes")
    # (..., 4): a batch of pairs is the flat pairs reshaped
    pred, target = loss_pairs(np.random.default_rng(72), 24, np.float64)
    for variant, fn in LOSS_FUNCTIONS.items():
        flat, (f1, f2) = fn(pred, target, return_grad=True)
        batched, (g1, g2) = fn(pred.reshape(2, 3, 4, 4), target.reshape(2, 3, 4, 4),
                               return_grad=True)
        assert_values_equal(batched, flat.reshape(2, 3, 4))
        assert_values_equal(g1, f1.reshape(2, 3, 4, 4))
        assert_values_equal(g2, f2.reshape(2, 3, 4, 4))


def test_box_losses_thread_counts_agree():
    pred, target = loss_pairs(np.random.default_rng(73), 40_000, np.float32)
    for fn in LOSS_FUNCTIONS.values():
        with sa.threads(1):
            one = _flat(fn(pred, target, "mean", return_grad=True))
        with sa.threads(2):
            for got, want in zip(_flat(fn(pred, target, "mean", return_grad=True)), one):
                assert_values_equal(got, want)


@pytest.mark.skipif(ml_dtypes is None, reason="ml_dtypes is not installed")
def test_clip_of_numpy_bfloat16_boxes_is_the_bfloat16_clamp():
    """NumPy's clip cannot mix ml_dtypes' bfloat16 with Python floats: the
    boxes are clamped in float32 and rounded back, which is the clamp in
    bfloat16 (every value either kept or the bound, rounded once)."""
    raw = np.random.default_rng(43).uniform(-20, 70, (25, 4))
    boxes = raw.astype(ml_dtypes.bfloat16)
    got = sa.clip_boxes_to_image(boxes, (40.3, 50))
    assert got.dtype == boxes.dtype
    values = boxes.astype(np.float64)
    want = np.stack([np.clip(values[:, k], 0, 50 if k % 2 == 0 else 40.3) for k in range(4)], axis=1)
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(ml_dtypes.bfloat16).astype(np.float64))
    if torch is not None:
        t = torch.from_numpy(raw).to(torch.bfloat16)
        expected = torch.stack([t[:, k].clamp(0, 50 if k % 2 == 0 else 40.3) for k in range(4)], dim=1)
        np.testing.assert_array_equal(got.astype(np.float32), expected.float().numpy())
