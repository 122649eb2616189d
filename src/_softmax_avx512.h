/*
 * The exponential loops of _softmax_avx2.h on AVX-512 (F, DQ): sixteen
 * float32 or eight float64 lanes per vector, and a row's last entries
 * through a lane mask (__mmask16, __mmask8), which AVX-512's loads, stores
 * and arithmetic take directly, where AVX2 needs maskload/maskstore. Both
 * types take a table-driven exponential of their own (below), which
 * AVX-512's in-register table lookups (vpermps, vpermt2pd) make cheaper than
 * the AVX2 kernels' polynomials: each exponential differs from the AVX2
 * loops' by an ulp or so, and the sums also in their order.
 */
#ifndef SOFTARRAY_SOFTMAX_AVX512_H
#define SOFTARRAY_SOFTMAX_AVX512_H

#include <stddef.h>
#include "_simd.h"

/* Run where the module runs the AVX-512 code (sa_simd_v4, _simd.h). */
#if SA_X86_DISPATCH
#include <immintrin.h>

/* exp(x) for x <= 0 (and NaN) on sixteen lanes, table-driven: with
 * n = 16 k + j = round(16 x / ln 2), exp(x) = 2^k 2^(j/16) e^r and
 * |r| <= ln(2) / 32, where e^r - 1 needs only r + r^2/2 + r^3/6 (remainder
 * below 2^-26 of the result). 2^(j/16) comes from a 16-entry table in one
 * register (vpermps reads the low four bits of t, which are j), together
 * with its rounding error as a fraction of it, c_j, folded into the
 * polynomial: 2^(j/16) (1 + (q + c_j)) rounds once, 0.8 ulp at most over
 * every float32 argument (the AVX2 kernel's degree-6 polynomial: 0.87). 2^k
 * by vscalefps, which rounds a subnormal result once and takes k as
 * floor(n / 16) from t - magic = n / 16 itself. Eleven vector operations
 * an exponential where the AVX2 kernel's takes fifteen; Zen 4 executes
 * each 512-bit one as two halves, so their count sets the loops' speed. */
static const float sa_exp2_sixteenths_f32[16] __attribute__((aligned(64))) = {
    0x1.000000p+0f, 0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f, 0x1.306fe0p+0f, 0x1.3dea64p+0f,
    0x1.4bfdaep+0f, 0x1.5ab07ep+0f, 0x1.6a09e6p+0f, 0x1.7a1148p+0f, 0x1.8ace54p+0f, 0x1.9c4918p+0f,
    0x1.ae89fap+0f, 0x1.c199bep+0f, 0x1.d5818ep+0f, 0x1.ea4afap+0f};
/* (2^(j/16) - table[j]) / table[j], rounded */
static const float sa_exp2_sixteenths_f32_error[16] __attribute__((aligned(64))) = {
    0.0f, 0x1.8d96d4p-25f, -0x1.9c0c22p-27f, 0x1.964904p-25f, 0x1.125002p-25f, 0x1.370be4p-25f,
    -0x1.0a3550p-25f, -0x1.00d8acp-27f, 0x1.26055cp-26f, -0x1.05cb44p-25f, 0x1.67a1cap-28f, 0x1.a3b5e4p-28f,
    -0x1.f9c304p-27f, -0x1.6961b4p-28f, -0x1.a5217cp-28f, 0x1.61428ep-28f};

SA_AVX512_INLINE __m512 sa_avx512_exp_nonpositive(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(0x1.8p19f);          /* 1.5 * 2^19: its ulp is 1/16 */
    const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(SA_EXP_F32_LOG2E), magic);
    const __m512 n16 = _mm512_sub_ps(t, magic);              /* n / 16, exactly */
    __m512 r = _mm512_fnmadd_ps(n16, _mm512_set1_ps(SA_EXP_F32_LN2_HI), x);
    r = _mm512_fnmadd_ps(n16, _mm512_set1_ps(SA_EXP_F32_LN2_LO), r);
    const __m512i j = _mm512_castps_si512(t);
    const __m512 c = _mm512_permutexvar_ps(j, _mm512_load_ps(sa_exp2_sixteenths_f32_error));
    const __m512 p = _mm512_fmadd_ps(_mm512_fmadd_ps(r, _mm512_set1_ps(1.0f / 6.0f), _mm512_set1_ps(0.5f)), r,
                                     _mm512_set1_ps(1.0f));
    const __m512 q = _mm512_fmadd_ps(p, r, c);               /* e^r - 1 + c_j */
    const __m512 v = _mm512_permutexvar_ps(j, _mm512_load_ps(sa_exp2_sixteenths_f32));
    /* x below SA_EXP_F32_MIN (-inf, whose r is NaN, among them) gives +0 */
    return _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(SA_EXP_F32_MIN), _CMP_NLT_UQ),
                                  _mm512_fmadd_ps(v, q, v), n16);
}

