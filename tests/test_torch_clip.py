"""Global-norm clipping: l2fast.clip_grad_norm_ / global_norm, and the drop-in
l2fast.torch.clip_grad_norm_ / get_total_norm against torch.nn.utils on real
modules after a real backward.

References: torch's own functions on an identical model, and the exact norm
sqrt(math.fsum(squares)) of the float64 gradients (every square of a float32
or 16-bit value is exact in float64, and fsum rounds the sum once)."""
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

import l2fast

torch = pytest.importorskip("torch")
import l2fast.torch as lt  # noqa: E402

ULP_BITS = {torch.float32: 23, torch.bfloat16: 7, torch.float16: 10}
MIN_EXPONENT = {torch.float32: -126, torch.bfloat16: -126, torch.float16: -14}


def transformer():
    return torch.nn.Transformer(d_model=32, nhead=2, num_encoder_layers=1,
                                num_decoder_layers=1, dim_feedforward=64, dropout=0.0)


def cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 3, stride=2), torch.nn.Flatten(), torch.nn.Linear(4 * 7 * 7, 10))


MODELS = {
    "transformer": (transformer, lambda dt: (torch.randn(5, 3, 32, dtype=dt),
                                             torch.randn(4, 3, 32, dtype=dt))),
    "cnn": (cnn, lambda dt: (torch.randn(6, 3, 16, 16, dtype=dt),)),
}


def trained(kind, dtype=torch.float32, seed=0):
    """A model of `kind` after one backward pass (the same for the same seed)."""
    make, data = MODELS[kind]
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nn.Transformer's nested-tensor note
        model = make().to(dtype)
    model(*data(dtype)).float().pow(2).mean().backward()
    return model


def grads_of(model):
    return [p.grad for p in model.parameters() if p.grad is not None]


def exact_norm(tensors):
    """sqrt of the correctly rounded sum of the exact float64 squares."""
    values = np.concatenate([t.detach().double().numpy().ravel() for t in tensors])
    return math.sqrt(math.fsum((values * values).tolist()))


def ulps_apart(a, b, dtype):
    """|a - b| in units of the last place of `dtype` at |a| (elementwise, max)."""
    a, b = a.double().numpy(), b.double().numpy()
    exponent = np.floor(np.log2(np.maximum(np.abs(a), 2.0 ** MIN_EXPONENT[dtype])))
    return float(np.max(np.abs(a - b) / 2.0 ** (exponent - ULP_BITS[dtype]), initial=0))


def torch_coef(total_norm, max_norm):
    """torch's clipping coefficient, computed as clip_grad_norm_ does (in the
    norm's dtype), as a float."""
    return torch.clamp(max_norm / (total_norm + 1e-6), max=1.0).item()


def within_torch(ours, theirs, coef, t_coef, dtype):
    """ours (g·coef rounded once) and torch's (g·t_coef, t_coef rounded to the
    norm's dtype, from torch's own norm) differ by at most one ulp, plus what
    the two coefficients differ by, in ulps."""
    spread = 2 * abs(t_coef - coef) / coef * 2.0 ** ULP_BITS[dtype]
    return ulps_apart(theirs.float(), ours.float(), dtype) <= 1.0 + spread


# ---------------------------------------------------------------------------
# The drop-in against torch on real modules
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=lambda d: str(d).split(".")[1])
@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("ratio", [0.3, 3.0], ids=["clips", "leaves"])
def test_clip_grad_norm_matches_torch(kind, dtype, ratio):
    theirs, ours = trained(kind, dtype), trained(kind, dtype)
    before = [g.clone() for g in grads_of(ours)]
    exact = exact_norm(before)
    max_norm = ratio * exact
    t_norm = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
    versions = [g._version for g in grads_of(ours)]
    o_norm = lt.clip_grad_norm_(ours.parameters(), max_norm)   # a generator, as torch takes
    assert o_norm.dtype == t_norm.dtype == dtype and o_norm.shape == ()
    # the returned norm: l2fast's float64 norm (within 1e-12 of the exact one) rounded to
    # the gradients' dtype; torch's, summed in that dtype, within a few of its ulps
    norm = l2fast.global_norm(before)
    assert norm == pytest.approx(exact, rel=1e-12)
    assert o_norm.item() == torch.tensor(norm, dtype=dtype).item()
    assert abs(o_norm.item() - t_norm.item()) <= 2.0 ** -ULP_BITS[dtype] * 4 * exact
    coef, t_coef = max_norm / (norm + 1e-6), torch_coef(t_norm, max_norm)
    for g0, g, h, v in zip(before, grads_of(ours), grads_of(theirs), versions):
        if ratio > 1:  # the same decision: left alone, bit for bit, not even touched
            assert torch.equal(g, g0) and torch.equal(h, g0) and g._version == v
            continue
        assert g._version > v
        # one rounding of g * coef (float64), and within 1 ulp of torch's
        want = torch.from_numpy(g0.double().numpy() * coef).to(dtype)
        assert ulps_apart(g.float(), want.float(), dtype) <= 0.5 + 1e-9
        assert within_torch(g, h, coef, t_coef, dtype)


