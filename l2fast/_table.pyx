# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Validation of a ragged list of arrays, and the work table the kernels run on.

Everything here runs with the GIL, once, before any kernel: a call that is
rejected raises before a single element is read or written.  Each array is
read into a `Layout` (pointer, dtype code, element count, and shape and
strides in elements when needed): from a NumPy array, or straight from a
torch tensor's fields (_torch.pxi), without a NumPy view.  Pieces, extents
and overlap checks are made from the Layout alone.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, int32_t, uint8_t, uintptr_t
from libc.stdlib cimport malloc, realloc, free, qsort

import sys

import numpy as np

from l2fast._interop import as_array, torch_view, BFLOAT16_BITS as _BFLOAT16_BITS

cnp.import_array()

cdef extern from "_work.h" nogil:
    enum: L2F_F32, L2F_F64, L2F_F16, L2F_BF16, L2F_NDTYPES

# Table modes (see _table.pxd)
READ = MODE_READ
INPLACE = MODE_INPLACE
INPLACE_LATER = MODE_INPLACE_LATER

# The dtypes the kernels run on: NumPy type number -> dtype code of _loops.h,
# and each code's item size.  Adding a dtype: a row here and in _loops.h.
# bfloat16 has no NumPy type number of its own: ml_dtypes registers one at
# import (added here when first seen), and a torch bfloat16 tensor is viewed
# as uint16 under BFLOAT16_BITS (see _interop).  torch dtypes: _torch.pxi.
cdef dict _DTYPE_CODES = {cnp.NPY_FLOAT: L2F_F32, cnp.NPY_DOUBLE: L2F_F64,
                          np.dtype(np.float16).num: L2F_F16}
cdef int _USERDEF = 256  # NPY_USERDEF: the first type number of a registered dtype
cdef int64_t _ITEMSIZE[L2F_NDTYPES]
_ITEMSIZE[L2F_F32] = 4
_ITEMSIZE[L2F_F64] = 8
_ITEMSIZE[L2F_F16] = 2
_ITEMSIZE[L2F_BF16] = 2
SUPPORTED = "float16, bfloat16, float32 or float64"
_CODE_NAMES = {L2F_F32: "float32", L2F_F64: "float64", L2F_F16: "float16",
               L2F_BF16: "bfloat16"}
DTYPE_NAMES = tuple([_CODE_NAMES[k] for k in range(L2F_NDTYPES)])  # by dtype code


cdef int dtype_code(cnp.ndarray arr):
    """The dtype code of `arr`'s elements, or -1 if the kernels cannot read them."""
    cdef int num = cnp.PyArray_TYPE(arr)
    code = _DTYPE_CODES.get(num)
    if code is not None:
        return code
    dt = arr.dtype
    if num == cnp.NPY_USHORT:
        return L2F_BF16 if dt is _BFLOAT16_BITS else -1
    if num >= _USERDEF and dt.itemsize == 2 and dt.name == "bfloat16" \
            and getattr(dt.type, "__module__", "").split(".")[0] == "ml_dtypes":
        _DTYPE_CODES[num] = L2F_BF16
        return L2F_BF16
    return -1

cdef str label(str base, tuple names, Py_ssize_t i):
    """How an error names array i: ``arrays[3]`` or ``arrays['fc.weight']``."""
    if names is None:
        return f"{base}[{i}]"
    return f"{base}[{names[i]!r}]"


cdef str _name(Table t, int role, Py_ssize_t i):
    """How errors name operand `role` (0: dst, 1: src) of pair i."""
    return label(t.src_label if role else t.dst_label, t.names, i)


include "_layout.pxi"
include "_overlap.pxi"
include "_torch.pxi"

cdef object _masked = None


cdef tuple _as_arrays(Table t, tuple arrays, int role):
    """`arrays` with every input that is neither an ndarray nor a plain torch
    tensor replaced by its view from `as_array` (DLPack and buffer objects,
    tensor subclasses), which raises TypeError rather than copy.  Plain
    tensors are read later, without a view (_tensor_read.pxi)."""
    cdef Py_ssize_t i, n = len(arrays)
    cdef list out = None
    cdef bint write = role == 0 and t.mode != MODE_READ
    for i in range(n):
        obj = arrays[i]
        if cnp.PyArray_Check(obj) or plain_tensor(obj):
            continue
        if out is None:
            out = list(arrays)
        out[i] = as_array(obj, _name(t, role, i), write)
        if write and is_tensor(obj):  # a subclass: its checks and version counter
            _note_written(t, obj, i, False)
    return arrays if out is None else tuple(out)


