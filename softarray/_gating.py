"""Top-k selection and the top-k gate of mixture-of-experts routers: the
public functions. They validate, then run the compiled kernels
(``softarray._lib._gating``) on NumPy arrays and CPU DLPack arrays, or the
portable array-API implementation (``softarray._portable.gating``)."""
import math
from typing import NamedTuple

import array_api_compat
import numpy as np

from . import _dispatch
from ._conventions import capacity_slots, expert_capacity
from ._declare import (AlongAxes, RowsToOne, TokensWithSlots, TopKAlongAxis, VectorJacobian, call_with,
                       declare)
from ._lib import _gating as _kernels
from ._portable import gating as _portable
from ._softmax import logsumexp, softmax
from ._threads import threads_for_call
from ._validate import (
    check_axis,
    check_bool,
    check_choice,
    check_int,
    check_real,
    check_real_numeric,
    check_temperature,
    floating_input,
    is_traced,
    isdtype,
    known_any,
)


@declare(TopKAlongAxis("x"))
def topk(x, k, *, axis=-1, largest=True, sorted=True):
    r"""The ``k`` largest (or smallest) entries along ``axis``, and their indices.

    ``torch.topk`` semantics, made deterministic: entries that tie keep the
    lower index first, and NaN counts as larger than every number (as in
    PyTorch), so it comes first for ``largest=True`` and last otherwise.
    ``-0.0`` and ``0.0`` tie.

    Parameters
    ----------
    x : array
        Real array (float32 and float64 run the compiled kernel; integer
        and boolean arrays the portable path).
    k : int
        How many entries to keep, ``0 <= k <= x.shape[axis]``.
    axis : int, default -1
    largest : bool, default True
        The largest entries, in decreasing order; False: the smallest, in
        increasing order.
    sorted : bool, default True
        Return them in that order; False allows any order of the same set
        (the compiled kernel then skips the final sort for large ``k``).

    Returns
    -------
    values : array
        ``x``'s type and dtype, ``x.shape`` with ``axis`` of length ``k``.
    indices : array of int64
        Their positions along ``axis``.

    Notes
    -----
    For ``k`` up to 32 each row is read once, keeping the best ``k`` in a
    small sorted buffer; for larger ``k`` a quickselect puts the ``k`` best in
    front and only they are sorted. A non-last ``axis`` whose entries are not
    contiguous is copied once to contiguous rows.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> values, indices = sa.topk(np.array([1.0, 3.0, np.nan, 3.0, 2.0]), 3)
    >>> values
    array([nan,  3.,  3.])
    >>> indices
    array([2, 1, 3])
    """
    fast = _small_topk(x, k, axis, largest, sorted)
    if fast is not None:
        return fast
    xp, x = _dispatch.namespace_of(x)
    if isdtype(xp, x.dtype, "complex floating"):
        raise TypeError(f"x has complex dtype {x.dtype}; topk needs a real array (complex numbers are not ordered)")
    check_real_numeric(xp, x)
    axis = check_axis(axis, x.ndim, "x")
    k = check_int(k, "k")
    n = x.shape[axis]
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}] (the length of axis {axis} of x), got {k}")
    largest = check_bool(largest, "largest")
    sorted = check_bool(sorted, "sorted")
    a, narrow = _dispatch.kernel_operand(x)
    if a is None:
        return _portable.topk(xp, x, k, axis=axis, largest=largest, sorted=sorted)
    # Widening half precision keeps every value and the order: the values round back exactly.
    values, indices = _topk_compiled(a, k, axis, largest, sorted)
    return _dispatch.to_caller(xp, values, x, narrow), _dispatch.to_caller(xp, indices, x)


def _small_topk(x, k, axis, largest, sorted):
    """The fast path of small calls: (values, indices) when x is plain rows
    (``_plain.pxd``, or a plain CPU tensor) and the options plain Python
    values with 0 < k <= the row length (checked in C by
    ``_kernels.plain_topk``); else None and the general path runs (and
    raises any error). The kernel call is the general path's."""
    tensor = None if type(x) is np.ndarray else _dispatch.plain_tensor(x)
    result = _kernels.plain_topk(x if tensor is None else tensor, k, axis, largest, sorted, threads_for_call())
    if result is None or tensor is None:
        return result
    return _dispatch.as_tensor(result[0]), _dispatch.as_tensor(result[1])


