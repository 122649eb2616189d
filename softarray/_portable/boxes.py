"""Box operations and non-maximum suppression with array-API calls only: the
portable half of the boxes family (GPU arrays, JAX, Dask, array-api-strict).

Arguments arrive validated: boxes (n, 4) (or (..., 4) for area and
conversion) and scores (n,) of one real floating dtype, labels (n,)
integers or None, thresholds as Python floats, max_output an int <= n.

Results equal the compiled kernels': the same IoU formula in the same
dtype, the same order (score descending, NaN first, ties by lower index),
and the same rule that only boxes intersecting with positive area interact.
Greedy NMS is computed a tile of boxes at a time: the tile's boxes are
first checked against every box kept before it, then the greedy decisions
inside the tile are the fixed point of "kept unless a kept earlier box
suppresses it", reached by a few whole-tile iterations instead of one
Python step per box.
"""
import math

import numpy as np

from .._conventions import threshold_in_dtype
from .gating import _order

# Boxes per tile of the portable NMS: the tile's IoU matrix has TILE**2 entries.
TILE = 512


def box_area(xp, boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_convert(xp, boxes, in_fmt, out_fmt):
    p, q, r, s = (boxes[..., i] for i in range(4))
    if in_fmt == "xywh":
        x1, y1, x2, y2 = p, q, p + r, q + s
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = p - 0.5 * r, q - 0.5 * s, p + 0.5 * r, q + 0.5 * s
    else:
        x1, y1, x2, y2 = p, q, r, s
    if out_fmt == "xywh":
        cols = (x1, y1, x2 - x1, y2 - y1)
    elif out_fmt == "cxcywh":
        cols = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    else:
        cols = (x1, y1, x2, y2)
    return xp.stack(cols, axis=-1)


def clip_boxes(xp, boxes, height, width):
    """torchvision's clip_boxes_to_image: x in [0, width], y in [0, height],
    NaN kept (a clamp)."""
    cols = [xp.clip(boxes[..., k], 0, width if k % 2 == 0 else height) for k in range(4)]
    return xp.stack(cols, axis=-1)


def remove_small_boxes(xp, boxes, min_size):
    """torchvision's remove_small_boxes: int64 indices, increasing."""
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    return xp.astype(xp.nonzero(keep)[0], xp.int64)


def box_iou(xp, boxes1, boxes2):
    """torchvision's box_iou: NaN-propagating max/min and clamp."""
    inter, union = _inter_union(xp, boxes1, boxes2)
    return inter / union


def _inter_union(xp, boxes1, boxes2):
    a = boxes1[:, None, :]
    b = boxes2[None, :, :]
    w = _clamp0(xp, xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0]))
    h = _clamp0(xp, xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1]))
    inter = w * h
    return inter, box_area(xp, boxes1)[:, None] + box_area(xp, boxes2)[None, :] - inter


def box_iou_variant(xp, boxes1, boxes2, variant, eps):
    """torchvision's generalized_box_iou, distance_box_iou and
    complete_box_iou (variant "generalized", "distance", "complete")."""
    inter, union = _inter_union(xp, boxes1, boxes2)
    iou = inter / union
    a = boxes1[:, None, :]
    b = boxes2[None, :, :]
    ew = _clamp0(xp, xp.maximum(a[..., 2], b[..., 2]) - xp.minimum(a[..., 0], b[..., 0]))
    eh = _clamp0(xp, xp.maximum(a[..., 3], b[..., 3]) - xp.minimum(a[..., 1], b[..., 1]))
    if variant == "generalized":
        enclosing = ew * eh
        return iou - (enclosing - union) / enclosing
    diagonal = ew * ew + eh * eh + eps
    dx = (a[..., 0] + a[..., 2]) / 2 - (b[..., 0] + b[..., 2]) / 2
    dy = (a[..., 1] + a[..., 3]) / 2 - (b[..., 1] + b[..., 3]) / 2
    diou = iou - (dx * dx + dy * dy) / diagonal
    if variant == "distance":
        return diou
    d = _aspect_atan(xp, boxes1)[:, None] - _aspect_atan(xp, boxes2)[None, :]
    v = (4 / math.pi**2) * (d * d)
    alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


