"""What the benchmarks compare: model shapes, filled workloads, and the cases.

`python -m l2fast bench` (l2fast/bench.py) and the pytest-benchmark suite in
bench/ both build their comparisons from `cases()`, so the two always time
the same code.  A case is one implementation of one function: l2fast's own
call, the NumPy loop a user would otherwise write, or a torch peer.

Bytes moved (read + written) per element of the model, as counted for GB/s:

=====================  ===========  ==================================
function               bytes/elem   memory pattern (roof it is held to)
=====================  ===========  ==================================
sum_squares            1 itemsize   read
scale_                 2 itemsize   update (read, write back)
add_scaled_            3 itemsize   add (read dst and src, write dst)
sum_squares_scale_     2 itemsize   update
=====================  ===========  ==================================

Temporaries that an implementation allocates (NumPy's ``c * w``) are not
counted: GB/s measures the work, not the implementation's traffic.
"""
import importlib
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import l2fast

MODELS_DIR = Path(__file__).parent / "models"

#: --model names and their files in l2fast/models.
SHIPPED_MODELS = {
    "resnet50": "resnet50.json",
    "bert-base": "bert-base-uncased.json",
    "gpt2": "gpt2.json",
}

FUNCTIONS = ("sum_squares", "scale_", "add_scaled_", "sum_squares_scale_")

#: Memory pattern of each function: which roof it is compared with.
PATTERN = {
    "sum_squares": "read",
    "scale_": "update",
    "add_scaled_": "add",
    "sum_squares_scale_": "update",
}

#: Bytes read + written per element, in units of the itemsize.
PASSES = {"read": 1, "update": 2, "add": 3}

#: Factor of the in-place scalings: alternately FACTOR and 1 / FACTOR, so
#: values stay bounded however often a case runs.
FACTOR = 0.999
#: alpha of add_scaled_: alternately +ALPHA and -ALPHA.
ALPHA = 1e-3

#: The many-small-arrays workload: 1,000 arrays of 64 float32.
SMALL_ARRAYS = (1000, 64)


def torch_available():
    """True when torch can be imported (without importing it)."""
    return importlib.util.find_spec("torch") is not None


# ---------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Shapes:
    """A model's parameter shapes.

    Attributes
    ----------
    name : str
        What the tables call it.
    params : tuple of (str, tuple of int)
        Parameter names and shapes, in model order.
    """

    name: str
    params: tuple

    @property
    def size(self):
        """Total number of elements."""
        return sum(math.prod(s) for _, s in self.params)


def read_shapes(path, name=None):
    """Shapes from a JSON file ``{"params": [{"name": ..., "shape": [...]}, ...]}``.

    The shipped files in l2fast/models have this format; ``"name"`` at the
    top level (else the file's stem) names the model, and a parameter's
    ``"name"`` may be omitted.

    Raises
    ------
    ValueError
        The file is not in that format.
    """
    path = Path(path)
    with open(path) as f:
        try:
            spec = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("params"), list):
        raise ValueError(f'{path}: expected {{"params": [{{"name": ..., "shape": [...]}}, ...]}}')
    params = []
    for i, p in enumerate(spec["params"]):
        shape = p.get("shape") if isinstance(p, dict) else None
        if (not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for d in shape)):
            raise ValueError(f"{path}: params[{i}] needs a \"shape\": a list of "
                             "non-negative integers")
        params.append((str(p.get("name", f"params[{i}]")), tuple(shape)))
    return Shapes(name or str(spec.get("name", path.stem)), tuple(params))


def shipped_shapes(model):
    """Shapes of a model shipped with l2fast: one of `SHIPPED_MODELS`."""
    if model not in SHIPPED_MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(SHIPPED_MODELS)}")
    return read_shapes(MODELS_DIR / SHIPPED_MODELS[model], name=model)


def torch_model_shapes(spec):
    """Shapes of the parameters of a user's torch module, given as ``module:attr``.

    `attr` (dotted names allowed) is an ``nn.Module`` instance, or a class or
    function that returns one when called without arguments.
    """
    if not torch_available():
        raise ValueError("--torch-model needs torch, which is not installed")
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--torch-model expects module:attr, got {spec!r}")
    import torch

    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"--torch-model: cannot import {module_name!r} ({e})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"--torch-model: {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, torch.nn.Module) and callable(obj):
        obj = obj()
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f"--torch-model: {spec} is a {type(obj).__qualname__}, "
                         "not a torch.nn.Module")
    params = tuple((n, tuple(p.shape)) for n, p in obj.named_parameters())
    return Shapes(attr.rsplit(".", 1)[-1], params)


def small_shapes(count=SMALL_ARRAYS[0], size=SMALL_ARRAYS[1]):
    """`count` arrays of `size` elements: where per-array overhead dominates."""
    return Shapes(f"{count} x {size}", tuple((f"a{i}", (size,)) for i in range(count)))


# ---------------------------------------------------------------------------
# The exact reference
# ---------------------------------------------------------------------------

