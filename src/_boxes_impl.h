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

/* Columns of boxes order[0..m) (all n when order is NULL), areas included. */
static void SA_FN(sa_gather_columns)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1,
                                     const int64_t *order, ptrdiff_t m, SA_FN(sa_columns) *c)
{
    for (ptrdiff_t k = 0; k < m; k++) {
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
SA_MULTIVERSION static void SA_FN(sa_box_iou_rows)(const SA_T *a, ptrdiff_t s0, ptrdiff_t s1, ptrdiff_t begin,
                                   ptrdiff_t end, const SA_FN(sa_columns) *b, ptrdiff_t m,
                                   SA_T *out, ptrdiff_t out_stride)
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

/* --------------------------------------------------------- overlap tests */

/* IoU of boxes i and j of c when they intersect with positive area, else 0
 * (the pair can then neither suppress nor decay). i's area comes first in
 * the union, as in torchvision's kernel where i is the kept box. */
SA_INLINE SA_T SA_FN(sa_pair_iou)(const SA_FN(sa_columns) *c, int64_t i, int64_t j)
{
    const SA_T xx1 = c->x1[i] > c->x1[j] ? c->x1[i] : c->x1[j];
    const SA_T xx2 = c->x2[i] < c->x2[j] ? c->x2[i] : c->x2[j];
    const SA_T w = xx2 - xx1;
    if (!(w > 0))
        return 0;
    const SA_T yy1 = c->y1[i] > c->y1[j] ? c->y1[i] : c->y1[j];
    const SA_T yy2 = c->y2[i] < c->y2[j] ? c->y2[i] : c->y2[j];
    const SA_T h = yy2 - yy1;
    if (!(h > 0))
        return 0;
    const SA_T inter = w * h;
    return inter / (c->area[i] + c->area[j] - inter);
}

/* Sides and centre of box k of c, in double. */
SA_INLINE double SA_FN(sa_width)(const SA_FN(sa_columns) *c, ptrdiff_t k) { return (double)c->x2[k] - (double)c->x1[k]; }
SA_INLINE double SA_FN(sa_height)(const SA_FN(sa_columns) *c, ptrdiff_t k) { return (double)c->y2[k] - (double)c->y1[k]; }
SA_INLINE double SA_FN(sa_centre_x)(const SA_FN(sa_columns) *c, ptrdiff_t k) { return ((double)c->x1[k] + (double)c->x2[k]) / 2; }
SA_INLINE double SA_FN(sa_centre_y)(const SA_FN(sa_columns) *c, ptrdiff_t k) { return ((double)c->y1[k] + (double)c->y2[k]) / 2; }

/* Build the grid over boxes 0..m) of c: each box's level, or -1 for a box
 * that overlaps nothing, then the cells. */
static void SA_FN(sa_grid_build)(sa_grid *g, const SA_FN(sa_columns) *c, ptrdiff_t m)
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
        return;                                     /* nothing can overlap */
    const double s0 = sa_max_d(min_size, sa_max_d(hx - ox, hy - oy) * SA_GRID_FINEST);
    for (ptrdiff_t k = 0; k < m; k++) {
        if (g->level[k] < 0)
            continue;
        const double w = SA_FN(sa_width)(c, k), h = SA_FN(sa_height)(c, k);
        g->level[k] = sa_grid_level_of(sa_max_d(w, h), s0);
        sa_grid_note(g, g->level[k], w, h, (double)c->area[k]);
    }
    sa_grid_shape(g, ox, oy, hx, hy);
    for (ptrdiff_t k = 0; k < m; k++)
        if (g->level[k] >= 0)
            sa_grid_count(g, g->level[k], SA_FN(sa_centre_x)(c, k), SA_FN(sa_centre_y)(c, k));
    sa_grid_prefix(g);
    for (ptrdiff_t k = 0; k < m; k++)
        if (g->level[k] >= 0)
            sa_grid_place(g, k, g->level[k], SA_FN(sa_centre_x)(c, k), SA_FN(sa_centre_y)(c, k));
    sa_grid_close(g);
}

/* Visit the boxes of g that could reach IoU > min_iou with box k. */
SA_INLINE int SA_FN(sa_visit_near)(const sa_grid *g, const SA_FN(sa_columns) *c, ptrdiff_t k,
                                   double min_iou, sa_grid_visitor visit, void *ctx)
{
    return sa_grid_visit(g, g->level[k], SA_FN(sa_centre_x)(c, k), SA_FN(sa_centre_y)(c, k),
                         SA_FN(sa_width)(c, k), SA_FN(sa_height)(c, k), (double)c->area[k],
                         min_iou, visit, ctx);
}

/* ----------------------------------------------------------- greedy NMS */

typedef struct {
    const SA_FN(sa_columns) *c;
    const int8_t *kept;
    int64_t query;
    double threshold;
} SA_FN(sa_nms_query);

/* Is b a kept box that suppresses the query (IoU strictly above the
 * threshold, compared in double as torchvision does)? */
SA_INLINE int SA_FN(sa_nms_suppresses)(void *ctx, int64_t b)
{
    const SA_FN(sa_nms_query) *q = (const SA_FN(sa_nms_query) *)ctx;
    return q->kept[b] && (double)SA_FN(sa_pair_iou)(q->c, b, q->query) > q->threshold;
}

/* Greedy NMS of one class: boxes order[0..m) are in the order of
 * processing (score desc, index asc). Writes the kept original indices to
 * keep (at most max_keep) and returns their count. Scratch: c (m entries per
 * column), the grid's arrays, kept (m). */
static ptrdiff_t SA_FN(sa_nms_class)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1,
                                     const int64_t *order, ptrdiff_t m, double threshold,
                                     ptrdiff_t max_keep, SA_FN(sa_columns) *c, sa_grid *g,
                                     int8_t *kept, int64_t *keep)
{
    SA_FN(sa_gather_columns)(boxes, s0, s1, order, m, c);
    SA_FN(sa_grid_build)(g, c, m);
    SA_FN(sa_nms_query) q = {c, kept, 0, threshold};
    ptrdiff_t n_kept = 0;
    for (ptrdiff_t k = 0; k < m; k++)
        kept[k] = 0;
    for (ptrdiff_t k = 0; k < m && n_kept < max_keep; k++) {
        q.query = k;
        if (g->level[k] >= 0 && SA_FN(sa_visit_near)(g, c, k, threshold, SA_FN(sa_nms_suppresses), &q))
            continue;
        kept[k] = 1;
        keep[n_kept++] = order[k];
    }
    return n_kept;
}

