"""Every public function against a generated catalogue of bad arguments.

A table (SPECS) gives, for each public function, a valid call and the role
of each argument. From the roles a catalogue of bad values is generated:
wrong types, shapes, dtypes, out-of-range indices and labels, non-finite or
out-of-range parameters, unknown choices, wrong axes and counts. Each case
must raise TypeError or ValueError whose message names the argument, or be
listed in DOCUMENTED_OK as a documented result (empty inputs, say). Every
case also checks that no array passed in was modified.

HUGE_CASES drive the functions with zero-stride views (np.broadcast_to, no
memory) of enormous logical size: the functions must refuse cleanly
(ValueError, or MemoryError from NumPy's allocator) instead of crashing or
silently computing something wrong.

A sample of the catalogue also runs through array_api_strict (the portable
path), which must validate the same way.
"""
import math
import re

import numpy as np
import pytest

import array_api_strict as xps

import softarray as sa


# ---------------------------------------------------------------- valid values

def _x():
    return np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])


def _y():
    return np.array([2, 0])


def _probs():
    return np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])


def _bin_target():
    return np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])


def _boxes():
    return np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0]])


def _scores():
    return np.array([0.9, 0.8, 0.7])


def _labels():
    return np.array([0, 1, 0])


def _emb():
    return np.arange(12.0).reshape(4, 3) / 10


def _cls():
    return np.arange(15.0).reshape(5, 3) / 10 - 0.7


def _lce_target():
    return np.array([0, 4, 2, 1])


def _lce_bias():
    return np.array([0.1, 0.0, -0.1, 0.2, 0.3])


class A:
    """One argument: its name, role, a factory of a valid value, whether it
    is passed by keyword, and whether it may be omitted / be None."""

    def __init__(self, name, role, valid, *, kw=True, optional=False, **info):
        self.name, self.role, self.valid, self.kw, self.optional = name, role, valid, kw, optional
        self.info = info


def P(name, role, valid, **kw):          # positional
    return A(name, role, valid, kw=False, **kw)


def K(name, role, valid, **kw):          # keyword
    return A(name, role, valid, kw=True, **kw)


const = lambda v: (lambda: v)  # noqa: E731

RED = ("reduction", "reduction", const("mean"))
GRAD = ("return_grad", "bool", const(False))


def index_loss(fn, first="logits", extra=(), weight="weight", ignore=True):
    args = [P(first, "logits_cls", _x), P("target", "index_target", _y, C=3),
            K("axis", "axis_int", const(-1))]
    if weight:
        args.append(K(weight, "class_weight", const(None), optional=True, C=3))
    if ignore:
        args.append(K("ignore_index", "ignore_index", const(None), optional=True))
    args += [K(*RED), K(*GRAD)] + list(extra)
    return fn, args


