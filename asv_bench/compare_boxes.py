"""softarray's box operations and NMS beside torchvision and OpenCV, in one process.

Usage: python asv_bench/compare_boxes.py [--repeat N] [--phases P] [--threads 1 2] [--all-peers]

Issue 5's targets, float32 boxes 10-100 px wide and high scattered uniformly
over a 1000 x 1000 image, uniform random scores, fixed seed (the data of
``benchmarks/bench_boxes.py``), IoU threshold 0.5 for NMS, at one thread and
at all threads (each library limited to the same count: ``limit_threads``,
which sets ``torch.set_num_threads`` too, and ``cv2.setNumThreads``):

* nms, 10,000 boxes: >= 20x faster than torchvision.ops.nms;
* nms, 50,000 boxes: >= 50x faster than torchvision.ops.nms;
* soft_nms, 1,000 boxes: >= 10x faster than cv2.dnn.softNMSBoxes (linear
  and Gaussian, sigma 0.5, IoU threshold 0.3, score threshold 0.001), on
  integer-coordinate boxes since OpenCV takes integer Rects only; 10,000
  boxes are shown too.

Issue 23's: generalized_box_iou and complete_box_iou, 2000 x 2000: >= 10x
torchvision.ops (distance_box_iou shown beside them); the three IoU losses,
forward and both gradients (return_grad=True, mean) on 100,000 pairs: >= 3x
torchvision's loss and backward.

Shown without a target: batched_nms (50,000 boxes, 80 classes) beside
torchvision.ops.batched_nms, box_iou (2000 x 2000) beside
torchvision.ops.box_iou, and cv2.dnn.NMSBoxes beside nms at 10,000 boxes
(at 50,000 too with --all-peers: about 6 s a call). OpenCV gets its boxes as
(x, y, w, h) arrays converted before timing, so the timings exclude the
conversion; NMSBoxes requires score_threshold >= 0 and keeps scores > 0.

Before timing, the results are compared (softarray at every thread count):
nms and batched_nms indices against torchvision's, box_iou values against
torchvision's, and soft_nms against OpenCV's. OpenCV's Soft-NMS decays the
scores in float32 where softarray rounds a float64 product once, so near-ties
may be taken in another order: its agreement is reported, not asserted.

Timing: each library runs in its own phase (all its rounds of a case, then
the next library's), and the phases alternate ``--phases`` times; each phase
is ``median_seconds`` (autorange loop, a share of ``--repeat`` samples), and
a library's time is the median of its phase medians. torch's OpenMP workers
keep spinning for a moment after a call; on a 2-core machine they would steal
a core from a softarray call timed right after a torch call, so no softarray
sample directly follows one (the autorange calls at the start of each phase
take that moment).
"""
import argparse
import os
import statistics
import sys

import numpy as np

# ``python -P`` does not put this script's folder on sys.path; the shared
# helpers (benchmarks/) live there.
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import softarray as sa  # noqa: E402
from benchmarks._common import median_seconds  # noqa: E402
from benchmarks.bench_boxes import (  # noqa: E402
    CLASSES, NMS_IOU, SOFT, cv2, limit_all_threads, make_boxes, make_labels,
    soft_method, torch, tvops, xywh,
)

ALL_THREADS = os.cpu_count() or 1
LIBRARIES = ["softarray", "torchvision", "opencv"]
SHORT = {"torchvision": "tv", "opencv": "cv"}


# ------------------------------------------------------------------ cases

class Case:
    """One row per thread count: label, size, {library: call}, target."""

    def __init__(self, label, size, fns, target=None):
        self.label, self.size, self.fns, self.target = label, size, fns, target


def nms_case(n, with_opencv, target):
    boxes, scores = make_boxes(n)
    fns = {"softarray": lambda: sa.nms(boxes, scores, NMS_IOU)}
    if tvops is not None:
        bt, st = torch.from_numpy(boxes), torch.from_numpy(scores)
        fns["torchvision"] = lambda: tvops.nms(bt, st, NMS_IOU)
    if cv2 is not None and with_opencv:
        rects = xywh(boxes, np.float64)
        fns["opencv"] = lambda: cv2.dnn.NMSBoxes(rects, scores, 0.0, NMS_IOU)
    return Case("nms", f"{n}", fns, target)


