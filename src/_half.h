/*
 * Half precision (IEEE float16 and bfloat16) to and from float32, a row at
 * a time, for the kernels that read half-precision arrays directly: they
 * widen a chunk of rows into a float32 scratch buffer that stays in cache,
 * run the float32 kernel on it, and round each result once to the input's
 * type, as torch computes half precision on the CPU (half arithmetic would
 * round every step and overflow at 65504). Widening is exact; narrowing
 * rounds to nearest, ties to even, with overflow to infinity, gradual
 * underflow, and NaN kept NaN (quiet), as NumPy's and ml_dtypes' casts and
 * torch's do.
 *
 * The portable conversions are branch-free integer and float operations
 * that the compiler vectorizes; the x86-64-v3 path converts eight at a time
 * with intrinsics instead, float16 by the F16C instructions (every CPU with
 * AVX2 and FMA has them).
 */
#ifndef SOFTARRAY_HALF_H
#define SOFTARRAY_HALF_H

#include <stddef.h>
#include <stdint.h>
#include "_simd.h"

/* Floats of a chunk's float32 scratch, per thread (256 KiB): a chunk of
 * rows is widened, computed and narrowed while it stays in L2. */
#define SA_HALF_SCRATCH_FLOATS (1 << 16)

enum sa_half_kind {
    SA_HALF_FLOAT16 = 0,
    SA_HALF_BFLOAT16 = 1,
};

SA_INLINE float sa_bf16_to_f32(uint16_t h) { return sa_from_bits32((uint32_t)h << 16); }

SA_INLINE uint16_t sa_f32_to_bf16(float f)
{
    const uint32_t u = sa_to_bits32(f);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;   /* to nearest, ties to even */
    const int nan = (u & 0x7fffffffu) > 0x7f800000u;
    return (uint16_t)(nan ? (u >> 16) | 0x0040u : rounded);             /* a NaN stays a (quiet) NaN */
}

/* float16 bits e:m (5:10) moved to float32's e:m positions read as a float
 * 2^-112 times the value, normal or subnormal alike; times 2^112 restores
 * it. Infinities and NaNs (e = 31) take the all-ones float32 exponent. */
SA_INLINE float sa_f16_to_f32(uint16_t h)
{
    const uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    const uint32_t em = (uint32_t)h & 0x7fffu;
    const float finite = sa_from_bits32(em << 13) * 0x1p112f;
    const uint32_t bits = em >= 0x7c00u ? (em << 13) | 0x7f800000u : sa_to_bits32(finite);
    return sa_from_bits32(bits | sign);
}

/* Normal results: the exponent rebiased (127 - 15) and the 13 dropped
 * mantissa bits rounded to nearest even in integer arithmetic; results
 * below float16's smallest normal (2^-14): 0.5 + |f| rounds |f| to a
 * multiple of 2^-24 (float16's subnormal step) in the float adder, and the
 * low bits of the sum are then the float16 encoding. */
SA_INLINE uint16_t sa_f32_to_f16(float f)
{
    const uint32_t u = sa_to_bits32(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    const uint32_t normal = (a - 0x38000000u + 0x0fffu + ((a >> 13) & 1u)) >> 13;
    const uint32_t tiny = sa_to_bits32(sa_from_bits32(a) + 0.5f) - 0x3f000000u;
    uint32_t h = a < 0x38800000u ? tiny : normal;
    h = a >= 0x477ff000u ? 0x7c00u : h;         /* 65520 and above round to infinity */
    h = a > 0x7f800000u ? 0x7e00u : h;          /* NaN */
    return (uint16_t)(h | sign);
}

SA_INLINE void sa_half_widen_portable(const uint16_t *h, float *f, ptrdiff_t n, int kind)
{
    if (kind == SA_HALF_BFLOAT16) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++)
            f[i] = sa_bf16_to_f32(h[i]);
    } else {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++)
            f[i] = sa_f16_to_f32(h[i]);
    }
}

SA_INLINE void sa_half_narrow_portable(const float *f, uint16_t *h, ptrdiff_t n, int kind)
{
    if (kind == SA_HALF_BFLOAT16) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++)
            h[i] = sa_f32_to_bf16(f[i]);
    } else {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++)
            h[i] = sa_f32_to_f16(f[i]);
    }
}

#if SA_X86_DISPATCH
#include <immintrin.h>
#define SA_F16C __attribute__((target("avx2,fma,f16c")))

SA_F16C static void sa_f16c_widen(const uint16_t *h, float *f, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++)
        f[i] = sa_f16_to_f32(h[i]);
}

SA_F16C static void sa_f16c_narrow(const float *f, uint16_t *h, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(f + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        h[i] = sa_f32_to_f16(f[i]);
}

SA_F16C static void sa_avx2_bf16_widen(const uint16_t *h, float *f, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i)));
        _mm256_storeu_ps(f + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; i++)
        f[i] = sa_bf16_to_f32(h[i]);
}

/* sa_f32_to_bf16 eight at a time (the compiler does not vectorize its
 * select in the baseline build this file's callers are compiled in). */
SA_F16C static void sa_avx2_bf16_narrow(const float *f, uint16_t *h, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(f + i);
        const __m256i u = _mm256_castps_si256(v);
        const __m256i high = _mm256_srli_epi32(u, 16);
        const __m256i bias = _mm256_add_epi32(_mm256_and_si256(high, _mm256_set1_epi32(1)), _mm256_set1_epi32(0x7fff));
        const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
        const __m256i quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
        const __m256i r = _mm256_blendv_epi8(rounded, quiet, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
        _mm_storeu_si128((__m128i *)(h + i), _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
    }
    for (; i < n; i++)
        h[i] = sa_f32_to_bf16(f[i]);
}
#endif

/* f[i] = h[i] as float32 for i < n. */
static inline void sa_half_widen(const uint16_t *h, float *f, ptrdiff_t n, int kind)
{
#if SA_X86_DISPATCH
    if (sa_simd_v3) {
        kind == SA_HALF_FLOAT16 ? sa_f16c_widen(h, f, n) : sa_avx2_bf16_widen(h, f, n);
        return;
    }
#endif
    sa_half_widen_portable(h, f, n, kind);
}

/* h[i] = f[i] rounded to the half type for i < n. */
static inline void sa_half_narrow(const float *f, uint16_t *h, ptrdiff_t n, int kind)
{
#if SA_X86_DISPATCH
    if (sa_simd_v3) {
        kind == SA_HALF_FLOAT16 ? sa_f16c_narrow(f, h, n) : sa_avx2_bf16_narrow(f, h, n);
        return;
    }
#endif
    sa_half_narrow_portable(f, h, n, kind);
}

#endif /* SOFTARRAY_HALF_H */
