"""What an argument is: the one place that turns what a user passes into what
the kernels take.

- arrays: one array, any iterable of arrays, a dict of named arrays, or an
  object that keeps its own validated work table (`ParamList`);
- pairs (dst, src): by key when both are named, else by position;
- thread counts: None is the OpenMP default now, else a positive int;
- real numbers: factors and alphas, as float.

Errors name the argument and what was expected.
"""
from __future__ import annotations

import array
import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _kernels
from ._table import Table

if TYPE_CHECKING:
    from ._typing import Arrays, Real, Threads


class HasTable:
    """Base of objects that carry their own validated work table (ParamList):
    `_table`, and `_keyed` when built from a dict (they pair by key)."""

    __slots__ = ()
    _table: Table
    _keyed: bool


def entries(arrays: Arrays, what: str) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
    """(arrays, keys or None) of one argument, keys as the user gave them."""
    if isinstance(arrays, HasTable):
        return arrays._table.arrays, arrays._table.names
    if isinstance(arrays, (np.ndarray, memoryview, array.array)) or hasattr(arrays, "__dlpack__"):
        return (arrays,), None
    if isinstance(arrays, Mapping):
        return tuple(arrays.values()), tuple(arrays)
    if isinstance(arrays, (str, bytes)) or not hasattr(arrays, "__iter__"):
        raise TypeError(f"{what}: expected an array, a list of arrays or a dict of named "
                        f"arrays, got {type(arrays).__qualname__}")
    return tuple(arrays), None


def listing(arrays: Arrays, what: str) -> tuple[tuple[Any, ...], tuple[str, ...] | None]:
    """(arrays, names or None) of one argument; names are the keys as str."""
    values, keys = entries(arrays, what)
    if keys is None or isinstance(arrays, HasTable):
        return values, keys
    return values, tuple(str(k) for k in keys)


def work_table(arrays: Arrays, mode: int) -> Table:
    """The work table of a call on `arrays`: a ParamList's own (the kernels
    check a kept table's writeability again), or a new one."""
    if isinstance(arrays, HasTable):
        return arrays._table
    return Table(*listing(arrays, "arrays"), None, mode)


def _as_mapping(arrays: Arrays) -> Arrays:
    """A HasTable built from a dict, as that dict; anything else as it is."""
    if isinstance(arrays, HasTable) and arrays._keyed:
        return dict(zip(arrays._table.names or (), arrays._table.arrays))
    return arrays


def pairing(dst: Arrays, src: Arrays
            ) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[str, ...] | None]:
    """(dst arrays, src arrays, names): by key when both are named (dicts, or
    ParamLists made from dicts), else by position."""
    dst, src = _as_mapping(dst), _as_mapping(src)
    d, dnames = listing(dst, "dst")
    if isinstance(dst, Mapping) and isinstance(src, Mapping):
        missing = [k for k in dst if k not in src]
        extra = [k for k in src if k not in dst]
        if missing or extra:
            raise ValueError(f"dst and src must name the same arrays; missing from src: "
                             f"{missing[:5]}, not in dst: {extra[:5]}")
        return d, tuple(src[k] for k in dst), dnames
    s, snames = listing(src, "src")
    if len(s) != len(d):
        raise ValueError(f"dst has {len(d)} arrays but src has {len(s)}")
    return d, s, dnames if dnames is not None else snames


def checked_threads(num_threads: Threads) -> int | None:
    """`num_threads` checked: None, or a positive int."""
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise TypeError(f"num_threads must be None or a positive int, got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be None or a positive int, got {num_threads}")
    return int(num_threads)


def thread_count(num_threads: Threads) -> int:
    """The team size a kernel asks for: `num_threads`, or with None the OpenMP
    default now (OMP_NUM_THREADS, threadpoolctl limits).  The driver never
    starts more threads than there are items or OMP_THREAD_LIMIT allows."""
    n = checked_threads(num_threads)
    return _kernels.max_threads() if n is None else n


def real(x: Real, what: str, check_finite: bool = False) -> float:
    """`x` as a float; TypeError unless it is a real number, and with
    `check_finite` FloatingPointError unless it is finite."""
    if not isinstance(x, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(x).__qualname__}")
    if check_finite and not math.isfinite(x):
        raise FloatingPointError(f"{what} is {x}, not finite; no array was changed")
    return float(x)
