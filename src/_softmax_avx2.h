/*
 * Softmax-family kernels on x86-64 CPUs with AVX2 and FMA, written with intrinsics:
 *   - sa_avx2_short_rows_any_f32: float32 softmax, log_softmax and
 *     logsumexp of rows of n <= SA_SMALL_ROW_MAX, eight rows in the eight
 *     lanes of a register (most of this file);
 *   - sa_avx2_exp_store_sum_f32 / _f64: pass 1's exponentials of a long row
 *     (sa_softmax_row_cached, rows that stay in L2), four vectors in flight;
 *   - sa_avx2_exp_rest_count_* (float32, float64) and their storing
 *     variants: the same exponentials for the statistics of log_softmax,
 *     logsumexp and the softmax losses.
 * On CPUs with AVX-512, the float32 ones of those long-row loops run in
 * _softmax_avx512.h instead (sa_simd_v4), with the same exponential.
 * All use FMA in the exponential, which the portable kernels cannot (they
 * are compiled without contraction, so that x * scale - max never fuses),
 * and keep x * scale rounded before the maximum is subtracted.
 *
 * Short rows.
 * Why a separate kernel: the portable one (_softmax_rows8.h) lowers GCC's
 * vector extensions well enough, but at n = 10 it spent half its time
 * outside the arithmetic, and its exponentials could not use FMA: its
 * results must equal the column kernel's bit for bit, and that kernel is
 * compiled without contraction. This one is the only path for float32
 * softmax, log_softmax and logsumexp of short rows wherever the x86-64-v3 code runs (sa_simd_v3): contiguous rows
 * directly, the last n_rows % 8 rows and rows with any other stride through
 * a small local copy. So a row's result is the same whatever group, tile,
 * thread or call it falls in, and the arithmetic is free to be its own:
 *   - exp by the same polynomial as sa_exp_small_f32, with FMAs;
 *   - the sum as the tile path keeps it: the entries equal to the maximum
 *     counted, the others' exponentials summed in float, and
 *     1 / (rest + count) in double, rounded to float once: one float sum
 *     with the maximum's 1 in it and a float reciprocal would be a little
 *     faster and much less accurate (docs/performance.md, "Choices measured
 *     inside the kernels");
 *   - x * scale is rounded before the maximum is subtracted (softmax(x / T)
 *     rounds x / T first, as torch does): the multiply is never fused.
 * A NaN anywhere, or a non-finite maximum, gives NaN for the row, as SciPy.
 *
 * Layout: a tile of SA_AVX2_TILE_GROUPS groups of eight rows. Each group is
 * loaded as 8-float pieces of its rows and transposed 8 x 8 in registers
 * into column vectors (lane i = row i); then the maxima, the exponentials
 * and the sums run for the whole tile, one phase after another, so that the
 * groups' long dependency chains (an exponential is about 20 dependent
 * operations) overlap instead of each group waiting on its own; the results
 * are transposed back and stored.
 *
 * Memory: a group reads only its own 8 * n floats (the piece that would run
 * past its end is a masked load). Stores: a piece stored at full width may
 * spill into the group's next rows; pieces are stored from the last to the
 * first and rows from the first to the last, so every spill is overwritten
 * by the right values afterwards. The last row's last piece of rows with
 * n >= 8 is rotated and stored as the group's last eight floats (the
 * columns it overlaps are written again by the earlier piece). Rows shorter
 * than 8 spill past the group's end: into the next tile's rows (written
 * later) when the tile may (`spill_ok`), with masked stores otherwise (the
 * call's last tile, or when out overlaps x, where a spill could overwrite
 * input not yet read). Masked stores cost tens of cycles on AMD Zen, so
 * they are kept to those.
 */
#ifndef SOFTARRAY_SOFTMAX_AVX2_H
#define SOFTARRAY_SOFTMAX_AVX2_H

#include <stddef.h>
#include "_simd.h"
#include "_softmax_sizes.h"
#include "_softmax_ops.h"       /* the ops; log(sum) - max per lane */
#include "_softmax_rows8.h"     /* sa_v8f, sa_transpose8 */

/* Run where the module runs x86-64-v3 code (sa_simd_v3, _simd.h). */
#if SA_X86_DISPATCH
#define SA_HAVE_SOFTMAX_AVX2 1

#include <immintrin.h>
#include <string.h>

#define SA_AVX2 __attribute__((target("avx2,fma")))
/* Kernels only the losses call are `static inline`: the softmax module,
 * which includes this header too, then gets no unused-function warning. */
#define SA_AVX2_INLINE static inline __attribute__((target("avx2,fma"), always_inline))

/* Groups of eight rows per tile: enough independent exponentials to hide
 * their latency, few enough for the registers (4: measured fastest,
 * docs/performance.md). */
#define SA_AVX2_TILE_GROUPS 4
#define SA_AVX2_TILE_ROWS (8 * SA_AVX2_TILE_GROUPS)

/* exp(x) for x <= 0 (and NaN): sa_exp_small_f32's reduction and polynomial
 * with FMAs, in two steps as the float64 kernels below. The first returns
 * the polynomial's e^r, and t = n + SA_MAGIC32 (n in its low bits). */
SA_AVX2_INLINE __m256 sa_avx2_exp_reduced_f32(__m256 x, __m256 *t)
{
    const __m256 magic = _mm256_set1_ps(SA_MAGIC32);
    *t = _mm256_fmadd_ps(x, _mm256_set1_ps(SA_EXP_F32_LOG2E), magic);
    const __m256 n = _mm256_sub_ps(*t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SA_EXP_F32_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SA_EXP_F32_LN2_LO), r);
    __m256 p = _mm256_set1_ps(SA_EXP_F32_P6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SA_EXP_F32_P5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SA_EXP_F32_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SA_EXP_F32_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SA_EXP_F32_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    return _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
}

/* The second, for any x: p 2^(n + 64) from t, then 2^-64, so that a
 * subnormal result is rounded once. Below -104 the result rounds to +0: it
 * is set to 0 from a comparison rather than computed from a clamped
 * argument, because a result in the subnormal range costs a microcode
 * assist on AMD Zen (several times the whole exponential). */
SA_AVX2_INLINE __m256 sa_avx2_exp_scale_any_f32(__m256 x, __m256 p, __m256 t)
{
    const __m256i biased = _mm256_castps_si256(_mm256_add_ps(t, _mm256_set1_ps(127.0f + 64.0f)));
    p = _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23))), _mm256_set1_ps(0x1p-64f));
    return _mm256_and_ps(p, _mm256_cmp_ps(x, _mm256_set1_ps(SA_EXP_F32_MIN), _CMP_NLT_UQ));
}

/* The second where the result is normal: n added to p's exponent field,
 * the same number without the multiplications and the mask. */
SA_AVX2_INLINE __m256 sa_avx2_exp_scale_normal_f32(__m256 p, __m256 t)
{
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_castps_si256(t), 23)));
}

SA_AVX2_INLINE __m256 sa_avx2_exp_nonpositive(__m256 x)
{
    __m256 t;
    const __m256 p = sa_avx2_exp_reduced_f32(x, &t);
    return sa_avx2_exp_scale_any_f32(x, p, t);
}

/* Above this, n >= -124 and p 2^n is normal (p >= 1 / sqrt 2). */
#define SA_AVX2_EXP_F32_NORMAL -86.0f

/* exp(v[k]) in place for four vectors of arguments <= 0, as
 * sa_avx2_exp4_nonpositive_f64 below: where all of them are at least
 * SA_AVX2_EXP_F32_NORMAL, the normal scaling, which gives the same bits
 * with a third fewer multiplications (Zen 1 runs them on two of its four
 * vector pipes, at half width: they bound the loop). A NaN lane may be lost
 * by the minimum: its own result is then unspecified, and so is that of an
 * argument below the bound in the same lane of another vector. The long
 * rows (one row in every lane) have seen the NaN in their maximum pass and
 * make the whole row NaN; the short-row tile (a row per lane) comes here
 * only when no lane holds a NaN. */
