"""l2fast.reference, the oracle of the other tests, checked on its own.

The exact sum of squares against `fractions.Fraction` and the `xsum`
superaccumulator; the NumPy twins' in-place results bitwise against
l2fast's; the baselines against what they say they compute.
"""
import ast
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import l2fast
from l2fast import reference
from l2fast.reference import exact_sum_squares, relative_error, round_to

xsum = pytest.importorskip("xsum")
ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


def fraction_sum_squares(values):
    """sum of x**2 in rational arithmetic, rounded once (inf above the range)."""
    try:
        return float(sum((Fraction(float(x)) ** 2 for x in values), Fraction(0)))
    except OverflowError:
        return math.inf


def xsum_of(squares):
    """The correctly rounded sum of float64 values, by xsum's superaccumulator."""
    acc = xsum.xsum_small()
    acc.add(np.ascontiguousarray(squares, dtype=np.float64).ravel())
    return acc.round()


def any_magnitude(rng, n):
    """float64 values from subnormals to ~1e300, zeros and both signs."""
    x = rng.standard_normal(n) * np.exp2(rng.integers(-1074, 1000, n).astype(np.float64))
    x[rng.random(n) < 0.1] = 0.0
    return x


# ---------------------------------------------------------------------------
# exact_sum_squares
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_exact_equals_fractions_at_every_magnitude(seed):
    rng = np.random.default_rng(seed)
    arrays = [any_magnitude(rng, int(rng.integers(0, 12))) for _ in range(4)]
    if seed % 4 == 0:  # the tiny values alone, where subnormal squares decide
        arrays = [a * 2.0 ** -500 for a in arrays]
    values = np.concatenate(arrays)
    assert exact_sum_squares(arrays) == fraction_sum_squares(values)
    per = exact_sum_squares(arrays, per_array=True)
    assert per.dtype == np.float64
    assert per.tolist() == [fraction_sum_squares(a) for a in arrays]


@pytest.mark.parametrize("seed", range(5))
def test_exact_equals_xsum_on_large_inputs(seed):
    """float64 values with 26-bit mantissas over 1e-150 .. 1e150: squares are
    exact float64 values, which xsum then adds exactly."""
    rng = np.random.default_rng(seed)
    n = 300_000
    x = np.ldexp(rng.integers(-2**26 + 1, 2**26, n).astype(np.float64),
                 rng.integers(-520, 470, n))
    arrays = [x[:1000], x[1000:].reshape(-1, 8)[:, ::-1]]
    assert exact_sum_squares(arrays) == xsum_of(x * x)
    f32 = (rng.standard_normal(n) * 0.02).astype(np.float32)  # exact squares in float64
    wide = f32.astype(np.float64)
    assert exact_sum_squares([f32, wide[::3]]) == xsum_of(np.concatenate([wide, wide[::3]]) ** 2)


def test_exact_rounds_once_where_the_order_would_matter():
    # 1 + 2**-54 + 2**-54 + 2**-300: float64 additions in any order give 1.0;
    # the exact sum is just above the midpoint 1 + 2**-53, so rounds up.
    x = np.array([1.0, 2.0 ** -27, 2.0 ** -27, 2.0 ** -150])
    assert exact_sum_squares(x) == 1.0 + 2.0 ** -52
    assert exact_sum_squares(x[:3]) == 1.0  # exactly the midpoint: ties to even
    assert float(np.dot(x, x)) == 1.0


def test_exact_subnormal_and_underflowing_squares():
    assert exact_sum_squares(np.full(3, 2.0 ** -537)) == 3 * 2.0 ** -1074
    assert exact_sum_squares(np.array([5e-324, -5e-324])) == 0.0  # 2 * 2**-2148 rounds to 0
    many = np.full(2 ** 20, 2.0 ** -540)     # each square is 2**-1080, below the subnormals,
    assert exact_sum_squares(many) == 2.0 ** -1060  # together they are not
    assert exact_sum_squares(np.array([1e-320, 1.0])) == 1.0


