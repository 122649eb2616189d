/*
 * Softmax-family kernels: softmax, log_softmax, stablemax, log_stablemax and
 * logsumexp over one axis, for float and double.
 *
 * Every op is two passes over the input ("The Two-Pass Softmax Algorithm",
 * Dukhan & Ablavatski): pass 1 reads the slice once and keeps the running
 * maximum M together with the sum already rescaled to it; pass 2 reads the
 * slice again and writes the output. Within pass 1 the slice is walked in
 * L1-sized blocks: the block maximum first, then the block's exponentials
 * against the (possibly raised) running maximum, so memory is read once.
 *
 * The sum is kept as (rest, count): count = how many entries equal M, rest =
 * the sum over the others. log(sum) - M = log1p(rest + count - 1) is then
 * accurate even when one entry dominates (SciPy's log_softmax loses it).
 *
 * The Python layer validates everything and allocates outputs: nothing here
 * fails or allocates. The Cython module (_softmax.pyx) splits the work
 * across OpenMP threads and calls these per chunk of rows or columns.
 */
#ifndef SOFTARRAY_SOFTMAX_KERNELS_H
#define SOFTARRAY_SOFTMAX_KERNELS_H

#include <stddef.h>
#include <stdlib.h>
#include <math.h>
#include "_simd.h"
#include "_softmax_sizes.h"
#include "_half.h"
#include "_softmax_ops.h"


/* Pass-1 state of one slice (or of one segment of a slice split across threads). */
typedef struct {
    double max;     /* running maximum of the (scaled) entries, NaN ignored */
    double rest;    /* exp kind: sum of exp(y - max) over y < max; stable kind: sum of s(y) over y < max */
    double count;   /* number of entries equal to max */
    int nan;        /* a NaN was seen: the whole slice's result is NaN */
} sa_stats;

/* What pass 2 needs for one slice; the meaning of a, b, c depends on the op. */
typedef struct {
    double a, b, c;
} sa_params;

SA_INLINE int sa_op_is_stable(int op) { return op == SA_STABLEMAX || op == SA_LOG_STABLEMAX; }

SA_INLINE void sa_stats_init(sa_stats *st)
{
    st->max = -INFINITY;
    st->rest = 0.0;
    st->count = 0.0;
    st->nan = 0;
}

/* Raise the running maximum to m (if larger), moving the entries that were
 * equal to the old maximum into rest and rescaling rest to the new maximum. */
SA_INLINE void sa_stats_raise_max(int stable, sa_stats *st, double m)
{
    if (!(m > st->max))
        return;
    if (st->count != 0.0) {     /* nothing to move or rescale on a row's first block */
        if (stable)
            st->rest += st->count * sa_stable_s(st->max);
        else
            st->rest = (st->rest + st->count) * exp(st->max - m);
    }
    st->count = 0.0;
    st->max = m;
}

/* Combine the pass-1 states of two segments of one slice into a. */
SA_INLINE void sa_stats_merge(int stable, sa_stats *a, const sa_stats *b)
{
    a->nan |= b->nan;
    sa_stats_raise_max(stable, a, b->max);
    if (b->max == a->max) {
        a->rest += b->rest;
        a->count += b->count;
    } else if (stable) {
        a->rest += b->rest + b->count * sa_stable_s(b->max);
    } else {
        a->rest += (b->rest + b->count) * exp(b->max - a->max);
    }
}

/* Pass-1 state of softmax's cached rows (sa_softmax_cached_pass1): the
 * running maximum, the sum of exp(y - max) over every entry, and NaN seen. */
typedef struct {
    double max, sum;
    int nan;
} sa_cached_state;

/* The factor of pass 2: 1 / sum, NaN when a NaN was seen or the maximum is
 * not finite (as scipy.special). */
SA_INLINE double sa_cached_inverse(const sa_cached_state *st)
{
    return (st->nan || !isfinite(st->max)) ? NAN : 1.0 / st->sum;
}

