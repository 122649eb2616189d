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
 * form. Two boxes can only reach IoU > t >= 0 when they intersect, with an
 * overlap along each axis above t times the larger side, which bounds how
 * far apart their centres can be. So each box is compared only with the
 * kept boxes whose centres are that close, found in a multi-level grid
 * (levels by box size, cells of about half the box size, stored CSR). The
 * kept set is exactly the quadratic algorithm's. Soft-NMS finds the boxes
 * near a selected one in the same grid and keeps the remaining boxes in an
 * indexed max-heap of current scores: selecting a box and decaying its
 * neighbours costs O(neighbours * log n), not O(n).
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
#include "_interrupt.h"

#ifndef SA_CAT
#define SA_CAT2(a, b) a##_##b
#define SA_CAT(a, b) SA_CAT2(a, b)
#endif

/* Grid levels: box sizes up to s0, 2 s0, 4 s0, ...; s0 >= extent / 2^24
 * (so cell indices stay far inside int64 and double), and fewer than 26
 * levels are ever used. */
#define SA_GRID_LEVELS 32
#define SA_GRID_FINEST (1.0 / 16777216.0)

/* Greedy NMS and Soft-NMS poll for an interrupt every this many boxes: a
 * box's grid query takes about a microsecond, so each poll reads the clock. */
#define SA_POLL_BOXES 256

/* Box formats of box_convert. */
enum { SA_FMT_XYXY = 0, SA_FMT_XYWH = 1, SA_FMT_CXCYWH = 2 };

/* The pairwise IoU kinds (plain: sa_box_iou_rows; the others:
 * sa_box_iou_variant_rows and the losses). */
enum { SA_IOU_PLAIN = 0, SA_IOU_GENERALIZED = 1, SA_IOU_DISTANCE = 2, SA_IOU_COMPLETE = 3 };
#define SA_PI 3.14159265358979323846

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
 * pass). tk and tv are scratch of n entries; the result is in keys, vals,
 * unless the call is interrupted (between passes; keys and vals are then
 * left in any order). */