SA_AVX2_INLINE void sa_avx2_exp4_nonpositive_f32(__m256 v[4])
{
    __m256 p[4], t[4];
    for (int k = 0; k < 4; k++)
        p[k] = sa_avx2_exp_reduced_f32(v[k], &t[k]);
    const __m256 lo = _mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3]));
    if (__builtin_expect(_mm256_movemask_ps(_mm256_cmp_ps(lo, _mm256_set1_ps(SA_AVX2_EXP_F32_NORMAL),
                                                          _CMP_LT_OQ)) != 0, 0)) {
        for (int k = 0; k < 4; k++)
            v[k] = sa_avx2_exp_scale_any_f32(v[k], p[k], t[k]);
        return;
    }
    for (int k = 0; k < 4; k++)
        v[k] = sa_avx2_exp_scale_normal_f32(p[k], t[k]);
}

/* In place: r[i] lane k becomes r[k] lane i (the portable kernel's
 * transpose, which GCC and Clang lower to the same AVX shuffles). */
SA_AVX2_INLINE void sa_avx2_transpose8(__m256 r[8])
{
    sa_v8f v[8];
    for (int k = 0; k < 8; k++)
        v[k] = (sa_v8f)r[k];
    sa_transpose8(v);
    for (int k = 0; k < 8; k++)
        r[k] = (__m256)v[k];
}

SA_AVX2_INLINE __m256i sa_avx2_lanes_below(ptrdiff_t count)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Column vectors of a tile: col[j][g] holds column j of group g (lane i = row i). */
typedef __m256 sa_avx2_tile_cols[SA_SMALL_ROW_MAX + 8][SA_AVX2_TILE_GROUPS];

SA_AVX2_INLINE void sa_avx2_load_group(const float *x, ptrdiff_t n, __m256 scale, sa_avx2_tile_cols col, int g)
{
    const ptrdiff_t extent = 8 * n;
    for (ptrdiff_t c = 0; c < n; c += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) {
            const ptrdiff_t at = i * n + c;
            r[i] = at + 8 <= extent ? _mm256_loadu_ps(x + at)
                                    : _mm256_maskload_ps(x + at, sa_avx2_lanes_below(extent - at));
        }
        sa_avx2_transpose8(r);
        for (int k = 0; k < 8; k++)
            col[c + k][g] = _mm256_mul_ps(r[k], scale);
    }
}

/* Row i's piece v (its columns at..at + 7 of the group's 8 * n floats), of
 * which the first extent - at are inside the group. */
SA_AVX2_INLINE void sa_avx2_store_piece(float *group, ptrdiff_t at, ptrdiff_t extent, ptrdiff_t n,
                                         __m256 v, int spill_ok)
{
    const ptrdiff_t inside = extent - at;
    if (inside >= 8 || spill_ok) {
        _mm256_storeu_ps(group + at, v);
    } else if (n >= 8) {
        /* lanes 0..inside-1 to lanes 8-inside..7: the group's last eight floats */
        const __m256i from = _mm256_and_si256(_mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                               _mm256_set1_epi32((int)inside)),
                                              _mm256_set1_epi32(7));
        _mm256_storeu_ps(group + extent - 8, _mm256_permutevar8x32_ps(v, from));
    } else {
        _mm256_maskstore_ps(group + at, sa_avx2_lanes_below(inside), v);
    }
}

/* The short-row tile's fourth mode, beside softmax, log_softmax and
 * logsumexp: the losses' statistics (sa_avx2_short_stats_f32). */
#define SA_AVX2_EXP_STATS (-1)

/* A result vector from column vector v (x * scale) or, for softmax, its
 * exponential: softmax e * b, log_softmax (y - a) - b (the portable
 * kernels' formula and roundings). */
SA_AVX2_INLINE __m256 sa_avx2_short_result(__m256 v, __m256 a, __m256 b, int op)
{
    if (op == SA_AVX2_EXP_STATS)
        return v;
    return op == SA_SOFTMAX ? _mm256_mul_ps(v, b) : _mm256_sub_ps(_mm256_sub_ps(v, a), b);
}

SA_AVX2_INLINE void sa_avx2_store_group(float *out, ptrdiff_t n, __m256 a, __m256 b, sa_avx2_tile_cols col, int g,
                                        int spill_ok, int op)
{
    const ptrdiff_t extent = 8 * n;
    for (ptrdiff_t c = (n - 1) / 8 * 8; c >= 0; c -= 8) {
        __m256 r[8];
        for (int k = 0; k < 8; k++)
            r[k] = sa_avx2_short_result(col[c + k][g], a, b, op);
        sa_avx2_transpose8(r);
        for (int i = 0; i < 8; i++)
            sa_avx2_store_piece(out, i * n + c, extent, n, r[i], spill_ok);
    }
}

/* 1 / (rest + count) in double, rounded to float once (rest + count is
 * exact in double); NaN where the maximum m is not finite. */
