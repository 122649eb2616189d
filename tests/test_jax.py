"""softarray on JAX arrays: eager calls run the compiled kernels (the JAX
adapter, softarray._adapters.jax) and equal the NumPy call; under jax.jit,
jax.grad and jax.vmap the portable implementation is traced, and its
results and gradients are checked against the NumPy call, against
softarray's own analytic gradients (return_grad=True) and against the same
functions written with jax.nn in this file."""
import numpy as np
import pytest

import softarray as sa

jax = pytest.importorskip("jax")
jnp = jax.numpy

RNG = np.random.default_rng(20261204)
X = RNG.standard_normal((6, 7)).astype(np.float32)
Y = RNG.integers(0, 7, 6)
G = RNG.standard_normal((6, 7)).astype(np.float32)
B = RNG.uniform(0.5, 2.0, (6, 7)).astype(np.float32)
P = RNG.dirichlet(np.ones(7), 6).astype(np.float32)
W = RNG.uniform(0.5, 1.5, 7).astype(np.float32)
E, C = RNG.standard_normal((6, 4)).astype(np.float32), RNG.standard_normal((7, 4)).astype(np.float32)
BOXES1 = np.sort(RNG.uniform(0, 10, (5, 2, 2)), axis=1).transpose(0, 2, 1).reshape(5, 4).astype(np.float32)
BOXES2 = np.sort(RNG.uniform(0, 10, (5, 2, 2)), axis=1).transpose(0, 2, 1).reshape(5, 4).astype(np.float32)

# name -> (function of arrays, its NumPy arrays): every public function
# whose result has a shape known before its values (nms has not: eager only).
CALLS = {
    "softmax": (lambda x: sa.softmax(x), (X,)),
    "softmax axis 0 temperature": (lambda x: sa.softmax(x, axis=0, temperature=0.5), (X,)),
    "log_softmax": (lambda x: sa.log_softmax(x), (X,)),
    "stablemax": (lambda x: sa.stablemax(x), (X,)),
    "log_stablemax": (lambda x: sa.log_stablemax(x), (X,)),
    "logsumexp b keepdims": (lambda x, b: sa.logsumexp(x, axis=1, b=b, keepdims=True), (X, B)),
    "logsumexp return_sign": (lambda x, b: sa.logsumexp(x, b=b - 1.0, return_sign=True), (X, B)),
    "cross_entropy": (lambda x, y: sa.cross_entropy(x, y), (X, Y)),
    "cross_entropy options": (lambda x, y, w: sa.cross_entropy(x, y, weight=w, label_smoothing=0.1,
                                                               ignore_index=3), (X, Y, W)),
    "cross_entropy probabilities none": (lambda x, p: sa.cross_entropy(x, p, reduction="none"), (X, P)),
    "nll_loss": (lambda x, y: sa.nll_loss(sa.log_softmax(x), y, reduction="sum"), (X, Y)),
    "z_loss": (lambda x, y: sa.z_loss(x, y, b=1e-3), (X, Y)),
    "focal_loss": (lambda x, y: sa.focal_loss(x, y), (X, Y)),
    "multi_margin_loss": (lambda x, y: sa.multi_margin_loss(x, y), (X, Y)),
    "comp_sum_loss": (lambda x, y: sa.comp_sum_loss(x, y, tau=0.5), (X, Y)),
    "binary_cross_entropy_with_logits": (lambda x, p: sa.binary_cross_entropy_with_logits(x, p), (X, P)),
    "kl_div": (lambda x, p: sa.kl_div(sa.log_softmax(x), p, reduction="batchmean"), (X, P)),
    "linear_cross_entropy": (lambda e, c, y: sa.linear_cross_entropy(e, c, y), (E, C, Y)),
    "topk": (lambda x: sa.topk(x, 3), (X,)),
    "topk_gating": (lambda x: sa.topk_gating(x, 2).weights, (X,)),
    "box_iou": (lambda a, b: sa.box_iou(a, b), (BOXES1, BOXES2)),
    "complete_box_iou_loss": (lambda a, b: sa.complete_box_iou_loss(a, b, reduction="mean"),
                              (BOXES1, BOXES2)),
}


def as_numpy_tree(result):
    return jax.tree_util.tree_map(np.asarray, result)