def _topk_compiled(a, k, axis, largest, sorted):
    moved = np.moveaxis(a, axis, -1)
    lead, n = moved.shape[:-1], moved.shape[-1]
    values = np.empty(lead + (k,), a.dtype)
    indices = np.empty(lead + (k,), np.int64)
    if k > 0 and values.size:
        rows = moved.reshape(-1, n)             # a view when the layout allows
        if rows.strides[1] != rows.itemsize:
            rows = np.ascontiguousarray(rows)
        _kernels.topk_rows(rows, k, largest, sorted, values.reshape(-1, k), indices.reshape(-1, k),
                           threads_for_call())
    return np.moveaxis(values, -1, axis), np.moveaxis(indices, -1, axis)


class TopKGating(NamedTuple):
    """What :func:`topk_gating` returns (a tuple; fields by name).

    Parameters
    ----------
    weights : array, shape (tokens, k)
        Gate weights, the router logits' dtype.
    indices : array of int64, shape (tokens, k)
        Experts, best first.
    positions, kept : array of int64, array of bool, shape (tokens, k), optional
        Slot of each assignment in its expert, and whether it is below the
        capacity (with ``capacity_factor``).
    capacity : int, optional
        Slots per expert (with ``capacity_factor``).
    aux : dict, optional
        With ``return_aux``: "load_balancing_loss", "router_z_loss",
        "expert_counts".

    Examples
    --------
    >>> import numpy as np, softarray as sa
    >>> gate = sa.topk_gating(np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]]), 2)
    >>> gate.indices
    array([[1, 2],
           [0, 2]])
    >>> weights, indices, *_ = gate
    >>> gate.capacity is None
    True
    """

    weights: object
    """(tokens, k) gate weights, the router logits' dtype."""
    indices: object
    """(tokens, k) int64 experts, best first."""
    positions: object = None
    """(tokens, k) int64 slot of each assignment in its expert (with capacity_factor)."""
    kept: object = None
    """(tokens, k) bool: the slot is below the capacity (with capacity_factor)."""
    capacity: int | None = None
    """Slots per expert, ceil(capacity_factor * k * tokens / experts) (with capacity_factor)."""
    aux: dict | None = None
    """With return_aux: "load_balancing_loss", "router_z_loss", "expert_counts"."""


_ORDERS = ("softmax_topk", "topk_softmax")


def _topk_gating_forward(arguments):
    """The gate, and what its weights' gradient needs: the logits the
    experts were chosen from (noise drawn here, as the call draws it)."""
    z, noise_std = arguments["router_logits"], arguments["noise_std"]
    if check_real(noise_std, "noise_std", low=0.0) > 0.0:
        z = z + noise_std * _host_noise(np, z, _check_rng(arguments["rng"]),
                                        lambda g, shape: g.standard_normal(shape))
    gate = call_with(topk_gating, dict(arguments, router_logits=z, noise_std=0.0, rng=None))
    return gate, (z, gate.weights, gate.indices)


def _topk_gating_vjp(arguments, saved, g):
    """The gate weights' product, to the router logits. Over the selected
    logits (``"topk_softmax"``, or renormalized): a softmax's product
    scattered to the chosen experts; else the full softmax's product with
    the cotangent scattered to them."""
    routed, weights, indices = saved
    g = g[0]
    inv_t = check_temperature(arguments["temperature"])
    dz = np.zeros(routed.shape, np.result_type(routed.dtype, g.dtype))
    if arguments["order"] == "topk_softmax" or arguments["renormalize"]:
        dw = weights * (g - np.sum(g * weights, axis=1, keepdims=True))
        np.put_along_axis(dz, indices, dw * inv_t, axis=1)
        return (dz,)
    np.put_along_axis(dz, indices, g, axis=1)
    p = softmax(routed, axis=1, temperature=arguments["temperature"])
    return (p * (dz - np.sum(g * weights, axis=1, keepdims=True)) * inv_t,)


def _topk_gating_gradient(arguments):
    """The weights' rule; none with ``return_aux`` (the auxiliary losses
    are left to the portable path, which autograd records)."""
    return None if arguments["return_aux"] else _TOPK_GATING_GRADIENT


_TOPK_GATING_GRADIENT = VectorJacobian(("router_logits",), _topk_gating_vjp, forward=_topk_gating_forward)


