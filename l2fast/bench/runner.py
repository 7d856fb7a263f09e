"""Running the comparisons: every case on every workload and thread count.

`run_workload` times one workload's cases and returns the run as a dict
(the ``runs`` entries of the --json report); `Benchmark` is one whole
``python -m l2fast bench``: the roof, then each model, dtype and thread
count, then (float32 and a 16-bit dtype) the 16-bit dtypes' share of
float32's GB/s timed in one run (`measure_shares`), then the
many-small-arrays comparison, then (with torch) the clipping comparison on
each model and on many small tensors.
"""
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

import l2fast

from .. import reference
from .cases import cases, clip_cases, small_array_cases
from .machine import (MIB, OtherLoad, last_level_cache, machine_description, thread_limits,
                      torch_version)
from .roof import measure_roof
from .timing import Progress, time_interleaved
from .workloads import (PATTERN, Workload, bytes_moved, footprint_bytes, roof_gbps,
                        small_shapes, small_tensor_shapes)


#: Untimed pause after each sample of a torch row whose calls are long (one a
#: sample), followed by one untimed call of the next row (timing.py): torch's
#: OpenMP threads spin for milliseconds after an op (l2fast right after
#: torch's _foreach_norm on GPT-2 in float16: 11.7 ms; 10.1 ms after a 5 ms
#: pause, as after 20 ms).
TORCH_SETTLE_S = 0.01


def _result(case, wl, median, samples, calls, error, numpy_times, roof, llc):
    """The --json entry of one case of a run (`numpy_times`: the baseline
    rows' times, NumPy's, or torch's where a function has no NumPy row)."""
    function = case.function
    pattern = PATTERN[function]
    moved = bytes_moved(function, wl.nbytes)
    footprint = footprint_bytes(function, wl.nbytes)
    baseline = next(iter(numpy_times.values()), None)
    gbps = moved / median / 1e9
    return {
        "function": function,
        "implementation": case.label,
        "key": case.key,
        "family": case.family,
        "legend": case.legend,
        "median_s": median,
        "min_s": min(samples),
        "samples_s": samples,
        "calls_per_sample": calls,
        "bytes": moved,
        "footprint_bytes": footprint,
        "fits_in_cache": bool(llc and footprint <= llc),
        "gbps": gbps,
        "roof_pattern": pattern,
        "roof_share": gbps / roof_gbps(roof, pattern) if roof else None,
        "speedup": baseline / median if baseline else None,
        "speedup_over": {label: t / median for label, t in numpy_times.items()},
        "rel_error": error,
    }


def _time_group(wl, group, threads, repeat, roof, llc):
    """The --json entries of the cases of one function, timed together."""
    runs, errors = [], []
    for case in group:
        wl.restore()
        fn = case.build(wl, threads)
        errors.append(reference.relative_error(fn(), wl.exact) if case.returns_sum else None)
        runs.append(fn)
    wl.restore()
    settle = [TORCH_SETTLE_S if case.family == "torch" else 0.0 for case in group]
    medians, samples, calls = time_interleaved(runs, repeat, settle=settle)
    base = "numpy" if any(c.family == "numpy" for c in group) else "torch"
    numpy_times = {c.label: m for c, m in zip(group, medians) if c.family == base}
    return [_result(case, wl, m, smp, k, err, numpy_times, roof, llc)
            for case, m, smp, k, err in zip(group, medians, samples, calls, errors)]


def run_workload(wl, case_list, threads, repeat, roof, llc, use_torch, progress=None):
    """Time every case of `case_list` on workload `wl` at `threads` threads.

    Parameters
    ----------
    wl : workloads.Workload
    case_list : list of cases.Case
    threads : int
    repeat : int
        Timed rounds; the median is reported.
    roof : dict or None
        The roof at `threads` threads (an entry of `roof.measure_roof`).
    llc : int or None
        Bytes of the last-level cache.
    use_torch : bool
        Limit torch's threads too.
    progress : timing.Progress or None

    Returns
    -------
    dict
        The run (see the --json format in docs/bench.md).
    """
    results = []
    with thread_limits(threads, use_torch) as blas_limited:
        for function in dict.fromkeys(c.function for c in case_list):
            group = [c for c in case_list if c.function == function]
            results += _time_group(wl, group, threads, repeat, roof, llc)
            if progress:
                progress.step(f"{wl.name} {wl.dtype} {threads}T {function}")
    return {
        "model": wl.name,
        "dtype": str(wl.dtype),
        "threads": threads,
        "n_arrays": len(wl),
        "n_elements": wl.size,
        "nbytes": wl.nbytes,
        "exact_sum_squares": wl.exact,
        "fits_in_cache": bool(llc and wl.nbytes <= llc),
        "blas_threads_limited": blas_limited,
        "results": results,
    }


