"""The one place that decides which implementation runs.

NumPy arrays and PyTorch CPU tensors (shared zero-copy through DLPack) go to
the compiled kernels when their dtype is float32 or float64. Everything else
(GPU arrays, JAX tracers, array-api-strict, other dtypes, tensors that
require grad so autograd keeps working) goes to the portable array-API
implementation, which returns the caller's array type, dtype and device.
Dask arrays never get here: the Dask adapter (``softarray._adapters.dask``)
claims the call first and maps the public function itself over their
blocks; eager JAX CPU arrays come as NumPy views (``softarray._adapters.jax``).
"""
import functools
import sys

import numpy as np
import array_api_compat

from ._output_cache import empty as output_empty

COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# What array_api_compat.array_namespace gives for every NumPy array.
_NUMPY_NAMESPACE = array_api_compat.array_namespace(np.empty(0))


def namespace_of(x, name="x"):
    """Return (xp, x): the array-API namespace of x and x as an array of it.

    Python scalars and sequences become NumPy arrays, as SciPy accepts them.
    """
    if type(x) is np.ndarray:       # the common case, without array_api_compat's search
        return _NUMPY_NAMESPACE, x
    if isinstance(x, np.generic) or not _is_array(x):
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise TypeError(f"{name} must be an array, got {type(x).__name__}") from exc
        if x.dtype == object:
            raise TypeError(f"{name} must be a numeric array, got an array of Python objects")
    if array_api_compat.is_torch_array(x) and x.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor, which has a shape but no values: softarray "
                         f"computes values, so move it to a real device (CPU or GPU) first")
    return array_api_compat.array_namespace(x), x


def _is_array(x):
    return array_api_compat.is_array_api_obj(x)


def companion_array(xp, first, value, name, first_name="x"):
    """value, an argument that goes with the array ``first``, as an array of
    first's library ``xp`` on first's device: Python scalars and sequences
    are converted; an array of another library or device is refused."""
    if _is_array(value) and not isinstance(value, np.generic):
        check_same_library(xp, value, name, first_name)
    else:
        try:
            value = xp.asarray(value, device=array_api_compat.device(first))
        except Exception as exc:
            raise TypeError(f"{name} must be an array, got {type(value).__name__}") from exc
    if _known_devices_differ(value, first):
        raise ValueError(f"{name} is on device {array_api_compat.device(value)} but {first_name} "
                         f"on {array_api_compat.device(first)}")
    return value


def _known_devices_differ(a, b):
    """Whether a and b are on different devices; a JAX tracer's device is
    unknown (None) and differs from none."""
    device_a, device_b = array_api_compat.device(a), array_api_compat.device(b)
    return device_a is not None and device_b is not None and device_a != device_b


def check_same_library(xp, value, name, first_name="x"):
    """Refuse ``value``, an array that goes with ``first``, when it belongs
    to another array library (a NumPy target beside torch logits): mixing
    libraries is an error in each of them, and a silent conversion would
    hide a copy or a device transfer."""
    if (_is_array(value) and not isinstance(value, np.generic)
            and array_api_compat.array_namespace(value) is not xp):
        library = xp.__name__.removeprefix("array_api_compat.")
        raise TypeError(f"{name} must be an array of the same library as {first_name} "
                        f"({library}), got {type(value).__module__}.{type(value).__name__}")


_ROW_KERNEL_DTYPES = frozenset(COMPILED_DTYPES)


def plain_rows(x, axis):
    """The fast path of small calls: x as a (rows, n) view when it is a plain
    NumPy array that the row kernels read as it is (float32 or float64 in
    native byte order, aligned, C-contiguous, not empty) and ``axis`` is its
    last axis as an int; else None, and the call takes the general path.

    On such input the general path's checks all pass and it calls the same
    row kernel on the same view, so both give the same bits; here the
    array-API namespace, the promotion and the layout are never looked up,
    which is most of a small call's time (docs/performance.md)."""
    if (type(x) is np.ndarray and type(axis) is int and x.dtype in _ROW_KERNEL_DTYPES
            and x.ndim and (axis == -1 or axis == x.ndim - 1)):
        flags = x.flags
        if flags.c_contiguous and flags.aligned and x.size:
            return x.reshape(-1, x.shape[-1])
    return None


