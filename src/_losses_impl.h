/*
 * Type-generic body of the loss kernels; included once per type by
 * _losses_kernels.h with SA_T, SA_SUF, SA_EXP, SA_EXP_SMALL (exp of x <= 40,
 * for exp(x - max)), SA_LOG and SA_LOG1P defined.
 * Exponentials take the rounded difference z - max (see
 * sa_segment_stats_impl): a loss's and a gradient's relative error stays
 * below |log p| * 2^-53 for the terms that dominate it, at half the cost of
 * the correction in double. Per-sample functions take the class stride of the logits (zs),
 * of the target (ts) and of the gradient (gs); they are always inlined, and
 * sa_loss_samples calls them once with literal unit strides so that the
 * common contiguous case compiles to vector loops.
 */
#if !defined(SA_T) || !defined(SA_SUF)
#error "_losses_impl.h is a template: _losses_kernels.h includes it once per type"
#endif

/* Pass 1 of the softmax-based losses: the sample's (max, rest, count), by
 * the softmax family's blocked pass (partial sums of at most SA_ROW_BLOCK
 * terms in SA_T, added in double), which also reads memory once. Classes at
 * another stride are gathered one block at a time into a local row that
 * takes the very same pass, block for block, so every layout gives the
 * contiguous row's sums bit for bit. (One SA_T running sum over all the
 * classes drifts by up to 2^-24 relative per term added, and a float count
 * of the maxima stops at 2^24.) */
SA_INLINE void SA_FN(sa_sample_stats)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, sa_stats *st)
{
    sa_stats_init(st);
    if (zs == 1) {
        SA_FN(sa_segment_stats_impl)(z, NULL, C, (SA_T)1, 0, 1, st, NULL);
        return;
    }
    SA_T block[SA_ROW_BLOCK];
    for (ptrdiff_t b = 0; b < C; b += SA_ROW_BLOCK) {
        const ptrdiff_t len = C - b < SA_ROW_BLOCK ? C - b : SA_ROW_BLOCK;
        for (ptrdiff_t i = 0; i < len; i++)
            block[i] = z[(b + i) * zs];
        SA_FN(sa_segment_stats_impl)(block, NULL, len, (SA_T)1, 0, 1, st, NULL);
    }
}

/* Pass 1 of a contiguous row of at most SA_ROW_BLOCK classes whose gradient
 * is wanted: sa_sample_stats' (max, rest, count), with each exp(z_c - m)
 * kept in g, so that the gradient pass rescales them instead of computing
 * every exponential again. A row with a non-finite maximum keeps zeros: its
 * gradient scale is NaN, which makes the whole gradient row NaN anyway. */
SA_INLINE void SA_FN(sa_sample_stats_keep)(const SA_T *z, ptrdiff_t C, sa_stats *st, SA_T *g)
{
    sa_stats_init(st);
    const SA_T m = SA_FN(sa_block_max)(z, C, (SA_T)1, &st->nan);
    st->max = m;
    if (!isfinite(m)) {
        for (ptrdiff_t c = 0; c < C; c++)
            g[c] = 0;
        return;
    }
    SA_T rest = 0, count = 0;
#if defined(SA_EXP_STORE_REST_COUNT_AVX2) && SA_HAVE_SOFTMAX_AVX2
    if (sa_simd_v3) {   /* on x86-64-v3: intrinsics with FMA, four vectors in flight (_softmax_avx2.h) */
        st->rest = SA_EXP_STORE_REST_COUNT_AVX2(z, g, C, m, &count);
        st->count = count;
        return;
    }
#endif
#pragma omp simd reduction(+ : rest, count)
    for (ptrdiff_t c = 0; c < C; c++) {
        const SA_T v = z[c];
        const SA_T e = SA_EXP_SMALL(v - m);
        g[c] = e;
        rest += v == m ? (SA_T)0 : e;
        count += v == m ? (SA_T)1 : (SA_T)0;
    }
    st->rest = rest;
    st->count = count;
}

/* sum_c w_c * (z_c - m) over len contiguous classes, w_c = 1 without
 * class weights. */
SA_INLINE double SA_FN(sa_block_shifted_sum)(const SA_T *z, ptrdiff_t len, const double *w, double m)
{
    double s = 0.0;
    if (w) {
#pragma omp simd reduction(+ : s)
        for (ptrdiff_t c = 0; c < len; c++)
            s += w[c] * ((double)z[c] - m);
    } else {
#pragma omp simd reduction(+ : s)
        for (ptrdiff_t c = 0; c < len; c++)
            s += (double)z[c] - m;
    }
    return s;
}

/* The smoothing term sum_c w_c * (z_c - m), a block of SA_ROW_BLOCK classes
 * at a time (classes at another stride gathered into a local block first),
 * the blocks' sums added in order: every layout runs the same contiguous
 * loop on the same blocks, so it gives the contiguous row's bits whatever
 * vector order the compiler picks (one loop over all the classes with a
 * run-time stride summed in another order than the unit-stride one: GCC
 * and Clang differed there). */
SA_INLINE double SA_FN(sa_weighted_shifted_sum)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C,
                                                const double *w, double m)
{
    SA_T block[SA_ROW_BLOCK];
    double s = 0.0;
    for (ptrdiff_t b = 0; b < C; b += SA_ROW_BLOCK) {
        const ptrdiff_t len = C - b < SA_ROW_BLOCK ? C - b : SA_ROW_BLOCK;
        const SA_T *zb = z + b * zs;
        if (zs != 1) {
            for (ptrdiff_t i = 0; i < len; i++)
                block[i] = zb[i * zs];
            zb = block;
        }
        s += SA_FN(sa_block_shifted_sum)(zb, len, w ? w + b : NULL, m);
    }
    return s;
}

