"""The JAX adapter: calls holding a JAX array run the compiled kernels
where that pays, and keep working under ``jax.jit``, ``jax.grad`` and
``jax.vmap``.

An adapter (docs/architecture.md): at import it registers with
``softarray._declare`` a claim and a route. The claim holds for any call
with a ``jax.Array`` argument (tracers included); it costs a dictionary
look-up when jax is not imported. The route takes one of two paths
(docs/jax.md):

- Concrete float32 or float64 arrays on the CPU (an eager call, outside
  ``jit``, ``grad`` and ``vmap``): the public function itself on NumPy views
  of them, compiled kernels and all, its array results handed back as JAX
  arrays (``_runs_compiled`` says when this gives what the portable path
  would).
- Everything else (tracers, arrays on another device, integer or half
  precision inputs, mixed float dtypes): the portable implementation,
  which JAX traces, fuses and differentiates itself. The compiled kernels do not
  pay there: a ``jax.pure_callback`` into them copies every operand and
  result (about 30 ms for 64 MiB on this project's machines), more than
  they save over XLA's fused code (docs/jax.md has the measurements).
"""
import sys

import array_api_compat
import numpy as np

from .._declare import call_with, has_argument_of_type, register_adapter


def _claims(declaration, args, kwargs):
    """A call with a JAX array (or tracer) among its arguments."""
    jax = sys.modules.get("jax")
    return jax is not None and has_argument_of_type(args, kwargs, jax.Array)


# Integer arrays that hold indices (class targets, box labels): they take
# no part in dtype promotion, so NumPy's rules and JAX's agree on them.
_INDEX_ARGUMENTS = frozenset({"target", "labels"})


def _route(declaration, arguments):
    jax = sys.modules["jax"]
    arrays = {k: v for k, v in arguments.items() if isinstance(v, jax.Array)}
    if _runs_compiled(jax, arguments, arrays):
        return _eager(jax, declaration, arguments, arrays)
    return declaration.call_unadapted(arguments)


def _runs_compiled(jax, arguments, arrays):
    """Whether the NumPy path gives what the portable path would, only
    faster: concrete CPU arrays, no array of another library among the
    arguments (the portable path refuses the mix), the floating arrays all
    float32 or all float64 (where NumPy and JAX promote alike; an integer
    ``x`` becomes float64 in NumPy but float32 in JAX), the others index
    arrays."""
    floating = set()
    for name, value in arguments.items():
        if name not in arrays:
            if array_api_compat.is_array_api_obj(value) and not isinstance(value, np.generic):
                return False
            continue
        if isinstance(value, jax.core.Tracer) or any(d.platform != "cpu" for d in value.devices()):
            return False
        if jax.numpy.issubdtype(value.dtype, jax.numpy.floating):
            floating.add(np.dtype(value.dtype))
        elif name not in _INDEX_ARGUMENTS or not jax.numpy.issubdtype(value.dtype, jax.numpy.integer):
            return False
    return len(floating) == 1 and floating <= {np.dtype(np.float32), np.dtype(np.float64)}


def _eager(jax, declaration, arguments, arrays):
    """The public function on NumPy views of concrete CPU arrays."""
    host = dict(arguments, **{k: np.asarray(v) for k, v in arrays.items()})
    result = call_with(declaration.public, host)
    return jax.tree_util.tree_map(lambda r: _as_jax(jax, r), result)


# JAX's CPU client takes a host buffer without a copy from this alignment on.
_JAX_ALIGNMENT = 64


def _as_jax(jax, result):
    """A NumPy result as a JAX array: a floating array through DLPack,
    sharing its memory (copied first into a buffer JAX can share where it is
    not aligned for it: a copy by NumPy is several times faster than
    ``jnp.asarray``'s); other arrays (indices, which JAX without x64 holds
    in int32) through ``jnp.asarray``; anything else as it is."""
    if isinstance(result, np.ndarray) and result.dtype in (np.float32, np.float64) and result.ndim:
        if result.ctypes.data % _JAX_ALIGNMENT or not result.flags.c_contiguous:
            result = _aligned_copy(result)
        return jax.numpy.from_dlpack(result)
    if isinstance(result, (np.ndarray, np.generic)):
        return jax.numpy.asarray(result)
    return result


def _aligned_copy(array):
    buffer = np.empty(array.nbytes + _JAX_ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % _JAX_ALIGNMENT
    out = buffer[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    np.copyto(out, array)
    return out


register_adapter(_claims, _route)
