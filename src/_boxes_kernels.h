/*
 * Box kernels: IoU and the non-maximum suppressions (greedy NMS and
 * Soft-NMS), for float and double.
 *
 * Exactness. Every IoU is computed with torchvision's formula, in the input
 * dtype, with the same operations in the same order (this module is built
 * with -ffp-contract=off so that no multiply-add is fused), so suppression
 * decisions equal torchvision.ops.nms's bit for bit.
 *
 * Speed. Greedy NMS compares every box with every kept box in the textbook
 * form. Two boxes can only have IoU > 0 when they intersect with positive
 * area, and with an IoU threshold >= 0 no other pair can suppress, so each
 * box is compared only with the kept boxes whose extent can reach it: they
 * live in a hashed multi-level grid (a box of size s sits in the level whose
 * cells are just larger than s, in the cell of its lower corner, so a query
 * looks at 2 x 2 or so cells per level). The kept set is exactly the
 * quadratic algorithm's. Soft-NMS keeps its remaining boxes in the same grid
 * and in an indexed max-heap of current scores: selecting a box and decaying
 * its neighbours costs O(neighbours * log n), not O(n).
 *
 * Boxes that cannot intersect anything with positive area (a non-finite
 * coordinate, zero or negative width or height) overlap nothing here, which
 * is also what torchvision's formula gives them under a threshold >= 0: they
 * never suppress and are never suppressed (Soft-NMS: never decayed).
 *
 * The type-independent parts are here; _boxes_impl.h holds the per-type
 * bodies. The Python layer (softarray/_boxes.py) validates every argument;
 * nothing here fails or allocates.
 */
#ifndef SOFTARRAY_BOXES_KERNELS_H
#define SOFTARRAY_BOXES_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_simd.h"

#ifndef SA_CAT
#define SA_CAT2(a, b) a##_##b
#define SA_CAT(a, b) SA_CAT2(a, b)
#endif

/* Grid levels: box sizes up to s0, 2 s0, 4 s0, ...; s0 >= extent / 2^24
 * (so cell indices stay far inside int64 and double), and fewer than 26
 * levels are ever used. */
#define SA_GRID_LEVELS 32
#define SA_GRID_FINEST (1.0 / 16777216.0)

/* Box formats of box_convert. */
enum { SA_FMT_XYXY = 0, SA_FMT_XYWH = 1, SA_FMT_CXCYWH = 2 };

/* ------------------------------------------------------------ sort keys */

/* Keys whose ascending order is decreasing score: NaN first (as torch.sort
 * ranks it, above +inf), -0.0 and 0.0 equal. */
SA_INLINE uint64_t sa_desc_key_f32(float v)
{
    if (v != v)
        return 0;
    uint32_t u = sa_to_bits32(v == 0 ? 0.0f : v);
    u = (u >> 31) ? ~u : (u | 0x80000000u);
    return (uint64_t)(uint32_t)~u;          /* +inf gives 0x007fffff, never 0 */
}

SA_INLINE uint64_t sa_desc_key_f64(double v)
{
    if (v != v)
        return 0;
    uint64_t u = sa_to_bits64(v == 0 ? 0.0 : v);
    u = (u >> 63) ? ~u : (u | 0x8000000000000000ull);
    return ~u;
}

/* max and min of numbers that are never NaN (fmax and fmin are library
 * calls that handle NaN). */
SA_INLINE double sa_max_d(double a, double b) { return a > b ? a : b; }
SA_INLINE double sa_min_d(double a, double b) { return a < b ? a : b; }

/* Ascending order of signed labels. */
SA_INLINE uint64_t sa_label_key(int64_t label) { return (uint64_t)label ^ 0x8000000000000000ull; }

/* Stable ascending LSD radix sort of (keys, vals) on the low key_bytes bytes
 * of the keys, byte by byte (a byte that all keys share costs one counting
 * pass). tk and tv are scratch of n entries; the result is in keys, vals. */
