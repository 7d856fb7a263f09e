# How a plain torch tensor's layout is read (included by _torch.pxi).
#
# When torch offers DLPack's C exchange API at version 1.3 or later (torch
# 2.13 does), by it: the function pointer
# `dltensor_from_py_object_no_sync` of the capsule
# torch.Tensor.__dlpack_c_exchange_api__ fills a DLTensor (data, device,
# dtype, shape, strides: torch's own arrays, no allocation) in one C call,
# about 40 ns a tensor.  Otherwise by attribute calls: dtype, is_cpu,
# data_ptr(), shape, is_contiguous() (stride() when it is not), each sent
# straight to the C function of torch's descriptor (l2f_read): ~0.5 us.
# Neither says whether a tensor is a lazy negation: is_neg() is asked too.

from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from *:
    """
    /* An attribute of an exact torch.Tensor or nn.Parameter read through the
       C function its descriptor holds: what `getattr` ends in, without the
       lookup.  Used only for names both classes inherit from torch's C base
       class (checked when torch is first seen); anything else, by name. */
    enum { L2F_ATTR, L2F_CALL, L2F_GETSET, L2F_NOARGS, L2F_ARGS_KW };
    typedef struct { PyObject *descr, *name; int kind; } l2f_field;
    static PyObject *l2f_no_args = NULL;

    static int l2f_field_set(l2f_field *f, PyObject *descr, PyObject *name, int call) {
        f->descr = descr; f->name = name; f->kind = call ? L2F_CALL : L2F_ATTR;
        if (descr == Py_None) return 0;
        if (!call && Py_TYPE(descr) == &PyGetSetDescr_Type
                && ((PyGetSetDescrObject *)descr)->d_getset->get != NULL) {
            f->kind = L2F_GETSET;
        } else if (call && Py_TYPE(descr) == &PyMethodDescr_Type) {
            int flags = ((PyMethodDescrObject *)descr)->d_method->ml_flags & ~METH_COEXIST;
            if (flags == METH_NOARGS) f->kind = L2F_NOARGS;
            else if (flags == (METH_VARARGS | METH_KEYWORDS)) f->kind = L2F_ARGS_KW;
        }
        if (l2f_no_args == NULL && (l2f_no_args = PyTuple_New(0)) == NULL) return -1;
        return 0;
    }

    static PyObject *l2f_read(const l2f_field *f, PyObject *obj) {
        PyMethodDef *m;
        switch (f->kind) {
        case L2F_GETSET: {
            PyGetSetDef *g = ((PyGetSetDescrObject *)f->descr)->d_getset;
            return g->get(obj, g->closure);
        }
        case L2F_NOARGS:
            return ((PyMethodDescrObject *)f->descr)->d_method->ml_meth(obj, NULL);
        case L2F_ARGS_KW:
            m = ((PyMethodDescrObject *)f->descr)->d_method;
            return ((PyCFunctionWithKeywords)(void (*)(void))m->ml_meth)(obj, l2f_no_args, NULL);
        case L2F_CALL:
            return PyObject_CallMethodNoArgs(obj, f->name);
        default:
            return PyObject_GetAttr(obj, f->name);
        }
    }
    """
    ctypedef struct l2f_field:
        pass
    int l2f_field_set(l2f_field* f, object descr, object name, bint call) except -1
    object l2f_read(const l2f_field* f, object obj)

# The fields read, in this order in _FIELDS (names ending in "()" are called).
cdef enum:
    DTYPE, IS_CPU, IS_NEG, DATA_PTR, SHAPE, IS_CONTIGUOUS, STRIDE, VERSION, \
    REQUIRES_GRAD, GRAD, NFIELDS
_FIELD_NAMES = ("dtype", "is_cpu", "is_neg()", "data_ptr()", "shape", "is_contiguous()",
                "stride()", "_version", "requires_grad", "grad")
cdef l2f_field _FIELDS[NFIELDS]
cdef list _field_refs = []   # keeps the descriptors and names of _FIELDS alive
from types import GetSetDescriptorType as _GETSET_TYPE, MethodDescriptorType as _METHOD_TYPE


