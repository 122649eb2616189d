"""Fused linear cross-entropy with array-API calls only: the compiled
kernel's algorithm (``src/_linear_cross_entropy.pyx``), one vocabulary chunk
of all rows at a time, for arrays the kernel cannot take (GPU arrays,
array-api-strict, float16, tensors that require grad).

Arguments arrive validated: ``embeddings`` (N, D) and ``classifier`` (V, D)
of one real floating dtype, ``bias`` None or (V,) of that dtype, ``target``
an (N,) integer array of their namespace and device whose entries are class
indices or ``ignore_index``, ``chunk_size`` a positive int, the rest plain
Python values. Special values come out as in the compiled kernel.
"""
import math

import array_api_compat


def linear_cross_entropy(xp, embeddings, classifier, target, *, bias, ignore_index,
                         label_smoothing, reduction, chunk_size, return_grad):
    """Returns ``(loss, grads)``; ``grads`` is None unless ``return_grad``."""
    v = classifier.shape[0]
    valid = _valid(xp, target, ignore_index)
    chunks = [(c0, min(c0 + chunk_size, v)) for c0 in range(0, v, chunk_size)]
    fwd = _Forward(xp, embeddings, classifier, bias, target, label_smoothing != 0)
    for c0, c1 in chunks:
        fwd.add_chunk(c0, c1)
    lse = fwd.lse()
    row_loss = lse - fwd.target_logit
    if label_smoothing != 0:    # not folded in: 0 * inf would be NaN
        eps = label_smoothing
        row_loss = (1 - eps) * row_loss + eps * (lse - fwd.total / v)
    row_loss = xp.where(valid, row_loss, xp.zeros_like(row_loss))
    n_valid = xp.sum(xp.astype(valid, row_loss.dtype))
    loss = _reduce(xp, row_loss, reduction, n_valid)
    if not return_grad:
        return loss, None
    grads = _gradients(xp, embeddings, classifier, bias, target, valid, lse, label_smoothing,
                       _grad_scale(xp, reduction, n_valid), chunks)
    return loss, grads


def _valid(xp, target, ignore_index):
    if ignore_index is None:
        return xp.ones(target.shape, dtype=xp.bool, device=array_api_compat.device(target))
    return target != ignore_index


def _logits(xp, embeddings, classifier, bias, c0, c1):
    z = embeddings @ xp.matrix_transpose(classifier[c0:c1, :])
    return z if bias is None else z + bias[c0:c1]


def _is_target(xp, target, c0, c1):
    """(N, c1 - c0) mask of each row's target column within the chunk."""
    cols = xp.arange(c0, c1, dtype=target.dtype, device=array_api_compat.device(target))
    return cols[None, :] == target[:, None]


class _Forward:
    """Running per-row state over vocabulary chunks: the maximum (NaN once a
    NaN is seen), the sum of exp(z - maximum), the target's logit and, for
    label smoothing, the sum of the logits."""

    def __init__(self, xp, embeddings, classifier, bias, target, want_total):
        n = embeddings.shape[0]
        dtype, device = embeddings.dtype, array_api_compat.device(embeddings)
        self.xp, self.embeddings, self.classifier, self.bias = xp, embeddings, classifier, bias
        self.target = target
        self.max = xp.full((n,), -math.inf, dtype=dtype, device=device)
        self.nan = xp.zeros((n,), dtype=xp.bool, device=device)
        self.sum = xp.zeros((n,), dtype=dtype, device=device)
        self.target_logit = xp.zeros((n,), dtype=dtype, device=device)
        self.total = xp.zeros((n,), dtype=dtype, device=device) if want_total else None

    def add_chunk(self, c0, c1):
        """Online log-sum-exp: the sum so far is rescaled when the maximum rises."""
        xp = self.xp
        z = _logits(xp, self.embeddings, self.classifier, self.bias, c0, c1)
        zero = xp.zeros_like(z)
        hit = _is_target(xp, self.target, c0, c1)
        self.target_logit = self.target_logit + xp.sum(xp.where(hit, z, zero), axis=1)
        if self.total is not None:
            self.total = self.total + xp.sum(z, axis=1)
        self.nan = self.nan | xp.any(xp.isnan(z), axis=1)
        no_nan = xp.where(xp.isnan(z), xp.full_like(z, -math.inf), z)
        new_max = xp.maximum(self.max, xp.max(no_nan, axis=1))
        finite = xp.isfinite(new_max)
        shift = xp.where(finite, new_max, xp.zeros_like(new_max))
        chunk_sum = xp.sum(xp.exp(z - shift[:, None]), axis=1)
        # A row with a non-finite maximum gets a NaN lse: its sum is not used.
        self.sum = xp.where(finite, self.sum * xp.exp(self.max - shift) + chunk_sum, self.sum)
        self.max = new_max

    def lse(self):
        """NaN for rows whose maximum is not finite, as torch gives there."""
        xp = self.xp
        finite = xp.isfinite(self.max) & ~self.nan
        safe_sum = xp.where(finite, self.sum, xp.ones_like(self.sum))
        return xp.where(finite, self.max + xp.log(safe_sum), xp.full_like(self.max, math.nan))


def _reduce(xp, row_loss, reduction, n_valid):
    if reduction == "none":
        return row_loss
    total = xp.sum(row_loss)
    if reduction == "sum":
        return total
    # NaN when nothing is left, as torch; dividing by NaN rather than 0 raises no warning.
    return total / xp.where(n_valid > 0, n_valid, xp.full_like(n_valid, math.nan))


def _grad_scale(xp, reduction, n_valid):
    """d loss / d (per-sample loss) of a non-ignored sample, as a 0-d array
    (0 when every sample is ignored, as in torch)."""
    if reduction != "mean":
        return xp.ones_like(n_valid)
    return xp.where(n_valid > 0, 1 / xp.maximum(n_valid, xp.ones_like(n_valid)),
                    xp.zeros_like(n_valid))


def _gradients(xp, embeddings, classifier, bias, target, valid, lse, eps, scale, chunks):
    """Per chunk, recompute the logits and turn them into G = scale (softmax -
    (1 - eps) onehot - eps / V) (0 on ignored rows, NaN on rows whose lse is
    NaN), then accumulate G @ classifier and G.T @ embeddings."""
    v = classifier.shape[0]
    keep = valid[:, None]
    broken = (valid & xp.isnan(lse))[:, None]
    d_emb = xp.zeros_like(embeddings)
    d_cls, d_bias = [], []
    for c0, c1 in chunks:
        z = _logits(xp, embeddings, classifier, bias, c0, c1)
        hit = xp.astype(_is_target(xp, target, c0, c1), z.dtype)
        g = scale * (xp.exp(z - lse[:, None]) - eps / v - (1 - eps) * hit)
        g = xp.where(keep, g, xp.zeros_like(g))
        g = xp.where(broken, xp.full_like(g, math.nan), g)
        d_emb = d_emb + g @ classifier[c0:c1, :]
        d_cls.append(xp.matrix_transpose(g) @ embeddings)
        d_bias.append(xp.sum(g, axis=0))
    grads = (d_emb, xp.concat(d_cls, axis=0))
    return grads + (xp.concat(d_bias, axis=0),) if bias is not None else grads
