"""Every function returns the same bits as l2fast 0.1.0 on the shipped models
(values recorded by tests/bitwise_cases.py before the kernel layer was
reorganised) — except sums, which are now exact: each is checked against the
exact sum correctly rounded (0.1.0's values were within 1e-14 of it)."""
import json
from pathlib import Path

import numpy as np
import pytest

from bitwise_cases import CASES, digest, results
from conftest import model_arrays
from l2fast.reference import exact_sum_squares, relative_error

RECORDED = json.loads((Path(__file__).parent / "data" / "bitwise_0.1.0.json").read_text())
SUMS = ("sum_squares/t1", "sum_squares/t2", "sum_squares/strided", "sum_squares_scale_/sum")
PENALTIES = ("L2.penalty", "L2.penalty_decay_/sum")


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def case(request):
    model, dtype = request.param
    ws = model_arrays(model, np.dtype(dtype))
    return results(model, dtype), RECORDED[f"{model}/{dtype}"], ws


@pytest.mark.models
def test_arrays_same_bits_as_recorded(case):
    got, want, _ = case
    assert sorted(got) == sorted(want)
    arrays = [k for k in want if k not in SUMS + PENALTIES + ("sum_squares/per_array",)]
    differ = {k: (got[k], want[k]) for k in arrays if got[k] != want[k]}
    assert not differ


@pytest.mark.models
def test_sums_are_the_exact_sums(case):
    got, want, ws = case
    exact = exact_sum_squares(ws)
    for k in SUMS:
        assert float.fromhex(got[k]) == exact, k
        assert relative_error(float.fromhex(want[k]), exact) <= 1e-14, k  # 0.1.0's error
    assert got["sum_squares/per_array"] == digest([exact_sum_squares(ws, per_array=True)])
    p, pd = (float.fromhex(got[k]) for k in PENALTIES)
    assert p == pd
    assert relative_error(p, float.fromhex(want["L2.penalty"])) <= 1e-14
