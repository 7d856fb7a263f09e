r"""Drop-in replacements for torch's gradient-norm utilities, on l2fast's kernels.

``torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)`` becomes
``l2fast.torch.clip_grad_norm_(model.parameters(), max_norm)``: the same
arguments, the same return value (the total norm as a 0-d tensor of the
gradients' dtype), the same rule

.. math:: \|g\| = \sqrt{\sum_i \|g_i\|^2}, \qquad
          g_i \leftarrow g_i \cdot \min\Big(\frac{\text{max\_norm}}{\|g\| + 10^{-6}},
          1\Big),

with the sum of squares accumulated in float64 from exact squares (torch
sums in the gradients' dtype), the coefficient formed in float64 and each
product rounded once.  CPU tensors only.  docs/torch.md has the details and
where results differ from torch's.

With ``comm=`` each rank passes its shard of the gradients and the norm is
the norm over all the ranks (docs/torch.md, "Sharded gradients").

This module needs torch; ``import l2fast`` never imports it.
"""
from __future__ import annotations

import functools
import math
import types
import warnings
from typing import Any, Callable, Iterable, Union

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("l2fast.torch needs torch, which is not installed (pip install torch); "
                      "the rest of l2fast works without it") from e

from ._args import thread_count
from ._clip import NONFINITE, _clip, _global_norm, _state, clip_args, clip_by
from ._distributed import reduce_norm
from ._table import DTYPE_NAMES, INPLACE, READ, Table, grads_of

__all__ = ["clip_grad_norm_", "get_total_norm"]

TensorOrTensors = Union[torch.Tensor, Iterable[torch.Tensor]]

# torch's eps: clip_coef = max_norm / (total_norm + 1e-6)
EPS = 1e-6


def _listed(tensors: TensorOrTensors) -> list[Any]:
    return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)


def _norm_dtype(table: Table) -> torch.dtype:
    """The dtype of torch's total norm: the table's dtypes promoted together."""
    held = [getattr(torch, name) for k, name in enumerate(DTYPE_NAMES) if table.dtype_mask >> k & 1]
    return functools.reduce(torch.promote_types, held)


def _order(norm_type: Any) -> float:
    order = float(norm_type)
    if order != 2.0 and order != math.inf:
        raise NotImplementedError(
            f"l2fast.torch computes the 2-norm and the inf-norm; norm_type={norm_type!r} is "
            "not implemented (torch.nn.utils handles other orders)")
    return order


def _inf_norm(tensors: list[torch.Tensor]) -> float:
    """max |x| over every element (exact in any dtype: no sum is formed); 0
    for no tensors."""
    if not tensors:
        return 0.0
    norms = [torch.linalg.vector_norm(t, math.inf) for t in tensors]
    return float(torch.linalg.vector_norm(torch.stack(norms), math.inf))


def _table(tensors: list[torch.Tensor], labels: tuple[int, ...] | None, mode: int) -> Table:
    """The validated work table of `tensors`; errors name ``grads[i]`` (i: the
    position among the parameters given, when `labels` is given)."""
    return Table(tuple(tensors), labels, None, mode, "grads")


def _grads(parameters: TensorOrTensors
           ) -> tuple[list[torch.Tensor], tuple[int, ...] | None, bool]:
    """The parameters' gradients (None skipped), their positions among the
    parameters (None: every parameter has one), and whether `parameters` was
    an empty generator."""
    if isinstance(parameters, torch.Tensor):
        params = [parameters]
        empty_generator = False
    else:
        generator = isinstance(parameters, types.GeneratorType)
        params = list(parameters)
        empty_generator = generator and not params
    grads, positions = grads_of(params)
    return grads, positions, empty_generator


def _warn_empty_generator(stacklevel: int) -> None:
    warnings.warn("`parameters` is an empty generator, no gradient clipping "
                  "will occur.", stacklevel=stacklevel + 1)


# ---------------------------------------------------------------------------
# comm=: the norm over the ranks
# ---------------------------------------------------------------------------

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _is_inf(norm_type: Any) -> bool:
    try:
        return float(norm_type) == math.inf
    except (TypeError, ValueError):
        return False  # refused by _order, inside the exchange


def _flags(tensors: list[torch.Tensor]) -> tuple[int, ...]:
    held = {t.dtype for t in tensors}
    return tuple(int(d in held) for d in _DTYPES)


