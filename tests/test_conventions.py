"""l2fast.conventions: each λ convention against the real library that uses it.

PyTorch (SGD, AdamW) and scikit-learn (MLPClassifier) are run for real when
installed; Keras and tf.nn.l2_loss are checked by hand-worked numbers from
their documented formulas.
"""
import inspect
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import l2fast
from l2fast import L2, conventions, no_decay_1d
from l2fast.conventions import convert

CONTEXT = dict(m=50000, N=35_000_000, batch_size=128, lr=1e-3, epochs=200)


# ---------------------------------------------------------------------------
# Hand-worked numbers
# ---------------------------------------------------------------------------

# w = [[1, -2], [3, 0]] and [0.5]: sum of squares 1 + 4 + 9 + 0 + 0.25 = 14.25
HAND = [np.array([[1.0, -2.0], [3.0, 0.0]]), np.array([0.5])]


def test_keras_l2_by_hand():
    # keras.regularizers.L2(l2=0.01)(w) = 0.01 * sum(w**2) = 0.01 * 14.25
    lam = convert(0.01, "keras", "none")
    assert lam == 0.02
    assert L2(lam, scale="none").penalty(HAND) == pytest.approx(0.1425, rel=1e-15)
    # the same through Ng's λ with m = 1000: λ = 2 * 0.01 * 1000 = 20, 20 / 2000 * 14.25
    lam_ng = convert(0.01, "keras", "ng", m=1000)
    assert lam_ng == 20.0
    assert L2(lam_ng, scale="samples", m=1000).penalty(HAND) == pytest.approx(0.1425, rel=1e-15)


def test_tf_l2_loss_by_hand():
    # tf.nn.l2_loss(w) = sum(w**2) / 2 = 7.125; 0.003 * 7.125 = 0.021375
    lam = convert(0.003, "tf_l2_loss", "none")
    assert lam == 0.003
    assert L2(lam, scale="none").penalty(HAND) == pytest.approx(0.021375, rel=1e-15)
    # Keras' l2 for the same penalty is half of λ
    assert convert(0.003, "tf_l2_loss", "keras") == 0.0015


@pytest.mark.parametrize("name, value, expected", [
    ("ng", 0.5, 0.5 / 50000),
    ("per_param", 7.0, 7.0 / 35_000_000),
    ("tf_l2_loss", 0.003, 0.003),
    ("keras", 0.01, 0.02),
    ("torch_sgd", 5e-4, 5e-4),
    ("torch_adamw", 0.01, 0.01),
    ("sklearn_mlp", 1e-4, 1e-4 / 128),
    ("bengio_batch", 0.5, 0.5 / 50000),
    ("decay_per_step", 1e-5, 1e-5 / 1e-3),
    ("adamw_normalized", 0.05, 0.05 * math.sqrt(128 / (50000 * 200)) / 1e-3),
])
def test_coefficient_of_each_convention(name, value, expected):
    assert conventions.coef(value, name, **CONTEXT) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("scale, ctx", [("samples", dict(m=600)), ("none", {}),
                                        ("params", dict(N=6))])
def test_l2_scales_are_the_conventions_of_the_same_name(scale, ctx):
    ws = [np.ones((2, 3))]
    reg = L2(3.0, scale=scale, **{k: v for k, v in ctx.items() if k != "N"})
    assert reg.coef(ws) == pytest.approx(conventions.coef(3.0, scale, **ctx), rel=1e-15)


def test_batch_scale_is_ng_on_a_summed_loss():
    # per minibatch of B, penalty λB/(2m)·S on a loss summed over B samples;
    # divided by B (the averaged loss) that is λ/(2m)·S, Ng's penalty
    reg = L2(2.0, scale="batch", m=1000, batch_size=50)
    assert reg.coef() == 2.0 * 50 / 1000
    assert convert(2.0, "batch", "ng", m=1000) == 2.0
    assert reg.coef() / 50 == pytest.approx(conventions.coef(2.0, "bengio_batch", m=1000))


# ---------------------------------------------------------------------------
# Exactness
# ---------------------------------------------------------------------------

NAMES = conventions.names()
positive = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False)
contexts = st.fixed_dictionaries({
    "m": st.integers(1, 10**8),
    "N": st.integers(1, 10**11),
    "batch_size": st.integers(1, 10**5),
    "lr": st.floats(1e-7, 10.0),
    "epochs": st.integers(1, 10**4),
})


