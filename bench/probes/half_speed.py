"""Paired medians on GPT-2 shapes, 2 threads: sum_squares and scale_ in
float32, bfloat16 and float16, timed alternately in one process; GB/s and
each 16-bit row's share of the float32 row's GB/s.  scale_ alternates its
factor between c and 1/c (default 0.999).

    python bench/probes/half_speed.py [rounds] [c]
"""
import sys
import time

import ml_dtypes
import numpy as np

import l2fast
from l2fast import models

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 11
shapes = [s for _, s in models.shapes("gpt2")]
rng = np.random.default_rng(0)
base = [(rng.standard_normal(s, dtype=np.float32) * np.float32(0.02)) for s in shapes]
dtypes = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
ws = {k: [a.astype(t) for a in base] for k, t in dtypes.items()}
n = sum(a.size for a in base)
flip = [float(sys.argv[2]) if len(sys.argv) > 2 else 0.999]


def scale(w):
    flip[0] = 1 / flip[0]
    l2fast.scale_(w, flip[0], num_threads=2)


fns = {}
for k, w in ws.items():
    fns[("sum_squares", k)] = (lambda w=w: l2fast.sum_squares(w, num_threads=2), 1)
    fns[("scale_", k)] = (lambda w=w: scale(w), 2)
times = {key: [] for key in fns}
for _ in range(rounds + 1):                       # the first round warms up
    for key, (fn, _) in fns.items():
        t = time.perf_counter()
        fn()
        times[key].append(time.perf_counter() - t)
gbs = {}
for (name, dt), ts in times.items():
    med = float(np.median(ts[1:]))
    gbs[name, dt] = n * np.dtype(dtypes[dt]).itemsize * fns[name, dt][1] / med / 1e9
    share = gbs[name, dt] / gbs[name, "float32"] if dt != "float32" else 1.0
    print(f"{name:12s} {dt:9s} {med * 1e3:7.2f} ms  {gbs[name, dt]:5.1f} GB/s  "
          f"{share:5.0%} of float32's GB/s")
