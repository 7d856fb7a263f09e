r"""`L2`: an L2 penalty with its scaling named, applied to a whole model per call.

With weight arrays :math:`w_1 \dots w_L` (those not excluded),
multipliers :math:`\mu_i` (1 unless `decay_mult` says otherwise) and an
`L2` with per-weight coefficient :math:`c`,

.. math::

    P = \frac{c}{2}\sum_i \mu_i\,\|w_i\|^2, \qquad
    \frac{\partial P}{\partial w_i} = c\,\mu_i\,w_i,

and :math:`c` is set by the scale, with the meaning `l2fast.conventions`
gives the same name: :math:`\lambda/m` (``"samples"``), :math:`\lambda/N`
(``"params"``), :math:`\lambda` (``"none"``) or :math:`2\lambda/m`
(``"batch"``), or by any convention through `L2.from_convention`.  Every
method is one call of a core kernel per distinct multiplier.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from ._api import ParamList, add_scaled_
from ._args import checked_threads
from ._distributed import l2_penalty
from ._l2_select import Selection, Selector, exclude_by_name, no_decay_1d
from .conventions import ALIASES, CONVENTIONS, lookup
from .conventions._exact import CONTEXT, context_value, exact, nonnegative

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from decimal import Decimal
    from typing import TypeAlias

    from ._typing import Arrays, Comm, Threads
    from ._typing import Real as _Real

    Real: TypeAlias = _Real | Fraction | Decimal

    Exclude = Callable[[Any, Any], bool] | Sequence[bool] | None
    DecayMult = Callable[[Any, Any], float] | Sequence[float] | None

__all__ = ["L2", "no_decay_1d", "exclude_by_name"]

SCALES = {
    "samples": "lam / (2 * m) * sum ||w||^2, m = training-set size: c = lam / m",
    "params": "lam / (2 * N) * sum ||w||^2, N = elements penalised: c = lam / N",
    "none": "lam / 2 * sum ||w||^2: c = lam",
    "batch": ("lam * B / m * sum ||w||^2 per minibatch of a loss summed over its B samples "
              "(Bengio 2012): c = 2 * lam / m"),
}
_EXAMPLE = {"samples": "L2(lam, scale='samples', m=60000)",
            "batch": "L2(lam, scale='batch', m=60000)"}


class L2:
    r"""An L2 penalty whose λ scaling is explicit, applied to a list of arrays.

    .. math::

        P(w) = \frac{c}{2} \sum_i \mu_i\|w_i\|^2, \qquad
        \nabla_{w_i} P = c\,\mu_i\, w_i, \qquad
        c = \begin{cases}
            \lambda / m & \text{scale="samples"} \\
            \lambda / N & \text{scale="params"} \\
            \lambda     & \text{scale="none"} \\
            2\lambda / m & \text{scale="batch"}
        \end{cases}

    The sum runs over the arrays not excluded; N is their total number of
    elements; :math:`\mu_i` is 1 unless `decay_mult` is given.  c is the
    coupled coefficient on the loss averaged over a minibatch: the c of
    `l2fast.conventions` for the convention of the same name.

    Parameters
    ----------
    lam : real number
        λ, finite and >= 0.
    scale : {"samples", "params", "none", "batch"}, default "samples"
        * ``"samples"`` (convention ``ng``): :math:`\frac{\lambda}{2m}\sum\|w\|^2`,
          m the size of the training set (not of a minibatch): the larger
          the data set, the weaker the penalty per weight.
        * ``"params"`` (``per_param``): :math:`\frac{\lambda}{2N}\sum\|w\|^2`.
        * ``"none"`` (``tf_l2_loss``): :math:`\frac{\lambda}{2}\sum\|w\|^2`;
          λ is then torch SGD's ``weight_decay``.
        * ``"batch"`` (``bengio_batch``): Bengio's (2012)
          :math:`\lambda\sum\|w\|^2` spread over the minibatches of a summed
          loss, :math:`\lambda\frac{B}{m}\sum\|w\|^2` each (:math:`B'` for a
          short last batch); on the averaged loss that is :math:`c = 2\lambda/m`
          whatever the batch size.
    m : int, optional
        The number of training samples, a positive integer; required by
        "samples" and "batch".
    exclude : callable or sequence of bool, optional
        Arrays neither penalised nor decayed: a predicate ``exclude(name,
        array) -> bool`` (`no_decay_1d`, `exclude_by_name`) called with the
        dict key (or the position, for a list), or one bool per array.
    decay_mult : callable or sequence of float, optional
        A multiplier :math:`\mu_i \ge 0` of c per array, as Caffe's
        ``decay_mult`` or optimizer param groups with their own
        weight_decay: ``decay_mult(name, array) -> float`` or one float per
        array.  0 excludes the array.
    num_threads : int or None, default None
        As in `l2fast.sum_squares`.
    check_finite : bool, default False
        As in `l2fast.scale_`: raise FloatingPointError naming an array that
        holds a NaN or an Inf, before anything is written.
    batch_size : None
        Not used by any scale (an error if given: "batch" no longer needs it).
    reproducible : bool, default False
        As in `l2fast.sum_squares`: penalties from exact sums of squares
        (per array when the multipliers differ), the same bits however the
        values are split into arrays.

    Notes
    -----
    `params` is a list of arrays, a dict of named arrays (such as
    ``dict(model.named_parameters())``), one array, or a `ParamList`.  The
    selection (which arrays `exclude` keeps, and their multipliers) and the
    validated work tables are made once per params object and kept while it
    holds the same NumPy arrays (up to 4 such objects; `clear_cache` drops
    them).  Predicates should depend on the name and shape only.  Torch
    tensors are looked at afresh on every call; pass a `ParamList` to pay
    that once.  With multipliers, `penalty` is still one kernel call (one sum
    per array); `grad_`, `decay_` and `penalty_decay_` make one call per
    distinct multiplier.

    Examples
    --------
    >>> import numpy as np, l2fast
    >>> params = {"W": np.array([[3.0, 4.0]]), "b": np.array([1.0])}
    >>> reg = l2fast.L2(0.5, scale="samples", m=5, exclude=l2fast.no_decay_1d)
    >>> reg.coef(params)                  # lam / m
    0.1
    >>> reg.penalty(params)               # 0.1 / 2 * (9 + 16); b is excluded
    1.25
    >>> grads = {"W": np.zeros((1, 2)), "b": np.zeros(1)}
    >>> reg.grad_(grads, params); grads["W"]
    array([[0.3, 0.4]])
    >>> reg.penalty_decay_(params, lr=1.0)   # penalty before w *= 1 - 1.0 * 0.1
    1.25
    >>> params["W"], params["b"]
    (array([[2.7, 3.6]]), array([1.]))
    """

    def __init__(self, lam: Real,
                 scale: Literal["samples", "params", "none", "batch"] = "samples", *,
                 m: Real | None = None, exclude: Exclude = None,
                 decay_mult: DecayMult = None, num_threads: Threads = None,
                 check_finite: bool = False, batch_size: Real | None = None,
                 reproducible: bool = False) -> None:
        if scale not in SCALES:
            known = "; ".join(f"{k!r}: {v}" for k, v in SCALES.items())
            raise ValueError(f"unknown scale {scale!r}; known scales are {known} (any other "
                             f"convention: L2.from_convention(value, name, ...))")
        lam_q = nonnegative(lam, "lam")
        needs_m = scale in ("samples", "batch")
        if needs_m and m is None:
            raise ValueError(f"scale={scale!r} needs m, {CONTEXT['m']} (the penalty is "
                             f"{SCALES[scale]}): {_EXAMPLE[scale]}")
        if not needs_m and m is not None:
            raise ValueError(f"scale={scale!r} does not use m (the penalty is "
                             f"{SCALES[scale]}); leave it out")
        if batch_size is not None:
            raise ValueError(f"scale={scale!r} does not use batch_size: "
                             + ("the penalty is " + SCALES[scale] + ", whatever the batch "
                                "size; leave it out" if scale == "batch" else "leave it out"))
        m_q = None if m is None else context_value("m", m)
        self.lam = float(lam_q)
        self.scale = scale
        self.m: int | None = None if m_q is None else int(m_q)
        self.convention = ALIASES[scale]
        self.family = "coupled"
        # c exactly, rounded once; None for "params" (N is known per call)
        self._c: float | None = (None if scale == "params" else
                                 float(lam_q * CONVENTIONS[self.convention]._factor(
                                     {} if m_q is None else {"m": m_q})))
        self._selector = Selector(exclude, decay_mult)
        self.exclude = self._selector.exclude
        self.decay_mult = self._selector.decay_mult
        self.num_threads = checked_threads(num_threads)
        self.check_finite = bool(check_finite)
        self.reproducible = bool(reproducible)
        self._origin: str | None = None

    @classmethod
    def from_convention(cls, value: Real, name: str, *, exclude: Exclude = None,
                        decay_mult: DecayMult = None, num_threads: Threads = None,
                        check_finite: bool = False, reproducible: bool = False,
                        **context: Real) -> L2:
        r"""An `L2` whose c is `value` in any convention of `l2fast.conventions`.

        ``L2.from_convention(0.01, "keras")`` penalises as
        ``keras.regularizers.L2(0.01)``: c = 0.02.  For a decoupled convention
        (``"torch_adamw"``, ``"optax_adamw"``, ``"keras_decay"``,
        ``"tfa_adamw"``, ...) c is the per-step decay divided by lr, so
        ``decay_(params, lr)`` makes the library's decay step; `family`
        records which it is.

        Parameters
        ----------
        value : real number
            The strength as the convention writes it.
        name : str
            A convention name (`l2fast.conventions.names()`) or scale name.
        exclude, decay_mult, num_threads, check_finite, reproducible
            As in `L2`.
        **context : real number
            What the convention needs (``m``, ``N``, ``batch_size``, ``lr``,
            ``epochs``).  ``per_param`` without N divides by the elements
            penalised at each call (``scale="params"``).

        Examples
        --------
        >>> from l2fast import L2
        >>> L2.from_convention(0.01, "keras").coef()
        0.02
        >>> L2.from_convention(0.5, "bengio_batch", m=1000).coef()
        0.001
        """
        conv = lookup(name, "convention")
        kwargs: dict[str, Any] = dict(exclude=exclude, decay_mult=decay_mult,
                                      num_threads=num_threads, check_finite=check_finite,
                                      reproducible=reproducible)
        if conv.name == "per_param" and context.get("N") is None:
            out = cls(value, "params", **kwargs)
        else:
            c = nonnegative(value, f"value ({conv.value} in {conv.name!r})") * conv.factor(
                **context)
            out = cls(c, "none", **kwargs)
        out.convention, out.family = conv.name, conv.family
        ctx = "".join(f", {k}={v!r}" for k, v in context.items())
        out._origin = f"L2.from_convention({value!r}, {conv.name!r}{ctx})"
        return out

    def __repr__(self) -> str:
        if self._origin is not None:
            parts = [self._origin[len("L2.from_convention("):-1]]
        else:
            parts = [f"{self.lam!r}", f"scale={self.scale!r}"]
            if self.m is not None:
                parts.append(f"m={self.m!r}")
        for what, spec in (("exclude", self.exclude), ("decay_mult", self.decay_mult)):
            if spec is not None:
                parts.append(f"{what}={getattr(spec, '__name__', None) or repr(spec)}")
        head = "L2.from_convention" if self._origin is not None else "L2"
        return f"{head}({', '.join(parts)})"

    def clear_cache(self) -> None:
        """Forget the params objects seen so far (and release their arrays)."""
        self._selector.cache.clear()

    def _select(self, params: Any) -> Selection:
        return self._selector.select(params)

    # -- the arithmetic ----------------------------------------------------

    def _coef(self, sel: Selection | None) -> float:
        if self._c is not None:
            return self._c
        if sel is None:
            raise ValueError("scale='params' divides lam by N, the number of elements of the "
                             "arrays penalised: call coef(params)")
        n = sel.arrays.size
        if n == 0:
            raise ValueError("scale='params' divides lam by N, the number of elements "
                             "penalised, and no array is penalised (all are excluded)")
        return float(Fraction(self.lam) / n)

    def coef(self, params: Arrays | None = None) -> float:
        r"""The per-weight coefficient c: :math:`\nabla_{w} P = c\,w` (times μ_i).

        Parameters
        ----------
        params : list, dict, ndarray or ParamList, optional
            Needed by ``scale="params"`` only (N is their number of elements
            after `exclude`).

        Returns
        -------
        float
            λ/m, λ/N, λ or 2λ/m, computed exactly and rounded once: torch
            SGD's ``weight_decay`` for the same coupled term, and
            ``l2fast.conventions.coef(lam, scale, m=m)`` for every scale.

        Raises
        ------
        ValueError
            ``scale="params"`` without params, or with every array excluded.
        """
        return self._coef(None if params is None else self._select(params))

    def _factors(self, sel: Selection, lr: Any) -> list[tuple[float, Any, float]]:
        """(1 − lr·c·μ, group, c·μ) per group; ValueError when lr·c·μ >= 1."""
        c = self._coef(sel)
        step = float(exact(lr, "lr"))
        if step < 0:
            raise ValueError(f"lr must be >= 0, got {lr!r}")
        groups = ([(1.0, None, sel.arrays)] if sel.mults is None else
                  [(f, idx, pl) for f, idx, pl in sel.groups])
        out = []
        for mult, _, pl in groups:
            cm = c * mult
            if step * cm >= 1:
                raise ValueError(f"lr·c = {step:g}·{cm:g} = {step * cm:g} >= 1: the decay "
                                 f"would zero or flip the sign of every weight; it must be "
                                 f"below 1")
            out.append((1.0 - step * cm, pl, cm))
        return out

    def _writable_first(self, sel: Selection, grads: ParamList | None = None) -> None:
        """Before a call per group: ValueError for a read-only array (or a
        gradient of another shape), RuntimeError for a torch tensor autograd
        forbids writing now, FloatingPointError with check_finite, so that no
        group is written when another one would fail."""
        targets = sel.arrays if grads is None else grads
        labels = sel.keys if sel.keys is not None else (sel.positions or range(sel.total))
        for label, a, w in zip(labels, targets.arrays, sel.arrays.arrays):
            if a.shape != w.shape:
                raise ValueError(f"grads[{label!r}] has shape {a.shape} but params[{label!r}] "
                                 f"has shape {w.shape}; nothing was changed")
            if not a.flags.writeable:
                what = "params" if grads is None else "grads"
                raise ValueError(f"{what}[{label!r}] is read-only; nothing was changed")
        targets._table.check_writable()
        if self.check_finite:
            sel.arrays.sum_squares(check_finite=True, num_threads=self.num_threads)

    def penalty(self, params: Arrays, *, comm: Comm = None) -> float:
        r"""The penalty :math:`P = \frac{c}{2}\sum_i \mu_i\|w_i\|^2`.

        Parameters
        ----------
        params : list, dict, ndarray or ParamList
            Weight arrays (float32/float64; CPU torch tensors are viewed).
        comm : mpi4py.MPI.Comm, torch.distributed ProcessGroup, "mpi" or "torch", optional
            The penalty of the arrays of every rank, each rank passing its
            own shards, from one all-reduce: the same bits on every rank for
            any world size and sharding (docs/distributed.md).

        Returns
        -------
        float
            P, from sums of squares accumulated in float64: one
            `l2fast.sum_squares` call (with ``per_array=True`` when the
            multipliers differ).
        """
        if comm is not None:
            return l2_penalty(self, params, comm)
        sel = self._select(params)
        c = self._coef(sel)
        if sel.mults is None:
            return 0.5 * c * sel.arrays.sum_squares(num_threads=self.num_threads,
                                                    check_finite=self.check_finite,
                                                    reproducible=self.reproducible)
        sums = sel.arrays.sum_squares(per_array=True, num_threads=self.num_threads,
                                      check_finite=self.check_finite,
                                      reproducible=self.reproducible)
        return 0.5 * c * math.fsum(f * float(s) for f, s in zip(sel.mults, sums))

    def grad_(self, grads: Arrays, params: Arrays) -> None:
        r"""Add the penalty's gradient to `grads`, in place: :math:`g_i \mathrel{+}= c\,\mu_i\,w_i`.

        Coupled L2, as ``torch.optim.SGD(weight_decay=c)`` and
        ``torch.optim.Adam(weight_decay=c)`` do it before their step.

        Parameters
        ----------
        grads : list, dict, ndarray or ParamList
            Writeable gradient arrays, one per array of `params`: paired by
            key when both are dicts (extra keys in grads are ignored), else
            by position.  Gradients of excluded arrays are left alone.
        params : list, dict, ndarray or ParamList
            The weights.

        Raises
        ------
        ValueError
            A gradient is missing, shapes differ, or a gradient is read-only
            (nothing is changed then).
        """
        sel = self._select(params)
        c = self._coef(sel)
        nt, cf = self.num_threads, self.check_finite
        if sel.mults is None:
            if (isinstance(grads, ParamList) and sel.positions is None
                    and (grads.names is None or sel.keys is None or grads.names == sel.keys)
                    and len(grads) == sel.total):
                grads.add_scaled_(sel.arrays, c, num_threads=nt, check_finite=cf)
                return
            add_scaled_(Selector.grads(grads, sel), sel.arrays, c, num_threads=nt,
                        check_finite=cf)
            return
        paired = Selector.grads(grads, sel)
        self._writable_first(sel, ParamList(paired))
        for mult, idx, group in sel.groups:
            add_scaled_(Selector.subset(paired, idx), group, c * mult, num_threads=nt,
                        check_finite=cf)

    def decay_(self, params: Arrays, lr: Real) -> None:
        r"""Decoupled weight decay, in place: :math:`w_i \leftarrow (1 - \text{lr}\,c\,\mu_i)\,w_i`.

        As ``torch.optim.AdamW(lr=lr, weight_decay=c)`` does it before its
        Adam step (and optax's ``adamw``, Keras 3's ``weight_decay``); for
        plain SGD it is the same step as `grad_`.

        Parameters
        ----------
        params : list, dict, ndarray or ParamList
            Writeable weight arrays.
        lr : real number
            The learning rate, >= 0.

        Raises
        ------
        ValueError
            lr < 0, or lr·c·μ >= 1 (the weights would be zeroed or flip sign).
        """
        sel = self._select(params)
        steps = self._factors(sel, lr)
        if len(steps) > 1:
            self._writable_first(sel)
        for factor, group, _ in steps:
            group.scale_(factor, num_threads=self.num_threads, check_finite=self.check_finite)

    def penalty_decay_(self, params: Arrays, lr: Real, *, comm: Comm = None) -> float:
        r"""Return the penalty, then decay: one pass over the weights.

        .. math:: P = \frac{c}{2}\sum_i\mu_i\|w_i\|^2 \text{ (before)},
                  \qquad w_i \leftarrow (1 - \text{lr}\,c\,\mu_i)\,w_i

        It costs what `decay_` alone costs (one `l2fast.sum_squares_scale_`
        call per distinct multiplier).

        Parameters
        ----------
        params, lr
            As in `decay_`.
        comm : optional
            As in `penalty`: the penalty over every rank; each rank decays
            its own arrays.

        Returns
        -------
        float
            P of the weights before the decay, equal to `penalty` called
            first.
        """
        if comm is not None:
            return l2_penalty(self, params, comm, lr)
        sel = self._select(params)
        steps = self._factors(sel, lr)
        if len(steps) > 1:
            self._writable_first(sel)
        parts = [0.5 * cm * group.sum_squares_scale_(factor, num_threads=self.num_threads,
                                                     check_finite=self.check_finite,
                                                     reproducible=self.reproducible)
                 for factor, group, cm in steps]
        return parts[0] if len(parts) == 1 else math.fsum(parts)
