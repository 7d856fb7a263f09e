# The Layout of an array (included by _table.pyx): what the work table and
# the overlap checks read of it, from a NumPy array here, from a torch
# tensor in _tensor_read.pxi; and the dimensions elementwise work walks.


cdef int _numpy_layout(cnp.ndarray a, Layout* out, bint dims) except -1:
    """Fill `out` from a checked NumPy array (shape and strides if `dims` or
    the array is not one run)."""
    cdef int d
    cdef int64_t isz
    out.data = <char*> cnp.PyArray_DATA(a)
    out.size = cnp.PyArray_SIZE(a)
    out.dtype = dtype_code(a)
    out.contig = ((1 if cnp.PyArray_IS_C_CONTIGUOUS(a) else 0)
                  | (2 if cnp.PyArray_IS_F_CONTIGUOUS(a) else 0))
    out.has_dims = dims or out.contig == 0
    if out.has_dims:
        out.ndim = cnp.PyArray_NDIM(a)
        isz = cnp.PyArray_ITEMSIZE(a)
        for d in range(out.ndim):
            out.shape[d] = cnp.PyArray_DIMS(a)[d]
            out.strides[d] = cnp.PyArray_STRIDES(a)[d] // isz
    return 0


cdef bint _same_shape(Layout* a, Layout* b) noexcept:
    cdef int d
    if a.ndim != b.ndim:
        return False
    for d in range(a.ndim):
        if a.shape[d] != b.shape[d]:
            return False
    return True


cdef str _shape_text(Layout* a):
    return str(tuple([a.shape[d] for d in range(a.ndim)]))


cdef bint _twin(Layout* a, Layout* b) noexcept:
    """Are a and b (of equal shapes) the very same elements: same data
    pointer, dtype and strides on every dimension longer than 1?"""
    cdef int d
    if a.data != b.data or a.dtype != b.dtype:
        return False
    if a.contig & b.contig:
        return True
    for d in range(a.ndim):
        if a.shape[d] > 1 and a.strides[d] != b.strides[d]:
            return False
    return True


cdef inline int64_t _abs(int64_t x) noexcept nogil:
    return -x if x < 0 else x


cdef int _dimensions(Layout* a, Layout* b, int64_t* shp, int64_t* sa,
                     int64_t* sb, char** pa, char** pb) except -1:
    """The dimensions of a (and its partner b, or NULL) that matter to
    elementwise work, outermost first; return how many.

    Unit dimensions are dropped; reversed ones are walked forwards (*pa and
    *pb move to their other end), as elementwise work does not care about
    the order; the rest are sorted by descending |sa| + |sb|, so that the
    innermost dimension has the smallest strides in both operands and
    operands of different layouts still make long runs.  Strides are in
    elements; sb is 0 without b.  Both layouts have their dims filled.
    """
    cdef int nd = a.ndim, m = 0, d, e
    cdef int64_t isa = _ITEMSIZE[a.dtype], isb = _ITEMSIZE[b.dtype] if b != NULL else 1
    for d in range(nd):
        if a.shape[d] != 1:
            shp[m] = a.shape[d]
            sa[m] = a.strides[d]
            sb[m] = b.strides[d] if b != NULL else 0
            if sa[m] + sb[m] < 0:
                pa[0] += (shp[m] - 1) * sa[m] * isa
                if b != NULL:
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
