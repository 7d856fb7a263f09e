"""The four core functions and ParamList against independent references."""
import math

import numpy as np
import pytest

import l2fast
from l2fast import reference

THREADS = [1, 2, 3, 7]
DTYPES = [np.float32, np.float64]


def ragged(rng, dtype, big=300_000):
    """A model-like list: one large array (above the threading threshold),
    matrices, biases, a 0-d array, a zero-size array, an F-ordered array."""
    d = np.dtype(dtype)
    return [
        rng.standard_normal(big).astype(d),
        rng.standard_normal((64, 33)).astype(d),
        rng.standard_normal(33).astype(d),
        np.asarray(rng.standard_normal(), dtype=d),
        np.zeros((0, 5), dtype=d),
        np.asfortranarray(rng.standard_normal((17, 9, 5)).astype(d)),
        rng.standard_normal(1).astype(d),
    ]


def mixed(rng):
    a = ragged(rng, np.float32)
    b = ragged(rng, np.float64, big=200_000)
    return [x for pair in zip(a, b) for x in pair]


def snapshot(arrays):
    return [np.array(a, copy=True) for a in arrays]


def assert_unchanged(arrays, before):
    for a, b in zip(arrays, before):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def scaled(arrays, factor):
    """Copies of the arrays scaled by the NumPy twin: the product formed in
    float64, rounded once to each array's dtype."""
    out = snapshot(arrays)
    reference.scale_(out, factor)
    return out


@pytest.fixture(params=["float32", "float64", "mixed"])
def arrays(request):
    rng = np.random.default_rng(12345)
    if request.param == "mixed":
        return mixed(rng)
    return ragged(rng, request.param)


# --------------------------------------------------------------------------
# sum_squares
# --------------------------------------------------------------------------

@pytest.mark.parametrize("num_threads", THREADS + [None])
def test_sum_squares_matches_exact(arrays, num_threads):
    before = snapshot(arrays)
    s = l2fast.sum_squares(arrays, num_threads=num_threads)
    assert isinstance(s, float)
    ref = reference.exact_sum_squares(arrays)
    assert s == pytest.approx(ref, rel=1e-13, abs=0)
    assert_unchanged(arrays, before)


@pytest.mark.parametrize("num_threads", THREADS)
def test_sum_squares_per_array(arrays, num_threads):
    v = l2fast.sum_squares(arrays, per_array=True, num_threads=num_threads)
    assert v.dtype == np.float64 and v.shape == (len(arrays),)
    ref = reference.exact_sum_squares(arrays, per_array=True)
    np.testing.assert_allclose(v, ref, rtol=1e-13, atol=0)
    assert all(v[i] == 0.0 for i, a in enumerate(arrays) if a.size == 0)


def test_sum_squares_hand_worked():
    # 3^2 + 4^2 + 1 + 4 + 0.5^2 = 30.25
    ws = [np.array([3.0, 4.0]), np.array([[1.0], [2.0]], np.float32), np.array(0.5)]
    assert l2fast.sum_squares(ws) == 30.25
    assert l2fast.sum_squares(ws, per_array=True).tolist() == [25.0, 5.0, 0.25]


def test_sum_squares_single_array_and_dict():
    a = np.arange(10, dtype=np.float32)
    assert l2fast.sum_squares(a) == 285.0  # sum of k^2, k < 10
    d = {"w": a, "b": np.ones(3)}
    assert l2fast.sum_squares(d) == 288.0
    assert l2fast.sum_squares(d, per_array=True).tolist() == [285.0, 3.0]
    assert l2fast.sum_squares(iter([a, a])) == 570.0  # any iterable


def test_empty_inputs():
    assert l2fast.sum_squares([]) == 0.0
    assert l2fast.sum_squares([], per_array=True).shape == (0,)
    assert l2fast.sum_squares([np.zeros(0, np.float32)]) == 0.0
    l2fast.scale_([], 2.0)
    l2fast.add_scaled_([], [], 2.0)
    assert l2fast.sum_squares_scale_([], 2.0) == 0.0
    assert l2fast.ParamList([]).size == 0


