# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled classification-loss kernels.

This module only spreads samples over OpenMP threads; the arithmetic is in
``_losses_kernels.h``. The caller (``softarray/_losses.py``) has validated
everything, mapped ignored samples to target -1 and allocated the outputs;
the reduction over samples happens there, on the per-sample losses written
here (float64, one per sample: O(samples) memory, never O(logits)).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint16_t
from libc.stdlib cimport malloc, free
from cython.parallel cimport threadid
from _interrupt cimport sa_interrupt, sa_interrupt_start, sa_interrupt_poll, sa_interrupt_finish
from _parallel cimport (PARALLEL_MIN_ELEMENTS, SPLIT_MIN_LENGTH, elements, work_items, row_items,
                       row_items_by_bytes, split_segment)
cimport numpy as cnp
import numpy as np
from _plain cimport plain_row_length

cnp.import_array()

cdef extern from "_half.h" nogil:
    enum:
        SA_HALF_SCRATCH_FLOATS
    void sa_half_widen(const uint16_t *h, float *f, Py_ssize_t n, int kind)
    void sa_half_narrow(const float *f, uint16_t *h, Py_ssize_t n, int kind)

cdef extern from "_losses_kernels.h" nogil:
    ctypedef struct sa_loss_opts:
        int kind
        double smoothing
        double gamma
        double tau
        double a
        double b
        double margin
        int power
        double weight
        int log_target
        double grad_scale
        const double *class_weight
        double class_weight_sum
    ctypedef struct sa_loss_split_grad:
        pass
    ctypedef struct sa_stats:
        pass
    enum:
        SA_ROW_BLOCK
    bint sa_loss_index_softmax_kind(int kind)
    ctypedef struct sa_ew_opts:
        int kind
        double alpha
        double gamma
        int log_target
        double grad_scale
    enum:
        SA_LOSS_CROSS_ENTROPY
        SA_LOSS_CROSS_ENTROPY_PROBS
        SA_LOSS_NLL
        SA_LOSS_FOCAL
        SA_LOSS_COMP_SUM
        SA_LOSS_Z
        SA_LOSS_LSE_PENALTY
        SA_LOSS_MARGIN_WW
        SA_LOSS_MARGIN_CS
        SA_LOSS_KL_LOGITS
        SA_EW_BCE
        SA_EW_SIGMOID_FOCAL
        SA_EW_KL
    void sa_loss_samples_f32(const float *x, Py_ssize_t x_s0, Py_ssize_t x_sc, Py_ssize_t x_s2,
                             Py_ssize_t C, Py_ssize_t inner, const int64_t *y,
                             const float *t, Py_ssize_t t_s0, Py_ssize_t t_sc, Py_ssize_t t_s2,
                             float *g, const sa_loss_opts *o, double *loss,
                             Py_ssize_t begin, Py_ssize_t end)
    void sa_loss_samples_f64(const double *x, Py_ssize_t x_s0, Py_ssize_t x_sc, Py_ssize_t x_s2,
                             Py_ssize_t C, Py_ssize_t inner, const int64_t *y,
                             const double *t, Py_ssize_t t_s0, Py_ssize_t t_sc, Py_ssize_t t_s2,
                             double *g, const sa_loss_opts *o, double *loss,
                             Py_ssize_t begin, Py_ssize_t end)
    void sa_loss_split_stats_f32(const float *x, Py_ssize_t x_s0, Py_ssize_t x_sc, Py_ssize_t x_s2,
                                 Py_ssize_t C, Py_ssize_t inner, Py_ssize_t seg, Py_ssize_t task,
                                 sa_stats *st)
    void sa_loss_split_stats_f64(const double *x, Py_ssize_t x_s0, Py_ssize_t x_sc, Py_ssize_t x_s2,
                                 Py_ssize_t C, Py_ssize_t inner, Py_ssize_t seg, Py_ssize_t task,
                                 sa_stats *st)
    void sa_loss_split_finish_f32(const float *x, Py_ssize_t x_s0, Py_ssize_t x_sc, Py_ssize_t x_s2,
                                  Py_ssize_t C, Py_ssize_t inner, const int64_t *y, const sa_loss_opts *o,
                                  Py_ssize_t n, sa_stats *st, Py_ssize_t n_seg, double *loss,
                                  sa_loss_split_grad *k)
    void sa_loss_split_finish_f64(const double *x, Py_ssize_t x_s0, Py_ssize_t x_sc, Py_ssize_t x_s2,
                                  Py_ssize_t C, Py_ssize_t inner, const int64_t *y, const sa_loss_opts *o,
                                  Py_ssize_t n, sa_stats *st, Py_ssize_t n_seg, double *loss,
                                  sa_loss_split_grad *k)
    void sa_loss_split_grad_f32(const float *x, Py_ssize_t x_s0, Py_ssize_t x_sc, Py_ssize_t x_s2,
                                Py_ssize_t C, Py_ssize_t inner, const int64_t *y, const sa_loss_opts *o,
                                Py_ssize_t seg, Py_ssize_t task, const sa_loss_split_grad *k, float *g)
    void sa_loss_split_grad_f64(const double *x, Py_ssize_t x_s0, Py_ssize_t x_sc, Py_ssize_t x_s2,
                                Py_ssize_t C, Py_ssize_t inner, const int64_t *y, const sa_loss_opts *o,
                                Py_ssize_t seg, Py_ssize_t task, const sa_loss_split_grad *k, double *g)
    void sa_elementwise_rows_f32(const float *x, const float *t, Py_ssize_t L,
                                 const float *w, Py_ssize_t w_s0, Py_ssize_t w_s1,
                                 const float *pw, Py_ssize_t p_s0, Py_ssize_t p_s1,
                                 const sa_ew_opts *o, float *out, float *g, double *row_loss,
                                 Py_ssize_t begin, Py_ssize_t end)
    void sa_elementwise_rows_f64(const double *x, const double *t, Py_ssize_t L,
                                 const double *w, Py_ssize_t w_s0, Py_ssize_t w_s1,
                                 const double *pw, Py_ssize_t p_s0, Py_ssize_t p_s1,
                                 const sa_ew_opts *o, double *out, double *g, double *row_loss,
                                 Py_ssize_t begin, Py_ssize_t end)

