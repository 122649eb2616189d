# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled fused linear cross-entropy: the loss of
``cross_entropy(emb @ cls.T + bias, target)`` and its gradients, without the
N x V logits.

The logits are made tile by tile in the caller's ``tile`` buffer (``rows``
rows of the logits restricted to a vocabulary chunk of ``chunk`` entries) by
BLAS, and consumed there:

* pass 1, per row block: for every vocabulary chunk, the tile's logits are
  folded into each row's running (max, sum of exp) state, an online
  log-sum-exp, and the target's logit is picked up;
* pass 2 (gradients), per row block and chunk: the tile becomes the scaled
  gradient G of the loss with respect to the logits, in place, and BLAS adds
  G @ cls_chunk into d_emb and G.T @ emb_block into d_cls, and the column
  sums of G into d_bias.

When a chunk is the whole vocabulary (the default whenever enough rows fit in
the tile), pass 1 leaves exp(z - max) in the tile and pass 2 starts from it:
the backward then costs no recomputed product and no second exp. A narrow
vocabulary (V <= SA_LCE_NARROW_V, with whole rows) gets a class-major tile,
entry (i, j) at j * rows + i, made and read in place by BLAS (the column-major
product emb_block @ cls.T is that tile): the row loops then run one row per
SIMD lane down each class (src/_linear_cross_entropy_impl.h, the *_cm
kernels), and each block's products and loops run on one thread (such
problems share their rows out by row teams; see below).

BLAS is column-major: a row-major (m x k) matrix with row stride ld is the
column-major (k x m) matrix of its transpose with leading dimension ld, so
the row-major product C = A @ B.T is computed as the column-major
C.T = B @ A.T, i.e. gemm('T', 'N', B, A).

Threads: the caller limits BLAS to one thread and picks one of two ways to
share the work.

* Row teams (``teams`` > 1; the caller's choice when the vocabulary is small
  enough that a copy of d_cls per thread is cheap): each of ``teams`` threads
  takes a contiguous run of row blocks with its own tile and its own d_cls
  and d_bias (the first team writes the outputs, the others the ``partials``
  scratch), summed at the end. Nothing is synchronized per tile, and a small
  vocabulary (V = 20, say) is not cut into uneven shares of 16 entries.
* Otherwise every product is split over ``n_threads`` OpenMP threads into
  disjoint blocks of its output (the logits and d_cls by vocabulary entries,
  d_emb by features). A tile's
products are too small in M x N and too long in K for a threaded BLAS,
which synchronizes its threads once per block of K: with two threads on a
busy two-core machine that made the backward 3x slower than one thread.
In the second way each output element is still summed over its whole K by
the same BLAS calls whatever the thread count (one call, or for d_emb one per
piece of the chunk; see PIECE_MACS) (in the first, d_cls and d_bias add up
``teams`` partial sums), so thread counts change results by rounding only
(BLAS may pick another kernel for a smaller share: float64 results measured
bit-identical, float32 ones differing at the rounding level). The row loops
split the rows.

Interrupts (src/_interrupt.h): every thread polls between the pieces of its
products (at most PIECE_MACS multiply-adds each) and between the passes over
a tile, so Ctrl-C stops a call within milliseconds.

