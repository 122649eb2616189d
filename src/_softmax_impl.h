/*
 * Type-generic body of the softmax-family kernels; included once per type by
 * _softmax_kernels.h with SA_T (float or double), SA_SUF (f32 or f64), SA_EXP_SMALL, SA_EXP_SHIFTED,
 * SA_LOG1P, SA_FABS and SA_COPYSIGN defined. Names get the suffix: sa_rows_f32, sa_rows_f64, ...
 */
#if !defined(SA_T) || !defined(SA_SUF)
#error "_softmax_impl.h is a template: _softmax_kernels.h includes it once per type"
#endif

SA_INLINE SA_T SA_FN(sa_s)(SA_T x) { return x >= 0 ? x + (SA_T)1 : (SA_T)1 / ((SA_T)1 - x); }

SA_INLINE SA_T SA_FN(sa_log_s)(SA_T x)
{
    return SA_COPYSIGN(SA_LOG1P(SA_FABS(x)), x);
}

/* Ask for the next block (the rest of the row, or the next row's start)
 * while this one is computed: its exponentials take as long as reading it
 * from memory, and a fetch started now overlaps them instead of stalling the
 * next block's first pass. A prefetch never faults, so reading past the end
 * of the data is harmless; the address is formed as an integer for that
 * reason. */
SA_INLINE void SA_FN(sa_prefetch_block)(const SA_T *next)
{
#if SA_HAVE_SOFTMAX_AVX2
    /* float64 on AVX-512: the exponential loops ask for the lines 4 KiB
     * ahead as they go (sa_avx512_prefetch_ahead), which is the next block;
     * a burst of its 64 lines on top stalled them (1024x32000 logsumexp at
     * one thread, Intel Xeon of 2026-12-07: 27.5 ms with it, 24.5 without).
     * float32 keeps it: its block is 32 lines, and the loops' prefetch
     * reaches the block after. */
    if (sa_simd_v4 && sizeof(SA_T) == 8)
        return;
#endif
#if defined(__GNUC__) || defined(__clang__)
    const uintptr_t start = (uintptr_t)next;
    for (uintptr_t off = 0; off < SA_ROW_BLOCK * sizeof(SA_T); off += 64)
        __builtin_prefetch((const void *)(start + off), 0, 3);
#else
    (void)next;     /* a compiler without the builtin: the hardware prefetcher alone */
#endif
}

/* The largest y = x * scale of a block, NaN flagged in *bad. scale is a
 * literal in each copy: with the common 1 (no temperature) the multiply
 * folds away (x * 1 is x exactly), which saves a tenth of a float64
 * statistics pass. */
SA_INLINE SA_T SA_FN(sa_block_max_scaled)(const SA_T *xb, ptrdiff_t len, SA_T scale, int *bad)
{
    SA_T bmax = -INFINITY;
    int nan = 0;
SA_SIMD_MINMAX(reduction(max : bmax) reduction(| : nan))
    for (ptrdiff_t i = 0; i < len; i++) {
        const SA_T y = xb[i] * scale;
        bmax = y > bmax ? y : bmax;
        nan |= y != y;
    }
    *bad |= nan;
    return bmax;
}

SA_INLINE SA_T SA_FN(sa_block_max)(const SA_T *xb, ptrdiff_t len, SA_T scale, int *bad)
{
#if defined(SA_BLOCK_MAX_AVX2) && SA_HAVE_SOFTMAX_AVX2
    if (sa_simd_v3)     /* x86-64-v3: four running maxima, AVX-512 where it runs (_softmax_avx2.h) */
        return SA_BLOCK_MAX_AVX2(xb, len, scale, bad);
#endif
    return scale == (SA_T)1 ? SA_FN(sa_block_max_scaled)(xb, len, (SA_T)1, bad)
                            : SA_FN(sa_block_max_scaled)(xb, len, scale, bad);
}

/* y = x * scale of a block into copy (sa_segment_stats_impl's paths that
 * do not store it as they go). */
SA_INLINE void SA_FN(sa_copy_scaled)(const SA_T *xb, SA_T *copy, ptrdiff_t len, SA_T scale)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < len; i++)
        copy[i] = xb[i] * scale;
}

/* Softmax's pass-2 factor of a block stored against the running maximum
 * shift: exp(shift - m) * inv, with m the row's maximum and inv 1 / sum.
 * The blocks between two rises of the running maximum share it, so it is
 * recomputed only when shift changes (*f_shift: the shift *f is for). */
SA_INLINE SA_T SA_FN(sa_block_factor)(double shift, double m, double inv, double *f_shift, SA_T *f)
{
    if (shift != *f_shift) {
        *f_shift = shift;
        *f = (SA_T)(shift == m ? inv : sa_exp_shifted_f64(shift, m) * inv);
    }
    return *f;
}