SPECS = {
    "softmax": (sa.softmax, [P("x", "x_any", _x), P("axis", "axis_multi", const(-1)),
                             K("temperature", "pos_real", const(1.0)),
                             K("where", "mask", const(None), optional=True)]),
    "log_softmax": (sa.log_softmax, [P("x", "x_any", _x), P("axis", "axis_multi", const(-1)),
                                     K("temperature", "pos_real", const(1.0)),
                                     K("where", "mask", const(None), optional=True)]),
    "stablemax": (sa.stablemax, [P("x", "x_any", _x), P("axis", "axis_multi", const(-1)),
                                 K("where", "mask", const(None), optional=True)]),
    "log_stablemax": (sa.log_stablemax, [P("x", "x_any", _x), P("axis", "axis_multi", const(-1)),
                                         K("where", "mask", const(None), optional=True)]),
    "logsumexp": (sa.logsumexp, [P("x", "x_any", _x), P("axis", "axis_multi", const(-1)),
                                 K("keepdims", "bool", const(False)),
                                 K("where", "mask", const(None), optional=True)]),
    "cross_entropy": index_loss(sa.cross_entropy,
                                extra=[K("label_smoothing", "unit_closed", const(0.1))]),
    "cross_entropy_probs": (sa.cross_entropy, [
        P("logits", "logits_cls", _x), P("target", "prob_target", _probs),
        K("axis", "axis_int", const(-1)), K("label_smoothing", "unit_closed", const(0.0)),
        K(*RED), K(*GRAD)]),
    "nll_loss": index_loss(sa.nll_loss, first="log_probs"),
    "z_loss": index_loss(sa.z_loss, extra=[K("a", "pos_real", const(1.0)),
                                           K("b", "real", const(0.0))]),
    "focal_loss": index_loss(sa.focal_loss, weight="alpha",
                             extra=[K("gamma", "nonneg_real", const(2.0))]),
    "comp_sum_loss": index_loss(sa.comp_sum_loss, extra=[K("tau", "nonneg_real", const(0.5))]),
    "generalized_cross_entropy": index_loss(sa.generalized_cross_entropy,
                                            extra=[K("q", "unit_open_closed", const(0.7))]),
    "mae_loss": index_loss(sa.mae_loss),
    "multi_margin_loss": index_loss(sa.multi_margin_loss, ignore=False, extra=[
        K("p", "p12", const(1)), K("margin", "real", const(1.0)),
        K("form", "choice", const("weston_watkins"),
          choices=("weston_watkins", "crammer_singer"))]),
    "logsumexp_penalty": (sa.logsumexp_penalty, [
        P("logits", "logits_cls", _x), K("axis", "axis_int", const(-1)),
        K("weight", "nonneg_real", const(1.0)), K(*RED), K(*GRAD)]),
    "binary_cross_entropy_with_logits": (sa.binary_cross_entropy_with_logits, [
        P("logits", "x_elem", _x), P("target", "elem_target", _bin_target),
        K("weight", "bcast_weight", const(None), optional=True),
        K("pos_weight", "bcast_weight", const(None), optional=True), K(*RED), K(*GRAD)]),
    "sigmoid_focal_loss": (sa.sigmoid_focal_loss, [
        P("logits", "x_elem", _x), P("target", "elem_target", _bin_target),
        K("alpha", "le_one", const(0.25)), K("gamma", "nonneg_real", const(2.0)),
        K(*RED), K(*GRAD)]),
    "kl_div": (sa.kl_div, [
        P("input", "x_elem", lambda: np.log(_probs())), P("target", "kl_target", _probs),
        K("axis", "axis_int", const(-1)),
        K("reduction", "kl_reduction", const("batchmean")), K("log_target", "bool", const(False)),
        K("from_logits", "bool", const(True)), K(*GRAD)]),
    "linear_cross_entropy": (sa.linear_cross_entropy, [
        P("embeddings", "emb", _emb), P("classifier", "cls", _cls),
        P("target", "lce_target", _lce_target, C=5),
        K("bias", "lce_bias", _lce_bias, optional=True),
        K("ignore_index", "ignore_index", const(None), optional=True),
        K("label_smoothing", "unit_closed", const(0.1)), K(*RED),
        K("chunk_size", "chunk", const(2), optional=True), K(*GRAD)]),
    "topk": (sa.topk, [P("x", "x_topk", _x), P("k", "count0", const(2), n=3),
                       K("axis", "axis_int", const(-1)), K("largest", "bool", const(True)),
                       K("sorted", "bool", const(True))]),
    "topk_gating": (sa.topk_gating, [
        P("router_logits", "router", _x), P("k", "count1", const(2), n=3),
        K("order", "choice", const("softmax_topk"), choices=("softmax_topk", "topk_softmax")),
        K("renormalize", "bool", const(True)), K("temperature", "pos_real", const(1.0)),
        K("noise_std", "nonneg_real", const(0.5)),
        K("rng", "rng", lambda: np.random.default_rng(0), optional=True),
        K("capacity_factor", "pos_real", const(1.25), optional=True),
        K("return_aux", "bool", const(True))]),
    "dense_to_sparse_gating": (sa.dense_to_sparse_gating, [
        P("router_logits", "logits_cls", _x), K("temperature", "pos_real", const(0.5)),
        K("activation", "activation", const("sigmoid"), optional=True),
        K("threshold", "unit_closed_open", const(0.1)), K("renormalize", "bool", const(True)),
        K("axis", "axis_int", const(-1))]),
    "gumbel_softmax": (sa.gumbel_softmax, [
        P("logits", "logits_cls", _x), K("tau", "pos_real", const(1.0)),
        K("hard", "bool", const(True)),
        K("rng", "rng", lambda: np.random.default_rng(0), optional=True),
        K("axis", "axis_int", const(-1))]),
    "gumbel_topk": (sa.gumbel_topk, [
        P("logits", "logits_cls", _x), P("k", "count0", const(2), n=3),
        K("rng", "rng", lambda: np.random.default_rng(0), optional=True),
        K("axis", "axis_int", const(-1))]),
    "sample": (sa.sample, [
        P("logits", "logits_cls", _x), K("temperature", "pos_real", const(0.8)),
        K("top_k", "opt_count", const(3), optional=True),
        K("top_p", "unit_open_closed", const(0.9), optional=True),
        K("min_p", "unit_closed", const(0.05), optional=True),
        K("rng", "rng", lambda: np.random.default_rng(0), optional=True)]),
    "box_convert": (sa.box_convert, [
        P("boxes", "boxes_batch", _boxes),
        P("in_fmt", "choice", const("xyxy"), choices=("xyxy", "xywh", "cxcywh")),
        P("out_fmt", "choice", const("cxcywh"), choices=("xyxy", "xywh", "cxcywh"))]),
    "box_area": (sa.box_area, [P("boxes", "boxes_batch", _boxes)]),
    **{f"{v}_box_iou_loss": (getattr(sa, f"{v}_box_iou_loss"), [
        P("boxes1", "boxes_batch", _boxes), P("boxes2", "boxes_batch", _boxes), K(*RED),
        K("eps", "nonneg_real", const(1e-7)), K(*GRAD)])
       for v in ("generalized", "distance", "complete")},
    "clip_boxes_to_image": (sa.clip_boxes_to_image, [P("boxes", "boxes_batch", _boxes),
                                                     P("size", "image_size", const((4, 5)))]),
    "remove_small_boxes": (sa.remove_small_boxes, [P("boxes", "boxes", _boxes),
                                                   P("min_size", "real", const(1.0))]),
    "box_iou": (sa.box_iou, [P("boxes1", "boxes", _boxes), P("boxes2", "boxes", _boxes)]),
    "generalized_box_iou": (sa.generalized_box_iou, [P("boxes1", "boxes", _boxes),
                                                     P("boxes2", "boxes", _boxes)]),
    "distance_box_iou": (sa.distance_box_iou, [P("boxes1", "boxes", _boxes),
                                               P("boxes2", "boxes", _boxes),
                                               K("eps", "nonneg_real", const(1e-7))]),
    "complete_box_iou": (sa.complete_box_iou, [P("boxes1", "boxes", _boxes),
                                               P("boxes2", "boxes", _boxes),
                                               K("eps", "nonneg_real", const(1e-7))]),
    "nms": (sa.nms, [
        P("boxes", "boxes", _boxes), P("scores", "scores", _scores, n=3),
        P("iou_threshold", "nonneg_real", const(0.5)),
        K("score_threshold", "real", const(0.1), optional=True),
        K("max_output", "opt_count", const(2), optional=True)]),
    "batched_nms": (sa.batched_nms, [
        P("boxes", "boxes", _boxes), P("scores", "scores", _scores, n=3),
        P("labels", "labels", _labels, n=3), P("iou_threshold", "nonneg_real", const(0.5)),
        K("score_threshold", "real", const(0.1), optional=True),
        K("max_output", "opt_count", const(2), optional=True)]),
    "soft_nms": (sa.soft_nms, [
        P("boxes", "boxes", _boxes), P("scores", "scores", _scores, n=3),
        K("method", "choice", const("gaussian"), choices=("linear", "gaussian")),
        K("sigma", "pos_real", const(0.5)), K("iou_threshold", "nonneg_real", const(0.3)),
        K("score_threshold", "real", const(0.001)),
        K("max_output", "opt_count", const(2), optional=True)]),
    "batched_soft_nms": (sa.batched_soft_nms, [
        P("boxes", "boxes", _boxes), P("scores", "scores", _scores, n=3),
        P("labels", "labels", _labels, n=3),
        K("method", "choice", const("linear"), choices=("linear", "gaussian")),
        K("sigma", "pos_real", const(0.5)), K("iou_threshold", "nonneg_real", const(0.3)),
        K("score_threshold", "real", const(0.001)),
        K("max_output", "opt_count", const(2), optional=True)]),
}

