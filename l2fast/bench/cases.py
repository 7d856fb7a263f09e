"""What the benchmarks compare: for each function, l2fast's call and its peers.

`python -m l2fast bench` and the pytest-benchmark suite in bench/ both build
their comparisons from `cases()`, so the two always time the same code.  A
case is one implementation of one function: l2fast's own call, the NumPy
loop a user would otherwise write (the baselines of `l2fast.reference`), or
a torch ``_foreach`` peer.  The clipping comparison (`clip_cases`) sets
l2fast's global norm and clipping, on torch tensors, beside torch.nn.utils
and ``torch._foreach_norm``.
"""
import dataclasses
import functools
import operator
from typing import Callable

import numpy as np

import l2fast

from .. import reference
from .workloads import ALPHA, CLIP_FUNCTIONS, FACTOR, FUNCTIONS, alternating, torch_available


@dataclasses.dataclass(frozen=True)
class Case:
    """One implementation of one function.

    Attributes
    ----------
    function : str
        One of `FUNCTIONS`: the operation, and the table group.
    label : str
        What the implementation is, as the tables print it.
    family : str
        "l2fast", "l2fast.torch" (the drop-ins, whose norm is a tensor of the
        gradients' dtype), "numpy" or "torch".
    key : str
        A short identifier, unique within the function (for test ids).
    legend : str
        Short name for plot legends (shared by cases that play the same part).
    make : callable
        ``make(threads) -> fn``, `fn` taking the arguments of `function`'s
        twin in `l2fast.reference`: ``(ws)``, ``(ws, c)`` or
        ``(gs, ws, alpha)``, the arrays as `wrap` hands them over; for the
        clipping functions ``(ts)`` (global_norm) or ``(ts, max_norm)``.
        `threads` is passed to l2fast as num_threads (None: the OpenMP
        default); NumPy and torch are limited by the caller
        (`machine.thread_limits`).
    wrap : callable
        Turns a list of arrays into what `fn` takes, once, before timing:
        `list`, torch tensors, or a ParamList.
    """

    function: str
    label: str
    family: str
    key: str
    legend: str
    make: Callable
    wrap: Callable = list

    @property
    def returns_sum(self):
        """True for the functions whose run returns a sum of squares (the
        norms' squares, for global_norm and clip_grad_norm_)."""
        return self.function in ("sum_squares", "sum_squares_scale_") + CLIP_FUNCTIONS

    @property
    def id(self):
        """A short identifier for test ids: ``function-key``."""
        return f"{self.function}-{self.key}"

    def build(self, workload, threads):
        """``run()``: one call on `workload`, returning the sum of squares
        for sum-returning functions, else None.

        In-place calls alternate their factor between FACTOR and 1 / FACTOR
        (add_scaled_ its alpha between +ALPHA and -ALPHA), so values stay
        bounded however often `run` is called; clipping calls take their
        max_norm from `workload.clip_max_norm` (each clips by about FACTOR).
        """
        fn = self.make(threads)
        ws = self.wrap(workload.params)
        if self.function == "sum_squares":
            return lambda: fn(ws)
        if self.function == "global_norm":
            return lambda: float(fn(ws)) ** 2
        if self.function == "clip_grad_norm_":
            return lambda: float(fn(ws, workload.clip_max_norm())) ** 2
        if self.function == "add_scaled_":
            gs, alpha = self.wrap(workload.grads), alternating(ALPHA, -ALPHA)
            return lambda: fn(gs, ws, alpha())
        factor = alternating(FACTOR, 1 / FACTOR)
        return lambda: fn(ws, factor())


def _l2fast(name, **kw):
    """make() of l2fast's function `name`, with num_threads (and kw) bound."""
    return lambda threads: functools.partial(getattr(l2fast, name), num_threads=threads, **kw)


def _paramlist(name):
    """make() of ParamList's method `name` (one taking no other argument),
    with num_threads bound."""
    return lambda threads: operator.methodcaller(name, num_threads=threads)