_LONG_DOUBLE_OK = np.finfo(np.longdouble).nmant >= 63


def _fsum_sum_squares(arrays):
    parts = []
    for a in arrays:
        x = np.asarray(a, dtype=np.float64).ravel()
        for start in range(0, x.size, 1 << 20):
            b = x[start:start + (1 << 20)]
            hi = b * b
            c = b * 134217729.0  # 2**27 + 1: Dekker's split into two 26-bit halves
            bh = c - (c - b)
            bl = b - bh
            lo = ((bh * bh - hi) + 2.0 * bh * bl) + bl * bl
            parts.append(math.fsum(hi.tolist() + lo.tolist()))
    return math.fsum(parts)


def exact_sum_squares(arrays):
    """sum_i ||w_i||^2 to (nearly) the last bit: the benchmarks' reference.

    Uses x87 extended precision (64-bit mantissa: relative error ~1e-18 for
    10^8 terms) where NumPy's longdouble has it, else `math.fsum` over
    squares split exactly into two float64 halves.  Independent of l2fast's
    kernels; slow (about a second per 10^8 elements).
    """
    if not _LONG_DOUBLE_OK:
        return _fsum_sum_squares(arrays)
    total = np.longdouble(0)
    for a in arrays:
        x = np.asarray(a).ravel()
        for start in range(0, x.size, 1 << 22):
            b = x[start:start + (1 << 22)].astype(np.longdouble)
            total += np.sum(b * b)
    return float(total)


def relative_error(value, exact):
    """|value - exact| / |exact| (0 when both are 0)."""
    if exact == 0:
        return 0.0 if value == 0 else math.inf
    return abs(float(value) - exact) / abs(exact)


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------

class Workload:
    """A model's parameters filled with N(0, 0.02), ready to benchmark.

    Parameters
    ----------
    shapes : Shapes
    dtype : str or numpy dtype
        float32 or float64.
    seed : int

    Attributes
    ----------
    params : list of ndarray
        The weights every case works on (in-place cases change them;
        `restore` puts the original values back).
    grads : list of ndarray
        dst arrays of add_scaled_, of the same shapes and dtype.
    exact : float
        `exact_sum_squares` of the original params.
    """

    def __init__(self, shapes, dtype=np.float32, seed=0):
        self.shapes = shapes
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        rng = np.random.default_rng(seed)

        def fill(shape):
            a = rng.standard_normal(shape, dtype=np.float32)
            a *= np.float32(0.02)
            return a.astype(self.dtype, copy=False)

        self._original = [fill(s) for _, s in shapes.params]
        self.params = [a.copy() for a in self._original]
        self.grads = [fill(s) for _, s in shapes.params]
        self.exact = exact_sum_squares(self._original)

    @property
    def name(self):
        return self.shapes.name

    @property
    def size(self):
        return self.shapes.size

    @property
    def nbytes(self):
        """Bytes of the params."""
        return self.size * self.dtype.itemsize

    def __len__(self):
        return len(self.params)

    def restore(self):
        """Put the original values back into params (in place: views stay valid)."""
        for a, o in zip(self.params, self._original):
            np.copyto(a, o)


