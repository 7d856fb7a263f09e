"""Every function returns the same bits as l2fast 0.1.0 on the shipped models
(values recorded by tests/bitwise_cases.py before the kernel layer was
reorganised)."""
import json
from pathlib import Path

import pytest

from bitwise_cases import CASES, results

RECORDED = json.loads((Path(__file__).parent / "data" / "bitwise_0.1.0.json").read_text())


@pytest.mark.models
@pytest.mark.parametrize("model,dtype", CASES)
def test_same_bits_as_recorded(model, dtype):
    got = results(model, dtype)
    want = RECORDED[f"{model}/{dtype}"]
    assert sorted(got) == sorted(want)
    differ = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not differ