def _aspect_atan(xp, boxes):
    return xp.atan((boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1]))


def _clamp0(xp, v):
    return xp.where(v < 0, xp.zeros_like(v), v)


def _overlap_iou(xp, a, b):
    """IoU of every box of a (p, 4) with every box of b (q, 4), zero unless
    the two intersect with positive area (a's area first in the union)."""
    a_ok = _can_overlap(xp, a)[:, None]
    b_ok = _can_overlap(xp, b)[None, :]
    # Boxes that overlap nothing take part as zeros: no inf - inf warnings.
    a = xp.where(a_ok, a, xp.zeros_like(a))
    b = xp.where(b_ok.T, b, xp.zeros_like(b))
    w = xp.minimum(a[:, None, 2], b[None, :, 2]) - xp.maximum(a[:, None, 0], b[None, :, 0])
    h = xp.minimum(a[:, None, 3], b[None, :, 3]) - xp.maximum(a[:, None, 1], b[None, :, 1])
    hit = a_ok & b_ok & (w > 0) & (h > 0)
    zero = xp.zeros_like(w)
    inter = xp.where(hit, w * h, zero)
    union = box_area(xp, a)[:, None] + box_area(xp, b)[None, :] - inter
    return xp.where(hit, inter / xp.where(hit, union, xp.ones_like(union)), zero)


def _can_overlap(xp, boxes):
    finite = xp.all(xp.isfinite(boxes), axis=-1)
    return finite & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def _same_label(xp, labels, rows, cols):
    if labels is None:
        return None
    return labels[rows][:, None] == labels[cols][None, :]


def nms(xp, boxes, scores, labels, iou_threshold, score_threshold, max_output):
    """softarray.nms / batched_nms: kept indices (int64), score descending.
    Boxes of different labels never suppress each other, which makes the
    batched result the per-label results merged by score."""
    candidates = xp.arange(scores.shape[0], dtype=xp.int64, device=getattr(scores, "device", None))
    if score_threshold is not None:     # already in the scores' dtype (threshold_in_dtype)
        candidates = candidates[scores > score_threshold]
    order = xp.take(candidates, _order(xp, xp.take(scores, candidates), 0, descending=True))
    order = xp.astype(order, xp.int64)
    sorted_boxes = xp.take(boxes, order, axis=0)
    threshold = threshold_in_dtype(iou_threshold, boxes.dtype, strict=True)
    n = order.shape[0]
    kept = xp.zeros((0,), dtype=xp.int64, device=getattr(order, "device", None))
    for start in range(0, n, TILE):
        if kept.shape[0] >= max_output:
            break
        stop = min(start + TILE, n)
        rows = xp.arange(start, stop, dtype=xp.int64, device=getattr(order, "device", None))
        tile = sorted_boxes[start:stop, :]
        alive = xp.ones((stop - start,), dtype=xp.bool, device=getattr(order, "device", None))
        if kept.shape[0]:
            hits = _overlap_iou(xp, xp.take(sorted_boxes, kept, axis=0), tile) > threshold
            same = _same_label(xp, labels, xp.take(order, kept), xp.take(order, rows))
            if same is not None:
                hits = hits & same
            alive = ~xp.any(hits, axis=0)
        inside = _overlap_iou(xp, tile, tile) > threshold
        earlier = rows[:, None] < rows[None, :]
        inside = inside & earlier
        same = _same_label(xp, labels, xp.take(order, rows), xp.take(order, rows))
        if same is not None:
            inside = inside & same
        keep = _greedy_fixed_point(xp, inside, alive)
        kept = xp.concat([kept, rows[keep]])
    return xp.take(order, kept[:min(max_output, kept.shape[0])])


def _greedy_fixed_point(xp, suppresses, alive):
    """keep[i] = alive[i] and no kept j < i suppresses i (suppresses[j, i]).

    Starting from alive and iterating keep <- alive & ~any(suppresses[kept]),
    position i is settled once every position before it is, so the
    iteration stops at the greedy answer (usually after a few rounds)."""
    keep = alive
    while True:
        new = alive & ~xp.any(suppresses & keep[:, None], axis=0)
        if bool(xp.all(new == keep)):
            return keep
        keep = new


