r"""The ways an L2 strength is written, side by side, and exact conversions.

Every convention comes down to one number per weight, c, in one of two
families:

* **coupled** L2 adds :math:`c\,w` to the gradient :math:`g` of the
  minibatch loss *averaged* over its samples (the default reduction of
  PyTorch, Keras and scikit-learn), and the optimizer then treats it like
  the rest of the gradient;
* **decoupled** decay multiplies each weight by :math:`1 - \text{lr}\,c` at
  every step, beside the optimizer's update.

Under plain SGD the two are the same step,
:math:`w \leftarrow (1 - \text{lr}\,c)\,w - \text{lr}\,g`.  Under momentum
β the coupled term is accumulated to about :math:`c\,w/(1-β)`, and Adam
divides it by :math:`\sqrt{\hat v}`: the same c is then a different
regularisation.  So `convert` is exact within a family and, across
families, matches the decay per step at a stated operating point
(``momentum`` or ``grad_rms``) with a `ConventionWarning` saying so.

    name              family     value   what the library does                   c
    ng                coupled    λ       loss += λ/(2m)·Σ‖w‖²                    λ/m
    per_param         coupled    λ       loss += λ/(2N)·Σ‖w‖²                    λ/N
    tf_l2_loss        coupled    λ       loss += λ·Σ‖w‖²/2                       λ
    keras             coupled    l2      loss += l2·Σ‖w‖²                        2·l2
    torch_sgd         coupled    wd      grad += wd·w, then SGD (momentum β)     wd
    torch_adam        coupled    wd      grad += wd·w, then Adam                 wd
    sklearn_mlp       coupled    alpha   loss += alpha/(2n)·Σ‖coef‖², n = batch  alpha/n
    bengio_batch      coupled    λ       summed batch loss += λ·B/m·Σ‖w‖²        2λ/m
    torch_adamw       decoupled  wd      w *= 1 − lr·wd                          wd
    optax_adamw       decoupled  wd      update −= lr·wd·w                       wd
    keras_decay       decoupled  wd      w −= lr·wd·w (Keras 3 optimizers)       wd
    tfa_adamw         decoupled  wd      w *= 1 − wd                             wd/lr
    decay_per_step    decoupled  d       w *= 1 − d                              d/lr
    adamw_normalized  decoupled  λ_norm  w *= 1 − λ_norm·√(b/(B·T))              λ_norm·√(b/(B·T))/lr

m is the size of the training set (never the minibatch): a larger m is a
weaker penalty per weight.  `table()` prints the same with the context each
conversion needs.  Values may be Python or NumPy numbers, `Fraction` or
`Decimal`; the arithmetic is exact and rounded once.

Examples
--------
>>> from l2fast import conventions
>>> conventions.convert(5e-4, "torch_sgd", "ng", m=50000)   # λ for L2(scale="samples")
25.0
>>> conventions.convert(1e-4, "sklearn_mlp", "keras", batch_size=200)
2.5e-07
"""
from __future__ import annotations

import difflib
import warnings
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeAlias

from ._catalog import ALIASES, CATALOG, CONVENTIONS, COUPLED, DECOUPLED, Convention
from ._exact import CONTEXT, checked_context, nonnegative

if TYPE_CHECKING:
    from decimal import Decimal

    from .._typing import Real

    Number: TypeAlias = Real | Fraction | Decimal

__all__ = ["Convention", "ConventionWarning", "CONVENTIONS", "ALIASES", "CONTEXT",
           "COUPLED", "DECOUPLED", "convert", "coef", "per_step_decay", "table", "names"]


class ConventionWarning(UserWarning):
    """A conversion between the coupled and the decoupled family: the result
    matches one stated quantity, not the whole regularisation."""


def names(family: str | None = None) -> list[str]:
    """The convention names `convert` takes (aliases not included), all or one family's."""
    if family not in (None, COUPLED, DECOUPLED):
        raise ValueError(f"family must be None, {COUPLED!r} or {DECOUPLED!r}, got {family!r}")
    return [c.name for c in CATALOG if family is None or c.family == family]