SA_AVX2_INLINE __m256 sa_avx2_inverse_sum(__m256 rest, __m256 count, __m256 m)
{
    const __m256d one = _mm256_set1_pd(1.0);
    const __m128 low = _mm256_cvtpd_ps(_mm256_div_pd(one, _mm256_add_pd(
        _mm256_cvtps_pd(_mm256_castps256_ps128(rest)), _mm256_cvtps_pd(_mm256_castps256_ps128(count)))));
    const __m128 high = _mm256_cvtpd_ps(_mm256_div_pd(one, _mm256_add_pd(
        _mm256_cvtps_pd(_mm256_extractf128_ps(rest, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(count, 1)))));
    const __m256 finite = _mm256_cmp_ps(_mm256_sub_ps(m, m), _mm256_setzero_ps(), _CMP_EQ_OQ);
    return _mm256_blendv_ps(_mm256_set1_ps(NAN), _mm256_set_m128(high, low), finite);
}

/* log_softmax's (a, b) or logsumexp's value (in b) per lane, by the
 * portable kernels' formulas in double (sa_log_softmax_shift and _norm,
 * sa_logsumexp_value), which the compiler vectorizes across the lanes. m
 * is already NaN in a lane whose row holds a NaN, as the portable maximum. */
SA_AVX2_INLINE void sa_avx2_log_params(__m256 m, __m256 rest, __m256 count, int op, __m256 *a, __m256 *b)
{
    float mf[8], rf[8], cf[8], af[8], bf[8];
    _mm256_storeu_ps(mf, m);
    _mm256_storeu_ps(rf, rest);
    _mm256_storeu_ps(cf, count);
#pragma omp simd
    for (int i = 0; i < 8; i++) {
        af[i] = (float)sa_log_softmax_shift(mf[i]);
        bf[i] = (float)(op == SA_LOGSUMEXP ? sa_logsumexp_value(mf[i], rf[i], cf[i])
                                           : sa_log_softmax_norm(mf[i], rf[i], cf[i]));
    }
    *a = _mm256_loadu_ps(af);
    *b = _mm256_loadu_ps(bf);
}

/* Column j of a tile's groups (cj = col[j]): each exp(x - m) added to rest
 * or, where x is the maximum, 1 to count; for softmax and the statistics
 * kept in place of x. Four groups take sa_avx2_exp4_nonpositive_f32. */
SA_AVX2_INLINE void sa_avx2_tile_exp_column(__m256 *cj, const __m256 *m, int groups, int op, __m256 *rest,
                                            __m256 *count)
{
    __m256 e[SA_AVX2_TILE_GROUPS];
    for (int g = 0; g < groups; g++)
        e[g] = _mm256_sub_ps(cj[g], m[g]);
    if (groups == 4)
        sa_avx2_exp4_nonpositive_f32(e);
    else
        for (int g = 0; g < groups; g++)
            e[g] = sa_avx2_exp_nonpositive(e[g]);
    for (int g = 0; g < groups; g++) {
        const __m256 top = _mm256_cmp_ps(cj[g], m[g], _CMP_EQ_OQ);
        if (op == SA_SOFTMAX || op == SA_AVX2_EXP_STATS)
            cj[g] = e[g];       /* the log ops keep x * scale for their results */
        rest[g] = _mm256_add_ps(rest[g], _mm256_andnot_ps(top, e[g]));
        count[g] = _mm256_add_ps(count[g], _mm256_and_ps(top, _mm256_set1_ps(1.0f)));
    }
}

/* softmax, log_softmax or logsumexp (op, a literal at every call) of
 * `groups` (<= SA_AVX2_TILE_GROUPS) groups of eight contiguous rows; for
 * logsumexp, out receives the 8 * groups values, one per row. With op
 * SA_AVX2_EXP_STATS, out receives each exp(y - m) and stats[0], [1] and [2]
 * (8 * groups floats each) each row's maximum (NaN for a row with a NaN),
 * sum of the exponentials below it and count of entries equal to it. */
SA_AVX2_INLINE void sa_avx2_short_tile_f32(const float *x, float *out, ptrdiff_t n, __m256 scale,
                                           int groups, int spill_ok, int op, float *stats)
{
    sa_avx2_tile_cols col;
    __m256 m[SA_AVX2_TILE_GROUPS], rest[SA_AVX2_TILE_GROUPS], count[SA_AVX2_TILE_GROUPS];
    __m256 nan[SA_AVX2_TILE_GROUPS];
    for (int g = 0; g < groups; g++)
        sa_avx2_load_group(x + g * 8 * n, n, scale, col, g);
    for (int g = 0; g < groups; g++) {
        m[g] = col[0][g];
        nan[g] = _mm256_cmp_ps(m[g], m[g], _CMP_UNORD_Q);
    }
    for (ptrdiff_t j = 1; j < n; j++)
        for (int g = 0; g < groups; g++) {
            m[g] = _mm256_max_ps(col[j][g], m[g]);      /* col > m ? col : m: NaN entries are passed over */
            nan[g] = _mm256_or_ps(nan[g], _mm256_cmp_ps(col[j][g], col[j][g], _CMP_UNORD_Q));
        }
    for (int g = 0; g < groups; g++)
        rest[g] = count[g] = _mm256_setzero_ps();
    /* Four vectors at once give the same bits as one at a time, but a lane
     * whose argument is NaN would hide another row's -inf there
     * (sa_avx2_exp4_nonpositive_f32): a row with a NaN, or one whose
     * maximum is infinite (-inf - -inf, inf - inf; m - m is NaN exactly
     * where m is not finite). */
    __m256 unsafe = _mm256_setzero_ps();
    for (int g = 0; g < groups; g++) {
        const __m256 zero_if_finite = _mm256_sub_ps(m[g], m[g]);
        unsafe = _mm256_or_ps(unsafe, _mm256_or_ps(nan[g], _mm256_cmp_ps(zero_if_finite, zero_if_finite,
                                                                           _CMP_UNORD_Q)));
    }
    if (groups == 4 && !_mm256_movemask_ps(unsafe)) {
        for (ptrdiff_t j = 0; j < n; j++)
            sa_avx2_tile_exp_column(col[j], m, 4, op, rest, count);
    } else {                /* a group at a time: a count known only at run time would keep e in memory */
        for (ptrdiff_t j = 0; j < n; j++)
            for (int g = 0; g < groups; g++)
                sa_avx2_tile_exp_column(col[j] + g, m + g, 1, op, rest + g, count + g);
    }
    /* All the divisions (or logarithms) first (each group's stores would
     * otherwise wait on its own); groups are stored first to last, so a
     * spill lands in a later group. */
    __m256 a[SA_AVX2_TILE_GROUPS], b[SA_AVX2_TILE_GROUPS];
    for (int g = 0; g < groups; g++) {
        if (op == SA_AVX2_EXP_STATS) {
            _mm256_storeu_ps(stats + 8 * g, _mm256_or_ps(m[g], nan[g]));
            _mm256_storeu_ps(stats + 8 * (groups + g), rest[g]);
            _mm256_storeu_ps(stats + 8 * (2 * groups + g), count[g]);
            a[g] = b[g] = _mm256_setzero_ps();
        } else if (op == SA_SOFTMAX) {
            a[g] = _mm256_setzero_ps();
            b[g] = sa_avx2_inverse_sum(rest[g], count[g], _mm256_or_ps(m[g], nan[g]));
        } else {
            sa_avx2_log_params(_mm256_or_ps(m[g], nan[g]), rest[g], count[g], op, &a[g], &b[g]);
        }
    }
    for (int g = 0; g < groups; g++) {
        if (op == SA_LOGSUMEXP)
            _mm256_storeu_ps(out + 8 * g, b[g]);
        else
            sa_avx2_store_group(out + g * 8 * n, n, a[g], b[g], col, g, spill_ok || g + 1 < groups, op);
    }
}

/* A whole tile, with the group count and the row length constants (one copy
 * of the tile code per row length and op, about 100 KB each): the per-group
 * maxima and sums stay in registers, and the loops over columns and pieces
 * unroll with their bounds and branches folded (docs/performance.md gives
 * the gain). */
SA_AVX2_INLINE void sa_avx2_whole_tile_f32(const float *x, float *out, ptrdiff_t n, __m256 scale, int spill_ok,
                                           int op)
{
#define SA_AVX2_TILE_OF(N) \
    case N: sa_avx2_short_tile_f32(x, out, N, scale, SA_AVX2_TILE_GROUPS, spill_ok, op, NULL); return;
    switch (n) {
    SA_AVX2_TILE_OF(1) SA_AVX2_TILE_OF(2) SA_AVX2_TILE_OF(3) SA_AVX2_TILE_OF(4)
    SA_AVX2_TILE_OF(5) SA_AVX2_TILE_OF(6) SA_AVX2_TILE_OF(7) SA_AVX2_TILE_OF(8)
    SA_AVX2_TILE_OF(9) SA_AVX2_TILE_OF(10) SA_AVX2_TILE_OF(11) SA_AVX2_TILE_OF(12)
    SA_AVX2_TILE_OF(13) SA_AVX2_TILE_OF(14) SA_AVX2_TILE_OF(15) SA_AVX2_TILE_OF(16)
    SA_AVX2_TILE_OF(17) SA_AVX2_TILE_OF(18) SA_AVX2_TILE_OF(19) SA_AVX2_TILE_OF(20)
    SA_AVX2_TILE_OF(21) SA_AVX2_TILE_OF(22) SA_AVX2_TILE_OF(23) SA_AVX2_TILE_OF(24)
    SA_AVX2_TILE_OF(25) SA_AVX2_TILE_OF(26) SA_AVX2_TILE_OF(27) SA_AVX2_TILE_OF(28)
    SA_AVX2_TILE_OF(29) SA_AVX2_TILE_OF(30) SA_AVX2_TILE_OF(31) SA_AVX2_TILE_OF(32)
    default: sa_avx2_short_tile_f32(x, out, n, scale, SA_AVX2_TILE_GROUPS, spill_ok, op, NULL);
    }
#undef SA_AVX2_TILE_OF
}

/* Rows [r0, n_rows) of a call, up to a tile, through a contiguous local
 * copy (rows past n_rows there are zeros and their results dropped; spills
 * land in the copy's slack). */
SA_AVX2_INLINE ptrdiff_t sa_avx2_copied_tile_f32(const float *x, ptrdiff_t x_stride, float *out,
                                                 ptrdiff_t out_stride, ptrdiff_t r0, ptrdiff_t n_rows,
                                                 ptrdiff_t n, __m256 scale, int op)
{
    float tile[SA_AVX2_TILE_ROWS * SA_SMALL_ROW_MAX + 8];
    const ptrdiff_t rows = n_rows - r0 < SA_AVX2_TILE_ROWS ? n_rows - r0 : SA_AVX2_TILE_ROWS;
    const int groups = (int)((rows + 7) / 8);
    memset(tile, 0, sizeof(float) * 8 * groups * n);
    for (ptrdiff_t r = 0; r < rows; r++)
        memcpy(tile + r * n, x + (r0 + r) * x_stride, sizeof(float) * n);
    sa_avx2_short_tile_f32(tile, tile, n, scale, groups, 1, op, NULL);
    for (ptrdiff_t r = 0; r < rows; r++) {
        if (op == SA_LOGSUMEXP)
            out[(r0 + r) * out_stride] = tile[r];
        else
            memcpy(out + (r0 + r) * out_stride, tile + r * n, sizeof(float) * n);
    }
    return rows;
}

/* Rows r < n_rows of n <= SA_SMALL_ROW_MAX entries: out[r, :] =
 * softmax or log_softmax(scale * x[r, :]), or out[r * out_stride] =
 * logsumexp(scale * x[r, :]). */
SA_AVX2_INLINE void sa_avx2_short_rows_f32(const float *x, ptrdiff_t x_stride, float *out, ptrdiff_t out_stride,
                                           ptrdiff_t n_rows, ptrdiff_t n, float scale, int op)
{
    const __m256 s = _mm256_set1_ps(scale);
    ptrdiff_t r = 0;
    if (x_stride == n && (op == SA_LOGSUMEXP ? out_stride == 1 : out_stride == n)) {
        const ptrdiff_t grouped = n_rows / 8 * 8;
        const int apart = out + n_rows * n <= x || x + n_rows * n <= out;
        while (r < grouped) {
            const int groups = grouped - r < SA_AVX2_TILE_ROWS ? (int)((grouped - r) / 8) : SA_AVX2_TILE_GROUPS;
            const ptrdiff_t end = r + 8 * groups;
            /* The farthest store of the tile's last row ends at reach; past
             * the tile it falls in rows that are written later. */
            const ptrdiff_t reach = (end - 1) * n + (n - 1) / 8 * 8 + 8;
            const int spill_ok = apart && reach <= n_rows * n;
            float *tile_out = op == SA_LOGSUMEXP ? out + r : out + r * n;
            if (groups == SA_AVX2_TILE_GROUPS)
                sa_avx2_whole_tile_f32(x + r * n, tile_out, n, s, spill_ok, op);
            else
                sa_avx2_short_tile_f32(x + r * n, tile_out, n, s, groups, spill_ok, op, NULL);
            r = end;
        }
    }
    while (r < n_rows)
        r += sa_avx2_copied_tile_f32(x, x_stride, out, out_stride, r, n_rows, n, s, op);
}

SA_AVX2 static void sa_avx2_short_rows_any_f32(const float *x, ptrdiff_t x_stride, float *out,
                                               ptrdiff_t out_stride, ptrdiff_t n_rows, ptrdiff_t n,
                                               float scale, int op)
{
    switch (op) {   /* op a literal inside each */
    case SA_SOFTMAX:
        sa_avx2_short_rows_f32(x, x_stride, out, out_stride, n_rows, n, scale, SA_SOFTMAX);
        return;
    case SA_LOG_SOFTMAX:
        sa_avx2_short_rows_f32(x, x_stride, out, out_stride, n_rows, n, scale, SA_LOG_SOFTMAX);
        return;
    default:
        sa_avx2_short_rows_f32(x, x_stride, out, out_stride, n_rows, n, scale, SA_LOGSUMEXP);
    }
}

/* The losses' short rows: x holds `rows` (<= SA_AVX2_TILE_ROWS) contiguous
 * rows of n <= SA_SMALL_ROW_MAX logits, padded with zero rows to a multiple
 * of eight; e receives exp(x - m) in the same layout (it may be x), and
 * m, rest and count each row's statistics as the softmax tile keeps them
 * (m NaN for a row with a NaN). The tile's lanes are independent, so a
 * row's statistics do not depend on the rows beside it. */
SA_AVX2 static inline void sa_avx2_short_stats_f32(const float *x, float *e, ptrdiff_t rows, ptrdiff_t n,
                                            float *m, float *rest, float *count)
{
    float stats[3 * SA_AVX2_TILE_ROWS];
    const int groups = (int)((rows + 7) / 8);
    sa_avx2_short_tile_f32(x, e, n, _mm256_set1_ps(1.0f), groups, 1, SA_AVX2_EXP_STATS, stats);
    memcpy(m, stats, sizeof(float) * rows);
    memcpy(rest, stats + 8 * groups, sizeof(float) * rows);
    memcpy(count, stats + 16 * groups, sizeof(float) * rows);
}

/* Whether sa_avx2_short_rows_any_f32 computes op. */
static inline int sa_avx2_short_rows_op(int op)
{
    return op == SA_SOFTMAX || op == SA_LOG_SOFTMAX || op == SA_LOGSUMEXP;
}


/* The sum of a vector's eight lanes. */
SA_AVX2_INLINE float sa_avx2_hsum(__m256 t)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Long rows: exp(x[i] * scale - m) into out[i] for i < len (a block of at
 * most SA_ROW_BLOCK entries, every x[i] * scale <= m or NaN), returning
 * their float sum. Four vectors per step with four sums: the exponential's
 * chain of about 20 dependent operations then overlaps four ways, which the
 * compiler's one-vector loop left to the out-of-order core
 * (docs/performance.md gives the gain). */
SA_AVX2_INLINE __m256 sa_avx2_exp_scaled_shift(__m256 x, __m256 scale, __m256 m)
{
    return sa_avx2_exp_nonpositive(_mm256_sub_ps(_mm256_mul_ps(x, scale), m));   /* x * scale rounded first */
}

SA_AVX2_INLINE float sa_avx2_exp_store_sum_ps(const float *x, float *out, ptrdiff_t len, float scale, float m)
{
    const __m256 s = _mm256_set1_ps(scale), mv = _mm256_set1_ps(m);
    __m256 sum[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    ptrdiff_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256 e[4];
        for (int k = 0; k < 4; k++)
            e[k] = _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), s), mv);
        sa_avx2_exp4_nonpositive_f32(e);
        for (int k = 0; k < 4; k++) {
            _mm256_storeu_ps(out + i + 8 * k, e[k]);
            sum[k] = _mm256_add_ps(sum[k], e[k]);
        }
    }
    for (; i + 8 <= len; i += 8) {
        const __m256 e = sa_avx2_exp_scaled_shift(_mm256_loadu_ps(x + i), s, mv);
        _mm256_storeu_ps(out + i, e);
        sum[0] = _mm256_add_ps(sum[0], e);
    }
    if (i < len) {          /* the last len % 8 entries: masked, so nothing past the row is touched */
        const __m256i inside = sa_avx2_lanes_below(len - i);
        const __m256 e = _mm256_and_ps(sa_avx2_exp_scaled_shift(_mm256_maskload_ps(x + i, inside), s, mv),
                                       _mm256_castsi256_ps(inside));
        _mm256_maskstore_ps(out + i, inside, e);
        sum[1] = _mm256_add_ps(sum[1], e);
    }
    return sa_avx2_hsum(_mm256_add_ps(_mm256_add_ps(sum[0], sum[1]), _mm256_add_ps(sum[2], sum[3])));
}

