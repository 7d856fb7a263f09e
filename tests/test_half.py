"""float16 and bfloat16: exact sums, stores rounded once, every bit pattern.

The references are independent of l2fast's kernels: `reference.round_to`
rounds float64 values once with NumPy (float16: NumPy's own cast; bfloat16:
round to odd in float32, then ml_dtypes' cast), itself checked against
`fractions` in test_reference.py; `reference.exact_sum_squares` is the exact
sum, rounded once.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import l2fast
from l2fast import models, reference

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALVES = [F16, BF16]
ALL = [F16, BF16, np.dtype(np.float32), np.dtype(np.float64)]
FACTORS = [1.0, 1 - 1e-8, 0.5, 2.0, 1e-30, 1e30, -0.7, 3.0, 1 / 3, 1 - 3e-6,
           1 + 2**-8 + 2**-40, 1 + 2**-11 + 2**-40, 1e-5, 7e4, 2.0**-20]
ID = {F16: "float16", BF16: "bfloat16"}
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN/inf references


def every_pattern(dtype):
    """All 65,536 values of a 16-bit dtype, in bit order."""
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)


def same_bits(got, want):
    """Bitwise equal, except that any NaN matches any NaN of the same sign."""
    g, w = got.view(np.uint16), want.view(np.uint16)
    nan_g, nan_w = np.isnan(got.astype(np.float32)), np.isnan(want.astype(np.float32))
    assert np.array_equal(nan_g, nan_w)
    assert np.array_equal((g >> 15)[nan_g], (w >> 15)[nan_w])
    bad = np.flatnonzero((g != w) & ~nan_g)
    assert bad.size == 0, f"{bad.size} differ, first at {bad[0]}: {g[bad[0]]:#06x} != {w[bad[0]]:#06x}"


@pytest.mark.parametrize("dtype", HALVES, ids=ID.get)
@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("threads", [1, 2])
def test_scale_every_pattern_rounds_once(dtype, factor, threads):
    w = every_pattern(dtype)
    want = reference.round_to(w.astype(np.float64) * factor, dtype)
    got = w.copy()
    parts = [got[:39995], got[39995:40017], got[40017:]]  # runs and tails, off 32-element steps
    l2fast.scale_(parts, factor, num_threads=threads)
    same_bits(got, want)
    strided = w.copy()
    l2fast.scale_([strided[::3], strided[1::3], strided[2::3]], factor)  # the strided loop
    same_bits(strided, want)


@pytest.mark.parametrize("dtype", HALVES, ids=ID.get)
@pytest.mark.parametrize("factor", [0.5, 1 - 1e-8, 1e-30, 1e30, -0.7])
def test_sum_squares_scale_every_pattern(dtype, factor):
    w = every_pattern(dtype)
    finite = w[np.isfinite(w.astype(np.float32))].copy()
    before = finite.astype(np.float64)
    total = l2fast.sum_squares_scale_([finite], factor)
    same_bits(finite, reference.round_to(before * factor, dtype))
    assert total == reference.exact_sum_squares([before]) or \
        reference.relative_error(total, reference.exact_sum_squares([before])) <= 1e-12


@pytest.mark.parametrize("dtype", HALVES, ids=ID.get)
@pytest.mark.parametrize("src_dtype", ALL, ids=str)
@pytest.mark.parametrize("alpha", [1e-3, -0.5, 2**-9, 1e30])
def test_add_scaled_every_pattern(dtype, src_dtype, alpha):
    g = every_pattern(dtype)
    rng = np.random.default_rng(7)
    w = (rng.standard_normal(g.size) * np.exp2(rng.integers(-20, 8, g.size))).astype(src_dtype)
    want = reference.round_to(g.astype(np.float64) + alpha * w.astype(np.float64), dtype)
    got = g.copy()
    l2fast.add_scaled_([got], [w], alpha)
    same_bits(got, want)


@pytest.mark.parametrize("src_dtype", [np.float32, np.float64, np.float16], ids=str)
@pytest.mark.parametrize("alpha", [1.0, 0.75, -3.0])
def test_add_scaled_into_bf16_near_zero_and_nan(src_dtype, alpha):
    """Results in float32's subnormal range (where rounding through float32
    rounds twice) and NaNs with low payload bits, from wider sources."""
    rng = np.random.default_rng(11)
    n = 4099
    lo = -30 if src_dtype is np.float16 else -152
    s = (rng.uniform(1, 2, n) * np.exp2(rng.integers(lo, lo + 34, n))).astype(src_dtype)
    s[::7] *= -1
    if src_dtype is not np.float16:
        if src_dtype is np.float32:
            itype, nans = np.uint32, [0x7fc00001, 0x7f800003, 0xffc000ff, 0x7fffffff]
        else:
            itype = np.uint64
            nans = [0x7ff8000000000001, 0x7ff0000000000003, 0xfff80000000000ff, (1 << 63) - 1]
        s[:4] = np.array(nans, itype).view(src_dtype)
        assert np.isnan(s[:4]).all()
    g = (rng.uniform(-1, 1, n) * 2.0**-127).astype(BF16)
    want = reference.round_to(g.astype(np.float64) + alpha * s.astype(np.float64), BF16)
    got = g.copy()
    l2fast.add_scaled_([got], [s], alpha)
    same_bits(got, want)


@pytest.mark.parametrize("dtype", HALVES, ids=ID.get)
@pytest.mark.parametrize("alpha", [1.0, -1.0, 0.5, -1 - 2**-9, 3.0, 1 - 2**-20, 0.1, -1 / 3, 1e-3, 1 + 2**-30])
def test_add_scaled_ties_and_cancellation(dtype, alpha):
    """g + alpha * w where it is hardest to round: sums of neighbouring and
    shuffled patterns (many exact 16-bit ties) and w close to -g / alpha
    (results far below both terms, or zero)."""
    g = every_pattern(dtype)
    rng = np.random.default_rng(5)
    near_minus = (-g.astype(np.float64) / alpha).astype(dtype)
    for w in [np.roll(g, 1), rng.permutation(g), near_minus, np.roll(near_minus, 1)]:
        w[np.isnan(g.astype(np.float32)) & np.isnan(w.astype(np.float32))] = 0  # NaN + NaN: either sign
        want = reference.round_to(g.astype(np.float64) + alpha * w.astype(np.float64), dtype)
        got = g.copy()
        l2fast.add_scaled_([got], [w], alpha)
        same_bits(got, want)


def factors_across_a_midpoint(count=16):
    """(alpha, w): alpha * w lies just above a bfloat16 midpoint M in [1, 2),
    float32(alpha) * w (rounded to float32) just below it, so a loop that
    works from float32(alpha) must see that it is near M."""
    w = 1 + np.arange(128) / 128
    mids = 1 + (2 * np.arange(128) + 1) / 256
    a = (mids[None, :] + 2.0**-40) / w[:, None]
    t = (a.astype(np.float32) * w[:, None].astype(np.float32)).astype(np.float64)
    i, j = np.nonzero((t < mids[None, :]) & (a > 0.5) & (a < 2))
    assert len(i) > count
    return [(float(a[i[k], j[k]]), w[i[k]]) for k in np.linspace(0, len(i) - 1, count).astype(int)]


@pytest.mark.parametrize("dtype", HALVES, ids=ID.get)
def test_factor_rounded_to_float32_across_a_midpoint(dtype):
    for alpha, wv in factors_across_a_midpoint():
        w = np.full(40, wv).astype(dtype)
        g = np.zeros(40, dtype)
        g[::2] = np.asarray(2.0**-12, dtype)  # near the midpoint, but not on it
        want = reference.round_to(g.astype(np.float64) + alpha * w.astype(np.float64), dtype)
        got = g.copy()
        l2fast.add_scaled_([got], [w], alpha)
        same_bits(got, want)
        got = w.copy()
        l2fast.scale_([got], alpha)
        same_bits(got, reference.round_to(w.astype(np.float64) * alpha, dtype))


def test_f16_matches_numpy_cast_and_bf16_fixes_the_double_rounding():
    x = np.float64(1 + 2**-8 + 2**-40)
    one = np.ones(4, BF16)
    l2fast.scale_(one, x)
    assert (one.astype(np.float64) == 1 + 2**-7).all()  # one rounding
    # ml_dtypes' own cast went through float32 (two roundings) before 0.7.0
    # and rounds once from 0.7.0 on
    twice = tuple(int(v) for v in ml_dtypes.__version__.split(".")[:2]) < (0, 7)
    assert float(np.float64(x).astype(BF16)) == (1.0 if twice else 1 + 2**-7)
    h = every_pattern(F16)
    got = h.copy()
    l2fast.scale_(got, 1 / 3)
    same_bits(got, (h.astype(np.float64) * (1 / 3)).astype(np.float16))


def test_tiny_decay_leaves_bf16_weights_unchanged():
    """A decay below half a bfloat16 ulp rounds back to every weight."""
    w = np.random.default_rng(1).standard_normal(10_000).astype(BF16)
    before = w.copy()
    l2fast.scale_(w, 1 - 3e-6)
    assert np.array_equal(w.view(np.uint16), before.view(np.uint16))


# ---------------------------------------------------------------------------
# Sums: bitwise the float32 upcast's, and exact to 1e-12
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["resnet50", "bert-base-uncased"])
@pytest.mark.parametrize("dtype", HALVES, ids=ID.get)
def test_model_sums_equal_the_float32_upcast(model, dtype):
    rng = np.random.default_rng(3)
    arrays = [(rng.standard_normal(s, dtype=np.float32) * 0.05).astype(dtype)
              for _, s in models.shapes(model)]
    up = [a.astype(np.float32) for a in arrays]
    exact = reference.exact_sum_squares(up)
    for threads in (1, 2):
        s = l2fast.sum_squares(arrays, num_threads=threads)
        assert s == l2fast.sum_squares(up, num_threads=threads)
        assert reference.relative_error(s, exact) <= 1e-12
        w = [a.copy() for a in arrays]  # the fused pass sums the same bits
        assert l2fast.sum_squares_scale_(w, 0.75, num_threads=threads) == s
    per = l2fast.sum_squares(arrays, per_array=True)
    assert np.array_equal(per, l2fast.sum_squares(up, per_array=True))


@pytest.mark.parametrize("dtype", HALVES, ids=ID.get)
def test_sums_round_in_the_float32_loops_lane_order(dtype):
    """16-bit sums put every element in the float64 lane of the float32 loop,
    at every start offset and length.  A few large values among small ones
    make the lanes that hold them drop the small ones' low bits, so that an
    element summed into another lane changes the result (checked by moving
    the vector loop's lanes against its tail's: the test fails)."""
    rng = np.random.default_rng(11)
    big, lo, hi = (20, -5, 5) if dtype == BF16 else (12, -14, 0)
    x = (1 + rng.random(6000)) * np.exp2(rng.integers(lo, hi, 6000))
    x[rng.integers(0, 6000, 200)] *= 2.0**big
    w = x.astype(np.float32).astype(dtype)
    rounded = 0
    for k in range(40):
        a = w[k:k + 4000 + k]
        up = a.astype(np.float32)
        s = l2fast.sum_squares(a, num_threads=1)
        assert s == l2fast.sum_squares(up, num_threads=1), k
        assert l2fast.sum_squares_scale_(a.copy(), 0.75, num_threads=1) == s, k
        rounded += s != reference.exact_sum_squares([up])
    assert rounded >= 30  # the lanes round: where an element goes shows


def assert_same_bytes(x, y):
    """Every byte of x equals y's (these lists hold no NaN)."""
    bad = np.flatnonzero(x.view(np.uint8) != y.view(np.uint8))
    assert bad.size == 0, f"{x.dtype}: {bad.size} bytes differ, first at byte {bad[0]}"


