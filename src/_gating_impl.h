/*
 * Type-generic body of the top-k and gating kernels; included once per type
 * by _gating_kernels.h with SA_T (float or double), SA_SUF (f32 or f64),
 * SA_KEY_T (the rank key's unsigned type), SA_RANK (sa_rank_f32 or
 * sa_rank_f64) and SA_EXP_SMALL defined. Names get the suffix:
 * sa_topk_rows_f32, sa_topk_rows_f64, ...
 */
#if !defined(SA_T) || !defined(SA_SUF)
#error "_gating_impl.h is a template: _gating_kernels.h includes it once per type"
#endif

/* Small k: the row is walked in blocks whose rank keys are computed in one
 * vector loop; groups of 8 keys are then tested against the k-th best key
 * so far (a vector compare), and only a group holding a better key is
 * inserted one by one. After the first few groups almost none does. */
SA_INLINE void SA_FN(sa_topk_small_row)(const SA_T *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                        sa_ranked *best)
{
    SA_KEY_T keys[SA_TOPK_BLOCK];
    ptrdiff_t count = 0;
    SA_KEY_T threshold = 0;            /* the k-th best key once count == k */
    for (ptrdiff_t b = 0; b < n; b += SA_TOPK_BLOCK) {
        const ptrdiff_t len = n - b < SA_TOPK_BLOCK ? n - b : SA_TOPK_BLOCK;
#pragma omp simd
        for (ptrdiff_t i = 0; i < len; i++)
            keys[i] = (SA_KEY_T)SA_RANK(row[b + i], largest);
        for (ptrdiff_t g = 0; g < len; g += 8) {
            const ptrdiff_t m = len - g < 8 ? len - g : 8;
            int better = count < k;
            for (ptrdiff_t j = 0; j < m; j++)
                better |= keys[g + j] > threshold;
            if (!better)
                continue;
            for (ptrdiff_t j = 0; j < m; j++) {
                /* the threshold stays in a register: no load of best[] per entry */
                if (count == k && keys[g + j] <= threshold)
                    continue;
                const sa_ranked e = {keys[g + j], b + g + j};
                count = sa_topk_insert(best, count, k, e);
                threshold = count == k ? (SA_KEY_T)best[k - 1].key : 0;
            }
        }
    }
}

/* Large k on a long row (n >= SA_TOPK_FILTER_RATIO k): a running threshold
 * filter. Entries are appended to best while their key reaches the
 * threshold; when the next block could overflow 4 k + SA_TOPK_BLOCK entries,
 * a quickselect keeps the k best so far and the threshold rises to the k-th
 * best key so far, which no entry of the result can be below. Rank keys are
 * computed one block at a time in a vector loop and groups of 8 with no key
 * reaching the threshold are skipped by one vector compare, so on unordered
 * data the row is streamed once and few entries are copied; on sorted rows
 * every entry is copied and the cost is about that of one quickselect over
 * the row. The row is read in order (no sample at strided positions: those
 * reads wait on memory once the row is out of L2). best holds n entries.
 * Returns the number kept, at least k, with the k first among them. */
SA_INLINE ptrdiff_t SA_FN(sa_topk_filter_row)(const SA_T *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                              sa_ranked *best)
{
    const ptrdiff_t cap = 4 * k + SA_TOPK_BLOCK < n ? 4 * k + SA_TOPK_BLOCK : n;
    SA_KEY_T keys[SA_TOPK_BLOCK];
    SA_KEY_T threshold = 0;
    ptrdiff_t m = 0;
    for (ptrdiff_t b = 0; b < n; b += SA_TOPK_BLOCK) {
        const ptrdiff_t len = n - b < SA_TOPK_BLOCK ? n - b : SA_TOPK_BLOCK;
        if (m + len > cap) {
            sa_select(best, m, k);
            m = k;
            threshold = (SA_KEY_T)best[0].key;
            for (ptrdiff_t j = 1; j < k; j++)
                threshold = (SA_KEY_T)best[j].key < threshold ? (SA_KEY_T)best[j].key : threshold;
        }
#pragma omp simd
        for (ptrdiff_t i = 0; i < len; i++)
            keys[i] = (SA_KEY_T)SA_RANK(row[b + i], largest);
        for (ptrdiff_t g = 0; g < len; g += 8) {
            const ptrdiff_t w = len - g < 8 ? len - g : 8;
            int reach = 0;
            for (ptrdiff_t j = 0; j < w; j++)
                reach |= keys[g + j] >= threshold;
            if (!reach)
                continue;
            for (ptrdiff_t j = 0; j < w; j++) {
                if (keys[g + j] >= threshold) {
                    const sa_ranked e = {keys[g + j], b + g + j};
                    best[m++] = e;
                }
            }
        }
    }
    return m;
}