@settings(max_examples=300, deadline=None)
@given(x=positive, a=st.sampled_from(NAMES), b=st.sampled_from(NAMES), ctx=contexts)
def test_round_trip_within_one_ulp(x, a, b, ctx):
    y = convert(x, a, b, **ctx)
    back = convert(y, b, a, **ctx)
    assert abs(back - x) <= math.ulp(x)


@settings(max_examples=200, deadline=None)
@given(x=positive, a=st.sampled_from(NAMES), ctx=contexts)
def test_identity_and_exact_powers_of_two(x, a, ctx):
    assert convert(x, a, a, **ctx) == x
    assert convert(x, "keras", "tf_l2_loss") == 2 * x
    assert convert(x, "torch_adamw", "torch_sgd") == x


def test_correctly_rounded():
    # 0.1 / 3 in exact arithmetic, rounded once (Python's int division is
    # correctly rounded): convert must not round twice
    from fractions import Fraction
    exact = Fraction(0.1) * 7 / 3
    assert convert(0.1, "per_param", "ng", N=3, m=7) == float(exact)


# ---------------------------------------------------------------------------
# Errors and the table
# ---------------------------------------------------------------------------

def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as e:
        convert(1.0, "caffe", "ng", m=10)
    for name in NAMES + ["samples", "params", "none", "batch"]:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="target convention 'ngg'"):
        convert(1.0, "ng", "ngg", m=10)


@pytest.mark.parametrize("name", [n for n in NAMES if conventions.CONVENTIONS[n].needs])
def test_missing_context_names_the_key(name):
    for key in conventions.CONVENTIONS[name].needs:
        ctx = {k: v for k, v in CONTEXT.items() if k != key}
        for args in [(1.0, name, "torch_sgd"), (1.0, "torch_sgd", name)]:
            with pytest.raises(ValueError, match=rf"needs {key}, ") as e:
                convert(*args, **ctx)
            assert f"{key}=..." in str(e.value)


def test_bad_context_and_values():
    with pytest.raises(ValueError, match="unknown context key 'n'"):
        convert(1.0, "sklearn_mlp", "ng", n=200, m=1000)
    for bad in (0, -5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="m must be a positive finite number"):
            convert(1.0, "ng", "torch_sgd", m=bad)
    with pytest.raises(ValueError, match="finite"):
        convert(float("inf"), "ng", "ng", m=1)
    with pytest.raises(TypeError):
        convert("0.1", "keras", "ng", m=1)
    # numpy scalars are fine as context
    assert convert(1.0, "ng", "torch_sgd", m=np.float32(4)) == 0.25
    assert convert(1.0, "ng", "torch_sgd", m=np.int64(4)) == 0.25


def test_torch_adamw_needs_lr_only_for_per_step_decay():
    assert convert(0.01, "torch_adamw", "torch_sgd") == 0.01
    with pytest.raises(ValueError, match="needs lr"):
        convert(0.01, "torch_adamw", "decay_per_step")
    assert convert(0.01, "torch_adamw", "decay_per_step", lr=0.5) == 0.005


def test_table():
    text = conventions.table()
    assert isinstance(text, str)
    lines = text.splitlines()
    assert len(lines) == 2 + len(NAMES)
    for name, line in zip(NAMES, lines[2:]):
        conv = conventions.CONVENTIONS[name]
        assert line.startswith(f"| {name} ")
        assert conv.rule in line and conv.coef in line
    assert "λ/(2m)·Σ‖w‖²" in text and "alpha/(2n)" in text and "√(b/(B·T))" in text


# ---------------------------------------------------------------------------
# PyTorch, for real
# ---------------------------------------------------------------------------

SHAPES = {"fc1.weight": (32, 20), "fc1.bias": (32,), "norm.weight": (32,),
          "fc2.weight": (5, 32), "fc2.bias": (5,)}


def _weights_and_grads(seed=0):
    rng = np.random.default_rng(seed)
    ws = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    gs = {k: (0.1 * rng.standard_normal(s)).astype(np.float32) for k, s in SHAPES.items()}
    return ws, gs


def _torch_params(torch, ws, gs):
    ps = {}
    for k in ws:
        p = torch.nn.Parameter(torch.tensor(ws[k]))
        p.grad = torch.tensor(gs[k])
        ps[k] = p
    return ps


def _assert_close(got, ref):
    """Each array equal to 1e-6 relative (of the array's largest value)."""
    for k in ref:
        ref_k = np.asarray(ref[k], dtype=np.float64)
        tol = 1e-6 * np.abs(ref_k).max()
        np.testing.assert_allclose(np.asarray(got[k], np.float64), ref_k, rtol=1e-6, atol=tol,
                                   err_msg=k)


