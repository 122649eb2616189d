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
 * Rows of up to SA_TOPK_NETWORK_N entries with AVX-512 (sa_topk_network_suits):
 * the whole row sorted by a bitonic network in registers, the first k read off.
 * k = 1 (float64, and float32 from SA_TOPK_FIRST_MIN_N_F32 entries): the
 * row's best number in one pass, then the first entry equal to it.
 * k <= 2 in float32 (the mixture-of-experts router's case) on rows of up
 * to SA_TOPK_LANES_N: one pass with 8 lanes each keeping its best k 64-bit
 * (rank key, index) packs; k <= 4 on rows of up to SA_TOPK_PASSES_N (k <= 8
 * up to half as long) with AVX-512, up to SA_TOPK_PASSES_AVX2_N without: k
 * vectorized passes, each a maximum over the packs. k up to 64 on most rows
 * (sa_topk_bound_suits): the lane bound, a lower bound of the k-th key from
 * the maxima of lanes the row is dealt to, then one pass collecting the few
 * entries that reach it and placing them by counting. Other small k
 * (SA_TOPK_SMALL_K):
 * one pass with the k best kept sorted in a tiny array; a block of keys, then
 * a group of 8, that cannot enter costs one vector compare. Rows of up to SA_TOPK_COUNT_BYTES (larger
 * k): each entry's place in the result is counted, n^2 compares in vector
 * loops. Large k: on rows from SA_TOPK_SAMPLE_MIN_N entries, the entries
 * that reach a bound taken from a sample of the row are collected in one
 * vector pass, and a bucket sort over their keys' range, whose first level
 * is the selection, puts the k first in result order. Else (or when the
 * sample misled) the (key, index) pairs of the row go to scratch in index
 * order (on rows at least SA_TOPK_FILTER_RATIO k long, only those that reach
 * a running k-th best key), an MSD radix select finds the k-th key, one pass
 * keeps the k first (equal keys in index order), and (if sorted) a stable sort by key
 * (counting, an LSD radix sort of float32 keys, the bucket sort of float64
 * ones) puts them in result order: no comparison sort. The Python layer
 * (softarray/_gating.py) validates everything and lays the data out as
 * rows; nothing here fails.
 */
#ifndef SOFTARRAY_GATING_KERNELS_H
#define SOFTARRAY_GATING_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_simd.h"

/* Outside the lane bound (sa_topk_bound_suits), up to this k the one-pass
 * insertion (sa_topk_small_row) is used, and up to twice this k on rows of
 * at least SA_TOPK_SMALL_LONG_N entries; above, the radix selection. Measured
 * before the lane bound existed: at k = 17 to 32 the selection is 1.3-1.7x
 * faster on rows of 300 to 4096 entries, the insertion 1.1-1.2x faster on
 * rows of 32000 and 128000 (whose blocks it mostly skips). */
#define SA_TOPK_SMALL_K 16
#define SA_TOPK_SMALL_LONG_N 16384
/* float32 rows up to SA_TOPK_PASSES_N long and k <= SA_TOPK_PASSES_K (or
 * up to SA_TOPK_PASSES_N / 2 long and k <= 2 SA_TOPK_PASSES_K) take k
 * vectorized passes (sa_topk_passes_row_f32); rows up to SA_TOPK_LANES_N
 * long and k <= 2 the lanes (sa_topk_lanes_row_f32). Their 64-bit packs
 * cost more per entry than the small-k path's block skip once rows are
 * longer (measured at 256 to 32000 entries: the lanes 1.5x slower at 4096,
 * 3-4x at 32000; on fresh rows the lane bound from 1000), and than counting places for larger k (8 passes over
 * 128 entries: 0.57 us a row against 0.65; over 256: 1.08 against 0.81;
 * measured before the passes read keys packed once and ran on AVX-512,
 * which took 64x64 rows, k = 8, from 330 to 140 ns a row). */
#define SA_TOPK_PASSES_K 4
#define SA_TOPK_PASSES_N 256
#define SA_TOPK_LANES_N 512
/* Without AVX-512 each pass builds the packs' unsigned compare and maximum
 * from four instructions each, and the passes only hold their own on rows
 * of up to this many entries with k <= SA_TOPK_PASSES_K. Per fresh row on
 * Zen 1, rows in L2, ns, passes against the next path: n = 64, k = 3 335 /
 * 446, k = 4 433 / 442; n = 128, k = 4 1332 / 821; n = 256, k = 4 2327 /
 * 877; k = 8 at n = 16, 64, 128: 1570 / 299, 956 / 495, 1451 / 559. */
#define SA_TOPK_PASSES_AVX2_N 64
/* Large k on rows at least this many times k long: the threshold filter
 * (sa_topk_filter_row) before the radix selection (8 measured 10-17%
 * faster than 16 at 1000 entries, k = 64, and 4096, k = 300; 4 no better). */
#define SA_TOPK_FILTER_RATIO 8
/* Large k on rows of at least SA_TOPK_SAMPLE_MIN_N entries: the rank keys
 * of SA_TOPK_SAMPLE entries at a fixed stride bound the k-th key
 * (sa_topk_sampled_candidates); more than SA_TOPK_SAMPLE_CAP_K k +
 * SA_TOPK_SAMPLE_CAP_EXTRA entries reaching it sends the row to the paths
 * without a sample. */
#define SA_TOPK_SAMPLE 256
#define SA_TOPK_SAMPLE_MIN_N 2048
/* From SA_TOPK_SAMPLE_LONG_N entries, SA_TOPK_SAMPLE_LONG are sampled: with
 * 256 of 128000 entries and k = 1000, r's margin (4 above an expected 2, and
 * two deviations) let about 4000 entries reach the bound, over the cap, and
 * every row fell back to the filter. Per fresh row, us, Intel Xeon with
 * AVX-512, 2026-12-06, 256 / 1024 sampled: n = 128000 k = 1000 float64 222
 * / 111, float32 133 / 67; n = 32000 k = 1000 float64 68 / 55, k = 300 45 /
 * 33; n = 8192 k = 1000 float64 28.5 / 23.5, float32 17.5 / 16.2; at n =
 * 4096 float64 gains 10% and float32 loses 2-5%. */
#define SA_TOPK_SAMPLE_LONG 1024
#define SA_TOPK_SAMPLE_LONG_N 8192
#define SA_TOPK_SAMPLE_CAP_K 3
#define SA_TOPK_SAMPLE_CAP_EXTRA 1024
/* Rows of up to this many bytes and k above SA_TOPK_SMALL_K are placed by
 * counting (sa_topk_count_row): n^2 compares in vector loops, faster than
 * the other paths up to 128 float32 or 64 float64 entries (measured, 1024
 * rows). Below that k the one-pass insertion is faster (2026-12-05, 64 rows,
 * counting against insertion: float64 64 entries 30.5 against 7.7 / 10.9 /
 * 16.4 us at k = 4 / 8 / 16; float32 128 entries 42.8 against 20.5 / 26.7
 * at k = 12 / 16, 64 entries 17.8 against 14.8 at k = 12, level at 16). */
#define SA_TOPK_COUNT_BYTES 512
#define SA_TOPK_COUNT_N (SA_TOPK_COUNT_BYTES / 4)
_Static_assert(SA_TOPK_COUNT_N <= SA_TOPK_SAMPLE_LONG, "sa_topk_lane_bound's float64 upper halves hold G lanes");
/* Entries whose places are counted at once (sa_topk_places): 4 AVX2 vectors of float32 keys. */
#define SA_TOPK_PLACE_BLOCK 32
/* Up to this many selected entries are sorted by counting, more by an LSD
 * radix sort (sa_topk_radix_sort, float32) or the bucket sort
 * (sa_topk_sort_first, float64). */
#define SA_TOPK_COUNT_SORT_K 64
/* Where the lane bound runs (sa_topk_bound_suits, sa_topk_bound_lanes).
 * Measured per row on 2^21 fresh normal entries, ns, 2026-12-05 (a C
 * harness calling each path; insertion / radix selection / lane bound):
 * float32 n = 1000: k = 1 318 / 1028 / 312, k = 8 1354 / 1798 / 442, k = 64
 * 7391 / 3214 / 830; n = 32000: k = 4 3761 / 5188 / 3687, k = 17 9218 /
 * 9386 / 3912; n = 128000: k = 8 13587 / 16086 / 14314, k = 16 15512 / 18216
 * / 14388, k = 64 41931 / 33918 / 15020. float64 n = 256: k = 2 369 / 931 /
 * 304; n = 1000: k = 1 568 / 1386 / 499, k = 8 1656 / 2322 / 721; n = 128000:
 * k = 1 37965 / 40575 / 35322, k = 64 76553 / 71983 / 39910. The float32
 * lanes path (k <= 2) is the fastest up to 512 entries (n = 512, k = 1: 176
 * against 230 / 252), the lanes' k = 1 at 1000 already 342. */
#define SA_TOPK_BOUND_K 64
/* k = 1 (sa_topk_first_row: a maximum pass, then a find pass) from this
 * many float32 entries, and on every float64 row. Per row on Zen 1, rows
 * in L2, ns, against the paths before it: float32 n = 16 56 / 41 (passes),
 * 32 49 / 59, 256 99 / 301, 1000 230 / 429, 32000 4157 / 10094; float64
 * n = 16 40 / 76, 1000 363 / 1074 (one pass over lanes keeping an index). */
#define SA_TOPK_FIRST_MIN_N_F32 32
/* The maximum pass reads rows of at least this many bytes as four quarter
 * streams, shorter ones as one stream of blocks (sa_topk_signed_max). AMD
 * Zen 4, one thread, us a row, quarters / blocks: rows read from memory
 * float32 n = 2048 0.71 / 0.24, 4096 1.10 / 0.60, 16384 3.47 / 3.03,
 * 32000 5.90 / 5.61, float64 n = 1000 0.91 / 0.34, 16384 5.79 / 5.75, a
 * single row of 128000 38.6 / 43.0; 8 rows in L2 or L3, float32 32000
 * 1.99 / 2.25, 128000 9.3 / 9.9, float64 128000 18.3 / 20.5. */
#define SA_TOPK_QUARTERS_BYTES 65536
/* k = 2 (sa_topk_two_row: the first, then the largest of the others) from
 * these many entries. Per row on Zen 1, rows in L2, ns, against the paths
 * before it: float32 n = 64 160 / 144, 96 176 / 194, 256 215 / 445, 1000
 * 440 / 671, 32000 8879 / 12849, 128000 37305 / 46843; float64 n = 8
 * 98 / 94, 16 102 / 147, 1000 663 / 1512, 128000 76361 / 108070. */
#define SA_TOPK_TWO_MIN_N_F32 96
#define SA_TOPK_TWO_MIN_N_F64 16
/* ... up to rows of this many bytes. Its passes read a row about three
 * times (the two maximum passes whole, the two searches for the first
 * copy half of it on average); on longer rows the paths after it, which
 * read a row once, are faster on AMD Zen 4 (C harness, one thread, us a
 * row, two passes / the others): rows read from memory float64 n = 4096
 * 2.30 / 2.25, 32000 19.8 / 17.2, 128000 79.8 / 64.6, float32 4096 1.89 /
 * 1.68, 32000 11.8 / 9.3, 128000 40.8 / 27.8; 8 rows in cache float64
 * 1000 0.33 / 0.60, 4096 1.53 / 1.83, 128000 48.9 / 45.6, float32 4096
 * 0.63 / 0.72, 32000 5.43 / 5.56, 128000 17.1 / 13.4. */
#define SA_TOPK_TWO_MAX_BYTES 65536
#define SA_TOPK_BOUND_MIN_N 64
#define SA_TOPK_BOUND_F64_FEW_K_N 512
/* Rows of up to this many entries and k <= 8 take the lane bound with 8
 * lanes (k <= 4) or 16, where longer rows take 32 or more: counting the
 * places of the lane maxima (G^2 compares) is then most of the work. With
 * the fewer lanes, float64 rows take the lane bound from k = 3 at any length
 * (with 32 lanes the insertion was faster on short rows). Per fresh row,
 * ns, Intel Xeon with AVX-512 (family 6 model 167), 2026-12-06, the
 * insertion or 32 lanes / the fewer lanes: float64 n = 64 k = 3 280 / 160,
 * k = 4 320 / 160, k = 8 460 / 210; n = 128 k = 4 500 / 250; n = 256 k = 4
 * 550 / 440, k = 8 710 / 580; n = 512 k = 8 950 / 900; float32 n = 128
 * k = 8 310 / 250, n = 512 k = 4 430 / 370. */
#define SA_TOPK_BOUND_SHORT_N 512
#define SA_TOPK_BOUND_F32_ANY_N_K 12
#define SA_TOPK_BOUND_F32_N_PER_K 4096
#define SA_TOPK_BOUND_FEW_LANES_N 2048
/* The lane bound (sa_topk_lane_bound) is exact up to SA_TOPK_BOUND_COUNT_G
 * lanes; with more, its top bits are found: 16 leave float32's bound 7 bits of
 * mantissa below the k-th lane maximum, 20 float64's 8. */
#define SA_TOPK_BOUND_COUNT_G 32
#define SA_TOPK_BOUND_BITS_F32 16
#define SA_TOPK_BOUND_BITS_F64 20
/* Rank keys of this many entries are computed at a time (on the stack), and
 * a block whose largest key cannot enter is skipped: 128 measured best
 * against 64 and 256 at 1000 to 128000 entries and k of 5 to 1000. */
#define SA_TOPK_BLOCK 128
/* The sort's most buckets per level, and the buckets it leaves to the
 * insertion pass. */
#define SA_TOPK_SORT_BUCKETS 1024
#define SA_TOPK_ID_BLOCK 256
#define SA_TOPK_INSERTION_N 16
/* Entries sa_topk_reaching_numbers and its vector forms may write past their cap. */
#define SA_TOPK_REACH_SLACK 32

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* The number whose rank key is key (no NaN: key at most +inf's; -0.0 for
 * the one key between the two zeros' that no number has). Keys and numbers
 * then order alike: rank(v) >= key exactly when v >= unrank(key) for the
 * largest-k, v <= unrank(key) for the smallest. */
SA_INLINE float sa_unrank_f32(uint64_t key, int largest)
{
    const uint32_t k = largest ? (uint32_t)key : ~(uint32_t)key;
    return sa_from_bits32((k & 0x80000000u) ? k ^ 0x80000000u : ~k);
}

SA_INLINE double sa_unrank_f64(uint64_t key, int largest)
{
    const uint64_t k = largest ? key : ~key;
    return sa_from_bits64((k & 0x8000000000000000ull) ? k ^ 0x8000000000000000ull : ~k);
}

/* The largest b with only its top `bits` bits set that at least k of the
 * G keys reach (sa_topk_lane_bound), a bit at a time, each a count over
 * the keys. */
SA_INLINE uint32_t sa_topk_top_bits_bound(const uint32_t *key, ptrdiff_t G, ptrdiff_t k, int bits)
{
    uint32_t bound = 0;
    for (int bit = 31; bit >= 32 - bits; bit--) {
        const uint32_t trial = bound | (uint32_t)1 << bit;
        int32_t reached = 0;
#pragma omp simd reduction(+ : reached)
        for (ptrdiff_t l = 0; l < G; l++)
            reached += key[l] >= trial;
        bound = reached >= k ? trial : bound;
    }
    return bound;
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

/* A (key, index) pair held whole: one 16-byte load or store on x86-64. A
 * pair stored as two 8-byte halves and loaded whole at once cannot be
 * forwarded from the store buffer, and every shift of the insertion below
 * would wait for it (2x slower on Zen 1). */
#if defined(__SSE2__)
typedef __m128i sa_ranked_whole;
SA_INLINE sa_ranked_whole sa_ranked_load(const sa_ranked *p) { return _mm_loadu_si128((const __m128i *)p); }
SA_INLINE void sa_ranked_store(sa_ranked *p, sa_ranked_whole e) { _mm_storeu_si128((__m128i *)p, e); }
#else
typedef sa_ranked sa_ranked_whole;
SA_INLINE sa_ranked_whole sa_ranked_load(const sa_ranked *p) { return *p; }
SA_INLINE void sa_ranked_store(sa_ranked *p, sa_ranked_whole e) { *p = e; }
#endif

/* Stable insertion sort of a[0..m) by key, largest first: an entry passes
 * an earlier one only with a strictly larger key. Pairs move whole. */
SA_INLINE void sa_topk_insertion_sort(sa_ranked *a, ptrdiff_t m)
{
    for (ptrdiff_t i = 1; i < m; i++) {
        const uint64_t key = a[i].key;
        if (a[i - 1].key >= key)
            continue;
        const sa_ranked_whole e = sa_ranked_load(a + i);
        ptrdiff_t j = i;
        for (; j > 0 && a[j - 1].key < key; j--)
            sa_ranked_store(a + j, sa_ranked_load(a + j - 1));
        sa_ranked_store(a + j, e);
    }
}

/* A 32-bit key (a float32 rank key, or 32 bits of a float64 one relative to
 * the candidates' least) and an index (below 2^32) packed into one 64-bit
 * key, key << 32 | ~index: unique, and ordered as the result, ties included
 * (the lower index first), so that a plain maximum or sort of packs is the
 * top-k's. The passes, the lanes, the networks and the pack sort use it. */
SA_INLINE uint64_t sa_topk_pack(uint64_t key, uint64_t index)
{
    return key << 32 | (uint32_t)~(uint32_t)index;
}

/* The (key, index) pair a pack holds. */
SA_INLINE sa_ranked sa_topk_unpack(uint64_t pack)
{
    const sa_ranked e = {pack >> 32, (uint32_t)~(uint32_t)pack};
    return e;
}

/* float32, k <= SA_TOPK_PASSES_K: k vectorized passes over the row's packs
 * (sa_topk_pack; short rows stay in L1), so pass j is a plain maximum over
 * the packs below the one pass j - 1 found. The packs are made once, so a
 * pass is a compare and a maximum per entry: on AVX-512 (vpcmpuq, vpmaxuq)
 * one instruction each, which AVX2 builds from four. */
SA_INLINE void sa_topk_pack_f32(const float *row, ptrdiff_t n, int largest, uint64_t *packed)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++)
        packed[i] = sa_topk_pack(sa_rank_f32(row[i], largest), (uint64_t)i);
}

SA_INLINE uint64_t sa_topk_next_below(const uint64_t *packed, ptrdiff_t n, uint64_t previous, int first)
{
    uint64_t top = 0;       /* below every packed key of a row shorter than 2^32 */
#pragma omp simd reduction(max : top)
    for (ptrdiff_t i = 0; i < n; i++) {
        const uint64_t c = (first || packed[i] < previous) ? packed[i] : 0;
        top = c > top ? c : top;
    }
    return top;
}

#if SA_X86_DISPATCH
#include <immintrin.h>
/* The first count lanes of eight (none for count <= 0, all from 8): the
 * mask of a load or store of count 64-bit entries, or, with 2 count, of
 * count (key, index) pairs from the start of a register's worth. */
SA_AVX512_INLINE __mmask8 sa_avx512_lanes8(ptrdiff_t count)
{
    return count >= 8 ? (__mmask8)0xFF : count <= 0 ? (__mmask8)0 : (__mmask8)((1u << count) - 1u);
}

/* The first count lanes of sixteen, as sa_avx512_lanes8 for 32-bit entries. */
SA_AVX512_INLINE __mmask16 sa_avx512_lanes16(ptrdiff_t count)
{
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1u);
}

