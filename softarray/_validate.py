"""Argument checks shared by every family. They run before any compiled
code, and each error names the argument and what was expected."""
import math
import numbers
import operator
import sys

import numpy as np

# What a loss may be reduced to; kl_div adds "batchmean".
REDUCTIONS = ("none", "mean", "sum")


def is_traced(x):
    """Whether x is a JAX tracer: an array of known shape and dtype whose
    values do not exist yet (under ``jax.jit``). jax is never imported
    here: a tracer can only exist once its caller has imported jax."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.core.Tracer)


def known_any(xp, condition):
    """``bool(xp.any(condition))``; False while tracing, where the values a
    check reads are not known (JAX's own functions check no values under
    ``jax.jit`` either: docs/jax.md)."""
    return not is_traced(condition) and bool(xp.any(condition))


def possibly_any(xp, condition):
    """``bool(xp.any(condition))``; True while tracing: for a branch that
    skips work when nothing holds, the general way is then the only safe
    one."""
    return is_traced(condition) or bool(xp.any(condition))


def known_all(xp, condition):
    """``bool(xp.all(condition))``; True while tracing (see known_any)."""
    return is_traced(condition) or bool(xp.all(condition))


def normalize_axes(axis, ndim, *, name="axis"):
    """Return ``axis`` as a sorted tuple of distinct non-negative ints.

    ``None`` means every axis. A 0-d array has one element and no axes, so
    on it ``axis`` may be None, (), 0 or -1 (as ``torch.softmax`` allows).
    """
    if axis is None:
        return tuple(range(ndim))
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for item in items:
        if isinstance(item, bool):
            raise TypeError(f"{name} must be an int, a tuple of ints or None, got {axis!r}")
        try:
            k = operator.index(item)
        except TypeError:
            raise TypeError(
                f"{name} must be an int, a tuple of ints or None, got {axis!r}"
            ) from None
        if ndim == 0 and k in (0, -1):
            continue
        if not -ndim <= k < ndim:
            raise ValueError(f"{name}={k} is out of bounds for an array of {ndim} dimensions")
        out.append(k % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated axes: {axis!r}")
    return tuple(sorted(out))


def check_axis(axis, ndim, name, role=""):
    """The non-negative index of one axis (an int) of an array ``name`` of
    ``ndim`` dimensions, which must have at least one; ``role`` (e.g.
    " (the classes)") says in the error what that dimension holds."""
    if ndim == 0:
        raise ValueError(f"{name} must have at least one dimension{role}")
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(f"axis must be an int, got {axis!r}")
    return normalize_axes(axis, ndim)[0]


def _is_real(value):
    """A real number, and not a bool. Python's float and int are answered
    first: the ABC check costs more than a small call's kernel."""
    kind = type(value)
    return kind is float or kind is int or (kind is not bool and isinstance(value, numbers.Real))


def _is_integer(value):
    """An integer, and not a bool (Python's int answered first)."""
    kind = type(value)
    return kind is int or (kind is not bool and isinstance(value, numbers.Integral))


def check_temperature(temperature, name="temperature"):
    """Return 1 / temperature for a positive, finite real temperature."""
    if type(temperature) is float and 0.0 < temperature < math.inf:    # the common case, checked first
        return 1.0 / temperature
    if not _is_real(temperature):
        raise TypeError(f"{name} must be a positive real number, got {temperature!r}")
    t = float(temperature)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"{name} must be positive and finite, got {temperature!r}")
    return 1.0 / t


def check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


_NUMPY_FLOATS = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.longdouble))


def is_numpy_bfloat16(dtype):
    """ml_dtypes' bfloat16 (what JAX and others hand NumPy users): a real
    floating dtype that NumPy's isdtype does not know."""
    return (isinstance(dtype, np.dtype) and dtype.kind == "V" and dtype.itemsize == 2
            and dtype.name == "bfloat16")


def isdtype(xp, dtype, kind):
    """``xp.isdtype(dtype, kind)``, knowing ml_dtypes' bfloat16 as a real
    floating dtype (NumPy's isdtype refuses it)."""
    if is_numpy_bfloat16(dtype):
        return "real floating" in (kind if isinstance(kind, tuple) else (kind,))
    return xp.isdtype(dtype, kind)


