"""What each public function declares beside itself for the adapters.

softarray is built in layers (docs/architecture.md): the compiled kernels
at the bottom, the families (``_softmax``, ``_losses``, ...) in the middle,
and on top the adapters, which run a public function on another engine's
arrays (``softarray._adapters``: Dask, PyTorch autograd, JAX). A family never imports an
adapter and an adapter never reads a family's private names: between them
stand the declarations of this module.

``@declare(split, gradient=rule)`` records, on the public function, how
its work splits over blocks of its input (``public.declaration.split``):
one of the split kinds below, or a function of the call's arguments that
returns one (where the split depends on an option, as ``kl_div``'s does);
and its gradient rule (``public.declaration.gradient``, None for functions
without one): one of the gradient kinds at the end, or a function of the
call's arguments that returns one or None (where only some options are
differentiable, as ``topk_gating``'s). Each adapter
registers, at its import, a claim (given the declaration, does this call's
argument list hold arrays of my engine?) and a route (run the call on my
engine); the decorated function asks the registered claims first and
otherwise runs itself. A claim is made by an argument of the adapter's
engine, never by a NumPy array or a Python scalar or string: a call whose
arguments are all such values asks no claim (most calls; a small call
would otherwise spend a third of its time asking). This module imports
nothing of softarray's: it sits at the base.
"""
import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable

import numpy as np

# (claim, route) pairs of the registered adapters, in the order registered.
_ADAPTERS = []

# The argument types no adapter claims a call by (register_adapter).
_UNCLAIMED_TYPES = frozenset({np.ndarray, int, float, bool, str, type(None)})


def register_adapter(claims, route):
    """Send every call for which ``claims(declaration, args, kwargs)`` is
    true to ``route(declaration, arguments)`` (arguments: the call bound to
    the public function's signature, defaults applied). A claim must be
    false for a call whose arguments are all of ``_UNCLAIMED_TYPES`` or
    torch tensors that do not require grad, which is never asked."""
    _ADAPTERS.append((claims, route))


def has_argument_of_type(args, kwargs, array_type):
    """Whether an argument is an ``array_type`` (an adapter's claim).
    Loops, not any(): claims run on every call holding such an array."""
    for value in args:
        if isinstance(value, array_type):
            return True
    for value in kwargs.values():
        if isinstance(value, array_type):
            return True
    return False


def _unclaimed_tensor(value):
    """Whether value is a torch.Tensor that does not require grad: torch's
    autograd adapter claims only tensors that do, so a small call on such
    tensors asks no claim."""
    return type(value) is getattr(sys.modules.get("torch"), "Tensor", None) and not value.requires_grad


@dataclasses.dataclass(frozen=True)
class Declaration:
    """A public function, how its work splits over blocks and its
    gradient rule (None: not differentiable)."""
    public: Callable
    split: object
    gradient: object = None

    def blocks_for(self, arguments):
        """The split of this call (``arguments``: name -> value)."""
        return self.split(arguments) if callable(self.split) else self.split

    def gradient_for(self, arguments):
        """The gradient rule of this call, None where it has none."""
        return self.gradient(arguments) if callable(self.gradient) else self.gradient

    def bind(self, args, kwargs):
        bound = _signature(self.public).bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def call_unadapted(self, arguments):
        """The function on ``arguments`` (as ``bind`` makes them) without
        asking the adapters: the family's own path for their arrays (the
        portable implementation for JAX tracers)."""
        return call_with(self.public.__wrapped__, arguments)


def call_with(public, arguments):
    """``public(**arguments)``, positional-only parameters passed by position
    (``arguments`` as ``Declaration.bind`` makes them)."""
    bound = inspect.BoundArguments(_signature(public), arguments)
    return public(*bound.args, **bound.kwargs)


@functools.cache
def _signature(func):
    """inspect.signature, once per function (an adapter's every call binds)."""
    return inspect.signature(func)


def declare(split, *, gradient=None):
    """Decorate a public function with its split and gradient rule (see the
    module's text)."""
    def decorate(func):
        public = functools.update_wrapper(_checking_wrapper(func), func)
        public.declaration = Declaration(public, split, gradient)
        public.__globals__["_declaration"] = public.declaration
        return public

    return decorate