/* The last pass of a row of sa_rows_streamed, left to run a block at a time
 * inside the next row's pass 1 (its `tail` argument). */
typedef struct {
    const SA_T *from;       /* softmax: the staged exponentials; log_softmax: the row of x */
    SA_T *out;
    ptrdiff_t n;
    int log;                /* log_softmax: out = (from * f - a) - b; softmax: out = from * factor */
    SA_T f, a, b;           /* log_softmax: f is the scale */
    const double *shift;    /* softmax: the running maximum block k was stored against */
    double m, inv, f_shift; /* softmax: sa_block_factor's arguments and state */
    SA_T factor;
} SA_FN(sa_row_tail);

/* Block k of a pending last pass (nothing past the row's end), written by
 * non-temporal stores (sa_rows_streamed). */
SA_INLINE void SA_FN(sa_row_tail_block)(SA_FN(sa_row_tail) *t, ptrdiff_t k)
{
#if defined(SA_STREAM_PASS_AVX2) && SA_HAVE_SOFTMAX_AVX2
    const ptrdiff_t b = k * SA_ROW_BLOCK;
    if (b >= t->n)
        return;
    const ptrdiff_t len = t->n - b < SA_ROW_BLOCK ? t->n - b : SA_ROW_BLOCK;
    if (t->log)
        SA_STREAM_PASS_AVX2(t->from + b, t->out + b, len, t->f, t->a, t->b, 1);
    else
        SA_STREAM_PASS_AVX2(t->from + b, t->out + b, len,
                            SA_FN(sa_block_factor)(t->shift[k], t->m, t->inv, &t->f_shift, &t->factor), 0, 0, 0);
#else
    (void)t, (void)k;
#endif
}

/* Pass 1 over one contiguous segment, accumulated into st. rounded_shift
 * (a constant at every call site) takes exp of the rounded difference y - m
 * instead of the TwoSum-corrected one: in double that halves the cost and
 * still leaves the sum's relative error below |y - m| * 2^-53 for its
 * dominant terms, which is all the losses need; the softmax family keeps
 * the correction so its outputs stay within a few ulps. With copy (not
 * NULL), y = x * scale is also stored there: log_softmax's output, which
 * its last pass then finishes in place. The x86 kernels store it beside the
 * exponentials, so the first write of each output line overlaps them
 * instead of stalling a pass of its own. With tail (not NULL), block k of
 * an earlier row's last pass is written beside block k (sa_rows_streamed). */
SA_INLINE void SA_FN(sa_segment_stats_impl)(const SA_T *x, SA_T *copy, ptrdiff_t n, SA_T scale, int stable,
                                            int rounded_shift, sa_stats *st, SA_FN(sa_row_tail) *tail)
{
    for (ptrdiff_t b = 0, k = 0; b < n; b += SA_ROW_BLOCK, k++) {
        const ptrdiff_t len = n - b < SA_ROW_BLOCK ? n - b : SA_ROW_BLOCK;
        if (tail)
            SA_FN(sa_row_tail_block)(tail, k);
        const SA_T *xb = x + b;
        SA_T *cb = copy ? copy + b : NULL;
        const SA_T bmax = SA_FN(sa_block_max)(xb, len, scale, &st->nan);
        sa_stats_raise_max(stable, st, bmax);
        if (!isfinite(st->max)) {   /* +-inf maximum: the result does not depend on rest */
            if (cb)
                SA_FN(sa_copy_scaled)(xb, cb, len, scale);
            continue;
        }
        SA_FN(sa_prefetch_block)(xb + len);
        const SA_T m = (SA_T)st->max;
        SA_T rest = 0, count = 0;
        if (stable) {       /* copy is log_softmax's: NULL here */
#pragma omp simd reduction(+ : rest, count)
            for (ptrdiff_t i = 0; i < len; i++) {
                const SA_T y = xb[i] * scale;
                rest += y < m ? SA_FN(sa_s)(y) : (SA_T)0;
                count += y == m ? (SA_T)1 : (SA_T)0;
            }
        } else {
#if defined(SA_EXP_REST_COUNT_AVX2) && SA_HAVE_SOFTMAX_AVX2
            if (sa_simd_v3) {   /* on x86-64-v3: intrinsics with FMA, four vectors in flight (_softmax_avx2.h) */
                /* A block whose maximum is below the row's holds no entry
                 * equal to m: the kernels skip the count there (NULL), a
                 * tenth of a float64 block's work. */
                SA_T *counted = bmax < m ? NULL : &count;
                rest = rounded_shift ? SA_EXP_ROUNDED_REST_COUNT_AVX2(xb, cb, len, scale, m, counted)
                                     : SA_EXP_REST_COUNT_AVX2(xb, cb, len, scale, m, counted);
                st->rest += rest;
                st->count += count;
                continue;
            }
#endif
            if (cb)
                SA_FN(sa_copy_scaled)(xb, cb, len, scale);
#pragma omp simd reduction(+ : rest, count)
            for (ptrdiff_t i = 0; i < len; i++) {
                const SA_T y = xb[i] * scale;
                const SA_T e = rounded_shift ? SA_EXP_SMALL(y - m) : SA_EXP_SHIFTED(y, m);
                rest += y == m ? (SA_T)0 : e;
                count += y == m ? (SA_T)1 : (SA_T)0;
            }
        }
        st->rest += rest;
        st->count += count;
    }
}

