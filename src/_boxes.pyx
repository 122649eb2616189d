# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled box kernels: area, format conversion, pairwise IoU, greedy NMS
and Soft-NMS, each class of a batched call on its own thread.

The algorithms are in ``_boxes_kernels.h``; this module orders the boxes
(stable radix sorts on score and label keys), hands out scratch memory and
merges the classes' results. The caller (``softarray/_boxes.py``) has
validated every argument; boxes are (n, 4) arrays of any strides.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int8_t, int64_t, uint64_t
from libc.math cimport INFINITY
from _interrupt cimport sa_interrupt, sa_interrupt_start, sa_interrupt_poll, sa_interrupt_finish

import numpy as np

cdef extern from "_boxes_kernels.h" nogil:
    ctypedef struct sa_columns_f32:
        float *x1
        float *y1
        float *x2
        float *y2
        float *area
    ctypedef struct sa_columns_f64:
        double *x1
        double *y1
        double *x2
        double *y2
        double *area
    void sa_gather_columns_f32(const float *boxes, Py_ssize_t s0, Py_ssize_t s1, const int64_t *order,
                               Py_ssize_t begin, Py_ssize_t end, sa_columns_f32 *c)
    void sa_gather_columns_f64(const double *boxes, Py_ssize_t s0, Py_ssize_t s1, const int64_t *order,
                               Py_ssize_t begin, Py_ssize_t end, sa_columns_f64 *c)
    void sa_box_area_f32(const float *boxes, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t n, float *out)
    void sa_box_area_f64(const double *boxes, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t n, double *out)
    void sa_box_convert_f32(const float *boxes, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t n,
                            int in_fmt, int out_fmt, float *out)
    void sa_box_convert_f64(const double *boxes, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t n,
                            int in_fmt, int out_fmt, double *out)
    void sa_box_iou_rows_f32(const float *a, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t begin,
                             Py_ssize_t end, const sa_columns_f32 *b, Py_ssize_t m, float *out,
                             Py_ssize_t out_stride)
    void sa_box_iou_rows_f64(const double *a, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t begin,
                             Py_ssize_t end, const sa_columns_f64 *b, Py_ssize_t m, double *out,
                             Py_ssize_t out_stride)
    void sa_box_iou_variant_rows_f32(const float *a, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t begin,
                                     Py_ssize_t end, const sa_columns_f32 *b, const float *a_atan,
                                     const float *b_atan, Py_ssize_t m, int kind, float eps,
                                     float *out, Py_ssize_t out_stride)
    void sa_box_iou_variant_rows_f64(const double *a, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t begin,
                                     Py_ssize_t end, const sa_columns_f64 *b, const double *a_atan,
                                     const double *b_atan, Py_ssize_t m, int kind, double eps,
                                     double *out, Py_ssize_t out_stride)
    void sa_box_loss_f32(const float *a, Py_ssize_t as0, Py_ssize_t as1, const float *b,
                         Py_ssize_t bs0, Py_ssize_t bs1, Py_ssize_t begin, Py_ssize_t end, int kind,
                         float eps, float scale, float *loss, float *ga, float *gb)
    void sa_box_loss_f64(const double *a, Py_ssize_t as0, Py_ssize_t as1, const double *b,
                         Py_ssize_t bs0, Py_ssize_t bs1, Py_ssize_t begin, Py_ssize_t end, int kind,
                         double eps, double scale, double *loss, double *ga, double *gb)
    void sa_desc_keys_f32(const float *scores, Py_ssize_t ss, const int64_t *idx, Py_ssize_t n,
                          uint64_t *keys)
    void sa_desc_keys_f64(const double *scores, Py_ssize_t ss, const int64_t *idx, Py_ssize_t n,
                          uint64_t *keys)
    uint64_t sa_label_key(int64_t label)
    void sa_radix_sort(uint64_t *keys, int64_t *vals, Py_ssize_t n, int key_bytes, uint64_t *tk,
                       int64_t *tv, sa_interrupt *stop)
    Py_ssize_t sa_grid_cells_needed(Py_ssize_t m)
    void sa_nms_classes_f32(const float *boxes, Py_ssize_t s0, Py_ssize_t s1, const int64_t *order,
                            Py_ssize_t n, const int64_t *seg, Py_ssize_t n_seg,
                            const int64_t *cells_at, double threshold, Py_ssize_t max_keep,
                            float *tscratch, int64_t *iscratch, int64_t *cells, int8_t *bscratch,
                            int64_t *keep, int64_t *n_kept, sa_interrupt *stop, int n_threads)
    void sa_nms_classes_f64(const double *boxes, Py_ssize_t s0, Py_ssize_t s1, const int64_t *order,
                            Py_ssize_t n, const int64_t *seg, Py_ssize_t n_seg,
                            const int64_t *cells_at, double threshold, Py_ssize_t max_keep,
                            double *tscratch, int64_t *iscratch, int64_t *cells, int8_t *bscratch,
                            int64_t *keep, int64_t *n_kept, sa_interrupt *stop, int n_threads)
    void sa_soft_nms_classes_f32(const float *boxes, Py_ssize_t s0, Py_ssize_t s1,
                                 const float *scores, Py_ssize_t ss, const int64_t *order,
                                 Py_ssize_t n, const int64_t *seg, Py_ssize_t n_seg,
                                 const int64_t *cells_at, int gaussian, double sigma,
                                 double iou_threshold, double score_threshold, Py_ssize_t max_keep,
                                 float *tscratch, int64_t *iscratch, int64_t *cells, int8_t *bscratch,
                                 int64_t *keep, float *keep_score, int64_t *n_kept, sa_interrupt *stop,
                                 int n_threads)
    void sa_soft_nms_classes_f64(const double *boxes, Py_ssize_t s0, Py_ssize_t s1,
                                 const double *scores, Py_ssize_t ss, const int64_t *order,
                                 Py_ssize_t n, const int64_t *seg, Py_ssize_t n_seg,
                                 const int64_t *cells_at, int gaussian, double sigma,
                                 double iou_threshold, double score_threshold, Py_ssize_t max_keep,
                                 double *tscratch, int64_t *iscratch, int64_t *cells, int8_t *bscratch,
                                 int64_t *keep, double *keep_score, int64_t *n_kept, sa_interrupt *stop,
                                 int n_threads)

