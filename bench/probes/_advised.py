"""Memory for the probes on a chosen kind of pages: a buffer on a 2 MiB
boundary, advised (MADV_NOHUGEPAGE: 4 KiB pages, as torch's allocations and
NumPy's arrays under 4 MiB get; MADV_HUGEPAGE: 2 MiB pages, as NumPy's large
arrays get) before its first touch."""
import ctypes

import numpy as np

_libc = ctypes.CDLL(None)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def advised_bytes(nbytes, advice, fill=0):
    """nbytes of uint8 on a 2 MiB boundary, madvise(advice)d, then set to `fill`."""
    raw = np.empty(nbytes + (4 << 20), np.uint8)
    buf = raw[(-raw.ctypes.data) % (2 << 20):][:nbytes]
    if _libc.madvise(buf.ctypes.data, buf.nbytes, advice) != 0:
        raise OSError("madvise failed")
    buf[:] = fill
    return buf
