# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled softmax-family kernels (softmax, log_softmax, stablemax,
log_stablemax, logsumexp).

This module only spreads work over OpenMP threads; the arithmetic is in
``_softmax_kernels.h``. Callers (``softarray/_softmax.py``) have validated
everything and laid the data out as either

* rows: a 2-D ``(n_slices, n)`` view whose rows are contiguous, reduced along
  its last axis, or
* columns: a 3-D ``(outer, n, inner)`` view with a contiguous last axis,
  reduced along its middle axis without transposing.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport uint16_t
from libc.math cimport INFINITY
from libc.stdlib cimport malloc, free
cimport numpy as cnp
from _parallel cimport PARALLEL_MIN_ELEMENTS, PARALLEL_MIN_BYTES, SPLIT_MIN_LENGTH, elements, split_segment
from _plain cimport plain_row_length

cnp.import_array()

cdef extern from "_half.h" nogil:
    enum:
        SA_HALF_SCRATCH_FLOATS

cdef extern from "_softmax_kernels.h" nogil:
    void sa_rows_half(const uint16_t *x, Py_ssize_t xs, uint16_t *out, Py_ssize_t os, Py_ssize_t n_rows,
                      Py_ssize_t n, float scale, int op, int kind, float *scratch, Py_ssize_t chunk_rows)
    ctypedef struct sa_stats:
        double max
        double rest
        double count
        int nan
    ctypedef struct sa_params:
        double a
        double b
        double c
    ctypedef struct sa_cached_state:
        double max
        double sum
        int nan
    enum:
        SA_SOFTMAX
        SA_LOG_SOFTMAX
        SA_STABLEMAX
        SA_LOG_STABLEMAX
        SA_LOGSUMEXP
        SA_COL_BLOCK_MAX
        SA_CACHED_ROW_BYTES
        SA_CACHED_ROW_BLOCKS
        SA_STREAM_OUT_BYTES
    void sa_stats_init(sa_stats *st)
    void sa_cached_merge(sa_cached_state *a, const sa_cached_state *b)
    void sa_segment_cached_stats_f32(const float *x, float *out, Py_ssize_t n, float scale,
                                     double *shift, sa_cached_state *st)
    void sa_segment_cached_stats_f64(const double *x, double *out, Py_ssize_t n, double scale,
                                     double *shift, sa_cached_state *st)
    void sa_segment_cached_write_f32(float *out, Py_ssize_t n, const double *shift,
                                     sa_cached_state row)
    void sa_segment_cached_write_f64(double *out, Py_ssize_t n, const double *shift,
                                     sa_cached_state row)
    void sa_stats_merge(int stable, sa_stats *a, const sa_stats *b)
    int sa_op_is_stable(int op)
    sa_params sa_finalize(int op, const sa_stats *st)
    void sa_rows_f32(const float *x, Py_ssize_t xs, float *out, Py_ssize_t os,
                     Py_ssize_t n_rows, Py_ssize_t n, float scale, int op, int stream_out)
    void sa_rows_f64(const double *x, Py_ssize_t xs, double *out, Py_ssize_t os,
                     Py_ssize_t n_rows, Py_ssize_t n, double scale, int op, int stream_out)
    void sa_cols_f32(const float *x, Py_ssize_t xs, float *out, Py_ssize_t os,
                     Py_ssize_t n, Py_ssize_t width, float scale, int op)
    void sa_cols_f64(const double *x, Py_ssize_t xs, double *out, Py_ssize_t os,
                     Py_ssize_t n, Py_ssize_t width, double scale, int op)
    void sa_segment_stats_f32(const float *x, Py_ssize_t n, float scale, int op, sa_stats *st)
    void sa_segment_stats_f64(const double *x, Py_ssize_t n, double scale, int op, sa_stats *st)
    void sa_segment_write_f32(const float *x, float *out, Py_ssize_t n, float scale, int op, sa_params p)
    void sa_segment_write_f64(const double *x, double *out, Py_ssize_t n, double scale, int op, sa_params p)