/* Gradient of the softmax-based losses but the target's term:
 * g_c = a exp(z_c - m) + D w_c = A p_c + D w_c with a = A / sum, everything
 * already multiplied by the reduction's scale. kept (a literal at each call)
 * says g holds exp(z_c - m) from sa_sample_stats_keep already. w is NULL
 * without class weights. */
SA_INLINE void SA_FN(sa_write_softmax_grad_terms)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, SA_T m,
                                                  SA_T a, double D, const double *w, SA_T *g,
                                                  ptrdiff_t gs, int kept)
{
#if defined(SA_EXP_STORE_REST_COUNT_AVX2) && SA_HAVE_SOFTMAX_AVX2
    /* On x86-64-v3: the exponentials of sa_sample_stats_keep's
     * kernel, a block at a time, so that every layout's gradient equals the
     * contiguous row's bit for bit (the portable exp has no FMA). */
    if (!kept && sa_simd_v3) {
        SA_T e[SA_ROW_BLOCK];
        SA_T unused_count;
        for (ptrdiff_t b = 0; b < C; b += SA_ROW_BLOCK) {
            const ptrdiff_t len = C - b < SA_ROW_BLOCK ? C - b : SA_ROW_BLOCK;
            for (ptrdiff_t c = 0; c < len; c++)
                e[c] = z[(b + c) * zs];
            SA_EXP_STORE_REST_COUNT_AVX2(e, e, len, m, &unused_count);
            for (ptrdiff_t c = 0; c < len; c++)
                g[(b + c) * gs] = a * e[c] + (SA_T)(w && D != 0.0 ? D * w[b + c] : D);
        }
        return;
    }
#endif
    if (w && D != 0.0) {
#pragma omp simd
        for (ptrdiff_t c = 0; c < C; c++)
            g[c * gs] = a * (kept ? g[c * gs] : SA_EXP_SMALL(z[c * zs] - m)) + (SA_T)(D * w[c]);
    } else {
        const SA_T d = (SA_T)D;
#pragma omp simd
        for (ptrdiff_t c = 0; c < C; c++)
            g[c * gs] = a * (kept ? g[c * gs] : SA_EXP_SMALL(z[c * zs] - m)) + d;
    }
}

/* The whole gradient: g_c = A p_c + D w_c, plus B at c == y. */
SA_INLINE void SA_FN(sa_write_softmax_grad)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, SA_T m,
                                            double inv_sum, double A, double B, double D,
                                            const double *w, int64_t y, SA_T *g, ptrdiff_t gs,
                                            int kept)
{
    if (kept)
        SA_FN(sa_write_softmax_grad_terms)(z, zs, C, m, (SA_T)(A * inv_sum), D, w, g, gs, 1);
    else
        SA_FN(sa_write_softmax_grad_terms)(z, zs, C, m, (SA_T)(A * inv_sum), D, w, g, gs, 0);
    g[y * gs] += (SA_T)B;
}

/* The weight u_c a probability target gives class c: w_c ((1 - eps) t_c + eps / C)
 * for cross-entropy (w_c read with stride ws: 0 without class weights), or
 * the target probability for KL (exp(t_c) for log targets). kl, log_target
 * and ws are literals at every call, so the loops below carry no branch. */
SA_INLINE SA_T SA_FN(sa_target_weight)(SA_T tc, int kl, int log_target, const double *w, ptrdiff_t c,
                                       ptrdiff_t ws, SA_T keep, SA_T lift)
{
    if (kl)
        return log_target ? SA_EXP(tc) : tc;
    return (SA_T)w[c * ws] * (keep * tc + lift);
}

/* sum_c u_c, sum_c u_c (z_c - m) (0 where u_c = 0, even at z_c = -inf) and,
 * for KL, the target's sum u log u (0 log 0 = 0). */
SA_INLINE void SA_FN(sa_target_sums)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, SA_T m,
                                     const SA_T *t, ptrdiff_t ts, int kl, int log_target,
                                     const double *w, ptrdiff_t ws, SA_T keep, SA_T lift,
                                     double *total, double *shifted, double *entropy)
{
    double tot = 0.0, sh = 0.0, ent = 0.0;
#pragma omp simd reduction(+ : tot, sh, ent)
    for (ptrdiff_t c = 0; c < C; c++) {
        const SA_T tc = t[c * ts];
        const SA_T u = SA_FN(sa_target_weight)(tc, kl, log_target, w, c, ws, keep, lift);
        tot += (double)u;
        sh += u != 0 ? (double)(u * (z[c * zs] - m)) : 0.0;
        if (kl)
            ent += u != 0 ? (double)(log_target ? u * tc : tc * SA_LOG(tc)) : 0.0;
    }
    *total = tot;
    *shifted = sh;
    *entropy = ent;
}

/* Probability targets: g_c = a exp(z_c - m) - scale u_c. */
SA_INLINE void SA_FN(sa_target_grad)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, SA_T m, SA_T a,
                                     SA_T scale, const SA_T *t, ptrdiff_t ts, int kl, int log_target,
                                     const double *w, ptrdiff_t ws, SA_T keep, SA_T lift,
                                     SA_T *g, ptrdiff_t gs)
{
#pragma omp simd
    for (ptrdiff_t c = 0; c < C; c++)
        g[c * gs] = a * SA_EXP_SMALL(z[c * zs] - m)
                    - scale * SA_FN(sa_target_weight)(t[c * ts], kl, log_target, w, c, ws, keep, lift);
}

/* Pass 1 and (with g) pass 2 of the probability-target losses, their loop
 * invariants turned into literals. Returns the loss given the sample's
 * maximum m and log(sum exp(z - m)). */