def test_the_core_function_returns_the_float64_norm_and_clips_the_same():
    model, other = trained("transformer"), trained("transformer")
    grads = grads_of(model)
    exact = exact_norm(grads)
    norm = l2fast.clip_grad_norm_(grads, exact / 2)
    assert isinstance(norm, float) and norm == pytest.approx(exact, rel=1e-12)
    lt.clip_grad_norm_(other.parameters(), exact / 2)
    for g, h in zip(grads, grads_of(other)):
        assert torch.equal(g, h)
    assert l2fast.global_norm(grads) == pytest.approx(exact / 2 * exact / (exact + 1e-6),
                                                      rel=1e-6)


@pytest.mark.parametrize("missing", [0, 2])
def test_parameters_without_grad_are_skipped_and_errors_name_their_position(missing):
    model = trained("cnn")
    params = list(model.parameters())
    params[missing].grad = None
    ref = [p.grad.clone() if p.grad is not None else None for p in params]
    norm = lt.clip_grad_norm_(params, 1e-3)
    exact = exact_norm([g for g in ref if g is not None])
    assert norm.item() == pytest.approx(exact, rel=1e-6)
    assert params[missing].grad is None
    params[3].grad = torch._neg_view(params[3].grad)   # a lazy negation: not plain memory
    with pytest.raises(TypeError, match=r"grads\[3\]: cannot view .* without a copy"):
        lt.clip_grad_norm_(params, 1e-3)


def test_no_gradients_and_empty_generators_as_torch():
    model = torch.nn.Linear(3, 2)
    assert torch.equal(lt.clip_grad_norm_(model.parameters(), 1.0), torch.tensor(0.0))
    assert lt.get_total_norm([]).dtype == torch.nn.utils.get_total_norm([]).dtype
    with pytest.warns(UserWarning, match="empty generator, no gradient clipping"):
        lt.clip_grad_norm_((p for p in []), 1.0)


def test_a_generator_is_consumed_once():
    model = trained("cnn")
    pulled = []

    def params():
        for p in model.parameters():
            pulled.append(p)
            yield p
    exact = exact_norm(grads_of(model))
    assert lt.clip_grad_norm_(params(), exact / 4).item() == pytest.approx(exact, rel=1e-6)
    assert len(pulled) == len(list(model.parameters()))
    assert exact_norm(grads_of(model)) == pytest.approx(exact / 4 * exact / (exact + 1e-6),
                                                        rel=1e-6)


def test_a_single_tensor_as_torch():
    p = torch.nn.Parameter(torch.ones(4))
    p.grad = torch.full((4,), 3.0)  # norm 6
    q = torch.nn.Parameter(torch.ones(4))
    q.grad = p.grad.clone()
    assert lt.clip_grad_norm_(p, 1.5).item() == torch.nn.utils.clip_grad_norm_(q, 1.5).item()
    assert torch.allclose(p.grad, q.grad, rtol=2e-7, atol=0)


# ---------------------------------------------------------------------------
# Non-finite norms, other orders, get_total_norm
# ---------------------------------------------------------------------------

def with_grads(values):
    params = [torch.nn.Parameter(torch.zeros(len(v))) for v in values]
    for p, v in zip(params, values):
        p.grad = torch.tensor(v)
    return params


@pytest.mark.parametrize("bad", [math.inf, math.nan], ids=["inf", "nan"])
def test_non_finite_norms_as_torch(bad):
    values = [[bad, 1.0], [2.0, -3.0]]
    ours, theirs = with_grads(values), with_grads(values)
    with pytest.raises(RuntimeError, match=r"The total norm of order 2\.0 for gradients from "
                                           r"`parameters` is non-finite, so it cannot be "
                                           r"clipped"):
        lt.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_(with_grads(values), 1.0, error_if_nonfinite=True)
    assert [p.grad.tolist() for p in ours][1] == [2.0, -3.0]   # nothing written
    o = lt.clip_grad_norm_(ours, 1.0)
    t = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    torch.testing.assert_close(o, t, equal_nan=True)
    for p, q in zip(ours, theirs):  # inf: finite grads times 0, inf * 0 = nan; nan: all nan
        torch.testing.assert_close(p.grad, q.grad, equal_nan=True, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="non-finite"):
        l2fast.clip_grad_norm_([p.grad for p in with_grads(values)], 1.0,
                               error_if_nonfinite=True)


