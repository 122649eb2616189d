/*
 * Top-k selection along contiguous rows, for float and double.
 *
 * Every entry gets a rank key, an unsigned integer whose order is the order
 * of the result: the float's bits mapped so that unsigned comparison follows
 * the numbers (-0.0 first turned into +0.0, so that the two tie), NaN mapped
 * above +inf, and the key complemented for the smallest-k. Ties keep the
 * lower index first because entries arrive in index order and a later entry
 * only displaces a kept one when its key is strictly larger.
 *
 * k <= 2 in float32 (the mixture-of-experts router's case): one pass with
 * 8 lanes each keeping its best k 64-bit (rank key, index) packs; k <= 4:
 * k vectorized passes, each a maximum over the packs. Other small k:
 * one pass with the k best kept sorted in a tiny array; a new entry costs
 * one comparison unless it enters. Large k: the keys of the row go to
 * scratch, a quickselect puts the k best in front, and (if sorted) they are
 * sorted. The Python layer (softarray/_gating.py) validates everything and
 * lays the data out as rows; nothing here fails.
 */
#ifndef SOFTARRAY_GATING_KERNELS_H
#define SOFTARRAY_GATING_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "_simd.h"

/* Up to this k the one-pass insertion is used; above, quickselect. */
#define SA_TOPK_SMALL_K 32
/* float32 rows up to this k take k vectorized passes (sa_topk_passes_row_f32). */
#define SA_TOPK_PASSES_K 4
/* Rank keys of this many entries are computed at a time (on the stack). */
#define SA_TOPK_BLOCK 256

typedef struct {
    uint64_t key;   /* larger = earlier in the result */
    int64_t index;
} sa_ranked;

SA_INLINE uint64_t sa_rank_f32(float v, int largest)
{
    v = v + 0.0f;                       /* -0.0 -> +0.0 */
    const uint32_t bits = sa_to_bits32(v);
    uint32_t key = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    key = v != v ? 0xFFFFFFFFu : key;   /* every NaN above +inf */
    return largest ? key : (uint32_t)~key;
}

SA_INLINE uint64_t sa_rank_f64(double v, int largest)
{
    v = v + 0.0;
    const uint64_t bits = sa_to_bits64(v);
    uint64_t key = (bits & 0x8000000000000000ull) ? ~bits : (bits | 0x8000000000000000ull);
    key = v != v ? 0xFFFFFFFFFFFFFFFFull : key;
    return largest ? key : ~key;
}

/* a before b in the result */
SA_INLINE int sa_ranked_before(sa_ranked a, sa_ranked b)
{
    return a.key > b.key || (a.key == b.key && a.index < b.index);
}

/* Insert into best[0..count) kept in result order; the entry has the largest
 * index so far, so among equal keys it goes last. Returns the new count. */
SA_INLINE ptrdiff_t sa_topk_insert(sa_ranked *best, ptrdiff_t count, ptrdiff_t k, sa_ranked e)
{
    ptrdiff_t j = count < k ? count : k - 1;
    if (count == k && e.key <= best[k - 1].key)
        return count;
    while (j > 0 && e.key > best[j - 1].key) {
        best[j] = best[j - 1];
        j--;
    }
    best[j] = e;
    return count < k ? count + 1 : count;
}

/* Hoare-style quickselect on a[lo..hi]: afterwards a[0..k) hold the k first
 * of the result order (in any order). Keys are distinct as (key, index). */
