/*
 * Type-generic body of the box kernels; included once per type by
 * _boxes_kernels.h with SA_T (float or double), SA_SUF (f32 or f64) and
 * SA_DESC_KEY defined. Boxes are read as (n, 4) arrays (x1, y1, x2, y2)
 * with strides in elements.
 */
#define SA_FN(name) SA_CAT(name, SA_SUF)

/* One class's boxes as columns, in the order of processing. */
typedef struct {
    SA_T *x1, *y1, *x2, *y2, *area;
} SA_FN(sa_columns);

/* torchvision's box_area, unclamped: negative for an inverted box. */
SA_INLINE SA_T SA_FN(sa_area)(SA_T x1, SA_T y1, SA_T x2, SA_T y2) { return (x2 - x1) * (y2 - y1); }

/* Entries [begin, end) of the columns of boxes order[0..) (boxes 0.. when
 * order is NULL), areas included. */
static void SA_FN(sa_gather_columns)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1,
                                     const int64_t *order, ptrdiff_t begin, ptrdiff_t end,
                                     SA_FN(sa_columns) *c)
{
    for (ptrdiff_t k = begin; k < end; k++) {
        const SA_T *b = boxes + (order ? order[k] : k) * s0;
        c->x1[k] = b[0];
        c->y1[k] = b[s1];
        c->x2[k] = b[2 * s1];
        c->y2[k] = b[3 * s1];
        c->area[k] = SA_FN(sa_area)(b[0], b[s1], b[2 * s1], b[3 * s1]);
    }
}

/* ------------------------------------------------------ area, convert, IoU */

static void SA_FN(sa_box_area)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1, ptrdiff_t n, SA_T *out)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        const SA_T *b = boxes + i * s0;
        out[i] = SA_FN(sa_area)(b[0], b[s1], b[2 * s1], b[3 * s1]);
    }
}

/* torchvision's box_convert, operation for operation: any format goes
 * through xyxy. out is (n, 4) contiguous. */
static void SA_FN(sa_box_convert)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1, ptrdiff_t n,
                                  int in_fmt, int out_fmt, SA_T *out)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        const SA_T *b = boxes + i * s0;
        SA_T p = b[0], q = b[s1], r = b[2 * s1], s = b[3 * s1];
        SA_T x1 = p, y1 = q, x2 = r, y2 = s;
        if (in_fmt == SA_FMT_XYWH) {
            x2 = p + r;
            y2 = q + s;
        } else if (in_fmt == SA_FMT_CXCYWH) {
            x1 = p - (SA_T)0.5 * r;
            y1 = q - (SA_T)0.5 * s;
            x2 = p + (SA_T)0.5 * r;
            y2 = q + (SA_T)0.5 * s;
        }
        SA_T *o = out + 4 * i;
        if (out_fmt == SA_FMT_XYXY) {
            o[0] = x1; o[1] = y1; o[2] = x2; o[3] = y2;
        } else if (out_fmt == SA_FMT_XYWH) {
            o[0] = x1; o[1] = y1; o[2] = x2 - x1; o[3] = y2 - y1;
        } else {
            o[0] = (x1 + x2) / 2; o[1] = (y1 + y2) / 2; o[2] = x2 - x1; o[3] = y2 - y1;
        }
    }
}

/* max and min that return NaN when either operand is NaN (torch.max,
 * torch.min), and clamp(min=0) that keeps NaN (torch.clamp). */
SA_INLINE SA_T SA_FN(sa_max_nan)(SA_T a, SA_T b) { return (a > b || a != a) ? a : b; }
SA_INLINE SA_T SA_FN(sa_min_nan)(SA_T a, SA_T b) { return (a < b || a != a) ? a : b; }
SA_INLINE SA_T SA_FN(sa_clamp0)(SA_T v) { return v < 0 ? (SA_T)0 : v; }

/* Rows [begin, end) of the IoU matrix of boxes a against the columns of b
 * (torchvision's box_iou: union = area_a + area_b - inter). */
SA_DISPATCHED(SA_FN(sa_box_iou_rows), (const SA_T *a, ptrdiff_t s0, ptrdiff_t s1, ptrdiff_t begin,
                                       ptrdiff_t end, const SA_FN(sa_columns) *b, ptrdiff_t m,
                                       SA_T *out, ptrdiff_t out_stride),
              (a, s0, s1, begin, end, b, m, out, out_stride))
{
    for (ptrdiff_t i = begin; i < end; i++) {
        const SA_T *r = a + i * s0;
        const SA_T x1 = r[0], y1 = r[s1], x2 = r[2 * s1], y2 = r[3 * s1];
        const SA_T area = SA_FN(sa_area)(x1, y1, x2, y2);
        SA_T *o = out + i * out_stride;
#pragma omp simd
        for (ptrdiff_t j = 0; j < m; j++) {
            const SA_T w = SA_FN(sa_clamp0)(SA_FN(sa_min_nan)(x2, b->x2[j]) - SA_FN(sa_max_nan)(x1, b->x1[j]));
            const SA_T h = SA_FN(sa_clamp0)(SA_FN(sa_min_nan)(y2, b->y2[j]) - SA_FN(sa_max_nan)(y1, b->y1[j]));
            const SA_T inter = w * h;
            o[j] = inter / (area + b->area[j] - inter);
        }
    }
}

