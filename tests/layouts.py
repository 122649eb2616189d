"""Memory layouts every family's tests run through: the same values as C,
F-ordered, strided, negative-stride, read-only and float32 F-ordered views.
(On sys.path through pyproject's pytest ``pythonpath = ["tests"]``: only the
tests folder, never the source tree, which stays uncompiled.)"""
import numpy as np


def memory_layouts(base):
    """Views and copies of the 2-D array ``base`` in assorted layouts."""
    readonly = base.copy()
    readonly.setflags(write=False)
    return {
        "C": np.ascontiguousarray(base),
        "F": np.asfortranarray(base),
        "strided rows": np.repeat(base, 2, axis=0)[::2],
        "strided columns": np.repeat(base, 3, axis=1)[:, ::3],
        "negative strides": base[::-1, ::-1].copy()[::-1, ::-1],
        "read-only": readonly,
        "float32 F": np.asfortranarray(base.astype(np.float32)),
    }
