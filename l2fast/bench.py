"""python -m l2fast bench: l2fast beside NumPy (and torch), and this machine's memory roof.

For each model (ResNet-50 float32 by default) and thread count, every
function of l2fast is timed beside the NumPy loop a user would otherwise
write, and beside torch's ``_foreach`` functions when torch is installed.
The table gives each one's median time, its throughput in GB/s (bytes read +
written), its share of the memory roof, its speedup over NumPy and, for the
functions that return a sum of squares, its relative error against an
extended-precision reference.

The memory roof is measured in the same run: a streaming read, an in-place
update and a two-input update (``d += s``) of a buffer larger than the
last-level cache, each timed both with l2fast on the single buffer and with
NumPy on equal slices in one Python thread per OpenMP thread; the fastest
run of either is the roof.

Run ``python -m l2fast bench --help`` for the options.  The comparisons
themselves are defined in `l2fast._bench_cases`, which the pytest-benchmark
suite in bench/ uses too.
"""
import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import l2fast

from . import _bench_cases as bc
from . import _kernels
from ._config import config

MIB = 1 << 20

#: Size in pixels of one panel of --plot (one per model and thread count).
PANEL_PX = (640, 400)
_DPI = 100
_LEGEND_PX = 40

#: A timed sample lasts at least this long: fast calls are repeated within it.
MIN_SAMPLE_S = 2e-3

ROOF_ENV = "L2FAST_BENCH_ROOF_MIB"

_ROOF_LABELS = {
    "read": "streaming read",
    "update": "in-place update (read + write)",
    "add": "d += s (2 reads + 1 write)",
}


# ---------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------

def _parse_size(text):
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def last_level_cache():
    """(bytes, description) of the largest data cache of CPU 0, read from sysfs
    or sysconf; (None, "unknown") when neither tells."""
    best = None
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            if not entry.startswith("index"):
                continue
            with open(f"{base}/{entry}/level") as f:
                level = int(f.read())
            with open(f"{base}/{entry}/type") as f:
                kind = f.read().strip()
            with open(f"{base}/{entry}/size") as f:
                size = _parse_size(f.read())
            if kind != "Instruction" and (best is None or (level, size) > best[:2]):
                best = (level, size)
    except (OSError, ValueError):
        best = None
    if best is not None:
        return best[1], f"L{best[0]}, {best[1] / MIB:.4g} MiB"
    for level in (3, 2):
        try:
            size = os.sysconf(f"SC_LEVEL{level}_CACHE_SIZE")
        except (ValueError, OSError):
            continue
        if size and size > 0:
            return size, f"L{level}, {size / MIB:.4g} MiB"
    return None, "unknown"


