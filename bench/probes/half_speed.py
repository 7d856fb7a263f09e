"""Paired medians on GPT-2 shapes, 2 threads: sum_squares and scale_ in
float32, bfloat16 and float16, timed alternately in one process; GB/s and
each 16-bit row's share of the float32 row's GB/s.  scale_ alternates its
factor between c and 1/c (default 0.999).

memory says where the arrays live: "numpy" (default) gives each its own
NumPy allocation, so NumPy's page policy applies (huge pages for arrays of
4 MiB or more: ~77 % of float32 GPT-2's bytes, ~56 % of a 16-bit GPT-2's);
"4k" and "huge" make each dtype's arrays views of one buffer advised
MADV_NOHUGEPAGE or MADV_HUGEPAGE, each array 16 bytes past a 64-byte
boundary (as NumPy's large arrays start), so that every dtype reads the
same kind of memory.

    python bench/probes/half_speed.py [rounds] [c] [numpy|4k|huge]
"""
import mmap
import sys
import time

import ml_dtypes
import numpy as np

import l2fast
from l2fast import models

from _advised import advised_bytes

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 11
shapes = [s for _, s in models.shapes("gpt2")]
rng = np.random.default_rng(0)
base = [(rng.standard_normal(s, dtype=np.float32) * np.float32(0.02)) for s in shapes]
dtypes = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
memory = sys.argv[3] if len(sys.argv) > 3 else "numpy"


def views(arrays, advice):
    """Copies of arrays as views of one buffer advised before its first touch."""
    sizes = [(a.nbytes + 63) // 64 * 64 for a in arrays]
    buf = advised_bytes(sum(sizes) + 64, advice)
    out, at = [], 16
    for a, size in zip(arrays, sizes):
        v = buf[at:at + a.nbytes].view(a.dtype).reshape(a.shape)
        v[...] = a
        out.append(v)
        at += size
    return out


ws = {k: [a.astype(t) for a in base] for k, t in dtypes.items()}
if memory != "numpy":
    advice = {"4k": mmap.MADV_NOHUGEPAGE, "huge": mmap.MADV_HUGEPAGE}[memory]
    ws = {k: views(w, advice) for k, w in ws.items()}
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
