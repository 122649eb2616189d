/*
 * Type-generic body of the linear cross-entropy row kernels; included once
 * per type by _linear_cross_entropy_kernels.h with SA_T (float or double),
 * SA_SUF (f32 or f64) and SA_EXP_SMALL (exp of x <= 40) defined. Names get the suffix:
 * sa_lce_update_f32, sa_lce_update_f64, ...
 *
 * A row here is one row of a logits tile restricted to one vocabulary chunk
 * (n entries); t is the target's column within the chunk, or -1 when the
 * target lies in another chunk (or the row is ignored).
 */
#define SA_FN(name) SA_CAT(name, SA_SUF)

/* Sum of x[0..n) accumulated in float blocks of SA_LCE_BLOCK, then in double. */
SA_INLINE double SA_FN(sa_lce_sum)(const SA_T *x, ptrdiff_t n)
{
    double total = 0.0;
    for (ptrdiff_t b = 0; b < n; b += SA_LCE_BLOCK) {
        const ptrdiff_t len = n - b < SA_LCE_BLOCK ? n - b : SA_LCE_BLOCK;
        SA_T s = 0;
#pragma omp simd reduction(+ : s)
        for (ptrdiff_t i = 0; i < len; i++)
            s += x[b + i];
        total += s;
    }
    return total;
}

/* Adds the bias to the row in place and returns the row's maximum (NaN
 * entries ignored); *bad is set when a NaN was seen. */
SA_INLINE SA_T SA_FN(sa_lce_add_bias_max)(SA_T *z, const SA_T *bias, ptrdiff_t n, int *bad)
{
    SA_T bmax = -INFINITY;
    int nan = 0;
    if (bias != NULL) {
#pragma omp simd reduction(max : bmax) reduction(| : nan)
        for (ptrdiff_t i = 0; i < n; i++) {
            const SA_T y = z[i] + bias[i];
            z[i] = y;
            bmax = y > bmax ? y : bmax;
            nan |= y != y;
        }
    } else {
#pragma omp simd reduction(max : bmax) reduction(| : nan)
        for (ptrdiff_t i = 0; i < n; i++) {
            const SA_T y = z[i];
            bmax = y > bmax ? y : bmax;
            nan |= y != y;
        }
    }
    *bad = nan;
    return bmax;
}

/* Sum of exp(z - m) over the row; with store, exp(z - m) replaces z. */
SA_INLINE double SA_FN(sa_lce_sum_exp)(SA_T *z, ptrdiff_t n, SA_T m, int store)
{
    double sum = 0.0;
    for (ptrdiff_t b = 0; b < n; b += SA_LCE_BLOCK) {
        const ptrdiff_t len = n - b < SA_LCE_BLOCK ? n - b : SA_LCE_BLOCK;
        SA_T *zb = z + b;
        SA_T s = 0;
        if (store) {
#pragma omp simd reduction(+ : s)
            for (ptrdiff_t i = 0; i < len; i++) {
                const SA_T e = SA_EXP_SMALL(zb[i] - m);
                zb[i] = e;
                s += e;
            }
        } else {
#pragma omp simd reduction(+ : s)
            for (ptrdiff_t i = 0; i < len; i++)
                s += SA_EXP_SMALL(zb[i] - m);
        }
        sum += s;
    }
    return sum;
}

/* Pass 1 on one row of a chunk: add the bias (in place), then fold the chunk
 * into the running state (online log-sum-exp: when the maximum rises, the sum
 * so far is rescaled by exp(old max - new max)). With store_exp the chunk is
 * the whole row, so its maximum is final and exp(z - max) is left in place
 * for sa_lce_grad_from_exp: the backward then needs no second exp. */
SA_MULTIVERSION
void SA_FN(sa_lce_update)(SA_T *z, const SA_T *bias, ptrdiff_t n, ptrdiff_t t,
                          int want_total, int store_exp, sa_lce_row *st)
{
    int bad;
    const SA_T bmax = SA_FN(sa_lce_add_bias_max)(z, bias, n, &bad);
    if (t >= 0)
        st->target = z[t];
    if (want_total)
        st->total += SA_FN(sa_lce_sum)(z, n);
    if (bad) {
        st->max = NAN;
    } else if (bmax > st->max) {        /* false once max is NaN: NaN stays */
        st->sum *= exp(st->max - bmax);
        st->max = bmax;
    }
    if (!(st->max - st->max == 0.0))
        return;     /* the row's lse is NaN whatever the sums (sa_lce_lse) */
    st->sum += SA_FN(sa_lce_sum_exp)(z, n, (SA_T)st->max, store_exp);
}

/* Pass 2 on one row of a chunk, in place: g = scale * p - off with
 * p = exp(z + bias - lse), and hit = scale * (1 - eps) taken off at column t.
 * off = scale * eps / V is label smoothing's uniform part. */
SA_MULTIVERSION
void SA_FN(sa_lce_grad)(SA_T *z, const SA_T *bias, ptrdiff_t n, ptrdiff_t t,
                        SA_T lse, SA_T scale, SA_T off, SA_T hit)
{
    if (bias != NULL) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++)
            z[i] = SA_EXP_SMALL((z[i] + bias[i]) - lse) * scale - off;
    } else {
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++)
            z[i] = SA_EXP_SMALL(z[i] - lse) * scale - off;
    }
    if (t >= 0)
        z[t] -= hit;
}

/* The same from the exp(z - max) that sa_lce_update left in the row:
 * p = e / sum, so g = e * (scale / sum) - off. */
SA_MULTIVERSION
void SA_FN(sa_lce_grad_from_exp)(SA_T *e, ptrdiff_t n, ptrdiff_t t, SA_T factor, SA_T off, SA_T hit)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++)
        e[i] = e[i] * factor - off;
    if (t >= 0)
        e[t] -= hit;
}

/* out[j] = sum over the nr rows (ld apart) of g[j], plus out[j] itself with
 * accumulate, for j < n <= SA_LCE_COLS; summed in double down the rows. */
SA_MULTIVERSION
void SA_FN(sa_lce_colsum)(const SA_T *g, ptrdiff_t ld, ptrdiff_t nr, ptrdiff_t n, SA_T *out,
                          int accumulate)
{
    double acc[SA_LCE_COLS];
    for (ptrdiff_t j = 0; j < n; j++)
        acc[j] = accumulate ? (double)out[j] : 0.0;
    for (ptrdiff_t i = 0; i < nr; i++) {
        const SA_T *row = g + i * ld;
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            acc[j] += (double)row[j];
    }
    for (ptrdiff_t j = 0; j < n; j++)
        out[j] = (SA_T)acc[j];
}

#undef SA_FN