/* Rows [begin, end) of the generalized (SA_IOU_GENERALIZED), distance
 * (SA_IOU_DISTANCE) or complete (SA_IOU_COMPLETE) IoU matrix of boxes a
 * against the columns of b, with torchvision's formulas operation for
 * operation: inter and union as in box_iou; the enclosing box's sides
 * clamped at 0; GIoU = iou - (enclosing - union) / enclosing; DIoU = iou -
 * centre distance^2 / (enclosing diagonal^2 + eps); CIoU = DIoU - alpha v
 * with v = 4/pi^2 (atan(w_a/h_a) - atan(w_b/h_b))^2 and alpha = v / (1 -
 * iou + v + eps). a_atan and b_atan hold each box's atan(w/h) (CIoU only;
 * the same value torchvision computes per pair). */
SA_DISPATCHED(SA_FN(sa_box_iou_variant_rows),
              (const SA_T *a, ptrdiff_t s0, ptrdiff_t s1, ptrdiff_t begin, ptrdiff_t end,
               const SA_FN(sa_columns) *b, const SA_T *a_atan, const SA_T *b_atan, ptrdiff_t m,
               int kind, SA_T eps, SA_T *out, ptrdiff_t out_stride),
              (a, s0, s1, begin, end, b, a_atan, b_atan, m, kind, eps, out, out_stride))
{
    const SA_T four_over_pi2 = (SA_T)(4.0 / (SA_PI * SA_PI));
    for (ptrdiff_t i = begin; i < end; i++) {
        const SA_T *r = a + i * s0;
        const SA_T x1 = r[0], y1 = r[s1], x2 = r[2 * s1], y2 = r[3 * s1];
        const SA_T area = SA_FN(sa_area)(x1, y1, x2, y2);
        const SA_T cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
        SA_T *o = out + i * out_stride;
        if (kind == SA_IOU_GENERALIZED) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < m; j++) {
                const SA_T w = SA_FN(sa_clamp0)(SA_FN(sa_min_nan)(x2, b->x2[j]) - SA_FN(sa_max_nan)(x1, b->x1[j]));
                const SA_T h = SA_FN(sa_clamp0)(SA_FN(sa_min_nan)(y2, b->y2[j]) - SA_FN(sa_max_nan)(y1, b->y1[j]));
                const SA_T inter = w * h;
                const SA_T uni = area + b->area[j] - inter;
                const SA_T ew = SA_FN(sa_clamp0)(SA_FN(sa_max_nan)(x2, b->x2[j]) - SA_FN(sa_min_nan)(x1, b->x1[j]));
                const SA_T eh = SA_FN(sa_clamp0)(SA_FN(sa_max_nan)(y2, b->y2[j]) - SA_FN(sa_min_nan)(y1, b->y1[j]));
                const SA_T enclosing = ew * eh;
                o[j] = inter / uni - (enclosing - uni) / enclosing;
            }
        } else {
            const SA_T at = kind == SA_IOU_COMPLETE ? a_atan[i] : 0;
#pragma omp simd
            for (ptrdiff_t j = 0; j < m; j++) {
                const SA_T w = SA_FN(sa_clamp0)(SA_FN(sa_min_nan)(x2, b->x2[j]) - SA_FN(sa_max_nan)(x1, b->x1[j]));
                const SA_T h = SA_FN(sa_clamp0)(SA_FN(sa_min_nan)(y2, b->y2[j]) - SA_FN(sa_max_nan)(y1, b->y1[j]));
                const SA_T inter = w * h;
                const SA_T iou = inter / (area + b->area[j] - inter);
                const SA_T ew = SA_FN(sa_clamp0)(SA_FN(sa_max_nan)(x2, b->x2[j]) - SA_FN(sa_min_nan)(x1, b->x1[j]));
                const SA_T eh = SA_FN(sa_clamp0)(SA_FN(sa_max_nan)(y2, b->y2[j]) - SA_FN(sa_min_nan)(y1, b->y1[j]));
                const SA_T diagonal = ew * ew + eh * eh + eps;
                const SA_T dx = cx - (b->x1[j] + b->x2[j]) / 2, dy = cy - (b->y1[j] + b->y2[j]) / 2;
                const SA_T diou = iou - (dx * dx + dy * dy) / diagonal;
                if (kind == SA_IOU_COMPLETE) {
                    const SA_T d = at - b_atan[j];
                    const SA_T v = four_over_pi2 * (d * d);
                    const SA_T alpha = v / ((SA_T)1 - iou + v + eps);
                    o[j] = diou - alpha * v;
                } else {
                    o[j] = diou;
                }
            }
        }
    }
}

/* The share of d max(p, q) (torch.maximum) or d min(p, q) (torch.minimum)
 * that goes to p: 1, 0, or 1/2 at a tie, as torch's backward splits it. */
