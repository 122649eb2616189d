"""Losses with array-API calls only: the formulas of ``docs/losses_spec_draft.md``
on whole arrays.

Every function takes ``xp`` and the arrays, then the public function's options
already validated: ``axis`` a non-negative int, index targets an integer array,
probability/elementwise targets and ``weight``/``alpha``/``pos_weight`` arrays
of the logits' dtype (or None). Each returns ``(loss, grad)``; ``grad`` is None
unless ``return_grad``. With reduction "none" ``grad`` is the gradient of the
sum of the returned losses.
"""
import functools
import math

from array_api_compat import device


# ---------------------------------------------------------------- helpers

def _arrays_out(fn):
    """NumPy returns 0-d results as NumPy scalars; give them back as 0-d
    arrays like every other namespace. (Only where the type differs:
    torch.asarray on a tensor that requires grad warns.)"""
    @functools.wraps(fn)
    def wrapper(xp, x, *args, **kwargs):
        loss, grad = fn(xp, x, *args, **kwargs)
        if type(loss) is not type(x):
            loss = xp.asarray(loss)
        if grad is not None and type(grad) is not type(x):
            grad = xp.asarray(grad)
        return loss, grad
    return wrapper


def _log_softmax_parts(xp, z, axis):
    """(lse, logp) along axis, lse with keepdims.

    The terms below the maximum are summed apart from those equal to it
    (exactly 1 each), so the log-probability of a dominant class is
    -log1p(rest) and keeps its relative accuracy: focal and comp-sum losses
    need 1 - p_y from it. The tied terms are still exp(z - m) so that
    autograd sees the maximum cancel out, whatever max's backward does with
    ties.
    """
    m = xp.max(z, axis=axis, keepdims=True)
    # xp.max need not propagate NaN; make it, as the softmax module does.
    has_nan = xp.any(xp.isnan(z), axis=axis, keepdims=True)
    m = xp.where(has_nan, xp.full_like(m, math.nan), m)
    finite = xp.isfinite(m)
    shift = xp.where(finite, m, xp.zeros_like(m))
    e = xp.exp(z - shift)
    zero = xp.zeros_like(e)
    rest = xp.sum(xp.where(z < m, e, zero), axis=axis, keepdims=True)
    top = xp.sum(xp.where(z == m, e, zero), axis=axis, keepdims=True)
    # The stand-in 0 keeps log1p(-1) (a NaN row has top == 0) out of NumPy's
    # warnings; where(finite, ...) discards it anyway.
    share = xp.where(finite, rest + (top - 1), xp.zeros_like(rest))
    log_sum = xp.where(finite, xp.log1p(share), m)
    return shift + log_sum, (z - shift) - log_sum


def _along(xp, v, axis, ndim):
    """A length-C vector shaped to broadcast along ``axis``."""
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return xp.reshape(v, tuple(shape))


def _index_target(xp, target, ignore_index):
    """(target with ignored entries set to class 0, valid mask or None).

    Ignored entries may hold any value (-100, say); class 0 keeps the one-hot
    in range and xp.where later zeroes whatever they computed.
    """
    valid = not_ignored(xp, target, ignore_index)
    if valid is None:
        return target, None
    return xp.where(valid, target, xp.zeros_like(target)), valid


def not_ignored(xp, target, ignore_index):
    """Mask of the integer target's entries that are not ignore_index, or
    None when no entry can equal it (no ignore_index, or one outside the
    dtype's range: comparing would overflow on some libraries)."""
    if ignore_index is None:
        return None
    info = xp.iinfo(target.dtype)
    if not info.min <= ignore_index <= info.max:
        return None
    return target != ignore_index


def _one_hot(xp, target, axis, num_classes):
    classes = xp.arange(num_classes, dtype=target.dtype, device=device(target))
    return _along(xp, classes, axis, target.ndim + 1) == xp.expand_dims(target, axis=axis)


def _pick(xp, x, hot, axis):
    """x at the target class (x broadcast against hot); where, not a product,
    so inf/NaN in other classes stay out."""
    x = xp.broadcast_to(x, hot.shape)
    return xp.sum(xp.where(hot, x, xp.zeros_like(x)), axis=axis)


def _class_weight(xp, weight, hot, axis, like):
    """w_y per sample (ones without weight)."""
    if weight is None:
        return xp.ones_like(like)
    return _pick(xp, _along(xp, weight, axis, hot.ndim), hot, axis)


