"""SumOfSquares: an exact sum of squares that can be merged and sent.

Every sum l2fast returns is an integer multiple of 2^-2176 (squares of
float16, bfloat16, float32 and float64 values all are) held exactly, then
rounded once.  `SumOfSquares` is that integer before the rounding:

    state:  104 digits d_k of 32 bits, plus counts of infinite and NaN terms
    value:  sum_k d_k * 2^(-2176 + 32 k), rounded to the nearest float64

The state is 106 int64 words (848 bytes) in a unique normalised form (every
digit but the top one in [0, 2^32)), so equal sums have equal bytes, and
the element-wise sum of up to 2^31 normalised states is the state of the
merged sum: an all-reduce with SUM over int64 (MPI, torch.distributed)
merges exactly and gives the same bits on every rank, whatever the
reduction order.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _kernels

WORDS = _kernels.STATE_WORDS
_DIGITS = _kernels.STATE_DIGITS

__all__ = ["SumOfSquares"]


class SumOfSquares:
    r"""An exact, mergeable sum of squares.

    .. math:: S = \sum_i \sum_k w_i[k]^2 \quad \text{(exact)},\qquad
              \mathtt{value} = \operatorname{round}_{\mathrm{float64}}(S)

    Obtained with ``l2fast.sum_squares(arrays, partial=True)`` (or
    `sum_squares_scale_`, or a `ParamList` method).  Merging is exact:
    ``(a + b).value`` is the sum of squares of both sets of values, rounded
    once, bitwise the same for any grouping and order.

    Parameters
    ----------
    words : array_like of int, optional
        A state from `to_array`, or the element-wise sum of several (as an
        all-reduce leaves it).  Omitted: the empty sum, 0.

    Examples
    --------
    >>> import numpy as np, l2fast
    >>> x = np.arange(10, dtype=np.float32)
    >>> a = l2fast.sum_squares(x[:3], partial=True)
    >>> b = l2fast.sum_squares(x[3:], partial=True)
    >>> (a + b).value == l2fast.sum_squares(x) == 285.0
    True
    >>> summed = a.to_array() + b.to_array()     # what an all-reduce SUM gives
    >>> l2fast.SumOfSquares(summed) == a + b
    True
    """

    __slots__ = ("_w",)

    def __init__(self, words: Any = None) -> None:
        if words is None:
            self._w = np.zeros(WORDS, dtype=np.int64)
            return
        w = np.asarray(words)
        if w.shape != (WORDS,) or w.dtype.kind not in "iu":
            raise ValueError(f"a SumOfSquares state is {WORDS} integers (to_array()), got "
                             f"shape {w.shape} and dtype {w.dtype}")
        w = w.astype(np.int64, copy=True)
        if (w[_DIGITS:] < 0).any():
            raise ValueError("not a SumOfSquares state: negative counts of inf/NaN terms")
        _kernels.state_normalize(w)
        if w[_DIGITS - 1] < 0:
            raise ValueError("not a SumOfSquares state: a negative sum")
        self._w = w

    @classmethod
    def _from_kernel(cls, w: np.ndarray) -> SumOfSquares:
        s = cls.__new__(cls)
        s._w = w
        return s

    @property
    def value(self) -> float:
        """The sum rounded once to the nearest float64 (inf on overflow or an
        infinite term, nan if a term was NaN)."""
        return _kernels.state_value(self._w)

    def __float__(self) -> float:
        return self.value

    def merge(self, *others: SumOfSquares) -> SumOfSquares:
        """The exact sum of this and `others`."""
        w = self._w.copy()
        for o in others:
            if not isinstance(o, SumOfSquares):
                raise TypeError(f"can only merge SumOfSquares, got {type(o).__qualname__}")
            w += o._w
        _kernels.state_normalize(w)
        return SumOfSquares._from_kernel(w)

    def __add__(self, other: object) -> SumOfSquares:
        if not isinstance(other, SumOfSquares):
            return NotImplemented
        return self.merge(other)

    def __radd__(self, other: object) -> SumOfSquares:
        if isinstance(other, int) and other == 0:  # sum() of a list of states
            return self
        return NotImplemented

    def to_array(self) -> np.ndarray:
        """The state as 106 int64 (a copy); sums of these are merges."""
        return self._w.copy()

    def to_bytes(self) -> bytes:
        """The state as 848 little-endian bytes."""
        return self._w.astype("<i8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> SumOfSquares:
        """The state written by `to_bytes`."""
        if len(data) != 8 * WORDS:
            raise ValueError(f"a SumOfSquares is {8 * WORDS} bytes, got {len(data)}")
        return cls(np.frombuffer(data, dtype="<i8"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SumOfSquares):
            return NotImplemented
        return bool(np.array_equal(self._w, other._w))

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"SumOfSquares({self.value!r})"