# Below this many IoU entries (about a millisecond of work) one thread is
# faster than waking a team, whose members may be descheduled on a busy machine.
cdef Py_ssize_t PARALLEL_MIN_ENTRIES = 1 << 20
# Below this many boxes the labels of a batched call share one thread.
cdef Py_ssize_t PARALLEL_MIN_BOXES = 4096
# Rows of the IoU matrix per work item.
cdef Py_ssize_t IOU_CHUNK_ROWS = 16
# Box pairs of a loss per work item, and the fewest pairs worth a team.
cdef Py_ssize_t LOSS_CHUNK_PAIRS = 2048
cdef Py_ssize_t PARALLEL_MIN_PAIRS = 32768
# Bytes of a sort key: scores' bits, labels' (int64) bits.
cdef int SCORE_KEY_BYTES_F32 = 4
cdef int SCORE_KEY_BYTES_F64 = 8
cdef int LABEL_KEY_BYTES = 8
# Columns of per-class scratch (sa_work_init in _boxes_impl.h): values, int64
# indices, bytes.
cdef Py_ssize_t SCRATCH_VALUE_COLUMNS = 12
cdef Py_ssize_t SCRATCH_INDEX_COLUMNS = 4
cdef Py_ssize_t SCRATCH_BYTE_COLUMNS = 2


cdef inline Py_ssize_t _stride(Py_ssize_t bytes, Py_ssize_t itemsize):
    return bytes // itemsize


def box_area(const floating[:, :] boxes, floating[::1] out):
    """(x2 - x1) * (y2 - y1) of every row of boxes (n, 4) into out (n,)."""
    cdef Py_ssize_t n = boxes.shape[0]
    if boxes.shape[1] != 4 or out.shape[0] != n:
        raise ValueError("internal error: box_area shapes")
    if n == 0:
        return
    cdef Py_ssize_t s0 = _stride(boxes.strides[0], sizeof(floating)), s1 = _stride(boxes.strides[1], sizeof(floating))
    with nogil:
        if floating is float:
            sa_box_area_f32(&boxes[0, 0], s0, s1, n, &out[0])
        else:
            sa_box_area_f64(&boxes[0, 0], s0, s1, n, &out[0])


