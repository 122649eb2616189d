"""Turn asv benchmark results into the plots of docs/performance.md.

Usage::

    python docs/plot_performance.py RESULTS [--out docs/_static/perf]

RESULTS is either an asv results folder (``asv_bench/results`` after
``asv run --python=same --set-commit-hash ...``: the newest result file of
its machine folder is read, with ``benchmarks.json`` for the parameter
names), or the ``measurements.json`` this script writes beside the plots, so
the committed plots can be redrawn from the committed numbers.

Writes ``measurements.json`` (one record per measured case: benchmark,
parameters, median seconds) and one PNG per family: ``softmax.png``
(softarray, scipy.special, torch), ``losses.png`` (softarray, torch),
``gating.png`` (softarray, torch, NumPy) and ``boxes.png`` (softarray,
torchvision, OpenCV). Each PNG has one panel per thread count; the bars are
medians on a log scale, and each peer's bar is labelled with its time over
softarray's (above 1: softarray is faster).
"""
import argparse
import ast
import datetime
import itertools
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

COLORS = {"softarray": "#1f77b4", "scipy": "#ff7f0e", "torch": "#d62728",
          "torchvision": "#d62728", "opencv": "#2ca02c", "numpy-argpartition": "#9467bd"}
LABELS = {"scipy": "scipy.special", "numpy-argpartition": "NumPy argpartition",
          "opencv": "OpenCV"}


# ------------------------------------------------------------------ reading

def read_asv(folder):
    """(records, meta) from the newest result file of an asv results folder."""
    folder = Path(folder)
    files = [p for p in folder.glob("*/*.json") if p.name != "machine.json"]
    if not files:
        raise SystemExit(f"no asv result file under {folder}/<machine>/")
    path = max(files, key=lambda p: json.loads(p.read_text())["date"])
    result = json.loads(path.read_text())
    names = {k: v["param_names"] for k, v in
             json.loads((folder / "benchmarks.json").read_text()).items() if k != "version"}
    column = result["result_columns"].index
    records = []
    for benchmark, row in result["results"].items():
        params = [[ast.literal_eval(v) for v in values] for values in row[column("params")]]
        for combo, seconds in zip(itertools.product(*params), row[column("result")]):
            if seconds is not None and seconds == seconds:      # None or NaN: skipped
                records.append({"benchmark": benchmark,
                                "params": dict(zip(names[benchmark], combo)),
                                "seconds": seconds})
    # The file's "date" is the commit's; started_at is when each benchmark ran.
    started = [row[column("started_at")] for row in result["results"].values()]
    meta = {"date": f"{_utc(min(started))} to {_utc(max(started))[-9:]}",
            "commit": result["commit_hash"][:8], "machine": result["params"],
            "source": path.name}
    return records, meta


def _utc(milliseconds):
    when = datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def read_measurements(path):
    data = json.loads(Path(path).read_text())
    return data["records"], data["meta"]


def lookup(records, benchmark, **params):
    """Median seconds of the one record of ``benchmark`` with ``params``, or None."""
    for record in records:
        if record["benchmark"] == benchmark and all(
                record["params"].get(k) == v for k, v in params.items()):
            return record["seconds"]
    return None


# ---------------------------------------------------------------- plotting

def grouped_bars(ax, categories, libraries, seconds, title):
    """Bars of seconds[(category, library)] (None: not measured), grouped by
    category, log scale; peers labelled with their time over softarray's."""
    width = 0.8 / len(libraries)
    for j, library in enumerate(libraries):
        bars = [(i + (j - (len(libraries) - 1) / 2) * width, category,
                 seconds[category, library])
                for i, category in enumerate(categories)
                if seconds.get((category, library)) is not None]
        ax.bar([x for x, _, _ in bars], [value * 1e3 for _, _, value in bars], width,
               color=COLORS[library], label=LABELS.get(library, library))
        if library == "softarray":
            continue
        for x, category, value in bars:
            base = seconds.get((category, "softarray"))
            if base:
                ax.annotate(f"{value / base:.3g}x", (x, value * 1e3), ha="center",
                            va="bottom", fontsize=7, rotation=90, xytext=(0, 2),
                            textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xticks(range(len(categories)), categories, fontsize=8, rotation=20, ha="right")
    ax.set_ylabel("median time per call (ms)")
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.25)
    ax.grid(axis="y", which="major", alpha=0.3)


