# Overlap checks of the work table (included by _table.pyx): written arrays
# must share no memory with each other, with themselves, or with a source
# array other than their own partner when it is the very same memory.
# Everything is computed from the Layouts (NumPy arrays and torch tensors
# alike); only the rare pairs whose byte ranges meet are looked at as NumPy
# arrays, by np.shares_memory.

cdef struct Extent:
    uintptr_t lo      # first byte the array can touch
    uintptr_t hi      # one past the last byte
    int32_t idx
    int32_t role      # 0: dst, 1: src
    bint twin         # dst idx and src idx are the very same elements


cdef int _cmp_extent(const void* x, const void* y) noexcept nogil:
    cdef const Extent* a = <const Extent*> x
    cdef const Extent* b = <const Extent*> y
    if a.lo != b.lo:
        return -1 if a.lo < b.lo else 1
    if a.idx != b.idx:
        return -1 if a.idx < b.idx else 1
    return 0


cdef void _sort_extents(Extent* ext, Py_ssize_t n) noexcept nogil:
    """Sort by _cmp_extent: in one pass when already in that order or in
    the reverse one (arrays allocated one after another, as a model's), else
    with qsort."""
    cdef Py_ssize_t i, up = 0
    cdef Extent tmp
    for i in range(1, n):
        up += _cmp_extent(&ext[i - 1], &ext[i]) <= 0
    if up == n - 1 or n < 2:
        return
    if up == 0:
        for i in range(n // 2):
            tmp = ext[i]
            ext[i] = ext[n - 1 - i]
            ext[n - 1 - i] = tmp
        return
    qsort(ext, n, sizeof(Extent), _cmp_extent)


cdef object _find_overlap(Table self, Extent* ext, Py_ssize_t n, Py_ssize_t self_overlap):
    """The message naming the first two arrays that share memory, or None.

    Written arrays must not share memory with each other or themselves
    (`self_overlap`: the first written array whose own elements may meet,
    or -1), nor with any source array except their own partner when it is
    the very same memory (dst is src: dst += alpha * dst is well defined).
    Candidates are the pairs whose byte ranges meet (found by sorting the
    ranges by start, O(L log L) plus the pairs that meet); np.shares_memory
    then clears pairs that only interleave, such as the columns of one matrix.
    """
    cdef Py_ssize_t i, j
    if self_overlap >= 0:
        return (f"{_name(self, 0, self_overlap)} has elements that share memory (a "
                "broadcast or stride-tricks view); an in-place call would update "
                "them more than once (no array was changed)")
    _sort_extents(ext, n)
    for i in range(n):
        j = i + 1
        while j < n and ext[j].lo < ext[i].hi:  # every range that starts inside i's
            if ((ext[i].role == 0 or ext[j].role == 0) and not _allowed(ext[i], ext[j])
                    and _share(self, ext[i], ext[j])):
                return _overlap_message(self, ext[i], ext[j])
            j += 1
    return None


cdef object _operand(Table t, Extent x):
    return t.src[x.idx] if x.role else t.arrays[x.idx]


cdef bint _share(Table t, Extent x, Extent y):
    """Do the two arrays share an element?  True when that is too costly to decide."""
    try:
        return np.shares_memory(t.view(x.idx, x.role), t.view(y.idx, y.role),
                                max_work=100_000)
    except np.exceptions.TooHardError:
        return True


cdef bint _allowed(Extent x, Extent y) noexcept:
    """May these two overlapping extents be touched in one in-place call?"""
    if x.role == 1 and y.role == 1:
        return True
    if x.role == y.role or x.idx != y.idx:
        return False
    return x.twin


cdef str _overlap_message(Table t, Extent x, Extent y):
    cdef str nx = _name(t, x.role, x.idx)
    cdef str ny = _name(t, y.role, y.idx)
    if x.role == 0 and y.role == 0 and _operand(t, x) is _operand(t, y):
        return (f"{nx} and {ny} are the same array; an in-place call would update it "
                "twice (no array was changed)")
    return (f"{nx} and {ny} overlap in memory; an in-place call needs written arrays "
            "that share no memory with any other array of the call (no array was changed)")


cdef Py_ssize_t _extent(Layout* a, Py_ssize_t idx, int role, Extent* out) except -1:
    """Write the byte range array `a` can touch to `out`; return 1, or 0 if empty."""
    cdef int d
    cdef int64_t lo = 0, hi, span, isz = _ITEMSIZE[a.dtype]
    if a.size == 0:
        return 0
    if a.contig:
        hi = (a.size - 1) * isz
    else:
        hi = 0
        for d in range(a.ndim):
            span = (a.shape[d] - 1) * a.strides[d] * isz
            if span < 0:
                lo += span
            else:
                hi += span
    out.lo = <uintptr_t> a.data + lo
    out.hi = <uintptr_t> a.data + hi + isz
    out.idx = <int32_t> idx
    out.role = role
    out.twin = False
    return 1


cdef bint _self_overlaps(Layout* a) except -1:
    """Could two elements of `a` be the same memory? (sufficient test, exact for
    ordinary views: each dimension's stride must clear the span of the smaller ones)"""
    cdef int64_t shp[MAXDIMS]
    cdef int64_t st[MAXDIMS]
    cdef int64_t unused[MAXDIMS]
    cdef char* p = a.data
    cdef int64_t span = 1
    cdef int d
    if a.size <= 1 or a.contig:
        return False
    for d in range(_dimensions(a, NULL, shp, st, unused, &p, &p) - 1, -1, -1):
        if st[d] < span:  # innermost first, strides in elements
            return True
        span += st[d] * (shp[d] - 1)
    return False
