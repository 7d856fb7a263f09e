"""Shared fixtures: real model shapes filled with N(0, 0.02) values."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import l2fast

PACKAGE_MODELS = Path(l2fast.__file__).parent / "models"
SHARED_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"
MODEL_NAMES = ["resnet50", "bert-base-uncased", "gpt2"]


def model_shapes(name):
    """[(param name, shape)] of a real network, from ../shared/models or the
    copies shipped as package data; skip when neither is there."""
    for folder in (SHARED_MODELS, PACKAGE_MODELS):
        path = folder / f"{name}.json"
        if path.is_file():
            with open(path) as f:
                spec = json.load(f)
            return [(p["name"], tuple(p["shape"])) for p in spec["params"]]
    pytest.skip(f"no shapes for {name}")


def model_arrays(name, dtype, seed=0):
    """The model's parameters filled with N(0, 0.02), as `dtype` arrays."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)).astype(dtype, copy=False)
            for _, shape in model_shapes(name)]


def fsum_sum_squares(arrays):
    """sum_i ||w_i||^2 by math.fsum over exact squares: exact, then rounded once per
    1M-element block (relative error ~1e-16 at most).

    Each square is split exactly into hi + lo (Dekker's product without FMA),
    so hi + lo is the exact square of a float64 value."""
    parts = []
    for a in arrays:
        x = np.asarray(a, dtype=np.float64).ravel()
        for start in range(0, x.size, 1 << 20):
            b = x[start:start + (1 << 20)]
            hi = b * b
            c = b * 134217729.0  # 2**27 + 1 splits b into two 26-bit halves
            bh = c - (c - b)
            bl = b - bh
            lo = ((bh * bh - hi) + 2.0 * bh * bl) + bl * bl
            parts.append(math.fsum(hi.tolist() + lo.tolist()))
    return math.fsum(parts)


LONG_DOUBLE_OK = np.finfo(np.longdouble).nmant >= 63


def exact_sum_squares(arrays):
    """The reference sum of squares: x87 extended precision (64-bit mantissa,
    relative error ~1e-18 for 10^8 terms) where NumPy has it, else fsum."""
    if not LONG_DOUBLE_OK:
        return fsum_sum_squares(arrays)
    total = np.longdouble(0)
    for a in arrays:
        x = np.asarray(a).ravel()
        for start in range(0, x.size, 1 << 22):
            b = x[start:start + (1 << 22)].astype(np.longdouble)
            total += np.sum(b * b)
    return float(total)


@pytest.fixture(scope="session")
def models_f32():
    return {n: model_arrays(n, np.float32) for n in MODEL_NAMES}