def _mask(xp, x, valid):
    return x if valid is None else xp.where(valid, x, xp.zeros_like(x))


def _scalar(xp, value, like):
    return xp.asarray(value, dtype=like.dtype, device=device(like))


def _count(xp, valid, like):
    """Number of non-ignored samples, as a 0-d array of like's dtype."""
    if valid is None:
        return _scalar(xp, math.prod(like.shape), like)
    return xp.sum(xp.astype(valid, like.dtype))


def _reduce(xp, per, reduction, denominator):
    """(loss, s): the reduced loss and the factor s of the spec's gradients."""
    if reduction == "none":
        return per, 1.0
    total = xp.sum(per)
    if reduction == "sum":
        return total, 1.0
    return total / denominator, 1.0 / denominator


def _softplus(xp, x):
    return xp.logaddexp(x, xp.zeros_like(x))


def _sigmoid(xp, x):
    e = xp.exp(-xp.abs(x))  # never overflows
    one = xp.ones_like(e)
    return xp.where(x >= 0, one / (one + e), e / (one + e))


def _mask_samples(xp, grad, valid, axis):
    """Zero the gradient of ignored samples. Applied after the factor s:
    with every sample ignored s is inf, and torch's gradient is still 0."""
    if valid is None:
        return grad
    return xp.where(xp.expand_dims(valid, axis=axis), grad, xp.zeros_like(grad))


def _index_loss_grad(xp, g, hot, p, axis, valid, s):
    """s * g_n * ([c == y] - p_c), zero for ignored samples."""
    grad = xp.expand_dims(g, axis=axis) * (xp.astype(hot, p.dtype) - p)
    return _mask_samples(xp, s * grad, valid, axis)


# ------------------------------------------------- index-target, softmax-based

@_arrays_out
def cross_entropy(xp, logits, target, *, axis, weight, ignore_index, label_smoothing,
                  reduction, return_grad):
    """softarray.cross_entropy."""
    if xp.isdtype(target.dtype, "integral"):
        return _cross_entropy_index(xp, logits, target, axis, weight, ignore_index,
                                    label_smoothing, reduction, return_grad)
    return _cross_entropy_probs(xp, logits, target, axis, weight, label_smoothing,
                                reduction, return_grad)


def _cross_entropy_index(xp, logits, target, axis, weight, ignore_index, eps,
                         reduction, return_grad):
    num_classes = logits.shape[axis]
    _, logp = _log_softmax_parts(xp, logits, axis)
    target, valid = _index_target(xp, target, ignore_index)
    hot = _one_hot(xp, target, axis, num_classes)
    nlp_y = -_pick(xp, logp, hot, axis)
    w_y = _mask(xp, _class_weight(xp, weight, hot, axis, nlp_y), valid)
    w = None if weight is None else _along(xp, weight, axis, logits.ndim)
    per = (1 - eps) * w_y * nlp_y
    # eps == 0 skips the smoothing term as torch does: it would turn a -inf
    # logit into 0 * inf = NaN.
    if eps != 0:
        nlp_w = -logp if w is None else -logp * w
        per = per + eps / num_classes * xp.sum(nlp_w, axis=axis)
    per = _mask(xp, per, valid)
    loss, s = _reduce(xp, per, reduction, xp.sum(w_y))
    if not return_grad:
        return loss, None
    p = xp.exp(logp)
    w_total = num_classes if w is None else xp.sum(weight)
    coef = xp.expand_dims((1 - eps) * w_y + eps * w_total / num_classes, axis=axis)
    hot_f = xp.astype(hot, logits.dtype)
    grad = p * coef - (1 - eps) * xp.expand_dims(w_y, axis=axis) * hot_f
    if eps != 0:
        grad = grad - eps / num_classes * (xp.ones_like(p) if w is None else w)
    return loss, _mask_samples(xp, s * grad, valid, axis)


def _cross_entropy_probs(xp, logits, target, axis, weight, eps, reduction, return_grad):
    num_classes = logits.shape[axis]
    _, logp = _log_softmax_parts(xp, logits, axis)
    t = target if eps == 0 else (1 - eps) * target + eps / num_classes
    wt = t if weight is None else t * _along(xp, weight, axis, logits.ndim)
    # A class with zero target weight contributes 0 even where its logit is
    # -inf (a masked class); torch gives 0 * inf = NaN there.
    per = -xp.sum(xp.where(wt == 0, xp.zeros_like(logp), wt * logp), axis=axis)
    loss, s = _reduce(xp, per, reduction, _count(xp, None, per))
    if not return_grad:
        return loss, None
    p = xp.exp(logp)
    return loss, s * (p * xp.sum(wt, axis=axis, keepdims=True) - wt)


