# Overlap checks of the work table (included by _table.pyx): written arrays
# must share no memory with each other, with themselves, or with a source
# array other than their own partner when it is the very same memory.

cdef struct Extent:
    uintptr_t lo      # first byte the array can touch
    uintptr_t hi      # one past the last byte
    int32_t idx
    int32_t role      # 0: dst, 1: src


cdef int _cmp_extent(const void* x, const void* y) noexcept nogil:
    cdef const Extent* a = <const Extent*> x
    cdef const Extent* b = <const Extent*> y
    if a.lo != b.lo:
        return -1 if a.lo < b.lo else 1
    if a.idx != b.idx:
        return -1 if a.idx < b.idx else 1
    return 0


cdef object _find_overlap(Table self, Extent* ext, Py_ssize_t n):
    """The message naming the first two arrays that share memory, or None.

    Written arrays must not share memory with each other or themselves, nor
    with any source array except their own partner when it is the very same
    memory (dst is src: dst += alpha * dst is well defined).  Candidates are
    the pairs whose byte ranges meet (found by sorting the ranges by start,
    O(L log L) plus the pairs that meet); np.shares_memory then clears pairs
    that only interleave, such as the columns of one matrix.
    """
    cdef Py_ssize_t i, j
    cdef str dl = self.dst_label
    for i in range(self.narrays):
        if _self_overlaps(self.arrays[i]):
            return (f"{label(dl, self.names, i)} has elements that share memory (a "
                    "broadcast or stride-tricks view); an in-place call would update "
                    "them more than once (no array was changed)")
    qsort(ext, n, sizeof(Extent), _cmp_extent)
    for i in range(n):
        j = i + 1
        while j < n and ext[j].lo < ext[i].hi:  # every range that starts inside i's
            if ((ext[i].role == 0 or ext[j].role == 0) and not _allowed(self, ext[i], ext[j])
                    and _share(self, ext[i], ext[j])):
                return _overlap_message(self, ext[i], ext[j])
            j += 1
    return None


cdef object _operand(Table t, Extent x):
    return t.src[x.idx] if x.role else t.arrays[x.idx]


cdef bint _share(Table t, Extent x, Extent y):
    """Do the two arrays share an element?  True when that is too costly to decide."""
    try:
        return np.shares_memory(_operand(t, x), _operand(t, y), max_work=100_000)
    except np.exceptions.TooHardError:
        return True


cdef bint _allowed(Table t, Extent x, Extent y):
    """May these two overlapping extents be touched in one in-place call?"""
    cdef cnp.ndarray a, b
    if x.role == 1 and y.role == 1:
        return True
    if x.role == y.role or x.idx != y.idx:
        return False
    cdef int d
    a = <cnp.ndarray> t.arrays[x.idx]
    b = <cnp.ndarray> t.src[x.idx]
    if cnp.PyArray_DATA(a) != cnp.PyArray_DATA(b) or cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(b):
        return False
    for d in range(cnp.PyArray_NDIM(a)):  # shapes are equal: checked before
        if cnp.PyArray_DIMS(a)[d] > 1 and cnp.PyArray_STRIDES(a)[d] != cnp.PyArray_STRIDES(b)[d]:
            return False
    return True


cdef str _overlap_message(Table t, Extent x, Extent y):
    cdef str nx = label(t.src_label if x.role else t.dst_label, t.names, x.idx)
    cdef str ny = label(t.src_label if y.role else t.dst_label, t.names, y.idx)
    if x.role == 0 and y.role == 0 and _operand(t, x) is _operand(t, y):
        return (f"{nx} and {ny} are the same array; an in-place call would update it "
                "twice (no array was changed)")
    return (f"{nx} and {ny} overlap in memory; an in-place call needs written arrays "
            "that share no memory with any other array of the call (no array was changed)")


cdef Py_ssize_t _extent(object obj, Py_ssize_t idx, int role, Extent* out) except -1:
    """Write the byte range array `obj` can touch to `out`; return 1, or 0 if empty."""
    cdef cnp.ndarray a = <cnp.ndarray> obj
    cdef int d
    cdef int64_t lo = 0, hi = 0, span
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp* st = cnp.PyArray_STRIDES(a)
    if cnp.PyArray_SIZE(a) == 0:
        return 0
    for d in range(cnp.PyArray_NDIM(a)):
        span = (dims[d] - 1) * st[d]
        if span < 0:
            lo += span
        else:
            hi += span
    out.lo = <uintptr_t> cnp.PyArray_DATA(a) + lo
    out.hi = <uintptr_t> cnp.PyArray_DATA(a) + hi + cnp.PyArray_ITEMSIZE(a)
    out.idx = <int32_t> idx
    out.role = role
    return 1


cdef bint _self_overlaps(object obj) except -1:
    """Could two elements of `obj` be the same memory? (sufficient test, exact for
    ordinary views: each dimension's stride must clear the span of the smaller ones)"""
    cdef cnp.ndarray a = <cnp.ndarray> obj
    cdef int64_t shp[64]
    cdef int64_t st[64]
    cdef int64_t unused[64]
    cdef char* p = <char*> cnp.PyArray_DATA(a)
    cdef int64_t span = 1
    cdef int d
    if cnp.PyArray_SIZE(a) <= 1 or cnp.PyArray_IS_C_CONTIGUOUS(a) or cnp.PyArray_IS_F_CONTIGUOUS(a):
        return False
    for d in range(_dimensions(a, None, shp, st, unused, &p, &p) - 1, -1, -1):
        if st[d] < span:  # innermost first, strides in elements
            return True
        span += st[d] * (shp[d] - 1)
    return False