/* Long rows' statistics (log_softmax, logsumexp, the softmax losses):
 * exp(x[i] * scale - m) for i < len as above, the entries equal to m
 * counted apart in *count and the others' exponentials summed and returned
 * (the split that keeps log(count + rest) accurate when rest is tiny, see
 * sa_segment_stats_impl); with out, each exponential is also stored there
 * (the losses keep them for the gradient), or with store_y (a literal at
 * every call) y itself (log_softmax's output, finished in place once the
 * row's statistics are known: its stores then overlap the exponentials
 * instead of filling a pass of their own). count NULL says that no entry
 * equals m (a block whose maximum is below the row's): every exponential
 * is then summed, and the compare and the count are left out. */
SA_AVX2_INLINE __m256 sa_avx2_rest_count_add(__m256 y, __m256 mv, __m256 e, float *out, __m256 *count, int store_y)
{
    if (out)
        _mm256_storeu_ps(out, store_y ? y : e);
    if (!count)
        return e;
    const __m256 top = _mm256_cmp_ps(y, mv, _CMP_EQ_OQ);
    *count = _mm256_add_ps(*count, _mm256_and_ps(top, _mm256_set1_ps(1.0f)));
    return _mm256_andnot_ps(top, e);
}

SA_AVX2_INLINE float sa_avx2_exp_rest_count(const float *x, float *out, ptrdiff_t len, float scale, float m,
                                            float *count, int store_y)
{
    const __m256 s = _mm256_set1_ps(scale), mv = _mm256_set1_ps(m);
    const int counted = count != NULL;
    __m256 rest[4], cnt[4];
    for (int k = 0; k < 4; k++)
        rest[k] = cnt[k] = _mm256_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256 y[4], e[4];
        for (int k = 0; k < 4; k++) {
            y[k] = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), s);
            e[k] = _mm256_sub_ps(y[k], mv);
        }
        sa_avx2_exp4_nonpositive_f32(e);
        for (int k = 0; k < 4; k++)
            rest[k] = _mm256_add_ps(rest[k], sa_avx2_rest_count_add(y[k], mv, e[k], out ? out + i + 8 * k : NULL,
                                                                    counted ? &cnt[k] : NULL, store_y));
    }
    for (; i + 8 <= len; i += 8) {
        const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i), s);
        rest[0] = _mm256_add_ps(rest[0], sa_avx2_rest_count_add(y, mv, sa_avx2_exp_nonpositive(_mm256_sub_ps(y, mv)),
                                                                out ? out + i : NULL, counted ? &cnt[0] : NULL,
                                                                store_y));
    }
    if (i < len) {          /* the last len % 8 entries, masked */
        const __m256i inside = sa_avx2_lanes_below(len - i);
        const __m256 y = _mm256_mul_ps(_mm256_maskload_ps(x + i, inside), s);
        const __m256 top = counted ? _mm256_and_ps(_mm256_cmp_ps(y, mv, _CMP_EQ_OQ), _mm256_castsi256_ps(inside))
                                   : _mm256_setzero_ps();
        const __m256 e = _mm256_and_ps(sa_avx2_exp_nonpositive(_mm256_sub_ps(y, mv)), _mm256_castsi256_ps(inside));
        if (out)
            _mm256_maskstore_ps(out + i, inside, store_y ? y : e);
        cnt[1] = _mm256_add_ps(cnt[1], _mm256_and_ps(top, _mm256_set1_ps(1.0f)));
        rest[1] = _mm256_add_ps(rest[1], _mm256_andnot_ps(top, e));
    }
    if (counted)
        *count = sa_avx2_hsum(_mm256_add_ps(_mm256_add_ps(cnt[0], cnt[1]), _mm256_add_ps(cnt[2], cnt[3])));
    return sa_avx2_hsum(_mm256_add_ps(_mm256_add_ps(rest[0], rest[1]), _mm256_add_ps(rest[2], rest[3])));
}