def box_convert(const floating[:, :] boxes, int in_fmt, int out_fmt, floating[:, ::1] out):
    """Rows of boxes (n, 4) from format in_fmt to out_fmt (0 xyxy, 1 xywh,
    2 cxcywh) into out (n, 4)."""
    cdef Py_ssize_t n = boxes.shape[0]
    if boxes.shape[1] != 4 or out.shape[0] != n or out.shape[1] != 4:
        raise ValueError("internal error: box_convert shapes")
    if n == 0:
        return
    cdef Py_ssize_t s0 = _stride(boxes.strides[0], sizeof(floating)), s1 = _stride(boxes.strides[1], sizeof(floating))
    with nogil:
        if floating is float:
            sa_box_convert_f32(&boxes[0, 0], s0, s1, n, in_fmt, out_fmt, &out[0, 0])
        else:
            sa_box_convert_f64(&boxes[0, 0], s0, s1, n, in_fmt, out_fmt, &out[0, 0])


def box_iou(const floating[:, :] boxes1, const floating[:, :] boxes2, int kind, double eps,
            floating[:, ::1] out, int n_threads):
    """The (n, m) IoU (kind 0), generalized (1), distance (2) or complete (3)
    IoU matrix of boxes1 (n, 4) against boxes2 (m, 4)."""
    cdef Py_ssize_t n = boxes1.shape[0], m = boxes2.shape[0]
    if (boxes1.shape[1] != 4 or boxes2.shape[1] != 4 or out.shape[0] != n or out.shape[1] != m
            or not 0 <= kind <= 3):
        raise ValueError("internal error: box_iou arguments")
    if n == 0 or m == 0:
        return
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] cols = np.empty((5, m), dtype)
    # Each box's atan(w / h) for CIoU, in the boxes' dtype (NumPy's arctan).
    cdef floating[::1] a_atan = _aspect_atan(boxes1, dtype, kind)
    cdef floating[::1] b_atan = _aspect_atan(boxes2, dtype, kind)
    cdef sa_columns_f32 c32
    cdef sa_columns_f64 c64
    cdef Py_ssize_t s0 = _stride(boxes1.strides[0], sizeof(floating)), s1 = _stride(boxes1.strides[1], sizeof(floating))
    cdef Py_ssize_t t0 = _stride(boxes2.strides[0], sizeof(floating)), t1 = _stride(boxes2.strides[1], sizeof(floating))
    cdef int team = n_threads if (n_threads > 1 and n * m >= PARALLEL_MIN_ENTRIES) else 1
    cdef Py_ssize_t n_chunks = (n + IOU_CHUNK_ROWS - 1) // IOU_CHUNK_ROWS
    cdef Py_ssize_t c, begin
    cdef floating e = <floating>eps
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    with nogil:
        if floating is float:
            c32.x1 = &cols[0, 0]; c32.y1 = &cols[1, 0]; c32.x2 = &cols[2, 0]
            c32.y2 = &cols[3, 0]; c32.area = &cols[4, 0]
            sa_gather_columns_f32(&boxes2[0, 0], t0, t1, NULL, 0, m, &c32)
        else:
            c64.x1 = &cols[0, 0]; c64.y1 = &cols[1, 0]; c64.x2 = &cols[2, 0]
            c64.y2 = &cols[3, 0]; c64.area = &cols[4, 0]
            sa_gather_columns_f64(&boxes2[0, 0], t0, t1, NULL, 0, m, &c64)
        for c in prange(n_chunks, num_threads=team, schedule='static'):
            begin = c * IOU_CHUNK_ROWS
            if sa_interrupt_poll(&intr, IOU_CHUNK_ROWS * m):
                continue
            if floating is float:
                if kind == 0:
                    sa_box_iou_rows_f32(&boxes1[0, 0], s0, s1, begin,
                                        min(begin + IOU_CHUNK_ROWS, n), &c32, m, &out[0, 0], m)
                else:
                    sa_box_iou_variant_rows_f32(&boxes1[0, 0], s0, s1, begin,
                                                min(begin + IOU_CHUNK_ROWS, n), &c32, &a_atan[0],
                                                &b_atan[0], m, kind, e, &out[0, 0], m)
            else:
                if kind == 0:
                    sa_box_iou_rows_f64(&boxes1[0, 0], s0, s1, begin,
                                        min(begin + IOU_CHUNK_ROWS, n), &c64, m, &out[0, 0], m)
                else:
                    sa_box_iou_variant_rows_f64(&boxes1[0, 0], s0, s1, begin,
                                                min(begin + IOU_CHUNK_ROWS, n), &c64, &a_atan[0],
                                                &b_atan[0], m, kind, e, &out[0, 0], m)
    sa_interrupt_finish(&intr)


