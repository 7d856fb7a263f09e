"""With reproducible=True (or partial=True) sums depend on the values alone,
and are the exact sum correctly rounded.

The oracle is l2fast.reference.exact_sum_squares (Python integers), checked
itself against fractions and xsum on small cases.  Each model test cuts the
model's values at random points, shuffles the pieces, lays some out as
strided views, and asks for the sum with 1 to 8 threads: every answer must
be the same bits, equal to the oracle.
"""
import math
import random
from fractions import Fraction

import numpy as np
import pytest

import l2fast
from conftest import model_arrays
from l2fast.reference import exact_sum_squares

PARTITIONS = 12   # random partitions per model and dtype


def fraction_sum(values):
    """The exact sum of squares, rounded once (Fraction -> float is correct rounding)."""
    total = sum(Fraction(float(v)) ** 2 for v in np.asarray(values, np.float64).ravel())
    try:
        return float(total)
    except OverflowError:
        return math.inf


def strided_copy(a, rng):
    """The values of `a` behind a non-contiguous view (every other element of
    a wider buffer), sometimes reversed."""
    buf = np.zeros(2 * a.size + 1, a.dtype)
    view = buf[1::2]
    if rng.random() < 0.5:
        view = view[::-1]
    view[:] = a
    return view


def random_partition(flat, rng, max_pieces=300):
    """flat cut at random points (anywhere, empty pieces allowed), shuffled,
    some pieces strided, some reshaped 2-D and transposed."""
    k = rng.randrange(1, max_pieces)
    cuts = sorted(rng.randrange(0, flat.size + 1) for _ in range(k))
    pieces = np.split(flat, cuts)
    rng.shuffle(pieces)
    out = []
    for p in pieces:
        r = rng.random()
        if r < 0.2:
            out.append(strided_copy(p, rng))
        elif r < 0.3 and p.size % 4 == 0 and p.size:
            out.append(p.reshape(4, -1).T)      # a Fortran-order view
        else:
            out.append(p)
    return out


def test_oracle_against_fractions_and_xsum():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(999).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 999),
          np.concatenate([rng.standard_normal(500) * 1e-150, rng.standard_normal(500) * 1e150]),
          np.array([5e-324, 2.5e-308, 1e-200], np.float64)]
    for x in xs:
        assert exact_sum_squares([x]) == fraction_sum(x)
    xsum = pytest.importorskip("xsum")
    x = xs[0].astype(np.float64)
    acc = xsum.xsum_small_accumulator()
    for v in (x * x).tolist():  # float32 squares are exact in float64
        xsum.xsum_add(acc, v)
    assert xsum.xsum_round(acc) == exact_sum_squares([xs[0]])


@pytest.mark.models
@pytest.mark.parametrize("model,dtype", [("resnet50", "float32"), ("resnet50", "float64"),
                                         ("resnet50", "float16"), ("gpt2", "float32")])
def test_random_partitions_of_a_model_give_the_same_bits(model, dtype):
    ws = model_arrays(model, np.dtype(dtype))
    flat = np.concatenate([w.ravel() for w in ws])
    exact = exact_sum_squares([flat])
    rng = random.Random(f"{model}/{dtype}")
    assert l2fast.sum_squares(ws, reproducible=True) == exact
    assert l2fast.sum_squares(flat, reproducible=True) == exact
    for i in range(PARTITIONS):
        parts = random_partition(flat, rng)
        nt = rng.randrange(1, 9)
        assert l2fast.sum_squares(parts, num_threads=nt, reproducible=True) == exact, (i, nt)
    # shards as ranks would hold them: partial states, merged in any order
    shards = np.array_split(flat, 4)
    states = [l2fast.sum_squares(random_partition(s, rng, 20), partial=True) for s in shards]
    assert (states[3] + states[0] + states[2] + states[1]).value == exact
    assert l2fast.SumOfSquares(sum(s.to_array() for s in states)).value == exact


def adversarial_cases():
    rng = np.random.default_rng(11)
    n = 200_000
    signs = rng.choice([-1.0, 1.0], n)
    f32 = (signs * 10.0 ** rng.uniform(-38, 38.5, n)).astype(np.float32)
    f32[:1000] = np.float32(1e-45) * rng.integers(1, 1 << 20, 1000)       # subnormals
    f64 = signs * 10.0 ** rng.uniform(-300, 300, n)
    f64[:100] = 5e-324 * rng.integers(1, 1 << 40, 100)
    small = signs * 10.0 ** rng.uniform(-308, -200, n)                    # squares underflow
    one_huge = np.full(3_000_000, 1e-20, np.float32)
    one_huge[1_234_567] = 3e38
    tiny_then_big = np.concatenate([np.full(70_000, 1e-30), [1e30], np.full(70_000, 1e-30)])
    wide16 = (signs * 2.0 ** rng.uniform(-24, 15.9, n)).astype(np.float16)
    return {"float32 1e-38..3e38": f32, "float64 1e-300..1e300": f64,
            "float64 squares below the range": small,
            "one huge among millions of tiny": one_huge,
            "tiny, one big, tiny": tiny_then_big, "float16 every binade": wide16}


@pytest.mark.parametrize("case", list(adversarial_cases()))
def test_adversarial_magnitudes(case):
    x = adversarial_cases()[case]
    exact = exact_sum_squares([x])
    assert l2fast.sum_squares(x, reproducible=True) == exact
    rng = random.Random(case)
    for _ in range(4):
        assert l2fast.sum_squares(random_partition(x, rng, 50),
                                  num_threads=rng.randrange(1, 5), reproducible=True) == exact
    if x.size <= 200_000:
        assert exact == fraction_sum(x)