OPS = {
    "softmax": SA_SOFTMAX,
    "log_softmax": SA_LOG_SOFTMAX,
    "stablemax": SA_STABLEMAX,
    "log_stablemax": SA_LOG_STABLEMAX,
    "logsumexp": SA_LOGSUMEXP,
}
LOGSUMEXP = SA_LOGSUMEXP

# The column kernel re-reads a block of n rows three times: size the block's
# width so that it stays in a (conservative) 512 KiB of L2.
cdef Py_ssize_t COL_CACHE_BYTES = 512 * 1024


cdef inline void _rows(const floating *x, Py_ssize_t xs, floating *out, Py_ssize_t os,
                       Py_ssize_t n_rows, Py_ssize_t n, double scale, int op,
                       int stream_out) noexcept nogil:
    if floating is float:
        sa_rows_f32(x, xs, out, os, n_rows, n, <float>scale, op, stream_out)
    else:
        sa_rows_f64(x, xs, out, os, n_rows, n, scale, op, stream_out)


cdef inline void _segment_stats(const floating *x, Py_ssize_t n, double scale, int op,
                                sa_stats *st) noexcept nogil:
    if floating is float:
        sa_segment_stats_f32(x, n, <float>scale, op, st)
    else:
        sa_segment_stats_f64(x, n, scale, op, st)


cdef inline void _segment_write(const floating *x, floating *out, Py_ssize_t n, double scale,
                                int op, sa_params p) noexcept nogil:
    if floating is float:
        sa_segment_write_f32(x, out, n, <float>scale, op, p)
    else:
        sa_segment_write_f64(x, out, n, scale, op, p)


cdef inline void _segment_cached_stats(const floating *x, floating *out, Py_ssize_t n, double scale,
                                       double *shift, sa_cached_state *st) noexcept nogil:
    if floating is float:
        sa_segment_cached_stats_f32(x, out, n, <float>scale, shift, st)
    else:
        sa_segment_cached_stats_f64(x, out, n, scale, shift, st)


cdef inline void _segment_cached_write(floating *out, Py_ssize_t n, const double *shift,
                                       sa_cached_state row) noexcept nogil:
    if floating is float:
        sa_segment_cached_write_f32(out, n, shift, row)
    else:
        sa_segment_cached_write_f64(out, n, shift, row)


cdef int _rows_split_cached(const floating *x, Py_ssize_t xs, floating *out, Py_ssize_t os,
                            Py_ssize_t n_rows, Py_ssize_t n, Py_ssize_t seg, double scale,
                            int n_threads) noexcept nogil:
    """_rows_split for softmax when a segment fits SA_CACHED_ROW_BYTES: pass 1
    stores each segment's exponentials (one exp per entry), the segments'
    (maximum, sum) are merged per row, pass 2 rescales each segment's blocks.
    Returns -1 if scratch could not be allocated."""
    cdef Py_ssize_t n_seg = (n + seg - 1) // seg
    cdef Py_ssize_t n_tasks = n_rows * n_seg
    cdef Py_ssize_t t, r, s, start
    # one allocation: every segment's block shifts, then the segments' states
    cdef double *shifts = <double *> malloc(
        n_tasks * (SA_CACHED_ROW_BLOCKS * sizeof(double) + sizeof(sa_cached_state)))
    if shifts == NULL:
        return -1
    cdef sa_cached_state *states = <sa_cached_state *> (shifts + n_tasks * SA_CACHED_ROW_BLOCKS)
    for t in prange(n_tasks, num_threads=n_threads, schedule='static'):
        r = t // n_seg
        start = (t - r * n_seg) * seg
        _segment_cached_stats(x + r * xs + start, out + r * os + start, min(seg, n - start), scale,
                              shifts + t * SA_CACHED_ROW_BLOCKS, &states[t])
    for r in range(n_rows):
        for s in range(1, n_seg):
            sa_cached_merge(&states[r * n_seg], &states[r * n_seg + s])
    for t in prange(n_tasks, num_threads=n_threads, schedule='static'):
        r = t // n_seg
        start = (t - r * n_seg) * seg
        _segment_cached_write(out + r * os + start, min(seg, n - start),
                              shifts + t * SA_CACHED_ROW_BLOCKS, states[r * n_seg])
    free(shifts)
    return 0


