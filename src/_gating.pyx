# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled gating kernels: top-k selection along rows, and the fused
top-k gate of mixture-of-experts routers.

This module spreads rows over OpenMP threads; the selection is in
``_gating_kernels.h``. The caller (``softarray/_gating.py``) has validated
everything and laid the data out as contiguous rows.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t, uint64_t
from libc.math cimport exp, fmin, nextafter, NAN
from _interrupt cimport sa_interrupt, sa_interrupt_start, sa_interrupt_poll, sa_interrupt_finish
from _parallel cimport work_items, row_items, PARALLEL_MIN_ELEMENTS
from libc.stdlib cimport malloc, free
cimport numpy as cnp
from _plain cimport plain_row_length

cnp.import_array()

import numpy as np

cdef extern from "_gating_kernels.h" nogil:
    ctypedef struct sa_ranked:
        uint64_t key
        int64_t index
    void sa_topk_sort_f64(sa_ranked *a, Py_ssize_t m, sa_ranked *tmp)
    void sa_topk_chunk_f32(const float *row, Py_ssize_t begin, Py_ssize_t end, Py_ssize_t k,
                           int largest, sa_ranked *out, sa_ranked *scratch)
    void sa_topk_chunk_f64(const double *row, Py_ssize_t begin, Py_ssize_t end, Py_ssize_t k,
                           int largest, sa_ranked *out, sa_ranked *scratch)
    void sa_topk_merge_f32(const float *row, const sa_ranked *lists, const Py_ssize_t *counts,
                           Py_ssize_t chunks, Py_ssize_t k, Py_ssize_t *head, float *values,
                           int64_t *indices)
    void sa_topk_merge_f64(const double *row, const sa_ranked *lists, const Py_ssize_t *counts,
                           Py_ssize_t chunks, Py_ssize_t k, Py_ssize_t *head, double *values,
                           int64_t *indices)
    enum:
        SA_TOPK_SMALL_K
    void sa_topk_rows_f32(const float *x, Py_ssize_t xs, Py_ssize_t n, Py_ssize_t k, int largest,
                          int sorted, float *values, int64_t *indices, Py_ssize_t begin,
                          Py_ssize_t end, sa_ranked *scratch)
    void sa_topk_rows_f64(const double *x, Py_ssize_t xs, Py_ssize_t n, Py_ssize_t k, int largest,
                          int sorted, double *values, int64_t *indices, Py_ssize_t begin,
                          Py_ssize_t end, sa_ranked *scratch)
    void sa_gate_rows_f32(const float *x, Py_ssize_t xs, Py_ssize_t E, Py_ssize_t k, double inv_t,
                          int over_selected, float *weights, int64_t *indices, double *prob_sum,
                          Py_ssize_t begin, Py_ssize_t end, sa_ranked *scratch)
    void sa_gate_rows_f64(const double *x, Py_ssize_t xs, Py_ssize_t E, Py_ssize_t k, double inv_t,
                          int over_selected, double *weights, int64_t *indices, double *prob_sum,
                          Py_ssize_t begin, Py_ssize_t end, sa_ranked *scratch)

# Rows per work item when the gate sums router probabilities (see gate_rows).
cdef Py_ssize_t GATE_CHUNK_ROWS = 1024


cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)