def test_per_array_sums_are_exact():
    rng = np.random.default_rng(5)
    ws = [rng.standard_normal(n).astype(dt) * 10.0 ** e
          for n, dt, e in [(1, np.float32, 0), (70_000, np.float64, -150), (0, np.float32, 0),
                           (513, np.float16, -3), (200_001, np.float32, 20)]]
    got = l2fast.sum_squares(ws, per_array=True, reproducible=True)
    assert got.tolist() == exact_sum_squares(ws, per_array=True).tolist()
    assert l2fast.sum_squares(ws, reproducible=True) == exact_sum_squares(ws)


def test_non_finite_terms():
    x = np.ones(100_000, np.float32)
    x[77_777] = np.inf
    assert l2fast.sum_squares(x, reproducible=True) == math.inf
    x[5] = np.nan
    assert math.isnan(l2fast.sum_squares(x, reproducible=True))
    assert l2fast.sum_squares(np.array([2.0 ** 512, 0.0]), reproducible=True) == math.inf  # 2^1024
    big = np.full(4, 2.0 ** 511)                                            # 4 * 2^1022
    assert l2fast.sum_squares(big, reproducible=True) == math.inf
    assert l2fast.sum_squares(big[:2], reproducible=True) == 2.0 ** 1023
    with pytest.raises(FloatingPointError, match=r"arrays\[0\]"):
        l2fast.sum_squares([x], check_finite=True, reproducible=True)


def test_sum_squares_scale_returns_the_exact_sum_and_scales_like_scale_():
    rng = np.random.default_rng(8)
    ws = [(rng.standard_normal(n) * 10.0 ** rng.integers(-e, e, n)).astype(dt)
          for n, dt, e in [(300_000, np.float32, 20), (5_000, np.float64, 100),
                           (70_000, np.float16, 4)]]
    ws[0][::1000] = 1e-40   # tiny values force rounds to be redone before they are scaled
    want = [w.copy() for w in ws]
    l2fast.scale_(want, 0.75)
    exact = exact_sum_squares(ws)
    assert l2fast.sum_squares_scale_(ws, 0.75, reproducible=True) == exact
    for w, v in zip(ws, want):
        assert w.tobytes() == v.tobytes()


def test_merge_is_exact_associative_commutative():
    rng = np.random.default_rng(9)
    chunks = [rng.standard_normal(rng.integers(0, 5000)) * 10.0 ** rng.integers(-100, 100)
              for _ in range(20)]
    states = [l2fast.sum_squares(c, partial=True) for c in chunks]
    exact = exact_sum_squares(chunks)
    a = states[0]
    for s in states[1:]:
        a = a + s
    b = states[-1]
    for s in reversed(states[:-1]):
        b = s + b
    order = list(range(20))
    random.Random(1).shuffle(order)
    c = l2fast.SumOfSquares().merge(*[states[i] for i in order])
    assert a == b == c
    assert a.to_bytes() == b.to_bytes() == c.to_bytes()
    assert a.value == exact == l2fast.sum_squares(chunks, reproducible=True)
    # ((s0 + s1) + s2) == (s0 + (s1 + s2)) for every triple taken
    for i in range(0, 18, 3):
        x, y, z = states[i:i + 3]
        assert (x + y) + z == x + (y + z)
    # the all-reduce form: element-wise sums of the int64 vectors
    summed = np.sum([s.to_array() for s in states], axis=0)
    assert l2fast.SumOfSquares(summed) == a
    assert l2fast.SumOfSquares.from_bytes(a.to_bytes()) == a
    assert len(a.to_bytes()) <= 1024
    assert sum(states) == a


def test_partial_state_errors():
    with pytest.raises(ValueError, match="per_array"):
        l2fast.sum_squares([np.ones(3)], per_array=True, partial=True)
    with pytest.raises(ValueError, match="106 integers"):
        l2fast.SumOfSquares(np.zeros(10, np.int64))
    with pytest.raises(ValueError, match="bytes"):
        l2fast.SumOfSquares.from_bytes(b"\0" * 10)
    bad = np.zeros(106, np.int64)
    bad[50] = -1
    with pytest.raises(ValueError, match="negative"):
        l2fast.SumOfSquares(bad)


def test_partial_from_sum_squares_scale_and_paramlist():
    rng = np.random.default_rng(2)
    ws = [rng.standard_normal(1000).astype(np.float32) for _ in range(3)]
    exact = exact_sum_squares(ws)
    pl = l2fast.ParamList(ws)
    assert pl.sum_squares(partial=True).value == exact
    assert pl.sum_squares_scale_(0.5, partial=True).value == exact
    assert pl.sum_squares(reproducible=True) == exact_sum_squares(ws) == exact / 4


def test_l2_reproducible_penalties_are_exact():
    rng = np.random.default_rng(4)
    params = {f"layer{i}.weight": rng.standard_normal((300, 70)).astype(np.float32)
              for i in range(3)}
    params["layer0.bias"] = rng.standard_normal(70).astype(np.float32)
    reg = l2fast.L2(0.01, scale="samples", m=1000, exclude=l2fast.no_decay_1d,
                    reproducible=True)
    penalised = [v for k, v in params.items() if v.ndim > 1]
    want = 0.5 * reg.coef() * exact_sum_squares(penalised)
    assert reg.penalty(params) == want
    assert reg.penalty_decay_(params, lr=0.1) == want
    halves = dict(params)
    w = halves.pop("layer1.weight")
    halves["a"], halves["b"] = w[:123], w[123:]       # the same values, split
    params2 = {k: v for k, v in halves.items()}
    assert l2fast.L2(0.01, scale="samples", m=1000, exclude=l2fast.no_decay_1d,
                     reproducible=True).penalty(params2) == reg.penalty(params)