/* sa_topk_next_below on eight lanes, two maxima in flight. */
SA_AVX512_INLINE __m512i
sa_avx512_topk_max_below(__m512i top, __m512i v, __mmask8 inside, __m512i below, int first)
{
    const __mmask8 take = first ? inside : _mm512_mask_cmplt_epu64_mask(inside, v, below);
    return _mm512_mask_max_epu64(top, take, top, v);
}

SA_AVX512_INLINE uint64_t
sa_avx512_topk_next_below(const uint64_t *packed, ptrdiff_t n, uint64_t previous, int first)
{
    const __m512i below = _mm512_set1_epi64((long long)previous);
    __m512i top0 = _mm512_setzero_si512(), top1 = _mm512_setzero_si512();
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        top0 = sa_avx512_topk_max_below(top0, _mm512_loadu_si512(packed + i), 0xff, below, first);
        top1 = sa_avx512_topk_max_below(top1, _mm512_loadu_si512(packed + i + 8), 0xff, below, first);
    }
    for (; i < n; i += 8) {
        const __mmask8 inside = sa_avx512_lanes8(n - i);
        top0 = sa_avx512_topk_max_below(top0, _mm512_maskz_loadu_epi64(inside, packed + i), inside, below, first);
    }
    return _mm512_reduce_max_epu64(_mm512_max_epu64(top0, top1));
}

/* The entries of a row with no NaN that reach a bound, in index order
 * (sa_topk_bound_row's second pass), on x86-64-v3: the bound is a number,
 * bar, and an entry reaches it when it is at least bar (largest) or at most
 * bar (smallest), so eight float32 or four float64 entries are compared in
 * one instruction and left-packed (a permutation looked up by the compare's
 * mask) into cvalues and cindex, with no branch on the data
 * but one per 32 entries, which skips those with none reaching. Returns
 * their number, or -1 as soon as more than cap reach it (cvalues and cindex
 * hold cap + SA_TOPK_REACH_SLACK). */