@declare(TokensWithSlots(capacity=expert_capacity), gradient=_topk_gating_gradient)
def topk_gating(router_logits, k, *, order="softmax_topk", renormalize=True, temperature=1.0,
                noise_std=0.0, rng=None, capacity_factor=None, return_aux=False):
    r"""Top-k gate of a mixture-of-experts router, fused.

    For each token (row of ``router_logits``, shape (tokens, experts)) the
    ``k`` experts with the largest logits (ties: the lower expert index) and
    their gate weights, computed per row in one pass for the selection and
    one for the softmax, without a (tokens, experts) probability array.

    Parameters
    ----------
    router_logits : array, shape (tokens, experts)
        Real logits; NaN raises ``ValueError``.
    k : int
        Experts per token, ``1 <= k <= experts``.
    order : {"softmax_topk", "topk_softmax"}
        "softmax_topk" (Switch Transformer, GShard, Mixtral): softmax over
        all experts, then the top ``k`` probabilities; "topk_softmax" (the
        noisy top-k gate of Shazeer et al.): the softmax over the ``k``
        selected logits only. The two agree when ``renormalize`` is True.
    renormalize : bool, default True
        With "softmax_topk", divide the ``k`` weights by their sum.
    temperature : float > 0, default 1
        Weights from ``softmax(logits / temperature)``; the selection does
        not depend on it.
    noise_std : float >= 0, default 0
        Adds ``noise_std`` times standard normal noise from ``rng`` to the
        logits before selection and softmax (noisy top-k gating).
    rng : numpy.random.Generator, optional
        The noise's source (seed it for reproducible routing); default
        ``numpy.random.default_rng()``.
    capacity_factor : float > 0, optional
        Each expert takes ``capacity = ceil(capacity_factor * k * tokens /
        experts)`` assignments. Slots are given in order of arrival, every
        token's first choice before any second choice (GShard, Switch
        Transformer); ``positions`` holds each assignment's slot and
        ``kept`` whether it is below the capacity (a dropped assignment
        keeps its weight: zero it, or drop it, when combining).
    return_aux : bool, default False
        (On CPU tensors that require grad, the weights' gradient to the
        router logits is computed by softarray's autograd adapter unless
        ``return_aux`` is True: then the portable path runs, which
        autograd records.) Also return, in ``aux``: ``"load_balancing_loss"``, Switch
        Transformer's ``experts * sum_e f_e P_e`` (``f_e`` assignments to
        expert e per token, ``P_e`` its mean router probability; with
        ``k > 1`` as Mixtral's implementation), ``"router_z_loss"``, the
        mean of ``logsumexp(router_logits)**2`` (ST-MoE; on the logits as
        given, before noise and temperature), and ``"expert_counts"``, the
        assignments per expert before any capacity drop.

    Returns
    -------
    TopKGating
        ``(weights, indices, positions, kept, capacity, aux)``; the fields
        not asked for are None. Arrays are the caller's array type.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> gate = sa.topk_gating(np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])), 2)
    >>> gate.indices
    array([[1, 2],
           [0, 2]])
    >>> gate.weights.round(4)
    array([[0.6667, 0.3333],
           [0.625 , 0.375 ]])
    """
    fast = _small_topk_gating(router_logits, k, order, renormalize, temperature, noise_std, rng,
                              capacity_factor, return_aux)
    if fast is not None:
        return fast
    xp, z = _dispatch.namespace_of(router_logits, "router_logits")
    z = floating_input(xp, z, "router_logits")
    if z.ndim != 2:
        raise ValueError(f"router_logits must be 2-D (tokens, experts), got shape {tuple(z.shape)}")
    n_tokens, n_experts = z.shape
    k = check_int(k, "k")
    if not 1 <= k <= n_experts:
        raise ValueError(f"k must be in [1, {n_experts}] (the number of experts), got {k}")
    order = check_choice(order, "order", _ORDERS)
    renormalize = check_bool(renormalize, "renormalize")
    inv_t = check_temperature(temperature)
    noise_std = check_real(noise_std, "noise_std", low=0.0)
    rng = _check_rng(rng)
    if capacity_factor is not None:
        capacity_factor = check_real(capacity_factor, "capacity_factor", low=0.0, low_open=True)
    return_aux = check_bool(return_aux, "return_aux")

    routed = z
    if noise_std > 0.0:
        routed = z + noise_std * _host_noise(xp, z, rng, lambda g, shape: g.standard_normal(shape))
    over_selected = order == "topk_softmax" or renormalize
    weights, indices, prob_sum = _gate(xp, routed, k, inv_t, over_selected, return_aux)
    result = {}
    if capacity_factor is not None or return_aux:
        positions, counts = capacity_slots(xp, indices, n_experts)
    if capacity_factor is not None:
        capacity = expert_capacity(capacity_factor, k, n_tokens, n_experts)
        result.update(positions=positions, kept=positions < capacity, capacity=capacity)
    if return_aux:
        result["aux"] = _aux(xp, z, counts, prob_sum, n_tokens, n_experts)
    return TopKGating(weights, indices, **result)


