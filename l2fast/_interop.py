"""Views of non-NumPy inputs: torch tensors, DLPack and buffer objects.

Every input that is not a NumPy array passes through `as_array` once, while
the call is validated.  It returns a NumPy array that *is* the object's
memory, or raises TypeError: l2fast never works on a copy.  torch is never
imported here; a tensor's own module is used when one is given.
"""
import sys

import numpy as np

_REJECT = (list, tuple, dict, set, str, bytes, int, float, complex, bool)


def _describe(obj):
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def _torch_view(t, name):
    torch = sys.modules["torch"]
    if t.device.type != "cpu":
        raise TypeError(f"{name}: the tensor is on {t.device}; l2fast works on CPU memory "
                        "(move it with .cpu(), which makes a copy)")
    if t.layout != torch.strided:
        raise TypeError(f"{name}: {t.layout} tensors are not supported; expected a dense tensor")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name}: dtype {t.dtype} is not supported; expected torch.float32 "
                        "or torch.float64")
    # detach() shares the storage: in-place calls update the tensor itself,
    # as an optimizer step under torch.no_grad() would.
    return t.detach().numpy()


def as_array(obj, name, writeable):
    """A NumPy array sharing `obj`'s memory, or TypeError naming `name`."""
    if isinstance(obj, _REJECT) or obj is None:
        raise TypeError(f"{name}: expected a NumPy array (or a CPU tensor) of float32 or "
                        f"float64, got {_describe(obj)}")
    if type(obj).__module__.split(".")[0] == "torch" and "torch" in sys.modules:
        return _torch_view(obj, name)
    try:
        if hasattr(obj, "__dlpack__"):
            return np.from_dlpack(obj)
        return np.asarray(obj, copy=False)
    except (BufferError, TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name}: cannot use {_describe(obj)} without a copy ({e})") from None