#define SA_V3 __attribute__((target("arch=x86-64-v3")))

/* Byte j of entry m names the lane that goes to place j when the lanes mask
 * m names are packed to the left (zero past them). A table, not pdep/pext,
 * which AMD before Zen 3 runs in microcode: on Zen 1 the table made whole
 * rows 1.7-2.5x faster (fresh rows of 1000, k = 8 and 64, float32 and
 * float64); one load from L1 costs about what pdep, a multiply and pext do
 * where those are fast. */
static uint64_t sa_pack_orders[256];

__attribute__((constructor)) static void sa_pack_orders_fill(void)
{
    for (unsigned mask = 0; mask < 256; mask++) {
        uint64_t order = 0;
        unsigned place = 0;
        for (unsigned lane = 0; lane < 8; lane++)
            if (mask >> lane & 1)
                order |= (uint64_t)lane << (8 * place++);
        sa_pack_orders[mask] = order;
    }
}

static inline SA_V3 __m256i sa_avx2_pack_order(unsigned lanes)
{
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sa_pack_orders[lanes]));
}

static inline SA_V3 unsigned sa_avx2_reach_ps(__m256 v, __m256 bar, int largest)
{
    const __m256 reach = largest ? _mm256_cmp_ps(v, bar, _CMP_NLT_UQ) : _mm256_cmp_ps(v, bar, _CMP_LE_OQ);
    return (unsigned)_mm256_movemask_ps(reach);
}

static inline SA_V3 unsigned sa_avx2_reach_pd(__m256d v, __m256d bar, int largest)
{
    const __m256d reach = largest ? _mm256_cmp_pd(v, bar, _CMP_NLT_UQ) : _mm256_cmp_pd(v, bar, _CMP_LE_OQ);
    return (unsigned)_mm256_movemask_pd(reach);
}

/* Appends the lanes of v (eight 32-bit values) and of index that lanes
 * names, in order, at out_v + m and out_i + m; returns the new count. */
static inline SA_V3 ptrdiff_t sa_avx2_pack8(__m256i v, __m256i index, unsigned lanes, uint32_t *out_v,
                                            uint32_t *out_i, ptrdiff_t m)
{
    const __m256i order = sa_avx2_pack_order(lanes);
    _mm256_storeu_si256((__m256i *)(out_v + m), _mm256_permutevar8x32_epi32(v, order));
    _mm256_storeu_si256((__m256i *)(out_i + m), _mm256_permutevar8x32_epi32(index, order));
    return m + __builtin_popcount(lanes);
}

/* The same for four 64-bit values: each is a pair of the 32-bit lanes the
 * permutation moves. */
static inline SA_V3 ptrdiff_t sa_avx2_pack4(__m256i v, __m256i index, unsigned lanes, uint64_t *out_v,
                                            uint64_t *out_i, ptrdiff_t m)
{
    const unsigned pairs = (lanes & 1) * 3 | (lanes & 2) * 6 | (lanes & 4) * 12 | (lanes & 8) * 24;
    const __m256i order = sa_avx2_pack_order(pairs);
    _mm256_storeu_si256((__m256i *)(out_v + m), _mm256_permutevar8x32_epi32(v, order));
    _mm256_storeu_si256((__m256i *)(out_i + m), _mm256_permutevar8x32_epi32(index, order));
    return m + __builtin_popcount(lanes);
}

static inline SA_V3 ptrdiff_t sa_avx2_reaching_f32_body(const float *row, ptrdiff_t n, int largest, float bar,
                                                        float *cvalues, uint32_t *cindex, ptrdiff_t cap)
{
    const __m256 vbar = _mm256_set1_ps(bar);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    uint32_t *out = (uint32_t *)cvalues;
    ptrdiff_t m = 0, b = 0;
    for (; b + 32 <= n; b += 32) {
        __m256 v[4];
        unsigned lanes[4];
        for (int q = 0; q < 4; q++) {
            v[q] = _mm256_loadu_ps(row + b + 8 * q);
            lanes[q] = sa_avx2_reach_ps(v[q], vbar, largest);
        }
        if (!(lanes[0] | lanes[1] | lanes[2] | lanes[3]))
            continue;
        for (int q = 0; q < 4; q++)
            m = sa_avx2_pack8(_mm256_castps_si256(v[q]), _mm256_add_epi32(_mm256_set1_epi32((int)(b + 8 * q)), iota),
                              lanes[q], out, cindex, m);
        if (m > cap)
            return -1;
    }
    for (; b < n; b += 8) {
        const __m256i inside = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - b < 8 ? n - b : 8)), iota);
        const __m256 v = _mm256_maskload_ps(row + b, inside);
        const unsigned lanes = sa_avx2_reach_ps(v, vbar, largest)
                               & (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(inside));
        m = sa_avx2_pack8(_mm256_castps_si256(v), _mm256_add_epi32(_mm256_set1_epi32((int)b), iota), lanes, out,
                          cindex, m);
    }
    return m > cap ? -1 : m;
}

static inline SA_V3 ptrdiff_t sa_avx2_reaching_f64_body(const double *row, ptrdiff_t n, int largest, double bar,
                                                        double *cvalues, uint64_t *cindex, ptrdiff_t cap)
{
    const __m256d vbar = _mm256_set1_pd(bar);
    const __m256i iota = _mm256_setr_epi64x(0, 1, 2, 3);
    uint64_t *out = (uint64_t *)cvalues;
    ptrdiff_t m = 0, b = 0;
    for (; b + 16 <= n; b += 16) {
        __m256d v[4];
        unsigned lanes[4];
        for (int q = 0; q < 4; q++) {
            v[q] = _mm256_loadu_pd(row + b + 4 * q);
            lanes[q] = sa_avx2_reach_pd(v[q], vbar, largest);
        }
        if (!(lanes[0] | lanes[1] | lanes[2] | lanes[3]))
            continue;
        for (int q = 0; q < 4; q++)
            m = sa_avx2_pack4(_mm256_castpd_si256(v[q]), _mm256_add_epi64(_mm256_set1_epi64x(b + 4 * q), iota),
                              lanes[q], out, cindex, m);
        if (m > cap)
            return -1;
    }
    for (; b < n; b += 4) {
        const __m256i inside = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - b < 4 ? n - b : 4), iota);
        const __m256d v = _mm256_maskload_pd(row + b, inside);
        const unsigned lanes = sa_avx2_reach_pd(v, vbar, largest)
                               & (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(inside));
        m = sa_avx2_pack4(_mm256_castpd_si256(v), _mm256_add_epi64(_mm256_set1_epi64x(b), iota), lanes, out, cindex,
                          m);
    }
    return m > cap ? -1 : m;
}

/* The reaching pass's entry point `name` on `target`, calling `body` with
 * largest a literal in each copy (T the number's type, K the index's). */
#define SA_TOPK_REACHING_ENTRY(target, name, body, T, K)                                                   \
    target static ptrdiff_t name(const T *row, ptrdiff_t n, int largest, T bar, T *cvalues, K *cindex,  \
                                 ptrdiff_t cap)                                                          \
    {                                                                                                    \
        return largest ? body(row, n, 1, bar, cvalues, cindex, cap) : body(row, n, 0, bar, cvalues, cindex, cap); \
    }

SA_TOPK_REACHING_ENTRY(SA_V3, sa_avx2_topk_reaching_f32, sa_avx2_reaching_f32_body, float, uint32_t)
SA_TOPK_REACHING_ENTRY(SA_V3, sa_avx2_topk_reaching_f64, sa_avx2_reaching_f64_body, double, uint64_t)

/* sa_avx2_topk_reaching_* on AVX-512: sixteen float32 or eight float64
 * entries compared in one instruction, the reaching ones left-packed by
 * vcompress (no table, no permutation); two or four vectors a step, which
 * stores at most 32 entries past the cap check. */
SA_AVX512_INLINE __mmask16 sa_avx512_reach_ps(__m512 v, __m512 bar, int largest)
{
    return largest ? _mm512_cmp_ps_mask(v, bar, _CMP_NLT_UQ) : _mm512_cmp_ps_mask(v, bar, _CMP_LE_OQ);
}

SA_AVX512_INLINE __mmask8 sa_avx512_reach_pd(__m512d v, __m512d bar, int largest)
{
    return largest ? _mm512_cmp_pd_mask(v, bar, _CMP_NLT_UQ) : _mm512_cmp_pd_mask(v, bar, _CMP_LE_OQ);
}

/* One step of 32 entries, row[0..32) (only the first `left` when not
 * full), their first index in first: the reaching ones appended at
 * cvalues + m and cindex + m; returns the new m. Full steps take no lane
 * masks and their indices by vector adds, which keeps the loop's port 5
 * (vcompress' port on Intel) for the compresses. */
SA_AVX512_INLINE ptrdiff_t sa_avx512_reaching_f32_step(const float *row, ptrdiff_t left, int full, int largest,
                                                       __m512 vbar, __m512i first, float *cvalues,
                                                       uint32_t *cindex, ptrdiff_t m)
{
    __m512 v[2];
    __mmask16 lanes[2];
    for (int q = 0; q < 2; q++) {
        const __mmask16 inside = full ? (__mmask16)0xFFFF : sa_avx512_lanes16(left - 16 * q);
        v[q] = full ? _mm512_loadu_ps(row + 16 * q) : _mm512_maskz_loadu_ps(inside, row + 16 * q);
        lanes[q] = sa_avx512_reach_ps(v[q], vbar, largest) & inside;
    }
    if (!(lanes[0] | lanes[1]))
        return m;
    for (int q = 0; q < 2; q++) {
        const __m512i index = _mm512_add_epi32(first, _mm512_set1_epi32(16 * q));
        _mm512_storeu_ps(cvalues + m, _mm512_maskz_compress_ps(lanes[q], v[q]));
        _mm512_storeu_si512(cindex + m, _mm512_maskz_compress_epi32(lanes[q], index));
        m += _mm_popcnt_u32(lanes[q]);
    }
    return m;
}

SA_AVX512_INLINE ptrdiff_t sa_avx512_reaching_f32_body(const float *row, ptrdiff_t n, int largest, float bar,
                                                       float *cvalues, uint32_t *cindex, ptrdiff_t cap)
{
    const __m512 vbar = _mm512_set1_ps(bar);
    __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    ptrdiff_t m = 0, b = 0;
    for (; b + 32 <= n; b += 32) {
        m = sa_avx512_reaching_f32_step(row + b, 32, 1, largest, vbar, first, cvalues, cindex, m);
        if (m > cap)
            return -1;
        first = _mm512_add_epi32(first, _mm512_set1_epi32(32));
    }
    if (b < n)
        m = sa_avx512_reaching_f32_step(row + b, n - b, 0, largest, vbar, first, cvalues, cindex, m);
    return m > cap ? -1 : m;
}

