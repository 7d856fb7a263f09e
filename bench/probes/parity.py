"""Quiet parity: l2fast on a model's arrays against NumPy moving the same bytes.

Paired, alternating medians in one process (python bench/probes/parity.py
[model] [repeat]): at 1 and 2 threads, each l2fast function on the model's
float32 arrays (a ParamList) beside NumPy on one flat buffer of the same
size -- np.dot for the read, np.multiply(out=) for the updates, np.add(out=)
for add_scaled_ -- at 2 threads two Python threads on its halves with BLAS
held to one thread, and torch's _foreach_mul_ for scale_.

Each function is timed twice: on the model's own arrays (as a user holds
them), and on views of NumPy's flat buffer (the same memory as NumPy's
call).  The model's arrays are separate allocations, many of them on 4 KiB
pages (NumPy asks for huge pages only for its allocations of 4 MiB or more,
and only for their 2 MiB-aligned interior): streaming over 4 KiB pages
costs every library 10-40 % on a 2-vCPU AVX-512 Xeon, so the first ratio mixes the
memory into the comparison and the second does not.
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


def views(buf):
    """The model's shapes as views of `buf`, one after another."""
    out, o = [], 0
    for a in wl.params:
        out.append(buf[o:o + a.size].reshape(a.shape))
        o += a.size
    return l2fast.ParamList(out)


pv, gv = views(flat), views(flat2)
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
        rows = {
            "sum_squares": (lambda p=pl: p.sum_squares(num_threads=t),
                            split(t, lambda x: np.dot(x, x), flat),
                            lambda p=pv: p.sum_squares(num_threads=t)),
            "scale_": (lambda p=pl: p.scale_(1.0, num_threads=t),
                       split(t, lambda x: np.multiply(x, 1.0, out=x), flat),
                       lambda p=pv: p.scale_(1.0, num_threads=t)),
            "sum_squares_scale_": (lambda p=pl: p.sum_squares_scale_(1.0, num_threads=t),
                                   split(t, lambda x: np.multiply(x, 1.0, out=x), flat),
                                   lambda p=pv: p.sum_squares_scale_(1.0, num_threads=t)),
            "add_scaled_": (lambda g=gl, p=pl: l2fast.add_scaled_(g, p, 0.0, num_threads=t),
                            split(t, lambda x, y: np.add(x, y, out=x), flat, flat2),
                            lambda g=gv, p=pv: l2fast.add_scaled_(g, p, 0.0, num_threads=t)),
        }
        runs = [f for row in rows.values() for f in row]
        med, _, _ = time_interleaved(runs, repeat)
        if torch is not None:  # apart, with a pause after torch's calls: its OpenMP
            # threads spin on after a call, and would slow whichever call came next
            tm, _, _ = time_interleaved([rows["scale_"][0],
                                         lambda: torch._foreach_mul_(tw, 1.0)], repeat,
                                        settle=[0.0, 0.01])
        for i, name in enumerate(rows):
            a, b, v = med[3 * i], med[3 * i + 1], med[3 * i + 2]
            print(f"{model} {t}T {name:20s} l2fast {a*1e3:7.2f} ms  NumPy {b*1e3:7.2f} ms  "
                  f"l2fast/NumPy speed {b/a:5.3f}   on NumPy's buffer {v*1e3:7.2f} ms  "
                  f"speed {b/v:5.3f}", flush=True)
        if torch is not None:
            print(f"{model} {t}T scale_ {tm[0]*1e3:7.2f} ms vs torch _foreach_mul_ "
                  f"{tm[1]*1e3:7.2f} ms  speed {tm[1]/tm[0]:5.3f}", flush=True)