def box_iou_loss(const floating[:, :] boxes1, const floating[:, :] boxes2, int kind, double eps,
                 double scale, floating[::1] loss, grad1, grad2, int n_threads):
    """Per-pair generalized (kind 1), distance (2) or complete (3) IoU loss
    of boxes1 (n, 4) and boxes2 (n, 4) into loss (n,); with grad1 and grad2
    ((n, 4) contiguous arrays, or None) the gradients of scale * loss."""
    cdef Py_ssize_t n = boxes1.shape[0]
    if (boxes1.shape[1] != 4 or boxes2.shape[1] != 4 or boxes2.shape[0] != n
            or loss.shape[0] != n or not 1 <= kind <= 3 or (grad1 is None) != (grad2 is None)):
        raise ValueError("internal error: box_iou_loss arguments")
    if n == 0:
        return
    cdef floating[:, ::1] g1, g2
    cdef floating *p1 = NULL
    cdef floating *p2 = NULL
    if grad1 is not None:
        g1, g2 = grad1, grad2
        if g1.shape[0] != n or g2.shape[0] != n or g1.shape[1] != 4 or g2.shape[1] != 4:
            raise ValueError("internal error: box_iou_loss gradient shapes")
        p1, p2 = &g1[0, 0], &g2[0, 0]
    cdef Py_ssize_t s0 = _stride(boxes1.strides[0], sizeof(floating)), s1 = _stride(boxes1.strides[1], sizeof(floating))
    cdef Py_ssize_t t0 = _stride(boxes2.strides[0], sizeof(floating)), t1 = _stride(boxes2.strides[1], sizeof(floating))
    cdef int team = n_threads if (n_threads > 1 and n >= PARALLEL_MIN_PAIRS) else 1
    cdef Py_ssize_t n_chunks = (n + LOSS_CHUNK_PAIRS - 1) // LOSS_CHUNK_PAIRS
    cdef Py_ssize_t c, begin
    cdef floating e = <floating>eps, sc = <floating>scale
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    with nogil:
        for c in prange(n_chunks, num_threads=team, schedule='static'):
            begin = c * LOSS_CHUNK_PAIRS
            if sa_interrupt_poll(&intr, LOSS_CHUNK_PAIRS):
                continue
            if floating is float:
                sa_box_loss_f32(&boxes1[0, 0], s0, s1, &boxes2[0, 0], t0, t1, begin,
                                min(begin + LOSS_CHUNK_PAIRS, n), kind, e, sc, &loss[0], p1, p2)
            else:
                sa_box_loss_f64(&boxes1[0, 0], s0, s1, &boxes2[0, 0], t0, t1, begin,
                                min(begin + LOSS_CHUNK_PAIRS, n), kind, e, sc, &loss[0], p1, p2)
    sa_interrupt_finish(&intr)


def _aspect_atan(boxes, dtype, int kind):
    """atan(width / height) of each box for CIoU (kind 3), else a zero
    placeholder (never read)."""
    if kind != 3:
        return np.zeros(1, dtype)
    b = np.asarray(boxes)
    with np.errstate(all="ignore"):
        return np.ascontiguousarray(np.arctan((b[:, 2] - b[:, 0]) / (b[:, 3] - b[:, 1])), dtype)