static void sa_radix_sort(uint64_t *keys, int64_t *vals, ptrdiff_t n, int key_bytes,
                          uint64_t *tk, int64_t *tv, sa_interrupt *stop)
{
    uint64_t *src_k = keys, *dst_k = tk;
    int64_t *src_v = vals, *dst_v = tv;
    ptrdiff_t offset[256];
    if (n < 2)
        return;
    for (int byte = 0; byte < key_bytes; byte++) {
        const int shift = 8 * byte;
        if (sa_interrupt_poll(stop, n))
            return;
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

/* A multi-level grid over the boxes of one class, addressed by their
 * positions 0..m-1 in the class's arrays, built once. A box's level is set
 * by its larger side (level l: up to s0 * 2^l); within a level, boxes are
 * filed by the cell of their centre, cells being a quarter of the level's
 * largest width by a quarter of its largest height (coarser when that would
 * make more than SA_CELLS_PER_BOX cells per box of the level). Cells are stored row by row and their members contiguously (CSR),
 * so a query reads one contiguous run of boxes per row of cells it covers. */
#define SA_CELLS_PER_BOX 8
#define SA_CELLS_PER_SIDE 4
#define SA_CELLS_SPARE 16               /* extra cells a level may always have */
typedef struct {
    int64_t *cell_start;     /* per level, per cell: its first member; then the end */
    int64_t *members;        /* box positions, cell by cell, ascending within a cell */
    int8_t *level;           /* each box's level; -1: it overlaps nothing */
    double ox, oy;           /* the lowest corner of the boxes */
    int n_levels;            /* levels in use: 0 .. n_levels - 1 */
    double inv_cell_x[SA_GRID_LEVELS], inv_cell_y[SA_GRID_LEVELS];
    int64_t nx[SA_GRID_LEVELS], ny[SA_GRID_LEVELS], base[SA_GRID_LEVELS];
    double max_w[SA_GRID_LEVELS], max_h[SA_GRID_LEVELS];
    double min_area[SA_GRID_LEVELS], max_area[SA_GRID_LEVELS];
    int64_t count[SA_GRID_LEVELS];
} sa_grid;

/* Entries of cell_start a grid of m boxes may need. */
SA_INLINE ptrdiff_t sa_grid_cells_needed(ptrdiff_t m)
{
    return SA_CELLS_PER_BOX * m + SA_CELLS_SPARE * SA_GRID_LEVELS + 1;
}

SA_INLINE void sa_grid_init(sa_grid *g, int64_t *cell_start, int64_t *members, int8_t *level)
{
    g->cell_start = cell_start;
    g->cell_start[0] = 0;           /* no cells, no members, until sa_grid_shape */
    g->members = members;
    g->level = level;
    g->ox = g->oy = 0;
    g->n_levels = 0;
    for (int l = 0; l < SA_GRID_LEVELS; l++) {
        g->inv_cell_x[l] = g->inv_cell_y[l] = 0;
        g->nx[l] = g->ny[l] = g->base[l] = 0;
        g->max_w[l] = g->max_h[l] = 0;
        g->min_area[l] = INFINITY;
        g->max_area[l] = 0;
        g->count[l] = 0;
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

/* Note a box of level l with sides w, h and the given area. */
SA_INLINE void sa_grid_note(sa_grid *g, int l, double w, double h, double area)
{
    g->max_w[l] = sa_max_d(g->max_w[l], w);
    g->max_h[l] = sa_max_d(g->max_h[l], h);
    g->min_area[l] = sa_min_d(g->min_area[l], area);
    g->max_area[l] = sa_max_d(g->max_area[l], area);
    g->count[l]++;
    g->n_levels = l + 1 > g->n_levels ? l + 1 : g->n_levels;
}

/* After every box is noted: each level's cells over the extent
 * [ox, hx] x [oy, hy] of the boxes, and the zeroed cell counts. */
SA_INLINE void sa_grid_shape(sa_grid *g, double ox, double oy, double hx, double hy)
{
    g->ox = ox;
    g->oy = oy;
    int64_t total = 0;
    for (int l = 0; l < g->n_levels; l++) {
        if (g->count[l] == 0)
            continue;
        /* Cells follow the level's widths and heights apart, so long thin
         * boxes get long thin cells; the axis with more cells coarsens first. */
        double cell_x = g->max_w[l] / SA_CELLS_PER_SIDE, cell_y = g->max_h[l] / SA_CELLS_PER_SIDE;
        const double limit = (double)(SA_CELLS_PER_BOX * g->count[l] + SA_CELLS_SPARE);
        double nx, ny;
        for (;;) {
            nx = floor((hx - ox) / cell_x) + 1;
            ny = floor((hy - oy) / cell_y) + 1;
            if (nx * ny <= limit)
                break;
            if (nx > ny)
                cell_x *= 2;
            else
                cell_y *= 2;
        }
        g->inv_cell_x[l] = 1 / cell_x;
        g->inv_cell_y[l] = 1 / cell_y;
        g->nx[l] = (int64_t)nx;
        g->ny[l] = (int64_t)ny;
        g->base[l] = total;
        total += g->nx[l] * g->ny[l];
    }
    for (int64_t i = 0; i <= total; i++)
        g->cell_start[i] = 0;
}

/* The cell index of coordinate v, clamped to [0, n): floor((v - origin) *
 * inv_cell), by truncation (floor is a library call on baseline x86-64);
 * the value is clamped before the conversion, so it always fits. */
SA_INLINE int64_t sa_grid_index(double v, double origin, double inv_cell, int64_t n)
{
    double x = (v - origin) * inv_cell;
    x = x < 0 ? 0 : (x > (double)(n - 1) ? (double)(n - 1) : x);
    return (int64_t)x;              /* x >= 0: truncation is floor */
}

/* The cell of a box of level l centred at (cx, cy). */
SA_INLINE int64_t sa_grid_cell_of(const sa_grid *g, int l, double cx, double cy)
{
    return g->base[l] + sa_grid_index(cy, g->oy, g->inv_cell_y[l], g->ny[l]) * g->nx[l]
           + sa_grid_index(cx, g->ox, g->inv_cell_x[l], g->nx[l]);
}

/* Counting sort of the boxes into cells, in two calls: first count every
 * box's cell (sa_grid_count), then sa_grid_prefix, then place every box in
 * increasing position order (sa_grid_place), then sa_grid_close. */
SA_INLINE void sa_grid_count(sa_grid *g, int l, double cx, double cy)
{
    g->cell_start[sa_grid_cell_of(g, l, cx, cy) + 1]++;
}

/* Cells of all levels. */
SA_INLINE int64_t sa_grid_total_cells(const sa_grid *g)
{
    int64_t total = 0;
    for (int l = 0; l < g->n_levels; l++)
        total += g->nx[l] * g->ny[l];
    return total;
}

SA_INLINE void sa_grid_prefix(sa_grid *g)
{
    const int64_t total = sa_grid_total_cells(g);
    for (int64_t i = 1; i <= total; i++)
        g->cell_start[i] += g->cell_start[i - 1];
}

SA_INLINE void sa_grid_place(sa_grid *g, ptrdiff_t k, int l, double cx, double cy)
{
    g->members[g->cell_start[sa_grid_cell_of(g, l, cx, cy)]++] = k;
}

/* Placing advanced every cell's start to its end, the next cell's start:
 * shift them back. */
SA_INLINE void sa_grid_close(sa_grid *g)
{
    for (int64_t i = sa_grid_total_cells(g); i > 0; i--)
        g->cell_start[i] = g->cell_start[i - 1];
    g->cell_start[0] = 0;
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

/* Calls visit(ctx, i) once for the slot i of every box of the grid that could reach IoU
 * > min_iou with the query (centre qcx, qcy; sides qw, qh; area `area`),
 * and for some more; stops and returns 1 when visit returns nonzero. A
 * level whose areas are all too small or too large for the IoU (IoU <=
 * smaller area / larger area) is skipped. The query's own level comes
 * first, then the nearer sizes, where a suppressing box is likeliest.
 *
 * The bounds hold in exact arithmetic for the true IoU; a computed IoU
 * exceeds the true one by a few rounding errors at most, so min_iou is
 * lowered by SA_IOU_SLACK first and the reach widened, which more than
 * covers it, and the rounding of the centres (relative 2^-52). */
#define SA_IOU_SLACK 1e-4
/* Called with a grid slot i (the box is members[i]). */
typedef int (*sa_grid_visitor)(void *ctx, int64_t i);

SA_INLINE int sa_grid_visit(const sa_grid *g, int own_level, double qcx, double qcy, double qw,
                            double qh, double area, double min_iou, sa_grid_visitor visit,
                            void *ctx)
{
    const double t = min_iou * (1 - SA_IOU_SLACK);
    for (int d = 0; d < 2 * g->n_levels; d++) {
        const int l = own_level + ((d & 1) ? -(d + 1) / 2 : d / 2);
        if (l < 0 || l >= g->n_levels || g->count[l] == 0
                || g->max_area[l] <= t * area || area <= t * g->min_area[l])
            continue;
        const double rx_exact = sa_grid_reach(qw, g->max_w[l], t);
        const double ry_exact = sa_grid_reach(qh, g->max_h[l], t);
        if (rx_exact <= 0 || ry_exact <= 0)
            continue;
        const double rx = rx_exact * (1 + SA_IOU_SLACK) + 1e-12 * (fabs(qcx) + fabs(g->ox) + qw);
        const double ry = ry_exact * (1 + SA_IOU_SLACK) + 1e-12 * (fabs(qcy) + fabs(g->oy) + qh);
        const double inv_x = g->inv_cell_x[l], inv_y = g->inv_cell_y[l];
        const int64_t x_lo = sa_grid_index(qcx - rx, g->ox, inv_x, g->nx[l]);
        const int64_t x_hi = sa_grid_index(qcx + rx, g->ox, inv_x, g->nx[l]);
        const int64_t y_lo = sa_grid_index(qcy - ry, g->oy, inv_y, g->ny[l]);
        const int64_t y_hi = sa_grid_index(qcy + ry, g->oy, inv_y, g->ny[l]);
        for (int64_t y = y_lo; y <= y_hi; y++) {
            const int64_t row = g->base[l] + y * g->nx[l];
            const int64_t stop = g->cell_start[row + x_hi + 1];
            for (int64_t i = g->cell_start[row + x_lo]; i < stop; i++)
                if (visit(ctx, i))
                    return 1;
        }
    }
    return 0;
}


#define SA_T float
#define SA_SUF f32
#define SA_DESC_KEY sa_desc_key_f32
#define SA_ATAN atanf
#include "_boxes_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_DESC_KEY
#undef SA_ATAN

#define SA_T double
#define SA_SUF f64
#define SA_DESC_KEY sa_desc_key_f64
#define SA_ATAN atan
#include "_boxes_impl.h"
#undef SA_T
#undef SA_SUF
#undef SA_DESC_KEY
#undef SA_ATAN

#endif /* SOFTARRAY_BOXES_KERNELS_H */
