# The work table: a ragged list of arrays cut into pieces of at most CHUNK
# elements, grouped into items of about 256 KiB of written bytes each (the
# idea of Apex's multi_tensor_apply). Kernels run one parallel loop over items.
from libc.stdint cimport int64_t, int32_t, uint8_t

cdef extern from "_work.h" nogil:
    enum: CHUNK "L2F_CHUNK"    # elements in a full piece
    ctypedef struct Piece "l2f_piece":
        char* dst              # first element of the written (or read) operand
        const char* src        # first element of the second operand, or NULL
        int64_t n              # elements in the run
        int64_t dst_stride     # element strides along the run
        int64_t src_stride
        const char* dst_then   # where the thread reads next: the next piece of
        const char* src_then   # the same item, or NULL
        int32_t arr            # index of the array (pair) the run belongs to
        uint8_t dst_dtype      # dtype codes of _loops.h (enum l2f_dtype)
        uint8_t src_dtype

cdef enum Mode:
    MODE_READ = 0           # read-only call: no writeability or overlap checks
    MODE_INPLACE = 1        # in-place call: a read-only or overlapping array raises now
    MODE_INPLACE_LATER = 2  # kept for in-place calls to come (ParamList): the
                            # verdict is stored, and raised by each such call

cdef enum:
    MAXDIMS = 64            # dimensions of a Layout (NumPy's NPY_MAXDIMS)

# What the table needs of one array, read from a NumPy array or straight from
# a torch tensor's fields: where it is, its dtype, its elements.
cdef struct Layout:
    char* data
    int64_t size            # elements
    int dtype               # dtype code of _loops.h
    uint8_t contig          # 1: one run in C order, 2: in Fortran order (bits); 0: neither
    bint has_dims           # shape and strides below are filled
    int ndim
    int64_t shape[MAXDIMS]
    int64_t strides[MAXDIMS]   # in elements

cdef class Table:
    cdef Piece* pieces
    cdef Py_ssize_t npieces, cap
    cdef int64_t* items        # item k is pieces[items[k] : items[k+1]]
    cdef Py_ssize_t nitems
    cdef readonly Py_ssize_t narrays
    cdef readonly int64_t size
    cdef readonly int64_t nbytes
    cdef readonly int64_t src_nbytes
    cdef readonly tuple arrays      # ndarrays, and torch tensors as given
    cdef readonly tuple src
    cdef readonly tuple names
    cdef readonly str dst_label
    cdef readonly str src_label
    cdef readonly object overlap    # None, or the message of the first overlap found
    cdef readonly int mode          # READ, INPLACE or INPLACE_LATER
    cdef readonly int dtype_mask        # bit 1 << code set for each dtype code among `arrays`
    # torch tensors written by in-place calls (see _torch.pxi):
    cdef Py_ssize_t _nplain         # how many arrays are plain tensors (or Parameters)
    cdef list _subclassed           # (index, tensor) of tensor subclasses, seen as views
    cdef list _inference            # indices of tensors made under torch.inference_mode
    cdef object _written            # all of them (a tuple or list), or None
    cdef tuple _views               # NumPy views of the arrays, made when first asked

    cdef int _push(self, char* dst, const char* src, int64_t n, int64_t dst_stride,
                   int64_t src_stride, int32_t arr, int dst_dtype, int src_dtype) except -1
    cdef int _add(self, Layout* a, Layout* b, int32_t idx) except -1
    cdef int _add_strided(self, Layout* a, Layout* b, int32_t idx) except -1
    cdef int _layout(self, object obj, Layout* out, int role, Py_ssize_t i,
                     bint dims) except -1
    cdef int _group(self) except -1
