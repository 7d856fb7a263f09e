"""Views of non-NumPy inputs: DLPack and buffer objects, torch tensors.

Every input that is neither a NumPy array nor a plain torch tensor (those
are read without a view, see _tensor_read.pxi) passes through `as_array` once,
while the call is validated; so does a plain tensor the reader refuses, for
its error message.  It returns a NumPy array that *is* the object's memory,
or raises TypeError naming the input: l2fast never works on a copy.
`torch_view` is also how a table shows its tensors as NumPy arrays
(`ParamList.arrays`, the rare overlap confirmations).

torch is never imported here.  A tensor can only exist once its program has
imported torch, so ``sys.modules["torch"]`` is looked up, and only when an
input is not an array.
"""
import sys

import numpy as np

_REJECT = (list, tuple, dict, set, frozenset, str, bytes, int, float, complex, bool)

# DLPack device types (dlpack.h) that are not CPU memory, for error messages.
_DLPACK_DEVICES = {2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal",
                   9: "vpi", 10: "rocm", 11: "rocm_host", 13: "cuda_managed",
                   14: "oneapi"}
_DLPACK_CPU = 1
_NUMPY2 = int(np.__version__.split(".")[0]) >= 2

# How a torch bfloat16 tensor is seen without ml_dtypes: its bits as uint16,
# under this one dtype object, which the work table reads as bfloat16.
BFLOAT16_BITS = np.dtype(np.uint16, metadata={"l2fast": "bfloat16"})


def _describe(obj):
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def _torch_tensor_type():
    """torch.Tensor if the program has imported torch, else None."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None) if torch is not None else None


def torch_view(t, name):
    """The NumPy view of a dense CPU float tensor (or nn.Parameter), or
    TypeError naming `name`."""
    torch = sys.modules["torch"]
    if t.device.type != "cpu":
        raise TypeError(f"{name}: the tensor is on device '{t.device}'; l2fast works on "
                        "CPU memory only (.cpu() would make a copy, which an in-place "
                        "call could not update)")
    if t.layout != torch.strided:
        raise TypeError(f"{name}: {t.layout} tensors are not supported; expected a dense "
                        "(torch.strided) tensor")
    bfloat16 = t.dtype == torch.bfloat16
    if not bfloat16 and t.dtype not in (torch.float32, torch.float64, torch.float16):
        raise TypeError(f"{name}: dtype {t.dtype} is not supported; expected torch.float16, "
                        "torch.bfloat16, torch.float32 or torch.float64")
    # detach() shares the storage: in-place calls update the tensor itself,
    # as an optimizer step under torch.no_grad() would.
    try:
        if bfloat16:  # NumPy has no bfloat16: the same memory, as bits
            return t.detach().view(torch.int16).numpy().view(BFLOAT16_BITS)
        return t.detach().numpy()
    except (RuntimeError, TypeError) as e:  # e.g. a lazy negation bit, a tensor subclass
        raise TypeError(f"{name}: cannot view this {_describe(t)} as CPU memory without "
                        f"a copy ({e})") from None


def _check_dlpack_device(obj, name):
    """TypeError unless `obj.__dlpack_device__()` (when it has one) is the CPU."""
    device = getattr(obj, "__dlpack_device__", None)
    if device is None:
        return
    try:
        kind = int(device()[0])
    except Exception:  # an unusual __dlpack_device__: np.from_dlpack decides
        return
    if kind != _DLPACK_CPU:
        where = _DLPACK_DEVICES.get(kind, f"DLPack device type {kind}")
        raise TypeError(f"{name}: {_describe(obj)} is on device '{where}'; l2fast works "
                        "on CPU memory only")


def _buffer_view(obj):
    """np.asarray(obj) that raises instead of copying."""
    if _NUMPY2:
        return np.asarray(obj, copy=False)
    return np.asarray(memoryview(obj))  # NumPy 1.x: the buffer protocol is always a view


def as_array(obj, name, writeable):
    """A NumPy array sharing `obj`'s memory, or TypeError naming `name`.

    Parameters
    ----------
    obj : object
        A torch tensor, an object with ``__dlpack__``, or one NumPy can view
        through the buffer protocol or ``__array_interface__``.
    name : str
        How errors name the input, e.g. ``arrays['fc.weight']``.
    writeable : bool
        Whether the call writes to it.  Writeability itself is checked by
        the caller on the returned array (a DLPack export may be read-only).
    """
    if obj is None or isinstance(obj, _REJECT):
        raise TypeError(f"{name}: expected a NumPy array (or a CPU tensor) of float16, "
                        f"bfloat16, float32 or float64, got {_describe(obj)}")
    tensor = _torch_tensor_type()
    if tensor is not None and isinstance(obj, tensor):
        return torch_view(obj, name)
    dlpack = hasattr(obj, "__dlpack__")
    if dlpack:
        _check_dlpack_device(obj, name)
    try:
        return np.from_dlpack(obj) if dlpack else _buffer_view(obj)
    except (BufferError, TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name}: cannot use {_describe(obj)} without a copy ({e})") from None
