"""The memory roof: how fast this machine can stream bytes, measured in the run.

A float32 buffer larger than the last-level cache is streamed over with
three patterns -- a read (sum), an in-place update (``x *= c``) and a
two-input update (``d += s``, two halves of the buffer) -- each timed with
l2fast on the single buffer and with NumPy on equal slices, one Python
thread per slice.  Each candidate is credited with the median of its runs
-- the statistic of the model tables' rows, so that a row level with
NumPy's best reads 100 % -- and the roof is the fastest candidate.
"""
import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import l2fast

from .timing import time_interleaved
from .workloads import FACTOR, alternating, bytes_moved

PATTERNS = ("read", "update", "add")


def _split_runner(pool, threads, fn, *arrays):
    """fn applied to `threads` equal slices of the arrays, one Python thread each
    (NumPy releases the GIL in these loops)."""
    if threads == 1:
        return lambda: fn(*arrays)
    parts = list(zip(*(np.array_split(a, threads) for a in arrays)))
    return lambda: list(pool.map(lambda p: fn(*p), parts))


def _buffers(nbytes):
    """(buf, d, s): a float32 buffer of about `nbytes`, every page touched,
    and two halves of it, the dst and src of the "add" pattern."""
    n = max(nbytes // 4, 4096)
    buf = np.empty(n, np.float32)
    buf.fill(1.0)                   # touch every page before timing
    # d and s: two halves, 33 cache lines apart modulo 4 KiB, so that their
    # addresses do not alias in the cache sets and load/store buffers
    gap = 528
    half = (n - gap) // 2
    return buf, buf[:half], buf[half + gap:2 * half + gap]


def _candidates(t, pool, buf, d, s, blas_dot):
    """{pattern: {label: run}}: the runs that compete for the roof at `t` threads.

    In-place runs alternate their factor (c, 1/c) or their sign, so the
    buffer's values stay bounded."""
    factor, np_factor = alternating(FACTOR, 1 / FACTOR), alternating(FACTOR, 1 / FACTOR)
    sign, np_op = alternating(1.0, -1.0), alternating(np.add, np.subtract)
    numpy = f"x {t} thread(s)"
    candidates = {
        "read": {
            "l2fast.sum_squares": lambda: l2fast.sum_squares(buf, num_threads=t),
            f"NumPy np.add.reduce {numpy}": _split_runner(pool, t, np.add.reduce, buf),
        },
        "update": {
            "l2fast.scale_": lambda: l2fast.scale_(buf, factor(), num_threads=t),
            f"NumPy np.multiply(out=) {numpy}": _split_runner(
                pool, t, lambda x: np.multiply(x, np_factor(), out=x), buf),
        },
        "add": {
            "l2fast.add_scaled_": lambda: l2fast.add_scaled_(d, s, sign(), num_threads=t),
            f"NumPy np.add(out=) {numpy}": _split_runner(
                pool, t, lambda x, y: np_op()(x, y, out=x), d, s),
        },
    }
    if blas_dot:
        candidates["read"][f"NumPy np.dot {numpy}"] = _split_runner(
            pool, t, lambda x: np.dot(x, x), buf)
    return candidates


def measure_roof(threads, nbytes, repeat, progress=None):
    """This machine's memory roof, in GB/s, for every thread count.

    Parameters
    ----------
    threads : list of int
    nbytes : int
        Size of the float32 buffer streamed over; to measure memory rather
        than cache it must be larger than the last-level cache.
    repeat : int
        Timed rounds.
    progress : timing.Progress or None
        Stepped once per thread count and pattern.

    Returns
    -------
    list of dict
        One per thread count: for each pattern ("read", "update", "add") the
        roof in GB/s, which implementation reached it, and every candidate.
    """
    buf, d, s = _buffers(nbytes)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    out = []
    for t in threads:
        pool = ThreadPoolExecutor(t) if t > 1 else None
        candidates = _candidates(t, pool, buf, d, s, blas_dot=threadpool_limits is not None)
        entry = {"threads": t, "buffer_bytes": int(buf.nbytes)}
        limit = (threadpool_limits(limits=1, user_api="blas") if threadpool_limits
                 else contextlib.nullcontext())
        with limit:
            for pattern, cands in candidates.items():
                moved = bytes_moved(pattern, d.nbytes if pattern == "add" else buf.nbytes)
                medians, _, _ = time_interleaved(list(cands.values()), repeat, min_sample=0)
                gbps = {label: moved / m / 1e9 for label, m in zip(cands, medians)}
                best = max(gbps, key=gbps.get)
                entry[pattern] = {"gbps": gbps[best], "by": best, "candidates": gbps}
                if progress:
                    progress.step(f"roof {t}T {pattern}")
        if pool is not None:
            pool.shutdown()
        out.append(entry)
    return out