/* out *= f over a block in cache: on 512-bit vectors where sa_simd_v4. */
SA_INLINE void SA_FN(sa_scale_block)(SA_T *out, ptrdiff_t len, SA_T f)
{
#if defined(SA_SCALE_AVX512) && SA_HAVE_SOFTMAX_AVX2
    if (sa_simd_v4) {
        SA_SCALE_AVX512(out, len, f);
        return;
    }
#endif
#pragma omp simd
    for (ptrdiff_t i = 0; i < len; i++)
        out[i] *= f;
}

/* Pass 2 over one contiguous segment. x and out may be the same buffer. */
SA_INLINE void SA_FN(sa_segment_write_impl)(const SA_T *x, SA_T *out, ptrdiff_t n, SA_T scale, int op, sa_params p)
{
    const SA_T a = (SA_T)p.a, b = (SA_T)p.b, c = (SA_T)p.c;
    switch (op) {
    case SA_SOFTMAX:
#if defined(SA_EXP_STORE_SUM_AVX2) && SA_HAVE_SOFTMAX_AVX2
        /* x86-64-v3: pass 1's exponentials (the intrinsics kernel, which the
         * statistics pass used too), a block at a time, then the scale while
         * the block is in L1; the portable exp below costs twice as much.
         * a is the row's finite maximum, or 0 with b NaN (a NaN, an infinite
         * maximum), when every result is NaN either way. */
        if (sa_simd_v3) {
            for (ptrdiff_t i0 = 0; i0 < n; i0 += SA_ROW_BLOCK) {
                const ptrdiff_t len = n - i0 < SA_ROW_BLOCK ? n - i0 : SA_ROW_BLOCK;
                SA_T *ob = out + i0;
                (void)SA_EXP_STORE_SUM_AVX2(x + i0, ob, len, scale, a);
                SA_FN(sa_scale_block)(ob, len, b);
            }
            break;
        }
#endif
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++)
            out[i] = SA_EXP_SHIFTED(x[i] * scale, a) * b;
        break;
    case SA_LOG_SOFTMAX:
#if defined(SA_SHIFT_TWICE_AVX512) && SA_HAVE_SOFTMAX_AVX2
        if (sa_simd_v4 && x == out && scale == (SA_T)1) {     /* y stored by the statistics pass */
            SA_SHIFT_TWICE_AVX512(out, n, a, b);
            break;
        }
#endif
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++)
            out[i] = (x[i] * scale - a) - b;
        break;
    case SA_STABLEMAX:
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++)
            out[i] = SA_FN(sa_s)(x[i] * scale) * b;
        break;
    case SA_LOG_STABLEMAX:
#pragma omp simd
        for (ptrdiff_t i = 0; i < n; i++) {
            const SA_T y = x[i] * scale;
            out[i] = y < c ? SA_FN(sa_log_s)(y) - a : b;
        }
        break;
    }
}

/* Softmax of one contiguous row of at most SA_CACHED_ROW_BYTES, one
 * exp per entry: pass 1 keeps the running maximum and the sum rescaled to it
 * and stores exp(y - running maximum) into out; pass 2 multiplies each
 * block by exp(its maximum - final maximum) / sum. The x86-64-v3 path runs
 * pass 1's exponentials in _softmax_avx2.h. A row split over
 * threads runs pass 1 per segment, merges the segments' (maximum, sum) and
 * runs pass 2 per segment with the row's. With tail (not NULL), block k of
 * an earlier row's last pass is written beside block k (sa_rows_streamed). */
