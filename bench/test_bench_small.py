"""Many small arrays (1,000 of 64 float32): where per-array overhead dominates,
and ParamList's validated-once table pays off."""
import pytest

from l2fast.bench.cases import small_array_cases

CASES = small_array_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_small_arrays(measure_case, small_workload, case):
    measure_case(case, small_workload)