def test_float32_sum_is_accumulated_in_float64():
    # 2**24 + 1 ones: float32 accumulation would stop at 2**24.
    ones = np.ones(2**24 + 1, np.float32)
    assert l2fast.sum_squares([ones]) == 2**24 + 1
    # A square over the float32 range is fine in float64.
    big = np.array([1e20, -3e19], np.float32)
    ref = reference.exact_sum_squares(big)
    assert l2fast.sum_squares([big]) == pytest.approx(ref, rel=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate(dtype):
    ws = [np.ones(1000, dtype), np.array([1.0, np.inf], dtype)]
    assert l2fast.sum_squares(ws) == math.inf
    ws[0][3] = np.nan
    assert math.isnan(l2fast.sum_squares(ws))
    v = l2fast.sum_squares(ws, per_array=True)
    assert math.isnan(v[0]) and v[1] == math.inf
    w = np.array([np.inf, -np.inf, np.nan, 2.0], dtype)
    l2fast.scale_([w], 0.5)
    assert np.isposinf(w[0]) and np.isneginf(w[1]) and np.isnan(w[2]) and w[3] == 1.0
    w = np.array([np.inf, 1.0], dtype)
    l2fast.scale_([w], 0.0)  # inf * 0 = nan
    assert np.isnan(w[0]) and w[1] == 0.0


# --------------------------------------------------------------------------
# scale_, add_scaled_, sum_squares_scale_
# --------------------------------------------------------------------------

@pytest.mark.parametrize("num_threads", THREADS)
@pytest.mark.parametrize("factor", [0.999, -2.5, 0.0])
def test_scale_(arrays, num_threads, factor):
    ref = scaled(arrays, factor)
    l2fast.scale_(arrays, factor, num_threads=num_threads)
    for a, r in zip(arrays, ref):
        np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("num_threads", THREADS)
def test_add_scaled_(num_threads):
    rng = np.random.default_rng(7)
    ws = mixed(rng)
    # dtypes of dst and src may differ: float32 and float64 grads for both
    gs = [np.asarray(rng.standard_normal(w.shape)).astype(np.float32 if i % 3 else np.float64)
          for i, w in enumerate(ws)]
    alpha = 3e-4
    ref = snapshot(gs)
    reference.add_scaled_(ref, ws, alpha)
    wsnap = snapshot(ws)
    l2fast.add_scaled_(gs, ws, alpha, num_threads=num_threads)
    for g, r in zip(gs, ref):
        np.testing.assert_array_equal(g, r)
    assert_unchanged(ws, wsnap)


def test_add_scaled_hand_worked():
    g = [np.array([1.0, 2.0]), np.array([[0.5]], np.float32)]
    w = [np.array([10.0, -20.0]), np.array([[4.0]], np.float32)]
    l2fast.add_scaled_(g, w, 0.1)
    assert g[0].tolist() == [2.0, 0.0]
    assert g[1].tolist() == [[np.float32(0.5 + 0.4)]]


def test_add_scaled_dst_is_src():
    x = np.arange(5, dtype=np.float64)
    y = np.arange(300_000, dtype=np.float32)
    ref_y = (y.astype(np.float64) * 1.5).astype(np.float32)
    l2fast.add_scaled_([x, y], [x, y], 0.5)
    assert x.tolist() == [0.0, 1.5, 3.0, 4.5, 6.0]
    np.testing.assert_array_equal(y, ref_y)


def test_add_scaled_dicts_pair_by_key():
    g = {"a": np.zeros(2), "b": np.zeros(3)}
    w = {"b": np.ones(3), "a": np.full(2, 2.0)}
    l2fast.add_scaled_(g, w, 0.5)
    assert g["a"].tolist() == [1.0, 1.0] and g["b"].tolist() == [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="same arrays"):
        l2fast.add_scaled_(g, {"a": np.ones(2)}, 0.5)


@pytest.mark.parametrize("num_threads", THREADS)
def test_sum_squares_scale_(arrays, num_threads):
    ref_sum = reference.exact_sum_squares(arrays)
    plain = l2fast.sum_squares(arrays, num_threads=1)
    ref = scaled(arrays, 0.97)
    s = l2fast.sum_squares_scale_(arrays, 0.97, num_threads=num_threads)
    assert s == plain  # bitwise: the same pieces, lanes and folding order
    assert s == pytest.approx(ref_sum, rel=1e-13)
    for a, r in zip(arrays, ref):
        np.testing.assert_array_equal(a, r)


def test_sum_squares_scale_per_array():
    ws = [np.array([3.0, 4.0]), np.array([2.0], np.float32)]
    v = l2fast.sum_squares_scale_(ws, 0.5, per_array=True)
    assert v.tolist() == [25.0, 4.0]
    assert ws[0].tolist() == [1.5, 2.0] and ws[1].tolist() == [1.0]


def test_non_contiguous_views_are_updated_in_place():
    base = np.arange(600, dtype=np.float64).reshape(20, 30)
    view = base[::3, 1::4].T  # strided, transposed
    outside = np.ones(base.shape, bool)
    outside[::3, 1::4] = False
    before = base.copy()
    assert l2fast.sum_squares([view]) == reference.exact_sum_squares([view])
    l2fast.scale_([view], 2.0)
    np.testing.assert_array_equal(base[::3, 1::4], before[::3, 1::4] * 2.0)
    np.testing.assert_array_equal(base[outside], before[outside])
    g = np.zeros((8, 7), np.float32)[:, ::-1]  # F-like/negative strides vs C src
    w = np.asfortranarray(np.arange(56, dtype=np.float64).reshape(8, 7))
    l2fast.add_scaled_([g], [w], 2.0)
    np.testing.assert_array_equal(g, (2.0 * w).astype(np.float32))


# --------------------------------------------------------------------------
# ParamList
# --------------------------------------------------------------------------

def test_paramlist_matches_functions(arrays):
    pl = l2fast.ParamList(arrays)
    assert len(pl) == len(arrays)
    assert pl.size == sum(a.size for a in arrays)
    assert pl.nbytes == sum(a.nbytes for a in arrays)
    assert all(x is y for x, y in zip(pl.arrays, arrays))
    assert pl.sum_squares() == l2fast.sum_squares(arrays)
    np.testing.assert_allclose(pl.sum_squares(per_array=True),
                               reference.sum_squares(arrays, per_array=True), rtol=1e-12)
    copies = snapshot(arrays)
    s = pl.sum_squares_scale_(0.5)
    assert s == l2fast.sum_squares(copies)
    l2fast.scale_(copies, 0.5)
    pl.scale_(2.0)
    l2fast.scale_(copies, 2.0)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


def test_paramlist_add_scaled_from_paramlist_list_and_dict():
    ws = {"w": np.ones((3, 3)), "b": np.full(3, 2.0, np.float32)}
    gs = {"w": np.zeros((3, 3)), "b": np.zeros(3, np.float32)}
    pw, pg = l2fast.ParamList(ws), l2fast.ParamList(gs)
    pg.add_scaled_(pw, 0.5)
    pg.add_scaled_(pw, 0.5)  # the cached pairing
    assert gs["w"].tolist() == [[1.0] * 3] * 3 and gs["b"].tolist() == [2.0] * 3
    pg.add_scaled_(list(ws.values()), 1.0)
    assert gs["b"].tolist() == [4.0] * 3
    pg.add_scaled_({"b": ws["b"], "w": ws["w"]}, -1.0)
    assert gs["w"].tolist() == [[1.0] * 3] * 3


def test_paramlist_in_place_rejects_read_only_at_call_time():
    a = np.ones(4)
    pl = l2fast.ParamList([a])
    assert pl.sum_squares() == 4.0
    a.flags.writeable = False
    with pytest.raises(ValueError, match=r"arrays\[0\] is read-only"):
        pl.scale_(2.0)
    with pytest.raises(ValueError, match="read-only"):
        pl.sum_squares_scale_(2.0)
    assert a.tolist() == [1.0] * 4
    assert pl.sum_squares() == 4.0  # reading is still fine


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1])
def test_num_threads_must_be_positive(bad):
    with pytest.raises(ValueError, match="num_threads"):
        l2fast.sum_squares([np.ones(3)], num_threads=bad)