static void sa_radix_sort(uint64_t *keys, int64_t *vals, ptrdiff_t n, int key_bytes,
                          uint64_t *tk, int64_t *tv)
{
    uint64_t *src_k = keys, *dst_k = tk;
    int64_t *src_v = vals, *dst_v = tv;
    ptrdiff_t offset[256];
    if (n < 2)
        return;
    for (int byte = 0; byte < key_bytes; byte++) {
        const int shift = 8 * byte;
        memset(offset, 0, sizeof offset);
        for (ptrdiff_t i = 0; i < n; i++)
            offset[(src_k[i] >> shift) & 255]++;
        if (offset[(src_k[0] >> shift) & 255] == n)
            continue;
        ptrdiff_t total = 0;
        for (int d = 0; d < 256; d++) {
            const ptrdiff_t c = offset[d];
            offset[d] = total;
            total += c;
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            const ptrdiff_t pos = offset[(src_k[i] >> shift) & 255]++;
            dst_k[pos] = src_k[i];
            dst_v[pos] = src_v[i];
        }
        uint64_t *sk = src_k; src_k = dst_k; dst_k = sk;
        int64_t *sv = src_v; src_v = dst_v; dst_v = sv;
    }
    if (src_k != keys) {
        memcpy(keys, src_k, (size_t)n * sizeof *keys);
        memcpy(vals, src_v, (size_t)n * sizeof *vals);
    }
}

/* ----------------------------------------------------------------- grid */

/* A hashed multi-level grid over the boxes of one class, addressed by
 * their positions 0..m-1 in the class's arrays. A box's level is set by
 * its larger side (level l: up to s0 * 2^l); within a level, boxes are
 * filed by the cell of their centre, cells being half the level's largest
 * side. A query asks for the boxes whose centre is close enough to its own
 * to reach a given IoU, which for detections is a few cells per level. */
typedef struct {
    int64_t *heads;          /* bucket -> first box in it, -1 when empty (mask + 1 buckets) */
    uint64_t mask;
    int64_t *next;           /* next box in the same bucket */
    int64_t *level_next;     /* next box of the same level */
    int64_t *cell_x, *cell_y;/* each inserted box's cell */
    int8_t *level;           /* each box's level; -1: it overlaps nothing */
    double ox, oy;           /* the grid's origin */
    /* Per level: fixed at set-up from all the boxes of the level ... */
    double inv_cell[SA_GRID_LEVELS];
    double max_w[SA_GRID_LEVELS], max_h[SA_GRID_LEVELS];
    /* ... and growing with the boxes inserted. */
    int64_t level_head[SA_GRID_LEVELS];
    int64_t level_count[SA_GRID_LEVELS];
    double level_min_area[SA_GRID_LEVELS], level_max_area[SA_GRID_LEVELS];
    int n_levels;            /* levels in use: 0 .. n_levels - 1 */
} sa_grid;

/* Hash buckets for m boxes: a power of two between 2m and 4m. */
SA_INLINE ptrdiff_t sa_grid_buckets(ptrdiff_t m)
{
    ptrdiff_t b = 16;
    while (b < 2 * m)
        b *= 2;
    return b;
}

SA_INLINE void sa_grid_init(sa_grid *g, int64_t *heads, ptrdiff_t buckets, int64_t *next,
                            int64_t *level_next, int64_t *cell_x, int64_t *cell_y, int8_t *level)
{
    g->heads = heads;
    g->mask = (uint64_t)buckets - 1;
    g->next = next;
    g->level_next = level_next;
    g->cell_x = cell_x;
    g->cell_y = cell_y;
    g->level = level;
    g->ox = g->oy = 0;
    g->n_levels = 0;
    for (ptrdiff_t b = 0; b < buckets; b++)
        heads[b] = -1;
    for (int l = 0; l < SA_GRID_LEVELS; l++) {
        g->inv_cell[l] = 0;
        g->max_w[l] = g->max_h[l] = 0;
        g->level_head[l] = -1;
        g->level_count[l] = 0;
        g->level_min_area[l] = INFINITY;
        g->level_max_area[l] = 0;
    }
}