def _assert_differs(got, ref):
    assert any(not np.allclose(got[k], ref[k], rtol=1e-5, atol=0) for k in ref)


@pytest.mark.parametrize("scale", ["none", "samples"])
def test_torch_sgd_step(scale):
    torch = pytest.importorskip("torch")
    lr, wd, m = 0.1, 0.05, 60000
    ws, gs = _weights_and_grads()
    ps = _torch_params(torch, ws, gs)
    torch.optim.SGD(list(ps.values()), lr=lr, weight_decay=wd).step()
    ref = {k: p.detach().numpy() for k, p in ps.items()}

    lam = convert(wd, "torch_sgd", scale, m=m)
    reg = L2(lam, scale=scale, m=m if scale == "samples" else None)
    reg.grad_(gs, ws)                      # g += (λ/m)·w, coupled
    l2fast.add_scaled_(ws, gs, -lr)        # the SGD step
    _assert_close(ws, ref)

    # the test can fail: λ taken without conversion gives another step
    ws2, gs2 = _weights_and_grads()
    L2(wd, scale="samples", m=m).grad_(gs2, ws2)
    l2fast.add_scaled_(ws2, gs2, -lr)
    _assert_differs(ws2, ref)


def test_torch_sgd_param_groups_are_exclude():
    torch = pytest.importorskip("torch")
    lr, wd = 0.1, 0.05
    ws, gs = _weights_and_grads(1)
    ps = _torch_params(torch, ws, gs)
    groups = [{"params": [p for p in ps.values() if p.ndim > 1], "weight_decay": wd},
              {"params": [p for p in ps.values() if p.ndim <= 1], "weight_decay": 0.0}]
    torch.optim.SGD(groups, lr=lr).step()
    ref = {k: p.detach().numpy() for k, p in ps.items()}

    reg = L2(convert(wd, "torch_sgd", "ng", m=1000), scale="samples", m=1000,
             exclude=no_decay_1d)
    reg.grad_(gs, ws)
    l2fast.add_scaled_(ws, gs, -lr)
    _assert_close(ws, ref)


@pytest.mark.parametrize("scale", ["none", "samples", "params"])
def test_torch_adamw_step(scale):
    """AdamW = decoupled decay, then Adam: l2fast's decay_ followed by torch's
    Adam step without decay gives torch's AdamW step."""
    torch = pytest.importorskip("torch")
    lr, wd, m = 0.01, 0.1, 50000
    ws, gs = _weights_and_grads(2)
    ps = _torch_params(torch, ws, gs)
    torch.optim.AdamW(list(ps.values()), lr=lr, weight_decay=wd).step()
    ref = {k: p.detach().numpy().copy() for k, p in ps.items()}

    n = sum(int(np.prod(s)) for s in SHAPES.values())
    lam = convert(wd, "torch_adamw", scale, m=m, N=n)
    reg = L2(lam, scale=scale, m=m if scale == "samples" else None)
    qs = _torch_params(torch, ws, gs)
    reg.decay_(qs, lr)                     # w *= 1 - lr·c, on the tensors in place
    torch.optim.AdamW(list(qs.values()), lr=lr, weight_decay=0.0).step()
    got = {k: q.detach().numpy() for k, q in qs.items()}
    _assert_close(got, ref)

    # without the decay the step is measurably different
    rs = _torch_params(torch, ws, gs)
    torch.optim.AdamW(list(rs.values()), lr=lr, weight_decay=0.0).step()
    _assert_differs({k: r.detach().numpy() for k, r in rs.items()}, ref)


def test_adamw_normalized_is_torch_adamw_decay():
    """Loshchilov & Hutter's λ = λ_norm·√(b/(B·T)) is the fraction of each
    weight AdamW removes per step (zero gradients: the Adam part is 0)."""
    torch = pytest.importorskip("torch")
    lam_norm, b, big_b, t, lr = 0.05, 128, 50000, 200, 1e-3
    wd = convert(lam_norm, "adamw_normalized", "torch_adamw",
                 batch_size=b, m=big_b, epochs=t, lr=lr)
    ws, _ = _weights_and_grads(3)
    zeros = {k: np.zeros_like(w) for k, w in ws.items()}
    ps = _torch_params(torch, ws, zeros)
    torch.optim.AdamW(list(ps.values()), lr=lr, weight_decay=wd).step()
    shrink = 1.0 - lam_norm * math.sqrt(b / (big_b * t))       # by hand
    _assert_close({k: p.detach().numpy() for k, p in ps.items()},
                  {k: w.astype(np.float64) * shrink for k, w in ws.items()})
    # and l2fast's decay_ with the same wd does the same
    L2(wd, scale="none").decay_(ws, lr)
    _assert_close(ws, {k: p.detach().numpy() for k, p in ps.items()})


