# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The parallel driver: the items of a work table shared by a team (_pool.h).

Every kernel here takes a validated `Table` (see _table.pyx), a thread
count already resolved (see _args.thread_count), and runs without the GIL;
the loops themselves are in _loops.h and _exact.h.  Sums of squares come
two ways.  By default: float64 lanes inside a piece, one float64 slot per
piece, the slots folded in a fixed order -- bitwise the same for any thread
count and schedule.  Exact (`exact=True`): each piece's squares go into an
integer accumulator (_acc.h) through float64 bins (_exact.h), the pieces'
integers are added, and the total is rounded once to the nearest float64 --
a function of the values alone, not of threads, order, cuts or layout.
"""
from libc.stdint cimport int64_t, int32_t
from libc.stdlib cimport malloc, free

cimport numpy as cnp
import numpy as np

from l2fast._table cimport Table, Piece, CHUNK, MODE_INPLACE

cnp.import_array()

cdef extern from "_platform.h" nogil:
    int omp_get_max_threads()
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

cdef extern from "_pool.h" nogil:
    ctypedef void (*item_fn "l2f_item_fn")(void* ctx, int64_t k) noexcept nogil
    int l2f_pool_run(item_fn fn, void* ctx, int64_t n, int nthreads)
    ctypedef struct PoolStats:
        int64_t jobs, items, helped
        double wait_s, max_wait_s
    PoolStats l2f_pool_stats

cdef extern from "_loops.h" nogil:
    enum: LANES "L2F_LANES"     # float64 accumulators of a long contiguous run
    enum Op "l2f_op":
        SSQ "L2F_SSQ"
        SSQ_SCALE "L2F_SSQ_SCALE"
        SCALE "L2F_SCALE"
        ADD "L2F_ADD"
    double l2f_apply(int op, const Piece* c, double f)
    int l2f_level16()
    double l2f_sum_slots(const double* x, int64_t n)

cdef extern from "_exact.h" nogil:
    enum: ACC_WORDS "L2F_ACC_WORDS"
    enum: ACC_DIGITS "L2F_ACC_DIGITS"
    ctypedef struct Part "l2f_part":
        int32_t n                  # < 0: out of memory
        int64_t* spill
    void l2f_apply_exact(int op, const Piece* c, double f, Part* out)
    double l2f_fold_parts(const Part* p, int64_t n, int64_t* w, int clear)
    int l2f_acc_normalize(int64_t* w, int lo, int hi)
    double l2f_acc_value(const int64_t* w, int top)

STATE_WORDS = ACC_WORDS
STATE_DIGITS = ACC_DIGITS

if l2f_watch_fork() != 0:
    raise ImportError("l2fast: pthread_atfork failed")


def in_fork_child():
    """True in a process forked from one that imported l2fast: kernels run serially."""
    return bool(l2f_in_fork_child)


# Below this many elements a call runs on the calling thread: waking the
# team costs more than the work.  A team is never larger than the number of
# items (about 256 KiB each), so a 16-bit call of exactly 2 * CHUNK elements,
# one item, runs on one thread too.
PARALLEL_MIN_SIZE = 2 * CHUNK
cdef int64_t _parallel_min = PARALLEL_MIN_SIZE
l2f_level16()   # fixes which 16-bit loops run, once, before any team starts


ctypedef struct Job:
    const Piece* pieces
    const int64_t* items
    int op
    double f
    double* slots
    Part* parts


cdef void _item(void* ctx, int64_t k) noexcept nogil:
    """Apply the job's op to the pieces of item k."""
    cdef Job* j = <Job*> ctx
    cdef int64_t c
    cdef double s
    for c in range(j.items[k], j.items[k + 1]):
        if j.parts != NULL:
            l2f_apply_exact(j.op, &j.pieces[c], j.f, &j.parts[c])
        else:
            s = l2f_apply(j.op, &j.pieces[c], j.f)
            if j.slots != NULL:
                j.slots[c] = s


cdef void _run(Table t, int op, double f, double* slots, Part* parts,
               int nthreads) noexcept nogil:
    """Apply `op` to every piece of `t`, its items shared by a team (_pool.h);
    the sums of a summing op go to slots[piece], or exact to parts[piece]."""
    cdef Job job
    job.pieces, job.items, job.op, job.f = t.pieces, t.items, op, f
    job.slots, job.parts = slots, parts
    if nthreads > t.nitems:
        nthreads = <int> t.nitems
    if nthreads > l2f_thread_limit():
        nthreads = l2f_thread_limit()
    if nthreads < 1 or t.size < _parallel_min or l2f_in_fork_child:
        nthreads = 1
    l2f_note_team(l2f_pool_run(_item, &job, t.nitems, nthreads))