cdef void _sort_by_score(const floating *scores, Py_ssize_t ss, int64_t[::1] idx,
                         uint64_t[::1] keys, uint64_t[::1] tk, int64_t[::1] tv,
                         sa_interrupt *stop) noexcept nogil:
    """Stable sort of idx (ascending on entry) by decreasing score, NaN first
    (unfinished when the call is interrupted)."""
    cdef Py_ssize_t n = idx.shape[0]
    if n == 0:
        return
    if floating is float:
        sa_desc_keys_f32(scores, ss, &idx[0], n, &keys[0])
        sa_radix_sort(&keys[0], &idx[0], n, SCORE_KEY_BYTES_F32, &tk[0], &tv[0], stop)
    else:
        sa_desc_keys_f64(scores, ss, &idx[0], n, &keys[0])
        sa_radix_sort(&keys[0], &idx[0], n, SCORE_KEY_BYTES_F64, &tk[0], &tv[0], stop)


cdef Py_ssize_t _group_by_label(const int64_t[::1] labels, int64_t[::1] idx, uint64_t[::1] keys,
                                uint64_t[::1] tk, int64_t[::1] tv, int64_t[::1] seg,
                                sa_interrupt *stop) noexcept nogil:
    """Stable sort of idx by label; seg receives the start of every label's
    run and, after the last, the end. Returns the number of labels (0 when
    the call is interrupted)."""
    cdef Py_ssize_t i, n = idx.shape[0], n_seg = 0
    if n == 0:
        seg[0] = 0
        return 0
    for i in range(n):
        keys[i] = sa_label_key(labels[idx[i]])
    sa_radix_sort(&keys[0], &idx[0], n, LABEL_KEY_BYTES, &tk[0], &tv[0], stop)
    if sa_interrupt_poll(stop, n):
        return 0
    for i in range(n):
        if i == 0 or keys[i] != keys[i - 1]:
            seg[n_seg] = i
            n_seg += 1
    seg[n_seg] = n
    return n_seg


cdef Py_ssize_t _cell_offsets(const int64_t[::1] seg, Py_ssize_t n_seg, int64_t[::1] off) noexcept nogil:
    """Where each class's grid cells start; returns the total."""
    cdef Py_ssize_t c, total = 0
    for c in range(n_seg):
        off[c] = total
        total += sa_grid_cells_needed(seg[c + 1] - seg[c])
    return total


cdef _classes(labels, idx, keys, tk, tv, sa_interrupt *stop):
    """(seg, n_seg): idx grouped by label (or one class without labels)."""
    n = idx.shape[0]
    seg = np.empty(n + 1 if labels is not None else 2, np.int64)
    if labels is None:
        seg[0], seg[1] = 0, n
        return seg, (1 if n else 0)
    cdef const int64_t[::1] lab = labels
    cdef Py_ssize_t n_seg
    cdef int64_t[::1] idx_v = idx, seg_v = seg
    cdef uint64_t[::1] keys_v = keys, tk_v = tk
    cdef int64_t[::1] tv_v = tv
    with nogil:
        n_seg = _group_by_label(lab, idx_v, keys_v, tk_v, tv_v, seg_v, stop)
    sa_interrupt_finish(stop)
    return seg, n_seg


def _class_scratch(seg, Py_ssize_t n_seg, Py_ssize_t n, dtype):
    """Scratch for n boxes in n_seg classes (sa_work_init in _boxes_impl.h):
    (each class's first cell, values, int64 indices, cells, bytes)."""
    cells_at = np.empty(max(n_seg, 1), np.int64)
    cdef int64_t[::1] seg_v = seg, off_v = cells_at
    cdef Py_ssize_t n_cells
    with nogil:
        n_cells = _cell_offsets(seg_v, n_seg, off_v)
    return (cells_at, np.empty(SCRATCH_VALUE_COLUMNS * n, dtype),
            np.empty(SCRATCH_INDEX_COLUMNS * n, np.int64), np.empty(n_cells, np.int64),
            np.empty(SCRATCH_BYTE_COLUMNS * n, np.int8))


