"""Classification losses with analytic gradients: the public functions.

Each validates its arguments, then runs the fused compiled kernel
(``softarray._lib._losses``) on NumPy arrays and CPU DLPack arrays, or the
portable array-API implementation (``softarray._portable.losses``) on
anything else; ``softarray._dispatch`` decides which. With
``return_grad=True`` a function returns ``(loss, grad)``: ``grad`` has the
first argument's shape and dtype and is the gradient of the returned loss,
or, with ``reduction="none"``, of the sum of the returned losses.
"""
import math

import numpy as np

from . import _dispatch
from ._declare import LossOverSamples, ReturnedGradient, declare
from ._lib import _losses as _kernels
from ._output_cache import empty as output_empty
from ._portable import losses as _portable
from ._reduction import grad_scale, reduce_losses
from ._softmax import log_softmax
from ._threads import threads_for_call
from ._validate import (
    check_axis,
    check_bool,
    check_choice,
    check_ignore_index,
    check_int,
    check_real,
    check_reduction,
    floating_input,
    isdtype,
    known_all,
    known_any,
    REDUCTIONS,
)

_MARGIN_FORMS = ("weston_watkins", "crammer_singer")

# Z-loss defaults: the paper (de Brebisson & Vincent, 2016) treats a and b as
# hyperparameters tuned per task; a = 1, b = 0 is the form its authors'
# released example code computes (softplus((mean - o_c) / std)).
Z_LOSS_A = 1.0
Z_LOSS_B = 0.0


# --------------------------------------------------------------- validation

def _logits_input(x, name):
    xp, x = _dispatch.namespace_of(x, name)
    return xp, floating_input(xp, x, name)


def _as_namespace_array(xp, value, name):
    _dispatch.check_same_library(xp, value, name, "logits")
    try:
        return xp.asarray(value)
    except Exception as exc:
        raise TypeError(f"{name} must be an array, got {type(value).__name__}") from exc


