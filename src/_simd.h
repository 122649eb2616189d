/*
 * Vectorizable elementary functions for float and double.
 *
 * Every function here is a branch-free, call-free `static inline` so that GCC
 * and Clang can inline it into an `omp simd` loop and emit packed code (SSE2
 * in the baseline build, AVX2+FMA in the x86-64-v3 copy, see SA_DISPATCHED).
 * Rounding to an integer and building powers of two use the "magic number"
 * trick (adding 1.5 * 2^mantissa_bits) instead of float->int conversions,
 * which AVX2 lacks for 64-bit integers and which are undefined for NaN in C.
 *
 * Accuracy (through the public functions, against mpmath, in
 * tests/test_softmax.py::test_ulp_accuracy_against_mpmath):
 *   sa_exp_f64 / sa_log1p_f64 / sa_log_f64: within 2 ulp; the f32 ones: within 2 ulp.
 * Special values follow IEEE: exp(-inf) = 0, exp(+inf) = +inf, NaN propagates,
 * results in the subnormal range are gradual (not flushed to zero).
 */
#ifndef SOFTARRAY_SIMD_H
#define SOFTARRAY_SIMD_H

#include <stdint.h>
#include <math.h>

/* Kernel dispatch. On x86-64 with GCC or Clang, code for x86-64-v3 (AVX2,
 * FMA, BMI2) exists beside the baseline code: the AVX2 intrinsics kernels
 * always, and with SA_ENABLE_CLONES (meson.build) a v3 copy of every entry
 * point declared with SA_DISPATCHED. One flag per module, set once when the
 * module is loaded, says which code runs: the v3 code where the CPU has it,
 * unless the environment variable SOFTARRAY_SIMD=baseline asks for the
 * baseline code (so that tests can run it on CPUs that would never pick it;
 * softarray/_lib/__init__.py rejects other values before any module loads).
 * A second flag, on CPUs with AVX-512 (F, DQ, BW, VL: x86-64-v4), runs the
 * exponential loops' AVX-512 kernels (_softmax_avx512.h) in the v3
 * code, unless SOFTARRAY_SIMD=avx2 (or baseline) asks for the AVX2 ones.
 * GCC's target_clones would choose the same copies, but by an ifunc resolver
 * that no environment variable can steer. Elsewhere: one portable build. */
#if defined(__x86_64__) && defined(__GNUC__)
#  define SA_X86_DISPATCH 1
#else
#  define SA_X86_DISPATCH 0
#endif
#if SA_X86_DISPATCH && defined(SA_ENABLE_CLONES) && defined(__linux__)
#  define SA_HAS_CLONES 1
#else
#  define SA_HAS_CLONES 0
#endif

#if defined(__GNUC__)
#  define SA_INLINE static inline __attribute__((always_inline))
#else
#  define SA_INLINE static inline
#endif

/* SA_CAT(name, f32) is name_f32. The type-generic bodies (the _impl.h files),
 * each included once per type with SA_SUF defined as f32 or f64, name their
 * functions SA_FN(name): sa_rows_f32, sa_rows_f64, ... */
#define SA_CAT2(a, b) a##_##b
#define SA_CAT(a, b) SA_CAT2(a, b)
#define SA_FN(name) SA_CAT(name, SA_SUF)

#if SA_X86_DISPATCH
#include <stdlib.h>
#include <string.h>

static int sa_cpu_v3;       /* this CPU runs x86-64-v3 code */
static int sa_simd_v3;      /* ... and this module runs it */
static int sa_cpu_v4;       /* this CPU has AVX-512 too */
static int sa_simd_v4;      /* ... and this module's exponential loops use it */

/* Functions that run only where sa_simd_v4 is set (the AVX-512 exponential
 * loops, top-k's sorting network); the inline ones go into such functions.
 * POPCNT, which every CPU with AVX-512 has, counts a compare's lanes. */
#define SA_AVX512 __attribute__((target("avx512f,avx512dq,avx2,fma,popcnt")))
#define SA_AVX512_INLINE static inline __attribute__((target("avx512f,avx512dq,avx2,fma,popcnt"), always_inline))

/* GCC tests the whole x86-64-v3 set, as its target_clones resolver does;
 * Clang 14's builtin cannot name F16C, MOVBE and LZCNT, which every CPU with
 * the four tested here has. */
