# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The OpenMP kernels: one parallel loop over the items of a work table.

Every function here takes a validated `Table` (see _table.pyx) and runs
without the GIL.  Sums of squares are accumulated in float64: independent
lanes inside a run (32 in long contiguous runs, so one thread streams at
memory speed; 8 in short ones, 16 in strided ones), one float64 slot per
piece, and the slots folded in a fixed order, so the result is bitwise the
same for any thread count and schedule.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

cimport numpy as cnp
import numpy as np

from l2fast._table cimport Table, Piece, CHUNK, P_F64, Q_F64, MODE_INPLACE

cnp.import_array()

cdef extern from "_platform.h" nogil:
    int omp_get_max_threads()
    int omp_get_num_threads()
    const char* l2f_openmp_library()
    const char* l2f_simd_dispatch()
    int L2F_OPENMP_SPEC
    const char* L2F_BUILD_SIMD
    int L2FAST_BUILD_OPENMP
    const char* L2FAST_BUILD_COMPILER
    const char* L2FAST_BUILD_CFLAGS
    const char* L2FAST_BUILD_PLATFORM
    int l2f_last_team       # size of the team that ran the last kernel
    void l2f_note_team(int n)
    int l2f_in_fork_child
    int l2f_watch_fork()
    int l2f_thread_limit()

if l2f_watch_fork() != 0:
    raise ImportError("l2fast: pthread_atfork failed")


def in_fork_child():
    """True in a process forked from one that imported l2fast: kernels run serially."""
    return bool(l2f_in_fork_child)


ctypedef fused floating_src:
    float
    double

# Below this many elements a call runs on the calling thread: waking the
# team costs more than the work.
PARALLEL_MIN_SIZE = 2 * CHUNK
cdef int64_t _parallel_min = PARALLEL_MIN_SIZE


# ----------------------------------------------------------------------------
# Inner loops over one run: n elements, stride s (in elements).
# ----------------------------------------------------------------------------

cdef extern from "_loops.h" nogil:
    enum: LANES "L2F_LANES"     # independent float64 accumulators in a long contiguous run
    double l2f_ssq_f32(const float* p, int64_t n, double unused)
    double l2f_ssq_f64(const double* p, int64_t n, double unused)
    double l2f_ssq_scale_f32(float* p, int64_t n, double f)
    double l2f_ssq_scale_f64(double* p, int64_t n, double f)
    void l2f_scale_f32(float* p, int64_t n, double f)
    void l2f_scale_f64(double* p, int64_t n, double f)
    void l2f_add_f32_f32(float* d, const float* q, int64_t n, double a)
    void l2f_add_f32_f64(float* d, const double* q, int64_t n, double a)
    void l2f_add_f64_f32(double* d, const float* q, int64_t n, double a)
    void l2f_add_f64_f64(double* d, const double* q, int64_t n, double a)
    void l2f_add_self_f32(float* d, int64_t n, double a)
    void l2f_add_self_f64(double* d, int64_t n, double a)


# ----------------------------------------------------------------------------
# One run: n elements, stride s (in elements).  Contiguous runs go to the
# vectorised C loops of _loops.h; strided runs are done here, with the same
# arithmetic (float64 widening, 16 accumulators).  The table has already
# turned reversed dimensions around, so strides here are positive except
# where the two operands of a pair disagree.
# ----------------------------------------------------------------------------

cdef enum:
    STRIDED_LANES = 16  # accumulators of a strided run


cdef inline double _fold_strided(double* acc) noexcept nogil:
    cdef int w = STRIDED_LANES // 2, j
    while w > 0:
        for j in range(w):
            acc[j] += acc[j + w]
        w //= 2
    return acc[0]


cdef double _ssq_run(const floating* p, int64_t n, int64_t s) noexcept nogil:
    cdef double acc[STRIDED_LANES]
    cdef double x
    cdef int64_t i
    if s == 1:
        if floating is float:
            return l2f_ssq_f32(p, n, 0.0)
        else:
            return l2f_ssq_f64(p, n, 0.0)
    for i in range(STRIDED_LANES):
        acc[i] = 0.0
    for i in range(n):
        x = p[i * s]
        acc[i % STRIDED_LANES] += x * x
    return _fold_strided(acc)


