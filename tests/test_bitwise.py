"""Every function returns the same bits as l2fast 0.1.0 on the shipped models
(values recorded by tests/bitwise_cases.py before the kernel layer was
reorganised)."""
import json
from pathlib import Path

import numpy as np
import pytest

import l2fast
from bitwise_cases import CASES, FACTOR, results, strided
from conftest import model_arrays
from l2fast.reference import exact_sum_squares, relative_error

RECORDED = json.loads((Path(__file__).parent / "data" / "bitwise_0.1.0.json").read_text())


@pytest.mark.models
@pytest.mark.parametrize("model,dtype", CASES)
def test_same_bits_as_recorded(model, dtype):
    got = results(model, dtype)
    want = RECORDED[f"{model}/{dtype}"]
    assert sorted(got) == sorted(want)
    differ = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not differ


@pytest.mark.models
@pytest.mark.parametrize("model,dtype", CASES)
def test_reproducible_sums_are_the_exact_sums(model, dtype):
    """reproducible=True gives the exact sum on the same cases (0.1.0's default
    sums were within 1e-14 of it), contiguous, strided and fused."""
    ws = model_arrays(model, np.dtype(dtype))
    exact = exact_sum_squares(ws)
    want = RECORDED[f"{model}/{dtype}"]
    for nt in (1, 2):
        assert l2fast.sum_squares(ws, num_threads=nt, reproducible=True) == exact
    assert l2fast.sum_squares(strided(ws), reproducible=True) == exact
    assert l2fast.sum_squares([a.copy() for a in ws], reproducible=True, per_array=True).tolist() \
        == exact_sum_squares(ws, per_array=True).tolist()
    assert l2fast.sum_squares_scale_([a.copy() for a in ws], FACTOR, reproducible=True) == exact
    for k in ("sum_squares/t1", "sum_squares/strided", "sum_squares_scale_/sum"):
        assert relative_error(float.fromhex(want[k]), exact) <= 1e-14, k