def test_exact_ieee_specials_and_overflow():
    assert exact_sum_squares([np.array([1.0, np.inf])]) == math.inf
    assert exact_sum_squares(np.array([-np.inf, 2.0])) == math.inf
    assert math.isnan(exact_sum_squares([np.array([np.inf]), np.array([np.nan, 1.0])]))
    assert exact_sum_squares(np.array([1e200, 1e200])) == math.inf
    assert exact_sum_squares(np.array([1.3e154, 1e-300])) == 1.3e154 ** 2  # finite, just
    assert exact_sum_squares(np.array([1.3e154, 1.3e154])) == math.inf
    per = exact_sum_squares([np.array([np.nan]), np.array([-np.inf]), np.ones(2)],
                            per_array=True)
    assert math.isnan(per[0]) and per[1:].tolist() == [math.inf, 2.0]


def test_exact_accepts_every_input_form():
    a, b = np.array([3.0, 4.0]), np.array([[1.0], [2.0]], np.float32)
    assert exact_sum_squares([a, b]) == exact_sum_squares((a, b)) == 30.0
    assert exact_sum_squares({"a": a, "b": b}, per_array=True).tolist() == [25.0, 5.0]
    assert exact_sum_squares(a) == 25.0 and exact_sum_squares(np.float32(2.0)) == 4.0
    assert exact_sum_squares([[3, 4], [1.0, 2.0]]) == 30.0
    assert exact_sum_squares(iter([a])) == 25.0
    assert exact_sum_squares([]) == 0.0 and exact_sum_squares([], per_array=True).shape == (0,)
    assert exact_sum_squares([np.zeros((0, 3))]) == 0.0
    with pytest.raises(TypeError):
        exact_sum_squares(np.ones(2, np.complex128))
    with pytest.raises(TypeError):
        exact_sum_squares("not arrays")


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32])
def test_exact_on_16_and_32_bit_arrays(dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(5000) * 3).astype(dtype)
    assert exact_sum_squares(x) == fraction_sum_squares(x.astype(np.float64))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_exact_on_torch_tensors(dtype):
    torch = pytest.importorskip("torch")
    t = torch.randn(300, 7, dtype=getattr(torch, dtype), requires_grad=True)
    values = t.detach().double().numpy()
    assert exact_sum_squares([t, t[:, ::2]]) == fraction_sum_squares(
        np.concatenate([values.ravel(), values[:, ::2].ravel()]))


@pytest.mark.models
def test_exact_on_a_model_equals_xsum(models_f32):
    ws = models_f32["resnet50"]
    wide = np.concatenate([w.ravel() for w in ws]).astype(np.float64)
    assert exact_sum_squares(ws) == xsum_of(wide * wide)


# ---------------------------------------------------------------------------
# relative_error, round_to
# ---------------------------------------------------------------------------

def test_relative_error():
    assert relative_error(1.0 + 2 ** -52, 1.0) == 2 ** -52
    assert relative_error(-3.0, -2.0) == 0.5
    assert relative_error(0.0, 0.0) == 0.0 and relative_error(math.inf, math.inf) == 0.0
    assert relative_error(1e-300, 0.0) == math.inf
    assert relative_error(1.0, math.inf) == math.inf
    assert math.isnan(relative_error(math.nan, 1.0))


#: Bit patterns of the largest finite positive value of each dtype.
LARGEST = {"float16": 0x7BFF, "bfloat16": 0x7F7F, "float32": 0x7F7FFFFF}


def neighbours(dtype, rng, n=2000):
    """Random finite non-negative values of `dtype` (subnormals included), the
    next value up, and their bit patterns."""
    bits = np.uint16 if dtype.itemsize == 2 else np.uint32
    raw = rng.integers(0, LARGEST[dtype.name], n).astype(bits)
    return raw.view(dtype).astype(np.float64), (raw + 1).view(dtype).astype(np.float64), raw


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), BF16, np.dtype(np.float32)])
def test_round_to_rounds_once_to_nearest_even(dtype):
    rng = np.random.default_rng(3)
    low, high, raw = neighbours(dtype, rng)
    mid = low + (high - low) / 2  # exact in float64
    nudge = (high - low) * 2.0 ** -20
    for sign in (1.0, -1.0):
        above = round_to(sign * (mid + nudge), dtype).astype(np.float64)
        below = round_to(sign * (mid - nudge), dtype).astype(np.float64)
        tie = round_to(sign * mid, dtype).astype(np.float64)
        np.testing.assert_array_equal(above, sign * high)
        np.testing.assert_array_equal(below, sign * low)
        np.testing.assert_array_equal(tie, sign * np.where(raw % 2 == 0, low, high))
    assert round_to(1e39, dtype) == np.inf and round_to(-1e39, dtype) == -np.inf
    assert np.isnan(round_to(np.nan, dtype)) and round_to(-0.0, dtype).tobytes() == \
        np.array(-0.0, dtype).tobytes()