/* -------------------------------------------------------------- Soft-NMS */

/* Heap order: a before b when its score is larger, or equal with a lower
 * original index. */
SA_INLINE int SA_FN(sa_heap_before)(const SA_T *score, const int64_t *index, int64_t a, int64_t b)
{
    return score[a] > score[b] || (score[a] == score[b] && index[a] < index[b]);
}

static void SA_FN(sa_heap_sift_down)(sa_heap *h, const SA_T *score, const int64_t *index, ptrdiff_t i)
{
    const int64_t k = h->slot[i];
    for (;;) {
        ptrdiff_t child = 2 * i + 1;
        if (child >= h->size)
            break;
        if (child + 1 < h->size && SA_FN(sa_heap_before)(score, index, h->slot[child + 1], h->slot[child]))
            child++;
        if (!SA_FN(sa_heap_before)(score, index, h->slot[child], k))
            break;
        h->slot[i] = h->slot[child];
        h->where[h->slot[i]] = i;
        i = child;
    }
    h->slot[i] = k;
    h->where[k] = i;
}

static void SA_FN(sa_heap_sift_up)(sa_heap *h, const SA_T *score, const int64_t *index, ptrdiff_t i)
{
    const int64_t k = h->slot[i];
    while (i > 0) {
        const ptrdiff_t parent = (i - 1) / 2;
        if (!SA_FN(sa_heap_before)(score, index, k, h->slot[parent]))
            break;
        h->slot[i] = h->slot[parent];
        h->where[h->slot[i]] = i;
        i = parent;
    }
    h->slot[i] = k;
    h->where[k] = i;
}

