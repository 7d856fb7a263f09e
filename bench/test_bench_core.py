"""Each function beside its NumPy equivalent (and torch peers) on the shipped
models, float32, float64, float16 and bfloat16; one benchmark group per model, dtype and function."""
import pytest

from l2fast.bench.cases import cases

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_model(measure_case, workload, case):
    measure_case(case, workload)