SA_INLINE double SA_FN(sa_target_loss)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, double m, double lognorm,
                                       double inv_sum, const SA_T *t, ptrdiff_t ts, const sa_loss_opts *o,
                                       SA_T *g, ptrdiff_t gs)
{
    static const double unit_weight = 1.0;
    const int kl = o->kind == SA_LOSS_KL_LOGITS;
    const double *w = o->class_weight ? o->class_weight : &unit_weight;
    const SA_T keep = (SA_T)(1.0 - o->smoothing), lift = (SA_T)(o->smoothing / (double)C);
    const SA_T mt = (SA_T)m;
    double total, shifted, entropy;
#define SA_TARGET_SUMS(KL, LOGT, WS) \
    SA_FN(sa_target_sums)(z, zs, C, mt, t, ts, KL, LOGT, w, WS, keep, lift, &total, &shifted, &entropy)
    if (kl)
        o->log_target ? SA_TARGET_SUMS(1, 1, 0) : SA_TARGET_SUMS(1, 0, 0);
    else
        o->class_weight ? SA_TARGET_SUMS(0, 0, 1) : SA_TARGET_SUMS(0, 0, 0);
#undef SA_TARGET_SUMS
    if (g) {
        const SA_T a = (SA_T)(o->grad_scale * total * inv_sum), scale = (SA_T)o->grad_scale;
#define SA_TARGET_GRAD(KL, LOGT, WS) \
        SA_FN(sa_target_grad)(z, zs, C, mt, a, scale, t, ts, KL, LOGT, w, WS, keep, lift, g, gs)
        if (kl)
            o->log_target ? SA_TARGET_GRAD(1, 1, 0) : SA_TARGET_GRAD(1, 0, 0);
        else
            o->class_weight ? SA_TARGET_GRAD(0, 0, 1) : SA_TARGET_GRAD(0, 0, 0);
#undef SA_TARGET_GRAD
    }
    /* loss = sum_c u_c (lse - z_c) (+ sum u log u for KL), summed relative to
     * m so that large logits do not cancel. A non-finite m is the lse itself
     * (NaN, +inf, or -inf for a row of only -inf): the loss is then
     * -sum_c u_c (z_c - m), still 0 where u_c = 0, as the portable path. */
    return sa_isfinite(m) ? entropy + total * lognorm - shifted : entropy - shifted;
}

/* The index-target kinds (sa_loss_index_softmax_kind) of
 * sa_loss_from_stats: the loss, and the gradient's coefficients A, B, D of
 * sa_write_softmax_grad before the reduction's scale. m is the sample's
 * maximum, NaN when it holds a NaN. */
SA_INLINE double SA_FN(sa_index_loss)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, int64_t y,
                                      const sa_loss_opts *o, double m, double lognorm,
                                      double *A_out, double *B_out, double *D_out)
{
    const int finite = sa_isfinite(m);
    const double lse = finite ? m + lognorm : m;
    const double *w = o->class_weight;
    const double wy = w ? w[y] : 1.0;
    const double zy = (double)z[y * zs];
    const double logp_y = finite ? (zy - m) - lognorm : zy - lse;
    double loss = 0.0, A = 0.0, B = 0.0, D = 0.0;

    switch (o->kind) {
    case SA_LOSS_CROSS_ENTROPY: {
        const double eps = o->smoothing;
        loss = (1.0 - eps) * wy * -logp_y;
        if (eps > 0.0) {
            const double shifted = SA_FN(sa_weighted_shifted_sum)(z, zs, C, w, m);
            loss += finite ? eps / (double)C * (o->class_weight_sum * lognorm - shifted) : NAN;
        }
        A = (1.0 - eps) * wy + eps * o->class_weight_sum / (double)C;
        B = -(1.0 - eps) * wy;
        D = -eps / (double)C;
        break;
    }
    case SA_LOSS_FOCAL: {
        const double q = exp(logp_y), one_minus_q = -expm1(logp_y);
        const double modulator = pow(one_minus_q, o->gamma);
        loss = -wy * modulator * logp_y;
        /* d loss / d log q; its first term vanishes at q = 1 for any gamma > 0 */
        const double dq = (one_minus_q > 0.0 && o->gamma != 0.0)
            ? o->gamma * pow(one_minus_q, o->gamma - 1.0) * q * logp_y : 0.0;
        const double k = wy * (dq - modulator);
        A = -k;
        B = k;
        break;
    }
    case SA_LOSS_COMP_SUM: {
        const double tau = o->tau;
        loss = wy * (tau == 1.0 ? -logp_y : expm1(-(1.0 - tau) * logp_y) / (1.0 - tau));
        const double k = wy * exp((tau - 1.0) * logp_y);     /* -d loss / d log p_y */
        A = k;
        B = -k;
        break;
    }
    case SA_LOSS_LSE_PENALTY:
        loss = o->weight * lse * lse;
        A = 2.0 * o->weight * lse;
        break;
    }
    *A_out = A;
    *B_out = B;
    *D_out = D;
    return loss;
}

/* Losses built on log-softmax: cross-entropy (index and probability
 * targets), focal, comp-sum, logsumexp penalty, KL on logits, given the
 * sample's statistics st and lognorm = log(sum exp(z - m)) =
 * sa_lognorm(st.rest, st.count); keep says g holds exp(z_c - m) already. */