Callers (``softarray/_linear_cross_entropy.py``) have validated everything,
laid the operands out for BLAS (unit inner stride, row stride >= max(1, D)),
mapped ignored targets to -1, and allocated every output and scratch array.
``d_emb`` may be None when only the classifier's gradients are wanted
(SoftmaxClassifier's fit), and ``row_scale`` may weight each sample's
gradient (sample weights).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport NAN
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm
from _parallel cimport PARALLEL_MIN_ELEMENTS
from _interrupt cimport (sa_interrupt, sa_interrupt_start, sa_interrupt_poll, sa_interrupt_finish,
                        SA_INTERRUPT_WORK)

cdef extern from "_linear_cross_entropy_kernels.h" nogil:
    ctypedef struct sa_lce_row:
        double max
        double sum
        double target
        double total
    void sa_lce_row_init(sa_lce_row *st)
    double sa_lce_lse(const sa_lce_row *st)
    void sa_lce_update_f32(float *z, const float *bias, Py_ssize_t n, Py_ssize_t t,
                           int want_total, int store_exp, sa_lce_row *st)
    void sa_lce_update_f64(double *z, const double *bias, Py_ssize_t n, Py_ssize_t t,
                           int want_total, int store_exp, sa_lce_row *st)
    void sa_lce_grad_f32(float *z, const float *bias, Py_ssize_t n, Py_ssize_t t,
                         float lse, float scale, float off, float hit)
    void sa_lce_grad_f64(double *z, const double *bias, Py_ssize_t n, Py_ssize_t t,
                         double lse, double scale, double off, double hit)
    void sa_lce_grad_from_exp_f32(float *e, Py_ssize_t n, Py_ssize_t t,
                                  float factor, float off, float hit)
    void sa_lce_grad_from_exp_f64(double *e, Py_ssize_t n, Py_ssize_t t,
                                  double factor, double off, double hit)
    void sa_lce_colsum_f32(const float *g, Py_ssize_t ld, Py_ssize_t nr, Py_ssize_t n,
                           float *out, int accumulate)
    void sa_lce_colsum_f64(const double *g, Py_ssize_t ld, Py_ssize_t nr, Py_ssize_t n,
                           double *out, int accumulate)
    void sa_lce_update_cm_f32(float *z, Py_ssize_t ld, Py_ssize_t nr, Py_ssize_t v,
                              const float *bias, const Py_ssize_t *t, int want_total,
                              sa_lce_row *st)
    void sa_lce_update_cm_f64(double *z, Py_ssize_t ld, Py_ssize_t nr, Py_ssize_t v,
                              const double *bias, const Py_ssize_t *t, int want_total,
                              sa_lce_row *st)
    void sa_lce_grad_cm_f32(float *e, Py_ssize_t ld, Py_ssize_t nr, Py_ssize_t v,
                            const Py_ssize_t *t, const float *factor, const float *off,
                            const float *hit)
    void sa_lce_grad_cm_f64(double *e, Py_ssize_t ld, Py_ssize_t nr, Py_ssize_t v,
                            const Py_ssize_t *t, const double *factor, const double *off,
                            const double *hit)
    void sa_lce_rowsum_cm_f32(const float *g, Py_ssize_t ld, Py_ssize_t nr, Py_ssize_t v,
                              float *out, int accumulate)
    void sa_lce_rowsum_cm_f64(const double *g, Py_ssize_t ld, Py_ssize_t nr, Py_ssize_t v,
                              double *out, int accumulate)
    enum:
        SA_LCE_COLS
        SA_LCE_NARROW_V
        SA_LCE_STRIP

# Row state doubles per sample: the Python layer allocates the state as an
# (N, STATE_FIELDS) float64 array, viewed here as sa_lce_row structs.
STATE_FIELDS = sizeof(sa_lce_row) // sizeof(double)

# Below PARALLEL_MIN_ELEMENTS tile entries (row loops) or this many
# multiply-adds (products) one thread is faster than waking a team.
cdef Py_ssize_t PARALLEL_MIN_FLOPS = 1 << 20
# Threads' shares of a product's output: multiples of 16 entries (a 64-byte
# cache line of floats), so neighbouring shares do not share cache lines.
cdef Py_ssize_t SHARE_ALIGN = 16
# A thread's share of a product is made in pieces, polling for an interrupt
# before each: about PIECE_MACS multiply-adds (~25 ms of float32 on one core,
# twice that in float64), sized from D and the tile's rows, not from the
# thread's share, so that results do not depend on the thread count. The
# logits and d_cls are cut along the vocabulary (each element's sum stays
# whole: bits unchanged), but each piece packs the tile's embedding rows
# (rows x D) again: with 1024-row forward tiles, D = 1024, float32, pieces of
# 1024 columns made the forward 6% slower, of 2048 about 3% (of 4096 within
# the noise), hence PIECE_MIN_COLUMNS; such a piece takes ~50 ms, longer as D
# grows. d_emb is cut along its sum over the chunk, in multiples of
# PIECE_ALIGN terms: nothing is packed twice, and float32 d_emb moves by
# rounding (~1e-6 relative) against one call per chunk.
cdef Py_ssize_t PIECE_MACS = 1 << 30
cdef Py_ssize_t PIECE_MIN_COLUMNS = 2048
cdef Py_ssize_t PIECE_ALIGN = 256

cdef char *NO_TRANS = b"N"
cdef char *TRANS = b"T"


cdef struct Plan:
    Py_ssize_t n, d, v                  # samples, features, vocabulary
    Py_ssize_t rows, chunk              # the tile: rows per block, vocabulary entries per chunk
    Py_ssize_t ld_emb, ld_cls, ld_tile  # row strides in elements
    Py_ssize_t ld_d_emb, ld_d_cls
    double smoothing                    # label smoothing eps
    double grad_scale                   # 1 / (non-ignored samples) for "mean", else 1
    const double *row_scale             # per-sample gradient factors, or NULL (all 1)
    int n_threads
    bint want_grad
    bint keep_exp                       # one chunk per row: pass 1 leaves exp(z - max) for pass 2
    bint class_major                    # narrow vocabulary: tile entry (i, j) at j * ld_tile + i
    sa_interrupt *stop                  # polled between pieces of work


# ---------------------------------------------------------------- BLAS

cdef void _gemm(char *ta, char *tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                const floating *a, Py_ssize_t lda, const floating *b, Py_ssize_t ldb,
                floating beta, floating *c, Py_ssize_t ldc) noexcept nogil:
    """Column-major C = op(A) op(B) + beta C; beta = 0 overwrites C unread."""
    cdef int im = m, in_ = n, ik = k, ia = lda, ib = ldb, ic = ldc
    cdef floating one = 1
    if floating is float:
        sgemm(ta, tb, &im, &in_, &ik, &one, <float *> a, &ia, <float *> b, &ib, &beta, c, &ic)
    else:
        dgemm(ta, tb, &im, &in_, &ik, &one, <double *> a, &ia, <double *> b, &ib, &beta, c, &ic)


cdef inline Py_ssize_t _share(Py_ssize_t n, Py_ssize_t t, Py_ssize_t n_parts) noexcept nogil:
    """Start of part t of [0, n) cut into n_parts in multiples of SHARE_ALIGN
    (part t is [_share(n, t, k), _share(n, t + 1, k)), maybe empty)."""
    cdef Py_ssize_t units = (n + SHARE_ALIGN - 1) // SHARE_ALIGN
    return min(n, units * t // n_parts * SHARE_ALIGN)


cdef inline int _blas_team(const Plan *p, Py_ssize_t nr, Py_ssize_t cw) noexcept nogil:
    return 1 if nr * cw * p.d < PARALLEL_MIN_FLOPS else p.n_threads


cdef inline bint _interrupted(const Plan *p) noexcept nogil:
    """Poll after a product or a pass over the tile (each worth a look at the
    clock): True when the call is to stop."""
    return sa_interrupt_poll(p.stop, SA_INTERRUPT_WORK)


cdef inline Py_ssize_t _piece(Py_ssize_t macs_per_unit, Py_ssize_t minimum,
                              Py_ssize_t align) noexcept nogil:
    """Units (columns, or terms of a sum) per piece of a product: about
    PIECE_MACS multiply-adds, a multiple of align, at least minimum (itself
    a multiple of align)."""
    macs_per_unit = max(macs_per_unit, 1)
    return max(minimum, PIECE_MACS // macs_per_unit // align * align)


cdef void _logits(const Plan *p, Py_ssize_t r0, Py_ssize_t nr, Py_ssize_t c0, Py_ssize_t cw,
                  const floating *emb, const floating *cls, floating *tile) noexcept nogil:
    """tile[:nr, :cw] = emb[r0:r0+nr] @ cls[c0:c0+cw].T (no bias), the
    tile's columns shared out over the threads; a class-major tile in one
    call (column-major C = A.T B is the tile itself)."""
    cdef Py_ssize_t t, j, j1, step
    cdef int team = _blas_team(p, nr, cw)
    cdef Py_ssize_t piece = _piece(nr * p.d, PIECE_MIN_COLUMNS, SHARE_ALIGN)
    if p.class_major:
        if not _interrupted(p):
            _gemm(TRANS, NO_TRANS, nr, cw, p.d, emb + r0 * p.ld_emb, p.ld_emb,
                  cls + c0 * p.ld_cls, p.ld_cls, 0, tile, p.ld_tile)
        return
    for t in prange(team, num_threads=team, schedule='static', chunksize=1):
        j = _share(cw, t, team)
        j1 = _share(cw, t + 1, team)
        while j < j1 and not _interrupted(p):
            step = min(piece, j1 - j)
            _gemm(TRANS, NO_TRANS, step, nr, p.d, cls + (c0 + j) * p.ld_cls, p.ld_cls,
                  emb + r0 * p.ld_emb, p.ld_emb, 0, tile + j, p.ld_tile)
            j = j + step  # (not +=: that would make j a reduction of the prange)


cdef void _backprop(const Plan *p, Py_ssize_t r0, Py_ssize_t nr, Py_ssize_t c0, Py_ssize_t cw,
                    bint first_block, const floating *emb, const floating *cls,
                    const floating *tile, floating *d_emb, floating *d_cls,
                    floating *d_bias) noexcept nogil:
    """With G = tile[:nr, :cw]: d_emb[r0:r0+nr] += G @ cls[c0:c0+cw] (each
    thread its share of the features; skipped when d_emb is NULL),
    d_cls[c0:c0+cw] += G.T @ emb[r0:r0+nr] (each thread its share of the
    vocabulary chunk), and d_bias[c0:c0+cw] += column sums of G. The first
    contribution to each output (first chunk for d_emb, ``first_block`` of
    rows for d_cls and d_bias) overwrites it (beta = 0), so the outputs need
    no zeroing."""
    cdef Py_ssize_t t, k0, k1, j, j1, step
    cdef int team = _blas_team(p, nr, cw)
    cdef Py_ssize_t terms = _piece(p.d * nr, PIECE_ALIGN, PIECE_ALIGN)
    cdef Py_ssize_t columns = _piece(p.d * nr, PIECE_MIN_COLUMNS, SHARE_ALIGN)
    if p.class_major:
        _backprop_class_major(p, r0, nr, cw, first_block, emb, cls, tile, d_emb, d_cls, d_bias)
        return
    for t in prange(team, num_threads=team, schedule='static', chunksize=1):
        k0 = _share(p.d, t, team)
        k1 = _share(p.d, t + 1, team)
        if k1 > k0 and d_emb != NULL:
            # the sum over the chunk's columns j, piece by piece into d_emb
            j = 0
            while j < cw and not _interrupted(p):
                step = min(terms, cw - j)
                _gemm(NO_TRANS, NO_TRANS, k1 - k0, nr, step, cls + (c0 + j) * p.ld_cls + k0,
                      p.ld_cls, tile + j, p.ld_tile, 0 if c0 + j == 0 else 1,
                      d_emb + r0 * p.ld_d_emb + k0, p.ld_d_emb)
                j = j + step
        j = _share(cw, t, team)
        j1 = _share(cw, t + 1, team)
        while j < j1 and p.d > 0 and not _interrupted(p):
            step = min(columns, j1 - j)
            _gemm(NO_TRANS, TRANS, p.d, step, nr, emb + r0 * p.ld_emb, p.ld_emb, tile + j,
                  p.ld_tile, 0 if first_block else 1, d_cls + (c0 + j) * p.ld_d_cls, p.ld_d_cls)
            j = j + step
    if d_bias != NULL and not _interrupted(p):
        _column_sums(p, nr, cw, tile, not first_block, d_bias + c0)


cdef void _backprop_class_major(const Plan *p, Py_ssize_t r0, Py_ssize_t nr, Py_ssize_t v,
                                bint first_block, const floating *emb, const floating *cls,
                                const floating *tile, floating *d_emb, floating *d_cls,
                                floating *d_bias) noexcept nogil:
    """_backprop for a class-major tile (the whole vocabulary), on one
    thread: G (column-major nr x V) is read in place by both products."""
    if _interrupted(p):
        return
    if d_emb != NULL:
        _gemm(NO_TRANS, TRANS, p.d, nr, v, cls, p.ld_cls, tile, p.ld_tile, 0,
              d_emb + r0 * p.ld_d_emb, p.ld_d_emb)
    if p.d > 0:
        _gemm(NO_TRANS, NO_TRANS, p.d, v, nr, emb + r0 * p.ld_emb, p.ld_emb, tile, p.ld_tile,
              0 if first_block else 1, d_cls, p.ld_d_cls)
    if d_bias != NULL:
        if floating is float:
            sa_lce_rowsum_cm_f32(tile, p.ld_tile, nr, v, d_bias, not first_block)
        else:
            sa_lce_rowsum_cm_f64(tile, p.ld_tile, nr, v, d_bias, not first_block)


# ----------------------------------------------------------- row loops

cdef inline int _team(const Plan *p, Py_ssize_t nr, Py_ssize_t cw) noexcept nogil:
    return 1 if nr * cw < PARALLEL_MIN_ELEMENTS else p.n_threads


cdef inline void _colsum(const floating *g, Py_ssize_t ld, Py_ssize_t nr, Py_ssize_t n,
                         floating *out, int accumulate) noexcept nogil:
    if floating is float:
        sa_lce_colsum_f32(g, ld, nr, n, out, accumulate)
    else:
        sa_lce_colsum_f64(g, ld, nr, n, out, accumulate)


cdef void _column_sums(const Plan *p, Py_ssize_t nr, Py_ssize_t cw, const floating *tile,
                       int accumulate, floating *out) noexcept nogil:
    """out[:cw] (+)= tile[:nr, :cw].sum(axis=0), column blocks over the threads."""
    cdef Py_ssize_t k, j0
    for k in prange((cw + SA_LCE_COLS - 1) // SA_LCE_COLS, num_threads=_team(p, nr, cw),
                    schedule='static'):
        j0 = k * SA_LCE_COLS
        _colsum(tile + j0, p.ld_tile, nr, min(<Py_ssize_t> SA_LCE_COLS, cw - j0), out + j0,
                accumulate)


cdef inline Py_ssize_t _column(Py_ssize_t y, Py_ssize_t c0, Py_ssize_t cw) noexcept nogil:
    """The target's column within the chunk [c0, c0 + cw), or -1 (also for
    ignored rows, whose target is -1)."""
    return y - c0 if c0 <= y < c0 + cw else -1


cdef inline void _update_row(floating *z, const floating *bias, Py_ssize_t n, Py_ssize_t t,
                             int want_total, int store_exp, sa_lce_row *st) noexcept nogil:
    if floating is float:
        sa_lce_update_f32(z, bias, n, t, want_total, store_exp, st)
    else:
        sa_lce_update_f64(z, bias, n, t, want_total, store_exp, st)


cdef void _update(const Plan *p, Py_ssize_t r0, Py_ssize_t nr, Py_ssize_t c0, Py_ssize_t cw,
                  const floating *bias, const Py_ssize_t *target, floating *tile,
                  sa_lce_row *state) noexcept nogil:
    """Pass 1 over the tile's rows: bias in, online log-sum-exp state updated."""
    cdef Py_ssize_t i
    cdef const floating *bias_c = NULL
    if bias != NULL:
        bias_c = bias + c0
    if p.class_major:
        if floating is float:
            sa_lce_update_cm_f32(tile, p.ld_tile, nr, cw, bias_c, target + r0, p.smoothing != 0,
                                 &state[r0])
        else:
            sa_lce_update_cm_f64(tile, p.ld_tile, nr, cw, bias_c, target + r0, p.smoothing != 0,
                                 &state[r0])
        return
    for i in prange(nr, num_threads=_team(p, nr, cw), schedule='static'):
        _update_row(tile + i * p.ld_tile, bias_c, cw, _column(target[r0 + i], c0, cw),
                    p.smoothing != 0, p.keep_exp, &state[r0 + i])


cdef void _finish(const Plan *p, Py_ssize_t r0, Py_ssize_t nr, const Py_ssize_t *target,
                  const sa_lce_row *state, double *row_loss) noexcept nogil:
    """Per-sample loss (1 - eps) (lse - z_y) + eps (lse - mean z); 0 if ignored."""
    cdef Py_ssize_t i
    cdef double lse, eps = p.smoothing
    for i in range(r0, r0 + nr):
        lse = sa_lce_lse(&state[i])
        if target[i] < 0:
            row_loss[i] = 0.0
        elif eps == 0:      # not folded into the formula: 0 * inf would be NaN
            row_loss[i] = lse - state[i].target
        else:
            row_loss[i] = (1 - eps) * (lse - state[i].target) + eps * (lse - state[i].total / p.v)


cdef struct GradFactors:
    double scale        # d loss / d (sample i's loss): grad_scale * row_scale[i]
    double off          # scale * eps / V, label smoothing's uniform part
    double hit          # scale * (1 - eps), taken off at the target's column


cdef inline GradFactors _grad_factors(const Plan *p, Py_ssize_t i) noexcept nogil:
    """Sample i's factors of G = scale (softmax - (1 - eps) onehot - eps / V)."""
    cdef GradFactors f
    f.scale = p.grad_scale if p.row_scale == NULL else p.grad_scale * p.row_scale[i]
    f.off = f.scale * p.smoothing / p.v
    f.hit = f.scale * (1 - p.smoothing)
    return f


cdef inline void _grad_row(const Plan *p, floating *g, const floating *bias, Py_ssize_t n,
                           Py_ssize_t y, Py_ssize_t c0, GradFactors f,
                           const sa_lce_row *st) noexcept nogil:
    """One row of one chunk of G (see _grad_factors), in place; 0 for ignored
    rows, NaN for rows whose lse is NaN (as torch's softmax gives there)."""
    cdef Py_ssize_t j, t = _column(y, c0, n)
    cdef double lse = sa_lce_lse(st)
    cdef floating scale = <floating> f.scale
    cdef floating off = <floating> f.off
    cdef floating hit = <floating> f.hit
    if y < 0:
        memset(g, 0, n * sizeof(floating))
    elif lse != lse:
        for j in range(n):
            g[j] = NAN
    elif p.keep_exp:
        if floating is float:
            sa_lce_grad_from_exp_f32(g, n, t, <float> (f.scale / st.sum), off, hit)
        else:
            sa_lce_grad_from_exp_f64(g, n, t, f.scale / st.sum, off, hit)
    elif floating is float:
        sa_lce_grad_f32(g, bias, n, t, <float> lse, scale, off, hit)
    else:
        sa_lce_grad_f64(g, bias, n, t, lse, scale, off, hit)


cdef void _grad(const Plan *p, Py_ssize_t r0, Py_ssize_t nr, Py_ssize_t c0, Py_ssize_t cw,
                const floating *bias, const Py_ssize_t *target, floating *tile,
                const sa_lce_row *state) noexcept nogil:
    """Pass 2 over the tile's rows: logits (or exp(z - max)) become G in place."""
    cdef Py_ssize_t i
    cdef const floating *bias_c = NULL
    if p.class_major:
        _grad_class_major(p, r0, nr, cw, target, tile, state)
        return
    if bias != NULL and not p.keep_exp:     # kept exp values already include the bias
        bias_c = bias + c0
    for i in prange(nr, num_threads=_team(p, nr, cw), schedule='static'):
        _grad_row(p, tile + i * p.ld_tile, bias_c, cw, target[r0 + i], c0,
                  _grad_factors(p, r0 + i), &state[r0 + i])


cdef void _grad_class_major(const Plan *p, Py_ssize_t r0, Py_ssize_t nr, Py_ssize_t v,
                            const Py_ssize_t *target, floating *tile,
                            const sa_lce_row *state) noexcept nogil:
    """_grad for a class-major tile of exp(z - max), strip by strip: each
    row's factors as _grad_row computes them, then one pass down the classes."""
    cdef floating factor[SA_LCE_STRIP]
    cdef floating off[SA_LCE_STRIP]
    cdef floating hit[SA_LCE_STRIP]
    cdef Py_ssize_t i, i0, k, n_strip, strip = SA_LCE_STRIP
    cdef double row_max
    cdef GradFactors f
    for k in range((nr + strip - 1) // strip):
        i0 = k * strip
        n_strip = min(strip, nr - i0)
        for i in range(n_strip):
            f = _grad_factors(p, r0 + i0 + i)
            row_max = state[r0 + i0 + i].max
            # a maximum that is not finite makes the lse NaN (sa_lce_lse)
            factor[i] = (<floating> (f.scale / state[r0 + i0 + i].sum)
                         if row_max - row_max == 0 else NAN)
            off[i] = <floating> f.off
            hit[i] = <floating> f.hit
        if floating is float:
            sa_lce_grad_cm_f32(tile + i0, p.ld_tile, n_strip, v, target + r0 + i0, factor, off,
                               hit)
        else:
            sa_lce_grad_cm_f64(tile + i0, p.ld_tile, n_strip, v, target + r0 + i0, factor, off,
                               hit)


# ------------------------------------------------------------- driver

cdef void _forward_block(const Plan *p, Py_ssize_t r0, Py_ssize_t nr, const floating *emb,
                         const floating *cls, const floating *bias, const Py_ssize_t *target,
                         floating *tile, sa_lce_row *state) noexcept nogil:
    cdef Py_ssize_t i, k, c0, cw
    for i in range(r0, r0 + nr):
        sa_lce_row_init(&state[i])
    for k in range((p.v + p.chunk - 1) // p.chunk):
        c0 = k * p.chunk
        cw = min(p.chunk, p.v - c0)
        _logits(p, r0, nr, c0, cw, emb, cls, tile)
        if _interrupted(p):
            return
        _update(p, r0, nr, c0, cw, bias, target, tile, state)


cdef void _backward_block(const Plan *p, Py_ssize_t r0, Py_ssize_t nr, bint first_block,
                          const floating *emb, const floating *cls, const floating *bias,
                          const Py_ssize_t *target, floating *tile, const sa_lce_row *state,
                          floating *d_emb, floating *d_cls, floating *d_bias) noexcept nogil:
    cdef Py_ssize_t k, c0, cw
    for k in range((p.v + p.chunk - 1) // p.chunk):
        c0 = k * p.chunk
        cw = min(p.chunk, p.v - c0)
        if not p.keep_exp:      # the tile holds another chunk's values: recompute
            _logits(p, r0, nr, c0, cw, emb, cls, tile)
        if _interrupted(p):
            return
        _grad(p, r0, nr, c0, cw, bias, target, tile, state)
        _backprop(p, r0, nr, c0, cw, first_block, emb, cls, tile, d_emb, d_cls, d_bias)


cdef void _run_blocks(const Plan *p, Py_ssize_t b0, Py_ssize_t b1, const floating *emb,
                      const floating *cls, const floating *bias, const Py_ssize_t *target,
                      floating *tile, sa_lce_row *state, double *row_loss, floating *d_emb,
                      floating *d_cls, floating *d_bias) noexcept nogil:
    """Row blocks [b0, b1): losses, and their whole contribution to the
    gradients (d_cls and d_bias overwritten by block b0's)."""
    cdef Py_ssize_t b, r0, nr
    for b in range(b0, b1):
        if _interrupted(p):
            return
        r0 = b * p.rows
        nr = min(p.rows, p.n - r0)
        _forward_block(p, r0, nr, emb, cls, bias, target, tile, state)
        _finish(p, r0, nr, target, state, row_loss)
        if p.want_grad:
            _backward_block(p, r0, nr, b == b0, emb, cls, bias, target, tile, state, d_emb,
                            d_cls, d_bias)


cdef inline Py_ssize_t _team_start(Py_ssize_t n_blocks, Py_ssize_t t, int teams) noexcept nogil:
    """First row block of team t (team t takes [_team_start(t), _team_start(t + 1)))."""
    return n_blocks * t // teams


cdef void _add_partials(Py_ssize_t size, int teams, const floating *partials, floating *out,
                        Py_ssize_t part_stride) noexcept nogil:
    """out[:size] += the teams - 1 partial sums (part t - 1 at t - 1 strides)."""
    cdef Py_ssize_t t, i
    for t in range(teams - 1):
        for i in range(size):
            out[i] += partials[t * part_stride + i]


cdef void _run_teams(const Plan *p, int teams, const floating *emb, const floating *cls,
                     const floating *bias, const Py_ssize_t *target, floating *tile,
                     sa_lce_row *state, double *row_loss, floating *d_emb, floating *d_cls,
                     floating *d_bias, floating *partials) noexcept nogil:
    """Each team a contiguous run of row blocks on one thread, with its own
    rows of the tile and (teams after the first) its own part of
    ``partials``: d_cls (V x D) then d_bias (V); then the parts are added
    into the outputs."""
    cdef Plan one = p[0]
    one.n_threads = 1       # each team's products and row loops run on its own thread
    cdef Py_ssize_t t, n_blocks = (p.n + p.rows - 1) // p.rows
    cdef Py_ssize_t part = p.v * p.d + p.v
    cdef floating *my_d_cls
    cdef floating *my_d_bias
    for t in prange(teams, num_threads=teams, schedule='static', chunksize=1):
        my_d_cls = d_cls
        my_d_bias = d_bias
        if t > 0 and p.want_grad:
            my_d_cls = partials + (t - 1) * part
            my_d_bias = NULL if d_bias == NULL else my_d_cls + p.v * p.d
        _run_blocks(&one, _team_start(n_blocks, t, teams), _team_start(n_blocks, t + 1, teams),
                    emb, cls, bias, target, tile + t * p.rows * p.chunk, state, row_loss,
                    d_emb, my_d_cls, my_d_bias)
    if p.want_grad and not _interrupted(p):
        _add_partials(p.v * p.d, teams, partials, d_cls, part)
        if d_bias != NULL:
            _add_partials(p.v, teams, partials + p.v * p.d, d_bias, part)


# ------------------------------------------------------- Python entry

cdef inline Py_ssize_t _ld(Py_ssize_t stride_bytes, Py_ssize_t itemsize, Py_ssize_t cols) except? -1:
    """Row stride in elements, checked to be a valid BLAS leading dimension.
    With no columns (D = 0) BLAS reads nothing, but still wants ld >= 1."""
    if cols == 0:
        return 1
    if stride_bytes % itemsize or stride_bytes // itemsize < cols:
        raise ValueError("internal error: operand not laid out for BLAS")
    return stride_bytes // itemsize


cdef inline floating *_out2(floating[:, ::1] a) noexcept:
    """An output's data, or NULL for None. (A zero-size array has data too:
    a valid pointer that is never read through.)"""
    return NULL if a is None else &a[0, 0]


def linear_cross_entropy(const floating[:, :] emb, const floating[:, :] cls, const floating[::1] bias,
                         const Py_ssize_t[::1] target, double smoothing, double grad_scale,
                         const double[::1] row_scale, floating[:, ::1] tile,
                         double[:, ::1] state, double[::1] row_loss, floating[:, ::1] d_emb,
                         floating[:, ::1] d_cls, floating[::1] d_bias, floating[::1] partials,
                         int teams, int n_threads):
    """Per-sample losses into ``row_loss`` and, when ``d_cls`` is not None,
    the gradients of ``grad_scale * sum(row_scale * row_loss)`` into
    ``d_emb`` (if not None), ``d_cls`` and ``d_bias`` (if not None).

    ``bias`` and ``row_scale`` (all 1) may be None; ``target`` holds -1 for
    ignored samples; ``tile`` is (teams * rows, chunk) scratch; ``state`` is
    (N, STATE_FIELDS) scratch. With ``teams`` > 1 (row teams, see the module
    docstring) and gradients, ``partials`` is ((teams - 1) * (V * D + V),)
    scratch; ``n_threads`` is then ignored.
    """
    cdef Plan p
    p.n, p.d, p.v = emb.shape[0], emb.shape[1], cls.shape[0]
    p.rows, p.chunk = tile.shape[0] // max(teams, 1), tile.shape[1]
    p.want_grad = d_cls is not None
    if (emb.strides[1] != sizeof(floating) or cls.strides[1] != sizeof(floating)
            or cls.shape[1] != p.d or target.shape[0] != p.n or row_loss.shape[0] != p.n
            or state.shape[0] != p.n or state.shape[1] != STATE_FIELDS or p.v == 0
            or (row_scale is not None and row_scale.shape[0] != p.n)
            or teams < 1 or tile.shape[0] != teams * p.rows
            or (teams > 1 and p.want_grad
                and (partials is None or partials.shape[0] != (teams - 1) * (p.v * p.d + p.v)))):
        raise ValueError("internal error: linear_cross_entropy called with bad shapes")
    if p.n == 0:
        return
    if p.rows == 0 or p.chunk == 0:
        raise ValueError("internal error: empty tile")
    if teams > (p.n + p.rows - 1) // p.rows:
        raise ValueError("internal error: more row teams than row blocks")
    p.ld_emb = _ld(emb.strides[0], sizeof(floating), p.d)
    p.ld_cls = _ld(cls.strides[0], sizeof(floating), p.d)
    p.ld_d_emb = p.ld_d_cls = max(p.d, <Py_ssize_t> 1)
    p.smoothing, p.grad_scale, p.n_threads = smoothing, grad_scale, n_threads
    p.row_scale = &row_scale[0] if row_scale is not None else NULL
    p.keep_exp = p.want_grad and p.chunk >= p.v
    p.class_major = p.keep_exp and p.v <= SA_LCE_NARROW_V
    p.ld_tile = p.rows if p.class_major else p.chunk
    cdef const floating *pe = &emb[0, 0]
    cdef const floating *pc = &cls[0, 0]
    cdef const floating *pb = NULL
    cdef floating *pde = _out2(d_emb)
    cdef floating *pdc = _out2(d_cls)
    cdef floating *pdb = NULL
    cdef floating *pparts = NULL
    if bias is not None:
        pb = &bias[0]
    if d_bias is not None:
        pdb = &d_bias[0]
    if partials is not None and partials.shape[0] > 0:
        pparts = &partials[0]
    cdef sa_interrupt intr
    p.stop = &intr
    sa_interrupt_start(&intr)
    with nogil:
        if teams == 1:
            _run_blocks(&p, 0, (p.n + p.rows - 1) // p.rows, pe, pc, pb, &target[0], &tile[0, 0],
                        <sa_lce_row *> &state[0, 0], &row_loss[0], pde, pdc, pdb)
        else:
            _run_teams(&p, teams, pe, pc, pb, &target[0], &tile[0, 0],
                       <sa_lce_row *> &state[0, 0], &row_loss[0], pde, pdc, pdb, pparts)
    sa_interrupt_finish(&intr)
