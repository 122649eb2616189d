"""Lay an N-d reduction out for the compiled kernels without copying where
the memory allows it.

Any reduction over a set of axes becomes one of two shapes:

* rows: ``(n_slices, n)``, each slice a contiguous row (stride between rows
  arbitrary, negative included);
* columns: ``(outer, n, inner)``, reduced along the middle axis with the
  contiguous ``inner`` axis vectorized, so C-order ``axis=0`` or F-order
  ``axis=-1`` is read in place and never transposed.

The axes are first ordered by decreasing stride (memory order); the reduced
axes then usually form one block and reshaping is free. A copy is made only
when the kernel cannot read the memory directly: reduced axes that are not
adjacent in memory, a non-unit innermost stride, or a very narrow inner axis
(a transposed copy is faster there). Misaligned and non-native byte order
input has already been copied by ``_dispatch.as_compiled_input``.
"""
import math

import numpy as np

# With fewer contiguous columns than this the column kernel cannot fill a
# SIMD register well; a transposed copy into rows is faster.
MIN_INNER = 16


class ReductionLayout:
    """How ``a`` reduced over ``axes`` maps onto kernel views, and back."""

    def __init__(self, a, axes):
        self.shape = a.shape
        self.axes = axes
        ndim = a.ndim
        order = sorted(range(ndim), key=lambda k: -abs(a.strides[k]))
        kept = [k for k in order if k not in axes]
        reduced = [k for k in order if k in axes]
        positions = [order.index(k) for k in reduced]
        if positions and positions[-1] - positions[0] + 1 == len(positions):
            self.perm = order                      # reduced axes already adjacent
            start = positions[0]
        else:
            self.perm = kept + reduced
            start = len(kept)
        stop = start + len(reduced)
        b = a.transpose(self.perm)
        self.permuted_shape = b.shape
        self.outer = math.prod(b.shape[:start])
        self.n = math.prod(b.shape[start:stop])
        self.inner = math.prod(b.shape[stop:])
        self.kept_axes = [k for k in self.perm if k not in axes]
        self.transposed_rows = 1 < self.inner < MIN_INNER
        v = b.reshape(self.outer, self.n, self.inner)
        if self.transposed_rows:
            v = np.ascontiguousarray(v.transpose(0, 2, 1))
        self.view = v

    @property
    def uses_rows(self):
        return self.inner == 1 or self.transposed_rows

    def rows_view(self):
        """The input as (n_slices, n) with contiguous rows."""
        v = self.view.reshape(-1, self.n)
        if v.strides[1] != v.itemsize:
            v = np.ascontiguousarray(v)
        return v

    def cols_view(self):
        """The input as (outer, n, inner) with a contiguous last axis."""
        v = self.view
        if v.strides[2] != v.itemsize:
            v = np.ascontiguousarray(v)
        return v

    def empty_like_view(self, dtype):
        """A new output laid out as the kernel view (C order)."""
        return np.empty(self.view.shape, dtype)

    def restore(self, out):
        """Map a full-size kernel output back to the input's axis order."""
        if self.transposed_rows:
            out = out.reshape(self.outer, self.inner, self.n).transpose(0, 2, 1)
        out = out.reshape(self.permuted_shape)
        return out.transpose(np.argsort(self.perm))

    def restore_reduced(self, out, keepdims):
        """Map a reduced kernel output of outer * inner values back."""
        kept_shape = tuple(self.shape[k] for k in self.kept_axes)
        out = out.reshape(kept_shape).transpose(np.argsort(self.kept_axes))
        if keepdims:
            out = np.expand_dims(out, self.axes)
        return out