def plain_tensor(x):
    """The fast path of small calls on PyTorch: ``x.numpy()`` (the same
    memory) for a torch.Tensor that the compiled kernels take as it is (on
    the CPU, float32, float64 or int64, not requiring grad, not a lazy
    conjugate or negative view), else None. torch is never imported here:
    an object can only be a tensor once its caller has imported torch."""
    torch = sys.modules.get("torch")
    if (torch is None or type(x) is not torch.Tensor or x.requires_grad or not x.is_cpu
            or x.dtype not in _plain_tensor_dtypes(torch)):
        return None
    try:
        return x.numpy()
    except RuntimeError:    # a lazy negative view (a conjugate one is complex)
        return None


@functools.cache
def _plain_tensor_dtypes(torch):
    return frozenset({torch.float32, torch.float64, torch.int64})


def as_tensor(out):
    """A NumPy result as a torch tensor sharing its memory (after plain_tensor)."""
    return sys.modules["torch"].from_numpy(out)


def as_compiled_input(x):
    """Return x as a NumPy array the kernels can read (native byte order,
    aligned), sharing memory with x where it already is one, or None when x
    must take the portable path."""
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
    if native_dtype(a.dtype) not in COMPILED_DTYPES:
        return None
    return aligned(native_byte_order(a))


def kernel_operand(x):
    """``(a, narrow)``: x as the kernels read it, and how a floating result
    goes back. ``a``: ``as_compiled_input(x)`` (narrow None), else a float32
    copy of half precision (narrow: ``widened_half``'s rounding back to x's
    dtype and library), else None (the portable path)."""
    a = as_compiled_input(x)
    if a is not None:
        return a, None
    return widened_half(x) or (None, None)


def widened_half(x):
    """For a half-precision array the kernels do not read (NumPy float16,
    ml_dtypes' bfloat16, a CPU torch float16 or bfloat16 tensor that does
    not require grad): ``(a, narrow)``, with ``a`` a float32 NumPy copy of x
    and ``narrow(out)`` a float32 result as x's library and dtype, rounded
    once (``narrowing(x)``). Else None. Half precision is computed in
    float32, as torch does on the CPU: half arithmetic would round every
    step and overflow at 65504."""
    narrow = narrowing(x)
    if narrow is None:
        return None
    if isinstance(x, np.ndarray):
        return x.astype(np.float32), narrow     # bfloat16 is ml_dtypes' kind "V"
    return x.float().numpy(), narrow


# The half-precision kinds of the kernels (src/_half.h).
HALF_FLOAT16, HALF_BFLOAT16 = 0, 1


