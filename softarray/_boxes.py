"""Box operations and non-maximum suppression: the public functions. They
validate, then run the compiled kernels (``softarray._lib._boxes``) on NumPy
arrays and CPU DLPack arrays, or the portable array-API implementation
(``softarray._portable.boxes``).

Boxes are axis-aligned, ``(x1, y1, x2, y2)`` with the continuous convention
of torchvision (width ``x2 - x1``, no ``+ 1``).
"""
import math

import array_api_compat
import numpy as np

from . import _dispatch
from ._conventions import threshold_in_dtype
from ._declare import BoxRows, PairedBoxRows, PairsOfBoxes, ReturnedGradient, WholeInput, declare
from ._lib import _boxes as _kernels
from ._output_cache import empty as output_empty
from ._portable import boxes as _portable
from ._threads import threads_for_call
from ._validate import (check_bool, check_choice, check_int, check_real, floating_input,
                        is_numpy_bfloat16, isdtype)

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
SOFT_NMS_METHODS = ("linear", "gaussian")
# The pairwise IoU kinds, in the order of the kernels' kind argument.
IOU_KINDS = ("plain", "generalized", "distance", "complete")


class BoxShapeError(ValueError, RuntimeError):
    """A box function's array argument has the wrong shape.

    Both a ``ValueError`` (softarray's convention for bad values) and a
    ``RuntimeError`` (what ``torchvision.ops`` raises for the same
    mistake), so code written for either catches it.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> try:
    ...     sa.box_area(np.zeros((3, 5)))
    ... except RuntimeError as error:       # as torchvision users catch it
    ...     print(type(error).__name__, isinstance(error, ValueError))
    BoxShapeError True
    """


# ----------------------------------------------------------------- validation

def _boxes_input(xp, boxes, name, *, batch=False):
    """boxes as a real floating array of shape (n, 4), or (..., 4) with batch."""
    boxes = floating_input(xp, boxes, name)
    _check_box_shape(boxes, name, batch)
    return boxes


def _integer_boxes(xp, boxes):
    """Integer or boolean boxes in torchvision's integer dtype for areas:
    int32 and int64 kept, narrower ones int32, unsigned 32 and 64 bits
    int64 (the differences of uint8 coordinates would wrap)."""
    if boxes.dtype in (xp.int32, xp.int64):
        return boxes
    wide = not isdtype(xp, boxes.dtype, "bool") and xp.iinfo(boxes.dtype).bits >= 32
    return xp.astype(boxes, xp.int64 if wide else xp.int32)


def _check_box_shape(boxes, name, batch):
    if batch:
        if boxes.ndim == 0 or boxes.shape[-1] != 4:
            raise BoxShapeError(f"{name} must have shape (..., 4), got {tuple(boxes.shape)}")
    elif boxes.ndim != 2 or boxes.shape[1] != 4:
        raise BoxShapeError(f"{name} must have shape (n, 4), got {tuple(boxes.shape)}")


def _is_half(xp, dtype):
    """A floating dtype narrower than float32 (float16, bfloat16)."""
    return isdtype(xp, dtype, "real floating") and (is_numpy_bfloat16(dtype) or xp.finfo(dtype).bits < 32)


def _widened(xp, x):
    """x in float32 when it is a half-precision float: areas of boxes whose
    sides are a few hundred overflow float16, and bfloat16 keeps 8 bits."""
    return xp.astype(x, xp.float32) if _is_half(xp, x.dtype) else x


def _boxes_and_scores(boxes, scores):
    """(xp, boxes, scores): one namespace, one floating dtype, n boxes and n scores."""
    xp, boxes = _dispatch.namespace_of(boxes, "boxes")
    _, scores = _dispatch.namespace_of(scores, "scores")
    _same_namespace(boxes, scores, "scores")
    boxes = _boxes_input(xp, boxes, "boxes")
    scores = floating_input(xp, scores, "scores")
    if scores.ndim != 1 or scores.shape[0] != boxes.shape[0]:
        raise BoxShapeError(
            f"scores must have shape ({boxes.shape[0]},), one per box, got {tuple(scores.shape)}"
        )
    dtype = xp.result_type(boxes.dtype, scores.dtype)
    return xp, xp.astype(boxes, dtype, copy=False), xp.astype(scores, dtype, copy=False)


def _same_namespace(first, other, name, first_name="boxes"):
    try:
        array_api_compat.array_namespace(first, other)
    except TypeError as exc:
        raise TypeError(f"{name} must be an array of the same library as {first_name}") from exc