/* Combine the cached states of two segments of one row into a. */
SA_INLINE void sa_cached_merge(sa_cached_state *a, const sa_cached_state *b)
{
    a->nan |= b->nan;
    if (b->max > a->max) {
        if (a->sum != 0.0)
            a->sum *= sa_exp_shifted_f64(a->max, b->max);
        a->max = b->max;
    }
    if (b->sum != 0.0)
        a->sum += b->max == a->max ? b->sum : b->sum * sa_exp_shifted_f64(b->max, a->max);
}

SA_INLINE sa_params sa_finalize(int op, const sa_stats *st)
{
    const double m = st->nan ? NAN : st->max, r = st->rest, c = st->count;
    sa_params p = {0.0, 0.0, m};
    switch (op) {
    case SA_SOFTMAX:
        p.a = sa_log_softmax_shift(m);
        p.b = sa_softmax_scale(m, r, c);
        break;
    case SA_LOG_SOFTMAX:
        p.a = sa_log_softmax_shift(m);
        p.b = sa_log_softmax_norm(m, r, c);
        break;
    case SA_STABLEMAX:
        p.b = sa_stablemax_scale(m, r, c);
        break;
    case SA_LOG_STABLEMAX:
        p.a = sa_log_stablemax_norm(m, r, c);
        p.b = sa_log_stablemax_top(m, r, c);
        break;
    case SA_LOGSUMEXP:
        p.a = sa_logsumexp_value(m, r, c);
        break;
    }
    return p;
}

#include "_softmax_rows8.h"
#include "_softmax_avx2.h"
#include "_softmax_avx512.h"

#if SA_X86_DISPATCH
/* The exponential loops the v3 code calls (the hooks in
 * _softmax_impl.h and _losses_impl.h): the AVX-512 kernels where the module
 * runs them (sa_simd_v4, _simd.h), the AVX2 ones otherwise; a predictable
 * branch per block of SA_ROW_BLOCK entries. */
static inline float sa_x86_exp_store_sum_f32(const float *x, float *out, ptrdiff_t len, float scale, float m)
{
    return sa_simd_v4 ? sa_avx512_exp_store_sum_f32(x, out, len, scale, m)
                      : sa_avx2_exp_store_sum_f32(x, out, len, scale, m);
}

static inline float sa_x86_exp_rest_count_f32(const float *x, float *copy, ptrdiff_t len, float scale, float m,
                                              float *count)
{
    return sa_simd_v4 ? sa_avx512_exp_rest_count_f32(x, copy, len, scale, m, count)
                      : sa_avx2_exp_rest_count_f32(x, copy, len, scale, m, count);
}

static inline float sa_x86_exp_store_rest_count_f32(const float *x, float *out, ptrdiff_t len, float m, float *count)
{
    return sa_simd_v4 ? sa_avx512_exp_store_rest_count_f32(x, out, len, m, count)
                      : sa_avx2_exp_store_rest_count_f32(x, out, len, m, count);
}

/* The maximum pass (sa_block_max), on the same flag. */
static inline float sa_x86_block_max_f32(const float *x, ptrdiff_t len, float scale, int *bad)
{
    return sa_simd_v4 ? sa_avx512_block_max_f32(x, len, scale, bad) : sa_avx2_block_max_f32(x, len, scale, bad);
}

static inline double sa_x86_block_max_f64(const double *x, ptrdiff_t len, double scale, int *bad)
{
    return sa_simd_v4 ? sa_avx512_block_max_f64(x, len, scale, bad) : sa_avx2_block_max_f64(x, len, scale, bad);
}

static inline double sa_x86_exp_store_sum_f64(const double *x, double *out, ptrdiff_t len, double scale, double m)
{
    return sa_simd_v4 ? sa_avx512_exp_store_sum_f64(x, out, len, scale, m)
                      : sa_avx2_exp_store_sum_f64(x, out, len, scale, m);
}

static inline double sa_x86_exp_rest_count_shifted_f64(const double *x, double *copy, ptrdiff_t len, double scale,
                                                        double m, double *count)
{
    return sa_simd_v4 ? sa_avx512_exp_rest_count_shifted_f64(x, copy, len, scale, m, count)
                      : sa_avx2_exp_rest_count_shifted_f64(x, copy, len, scale, m, count);
}

