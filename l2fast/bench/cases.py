"""What the benchmarks compare: for each function, l2fast's call and its peers.

`python -m l2fast bench` and the pytest-benchmark suite in bench/ both build
their comparisons from `cases()`, so the two always time the same code.  A
case is one implementation of one function: l2fast's own call, the NumPy
loop a user would otherwise write (the baselines of `l2fast.reference`), or
a torch ``_foreach`` peer.
"""
import dataclasses
import functools
import operator
from typing import Callable

import numpy as np

import l2fast

from .. import reference
from .workloads import ALPHA, FACTOR, FUNCTIONS, alternating, torch_available


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
        "l2fast", "numpy" or "torch".
    key : str
        A short identifier, unique within the function (for test ids).
    legend : str
        Short name for plot legends (shared by cases that play the same part).
    make : callable
        ``make(threads) -> fn``, `fn` taking the arguments of `function`'s
        twin in `l2fast.reference`: ``(ws)``, ``(ws, c)`` or
        ``(gs, ws, alpha)``, the arrays as `wrap` hands them over.
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
        """True for the functions that return a sum of squares."""
        return self.function in ("sum_squares", "sum_squares_scale_")

    @property
    def id(self):
        """A short identifier for test ids: ``function-key``."""
        return f"{self.function}-{self.key}"

    def build(self, workload, threads):
        """``run()``: one call on `workload`, returning the sum of squares
        for sum-returning functions, else None.

        In-place calls alternate their factor between FACTOR and 1 / FACTOR
        (add_scaled_ its alpha between +ALPHA and -ALPHA), so values stay
        bounded however often `run` is called.
        """
        fn = self.make(threads)
        ws = self.wrap(workload.params)
        if self.function == "sum_squares":
            return lambda: fn(ws)
        if self.function == "add_scaled_":
            gs, alpha = self.wrap(workload.grads), alternating(ALPHA, -ALPHA)
            return lambda: fn(gs, ws, alpha())
        factor = alternating(FACTOR, 1 / FACTOR)
        return lambda: fn(ws, factor())


def _l2fast(name):
    """make() of l2fast's function `name`, with num_threads bound."""
    return lambda threads: functools.partial(getattr(l2fast, name), num_threads=threads)


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