def _labels_input(xp, labels, n):
    _, labels = _dispatch.namespace_of(labels, "labels")
    if not (isdtype(xp, labels.dtype, "integral") and not isdtype(xp, labels.dtype, "bool")):
        raise TypeError(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise BoxShapeError(f"labels must have shape ({n},), one per box, got {tuple(labels.shape)}")
    return labels


def _require_labels(labels):
    """The batched functions need labels: None would silently mean one group."""
    if labels is None:
        raise TypeError("labels must be an integer array of shape (n,), got None")


def _check_iou_threshold(iou_threshold):
    # Negative thresholds would let boxes that do not touch suppress each
    # other (torchvision allows them); 0 already means "any overlap".
    return check_real(iou_threshold, "iou_threshold", low=0.0)


def _check_max_output(max_output, n):
    """max_output as a count (n when None)."""
    if max_output is None:
        return n
    max_output = check_int(max_output, "max_output")
    if max_output < 0:
        raise ValueError(f"max_output must be >= 0 or None, got {max_output}")
    return min(max_output, n)


def _check_score_threshold(score_threshold, *, optional):
    if score_threshold is None and optional:
        return None
    return check_real(score_threshold, "score_threshold")


# ------------------------------------------------------------------ dispatch

def _host_labels(labels):
    """Integer labels as a contiguous int64 NumPy array, or None."""
    v = _dispatch.numpy_view(labels)
    return None if v is None else np.ascontiguousarray(v, dtype=np.int64)


# ----------------------------------------------------------------- functions

@declare(BoxRows(keeps_coordinates=False))
def box_area(boxes):
    r"""Area of each box, ``(x2 - x1) * (y2 - y1)``.

    Parameters
    ----------
    boxes : array, shape (..., 4)
        Boxes ``(x1, y1, x2, y2)``.

    Returns
    -------
    array, shape (...)
        ``boxes``' type. As ``torchvision.ops.box_area``, not clamped: a
        box with ``x2 < x1`` or ``y2 < y1`` has a negative area (both:
        positive). The dtype is torchvision's: float32 or float64 boxes
        keep theirs, float16 and bfloat16 boxes give float32 (computed in
        float32, since areas above 65504 overflow float16), int32 and
        int64 boxes keep theirs and other integer or boolean boxes give
        int32 (uint32 and uint64: int64).

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.box_area(np.array([[0.0, 0.0, 4.0, 3.0], [1.0, 1.0, 2.0, 5.0]]))
    array([12.,  4.])
    """
    xp, boxes = _dispatch.namespace_of(boxes, "boxes")
    if isdtype(xp, boxes.dtype, ("integral", "bool")):
        boxes = _integer_boxes(xp, boxes)
        _check_box_shape(boxes, "boxes", batch=True)
        return _portable.box_area(xp, boxes)
    boxes = _widened(xp, _boxes_input(xp, boxes, "boxes", batch=True))
    a = _dispatch.as_compiled_input(boxes)
    if a is None:
        return _portable.box_area(xp, boxes)
    rows = a.reshape(-1, 4)
    out = np.empty(rows.shape[0], a.dtype)
    _kernels.box_area(rows, out)
    return _dispatch.to_caller(xp, out.reshape(a.shape[:-1]), boxes)


@declare(BoxRows(keeps_coordinates=True))
def box_convert(boxes, in_fmt, out_fmt):
    r"""Convert boxes between the ``"xyxy"``, ``"xywh"`` and ``"cxcywh"`` formats.

    ``"xyxy"`` is ``(x1, y1, x2, y2)``, ``"xywh"`` ``(x1, y1, width,
    height)`` and ``"cxcywh"`` ``(centre x, centre y, width, height)``. The
    arithmetic is ``torchvision.ops.box_convert``'s, operation for
    operation (any format goes through ``"xyxy"``), so results are equal to
    the bit.

    Parameters
    ----------
    boxes : array, shape (..., 4)
    in_fmt, out_fmt : {"xyxy", "xywh", "cxcywh"}

    Returns
    -------
    array, shape (..., 4)
        A new array (also when ``in_fmt == out_fmt``) of the boxes' dtype.
        float16 and bfloat16 boxes are converted in float32 and rounded
        once (``x1 + x2`` of float16 coordinates above 32752 would
        overflow).

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.box_convert(np.array([[10.0, 20.0, 4.0, 6.0]]), "cxcywh", "xyxy")
    array([[ 8., 17., 12., 23.]])
    """
    xp, boxes = _dispatch.namespace_of(boxes, "boxes")
    in_fmt = check_choice(in_fmt, "in_fmt", BOX_FORMATS)
    out_fmt = check_choice(out_fmt, "out_fmt", BOX_FORMATS)
    boxes = _boxes_input(xp, boxes, "boxes", batch=True)
    if in_fmt == out_fmt:
        return xp.asarray(boxes, copy=True)     # not a round trip through xyxy, which rounds
    wide = _widened(xp, boxes)
    a = _dispatch.as_compiled_input(wide)
    if a is None:
        out = _portable.box_convert(xp, wide, in_fmt, out_fmt)
    else:
        rows = a.reshape(-1, 4)
        out = np.empty(rows.shape, a.dtype)
        _kernels.box_convert(rows, BOX_FORMATS.index(in_fmt), BOX_FORMATS.index(out_fmt), out)
        out = _dispatch.to_caller(xp, out.reshape(a.shape), wide)
    return xp.astype(out, boxes.dtype, copy=False)


@declare(PairsOfBoxes())
def box_iou(boxes1, boxes2):
    r"""Pairwise intersection over union of two sets of boxes.

    ``iou[i, j] = inter / (area1[i] + area2[j] - inter)``, computed in the
    boxes' dtype exactly as ``torchvision.ops.box_iou`` does (equal to the
    bit; a zero union gives NaN, NaN coordinates give NaN).

    Parameters
    ----------
    boxes1 : array, shape (n, 4)
    boxes2 : array, shape (m, 4)
        Boxes ``(x1, y1, x2, y2)`` of one library.

    Returns
    -------
    array, shape (n, m)
        The boxes' floating dtype; float16 and bfloat16 boxes are computed
        in float32 and give float32, as in torchvision (their areas
        overflow float16, and bfloat16 would round IoUs near 1 to 1).

    Notes
    -----
    The rows are shared out over the threads; each is one vectorized pass
    over ``boxes2``.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.box_iou(np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]]))
    array([[0.33333333, 0.        ]])
    """
    xp, boxes1, boxes2 = _box_pairs(boxes1, boxes2)
    a, b = _dispatch.as_compiled_input(boxes1), _dispatch.as_compiled_input(boxes2)
    if a is None or b is None:
        return _portable.box_iou(xp, boxes1, boxes2)
    out = output_empty((a.shape[0], b.shape[0]), a.dtype)
    _kernels.box_iou(a, b, IOU_KINDS.index("plain"), 0.0, out, threads_for_call())
    return _dispatch.to_caller(xp, out, boxes1)


def _box_pairs(boxes1, boxes2):
    """(xp, boxes1, boxes2): (n, 4) and (m, 4) of one library and one
    floating dtype, half precision widened to float32."""
    xp, boxes1 = _dispatch.namespace_of(boxes1, "boxes1")
    _, boxes2 = _dispatch.namespace_of(boxes2, "boxes2")
    _same_namespace(boxes1, boxes2, "boxes2", "boxes1")
    boxes1 = _boxes_input(xp, boxes1, "boxes1")
    boxes2 = _boxes_input(xp, boxes2, "boxes2")
    dtype = xp.result_type(boxes1.dtype, boxes2.dtype)
    boxes1 = _widened(xp, xp.astype(boxes1, dtype, copy=False))
    boxes2 = _widened(xp, xp.astype(boxes2, dtype, copy=False))
    return xp, boxes1, boxes2


def _iou_variant(boxes1, boxes2, variant, eps):
    xp, boxes1, boxes2 = _box_pairs(boxes1, boxes2)
    eps = check_real(eps, "eps", low=0.0)
    a, b = _dispatch.as_compiled_input(boxes1), _dispatch.as_compiled_input(boxes2)
    if a is None or b is None:
        return _portable.box_iou_variant(xp, boxes1, boxes2, variant, eps)
    out = output_empty((a.shape[0], b.shape[0]), a.dtype)
    _kernels.box_iou(a, b, IOU_KINDS.index(variant), eps, out, threads_for_call())
    return _dispatch.to_caller(xp, out, boxes1)


_VARIANT_RETURNS = """
    Returns
    -------
    array, shape (n, m)
        The boxes' floating dtype (float16 and bfloat16 boxes: computed in
        float32, returned as float32, as torchvision does).

    Notes
    -----
    torchvision's formulas, operation for operation, in the boxes' dtype;
    one pass over the pairs (the rows shared out over the threads) instead
    of a dozen (n, m) temporaries. Degenerate boxes give what the formulas
    give (NaN for a zero union or a zero enclosing box).
"""


@declare(PairsOfBoxes())
def generalized_box_iou(boxes1, boxes2):
    r"""Pairwise generalized IoU (GIoU), as ``torchvision.ops.generalized_box_iou``.

    ``giou = iou - (enclosing - union) / enclosing``, with ``enclosing``
    the area of the smallest box holding both ("Generalized Intersection
    over Union", Rezatofighi et al., 2019). In [-1, 1].

    Parameters
    ----------
    boxes1 : array, shape (n, 4)
    boxes2 : array, shape (m, 4)
        Boxes ``(x1, y1, x2, y2)`` of one library.

    %s
    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.generalized_box_iou(np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 2.0, 2.0]]))
    array([[-0.5]])
    """
    return _iou_variant(boxes1, boxes2, "generalized", 0.0)


@declare(PairsOfBoxes())
def distance_box_iou(boxes1, boxes2, eps=1e-7):
    r"""Pairwise distance IoU (DIoU), as ``torchvision.ops.distance_box_iou``.

    ``diou = iou - d**2 / (c**2 + eps)``, with ``d`` the distance between
    the boxes' centres and ``c`` the diagonal of the smallest box holding
    both ("Distance-IoU Loss", Zheng et al., 2020).

    Parameters
    ----------
    boxes1 : array, shape (n, 4)
    boxes2 : array, shape (m, 4)
        Boxes ``(x1, y1, x2, y2)`` of one library.
    eps : float >= 0, default 1e-7
        Added to the squared diagonal, as in torchvision.

    %s
    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.distance_box_iou(np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 0.0, 3.0, 2.0]]), eps=0.0)
    array([[0.25641026]])
    """
    return _iou_variant(boxes1, boxes2, "distance", eps)


@declare(PairsOfBoxes())
def complete_box_iou(boxes1, boxes2, eps=1e-7):
    r"""Pairwise complete IoU (CIoU), as ``torchvision.ops.complete_box_iou``.

    ``ciou = diou - alpha * v``, with ``v = 4 / pi**2 * (atan(w1 / h1) -
    atan(w2 / h2))**2`` the difference of aspect ratios and ``alpha = v /
    (1 - iou + v + eps)`` (Zheng et al., 2020).

    Parameters
    ----------
    boxes1 : array, shape (n, 4)
    boxes2 : array, shape (m, 4)
        Boxes ``(x1, y1, x2, y2)`` of one library.
    eps : float >= 0, default 1e-7
        As in torchvision: added to the squared diagonal and to alpha's
        denominator.

    %s
    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.complete_box_iou(np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[0.0, 0.0, 2.0, 2.0]]))
    array([[1.]])
    """
    return _iou_variant(boxes1, boxes2, "complete", eps)


for _f in (generalized_box_iou, distance_box_iou, complete_box_iou):
    _f.__doc__ = _f.__doc__ % (_VARIANT_RETURNS.strip() + "\n")


# ------------------------------------------------------------ IoU losses

LOSS_REDUCTIONS = ("none", "mean", "sum")


# The IoU losses' gradient rule: the gradients they return for both boxes;
# "none" gives one loss per pair of rows (coordinates along the last axis).
_PAIRED_GRADIENT = ReturnedGradient(("boxes1", "boxes2"))


def _iou_loss(boxes1, boxes2, variant, reduction, eps, return_grad):
    xp, boxes1 = _dispatch.namespace_of(boxes1, "boxes1")
    _, boxes2 = _dispatch.namespace_of(boxes2, "boxes2")
    _same_namespace(boxes1, boxes2, "boxes2", "boxes1")
    boxes1 = _boxes_input(xp, boxes1, "boxes1", batch=True)
    boxes2 = _boxes_input(xp, boxes2, "boxes2", batch=True)
    if boxes2.shape != boxes1.shape:
        raise BoxShapeError(f"boxes2 must have boxes1's shape {tuple(boxes1.shape)} (one box "
                            f"per box of boxes1), got {tuple(boxes2.shape)}")
    reduction = check_choice(reduction, "reduction", LOSS_REDUCTIONS)
    eps = check_real(eps, "eps", low=0.0)
    return_grad = check_bool(return_grad, "return_grad")
    dtype = xp.result_type(boxes1.dtype, boxes2.dtype)
    boxes1 = _widened(xp, xp.astype(boxes1, dtype, copy=False))
    boxes2 = _widened(xp, xp.astype(boxes2, dtype, copy=False))
    n = math.prod(boxes1.shape[:-1])
    scale = 1.0 / n if reduction == "mean" and n else 1.0
    a, b = _dispatch.as_compiled_input(boxes1), _dispatch.as_compiled_input(boxes2)
    if a is None or b is None:
        loss, grad1, grad2 = _portable.box_iou_loss(xp, boxes1, boxes2, variant, eps, scale,
                                                    return_grad)
    else:
        rows1, rows2 = a.reshape(-1, 4), b.reshape(-1, 4)
        loss = np.empty(n, a.dtype)
        grad1 = np.empty(rows1.shape, a.dtype) if return_grad else None
        grad2 = np.empty(rows1.shape, a.dtype) if return_grad else None
        _kernels.box_iou_loss(rows1, rows2, IOU_KINDS.index(variant), eps, scale, loss,
                              grad1, grad2, threads_for_call())
        loss = _dispatch.to_caller(xp, loss.reshape(a.shape[:-1]), boxes1)
        if return_grad:
            grad1 = _dispatch.to_caller(xp, grad1.reshape(a.shape), boxes1)
            grad2 = _dispatch.to_caller(xp, grad2.reshape(a.shape), boxes1)
    if reduction != "none":     # torchvision's mean of no pairs is 0, their sum
        loss = xp.asarray(xp.sum(loss) / n if reduction == "mean" and n else xp.sum(loss))
    if not return_grad:
        return loss
    return loss, (xp.astype(grad1, dtype, copy=False), xp.astype(grad2, dtype, copy=False))


_LOSS_DOC = """Parameters
    ----------
    boxes1, boxes2 : array, shape (..., 4)
        Boxes ``(x1, y1, x2, y2)`` of one library and one shape: the loss
        of each box of ``boxes1`` (the predictions) against the box of
        ``boxes2`` (the targets) at the same place.
    reduction : {"none", "mean", "sum"}, default "none"
        As torchvision: per pair, their mean (0 for no pairs) or their sum.
    eps : float >= 0, default 1e-7
        %s
    return_grad : bool, default False
        Also return the gradients with respect to ``boxes1`` and ``boxes2``.

    Returns
    -------
    loss : array
        Shape ``boxes1.shape[:-1]`` for ``"none"``, else 0-d. The boxes'
        floating dtype (float16 and bfloat16: float32, as torchvision).
    (grad1, grad2) : tuple of arrays, only with ``return_grad=True``
        The gradient of ``loss`` (of its sum for ``"none"``) with respect to
        ``boxes1`` and ``boxes2``, their shape and dtype: torch autograd's
        of torchvision's loss (ties of ``max``/``min`` split in half, no
        gradient through the intersection of boxes that do not overlap)."""


@declare(PairedBoxRows(), gradient=_PAIRED_GRADIENT)
def generalized_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7, *, return_grad=False):
    r"""Generalized IoU loss ``1 - GIoU`` of paired boxes, as ``torchvision.ops.generalized_box_iou_loss``.

    ``iou = inter / (union + eps)`` and ``loss = 1 - iou + (enclosing -
    union) / (enclosing + eps)``, with ``enclosing`` the area of the
    smallest box holding both.

    %s

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> loss, (g1, g2) = sa.generalized_box_iou_loss(
    ...     np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 2.0, 2.0]]), eps=0.0,
    ...     return_grad=True)
    >>> loss
    array([1.5])
    >>> g1
    array([[ 0.  ,  0.  , -0.25, -0.25]])
    """
    return _iou_loss(boxes1, boxes2, "generalized", reduction, eps, return_grad)


