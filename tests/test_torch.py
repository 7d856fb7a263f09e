"""CPU torch tensors and nn.Parameters: used in place, without copies."""
import numpy as np
import pytest

import l2fast
from l2fast import _kernels, reference
from l2fast.reference import exact_sum_squares

torch = pytest.importorskip("torch")


def make_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(32, 600),  # 19,800 parameters: with the rest, one parallel call
        torch.nn.ReLU(),
        torch.nn.LayerNorm(600),
        torch.nn.Linear(600, 250),
    ).to(dtype)


def float64_copies(tensors):
    """float64 NumPy copies of the tensors."""
    return [t.detach().to(torch.float64).numpy().copy() for t in tensors]


def clones(tensors):
    """Copies of the tensors, for the NumPy twins of l2fast.reference to update."""
    return [t.detach().clone() for t in tensors]


# ---------------------------------------------------------------------------
# Reading tensors
# ---------------------------------------------------------------------------

def test_sum_squares_of_model_parameters_generator():
    model = make_model()
    params = list(model.parameters())
    assert sum(p.numel() for p in params) > _kernels.PARALLEL_MIN_SIZE
    assert all(p.requires_grad for p in params)
    got = l2fast.sum_squares(model.parameters())
    assert got == pytest.approx(exact_sum_squares(params), rel=1e-13)


def test_per_array_sums_of_named_parameters_follow_the_dict():
    model = make_model(1)
    named = dict(model.named_parameters())
    got = l2fast.sum_squares(named, per_array=True, num_threads=2)
    expected = exact_sum_squares(named, per_array=True)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_views_share_the_tensors_memory():
    model = make_model(2)
    params = list(model.parameters())
    views = l2fast.ParamList(params).arrays
    assert [v.ctypes.data for v in views] == [p.data_ptr() for p in params]
    assert [v.shape for v in views] == [tuple(p.shape) for p in params]


def test_single_tensor_and_float64_tensor():
    torch.manual_seed(3)
    t = torch.randn(70, 300, dtype=torch.float64)
    assert l2fast.sum_squares(t) == pytest.approx(exact_sum_squares([t]), rel=1e-14)
    assert l2fast.sum_squares([t, t.float()]) == pytest.approx(
        exact_sum_squares([t, t.float()]), rel=1e-13)


def test_tensor_reached_only_through_dlpack():
    """An object that is not a tensor but exports one by DLPack is viewed, not copied."""
    class Exported:
        def __init__(self, t):
            self._t = t

        def __dlpack__(self, **kwargs):
            return self._t.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._t.__dlpack_device__()

    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    pl = l2fast.ParamList([Exported(t)])
    assert pl.arrays[0].ctypes.data == t.data_ptr()
    assert pl.sum_squares() == 55.0  # 0 + 1 + 4 + 9 + 16 + 25


# ---------------------------------------------------------------------------
# Writing tensors in place
# ---------------------------------------------------------------------------