/* Take position k out of the heap. */
static void SA_FN(sa_heap_remove)(sa_heap *h, const SA_T *score, const int64_t *index, int64_t k)
{
    const ptrdiff_t i = h->where[k];
    h->where[k] = -1;
    h->size--;
    if (i == h->size)
        return;
    h->slot[i] = h->slot[h->size];
    h->where[h->slot[i]] = i;
    if (i > 0 && SA_FN(sa_heap_before)(score, index, h->slot[i], h->slot[(i - 1) / 2]))
        SA_FN(sa_heap_sift_up)(h, score, index, i);
    else
        SA_FN(sa_heap_sift_down)(h, score, index, i);
}

typedef struct {
    const SA_FN(sa_columns) *c;
    SA_T *score;
    const int64_t *index;
    sa_heap *heap;
    int64_t selected;
    int gaussian;
    double sigma, iou_threshold, score_threshold;
} SA_FN(sa_soft_query);

/* Decay remaining box b by its overlap with the selected box; drop it
 * when its score falls below the threshold. Never stops the visit. */
SA_INLINE int SA_FN(sa_soft_decay)(void *ctx, int64_t b)
{
    SA_FN(sa_soft_query) *q = (SA_FN(sa_soft_query) *)ctx;
    if (q->heap->where[b] < 0)
        return 0;
    const double iou = (double)SA_FN(sa_pair_iou)(q->c, q->selected, b);
    double weight;
    if (q->gaussian)
        weight = exp(-(iou * iou) / q->sigma);
    else if (iou > q->iou_threshold)
        weight = 1.0 - iou;
    else
        return 0;
    const SA_T decayed = (SA_T)((double)q->score[b] * weight);
    if (!(decayed >= q->score_threshold)) {
        SA_FN(sa_heap_remove)(q->heap, q->score, q->index, b);
    } else if (decayed < q->score[b]) {
        q->score[b] = decayed;
        SA_FN(sa_heap_sift_down)(q->heap, q->score, q->index, q->heap->where[b]);
    } else if (decayed > q->score[b]) {         /* a negative score decays towards 0 */
        q->score[b] = decayed;
        SA_FN(sa_heap_sift_up)(q->heap, q->score, q->index, q->heap->where[b]);
    }
    return 0;
}

/* Soft-NMS of one class: boxes order[0..m) (any order; ties between equal
 * scores go to the lower original index). Writes the selected original
 * indices and their decayed scores in order of selection (at most
 * max_keep) and returns their count. Scratch: c and the grid's arrays as
 * sa_nms_class, score (m), heap slot and where (m each). */
