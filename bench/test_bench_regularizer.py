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
from l2fast import reference
from l2fast.bench.workloads import FACTOR, alternating

#: decay factors alternate 1 - LR and 1 / (1 - LR) (scale "none", lam = 1),
#: so values stay bounded however often a case runs.
LR = 1.0 - FACTOR

ONE_PASS, TWO_PASSES = ("sum_squares_scale_",), ("sum_squares", "scale_")

LABELS = ["core sum_squares_scale_(list)", "core ParamList.sum_squares_scale_",
          "L2.penalty_decay_(list)", "L2.penalty_decay_(ParamList)",
          "L2.penalty_decay_(dict, exclude=no_decay_1d)", "L2.penalty + L2.decay_ (two passes)"]


def _case(workload, threads, label):
    """(run, penalised arrays, what a run does in l2fast's functions); run()
    returns the sum of squares before scaling."""
    ws = workload.params
    pl = l2fast.ParamList(ws)
    reg = l2fast.L2(1.0, scale="none", num_threads=threads)
    masked = l2fast.L2(1.0, scale="none", exclude=l2fast.no_decay_1d, num_threads=threads)
    named = workload.named()
    lr = alternating(LR, -LR / (1.0 - LR))

    def two_passes():
        s = 2.0 * reg.penalty(ws)
        reg.decay_(ws, lr())
        return s
    return {
        LABELS[0]: (lambda: l2fast.sum_squares_scale_(ws, 1.0 - lr(), num_threads=threads),
                    ws, ONE_PASS),
        LABELS[1]: (lambda: pl.sum_squares_scale_(1.0 - lr(), num_threads=threads),
                    ws, ONE_PASS),
        LABELS[2]: (lambda: 2.0 * reg.penalty_decay_(ws, lr()), ws, ONE_PASS),
        LABELS[3]: (lambda: 2.0 * reg.penalty_decay_(pl, lr()), ws, ONE_PASS),
        LABELS[4]: (lambda: 2.0 * masked.penalty_decay_(named, lr()),
                    [a for a in ws if a.ndim > 1], ONE_PASS),
        LABELS[5]: (two_passes, ws, TWO_PASSES),
    }[label]


def _measure(measure, workload, threads, label, group):
    """Benchmark the case `label`, its sum checked against the exact one."""
    workload.restore()
    run, arrays, functions = _case(workload, threads, label)
    exact = workload.exact if arrays is workload.params else reference.exact_sum_squares(arrays)
    measure(workload, group, run, label, functions, arrays=arrays, exact=exact)


@pytest.mark.parametrize("label", LABELS)
def test_penalty_decay(measure, workload, threads, label):
    _measure(measure, workload, threads, label, f"{workload.name} {workload.dtype} penalty_decay_")


@pytest.mark.parametrize("label", LABELS)
def test_penalty_decay_small_arrays(measure, small_workload, threads, label):
    _measure(measure, small_workload, threads, label,
             f"{small_workload.name} float32 penalty_decay_")