static inline double sa_x86_exp_rest_count_rounded_f64(const double *x, double *copy, ptrdiff_t len, double scale,
                                                        double m, double *count)
{
    return sa_simd_v4 ? sa_avx512_exp_rest_count_rounded_f64(x, copy, len, scale, m, count)
                      : sa_avx2_exp_rest_count_rounded_f64(x, copy, len, scale, m, count);
}

static inline void sa_x86_cols_exp_f64(const double *row, double *out, const double *m, double *rest,
                                       double *count, ptrdiff_t width, double scale, int corrected)
{
    if (sa_simd_v4)
        sa_avx512_cols_exp_f64(row, out, m, rest, count, width, scale, corrected);
    else
        sa_avx2_cols_exp_f64(row, out, m, rest, count, width, scale, corrected);
}

/* The softmax family's float64 column step (TwoSum-corrected). */
static inline void sa_x86_cols_exp_shifted_f64(const double *row, double *out, const double *m, double *rest,
                                               double *count, ptrdiff_t width, double scale)
{
    sa_x86_cols_exp_f64(row, out, m, rest, count, width, scale, 1);
}

/* The losses' short rows in float64, under sa_avx2_short_stats_f32's
 * contract: the tile transposed so that the column step runs across the
 * rows, with the losses' rounded difference, and the exponentials
 * transposed back into e. Each row's lanes are its own, so its statistics
 * do not depend on the rows beside it. */
static inline void sa_x86_short_stats_f64(const double *x, double *e, ptrdiff_t rows, ptrdiff_t n, double *m,
                                          double *rest, double *count)
{
    double t[SA_SMALL_ROW_MAX][SA_AVX2_TILE_ROWS];
    for (ptrdiff_t r = 0; r < rows; r++) {
        for (ptrdiff_t c = 0; c < n; c++)
            t[c][r] = x[r * n + c];
        m[r] = -INFINITY;
        rest[r] = count[r] = 0.0;
    }
    for (ptrdiff_t c = 0; c < n; c++) {
#pragma omp simd
        for (ptrdiff_t r = 0; r < rows; r++)
            m[r] = (t[c][r] > m[r] || t[c][r] != t[c][r]) ? t[c][r] : m[r];     /* a NaN sticks */
    }
    for (ptrdiff_t c = 0; c < n; c++)
        sa_x86_cols_exp_f64(t[c], t[c], m, rest, count, rows, 1.0, 0);
    for (ptrdiff_t r = 0; r < rows; r++)
        for (ptrdiff_t c = 0; c < n; c++)
            e[r * n + c] = t[c][r];
}

static inline double sa_x86_exp_store_rest_count_f64(const double *x, double *out, ptrdiff_t len, double m,
                                                      double *count)
{
    return sa_simd_v4 ? sa_avx512_exp_store_rest_count_f64(x, out, len, m, count)
                      : sa_avx2_exp_store_rest_count_f64(x, out, len, m, count);
}
#endif

#define SA_T float
#define SA_SUF f32
#define SA_SOFTMAX_ROWS8 sa_softmax_rows8_f32
#define SA_SOFTMAX_SHORT_ROWS_AVX2 sa_avx2_short_rows_any_f32
#define SA_BLOCK_MAX_AVX2 sa_x86_block_max_f32
#define SA_EXP_STORE_SUM_AVX2 sa_x86_exp_store_sum_f32          /* AVX2, or AVX-512 where it runs */
#define SA_SCALE_AVX512 sa_avx512_scale_f32                     /* where sa_simd_v4 */
#define SA_SHIFT_TWICE_AVX512 sa_avx512_shift_twice_f32
#define SA_STREAM_PASS_AVX2 sa_avx2_stream_pass_f32               /* where sa_simd_v3 */
#define SA_EXP_REST_COUNT_AVX2 sa_x86_exp_rest_count_f32
#define SA_EXP_ROUNDED_REST_COUNT_AVX2 sa_x86_exp_rest_count_f32     /* float's shifted exp is the rounded one */
#define SA_EXP_SMALL sa_exp_small_f32
#define SA_EXP_SHIFTED sa_exp_shifted_f32
#define SA_LOG1P sa_log1p_f32
#define SA_FABS fabsf
#define SA_COPYSIGN copysignf
#include "_softmax_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_EXP_SMALL
#undef SA_EXP_SHIFTED
#undef SA_LOG1P
#undef SA_FABS
#undef SA_COPYSIGN

