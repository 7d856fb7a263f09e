"""Plain-NumPy twins of l2fast's functions: the tests' oracle, the benchmark's baseline.

In the manner of bottleneck's ``slow`` package, every public function of
l2fast has a twin here with the same signature, written with NumPy alone.
This module imports neither l2fast's kernels nor its argument handling, so
it stays an independent oracle.

Notation: the input is a list of arrays w_1 .. w_L and
``||w_i||^2 = sum_k w_i[k]^2``.

=========================  ===============================================
name                       what it is
=========================  ===============================================
`exact_sum_squares`        sum_i ||w_i||^2 computed exactly, rounded once
                           to the nearest float64
`relative_error`           |value - exact| / |exact|
`sum_squares`,             twins of l2fast's functions: float64 sums by
`scale_`, `add_scaled_`,   ``np.dot``; in-place results formed in float64
`sum_squares_scale_`       and rounded once to the array's dtype (bitwise
                           what l2fast writes)
`round_to`                 float64 values rounded once to a dtype
`vdot_loop`, `einsum_loop` what a NumPy user writes today: the
`scale_loop_`,             benchmark's baselines
`add_loop_`,
`vdot_then_scale_`
=========================  ===============================================
"""
import array
import math
import sys
from collections.abc import Mapping

import numpy as np

__all__ = [
    "exact_sum_squares", "relative_error", "round_to",
    "sum_squares", "scale_", "add_scaled_", "sum_squares_scale_",
    "vdot_loop", "einsum_loop", "scale_loop_", "add_loop_", "vdot_then_scale_",
]

#: Elements per block of `exact_sum_squares` (its temporaries stay in cache):
#: each exponent bin then sums at most 2 * 2**16 integers below 2**27, which
#: float64 holds exactly (< 2**53).
_BLOCK = 1 << 16
_HALF = 26  # integer mantissas (< 2**53) are split into 27- and 26-bit halves


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