SA_INLINE double SA_FN(sa_loss_from_stats)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, int64_t y,
                                           const SA_T *t, ptrdiff_t ts, SA_T *g, ptrdiff_t gs,
                                           const sa_loss_opts *o, sa_stats st, double lognorm, int keep)
{
    const double m = st.nan ? NAN : st.max;
    if (o->kind == SA_LOSS_CROSS_ENTROPY_PROBS || o->kind == SA_LOSS_KL_LOGITS)
        return SA_FN(sa_target_loss)(z, zs, C, m, lognorm, sa_softmax_scale(m, st.rest, st.count),
                                     t, ts, o, g, gs);
    double A, B, D;
    const double loss = SA_FN(sa_index_loss)(z, zs, C, y, o, m, lognorm, &A, &B, &D);
    if (g) {
        const double s = o->grad_scale;
        const double inv_sum = sa_softmax_scale(m, st.rest, st.count);
        SA_FN(sa_write_softmax_grad)(z, zs, C, (SA_T)m, inv_sum, s * A, s * B, s * D, o->class_weight,
                                     y, g, gs, keep);
    }
    return loss;
}

SA_INLINE double SA_FN(sa_loss_softmax_based)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, int64_t y,
                                              const SA_T *t, ptrdiff_t ts, SA_T *g, ptrdiff_t gs,
                                              const sa_loss_opts *o)
{
    /* A short contiguous row whose gradient is wanted keeps its exponentials
     * in the gradient row: one exp per entry instead of two. The probability
     * targets write their gradient elsewhere (sa_target_loss). */
    const int keep = g && zs == 1 && gs == 1 && C <= SA_ROW_BLOCK
                     && o->kind != SA_LOSS_CROSS_ENTROPY_PROBS && o->kind != SA_LOSS_KL_LOGITS;
    sa_stats st;
    if (keep) {
        SA_FN(sa_sample_stats_keep)(z, C, &st, g);
        return SA_FN(sa_loss_from_stats)(z, 1, C, y, t, ts, g, 1, o, st, sa_lognorm(st.rest, st.count), 1);
    }
    SA_FN(sa_sample_stats)(z, zs, C, &st);
    return SA_FN(sa_loss_from_stats)(z, zs, C, y, t, ts, g, gs, o, st, sa_lognorm(st.rest, st.count), 0);
}

SA_INLINE void SA_FN(sa_fill)(SA_T *g, ptrdiff_t gs, ptrdiff_t C, SA_T v)
{
    for (ptrdiff_t c = 0; c < C; c++)
        g[c * gs] = v;
}

/* nll_loss: the input already holds log-probabilities. */
SA_INLINE double SA_FN(sa_loss_nll)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, int64_t y,
                                    SA_T *g, ptrdiff_t gs, const sa_loss_opts *o)
{
    const double wy = o->class_weight ? o->class_weight[y] : 1.0;
    if (g) {
        SA_FN(sa_fill)(g, gs, C, (SA_T)0);
        g[y * gs] = (SA_T)(-o->grad_scale * wy);
    }
    return -wy * (double)z[y * zs];
}

/* Z-loss: zeta = (z - mean) / std (population std), loss = softplus(a (b -
 * zeta_y)) / a. With all logits equal (std 0) zeta_y is taken as 0 and the
 * gradient as 0: the loss is flat along every direction that keeps them equal. */
SA_INLINE double SA_FN(sa_loss_z)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, int64_t y,
                                  SA_T *g, ptrdiff_t gs, const sa_loss_opts *o)
{
    double sum = 0.0, sq = 0.0, lo = INFINITY, hi = -INFINITY;
SA_SIMD_MINMAX(reduction(+ : sum) reduction(min : lo) reduction(max : hi))
    for (ptrdiff_t c = 0; c < C; c++) {
        const double v = (double)z[c * zs];
        sum += v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    const double mu = sum / (double)C;
#pragma omp simd reduction(+ : sq)
    for (ptrdiff_t c = 0; c < C; c++) {
        const double d = (double)z[c * zs] - mu;
        sq += d * d;
    }
    /* Equal logits by comparison, not by the variance: their mean can round
     * away from them and leave a tiny sigma that standardizes rounding error.
     * A NaN or infinite row keeps its NaN (sum is not finite). */
    const double sigma = (isfinite(sum) && lo == hi) ? 0.0 : sqrt(sq / (double)C);
    const double wy = o->class_weight ? o->class_weight[y] : 1.0;
    const double zeta_y = sigma == 0.0 ? 0.0 : ((double)z[y * zs] - mu) / sigma;
    const double u = o->a * (o->b - zeta_y);
    if (g) {
        /* d zeta_y / d z_c = ([c == y] - 1/C - zeta_y zeta_c / C) / sigma */
        const double k = sigma == 0.0 ? 0.0 : -o->grad_scale * wy * sa_sigmoid(u) / sigma;
        const double k0 = -k / (double)C;
        const double k1 = sigma == 0.0 ? 0.0 : -k * zeta_y / (sigma * (double)C);
#pragma omp simd
        for (ptrdiff_t c = 0; c < C; c++)
            g[c * gs] = (SA_T)(k0 + k1 * ((double)z[c * zs] - mu));
        g[y * gs] += (SA_T)k;
    }
    return wy * sa_softplus(u) / o->a;
}

/* Multiclass hinge, h_c = margin - z_y + z_c over c != y: Weston-Watkins sums
 * max(0, h_c)^p / C (torch's multi_margin_loss), Crammer-Singer takes the
 * largest h_c (its first index on ties). */
SA_INLINE double SA_FN(sa_loss_margin)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, int64_t y,
                                       SA_T *g, ptrdiff_t gs, const sa_loss_opts *o)
{
    const double wy = o->class_weight ? o->class_weight[y] : 1.0;
    const double base = o->margin - (double)z[y * zs];
    const int squared = o->power == 2;
    int bad = 0;
    double loss;
    if (o->kind == SA_LOSS_MARGIN_WW) {
        double sum = 0.0;
#pragma omp simd reduction(+ : sum) reduction(| : bad)
        for (ptrdiff_t c = 0; c < C; c++) {
            const double h = base + (double)z[c * zs];
            const double hinge = h > 0.0 ? (squared ? h * h : h) : 0.0;
            sum += c != y ? hinge : 0.0;
            bad |= c != y && h != h;    /* the target's own class is no hinge */
        }
        loss = bad ? NAN : wy * sum / (double)C;
        if (g) {
            const double k = o->grad_scale * wy / (double)C;
            double total = 0.0;
            for (ptrdiff_t c = 0; c < C; c++) {
                const double h = base + (double)z[c * zs];
                const double d = (c != y && h > 0.0) ? k * (squared ? 2.0 * h : 1.0) : 0.0;
                g[c * gs] = (SA_T)(bad ? NAN : d);
                total += d;
            }
            g[y * gs] = (SA_T)(bad ? NAN : -total);
        }
        return loss;
    }
    double h = -INFINITY;               /* no hinge (C == 1): loss 0 */
    ptrdiff_t arg = -1;
    for (ptrdiff_t c = 0; c < C; c++) {
        const double hc = base + (double)z[c * zs];
        if (c == y)
            continue;
        bad |= hc != hc;
        if (hc > h) {
            h = hc;
            arg = c;
        }
    }
    loss = bad ? NAN : (h > 0.0 ? wy * (squared ? h * h : h) : 0.0);
    if (g) {
        SA_FN(sa_fill)(g, gs, C, (SA_T)(bad ? NAN : 0.0));
        if (!bad && h > 0.0) {
            const double d = o->grad_scale * wy * (squared ? 2.0 * h : 1.0);
            g[arg * gs] = (SA_T)d;
            g[y * gs] = (SA_T)-d;
        }
    }
    return loss;
}

