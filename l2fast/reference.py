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
#: each exponent bin then sums at most 2**16 integers below 2**27, which
#: float64 holds exactly (< 2**53).
_BLOCK = 1 << 16


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


def _flat(a):
    """The values of one array, flat, in a dtype exact in float64 (float16,
    bfloat16, float32, float64; a torch 16-bit tensor as float32)."""
    if _torch_tensor(a):
        t = a.detach().cpu()
        if t.dtype.itemsize == 2:  # NumPy has no bfloat16
            t = t.float()
        a = t.numpy()
    x = np.asarray(a)
    if x.dtype.kind == "c" or (x.dtype.kind == "f" and x.dtype.itemsize > 8):
        raise TypeError(f"dtype {x.dtype} is not exact in float64")
    return x.reshape(-1)


def _float64_blocks(a, size=_BLOCK):
    """The values of `a` as float64 arrays of at most `size` elements (so a
    huge array is never widened whole)."""
    for x, _ in _float64_blocks_narrow(a, size):
        yield x


def _float64_blocks_narrow(a, size=_BLOCK):
    """(block, narrow) pairs: `_float64_blocks`, and whether the values have
    at most 24 significant bits (float32 and narrower), so squares are exact."""
    flat = _flat(a)
    narrow = flat.dtype.itemsize <= 4 and flat.dtype.kind in "fV"  # V: ml_dtypes' bfloat16
    for start in range(0, flat.size, size):
        yield flat[start:start + size].astype(np.float64), narrow


def _view(a):
    """A NumPy array that is the memory of `a` (a tensor's storage, viewed)."""
    if _torch_tensor(a):
        return a.detach().numpy()
    return np.asarray(a)


def _targets(listed, names, base):
    """Views of the arrays an in-place twin writes; ValueError naming a
    read-only one before anything is written.  (Overlaps are not checked.)"""
    views = [_view(a) for a in listed]
    for i, w in enumerate(views):
        if not w.flags.writeable:
            raise ValueError(f"{_label(base, names, i)} is read-only")
    return views


# ---------------------------------------------------------------------------
# The exact sum of squares
# ---------------------------------------------------------------------------

def _binned(bins, values, width):
    """Per-bin sums of int64 `values` as two float64 arrays (high, low) with
    sum = high * 2**width + low: pieces below 2**27, so every bin sum is exact."""
    high = np.bincount(bins, weights=(values >> width).astype(np.float64))
    low = np.bincount(bins, weights=(values & ((1 << width) - 1)).astype(np.float64))
    return high, low


def _block_sum(x, narrow=False):
    """(integer S, exponent E) with sum(x**2) == S * 2**E exactly; x finite.

    x = y * 2**e with 0.5 <= |y| < 1 (frexp, exact), and y**2 = hi + lo
    exactly by Dekker's split (no FMA needed, no underflow: y is near 1).
    y is a multiple of 2**-53, so y**2 is one of 2**-106, and with
    hi < 1, |lo| <= 2**-54 both ``H = hi * 2**54`` and ``L = lo * 2**106`` are
    integers below 2**54 and 2**53 in magnitude:

        x**2 = (H * 2**52 + L) * 2**(2e - 106)

    H and L are summed per exponent e by np.bincount in float64, as pieces
    below 2**27 (at most 2**16 per bin: the sums stay below 2**53, exact).
    `narrow` values (float32 or narrower: 24-bit y) have lo = 0.
    """
    y, e = np.frexp(x)
    hi = y * y
    base = int(e.min())
    bins = e - base
    hi_high, hi_low = _binned(bins, (hi * 2.0**54).astype(np.int64), 27)
    lo_high = lo_low = np.zeros_like(hi_high)
    if not narrow:
        c = y * 134217729.0  # 2**27 + 1 splits y into two 26-bit halves
        yh = c - (c - y)
        yl = y - yh
        lo = ((yh * yh - hi) + 2.0 * yh * yl) + yl * yl
        lo_high, lo_low = _binned(bins, (lo * 2.0**106).astype(np.int64), 26)
    total = 0
    for k in np.flatnonzero(hi_high + hi_low).tolist():  # hi > 0 for every x != 0
        h = (int(hi_high[k]) << 27) + int(hi_low[k])
        low = (int(lo_high[k]) << 26) + int(lo_low[k])
        total += ((h << 52) + low) << (2 * k)
    return total, 2 * base - 106


def _round_to_float64(total, exponent):
    """total * 2**exponent rounded once to the nearest float64 (inf above the range)."""
    try:
        if exponent >= 0:
            return float(total << exponent)
        return total / (1 << -exponent)  # int / int is correctly rounded in CPython
    except OverflowError:
        return math.inf


def _exact_one(blocks):
    """Correctly rounded sum of squares of (float64 block, narrow) pairs, blocks
    of at most _BLOCK elements."""
    total, exponent, nan, inf = 0, 0, False, False
    for x, narrow in blocks:
        finite = np.isfinite(x)
        if not finite.all():
            nan = nan or bool(np.isnan(x).any())
            inf = True
            x = x[finite]
        if x.size:
            s, e = _block_sum(x, narrow)
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
        return np.array([_exact_one(_float64_blocks_narrow(a)) for a in listed],
                        dtype=np.float64)
    return _exact_one(block for a in listed for block in _float64_blocks_narrow(a))


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
    with np.errstate(all="ignore"):  # overflow gives inf, as in IEEE
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
        if not all(np.isfinite(x).all() for x in _float64_blocks(a)):
            raise FloatingPointError(f"{_label(base, names, i)} has a non-finite value "
                                     "(NaN or Inf); no array was changed")