SA_INLINE SA_T SA_FN(sa_max_share)(SA_T p, SA_T q) { return p > q ? (SA_T)1 : (p == q ? (SA_T)0.5 : (SA_T)0); }
SA_INLINE SA_T SA_FN(sa_min_share)(SA_T p, SA_T q) { return p < q ? (SA_T)1 : (p == q ? (SA_T)0.5 : (SA_T)0); }

/* Losses of pairs [begin, end) of boxes a and b ((n, 4) with strides):
 * torchvision's generalized (SA_IOU_GENERALIZED), distance (SA_IOU_DISTANCE)
 * or complete (SA_IOU_COMPLETE) box IoU loss, operation for operation (the
 * complete loss takes its IoU and diagonal with eps 1e-7, as torchvision's
 * does, and eps only in alpha, which is held constant). With ga and gb
 * (contiguous (n, 4)) also the gradients of the loss, times scale at the end
 * (as a Dask block's are scaled after), by torch autograd's
 * rules: max/min split ties in half, the intersection has no gradient where
 * the boxes do not overlap. */
static void SA_FN(sa_box_loss)(const SA_T *a, ptrdiff_t as0, ptrdiff_t as1, const SA_T *b,
                               ptrdiff_t bs0, ptrdiff_t bs1, ptrdiff_t begin, ptrdiff_t end,
                               int kind, SA_T eps, SA_T scale, SA_T *loss, SA_T *ga, SA_T *gb)
{
    const SA_T four_over_pi2 = (SA_T)(4.0 / (SA_PI * SA_PI));
    const SA_T inner_eps = kind == SA_IOU_COMPLETE ? (SA_T)1e-7 : eps;
    for (ptrdiff_t i = begin; i < end; i++) {
        const SA_T *p = a + i * as0, *q = b + i * bs0;
        const SA_T x1 = p[0], y1 = p[as1], x2 = p[2 * as1], y2 = p[3 * as1];
        const SA_T u1 = q[0], v1 = q[bs1], u2 = q[2 * bs1], v2 = q[3 * bs1];
        /* intersection and union */
        const SA_T xk1 = SA_FN(sa_max_nan)(x1, u1), yk1 = SA_FN(sa_max_nan)(y1, v1);
        const SA_T xk2 = SA_FN(sa_min_nan)(x2, u2), yk2 = SA_FN(sa_min_nan)(y2, v2);
        const int hit = (yk2 > yk1) && (xk2 > xk1);
        const SA_T iw = xk2 - xk1, ih = yk2 - yk1;
        const SA_T inter = hit ? iw * ih : (SA_T)0;
        const SA_T w1 = x2 - x1, h1 = y2 - y1, w2 = u2 - u1, h2 = v2 - v1;
        const SA_T uni = w1 * h1 + w2 * h2 - inter;
        const SA_T den = uni + inner_eps;
        const SA_T iou = inter / den;
        /* the enclosing box */
        const SA_T xc1 = SA_FN(sa_min_nan)(x1, u1), yc1 = SA_FN(sa_min_nan)(y1, v1);
        const SA_T xc2 = SA_FN(sa_max_nan)(x2, u2), yc2 = SA_FN(sa_max_nan)(y2, v2);
        const SA_T cw = xc2 - xc1, ch = yc2 - yc1;
        SA_T value, g_uni = 0, g_cw = 0, g_ch = 0, g_dx = 0, g_dy = 0;
        SA_T g_w1 = 0, g_h1 = 0, g_w2 = 0, g_h2 = 0;
        const SA_T g_iou = -1;
        if (kind == SA_IOU_GENERALIZED) {
            const SA_T area_c = cw * ch, cden = area_c + eps;
            const SA_T gap = area_c - uni;
            value = (SA_T)1 - (iou - gap / cden);
            const SA_T g_area_c = (SA_T)1 / cden - gap / (cden * cden);
            g_uni = -(SA_T)1 / cden;
            g_cw = g_area_c * ch;
            g_ch = g_area_c * cw;
        } else {
            const SA_T diagonal = cw * cw + ch * ch + inner_eps;
            const SA_T dx = (x2 + x1) / 2 - (u1 + u2) / 2, dy = (y2 + y1) / 2 - (v1 + v2) / 2;
            const SA_T rho = dx * dx + dy * dy;
            value = (SA_T)1 - iou + rho / diagonal;
            const SA_T g_rho = (SA_T)1 / diagonal;
            const SA_T g_diagonal = -rho / (diagonal * diagonal);
            g_cw = 2 * cw * g_diagonal;
            g_ch = 2 * ch * g_diagonal;
            g_dx = 2 * dx * g_rho;
            g_dy = 2 * dy * g_rho;
            if (kind == SA_IOU_COMPLETE) {
                const SA_T r2 = w2 / h2, r1 = w1 / h1;
                const SA_T t = SA_ATAN(r2) - SA_ATAN(r1);
                const SA_T v = four_over_pi2 * (t * t);
                const SA_T alpha = v / ((SA_T)1 - iou + v + eps);
                value = value + alpha * v;
                const SA_T g_t = alpha * four_over_pi2 * 2 * t;
                const SA_T g_r2 = g_t / (1 + r2 * r2), g_r1 = -g_t / (1 + r1 * r1);
                g_w2 += g_r2 / h2;
                g_h2 -= g_r2 * w2 / (h2 * h2);
                g_w1 += g_r1 / h1;
                g_h1 -= g_r1 * w1 / (h1 * h1);
            }
        }
        loss[i] = value;
        if (!ga)
            continue;
        /* iou = inter / den, den = union + eps, union = w1 h1 + w2 h2 - inter */
        g_uni += -g_iou * inter / (den * den);
        const SA_T g_inter = g_iou / den - g_uni;
        g_w1 += g_uni * h1;
        g_h1 += g_uni * w1;
        g_w2 += g_uni * h2;
        g_h2 += g_uni * w2;
        const SA_T g_iw = hit ? g_inter * ih : (SA_T)0, g_ih = hit ? g_inter * iw : (SA_T)0;
        /* iw = xk2 - xk1, cw = xc2 - xc1 and their y twins, through max/min */
        SA_T *ra = ga + 4 * i, *rb = gb + 4 * i;
        const SA_T sx1 = SA_FN(sa_max_share)(x1, u1), sy1 = SA_FN(sa_max_share)(y1, v1);
        const SA_T sx2 = SA_FN(sa_min_share)(x2, u2), sy2 = SA_FN(sa_min_share)(y2, v2);
        const SA_T cx1 = SA_FN(sa_min_share)(x1, u1), cy1 = SA_FN(sa_min_share)(y1, v1);
        const SA_T cx2 = SA_FN(sa_max_share)(x2, u2), cy2 = SA_FN(sa_max_share)(y2, v2);
        const SA_T tx1 = SA_FN(sa_max_share)(u1, x1), ty1 = SA_FN(sa_max_share)(v1, y1);
        const SA_T tx2 = SA_FN(sa_min_share)(u2, x2), ty2 = SA_FN(sa_min_share)(v2, y2);
        const SA_T dx1 = SA_FN(sa_min_share)(u1, x1), dy1 = SA_FN(sa_min_share)(v1, y1);
        const SA_T dx2 = SA_FN(sa_max_share)(u2, x2), dy2 = SA_FN(sa_max_share)(v2, y2);
        ra[0] = (-g_w1 - sx1 * g_iw - cx1 * g_cw + g_dx / 2) * scale;
        ra[1] = (-g_h1 - sy1 * g_ih - cy1 * g_ch + g_dy / 2) * scale;
        ra[2] = (g_w1 + sx2 * g_iw + cx2 * g_cw + g_dx / 2) * scale;
        ra[3] = (g_h1 + sy2 * g_ih + cy2 * g_ch + g_dy / 2) * scale;
        rb[0] = (-g_w2 - tx1 * g_iw - dx1 * g_cw - g_dx / 2) * scale;
        rb[1] = (-g_h2 - ty1 * g_ih - dy1 * g_ch - g_dy / 2) * scale;
        rb[2] = (g_w2 + tx2 * g_iw + dx2 * g_cw - g_dx / 2) * scale;
        rb[3] = (g_h2 + ty2 * g_ih + dy2 * g_ch - g_dy / 2) * scale;
    }
}

