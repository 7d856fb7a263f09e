"""l2fast against NumPy on the same memory, on 4 KiB pages and on huge pages.

Two float32 buffers of GPT-2's size (124M elements), one advised
MADV_NOHUGEPAGE (4 KiB pages, as torch's allocations and NumPy's arrays
under 4 MiB get), one MADV_HUGEPAGE (2 MiB pages, as NumPy's large arrays
get); on each, paired alternating medians: `sum_squares` against `np.dot`
and `scale_` against `np.multiply(out=)`, at 1 thread and at 2 (NumPy: two
Python threads on the halves, BLAS held to one thread).  Then a GPT-2 made
of torch tensors (torch's own allocations): l2fast against NumPy's loop over
the same tensors' memory.  Prints NumPy's time / l2fast's time.

    python bench/probes/pages.py [repeat]
"""
import mmap
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

import l2fast
from l2fast import models
from l2fast.bench.timing import time_interleaved

from _advised import advised_bytes

repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 7
n = sum(int(np.prod(s)) for _, s in models.shapes("gpt2"))
pool = ThreadPoolExecutor(2)


def buffer(advice):
    """n float32 (0.5) on a 2 MiB boundary, advised before the first touch."""
    a = advised_bytes(n * 4, advice).view(np.float32)
    a[:] = 0.5
    return a


def halves(fn, a):
    """fn on the two halves of `a`, from two Python threads."""
    parts = [a[:n // 2], a[n // 2:]]
    return lambda: list(pool.map(fn, parts))


def paired(runs):
    """Median seconds of each callable, timed in alternating rounds."""
    return time_interleaved(runs, repeat, min_sample=0)[0]


def report(label, a, b):
    """One line: l2fast's time a, NumPy's time b, and b / a."""
    print(f"{label:34s} l2fast {a * 1e3:6.1f} ms  NumPy {b * 1e3:6.1f} ms  "
          f"NumPy/l2fast {b / a:4.2f}", flush=True)


with threadpool_limits(1, "blas"):
    for name, advice in (("4 KiB pages", mmap.MADV_NOHUGEPAGE),
                         ("huge pages", mmap.MADV_HUGEPAGE)):
        a = buffer(advice)
        for t in (1, 2):
            one = t == 1
            runs = [lambda: l2fast.sum_squares(a, num_threads=t),
                    (lambda: np.dot(a, a)) if one else halves(lambda h: np.dot(h, h), a),
                    lambda: l2fast.scale_(a, 1.0, num_threads=t),
                    (lambda: np.multiply(a, 1.0, out=a)) if one
                    else halves(lambda h: np.multiply(h, 1.0, out=h), a)]
            m = paired(runs)
            report(f"{name}, {t}T, sum_squares / np.dot", m[0], m[1])
            report(f"{name}, {t}T, scale_ / np.multiply", m[2], m[3])
        del a, runs  # the closures hold views of the buffer
    try:
        import torch
    except ImportError:
        sys.exit()
    torch.manual_seed(0)
    ts = [torch.randn(s) * 0.02 for _, s in models.shapes("gpt2")]
    arrays = [x.numpy().ravel() for x in ts]
    m = paired([lambda: l2fast.sum_squares(ts, num_threads=1),
                lambda: [np.dot(x, x) for x in arrays],
                lambda: l2fast.scale_(ts, 1.0, num_threads=1),
                lambda: [np.multiply(x, 1.0, out=x) for x in arrays]])
    report("torch tensors, 1T, sum_squares / dot loop", m[0], m[1])
    report("torch tensors, 1T, scale_ / multiply loop", m[2], m[3])
