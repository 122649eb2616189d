"""The Dask route: every public function, given a ``dask.array``, returns a
lazy ``dask.array`` whose blocks are computed by the same public function
on NumPy blocks, so the compiled kernels run inside the workers.

An adapter (docs/architecture.md): at import it registers with
``softarray._declare`` a claim (does a call's argument list hold a Dask
array? a dictionary look-up and a scan of the arguments: Dask need not even
be imported) and a route. A claimed call arrives bound to the public
function's signature, with the function's declaration; the rule for the
kind of its split (``_RULES``; the splits are defined in ``_declare``)

1. validates the arguments at call time by running the public function
   itself on small NumPy stand-ins (zeros of the arguments' dtypes, with the
   lengths the checks compare kept or mapped so that equal lengths stay
   equal and different ones different; see ``_probe_sizes``), so errors are
   the NumPy route's errors, raised before anything is computed; a failing
   check is run once more on zero-stride stand-ins of the real shapes, so
   that its message names them;
2. rechunks only what it must (the axes a result is computed along), and
3. maps the public function over the blocks with ``dask.array.blockwise``,
   combining per-block partial results lazily where a result couples
   blocks (log-sum-exp over split axes, loss sums and means, classifier
   gradients, expert slots under a capacity).

docs/dask.md describes each function's rule and what it guarantees.
"""
import copy
import functools
import math
import numbers
import string
import sys

import numpy as np

from .._declare import (
    AlongAxes,
    BoxRows,
    LogSumExpReduction,
    LossOverSamples,
    PairedBoxRows,
    PairsOfBoxes,
    RowsOfLinearLoss,
    RowsToOne,
    TokensWithSlots,
    TopKAlongAxis,
    WholeInput,
    call_with as _call,
    has_argument_of_type,
    register_adapter,
)
from .._reduction import grad_scale, reduce_losses
from .._validate import is_python_scalar, normalize_axes


def _route(declaration, arguments):
    """The lazy Dask result of a call that holds a Dask array."""
    split = declaration.blocks_for(arguments)
    return _RULES[type(split)](declaration.public, split, arguments)


def _any_dask_array(declaration, args, kwargs):
    # No Dask array exists before dask.array defines its class (it may be
    # in the middle of being imported, by another thread).
    array_type = getattr(sys.modules.get("dask.array"), "Array", None)
    return array_type is not None and has_argument_of_type(args, kwargs, array_type)


def _da():
    import dask.array
    return dask.array


# ---------------------------------------------------------------- calling

def _apply(public, fixed, names, *blocks):
    """The task of one block: the public function on NumPy blocks.

    An ``rng`` block is a one-element object array holding that block's
    generator; the task draws from a copy, so that the graph's generator
    stays as it was and every compute of the graph draws the same noise."""
    arguments = dict(fixed, **dict(zip(names, blocks)))
    if "rng" in names:
        arguments["rng"] = copy.deepcopy(arguments["rng"].item())
    return _call(public, arguments)


def _graph(task, arguments, inputs, out_ind, meta, **options):
    """dask.array.blockwise of ``task(fixed, names, *blocks)``.

    inputs: (name, dask array, index) of the arguments that vary by block;
    the other arguments are fixed. Indices not in ``out_ind`` must be whole
    (one chunk): their blocks arrive concatenated."""
    names = tuple(name for name, _, _ in inputs)
    fixed = {k: v for k, v in arguments.items() if k not in names}
    pairs = [item for _, array, ind in inputs for item in (array, ind)]
    return _da().blockwise(functools.partial(task, fixed, names), out_ind, *pairs,
                           dtype=meta.dtype, meta=meta, concatenate=True, **options)


def _blockwise(public, arguments, inputs, out_ind, meta, **options):
    """The public function over blocks (see _graph), one array out."""
    return _graph(functools.partial(_apply, public), arguments, inputs, out_ind, meta, **options)


def _tuples(task, arguments, inputs, out_ind, **options):
    """_graph of a task that returns several results: the blocks of the
    Dask array hold the tuples; ``_part`` takes them apart."""
    meta = np.empty((0,) * len(out_ind), object)
    return _graph(task, arguments, inputs, out_ind, meta, **options)