@declare(PairedBoxRows(), gradient=_PAIRED_GRADIENT)
def distance_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7, *, return_grad=False):
    r"""Distance IoU loss ``1 - DIoU`` of paired boxes, as ``torchvision.ops.distance_box_iou_loss``.

    ``loss = 1 - inter / (union + eps) + d**2 / (c**2 + eps)``, with ``d``
    the distance between the boxes' centres and ``c`` the diagonal of the
    smallest box holding both.

    %s

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.distance_box_iou_loss(np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 2.0, 2.0]]),
    ...                          eps=0.0)
    array([1.25])
    """
    return _iou_loss(boxes1, boxes2, "distance", reduction, eps, return_grad)


@declare(PairedBoxRows(), gradient=_PAIRED_GRADIENT)
def complete_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7, *, return_grad=False):
    r"""Complete IoU loss ``1 - CIoU`` of paired boxes, as ``torchvision.ops.complete_box_iou_loss``.

    The distance IoU loss plus ``alpha * v``, with ``v = 4 / pi**2 *
    (atan(w2 / h2) - atan(w1 / h1))**2`` and ``alpha = v / (1 - iou + v +
    eps)``, held constant in the gradient as torchvision does.

    %s

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.complete_box_iou_loss(np.array([[0.0, 0.0, 2.0, 1.0]]), np.array([[0.0, 0.0, 1.0, 1.0]]))
    array([0.55324815])
    """
    return _iou_loss(boxes1, boxes2, "complete", reduction, eps, return_grad)


