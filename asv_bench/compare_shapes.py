"""Language-model shapes side by side (issue 22): top-k and softmax of long
rows, softarray beside PyTorch, float32, in one process.

    python asv_bench/compare_shapes.py [--repeat 7] [--threads 1 2] [--only topk softmax]

Each figure is the median over ``--repeat`` samples of the mean time of a
loop of calls (the loop sized to about 50 ms), in milliseconds; the ratio is
torch's time over softarray's (above 1: softarray faster). softarray gets
the NumPy array, torch a tensor of the same data. ``np.argpartition``
(unsorted: it does less) is printed beside top-k as a floor, not a peer.
Each library is timed in a process of its own (``--library``), since
PyTorch's OpenMP pool keeps spinning after its calls and takes a core from
softarray's threads in a shared process.
"""
import argparse
import json
import statistics
import subprocess
import sys
import timeit

import numpy as np
import torch

import softarray as sa

TOPK = ((8, 128000, 50), (1, 128000, 50), (1024, 4096, 64), (64, 20000, 1000), (4096, 64, 8))
SOFTMAX = ((1, 128000), (8, 128000), (256, 32000))


def per_call(f, repeat):
    """Median over repeat samples of the seconds per call of f."""
    f()
    number = max(1, int(0.05 / max(timeit.timeit(f, number=1), 1e-7)))
    return statistics.median(timeit.timeit(f, number=number) / number for _ in range(repeat))


def cases(rng, only):
    """(table, name, softarray call, torch call, floor call or None)."""
    out = []
    if "topk" in only:
        for rows, n, k in TOPK:
            x = rng.standard_normal((rows, n), dtype=np.float32)
            t = torch.from_numpy(x)
            out.append(("topk", f"{rows}x{n}, k={k}",
                        lambda x=x, k=k: sa.topk(x, k),
                        lambda t=t, k=k: torch.topk(t, k),
                        lambda x=x, k=k: np.argpartition(x, -k, axis=-1)[:, -k:]))
    if "softmax" in only:
        for rows, n in SOFTMAX:
            x = rng.standard_normal((rows, n), dtype=np.float32)
            t = torch.from_numpy(x)
            out.append(("softmax", f"{rows}x{n}", lambda x=x: sa.softmax(x),
                        lambda t=t: torch.softmax(t, -1), None))
            out.append(("log_softmax", f"{rows}x{n}", lambda x=x: sa.log_softmax(x),
                        lambda t=t: torch.log_softmax(t, -1), None))
    return out


def timings(library, threads, only, repeat):
    """{(call, shape): ms} for one library at one thread count, this process."""
    out = {}
    torch.set_num_threads(threads)
    with sa.threads(threads):
        for call, shape, ours, peer, floor in cases(np.random.default_rng(0), only):
            f = {"softarray": ours, "torch": peer, "argpartition": floor}[library]
            if f is not None:
                out[f"{call}|{shape}"] = per_call(f, repeat) * 1e3
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", nargs="+", default=["topk", "softmax"], choices=["topk", "softmax"])
    parser.add_argument("--library", choices=["softarray", "torch", "argpartition"],
                        help="time this one here and print JSON (the table runs one process each)")
    args = parser.parse_args()
    if args.library:
        print(json.dumps(timings(args.library, args.threads[0], args.only, args.repeat)))
        return
    print("| call | shape | threads | softarray ms | torch ms | torch / softarray | argpartition ms |")
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads:
        times = {
            library: json.loads(subprocess.run(
                [sys.executable, __file__, "--library", library, "--threads", str(threads),
                 "--repeat", str(args.repeat), "--only", *args.only],
                check=True, capture_output=True, text=True).stdout)
            for library in ("softarray", "torch", "argpartition")}
        for key, a in times["softarray"].items():
            call, shape = key.split("|")
            b = times["torch"][key]
            c = f"{times['argpartition'][key]:.3f}" if key in times["argpartition"] else ""
            print(f"| {call} | {shape} | {threads} | {a:.3f} | {b:.3f} | {b / a:.2f}x | {c} |", flush=True)


if __name__ == "__main__":
    main()