SA_INLINE double SA_FN(sa_loss_one)(const SA_T *z, ptrdiff_t zs, ptrdiff_t C, int64_t y,
                                    const SA_T *t, ptrdiff_t ts, SA_T *g, ptrdiff_t gs,
                                    const sa_loss_opts *o)
{
    if (y < 0) {                        /* ignored sample: no loss, no gradient */
        if (g)
            SA_FN(sa_fill)(g, gs, C, (SA_T)0);
        return 0.0;
    }
    switch (o->kind) {
    case SA_LOSS_NLL:
        return SA_FN(sa_loss_nll)(z, zs, C, y, g, gs, o);
    case SA_LOSS_Z:
        return SA_FN(sa_loss_z)(z, zs, C, y, g, gs, o);
    case SA_LOSS_MARGIN_WW:
    case SA_LOSS_MARGIN_CS:
        return SA_FN(sa_loss_margin)(z, zs, C, y, g, gs, o);
    default:
        return SA_FN(sa_loss_softmax_based)(z, zs, C, y, t, ts, g, gs, o);
    }
}

#if defined(SA_SHORT_STATS_AVX2) && SA_HAVE_SOFTMAX_AVX2
/* Samples [begin, end) of sa_loss_samples with C <= SA_SMALL_ROW_MAX, on
 * x86-64-v3: a sample at a time spends most of its time around a few
 * vectors of arithmetic, so up to SA_AVX2_TILE_ROWS samples are gathered
 * into a contiguous tile (from any layout, so that every layout gives the
 * same bits) whose statistics and exponentials the softmax short-row
 * kernel computes eight samples to a register; each sample's loss and
 * gradient then follow from them as in sa_loss_softmax_based. */
SA_INLINE void SA_FN(sa_loss_samples_short)(const SA_T *x, ptrdiff_t x_s0, ptrdiff_t x_sc, ptrdiff_t x_s2,
                                            ptrdiff_t C, ptrdiff_t inner, const int64_t *y, SA_T *g,
                                            const sa_loss_opts *o, double *loss, ptrdiff_t begin, ptrdiff_t end)
{
    SA_T tile[SA_AVX2_TILE_ROWS * SA_SMALL_ROW_MAX + 8];
    SA_T m[SA_AVX2_TILE_ROWS], rest[SA_AVX2_TILE_ROWS], count[SA_AVX2_TILE_ROWS];
    double lognorm[SA_AVX2_TILE_ROWS];
    for (ptrdiff_t n0 = begin; n0 < end; n0 += SA_AVX2_TILE_ROWS) {
        const ptrdiff_t rows = end - n0 < SA_AVX2_TILE_ROWS ? end - n0 : SA_AVX2_TILE_ROWS;
        for (ptrdiff_t r = 0; r < rows; r++) {
            const ptrdiff_t n = n0 + r, oi = n / inner, ii = n - oi * inner;
            const SA_T *z = x + oi * x_s0 + ii * x_s2;
            for (ptrdiff_t c = 0; c < C; c++)
                tile[r * C + c] = z[c * x_sc];
        }
        for (ptrdiff_t i = rows * C; i < (rows + 7) / 8 * 8 * C; i++)     /* the last group's padding rows */
            tile[i] = 0;
        SA_SHORT_STATS_AVX2(tile, tile, rows, C, m, rest, count);
#pragma omp simd
        for (ptrdiff_t r = 0; r < rows; r++)    /* the logarithms vectorized across the samples */
            lognorm[r] = sa_lognorm(rest[r], count[r]);
        for (ptrdiff_t r = 0; r < rows; r++) {
            const ptrdiff_t n = n0 + r, oi = n / inner, ii = n - oi * inner;
            const SA_T *z = x + oi * x_s0 + ii * x_s2;
            SA_T *gn = g ? g + oi * C * inner + ii : NULL;
            const int64_t yn = y ? y[n] : 0;
            if (yn < 0) {
                loss[n] = SA_FN(sa_loss_one)(z, x_sc, C, yn, NULL, 0, gn, inner, o);
                continue;
            }
            const sa_stats st = {m[r] != m[r] ? 0.0 : (double)m[r], (double)rest[r], (double)count[r],
                                 m[r] != m[r]};
            if (gn)
                for (ptrdiff_t c = 0; c < C; c++)
                    gn[c * inner] = tile[r * C + c];
            loss[n] = SA_FN(sa_loss_from_stats)(z, x_sc, C, yn, NULL, 0, gn, inner, o, st, lognorm[r], 1);
        }
    }
}
#endif

