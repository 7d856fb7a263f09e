r"""Exact arithmetic for the conventions: every real number a user passes, as a Fraction.

Python and NumPy integers are taken as Python ints (a NumPy integer kept
inside a Fraction overflows later), floats of any width through
``as_integer_ratio`` (exact), `fractions.Fraction` and `decimal.Decimal`
exactly.  Strings and bools are a TypeError; NaN and infinities a
ValueError.  Each check names the argument and what it stands for.
"""
from __future__ import annotations

import difflib
import math
import numbers
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

#: What each context key means, for error messages and the table.
CONTEXT: dict[str, str] = {
    "m": "the number of training samples (the whole training set, not a minibatch)",
    "N": "the number of parameters penalised (elements of the arrays not excluded)",
    "batch_size": "the number of samples in one gradient step (the minibatch)",
    "lr": "the optimizer's learning rate",
    "epochs": "the number of training epochs",
    "momentum": "the SGD momentum β (0 for plain SGD) that the coupled term goes through",
    "grad_rms": "Adam's denominator √v̂: the root mean square of a weight's gradient",
}

#: Context keys that count things: positive integers.
COUNTS = ("m", "N", "batch_size", "epochs")


def exact(x: Any, what: str) -> Fraction:
    """`x` as an exact Fraction; TypeError unless it is a real number, ValueError
    unless it is finite.  `what` names the argument in the message."""
    if isinstance(x, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{what} must be a real number, got {type(x).__qualname__} {x!r}")
    if isinstance(x, Fraction):
        return x
    if isinstance(x, (int, np.integer)):
        return Fraction(int(x))
    if isinstance(x, Decimal):
        if not x.is_finite():
            raise ValueError(f"{what} must be finite, got {x!r}")
        return Fraction(x)
    if isinstance(x, numbers.Rational):
        return Fraction(int(x.numerator), int(x.denominator))
    if isinstance(x, (float, np.floating)):
        if not math.isfinite(x):
            raise ValueError(f"{what} must be finite, got {x!r}")
        num, den = x.as_integer_ratio()
        return Fraction(int(num), int(den))
    if isinstance(x, numbers.Real):
        return exact(float(x), what)
    raise TypeError(f"{what} must be a real number, got {type(x).__qualname__}")


def nonnegative(x: Any, what: str) -> Fraction:
    """`x` exact and >= 0 (a regularisation strength)."""
    q = exact(x, what)
    if q < 0:
        raise ValueError(f"{what} must be >= 0 (a negative strength grows the weights), "
                         f"got {x!r}")
    return q


def context_value(key: str, x: Any) -> Fraction:
    """One context value, checked: counts are positive integers, lr and grad_rms
    positive, momentum in [0, 1)."""
    if key not in CONTEXT:
        raise ValueError(f"unknown context key {key!r}; the keys are {', '.join(CONTEXT)}")
    q = exact(x, key)
    if key in COUNTS:
        if q.denominator != 1 or q <= 0:
            raise ValueError(f"{key} must be a positive integer ({CONTEXT[key]}), got {x!r}")
    elif key == "momentum":
        if not 0 <= q < 1:
            raise ValueError(f"momentum must be in [0, 1) ({CONTEXT[key]}), got {x!r}")
    elif q <= 0:
        raise ValueError(f"{key} must be > 0 ({CONTEXT[key]}), got {x!r}")
    return q


def checked_context(context: dict[str, Any], keys: set[str]) -> dict[str, Fraction]:
    """The context values among `keys` that were given (not None), checked, plus a
    check that a minibatch is no larger than the training set."""
    for key in context:
        if key not in CONTEXT:
            close = difflib.get_close_matches(key, list(CONTEXT), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown context key {key!r}{hint}; the keys are "
                             f"{', '.join(CONTEXT)}")
    out = {k: context_value(k, context[k]) for k in keys if context.get(k) is not None}
    if "batch_size" in out and "m" in out and out["batch_size"] > out["m"]:
        raise ValueError(f"batch_size ({context['batch_size']!r}) must be <= m "
                         f"({context['m']!r}): a minibatch is part of the training set")
    return out


def sqrt(q: Fraction) -> Fraction:
    """sqrt(q) for a positive Fraction, as a Fraction within 2**-128 relative."""
    k = 128 + max(0, q.denominator.bit_length() - q.numerator.bit_length())
    num = math.isqrt((q.numerator << (2 * k)) // q.denominator)
    return Fraction(num, 1 << k)