def family_figure(panels, threads, libraries, suptitle, meta, path):
    """One row per panel (title, categories, seconds(category, library,
    threads)), one column per thread count."""
    fig, axes = plt.subplots(len(panels), len(threads), squeeze=False,
                             figsize=(5.2 * len(threads), 3.4 * len(panels) + 1.0))
    for row, (title, categories, seconds_of) in enumerate(panels):
        # Cases this run did not measure (asv -b left them out) get no slot.
        categories = [c for c in categories if any(
            seconds_of(c, lib, t) is not None for lib in libraries for t in threads)]
        for col, n_threads in enumerate(threads):
            seconds = {(c, lib): seconds_of(c, lib, n_threads)
                       for c in categories for lib in libraries}
            thread_text = "1 thread" if n_threads == 1 else f"{n_threads} threads"
            grouped_bars(axes[row][col], categories, libraries, seconds,
                         f"{title}, {thread_text}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.suptitle(f"{suptitle}\n{meta['date']}, {meta['machine'].get('cpu', '')}, "
                 f"{meta['machine'].get('num_cpu', '?')} CPUs (shared, noisy): "
                 "medians of asv samples",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def thread_counts(records, prefix):
    return sorted({r["params"]["threads"] for r in records if r["benchmark"].startswith(prefix)})


def softmax_plot(records, meta, out):
    sizes = {"tiny": "8x10", "small-rows": "100000x10", "in-cache": "1000x1000",
             "out-of-cache": "4096x4096"}
    panels = []
    for cls, function in [("Softmax", "softmax"), ("LogSoftmax", "log_softmax"),
                          ("Logsumexp", "logsumexp")]:
        name = f"bench_softmax.{cls}.time_{function}"
        panels.append((function, list(sizes.values()),
                       lambda c, lib, t, name=name: lookup(
                           records, name, library=lib, size=_key(sizes, c), dtype="float32",
                           axis=-1, threads=t)))
    family_figure(panels, thread_counts(records, "bench_softmax"), ["softarray", "scipy", "torch"],
                  "Softmax family vs scipy.special and torch (float32, last axis)",
                  meta, out / "softmax.png")


def losses_plot(records, meta, out):
    losses = {"cross_entropy": "CrossEntropy.time_cross_entropy",
              "nll_loss": "NllLoss.time_nll_loss",
              "bce_logits": "BinaryCrossEntropyWithLogits.time_binary_cross_entropy_with_logits",
              "multi_margin": "MultiMarginLoss.time_multi_margin_loss",
              "kl_div": "KlDivFromLogits.time_kl_div", "focal": "FocalLoss.time_focal_loss",
              "lse_penalty": "LogsumexpPenalty.time_logsumexp_penalty"}

    def seconds(case, lib, t):
        # "cross_entropy (forward)": the forward alone; any other case: forward + gradient.
        loss, forward_only, _ = case.partition(" (forward)")
        return lookup(records, f"bench_losses.{losses[loss]}", library=lib, size="large",
                      dtype="float32", mode="forward" if forward_only else "forward+grad",
                      threads=t)
    panels = [("losses", ["cross_entropy (forward)"] + list(losses), seconds)]
    family_figure(panels, thread_counts(records, "bench_losses"), ["softarray", "torch"],
                  "Losses vs torch.nn.functional, forward + gradient unless marked\n"
                  "(65536 x 1000 float32 logits; torch: forward + backward())",
                  meta, out / "losses.png")


def gating_plot(records, meta, out):
    topk = {"router k=2": "router", "router k=8": "router-k8", "wide k=1000": "wide"}
    panels = [("topk (65536x64 router; 256x20000)", list(topk),
               lambda c, lib, t: lookup(records, "bench_gating.TopK.time_topk",
                                        library=lib, case=topk[c], threads=t)),
              ("topk_gating (65536 tokens x 64 experts)", ["k=2", "k=8"],
               lambda c, lib, t: lookup(records, "bench_gating.TopKGating.time_topk_gating",
                                        library=lib, k=int(c[2:]), threads=t))]
    family_figure(panels, thread_counts(records, "bench_gating"),
                  ["softarray", "torch", "numpy-argpartition"],
                  "Top-k and the top-k router gate vs torch and NumPy (float32)",
                  meta, out / "gating.png")


def boxes_plot(records, meta, out):
    def nms(c, lib, t):
        return lookup(records, "bench_boxes.NMS.time_nms", library=lib, boxes=int(c.split()[1]),
                      threads=t)

    def soft(c, lib, t):
        method, n = c.split()
        return lookup(records, "bench_boxes.SoftNMS.time_soft_nms", library=lib, boxes=int(n),
                      method=method, threads=t)

    def other(c, lib, t):
        name = {"batched_nms 50000": "BatchedNMS.time_batched_nms",
                "box_iou 1000x1000": "BoxIoU.time_box_iou"}[c]
        return lookup(records, f"bench_boxes.{name}", library=lib, threads=t)
    panels = [("nms", ["nms 1000", "nms 10000", "nms 50000"], nms),
              ("soft_nms (integer boxes)", ["linear 1000", "gaussian 1000", "linear 10000",
                                            "gaussian 10000"], soft),
              ("batched_nms (80 labels), box_iou", ["batched_nms 50000", "box_iou 1000x1000"],
               other)]
    family_figure(panels, thread_counts(records, "bench_boxes"),
                  ["softarray", "torchvision", "opencv"],
                  "Boxes and NMS vs torchvision and OpenCV (float32 boxes, 10-100 px in 1000x1000)",
                  meta, out / "boxes.png")


def _key(mapping, value):
    return next(k for k, v in mapping.items() if v == value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="asv results folder, or a measurements.json")
    parser.add_argument("--out", default=str(Path(__file__).parent / "_static" / "perf"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(args.results)
    if source.is_dir():
        records, meta = read_asv(source)
        (out / "measurements.json").write_text(
            json.dumps({"meta": meta, "records": records}, indent=1) + "\n")
    else:
        records, meta = read_measurements(source)
    for prefix, plot in [("bench_softmax", softmax_plot), ("bench_losses", losses_plot),
                         ("bench_gating", gating_plot), ("bench_boxes", boxes_plot)]:
        if thread_counts(records, prefix):
            plot(records, meta, out)
        else:
            print(f"no {prefix} results: its plot is not redrawn")
    print(f"plotted {len(records)} measurements into {out}")


if __name__ == "__main__":
    main()
