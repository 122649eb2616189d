"""How closely Soft-NMS on the portable path follows the compiled kernel,
for tests/test_boxes.py and tests/test_fuzz.py.

The linear decay ``1 - iou`` is arithmetic on both paths, the same
operations in the same order: bit for bit. The Gaussian weight
``exp(-iou**2 / sigma)`` comes from the C library's ``exp`` in the kernel
(and in the tests' NumPy reference, through ``math.exp``), from the array
library's on the portable path: NumPy's own SIMD ``exp`` on AVX-512 CPUs,
PyTorch's, JAX's. The two weights differ by at most an ulp of float64
(``test_boxes.py::test_gaussian_weights_of_the_two_paths_differ_by_an_ulp``
checks it on the machine at hand), and a decayed score rounded to the dtype
by at most one ulp of the dtype more: a box's scores on the two paths agree
within ``2 d eps`` of the dtype, relatively, after ``d`` decays.

A box is decayed only by the boxes selected (kept) before it in its class
that overlap it (IoU 0 gives the weight exp(0) = 1 on every path), so ``d``
is at most the number of kept boxes of its class that intersect it. The
kept indices are the same on both paths until two boxes' scores come within
twice that bound of each other (a near tie, which a last bit can break
either way) or one comes within it of ``score_threshold``; from there on
the selections may differ, and nothing after is compared.
"""
import numpy as np


def decay_rtols(dtype, boxes, kept, labels=None):
    """For each box of ``kept`` (indices into boxes, all of them kept), the
    relative bound on its two paths' Gaussian-decayed scores."""
    x1, y1, x2, y2 = np.asarray(boxes, np.float64)[kept].T
    same_class = (np.ones((len(kept),) * 2, bool) if labels is None
                  else np.equal.outer(np.asarray(labels)[kept], np.asarray(labels)[kept]))
    # Soft-NMS's IoU is 0 unless both boxes are finite with positive sides
    # and intersect (an intersection that underflows counts here too).
    valid = np.isfinite(x1 + y1 + x2 + y2) & (x2 > x1) & (y2 > y1)
    with np.errstate(invalid="ignore"):
        w = np.minimum.outer(x2, x2) - np.maximum.outer(x1, x1)
        h = np.minimum.outer(y2, y2) - np.maximum.outer(y1, y1)
    overlap = (w > 0) & (h > 0) & np.logical_and.outer(valid, valid)
    np.fill_diagonal(overlap, False)
    decays = np.sum(overlap & same_class, axis=1)
    return 2 * float(np.finfo(dtype).eps) * decays     # 0: the input score on both paths


def assert_soft_nms_close(got, want, *, boxes, score_threshold, labels=None, what="soft_nms"):
    """got and want, (indices, decayed scores) as NumPy arrays from the two
    paths with Gaussian decay of ``boxes``: the same indices up to a near tie
    or a score near the threshold, and the scores before it within
    ``decay_rtols``."""
    (got_indices, got_scores), (want_indices, want_scores) = got, want
    assert got_scores.dtype == want_scores.dtype, (got_scores.dtype, want_scores.dtype)
    kept = np.union1d(got_indices, want_indices).astype(np.int64)
    rtol = dict(zip(kept.tolist(), decay_rtols(want_scores.dtype, boxes, kept, labels)))
    common = min(len(got_indices), len(want_indices))
    differ = np.flatnonzero(got_indices[:common] != want_indices[:common])
    end = int(differ[0]) if differ.size else common
    for i in range(end):
        assert _close(got_scores[i], want_scores[i], rtol[int(want_indices[i])]), (
            f"{what}: box {want_indices[i]} decayed to {got_scores[i]!r} and "
            f"{want_scores[i]!r}, beyond {rtol[int(want_indices[i])]:.3g} relatively")
    if end == len(got_indices) == len(want_indices):
        return
    if end < common:            # two different boxes next: they tie within the bound
        bound = 2 * max(rtol[int(got_indices[end])], rtol[int(want_indices[end])])
        near = _close(got_scores[end], want_scores[end], bound)
    else:                       # one path ends: the other's next box sits at the threshold
        longer_indices, longer_scores = ((got_indices, got_scores) if len(got_indices) > end
                                         else (want_indices, want_scores))
        near = _close(longer_scores[end], score_threshold, rtol[int(longer_indices[end])])
    assert near, (f"{what}: the paths part at position {end} without a near tie: "
                  f"{got_indices[end:end + 3]} ({got_scores[end:end + 3]}) vs "
                  f"{want_indices[end:end + 3]} ({want_scores[end:end + 3]})")


def _close(a, b, rtol):
    a, b = float(a), float(b)
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))
