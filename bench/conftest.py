"""pytest-benchmark suite: l2fast beside NumPy (and torch) on real model shapes.

Not part of the test run (``pytest tests``); run it with

    pytest bench --benchmark-only                      # everything
    pytest bench --benchmark-only -k gpt2              # one model
    pytest bench --benchmark-only --benchmark-autosave # save to .benchmarks/
    pytest bench --benchmark-only --benchmark-compare  # compare with the last save

The comparisons are those of `python -m l2fast bench`: both take their
cases from l2fast._bench_cases.  Every benchmark's extra_info holds its
GB/s (bytes read + written over the median) and, for the functions that
return a sum of squares, its relative error against an extended-precision
reference.
"""
import numpy as np
import pytest

from l2fast import _bench_cases as bc
from l2fast import _kernels

MODELS = list(bc.SHIPPED_MODELS)
DTYPES = ["float32", "float64"]


def pytest_addoption(parser):
    parser.addoption("--bench-threads", type=int, default=None,
                     help="threads for l2fast, NumPy's BLAS and torch "
                          "(default: the OpenMP default)")


@pytest.fixture(scope="session")
def threads(request):
    """Thread count of every case; NumPy's BLAS and torch are limited to it too."""
    t = request.config.getoption("--bench-threads") or _kernels.max_threads()
    from l2fast.bench import thread_limits
    with thread_limits(t, bc.torch_available()):
        yield t


@pytest.fixture(scope="session",
                params=[(m, d) for m in MODELS for d in DTYPES],
                ids=[f"{m}-{d}" for m in MODELS for d in DTYPES])
def workload(request):
    """A shipped model's shapes filled with N(0, 0.02).  Session-scoped and
    parametrized, so pytest runs each model's benchmarks together and keeps
    one model in memory at a time."""
    model, dtype = request.param
    return bc.Workload(bc.shipped_shapes(model), dtype)


@pytest.fixture(scope="session")
def small_workload():
    """1,000 arrays of 64 float32."""
    return bc.Workload(bc.small_shapes(), np.float32)


@pytest.fixture
def measure(benchmark, threads):
    """measure(case, workload, group): benchmark one case (see `run_case`)."""
    return lambda case, workload, group: run_case(benchmark, case, workload, threads, group)


def run_case(benchmark, case, workload, threads, group):
    """Benchmark one case on a workload and record GB/s and relative error.

    The relative error is measured on one call before timing, from the
    workload's original values; the l2fast cases must stay within 1e-12."""
    workload.restore()
    run = case.build(workload, threads)
    if case.returns_sum:
        err = bc.relative_error(run(), workload.exact)
        benchmark.extra_info["rel_error"] = err
        if case.family == "l2fast":
            assert err <= 1e-12, f"{case.label}: relative error {err:.2e}"
    workload.restore()
    moved = bc.bytes_moved(case.function, workload)
    benchmark.group = group
    benchmark.extra_info.update(
        function=case.function, implementation=case.label, family=case.family,
        threads=threads, n_arrays=len(workload), n_elements=workload.size, bytes=moved)
    benchmark(run)
    if benchmark.stats is not None:
        benchmark.extra_info["GB/s"] = moved / benchmark.stats.stats.median / 1e9
    workload.restore()
