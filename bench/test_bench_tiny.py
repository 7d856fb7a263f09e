"""Tiny inputs: 10 arrays of 10 elements, where a call is all overhead.

Such calls never start the OpenMP team (they are far below
PARALLEL_MIN_SIZE), so l2fast costs one validation pass and one serial loop,
and beats the NumPy loop a user would otherwise write (the baselines of
`l2fast.reference`).  Run with

    flock /tmp/l2fast-bench.lock pytest bench/test_bench_tiny.py --benchmark-only
"""
import timeit

import numpy as np
import pytest

import l2fast
from l2fast import _kernels, reference

N_ARRAYS, N_ELEMENTS = 10, 10


@pytest.fixture
def tiny():
    """10 float32 arrays of 10 N(0, 1) values."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(N_ELEMENTS).astype(np.float32) for _ in range(N_ARRAYS)]


def fastest(fn, number=2000, repeat=7):
    """Seconds per call: the minimum over repeats, the least noisy statistic."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


#: {label: make(ws) -> run}: l2fast, and the NumPy loops a user writes today.
SUM_CASES = {
    "l2fast.sum_squares": lambda ws: (lambda: l2fast.sum_squares(ws)),
    "ParamList.sum_squares": lambda ws: l2fast.ParamList(ws).sum_squares,
    "numpy float32 vdot loop": lambda ws: (lambda: reference.vdot_loop(ws)),
    "numpy float32 einsum loop": lambda ws: (lambda: reference.einsum_loop(ws)),
}
SCALE_CASES = {
    "l2fast.scale_": lambda ws: (lambda: l2fast.scale_(ws, 1.0)),
    "numpy *= loop": lambda ws: (lambda: reference.scale_loop_(ws, 1.0)),
}


@pytest.mark.parametrize("name", list(SUM_CASES))
def test_tiny_sum_squares(benchmark, tiny, name):
    benchmark.group = f"tiny: {N_ARRAYS} arrays x {N_ELEMENTS} float32, sum of squares"
    result = benchmark(SUM_CASES[name](tiny))
    assert result == pytest.approx(reference.exact_sum_squares(tiny), rel=1e-6)


@pytest.mark.parametrize("name", list(SCALE_CASES))
def test_tiny_scale(benchmark, tiny, name):
    benchmark.group = f"tiny: {N_ARRAYS} arrays x {N_ELEMENTS} float32, scale in place"
    benchmark(SCALE_CASES[name](tiny))


@pytest.mark.parametrize("ours, theirs", [
    ("l2fast.sum_squares", "numpy float32 vdot loop"),
    ("l2fast.scale_", "numpy *= loop"),
], ids=["sum_squares", "scale_"])
def test_tiny_call_beats_the_numpy_loop(benchmark, tiny, ours, theirs):
    """The ratio l2fast / NumPy loop, both measured in this run: below 1."""
    cases = {**SUM_CASES, **SCALE_CASES}
    ours_run, theirs_run = cases[ours](tiny), cases[theirs](tiny)
    benchmark.group = "tiny: l2fast against the NumPy loop"
    numpy_before = fastest(theirs_run)
    benchmark(ours_run)
    numpy_after = fastest(theirs_run)
    assert _kernels.last_team_size() == 1
    if benchmark.stats is None:  # --benchmark-disable
        return
    ratio = benchmark.stats.stats.min / min(numpy_before, numpy_after)
    benchmark.extra_info.update(numpy_loop_seconds=min(numpy_before, numpy_after),
                                ratio_to_numpy_loop=ratio)
    assert ratio < 1.0, f"{ours} took {ratio:.2f}x the NumPy loop's time"
