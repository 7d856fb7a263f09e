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

This module needs torch; ``import l2fast`` never imports it.
"""
from __future__ import annotations

import functools
import math
import types
import warnings
from typing import Any, Iterable, Union

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("l2fast.torch needs torch, which is not installed (pip install torch); "
                      "the rest of l2fast works without it") from e

from ._args import thread_count
from ._clip import NONFINITE, _clip, _global_norm, clip_coef
from ._kernels import scale as _scale
from ._table import INPLACE, READ, Table

__all__ = ["clip_grad_norm_", "get_total_norm"]

TensorOrTensors = Union[torch.Tensor, Iterable[torch.Tensor]]

# torch's eps: clip_coef = max_norm / (total_norm + 1e-6)
EPS = 1e-6


def _listed(tensors: TensorOrTensors) -> list[Any]:
    return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)


def _norm_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    """The dtype of torch's total norm: the gradients' dtypes promoted together."""
    return functools.reduce(torch.promote_types, {t.dtype for t in tensors})


def _order(norm_type: Any) -> float:
    order = float(norm_type)
    if order != 2.0 and order != math.inf:
        raise NotImplementedError(
            f"l2fast.torch computes the 2-norm and the inf-norm; norm_type={norm_type!r} is "
            "not implemented (torch.nn.utils handles other orders)")
    return order


def _inf_norm(tensors: list[torch.Tensor]) -> float:
    """max |x| over every element (exact in any dtype: no sum is formed)."""
    norms = [torch.linalg.vector_norm(t, math.inf) for t in tensors]
    return float(torch.linalg.vector_norm(torch.stack(norms), math.inf))


def _table(tensors: list[torch.Tensor], labels: tuple[int, ...] | None, mode: int) -> Table:
    """The validated work table of `tensors`; errors name ``grads[i]`` (i: the
    position among the parameters given, when `labels` is given)."""
    return Table(tuple(tensors), labels, None, mode, "grads")


def get_total_norm(tensors: TensorOrTensors, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None, *,
                   num_threads: int | None = None) -> torch.Tensor:
    r"""The norm of `tensors` seen as one vector: ``torch.nn.utils.get_total_norm``.

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

    Returns
    -------
    Tensor
        A 0-d tensor of the tensors' dtypes promoted together (float32 for
        float32 tensors); ``tensor(0.)`` for no tensors.
    """
    with torch.no_grad():
        ts = _listed(tensors)
        order = _order(norm_type)
        if not ts:
            return torch.tensor(0.0)
        table = _table(ts, None, READ)
        total = _global_norm(table, num_threads) if order == 2.0 else _inf_norm(ts)
        if error_if_nonfinite and not math.isfinite(total):
            raise RuntimeError(NONFINITE.format(order=order))
        return torch.tensor(total, dtype=_norm_dtype(ts))


def clip_grad_norm_(parameters: TensorOrTensors, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None, *,
                    num_threads: int | None = None) -> torch.Tensor:
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
        if isinstance(parameters, torch.Tensor):
            params = [parameters]
        else:
            generator = isinstance(parameters, types.GeneratorType)
            params = list(parameters)
            if generator and not params:
                warnings.warn("`parameters` is an empty generator, no gradient clipping "
                              "will occur.", stacklevel=2)
        order = _order(norm_type)
        positions = tuple(i for i, p in enumerate(params) if p.grad is not None)
        grads: list[torch.Tensor] = [params[i].grad for i in positions]  # type: ignore[misc]
        if not grads:
            return torch.tensor(0.0)
        table = _table(grads, positions, INPLACE)
        if order == 2.0:
            total = _clip(table, float(max_norm), EPS, error_if_nonfinite, num_threads)
        else:
            total = _clip_inf(table, grads, float(max_norm), error_if_nonfinite, num_threads)
        return torch.tensor(total, dtype=_norm_dtype(grads))


def _clip_inf(table: Table, grads: list[torch.Tensor], max_norm: float,
              error_if_nonfinite: bool, num_threads: int | None) -> float:
    """clip_grad_norm_ with norm_type=inf, on a table validated for writing."""
    if not max_norm >= 0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm!r}")
    total = _inf_norm(grads)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(NONFINITE.format(order=math.inf))
    coef = clip_coef(total, max_norm, EPS)
    if not coef >= 1.0:
        _scale(table, coef, num_threads=thread_count(num_threads))
        table.wrote()
    return total