/* The level of a box whose larger side is `size`: the first whose bound
 * s0 * 2^l holds it. */
SA_INLINE int8_t sa_grid_level_of(double size, double s0)
{
    int l = 0;
    double limit = s0;
    while (size > limit && l < SA_GRID_LEVELS - 1) {
        limit *= 2;
        l++;
    }
    return (int8_t)l;
}

/* Note a box of level l with sides w, h (set-up, before any insert). */
SA_INLINE void sa_grid_note_size(sa_grid *g, int l, double w, double h)
{
    g->max_w[l] = sa_max_d(g->max_w[l], w);
    g->max_h[l] = sa_max_d(g->max_h[l], h);
    g->n_levels = l + 1 > g->n_levels ? l + 1 : g->n_levels;
}

/* After every box is noted: cells of half the largest side of the level. */
SA_INLINE void sa_grid_finish(sa_grid *g, double ox, double oy)
{
    g->ox = ox;
    g->oy = oy;
    for (int l = 0; l < SA_GRID_LEVELS; l++) {
        const double side = sa_max_d(g->max_w[l], g->max_h[l]);
        g->inv_cell[l] = side > 0 ? 2.0 / side : 0;
    }
}

SA_INLINE int64_t sa_grid_cell(double v, double origin, double inv_cell)
{
    return (int64_t)floor((v - origin) * inv_cell);
}

SA_INLINE uint64_t sa_grid_hash(const sa_grid *g, int64_t cx, int64_t cy, int level)
{
    uint64_t h = (uint64_t)cx * 0x9E3779B97F4A7C15ull ^ (uint64_t)cy * 0xC2B2AE3D27D4EB4Full
                 ^ (uint64_t)level * 0x165667B19E3779F9ull;
    h ^= h >> 29;
    return h & g->mask;
}

/* Insert box k (its level already set, >= 0) with centre (cx, cy). */
SA_INLINE void sa_grid_insert(sa_grid *g, ptrdiff_t k, double cx, double cy, double area)
{
    const int l = g->level[k];
    const int64_t x = sa_grid_cell(cx, g->ox, g->inv_cell[l]);
    const int64_t y = sa_grid_cell(cy, g->oy, g->inv_cell[l]);
    const uint64_t h = sa_grid_hash(g, x, y, l);
    g->cell_x[k] = x;
    g->cell_y[k] = y;
    g->next[k] = g->heads[h];
    g->heads[h] = k;
    g->level_next[k] = g->level_head[l];
    g->level_head[l] = k;
    g->level_count[l]++;
    g->level_min_area[l] = sa_min_d(g->level_min_area[l], area);
    g->level_max_area[l] = sa_max_d(g->level_max_area[l], area);
}

/* How far apart, along one axis, the centres of a query of side q and a box
 * of side at most m can be when the two reach IoU > t. Their intersection
 * is at most min(q, b) by min(q, b) on the other axis, so IoU > t needs an
 * overlap along this axis above t * max(q, b), and the overlap is at most
 * (q + b) / 2 - |centre distance|. The bound, (q + b) / 2 - t max(q, b),
 * is piecewise linear in b: its maximum over 0 < b <= m is at b = m or at
 * b = q. With t = 0 it is plain overlap: (q + m) / 2. */
SA_INLINE double sa_grid_reach(double q, double m, double t)
{
    const double at_m = (q + m) / 2 - t * sa_max_d(q, m);
    const double b = sa_min_d(q, m);
    const double at_q = (q + b) / 2 - t * q;
    return sa_max_d(at_m, at_q);
}