def available_memory():
    """Bytes of memory available to a new allocation, or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description():
    """What the numbers were measured on (goes into --json)."""
    llc, llc_text = last_level_cache()
    total = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cpu": _cpu_name(),
        "logical_cpus": os.cpu_count(),
        "last_level_cache_bytes": llc,
        "last_level_cache": llc_text,
        "memory_bytes": total,
        "load_average_1min": _load_average(),
        "l2fast_config": config(),
    }


def default_roof_bytes():
    """Size of the roof buffer: twice the last-level cache (1 GiB if unknown),
    at least 64 MiB, and at most a quarter of the available memory."""
    llc, _ = last_level_cache()
    size = 2 * llc if llc else 1 << 30
    size = max(size, 64 * MIB)
    avail = available_memory()
    if avail:
        size = min(size, avail // 4)
    return size


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def thread_limits(threads, use_torch):
    """Limit NumPy's BLAS (with threadpoolctl, when installed) and torch to `threads`.

    Yields True when the BLAS limit could be applied."""
    with contextlib.ExitStack() as stack:
        limited = False
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            stack.enter_context(threadpool_limits(limits=threads, user_api="blas"))
            limited = True
        if use_torch:
            import torch
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, before)
        yield limited


def time_interleaved(runs, repeat, min_sample=MIN_SAMPLE_S):
    """Median seconds per call of each callable, timed in interleaved rounds.

    Each callable is called once to warm up and once to estimate its cost;
    then `repeat` rounds time every callable in turn, so slow drifts of the
    machine hit all of them alike.  A call shorter than `min_sample` is
    repeated within a sample.  Returns (medians, samples, calls_per_sample).
    """
    calls = []
    for fn in runs:
        fn()
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        calls.append(1 if t >= min_sample else min(100_000, math.ceil(min_sample / max(t, 1e-8))))
    samples = [[] for _ in runs]
    for _ in range(repeat):
        for fn, k, out in zip(runs, calls, samples):
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            out.append((time.perf_counter() - t0) / k)
    return [statistics.median(s) for s in samples], samples, calls


# ---------------------------------------------------------------------------
# The memory roof
# ---------------------------------------------------------------------------

def _split_runner(pool, threads, fn, *arrays):
    """fn applied to `threads` equal slices of the arrays, one Python thread each
    (NumPy releases the GIL in these loops)."""
    if threads == 1:
        return lambda: fn(*arrays)
    parts = list(zip(*(np.array_split(a, threads) for a in arrays)))
    return lambda: list(pool.map(lambda p: fn(*p), parts))


def _alternate(f, g):
    state = [False]

    def run(*args):
        state[0] = not state[0]
        return (f if state[0] else g)(*args)
    return run


def measure_roof(threads, nbytes, repeat, progress=None):
    """This machine's memory roof, in GB/s, for every thread count.

    Parameters
    ----------
    threads : list of int
    nbytes : int
        Size of the float32 buffer streamed over; to measure memory rather
        than cache it must be larger than the last-level cache.
    repeat : int
        Timed rounds (median).

    Returns
    -------
    list of dict
        One per thread count: for each pattern ("read", "update", "add") the
        roof in GB/s, which implementation reached it, and every candidate.

    Notes
    -----
    A roof is a ceiling: each candidate is credited with its fastest run
    (the functions themselves are reported by their medians), and the roof
    is the fastest candidate.
    """
    n = max(nbytes // 4, 4096)
    buf = np.empty(n, np.float32)
    buf.fill(1.0)                   # touch every page before timing
    # d and s: two halves, 33 cache lines apart modulo 4 KiB, so that their
    # addresses do not alias in the cache sets and load/store buffers
    gap = 528
    half = (n - gap) // 2
    d, s = buf[:half], buf[half + gap:2 * half + gap]
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    out = []
    for t in threads:
        pool = ThreadPoolExecutor(t) if t > 1 else None
        scale = _alternate(lambda: l2fast.scale_(buf, bc.FACTOR, num_threads=t),
                           lambda: l2fast.scale_(buf, 1 / bc.FACTOR, num_threads=t))
        add = _alternate(lambda: l2fast.add_scaled_(d, s, 1.0, num_threads=t),
                         lambda: l2fast.add_scaled_(d, s, -1.0, num_threads=t))
        np_mul = _alternate(lambda x: np.multiply(x, bc.FACTOR, out=x),
                            lambda x: np.multiply(x, 1 / bc.FACTOR, out=x))
        np_add = _alternate(lambda x, y: np.add(x, y, out=x),
                            lambda x, y: np.subtract(x, y, out=x))
        candidates = {
            "read": {
                "l2fast.sum_squares": lambda: l2fast.sum_squares(buf, num_threads=t),
                f"NumPy np.add.reduce x {t} thread(s)": _split_runner(pool, t, np.add.reduce, buf),
            },
            "update": {
                "l2fast.scale_": scale,
                f"NumPy np.multiply(out=) x {t} thread(s)": _split_runner(pool, t, np_mul, buf),
            },
            "add": {
                "l2fast.add_scaled_": add,
                f"NumPy np.add(out=) x {t} thread(s)": _split_runner(pool, t, np_add, d, s),
            },
        }
        if threadpool_limits is not None:
            candidates["read"][f"NumPy np.dot x {t} thread(s)"] = _split_runner(
                pool, t, lambda x: np.dot(x, x), buf)
        entry = {"threads": t, "buffer_bytes": int(buf.nbytes)}
        limit = (threadpool_limits(limits=1, user_api="blas") if threadpool_limits
                 else contextlib.nullcontext())
        with limit:
            for pattern, cands in candidates.items():
                moved = bc.PASSES[pattern] * (buf.nbytes if pattern != "add" else d.nbytes)
                _, samples, _ = time_interleaved(list(cands.values()), repeat, min_sample=0)
                gbps = {label: moved / min(t) / 1e9 for label, t in zip(cands, samples)}
                best = max(gbps, key=gbps.get)
                entry[pattern] = {"gbps": gbps[best], "by": best, "candidates": gbps}
                if progress:
                    progress.step(f"roof {t}T {pattern}")
        if pool is not None:
            pool.shutdown()
        out.append(entry)
    del buf
    return out


# ---------------------------------------------------------------------------
# Running the comparisons
# ---------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total, enabled=None):
        self.total = max(total, 1)
        self.done = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def step(self, label):
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // self.total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                         f"{self.done}/{self.total} {label[:40]:<40}")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def run_workload(wl, case_list, threads, repeat, roof, llc, use_torch, progress=None):
    """Time every case of `case_list` on workload `wl` at `threads` threads.

    Returns the run as a dict (see the --json format in docs/bench.md)."""
    results = []
    with thread_limits(threads, use_torch) as blas_limited:
        for function in dict.fromkeys(c.function for c in case_list):
            group = [c for c in case_list if c.function == function]
            runs = []
            errors = []
            for case in group:
                wl.restore()
                fn = case.build(wl, threads)
                errors.append(bc.relative_error(fn(), wl.exact) if case.returns_sum else None)
                runs.append(fn)
            wl.restore()
            medians, samples, calls = time_interleaved(runs, repeat)
            pattern = bc.PATTERN[function]
            moved = bc.bytes_moved(function, wl)
            numpy_times = {c.label: m for c, m in zip(group, medians) if c.family == "numpy"}
            baseline = next(iter(numpy_times.values()), None)
            footprint = wl.nbytes * (2 if function == "add_scaled_" else 1)
            for case, m, smp, k, err in zip(group, medians, samples, calls, errors):
                gbps = moved / m / 1e9
                results.append({
                    "function": function,
                    "implementation": case.label,
                    "key": case.key,
                    "family": case.family,
                    "legend": case.legend,
                    "median_s": m,
                    "min_s": min(smp),
                    "samples_s": smp,
                    "calls_per_sample": k,
                    "bytes": moved,
                    "footprint_bytes": footprint,
                    "fits_in_cache": bool(llc and footprint <= llc),
                    "gbps": gbps,
                    "roof_pattern": pattern,
                    "roof_share": gbps / roof[pattern]["gbps"] if roof else None,
                    "speedup": baseline / m if baseline else None,
                    "speedup_over": {label: t / m for label, t in numpy_times.items()},
                    "rel_error": err,
                })
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


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def _fmt_time(s):
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def _fmt(x, spec, none="—"):
    return none if x is None else format(x, spec)


def _table(rows, header, aligns):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) if a == "<" else str(c).rjust(w)
                         for c, w, a in zip(r, widths, aligns)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_roof(roof, llc_text):
    rows = [[e["threads"]] + [f"{e[p]['gbps']:.1f}" for p in ("read", "update", "add")]
            for e in roof]
    size = roof[0]["buffer_bytes"] / MIB
    lines = [f"Memory roof, GB/s (float32 buffer of {size:.0f} MiB; last-level cache {llc_text})",
             _table(rows, ["threads", "read", "update", "add"], ">>>>")]
    for e in roof:
        by = ", ".join(f"{p}: {e[p]['by']}" for p in ("read", "update", "add"))
        lines.append(f"  {e['threads']} thread(s), fastest: {by}")
    lines.append("  read: sum of a buffer; update: x *= c in place; add: d += s "
                 "(bytes read + written).")
    lines.append("  Each is the fastest run of l2fast on the one buffer or of NumPy on equal "
                 "slices, one Python thread per slice.")
    return "\n".join(lines)


def format_run(run, roof_entry, llc_text, repeat, small=False):
    mib = run["nbytes"] / MIB
    title = (f"{run['model']} · {run['dtype']} · {run['n_arrays']:,} arrays, "
             f"{run['n_elements']:,} elements ({mib:.1f} MiB) · {run['threads']} thread(s)")
    rows, last = [], None
    for r in run["results"]:
        fn = r["function"] if r["function"] != last else ""
        last = r["function"]
        row = [fn, r["implementation"], _fmt_time(r["median_s"])]
        if not small:
            row += [f"{r['gbps']:.1f}", _fmt(r["roof_share"], ".0%")]
        row += [_fmt(r["speedup"], ".2f"), _fmt(r["rel_error"], ".1e")]
        rows.append(row)
    header = ["function", "implementation", "median"]
    aligns = "<<>"
    if not small:
        header += ["GB/s", "roof"]
        aligns += ">>"
    header += ["× NumPy", "rel. error"]
    aligns += ">>"
    lines = [title, _table(rows, header, aligns)]
    if not small:
        r = roof_entry
        lines.append(f"  GB/s: bytes read + written (N·itemsize ×1 sum_squares, ×2 scale_ and "
                     f"sum_squares_scale_, ×3 add_scaled_) / median of {repeat} runs.")
        lines.append(f"  roof: share of the memory roof of the same pattern at {run['threads']} "
                     f"thread(s): read {r['read']['gbps']:.1f}, update {r['update']['gbps']:.1f}, "
                     f"add {r['add']['gbps']:.1f} GB/s.")
        if run["fits_in_cache"]:
            outside = sorted({x["function"] for x in run["results"] if not x["fits_in_cache"]})
            lines.append(f"  NOTE: the model ({mib:.1f} MiB) is smaller than the last-level "
                         f"cache ({llc_text}): figures may include cache effects and exceed "
                         "the memory roof.")
            if outside:
                lines.append(f"  ({', '.join(outside)} also reads the gradients: "
                             f"{2 * mib:.1f} MiB, more than the cache.)")
    else:
        lines.append(f"  median of {repeat} samples, each averaging many calls.")
    lines.append("  × NumPy: time of the function's first NumPy row / this row's time. "
                 "rel. error: vs an extended-precision sum of squares.")
    return "\n".join(lines)


def plot(report, path):
    """GB/s per function and implementation, with the roof of each pattern:
    one row of panels per model and dtype, one column per thread count.

    The image is ``PANEL_PX[0] * columns`` by ``PANEL_PX[1] * rows +
    _LEGEND_PX`` pixels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    keys = list(dict.fromkeys((r["model"], r["dtype"]) for r in runs))
    threads = list(dict.fromkeys(r["threads"] for r in runs))
    roof = {e["threads"]: e for e in report["roof"]}
    nrows, ncols = max(len(keys), 1), max(len(threads), 1)
    width_px = PANEL_PX[0] * ncols
    height_px = PANEL_PX[1] * nrows + _LEGEND_PX
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
    colors = {"l2fast": "#1f77b4", "l2fast ParamList": "#7fb3e0", "NumPy": "#ff7f0e",
              "NumPy einsum": "#fdbf6f", "torch": "#2ca02c"}
    handles = {}
    for i, key in enumerate(keys):
        for j, t in enumerate(threads):
            ax = axes[i][j]
            run = next((r for r in runs if (r["model"], r["dtype"]) == key
                        and r["threads"] == t), None)
            if run is None:
                ax.set_axis_off()
                continue
            functions = list(dict.fromkeys(r["function"] for r in run["results"]))
            for x, fn in enumerate(functions):
                rows = [r for r in run["results"] if r["function"] == fn]
                w = 0.8 / len(rows)
                for k, r in enumerate(rows):
                    bar = ax.bar(x - 0.4 + w * (k + 0.5), r["gbps"], w * 0.92,
                                 color=colors.get(r["legend"], "#999999"))
                    handles.setdefault(r["legend"], bar)
                line = ax.hlines(roof[t][bc.PATTERN[fn]]["gbps"], x - 0.45, x + 0.45,
                                 colors="black", linestyles="--", linewidth=1.2)
                handles.setdefault("memory roof", line)
            ax.set_xticks(range(len(functions)), functions, fontsize=8)
            ax.set_ylabel("GB/s (read + written)", fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
            cache = " (model < last-level cache)" if run["fits_in_cache"] else ""
            ax.set_title(f"{run['model']} {run['dtype']}, {t} thread(s){cache}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles),
               fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.08 / ncols, right=1 - 0.02 / ncols, top=1 - 0.08 / nrows,
                        bottom=(_LEGEND_PX + 30) / height_px, hspace=0.35, wspace=0.25)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _positive_ints(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return list(dict.fromkeys(values))


def _dtypes(text):
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in ("float32", "float64")]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected float32 and/or float64, got {text!r}")
    return list(dict.fromkeys(values))


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m l2fast bench",
        description="Time l2fast's functions beside NumPy (and torch, when installed) on a "
                    "model's parameter shapes, against this machine's memory roof.")
    p.add_argument("--model", action="append",
                   choices=list(bc.SHIPPED_MODELS) + ["all"],
                   help="shapes shipped with l2fast (repeatable; default: resnet50 unless "
                        "--shapes or --torch-model is given)")
    p.add_argument("--shapes", action="append", default=[], metavar="FILE.json",
                   help='a shape file {"params": [{"name": ..., "shape": [...]}, ...]} '
                        "(repeatable)")
    p.add_argument("--torch-model", action="append", default=[], metavar="MODULE:ATTR",
                   help="the parameter shapes of your own torch.nn.Module (an instance, or a "
                        "class or function called without arguments); needs torch")
    p.add_argument("--dtype", type=_dtypes, default=["float32"],
                   help="float32 (default), float64, or float32,float64")
    p.add_argument("--threads", type=_positive_ints, default=None,
                   help="comma-separated thread counts for a scaling sweep, e.g. 1,2,4 "
                        f"(default: the OpenMP default, {_kernels.max_threads()} here)")
    p.add_argument("--repeat", type=int, default=7,
                   help="timed runs per case, after a warm-up; the median is reported "
                        "(default 7)")
    p.add_argument("--json", metavar="FILE", help="write every figure and the machine "
                   "description to FILE")
    p.add_argument("--plot", metavar="FILE.png", help="plot GB/s per function beside the "
                   "peers and the roof (needs matplotlib: pip install 'l2fast[plot]')")
    p.add_argument("--no-torch", action="store_true", help="skip the torch peers")
    p.add_argument("--no-small", action="store_true",
                   help="skip the many-small-arrays comparison (1,000 arrays of 64 float32)")
    p.add_argument("--roof-mib", type=int, default=None,
                   help="size of the roof buffer in MiB (default: $" + ROOF_ENV + ", else "
                        "twice the last-level cache, within a quarter of free memory)")
    return p