/* sa_avx512_reaching_f32_step for float64: four vectors of eight. */
SA_AVX512_INLINE ptrdiff_t sa_avx512_reaching_f64_step(const double *row, ptrdiff_t left, int full, int largest,
                                                       __m512d vbar, __m512i first, double *cvalues,
                                                       uint64_t *cindex, ptrdiff_t m)
{
    __m512d v[4];
    __mmask8 lanes[4];
    for (int q = 0; q < 4; q++) {
        const __mmask8 inside = full ? (__mmask8)0xFF : sa_avx512_lanes8(left - 8 * q);
        v[q] = full ? _mm512_loadu_pd(row + 8 * q) : _mm512_maskz_loadu_pd(inside, row + 8 * q);
        lanes[q] = sa_avx512_reach_pd(v[q], vbar, largest) & inside;
    }
    if (!(lanes[0] | lanes[1] | lanes[2] | lanes[3]))
        return m;
    for (int q = 0; q < 4; q++) {
        const __m512i index = _mm512_add_epi64(first, _mm512_set1_epi64(8 * q));
        _mm512_storeu_pd(cvalues + m, _mm512_maskz_compress_pd(lanes[q], v[q]));
        _mm512_storeu_si512(cindex + m, _mm512_maskz_compress_epi64(lanes[q], index));
        m += _mm_popcnt_u32(lanes[q]);
    }
    return m;
}

SA_AVX512_INLINE ptrdiff_t sa_avx512_reaching_f64_body(const double *row, ptrdiff_t n, int largest, double bar,
                                                       double *cvalues, uint64_t *cindex, ptrdiff_t cap)
{
    const __m512d vbar = _mm512_set1_pd(bar);
    __m512i first = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    ptrdiff_t m = 0, b = 0;
    for (; b + 32 <= n; b += 32) {
        m = sa_avx512_reaching_f64_step(row + b, 32, 1, largest, vbar, first, cvalues, cindex, m);
        if (m > cap)
            return -1;
        first = _mm512_add_epi64(first, _mm512_set1_epi64(32));
    }
    if (b < n)
        m = sa_avx512_reaching_f64_step(row + b, n - b, 0, largest, vbar, first, cvalues, cindex, m);
    return m > cap ? -1 : m;
}

SA_TOPK_REACHING_ENTRY(SA_AVX512, sa_avx512_topk_reaching_f32, sa_avx512_reaching_f32_body, float, uint32_t)
SA_TOPK_REACHING_ENTRY(SA_AVX512, sa_avx512_topk_reaching_f64, sa_avx512_reaching_f64_body, double, uint64_t)

SA_AVX512 static void sa_avx512_topk_passes(const uint64_t *packed, ptrdiff_t n, ptrdiff_t k, uint64_t *top)
{
    for (ptrdiff_t j = 0; j < k; j++)
        top[j] = sa_avx512_topk_next_below(packed, n, j ? top[j - 1] : 0, j == 0);
}

/* The float32 lanes' last step (sa_topk_lanes_row_f32) in registers: the k
 * largest of m <= 24 distinct packs, each the maximum of the three
 * registers' lanes, then cleared to 0 (below every pack). Written so because
 * GCC compiled the scalar selection with a branch in topk's kernel, taken at
 * random on fresh rows (a cmov in topk_gating's). */
SA_AVX512 static void sa_avx512_select_top_packs(const uint64_t *cand, int m, int k, uint64_t *top)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i c[3];
    for (int r = 0; r < 3; r++) {
        const int left = m - 8 * r;
        const __mmask8 inside = sa_avx512_lanes8(left);
        c[r] = _mm512_maskz_loadu_epi64(inside, cand + 8 * r);
    }
    for (int j = 0; j < k; j++) {
        const uint64_t best = _mm512_reduce_max_epu64(_mm512_max_epu64(c[0], _mm512_max_epu64(c[1], c[2])));
        const __m512i bv = _mm512_set1_epi64((long long)best);
        for (int r = 0; r < 3; r++)
            c[r] = _mm512_mask_mov_epi64(c[r], _mm512_cmpeq_epu64_mask(c[r], bv), zero);
        top[j] = best;
    }
}

/* Rows of up to SA_TOPK_NETWORK_N entries with AVX-512: the whole row is
 * sorted, largest key first, by a bitonic network on 64-bit keys held in
 * 1, 2, 4 or 8 registers of 8 lanes (rows padded with key 0 to 8, 16, 32 or
 * 64), and the first k are read off: about 0.1 us for 64 entries whatever k
 * is, where placing every entry by counting takes n^2 compares. float32
 * entries go as their packs (rank key above ~index), all distinct, so the
 * network alone gives the result order. float64 rank keys fill the 64 bits:
 * each carries its index in a second register, and entries whose keys tie
 * come out of the network in any order, so each run of equal keys then gets
 * its indices in increasing order (a bit set of them, read lowest first). */
#define SA_TOPK_NETWORK_N 64
/* The least k that takes the network, by row length (up to 32 entries,
 * and up to 64) and dtype: below, the k = 1 pass, the lane bound (float64)
 * and the float32 lanes and k passes are as fast or faster (Intel Xeon,
 * 65536 rows: float32 rows of 32, k = 4, 3.3 ms by the passes against 4.1;
 * of 48, k = 8, 7.1 against 7.7; of 64, k = 8, 7.9 against 7.3). Inside
 * topk_gating the float32 lanes and passes are faster still (rows of 8,
 * k = 2: the gate 2.35 ms against 3.76 with the network). */
#define SA_TOPK_NETWORK_SHORT_N 32
#define SA_TOPK_NETWORK_SHORT_MIN_K_F32 5
#define SA_TOPK_NETWORK_SHORT_MIN_K_F64 2
#define SA_TOPK_NETWORK_MIN_K_F32 8
#define SA_TOPK_NETWORK_MIN_K_F64 4

/* Lane l of the result holds lane l ^ dist of v (dist 1, 2 or 4). */
SA_AVX512_INLINE __m512i sa_avx512_lane_partner(__m512i v, int dist)
{
    if (dist == 1)
        return _mm512_permutex_epi64(v, 0xB1);
    if (dist == 2)
        return _mm512_permutex_epi64(v, 0x4E);
    return _mm512_shuffle_i64x2(v, v, 0x4E);
}

/* One step of the network inside register r: entry e = 8 r + l meets
 * e ^ dist; the pair is in decreasing order when e & size is 0 (the
 * blocks of size that merge into a larger block in decreasing order),
 * else increasing. The lanes that keep the larger of the two are a
 * constant once the calls are unrolled. With an index, a lane takes its
 * partner's key and index when that is larger (for the lanes keeping the
 * larger) or smaller (the others): two equal keys both stay, where one
 * compare for both (taking a partner that is not larger) would copy one
 * index into both lanes. */
SA_AVX512_INLINE void sa_avx512_bitonic_lanes(__m512i *key, __m512i *index, int r, int size,
                                              int dist, int with_index)
{
    /* lanes l with l & dist == 0, and those with e & size == 0 */
    const unsigned lower = dist == 1 ? 0x55 : dist == 2 ? 0x33 : 0x0F;
    const unsigned decreasing = size >= 8 ? (((8 * r) & size) ? 0x00 : 0xFF) : (size == 2 ? 0x33 : 0x0F);
    const unsigned keep_larger = ~(lower ^ decreasing) & 0xFF;
    const __m512i partner = sa_avx512_lane_partner(key[r], dist);
    if (with_index) {
        const __mmask8 take = _mm512_mask_cmpgt_epu64_mask((__mmask8)keep_larger, partner, key[r])
                              | _mm512_mask_cmpgt_epu64_mask((__mmask8)~keep_larger, key[r], partner);
        index[r] = _mm512_mask_blend_epi64(take, index[r], sa_avx512_lane_partner(index[r], dist));
        key[r] = _mm512_mask_blend_epi64(take, key[r], partner);
    } else {
        key[r] = _mm512_mask_blend_epi64((__mmask8)keep_larger, _mm512_min_epu64(key[r], partner),
                                         _mm512_max_epu64(key[r], partner));
    }
}

/* One step between registers r and q > r (dist >= 8): r keeps the larger
 * of each lane pair when 8 r & size is 0, else the smaller. */
SA_AVX512_INLINE void sa_avx512_bitonic_registers(__m512i *key, __m512i *index, int r, int q,
                                                  int size, int with_index)
{
    const int r_larger = ((8 * r) & size) == 0;
    const __m512i a = key[r], b = key[q];
    if (with_index) {
        const __mmask8 gt = _mm512_cmpgt_epu64_mask(b, a);
        const __mmask8 swap = r_larger ? gt : (__mmask8)~gt;
        const __m512i ia = index[r], ib = index[q];
        key[r] = _mm512_mask_blend_epi64(swap, a, b);
        key[q] = _mm512_mask_blend_epi64(swap, b, a);
        index[r] = _mm512_mask_blend_epi64(swap, ia, ib);
        index[q] = _mm512_mask_blend_epi64(swap, ib, ia);
    } else {
        const __m512i larger = _mm512_max_epu64(a, b), smaller = _mm512_min_epu64(a, b);
        key[r] = r_larger ? larger : smaller;
        key[q] = r_larger ? smaller : larger;
    }
}

/* Registers 0..7 as the rows of an 8x8 matrix, transposed. */
SA_AVX512_INLINE void sa_avx512_transpose8(__m512i *v)
{
    const __m512i even = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
    const __m512i odd = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
    __m512i t[8], u[8];
    for (int r = 0; r < 8; r += 2) {
        t[r] = _mm512_unpacklo_epi64(v[r], v[r + 1]);
        t[r + 1] = _mm512_unpackhi_epi64(v[r], v[r + 1]);
    }
    for (int h = 0; h < 8; h += 4) {
        u[h] = _mm512_permutex2var_epi64(t[h], even, t[h + 2]);
        u[h + 1] = _mm512_permutex2var_epi64(t[h + 1], even, t[h + 3]);
        u[h + 2] = _mm512_permutex2var_epi64(t[h], odd, t[h + 2]);
        u[h + 3] = _mm512_permutex2var_epi64(t[h + 1], odd, t[h + 3]);
    }
    for (int c = 0; c < 4; c++) {
        v[c] = _mm512_shuffle_i64x2(u[c], u[c + 4], 0x44);
        v[c + 4] = _mm512_shuffle_i64x2(u[c], u[c + 4], 0xEE);
    }
}