# Names of __all__ that are not driven here, and why.
NOT_DRIVEN = {
    "TopKGating": "a NamedTuple (the result type of topk_gating), not a function",
    "BoxShapeError": "an exception class (raised for box arrays of the wrong shape)",
    "show_config": "prints the build configuration; takes no arguments",
    "get_num_threads": "takes no arguments",
    "set_num_threads": "process-wide state; covered in test_build",
    "threads": "context manager around set_num_threads",
    "set_output_cache": "process-wide state; its bad values in test_output_cache",
}


# ---------------------------------------------------------------- bad values by role

NAN, INF = math.nan, math.inf

_NOT_A_REAL = [("str", "1.0"), ("bool", True), ("complex", 1 + 1j), ("list", [1.0]),
               ("array", np.array([1.0, 2.0])), ("none", None)]
_NONFINITE = [("nan", NAN), ("inf", INF), ("-inf", -INF), ("np_nan", np.float32("nan"))]


def _real_bad(arg, low=None, high=None, low_open=False, high_open=False):
    out = [v for v in _NOT_A_REAL if not (v[0] == "none" and arg.optional)] + _NONFINITE
    if low is not None:
        out.append(("below", low - 1.0))
        if low_open:
            out.append(("at_low", low))
    if high is not None:
        out.append(("above", high + 0.5))
        if high_open:
            out.append(("at_high", high))
    return out