for _f, _eps in [(generalized_box_iou_loss, "Added to the union and to the enclosing area."),
                 (distance_box_iou_loss, "Added to the union and to the squared diagonal."),
                 (complete_box_iou_loss, "In ``alpha``'s denominator only: the IoU and the "
                                         "diagonal take 1e-7, as in torchvision.")]:
    _f.__doc__ = _f.__doc__ % (_LOSS_DOC % _eps)


@declare(BoxRows(keeps_coordinates=True))
def clip_boxes_to_image(boxes, size):
    r"""Clip boxes to an image: ``x`` to ``[0, width]``, ``y`` to ``[0, height]``.

    As ``torchvision.ops.clip_boxes_to_image``.

    Parameters
    ----------
    boxes : array, shape (..., 4)
        Boxes ``(x1, y1, x2, y2)``.
    size : (height, width)
        The image's size, two real numbers >= 0.

    Returns
    -------
    array, shape (..., 4)
        A new array of the boxes' type and dtype (integer boxes stay
        integers when both sizes are integers; NaN coordinates stay NaN).

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.clip_boxes_to_image(np.array([[-5.0, 10.0, 120.0, 90.0]]), (80, 100))
    array([[  0.,  10., 100.,  80.]])
    """
    xp, boxes = _dispatch.namespace_of(boxes, "boxes")
    height, width = _image_size(size)
    if isdtype(xp, boxes.dtype, "integral") and height.is_integer() and width.is_integer():
        _check_box_shape(boxes, "boxes", batch=True)
        return _portable.clip_boxes(xp, boxes, int(height), int(width))
    boxes = _boxes_input(xp, boxes, "boxes", batch=True)
    if is_numpy_bfloat16(boxes.dtype):
        # NumPy's clip does not mix ml_dtypes' bfloat16 with Python floats.
        # Clamping in float32 and rounding back gives the bfloat16 clamp.
        return xp.astype(_portable.clip_boxes(xp, _widened(xp, boxes), height, width), boxes.dtype)
    return _portable.clip_boxes(xp, boxes, height, width)