def _result(total: float, flags: tuple[int, ...]) -> torch.Tensor:
    """The norm as torch returns it, with comm: the dtype is the gradients'
    dtypes promoted over all the ranks (the same tensor on every rank);
    ``tensor(0.)`` when no rank holds a tensor."""
    held = [d for d, f in zip(_DTYPES, flags) if f]
    if not held:
        return torch.tensor(0.0)
    return torch.tensor(total, dtype=functools.reduce(torch.promote_types, held))


Made = tuple[Table, list[torch.Tensor], int, tuple[float, ...]]


def _over_ranks(comm: Any, kind: str, norm_type: Any, make: Callable[[], Made]
                ) -> tuple[float, tuple[int, ...], Made]:
    """The norm of order `norm_type` of every rank's tensors: `make()` (this
    rank's table, tensors, threads and shared arguments) runs inside the
    exchange, so that a rank whose input is refused makes every rank raise."""
    inf = _is_inf(norm_type)
    got: list[Made] = []

    def local() -> tuple[Any, tuple[float, ...], tuple[int, ...]]:
        got.append(make())
        table, ts, nt, args = got[0]
        return (_inf_norm(ts) if inf else _state(table, nt)), args, _flags(ts)

    total, flags = reduce_norm(comm, kind, local, inf=inf)
    return total, flags, got[0]


# ---------------------------------------------------------------------------
# The functions
# ---------------------------------------------------------------------------

def get_total_norm(tensors: TensorOrTensors, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None, *,
                   num_threads: int | None = None, comm: Any = None) -> torch.Tensor:
    r"""The norm of `tensors` seen as one vector: ``torch.nn.utils.get_total_norm``.

    .. math:: \|g\|_2 = \sqrt{\sum_i \|g_i\|^2}, \qquad
              \|g\|_\infty = \max_i \max_k |g_i[k]|

    Parameters
    ----------
    tensors : Tensor or iterable of Tensor
        CPU tensors of float16, bfloat16, float32 or float64 (a generator
        is consumed once).
    norm_type : float, default 2.0
        2.0, or ``inf`` (max |x|).  Other orders raise NotImplementedError.
    error_if_nonfinite : bool, default False
        Raise RuntimeError, as torch does, when the norm is NaN or Inf.
    foreach : bool or None
        Accepted for compatibility, and ignored: l2fast runs one kernel.
    num_threads : int or None, default None
        l2fast's threads, as in `l2fast.sum_squares` (not torch's).
    comm : mpi4py.MPI.Comm, torch.distributed ProcessGroup, "mpi" or "torch", optional
        Each rank passes its shard of the tensors and every rank gets the
        norm of all of them: the 2-norm :math:`\sqrt{\operatorname{round}(S)}`,
        S the exact sum of squares over all ranks rounded once (as
        `l2fast.global_norm` with comm), or the inf-norm, the largest |x| on
        any rank; the same tensor on every rank, its dtype the tensors'
        dtypes promoted over all ranks (docs/torch.md, "Sharded gradients").

    Returns
    -------
    Tensor
        A 0-d tensor of the tensors' dtypes promoted together (float32 for
        float32 tensors); ``tensor(0.)`` for no tensors.
    """
    with torch.no_grad():
        if comm is not None:
            def make() -> Made:
                ts = _listed(tensors)
                _order(norm_type)
                return _table(ts, None, READ), ts, thread_count(num_threads), ()

            total, flags, _ = _over_ranks(comm, "get_total_norm", norm_type, make)
            if error_if_nonfinite and not math.isfinite(total):
                raise RuntimeError(NONFINITE.format(order=float(norm_type)))
            return _result(total, flags)
        ts = _listed(tensors)
        order = _order(norm_type)
        if not ts:
            return torch.tensor(0.0)
        table = _table(ts, None, READ)
        total = _global_norm(lambda: table, num_threads) if order == 2.0 else _inf_norm(ts)
        if error_if_nonfinite and not math.isfinite(total):
            raise RuntimeError(NONFINITE.format(order=order))
        return torch.tensor(total, dtype=_norm_dtype(table))


