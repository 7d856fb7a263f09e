"""What the benchmark shows: the text tables, the JSON report and the plot."""
import json
import math
import sys

import numpy as np

import l2fast

from .machine import MIB
from .roof import PATTERNS
from .workloads import PATTERN, bytes_moved_rule

#: Size in pixels of one panel of --plot (one per model and thread count).
PANEL_PX = (640, 400)
_DPI = 100
_LEGEND_PX = 40

_COLORS = {"l2fast": "#1f77b4", "l2fast ParamList": "#7fb3e0", "NumPy": "#ff7f0e",
           "NumPy einsum": "#fdbf6f", "torch": "#2ca02c"}


def _fmt_time(s):
    """Seconds in µs, ms or s, three significant digits."""
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def _fmt(x, spec, none="—"):
    """`x` formatted with `spec`, or `none` when it is None."""
    return none if x is None else format(x, spec)


def _table(rows, header, aligns):
    """A text table; `aligns` has "<" or ">" per column."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) if a == "<" else str(c).rjust(w)
                         for c, w, a in zip(r, widths, aligns)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_header(machine, notes, torch_version=None):
    """The first lines: l2fast, the machine, NumPy and torch, and the notes."""
    cfg = machine["l2fast_config"]
    line = (f"l2fast {l2fast.__version__} bench · {machine['cpu']}, "
            f"{machine['logical_cpus']} logical CPUs, last-level cache "
            f"{machine['last_level_cache']} · OpenMP {'on' if cfg['build']['openmp'] else 'off'}, "
            f"SIMD {cfg['simd']['dispatched'] or cfg['simd']['baseline']} · NumPy {np.__version__}"
            + (f" · torch {torch_version}" if torch_version else ""))
    return "\n".join([line] + [f"note: {note}" for note in notes])


def format_roof(roof, llc_text):
    """The memory roof table: GB/s of each pattern per thread count, and who reached it."""
    rows = [[e["threads"]] + [f"{e[p]['gbps']:.1f}" for p in PATTERNS] for e in roof]
    size = roof[0]["buffer_bytes"] / MIB
    lines = [f"Memory roof, GB/s (float32 buffer of {size:.0f} MiB; last-level cache {llc_text})",
             _table(rows, ["threads", *PATTERNS], ">>>>")]
    for e in roof:
        by = ", ".join(f"{p}: {e[p]['by']}" for p in PATTERNS)
        lines.append(f"  {e['threads']} thread(s), fastest: {by}")
    lines.append("  read: sum of a buffer; update: x *= c in place; add: d += s "
                 "(bytes read + written).")
    lines.append("  Each is the best median (the rows' statistic) of l2fast on the one buffer "
                 "and NumPy on equal slices, one Python thread per slice, timed alternately.")
    return "\n".join(lines)


def _run_notes(run, roof_entry, llc_text, repeat):
    """Footnotes of a model's table: GB/s, roof, and the cache warning."""
    r, mib = roof_entry, run["nbytes"] / MIB
    rule = bytes_moved_rule(dict.fromkeys(x["function"] for x in run["results"]))
    lines = [f"  GB/s: bytes read + written ({rule}) / median of {repeat} runs.",
             f"  roof: share of the memory roof of the same pattern at {run['threads']} "
             f"thread(s): read {r['read']['gbps']:.1f}, update {r['update']['gbps']:.1f}, "
             f"add {r['add']['gbps']:.1f} GB/s."]
    if run["fits_in_cache"]:
        outside = sorted({x["function"] for x in run["results"] if not x["fits_in_cache"]})
        lines.append(f"  NOTE: the model ({mib:.1f} MiB) is smaller than the last-level "
                     f"cache ({llc_text}): figures may include cache effects and exceed "
                     "the memory roof.")
        if outside:
            lines.append(f"  ({', '.join(outside)} also reads the gradients: "
                         f"{2 * mib:.1f} MiB, more than the cache.)")
    return lines


def format_run(run, roof_entry, llc_text, repeat, small=False, baseline="NumPy"):
    """One run's table: a row per implementation, grouped by function.

    The many-small-arrays table (`small`) has no GB/s and roof columns; the
    speedup column is against the function's first `baseline` row ("NumPy",
    or "torch" for the clipping comparison)."""
    title = (f"{run['model']} · {run['dtype']} · {run['n_arrays']:,} arrays, "
             f"{run['n_elements']:,} elements ({run['nbytes'] / MIB:.1f} MiB) · "
             f"{run['threads']} thread(s)")
    rows, last = [], None
    for r in run["results"]:
        fn = r["function"] if r["function"] != last else ""
        last = r["function"]
        row = [fn, r["implementation"], _fmt_time(r["median_s"])]
        if not small:
            row += [f"{r['gbps']:.1f}", _fmt(r["roof_share"], ".0%")]
        rows.append(row + [_fmt(r["speedup"], ".2f"), _fmt(r["rel_error"], ".1e")])
    header, aligns = ["function", "implementation", "median"], "<<>"
    if not small:
        header, aligns = header + ["GB/s", "roof"], aligns + ">>"
    if baseline != "NumPy":
        title += f" · {' and '.join(dict.fromkeys(r['function'] for r in run['results']))}"
    lines = [title, _table(rows, header + [f"× {baseline}", "rel. error"], aligns + ">>")]
    if small:
        lines.append(f"  median of {repeat} samples, each averaging many calls.")
    else:
        lines += _run_notes(run, roof_entry, llc_text, repeat)
    lines.append(f"  × {baseline}: time of the function's first {baseline} row / this row's "
                 "time. rel. error: vs an extended-precision sum of squares"
                 + (" (of the norm squared)." if baseline != "NumPy" else "."))
    return "\n".join(lines)


