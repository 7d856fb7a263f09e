"""Global norm and gradient clipping on torch tensors: l2fast beside
torch.nn.utils.clip_grad_norm_ (foreach=True and False), get_total_norm and
torch._foreach_norm, on the shipped models and on 2,000 tensors of 64 x 32
float32 (a list of tensors, not a ParamList).  The cases are those of
``python -m l2fast bench``'s clipping tables.

    pytest bench/test_bench_clip.py --benchmark-only -k "2000 or gpt2-float32"
"""
import pytest

from l2fast.bench.cases import clip_cases
from l2fast.bench.workloads import torch_available

CASES = clip_cases() if torch_available() else []
pytestmark = pytest.mark.skipif(not torch_available(), reason="needs torch")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_clip_models(measure_case, workload, case):
    measure_case(case, workload)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_clip_small_tensors(measure_case, small_tensor_workload, case):
    measure_case(case, small_tensor_workload)