def _image_size(size):
    """(height, width) as two finite floats >= 0."""
    try:
        height, width = size
    except (TypeError, ValueError):
        raise TypeError(f"size must be a pair (height, width), got {size!r}") from None
    return (check_real(height, "size (height)", low=0.0),
            check_real(width, "size (width)", low=0.0))


@declare(WholeInput(("boxes",)))
def remove_small_boxes(boxes, min_size):
    r"""Indices of the boxes whose width and height are both at least ``min_size``.

    As ``torchvision.ops.remove_small_boxes``.

    Parameters
    ----------
    boxes : array, shape (n, 4)
        Boxes ``(x1, y1, x2, y2)``.
    min_size : float
        The smallest width and height kept (``>=``). A box with a NaN
        coordinate is never kept.

    Returns
    -------
    array of int64, shape (k,)
        Increasing indices. float16 and bfloat16 sides are computed in
        float32.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> sa.remove_small_boxes(np.array([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 1.0, 9.0]]), 2.0)
    array([0])
    """
    xp, boxes = _dispatch.namespace_of(boxes, "boxes")
    boxes = _widened(xp, _boxes_input(xp, boxes, "boxes"))
    min_size = check_real(min_size, "min_size")
    return _portable.remove_small_boxes(xp, boxes, min_size)