def _class_vector(xp, value, C, name, dtype):
    """Per-class weights: None, or non-negative finite reals, one per class."""
    if value is None:
        return None
    v = _as_namespace_array(xp, value, name)
    if not isdtype(xp, v.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"{name} must be a real array, got dtype {v.dtype}")
    if v.ndim != 1 or v.shape[0] != C:
        raise ValueError(f"{name} must have shape ({C},) (one entry per class), got {tuple(v.shape)}")
    v = xp.astype(v, dtype)
    if not known_all(xp, xp.isfinite(v)) or known_any(xp, v < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    return v


def _index_target(xp, target, shape, axis, C, ignore_index):
    """Integer class indices of shape ``shape`` without ``axis``."""
    expected = shape[:axis] + shape[axis + 1:]
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target must have shape {expected} (the logits' shape without axis {axis}), "
            f"got {tuple(target.shape)}"
        )
    bad = (target < 0) | (target >= C)
    kept = _portable.not_ignored(xp, target, ignore_index)
    if kept is not None:
        bad = bad & kept
    if known_any(xp, bad):
        allowed = f"[0, {C})" + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
        raise ValueError(f"target has class indices outside {allowed}")
    return target


def _probability_target(xp, target, logits, name="target"):
    """Float targets of the logits' shape: finite and non-negative."""
    if tuple(target.shape) != tuple(logits.shape):
        raise ValueError(
            f"{name} of probabilities must have the logits' shape {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    target = xp.astype(target, logits.dtype)
    if known_any(xp, xp.isnan(target)):
        raise ValueError(f"{name} contains NaN")
    if not known_all(xp, xp.isfinite(target)) or known_any(xp, target < 0):
        raise ValueError(f"{name} must hold finite, non-negative probabilities")
    return target


def _split_target(xp, target, logits, axis, ignore_index, *, allow_probs):
    """Return (target, is_probabilities) after validating it."""
    target = _as_namespace_array(xp, target, "target")
    C = logits.shape[axis]
    if isdtype(xp, target.dtype, "integral"):
        return _index_target(xp, target, tuple(logits.shape), axis, C, ignore_index), False
    if not allow_probs or not isdtype(xp, target.dtype, "real floating"):
        kinds = "integer class indices" + (" or class probabilities" if allow_probs else "")
        raise TypeError(f"target must hold {kinds}, got dtype {target.dtype}")
    if ignore_index is not None:
        raise ValueError("ignore_index applies to class-index targets, not to probability targets")
    if tuple(target.shape) != tuple(logits.shape):
        shape = tuple(logits.shape)
        index_shape = shape[:axis] + shape[axis + 1:]
        raise ValueError(
            f"target of dtype {target.dtype} and shape {tuple(target.shape)} is neither reading "
            f"of a target: class probabilities must have the logits' shape {shape}, and class "
            f"indices of shape {index_shape} must be integers"
            + (" (convert them, e.g. target.astype(int))"
               if tuple(target.shape) == index_shape else ""))
    return _probability_target(xp, target, logits), True


def _index_inputs(xp, logits, target, axis, weight, ignore_index, weight_name="weight"):
    """Validate a class-index loss's target, class weights and ignore_index."""
    ignore_index = check_ignore_index(ignore_index)
    weight = _class_vector(xp, weight, logits.shape[axis], weight_name, logits.dtype)
    target, _ = _split_target(xp, target, logits, axis, ignore_index, allow_probs=False)
    return target, weight, ignore_index


def _common(logits, axis, reduction, return_grad, name="logits", reductions=REDUCTIONS):
    xp, logits = _logits_input(logits, name)
    axis = check_axis(axis, logits.ndim, name, " (the classes)")
    if logits.shape[axis] == 0:
        raise ValueError(f"{name} has no classes: axis {axis} has length 0")
    return xp, logits, axis, check_reduction(reduction, reductions), check_bool(return_grad, "return_grad")


# --------------------------------------------------------------- compiled path

def _compiled_operands(logits, *others):
    """NumPy views of logits and the other arrays for the kernels, or None
    when any of them must take the portable path. Half-precision logits (and
    class weights or probability targets, which follow their dtype) come as
    float32 copies: the kernels compute in float32 and ``_finish`` rounds
    the results once to the half dtype."""
    a, _ = _dispatch.kernel_operand(logits)
    if a is None:
        return None
    views = _kernel_views(*others)
    return None if views is None else [a] + views


def _kernel_views(*arrays):
    """NumPy views of arrays for the kernels (None stays None; half
    precision as float32 copies), or None when any must take the portable
    path."""
    views = []
    for x in arrays:
        if x is None:
            views.append(None)
            continue
        v = _dispatch.numpy_view(x)
        if v is None:
            half = _dispatch.widened_half(x)
            if half is None:
                return None
            v = half[0]
        views.append(v)
    return views


def _run_samples(a, axis, opts, *, y=None, t=None, class_weight=None, reduction, denominator,
                 return_grad, none_shape=None):
    """Run a per-sample (class-axis) kernel and reduce. Returns NumPy (loss, grad|None)."""
    shape = a.shape
    C = shape[axis]
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    x3 = a.reshape(outer, C, inner)
    n = outer * inner
    cw = np.empty(0) if class_weight is None else np.ascontiguousarray(class_weight, np.float64)
    opts = dict(opts, grad_scale=grad_scale(reduction, denominator),
                class_weight_sum=float(cw.sum()) if cw.size else float(C))
    loss = np.empty(n, np.float64)
    grad = output_empty((outer, C, inner) if return_grad else (0, 0, 0), a.dtype)
    t3 = x3 if t is None else t.astype(a.dtype, copy=False).reshape(outer, C, inner)
    y1 = np.empty(0, np.int64) if y is None else np.ascontiguousarray(y, np.int64).reshape(-1)
    _kernels.samples(x3, y1, t3, grad, loss, cw, opts, threads_for_call())
    if none_shape is None:
        none_shape = shape[:axis] + shape[axis + 1:]
    value = reduce_losses(loss, reduction, denominator, none_shape, a.dtype)
    return value, (grad.reshape(shape) if return_grad else None)


def _run_half_samples(half, opts, *, y, class_weight, reduction, denominator, return_grad):
    """_run_samples for half-precision logits read directly (``_dispatch.half_rows``'s
    ``(rows, kind, out, out_rows)``, classes along the last axis): NumPy
    float32 loss (for ``_finish`` to round) and the gradient already in the
    logits' library and dtype, ``out``."""
    rows, kind, out, out_rows = half
    n, C = rows.shape
    cw = np.empty(0) if class_weight is None else np.ascontiguousarray(class_weight, np.float64)
    opts = dict(opts, grad_scale=grad_scale(reduction, denominator),
                class_weight_sum=float(cw.sum()) if cw.size else float(C))
    loss = np.empty(n, np.float64)
    y1 = np.ascontiguousarray(y, np.int64).reshape(-1)
    _kernels.samples_half(rows, kind, y1, out_rows if return_grad else np.empty((0, 0), np.uint16), loss, cw,
                          opts, threads_for_call())
    value = reduce_losses(loss, reduction, denominator, tuple(out.shape[:-1]), np.float32)
    return value, (out if return_grad else None)


def _finish(xp, like, loss, grad, return_grad):
    """Hand NumPy results back in the caller's array type (and half dtype,
    rounded once, for half-precision ``like``: torch's dtypes for half logits)."""
    narrow = _dispatch.narrowing(like)
    loss = _dispatch.to_caller(xp, loss, like, narrow)
    if not return_grad:
        return loss
    return loss, _dispatch.to_caller(xp, grad, like, narrow)


def _portable_result(result, return_grad):
    loss, grad = result
    return (loss, grad) if return_grad else loss


def _indices_for_kernel(y, ignore_index):
    """Class indices as int64 with ignored samples mapped to -1."""
    y = np.asarray(y, np.int64)
    return y if ignore_index is None else np.where(y == ignore_index, -1, y)


def _weighted_count(y_kernel, class_weight):
    """sum of w[y] over the samples that are not ignored (torch's mean denominator)."""
    kept = y_kernel[y_kernel >= 0]
    if class_weight is None:
        return float(kept.size)
    return float(np.asarray(class_weight, np.float64)[kept].sum())


def _weighted_share(arguments):
    """A block's share of a "mean"'s denominator, from a NumPy call's
    arguments: the summed class weights of its kept samples (torch's)."""
    targets = _indices_for_kernel(arguments["target"], arguments["ignore_index"])
    return _weighted_count(targets, arguments["weight"])


def _counted_share(arguments):
    """A block's share of a "mean"'s denominator: its kept samples."""
    return _weighted_count(_indices_for_kernel(arguments["target"], arguments["ignore_index"]), None)


# The splits most losses declare: class-index losses whose mean divides by
# the kept samples' class weights, and losses of independent entries.
_KEPT_WEIGHT_MEAN = LossOverSamples("logits", "kept", class_weight="weight",
                                    kept_share=_weighted_share)
_ELEMENTWISE_MEAN = LossOverSamples("logits", "elements", elementwise=True)
# Gradient rules: the gradient the loss returns, for its scores; "none"
# losses are one per sample along the class axis, or one per entry.
_LOGITS_GRADIENT = ReturnedGradient(("logits",))
_ENTRIES_GRADIENT = ReturnedGradient(("logits",), none="entries")


def _kl_div_blocks(arguments):
    """kl_div's split: per entry, or per sample along ``axis`` from logits;
    "batchmean" divides by the first axis' length."""
    mean_over = "batch" if arguments["reduction"] == "batchmean" else "elements"
    return LossOverSamples("input", mean_over, elementwise=not arguments["from_logits"],
                           pointwise=True)


def _kl_div_none(arguments):
    """kl_div's "none" losses: one per entry, each of its own input entry
    only on log-probabilities; from logits every entry's loss depends on
    the whole sample, so their summed gradient cannot be split."""
    return None if arguments["from_logits"] else "entries"


def _small_cross_entropy(logits, target, axis, reduction, return_grad):
    """The fast path of small calls (every option but the reduction and
    return_grad at its default): the loss (and gradient) when logits are
    plain rows (``_plain.pxd``) and target a C-contiguous int64 NumPy array
    of their other axes' shape with every index in range, reduced in C
    (``_kernels.plain_cross_entropy``), else None and the general path runs
    (and raises any error). The kernel, options and reduction are the
    general path's, so are the bits."""
    tensor = None if type(logits) is np.ndarray else _dispatch.plain_tensor(logits)
    if tensor is not None:          # torch logits take torch targets
        logits, target = tensor, _dispatch.plain_tensor(target)
    result = _kernels.plain_cross_entropy(logits, target, axis, reduction, return_grad,
                                          threads_for_call())
    if tensor is None or result is None:
        return result
    if return_grad:
        return _dispatch.as_tensor(result[0]), _dispatch.as_tensor(result[1])
    return _dispatch.as_tensor(result)


def _index_loss(kind, xp, logits, target, axis, reduction, return_grad, *, weight=None,
                ignore_index=None, mean_by="weight", portable=None, params=None):
    """Shared body of the class-index losses (everything but probability targets).

    mean_by: "weight" divides the mean by the summed class weights of the kept
    samples (torch's cross_entropy / nll_loss), "count" by the number of kept
    samples, "all" by the number of samples.
    """
    params = params or {}
    half = _dispatch.half_rows(logits, axis)
    if half is not None:
        views = _kernel_views(target, weight)
        ops = None if views is None else [half] + views
    else:
        ops = _compiled_operands(logits, target, weight)
    if ops is None:
        return _portable_result(portable(), return_grad)
    a, y, w = ops
    yk = _indices_for_kernel(y, ignore_index)
    if mean_by == "weight":
        denominator = _weighted_count(yk, w)
    elif mean_by == "count":
        denominator = float(np.count_nonzero(yk >= 0))
    else:
        denominator = float(yk.size)
    if half is not None:
        loss, grad = _run_half_samples(half, dict(params, kind=kind), y=yk, class_weight=w,
                                       reduction=reduction, denominator=denominator, return_grad=return_grad)
        loss = _finish(xp, logits, loss, None, False)
        return (loss, grad) if return_grad else loss
    loss, grad = _run_samples(a, axis, dict(params, kind=kind), y=yk, class_weight=w,
                              reduction=reduction, denominator=denominator, return_grad=return_grad)
    return _finish(xp, logits, loss, grad, return_grad)


# --------------------------------------------------------------- public functions

_GRAD_DOC = """return_grad : bool, default False
        Also return the gradient with respect to the first argument."""

_RETURNS_DOC = """loss : array
        0-d for ``reduction="mean"`` or ``"sum"``; per sample (the input's
        shape without ``axis``) for ``"none"``. The caller's array type and
        the input's floating dtype.
    grad : array, only with ``return_grad=True``
        The input's shape and dtype: the gradient of ``loss`` (of its sum for
        ``reduction="none"``)."""


@declare(_KEPT_WEIGHT_MEAN, gradient=_LOGITS_GRADIENT)
def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=None, label_smoothing=0.0,
                  reduction="mean", return_grad=False):
    r"""Cross-entropy between ``softmax(logits)`` and ``target``, fused.

    Semantics as ``torch.nn.functional.cross_entropy`` (with the class axis
    chosen by ``axis``, and no ``ignore_index`` unless given). The logits are
    read once for the loss, twice with the gradient; no temporary of their
    size is made.

    Parameters
    ----------
    logits : array
        Unnormalized scores, classes along ``axis``.
    target : array
        Integer class indices (the logits' shape without ``axis``), or class
        probabilities of the logits' shape.
    axis : int, default -1
        The class axis.
    weight : array, optional
        Non-negative weight per class.
    ignore_index : int, optional
        Samples whose target equals it contribute no loss, no gradient and
        nothing to the mean's denominator (index targets only).
    label_smoothing : float in [0, 1], default 0
        Mixes the target with the uniform distribution over classes.
    reduction : {"mean", "sum", "none"}
        "mean" divides by the summed ``weight[target]`` of the kept samples
        (index targets) or by the number of samples (probability targets).
    {grad}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    >>> round(float(sa.cross_entropy(logits, np.array([0, 2]))), 6)  # (log(e^2 + 2) - 2 + log(e^3 + 2) - 3) / 2
    0.167234
    >>> loss, grad = sa.cross_entropy(logits, np.array([0, 2]), return_grad=True)
    >>> bool(np.allclose(grad.sum(axis=1), 0.0))
    True
    """
    if (weight is None and ignore_index is None and type(return_grad) is bool
            and type(label_smoothing) in (float, int) and label_smoothing == 0):
        result = _small_cross_entropy(logits, target, axis, reduction, return_grad)
        if result is not None:
            return result
    return _cross_entropy(logits, target, axis, weight, ignore_index, label_smoothing, reduction,
                          return_grad)


def _cross_entropy(logits, target, axis, weight, ignore_index, label_smoothing, reduction,
                   return_grad):
    """cross_entropy's general path: a function of its own, so that the
    fast path above creates none of the cells its closure needs."""
    xp, logits, axis, reduction, return_grad = _common(logits, axis, reduction, return_grad)
    C = logits.shape[axis]
    eps = check_real(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    ignore_index = check_ignore_index(ignore_index)
    weight = _class_vector(xp, weight, C, "weight", logits.dtype)
    target, probs = _split_target(xp, target, logits, axis, ignore_index, allow_probs=True)

    def portable():
        return _portable.cross_entropy(xp, logits, target, axis=axis, weight=weight,
                                       ignore_index=ignore_index, label_smoothing=eps,
                                       reduction=reduction, return_grad=return_grad)

    if not probs:
        return _index_loss("cross_entropy", xp, logits, target, axis, reduction, return_grad,
                           weight=weight, ignore_index=ignore_index, portable=portable,
                           params={"smoothing": eps})
    ops = _compiled_operands(logits, target, weight)
    if ops is None:
        return _portable_result(portable(), return_grad)
    a, t, w = ops
    n_samples = a.size // C
    loss, grad = _run_samples(a, axis, {"kind": "cross_entropy_probs", "smoothing": eps}, t=t,
                              class_weight=w, reduction=reduction, denominator=float(n_samples),
                              return_grad=return_grad)
    return _finish(xp, logits, loss, grad, return_grad)


@declare(LossOverSamples("log_probs", "kept", class_weight="weight", kept_share=_weighted_share),
         gradient=ReturnedGradient(("log_probs",)))
def nll_loss(log_probs, target, *, axis=-1, weight=None, ignore_index=None, reduction="mean",
             return_grad=False):
    r"""Negative log-likelihood of class indices under log-probabilities.

    ``-weight[y] * log_probs[y]`` per sample, as ``torch.nn.functional.nll_loss``.

    Parameters
    ----------
    log_probs : array
        Log-probabilities, classes along ``axis`` (e.g. from :func:`log_softmax`).
    target : array of int
        Class indices, the input's shape without ``axis``.
    axis : int, default -1
    weight : array, optional
        Non-negative weight per class.
    ignore_index : int, optional
    reduction : {"mean", "sum", "none"}
        "mean" divides by the summed ``weight[target]`` of the kept samples.
    {grad}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> float(sa.nll_loss(np.log(np.array([[0.5, 0.5], [0.25, 0.75]])), np.array([0, 1])))
    0.4904146265058631
    """
    xp, x, axis, reduction, return_grad = _common(log_probs, axis, reduction, return_grad, "log_probs")
    target, weight, ignore_index = _index_inputs(xp, x, target, axis, weight, ignore_index)

    def portable():
        return _portable.nll_loss(xp, x, target, axis=axis, weight=weight, ignore_index=ignore_index,
                                  reduction=reduction, return_grad=return_grad)

    return _index_loss("nll", xp, x, target, axis, reduction, return_grad, weight=weight,
                       ignore_index=ignore_index, portable=portable)


@declare(_KEPT_WEIGHT_MEAN, gradient=_LOGITS_GRADIENT)
def z_loss(logits, target, *, a=Z_LOSS_A, b=Z_LOSS_B, axis=-1, weight=None, ignore_index=None,
           reduction="mean", return_grad=False):
    r"""The Z-loss of de Brébisson & Vincent, a shift- and scale-invariant loss.

    The logits are standardized per sample, ``zeta = (z - mean(z)) / std(z)``
    (population standard deviation over the classes), and the loss is
    ``softplus(a * (b - zeta[target])) / a``.

    Parameters
    ----------
    logits : array
    target : array of int
    a : float > 0, default 1
        Sharpness of the softplus: large ``a`` approaches a hinge at ``b``.
    b : float, default 0
        Location: the standardized score beyond which the loss flattens.
    axis : int, default -1
    weight : array, optional
        Non-negative weight per class (multiplies the sample's loss).
    ignore_index : int, optional
    reduction : {"mean", "sum", "none"}
        "mean" divides by the summed ``weight[target]`` of the kept samples.
    {grad}

    Returns
    -------
    {returns}

    Notes
    -----
    "The Z-loss: a shift and scale invariant classification loss belonging
    to the Spherical Family" (2016) tunes ``a`` and ``b`` per task (they trade
    top-1 against top-k accuracy); the defaults ``a = 1, b = 0`` are the form
    computed by the authors' released example code,
    ``softplus((mean - o_c) / std)``. A sample
    whose logits are all equal has ``std = 0``: its standardized score is
    taken as 0 and its gradient as 0.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> z = np.array([[3.0, 1.0, 0.0, -1.0]])
    >>> bool(np.isclose(sa.z_loss(z, np.array([0])), sa.z_loss(10 * z + 5, np.array([0]))))
    True
    """
    xp, logits, axis, reduction, return_grad = _common(logits, axis, reduction, return_grad)
    a = check_real(a, "a", low=0.0, low_open=True)
    b = check_real(b, "b")
    target, weight, ignore_index = _index_inputs(xp, logits, target, axis, weight, ignore_index)

    def portable():
        return _portable.z_loss(xp, logits, target, a=a, b=b, axis=axis, weight=weight,
                                ignore_index=ignore_index, reduction=reduction, return_grad=return_grad)

    return _index_loss("z_loss", xp, logits, target, axis, reduction, return_grad, weight=weight,
                       ignore_index=ignore_index, portable=portable, params={"a": a, "b": b})


@declare(LossOverSamples("logits", "kept", class_weight="alpha", kept_share=_counted_share),
         gradient=_LOGITS_GRADIENT)
def focal_loss(logits, target, *, gamma=2.0, alpha=None, axis=-1, ignore_index=None,
               reduction="mean", return_grad=False):
    r"""Softmax focal loss (Lin et al.): ``-alpha[y] (1 - p_y)^gamma log p_y``.

    Parameters
    ----------
    logits : array
    target : array of int
    gamma : float >= 0, default 2
        Focusing parameter; 0 gives (alpha-weighted) cross-entropy.
    alpha : array, optional
        Non-negative weight per class.
    axis : int, default -1
    ignore_index : int, optional
    reduction : {"mean", "sum", "none"}
        "mean" divides by the number of kept samples (``alpha`` is not in the
        denominator).
    {grad}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> z, y = np.array([[2.0, 0.0, -1.0]]), np.array([0])
    >>> bool(np.isclose(sa.focal_loss(z, y, gamma=0.0), sa.cross_entropy(z, y)))
    True
    """
    xp, logits, axis, reduction, return_grad = _common(logits, axis, reduction, return_grad)
    gamma = check_real(gamma, "gamma", low=0.0)
    target, alpha, ignore_index = _index_inputs(xp, logits, target, axis, alpha, ignore_index, "alpha")

    def portable():
        return _portable.focal_loss(xp, logits, target, gamma=gamma, alpha=alpha, axis=axis,
                                    ignore_index=ignore_index, reduction=reduction,
                                    return_grad=return_grad)

    return _index_loss("focal", xp, logits, target, axis, reduction, return_grad, weight=alpha,
                       ignore_index=ignore_index, mean_by="count", portable=portable,
                       params={"gamma": gamma})


@declare(_KEPT_WEIGHT_MEAN, gradient=_LOGITS_GRADIENT)
def comp_sum_loss(logits, target, *, tau, axis=-1, weight=None, ignore_index=None, reduction="mean",
                  return_grad=False):
    r"""The comp-sum losses of Mao, Mohri & Zhong, indexed by ``tau >= 0``.

    With ``u = sum_{c != y} exp(z_c - z_y) = 1 / p_y - 1``:
    ``Phi(u) = log(1 + u)`` for ``tau = 1`` (cross-entropy), else
    ``((1 + u)^(1 - tau) - 1) / (1 - tau)``: ``tau = 0`` is the sum-exponential
    loss, ``tau = 1 + q`` generalized cross-entropy, ``tau = 2`` the mean
    absolute error ``1 - p_y``.

    Parameters
    ----------
    logits : array
    target : array of int
    tau : float >= 0
    axis : int, default -1
    weight : array, optional
        Non-negative weight per class (multiplies the sample's loss).
    ignore_index : int, optional
    reduction : {"mean", "sum", "none"}
        "mean" divides by the summed ``weight[target]`` of the kept samples.
    {grad}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> z, y = np.array([[1.0, 2.0, 0.5]]), np.array([1])
    >>> bool(np.isclose(sa.comp_sum_loss(z, y, tau=1.0), sa.cross_entropy(z, y)))
    True
    """
    xp, logits, axis, reduction, return_grad = _common(logits, axis, reduction, return_grad)
    tau = check_real(tau, "tau", low=0.0)
    return _comp_sum(xp, logits, target, tau, axis, weight, ignore_index, reduction, return_grad)


def _comp_sum(xp, logits, target, tau, axis, weight, ignore_index, reduction, return_grad):
    target, weight, ignore_index = _index_inputs(xp, logits, target, axis, weight, ignore_index)

    def portable():
        return _portable.comp_sum_loss(xp, logits, target, tau=tau, axis=axis, weight=weight,
                                       ignore_index=ignore_index, reduction=reduction,
                                       return_grad=return_grad)

    return _index_loss("comp_sum", xp, logits, target, axis, reduction, return_grad, weight=weight,
                       ignore_index=ignore_index, portable=portable, params={"tau": tau})


@declare(_KEPT_WEIGHT_MEAN, gradient=_LOGITS_GRADIENT)
def generalized_cross_entropy(logits, target, *, q=0.7, axis=-1, weight=None, ignore_index=None,
                              reduction="mean", return_grad=False):
    r"""Generalized cross-entropy (Zhang & Sabuncu): ``(1 - p_y^q) / q``.

    The comp-sum loss with ``tau = 1 + q``: ``q -> 0`` tends to
    cross-entropy, ``q = 1`` is :func:`mae_loss`.

    Parameters
    ----------
    logits : array
    target : array of int
    q : float in (0, 1], default 0.7
    axis, weight, ignore_index, reduction
        As :func:`comp_sum_loss`.
    {grad}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> z, y = np.array([[0.0, 0.0]]), np.array([0])
    >>> float(sa.generalized_cross_entropy(z, y, q=1.0))
    0.5
    """
    xp, logits, axis, reduction, return_grad = _common(logits, axis, reduction, return_grad)
    q = check_real(q, "q", low=0.0, high=1.0, low_open=True)
    return _comp_sum(xp, logits, target, 1.0 + q, axis, weight, ignore_index, reduction, return_grad)


@declare(_KEPT_WEIGHT_MEAN, gradient=_LOGITS_GRADIENT)
def mae_loss(logits, target, *, axis=-1, weight=None, ignore_index=None, reduction="mean",
             return_grad=False):
    r"""Mean absolute error on probabilities, ``1 - p_y`` (comp-sum, ``tau = 2``).

    Parameters
    ----------
    logits : array
    target : array of int
    axis, weight, ignore_index, reduction
        As :func:`comp_sum_loss`.
    {grad}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> float(sa.mae_loss(np.array([[0.0, 0.0, 0.0, 0.0]]), np.array([2])))
    0.75
    """
    xp, logits, axis, reduction, return_grad = _common(logits, axis, reduction, return_grad)
    return _comp_sum(xp, logits, target, 2.0, axis, weight, ignore_index, reduction, return_grad)


@declare(LossOverSamples("logits", "samples"), gradient=_LOGITS_GRADIENT)
def logsumexp_penalty(logits, *, axis=-1, weight=1.0, reduction="mean", return_grad=False):
    r"""The router z-loss of PaLM and ST-MoE: ``weight * logsumexp(logits)^2``.

    Parameters
    ----------
    logits : array
    axis : int, default -1
    weight : float >= 0, default 1
        Coefficient of the penalty (ST-MoE uses 1e-3).
    reduction : {"mean", "sum", "none"}
        "mean" averages over samples.
    {grad}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> float(sa.logsumexp_penalty(np.zeros((4, 2))))  # log(2)^2
    0.4804530139182014
    """
    xp, logits, axis, reduction, return_grad = _common(logits, axis, reduction, return_grad)
    weight = check_real(weight, "weight", low=0.0)
    ops = _compiled_operands(logits)
    if ops is None:
        return _portable_result(_portable.logsumexp_penalty(
            xp, logits, axis=axis, weight=weight, reduction=reduction, return_grad=return_grad),
            return_grad)
    a = ops[0]
    n = a.size // a.shape[axis]
    loss, grad = _run_samples(a, axis, {"kind": "logsumexp_penalty", "weight": weight},
                              y=np.zeros(n, np.int64), reduction=reduction, denominator=float(n),
                              return_grad=return_grad)
    return _finish(xp, logits, loss, grad, return_grad)


@declare(LossOverSamples("logits", "samples", class_weight="weight"), gradient=_LOGITS_GRADIENT)
def multi_margin_loss(logits, target, *, p=1, margin=1.0, weight=None, form="weston_watkins", axis=-1,
                      reduction="mean", return_grad=False):
    r"""Multiclass hinge loss; ``p=2`` is the squared hinge (L2-SVM).

    With ``h_c = margin - z_y + z_c``:

    * ``form="weston_watkins"``: ``weight[y] * sum_{c != y} max(0, h_c)^p / C``,
      exactly ``torch.nn.functional.multi_margin_loss``;
    * ``form="crammer_singer"``: ``weight[y] * max(0, max_{c != y} h_c)^p``.

    Parameters
    ----------
    logits : array
    target : array of int
    p : {1, 2}, default 1
    margin : float, default 1
    weight : array, optional
        Non-negative weight per class.
    form : {"weston_watkins", "crammer_singer"}
    axis : int, default -1
    reduction : {"mean", "sum", "none"}
        "mean" divides by the number of samples (as torch).
    {grad}

    Returns
    -------
    {returns}

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> z, y = np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([3])
    >>> round(float(sa.multi_margin_loss(z, y)), 6)  # torch's documented example
    0.325
    """
    xp, logits, axis, reduction, return_grad = _common(logits, axis, reduction, return_grad)
    p = check_int(p, "p", allowed=(1, 2))
    margin = check_real(margin, "margin")
    form = check_choice(form, "form", _MARGIN_FORMS)
    target, weight, _ = _index_inputs(xp, logits, target, axis, weight, None)

    def portable():
        return _portable.multi_margin_loss(xp, logits, target, p=p, margin=margin, weight=weight,
                                           form=form, axis=axis, reduction=reduction,
                                           return_grad=return_grad)

    return _index_loss(form, xp, logits, target, axis, reduction, return_grad, weight=weight,
                       mean_by="all", portable=portable, params={"margin": margin, "power": p})


# --------------------------------------------------------------- elementwise losses

def _broadcast_param(xp, value, shape, name, dtype):
    """An optional array parameter broadcast to ``shape``: finite, >= 0."""
    if value is None:
        return None
    v = _as_namespace_array(xp, value, name)
    if not isdtype(xp, v.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"{name} must be a real array, got dtype {v.dtype}")
    v = xp.astype(v, dtype)
    try:
        v = xp.broadcast_to(v, shape)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} of shape {tuple(v.shape)} does not broadcast to {shape}") from exc
    if not known_all(xp, xp.isfinite(v)) or known_any(xp, v < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    return v


def _elementwise_target(xp, target, x):
    target = _as_namespace_array(xp, target, "target")
    if not isdtype(xp, target.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"target must be a real array, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(x.shape):
        raise ValueError(f"target must have the input's shape {tuple(x.shape)}, got {tuple(target.shape)}")
    target = xp.astype(target, x.dtype)
    if not known_all(xp, xp.isfinite(target)):
        raise ValueError("target must be finite (it contains NaN or an infinity)")
    return target


def _as_rows(v, shape):
    """(R, L) view of an array broadcast to ``shape``; L = last axis."""
    L = shape[-1] if shape else 1
    R = math.prod(shape[:-1]) if shape else 1
    rows = np.broadcast_to(_dispatch.native_byte_order(v), shape).reshape(R, L)
    # The kernels step along a row by 0 (broadcast) or 1 element; a cast of a
    # broadcast view (a byte-swapped weight, say) can come back with any
    # stride, so such rows are copied.
    if rows.strides[1] not in (0, rows.itemsize):
        rows = np.ascontiguousarray(rows)
    return rows


def _run_elementwise(a, t, opts, *, weight=None, pos_weight=None, reduction, denominator,
                     return_grad, out=None):
    """Run an elementwise kernel and reduce; ``out`` may be ``a`` itself
    (each element is read before it is overwritten)."""
    shape = a.shape
    x2 = np.ascontiguousarray(_as_rows(a, shape))
    t2 = np.ascontiguousarray(_as_rows(t, shape), a.dtype)
    absent = np.empty((0, 0), a.dtype)
    w2 = absent if weight is None else _as_rows(np.asarray(weight, a.dtype), shape)
    p2 = absent if pos_weight is None else _as_rows(np.asarray(pos_weight, a.dtype), shape)
    if reduction != "none":
        out = absent
    elif out is None:
        out = output_empty(x2.shape, a.dtype)
    else:
        out = out.reshape(x2.shape)
    grad = output_empty(x2.shape, a.dtype) if return_grad else absent
    row_loss = np.empty(x2.shape[0], np.float64)
    opts = dict(opts, grad_scale=grad_scale(reduction, denominator))
    _kernels.elementwise(x2, t2, w2, p2, out, grad, row_loss, opts, threads_for_call())
    loss = out.reshape(shape) if reduction == "none" else reduce_losses(row_loss, reduction, denominator,
                                                                  (), a.dtype)
    return loss, (grad.reshape(shape) if return_grad else None)


@declare(_ELEMENTWISE_MEAN, gradient=_ENTRIES_GRADIENT)
def binary_cross_entropy_with_logits(logits, target, *, weight=None, pos_weight=None, reduction="mean",
                                     return_grad=False):
    r"""Sigmoid and binary cross-entropy in one stable step.

    ``weight * ((1 - t) x + (1 + (pos_weight - 1) t) * log(1 + exp(-x)))``,
    as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Parameters
    ----------
    logits : array
    target : array
        Targets in [0, 1] of the logits' shape (bool and integers accepted).
    weight : array, optional
        Non-negative, broadcast against the logits.
    pos_weight : array, optional
        Non-negative weight of the positive term, broadcast against the
        logits (one per class along the last axis, as torch).
    reduction : {"mean", "sum", "none"}
        "mean" averages over all elements; "none" is elementwise.
    {grad}

    Returns
    -------
    loss : array
        0-d, or the logits' shape for ``reduction="none"``.
    grad : array, only with ``return_grad=True``

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> round(float(sa.binary_cross_entropy_with_logits(np.array([0.0, 2.0]), np.array([1.0, 0.0]))), 6)  # (log 2 + 2 + log(1 + e^-2)) / 2
    1.410038
    """
    xp, x = _logits_input(logits, "logits")
    reduction = check_reduction(reduction)
    return_grad = check_bool(return_grad, "return_grad")
    target = _elementwise_target(xp, target, x)
    shape = tuple(x.shape)
    weight = _broadcast_param(xp, weight, shape, "weight", x.dtype)
    pos_weight = _broadcast_param(xp, pos_weight, shape, "pos_weight", x.dtype)
    ops = _compiled_operands(x, target, weight, pos_weight)
    if ops is None:
        return _portable_result(_portable.binary_cross_entropy_with_logits(
            xp, x, target, weight=weight, pos_weight=pos_weight, reduction=reduction,
            return_grad=return_grad), return_grad)
    a, t, w, pw = ops
    loss, grad = _run_elementwise(a, t, {"kind": "binary_cross_entropy"}, weight=w, pos_weight=pw,
                                  reduction=reduction, denominator=float(a.size),
                                  return_grad=return_grad)
    return _finish(xp, x, loss, grad, return_grad)


@declare(_ELEMENTWISE_MEAN, gradient=_ENTRIES_GRADIENT)
def sigmoid_focal_loss(logits, target, *, alpha=0.25, gamma=2.0, reduction="none", return_grad=False):
    r"""Binary focal loss on logits, as ``torchvision.ops.sigmoid_focal_loss``.

    ``alpha_t * (1 - p_t)^gamma * BCE(x, t)`` with ``p = sigmoid(x)``,
    ``p_t = p t + (1 - p)(1 - t)``, ``alpha_t = alpha t + (1 - alpha)(1 - t)``.

    Parameters
    ----------
    logits : array
    target : array
        Binary targets of the logits' shape.
    alpha : float, default 0.25
        Weight of the positive class; a negative value disables weighting.
    gamma : float >= 0, default 2
    reduction : {"none", "mean", "sum"}, default "none" (as torchvision)
    {grad}

    Returns
    -------
    loss : array
        The logits' shape for ``"none"``, else 0-d.
    grad : array, only with ``return_grad=True``

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.sigmoid_focal_loss(np.array([0.0]), np.array([1.0]), alpha=-1, gamma=0.0)
    array([0.69314718])
    """
    xp, x = _logits_input(logits, "logits")
    alpha = check_real(alpha, "alpha", high=1.0)
    gamma = check_real(gamma, "gamma", low=0.0)
    reduction = check_reduction(reduction)
    return_grad = check_bool(return_grad, "return_grad")
    target = _elementwise_target(xp, target, x)
    ops = _compiled_operands(x, target)
    if ops is None:
        return _portable_result(_portable.sigmoid_focal_loss(
            xp, x, target, alpha=alpha, gamma=gamma, reduction=reduction, return_grad=return_grad),
            return_grad)
    a, t = ops
    loss, grad = _run_elementwise(a, t, {"kind": "sigmoid_focal", "alpha": alpha, "gamma": gamma},
                                  reduction=reduction, denominator=float(a.size),
                                  return_grad=return_grad)
    return _finish(xp, x, loss, grad, return_grad)


@declare(_kl_div_blocks, gradient=ReturnedGradient(("input",), none=_kl_div_none))
def kl_div(input, target, *, axis=-1, reduction="mean", log_target=False, from_logits=False,
           return_grad=False):
    r"""Kullback-Leibler divergence ``KL(target || exp(input))``, pointwise summed.

    ``target * (log(target) - input)`` (``0`` where ``target == 0``), or
    ``exp(target) * (target - input)`` with ``log_target``, as
    ``torch.nn.functional.kl_div``. With ``from_logits=True`` the input is
    logits and ``log_softmax(input, axis)`` is used in its place, fused
    (``axis`` matters only then).

    Parameters
    ----------
    input : array
        Log-probabilities (or logits with ``from_logits``).
    target : array
        Probabilities (log-probabilities with ``log_target``), the input's shape.
    axis : int, default -1
    reduction : {"mean", "batchmean", "sum", "none"}
        "mean" averages over all elements (torch's default, which is not the
        KL divergence); "batchmean" divides the sum by ``input.shape[0]``;
        "none" is elementwise.
    log_target : bool, default False
    from_logits : bool, default False
    {grad}

    Returns
    -------
    loss : array
        0-d, or the input's shape for ``reduction="none"``.
    grad : array, only with ``return_grad=True``
        With respect to ``input`` (the logits, with ``from_logits``).

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> t = np.array([[0.5, 0.5]])
    >>> float(sa.kl_div(np.log(t), t, reduction="batchmean"))
    0.0
    """
    reductions = ("none", "mean", "batchmean", "sum")
    xp, x = _logits_input(input, "input")
    reduction = check_reduction(reduction, reductions)
    return_grad = check_bool(return_grad, "return_grad")
    log_target = check_bool(log_target, "log_target")
    from_logits = check_bool(from_logits, "from_logits")
    if from_logits:
        axis = check_axis(axis, x.ndim, "input", " (the classes)")
        if x.shape[axis] == 0:
            raise ValueError(f"input has no classes: axis {axis} has length 0")
    else:
        axis = None     # pointwise: no class axis
    target = _kl_target(xp, target, x, log_target)
    size = math.prod(x.shape)
    denominator = {"mean": float(size), "batchmean": float(x.shape[0] if x.ndim else 1)}.get(reduction, 1.0)
    ops = _compiled_operands(x, target)
    if ops is None:
        return _portable_result(_portable.kl_div(
            xp, x, target, axis=axis, reduction=reduction, log_target=log_target,
            from_logits=from_logits, return_grad=return_grad), return_grad)
    a, t = ops
    if not from_logits:
        loss, grad = _run_elementwise(a, t, {"kind": "kl", "log_target": log_target},
                                      reduction="sum" if reduction == "batchmean" else reduction,
                                      denominator=denominator, return_grad=return_grad)
        if reduction == "batchmean":
            loss = np.asarray(loss / denominator, a.dtype)
            grad = None if grad is None else grad / np.asarray(denominator, a.dtype)
        return _finish(xp, x, loss, grad, return_grad)
    return _kl_from_logits(xp, x, a, t, axis, reduction, log_target, denominator, return_grad)


def _kl_target(xp, target, x, log_target):
    target = _as_namespace_array(xp, target, "target")
    if not isdtype(xp, target.dtype, "real floating"):
        raise TypeError(f"target must be a floating array, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(x.shape):
        raise ValueError(f"target must have the input's shape {tuple(x.shape)}, got {tuple(target.shape)}")
    target = xp.astype(target, x.dtype)
    if known_any(xp, xp.isnan(target)):
        raise ValueError("target contains NaN")
    if log_target:
        if known_any(xp, target > 0) or known_any(xp, target == xp.inf):
            raise ValueError("target must hold log-probabilities (<= 0) with log_target=True")
    elif not known_all(xp, xp.isfinite(target)) or known_any(xp, target < 0):
        raise ValueError("target must hold finite, non-negative probabilities")
    return target


def _kl_from_logits(xp, x, a, t, axis, reduction, log_target, denominator, return_grad):
    opts = {"kind": "kl_logits", "log_target": log_target}
    if reduction != "none":
        loss, grad = _run_samples(a, axis, opts, t=t, reduction="sum" if reduction == "sum" else "mean",
                                  denominator=denominator, return_grad=return_grad)
        return _finish(xp, x, loss, grad, return_grad)
    # Elementwise output: the log-softmax is written into the output buffer
    # and the pointwise KL then overwrites it in place.
    log_p = np.ascontiguousarray(log_softmax(a, axis=axis))
    loss, _ = _run_elementwise(log_p, t, {"kind": "kl", "log_target": log_target}, reduction="none",
                               denominator=1.0, return_grad=False, out=log_p)
    grad = None
    if return_grad:
        _, grad = _run_samples(a, axis, opts, t=t, reduction="sum", denominator=1.0, return_grad=True)
    return _finish(xp, x, loss, grad, return_grad)


for _f in (cross_entropy, nll_loss, z_loss, focal_loss, comp_sum_loss, generalized_cross_entropy,
           mae_loss, logsumexp_penalty, multi_margin_loss, binary_cross_entropy_with_logits,
           sigmoid_focal_loss, kl_div):
    _f.__doc__ = _f.__doc__.replace("{grad}", _GRAD_DOC).replace("{returns}", _RETURNS_DOC)
del _f