SIZES = [1, 3, 31, 33, 511, 513, 65535, 65536, 65537, 2 * 65536 + 3, 300_001]


@pytest.mark.parametrize("mix", ["float16", "bfloat16", "mixed"])
def test_ragged_lists_every_operation(mix):
    rng = np.random.default_rng(11)
    for rep in range(20):
        sizes = rng.choice(SIZES, size=rng.integers(1, 12))
        dtypes = [ALL[rng.integers(4)] if mix == "mixed" else np.dtype(mix) for _ in sizes]
        make = lambda n, dt: (rng.standard_normal(n) * 0.1).astype(dt)  # noqa: E731
        w = [make(n, dt) for n, dt in zip(sizes, dtypes)]
        g = [make(n, ALL[rng.integers(4)]) for n in sizes]
        c, a = 1 - rng.random() * 1e-2, rng.standard_normal() * 1e-3
        exact = reference.exact_sum_squares(w)
        s = l2fast.sum_squares(w)
        assert reference.relative_error(s, exact) <= 1e-12
        w2 = [x.copy() for x in w]
        total = l2fast.sum_squares_scale_(w, c)
        assert total == s
        reference.scale_(w2, c)
        assert reference.relative_error(total, exact) <= 1e-12
        for x, y in zip(w, w2):
            assert_same_bytes(x, y)
        g2 = [x.copy() for x in g]
        l2fast.add_scaled_(w, g, a)
        reference.add_scaled_(w2, g2, a)
        for x, y in zip(w, w2):
            assert_same_bytes(x, y)