# ---------------------------------------------------------------------------
# scikit-learn, for real
# ---------------------------------------------------------------------------

def _fitted_mlp(sklearn_nn, datasets, batch_size):
    x, y = datasets.load_digits(return_X_y=True)
    x = x[:600] / 16.0
    y = y[:600]
    clf = sklearn_nn.MLPClassifier(hidden_layer_sizes=(24, 12), alpha=3e-3, solver="adam",
                                   batch_size=batch_size, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 5 epochs on purpose
        clf.fit(x, y)
    return clf, x, y


def _sklearn_loss_and_grads(clf, x, y, alpha):
    """scikit-learn's own loss and coef/intercept gradients on (x, y)."""
    clf.alpha = alpha
    yb = clf._label_binarizer.transform(y)
    activations = [x] + [None] * (clf.n_layers_ - 1)
    deltas = [None] * (len(activations) - 1)
    cg = [np.empty_like(c) for c in clf.coefs_]
    ig = [np.empty_like(b) for b in clf.intercepts_]
    if "sample_weight" in inspect.signature(clf._backprop).parameters:
        loss, cg, ig = clf._backprop(x, yb, None, activations, deltas, cg, ig)
    else:
        loss, cg, ig = clf._backprop(x, yb, activations, deltas, cg, ig)
    return loss, [c.copy() for c in cg], [b.copy() for b in ig]


def _named(clf):
    d = {f"coefs_{i}": c for i, c in enumerate(clf.coefs_)}
    d.update({f"intercepts_{i}": b for i, b in enumerate(clf.intercepts_)})
    return d


@pytest.mark.parametrize("n", [50, 600])
def test_sklearn_mlp_penalty_and_gradient(n):
    nn = pytest.importorskip("sklearn.neural_network")
    datasets = pytest.importorskip("sklearn.datasets")
    clf, x, y = _fitted_mlp(nn, datasets, batch_size=50)
    alpha, m = 3e-3, x.shape[0]
    xb, yb = x[:n], y[:n]   # one gradient step's samples
    loss_a, cg_a, ig_a = _sklearn_loss_and_grads(clf, xb, yb, alpha)
    loss_0, cg_0, ig_0 = _sklearn_loss_and_grads(clf, xb, yb, 0.0)
    term = loss_a - loss_0
    assert term > 1e-6

    # in l2fast: Ng's λ over the m training samples, intercepts excluded
    lam = convert(alpha, "sklearn_mlp", "ng", batch_size=n, m=m)
    reg = L2(lam, scale="samples", m=m, exclude=no_decay_1d)
    params = _named(clf)
    assert reg.penalty(params) == pytest.approx(term, rel=1e-10)
    assert reg.penalty(clf.coefs_) == pytest.approx(term, rel=1e-10)

    grads = {k: np.zeros_like(v) for k, v in params.items()}
    reg.grad_(grads, params)
    for i in range(len(clf.coefs_)):
        np.testing.assert_allclose(grads[f"coefs_{i}"], cg_a[i] - cg_0[i],
                                   rtol=1e-9, atol=1e-12 * np.abs(cg_a[i]).max())
        # scikit-learn never penalises intercepts, and neither does no_decay_1d
        np.testing.assert_array_equal(ig_a[i], ig_0[i])
        assert not grads[f"intercepts_{i}"].any()

    # the wrong n (the training set size instead of the step's samples) is off
    if n != m:
        wrong = L2(alpha, scale="samples", m=m, exclude=no_decay_1d)
        assert wrong.penalty(params) != pytest.approx(term, rel=1e-3)


def test_sklearn_mlp_n_is_the_batch_size():
    """Under adam/sgd scikit-learn calls its loss on minibatches of batch_size
    samples: that is the n of alpha/(2n)."""
    nn = pytest.importorskip("sklearn.neural_network")
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_digits(return_X_y=True)
    x, y = x[:230] / 16.0, y[:230]
    clf = nn.MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", batch_size=40,
                           max_iter=2, random_state=0)
    rows = []
    original = clf._backprop

    def spy(xb, *args, **kwargs):
        rows.append(xb.shape[0])
        return original(xb, *args, **kwargs)

    clf._backprop = spy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x, y)
    # 230 = 5 * 40 + 30, per epoch (10 % of the data is not held out: no early stopping)
    assert rows == [40, 40, 40, 40, 40, 30] * 2
