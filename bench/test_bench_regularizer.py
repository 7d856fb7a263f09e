"""L2.penalty_decay_ beside the core sum_squares_scale_ it is built on.

One benchmark group per workload: the core function on a list and on a
ParamList, and L2.penalty_decay_ on a list, a dict with exclude=no_decay_1d,
and a ParamList; plus penalty() then decay_() as two passes.  The L2 calls
should time as the core call does (the selection is cached per params
object); the two-pass version reads the weights twice.

    pytest bench/test_bench_regularizer.py --benchmark-only -k resnet50
"""
import pytest

import l2fast
from l2fast import _bench_cases as bc

#: decay factors alternate 1 - LR and 1 / (1 - LR) (scale "none", lam = 1),
#: so values stay bounded however often a case runs.
LR = 1.0 - bc.FACTOR


def _alternating_lr():
    state = [False]

    def lr():
        state[0] = not state[0]
        return LR if state[0] else -LR / (1.0 - LR)
    return lr


def _named(workload):
    return {name: a for (name, _), a in zip(workload.shapes.params, workload.params)}


def _cases(workload, threads):
    """{label: (run, penalised arrays)}; run() returns sum of squares before scaling."""
    ws = workload.params
    pl = l2fast.ParamList(ws)
    reg = l2fast.L2(1.0, scale="none", num_threads=threads)
    masked = l2fast.L2(1.0, scale="none", exclude=l2fast.no_decay_1d, num_threads=threads)
    named = _named(workload)
    kept = [a for a in ws if a.ndim > 1]
    cases = {}

    lr = _alternating_lr()
    cases["core sum_squares_scale_(list)"] = (
        lambda: l2fast.sum_squares_scale_(ws, 1.0 - lr(), num_threads=threads), ws)
    lr2 = _alternating_lr()
    cases["core ParamList.sum_squares_scale_"] = (
        lambda: pl.sum_squares_scale_(1.0 - lr2(), num_threads=threads), ws)
    lr3 = _alternating_lr()
    cases["L2.penalty_decay_(list)"] = (lambda: 2.0 * reg.penalty_decay_(ws, lr3()), ws)
    lr4 = _alternating_lr()
    cases["L2.penalty_decay_(ParamList)"] = (lambda: 2.0 * reg.penalty_decay_(pl, lr4()), ws)
    lr5 = _alternating_lr()
    cases["L2.penalty_decay_(dict, exclude=no_decay_1d)"] = (
        lambda: 2.0 * masked.penalty_decay_(named, lr5()), kept)
    lr6 = _alternating_lr()

    def two_passes():
        s = 2.0 * reg.penalty(ws)
        reg.decay_(ws, lr6())
        return s
    cases["L2.penalty + L2.decay_ (two passes)"] = (two_passes, ws)
    return cases


LABELS = ["core sum_squares_scale_(list)", "core ParamList.sum_squares_scale_",
          "L2.penalty_decay_(list)", "L2.penalty_decay_(ParamList)",
          "L2.penalty_decay_(dict, exclude=no_decay_1d)", "L2.penalty + L2.decay_ (two passes)"]


def _measure(benchmark, workload, threads, label, group):
    workload.restore()
    run, arrays = _cases(workload, threads)[label]
    exact = workload.exact if arrays is workload.params else bc.exact_sum_squares(arrays)
    err = bc.relative_error(run(), exact)
    assert err <= 1e-12, f"{label}: relative error {err:.2e}"
    workload.restore()
    moved = 2 * sum(a.nbytes for a in arrays)        # read and write back
    if "two passes" in label:
        moved = 3 * sum(a.nbytes for a in arrays)    # read, then read and write
    benchmark.group = group
    benchmark.extra_info.update(implementation=label, threads=threads, rel_error=err,
                                n_arrays=len(arrays), bytes=moved)
    benchmark(run)
    if benchmark.stats is not None:
        benchmark.extra_info["GB/s"] = moved / benchmark.stats.stats.median / 1e9
    workload.restore()


@pytest.mark.parametrize("label", LABELS)
def test_penalty_decay(benchmark, workload, threads, label):
    _measure(benchmark, workload, threads, label,
             f"{workload.name} {workload.dtype} penalty_decay_")


@pytest.mark.parametrize("label", LABELS)
def test_penalty_decay_small_arrays(benchmark, small_workload, threads, label):
    _measure(benchmark, small_workload, threads, label,
             f"{small_workload.name} float32 penalty_decay_")