SA_INLINE void SA_FN(sa_softmax_cached_pass1)(const SA_T *x, SA_T *out, ptrdiff_t n, SA_T scale,
                                              double *shift, sa_cached_state *st, SA_FN(sa_row_tail) *tail)
{
    double m = -INFINITY, sum = 0.0;     /* shift[k]: the running maximum block k was stored against */
    int bad = 0;
#if defined(SA_EXP_STORE_SUM_AVX2) && SA_HAVE_SOFTMAX_AVX2
    const int avx2 = sa_simd_v3;
#endif
    for (ptrdiff_t b = 0, k = 0; b < n; b += SA_ROW_BLOCK, k++) {
        const ptrdiff_t len = n - b < SA_ROW_BLOCK ? n - b : SA_ROW_BLOCK;
        const SA_T *xb = x + b;
        SA_T *ob = out + b;
        if (tail)
            SA_FN(sa_row_tail_block)(tail, k);
        const SA_T bmax = SA_FN(sa_block_max)(xb, len, scale, &bad);
        if (bmax > m) {
            if (sum != 0.0)
                sum *= sa_exp_shifted_f64(m, bmax);     /* exp(m - bmax), the difference's rounding restored */
            m = bmax;
        }
        shift[k] = m;
        if (!isfinite(m)) {     /* only -inf so far (then 0 is right) or +inf (all NaN below) */
            for (ptrdiff_t i = 0; i < len; i++)
                ob[i] = 0;
            continue;
        }
        SA_FN(sa_prefetch_block)(xb + len);
        const SA_T mt = (SA_T)m;
#if defined(SA_EXP_STORE_SUM_AVX2) && SA_HAVE_SOFTMAX_AVX2
        if (avx2) {
            sum += SA_EXP_STORE_SUM_AVX2(xb, ob, len, scale, mt);
            continue;
        }
#endif
        SA_T s = 0;
#pragma omp simd reduction(+ : s)
        for (ptrdiff_t i = 0; i < len; i++) {
            const SA_T e = SA_EXP_SHIFTED(xb[i] * scale, mt);
            ob[i] = e;
            s += e;
        }
        sum += s;
    }
    st->max = m;
    st->sum = sum;
    st->nan = bad;
}

/* Pass 2: block k of out times exp(shift[k] - m) * inv. */
SA_INLINE void SA_FN(sa_softmax_cached_pass2)(SA_T *out, ptrdiff_t n, const double *shift, double m,
                                              double inv)
{
    double f_shift = m;
    SA_T f = (SA_T)inv;
    for (ptrdiff_t b = 0, k = 0; b < n; b += SA_ROW_BLOCK, k++) {
        const ptrdiff_t len = n - b < SA_ROW_BLOCK ? n - b : SA_ROW_BLOCK;
        SA_FN(sa_scale_block)(out + b, len, SA_FN(sa_block_factor)(shift[k], m, inv, &f_shift, &f));
    }
}

SA_INLINE void SA_FN(sa_softmax_row_cached)(const SA_T *x, SA_T *out, ptrdiff_t n, SA_T scale)
{
    double shift[SA_CACHED_ROW_BLOCKS];
    sa_cached_state st;
    SA_FN(sa_softmax_cached_pass1)(x, out, n, scale, shift, &st, NULL);
    SA_FN(sa_softmax_cached_pass2)(out, n, shift, st.max, sa_cached_inverse(&st));
}

/* Softmax or log_softmax of rows whose output is larger than the caches
 * (the caller's stream_out): the last pass writes each output row by
 * non-temporal stores. The in-place passes store into the output row from
 * pass 1 on, so each of its lines is first read from memory (the read for
 * ownership): for an output that leaves the caches anyway, a third of the
 * call's traffic. softmax, rows of up to SA_STAGE_ROW_BYTES: pass 1 stores
 * the row's exponentials into a stage, a buffer that stays in L2, and the
 * last pass scales them into the output. log_softmax, rows of any length:
 * pass 1 keeps only the statistics, as logsumexp, and the last pass
 * computes (x * scale - a) - b from x again (in L2 for rows that fit, and
 * two subtractions an entry), where the in-place path stored y = x * scale
 * in pass 1. A row's last pass runs a block at a time inside the next
 * row's pass 1 (two stages, taking turns), so that its stores stream out
 * while the exponentials run instead of in a pass of their own. Same bits
 * as the in-place passes (the same operations in the same order). Returns
 * 0, having written nothing, where it does not apply or the stages cannot
 * be allocated. */