@pytest.mark.parametrize("name", CALLS)
def test_eager_call_returns_jax_arrays_equal_to_the_numpy_call(name):
    fn, arrays = CALLS[name]
    expected = fn(*arrays)
    got = fn(*map(jnp.asarray, arrays))
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(got))
    jax.tree_util.tree_map(lambda g, e: np.testing.assert_array_equal(np.asarray(g), e), got,
                           jax.tree_util.tree_map(np.asarray, expected))


@pytest.mark.parametrize("name", CALLS)
def test_under_jit_the_traced_call_agrees_with_the_eager_call(name):
    fn, arrays = CALLS[name]
    args = tuple(map(jnp.asarray, arrays))
    eager, traced = fn(*args), jax.jit(fn)(*args)
    assert jax.tree_util.tree_structure(traced) == jax.tree_util.tree_structure(eager)
    for t, e in zip(jax.tree_util.tree_leaves(traced), jax.tree_util.tree_leaves(eager)):
        assert (t.shape, t.dtype) == (e.shape, e.dtype)
        np.testing.assert_allclose(np.asarray(t), np.asarray(e), rtol=2e-5, atol=2e-6)


def test_an_eager_call_runs_the_compiled_kernels_and_a_traced_one_the_portable_path(monkeypatch):
    from softarray._portable import softmax as portable

    def refuse(*args, **kwargs):
        raise AssertionError("the portable path ran")

    monkeypatch.setattr(portable, "normalize", refuse)
    sa.softmax(jnp.asarray(X))      # the compiled kernel: the portable path is not asked
    with pytest.raises(AssertionError, match="portable path ran"):
        jax.jit(sa.softmax)(jnp.asarray(X))


def reference_cross_entropy(x, y, weight=None, label_smoothing=0.0):
    """torch.nn.functional.cross_entropy's definition, written with jax.nn."""
    log_p = jax.nn.log_softmax(x, axis=-1)
    w = jnp.ones(x.shape[-1], x.dtype) if weight is None else weight
    picked = -jnp.take_along_axis(log_p, y[:, None], axis=1)[:, 0] * w[y]
    smooth = -jnp.sum(log_p * w, axis=-1) / x.shape[-1]
    losses = (1 - label_smoothing) * picked + label_smoothing * smooth
    return jnp.sum(losses) / jnp.sum(w[y])


# name -> (softarray's scalar function, the jax.nn one, NumPy arrays, argnums)
GRADIENTS = {
    "softmax": (lambda x, g: jnp.sum(sa.softmax(x, axis=0) * g),
                lambda x, g: jnp.sum(jax.nn.softmax(x, axis=0) * g), (X, G), 0),
    "log_softmax temperature": (lambda x, g: jnp.sum(sa.log_softmax(x, temperature=2.0) * g),
                                lambda x, g: jnp.sum(jax.nn.log_softmax(x / 2.0) * g), (X, G), 0),
    "logsumexp x and b": (lambda x, b: jnp.sum(sa.logsumexp(x, axis=1, b=b) ** 2),
                          lambda x, b: jnp.sum(jax.nn.logsumexp(x, axis=1, b=b) ** 2), (X, B), (0, 1)),
    "cross_entropy weight smoothing": (
        lambda x, y, w: sa.cross_entropy(x, y, weight=w, label_smoothing=0.2),
        lambda x, y, w: reference_cross_entropy(x, y, w, 0.2), (X, Y, W), 0),
    "cross_entropy none": (
        lambda x, y, g: jnp.sum(sa.cross_entropy(x, y, reduction="none") * g[:, 0]),
        lambda x, y, g: jnp.sum(-jnp.take_along_axis(jax.nn.log_softmax(x), y[:, None], 1)[:, 0]
                                * g[:, 0]), (X, Y, G), 0),
    "linear_cross_entropy": (lambda e, c, y: sa.linear_cross_entropy(e, c, y),
                             lambda e, c, y: reference_cross_entropy(e @ c.T, y), (E, C, Y), (0, 1)),
}


@pytest.mark.parametrize("name", GRADIENTS)
def test_jit_grad_equals_the_gradient_of_the_jax_nn_formulation(name):
    ours, theirs, arrays, argnums = GRADIENTS[name]
    args = tuple(map(jnp.asarray, arrays))
    got = jax.jit(jax.grad(ours, argnums=argnums))(*args)
    expected = jax.grad(theirs, argnums=argnums)(*args)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                           got, expected)