#: The functions whose 16-bit speed `measure_shares` sets against float32's.
SHARE_FUNCTIONS = ("sum_squares", "scale_")
SIXTEEN_BIT = ("bfloat16", "float16")


def _rotated_medians(groups, rounds):
    """Median seconds of each callable of `groups` (one list of callables a
    function, one callable a dtype): each round calls every function's
    callables in turn, starting one further along each round, so that each
    dtype comes first (after the other function's calls) equally often and
    otherwise follows another dtype's call of the same function: no dtype
    always meets what one kind of pass leaves behind (dirty cache lines, or
    its own arrays still in the cache).  Unlike `time_interleaved`, one call
    a sample and no pauses."""
    for group in groups:
        for fn in group:
            fn()                                   # warm up
    samples = [[[] for _ in group] for group in groups]
    for r in range(rounds):
        for group, out in zip(groups, samples):
            for k in range(len(group)):
                j = (k + r) % len(group)
                t0 = time.perf_counter()
                group[j]()
                out[j].append(time.perf_counter() - t0)
    return [[statistics.median(s) for s in out] for out in samples]


def measure_shares(shapes, dtypes, threads, rounds, progress=None):
    """Each 16-bit dtype's GB/s as a share of float32's, in one run.

    l2fast's `sum_squares` and `scale_` on the model in float32 and in each
    16-bit dtype of `dtypes`, timed in the same rounds (`_rotated_medians`):
    the model sections of a run are minutes apart, and their ratio would
    measure how the machine changed in between as well.

    Returns
    -------
    dict
        The model, the thread count, the rounds and one row per function
        and dtype: median seconds, GB/s (bytes read, read + written by
        scale_) and the share of the float32 row's GB/s.
    """
    byname = {(c.function, c.key): c for c in cases(torch=False)}
    loads = [Workload(shapes, d, lean=True)
             for d in ["float32"] + [d for d in dtypes if d in SIXTEEN_BIT]]
    with thread_limits(threads, False):
        groups = [[byname[f, "l2fast"].build(wl, threads) for wl in loads]
                  for f in SHARE_FUNCTIONS]
        medians = _rotated_medians(groups, rounds)
    rows = []
    for function, group in zip(SHARE_FUNCTIONS, medians):
        gbps = [bytes_moved(function, wl.nbytes) / m / 1e9 for wl, m in zip(loads, group)]
        rows += [{"function": function, "dtype": str(wl.dtype), "median_s": m, "gbps": g,
                  "share_of_float32": g / gbps[0]} for wl, m, g in zip(loads, group, gbps)]
    if progress:
        progress.step(f"{shapes.name} 16-bit shares {threads}T")
    return {"model": shapes.name, "threads": threads, "rounds": rounds, "rows": rows}


@dataclass
class Settings:
    """What to run.

    Attributes
    ----------
    shapes : list of workloads.Shapes
    dtypes : list of str
    threads : list of int
    repeat : int
    roof_bytes : int
        Size of the roof buffer.
    torch : bool
        Time the torch peers.
    small : bool
        Run the many-small-arrays comparison.
    clip : bool
        Run the clipping comparison (only with `torch`).
    notes : list of str
        What the report should say about the settings.
    """

    shapes: list
    dtypes: list
    threads: list
    repeat: int
    roof_bytes: int
    torch: bool
    small: bool = True
    notes: list = field(default_factory=list)
    clip: bool = True