KINDS = {
    "cross_entropy": SA_LOSS_CROSS_ENTROPY,
    "cross_entropy_probs": SA_LOSS_CROSS_ENTROPY_PROBS,
    "nll": SA_LOSS_NLL,
    "focal": SA_LOSS_FOCAL,
    "comp_sum": SA_LOSS_COMP_SUM,
    "z_loss": SA_LOSS_Z,
    "logsumexp_penalty": SA_LOSS_LSE_PENALTY,
    "weston_watkins": SA_LOSS_MARGIN_WW,
    "crammer_singer": SA_LOSS_MARGIN_CS,
    "kl_logits": SA_LOSS_KL_LOGITS,
}
ELEMENTWISE_KINDS = {
    "binary_cross_entropy": SA_EW_BCE,
    "sigmoid_focal": SA_EW_SIGMOID_FOCAL,
    "kl": SA_EW_KL,
}

cdef sa_loss_opts _default_opts(int kind, double class_weight_sum) noexcept nogil:
    """A loss's options at their defaults: the one place they are set."""
    cdef sa_loss_opts o
    o.kind = kind
    o.smoothing = 0.0
    o.gamma = 0.0
    o.tau = 1.0
    o.a = 1.0
    o.b = 0.0
    o.margin = 1.0
    o.power = 1
    o.weight = 1.0
    o.log_target = False
    o.grad_scale = 1.0
    o.class_weight = NULL
    o.class_weight_sum = class_weight_sum
    return o


# The option names each kind of kernel reads: any other key is a misspelling,
# which would otherwise silently leave that option at its default.
LOSS_OPTIONS = frozenset({"kind", "class_weight_sum", "smoothing", "gamma", "tau", "a", "b",
                          "margin", "power", "weight", "log_target", "grad_scale"})
ELEMENTWISE_OPTIONS = frozenset({"kind", "alpha", "gamma", "log_target", "grad_scale"})


cdef _check_option_names(dict opts, frozenset known):
    unknown = opts.keys() - known
    if unknown:
        raise ValueError(f"internal error: unknown loss options {sorted(unknown)}")


