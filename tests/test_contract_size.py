"""The input contract, size: one array of more than 2**31 elements.

float32, 2**31 + 2**21 elements (8.6 GB).  Marked slow (skipped by default);
run with ``pytest -m slow tests/test_contract_size.py``.  Skipped when the
machine does not have the memory available.

Values are k/8 with small k, so every float64 sum of their squares is exact
in any order and results are compared bitwise.  The elements past index 2**31
get their own values, so a kernel that wrapped a 32-bit index or stopped at
2**31 would give a different sum.

See docs/contract.md.
"""
import numpy as np
import pytest

import l2fast
from l2fast import reference

N = 2**31 + 2**21
ROWS = 1025                 # N = 1025 * 2**21
BLOCK = 1 << 24


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


PERIOD = ((np.arange(251) - 125) / 8).astype(np.float32)


def pattern(start, stop):
    """The float32 values of elements start..stop-1: (i % 251 - 125) / 8, plus
    16 from element 2**31 on."""
    out = np.resize(np.roll(PERIOD, -(start % 251)), stop - start)
    if stop > 2**31:
        out[max(0, 2**31 - start):] += np.float32(16.0)
    return out


def blocks(n=N):
    for start in range(0, n, BLOCK):
        yield start, min(n, start + BLOCK)


def assert_values(a, expected_of_block):
    for start, stop in blocks():
        want = expected_of_block(pattern(start, stop), start)
        assert a[start:stop].tobytes() == want.tobytes(), f"block at {start}"


@pytest.mark.slow
def test_more_than_2_to_the_31_elements():
    if mem_available() < N * 4 + (3 << 30):
        pytest.skip("needs ~12 GB of available memory")
    a = np.empty(N, np.float32)
    for start, stop in blocks():
        a[start:stop] = pattern(start, stop)
    ref = reference.sum_squares(a)  # the NumPy twin: float64 dots, by blocks
    odd_ref = reference.sum_squares(a[1::2])

    # Sums: contiguous, per array, a strided view reaching past 2**31, a
    # negative-stride view, the transposed 2-D view.
    assert l2fast.sum_squares(a) == ref
    assert l2fast.sum_squares(a, num_threads=1) == ref
    per = l2fast.sum_squares([a[:5], a], per_array=True)
    assert per[1] == ref
    assert l2fast.sum_squares(a[1::2]) == odd_ref
    assert l2fast.sum_squares(a.reshape(ROWS * 2, -1)[:, ::-1]) == ref
    assert l2fast.sum_squares(a.reshape(ROWS, -1).T) == ref

    # Updates: scale, fused, add with a broadcast (stride-0) src, a strided view.
    l2fast.scale_(a, 0.5)
    assert_values(a, lambda p, s: p * np.float32(0.5))
    assert l2fast.sum_squares_scale_(a, 2.0) == ref / 4
    assert_values(a, lambda p, s: p)
    l2fast.add_scaled_(a, np.broadcast_to(np.float32(1.0), a.shape), 0.25)
    assert_values(a, lambda p, s: p + np.float32(0.25))
    l2fast.add_scaled_(a, np.broadcast_to(np.float32(1.0), a.shape), -0.25)
    l2fast.scale_(a[1::2], -1.0)

    def odd_negated(p, s):
        p = p.copy()
        p[(1 - s) % 2::2] *= -1
        return p

    assert_values(a, odd_negated)
    assert l2fast.sum_squares(a) == ref
