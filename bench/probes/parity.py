"""Quiet parity: l2fast on a model's arrays against NumPy moving the same bytes.

Paired, alternating medians in one process (python bench/probes/parity.py
[model] [repeat]): at 1 and 2 threads, each l2fast function on the model's
float32 arrays (a ParamList) beside NumPy on one flat buffer of the same
size -- np.dot for the read, np.multiply(out=) for the updates, np.add(out=)
for add_scaled_ -- at 2 threads two Python threads on its halves with BLAS
held to one thread, and torch's _foreach_mul_ for scale_.
"""
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

import l2fast
from l2fast.bench.timing import time_interleaved
from l2fast.bench.workloads import Workload, shipped_shapes

model = sys.argv[1] if len(sys.argv) > 1 else "gpt2"
repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 11
wl = Workload(shipped_shapes(model), np.float32)
pl, gl = l2fast.ParamList(wl.params), l2fast.ParamList(wl.grads)
n = wl.size
flat, flat2 = np.full(n, 0.5, np.float32), np.full(n, 0.25, np.float32)
try:
    import torch
    tw = [torch.from_numpy(a) for a in wl.params]
except ImportError:
    torch = None
pool = ThreadPoolExecutor(2)


def split(t, fn, *arrays):
    if t == 1:
        return lambda: fn(*arrays)
    parts = list(zip(*(np.array_split(a, t) for a in arrays)))
    return lambda: list(pool.map(lambda p: fn(*p), parts))


with threadpool_limits(limits=1, user_api="blas"):
    for t in (1, 2):
        if torch is not None:
            torch.set_num_threads(t)
        pairs = {
            "sum_squares": (lambda: pl.sum_squares(num_threads=t),
                            split(t, lambda x: np.dot(x, x), flat)),
            "scale_": (lambda: pl.scale_(1.0, num_threads=t),
                       split(t, lambda x: np.multiply(x, 1.0, out=x), flat)),
            "sum_squares_scale_": (lambda: pl.sum_squares_scale_(1.0, num_threads=t),
                                   split(t, lambda x: np.multiply(x, 1.0, out=x), flat)),
            "add_scaled_": (lambda: l2fast.add_scaled_(gl, pl, 0.0, num_threads=t),
                            split(t, lambda x, y: np.add(x, y, out=x), flat, flat2)),
        }
        runs = [f for pair in pairs.values() for f in pair]
        med, _, _ = time_interleaved(runs, repeat)
        if torch is not None:  # apart: torch's OpenMP threads spin on after a call,
            # and would slow whichever call came next
            tm, _, _ = time_interleaved([pairs["scale_"][0],
                                         lambda: torch._foreach_mul_(tw, 1.0)], repeat)
        for i, name in enumerate(pairs):
            a, b = med[2 * i], med[2 * i + 1]
            print(f"{model} {t}T {name:20s} l2fast {a*1e3:7.2f} ms  NumPy {b*1e3:7.2f} ms  "
                  f"l2fast/NumPy speed {b/a:5.3f}", flush=True)
        if torch is not None:
            print(f"{model} {t}T scale_ {tm[0]*1e3:7.2f} ms vs torch _foreach_mul_ "
                  f"{tm[1]*1e3:7.2f} ms  speed {tm[1]/tm[0]:5.3f}", flush=True)