cdef inline void _cols(const floating *x, Py_ssize_t xs, floating *out, Py_ssize_t os,
                       Py_ssize_t n, Py_ssize_t width, double scale, int op) noexcept nogil:
    if floating is float:
        sa_cols_f32(x, xs, out, os, n, width, <float>scale, op)
    else:
        sa_cols_f64(x, xs, out, os, n, width, scale, op)


cdef int _rows_split(const floating *x, Py_ssize_t xs, floating *out, Py_ssize_t os,
                     Py_ssize_t n_rows, Py_ssize_t n, double scale, int op,
                     int n_threads) noexcept nogil:
    """Few long rows: every row is cut into n_threads segments; pass 1 runs
    per segment in parallel, the segments' states are merged per row, and
    pass 2 runs per segment in parallel. Returns -1 if scratch could not be
    allocated (the caller then runs unsplit)."""
    cdef Py_ssize_t seg = split_segment(n, n_threads, 64)    # whole cache lines per segment
    if op == SA_SOFTMAX and seg * <Py_ssize_t> sizeof(floating) <= SA_CACHED_ROW_BYTES:
        return _rows_split_cached(x, xs, out, os, n_rows, n, seg, scale, n_threads)
    cdef Py_ssize_t n_seg = (n + seg - 1) // seg
    cdef Py_ssize_t n_tasks = n_rows * n_seg
    cdef Py_ssize_t t, r, s, start, length
    cdef int stable = sa_op_is_stable(op)
    cdef sa_stats *stats = <sa_stats *> malloc(n_tasks * sizeof(sa_stats))
    cdef sa_params *params = <sa_params *> malloc(n_rows * sizeof(sa_params))
    if stats == NULL or params == NULL:
        free(stats)
        free(params)
        return -1
    for t in prange(n_tasks, num_threads=n_threads, schedule='static'):
        r = t // n_seg
        start = (t - r * n_seg) * seg
        length = min(seg, n - start)
        sa_stats_init(&stats[t])
        _segment_stats(x + r * xs + start, length, scale, op, &stats[t])
    for r in range(n_rows):
        for s in range(1, n_seg):
            sa_stats_merge(stable, &stats[r * n_seg], &stats[r * n_seg + s])
        params[r] = sa_finalize(op, &stats[r * n_seg])
        if op == SA_LOGSUMEXP:
            out[r * os] = <floating> params[r].a
    if op != SA_LOGSUMEXP:
        for t in prange(n_tasks, num_threads=n_threads, schedule='static'):
            r = t // n_seg
            start = (t - r * n_seg) * seg
            length = min(seg, n - start)
            _segment_write(x + r * xs + start, out + r * os + start, length, scale, op, params[r])
    free(stats)
    free(params)
    return 0


cdef void _rows_parallel(const floating *x, Py_ssize_t xs, floating *out, Py_ssize_t os,
                         Py_ssize_t n_rows, Py_ssize_t n, double scale, int op,
                         int n_threads) noexcept nogil:
    cdef Py_ssize_t n_chunks, chunk, c, r0
    cdef Py_ssize_t n_bytes = n_rows * n * <Py_ssize_t> sizeof(floating)
    cdef int stream_out = n_bytes >= SA_STREAM_OUT_BYTES
    if n_threads <= 1 or n_bytes < PARALLEL_MIN_BYTES:
        _rows(x, xs, out, os, n_rows, n, scale, op, stream_out)
        return
    if n_rows < n_threads and n >= SPLIT_MIN_LENGTH:
        if _rows_split(x, xs, out, os, n_rows, n, scale, op, n_threads) == 0:
            return
    n_chunks = min(n_rows, <Py_ssize_t> n_threads)
    if n_chunks == 1:   # one row too short to split: a team would idle all but one
        _rows(x, xs, out, os, n_rows, n, scale, op, stream_out)
        return
    chunk = (n_rows + n_chunks - 1) // n_chunks
    for c in prange(n_chunks, num_threads=n_threads, schedule='static'):
        r0 = c * chunk
        if r0 < n_rows:
            _rows(x + r0 * xs, xs, out + r0 * os, os, min(chunk, n_rows - r0), n, scale, op, stream_out)