/* --------------------------------------------------------- overlap tests */

/* IoU of box i of a and box j of b when they intersect with positive area,
 * else 0 (the pair can then neither suppress nor decay). i's area comes
 * first in the union, as in torchvision's kernel where i is the kept box. */
SA_INLINE SA_T SA_FN(sa_pair_iou)(const SA_FN(sa_columns) *a, int64_t i, const SA_FN(sa_columns) *b,
                                  int64_t j)
{
    const SA_T xx1 = a->x1[i] > b->x1[j] ? a->x1[i] : b->x1[j];
    const SA_T xx2 = a->x2[i] < b->x2[j] ? a->x2[i] : b->x2[j];
    const SA_T w = xx2 - xx1;
    if (!(w > 0))
        return 0;
    const SA_T yy1 = a->y1[i] > b->y1[j] ? a->y1[i] : b->y1[j];
    const SA_T yy2 = a->y2[i] < b->y2[j] ? a->y2[i] : b->y2[j];
    const SA_T h = yy2 - yy1;
    if (!(h > 0))
        return 0;
    const SA_T inter = w * h;
    return inter / (a->area[i] + b->area[j] - inter);
}

/* Sides and centre of box k of c, in double. */
SA_INLINE double SA_FN(sa_width)(const SA_FN(sa_columns) *c, ptrdiff_t k) { return (double)c->x2[k] - (double)c->x1[k]; }
SA_INLINE double SA_FN(sa_height)(const SA_FN(sa_columns) *c, ptrdiff_t k) { return (double)c->y2[k] - (double)c->y1[k]; }
SA_INLINE double SA_FN(sa_centre_x)(const SA_FN(sa_columns) *c, ptrdiff_t k) { return ((double)c->x1[k] + (double)c->x2[k]) / 2; }
SA_INLINE double SA_FN(sa_centre_y)(const SA_FN(sa_columns) *c, ptrdiff_t k) { return ((double)c->y1[k] + (double)c->y2[k]) / 2; }

