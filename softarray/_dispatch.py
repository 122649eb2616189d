"""The one place that decides which implementation runs.

NumPy arrays and PyTorch CPU tensors (shared zero-copy through DLPack) go to
the compiled kernels when their dtype is float32 or float64. Everything else
(GPU arrays, JAX, Dask, array-api-strict, other dtypes, tensors that require
grad so autograd keeps working) goes to the portable array-API
implementation, which returns the caller's array type, dtype and device.
"""
import numpy as np
import array_api_compat

COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def namespace_of(x, name="x"):
    """Return (xp, x): the array-API namespace of x and x as an array of it.

    Python scalars and sequences become NumPy arrays, as SciPy accepts them.
    """
    if isinstance(x, np.generic) or not _is_array(x):
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise TypeError(f"{name} must be an array, got {type(x).__name__}") from exc
        if x.dtype == object:
            raise TypeError(f"{name} must be a numeric array, got an array of Python objects")
    return array_api_compat.array_namespace(x), x


def _is_array(x):
    return array_api_compat.is_array_api_obj(x)


def as_compiled_input(x):
    """Return x as a NumPy array the kernels can read, sharing memory with
    x, or None when x must take the portable path."""
    if isinstance(x, np.ndarray):
        a = x
    elif array_api_compat.is_torch_array(x):
        if x.device.type != "cpu" or x.requires_grad or x.is_conj() or x.is_neg():
            return None
        try:
            a = np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError, ValueError):
            return None
    else:
        return None
    return a if a.dtype in COMPILED_DTYPES or a.dtype.newbyteorder("=") in COMPILED_DTYPES else None


def native_byte_order(a):
    """a (a NumPy array) in native byte order: itself, or a converted copy."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def numpy_view(x):
    """x as a NumPy array sharing memory (NumPy, CPU DLPack), or None."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError, ValueError, AttributeError):
        return None


def to_caller(xp, out, like):
    """Hand a NumPy result back as the caller's array type (zero-copy)."""
    if isinstance(like, np.ndarray):
        return out
    return xp.from_dlpack(out)