cdef sa_loss_opts _loss_opts(dict opts, const double[::1] class_weight) except *:
    _check_option_names(opts, LOSS_OPTIONS)
    cdef sa_loss_opts o = _default_opts(KINDS[opts["kind"]], opts.get("class_weight_sum", 0.0))
    o.smoothing = opts.get("smoothing", o.smoothing)
    o.gamma = opts.get("gamma", o.gamma)
    o.tau = opts.get("tau", o.tau)
    o.a = opts.get("a", o.a)
    o.b = opts.get("b", o.b)
    o.margin = opts.get("margin", o.margin)
    o.power = opts.get("power", o.power)
    o.weight = opts.get("weight", o.weight)
    o.log_target = opts.get("log_target", o.log_target)
    o.grad_scale = opts.get("grad_scale", o.grad_scale)
    o.class_weight = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    return o


cdef double _pairwise_sum(const double *a, Py_ssize_t n) noexcept nogil:
    """Pairwise summation, as NumPy sums: up to 128 entries in eight running
    sums, longer runs cut in halves at a multiple of eight, so the rounding
    error grows as log n."""
    cdef double r[8]
    cdef double s = -0.0    # a sum of -0.0 entries stays -0.0
    cdef Py_ssize_t i, j, half
    if n < 8:
        for i in range(n):
            s += a[i]
        return s
    if n <= 128:
        for j in range(8):
            r[j] = a[j]
        i = 8
        while i + 8 <= n:
            for j in range(8):
                r[j] += a[i + j]
            i += 8
        s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            s += a[i]
            i += 1
        return s
    half = n // 2
    half -= half % 8
    return _pairwise_sum(a, half) + _pairwise_sum(a + half, n - half)


def total(object per_item):
    """The sum of float64 per-sample losses (softarray._reduction): a
    C-contiguous float64 array summed here, where NumPy's reduction machinery
    alone took 0.85 us, half of a small call; any other array by NumPy."""
    if (type(per_item) is not cnp.ndarray or cnp.PyArray_TYPE(<cnp.ndarray> per_item) != cnp.NPY_DOUBLE
            or not cnp.PyArray_ISCARRAY_RO(<cnp.ndarray> per_item)):
        return float(np.add.reduce(per_item, axis=None))
    return _pairwise_sum(<const double *> cnp.PyArray_DATA(<cnp.ndarray> per_item),
                         cnp.PyArray_SIZE(<cnp.ndarray> per_item))


# plain_cross_entropy's reductions, by name
PLAIN_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def plain_cross_entropy(object logits, object target, object axis, object reduction,
                        bint with_grad, int n_threads):
    """The small-call path of cross_entropy, every check in C: the loss of
    each row of logits against its class index in target, with every option
    but the reduction and with_grad at its default, spread over n_threads as
    ``samples`` spreads it (one thread below PARALLEL_MIN_BYTES), when
    logits pass _plain.plain_row_length, target is a plain int64 array
    (native byte order, aligned, C-contiguous) of logits' shape without the
    class axis with every index in [0, C), and reduction is one of
    PLAIN_REDUCTIONS; else None, computing nothing, and the caller's general
    path runs (and raises any error). Returns the reduced loss in the logits'
    dtype (softarray._reduction.reduce_losses'), or (loss, grad) with
    with_grad, the gradient in a new array like logits. The same kernel,
    options and sums as ``samples`` and the general path, so the same bits."""
    cdef Py_ssize_t C = plain_row_length(logits, axis)
    if C < 0 or type(target) is not cnp.ndarray or type(reduction) is not str:
        return None
    red = PLAIN_REDUCTIONS.get(reduction)
    if red is None:
        return None
    cdef cnp.ndarray x = <cnp.ndarray> logits, t = <cnp.ndarray> target
    cdef int nd = cnp.PyArray_NDIM(x), typenum = cnp.PyArray_TYPE(x)
    if (cnp.PyArray_TYPE(t) != cnp.NPY_INT64 or not cnp.PyArray_ISCARRAY_RO(t)
            or not cnp.PyArray_ISNOTSWAPPED(t) or cnp.PyArray_NDIM(t) != nd - 1
            or not cnp.PyArray_CompareLists(cnp.PyArray_DIMS(t), cnp.PyArray_DIMS(x), nd - 1)):
        return None
    cdef cnp.npy_intp n = cnp.PyArray_SIZE(x) // C, i
    cdef const int64_t *y = <const int64_t *> cnp.PyArray_DATA(t)
    for i in range(n):
        if y[i] < 0 or y[i] >= C:
            return None
    cdef cnp.ndarray per = cnp.PyArray_EMPTY(1, &n, cnp.NPY_DOUBLE, 0)
    cdef double *pl = <double *> cnp.PyArray_DATA(per)
    cdef cnp.ndarray grad = None
    cdef sa_loss_opts o = _default_opts(SA_LOSS_CROSS_ENTROPY, <double> C)
    if with_grad:
        grad = cnp.PyArray_EMPTY(nd, cnp.PyArray_DIMS(x), typenum, 0)
        o.grad_scale = 1.0 / <double> n if red == 1 else 1.0     # softarray._reduction.grad_scale's
    if typenum == cnp.NPY_FLOAT:
        _samples_run(<const float *> cnp.PyArray_DATA(x), C, 1, 1, C, 1, y, <const float *> NULL,
                     0, 0, 0, <float *> cnp.PyArray_DATA(grad) if with_grad else NULL, &o, pl, n, n_threads)
    else:
        _samples_run(<const double *> cnp.PyArray_DATA(x), C, 1, 1, C, 1, y, <const double *> NULL,
                     0, 0, 0, <double *> cnp.PyArray_DATA(grad) if with_grad else NULL, &o, pl, n, n_threads)
    loss = _reduced(per, red, typenum, nd - 1, cnp.PyArray_DIMS(t))
    return (loss, grad) if with_grad else loss