cdef double _ssq_scale_run(floating* p, int64_t n, int64_t s, double f) noexcept nogil:
    cdef double acc[STRIDED_LANES]
    cdef double x
    cdef int64_t i
    if s == 1:
        if floating is float:
            return l2f_ssq_scale_f32(p, n, f)
        else:
            return l2f_ssq_scale_f64(p, n, f)
    for i in range(STRIDED_LANES):
        acc[i] = 0.0
    for i in range(n):
        x = p[i * s]
        acc[i % STRIDED_LANES] += x * x
        p[i * s] = <floating> (x * f)
    return _fold_strided(acc)


cdef void _scale_run(floating* p, int64_t n, int64_t s, double f) noexcept nogil:
    cdef int64_t i
    if s == 1:
        if floating is float:
            l2f_scale_f32(p, n, f)
        else:
            l2f_scale_f64(p, n, f)
        return
    for i in range(n):
        p[i * s] = <floating> (p[i * s] * f)


cdef void _add_run(floating* d, const floating_src* q, int64_t n, int64_t sd, int64_t sq,
                   double a) noexcept nogil:
    cdef int64_t i
    cdef double x
    if sd == 1 and sq == 1:
        if <const void*> d == <const void*> q:     # dst is src: the table allows
            if floating is float:                  # this only for equal dtypes
                l2f_add_self_f32(d, n, a)
            else:
                l2f_add_self_f64(d, n, a)
        elif floating is float and floating_src is float:
            l2f_add_f32_f32(d, q, n, a)
        elif floating is float and floating_src is double:
            l2f_add_f32_f64(d, q, n, a)
        elif floating is double and floating_src is float:
            l2f_add_f64_f32(d, q, n, a)
        else:
            l2f_add_f64_f64(d, q, n, a)
        return
    for i in range(n):
        x = q[i * sq]
        d[i * sd] = <floating> (d[i * sd] + a * x)


# ----------------------------------------------------------------------------
# One piece: dispatch on the dtypes.
# ----------------------------------------------------------------------------

cdef inline double _piece_ssq(const Piece* c) noexcept nogil:
    if c.kind & P_F64:
        return _ssq_run(<const double*> c.p, c.n, c.sp)
    return _ssq_run(<const float*> c.p, c.n, c.sp)


cdef inline double _piece_ssq_scale(const Piece* c, double f) noexcept nogil:
    if c.kind & P_F64:
        return _ssq_scale_run(<double*> c.p, c.n, c.sp, f)
    return _ssq_scale_run(<float*> c.p, c.n, c.sp, f)


cdef inline void _piece_scale(const Piece* c, double f) noexcept nogil:
    if c.kind & P_F64:
        _scale_run(<double*> c.p, c.n, c.sp, f)
    else:
        _scale_run(<float*> c.p, c.n, c.sp, f)


cdef inline void _piece_add(const Piece* c, double a) noexcept nogil:
    cdef int k = c.kind
    if k == P_F64 | Q_F64:
        _add_run(<double*> c.p, <const double*> c.q, c.n, c.sp, c.sq, a)
    elif k == P_F64:
        _add_run(<double*> c.p, <const float*> c.q, c.n, c.sp, c.sq, a)
    elif k == Q_F64:
        _add_run(<float*> c.p, <const double*> c.q, c.n, c.sp, c.sq, a)
    else:
        _add_run(<float*> c.p, <const float*> c.q, c.n, c.sp, c.sq, a)


# ----------------------------------------------------------------------------
# The parallel loop over items.
# ----------------------------------------------------------------------------

cdef enum Op:
    SSQ = 0
    SSQ_SCALE = 1
    SCALE = 2
    ADD = 3


cdef void _run(Table t, Op op, double f, double* slots, int nthreads) noexcept nogil:
    """Apply `op` to every piece of `t`; sums go to slots[piece]."""
    cdef const Piece* pieces = t.pieces
    cdef const int64_t* items = t.items
    cdef Py_ssize_t nitems = t.nitems, k
    cdef int64_t c
    cdef bint threaded
    if nthreads > nitems:
        nthreads = <int> nitems
    if nthreads > l2f_thread_limit():
        nthreads = l2f_thread_limit()
    threaded = (nthreads > 1 and t.size >= _parallel_min and not l2f_in_fork_child)
    if not threaded:
        nthreads = 1
        l2f_note_team(1)
    for k in prange(nitems, num_threads=nthreads, schedule="dynamic",
                    use_threads_if=threaded):
        if threaded and k == 0:
            l2f_note_team(omp_get_num_threads())  # also arms the fork watch
        for c in range(items[k], items[k + 1]):
            if op == SSQ:
                slots[c] = _piece_ssq(&pieces[c])
            elif op == SSQ_SCALE:
                slots[c] = _piece_ssq_scale(&pieces[c], f)
            elif op == SCALE:
                _piece_scale(&pieces[c], f)
            else:
                _piece_add(&pieces[c], f)