def soft_nms_case(n, method, target):
    boxes, scores = make_boxes(n, integer=True)
    fns = {"softarray": lambda: sa.soft_nms(boxes, scores, method=method, **SOFT)}
    if cv2 is not None:
        rects, cv_method = xywh(boxes, np.int32), soft_method(method)
        fns["opencv"] = lambda: cv2.dnn.softNMSBoxes(
            rects, scores, SOFT["score_threshold"], SOFT["iou_threshold"], 0,
            SOFT["sigma"], cv_method)
    return Case(f"soft_nms {method}", f"{n}", fns, target)


def batched_nms_case(n):
    boxes, scores = make_boxes(n)
    labels = make_labels(n)
    fns = {"softarray": lambda: sa.batched_nms(boxes, scores, labels, NMS_IOU)}
    if tvops is not None:
        bt, st, lt = map(torch.from_numpy, (boxes, scores, labels))
        fns["torchvision"] = lambda: tvops.batched_nms(bt, st, lt, NMS_IOU)
    return Case("batched_nms", f"{n}/{CLASSES}cl", fns)


def box_iou_case(n):
    boxes1, _ = make_boxes(n, seed=0)
    boxes2, _ = make_boxes(n, seed=1)
    fns = {"softarray": lambda: sa.box_iou(boxes1, boxes2)}
    if tvops is not None:
        b1, b2 = torch.from_numpy(boxes1), torch.from_numpy(boxes2)
        fns["torchvision"] = lambda: tvops.box_iou(b1, b2)
    return Case("box_iou", f"{n}x{n}", fns)


def iou_variant_case(name, n, target):
    """generalized_box_iou, distance_box_iou or complete_box_iou, n x n."""
    boxes1, _ = make_boxes(n, seed=0)
    boxes2, _ = make_boxes(n, seed=1)
    mine = getattr(sa, name)
    fns = {"softarray": lambda: mine(boxes1, boxes2)}
    if tvops is not None:
        peer = getattr(tvops, name)
        b1, b2 = torch.from_numpy(boxes1), torch.from_numpy(boxes2)
        fns["torchvision"] = lambda: peer(b1, b2)
    return Case(name, f"{n}x{n}", fns, target)


def loss_pairs_for_bench(n):
    """Predictions jittered around targets (the regression case), float32."""
    target, _ = make_boxes(n, seed=0)
    rng = np.random.default_rng(2)
    pred = (target + rng.normal(0, 5, target.shape)).astype(np.float32)
    pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
    return pred, target


def iou_loss_case(name, n, target):
    """A box IoU loss and its gradients (mean) on n pairs: softarray's
    return_grad=True beside torchvision's loss and backward."""
    pred, boxes = loss_pairs_for_bench(n)
    mine = getattr(sa, name)
    fns = {"softarray": lambda: mine(pred, boxes, "mean", return_grad=True)}
    if tvops is not None:
        peer = getattr(tvops, name)
        tp, tb = torch.from_numpy(pred), torch.from_numpy(boxes)

        def forward_backward():
            p, b = tp.detach().requires_grad_(), tb.detach().requires_grad_()
            loss = peer(p, b, reduction="mean")
            loss.backward()
            return loss, (p.grad, b.grad)
        fns["torchvision"] = forward_backward
    return Case(name, f"{n}", fns, target)


def all_cases(all_peers):
    return [
        nms_case(10_000, True, ("torchvision", 20.0)),
        nms_case(50_000, all_peers, ("torchvision", 50.0)),
        soft_nms_case(1000, "linear", ("opencv", 10.0)),
        soft_nms_case(1000, "gaussian", ("opencv", 10.0)),
        soft_nms_case(10_000, "linear", None),
        soft_nms_case(10_000, "gaussian", None),
        batched_nms_case(50_000),
        box_iou_case(2000),
        iou_variant_case("generalized_box_iou", 2000, ("torchvision", 10.0)),
        iou_variant_case("distance_box_iou", 2000, None),
        iou_variant_case("complete_box_iou", 2000, ("torchvision", 10.0)),
        iou_loss_case("generalized_box_iou_loss", 100_000, ("torchvision", 3.0)),
        iou_loss_case("distance_box_iou_loss", 100_000, ("torchvision", 3.0)),
        iou_loss_case("complete_box_iou_loss", 100_000, ("torchvision", 3.0)),
    ]