SA_INLINE int SA_FN(sa_rows_streamed)(const SA_T *x, ptrdiff_t x_stride, SA_T *out, ptrdiff_t out_stride,
                                      ptrdiff_t n_rows, ptrdiff_t n, SA_T scale, int op)
{
#if defined(SA_STREAM_PASS_AVX2) && SA_HAVE_SOFTMAX_AVX2
    const int softmax = op == SA_SOFTMAX;
    if (!sa_simd_v3 || (!softmax && op != SA_LOG_SOFTMAX) || (uintptr_t)out % sizeof(SA_T) != 0
        || (softmax && n > SA_STAGE_ROW_BYTES / (ptrdiff_t)sizeof(SA_T)))
        return 0;
    SA_T *stages = softmax ? (SA_T *)malloc(2 * (size_t)n * sizeof(SA_T)) : NULL;
    if (softmax && !stages)
        return 0;
    double shifts[2][SA_STAGE_ROW_BYTES / (SA_ROW_BLOCK * sizeof(float))];
    SA_FN(sa_row_tail) tail = {0};
    for (ptrdiff_t r = 0; r < n_rows; r++) {
        const SA_T *row = x + r * x_stride;
        SA_FN(sa_row_tail) *pending = r > 0 ? &tail : NULL;
        SA_FN(sa_row_tail) next = {.out = out + r * out_stride, .n = n, .log = !softmax};
        if (softmax) {
            SA_T *stage = stages + (r % 2) * n;
            double *shift = shifts[r % 2];
            sa_cached_state st;
            SA_FN(sa_softmax_cached_pass1)(row, stage, n, scale, shift, &st, pending);
            next.from = stage;
            next.shift = shift;
            next.m = st.max;
            next.inv = sa_cached_inverse(&st);
            next.f_shift = st.max;
            next.factor = (SA_T)next.inv;
        } else {
            sa_stats st;
            sa_stats_init(&st);
            SA_FN(sa_segment_stats_impl)(row, NULL, n, scale, 0, 0, &st, pending);
            const sa_params p = sa_finalize(op, &st);
            next.from = row;
            next.f = scale;
            next.a = (SA_T)p.a;
            next.b = (SA_T)p.b;
        }
        tail = next;
    }
    for (ptrdiff_t k = 0; k * SA_ROW_BLOCK < n; k++)      /* the last row's last pass */
        SA_FN(sa_row_tail_block)(&tail, k);
    sa_avx2_stream_fence();
    free(stages);
    return 1;
#else
    (void)x, (void)x_stride, (void)out, (void)out_stride, (void)n_rows, (void)n, (void)scale, (void)op;
    return 0;
#endif
}

/* Public entry points (dispatched, see SA_DISPATCHED). Strides are in elements. */

SA_DISPATCHED(SA_FN(sa_segment_stats), (const SA_T *x, ptrdiff_t n, SA_T scale, int op, sa_stats *st),
              (x, n, scale, op, st))
{
    SA_FN(sa_segment_stats_impl)(x, NULL, n, scale, sa_op_is_stable(op), 0, st, NULL);
}

SA_DISPATCHED(SA_FN(sa_segment_write), (const SA_T *x, SA_T *out, ptrdiff_t n, SA_T scale, int op, sa_params p),
              (x, out, n, scale, op, p))
{
    SA_FN(sa_segment_write_impl)(x, out, n, scale, op, p);
}

/* One segment of at most SA_CACHED_ROW_BYTES of a softmax row split over
 * threads: pass 1 into out (shift: SA_CACHED_ROW_BLOCKS entries), then,
 * with the merged state of the row, pass 2. */
SA_DISPATCHED(SA_FN(sa_segment_cached_stats), (const SA_T *x, SA_T *out, ptrdiff_t n, SA_T scale,
                                               double *shift, sa_cached_state *st),
              (x, out, n, scale, shift, st))
{
    SA_FN(sa_softmax_cached_pass1)(x, out, n, scale, shift, st, NULL);
}

SA_DISPATCHED(SA_FN(sa_segment_cached_write), (SA_T *out, ptrdiff_t n, const double *shift,
                                               sa_cached_state row),
              (out, n, shift, row))
{
    SA_FN(sa_softmax_cached_pass2)(out, n, shift, row.max, sa_cached_inverse(&row));
}

/* One block of columns: the reduction runs down n rows (x_stride apart) of
 * width <= SA_COL_BLOCK_MAX contiguous columns, each column its own slice.
 * The loops run along the contiguous columns, so nothing is transposed.
 * For SA_LOGSUMEXP, out is one row of width results. */