def lookup(name: Any, role: str = "convention") -> Convention:
    """The `Convention` called `name` (or one of l2fast's scale names); ValueError
    with the known names, and the closest one, otherwise."""
    if isinstance(name, str):
        key = ALIASES.get(name, name)
        if key in CONVENTIONS:
            return CONVENTIONS[key]
    choices = list(CONVENTIONS) + list(ALIASES)
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown {role} {name!r}{hint} The known conventions are "
                     f"{', '.join(CONVENTIONS)} (and l2fast's scale names "
                     f"{', '.join(ALIASES)})")


def _bridge_keys(coupled: Convention, context: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(keys the cross-family match reads, missing keys as they are to be named)."""
    if coupled.optimizer == "sgd":
        keys = ["momentum"]
    elif coupled.optimizer == "adam":
        keys = ["grad_rms"]
    else:
        given = [k for k in ("momentum", "grad_rms") if context.get(k) is not None]
        if len(given) == 2:
            raise ValueError(f"{coupled.name!r} is a loss penalty: give momentum (under SGD) "
                             f"or grad_rms (under Adam), not both")
        if not given:
            return [], ["momentum (SGD; 0 for plain SGD) or grad_rms (Adam's √v̂)"]
        keys = given
    return keys, [k for k in keys if context.get(k) is None]


def _step_multiplier(coupled: Convention, ctx: dict[str, Fraction]) -> tuple[Fraction, str]:
    """k with (decoupled c) = k · (coupled c), and what it matches."""
    if "grad_rms" in ctx:
        rms = ctx["grad_rms"]
        return 1 / rms, (f"Adam divides the coupled term by √v̂; matched at √v̂ = grad_rms = "
                         f"{float(rms):g} for every weight (weights with smaller gradients "
                         f"decay more, those with larger ones less)")
    beta = ctx["momentum"]
    if beta == 0:
        return Fraction(1), "plain SGD: the coupled and the decoupled step are the same"
    return 1 / (1 - beta), (f"momentum {float(beta):g} accumulates the coupled term to "
                            f"1/(1 − β) = {float(1 / (1 - beta)):g} times its value in the "
                            f"steady state (less over the first ~1/(1 − β) steps)")


def _check_step(conv: Convention, value: Any, c: Fraction, ctx: dict[str, Fraction]) -> None:
    """ValueError when a decoupled decay removes all of a weight or more per step."""
    if conv.family == DECOUPLED and "lr" in ctx and ctx["lr"] * c >= 1:
        raise ValueError(f"{conv.value} = {value!r} in {conv.name!r} with lr = "
                         f"{float(ctx['lr']):g} decays each weight by lr·c = "
                         f"{float(ctx['lr'] * c):g} per step: it must be in [0, 1) (1 or more "
                         f"zeroes or flips the sign of every weight)")


def exact_convert(value: Number, src: str, dst: str, **context: Number) -> Fraction:
    """`convert`'s result before rounding: an exact Fraction (see `convert`)."""
    a, b = lookup(src, "source convention"), lookup(dst, "target convention")
    v = nonnegative(value, f"value ({a.value} in {a.name!r})")
    checked_context(context, set())          # unknown keys first
    if a is b:
        return v
    needed = list(dict.fromkeys(a.needs + b.needs))
    bridge: list[str] = []
    missing = [k for k in needed if context.get(k) is None]
    if a.family != b.family:
        bridge, more = _bridge_keys(a if a.family == COUPLED else b, context)
        missing += [k for k in more if k not in missing]
    if missing:
        raise ValueError(f"convert(value, {src!r}, {dst!r}, ...) needs "
                         + "; ".join(f"{k}: {CONTEXT.get(k, 'the optimizer it runs under')}"
                                     for k in missing))
    ctx = checked_context(context, set(needed) | set(bridge) | set(context))
    c = v * a._factor(ctx)
    _check_step(a, value, c, ctx)
    if a.family != b.family:
        k, matched = _step_multiplier(a if a.family == COUPLED else b, ctx)
        c = c * k if a.family == COUPLED else c / k
        warnings.warn(f"{a.name!r} is {a.family} and {b.name!r} is {b.family}: not the same "
                      f"regularisation. The result gives the same decay per step, lr·c, at "
                      f"one operating point: {matched}.", ConventionWarning, stacklevel=3)
    _check_step(b, value, c, ctx)
    return c / b._factor(ctx)


def convert(value: Number, src: str, dst: str, **context: Number) -> float:
    r"""Convert a regularisation strength from one convention to another.

    Within a family the result gives the same c: ``value * factor(src) /
    factor(dst)``, exact.  Across families (coupled ↔ decoupled) it gives the
    same decay per step at the optimizer's steady-state step size, with a
    `ConventionWarning`: c_decoupled = k · c_coupled, where k = 1/(1 − β)
    under SGD with momentum β (1 for plain SGD) and k = 1/grad_rms under
    Adam, whose √v̂ divides the coupled term.

    Parameters
    ----------
    value : real number
        The strength in convention `src` (λ, wd, alpha, l2, ...), >= 0: a
        Python or NumPy number, `fractions.Fraction` or `decimal.Decimal`.
    src, dst : str
        Convention names (`names()`), or l2fast's scale names ``"samples"``,
        ``"params"``, ``"none"``, ``"batch"`` (ng, per_param, tf_l2_loss,
        bengio_batch).
    **context : real number
        ``m`` (training-set size), ``N`` (parameters penalised),
        ``batch_size`` (samples per step), ``epochs``: positive integers;
        ``lr`` > 0; across families ``momentum`` in [0, 1) or ``grad_rms``
        > 0.  Keys the conversion does not read are checked all the same.

    Returns
    -------
    float
        The exact result rounded once to the nearest float.

    Raises
    ------
    TypeError
        A value or context value that is not a real number (a str, a bool).
    ValueError
        An unknown convention (with the closest name) or context key; every
        missing context key, named at once; a negative value; a count that is
        not a positive integer; ``batch_size > m``; a decoupled decay with
        lr·c >= 1 per step; momentum outside [0, 1).

    Warns
    -----
    ConventionWarning
        On every conversion between the two families, saying what is matched.

    Examples
    --------
    >>> from l2fast.conventions import convert
    >>> convert(0.01, "keras", "tf_l2_loss")
    0.02
    >>> convert(0.05, "adamw_normalized", "torch_adamw", batch_size=128, m=50000,
    ...         epochs=200, lr=1e-3)        # doctest: +ELLIPSIS
    0.178885438199983...
    """
    return float(exact_convert(value, src, dst, **context))


def coef(value: Number, src: str, **context: Number) -> float:
    """The c of `value` in convention `src`, in its own family.

    For a coupled convention, the coefficient of w added to the gradient of
    the averaged minibatch loss (torch SGD's ``weight_decay``); for a
    decoupled one, the per-step decay divided by lr (torch AdamW's
    ``weight_decay``).

    Examples
    --------
    >>> from l2fast.conventions import coef
    >>> coef(0.5, "ng", m=1000)
    0.0005
    >>> coef(0.5, "bengio_batch", m=1000)
    0.001
    """
    conv = lookup(src, "convention")
    return convert(value, src, "torch_sgd" if conv.family == COUPLED else "torch_adamw",
                   **context)


def per_step_decay(value: Number, src: str, **context: Number) -> float:
    """The fraction of each weight a decoupled convention removes per step, lr·c.

    Raises
    ------
    ValueError
        `src` is coupled (its decay per step depends on the optimizer: convert
        it to a decoupled convention first), or lr is missing.
    """
    conv = lookup(src, "convention")
    if conv.family != DECOUPLED:
        raise ValueError(f"{conv.name!r} is coupled: its decay per step depends on the "
                         f"optimizer; convert it to 'decay_per_step' (with momentum or "
                         f"grad_rms) to match one")
    if context.get("lr") is None:
        raise ValueError(f"per_step_decay(value, {src!r}, ...) needs lr: "
                         f"{CONTEXT['lr']}")
    return convert(value, src, "decay_per_step", **context)


def table() -> str:
    """The conventions side by side, with formulas, as a Markdown pipe table.

    Columns: name, family, the value the user sets, what the library does
    with it, c, the context `convert` needs, and who writes it this way.

    Examples
    --------
    >>> from l2fast import conventions
    >>> print(conventions.table().splitlines()[0])   # doctest: +NORMALIZE_WHITESPACE
    | name | family | value | what the library does | c | context | used by |
    """
    head = ["name", "family", "value", "what the library does", "c", "context", "used by"]
    rows = [[c.name, c.family, c.value, c.rule, c.coef, ", ".join(c.needs) or "-", c.where]
            for c in CATALOG]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(s.ljust(w) for s, w in zip(cells, widths)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(r) for r in rows])