/* Build the grid over boxes 0..m) of c: each box's level, or -1 for a box
 * that overlaps nothing, then the cells. Returns 1 (the grid unfinished)
 * when the call is interrupted. */
static int SA_FN(sa_grid_build)(sa_grid *g, const SA_FN(sa_columns) *c, ptrdiff_t m,
                                sa_interrupt *stop)
{
    double ox = INFINITY, oy = INFINITY, hx = -INFINITY, hy = -INFINITY, min_size = INFINITY;
    for (ptrdiff_t k = 0; k < m; k++) {
        const SA_T x1 = c->x1[k], y1 = c->y1[k], x2 = c->x2[k], y2 = c->y2[k];
        const int ok = isfinite(x1) && isfinite(y1) && isfinite(x2) && isfinite(y2) && x2 > x1 && y2 > y1;
        g->level[k] = ok ? 0 : -1;
        if (!ok)
            continue;
        ox = sa_min_d(ox, x1);
        oy = sa_min_d(oy, y1);
        hx = sa_max_d(hx, x2);
        hy = sa_max_d(hy, y2);
        min_size = sa_min_d(min_size, sa_max_d(SA_FN(sa_width)(c, k), SA_FN(sa_height)(c, k)));
    }
    if (!(min_size < INFINITY))
        return 0;                                   /* nothing can overlap */
    const double s0 = sa_max_d(min_size, sa_max_d(hx - ox, hy - oy) * SA_GRID_FINEST);
    if (sa_interrupt_poll(stop, m))
        return 1;
    for (ptrdiff_t k = 0; k < m; k++) {
        if (g->level[k] < 0)
            continue;
        const double w = SA_FN(sa_width)(c, k), h = SA_FN(sa_height)(c, k);
        g->level[k] = sa_grid_level_of(sa_max_d(w, h), s0);
        sa_grid_note(g, g->level[k], w, h, (double)c->area[k]);
    }
    sa_grid_shape(g, ox, oy, hx, hy);
    for (ptrdiff_t k0 = 0, end; k0 < m; k0 = end) {
        end = sa_interrupt_block_end(k0, m);
        if (sa_interrupt_poll(stop, end - k0))
            return 1;
        for (ptrdiff_t k = k0; k < end; k++)
            if (g->level[k] >= 0)
                sa_grid_count(g, g->level[k], SA_FN(sa_centre_x)(c, k), SA_FN(sa_centre_y)(c, k));
    }
    sa_grid_prefix(g);
    for (ptrdiff_t k0 = 0, end; k0 < m; k0 = end) {
        end = sa_interrupt_block_end(k0, m);
        if (sa_interrupt_poll(stop, end - k0))
            return 1;
        for (ptrdiff_t k = k0; k < end; k++)
            if (g->level[k] >= 0)
                sa_grid_place(g, k, g->level[k], SA_FN(sa_centre_x)(c, k), SA_FN(sa_centre_y)(c, k));
    }
    sa_grid_close(g);
    return 0;
}

/* Visit the boxes of g that could reach IoU > min_iou with box k. */
SA_INLINE int SA_FN(sa_visit_near)(const sa_grid *g, const SA_FN(sa_columns) *c, ptrdiff_t k,
                                   double min_iou, sa_grid_visitor visit, void *ctx)
{
    return sa_grid_visit(g, g->level[k], SA_FN(sa_centre_x)(c, k), SA_FN(sa_centre_y)(c, k),
                         SA_FN(sa_width)(c, k), SA_FN(sa_height)(c, k), (double)c->area[k],
                         min_iou, visit, ctx);
}

/* Soft-NMS's max-heap of remaining boxes, lazy for decreases: each entry
 * holds a key, a score its box had; entries are ordered by (key desc,
 * original index asc). A decayed score is only written to the box's score;
 * when an entry whose key is above its box's score reaches the top it is
 * re-keyed and sifted down, so a box decayed many times between two
 * visits of the top costs one sift, not one per decay. A box that drops
 * below the threshold gets score NaN and leaves when it reaches the top.
 * (A negative score rises as it decays: that entry is re-keyed and sifted
 * up at once, keeping every key >= its box's score.) */
typedef struct {
    SA_T *key;
    int64_t *pos;               /* heap entry -> box position */
    int64_t *where;             /* box position -> heap entry, -1 once out */
    ptrdiff_t size;
} SA_FN(sa_heap);

/* One class's working memory: its boxes by position (the order of
 * processing) and the same boxes by grid slot, which a query reads as
 * contiguous runs. */
typedef struct {
    SA_FN(sa_columns) c;        /* by position */
    SA_FN(sa_columns) sc;       /* by grid slot */
    int64_t *slot_of;           /* position -> grid slot (boxes in the grid) */
    int8_t *flag;               /* by slot: NMS kept, Soft-NMS remaining */
    SA_T *score;                /* Soft-NMS: current scores, by position */
    sa_grid g;
    SA_FN(sa_heap) h;
} SA_FN(sa_work);

/* Gather boxes order[0..m) and build their grid and slot-ordered copy;
 * 1 (unfinished) when the call is interrupted. */