cdef cnp.ndarray _reduced(cnp.ndarray per, int red, int typenum, int nd, cnp.npy_intp *dims):
    """reduce_losses of float64 per-sample losses in C: "none" (red 0) as
    an array of dims in typenum, "mean" (1) and "sum" (2) as a 0-d one, the
    same pairwise sum (total) and the same rounding."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(per), i
    cdef const double *pl = <const double *> cnp.PyArray_DATA(per)
    cdef cnp.ndarray out
    cdef double value
    if red == 0:
        out = cnp.PyArray_EMPTY(nd, dims, typenum, 0)
        for i in range(n):
            if typenum == cnp.NPY_FLOAT:
                (<float *> cnp.PyArray_DATA(out))[i] = <float> pl[i]
            else:
                (<double *> cnp.PyArray_DATA(out))[i] = pl[i]
        return out
    value = _pairwise_sum(pl, n)
    if red == 1:
        value = value / <double> n
    out = cnp.PyArray_EMPTY(0, NULL, typenum, 0)
    if typenum == cnp.NPY_FLOAT:
        (<float *> cnp.PyArray_DATA(out))[0] = <float> value
    else:
        (<double *> cnp.PyArray_DATA(out))[0] = value
    return out


def samples(const floating[:, :, :] x, const int64_t[::1] y, const floating[:, :, :] t,
            floating[:, :, ::1] grad, double[::1] loss, const double[::1] class_weight,
            dict opts, int n_threads):
    """Per-sample losses of logits viewed as (outer, C, inner), classes along
    axis 1, into loss[outer * inner]; the gradient into grad (same shape,
    C-contiguous) when grad has that shape, else no gradient.

    y holds one target per sample (-1: ignored); it may be empty for the
    probability-target kinds, which read t (same shape as x) instead; t is
    ignored by the other kinds. class_weight is empty or has C entries.
    opts["kind"] names the loss (see KINDS); other keys are its parameters.
    """
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t n = outer * inner
    cdef Py_ssize_t item = sizeof(floating)
    cdef bint probs = opts["kind"] in ("cross_entropy_probs", "kl_logits")
    cdef bint with_grad = grad.shape[0] == outer and grad.shape[1] == C and grad.shape[2] == inner
    if loss.shape[0] != n or C == 0:
        raise ValueError("internal error: loss buffer size or empty class axis")
    if probs and (t.shape[0] != outer or t.shape[1] != C or t.shape[2] != inner):
        raise ValueError("internal error: probability targets must match the logits")
    if not probs and y.shape[0] != n:
        raise ValueError("internal error: one target per sample expected")
    if class_weight.shape[0] not in (0, C):
        raise ValueError("internal error: class_weight must be empty or have C entries")
    if n == 0:
        return
    cdef sa_loss_opts o = _loss_opts(opts, class_weight)
    cdef Py_ssize_t xs0 = elements(x.strides[0], item), xsc = elements(x.strides[1], item)
    cdef Py_ssize_t xs2 = elements(x.strides[2], item)
    cdef Py_ssize_t ts0 = elements(t.strides[0], item), tsc = elements(t.strides[1], item)
    cdef Py_ssize_t ts2 = elements(t.strides[2], item)
    cdef const floating *px = &x[0, 0, 0]
    cdef const floating *pt = &t[0, 0, 0] if probs else NULL
    cdef const int64_t *py = &y[0] if not probs else NULL
    cdef floating *pg = &grad[0, 0, 0] if with_grad else NULL
    cdef double *pl = &loss[0]
    _samples_run(px, xs0, xsc, xs2, C, inner, py, pt, ts0, tsc, ts2, pg, &o, pl, n, n_threads)


cdef int _samples_run(const floating *px, Py_ssize_t xs0, Py_ssize_t xsc, Py_ssize_t xs2,
                      Py_ssize_t C, Py_ssize_t inner, const int64_t *py, const floating *pt,
                      Py_ssize_t ts0, Py_ssize_t tsc, Py_ssize_t ts2, floating *pg,
                      const sa_loss_opts *o, double *pl, Py_ssize_t n, int n_threads) except -1:
    """The per-sample kernel over n samples (strides in elements, as
    sa_loss_samples takes them), spread over the threads in row items, or
    with each sample split across them when there are fewer samples than
    threads (_samples_split)."""
    cdef work_items w = row_items_by_bytes(n, C, sizeof(floating), n_threads)
    cdef Py_ssize_t k, begin
    cdef sa_interrupt intr
    cdef bint split = (n < n_threads and C >= SPLIT_MIN_LENGTH and pt == NULL
                       and sa_loss_index_softmax_kind(o.kind))
    sa_interrupt_start(&intr)
    with nogil:
        if split and _samples_split(px, xs0, xsc, xs2, C, inner, py, pg, o, pl, n, n_threads, &intr) == 0:
            pass    # every sample done, each split across the threads
        # One thread runs without a parallel region: opening one, even for a
        # team of one, cost 0.9 us (libgomp wakes its pool), three quarters
        # of a 1x10 call's kernel.
        elif w.team == 1:
            for k in range(w.count):
                begin = k * w.size
                if not sa_interrupt_poll(&intr, w.size * C):
                    _loss_samples(px, xs0, xsc, xs2, C, inner, py, pt, ts0, tsc, ts2, pg, o, pl, begin,
                                  min(begin + w.size, n))
        else:
            for k in prange(w.count, num_threads=w.team, schedule='dynamic'):
                begin = k * w.size
                if not sa_interrupt_poll(&intr, w.size * C):
                    _loss_samples(px, xs0, xsc, xs2, C, inner, py, pt, ts0, tsc, ts2, pg, o, pl, begin,
                                  min(begin + w.size, n))
    return sa_interrupt_finish(&intr)


cdef int _samples_split(const floating *px, Py_ssize_t xs0, Py_ssize_t xsc, Py_ssize_t xs2,
                        Py_ssize_t C, Py_ssize_t inner, const int64_t *py, floating *pg,
                        const sa_loss_opts *o, double *pl, Py_ssize_t n, int n_threads,
                        sa_interrupt *intr) noexcept nogil:
    """Fewer long samples than threads (an index-target loss built on
    log-softmax): each sample's classes are cut into one segment per thread,
    whole blocks of SA_ROW_BLOCK; pass 1 runs per segment in parallel, the
    segments' statistics are merged per sample, and the gradient is written
    per segment in parallel (sa_loss_split_*). Returns -1 if scratch could
    not be allocated (the caller then runs unsplit)."""
    cdef Py_ssize_t seg = split_segment(C, n_threads, SA_ROW_BLOCK)
    cdef Py_ssize_t n_seg = (C + seg - 1) // seg
    cdef Py_ssize_t n_tasks = n * n_seg
    cdef Py_ssize_t t, i
    # one allocation: every task's statistics, then every sample's pass-2 terms
    cdef sa_stats *stats = <sa_stats *> malloc(n_tasks * sizeof(sa_stats) + n * sizeof(sa_loss_split_grad))
    if stats == NULL:
        return -1
    cdef sa_loss_split_grad *k = <sa_loss_split_grad *> (stats + n_tasks)
    for t in prange(n_tasks, num_threads=n_threads, schedule='static'):
        if not sa_interrupt_poll(intr, seg):
            if floating is float:
                sa_loss_split_stats_f32(px, xs0, xsc, xs2, C, inner, seg, t, &stats[t])
            else:
                sa_loss_split_stats_f64(px, xs0, xsc, xs2, C, inner, seg, t, &stats[t])
    # an interrupted pass 1 left some statistics unwritten: nothing after it runs
    if not sa_interrupt_poll(intr, 0):
        for i in range(n):
            if floating is float:
                sa_loss_split_finish_f32(px, xs0, xsc, xs2, C, inner, py, o, i, &stats[i * n_seg], n_seg,
                                         &pl[i], &k[i])
            else:
                sa_loss_split_finish_f64(px, xs0, xsc, xs2, C, inner, py, o, i, &stats[i * n_seg], n_seg,
                                         &pl[i], &k[i])
        if pg != NULL:
            for t in prange(n_tasks, num_threads=n_threads, schedule='static'):
                if not sa_interrupt_poll(intr, seg):
                    if floating is float:
                        sa_loss_split_grad_f32(px, xs0, xsc, xs2, C, inner, py, o, seg, t, k, pg)
                    else:
                        sa_loss_split_grad_f64(px, xs0, xsc, xs2, C, inner, py, o, seg, t, k, pg)
    free(stats)
    return 0


cdef inline void _loss_samples(const floating *px, Py_ssize_t xs0, Py_ssize_t xsc, Py_ssize_t xs2,
                               Py_ssize_t C, Py_ssize_t inner, const int64_t *py, const floating *pt,
                               Py_ssize_t ts0, Py_ssize_t tsc, Py_ssize_t ts2, floating *pg,
                               const sa_loss_opts *o, double *pl, Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
    if floating is float:
        sa_loss_samples_f32(px, xs0, xsc, xs2, C, inner, py, pt, ts0, tsc, ts2, pg, o, pl, begin, end)
    else:
        sa_loss_samples_f64(px, xs0, xsc, xs2, C, inner, py, pt, ts0, tsc, ts2, pg, o, pl, begin, end)


cdef void _half_chunk(const uint16_t *x, int kind, Py_ssize_t C, const int64_t *y, uint16_t *g,
                      const sa_loss_opts *o, double *loss, Py_ssize_t begin, Py_ssize_t end,
                      float *scratch) noexcept nogil:
    """Samples [begin, end) of samples_half, widened into scratch (2 (end - begin) C floats)."""
    cdef Py_ssize_t rows = end - begin
    cdef float *z = scratch
    cdef float *gz = scratch + rows * C
    sa_half_widen(x + begin * C, z, rows * C, kind)
    sa_loss_samples_f32(z, C, 1, 1, C, 1, y + begin, NULL, 0, 0, 0, gz if g != NULL else NULL,
                        o, loss + begin, 0, rows)
    if g != NULL:
        sa_half_narrow(gz, g + begin * C, rows * C, kind)


def samples_half(const uint16_t[:, ::1] x, int kind, const int64_t[::1] y, uint16_t[:, ::1] grad,
                 double[::1] loss, const double[::1] class_weight, dict opts, int n_threads):
    """``samples`` for half-precision logits (raw 16-bit patterns; kind: 0
    float16, 1 bfloat16) as (n, C) contiguous rows with class-index targets:
    chunks of rows widened into a float32 scratch per thread, the float32
    kernel run there, the gradient (when grad has x's shape) rounded once
    to the same kind (src/_half.h)."""
    cdef Py_ssize_t n = x.shape[0], C = x.shape[1]
    cdef bint with_grad = grad.shape[0] == n and grad.shape[1] == C
    if loss.shape[0] != n or y.shape[0] != n or C == 0 or class_weight.shape[0] not in (0, C):
        raise ValueError("internal error: samples_half buffers")
    if opts["kind"] in ("cross_entropy_probs", "kl_logits"):
        raise ValueError("internal error: samples_half takes class-index targets only")
    if n == 0:
        return
    cdef sa_loss_opts o = _loss_opts(opts, class_weight)
    cdef Py_ssize_t chunk_rows = max(<Py_ssize_t> 1, SA_HALF_SCRATCH_FLOATS // C)
    cdef Py_ssize_t n_chunks = (n + chunk_rows - 1) // chunk_rows, per = 2 * chunk_rows * C, c
    cdef int team = 1 if n * C < PARALLEL_MIN_ELEMENTS else <int> min(<Py_ssize_t> n_threads, n_chunks)
    cdef float *scratch = <float *> malloc(team * per * sizeof(float))
    if scratch == NULL:
        raise MemoryError()
    cdef const uint16_t *px = &x[0, 0]
    cdef uint16_t *pg = &grad[0, 0] if with_grad else NULL
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    with nogil:
        for c in prange(n_chunks, num_threads=team, schedule='dynamic'):
            if not sa_interrupt_poll(&intr, chunk_rows * C):
                _half_chunk(px, kind, C, &y[0], pg, &o, &loss[0], c * chunk_rows,
                            min((c + 1) * chunk_rows, n), scratch + threadid() * per)
    free(scratch)
    sa_interrupt_finish(&intr)


cdef inline bint _absent_or_shaped(Py_ssize_t r, Py_ssize_t l, Py_ssize_t R, Py_ssize_t L):
    return r == 0 or (r == R and l == L)


def elementwise(const floating[:, ::1] x, const floating[:, ::1] t,
                const floating[:, :] weight, const floating[:, :] pos_weight,
                floating[:, ::1] out, floating[:, ::1] grad, double[::1] row_loss,
                dict opts, int n_threads):
    """Elementwise losses of contiguous (R, L) x and t. weight and pos_weight
    are (R, L) broadcast views or empty (absent); out (elementwise losses)
    and grad are (R, L) or empty (not wanted); row_loss[r] = row r's sum."""
    cdef Py_ssize_t R = x.shape[0], L = x.shape[1]
    cdef Py_ssize_t item = sizeof(floating)
    if t.shape[0] != R or t.shape[1] != L or row_loss.shape[0] != R:
        raise ValueError("internal error: elementwise kernel shapes")
    if not (_absent_or_shaped(weight.shape[0], weight.shape[1], R, L)
            and _absent_or_shaped(pos_weight.shape[0], pos_weight.shape[1], R, L)
            and _absent_or_shaped(out.shape[0], out.shape[1], R, L)
            and _absent_or_shaped(grad.shape[0], grad.shape[1], R, L)):
        raise ValueError("internal error: elementwise optional array shape")
    if R == 0 or L == 0:
        # Rows of no elements sum to 0 (row_loss arrives uninitialized).
        row_loss[:] = 0.0
        return
    _check_option_names(opts, ELEMENTWISE_OPTIONS)
    cdef sa_ew_opts o
    o.kind = ELEMENTWISE_KINDS[opts["kind"]]
    o.alpha = opts.get("alpha", -1.0)
    o.gamma = opts.get("gamma", 0.0)
    o.log_target = opts.get("log_target", False)
    o.grad_scale = opts.get("grad_scale", 1.0)
    cdef const floating *pw = &weight[0, 0] if weight.shape[0] else NULL
    cdef const floating *pp = &pos_weight[0, 0] if pos_weight.shape[0] else NULL
    cdef Py_ssize_t ws0 = elements(weight.strides[0], item) if pw else 0
    cdef Py_ssize_t ws1 = elements(weight.strides[1], item) if pw else 0
    cdef Py_ssize_t ps0 = elements(pos_weight.strides[0], item) if pp else 0
    cdef Py_ssize_t ps1 = elements(pos_weight.strides[1], item) if pp else 0
    cdef floating *po = &out[0, 0] if out.shape[0] else NULL
    cdef floating *pg = &grad[0, 0] if grad.shape[0] else NULL
    cdef const floating *px = &x[0, 0]
    cdef const floating *pt = &t[0, 0]
    cdef double *pl = &row_loss[0]
    cdef work_items w = row_items(R, L, n_threads)
    cdef Py_ssize_t k, begin
    cdef sa_interrupt intr
    sa_interrupt_start(&intr)
    with nogil:
        for k in prange(w.count, num_threads=w.team, schedule='dynamic'):
            begin = k * w.size
            if not sa_interrupt_poll(&intr, w.size * L):
                if floating is float:
                    sa_elementwise_rows_f32(px, pt, L, pw, ws0, ws1, pp, ps0, ps1, &o,
                                            po, pg, pl, begin, min(begin + w.size, R))
                else:
                    sa_elementwise_rows_f64(px, pt, L, pw, ws0, ws1, pp, ps0, ps1, &o,
                                            po, pg, pl, begin, min(begin + w.size, R))
    sa_interrupt_finish(&intr)
