"""torch tensors read without a NumPy view: the memory written is the tensor's own,
every layout works, every refusal names the tensor, and in-place calls follow
torch's autograd rules (grad mode, version counters, inference tensors)."""
import math
import subprocess
import sys

import numpy as np
import pytest

import l2fast
from l2fast import _table

torch = pytest.importorskip("torch")


def dlpack_offered():
    """Whether l2fast can read this torch's tensors through DLPack's C
    exchange API (a capsule of version 1.3 or later)."""
    try:
        before = _table.tensor_reader("dlpack")
    except ValueError:
        return False
    _table.tensor_reader(before)
    return True


@pytest.fixture(autouse=True, params=["dlpack", "fields"])
def reader(request):
    """Every test runs with each way of reading a plain tensor: DLPack's C
    exchange API (DLPack >= 1.3) and attribute calls (any torch)."""
    if request.param == "dlpack" and not dlpack_offered():
        pytest.skip("this torch has no DLPack C exchange API of version 1.3+")
    before = _table.tensor_reader(request.param)
    yield request.param
    _table.tensor_reader(before)


@pytest.fixture
def no_views(monkeypatch):
    """Make any NumPy view or as_array conversion of a tensor an error: plain
    tensors must be read by the reader alone."""
    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was converted to a NumPy view")
    monkeypatch.setattr(_table, "as_array", refuse)
    monkeypatch.setattr(_table, "torch_view", refuse)


def layouts():
    """name -> (base tensor, view of it l2fast gets): contiguous and not."""
    def base():
        torch.manual_seed(0)
        return torch.randn(30, 40, dtype=torch.float64).float()
    return {
        "contiguous": lambda b: b,
        "transposed": lambda b: b.t(),
        "step_slice": lambda b: b[::2, 1::3],
        "transposed_slice": lambda b: b[3:, 5:].t(),
        "column": lambda b: b[:, 7],
        "zero_dim": lambda b: b[4, 5],
        "empty": lambda b: b[:, :0],
        "unit_dims": lambda b: b[:1, :, None],
        "unit_dims_odd_strides": lambda b: b.as_strided((5, 1, 4, 1), (40, 999, 1, 7)),
        "fortran_3d": lambda b: b.reshape(4, 6, 50).permute(2, 1, 0),
    }, base


@pytest.mark.parametrize("kind", list(layouts()[0]))
def test_every_layout_is_read_and_written_in_its_own_memory(kind, no_views):
    views, base = layouts()
    b = base()
    original = b.clone()
    v = views[kind](b)
    assert l2fast.sum_squares(v) == pytest.approx(math.fsum(
        (v.double().numpy().ravel() ** 2).tolist()), rel=1e-14)
    pointer = v.data_ptr()
    l2fast.scale_(v, 0.5)
    assert v.data_ptr() == pointer
    expected = original.clone()
    views[kind](expected).mul_(0.5)       # float32 * 0.5 is exact
    assert torch.equal(b, expected)       # the view's elements, through the base, and no other


def test_pairs_of_tensors_in_different_layouts_and_with_numpy(no_views):
    torch.manual_seed(1)
    g = torch.randn(20, 30)
    w = torch.randn(30, 20).t()           # same shape, the other order
    n = np.asfortranarray(np.random.default_rng(0).standard_normal((20, 30)))
    g0 = g.double().numpy().copy()
    l2fast.add_scaled_([g], [w], 0.25)
    want = (g0 + 0.25 * w.double().numpy()).astype(np.float32)
    assert np.array_equal(g.numpy(), want)
    h = torch.zeros(20, 30, dtype=torch.float64)
    m = np.zeros((20, 30))
    l2fast.add_scaled_([h, m], [n, g], 1.0)     # tensor dst with a NumPy src, and back
    assert np.array_equal(h.numpy(), n) and np.array_equal(m, g.double().numpy())
    with pytest.raises(ValueError, match=r"dst\[0\] has shape \(20, 30\) but src\[0\] has "
                                         r"shape \(30, 20\)"):
        l2fast.add_scaled_([g], [w.t()], 1.0)


