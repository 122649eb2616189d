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
#if !defined(SA_T) || !defined(SA_SUF)
#error "_linear_cross_entropy_impl.h is a template: _linear_cross_entropy_kernels.h includes it once per type"
#endif

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
SA_SIMD_MINMAX(reduction(max : bmax) reduction(| : nan))
        for (ptrdiff_t i = 0; i < n; i++) {
            const SA_T y = z[i] + bias[i];
            z[i] = y;
            bmax = y > bmax ? y : bmax;
            nan |= y != y;
        }
    } else {
SA_SIMD_MINMAX(reduction(max : bmax) reduction(| : nan))
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
SA_DISPATCHED(SA_FN(sa_lce_update), (SA_T *z, const SA_T *bias, ptrdiff_t n, ptrdiff_t t,
                                     int want_total, int store_exp, sa_lce_row *st),
              (z, bias, n, t, want_total, store_exp, st))
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
SA_DISPATCHED(SA_FN(sa_lce_grad), (SA_T *z, const SA_T *bias, ptrdiff_t n, ptrdiff_t t,
                                   SA_T lse, SA_T scale, SA_T off, SA_T hit),
              (z, bias, n, t, lse, scale, off, hit))
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
SA_DISPATCHED(SA_FN(sa_lce_grad_from_exp), (SA_T *e, ptrdiff_t n, ptrdiff_t t, SA_T factor, SA_T off, SA_T hit),
              (e, n, t, factor, off, hit))
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++)
        e[i] = e[i] * factor - off;
    if (t >= 0)
        e[t] -= hit;
}

/* out[j] = sum over the nr rows (ld apart) of g[j], plus out[j] itself with
 * accumulate, for j < n <= SA_LCE_COLS; summed in double down the rows. */
SA_DISPATCHED(SA_FN(sa_lce_colsum), (const SA_T *g, ptrdiff_t ld, ptrdiff_t nr, ptrdiff_t n, SA_T *out,
                                     int accumulate),
              (g, ld, nr, n, out, accumulate))
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

/* ---- class-major tiles (narrow vocabularies): z[j * ld + i] is row i's
 * logit of class j; every row is whole (one chunk) and its state fresh. */

/* Pass 1 on rows [0, nr) of a class-major tile of v classes: bias added in
 * place, each row's state set (as sa_lce_update from a fresh state would),
 * and exp(z - max) left in the tile for sa_lce_grad_cm. t[i]: row i's
 * target class, or -1. A row whose maximum is not finite, or that holds a
 * NaN, gets max NaN or +-inf (its lse is then NaN) and its exponentials are
 * taken of -inf (0), so that no argument leaves the exp's domain. */
SA_DISPATCHED(SA_FN(sa_lce_update_cm), (SA_T *z, ptrdiff_t ld, ptrdiff_t nr, ptrdiff_t v, const SA_T *bias,
                                        const ptrdiff_t *t, int want_total, sa_lce_row *st),
              (z, ld, nr, v, bias, t, want_total, st))
{
    SA_T m[SA_LCE_STRIP], sum[SA_LCE_STRIP], total[SA_LCE_STRIP];
    int nan[SA_LCE_STRIP];
    for (ptrdiff_t i0 = 0; i0 < nr; i0 += SA_LCE_STRIP) {
        const ptrdiff_t len = nr - i0 < SA_LCE_STRIP ? nr - i0 : SA_LCE_STRIP;
        for (ptrdiff_t i = 0; i < len; i++) {
            m[i] = -INFINITY;
            sum[i] = 0;
            total[i] = 0;
            nan[i] = 0;
        }
        for (ptrdiff_t j = 0; j < v; j++) {
            SA_T *zj = z + j * ld + i0;
            const SA_T b = bias != NULL ? bias[j] : 0;
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) {
                const SA_T y = bias != NULL ? zj[i] + b : zj[i];
                zj[i] = y;
                m[i] = y > m[i] ? y : m[i];
                nan[i] |= y != y;
                total[i] += y;
            }
        }
        for (ptrdiff_t i = 0; i < len; i++) {
            const ptrdiff_t ti = t[i0 + i];
            st[i0 + i].target = ti >= 0 ? z[ti * ld + i0 + i] : 0.0;
            m[i] = nan[i] ? (SA_T)NAN : m[i];
        }
        for (ptrdiff_t j = 0; j < v; j++) {
            SA_T *zj = z + j * ld + i0;
#pragma omp simd
            for (ptrdiff_t i = 0; i < len; i++) {
                /* m - m == 0 only for finite m */
                const SA_T x = m[i] - m[i] == 0 ? zj[i] - m[i] : (SA_T)-INFINITY;
                const SA_T e = SA_EXP_SMALL(x);
                zj[i] = e;
                sum[i] += e;
            }
        }
        for (ptrdiff_t i = 0; i < len; i++) {
            st[i0 + i].max = m[i];
            st[i0 + i].sum = sum[i];
            st[i0 + i].total = want_total ? total[i] : 0.0;
        }
    }
}

/* Pass 2 on rows [0, nr) of a class-major tile holding exp(z - max) (from
 * sa_lce_update_cm), in place: g = e * factor[i] - off[i], then hit[i]
 * taken off at each row's target class. Rows whose factor is NaN (their lse
 * is NaN) become NaN, ignored rows (t < 0) become 0, whatever their e. */
SA_DISPATCHED(SA_FN(sa_lce_grad_cm), (SA_T *e, ptrdiff_t ld, ptrdiff_t nr, ptrdiff_t v, const ptrdiff_t *t,
                                      const SA_T *factor, const SA_T *off, const SA_T *hit),
              (e, ld, nr, v, t, factor, off, hit))
{
    for (ptrdiff_t j = 0; j < v; j++) {
        SA_T *ej = e + j * ld;
#pragma omp simd
        for (ptrdiff_t i = 0; i < nr; i++)
            ej[i] = ej[i] * factor[i] - off[i];
    }
    for (ptrdiff_t i = 0; i < nr; i++) {
        if (t[i] >= 0 && factor[i] == factor[i]) {
            e[t[i] * ld + i] -= hit[i];
        } else {
            const SA_T fill = t[i] < 0 ? (SA_T)0 : (SA_T)NAN;
            for (ptrdiff_t j = 0; j < v; j++)
                e[j * ld + i] = fill;
        }
    }
}

/* out[j] (+)= sum over rows [0, nr) of class j of a class-major tile, for
 * j < v, summed in double. */
SA_DISPATCHED(SA_FN(sa_lce_rowsum_cm), (const SA_T *g, ptrdiff_t ld, ptrdiff_t nr, ptrdiff_t v, SA_T *out,
                                        int accumulate),
              (g, ld, nr, v, out, accumulate))
{
    for (ptrdiff_t j = 0; j < v; j++) {
        const SA_T *gj = g + j * ld;
        double acc = accumulate ? (double)out[j] : 0.0;
#pragma omp simd reduction(+ : acc)
        for (ptrdiff_t i = 0; i < nr; i++)
            acc += (double)gj[i];
        out[j] = (SA_T)acc;
    }
}