/* With 8 registers the network's first six steps (sorting each register's
 * 8 lanes) take 144 vector operations; instead each lane is sorted across
 * the registers by Batcher's 19 comparators on whole registers (38 minima
 * and maxima, no permutation), the 8x8 matrix is transposed, and the odd
 * registers are reversed into the increasing order those steps leave. */
SA_AVX512_INLINE void sa_avx512_sort_registers8(__m512i *key, __m512i *index, int with_index)
{
    static const int8_t comparators[19][2] = {
        {0, 1}, {2, 3}, {4, 5}, {6, 7}, {0, 2}, {1, 3}, {4, 6}, {5, 7}, {1, 2}, {5, 6},
        {0, 4}, {1, 5}, {2, 6}, {3, 7}, {2, 4}, {3, 5}, {1, 2}, {3, 4}, {5, 6}};
    const __m512i reverse = _mm512_set_epi64(0, 1, 2, 3, 4, 5, 6, 7);
#pragma GCC unroll 19
    for (int c = 0; c < 19; c++)
        sa_avx512_bitonic_registers(key, index, comparators[c][0], comparators[c][1], 1, with_index);
    sa_avx512_transpose8(key);
    if (with_index)
        sa_avx512_transpose8(index);
    for (int r = 1; r < 8; r += 2) {
        key[r] = _mm512_permutexvar_epi64(reverse, key[r]);
        if (with_index)
            index[r] = _mm512_permutexvar_epi64(reverse, index[r]);
    }
}

/* The network's merges of blocks of first / 2 keys (sorted in alternating
 * directions) up to one block of 8 regs, largest first; all literals. */
SA_AVX512_INLINE void sa_avx512_bitonic_merges(__m512i *key, __m512i *index, int regs, int first,
                                               int with_index)
{
#pragma GCC unroll 8
    for (int size = first; size <= 8 * regs; size *= 2) {
#pragma GCC unroll 8
        for (int dist = size / 2; dist >= 8; dist /= 2) {
#pragma GCC unroll 8
            for (int r = 0; r < regs; r++) {
                /* & 7: GCC's array bounds check reads the unrolled copies
                 * past the loop's end, where q would reach 8 */
                const int q = (r ^ (dist / 8)) & 7;
                if (q > r)
                    sa_avx512_bitonic_registers(key, index, r, q, size, with_index);
            }
        }
#pragma GCC unroll 8
        for (int dist = size < 8 ? size / 2 : 4; dist >= 1; dist /= 2) {
#pragma GCC unroll 8
            for (int r = 0; r < regs; r++)
                sa_avx512_bitonic_lanes(key, index, r, size, dist, with_index);
        }
    }
}

/* Sorts the 8 regs keys (regs 1, 2, 4 or 8, a literal), largest first. */
SA_AVX512_INLINE void sa_avx512_bitonic_sort(__m512i *key, __m512i *index, int regs, int with_index)
{
    if (regs == 8) {
        sa_avx512_sort_registers8(key, index, with_index);
        sa_avx512_bitonic_merges(key, index, 8, 16, with_index);
    } else {
        sa_avx512_bitonic_merges(key, index, regs, 2, with_index);
    }
}

/* best[0..k) (k <= 8 regs) from the sorted keys and their indices: each
 * register's pairs interleaved into two registers of four (key, index). */
SA_AVX512_INLINE void sa_avx512_store_ranked(const __m512i *key, const __m512i *index, int regs,
                                             ptrdiff_t k, sa_ranked *best)
{
    const __m512i first_four = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
    const __m512i last_four = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    for (int r = 0; r < regs && 8 * r < k; r++) {
        const ptrdiff_t left = k - 8 * r;
        const __mmask8 first = sa_avx512_lanes8(2 * left), last = sa_avx512_lanes8(2 * (left - 4));
        _mm512_mask_storeu_epi64(best + 8 * r, first, _mm512_permutex2var_epi64(key[r], first_four, index[r]));
        _mm512_mask_storeu_epi64(best + 8 * r + 4, last, _mm512_permutex2var_epi64(key[r], last_four, index[r]));
    }
}

/* The 8 largest of 8 registers of packs (all distinct) into key[0], largest
 * first, for k <= 8: each register sorted (even ones decreasing, odd ones
 * increasing), then a tree of seven merges, each keeping the larger of the
 * two registers' lane pairs (the 8 largest of both, a bitonic sequence) and
 * sorting them in the direction the next merge needs. About 160 vector
 * operations where sorting all 64 takes about 400 (AMD Zen 4, float32 rows
 * of 64, k = 8: 0.061-0.065 us a row against 0.125; of 40, 0.074 against
 * 0.127). float64 keys may tie, and their tie order needs the key after
 * the k-th, which this tree drops: sa_avx512_first8_f64 runs it on packs
 * of truncated keys and checks that order. */
SA_AVX512_INLINE void sa_avx512_first8_packs8(__m512i *key)
{
    sa_avx512_sort_registers8(key, NULL, 0);
#pragma GCC unroll 3
    for (int pairs = 4; pairs >= 1; pairs /= 2) {
#pragma GCC unroll 4
        for (int r = 0; r < pairs; r++) {
            key[r] = _mm512_max_epu64(key[2 * r], key[2 * r + 1]);
            for (int dist = 4; dist >= 1; dist /= 2)
                sa_avx512_bitonic_lanes(key, NULL, r, 8, dist, 0);
        }
    }
}

/* best[0..k) from the first regs registers of sorted packs (regs a literal). */
SA_AVX512_INLINE void sa_avx512_store_packs(__m512i *key, int regs, ptrdiff_t k, sa_ranked *best)
{
    __m512i index[8];
    for (int r = 0; r < regs; r++) {
        index[r] = _mm512_andnot_si512(key[r], _mm512_set1_epi64(0xFFFFFFFF));
        key[r] = _mm512_srli_epi64(key[r], 32);
    }
    sa_avx512_store_ranked(key, index, regs, k, best);
}

/* float32: the packs of row[0..n) (n <= 8 regs) sorted (or, for k <= 8 of
 * 8 registers, their 8 largest); the first k into best. */
SA_AVX512_INLINE void sa_avx512_topk_network_f32_regs(const float *row, ptrdiff_t n, ptrdiff_t k,
                                                      int largest, int regs, sa_ranked *best)
{
    uint64_t packed[SA_TOPK_NETWORK_N];
    __m512i key[8];
    sa_topk_pack_f32(row, n, largest, packed);
    for (ptrdiff_t i = n; i < 8 * regs; i++)
        packed[i] = 0;          /* below every pack: its low half, ~index, is never 0 */
    for (int r = 0; r < regs; r++)
        key[r] = _mm512_loadu_si512(packed + 8 * r);
    if (regs == 8 && k <= 8) {
        sa_avx512_first8_packs8(key);
        sa_avx512_store_packs(key, 1, k, best);
    } else {
        sa_avx512_bitonic_sort(key, NULL, regs, 0);
        sa_avx512_store_packs(key, regs, k, best);
    }
}

/* Whether two neighbours among the sorted keys' first k + 1 tie. */
SA_AVX512_INLINE int sa_avx512_ties_within(const __m512i *key, int regs, ptrdiff_t k)
{
    __mmask8 ties = 0;
    for (int r = 0; r < regs && 8 * r < k; r++) {
        const ptrdiff_t pairs = r + 1 < regs ? k - 8 * r : k - 8 * r < 7 ? k - 8 * r : 7;
        const __mmask8 inside = sa_avx512_lanes8(pairs);
        const __m512i next = _mm512_alignr_epi64(r + 1 < regs ? key[r + 1] : key[r], key[r], 1);
        ties |= _mm512_mask_cmpeq_epu64_mask(inside, key[r], next);
    }
    return ties != 0;
}

/* Puts each run of equal keys that starts within keys[0..k) in index
 * order: the run's indices (all below 64) as a bit set, read lowest first. */
SA_INLINE void sa_topk_order_ties(const uint64_t *keys, int64_t *order, ptrdiff_t m, ptrdiff_t k)
{
    for (ptrdiff_t s = 0; s < k;) {
        ptrdiff_t e = s + 1;
        uint64_t run = (uint64_t)1 << order[s];
        for (; e < m && keys[e] == keys[s]; e++)
            run |= (uint64_t)1 << order[e];
        for (ptrdiff_t j = s; j < e; j++, run &= run - 1)
            order[j] = __builtin_ctzll(run);
        s = e;
    }
}

/* The row indices 8 r .. 8 r + 7 of register r's lanes. */
SA_AVX512_INLINE __m512i sa_avx512_register_indices(int r)
{
    return _mm512_add_epi64(_mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi64(8 * r));
}

/* float64 rows of 33 to 64 entries, k <= 8: the first k of keys[0..64)
 * (padded with 0) by the tree of sa_avx512_first8_packs8 over packs of
 * each key's top 58 bits above 63 - index, all distinct. Truncating keeps
 * their order or makes them equal, so where the truncated keys of the first
 * k + 1 packs all differ, so do their keys, in the same order, and every
 * other key is below the k-th: the result is exact. Returns 0, having
 * written nothing, where two of those tie (equal keys, or keys equal in
 * their top 58 bits), for the whole sort and its tie rule. */
SA_AVX512_INLINE int sa_avx512_first8_f64(const uint64_t *keys, ptrdiff_t k, sa_ranked *best)
{
    const __m512i low = _mm512_set1_epi64(63);
    __m512i pack[8], all[8];
    for (int r = 0; r < 8; r++) {
        all[r] = _mm512_or_si512(_mm512_andnot_si512(low, _mm512_loadu_si512(keys + 8 * r)),
                                 _mm512_sub_epi64(low, sa_avx512_register_indices(r)));
        pack[r] = all[r];
    }
    sa_avx512_first8_packs8(pack);
    uint64_t top[9];
    _mm512_storeu_si512(top, pack[0]);
    if (k == 8) {
        /* the ninth: the largest pack below the eighth */
        const __m512i eighth = _mm512_set1_epi64((long long)top[7]);
        __m512i below = _mm512_setzero_si512();
        for (int r = 0; r < 8; r++)
            below = _mm512_max_epu64(below, _mm512_maskz_mov_epi64(_mm512_cmplt_epu64_mask(all[r], eighth), all[r]));
        top[8] = _mm512_reduce_max_epu64(below);
    }
    for (ptrdiff_t j = 0; j < k; j++)
        if (top[j] >> 6 == top[j + 1] >> 6)
            return 0;
    for (ptrdiff_t j = 0; j < k; j++) {
        const int64_t index = 63 - (int64_t)(top[j] & 63);
        best[j].key = keys[index];
        best[j].index = index;
    }
    return 1;
}

/* float64: the rank keys of row[0..n) (n <= 8 regs) sorted with their
 * indices; equal keys put in index order; the first k into best (for
 * k <= 8 of 8 registers, by the first-8 tree where it is exact). */