cdef int check_array(object a, Table t, int role, Py_ssize_t i, bint writeable) except -1:
    """Raise unless `a` is an array the kernels can use without a copy."""
    global _masked
    if not cnp.PyArray_Check(a):
        raise TypeError(
            f"{_name(t, role, i)}: expected a NumPy array of {SUPPORTED}, got "
            f"{type(a).__module__}.{type(a).__qualname__}")
    if type(a) is not np.ndarray:
        if _masked is None:
            _masked = np.ma.MaskedArray
        if isinstance(a, _masked):
            raise TypeError(f"{_name(t, role, i)}: masked arrays are not supported (the mask "
                            "would be ignored); pass the .data array, or fill the masked values")
    cdef cnp.ndarray arr = <cnp.ndarray> a
    if dtype_code(arr) < 0 or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(
            f"{_name(t, role, i)}: dtype {arr.dtype.str} ({arr.dtype}) is not supported; "
            f"expected {SUPPORTED} in native byte order")
    if not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{_name(t, role, i)}: the array is not aligned to its dtype; the "
                         "kernels need aligned memory (np.require(a, requirements='A') makes "
                         "an aligned copy)")
    if writeable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{_name(t, role, i)} is read-only; an in-place call needs a "
                         "writeable array (no array was changed)")
    return 0