def floating_input(xp, x, name="x"):
    """Return x with a real floating dtype: integers and booleans become the
    namespace's default floating dtype; complex and other dtypes raise."""
    if type(x) is np.ndarray and (x.dtype in _NUMPY_FLOATS or is_numpy_bfloat16(x.dtype)):
        return x                                    # answered without isdtype
    check_real_numeric(xp, x, name)
    if isdtype(xp, x.dtype, "real floating"):
        return x
    return xp.astype(x, default_floating_dtype(xp, x))


def check_real_numeric(xp, x, name="x"):
    """Refuse an array x whose dtype is not real floating, integral or bool."""
    dtype = x.dtype
    if isdtype(xp, dtype, ("real floating", "integral", "bool")):
        return
    if xp.isdtype(dtype, "complex floating"):
        raise TypeError(
            f"{name} has complex dtype {dtype}; softarray's functions are defined for real "
            "inputs only (take the real part or the magnitude first)"
        )
    raise TypeError(f"{name} must have a real numeric dtype, got {dtype}")


def default_floating_dtype(xp, x=None):
    try:
        info = xp.__array_namespace_info__()
        return info.default_dtypes(device=getattr(x, "device", None))["real floating"]
    except (AttributeError, TypeError):
        return xp.float64


def is_python_scalar(value):
    """True for a Python bool, int or float (not a NumPy scalar): "weak" in
    the array API's type promotion, it takes the kind of the arrays it meets
    and not its own precision."""
    return type(value) in (bool, int, float)


def floating_result_type(xp, *values):
    """The floating dtype that SciPy gives ``values`` (real arrays of xp, or
    Python scalars, which are weak) promoted together: the rule of
    ``scipy._lib._array_api.xp_result_type(..., force_floating=True)``,
    which ``scipy.special.logsumexp`` applies to ``a`` and ``b``.

    That is xp's own promotion of the values with a Python float, so the
    library decides how integers meet floats (NumPy: int8 and float32 give
    float32, int32 and float32 float64; PyTorch and JAX: float32); where xp
    defines no such promotion (array-api-strict: integers or booleans with
    floats), the floating dtypes among them promoted with xp's default
    floating dtype (array-api-strict: float64)."""
    operands = [v if is_python_scalar(v) else v.dtype for v in values]
    try:
        return xp.result_type(*operands, 1.0)
    except (TypeError, ValueError):  # ValueError: Python scalars only, no dtype to start from
        arrays = [v for v in values if not is_python_scalar(v)]
        floating = [a.dtype for a in arrays if isdtype(xp, a.dtype, "real floating")]
        return xp.result_type(*floating, default_floating_dtype(xp, arrays[0] if arrays else None))


def mask_for(xp, where, x, name="where"):
    """Return ``where`` as a boolean array of x's namespace broadcast to
    x's shape, or None."""
    if where is None:
        return None
    if isinstance(where, bool):
        where = xp.asarray(where)
    else:
        try:
            where = xp.asarray(where)
        except Exception as exc:
            raise TypeError(
                f"{name} must be a boolean array of the same library as x, got {type(where).__name__}"
            ) from exc
    if where.dtype != xp.bool:
        raise TypeError(f"{name} must have a boolean dtype, got {where.dtype}")
    try:
        return xp.broadcast_to(where, x.shape)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(
            f"{name} of shape {tuple(where.shape)} does not broadcast to x's shape {tuple(x.shape)}"
        ) from exc


def check_reduction(reduction, allowed=REDUCTIONS):
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")
    return reduction


def check_real(value, name, *, low=-math.inf, high=math.inf, low_open=False, high_open=False):
    """Return value as a float after checking it is a finite real in the range."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if not math.isfinite(v) or below or above:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be a finite number in {left}{low}, {high}{right}, got {value!r}")
    return v


def check_int(value, name, *, allowed=None):
    if not _is_integer(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if allowed is not None and int(value) not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return int(value)


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_ignore_index(ignore_index):
    if ignore_index is None:
        return None
    return check_int(ignore_index, "ignore_index")
