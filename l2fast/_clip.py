"""The global 2-norm of a list of arrays, and gradient clipping by it.

With arrays g_1 .. g_L (gradients, usually),

    ||g|| = sqrt(sum_i ||g_i||^2)

is the norm of all of them seen as one vector (torch's ``get_total_norm``),
and clipping to `max_norm` multiplies every array by

    c = max_norm / (||g|| + eps)      when c < 1, else leaves them alone,

torch's ``clip_grad_norm_`` rule.  The arrays are validated once, for
writing, and the sum and the scaling run on that one work table.

With ``comm=`` (docs/distributed.md) each rank holds a shard of the
gradients and every rank gets the norm of all of them,

    ||g|| = sqrt(round(S)),   S = sum over ranks r, arrays i of ||g_{r,i}||^2

S exact and rounded once to float64 (the bits of `sum_squares(...,
comm=...)`), so every rank takes the same c and scales its own shard by it.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import _kernels
from ._args import real, thread_count, work_table
from ._distributed import reduce_norm
from ._partial import SumOfSquares
from ._table import INPLACE, READ, Table

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._typing import Arrays, Comm, Real, Threads

    # what validation hands on: the table, the thread count, the arguments every
    # rank must share (with comm)
    Prepared = tuple[Table, int, tuple[float, ...]]

__all__ = ["global_norm", "clip_grad_norm_"]

# torch.nn.utils.clip_grad_norm_'s message, word for word
NONFINITE = ("The total norm of order {order} for gradients from `parameters` is non-finite, "
             "so it cannot be clipped. To disable this error and scale the gradients by the "
             "non-finite norm anyway, set `error_if_nonfinite=False`")


def _state(t: Table, nt: int) -> SumOfSquares:
    """This table's exact sum of squares, unrounded."""
    return SumOfSquares._from_kernel(_kernels.sum_squares(t, num_threads=nt, state=True))


def _total_norm(prepare: Callable[[], Prepared], comm: Comm, kind: str
                ) -> tuple[Table, int, tuple[float, ...], float]:
    """`prepare()` (validation: the table, the thread count, the arguments every
    rank must share), then the 2-norm of the table's arrays: the square root of
    their float64 sum of squares, or with `comm` of the exact sum over all the
    ranks rounded once (the same bits on every rank).  With comm, `prepare`
    runs inside the exchange: a rank whose arguments or arrays are refused
    makes every rank raise."""
    if comm is None:
        t, nt, args = prepare()
        return t, nt, args, math.sqrt(_kernels.sum_squares(t, num_threads=nt))
    got: list[Prepared] = []

    def local() -> tuple[SumOfSquares, tuple[float, ...], tuple[int, ...]]:
        got.append(prepare())
        t, nt, args = got[0]
        return _state(t, nt), args, ()

    norm, _ = reduce_norm(comm, kind, local)
    return (*got[0], norm)


def clip_coef(norm: float, max_norm: float, eps: float) -> float:
    """max_norm / (norm + eps), in float64: inf when the denominator is 0,
    nan when the norm is nan (torch then scales by nan too)."""
    d = norm + eps
    return max_norm / d if d > 0 else (math.inf if d == 0 else math.nan)


def clip_args(max_norm: Real, eps: Real) -> tuple[float, float]:
    """max_norm and eps as floats, checked: max_norm >= 0, eps finite and >= 0."""
    m, e = real(max_norm, "max_norm"), real(eps, "eps")
    if not m >= 0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm!r}")
    if not (e >= 0 and math.isfinite(e)):
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    return m, e


def clip_by(t: Table, nt: int, norm: float, max_norm: float, eps: float,
            error_if_nonfinite: bool, order: float = 2.0) -> None:
    """The clipping rule on a table validated for writing: raise for a
    non-finite norm (error_if_nonfinite), else scale by max_norm / (norm + eps)
    when that is < 1 (or NaN: scaled by NaN, as torch does)."""
    if error_if_nonfinite and not math.isfinite(norm):
        raise RuntimeError(NONFINITE.format(order=order))
    coef = clip_coef(norm, max_norm, eps)
    if not coef >= 1.0:
        _kernels.scale(t, coef, num_threads=nt)
        t.wrote()


def _global_norm(table: Callable[[], Table], num_threads: Threads, comm: Comm = None) -> float:
    return _total_norm(lambda: (table(), thread_count(num_threads), ()), comm, "global_norm")[3]