@_arrays_out
def nll_loss(xp, log_probs, target, *, axis, weight, ignore_index, reduction, return_grad):
    """softarray.nll_loss."""
    target, valid = _index_target(xp, target, ignore_index)
    hot = _one_hot(xp, target, axis, log_probs.shape[axis])
    lp_y = _pick(xp, log_probs, hot, axis)
    w_y = _mask(xp, _class_weight(xp, weight, hot, axis, lp_y), valid)
    per = _mask(xp, -w_y * lp_y, valid)
    loss, s = _reduce(xp, per, reduction, xp.sum(w_y))
    if not return_grad:
        return loss, None
    # Nonzero only at the target, as torch's (whose 0 * inf = NaN, for a
    # total weight of 0, also stays at the target).
    g = xp.expand_dims(-s * w_y, axis=axis)
    grad = xp.where(hot, g, xp.zeros_like(g))
    return loss, _mask_samples(xp, grad, valid, axis)


@_arrays_out
def z_loss(xp, logits, target, *, a, b, axis, weight, ignore_index, reduction, return_grad):
    """softarray.z_loss."""
    num_classes = logits.shape[axis]
    target, valid = _index_target(xp, target, ignore_index)
    hot = _one_hot(xp, target, axis, num_classes)
    d = logits - xp.mean(logits, axis=axis, keepdims=True)
    var = xp.mean(d * d, axis=axis, keepdims=True)
    # All logits equal: sigma is 0, even where the mean rounds away from them
    # (which would leave var a tiny positive number and zeta +-1). A NaN var
    # (NaN or infinite logits) stays in and makes zeta NaN, as in the kernel.
    hi = xp.max(logits, axis=axis, keepdims=True)
    flat = (hi == xp.min(logits, axis=axis, keepdims=True)) & xp.isfinite(hi)
    spread = ~flat & (var != 0)
    # sqrt of a stand-in 1 where sigma == 0, so neither zeta nor autograd
    # divides by zero there; zeta := 0 as documented.
    sigma = xp.sqrt(xp.where(spread, var, xp.ones_like(var)))
    zeta = xp.where(spread, d / sigma, xp.zeros_like(d))
    zeta_y = _pick(xp, zeta, hot, axis)
    w_y = _mask(xp, _class_weight(xp, weight, hot, axis, zeta_y), valid)
    arg = a * (b - zeta_y)
    per = _mask(xp, w_y * _softplus(xp, arg) / a, valid)
    loss, s = _reduce(xp, per, reduction, xp.sum(w_y))
    if not return_grad:
        return loss, None
    g = xp.expand_dims(-w_y * _sigmoid(xp, arg), axis=axis) / sigma
    grad = g * (xp.astype(hot, logits.dtype) - 1 / num_classes
                - xp.expand_dims(zeta_y, axis=axis) * zeta / num_classes)
    grad = s * xp.where(spread, grad, xp.zeros_like(grad))
    return loss, _mask_samples(xp, grad, valid, axis)


@_arrays_out
def focal_loss(xp, logits, target, *, gamma, alpha, axis, ignore_index, reduction,
               return_grad):
    """softarray.focal_loss."""
    _, logp = _log_softmax_parts(xp, logits, axis)
    target, valid = _index_target(xp, target, ignore_index)
    hot = _one_hot(xp, target, axis, logits.shape[axis])
    log_q = _pick(xp, logp, hot, axis)
    # 1 - q from log q keeps its digits when q is close to 1.
    one_minus_q = -xp.expm1(log_q)
    alpha_y = _class_weight(xp, alpha, hot, axis, log_q)
    per = _mask(xp, -alpha_y * one_minus_q ** gamma * log_q, valid)
    loss, s = _reduce(xp, per, reduction, _count(xp, valid, log_q))
    if not return_grad:
        return loss, None
    some = one_minus_q > 0
    # base 1 where 1 - q == 0: that term is 0 there, and 0 ** (gamma - 1)
    # would be inf for gamma < 1.
    base = xp.where(some, one_minus_q, xp.ones_like(log_q))
    first = xp.where(some, gamma * base ** (gamma - 1) * xp.exp(log_q) * log_q,
                     xp.zeros_like(log_q))
    g = alpha_y * (first - one_minus_q ** gamma)
    return loss, _index_loss_grad(xp, g, hot, xp.exp(logp), axis, valid, s)