cdef class Table:
    """The validated arrays of one call and the pieces the kernels run on.

    Parameters
    ----------
    arrays : tuple
        The primary (written, for in-place calls) operand: NumPy arrays,
        torch tensors (read without a view), or objects `as_array` views.
    names : tuple of str or None
        Names used in error messages instead of indices.
    src : tuple or None
        Second operand, paired with `arrays` element for element.
    mode : int
        READ, INPLACE or INPLACE_LATER.
    """

    def __cinit__(self, tuple arrays, tuple names=None, tuple src=None, int mode=READ,
                  str dst_label="arrays", str src_label="src"):
        cdef Py_ssize_t i, n = len(arrays), next_ = 0, self_overlap = -1
        cdef Extent* ext = NULL
        cdef bint pair = src is not None
        cdef bint write = mode != READ
        cdef Layout la, lb
        self.names = names
        self.dst_label = dst_label
        self.src_label = src_label
        self.narrays = n
        self.overlap = None
        self.mode = mode
        arrays = _as_arrays(self, arrays, 0)
        if pair:
            src = _as_arrays(self, src, 1)
        self.arrays = arrays
        self.src = src
        if pair and len(src) != n:
            raise ValueError(f"{dst_label} has {n} arrays but {src_label} has {len(src)}")
        if write:
            ext = <Extent*> malloc(max(1, 2 * n) * sizeof(Extent))
            if ext == NULL:
                raise MemoryError()
        try:
            for i in range(n):
                self._layout(arrays[i], &la, 0, i, pair)
                self.dtype_mask |= 1 << la.dtype
                if pair:
                    self._layout(src[i], &lb, 1, i, True)
                    if not _same_shape(&la, &lb):
                        raise ValueError(f"{_name(self, 0, i)} has shape {_shape_text(&la)} "
                                         f"but {_name(self, 1, i)} has shape {_shape_text(&lb)}")
                self._add(&la, &lb if pair else NULL, <int32_t> i)
                if write:
                    if self_overlap < 0 and _self_overlaps(&la):
                        self_overlap = i
                    next_ += _extent(&la, i, 0, &ext[next_])
                    if pair:
                        next_ += _extent(&lb, i, 1, &ext[next_])
                        if la.size > 0:  # both extents were just added
                            ext[next_ - 1].twin = ext[next_ - 2].twin = _twin(&la, &lb)
            if write:
                _collect_written(self)
            if mode == MODE_INPLACE:
                check_torch_writes(self)
            if write:
                self.overlap = _find_overlap(self, ext, next_, self_overlap)
        finally:
            free(ext)
        if mode == INPLACE and self.overlap is not None:
            raise ValueError(self.overlap)
        self._group()

    def __dealloc__(self):
        free(self.pieces)
        free(self.items)

    @property
    def npieces(self):
        return self.npieces

    @property
    def nitems(self):
        return self.nitems

    def runs(self):
        """The pieces as (item, array, dst address, elements, dst_then,
        src_then), addresses as ints (0 for NULL): what the loops are given."""
        cdef Py_ssize_t k, c
        return [(k, self.pieces[c].arr, <size_t> self.pieces[c].dst, self.pieces[c].n,
                 <size_t> self.pieces[c].dst_then, <size_t> self.pieces[c].src_then)
                for k in range(self.nitems) for c in range(self.items[k], self.items[k + 1])]

    def view(self, Py_ssize_t i, int role=0):
        """Operand `role` (0: arrays, 1: src) of pair i as a NumPy array: itself,
        or a view of a torch tensor's memory."""
        obj = self.src[i] if role else self.arrays[i]
        return obj if cnp.PyArray_Check(obj) else torch_view(obj, _name(self, role, i))

    @property
    def views(self):
        """`arrays` as NumPy arrays (torch tensors viewed, made once)."""
        if self._views is None:
            self._views = tuple([self.view(i) for i in range(self.narrays)])
        return self._views

    @property
    def tensors_written(self):
        """The torch tensors an in-place call on this table writes (a tuple)."""
        return tuple(self._written) if self._written is not None else ()

    def check_inplace(self):
        """Raise as an in-place call on these arrays would, or return None.

        Writeability is read again: a flag cleared since the table was made
        counts; so are torch's grad mode and each tensor's requires_grad now.
        """
        self.check_writable()
        if self.overlap is not None:
            raise ValueError(self.overlap)

    def check_writable(self):
        """`check_inplace` without the overlap check."""
        cdef Py_ssize_t i
        if self.mode == READ:
            raise ValueError("this table was validated for reading only")
        for i in range(self.narrays):
            a = self.arrays[i]
            if cnp.PyArray_Check(a) and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray> a):
                check_array(a, self, 0, i, True)
        check_torch_writes(self)

    def wrote(self):
        """Tell autograd that the torch tensors of this table were changed in
        place: bump their version counters, as torch's own in-place ops do."""
        if self._written is not None:
            bump_versions(self._written)

    cdef int _layout(self, object obj, Layout* out, int role, Py_ssize_t i,
                     bint dims) except -1:
        """Check operand `role` of pair i and read it into `out` (shape and
        strides too when `dims`)."""
        cdef bint write = role == 0 and self.mode != MODE_READ
        if cnp.PyArray_Check(obj):
            check_array(obj, self, role, i, role == 0 and self.mode == MODE_INPLACE)
            return _numpy_layout(<cnp.ndarray> obj, out, dims)
        if not tensor_layout(obj, out):  # refused: say why, as as_array would
            check_array(as_array(obj, _name(self, role, i), write), self, role, i,
                        role == 0 and self.mode == MODE_INPLACE)
            raise TypeError(f"{_name(self, role, i)}: cannot use this "
                            f"{type(obj).__qualname__} without a copy")
        if write:
            _note_written(self, obj, i, True)
        return 0

    cdef int _push(self, char* dst, const char* src, int64_t n, int64_t dst_stride,
                   int64_t src_stride, int32_t arr, int dst_dtype, int src_dtype) except -1:
        """Append the run (dst, src, n) cut into pieces of at most CHUNK elements."""
        cdef int64_t start = 0, m
        cdef Piece* grown
        cdef Piece* pc
        cdef int64_t dst_size = _ITEMSIZE[dst_dtype]
        cdef int64_t src_size = _ITEMSIZE[src_dtype]
        while start < n:
            if self.npieces == self.cap:
                self.cap = max(16, 2 * self.cap)
                grown = <Piece*> realloc(self.pieces, self.cap * sizeof(Piece))
                if grown == NULL:
                    raise MemoryError()
                self.pieces = grown
            m = min(<int64_t> CHUNK, n - start)
            pc = &self.pieces[self.npieces]
            pc.dst = dst + start * dst_stride * dst_size
            pc.src = src + start * src_stride * src_size if src != NULL else NULL
            pc.n = m
            pc.dst_stride = dst_stride
            pc.src_stride = src_stride
            pc.arr = arr
            pc.dst_dtype = <uint8_t> dst_dtype
            pc.src_dtype = <uint8_t> src_dtype
            self.npieces += 1
            start += m
        self.size += n
        self.nbytes += n * dst_size
        if src != NULL:
            self.src_nbytes += n * src_size
        return 0

    cdef int _add(self, Layout* a, Layout* b, int32_t idx) except -1:
        """Describe array `idx` (and its partner `b`, or NULL) as runs: one
        run when both are contiguous in the same order, else `_add_strided`."""
        if a.size == 0:
            return 0
        if b == NULL:
            if a.contig:
                return self._push(a.data, NULL, a.size, 1, 1, idx, a.dtype, a.dtype)
        elif a.contig & b.contig:
            return self._push(a.data, b.data, a.size, 1, 1, idx, a.dtype, b.dtype)
        return self._add_strided(a, b, idx)

    cdef int _add_strided(self, Layout* a, Layout* b, int32_t idx) except -1:
        """A general layout: the fewest dimensions that describe both operands
        (see `_dimensions`, then dimensions that are one run in both are
        merged), and one run per position of the outer dimensions."""
        cdef int64_t shp[MAXDIMS]
        cdef int64_t sa[MAXDIMS]
        cdef int64_t sb[MAXDIMS]
        cdef int64_t ctr[MAXDIMS]
        cdef int64_t offa = 0, offb = 0
        cdef int src_dtype = b.dtype if b != NULL else a.dtype
        cdef int64_t isa = _ITEMSIZE[a.dtype], isb = _ITEMSIZE[src_dtype]
        cdef char* pa = a.data
        cdef char* pb = b.data if b != NULL else NULL
        cdef int m = _dimensions(a, b, shp, sa, sb, &pa, &pb), d, e = 0
        for d in range(1, m):  # fold dim d into e when contiguous with it
            if sa[e] == sa[d] * shp[d] and sb[e] == sb[d] * shp[d]:
                shp[e] *= shp[d]
                sa[e] = sa[d]
                sb[e] = sb[d]
            else:
                e += 1
                shp[e], sa[e], sb[e] = shp[d], sa[d], sb[d]
        m = e + 1
        for d in range(m):
            ctr[d] = 0
        while True:
            self._push(pa + offa * isa, pb + offb * isb if pb != NULL else NULL,
                       shp[m - 1], sa[m - 1], sb[m - 1], idx, a.dtype, src_dtype)
            d = m - 2
            while d >= 0:  # the next position of the outer dimensions
                ctr[d] += 1
                offa += sa[d]
                offb += sb[d]
                if ctr[d] < shp[d]:
                    break
                offa -= sa[d] * shp[d]
                offb -= sb[d] * shp[d]
                ctr[d] = 0
                d -= 1
            if d < 0:
                return 0

    cdef int _group(self) except -1:
        """Group consecutive pieces into items of about CHUNK float32 (256
        KiB): a 16-bit item is two pieces, one stream for its thread.  Each
        piece but an item's last is told where the next one starts, when that
        one is contiguous (its loops prefetch on into it: a ragged list's
        arrays lie apart)."""
        cdef Py_ssize_t c, k = 0
        cdef int64_t acc = 0, nbytes
        cdef Piece* pc
        self.items = <int64_t*> malloc((self.npieces + 1) * sizeof(int64_t))
        if self.items == NULL:
            raise MemoryError()
        for c in range(self.npieces):
            pc = &self.pieces[c]
            nbytes = pc.n * _ITEMSIZE[pc.dst_dtype]
            if acc > 0 and acc + nbytes > 4 * CHUNK:
                k += 1
                acc = 0
            if acc == 0:
                self.items[k] = c
            elif pc.dst_stride == 1 and pc.src_stride == 1:  # the previous piece is in this item
                self.pieces[c - 1].dst_then = pc.dst
                self.pieces[c - 1].src_then = pc.src
            pc.dst_then = pc.src_then = NULL
            acc += nbytes
        self.nitems = k + 1 if self.npieces > 0 else 0
        self.items[self.nitems] = self.npieces
        return 0