cdef object _c_descriptor(tuple classes, str name):
    """The descriptor `name` resolves to on instances of every class in
    `classes`, when it is one C descriptor of a base they share; else None."""
    found = None
    for cls in classes:
        if cls.__getattribute__ is not object.__getattribute__:
            return None
        owner = next((c for c in cls.__mro__ if name in vars(c)), None)
        d = vars(owner)[name] if owner is not None else None
        if type(d) not in (_GETSET_TYPE, _METHOD_TYPE) or (found is not None and d is not found):
            return None
        found = d
    return found


cdef int _set_fields(tuple classes) except -1:
    cdef int k
    for k in range(NFIELDS):
        name = _FIELD_NAMES[k].removesuffix("()")
        descr = _c_descriptor(classes, name)
        _field_refs.append((descr, name))
        l2f_field_set(&_FIELDS[k], descr, name, _FIELD_NAMES[k].endswith("()"))
    return 0


cdef inline object field(object t, int k):
    """Field k of a plain tensor (DTYPE, IS_CPU, ...): `t.dtype`, `t.is_neg()`..."""
    return l2f_read(&_FIELDS[k], t)


cdef extern from *:
    """
    /* DLPack 1.3 (dlpack.h), the part of its C exchange API used here. */
    typedef struct { int32_t device_type, device_id; } l2f_dl_device;
    typedef struct { uint8_t code, bits; uint16_t lanes; } l2f_dl_dtype;
    typedef struct {
        void *data; l2f_dl_device device; int32_t ndim; l2f_dl_dtype dtype;
        int64_t *shape, *strides; uint64_t byte_offset;
    } l2f_dl_tensor;
    typedef int (*l2f_dl_from_py)(void *py_object, l2f_dl_tensor *out);
    typedef struct {
        uint32_t major, minor; void *prev_api;
        void *managed_tensor_allocator, *managed_tensor_from_py_object_no_sync,
             *managed_tensor_to_py_object_no_sync;
        l2f_dl_from_py dltensor_from_py_object_no_sync;
        void *current_work_stream;
    } l2f_dl_exchange_api;
    enum { L2F_DL_CPU = 1, L2F_DL_FLOAT = 2, L2F_DL_BFLOAT = 4 };
    """
    ctypedef struct l2f_dl_device:
        int32_t device_type
    ctypedef struct l2f_dl_dtype:
        uint8_t code, bits
        uint16_t lanes
    ctypedef struct l2f_dl_tensor:
        void* data
        l2f_dl_device device
        int32_t ndim
        l2f_dl_dtype dtype
        int64_t* shape
        int64_t* strides
        uint64_t byte_offset
    ctypedef int (*l2f_dl_from_py)(void* py_object, l2f_dl_tensor* out) except -1
    ctypedef struct l2f_dl_exchange_api:
        uint32_t major, minor
        l2f_dl_from_py dltensor_from_py_object_no_sync
    enum:
        L2F_DL_CPU, L2F_DL_FLOAT, L2F_DL_BFLOAT


cdef l2f_dl_from_py _dlpack_api = NULL  # torch's dltensor_from_py_object_no_sync, or NULL
cdef l2f_dl_from_py _dlpack = NULL      # the same while tensors are read by it


def tensor_reader(str name=None):
    """How plain tensors are read: "dlpack" (DLPack's C exchange API) or
    "fields" (attribute calls).  `name` switches to that reader ("dlpack"
    only when torch offers it), for tests; returns the reader before."""
    global _dlpack
    if name not in (None, "dlpack", "fields"):
        raise ValueError(f'reader must be "dlpack" or "fields", not {name!r}')
    _torch_loaded()
    before = "dlpack" if _dlpack is not NULL else "fields"
    if name == "dlpack" and _dlpack_api is NULL:
        raise ValueError("this torch has no DLPack C exchange API")
    if name is not None:
        _dlpack = _dlpack_api if name == "dlpack" else NULL
    return before


