"""The input contract, fuzzed: random lists mixing valid and invalid arrays.

Hypothesis builds a pool of inputs (views of three shared buffers in assorted
layouts, read-only and self-overlapping views, fresh arrays with NaN or Inf,
arrays of other dtypes, byte-swapped, masked and unaligned arrays, Python
lists and scalars), draws lists from the pool (so an array may appear twice)
and calls one function.  An independent model of the contract predicts the
outcome, and the test asserts one of:

* the call succeeds, and every result and every byte of every buffer is
  exactly what the NumPy twins of l2fast.reference compute (values are k/8
  with small k, so float64 sums and products are exact whatever the order);
* the call raises an exception of a predicted type, and every byte of every
  buffer and array is unchanged.

See docs/contract.md.
"""
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided

import l2fast
from l2fast import reference

SHAPE = (3, 4)
BUFFER_DTYPES = [np.float64, np.float32, np.float64]


def dyadic(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(-64, 65, size=shape) / 8).astype(dtype)


# ---------------------------------------------------------------------------
# The inputs
# ---------------------------------------------------------------------------

VIEWS = {   # views of shape SHAPE of a 256-element buffer b; o < 244, r < 11, c < 13
    "C": lambda b, o, r, c: b[o:o + 12].reshape(3, 4),
    "F": lambda b, o, r, c: b[o:o + 12].reshape(4, 3).T,
    "steps": lambda b, o, r, c: b.reshape(16, 16)[r:r + 6:2, c:c + 4],
    "negative": lambda b, o, r, c: b.reshape(16, 16)[r:r + 6:2, c:c + 4][::-1, ::-1],
    "transposed slice": lambda b, o, r, c: b.reshape(16, 16)[r:r + 4, c:c + 3].T,
    "self-overlapping": lambda b, o, r, c: as_strided(b[o:], SHAPE, (0, b.itemsize)),
}
SWAPPED = ">" if np.little_endian else "<"
BAD_DTYPES = ["int32", "bool", "complex128", "uint16", "object", SWAPPED + "f8",
              SWAPPED + "f4"]


@dataclass(frozen=True)
class Spec:
    """One input.  kind: "view" (of buffer `buf`), "read-only view", "fresh",
    "nonfinite", "other shape", "dtype", "masked", "unaligned", "list", "scalar"."""
    kind: str
    layout: str = "C"
    buf: int = 0
    o: int = 0
    r: int = 0
    c: int = 0
    dtype: str = "float64"
    seed: int = 0
    value: float = 0.0

    def make(self, buffers):
        if self.kind in ("view", "read-only view"):
            v = VIEWS[self.layout](buffers[self.buf], self.o, self.r, self.c)
            if self.kind == "read-only view":
                v.flags.writeable = False
            return v
        if self.kind == "fresh":
            return dyadic(SHAPE, self.dtype, self.seed)
        if self.kind == "nonfinite":
            a = dyadic(SHAPE, self.dtype, self.seed)
            a.flat[self.seed % a.size] = self.value
            return a
        if self.kind == "other shape":
            return dyadic((2, 6), self.dtype, self.seed)
        if self.kind == "dtype":
            with np.errstate(all="ignore"):
                return dyadic(SHAPE, np.float64, self.seed).astype(self.dtype)
        if self.kind == "masked":
            return np.ma.array(dyadic(SHAPE, self.dtype, self.seed),
                               mask=np.arange(12).reshape(SHAPE) == self.seed % 13)
        if self.kind == "unaligned":
            raw = np.zeros(12 * 8 + 1, np.uint8)
            a = raw[1:].view(np.float64).reshape(SHAPE)
            a[...] = dyadic(SHAPE, np.float64, self.seed)
            return a
        if self.kind == "list":
            return dyadic(SHAPE, np.float64, self.seed).tolist()
        if self.kind == "scalar":
            return self.value

    # What the contract says about this input alone
    @property
    def type_error(self):
        return self.kind in ("dtype", "masked", "list", "scalar")

    @property
    def float_array(self):
        """An aligned float32/float64 ndarray (it reaches the overlap checks)."""
        return self.kind in ("view", "read-only view", "fresh", "nonfinite", "other shape")


INDEX = dict(buf=st.integers(0, 2), o=st.integers(0, 243), r=st.integers(0, 10),
             c=st.integers(0, 12))


def spec_strategy():
    idx = INDEX
    dt = st.sampled_from(["float32", "float64"])
    seed = st.integers(0, 1000)
    return st.one_of(
        st.builds(Spec, kind=st.just("view"), layout=st.sampled_from(list(VIEWS)), **idx),
        st.builds(Spec, kind=st.just("read-only view"), layout=st.sampled_from(list(VIEWS)),
                  **idx),
        st.builds(Spec, kind=st.just("fresh"), dtype=dt, seed=seed),
        st.builds(Spec, kind=st.just("nonfinite"), dtype=dt, seed=seed,
                  value=st.sampled_from([np.nan, np.inf, -np.inf])),
        st.builds(Spec, kind=st.just("other shape"), dtype=dt, seed=seed),
        st.builds(Spec, kind=st.just("dtype"), dtype=st.sampled_from(BAD_DTYPES), seed=seed),
        st.builds(Spec, kind=st.just("masked"), dtype=dt, seed=seed),
        st.builds(Spec, kind=st.just("unaligned"), seed=seed),
        st.builds(Spec, kind=st.just("list"), seed=seed),
        st.builds(Spec, kind=st.just("scalar"), value=st.sampled_from([1.5, 0.0])),
    )