def clip_grad_norm_(parameters: TensorOrTensors, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None, *,
                    num_threads: int | None = None, comm: Any = None) -> torch.Tensor:
    r"""Clip the gradients' total norm, in place: ``torch.nn.utils.clip_grad_norm_``.

    .. math:: g_i \leftarrow g_i \cdot \min\Big(\frac{\text{max\_norm}}{\|g\| + 10^{-6}}, 1\Big)

    Parameters
    ----------
    parameters : Tensor or iterable of Tensor
        Parameters whose ``.grad`` is clipped (those with no grad are
        skipped); a generator such as ``model.parameters()`` is consumed
        once.  Gradients must be CPU tensors of float16, bfloat16, float32
        or float64; errors name ``grads[i]``, i the parameter's position.
    max_norm : float
        The largest norm let through, >= 0.
    norm_type : float, default 2.0
        2.0 or ``inf``; other orders raise NotImplementedError.
    error_if_nonfinite : bool, default False
        Raise RuntimeError (torch's message) when the norm is NaN or Inf,
        before any gradient is written.  Without it, as torch: a NaN norm
        makes every gradient NaN, an Inf norm multiplies them by 0.
    foreach : bool or None
        Accepted for compatibility, and ignored.
    num_threads : int or None, default None
        l2fast's threads, as in `l2fast.sum_squares` (not torch's).
    comm : mpi4py.MPI.Comm, torch.distributed ProcessGroup, "mpi" or "torch", optional
        Each rank passes the parameters whose gradients it holds (a shard):
        ||g|| is the norm over all ranks, as `get_total_norm` with comm, the
        same on every rank, and each rank multiplies its own gradients by
        the same coefficient.  Every rank must pass the same `max_norm`.
        A rank whose input is refused makes every rank raise (the others a
        RuntimeError naming it), and with `error_if_nonfinite` a NaN or Inf
        on any rank raises on every rank; nothing is written then.

    Returns
    -------
    Tensor
        The total norm before clipping, a 0-d tensor of the gradients'
        dtypes promoted together; ``tensor(0.)`` when no parameter has a
        gradient.

    Notes
    -----
    Runs under ``torch.no_grad()`` as torch's does; the gradients' version
    counters are bumped when they are written.  Gradients are multiplied
    only when the coefficient is below 1 (torch multiplies by 1.0
    otherwise, which changes nothing).
    """
    with torch.no_grad():
        clip = _clip_local if comm is None else functools.partial(_clip_over_ranks, comm=comm)
        return clip(parameters, max_norm, norm_type, error_if_nonfinite, num_threads)


def _clip_local(parameters: TensorOrTensors, max_norm: float, norm_type: Any,
                error_if_nonfinite: bool, num_threads: int | None) -> torch.Tensor:
    """clip_grad_norm_ of this process's gradients."""
    grads, positions, empty_generator = _grads(parameters)
    if empty_generator:
        _warn_empty_generator(3)
    order = _order(norm_type)
    if not grads:
        return torch.tensor(0.0)
    table = _table(grads, positions, INPLACE)
    if order == 2.0:
        total = _clip(lambda: table, float(max_norm), EPS, error_if_nonfinite, num_threads)
    else:
        nt = thread_count(num_threads)
        m, _ = clip_args(float(max_norm), EPS)
        total = _inf_norm(grads)
        clip_by(table, nt, total, m, EPS, error_if_nonfinite, math.inf)
    return torch.tensor(total, dtype=_norm_dtype(table))


def _clip_over_ranks(parameters: TensorOrTensors, max_norm: float, norm_type: Any,
                     error_if_nonfinite: bool, num_threads: int | None, *,
                     comm: Any) -> torch.Tensor:
    """clip_grad_norm_ with comm: the norm over the ranks, then each rank's own
    gradients scaled by the common coefficient."""
    empty: list[bool] = []

    def make() -> Made:
        grads, positions, empty_generator = _grads(parameters)
        empty.append(empty_generator)
        _order(norm_type)
        table = _table(grads, positions, INPLACE)
        nt = thread_count(num_threads)
        return table, grads, nt, clip_args(float(max_norm), EPS)

    total, flags, (table, _, nt, (m, eps)) = _over_ranks(comm, "clip_grad_norm_", norm_type,
                                                         make)
    if empty[0]:
        _warn_empty_generator(3)
    clip_by(table, nt, total, m, eps, error_if_nonfinite, float(norm_type))
    return _result(total, flags)
