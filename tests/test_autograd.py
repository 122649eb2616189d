"""The PyTorch autograd adapter (softarray/_adapters/torch_autograd.py):
CPU tensors that require grad run the compiled forward and the declared
gradient rule backward. Gradients are checked against torch's own
(torch.nn.functional and torch's operators on the same values) and against
finite differences (torch.autograd.gradcheck, float64)."""
import numpy as np
import pytest

import softarray as sa

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _leaf(shape, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=dtype) * scale).requires_grad_()


def _grads(fn, *leaves, cotangent_seed=1):
    """Gradients of sum(fn(*leaves) * c) for a fixed random c."""
    leaves = [leaf.detach().clone().requires_grad_() for leaf in leaves]
    out = fn(*leaves)
    c = torch.randn(out.shape, generator=torch.Generator().manual_seed(cotangent_seed), dtype=out.dtype)
    (out * c).sum().backward()
    return out.detach(), [leaf.grad for leaf in leaves]


def _compare(ours, theirs, *leaves, rtol=1e-10, atol=1e-12):
    out, grads = _grads(ours, *leaves)
    ref, ref_grads = _grads(theirs, *leaves)
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=rtol, atol=atol)


def _is_adapter(out):
    return type(out.grad_fn).__name__ == "SoftarrayCallBackward"


# ------------------------------------------------------------ softmax family

@pytest.mark.parametrize("axis", [-1, 0, (0, 2)])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_softmax_and_log_softmax_match_torch(axis, temperature):
    x = _leaf((3, 4, 5))
    dims = axis if isinstance(axis, tuple) else (axis,)

    def torch_softmax(t):
        t = t / temperature
        return torch.exp(t - torch.logsumexp(t, dim=dims, keepdim=True))

    def torch_log_softmax(t):
        t = t / temperature
        return t - torch.logsumexp(t, dim=dims, keepdim=True)

    _compare(lambda t: sa.softmax(t, axis=axis, temperature=temperature), torch_softmax, x)
    _compare(lambda t: sa.log_softmax(t, axis=axis, temperature=temperature), torch_log_softmax, x)
    assert _is_adapter(sa.softmax(x, axis=axis))


def test_softmax_matches_torch_in_float32():
    x = _leaf((64, 1000), dtype=torch.float32)
    _compare(lambda t: sa.softmax(t), lambda t: F.softmax(t, -1), x, rtol=1e-5, atol=1e-7)
    _compare(lambda t: sa.log_softmax(t), lambda t: F.log_softmax(t, -1), x, rtol=1e-5, atol=1e-6)
    _compare(lambda t: sa.logsumexp(t), lambda t: torch.logsumexp(t, -1), x, rtol=1e-5, atol=1e-6)


def test_masked_softmax_matches_torch():
    x = _leaf((4, 6))
    where = torch.rand(4, 6, generator=torch.Generator().manual_seed(3)) > 0.4
    where[:, 0] = True
    masked = lambda t: t.masked_fill(~where, -torch.inf)  # noqa: E731
    _compare(lambda t: sa.softmax(t, where=where), lambda t: F.softmax(masked(t), -1), x)
    _compare(lambda t: sa.log_softmax(t, where=where).masked_fill(~where, 0),
             lambda t: F.log_softmax(masked(t), -1).masked_fill(~where, 0), x)
    _compare(lambda t: sa.logsumexp(t, where=where), lambda t: torch.logsumexp(masked(t), -1), x)


def _torch_stablemax_s(t):
    return torch.where(t >= 0, t + 1, 1 / (1 - t))


@pytest.mark.parametrize("axis", [-1, 0])
def test_stablemax_matches_torch_formula(axis):
    x = _leaf((5, 7))
    s = lambda t: _torch_stablemax_s(t) / _torch_stablemax_s(t).sum(axis, keepdim=True)  # noqa: E731
    _compare(lambda t: sa.stablemax(t, axis=axis), s, x)
    _compare(lambda t: sa.log_stablemax(t, axis=axis), lambda t: torch.log(s(t)), x)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [-1, (0, 1), None])
def test_logsumexp_matches_torch(axis, keepdims):
    x = _leaf((3, 4, 5))
    dims = tuple(range(3)) if axis is None else axis
    _compare(lambda t: sa.logsumexp(t, axis=axis, keepdims=keepdims),
             lambda t: torch.logsumexp(t, dim=dims, keepdim=keepdims), x)