@pytest.mark.parametrize("bad", [1.5, "2", True])
def test_num_threads_must_be_int(bad):
    with pytest.raises(TypeError, match="num_threads"):
        l2fast.sum_squares([np.ones(3)], num_threads=bad)


def test_factor_must_be_real():
    a = np.ones(3)
    with pytest.raises(TypeError, match="factor"):
        l2fast.scale_([a], "0.5")
    with pytest.raises(TypeError, match="alpha"):
        l2fast.add_scaled_([a], [a], None)
    assert a.tolist() == [1.0] * 3


def test_rejected_call_leaves_every_array_untouched():
    rng = np.random.default_rng(3)
    good = [rng.standard_normal(200_000), rng.standard_normal(10).astype(np.float32)]
    ro = np.ones(5)
    ro.flags.writeable = False
    cases = [
        good + [np.ones(3, np.int64)],
        good + [ro],
        good + [good[0][10:20]],
    ]
    for case in cases:
        before = snapshot(case)
        for call in (lambda: l2fast.scale_(case, 2.0),
                     lambda: l2fast.sum_squares_scale_(case, 2.0),
                     lambda: l2fast.add_scaled_(case, [np.ones(c.shape) for c in case], 1.0)):
            with pytest.raises((TypeError, ValueError)):
                call()
            assert_unchanged(case, before)