/* The first count of sixteen lanes (count < 16). */
SA_AVX512_INLINE __mmask16 sa_avx512_lanes_below(ptrdiff_t count)
{
    return (__mmask16)((1u << count) - 1u);
}

SA_AVX512_INLINE __m512 sa_avx512_exp_scaled_shift(__m512 x, __m512 scale, __m512 m)
{
    return sa_avx512_exp_nonpositive(_mm512_sub_ps(_mm512_mul_ps(x, scale), m));   /* x * scale rounded first */
}

/* The four cache lines SA_PREFETCH_AHEAD bytes past at: asked for by the
 * exponential loops' main steps (four vectors, four lines of x a step), so
 * that the lines of the blocks ahead arrive from memory while this block's
 * exponentials run. Without it a row read from memory waited for each
 * block's lines in its maximum pass and then computed with the memory idle:
 * 1024x32000 logsumexp at one thread (Intel Xeon of 2026-12-07) float64
 * 33.4 -> 26.1 ms, float32 10.9 -> 8.6-9.3. A prefetch never faults, so
 * the address may lie past the row (it is formed as an integer). */
#define SA_PREFETCH_AHEAD 4096
SA_AVX512_INLINE void sa_avx512_prefetch_ahead(const void *at)
{
    const uintptr_t p = (uintptr_t)at + SA_PREFETCH_AHEAD;
    for (int k = 0; k < 4; k++)
        _mm_prefetch((const char *)(p + 64 * k), _MM_HINT_T0);
}

/* sa_avx2_exp_store_sum_f32 on AVX-512. */
SA_AVX512_INLINE float sa_avx512_exp_store_sum_ps(const float *x, float *out, ptrdiff_t len, float scale, float m)
{
    const __m512 s = _mm512_set1_ps(scale), mv = _mm512_set1_ps(m);
    __m512 sum[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    ptrdiff_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m512 e[4];
        sa_avx512_prefetch_ahead(x + i);
        for (int k = 0; k < 4; k++)
            e[k] = sa_avx512_exp_scaled_shift(_mm512_loadu_ps(x + i + 16 * k), s, mv);
        for (int k = 0; k < 4; k++) {
            _mm512_storeu_ps(out + i + 16 * k, e[k]);
            sum[k] = _mm512_add_ps(sum[k], e[k]);
        }
    }
    for (; i + 16 <= len; i += 16) {
        const __m512 e = sa_avx512_exp_scaled_shift(_mm512_loadu_ps(x + i), s, mv);
        _mm512_storeu_ps(out + i, e);
        sum[0] = _mm512_add_ps(sum[0], e);
    }
    if (i < len) {          /* the last len % 16 entries: masked, so nothing past the row is touched */
        const __mmask16 inside = sa_avx512_lanes_below(len - i);
        const __m512 e = _mm512_maskz_mov_ps(inside, sa_avx512_exp_scaled_shift(_mm512_maskz_loadu_ps(inside, x + i), s, mv));
        _mm512_mask_storeu_ps(out + i, inside, e);
        sum[1] = _mm512_add_ps(sum[1], e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(sum[0], sum[1]), _mm512_add_ps(sum[2], sum[3])));
}

/* sa_avx2_exp_rest_count on AVX-512: the entries equal to m counted in
 * *count, the others' exponentials summed and returned, each exponential
 * stored in out when out is given (y with store_y); count NULL: none
 * equals m. */