def _kept_slots(const int64_t[::1] seg, const int64_t[::1] n_kept, Py_ssize_t n_seg):
    """Where the classes' results lie in the shared output arrays, class
    after class."""
    cdef Py_ssize_t c, j, total = 0
    for c in range(n_seg):
        total += n_kept[c]
    out = np.empty(total, np.int64)
    cdef int64_t[::1] o = out
    total = 0
    for c in range(n_seg):
        for j in range(n_kept[c]):
            o[total] = seg[c] + j
            total += 1
    return out


def order_by_score(const floating[::1] scores, idx):
    """idx (int64, any order) sorted by decreasing score, ties by lower index."""
    cdef Py_ssize_t n = idx.shape[0]
    cdef int64_t[::1] v = np.sort(idx)
    cdef uint64_t[::1] keys = np.empty(n, np.uint64), tk = np.empty(n, np.uint64)
    cdef int64_t[::1] tv = np.empty(n, np.int64)
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    with nogil:
        _sort_by_score(&scores[0] if n else NULL, 1, v, keys, tk, tv, &intr)
    sa_interrupt_finish(&intr)
    return np.asarray(v)


def nms(const floating[:, :] boxes, const floating[:] scores, labels, double iou_threshold,
        score_threshold, Py_ssize_t max_keep, int n_threads):
    """Greedy NMS (per label when labels, an int64 array, is given); the
    kept indices by decreasing score, ties by lower index, at most max_keep."""
    cdef Py_ssize_t n = boxes.shape[0]
    if boxes.shape[1] != 4 or scores.shape[0] != n or (labels is not None and len(labels) != n):
        raise ValueError("internal error: nms shapes")
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t ss = _stride(scores.strides[0], sizeof(floating)) if n else 1
    # Candidates in index order; a stable sort then breaks ties by index.
    score_array = np.asarray(scores)
    if score_threshold is None:
        idx = np.arange(n, dtype=np.int64)
    else:
        idx = np.flatnonzero(score_array > score_threshold).astype(np.int64)
    cdef Py_ssize_t m = idx.shape[0]
    keys, tk, tv = np.empty(m, np.uint64), np.empty(m, np.uint64), np.empty(m, np.int64)
    cdef int64_t[::1] idx_v = idx
    cdef uint64_t[::1] keys_v = keys, tk_v = tk
    cdef int64_t[::1] tv_v = tv
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    with nogil:
        _sort_by_score(&scores[0] if m else NULL, ss, idx_v, keys_v, tk_v, tv_v, &intr)
    sa_interrupt_finish(&intr)
    seg, n_classes = _classes(labels, idx, keys, tk, tv, &intr)
    cdef Py_ssize_t n_seg = n_classes
    if m == 0:
        return np.empty(0, np.int64)
    cdef int64_t[::1] seg_v = seg, off_v, cells
    cdef floating[::1] tscratch
    cdef int64_t[::1] iscratch
    cdef int8_t[::1] bscratch
    off_v, tscratch, iscratch, cells, bscratch = _class_scratch(seg, n_seg, m, dtype)
    cdef int64_t[::1] keep = np.empty(m, np.int64), n_kept = np.empty(n_seg, np.int64)
    cdef Py_ssize_t s0 = _stride(boxes.strides[0], sizeof(floating)), s1 = _stride(boxes.strides[1], sizeof(floating))
    if m < PARALLEL_MIN_BOXES:
        n_threads = 1
    with nogil:
        if floating is float:
            sa_nms_classes_f32(&boxes[0, 0], s0, s1, &idx_v[0], m, &seg_v[0], n_seg, &off_v[0],
                               iou_threshold, max_keep, &tscratch[0], &iscratch[0], &cells[0],
                               &bscratch[0], &keep[0], &n_kept[0], &intr, n_threads)
        else:
            sa_nms_classes_f64(&boxes[0, 0], s0, s1, &idx_v[0], m, &seg_v[0], n_seg, &off_v[0],
                               iou_threshold, max_keep, &tscratch[0], &iscratch[0], &cells[0],
                               &bscratch[0], &keep[0], &n_kept[0], &intr, n_threads)
    sa_interrupt_finish(&intr)
    kept = np.asarray(keep)[_kept_slots(seg_v, n_kept, n_seg)]
    if n_seg > 1:
        kept = order_by_score(np.ascontiguousarray(score_array), kept)
    return kept[:max_keep]


