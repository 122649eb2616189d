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
 * k <= 2 in float32 (the mixture-of-experts router's case) on rows of up
 * to SA_TOPK_LANES_N: one pass with 8 lanes each keeping its best k 64-bit
 * (rank key, index) packs; k <= 4 on rows of up to SA_TOPK_PASSES_N (k <= 8
 * up to half as long): k
 * vectorized passes, each a maximum over the packs. Other small k
 * (SA_TOPK_SMALL_K):
 * one pass with the k best kept sorted in a tiny array; a block of keys, then
 * a group of 8, that cannot enter costs one vector compare. Rows of up to SA_TOPK_COUNT_BYTES (larger
 * k): each entry's place in the result is counted, n^2 compares in vector
 * loops. Large k: the (key, index) pairs of the row go to scratch in index
 * order (on rows at least SA_TOPK_FILTER_RATIO k long, only those that reach
 * a running k-th best key), an MSD radix select finds the k-th key, one pass
 * keeps the k first (equal keys in index order), and (if sorted) a stable sort by key
 * (counting, or an LSD radix sort) puts them in result order: no comparison
 * sort and no branch on the data in the hot loops. The Python layer
 * (softarray/_gating.py) validates everything and lays the data out as
 * rows; nothing here fails.
 */
#ifndef SOFTARRAY_GATING_KERNELS_H
#define SOFTARRAY_GATING_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_simd.h"

/* Up to this k the one-pass insertion (sa_topk_small_row) is used, and up
 * to twice this k on rows of at least SA_TOPK_SMALL_LONG_N entries; above,
 * the radix selection. Measured: at k = 17 to 32 the selection is 1.3-1.7x
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
 * 3-4x at 32000), and than counting places for larger k (8 passes over
 * 128 entries: 0.57 us a row against 0.65; over 256: 1.08 against 0.81;
 * measured before the passes read keys packed once and ran on AVX-512,
 * which took 64x64 rows, k = 8, from 330 to 140 ns a row). */
#define SA_TOPK_PASSES_K 4
#define SA_TOPK_PASSES_N 256
#define SA_TOPK_LANES_N 2048
/* Large k on rows at least this many times k long: the threshold filter
 * (sa_topk_filter_row) before the radix selection (8 measured 10-17%
 * faster than 16 at 1000 entries, k = 64, and 4096, k = 300; 4 no better). */
#define SA_TOPK_FILTER_RATIO 8
/* Rows of up to this many bytes and k above SA_TOPK_SMALL_K are placed by
 * counting (sa_topk_count_row): n^2 compares in vector loops, faster than
 * the other paths up to 128 float32 or 64 float64 entries (measured, 1024
 * rows). Below that k the one-pass insertion is faster (2026-12-05, 64 rows,
 * counting against insertion: float64 64 entries 30.5 against 7.7 / 10.9 /
 * 16.4 us at k = 4 / 8 / 16; float32 128 entries 42.8 against 20.5 / 26.7
 * at k = 12 / 16, 64 entries 17.8 against 14.8 at k = 12, level at 16). */
#define SA_TOPK_COUNT_BYTES 512
#define SA_TOPK_COUNT_N (SA_TOPK_COUNT_BYTES / 4)
/* Entries whose places are counted at once (sa_topk_places): 4 AVX2 vectors of float32 keys. */
#define SA_TOPK_PLACE_BLOCK 32
/* Up to this many selected entries are sorted by counting, more by an LSD
 * radix sort (sa_topk_radix_sort). */
#define SA_TOPK_COUNT_SORT_K 64
/* Where the lane bound runs (sa_topk_bound_suits). Measured per row on 2^21
 * fresh normal entries (float32 / float64, ns; insertion / radix / bound):
 * n = 1000, k = 8: 1345 / 1773 / 509 and 1656 / 2322 / 961; k = 64: 7317 /
 * 3281 / 1397 and 8448 / 4076 / 3954 (noisy); n = 32000, k = 8: 5439 / 6461
 * / 8239, k = 24: 11660 / 11504 / 8515 (float32); n = 128000, k = 64:
 * 41372 / 35199 / 36937 (float32). */
#define SA_TOPK_BOUND_K 64
#define SA_TOPK_BOUND_MIN_N 64
#define SA_TOPK_BOUND_BYTES_PER_K 8192
#define SA_TOPK_BOUND_MAX_BYTES 131072
#define SA_TOPK_BOUND_WIDE_MAX_BYTES 32768
/* The lane bound (sa_topk_lane_bound) is exact up to SA_TOPK_BOUND_COUNT_G
 * lanes; with more, its top bits are found: 16 leave float32's bound 7 bits of
 * mantissa below the k-th lane maximum, 20 float64's 8. */
#ifndef SA_TOPK_BOUND_COUNT_G
#define SA_TOPK_BOUND_COUNT_G 32
#define SA_TOPK_BOUND_BITS_F32 16
#define SA_TOPK_BOUND_BITS_F64 20
#endif
/* Rank keys of this many entries are computed at a time (on the stack), and
 * a block whose largest key cannot enter is skipped: 128 measured best
 * against 64 and 256 at 1000 to 128000 entries and k of 5 to 1000. */
#define SA_TOPK_BLOCK 128
/* Entries sa_topk_reaching and its vector forms may write past their cap. */
#define SA_TOPK_REACH_SLACK 32

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

/* float32, k <= SA_TOPK_PASSES_K: k vectorized passes over the row (short
 * rows stay in L1). Rank key and index are packed into one 64-bit key,
 * key << 32 | ~index, unique and ordered like the result, so pass j is a
 * plain maximum over the packed keys below the one pass j - 1 found. The
 * packed keys are made once, so a pass is a compare and a maximum per
 * entry: on AVX-512 (vpcmpuq, vpmaxuq) one instruction each, which AVX2
 * builds from four. */
SA_INLINE void sa_topk_pack_f32(const float *row, ptrdiff_t n, int largest, uint64_t *packed)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++)
        packed[i] = ((uint64_t)(uint32_t)sa_rank_f32(row[i], largest) << 32) | (uint32_t)~(uint32_t)i;
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
/* sa_topk_next_below on eight lanes, two maxima in flight. */
static inline __attribute__((target("avx512f,avx512dq"), always_inline)) __m512i
sa_avx512_topk_max_below(__m512i top, __m512i v, __mmask8 inside, __m512i below, int first)
{
    const __mmask8 take = first ? inside : _mm512_mask_cmplt_epu64_mask(inside, v, below);
    return _mm512_mask_max_epu64(top, take, top, v);
}