def test_inf_norm_and_unsupported_orders():
    model, other = trained("cnn"), trained("cnn")
    t = torch.nn.utils.clip_grad_norm_(other.parameters(), 1e-3, norm_type=math.inf)
    o = lt.clip_grad_norm_(model.parameters(), 1e-3, norm_type="inf")
    assert o.item() == t.item() == max(g.abs().max().item() for g in grads_of(trained("cnn")))
    coef, t_coef = 1e-3 / (o.item() + 1e-6), torch_coef(t, 1e-3)
    for g, h in zip(grads_of(model), grads_of(other)):
        assert within_torch(g, h, coef, t_coef, torch.float32)
    for order in (1, 0.5, 3.0, -math.inf):
        with pytest.raises(NotImplementedError, match="2-norm and the inf-norm"):
            lt.clip_grad_norm_(model.parameters(), 1.0, norm_type=order)
        with pytest.raises(NotImplementedError):
            lt.get_total_norm(grads_of(model), norm_type=order)


@pytest.mark.parametrize("dtypes", [(torch.float32,), (torch.float16, torch.bfloat16),
                                    (torch.float32, torch.float64), (torch.bfloat16,)],
                         ids=["f32", "f16+bf16", "f32+f64", "bf16"])
def test_get_total_norm_dtype_and_value_as_torch(dtypes):
    torch.manual_seed(0)
    ts = [torch.randn(50, 7).to(d) for d in dtypes]
    ours, theirs = lt.get_total_norm(ts), torch.nn.utils.get_total_norm(ts)
    assert ours.dtype == theirs.dtype and ours.shape == ()
    assert l2fast.global_norm(ts) == pytest.approx(exact_norm(ts), rel=1e-12)
    assert ours.item() == torch.tensor(l2fast.global_norm(ts), dtype=ours.dtype).item()
    assert ours.item() == pytest.approx(theirs.item(), rel=2.0 ** -6)
    inf = lt.get_total_norm(ts, math.inf)
    assert inf.item() == torch.nn.utils.get_total_norm(ts, math.inf).item()
    with pytest.raises(RuntimeError, match="non-finite"):
        lt.get_total_norm(ts + [torch.tensor([math.nan])], error_if_nonfinite=True)


# ---------------------------------------------------------------------------
# The core functions on NumPy arrays, ParamList, arguments
# ---------------------------------------------------------------------------

def test_core_rule_on_numpy_arrays_and_paramlist():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((30, 20)).astype(np.float32), rng.standard_normal(70)]
    exact = math.sqrt(math.fsum((np.concatenate([a.ravel() for a in arrays]).astype(
        np.float64) ** 2).tolist()))
    assert l2fast.global_norm(arrays) == pytest.approx(exact, rel=1e-14)
    copies = [a.copy() for a in arrays]
    pl = l2fast.ParamList(copies)
    assert pl.global_norm() == l2fast.global_norm(arrays)
    assert l2fast.clip_grad_norm_(arrays, 2 * exact) == pl.clip_grad_norm_(2 * exact)
    assert all(np.array_equal(a, c) for a, c in zip(arrays, copies))   # coef >= 1: untouched
    norm = l2fast.clip_grad_norm_(arrays, 1.0, eps=0.5)
    coef = 1.0 / (norm + 0.5)
    assert np.array_equal(arrays[0], (copies[0].astype(np.float64) * coef).astype(np.float32))
    assert np.array_equal(arrays[1], copies[1] * coef)
    assert pl.clip_grad_norm_(1.0, eps=0.5) == norm
    assert all(np.array_equal(a, c) for a, c in zip(arrays, copies))


def test_arguments_and_nothing_written_on_errors():
    a = np.ones(4)
    for bad, exc in ((-1.0, ValueError), (math.nan, ValueError), ("1", TypeError)):
        with pytest.raises(exc, match="max_norm"):
            l2fast.clip_grad_norm_([a], bad)
    with pytest.raises(ValueError, match="eps"):
        l2fast.clip_grad_norm_([a], 1.0, eps=-1e-6)
    with pytest.raises(ValueError, match=r"arrays\[0\] and arrays\[1\] overlap"):
        l2fast.clip_grad_norm_([a[:3], a[2:]], 0.1)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        l2fast.clip_grad_norm_([a], 0.1)
    assert np.array_equal(a, np.ones(4))
    assert l2fast.global_norm(a) == 2.0   # reading is fine


def test_importing_l2fast_torch_without_torch_says_so():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import l2fast\n"
            "try:\n    import l2fast.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=str(__import__("pathlib").Path(l2fast.__file__)
                                               .parent.parent))
    assert out.returncode == 0, out.stderr
    assert "l2fast.torch needs torch" in out.stdout
