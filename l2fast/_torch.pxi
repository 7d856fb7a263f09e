# torch tensors read straight from their fields (included by _table.pyx).
#
# A plain CPU tensor or nn.Parameter is read with a few attribute calls
# (dtype, is_cpu, is_neg(), data_ptr(), shape, is_contiguous(), and
# stride() only when it is not contiguous) into a Layout: no NumPy view,
# no DLPack capsule.  Anything else about a tensor (another device or
# layout, another dtype, a lazy negation, a subclass) goes through
# _interop.as_array, which views it or says why it cannot.
#
# torch is never imported here: a tensor can only exist once the program
# has imported torch, so sys.modules["torch"] is looked up, once.
#
# In-place calls treat tensors as torch's own in-place ops do: a tensor that
# requires grad is refused while grad mode is on, an inference tensor
# outside inference mode, and every tensor written gets its version counter
# bumped (Table.wrote), so that autograd notices the change.

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
    _TENSOR = found[0]
    return True


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


cdef bint tensor_layout(object t, Layout* out, bint dims) except -1:
    """Fill `out` from a plain tensor's fields; False (nothing raised) when
    the tensor cannot be used as it is: not on the CPU, not dense, a lazy
    negation, or a dtype the kernels do not run."""
    cdef int d, nd
    cdef int64_t size = 1, step
    cdef uintptr_t ptr
    dt = t.dtype
    if dt is _F32:
        out.dtype = L2F_F32
    elif dt is _BF16:
        out.dtype = L2F_BF16
    elif dt is _F16:
        out.dtype = L2F_F16
    elif dt is _F64:
        out.dtype = L2F_F64
    else:
        return False
    if not t.is_cpu or t.is_neg():
        return False
    try:  # the layout needs no call of its own:
        ptr = t.data_ptr()  # raises for a tensor without storage (sparse, mkldnn)
        shape = t.shape     # raises for a nested tensor
    except RuntimeError:
        return False
    nd = len(shape)
    if nd > MAXDIMS:
        return False
    for d in range(nd):
        out.shape[d] = shape[d]
        size *= out.shape[d]
    out.data = <char*> ptr
    out.size = size
    out.ndim = nd
    out.has_dims = True
    if t.is_contiguous():
        out.contig = 3 if nd <= 1 else 1
        if dims:
            step = 1
            for d in range(nd - 1, -1, -1):
                out.strides[d] = step
                step *= out.shape[d]
    else:
        out.contig = 0
        strides = t.stride()
        for d in range(nd):
            out.strides[d] = strides[d]
    return True


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
        obj._version
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
            _check_grad(t, t.arrays[i], i)
    for i, obj in t._subclassed or ():
        _check_grad(t, obj, i)
    return 0


cdef int _check_grad(Table t, object obj, Py_ssize_t i) except -1:
    """RuntimeError if tensor `obj` (array i) requires grad (grad mode is on)."""
    if obj.requires_grad:
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