SA_AVX512_INLINE __m512 sa_avx512_rest_count_step(__m512 x, __m512 s, __m512 mv, __mmask16 inside, float *out,
                                                  __m512 *count, int store_y)
{
    const __m512 y = _mm512_mul_ps(x, s);
    const __m512 e = sa_avx512_exp_nonpositive(_mm512_sub_ps(y, mv));
    if (out)
        _mm512_mask_storeu_ps(out, inside, store_y ? y : e);
    if (!count)
        return _mm512_maskz_mov_ps(inside, e);
    const __mmask16 top = _mm512_mask_cmp_ps_mask(inside, y, mv, _CMP_EQ_OQ);
    *count = _mm512_mask_add_ps(*count, top, *count, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(inside & ~top, e);
}

SA_AVX512_INLINE float sa_avx512_exp_rest_count(const float *x, float *out, ptrdiff_t len, float scale, float m,
                                                float *count, int store_y)
{
    const __m512 s = _mm512_set1_ps(scale), mv = _mm512_set1_ps(m);
    const __mmask16 all = 0xffff;
    const int counted = count != NULL;
    __m512 rest[4], cnt[4];
    for (int k = 0; k < 4; k++)
        rest[k] = cnt[k] = _mm512_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 64 <= len; i += 64) {
        sa_avx512_prefetch_ahead(x + i);
        for (int k = 0; k < 4; k++)
            rest[k] = _mm512_add_ps(rest[k], sa_avx512_rest_count_step(_mm512_loadu_ps(x + i + 16 * k), s, mv, all,
                                                                       out ? out + i + 16 * k : NULL,
                                                                       counted ? &cnt[k] : NULL, store_y));
    }
    for (; i + 16 <= len; i += 16)
        rest[0] = _mm512_add_ps(rest[0], sa_avx512_rest_count_step(_mm512_loadu_ps(x + i), s, mv, all,
                                                                   out ? out + i : NULL, counted ? &cnt[0] : NULL,
                                                                   store_y));
    if (i < len) {          /* the last len % 16 entries, masked */
        const __mmask16 inside = sa_avx512_lanes_below(len - i);
        rest[1] = _mm512_add_ps(rest[1], sa_avx512_rest_count_step(_mm512_maskz_loadu_ps(inside, x + i), s, mv,
                                                                   inside, out ? out + i : NULL,
                                                                   counted ? &cnt[1] : NULL, store_y));
    }
    if (counted)
        *count = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(cnt[0], cnt[1]), _mm512_add_ps(cnt[2], cnt[3])));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(rest[0], rest[1]), _mm512_add_ps(rest[2], rest[3])));
}

/* sa_avx2_block_max_ps on sixteen lanes; the last entries are read
 * through a lane mask, as -inf where they are outside the block. */
SA_AVX512_INLINE float sa_avx512_block_max_ps(const float *x, ptrdiff_t len, float scale, int *bad)
{
    const __m512 s = _mm512_set1_ps(scale), lowest = _mm512_set1_ps(-INFINITY);
    __m512 m[4] = {lowest, lowest, lowest, lowest};
    __mmask16 nan = 0;
    ptrdiff_t i = 0;
    for (; i + 64 <= len; i += 64)
        for (int k = 0; k < 4; k++) {
            const __m512 y = _mm512_mul_ps(_mm512_loadu_ps(x + i + 16 * k), s);
            m[k] = _mm512_max_ps(y, m[k]);
            nan |= _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q);
        }
    for (; i < len; i += 16) {
        const __mmask16 inside = len - i >= 16 ? (__mmask16)0xffff : sa_avx512_lanes_below(len - i);
        const __m512 y = _mm512_mul_ps(_mm512_mask_loadu_ps(lowest, inside, x + i), s);
        m[0] = _mm512_max_ps(y, m[0]);
        nan |= _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q);
    }
    *bad |= nan != 0;
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m[0], m[1]), _mm512_max_ps(m[2], m[3])));
}

/* Each entry point runs scale 1 (no temperature) in a copy of its own,
 * whose multiplies by it fold away (sa_block_max). */
SA_AVX512 static float sa_avx512_exp_store_sum_f32(const float *x, float *out, ptrdiff_t len, float scale, float m)
{
    return scale == 1.0f ? sa_avx512_exp_store_sum_ps(x, out, len, 1.0f, m)
                         : sa_avx512_exp_store_sum_ps(x, out, len, scale, m);
}

SA_AVX512 static float sa_avx512_exp_rest_count_f32(const float *x, float *copy, ptrdiff_t len, float scale, float m,
                                                    float *count)
{
    if (!count)         /* no entry equals m: the copies without the count */
        return scale == 1.0f ? sa_avx512_exp_rest_count(x, copy, len, 1.0f, m, NULL, 1)
                             : sa_avx512_exp_rest_count(x, copy, len, scale, m, NULL, 1);
    return scale == 1.0f ? sa_avx512_exp_rest_count(x, copy, len, 1.0f, m, count, 1)
                         : sa_avx512_exp_rest_count(x, copy, len, scale, m, count, 1);
}