def _small_topk_gating(router_logits, k, order, renormalize, temperature, noise_std, rng,
                       capacity_factor, return_aux):
    """The fast path of small calls: the gate when the logits are plain 2-D
    rows (``_plain.pxd``, or a plain CPU tensor) without NaN, ``1 <= k <=
    experts`` (checked in C by ``_kernels.plain_gate``) and the options are
    the plain defaults or plain Python values that need no check (no noise,
    no capacity, no aux); else None and the general path runs (and raises
    any error). The kernel is the general path's (``_gate``)."""
    if (type(order) is not str or order not in _ORDERS or type(renormalize) is not bool
            or type(temperature) not in (float, int) or temperature != 1
            or type(noise_std) not in (float, int) or noise_std != 0
            or rng is not None or capacity_factor is not None or return_aux is not False):
        return None
    tensor = None if type(router_logits) is np.ndarray else _dispatch.plain_tensor(router_logits)
    gate = _kernels.plain_gate(router_logits if tensor is None else tensor, k,
                               order == "topk_softmax" or renormalize, threads_for_call())
    if gate is None or tensor is None:
        return None if gate is None else TopKGating(*gate)
    return TopKGating(_dispatch.as_tensor(gate[0]), _dispatch.as_tensor(gate[1]))


def _check_rng(rng):
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    return rng


def _host_noise(xp, like, rng, draw):
    """Noise of like's shape drawn on the host by ``draw(rng, shape)`` (so one
    seed gives one sample whatever the library), in like's dtype and device;
    an unseeded generator when rng is None."""
    rng = np.random.default_rng() if rng is None else rng
    # Drawn in float64, rounded once to like's dtype (half precision included).
    return xp.asarray(draw(rng, tuple(like.shape)), dtype=like.dtype, device=array_api_compat.device(like))


def _gate(xp, z, k, inv_t, over_selected, with_probs):
    a, narrow = _dispatch.kernel_operand(z)
    if a is None:
        if known_any(xp, xp.isnan(z)):
            raise ValueError("router_logits contains NaN")
        return _portable.gate(xp, z, k, inv_temperature=inv_t, over_selected=over_selected,
                              with_probs=with_probs)
    if a.strides[1] != a.itemsize:
        a = np.ascontiguousarray(a)
    weights, indices, prob_sum = _gate_compiled(a, k, inv_t, over_selected, with_probs)
    return (_dispatch.to_caller(xp, weights, z, narrow), _dispatch.to_caller(xp, indices, z),
            _dispatch.to_caller(xp, prob_sum, z, narrow) if with_probs else None)


def _gate_compiled(a, k, inv_t, over_selected, with_probs):
    """The gate kernel on rows ``a`` (contiguous along the experts), NumPy in
    and out; ValueError when a row holds NaN."""
    n, e = a.shape
    weights = np.empty((n, k), a.dtype)
    indices = np.empty((n, k), np.int64)
    prob_sum = np.zeros(e if with_probs else 0)
    _kernels.gate_rows(a, k, inv_t, over_selected, weights, indices, prob_sum, threads_for_call())
    # NaN ranks above every number, so a row holding one has a NaN first
    # weight: checking that column (and only its rows' logits) costs far
    # less than a pass over all the logits before the kernel. The kernel
    # wrote only the fresh outputs, which are dropped.
    suspect = np.isnan(weights[:, 0])
    if suspect.any() and np.isnan(a[suspect]).any():
        raise ValueError("router_logits contains NaN")
    return weights, indices, prob_sum