static int sa_cpu_supports_v3(void)
{
    __builtin_cpu_init();
#if defined(__clang__) || __GNUC__ < 12
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
           && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
#else
    return __builtin_cpu_supports("x86-64-v3");
#endif
}

/* Named one by one, as sa_cpu_supports_v3 does, for Clang and GCC < 12. */
static int sa_cpu_supports_v4(void)
{
    return sa_cpu_supports_v3() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
           && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

/* Runs when the module is loaded (dlopen, inside `import softarray`),
 * before any kernel can. */
__attribute__((constructor)) static void sa_simd_select(void)
{
    const char *request = getenv("SOFTARRAY_SIMD");
    const int baseline = request != NULL && strcmp(request, "baseline") == 0;
    const int avx2 = request != NULL && strcmp(request, "avx2") == 0;
    sa_cpu_v3 = sa_cpu_supports_v3();
    sa_cpu_v4 = sa_cpu_supports_v4();
    sa_simd_v3 = sa_cpu_v3 && !baseline;
    sa_simd_v4 = sa_cpu_v4 && !baseline && !avx2;
}
#endif

/* SA_DISPATCHED(name, (parameters), (arguments)) { body } defines the entry
 * point `void name(parameters)`: with clones, the body is compiled twice,
 * into a baseline and an x86-64-v3 function, and name calls the one the
 * module's flag selects (a predictable branch per call; every entry point
 * does a block of rows or more per call). */
#define SA_DISPATCHED(name, params, args) SA_DISPATCHED_(name, params, args)
#if SA_HAS_CLONES
#  define SA_DISPATCHED_(name, params, args)                                       \
    SA_INLINE void name##_body params;                                             \
    __attribute__((target("arch=x86-64-v3"))) static void name##_v3 params        \
    {                                                                              \
        name##_body args;                                                          \
    }                                                                              \
    static void name##_baseline params { name##_body args; }                       \
    void name params                                                               \
    {                                                                              \
        if (sa_simd_v3)                                                            \
            name##_v3 args;                                                        \
        else                                                                       \
            name##_baseline args;                                                  \
    }                                                                              \
    SA_INLINE void name##_body params
#else
#  define SA_DISPATCHED_(name, params, args) void name params
#endif

/* Name of the code path this module runs (for show_config). */
static inline const char *sa_simd_path(void)
{
#if SA_HAS_CLONES
    if (sa_simd_v4)
        return "x86-64-v3 (AVX2+FMA) with AVX-512 exponential loops, runtime-dispatched";
    if (sa_simd_v3 && sa_cpu_v4)
        return "x86-64-v3 (AVX2+FMA), chosen by SOFTARRAY_SIMD=avx2";
    if (sa_simd_v3)
        return "x86-64-v3 (AVX2+FMA), runtime-dispatched";
    if (sa_cpu_v3)
        return "x86-64 baseline (SSE2), chosen by SOFTARRAY_SIMD=baseline";
    return "x86-64 baseline (SSE2), runtime-dispatched";
#elif defined(__AVX2__) && defined(__FMA__)
    return sa_simd_v4   ? "AVX2+FMA (compile-time) with AVX-512 exponential loops"
           : sa_simd_v3 ? "AVX2+FMA (compile-time)"
                      : "AVX2+FMA (compile-time), AVX2 intrinsics kernels off by SOFTARRAY_SIMD=baseline";
#elif SA_X86_DISPATCH
    return sa_simd_v4   ? "x86-64 baseline (SSE2), AVX2+FMA and AVX-512 intrinsics kernels"
           : sa_simd_v3 ? "x86-64 baseline (SSE2), AVX2+FMA intrinsics kernels"
                        : "x86-64 baseline (SSE2)";
#elif defined(__x86_64__)
    return "x86-64 baseline (SSE2)";
#elif defined(__aarch64__)
    return "aarch64 (NEON)";
#else
    return "portable C";
#endif
}

/* `#pragma omp simd` for a loop that reduces floats to their maximum or
 * minimum, with GCC only. OpenMP leaves the starting value of such a
 * reduction to the compiler: GCC starts each lane at -inf (+inf for min),
 * Clang 14 at the lowest (highest) finite value, which then wins over a row
 * of only -inf entries (its maximum came out as -DBL_MAX). Clang does not
 * vectorize these NaN-ignoring reductions anyway (it would need
 * -ffinite-math-only), so it compiles them as the plain loops they are, whose
 * variables start at -inf (+inf). */
#define SA_PRAGMA(...) _Pragma(#__VA_ARGS__)
#if defined(__clang__)
#  define SA_SIMD_MINMAX(...)
#else
#  define SA_SIMD_MINMAX(...) SA_PRAGMA(omp simd __VA_ARGS__)
#endif

typedef union { float f; uint32_t u; } sa_bits32;
typedef union { double f; uint64_t u; } sa_bits64;

SA_INLINE float sa_from_bits32(uint32_t u) { sa_bits32 b; b.u = u; return b.f; }
SA_INLINE uint32_t sa_to_bits32(float f) { sa_bits32 b; b.f = f; return b.u; }
SA_INLINE double sa_from_bits64(uint64_t u) { sa_bits64 b; b.u = u; return b.f; }
SA_INLINE uint64_t sa_to_bits64(double f) { sa_bits64 b; b.f = f; return b.u; }

/* ------------------------------------------------------------------ exp */

#define SA_MAGIC32 12582912.0f             /* 1.5 * 2^23 */
#define SA_MAGIC64 6755399441055744.0      /* 1.5 * 2^52 */

/* 2^(n + k) for an integer-valued float n and a constant integer k with
 * n + k in the normal exponent range: put n + k + 127 into the exponent field
 * through the magic-number representation (one addition: k folds into the
 * constant). */
SA_INLINE float sa_pow2i_f32(float n, float k)
{
    return sa_from_bits32(sa_to_bits32(n + (SA_MAGIC32 + 127.0f + k)) << 23);
}

SA_INLINE double sa_pow2i_f64(double n, double k)
{
    return sa_from_bits64(sa_to_bits64(n + (SA_MAGIC64 + 1023.0 + k)) << 52);
}

/* exp(x) = 2^n * e^r with n = round(x / ln 2) and |r| <= ln(2) / 2 (the
 * Cody-Waite split of ln 2 keeps r exact enough). e^r is a polynomial:
 * for float a degree-6 minimax fit (relative error 3e-9, within 1 ulp after
 * rounding; a Taylor polynomial needs degree 7 for that), for double the
 * degree-13 Taylor polynomial. */
/* float's constants, named once: the AVX2 kernels (_softmax_avx2.h) evaluate
 * the same reduction and polynomial with FMAs. */
#define SA_EXP_F32_LOG2E 1.44269504088896341f
#define SA_EXP_F32_LN2_HI 0.693145751953125f           /* ln 2 = LN2_HI + LN2_LO, LN2_HI with 12 bits */
#define SA_EXP_F32_LN2_LO 1.428606765330187045e-06f
#define SA_EXP_F32_P6 0x1.6a244cp-10f                  /* e^r ~ P6 r^6 + ... + P2 r^2 + r + 1 */
#define SA_EXP_F32_P5 0x1.1239d4p-7f
#define SA_EXP_F32_P4 0x1.5558f2p-5f
#define SA_EXP_F32_P3 0x1.555492p-3f
#define SA_EXP_F32_P2 0x1.fffffcp-2f
#define SA_EXP_F32_MIN -104.0f                         /* exp rounds to 0 below */

SA_INLINE float sa_exp_poly_f32(float x, float *n_out)
{
    const float n = (x * SA_EXP_F32_LOG2E + SA_MAGIC32) - SA_MAGIC32;
    float r = x - n * SA_EXP_F32_LN2_HI;
    r = r - n * SA_EXP_F32_LN2_LO;
    float p = SA_EXP_F32_P6;
    p = p * r + SA_EXP_F32_P5;
    p = p * r + SA_EXP_F32_P4;
    p = p * r + SA_EXP_F32_P3;
    p = p * r + SA_EXP_F32_P2;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    *n_out = n;
    return p;
}

/* double's reduction constants, named once for the AVX2 kernels too (they
 * use another polynomial, see _softmax_avx2.h). */
#define SA_EXP_F64_LOG2E 1.4426950408889634074
#define SA_EXP_F64_LN2_HI 6.93147180369123816490e-01   /* ln 2 = LN2_HI + LN2_LO, LN2_HI with 32 bits */
#define SA_EXP_F64_LN2_LO 1.90821492927058770002e-10
#define SA_EXP_F64_MIN -746.0                          /* exp rounds to 0 below */

SA_INLINE double sa_exp_poly_f64(double x, double *n_out)
{
    const double n = (x * SA_EXP_F64_LOG2E + SA_MAGIC64) - SA_MAGIC64;
    double r = x - n * SA_EXP_F64_LN2_HI;
    r = r - n * SA_EXP_F64_LN2_LO;
    double p = 1.0 / 6227020800.0;     /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    *n_out = n;
    return p;
}

/* exp(x) for any x. 2^n is applied as two factors 2^n1 * 2^n2 so that
 * results down to the subnormal range stay representable. */
SA_INLINE float sa_exp_f32(float x)
{
    x = x < SA_EXP_F32_MIN ? SA_EXP_F32_MIN : x;     /* below: exp rounds to 0; NaN compares false and passes */
    x = x > 89.0f ? 89.0f : x;         /* above: exp overflows to +inf */
    float n;
    const float p = sa_exp_poly_f32(x, &n);
    const float n1 = (n * 0.5f + SA_MAGIC32) - SA_MAGIC32;
    return (p * sa_pow2i_f32(n1, 0.0f)) * sa_pow2i_f32(n - n1, 0.0f);
}

SA_INLINE double sa_exp_f64(double x)
{
    x = x < SA_EXP_F64_MIN ? SA_EXP_F64_MIN : x;
    x = x > 710.0 ? 710.0 : x;
    double n;
    const double p = sa_exp_poly_f64(x, &n);
    const double n1 = (n * 0.5 + SA_MAGIC64) - SA_MAGIC64;
    return (p * sa_pow2i_f64(n1, 0.0)) * sa_pow2i_f64(n - n1, 0.0);
}

/* exp(x) for x <= 40 (and -inf, NaN): the arguments x - max of softmax-style
 * sums, whose results never overflow. One factor 2^(n + 64), normal for every
 * such n, then an exact (or, for subnormal results, the one correctly
 * rounded) multiplication by 2^-64: the same result as sa_exp_f32 at about
 * two thirds of its cost (no upper clamp, no split of n). */
SA_INLINE float sa_exp_small_f32(float x)
{
    x = x < SA_EXP_F32_MIN ? SA_EXP_F32_MIN : x;
    float n;
    const float p = sa_exp_poly_f32(x, &n);
    return (p * sa_pow2i_f32(n, 64.0f)) * 0x1p-64f;
}

SA_INLINE double sa_exp_small_f64(double x)
{
    x = x < SA_EXP_F64_MIN ? SA_EXP_F64_MIN : x;
    double n;
    const double p = sa_exp_poly_f64(x, &n);
    return (p * sa_pow2i_f64(n, 64.0)) * 0x1p-64;
}

/* exp(x - m) for the shifted exponentials of softmax. In double, x - m is
 * rounded, which alone costs up to |x - m| * 2^-53 relative error (tens of
 * ulps for |x - m| ~ 50); the rounding error e of the difference is recovered
 * exactly (Knuth's TwoSum) and applied as exp(d + e) = exp(d) * (1 + e), so
 * float64 results stay within a few ulps. In float the plain difference is
 * kept: float32 throughput matters more, and its error, |x - m| * 2^-24, is
 * the input's own conditioning, the same as SciPy's and PyTorch's. */
SA_INLINE float sa_exp_shifted_f32(float x, float m)
{
    return sa_exp_small_f32(x - m);
}

SA_INLINE double sa_exp_shifted_f64(double x, double m)
{
    const double d = x - m;
    const double xv = d + m;
    const double mv = xv - d;
    double e = (x - xv) + (mv - m);
    e = e == e ? e : 0.0;           /* x = -inf gives NaN here, and exp(-inf) = 0 must stay 0 */
    const double ed = sa_exp_small_f64(d);
    return ed + ed * e;
}

/* ------------------------------------------------------------ log, log1p */

/* log(w) for a positive normal w: w = 2^k * m with m in [sqrt(1/2),
 * sqrt(2)); log(m) = 2 atanh(f / (2 + f)), f = m - 1, by its odd series.
 * extra (a small correction to the argument, relative) joins before the low
 * part of k ln 2; k_shift is subtracted from the exponent (for inputs that
 * were scaled up out of the subnormal range). */
SA_INLINE float sa_log_reduced_f32(float w, float k_shift, float extra)
{
    const uint32_t bits = sa_to_bits32(w);
    float k = sa_from_bits32((bits >> 23) | 0x4b000000u) - 8388608.0f - 127.0f - k_shift;
    float m = sa_from_bits32((bits & 0x007fffffu) | 0x3f800000u);
    const int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    k = big ? k + 1.0f : k;
    const float f = m - 1.0f;
    const float s = f / (2.0f + f);
    const float z = s * s;
    float q = 2.0f / 9.0f;
    q = q * z + 2.0f / 7.0f;
    q = q * z + 2.0f / 5.0f;
    q = q * z + 2.0f / 3.0f;
    const float logm = f - s * (f - z * q);
    return k * 0.693145751953125f + (logm + (extra + k * 1.428606765330187045e-06f));
}

SA_INLINE double sa_log_reduced_f64(double w, double k_shift, double extra)
{
    const uint64_t bits = sa_to_bits64(w);
    double k = sa_from_bits64((bits >> 52) | 0x4330000000000000ull) - 4503599627370496.0 - 1023.0 - k_shift;
    double m = sa_from_bits64((bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull);
    const int big = m > 1.4142135623730951;
    m = big ? 0.5 * m : m;
    k = big ? k + 1.0 : k;
    const double f = m - 1.0;
    const double s = f / (2.0 + f);
    const double z = s * s;
    double q = 2.0 / 21.0;
    q = q * z + 2.0 / 19.0;
    q = q * z + 2.0 / 17.0;
    q = q * z + 2.0 / 15.0;
    q = q * z + 2.0 / 13.0;
    q = q * z + 2.0 / 11.0;
    q = q * z + 2.0 / 9.0;
    q = q * z + 2.0 / 7.0;
    q = q * z + 2.0 / 5.0;
    q = q * z + 2.0 / 3.0;
    /* log(m) = 2s + s z q, written as f - s (f - z q) to keep the leading term exact-ish */
    const double logm = f - s * (f - z * q);
    return k * 6.93147180369123816490e-01 + (logm + (extra + k * 1.90821492927058770002e-10));
}

/* log1p(u) for u >= 0 (and +inf, NaN); the rounding error of w = 1 + u is
 * put back as (u - (w - 1)) / w. */
SA_INLINE float sa_log1p_f32(float u)
{
    const float w = 1.0f + u;
    float res = sa_log_reduced_f32(w, 0.0f, (u - (w - 1.0f)) / w);
    res = u == INFINITY ? u : res;
    return u != u ? u : res;
}

SA_INLINE double sa_log1p_f64(double u)
{
    const double w = 1.0 + u;
    double res = sa_log_reduced_f64(w, 0.0, (u - (w - 1.0)) / w);
    res = u == INFINITY ? u : res;
    return u != u ? u : res;
}

/* log(x) for any x: subnormals are scaled by 2^24 (2^54) first; log(0) =
 * -inf, log(inf) = inf, negative or NaN gives NaN. */
SA_INLINE float sa_log_f32(float x)
{
    const int tiny = x < 1.17549435e-38f;
    float res = sa_log_reduced_f32(tiny ? x * 16777216.0f : x, tiny ? 24.0f : 0.0f, 0.0f);
    res = x == INFINITY ? x : res;
    res = x == 0.0f ? -INFINITY : res;
    return (x < 0.0f || x != x) ? NAN : res;
}

SA_INLINE double sa_log_f64(double x)
{
    const int tiny = x < 2.2250738585072014e-308;
    double res = sa_log_reduced_f64(tiny ? x * 18014398509481984.0 : x, tiny ? 54.0 : 0.0, 0.0);
    res = x == INFINITY ? x : res;
    res = x == 0.0 ? -INFINITY : res;
    return (x < 0.0 || x != x) ? NAN : res;
}

#endif /* SOFTARRAY_SIMD_H */