def _peer(fn):
    """make() of a NumPy or torch peer: `fn` itself, whatever the thread count."""
    return lambda threads: fn


# -- torch's _foreach peers, with the signatures of the reference twins -------

def _torch_tensors(arrays):
    """torch tensors sharing the arrays' memory (bfloat16 through its bits)."""
    import torch
    return [torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
            if a.dtype.name == "bfloat16" else torch.from_numpy(a) for a in arrays]


def _torch_sum_squares(ts):
    """Sum of squares from ``torch._foreach_norm``: the norms squared, summed in float64."""
    import torch
    return torch.stack(torch._foreach_norm(ts)).double().square().sum().item()


def _torch_scale_(ts, c):
    """``torch._foreach_mul_(ts, c)``."""
    import torch
    torch._foreach_mul_(ts, c)


def _torch_add_scaled_(gs, ws, alpha):
    """``torch._foreach_add_(gs, ws, alpha=alpha)``."""
    import torch
    torch._foreach_add_(gs, ws, alpha=alpha)


def _torch_sum_squares_scale_(ts, c):
    """`_torch_sum_squares`, then `_torch_scale_`: two passes; returns the sum."""
    s = _torch_sum_squares(ts)
    _torch_scale_(ts, c)
    return s


#: The NumPy loops a user writes today, the baselines of `l2fast.reference`:
#: function -> [(label, key, legend, baseline)], the first being what "× NumPy"
#: is measured against.
_NUMPY = {
    "sum_squares": [
        ("NumPy sum(np.vdot(w, w))", "numpy_vdot", "NumPy", reference.vdot_loop),
        ("NumPy sum(np.einsum(w, w))", "numpy_einsum", "NumPy einsum", reference.einsum_loop),
    ],
    "scale_": [("NumPy for w in ws: w *= c", "numpy_loop", "NumPy", reference.scale_loop_)],
    "add_scaled_": [("NumPy for g, w: g += c * w", "numpy_loop", "NumPy", reference.add_loop_)],
    "sum_squares_scale_": [("NumPy vdot loop, then w *= c", "numpy_vdot_then_scale", "NumPy",
                            reference.vdot_then_scale_)],
}

#: torch's _foreach peers: function -> (label, key, fn).
_TORCH = {
    "sum_squares": ("torch._foreach_norm", "torch_foreach_norm", _torch_sum_squares),
    "scale_": ("torch._foreach_mul_", "torch_foreach_mul", _torch_scale_),
    "add_scaled_": ("torch._foreach_add_", "torch_foreach_add", _torch_add_scaled_),
    "sum_squares_scale_": ("torch._foreach_norm + _foreach_mul_", "torch_norm_then_mul",
                           _torch_sum_squares_scale_),
}


def _function_cases(function):
    """The cases of one function, in table order: l2fast, NumPy, torch."""
    own = [Case(function, f"l2fast.{function}", "l2fast", "l2fast", "l2fast", _l2fast(function))]
    if function == "sum_squares":
        own = [dataclasses.replace(own[0], label="l2fast.sum_squares(list)"),
               Case(function, "l2fast ParamList.sum_squares()", "l2fast", "l2fast_paramlist",
                    "l2fast ParamList", _paramlist(function), l2fast.ParamList)]
    if function in ("sum_squares", "sum_squares_scale_"):  # the exact path
        own.append(Case(function, f"l2fast.{function}(reproducible=True)", "l2fast",
                        "l2fast_exact", "l2fast exact", _l2fast(function, reproducible=True)))
    numpy = [Case(function, label, "numpy", key, legend, _peer(fn))
             for label, key, legend, fn in _NUMPY[function]]
    label, key, fn = _TORCH[function]
    return own + numpy + [Case(function, label, "torch", key, "torch", _peer(fn), _torch_tensors)]


