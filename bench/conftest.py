"""pytest-benchmark suite: l2fast beside NumPy (and torch) on real model shapes.

Not part of the test run (``pytest tests``); run it with

    pytest bench --benchmark-only                      # everything
    pytest bench --benchmark-only -k gpt2              # one model
    pytest bench --benchmark-only --benchmark-autosave # save to .benchmarks/
    pytest bench --benchmark-only --benchmark-compare  # compare with the last save

The comparisons are those of `python -m l2fast bench`: both take their
cases from l2fast.bench.cases and their workloads from
l2fast.bench.workloads.  Every benchmark's extra_info holds its GB/s (bytes
read + written over the median) and, for the functions that return a sum of
squares, its relative error against the exact sum of
`l2fast.reference.exact_sum_squares`.
"""
import numpy as np
import pytest

from l2fast import _kernels, reference
from l2fast.bench.machine import thread_limits
from l2fast.bench.workloads import (SHIPPED_MODELS, Workload, bytes_moved, shipped_shapes,
                                    small_shapes, small_tensor_shapes, torch_available)

MODELS = list(SHIPPED_MODELS)
DTYPES = ["float32", "float64", "float16"]
try:
    import ml_dtypes  # noqa: F401
    DTYPES.append("bfloat16")
except ImportError:  # bfloat16 arrays come from ml_dtypes
    pass


def pytest_addoption(parser):
    parser.addoption("--bench-threads", type=int, default=None,
                     help="threads for l2fast, NumPy's BLAS and torch "
                          "(default: the OpenMP default)")


@pytest.fixture(scope="session")
def threads(request):
    """Thread count of every case; NumPy's BLAS and torch are limited to it too."""
    t = request.config.getoption("--bench-threads") or _kernels.max_threads()
    with thread_limits(t, torch_available()):
        yield t


@pytest.fixture(scope="session",
                params=[(m, d) for m in MODELS for d in DTYPES],
                ids=[f"{m}-{d}" for m in MODELS for d in DTYPES])
def workload(request):
    """A shipped model's shapes filled with N(0, 0.02).  Session-scoped and
    parametrized, so pytest runs each model's benchmarks together and keeps
    one model in memory at a time."""
    model, dtype = request.param
    return Workload(shipped_shapes(model), dtype)


@pytest.fixture(scope="session")
def small_workload():
    """1,000 arrays of 64 float32."""
    return Workload(small_shapes(), np.float32)


@pytest.fixture(scope="session")
def small_tensor_workload():
    """2,000 arrays of 64 x 32 float32 (the clipping comparison's small tensors)."""
    return Workload(small_tensor_shapes(), np.float32)


@pytest.fixture
def measure(benchmark, threads):
    """measure(workload, group, run, label, functions, arrays=None, exact=None, **info):
    benchmark one run (see `measure_run`)."""
    return lambda *args, **kwargs: measure_run(benchmark, threads, *args, **kwargs)


@pytest.fixture
def measure_case(measure, threads):
    """measure_case(case, workload): benchmark one case of l2fast.bench.cases,
    in the group of its workload, dtype and function."""
    def run(case, workload):
        measure(workload, f"{workload.name} {workload.dtype} {case.function}",
                case.build(workload, threads), case.label, (case.function,),
                exact=workload.exact if case.returns_sum else None,
                function=case.function, family=case.family, n_elements=workload.size)
    return run


def measure_run(benchmark, threads, workload, group, run, label, functions, arrays=None,
                exact=None, **info):
    """Benchmark `run` on a workload and record GB/s and, when `exact` is
    given, the relative error, which must stay within 1e-12 for l2fast.

    Parameters
    ----------
    workload : l2fast.bench.workloads.Workload
        Restored before and after.
    group : str
        The benchmark group.
    run : callable
        One call; returns the sum of squares when `exact` is given.
    label : str
        The implementation's name.
    functions : tuple of str
        What one call does, in l2fast's function names: its bytes moved are
        the sum of theirs on `arrays`.
    arrays : list of ndarray or None
        The arrays the call works on (None: workload.params).
    exact : float or None
        The exact sum of squares `run` should return.
    **info
        More extra_info.  The relative error is asserted unless ``family``
        is given and is not "l2fast" (NumPy and torch peers are only recorded).
    """
    arrays = workload.params if arrays is None else arrays
    moved = sum(bytes_moved(f, sum(a.nbytes for a in arrays)) for f in functions)
    workload.restore()
    if exact is not None:
        err = reference.relative_error(run(), exact)
        benchmark.extra_info["rel_error"] = err
        if info.get("family", "l2fast") == "l2fast":
            assert err <= 1e-12, f"{label}: relative error {err:.2e}"
    workload.restore()
    benchmark.group = group
    benchmark.extra_info.update(implementation=label, threads=threads, bytes=moved,
                                n_arrays=len(arrays), **info)
    benchmark(run)
    if benchmark.stats is not None:
        benchmark.extra_info["GB/s"] = moved / benchmark.stats.stats.median / 1e9
    workload.restore()