cdef object _sums(Table t, int op, double f, int nthreads, bint per_array):
    """Run a summing op; return the total (fixed-order fold), or one float64
    per array."""
    cdef Py_ssize_t npieces = t.npieces, c
    cdef double total
    cdef double* slots = <double*> malloc(max(1, npieces) * sizeof(double))
    cdef double[::1] out
    if slots == NULL:
        raise MemoryError()
    try:
        with nogil:
            _run(t, op, f, slots, NULL, nthreads)
            total = l2f_sum_slots(slots, npieces)
        if not per_array:
            return total
        result = np.zeros(t.narrays, dtype=np.float64)
        out = result
        for c in range(npieces):
            out[t.pieces[c].arr] += slots[c]
        return result
    finally:
        free(slots)


cdef object _exact_sums(Table t, int op, double f, int nthreads, bint per_array, bint state):
    """Run a summing op exactly; return the total, one float64 per array, or
    (state) the total's exact accumulator as int64 words."""
    cdef Py_ssize_t npieces = t.npieces, c, first = 0
    cdef Part* parts = <Part*> malloc(max(1, npieces) * sizeof(Part))
    cdef int64_t[::1] w
    cdef double[::1] out
    cdef double total
    if parts == NULL:
        raise MemoryError()
    for c in range(npieces):
        parts[c].spill = NULL
    try:
        with nogil:
            _run(t, op, f, NULL, parts, nthreads)
        for c in range(npieces):
            if parts[c].n < 0:
                raise MemoryError()
        words = np.zeros(ACC_WORDS, dtype=np.int64)
        w = words
        if not per_array:
            with nogil:
                total = l2f_fold_parts(parts, npieces, &w[0], 0)
            return words if state else total
        # pieces of one array are consecutive in the table
        result = np.zeros(t.narrays, dtype=np.float64)
        out = result
        with nogil:
            for c in range(1, npieces + 1):
                if c == npieces or t.pieces[c].arr != t.pieces[first].arr:
                    out[t.pieces[first].arr] = l2f_fold_parts(&parts[first], c - first,
                                                              &w[0], 1)
                    first = c
        return result
    finally:
        for c in range(npieces):
            free(parts[c].spill)
        free(parts)


def state_normalize(int64_t[::1] w):
    """Carry the digits of an accumulator state in place (its canonical form)."""
    if w.shape[0] != ACC_WORDS:
        raise ValueError(f"a state has {ACC_WORDS} words, got {w.shape[0]}")
    l2f_acc_normalize(&w[0], 0, ACC_DIGITS - 1)


def state_value(const int64_t[::1] w):
    """A normalised state rounded to the nearest float64."""
    return l2f_acc_value(&w[0], ACC_DIGITS - 1)


def sum_squares(Table t, *, int num_threads, bint per_array=False, bint exact=False,
                bint state=False):
    """sum_i ||t.arrays[i]||^2 in float64 (or per array); `exact`: the exact
    sum rounded once; `state`: the exact sum's accumulator words."""
    if exact or state:
        return _exact_sums(t, SSQ, 0.0, num_threads, per_array, state)
    return _sums(t, SSQ, 0.0, num_threads, per_array)


def sum_squares_scale(Table t, double factor, *, int num_threads, bint per_array=False,
                      bint exact=False, bint state=False):
    """One pass: the sum of squares before scaling, and w *= factor."""
    _writable(t, False)
    if exact or state:
        return _exact_sums(t, SSQ_SCALE, factor, num_threads, per_array, state)
    return _sums(t, SSQ_SCALE, factor, num_threads, per_array)


def scale(Table t, double factor, *, int num_threads):
    """w *= factor for every array of t."""
    _writable(t, False)
    with nogil:
        _run(t, SCALE, factor, NULL, NULL, num_threads)


def add_scaled(Table t, double alpha, *, int num_threads):
    """dst += alpha * src for every pair of t."""
    _writable(t, True)
    with nogil:
        _run(t, ADD, alpha, NULL, NULL, num_threads)


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


def pool_stats(reset=False):
    """What the parallel calls of this process did: jobs, items, items run by
    helper threads, and seconds callers spent waiting on helpers (total, max)."""
    out = {"jobs": l2f_pool_stats.jobs, "items": l2f_pool_stats.items,
           "helped": l2f_pool_stats.helped, "wait_s": l2f_pool_stats.wait_s,
           "max_wait_s": l2f_pool_stats.max_wait_s}
    if reset:
        l2f_pool_stats.jobs = l2f_pool_stats.items = l2f_pool_stats.helped = 0
        l2f_pool_stats.wait_s = l2f_pool_stats.max_wait_s = 0
    return out


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
        "simd_loops16": {4: "x86-64-v4 (AVX-512)", 3: "x86-64-v3 (AVX2, FMA, F16C)"}.get(
            l2f_level16(), "generic"),
        "platform": L2FAST_BUILD_PLATFORM.decode("utf-8", "replace"),
        "chunk": CHUNK,
        "lanes": LANES,
        "parallel_min_size": PARALLEL_MIN_SIZE,
    }
