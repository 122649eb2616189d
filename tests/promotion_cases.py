"""Dtype promotion of scipy.special's softmax, log_softmax and logsumexp on
every array library, for tests/test_special.py.

SciPy reads ``SCIPY_ARRAY_API`` once, when it is first imported, and the
test process imports it without. ``python tests/promotion_cases.py`` runs in
a fresh process with ``SCIPY_ARRAY_API=1`` and prints, as JSON, the dtype
SciPy returns for each case on each installed library (null where SciPy
raises). The cases, their values and the libraries are defined here once,
for both processes.
"""
import contextlib
import json
import os
import sys

import numpy as np

DTYPES = ("bool", "int8", "uint8", "int16", "int32", "int64", "float32", "float64")

# A Python scalar is weak in promotion: it takes the kind of the array it
# meets. Strings name an array's dtype; other entries are the scalars.
WEAK_CASES = [(3.0, "float32"), (3, "float32"), (True, "float32"), ("float32", 0.5),
              ("float32", 2), ("float32", True), ("int8", 0.5), ("bool", 2.0), (3.0, 2)]

# Small values, so that exp is exact enough in every dtype and an integer
# dtype holds them; no slice of b * exp(a) sums to nearly 0.
_A = np.array([[0, 3, 5, 1], [2, 4, 0, 1], [5, 1, 2, 0]])
_B_SIGNED = np.array([2, -1, 1, 3])
_B_UNSIGNED = np.array([2, 0, 1, 3])


def operand(spec, role):
    """The NumPy array named by dtype ``spec`` for argument ``role`` ("a"
    or "b"), or the Python scalar spec itself."""
    if not isinstance(spec, str):
        return spec
    dtype = np.dtype(spec)
    if role == "a":
        values = _A * 0.75 - 1.5 if dtype.kind == "f" else _A
        return (values % 2 == 1 if dtype.kind == "b" else values).astype(dtype)
    if dtype.kind == "f":
        return np.array([0.5, -1.25, 2.0, 1.0], dtype)
    values = _B_UNSIGNED if dtype.kind in "ub" else _B_SIGNED
    return values.astype(dtype)


def _jax(x64):
    import jax
    import jax.numpy as jnp

    # Without x64, JAX has no 64-bit arrays: its cases leave those out.
    dtypes = DTYPES if x64 else tuple(d for d in DTYPES if not d.endswith("64"))
    return jnp.asarray, lambda: jax.enable_x64(x64), dtypes


def _torch():
    import torch
    return torch.asarray, contextlib.nullcontext, DTYPES


def _strict():
    import array_api_strict
    return array_api_strict.asarray, contextlib.nullcontext, DTYPES


def _numpy():
    return np.asarray, contextlib.nullcontext, DTYPES


_LIBRARIES = {"numpy": _numpy, "array_api_strict": _strict, "torch": _torch,
              "jax": lambda: _jax(False), "jax_x64": lambda: _jax(True)}


def library(name):
    """(asarray from NumPy, context to run in, dtypes) of an installed
    library, or None."""
    try:
        return _LIBRARIES[name]()
    except ImportError:
        return None


def libraries():
    return [name for name in _LIBRARIES if library(name) is not None]


def on_library(asarray, spec, role):
    value = operand(spec, role)
    return asarray(value) if isinstance(value, np.ndarray) else value


def dtype_name(dtype):
    """'float32' for NumPy's, PyTorch's, JAX's and array-api-strict's float32."""
    return str(dtype).rsplit(".", 1)[-1]


def key(function, a, b=None):
    return f"{function}({a!r}, {b!r})"


def cases(dtypes):
    """(function, a, b) of every case on a library with these dtypes."""
    for a in dtypes:
        yield "softmax", a, None
        yield "log_softmax", a, None
        for b in (None,) + dtypes:
            yield "logsumexp", a, b
    for a, b in WEAK_CASES:
        yield "logsumexp", a, b


def _scipy_dtypes(name):
    """{case key: SciPy's result dtype, or None where SciPy raises} on the
    library ``name``; logsumexp's sign has its result's dtype, checked."""
    import scipy.special

    asarray, context, dtypes = library(name)
    out = {}
    with context():
        for function, a, b in cases(dtypes):
            args = [on_library(asarray, a, "a")]
            kwargs = {} if function != "logsumexp" else {
                "b": None if b is None else on_library(asarray, b, "b"), "return_sign": True}
            try:
                with np.errstate(all="ignore"):
                    result = getattr(scipy.special, function)(*args, **kwargs)
            except (TypeError, RuntimeError):  # NumPy and JAX raise TypeError, PyTorch RuntimeError
                out[key(function, a, b)] = None
                continue
            if function == "logsumexp":
                assert result[0].dtype == result[1].dtype
                result = result[0]
            out[key(function, a, b)] = dtype_name(result.dtype)
    return out


def main():
    os.environ["SCIPY_ARRAY_API"] = "1"
    assert "scipy" not in sys.modules
    from scipy._lib._array_api import SCIPY_ARRAY_API
    assert SCIPY_ARRAY_API
    json.dump({name: _scipy_dtypes(name) for name in libraries()}, sys.stdout)


if __name__ == "__main__":
    main()