@_arrays_out
def comp_sum_loss(xp, logits, target, *, tau, axis, weight, ignore_index, reduction,
                  return_grad):
    """softarray.comp_sum_loss."""
    _, logp = _log_softmax_parts(xp, logits, axis)
    target, valid = _index_target(xp, target, ignore_index)
    hot = _one_hot(xp, target, axis, logits.shape[axis])
    log_q = _pick(xp, logp, hot, axis)
    if tau == 1:
        phi = -log_q
    else:
        # ((1 + u)^(1 - tau) - 1) / (1 - tau) with 1 + u = 1/q; expm1 keeps
        # the small losses of confident samples.
        phi = xp.expm1((tau - 1) * log_q) / (1 - tau)
    w_y = _mask(xp, _class_weight(xp, weight, hot, axis, log_q), valid)
    per = _mask(xp, w_y * phi, valid)
    loss, s = _reduce(xp, per, reduction, xp.sum(w_y))
    if not return_grad:
        return loss, None
    g = -w_y * xp.exp((tau - 1) * log_q)
    return loss, _index_loss_grad(xp, g, hot, xp.exp(logp), axis, valid, s)


def generalized_cross_entropy(xp, logits, target, *, q, axis, weight, ignore_index,
                              reduction, return_grad):
    """softarray.generalized_cross_entropy."""
    return comp_sum_loss(xp, logits, target, tau=1 + q, axis=axis, weight=weight,
                         ignore_index=ignore_index, reduction=reduction,
                         return_grad=return_grad)


def mae_loss(xp, logits, target, *, axis, weight, ignore_index, reduction, return_grad):
    """softarray.mae_loss."""
    return comp_sum_loss(xp, logits, target, tau=2, axis=axis, weight=weight,
                         ignore_index=ignore_index, reduction=reduction,
                         return_grad=return_grad)


@_arrays_out
def multi_margin_loss(xp, logits, target, *, p, margin, weight, form, axis, reduction,
                      return_grad):
    """softarray.multi_margin_loss."""
    num_classes = logits.shape[axis]
    hot = _one_hot(xp, target, axis, num_classes)
    z_y = _pick(xp, logits, hot, axis)
    h = margin - xp.expand_dims(z_y, axis=axis) + logits
    w_y = _class_weight(xp, weight, hot, axis, z_y)
    zero = xp.zeros_like(h)
    if form == "weston_watkins":
        active = (h > 0) & ~hot
        hinge = xp.where(active, h, zero)
        per = w_y * xp.sum(hinge if p == 1 else hinge * hinge, axis=axis) / num_classes
    else:
        # max over c != y; with C == 1 it is -inf and the loss 0.
        h_other = xp.where(hot, xp.full_like(h, -math.inf), h)
        worst = xp.max(h_other, axis=axis)
        hinge = xp.where(worst > 0, worst, xp.zeros_like(worst))
        per = w_y * (hinge if p == 1 else hinge * hinge)
    # A NaN hinge (c != y) makes the sample's loss and gradient NaN, as in
    # the kernel; h > 0 alone would silently drop it.
    nan_row = xp.any(xp.isnan(h) & ~hot, axis=axis)
    per = xp.where(nan_row, xp.full_like(per, math.nan), per)
    loss, s = _reduce(xp, per, reduction, _count(xp, None, per))
    if not return_grad:
        return loss, None
    if form == "weston_watkins":
        slope = xp.where(active, xp.ones_like(h) if p == 1 else 2 * h, zero)
        g = slope * xp.expand_dims(w_y / num_classes, axis=axis)
    else:
        # Only the first class attaining the maximum gets the subgradient.
        first = _one_hot(xp, xp.astype(xp.argmax(h_other, axis=axis), target.dtype),
                         axis, num_classes)
        coef = w_y * (xp.ones_like(hinge) if p == 1 else 2 * hinge)
        coef = xp.where(worst > 0, coef, xp.zeros_like(coef))
        g = xp.where(first, xp.expand_dims(coef, axis=axis), zero)
    grad = g - xp.astype(hot, logits.dtype) * xp.sum(g, axis=axis, keepdims=True)
    grad = xp.where(xp.expand_dims(nan_row, axis=axis), xp.full_like(grad, math.nan), grad)
    return loss, s * grad