def _array_common(arg):
    out = [("complex", lambda v: v.astype(np.complex128)),
           ("object", lambda v: v.astype(object)),
           ("str", lambda v: "abc"),
           ("str_array", lambda v: v.astype(str))]
    if not arg.optional:
        out.append(("none", lambda v: None))
    return out


def _bad_values(arg, spec_args):
    """(label, value) pairs; a value may be a function of the valid value."""
    r = arg.role
    if r == "pos_real":
        return _real_bad(arg, low=0.0, low_open=True)
    if r == "nonneg_real":
        return _real_bad(arg, low=0.0)
    if r == "real":
        return _real_bad(arg)
    if r == "unit_closed":
        return _real_bad(arg, low=0.0, high=1.0)
    if r == "unit_open_closed":
        return _real_bad(arg, low=0.0, high=1.0, low_open=True)
    if r == "unit_closed_open":
        return _real_bad(arg, low=0.0, high=1.0, high_open=True)
    if r == "le_one":
        return _real_bad(arg, high=1.0)
    if r == "bool":
        return [("int", 1), ("zero", 0), ("str", "True"), ("none", None), ("float", 1.0),
                ("array", np.array([True, False]))]
    if r in ("choice", "reduction", "kl_reduction"):
        return [("unknown", "bogus"), ("upper", "MEAN" if "reduction" in r else arg.valid().upper()),
                ("int", 1), ("none", None), ("bytes", arg.valid().encode()),
                ("list", [arg.valid()])]
    if r == "axis_int":
        return [("out_of_range", 5), ("neg_out_of_range", -5), ("float", 1.0), ("str", "0"),
                ("bool", True), ("none", None), ("tuple", (0,)), ("np_float", np.float64(1.0))]
    if r == "axis_multi":
        return [("out_of_range", 5), ("neg_out_of_range", -3), ("float", 1.0), ("str", "0"),
                ("bool", True), ("repeated", (1, -1)), ("tuple_out", (0, 5)),
                ("tuple_float", (0, 1.0))]
    if r in ("count0", "count1"):
        n = arg.info["n"]
        out = [("neg", -1), ("too_big", n + 1), ("float", 1.0), ("str", "2"), ("bool", True),
               ("none", None), ("huge", 2**70)]
        if r == "count1":
            out.append(("zero", 0))
        return out
    if r == "opt_count":
        return [("neg", -1), ("float", 2.0), ("str", "2"), ("bool", True), ("nan", NAN),
                ("huge", 2**70)]
    if r == "chunk":
        return [("zero", 0), ("neg", -3), ("float", 2.0), ("str", "2"), ("bool", True),
                ("huge", 2**70)]
    if r == "p12":
        return [("zero", 0), ("three", 3), ("float", 1.0), ("str", "1"), ("bool", True),
                ("none", None)]
    if r == "ignore_index":
        return [("float", 1.5), ("str", "1"), ("bool", True), ("nan", NAN)]
    if r == "rng":
        return [("int", 42), ("str", "seed"), ("legacy", np.random.RandomState(0))]
    if r == "activation":
        return [("unknown", "gelu"), ("int", 3), ("upper", "SIGMOID")]
    # ------------------------------------------------------------ arrays
    if r == "x_any":
        return _array_common(arg) + [("list_ragged", [[1.0, 2.0], [3.0]]),
                                     ("zero_d", lambda v: np.asarray(v[0, 0])),
                                     ("empty_axis", lambda v: v[:, :0])]
    if r in ("logits_cls", "x_topk"):
        out = _array_common(arg) + [("scalar", lambda v: v[0, 0]),
                                    ("zero_d", lambda v: np.asarray(v[0, 0])),
                                    ("no_classes", lambda v: v[:, :0])]
        if r == "x_topk":       # k=2 > 0 classes: that is a bad k, not a bad x
            out = [c for c in out if c[0] != "no_classes"] + [("empty_rows", lambda v: v[:0])]
        return out
    if r == "x_elem":
        return _array_common(arg)
    if r == "router":
        return _array_common(arg) + [("one_d", lambda v: v[0]), ("three_d", lambda v: v[None]),
                                     ("nan", lambda v: _with(v, (0, 1), NAN))]
    if r == "index_target":
        C = arg.info["C"]
        return [("out_of_range", lambda v: _with(v, 0, C)),
                ("negative", lambda v: _with(v, 1, -1)),
                ("int_min", lambda v: _with(v, 1, np.iinfo(np.int64).min)),
                ("float", lambda v: v.astype(float)),
                ("bool", lambda v: v.astype(bool)),
                ("complex", lambda v: v.astype(complex)),
                ("str", lambda v: "abc"), ("none", lambda v: None),
                ("object", lambda v: v.astype(object)),
                ("too_long", lambda v: np.append(v, 0)),
                ("two_d", lambda v: v[:, None]),
                ("scalar", lambda v: np.int64(0))]
    if r == "prob_target":
        return [("nan", lambda v: _with(v, (0, 0), NAN)), ("inf", lambda v: _with(v, (0, 0), INF)),
                ("negative", lambda v: _with(v, (0, 0), -0.5)),
                ("wrong_shape", lambda v: v[:, :2]), ("complex", lambda v: v.astype(complex)),
                ("str", lambda v: "abc"), ("object", lambda v: v.astype(object))]
    if r == "elem_target":
        return [("nan", lambda v: _with(v, (0, 0), NAN)), ("wrong_shape", lambda v: v[:, :2]),
                ("transposed", lambda v: v.T), ("complex", lambda v: v.astype(complex)),
                ("str", lambda v: "abc"), ("none", lambda v: None),
                ("object", lambda v: v.astype(object))]
    if r == "kl_target":
        return [("nan", lambda v: _with(v, (0, 0), NAN)), ("inf", lambda v: _with(v, (0, 0), INF)),
                ("negative", lambda v: _with(v, (0, 0), -0.5)),
                ("wrong_shape", lambda v: v[:, :2]), ("complex", lambda v: v.astype(complex)),
                ("int", lambda v: (v > 0.25).astype(int)),
                ("str", lambda v: "abc"), ("none", lambda v: None)]
    if r == "class_weight":
        C = arg.info["C"]
        ok = np.ones(C)
        return [("short", np.ones(C - 1)), ("two_d", np.ones((1, C))), ("negative", _with(ok, 0, -1.0)),
                ("nan", _with(ok, 0, NAN)), ("inf", _with(ok, 0, INF)),
                ("complex", ok.astype(complex)), ("str", "abc"), ("object", ok.astype(object)),
                ("scalar", 1.0)]
    if r == "bcast_weight":
        return [("not_broadcast", np.ones(2)), ("negative", -np.ones(3)), ("nan", np.array([NAN, 1, 1])),
                ("inf", np.array([INF, 1, 1])), ("complex", np.ones(3, complex)), ("str", "abc"),
                ("object", np.ones(3).astype(object)), ("too_many_dims", np.ones((2, 2, 3)))]
    if r == "mask":
        return [("int_dtype", np.array([1, 1, 0])), ("float_dtype", np.array([1.0, 1.0, 0.0])),
                ("wrong_shape", np.array([True, False])), ("str", "abc"),
                ("object", np.array([True, False, True], dtype=object)),
                ("too_many_dims", np.ones((3, 2, 3), bool))]
    if r in ("boxes", "boxes_batch"):
        out = _array_common(arg) + [("three_cols", lambda v: v[:, :3]),
                                    ("five_cols", lambda v: np.hstack([v, v[:, :1]])),
                                    ("zero_d", lambda v: np.asarray(v[0, 0]))]
        if r == "boxes_batch" or arg.name in ("boxes1", "boxes2"):
            out.append(("empty", lambda v: v[:0]))
        if r == "boxes":
            out += [("one_d", lambda v: v[0]), ("three_d", lambda v: v[None])]
        return out
    if r == "image_size":
        return [("negative", (-1, 5)), ("nan", (NAN, 5)), ("inf", (5, INF)), ("str", "ab"),
                ("one", (5,)), ("three", (1, 2, 3)), ("none", None), ("complex", (1j, 5))]
    if r == "scores":
        return _array_common(arg) + [("short", lambda v: v[:-1]), ("two_d", lambda v: v[:, None]),
                                     ("zero_d", lambda v: np.asarray(v[0]))]
    if r == "labels":
        return [("float", lambda v: v.astype(float)), ("bool", lambda v: v.astype(bool)),
                ("complex", lambda v: v.astype(complex)), ("short", lambda v: v[:-1]),
                ("two_d", lambda v: v[:, None]), ("str", lambda v: "abc"), ("none", lambda v: None),
                ("object", lambda v: v.astype(object))]
    if r == "emb":
        return _array_common(arg) + [("one_d", lambda v: v[0]), ("three_d", lambda v: v[None]),
                                     ("int", lambda v: v.astype(int)),
                                     ("float32", lambda v: v.astype(np.float32))]
    if r == "cls":
        return _array_common(arg) + [("wrong_d", lambda v: v[:, :2]), ("one_d", lambda v: v[0]),
                                     ("no_rows", lambda v: v[:0]),
                                     ("float32", lambda v: v.astype(np.float32))]
    if r == "lce_target":
        C = arg.info["C"]
        return [("out_of_range", lambda v: _with(v, 0, C)), ("negative", lambda v: _with(v, 1, -1)),
                ("float", lambda v: v.astype(float)), ("bool", lambda v: v.astype(bool)),
                ("short", lambda v: v[:-1]), ("two_d", lambda v: v[:, None]),
                ("str", lambda v: "abc"), ("none", lambda v: None),
                ("object", lambda v: v.astype(object))]
    if r == "lce_bias":
        return [("short", lambda v: v[:-1]), ("two_d", lambda v: v[None]),
                ("float32", lambda v: v.astype(np.float32)), ("complex", lambda v: v.astype(complex)),
                ("str", lambda v: "abc"), ("object", lambda v: v.astype(object))]
    raise AssertionError(f"no bad values for role {r!r}")


