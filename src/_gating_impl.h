/*
 * Type-generic body of the top-k and gating kernels; included once per type
 * by _gating_kernels.h with SA_T (float or double), SA_SUF (f32 or f64),
 * SA_KEY_T (the rank key's unsigned type), SA_SKEY_T (the signed type of its width), SA_RANK (sa_rank_f32 or
 * sa_rank_f64) and SA_EXP_SMALL defined. Names get the suffix:
 * sa_topk_rows_f32, sa_topk_rows_f64, ...
 */
#if !defined(SA_T) || !defined(SA_SUF)
#error "_gating_impl.h is a template: _gating_kernels.h includes it once per type"
#endif

/* The rank keys of row[0..len) into keys; returns the largest. One vector
 * loop: on long rows a block whose largest key cannot enter the result
 * costs only this. */
SA_INLINE SA_KEY_T SA_FN(sa_topk_block_keys)(const SA_T *row, ptrdiff_t len, int largest,
                                             SA_KEY_T *keys)
{
    SA_KEY_T top = 0;
#pragma omp simd reduction(max : top)
    for (ptrdiff_t i = 0; i < len; i++) {
        const SA_KEY_T key = (SA_KEY_T)SA_RANK(row[i], largest);
        keys[i] = key;
        top = key > top ? key : top;
    }
    for (ptrdiff_t i = len; i % 8; i++)
        keys[i] = 0;            /* a whole last group for sa_topk_group_reaches */
    return top;
}

/* Whether one of the 8 keys from keys reaches bar: a fixed-length loop, one
 * vector compare. Past a block's end the keys are 0 (sa_topk_block_keys),
 * which reach only a bar of 0, so callers bound their own loops by the
 * block's length. */
SA_INLINE int SA_FN(sa_topk_group_reaches)(const SA_KEY_T *keys, SA_KEY_T bar)
{
    int reach = 0;
    for (int j = 0; j < 8; j++)
        reach |= keys[j] >= bar;
    return reach;
}

/* Small k: the row is walked in blocks whose rank keys are computed in one
 * vector loop; a block with no key above the k-th best so far is skipped,
 * then groups of 8 keys are tested likewise, and only a group holding a
 * better key is inserted one by one. After the first few blocks almost none
 * does. */