cdef double _pairwise(const double* x, Py_ssize_t n) noexcept nogil:
    """Sum x[0:n] by pairwise halving: fixed order, error O(log n)."""
    cdef Py_ssize_t i
    cdef double s = 0.0
    if n <= 8:
        for i in range(n):
            s += x[i]
        return s
    return _pairwise(x, n // 2) + _pairwise(x + n // 2, n - n // 2)


cdef int _threads(object num_threads) except -1:
    if num_threads is None:
        return omp_get_max_threads()
    return <int> num_threads


cdef object _sums(Table t, Op op, double f, object num_threads, bint per_array):
    """Run a summing op; return the total, or one float64 per array."""
    cdef int nthreads = _threads(num_threads)
    cdef Py_ssize_t npieces = t.npieces, c
    cdef double total
    cdef double* slots = <double*> malloc(max(1, npieces) * sizeof(double))
    cdef double[::1] out
    if slots == NULL:
        raise MemoryError()
    try:
        with nogil:
            _run(t, op, f, slots, nthreads)
            total = _pairwise(slots, npieces)
        if not per_array:
            return total
        result = np.zeros(t.narrays, dtype=np.float64)
        out = result
        for c in range(npieces):
            out[t.pieces[c].arr] += slots[c]
        return result
    finally:
        free(slots)


def sum_squares(Table t, num_threads=None, bint per_array=False):
    """sum_i ||t.arrays[i]||^2 in float64 (or per array)."""
    return _sums(t, SSQ, 0.0, num_threads, per_array)


def sum_squares_scale(Table t, double factor, num_threads=None, bint per_array=False):
    """One pass: the sum of squares before scaling, and w *= factor."""
    _writable(t, False)
    return _sums(t, SSQ_SCALE, factor, num_threads, per_array)


def scale(Table t, double factor, num_threads=None):
    """w *= factor for every array of t."""
    _writable(t, False)
    cdef int nthreads = _threads(num_threads)
    with nogil:
        _run(t, SCALE, factor, NULL, nthreads)


def add_scaled(Table t, double alpha, num_threads=None):
    """dst += alpha * src for every pair of t."""
    _writable(t, True)
    cdef int nthreads = _threads(num_threads)
    with nogil:
        _run(t, ADD, alpha, NULL, nthreads)


cdef int _writable(Table t, bint pair) except -1:
    """Raise unless t was validated for writing (and has a src iff `pair`)."""
    if (t.src is not None) != pair:
        raise ValueError("add_scaled needs a table with src arrays; scale and "
                         "sum_squares_scale need one without")
    if t.mode != MODE_INPLACE:
        t.check_inplace()
    return 0


def last_team_size():
    """Threads that ran the last kernel call in this process (1: it ran serially)."""
    return l2f_last_team


def max_threads():
    """The OpenMP default team size now (OMP_NUM_THREADS, threadpoolctl limits)."""
    return omp_get_max_threads()


def build_info():
    """What the compiled kernels were built with, and the OpenMP runtime loaded."""
    return {
        "openmp": bool(L2FAST_BUILD_OPENMP),
        "openmp_spec": L2F_OPENMP_SPEC,
        "openmp_library": l2f_openmp_library().decode("utf-8", "replace") or None,
        "compiler": L2FAST_BUILD_COMPILER.decode("utf-8", "replace"),
        "cflags": L2FAST_BUILD_CFLAGS.decode("utf-8", "replace"),
        "simd_baseline": L2F_BUILD_SIMD.decode(),
        "simd_dispatch": l2f_simd_dispatch().decode(),
        "platform": L2FAST_BUILD_PLATFORM.decode("utf-8", "replace"),
        "chunk": CHUNK,
        "lanes": LANES,
        "parallel_min_size": PARALLEL_MIN_SIZE,
    }