def soft_nms(xp, boxes, scores, labels, gaussian, sigma, iou_threshold, score_threshold,
             max_output):
    """softarray.soft_nms / batched_soft_nms: (indices, decayed scores) in
    order of selection (with labels: by decreasing decayed score), one
    whole-array step per selected box. Boxes of different labels never
    decay each other, so one pass over all labels gives every label's
    selections."""
    device = getattr(scores, "device", None)
    dtype = scores.dtype
    current = scores
    score_threshold = threshold_in_dtype(score_threshold, dtype, strict=False)
    alive = current >= score_threshold
    linear_threshold = threshold_in_dtype(iou_threshold, dtype, strict=True)
    picked, picked_scores = [], []
    minus_inf = xp.full_like(current, -float("inf"))
    # With labels the result is the first max_output selections by decreasing
    # decayed score; picking the best current score across labels gives them
    # in that order unless a negative score can be picked (it rises as it
    # decays): then every label runs to the end and the cut follows the sort.
    steps = max_output
    if labels is not None and bool(xp.any(alive & (current < 0))):
        steps = current.shape[0]
    for _ in range(steps):
        if not bool(xp.any(alive)):
            break
        m = int(xp.argmax(xp.where(alive, current, minus_inf)))
        picked.append(m)
        picked_scores.append(current[m:m + 1])
        alive = alive & (xp.arange(current.shape[0], device=device) != m)
        iou = _overlap_iou(xp, boxes[m:m + 1, :], boxes)[0, :]
        if labels is not None:
            iou = xp.where(labels == labels[m], iou, xp.zeros_like(iou))
        iou64 = xp.astype(iou, xp.float64)
        if gaussian:
            weight = xp.exp(-(iou64 * iou64) / sigma)
        else:
            weight = xp.where(iou > linear_threshold, 1.0 - iou64, xp.ones_like(iou64))
        decayed = xp.astype(xp.astype(current, xp.float64) * weight, dtype)
        current = xp.where(alive, decayed, current)
        alive = alive & (current >= score_threshold)
    indices = xp.asarray(picked, dtype=xp.int64, device=device)
    values = xp.concat(picked_scores) if picked_scores else xp.zeros((0,), dtype=dtype, device=device)
    if labels is not None and picked:
        # By decreasing decayed score, ties by index: the order of selection
        # unless a negative score rose as it decayed.
        by_index = xp.argsort(indices)
        indices, values = xp.take(indices, by_index), xp.take(values, by_index)
        by_score = _order(xp, values, 0, descending=True)
        indices, values = xp.take(indices, by_score), xp.take(values, by_score)
        cut = min(max_output, indices.shape[0])
        indices, values = indices[:cut], values[:cut]
    return indices, values