/* The largest of a vector's eight lanes (none of them NaN). */
SA_AVX2_INLINE float sa_avx2_hmax(__m256 t)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* sa_block_max (_softmax_impl.h) with four running maxima: the portable
 * loop's one waits on each vmaxps in turn, which made the maximum pass a
 * third of a cached float32 softmax. vmaxps returns its second operand, the
 * running maximum, where the first is NaN: a NaN never wins, as in the
 * portable loop, and is flagged in *bad. */
SA_AVX2_INLINE float sa_avx2_block_max_ps(const float *x, ptrdiff_t len, float scale, int *bad)
{
    const __m256 s = _mm256_set1_ps(scale);
    __m256 m[4], nan = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++)
        m[k] = _mm256_set1_ps(-INFINITY);
    ptrdiff_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (int k = 0; k < 4; k++) {
            const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), s);
            m[k] = _mm256_max_ps(y, m[k]);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(y, y, _CMP_UNORD_Q));
        }
    for (; i + 8 <= len; i += 8) {
        const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i), s);
        m[0] = _mm256_max_ps(y, m[0]);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(y, y, _CMP_UNORD_Q));
    }
    float best = sa_avx2_hmax(_mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])));
    int flag = _mm256_movemask_ps(nan) != 0;
    for (; i < len; i++) {
        const float y = x[i] * scale;
        best = y > best ? y : best;
        flag |= y != y;
    }
    *bad |= flag;
    return best;
}

/* Each entry point runs scale 1 (no temperature) in a copy of its own,
 * whose multiplies by it fold away (sa_block_max). */
SA_AVX2 static float sa_avx2_exp_store_sum_f32(const float *x, float *out, ptrdiff_t len, float scale, float m)
{
    return scale == 1.0f ? sa_avx2_exp_store_sum_ps(x, out, len, 1.0f, m)
                         : sa_avx2_exp_store_sum_ps(x, out, len, scale, m);
}

/* The statistics entry points take copy: NULL, or where y = x * scale is
 * stored (log_softmax). */
SA_AVX2 static float sa_avx2_exp_rest_count_f32(const float *x, float *copy, ptrdiff_t len, float scale, float m,
                                                float *count)
{
    if (!count)         /* no entry equals m: the copies without the count */
        return scale == 1.0f ? sa_avx2_exp_rest_count(x, copy, len, 1.0f, m, NULL, 1)
                             : sa_avx2_exp_rest_count(x, copy, len, scale, m, NULL, 1);
    return scale == 1.0f ? sa_avx2_exp_rest_count(x, copy, len, 1.0f, m, count, 1)
                         : sa_avx2_exp_rest_count(x, copy, len, scale, m, count, 1);
}

SA_AVX2 static inline float sa_avx2_exp_store_rest_count_f32(const float *x, float *out, ptrdiff_t len, float m,
                                                      float *count)
{
    return sa_avx2_exp_rest_count(x, out, len, 1.0f, m, count, 0);
}

SA_AVX2 static float sa_avx2_block_max_f32(const float *x, ptrdiff_t len, float scale, int *bad)
{
    return scale == 1.0f ? sa_avx2_block_max_ps(x, len, 1.0f, bad) : sa_avx2_block_max_ps(x, len, scale, bad);
}

/* float64, long rows: the same kernels on four doubles per vector.
 *
 * exp(x) for x <= 0: n = round(x / ln 2) and r = x - n ln 2 as in
 * sa_exp_poly_f64 (with FMAs), then e^r = 1 + (r + r^2 Q(r)), where Q, of
 * degree 9, interpolates (e^r - 1 - r) / r^2 at the Chebyshev nodes of
 * |r| <= ln(2) / 2 (mpmath.chebyfit): a relative error below 2^-55, where
 * the portable kernel's degree-13 Taylor polynomial needs two more
 * multiply-adds. Q runs in Estrin's scheme (powers r^2, r^4 and pairs of
 * coefficients): a Horner chain of ten dependent FMAs left the loops
 * latency-bound even with four vectors in flight; r + r^2 Q then 1 + (...)
 * keeps the leading terms' rounding to one half-ulp of the result (a pure
 * Estrin sum rounds 1 + r first, about 1.8 ulp worst instead of 1.1,
 * measured against long double expl on [-750, 0]). docs/performance.md
 * gives the gains. */
#define SA_AVX2_EXP_Q2 0x1.0000000000001p-1
#define SA_AVX2_EXP_Q3 0x1.5555555555556p-3
#define SA_AVX2_EXP_Q4 0x1.5555555553d68p-5
#define SA_AVX2_EXP_Q5 0x1.11111111109b5p-7
#define SA_AVX2_EXP_Q6 0x1.6c16c17889ef1p-10
#define SA_AVX2_EXP_Q7 0x1.a01a01a7c2efep-13
#define SA_AVX2_EXP_Q8 0x1.a019b9149a41cp-16
#define SA_AVX2_EXP_Q9 0x1.71de0db2f6b19p-19
#define SA_AVX2_EXP_Q10 0x1.28917c89a43a7p-22
#define SA_AVX2_EXP_Q11 0x1.af389ecfc4b9cp-26
/* Below this, n < -1021 and p 2^n may be subnormal. */
#define SA_AVX2_EXP_F64_NORMAL -708.0