def half_rows(x, axis, reduces=False):
    """The half-precision rows the kernels read directly: for a float16 or
    bfloat16 x (NumPy, ml_dtypes' bfloat16, or a CPU torch tensor that does
    not require grad), C-contiguous, aligned, in native byte order, not
    empty, with ``axis`` its last axis as an int: ``(rows, kind, out,
    out_rows)``, x's 16-bit patterns as an (n_rows, n) uint16 view, the
    kernels' kind, a new result of x's library and dtype (x's shape, or x's
    shape without the last axis when ``reduces``) and its patterns as an
    (n_rows, n or 1) uint16 view. Else None (the widened copy of
    ``kernel_operand`` then runs)."""
    if type(axis) is not int or not getattr(x, "ndim", 0) or axis not in (-1, x.ndim - 1):
        return None
    shape = tuple(x.shape[:-1]) if reduces else tuple(x.shape)
    if type(x) is np.ndarray:
        kind = {"float16": HALF_FLOAT16, "bfloat16": HALF_BFLOAT16}.get(x.dtype.name)
        if kind is None or x.dtype.itemsize != 2 or not x.dtype.isnative or not x.size:
            return None
        if not (x.flags.c_contiguous and x.flags.aligned):
            return None
        rows = x.view(np.uint16).reshape(-1, x.shape[-1])
        out_bits = output_empty(shape, np.uint16)
        return rows, kind, out_bits.view(x.dtype), out_bits.reshape(rows.shape[0], -1)
    torch = sys.modules.get("torch")
    if torch is None or type(x) is not torch.Tensor or x.requires_grad or not x.is_cpu or not x.numel():
        return None
    kind = {torch.float16: HALF_FLOAT16, torch.bfloat16: HALF_BFLOAT16}.get(x.dtype)
    if kind is None or not x.is_contiguous():
        return None
    try:
        rows = x.view(torch.int16).numpy().view(np.uint16).reshape(-1, x.shape[-1])
    except RuntimeError:    # a lazy negative view
        return None
    # The result's memory from NumPy (and the output cache), not torch.empty:
    # torch's fresh pages fault one by one on first write, which cost as
    # much as the kernel at 4096 x 4096.
    out_bits = output_empty(shape, np.uint16)
    return rows, kind, torch.from_numpy(out_bits).view(x.dtype), out_bits.reshape(rows.shape[0], -1)


def narrowing(x):
    """For a half-precision x as ``widened_half`` takes it: the function that
    turns a NumPy result of float32 (or float64) into x's library and dtype,
    rounded once; else None."""
    if isinstance(x, np.ndarray):
        if x.dtype.itemsize != 2 or x.dtype.kind not in "fV":
            return None
        try:
            np.empty(0, x.dtype).astype(np.float32)   # a 2-byte float, not raw bytes
        except (TypeError, ValueError):
            return None
        return functools.partial(_rounded_to, x.dtype)
    torch = sys.modules.get("torch")
    if (torch is None or not isinstance(x, torch.Tensor) or x.dtype not in (torch.float16, torch.bfloat16)
            or not x.is_cpu or x.requires_grad):
        return None
    return lambda out: torch.from_numpy(np.asarray(out)).to(x.dtype)


def _rounded_to(dtype, out):
    """out in dtype; beyond its range is +-inf, as in torch, without a warning."""
    with np.errstate(over="ignore"):
        return np.asarray(out).astype(dtype)


def aligned(a):
    """a, or an aligned copy when its data is not aligned to its dtype (a
    view into a byte buffer, say): the kernels' loads assume alignment, and
    an unaligned one is undefined behaviour in C (UBSan reports it)."""
    return a if a.flags.aligned else a.copy()


def native_byte_order(a):
    """a (a NumPy array) in native byte order: itself, or a converted copy."""
    return a if a.dtype.isnative else a.astype(native_dtype(a.dtype))


def native_dtype(dtype):
    """A NumPy dtype in native byte order (">f4" becomes float32); another
    library's dtype as it is."""
    return dtype.newbyteorder("=") if isinstance(dtype, np.dtype) else dtype


def numpy_view(x):
    """x as a NumPy array sharing memory (NumPy, CPU DLPack; an unaligned
    array is copied), or None."""
    if isinstance(x, np.ndarray):
        return aligned(x)
    try:
        return aligned(np.from_dlpack(x))
    except (TypeError, RuntimeError, BufferError, ValueError, AttributeError):
        return None


def to_caller(xp, out, like, narrow=None):
    """Hand a NumPy result back as the caller's array type (zero-copy); with
    ``narrow`` (``kernel_operand``'s, for half-precision input), rounded once
    to like's dtype instead."""
    if narrow is not None:
        return narrow(out)
    if isinstance(like, np.ndarray):
        return out
    return xp.from_dlpack(out)