/* Calls visit(ctx, b) once for every inserted box b that could reach IoU >
 * min_iou with the query (centre qcx, qcy; sides qw, qh; area `area`), and
 * for some more; stops and returns 1 when visit returns nonzero. A level is
 * scanned whole when that is cheaper than its cells; a level whose areas
 * are all too small or too large for the IoU (IoU <= smaller area / larger
 * area) is skipped. The query's own level comes first, then the nearer
 * sizes, where a suppressing box is likeliest.
 *
 * The bounds hold in exact arithmetic for the true IoU; a computed IoU
 * exceeds the true one by a few rounding errors at most, so min_iou is
 * lowered by SA_IOU_SLACK first and the reach widened, which more than
 * covers it. */
#define SA_IOU_SLACK 1e-4
typedef int (*sa_grid_visitor)(void *ctx, int64_t b);

SA_INLINE int sa_grid_visit(const sa_grid *g, int own_level, double qcx, double qcy, double qw,
                            double qh, double area, double min_iou, sa_grid_visitor visit,
                            void *ctx)
{
    const double t = min_iou * (1 - SA_IOU_SLACK);
    for (int d = 0; d < 2 * g->n_levels; d++) {
        const int l = own_level + ((d & 1) ? -(d + 1) / 2 : d / 2);
        if (l < 0 || l >= g->n_levels)
            continue;
        const int64_t count = g->level_count[l];
        if (count == 0 || g->level_max_area[l] <= t * area || area <= t * g->level_min_area[l])
            continue;
        const double inv = g->inv_cell[l];
        const double rx_exact = sa_grid_reach(qw, g->max_w[l], t);
        const double ry_exact = sa_grid_reach(qh, g->max_h[l], t);
        if (rx_exact <= 0 || ry_exact <= 0)
            continue;
        /* Widened for the rounding of the centres, too (relative 2^-52). */
        const double rx = rx_exact * (1 + SA_IOU_SLACK) + 1e-12 * (fabs(qcx) + fabs(g->ox) + qw);
        const double ry = ry_exact * (1 + SA_IOU_SLACK) + 1e-12 * (fabs(qcy) + fabs(g->oy) + qh);
        const int64_t x_lo = sa_grid_cell(qcx - rx, g->ox, inv), x_hi = sa_grid_cell(qcx + rx, g->ox, inv);
        const int64_t y_lo = sa_grid_cell(qcy - ry, g->oy, inv), y_hi = sa_grid_cell(qcy + ry, g->oy, inv);
        const double cells = (double)(x_hi - x_lo + 1) * (double)(y_hi - y_lo + 1);
        if (cells >= (double)count) {
            for (int64_t b = g->level_head[l]; b >= 0; b = g->level_next[b])
                if (visit(ctx, b))
                    return 1;
            continue;
        }
        for (int64_t cy = y_lo; cy <= y_hi; cy++)
            for (int64_t cx = x_lo; cx <= x_hi; cx++)
                for (int64_t b = g->heads[sa_grid_hash(g, cx, cy, l)]; b >= 0; b = g->next[b])
                    if (g->level[b] == l && g->cell_x[b] == cx && g->cell_y[b] == cy && visit(ctx, b))
                        return 1;
    }
    return 0;
}

/* ------------------------------------------------ indexed max-heap (Soft-NMS) */

/* Positions ordered by (score desc, original index asc); scores are never
 * NaN (such boxes are dropped before). where[k] is k's slot, -1 once out. */
typedef struct {
    int64_t *slot;           /* heap array of positions */
    int64_t *where;
    ptrdiff_t size;
} sa_heap;

#define SA_T float
#define SA_SUF f32
#define SA_DESC_KEY sa_desc_key_f32
#include "_boxes_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_DESC_KEY

#define SA_T double
#define SA_SUF f64
#define SA_DESC_KEY sa_desc_key_f64
#include "_boxes_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_DESC_KEY

#endif /* SOFTARRAY_BOXES_KERNELS_H */