def test_logsumexp_with_weights_gives_gradients_to_x_and_b():
    x, b = _leaf((4, 5)), _leaf((5,), seed=2).detach().abs().requires_grad_()
    _compare(lambda t, w: sa.logsumexp(t, b=w), lambda t, w: torch.log((w * torch.exp(t)).sum(-1)), x, b)
    # Negative weights with the sign: log|sum|, whose gradient carries the sign.
    signed = _leaf((5,), seed=4)
    _compare(lambda t, w: sa.logsumexp(t, b=w, return_sign=True)[0],
             lambda t, w: torch.log((w * torch.exp(t)).sum(-1).abs()), x, signed)
    out, sign = sa.logsumexp(x, b=signed, return_sign=True)
    assert out.requires_grad and not sign.requires_grad


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "stablemax", "log_stablemax", "logsumexp"])
def test_gradcheck_softmax_family(name):
    f = getattr(sa, name)
    x = _leaf((3, 6), scale=1.0)
    assert torch.autograd.gradcheck(lambda t: f(t), (x,))
    assert torch.autograd.gradcheck(lambda t: f(t, axis=0), (x,))
    b = _leaf((1, 6), seed=5)
    assert torch.autograd.gradcheck(
        lambda t, w: sa.logsumexp(t, b=w, axis=0, keepdims=True, return_sign=True)[0], (x, b))


# ------------------------------------------------------------ cross_entropy

CE_CASES = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.2},
    {"weight": True},
    {"weight": True, "ignore_index": 1, "label_smoothing": 0.1},
    {"ignore_index": 2, "reduction": "none"},
    {"ignore_index": 2, "reduction": "sum", "weight": True},
]