# -------------------------------------------------------------- agreement

def as_numpy(x):
    return x.numpy() if torch is not None and isinstance(x, torch.Tensor) else np.asarray(x)


def index_agreement(mine, peer, scores):
    """(agree, text) for two kept-index sequences."""
    mine = np.asarray(mine, np.int64).ravel()
    peer = np.asarray(peer, np.int64).ravel()
    if np.array_equal(mine, peer):
        return True, f"identical ({mine.size} kept)"
    if (mine.size == peer.size and np.array_equal(np.sort(mine), np.sort(peer))
            and np.array_equal(scores[mine], scores[peer])):
        return True, f"same {mine.size} boxes, order differs only between equal scores"
    common = np.intersect1d(mine, peer).size
    k = min(mine.size, peer.size)
    first = np.flatnonzero(mine[:k] != peer[:k])
    first = int(first[0]) if first.size else k
    return False, (f"DIFFER: {mine.size} vs {peer.size} kept, {common} in common, "
                   f"first difference at position {first}")


def soft_agreement(mine, peer):
    """Text comparing (indices, scores) of softarray with OpenCV's."""
    (mi, ms), (pi, ps) = mine, peer
    mi, pi = np.asarray(mi, np.int64).ravel(), np.asarray(pi, np.int64).ravel()
    ms, ps = np.asarray(ms, np.float64).ravel(), np.asarray(ps, np.float64).ravel()
    k = min(mi.size, pi.size)
    differ = np.flatnonzero(mi[:k] != pi[:k])
    prefix = int(differ[0]) if differ.size else k
    common, at_mine, at_peer = np.intersect1d(mi, pi, return_indices=True)
    diff = np.abs(ms[at_mine] - ps[at_peer]).max(initial=0.0)
    if mi.size == pi.size and prefix == k:
        order = f"identical order, {mi.size} kept"
    else:
        order = (f"same order for the first {prefix}; kept {mi.size} vs {pi.size}, "
                 f"{common.size} in common")
    return f"{order}; max |score difference| {diff:.1e}"


def iou_agreement(mine, peer):
    mine, peer = as_numpy(mine), as_numpy(peer)
    if mine.shape != peer.shape:
        return False, f"DIFFER: shapes {mine.shape} vs {peer.shape}"
    if np.array_equal(mine, peer, equal_nan=True):
        return True, f"identical ({mine.shape[0]}x{mine.shape[1]})"
    if not np.array_equal(np.isnan(mine), np.isnan(peer)):
        return False, "DIFFER: NaN positions"
    diff = np.nanmax(np.abs(mine.astype(np.float64) - peer))
    # complete_box_iou: NumPy's arctan against torch's, an ulp or so apart
    return diff <= 1e-5, f"{'within' if diff <= 1e-5 else 'DIFFER:'} max |difference| {diff:.1e}"


def loss_agreement(mine, peer):
    """Text: the largest differences of the loss and of the gradients."""
    (loss, grads), (peer_loss, peer_grads) = mine, peer
    diffs = [float(np.abs(as_numpy(a).astype(np.float64) - as_numpy(b.detach())).max())
             for a, b in zip((loss, *grads), (peer_loss, *peer_grads))]
    return f"loss within {diffs[0]:.1e}, gradients within {max(diffs[1:]):.1e}"


def check_agreement(cases, thread_counts):
    """Print how softarray's results compare with the peers'."""
    print("agreement (softarray at each thread count against the peer's result):")
    for case in cases:
        peer_results = {name: fn() for name, fn in case.fns.items() if name != "softarray"}
        if not peer_results:
            print(f"  {case.label} {case.size}: no peer installed")
            continue
        for n_threads in thread_counts:
            with limit_all_threads(n_threads):
                mine = case.fns["softarray"]()
            for peer, result in peer_results.items():
                prefix = f"  {case.label:<18} {case.size:<12} {n_threads:>2} thr vs {peer:<11}: "
                if case.label.startswith("soft_nms"):
                    scores, indices = result     # OpenCV returns (scores, indices)
                    print(prefix + soft_agreement(mine, (indices, scores)))
                elif case.label.endswith("box_iou"):
                    print(prefix + iou_agreement(mine, result)[1])
                elif case.label.endswith("_loss"):
                    print(prefix + loss_agreement(mine, result))
                else:
                    scores = case_scores(case)
                    print(prefix + index_agreement(as_numpy(mine), as_numpy(result), scores)[1])
        if "opencv" in peer_results and "torchvision" in peer_results:
            ok, text = index_agreement(as_numpy(peer_results["opencv"]),
                                       as_numpy(peer_results["torchvision"]), case_scores(case))
            print(f"  {case.label:<18} {case.size:<12}        opencv vs torchvision: {text}")
    print()


