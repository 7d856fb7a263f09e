"""The cases whose results were recorded before l2fast's kernel layer was
reorganised (tests/data/bitwise_0.1.0.json); test_bitwise.py checks that
every function still returns the same bits.

Run as a script to record the file again:
``python tests/bitwise_cases.py tests/data/bitwise_0.1.0.json``.
"""
import hashlib
import json
import sys

import numpy as np

import l2fast
from l2fast import models

try:
    from conftest import model_arrays
except ImportError:  # run as a script from the checkout
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    from conftest import model_arrays

CASES = [("resnet50", "float32"), ("resnet50", "float64"),
         ("bert-base-uncased", "float32"), ("bert-base-uncased", "float64"),
         ("gpt2", "float32")]
FACTOR = 1 - 3e-4
ALPHA = 1.25e-3


def digest(arrays):
    """sha256 of the arrays' values, in order."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def strided(arrays):
    """The same values behind non-contiguous views: every other element of a
    wider buffer, reversed."""
    out = []
    for a in arrays:
        buf = np.zeros(a.shape + (2,), a.dtype)
        buf[..., 1] = a
        out.append(buf[..., 1][::-1] if a.ndim else buf[..., 1])
    return out


def results(model, dtype):
    """{case name: float.hex of a sum, or sha256 of arrays} for one model."""
    ws = model_arrays(model, np.dtype(dtype))
    other = np.float64 if dtype == "float32" else np.float32
    out = {}
    for nt in (1, 2):
        out[f"sum_squares/t{nt}"] = float.hex(l2fast.sum_squares(ws, num_threads=nt))
    out["sum_squares/per_array"] = digest([l2fast.sum_squares(ws, per_array=True)])
    sv = strided(ws)
    out["sum_squares/strided"] = float.hex(l2fast.sum_squares(sv))
    l2fast.scale_(sv, FACTOR)
    out["scale_/strided"] = digest(sv)
    w = [a.copy() for a in ws]
    l2fast.scale_(w, FACTOR)
    out["scale_"] = digest(w)
    w = [a.copy() for a in ws]
    out["sum_squares_scale_/sum"] = float.hex(l2fast.sum_squares_scale_(w, FACTOR))
    out["sum_squares_scale_/arrays"] = digest(w)
    g = [(a[::-1] * 0.5).astype(other) if a.ndim else a.astype(other) for a in ws]
    l2fast.add_scaled_(g, ws, ALPHA)
    out["add_scaled_/mixed"] = digest(g)
    g = [a * 0.25 for a in ws]
    l2fast.add_scaled_(g, ws, ALPHA)
    out["add_scaled_/same"] = digest(g)
    w = [a.copy() for a in ws]
    l2fast.add_scaled_(w, w, ALPHA)
    out["add_scaled_/self"] = digest(w)
    names = [n for n, _ in models.shapes(model)]
    params = dict(zip(names, [a.copy() for a in ws]))
    reg = l2fast.L2(0.01, scale="samples", m=50_000, exclude=l2fast.no_decay_1d)
    out["L2.penalty"] = float.hex(reg.penalty(params))
    out["L2.penalty_decay_/sum"] = float.hex(reg.penalty_decay_(params, lr=0.1))
    out["L2.penalty_decay_/arrays"] = digest(params.values())
    return out


def record():
    return {f"{m}/{d}": results(m, d) for m, d in CASES}


if __name__ == "__main__":
    with open(sys.argv[1], "w") as f:
        json.dump(record(), f, indent=1, sort_keys=True)
        f.write("\n")