def _with(v, index, value):
    v = np.array(v, dtype=np.result_type(v, np.asarray(value)) if isinstance(value, float) else v.dtype)
    v[index] = value
    return v


# ---------------------------------------------------------------- documented results

# Generated cases that do not raise, and the documented result each gives
# (checked on the NumPy path: a callable of the result returning True).
_EMPTY = lambda r: np.asarray(r).size == 0                     # noqa: E731
def _same_as(fname, result, **changes):
    """result equals that of fname's valid call with ``changes``."""
    fn, args, pos, kw = _build_call(fname)
    want = fn(*pos, **dict(kw, **changes))
    want, result = (want, result) if isinstance(want, tuple) else ((want,), (result,))
    return all(np.allclose(w, r, rtol=1e-12, atol=0) for w, r in zip(want, result))


DOCUMENTED_OK = {
    # softmax family: "on a 0-d array axis may be None, (), 0 or -1" (normalize_axes);
    # an empty axis gives an empty result, logsumexp of an empty slice is -inf.
    **{f"{f}-x-zero_d": (lambda r: np.asarray(r).shape == ())
       for f in ("softmax", "log_softmax", "stablemax", "log_stablemax", "logsumexp")},
    **{f"{f}-x-empty_axis": _EMPTY
       for f in ("softmax", "log_softmax", "stablemax", "log_stablemax")},
    "logsumexp-x-empty_axis": lambda r: np.array_equal(r, [-np.inf, -np.inf]),
    # no boxes: no areas, no conversions, an empty IoU matrix
    "box_area-boxes-empty": _EMPTY,
    "box_convert-boxes-empty": _EMPTY,
    "clip_boxes_to_image-boxes-empty": _EMPTY,
    "box_iou-boxes1-empty": lambda r: np.asarray(r).shape == (0, 3),
    "box_iou-boxes2-empty": lambda r: np.asarray(r).shape == (3, 0),
    **{f"{f}_box_iou-boxes{k}-empty": (lambda r, k=k: np.asarray(r).shape == ((0, 3), (3, 0))[k - 1])
       for f in ("generalized", "distance", "complete") for k in (1, 2)},
    # A count beyond any size is a valid bound: "at most this many" / entries
    # per tile (clipped to the vocabulary): the same result as no bound.
    **{f"{f}-max_output-huge": (lambda r, f=f: _same_as(f, r, max_output=None))
       for f in ("nms", "batched_nms", "soft_nms", "batched_soft_nms")},
    "linear_cross_entropy-chunk_size-huge":
        lambda r: _same_as("linear_cross_entropy", r, chunk_size=None),
    # top_k beyond the vocabulary keeps every token, as in Hugging Face's generate.
    "sample-top_k-huge": lambda r: _same_as("sample", r, top_k=None),
    # topk of no rows: "values: x.shape with axis of length k"
    "topk-x-empty_rows": lambda r: r[0].shape == (0, 2) and r[1].shape == (0, 2),
}