def bytes_moved(function, workload):
    """Bytes read + written by one call of `function` on `workload`."""
    return PASSES[PATTERN[function]] * workload.nbytes


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
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
    build : callable
        ``build(workload, threads) -> run``; ``run()`` does one call and
        returns the sum of squares for sum-returning functions, else None.
        `threads` is passed to l2fast as num_threads (None: OpenMP default);
        NumPy and torch are limited by the caller (threadpoolctl,
        torch.set_num_threads).
    """

    function: str
    label: str
    family: str
    key: str
    legend: str
    build: Callable

    @property
    def returns_sum(self):
        return self.function in ("sum_squares", "sum_squares_scale_")

    @property
    def id(self):
        """A short identifier for test ids: ``function-key``."""
        return f"{self.function}-{self.key}"


def _alternating(first, second):
    """An endless first, second, first, ... (keeps repeated in-place runs bounded)."""
    state = [second]

    def step():
        state[0] = first if state[0] == second else second
        return state[0]
    return step


# -- sum_squares ------------------------------------------------------------

def _l2fast_sum_squares(wl, threads):
    ws = wl.params
    return lambda: l2fast.sum_squares(ws, num_threads=threads)


def _paramlist_sum_squares(wl, threads):
    pl = l2fast.ParamList(wl.params)
    return lambda: pl.sum_squares(num_threads=threads)


def _numpy_vdot(wl, threads):
    ws = wl.params
    return lambda: float(sum(np.vdot(w.ravel(), w.ravel()) for w in ws))


def _numpy_einsum(wl, threads):
    ws = wl.params
    return lambda: float(sum(np.einsum("i,i->", w.ravel(), w.ravel()) for w in ws))


def _torch_tensors(arrays):
    import torch
    return [torch.from_numpy(a) for a in arrays]


def _torch_norm_sum(norms):
    import torch
    return torch.stack(norms).double().square().sum().item()


def _torch_foreach_norm(wl, threads):
    import torch
    ts = _torch_tensors(wl.params)
    return lambda: _torch_norm_sum(torch._foreach_norm(ts))


# -- scale_ -----------------------------------------------------------------

def _l2fast_scale(wl, threads):
    ws, factor = wl.params, _alternating(FACTOR, 1 / FACTOR)
    return lambda: l2fast.scale_(ws, factor(), num_threads=threads)


def _numpy_scale(wl, threads):
    ws, factor = wl.params, _alternating(FACTOR, 1 / FACTOR)

    def run():
        c = factor()
        for w in ws:
            w *= c
    return run


def _torch_foreach_mul(wl, threads):
    import torch
    ts, factor = _torch_tensors(wl.params), _alternating(FACTOR, 1 / FACTOR)

    def run():
        torch._foreach_mul_(ts, factor())
    return run


# -- add_scaled_ ------------------------------------------------------------

def _l2fast_add_scaled(wl, threads):
    gs, ws, alpha = wl.grads, wl.params, _alternating(ALPHA, -ALPHA)
    return lambda: l2fast.add_scaled_(gs, ws, alpha(), num_threads=threads)


def _numpy_add_scaled(wl, threads):
    gs, ws, alpha = wl.grads, wl.params, _alternating(ALPHA, -ALPHA)

    def run():
        c = alpha()
        for g, w in zip(gs, ws):
            g += c * w
    return run


def _torch_foreach_add(wl, threads):
    import torch
    gs, ws = _torch_tensors(wl.grads), _torch_tensors(wl.params)
    alpha = _alternating(ALPHA, -ALPHA)

    def run():
        torch._foreach_add_(gs, ws, alpha=alpha())
    return run


# -- sum_squares_scale_ -----------------------------------------------------

def _l2fast_fused(wl, threads):
    ws, factor = wl.params, _alternating(FACTOR, 1 / FACTOR)
    return lambda: l2fast.sum_squares_scale_(ws, factor(), num_threads=threads)


def _numpy_vdot_then_scale(wl, threads):
    ws, factor = wl.params, _alternating(FACTOR, 1 / FACTOR)

    def run():
        s = float(sum(np.vdot(w.ravel(), w.ravel()) for w in ws))
        c = factor()
        for w in ws:
            w *= c
        return s
    return run


def _torch_norm_then_mul(wl, threads):
    import torch
    ts, factor = _torch_tensors(wl.params), _alternating(FACTOR, 1 / FACTOR)

    def run():
        s = _torch_norm_sum(torch._foreach_norm(ts))
        torch._foreach_mul_(ts, factor())
        return s
    return run


_CASES = (
    # function, label, family, key, legend, build
    Case("sum_squares", "l2fast.sum_squares(list)", "l2fast", "l2fast", "l2fast",
         _l2fast_sum_squares),
    Case("sum_squares", "l2fast ParamList.sum_squares()", "l2fast", "l2fast_paramlist",
         "l2fast ParamList", _paramlist_sum_squares),
    Case("sum_squares", "NumPy sum(np.vdot(w, w))", "numpy", "numpy_vdot", "NumPy",
         _numpy_vdot),
    Case("sum_squares", "NumPy sum(np.einsum(w, w))", "numpy", "numpy_einsum", "NumPy einsum",
         _numpy_einsum),
    Case("sum_squares", "torch._foreach_norm", "torch", "torch_foreach_norm", "torch",
         _torch_foreach_norm),
    Case("scale_", "l2fast.scale_", "l2fast", "l2fast", "l2fast", _l2fast_scale),
    Case("scale_", "NumPy for w in ws: w *= c", "numpy", "numpy_loop", "NumPy", _numpy_scale),
    Case("scale_", "torch._foreach_mul_", "torch", "torch_foreach_mul", "torch",
         _torch_foreach_mul),
    Case("add_scaled_", "l2fast.add_scaled_", "l2fast", "l2fast", "l2fast", _l2fast_add_scaled),
    Case("add_scaled_", "NumPy for g, w: g += c * w", "numpy", "numpy_loop", "NumPy",
         _numpy_add_scaled),
    Case("add_scaled_", "torch._foreach_add_", "torch", "torch_foreach_add", "torch",
         _torch_foreach_add),
    Case("sum_squares_scale_", "l2fast.sum_squares_scale_", "l2fast", "l2fast", "l2fast",
         _l2fast_fused),
    Case("sum_squares_scale_", "NumPy vdot loop, then w *= c", "numpy", "numpy_vdot_then_scale",
         "NumPy", _numpy_vdot_then_scale),
    Case("sum_squares_scale_", "torch._foreach_norm + _foreach_mul_", "torch",
         "torch_norm_then_mul", "torch", _torch_norm_then_mul),
)


def cases(functions=FUNCTIONS, torch=None):
    """The cases of `functions`, in table order.

    Parameters
    ----------
    functions : iterable of str
        Which of `FUNCTIONS` to include.
    torch : bool or None
        Include the torch peers; None: when torch is installed.
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