def test_errors_name_the_array():
    with pytest.raises(TypeError, match=r"arrays\[2\]: dtype <i8 \(int64\)"):
        l2fast.sum_squares([np.ones(2), np.ones(2), np.ones(2, np.int64)])
    with pytest.raises(TypeError, match=r"arrays\['fc.bias'\]: dtype .*uint16"):
        l2fast.sum_squares({"fc.weight": np.ones(2), "fc.bias": np.ones(2, np.uint16)})
    with pytest.raises(ValueError, match=r"dst\[1\] has shape \(3,\) but src\[1\] has shape \(4,\)"):
        l2fast.add_scaled_([np.ones(2), np.ones(3)], [np.ones(2), np.ones(4)], 1.0)
    with pytest.raises(ValueError, match="dst has 2 arrays but src has 1"):
        l2fast.add_scaled_([np.ones(2), np.ones(3)], [np.ones(2)], 1.0)


def test_show_config_reports_openmp():
    cfg = l2fast.show_config(mode="dicts")
    assert cfg["l2fast"] == l2fast.__version__
    assert cfg["openmp_runtime"]["max_threads"] >= 1
    if cfg["build"]["openmp"]:
        assert cfg["openmp_runtime"]["library"]
    assert cfg["simd"]["baseline"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_finite_rejects_a_non_finite_factor(bad):
    w = np.ones(4)
    with pytest.raises(FloatingPointError, match="factor"):
        l2fast.scale_([w], bad, check_finite=True)
    with pytest.raises(FloatingPointError, match="factor"):
        l2fast.sum_squares_scale_([w], bad, check_finite=True)
    with pytest.raises(FloatingPointError, match="alpha"):
        l2fast.add_scaled_([w], [np.ones(4)], bad, check_finite=True)
    with pytest.raises(FloatingPointError, match="factor"):
        l2fast.ParamList([w]).scale_(bad, check_finite=True)
    assert w.tolist() == [1.0] * 4
    l2fast.scale_([w], bad)  # without the check, IEEE arithmetic
    assert not np.isfinite(w).any() or bad != bad


def test_each_piece_is_told_where_its_thread_reads_next():
    """The loops prefetch past the end of a run into the next piece of the same
    item (dst_then, src_then: the next run of each operand), never into a piece
    another item holds: an item's last piece is told nothing."""
    from l2fast import _table
    arrays = [np.ones(1000, np.float32) for _ in range(5)] + [np.ones(3 * 65536 + 7, np.float32)]
    src = [np.ones(a.size, np.float64) for a in arrays]
    runs = _table.Table(tuple(arrays), None, tuple(src)).runs()
    assert [r[2] for r in runs[:5]] == [a.ctypes.data for a in arrays[:5]]
    assert len(runs) == 9 and runs[0][0] == runs[4][0] != runs[5][0]
    told = 0
    for (item, _, _, _, dst_then, src_then), nxt in zip(runs, runs[1:] + [None]):
        if nxt is not None and nxt[0] == item:
            told += 1
            assert dst_then == nxt[2]
            assert src_then == src[nxt[1]].ctypes.data + (nxt[2] - arrays[nxt[1]].ctypes.data) * 2
        else:
            assert dst_then == src_then == 0
    assert told == 4  # the five small arrays share an item; the big one's pieces do not


def test_only_a_contiguous_next_piece_is_named():
    """A 16-bit item holds two pieces of one array: the first is told the
    second, which starts right after it.  A strided next piece, a missing
    source and an empty table give nothing to follow."""
    from l2fast import _table
    h = np.ones(3 * 65536 + 5, np.float16)
    runs = _table.Table((h,)).runs()
    assert [(r[0], r[3]) for r in runs] == [(0, 65536), (0, 65536), (1, 65536), (1, 5)]
    assert [r[4] for r in runs] == [h.ctypes.data + 2 * 65536, 0, h.ctypes.data + 6 * 65536, 0]
    assert all(r[5] == 0 for r in runs)  # no source
    m = np.ones((10, 8), np.float32)
    runs = _table.Table((np.ones(16, np.float32), m[:, ::2])).runs()
    assert len(runs) == 2 and runs[0][4] == 0  # the next piece is strided (every other column)
    assert _table.Table(()).runs() == []
