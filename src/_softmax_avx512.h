/*
 * The float32 exponential loops of _softmax_avx2.h on AVX-512 (F, DQ):
 * sixteen lanes per vector, and the last len % 16 entries through a lane
 * mask (__mmask16), which AVX-512's loads, stores and arithmetic take
 * directly, where AVX2 needs maskload/maskstore. Per lane the arithmetic is
 * sa_avx2_exp_nonpositive's, operation for operation, so every exponential
 * equals the AVX2 kernel's bit for bit; only the order of the sums differs.
 */
#ifndef SOFTARRAY_SOFTMAX_AVX512_H
#define SOFTARRAY_SOFTMAX_AVX512_H

#include <stddef.h>
#include "_simd.h"

/* Run where the module runs the AVX-512 code (sa_simd_v4, _simd.h). */
#if SA_X86_DISPATCH
#include <immintrin.h>

#define SA_AVX512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define SA_AVX512_INLINE static inline __attribute__((target("avx512f,avx512dq,avx2,fma"), always_inline))

/* sa_avx2_exp_nonpositive on sixteen lanes. */
SA_AVX512_INLINE __m512 sa_avx512_exp_nonpositive(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(SA_MAGIC32);
    const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(SA_EXP_F32_LOG2E), magic), magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SA_EXP_F32_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SA_EXP_F32_LN2_LO), r);
    __m512 p = _mm512_set1_ps(SA_EXP_F32_P6);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SA_EXP_F32_P5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SA_EXP_F32_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SA_EXP_F32_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SA_EXP_F32_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i biased = _mm512_castps_si512(_mm512_add_ps(n, _mm512_set1_ps(SA_MAGIC32 + 127.0f + 64.0f)));
    p = _mm512_mul_ps(_mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(biased, 23))), _mm512_set1_ps(0x1p-64f));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(SA_EXP_F32_MIN), _CMP_NLT_UQ), p);
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

/* sa_avx2_exp_store_sum_f32 on AVX-512. */
SA_AVX512 static float sa_avx512_exp_store_sum_f32(const float *x, float *out, ptrdiff_t len, float scale, float m)
{
    const __m512 s = _mm512_set1_ps(scale), mv = _mm512_set1_ps(m);
    __m512 sum[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    ptrdiff_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m512 e[4];
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
 * stored in out when out is given. */
SA_AVX512_INLINE __m512 sa_avx512_rest_count_step(__m512 x, __m512 s, __m512 mv, __mmask16 inside, float *out,
                                                  __m512 *count)
{
    const __m512 y = _mm512_mul_ps(x, s);
    const __mmask16 top = _mm512_mask_cmp_ps_mask(inside, y, mv, _CMP_EQ_OQ);
    const __m512 e = sa_avx512_exp_nonpositive(_mm512_sub_ps(y, mv));
    if (out)
        _mm512_mask_storeu_ps(out, inside, e);
    *count = _mm512_mask_add_ps(*count, top, *count, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(inside & ~top, e);
}

SA_AVX512_INLINE float sa_avx512_exp_rest_count(const float *x, float *out, ptrdiff_t len, float scale, float m,
                                                float *count)
{
    const __m512 s = _mm512_set1_ps(scale), mv = _mm512_set1_ps(m);
    const __mmask16 all = 0xffff;
    __m512 rest[4], cnt[4];
    for (int k = 0; k < 4; k++)
        rest[k] = cnt[k] = _mm512_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 64 <= len; i += 64)
        for (int k = 0; k < 4; k++)
            rest[k] = _mm512_add_ps(rest[k], sa_avx512_rest_count_step(_mm512_loadu_ps(x + i + 16 * k), s, mv, all,
                                                                       out ? out + i + 16 * k : NULL, &cnt[k]));
    for (; i + 16 <= len; i += 16)
        rest[0] = _mm512_add_ps(rest[0], sa_avx512_rest_count_step(_mm512_loadu_ps(x + i), s, mv, all,
                                                                   out ? out + i : NULL, &cnt[0]));
    if (i < len) {          /* the last len % 16 entries, masked */
        const __mmask16 inside = sa_avx512_lanes_below(len - i);
        rest[1] = _mm512_add_ps(rest[1], sa_avx512_rest_count_step(_mm512_maskz_loadu_ps(inside, x + i), s, mv,
                                                                   inside, out ? out + i : NULL, &cnt[1]));
    }
    *count = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(cnt[0], cnt[1]), _mm512_add_ps(cnt[2], cnt[3])));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(rest[0], rest[1]), _mm512_add_ps(rest[2], rest[3])));
}

SA_AVX512 static float sa_avx512_exp_rest_count_f32(const float *x, ptrdiff_t len, float scale, float m, float *count)
{
    return sa_avx512_exp_rest_count(x, NULL, len, scale, m, count);
}

SA_AVX512 static float sa_avx512_exp_store_rest_count_f32(const float *x, float *out, ptrdiff_t len, float m,
                                                          float *count)
{
    return sa_avx512_exp_rest_count(x, out, len, 1.0f, m, count);
}

#endif /* SA_X86_DISPATCH */
#endif /* SOFTARRAY_SOFTMAX_AVX512_H */
