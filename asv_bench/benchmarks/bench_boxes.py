"""Box operations and NMS (issue 5): softarray beside torchvision and OpenCV.

Every case runs float32 boxes scattered uniformly over a 1000 x 1000 image,
10 to 100 px wide and high, with uniform random scores and a fixed seed
(``make_boxes``), at one thread and at all threads. The peers, each skipped
when it is not importable:

* torchvision: ``torchvision.ops.nms``, ``batched_nms`` and ``box_iou`` on
  the same arrays as CPU tensors (``torch.from_numpy``, no copy);
* OpenCV: ``cv2.dnn.NMSBoxes`` on the same boxes as an (N, 4) float64
  (x, y, w, h) array (Rect2d, converted before timing), and
  ``cv2.dnn.softNMSBoxes``, which takes integer Rects only: its classes run
  both libraries on integer-coordinate boxes (softarray on their float32
  (x1, y1, x2, y2) values, OpenCV on the int32 (x, y, w, h) array).

OpenCV's thread count is set with ``cv2.setNumThreads`` beside
``limit_threads``. ``asv_bench/compare_boxes.py`` prints the issue's ratios
side by side from the same data.
"""
import contextlib

import numpy as np

import softarray as sa

from ._common import THREADS, limit_threads, pool_threads, sized

try:
    import torch
    import torchvision.ops as tvops
except ImportError:
    torch = tvops = None
try:
    import cv2
except ImportError:
    cv2 = None

IMAGE = 1000          # the image is IMAGE x IMAGE pixels
SIDES = (10, 100)     # box width and height range, pixels
NMS_IOU = 0.5
# Soft-NMS settings: softarray's defaults, and OpenCV's sigma default.
SOFT = {"sigma": 0.5, "iou_threshold": 0.3, "score_threshold": 0.001}
CLASSES = 80
BATCHED_BOXES = sized(50_000, 500)
IOU_BOXES = sized(1000, 100)
LOSS_PAIRS = sized(100_000, 1000)


def make_boxes(n, seed=0, integer=False):
    """(boxes (n, 4) float32 x1, y1, x2, y2; scores (n,) float32 in [0, 1)).

    Width and height uniform in SIDES, the corner uniform over the positions
    that keep the box inside the image; integer=True draws whole pixels (so
    the float32 boxes are exactly OpenCV's integer Rects)."""
    rng = np.random.default_rng(seed)
    if integer:
        w = rng.integers(SIDES[0], SIDES[1] + 1, n)
        h = rng.integers(SIDES[0], SIDES[1] + 1, n)
        x = rng.integers(0, IMAGE - w + 1)
        y = rng.integers(0, IMAGE - h + 1)
    else:
        w = rng.uniform(*SIDES, n)
        h = rng.uniform(*SIDES, n)
        x = rng.uniform(0, IMAGE - w)
        y = rng.uniform(0, IMAGE - h)
    boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
    return boxes, rng.random(n, dtype=np.float32)


def make_labels(n, classes=CLASSES, seed=1):
    return np.random.default_rng(seed).integers(0, classes, n)


def xywh(boxes, dtype):
    """OpenCV's (x, y, w, h) layout of (x1, y1, x2, y2) boxes, C-contiguous."""
    out = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    return np.ascontiguousarray(out, dtype=dtype)


def soft_method(method):
    return {"linear": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_LINEAR,
            "gaussian": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_GAUSSIAN}[method]


@contextlib.contextmanager
def limit_all_threads(n):
    """limit_threads (softarray, OpenMP, BLAS, torch) and OpenCV's pool."""
    with limit_threads(n), pool_threads(cv2, n):
        yield


def require(library):
    """Raise asv's skip for a peer that is not importable."""
    if library == "torchvision" and tvops is None:
        raise NotImplementedError("torchvision is not installed")
    if library == "opencv" and cv2 is None:
        raise NotImplementedError("opencv (cv2) is not installed")


class _Timed:
    """setup builds self.run, enters the thread limit and calls it once."""
    # torchvision's and OpenCV's NMS at 50,000 boxes take seconds a call.
    timeout = 300

    def _start(self, run, threads):
        self.run = run
        self._limits.enter_context(limit_all_threads(threads))
        self.run()

    def teardown(self, *params):
        self._limits.close()


class NMS(_Timed):
    params = [["softarray", "torchvision", "opencv"], sized([1000, 10_000, 50_000], [100, 300, 500]), THREADS]
    param_names = ["library", "boxes", "threads"]

    def setup(self, library, n, threads):
        self._limits = contextlib.ExitStack()   # first: asv tears down after a skip too
        require(library)
        boxes, scores = make_boxes(n)
        if library == "softarray":
            run = lambda: sa.nms(boxes, scores, NMS_IOU)
        elif library == "torchvision":
            bt, st = torch.from_numpy(boxes), torch.from_numpy(scores)
            run = lambda: tvops.nms(bt, st, NMS_IOU)
        else:
            rects = xywh(boxes, np.float64)
            run = lambda: cv2.dnn.NMSBoxes(rects, scores, 0.0, NMS_IOU)
        self._start(run, threads)

    def time_nms(self, *params):
        self.run()


