"""What the benchmarks run on: model shapes, filled arrays, and the bytes they move.

Bytes moved (read + written) per element of the model, as counted for GB/s
(`bytes_moved`, the one place this rule is written):

=====================  ===========  ==================================
function               bytes/elem   memory pattern (roof it is held to)
=====================  ===========  ==================================
sum_squares            1 itemsize   read
scale_                 2 itemsize   update (read, write back)
add_scaled_            3 itemsize   add (read dst and src, write dst)
sum_squares_scale_     2 itemsize   update
global_norm            1 itemsize   read
clip_grad_norm_        3 itemsize   read, then update (a norm pass, a scaling pass)
=====================  ===========  ==================================

Temporaries that an implementation allocates (NumPy's ``c * w``) are not
counted: GB/s measures the work, not the implementation's traffic.
"""
import importlib
import importlib.util
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import models, reference

FUNCTIONS = ("sum_squares", "scale_", "add_scaled_", "sum_squares_scale_")
#: The clipping comparison (torch tensors, beside torch.nn.utils; needs torch).
CLIP_FUNCTIONS = ("global_norm", "clip_grad_norm_")

#: Memory pattern of each function: which roof it is compared with.
PATTERN = {
    "sum_squares": "read",
    "scale_": "update",
    "add_scaled_": "add",
    "sum_squares_scale_": "update",
    "global_norm": "read",
    "clip_grad_norm_": "read+update",
}

#: Bytes read + written per element, in units of the itemsize ("a+b": a pass
#: of each pattern).
PASSES = {"read": 1, "update": 2, "add": 3, "read+update": 3}

#: --model names and the names of their shapes in `l2fast.models`.
SHIPPED_MODELS = {
    "resnet50": "resnet50",
    "bert-base": "bert-base-uncased",
    "gpt2": "gpt2",
}

#: Factor of the in-place scalings: alternately FACTOR and 1 / FACTOR, so
#: values stay bounded however often a case runs.
FACTOR = 0.999
#: alpha of add_scaled_: alternately +ALPHA and -ALPHA.
ALPHA = 1e-3

#: The many-small-arrays workload: 1,000 arrays of 64 float32.
SMALL_ARRAYS = (1000, 64)
#: The many-small-tensors clipping workload: 2,000 float32 tensors of 64 x 32.
SMALL_TENSORS = (2000, (64, 32))


def bytes_moved(kind, nbytes):
    """Bytes read + written by one call.

    Parameters
    ----------
    kind : str
        One of `FUNCTIONS`, or a memory pattern ("read", "update", "add").
    nbytes : int
        Bytes of the arrays the call is about: the weights (for "add", one
        of its two inputs).

    Returns
    -------
    int
    """
    return PASSES[PATTERN.get(kind, kind)] * nbytes


def roof_gbps(roof_entry, pattern):
    """The roof of `pattern` in GB/s: a measured one, or for "a+b" one pass
    of each at its own roof (bytes of both over the time of both)."""
    parts = pattern.split("+")
    if len(parts) == 1:
        return roof_entry[pattern]["gbps"]
    return sum(PASSES[p] for p in parts) / sum(PASSES[p] / roof_entry[p]["gbps"] for p in parts)


def footprint_bytes(function, nbytes):
    """Bytes of the arrays a call of `function` touches: the weights, and
    the gradients too for add_scaled_."""
    return (2 if PATTERN[function] == "add" else 1) * nbytes


def bytes_moved_rule(functions=FUNCTIONS):
    """The rule of `bytes_moved` for `functions` in words, for the tables' footnotes.

    Returns
    -------
    str
        ``"N·itemsize ×1 sum_squares, ×2 scale_ and sum_squares_scale_, ×3 add_scaled_"``
        for the four core functions.
    """
    by_passes = {}
    for function in functions:
        by_passes.setdefault(bytes_moved(function, 1), []).append(function)
    return "N·itemsize " + ", ".join(f"×{k} {' and '.join(fs)}"
                                     for k, fs in sorted(by_passes.items()))