SA_AVX512_INLINE void sa_avx512_topk_network_f64_regs(const double *row, ptrdiff_t n, ptrdiff_t k,
                                                      int largest, int regs, sa_ranked *best)
{
    uint64_t keys[SA_TOPK_NETWORK_N];
    int64_t order[SA_TOPK_NETWORK_N];
    __m512i key[8], index[8];
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++)
        keys[i] = sa_rank_f64(row[i], largest);
    for (ptrdiff_t i = n; i < 8 * regs; i++)
        keys[i] = 0;            /* ties only the smallest key, and its index is larger */
    if (regs == 8 && k <= 8 && sa_avx512_first8_f64(keys, k, best))
        return;
    for (int r = 0; r < regs; r++) {
        key[r] = _mm512_loadu_si512(keys + 8 * r);
        index[r] = sa_avx512_register_indices(r);
    }
    sa_avx512_bitonic_sort(key, index, regs, 1);
    if (sa_avx512_ties_within(key, regs, k)) {
        for (int r = 0; r < regs; r++) {
            _mm512_storeu_si512(keys + 8 * r, key[r]);
            _mm512_storeu_si512(order + 8 * r, index[r]);
        }
        sa_topk_order_ties(keys, order, 8 * regs, k);
        for (int r = 0; r < regs; r++)
            index[r] = _mm512_loadu_si512(order + 8 * r);
    }
    sa_avx512_store_ranked(key, index, regs, k, best);
}

/* The regs literal per row length, and largest a literal in each copy. */
#define SA_TOPK_NETWORK_BY_LENGTH(fn, row, n, k, largest, best)                \
    do {                                                                       \
        if (n <= 8)                                                            \
            largest ? fn(row, n, k, 1, 1, best) : fn(row, n, k, 0, 1, best);   \
        else if (n <= 16)                                                      \
            largest ? fn(row, n, k, 1, 2, best) : fn(row, n, k, 0, 2, best);   \
        else if (n <= 32)                                                      \
            largest ? fn(row, n, k, 1, 4, best) : fn(row, n, k, 0, 4, best);   \
        else                                                                   \
            largest ? fn(row, n, k, 1, 8, best) : fn(row, n, k, 0, 8, best);   \
    } while (0)

SA_AVX512 static void
sa_avx512_topk_network_f32(const float *row, ptrdiff_t n, ptrdiff_t k, int largest, sa_ranked *best)
{
    SA_TOPK_NETWORK_BY_LENGTH(sa_avx512_topk_network_f32_regs, row, n, k, largest, best);
}

SA_AVX512 static void
sa_avx512_topk_network_f64(const double *row, ptrdiff_t n, ptrdiff_t k, int largest, sa_ranked *best)
{
    SA_TOPK_NETWORK_BY_LENGTH(sa_avx512_topk_network_f64_regs, row, n, k, largest, best);
}

/* Insertion sort of packs, largest first (a pack's order is the
 * result's, ties included). */
SA_INLINE void sa_topk_insertion_sort_packs(uint64_t *p, ptrdiff_t m)
{
    for (ptrdiff_t i = 1; i < m; i++) {
        const uint64_t e = p[i];
        ptrdiff_t j = i;
        for (; j > 0 && p[j - 1] < e; j--)
            p[j] = p[j - 1];
        p[j] = e;
    }
}

/* Packs src[0..m) into dst (which may be src) in result order, where each
 * is fewer than W = 8 half places from its place in that order (half 1 or
 * 2, a literal; the bucket sort's buckets of at most W entries, larger
 * ones sorted): a window of 2 W packs slides over them, W at a time. Its
 * W largest are the next W of the result (every entry of those places is
 * fewer than W further on, so in the window); the W others stay for the
 * next step. Each step sorts the W new packs by the network, reverses
 * them, and merges the window (a bitonic merge): no branch on the data,
 * where the insertion pass it replaces mispredicted about once an entry.
 * Each step reads W places past those it writes, so dst may be src. Zeros
 * fill the last window: below every pack, whose low half, ~index, is never
 * 0. */
SA_AVX512_INLINE void sa_avx512_window_sort_regs(const uint64_t *src, ptrdiff_t m, uint64_t *dst, int half)
{
    const __m512i reverse = _mm512_set_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    const ptrdiff_t step = 8 * half;
    __m512i w[4];
    for (int r = 0; r < half; r++)
        w[r] = _mm512_maskz_loadu_epi64(sa_avx512_lanes8(m - 8 * r), src + 8 * r);
    sa_avx512_bitonic_sort(w, NULL, half, 0);
    ptrdiff_t done = 0;
    for (ptrdiff_t s = step; s < m; s += step) {
        __m512i fresh[2];
        for (int r = 0; r < half; r++)
            fresh[r] = _mm512_maskz_loadu_epi64(sa_avx512_lanes8(m - s - 8 * r), src + s + 8 * r);
        sa_avx512_bitonic_sort(fresh, NULL, half, 0);
        for (int r = 0; r < half; r++)
            w[half + r] = _mm512_permutexvar_epi64(reverse, fresh[half - 1 - r]);
        sa_avx512_bitonic_merges(w, NULL, 2 * half, 16 * half, 0);
        for (int r = 0; r < half; r++) {
            _mm512_storeu_si512(dst + done + 8 * r, w[r]);
            w[r] = w[half + r];
        }
        done += step;
    }
    for (int r = 0; r < half; r++)
        _mm512_mask_storeu_epi64(dst + done + 8 * r, sa_avx512_lanes8(m - done - 8 * r), w[r]);
}

/* sa_avx512_window_sort_regs with the narrower window where buckets of at
 * most `most` entries allow it (a step sorts and merges half the packs a
 * wide one does, for 8 entries where the wide one places 16). */
_Static_assert(SA_TOPK_INSERTION_N <= 16, "the window sort needs buckets of at most 16 entries");
SA_AVX512 static void sa_avx512_window_sort_packs(const uint64_t *src, ptrdiff_t m, uint64_t *dst, uint32_t most)
{
    if (most <= 8)
        sa_avx512_window_sort_regs(src, m, dst, 1);
    else
        sa_avx512_window_sort_regs(src, m, dst, 2);
}

/* Whether the bucket sort's last SA_TOPK_ID_BLOCK packs of p[0..m), its
 * densest buckets, have neighbours out of order more than once in 8 pairs.
 * Below that (keys of few values, as from quantized or integer data), the
 * insertion pass does little and predictably, and beats the window sort
 * (float32, 4096 entries, k = 1000, keys rounded to integers: 13 us a row
 * by insertion, 15.5 by the window). */
SA_INLINE int sa_topk_disordered_packs(const uint64_t *p, ptrdiff_t m)
{
    const ptrdiff_t from = m > SA_TOPK_ID_BLOCK ? m - SA_TOPK_ID_BLOCK : 0;
    ptrdiff_t out_of_order = 0;
#pragma omp simd reduction(+ : out_of_order)
    for (ptrdiff_t i = from; i < m - 1; i++)
        out_of_order += p[i] < p[i + 1];
    return 8 * out_of_order > m - 1 - from;
}

/* The buckets' counts bucket[0..D) turned into their starts up to the one
 * that reaches k (k <= the counts' sum); the later ones all start at its
 * end, reach, which it returns (their packs overwrite one another there,
 * never read: the k first are before reach). most: the largest count up to
 * reach. Sixteen buckets a step: an inclusive sum by four shifted adds, the
 * running total carried in every lane. */
SA_AVX512_INLINE ptrdiff_t sa_avx512_bucket_starts(uint32_t *bucket, ptrdiff_t D, ptrdiff_t k, uint32_t *most)
{
    const __m512i zero = _mm512_setzero_si512(), top = _mm512_set1_epi32(15);
    const __m512i wanted = _mm512_set1_epi32((int)k);
    __m512i total = zero, largest = zero;
    ptrdiff_t d = 0;
    for (;; d += 16) {
        const __mmask16 inside = sa_avx512_lanes16(D - d);
        const __m512i count = _mm512_maskz_loadu_epi32(inside, bucket + d);
        __m512i sum = _mm512_add_epi32(count, _mm512_alignr_epi32(count, zero, 15));
        sum = _mm512_add_epi32(sum, _mm512_alignr_epi32(sum, zero, 14));
        sum = _mm512_add_epi32(sum, _mm512_alignr_epi32(sum, zero, 12));
        sum = _mm512_add_epi32(sum, _mm512_alignr_epi32(sum, zero, 8));
        sum = _mm512_add_epi32(sum, total);
        const __mmask16 reached = _mm512_mask_cmpge_epu32_mask(inside, sum, wanted);
        /* the lanes up to the first that reaches k, or all */
        const __mmask16 upto = reached ? (__mmask16)((reached ^ (reached - 1)) & 0xFFFF) : inside;
        _mm512_mask_storeu_epi32(bucket + d, upto, _mm512_sub_epi32(sum, count));
        largest = _mm512_mask_max_epu32(largest, upto, largest, count);
        if (reached) {
            const int at = __builtin_ctz(reached);
            const uint32_t reach = (uint32_t)_mm512_cvtsi512_si32(
                _mm512_permutexvar_epi32(_mm512_set1_epi32(at), sum));
            *most = _mm512_reduce_max_epu32(largest);
            const __m512i fill = _mm512_set1_epi32((int)reach);
            _mm512_mask_storeu_epi32(bucket + d, inside & ~upto, fill);
            for (d += 16; d < D; d += 16)
                _mm512_mask_storeu_epi32(bucket + d, sa_avx512_lanes16(D - d), fill);
            return reach;
        }
        total = _mm512_permutexvar_epi32(top, sum);
    }
}

/* Puts the k first of the packs p[0..m) (k <= m; equal keys in index
 * order) in result order at p[0..k): the bucket sort of
 * sa_topk_sort_first on packs, 8 bytes an entry where pairs move 16. D =
 * min(m, SA_TOPK_SORT_BUCKETS, range) equal-width buckets of the keys'
 * range (range = hi - lo + 1), bucket 0 the largest: (key - lo) scale >>
 * 32 with scale = D 2^32 / range rounded down (at most 2^32) is below D,
 * monotone in the key, and one bucket a key where D = range; a 32-bit
 * multiply a pack in a vector loop, computed once into ids (m entries).
 * The packs are scattered to tmp (m entries) in order; the buckets
 * reaching into the first k of more than SA_TOPK_INSERTION_N packs are
 * sorted the same way (with p as their scratch, up to k: past it they hold
 * stale packs), then the window sort (or, on nearly ordered buckets, the
 * insertion pass) writes them back to p in order. Each level narrows
 * the key range more than SA_TOPK_INSERTION_N times: the depth stays below
 * 8 (32-bit keys). */