static void sa_select(sa_ranked *a, ptrdiff_t n, ptrdiff_t k)
{
    ptrdiff_t lo = 0, hi = n - 1;
    while (hi > lo) {
        const ptrdiff_t mid = lo + (hi - lo) / 2;
        /* median of three as the pivot */
        if (sa_ranked_before(a[mid], a[lo])) { sa_ranked t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
        if (sa_ranked_before(a[hi], a[lo])) { sa_ranked t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
        if (sa_ranked_before(a[hi], a[mid])) { sa_ranked t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
        const sa_ranked pivot = a[mid];
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (sa_ranked_before(a[i], pivot)) i++;
            while (sa_ranked_before(pivot, a[j])) j--;
            if (i <= j) {
                sa_ranked t = a[i]; a[i] = a[j]; a[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            return;
    }
}

static int sa_ranked_cmp(const void *pa, const void *pb)
{
    const sa_ranked a = *(const sa_ranked *)pa, b = *(const sa_ranked *)pb;
    return sa_ranked_before(a, b) ? -1 : (sa_ranked_before(b, a) ? 1 : 0);
}

/* Small k: the row is walked in blocks whose rank keys are computed in one
 * vector loop; groups of 8 keys are then tested against the k-th best key
 * so far (a vector compare), and only a group holding a better key is
 * inserted one by one. After the first few groups almost none does. */
#define SA_TOPK_SMALL_ROW(SUF, T, KEY_T)                                                      \
SA_INLINE void sa_topk_small_row_##SUF(const T *row, ptrdiff_t n, ptrdiff_t k, int largest,   \
                                      sa_ranked *best)                                        \
{                                                                                             \
    KEY_T keys[SA_TOPK_BLOCK];                                                                \
    ptrdiff_t count = 0;                                                                      \
    KEY_T threshold = 0;            /* the k-th best key once count == k */                   \
    for (ptrdiff_t b = 0; b < n; b += SA_TOPK_BLOCK) {                                        \
        const ptrdiff_t len = n - b < SA_TOPK_BLOCK ? n - b : SA_TOPK_BLOCK;                  \
        _Pragma("omp simd")                                                                   \
        for (ptrdiff_t i = 0; i < len; i++)                                                   \
            keys[i] = (KEY_T)sa_rank_##SUF(row[b + i], largest);                              \
        for (ptrdiff_t g = 0; g < len; g += 8) {                                              \
            const ptrdiff_t m = len - g < 8 ? len - g : 8;                                    \
            int better = count < k;                                                           \
            for (ptrdiff_t j = 0; j < m; j++)                                                 \
                better |= keys[g + j] > threshold;                                            \
            if (!better)                                                                      \
                continue;                                                                     \
            for (ptrdiff_t j = 0; j < m; j++) {                                               \
                /* the threshold stays in a register: no load of best[] per entry */          \
                if (count == k && keys[g + j] <= threshold)                                   \
                    continue;                                                                 \
                const sa_ranked e = {keys[g + j], b + g + j};                                 \
                count = sa_topk_insert(best, count, k, e);                                    \
                threshold = count == k ? (KEY_T)best[k - 1].key : 0;                          \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}

/* float32, k <= SA_TOPK_PASSES_K: k vectorized passes over the row (short
 * rows stay in L1). Rank key and index are packed into one 64-bit key,
 * key << 32 | ~index, unique and ordered like the result, so pass j is a
 * plain maximum over the packed keys below the one pass j - 1 found. */
SA_INLINE void sa_topk_passes_row_f32(const float *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                      sa_ranked *best)
{
    uint64_t previous = 0;      /* read from pass 1 on: pass 0 takes every key (NaN at index 0 packs to UINT64_MAX) */
    for (ptrdiff_t j = 0; j < k; j++) {
        const int first = j == 0;
        uint64_t top = 0;       /* below every packed key of a row shorter than 2^32 */
#pragma omp simd reduction(max : top)
        for (ptrdiff_t i = 0; i < n; i++) {
            uint64_t c = ((uint64_t)(uint32_t)sa_rank_f32(row[i], largest) << 32) | (uint32_t)~(uint32_t)i;
            c = (first || c < previous) ? c : 0;
            top = c > top ? c : top;
        }
        previous = top;
        best[j].key = top >> 32;
        best[j].index = (uint32_t)~(uint32_t)top;
    }
}

/* float32, k <= 2 (top-1 and top-2 routers): one pass in which each of 8
 * lanes keeps its own best k packed keys (a max/min network per entry),
 * then the 8 k candidates and the row's tail are merged. k and largest are
 * literals at every call. */
#define SA_TOPK_LANES 8
SA_INLINE void sa_topk_lanes_row_f32(const float *row, ptrdiff_t n, int k, int largest,
                                     sa_ranked *best)
{
    uint64_t lane[2][SA_TOPK_LANES] = {{0}};
    ptrdiff_t i = 0;
    for (; i + SA_TOPK_LANES <= n; i += SA_TOPK_LANES) {
#pragma omp simd
        for (int l = 0; l < SA_TOPK_LANES; l++) {
            uint64_t c = ((uint64_t)(uint32_t)sa_rank_f32(row[i + l], largest) << 32)
                         | (uint32_t)~(uint32_t)(i + l);
            for (int j = 0; j < k; j++) {
                const uint64_t kept = lane[j][l];
                lane[j][l] = c > kept ? c : kept;
                c = c > kept ? kept : c;
            }
        }
    }
    uint64_t cand[2 * SA_TOPK_LANES + SA_TOPK_LANES];
    int m = 0;
    for (int j = 0; j < k; j++)
        for (int l = 0; l < SA_TOPK_LANES; l++)
            cand[m++] = lane[j][l];
    for (; i < n; i++)
        cand[m++] = ((uint64_t)(uint32_t)sa_rank_f32(row[i], largest) << 32) | (uint32_t)~(uint32_t)i;
    for (int j = 0; j < k; j++) {           /* selection of the k largest candidates */
        int a = j;
        for (int q = j + 1; q < m; q++)
            a = cand[q] > cand[a] ? q : a;
        const uint64_t top = cand[a];
        cand[a] = cand[j];
        cand[j] = top;
        best[j].key = top >> 32;
        best[j].index = (uint32_t)~(uint32_t)top;
    }
}

/* The k first entries of one row, in result order when sorted, into best. */
#define SA_TOPK_ROW(SUF, T)                                                                   \
SA_INLINE void sa_topk_row_##SUF(const T *row, ptrdiff_t n, ptrdiff_t k, int largest,         \
                                 int sorted, sa_ranked *best)                                 \
{                                                                                             \
    if (sizeof(T) == 4 && k <= 2 && n < ((ptrdiff_t)1 << 32)) {                               \
        const float *r32 = (const float *)row;                                                \
        if (k == 1)                                                                           \
            largest ? sa_topk_lanes_row_f32(r32, n, 1, 1, best)                               \
                    : sa_topk_lanes_row_f32(r32, n, 1, 0, best);                              \
        else                                                                                  \
            largest ? sa_topk_lanes_row_f32(r32, n, 2, 1, best)                               \
                    : sa_topk_lanes_row_f32(r32, n, 2, 0, best);                              \
    } else if (sizeof(T) == 4 && k <= SA_TOPK_PASSES_K && n < ((ptrdiff_t)1 << 32)) {         \
        if (largest)                                                                          \
            sa_topk_passes_row_f32((const float *)row, n, k, 1, best);                        \
        else                                                                                  \
            sa_topk_passes_row_f32((const float *)row, n, k, 0, best);                        \
    } else if (k <= SA_TOPK_SMALL_K) {                                                        \
        /* literal largest: the rank key folds to straight-line code */                       \
        if (largest)                                                                          \
            sa_topk_small_row_##SUF(row, n, k, 1, best);                                      \
        else                                                                                  \
            sa_topk_small_row_##SUF(row, n, k, 0, best);                                      \
    } else {                                                                                  \
        for (ptrdiff_t i = 0; i < n; i++) {                                                   \
            const sa_ranked e = {sa_rank_##SUF(row[i], largest), i};                          \
            best[i] = e;                                                                      \
        }                                                                                     \
        if (k < n)                                                                            \
            sa_select(best, n, k);                                                            \
        if (sorted)                                                                           \
            qsort(best, (size_t)k, sizeof(sa_ranked), sa_ranked_cmp);                         \
    }                                                                                         \
}

#define SA_TOPK_ROWS(SUF, T)                                                                  \
SA_DISPATCHED(sa_topk_rows_##SUF,                                                            \
              (const T *x, ptrdiff_t xs, ptrdiff_t n, ptrdiff_t k, int largest, int sorted,  \
               T *values, int64_t *indices, ptrdiff_t begin, ptrdiff_t end,                  \
               sa_ranked *scratch),                                                          \
              (x, xs, n, k, largest, sorted, values, indices, begin, end, scratch))          \
{                                                                                             \
    for (ptrdiff_t r = begin; r < end; r++) {                                                 \
        const T *row = x + r * xs;                                                            \
        sa_topk_row_##SUF(row, n, k, largest, sorted, scratch);                               \
        for (ptrdiff_t j = 0; j < k; j++) {                                                   \
            values[r * k + j] = row[scratch[j].index];                                        \
            indices[r * k + j] = scratch[j].index;                                            \
        }                                                                                     \
    }                                                                                         \
}

/* Top-k gating of router rows (no NaN: the Python layer refuses them), one
 * pass for the selection and, when needed, one for the softmax over all
 * experts. With s = z / temperature and m the row's maximum:
 *   over_selected = 1: w_j = exp(s_j - s_top) / sum over the k selected
 *                      (top-k then softmax; = softmax then top-k, renormalized);
 *   over_selected = 0: w_j = exp(s_j - m) / sum over all experts (softmax, then top-k).
 * prob_sum (E entries, or NULL) accumulates every expert's softmax probability
 * (the load-balancing loss's mean router probability). */
#define SA_GATE_ROWS(SUF, T, EXP)                                                             \
SA_DISPATCHED(sa_gate_rows_##SUF,                                                            \
              (const T *x, ptrdiff_t xs, ptrdiff_t E, ptrdiff_t k, double inv_t,             \
               int over_selected, T *weights, int64_t *indices, double *prob_sum,            \
               ptrdiff_t begin, ptrdiff_t end, sa_ranked *scratch),                          \
              (x, xs, E, k, inv_t, over_selected, weights, indices, prob_sum, begin, end,    \
               scratch))                                                                     \
{                                                                                             \
    const T it = (T)inv_t;                                                                    \
    for (ptrdiff_t r = begin; r < end; r++) {                                                 \
        const T *row = x + r * xs;                                                            \
        sa_topk_row_##SUF(row, E, k, 1, 1, scratch);                                          \
        const T top = row[scratch[0].index];                                                  \
        T total = 0;                                                                          \
        if (!over_selected || prob_sum) {                                                     \
            _Pragma("omp simd reduction(+ : total)")                                          \
            for (ptrdiff_t e = 0; e < E; e++)                                                 \
                total += EXP((row[e] - top) * it);                                            \
        }                                                                                     \
        double norm = 0.0;                                                                    \
        for (ptrdiff_t j = 0; j < k; j++) {                                                   \
            const double w = (double)EXP((row[scratch[j].index] - top) * it);                 \
            weights[r * k + j] = (T)w;                                                        \
            indices[r * k + j] = scratch[j].index;                                            \
            norm += w;                                                                        \
        }                                                                                     \
        const double scale = 1.0 / (over_selected ? norm : (double)total);                    \
        for (ptrdiff_t j = 0; j < k; j++)                                                     \
            weights[r * k + j] = (T)((double)weights[r * k + j] * scale);                     \
        if (prob_sum) {                                                                       \
            const T inv_total = (T)(1.0 / (double)total);                                     \
            _Pragma("omp simd")                                                               \
            for (ptrdiff_t e = 0; e < E; e++)                                                 \
                prob_sum[e] += (double)(EXP((row[e] - top) * it) * inv_total);                \
        }                                                                                     \
    }                                                                                         \
}

SA_TOPK_SMALL_ROW(f32, float, uint32_t)
SA_TOPK_SMALL_ROW(f64, double, uint64_t)
SA_TOPK_ROW(f32, float)
SA_TOPK_ROW(f64, double)
SA_TOPK_ROWS(f32, float)
SA_TOPK_ROWS(f64, double)
SA_GATE_ROWS(f32, float, sa_exp_small_f32)
SA_GATE_ROWS(f64, double, sa_exp_small_f64)

#endif /* SOFTARRAY_GATING_KERNELS_H */
