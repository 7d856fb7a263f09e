# The work table: a ragged list of arrays cut into pieces of at most CHUNK
# elements, grouped into items of about CHUNK elements each (the idea of
# Apex's multi_tensor_apply). Kernels run one parallel loop over items.
from libc.stdint cimport int64_t, int32_t

cdef enum:
    CHUNK = 65536      # elements in a full piece / item

cdef enum Mode:
    MODE_READ = 0      # read-only call: no writeability or overlap checks
    MODE_INPLACE = 1   # in-place call: a read-only or overlapping array raises
    MODE_RECORD = 2    # keep the in-place verdict for later (ParamList)

cdef enum Kind:
    P_F64 = 1          # the primary (dst) operand is float64, else float32
    Q_F64 = 2          # the second (src) operand is float64, else float32

cdef struct Piece:
    char* p            # first element of the primary operand's run
    char* q            # first element of the second operand's run, or NULL
    int64_t n          # elements in the run
    int64_t sp         # element strides of p and q along the run
    int64_t sq
    int32_t arr        # index of the array (pair) the run belongs to
    int32_t kind       # Kind bits

cdef class Table:
    cdef Piece* pieces
    cdef Py_ssize_t npieces, cap
    cdef int64_t* items        # item k is pieces[items[k] : items[k+1]]
    cdef Py_ssize_t nitems
    cdef readonly Py_ssize_t narrays
    cdef readonly int64_t size
    cdef readonly int64_t nbytes
    cdef readonly int64_t src_nbytes
    cdef readonly tuple arrays
    cdef readonly tuple src
    cdef readonly tuple names
    cdef readonly str dst_label
    cdef readonly str src_label
    cdef readonly object overlap    # None, or the message of the first overlap found
    cdef readonly int mode          # READ, INPLACE or RECORD

    cdef int _push(self, char* p, char* q, int64_t n, int64_t sp, int64_t sq,
                   int32_t arr, int32_t kind) except -1
    cdef int _add(self, object a, object b, int32_t idx) except -1
    cdef int _group(self) except -1
