"""The PyTorch autograd adapter: a call holding a CPU tensor that requires
grad, under grad mode, runs the compiled kernels forward and the declared
gradient rule backward, through a ``torch.autograd.Function``.

An adapter (docs/architecture.md): at import it registers with
``softarray._declare`` a claim and a route. The claim holds for a function
that declares a gradient rule when grad mode is on (not under
``torch.no_grad`` or ``torch.inference_mode``) and an argument is a
float32 or float64 CPU tensor that requires grad; it costs a dictionary
look-up when torch is not imported. Everything else (GPU tensors, float16)
keeps its path: the portable implementation, which autograd records.

The route replaces every tensor argument by a NumPy view of its data
(``.detach().numpy()``: no copy) and calls the public function itself on
them, so the forward is the NumPy call, compiled kernels and all. Backward
follows the function's gradient rule (``softarray._declare``):

- ``ReturnedGradient`` (the losses, linear_cross_entropy): the forward asks
  for ``return_grad=True`` and keeps the gradient; backward scales it by
  the incoming gradient (a scalar for "mean" and "sum"; per sample or per
  entry for "none").
- ``VectorJacobian`` (the softmax family, logsumexp): backward calls the
  declared product with the forward's arguments and result on NumPy views.

Backward is not itself recorded: a backward with ``create_graph=True``
(double backward) raises a RuntimeError that says so. docs/autograd.md describes what is
supported.
"""
import functools
import sys

import numpy as np

from .._declare import ReturnedGradient, call_with, register_adapter


def _claims(declaration, args, kwargs):
    """A differentiable function called with a CPU float tensor that
    requires grad, under grad mode."""
    torch = sys.modules.get("torch")
    if torch is None or declaration is None or declaration.gradient is None:
        return False
    if not torch.is_grad_enabled():
        return False
    # Loops, not any(): this runs on every call that holds a tensor.
    for value in args:
        if _recorded(torch, value):
            break
    else:
        for value in kwargs.values():
            if _recorded(torch, value):
                break
        else:
            return False
    return declaration.gradient_for(declaration.bind(args, kwargs)) is not None


def _recorded(torch, value):
    return (isinstance(value, torch.Tensor) and value.requires_grad and value.is_cpu
            and value.dtype in (torch.float32, torch.float64))


def _route(declaration, arguments):
    torch = sys.modules["torch"]
    rule = declaration.gradient_for(arguments)
    name = declaration.public.__name__
    inputs = tuple(n for n in rule.inputs if arguments[n] is not None)
    for key, value in arguments.items():
        if key not in inputs and isinstance(value, torch.Tensor) and value.requires_grad:
            raise TypeError(
                f"{name}: {key!r} requires grad, but softarray differentiates {name} only with "
                f"respect to {', '.join(map(repr, inputs))}; pass {key}.detach()")
    for key in inputs:
        value = arguments[key]
        if isinstance(value, torch.Tensor) and value.device.type != "cpu":
            raise ValueError(f"{name}: {key!r} is on {value.device}; the tensors that require "
                             f"grad are on the CPU")
    if isinstance(rule, ReturnedGradient):
        if arguments["return_grad"]:
            raise ValueError(
                f"{name}: return_grad=True with tensors that require grad; call loss.backward() "
                f"instead, or detach the inputs (or call under torch.no_grad())")
        if arguments.get("reduction") == "none" and rule.none_for(arguments) is None:
            raise ValueError(
                f"{name}: reduction='none' cannot be differentiated by the autograd adapter "
                f"(its gradient is computed summed over samples); use 'sum' or 'mean'")
    host = {k: (v.detach().numpy() if isinstance(v, torch.Tensor) else v) for k, v in arguments.items()}
    call = _ReturnedCall(rule, declaration, host, inputs) if isinstance(rule, ReturnedGradient) \
        else _ProductCall(rule, declaration, host, inputs)
    tensors = [arguments[k] for k in inputs]
    return call.rebuild(_function().apply(call, *tensors))