def _checking_wrapper(func):
    """A function of func's own signature that calls func when every
    argument is of ``_UNCLAIMED_TYPES`` (most calls: NumPy arrays, Python
    scalars) or a tensor that ``_unclaimed_tensor`` lets through, and hands
    the call to ``_route`` otherwise. It is generated from
    the signature, as ``dataclasses`` generates ``__init__``: a
    ``(*args, **kwargs)`` wrapper spent 200 ns packing and unpacking them,
    a sixth of a small call."""
    namespace = {"_func": func, "_route": _route, "_plain": _UNCLAIMED_TYPES, "_tensor": _unclaimed_tensor}
    parameters = list(inspect.signature(func).parameters.values())
    params, positional, keywords, defaults = [], [], [], set()
    for i, p in enumerate(parameters):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"declare: {func.__name__} must name its parameters, not take *{p.name}")
        if p.kind is p.KEYWORD_ONLY and "*" not in params:
            params.append("*")
        if p.default is p.empty:
            params.append(p.name)
        else:
            defaults.add(p.name)
            namespace[f"_default_{p.name}"] = p.default
            params.append(f"{p.name}=_default_{p.name}")
        if p.kind is not p.POSITIONAL_ONLY:
            keywords.append(p.name)
            continue
        positional.append(p.name)
        if i + 1 == len(parameters) or parameters[i + 1].kind is not p.POSITIONAL_ONLY:
            params.append("/")
    names = positional + keywords
    source = (f"def {func.__name__}({', '.join(params)}):\n"
              f"    if {' and '.join(_unclaimed_test(n, n in defaults) for n in names)}:\n"
              f"        return _func({', '.join(positional + [f'{n}={n}' for n in keywords])})\n"
              f"    return _route(_declaration, _func, ({''.join(n + ', ' for n in positional)}), "
              f"{{{', '.join(f'{n!r}: {n}' for n in keywords)}}})\n")
    exec(source, namespace)     # noqa: S102 (the text is built above from a signature, not from input)
    return namespace[func.__name__]


def _unclaimed_test(name, has_default):
    """The wrapper's test that argument `name` is one no adapter claims. A
    parameter left at its default passes by identity first, which skips the
    type lookup (a fifth of the wrapper's time): no default is a type an
    adapter claims."""
    test = f"type({name}) in _plain or _tensor({name})"
    return f"({name} is _default_{name} or {test})" if has_default else f"({test})"


def _route(declaration, func, args, kwargs):
    """A call with an argument that an adapter may claim: the first adapter
    that claims it runs it, else the function itself."""
    for claims, route in _ADAPTERS:
        if claims(declaration, args, kwargs):
            return route(declaration, declaration.bind(args, kwargs))
    return func(*args, **kwargs)


# ---------------------------------------------------------------- split kinds
# Each names what an adapter must know and nothing of how a family computes.

@dataclasses.dataclass(frozen=True)
class AlongAxes:
    """Same shape out, each output entry computed from the entries along
    the ``axis`` argument (softmax): blocks whole along those axes are
    independent. An ``rng`` argument draws independent noise per block; a
    ``where`` mask follows the input's blocks."""
    array: str


@dataclasses.dataclass(frozen=True)
class TopKAlongAxis:
    """The ``k`` entries chosen along the ``axis`` argument (topk): blocks
    whole along that axis are independent; the axis becomes ``k`` long."""
    array: str


@dataclasses.dataclass(frozen=True)
class RowsToOne:
    """One result per slice along the last axis of ``array`` (a token drawn
    from each row: sample): blocks whole along that axis are independent and
    the result drops it; an ``rng`` argument draws independent numbers per
    block."""
    array: str


@dataclasses.dataclass(frozen=True)
class LogSumExpReduction:
    """A log-sum-exp over the ``axis`` argument, with optional ``b`` scale
    factors, ``where`` mask, ``keepdims`` and ``return_sign``: partial
    results of blocks along the reduced axes combine by another call on the
    partials (``b`` = their signs)."""


