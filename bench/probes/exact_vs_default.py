"""Paired medians on GPT-2 float32: the default sum, the exact path (reproducible=True), the NumPy vdot loop, scale_ and the fused call; `python bench/probes/exact_vs_default.py`."""
import sys, time, numpy as np
import l2fast
from l2fast import models, reference
shapes = [s for _, s in models.shapes("gpt2")]
rng = np.random.default_rng(0)
ws = [(rng.standard_normal(s) * 0.02).astype(np.float32) for s in shapes]
for nt in (2, 1):
    fs = {"sum_squares": lambda: l2fast.sum_squares(ws, num_threads=nt),
          "exact": lambda: l2fast.sum_squares(ws, num_threads=nt, reproducible=True),
          "vdot": lambda: reference.vdot_loop(ws),
          "scale_": lambda: l2fast.scale_(ws, 1.0, num_threads=nt),
          "ssq_scale": lambda: l2fast.sum_squares_scale_(ws, 1.0, num_threads=nt),
          "ssq_scale exact": lambda: l2fast.sum_squares_scale_(ws, 1.0, num_threads=nt, reproducible=True)}
    ts = {k: [] for k in fs}
    for r in range(11):
        for k, f in fs.items():
            t = time.perf_counter(); f(); ts[k].append(time.perf_counter() - t)
    m = {k: sorted(v)[5] * 1e3 for k, v in ts.items()}
    print(f"threads {nt}: " + "  ".join(f"{k} {v:.1f} ms" for k, v in m.items()))
    print(f"   vdot/sum_squares {m['vdot']/m['sum_squares']:.2f}x  vdot/exact {m['vdot']/m['exact']:.2f}x  exact/default speed {m['sum_squares']/m['exact']:.2f}  "
          f"ssq_scale/scale {m['ssq_scale']/m['scale_']:.2f}  exact ssq_scale/scale {m['ssq_scale exact']/m['scale_']:.2f}")