# ---------------------------------------------------------------------------
# The twins against l2fast: bitwise in place, close sums
# ---------------------------------------------------------------------------

def mixed_views(seed):
    """float32 and float64 arrays, contiguous and strided views of two buffers,
    one large enough for l2fast's threads."""
    rng = np.random.default_rng(seed)
    b32 = rng.standard_normal(400_000).astype(np.float32)
    b64 = rng.standard_normal(60_000)
    return [b32[:300_000], b32[300_001::3], b64[:6000].reshape(60, 100)[::2, ::-3].T,
            b64[10_000:10_000 + 3 * 5 * 7].reshape(3, 5, 7, order="F"),
            rng.standard_normal(50).astype(np.float32), np.asarray(rng.standard_normal())]


def copies_of(arrays):
    return [np.array(a, copy=True) for a in arrays]


@pytest.mark.parametrize("seed", range(4))
def test_twin_scale_and_fused_are_bitwise_l2fast(seed):
    factor = float(np.random.default_rng(seed).uniform(-3, 3))
    ws, twins = mixed_views(seed), mixed_views(seed)
    l2fast.scale_(ws, factor)
    assert reference.scale_(twins, factor, num_threads=2) is None
    assert all(a.tobytes() == b.tobytes() for a, b in zip(ws, twins))
    expected = l2fast.sum_squares(ws, per_array=True)
    got = l2fast.sum_squares_scale_(ws, 1 / factor)
    twin = reference.sum_squares_scale_(twins, 1 / factor, per_array=True)
    np.testing.assert_allclose(twin, expected, rtol=1e-13)
    assert twin.sum() == pytest.approx(got, rel=1e-13)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(ws, twins))


@pytest.mark.parametrize("seed", range(4))
def test_twin_add_scaled_is_bitwise_l2fast(seed):
    rng = np.random.default_rng(seed)
    alpha = float(rng.uniform(-2, 2))
    src = mixed_views(seed + 100)
    gs = [a.astype(np.float64 if i % 2 else np.float32) for i, a in enumerate(mixed_views(seed))]
    twins = copies_of(gs)
    l2fast.add_scaled_(gs, src, alpha)
    reference.add_scaled_(twins, src, alpha)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(gs, twins))
    x = copies_of(src[:2])
    reference.add_scaled_(x, x, 0.5)                 # dst is src: dst * 1.5
    l2fast.add_scaled_(src[:2], src[:2], 0.5)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(src[:2], x))


def test_twin_sums_match_l2fast():
    ws = mixed_views(7)
    assert reference.sum_squares(ws) == pytest.approx(l2fast.sum_squares(ws), rel=1e-13)
    np.testing.assert_allclose(reference.sum_squares(ws, per_array=True),
                               l2fast.sum_squares(ws, per_array=True), rtol=1e-13)
    assert reference.sum_squares(ws[0]) == pytest.approx(l2fast.sum_squares(ws[0]), rel=1e-13)
    assert reference.sum_squares([]) == 0.0


def test_twins_pair_dicts_by_key_as_l2fast_does():
    g = {"a": np.zeros(2), "b": np.zeros(3, np.float32)}
    w = {"b": np.full(3, 3.0), "a": np.full(2, 2.0)}
    twin = {k: v.copy() for k, v in g.items()}
    l2fast.add_scaled_(g, w, 0.1)
    reference.add_scaled_(twin, w, 0.1)
    assert all(g[k].tobytes() == twin[k].tobytes() for k in g)
    for f in (l2fast.add_scaled_, reference.add_scaled_):
        with pytest.raises(ValueError):
            f(g, {"a": np.ones(2)}, 0.5)
        with pytest.raises(ValueError):
            f([np.ones(2)], [np.ones(3)], 0.5)
    assert reference.sum_squares(w, per_array=True).tolist() == [27.0, 8.0]