def test_float16_squares_do_not_overflow():
    big = np.full(1000, 65504, np.float16)
    assert l2fast.sum_squares([big]) == 1000 * 65504.0**2
    assert np.isinf(np.vdot(big, big))  # what a float16 dot gives


def test_check_finite_names_the_16bit_array():
    bad = np.ones(10, BF16)
    bad[3] = np.nan
    with pytest.raises(FloatingPointError, match=r"arrays\['b'\]"):
        l2fast.sum_squares({"a": np.ones(3, F16), "b": bad}, check_finite=True)


def test_paramlist_and_l2_take_16bit():
    w = [np.full(100, 0.5, BF16), np.full(7, 2.0, F16)]
    p = l2fast.ParamList(w)
    assert p.sum_squares() == 100 * 0.25 + 7 * 4.0
    reg = l2fast.L2(0.1, m=10)
    assert reg.penalty(w) == pytest.approx(0.1 / 20 * (25 + 28), rel=1e-15)


# ---------------------------------------------------------------------------
# torch: zero copy, in place, autograd untouched; ml_dtypes not needed
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_torch_16bit_parameters_in_place(name):
    torch = pytest.importorskip("torch")
    dtype = getattr(torch, name)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(300, 200), torch.nn.Linear(200, 10)).to(dtype)
    params = list(model.parameters())
    ptrs = [p.data_ptr() for p in params]
    before = [p.detach().float().numpy().astype(np.float64) for p in params]
    want_dtype = BF16 if name == "bfloat16" else F16
    s = l2fast.sum_squares(dict(model.named_parameters()))
    # float64 lanes, not yet correctly rounded: exact to the documented 1e-12 bound
    assert reference.relative_error(s, reference.exact_sum_squares(before)) <= 1e-12
    assert s == l2fast.sum_squares([p.detach().float() for p in params])  # the float32 upcast
    with torch.no_grad():
        l2fast.scale_(model.parameters(), 0.9)
    for p, ptr, b in zip(params, ptrs, before):
        assert p.data_ptr() == ptr and p.requires_grad and p.grad is None and p.is_leaf
        got = p.detach().view(torch.int16).numpy().view(np.uint16)
        want = reference.round_to(b * 0.9, want_dtype).view(np.uint16).reshape(got.shape)
        np.testing.assert_array_equal(got, want)
    grads = [torch.ones_like(p, dtype=torch.float32) for p in params]
    l2fast.add_scaled_(grads, params, 1e-2)
    for gr, p in zip(grads, params):
        np.testing.assert_array_equal(
            gr.numpy(), reference.round_to(1 + 1e-2 * p.detach().double().numpy(), np.float32))