class BatchedNMS(_Timed):
    """50,000 boxes in 80 classes (labels uniform)."""
    params = [["softarray", "torchvision"], THREADS]
    param_names = ["library", "threads"]

    def setup(self, library, threads):
        self._limits = contextlib.ExitStack()
        require(library)
        boxes, scores = make_boxes(BATCHED_BOXES)
        labels = make_labels(BATCHED_BOXES)
        if library == "softarray":
            run = lambda: sa.batched_nms(boxes, scores, labels, NMS_IOU)
        else:
            bt, st, lt = map(torch.from_numpy, (boxes, scores, labels))
            run = lambda: tvops.batched_nms(bt, st, lt, NMS_IOU)
        self._start(run, threads)

    def time_batched_nms(self, *params):
        self.run()


class SoftNMS(_Timed):
    """Integer-coordinate boxes, as cv2.dnn.softNMSBoxes takes them."""
    params = [["softarray", "opencv"], sized([1000, 10_000], [100, 300]), ["linear", "gaussian"], THREADS]
    param_names = ["library", "boxes", "method", "threads"]

    def setup(self, library, n, method, threads):
        self._limits = contextlib.ExitStack()
        require(library)
        boxes, scores = make_boxes(n, integer=True)
        if library == "softarray":
            run = lambda: sa.soft_nms(boxes, scores, method=method, **SOFT)
        else:
            rects, cv_method = xywh(boxes, np.int32), soft_method(method)
            run = lambda: cv2.dnn.softNMSBoxes(
                rects, scores, SOFT["score_threshold"], SOFT["iou_threshold"], 0,
                SOFT["sigma"], cv_method)
        self._start(run, threads)

    def time_soft_nms(self, *params):
        self.run()


class BoxIoU(_Timed):
    """1000 x 1000 pairwise IoU of two box sets."""
    params = [["softarray", "torchvision"], THREADS]
    param_names = ["library", "threads"]

    def setup(self, library, threads):
        self._limits = contextlib.ExitStack()
        require(library)
        boxes1, _ = make_boxes(IOU_BOXES, seed=0)
        boxes2, _ = make_boxes(IOU_BOXES, seed=1)
        if library == "softarray":
            run = lambda: sa.box_iou(boxes1, boxes2)
        else:
            b1, b2 = torch.from_numpy(boxes1), torch.from_numpy(boxes2)
            run = lambda: tvops.box_iou(b1, b2)
        self._start(run, threads)

    def time_box_iou(self, *params):
        self.run()


class BoxIoUVariants(_Timed):
    """1000 x 1000 generalized, distance and complete IoU of two box sets."""
    params = [["softarray", "torchvision"],
              ["generalized_box_iou", "distance_box_iou", "complete_box_iou"], THREADS]
    param_names = ["library", "variant", "threads"]

    def setup(self, library, variant, threads):
        self._limits = contextlib.ExitStack()
        require(library)
        boxes1, _ = make_boxes(IOU_BOXES, seed=0)
        boxes2, _ = make_boxes(IOU_BOXES, seed=1)
        if library == "softarray":
            fn = getattr(sa, variant)
            run = lambda: fn(boxes1, boxes2)
        else:
            fn = getattr(tvops, variant)
            b1, b2 = torch.from_numpy(boxes1), torch.from_numpy(boxes2)
            run = lambda: fn(b1, b2)
        self._start(run, threads)

    def time_box_iou_variant(self, *params):
        self.run()


class BoxIoULosses(_Timed):
    """A box IoU loss (mean) and its gradients on jittered pairs:
    return_grad=True beside torchvision's loss and backward."""
    params = [["softarray", "torchvision"],
              ["generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"],
              THREADS]
    param_names = ["library", "loss", "threads"]

    def setup(self, library, loss, threads):
        self._limits = contextlib.ExitStack()
        require(library)
        target, _ = make_boxes(LOSS_PAIRS, seed=0)
        rng = np.random.default_rng(2)
        pred = (target + rng.normal(0, 5, target.shape)).astype(np.float32)
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        if library == "softarray":
            fn = getattr(sa, loss)
            run = lambda: fn(pred, target, "mean", return_grad=True)
        else:
            fn = getattr(tvops, loss)
            tp, tt = torch.from_numpy(pred), torch.from_numpy(target)

            def run():
                p, t = tp.detach().requires_grad_(), tt.detach().requires_grad_()
                fn(p, t, reduction="mean").backward()
        self._start(run, threads)

    def time_box_iou_loss(self, *params):
        self.run()