def _workload_shapes(args):
    shapes = []
    models = args.model or ([] if args.shapes or args.torch_model else ["resnet50"])
    if "all" in models:
        models = list(bc.SHIPPED_MODELS)
    for m in dict.fromkeys(models):
        shapes.append(bc.shipped_shapes(m))
    for path in args.shapes:
        try:
            shapes.append(bc.read_shapes(path))
        except OSError as e:
            raise ValueError(f"--shapes {path}: {e.strerror}") from None
    for spec in args.torch_model:
        shapes.append(bc.torch_model_shapes(spec))
    for s in shapes:
        if s.size == 0:
            raise ValueError(f"model {s.name!r} has no parameters to benchmark")
    return shapes


def main(argv=None):
    """Run the benchmark; return the exit status (0, or 2 for bad arguments)."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    err = sys.stderr
    if args.repeat < 1:
        print("bench: --repeat must be at least 1", file=err)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("bench: --plot needs matplotlib, which is not installed; install it with "
                  "`pip install 'l2fast[plot]'` (or `pip install matplotlib`), or drop --plot",
                  file=err)
            return 2
    try:
        shape_list = _workload_shapes(args)
    except ValueError as e:
        print(f"bench: {e}", file=err)
        return 2
    threads = args.threads or [_kernels.max_threads()]
    use_torch = not args.no_torch and bc.torch_available()
    notes = []
    if args.no_torch:
        notes.append("torch peers skipped (--no-torch).")
    elif not use_torch:
        notes.append("torch is not installed: the torch._foreach_norm / _foreach_mul_ / "
                     "_foreach_add_ peers are skipped.")
    roof_mib = args.roof_mib
    if roof_mib is None and os.environ.get(ROOF_ENV):
        try:
            roof_mib = int(os.environ[ROOF_ENV])
        except ValueError:
            print(f"bench: ${ROOF_ENV} must be a number of MiB, got {os.environ[ROOF_ENV]!r}",
                  file=err)
            return 2
    if roof_mib is not None and roof_mib < 1:
        print("bench: the roof buffer needs at least 1 MiB", file=err)
        return 2
    machine = machine_description()
    others = OtherLoad()
    roof_bytes = roof_mib * MIB if roof_mib else default_roof_bytes()
    llc, llc_text = last_level_cache()
    if llc and roof_bytes <= llc:
        notes.append(f"the roof buffer ({roof_bytes / MIB:.0f} MiB) is not larger than the "
                     f"last-level cache ({llc_text}): the roof is a cache figure, not memory.")

    case_list = bc.cases(torch=use_torch)
    small_cases = bc.small_array_cases(torch=use_torch)
    n_groups = len(dict.fromkeys(c.function for c in case_list))
    total = (3 * len(threads)
             + len(shape_list) * len(args.dtype) * len(threads) * n_groups
             + (0 if args.no_small else len(threads)))
    progress = Progress(total)
    out = sys.stdout
    cfg = config()
    print(f"l2fast {l2fast.__version__} bench · {_cpu_name()}, {os.cpu_count()} logical CPUs, "
          f"last-level cache {llc_text} · OpenMP {'on' if cfg['build']['openmp'] else 'off'}, "
          f"SIMD {cfg['simd']['dispatched'] or cfg['simd']['baseline']} · NumPy {np.__version__}"
          + (f" · torch {_torch_version()}" if use_torch else ""), file=out)
    for note in notes:
        print(f"note: {note}", file=out)
    print(file=out, flush=True)

    roof = measure_roof(threads, roof_bytes, max(3, min(args.repeat, 5)), progress)
    roof_by_threads = {e["threads"]: e for e in roof}
    progress.close()
    print(format_roof(roof, llc_text), end="\n\n", file=out, flush=True)

    runs, small_runs = [], []
    for shapes in shape_list:
        for dtype in args.dtype:
            wl = bc.Workload(shapes, dtype)
            for t in threads:
                run = run_workload(wl, case_list, t, args.repeat, roof_by_threads[t], llc,
                                   use_torch, progress)
                runs.append(run)
                progress.close()
                print(format_run(run, roof_by_threads[t], llc_text, args.repeat), end="\n\n",
                      file=out, flush=True)
            del wl
    if not args.no_small:
        wl = bc.Workload(bc.small_shapes(), np.float32)
        for t in threads:
            run = run_workload(wl, small_cases, t, args.repeat, None, llc, use_torch, progress)
            small_runs.append(run)
            progress.close()
            print(format_run(run, None, llc_text, args.repeat, small=True), end="\n\n",
                  file=out, flush=True)
    progress.close()
    busy = others.share()
    machine["other_processes_cpu_share"] = busy
    if busy is not None:
        print(f"Other processes used {busy:.0%} of the CPU time while this ran"
              + (": the figures, above all the multi-threaded ones, may be low; run again on "
                 "a quiet machine." if busy > 0.05 else "."), file=out)
        if busy > 0.05:
            notes.append(f"other processes used {busy:.0%} of the CPU time during the run.")

    report = {
        "l2fast": l2fast.__version__,
        "machine": machine,
        "settings": {
            "models": [s.name for s in shape_list],
            "dtypes": args.dtype,
            "threads": threads,
            "repeat": args.repeat,
            "roof_buffer_bytes": int(roof_bytes),
            "torch": _torch_version() if use_torch else None,
            "numpy": np.__version__,
        },
        "notes": notes,
        "roof": roof,
        "runs": runs,
        "small_arrays": small_runs,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}", file=out)
    if args.plot:
        if runs:
            plot(report, args.plot)
            print(f"wrote {args.plot}", file=out)
        else:
            print("bench: nothing to plot (no model was run)", file=err)
    return 0


class OtherLoad:
    """The share of CPU time other processes take from the moment this is made
    (Linux: /proc/stat less this process's own CPU time; None elsewhere)."""

    def __init__(self):
        self.start = self._snapshot()

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        t = os.times()
        return sum(fields[:8]) / ticks, idle / ticks, t.user + t.system

    def share(self):
        end = self._snapshot()
        if self.start is None or end is None:
            return None
        total, idle, own = (e - s for e, s in zip(end, self.start))
        if total <= 0:
            return None
        return min(max((total - idle - own) / total, 0.0), 1.0)


def _load_average():
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def _torch_version():
    import torch
    return torch.__version__
