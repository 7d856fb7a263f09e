"""l2fast.L2: coefficients, penalty, coupled and decoupled steps, masks, dict
params, the selection cache and the error messages, against NumPy in float64."""
import gc
import math
import weakref

import numpy as np
import pytest

from l2fast import L2, ParamList, no_decay_1d
from l2fast import reference
from l2fast.reference import exact_sum_squares


def _model(seed=0, dtype=np.float32):
    """A small named model: two weight matrices, biases, a norm scale and a
    scalar temperature, with a 200,000-element embedding so the kernels use
    their threads."""
    rng = np.random.default_rng(seed)
    shapes = {"embed.weight": (1000, 200), "fc1.weight": (64, 200), "fc1.bias": (64,),
              "norm.weight": (64,), "fc2.weight": (10, 64), "fc2.bias": (10,),
              "temperature": ()}
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def _copy(d):
    return {k: v.copy() for k, v in d.items()}


MATRICES = ["embed.weight", "fc1.weight", "fc2.weight"]


# ---------------------------------------------------------------------------
# Coefficients
# ---------------------------------------------------------------------------

def test_coef_of_each_scale():
    ws = [np.ones((2, 3)), np.ones(4)]
    assert L2(0.5, scale="samples", m=1000).coef() == 0.5 / 1000
    assert L2(0.5, scale="none").coef() == 0.5
    # Bengio's λ·Σ‖w‖² (no ½) spread over the minibatches of a summed loss: 2λ/m
    assert L2(0.5, scale="batch", m=1000).coef() == 2 * 0.5 / 1000
    assert L2(0.5, scale="params").coef(ws) == 0.5 / 10
    # N counts the arrays penalised only
    assert L2(0.5, scale="params", exclude=no_decay_1d).coef(ws) == 0.5 / 6


def test_samples_coef_does_not_depend_on_the_model():
    small, big = [np.ones((10, 10))], [np.ones((1000, 1000))]
    reg = L2(1.0, scale="samples", m=100)
    assert reg.coef(small) == reg.coef(big) == 0.01
    per_param = L2(1.0, scale="params")
    assert per_param.coef(small) == 1e-2 and per_param.coef(big) == 1e-6