/* The k first entries of one row, in result order when sorted, into best. */
SA_INLINE void SA_FN(sa_topk_row)(const SA_T *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                  int sorted, sa_ranked *best)
{
    if (sizeof(SA_T) == 4 && k <= 2 && n < ((ptrdiff_t)1 << 32)) {
        const float *r32 = (const float *)row;
        if (k == 1)
            largest ? sa_topk_lanes_row_f32(r32, n, 1, 1, best)
                    : sa_topk_lanes_row_f32(r32, n, 1, 0, best);
        else
            largest ? sa_topk_lanes_row_f32(r32, n, 2, 1, best)
                    : sa_topk_lanes_row_f32(r32, n, 2, 0, best);
    } else if (sizeof(SA_T) == 4 && k <= SA_TOPK_PASSES_K && n < ((ptrdiff_t)1 << 32)) {
        if (largest)
            sa_topk_passes_row_f32((const float *)row, n, k, 1, best);
        else
            sa_topk_passes_row_f32((const float *)row, n, k, 0, best);
    } else if (k <= SA_TOPK_SMALL_K) {
        /* literal largest: the rank key folds to straight-line code */
        if (largest)
            SA_FN(sa_topk_small_row)(row, n, k, 1, best);
        else
            SA_FN(sa_topk_small_row)(row, n, k, 0, best);
    } else {
        ptrdiff_t m = n;
        if (n >= SA_TOPK_FILTER_RATIO * k) {
            m = largest ? SA_FN(sa_topk_filter_row)(row, n, k, 1, best)
                        : SA_FN(sa_topk_filter_row)(row, n, k, 0, best);
        } else {
            for (ptrdiff_t i = 0; i < n; i++) {
                const sa_ranked e = {SA_RANK(row[i], largest), i};
                best[i] = e;
            }
        }
        if (k < m)
            sa_select(best, m, k);
        if (sorted)
            qsort(best, (size_t)k, sizeof(sa_ranked), sa_ranked_cmp);
    }
}

SA_DISPATCHED(SA_FN(sa_topk_rows),
              (const SA_T *x, ptrdiff_t xs, ptrdiff_t n, ptrdiff_t k, int largest, int sorted,
               SA_T *values, int64_t *indices, ptrdiff_t begin, ptrdiff_t end,
               sa_ranked *scratch),
              (x, xs, n, k, largest, sorted, values, indices, begin, end, scratch))
{
    for (ptrdiff_t r = begin; r < end; r++) {
        const SA_T *row = x + r * xs;
        SA_FN(sa_topk_row)(row, n, k, largest, sorted, scratch);
        for (ptrdiff_t j = 0; j < k; j++) {
            values[r * k + j] = row[scratch[j].index];
            indices[r * k + j] = scratch[j].index;
        }
    }
}

/* Top-k gating of router rows (no NaN: the Python layer refuses them), one
 * pass for the selection and, when needed, one for the softmax over all
 * experts. With s = z / temperature and m the row's maximum:
 *   over_selected = 1: w_j = exp(s_j - s_top) / sum over the k selected
 *                      (top-k then softmax; = softmax then top-k, renormalized);
 *   over_selected = 0: w_j = exp(s_j - m) / sum over all experts (softmax, then top-k).
 * prob_sum (E entries, or NULL) accumulates every expert's softmax probability
 * (the load-balancing loss's mean router probability). */
SA_DISPATCHED(SA_FN(sa_gate_rows),
              (const SA_T *x, ptrdiff_t xs, ptrdiff_t E, ptrdiff_t k, double inv_t,
               int over_selected, SA_T *weights, int64_t *indices, double *prob_sum,
               ptrdiff_t begin, ptrdiff_t end, sa_ranked *scratch),
              (x, xs, E, k, inv_t, over_selected, weights, indices, prob_sum, begin, end,
               scratch))
{
    const SA_T it = (SA_T)inv_t;
    for (ptrdiff_t r = begin; r < end; r++) {
        const SA_T *row = x + r * xs;
        SA_FN(sa_topk_row)(row, E, k, 1, 1, scratch);
        const SA_T top = row[scratch[0].index];
        SA_T total = 0;
        if (!over_selected || prob_sum) {
#pragma omp simd reduction(+ : total)
            for (ptrdiff_t e = 0; e < E; e++)
                total += SA_EXP_SMALL((row[e] - top) * it);
        }
        double norm = 0.0;
        for (ptrdiff_t j = 0; j < k; j++) {
            const double w = (double)SA_EXP_SMALL((row[scratch[j].index] - top) * it);
            weights[r * k + j] = (SA_T)w;
            indices[r * k + j] = scratch[j].index;
            norm += w;
        }
        const double scale = 1.0 / (over_selected ? norm : (double)total);
        for (ptrdiff_t j = 0; j < k; j++)
            weights[r * k + j] = (SA_T)((double)weights[r * k + j] * scale);
        if (prob_sum) {
            const SA_T inv_total = (SA_T)(1.0 / (double)total);
    #pragma omp simd
            for (ptrdiff_t e = 0; e < E; e++)
                prob_sum[e] += (double)(SA_EXP_SMALL((row[e] - top) * it) * inv_total);
        }
    }
}