def _torch_tensor(a):
    """True when `a` is a torch tensor (torch is never imported here)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def _is_one_array(arrays):
    return (isinstance(arrays, (np.ndarray, np.generic, memoryview, array.array))
            or hasattr(arrays, "__dlpack__"))


def _listing(arrays, what="arrays"):
    """(list of arrays, list of names or None) from a list, a dict or one array."""
    if _is_one_array(arrays):
        return [arrays], None
    if isinstance(arrays, Mapping):
        return list(arrays.values()), [str(k) for k in arrays]
    if isinstance(arrays, (str, bytes)) or not hasattr(arrays, "__iter__"):
        raise TypeError(f"{what}: expected an array, a list of arrays or a dict of "
                        f"named arrays, got {type(arrays).__qualname__}")
    names = getattr(arrays, "names", None)  # a ParamList built from a dict
    return list(arrays), (list(names) if names is not None else None)


def _pairing(dst, src):
    """(dst list, src list, names): paired by key when both are dicts, else by position."""
    d, names = _listing(dst, "dst")
    if isinstance(dst, Mapping) and isinstance(src, Mapping):
        if set(dst) != set(src):
            raise ValueError("dst and src must name the same arrays")
        return d, [src[k] for k in dst], names
    s, src_names = _listing(src, "src")
    if len(s) != len(d):
        raise ValueError(f"dst has {len(d)} arrays but src has {len(s)}")
    return d, s, names if names is not None else src_names


def _label(base, names, i):
    return f"{base}[{i}]" if names is None else f"{base}[{names[i]!r}]"


def _float64(a):
    """The values of one array as a flat float64 array (exact for every float
    dtype up to float64: float16, bfloat16, float32)."""
    if _torch_tensor(a):
        t = a.detach().cpu()
        if t.dtype.itemsize == 2:  # float16 / bfloat16: NumPy has no bfloat16
            t = t.float()
        a = t.numpy()
    x = np.asarray(a)
    if x.dtype.kind == "c" or (x.dtype.kind == "f" and x.dtype.itemsize > 8):
        raise TypeError(f"dtype {x.dtype} is not exact in float64")
    return x.astype(np.float64).ravel()


def _writable(a):
    """A NumPy array that is the memory of `a` (a tensor's storage, viewed)."""
    if _torch_tensor(a):
        return a.detach().numpy()
    return np.asarray(a)


# ---------------------------------------------------------------------------
# The exact sum of squares
# ---------------------------------------------------------------------------

def _integer_terms(x):
    """Integers m and exponents E with x**2 == sum of m * 2**E, exactly.

    With ``x = y * 2**e`` (y = frexp(x)[0], in [0.5, 1)), y**2 = hi + lo
    exactly by Dekker's split (no FMA needed, and no underflow since y is
    near 1); hi and lo are integer mantissas (< 2**53) times powers of two.
    """
    y, e = np.frexp(x)
    c = y * 134217729.0  # 2**27 + 1 splits y into two 26-bit halves
    yh = c - (c - y)
    yl = y - yh
    hi = y * y
    lo = ((yh * yh - hi) + 2.0 * yh * yl) + yl * yl
    m, eh = np.frexp(np.concatenate([hi, lo]))
    mantissas = np.ldexp(m, 53).astype(np.int64)
    exponents = eh.astype(np.int64) - 53 + 2 * np.concatenate([e, e]).astype(np.int64)
    return mantissas, exponents


def _block_sum(x):
    """(integer S, exponent E) with sum(x**2) == S * 2**E exactly; x finite."""
    mantissas, exponents = _integer_terms(x)
    base = int(exponents.min())
    bins = exponents - base
    # m = high * 2**26 + low, |high| < 2**27, 0 <= low < 2**26: the float64
    # bin sums stay exact (fewer than 2**22 terms per bin).
    high = np.bincount(bins, weights=(mantissas >> _HALF).astype(np.float64))
    low = np.bincount(bins, weights=(mantissas & ((1 << _HALF) - 1)).astype(np.float64))
    total = 0
    for k in np.flatnonzero((high != 0) | (low != 0)).tolist():
        total += ((int(high[k]) << _HALF) + int(low[k])) << k
    return total, base


def _round_to_float64(total, exponent):
    """total * 2**exponent rounded once to the nearest float64 (inf above the range)."""
    try:
        if exponent >= 0:
            return float(total << exponent)
        return total / (1 << -exponent)  # int / int is correctly rounded in CPython
    except OverflowError:
        return math.inf


def _exact_one(chunks):
    """Correctly rounded sum of squares of an iterable of flat float64 arrays."""
    total, exponent, nan, inf = 0, 0, False, False
    for x in chunks:
        finite = np.isfinite(x)
        if not finite.all():
            nan = nan or bool(np.isnan(x).any())
            inf = True
            x = x[finite]
        for start in range(0, x.size, _BLOCK):
            s, e = _block_sum(x[start:start + _BLOCK])
            if e < exponent:
                total, exponent = total << (exponent - e), e
            total += s << (e - exponent)
    if nan:
        return math.nan
    return math.inf if inf else _round_to_float64(total, exponent)


def exact_sum_squares(arrays, *, per_array=False):
    """Sum of squares computed exactly and rounded once to float64.

    .. math:: S = \\sum_i \\sum_k w_i[k]^2

    Every square is split into integers times powers of two and summed as
    Python integers, so the result is the exact S correctly rounded (round
    half to even); float64 inputs of any magnitude (1e-300 .. 1e300,
    subnormals) are exact.  A NaN gives nan, an Inf inf, as IEEE
    arithmetic would.  About a second per 10**7 elements.

    Parameters
    ----------
    arrays : array, list, tuple or dict of arrays
        NumPy arrays of float16, float32, float64 or bfloat16 (ml_dtypes),
        torch tensors, or nested lists of numbers.
    per_array : bool, default False
        Return one correctly rounded sum per array.

    Returns
    -------
    float or ndarray of float64
    """
    listed, _ = _listing(arrays)
    if per_array:
        return np.array([_exact_one([_float64(a)]) for a in listed], dtype=np.float64)
    return _exact_one(_float64(a) for a in listed)


def relative_error(value, exact):
    """|value - exact| / |exact|: 0 when equal (also 0 == 0, inf == inf), inf when
    `exact` is 0 or infinite and `value` differs, nan when either is nan."""
    value, exact = float(value), float(exact)
    if math.isnan(value) or math.isnan(exact):
        return math.nan
    if value == exact:
        return 0.0
    if exact == 0 or math.isinf(exact):
        return math.inf
    return abs(value - exact) / abs(exact)


def round_to(values, dtype):
    """float64 `values` rounded once (to nearest, ties to even) to `dtype`.

    NumPy's casts from float64 round once, except ml_dtypes' bfloat16,
    which goes through float32 (two roundings); for it the float32 step
    rounds to odd, after which the second rounding is the correct one.
    """
    values, dtype = np.asarray(values, dtype=np.float64), np.dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow gives inf, as in IEEE
        if dtype.kind == "f" or dtype.itemsize != 2:
            return values.astype(dtype)
        f = values.astype(np.float32)  # round to odd: truncate, then set the last bit if inexact
        f = np.where(np.abs(f.astype(np.float64)) > np.abs(values),
                     np.nextafter(f, np.float32(0)), f).astype(np.float32)
        inexact = (f.astype(np.float64) != values) & np.isfinite(values)
    bits = f.view(np.uint32) | inexact.astype(np.uint32)
    return bits.view(np.float32).astype(dtype)


# ---------------------------------------------------------------------------
# Twins of the public functions
# ---------------------------------------------------------------------------

def _require_finite_factor(x, what, check_finite):
    if check_finite and not math.isfinite(x):
        raise FloatingPointError(f"{what} is {x}, not finite; no array was changed")


def _require_finite(listed, names, base):
    for i, a in enumerate(listed):
        if not np.isfinite(_float64(a)).all():
            raise FloatingPointError(f"{_label(base, names, i)} has a non-finite value "
                                     "(NaN or Inf); no array was changed")


def _dots(listed):
    """float64 ||w_i||^2 of each array: widened, then np.dot."""
    sums = np.empty(len(listed), dtype=np.float64)
    for i, a in enumerate(listed):
        x = _float64(a)
        sums[i] = np.dot(x, x)
    return sums


def _total(sums, per_array):
    return sums if per_array else float(sum(sums.tolist()))


def sum_squares(arrays, *, per_array=False, num_threads=None, check_finite=False):
    """Twin of `l2fast.sum_squares`: sum_i ||w_i||^2, each accumulated in float64
    by ``np.dot`` of the widened values.  `num_threads` is ignored."""
    listed, names = _listing(arrays)
    sums = _dots(listed)
    if check_finite and not np.isfinite(sums).all():
        _require_finite(listed, names, "arrays")
    return _total(sums, per_array)


def _scale_in_place(a, factor):
    """w <- round(factor * w), the product formed in float64."""
    w = _writable(a)
    w[...] = round_to(w.astype(np.float64) * factor, w.dtype)


def scale_(arrays, factor, *, num_threads=None, check_finite=False):
    """Twin of `l2fast.scale_`: w_i <- c * w_i in place, formed in float64 and
    rounded once to w_i's dtype.  `num_threads` is ignored."""
    factor = float(factor)
    _require_finite_factor(factor, "factor", check_finite)
    listed, names = _listing(arrays)
    if check_finite:
        _require_finite(listed, names, "arrays")
    for a in listed:
        _scale_in_place(a, factor)


def add_scaled_(dst, src, alpha, *, num_threads=None, check_finite=False):
    """Twin of `l2fast.add_scaled_`: d_i <- d_i + alpha * s_i in place, formed in
    float64 and rounded once to d_i's dtype.  Pairs by key when both are dicts,
    else by position.  `num_threads` is ignored."""
    alpha = float(alpha)
    _require_finite_factor(alpha, "alpha", check_finite)
    d, s, names = _pairing(dst, src)
    d, s = [_writable(a) for a in d], [_writable(b) for b in s]
    for i, (w, v) in enumerate(zip(d, s)):
        if w.shape != v.shape:
            raise ValueError(f"{_label('dst', names, i)} has shape {w.shape} but "
                             f"{_label('src', names, i)} has shape {v.shape}")
    if check_finite:
        _require_finite(d, names, "dst")
        _require_finite(s, names, "src")
    for w, v in zip(d, s):
        update = w.astype(np.float64) + alpha * v.astype(np.float64)
        w[...] = round_to(update, w.dtype)


def sum_squares_scale_(arrays, factor, *, per_array=False, num_threads=None,
                       check_finite=False):
    """Twin of `l2fast.sum_squares_scale_`: returns `sum_squares` of the values
    before scaling, then scales in place as `scale_`."""
    factor = float(factor)
    _require_finite_factor(factor, "factor", check_finite)
    listed, names = _listing(arrays)
    if check_finite:
        _require_finite(listed, names, "arrays")
    sums = _dots(listed)
    for a in listed:
        _scale_in_place(a, factor)
    return _total(sums, per_array)


# ---------------------------------------------------------------------------
# What a NumPy user writes today: the benchmark's baselines
# ---------------------------------------------------------------------------

def vdot_loop(arrays):
    """``sum(np.vdot(w, w) for w in arrays)``: one BLAS dot per array, in the
    arrays' own dtype (float32 arrays accumulate in float32)."""
    return float(sum(np.vdot(w.ravel(), w.ravel()) for w in arrays))


def einsum_loop(arrays):
    """``sum(np.einsum("i,i->", w, w) for w in arrays)``: NumPy's pairwise
    summation per array, in the arrays' own dtype."""
    return float(sum(np.einsum("i,i->", w.ravel(), w.ravel()) for w in arrays))


def scale_loop_(arrays, factor):
    """``for w in arrays: w *= factor``."""
    for w in arrays:
        w *= factor


def add_loop_(dst, src, alpha):
    """``for g, w in zip(dst, src): g += alpha * w`` (a temporary per array)."""
    for g, w in zip(dst, src):
        g += alpha * w


def vdot_then_scale_(arrays, factor):
    """`vdot_loop`, then `scale_loop_`: two passes over memory; returns the sum."""
    total = vdot_loop(arrays)
    scale_loop_(arrays, factor)
    return total