@pytest.mark.parametrize("case", CE_CASES)
@pytest.mark.parametrize("shape", [(8, 5), (4, 5, 3)])
def test_cross_entropy_index_targets_match_torch(case, shape):
    x = _leaf(shape)
    target = torch.randint(0, 5, (shape[0],) + shape[2:], generator=torch.Generator().manual_seed(1))
    weight = torch.rand(5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.5
    ours = dict(case, weight=weight if case.get("weight") else None)
    theirs = dict(ours, ignore_index=case.get("ignore_index", -100))
    axis = 1 if len(shape) == 3 else -1
    _compare(lambda t: sa.cross_entropy(t, target, axis=axis, **ours),
             lambda t: F.cross_entropy(t, target, **theirs), x)
    assert torch.autograd.gradcheck(lambda t: sa.cross_entropy(t, target, axis=axis, **ours), (x,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_probability_targets_match_torch(reduction, label_smoothing):
    x = _leaf((6, 4))
    target = torch.softmax(torch.randn(6, 4, generator=torch.Generator().manual_seed(7),
                                       dtype=torch.float64), -1)
    kw = {"reduction": reduction, "label_smoothing": label_smoothing}
    _compare(lambda t: sa.cross_entropy(t, target, **kw), lambda t: F.cross_entropy(t, target, **kw), x)


def test_cross_entropy_float32_large_matches_torch():
    x = _leaf((512, 1000), dtype=torch.float32)
    target = torch.randint(0, 1000, (512,), generator=torch.Generator().manual_seed(1))
    _compare(lambda t: sa.cross_entropy(t, target), lambda t: F.cross_entropy(t, target), x,
             rtol=1e-5, atol=1e-7)


def test_gradient_reaches_earlier_layers_and_accumulates():
    w = _leaf((3, 5))
    inputs = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    loss = sa.cross_entropy(inputs @ w, target) + sa.cross_entropy(inputs @ w, target, reduction="sum")
    loss.backward()
    ref = w.detach().clone().requires_grad_()
    (F.cross_entropy(inputs @ ref, target) + F.cross_entropy(inputs @ ref, target, reduction="sum")).backward()
    torch.testing.assert_close(w.grad, ref.grad)


def test_backward_twice_with_retain_graph():
    x = _leaf((4, 5))
    target = torch.tensor([0, 1, 2, 3])
    for scale in (1.0, 3.0):   # the gradient handed over as it is, or scaled
        x.grad = None
        loss = sa.cross_entropy(x, target) * scale if scale != 1.0 else sa.cross_entropy(x, target)
        loss.backward(retain_graph=True)
        first = x.grad.clone()
        loss.backward(retain_graph=True)
        loss.backward()
        torch.testing.assert_close(x.grad, 3 * first)
        ref = x.detach().clone().requires_grad_()
        (F.cross_entropy(ref, target) * scale).backward()
        torch.testing.assert_close(first, ref.grad)
    y = sa.softmax(x)
    (g,) = torch.autograd.grad(y[:, 0].sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(y[:, 0].sum(), x)
    torch.testing.assert_close(g, g2)


# ------------------------------------------------------------ other losses

def _index_target(n=6, c=5, seed=1):
    return torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_other_losses_match_torch(reduction):
    x, y = _leaf((6, 5)), _index_target()
    weight = torch.rand(5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.5
    _compare(lambda t: sa.nll_loss(t, y, weight=weight, reduction=reduction),
             lambda t: F.nll_loss(t, y, weight=weight, reduction=reduction), x)
    _compare(lambda t: sa.multi_margin_loss(t, y, reduction=reduction),
             lambda t: F.multi_margin_loss(t, y, reduction=reduction), x)
    probs = torch.rand(6, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    pos_weight = torch.rand(5, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.5
    _compare(lambda t: sa.binary_cross_entropy_with_logits(t, probs, pos_weight=pos_weight, reduction=reduction),
             lambda t: F.binary_cross_entropy_with_logits(t, probs, pos_weight=pos_weight, reduction=reduction), x)
    log_target = torch.log_softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(5),
                                               dtype=torch.float64), -1)
    torch_reduction = "batchmean" if reduction == "mean" else reduction
    _compare(lambda t: sa.kl_div(torch.log_softmax(t, -1), log_target, log_target=True, reduction=torch_reduction),
             lambda t: F.kl_div(torch.log_softmax(t, -1), log_target, log_target=True, reduction=torch_reduction), x)


def test_sigmoid_focal_loss_matches_torchvision():
    ops = pytest.importorskip("torchvision.ops")
    x = _leaf((6, 5))
    t = (torch.rand(6, 5, generator=torch.Generator().manual_seed(3)) > 0.5).double()
    for reduction in ("none", "mean", "sum"):
        _compare(lambda v: sa.sigmoid_focal_loss(v, t, reduction=reduction),
                 lambda v: ops.sigmoid_focal_loss(v, t, reduction=reduction), x)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name, kw", [
    ("z_loss", {}), ("focal_loss", {"gamma": 2.0}), ("comp_sum_loss", {"tau": 0.5}),
    ("generalized_cross_entropy", {"q": 0.7}), ("mae_loss", {}),
    ("multi_margin_loss", {"form": "crammer_singer"}),
])
def test_gradcheck_index_losses(name, kw, reduction):
    x, y = _leaf((6, 5), scale=1.0), _index_target()
    f = getattr(sa, name)
    assert torch.autograd.gradcheck(lambda t: f(t, y, reduction=reduction, **kw), (x,))


def test_gradcheck_penalty_and_kl_from_logits():
    x = _leaf((6, 5), scale=1.0)
    assert torch.autograd.gradcheck(lambda t: sa.logsumexp_penalty(t, reduction="none"), (x,))
    p = torch.softmax(_leaf((6, 5), seed=3).detach(), -1)
    assert torch.autograd.gradcheck(lambda t: sa.kl_div(t, p, from_logits=True, reduction="batchmean"), (x,))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", ["generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"])
def test_box_iou_losses_match_torchvision(name, reduction):
    ops = pytest.importorskip("torchvision.ops")
    g = torch.Generator().manual_seed(0)

    def boxes(n):
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 10
        return torch.cat([xy, xy + torch.rand(n, 2, generator=g, dtype=torch.float64) * 5 + 0.5], 1)

    b1, b2 = boxes(7).requires_grad_(), boxes(7).requires_grad_()
    _compare(lambda p, q: getattr(sa, name)(p, q, reduction=reduction),
             lambda p, q: getattr(ops, name)(p, q, reduction=reduction), b1, b2)
    assert _is_adapter(getattr(sa, name)(b1, b2, reduction=reduction))
    if name != "complete_box_iou_loss":  # torchvision holds CIoU's alpha constant: not the derivative
        assert torch.autograd.gradcheck(lambda p, q: getattr(sa, name)(p, q, reduction=reduction), (b1, b2))


# ------------------------------------------------------------ linear_cross_entropy

@pytest.mark.parametrize("kw", [{}, {"reduction": "sum"}, {"ignore_index": -100, "label_smoothing": 0.1}])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_cross_entropy_matches_torch(kw, bias):
    emb, cls = _leaf((16, 8)), _leaf((11, 8), seed=1)
    b = _leaf((11,), seed=2) if bias else None
    target = torch.randint(0, 11, (16,), generator=torch.Generator().manual_seed(4))
    target[3] = -100
    ours = {"ignore_index": -100, **kw}
    leaves = (emb, cls) + ((b,) if bias else ())

    def theirs(e, c, *bb):
        logits = e @ c.T + (bb[0] if bb else 0)
        return F.cross_entropy(logits, target, **{k: v for k, v in ours.items()})

    def mine(e, c, *bb):
        return sa.linear_cross_entropy(e, c, target, bias=bb[0] if bb else None, **ours)

    _compare(mine, theirs, *leaves)
    assert _is_adapter(mine(*leaves))
    assert torch.autograd.gradcheck(mine, leaves)


def test_linear_cross_entropy_gradient_only_where_required():
    emb, cls = _leaf((16, 8)), _leaf((11, 8), seed=1).detach()
    target = torch.randint(0, 11, (16,), generator=torch.Generator().manual_seed(4))
    sa.linear_cross_entropy(emb, cls, target).backward()
    ref = emb.detach().clone().requires_grad_()
    F.cross_entropy(ref @ cls.T, target).backward()
    torch.testing.assert_close(emb.grad, ref.grad)
    assert cls.grad is None


def test_a_linear_layer_trains_through_linear_cross_entropy():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 11, dtype=torch.float64)
    ref = torch.nn.Linear(8, 11, dtype=torch.float64)
    ref.load_state_dict(layer.state_dict())
    emb = torch.randn(32, 8, dtype=torch.float64)
    target = torch.randint(0, 11, (32,))
    opt, ref_opt = torch.optim.SGD(layer.parameters(), lr=0.5), torch.optim.SGD(ref.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        ref_opt.zero_grad()
        loss = sa.linear_cross_entropy(emb, layer.weight, target, bias=layer.bias)
        ref_loss = F.cross_entropy(ref(emb), target)
        loss.backward()
        ref_loss.backward()
        opt.step()
        ref_opt.step()
        torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(layer.weight, ref.weight)
    torch.testing.assert_close(layer.bias, ref.bias)


# ------------------------------------------------------------ modes and errors

def test_no_grad_and_inference_mode_take_the_plain_path():
    x = _leaf((4, 5))
    with torch.no_grad():
        y = sa.softmax(x)
    assert y.grad_fn is None and not y.requires_grad
    with torch.inference_mode():
        y = sa.cross_entropy(x, torch.tensor([0, 1, 2, 3]))
    assert y.grad_fn is None
    torch.testing.assert_close(y, F.cross_entropy(x.detach(), torch.tensor([0, 1, 2, 3])))


def test_functions_without_a_gradient_rule_are_not_claimed():
    x = _leaf((4, 5))
    values, _ = sa.topk(x, 2)
    torch.testing.assert_close(values, torch.topk(x, 2).values)


def test_arguments_that_cannot_take_a_gradient_are_refused():
    x = _leaf((4, 5))
    soft = torch.softmax(_leaf((4, 5), seed=2), -1)  # requires grad through softmax
    with pytest.raises(TypeError, match="'target' requires grad.*'logits'"):
        sa.cross_entropy(x, soft)
    weight = torch.ones(5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match="'weight' requires grad"):
        sa.cross_entropy(x.detach(), torch.tensor([0, 1, 2, 3]), weight=weight)
    with pytest.raises(ValueError, match="return_grad=True with tensors that require grad"):
        sa.cross_entropy(x, torch.tensor([0, 1, 2, 3]), return_grad=True)
    emb, cls = _leaf((4, 3)), _leaf((5, 3))
    with pytest.raises(ValueError, match="reduction='none' cannot be differentiated"):
        sa.linear_cross_entropy(emb, cls, torch.tensor([0, 1, 2, 3]), reduction="none")
    with pytest.raises(ValueError, match="reduction='none' cannot be differentiated"):
        sa.kl_div(x, torch.softmax(x.detach(), -1), from_logits=True, reduction="none")


def test_double_backward_is_refused():
    x = _leaf((4, 5))
    loss = sa.cross_entropy(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(RuntimeError, match="double backward .create_graph=True. is not supported"):
        torch.autograd.grad(loss, x, create_graph=True)
    y = sa.softmax(x)
    with pytest.raises(RuntimeError, match="softmax's gradient is computed, not recorded"):
        torch.autograd.grad(y[:, 0].sum(), x, create_graph=True)


def test_in_place_change_of_a_result_is_detected():
    x = _leaf((4, 5))
    y = sa.softmax(x)
    z = y.sum()
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()


def test_forward_shares_the_input_and_leaves_it_unchanged():
    x = _leaf((4, 5))
    before = x.detach().clone()
    sa.log_softmax(x).sum().backward()
    assert torch.equal(x.detach(), before)


def test_torch_compile_gives_torch_results():
    x = _leaf((8, 5))
    target = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])

    def step(t):
        return sa.cross_entropy(t * 2, target) + sa.softmax(t).square().sum()

    compiled = torch.compile(step, backend="aot_eager")
    _compare(compiled, lambda t: F.cross_entropy(t * 2, target) + F.softmax(t, -1).square().sum(), x)


# ------------------------------------------------------------ gumbel_softmax

@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_gumbel_softmax_gradient_matches_torch_on_the_same_noise(hard, tau):
    x = _leaf((6, 5), scale=1.0)
    out, (grad,) = _grads(lambda t: sa.gumbel_softmax(t, tau=tau, hard=hard, rng=np.random.default_rng(0)), x)
    soft = sa.gumbel_softmax(x.detach(), tau=tau, rng=np.random.default_rng(0))
    # Noise up to a per-row constant, which softmax ignores: tau * log(soft) - x.
    noise = tau * torch.log(soft) - x.detach()

    def theirs(t):
        y_soft = torch.softmax((t + noise) / tau, -1)
        if not hard:
            return y_soft
        y_hard = F.one_hot(y_soft.argmax(-1), 5).to(t.dtype)
        return y_hard - y_soft.detach() + y_soft

    ref, (ref_grad,) = _grads(theirs, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    if hard:
        assert torch.equal(out.sum(-1), torch.ones(6, dtype=out.dtype)) and set(out.unique().tolist()) == {0.0, 1.0}


def test_gradcheck_gumbel_softmax():
    x = _leaf((4, 5), scale=1.0)
    assert torch.autograd.gradcheck(
        lambda t: sa.gumbel_softmax(t, tau=0.7, axis=0, rng=np.random.default_rng(3)), (x,))


# ------------------------------------------------------------ topk_gating

@pytest.mark.parametrize("order, renormalize", [("softmax_topk", True), ("softmax_topk", False),
                                                ("topk_softmax", True)])
@pytest.mark.parametrize("noise_std", [0.0, 0.5])
def test_topk_gating_weights_match_torch(order, renormalize, noise_std):
    x = _leaf((9, 6), scale=1.0)
    kw = {"order": order, "renormalize": renormalize, "temperature": 0.7, "noise_std": noise_std,
          "capacity_factor": 1.0}
    gate = sa.topk_gating(x, 2, rng=np.random.default_rng(0), **kw)
    assert gate.weights.requires_grad and gate.indices.dtype == torch.int64 and gate.capacity is not None
    plain = sa.topk_gating(x.detach(), 2, rng=np.random.default_rng(0), **kw)
    torch.testing.assert_close(gate.indices, plain.indices, rtol=0, atol=0)
    torch.testing.assert_close(gate.positions, plain.positions, rtol=0, atol=0)
    noise = noise_std * torch.from_numpy(np.random.default_rng(0).standard_normal((9, 6)))
    index = plain.indices

    def theirs(t):
        s = (t + noise) / 0.7
        if order == "topk_softmax" or renormalize:
            return torch.softmax(s.gather(1, index), -1)
        return torch.softmax(s, -1).gather(1, index)

    _compare(lambda t: sa.topk_gating(t, 2, rng=np.random.default_rng(0), **kw).weights, theirs, x)
    assert torch.autograd.gradcheck(
        lambda t: sa.topk_gating(t, 2, rng=np.random.default_rng(0), **kw).weights, (x,))


def test_topk_gating_with_aux_keeps_the_recorded_path():
    x = _leaf((9, 6), scale=1.0)
    gate = sa.topk_gating(x, 2, return_aux=True)
    assert not _is_adapter(gate.weights)
    gate.aux["router_z_loss"].backward()
    ref = x.detach().clone().requires_grad_()
    torch.logsumexp(ref, 1).square().mean().backward()
    torch.testing.assert_close(x.grad, ref.grad)
