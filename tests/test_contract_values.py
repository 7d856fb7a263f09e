"""The input contract, values: NaN and Inf, check_finite, extreme magnitudes.

Without `check_finite`, NaN and +-Inf propagate as IEEE arithmetic says.
With ``check_finite=True`` every call raises FloatingPointError naming the
first array (in list order; for add_scaled_, dst arrays before src arrays)
that holds a NaN or an Inf, and in-place calls raise before anything is
written.  float32 values whose squares overflow float32 are squared in
float64, so their sum is right.

See docs/contract.md.
"""
import math

import numpy as np
import pytest

import l2fast
from l2fast import reference
from l2fast.reference import exact_sum_squares

DTYPES = [np.float32, np.float64]
NONFINITE = [np.nan, np.inf, -np.inf]


def dyadic(shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(-64, 65, size=shape) / 8).astype(dtype)


def same(x, y):
    """Equal values, NaN equal to any NaN, -0.0 distinct from 0.0."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    signs = np.where(np.isnan(x), False, np.signbit(x)) == np.where(np.isnan(y), False,
                                                                    np.signbit(y))
    return np.array_equal(x, y, equal_nan=True) and bool(signs.all())


# ---------------------------------------------------------------------------
# NaN and Inf propagate
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [50, 200_000])
def test_nan_and_inf_propagate_through_sums(dtype, n):
    clean = dyadic(n, dtype)
    with_inf, with_ninf, with_nan = clean.copy(), clean.copy(), clean.copy()
    with_inf[n // 3] = np.inf
    with_ninf[-1] = -np.inf
    with_nan[n // 2] = np.nan
    per = l2fast.sum_squares([clean, with_inf, with_ninf, with_nan], per_array=True,
                             num_threads=2)
    assert same(per, [exact_sum_squares([clean]), np.inf, np.inf, np.nan])
    assert l2fast.sum_squares([clean, with_inf, with_ninf]) == np.inf
    assert math.isnan(l2fast.sum_squares([with_inf, with_nan]))
    assert math.isnan(l2fast.sum_squares_scale_([clean.copy(), with_nan], 2.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factor", [0.5, -1.0, 0.0, np.inf, np.nan])
def test_nan_and_inf_propagate_through_scale(dtype, factor):
    w = np.array([1.5, -2.0, 0.0, np.inf, -np.inf, np.nan], dtype)
    expected = w.copy()
    reference.scale_(expected, factor)
    l2fast.scale_(w, factor)
    assert same(w, expected)
    assert w.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate_through_add_scaled(dtype):
    d = np.array([1.0, np.inf, np.inf, -np.inf, np.nan, 2.0, 3.0], dtype)
    s = np.array([np.inf, 1.0, -np.inf, -np.inf, 0.0, np.nan, -np.inf], np.float64)
    expected = d.copy()
    reference.add_scaled_(expected, s, 0.5)
    l2fast.add_scaled_(d, s, 0.5)
    assert same(d, expected)
    assert same(expected, [np.inf, np.inf, np.nan, -np.inf, np.nan, np.nan, -np.inf])


# ---------------------------------------------------------------------------
# check_finite=True on every call
# ---------------------------------------------------------------------------

# Every call, on a list `ws` and a float64 list `other` of the same shapes
# (dst of the "src" cases, src of the "dst" cases).
CHECKED = {
    "sum_squares": lambda ws, other, **kw: l2fast.sum_squares(ws, **kw),
    "sum_squares per_array":
        lambda ws, other, **kw: l2fast.sum_squares(ws, per_array=True, **kw),
    "scale_": lambda ws, other, **kw: l2fast.scale_(ws, 0.5, **kw),
    "sum_squares_scale_": lambda ws, other, **kw: l2fast.sum_squares_scale_(ws, 0.5, **kw),
    "add_scaled_ dst": lambda ws, other, **kw: l2fast.add_scaled_(ws, other, 0.5, **kw),
    "add_scaled_ src": lambda ws, other, **kw: l2fast.add_scaled_(other, ws, 0.5, **kw),
    "ParamList.sum_squares":
        lambda ws, other, **kw: l2fast.ParamList(ws).sum_squares(**kw),
    "ParamList.scale_": lambda ws, other, **kw: l2fast.ParamList(ws).scale_(0.5, **kw),
    "ParamList.sum_squares_scale_":
        lambda ws, other, **kw: l2fast.ParamList(ws).sum_squares_scale_(0.5, **kw),
    "ParamList.add_scaled_ dst":
        lambda ws, other, **kw: l2fast.ParamList(ws).add_scaled_(other, 0.5, **kw),
    "ParamList.add_scaled_ src":
        lambda ws, other, **kw: l2fast.ParamList(other).add_scaled_(l2fast.ParamList(ws),
                                                                    0.5, **kw),
}
LABEL = {name: ("src" if name.endswith(" src") else "dst" if "add_scaled_" in name
                else "arrays") for name in CHECKED}


def _model(dtype, n, seed=0):
    """Four arrays of assorted layouts: small, C 2-D, transposed, strided."""
    big = dyadic(2 * n, dtype, seed=seed + 3)
    return [dyadic(7, dtype, seed=seed), dyadic((n // 100, 100), dtype, seed=seed + 1),
            dyadic((30, 40), dtype, seed=seed + 2).T, big[::2]]


def _other(ws, seed=9):
    return [dyadic(w.shape, np.float64, seed=seed + i) for i, w in enumerate(ws)]


def _snapshot(ws):
    return [w.tobytes() for w in ws]


@pytest.mark.parametrize("call", list(CHECKED))
@pytest.mark.parametrize("bad", NONFINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1000, 300_000])
def test_check_finite_names_the_first_bad_array_and_changes_nothing(call, bad, dtype, n):
    ws = _model(dtype, n)
    ws[2][3, 5] = bad          # the first bad array: arrays[2] (a transposed view)
    ws[3][-1] = np.nan         # a later one
    other = _other(ws)
    snapshot = _snapshot(ws) + _snapshot(other)
    with pytest.raises(FloatingPointError) as info:
        CHECKED[call](ws, other, check_finite=True, num_threads=2)
    message = str(info.value)
    assert f"{LABEL[call]}[2]" in message, message
    assert "[3]" not in message
    assert _snapshot(ws) + _snapshot(other) == snapshot


@pytest.mark.parametrize("call", list(CHECKED))
def test_check_finite_with_finite_values_gives_the_usual_result(call):
    ws = _model(np.float32, 300_000, seed=1)
    other = _other(ws)
    w0, o0 = [w.copy() for w in ws], [o.copy() for o in other]
    result = CHECKED[call](ws, other, check_finite=True, num_threads=2)

    sums = exact_sum_squares(w0, per_array=True).tolist()
    if "per_array" in call:
        assert result.tolist() == sums
    elif "sum_squares" in call:
        assert result == sum(sums)
    else:
        assert result is None
    expected_ws, expected_other = [w.copy() for w in w0], [o.copy() for o in o0]
    if call.endswith("scale_") and "add" not in call:
        reference.scale_(expected_ws, 0.5)
    elif call.endswith(" dst"):
        reference.add_scaled_(expected_ws, o0, 0.5)
    elif call.endswith(" src"):
        reference.add_scaled_(expected_other, w0, 0.5)
    for w, e in zip(ws, expected_ws):
        assert w.dtype == np.float32 and w.tobytes() == e.tobytes()
    for o, e in zip(other, expected_other):
        assert o.dtype == np.float64 and o.tobytes() == e.tobytes()


def test_check_finite_in_add_scaled_names_dst_before_src():
    d = [np.ones(3), np.array([1.0, np.inf, 2.0])]
    s = [np.array([np.nan, 0.0, 0.0]), np.ones(3)]
    snapshot = _snapshot(d) + _snapshot(s)
    with pytest.raises(FloatingPointError, match=r"dst\[1\]"):
        l2fast.add_scaled_(d, s, 1.0, check_finite=True)
    d[1][1] = 0.0
    with pytest.raises(FloatingPointError, match=r"src\[0\]"):
        l2fast.add_scaled_(d, s, 1.0, check_finite=True)
    assert _snapshot(d)[0] == snapshot[0] and _snapshot(s) == snapshot[2:]


def test_check_finite_names_the_key_of_a_dict():
    ws = {"embed": np.ones(4, np.float32), "head.bias": np.array([0.0, np.nan])}
    with pytest.raises(FloatingPointError, match=r"arrays\['head.bias'\]"):
        l2fast.sum_squares_scale_(ws, 0.9, check_finite=True)
    assert ws["embed"].tolist() == [1.0] * 4


def test_check_finite_accepts_finite_float64_whose_squares_overflow():
    """1e200 is finite: check_finite passes it, and its square sums to inf."""
    w = np.array([1e200, 1.0])
    assert l2fast.sum_squares(w, check_finite=True) == np.inf
    l2fast.scale_(w, 0.5, check_finite=True)
    assert w.tolist() == [5e199, 0.5]


# ---------------------------------------------------------------------------
# Magnitudes: float32 squares that overflow (or underflow) float32
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [1e19, 3e19, 1.8e19, 3.4e38, -3.4e38])
def test_float32_values_whose_squares_overflow_float32(value):
    """Near 1e19 a float32 square overflows alone (3e19) or in a float32 sum
    (1e19); l2fast squares in float64.  The reference is the exact sum,
    correctly rounded; l2fast's documented bound is 1e-12."""
    v = np.float32(value)
    w = np.full(200_003, v, np.float32)
    w[::7] = np.float32(-value / 3)
    exact = exact_sum_squares(w)
    with np.errstate(over="ignore"):
        assert np.isinf(np.sum(w * w, dtype=np.float32))
    results = []
    for nt in (1, 2):
        got = l2fast.sum_squares(w, num_threads=nt)
        assert got == pytest.approx(exact, rel=1e-12)
        results.append(got)
        per = l2fast.sum_squares([w[:10], w[10:]], per_array=True, num_threads=nt)
        head, tail = exact_sum_squares([w[:10], w[10:]], per_array=True)
        assert per.tolist() == [pytest.approx(head, rel=1e-15), pytest.approx(tail, rel=1e-12)]
    assert results[0] == results[1]          # bitwise, for any thread count
    assert l2fast.sum_squares_scale_(w, 0.5, num_threads=2) == results[0]
    assert l2fast.sum_squares(w) == results[0] / 4


def test_float32_values_whose_squares_underflow_float32():
    w = np.array([1e-30, -3e-25, 2e-38, 1e-45], np.float32)   # 1e-45: subnormal
    exact = exact_sum_squares(w)
    assert np.float32(w[0]) * np.float32(w[0]) == 0
    assert l2fast.sum_squares(w) == exact
    assert l2fast.sum_squares(w.astype(np.float64)) == exact


def test_check_finite_checks_the_factor_too():
    """check_finite refuses a non-finite factor or alpha before anything is
    written; without it the factor is applied as given (IEEE arithmetic)."""
    w = np.array([1.0, 0.0])
    with pytest.raises(FloatingPointError, match="factor is inf"):
        l2fast.scale_(w, np.inf, check_finite=True)
    assert same(w, [1.0, 0.0])
    d = np.ones(2)
    with pytest.raises(FloatingPointError, match="alpha is nan"):
        l2fast.add_scaled_(d, np.ones(2), np.nan, check_finite=True)
    assert same(d, [1.0, 1.0])
    l2fast.scale_(w, np.inf)
    assert same(w, [np.inf, np.nan])
    l2fast.add_scaled_(d, np.ones(2), np.nan)
    assert np.isnan(d).all()