SA_AVX512 static float sa_avx512_exp_store_rest_count_f32(const float *x, float *out, ptrdiff_t len, float m,
                                                          float *count)
{
    return sa_avx512_exp_rest_count(x, out, len, 1.0f, m, count, 0);
}

SA_AVX512 static float sa_avx512_block_max_f32(const float *x, ptrdiff_t len, float scale, int *bad)
{
    return scale == 1.0f ? sa_avx512_block_max_ps(x, len, 1.0f, bad) : sa_avx512_block_max_ps(x, len, scale, bad);
}

/* float64: the loops of _softmax_avx2.h's float64 section on eight lanes,
 * with an exponential of its own. AVX-512 looks up a 16-entry table in
 * registers with one instruction (vpermt2pd), so exp(x) = 2^k 2^(j/16) e^r
 * with n = 16 k + j = round(16 x / ln 2) and |r| <= ln(2) / 32, where e^r
 * needs only a polynomial of degree 6: r + r^2 q(r), q of degree 4 fitted
 * by the Remez algorithm to (e^r - 1 - r) / r^2 with the relative error of
 * e^r as the weight (2^-56.3 at most on the interval; the degree-7 Taylor
 * polynomial it replaced, 2^-59.5, took one multiply-add more). That is
 * eleven multiply-adds an exponential where the AVX2 kernel's degree-11
 * polynomial takes sixteen; Zen 4 executes each 512-bit one as two halves,
 * and the Intel Xeon of 2026-12-06 has one 512-bit multiply-add port, so
 * their count sets the loops' speed (degree 6 against 7: statistics passes
 * 4-5% faster there). 2^(j/16) is kept as hi + lo and the result formed as
 * hi + (hi p + lo), p = e^r - 1: 0.61 ulp at most over 60000 arguments in
 * [-708, -40] against mpmath (0.54 with the Taylor polynomial; the AVX2
 * kernel 1.02). The exponentials therefore differ from the AVX2 loops' by
 * an ulp or so, and the sums also in their order. 2^k by one vscalefpd and
 * d's error by Fast2Sum (sa_avx512_exp_f64, sa_avx512_exp_shift_f64) took a
 * softmax row of 32000 entries from 26.4 to 24.6 us on that Xeon. */

static const double sa_exp2_sixteenths_hi[16] __attribute__((aligned(64))) = {
    0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
    0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0,
    0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
    0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0};
static const double sa_exp2_sixteenths_lo[16] __attribute__((aligned(64))) = {
    0.0, 0x1.8a62e4adc610bp-54, -0x1.19041b9d78a76p-55, 0x1.9b07eb6c70573p-54,
    0x1.6f46ad23182e4p-55, 0x1.ada0911f09ebcp-55, 0x1.d4397afec42e2p-56, 0x1.6324c054647adp-54,
    -0x1.bdd3413b26456p-54, -0x1.41577ee04992fp-55, 0x1.6e9f156864b27p-54, 0x1.c7c46b071f2bep-56,
    0x1.7a1cd345dcc81p-54, 0x1.11065895048ddp-55, 0x1.2ed02d75b3707p-55, -0x1.e9c23179c2893p-54};

SA_AVX512_INLINE __m512d sa_avx512_pair_pd(__m512d r, double lo, double hi)
{
    return _mm512_fmadd_pd(_mm512_set1_pd(hi), r, _mm512_set1_pd(lo));
}

/* exp(d) (1 + err) for d <= 0 (and NaN), err the rounding error of d when
 * corrected (a literal at every call). t = d log2(e) + 1.5 * 2^48 rounds to
 * a multiple of 1/16 (the ulp there), so t - 1.5 * 2^48 is n / 16 exactly
 * and t's low four bits are j, which vpermt2pd reads. 2^k = 2^floor(n / 16)
 * by vscalefpd, which floors its second operand itself and rounds a
 * subnormal result once: one instruction for every d, where adding k to the
 * exponent field took three and held only for normal results. The
 * correction goes in before the scaling, so a result of 0 (d below
 * SA_EXP_F64_MIN, -inf among them, whose err is NaN) stays 0 through the
 * mask. */