class World:
    """The three buffers and one object per spec of the pool."""

    def __init__(self, pool, seed):
        self.buffers = [dyadic(256, dt, seed + k) for k, dt in enumerate(BUFFER_DTYPES)]
        self.objects = [s.make(self.buffers) for s in pool]

    def snapshot(self):
        out = [b.tobytes() for b in self.buffers]
        for x in self.objects:
            if isinstance(x, np.ma.MaskedArray):
                out.append(x.data.tobytes() + np.ma.getmaskarray(x).tobytes())
            elif isinstance(x, np.ndarray):
                out.append(x.tobytes() if x.dtype != object else repr(x.tolist()).encode())
            else:
                out.append(repr(x).encode())
        return out


# ---------------------------------------------------------------------------
# The model of the contract
# ---------------------------------------------------------------------------

def identical(a, b):
    """Element for element the same memory (strides of unit dimensions do not count)."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.dtype == b.dtype and a.shape == b.shape
            and all(n == 1 or p == q for n, p, q in zip(a.shape, a.strides, b.strides)))


def self_overlapping(spec):
    return spec.kind in ("view", "read-only view") and spec.layout == "self-overlapping"


def predict(fn, pool, objects, dst_idx, src_idx, check_finite):
    """(set of exception types the call may raise, whether it may succeed)."""
    written = fn in IN_PLACE
    errors = set()
    positions = list(dst_idx) + (list(src_idx) if src_idx is not None else [])
    for k in positions:
        s = pool[k]
        if s.type_error:
            errors.add(TypeError)
        if s.kind == "unaligned":
            errors.add(ValueError)
    if written:
        for k in dst_idx:
            if pool[k].kind == "read-only view" or self_overlapping(pool[k]):
                errors.add(ValueError)
        for i, a in enumerate(dst_idx):
            for b in dst_idx[i + 1:]:
                if (pool[a].float_array and pool[b].float_array
                        and np.shares_memory(objects[a], objects[b])):
                    errors.add(ValueError)
    if src_idx is not None:
        for i, (a, b) in enumerate(zip(dst_idx, src_idx)):
            if pool[a].float_array and pool[b].float_array and \
                    objects[a].shape != objects[b].shape:
                errors.add(ValueError)
        for i, a in enumerate(dst_idx):
            for j, b in enumerate(src_idx):
                if not (pool[a].float_array and pool[b].float_array):
                    continue
                if not np.shares_memory(objects[a], objects[b]):
                    continue
                if i == j and identical(objects[a], objects[b]):
                    continue    # dst is src, or another view of exactly its elements
                errors.add(ValueError)
    if errors:
        return errors, False
    if check_finite and any(pool[k].kind == "nonfinite" for k in positions):
        return {FloatingPointError}, False
    return set(), True


IN_PLACE = {"scale_", "sum_squares_scale_", "add_scaled_", "ParamList.scale_",
            "ParamList.sum_squares_scale_", "ParamList.add_scaled_"}
FUNCTIONS = ["sum_squares", "sum_squares per_array", "scale_", "sum_squares_scale_",
             "add_scaled_", "ParamList.sum_squares", "ParamList.scale_",
             "ParamList.sum_squares_scale_", "ParamList.add_scaled_"]


def call(fn, dst, src, factor, check_finite, num_threads):
    kw = dict(check_finite=check_finite, num_threads=num_threads)
    if fn == "sum_squares":
        return l2fast.sum_squares(dst, **kw)
    if fn == "sum_squares per_array":
        return l2fast.sum_squares(dst, per_array=True, **kw)
    if fn == "scale_":
        return l2fast.scale_(dst, factor, **kw)
    if fn == "sum_squares_scale_":
        return l2fast.sum_squares_scale_(dst, factor, per_array=True, **kw)
    if fn == "add_scaled_":
        return l2fast.add_scaled_(dst, src, factor, **kw)
    pl = l2fast.ParamList(dst)
    if fn == "ParamList.sum_squares":
        return pl.sum_squares(**kw)
    if fn == "ParamList.scale_":
        return pl.scale_(factor, **kw)
    if fn == "ParamList.sum_squares_scale_":
        return pl.sum_squares_scale_(factor, **kw)
    return pl.add_scaled_(src, factor, **kw)


def expected_outcome(fn, pool, seed, dst_idx, src_idx, factor):
    """The result and the world after the call, computed by the NumPy twins of
    l2fast.reference on a fresh copy of the world (inputs are valid here, so
    written arrays overlap nothing but, possibly, their own src)."""
    w = World(pool, seed)
    dst = [w.objects[k] for k in dst_idx]
    result = None
    if "sum_squares" in fn:
        per_array = fn in ("sum_squares per_array", "sum_squares_scale_")
        result = reference.sum_squares(dst, per_array=per_array)
    if fn.endswith("add_scaled_"):
        reference.add_scaled_(dst, [w.objects[k] for k in src_idx], factor)
    elif fn in IN_PLACE:
        reference.scale_(dst, factor)
    return result, w.snapshot()


def same(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return x.shape == y.shape and np.array_equal(x, y, equal_nan=True)


def valid_spec_strategy():
    idx = INDEX
    return st.one_of(
        st.builds(Spec, kind=st.just("view"), layout=st.sampled_from(list(VIEWS)[:-1]), **idx),
        st.builds(Spec, kind=st.just("fresh"), dtype=st.sampled_from(["float32", "float64"]),
                  seed=st.integers(0, 1000)))


@st.composite
def cases(draw, fn):
    # Half the pools hold only valid arrays, so that successes are common too.
    specs = draw(st.sampled_from([spec_strategy(), valid_spec_strategy()]))
    pool = draw(st.lists(specs, min_size=1, max_size=6))
    length = draw(st.integers(0, 6))
    dst_idx = draw(st.lists(st.integers(0, len(pool) - 1), min_size=length, max_size=length))
    src_idx = None
    if fn.endswith("add_scaled_"):
        # src: often the dst itself, else any member of the pool
        src_idx = [draw(st.one_of(st.just(k), st.integers(0, len(pool) - 1))) for k in dst_idx]
    return dict(pool=pool, fn=fn, dst_idx=dst_idx, src_idx=src_idx,
                seed=draw(st.integers(0, 100)),
                factor=draw(st.sampled_from([0.5, -2.0, 0.75, 1.0, 0.0])),
                check_finite=draw(st.booleans()),
                num_threads=draw(st.sampled_from([None, 1, 2])))


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_fuzz_exact_result_or_exception_with_nothing_changed(fn):
    @settings(max_examples=80, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(fn))
    def check(case):
        check_case(case)

    check()


def check_case(case):
    pool, fn, dst_idx, src_idx = case["pool"], case["fn"], case["dst_idx"], case["src_idx"]
    world = World(pool, case["seed"])
    objects = world.objects
    dst = [objects[k] for k in dst_idx]
    src = [objects[k] for k in src_idx] if src_idx is not None else None
    errors, may_succeed = predict(fn, pool, objects, dst_idx, src_idx, case["check_finite"])
    before = world.snapshot()
    try:
        result = call(fn, dst, src, case["factor"], case["check_finite"], case["num_threads"])
    except (TypeError, ValueError, FloatingPointError) as e:
        event(f"{fn}: {type(e).__name__}")
        assert type(e) in errors, f"unexpected {type(e).__name__}: {e}"
        assert world.snapshot() == before, f"{type(e).__name__} raised after a write: {e}"
        if type(e) is TypeError:
            bad = [f"[{i}]" for i, k in enumerate(dst_idx) if pool[k].type_error]
            bad += [f"src[{i}]" for i, k in enumerate(src_idx or []) if pool[k].type_error]
            assert any(b in str(e) for b in bad), str(e)
        return
    assert may_succeed, f"expected one of {errors}, got success"
    event(f"{fn}: success")
    want_result, want_world = expected_outcome(fn, pool, case["seed"], dst_idx, src_idx,
                                               case["factor"])
    if "sum_squares" in fn:
        assert same(result, want_result), (result, want_result)
    else:
        assert result is None
    got_world = world.snapshot()
    if got_world != want_world:
        # Allow only NaN payload differences; every other byte must match.
        for g, w_ in zip(got_world, want_world):
            assert g == w_ or _nan_only_difference(g, w_)


def _nan_only_difference(a, b):
    for dt in (np.float64, np.float32):
        if len(a) % np.dtype(dt).itemsize == 0:
            x, y = np.frombuffer(a, dt), np.frombuffer(b, dt)
            if np.array_equal(x, y, equal_nan=True):
                return True
    return False


def test_the_model_knows_the_rejections():
    """A few hand-picked cases through the model, so it cannot drift into
    predicting everything as an error."""
    pool = [Spec("view", "C", 0, 0), Spec("view", "F", 0, 20), Spec("dtype", dtype="int32"),
            Spec("read-only view", "C", 1, 0), Spec("view", "C", 0, 6)]
    w = World(pool, 0)
    assert predict("scale_", pool, w.objects, [0, 1], None, False) == (set(), True)
    assert predict("scale_", pool, w.objects, [0, 0], None, False) == ({ValueError}, False)
    assert predict("scale_", pool, w.objects, [0, 4], None, False) == ({ValueError}, False)
    assert predict("sum_squares", pool, w.objects, [0, 4, 3], None, False) == (set(), True)
    assert predict("scale_", pool, w.objects, [3], None, False) == ({ValueError}, False)
    assert predict("sum_squares", pool, w.objects, [2], None, False) == ({TypeError}, False)
    assert predict("add_scaled_", pool, w.objects, [0], [0], False) == (set(), True)
    assert predict("add_scaled_", pool, w.objects, [0, 1], [1, 0], False) == ({ValueError},
                                                                               False)