def test_parameters_and_dicts_are_named_and_read_without_views(no_views):
    model = torch.nn.Linear(6, 4)
    named = dict(model.named_parameters())
    sums = l2fast.sum_squares(named, per_array=True)
    exact = [math.fsum(x * x for x in p.detach().double().numpy().ravel())
             for p in named.values()]
    np.testing.assert_allclose(sums, exact, rtol=1e-14)
    with torch.no_grad():
        l2fast.scale_(named, 2.0)


@pytest.mark.filterwarnings("ignore:Sparse CSC tensor support is in beta")
@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
@pytest.mark.parametrize("kind", ["sparse_csc", "sparse_bsr", "mkldnn", "nested", "conj_imag",
                                  "neg_view", "bool", "uint8", "float8"])
def test_more_unusable_tensors_are_named_and_nothing_is_written(kind):
    make, reason = {
        "sparse_csc": (lambda: torch.eye(4).to_sparse_csc(), r"torch\.sparse_csc tensors"),
        "sparse_bsr": (lambda: torch.eye(4).to_sparse_bsr((2, 2)), r"torch\.sparse_bsr"),
        "mkldnn": (lambda: torch.ones(4).to_mkldnn(), r"torch\._mkldnn"),
        "nested": (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]),
                   r"cannot view .* without a copy"),
        "conj_imag": (lambda: torch.randn(4, dtype=torch.complex64).conj().imag,
                      r"without a copy .*negative bit"),
        "neg_view": (lambda: torch._neg_view(torch.ones(4)), r"without a copy .*negative bit"),
        "bool": (lambda: torch.ones(4, dtype=torch.bool), r"dtype torch\.bool"),
        "uint8": (lambda: torch.ones(4, dtype=torch.uint8), r"dtype torch\.uint8"),
        "float8": (lambda: torch.ones(4).to(torch.float8_e5m2), r"dtype torch\.float8_e5m2"),
    }[kind]
    if kind == "mkldnn" and not torch.backends.mkldnn.is_available():
        pytest.skip("no mkldnn")
    try:
        bad = make()
    except (RuntimeError, AttributeError) as e:  # this torch cannot make one
        pytest.skip(str(e))
    good = torch.ones(8)
    with pytest.raises(TypeError, match=r"arrays\['layer\.weight'\]: .*" + reason):
        l2fast.scale_({"bias": good, "layer.weight": bad}, 3.0)
    with pytest.raises(TypeError, match=r"arrays\[1\]: .*" + reason):
        l2fast.sum_squares([good, bad])
    with pytest.raises(TypeError, match=r"src\[0\]: .*" + reason):
        l2fast.add_scaled_([good[:4]], [bad], 1.0)
    assert torch.equal(good, torch.ones(8))


def test_a_torch_with_the_c_exchange_api_is_read_by_it(reader):
    offered = dlpack_offered()
    code = ("import torch, l2fast; from l2fast import _table; "
            "l2fast.sum_squares([torch.ones(3)]); print(_table.tensor_reader())")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert fresh == ("dlpack" if offered else "fields")  # a new process's default
    with pytest.raises(ValueError, match="must be"):
        _table.tensor_reader("dl-pack")
    if offered and reader == "fields":  # the switch is the tests' own: back to DLPack
        assert _table.tensor_reader("dlpack") == "fields"
        assert _table.tensor_reader("fields") == "dlpack"


def test_empty_tensor_at_an_odd_address_is_accepted():
    buf = bytearray(4 * 11)
    empty = torch.frombuffer(buf, dtype=torch.float32, offset=2, count=10)[:0]
    assert l2fast.sum_squares([empty, torch.full((2,), 3.0)]) == 18.0
    l2fast.scale_([empty], 2.0)


def test_both_readers_cut_fortran_order_the_same_way():
    """A Fortran-order tensor is one run in memory order, as its NumPy view is."""
    rng = np.random.default_rng(3)
    a = np.asfortranarray(rng.standard_normal((70, 50, 30)))
    t = torch.from_numpy(a)
    assert not t.is_contiguous()
    assert _table.Table((t,)).npieces == _table.Table((a,)).npieces
    assert l2fast.sum_squares([t]) == l2fast.sum_squares([a])