def box_iou_loss(xp, boxes1, boxes2, variant, eps, scale, return_grad):
    """torchvision's generalized/distance/complete_box_iou_loss per pair of
    rows, and with return_grad the gradients of the loss times scale (torch
    autograd's rules: ties of max/min split in half); (loss, grad1, grad2)."""
    x1, y1, x2, y2 = (boxes1[..., k] for k in range(4))
    u1, v1, u2, v2 = (boxes2[..., k] for k in range(4))
    inner_eps = 1e-7 if variant == "complete" else eps
    xk1, yk1 = xp.maximum(x1, u1), xp.maximum(y1, v1)
    xk2, yk2 = xp.minimum(x2, u2), xp.minimum(y2, v2)
    hit = (yk2 > yk1) & (xk2 > xk1)
    iw, ih = xk2 - xk1, yk2 - yk1
    zero = xp.zeros_like(x1)
    inter = xp.where(hit, iw * ih, zero)
    w1, h1, w2, h2 = x2 - x1, y2 - y1, u2 - u1, v2 - v1
    uni = w1 * h1 + w2 * h2 - inter
    den = uni + inner_eps
    iou = inter / den
    cw = xp.maximum(x2, u2) - xp.minimum(x1, u1)
    ch = xp.maximum(y2, v2) - xp.minimum(y1, v1)
    g_uni = g_dx = g_dy = g_w1 = g_h1 = g_w2 = g_h2 = zero
    if variant == "generalized":
        area_c = cw * ch
        cden = area_c + eps
        gap = area_c - uni
        loss = 1 - (iou - gap / cden)
        g_area_c = 1 / cden - gap / (cden * cden)
        g_uni = -1 / cden
        g_cw, g_ch = g_area_c * ch, g_area_c * cw
    else:
        diagonal = cw * cw + ch * ch + inner_eps
        dx = (x2 + x1) / 2 - (u1 + u2) / 2
        dy = (y2 + y1) / 2 - (v1 + v2) / 2
        rho = dx * dx + dy * dy
        loss = 1 - iou + rho / diagonal
        g_rho = 1 / diagonal
        g_diagonal = -rho / (diagonal * diagonal)
        g_cw, g_ch = 2 * cw * g_diagonal, 2 * ch * g_diagonal
        g_dx, g_dy = 2 * dx * g_rho, 2 * dy * g_rho
        if variant == "complete":
            r2, r1 = w2 / h2, w1 / h1
            t = xp.atan(r2) - xp.atan(r1)
            v = (4 / math.pi**2) * (t * t)
            alpha = v / (1 - iou + v + eps)
            loss = loss + alpha * v
            g_t = alpha * (4 / math.pi**2) * 2 * t
            g_r2, g_r1 = g_t / (1 + r2 * r2), -g_t / (1 + r1 * r1)
            g_w2, g_h2 = g_r2 / h2, -(g_r2 * w2 / (h2 * h2))
            g_w1, g_h1 = g_r1 / h1, -(g_r1 * w1 / (h1 * h1))
    if not return_grad:
        return loss, None, None
    g_iou = -1.0
    g_uni = g_uni - g_iou * inter / (den * den)
    g_inter = g_iou / den - g_uni
    g_w1, g_h1 = g_w1 + g_uni * h1, g_h1 + g_uni * w1
    g_w2, g_h2 = g_w2 + g_uni * h2, g_h2 + g_uni * w2
    g_iw = xp.where(hit, g_inter * ih, zero)
    g_ih = xp.where(hit, g_inter * iw, zero)
    grad1 = xp.stack([
        -g_w1 - _max_share(xp, x1, u1) * g_iw - _max_share(xp, u1, x1) * g_cw + g_dx / 2,
        -g_h1 - _max_share(xp, y1, v1) * g_ih - _max_share(xp, v1, y1) * g_ch + g_dy / 2,
        g_w1 + _max_share(xp, u2, x2) * g_iw + _max_share(xp, x2, u2) * g_cw + g_dx / 2,
        g_h1 + _max_share(xp, v2, y2) * g_ih + _max_share(xp, y2, v2) * g_ch + g_dy / 2,
    ], axis=-1)
    grad2 = xp.stack([
        -g_w2 - _max_share(xp, u1, x1) * g_iw - _max_share(xp, x1, u1) * g_cw - g_dx / 2,
        -g_h2 - _max_share(xp, v1, y1) * g_ih - _max_share(xp, y1, v1) * g_ch - g_dy / 2,
        g_w2 + _max_share(xp, x2, u2) * g_iw + _max_share(xp, u2, x2) * g_cw - g_dx / 2,
        g_h2 + _max_share(xp, y2, v2) * g_ih + _max_share(xp, v2, y2) * g_ch - g_dy / 2,
    ], axis=-1)
    return loss, grad1 * scale, grad2 * scale


def _max_share(xp, p, q):
    """The share of d max(p, q) that goes to p (1, 1/2 at a tie, 0): torch's
    maximum backward; the share of d min(p, q) going to p is _max_share(q, p)."""
    one = xp.ones_like(p)
    return xp.where(p > q, one, xp.where(p == q, one / 2, xp.zeros_like(p)))