/* A few long samples split over threads (_losses.pyx's _samples_split), for
 * the kinds of sa_loss_index_softmax_kind: each sample's classes are cut
 * into segments of seg classes (the last one shorter), task t being segment
 * t % n_seg of sample t / n_seg. The layout arguments are sa_loss_samples'.
 * sa_loss_split_task locates a task: its sample's logits z, the segment's
 * first class c0 and its length. */
SA_INLINE const SA_T *SA_FN(sa_loss_split_task)(const SA_T *x, ptrdiff_t x_s0, ptrdiff_t x_s2,
                                                ptrdiff_t C, ptrdiff_t inner, ptrdiff_t seg,
                                                ptrdiff_t task, ptrdiff_t *n, ptrdiff_t *c0, ptrdiff_t *len)
{
    const ptrdiff_t n_seg = (C + seg - 1) / seg;
    *n = task / n_seg;
    *c0 = (task - *n * n_seg) * seg;
    *len = C - *c0 < seg ? C - *c0 : seg;
    const ptrdiff_t oi = *n / inner, ii = *n - oi * inner;
    return x + oi * x_s0 + ii * x_s2;
}

/* Pass 1 of a task: its segment's statistics, by sa_sample_stats' pass, so
 * that every layout gives the contiguous sample's bits. */
SA_DISPATCHED(SA_FN(sa_loss_split_stats), (const SA_T *x, ptrdiff_t x_s0, ptrdiff_t x_sc, ptrdiff_t x_s2,
                                           ptrdiff_t C, ptrdiff_t inner, ptrdiff_t seg, ptrdiff_t task,
                                           sa_stats *st),
              (x, x_s0, x_sc, x_s2, C, inner, seg, task, st))
{
    ptrdiff_t n, c0, len;
    const SA_T *z = SA_FN(sa_loss_split_task)(x, x_s0, x_s2, C, inner, seg, task, &n, &c0, &len);
    SA_FN(sa_sample_stats)(z + c0 * x_sc, x_sc, len, st);
}

/* Between the passes, sample n: its n_seg segments' statistics st merged
 * into st[0], its loss into *loss, and what pass 2 needs into *k. */
SA_DISPATCHED(SA_FN(sa_loss_split_finish), (const SA_T *x, ptrdiff_t x_s0, ptrdiff_t x_sc, ptrdiff_t x_s2,
                                            ptrdiff_t C, ptrdiff_t inner, const int64_t *y,
                                            const sa_loss_opts *o, ptrdiff_t n, sa_stats *st,
                                            ptrdiff_t n_seg, double *loss, sa_loss_split_grad *k),
              (x, x_s0, x_sc, x_s2, C, inner, y, o, n, st, n_seg, loss, k))
{
    for (ptrdiff_t s = 1; s < n_seg; s++)
        sa_stats_merge(0, st, &st[s]);
    k->ignored = y[n] < 0;
    if (k->ignored) {
        *loss = 0.0;
        return;
    }
    const ptrdiff_t oi = n / inner, ii = n - oi * inner;
    const SA_T *z = x + oi * x_s0 + ii * x_s2;
    const double m = st->nan ? NAN : st->max, lognorm = sa_lognorm(st->rest, st->count);
    double A, B, D;
    *loss = SA_FN(sa_index_loss)(z, x_sc, C, y[n], o, m, lognorm, &A, &B, &D);
    const double s = o->grad_scale;
    k->max = m;
    k->a = s * A * sa_softmax_scale(m, st->rest, st->count);
    k->B = s * B;
    k->D = s * D;
}

/* Pass 2 of a task: its segment of the gradient g (C-contiguous, as
 * sa_loss_samples'), given its sample's k; the same bits as the whole
 * sample's sa_write_softmax_grad. */
SA_DISPATCHED(SA_FN(sa_loss_split_grad), (const SA_T *x, ptrdiff_t x_s0, ptrdiff_t x_sc, ptrdiff_t x_s2,
                                          ptrdiff_t C, ptrdiff_t inner, const int64_t *y,
                                          const sa_loss_opts *o, ptrdiff_t seg, ptrdiff_t task,
                                          const sa_loss_split_grad *k, SA_T *g),
              (x, x_s0, x_sc, x_s2, C, inner, y, o, seg, task, k, g))
{
    ptrdiff_t n, c0, len;
    const SA_T *z = SA_FN(sa_loss_split_task)(x, x_s0, x_s2, C, inner, seg, task, &n, &c0, &len);
    const ptrdiff_t oi = n / inner, ii = n - oi * inner;
    SA_T *gn = g + oi * C * inner + ii;
    k += n;
    if (k->ignored) {
        SA_FN(sa_fill)(gn + c0 * inner, inner, len, (SA_T)0);
        return;
    }
    const double *w = o->class_weight ? o->class_weight + c0 : NULL;
    if (x_sc == 1 && inner == 1)
        SA_FN(sa_write_softmax_grad_terms)(z + c0, 1, len, (SA_T)k->max, (SA_T)k->a, k->D, w, gn + c0, 1, 0);
    else
        SA_FN(sa_write_softmax_grad_terms)(z + c0 * x_sc, x_sc, len, (SA_T)k->max, (SA_T)k->a, k->D, w,
                                           gn + c0 * inner, inner, 0);
    if (y[n] >= c0 && y[n] < c0 + len)      /* after the target's own term, as the whole sample */
        gn[y[n] * inner] += (SA_T)k->B;
}