def alternating(first, second):
    """A callable returning first, second, first, ... on successive calls.

    In-place cases alternate their factor (c, 1/c) or their sign so that
    values stay bounded however often a case runs.
    """
    return itertools.cycle((first, second)).__next__


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
    return Shapes(model, tuple(models.shapes(SHIPPED_MODELS[model])))


def torch_available():
    """True when torch can be imported (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def torch_model_shapes(spec):
    """Shapes of the parameters of a user's torch module, given as ``module:attr``.

    `attr` (dotted names allowed) is an ``nn.Module`` instance, or a class or
    function that returns one when called without arguments.

    Raises
    ------
    ValueError
        torch is missing, or `spec` does not name a module.
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


def small_tensor_shapes(count=SMALL_TENSORS[0], shape=SMALL_TENSORS[1]):
    """`count` arrays of `shape`: the many-small-tensors clipping workload."""
    return Shapes(f"{count} x {'x'.join(map(str, shape))}",
                  tuple((f"t{i}", tuple(shape)) for i in range(count)))


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------

DTYPES = ("float32", "float64", "float16", "bfloat16")


def bench_dtype(name):
    """The NumPy dtype of one of `DTYPES` (bfloat16: ml_dtypes')."""
    if str(name) == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ValueError("bfloat16 needs ml_dtypes: pip install ml_dtypes") from None
        return np.dtype(ml_dtypes.bfloat16)
    dtype = np.dtype(name)
    if dtype.name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype}")
    return dtype


class Workload:
    """A model's parameters filled with N(0, 0.02), ready to benchmark.

    Parameters
    ----------
    shapes : Shapes
    dtype : str or numpy dtype
        float32, float64, float16 or bfloat16 (needs ml_dtypes).
    seed : int
    lean : bool
        Only `params`: no `grads`, and `restore` does nothing (for runs of
        sum_squares and scale_ alone, whose alternating factors keep the
        values bounded).

    Attributes
    ----------
    params : list of ndarray
        The weights every case works on (in-place cases change them;
        `restore` puts the original values back).
    grads : list of ndarray
        dst arrays of add_scaled_, of the same shapes and dtype.
    exact : float
        `l2fast.reference.exact_sum_squares` of the original params.
    """

    def __init__(self, shapes, dtype=np.float32, seed=0, lean=False):
        self.shapes = shapes
        self.dtype = bench_dtype(dtype)
        rng = np.random.default_rng(seed)

        def fill(shape):
            a = rng.standard_normal(shape, dtype=np.float32)
            a *= np.float32(0.02)
            return a.astype(self.dtype, copy=False)

        self._original = [fill(s) for _, s in shapes.params]
        self.params = self._original if lean else [a.copy() for a in self._original]
        self.grads = None if lean else [fill(s) for _, s in shapes.params]
        self.exact = reference.exact_sum_squares(self._original)
        self._max_norm = math.sqrt(self.exact)

    @property
    def name(self):
        """The model's name."""
        return self.shapes.name

    @property
    def size(self):
        """Total number of elements of the params."""
        return self.shapes.size

    @property
    def nbytes(self):
        """Bytes of the params."""
        return self.size * self.dtype.itemsize

    def __len__(self):
        return len(self.params)

    def named(self):
        """The params as a dict {param name: array}."""
        return {name: a for (name, _), a in zip(self.shapes.params, self.params)}

    def restore(self):
        """Put the original values back into params (in place: views stay valid)."""
        if self.params is not self._original:  # lean: nothing kept to restore from
            for a, o in zip(self.params, self._original):
                np.copyto(a, o)
        self._max_norm = math.sqrt(self.exact)

    def clip_max_norm(self):
        """The max_norm of the next clipping call on params: FACTOR times the
        last one, from FACTOR times the norm of the original values.

        Every clipping case of a run clips the same params, so each call,
        whichever case makes it, scales them by about FACTOR: they always
        clip (and write), and stay far from underflow over the calls a
        benchmark makes.  `restore` starts again."""
        self._max_norm *= FACTOR
        return self._max_norm
