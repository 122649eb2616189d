/*
 * The softmax family's ops and the per-slice formulas that turn a slice's
 * pass-1 statistics (maximum, rest, count) into what pass 2 needs: shared
 * by the portable kernels (_softmax_kernels.h) and the AVX2 intrinsics
 * kernels (_softmax_avx2.h), so that both compute the same parameters.
 */
#ifndef SOFTARRAY_SOFTMAX_OPS_H
#define SOFTARRAY_SOFTMAX_OPS_H

#include <math.h>
#include "_simd.h"

enum sa_op {
    SA_SOFTMAX = 0,
    SA_LOG_SOFTMAX = 1,
    SA_STABLEMAX = 2,
    SA_LOG_STABLEMAX = 3,
    SA_LOGSUMEXP = 4,
};

/* StableMax's s(x) ("Grokking at the Edge of Numerical Stability"): x + 1 for
 * x >= 0, 1 / (1 - x) below; and log s(x) = sign(x) * log1p(|x|). */
SA_INLINE double sa_stable_s(double x) { return x >= 0 ? x + 1.0 : 1.0 / (1.0 - x); }

/* Pass-2 parameters of one slice from its pass-1 state (m = maximum, NaN if
 * a NaN was seen). One small branch-free formula per parameter, so that the
 * column kernel can evaluate them in SIMD loops across columns. Non-finite
 * maxima give exactly what scipy.special gives on the same input. */
SA_INLINE int sa_isfinite(double m) { return m - m == 0.0; }   /* vectorizes, unlike isfinite() */

SA_INLINE double sa_lognorm(double rest, double count)          /* log(sum) - max */
{
    return sa_log1p_f64(rest + (count - 1.0));
}

/* softmax: out = exp(y - m) * b */
SA_INLINE double sa_softmax_scale(double m, double rest, double count)
{
    return sa_isfinite(m) ? 1.0 / (rest + count) : NAN;
}

/* log_softmax: out = (y - a) - b */
SA_INLINE double sa_log_softmax_shift(double m) { return sa_isfinite(m) ? m : 0.0; }
SA_INLINE double sa_log_softmax_norm(double m, double rest, double count)
{
    return sa_isfinite(m) ? sa_lognorm(rest, count) : m;
}

/* stablemax: out = s(y) * b. With a +-inf maximum the sums were skipped:
 * s(+inf) = inf gives b = 0, s(-inf) = 0 gives b = inf (then 0 * inf = NaN). */
SA_INLINE double sa_stablemax_scale(double m, double rest, double count)
{
    const double sm = sa_stable_s(m);
    return 1.0 / (sa_isfinite(m) ? rest + count * sm : sm);
}

/* log_stablemax: out = y < m ? log s(y) - a : b, where b is the maximum's own
 * result -log1p(share of the others), accurate when it dominates. */
SA_INLINE double sa_log_stablemax_share(double m, double rest, double count)
{
    return sa_log1p_f64(rest / sa_stable_s(m) + (count - 1.0));
}
SA_INLINE double sa_log_stablemax_norm(double m, double rest, double count)
{
    const double log_sm = copysign(sa_log1p_f64(fabs(m)), m);      /* log s(m) */
    return sa_isfinite(m) ? log_sm + sa_log_stablemax_share(m, rest, count) : m;
}
SA_INLINE double sa_log_stablemax_top(double m, double rest, double count)
{
    return sa_isfinite(m) ? -sa_log_stablemax_share(m, rest, count) : NAN;
}

SA_INLINE double sa_logsumexp_value(double m, double rest, double count)
{
    return sa_isfinite(m) ? m + sa_lognorm(rest, count) : m;
}

#endif /* SOFTARRAY_SOFTMAX_OPS_H */
