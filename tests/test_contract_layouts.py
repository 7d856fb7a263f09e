"""The input contract, layouts and kinds of input.

C- and F-contiguous arrays and non-contiguous views (slices with steps,
transposes of slices, negative strides) are read and written where they are:
`sum_squares` is right without copying the array, in-place calls update the
view itself and nothing outside it.  np.memmap, np.matrix and other ndarray
subclasses are arrays like any other; masked arrays, byte-swapped arrays,
dtypes other than float32/float64, unaligned arrays, Python lists and scalars
are rejected, every array unchanged.

See docs/contract.md.
"""
import array
import tracemalloc

import numpy as np
import pytest

import l2fast
from l2fast import reference
from l2fast.reference import exact_sum_squares

DTYPES = [np.float32, np.float64]


def dyadic(shape, dtype=np.float64, seed=0):
    """Values k/8 with |k| <= 64: sums of squares, products by 0.5, -2, 0.75
    and sums d + alpha*s below are exact, so results compare bitwise."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-64, 65, size=shape) / 8).astype(dtype)


# ---------------------------------------------------------------------------
# Layouts: views of a 1-D base buffer whose length is a multiple of 840
# ---------------------------------------------------------------------------

LAYOUTS = {
    "C 2-D": lambda b: b[40:].reshape(-1, 40),
    "F 2-D": lambda b: b[40:].reshape(40, -1, order="F"),
    "step slice": lambda b: b[3::3],
    "2-D slice with steps": lambda b: b.reshape(-1, 40)[1::2, 5:35:3],
    "transpose of a slice": lambda b: b.reshape(-1, 40)[2:-2, 10:30].T,
    "negative stride": lambda b: b[-2::-2],
    "negative strides 2-D": lambda b: b.reshape(-1, 40)[::-3, ::-1],
    "mixed signs, transposed": lambda b: b.reshape(-1, 40)[1::2, ::-1].T,
    "3-D permuted and sliced": lambda b: b.reshape(-1, 8, 5).transpose(2, 0, 1)[:, 1:, ::2],
    "column (unit last dim)": lambda b: b.reshape(-1, 40)[:, 3:4],
    "0-d": lambda b: b[7:8].reshape(()),
    "empty": lambda b: b[5:5].reshape(0, 3),
}
SIZES = {"small": 840, "parallel": 840 * 1000}   # 840,000 elements: threads are used


def make_view(layout, base):
    v = LAYOUTS[layout](base)
    assert v.base is not None and (v.size == 0 or np.shares_memory(v, base))
    return v


@pytest.fixture(params=list(SIZES), ids=list(SIZES))
def size(request):
    return SIZES[request.param]


class NoCopy:
    """Context manager: the peak of memory traced (NumPy's buffers included)
    while inside; a whole-array copy of `nbytes` shows up as a peak >= nbytes."""

    def __enter__(self):
        tracemalloc.start()
        tracemalloc.reset_peak()
        return self

    def __exit__(self, *exc):
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def assert_no_copy(peak, view):
    if view.nbytes >= 64 * 1024:
        assert peak < 16 * 1024, f"{peak} bytes allocated for a {view.nbytes}-byte view"


def test_no_copy_check_sees_a_copy():
    """The instrument itself: NumPy's copy of a strided view is traced."""
    v = dyadic(840 * 1000, np.float32)[::3]
    with NoCopy() as nc:
        np.ascontiguousarray(v)
    assert nc.peak >= v.nbytes
    with pytest.raises(AssertionError):
        assert_no_copy(nc.peak, v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_sum_squares_of_a_view_is_right_without_a_copy(layout, dtype, size):
    base = dyadic(size, dtype)
    v = make_view(layout, base)
    with NoCopy() as nc:
        total = l2fast.sum_squares(v, num_threads=2)
        per = l2fast.sum_squares([v, base[:5]], per_array=True, num_threads=2)
    assert total == exact_sum_squares([v])
    assert per.tolist() == [exact_sum_squares([v]), exact_sum_squares([base[:5]])]
    assert_no_copy(nc.peak, v)


def _expected_after(call, layout, base, src_base=None, factor=0.5):
    """The base buffer after `call`, by the NumPy twins of l2fast.reference."""
    out = base.copy()
    v = LAYOUTS[layout](out)
    if call == "add_scaled_":
        reference.add_scaled_(v, LAYOUTS[layout](src_base), factor)
    else:
        reference.scale_(v, factor)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("call", ["scale_", "sum_squares_scale_", "add_scaled_",
                                  "ParamList.scale_"])
def test_in_place_call_updates_the_view_and_nothing_else(call, layout, dtype, size):
    base = dyadic(size, dtype, seed=1)
    src_base = dyadic(size, np.float64, seed=2)   # a float64 src for a float32 dst too
    expected = _expected_after(call, layout, base, src_base, factor=0.75)
    v = make_view(layout, base)
    before = exact_sum_squares([v])
    with NoCopy() as nc:
        if call == "scale_":
            l2fast.scale_(v, 0.75, num_threads=2)
        elif call == "sum_squares_scale_":
            assert l2fast.sum_squares_scale_(v, 0.75, num_threads=2) == before
        elif call == "add_scaled_":
            l2fast.add_scaled_(v, LAYOUTS[layout](src_base), 0.75, num_threads=2)
        else:
            l2fast.ParamList([v]).scale_(0.75, num_threads=2)
    assert base.tobytes() == expected.tobytes()
    assert_no_copy(nc.peak, v)


@pytest.mark.parametrize("src_layout", ["C copy", "F copy", "reversed copy"])
@pytest.mark.parametrize("layout", ["F 2-D", "transpose of a slice", "2-D slice with steps",
                                    "negative strides 2-D"])
def test_add_scaled_pairs_dst_and_src_of_different_layouts(layout, src_layout):
    base = dyadic(840 * 200, np.float32, seed=3)
    v = make_view(layout, base)
    s64 = dyadic(v.shape, np.float64, seed=4)
    src = {"C copy": lambda: np.ascontiguousarray(s64),
           "F copy": lambda: np.asfortranarray(s64),
           "reversed copy": lambda: np.ascontiguousarray(s64[::-1, ::-1])[::-1, ::-1]}[src_layout]()
    assert np.array_equal(src, s64)
    expected = base.copy()
    ev = LAYOUTS[layout](expected)
    reference.add_scaled_(ev, s64, -2.0)
    l2fast.add_scaled_([v], [src], -2.0, num_threads=2)
    assert base.tobytes() == expected.tobytes()


def test_many_layouts_in_one_call():
    bases = {k: dyadic(840 * 20, np.float32 if i % 2 else np.float64, seed=i)
             for i, k in enumerate(LAYOUTS)}
    expected = {k: _expected_after("scale_", k, b, factor=-2.0) for k, b in bases.items()}
    views = [make_view(k, b) for k, b in bases.items()]
    before = exact_sum_squares(views)
    assert l2fast.sum_squares(views, num_threads=2) == before
    assert l2fast.sum_squares_scale_(views, -2.0, num_threads=2) == before
    for k in LAYOUTS:
        assert bases[k].tobytes() == expected[k].tobytes(), k
    assert l2fast.sum_squares(views, num_threads=1) == 4 * before


# ---------------------------------------------------------------------------
# np.memmap: in-place decay reaches the file
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_memmap_in_place_decay_reaches_the_file(tmp_path, dtype):
    path = tmp_path / "weights.bin"
    values = dyadic((300, 500), dtype, seed=5)           # 150,000 elements: threaded
    grads = dyadic((300, 500), np.float32, seed=6)
    w = np.memmap(path, dtype=dtype, mode="w+", shape=values.shape)
    w[...] = values
    w.flush()
    del w

    w = np.memmap(path, dtype=dtype, mode="r+", shape=values.shape)
    assert isinstance(w, np.memmap)
    assert l2fast.sum_squares(w, num_threads=2) == exact_sum_squares([values])
    assert l2fast.sum_squares_scale_([w], 0.5, num_threads=2) == exact_sum_squares([values])
    l2fast.scale_([w[::2, 1:]], -2.0, num_threads=2)     # a strided view of the map
    l2fast.add_scaled_([w[1::2].T], [grads[1::2].T], 0.25, num_threads=2)
    w.flush()
    del w

    expected = values.copy()
    reference.scale_(expected, 0.5)
    reference.scale_(expected[::2, 1:], -2.0)
    reference.add_scaled_(expected[1::2].T, grads[1::2].T, 0.25)
    on_disk = np.fromfile(path, dtype=dtype).reshape(values.shape)
    assert on_disk.tobytes() == expected.tobytes()


def test_memmap_opened_read_only_sums_but_refuses_in_place(tmp_path):
    path = tmp_path / "w.bin"
    dyadic(1000, np.float32).tofile(path)
    w = np.memmap(path, dtype=np.float32, mode="r")
    assert l2fast.sum_squares(w) == exact_sum_squares([np.fromfile(path, np.float32)])
    with pytest.raises(ValueError, match="read-only"):
        l2fast.scale_(w, 0.5)


def test_memmap_copy_on_write_updates_memory_not_the_file(tmp_path):
    """mode="c" is NumPy's copy-on-write map: writes stay in memory, as NumPy
    documents; l2fast updates the map and the file keeps its bytes."""
    path = tmp_path / "w.bin"
    values = dyadic(1000, np.float64)
    values.tofile(path)
    w = np.memmap(path, dtype=np.float64, mode="c")
    l2fast.scale_(w, 0.5)
    assert np.array_equal(w, values * 0.5)
    del w
    assert np.fromfile(path, np.float64).tobytes() == values.tobytes()


# ---------------------------------------------------------------------------
# ndarray subclasses
# ---------------------------------------------------------------------------

class Tagged(np.ndarray):
    """A plain ndarray subclass with an attribute."""

    def __array_finalize__(self, obj):
        self.tag = getattr(obj, "tag", "weights")


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_matrix_is_summed_and_updated_in_place():
    m = np.matrix(dyadic((4, 6)))
    values = np.asarray(m).copy()
    assert l2fast.sum_squares(m) == exact_sum_squares([values])
    assert l2fast.sum_squares_scale_([m, m.T[::2] * 0], 0.5) == exact_sum_squares([values])
    assert type(m) is np.matrix and np.array_equal(np.asarray(m), values * 0.5)
    l2fast.add_scaled_(m, np.matrix(values), 1.0)
    assert np.array_equal(np.asarray(m), values * 1.5)


def test_other_subclass_is_an_array_like_any_other():
    t = dyadic((5, 7), np.float32).view(Tagged)
    values = np.asarray(t).copy()
    assert l2fast.sum_squares([t]) == exact_sum_squares([values])
    l2fast.scale_([t[:, ::2]], -2.0)
    values[:, ::2] *= -2.0
    assert type(t) is Tagged and t.tag == "weights"
    assert np.asarray(t).tobytes() == values.tobytes()
    pl = l2fast.ParamList([t])
    assert pl.arrays[0] is t


# ---------------------------------------------------------------------------
# Rejected inputs, on every function, with every array unchanged
# ---------------------------------------------------------------------------

def _shape(w):
    return np.shape(np.asarray(w.data if isinstance(w, np.ma.MaskedArray) else w, dtype=object))


EVERY_CALL = {
    "sum_squares": lambda ws: l2fast.sum_squares(ws),
    "sum_squares per_array": lambda ws: l2fast.sum_squares(ws, per_array=True),
    "scale_": lambda ws: l2fast.scale_(ws, 0.5),
    "sum_squares_scale_": lambda ws: l2fast.sum_squares_scale_(ws, 0.5),
    "add_scaled_ dst": lambda ws: l2fast.add_scaled_(
        ws, [np.ones(_shape(w)) for w in ws], 0.5),
    "add_scaled_ src": lambda ws: l2fast.add_scaled_(
        [np.zeros(_shape(w)) for w in ws], ws, 0.5),
    "ParamList": lambda ws: l2fast.ParamList(ws),
}
every_call = pytest.mark.parametrize("call", list(EVERY_CALL), ids=list(EVERY_CALL))


def expect_rejected(call, bad, error, *words):
    """EVERY_CALL[call] on [good, bad, good2] raises `error` naming index 1 and
    every word; the good arrays and `bad` are bitwise unchanged."""
    good, good2 = dyadic(6), dyadic((2, 3), np.float32)
    snapshot = [good.tobytes(), good2.tobytes(), _bytes(bad)]
    with pytest.raises(error) as info:
        EVERY_CALL[call]([good, bad, good2])
    message = str(info.value)
    assert "[1]" in message, message
    for w in words:
        assert w in message, (w, message)
    assert [good.tobytes(), good2.tobytes(), _bytes(bad)] == snapshot


def _bytes(x):
    if isinstance(x, np.ma.MaskedArray):
        return x.data.tobytes() + np.ma.getmaskarray(x).tobytes()
    if isinstance(x, np.ndarray):
        return x.tobytes()
    return repr(x).encode()


@every_call
@pytest.mark.parametrize("dtype", [">f4", ">f8"] if np.little_endian else ["<f4", "<f8"])
def test_byte_swapped_arrays_are_rejected_with_the_dtype_named(call, dtype):
    bad = dyadic(6).astype(dtype)
    expect_rejected(call, bad, TypeError, dtype, "byte order")


@every_call
@pytest.mark.parametrize("mask", [False, [True, False, False, False, False, False]])
def test_masked_arrays_are_rejected(call, mask):
    bad = np.ma.array(dyadic(6), mask=mask)
    expect_rejected(call, bad, TypeError, "masked")


REJECTED_DTYPES = ["object", "int8", "int32", "int64", "uint16", "bool", "complex64",
                   "complex128", "uint16", "longdouble", "datetime64[s]", "U3", "f4,f4"]


@every_call
@pytest.mark.parametrize("dtype", REJECTED_DTYPES)
def test_other_dtypes_are_rejected_with_the_dtype_named(call, dtype):
    dt = np.dtype(dtype)
    bad = np.zeros(6, dt)
    if dt.kind in "fciub":
        bad[...] = np.arange(6).astype(dt)
    expect_rejected(call, bad, TypeError, str(dt) if dt.names is None else "f0", "float32")


@every_call
def test_unaligned_arrays_are_rejected(call):
    raw = np.zeros(6 * 8 + 1, np.uint8)
    bad = raw[1:].view(np.float64)
    bad[...] = dyadic(6)
    assert not bad.flags.aligned
    expect_rejected(call, bad, ValueError, "aligned")


@every_call
@pytest.mark.parametrize("bad", [
    pytest.param([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], id="list of floats"),
    pytest.param(3.0, id="float"),
    pytest.param(np.float64(3.0), id="np.float64 scalar"),
    pytest.param(np.float32(3.0), id="np.float32 scalar"),
    pytest.param(None, id="None"),
    pytest.param("weights", id="str"),
    pytest.param((1.0, 2.0), id="tuple of floats"),
])
def test_python_lists_and_scalars_in_a_list_are_rejected(call, bad):
    expect_rejected(call, bad, TypeError)


@pytest.mark.parametrize("call", [
    lambda x: l2fast.sum_squares(x),
    lambda x: l2fast.scale_(x, 0.5),
    lambda x: l2fast.sum_squares_scale_(x, 0.5),
    lambda x: l2fast.add_scaled_(x, x, 0.5),
    lambda x: l2fast.add_scaled_(
        [np.zeros(2) for _ in x] if isinstance(x, list) else np.zeros(1), x, 0.5),
    lambda x: l2fast.ParamList(x),
], ids=["sum_squares", "scale_", "sum_squares_scale_", "add_scaled_", "add_scaled_ src",
        "ParamList"])
@pytest.mark.parametrize("bad", [3.0, 3, np.float64(3.0), np.float32(3.0), None, "w", b"w",
                                 [1.0, 2.0], [[1.0, 2.0]]],
                         ids=["float", "int", "np.float64", "np.float32", "None", "str",
                              "bytes", "list of floats", "nested list"])
def test_python_scalars_and_lists_as_the_whole_argument_are_rejected(call, bad):
    with pytest.raises(TypeError):
        call(bad)


def test_rejection_names_the_key_of_a_dict():
    with pytest.raises(TypeError, match=r"arrays\['fc.bias'\].*int64"):
        l2fast.scale_({"fc.weight": np.ones(3), "fc.bias": np.ones(3, np.int64)}, 0.5)


# ---------------------------------------------------------------------------
# Buffer-protocol objects and torch tensors: views, never copies
# ---------------------------------------------------------------------------

def test_buffer_objects_are_used_in_place():
    a = array.array("d", [1.0, -2.0, 3.5])
    f = array.array("f", [0.5, 4.0])
    assert l2fast.sum_squares([a, f]) == 1 + 4 + 12.25 + 0.25 + 16
    l2fast.scale_([a, f], 2.0)
    assert a.tolist() == [2.0, -4.0, 7.0] and f.tolist() == [1.0, 8.0]
    assert l2fast.sum_squares([memoryview(a)]) == 4 + 16 + 49


def test_byte_buffers_are_rejected_as_uint8():
    with pytest.raises(TypeError, match="uint8"):
        l2fast.sum_squares([bytearray(16)])


@pytest.mark.parametrize("view", [
    pytest.param(lambda t: t.T, id="transpose"),
    pytest.param(lambda t: t[::2, 1:], id="slice with step"),
    pytest.param(lambda t: t[3:7].T[::3], id="transpose of a slice"),
])
def test_non_contiguous_torch_tensors_are_updated_in_place(view):
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(dyadic((30, 20), np.float32))
    v = view(t)
    assert not v.is_contiguous()
    expected = t.clone()
    view(expected).mul_(0.5)
    assert l2fast.sum_squares_scale_([v], 0.5) == exact_sum_squares([v.numpy()]) * 4
    assert torch.equal(t, expected)