# ---------------------------------------------------------------- the catalogue

def _cases():
    cases = []
    for fname, (fn, args) in SPECS.items():
        for i, arg in enumerate(args):
            for label, bad in _bad_values(arg, args):
                cases.append(pytest.param(fname, i, label, bad, id=f"{fname}-{arg.name}-{label}"))
    return cases


CASES = _cases()


def _build_call(fname, index=None, bad=None):
    fn, args = SPECS[fname]
    pos, kw = [], {}
    for i, arg in enumerate(args):
        value = arg.valid()
        if i == index:
            value = bad(value) if callable(bad) and not isinstance(bad, np.generic) else bad
        if arg.kw:
            kw[arg.name] = value
        else:
            pos.append(value)
    return fn, args, pos, kw


def _arrays_in(values):
    return [v for v in values if isinstance(v, np.ndarray)]


def _snapshot(values):
    return [(v, v.copy()) for v in _arrays_in(values)]


def _assert_unchanged(snapshot):
    for live, saved in snapshot:
        assert live.dtype == saved.dtype and live.shape == saved.shape
        equal_nan = live.dtype.kind in "fc"
        assert np.array_equal(live, saved, equal_nan=equal_nan), "an input array was modified"


def _names_argument(message, name):
    if len(name) == 1:      # "a", "b", "p", "q", "x": the message must start with it
        return re.match(rf"{name}\b", message) is not None
    return re.search(rf"\b{re.escape(name)}\b", message) is not None


