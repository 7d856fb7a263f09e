"""The global 2-norm of a list of arrays, and gradient clipping by it.

With arrays g_1 .. g_L (gradients, usually),

    ||g|| = sqrt(sum_i ||g_i||^2)

is the norm of all of them seen as one vector (torch's ``get_total_norm``),
and clipping to `max_norm` multiplies every array by

    c = max_norm / (||g|| + eps)      when c < 1, else leaves them alone,

torch's ``clip_grad_norm_`` rule.  The arrays are validated once, for
writing, and the sum and the scaling run on that one work table.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import _kernels
from ._args import real, thread_count, work_table
from ._table import INPLACE, READ, Table

if TYPE_CHECKING:
    from ._typing import Arrays, Real, Threads

__all__ = ["global_norm", "clip_grad_norm_"]

# torch.nn.utils.clip_grad_norm_'s message, word for word
NONFINITE = ("The total norm of order {order} for gradients from `parameters` is non-finite, "
             "so it cannot be clipped. To disable this error and scale the gradients by the "
             "non-finite norm anyway, set `error_if_nonfinite=False`")


def _total_norm(t: Table, nt: int) -> float:
    """sqrt of the float64 sum of squares of the table's arrays.  (The one
    place a sum over several processes would be reduced before the root.)"""
    return math.sqrt(_kernels.sum_squares(t, num_threads=nt))


def clip_coef(norm: float, max_norm: float, eps: float) -> float:
    """max_norm / (norm + eps), in float64: inf when the denominator is 0,
    nan when the norm is nan (torch then scales by nan too)."""
    d = norm + eps
    return max_norm / d if d > 0 else (math.inf if d == 0 else math.nan)


def _global_norm(t: Table, num_threads: Threads) -> float:
    return _total_norm(t, thread_count(num_threads))


def _clip(t: Table, max_norm: Real, eps: Real, error_if_nonfinite: bool,
          num_threads: Threads) -> float:
    """The body of `clip_grad_norm_` and its ParamList method: the norm, then
    the scaling on the same table (validated for writing before either)."""
    nt = thread_count(num_threads)
    m, e = real(max_norm, "max_norm"), real(eps, "eps")
    if not m >= 0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm!r}")
    if not (e >= 0 and math.isfinite(e)):
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    if t.mode != INPLACE:
        t.check_inplace()  # a kept table: read-only, overlapping or autograd-bound arrays
    norm = _total_norm(t, nt)
    if error_if_nonfinite and not math.isfinite(norm):
        raise RuntimeError(NONFINITE.format(order=2.0))
    coef = clip_coef(norm, m, e)
    if not coef >= 1.0:  # also nan: scaled by nan, as torch does
        _kernels.scale(t, coef, num_threads=nt)
        t.wrote()
    return norm


def global_norm(arrays: Arrays, *, num_threads: Threads = None) -> float:
    r"""The 2-norm of all the arrays seen as one vector.

    .. math:: \|g\| = \sqrt{\sum_{i=1}^{L} \|g_i\|^2}

    Parameters
    ----------
    arrays : ndarray, list of ndarray, dict of ndarray, or ParamList
        As in `sum_squares` (torch tensors too).
    num_threads : int or None, default None
        As in `sum_squares`.

    Returns
    -------
    float
        The square root of `sum_squares(arrays)` (a float64 sum of the
        exact squares), rounded once.  NaN or Inf values give a NaN or Inf.
    """
    return _global_norm(work_table(arrays, READ), num_threads)


def clip_grad_norm_(grads: Arrays, max_norm: Real, *, eps: Real = 1e-6,
                    error_if_nonfinite: bool = False, num_threads: Threads = None) -> float:
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

    Returns
    -------
    float
        ||g||, the norm before clipping.

    Raises
    ------
    TypeError, ValueError
        As in `scale_`, or `max_norm` < 0, or `eps` not finite and >= 0;
        nothing is written.

    Notes
    -----
    c is formed in float64 and each product is rounded once to the
    array's dtype; torch rounds c to the norm's dtype first (float32 for
    float32 gradients), so results may differ from torch's by one ulp.
    """
    return _clip(work_table(grads, INPLACE), max_norm, eps, error_if_nonfinite, num_threads)
