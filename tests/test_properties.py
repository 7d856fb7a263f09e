"""Property tests over random ragged lists of arrays (hypothesis)."""
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import l2fast
from l2fast import reference
from l2fast.reference import exact_sum_squares

finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def one_array(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9))
    elements = st.floats(-1e3, 1e3, width=32 if dtype == np.float32 else 64, **finite)
    a = np.asarray(draw(hnp.arrays(dtype, shape, elements=elements)))  # 0-d: an array
    layout = draw(st.sampled_from(["C", "F", "view"]))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "view" and a.ndim and a.size:
        # a strided, possibly reversed view into a larger buffer
        big = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype)
        idx = tuple(slice(None, 2 * s, 2) if k % 2 == 0 else slice(2 * s - 1, None, -2)
                    for k, s in enumerate(a.shape))
        big[idx] = a
        a = big[idx]
    return a


ragged = st.lists(one_array(), min_size=0, max_size=12)
threads = st.sampled_from([1, 2, 3, 7])
opts = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@opts
@given(ragged, threads)
def test_sum_squares_property(ws, nt):
    before = [a.copy() for a in ws]
    s = l2fast.sum_squares(ws, num_threads=nt)
    ref = exact_sum_squares(ws)
    # relative error, plus one subnormal step per square (a square below
    # 2**-1022 is rounded to a multiple of 2**-1074)
    tiny = math.ulp(0.0) * sum(a.size for a in ws)
    assert abs(s - ref) <= 1e-13 * ref + tiny
    per = l2fast.sum_squares(ws, per_array=True, num_threads=nt)
    assert per.shape == (len(ws),)
    for p, a in zip(per, ws):
        r = exact_sum_squares([a])
        assert abs(p - r) <= 1e-13 * r + math.ulp(0.0) * a.size
    for a, b in zip(ws, before):
        assert a.tobytes() == b.tobytes()


@opts
@given(ragged, st.floats(-4, 4, **finite), threads)
def test_scale_and_fused_property(ws, c, nt):
    expected = [a.copy() for a in ws]
    reference.scale_(expected, c)
    copies = [a.copy() for a in ws]
    plain = l2fast.sum_squares(ws, num_threads=1)
    s = l2fast.sum_squares_scale_(ws, c, num_threads=nt)
    assert s == plain
    l2fast.scale_(copies, c, num_threads=nt)
    for a, b, e in zip(ws, copies, expected):
        np.testing.assert_array_equal(a, e)
        np.testing.assert_array_equal(b, e)


@opts
@given(ragged, st.floats(-4, 4, **finite), threads, st.data())
def test_add_scaled_property(ws, alpha, nt, data):
    gs = [np.asarray(data.draw(hnp.arrays(data.draw(st.sampled_from([np.float32, np.float64])),
                                          w.shape,
                                          elements=st.floats(-1e3, 1e3, width=32, **finite))))
          for w in ws]
    expected = [g.copy() for g in gs]
    reference.add_scaled_(expected, ws, alpha)
    wsnap = [w.copy() for w in ws]
    l2fast.add_scaled_(gs, ws, alpha, num_threads=nt)
    for g, e in zip(gs, expected):
        np.testing.assert_array_equal(g, e)
    for w, b in zip(ws, wsnap):
        assert w.tobytes() == b.tobytes()
