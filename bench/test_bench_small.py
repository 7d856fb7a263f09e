"""Many small arrays (1,000 of 64 float32): where per-array overhead dominates,
and ParamList's validated-once table pays off."""
import pytest

from l2fast import _bench_cases as bc

CASES = bc.small_array_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_small_arrays(measure, small_workload, case):
    measure(case, small_workload, group=f"{small_workload.name} float32 {case.function}")