def _aux(xp, z, counts, prob_sum, n_tokens, n_experts):
    """Switch Transformer's load-balancing loss, ST-MoE's router z-loss,
    and the assignments per expert."""
    dtype = z.dtype
    fraction = xp.astype(counts, dtype) / n_tokens
    mean_prob = xp.astype(prob_sum, dtype) / n_tokens
    lse = logsumexp(z, axis=1)
    return {
        # xp.asarray: NumPy reductions give scalars, the caller gets 0-d arrays
        "load_balancing_loss": xp.asarray(n_experts * xp.sum(fraction * mean_prob)),
        "router_z_loss": xp.asarray(xp.mean(lse * lse)),
        "expert_counts": counts,
    }


# Activations the dense-to-sparse gate accepts by name; a callable is used as is.
_ACTIVATIONS = {
    # exp of -|v| only: no overflow for very negative logits
    "sigmoid": lambda xp, v: xp.where(v >= 0, 1 / (1 + xp.exp(-xp.abs(v))),
                                      xp.exp(-xp.abs(v)) / (1 + xp.exp(-xp.abs(v)))),
    "tanh": lambda xp, v: xp.tanh(v),
    "relu": lambda xp, v: xp.maximum(v, xp.zeros_like(v)),
}


@declare(AlongAxes("router_logits"))
def dense_to_sparse_gating(router_logits, *, temperature, activation=None, threshold=0.0,
                           renormalize=True, axis=-1):
    r"""The temperature-controlled dense-to-sparse gate.

    ``softmax(activation(router_logits) / temperature)`` along ``axis``, with
    the weights below ``threshold`` set to 0 (and, by default, the rest
    renormalized to sum 1). A high temperature gives a dense gate; lowering
    it during training, with a threshold, makes it sparse ("Is Temperature
    Sample Efficient for Softmax Gaussian Mixture of Experts?", Nguyen,
    Akbarian & Ho, 2024, which also proposes the activation before the
    softmax to restore polynomial estimation rates).

    Parameters
    ----------
    router_logits : array
        Real logits, experts along ``axis``.
    temperature : float > 0
        Required: the gate's defining knob.
    activation : {None, "sigmoid", "tanh", "relu"} or callable, optional
        Applied to the logits before the softmax (the "activation
        dense-to-sparse gate"); a callable receives and returns an array of
        the caller's library.
    threshold : float in [0, 1), default 0
        Weights strictly below it become 0; 0 keeps the gate dense. The
        largest weight of a row is always kept.
    renormalize : bool, default True
        Divide the kept weights by their sum.
    axis : int, default -1

    Returns
    -------
    array
        The weights, the logits' shape, type and floating dtype; zero where
        an expert is not used.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> z = np.array([[2.0, 1.0, -1.0]])
    >>> sa.dense_to_sparse_gating(z, temperature=0.5, threshold=0.1).round(4)
    array([[0.8808, 0.1192, 0.    ]])
    """
    xp, z, axis = _logits_along(router_logits, axis, "router_logits", " (the experts)", nonempty=True)
    check_temperature(temperature)
    threshold = check_real(threshold, "threshold", low=0.0, high=1.0, high_open=True)
    renormalize = check_bool(renormalize, "renormalize")
    act = _activation(activation)
    scores = z if act is None else act(xp, z)
    weights = softmax(scores, axis=axis, temperature=temperature)
    if threshold == 0.0:
        return weights
    top = xp.max(weights, axis=axis, keepdims=True)
    kept = (weights >= threshold) | (weights == top)
    weights = xp.where(kept, weights, xp.zeros_like(weights))
    if renormalize:
        weights = weights / xp.sum(weights, axis=axis, keepdims=True)
    return weights


def _activation(activation):
    if activation is None or callable(activation):
        return None if activation is None else (lambda xp, v: activation(v))
    if isinstance(activation, str) and activation in _ACTIVATIONS:
        return _ACTIVATIONS[activation]
    raise ValueError(f"activation must be None, a callable or one of {sorted(_ACTIVATIONS)}, "
                     f"got {activation!r}")


def _gumbel_noise(xp, like, rng):
    """Standard Gumbel noise of like's shape."""
    return _host_noise(xp, like, _check_rng(rng), lambda g, shape: g.gumbel(size=shape))


