"""Timing: interleaved rounds of several callables, and a progress bar."""
import math
import statistics
import sys
import time

#: A timed sample lasts at least this long: fast calls are repeated within it.
MIN_SAMPLE_S = 2e-3


def time_interleaved(runs, repeat, min_sample=MIN_SAMPLE_S, settle=None):
    """Median seconds per call of each callable, timed in interleaved rounds.

    Each callable is called once to warm up and once to estimate its cost;
    then `repeat` rounds time every callable in turn, so slow drifts of the
    machine hit all of them alike.  A call shorter than `min_sample` is
    repeated within a sample.  ``settle[i]`` seconds (untimed) follow each
    sample of callable i when its calls are long (one a sample), then one
    untimed call of the next callable: torch's OpenMP threads spin for
    milliseconds after an op and would slow whichever call came next.  Short
    calls go without: a pause costs the next sample its warm caches and
    threads, more than the spin of a short op costs it.

    Returns
    -------
    medians : list of float
        Seconds per call, one per callable.
    samples : list of list of float
        Every sample's seconds per call.
    calls : list of int
        Calls per sample.
    """
    calls = []
    for fn in runs:
        fn()
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        calls.append(1 if t >= min_sample else min(100_000, math.ceil(min_sample / max(t, 1e-8))))
    samples = [[] for _ in runs]
    settle = settle or [0.0] * len(runs)
    for _ in range(repeat):
        for i, (fn, k, out) in enumerate(zip(runs, calls, samples)):
            if settle[i - 1] and calls[i - 1] == 1:  # then one untimed call wakes the threads
                time.sleep(settle[i - 1])
                fn()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            out.append((time.perf_counter() - t0) / k)
    return [statistics.median(s) for s in samples], samples, calls


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal.

    Parameters
    ----------
    total : int
        Steps to the end.
    enabled : bool or None
        Draw it; None: when stderr is a terminal.
    """

    def __init__(self, total, enabled=None):
        self.total = max(total, 1)
        self.done = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def step(self, label):
        """Count one step done and redraw, `label` saying what it was."""
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // self.total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                         f"{self.done}/{self.total} {label[:40]:<40}")
        sys.stderr.flush()

    def close(self):
        """Erase the bar (before a table is printed)."""
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()