@_arrays_out
def logsumexp_penalty(xp, logits, *, axis, weight, reduction, return_grad):
    """softarray.logsumexp_penalty."""
    lse, logp = _log_softmax_parts(xp, logits, axis)
    lse = xp.squeeze(lse, axis=axis)
    per = weight * lse * lse
    loss, s = _reduce(xp, per, reduction, _count(xp, None, per))
    if not return_grad:
        return loss, None
    return loss, s * (2 * weight) * xp.expand_dims(lse, axis=axis) * xp.exp(logp)


# ------------------------------------------------------------------ elementwise

@_arrays_out
def binary_cross_entropy_with_logits(xp, logits, target, *, weight, pos_weight,
                                     reduction, return_grad):
    """softarray.binary_cross_entropy_with_logits."""
    # (1 - t) x + lw softplus(-x) == (1 - t) softplus(x) + pw t softplus(-x):
    # the second form subtracts nothing, so a confident correct logit keeps
    # the digits of its small loss.
    t_pos = target if pos_weight is None else pos_weight * target
    per = (1 - target) * _softplus(xp, logits) + t_pos * _softplus(xp, -logits)
    if weight is not None:
        per = weight * per
    loss, s = _reduce(xp, per, reduction, _count(xp, None, per))
    if not return_grad:
        return loss, None
    grad = (1 - target) * _sigmoid(xp, logits) - t_pos * _sigmoid(xp, -logits)
    if weight is not None:
        grad = weight * grad
    return loss, s * grad


@_arrays_out
def sigmoid_focal_loss(xp, logits, target, *, alpha, gamma, reduction, return_grad):
    """softarray.sigmoid_focal_loss."""
    p = _sigmoid(xp, logits)
    p_neg = _sigmoid(xp, -logits)
    # A zero coefficient gives 0, not 0 * inf = NaN at x = +-inf (the limits).
    zero = xp.zeros_like(p)
    ce = (xp.where(target == 1, zero, (1 - target) * _softplus(xp, logits))
          + xp.where(target == 0, zero, target * _softplus(xp, -logits)))
    # 1 - p_t as p (1 - t) + (1 - p) t: no cancellation for t in {0, 1}.
    miss = p * (1 - target) + p_neg * target
    per = ce * miss ** gamma
    alpha_t = None if alpha < 0 else alpha * target + (1 - alpha) * (1 - target)
    if alpha_t is not None:
        per = alpha_t * per
    loss, s = _reduce(xp, per, reduction, _count(xp, None, per))
    if not return_grad:
        return loss, None
    some = miss > 0
    base = xp.where(some, miss, xp.ones_like(miss))
    # d(miss)/dx = p (1 - p) (1 - 2t)
    d_pow = xp.where(some, gamma * base ** (gamma - 1), xp.zeros_like(miss))
    d_miss = d_pow * p * p_neg * (1 - 2 * target)
    # d_miss is 0 where p saturates: ce d_miss -> 0 there, even for ce = inf.
    grad = (p - target) * miss ** gamma + xp.where(d_miss == 0, zero, ce * d_miss)
    if alpha_t is not None:
        grad = alpha_t * grad
    return loss, s * grad


@_arrays_out
def kl_div(xp, input, target, *, axis, reduction, log_target, from_logits, return_grad):
    """softarray.kl_div."""
    logp = _log_softmax_parts(xp, input, axis)[1] if from_logits else input
    t = xp.exp(target) if log_target else target
    absent = t == 0
    # t == 0 contributes 0, even where the log-probability is -inf: stand-ins
    # keep 0 * inf (and autograd's 0 * inf) out. Negative t still gives NaN,
    # as in torch.
    logp_safe = xp.where(absent, xp.zeros_like(logp), logp)
    if log_target:
        log_t = xp.where(absent, xp.zeros_like(target), target)
    else:
        log_t = xp.log(xp.where(absent, xp.ones_like(target), target))
    point = t * (log_t - logp_safe)
    if reduction == "batchmean":
        reduction, denominator = "mean", (input.shape[0] if input.ndim else 1)
    else:
        denominator = math.prod(point.shape)
    loss, s = _reduce(xp, point, reduction, _scalar(xp, denominator, point))
    if not return_grad:
        return loss, None
    if from_logits:
        grad = xp.exp(logp) * xp.sum(t, axis=axis, keepdims=True) - t
    else:
        grad = -t
    return loss, s * grad