static int SA_FN(sa_work_prepare)(SA_FN(sa_work) *w, const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1,
                                  const int64_t *order, ptrdiff_t m, sa_interrupt *stop)
{
    for (ptrdiff_t k = 0, end; k < m; k = end) {
        end = sa_interrupt_block_end(k, m);
        if (sa_interrupt_poll(stop, end - k))
            return 1;
        SA_FN(sa_gather_columns)(boxes, s0, s1, order, k, end, &w->c);
    }
    if (SA_FN(sa_grid_build)(&w->g, &w->c, m, stop))
        return 1;
    const int64_t slots = w->g.cell_start[sa_grid_total_cells(&w->g)];
    for (int64_t i0 = 0, end; i0 < slots; i0 = end) {
        end = sa_interrupt_block_end(i0, slots);
        if (sa_interrupt_poll(stop, end - i0))
            return 1;
        for (int64_t i = i0; i < end; i++) {
            const int64_t b = w->g.members[i];
            w->sc.x1[i] = w->c.x1[b];
            w->sc.y1[i] = w->c.y1[b];
            w->sc.x2[i] = w->c.x2[b];
            w->sc.y2[i] = w->c.y2[b];
            w->sc.area[i] = w->c.area[b];
            w->slot_of[b] = i;
            w->flag[i] = 0;
        }
    }
    return 0;
}

/* ----------------------------------------------------------- greedy NMS */

typedef struct {
    const SA_FN(sa_work) *w;
    int64_t query;
    double threshold;
} SA_FN(sa_nms_query);

/* Is the box in slot i kept, and does it suppress the query (IoU strictly
 * above the threshold, compared in double as torchvision does)? */
SA_INLINE int SA_FN(sa_nms_suppresses)(void *ctx, int64_t i)
{
    const SA_FN(sa_nms_query) *q = (const SA_FN(sa_nms_query) *)ctx;
    return q->w->flag[i]
           && (double)SA_FN(sa_pair_iou)(&q->w->sc, i, &q->w->c, q->query) > q->threshold;
}

/* Greedy NMS of one class: boxes order[0..m) are in the order of
 * processing (score desc, index asc). Writes the kept original indices to
 * keep (at most max_keep) and returns their count (a partial count when
 * the call is interrupted). */
static ptrdiff_t SA_FN(sa_nms_class)(SA_FN(sa_work) *w, const SA_T *boxes, ptrdiff_t s0,
                                     ptrdiff_t s1, const int64_t *order, ptrdiff_t m,
                                     double threshold, ptrdiff_t max_keep, int64_t *keep,
                                     sa_interrupt *stop)
{
    if (SA_FN(sa_work_prepare)(w, boxes, s0, s1, order, m, stop))
        return 0;
    SA_FN(sa_nms_query) q = {w, 0, threshold};
    ptrdiff_t n_kept = 0;
    for (ptrdiff_t k = 0; k < m && n_kept < max_keep; k++) {
        if (k % SA_POLL_BOXES == 0 && sa_interrupt_poll(stop, SA_INTERRUPT_WORK))
            break;
        if (w->g.level[k] >= 0) {
            q.query = k;
            if (SA_FN(sa_visit_near)(&w->g, &w->c, k, threshold, SA_FN(sa_nms_suppresses), &q))
                continue;
            w->flag[w->slot_of[k]] = 1;
        }
        keep[n_kept++] = order[k];
    }
    return n_kept;
}

/* -------------------------------------------------------------- Soft-NMS */

/* Heap entry i before entry j: a larger key, or an equal key and a lower
 * original index. */
SA_INLINE int SA_FN(sa_heap_before)(const SA_FN(sa_heap) *h, const int64_t *index, ptrdiff_t i,
                                    ptrdiff_t j)
{
    return h->key[i] > h->key[j] || (h->key[i] == h->key[j] && index[h->pos[i]] < index[h->pos[j]]);
}

SA_INLINE void SA_FN(sa_heap_swap)(SA_FN(sa_heap) *h, ptrdiff_t i, ptrdiff_t j)
{
    const SA_T key = h->key[i];
    const int64_t pos = h->pos[i];
    h->key[i] = h->key[j];
    h->pos[i] = h->pos[j];
    h->key[j] = key;
    h->pos[j] = pos;
    h->where[h->pos[i]] = i;
    h->where[h->pos[j]] = j;
}

static void SA_FN(sa_heap_sift_down)(SA_FN(sa_heap) *h, const int64_t *index, ptrdiff_t i)
{
    for (;;) {
        ptrdiff_t child = 2 * i + 1;
        if (child >= h->size)
            return;
        if (child + 1 < h->size && SA_FN(sa_heap_before)(h, index, child + 1, child))
            child++;
        if (!SA_FN(sa_heap_before)(h, index, child, i))
            return;
        SA_FN(sa_heap_swap)(h, i, child);
        i = child;
    }
}