def test_unaligned_tensors_are_refused_and_nothing_is_written():
    buf = bytearray(4 * 11)
    odd = torch.frombuffer(buf, dtype=torch.float32, offset=2, count=10)
    assert odd.data_ptr() % 4
    good = torch.ones(3)
    with pytest.raises(ValueError, match=r"arrays\[1\]: the array is not aligned"):
        l2fast.scale_([good, odd], 2.0)
    with pytest.raises(ValueError, match=r"src\[0\]: the array is not aligned"):
        l2fast.add_scaled_([good], [odd[:3]], 1.0)
    with pytest.raises(ValueError, match=r"arrays\[0\]: the array is not aligned"):
        l2fast.sum_squares(odd)
    assert torch.equal(good, torch.ones(3)) and buf == bytearray(44)


def test_overlapping_tensors_are_refused():
    base = torch.zeros(10, 6)
    with pytest.raises(ValueError, match=r"arrays\[0\] and arrays\[1\] overlap in memory"):
        l2fast.scale_([base[:4], base[3:]], 2.0)
    with pytest.raises(ValueError, match=r"arrays\[0\] and arrays\[1\] are the same array"):
        l2fast.scale_([base, base], 2.0)
    with pytest.raises(ValueError, match=r"dst\[0\] and src\[1\] overlap"):
        l2fast.add_scaled_([base[:5], torch.ones(5, 6)], [torch.ones(5, 6), base[4:9]], 1.0)


def test_interleaved_views_of_one_tensor_are_allowed():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    l2fast.scale_([base[:, ::2], base[:, 1::2]], 2.0)   # columns: ranges meet, elements do not
    assert torch.equal(base, 2 * torch.arange(12.0).reshape(3, 4))
    l2fast.add_scaled_([base], [base], 1.0)           # dst is src: well defined
    assert torch.equal(base, 4 * torch.arange(12.0).reshape(3, 4))


def test_a_paramlist_of_tensors_holds_them_and_shows_numpy_views():
    ts = [torch.ones(3, 2), torch.ones(5, dtype=torch.bfloat16)]
    pl = l2fast.ParamList(ts)
    assert pl._table.arrays[0] is ts[0]
    assert [v.ctypes.data for v in pl.arrays] == [t.data_ptr() for t in ts]
    assert pl.sum_squares() == 11.0


# ---------------------------------------------------------------------------
# autograd: as torch's own in-place ops
# ---------------------------------------------------------------------------

def l2_groups():
    return l2fast.L2(0.1, scale="none", decay_mult=lambda name, a: 2.0 if name == "b" else 1.0)