@declare(WholeInput(("boxes", "scores")))
def nms(boxes, scores, iou_threshold, *, score_threshold=None, max_output=None):
    r"""Greedy non-maximum suppression, exactly ``torchvision.ops.nms``.

    Boxes are visited by decreasing score; a box is dropped when a box kept
    before it has an IoU strictly greater than ``iou_threshold`` with it.
    Ties in score are broken by the lower index (a stable sort), NaN scores
    rank above every number (as ``torch.sort``), and ``-0.0`` ties with
    ``0.0``. IoU is computed in the boxes' dtype with torchvision's formula,
    so the kept set is torchvision's to the bit.

    Parameters
    ----------
    boxes : array, shape (n, 4)
        Boxes ``(x1, y1, x2, y2)``.
    scores : array, shape (n,)
        One score per box; boxes and scores share the promoted floating dtype.
    iou_threshold : float >= 0
        Suppress at IoU strictly above this. (torchvision also accepts
        negative thresholds, which suppress boxes that do not overlap at all;
        softarray refuses them.)
    score_threshold : float, optional
        Consider only boxes with ``score > score_threshold`` (NaN scores are
        then dropped too), as detection heads and ``cv2.dnn.NMSBoxes`` do.
    max_output : int, optional
        Return at most this many indices (the highest scoring); the
        suppression stops as soon as it has found them.

    Returns
    -------
    array of int64, shape (k,)
        Indices of the kept boxes, by decreasing score.

    Notes
    -----
    Degenerate boxes (``x2 <= x1`` or ``y2 <= y1``) and boxes with a NaN or
    infinite coordinate have no intersection of positive area with any box:
    they are never suppressed and never suppress (torchvision's formula
    gives the same). float16 and bfloat16 boxes and scores are computed in
    float32 (exactly widened), so they keep what the same values in float32
    keep (in float16 the areas of boxes a few hundred wide overflow). The
    compiled kernel compares a box only with the kept
    boxes whose centres are close enough to reach the IoU threshold, found
    in a multi-level grid, so the cost grows close to linearly for
    realistic detections; the result is the quadratic algorithm's, always.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=np.float32)
    >>> scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    >>> sa.nms(boxes, scores, 0.5)
    array([0, 2])
    """
    return _nms(boxes, scores, None, iou_threshold, score_threshold, max_output)