static void SA_FN(sa_heap_sift_up)(SA_FN(sa_heap) *h, const int64_t *index, ptrdiff_t i)
{
    while (i > 0 && SA_FN(sa_heap_before)(h, index, i, (i - 1) / 2)) {
        SA_FN(sa_heap_swap)(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void SA_FN(sa_heap_pop_top)(SA_FN(sa_heap) *h, const int64_t *index)
{
    h->where[h->pos[0]] = -1;
    if (--h->size == 0)
        return;
    h->key[0] = h->key[h->size];
    h->pos[0] = h->pos[h->size];
    h->where[h->pos[0]] = 0;
    SA_FN(sa_heap_sift_down)(h, index, 0);
}

/* Take the remaining box with the largest current score (ties: the lower
 * original index) out of the heap; -1 when none remains. */
static int64_t SA_FN(sa_heap_take_best)(SA_FN(sa_heap) *h, const SA_T *score, const int64_t *index)
{
    while (h->size > 0) {
        const int64_t k = h->pos[0];
        if (score[k] != score[k]) {                 /* dropped */
            SA_FN(sa_heap_pop_top)(h, index);
        } else if (h->key[0] != score[k]) {         /* decayed since keyed */
            h->key[0] = score[k];
            SA_FN(sa_heap_sift_down)(h, index, 0);
        } else {
            SA_FN(sa_heap_pop_top)(h, index);
            return k;
        }
    }
    return -1;
}

typedef struct {
    SA_FN(sa_work) *w;
    const int64_t *index;
    int64_t selected;
    int gaussian;
    double sigma, iou_threshold, score_threshold;
} SA_FN(sa_soft_query);

/* Decay the remaining box in slot i by its overlap with the selected box;
 * drop it when its score is no longer >= the threshold. */
SA_INLINE int SA_FN(sa_soft_decay)(void *ctx, int64_t i)
{
    SA_FN(sa_soft_query) *q = (SA_FN(sa_soft_query) *)ctx;
    SA_FN(sa_work) *w = q->w;
    if (!w->flag[i])
        return 0;
    const double iou = (double)SA_FN(sa_pair_iou)(&w->c, q->selected, &w->sc, i);
    if (iou == 0)
        return 0;                               /* a weight of exactly 1 either way */
    double weight;
    if (q->gaussian)
        weight = exp(-(iou * iou) / q->sigma);
    else if (iou > q->iou_threshold)
        weight = 1.0 - iou;
    else
        return 0;
    const int64_t b = w->g.members[i];
    const SA_T decayed = (SA_T)((double)w->score[b] * weight);
    if (!(decayed >= q->score_threshold)) {
        w->flag[i] = 0;
        w->score[b] = (SA_T)NAN;
    } else if (decayed > w->score[b]) {             /* a negative score rises as it decays */
        const ptrdiff_t e = w->h.where[b];
        w->score[b] = decayed;
        w->h.key[e] = decayed;
        SA_FN(sa_heap_sift_up)(&w->h, q->index, e);
    } else {
        w->score[b] = decayed;
    }
    return 0;
}

/* Soft-NMS of one class: boxes order[0..m) (any order; ties between equal
 * scores go to the lower original index). Writes the selected original
 * indices and their decayed scores in order of selection (at most
 * max_keep) and returns their count (a partial count when the call is
 * interrupted). */
static ptrdiff_t SA_FN(sa_soft_nms_class)(SA_FN(sa_work) *w, const SA_T *boxes, ptrdiff_t s0,
                                          ptrdiff_t s1, const SA_T *scores, ptrdiff_t ss,
                                          const int64_t *order, ptrdiff_t m, int gaussian,
                                          double sigma, double iou_threshold,
                                          double score_threshold, ptrdiff_t max_keep,
                                          int64_t *keep, SA_T *keep_score, sa_interrupt *stop)
{
    if (SA_FN(sa_work_prepare)(w, boxes, s0, s1, order, m, stop))
        return 0;
    SA_FN(sa_heap) *h = &w->h;
    h->size = 0;
    for (ptrdiff_t k = 0; k < m; k++) {
        w->score[k] = scores[order[k] * ss];
        h->where[k] = -1;
        if (w->score[k] >= score_threshold) {       /* NaN never is */
            h->key[h->size] = w->score[k];
            h->pos[h->size] = k;
            h->where[k] = h->size++;
            if (w->g.level[k] >= 0)
                w->flag[w->slot_of[k]] = 1;
        }
    }
    for (ptrdiff_t i = h->size / 2 - 1; i >= 0; i--)
        SA_FN(sa_heap_sift_down)(h, order, i);
    SA_FN(sa_soft_query) q = {w, order, 0, gaussian, sigma, iou_threshold, score_threshold};
    ptrdiff_t kept = 0;
    while (kept < max_keep) {
        if (kept % SA_POLL_BOXES == 0 && sa_interrupt_poll(stop, SA_INTERRUPT_WORK))
            break;
        const int64_t k = SA_FN(sa_heap_take_best)(h, w->score, order);
        if (k < 0)
            break;
        keep[kept] = order[k];
        keep_score[kept++] = w->score[k];
        if (w->g.level[k] >= 0) {
            w->flag[w->slot_of[k]] = 0;
            q.selected = k;
            /* Only the linear method leaves boxes at IoU <= iou_threshold alone. */
            SA_FN(sa_visit_near)(&w->g, &w->c, k, gaussian ? 0.0 : iou_threshold,
                                 SA_FN(sa_soft_decay), &q);
        }
    }
    return kept;
}

/* Sort keys of the scores of boxes idx[0..n), in decreasing score order. */
static void SA_FN(sa_desc_keys)(const SA_T *scores, ptrdiff_t ss, const int64_t *idx, ptrdiff_t n,
                                uint64_t *keys)
{
    for (ptrdiff_t i = 0; i < n; i++)
        keys[i] = SA_DESC_KEY(scores[idx[i] * ss]);
}

/* --------------------------------------------------------- per-class drivers */

/* Per-class scratch is carved from shared arrays at the class's start s:
 * tscratch holds 12 columns of n values, iscratch 4 columns of n int64,
 * bscratch 2 columns of n bytes, cells the class's cell starts. */
SA_INLINE void SA_FN(sa_work_init)(SA_FN(sa_work) *w, ptrdiff_t n, ptrdiff_t s, int64_t *cells,
                                   SA_T *tscratch, int64_t *iscratch, int8_t *bscratch)
{
    SA_T *t = tscratch + s;
    w->c.x1 = t; w->c.y1 = t + n; w->c.x2 = t + 2 * n; w->c.y2 = t + 3 * n; w->c.area = t + 4 * n;
    w->sc.x1 = t + 5 * n; w->sc.y1 = t + 6 * n; w->sc.x2 = t + 7 * n; w->sc.y2 = t + 8 * n;
    w->sc.area = t + 9 * n;
    w->score = t + 10 * n;
    w->h.key = t + 11 * n;
    w->slot_of = iscratch + n + s;
    w->h.pos = iscratch + 2 * n + s;
    w->h.where = iscratch + 3 * n + s;
    w->h.size = 0;
    w->flag = bscratch + n + s;
    sa_grid_init(&w->g, cells, iscratch + s, bscratch + s);
}

/* Greedy NMS of every class: class c is order[seg[c]..seg[c+1]) (score
 * desc, index asc); its kept indices go to keep from seg[c], their count to
 * n_kept[c]. Classes are shared out over the threads. An interrupted call
 * leaves partial counts. */
static void SA_FN(sa_nms_classes)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1,
                                  const int64_t *order, ptrdiff_t n, const int64_t *seg,
                                  ptrdiff_t n_seg, const int64_t *cells_at, double threshold,
                                  ptrdiff_t max_keep, SA_T *tscratch, int64_t *iscratch,
                                  int64_t *cells, int8_t *bscratch, int64_t *keep, int64_t *n_kept,
                                  sa_interrupt *stop, int n_threads)
{
    (void)n_threads;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1 && n_seg > 1)
    {
#pragma omp for schedule(dynamic) nowait
        for (ptrdiff_t c = 0; c < n_seg; c++) {
            const ptrdiff_t s = seg[c], m = seg[c + 1] - seg[c];
            SA_FN(sa_work) w;
            n_kept[c] = 0;
            if (sa_interrupt_poll(stop, m))
                continue;
            SA_FN(sa_work_init)(&w, n, s, cells + cells_at[c], tscratch, iscratch, bscratch);
            n_kept[c] = SA_FN(sa_nms_class)(&w, boxes, s0, s1, order + s, m, threshold, max_keep,
                                            keep + s, stop);
        }
        sa_interrupt_team_done(stop);
    }
}

/* Soft-NMS of every class (class c: order[seg[c]..seg[c+1]), index asc);
 * selections go to keep and keep_score from seg[c], their count to n_kept[c]
 * (partial counts when the call is interrupted). */
static void SA_FN(sa_soft_nms_classes)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1,
                                       const SA_T *scores, ptrdiff_t ss, const int64_t *order,
                                       ptrdiff_t n, const int64_t *seg, ptrdiff_t n_seg,
                                       const int64_t *cells_at, int gaussian, double sigma,
                                       double iou_threshold, double score_threshold,
                                       ptrdiff_t max_keep, SA_T *tscratch, int64_t *iscratch,
                                       int64_t *cells, int8_t *bscratch, int64_t *keep,
                                       SA_T *keep_score, int64_t *n_kept, sa_interrupt *stop,
                                       int n_threads)
{
    (void)n_threads;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1 && n_seg > 1)
    {
#pragma omp for schedule(dynamic) nowait
        for (ptrdiff_t c = 0; c < n_seg; c++) {
            const ptrdiff_t s = seg[c], m = seg[c + 1] - seg[c];
            SA_FN(sa_work) w;
            n_kept[c] = 0;
            if (sa_interrupt_poll(stop, m))
                continue;
            SA_FN(sa_work_init)(&w, n, s, cells + cells_at[c], tscratch, iscratch, bscratch);
            n_kept[c] = SA_FN(sa_soft_nms_class)(&w, boxes, s0, s1, scores, ss, order + s, m,
                                                 gaussian, sigma, iou_threshold, score_threshold,
                                                 max_keep, keep + s, keep_score + s, stop);
        }
        sa_interrupt_team_done(stop);
    }
}

#undef SA_FN