cdef inline Py_ssize_t _scratch_len(Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """(key, index) pairs a row's top-k needs: k + 1 for a small k (kept
    sorted, or placed by counting with a spare slot), else twice the row
    (the row's pairs and the radix selection's copy); rounded up to whole
    cache lines of 4 pairs, so that no two threads' buffers share a line."""
    cdef Py_ssize_t pairs = k + 1 if k <= SA_TOPK_SMALL_K else 2 * n
    return (pairs + 3) // 4 * 4


cdef int64_t *_ranked_scratch(int team, Py_ssize_t scratch_len) except NULL:
    """One scratch buffer per thread, not per row, of scratch_len (key,
    index) pairs each, from a cache line's boundary: with k = 8 two threads'
    9-pair buffers shared a line, and each insertion into one evicted the
    other's (two threads were 1.2x one thread on 4096 rows of 64 float64
    entries). The caller frees it."""
    cdef void *ps = NULL
    if posix_memalign(&ps, 64, team * 2 * scratch_len * sizeof(int64_t)) != 0:
        raise MemoryError()
    return <int64_t *> ps


cdef inline bint _split_rows(Py_ssize_t n_rows, Py_ssize_t n, Py_ssize_t k, int n_threads) noexcept nogil:
    """Whether each row is split over the threads (fewer rows than threads,
    rows long enough to be worth a team, k small beside a chunk) rather
    than the rows spread over them."""
    return n_threads > 1 and n_rows < n_threads and n >= PARALLEL_MIN_ELEMENTS \
        and 4 * k * n_threads <= n


cdef int _topk_split_run(const floating *px, Py_ssize_t xs, Py_ssize_t n_rows, Py_ssize_t n,
                         Py_ssize_t k, bint largest, floating *pv, int64_t *pi,
                         int team) except -1:
    """topk of a few long rows, each cut into one chunk per thread: every
    chunk's k first in result order, then one merge of the chunks' lists.
    The same result as one thread (the merge keeps the tie rule)."""
    cdef Py_ssize_t chunk = (n + team - 1) // team
    cdef Py_ssize_t scratch_len = _scratch_len(k, chunk)
    cdef Py_ssize_t r, c, begin
    cdef int64_t *ps = _ranked_scratch(team, scratch_len)
    cdef sa_ranked *lists = <sa_ranked *> malloc(team * k * sizeof(sa_ranked))
    cdef Py_ssize_t *counts = <Py_ssize_t *> malloc(2 * team * sizeof(Py_ssize_t))
    if lists == NULL or counts == NULL:
        free(ps)
        free(lists)
        free(counts)
        raise MemoryError()
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    with nogil:
        for r in range(n_rows):
            for c in prange(team, num_threads=team, schedule='static'):
                begin = c * chunk
                counts[c] = 0
                if begin < n and not sa_interrupt_poll(&intr, chunk):
                    counts[c] = min(k, n - begin)
                    if floating is float:
                        sa_topk_chunk_f32(px + r * xs, begin, min(begin + chunk, n), k, largest,
                                          lists + c * k, <sa_ranked *> (ps + threadid() * 2 * scratch_len))
                    else:
                        sa_topk_chunk_f64(px + r * xs, begin, min(begin + chunk, n), k, largest,
                                          lists + c * k, <sa_ranked *> (ps + threadid() * 2 * scratch_len))
            if floating is float:
                sa_topk_merge_f32(px + r * xs, lists, counts, team, k, counts + team, pv + r * k, pi + r * k)
            else:
                sa_topk_merge_f64(px + r * xs, lists, counts, team, k, counts + team, pv + r * k, pi + r * k)
    free(ps)
    free(lists)
    free(counts)
    return sa_interrupt_finish(&intr)


cdef int _topk_run(const floating *px, Py_ssize_t xs, Py_ssize_t n_rows, Py_ssize_t n, Py_ssize_t k,
                   bint largest, bint sorted, floating *pv, int64_t *pi, int n_threads) except -1:
    """topk of n_rows rows of n entries, xs apart, into (n_rows, k) values and indices."""
    if _split_rows(n_rows, n, k, n_threads):
        return _topk_split_run(px, xs, n_rows, n, k, largest, pv, pi, n_threads)
    cdef Py_ssize_t scratch_len = _scratch_len(k, n)
    cdef work_items w = row_items(n_rows, n, n_threads)
    cdef Py_ssize_t c, begin
    cdef int64_t *ps = _ranked_scratch(w.team, scratch_len)
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    with nogil:
        if w.team == 1:     # no parallel region (_losses._samples_run says why)
            for c in range(w.count):
                begin = c * w.size
                if not sa_interrupt_poll(&intr, w.size * n):
                    _topk_rows(px, xs, n, k, largest, sorted, pv, pi, begin, min(begin + w.size, n_rows),
                               <sa_ranked *> ps)
        else:
            for c in prange(w.count, num_threads=w.team, schedule='dynamic'):
                begin = c * w.size
                if not sa_interrupt_poll(&intr, w.size * n):
                    _topk_rows(px, xs, n, k, largest, sorted, pv, pi, begin, min(begin + w.size, n_rows),
                               <sa_ranked *> (ps + threadid() * 2 * scratch_len))
    free(ps)
    return sa_interrupt_finish(&intr)


cdef inline void _topk_rows(const floating *px, Py_ssize_t xs, Py_ssize_t n, Py_ssize_t k, bint largest,
                            bint sorted, floating *pv, int64_t *pi, Py_ssize_t begin, Py_ssize_t end,
                            sa_ranked *scratch) noexcept nogil:
    if floating is float:
        sa_topk_rows_f32(px, xs, n, k, largest, sorted, pv, pi, begin, end, scratch)
    else:
        sa_topk_rows_f64(px, xs, n, k, largest, sorted, pv, pi, begin, end, scratch)


def topk_rows(const floating[:, :] x, Py_ssize_t k, bint largest, bint sorted,
              floating[:, ::1] values, int64_t[:, ::1] indices, int n_threads):
    """The k first entries of every row of x (contiguous rows) in the order
    of the result (largest or smallest first, NaN counted above +inf, ties
    by lower index) into values and indices, both (n_rows, k)."""
    cdef Py_ssize_t n_rows = x.shape[0], n = x.shape[1]
    if x.strides[1] != sizeof(floating):
        raise ValueError("internal error: topk needs contiguous rows")
    if not (0 < k <= n) or values.shape[0] != n_rows or values.shape[1] != k \
            or indices.shape[0] != n_rows or indices.shape[1] != k:
        raise ValueError("internal error: topk output shapes")
    if n_rows == 0:
        return
    _topk_run(&x[0, 0], x.strides[0] // sizeof(floating), n_rows, n, k, largest, sorted,
              &values[0, 0], &indices[0, 0], n_threads)


def plain_topk(object x, object k, object axis, object largest, object sorted, int n_threads):
    """The small calls' fast path of topk, every check in C: (values,
    indices) along the last axis when x and axis pass
    _plain.plain_row_length, k is an int in [1, row length] and largest and
    sorted are bools; else None and the caller's general path runs (and
    raises any error). topk_rows' kernel on the same rows: the same bits."""
    cdef Py_ssize_t n = plain_row_length(x, axis)
    if n < 0 or type(k) is not int or type(largest) is not bool or type(sorted) is not bool:
        return None
    if not 0 < k <= n:
        return None
    cdef cnp.ndarray a = <cnp.ndarray> x
    cdef int nd = cnp.PyArray_NDIM(a), typenum = cnp.PyArray_TYPE(a)
    cdef cnp.npy_intp shape[cnp.NPY_MAXDIMS]
    cdef int d
    for d in range(nd - 1):
        shape[d] = cnp.PyArray_DIM(a, d)
    shape[nd - 1] = k
    cdef cnp.ndarray values = cnp.PyArray_EMPTY(nd, shape, typenum, 0)
    cdef cnp.ndarray indices = cnp.PyArray_EMPTY(nd, shape, cnp.NPY_INT64, 0)
    cdef Py_ssize_t n_rows = cnp.PyArray_SIZE(a) // n, kk = k
    cdef bint lg = largest, srt = sorted
    if typenum == cnp.NPY_FLOAT:
        _topk_run(<const float *> cnp.PyArray_DATA(a), n, n_rows, n, kk, lg, srt,
                  <float *> cnp.PyArray_DATA(values), <int64_t *> cnp.PyArray_DATA(indices), n_threads)
    else:
        _topk_run(<const double *> cnp.PyArray_DATA(a), n, n_rows, n, kk, lg, srt,
                  <double *> cnp.PyArray_DATA(values), <int64_t *> cnp.PyArray_DATA(indices), n_threads)
    return values, indices


cdef int _gate_run(const floating *px, Py_ssize_t xs, Py_ssize_t n_rows, Py_ssize_t E, Py_ssize_t k,
                   double inv_temperature, bint over_selected, floating *pw, int64_t *pi,
                   double *partial, Py_ssize_t width, work_items w) except -1:
    """The gate kernel over w's chunks of rows; chunk c adds its rows' expert
    probabilities into partial[c * width:] when partial is not NULL."""
    cdef Py_ssize_t scratch_len = _scratch_len(k, E)
    cdef Py_ssize_t c, begin
    cdef int64_t *ps = _ranked_scratch(w.team, scratch_len)
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    with nogil:
        if w.team == 1:     # no parallel region (_losses._samples_run says why)
            for c in range(w.count):
                begin = c * w.size
                if not sa_interrupt_poll(&intr, w.size * E):
                    _gate_rows(px, xs, E, k, inv_temperature, over_selected, pw, pi,
                               (partial + c * width) if partial != NULL else NULL,
                               begin, min(begin + w.size, n_rows), <sa_ranked *> ps)
        else:
            for c in prange(w.count, num_threads=w.team, schedule='dynamic'):
                begin = c * w.size
                if not sa_interrupt_poll(&intr, w.size * E):
                    _gate_rows(px, xs, E, k, inv_temperature, over_selected, pw, pi,
                               (partial + c * width) if partial != NULL else NULL,
                               begin, min(begin + w.size, n_rows), <sa_ranked *> (ps + threadid() * 2 * scratch_len))
    free(ps)
    return sa_interrupt_finish(&intr)


cdef inline void _gate_rows(const floating *px, Py_ssize_t xs, Py_ssize_t E, Py_ssize_t k, double inv_temperature,
                            bint over_selected, floating *pw, int64_t *pi, double *partial, Py_ssize_t begin,
                            Py_ssize_t end, sa_ranked *scratch) noexcept nogil:
    if floating is float:
        sa_gate_rows_f32(px, xs, E, k, inv_temperature, over_selected, pw, pi, partial, begin, end, scratch)
    else:
        sa_gate_rows_f64(px, xs, E, k, inv_temperature, over_selected, pw, pi, partial, begin, end, scratch)


def gate_rows(const floating[:, :] x, Py_ssize_t k, double inv_temperature, bint over_selected,
              floating[:, ::1] weights, int64_t[:, ::1] indices, double[::1] prob_sum,
              int n_threads):
    """Top-k gate weights and experts of every router row (contiguous rows,
    no NaN); prob_sum (E entries, or empty) receives the sum over rows of
    every expert's softmax probability."""
    cdef Py_ssize_t n_rows = x.shape[0], E = x.shape[1]
    if x.strides[1] != sizeof(floating):
        raise ValueError("internal error: gate_rows needs contiguous rows")
    if not (0 < k <= E) or weights.shape[0] != n_rows or weights.shape[1] != k \
            or indices.shape[0] != n_rows or indices.shape[1] != k \
            or prob_sum.shape[0] not in (0, E):
        raise ValueError("internal error: gate_rows output shapes")
    if n_rows == 0:
        return
    cdef Py_ssize_t xs = x.strides[0] // sizeof(floating)
    cdef bint with_probs = prob_sum.shape[0] > 0
    cdef work_items w = row_items(n_rows, E, n_threads)
    if with_probs:
        # Chunks of a fixed size, each summing into its own row of partial,
        # then added in chunk order: the result does not depend on the thread
        # count or on which thread took which chunk.
        w.size = GATE_CHUNK_ROWS
        w.count = (n_rows + w.size - 1) // w.size
    cdef double[:, ::1] partial = np.zeros((w.count if with_probs else 1, E if with_probs else 1))
    _gate_run(&x[0, 0], xs, n_rows, E, k, inv_temperature, over_selected, &weights[0, 0], &indices[0, 0],
              &partial[0, 0] if with_probs else NULL, partial.shape[1], w)
    if with_probs:
        np.sum(partial, axis=0, out=np.asarray(prob_sum))


def plain_gate(object x, object k, bint over_selected, int n_threads):
    """The small calls' fast path of topk_gating with its default options:
    (weights, indices) of 2-D router logits x that pass
    _plain.plain_row_length, with k an int in [1, experts] and no NaN in x;
    else None and the caller's general path runs (and raises any error).
    gate_rows' kernel on the same rows: the same bits."""
    cdef Py_ssize_t E = plain_row_length(x, -1)
    if E < 0 or type(k) is not int or cnp.PyArray_NDIM(<cnp.ndarray> x) != 2 or not 0 < k <= E:
        return None
    cdef cnp.ndarray a = <cnp.ndarray> x
    cdef int typenum = cnp.PyArray_TYPE(a)
    cdef Py_ssize_t n_rows = cnp.PyArray_DIM(a, 0), kk = k, r
    cdef cnp.npy_intp shape[2]
    shape[0] = n_rows
    shape[1] = kk
    cdef cnp.ndarray weights = cnp.PyArray_EMPTY(2, shape, typenum, 0)
    cdef cnp.ndarray indices = cnp.PyArray_EMPTY(2, shape, cnp.NPY_INT64, 0)
    cdef work_items w = row_items(n_rows, E, n_threads)
    if typenum == cnp.NPY_FLOAT:
        _gate_run(<const float *> cnp.PyArray_DATA(a), E, n_rows, E, kk, 1.0, over_selected,
                  <float *> cnp.PyArray_DATA(weights), <int64_t *> cnp.PyArray_DATA(indices), NULL, 0, w)
        for r in range(n_rows):     # NaN ranks first: a row holding one has a NaN first weight
            if (<float *> cnp.PyArray_DATA(weights))[r * kk] != (<float *> cnp.PyArray_DATA(weights))[r * kk]:
                return None
    else:
        _gate_run(<const double *> cnp.PyArray_DATA(a), E, n_rows, E, kk, 1.0, over_selected,
                  <double *> cnp.PyArray_DATA(weights), <int64_t *> cnp.PyArray_DATA(indices), NULL, 0, w)
        for r in range(n_rows):
            if (<double *> cnp.PyArray_DATA(weights))[r * kk] != (<double *> cnp.PyArray_DATA(weights))[r * kk]:
                return None
    return weights, indices


cdef int64_t _draw_row(const floating *values, const int64_t *indices, Py_ssize_t k, double u,
                       double temperature, double top_p, double min_p, double mass, double *w,
                       sa_ranked *kept, sa_ranked *tmp) noexcept nogil:
    """The token of one row from its k candidates (values in decreasing
    order): weights relative to the largest, top_p's cut against the
    candidates' total (or mass, when not NaN), min_p's against the largest,
    then u inverted over the survivors in vocabulary order. The first
    candidate always survives (weight 1, nothing before it)."""
    cdef double top = values[0], total = 0.0, running = 0.0, target
    cdef Py_ssize_t j, m = 0
    for j in range(k):
        w[j] = exp((<double> values[j] - top) / temperature)
        total += w[j]
    if mass == mass:
        total = mass
    for j in range(k):
        running += w[j]
        if w[j] > 0 and running - w[j] < top_p * total and w[j] >= min_p:
            kept[m].key = ~(<uint64_t> indices[j])     # the largest key: the lowest index
            kept[m].index = j
            m += 1
    sa_topk_sort_f64(kept, m, tmp)
    total = 0.0
    for j in range(m):
        total += w[kept[j].index]
    # The target stays below the total: a zero weight is never drawn.
    target = fmin(u * total, nextafter(total, 0.0))
    running = 0.0
    for j in range(m):
        running += w[kept[j].index]
        if running > target:
            return indices[kept[j].index]
    return indices[kept[m - 1].index]


def draw_from_candidates(cnp.ndarray values, cnp.ndarray indices, cnp.ndarray u, double temperature,
                         double top_p, double min_p, cnp.ndarray mass):
    """One token per row from its candidates, values (rows, k) float32 or
    float64 in decreasing order with their int64 vocabulary indices: sample's
    filters (top_p = inf and min_p = 0 when not given; mass, float64 per row
    or empty, the whole row's probability mass relative to its largest
    entry's, which top_p's cut is taken against instead of the candidates'
    total) and the inversion of the float64 uniforms u over the survivors in
    vocabulary order. All C-contiguous; plain arrays, not memoryviews,
    because a typed memoryview costs about a microsecond per argument on
    these small arrays. Rows one after another: the work per row is O(k)."""
    cdef int typenum = cnp.PyArray_TYPE(values)
    if cnp.PyArray_NDIM(values) != 2 or cnp.PyArray_NDIM(indices) != 2 \
            or typenum not in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE) \
            or cnp.PyArray_TYPE(indices) != cnp.NPY_INT64 or cnp.PyArray_TYPE(u) != cnp.NPY_DOUBLE \
            or cnp.PyArray_TYPE(mass) != cnp.NPY_DOUBLE \
            or not (cnp.PyArray_IS_C_CONTIGUOUS(values) and cnp.PyArray_IS_C_CONTIGUOUS(indices)
                    and cnp.PyArray_IS_C_CONTIGUOUS(u) and cnp.PyArray_IS_C_CONTIGUOUS(mass)):
        raise ValueError("internal error: draw_from_candidates types")
    cdef Py_ssize_t rows = cnp.PyArray_DIM(values, 0), k = cnp.PyArray_DIM(values, 1), r
    if cnp.PyArray_DIM(indices, 0) != rows or cnp.PyArray_DIM(indices, 1) != k \
            or cnp.PyArray_SIZE(u) != rows or cnp.PyArray_SIZE(mass) not in (0, rows) or k == 0:
        raise ValueError("internal error: draw_from_candidates shapes")
    cdef cnp.npy_intp shape[1]
    shape[0] = rows
    cdef cnp.ndarray tokens = cnp.PyArray_EMPTY(1, shape, cnp.NPY_INT64, 0)
    cdef int64_t *out = <int64_t *> cnp.PyArray_DATA(tokens)
    cdef const int64_t *pi = <const int64_t *> cnp.PyArray_DATA(indices)
    cdef const double *pu = <const double *> cnp.PyArray_DATA(u)
    cdef const double *pm = <const double *> cnp.PyArray_DATA(mass) if cnp.PyArray_SIZE(mass) else NULL
    cdef const void *pv = cnp.PyArray_DATA(values)
    cdef double *w = <double *> malloc(k * sizeof(double))
    cdef sa_ranked *kept = <sa_ranked *> malloc(2 * k * sizeof(sa_ranked))
    if w == NULL or kept == NULL:
        free(w)
        free(kept)
        raise MemoryError()
    with nogil:
        for r in range(rows):
            if typenum == cnp.NPY_FLOAT:
                out[r] = _draw_row(<const float *> pv + r * k, pi + r * k, k, pu[r], temperature,
                                   top_p, min_p, pm[r] if pm != NULL else NAN, w, kept, kept + k)
            else:
                out[r] = _draw_row(<const double *> pv + r * k, pi + r * k, k, pu[r], temperature,
                                   top_p, min_p, pm[r] if pm != NULL else NAN, w, kept, kept + k)
    free(w)
    free(kept)
    return tokens
