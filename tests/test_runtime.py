"""The parallel runtime (_pool.h) beside a busy process.

Another process keeps every core busy (l2fast.bench.load.busy_process, as
``python -m l2fast bench --under-load`` starts it).  Whatever the team's
helpers do then -- join late, not at all, or get descheduled holding an
item -- every result must be the one-thread result bit for bit, and every
in-place update must be applied exactly once.

The timing scenario of the runtime issue (default threads within 1.5x of
one thread under load) is marked slow: ``pytest -m slow tests/test_runtime.py``.
"""
import numpy as np
import pytest

import l2fast
from l2fast import _kernels
from l2fast.bench import load
from l2fast.bench.workloads import Workload, shipped_shapes

pytestmark = pytest.mark.skipif(not _kernels.build_info()["openmp"],
                                reason="a serial build has no team")


@pytest.fixture(scope="module")
def busy():
    with load.busy_process(settle_s=0.3) as p:
        yield p


def model(seed=1):
    """ResNet-50 at a third of its width: 2.9M float32 in 161 arrays, many items."""
    rng = np.random.default_rng(seed)
    shapes = load.narrow_shapes(shipped_shapes("resnet50"))
    return [rng.standard_normal(s).astype(np.float32) for _, s in shapes.params]


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_sums_under_load_are_the_one_thread_bits(busy, threads):
    arrays = model()
    one = l2fast.sum_squares(arrays, num_threads=1)
    one_per = l2fast.sum_squares(arrays, per_array=True, num_threads=1)
    one_exact = l2fast.sum_squares(arrays, reproducible=True, num_threads=1)
    exact = float(sum(np.dot(a.ravel().astype(np.float64), a.ravel().astype(np.float64))
                      for a in arrays))
    assert abs(one - exact) <= 1e-12 * exact
    before = _kernels.pool_stats()
    for _ in range(20):
        assert l2fast.sum_squares(arrays, num_threads=threads) == one
        assert np.array_equal(l2fast.sum_squares(arrays, per_array=True, num_threads=threads),
                              one_per)
        assert l2fast.sum_squares(arrays, reproducible=True, num_threads=threads) == one_exact
    after = _kernels.pool_stats()
    assert after["jobs"] - before["jobs"] == 60       # every call ran as a parallel job


@pytest.mark.parametrize("threads", [2, 4])
def test_updates_under_load_apply_once(busy, threads):
    arrays, grads = model(2), model(3)
    want_w = [a.astype(np.float64) for a in arrays]
    want_g = [g.astype(np.float64) for g in grads]
    for step in range(10):
        c, alpha = (0.5, 3.0) if step % 2 else (2.0, -0.25)
        l2fast.scale_(arrays, c, num_threads=threads)
        want_w = [w * c for w in want_w]
        l2fast.add_scaled_(grads, arrays, alpha, num_threads=threads)
        want_g = [(g + alpha * w.astype(np.float32).astype(np.float64))
                  .astype(np.float32).astype(np.float64) for g, w in zip(want_g, want_w)]
        want_w = [w.astype(np.float32).astype(np.float64) for w in want_w]
    for a, w in zip(arrays, want_w):
        assert np.array_equal(a, w.astype(np.float32))
    for g, w in zip(grads, want_g):
        assert np.array_equal(g, w.astype(np.float32))


def test_fused_pass_under_load(busy):
    arrays = model(4)
    ref = [a.copy() for a in arrays]
    s = l2fast.sum_squares_scale_(arrays, 0.75, num_threads=2)
    assert s == l2fast.sum_squares(ref, num_threads=1)
    for a, r in zip(arrays, ref):
        assert np.array_equal(a, (r.astype(np.float64) * 0.75).astype(np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["resnet50 / 3", "gpt2"])
def test_default_threads_cost_at_most_1_5x_one_thread_under_load(model_name):
    """The runtime issue's scenario: the busy process first, then each
    function's default call against its num_threads=1 call."""
    shapes = (load.narrow_shapes(shipped_shapes("resnet50")) if model_name != "gpt2"
              else shipped_shapes("gpt2"))
    wl = Workload(shapes, np.float32)
    with load.busy_process():
        times = load.time_default_vs_one(wl, load.FUNCTIONS, repeat=7)
    for f, (default, one) in times.items():
        assert default <= 1.5 * one, (f, default, one)
