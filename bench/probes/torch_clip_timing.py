"""l2fast against torch on 2,000 torch grads of 64x32 and on GPT-2 as Parameters:
the norm and clipping, each pair of calls alternated, medians of the times and
of the per-pair ratios; `python bench/probes/torch_clip_timing.py [pairs]`."""
import statistics
import sys
import time

import torch

import l2fast
import l2fast.torch
from l2fast import models


_max_norm = [1e-3]


def shrink():
    """The next max_norm, 0.999 times the last: every clipping call clips
    (with a fixed max_norm the norm left by one call gives the next a
    coefficient of about 1, and l2fast skips the scaling when it is >= 1)."""
    _max_norm[0] *= 0.999
    return _max_norm[0]


def paired(a, b, pairs):
    """Median ms of a and of b, called alternately, and the median of b/a."""
    ta, tb = [], []
    for k in range(pairs):  # which goes first alternates too
        for f, ts in ((a, ta), (b, tb))[::1 if k % 2 else -1]:
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
    ratio = statistics.median(y / x for x, y in zip(ta, tb))
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3, ratio


def report(name, a, b, pairs):
    ma, mb, r = paired(a, b, pairs)
    print(f"{name:58s} {ma:8.3f} ms {mb:8.3f} ms  {r:5.2f}x")


def main(pairs=101):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 32)) for _ in range(2000)]
    for p in params:
        p.grad = torch.randn(64, 32) * 0.01
    grads = [p.grad for p in params]
    views = [g.numpy() for g in grads]
    print(f"{'2,000 x 64x32, 2 threads: l2fast vs':58s} {'l2fast':>11s} {'peer':>11s}  ratio")
    report("sum_squares(torch grads) vs torch._foreach_norm",
           lambda: l2fast.sum_squares(grads), lambda: torch._foreach_norm(grads), pairs)
    report("sum_squares(torch grads) vs sum_squares(NumPy views)",
           lambda: l2fast.sum_squares(grads), lambda: l2fast.sum_squares(views), pairs)
    report("l2fast.torch.get_total_norm vs torch get_total_norm",
           lambda: l2fast.torch.get_total_norm(grads),
           lambda: torch.nn.utils.get_total_norm(grads), pairs)
    report("l2fast.torch.clip_grad_norm_ vs torch clip_grad_norm_",
           lambda: l2fast.torch.clip_grad_norm_(params, shrink()),
           lambda: torch.nn.utils.clip_grad_norm_(params, shrink()), pairs)
    report("l2fast.torch.clip_grad_norm_ vs torch (foreach=False)",
           lambda: l2fast.torch.clip_grad_norm_(params, shrink()),
           lambda: torch.nn.utils.clip_grad_norm_(params, shrink(), foreach=False), pairs)
    shapes = [s for _, s in models.shapes("gpt2")]
    ps = [torch.nn.Parameter(torch.randn(*s) * 0.02) for s in shapes]
    for p in ps:
        p.grad = torch.randn(*p.shape) * 0.01
    report("GPT-2: l2fast.torch.clip_grad_norm_ vs torch",
           lambda: l2fast.torch.clip_grad_norm_(ps, shrink()),
           lambda: torch.nn.utils.clip_grad_norm_(ps, shrink()), max(5, pairs // 10))


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