def rows(const floating[:, :] x, floating[:, :] out, int op, double scale, int n_threads):
    """out[i, :] = op(x[i, :]) for a non-reducing op; x's rows must be contiguous."""
    cdef Py_ssize_t n_rows = x.shape[0], n = x.shape[1]
    if x.strides[1] != sizeof(floating) or out.strides[1] != sizeof(floating):
        raise ValueError("internal error: rows kernel needs contiguous rows")
    if op == SA_LOGSUMEXP or out.shape[0] != n_rows or out.shape[1] != n:
        raise ValueError("internal error: rows kernel called with a reducing op or wrong shape")
    if n_rows == 0 or n == 0:
        return
    cdef Py_ssize_t xs = elements(x.strides[0], sizeof(floating))
    cdef Py_ssize_t os = elements(out.strides[0], sizeof(floating))
    with nogil:
        _rows_parallel(&x[0, 0], xs, &out[0, 0], os, n_rows, n, scale, op, n_threads)


def plain_rows(object x, object axis, int op, double scale, int n_threads):
    """The small calls' fast path: op along the last axis of x into a new
    array (for logsumexp, of x's shape without that axis) when x and axis
    pass _plain.plain_row_length, else None and the caller takes its general
    path, which calls the same kernel on the same rows for such input: both
    give the same bits."""
    return _plain_rows(x, axis, op, scale, n_threads)


def plain_rows_at(object x, object axis, int op, object temperature, int n_threads):
    """plain_rows at a temperature T (scale 1 / T, as check_temperature
    gives): None also when T is not a positive finite Python float, so that
    the caller's check_temperature reports a bad one. One compiled call from
    the public function to the kernel, where the check, the division and the
    frames between in Python took a sixth of a small call (0.13 of 0.8 us)."""
    if type(temperature) is not float:
        return None
    cdef double t = <double> temperature
    if not (0.0 < t < INFINITY):
        return None
    return _plain_rows(x, axis, op, 1.0 / t, n_threads)


