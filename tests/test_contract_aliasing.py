"""The input contract, aliasing: arrays that share memory.

Read-only calls (`sum_squares`) accept any sharing.  In-place calls detect
written arrays whose address ranges overlap (each other, themselves as
broadcast views, or a `src` array other than their own partner) before
anything is written, and raise ValueError naming both arrays.  A `src` array
that is element for element the same memory as its `dst` partner is allowed:
``dst += alpha * dst``.

See docs/contract.md.
"""
import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import l2fast
from l2fast import reference
from l2fast.reference import exact_sum_squares


def dyadic(shape, dtype=np.float64, seed=0):
    """Values k/8 with |k| <= 64: every sum, product and sum of squares below
    is exact in float32 and float64, so results compare bitwise."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-64, 65, size=shape) / 8).astype(dtype)


# In-place calls on a list `ws`; `other` supplies a src of the same shapes that
# shares no memory with anything.
def _ones_like(ws):
    return [np.ones(w.shape, w.dtype) for w in ws]


IN_PLACE = {
    "scale_": lambda ws: l2fast.scale_(ws, 0.5),
    "sum_squares_scale_": lambda ws: l2fast.sum_squares_scale_(ws, 0.5),
    "add_scaled_": lambda ws: l2fast.add_scaled_(ws, _ones_like(ws), 0.5),
    "ParamList.scale_": lambda ws: l2fast.ParamList(ws).scale_(0.5),
    "ParamList.sum_squares_scale_": lambda ws: l2fast.ParamList(ws).sum_squares_scale_(0.5),
    "ParamList.add_scaled_": lambda ws: l2fast.ParamList(ws).add_scaled_(_ones_like(ws), 0.5),
}
in_place = pytest.mark.parametrize("call", list(IN_PLACE.values()), ids=list(IN_PLACE))


def expect_overlap_error(call, ws, bases, *labels):
    """`call(ws)` raises ValueError naming every label, and no byte of `bases` changes."""
    before = [b.tobytes() for b in bases]
    with pytest.raises(ValueError) as info:
        call(ws)
    for label in labels:
        assert label in str(info.value), (label, str(info.value))
    assert [b.tobytes() for b in bases] == before


# ---------------------------------------------------------------------------
# The same array twice; a and a.T; overlapping slices
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_array_twice_is_summed_twice(dtype):
    a = dyadic((3, 5), dtype)
    assert l2fast.sum_squares([a, a]) == 2 * exact_sum_squares([a])
    per = l2fast.sum_squares([a, a], per_array=True)
    assert per.tolist() == [exact_sum_squares([a])] * 2
    assert l2fast.ParamList([a, a]).sum_squares() == 2 * exact_sum_squares([a])


@in_place
def test_same_array_twice_in_place_raises(call):
    a = dyadic((3, 5))
    # The list is called "arrays", or "dst" by add_scaled_.
    expect_overlap_error(call, [np.zeros(2), a, a], [a], "[1]", "[2]")


@in_place
def test_array_and_its_transpose_in_place_raises(call):
    a = dyadic((4, 6))
    before = a.tobytes()
    with pytest.raises(ValueError, match=r"\[0\].*\[1\]"):
        call([a, a.T])
    assert a.tobytes() == before


def test_array_and_its_transpose_sum():
    a = dyadic((4, 6), np.float32)
    assert l2fast.sum_squares([a, a.T]) == 2 * exact_sum_squares([a])


@in_place
@pytest.mark.parametrize("first, second", [
    (slice(0, 60), slice(50, 100)),      # tails overlap
    (slice(10, 20), slice(0, 100)),      # one inside the other
    (slice(0, 100, 3), slice(1, 50)),    # strided and contiguous
    (slice(99, None, -1), slice(40, 41)),  # reversed and a single element
])
def test_overlapping_slices_in_place_raise(call, first, second):
    buf = dyadic(100)
    expect_overlap_error(call, [buf[first], np.zeros(3), buf[second]], [buf],
                         "[0]", "[2]")


def test_overlapping_slices_sum():
    buf = dyadic(100, np.float32)
    ws = [buf[:60], buf[50:], buf[::-3]]
    assert l2fast.sum_squares(ws) == exact_sum_squares(ws)


@pytest.mark.parametrize("name", list(IN_PLACE))
def test_interleaved_slices_are_updated_in_place(name):
    """buf[::2] and buf[1::2] have overlapping address ranges but share no
    element (np.shares_memory decides): in-place calls accept them."""
    buf = dyadic(40)
    assert np.may_share_memory(buf[::2], buf[1::2])
    assert not np.shares_memory(buf[::2], buf[1::2])
    expected = buf + 0.5 if name.endswith("add_scaled_") else buf * 0.5  # src: ones
    IN_PLACE[name]([buf[::2], buf[1::2]])
    assert buf.tobytes() == expected.tobytes()


def test_columns_of_one_matrix_are_disjoint():
    buf = dyadic((50, 2))
    d, s = buf[:, 0], buf[:, 1]
    expected = buf[:, 0] + 0.5 * buf[:, 1]
    l2fast.add_scaled_(d, s, 0.5)
    assert buf[:, 0].tobytes() == expected.tobytes()
    l2fast.scale_([buf[:, 0], buf[:, 1]], 2.0)
    assert buf[:, 0].tobytes() == (2 * expected).tobytes()


@pytest.mark.parametrize("seed", range(5))
def test_one_overlap_among_many_arrays_is_found_and_named(seed):
    """1000 disjoint slices of one buffer in random order, plus one slice that
    overlaps exactly one of them: the error names that pair."""
    rng = np.random.default_rng(seed)
    buf = dyadic(1000 * 7, seed=seed)
    ws = [buf[7 * k: 7 * k + 5] for k in rng.permutation(1000)]
    victim = int(rng.integers(len(ws)))
    start = ws[victim].__array_interface__["data"][0] - buf.__array_interface__["data"][0]
    start //= buf.itemsize
    intruder = buf[start + 4: start + 6]      # last element of the victim and a gap
    pos = int(rng.integers(len(ws) + 1))
    ws.insert(pos, intruder)
    victim_idx = victim + (1 if pos <= victim else 0)
    before = buf.tobytes()
    with pytest.raises(ValueError) as info:
        l2fast.scale_(ws, 0.5)
    # Both are named, in address order.
    assert f"arrays[{pos}]" in str(info.value)
    assert f"arrays[{victim_idx}]" in str(info.value)
    assert buf.tobytes() == before
    del ws[pos]
    l2fast.scale_(ws, 0.5)  # without the intruder the same slices are fine


# ---------------------------------------------------------------------------
# Self-overlapping (broadcast) views
# ---------------------------------------------------------------------------

@in_place
def test_writeable_broadcast_view_in_place_raises(call):
    """A writeable view whose elements share memory (stride 0, or rows that
    overlap) would be updated more than once."""
    base = dyadic(10)
    for view in (as_strided(base, (4, 10), (0, 8)),       # every row is `base`
                 as_strided(base, (4, 4), (16, 8))):      # rows overlap
        with pytest.raises(ValueError, match="share memory"):
            call([view])
    # The same shapes made without overlap are fine:
    before = base.copy()
    l2fast.scale_([as_strided(base, (2, 5), (40, 8))], 2.0)
    assert np.array_equal(base, before * 2)


def test_broadcast_view_read_only_call_sums_every_element():
    x = np.float32(1.5)
    view = np.broadcast_to(x, (1000, 3))
    assert view.strides == (0, 0)
    assert l2fast.sum_squares(view) == 3000 * 2.25
    rows = np.broadcast_to(np.arange(4.0), (5, 4))
    assert l2fast.sum_squares([rows]) == 5 * 14.0


def test_np_broadcast_to_is_read_only_so_in_place_raises():
    view = np.broadcast_to(np.arange(4.0), (5, 4))
    with pytest.raises(ValueError, match="read-only"):
        l2fast.scale_(view, 2.0)


# ---------------------------------------------------------------------------
# add_scaled_: dst against src
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided", "reversed"])
@pytest.mark.parametrize("n", [37, 300_000])   # serial and parallel
def test_dst_is_src_gives_dst_times_one_plus_alpha(dtype, layout, n):
    base = dyadic(2 * n, dtype, seed=n)
    expected_base = base.copy()
    view = {"C": lambda b: b[:n],
            "F": lambda b: b[:n - n % 2].reshape(2, -1, order="F"),
            "strided": lambda b: b[::2],
            "reversed": lambda b: b[::-2]}[layout]
    d = view(base)
    e = view(expected_base)
    alpha = 0.75
    reference.add_scaled_(e, e, alpha)
    other = dyadic(7, dtype, seed=1)
    l2fast.add_scaled_([d, other], [d, other * 0], alpha, num_threads=2)
    assert base.tobytes() == expected_base.tobytes()


@pytest.mark.parametrize("make_src", [
    pytest.param(lambda d: d[:], id="d[:]"),
    pytest.param(lambda d: d.view(), id="d.view()"),
    pytest.param(lambda d: d.reshape(d.shape), id="d.reshape"),
    pytest.param(lambda d: d[::-1][::-1], id="reversed twice"),
    pytest.param(lambda d: as_strided(d, d.shape, (d.strides[0], 8000, d.strides[2])),
                 id="unit dim, another stride"),
])
@pytest.mark.parametrize("layout", ["C", "strided"])
def test_dst_and_src_distinct_views_of_the_same_elements_are_allowed(make_src, layout):
    """Element for element the same memory is what matters, not object identity;
    strides of unit dimensions do not count."""
    base = dyadic((6, 1, 10))
    d = base if layout == "C" else base[::2, :, ::3]
    src = make_src(d)
    assert src is not d and src.__array_interface__["data"] == d.__array_interface__["data"]
    expected_base = base.copy()
    e = expected_base if layout == "C" else expected_base[::2, :, ::3]
    e += 0.5 * e.copy()
    l2fast.add_scaled_([d], [src], 0.5)
    assert base.tobytes() == expected_base.tobytes()


def test_dst_is_src_torch_tensor():
    """Each tensor is viewed afresh for dst and for src: two ndarray objects,
    the same elements."""
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float64)
    u = torch.arange(12, dtype=torch.float32).reshape(3, 4).T
    l2fast.add_scaled_([t, u], [t, u], 0.5)
    assert t.tolist() == [1.5 * k for k in range(6)]
    assert u.tolist() == (1.5 * torch.arange(12.0).reshape(3, 4).T).tolist()


def test_paramlist_add_scaled_from_itself():
    ws = [dyadic(5), dyadic((2, 3), np.float32)]
    expected = [w + 2.0 * w for w in ws]
    pl = l2fast.ParamList(ws)
    pl.add_scaled_(pl, 2.0)
    for w, e in zip(ws, expected):
        assert w.tobytes() == e.tobytes()


@pytest.mark.parametrize("make", [
    pytest.param(lambda b: (b[:50], b[1:51]), id="shifted by one"),
    pytest.param(lambda b: (b[:50], b[49::-1]), id="reversed"),
    pytest.param(lambda b: (b[:50], b[:100:2]), id="strided over"),
    pytest.param(lambda b: (b[:50].reshape(5, 10), b[:50].reshape(10, 5).T), id="transposed"),
    pytest.param(lambda b: (b[:50], b[:50].view(np.float32)[::2]), id="other dtype"),
])
def test_dst_overlapping_its_src_not_element_for_element_raises(make):
    buf = dyadic(100)
    d, s = make(buf)
    assert d.shape == s.shape
    before = buf.tobytes()
    with pytest.raises(ValueError, match=r"dst\[0\] and src\[0\]|src\[0\] and dst\[0\]"):
        l2fast.add_scaled_([d], [s], 1.0)
    assert buf.tobytes() == before


def test_dst_overlapping_another_pairs_src_raises_naming_both():
    buf = dyadic(100)
    dst = [np.zeros(10), buf[:10], np.zeros(10)]
    src = [np.ones(10), np.ones(10), buf[5:15]]
    before = buf.tobytes()
    with pytest.raises(ValueError) as info:
        l2fast.add_scaled_(dst, src, 1.0)
    assert "dst[1]" in str(info.value) and "src[2]" in str(info.value)
    assert buf.tobytes() == before
    assert not dst[0].any() and not dst[2].any()


def test_dst_is_another_pairs_src_raises():
    a, b = dyadic(8), dyadic(8, seed=1)
    before = a.tobytes() + b.tobytes()
    with pytest.raises(ValueError, match=r"dst\[0\].*src\[1\]|src\[1\].*dst\[0\]"):
        l2fast.add_scaled_([a, b], [b * 0, a], 1.0)
    assert a.tobytes() + b.tobytes() == before


def test_src_arrays_may_share_memory_with_each_other():
    buf = dyadic(30)
    src = [buf[:20], buf[10:], buf[5:25], np.broadcast_to(buf[3], (20,))]
    dst = [np.zeros(20) for _ in src]
    l2fast.add_scaled_(dst, src, 2.0)
    for d, s in zip(dst, src):
        assert np.array_equal(d, 2.0 * s)


def test_read_only_src_is_fine():
    s = dyadic(9)
    s.flags.writeable = False
    d = np.zeros(9)
    l2fast.add_scaled_(d, s, -1.0)
    assert np.array_equal(d, -s)


# ---------------------------------------------------------------------------
# ParamList: overlap is recorded, read-only use allowed
# ---------------------------------------------------------------------------

def test_paramlist_of_overlapping_arrays_sums_but_refuses_in_place():
    buf = dyadic(20)
    pl = l2fast.ParamList([buf[:12], buf[8:]])
    assert pl.sum_squares() == exact_sum_squares([buf[:12], buf[8:]])
    before = buf.tobytes()
    for method in (lambda: pl.scale_(2.0), lambda: pl.sum_squares_scale_(2.0),
                   lambda: pl.add_scaled_([np.ones(12), np.ones(12)], 1.0)):
        with pytest.raises(ValueError, match=r"\[0\] and \w+\[1\]"):
            method()
        assert buf.tobytes() == before


def test_interleaved_stride_tricks_view_is_conservatively_rejected():
    """The self-overlap test is sufficient, not exact: a stride-tricks view
    whose strides interleave (offsets 0, 3, 2, 5, 4, 7 elements: all distinct)
    is refused for writing.  Ordinary slices, transposes and reshapes never are."""
    base = dyadic(16)
    view = as_strided(base, (3, 2), (16, 24))
    offsets = {(i * 16 + j * 24) // 8 for i in range(3) for j in range(2)}
    assert len(offsets) == 6                          # no element repeats
    assert l2fast.sum_squares(view) == exact_sum_squares([view])
    before = base.tobytes()
    with pytest.raises(ValueError, match="share memory"):
        l2fast.scale_(view, 2.0)
    assert base.tobytes() == before


@pytest.mark.parametrize("order", ["ascending", "descending", "mixed"])
def test_overlap_found_whatever_the_order_of_addresses(order):
    """Arrays in address order, in reverse order (a list sorted in one pass)
    or shuffled (sorted in full): the one overlapping pair is found."""
    buf = np.ones(1000)
    pieces = [buf[k * 10:k * 10 + 10] for k in range(100)]
    pieces[57] = buf[565:575]                      # overlaps pieces 56 and 57's place
    named = list(enumerate(pieces))
    if order == "descending":
        named.reverse()
    elif order == "mixed":
        np.random.default_rng(0).shuffle(named)
    arrays = [a for _, a in named]
    at = [k for k, _ in named]
    with pytest.raises(ValueError, match=r"overlap in memory") as err:
        l2fast.scale_(arrays, 2.0)
    i, j = sorted((at.index(56), at.index(57)))
    assert f"arrays[{i}]" in str(err.value) and f"arrays[{j}]" in str(err.value)
    assert (buf == 1.0).all()
    ok = [a for k, a in named if k != 57]
    l2fast.scale_(ok, 2.0)                          # no overlap: every order accepted
    assert (buf[:560] == 2.0).all() and (buf[580:] == 2.0).all()
