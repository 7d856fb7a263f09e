"""Paired medians: 2,000 torch grads of 64x32 and GPT-2 as Parameters, l2fast against torch for the norm and clipping; `python bench/probes/torch_clip_timing.py`."""
import time, numpy as np, torch, l2fast, l2fast.torch
from l2fast import models
torch.manual_seed(0)
def med(f, reps=15):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return sorted(ts)[reps // 2] * 1e3
params = [torch.nn.Parameter(torch.randn(64, 32)) for _ in range(2000)]
for p in params: p.grad = torch.randn(64, 32) * 0.01
grads = [p.grad for p in params]
views = [g.numpy() for g in grads]
c = {"l2fast.sum_squares(torch grads)": lambda: l2fast.sum_squares(grads),
     "l2fast.sum_squares(numpy views)": lambda: l2fast.sum_squares(views),
     "torch._foreach_norm": lambda: torch._foreach_norm(grads),
     "torch get_total_norm": lambda: torch.nn.utils.get_total_norm(grads),
     "l2fast.torch.clip_grad_norm_": lambda: l2fast.torch.clip_grad_norm_(params, 1e-3),
     "torch clip_grad_norm_": lambda: torch.nn.utils.clip_grad_norm_(params, 1e-3),
     "torch clip_grad_norm_ foreach=False": lambda: torch.nn.utils.clip_grad_norm_(params, 1e-3, foreach=False)}
res = {k: [] for k in c}
for r in range(3):
    for k, f in c.items():
        res[k].append(med(f))
m = {k: sorted(v)[1] for k, v in res.items()}
for k, v in m.items(): print(f"{k:40s} {v:8.3f} ms")
print(f"sum: {m['torch._foreach_norm']/m['l2fast.sum_squares(torch grads)']:.2f}x foreach_norm; "
      f"{m['l2fast.sum_squares(torch grads)']/m['l2fast.sum_squares(numpy views)']:.2f}x numpy views time; "
      f"clip: {m['torch clip_grad_norm_']/m['l2fast.torch.clip_grad_norm_']:.2f}x torch")
# GPT-2 as torch parameters
shapes = [s for _, s in models.shapes("gpt2")]
ps = [torch.nn.Parameter(torch.randn(*s) * 0.02) for s in shapes]
for p in ps: p.grad = torch.randn(*p.shape) * 0.01
a = [med(lambda: l2fast.torch.clip_grad_norm_(ps, 1e-3), 7) for _ in range(2)]
b = [med(lambda: torch.nn.utils.clip_grad_norm_(ps, 1e-3), 7) for _ in range(2)]
print(f"GPT-2 clip: l2fast.torch {min(a):.1f} ms, torch {min(b):.1f} ms, {min(b)/min(a):.2f}x")