@declare(WholeInput(("boxes", "scores", "labels")))
def batched_nms(boxes, scores, labels, iou_threshold, *, score_threshold=None, max_output=None):
    r"""Non-maximum suppression within each label, as ``torchvision.ops.batched_nms``.

    Boxes of different labels never suppress each other. Each label's boxes
    go through :func:`nms` on their own (in parallel over labels), so there
    is no coordinate-offset trick and none of its float-precision errors
    for large coordinates.

    Parameters
    ----------
    boxes : array, shape (n, 4)
    scores : array, shape (n,)
    labels : array of integers, shape (n,)
        The class (or image, or any group) of each box.
    iou_threshold : float >= 0
    score_threshold : float, optional
        As in :func:`nms`.
    max_output : int, optional
        At most this many indices in total.

    Returns
    -------
    array of int64, shape (k,)
        Indices of the kept boxes of all labels, by decreasing score (ties:
        lower index first; NaN first). As in torchvision, boxes with no
        elements and ``scores`` and ``labels`` both None give an empty
        array (whatever ``iou_threshold``).

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11]], dtype=np.float32)
    >>> scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    >>> sa.batched_nms(boxes, scores, np.array([0, 0, 1]), 0.5)
    array([0, 2])
    """
    if scores is None and labels is None:
        xp, boxes = _dispatch.namespace_of(boxes, "boxes")
        if math.prod(boxes.shape) == 0:         # torchvision's answer to no boxes at all
            return xp.zeros((0,), dtype=xp.int64, device=array_api_compat.device(boxes))
    _require_labels(labels)
    return _nms(boxes, scores, labels, iou_threshold, score_threshold, max_output)


def _nms(boxes, scores, labels, iou_threshold, score_threshold, max_output):
    xp, boxes, scores = _boxes_and_scores(boxes, scores)
    boxes, scores = _widened(xp, boxes), _widened(xp, scores)
    n = boxes.shape[0]
    if labels is not None:
        _same_namespace(boxes, labels, "labels")
        labels = _labels_input(xp, labels, n)
    iou_threshold = _check_iou_threshold(iou_threshold)
    score_threshold = _check_score_threshold(score_threshold, optional=True)
    if score_threshold is not None:     # compared exactly, not rounded to the scores' dtype
        score_threshold = threshold_in_dtype(score_threshold, scores.dtype, strict=True)
    max_output = _check_max_output(max_output, n)
    a, s = _dispatch.as_compiled_input(boxes), _dispatch.as_compiled_input(scores)
    host_labels = None if labels is None else _host_labels(labels)
    if a is None or s is None or (labels is not None and host_labels is None):
        return _portable.nms(xp, boxes, scores, labels, iou_threshold, score_threshold, max_output)
    kept = _kernels.nms(a, s, host_labels, iou_threshold, score_threshold, max_output,
                        threads_for_call())
    return _dispatch.to_caller(xp, kept, boxes)