def _logits_along(logits, axis, name="logits", role="", *, nonempty=False):
    """(xp, floating logits, validated axis) for the gates and samplers;
    with ``nonempty``, ``axis`` must not have length 0 (a distribution over
    no categories)."""
    xp, z = _dispatch.namespace_of(logits, name)
    z = floating_input(xp, z, name)
    axis = check_axis(axis, z.ndim, name, role)
    if nonempty and z.shape[axis] == 0:
        raise ValueError(f"{name} has no categories{role}: axis {axis} has length 0")
    return xp, z, axis


def _gumbel_sample(logits, tau, hard, rng, axis):
    """(sample, soft sample): they differ with ``hard``."""
    xp, z, axis = _logits_along(logits, axis, nonempty=True)
    check_temperature(tau, "tau")
    hard = check_bool(hard, "hard")
    soft = softmax(z + _gumbel_noise(xp, z, rng), axis=axis, temperature=tau)
    if not hard:
        return soft, soft
    _, index = topk(soft, 1, axis=axis)
    positions = xp.reshape(xp.arange(z.shape[axis], device=array_api_compat.device(z)), (-1,) + (1,) * (z.ndim - 1 - axis))
    return xp.astype(positions == index, z.dtype), soft


def _gumbel_softmax_forward(arguments):
    """The sample, and the soft sample the gradient needs."""
    return _gumbel_sample(arguments["logits"], arguments["tau"], arguments["hard"], arguments["rng"],
                          arguments["axis"])


def _gumbel_softmax_vjp(arguments, soft, g):
    """The soft sample's softmax product at temperature ``tau``, also for
    ``hard`` (straight through, as torch's ``y_hard - y_soft.detach() +
    y_soft``)."""
    return softmax.declaration.gradient.vjp(
        {"axis": arguments["axis"], "temperature": arguments["tau"], "where": None}, soft, g)


@declare(AlongAxes("logits"),
         gradient=VectorJacobian(("logits",), _gumbel_softmax_vjp, forward=_gumbel_softmax_forward))
def gumbel_softmax(logits, *, tau=1.0, hard=False, rng=None, axis=-1):
    r"""Gumbel-softmax sample: ``softmax((logits + g) / tau)``, ``g`` standard Gumbel.

    ``torch.nn.functional.gumbel_softmax`` semantics ("Categorical
    Reparameterization with Gumbel-Softmax", Jang, Gu & Poole), with the
    noise drawn from a seeded NumPy ``Generator``.

    Parameters
    ----------
    logits : array
    tau : float > 0, default 1
        Temperature; small ``tau`` approaches a one-hot sample.
    hard : bool, default False
        Return the one-hot of the sample's largest entry (ties: lower index)
        instead of the soft sample. On CPU tensors that require grad the
        gradient passes straight through to the soft sample, as with
        PyTorch's ``y_hard - y_soft.detach() + y_soft`` (whose values are
        the same one-hot up to rounding).
    rng : numpy.random.Generator, optional
        Noise source; default ``numpy.random.default_rng()``.
    axis : int, default -1

    Returns
    -------
    array
        The logits' shape, type and floating dtype; each slice along
        ``axis`` sums to 1.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> y = sa.gumbel_softmax(np.log(np.array([0.2, 0.3, 0.5])), tau=0.5, rng=np.random.default_rng(0))
    >>> bool(np.isclose(y.sum(), 1.0))
    True
    """
    return _gumbel_sample(logits, tau, hard, rng, axis)[0]



@declare(TopKAlongAxis("logits"))
def gumbel_topk(logits, k, *, rng=None, axis=-1):
    r"""``k`` categories sampled without replacement from ``softmax(logits)``.

    The Gumbel top-k trick: the indices of the ``k`` largest of ``logits +
    g`` (``g`` standard Gumbel) are a sample without replacement, in order
    of selection, from the categorical distribution ``softmax(logits)``
    (Kool, van Hoof & Welling, 2019).

    Parameters
    ----------
    logits : array
    k : int
        ``0 <= k <= logits.shape[axis]``.
    rng : numpy.random.Generator, optional
        Noise source; default ``numpy.random.default_rng()``.
    axis : int, default -1

    Returns
    -------
    array of int64
        The sampled indices, ``axis`` of length ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> idx = sa.gumbel_topk(np.zeros(10), 3, rng=np.random.default_rng(0))
    >>> len(set(idx.tolist()))
    3
    """
    xp, z, axis = _logits_along(logits, axis)
    k = check_int(k, "k")
    if not 0 <= k <= z.shape[axis]:
        raise ValueError(f"k must be in [0, {z.shape[axis]}] (the length of axis {axis} of logits), "
                         f"got {k}")
    _, indices = topk(z + _gumbel_noise(xp, z, rng), k, axis=axis)
    return indices


