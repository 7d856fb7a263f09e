"""ParamList: a list of arrays validated once, for repeated calls; its
methods share their bodies with the functions of _api.py."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, SupportsIndex, overload

import numpy as np

from ._api import _add, _scale, _sum, _sum_scale
from ._args import HasTable, listing, pairing
from ._clip import _clip, _global_norm
from ._distributed import reduce_sum
from ._partial import SumOfSquares
from ._table import INPLACE_LATER, Table

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._typing import Arrays, Comm, Real, Sums, Threads, View

__all__ = ["ParamList"]


class ParamList(HasTable):
    """A list of arrays validated once, for repeated calls.

    Building the work table (checking dtypes and layouts, cutting the arrays
    into pieces for the threads) costs about as much as a NumPy call per
    array; a ParamList pays it once.  It holds references to its arrays,
    which keeps them alive, and never copies them.

    Parameters
    ----------
    arrays : ndarray, list of ndarray, dict of ndarray, or torch parameters
        As in `sum_squares`.  Read-only or overlapping arrays are accepted;
        the in-place methods then raise ValueError, as the functions do.

    Attributes
    ----------
    arrays : tuple of ndarray
        The arrays (NumPy views of tensors given).
    names : tuple of str or None
        Keys, when built from a dict.
    size : int
        N, the total number of elements.
    nbytes : int
        Total bytes of the arrays.

    Examples
    --------
    >>> import numpy as np, l2fast
    >>> ws = [np.full((2, 2), 1.0), np.full(3, 2.0, np.float32)]
    >>> pl = l2fast.ParamList(ws)
    >>> pl.size, pl.sum_squares()
    (7, 16.0)
    >>> pl.sum_squares_scale_(0.5)
    16.0
    >>> pl.sum_squares()
    4.0
    """

    __slots__ = ("_table", "_pair", "_keyed")

    _table: Table
    _pair: tuple[Arrays, Table] | None

    def __init__(self, arrays: Arrays) -> None:
        self._table = Table(*listing(arrays, "arrays"), None, INPLACE_LATER)
        self._pair = None
        self._keyed = self._table.names is not None  # built from a dict: pairs by key

    @classmethod
    def _labelled(cls, arrays: tuple[Any, ...], labels: tuple[Any, ...]) -> ParamList:
        """A ParamList whose errors name array i as ``arrays[labels[i]]``: for a
        selection of a larger list, labels are the original positions or keys."""
        self = cls.__new__(cls)
        self._table = Table(arrays, labels, None, INPLACE_LATER)
        self._pair = None
        self._keyed = False
        return self

    @property
    def arrays(self) -> tuple[View, ...]:
        return self._table.views

    @property
    def names(self) -> tuple[str, ...] | None:
        return self._table.names

    @property
    def size(self) -> int:
        return self._table.size

    @property
    def nbytes(self) -> int:
        return self._table.nbytes

    def __len__(self) -> int:
        return self._table.narrays

    def __iter__(self) -> Iterator[View]:
        return iter(self._table.views)

    @overload
    def __getitem__(self, i: SupportsIndex) -> View: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[View, ...]: ...
    def __getitem__(self, i: SupportsIndex | slice) -> View | tuple[View, ...]:
        return self._table.views[i]

    def __repr__(self) -> str:
        return f"ParamList({len(self)} arrays, size={self.size}, nbytes={self.nbytes})"

    @overload
    def sum_squares(self, *, per_array: Literal[False] = ..., num_threads: Threads = ...,
                    check_finite: bool = ...,
                    reproducible: bool = ..., partial: Literal[False] = ...,
                    comm: Comm = ...) -> float: ...
    @overload
    def sum_squares(self, *, per_array: Literal[True], num_threads: Threads = ...,
                    check_finite: bool = ...,
                    reproducible: bool = ..., partial: Literal[False] = ...,
                    comm: Comm = ...) -> Sums: ...
    @overload
    def sum_squares(self, *, per_array: Literal[False] = ..., num_threads: Threads = ...,
                    check_finite: bool = ..., reproducible: bool = ...,
                    partial: Literal[True], comm: Comm = ...) -> SumOfSquares: ...
    @overload
    def sum_squares(self, *, per_array: bool, num_threads: Threads = ...,
                    check_finite: bool = ...,
                    reproducible: bool = ..., partial: bool = ..., comm: Comm = ...
        ) -> float | Sums | SumOfSquares: ...
    def sum_squares(self, *, per_array: bool = False, num_threads: Threads = None,
                    check_finite: bool = False,
                    reproducible: bool = False, partial: bool = False, comm: Comm = None
                ) -> float | Sums | SumOfSquares:
        """`sum_squares` of the arrays: sum_i ||w_i||^2, in float64."""
        if comm is not None:
            return reduce_sum(comm, "sum_squares", lambda: _sum(
                self._table, False, num_threads, check_finite, True, True),
                per_array=per_array, partial=partial)
        return _sum(self._table, per_array, num_threads, check_finite, reproducible, partial)

    def scale_(self, factor: Real, *, num_threads: Threads = None,
               check_finite: bool = False) -> None:
        """`scale_` of the arrays: w_i *= factor, in place."""
        _scale(self._table, factor, num_threads, check_finite)

    @overload
    def sum_squares_scale_(self, factor: Real, *, per_array: Literal[False] = ...,
                           num_threads: Threads = ..., check_finite: bool = ...,
                           reproducible: bool = ..., partial: Literal[False] = ...,
                           comm: Comm = ...) -> float: ...
    @overload
    def sum_squares_scale_(self, factor: Real, *, per_array: Literal[True],
                           num_threads: Threads = ..., check_finite: bool = ...,
                           reproducible: bool = ..., partial: Literal[False] = ...,
                           comm: Comm = ...) -> Sums: ...
    @overload
    def sum_squares_scale_(self, factor: Real, *, per_array: Literal[False] = ...,
                           num_threads: Threads = ..., check_finite: bool = ...,
                           reproducible: bool = ..., partial: Literal[True],
                           comm: Comm = ...) -> SumOfSquares: ...
    @overload
    def sum_squares_scale_(self, factor: Real, *, per_array: bool,
                           num_threads: Threads = ...,
                           check_finite: bool = ...,
                           reproducible: bool = ..., partial: bool = ..., comm: Comm = ...
        ) -> float | Sums | SumOfSquares: ...
    def sum_squares_scale_(self, factor: Real, *, per_array: bool = False,
                           num_threads: Threads = None,
                           check_finite: bool = False,
                           reproducible: bool = False, partial: bool = False, comm: Comm = None
                       ) -> float | Sums | SumOfSquares:
        """`sum_squares_scale_` of the arrays: sum of squares before w_i *= factor."""
        if comm is not None:
            return reduce_sum(comm, "sum_squares_scale_", lambda: _sum_scale(
                self._table, factor, False, num_threads, check_finite, True, True),
                per_array=per_array, partial=partial)
        return _sum_scale(self._table, factor, per_array, num_threads, check_finite,
                          reproducible, partial)

    def global_norm(self, *, num_threads: Threads = None, comm: Comm = None) -> float:
        """`global_norm` of the arrays: sqrt(sum_i ||g_i||^2) (over all ranks with comm)."""
        return _global_norm(lambda: self._table, num_threads, comm)

    def clip_grad_norm_(self, max_norm: Real, *, eps: Real = 1e-6,
                        error_if_nonfinite: bool = False, num_threads: Threads = None,
                        comm: Comm = None) -> float:
        """`clip_grad_norm_` of the arrays: g_i *= max_norm / (||g|| + eps) when
        that is < 1 (||g|| over all ranks with comm); returns ||g|| before clipping."""
        return _clip(lambda: self._table, max_norm, eps, error_if_nonfinite, num_threads, comm)

    def add_scaled_(self, src: Arrays, alpha: Real, *, num_threads: Threads = None,
                    check_finite: bool = False) -> None:
        """`add_scaled_` with these arrays as dst: d_i += alpha * s_i, in place.

        `src` is a ParamList, a list or a dict.  The pairing with a ParamList
        src is validated once and kept for the next call with the same src.
        """
        _add(self._pair_with(src), alpha, num_threads, check_finite)

    def _pair_with(self, src: Arrays) -> Table:
        if self._pair is not None and self._pair[0] is src:
            return self._pair[1]
        d, s, _ = pairing(self, src)
        pair = Table(d, self.names, s, INPLACE_LATER, "dst", "src")
        if isinstance(src, ParamList):
            self._pair = (src, pair)
        return pair
