"""python -m l2fast bench: the options, and a `main` that parses, runs and reports."""
import argparse
import functools
import os
import sys

from .. import _kernels
from . import load, report
from .machine import MIB, default_roof_bytes, machine_description, torch_version
from .runner import Benchmark, Settings
from .workloads import (DTYPES, SHIPPED_MODELS, read_shapes, shipped_shapes, torch_available,
                        torch_model_shapes)

ROOF_ENV = "L2FAST_BENCH_ROOF_MIB"


class UsageError(ValueError):
    """Arguments that cannot be run: main reports them and returns 2."""


def _positive_ints(text):
    """--threads: "1,2,4" -> [1, 2, 4], without repeats."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return list(dict.fromkeys(values))


def _dtypes(text):
    """--dtype: "float32,bfloat16" -> ["float32", "bfloat16"], without repeats."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in DTYPES]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(DTYPES)}, got {text!r}")
    return list(dict.fromkeys(values))


def _parser():
    """The argument parser of ``python -m l2fast bench``."""
    p = argparse.ArgumentParser(
        prog="python -m l2fast bench",
        description="Time l2fast's functions beside NumPy (and torch, when installed) on a "
                    "model's parameter shapes, against this machine's memory roof.")
    p.add_argument("--model", action="append",
                   choices=list(SHIPPED_MODELS) + ["all"],
                   help="shapes shipped with l2fast (repeatable; default: resnet50 unless "
                        "--shapes or --torch-model is given)")
    p.add_argument("--shapes", action="append", default=[], metavar="FILE.json",
                   help='a shape file {"params": [{"name": ..., "shape": [...]}, ...]} '
                        "(repeatable)")
    p.add_argument("--torch-model", action="append", default=[], metavar="MODULE:ATTR",
                   help="the parameter shapes of your own torch.nn.Module (an instance, or a "
                        "class or function called without arguments); needs torch")
    p.add_argument("--dtype", type=_dtypes, default=["float32"],
                   help="float32 (default), float64, float16, bfloat16 (needs ml_dtypes), "
                        "or several, e.g. float32,bfloat16")
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
    p.add_argument("--no-clip", action="store_true",
                   help="skip the clipping comparison (global norm and clip_grad_norm_ on "
                        "torch tensors, beside torch.nn.utils; runs only with torch)")
    p.add_argument("--under-load", action="store_true",
                   help="only time each function's default-threads call against its "
                        "num_threads=1 call, quiet and beside a busy l2fast process that "
                        "this command starts (on ResNet-50 at a third of its width, and on "
                        "--model/--shapes, default gpt2)")
    p.add_argument("--roof-mib", type=int, default=None,
                   help="size of the roof buffer in MiB (default: $" + ROOF_ENV + ", else "
                        "twice the last-level cache, within a quarter of free memory)")
    return p


def _workload_shapes(args):
    """The Shapes of --model, --shapes and --torch-model, in that order."""
    shapes = []
    models = args.model or ([] if args.shapes or args.torch_model else ["resnet50"])
    if "all" in models:
        models = list(SHIPPED_MODELS)
    for m in dict.fromkeys(models):
        shapes.append(shipped_shapes(m))
    for path in args.shapes:
        try:
            shapes.append(read_shapes(path))
        except OSError as e:
            raise ValueError(f"--shapes {path}: {e.strerror}") from None
    for spec in args.torch_model:
        shapes.append(torch_model_shapes(spec))
    for s in shapes:
        if s.size == 0:
            raise ValueError(f"model {s.name!r} has no parameters to benchmark")
    return shapes


def _roof_bytes(args):
    """Size of the roof buffer: --roof-mib, else $L2FAST_BENCH_ROOF_MIB, else the default."""
    roof_mib = args.roof_mib
    if roof_mib is None and os.environ.get(ROOF_ENV):
        try:
            roof_mib = int(os.environ[ROOF_ENV])
        except ValueError:
            raise UsageError(f"${ROOF_ENV} must be a number of MiB, "
                             f"got {os.environ[ROOF_ENV]!r}") from None
    if roof_mib is not None and roof_mib < 1:
        raise UsageError("the roof buffer needs at least 1 MiB")
    return roof_mib * MIB if roof_mib else None


def _settings(args):
    """The Settings of parsed arguments.

    Raises
    ------
    UsageError
        The arguments cannot be run.
    """
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib, which is not installed; install it with "
                             "`pip install 'l2fast[plot]'` (or `pip install matplotlib`), or "
                             "drop --plot") from None
    try:
        shapes = _workload_shapes(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    roof_bytes = _roof_bytes(args)
    use_torch = not args.no_torch and torch_available()
    notes = []
    if args.no_torch:
        notes.append("torch peers skipped (--no-torch).")
    elif not use_torch:
        notes.append("torch is not installed: the torch._foreach_norm / _foreach_mul_ / "
                     "_foreach_add_ peers are skipped.")
    return Settings(shapes=shapes, dtypes=args.dtype,
                    threads=args.threads or [_kernels.max_threads()], repeat=args.repeat,
                    roof_bytes=roof_bytes or default_roof_bytes(), torch=use_torch,
                    small=not args.no_small, notes=notes, clip=not args.no_clip)


def _under_load(args):
    """--under-load: the default/one-thread table, quiet and beside a busy process."""
    if args.repeat < 1:
        print("bench: --repeat must be at least 1", file=sys.stderr)
        return 2
    try:
        extra = (_workload_shapes(args) if args.model or args.shapes or args.torch_model
                 else [shipped_shapes("gpt2")])
    except ValueError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    threads = (args.threads or [None])[-1]
    entries = load.measure_under_load([load.narrow_shapes(shipped_shapes("resnet50"))] + extra,
                                      repeat=args.repeat, threads=threads)
    print(load.format_under_load(entries, threads or _kernels.max_threads()), flush=True)
    if args.json:
        report.write({"machine": machine_description(), "under_load": entries, "runs": []},
                     json_path=args.json)
    return 0


def main(argv=None):
    """Run the benchmark.

    Parameters
    ----------
    argv : list of str or None
        The options (None: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, or 2 for arguments that cannot be run.
    """
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.under_load:
        return _under_load(args)
    try:
        settings = _settings(args)
    except UsageError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    bench = Benchmark(settings)
    show = functools.partial(print, end="\n\n", file=sys.stdout, flush=True)
    show(report.format_header(bench.machine, bench.notes,
                              torch_version() if settings.torch else None))
    show(report.format_roof(bench.measure_roof(), bench.llc_text))
    for run in bench.model_runs():
        show(report.format_run(run, bench.roof_at(run["threads"]), bench.llc_text,
                               settings.repeat))
    for entry in bench.share_runs():
        show(report.format_shares(entry))
    for run in bench.small_array_runs():
        show(report.format_run(run, None, bench.llc_text, settings.repeat, small=True))
    for run, small in bench.clipping_runs():
        show(report.format_run(run, None if small else bench.roof_at(run["threads"]),
                               bench.llc_text, settings.repeat, small=small, baseline="torch"))
    load = report.format_load(bench.finish())
    if load:
        print(load)
    report.write(bench.report(), json_path=args.json, plot_path=args.plot)
    return 0
