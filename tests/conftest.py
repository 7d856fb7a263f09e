"""Shared fixtures: real model shapes filled with N(0, 0.02) values.

The oracles (the exact sum of squares, the NumPy twins of every function)
live in `l2fast.reference`, the shapes in `l2fast.models`.
"""
import numpy as np
import pytest

from l2fast import models

MODEL_NAMES = models.names()  # bert-base-uncased, gpt2, resnet50

def model_arrays(name, dtype, seed=0):
    """The model's parameters filled with N(0, 0.02), as `dtype` arrays."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))
            .astype(dtype, copy=False) for _, shape in models.shapes(name)]


@pytest.fixture(scope="session")
def models_f32():
    return {n: model_arrays(n, np.float32) for n in MODEL_NAMES}