_CASES = tuple(c for function in FUNCTIONS for c in _function_cases(function))


def cases(functions=FUNCTIONS, torch=None):
    """The cases of `functions`, in table order.

    Parameters
    ----------
    functions : iterable of str
        Which of `FUNCTIONS` to include.
    torch : bool or None
        Include the torch peers; None: when torch is installed.

    Returns
    -------
    list of Case
    """
    if torch is None:
        torch = torch_available()
    functions = tuple(functions)
    unknown = set(functions) - set(FUNCTIONS)
    if unknown:
        raise ValueError(f"unknown functions {sorted(unknown)}")
    return [c for f in functions for c in _CASES
            if c.function == f and (torch or c.family != "torch")]


def small_array_cases(torch=None):
    """The cases of the many-small-arrays comparison (sum_squares only)."""
    return cases(("sum_squares",), torch=torch)


# -- the clipping comparison: torch tensors only ------------------------------

def _torch_parameters(arrays):
    """Parameters whose .grad is a tensor on each array's memory (what
    clip_grad_norm_ takes); the parameter shares it, and is never read."""
    import torch
    params = []
    for t in _torch_tensors(arrays):
        p = torch.nn.Parameter(t, requires_grad=False)
        p.grad = t
        params.append(p)
    return params


def _torch_clip(foreach):
    """``torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=foreach)``."""
    def clip(params, max_norm):
        import torch
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=foreach)
    return clip


def _torch_get_total_norm(ts):
    """``torch.nn.utils.get_total_norm(ts)``."""
    import torch
    return torch.nn.utils.get_total_norm(ts)


def _torch_foreach_norm(ts):
    """``torch._foreach_norm(ts)``, then the norm of the norms, as torch's
    get_total_norm does (in the tensors' dtype)."""
    import torch
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(ts)))


def _l2fast_torch(name):
    """make() of l2fast.torch's function `name` (imported when the case runs),
    with num_threads bound."""
    def make(threads):
        import l2fast.torch
        return functools.partial(getattr(l2fast.torch, name), num_threads=threads)
    return make


def clip_cases():
    """The cases of the clipping comparison, in table order: for global_norm
    and clip_grad_norm_, l2fast on a list of torch tensors, l2fast.torch's
    drop-in, then torch's own (the first torch row is what "× torch" is
    measured against).  Every case needs torch."""
    tensors, params = _torch_tensors, _torch_parameters
    return [
        Case("global_norm", "l2fast.global_norm(tensors)", "l2fast", "l2fast", "l2fast",
             _l2fast("global_norm"), tensors),
        Case("global_norm", "l2fast.torch.get_total_norm", "l2fast.torch", "l2fast_torch",
             "l2fast.torch", _l2fast_torch("get_total_norm"), tensors),
        Case("global_norm", "torch.nn.utils.get_total_norm", "torch", "torch_get_total_norm",
             "torch", _peer(_torch_get_total_norm), tensors),
        Case("global_norm", "torch._foreach_norm, norm of norms", "torch", "torch_foreach_norm",
             "torch _foreach", _peer(_torch_foreach_norm), tensors),
        Case("clip_grad_norm_", "l2fast.clip_grad_norm_(grads)", "l2fast", "l2fast", "l2fast",
             _l2fast("clip_grad_norm_"), tensors),
        Case("clip_grad_norm_", "l2fast.torch.clip_grad_norm_(params)", "l2fast.torch",
             "l2fast_torch", "l2fast.torch", _l2fast_torch("clip_grad_norm_"), params),
        Case("clip_grad_norm_", "torch clip_grad_norm_(foreach=True)", "torch",
             "torch_foreach", "torch", _peer(_torch_clip(True)), params),
        Case("clip_grad_norm_", "torch clip_grad_norm_(foreach=False)", "torch",
             "torch_loop", "torch loop", _peer(_torch_clip(False)), params),
    ]