def _part(tuples, getter, out_ind, tuples_ind, dtype, **options):
    """The array made of ``getter(t)`` for the tuple ``t`` of each block."""
    meta = np.empty((0,) * len(out_ind), dtype)
    return _da().blockwise(getter, out_ind, tuples, tuples_ind, dtype=meta.dtype, meta=meta,
                           **options)


def _pick(path, value):
    """value[path[0]][path[1]]...: one result of a block's tuple."""
    for i in path:
        value = value[i]
    return value


def _scalar_block(ndim, i, value):
    """The number value[i] (a block's partial) as a float64 array of one element."""
    return np.full((1,) * ndim, float(value[i]), dtype=np.float64)


def _partials(tuples, tuples_ind, i):
    """Entry i of the blocks' tuples (numbers) as a float64 array of one
    entry per block."""
    ones = {ind: 1 for ind in tuples_ind}
    return _part(tuples, functools.partial(_scalar_block, len(tuples_ind), i), tuples_ind,
                 tuples_ind, np.float64, adjust_chunks=ones)


def _letters(n):
    """Blockwise index letters of an array of n dimensions."""
    return string.ascii_letters[:n]


def _as_dask(value):
    return None if value is None else _da().asarray(value)


def _like(value, x):
    """value (an array or array-like broadcasting to x's shape) as a Dask
    array of x's shape and chunks."""
    return _da().broadcast_to(_as_dask(value), x.shape).rechunk(x.chunks)


def _whole(array, axes):
    """array with each of ``axes`` in one chunk (the only rechunking done)."""
    if all(len(array.chunks[ax]) == 1 for ax in axes):
        return array
    return array.rechunk({ax: -1 for ax in axes})


def _block_generators(rng, numblocks):
    """One independent generator per block, ``rng.spawn`` in C order of
    the blocks, as a Dask object array of one element per block."""
    rng = np.random.default_rng() if rng is None else rng
    children = np.empty(math.prod(numblocks), object)
    children[:] = rng.spawn(children.size)
    return _da().from_array(children.reshape(numblocks), chunks=1)


def _with_generators(inputs, arguments, array, ind):
    """inputs plus the per-block generators aligned with ``array``'s blocks."""
    gens = _block_generators(arguments["rng"], array.numblocks)
    return inputs + [("rng", gens, ind)], {i: c for i, c in zip(ind, array.chunks)}


# ---------------------------------------------------------------- validation