def case_scores(case):
    """The scores behind an NMS case (make_boxes is deterministic)."""
    n = int(case.size.split("/")[0])
    return make_boxes(n)[1]


# ----------------------------------------------------------------- timing

def time_case(fns, repeat, phases):
    """{library: seconds}: the median of each library's phase medians, the
    libraries' phases taken in turn (see the module's docstring)."""
    phases = max(1, min(phases, repeat))
    base, extra = divmod(repeat, phases)
    counts = [base + (k < extra) for k in range(phases)]
    samples = {name: [] for name in fns}
    for count in counts:
        for name, fn in fns.items():
            samples[name].append(median_seconds(fn, count))
    return {name: statistics.median(values) for name, values in samples.items()}


def fmt_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def fmt_ratio(value):
    return "-" if value is None else f"{value:.1f}x"


def print_header(args):
    versions = [f"softarray {sa.__version__}", f"numpy {np.__version__}"]
    if tvops is not None:
        import torchvision
        versions += [f"torch {torch.__version__}", f"torchvision {torchvision.__version__}"]
    else:
        versions.append("torchvision not installed")
    versions.append(f"opencv {cv2.__version__}" if cv2 is not None else "opencv not installed")
    print(f"{', '.join(versions)}; {ALL_THREADS} CPUs; float32; boxes 10-100 px in 1000x1000, "
          f"uniform scores, seed 0; nms IoU {NMS_IOU}; soft_nms sigma {SOFT['sigma']}, "
          f"IoU {SOFT['iou_threshold']}, score threshold {SOFT['score_threshold']} "
          f"(integer boxes); median of {args.phases} alternating phase medians, "
          f"{args.repeat} samples in all\n")


def print_table_header():
    print(f"{'case':<18} {'boxes':<12} {'threads':>7} | {'softarray':>10} {'torchvision':>11} "
          f"{'opencv':>10} (ms) | {'tv/sa':>8} {'cv/sa':>8} | target")


def print_row(case, n_threads, times):
    sa_time = times["softarray"]
    ratio = {lib: times[lib] / sa_time for lib in ("torchvision", "opencv") if lib in times}
    verdict = ""
    if case.target is not None:
        peer, need = case.target
        value = ratio.get(peer)
        status = "n/a (not installed)" if value is None else "met" if value >= need else "MISSED"
        verdict = f"{SHORT[peer]}/sa >= {need:g}x: {status}"
    print(f"{case.label:<18} {case.size:<12} {n_threads:>7} | {fmt_ms(sa_time):>10} "
          f"{fmt_ms(times.get('torchvision')):>11} {fmt_ms(times.get('opencv')):>10}      | "
          f"{fmt_ratio(ratio.get('torchvision')):>8} {fmt_ratio(ratio.get('opencv')):>8} | "
          f"{verdict}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="samples per library and case")
    parser.add_argument("--phases", type=int, default=3,
                        help="alternating phases the samples are split into")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, ALL_THREADS}))
    parser.add_argument("--all-peers", action="store_true",
                        help="also cv2.dnn.NMSBoxes at 50,000 boxes (about 6 s a call)")
    parser.add_argument("--skip-check", action="store_true", help="no agreement check")
    args = parser.parse_args()
    args.phases = max(1, min(args.phases, args.repeat))
    print_header(args)
    cases = all_cases(args.all_peers)
    if not args.skip_check:
        check_agreement(cases, args.threads)
    print_table_header()
    for n_threads in args.threads:
        with limit_all_threads(n_threads):
            for case in cases:
                print_row(case, n_threads, time_case(case.fns, args.repeat, args.phases))


if __name__ == "__main__":
    main()
