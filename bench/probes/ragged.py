"""A ragged list against one buffer: where the arrays lie changes the speed.

2,000 float32 arrays of 64x32 (8 KiB) three ways -- torch's allocations
(`torch.randn(64, 32) * 0.01`, so the arrays lie 8 or 16 KiB apart), views
8 KiB apart in one NumPy buffer (each followed by 8 KiB nobody reads), and
one flat buffer of the same 4,096,000 elements -- each kept in a ParamList;
median ms of `sum_squares` and `scale_` at 1 and 2 threads.  The loops
prefetch a few KiB ahead; at the end of an array they ask for the start of
the next array of the same item (l2f_piece.dst_then), not for the bytes
that follow.

    python bench/probes/ragged.py [calls]
"""
import statistics
import sys
import time

import numpy as np
import torch

import l2fast


def median_ms(fn, calls):
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(calls=301):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tensors = [torch.randn(64, 32) * 0.01 for _ in range(2000)]
    spaced = rng.standard_normal(2000 * 4096).astype(np.float32)
    flat = rng.standard_normal(2000 * 2048).astype(np.float32)
    lists = {"torch's allocations": l2fast.ParamList([t.numpy() for t in tensors]),
             "8 KiB apart": l2fast.ParamList([spaced[k * 4096:k * 4096 + 2048].reshape(64, 32)
                                              for k in range(2000)]),
             "one buffer": l2fast.ParamList([flat])}
    for nt in (1, 2):
        for name, pl in lists.items():
            s = median_ms(lambda: pl.sum_squares(num_threads=nt), calls)
            c = median_ms(lambda: pl.scale_(1.0001, num_threads=nt), calls)
            print(f"{nt}T {name:20s} sum_squares {s:.3f} ms  scale_ {c:.3f} ms")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