SA_INLINE void SA_FN(sa_cols_impl)(const SA_T *x, ptrdiff_t x_stride, SA_T *out, ptrdiff_t out_stride,
                                    ptrdiff_t n, ptrdiff_t width, SA_T scale, int op)
{
    SA_T m[SA_COL_BLOCK_MAX], pa[SA_COL_BLOCK_MAX], pb[SA_COL_BLOCK_MAX];
    double rest[SA_COL_BLOCK_MAX], count[SA_COL_BLOCK_MAX];
    const int stable = sa_op_is_stable(op);

    for (ptrdiff_t j = 0; j < width; j++) {
        m[j] = -INFINITY;
        rest[j] = 0.0;
        count[j] = 0.0;
    }
    /* maximum per column; a NaN sticks once seen */
    for (ptrdiff_t r = 0; r < n; r++) {
        const SA_T *row = x + r * x_stride;
#pragma omp simd
        for (ptrdiff_t j = 0; j < width; j++) {
            const SA_T y = row[j] * scale;
            m[j] = (y > m[j] || y != y) ? y : m[j];
        }
    }
    /* Sums run in SA_T over chunks of SA_COL_CHUNK rows (vector-width adds,
     * no conversions), and each chunk's partial sums are added in double:
     * float32 stays accurate down thousands of rows. */
    for (ptrdiff_t r0 = 0; r0 < n; r0 += SA_COL_CHUNK) {
        const ptrdiff_t r1 = n - r0 < SA_COL_CHUNK ? n : r0 + SA_COL_CHUNK;
        SA_T racc[SA_COL_BLOCK_MAX], cacc[SA_COL_BLOCK_MAX];
        for (ptrdiff_t j = 0; j < width; j++) {
            racc[j] = 0;
            cacc[j] = 0;
        }
        for (ptrdiff_t r = r0; r < r1; r++) {
            const SA_T *row = x + r * x_stride;
            if (stable) {
#pragma omp simd
                for (ptrdiff_t j = 0; j < width; j++) {
                    const SA_T y = row[j] * scale;
                    racc[j] += y < m[j] ? SA_FN(sa_s)(y) : (SA_T)0;
                    cacc[j] += y == m[j] ? (SA_T)1 : (SA_T)0;
                }
            }
#if defined(SA_COLS_EXP_AVX2) && SA_HAVE_SOFTMAX_AVX2
            else if (sa_simd_v3)    /* x86-64-v3: the intrinsics exponential (_softmax_avx2.h), out as below */
                SA_COLS_EXP_AVX2(row, op == SA_SOFTMAX ? out + r * out_stride : NULL, m, racc, cacc, width, scale);
#endif
            else if (op == SA_SOFTMAX) {
                /* the block stays in cache: keep exp() in out, rescale it below */
                SA_T *orow = out + r * out_stride;
#pragma omp simd
                for (ptrdiff_t j = 0; j < width; j++) {
                    const SA_T y = row[j] * scale;
                    const SA_T e = SA_EXP_SHIFTED(y, m[j]);
                    orow[j] = e;
                    racc[j] += y == m[j] ? (SA_T)0 : e;
                    cacc[j] += y == m[j] ? (SA_T)1 : (SA_T)0;
                }
            } else {
#pragma omp simd
                for (ptrdiff_t j = 0; j < width; j++) {
                    const SA_T y = row[j] * scale;
                    const SA_T e = SA_EXP_SHIFTED(y, m[j]);
                    racc[j] += y == m[j] ? (SA_T)0 : e;
                    cacc[j] += y == m[j] ? (SA_T)1 : (SA_T)0;
                }
            }
        }
#pragma omp simd
        for (ptrdiff_t j = 0; j < width; j++) {
            rest[j] += racc[j];
            count[j] += cacc[j];
        }
    }
    /* per-column pass-2 parameters, vectorized across columns */
    switch (op) {
    case SA_SOFTMAX:
#pragma omp simd
        for (ptrdiff_t j = 0; j < width; j++)
            pb[j] = (SA_T)sa_softmax_scale(m[j], rest[j], count[j]);
        break;
    case SA_LOG_SOFTMAX:
#pragma omp simd
        for (ptrdiff_t j = 0; j < width; j++) {
            pa[j] = (SA_T)sa_log_softmax_shift(m[j]);
            pb[j] = (SA_T)sa_log_softmax_norm(m[j], rest[j], count[j]);
        }
        break;
    case SA_STABLEMAX:
#pragma omp simd
        for (ptrdiff_t j = 0; j < width; j++)
            pb[j] = (SA_T)sa_stablemax_scale(m[j], rest[j], count[j]);
        break;
    case SA_LOG_STABLEMAX:
#pragma omp simd
        for (ptrdiff_t j = 0; j < width; j++) {
            pa[j] = (SA_T)sa_log_stablemax_norm(m[j], rest[j], count[j]);
            pb[j] = (SA_T)sa_log_stablemax_top(m[j], rest[j], count[j]);
        }
        break;
    case SA_LOGSUMEXP:
#pragma omp simd
        for (ptrdiff_t j = 0; j < width; j++)
            out[j] = (SA_T)sa_logsumexp_value(m[j], rest[j], count[j]);
        return;
    }
    for (ptrdiff_t r = 0; r < n; r++) {
        const SA_T *row = x + r * x_stride;
        SA_T *orow = out + r * out_stride;
        switch (op) {
        case SA_SOFTMAX:        /* out holds exp(y - m) already; pb is NaN for non-finite m */
#pragma omp simd
            for (ptrdiff_t j = 0; j < width; j++)
                orow[j] *= pb[j];
            break;
        case SA_LOG_SOFTMAX:
#pragma omp simd
            for (ptrdiff_t j = 0; j < width; j++)
                orow[j] = (row[j] * scale - pa[j]) - pb[j];
            break;
        case SA_STABLEMAX:
#pragma omp simd
            for (ptrdiff_t j = 0; j < width; j++)
                orow[j] = SA_FN(sa_s)(row[j] * scale) * pb[j];
            break;
        case SA_LOG_STABLEMAX:
#pragma omp simd
            for (ptrdiff_t j = 0; j < width; j++) {
                const SA_T y = row[j] * scale;
                orow[j] = y < m[j] ? SA_FN(sa_log_s)(y) - pa[j] : pb[j];
            }
            break;
        }
    }
}

