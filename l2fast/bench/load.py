"""Under load (``python -m l2fast bench --under-load``): each function's default-threads call against its one-thread call,
quiet and beside a busy process.

``python -m l2fast bench --under-load`` times, for every function, the call
with the default thread count and the same call with ``num_threads=1``,
alternating, first on a quiet machine and then while another process keeps
every core busy -- an l2fast process summing four 1000x1000 float32 arrays
in a loop with its default threads, as several training processes on one
box, a hyperparameter sweep or data-loader workers do.  A parallel runtime
that busy-waits on descheduled threads makes the default call many times
slower than the one-thread call there; l2fast's should cost at most a
little more.

Each sample is the mean time per call over at least `MIN_SAMPLE_S` (calls
repeated within it), so that it averages over scheduler time slices; the
figure is the median of the samples.
"""
import contextlib
import subprocess
import sys
import time

import numpy as np

import l2fast

from .timing import time_interleaved
from .workloads import FACTOR, Shapes, Workload, alternating, shipped_shapes

#: The busy process: l2fast's default team summing 16 MB in a loop.
BUSY_SCRIPT = """\
import sys, numpy as np, l2fast
a = [np.ones((1000, 1000), np.float32) for _ in range(4)]
sys.stdout.write("ready\\n"); sys.stdout.flush()
while True:
    l2fast.sum_squares(a)
"""

#: A sample lasts at least this long (several scheduler time slices).
MIN_SAMPLE_S = 0.05

FUNCTIONS = ("sum_squares", "scale_", "sum_squares_scale_", "add_scaled_")


def narrow_shapes(shapes, divisor=3):
    """`shapes` with every dimension of 16 or more divided by `divisor` (rounded up):
    ResNet-50 at a third of its width is 2.9M elements in 161 arrays."""
    params = tuple((n, tuple(-(-d // divisor) if d >= 16 else d for d in s))
                   for n, s in shapes.params)
    return Shapes(f"{shapes.name} / {divisor}", params)


def default_models():
    """The two models of the table: ResNet-50 at a third of its width, and GPT-2."""
    return [narrow_shapes(shipped_shapes("resnet50")), shipped_shapes("gpt2")]


@contextlib.contextmanager
def busy_process(script=BUSY_SCRIPT, settle_s=1.0):
    """Run `script` in another Python process for the duration of the block."""
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    try:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("the busy process did not start")
        time.sleep(settle_s)
        yield p
    finally:
        p.kill()
        p.wait()


def _calls(wl):
    """{function: fn(threads)} on one workload, each on ParamLists (validated
    once, so that the ratio is the kernels' own); in-place calls alternate
    their factor (or sign) so that the values stay bounded."""
    pl, gl = l2fast.ParamList(wl.params), l2fast.ParamList(wl.grads)
    factor, factor2, sign = (alternating(FACTOR, 1 / FACTOR), alternating(FACTOR, 1 / FACTOR),
                             alternating(1.0, -1.0))
    return {
        "sum_squares": lambda t: pl.sum_squares(num_threads=t),
        "scale_": lambda t: pl.scale_(factor(), num_threads=t),
        "sum_squares_scale_": lambda t: pl.sum_squares_scale_(factor2(), num_threads=t),
        "add_scaled_": lambda t: gl.add_scaled_(pl, sign(), num_threads=t),
    }


def time_default_vs_one(wl, functions, repeat, threads=None):
    """{function: (default s, one-thread s)}: per-call times, interleaved."""
    calls = _calls(wl)
    runs = []
    for f in functions:
        runs += [lambda f=f: calls[f](threads), lambda f=f: calls[f](1)]
    medians, _, _ = time_interleaved(runs, repeat, min_sample=MIN_SAMPLE_S)
    return {f: (medians[2 * i], medians[2 * i + 1]) for i, f in enumerate(functions)}


def measure_under_load(models=None, functions=FUNCTIONS, repeat=7, threads=None,
                       script=BUSY_SCRIPT):
    """Quiet, then beside a busy process: each function's default and one-thread times.

    Returns
    -------
    list of dict
        One entry per model: ``{"model", "size", "quiet": {f: (default, one)},
        "loaded": {f: (default, one)}}``, times in seconds per call.
    """
    out = []
    for shapes in models or default_models():
        wl = Workload(shapes, np.float32)
        entry = {"model": shapes.name, "size": shapes.size,
                 "quiet": time_default_vs_one(wl, functions, repeat, threads)}
        with busy_process(script):
            entry["loaded"] = time_default_vs_one(wl, functions, repeat, threads)
        out.append(entry)
    return out


def format_under_load(entries, threads):
    """The --under-load table: per function, default and one-thread times and their ratio."""
    lines = [f"Under load: default threads ({threads}) against num_threads=1, float32, "
             "mean time per call (median of samples of >= 50 ms)",
             "busy process: l2fast.sum_squares on 4 x 1000x1000 float32 in a loop, default "
             "threads, started first"]
    for e in entries:
        lines.append("")
        lines.append(f"{e['model']} ({e['size'] / 1e6:.1f}M elements)")
        lines.append(f"{'function':<20} {'quiet default':>14} {'quiet 1T':>10} {'ratio':>6}"
                     f"   {'loaded default':>14} {'loaded 1T':>10} {'ratio':>6}")
        for f, (qd, q1) in e["quiet"].items():
            ld, l1 = e["loaded"][f]
            lines.append(f"{f:<20} {qd * 1e3:>11.3f} ms {q1 * 1e3:>7.3f} ms {qd / q1:>6.2f}"
                         f"   {ld * 1e3:>11.3f} ms {l1 * 1e3:>7.3f} ms {ld / l1:>6.2f}")
    return "\n".join(lines)

