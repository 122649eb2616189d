"""A training loop end to end: a classifier head (Linear, GELU, Linear) over
frozen features, trained with SGD and momentum on the CPU, its loss from
softarray (through the autograd adapter) or from torch.nn.functional, same
data, same initial weights, same steps.

    python asv_bench/train_classifier_head.py [--threads 1] [--epochs 5] [--loss cross_entropy]

Prints, per library, the wall time of the whole loop (median of --repeat
runs), the final training loss and accuracy; the two losses follow each
other step by step (the last one is printed with its difference). With
``--loss label_smoothing`` both use label smoothing 0.1 and class weights.
"""
import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import softarray as sa


def data(n=32768, features=256, classes=1000, seed=0):
    """Features and labels with a learnable structure: the label is the
    class of largest score under a fixed random linear map, plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features), dtype=np.float32)
    W = rng.standard_normal((features, classes), dtype=np.float32)
    y = np.argmax(X @ W + rng.gumbel(size=(n, classes)).astype(np.float32), axis=1)
    return torch.from_numpy(X), torch.from_numpy(y)


def head(features, classes, hidden=512, seed=1):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.GELU(),
                               torch.nn.Linear(hidden, classes))


def loss_functions(kind, classes):
    weight = torch.linspace(0.5, 1.5, classes)
    if kind == "cross_entropy":
        return {"softarray": lambda z, y: sa.cross_entropy(z, y),
                "torch": lambda z, y: F.cross_entropy(z, y)}
    return {"softarray": lambda z, y: sa.cross_entropy(z, y, weight=weight, label_smoothing=0.1),
            "torch": lambda z, y: F.cross_entropy(z, y, weight=weight, label_smoothing=0.1)}


def train(loss_fn, X, y, classes, epochs, batch):
    """(seconds, per-step losses, final accuracy) of one run from the same start."""
    model = head(X.shape[1], classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    t0 = time.perf_counter()
    for _ in range(epochs):
        for start in range(0, X.shape[0], batch):
            xb, yb = X[start:start + batch], y[start:start + batch]
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        accuracy = float((model(X).argmax(dim=1) == y).float().mean())
    return seconds, losses, accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loss", choices=["cross_entropy", "label_smoothing"], default="cross_entropy")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    classes = 1000
    X, y = data(classes=classes)
    results = {}
    with sa.threads(args.threads):
        for name, fn in loss_functions(args.loss, classes).items():
            runs = [train(fn, X, y, classes, args.epochs, args.batch) for _ in range(args.repeat)]
            results[name] = (statistics.median(r[0] for r in runs), runs[0][1], runs[0][2])
    print(f"{X.shape[0]} samples x {X.shape[1]} features -> {classes} classes, head 256-512-1000, "
          f"batch {args.batch}, {args.epochs} epochs, loss {args.loss}, {args.threads} thread(s), "
          f"median of {args.repeat}")
    for name, (seconds, losses, accuracy) in results.items():
        print(f"{name:<10} {seconds:7.2f} s   final loss {losses[-1]:.6f}   accuracy {accuracy:.4f}")
    ours, theirs = results["softarray"][1], results["torch"][1]
    gap = max(abs(a - b) for a, b in zip(ours, theirs))
    print(f"largest per-step loss difference: {gap:.2e}; torch / softarray time: "
          f"{results['torch'][0] / results['softarray'][0]:.2f}x")


if __name__ == "__main__":
    main()
