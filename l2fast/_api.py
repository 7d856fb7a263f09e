"""The public functions and ParamList: validate once, then run a kernel.

Notation used in the docstrings: the input is a list of arrays w_1 .. w_L
(any shapes, float32 or float64), ``||w_i||^2 = sum_k w_i[k]^2`` is the
squared L2 (Frobenius) norm of one array, and N = sum_i size(w_i).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from . import _kernels
from ._args import pairing, real, thread_count, work_table
from ._distributed import reduce_sum
from ._interop import BFLOAT16_BITS
from ._partial import SumOfSquares
from ._table import INPLACE, READ, Table

if TYPE_CHECKING:
    from ._typing import Arrays, Comm, Real, Sums, Threads, View

__all__ = ["sum_squares", "scale_", "add_scaled_", "sum_squares_scale_", "ParamList"]


def _nonfinite(a: Any) -> bool:
    """Does NumPy array `a` hold a NaN or an Inf?  (bfloat16 seen as bits too.)"""
    if a.dtype is BFLOAT16_BITS:  # exponent all ones: Inf or NaN
        return bool(np.any((a & 0x7F80) == 0x7F80))
    return not np.isfinite(a).all()


def _require_finite(table: Table, nt: int) -> None:
    """Raise FloatingPointError naming the first array with a NaN or an Inf.

    A read-only pass: its per-array sums of squares are finite exactly when the
    values are, except for float64 values over ~1.3e154, checked directly."""
    sums = _kernels.sum_squares(table, num_threads=nt, per_array=True)
    for i in np.flatnonzero(~np.isfinite(sums)).tolist():
        if _nonfinite(table.view(i)):
            name = repr(table.names[i]) if table.names is not None else i
            raise FloatingPointError(f"{table.dst_label}[{name}] has a non-finite value "
                                     "(NaN or Inf); no array was changed")


# The bodies shared by the functions and the ParamList methods.

def _partial(per_array: bool, partial: bool) -> bool:
    if partial and per_array:
        raise ValueError("partial=True returns one SumOfSquares for all arrays; "
                         "per_array=True cannot be combined with it")
    return bool(partial)


def _sum(t: Table, per_array: bool, num_threads: Threads, check_finite: bool,
         reproducible: bool = False, partial: bool = False) -> float | Sums | SumOfSquares:
    nt = thread_count(num_threads)
    result: float | Sums | SumOfSquares
    if _partial(per_array, partial):
        result = SumOfSquares._from_kernel(_kernels.sum_squares(t, num_threads=nt, state=True))
        value: float | Sums = result.value
    else:
        result = value = _kernels.sum_squares(t, num_threads=nt, per_array=bool(per_array),
                                              exact=bool(reproducible))
    if check_finite and not np.isfinite(value).all():
        _require_finite(t, nt)
    return result


def _scale(t: Table, factor: Real, num_threads: Threads, check_finite: bool) -> None:
    nt, f = thread_count(num_threads), real(factor, "factor", check_finite)
    if check_finite:
        t.check_inplace()  # a bad array is reported before a bad value
        _require_finite(t, nt)
    _kernels.scale(t, f, num_threads=nt)
    t.wrote()


def _sum_scale(t: Table, factor: Real, per_array: bool, num_threads: Threads,
               check_finite: bool, reproducible: bool = False,
               partial: bool = False) -> float | Sums | SumOfSquares:
    nt, f = thread_count(num_threads), real(factor, "factor", check_finite)
    state = _partial(per_array, partial)
    if check_finite:
        t.check_inplace()
        _require_finite(t, nt)
    result: float | Sums | SumOfSquares
    if state:
        result = SumOfSquares._from_kernel(
            _kernels.sum_squares_scale(t, f, num_threads=nt, state=True))
    else:
        result = _kernels.sum_squares_scale(t, f, num_threads=nt, per_array=bool(per_array),
                                            exact=bool(reproducible))
    t.wrote()
    return result


def _add(pair: Table, alpha: Real, num_threads: Threads, check_finite: bool) -> None:
    nt, a = thread_count(num_threads), real(alpha, "alpha", check_finite)
    if check_finite:  # dst first, then src
        pair.check_inplace()
        _require_finite(pair, nt)
        _require_finite(Table(pair.src, pair.names, None, READ, pair.src_label), nt)
    _kernels.add_scaled(pair, a, num_threads=nt)
    pair.wrote()


# ---------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------

@overload
def sum_squares(arrays: Arrays, *, per_array: Literal[False] = ...,
                num_threads: Threads = ..., check_finite: bool = ...,
                reproducible: bool = ..., partial: Literal[False] = ...,
                comm: Comm = ...) -> float: ...
@overload
def sum_squares(arrays: Arrays, *, per_array: Literal[True],
                num_threads: Threads = ..., check_finite: bool = ...,
                reproducible: bool = ..., partial: Literal[False] = ...,
                comm: Comm = ...) -> Sums: ...
@overload
def sum_squares(arrays: Arrays, *, per_array: Literal[False] = ...,
                num_threads: Threads = ..., check_finite: bool = ...,
                reproducible: bool = ..., partial: Literal[True],
                comm: Comm = ...) -> SumOfSquares: ...
@overload
def sum_squares(arrays: Arrays, *, per_array: bool,
                num_threads: Threads = ..., check_finite: bool = ...,
                reproducible: bool = ..., partial: bool = ..., comm: Comm = ...
        ) -> float | Sums | SumOfSquares: ...
def sum_squares(arrays: Arrays, *, per_array: bool = False, num_threads: Threads = None,
                check_finite: bool = False,
                reproducible: bool = False, partial: bool = False,
                comm: Comm = None) -> float | Sums | SumOfSquares:
    r"""Sum of squares of every element of a list of arrays, in float64.

    .. math:: S = \sum_{i=1}^{L} \|w_i\|^2 = \sum_i \sum_k w_i[k]^2

    This is the quantity every L2 penalty is built on: ``lam / (2 * m) * S``
    for the per-sample convention, ``lam / (2 * N) * S`` per parameter.

    Parameters
    ----------
    arrays : ndarray, list of ndarray, dict of ndarray, or ParamList
        float32 or float64 arrays of any shapes and layouts (mixed dtypes are
        fine).  CPU torch tensors and objects NumPy can view without a copy
        are accepted too.
    per_array : bool, default False
        Return one sum per array instead of the total.
    num_threads : int or None, default None
        Threads to use.  None uses the OpenMP default (``OMP_NUM_THREADS``,
        or a threadpoolctl limit).  Inputs under ~130,000 elements always
        run on the calling thread.
    check_finite : bool, default False
        Raise FloatingPointError naming the first array holding a NaN or an
        Inf.  Without it NaN and Inf propagate as in IEEE arithmetic.
    reproducible : bool, default False
        Compute S exactly and round it once to the nearest float64 (ties to
        even): the result then depends on the values alone, bitwise the same
        for any order of the arrays, split of the values into arrays, and
        layout.  Costs ~10-40 % more where memory is not the limit.
    partial : bool, default False
        Return the exact sum unrounded, as a `SumOfSquares` that merges with
        others exactly (sums of shards, of ranks: ``(a + b).value``).
    comm : mpi4py.MPI.Comm, torch.distributed ProcessGroup, "mpi" or "torch", optional
        Sum over the ranks: each rank passes its own shards and every rank
        gets S of all of them, exact (as with `reproducible`), the same bits
        on every rank for any world size and sharding, from one all-reduce
        (docs/distributed.md).  Not with `per_array`.

    Returns
    -------
    float, ndarray of float64, or SumOfSquares
        The total S, an array of L per-array sums, or S unrounded.

    Notes
    -----
    Every element is widened to float64 before it is squared, so a float32
    or 16-bit square is exact and cannot overflow.  By default the sum uses
    many float64 accumulators folded in a fixed order over fixed pieces:
    bitwise identical for every thread count, relative error far below
    1e-12 for models of ~10^8 parameters.  With ``reproducible=True`` (or
    ``partial=True``) it is exact (docs/contract.md, "Sums").

    Examples
    --------
    >>> import numpy as np, l2fast
    >>> l2fast.sum_squares([np.array([3.0, 4.0]), np.array([[1.0], [2.0]], np.float32)])
    30.0
    """
    if comm is not None:
        return reduce_sum(comm, "sum_squares", lambda: _sum(
            work_table(arrays, READ), False, num_threads, check_finite, True, True),
            per_array=per_array, partial=partial)
    return _sum(work_table(arrays, READ), per_array, num_threads, check_finite, reproducible,
                partial)


def scale_(arrays: Arrays, factor: Real, *, num_threads: Threads = None,
           check_finite: bool = False) -> None:
    r"""Multiply every array by `factor`, in place: :math:`w_i \leftarrow c\,w_i`.

    Decoupled weight decay (AdamW, and SGD on the penalty alone) is
    ``scale_(params, 1 - lr * lam / m)``.

    Parameters
    ----------
    arrays : ndarray, list of ndarray, dict of ndarray, or ParamList
        Writeable float32 or float64 arrays that share no memory.
    factor : float
        c.  The product is formed in float64 and rounded once to each
        array's dtype.
    num_threads : int or None, default None
        As in `sum_squares`.
    check_finite : bool, default False
        Raise FloatingPointError, before anything is written, if an array
        holds a NaN or an Inf, or `factor` is not finite.

    Raises
    ------
    TypeError
        An input is not an array of float32 or float64 (its index is named).
    ValueError
        An array is read-only, or two arrays (or one array with itself, as
        a broadcast view) overlap in memory.  No array is changed.
    """
    _scale(work_table(arrays, INPLACE), factor, num_threads, check_finite)


def add_scaled_(dst: Arrays, src: Arrays, alpha: Real, *, num_threads: Threads = None,
                check_finite: bool = False) -> None:
    r"""Add a multiple of `src` to `dst`, in place: :math:`d_i \leftarrow d_i + \alpha\,s_i`.

    The coupled L2 gradient (torch SGD's ``weight_decay``) is
    ``add_scaled_(grads, params, lam / m)``: the gradient of
    :math:`\frac{\lambda}{2m}\sum_i\|w_i\|^2` with respect to :math:`w_i` is
    :math:`\frac{\lambda}{m} w_i`, whatever the number of parameters.

    Parameters
    ----------
    dst : ndarray, list, dict or ParamList
        Writeable float32 or float64 arrays (e.g. gradients).
    src : ndarray, list, dict or ParamList
        Arrays of the same shapes (e.g. weights), paired with `dst` by
        position, or by key when both are dicts.  dtypes may differ.  A
        `src` array may be the very same array as its `dst` partner
        (then ``dst *= 1 + alpha``), but must not overlap any other
        written array.
    alpha : float
        The sum is formed in float64 and rounded once to dst's dtype.
    num_threads : int or None, default None
        As in `sum_squares`.
    check_finite : bool, default False
        Raise FloatingPointError, before anything is written, if a dst or
        src array holds a NaN or an Inf, or `alpha` is not finite.

    Raises
    ------
    ValueError
        Lengths, keys or shapes differ, a dst array is read-only, or written
        memory overlaps.  No array is changed.
    TypeError
        As in `scale_`.
    """
    d, s, names = pairing(dst, src)
    _add(Table(d, names, s, INPLACE, "dst", "src"), alpha, num_threads, check_finite)


@overload
def sum_squares_scale_(arrays: Arrays, factor: Real, *, per_array: Literal[False] = ...,
                       num_threads: Threads = ..., check_finite: bool = ...,
                       reproducible: bool = ..., partial: Literal[False] = ...,
                       comm: Comm = ...) -> float: ...
@overload
def sum_squares_scale_(arrays: Arrays, factor: Real, *, per_array: Literal[True],
                       num_threads: Threads = ..., check_finite: bool = ...,
                       reproducible: bool = ..., partial: Literal[False] = ...,
                       comm: Comm = ...) -> Sums: ...
@overload
def sum_squares_scale_(arrays: Arrays, factor: Real, *, per_array: Literal[False] = ...,
                       num_threads: Threads = ..., check_finite: bool = ...,
                       reproducible: bool = ..., partial: Literal[True],
                       comm: Comm = ...) -> SumOfSquares: ...
@overload
def sum_squares_scale_(arrays: Arrays, factor: Real, *, per_array: bool,
                       num_threads: Threads = ..., check_finite: bool = ...,
                       reproducible: bool = ..., partial: bool = ..., comm: Comm = ...
        ) -> float | Sums | SumOfSquares: ...
def sum_squares_scale_(arrays: Arrays, factor: Real, *, per_array: bool = False,
                       num_threads: Threads = None, check_finite: bool = False,
                       reproducible: bool = False, partial: bool = False, comm: Comm = None
                   ) -> float | Sums | SumOfSquares:
    r"""Return the sum of squares and scale in place, in one pass over memory.

    .. math:: S = \sum_i \|w_i\|^2 \text{ (values before scaling)},
              \qquad w_i \leftarrow c\,w_i

    One step of decoupled decay that also reports the penalty of the
    weights it decays: ``lam / (2 * m) * sum_squares_scale_(params, 1 - lr * lam / m)``
    costs what `scale_` alone costs.

    Parameters
    ----------
    arrays, factor, num_threads
        As in `scale_`.
    per_array, reproducible, partial : bool, default False
        As in `sum_squares`.
    check_finite : bool, default False
        Raise FloatingPointError, before anything is written, if an array
        holds a NaN or an Inf, or `factor` is not finite.
    comm : optional
        As in `sum_squares`: S over all ranks; each rank scales its own
        arrays only.

    Returns
    -------
    float or ndarray of float64
        S, bitwise equal to ``sum_squares(arrays)`` called before scaling.
    """
    if comm is not None:
        return reduce_sum(comm, "sum_squares_scale_", lambda: _sum_scale(
            work_table(arrays, INPLACE), factor, False, num_threads, check_finite, True, True),
            per_array=per_array, partial=partial)
    return _sum_scale(work_table(arrays, INPLACE), factor, per_array, num_threads,
                      check_finite, reproducible, partial)


from ._paramlist import ParamList  # noqa: E402  (it builds on the bodies above)