cdef object _plain_rows(object x, object axis, int op, double scale, int n_threads):
    cdef Py_ssize_t n = plain_row_length(x, axis)
    if n < 0:
        return None
    cdef cnp.ndarray a = <cnp.ndarray> x
    cdef int typenum = cnp.PyArray_TYPE(a)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(a)
    cdef int reduces = op == SA_LOGSUMEXP
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(a) - reduces, cnp.PyArray_DIMS(a), typenum, 0)
    cdef Py_ssize_t os = 1 if reduces else n
    with nogil:
        if typenum == cnp.NPY_FLOAT:
            _rows_parallel(<const float *> cnp.PyArray_DATA(a), n, <float *> cnp.PyArray_DATA(out), os,
                           size // n, n, scale, op, n_threads)
        else:
            _rows_parallel(<const double *> cnp.PyArray_DATA(a), n, <double *> cnp.PyArray_DATA(out), os,
                           size // n, n, scale, op, n_threads)
    return out


def rows_half(const uint16_t[:, :] x, uint16_t[:, :] out, int op, double scale, int kind, int n_threads):
    """op along the rows of half-precision x (kind: 0 float16, 1 bfloat16,
    as raw 16-bit patterns; contiguous rows) into out of the same kind: out
    (n_rows, n), or (n_rows, 1) for logsumexp. Computed in float32 and
    rounded once (_half.h)."""
    cdef Py_ssize_t n_rows = x.shape[0], n = x.shape[1]
    if x.strides[1] != 2 or out.strides[1] != 2 or out.shape[0] != n_rows \
            or out.shape[1] != (1 if op == SA_LOGSUMEXP else n):
        raise ValueError("internal error: rows_half needs contiguous rows and an output of their shape")
    if n_rows == 0 or n == 0:
        return
    cdef Py_ssize_t chunk_rows = max(<Py_ssize_t> 1, SA_HALF_SCRATCH_FLOATS // n)
    cdef Py_ssize_t n_chunks = (n_rows + chunk_rows - 1) // chunk_rows, per = chunk_rows * (n + 1)
    cdef int team = 1 if n_rows * n < PARALLEL_MIN_ELEMENTS else <int> min(<Py_ssize_t> n_threads, n_chunks)
    cdef float *scratch = <float *> malloc(team * per * sizeof(float))
    if scratch == NULL:
        raise MemoryError()
    cdef Py_ssize_t xs = x.strides[0] // 2, os = out.strides[0] // 2, c, r0
    cdef const uint16_t *px = &x[0, 0]
    cdef uint16_t *po = &out[0, 0]
    with nogil:
        for c in prange(n_chunks, num_threads=team, schedule='static'):
            r0 = c * chunk_rows
            sa_rows_half(px + r0 * xs, xs, po + r0 * os, os, min(chunk_rows, n_rows - r0), n,
                         <float> scale, op, kind, scratch + threadid() * per, chunk_rows)
    free(scratch)


def rows_logsumexp(const floating[:, :] x, floating[:] out, double scale, int n_threads):
    """out[i] = logsumexp(x[i, :]); rows must be non-empty and contiguous."""
    cdef Py_ssize_t n_rows = x.shape[0], n = x.shape[1]
    if x.strides[1] != sizeof(floating) or out.shape[0] != n_rows or n == 0:
        raise ValueError("internal error: bad layout for rows_logsumexp")
    if n_rows == 0:
        return
    cdef Py_ssize_t xs = elements(x.strides[0], sizeof(floating))
    cdef Py_ssize_t os = elements(out.strides[0], sizeof(floating))
    with nogil:
        _rows_parallel(&x[0, 0], xs, &out[0], os, n_rows, n, scale, SA_LOGSUMEXP, n_threads)


cdef Py_ssize_t _col_width(Py_ssize_t n, Py_ssize_t itemsize) noexcept nogil:
    cdef Py_ssize_t width = COL_CACHE_BYTES // max(n * itemsize, <Py_ssize_t> 1)
    width = width // 16 * 16
    return max(<Py_ssize_t> 32, min(width, <Py_ssize_t> SA_COL_BLOCK_MAX))


def cols(const floating[:, :, :] x, floating[:, :, :] out, int op, double scale, int n_threads):
    """op along axis 1 of (outer, n, inner) for every (outer, inner) pair.
    For logsumexp, out has shape (outer, 1, inner)."""
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t item = sizeof(floating)
    cdef Py_ssize_t out_n = 1 if op == SA_LOGSUMEXP else n
    if x.strides[2] != item or out.strides[2] != item:
        raise ValueError("internal error: cols kernel needs a contiguous last axis")
    if out.shape[0] != outer or out.shape[1] != out_n or out.shape[2] != inner:
        raise ValueError("internal error: cols kernel called with the wrong output shape")
    if outer == 0 or inner == 0 or (n == 0 and op != SA_LOGSUMEXP):
        return
    if n == 0:
        raise ValueError("internal error: logsumexp over an empty axis is handled in Python")
    cdef Py_ssize_t xs0 = elements(x.strides[0], item), xs1 = elements(x.strides[1], item)
    cdef Py_ssize_t os0 = elements(out.strides[0], item), os1 = elements(out.strides[1], item)
    cdef Py_ssize_t width = _col_width(n, item)
    cdef Py_ssize_t n_blocks = (inner + width - 1) // width
    cdef Py_ssize_t n_tasks = outer * n_blocks
    cdef Py_ssize_t t, o, j0
    cdef const floating *px = &x[0, 0, 0]
    cdef floating *po = &out[0, 0, 0]
    if n_tasks == 1 or outer * n * inner < PARALLEL_MIN_ELEMENTS:
        n_threads = 1
    with nogil:
        for t in prange(n_tasks, num_threads=n_threads, schedule='static'):
            o = t // n_blocks
            j0 = (t - o * n_blocks) * width
            _cols(px + o * xs0 + j0, xs1, po + o * os0 + j0, os1, n,
                  min(width, inner - j0), scale, op)