SA_AVX512 static void sa_avx512_sort_packs(uint64_t *p, ptrdiff_t m, ptrdiff_t k, uint64_t *tmp,
                                           uint16_t *ids)
{
    uint64_t lo = UINT64_MAX, hi = 0;
#pragma omp simd reduction(min : lo) reduction(max : hi)
    for (ptrdiff_t i = 0; i < m; i++) {
        const uint64_t key = p[i] >> 32;
        lo = key < lo ? key : lo;
        hi = key > hi ? key : hi;
    }
    if (lo == hi)
        return;                 /* one key: index order is the result's */
    const uint64_t range = hi - lo + 1;
    ptrdiff_t D = m < SA_TOPK_SORT_BUCKETS ? m : SA_TOPK_SORT_BUCKETS;
    D = (uint64_t)D < range ? D : (ptrdiff_t)range;
    /* scale is at most 2^32 (D <= range): 2^32 as 2^32 - 1 and the key
     * added once more, so that one 32-bit multiply serves */
    const uint64_t scale = ((uint64_t)D << 32) / range;
    const uint32_t scale_low = scale >> 32 ? UINT32_MAX : (uint32_t)scale;
    const uint32_t once_more = scale >> 32 ? UINT32_MAX : 0;
    const uint16_t last = (uint16_t)(D - 1);
#pragma omp simd
    for (ptrdiff_t i = 0; i < m; i++) {
        const uint32_t from_lo = (uint32_t)((p[i] >> 32) - lo);
        ids[i] = (uint16_t)(last - (uint16_t)(((uint64_t)from_lo * scale_low + (from_lo & once_more)) >> 32));
    }
    uint32_t bucket[SA_TOPK_SORT_BUCKETS];
    memset(bucket, 0, (size_t)D * sizeof bucket[0]);
    for (ptrdiff_t i = 0; i < m; i++)
        bucket[ids[i]]++;
    uint32_t most;
    const ptrdiff_t reach = sa_avx512_bucket_starts(bucket, D, k, &most);
    for (ptrdiff_t i = 0; i < m; i++)
        tmp[bucket[ids[i]]++] = p[i];
    ptrdiff_t sort_to = reach;  /* bucket[d] is now bucket d's end */
    for (ptrdiff_t e = 0, start = 0; most > SA_TOPK_INSERTION_N && start < k; e++) {
        const ptrdiff_t end = bucket[e];
        const int recurse = end - start > SA_TOPK_INSERTION_N;
        if (recurse)
            sa_avx512_sort_packs(tmp + start, end - start, (end < k ? end : k) - start, p + start, ids);
        sort_to = recurse ? k : reach;      /* the last bucket decides */
        start = end;
    }
    if (sa_topk_disordered_packs(tmp, sort_to)) {
        sa_avx512_window_sort_packs(tmp, sort_to, p, most);
    } else {
        memcpy(p, tmp, (size_t)sort_to * sizeof(uint64_t));
        sa_topk_insertion_sort_packs(p, sort_to);
    }
}

/* The k first of sorted packs as pairs into best. */
SA_AVX512_INLINE void sa_avx512_pairs_from_packs(const uint64_t *packs, ptrdiff_t k, sa_ranked *best)
{
    const __m512i low = _mm512_set1_epi64(0xFFFFFFFF);
    for (ptrdiff_t j = 0; j < k; j += 8) {
        const __m512i pack = _mm512_maskz_loadu_epi64(sa_avx512_lanes8(k - j), packs + j);
        const __m512i key = _mm512_srli_epi64(pack, 32), index = _mm512_andnot_si512(pack, low);
        sa_avx512_store_ranked(&key, &index, 1, k - j, best + j);
    }
}

/* sa_topk_sort_first for float32 pairs a[0..m) with indices below 2^32:
 * their packs (key << 32 | ~index) sorted by sa_avx512_sort_packs, the k
 * first back to a. tmp holds m pairs: the packs and the scatter's buffer;
 * a holds the bucket numbers meanwhile. */
SA_AVX512 static void sa_avx512_sort_first_packed(sa_ranked *a, ptrdiff_t m, ptrdiff_t k, sa_ranked *tmp)
{
    uint64_t *packs = (uint64_t *)tmp;
#pragma omp simd
    for (ptrdiff_t i = 0; i < m; i++)
        packs[i] = sa_topk_pack(a[i].key, (uint64_t)a[i].index);
    sa_avx512_sort_packs(packs, m, k, packs + m, (uint16_t *)a);
    sa_avx512_pairs_from_packs(packs, k, a);
}

/* The k first (k <= m), sorted, of a float32 row's m candidates (values
 * and indices below 2^32, in index order) into best, which holds m pairs
 * (the scatter's buffer and the bucket numbers meanwhile). Their packs are
 * made straight from the candidates into packs (m entries, apart from
 * best), so no pair is written but the k of the result. */
SA_AVX512 static void sa_avx512_sort_candidates_f32(const float *cvalues, const uint32_t *cindex,
                                                   ptrdiff_t m, ptrdiff_t k, int largest,
                                                   uint64_t *packs, sa_ranked *best)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < m; i++)
        packs[i] = sa_topk_pack(sa_rank_f32(cvalues[i], largest), cindex[i]);
    uint64_t *spare = (uint64_t *)best;
    sa_avx512_sort_packs(packs, m, k, spare, (uint16_t *)(spare + m));
    sa_avx512_pairs_from_packs(packs, k, best);
}

/* The rank keys of eight float64 values (sa_rank_f64). */
SA_AVX512_INLINE __m512i sa_avx512_rank_pd(__m512d v, int largest)
{
    const __m512i ones = _mm512_set1_epi64(-1);
    const __m512i bits = _mm512_castpd_si512(_mm512_add_pd(v, _mm512_setzero_pd()));
    const __mmask8 negative = _mm512_cmplt_epi64_mask(bits, _mm512_setzero_si512());
    __m512i key = _mm512_or_si512(bits, _mm512_set1_epi64((long long)0x8000000000000000ull));
    key = _mm512_mask_xor_epi64(key, negative, bits, ones);
    key = _mm512_mask_mov_epi64(key, _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q), ones);
    return largest ? key : _mm512_xor_si512(key, ones);
}

/* The whole rank key of the float64 entry a pack names. */
SA_INLINE uint64_t sa_topk_whole_key(const double *row, uint64_t pack, int largest)
{
    return sa_rank_f64(row[sa_topk_unpack(pack).index], largest);
}

/* The first `keep` of r float64 packs whose packed keys are all equal
 * (group, in index order), in result order by their whole keys, into dst
 * (which may be group) with the same packed key. Their whole keys lie
 * within 2^32 of one another (the packed key drops at most 32 bits), so
 * packs of key - least order them exactly. work holds 2 r packs and r
 * bucket numbers. */
SA_AVX512 static void sa_avx512_sort_near_ties(const double *row, const uint64_t *group, ptrdiff_t r,
                                               ptrdiff_t keep, int largest, uint64_t *dst, uint64_t *work)
{
    if (r <= SA_TOPK_INSERTION_N) {     /* pairs of (whole key, pack), stable */
        sa_ranked e[SA_TOPK_INSERTION_N];
        for (ptrdiff_t j = 0; j < r; j++) {
            e[j].key = sa_topk_whole_key(row, group[j], largest);
            e[j].index = (int64_t)group[j];
        }
        sa_topk_insertion_sort(e, r);
        for (ptrdiff_t j = 0; j < keep; j++)
            dst[j] = (uint64_t)e[j].index;
        return;
    }
    uint64_t lo = UINT64_MAX, hi = 0;
    for (ptrdiff_t j = 0; j < r; j++) {
        work[j] = sa_topk_whole_key(row, group[j], largest);
        lo = work[j] < lo ? work[j] : lo;
        hi = work[j] > hi ? work[j] : hi;
    }
    if (lo == hi)
        return;                 /* ties whole: index order is the result's */
    for (ptrdiff_t j = 0; j < r; j++)
        work[j] = sa_topk_pack(work[j] - lo, (uint64_t)sa_topk_unpack(group[j]).index);
    sa_avx512_sort_packs(work, r, keep, work + r, (uint16_t *)(work + 2 * r));
    const uint64_t packed = group[0] >> 32;
    for (ptrdiff_t j = 0; j < keep; j++)
        dst[j] = sa_topk_pack(packed, (uint64_t)sa_topk_unpack(work[j]).index);
}

/* How many neighbours among the float64 entries that packs[0..count) name
 * have whole keys out of order (the first's smaller), by gathers from the
 * row. */
SA_AVX512_INLINE ptrdiff_t sa_avx512_descents_f64(const uint64_t *packs, ptrdiff_t count, const double *row,
                                                  int largest)
{
    const __m512i low = _mm512_set1_epi64(0xFFFFFFFF);
    __m512i before = _mm512_set1_epi64(-1);     /* above every key: the first has no predecessor */
    ptrdiff_t descents = 0;
    for (ptrdiff_t j = 0; j < count; j += 8) {
        const __mmask8 inside = sa_avx512_lanes8(count - j);
        const __m512i index = _mm512_andnot_si512(_mm512_maskz_loadu_epi64(inside, packs + j), low);
        const __m512i key = sa_avx512_rank_pd(_mm512_mask_i64gather_pd(_mm512_setzero_pd(), inside, index, row, 8),
                                              largest);
        const __m512i previous = _mm512_alignr_epi64(key, before, 7);
        descents += __builtin_popcount(_mm512_mask_cmplt_epu64_mask(inside, previous, key));
        before = key;
    }
    return descents;
}

/* The m candidates' pairs, whole keys from the row, into best. */
SA_INLINE void sa_topk_whole_pairs(const double *row, const uint64_t *cindex, ptrdiff_t m, int largest,
                                   sa_ranked *best)
{
    for (ptrdiff_t i = 0; i < m; i++) {
        best[i].key = sa_rank_f64(row[cindex[i]], largest);
        best[i].index = (int64_t)cindex[i];
    }
}

/* sa_avx512_sort_candidates_f64's mends, where the packs dropped key bits
 * some candidate has: packs[0..k) sorted by packed keys, packed_key[0..m)
 * the candidates' packed keys in their order. The candidates tying the
 * k-th's packed key, when some lie past k, are gathered to work and sorted
 * again by their whole keys for the last places; then each run of equal
 * packed keys among the k first whose whole keys are out of order. Returns
 * 1, or 0 with the m candidates' pairs (whole keys) in best where a run is
 * more than m / 2 packs. work is best's room (2 m packs), packed_key in it
 * past the first m packs and m bucket numbers. */