SA_AVX512_INLINE __m512d sa_avx512_exp_f64(__m512d d, __m512d err, int corrected)
{
    const __m512d magic = _mm512_set1_pd(0x1.8p48);
    const __m512d t = _mm512_fmadd_pd(d, _mm512_set1_pd(SA_EXP_F64_LOG2E), magic);
    const __m512d n16 = _mm512_sub_pd(t, magic);
    __m512d r = _mm512_fnmadd_pd(n16, _mm512_set1_pd(SA_EXP_F64_LN2_HI), d);     /* exact: 32 + 15 bits */
    r = _mm512_fnmadd_pd(n16, _mm512_set1_pd(SA_EXP_F64_LN2_LO), r);
    const __m512d r2 = _mm512_mul_pd(r, r);
    /* q(r) = c2 + c3 r + ... + c6 r^4 (the Remez fit above), by pairs */
    const __m512d q = _mm512_fmadd_pd(_mm512_fmadd_pd(_mm512_set1_pd(0x1.6c14c6ebcb2c3p-10), r2,
                                                      sa_avx512_pair_pd(r, 0x1.55555558fca5ep-5, 0x1.11123aae4efeap-7)),
                                      r2, sa_avx512_pair_pd(r, 0x1.fffffffffffb9p-2, 0x1.555555548f893p-3));
    const __m512d p = _mm512_fmadd_pd(q, r2, r);
    const __m512i j = _mm512_castpd_si512(t);
    const __m512d hi = _mm512_permutex2var_pd(_mm512_load_pd(sa_exp2_sixteenths_hi), j,
                                              _mm512_load_pd(sa_exp2_sixteenths_hi + 8));
    const __m512d lo = _mm512_permutex2var_pd(_mm512_load_pd(sa_exp2_sixteenths_lo), j,
                                              _mm512_load_pd(sa_exp2_sixteenths_lo + 8));
    __m512d v = _mm512_add_pd(hi, _mm512_fmadd_pd(hi, p, lo));
    if (corrected)
        v = _mm512_fmadd_pd(v, err, v);
    return _mm512_maskz_scalef_pd(_mm512_cmp_pd_mask(d, _mm512_set1_pd(SA_EXP_F64_MIN), _CMP_NLT_UQ), v, n16);
}

/* exp(y - m), TwoSum-corrected where corrected (a literal at every call),
 * as sa_avx2_exp_shift_f64. The error of d = y - m is found by Fast2Sum on
 * the two operands ordered by magnitude (vrangepd picks the larger and the
 * smaller with their signs): five operations with d, where TwoSum takes
 * six. */
SA_AVX512_INLINE __m512d sa_avx512_exp_shift_f64(__m512d y, __m512d m, int corrected)
{
    if (!corrected)
        return sa_avx512_exp_f64(_mm512_sub_pd(y, m), _mm512_setzero_pd(), 0);
    const __m512d nm = _mm512_xor_pd(m, _mm512_set1_pd(-0.0));
    const __m512d big = _mm512_range_pd(y, nm, 0x7);       /* the larger magnitude, its own sign */
    const __m512d small = _mm512_range_pd(y, nm, 0x6);     /* the smaller */
    const __m512d d = _mm512_add_pd(big, small);            /* y - m, rounded as by a subtraction */
    return sa_avx512_exp_f64(d, _mm512_sub_pd(small, _mm512_sub_pd(d, big)), 1);
}

SA_AVX512_INLINE __mmask8 sa_avx512_lanes_below_pd(ptrdiff_t count)
{
    return (__mmask8)((1u << count) - 1u);
}

/* sa_avx512_block_max_ps for double. */
SA_AVX512_INLINE double sa_avx512_block_max_pd(const double *x, ptrdiff_t len, double scale, int *bad)
{
    const __m512d s = _mm512_set1_pd(scale), lowest = _mm512_set1_pd(-INFINITY);
    __m512d m[4] = {lowest, lowest, lowest, lowest};
    __mmask8 nan = 0;
    ptrdiff_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (int k = 0; k < 4; k++) {
            const __m512d y = _mm512_mul_pd(_mm512_loadu_pd(x + i + 8 * k), s);
            m[k] = _mm512_max_pd(y, m[k]);
            nan |= _mm512_cmp_pd_mask(y, y, _CMP_UNORD_Q);
        }
    for (; i < len; i += 8) {
        const __mmask8 inside = len - i >= 8 ? (__mmask8)0xff : sa_avx512_lanes_below_pd(len - i);
        const __m512d y = _mm512_mul_pd(_mm512_mask_loadu_pd(lowest, inside, x + i), s);
        m[0] = _mm512_max_pd(y, m[0]);
        nan |= _mm512_cmp_pd_mask(y, y, _CMP_UNORD_Q);
    }
    *bad |= nan != 0;
    return _mm512_reduce_max_pd(_mm512_max_pd(_mm512_max_pd(m[0], m[1]), _mm512_max_pd(m[2], m[3])));
}