# ------------------------------------------------------------------ sampling

@declare(RowsToOne("logits"))
def sample(logits, *, temperature=1.0, top_k=None, top_p=None, min_p=None, rng=None):
    r"""One token per row drawn from ``softmax(logits / temperature)``,
    after the top-k, top-p (nucleus) and min-p filters of language-model
    decoding.

    The filters apply in the order of Hugging Face's ``generate`` and vLLM:
    ``top_k`` keeps the ``top_k`` largest logits (ties: the lower index);
    ``top_p`` keeps, of those, the fewest most probable tokens whose
    probability, renormalized over what ``top_k`` kept, sums to at least
    ``top_p`` (Holtzman et al., 2020); ``min_p`` keeps the tokens whose
    probability is at least ``min_p`` times the largest one's (Nguyen et
    al., 2024). The token is drawn from the survivors' renormalized
    probabilities by one uniform number per row, taken from ``rng`` in row
    order, and inverted over the survivors in vocabulary order: the same
    generator state gives the same tokens at any thread count.

    On NumPy arrays and CPU tensors the filters run on the compiled top-k
    and softmax kernels, without sorting the vocabulary: ``top_k`` sorts only
    its ``top_k`` candidates, ``top_p`` alone only as many as hold the
    probability mass it keeps.

    Parameters
    ----------
    logits : array, shape (..., vocabulary)
        Unnormalized log-probabilities over the last axis; ``-inf`` masks a
        token out. NaN, ``+inf`` and rows without a finite entry raise.
    temperature : float > 0, default 1
        Divides the logits; for greedy decoding take ``top_k=1``.
    top_k : int >= 1, optional
    top_p : float in (0, 1], optional
    min_p : float in [0, 1], optional
    rng : numpy.random.Generator, optional
        Source of the uniform numbers; default ``numpy.random.default_rng()``.

    Returns
    -------
    array of int64, shape logits.shape[:-1]
        The drawn token of each row, in the logits' array library.

    Examples
    --------
    >>> import numpy as np
    >>> import softarray as sa
    >>> logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]]))
    >>> sa.sample(logits, top_k=1)
    array([0, 3])
    >>> tokens = sa.sample(logits, top_p=0.7, rng=np.random.default_rng(0))
    >>> bool(tokens[0] in (0, 1) and tokens[1] in (2, 3))
    True
    """
    xp, z, _ = _logits_along(logits, -1, nonempty=True)
    check_temperature(temperature, "temperature")
    if top_k is not None:
        top_k = check_int(top_k, "top_k")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
    if top_p is not None:
        top_p = check_real(top_p, "top_p", low=0.0, high=1.0, low_open=True)
    if min_p is not None:
        min_p = check_real(min_p, "min_p", low=0.0, high=1.0)
    rng = _check_rng(rng)
    if is_traced(z):
        raise TypeError("sample draws its uniform numbers from a NumPy generator, which jax.jit "
                        "would run once and bake into the compiled function: call sample outside "
                        "jit (eager JAX arrays run the compiled kernels), or use "
                        "jax.random.categorical inside")
    rows = math.prod(z.shape[:-1])
    a, _ = _dispatch.kernel_operand(z)
    if a is not None and top_k is not None:
        # The candidates' first value is the row's maximum (NaN ranks first):
        # the check needs no pass of its own.
        a = np.ascontiguousarray(a).reshape(rows, z.shape[-1])     # rows may be 0
        k = min(top_k, a.shape[1])
        values, indices = _small_topk(a, k, -1, True, True) or topk(a, k)
        if not np.isfinite(values[:, 0]).all():
            _check_sample_maxima(np, values[:, 0])
        tokens = _kernels.draw_from_candidates(values, indices, _uniforms(rng, rows), float(temperature),
                                               math.inf if top_p is None else top_p, min_p or 0.0,
                                               np.empty(0))
        return _dispatch.to_caller(xp, tokens.reshape(z.shape[:-1]), z)
    _check_sample_maxima(xp, xp.max(z, axis=-1))
    u = _uniforms(rng, rows)
    if a is None:
        return _portable.sample(xp, z, u, float(temperature), top_k, top_p, min_p)
    rows = np.ascontiguousarray(a).reshape(rows, z.shape[-1])
    if top_p is None:
        tokens = _sample_whole_rows(rows, u, float(temperature), min_p)
    else:
        values, indices, mass = _nucleus_candidates(rows, float(temperature), top_p)
        tokens = _kernels.draw_from_candidates(values, indices, u, float(temperature), top_p,
                                               min_p or 0.0, mass)
    return _dispatch.to_caller(xp, tokens.reshape(z.shape[:-1]), z)