cdef int _find_dlpack(object tensor_class) except -1:
    """Take DLPack's C exchange API from torch when it offers version 1.3+."""
    global _dlpack, _dlpack_api
    cdef l2f_dl_exchange_api* api
    capsule = getattr(tensor_class, "__dlpack_c_exchange_api__", None)
    if capsule is None or not PyCapsule_IsValid(capsule, "dlpack_exchange_api"):
        return 0
    api = <l2f_dl_exchange_api*> PyCapsule_GetPointer(capsule, "dlpack_exchange_api")
    if api.major == 1 and api.minor >= 3:
        _dlpack = _dlpack_api = api.dltensor_from_py_object_no_sync
    return 0


cdef int _dl_dtype(l2f_dl_dtype dt) noexcept:
    """The dtype code of a DLPack dtype, or -1."""
    if dt.lanes != 1:
        return -1
    if dt.code == L2F_DL_FLOAT:
        return L2F_F32 if dt.bits == 32 else L2F_F64 if dt.bits == 64 else \
            L2F_F16 if dt.bits == 16 else -1
    return L2F_BF16 if dt.code == L2F_DL_BFLOAT and dt.bits == 16 else -1


cdef bint dlpack_layout(object t, Layout* out) except -1:
    """Fill `out` from the DLTensor torch describes `t` by; False when torch
    cannot describe it (no storage, nested, meta) or it is not a CPU tensor
    of a dtype the kernels run."""
    cdef l2f_dl_tensor dl
    cdef int d, nd
    cdef int64_t size = 1, c_step = 1
    try:
        _dlpack(<void*> t, &dl)
    except (RuntimeError, BufferError, TypeError):
        return False
    out.dtype = _dl_dtype(dl.dtype)
    nd = dl.ndim
    if out.dtype < 0 or dl.device.device_type != L2F_DL_CPU or nd > MAXDIMS:
        return False
    for d in range(nd):
        out.shape[d] = dl.shape[d]
        size *= dl.shape[d]
    for d in range(nd - 1, -1, -1):  # strides: torch's, or C order when NULL
        out.strides[d] = dl.strides[d] if dl.strides != NULL else c_step
        c_step *= out.shape[d]
    out.data = <char*> dl.data + dl.byte_offset
    out.size = size
    out.ndim = nd
    out.has_dims = True
    _set_contig(out)
    return True


cdef void _set_contig(Layout* out) noexcept:
    """out.contig from out's shape and strides (in elements), as NumPy's
    flags: 1 C order, 2 Fortran order, 3 both (size 0 too), 0 neither."""
    cdef int d
    cdef int64_t c_step = 1, f_step = 1
    cdef bint c = True, f = True
    for d in range(out.ndim - 1, -1, -1):
        c = c and (out.shape[d] == 1 or out.strides[d] == c_step)
        c_step *= out.shape[d]
    for d in range(out.ndim):
        f = f and (out.shape[d] == 1 or out.strides[d] == f_step)
        f_step *= out.shape[d]
    out.contig = 3 if out.size == 0 else (1 if c else 0) | (2 if f else 0)


cdef bint fields_layout(object t, Layout* out) except -1:
    """Fill `out` from a plain tensor's fields (and is_contiguous()); False
    when it is not on the CPU, has no dense storage, or has another dtype."""
    cdef int d, nd
    cdef int64_t size = 1, step
    cdef uintptr_t ptr
    dt = field(t, DTYPE)
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
    if not field(t, IS_CPU):
        return False
    try:  # the layout needs no call of its own:
        ptr = field(t, DATA_PTR)  # raises for a tensor without storage (sparse, mkldnn)
        shape = field(t, SHAPE)   # raises for a nested tensor
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
    if field(t, IS_CONTIGUOUS):
        step = 1
        for d in range(nd - 1, -1, -1):
            out.strides[d] = step
            step *= out.shape[d]
    else:
        strides = field(t, STRIDE)
        for d in range(nd):
            out.strides[d] = strides[d]
    _set_contig(out)
    return True