/* sa_avx2_exp_store_sum_f64 on AVX-512 (TwoSum-corrected). */
SA_AVX512_INLINE double sa_avx512_exp_store_sum_pd(const double *x, double *out, ptrdiff_t len, double scale,
                                                   double m)
{
    const __m512d s = _mm512_set1_pd(scale), mv = _mm512_set1_pd(m);
    __m512d sum[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    ptrdiff_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m512d e[4];
        sa_avx512_prefetch_ahead(x + i);
        for (int k = 0; k < 4; k++)
            e[k] = sa_avx512_exp_shift_f64(_mm512_mul_pd(_mm512_loadu_pd(x + i + 8 * k), s), mv, 1);
        for (int k = 0; k < 4; k++) {
            _mm512_storeu_pd(out + i + 8 * k, e[k]);
            sum[k] = _mm512_add_pd(sum[k], e[k]);
        }
    }
    for (; i + 8 <= len; i += 8) {
        const __m512d e = sa_avx512_exp_shift_f64(_mm512_mul_pd(_mm512_loadu_pd(x + i), s), mv, 1);
        _mm512_storeu_pd(out + i, e);
        sum[0] = _mm512_add_pd(sum[0], e);
    }
    if (i < len) {          /* the last len % 8 entries, masked */
        const __mmask8 inside = sa_avx512_lanes_below_pd(len - i);
        const __m512d y = _mm512_mul_pd(_mm512_maskz_loadu_pd(inside, x + i), s);
        const __m512d e = _mm512_maskz_mov_pd(inside, sa_avx512_exp_shift_f64(y, mv, 1));
        _mm512_mask_storeu_pd(out + i, inside, e);
        sum[1] = _mm512_add_pd(sum[1], e);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(sum[0], sum[1]), _mm512_add_pd(sum[2], sum[3])));
}

/* sa_avx2_exp_rest_count_pd on AVX-512: the entries equal to m counted
 * through a lane mask, the others' exponentials summed; count NULL: none
 * equals m. */
SA_AVX512_INLINE __m512d sa_avx512_rest_count_add_pd(__m512d y, __m512d mv, __m512d e, __mmask8 inside,
                                                     double *out, __m512d *count, int store_y)
{
    if (out)
        _mm512_mask_storeu_pd(out, inside, store_y ? y : e);
    if (!count)
        return _mm512_maskz_mov_pd(inside, e);
    const __mmask8 top = _mm512_mask_cmp_pd_mask(inside, y, mv, _CMP_EQ_OQ);
    *count = _mm512_mask_add_pd(*count, top, *count, _mm512_set1_pd(1.0));
    return _mm512_maskz_mov_pd(inside & ~top, e);
}

SA_AVX512_INLINE double sa_avx512_exp_rest_count_pd(const double *x, double *out, ptrdiff_t len, double scale,
                                                    double m, int corrected, double *count, int store_y)
{
    const __m512d s = _mm512_set1_pd(scale), mv = _mm512_set1_pd(m);
    const __mmask8 all = 0xff;
    const int counted = count != NULL;
    __m512d rest[4], cnt[4];
    for (int k = 0; k < 4; k++)
        rest[k] = cnt[k] = _mm512_setzero_pd();
    ptrdiff_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m512d y[4], e[4];
        sa_avx512_prefetch_ahead(x + i);
        for (int k = 0; k < 4; k++) {
            y[k] = _mm512_mul_pd(_mm512_loadu_pd(x + i + 8 * k), s);
            e[k] = sa_avx512_exp_shift_f64(y[k], mv, corrected);
        }
        for (int k = 0; k < 4; k++)
            rest[k] = _mm512_add_pd(rest[k], sa_avx512_rest_count_add_pd(y[k], mv, e[k], all,
                                                                         out ? out + i + 8 * k : NULL,
                                                                         counted ? &cnt[k] : NULL, store_y));
    }
    for (; i + 8 <= len; i += 8) {
        const __m512d y = _mm512_mul_pd(_mm512_loadu_pd(x + i), s);
        const __m512d e = sa_avx512_exp_shift_f64(y, mv, corrected);
        rest[0] = _mm512_add_pd(rest[0], sa_avx512_rest_count_add_pd(y, mv, e, all, out ? out + i : NULL,
                                                                     counted ? &cnt[0] : NULL, store_y));
    }
    if (i < len) {          /* the last len % 8 entries, masked */
        const __mmask8 inside = sa_avx512_lanes_below_pd(len - i);
        const __m512d y = _mm512_mul_pd(_mm512_maskz_loadu_pd(inside, x + i), s);
        const __m512d e = _mm512_maskz_mov_pd(inside, sa_avx512_exp_shift_f64(y, mv, corrected));
        rest[1] = _mm512_add_pd(rest[1], sa_avx512_rest_count_add_pd(y, mv, e, inside, out ? out + i : NULL,
                                                                     counted ? &cnt[1] : NULL, store_y));
    }
    if (counted)
        *count = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(cnt[0], cnt[1]), _mm512_add_pd(cnt[2], cnt[3])));
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(rest[0], rest[1]), _mm512_add_pd(rest[2], rest[3])));
}