def _host_like(value):
    """An array with shape and dtype (Dask or NumPy), or value unchanged."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return value
    try:
        return np.asarray(value)
    except Exception:       # the probe raises the function's own TypeError
        return value


def _probe_sizes(arrays, kept):
    """Small lengths standing in for the lengths of the axes not kept.

    Equal lengths map to equal ones, 0 and 1 to themselves, the others to
    distinct small numbers that equal no kept length: every check that
    compares lengths (broadcasting, a target's shape against the logits')
    gives on the stand-ins the verdict it gives on the real arrays. Unknown
    lengths (Dask's NaN) are all taken as one length."""
    kept_sizes = {a.shape[ax] for name, a in arrays.items() for ax in kept[name]}
    free = {a.shape[ax] for name, a in arrays.items() for ax in range(a.ndim)
            if ax not in kept[name]}
    free = sorted(n for n in free if math.isfinite(n)) + [math.nan] * any(
        not math.isfinite(n) for n in free)
    mapping, fresh = {}, 2
    for size in free:
        if size <= 1:
            mapping[size] = size
            continue
        while fresh in kept_sizes:
            fresh += 1
        mapping[size] = fresh
        fresh += 1
    return mapping


def _stand_in(array, shape):
    """Zeros of array's dtype, read-only and with no memory behind them."""
    return np.broadcast_to(np.zeros((), array.dtype), shape)


def _kept_axes(axes, ndim):
    """axes (ints, possibly negative, or None) as non-negative axes of an
    array of ndim dimensions; the invalid ones are left out (the probe
    reports them)."""
    if axes is None:
        return ()
    return tuple(ax % ndim for ax in axes
                 if isinstance(ax, numbers.Integral) and ndim and -ndim <= ax < ndim)


def _validate(public, arguments, kept):
    """Run the public function on NumPy stand-ins of the array arguments
    named in ``kept`` ({name: axes whose real length the checks need}) and
    return its result (dtypes and structure of the real result).

    NumPy arguments with only kept axes (per-class weights) are passed as
    they are, so their values are checked too. A seeded generator is not
    passed on: validation must not advance it."""
    arrays = {}
    for name in kept:
        if arguments[name] is not None:
            value = _host_like(arguments[name])
            if isinstance(value, np.ndarray) or _any_dask_array(None, (value,), {}):
                arrays[name] = value
    kept = {name: _kept_axes(kept[name], arrays[name].ndim) for name in arrays}
    sizes = _probe_sizes(arrays, kept)
    probe = dict(arguments)
    for name, a in arrays.items():
        if isinstance(a, np.ndarray) and len(kept[name]) == a.ndim:
            continue    # a NumPy argument of kept axes only (class weights): checked as it is
        shape = tuple(n if ax in kept[name] else sizes[n if math.isfinite(n) else math.nan]
                      for ax, n in enumerate(a.shape))
        probe[name] = _stand_in(a, shape)
    if isinstance(probe.get("rng"), np.random.Generator):
        probe["rng"] = np.random.default_rng(0)
    try:
        return _call(public, probe)
    except (TypeError, ValueError) as exc:
        error = exc
    # The same check on the real shapes, so that the message names them; it
    # fails before any data is read (stand-ins have no memory behind them).
    # Unknown lengths (NaN, after boolean indexing) have no stand-in.
    if all(math.isfinite(n) for a in arrays.values() for n in a.shape):
        probe.update({name: _stand_in(a, a.shape) for name, a in arrays.items()})
        _call(public, probe)
    raise error


def _meta(value):
    return np.empty((0,) * np.ndim(value), np.asarray(value).dtype)


# ---------------------------------------------------------------- softmax family

def _along_axes(public, arguments, name, kept_axis=False):
    """Validate; return (x as Dask with its ``axis`` whole, the normalized
    axes, the validation's result, x's index)."""
    x = _as_dask(arguments[name])
    axis = arguments["axis"]
    kept_axes = (axis,) if kept_axis and not isinstance(axis, (tuple, list)) else ()
    kept = {name: kept_axes}
    if arguments.get("where") is not None:
        kept["where"] = ()
    result = _validate(public, arguments, kept)
    axes = normalize_axes(axis, x.ndim)
    x = _whole(x, axes)
    return x, axes, result, _letters(x.ndim)


def _normalize_rule(public, split, arguments):
    """Along axes, same shape out (softmax, log_softmax, stablemax,
    log_stablemax, dense_to_sparse_gating, gumbel_softmax): the axes are
    rechunked to one chunk, every block is one call."""
    name = split.array
    x, axes, result, ind = _along_axes(public, arguments, name)
    inputs = [(name, x, ind)]
    options = {}
    if arguments.get("where") is not None:
        inputs.append(("where", _like(arguments["where"], x), ind))
    if "rng" in arguments:
        inputs, adjust = _with_generators(inputs, arguments, x, ind)
        options = {"align_arrays": False, "adjust_chunks": adjust}
    return _blockwise(public, arguments, inputs, ind, _meta(result), **options)


def _topk_rule(public, split, arguments):
    """topk and gumbel_topk: the axis in one chunk, k entries of it out."""
    name = split.array
    x, (axis,), result, ind = _along_axes(public, arguments, name, kept_axis=True)
    k = arguments["k"]
    inputs = [(name, x, ind)]
    options = {"adjust_chunks": {ind[axis]: k}}
    if "rng" in arguments:
        inputs, adjust = _with_generators(inputs, arguments, x, ind)
        options = {"align_arrays": False, "adjust_chunks": dict(adjust, **{ind[axis]: k})}
    if not isinstance(result, tuple):
        return _blockwise(public, arguments, inputs, ind, _meta(result), **options)
    tuples = _tuples(functools.partial(_apply, public), arguments, inputs, ind, **options)
    return tuple(_part(tuples, functools.partial(_pick, (i,)), ind, ind, part.dtype)
                 for i, part in enumerate(result))


def _rows_to_one_rule(public, split, arguments):
    """sample: the last axis in one chunk, one result per row out (the axis
    dropped); each block draws from a generator of its own."""
    name = split.array
    x = _as_dask(arguments[name])
    last = x.ndim - 1
    result = _validate(public, arguments, {name: (last,)})
    x = _whole(x, (last,))
    ind = _letters(x.ndim)
    inputs, adjust = _with_generators([(name, x, ind)], arguments, x, ind)
    del adjust[ind[last]]
    return _blockwise(public, arguments, inputs, ind[:last], _meta(result), align_arrays=False,
                      adjust_chunks=adjust)


def _logsumexp_rule(public, split, arguments):
    """logsumexp: one call per block when the reduced axes are whole;
    otherwise each block gives a partial (log|sum|, sign) and a second call
    combines them (``b`` = the partial signs when ``b`` was given)."""
    kept = {name: () for name in ("x", "b", "where") if arguments[name] is not None}
    result = _validate(public, arguments, kept)
    dtype = np.asarray(result[0] if isinstance(result, tuple) else result).dtype
    da = _da()
    x = _as_dask(_weakly_promoted(arguments["x"], dtype))
    b = _as_dask(_weakly_promoted(arguments["b"], dtype))
    if b is not None:
        x, b = da.broadcast_arrays(x, b)
        b = b.rechunk(x.chunks)
    axes = normalize_axes(arguments["axis"], x.ndim)
    where = arguments["where"]
    if where is not None:
        where = _like(where, x)
    if any(len(x.chunks[ax]) > 1 for ax in axes):
        partial = dict(arguments, keepdims=True, return_sign=True)
        lse, sign = _logsumexp_blocks(public, partial, x, b, where, axes, dtype)
        arguments = dict(arguments, where=None)
        x, b, where = _whole(lse, axes), None if b is None else _whole(sign, axes), None
    out = _logsumexp_blocks(public, arguments, x, b, where, axes, dtype)
    return out if arguments["return_sign"] else out[0]


def _weakly_promoted(value, dtype):
    """value, or a Python scalar as a 0-d array of dtype, the result's: the
    scalar promoted weakly to give dtype, and as a Dask array of its own
    float64 or int64 it would promote as an array."""
    return np.asarray(value, dtype) if is_python_scalar(value) else value


def _logsumexp_blocks(public, arguments, x, b, where, axes, dtype):
    """(log-sum-exp, sign) of every block over whole axes: ``arguments``'
    keepdims and return_sign apply (sign is None without return_sign)."""
    ind = _letters(x.ndim)
    inputs = [("x", x, ind)] + [(name, a, ind) for name, a in (("b", b), ("where", where))
                                if a is not None]
    if arguments["keepdims"]:
        out_ind, options = ind, {"adjust_chunks": {ind[ax]: 1 for ax in axes}}
    else:
        out_ind, options = "".join(c for ax, c in enumerate(ind) if ax not in axes), {}
    if not arguments["return_sign"]:
        meta = np.empty((0,) * len(out_ind), dtype)
        return _blockwise(public, arguments, inputs, out_ind, meta, **options), None
    tuples = _tuples(functools.partial(_apply, public), arguments, inputs, out_ind, **options)
    return tuple(_part(tuples, functools.partial(_pick, (i,)), out_ind, out_ind, dtype)
                 for i in range(2))


# ---------------------------------------------------------------- losses

def _loss_rule(public, split, arguments):
    """Samples (every axis but the class axis) are blocked; the class axis
    is whole. "none": per-block losses; "sum"/"mean": per-block sums (and
    mean denominators) added up lazily, the gradient of each block's sum
    scaled lazily by the global mean's factor."""
    first, class_weight, elementwise = split.first, split.class_weight, split.elementwise
    class_axis = None if elementwise else arguments["axis"]
    result = _validate(public, arguments,
                       _loss_kept(arguments, first, class_axis, class_weight, elementwise))
    dtype = np.asarray(result[0] if arguments["return_grad"] else result).dtype

    x = _as_dask(arguments[first])
    ind = _letters(x.ndim)
    axis = None if elementwise else normalize_axes(class_axis, x.ndim)[0]
    x = x if axis is None else _whole(x, (axis,))
    samples = ind if axis is None else ind[:axis] + ind[axis + 1:]
    inputs = [(first, x, ind)]
    target = _as_dask(arguments.get("target"))
    index_target = (not elementwise and target is not None
                    and np.issubdtype(target.dtype, np.integer))
    if target is not None:      # class indices: one per sample; else the logits' shape
        t_ind = samples if index_target else ind
        t_chunks = tuple(x.chunks[ind.index(c)] for c in t_ind)
        inputs.append(("target", target.rechunk(t_chunks), t_ind))
    for name in ("weight", "pos_weight") if elementwise else ():
        if arguments.get(name) is not None:
            inputs.append((name, _like(arguments[name], x), ind))
    if class_weight is not None and arguments[class_weight] is not None:
        # "Z": an index of its own (the classes, whole), unused by the logits'
        inputs.append((class_weight, _whole(_as_dask(arguments[class_weight]), (0,)), "Z"))
    # With probability targets every sample counts.
    mean_over = "samples" if split.mean_over == "kept" and not index_target else split.mean_over
    return _loss_graph(public, split, arguments, inputs, x, axis, ind, samples, dtype, mean_over)


def _loss_kept(arguments, first, class_axis, class_weight, elementwise):
    """The validation's kept axes: the class axis of the logits (and of
    probability targets) and of per-class weights."""
    kept = {first: () if class_axis is None else (class_axis,)}
    if arguments.get("target") is not None:
        probabilities = class_axis is not None and _is_probability_target(arguments["target"])
        kept["target"] = (class_axis,) if probabilities else ()
    for name in ("weight", "pos_weight") if elementwise else ():
        if arguments.get(name) is not None:
            kept[name] = ()
    if class_weight is not None:
        kept[class_weight] = (0,)
    return kept


def _is_probability_target(target):
    target = _host_like(target)
    return hasattr(target, "dtype") and np.issubdtype(target.dtype, np.floating)


def _loss_graph(public, split, arguments, inputs, x, axis, ind, samples, dtype, mean_over):
    reduction, return_grad = arguments["reduction"], arguments["return_grad"]
    task_arguments = dict(arguments, reduction="none" if reduction == "none" else "sum")
    kept_share = split.kept_share if mean_over == "kept" else None
    per_block = functools.partial(_loss_task, public, reduction, kept_share)
    tuples = _tuples(per_block, task_arguments, inputs, samples)
    grad_options = {"new_axes": {} if axis is None else {ind[axis]: x.shape[axis]}}
    if reduction == "none":
        pointwise = split.pointwise
        loss = _part(tuples, functools.partial(_pick, (0,)), ind if pointwise else samples,
                     samples, dtype, **(grad_options if pointwise else {}))
        if not return_grad:
            return loss
        return loss, _part(tuples, functools.partial(_pick, (1,)), ind, samples, dtype,
                           **grad_options)
    total = _partials(tuples, samples, 0).sum()
    if kept_share is not None:
        count = _partials(tuples, samples, 2).sum()
    else:
        count = _static_denominator(mean_over, x, axis)
    loss = _scalar_graph(_reduced_loss, reduction, dtype, total, count)
    if not return_grad:
        return loss
    count_pair = (count, "") if hasattr(count, "dask") else (count, None)
    grad = _da().blockwise(functools.partial(_scaled_grad, reduction), ind, tuples, samples,
                           *count_pair, dtype=dtype, meta=np.empty((0,) * len(ind), dtype),
                           **grad_options)
    return loss, grad


def _loss_task(public, reduction, kept_share, fixed, names, *blocks):
    """(loss, grad, the block's share of the mean's denominator, grad of
    the block's own mean or None) of one block.

    The last is computed only for a mean over a block whose share is 0: if
    every share is 0, the global mean's gradient is each block's own (the
    NumPy route's 0 on ignored samples and NaN elsewhere)."""
    arguments = dict(fixed, **dict(zip(names, blocks)))
    result = _call(public, arguments)
    loss, grad = result if arguments["return_grad"] else (result, None)
    count, own_mean_grad = 0.0, None
    if kept_share is not None:
        count = kept_share(arguments)
        if reduction == "mean" and count == 0 and arguments["return_grad"]:
            own_mean_grad = _call(public, dict(arguments, reduction="mean"))[1]
    return loss, grad, count, own_mean_grad


def _scaled_grad(reduction, block, count):
    """The gradient of the global sum or mean from a block's tuple."""
    count = float(count)
    if reduction == "mean" and count == 0 and block[3] is not None:
        return block[3]
    grad = block[1]
    return grad * np.asarray(grad_scale(reduction, count), grad.dtype)


def _static_denominator(kind, x, axis):
    if kind == "elements":
        return float(x.size)
    if kind == "batch":
        return float(x.shape[0] if x.ndim else 1)
    return float(x.size // x.shape[axis]) if axis is not None else float(x.size)


def _reduced_loss(reduction, total, count):
    return reduce_losses(np.asarray([total]), reduction if reduction == "sum" else "mean",
                         count, (), np.float64)


def _scalar_graph(func, reduction, dtype, *operands):
    """func(reduction, *operands) as a lazy 0-d array of dtype; operands are
    0-d Dask arrays or numbers."""
    pairs = [item for v in operands for item in ((v, "") if hasattr(v, "dask") else (v, None))]
    task = functools.partial(_scalar_task, func, reduction, dtype)
    return _da().blockwise(task, "", *pairs, dtype=dtype, meta=np.empty((), dtype))


def _scalar_task(func, reduction, dtype, *operands):
    return np.asarray(func(reduction, *(float(v) for v in operands)), dtype)


# ---------------------------------------------------------------- linear_cross_entropy

def _linear_cross_entropy_rule(public, split, arguments):
    """Rows of the embeddings (and targets) are blocked; the classifier and
    bias are one block each, read by every task. The classifier's and
    bias' gradients are sums over the row blocks."""
    kept = {name: () for name in ("embeddings", "classifier", "target", "bias")
            if arguments[name] is not None}
    result = _validate(public, arguments, kept)
    reduction, return_grad = arguments["reduction"], arguments["return_grad"]
    dtype = np.asarray(result[0] if return_grad else result).dtype
    emb = _whole(_as_dask(arguments["embeddings"]), (1,))
    cls = _as_dask(arguments["classifier"]).rechunk(-1)
    target = _as_dask(arguments["target"]).rechunk((emb.chunks[0],))
    inputs = [("embeddings", emb, "nd"), ("classifier", cls, "vd"), ("target", target, "n")]
    if arguments["bias"] is not None:
        inputs.append(("bias", _as_dask(arguments["bias"]).rechunk(-1), "v"))
    task_arguments = dict(arguments, reduction="none" if reduction == "none" else "sum")
    tuples = _tuples(functools.partial(_linear_cross_entropy_task, public, split), task_arguments,
                     inputs, "n")
    if reduction == "none":
        loss = _part(tuples, functools.partial(_pick, (0,)), "n", "n", dtype)
    else:
        n_valid = _partials(tuples, "n", 2).sum()
        loss = _scalar_graph(_reduced_loss, reduction, dtype, _partials(tuples, "n", 0).sum(),
                             n_valid)
    if not return_grad:
        return loss
    sizes = dict(zip("vd", cls.shape))
    grads = [_part(tuples, functools.partial(_pick, (1, 0)), "nd", "n", dtype,
                   new_axes={"d": sizes["d"]})]
    # The classifier's gradient (and the bias'), summed over the row blocks.
    for i, axes in enumerate(("vd", "v")[:len(result[1]) - 1], start=1):
        grads.append(_part(tuples, functools.partial(_summand, i), "n" + axes, "n", dtype,
                           adjust_chunks={"n": 1}, new_axes={c: sizes[c] for c in axes}
                           ).sum(axis=0))
    if reduction != "none":
        scale = _scalar_graph(split.grad_scale, reduction, dtype, n_valid)
        grads = [g * scale for g in grads]
    return loss, tuple(grads)


def _summand(i, t):
    """The i-th gradient of a block, with a leading axis of length one."""
    return t[1][i][np.newaxis]


def _linear_cross_entropy_task(public, split, fixed, names, *blocks):
    """(loss, grads, non-ignored rows) of one block of rows."""
    arguments = dict(fixed, **dict(zip(names, blocks)))
    result = _call(public, arguments)
    loss, grads = result if arguments["return_grad"] else (result, None)
    return loss, grads, split.kept_rows(arguments)


# ---------------------------------------------------------------- gating

def _topk_gating_rule(public, split, arguments):
    """Tokens are blocked, the experts axis whole. Slots under a capacity
    are combined exactly across blocks (``_global_slots``); the auxiliary
    losses need all tokens: with return_aux the tokens are one block."""
    result = _validate(public, arguments, {"router_logits": (1,)})
    z = _whole(_as_dask(arguments["router_logits"]), (1,))
    if arguments["return_aux"]:
        z = z.rechunk(-1)
    n_tokens, n_experts = z.shape
    inputs = [("router_logits", z, "te")]
    options = {}
    if arguments["noise_std"] > 0:
        inputs, adjust = _with_generators(inputs, arguments, z, "te")
        options = {"align_arrays": False, "adjust_chunks": {"t": adjust["t"]}}
    tuples = _tuples(functools.partial(_apply, public), arguments, inputs, "t", **options)
    k = arguments["k"]
    fields = {name: _part(tuples, functools.partial(_field, name), "tk", "t",
                          getattr(result, name).dtype, new_axes={"k": k})
              for name in ("weights", "indices")}
    if arguments["capacity_factor"] is not None:
        capacity = split.capacity(arguments["capacity_factor"], k, n_tokens, n_experts)
        positions = _global_slots(tuples, z.chunks[0], k, n_experts)
        fields.update(positions=positions, kept=positions < capacity, capacity=capacity)
    if result.aux is not None:
        fields["aux"] = {name: _aux_part(tuples, name, value, n_experts)
                         for name, value in result.aux.items()}
    return type(result)(**fields)


def _global_slots(tuples, token_chunks, k, n_experts):
    """The slots of all tokens from each block's own slots.

    Slots go in order of arrival, all first choices before any second
    choice. An assignment (token t of block b, choice j, expert e) has in
    its block slot ``#(choices < j to e in b) + #(earlier tokens of b with
    choice j to e)``; globally, the choices < j to e of all blocks and the
    choices j to e of blocks before b come first. So the global slot adds
    ``sum_{j' < j} (total - count_b)[j', e] + sum_{b' < b} count_b'[j, e]``,
    computed lazily from every block's counts per (choice, expert)."""
    counts = _part(tuples, functools.partial(_choice_counts, n_experts), "tke", "t", np.int64,
                   adjust_chunks={"t": 1}, new_axes={"k": k, "e": n_experts})
    others = counts.sum(axis=0, keepdims=True) - counts
    offset = (others.cumsum(axis=1) - others) + (counts.cumsum(axis=0) - counts)
    return _da().blockwise(_slots_with_offset, "tk", tuples, "t", offset, "tke",
                           align_arrays=False, adjust_chunks={"t": token_chunks},
                           dtype=np.int64, meta=np.empty((0, 0), np.int64), concatenate=True)


def _choice_counts(n_experts, t):
    """(1, k, experts): how many tokens of the block chose each expert as
    their j-th choice."""
    return np.stack([np.bincount(column, minlength=n_experts) for column in t.indices.T])[None]


def _slots_with_offset(t, offset):
    choice = np.arange(t.indices.shape[1])
    return t.positions + offset[0][choice, t.indices]


def _field(name, t):
    return getattr(t, name)


def _aux_entry(name, t):
    return np.asarray(t.aux[name])[np.newaxis]


def _aux_part(tuples, name, value, n_experts):
    """An aux entry of the one block, as a Dask array of its shape."""
    new_axes = {"e": n_experts} if np.ndim(value) else {}
    part = _part(tuples, functools.partial(_aux_entry, name), "t" + "e" * np.ndim(value), "t",
                 np.asarray(value).dtype, new_axes=new_axes)
    return part[0]


# ---------------------------------------------------------------- boxes

def _box_rule(public, split, arguments):
    """box_area, box_convert: the coordinates (last axis) whole, the boxes
    blocked."""
    result = _validate(public, arguments, {"boxes": (-1,)})
    boxes = _as_dask(arguments["boxes"])
    boxes = _whole(boxes, (boxes.ndim - 1,))
    ind = _letters(boxes.ndim)
    out_ind = ind if split.keeps_coordinates else ind[:-1]
    return _blockwise(public, arguments, [("boxes", boxes, ind)], out_ind, _meta(result))


def _box_iou_rule(public, split, arguments):
    """box_iou: blocks of boxes1 by blocks of boxes2."""
    result = _validate(public, arguments, {"boxes1": (1,), "boxes2": (1,)})
    boxes1 = _whole(_as_dask(arguments["boxes1"]), (1,))
    boxes2 = _whole(_as_dask(arguments["boxes2"]), (1,))
    inputs = [("boxes1", boxes1, "ic"), ("boxes2", boxes2, "jc")]
    return _blockwise(public, arguments, inputs, "ij", _meta(result))


def _paired_box_rule(public, split, arguments):
    """The box IoU losses: blocks of pairs (boxes2 chunked like boxes1), the
    coordinates whole. "none": per-block losses; "sum"/"mean": the blocks'
    sums added up lazily (a mean of no pairs is 0), the gradients of each
    block's sum scaled by the mean's factor."""
    result = _validate(public, arguments, {"boxes1": (-1,), "boxes2": (-1,)})
    reduction, return_grad = arguments["reduction"], arguments["return_grad"]
    dtype = np.asarray(result[0] if return_grad else result).dtype
    x = _as_dask(arguments["boxes1"])
    x = _whole(x, (x.ndim - 1,))
    y = _like(arguments["boxes2"], x)
    ind = _letters(x.ndim)
    pairs = ind[:-1]
    task_arguments = dict(arguments, reduction="none" if reduction == "none" else "sum")
    tuples = _tuples(functools.partial(_apply_as_tuple, public), task_arguments,
                     [("boxes1", x, ind), ("boxes2", y, ind)], pairs)
    count = float(math.prod(x.shape[:-1]))
    if reduction == "none":
        loss = _part(tuples, functools.partial(_pick, (0,)), pairs, pairs, dtype)
    else:
        loss = _scalar_graph(_paired_loss, reduction, dtype, _partials(tuples, pairs, 0).sum(),
                             count)
    if not return_grad:
        return loss
    scale = 1.0 / count if reduction == "mean" and count else 1.0
    return loss, tuple(_part(tuples, functools.partial(_scaled_pick, (1, k), scale), ind, pairs,
                             dtype, new_axes={ind[-1]: 4}) for k in (0, 1))


def _apply_as_tuple(public, fixed, names, *blocks):
    result = _apply(public, fixed, names, *blocks)
    return result if isinstance(result, tuple) else (result,)


def _paired_loss(reduction, total, count):
    if reduction == "sum":
        return total
    return total / count if count else 0.0


def _scaled_pick(path, scale, value):
    grad = _pick(path, value)
    return grad * np.asarray(scale, grad.dtype)


def _nms_rule(public, split, arguments):
    """nms, batched_nms, soft_nms, batched_soft_nms: global greedy
    selections, so one task over all boxes; results of unknown length."""
    import dask
    names = [name for name in split.arrays if arguments[name] is not None]
    # The first axis runs over the boxes; the checks see every other length.
    kept = {name: tuple(range(1, np.ndim(_host_like(arguments[name])))) for name in names}
    result = _validate(public, arguments, kept)
    fixed = {k: v for k, v in arguments.items() if k not in names}
    task = functools.partial(_apply, public, fixed, tuple(names))
    parts = result if isinstance(result, tuple) else (result,)
    nout = len(parts) if isinstance(result, tuple) else None
    value = dask.delayed(task, pure=True, nout=nout)(*(_as_dask(arguments[n]) for n in names))
    values = value if isinstance(result, tuple) else (value,)
    out = tuple(_da().from_delayed(v, shape=(math.nan,), dtype=p.dtype, meta=_meta(p))
                for v, p in zip(values, parts))
    return out if isinstance(result, tuple) else out[0]


_RULES = {
    AlongAxes: _normalize_rule,
    RowsToOne: _rows_to_one_rule,
    TopKAlongAxis: _topk_rule,
    LogSumExpReduction: _logsumexp_rule,
    LossOverSamples: _loss_rule,
    RowsOfLinearLoss: _linear_cross_entropy_rule,
    TokensWithSlots: _topk_gating_rule,
    BoxRows: _box_rule,
    PairsOfBoxes: _box_iou_rule,
    PairedBoxRows: _paired_box_rule,
    WholeInput: _nms_rule,
}

register_adapter(_any_dask_array, _route)
