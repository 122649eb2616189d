# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled gating kernels: top-k selection along rows.

This module spreads rows over OpenMP threads; the selection is in
``_gating_kernels.h``. The caller (``softarray/_gating.py``) has validated
everything and laid the data out as contiguous rows.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t

import numpy as np

cdef extern from "_gating_kernels.h" nogil:
    ctypedef struct sa_ranked:
        pass
    enum:
        SA_TOPK_SMALL_K
    void sa_topk_rows_f32(const float *x, Py_ssize_t xs, Py_ssize_t n, Py_ssize_t k, int largest,
                          int sorted, float *values, int64_t *indices, Py_ssize_t begin,
                          Py_ssize_t end, sa_ranked *scratch)
    void sa_topk_rows_f64(const double *x, Py_ssize_t xs, Py_ssize_t n, Py_ssize_t k, int largest,
                          int sorted, double *values, int64_t *indices, Py_ssize_t begin,
                          Py_ssize_t end, sa_ranked *scratch)

# Below this much work (entries read) one thread is faster than waking a team.
cdef Py_ssize_t PARALLEL_MIN_ELEMENTS = 1 << 15
# Work items per thread.
cdef Py_ssize_t CHUNKS_PER_THREAD = 4


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
    cdef Py_ssize_t xs = x.strides[0] // sizeof(floating)
    cdef Py_ssize_t scratch_len = k if k <= SA_TOPK_SMALL_K else n
    cdef int team = n_threads if (n_threads > 1 and n_rows > 1 and n_rows * n >= PARALLEL_MIN_ELEMENTS) else 1
    cdef Py_ssize_t n_chunks = min(n_rows, <Py_ssize_t> team * CHUNKS_PER_THREAD)
    cdef Py_ssize_t chunk = (n_rows + n_chunks - 1) // n_chunks
    cdef Py_ssize_t c, begin
    cdef const floating *px = &x[0, 0]
    cdef floating *pv = &values[0, 0]
    cdef int64_t *pi = &indices[0, 0]
    # One scratch buffer per thread, not per row: (key, index) pairs.
    cdef int64_t[:, ::1] scratch = np.empty((team, 2 * scratch_len), np.int64)
    cdef int64_t *ps = &scratch[0, 0]
    with nogil:
        for c in prange(n_chunks, num_threads=team, schedule='dynamic'):
            begin = c * chunk
            if begin < n_rows:
                if floating is float:
                    sa_topk_rows_f32(px, xs, n, k, largest, sorted, pv, pi, begin,
                                     min(begin + chunk, n_rows),
                                     <sa_ranked *> (ps + threadid() * 2 * scratch_len))
                else:
                    sa_topk_rows_f64(px, xs, n, k, largest, sorted, pv, pi, begin,
                                     min(begin + chunk, n_rows),
                                     <sa_ranked *> (ps + threadid() * 2 * scratch_len))