def _check_sample_maxima(xp, largest):
    """Raises for rows whose maximum shows a NaN, a +inf or no finite entry."""
    if known_any(xp, xp.isnan(largest) | (largest == math.inf)):
        raise ValueError("logits contains NaN or +inf")
    if known_any(xp, largest == -math.inf):
        raise ValueError("logits has a row without a finite entry: no token can be drawn")


def _uniforms(rng, rows):
    """One uniform number per row, in row order, drawn once the logits passed."""
    return (np.random.default_rng() if rng is None else rng).random(rows)


def _sample_whole_rows(rows, u, temperature, min_p):
    """Tokens of (rows, n) logits with no top_k or top_p: the softmax of the
    whole row, min_p's cut, the two-level inversion."""
    weights = softmax(rows, temperature=temperature)
    if min_p:
        weights = np.where(weights >= min_p * weights.max(axis=1, keepdims=True), weights, 0)
    return _invert_blocks(weights, u)


def _nucleus_candidates(rows, temperature, top_p):
    """(values, indices, mass): the largest logits of each row in decreasing
    order, as many as hold ``top_p`` of the row's probability mass (four
    times as many each round until every row's do), and the row's whole mass
    relative to its largest entry's probability."""
    n = rows.shape[1]
    scaled = rows if temperature == 1.0 else rows / np.asarray(temperature, rows.dtype)
    log_mass = logsumexp(scaled, axis=1).astype(np.float64)
    k = min(n, 64)
    while True:
        values, indices = topk(rows, k)
        mass = np.exp(log_mass - values[:, 0].astype(np.float64) / temperature)
        weights = np.exp((values.astype(np.float64) - values[:, :1]) / temperature)
        if k == n or np.all(weights.sum(axis=1) >= top_p * mass):
            return values, indices, mass
        k = min(n, 4 * k)


def _invert(weights, u):
    """Per row, the position where the running sum of ``weights`` (float64,
    in order) first exceeds u times their total: a draw proportional to the
    weights. The target stays below the total, so a zero weight is never
    drawn."""
    running = np.cumsum(weights, axis=1)
    total = running[:, -1:]
    target = np.minimum(u[:, None] * total, np.nextafter(total, 0))
    return np.minimum((running <= target).sum(axis=1), weights.shape[1] - 1)


# The block length of the two-level inversion over whole rows.
_INVERSION_BLOCK = 1024


def _invert_blocks(weights, u):
    """_invert over whole vocabulary rows without their full running sum:
    the sums of blocks locate the block, a running sum inside it the token."""
    rows, n = weights.shape
    blocks = -(-n // _INVERSION_BLOCK)
    padded = np.zeros((rows, blocks * _INVERSION_BLOCK), weights.dtype)
    padded[:, :n] = weights
    padded = padded.reshape(rows, blocks, _INVERSION_BLOCK)
    sums = padded.sum(axis=2, dtype=np.float64)
    block = _invert(sums, u)
    before = np.take_along_axis(np.cumsum(sums, axis=1) - sums, block[:, None], axis=1)[:, 0]
    chosen = padded[np.arange(rows), block].astype(np.float64)
    # The uniform that lands in the chosen block, rescaled to it.
    inside = np.clip((u * sums.sum(axis=1) - before) / np.take_along_axis(sums, block[:, None], axis=1)[:, 0],
                     0.0, 1.0)
    return block * _INVERSION_BLOCK + _invert(chosen, inside)