static inline __attribute__((target("avx512f,avx512dq"), always_inline)) uint64_t
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
        const __mmask8 inside = n - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - i)) - 1u);
        top0 = sa_avx512_topk_max_below(top0, _mm512_maskz_loadu_epi64(inside, packed + i), inside, below, first);
    }
    return _mm512_reduce_max_epu64(_mm512_max_epu64(top0, top1));
}

/* The entries of a row whose rank key reaches a bound, in index order
 * (sa_topk_bound_row's second pass), on x86-64-v3: eight float32 or four
 * float64 keys per vector, compared at once and left-packed (a permutation
 * built from the compare's mask with pdep/pext) into ckeys and cindex, with
 * no branch on the data but one per 32 entries, which skips those with no
 * key reaching it. Returns their number, or -1 as soon as more than cap
 * reach it (ckeys and cindex hold cap + SA_TOPK_REACH_SLACK). */
#define SA_V3 __attribute__((target("arch=x86-64-v3")))

static inline SA_V3 __m256i sa_avx2_pack_order(unsigned lanes)
{
    const uint64_t spread = _pdep_u64(lanes, 0x0101010101010101ull) * 0xFF;
    const uint64_t order = _pext_u64(0x0706050403020100ull, spread);
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)order));
}

/* The rank keys of the float32 row[i..i+8) (those at n or beyond: 0), and
 * in *lanes which of them reach bound. */
