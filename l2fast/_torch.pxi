# torch tensors read without a view, and the autograd rules of in-place calls
# on them (included by _table.pyx).
#
# A plain CPU tensor or nn.Parameter is read into a Layout without a NumPy
# view or a DLPack capsule: by one C call when torch offers DLPack's C
# exchange API, else by a few attribute calls (_tensor_read.pxi), plus
# is_neg().  Anything else about a tensor (another device or layout,
# another dtype, a lazy negation, a subclass) goes through
# _interop.as_array, which views it or says why it cannot.
#
# torch is never imported here: a tensor can only exist once the program
# has imported torch, so sys.modules["torch"] is looked up, once.
#
# In-place calls treat tensors as torch's own in-place ops do: a tensor that
# requires grad is refused while grad mode is on, an inference tensor
# outside inference mode, and every tensor written gets its version counter
# bumped (Table.wrote), so that autograd notices the change.

include "_tensor_read.pxi"

cdef object _TENSOR = None       # torch.Tensor, once the program has imported torch
cdef object _PARAMETER = None    # torch.nn.Parameter
cdef object _F32 = None, _F64 = None, _F16 = None, _BF16 = None
cdef object _grad_enabled = None, _inference_enabled = None, _increment_version = None


cdef bint _torch_loaded() except -1:
    """True once torch is imported (its types and dtypes are then cached)."""
    global _TENSOR, _PARAMETER, _F32, _F64, _F16, _BF16
    global _grad_enabled, _inference_enabled, _increment_version
    if _TENSOR is not None:
        return True
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        found = (torch.Tensor, torch.nn.Parameter, torch.float32, torch.float64,
                 torch.float16, torch.bfloat16, torch.is_grad_enabled,
                 torch.is_inference_mode_enabled,
                 getattr(torch._C, "_increment_version", None)
                 or torch.autograd.graph.increment_version)
    except AttributeError:  # torch is still being imported
        return False
    (_PARAMETER, _F32, _F64, _F16, _BF16, _grad_enabled, _inference_enabled,
     _increment_version) = found[1:]
    _set_fields(found[:2])
    _find_dlpack(found[0])
    _TENSOR = found[0]
    return True


def grads_of(list params):
    """``[p.grad for p in params if p.grad is not None]`` (each .grad read once,
    a plain tensor's through its field), and the positions of those
    parameters, or None when every parameter has a grad."""
    cdef Py_ssize_t i, n = len(params)
    cdef list grads = [], positions = None
    for i in range(n):
        p = params[i]
        g = field(p, GRAD) if plain_tensor(p) else p.grad
        if g is None:
            if positions is None:  # the first parameter without a grad
                positions = list(range(i))
        else:
            grads.append(g)
            if positions is not None:
                positions.append(i)
    return grads, None if positions is None else tuple(positions)


cdef inline bint plain_tensor(object obj) except -1:
    """Is `obj` a torch.Tensor or an nn.Parameter (not another subclass)?"""
    if _TENSOR is None and not _torch_loaded():
        return False
    return type(obj) is _TENSOR or type(obj) is _PARAMETER


cdef bint is_tensor(object obj) except -1:
    """Is `obj` a torch tensor of any class?"""
    if _TENSOR is None and not _torch_loaded():
        return False
    return isinstance(obj, _TENSOR)


cdef bint tensor_layout(object t, Layout* out) except -1:
    """Fill `out` (shape and strides too) from a plain tensor; False (nothing
    raised) when the tensor cannot be used as it is: not on the CPU, not
    dense, a lazy negation, a dtype the kernels do not run, or not aligned."""
    if not (dlpack_layout(t, out) if _dlpack is not NULL else fields_layout(t, out)):
        return False
    if field(t, IS_NEG):
        return False
    return out.size == 0 or <uintptr_t> out.data % _ITEMSIZE[out.dtype] == 0


cdef int _note_written(Table t, object obj, Py_ssize_t i, bint plain) except -1:
    """Record tensor `obj` (array i; a plain tensor, or a subclass seen through
    a view) as written by in-place calls on `t`."""
    if plain:
        t._nplain += 1
    else:
        if t._subclassed is None:
            t._subclassed = []
        t._subclassed.append((i, obj))
    try:  # a plain attribute read; only inference tensors have no version counter
        field(obj, VERSION) if plain else obj._version
    except RuntimeError:
        inference = obj.is_inference()
    else:
        inference = False
    if inference:
        if t._inference is None:
            t._inference = []
        t._inference.append(i)
    return 0


cdef int _collect_written(Table t) except -1:
    """Gather the tensors `t` writes, for their version counters: the arrays
    themselves when they are all plain tensors (the usual case: no list)."""
    cdef Py_ssize_t i
    if t._nplain == t.narrays and t._subclassed is None:
        t._written = t.arrays if t.narrays else None
    elif t._nplain or t._subclassed:
        t._written = [t.arrays[i] for i in range(t.narrays) if plain_tensor(t.arrays[i])]
        t._written += [obj for _, obj in (t._subclassed or ())]
    return 0


cdef int check_torch_writes(Table t) except -1:
    """RuntimeError, as torch's in-place ops raise it, unless every tensor
    `t` writes may be written now (grad mode and requires_grad read now)."""
    cdef Py_ssize_t i
    if t._written is None:
        return 0
    if t._inference and not _inference_enabled():
        raise RuntimeError(
            f"{_name(t, 0, min(t._inference))} is an inference tensor (made under "
            "torch.inference_mode()); torch does not allow changing it in place outside "
            "inference mode: call l2fast under torch.inference_mode(), or pass a clone "
            "(no array was changed)")
    if not _grad_enabled():
        return 0
    for i in range(t.narrays):
        if t._nplain and plain_tensor(t.arrays[i]):
            _check_grad(t, t.arrays[i], i, True)
    for i, obj in t._subclassed or ():
        _check_grad(t, obj, i, False)
    return 0


cdef int _check_grad(Table t, object obj, Py_ssize_t i, bint plain) except -1:
    """RuntimeError if tensor `obj` (array i) requires grad (grad mode is on)."""
    if field(obj, REQUIRES_GRAD) if plain else obj.requires_grad:
        what = ("is a leaf tensor that requires grad: torch does not allow changing it "
                "in place" if obj.is_leaf else
                "requires grad: autograd would not see l2fast's in-place change")
        raise RuntimeError(
            f"{_name(t, 0, i)} {what} while grad mode is on; wrap the call in "
            "`with torch.no_grad():`, as optimizers do (no array was changed)")
    return 0


cdef int bump_versions(object tensors) except -1:
    """Bump the version counters of `tensors`, as torch's in-place ops do
    (inference tensors have none, and are left alone by torch)."""
    _increment_version(tensors)
    return 0
