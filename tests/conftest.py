"""Shared fixtures: the array backends every functional test runs through.

* numpy: the compiled kernels.
* array_api_strict: the portable array-API implementation.
* torch: PyTorch CPU tensors, shared zero-copy with the compiled kernels
  (skipped where torch is not installed; CI installs it).
"""
import numpy as np
import pytest

try:
    import torch
except ImportError:  # torch is an optional peer
    torch = None

import array_api_strict


class Backend:
    def __init__(self, name, asarray, to_numpy, compiled):
        self.name = name
        self.asarray = asarray
        self.to_numpy = to_numpy
        self.compiled = compiled

    def __repr__(self):
        return self.name


def _strict_asarray(a):
    return array_api_strict.asarray(np.asarray(a))


def _torch_asarray(a):
    return torch.from_numpy(np.array(a))  # np.array: own writable copy


BACKENDS = {
    "numpy": Backend("numpy", np.asarray, np.asarray, compiled=True),
    "array_api_strict": Backend(
        "array_api_strict", _strict_asarray, np.from_dlpack, compiled=False
    ),
    "torch": Backend("torch", _torch_asarray, lambda t: t.numpy(), compiled=True),
}


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    if request.param == "torch" and torch is None:
        pytest.skip("torch is not installed")
    return BACKENDS[request.param]


@pytest.fixture(scope="module")
def client():
    """A dask.distributed client of a LocalCluster of 2 worker processes,
    one thread each: the graph and the blocks are pickled to worker
    processes, as on a real cluster."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()
