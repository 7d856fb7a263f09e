"""A user's script over the whole public API, checked by `mypy --strict`
(tests/test_typing.py) and also run, so the types claimed are the types returned.

It is not collected by pytest (its name does not start with test_).
"""
import array
import contextlib
import io
import sys
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

import l2fast

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

Weights = list[npt.NDArray[np.float32]]


def make_weights(seed: int) -> Weights:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for shape in [(64, 32), (64,), (10, 64)]]


def weights_one_by_one(weights: Weights) -> Iterator[npt.NDArray[np.float32]]:
    yield from weights


def main() -> None:
    weights = make_weights(0)
    grads = make_weights(1)
    lam, m, lr = 1e-2, 128, 0.1

    # the penalty lam / (2 m) * sum_i ||w_i||^2 and its per-array parts
    total = l2fast.sum_squares(weights)
    assert_type(total, float)
    per_array = l2fast.sum_squares(weights, per_array=True, num_threads=2)
    assert_type(per_array, npt.NDArray[np.float64])
    penalty: float = lam / (2 * m) * total
    assert isinstance(total, float) and per_array.shape == (3,) and penalty > 0
    assert abs(float(per_array.sum()) - total) <= 1e-12 * total

    # a dict of named arrays, a generator, one array, a buffer object
    named = {"fc1.weight": weights[0], "fc1.bias": weights[1], "fc2.weight": weights[2]}
    assert l2fast.sum_squares(named, check_finite=True) == total
    assert l2fast.sum_squares(weights_one_by_one(weights)) == total
    assert l2fast.sum_squares(weights[1]) == float(per_array[1])
    assert l2fast.sum_squares([array.array("d", [3.0, 4.0])]) == 25.0

    # coupled L2 gradient and decoupled decay, in place
    l2fast.add_scaled_(grads, weights, lam / m, num_threads=None)
    l2fast.add_scaled_({k: g for k, g in zip(named, grads)}, named, lam / m)
    l2fast.scale_(weights, 1.0 - lr * lam / m, check_finite=True)
    before: float = l2fast.sum_squares_scale_(weights, np.float32(0.5))
    halves = l2fast.sum_squares_scale_(named, 2.0, per_array=True)
    assert_type(halves, npt.NDArray[np.float64])
    assert abs(float(halves.sum()) * 4 - before) <= 1e-12 * before

    # the same, validated once
    params = l2fast.ParamList(named)
    gradients = l2fast.ParamList(grads)
    size: int = params.size
    nbytes: int = params.nbytes
    names = params.names
    assert names is not None and names[0] == "fc1.weight"
    assert size == 64 * 32 + 64 + 640 and nbytes == 4 * size and len(params) == 3
    first: npt.NDArray[np.floating] = params[0]
    assert first is params.arrays[0] and [a.shape for a in params] == [(64, 32), (64,), (10, 64)]
    s = params.sum_squares()
    assert_type(s, float)
    assert_type(params.sum_squares(per_array=True), npt.NDArray[np.float64])
    params.scale_(0.5, num_threads=1)
    quarter = params.sum_squares_scale_(2.0)
    assert_type(quarter, float)
    assert quarter == s / 4 and params.sum_squares() == s  # halving and doubling are exact
    g = gradients.sum_squares()
    gradients.add_scaled_(params, -1.0)
    assert gradients.sum_squares() != g and params.sum_squares() == s

    # global norm and clipping
    norm: float = l2fast.global_norm(grads)
    assert abs(norm * norm - l2fast.sum_squares(grads)) <= 1e-12 * norm * norm
    before_clip: float = l2fast.clip_grad_norm_(grads, norm / 2, error_if_nonfinite=True)
    assert before_clip == norm and abs(gradients.global_norm() - norm / 2) <= 1e-5 * norm
    assert_type(gradients.clip_grad_norm_(1e30, eps=0.0, num_threads=1), float)
    # comm=None: this process alone (a communicator sums over ranks: docs/distributed.md)
    assert_type(l2fast.global_norm(grads, comm=None), float)
    assert_type(gradients.global_norm(comm=None), float)
    assert_type(l2fast.clip_grad_norm_(grads, 1e30, comm=None), float)

    # regularizer and conventions
    ws = [np.ones((4, 3), np.float32), np.ones(3, np.float32)]
    gs = [np.zeros((4, 3), np.float32), np.zeros(3, np.float32)]
    reg = l2fast.L2(0.5, scale="samples", m=2, exclude=l2fast.no_decay_1d)
    c: float = reg.coef()
    assert c == 0.25
    reg_penalty: float = reg.penalty(ws)
    assert reg_penalty == 0.125 * 12
    reg.grad_(gs, ws)
    assert float(gs[0][0, 0]) == 0.25 and float(gs[1][0]) == 0.0
    before_decay: float = reg.penalty_decay_(ws, 2.0)
    assert before_decay == reg_penalty and float(ws[0][0, 0]) == 0.5
    reg.decay_(ws, 2.0)
    ng_lam: float = l2fast.conventions.convert(5e-4, "torch_sgd", "ng", m=50_000)
    assert abs(ng_lam - 25.0) < 1e-12
    text: str = l2fast.conventions.table()
    assert "torch_adamw" in text

    # configuration
    config = l2fast.show_config(mode="dicts")
    assert isinstance(config["openmp_runtime"]["max_threads"], int)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert l2fast.show_config() is None
    assert "openmp_runtime:" in printed.getvalue()
    version: str = l2fast.__version__
    assert version == config["l2fast"]


if __name__ == "__main__":
    main()