@functools.cache
def _function():
    """The autograd.Function, made on first use (softarray does not import torch)."""
    import torch

    class SoftarrayCall(torch.autograd.Function):
        @staticmethod
        def forward(ctx, call, *tensors):
            ctx.call = call
            outputs = tuple(torch.from_numpy(np.asarray(r)) for r in call.forward())
            ctx.mark_non_differentiable(*(o for o, d in zip(outputs, call.differentiable) if not d))
            # Saved only so that torch refuses a backward after an in-place
            # change of an input or a result (the call keeps NumPy views).
            ctx.save_for_backward(*tensors, *outputs)
            return outputs if call.several else outputs[0]

        @staticmethod
        def backward(ctx, *cotangents):
            if torch.is_grad_enabled():
                raise RuntimeError(
                    f"softarray: {ctx.call.declaration.public.__name__}'s gradient is computed, not "
                    f"recorded: double backward (create_graph=True) is not supported; use the "
                    f"torch.nn.functional counterpart where second derivatives are needed")
            ctx.saved_tensors  # noqa: B018 (raises if a saved tensor was modified in place)
            return (None,) + ctx.call.backward(cotangents, ctx.needs_input_grad[1:])

    return SoftarrayCall


def _tensor_like(torch, value, like):
    """A gradient as a tensor of the input's dtype and shape (no copy when
    it is already one, unless it is a read-only view)."""
    value = np.asarray(value, dtype=getattr(like, "dtype", None))
    return torch.from_numpy(value if value.flags.writeable else value.copy()).reshape(np.shape(like))


class _ReturnedCall:
    """A loss that returns its gradient with the value."""
    several = False
    differentiable = (True,)

    def __init__(self, rule, declaration, arguments, inputs):
        self.rule, self.declaration, self.arguments, self.inputs = rule, declaration, arguments, inputs

    def rebuild(self, loss):
        return loss

    def forward(self):
        import torch
        loss, grads = call_with(self.declaration.public, dict(self.arguments, return_grad=True))
        grads = grads if isinstance(grads, tuple) else (grads,)
        self.grads = [_tensor_like(torch, g, self.arguments[k]) for k, g in zip(self.inputs, grads)]
        return (loss,)

    def backward(self, cotangents, needs):
        (g,) = cotangents
        if any(grad is None for grad in self.grads):
            self.forward()  # a second backward (retain_graph) after a hand-over
        handed = g.ndim == 0 and float(g) == 1.0
        out = tuple(self._scaled(grad, g) if need else None for grad, need in zip(self.grads, needs))
        if handed:
            # Handed over without a copy: torch may keep the buffer as a
            # .grad and accumulate into it, so it is not ours any more.
            self.grads = [None] * len(self.grads)
        return out

    def _scaled(self, grad, g):
        if g.ndim == 0:
            return grad if float(g) == 1.0 else grad * g
        if self.rule.none_for(self.arguments) == "entries":
            return grad * g
        return grad * g.unsqueeze(self.arguments.get("axis", -1) % grad.ndim)


class _ProductCall:
    """A function whose gradient is a declared vector-Jacobian product. Of
    several results (a tuple, or a named tuple such as ``TopKGating``), the
    arrays go through autograd, the first carrying the gradient; the other
    members (None, counts) are handed back as they are."""

    def __init__(self, rule, declaration, arguments, inputs):
        self.rule, self.declaration, self.arguments, self.inputs = rule, declaration, arguments, inputs

    def forward(self):
        if self.rule.forward is None:
            result = self.saved = call_with(self.declaration.public, self.arguments)
        else:
            result, self.saved = self.rule.forward(self.arguments)
        self.result = result
        members = result if isinstance(result, tuple) else (result,)
        self.slots = [i for i, m in enumerate(members) if isinstance(m, (np.ndarray, np.generic))]
        self.several = isinstance(result, tuple)
        self.differentiable = (True,) + (False,) * (len(self.slots) - 1)
        return tuple(members[i] for i in self.slots)

    def rebuild(self, out):
        if not self.several:
            return out
        members = list(self.result)
        for i, tensor in zip(self.slots, out if isinstance(out, tuple) else (out,)):
            members[i] = tensor
        return type(self.result)(*members) if hasattr(self.result, "_fields") else tuple(members)

    def backward(self, cotangents, needs):
        import torch
        if self.several:
            g = [None] * len(self.result)
            for i, c in zip(self.slots, cotangents):
                g[i] = c.numpy()
            g = tuple(g)
        else:
            g = cotangents[0].numpy()
        grads = self.rule.vjp(self.arguments, self.saved, g)
        named = dict(zip(self.rule.inputs, grads))
        return tuple(_tensor_like(torch, named[k], self.arguments[k]) if need and named[k] is not None
                     else None for k, need in zip(self.inputs, needs))


register_adapter(_claims, _route)