@pytest.mark.parametrize("loss", [sa.cross_entropy, sa.focal_loss, sa.multi_margin_loss, sa.z_loss])
def test_jax_grad_equals_the_compiled_analytic_gradient(loss):
    """Two implementations: JAX differentiating the portable path, and the
    compiled kernel's fused gradient on the NumPy arrays."""
    _, expected = loss(X, Y, return_grad=True)
    got = jax.grad(loss)(jnp.asarray(X), jnp.asarray(Y))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-6)


def test_vmap_over_a_batch_of_calls():
    batch = np.stack([X, G, B])
    got = jax.vmap(lambda x: sa.log_softmax(x))(jnp.asarray(batch))
    np.testing.assert_allclose(np.asarray(got), sa.log_softmax(batch), rtol=1e-5, atol=1e-6)
    grads = jax.jit(jax.vmap(jax.grad(lambda x: sa.logsumexp(x, axis=None))))(jnp.asarray(batch))
    np.testing.assert_allclose(np.asarray(grads), sa.softmax(batch.reshape(3, -1)).reshape(batch.shape),
                               rtol=1e-5, atol=1e-7)


def test_a_training_step_under_jit_lowers_the_loss():
    @jax.jit
    def step(c, e, y):
        loss, grad = jax.value_and_grad(lambda c: sa.linear_cross_entropy(e, c, y))(c)
        return c - 0.5 * grad, loss

    c, losses = jnp.asarray(C), []
    for _ in range(20):
        c, loss = step(c, jnp.asarray(E), jnp.asarray(Y))
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_nms_on_jax_arrays_runs_eagerly():
    scores = RNG.uniform(size=5).astype(np.float32)
    got = sa.nms(jnp.asarray(BOXES1), jnp.asarray(scores), 0.5)
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got), sa.nms(BOXES1, scores, 0.5))


def test_bad_input_gets_the_clear_error():
    with pytest.raises(ValueError, match="class indices outside"):
        sa.cross_entropy(jnp.asarray(X), jnp.asarray(Y + 7))
    # Shapes are known while tracing: their checks run under jit too.
    with pytest.raises(ValueError, match="target must have shape"):
        jax.jit(sa.cross_entropy)(jnp.asarray(X), jnp.asarray(Y[:3]))
    with pytest.raises(ValueError, match="out of bounds"):
        jax.jit(lambda x: sa.softmax(x, axis=2))(jnp.asarray(X))


def test_float64_with_x64_enabled():
    with jax.enable_x64(True):
        x = jnp.asarray(X.astype(np.float64))
        assert sa.softmax(x).dtype == jnp.float64
        assert jax.jit(sa.softmax)(x).dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(jax.jit(sa.log_softmax)(x)),
                                   sa.log_softmax(X.astype(np.float64)), rtol=1e-12, atol=1e-14)


def test_integer_and_mixed_inputs_promote_as_jax_does():
    """NumPy would give float64 for these; JAX's promotion (float32 without
    x64) holds eagerly as under jit."""
    ints = jnp.asarray(np.arange(6, dtype=np.int32))
    calls = [lambda: sa.softmax(ints),
             lambda: sa.logsumexp(jnp.asarray(X), b=jnp.asarray(np.ones(X.shape, np.int32)))]
    for call in calls:
        eager, traced = call(), jax.jit(call)()
        assert eager.dtype == traced.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(eager), np.asarray(traced), rtol=1e-6)


def test_sample_runs_eagerly_and_refuses_jit():
    """A NumPy generator under jit would be drawn once and baked into the
    compiled function: refused with the reason."""
    x = jnp.asarray(np.tile(np.log(np.array([0.5, 0.3, 0.2], np.float32)), (4000, 1)))
    tokens = sa.sample(x, top_k=2, rng=np.random.default_rng(0))
    assert isinstance(tokens, jax.Array) and set(np.unique(np.asarray(tokens))) == {0, 1}
    with pytest.raises(TypeError, match="jax.random.categorical"):
        jax.jit(lambda z: sa.sample(z))(x)