# ---------------------------------------------------------------------------
# penalty, grad_, decay_, penalty_decay_ against NumPy
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["dict", "list", "paramlist"])
def test_penalty(dtype, form):
    params = _model(dtype=dtype)
    reg = L2(3.0, scale="samples", m=600, exclude=no_decay_1d)
    expected = 3.0 / (2 * 600) * exact_sum_squares([params[k] for k in MATRICES])
    arg = {"dict": params, "list": list(params.values()),
           "paramlist": ParamList(params)}[form]
    assert reg.penalty(arg) == pytest.approx(expected, rel=1e-13)
    # without exclude every array counts
    everything = 3.0 / 1200 * exact_sum_squares(list(params.values()))
    assert L2(3.0, scale="samples", m=600).penalty(arg) == pytest.approx(everything, rel=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_adds_coef_times_w_to_kept_arrays_only(dtype):
    params = _model(dtype=dtype)
    rng = np.random.default_rng(1)
    grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
    before = _copy(grads)
    reg = L2(0.3, scale="batch", m=1000, exclude=no_decay_1d)
    c = 2 * 0.3 / 1000
    # grads in another key order, with an extra array: paired by key
    shuffled = {k: grads[k] for k in reversed(list(grads))}
    shuffled["unused"] = np.zeros(3, dtype)
    reg.grad_(shuffled, params)
    for k in params:
        if k in MATRICES:
            ref = before[k].copy()
            reference.add_scaled_(ref, params[k], c)
            np.testing.assert_array_equal(grads[k], ref, err_msg=k)
        else:
            np.testing.assert_array_equal(grads[k], before[k], err_msg=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decay_and_fused_penalty_decay(dtype):
    params = _model(dtype=dtype)
    original = _copy(params)
    reg = L2(5.0, scale="samples", m=50, exclude=no_decay_1d)
    lr, c = 0.2, 5.0 / 50
    expected_penalty = c / 2 * exact_sum_squares([original[k] for k in MATRICES])

    fused = _copy(params)
    got = reg.penalty_decay_(fused, lr)
    assert got == reg.penalty(original)
    assert got == pytest.approx(expected_penalty, rel=1e-13)
    reg.decay_(params, lr)
    for k in params:
        if k in MATRICES:
            ref = original[k].copy()
            reference.scale_(ref, 1 - lr * c)
        else:
            ref = original[k]
        np.testing.assert_array_equal(params[k], ref, err_msg=k)
        np.testing.assert_array_equal(fused[k], params[k], err_msg=k)


def test_one_array_and_lists():
    w = np.array([[3.0, 4.0]])
    reg = L2(2.0, scale="none")
    assert reg.penalty(w) == 25.0
    g = np.zeros_like(w)
    reg.grad_(g, w)
    np.testing.assert_array_equal(g, [[6.0, 8.0]])
    assert reg.penalty_decay_(w, 0.25) == 25.0
    np.testing.assert_array_equal(w, [[1.5, 2.0]])
    # generators are fine (not cached)
    assert reg.penalty(a for a in [np.ones(4)]) == 4.0


def test_empty_selection_is_a_no_op():
    ws = [np.ones(3), np.ones(2)]
    reg = L2(1.0, scale="none", exclude=no_decay_1d)
    assert reg.penalty(ws) == 0.0
    assert reg.penalty_decay_(ws, 0.5) == 0.0
    gs = [np.zeros(3), np.zeros(2)]
    reg.grad_(gs, ws)
    assert not gs[0].any() and not gs[1].any()
    assert ws[0].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="all are excluded"):
        L2(1.0, scale="params", exclude=no_decay_1d).penalty(ws)


def test_params_scale_divides_by_the_penalised_elements():
    ws = {"w": np.full((4, 5), 2.0), "b": np.full(5, 100.0)}
    reg = L2(1.0, scale="params", exclude=no_decay_1d)
    # lam / (2 N) * S with N = 20, S = 20 * 4
    assert reg.penalty(ws) == 1.0 / 40 * 80


# ---------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------

def test_no_decay_1d():
    assert no_decay_1d("b", np.ones(3)) and no_decay_1d("t", np.float64(1.0).reshape(()))
    assert not no_decay_1d("w", np.ones((3, 1)))


def test_exclude_predicate_gets_names_or_positions():
    seen = []

    def skip_bias(name, a):
        seen.append((name, a.shape))
        return isinstance(name, str) and name.endswith("bias")

    params = {"w": np.ones((2, 2)), "bias": np.ones(2)}
    assert L2(1.0, scale="none", exclude=skip_bias).penalty(params) == 2.0
    assert seen == [("w", (2, 2)), ("bias", (2,))]
    seen.clear()
    L2(1.0, scale="none", exclude=skip_bias).penalty(list(params.values()))
    assert seen == [(0, (2, 2)), (1, (2,))]


def test_exclude_as_booleans():
    ws = [np.full(2, 1.0), np.full(2, 2.0), np.full(2, 3.0)]
    reg = L2(2.0, scale="none", exclude=[False, True, False])
    assert reg.penalty(ws) == 2 + 18
    reg = L2(2.0, scale="none", exclude=np.array([True, False, True]))
    assert reg.penalty(ws) == 8
    with pytest.raises(ValueError, match="exclude has 3 entries but params has 2 arrays"):
        reg.penalty(ws[:2])
    with pytest.raises(TypeError, match="predicate"):
        L2(1.0, scale="none", exclude=["fc.bias"])
    with pytest.raises(TypeError, match="predicate"):
        L2(1.0, scale="none", exclude="bias")


def test_paramlist_params_and_grads():
    params = _model(3)
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    pl, gl = ParamList(params), ParamList(grads)
    reg = L2(1.0, scale="samples", m=4, exclude=no_decay_1d)
    reg.grad_(gl, pl)
    for k in params:
        expected = 0.25 * params[k] if k in MATRICES else np.zeros_like(params[k])
        np.testing.assert_allclose(grads[k], expected, rtol=1e-7, err_msg=k)
    # no exclude: the ParamList's own pairing is used
    gl2 = ParamList({k: np.zeros_like(v) for k, v in params.items()})
    L2(1.0, scale="none").grad_(gl2, pl)
    for g, (k, w) in zip(gl2.arrays, params.items()):
        np.testing.assert_array_equal(g, w, err_msg=k)


def test_list_grads_with_dict_params_pair_by_position():
    params = {"a": np.ones((2, 2)), "b": np.ones(2), "c": np.full((1, 3), 2.0)}
    grads = [np.zeros((2, 2)), np.zeros(2), np.zeros((1, 3))]
    L2(1.0, scale="none", exclude=no_decay_1d).grad_(grads, params)
    assert grads[0].tolist() == [[1, 1], [1, 1]] and not grads[1].any()
    assert grads[2].tolist() == [[2, 2, 2]]


# ---------------------------------------------------------------------------
# The selection cache
# ---------------------------------------------------------------------------

def test_predicate_runs_once_per_params_object_and_sees_changes():
    calls = []

    def pred(name, a):
        calls.append(name)
        return a.ndim <= 1

    ws = [np.ones((2, 2)), np.ones(3)]
    reg = L2(1.0, scale="none", exclude=pred)
    for _ in range(3):
        assert reg.penalty(ws) == 2.0
    assert calls == [0, 1]
    ws.append(np.full((1, 1), 3.0))          # same list, one more array
    assert reg.penalty(ws) == 2.0 + 4.5
    ws[0] = np.zeros((2, 2))                 # an array replaced
    assert reg.penalty(ws) == 4.5
    d = {"w": np.ones((2, 2))}
    assert reg.penalty(d) == 2.0
    d["v"] = np.ones((1, 2))                 # a key added
    assert reg.penalty(d) == 3.0


def test_values_changed_in_place_are_seen():
    ws = [np.ones((2, 2))]
    reg = L2(1.0, scale="none")
    assert reg.penalty(ws) == 2.0
    ws[0] *= 3
    assert reg.penalty(ws) == 18.0


def test_cache_is_bounded_and_can_be_cleared():
    reg = L2(1.0, scale="none")
    refs = []
    for _ in range(10):
        a = np.ones((3, 3))
        refs.append(weakref.ref(a))
        reg.penalty([a])
        del a
    gc.collect()
    assert sum(r() is not None for r in refs) <= 4
    reg.clear_cache()
    gc.collect()
    assert all(r() is None for r in refs)


def test_torch_tensors_are_looked_at_on_every_call():
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(3, 2)
    params = dict(lin.named_parameters())
    reg = L2(1.0, scale="none", exclude=no_decay_1d)
    assert reg.penalty(params) == pytest.approx(0.5 * exact_sum_squares(lin.weight), rel=1e-12)
    with torch.no_grad():
        lin.weight.data = torch.full((2, 3), 2.0)   # new storage, same Parameter
    assert reg.penalty(params) == 12.0
    with torch.no_grad():
        reg.decay_(params, 0.5)                      # in place, on the tensor
    assert lin.weight.detach().numpy().tolist() == [[1.0] * 3] * 2


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

def test_missing_context_names_the_key():
    with pytest.raises(ValueError, match=r"scale='samples' needs m, the number of training"):
        L2(0.1)
    with pytest.raises(ValueError, match=r"scale='batch' does not use batch_size.*2 \* lam / m"):
        L2(0.1, scale="batch", m=1000, batch_size=32)
    with pytest.raises(ValueError, match=r"scale='batch' needs m"):
        L2(0.1, scale="batch")
    with pytest.raises(ValueError, match=r"scale='params' divides lam by N.*coef\(params\)"):
        L2(0.1, scale="params").coef()


def test_unknown_scale_and_unused_context():
    with pytest.raises(ValueError) as e:
        L2(0.1, scale="per_sample")
    for s in ("samples", "params", "none", "batch"):
        assert repr(s) in str(e.value)
    with pytest.raises(ValueError, match="scale='none' does not use m"):
        L2(0.1, scale="none", m=10)
    with pytest.raises(ValueError, match="scale='samples' does not use batch_size"):
        L2(0.1, scale="samples", m=10, batch_size=2)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_numbers(bad):
    with pytest.raises(ValueError, match=r"lam must be (>= 0|finite)"):
        L2(bad, scale="none")
    with pytest.raises(ValueError, match=r"m must be (a positive integer|finite)"):
        L2(1.0, scale="samples", m=bad)
    for count in (0, 2.5, -3):
        with pytest.raises(ValueError, match="m must be a positive integer"):
            L2(1.0, scale="samples", m=count)
    with pytest.raises(TypeError, match="lam must be a real number"):
        L2("0.1", scale="none")


def test_grads_that_do_not_match():
    params = {"w": np.ones((2, 2)), "v": np.ones((3, 1))}
    reg = L2(1.0, scale="none")
    with pytest.raises(ValueError, match="grads has no array named 'v'"):
        reg.grad_({"w": np.zeros((2, 2))}, params)
    with pytest.raises(ValueError, match="grads has 1 arrays but params has 2"):
        reg.grad_([np.zeros((2, 2))], params)
    with pytest.raises(ValueError, match="shape"):
        reg.grad_({"w": np.zeros((2, 2)), "v": np.zeros(3)}, params)


def test_read_only_weights_change_nothing():
    ws = [np.ones((2, 2)), np.ones((2, 2))]
    ws[1].flags.writeable = False
    reg = L2(1.0, scale="none")
    with pytest.raises(ValueError, match="read-only"):
        reg.decay_(ws, 0.5)
    with pytest.raises(ValueError, match="read-only"):
        reg.penalty_decay_(ws, 0.5)
    assert ws[0].tolist() == [[1, 1], [1, 1]]
    # an excluded read-only array is fine: it is not touched
    L2(1.0, scale="none", exclude=[False, True]).decay_(ws, 0.5)
    assert ws[0].tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_check_finite():
    ws = {"w": np.ones((2, 2)), "bad": np.array([[1.0, np.nan]])}
    reg = L2(1.0, scale="none", check_finite=True)
    with pytest.raises(FloatingPointError, match="'bad'"):
        reg.decay_(ws, 0.1)
    assert ws["w"].tolist() == [[1, 1], [1, 1]]
    assert math.isnan(L2(1.0, scale="none").penalty(ws))


def test_repr():
    r = repr(L2(0.5, scale="batch", m=100, exclude=no_decay_1d))
    assert r == "L2(0.5, scale='batch', m=100, exclude=no_decay_1d)"
    r = repr(L2.from_convention(0.01, "keras"))
    assert r == "L2.from_convention(0.01, 'keras')"


def test_errors_name_params_by_their_original_position_after_exclude():
    b = np.ones(3)
    w = np.ones((2, 2))
    w.flags.writeable = False
    reg = L2(0.1, scale="none", exclude=no_decay_1d)
    with pytest.raises(ValueError, match=r"\[1\] is read-only"):
        reg.decay_([b, w], 0.1)
    with pytest.raises(ValueError, match=r"\[1\] has shape \(3, 2\)"):
        reg.grad_([np.zeros(3), np.zeros((3, 2))], [b, np.ones((2, 2))])
    assert w.tolist() == [[1.0, 1.0], [1.0, 1.0]]


# ---------------------------------------------------------------------------
# One meaning per name, from_convention, lr checks
# ---------------------------------------------------------------------------

def test_scale_names_mean_what_conventions_mean():
    from fractions import Fraction
    from l2fast import conventions
    # the case: L2(scale="batch").coef() and conventions.coef(..., "batch") agree
    assert L2(1e-2, scale="batch", m=1000).coef() == conventions.coef(1e-2, "batch", m=1000)
    assert L2(1e-2, scale="batch", m=1000).coef() == float(Fraction(1e-2) * 2 / 1000)
    for scale, ctx in [("samples", dict(m=600)), ("none", {}), ("batch", dict(m=600))]:
        assert L2(3.0, scale=scale, **ctx).coef() == conventions.coef(3.0, scale, **ctx)
    ws = [np.ones((2, 3))]
    assert L2(3.0, scale="params").coef(ws) == conventions.coef(3.0, "params", N=6)


def test_numbers_of_every_kind():
    from decimal import Decimal
    from fractions import Fraction
    ref = L2(0.1, scale="samples", m=50000).coef()
    assert ref == float(Fraction(0.1) / 50000)
    for m in (np.int64(50000), np.int32(50000), np.float64(50000.0), Fraction(50000),
              Decimal(50000)):
        assert L2(0.1, scale="samples", m=m).coef() == ref, type(m)
    assert L2(Fraction(1, 10), scale="samples", m=50000).coef() == float(Fraction(1, 10) / 50000)
    assert L2(Decimal("0.1"), scale="none").coef() == 0.1
    with pytest.raises(TypeError, match="lam must be a real number"):
        L2(True, scale="none")
    with pytest.raises(ValueError, match="lam must be >= 0"):
        L2(np.float32(-1e-3), scale="none")


def test_from_convention():
    assert L2.from_convention(0.01, "keras").coef() == 0.02
    assert L2.from_convention(0.5, "ng", m=1000).coef() == 0.0005
    assert L2.from_convention(0.5, "bengio_batch", m=1000).coef() == 0.001
    assert L2.from_convention(1e-4, "sklearn_mlp", batch_size=200).coef() == 5e-7
    reg = L2.from_convention(0.05, "torch_adamw", exclude=no_decay_1d)
    assert reg.family == "decoupled" and reg.convention == "torch_adamw"
    # TF Addons' wd is the decay per step: decay_ at the same lr removes exactly wd
    w = [np.ones((2, 2))]
    L2.from_convention(0.25, "tfa_adamw", lr=0.5).decay_(w, 0.5)
    assert w[0].tolist() == [[0.75, 0.75], [0.75, 0.75]]
    # per_param without N divides by the elements penalised at each call
    per_param = L2.from_convention(6.0, "per_param", exclude=no_decay_1d)
    assert per_param.coef([np.ones((2, 3)), np.ones(4)]) == 1.0
    with pytest.raises(ValueError, match="did you mean 'keras'"):
        L2.from_convention(0.01, "kerass")
    with pytest.raises(ValueError, match="needs m="):
        L2.from_convention(0.01, "ng")


def test_lr_checks():
    w = [np.ones((2, 2))]
    reg = L2(0.5, scale="none")
    with pytest.raises(ValueError, match=r"lr·c = 2·0.5 = 1 >= 1"):
        reg.decay_(w, 2.0)
    with pytest.raises(ValueError, match=r">= 1"):
        reg.penalty_decay_(w, 3.0)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        reg.decay_(w, -0.1)
    with pytest.raises(TypeError, match="lr must be a real number"):
        reg.decay_(w, "0.1")
    assert w[0].tolist() == [[1, 1], [1, 1]]
    reg.decay_(w, 0.0)                      # a schedule that reaches 0 is fine
    assert w[0].tolist() == [[1, 1], [1, 1]]