SA_DISPATCHED(SA_FN(sa_cols), (const SA_T *x, ptrdiff_t x_stride, SA_T *out, ptrdiff_t out_stride,
                               ptrdiff_t n, ptrdiff_t width, SA_T scale, int op),
              (x, x_stride, out, out_stride, n, width, scale, op))
{
    SA_FN(sa_cols_impl)(x, x_stride, out, out_stride, n, width, scale, op);
}

#if defined(SA_COLS_EXP_AVX2) && SA_HAVE_SOFTMAX_AVX2
/* One short row on its own (x86-64-v3, float64; not the stablemax ops).
 * In a tile of one row the column step below runs n times on one lane, a
 * fifth of a microsecond for n = 10. Here the same step runs once along the
 * row, with the row's maximum in every lane: the same exponentials, each
 * left in its own slot of re or ce, which are then added in the column
 * step's order, from the first entry to the last in SA_T. The results are
 * the tile path's bits, so a row gives the same result alone as in a batch
 * (docs/numerics.md). */
SA_INLINE void SA_FN(sa_row_short_alone)(const SA_T *row, SA_T *out, ptrdiff_t n, SA_T scale, int op)
{
    SA_T mv[SA_SMALL_ROW_MAX], e[SA_SMALL_ROW_MAX], re[SA_SMALL_ROW_MAX], ce[SA_SMALL_ROW_MAX];
    SA_T m = -INFINITY;
    for (ptrdiff_t j = 0; j < n; j++) {
        const SA_T y = row[j] * scale;
        m = (y > m || y != y) ? y : m;      /* a NaN sticks, as in sa_cols_impl */
    }
    for (ptrdiff_t j = 0; j < n; j++) {
        mv[j] = m;
        re[j] = ce[j] = 0;
    }
    SA_COLS_EXP_AVX2(row, op == SA_SOFTMAX ? e : NULL, mv, re, ce, n, scale);   /* e: softmax's only, as in the tile */
    SA_T racc = 0, cacc = 0;
    for (ptrdiff_t j = 0; j < n; j++) {
        racc += re[j];
        cacc += ce[j];
    }
    const sa_stats st = {m, racc, cacc, 0};     /* m is NaN where a NaN was seen */
    const sa_params p = sa_finalize(op, &st);
    if (op == SA_LOGSUMEXP) {
        out[0] = (SA_T)p.a;
    } else if (op == SA_SOFTMAX) {
        const SA_T b = (SA_T)p.b;
        for (ptrdiff_t j = 0; j < n; j++)
            out[j] = e[j] * b;
    } else {
        SA_FN(sa_segment_write_impl)(row, out, n, scale, op, p);
    }
}
#endif

/* Short rows (n <= SA_SMALL_ROW_MAX): one row per call would spend more on
 * per-row bookkeeping than on arithmetic, and a SIMD register is wider than
 * the row. Tiles of SA_SMALL_TILE rows are transposed into an L1 scratch
 * buffer so the column kernel's lanes run across rows, then transposed back.
 * float32 softmax takes an eight-rows-in-lanes kernel instead: on the
 * x86-64-v3 path, _softmax_avx2.h for every row; elsewhere the portable
 * _softmax_rows8.h for contiguous rows but the last n_rows % 8, whose
 * results equal this tile path's bit for bit. */
