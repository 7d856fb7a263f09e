"""Accuracy and determinism on real model shapes (ResNet-50, BERT-base, GPT-2)."""
import math

import numpy as np
import pytest

import l2fast
from conftest import MODEL_NAMES
from l2fast import models
from l2fast.reference import exact_sum_squares

pytestmark = pytest.mark.models


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_accuracy_on_models(models_f32, name, dtype):
    ws = models_f32[name]
    if dtype == "float64":
        # float64 values that are not float32 values: the squares round
        ws = [w.astype(np.float64) * (1 + 1e-9) for w in ws]
    s = l2fast.sum_squares(ws)
    ref = exact_sum_squares(ws)
    assert abs(s - ref) / ref <= 1e-12
    per = l2fast.sum_squares(ws, per_array=True)
    ref_per = exact_sum_squares(ws, per_array=True)
    assert np.max(np.abs(per - ref_per) / np.maximum(ref_per, 1e-300)) <= 1e-12


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bitwise_identical_for_any_thread_count(models_f32, name):
    ws = models_f32[name]
    ref = l2fast.sum_squares(ws, num_threads=1)
    ref_per = l2fast.sum_squares(ws, per_array=True, num_threads=1)
    pl = l2fast.ParamList(ws)
    for nt in (2, 3, 8):
        assert l2fast.sum_squares(ws, num_threads=nt) == ref
        assert pl.sum_squares(num_threads=nt) == ref
        assert l2fast.sum_squares(ws, per_array=True, num_threads=nt).tobytes() == ref_per.tobytes()
    ws64 = [w.astype(np.float64) for w in ws[:20]]
    ref64 = l2fast.sum_squares(ws64, num_threads=1)
    for nt in (2, 3, 8):
        assert l2fast.sum_squares(ws64, num_threads=nt) == ref64


def test_fused_is_bitwise_equal_to_sum_squares_on_a_model(models_f32):
    ws = [w.copy() for w in models_f32["resnet50"]]
    before = l2fast.sum_squares(ws, num_threads=1)
    assert l2fast.sum_squares_scale_(ws, 1.0, num_threads=2) == before
    assert l2fast.sum_squares(ws, num_threads=3) == before  # factor 1 changes nothing


@pytest.mark.parametrize("nt", [1, 2])
def test_accuracy_magnitudes_1e_minus30_to_1e30(nt):
    rng = np.random.default_rng(2024)
    sizes = rng.integers(1, 50_000, 60)
    ws = [rng.standard_normal(n) * 10.0 ** rng.uniform(-30, 30, n) for n in sizes]
    ref = exact_sum_squares(ws)
    s = l2fast.sum_squares(ws, num_threads=nt)
    assert abs(s - ref) / ref <= 1e-12
    # Each magnitude band alone, so the small values are not drowned out.
    for lo in range(-30, 30, 10):
        band = [rng.standard_normal(5000) * 10.0 ** rng.uniform(lo, lo + 10, 5000)
                for _ in range(5)]
        r = exact_sum_squares(band)
        assert abs(l2fast.sum_squares(band, num_threads=nt) - r) / r <= 1e-12


def test_shipped_model_names_and_shapes():
    assert models.names() == ["bert-base-uncased", "gpt2", "resnet50"]
    sizes = {name: sum(math.prod(s) for _, s in models.shapes(name)) for name in models.names()}
    assert sizes["gpt2"] == 124_439_808                   # GPT-2 small, lm_head tied
    assert 25_000_000 < sizes["resnet50"] < 26_000_000
    assert 109_000_000 < sizes["bert-base-uncased"] < 111_000_000
    for name in models.names():
        params = models.shapes(name)
        assert all(isinstance(n, str) and isinstance(s, tuple) for n, s in params)
        assert models.path(name).name == f"{name}.json"
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        models.shapes("vgg")