@dataclasses.dataclass(frozen=True)
class LossOverSamples:
    """A loss whose samples are independent.

    first: the name of the scores argument. class_weight: the name of a
    per-class weight argument (whole in every block), or None.
    elementwise: every entry is a sample (no class axis); else the class
    axis is the ``axis`` argument, whole in every block. mean_over: what a
    "mean" reduction divides by: "kept" (the per-block shares that
    ``kept_share(arguments)`` returns, summed: kept samples, or their class
    weights), "samples" (every sample), "elements" (every entry), "batch"
    (the first axis' length). pointwise: reduction "none" gives one loss
    per entry, not per sample. ``target`` holds class indices (one per
    sample) or, with a floating dtype, one entry per score.
    """
    first: str
    mean_over: str
    class_weight: str = None
    elementwise: bool = False
    pointwise: bool = False
    kept_share: Callable = None


@dataclasses.dataclass(frozen=True)
class RowsOfLinearLoss:
    """A loss over rows of ``embeddings`` times the whole ``classifier``
    (and ``bias``): row blocks are independent; the classifier's and bias'
    gradients are sums over row blocks. kept_rows(arguments): the rows a
    "mean" counts; grad_scale(reduction, kept): a "sum" or "mean" gradient's
    factor on a row's own gradient."""
    kept_rows: Callable
    grad_scale: Callable


@dataclasses.dataclass(frozen=True)
class TokensWithSlots:
    """A router over tokens (rows of ``router_logits``; experts whole):
    token blocks are independent, except the slots each expert gives out in
    order of arrival up to ``capacity(capacity_factor, k, n_tokens,
    n_experts)``, and the auxiliary losses, which need every token."""
    capacity: Callable


@dataclasses.dataclass(frozen=True)
class BoxRows:
    """One result per box of ``boxes`` (coordinates whole): blocks of boxes
    are independent; keeps_coordinates: the result has the coordinate
    axis (box_convert), else it drops it (box_area)."""
    keeps_coordinates: bool


@dataclasses.dataclass(frozen=True)
class PairsOfBoxes:
    """One result per pair of ``boxes1`` and ``boxes2`` (box_iou): every
    pair of blocks is independent."""


@dataclasses.dataclass(frozen=True)
class PairedBoxRows:
    """One loss per pair of boxes at the same place in ``boxes1`` and
    ``boxes2`` (coordinates whole; the box IoU losses): blocks of pairs are
    independent; a "mean" divides the summed block losses by the number of
    pairs (0 for none), and the gradients of both arrays are per block."""


@dataclasses.dataclass(frozen=True)
class WholeInput:
    """A global computation (greedy NMS): one task over all of ``arrays``
    (the names of the array arguments), results of unknown length."""
    arrays: tuple


# ------------------------------------------------------------- gradient kinds
# What a reverse-mode adapter (autograd) needs to differentiate a call.

@dataclasses.dataclass(frozen=True)
class ReturnedGradient:
    """The function returns its own gradient with ``return_grad=True``:
    ``(value, grad)`` for one input, ``(value, (grad, ...))`` for several.

    inputs: the names of the arguments the gradients belong to, in the
    order returned (an argument that is None is absent from the tuple);
    every other array argument takes no gradient. none: how the gradient
    of a ``reduction="none"`` call (that of the sum of its losses) becomes
    a vector-Jacobian product: "samples" (one loss per sample along the
    ``axis`` argument, or the last axis for a function without one: scale
    each sample's slice by its cotangent),
    "entries" (one loss per input entry: scale entrywise), or None (the
    sum's gradient cannot be split: "none" is not differentiable); or a
    function of the call's arguments that returns one of these."""
    inputs: tuple
    none: object = "samples"

    def none_for(self, arguments):
        return self.none(arguments) if callable(self.none) else self.none


@dataclasses.dataclass(frozen=True)
class VectorJacobian:
    """The gradient is a vector-Jacobian product computed after the call.

    inputs: the names of the arguments that take a gradient (an argument
    that is None is skipped). vjp(arguments, saved, cotangent): the
    gradients of ``sum(result * cotangent)`` for ``inputs``, as a tuple in
    their order (None for an input that is None), on NumPy arrays: the
    arguments, what the forward saved (by default the call's result: a
    tuple where the function returns several arrays, whose
    non-differentiable members get a None cotangent) and the cotangent of
    each result. forward(arguments), optional: ``(result, saved)`` in place
    of the plain call, where the product needs what the result does not
    show (a straight-through estimator's soft sample)."""
    inputs: tuple
    vjp: Callable
    forward: Callable = None