def _dots(listed):
    """float64 ||w_i||^2 of each array: widened, then np.dot (by blocks of 2**22)."""
    sums = np.zeros(len(listed), dtype=np.float64)
    with np.errstate(all="ignore"):  # NaN and Inf propagate, as in l2fast
        for i, a in enumerate(listed):
            for x in _float64_blocks(a, 1 << 22):
                sums[i] += np.dot(x, x)
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


def _checked_views(arrays, factor, check_finite):
    """(views, factor as float) of a scaling call, checked as l2fast checks
    them: the factor, then read-only arrays, then NaN and Inf."""
    factor = float(factor)
    _require_finite_factor(factor, "factor", check_finite)
    listed, names = _listing(arrays)
    views = _targets(listed, names, "arrays")
    if check_finite:
        _require_finite(views, names, "arrays")
    return views, factor


def _scale_in_place(views, factor):
    """w <- round(factor * w), the product formed in float64."""
    with np.errstate(all="ignore"):  # IEEE results (inf * 0 = nan), no warnings
        for w in views:
            w[...] = round_to(w.astype(np.float64) * factor, w.dtype)


def scale_(arrays, factor, *, num_threads=None, check_finite=False):
    """Twin of `l2fast.scale_`: w_i <- c * w_i in place, formed in float64 and
    rounded once to w_i's dtype.  `num_threads` is ignored."""
    _scale_in_place(*_checked_views(arrays, factor, check_finite))


def add_scaled_(dst, src, alpha, *, num_threads=None, check_finite=False):
    """Twin of `l2fast.add_scaled_`: d_i <- d_i + alpha * s_i in place, formed in
    float64 and rounded once to d_i's dtype.  Pairs by key when both are dicts,
    else by position.  `num_threads` is ignored."""
    alpha = float(alpha)
    _require_finite_factor(alpha, "alpha", check_finite)
    d, s, names = _pairing(dst, src)
    d, s = _targets(d, names, "dst"), [_view(b) for b in s]
    for i, (w, v) in enumerate(zip(d, s)):
        if w.shape != v.shape:
            raise ValueError(f"{_label('dst', names, i)} has shape {w.shape} but "
                             f"{_label('src', names, i)} has shape {v.shape}")
    if check_finite:
        _require_finite(d, names, "dst")
        _require_finite(s, names, "src")
    with np.errstate(all="ignore"):
        for w, v in zip(d, s):
            w[...] = round_to(w.astype(np.float64) + alpha * v.astype(np.float64), w.dtype)


def sum_squares_scale_(arrays, factor, *, per_array=False, num_threads=None,
                       check_finite=False):
    """Twin of `l2fast.sum_squares_scale_`: returns `sum_squares` of the values
    before scaling, then scales in place as `scale_`."""
    views, factor = _checked_views(arrays, factor, check_finite)
    sums = _dots(views)
    _scale_in_place(views, factor)
    return _total(sums, per_array)


# ---------------------------------------------------------------------------
# What a NumPy user writes today: the benchmark's baselines
# ---------------------------------------------------------------------------

def _wide(w):
    """w itself, or a 16-bit w cast to float32 (NumPy has no fast 16-bit dot)."""
    return w.astype(np.float32) if w.dtype.itemsize == 2 else w


def vdot_loop(arrays):
    """``sum(np.vdot(w, w) for w in arrays)``: one BLAS dot per array, in the
    arrays' own dtype (float32 arrays accumulate in float32; 16-bit arrays
    are cast to float32 first, as a NumPy user must)."""
    return float(sum(np.vdot(x.ravel(), x.ravel()) for x in map(_wide, arrays)))


def einsum_loop(arrays):
    """``sum(np.einsum("i,i->", w, w) for w in arrays)``: NumPy's pairwise
    summation per array, in the arrays' own dtype (16-bit: cast to float32)."""
    return float(sum(np.einsum("i,i->", x.ravel(), x.ravel()) for x in map(_wide, arrays)))


def scale_loop_(arrays, factor):
    """``for w in arrays: w *= factor``; 16-bit arrays through a float32 round trip,
    ``w[...] = w.astype(np.float32) * factor``."""
    for w in arrays:
        if w.dtype.itemsize == 2:
            w[...] = w.astype(np.float32) * np.float32(factor)
        else:
            w *= factor


def add_loop_(dst, src, alpha):
    """``for g, w in zip(dst, src): g += alpha * w`` (a temporary per array;
    16-bit arrays through float32)."""
    for g, w in zip(dst, src):
        if g.dtype.itemsize == 2:
            g[...] = g.astype(np.float32) + np.float32(alpha) * _wide(w)
        else:
            g += alpha * w


def vdot_then_scale_(arrays, factor):
    """`vdot_loop`, then `scale_loop_`: two passes over memory; returns the sum."""
    total = vdot_loop(arrays)
    scale_loop_(arrays, factor)
    return total