/* scale 1 in a copy of its own, as for float32. */
SA_AVX512 static double sa_avx512_exp_store_sum_f64(const double *x, double *out, ptrdiff_t len, double scale,
                                                    double m)
{
    return scale == 1.0 ? sa_avx512_exp_store_sum_pd(x, out, len, 1.0, m)
                        : sa_avx512_exp_store_sum_pd(x, out, len, scale, m);
}

/* The statistics entry points' copies: scale 1 and the count each in a
 * copy of their own (corrected a literal at each call). */
SA_AVX512_INLINE double sa_avx512_exp_rest_count_copies_f64(const double *x, double *copy, ptrdiff_t len, double scale,
                                                       double m, int corrected, double *count)
{
    if (!count)         /* no entry equals m: the copies without the count */
        return scale == 1.0 ? sa_avx512_exp_rest_count_pd(x, copy, len, 1.0, m, corrected, NULL, 1)
                            : sa_avx512_exp_rest_count_pd(x, copy, len, scale, m, corrected, NULL, 1);
    return scale == 1.0 ? sa_avx512_exp_rest_count_pd(x, copy, len, 1.0, m, corrected, count, 1)
                        : sa_avx512_exp_rest_count_pd(x, copy, len, scale, m, corrected, count, 1);
}

SA_AVX512 static double sa_avx512_exp_rest_count_shifted_f64(const double *x, double *copy, ptrdiff_t len, double scale,
                                                   double m, double *count)
{
    return sa_avx512_exp_rest_count_copies_f64(x, copy, len, scale, m, 1, count);
}

SA_AVX512 static double sa_avx512_exp_rest_count_rounded_f64(const double *x, double *copy, ptrdiff_t len, double scale,
                                                   double m, double *count)
{
    return sa_avx512_exp_rest_count_copies_f64(x, copy, len, scale, m, 0, count);
}

SA_AVX512 static inline double sa_avx512_exp_store_rest_count_f64(const double *x, double *out, ptrdiff_t len,
                                                                  double m, double *count)
{
    return sa_avx512_exp_rest_count_pd(x, out, len, 1.0, m, 0, count, 0);
}

SA_AVX512 static double sa_avx512_block_max_f64(const double *x, ptrdiff_t len, double scale, int *bad)
{
    return scale == 1.0 ? sa_avx512_block_max_pd(x, len, 1.0, bad) : sa_avx512_block_max_pd(x, len, scale, bad);
}

/* The softmax family's last passes over a block already in cache, which
 * the v3 code would run on 256-bit vectors: out *= f (softmax's scale) and
 * y = (y - a) - b in place (log_softmax's, whose y its statistics pass
 * stored). Two subtractions and one multiply per entry, as the portable
 * loops do, so the bits are theirs; half the instructions. Softmax of
 * 64x32000 float32, one thread (C harness): 0.85-0.89 -> 0.79-0.82 ms.
 * One loop for both passes (shift, a literal, picks y * f or (y - a) - b):
 * four vectors a step, then the rest, the very last vector masked. */
SA_AVX512_INLINE __m512 sa_avx512_last_step_ps(__m512 v, __m512 f, __m512 a, __m512 b, int shift)
{
    return shift ? _mm512_sub_ps(_mm512_sub_ps(v, a), b) : _mm512_mul_ps(v, f);
}