def format_shares(entry):
    """The 16-bit share table of one model and thread count (runner.measure_shares)."""
    rows, last = [], None
    for r in entry["rows"]:
        rows.append([r["function"] if r["function"] != last else "", r["dtype"],
                     _fmt_time(r["median_s"]), f"{r['gbps']:.1f}",
                     f"{r['share_of_float32']:.0%}"])
        last = r["function"]
    head = (f"{entry['model']} · 16-bit against float32, timed alternately in one run "
            f"({entry['rounds']} rounds) · {entry['threads']} thread(s)")
    foot = ("  GB/s: bytes read (sum_squares) or read + written (scale_) / median; "
            "share: this row's GB/s / the float32 row's.")
    return "\n".join([head, _table(rows, ["function", "dtype", "median", "GB/s",
                                          "share of float32's GB/s"],
                                   ["<", "<", ">", ">", ">"]), foot])


def format_load(busy):
    """The closing line on the other processes' CPU share, or None if unknown."""
    if busy is None:
        return None
    return (f"Other processes used {busy:.0%} of the CPU time while this ran"
            + (": the figures, above all the multi-threaded ones, may be low; run again on "
               "a quiet machine." if busy > 0.05 else "."))


def _panel(ax, run, roof_entry, handles):
    """Bars of one run (GB/s per function and implementation) and the roof lines."""
    functions = list(dict.fromkeys(r["function"] for r in run["results"]))
    for x, fn in enumerate(functions):
        rows = [r for r in run["results"] if r["function"] == fn]
        w = 0.8 / len(rows)
        for k, r in enumerate(rows):
            bar = ax.bar(x - 0.4 + w * (k + 0.5), r["gbps"], w * 0.92,
                         color=_COLORS.get(r["legend"], "#999999"))
            handles.setdefault(r["legend"], bar)
        line = ax.hlines(roof_entry[PATTERN[fn]]["gbps"], x - 0.45, x + 0.45,
                         colors="black", linestyles="--", linewidth=1.2)
        handles.setdefault("memory roof", line)
    ax.set_xticks(range(len(functions)), functions, fontsize=8)
    ax.set_ylabel("GB/s (read + written)", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    cache = " (model < last-level cache)" if run["fits_in_cache"] else ""
    ax.set_title(f"{run['model']} {run['dtype']}, {run['threads']} thread(s){cache}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _legend(fig, handles):
    """The legend under the panels: one row, or two when one row is wider
    than the figure (a single column of panels is too narrow for one)."""
    for ncol in (len(handles), math.ceil(len(handles) / 2)):
        legend = fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=ncol,
                            fontsize=8, frameon=False, columnspacing=1.5, borderaxespad=0.3)
        width = legend.get_window_extent(fig.canvas.get_renderer()).width
        if width <= fig.bbox.width or ncol == 1:
            return
        legend.remove()


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
    height_px = PANEL_PX[1] * nrows + _LEGEND_PX
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, dpi=_DPI,
                             figsize=(PANEL_PX[0] * ncols / _DPI, height_px / _DPI))
    handles = {}
    for i, key in enumerate(keys):
        for j, t in enumerate(threads):
            run = next((r for r in runs if (r["model"], r["dtype"]) == key
                        and r["threads"] == t), None)
            if run is None:
                axes[i][j].set_axis_off()
            else:
                _panel(axes[i][j], run, roof[t], handles)
    fig.subplots_adjust(left=0.08 / ncols, right=1 - 0.02 / ncols, top=1 - 0.08 / nrows,
                        bottom=(_LEGEND_PX + 30) / height_px, hspace=0.35, wspace=0.25)
    _legend(fig, handles)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)


def write(report, json_path=None, plot_path=None, out=None, err=None):
    """Write the --json report and the --plot image, saying so on `out`."""
    out = out or sys.stdout
    err = err or sys.stderr
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {json_path}", file=out)
    if plot_path:
        if report["runs"]:
            plot(report, plot_path)
            print(f"wrote {plot_path}", file=out)
        else:
            print("bench: nothing to plot (no model was run)", file=err)