def _check(fn, arg_name, case_id, pos, kw):
    snapshot = _snapshot(pos + list(kw.values()))
    try:
        result = fn(*pos, **kw)
    except (TypeError, ValueError) as exc:
        assert case_id not in DOCUMENTED_OK, f"{case_id} is documented to succeed but raised {exc!r}"
        assert _names_argument(str(exc), arg_name), (
            f"{type(exc).__name__} does not name {arg_name!r}: {exc}")
    else:
        assert case_id in DOCUMENTED_OK, f"{case_id}: no exception for a bad {arg_name!r}"
        assert DOCUMENTED_OK[case_id](result), f"{case_id}: not the documented result: {result!r}"
    finally:
        _assert_unchanged(snapshot)


def test_every_public_function_is_driven():
    driven = {fn.__name__ for fn, _ in SPECS.values()}
    assert set(sa.__all__) == driven | set(NOT_DRIVEN)


def test_valid_calls_succeed():
    for fname in SPECS:
        fn, args, pos, kw = _build_call(fname)
        snapshot = _snapshot(pos + list(kw.values()))
        fn(*pos, **kw)
        _assert_unchanged(snapshot)


def test_catalogue_size():
    # The catalogue is generated from the table; keep it large.
    assert len(CASES) > 700


@pytest.mark.parametrize("fname, index, label, bad", CASES)
def test_bad_input_numpy(fname, index, label, bad):
    fn, args, pos, kw = _build_call(fname, index, bad)
    _check(fn, args[index].name, f"{fname}-{args[index].name}-{label}", pos, kw)


# ---------------------------------------------------------------- array_api_strict

def _to_strict(v):
    if isinstance(v, np.ndarray) and v.dtype.kind in "biufc":
        return xps.asarray(v)
    return v


_STRICT_CASES = CASES[::5]


@pytest.mark.parametrize("fname, index, label, bad", _STRICT_CASES)
def test_bad_input_array_api_strict(fname, index, label, bad):
    fn, args, pos, kw = _build_call(fname, index, bad)
    pos = [_to_strict(v) for v in pos]
    kw = {k: _to_strict(v) for k, v in kw.items()}
    case_id = f"{fname}-{args[index].name}-{label}"
    try:
        fn(*pos, **kw)
    except (TypeError, ValueError) as exc:
        assert case_id not in DOCUMENTED_OK, f"{case_id} is documented to succeed but raised {exc!r}"
        assert _names_argument(str(exc), args[index].name), str(exc)
    else:
        assert case_id in DOCUMENTED_OK, f"{case_id}: no exception on the portable path"


# ---------------------------------------------------------------- huge sizes