SA_AVX512_INLINE void sa_avx512_last_pass_ps(float *y, ptrdiff_t len, float f, float a, float b, int shift)
{
    const __m512 fv = _mm512_set1_ps(f), av = _mm512_set1_ps(a), bv = _mm512_set1_ps(b);
    ptrdiff_t i = 0;
    for (; i + 64 <= len; i += 64)
        for (int k = 0; k < 4; k++)
            _mm512_storeu_ps(y + i + 16 * k, sa_avx512_last_step_ps(_mm512_loadu_ps(y + i + 16 * k), fv, av, bv, shift));
    for (; i < len; i += 16) {
        const __mmask16 inside = len - i >= 16 ? (__mmask16)0xffff : sa_avx512_lanes_below(len - i);
        _mm512_mask_storeu_ps(y + i, inside,
                              sa_avx512_last_step_ps(_mm512_maskz_loadu_ps(inside, y + i), fv, av, bv, shift));
    }
}

SA_AVX512_INLINE __m512d sa_avx512_last_step_pd(__m512d v, __m512d f, __m512d a, __m512d b, int shift)
{
    return shift ? _mm512_sub_pd(_mm512_sub_pd(v, a), b) : _mm512_mul_pd(v, f);
}

SA_AVX512_INLINE void sa_avx512_last_pass_pd(double *y, ptrdiff_t len, double f, double a, double b, int shift)
{
    const __m512d fv = _mm512_set1_pd(f), av = _mm512_set1_pd(a), bv = _mm512_set1_pd(b);
    ptrdiff_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (int k = 0; k < 4; k++)
            _mm512_storeu_pd(y + i + 8 * k, sa_avx512_last_step_pd(_mm512_loadu_pd(y + i + 8 * k), fv, av, bv, shift));
    for (; i < len; i += 8) {
        const __mmask8 inside = len - i >= 8 ? (__mmask8)0xff : sa_avx512_lanes_below_pd(len - i);
        _mm512_mask_storeu_pd(y + i, inside,
                              sa_avx512_last_step_pd(_mm512_maskz_loadu_pd(inside, y + i), fv, av, bv, shift));
    }
}

SA_AVX512 static void sa_avx512_scale_f32(float *out, ptrdiff_t len, float f)
{
    sa_avx512_last_pass_ps(out, len, f, 0.0f, 0.0f, 0);
}

SA_AVX512 static void sa_avx512_shift_twice_f32(float *y, ptrdiff_t len, float a, float b)
{
    sa_avx512_last_pass_ps(y, len, 1.0f, a, b, 1);
}

SA_AVX512 static void sa_avx512_scale_f64(double *out, ptrdiff_t len, double f)
{
    sa_avx512_last_pass_pd(out, len, f, 0.0, 0.0, 0);
}

SA_AVX512 static void sa_avx512_shift_twice_f64(double *y, ptrdiff_t len, double a, double b)
{
    sa_avx512_last_pass_pd(y, len, 1.0, a, b, 1);
}

/* sa_avx2_cols_exp_f64 on eight lanes. */
SA_AVX512_INLINE void sa_avx512_cols_exp_step_pd(const double *row, double *out, const double *m, double *rest,
                                                 double *count, __m512d s, __mmask8 inside, int corrected)
{
    const __m512d y = _mm512_mul_pd(_mm512_maskz_loadu_pd(inside, row), s);
    const __m512d mv = _mm512_maskz_loadu_pd(inside, m);
    const __m512d e = sa_avx512_exp_shift_f64(y, mv, corrected);
    if (out)
        _mm512_mask_storeu_pd(out, inside, e);
    const __mmask8 top = _mm512_mask_cmp_pd_mask(inside, y, mv, _CMP_EQ_OQ);
    const __m512d r = _mm512_maskz_loadu_pd(inside, rest), c = _mm512_maskz_loadu_pd(inside, count);
    _mm512_mask_storeu_pd(rest, inside & ~top, _mm512_add_pd(r, e));
    _mm512_mask_storeu_pd(count, top, _mm512_add_pd(c, _mm512_set1_pd(1.0)));
}

SA_AVX512 static void sa_avx512_cols_exp_f64(const double *row, double *out, const double *m, double *rest,
                                             double *count, ptrdiff_t width, double scale, int corrected)
{
    const __m512d s = _mm512_set1_pd(scale);
    ptrdiff_t j = 0;
    for (; j + 8 <= width; j += 8)
        sa_avx512_cols_exp_step_pd(row + j, out ? out + j : NULL, m + j, rest + j, count + j, s, 0xff, corrected);
    if (j < width)
        sa_avx512_cols_exp_step_pd(row + j, out ? out + j : NULL, m + j, rest + j, count + j, s,
                                   sa_avx512_lanes_below_pd(width - j), corrected);
}

#endif /* SA_X86_DISPATCH */
#endif /* SOFTARRAY_SOFTMAX_AVX512_H */