@declare(WholeInput(("boxes", "scores")))
def soft_nms(boxes, scores, *, method="linear", sigma=0.5, iou_threshold=0.3,
             score_threshold=0.001, max_output=None):
    r"""Soft-NMS: decay the scores of overlapping boxes instead of dropping them.

    From "Soft-NMS -- Improving Object Detection With One Line of Code"
    (Bodla et al., 2017). Repeatedly select the remaining box ``M`` with the
    largest current score (ties: the lower index) and multiply the score of
    every other remaining box ``b`` by

    * ``"linear"``: ``1 - IoU(M, b)`` when ``IoU(M, b) > iou_threshold``;
    * ``"gaussian"``: ``exp(-IoU(M, b)**2 / sigma)``;

    then drop the boxes whose score fell below ``score_threshold``.

    Parameters
    ----------
    boxes : array, shape (n, 4)
    scores : array, shape (n,)
    method : {"linear", "gaussian"}, default "linear"
    sigma : float > 0, default 0.5
        Width of the gaussian decay.
    iou_threshold : float >= 0, default 0.3
        The linear method's overlap threshold (unused by "gaussian").
    score_threshold : float, default 0.001
        Boxes whose current score is not ``>= score_threshold`` (NaN
        included) are dropped, initially and after every decay.
    max_output : int, optional
        Stop after selecting this many.

    Returns
    -------
    indices : array of int64, shape (k,)
        The selected boxes, in order of selection.
    scores : array, shape (k,)
        Their decayed scores (non-increasing), in the boxes' dtype
        (float16 and bfloat16: computed in float32, rounded at the end, so
        the selection is the float32 one).

    Notes
    -----
    IoU is torchvision's formula in the boxes' dtype; the decay factor is
    computed in float64 and the product rounded once to the dtype. A
    degenerate box (``x2 <= x1`` or ``y2 <= y1``) or one with a non-finite
    coordinate overlaps nothing: it is never decayed and decays nothing.
    The compiled kernel finds the boxes near a selected one in a
    multi-level grid and keeps the scores in a heap, so a selection touches
    only the boxes that overlap it, not all n.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]], dtype=np.float32)
    >>> indices, decayed = sa.soft_nms(boxes, np.array([0.9, 0.8, 0.7], dtype=np.float32))
    >>> indices
    array([0, 2, 1])
    >>> decayed
    array([0.9, 0.7, 0.4], dtype=float32)
    """
    return _soft_nms(boxes, scores, None, method, sigma, iou_threshold, score_threshold, max_output)


@declare(WholeInput(("boxes", "scores", "labels")))
def batched_soft_nms(boxes, scores, labels, *, method="linear", sigma=0.5, iou_threshold=0.3,
                     score_threshold=0.001, max_output=None):
    r"""Soft-NMS within each label (boxes of different labels never decay each other).

    Parameters
    ----------
    boxes : array, shape (n, 4)
    scores : array, shape (n,)
    labels : array of integers, shape (n,)
        The class (or image, or any group) of each box.
    method : {"linear", "gaussian"}, default "linear"
    sigma : float > 0, default 0.5
    iou_threshold : float >= 0, default 0.3
    score_threshold : float, default 0.001
        As in :func:`soft_nms`.
    max_output : int, optional
        At most this many in total: the first of all the labels' selections
        by decreasing decayed score (the order below).

    Returns
    -------
    indices : array of int64, shape (k,)
    scores : array, shape (k,)
        The selected boxes of all labels and their decayed scores, by
        decreasing decayed score (ties: lower index first). With scores >= 0
        this is, within one label, its order of selection (a negative score
        rises as it decays, so then it may not be).

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 5]], dtype=np.float32)
    >>> scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    >>> indices, decayed = sa.batched_soft_nms(boxes, scores, np.array([0, 0, 1]))
    >>> indices
    array([0, 2, 1])
    >>> decayed
    array([0.9, 0.7, 0.4], dtype=float32)
    """
    _require_labels(labels)
    return _soft_nms(boxes, scores, labels, method, sigma, iou_threshold, score_threshold, max_output)


def _soft_nms(boxes, scores, labels, method, sigma, iou_threshold, score_threshold, max_output):
    xp, boxes, scores = _boxes_and_scores(boxes, scores)
    dtype = scores.dtype
    boxes, scores = _widened(xp, boxes), _widened(xp, scores)
    n = boxes.shape[0]
    if labels is not None:
        _same_namespace(boxes, labels, "labels")
        labels = _labels_input(xp, labels, n)
    method = check_choice(method, "method", SOFT_NMS_METHODS)
    sigma = check_real(sigma, "sigma", low=0.0, low_open=True)
    iou_threshold = _check_iou_threshold(iou_threshold)
    score_threshold = _check_score_threshold(score_threshold, optional=False)
    max_output = _check_max_output(max_output, n)
    gaussian = method == "gaussian"
    a, s = _dispatch.as_compiled_input(boxes), _dispatch.as_compiled_input(scores)
    host_labels = None if labels is None else _host_labels(labels)
    if a is None or s is None or (labels is not None and host_labels is None):
        kept, decayed = _portable.soft_nms(xp, boxes, scores, labels, gaussian, sigma,
                                           iou_threshold, score_threshold, max_output)
    else:
        kept, decayed = _kernels.soft_nms(a, s, host_labels, gaussian, sigma, iou_threshold,
                                          score_threshold, max_output, threads_for_call())
        kept, decayed = _dispatch.to_caller(xp, kept, boxes), _dispatch.to_caller(xp, decayed, boxes)
    return kept, xp.astype(decayed, dtype, copy=False)
