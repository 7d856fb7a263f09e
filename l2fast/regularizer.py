r"""`L2`: an L2 penalty with its scaling named, applied to a whole model per call.

With weight arrays :math:`w_1 \dots w_L` (those not excluded) and
:math:`S = \sum_i \|w_i\|^2`, an `L2` with per-weight coefficient :math:`c`
has

.. math::

    P = \frac{c}{2}\,S, \qquad \frac{\partial P}{\partial w_i} = c\,w_i,

and :math:`c` is set by the scale: :math:`\lambda/m` (``"samples"``),
:math:`\lambda/N` (``"params"``), :math:`\lambda` (``"none"``) or
:math:`\lambda B/m` (``"batch"``).  Every method is one call of a core
kernel on the selected arrays.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ._api import ParamList, add_scaled_
from ._args import checked_threads, entries, real
from .conventions import CONTEXT

if TYPE_CHECKING:
    from ._typing import Arrays, Real, Threads

    Exclude = Callable[[Any, Any], bool] | Sequence[bool] | None

__all__ = ["L2", "no_decay_1d"]

SCALES = {
    "samples": "lam / (2 * m) * sum ||w||^2, m training samples",
    "params": "lam / (2 * N) * sum ||w||^2, N elements of the arrays penalised",
    "none": "lam / 2 * sum ||w||^2",
    "batch": "lam * batch_size / (2 * m) * sum ||w||^2 per minibatch (summed loss)",
}
_NEEDS = {"samples": ("m",), "params": (), "none": (), "batch": ("m", "batch_size")}
_EXAMPLE = {"samples": "L2(lam, scale='samples', m=60000)",
            "batch": "L2(lam, scale='batch', m=60000, batch_size=128)"}
_CACHE_SIZE = 4


def no_decay_1d(name: Any, array: Any) -> bool:
    """True for arrays with at most one dimension: biases and norm weights.

    The usual `exclude` for `L2`: biases, LayerNorm/BatchNorm scales and
    shifts are neither penalised nor decayed, as in scikit-learn's MLP (which
    never penalises intercepts) and most transformer training recipes.

    Parameters
    ----------
    name : str or int
        The array's key (or position); not used.
    array : ndarray or tensor

    Returns
    -------
    bool
    """
    return bool(array.ndim <= 1)


class _Selection:
    """The arrays an `L2` applies to, out of one params object."""

    __slots__ = ("arrays", "positions", "keys", "total", "owner")

    def __init__(self, arrays: ParamList, positions: tuple[int, ...] | None,
                 keys: tuple[Any, ...] | None, total: int, owner: object) -> None:
        self.arrays = arrays        # ParamList of the selected arrays
        self.positions = positions  # tuple of selected indices, or None for all
        self.keys = keys            # tuple of selected keys (dict input), or None
        self.total = total          # number of arrays in params before selection
        self.owner = owner          # the inputs, kept alive while cached


def _pick(seq: Any, idx: Sequence[Any]) -> tuple[Any, ...]:
    """seq[i] for i in idx, as a tuple (operator.itemgetter, without the
    one-item special case)."""
    if not idx:
        return ()
    got = operator.itemgetter(*idx)(seq)
    return (got,) if len(idx) == 1 else tuple(got)


class L2:
    r"""An L2 penalty whose λ scaling is explicit, applied to a list of arrays.

    .. math::

        P(w) = \frac{c}{2} \sum_i \|w_i\|^2, \qquad
        \nabla_{w_i} P = c\, w_i, \qquad
        c = \begin{cases}
            \lambda / m & \text{scale="samples"} \\
            \lambda / N & \text{scale="params"} \\
            \lambda     & \text{scale="none"} \\
            \lambda B / m & \text{scale="batch"}
        \end{cases}

    The sum runs over the arrays not excluded by `exclude`; N is their total
    number of elements.

    Parameters
    ----------
    lam : float
        λ, a finite number >= 0.
    scale : {"samples", "params", "none", "batch"}, default "samples"
        * ``"samples"``: :math:`\frac{\lambda}{2m}\sum_i\|w_i\|^2` with m the
          number of training samples (Ng's convention).  It goes with a data
          loss averaged over the samples; its gradient :math:`\frac{\lambda}{m}w`
          does not depend on the batch size.
        * ``"params"``: :math:`\frac{\lambda}{2N}\sum_i\|w_i\|^2`, N the number
          of elements penalised.  The per-weight gradient
          :math:`\frac{\lambda}{N}w` shrinks as the model grows.
        * ``"none"``: :math:`\frac{\lambda}{2}\sum_i\|w_i\|^2`; λ is then
          PyTorch's ``weight_decay`` and ``λ * tf.nn.l2_loss(w)``.
        * ``"batch"``: :math:`\frac{\lambda B}{2m}\sum_i\|w_i\|^2` per
          minibatch of B samples (Bengio, 2012): the penalties of the m/B
          minibatches of an epoch add up to :math:`\frac{\lambda}{2}\sum_i\|w_i\|^2`.
          It goes with a minibatch loss *summed* over its B samples; with an
          averaged loss use ``"samples"``, which is the same regularisation.
    m : float, optional
        Number of training samples; required by "samples" and "batch".
    batch_size : float, optional
        Samples per minibatch, B; required by "batch".
    exclude : callable or sequence of bool, optional
        Arrays to leave alone (neither penalised nor decayed): a predicate
        ``exclude(name, array) -> bool`` called with the dict key (or the
        position, for a list) and the array, or one bool per array, True
        for excluded.  `no_decay_1d` excludes biases and norm weights.
    num_threads : int or None, default None
        As in `l2fast.sum_squares`.
    check_finite : bool, default False
        As in `l2fast.scale_`: raise FloatingPointError naming an array that
        holds a NaN or an Inf, before anything is written.

    Notes
    -----
    `params` is a list of arrays, a dict of named arrays (such as
    ``dict(model.named_parameters())``), one array, or a `ParamList`.  The
    selection (which arrays `exclude` keeps) and the validated work table
    are made once per params object and kept for the next call while it
    holds the same NumPy arrays (up to 4 such objects are remembered,
    holding references to their arrays; `clear_cache` drops them).  A
    predicate is therefore not called again for arrays already seen; it
    should depend on the name and shape only.  Torch tensors, whose
    storage can be replaced under the same object, are looked at afresh on
    every call, which costs what a core call on a dict costs; pass a
    `ParamList` to pay that once.

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
                 m: Real | None = None, batch_size: Real | None = None,
                 exclude: Exclude = None, num_threads: Threads = None,
                 check_finite: bool = False) -> None:
        if scale not in SCALES:
            known = "; ".join(f"{k!r}: {v}" for k, v in SCALES.items())
            raise ValueError(f"unknown scale {scale!r}; known scales are {known}")
        self.lam = self._number(lam, "lam", allow_zero=True)
        self.scale = scale
        given: dict[str, Any] = {"m": m, "batch_size": batch_size}
        for key, value in given.items():
            if key in _NEEDS[scale]:
                if value is None:
                    raise ValueError(
                        f"scale={scale!r} needs {key}, {CONTEXT[key]} (the penalty is "
                        f"{SCALES[scale]}): {_EXAMPLE[scale]}")
                given[key] = self._number(value, key)
            elif value is not None:
                raise ValueError(f"scale={scale!r} does not use {key} (the penalty is "
                                 f"{SCALES[scale]}); leave it out")
        self.m: float | None = given["m"]
        self.batch_size: float | None = given["batch_size"]
        if exclude is not None and not callable(exclude):
            if isinstance(exclude, (str, bytes, Mapping)) or not hasattr(exclude, "__len__"):
                raise TypeError("exclude must be a predicate exclude(name, array) -> bool or "
                                "a sequence of bools, one per array")
            flags = list(exclude)
            if not all(isinstance(f, (bool, np.bool_)) for f in flags):
                raise TypeError("exclude as a sequence must hold bools, one per array (True: "
                                "not penalised); to exclude by name use a predicate, e.g. "
                                "exclude=lambda name, a: name.endswith('bias')")
            exclude = tuple(bool(f) for f in flags)
        self.exclude = exclude
        self.num_threads = checked_threads(num_threads)
        self.check_finite = bool(check_finite)
        self._cache: dict[tuple[Any, ...], _Selection] = {}

    @staticmethod
    def _number(x: Any, what: str, allow_zero: bool = False) -> float:
        v = real(x, what)
        if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            need = "finite and >= 0" if allow_zero else "finite and > 0"
            raise ValueError(f"{what} must be {need}, got {x!r}")
        return v

    def __repr__(self) -> str:
        parts = [f"{self.lam!r}", f"scale={self.scale!r}"]
        if self.m is not None:
            parts.append(f"m={self.m!r}")
        if self.batch_size is not None:
            parts.append(f"batch_size={self.batch_size!r}")
        if self.exclude is not None:
            name = getattr(self.exclude, "__name__", None)
            parts.append(f"exclude={name if name else repr(self.exclude)}")
        return f"L2({', '.join(parts)})"

    # -- selection ---------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget the params objects seen so far (and release their arrays)."""
        self._cache.clear()

    def _select(self, params: Any) -> _Selection:
        """The _Selection of `params`: from the cache, or made and maybe cached."""
        if isinstance(params, ParamList) and self.exclude is None:
            return _Selection(params, None, params.names, len(params), params)
        values, names = entries(params, "params")
        key: tuple[Any, ...] = (("ParamList", id(params)) if isinstance(params, ParamList)
                                else (names, tuple(map(id, values))))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        sel = self._make_selection(params, names, values)
        if isinstance(params, ParamList) or all(type(v) is np.ndarray for v in values):
            cache = self._cache
            if len(cache) >= _CACHE_SIZE:
                try:  # the oldest entry; another thread may have removed it first
                    del cache[next(iter(cache))]
                except (KeyError, RuntimeError, StopIteration):
                    pass
            cache[key] = sel
        return sel

    def _make_selection(self, params: Any, names: tuple[Any, ...] | None,
                        values: tuple[Any, ...]) -> _Selection:
        n = len(values)
        ex = self.exclude
        keep: Sequence[int]
        if ex is None:
            keep = range(n)
        elif callable(ex):
            labels = names if names is not None else range(n)
            keep = [i for i, (k, v) in enumerate(zip(labels, values)) if not ex(k, v)]
        else:
            if len(ex) != n:
                raise ValueError(f"exclude has {len(ex)} flags but params has {n} arrays")
            keep = [i for i in range(n) if not ex[i]]
        positions = None if len(keep) == n else tuple(keep)
        if isinstance(params, ParamList) and positions is None:
            return _Selection(params, None, names, n, params)
        chosen = values if positions is None else _pick(values, positions)
        keys = None
        if names is not None:
            keys = names if positions is None else _pick(names, positions)
            arrays = ParamList(dict(zip(keys, chosen)))
        elif positions is not None:  # errors name the arrays by their positions in params
            arrays = ParamList._labelled(tuple(chosen), positions)
        else:
            arrays = ParamList(list(chosen))
        return _Selection(arrays, positions, keys, n, (params, values))

    def _grads(self, grads: Any, sel: _Selection) -> dict[Any, Any] | list[Any]:
        """The gradient arrays paired with the selected params: by key when
        both are named, else by position."""
        gvalues, gnames = entries(grads, "grads")
        if gnames is not None and sel.keys is not None:
            source = grads if isinstance(grads, Mapping) else dict(zip(gnames, gvalues))
            missing = [k for k in sel.keys if k not in source]
            if missing:
                raise ValueError(f"grads has no array named {missing[0]!r} (params has one)")
            return dict(zip(sel.keys, _pick(source, sel.keys)))
        if len(gvalues) != sel.total:
            raise ValueError(f"grads has {len(gvalues)} arrays but params has {sel.total}")
        chosen = gvalues if sel.positions is None else _pick(gvalues, sel.positions)
        if gnames is not None:
            keys = gnames if sel.positions is None else _pick(gnames, sel.positions)
            return dict(zip(keys, chosen))
        return list(chosen)

    # -- the arithmetic ----------------------------------------------------

    def _coef(self, sel: _Selection | None) -> float:
        s, m, b = self.scale, self.m, self.batch_size
        if s == "samples" and m is not None:
            return self.lam / m
        if s == "none":
            return self.lam
        if s == "batch" and m is not None and b is not None:
            return self.lam * b / m
        if sel is None:
            raise ValueError("scale='params' divides lam by N, the number of elements of the "
                             "arrays penalised: call coef(params)")
        n = sel.arrays.size
        if n == 0:
            raise ValueError("scale='params' divides lam by N, the number of elements "
                             "penalised, and no array is penalised (all are excluded)")
        return self.lam / n

    def coef(self, params: Arrays | None = None) -> float:
        r"""The per-weight coefficient c: :math:`\nabla_{w} P = c\,w`.

        Parameters
        ----------
        params : list, dict, ndarray or ParamList, optional
            Needed by ``scale="params"`` only (N is their number of elements
            after `exclude`).

        Returns
        -------
        float
            λ/m, λ/N, λ or λB/m.  For "samples", "params" and "none" it is
            PyTorch's ``weight_decay`` for the same regularisation of a loss
            averaged over its samples.  "batch" pairs the penalty with a
            minibatch loss *summed* over its B samples, hence λB/m; on the
            averaged loss that is λ/m, which is what
            ``conventions.coef(lam, "batch", m=m)`` reports.

        Raises
        ------
        ValueError
            ``scale="params"`` without params, or with every array excluded.
        """
        return self._coef(None if params is None else self._select(params))

    def penalty(self, params: Arrays) -> float:
        r"""The penalty :math:`P = \frac{c}{2}\sum_i \|w_i\|^2`.

        Parameters
        ----------
        params : list, dict, ndarray or ParamList
            Weight arrays (float32/float64; CPU torch tensors are viewed).

        Returns
        -------
        float
            P, from a sum of squares accumulated in float64 (one
            `l2fast.sum_squares` call).
        """
        sel = self._select(params)
        c = self._coef(sel)
        return 0.5 * c * sel.arrays.sum_squares(num_threads=self.num_threads,
                                                check_finite=self.check_finite)

    def grad_(self, grads: Arrays, params: Arrays) -> None:
        r"""Add the penalty's gradient to `grads`, in place: :math:`g_i \mathrel{+}= c\,w_i`.

        Coupled L2, as ``torch.optim.SGD(weight_decay=c)`` does it.

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
        if (isinstance(grads, ParamList) and sel.positions is None
                and (grads.names is None or sel.keys is None or grads.names == sel.keys)
                and len(grads) == sel.total):
            grads.add_scaled_(sel.arrays, c, num_threads=self.num_threads,
                              check_finite=self.check_finite)
            return
        add_scaled_(self._grads(grads, sel), sel.arrays, c, num_threads=self.num_threads,
                    check_finite=self.check_finite)

    def decay_(self, params: Arrays, lr: Real) -> None:
        r"""Decoupled weight decay, in place: :math:`w_i \leftarrow (1 - \text{lr}\,c)\,w_i`.

        As ``torch.optim.AdamW(lr=lr, weight_decay=c)`` does it before its
        Adam step; for plain SGD it is the same step as `grad_`.

        Parameters
        ----------
        params : list, dict, ndarray or ParamList
            Writeable weight arrays.
        lr : float
            Learning rate.
        """
        sel = self._select(params)
        factor = 1.0 - real(lr, "lr") * self._coef(sel)
        sel.arrays.scale_(factor, num_threads=self.num_threads, check_finite=self.check_finite)

    def penalty_decay_(self, params: Arrays, lr: Real) -> float:
        r"""Return the penalty, then decay: one pass over the weights.

        .. math:: P = \frac{c}{2}\sum_i\|w_i\|^2 \text{ (before)},
                  \qquad w_i \leftarrow (1 - \text{lr}\,c)\,w_i

        It costs what `decay_` alone costs (one
        `l2fast.sum_squares_scale_` call).

        Parameters
        ----------
        params, lr
            As in `decay_`.

        Returns
        -------
        float
            P of the weights before the decay, equal to `penalty` called
            first.
        """
        sel = self._select(params)
        c = self._coef(sel)
        factor = 1.0 - real(lr, "lr") * c
        return 0.5 * c * sel.arrays.sum_squares_scale_(factor, num_threads=self.num_threads,
                                                       check_finite=self.check_finite)