def test_scale_updates_parameters_in_place():
    model = make_model(4)
    params = list(model.parameters())
    expected = clones(params)
    reference.scale_(expected, 0.9)  # the product formed in float64, rounded once
    pointers = [p.data_ptr() for p in params]
    with torch.no_grad():  # parameters are leaves that require grad, as for torch's mul_
        l2fast.scale_(model.parameters(), 0.9, num_threads=2)
    for p, e, ptr in zip(params, expected, pointers):
        assert isinstance(p, torch.nn.Parameter) and p.requires_grad and p.grad is None
        assert p.data_ptr() == ptr
        assert torch.equal(p.detach(), e)
    # what the model computes is what the updated parameters compute
    x = torch.randn(5, 32)
    with torch.no_grad():
        h = torch.relu(x @ expected[0].T + expected[1])
        h = torch.nn.functional.layer_norm(h, (600,), params[2].detach(), params[3].detach())
        expected = h @ params[4].detach().T + params[5].detach()
        np.testing.assert_allclose(model(x).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_sum_squares_scale_on_named_parameters():
    model = make_model(5)
    named = dict(model.named_parameters())
    expected = clones(named.values())
    sums = exact_sum_squares(expected, per_array=True)
    reference.scale_(expected, 0.5)
    with torch.no_grad():
        got = l2fast.sum_squares_scale_(named, 0.5, per_array=True)
    np.testing.assert_allclose(got, sums, rtol=1e-13)
    for p, e in zip(named.values(), expected):
        assert torch.equal(p.detach(), e)


def test_coupled_weight_decay_on_gradients():
    """add_scaled_(grads, params, lam) is torch SGD's weight_decay term: g += lam * w."""
    model = make_model(6)
    x, y = torch.randn(16, 32), torch.randn(16, 250)
    torch.nn.functional.mse_loss(model(x), y).backward()
    named = dict(model.named_parameters())
    grads = {name: p.grad for name, p in named.items()}
    g0, w0 = float64_copies(grads.values()), float64_copies(named.values())
    expected, src = clones(grads.values()), clones(named.values())
    reference.add_scaled_(expected, src, 1e-2)  # g + lam * w in float64, rounded once
    l2fast.add_scaled_(grads, named, 1e-2)
    for name, g, w, e, s in zip(named, g0, w0, expected, src):
        assert torch.equal(named[name].grad, e), name
        assert torch.equal(named[name].detach(), s)  # src unchanged
        # torch forms g + lam * w in float32: within two roundings of the operands' size
        by_torch = torch.from_numpy(g).float().add(torch.from_numpy(w).float(), alpha=1e-2)
        diff = np.abs(named[name].grad.double().numpy() - by_torch.double().numpy())
        assert np.all(diff <= 2.0 ** -22 * (np.abs(g) + np.abs(1e-2 * w))), name


def test_paramlist_of_parameters_over_several_steps():
    model = make_model(7)
    params = list(model.parameters())
    pl = l2fast.ParamList(model.parameters())
    values = clones(params)
    for step in range(3):
        with torch.no_grad():
            s = pl.sum_squares_scale_(0.75)
        assert s == pytest.approx(exact_sum_squares(values), rel=1e-13)
        reference.scale_(values, 0.75)
        for p, v in zip(params, values):
            assert torch.equal(p.detach(), v), step


def test_strided_tensor_view_is_updated_through_its_storage():
    torch.manual_seed(8)
    base = torch.randn(40, 90)
    original = base.clone()
    view = base[:, ::3].t()  # not contiguous: every third column, transposed
    l2fast.scale_(view, 2.0)
    assert torch.equal(base[:, ::3], original[:, ::3] * 2)
    keep = torch.ones(90, dtype=torch.bool)
    keep[::3] = False
    assert torch.equal(base[:, keep], original[:, keep])


def test_expanded_tensor_is_read_but_not_written():
    t = torch.arange(3, dtype=torch.float32)
    wide = t.expand(4, 3)  # stride 0: every row is the same memory
    assert l2fast.sum_squares(wide) == 4 * 5.0
    with pytest.raises(ValueError, match=r"arrays\[0\] has elements that share memory"):
        l2fast.scale_(wide, 2.0)
    assert torch.equal(t, torch.tensor([0.0, 1.0, 2.0]))


# ---------------------------------------------------------------------------
# Tensors that cannot be used: the same clear errors as arrays, nothing changed
# ---------------------------------------------------------------------------

def bad_tensors():
    return {
        "meta": (lambda: torch.empty(8, device="meta"), r"device 'meta'"),
        "int16": (lambda: torch.ones(8, dtype=torch.int16), r"torch\.int16"),
        "float8": (lambda: torch.ones(8).to(torch.float8_e4m3fn), r"torch\.float8_e4m3fn"),
        "int32": (lambda: torch.ones(8, dtype=torch.int32), r"torch\.int32"),
        "int64": (lambda: torch.ones(8, dtype=torch.int64), r"torch\.int64"),
        "complex64": (lambda: torch.ones(8, dtype=torch.complex64), r"torch\.complex64"),
        "sparse_coo": (lambda: torch.eye(8).to_sparse(), r"torch\.sparse_coo"),
        "sparse_csr": (lambda: torch.eye(8).to_sparse_csr(), r"torch\.sparse_csr"),
    }


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("kind", list(bad_tensors()))
def test_unusable_tensors_are_named(kind):
    make, detail = bad_tensors()[kind]
    good = torch.ones(8)
    named = {"encoder.weight": good, "decoder.weight": make()}
    pattern = r"arrays\['decoder\.weight'\]: .*" + detail
    with pytest.raises(TypeError, match=pattern):
        l2fast.sum_squares(named)
    with pytest.raises(TypeError, match=pattern):
        l2fast.scale_(named, 3.0)
    assert torch.equal(good, torch.ones(8))
    with pytest.raises(TypeError, match=r"src\[1\]: .*" + detail):
        l2fast.add_scaled_([torch.zeros(8), torch.zeros(8)], [good, named["decoder.weight"]], 1.0)


def test_tensor_with_a_lazy_negation_is_refused():
    neg_view = getattr(torch, "_neg_view", None)
    if neg_view is None:
        pytest.skip("this torch has no lazy negation views")
    t = neg_view(torch.ones(4))
    assert t.is_neg()
    with pytest.raises(TypeError, match=r"arrays\[0\]: cannot view .* without a copy"):
        l2fast.sum_squares([t])