SA_AVX2_INLINE __m256d sa_avx2_pair_pd(__m256d r, double lo, double hi)
{
    return _mm256_fmadd_pd(_mm256_set1_pd(hi), r, _mm256_set1_pd(lo));
}

/* e^r of x's reduced argument r; *t receives n + SA_MAGIC64 (n in its low bits). */
SA_AVX2_INLINE __m256d sa_avx2_exp_reduced_f64(__m256d x, __m256d *t)
{
    const __m256d magic = _mm256_set1_pd(SA_MAGIC64);
    *t = _mm256_fmadd_pd(x, _mm256_set1_pd(SA_EXP_F64_LOG2E), magic);
    const __m256d n = _mm256_sub_pd(*t, magic);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(SA_EXP_F64_LN2_HI), x);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(SA_EXP_F64_LN2_LO), r);
    const __m256d r2 = _mm256_mul_pd(r, r), r4 = _mm256_mul_pd(r2, r2);
    const __m256d b0 = _mm256_fmadd_pd(sa_avx2_pair_pd(r, SA_AVX2_EXP_Q4, SA_AVX2_EXP_Q5), r2,
                                       sa_avx2_pair_pd(r, SA_AVX2_EXP_Q2, SA_AVX2_EXP_Q3));
    const __m256d b1 = _mm256_fmadd_pd(sa_avx2_pair_pd(r, SA_AVX2_EXP_Q8, SA_AVX2_EXP_Q9), r2,
                                       sa_avx2_pair_pd(r, SA_AVX2_EXP_Q6, SA_AVX2_EXP_Q7));
    const __m256d q = _mm256_fmadd_pd(_mm256_fmadd_pd(sa_avx2_pair_pd(r, SA_AVX2_EXP_Q10, SA_AVX2_EXP_Q11), r4, b1),
                                      r4, b0);
    return _mm256_add_pd(_mm256_set1_pd(1.0), _mm256_fmadd_pd(q, r2, r));
}

/* p 2^n where the result is normal: n added to p's exponent field. */
SA_AVX2_INLINE __m256d sa_avx2_exp_scale_normal_f64(__m256d p, __m256d t)
{
    return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(p), _mm256_slli_epi64(_mm256_castpd_si256(t), 52)));
}

/* p 2^n for any x <= 0 (and NaN), as sa_exp_small_f64: 2^(n + 64), normal
 * for every such n, then 2^-64 (a subnormal result rounded once); below
 * -746 the result rounds to +0 and is set so from a comparison, as in float
 * (sa_avx2_exp_nonpositive). */
SA_AVX2_INLINE __m256d sa_avx2_exp_scale_any_f64(__m256d x, __m256d p, __m256d t)
{
    const __m256i biased = _mm256_castpd_si256(_mm256_add_pd(t, _mm256_set1_pd(1023.0 + 64.0)));
    p = _mm256_mul_pd(_mm256_mul_pd(p, _mm256_castsi256_pd(_mm256_slli_epi64(biased, 52))), _mm256_set1_pd(0x1p-64));
    return _mm256_and_pd(p, _mm256_cmp_pd(x, _mm256_set1_pd(SA_EXP_F64_MIN), _CMP_NLT_UQ));
}

/* exp(x) for x <= 0 (and NaN), one vector (the rows' last entries). */
SA_AVX2_INLINE __m256d sa_avx2_exp_nonpositive_f64(__m256d x)
{
    __m256d t;
    const __m256d p = sa_avx2_exp_reduced_f64(x, &t);
    return sa_avx2_exp_scale_any_f64(x, p, t);
}

/* exp(v[k]) in place for four vectors of arguments <= 0. Where all of them
 * are at least SA_AVX2_EXP_F64_NORMAL (the common case, one predictable
 * branch per four vectors), 2^n goes into the exponent field by an integer
 * addition instead of the two multiplications and the mask of the general
 * scaling; that saves a fifth of the work. Returns whether some lane took
 * the general scaling (below the bound or -inf). A NaN lane may be lost by
 * the minimum and then gives an unspecified value: every caller has seen
 * the NaN in its maximum pass already and makes the whole slice NaN. */
SA_AVX2_INLINE int sa_avx2_exp4_nonpositive_f64(__m256d v[4])
{
    __m256d p[4], t[4];
    for (int k = 0; k < 4; k++)
        p[k] = sa_avx2_exp_reduced_f64(v[k], &t[k]);
    const __m256d lo = _mm256_min_pd(_mm256_min_pd(v[0], v[1]), _mm256_min_pd(v[2], v[3]));
    if (__builtin_expect(_mm256_movemask_pd(_mm256_cmp_pd(lo, _mm256_set1_pd(SA_AVX2_EXP_F64_NORMAL),
                                                          _CMP_LT_OQ)) != 0, 0)) {
        for (int k = 0; k < 4; k++)
            v[k] = sa_avx2_exp_scale_any_f64(v[k], p[k], t[k]);
        return 1;
    }
    for (int k = 0; k < 4; k++)
        v[k] = sa_avx2_exp_scale_normal_f64(p[k], t[k]);
    return 0;
}

/* The rounding error of d = y - m (Knuth's TwoSum), as sa_exp_shifted_f64;
 * NaN where y = -inf. */
SA_AVX2_INLINE __m256d sa_avx2_shift_error_f64(__m256d y, __m256d m, __m256d d)
{
    const __m256d yv = _mm256_add_pd(d, m);
    const __m256d mv = _mm256_sub_pd(yv, d);
    return _mm256_add_pd(_mm256_sub_pd(y, yv), _mm256_sub_pd(mv, m));
}

/* exp(y - m) as sa_exp_shifted_f64: exp(d) (1 + e) with one FMA, e set to 0
 * where it is NaN (y = -inf, whose exp(-inf) = 0 must stay 0). */
SA_AVX2_INLINE __m256d sa_avx2_exp_shifted_f64(__m256d y, __m256d m)
{
    const __m256d d = _mm256_sub_pd(y, m);
    __m256d e = sa_avx2_shift_error_f64(y, m, d);
    e = _mm256_and_pd(e, _mm256_cmp_pd(e, e, _CMP_ORD_Q));
    const __m256d ed = sa_avx2_exp_nonpositive_f64(d);
    return _mm256_fmadd_pd(ed, e, ed);
}

/* The same for four vectors in place (v[k] = y on entry); e can be NaN
 * only where some y is -inf, which sends the four to the general scaling. */
SA_AVX2_INLINE void sa_avx2_exp4_shifted_f64(__m256d v[4], __m256d m)
{
    __m256d e[4];
    for (int k = 0; k < 4; k++) {
        const __m256d d = _mm256_sub_pd(v[k], m);
        e[k] = sa_avx2_shift_error_f64(v[k], m, d);
        v[k] = d;
    }
    const int general = sa_avx2_exp4_nonpositive_f64(v);
    for (int k = 0; k < 4; k++) {
        if (general)
            e[k] = _mm256_and_pd(e[k], _mm256_cmp_pd(e[k], e[k], _CMP_ORD_Q));
        v[k] = _mm256_fmadd_pd(v[k], e[k], v[k]);
    }
}

SA_AVX2_INLINE __m256i sa_avx2_lanes_below_pd(ptrdiff_t count)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(count), _mm256_setr_epi64x(0, 1, 2, 3));
}

