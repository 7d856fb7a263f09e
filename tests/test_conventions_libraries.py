"""Each convention against the real library that uses it: PyTorch (SGD with
and without momentum, Adam, AdamW), scikit-learn's MLP (sgd and adam, with
sample_weight, the last partial batch and early_stopping), optax and Keras 3
(jax backend).  TF Addons cannot be installed without TensorFlow: its AdamW
is checked against the formula of its source, ``var.assign_sub(wd * var)``.
"""
import inspect
import math
import os
import warnings

import numpy as np
import pytest

import l2fast
from l2fast import L2, no_decay_1d
from l2fast.conventions import ConventionWarning, convert

os.environ.setdefault("KERAS_BACKEND", "jax")   # Keras 3 without TensorFlow

SHAPES = {"fc1.weight": (32, 20), "fc1.bias": (32,), "norm.weight": (32,),
          "fc2.weight": (5, 32), "fc2.bias": (5,)}


def quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConventionWarning)
        return convert(*args, **kwargs)


def weights_and_grads(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    ws = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    gs = {k: (0.1 * rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()}
    return ws, gs


def torch_params(torch, ws, gs):
    ps = {}
    for k in ws:
        p = torch.nn.Parameter(torch.tensor(ws[k]))
        p.grad = torch.tensor(gs[k])
        ps[k] = p
    return ps


def numpy_of(tensors):
    return {k: t.detach().numpy().copy() for k, t in tensors.items()}


def assert_close(got, ref, rtol=1e-6):
    """Equal within float32 rounding (relative to each array's largest value)."""
    for k in ref:
        r = np.asarray(ref[k], np.float64)
        np.testing.assert_allclose(np.asarray(got[k], np.float64), r, rtol=rtol,
                                   atol=rtol * np.abs(r).max(), err_msg=k)


def assert_differs(got, ref):
    assert any(not np.allclose(got[k], ref[k], rtol=1e-5, atol=0) for k in ref)


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_torch_sgd_is_coupled(momentum, nesterov):
    """SGD(weight_decay=wd), with or without momentum, three steps: the same as
    l2fast's grad_ with λ converted from wd, then SGD without weight decay."""
    torch = pytest.importorskip("torch")
    lr, wd, m = 0.1, 0.05, 60000
    ws, gs = weights_and_grads()
    lam = convert(wd, "torch_sgd", "ng", m=m)
    reg = L2(lam, scale="samples", m=m, exclude=no_decay_1d)
    ps, qs = torch_params(torch, ws, gs), torch_params(torch, ws, gs)
    groups = [{"params": [p for p in ps.values() if p.ndim > 1], "weight_decay": wd},
              {"params": [p for p in ps.values() if p.ndim <= 1], "weight_decay": 0.0}]
    ref_opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    opt = torch.optim.SGD(list(qs.values()), lr=lr, momentum=momentum, nesterov=nesterov)
    for _ in range(3):
        for p, q, g in zip(ps.values(), qs.values(), gs.values()):
            p.grad, q.grad = torch.tensor(g), torch.tensor(g)
        ref_opt.step()
        grads = {k: q.grad for k, q in qs.items()}
        reg.grad_(grads, qs)                      # on the tensors, in place
        opt.step()
    assert_close(numpy_of(qs), numpy_of(ps))
    plain = torch_params(torch, ws, gs)
    torch.optim.SGD(list(plain.values()), lr=lr, momentum=momentum).step()
    assert_differs(numpy_of(plain), numpy_of(ps))


def zero_gradient_run(torch, opt_cls, steps, w0=1.0, **kw):
    """A weight w0 after `steps` steps with a zero data gradient, in float64."""
    p = torch.nn.Parameter(torch.full((1,), w0, dtype=torch.float64))
    opt = opt_cls([p], **kw)
    out = []
    for _ in range(steps):
        p.grad = torch.zeros(1, dtype=torch.float64)
        opt.step()
        out.append(p.item())
    return out


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_torch_sgd_momentum_matches_the_cross_family_decay(momentum):
    """convert(wd, "torch_sgd", "decay_per_step", momentum=β) is the decay per
    step SGD with momentum reaches in its steady state (the coupled term
    weighs 1/(1 − β) there)."""
    torch = pytest.importorskip("torch")
    lr, wd = 0.1, 5e-4
    with pytest.warns(ConventionWarning, match="momentum|plain SGD"):
        d = convert(wd, "torch_sgd", "decay_per_step", momentum=momentum, lr=lr)
    assert d == pytest.approx(lr * wd / (1 - momentum), rel=1e-15)
    w = zero_gradient_run(torch, torch.optim.SGD, 400, lr=lr, momentum=momentum,
                          weight_decay=wd)
    measured = 1 - w[-1] / w[-2]
    assert measured == pytest.approx(d, rel=2 * d / (1 - momentum))   # up to O(d²/(1 − β))
    if momentum == 0.0:
        assert w[-1] == pytest.approx((1 - d) ** 400, rel=1e-12)


def test_torch_adam_is_coupled_and_adamw_decoupled():
    """Adam(weight_decay=wd) = grad_ (c = wd) then Adam; AdamW(weight_decay=wd) =
    decay_ then Adam: three steps each, from the same weights and gradients."""
    torch = pytest.importorskip("torch")
    lr, wd = 0.01, 0.1
    ws, gs = weights_and_grads(2)
    for conv, cls in (("torch_adam", torch.optim.Adam), ("torch_adamw", torch.optim.AdamW)):
        reg = L2.from_convention(wd, conv)
        ps, qs = torch_params(torch, ws, gs), torch_params(torch, ws, gs)
        ref_opt = cls(list(ps.values()), lr=lr, weight_decay=wd)
        opt = torch.optim.Adam(list(qs.values()), lr=lr, weight_decay=0.0)
        for _ in range(3):
            for p, q, g in zip(ps.values(), qs.values(), gs.values()):
                p.grad, q.grad = torch.tensor(g), torch.tensor(g)
            ref_opt.step()
            with torch.no_grad():  # as an optimizer writes: autograd is not recording
                if reg.family == "coupled":
                    reg.grad_({k: q.grad for k, q in qs.items()}, qs)
                else:
                    reg.decay_(qs, lr)
            opt.step()
        assert_close(numpy_of(qs), numpy_of(ps))


def test_adam_decays_about_a_hundred_times_more_than_adamw():
    """With no data gradient, Adam divides the coupled term wd·w by √v̂ = |wd·w|:
    each step removes about lr, whatever wd (the cross-family match with
    grad_rms = wd·|w| says so), while AdamW removes lr·wd."""
    torch = pytest.importorskip("torch")
    lr, wd = 1e-3, 0.01
    adam = zero_gradient_run(torch, torch.optim.Adam, 100, lr=lr, weight_decay=wd)
    adamw = zero_gradient_run(torch, torch.optim.AdamW, 100, lr=lr, weight_decay=wd)
    assert adamw[-1] == pytest.approx((1 - lr * wd) ** 100, rel=1e-12)
    with pytest.warns(ConventionWarning, match="Adam divides"):
        d = convert(wd, "torch_adam", "decay_per_step", grad_rms=wd * 1.0, lr=lr)
    assert d == pytest.approx(lr, rel=1e-15)
    assert 1 - adam[0] == pytest.approx(d, rel=1e-5)         # the first step: eps only
    assert adam[-1] == pytest.approx((1 - d) ** 100, rel=0.01)
    assert (1 - adam[-1]) / (1 - adamw[-1]) > 90


def test_adamw_normalized_and_tfa_adamw():
    """Loshchilov & Hutter's λ_norm·√(b/(B·T)) and TF Addons' wd are decays per
    step, not multiplied by lr: AdamW with the converted wd removes exactly that
    (TF Addons' DecoupledWeightDecayExtension does var.assign_sub(wd * var))."""
    torch = pytest.importorskip("torch")
    lam_norm, b, big_b, t, lr = 0.05, 128, 50000, 200, 1e-3
    for value, conv, per_step in ((lam_norm, "adamw_normalized",
                                   lam_norm * math.sqrt(b / (big_b * t))),
                                  (1e-4, "tfa_adamw", 1e-4)):
        wd = convert(value, conv, "torch_adamw", batch_size=b, m=big_b, epochs=t, lr=lr)
        w = zero_gradient_run(torch, torch.optim.AdamW, 1, lr=lr, weight_decay=wd)
        assert 1 - w[0] == pytest.approx(per_step, rel=1e-12)


# ---------------------------------------------------------------------------
# scikit-learn
# ---------------------------------------------------------------------------

def fitted_mlp(nn, datasets, solver="adam", **kw):
    x, y = datasets.load_digits(return_X_y=True)
    x, y = x[:600] / 16.0, y[:600]
    clf = nn.MLPClassifier(hidden_layer_sizes=(24, 12), alpha=3e-3, solver=solver,
                           batch_size=50, max_iter=3, random_state=0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 3 epochs on purpose
        clf.fit(x, y)
    return clf, x, y


def sklearn_backprop(clf, x, y, alpha, sample_weight=None):
    """scikit-learn's own loss and coef/intercept gradients on (x, y)."""
    clf.alpha = alpha
    yb = clf._label_binarizer.transform(y)
    acts = [x] + [None] * (clf.n_layers_ - 1)
    deltas = [None] * (len(acts) - 1)
    cg = [np.empty_like(c) for c in clf.coefs_]
    ig = [np.empty_like(b) for b in clf.intercepts_]
    loss, cg, ig = clf._backprop(x, yb, sample_weight, acts, deltas, cg, ig)
    return loss, [c.copy() for c in cg], [b.copy() for b in ig]


def named(clf):
    d = {f"coefs_{i}": c for i, c in enumerate(clf.coefs_)}
    d.update({f"intercepts_{i}": b for i, b in enumerate(clf.intercepts_)})
    return d


@pytest.mark.parametrize("n, weighted", [(50, False), (30, False), (600, False), (50, True)])
def test_sklearn_mlp_penalty_and_gradient(n, weighted):
    """alpha/(2n)·Σ‖coef‖² with n the step's samples (30: a last partial batch),
    or their weight sum with sample_weight; intercepts never penalised."""
    nn = pytest.importorskip("sklearn.neural_network")
    datasets = pytest.importorskip("sklearn.datasets")
    clf, x, y = fitted_mlp(nn, datasets)
    alpha, m = 3e-3, x.shape[0]
    xb, yb = x[:n], y[:n]
    sw = np.random.default_rng(1).integers(1, 4, n).astype(float) if weighted else None
    divisor = int(sw.sum()) if weighted else n
    loss_a, cg_a, ig_a = sklearn_backprop(clf, xb, yb, alpha, sw)
    loss_0, cg_0, ig_0 = sklearn_backprop(clf, xb, yb, 0.0, sw)
    lam = convert(alpha, "sklearn_mlp", "ng", batch_size=divisor, m=max(m, divisor))
    reg = L2(lam, scale="samples", m=max(m, divisor), exclude=no_decay_1d)
    params = named(clf)
    assert reg.penalty(params) == pytest.approx(loss_a - loss_0, rel=1e-10)
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    reg.grad_(grads, params)
    for i in range(len(clf.coefs_)):
        np.testing.assert_allclose(grads[f"coefs_{i}"], cg_a[i] - cg_0[i], rtol=1e-9,
                                   atol=1e-12 * np.abs(cg_a[i]).max())
        np.testing.assert_array_equal(ig_a[i], ig_0[i])
    if divisor != m:   # the training-set size in place of the step's n is wrong
        wrong = L2(alpha, scale="samples", m=m, exclude=no_decay_1d)
        assert wrong.penalty(params) != pytest.approx(loss_a - loss_0, rel=1e-3)


@pytest.mark.parametrize("early_stopping, rows", [
    (False, [40, 40, 40, 40, 40, 30]),          # 230 = 5·40 + 30
    (True, [40, 40, 40, 40, 40, 7]),            # 23 of 230 held out: 207 = 5·40 + 7
])
def test_sklearn_mlp_steps_and_their_n(early_stopping, rows):
    """The n of each step: batch_size, a short last batch, and with
    early_stopping a training set smaller by validation_fraction."""
    nn = pytest.importorskip("sklearn.neural_network")
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_digits(return_X_y=True)
    x, y = x[:230] / 16.0, y[:230]
    clf = nn.MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", batch_size=40, max_iter=2,
                           random_state=0, early_stopping=early_stopping,
                           n_iter_no_change=5)
    seen = []
    original = clf._backprop

    def spy(xb, *args, **kwargs):
        seen.append(xb.shape[0])
        return original(xb, *args, **kwargs)

    clf._backprop = spy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x, y)
    assert seen == rows * 2
    # Ng's λ on the m samples sklearn trains on: alpha·m/n
    m = sum(rows)
    assert convert(3e-3, "sklearn_mlp", "ng", batch_size=40, m=m) == pytest.approx(
        3e-3 * m / 40, rel=1e-15)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_sklearn_alpha_is_coupled_under_its_solver(solver):
    """scikit-learn's update with the alpha term in the gradient is torch's Adam
    (or SGD with Nesterov momentum 0.9, sklearn's default) with
    weight_decay = alpha/n: coupled L2, rescaled by the optimizer."""
    torch = pytest.importorskip("torch")
    nn = pytest.importorskip("sklearn.neural_network")
    datasets = pytest.importorskip("sklearn.datasets")
    opt_mod = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    clf, x, y = fitted_mlp(nn, datasets)
    alpha, n, lr = 3e-3, 50, 1e-2
    wd = convert(alpha, "sklearn_mlp", "torch_adam" if solver == "adam" else "torch_sgd",
                 batch_size=n)
    start = [c.copy() for c in clf.coefs_]
    params = [c.copy() for c in start]
    if solver == "adam":
        # eps out of the way: sklearn adds it to √v, torch to the bias-corrected
        # √v̂, which differ where the only gradient is the tiny alpha term
        sk_opt = opt_mod.AdamOptimizer(params, learning_rate_init=lr, epsilon=1e-30)
        tp = [torch.nn.Parameter(torch.tensor(c)) for c in start]
        t_opt = torch.optim.Adam(tp, lr=lr, eps=1e-30, weight_decay=wd)
    else:
        sk_opt = opt_mod.SGDOptimizer(params, learning_rate_init=lr, momentum=0.9,
                                      nesterov=True)
        tp = [torch.nn.Parameter(torch.tensor(c)) for c in start]
        t_opt = torch.optim.SGD(tp, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    for step in range(3):
        xb, yb = x[step * n:(step + 1) * n], y[step * n:(step + 1) * n]
        for c, p in zip(clf.coefs_, params):
            c[...] = p
        _, cg, _ = sklearn_backprop(clf, xb, yb, alpha)
        _, data, _ = sklearn_backprop(clf, xb, yb, 0.0)
        sk_opt.update_params(params, cg)
        for p, g in zip(tp, data):
            p.grad = torch.tensor(g)
        t_opt.step()
    assert_close(dict(enumerate(params)), {i: p.detach().numpy() for i, p in enumerate(tp)},
                 rtol=1e-9)


# ---------------------------------------------------------------------------
# optax and Keras 3
# ---------------------------------------------------------------------------

def test_optax_adamw_and_add_decayed_weights():
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    assert inspect.signature(optax.adamw).parameters["weight_decay"].default == 1e-4
    lr, wd = 0.01, 0.1
    ws, gs = weights_and_grads(4)
    jw = {k: jnp.asarray(v) for k, v in ws.items()}
    jg = {k: jnp.asarray(v) for k, v in gs.items()}
    # optax.adamw: decay_ (decoupled, × lr) then Adam without decay
    ref = optax.apply_updates(jw, optax.adamw(lr, weight_decay=wd).update(
        jg, optax.adamw(lr, weight_decay=wd).init(jw), jw)[0])
    mine = {k: v.copy() for k, v in ws.items()}
    L2.from_convention(wd, "optax_adamw").decay_(mine, lr)
    adam = optax.adam(lr)
    upd, _ = adam.update(jg, adam.init(jw), jw)
    got = optax.apply_updates({k: jnp.asarray(v) for k, v in mine.items()}, upd)
    assert_close({k: np.asarray(v) for k, v in got.items()},
                 {k: np.asarray(v) for k, v in ref.items()})
    # add_decayed_weights before sgd: wd·w added to the gradient, coupled as torch SGD's
    chain = optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr))
    upd, _ = chain.update(jg, chain.init(jw), jw)
    ref = optax.apply_updates(jw, upd)
    grads = {k: v.copy() for k, v in gs.items()}
    L2.from_convention(wd, "torch_sgd").grad_(grads, ws)
    l2fast.add_scaled_(ws, grads, -lr)
    assert_close(ws, {k: np.asarray(v) for k, v in ref.items()})