#: Every in-place entry point, writing the tensor `w` (with `x` beside it).
WRITERS = {
    "scale_": lambda w, x: l2fast.scale_([w], 0.5),
    "add_scaled_": lambda w, x: l2fast.add_scaled_([w], [x], 0.5),
    "sum_squares_scale_": lambda w, x: l2fast.sum_squares_scale_([w], 0.5),
    "clip_grad_norm_": lambda w, x: l2fast.clip_grad_norm_([w], 1e-3),
    "ParamList.scale_": lambda w, x: l2fast.ParamList([w]).scale_(0.5),
    "ParamList.sum_squares_scale_": lambda w, x: l2fast.ParamList([w]).sum_squares_scale_(0.5),
    "ParamList.add_scaled_": lambda w, x: l2fast.ParamList([w]).add_scaled_([x], 0.5),
    "ParamList.clip_grad_norm_": lambda w, x: l2fast.ParamList([w]).clip_grad_norm_(1e-3),
    "L2.decay_": lambda w, x: l2fast.L2(0.1, scale="none").decay_({"w": w}, 0.5),
    "L2.penalty_decay_": lambda w, x: l2fast.L2(0.1, scale="none").penalty_decay_([w], 0.5),
    "L2.grad_": lambda w, x: l2fast.L2(0.1, scale="none").grad_([w], [x]),
    "L2.decay_ groups": lambda w, x: l2_groups().decay_({"a": x.detach(), "w": w}, 0.5),
    "L2.grad_ groups": lambda w, x: l2_groups().grad_({"a": torch.zeros(3), "w": w},
                                                     {"a": x.detach(), "w": x.detach()}),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_writing_a_leaf_that_requires_grad_needs_no_grad(name):
    write = WRITERS[name]
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(3) + 2.0
    before, version = w.detach().clone(), w._version
    with pytest.raises(RuntimeError, match=r"\['?w'?\]|\[0\]") as info:
        write(w, x)
    assert "requires grad" in str(info.value) and "torch.no_grad()" in str(info.value)
    assert torch.equal(w.detach(), before) and w._version == version   # nothing written
    if name != "L2.decay_ groups":  # torch refuses its own in-place op the same way
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            w.mul_(0.5)
    # under no_grad: written, and autograd sees it as it sees torch's in-place ops
    loss = (w * w * x).sum()
    with torch.no_grad():
        write(w, x)
    assert not torch.equal(w.detach(), before) and w._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_non_leaf_that_requires_grad_is_refused_under_grad_mode():
    w = torch.randn(4, requires_grad=True)
    y = w * 2.0
    with pytest.raises(RuntimeError, match=r"arrays\[0\] requires grad: autograd would not "
                                           r"see l2fast's in-place change"):
        l2fast.scale_(y, 3.0)
    with torch.no_grad():
        l2fast.scale_(y, 3.0)
    assert torch.equal(y.detach(), w.detach() * 6.0)


def test_gradients_are_written_outside_no_grad_and_their_versions_bumped():
    model = torch.nn.Linear(5, 3)
    model(torch.randn(2, 5)).sum().backward()
    grads = [p.grad for p in model.parameters()]
    versions = [g._version for g in grads]
    assert torch.is_grad_enabled() and not any(g.requires_grad for g in grads)
    l2fast.scale_(grads, 0.5)
    assert [g._version for g in grads] == [v + 1 for v in versions]
    pl = l2fast.ParamList(grads + [np.ones(3)])   # NumPy arrays beside: tensors still bumped
    pl.scale_(2.0)
    pl.sum_squares_scale_(1.0)
    assert [g._version for g in grads] == [v + 3 for v in versions]
    l2fast.sum_squares(grads)                     # reading bumps nothing
    assert [g._version for g in grads] == [v + 3 for v in versions]


def test_requires_grad_is_read_again_by_each_paramlist_call():
    w = torch.ones(3)
    pl = l2fast.ParamList({"w": w})
    pl.scale_(2.0)
    w.requires_grad_(True)
    with pytest.raises(RuntimeError, match=r"arrays\['w'\] is a leaf tensor that requires grad"):
        pl.scale_(2.0)
    with torch.no_grad():
        pl.scale_(2.0)
    assert w.detach().tolist() == [4.0] * 3


def test_inference_tensors_are_written_only_in_inference_mode():
    with torch.inference_mode():
        t = torch.ones(4)
    assert l2fast.sum_squares([t]) == 4.0       # reading is fine anywhere
    with pytest.raises(RuntimeError, match=r"arrays\[1\] is an inference tensor"):
        l2fast.scale_([torch.ones(2), t], 2.0)
    assert t.tolist() == [1.0] * 4              # refused before anything was written
    with torch.inference_mode():
        l2fast.scale_([t], 2.0)
    assert t.tolist() == [2.0] * 4
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor"):
        t.mul_(2.0)                             # torch refuses too (torch 2.13 writes first)


def test_tensor_subclasses_follow_the_same_rules():
    class Tagged(torch.Tensor):
        pass
    t = torch.ones(3).as_subclass(Tagged)
    version = t._version
    l2fast.scale_([t], 2.0)
    assert t.tolist() == [2.0] * 3 and t._version == version + 1
    t.requires_grad_(True)
    with pytest.raises(RuntimeError, match=r"arrays\[0\] is a leaf tensor that requires grad"):
        l2fast.scale_([t], 2.0)


def test_the_version_bump_example_of_the_issue():
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(3)
    loss = (w * w * x).sum()
    with torch.no_grad():
        l2fast.scale_([w], 0.5)
    with pytest.raises(RuntimeError, match="one of the variables needed for gradient "
                                           "computation has been modified by an inplace "
                                           "operation"):
        loss.backward()