SA_AVX2_INLINE double sa_avx2_hsum_pd(__m256d t)
{
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* sa_avx2_block_max_ps for double. */
SA_AVX2_INLINE double sa_avx2_block_max_pd(const double *x, ptrdiff_t len, double scale, int *bad)
{
    const __m256d s = _mm256_set1_pd(scale);
    __m256d m[4], nan = _mm256_setzero_pd();
    for (int k = 0; k < 4; k++)
        m[k] = _mm256_set1_pd(-INFINITY);
    ptrdiff_t i = 0;
    for (; i + 16 <= len; i += 16)
        for (int k = 0; k < 4; k++) {
            const __m256d y = _mm256_mul_pd(_mm256_loadu_pd(x + i + 4 * k), s);
            m[k] = _mm256_max_pd(y, m[k]);
            nan = _mm256_or_pd(nan, _mm256_cmp_pd(y, y, _CMP_UNORD_Q));
        }
    __m256d top = _mm256_max_pd(_mm256_max_pd(m[0], m[1]), _mm256_max_pd(m[2], m[3]));
    __m128d h = _mm_max_pd(_mm256_castpd256_pd128(top), _mm256_extractf128_pd(top, 1));
    double best = _mm_cvtsd_f64(_mm_max_sd(h, _mm_unpackhi_pd(h, h)));
    int flag = _mm256_movemask_pd(nan) != 0;
    for (; i < len; i++) {
        const double y = x[i] * scale;
        best = y > best ? y : best;
        flag |= y != y;
    }
    *bad |= flag;
    return best;
}

/* exp(y - m) in place for four vectors of y = x * scale (rounded first);
 * corrected (a literal at every call) takes the TwoSum-corrected difference
 * of the softmax family, otherwise the rounded one of the losses (see
 * sa_segment_stats_impl). */
SA_AVX2_INLINE void sa_avx2_exp4_shift_f64(__m256d v[4], __m256d m, int corrected)
{
    if (corrected) {
        sa_avx2_exp4_shifted_f64(v, m);
        return;
    }
    for (int k = 0; k < 4; k++)
        v[k] = _mm256_sub_pd(v[k], m);
    sa_avx2_exp4_nonpositive_f64(v);
}

/* One vector of the same (the rows' last entries). */
SA_AVX2_INLINE __m256d sa_avx2_exp_shift_f64(__m256d y, __m256d m, int corrected)
{
    return corrected ? sa_avx2_exp_shifted_f64(y, m) : sa_avx2_exp_nonpositive_f64(_mm256_sub_pd(y, m));
}

/* sa_avx2_exp_store_sum_f32 for double, TwoSum-corrected: four vectors per
 * step with four sums. */
SA_AVX2_INLINE double sa_avx2_exp_store_sum_pd(const double *x, double *out, ptrdiff_t len, double scale,
                                               double m)
{
    const __m256d s = _mm256_set1_pd(scale), mv = _mm256_set1_pd(m);
    __m256d sum[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    ptrdiff_t i = 0;
    for (; i + 16 <= len; i += 16) {
        __m256d e[4];
        for (int k = 0; k < 4; k++)
            e[k] = _mm256_mul_pd(_mm256_loadu_pd(x + i + 4 * k), s);
        sa_avx2_exp4_shift_f64(e, mv, 1);
        for (int k = 0; k < 4; k++) {
            _mm256_storeu_pd(out + i + 4 * k, e[k]);
            sum[k] = _mm256_add_pd(sum[k], e[k]);
        }
    }
    for (; i + 4 <= len; i += 4) {
        const __m256d e = sa_avx2_exp_shift_f64(_mm256_mul_pd(_mm256_loadu_pd(x + i), s), mv, 1);
        _mm256_storeu_pd(out + i, e);
        sum[0] = _mm256_add_pd(sum[0], e);
    }
    if (i < len) {          /* the last len % 4 entries, masked */
        const __m256i inside = sa_avx2_lanes_below_pd(len - i);
        const __m256d y = _mm256_mul_pd(_mm256_maskload_pd(x + i, inside), s);
        const __m256d e = _mm256_and_pd(sa_avx2_exp_shift_f64(y, mv, 1), _mm256_castsi256_pd(inside));
        _mm256_maskstore_pd(out + i, inside, e);
        sum[1] = _mm256_add_pd(sum[1], e);
    }
    return sa_avx2_hsum_pd(_mm256_add_pd(_mm256_add_pd(sum[0], sum[1]), _mm256_add_pd(sum[2], sum[3])));
}

/* sa_avx2_exp_rest_count for double: y = x * scale; the entries equal to
 * m counted, the others' exponentials summed; with out, each exponential
 * stored. */
SA_AVX2_INLINE __m256d sa_avx2_rest_count_add_pd(__m256d top, __m256d e, __m256d *count)
{
    if (!count)     /* no entry equals m (sa_avx2_rest_count_add) */
        return e;
    *count = _mm256_add_pd(*count, _mm256_and_pd(top, _mm256_set1_pd(1.0)));
    return _mm256_andnot_pd(top, e);
}

SA_AVX2_INLINE double sa_avx2_exp_rest_count_pd(const double *x, double *out, ptrdiff_t len, double scale,
                                                double m, int corrected, double *count, int store_y)
{
    const __m256d s = _mm256_set1_pd(scale), mv = _mm256_set1_pd(m);
    const int counted = count != NULL;
    __m256d rest[4], cnt[4];
    for (int k = 0; k < 4; k++)
        rest[k] = cnt[k] = _mm256_setzero_pd();
    ptrdiff_t i = 0;
    for (; i + 16 <= len; i += 16) {
        __m256d y[4], e[4];
        for (int k = 0; k < 4; k++)
            e[k] = y[k] = _mm256_mul_pd(_mm256_loadu_pd(x + i + 4 * k), s);
        sa_avx2_exp4_shift_f64(e, mv, corrected);
        for (int k = 0; k < 4; k++) {
            if (out)
                _mm256_storeu_pd(out + i + 4 * k, store_y ? y[k] : e[k]);
            const __m256d top = _mm256_cmp_pd(y[k], mv, _CMP_EQ_OQ);
            rest[k] = _mm256_add_pd(rest[k], sa_avx2_rest_count_add_pd(top, e[k], counted ? &cnt[k] : NULL));
        }
    }
    for (; i + 4 <= len; i += 4) {
        const __m256d y = _mm256_mul_pd(_mm256_loadu_pd(x + i), s);
        const __m256d e = sa_avx2_exp_shift_f64(y, mv, corrected);
        if (out)
            _mm256_storeu_pd(out + i, store_y ? y : e);
        rest[0] = _mm256_add_pd(rest[0], sa_avx2_rest_count_add_pd(_mm256_cmp_pd(y, mv, _CMP_EQ_OQ), e,
                                                                   counted ? &cnt[0] : NULL));
    }
    if (i < len) {          /* the last len % 4 entries, masked */
        const __m256i inside = sa_avx2_lanes_below_pd(len - i);
        const __m256d in = _mm256_castsi256_pd(inside);
        const __m256d y = _mm256_mul_pd(_mm256_maskload_pd(x + i, inside), s);
        const __m256d e = _mm256_and_pd(sa_avx2_exp_shift_f64(y, mv, corrected), in);
        if (out)
            _mm256_maskstore_pd(out + i, inside, store_y ? y : e);
        const __m256d top = _mm256_and_pd(_mm256_cmp_pd(y, mv, _CMP_EQ_OQ), in);
        rest[1] = _mm256_add_pd(rest[1], sa_avx2_rest_count_add_pd(top, e, counted ? &cnt[1] : NULL));
    }
    if (counted)
        *count = sa_avx2_hsum_pd(_mm256_add_pd(_mm256_add_pd(cnt[0], cnt[1]), _mm256_add_pd(cnt[2], cnt[3])));
    return sa_avx2_hsum_pd(_mm256_add_pd(_mm256_add_pd(rest[0], rest[1]), _mm256_add_pd(rest[2], rest[3])));
}

/* The softmax family's statistics (TwoSum-corrected) and the losses' (the
 * rounded difference; the storing variant keeps the exponentials for the
 * gradient). */
SA_AVX2 static double sa_avx2_exp_store_sum_f64(const double *x, double *out, ptrdiff_t len, double scale,
                                                double m)
{
    return scale == 1.0 ? sa_avx2_exp_store_sum_pd(x, out, len, 1.0, m)
                        : sa_avx2_exp_store_sum_pd(x, out, len, scale, m);
}

/* The statistics entry points' copies: scale 1 and the count each in a
 * copy of their own (corrected a literal at each call). */
SA_AVX2_INLINE double sa_avx2_exp_rest_count_copies_f64(const double *x, double *copy, ptrdiff_t len, double scale,
                                                       double m, int corrected, double *count)
{
    if (!count)         /* no entry equals m: the copies without the count */
        return scale == 1.0 ? sa_avx2_exp_rest_count_pd(x, copy, len, 1.0, m, corrected, NULL, 1)
                            : sa_avx2_exp_rest_count_pd(x, copy, len, scale, m, corrected, NULL, 1);
    return scale == 1.0 ? sa_avx2_exp_rest_count_pd(x, copy, len, 1.0, m, corrected, count, 1)
                        : sa_avx2_exp_rest_count_pd(x, copy, len, scale, m, corrected, count, 1);
}

SA_AVX2 static double sa_avx2_exp_rest_count_shifted_f64(const double *x, double *copy, ptrdiff_t len, double scale,
                                                   double m, double *count)
{
    return sa_avx2_exp_rest_count_copies_f64(x, copy, len, scale, m, 1, count);
}

SA_AVX2 static double sa_avx2_exp_rest_count_rounded_f64(const double *x, double *copy, ptrdiff_t len, double scale,
                                                   double m, double *count)
{
    return sa_avx2_exp_rest_count_copies_f64(x, copy, len, scale, m, 0, count);
}

SA_AVX2 static inline double sa_avx2_exp_store_rest_count_f64(const double *x, double *out, ptrdiff_t len, double m,
                                                       double *count)
{
    return sa_avx2_exp_rest_count_pd(x, out, len, 1.0, m, 0, count, 0);
}

SA_AVX2 static double sa_avx2_block_max_f64(const double *x, ptrdiff_t len, double scale, int *bad)
{
    return scale == 1.0 ? sa_avx2_block_max_pd(x, len, 1.0, bad) : sa_avx2_block_max_pd(x, len, scale, bad);
}

/* sa_cols_impl's exponential step for float64 (short rows' tiles and
 * reductions down columns): for one row of width columns, each with its
 * own maximum m[j], e = exp(y - m[j]) (y = row[j] * scale; TwoSum-corrected
 * where corrected, as in the softmax family, else the losses' rounded
 * difference) is stored in out when given and added to rest[j], or counted in count[j]
 * where y equals m[j]. The last width % 4 columns go through masked lanes
 * (masked, a literal at each call: AMD's masked stores are slow, so full
 * vectors take plain ones), so a column's result does not depend on its
 * place in the tile. */
SA_AVX2_INLINE void sa_avx2_cols_exp_step_pd(const double *row, double *out, const double *m, double *rest,
                                             double *count, __m256d s, __m256i inside, int masked,
                                             int corrected)
{
    const __m256d in = _mm256_castsi256_pd(inside);
    const __m256d y = _mm256_mul_pd(masked ? _mm256_maskload_pd(row, inside) : _mm256_loadu_pd(row), s);
    const __m256d mv = masked ? _mm256_maskload_pd(m, inside) : _mm256_loadu_pd(m);
    const __m256d e = sa_avx2_exp_shift_f64(y, mv, corrected);
    const __m256d top = _mm256_cmp_pd(y, mv, _CMP_EQ_OQ);
    const __m256d one = _mm256_and_pd(_mm256_and_pd(top, in), _mm256_set1_pd(1.0));
    if (masked) {
        if (out)
            _mm256_maskstore_pd(out, inside, e);
        _mm256_maskstore_pd(rest, inside, _mm256_add_pd(_mm256_maskload_pd(rest, inside), _mm256_andnot_pd(top, e)));
        _mm256_maskstore_pd(count, inside, _mm256_add_pd(_mm256_maskload_pd(count, inside), one));
        return;
    }
    if (out)
        _mm256_storeu_pd(out, e);
    _mm256_storeu_pd(rest, _mm256_add_pd(_mm256_loadu_pd(rest), _mm256_andnot_pd(top, e)));
    _mm256_storeu_pd(count, _mm256_add_pd(_mm256_loadu_pd(count), one));
}

SA_AVX2 static void sa_avx2_cols_exp_f64(const double *row, double *out, const double *m, double *rest,
                                         double *count, ptrdiff_t width, double scale, int corrected)
{
    const __m256d s = _mm256_set1_pd(scale);
    const __m256i all = _mm256_set1_epi64x(-1);
    ptrdiff_t j = 0;
    for (; j + 4 <= width; j += 4)
        sa_avx2_cols_exp_step_pd(row + j, out ? out + j : NULL, m + j, rest + j, count + j, s, all, 0,
                                 corrected);
    if (j < width)
        sa_avx2_cols_exp_step_pd(row + j, out ? out + j : NULL, m + j, rest + j, count + j, s,
                                 sa_avx2_lanes_below_pd(width - j), 1, corrected);
}

/* The last pass of an output larger than the caches: dst = src * f
 * (softmax, from its staged exponentials) or (src * f - a) - b (log_softmax,
 * from x, f its scale), the same bits as the in-place passes. dst's whole 32-byte pieces are written by
 * non-temporal stores, which send a line to memory without first reading it
 * in: a plain store reads each output line from memory before writing it
 * (the read for ownership), a third of such a call's traffic. Entries before
 * dst's first 32-byte boundary and the last partial vector take plain
 * stores. dst must hold whole elements (aligned to their size); the caller
 * ends the call with sa_avx2_stream_fence(). AVX2 stores on AVX-512 CPUs as
 * well: the pass is bound by memory, not by the vectors' width. */
SA_AVX2_INLINE __m256 sa_avx2_last_step_ps(__m256 v, __m256 f, __m256 a, __m256 b, int shift)
{
    const __m256 y = _mm256_mul_ps(v, f);
    return shift ? _mm256_sub_ps(_mm256_sub_ps(y, a), b) : y;
}

SA_AVX2 static void sa_avx2_stream_pass_f32(const float *src, float *dst, ptrdiff_t len, float f, float a,
                                            float b, int shift)
{
    const __m256 fv = _mm256_set1_ps(f), av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
    ptrdiff_t i = 0;
    for (; i < len && ((uintptr_t)(dst + i) & 31) != 0; i++)
        dst[i] = shift ? (src[i] * f - a) - b : src[i] * f;
    for (; i + 8 <= len; i += 8)
        _mm256_stream_ps(dst + i, sa_avx2_last_step_ps(_mm256_loadu_ps(src + i), fv, av, bv, shift));
    for (; i < len; i++)
        dst[i] = shift ? (src[i] * f - a) - b : src[i] * f;
}

SA_AVX2_INLINE __m256d sa_avx2_last_step_pd(__m256d v, __m256d f, __m256d a, __m256d b, int shift)
{
    const __m256d y = _mm256_mul_pd(v, f);
    return shift ? _mm256_sub_pd(_mm256_sub_pd(y, a), b) : y;
}

SA_AVX2 static void sa_avx2_stream_pass_f64(const double *src, double *dst, ptrdiff_t len, double f, double a,
                                            double b, int shift)
{
    const __m256d fv = _mm256_set1_pd(f), av = _mm256_set1_pd(a), bv = _mm256_set1_pd(b);
    ptrdiff_t i = 0;
    for (; i < len && ((uintptr_t)(dst + i) & 31) != 0; i++)
        dst[i] = shift ? (src[i] * f - a) - b : src[i] * f;
    for (; i + 4 <= len; i += 4)
        _mm256_stream_pd(dst + i, sa_avx2_last_step_pd(_mm256_loadu_pd(src + i), fv, av, bv, shift));
    for (; i < len; i++)
        dst[i] = shift ? (src[i] * f - a) - b : src[i] * f;
}

/* Orders the non-temporal stores before whatever the thread does next (they
 * are weakly ordered): once per call, before its results are handed back. */
SA_AVX2 static inline void sa_avx2_stream_fence(void)
{
    _mm_sfence();
}

#else
#define SA_HAVE_SOFTMAX_AVX2 0
#endif

#endif /* SOFTARRAY_SOFTMAX_AVX2_H */