/* Samples [begin, end) of logits laid out as (outer, C, inner) with strides
 * x_s0, x_sc, x_s2 (elements). y: one target per sample (-1 = ignored) or
 * NULL for probability targets; t: probability targets in the same logical
 * layout (strides t_s0, t_sc, t_s2) or NULL; g: the gradient, C-contiguous
 * (outer, C, inner), or NULL. loss[n] receives sample n's loss. */
SA_DISPATCHED(SA_FN(sa_loss_samples), (const SA_T *x, ptrdiff_t x_s0, ptrdiff_t x_sc, ptrdiff_t x_s2,
                                       ptrdiff_t C, ptrdiff_t inner, const int64_t *y,
                                       const SA_T *t, ptrdiff_t t_s0, ptrdiff_t t_sc, ptrdiff_t t_s2,
                                       SA_T *g, const sa_loss_opts *o, double *loss,
                                       ptrdiff_t begin, ptrdiff_t end),
              (x, x_s0, x_sc, x_s2, C, inner, y, t, t_s0, t_sc, t_s2, g, o, loss, begin, end))
{
#if defined(SA_SHORT_STATS_AVX2) && SA_HAVE_SOFTMAX_AVX2
    if (sa_simd_v3 && C <= SA_SMALL_ROW_MAX && !t && sa_loss_index_softmax_kind(o->kind)) {
        SA_FN(sa_loss_samples_short)(x, x_s0, x_sc, x_s2, C, inner, y, g, o, loss, begin, end);
        return;
    }
#endif
    const int unit = x_sc == 1 && (!t || t_sc == 1) && (!g || inner == 1);
    for (ptrdiff_t n = begin; n < end; n++) {
        const ptrdiff_t oi = n / inner, ii = n - oi * inner;
        const SA_T *z = x + oi * x_s0 + ii * x_s2;
        const SA_T *tn = t ? t + oi * t_s0 + ii * t_s2 : NULL;
        SA_T *gn = g ? g + oi * C * inner + ii : NULL;
        const int64_t yn = y ? y[n] : 0;
        if (unit)
            loss[n] = SA_FN(sa_loss_one)(z, 1, C, yn, tn, 1, gn, 1, o);
        else
            loss[n] = SA_FN(sa_loss_one)(z, x_sc, C, yn, tn, t_sc, gn, inner, o);
    }
}

/* Binary cross-entropy with logits on one contiguous row. weight and
 * pos_weight are read with strides ws, ps (0: one value for the row, 1:
 * contiguous); ws, ps and store are literals at every call (see
 * sa_bce_row), so both loops are branch-free and vectorize. */
SA_INLINE double SA_FN(sa_bce_row_body)(const SA_T *x, const SA_T *t, ptrdiff_t L,
                                        const SA_T *w, ptrdiff_t ws, const SA_T *pw, ptrdiff_t ps,
                                        SA_T *out, int store, SA_T *g, SA_T scale)
{
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (ptrdiff_t i = 0; i < L; i++) {
        const SA_T xi = x[i], ti = t[i];
        const SA_T lw = (SA_T)1 + (pw[i * ps] - (SA_T)1) * ti;
        const SA_T e = SA_EXP_SMALL(-(xi < 0 ? -xi : xi));                       /* exp(-|x|) in (0, 1] */
        const SA_T l1p = SA_LOG1P(e);
        /* (1 - t) x + lw softplus(-x), written for each sign of x as a sum of
         * non-negative terms (for 0 <= t <= 1): at x < 0 it is
         * lw log1p(exp(x)) - x pw t, which keeps a tiny loss accurate where
         * x + softplus(-x) would cancel to 0 (as torch's formula does). */
        const SA_T l = w[i * ws] * (xi >= 0 ? ((SA_T)1 - ti) * xi + lw * l1p
                                            : lw * l1p - xi * (pw[i * ps] * ti));
        if (store)
            out[i] = l;
        sum += (double)l;
    }
    if (g) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < L; i++) {
            const SA_T xi = x[i], ti = t[i];
            const SA_T lw = (SA_T)1 + (pw[i * ps] - (SA_T)1) * ti;
            const SA_T e = SA_EXP_SMALL(-(xi < 0 ? -xi : xi));
            const SA_T sig_neg = xi >= 0 ? e / ((SA_T)1 + e) : (SA_T)1 / ((SA_T)1 + e);   /* sigmoid(-x) */
            g[i] = scale * w[i * ws] * (((SA_T)1 - ti) - lw * sig_neg);
        }
    }
    return sum;
}

/* The Python layer passes weight and pos_weight with an element stride of 0
 * or 1 (copying anything else) and NULL when absent. */
SA_INLINE double SA_FN(sa_bce_row)(const SA_T *x, const SA_T *t, ptrdiff_t L,
                                   const SA_T *w, ptrdiff_t ws, const SA_T *pw, ptrdiff_t ps,
                                   SA_T *out, SA_T *g, SA_T scale)
{
    static const SA_T unit = 1;
    if (!w) {
        w = &unit;
        ws = 0;
    }
    if (!pw) {
        pw = &unit;
        ps = 0;
    }
#define SA_BCE(WS, PS) (out ? SA_FN(sa_bce_row_body)(x, t, L, w, WS, pw, PS, out, 1, g, scale) \
                            : SA_FN(sa_bce_row_body)(x, t, L, w, WS, pw, PS, NULL, 0, g, scale))
    if (ws == 0)
        return ps == 0 ? SA_BCE(0, 0) : SA_BCE(0, 1);
    return ps == 0 ? SA_BCE(1, 0) : SA_BCE(1, 1);