def raised(call):
    try:
        call()
    except FloatingPointError as e:
        return str(e)
    return None


CALLS = {
    "sum_squares": lambda m, ws, o: m.sum_squares(ws, check_finite=True),
    "scale_": lambda m, ws, o: m.scale_(ws, 0.5, check_finite=True),
    "sum_squares_scale_": lambda m, ws, o: m.sum_squares_scale_(ws, 0.5, check_finite=True),
    "add_scaled_ dst": lambda m, ws, o: m.add_scaled_(ws, o, 0.5, check_finite=True),
    "add_scaled_ src": lambda m, ws, o: m.add_scaled_(o, ws, 0.5, check_finite=True),
    "scale_ factor": lambda m, ws, o: m.scale_(o, math.inf, check_finite=True),
    "add_scaled_ alpha": lambda m, ws, o: m.add_scaled_(o, o, math.nan, check_finite=True),
}


@pytest.mark.parametrize("named", [False, True], ids=["list", "dict"])
@pytest.mark.parametrize("call", list(CALLS))
def test_twins_check_finite_raise_what_l2fast_raises(call, named):
    def inputs():
        ws = [np.ones(4), np.ones(3, np.float32), np.array([1.0, np.nan]), np.full(2, np.inf)]
        other = [np.ones(a.shape) for a in ws]
        if named:
            return dict(zip("wxyz", ws)), dict(zip("wxyz", other))
        return ws, other

    ws, other = inputs()
    twin_ws, twin_other = inputs()
    message = raised(lambda: CALLS[call](l2fast, ws, other))
    assert message is not None
    assert raised(lambda: CALLS[call](reference, twin_ws, twin_other)) == message
    assert reference.sum_squares(ws) != reference.sum_squares(ws)  # NaN, no exception


@pytest.mark.parametrize("module", [l2fast, reference], ids=["l2fast", "reference"])
def test_twins_refuse_a_read_only_array_before_writing(module):
    frozen = np.ones(3)
    frozen.flags.writeable = False
    ws = [np.ones(2), frozen]
    with pytest.raises(ValueError, match=r"arrays\[1\] is read-only"):
        module.scale_(ws, 2.0)
    with pytest.raises(ValueError, match=r"arrays\[1\] is read-only"):
        module.sum_squares_scale_(ws, 2.0)
    with pytest.raises(ValueError, match=r"dst\[1\] is read-only"):
        module.add_scaled_(ws, [np.ones(2), np.ones(3)], 1.0)
    assert ws[0].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------
# The baselines
# ---------------------------------------------------------------------------

def test_baselines_compute_what_their_names_say():
    rng = np.random.default_rng(5)
    ws = [rng.standard_normal((30, 20)), rng.standard_normal(7).astype(np.float32)]
    exact = exact_sum_squares(ws)
    assert reference.vdot_loop(ws) == pytest.approx(exact, rel=1e-6)
    assert reference.einsum_loop(ws) == pytest.approx(exact, rel=1e-6)
    before = copies_of(ws)
    assert reference.vdot_then_scale_(ws, 0.5) == reference.vdot_loop(before)
    assert all(np.array_equal(a, b * np.asarray(0.5, b.dtype)) for a, b in zip(ws, before))
    reference.scale_loop_(ws, 2.0)
    assert all(np.array_equal(a, b) for a, b in zip(ws, before))
    gs = copies_of(ws)
    reference.add_loop_(gs, ws, 0.25)
    assert all(np.array_equal(g, w + 0.25 * w) for g, w in zip(gs, ws))


# ---------------------------------------------------------------------------
# Independence
# ---------------------------------------------------------------------------

def test_reference_imports_only_numpy_and_the_standard_library(tmp_path):
    path = Path(reference.__file__)
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: nothing of l2fast"
            imported.add(node.module.split(".")[0])
    assert imported <= {"numpy"} | set(sys.stdlib_module_names), imported
    # loaded on its own, it runs without l2fast's kernels
    code = ("import importlib.util, sys, numpy as np\n"
            f"spec = importlib.util.spec_from_file_location('ref', {str(path)!r})\n"
            "ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)\n"
            "assert ref.exact_sum_squares([np.arange(4.0)]) == 14.0\n"
            "assert not any(m.startswith('l2fast') for m in sys.modules), sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)

