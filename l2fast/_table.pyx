# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Validation of a ragged list of arrays, and the work table the kernels run on.

Everything here runs with the GIL, once, before any kernel: a call that is
rejected raises before a single element is read or written.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, int32_t, uint8_t, uintptr_t
from libc.stdlib cimport malloc, realloc, free, qsort

import numpy as np

from l2fast._interop import as_array, BFLOAT16_BITS as _BFLOAT16_BITS

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
# as uint16 under BFLOAT16_BITS (see _interop).
cdef dict _DTYPE_CODES = {cnp.NPY_FLOAT: L2F_F32, cnp.NPY_DOUBLE: L2F_F64,
                          np.dtype(np.float16).num: L2F_F16}
cdef int _USERDEF = 256  # NPY_USERDEF: the first type number of a registered dtype
cdef int64_t _ITEMSIZE[L2F_NDTYPES]
_ITEMSIZE[L2F_F32] = 4
_ITEMSIZE[L2F_F64] = 8
_ITEMSIZE[L2F_F16] = 2
_ITEMSIZE[L2F_BF16] = 2
SUPPORTED = "float16, bfloat16, float32 or float64"


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


include "_overlap.pxi"

cdef object _masked = None


cdef tuple _as_arrays(tuple arrays, str base, tuple names, bint writeable):
    """`arrays` with every non-ndarray replaced by its view from `as_array`
    (torch tensors, DLPack and buffer objects), which raises TypeError
    rather than copy."""
    cdef Py_ssize_t i, n = len(arrays)
    cdef list out = None
    for i in range(n):
        if not cnp.PyArray_Check(arrays[i]):
            if out is None:
                out = list(arrays)
            out[i] = as_array(arrays[i], label(base, names, i), writeable)
    return arrays if out is None else tuple(out)


cdef int check_array(object a, str name, bint writeable) except -1:
    """Raise unless `a` is an array the kernels can use without a copy."""
    global _masked
    if not cnp.PyArray_Check(a):
        raise TypeError(
            f"{name}: expected a NumPy array of {SUPPORTED}, got "
            f"{type(a).__module__}.{type(a).__qualname__}")
    if type(a) is not np.ndarray:
        if _masked is None:
            _masked = np.ma.MaskedArray
        if isinstance(a, _masked):
            raise TypeError(f"{name}: masked arrays are not supported (the mask would be "
                            "ignored); pass the .data array, or fill the masked values")
    cdef cnp.ndarray arr = <cnp.ndarray> a
    if dtype_code(arr) < 0 or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(
            f"{name}: dtype {arr.dtype.str} ({arr.dtype}) is not supported; expected "
            f"{SUPPORTED} in native byte order")
    if not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name}: the array is not aligned to its dtype; the kernels need "
                         "aligned memory (np.require(a, requirements='A') makes an aligned copy)")
    if writeable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} is read-only; an in-place call needs a writeable array "
                         "(no array was changed)")
    return 0


cdef inline int64_t _abs(int64_t x) noexcept nogil:
    return -x if x < 0 else x


