"""Each function beside its NumPy equivalent (and torch peers) on the shipped
models, float32 and float64; one benchmark group per model, dtype and function."""
import pytest

from l2fast import _bench_cases as bc

CASES = bc.cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_model(measure, workload, case):
    measure(case, workload, group=f"{workload.name} {workload.dtype} {case.function}")
