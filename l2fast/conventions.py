r"""The ways λ is scaled, side by side, and exact conversions between them.

Every L2 convention in use comes down to one number per weight: the
coefficient :math:`c` in the gradient step

.. math:: w \leftarrow w - \text{lr}\,(g + c\,w)
          = (1 - \text{lr}\,c)\,w - \text{lr}\,g,

where :math:`g` is the gradient of the data loss *averaged* over the
minibatch (the default reduction of PyTorch, Keras and scikit-learn).  A
convention's value times its factor is :math:`c`; two settings are the same
regularisation when they give the same :math:`c`:

    name              value   what the library does                      c
    ng                λ       loss += λ/(2m)·Σ‖w‖², m training samples   λ/m
    per_param         λ       loss += λ/(2N)·Σ‖w‖², N parameters         λ/N
    tf_l2_loss        λ       loss += λ·Σ‖w‖²/2  (λ·tf.nn.l2_loss(w))    λ
    keras             l2      loss += l2·Σ‖w‖²  (keras.regularizers.L2)  2·l2
    torch_sgd         wd      grad += wd·w  (torch.optim.SGD)            wd
    torch_adamw       wd      w *= 1 − lr·wd  (torch.optim.AdamW)        wd
    sklearn_mlp       alpha   loss += alpha/(2n)·Σ‖coef‖², n per step    alpha/n
    bengio_batch      λ       summed minibatch loss += λ·B/(2m)·Σ‖w‖²    λ/m
    decay_per_step    d       w *= 1 − d at every step                   d/lr
    adamw_normalized  λ_norm  w *= 1 − λ_norm·√(b/(B·T)) at every step   λ_norm·√(b/(B·T))/lr

`table()` prints the same with the context each conversion needs.  AdamW's
wd is already c (the optimizer multiplies it by lr itself); lr is needed
only to go to or from a decay quoted per step (decay_per_step,
adamw_normalized).

Context keys: ``m`` (training samples; B in Loshchilov & Hutter),
``N`` (parameters penalised), ``batch_size`` (samples per gradient step;
b in Loshchilov & Hutter, n in scikit-learn), ``lr`` (the optimizer's
learning rate, which multiplies decoupled decay), ``epochs`` (T).

`bengio_batch` pairs its penalty with a minibatch loss *summed* over its B
samples, so that one epoch of penalties adds up to λ/2·Σ‖w‖²; divided by B
to put it on the averaged loss its coefficient is λ/m, the same as `ng`.

Conversions are computed in exact rational arithmetic and rounded once, so
``convert(convert(x, a, b, **ctx), b, a, **ctx)`` is within one unit in the
last place of ``x`` (the square root of `adamw_normalized` is taken to
about 2**-128 relative precision first).

Examples
--------
>>> from l2fast import conventions
>>> conventions.convert(5e-4, "torch_sgd", "ng", m=50000)   # λ for L2(scale="samples")
25.0
>>> conventions.convert(1e-4, "sklearn_mlp", "keras", batch_size=200)
2.5e-07
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._typing import Real

__all__ = ["Convention", "CONVENTIONS", "ALIASES", "CONTEXT", "convert", "coef", "table", "names"]

#: What each context key means, for error messages and the table.
CONTEXT: dict[str, str] = {
    "m": "the number of training samples",
    "N": "the number of parameters (elements of the penalised arrays)",
    "batch_size": "the number of samples in one gradient step (minibatch size)",
    "lr": "the optimizer's learning rate",
    "epochs": "the number of training epochs",
}


@dataclass(frozen=True)
class Convention:
    """One way of writing the L2 penalty.

    Attributes
    ----------
    name : str
        The name `convert` takes.
    value : str
        The symbol of the number the user sets (λ, wd, alpha, ...).
    rule : str
        What the library does with it: the penalty added to the loss, or the
        change it makes to each weight's step.
    coef : str
        The per-weight coefficient c it amounts to (the gradient of an
        averaged minibatch loss gets ``c * w``).
    needs : tuple of str
        Context keys the conversion needs.
    where : str
        Who writes λ this way.
    """

    name: str
    value: str
    rule: str
    coef: str
    needs: tuple[str, ...]
    where: str
    # context (dict of Fractions) -> Fraction; value * factor = c
    _factor: Callable[[dict[str, Fraction]], Fraction]

    def factor(self, **context: Real) -> Fraction:
        """c / value for this convention, as an exact Fraction (see `coef`)."""
        return self._factor(_context(self, context))


def _sqrt(q: Fraction) -> Fraction:
    """sqrt(q) for a positive Fraction, as a Fraction within 2**-128 relative."""
    k = 128 + max(0, q.denominator.bit_length() - q.numerator.bit_length())
    num = math.isqrt((q.numerator << (2 * k)) // q.denominator)
    return Fraction(num, 1 << k)


_LIST = [
    Convention("ng", "λ", "loss += λ/(2m)·Σ‖w‖²  (m training samples)", "λ/m", ("m",),
               "Ng's courses; L2(scale='samples')", lambda c: 1 / c["m"]),
    Convention("per_param", "λ", "loss += λ/(2N)·Σ‖w‖²  (N parameters)", "λ/N", ("N",),
               "L2(scale='params')", lambda c: 1 / c["N"]),
    Convention("tf_l2_loss", "λ", "loss += λ·Σ‖w‖²/2  (λ·tf.nn.l2_loss(w))", "λ", (),
               "TensorFlow; L2(scale='none')", lambda c: Fraction(1)),
    Convention("keras", "l2", "loss += l2·Σ‖w‖²", "2·l2", (),
               "keras.regularizers.L2(l2)", lambda c: Fraction(2)),
    Convention("torch_sgd", "wd", "grad += wd·w", "wd", (),
               "torch.optim.SGD(weight_decay=wd)", lambda c: Fraction(1)),
    Convention("torch_adamw", "wd", "w *= 1 − lr·wd  (decoupled)", "wd", (),
               "torch.optim.AdamW(weight_decay=wd)", lambda c: Fraction(1)),
    Convention("sklearn_mlp", "alpha", "loss += alpha/(2n)·Σ‖coef‖²  (n samples per step)",
               "alpha/n", ("batch_size",),
               "sklearn MLP*(alpha), coefs_ only; n = m for lbfgs",
               lambda c: 1 / c["batch_size"]),
    Convention("bengio_batch", "λ", "summed minibatch loss += λ·B/(2m)·Σ‖w‖²", "λ/m", ("m",),
               "Bengio (2012); L2(scale='batch')", lambda c: 1 / c["m"]),
    Convention("decay_per_step", "d", "w *= 1 − d  (decoupled)", "d/lr", ("lr",),
               "a decay rate quoted per step", lambda c: 1 / c["lr"]),
    Convention("adamw_normalized", "λ_norm", "w *= 1 − λ_norm·√(b/(B·T))  (decoupled)",
               "λ_norm·√(b/(B·T))/lr", ("batch_size", "m", "epochs", "lr"),
               "Loshchilov & Hutter (2019); b = batch_size, B = m, T = epochs",
               lambda c: _sqrt(c["batch_size"] / (c["m"] * c["epochs"])) / c["lr"]),
]

#: The conventions by name.
CONVENTIONS: dict[str, Convention] = {c.name: c for c in _LIST}

#: l2fast's own scale names, as `L2(scale=...)` spells them.
ALIASES: dict[str, str] = {"samples": "ng", "params": "per_param", "none": "tf_l2_loss", "batch": "bengio_batch"}


def names() -> list[str]:
    """The convention names `convert` takes (aliases not included)."""
    return list(CONVENTIONS)


def _lookup(name: Any, role: str) -> Convention:
    if isinstance(name, str):
        key = ALIASES.get(name, name)
        if key in CONVENTIONS:
            return CONVENTIONS[key]
    raise ValueError(f"unknown {role} convention {name!r}; known: {', '.join(CONVENTIONS)} "
                     f"(and l2fast's scale names {', '.join(ALIASES)})")


def _positive(key: str, x: Any) -> Fraction:
    if isinstance(x, bool):
        raise TypeError(f"{key} must be a positive number, got {x!r}")
    try:
        q = Fraction(x) if isinstance(x, numbers.Rational) else Fraction.from_float(float(x))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{key} must be a positive finite number ({CONTEXT[key]}), "
                         f"got {x!r}") from None
    if q <= 0:
        raise ValueError(f"{key} must be a positive finite number ({CONTEXT[key]}), got {x!r}")
    return q


def _context(conv: Convention, context: dict[str, Any],
             call: str | None = None) -> dict[str, Fraction]:
    """The context keys `conv` needs, as Fractions; ValueError for a missing or bad one."""
    unknown = [k for k in context if k not in CONTEXT]
    if unknown:
        raise ValueError(f"unknown context key {unknown[0]!r}; the keys are "
                         f"{', '.join(CONTEXT)}")
    out = {}
    for key in conv.needs:
        if context.get(key) is None:
            keys = ", ".join(f"{k}=..." for k in conv.needs)
            raise ValueError(f"{conv.name!r} ({conv.rule}) needs {key}, {CONTEXT[key]}: "
                             f"{call or 'convert(value, ...'}, {keys})")
        out[key] = _positive(key, context[key])
    return out


def _value(value: Any) -> Fraction:
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"value must be a real number, got {type(value).__qualname__}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"value must be a real number, got {type(value).__qualname__}") from None
    if not math.isfinite(v):
        raise ValueError(f"value must be finite, got {v}")
    return Fraction.from_float(v)


def convert(value: Real, src: str, dst: str, **context: Real) -> float:
    r"""Convert a regularisation strength from one convention to another.

    The result gives the same per-weight coefficient c (see the module
    docstring): ``value * factor(src) / factor(dst)``, computed exactly and
    rounded once to the nearest float.

    Parameters
    ----------
    value : float
        The strength in convention `src` (λ, wd, alpha, l2, ...).
    src, dst : str
        Convention names: ``"ng"``, ``"per_param"``, ``"tf_l2_loss"``,
        ``"keras"``, ``"torch_sgd"``, ``"torch_adamw"``, ``"sklearn_mlp"``,
        ``"bengio_batch"``, ``"decay_per_step"``, ``"adamw_normalized"``, or
        l2fast's scale names ``"samples"``, ``"params"``, ``"none"``,
        ``"batch"`` (the same as ng, per_param, tf_l2_loss, bengio_batch).
    **context
        ``m``, ``N``, ``batch_size``, ``lr``, ``epochs``: positive numbers.
        Only the keys the two conventions use are read; see `table`.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        An unknown convention (the known ones are listed), an unknown context
        key, or a context key the conversion needs is missing (it is named),
        or not a positive finite number.

    Examples
    --------
    >>> from l2fast.conventions import convert
    >>> convert(0.01, "keras", "tf_l2_loss")
    0.02
    >>> convert(0.05, "adamw_normalized", "torch_adamw", batch_size=128, m=50000,
    ...         epochs=200, lr=1e-3)        # doctest: +ELLIPSIS
    0.178885438199983...
    """
    a = _lookup(src, "source")
    b = _lookup(dst, "target")
    v = _value(value)
    call = f"convert(value, {src!r}, {dst!r}"
    fa = a._factor(_context(a, context, call))
    fb = b._factor(_context(b, context, call))
    return float(v * fa / fb)


def coef(value: Real, src: str, **context: Real) -> float:
    """The per-weight coefficient c of `value` in convention `src`.

    ``convert(value, src, "torch_sgd")``: the number multiplying w in the
    gradient of the averaged minibatch loss, and, times lr, the fraction of
    each weight removed per step.

    Examples
    --------
    >>> from l2fast.conventions import coef
    >>> coef(0.5, "ng", m=1000)
    0.0005
    """
    return convert(value, src, "torch_sgd", **context)


def table() -> str:
    """The conventions side by side, with formulas, as a printable table.

    Returns
    -------
    str
        A Markdown pipe table: name, the value the user sets, what the
        library does with it, the per-weight coefficient c, the context
        `convert` needs, and who writes λ this way.

    Examples
    --------
    >>> from l2fast import conventions
    >>> print(conventions.table().splitlines()[0])   # doctest: +NORMALIZE_WHITESPACE
    | name | value | what the library does | c (grad += c·w) | context | used by |
    """
    head = ["name", "value", "what the library does", "c (grad += c·w)", "context", "used by"]
    rows = [[c.name, c.value, c.rule, c.coef, ", ".join(c.needs) or "-", c.where]
            for c in _LIST]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(s.ljust(w) for s, w in zip(cells, widths)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)