SA_DISPATCHED(SA_FN(sa_rows_small), (const SA_T *x, ptrdiff_t x_stride, SA_T *out, ptrdiff_t out_stride,
                                     ptrdiff_t n_rows, ptrdiff_t n, SA_T scale, int op),
              (x, x_stride, out, out_stride, n_rows, n, scale, op))
{
    SA_T tile[SA_SMALL_ROW_MAX * SA_SMALL_STRIDE];
#if defined(SA_SOFTMAX_SHORT_ROWS_AVX2) && SA_HAVE_SOFTMAX_AVX2
    if (sa_simd_v3 && sa_avx2_short_rows_op(op)) {
        SA_SOFTMAX_SHORT_ROWS_AVX2(x, x_stride, out, out_stride, n_rows, n, scale, op);
        return;
    }
#endif
#if defined(SA_COLS_EXP_AVX2) && SA_HAVE_SOFTMAX_AVX2
    if (sa_simd_v3 && n_rows <= SA_SHORT_ROWS_ALONE && !sa_op_is_stable(op)) {
        for (ptrdiff_t r = 0; r < n_rows; r++)
            SA_FN(sa_row_short_alone)(x + r * x_stride, out + r * out_stride, n, scale, op);
        return;
    }
#endif
#if defined(SA_SOFTMAX_ROWS8) && SA_HAVE_ROWS8
    if (op == SA_SOFTMAX && x_stride == n && out_stride == n) {
        const ptrdiff_t done = SA_SOFTMAX_ROWS8(x, out, n_rows, n, scale);
        x += done * n;
        out += done * n;
        n_rows -= done;
    }
#endif
    for (ptrdiff_t r0 = 0; r0 < n_rows; r0 += SA_SMALL_TILE) {
        const ptrdiff_t w = n_rows - r0 < SA_SMALL_TILE ? n_rows - r0 : SA_SMALL_TILE;
        for (ptrdiff_t r = 0; r < w; r++) {
            const SA_T *row = x + (r0 + r) * x_stride;
            for (ptrdiff_t j = 0; j < n; j++)
                tile[j * SA_SMALL_STRIDE + r] = row[j];
        }
        SA_FN(sa_cols_impl)(tile, SA_SMALL_STRIDE, tile, SA_SMALL_STRIDE, n, w, scale, op);
        if (op == SA_LOGSUMEXP) {
            for (ptrdiff_t r = 0; r < w; r++)
                out[(r0 + r) * out_stride] = tile[r];
            continue;
        }
        for (ptrdiff_t r = 0; r < w; r++) {
            SA_T *orow = out + (r0 + r) * out_stride;
            for (ptrdiff_t j = 0; j < n; j++)
                orow[j] = tile[j * SA_SMALL_STRIDE + r];
        }
    }
}

/* Rows [0, n_rows) of a matrix whose rows are contiguous. For SA_LOGSUMEXP,
 * out has one element per row, out_stride apart; otherwise out is a matrix
 * with rows out_stride apart. stream_out: the call's whole output is larger
 * than the caches (SA_STREAM_OUT_BYTES), so that softmax and log_softmax
 * write it by non-temporal stores where they can (sa_rows_streamed). */
SA_DISPATCHED(SA_FN(sa_rows), (const SA_T *x, ptrdiff_t x_stride, SA_T *out, ptrdiff_t out_stride,
                               ptrdiff_t n_rows, ptrdiff_t n, SA_T scale, int op, int stream_out),
              (x, x_stride, out, out_stride, n_rows, n, scale, op, stream_out))
{
    const int stable = sa_op_is_stable(op);
    if (n <= SA_SMALL_ROW_MAX) {
        SA_FN(sa_rows_small)(x, x_stride, out, out_stride, n_rows, n, scale, op);
        return;
    }
    if (stream_out && SA_FN(sa_rows_streamed)(x, x_stride, out, out_stride, n_rows, n, scale, op))
        return;
    if (op == SA_SOFTMAX && n <= SA_CACHED_ROW_BYTES / (ptrdiff_t)sizeof(SA_T)) {
        for (ptrdiff_t r = 0; r < n_rows; r++)
            SA_FN(sa_softmax_row_cached)(x + r * x_stride, out + r * out_stride, n, scale);
        return;
    }
    for (ptrdiff_t r = 0; r < n_rows; r++) {
        const SA_T *row = x + r * x_stride;
        sa_stats st;
        sa_stats_init(&st);
        SA_T *orow = out + r * out_stride;
        /* log_softmax keeps y in its output during pass 1 and subtracts in
         * place: (y * 1 - a) - b, the same bits as from x */
        const int in_place = op == SA_LOG_SOFTMAX;
        SA_FN(sa_segment_stats_impl)(row, in_place ? orow : NULL, n, scale, stable, 0, &st, NULL);
        const sa_params p = sa_finalize(op, &st);
        if (op == SA_LOGSUMEXP)
            out[r * out_stride] = (SA_T)p.a;
        else if (in_place)
            SA_FN(sa_segment_write_impl)(orow, orow, n, (SA_T)1, op, p);
        else
            SA_FN(sa_segment_write_impl)(row, orow, n, scale, op, p);
    }
}