def soft_nms(const floating[:, :] boxes, const floating[:] scores, labels, bint gaussian,
             double sigma, double iou_threshold, double score_threshold, Py_ssize_t max_keep,
             int n_threads):
    """Soft-NMS (per label when labels, an int64 array, is given): the
    selected indices and their decayed scores, in order of selection (one
    class) or by decreasing decayed score, ties by lower index (several)."""
    cdef Py_ssize_t n = boxes.shape[0]
    if boxes.shape[1] != 4 or scores.shape[0] != n or (labels is not None and len(labels) != n):
        raise ValueError("internal error: soft_nms shapes")
    dtype = np.float32 if floating is float else np.float64
    idx = np.arange(n, dtype=np.int64)
    keys, tk, tv = np.empty(n, np.uint64), np.empty(n, np.uint64), np.empty(n, np.int64)
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    seg, n_classes = _classes(labels, idx, keys, tk, tv, &intr)
    cdef Py_ssize_t n_seg = n_classes
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, dtype)
    cdef int64_t[::1] seg_v = seg, idx_v = idx, off_v, cells
    cdef floating[::1] tscratch
    cdef int64_t[::1] iscratch
    cdef int8_t[::1] bscratch
    off_v, tscratch, iscratch, cells, bscratch = _class_scratch(seg, n_seg, n, dtype)
    cdef int64_t[::1] keep = np.empty(n, np.int64), n_kept = np.empty(n_seg, np.int64)
    keep_score = np.empty(n, dtype)
    cdef floating[::1] keep_score_v = keep_score
    cdef Py_ssize_t s0 = _stride(boxes.strides[0], sizeof(floating)), s1 = _stride(boxes.strides[1], sizeof(floating))
    cdef Py_ssize_t ss = _stride(scores.strides[0], sizeof(floating))
    # With labels the result is the first max_keep of every label's
    # selections by decreasing decayed score. A label may stop after
    # max_keep selections only when it selects in that order, which holds
    # unless a negative score can be selected (it rises as it decays).
    cdef Py_ssize_t class_keep = max_keep
    if labels is not None and score_threshold < 0 and (np.asarray(scores) < 0).any():
        class_keep = n
    if n < PARALLEL_MIN_BOXES:
        n_threads = 1
    with nogil:
        if floating is float:
            sa_soft_nms_classes_f32(&boxes[0, 0], s0, s1, &scores[0], ss, &idx_v[0], n, &seg_v[0],
                                    n_seg, &off_v[0], gaussian, sigma, iou_threshold,
                                    score_threshold, class_keep, &tscratch[0], &iscratch[0],
                                    &cells[0], &bscratch[0], &keep[0], &keep_score_v[0],
                                    &n_kept[0], &intr, n_threads)
        else:
            sa_soft_nms_classes_f64(&boxes[0, 0], s0, s1, &scores[0], ss, &idx_v[0], n, &seg_v[0],
                                    n_seg, &off_v[0], gaussian, sigma, iou_threshold,
                                    score_threshold, class_keep, &tscratch[0], &iscratch[0],
                                    &cells[0], &bscratch[0], &keep[0], &keep_score_v[0],
                                    &n_kept[0], &intr, n_threads)
    sa_interrupt_finish(&intr)
    slots = _kept_slots(seg_v, n_kept, n_seg)
    kept, kept_score = np.asarray(keep)[slots], keep_score[slots]
    if labels is None:
        return kept, kept_score
    # By labels: by decreasing decayed score (for scores >= 0 that is each
    # label's order of selection; a negative score rises as it decays).
    decayed = np.empty(n, dtype)
    decayed[kept] = kept_score
    kept = order_by_score(decayed, kept)[:max_keep]
    return kept, decayed[kept]