static inline SA_V3 __m256i sa_avx2_reach_f32(const float *row, ptrdiff_t i, ptrdiff_t n, __m256i smallest,
                                               __m256i vbound, unsigned *lanes)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i inside = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i < 8 ? n - i : 8)), iota);
    const __m256 v = _mm256_add_ps(_mm256_maskload_ps(row + i, inside), _mm256_setzero_ps());
    const __m256i bits = _mm256_castps_si256(v);
    __m256i key = _mm256_xor_si256(bits, _mm256_or_si256(_mm256_srai_epi32(bits, 31),
                                                         _mm256_set1_epi32((int)0x80000000u)));
    key = _mm256_or_si256(key, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    key = _mm256_and_si256(_mm256_xor_si256(key, smallest), inside);
    const __m256i reach = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_max_epu32(key, vbound), key), inside);
    *lanes = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(reach));
    return key;
}

static SA_V3 ptrdiff_t sa_avx2_topk_reaching_f32(const float *row, ptrdiff_t n, int largest, uint32_t bound,
                                                 uint32_t *ckeys, uint32_t *cindex, ptrdiff_t cap)
{
    const __m256i vbound = _mm256_set1_epi32((int)bound);
    const __m256i smallest = _mm256_set1_epi32(largest ? 0 : -1);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    ptrdiff_t m = 0;
    for (ptrdiff_t b = 0; b < n; b += 32) {
        /* four vectors at a time, packed only if one of their keys reaches */
        __m256i key[4];
        unsigned lanes[4];
        for (int q = 0; q < 4; q++)
            key[q] = sa_avx2_reach_f32(row, b + 8 * q, n, smallest, vbound, &lanes[q]);
        if (!(lanes[0] | lanes[1] | lanes[2] | lanes[3]))
            continue;
        for (int q = 0; q < 4; q++) {
            const __m256i order = sa_avx2_pack_order(lanes[q]);
            const __m256i index = _mm256_add_epi32(_mm256_set1_epi32((int)(b + 8 * q)), iota);
            _mm256_storeu_si256((__m256i *)(ckeys + m), _mm256_permutevar8x32_epi32(key[q], order));
            _mm256_storeu_si256((__m256i *)(cindex + m), _mm256_permutevar8x32_epi32(index, order));
            m += __builtin_popcount(lanes[q]);
        }
        if (m > cap)
            return -1;
    }
    return m;
}

static inline SA_V3 __m256i sa_avx2_reach_f64(const double *row, ptrdiff_t i, ptrdiff_t n, __m256i smallest,
                                               __m256i signed_bound, unsigned *lanes)
{
    const __m256i iota = _mm256_setr_epi64x(0, 1, 2, 3);
    const __m256i sign = _mm256_set1_epi64x((long long)0x8000000000000000ull);
    const __m256i inside = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - i < 4 ? n - i : 4), iota);
    const __m256d v = _mm256_add_pd(_mm256_maskload_pd(row + i, inside), _mm256_setzero_pd());
    const __m256i bits = _mm256_castpd_si256(v);
    const __m256i negative = _mm256_cmpgt_epi64(_mm256_setzero_si256(), bits);
    __m256i key = _mm256_xor_si256(bits, _mm256_or_si256(negative, sign));
    key = _mm256_or_si256(key, _mm256_castpd_si256(_mm256_cmp_pd(v, v, _CMP_UNORD_Q)));
    key = _mm256_xor_si256(key, smallest);
    /* key >= bound, unsigned: not (bound > key), both with the sign bit flipped */
    const __m256i below = _mm256_cmpgt_epi64(signed_bound, _mm256_xor_si256(key, sign));
    *lanes = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_andnot_si256(below, inside)));
    return key;
}