static ptrdiff_t SA_FN(sa_soft_nms_class)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1,
                                          const SA_T *scores, ptrdiff_t ss, const int64_t *order,
                                          ptrdiff_t m, int gaussian, double sigma,
                                          double iou_threshold, double score_threshold,
                                          ptrdiff_t max_keep, SA_FN(sa_columns) *c, SA_T *score,
                                          sa_grid *g, sa_heap *h, int64_t *keep, SA_T *keep_score)
{
    SA_FN(sa_gather_columns)(boxes, s0, s1, order, m, c);
    SA_FN(sa_grid_build)(g, c, m);
    h->size = 0;
    for (ptrdiff_t k = 0; k < m; k++) {
        score[k] = scores[order[k] * ss];
        h->where[k] = -1;
        if (score[k] >= score_threshold) {          /* NaN never is */
            h->slot[h->size] = k;
            h->where[k] = h->size++;
        }
    }
    for (ptrdiff_t i = h->size / 2 - 1; i >= 0; i--)
        SA_FN(sa_heap_sift_down)(h, score, order, i);
    SA_FN(sa_soft_query) q = {c, score, order, h, 0, gaussian, sigma, iou_threshold, score_threshold};
    ptrdiff_t kept = 0;
    while (h->size > 0 && kept < max_keep) {
        const int64_t k = h->slot[0];
        SA_FN(sa_heap_remove)(h, score, order, k);
        keep[kept] = order[k];
        keep_score[kept++] = score[k];
        if (g->level[k] >= 0) {
            q.selected = k;
            /* Only the linear method leaves boxes at IoU <= iou_threshold alone. */
            SA_FN(sa_visit_near)(g, c, k, gaussian ? 0.0 : iou_threshold, SA_FN(sa_soft_decay), &q);
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
 * tscratch holds 6 columns of n values, iscratch 3 columns of n int64,
 * bscratch 2 columns of n bytes, cells the class's cell starts at
 * cells_at[c] (sa_grid_cells_needed(m) of them). */
SA_INLINE void SA_FN(sa_class_scratch)(ptrdiff_t n, ptrdiff_t s, int64_t *cells, SA_T *tscratch,
                                       int64_t *iscratch, int8_t *bscratch,
                                       SA_FN(sa_columns) *cols, sa_grid *g)
{
    cols->x1 = tscratch + s;
    cols->y1 = tscratch + n + s;
    cols->x2 = tscratch + 2 * n + s;
    cols->y2 = tscratch + 3 * n + s;
    cols->area = tscratch + 4 * n + s;
    sa_grid_init(g, cells, iscratch + s, bscratch + s);
}

/* Greedy NMS of every class: class c is order[seg[c]..seg[c+1]) (score
 * desc, index asc); its kept indices go to keep from seg[c], their count to
 * n_kept[c]. Classes are shared out over the threads. */
static void SA_FN(sa_nms_classes)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1,
                                  const int64_t *order, ptrdiff_t n, const int64_t *seg,
                                  ptrdiff_t n_seg, const int64_t *cells_at, double threshold,
                                  ptrdiff_t max_keep, SA_T *tscratch, int64_t *iscratch,
                                  int64_t *cells, int8_t *bscratch, int64_t *keep, int64_t *n_kept,
                                  int n_threads)
{
    (void)n_threads;
#pragma omp parallel for schedule(dynamic) num_threads(n_threads) if (n_threads > 1 && n_seg > 1)
    for (ptrdiff_t c = 0; c < n_seg; c++) {
        const ptrdiff_t s = seg[c], m = seg[c + 1] - seg[c];
        SA_FN(sa_columns) cols;
        sa_grid g;
        SA_FN(sa_class_scratch)(n, s, cells + cells_at[c], tscratch, iscratch, bscratch, &cols, &g);
        n_kept[c] = SA_FN(sa_nms_class)(boxes, s0, s1, order + s, m, threshold, max_keep, &cols,
                                        &g, bscratch + n + s, keep + s);
    }
}

/* Soft-NMS of every class (class c: order[seg[c]..seg[c+1]), index asc);
 * selections go to keep and keep_score from seg[c], their count to n_kept[c]. */
static void SA_FN(sa_soft_nms_classes)(const SA_T *boxes, ptrdiff_t s0, ptrdiff_t s1,
                                       const SA_T *scores, ptrdiff_t ss, const int64_t *order,
                                       ptrdiff_t n, const int64_t *seg, ptrdiff_t n_seg,
                                       const int64_t *cells_at, int gaussian, double sigma,
                                       double iou_threshold, double score_threshold,
                                       ptrdiff_t max_keep, SA_T *tscratch, int64_t *iscratch,
                                       int64_t *cells, int8_t *bscratch, int64_t *keep,
                                       SA_T *keep_score, int64_t *n_kept, int n_threads)
{
    (void)n_threads;
#pragma omp parallel for schedule(dynamic) num_threads(n_threads) if (n_threads > 1 && n_seg > 1)
    for (ptrdiff_t c = 0; c < n_seg; c++) {
        const ptrdiff_t s = seg[c], m = seg[c + 1] - seg[c];
        SA_FN(sa_columns) cols;
        sa_grid g;
        sa_heap h = {iscratch + n + s, iscratch + 2 * n + s, 0};
        SA_FN(sa_class_scratch)(n, s, cells + cells_at[c], tscratch, iscratch, bscratch, &cols, &g);
        n_kept[c] = SA_FN(sa_soft_nms_class)(boxes, s0, s1, scores, ss, order + s, m, gaussian,
                                             sigma, iou_threshold, score_threshold, max_keep,
                                             &cols, tscratch + 5 * n + s, &g, &h, keep + s,
                                             keep_score + s);
    }
}

#undef SA_FN