SA_AVX512 static int sa_avx512_mend_packs_f64(const double *row, uint64_t *packs, const uint32_t *packed_key,
                                              const uint64_t *cindex, ptrdiff_t m, ptrdiff_t k, int largest,
                                              uint64_t *work, sa_ranked *best)
{
    /* the candidates whose packed key is the k-th's: the last `inside` of
     * the k first, `tying` in all */
    const uint32_t last_key = (uint32_t)(packs[k - 1] >> 32);
    ptrdiff_t inside = 1, tying = 0, equal = 0;
    while (inside < k && (uint32_t)(packs[k - 1 - inside] >> 32) == last_key)
        inside++;
#pragma omp simd reduction(+ : tying)
    for (ptrdiff_t i = 0; i < m; i++)
        tying += packed_key[i] == last_key;
#pragma omp simd reduction(+ : equal)
    for (ptrdiff_t j = 0; j < k - 1; j++)
        equal += (packs[j] >> 32) == (packs[j + 1] >> 32);
    ptrdiff_t runs_end = k;
    if (tying > inside) {
        if (tying > m / 2) {
            sa_topk_whole_pairs(row, cindex, m, largest, best);
            return 0;
        }
        /* the group gathered at work (its packs stay behind the reads of packed_key) */
        for (ptrdiff_t i = 0, t = 0; i < m; i++)
            if (packed_key[i] == last_key)
                work[t++] = sa_topk_pack(last_key, cindex[i]);
        runs_end = k - inside;
        sa_avx512_sort_near_ties(row, work, tying, inside, largest, packs + runs_end, work + tying);
    }
    /* runs of equal packed keys: ties whole (keys of few values) need nothing */
    if (equal > 0 && sa_avx512_descents_f64(packs, runs_end, row, largest) > 0) {
        for (ptrdiff_t a = 0; a < runs_end;) {
            ptrdiff_t b = a + 1;
            while (b < runs_end && (packs[b] >> 32) == (packs[a] >> 32))
                b++;
            if (b - a > m / 2) {
                sa_topk_whole_pairs(row, cindex, m, largest, best);
                return 0;
            }
            if (b - a > 1)
                sa_avx512_sort_near_ties(row, packs + a, b - a, b - a, largest, packs + a, work);
            a = b;
        }
    }
    return 1;
}

/* sa_avx512_sort_candidates_f32 for a float64 row's m candidates (values,
 * which the packs overwrite, and indices below 2^32, in index order). A
 * pack holds 32 bits of the key: (key - lo) >> shift, lo the candidates'
 * least key and shift the fewest bits that bring their range within 32.
 * Where shift drops bits some candidate has (not on keys of few values,
 * nor on ranges within 2^32, nor on float32 data), keys equal in their
 * packed bits but not whole may be out of order: each run of such packs
 * among the k first, and the candidates tying the k-th's packed key, are
 * sorted again by their whole keys (sa_avx512_mend_packs_f64). The pairs
 * in best carry the packed keys. Returns 1, or 0 with the m candidates'
 * pairs (whole keys) in best where a run is more than m / 2 packs (keys
 * close together against their range; its work would not fit). best holds
 * m pairs: the scatter's buffer, the bucket numbers and the packed keys
 * meanwhile, then the runs' work. */
SA_AVX512 static int sa_avx512_sort_candidates_f64(const double *row, double *cvalues, const uint64_t *cindex,
                                                   ptrdiff_t m, ptrdiff_t k, int largest, sa_ranked *best)
{
    __m512i lo8 = _mm512_set1_epi64(-1), hi8 = _mm512_setzero_si512();
    for (ptrdiff_t i = 0; i < m; i += 8) {
        const __mmask8 inside = sa_avx512_lanes8(m - i);
        const __m512i key = sa_avx512_rank_pd(_mm512_maskz_loadu_pd(inside, cvalues + i), largest);
        lo8 = _mm512_mask_min_epu64(lo8, inside, lo8, key);
        hi8 = _mm512_mask_max_epu64(hi8, inside, hi8, key);
    }
    const uint64_t lo = _mm512_reduce_min_epu64(lo8), hi = _mm512_reduce_max_epu64(hi8);
    const int shift = (hi - lo) >> 32 ? 32 - __builtin_clzll(hi - lo) : 0;
    uint64_t *packs = (uint64_t *)cvalues, *work = (uint64_t *)best;
    uint16_t *ids = (uint16_t *)(work + m);
    uint32_t *packed_key = (uint32_t *)(work + m) + (m + 1) / 2;       /* past the m ids */
    const __m512i low = _mm512_set1_epi64(0xFFFFFFFF), dropped = _mm512_set1_epi64(((int64_t)1 << shift) - 1);
    const __m128i by = _mm_cvtsi32_si128(shift);
    __m512i lost8 = _mm512_setzero_si512();
    for (ptrdiff_t i = 0; i < m; i += 8) {
        const __mmask8 inside = sa_avx512_lanes8(m - i);
        const __m512i key = sa_avx512_rank_pd(_mm512_maskz_loadu_pd(inside, cvalues + i), largest);
        const __m512i from_lo = _mm512_maskz_sub_epi64(inside, key, _mm512_set1_epi64((int64_t)lo));
        const __m512i packed = _mm512_srl_epi64(from_lo, by);
        const __m512i index = _mm512_maskz_loadu_epi64(inside, cindex + i);
        lost8 = _mm512_or_si512(lost8, _mm512_and_si512(from_lo, dropped));
        _mm512_mask_cvtepi64_storeu_epi32(packed_key + i, inside, packed);
        _mm512_mask_storeu_epi64(packs + i, inside,
                                 _mm512_or_si512(_mm512_slli_epi64(packed, 32), _mm512_andnot_si512(index, low)));
    }
    sa_avx512_sort_packs(packs, m, k, work, ids);
    if (_mm512_test_epi64_mask(lost8, lost8)
        && !sa_avx512_mend_packs_f64(row, packs, packed_key, cindex, m, k, largest, work, best))
        return 0;
    sa_avx512_pairs_from_packs(packs, k, best);
    return 1;
}
#endif

/* Whether a row of n entries takes the sorting network (k <= n): its cost
 * hardly depends on k, the other paths' grows with it. */
SA_INLINE int sa_topk_network_suits(ptrdiff_t n, ptrdiff_t k, int f64)
{
#if SA_X86_DISPATCH
    if (!sa_simd_v4 || n > SA_TOPK_NETWORK_N)
        return 0;
    if (n <= SA_TOPK_NETWORK_SHORT_N)
        return k >= (f64 ? SA_TOPK_NETWORK_SHORT_MIN_K_F64 : SA_TOPK_NETWORK_SHORT_MIN_K_F32);
    return k >= (f64 ? SA_TOPK_NETWORK_MIN_K_F64 : SA_TOPK_NETWORK_MIN_K_F32);
#else
    (void)n;
    (void)k;
    (void)f64;
    return 0;
#endif
}

/* Whether a float32 row of n entries takes the k passes. */
SA_INLINE int sa_topk_passes_suit(ptrdiff_t n, ptrdiff_t k)
{
#if SA_X86_DISPATCH
    if (sa_simd_v4)
        return (k <= SA_TOPK_PASSES_K && n <= SA_TOPK_PASSES_N)
               || (k <= 2 * SA_TOPK_PASSES_K && n <= SA_TOPK_PASSES_N / 2);
#endif
    return k <= SA_TOPK_PASSES_K && n <= SA_TOPK_PASSES_AVX2_N;
}

SA_INLINE void sa_topk_passes_row_f32(const float *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                      sa_ranked *best)
{
    uint64_t packed[SA_TOPK_PASSES_N], top[2 * SA_TOPK_PASSES_K];
    if (n <= 0)     /* nothing to rank; past it, GCC sees packed written before it is read */
        return;
    sa_topk_pack_f32(row, n, largest, packed);
#if SA_X86_DISPATCH
    if (sa_simd_v4)
        sa_avx512_topk_passes(packed, n, k, top);
    else
#endif
        for (ptrdiff_t j = 0; j < k; j++)      /* pass 0 takes every key (NaN at index 0 packs to UINT64_MAX) */
            top[j] = sa_topk_next_below(packed, n, j ? top[j - 1] : 0, j == 0);
    for (ptrdiff_t j = 0; j < k; j++)
        best[j] = sa_topk_unpack(top[j]);
}

/* float32, k <= 2 (top-1 and top-2 routers): one pass in which each of 8
 * lanes keeps its own best k packed keys (a max/min network per entry),
 * then the 8 k candidates and the row's tail are merged. k, largest and
 * gate (topk_gating's call: the scalar selection) are literals at every
 * call. */
#define SA_TOPK_LANES 8
SA_INLINE void sa_topk_lanes_row_f32(const float *row, ptrdiff_t n, int k, int largest, int gate,
                                     sa_ranked *best)
{
    uint64_t lane[2][SA_TOPK_LANES] = {{0}};
    ptrdiff_t i = 0;
    for (; i + SA_TOPK_LANES <= n; i += SA_TOPK_LANES) {
#pragma omp simd
        for (int l = 0; l < SA_TOPK_LANES; l++) {
            uint64_t c = sa_topk_pack(sa_rank_f32(row[i + l], largest), (uint64_t)(i + l));
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
        cand[m++] = sa_topk_pack(sa_rank_f32(row[i], largest), (uint64_t)i);
#if SA_X86_DISPATCH
    if (sa_simd_v4 && !gate) {
        uint64_t top[2];
        sa_avx512_select_top_packs(cand, m, k, top);
        for (int j = 0; j < k; j++)
            best[j] = sa_topk_unpack(top[j]);
        return;
    }
#endif
    for (int j = 0; j < k; j++) {           /* selection of the k largest candidates */
        int a = j;
        for (int q = j + 1; q < m; q++)
            a = cand[q] > cand[a] ? q : a;
        const uint64_t top = cand[a];
        cand[a] = cand[j];
        cand[j] = top;
        best[j] = sa_topk_unpack(top);
    }
}

#define SA_T float
#define SA_SUF f32
#define SA_KEY_T uint32_t
#define SA_SKEY_T int32_t
#define SA_RANK sa_rank_f32
#define SA_UNRANK sa_unrank_f32
#define SA_EXP_SMALL sa_exp_small_f32
#include "_gating_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_KEY_T
#undef SA_SKEY_T
#undef SA_RANK
#undef SA_UNRANK
#undef SA_EXP_SMALL

#define SA_T double
#define SA_SUF f64
#define SA_KEY_T uint64_t
#define SA_SKEY_T int64_t
#define SA_RANK sa_rank_f64
#define SA_UNRANK sa_unrank_f64
#define SA_EXP_SMALL sa_exp_small_f64
#include "_gating_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_KEY_T
#undef SA_SKEY_T
#undef SA_RANK
#undef SA_UNRANK
#undef SA_EXP_SMALL

#endif /* SOFTARRAY_GATING_KERNELS_H */