static SA_V3 ptrdiff_t sa_avx2_topk_reaching_f64(const double *row, ptrdiff_t n, int largest, uint64_t bound,
                                                 uint64_t *ckeys, uint64_t *cindex, ptrdiff_t cap)
{
    const __m256i signed_bound = _mm256_set1_epi64x((long long)(bound ^ 0x8000000000000000ull));
    const __m256i smallest = _mm256_set1_epi64x(largest ? 0 : -1);
    const __m256i iota = _mm256_setr_epi64x(0, 1, 2, 3);
    ptrdiff_t m = 0;
    for (ptrdiff_t b = 0; b < n; b += 16) {
        __m256i key[4];
        unsigned lanes[4];
        for (int q = 0; q < 4; q++)
            key[q] = sa_avx2_reach_f64(row, b + 4 * q, n, smallest, signed_bound, &lanes[q]);
        if (!(lanes[0] | lanes[1] | lanes[2] | lanes[3]))
            continue;
        for (int q = 0; q < 4; q++) {
            /* each 64-bit lane is a pair of the 32-bit lanes the permutation moves */
            const __m256i order = sa_avx2_pack_order(_pdep_u32(lanes[q], 0x55) * 3);
            const __m256i index = _mm256_add_epi64(_mm256_set1_epi64x(b + 4 * q), iota);
            _mm256_storeu_si256((__m256i *)(ckeys + m), _mm256_permutevar8x32_epi32(key[q], order));
            _mm256_storeu_si256((__m256i *)(cindex + m), _mm256_permutevar8x32_epi32(index, order));
            m += __builtin_popcount(lanes[q]);
        }
        if (m > cap)
            return -1;
    }
    return m;
}

__attribute__((target("avx512f,avx512dq"))) static void sa_avx512_topk_passes(const uint64_t *packed, ptrdiff_t n,
                                                                            ptrdiff_t k, uint64_t *top)
{
    for (ptrdiff_t j = 0; j < k; j++)
        top[j] = sa_avx512_topk_next_below(packed, n, j ? top[j - 1] : 0, j == 0);
}
#endif

SA_INLINE void sa_topk_passes_row_f32(const float *row, ptrdiff_t n, ptrdiff_t k, int largest,
                                      sa_ranked *best)
{
    uint64_t packed[SA_TOPK_PASSES_N], top[2 * SA_TOPK_PASSES_K];
    sa_topk_pack_f32(row, n, largest, packed);
#if SA_X86_DISPATCH
    if (sa_simd_v4)
        sa_avx512_topk_passes(packed, n, k, top);
    else
#endif
        for (ptrdiff_t j = 0; j < k; j++)      /* pass 0 takes every key (NaN at index 0 packs to UINT64_MAX) */
            top[j] = sa_topk_next_below(packed, n, j ? top[j - 1] : 0, j == 0);
    for (ptrdiff_t j = 0; j < k; j++) {
        best[j].key = top[j] >> 32;
        best[j].index = (uint32_t)~(uint32_t)top[j];
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

#define SA_T float
#define SA_SUF f32
#define SA_KEY_T uint32_t
#define SA_SKEY_T int32_t
#define SA_RANK sa_rank_f32
#define SA_EXP_SMALL sa_exp_small_f32
#include "_gating_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_KEY_T
#undef SA_SKEY_T
#undef SA_RANK
#undef SA_EXP_SMALL

#define SA_T double
#define SA_SUF f64
#define SA_KEY_T uint64_t
#define SA_SKEY_T int64_t
#define SA_RANK sa_rank_f64
#define SA_EXP_SMALL sa_exp_small_f64
#include "_gating_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_KEY_T
#undef SA_SKEY_T
#undef SA_RANK
#undef SA_EXP_SMALL

#endif /* SOFTARRAY_GATING_KERNELS_H */