def test_torch_bfloat16_works_without_ml_dtypes():
    code = ("import sys; sys.modules['ml_dtypes'] = None\n"
            "import torch, l2fast\n"
            "t = torch.ones(5120, dtype=torch.bfloat16)\n"
            "print(l2fast.sum_squares([t]), torch.ones(5120, dtype=torch.bfloat16).norm().item())\n")
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ours, torch_norm = out.stdout.split()
    assert float(ours) == 5120.0
    assert float(torch_norm) != 5120.0**0.5  # torch's bf16 norm is not exact (256 here)


# every level of 16-bit loops this CPU has: the tests above run the highest;
# these run them again with the lower ones (L2FAST_LOOPS16_LEVEL caps it)
@pytest.mark.parametrize("level", ["3", "0"])
def test_every_level_of_16bit_loops(level):
    have = l2fast.show_config(mode="dicts")["simd"]["loops16"]
    if level == "3" and not have.startswith("x86-64-v4"):
        pytest.skip(f"the 16-bit loops here are {have}: the tests above ran them")
    if level == "0" and have == "generic":
        pytest.skip("the 16-bit loops here are the generic ones: the tests above ran them")
    env = dict(os.environ, L2FAST_LOOPS16_LEVEL=level)
    show = [sys.executable, "-c", "import l2fast; print(l2fast.show_config(mode='dicts')['simd']['loops16'])"]
    got = subprocess.run(show, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert got == ("x86-64-v3 (AVX2, FMA, F16C)" if level == "3" else "generic")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                          "-k", "not every_level_of_16bit_loops"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