cdef class Table:
    """The validated arrays of one call and the pieces the kernels run on.

    Parameters
    ----------
    arrays : tuple of ndarray
        The primary (written, for in-place calls) operand.
    names : tuple of str or None
        Names used in error messages instead of indices.
    src : tuple of ndarray or None
        Second operand, paired with `arrays` element for element.
    mode : int
        READ, INPLACE or INPLACE_LATER.
    """

    def __cinit__(self, tuple arrays, tuple names=None, tuple src=None, int mode=READ,
                  str dst_label="arrays", str src_label="src"):
        cdef Py_ssize_t i, n = len(arrays)
        cdef Extent* ext = NULL
        cdef Py_ssize_t next_ = 0
        cdef bint pair = src is not None
        cdef bint write = mode != READ
        arrays = _as_arrays(arrays, dst_label, names, write)
        if pair:
            src = _as_arrays(src, src_label, names, False)
        self.arrays = arrays
        self.src = src
        self.names = names
        self.dst_label = dst_label
        self.src_label = src_label
        self.narrays = n
        self.overlap = None
        self.mode = mode
        if pair and len(src) != n:
            raise ValueError(f"{dst_label} has {n} arrays but {src_label} has {len(src)}")
        for i in range(n):
            check_array(arrays[i], label(self.dst_label, names, i), mode == INPLACE)
            if pair:
                check_array(src[i], label(src_label, names, i), False)
                if (<object> arrays[i]).shape != (<object> src[i]).shape:
                    raise ValueError(
                        f"{label(self.dst_label, names, i)} has shape {arrays[i].shape} but "
                        f"{label(src_label, names, i)} has shape {src[i].shape}")
        if write:
            ext = <Extent*> malloc(max(1, 2 * n) * sizeof(Extent))
            if ext == NULL:
                raise MemoryError()
        try:
            for i in range(n):
                self._add(arrays[i], src[i] if pair else None, <int32_t> i)
                if write:
                    next_ += _extent(arrays[i], i, 0, &ext[next_])
                    if pair:
                        next_ += _extent(src[i], i, 1, &ext[next_])
            if write:
                self.overlap = _find_overlap(self, ext, next_)
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

    def check_inplace(self):
        """Raise as an in-place call on these arrays would, or return None.

        Writeability is read again: a flag cleared since the table was made counts.
        """
        cdef Py_ssize_t i
        if self.mode == READ:
            raise ValueError("this table was validated for reading only")
        for i in range(self.narrays):
            if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray> self.arrays[i]):
                check_array(self.arrays[i], label(self.dst_label, self.names, i), True)
        if self.overlap is not None:
            raise ValueError(self.overlap)

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

    cdef int _add(self, object dst, object src, int32_t idx) except -1:
        """Describe array `idx` (and its partner `src`, or None) as runs."""
        cdef cnp.ndarray a = <cnp.ndarray> dst
        cdef cnp.ndarray b = <cnp.ndarray> src if src is not None else None
        cdef int dst_dtype = dtype_code(a)
        cdef int src_dtype = dtype_code(b) if b is not None else dst_dtype
        cdef int64_t total = cnp.PyArray_SIZE(a)
        if total == 0:
            return 0
        if b is None:
            if cnp.PyArray_IS_C_CONTIGUOUS(a) or cnp.PyArray_IS_F_CONTIGUOUS(a):
                return self._push(<char*> cnp.PyArray_DATA(a), NULL, total, 1, 1, idx,
                                  dst_dtype, src_dtype)
        elif ((cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_IS_C_CONTIGUOUS(b)) or
              (cnp.PyArray_IS_F_CONTIGUOUS(a) and cnp.PyArray_IS_F_CONTIGUOUS(b))):
            return self._push(<char*> cnp.PyArray_DATA(a), <char*> cnp.PyArray_DATA(b),
                              total, 1, 1, idx, dst_dtype, src_dtype)
        return self._add_strided(a, b, idx, dst_dtype, src_dtype)

    cdef int _add_strided(self, object dst, object src, int32_t idx, int dst_dtype,
                          int src_dtype) except -1:
        """A general layout: the fewest dimensions that describe both operands
        (see `_dimensions`, then dimensions that are one run in both are
        merged), and one run per position of the outer dimensions."""
        cdef cnp.ndarray a = <cnp.ndarray> dst
        cdef cnp.ndarray b = <cnp.ndarray> src if src is not None else None
        cdef int64_t shp[64]
        cdef int64_t sa[64]
        cdef int64_t sb[64]
        cdef int64_t ctr[64]
        cdef int64_t offa = 0, offb = 0
        cdef int64_t isa = _ITEMSIZE[dst_dtype], isb = _ITEMSIZE[src_dtype]
        cdef char* pa = <char*> cnp.PyArray_DATA(a)
        cdef char* pb = <char*> cnp.PyArray_DATA(b) if b is not None else NULL
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
                       shp[m - 1], sa[m - 1], sb[m - 1], idx, dst_dtype, src_dtype)
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
        """Group consecutive pieces into items of about CHUNK elements."""
        cdef Py_ssize_t c, k = 0
        cdef int64_t acc = 0
        self.items = <int64_t*> malloc((self.npieces + 1) * sizeof(int64_t))
        if self.items == NULL:
            raise MemoryError()
        for c in range(self.npieces):
            if acc > 0 and acc + self.pieces[c].n > CHUNK:
                k += 1
                acc = 0
            if acc == 0:
                self.items[k] = c
            acc += self.pieces[c].n
        self.nitems = k + 1 if self.npieces > 0 else 0
        self.items[self.nitems] = self.npieces
        return 0


cdef int _dimensions(cnp.ndarray a, cnp.ndarray b, int64_t* shp, int64_t* sa,
                     int64_t* sb, char** pa, char** pb) except -1:
    """The dimensions of a (and its partner b, or None) that matter to
    elementwise work, outermost first; return how many.

    Unit dimensions are dropped; reversed ones are walked forwards (*pa and
    *pb move to their other end), as elementwise work does not care about
    the order; the rest are sorted by descending |sa| + |sb|, so that the
    innermost dimension has the smallest strides in both operands and
    operands of different layouts still make long runs.  Strides are in
    elements; sb is 0 without b.
    """
    cdef int nd = cnp.PyArray_NDIM(a), m = 0, d, e
    cdef int64_t isa = cnp.PyArray_ITEMSIZE(a), isb = cnp.PyArray_ITEMSIZE(b) if b is not None else 1
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp* stra = cnp.PyArray_STRIDES(a)
    cdef cnp.npy_intp* strb = cnp.PyArray_STRIDES(b) if b is not None else NULL
    for d in range(nd):
        if dims[d] != 1:
            shp[m] = dims[d]
            sa[m] = stra[d] // isa
            sb[m] = strb[d] // isb if b is not None else 0
            if sa[m] + sb[m] < 0:
                pa[0] += (shp[m] - 1) * sa[m] * isa
                if b is not None:
                    pb[0] += (shp[m] - 1) * sb[m] * isb
                sa[m] = -sa[m]
                sb[m] = -sb[m]
            m += 1
    for d in range(1, m):  # insertion sort: stable, and m is small
        e = d
        while e > 0 and _abs(sa[e - 1]) + _abs(sb[e - 1]) < _abs(sa[e]) + _abs(sb[e]):
            shp[e], shp[e - 1] = shp[e - 1], shp[e]
            sa[e], sa[e - 1] = sa[e - 1], sa[e]
            sb[e], sb[e - 1] = sb[e - 1], sb[e]
            e -= 1
    return m