class Benchmark:
    """One run of the whole benchmark, step by step (each step returns its figures
    for the caller to print as they come).

    Parameters
    ----------
    settings : Settings
    """

    def __init__(self, settings):
        self.settings = s = settings
        self.machine = machine_description()
        self.others = OtherLoad()
        self.llc, self.llc_text = last_level_cache()
        self.notes = list(s.notes)
        if self.llc and s.roof_bytes <= self.llc:
            self.notes.append(
                f"the roof buffer ({s.roof_bytes / MIB:.0f} MiB) is not larger than the "
                f"last-level cache ({self.llc_text}): the roof is a cache figure, not memory.")
        self.cases = cases(torch=s.torch)
        self.small_cases = small_array_cases(torch=s.torch)
        self.clip_cases = clip_cases() if s.torch and s.clip else []
        n_groups = len(dict.fromkeys(c.function for c in self.cases))
        n_clip = len(dict.fromkeys(c.function for c in self.clip_cases))
        self.progress = Progress(3 * len(s.threads)
                                 + len(s.shapes) * len(s.dtypes) * len(s.threads) * n_groups
                                 + (len(s.threads) if s.small else 0)
                                 + (len(s.shapes) * len(s.threads) if self._shares_wanted() else 0)
                                 + (len(s.shapes) * len(s.dtypes) + 1) * len(s.threads) * n_clip)
        self.roof, self.runs, self.small_runs, self.clip_runs = [], [], [], []
        self.shares = []

    def roof_at(self, threads):
        """The roof entry of `threads` threads."""
        return next(e for e in self.roof if e["threads"] == threads)

    def measure_roof(self):
        """Measure the memory roof; returns it (a list, one entry per thread count)."""
        s = self.settings
        self.roof = measure_roof(s.threads, s.roof_bytes, max(3, min(s.repeat, 5)),
                                 self.progress)
        self.progress.close()
        return self.roof

    def model_runs(self):
        """Yield each model's run, per dtype and thread count, as it finishes."""
        s = self.settings
        for shapes in s.shapes:
            for dtype in s.dtypes:
                wl = Workload(shapes, dtype)
                for t in s.threads:
                    self.runs.append(run_workload(wl, self.cases, t, s.repeat, self.roof_at(t),
                                                  self.llc, s.torch, self.progress))
                    self.progress.close()
                    yield self.runs[-1]
                del wl

    def _shares_wanted(self):
        """Do the dtypes hold float32 and a 16-bit dtype (share_runs runs)?"""
        dtypes = self.settings.dtypes
        return "float32" in dtypes and any(d in SIXTEEN_BIT for d in dtypes)

    def share_runs(self):
        """Yield, per model and thread count, the 16-bit dtypes' share of
        float32's GB/s measured in one run (`measure_shares`; 3 × repeat
        rounds), when the dtypes hold float32 and a 16-bit dtype."""
        s = self.settings
        if not self._shares_wanted():
            return
        for shapes in s.shapes:
            for t in s.threads:
                self.shares.append(measure_shares(shapes, s.dtypes, t, 3 * s.repeat,
                                                  self.progress))
                self.progress.close()
                yield self.shares[-1]

    def small_array_runs(self):
        """Yield the many-small-arrays run of each thread count (none if not
        `settings.small`)."""
        s = self.settings
        if not s.small:
            return
        wl = Workload(small_shapes(), np.float32)
        for t in s.threads:
            self.small_runs.append(run_workload(wl, self.small_cases, t, s.repeat, None,
                                                self.llc, s.torch, self.progress))
            self.progress.close()
            yield self.small_runs[-1]

    def clipping_runs(self):
        """Yield (run, small) for the clipping comparison: each model, dtype and
        thread count (small False), then many small float32 tensors (small
        True); nothing without torch or with `settings.clip` off."""
        s = self.settings
        if not self.clip_cases:
            return
        workloads = [(shapes, dtype, False) for shapes in s.shapes for dtype in s.dtypes]
        for shapes, dtype, small in workloads + [(small_tensor_shapes(), "float32", True)]:
            wl = Workload(shapes, dtype)
            for t in s.threads:
                run = run_workload(wl, self.clip_cases, t, s.repeat,
                                   None if small else self.roof_at(t), self.llc, s.torch,
                                   self.progress)
                run["small"] = small
                self.clip_runs.append(run)
                self.progress.close()
                yield run, small
            del wl

    def finish(self):
        """End the run; returns the share of CPU time other processes took
        meanwhile (None where it cannot be told)."""
        self.progress.close()
        busy = self.others.share()
        self.machine["other_processes_cpu_share"] = busy
        if busy is not None and busy > 0.05:
            self.notes.append(f"other processes used {busy:.0%} of the CPU time during the run.")
        return busy

    def report(self):
        """Every figure, as the --json report."""
        s = self.settings
        return {
            "l2fast": l2fast.__version__,
            "machine": self.machine,
            "settings": {
                "models": [x.name for x in s.shapes],
                "dtypes": s.dtypes,
                "threads": s.threads,
                "repeat": s.repeat,
                "roof_buffer_bytes": int(s.roof_bytes),
                "torch": torch_version() if s.torch else None,
                "numpy": np.__version__,
            },
            "notes": self.notes,
            "roof": self.roof,
            "runs": self.runs,
            "dtype_shares": self.shares,
            "small_arrays": self.small_runs,
            "clipping": self.clip_runs,
        }