def _clip(table: Callable[[], Table], max_norm: Real, eps: Real, error_if_nonfinite: bool,
          num_threads: Threads, comm: Comm = None) -> float:
    """The body of `clip_grad_norm_` and its ParamList method: the norm, then
    the scaling on the same table (validated for writing before either)."""
    def prepare() -> Prepared:
        t = table()
        nt = thread_count(num_threads)
        args = clip_args(max_norm, eps)
        if t.mode != INPLACE:
            t.check_inplace()  # a kept table: read-only, overlapping or autograd-bound arrays
        return t, nt, args

    t, nt, (m, e), norm = _total_norm(prepare, comm, "clip_grad_norm_")
    clip_by(t, nt, norm, m, e, error_if_nonfinite)
    return norm


def global_norm(arrays: Arrays, *, num_threads: Threads = None, comm: Comm = None) -> float:
    r"""The 2-norm of all the arrays seen as one vector.

    .. math:: \|g\| = \sqrt{\sum_{i=1}^{L} \|g_i\|^2}

    Parameters
    ----------
    arrays : ndarray, list of ndarray, dict of ndarray, or ParamList
        As in `sum_squares` (torch tensors too).
    num_threads : int or None, default None
        As in `sum_squares`.
    comm : mpi4py.MPI.Comm, torch.distributed ProcessGroup, "mpi" or "torch", optional
        The norm over the ranks: each rank passes its own shards and every
        rank gets :math:`\sqrt{\operatorname{round}(S)}` with
        :math:`S = \sum_r \sum_i \|g_{r,i}\|^2` over all ranks r, exact and
        rounded once, the same bits on every rank for any world size and
        sharding: ``math.sqrt(sum_squares(arrays, comm=comm))``, from one
        all-reduce (docs/distributed.md).  A rank whose arrays are refused
        makes every rank raise.

    Returns
    -------
    float
        The square root of `sum_squares(arrays)` (a float64 sum of the
        exact squares), rounded once.  NaN or Inf values give a NaN or Inf.
    """
    return _global_norm(lambda: work_table(arrays, READ), num_threads, comm)


def clip_grad_norm_(grads: Arrays, max_norm: Real, *, eps: Real = 1e-6,
                    error_if_nonfinite: bool = False, num_threads: Threads = None,
                    comm: Comm = None) -> float:
    r"""Clip the global 2-norm of `grads` to `max_norm`, in place.

    .. math:: \|g\| = \sqrt{\sum_i \|g_i\|^2}, \qquad
              c = \frac{\text{max\_norm}}{\|g\| + \varepsilon}, \qquad
              g_i \leftarrow c\,g_i \ \text{ if } c < 1

    torch's ``clip_grad_norm_`` rule (which multiplies by ``min(c, 1)``),
    applied to the gradient arrays themselves.  The arrays are validated
    once, for writing; the sum and the scaling then run on that one work
    table.

    Parameters
    ----------
    grads : ndarray, list of ndarray, dict of ndarray, or ParamList
        Writeable arrays that share no memory: the gradients (for torch
        parameters, their ``.grad`` tensors; `l2fast.torch.clip_grad_norm_`
        takes the parameters).
    max_norm : float
        The largest norm let through, >= 0.
    eps : float, default 1e-6
        Added to the norm before dividing, as torch does.
    error_if_nonfinite : bool, default False
        Raise RuntimeError (torch's message) when the norm is NaN or Inf,
        before anything is written.  Without it a NaN norm scales every
        array by NaN and an Inf norm by 0, as torch does.
    num_threads : int or None, default None
        As in `sum_squares`.
    comm : mpi4py.MPI.Comm, torch.distributed ProcessGroup, "mpi" or "torch", optional
        Each rank passes its shard of the gradients: ||g|| is the norm over
        all ranks, as `global_norm` with `comm` (the same bits on every
        rank), and each rank scales its own arrays by the same c.  Every rank
        must pass the same `max_norm` and `eps` (else ValueError everywhere).

    Returns
    -------
    float
        ||g||, the norm before clipping.

    Raises
    ------
    TypeError, ValueError
        As in `scale_`, or `max_norm` < 0, or `eps` not finite and >= 0;
        nothing is written (with `comm`, on any rank: the others raise
        RuntimeError naming the failing rank).
    RuntimeError
        With `error_if_nonfinite`, for a NaN or Inf norm (with `comm`: on
        every rank, whichever rank holds the value).

    Notes
    -----
    c is formed in float64 and each product is rounded once to the
    array's dtype; torch rounds c to the norm's dtype first (float32 for
    float32 gradients), so results may differ from torch's by one ulp.
    """
    return _clip(lambda: work_table(grads, INPLACE), max_norm, eps, error_if_nonfinite,
                 num_threads, comm)