def test_keras_regularizer_and_optimizer_weight_decay():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("these checks run Keras on its jax backend")
    w = np.array([[1.0, -2.0], [3.0, 0.5]], np.float32)
    assert inspect.signature(keras.regularizers.L2).parameters["l2"].default == 0.01
    assert keras.optimizers.AdamW().weight_decay == 0.004
    # keras.regularizers.L2(l2): l2·Σw², the coupled convention "keras" (c = 2·l2)
    got = L2.from_convention(0.01, "keras").penalty([w])
    assert got == pytest.approx(float(keras.regularizers.L2(0.01)(w)), rel=1e-6)
    assert got == pytest.approx(0.01 * 14.25, rel=1e-15)
    # Keras 3 optimizers' weight_decay: w −= lr·wd·w before the update (decoupled)
    lr, wd = 0.1, 0.05
    for opt in (keras.optimizers.SGD(learning_rate=lr, weight_decay=wd),
                keras.optimizers.AdamW(learning_rate=lr, weight_decay=wd)):
        var = keras.Variable(w)
        opt.build([var])
        opt.apply([np.zeros_like(w)], [var])
        mine = [w.copy()]
        L2.from_convention(wd, "keras_decay").decay_(mine, lr)
        assert_close({0: mine[0]}, {0: np.asarray(var.value)})
