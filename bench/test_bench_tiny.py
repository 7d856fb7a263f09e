"""Tiny inputs: 10 arrays of 10 elements, where a call is all overhead.

Such calls never start the OpenMP team (they are far below
PARALLEL_MIN_SIZE), so l2fast costs one validation pass and one serial loop,
and beats the NumPy loop a user would otherwise write.  Run with

    flock /tmp/l2fast-bench.lock pytest bench/test_bench_tiny.py --benchmark-only
"""
import timeit

import numpy as np
import pytest

import l2fast
from l2fast import _kernels

N_ARRAYS, N_ELEMENTS = 10, 10


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(N_ELEMENTS).astype(np.float32) for _ in range(N_ARRAYS)]


def numpy_sum_squares(ws):
    """The NumPy loop: one float64 dot product per array."""
    return sum(float(np.dot(w, w)) for w in (a.astype(np.float64) for a in ws))


def numpy_vdot_loop(ws):
    """The fastest NumPy loop: float32 dot products (less accurate than l2fast)."""
    return sum(float(np.vdot(w, w)) for w in ws)


def numpy_scale(ws, factor):
    for w in ws:
        w *= factor


def fastest(fn, number=2000, repeat=7):
    """Seconds per call: the minimum over repeats, the least noisy statistic."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


SUM_CASES = {
    "l2fast.sum_squares": lambda ws: (lambda: l2fast.sum_squares(ws)),
    "ParamList.sum_squares": lambda ws: l2fast.ParamList(ws).sum_squares,
    "numpy float64 dot loop": lambda ws: (lambda: numpy_sum_squares(ws)),
    "numpy float32 vdot loop": lambda ws: (lambda: numpy_vdot_loop(ws)),
}


@pytest.mark.parametrize("name", list(SUM_CASES))
def test_tiny_sum_squares(benchmark, tiny, name):
    benchmark.group = f"tiny: {N_ARRAYS} arrays x {N_ELEMENTS} float32, sum of squares"
    result = benchmark(SUM_CASES[name](tiny))
    assert result == pytest.approx(numpy_sum_squares(tiny), rel=1e-6)


@pytest.mark.parametrize("name", ["l2fast.scale_", "numpy *= loop"])
def test_tiny_scale(benchmark, tiny, name):
    benchmark.group = f"tiny: {N_ARRAYS} arrays x {N_ELEMENTS} float32, scale in place"
    if name == "l2fast.scale_":
        benchmark(lambda: l2fast.scale_(tiny, 1.0))
    else:
        benchmark(lambda: numpy_scale(tiny, 1.0))


@pytest.mark.parametrize("function", ["sum_squares", "scale_"])
def test_tiny_call_beats_the_numpy_loop(benchmark, tiny, function):
    """The ratio l2fast / NumPy loop, both measured in this run: below 1."""
    if function == "sum_squares":
        ours, theirs = (lambda: l2fast.sum_squares(tiny)), (lambda: numpy_sum_squares(tiny))
    else:
        ours, theirs = (lambda: l2fast.scale_(tiny, 1.0)), (lambda: numpy_scale(tiny, 1.0))
    benchmark.group = "tiny: l2fast against the NumPy loop"
    numpy_before = fastest(theirs)
    benchmark(ours)
    numpy_after = fastest(theirs)
    assert _kernels.last_team_size() == 1
    if benchmark.stats is None:  # --benchmark-disable
        return
    ratio = benchmark.stats.stats.min / min(numpy_before, numpy_after)
    benchmark.extra_info.update(numpy_loop_seconds=min(numpy_before, numpy_after),
                                ratio_to_numpy_loop=ratio)
    assert ratio < 1.0, f"l2fast.{function} took {ratio:.2f}x the NumPy loop's time"
