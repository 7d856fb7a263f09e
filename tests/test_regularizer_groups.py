"""l2fast.L2 with arrays excluded by name (Hugging Face, timm) and per-array
multipliers of c (param groups, Caffe's decay_mult), against exact sums."""
import numpy as np
import pytest

from l2fast import L2
from l2fast import reference
from l2fast.reference import exact_sum_squares


def _copy(d):
    return {k: v.copy() for k, v in d.items()}


# ---------------------------------------------------------------------------
# Excluding by name, and per-array multipliers (param groups, decay_mult)
# ---------------------------------------------------------------------------

def _named_transformer_block():
    rng = np.random.default_rng(7)
    shapes = {"embeddings.word_embeddings.weight": (50, 8), "encoder.attn.query.weight": (8, 8),
              "encoder.attn.query.bias": (8,), "encoder.LayerNorm.weight": (8,),
              "encoder.LayerNorm.bias": (8,), "pos_embed": (1, 5, 8), "cls_token": (1, 1, 8),
              "head.weight": (3, 8)}
    return {k: rng.standard_normal(s) for k, s in shapes.items()}


def test_exclude_by_name_hugging_face_and_timm():
    from l2fast.regularizer import exclude_by_name
    params = _named_transformer_block()
    # Hugging Face: no decay for names containing "bias" or "LayerNorm.weight"
    hf = exclude_by_name(["bias", "LayerNorm.weight"])
    kept = ["embeddings.word_embeddings.weight", "encoder.attn.query.weight", "pos_embed",
            "cls_token", "head.weight"]
    expected = 0.5 * exact_sum_squares([params[k] for k in kept])
    assert L2(1.0, scale="none", exclude=hf).penalty(params) == pytest.approx(expected,
                                                                                rel=1e-14)
    # timm: 1-D arrays and the model's no_weight_decay() set
    timm = exclude_by_name(exact={"pos_embed", "cls_token"}, one_d=True)
    kept = ["embeddings.word_embeddings.weight", "encoder.attn.query.weight", "head.weight"]
    expected = 0.5 * exact_sum_squares([params[k] for k in kept])
    assert L2(1.0, scale="none", exclude=timm).penalty(params) == pytest.approx(expected,
                                                                                  rel=1e-14)
    with pytest.raises(TypeError, match="has none: pass params as a dict"):
        L2(1.0, scale="none", exclude=hf).penalty(list(params.values()))
    with pytest.raises(TypeError, match="not one string"):
        exclude_by_name("bias")
    with pytest.raises(ValueError, match="at least one"):
        exclude_by_name()


def test_decay_mult_groups():
    params = _named_transformer_block()
    original = _copy(params)
    mult = {"embeddings.word_embeddings.weight": 0.1, "head.weight": 2.0}

    def decay_mult(name, a):
        return 0.0 if a.ndim <= 1 else mult.get(name, 1.0)

    reg = L2(0.2, scale="none", decay_mult=decay_mult)
    mu = {k: decay_mult(k, a) for k, a in params.items()}
    expected = 0.1 * sum(mu[k] * exact_sum_squares([a]) for k, a in params.items())
    assert reg.penalty(params) == pytest.approx(expected, rel=1e-14)
    grads = {k: np.zeros_like(a) for k, a in params.items()}
    reg.grad_(grads, params)
    for k in params:
        np.testing.assert_allclose(grads[k], 0.2 * mu[k] * params[k], rtol=1e-15, err_msg=k)
    got = reg.penalty_decay_(params, 0.5)
    assert got == pytest.approx(expected, rel=1e-14)
    for k in params:
        ref = original[k].copy()
        if mu[k]:
            reference.scale_(ref, 1 - 0.5 * 0.2 * mu[k])
        np.testing.assert_array_equal(params[k], ref, err_msg=k)
    # as a sequence, and N of scale="params" counts the arrays with μ > 0 only
    seq = [mu[k] for k in params]
    n = sum(a.size for k, a in params.items() if mu[k] > 0)
    assert L2(1.0, scale="params", decay_mult=seq).coef(params) == 1.0 / n
    with pytest.raises(ValueError, match="decay_mult of array 'x' must be finite and >= 0"):
        L2(1.0, scale="none", decay_mult=lambda k, a: -1.0).penalty({"x": np.ones(2)})
    with pytest.raises(ValueError, match="decay_mult has 1 entries but params has 2"):
        L2(1.0, scale="none", decay_mult=[1.0]).penalty([np.ones(2), np.ones(2)])


def test_decay_mult_read_only_changes_nothing():
    ws = {"a": np.ones((2, 2)), "b": np.ones((2, 2))}
    ws["b"].flags.writeable = False
    reg = L2(0.5, scale="none", decay_mult=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"params\['b'\] is read-only"):
        reg.decay_(ws, 0.1)
    assert ws["a"].tolist() == [[1, 1], [1, 1]]
    grads = {"a": np.zeros((2, 2)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match="shape"):
        L2(0.5, scale="none", decay_mult=[1.0, 2.0]).grad_(grads, {"a": np.ones((2, 2)),
                                                                   "b": np.ones((2, 2))})
    assert not grads["a"].any()