SA_INLINE void SA_FN(sa_topk_small_row)(const SA_T *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                        sa_ranked *best)
{
    SA_KEY_T keys[SA_TOPK_BLOCK];
    ptrdiff_t count = 0;
    SA_KEY_T threshold = 0;            /* the k-th best key once count == k */
    for (ptrdiff_t b = 0; b < n; b += SA_TOPK_BLOCK) {
        const ptrdiff_t len = n - b < SA_TOPK_BLOCK ? n - b : SA_TOPK_BLOCK;
        const SA_KEY_T top = SA_FN(sa_topk_block_keys)(row + b, len, largest, keys);
        if (count == k && top <= threshold)
            continue;
        for (ptrdiff_t g = 0; g < len; g += 8) {
            const ptrdiff_t m = len - g < 8 ? len - g : 8;
            if (count == k && !SA_FN(sa_topk_group_reaches)(keys + g, threshold + 1))
                continue;   /* a threshold of the largest key wraps to 0: every group looked at, still right */
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

/* place[i]: how many of keys[0..n) come before key i in the result order
 * (a larger key, or an equal key at a lower index). The loop over i is the
 * vector loop: entry j's key is broadcast against all the others, with
 * place[] as the accumulators (the key's width: one lane per compare). */
SA_INLINE void SA_FN(sa_topk_places)(const SA_KEY_T *keys, ptrdiff_t n, SA_KEY_T *place)
{
    /* The keys with the top bit flipped compare as signed integers, which
     * AVX2 compares in one instruction (unsigned needs three). Indices are
     * in the key's type too, so that every lane is as wide as a key. The
     * places of a block of SA_TOPK_PLACE_BLOCK entries stay in registers
     * while every key goes by: a key before the block counts unless entry
     * i's is larger, one after it if larger, one inside by the full rule. */
    enum { B = SA_TOPK_PLACE_BLOCK };
    SA_SKEY_T sk[SA_TOPK_COUNT_N + B];
    const SA_KEY_T top = (SA_KEY_T)1 << (8 * sizeof(SA_KEY_T) - 1);
    for (ptrdiff_t i = 0; i < n; i++)
        sk[i] = (SA_SKEY_T)(keys[i] ^ top);
    for (ptrdiff_t i = n; i < n + B; i++)
        sk[i] = 0;              /* padding: its places are never read */
    for (ptrdiff_t ib = 0; ib < n; ib += B) {
        SA_SKEY_T ki[B], at[B], acc[B];
        for (int ii = 0; ii < B; ii++) {
            ki[ii] = sk[ib + ii];
            at[ii] = (SA_SKEY_T)(ib + ii);
            acc[ii] = (SA_SKEY_T)ib;
        }
        for (ptrdiff_t j = 0; j < ib; j++) {
            const SA_SKEY_T kj = sk[j];
#pragma omp simd
            for (int ii = 0; ii < B; ii++)
                acc[ii] -= ki[ii] > kj;
        }
        const ptrdiff_t block_end = ib + B < n ? ib + B : n;
        for (ptrdiff_t j = ib; j < block_end; j++) {
            const SA_SKEY_T kj = sk[j], jj = (SA_SKEY_T)j;
#pragma omp simd
            for (int ii = 0; ii < B; ii++)
                acc[ii] += (kj > ki[ii]) | ((kj == ki[ii]) & (jj < at[ii]));
        }
        for (ptrdiff_t j = block_end; j < n; j++) {
            const SA_SKEY_T kj = sk[j];
#pragma omp simd
            for (int ii = 0; ii < B; ii++)
                acc[ii] += kj > ki[ii];
        }
        for (ptrdiff_t ii = 0; ii < B && ib + ii < n; ii++)
            place[ib + ii] = (SA_KEY_T)acc[ii];
    }
}

/* Rows up to SA_TOPK_COUNT_BYTES long: the place of entry i in the result is
 * the number of entries before it, those with a larger key and those at a
 * lower index with an equal key; entries placed below k are written there.
 * Places are distinct, so best[0..k) comes out sorted, with no branch on the
 * data. */
SA_INLINE void SA_FN(sa_topk_count_row)(const SA_T *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                        sa_ranked *best)
{
    SA_KEY_T keys[SA_TOPK_COUNT_N], place[SA_TOPK_COUNT_N];
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++)
        keys[i] = (SA_KEY_T)SA_RANK(row[i], largest);
    SA_FN(sa_topk_places)(keys, n, place);
    for (ptrdiff_t i = 0; i < n; i++) {
        /* no branch: entries placed at k or later go to the spare best[k] */
        const ptrdiff_t slot = (ptrdiff_t)place[i] < k ? (ptrdiff_t)place[i] : k;
        best[slot].key = keys[i];
        best[slot].index = i;
    }
}

/* Equal-width buckets over the keys [lo, hi] (lo < hi), bucket 0 holding
 * the largest: a key's bucket is monotone in the key, computed in double
 * precision from its offset above lo, shifted below 2^31 so that the
 * conversion vectorizes on AVX2 (2^31 steps resolve 1024 buckets amply).
 * On unordered floating-point data the keys of a few exponents spread over
 * the buckets, where buckets of the key's bytes (a radix) would put most in
 * one or two. */
typedef struct {
    SA_KEY_T lo;
    int shift;
    double scale;
    int32_t last;       /* the number of buckets less one */
} SA_FN(sa_topk_buckets);

SA_INLINE SA_FN(sa_topk_buckets) SA_FN(sa_topk_buckets_over)(SA_KEY_T lo, SA_KEY_T hi, ptrdiff_t count)
{
    const int top = 63 - __builtin_clzll((unsigned long long)(hi - lo));
    SA_FN(sa_topk_buckets) b;
    b.lo = lo;
    b.shift = top > 30 ? top - 30 : 0;
    b.scale = (double)count / ((double)(int32_t)((hi - lo) >> b.shift) + 1.0);
    b.last = (int32_t)(count - 1);
    return b;
}

/* The buckets of a[0..m)'s keys into ids, as one vector loop (m at most
 * SA_TOPK_ID_BLOCK): computed once a block for the count and once for the
 * scatter, where one scalar conversion a key took 40% of the sort
 * (float32, 4096 entries, k = 1000). */
SA_INLINE void SA_FN(sa_topk_bucket_ids)(const SA_FN(sa_topk_buckets) *b, const sa_ranked *a,
                                         ptrdiff_t m, uint16_t *ids)
{
    const SA_KEY_T lo = b->lo;
    const int shift = b->shift;
    const double scale = b->scale;
    const int32_t last = b->last;
#pragma omp simd
    for (ptrdiff_t i = 0; i < m; i++) {
        const int32_t offset = (int32_t)(((SA_KEY_T)a[i].key - lo) >> shift);
        const int32_t from_lo = (int32_t)((double)offset * scale);
        ids[i] = (uint16_t)(last - (from_lo < last ? from_lo : last));
    }
}

/* The least and largest keys of a[0..m), m >= 1. */
SA_INLINE void SA_FN(sa_topk_key_range)(const sa_ranked *a, ptrdiff_t m, SA_KEY_T *lo, SA_KEY_T *hi)
{
    SA_KEY_T l = (SA_KEY_T)a[0].key, h = l;
    for (ptrdiff_t i = 1; i < m; i++) {
        const SA_KEY_T key = (SA_KEY_T)a[i].key;
        l = key < l ? key : l;
        h = key > h ? key : h;
    }
    *lo = l;
    *hi = h;
}

/* The k-th key of the result among a[0..m), equal keys in index order: every
 * entry with a larger key belongs to the k first, and so do the first *ties
 * with this key. An MSD radix select, one byte of the key per level; from
 * the second level on, only the entries of the boundary byte are looked at
 * (copied to tmp, m entries at most). */
SA_INLINE SA_KEY_T SA_FN(sa_topk_threshold)(const sa_ranked *a, ptrdiff_t m, ptrdiff_t k,
                                            sa_ranked *tmp, ptrdiff_t *ties)
{
    uint32_t counts[256];
    SA_KEY_T prefix = 0;
    ptrdiff_t need = k;
    const sa_ranked *cand = a;
    ptrdiff_t count = m;
    for (int shift = 8 * (int)sizeof(SA_KEY_T) - 8;; shift -= 8) {
        memset(counts, 0, sizeof counts);
        for (ptrdiff_t i = 0; i < count; i++)
            counts[((SA_KEY_T)cand[i].key >> shift) & 255]++;
        int b = 255;
        while ((ptrdiff_t)counts[b] < need) {
            need -= counts[b];
            b--;
        }
        prefix |= (SA_KEY_T)b << shift;
        if ((ptrdiff_t)counts[b] == need) {     /* the whole byte belongs: every key >= prefix */
            *ties = m;
            return prefix;
        }
        if (shift == 0) {
            *ties = need;
            return prefix;
        }
        ptrdiff_t c = 0;
        for (ptrdiff_t i = 0; i < count; i++) {
            tmp[c] = cand[i];
            c += (ptrdiff_t)(((SA_KEY_T)cand[i].key >> shift) & 255) == b;
        }
        cand = tmp;
        count = c;
    }
}

/* Keeps, in place, the entries of a[0..m) above the threshold and then the
 * first ties equal to it. Among equal keys the order
 * stays index order, which is all the stable sort after it and the filter
 * before it need. Two branch-free streams (above into a, equal into tmp):
 * no chain through the count of ties. tmp holds m entries. */
SA_INLINE void SA_FN(sa_topk_take)(sa_ranked *a, ptrdiff_t m, SA_KEY_T threshold, ptrdiff_t ties,
                                   sa_ranked *tmp)
{
    ptrdiff_t above = 0, equal = 0;
    for (ptrdiff_t i = 0; i < m; i++) {
        const sa_ranked e = a[i];
        const SA_KEY_T key = (SA_KEY_T)e.key;
        a[above] = e;
        above += key > threshold;
        tmp[equal] = e;
        equal += key == threshold;
    }
    const ptrdiff_t kept_ties = equal < ties ? equal : ties;
    memcpy(a + above, tmp, (size_t)kept_ties * sizeof(sa_ranked));
}

/* a[0..m) holds its k first (k <= m) after this, equal keys in index order;
 * returns the k-th key, the least of them. */
SA_INLINE SA_KEY_T SA_FN(sa_topk_keep)(sa_ranked *a, ptrdiff_t m, ptrdiff_t k, sa_ranked *tmp)
{
    ptrdiff_t ties;
    const SA_KEY_T threshold = SA_FN(sa_topk_threshold)(a, m, k, tmp, &ties);
    SA_FN(sa_topk_take)(a, m, threshold, ties, tmp);
    return threshold;
}

/* Puts the k first of a[0..m) (k <= m) in result order at a[0..k), as a
 * stable sort by key, largest first, would: D = min(m,
 * SA_TOPK_SORT_BUCKETS) equal-width buckets of the keys' range
 * (sa_topk_buckets), the entries scattered to them in index order, then
 * the buckets that reach into the first k sorted: one of more than
 * SA_TOPK_INSERTION_N entries the same way on its own range, then the
 * smaller ones, whose entries are now fewer than SA_TOPK_INSERTION_N
 * places from their own, by one insertion pass over them all, which no
 * entry leaves its bucket in (an earlier bucket's keys are all larger).
 * float32 on AVX-512 with indices below 2^32 (packable) takes the same
 * sort on packs instead (sa_avx512_sort_first_packed). Past the first k,
 * the entries of a bucket sorted the same way are not all in order (that
 * call sorts only the part reaching its k).
 * Buckets past the first k are left as they are: the selection of the k
 * first is the sort's first level. Each level narrows the range more than
 * SA_TOPK_INSERTION_N times, so the depth stays below 16. The first level
 * is inlined into its callers, so that it runs as their x86-64-v3 copy
 * does; the deeper ones, rare, go through sa_topk_sort_deeper (a static
 * function, built for the baseline). tmp holds m entries. */
static void SA_FN(sa_topk_sort_deeper)(sa_ranked *a, ptrdiff_t m, ptrdiff_t k, sa_ranked *tmp);

/* The bucket sort's buckets of more than SA_TOPK_INSERTION_N entries among
 * a[0..reach) (bucket d ends at ends[d]) sorted in place up to k, with
 * scratch beside them; returns where the entries in bucket order end: past
 * k, a bucket sorted this way holds stale entries. */
SA_INLINE ptrdiff_t SA_FN(sa_topk_sort_large_buckets)(sa_ranked *a, const uint32_t *ends, ptrdiff_t k,
                                                      ptrdiff_t reach, sa_ranked *scratch)
{
    ptrdiff_t sort_to = reach;
    for (ptrdiff_t d = 0, start = 0; start < k; d++) {
        const ptrdiff_t end = ends[d];
        const int recurse = end - start > SA_TOPK_INSERTION_N;
        if (recurse)
            SA_FN(sa_topk_sort_deeper)(a + start, end - start, (end < k ? end : k) - start,
                                       scratch + start);
        sort_to = recurse ? k : reach;      /* the last bucket decides */
        start = end;
    }
    return sort_to;
}

SA_INLINE void SA_FN(sa_topk_sort_first)(sa_ranked *a, ptrdiff_t m, ptrdiff_t k, sa_ranked *tmp,
                                         int packable)
{
#if SA_X86_DISPATCH
    if (sizeof(SA_T) == 4 && packable && sa_simd_v4) {
        sa_avx512_sort_first_packed(a, m, k, tmp);
        return;
    }
#endif
    SA_KEY_T lo, hi;
    SA_FN(sa_topk_key_range)(a, m, &lo, &hi);
    if (lo == hi)
        return;                 /* one key: index order is the result's */
    const ptrdiff_t D = m < SA_TOPK_SORT_BUCKETS ? m : SA_TOPK_SORT_BUCKETS;
    const SA_FN(sa_topk_buckets) span = SA_FN(sa_topk_buckets_over)(lo, hi, D);
    uint32_t bucket[SA_TOPK_SORT_BUCKETS];
    memset(bucket, 0, (size_t)D * sizeof bucket[0]);
    uint16_t ids[SA_TOPK_ID_BLOCK];
    for (ptrdiff_t s = 0; s < m; s += SA_TOPK_ID_BLOCK) {
        const ptrdiff_t len = m - s < SA_TOPK_ID_BLOCK ? m - s : SA_TOPK_ID_BLOCK;
        SA_FN(sa_topk_bucket_ids)(&span, a + s, len, ids);
        for (ptrdiff_t i = 0; i < len; i++)
            bucket[ids[i]]++;
    }
    uint32_t sum = 0;
    for (ptrdiff_t d = 0; d < D; d++) {         /* starts */
        const uint32_t c = bucket[d];
        bucket[d] = sum;
        sum += c;
    }
    for (ptrdiff_t s = 0; s < m; s += SA_TOPK_ID_BLOCK) {
        const ptrdiff_t len = m - s < SA_TOPK_ID_BLOCK ? m - s : SA_TOPK_ID_BLOCK;
        SA_FN(sa_topk_bucket_ids)(&span, a + s, len, ids);
        for (ptrdiff_t i = 0; i < len; i++)
            tmp[bucket[ids[i]]++] = a[s + i];
    }
    ptrdiff_t reach = 0;        /* bucket[d] is now bucket d's end */
    for (ptrdiff_t d = 0; reach < k; d++)
        reach = bucket[d];
    memcpy(a, tmp, (size_t)reach * sizeof(sa_ranked));
    sa_topk_insertion_sort(a, SA_FN(sa_topk_sort_large_buckets)(a, bucket, k, reach, tmp));
}

static void SA_FN(sa_topk_sort_deeper)(sa_ranked *a, ptrdiff_t m, ptrdiff_t k, sa_ranked *tmp)
{
    SA_FN(sa_topk_sort_first)(a, m, k, tmp, 0);
}

/* Stable LSD radix sort of a[0..m) by key, largest first, one byte at a
 * time, skipping the bytes every key shares: four passes at most over
 * float32 keys, where it is faster than the bucket sort on rows whose
 * keys span both signs (a few exponents hold most keys, and buckets of equal
 * width recurse). tmp holds m entries. */
SA_INLINE void SA_FN(sa_topk_radix_sort)(sa_ranked *a, ptrdiff_t m, sa_ranked *tmp)
{
    enum { BYTES = sizeof(SA_KEY_T) };
    uint32_t counts[BYTES][256];
    memset(counts, 0, sizeof counts);
    for (ptrdiff_t i = 0; i < m; i++) {
        const SA_KEY_T key = (SA_KEY_T)a[i].key;
        for (int d = 0; d < BYTES; d++)
            counts[d][(key >> (8 * d)) & 255]++;
    }
    sa_ranked *src = a, *dst = tmp;
    for (int d = 0; d < BYTES; d++) {
        if ((ptrdiff_t)counts[d][((SA_KEY_T)a[0].key >> (8 * d)) & 255] == m)
            continue;
        uint32_t start[256], sum = 0;
        for (int b = 255; b >= 0; b--) {
            start[b] = sum;
            sum += counts[d][b];
        }
        for (ptrdiff_t i = 0; i < m; i++)
            dst[start[((SA_KEY_T)src[i].key >> (8 * d)) & 255]++] = src[i];
        sa_ranked *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, (size_t)m * sizeof(sa_ranked));
}

/* Stable sort of a[0..m) (equal keys in index order) by key, largest first:
 * places by counting for a few entries, else the LSD radix sort (float32
 * keys) or the bucket sort (float64 keys, eight bytes for the radix). No
 * comparison sort, so the tie rule needs no comparator. tmp holds m
 * entries. */
SA_INLINE void SA_FN(sa_topk_sort)(sa_ranked *a, ptrdiff_t m, sa_ranked *tmp)
{
    if (m <= SA_TOPK_COUNT_SORT_K) {
        SA_KEY_T keys[SA_TOPK_COUNT_SORT_K], place[SA_TOPK_COUNT_SORT_K];
        for (ptrdiff_t i = 0; i < m; i++)
            keys[i] = (SA_KEY_T)a[i].key;
        SA_FN(sa_topk_places)(keys, m, place);
        for (ptrdiff_t i = 0; i < m; i++)
            tmp[place[i]] = a[i];
        memcpy(a, tmp, (size_t)m * sizeof(sa_ranked));
        return;
    }
    if (sizeof(SA_KEY_T) == 4)
        SA_FN(sa_topk_radix_sort)(a, m, tmp);
    else
        SA_FN(sa_topk_sort_first)(a, m, m, tmp, 0);
}

/* Large k on a long row (n >= SA_TOPK_FILTER_RATIO k): a running threshold
 * filter. Entries are appended to best, in index order, while their key
 * reaches the threshold; when the next block could overflow 4 k +
 * SA_TOPK_BLOCK entries, the k best so far are kept (sa_topk_keep) and the
 * threshold rises to the k-th best key so far, which no entry of the result
 * can be below. Rank keys are computed one block at a time in a vector loop
 * and blocks, then groups of 8, with no key reaching the threshold are
 * skipped, so on unordered data the row is streamed once and few
 * entries are copied; on sorted rows every entry is copied. The row is read
 * in order (no sample at strided positions: those reads wait on memory once
 * the row is out of L2). best and tmp hold n entries each. Returns the
 * number kept, at least k, equal keys in index order. */
SA_INLINE ptrdiff_t SA_FN(sa_topk_filter_row)(const SA_T *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                              sa_ranked *best, sa_ranked *tmp)
{
    const ptrdiff_t cap = 4 * k + SA_TOPK_BLOCK < n ? 4 * k + SA_TOPK_BLOCK : n;
    SA_KEY_T keys[SA_TOPK_BLOCK];
    SA_KEY_T threshold = 0;
    ptrdiff_t m = 0;
    for (ptrdiff_t b = 0; b < n; b += SA_TOPK_BLOCK) {
        const ptrdiff_t len = n - b < SA_TOPK_BLOCK ? n - b : SA_TOPK_BLOCK;
        if (m + len > cap) {
            threshold = SA_FN(sa_topk_keep)(best, m, k, tmp);
            m = k;
        }
        if (SA_FN(sa_topk_block_keys)(row + b, len, largest, keys) < threshold)
            continue;
        for (ptrdiff_t g = 0; g < len; g += 8) {
            const ptrdiff_t w = len - g < 8 ? len - g : 8;
            if (!SA_FN(sa_topk_group_reaches)(keys + g, threshold))
                continue;
            for (ptrdiff_t j = 0; j < w; j++) {
                const sa_ranked e = {keys[g + j], b + g + j};
                best[m] = e;
                m += keys[g + j] >= threshold;
            }
        }
    }
    return m;
}

/* The earlier of two numbers in the result's order (no NaN): the larger for
 * the largest-k, the smaller for the smallest; b on a tie. */
SA_INLINE SA_T SA_FN(sa_topk_better_number)(SA_T v, SA_T b, int largest)
{
    return largest ? (v > b ? v : b) : (v < b ? v : b);
}

/* The lane maxima of row[0..n) as rank keys: entry i is dealt to lane
 * i mod G (G <= SA_TOPK_COUNT_N) and each lane keeps its largest key. One
 * vector loop on the numbers (a maximum, or a minimum for the smallest-k,
 * per entry); returns 0 with lane unset if the row holds a NaN, whose order
 * numbers do not follow. */
SA_INLINE int SA_FN(sa_topk_lane_numbers)(const SA_T *row, ptrdiff_t n, int largest, ptrdiff_t G,
                                          SA_KEY_T *lane)
{
    SA_T best[SA_TOPK_COUNT_N];
    const SA_T none = largest ? -(SA_T)INFINITY : (SA_T)INFINITY;
    for (ptrdiff_t l = 0; l < G; l++)
        best[l] = none;
    int nan = 0;
    ptrdiff_t i = 0;
    for (; i + G <= n; i += G) {
#pragma omp simd reduction(| : nan)
        for (ptrdiff_t l = 0; l < G; l++) {
            const SA_T v = row[i + l];
            nan |= v != v;
            best[l] = SA_FN(sa_topk_better_number)(v, best[l], largest);
        }
    }
    for (ptrdiff_t l = 0; l < G && i + l < n; l++) {     /* l < G: for GCC's -Wmaybe-uninitialized */
        const SA_T v = row[i + l];
        nan |= v != v;
        best[l] = SA_FN(sa_topk_better_number)(v, best[l], largest);
    }
    if (nan)
        return 0;
    /* a lane with no entry keeps the infinity, whose key no entry is
     * below: counted among the k, it bounds nothing away */
    for (ptrdiff_t l = 0; l < G; l++)
        lane[l] = (SA_KEY_T)SA_RANK(best[l], largest);
    return 1;
}

/* The first index of row[0..n) whose entry equals top, which one does
 * (-0.0 equals +0.0, as their keys tie): a block with none costs a vector
 * compare and OR per vector. */
SA_INLINE ptrdiff_t SA_FN(sa_topk_first_equal)(const SA_T *row, ptrdiff_t n, SA_T top)
{
    enum { block = 128 / sizeof(SA_T) };
    ptrdiff_t i = 0;
    for (; i + block <= n; i += block) {
        SA_KEY_T hit = 0;   /* as wide as the number: no narrowing per compare */
#pragma omp simd reduction(| : hit)
        for (ptrdiff_t l = 0; l < block; l++)
            hit |= -(SA_KEY_T)(row[i + l] == top);
        if (hit)
            break;
    }
    while (row[i] != top)
        i++;
    return i;
}

/* The largest of sign * row[0..n) (the smallest as the largest negated:
 * sign = -1); -inf on an empty row. *nan is set if an entry is a NaN, which
 * the maximum ignores. Blocks of four 64-byte runs in row order, each run
 * with maxima of its own, so that several vector maxima are in flight while
 * the row is read as one stream: four streams a quarter of a row apart
 * (before 2026-12-07) left short rows read from memory at a third of the
 * bandwidth on AMD Zen 4, whose prefetcher had no time to learn each
 * (float64 rows of 1000, 0.93 us a row). The maxima live in small arrays
 * indexed by lane, not in reduction clauses, so that no block ends in a
 * horizontal reduction. */
SA_INLINE SA_T SA_FN(sa_topk_signed_max_blocks)(const SA_T *row, ptrdiff_t n, SA_T sign, int *nan)
{
    enum { run = 64 / sizeof(SA_T), block = 4 * run };
    SA_T t0[run], t1[run], t2[run], t3[run];
    SA_KEY_T seen[run];   /* as wide as the number: no narrowing per compare */
    for (int l = 0; l < run; l++) {
        t0[l] = t1[l] = t2[l] = t3[l] = -(SA_T)INFINITY;
        seen[l] = 0;
    }
    ptrdiff_t i = 0;
    for (; i + block <= n; i += block) {
        const SA_T *p = row + i;
#pragma omp simd
        for (int l = 0; l < run; l++) {
            const SA_T a = sign * p[l], b = sign * p[run + l], c = sign * p[2 * run + l], d = sign * p[3 * run + l];
            seen[l] |= -(SA_KEY_T)(a != a) | -(SA_KEY_T)(b != b) | -(SA_KEY_T)(c != c) | -(SA_KEY_T)(d != d);
            t0[l] = a > t0[l] ? a : t0[l];
            t1[l] = b > t1[l] ? b : t1[l];
            t2[l] = c > t2[l] ? c : t2[l];
            t3[l] = d > t3[l] ? d : t3[l];
        }
    }
    for (; i + run <= n; i += run) {     /* the last whole runs */
#pragma omp simd
        for (int l = 0; l < run; l++) {
            const SA_T a = sign * row[i + l];
            seen[l] |= -(SA_KEY_T)(a != a);
            t0[l] = a > t0[l] ? a : t0[l];
        }
    }
    SA_T top = -(SA_T)INFINITY;
    SA_KEY_T any = 0;
SA_SIMD_MINMAX(reduction(max : top) reduction(| : any))
    for (int l = 0; l < run; l++) {
        const SA_T a = t0[l] > t1[l] ? t0[l] : t1[l], b = t2[l] > t3[l] ? t2[l] : t3[l];
        any |= seen[l];
        top = a > top ? a : top;
        top = b > top ? b : top;
    }
    for (; i < n; i++) {
        const SA_T a = sign * row[i];
        any |= -(SA_KEY_T)(a != a);
        top = a > top ? a : top;
    }
    *nan = any != 0;
    return top;
}

/* Four quarters of the row at a time, for rows long enough that each
 * quarter's stream is learned by the prefetcher early on. */
SA_INLINE SA_T SA_FN(sa_topk_signed_max_quarters)(const SA_T *row, ptrdiff_t n, SA_T sign, int *nan)
{
    const ptrdiff_t q = n / 4;
    const SA_T *r1 = row + q, *r2 = row + 2 * q, *r3 = row + 3 * q;
    SA_T t0 = -(SA_T)INFINITY, t1 = t0, t2 = t0, t3 = t0;
    SA_KEY_T seen = 0;  /* as wide as the number: no narrowing per compare */
SA_SIMD_MINMAX(reduction(max : t0, t1, t2, t3) reduction(| : seen))
    for (ptrdiff_t i = 0; i < q; i++) {
        const SA_T a = sign * row[i], b = sign * r1[i], c = sign * r2[i], d = sign * r3[i];
        seen |= -(SA_KEY_T)(a != a) | -(SA_KEY_T)(b != b) | -(SA_KEY_T)(c != c) | -(SA_KEY_T)(d != d);
        t0 = a > t0 ? a : t0;
        t1 = b > t1 ? b : t1;
        t2 = c > t2 ? c : t2;
        t3 = d > t3 ? d : t3;
    }
    for (ptrdiff_t i = 4 * q; i < n; i++) {
        const SA_T a = sign * row[i];
        seen |= -(SA_KEY_T)(a != a);
        t0 = a > t0 ? a : t0;
    }
    *nan = seen != 0;
    t0 = t1 > t0 ? t1 : t0;
    t2 = t3 > t2 ? t3 : t2;
    return t2 > t0 ? t2 : t0;
}

/* The largest of sign * row[0..n), as sa_topk_signed_max_blocks. */
SA_INLINE SA_T SA_FN(sa_topk_signed_max)(const SA_T *row, ptrdiff_t n, SA_T sign, int *nan)
{
    if (n * (ptrdiff_t)sizeof(SA_T) >= SA_TOPK_QUARTERS_BYTES)
        return SA_FN(sa_topk_signed_max_quarters)(row, n, sign, nan);
    return SA_FN(sa_topk_signed_max_blocks)(row, n, sign, nan);
}

/* k = 1 on a row with no NaN, in two passes: the largest number (the
 * smallest as the largest negated), then the first entry equal to it,
 * which is the first of the largest (or smallest). Returns 0, having
 * written nothing, if the row holds a NaN, for the caller's other paths. */
SA_INLINE int SA_FN(sa_topk_first_row)(const SA_T *row, ptrdiff_t n, int largest, sa_ranked *best)
{
    const SA_T sign = largest ? (SA_T)1 : (SA_T)-1;
    int nan;
    const SA_T top = sign * SA_FN(sa_topk_signed_max)(row, n, sign, &nan);
    if (nan)
        return 0;
    best[0].key = (SA_KEY_T)SA_RANK(top, largest);
    best[0].index = (int64_t)SA_FN(sa_topk_first_equal)(row, n, top);
    return 1;
}

/* k = 2 on a row of at least 2 entries with no NaN: the first as for k = 1,
 * then the largest number of the others; if it equals the first, it is the
 * first's next copy, else its own first copy (which may come before the
 * first). Four passes, two of them stopping at what they find. Returns 0,
 * having written nothing, if the row holds a NaN. */
SA_INLINE int SA_FN(sa_topk_two_row)(const SA_T *row, ptrdiff_t n, int largest, sa_ranked *best)
{
    if (!SA_FN(sa_topk_first_row)(row, n, largest, best))
        return 0;
    const SA_T sign = largest ? (SA_T)1 : (SA_T)-1;
    const ptrdiff_t first = (ptrdiff_t)best[0].index;
    int nan;
    const SA_T before = SA_FN(sa_topk_signed_max)(row, first, sign, &nan);
    const SA_T after = SA_FN(sa_topk_signed_max)(row + first + 1, n - first - 1, sign, &nan);
    const SA_T second = sign * (after > before ? after : before);
    best[1].key = (SA_KEY_T)SA_RANK(second, largest);
    best[1].index = (int64_t)(second == row[first]
                                  ? first + 1 + SA_FN(sa_topk_first_equal)(row + first + 1, n - first - 1, second)
                                  : SA_FN(sa_topk_first_equal)(row, n, second));
    return 1;
}

/* A lower bound of the row's k-th key from its G lane maxima (n >= k): if k
 * lanes hold a key of at least b, so do k distinct entries, and the row's
 * k-th key is no smaller than b. Up to SA_TOPK_BOUND_COUNT_G lanes the
 * bound is the k-th lane maximum, from the lanes' places (counting, G^2
 * compares); beyond, the largest b with only its top bits set
 * (SA_TOPK_BOUND_BITS_*) that k lanes reach, found a bit at a time, each a
 * count over the lanes: the k-th lane maximum with its low bits cleared,
 * which lets in only the few entries just below it. */
SA_INLINE SA_KEY_T SA_FN(sa_topk_lane_bound)(const SA_KEY_T *lane, ptrdiff_t G, ptrdiff_t k)
{
    if (G <= SA_TOPK_BOUND_COUNT_G) {
        SA_KEY_T place[SA_TOPK_COUNT_N];
        SA_FN(sa_topk_places)(lane, G, place);
        SA_KEY_T bound = 0;
        for (ptrdiff_t l = 0; l < G; l++)
            bound = (ptrdiff_t)place[l] == k - 1 ? lane[l] : bound;
        return bound;
    }
    if (sizeof(SA_KEY_T) == 4)
        return (SA_KEY_T)sa_topk_top_bits_bound((const uint32_t *)lane, G, k, SA_TOPK_BOUND_BITS_F32);
    /* float64: the trials set bits of the keys' upper halves only, so they
     * compare those, twice as many to a vector (G: a sample's
     * SA_TOPK_SAMPLE_LONG at most, or SA_TOPK_COUNT_N lanes) */
    uint32_t upper[SA_TOPK_SAMPLE_LONG];
#pragma omp simd
    for (ptrdiff_t l = 0; l < G; l++)
        upper[l] = (uint32_t)((uint64_t)lane[l] >> 32);
    return (SA_KEY_T)((uint64_t)sa_topk_top_bits_bound(upper, G, k, SA_TOPK_BOUND_BITS_F64) << 32);
}

/* The entries of a row that are at least bar or NaN (largest), or at most
 * bar (smallest), in index order, into cvalues and cindex, groups of 8
 * with none skipped: every entry whose rank key reaches bar's. Returns their number, or -1 as soon as more than cap
 * do (cvalues and cindex hold cap + SA_TOPK_REACH_SLACK).
 * sa_avx2_topk_reaching_* on x86-64-v3, sa_avx512_topk_reaching_* on AVX-512. */
SA_INLINE ptrdiff_t SA_FN(sa_topk_reaching_numbers)(const SA_T *row, ptrdiff_t n, int largest, SA_T bar,
                                                    SA_T *cvalues, SA_KEY_T *cindex, ptrdiff_t cap)
{
    ptrdiff_t m = 0;
    for (ptrdiff_t g = 0; g < n; g += 8) {
        const ptrdiff_t w = n - g < 8 ? n - g : 8;
        int reach = 0;
        for (ptrdiff_t j = 0; j < w; j++)
            reach |= largest ? !(row[g + j] < bar) : row[g + j] <= bar;
        if (!reach)
            continue;
        for (ptrdiff_t j = 0; j < w; j++) {
            cvalues[m] = row[g + j];
            cindex[m] = (SA_KEY_T)(g + j);
            m += largest ? !(row[g + j] < bar) : row[g + j] <= bar;
        }
        if (m > cap)
            return -1;
    }
    return m;
}

/* The entries of row[0..n) reaching bar, as for sa_topk_reaching_numbers,
 * by the AVX-512 form where the module uses it, else the AVX2 form on
 * x86-64-v3. */
SA_INLINE ptrdiff_t SA_FN(sa_topk_reaching)(const SA_T *row, ptrdiff_t n, int largest, SA_T bar,
                                            SA_T *cvalues, SA_KEY_T *cindex, ptrdiff_t cap)
{
#if SA_X86_DISPATCH
    if (sa_simd_v4)
        return SA_FN(sa_avx512_topk_reaching)(row, n, largest, bar, cvalues, cindex, cap);
    if (sa_simd_v3)
        return SA_FN(sa_avx2_topk_reaching)(row, n, largest, bar, cvalues, cindex, cap);
#endif
    return SA_FN(sa_topk_reaching_numbers)(row, n, largest, bar, cvalues, cindex, cap);
}

/* Large k on a row of at least SA_TOPK_SAMPLE_MIN_N entries (fewer than
 * 2^32): the rank keys of s entries at a fixed stride (SA_TOPK_SAMPLE,
 * or SA_TOPK_SAMPLE_LONG on rows from SA_TOPK_SAMPLE_LONG_N) give a
 * bound, the sample's r-th key (low bits cleared, sa_topk_lane_bound) with
 * r the k s / n expected in the sample plus two of its standard deviations
 * and 4, and one vector pass collects the entries that reach it, in index
 * order (NaN among them for the largest-k). When at least k do, so do k
 * entries with a key of at least the bound, the row's k-th key is no
 * smaller, and every entry of the result is among them: their (key, index)
 * pairs go to best. On unordered rows about r n / s entries reach it
 * (1300 for k = 1000 of 4096), and the row is read once. Returns their number, or 0
 * (the sample misled: fewer than k reach it, or more than the cap) for the
 * paths without a sample. best and tmp hold n entries each. */
SA_INLINE ptrdiff_t SA_FN(sa_topk_sampled_candidates)(const SA_T *row, ptrdiff_t n, ptrdiff_t k,
                                                      int largest, sa_ranked *tmp, SA_KEY_T **cindex)
{
    const ptrdiff_t S = n >= SA_TOPK_SAMPLE_LONG_N ? SA_TOPK_SAMPLE_LONG : SA_TOPK_SAMPLE;
    const double expected = (double)k * (double)S / (double)n;
    const ptrdiff_t r = (ptrdiff_t)(expected + 2.0 * sqrt(expected)) + 4;
    if (r >= S)
        return 0;
    SA_KEY_T sample[SA_TOPK_SAMPLE_LONG];
    const ptrdiff_t stride = n / S;
    for (ptrdiff_t j = 0; j < S; j++)
        sample[j] = (SA_KEY_T)SA_RANK(row[j * stride + stride / 2], largest);
    const SA_T bar = SA_UNRANK(SA_FN(sa_topk_lane_bound)(sample, S, r), largest);
    if (bar != bar)
        return 0;       /* r sampled entries are NaN */
    /* the values and indices that reach bar go to tmp */
    const ptrdiff_t room = n - SA_TOPK_REACH_SLACK;
    const ptrdiff_t wanted = SA_TOPK_SAMPLE_CAP_K * k + SA_TOPK_SAMPLE_CAP_EXTRA;
    const ptrdiff_t cap = wanted < room ? wanted : room;
    SA_T *cvalues = (SA_T *)tmp;
    *cindex = (SA_KEY_T *)(cvalues + cap + SA_TOPK_REACH_SLACK);
    const ptrdiff_t m = SA_FN(sa_topk_reaching)(row, n, largest, bar, cvalues, *cindex, cap);
    return m < k ? 0 : m;   /* m = -1: more than cap reached it */
}

/* The (key, index) pairs of m candidates into best. */
SA_INLINE void SA_FN(sa_topk_pairs_from_candidates)(const SA_T *cvalues, const SA_KEY_T *cindex, ptrdiff_t m,
                                                    int largest, sa_ranked *best)
{
    for (ptrdiff_t i = 0; i < m; i++) {
        best[i].key = SA_RANK(cvalues[i], largest);
        best[i].index = (int64_t)cindex[i];
    }
}

/* Moderate k (G lanes, see sa_topk_bound_lanes; n >= k): every entry of the
 * result has a key at least the lane bound (sa_topk_lane_bound), so one
 * pass collects the entries that reach it, in index order, and their places
 * among themselves (counting) give the result, sorted, into best[0..k)
 * (best holds k + 1). Both passes compare numbers: a maximum or minimum per
 * entry, then one compare per entry against the bound turned back into a
 * number. On unordered rows k to 1.5 k entries reach it. Returns 0, having
 * written nothing, for the caller's other paths, when the row holds a NaN
 * (whose order numbers do not follow) or more than SA_TOPK_COUNT_N entries
 * reach the bound (many equal keys, or keys periodic in G). */
SA_INLINE int SA_FN(sa_topk_bound_row)(const SA_T *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                       ptrdiff_t G, sa_ranked *best)
{
    SA_KEY_T lane[SA_TOPK_COUNT_N], place[SA_TOPK_COUNT_N];
    SA_KEY_T cand_keys[SA_TOPK_COUNT_N + SA_TOPK_REACH_SLACK], cand_index[SA_TOPK_COUNT_N + SA_TOPK_REACH_SLACK];
    SA_T cand_values[SA_TOPK_COUNT_N + SA_TOPK_REACH_SLACK];
    if (!SA_FN(sa_topk_lane_numbers)(row, n, largest, G, lane))
        return 0;
    SA_T bar = SA_UNRANK(SA_FN(sa_topk_lane_bound)(lane, G, k), largest);
    if (bar != bar)     /* a bound with low bits cleared below the infinity's key: every entry reaches it */
        bar = largest ? -(SA_T)INFINITY : (SA_T)INFINITY;
    const ptrdiff_t m = SA_FN(sa_topk_reaching)(row, n, largest, bar, cand_values, cand_index, SA_TOPK_COUNT_N);
    if (m < 0)
        return 0;
    for (ptrdiff_t i = 0; i < m; i++)
        cand_keys[i] = (SA_KEY_T)SA_RANK(cand_values[i], largest);
    SA_FN(sa_topk_places)(cand_keys, m, place);
    for (ptrdiff_t i = 0; i < m; i++) {
        /* no branch: entries placed at k or later go to the spare best[k] */
        const ptrdiff_t slot = (ptrdiff_t)place[i] < k ? (ptrdiff_t)place[i] : k;
        best[slot].key = cand_keys[i];
        best[slot].index = cand_index[i];
    }
    return 1;
}

/* sa_topk_bound_row with G = 2 k rounded up to a power of two (on unordered
 * rows k to 1.5 k entries then reach the bound): at least 8 on rows of up
 * to SA_TOPK_BOUND_SHORT_N entries, where the bound's G^2 compares cost
 * more than the pass over the lanes; else at least 32, and on float32 rows
 * longer than SA_TOPK_BOUND_FEW_LANES_N at least 64: eight AVX2 vectors of
 * lanes, so that eight maxima are in flight (32 lanes of float32 are four,
 * which on long rows wait on each other; on short ones the fewer lanes
 * cost less). G and largest are literals. */
SA_INLINE int SA_FN(sa_topk_bound_lanes)(const SA_T *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                         sa_ranked *best)
{
    if (k <= 4 && n <= SA_TOPK_BOUND_SHORT_N)
        return largest ? SA_FN(sa_topk_bound_row)(row, n, k, 1, 8, best)
                       : SA_FN(sa_topk_bound_row)(row, n, k, 0, 8, best);
    if (k <= 8 && n <= SA_TOPK_BOUND_SHORT_N)
        return largest ? SA_FN(sa_topk_bound_row)(row, n, k, 1, 16, best)
                       : SA_FN(sa_topk_bound_row)(row, n, k, 0, 16, best);
    if (k <= 16 && (sizeof(SA_T) == 8 || n <= SA_TOPK_BOUND_FEW_LANES_N))
        return largest ? SA_FN(sa_topk_bound_row)(row, n, k, 1, 32, best)
                       : SA_FN(sa_topk_bound_row)(row, n, k, 0, 32, best);
    if (k <= 32)
        return largest ? SA_FN(sa_topk_bound_row)(row, n, k, 1, 64, best)
                       : SA_FN(sa_topk_bound_row)(row, n, k, 0, 64, best);
    return largest ? SA_FN(sa_topk_bound_row)(row, n, k, 1, 128, best)
                   : SA_FN(sa_topk_bound_row)(row, n, k, 0, 128, best);
}

/* Whether a row of n entries takes the lane bound, past the lanes and the
 * passes (measured per row on fresh rows, where the insertion's branches
 * are unpredictable; src/_gating_kernels.h has the figures). Up to
 * SA_TOPK_BOUND_K, from SA_TOPK_BOUND_MIN_N entries (one more above k = 16,
 * where counting places is faster). float64 from k = 3, and any k from
 * SA_TOPK_BOUND_F64_FEW_K_N entries: its insertion compares 64-bit keys.
 * float32 from SA_TOPK_BOUND_F32_ANY_N_K at any length; below, while the
 * two reads of the row cost less than the insertion's one read and its
 * k log(n / k) inserts (n <= SA_TOPK_BOUND_F32_N_PER_K k). */
SA_INLINE int SA_FN(sa_topk_bound_suits)(ptrdiff_t n, ptrdiff_t k)
{
    if (k > SA_TOPK_BOUND_K || n < SA_TOPK_BOUND_MIN_N || (n == SA_TOPK_BOUND_MIN_N && k > 16))
        return 0;
    if (sizeof(SA_T) == 8)
        return n >= SA_TOPK_BOUND_F64_FEW_K_N || k >= 3;
    return k >= SA_TOPK_BOUND_F32_ANY_N_K || n <= SA_TOPK_BOUND_F32_N_PER_K * k;
}

/* The k first entries of one row, in result order when sorted, into
 * scratch[0..k); scratch holds 2 n entries when k > SA_TOPK_SMALL_K, else
 * k + 1. gate (a literal): topk_gating's call, whose float32 lanes keep
 * their scalar selection (sa_topk_lanes_row_f32). */
SA_INLINE void SA_FN(sa_topk_row)(const SA_T *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                  int sorted, int gate, sa_ranked *scratch)
{
    sa_ranked *best = scratch;
    if (sa_topk_network_suits(n, k, sizeof(SA_T) == 8)) {
#if SA_X86_DISPATCH
        if (sizeof(SA_T) == 4)
            sa_avx512_topk_network_f32((const float *)row, n, k, largest, best);
        else
            sa_avx512_topk_network_f64((const double *)row, n, k, largest, best);
#endif
    } else if (k == 1 && (sizeof(SA_T) == 8 || n >= SA_TOPK_FIRST_MIN_N_F32)
        && (largest ? SA_FN(sa_topk_first_row)(row, n, 1, best) : SA_FN(sa_topk_first_row)(row, n, 0, best))) {
        /* done: the first of the largest (or smallest) */
    } else if (k == 2 && n >= (sizeof(SA_T) == 8 ? SA_TOPK_TWO_MIN_N_F64 : SA_TOPK_TWO_MIN_N_F32)
               && n * (ptrdiff_t)sizeof(SA_T) <= SA_TOPK_TWO_MAX_BYTES
               && (largest ? SA_FN(sa_topk_two_row)(row, n, 1, best) : SA_FN(sa_topk_two_row)(row, n, 0, best))) {
        /* done: the first two of the largest (or smallest) */
    } else if (sizeof(SA_T) == 4 && k <= 2 && n <= SA_TOPK_LANES_N) {
        const float *r32 = (const float *)row;
        if (k == 1)
            largest ? sa_topk_lanes_row_f32(r32, n, 1, 1, gate, best)
                    : sa_topk_lanes_row_f32(r32, n, 1, 0, gate, best);
        else
            largest ? sa_topk_lanes_row_f32(r32, n, 2, 1, gate, best)
                    : sa_topk_lanes_row_f32(r32, n, 2, 0, gate, best);
    } else if (sizeof(SA_T) == 4 && sa_topk_passes_suit(n, k)) {
        if (largest)
            sa_topk_passes_row_f32((const float *)row, n, k, 1, best);
        else
            sa_topk_passes_row_f32((const float *)row, n, k, 0, best);
    } else if (SA_FN(sa_topk_bound_suits)(n, k) && SA_FN(sa_topk_bound_lanes)(row, n, k, largest, best)) {
        /* done: the entries that reach the lane bound were placed */
    } else if (n * (ptrdiff_t)sizeof(SA_T) <= SA_TOPK_COUNT_BYTES && k > SA_TOPK_SMALL_K) {
        if (largest)
            SA_FN(sa_topk_count_row)(row, n, k, 1, best);
        else
            SA_FN(sa_topk_count_row)(row, n, k, 0, best);
    } else if (k <= SA_TOPK_SMALL_K || (k <= 2 * SA_TOPK_SMALL_K && n >= SA_TOPK_SMALL_LONG_N)) {
        /* literal largest: the rank key folds to straight-line code */
        if (largest)
            SA_FN(sa_topk_small_row)(row, n, k, 1, best);
        else
            SA_FN(sa_topk_small_row)(row, n, k, 0, best);
    } else {
        sa_ranked *tmp = scratch + n;
        ptrdiff_t m = 0;
        SA_KEY_T *cindex = NULL;
        if (n >= SA_TOPK_SAMPLE_MIN_N && (uint64_t)n <= UINT32_MAX)
            m = largest ? SA_FN(sa_topk_sampled_candidates)(row, n, k, 1, tmp, &cindex)
                        : SA_FN(sa_topk_sampled_candidates)(row, n, k, 0, tmp, &cindex);
        if (m > 0) {
            /* the values of the entries that reach the sample's bound are at tmp */
            const SA_T *cvalues = (const SA_T *)tmp;
#if SA_X86_DISPATCH
            if (sizeof(SA_T) == 4 && sorted && sa_simd_v4) {
                /* their packs past them, in tmp's second half */
                sa_avx512_sort_candidates_f32((const float *)cvalues, (const uint32_t *)cindex, m, k, largest,
                                              (uint64_t *)tmp + n, best);
                return;
            }
            if (sizeof(SA_T) == 8 && sorted && sa_simd_v4) {
                /* their packs in place of the values; else their pairs in best */
                if (sa_avx512_sort_candidates_f64((const double *)row, (double *)tmp, (const uint64_t *)cindex,
                                                  m, k, largest, best))
                    return;
            } else
#endif
            SA_FN(sa_topk_pairs_from_candidates)(cvalues, cindex, m, largest, best);
        } else if (n >= SA_TOPK_FILTER_RATIO * k) {
            m = largest ? SA_FN(sa_topk_filter_row)(row, n, k, 1, best, tmp)
                        : SA_FN(sa_topk_filter_row)(row, n, k, 0, best, tmp);
        } else {
            for (ptrdiff_t i = 0; i < n; i++) {
                const sa_ranked e = {SA_RANK(row[i], largest), i};
                best[i] = e;
            }
            m = n;
        }
        if (sorted && k < m && (sizeof(SA_T) == 8 || m < n)) {
            /* the selection is the bucket sort's first level; float32 rows
             * with no sample or filter keep the radix selection and sort */
            SA_FN(sa_topk_sort_first)(best, m, k, tmp, (uint64_t)n <= UINT32_MAX);
        } else {
            if (k < m)
                SA_FN(sa_topk_keep)(best, m, k, tmp);
            if (sorted)
                SA_FN(sa_topk_sort)(best, k, tmp);
        }
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
        SA_FN(sa_topk_row)(row, n, k, largest, sorted, 0, scratch);
        for (ptrdiff_t j = 0; j < k; j++) {
            values[r * k + j] = row[scratch[j].index];
            indices[r * k + j] = scratch[j].index;
        }
    }
}

/* One chunk of a long row split over threads: the first min(k, end - begin)
 * entries of row[begin..end), in result order, with their indices in the
 * row, into out (scratch as for sa_topk_row with end - begin entries). */
SA_DISPATCHED(SA_FN(sa_topk_chunk),
              (const SA_T *row, ptrdiff_t begin, ptrdiff_t end, ptrdiff_t k, int largest,
               sa_ranked *out, sa_ranked *scratch),
              (row, begin, end, k, largest, out, scratch))
{
    const ptrdiff_t kc = k < end - begin ? k : end - begin;
    SA_FN(sa_topk_row)(row + begin, end - begin, kc, largest, 1, 0, scratch);
    for (ptrdiff_t j = 0; j < kc; j++) {     /* the keys whole: sa_topk_row may leave them packed */
        out[j].key = SA_RANK(row[begin + scratch[j].index], largest);
        out[j].index = scratch[j].index + begin;
    }
}

/* The row's k first, in result order, from its chunks' lists (chunk c:
 * counts[c] pairs from lists + c k, in result order): each step takes the
 * first of the chunks' heads, so ties go to the lower index across chunks
 * too. head holds `chunks` positions. O(k chunks), for a few chunks. */
SA_INLINE void SA_FN(sa_topk_merge)(const SA_T *row, const sa_ranked *lists, const ptrdiff_t *counts,
                                    ptrdiff_t chunks, ptrdiff_t k, ptrdiff_t *head, SA_T *values,
                                    int64_t *indices)
{
    for (ptrdiff_t c = 0; c < chunks; c++)
        head[c] = 0;
    for (ptrdiff_t j = 0; j < k; j++) {
        ptrdiff_t from = -1;
        for (ptrdiff_t c = 0; c < chunks; c++) {
            if (head[c] < counts[c]
                && (from < 0 || sa_ranked_before(lists[c * k + head[c]], lists[from * k + head[from]])))
                from = c;
        }
        if (from < 0)
            return;     /* a chunk stopped by an interrupt: the caller raises */
        const sa_ranked e = lists[from * k + head[from]++];
        values[j] = row[e.index];
        indices[j] = e.index;
    }
}

/* The k selected experts' exp((z_j - z_top) / temperature) into w, their
 * indices into idx; returns their sum. From a vector's width of them
 * (8 float32, 4 float64 entries) the logits are gathered into w first and
 * the exponentials run as one vector loop; below it the scalar calls are
 * faster (65536 rows of 8 experts, float32, k = 2: 2.6 ms scalar, 2.8
 * vector). */
SA_INLINE double SA_FN(sa_gate_selected_weights)(const SA_T *row, const sa_ranked *selected,
                                                 ptrdiff_t k, SA_T top, SA_T it, SA_T *w,
                                                 int64_t *idx)
{
    double norm = 0.0;
    if (k * (ptrdiff_t)sizeof(SA_T) < 32) {
        for (ptrdiff_t j = 0; j < k; j++) {
            const double e = (double)SA_EXP_SMALL((row[selected[j].index] - top) * it);
            w[j] = (SA_T)e;
            idx[j] = selected[j].index;
            norm += e;
        }
        return norm;
    }
    for (ptrdiff_t j = 0; j < k; j++) {
        w[j] = row[selected[j].index];
        idx[j] = selected[j].index;
    }
#pragma omp simd reduction(+ : norm)
    for (ptrdiff_t j = 0; j < k; j++) {
        const SA_T e = SA_EXP_SMALL((w[j] - top) * it);
        w[j] = e;
        norm += (double)e;
    }
    return norm;
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
        SA_FN(sa_topk_row)(row, E, k, 1, 1, 1, scratch);
        const SA_T top = row[scratch[0].index];
        SA_T total = 0;
        if (!over_selected || prob_sum) {
#pragma omp simd reduction(+ : total)
            for (ptrdiff_t e = 0; e < E; e++)
                total += SA_EXP_SMALL((row[e] - top) * it);
        }
        const double norm = SA_FN(sa_gate_selected_weights)(row, scratch, k, top, it,
                                                          weights + r * k, indices + r * k);
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
