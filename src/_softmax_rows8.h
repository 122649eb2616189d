/*
 * float32 softmax of short contiguous rows (n <= SA_SMALL_ROW_MAX), eight
 * rows at a time with the rows in the lanes of a SIMD register: the portable
 * version, for CPUs without AVX2 and FMA (SSE2, NEON) and SOFTARRAY_SIMD=baseline.
 * Where the x86-64-v3 code runs, _softmax_avx2.h serves every short row instead.
 *
 * The general short-row path (sa_rows_small) copies a tile of rows into a
 * transposed scratch buffer element by element, and back; at n = 10 those
 * scalar copies are a large share of its time. Here eight rows are loaded as
 * eight-float pieces, transposed 8 x 8 in registers (24 shuffles), and the
 * whole softmax then runs on n column vectors (one lane per row) before the
 * results are transposed back and stored (docs/performance.md gives the gain).
 *
 * Memory: each group of eight rows reads and writes only its own 8 * n
 * floats. A piece that would run past the group's end (the last row's last
 * piece, for instance) is loaded through a zero-padded copy and stored entry
 * by entry, so neighbouring groups, other threads' rows and in-place calls
 * (out == x) never see an access outside the group. Pieces stored with full
 * width may spill into the group's next rows; the stores run from the last
 * piece to the first and from the first row to the last, so every spill is
 * overwritten by the correct values afterwards. Lanes past a row's end hold
 * neighbouring values and are never read by the arithmetic (which runs over
 * j < n only).
 *
 * Written with GCC/Clang vector extensions, so each dispatched copy
 * (SSE2 baseline, AVX2) lowers the shuffles itself. The arithmetic is
 * sa_cols_impl's softmax step for step ((rest, count) sums in float, the
 * normalizer in double), so a row gets the same bits on either path, which
 * blockwise callers (Dask) rely on; NaN anywhere, or a non-finite maximum,
 * gives NaN for the row.
 */
#ifndef SOFTARRAY_SOFTMAX_ROWS8_H
#define SOFTARRAY_SOFTMAX_ROWS8_H

#include <stddef.h>
#include "_simd.h"
#include "_softmax_sizes.h"

#if defined(__GNUC__) || defined(__clang__)
#define SA_HAVE_ROWS8 1

typedef float sa_v8f __attribute__((vector_size(32)));
typedef int sa_v8i __attribute__((vector_size(32)));
typedef double sa_v8d __attribute__((vector_size(64)));

#if defined(__clang__)
#define SA_SHUFFLE8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) \
    __builtin_shufflevector(a, b, i0, i1, i2, i3, i4, i5, i6, i7)
#else
#define SA_SHUFFLE8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) \
    __builtin_shuffle(a, b, (sa_v8i){i0, i1, i2, i3, i4, i5, i6, i7})
#endif

/* In place: r[i] lane k becomes r[k] lane i. */
SA_INLINE void sa_transpose8(sa_v8f r[8])
{
    sa_v8f t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = SA_SHUFFLE8(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = SA_SHUFFLE8(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4) {
        for (int h = 0; h < 2; h++) {
            u[i + 2 * h] = SA_SHUFFLE8(t[i + h], t[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * h + 1] = SA_SHUFFLE8(t[i + h], t[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    }
    for (int k = 0; k < 4; k++) {
        r[k] = SA_SHUFFLE8(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[k + 4] = SA_SHUFFLE8(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

SA_INLINE sa_v8f sa_select8(sa_v8i mask, sa_v8f yes, sa_v8f no)
{
    return (sa_v8f)((mask & (sa_v8i)yes) | (~mask & (sa_v8i)no));
}

/* Eight floats from p, of which only the first `valid` (>= 1) may be read:
 * the others are 0. */
SA_INLINE sa_v8f sa_load8(const float *p, ptrdiff_t valid)
{
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (ptrdiff_t k = 0; k < valid && k < 8; k++)
        v[k] = p[k];
    sa_v8f r;
    __builtin_memcpy(&r, v, sizeof r);
    return r;
}

/* The first min(room, 8) lanes of v to p. */
SA_INLINE void sa_store8(float *p, sa_v8f v, ptrdiff_t room)
{
    float w[8];
    __builtin_memcpy(w, &v, sizeof w);
    for (ptrdiff_t k = 0; k < room && k < 8; k++)
        p[k] = w[k];
}

/* Softmax of the eight contiguous rows of n entries at x into out. */
SA_INLINE void sa_softmax_group8_f32(const float *x, float *out, ptrdiff_t n, float scale)
{
    sa_v8f col[SA_SMALL_ROW_MAX + 8];
    const ptrdiff_t extent = 8 * n;
    for (ptrdiff_t c = 0; c < n; c += 8) {
        sa_v8f r[8];
        for (int i = 0; i < 8; i++) {
            const ptrdiff_t at = i * n + c;
            if (at + 8 <= extent)       /* the piece lies inside the group */
                __builtin_memcpy(&r[i], x + at, sizeof r[i]);
            else
                r[i] = sa_load8(x + at, extent - at);
        }
        sa_transpose8(r);
        for (int k = 0; k < 8; k++)
            col[c + k] = r[k] * scale;
    }
    if (n < 1)
        __builtin_unreachable();    /* rows have 1 to SA_SMALL_ROW_MAX entries: col[0] is set */
    sa_v8f m = col[0];
    for (ptrdiff_t j = 1; j < n; j++)
        m = sa_select8(col[j] > m, col[j], m);
    sa_v8f rest = {0, 0, 0, 0, 0, 0, 0, 0}, count = rest;
    const sa_v8f zero = rest, one = rest + 1.0f;
    for (ptrdiff_t j = 0; j < n; j++) {
        const sa_v8i top = col[j] == m;
        sa_v8f e;
        for (int k = 0; k < 8; k++)
            e[k] = sa_exp_small_f32(col[j][k] - m[k]);
        col[j] = e;
        rest += sa_select8(top, zero, e);
        count += sa_select8(top, one, zero);
    }
    /* 1 / sum in double, as sa_softmax_scale takes it (the tile path's
     * results are then bit for bit the same), for a finite maximum
     * (m - m == 0); NaN otherwise */
    const sa_v8d sum = __builtin_convertvector(rest, sa_v8d) + __builtin_convertvector(count, sa_v8d);
    const sa_v8f inv = sa_select8(m - m == zero, __builtin_convertvector(1.0 / sum, sa_v8f), zero + NAN);
    for (ptrdiff_t c = (n - 1) / 8 * 8; c >= 0; c -= 8) {
        sa_v8f r[8];
        for (int k = 0; k < 8; k++)
            r[k] = col[c + k] * inv;
        sa_transpose8(r);
        for (int i = 0; i < 8; i++) {
            const ptrdiff_t at = i * n + c;
            if (at + 8 <= extent)
                __builtin_memcpy(out + at, &r[i], sizeof r[i]);
            else
                sa_store8(out + at, r[i], extent - at);
        }
    }
}

/* Softmax of the first n_rows / 8 * 8 rows (contiguous, n entries each, the
 * next row right after); returns how many rows were done. */
SA_INLINE ptrdiff_t sa_softmax_rows8_f32(const float *x, float *out, ptrdiff_t n_rows, ptrdiff_t n, float scale)
{
    const ptrdiff_t groups = n_rows / 8;
    for (ptrdiff_t g = 0; g < groups; g++)
        sa_softmax_group8_f32(x + g * 8 * n, out + g * 8 * n, n, scale);
    return groups * 8;
}

#else
#define SA_HAVE_ROWS8 0
#endif

#endif /* SOFTARRAY_SOFTMAX_ROWS8_H */