#undef SA_BCE
}

/* torchvision.ops.sigmoid_focal_loss, in double (pow has no vector form). */
SA_INLINE double SA_FN(sa_sigmoid_focal_row)(const SA_T *x, const SA_T *t, ptrdiff_t L,
                                             const sa_ew_opts *o, SA_T *out, SA_T *g)
{
    double sum = 0.0;
    for (ptrdiff_t i = 0; i < L; i++) {
        const double xi = x[i], ti = t[i];
        const double p = sa_sigmoid(xi);
        /* (1 - t) softplus(x) + t softplus(-x), a zero coefficient giving 0:
         * x t would be inf * 0 = NaN at x = +-inf, whose limits are finite
         * or +inf. */
        const double ce = (ti != 1.0 ? (1.0 - ti) * sa_softplus(xi) : 0.0)
                          + (ti != 0.0 ? ti * sa_softplus(-xi) : 0.0);
        const double one_minus_pt = 1.0 - (p * ti + (1.0 - p) * (1.0 - ti));
        const double modulator = pow(one_minus_pt, o->gamma);
        const double alpha_t = o->alpha >= 0.0 ? o->alpha * ti + (1.0 - o->alpha) * (1.0 - ti) : 1.0;
        const double l = alpha_t * ce * modulator;
        if (out)
            out[i] = (SA_T)l;
        if (g) {
            const double dpt = p * (1.0 - p) * (2.0 * ti - 1.0);
            const double dmod = (one_minus_pt > 0.0 && o->gamma != 0.0)
                ? -o->gamma * pow(one_minus_pt, o->gamma - 1.0) * dpt : 0.0;
            /* dmod is 0 where p saturates: ce dmod -> 0 there (|x| e^-|x|),
             * even where ce is infinite. */
            const double ce_dmod = dmod != 0.0 ? ce * dmod : 0.0;
            g[i] = (SA_T)(o->grad_scale * alpha_t * ((p - ti) * modulator + ce_dmod));
        }
        sum += l;
    }
    return sum;
}

/* torch.nn.functional.kl_div pointwise: t (log t - x), or exp(t) (t - x) for
 * log targets; a zero target probability contributes 0 even where x = -inf
 * (torch gives 0 * inf = NaN there). log_target and store are literals. */
SA_INLINE double SA_FN(sa_kl_row_body)(const SA_T *x, const SA_T *t, ptrdiff_t L, int log_target,
                                       SA_T *out, int store, SA_T *g, SA_T scale)
{
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (ptrdiff_t i = 0; i < L; i++) {
        const SA_T xi = x[i], ti = t[i];
        const SA_T u = log_target ? SA_EXP(ti) : ti;
        const SA_T l = u == 0 ? (SA_T)0 : (log_target ? u * (ti - xi) : ti * (SA_LOG(ti) - xi));
        if (store)
            out[i] = l;
        sum += (double)l;
    }
    if (g) {
#pragma omp simd
        for (ptrdiff_t i = 0; i < L; i++)
            g[i] = -scale * (log_target ? SA_EXP(t[i]) : t[i]);
    }
    return sum;
}

SA_INLINE double SA_FN(sa_kl_row)(const SA_T *x, const SA_T *t, ptrdiff_t L,
                                  const sa_ew_opts *o, SA_T *out, SA_T *g)
{
    const SA_T scale = (SA_T)o->grad_scale;
    if (o->log_target)
        return out ? SA_FN(sa_kl_row_body)(x, t, L, 1, out, 1, g, scale)
                   : SA_FN(sa_kl_row_body)(x, t, L, 1, NULL, 0, g, scale);
    return out ? SA_FN(sa_kl_row_body)(x, t, L, 0, out, 1, g, scale)
               : SA_FN(sa_kl_row_body)(x, t, L, 0, NULL, 0, g, scale);
}

/* Rows [begin, end) of contiguous (R, L) x and t; out (elementwise losses)
 * and g (gradient) are contiguous (R, L) or NULL; row_loss[r] gets each
 * row's sum. */
SA_DISPATCHED(SA_FN(sa_elementwise_rows), (const SA_T *x, const SA_T *t, ptrdiff_t L,
                                           const SA_T *w, ptrdiff_t w_s0, ptrdiff_t w_s1,
                                           const SA_T *pw, ptrdiff_t p_s0, ptrdiff_t p_s1,
                                           const sa_ew_opts *o, SA_T *out, SA_T *g, double *row_loss,
                                           ptrdiff_t begin, ptrdiff_t end),
              (x, t, L, w, w_s0, w_s1, pw, p_s0, p_s1, o, out, g, row_loss, begin, end))
{
    for (ptrdiff_t r = begin; r < end; r++) {
        const SA_T *xr = x + r * L, *tr = t + r * L;
        SA_T *outr = out ? out + r * L : NULL;
        SA_T *gr = g ? g + r * L : NULL;
        switch (o->kind) {
        case SA_EW_BCE:
            row_loss[r] = SA_FN(sa_bce_row)(xr, tr, L, w ? w + r * w_s0 : NULL, w_s1,
                                            pw ? pw + r * p_s0 : NULL, p_s1, outr, gr,
                                            (SA_T)o->grad_scale);
            break;
        case SA_EW_SIGMOID_FOCAL:
            row_loss[r] = SA_FN(sa_sigmoid_focal_row)(xr, tr, L, o, outr, gr);
            break;
        case SA_EW_KL:
            row_loss[r] = SA_FN(sa_kl_row)(xr, tr, L, o, outr, gr);
            break;
        }
    }
}