#undef SA_SOFTMAX_ROWS8
#undef SA_SOFTMAX_SHORT_ROWS_AVX2
#undef SA_BLOCK_MAX_AVX2
#undef SA_EXP_STORE_SUM_AVX2
#undef SA_SCALE_AVX512
#undef SA_SHIFT_TWICE_AVX512
#undef SA_STREAM_PASS_AVX2
#undef SA_EXP_REST_COUNT_AVX2
#undef SA_EXP_ROUNDED_REST_COUNT_AVX2

#define SA_T double
#define SA_SUF f64
#define SA_BLOCK_MAX_AVX2 sa_x86_block_max_f64
#define SA_EXP_STORE_SUM_AVX2 sa_x86_exp_store_sum_f64          /* AVX2, or AVX-512 where it runs */
#define SA_SCALE_AVX512 sa_avx512_scale_f64                     /* where sa_simd_v4 */
#define SA_SHIFT_TWICE_AVX512 sa_avx512_shift_twice_f64
#define SA_STREAM_PASS_AVX2 sa_avx2_stream_pass_f64               /* where sa_simd_v3 */
#define SA_EXP_REST_COUNT_AVX2 sa_x86_exp_rest_count_shifted_f64
#define SA_EXP_ROUNDED_REST_COUNT_AVX2 sa_x86_exp_rest_count_rounded_f64
#define SA_COLS_EXP_AVX2 sa_x86_cols_exp_shifted_f64
#define SA_EXP_SMALL sa_exp_small_f64
#define SA_EXP_SHIFTED sa_exp_shifted_f64
#define SA_LOG1P sa_log1p_f64
#define SA_FABS fabs
#define SA_COPYSIGN copysign
#include "_softmax_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_EXP_SMALL
#undef SA_EXP_SHIFTED
#undef SA_LOG1P
#undef SA_FABS
#undef SA_COPYSIGN

#undef SA_BLOCK_MAX_AVX2
#undef SA_EXP_STORE_SUM_AVX2
#undef SA_SCALE_AVX512
#undef SA_SHIFT_TWICE_AVX512
#undef SA_STREAM_PASS_AVX2
#undef SA_EXP_REST_COUNT_AVX2
#undef SA_EXP_ROUNDED_REST_COUNT_AVX2
#undef SA_COLS_EXP_AVX2

/* Half-precision rows (_half.h): chunks of at most chunk_rows rows widened
 * into scratch (chunk_rows * (n + 1) floats), the float32 kernel run there
 * in place, each result rounded once into out. For SA_LOGSUMEXP, out has
 * one value per row, out_stride apart. Inline: the losses' module includes
 * this header without calling it. */
static inline void sa_rows_half(const uint16_t *x, ptrdiff_t x_stride, uint16_t *out, ptrdiff_t out_stride,
                         ptrdiff_t n_rows, ptrdiff_t n, float scale, int op, int kind, float *scratch,
                         ptrdiff_t chunk_rows)
{
    for (ptrdiff_t r0 = 0; r0 < n_rows; r0 += chunk_rows) {
        const ptrdiff_t rows = n_rows - r0 < chunk_rows ? n_rows - r0 : chunk_rows;
        for (ptrdiff_t r = 0; r < rows; r++)
            sa_half_widen(x + (r0 + r) * x_stride, scratch + r * n, n, kind);
        if (op == SA_LOGSUMEXP) {
            float *values = scratch + rows * n;
            sa_rows_f32(scratch, n, values, 1, rows, n, scale, op, 0);
            for (ptrdiff_t r = 0; r < rows; r++)
                sa_half_narrow(values + r, out + (r0 + r) * out_stride, 1, kind);
        } else {
            sa_rows_f32(scratch, n, scratch, n, rows, n, scale, op, 0);
            for (ptrdiff_t r = 0; r < rows; r++)
                sa_half_narrow(scratch + r * n, out + (r0 + r) * out_stride, n, kind);
        }
    }
}

#endif /* SOFTARRAY_SOFTMAX_KERNELS_H */