def _huge(shape, value=0.0, dtype=np.float64):
    """A read-only zero-stride view of ``shape``: no memory behind it."""
    return np.broadcast_to(np.asarray(value, dtype), shape)


BIG = 2**40        # rows: 8 TiB of float64 per column, more than any machine


HUGE_CASES = {
    "softmax": lambda: sa.softmax(_huge((BIG, 2))),
    "softmax_axis0": lambda: sa.softmax(_huge((BIG, 2)), axis=0),
    "log_softmax_all": lambda: sa.log_softmax(_huge((2**31, 2**31)), axis=None),
    "logsumexp": lambda: sa.logsumexp(_huge((BIG, 2))),
    "logsumexp_long_rows": lambda: sa.logsumexp(_huge((2, 2**40))),
    "cross_entropy": lambda: sa.cross_entropy(_huge((BIG, 2)), _huge((BIG,), 0, np.int64)),
    "nll_loss_sum": lambda: sa.nll_loss(_huge((BIG, 2)), _huge((BIG,), 1, np.int64),
                                        reduction="sum"),
    "logsumexp_penalty": lambda: sa.logsumexp_penalty(_huge((BIG, 2))),
    "bce": lambda: sa.binary_cross_entropy_with_logits(_huge((BIG, 2)), _huge((BIG, 2))),
    "kl_div": lambda: sa.kl_div(_huge((BIG, 2)), _huge((BIG, 2), 0.5)),
    "topk": lambda: sa.topk(_huge((BIG, 2)), 1),
    "topk_gating": lambda: sa.topk_gating(_huge((BIG, 2)), 1),
    "box_area": lambda: sa.box_area(_huge((BIG, 4))),
    "box_iou": lambda: sa.box_iou(_huge((2**22, 4)), _huge((2**22, 4))),
    "complete_box_iou": lambda: sa.complete_box_iou(_huge((2**22, 4)), _huge((2**22, 4))),
    "nms": lambda: sa.nms(_huge((BIG, 4)), _huge((BIG,)), 0.5),
    "lce_wide": lambda: sa.linear_cross_entropy(_huge((2, 2**32)), _huge((3, 2**32)),
                                                np.array([0, 1])),
    "lce_rows": lambda: sa.linear_cross_entropy(_huge((BIG, 2)), _huge((3, 2)),
                                                _huge((BIG,), 0, np.int64)),
}


@pytest.mark.parametrize("name", sorted(HUGE_CASES))
def test_huge_sizes_refused_cleanly(name):
    with pytest.raises((ValueError, MemoryError)):
        HUGE_CASES[name]()


# ------------------------------------------- messages that name what was meant

def test_float_target_of_the_index_shape_names_both_readings():
    """A float target shaped like class indices: the message says both what
    probabilities and what indices must look like, and how to convert."""
    with pytest.raises(ValueError) as info:
        sa.cross_entropy(_x(), np.array([2.0, 0.0]))
    message = str(info.value)
    assert "class probabilities must have the logits' shape (2, 3)" in message
    assert "class indices of shape (2,) must be integers" in message
    assert "astype(int)" in message
    with pytest.raises(ValueError, match=r"neither reading.*\(2, 3\).*\(2,\)") as info:
        sa.cross_entropy(_x(), np.ones((2, 2)))
    assert "astype" not in str(info.value)


def test_arguments_of_another_library_are_refused():
    torch = pytest.importorskip("torch")
    logits = torch.tensor(_x())
    for call in (lambda: sa.cross_entropy(logits, _y()),
                 lambda: sa.cross_entropy(logits, torch.tensor(_y()), weight=np.ones(3)),
                 lambda: sa.nll_loss(logits, _y()),
                 lambda: sa.cross_entropy(_x(), torch.tensor(_y()))):
        with pytest.raises(TypeError, match="same library as logits"):
            call()
    # Python sequences are no library's arrays: converted, as before
    want = sa.cross_entropy(_x(), _y())
    assert float(sa.cross_entropy(logits, _y().tolist())) == pytest.approx(float(want), rel=1e-12)


def test_meta_tensors_get_softarrays_message():
    torch = pytest.importorskip("torch")
    meta = torch.empty((2, 3), device="meta")
    for call in (lambda: sa.softmax(meta), lambda: sa.topk(meta, 1),
                 lambda: sa.cross_entropy(meta, torch.zeros(2, dtype=torch.int64, device="meta"))):
        with pytest.raises(ValueError, match="meta tensor.*no values"):
            call()
