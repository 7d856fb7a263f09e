"""Which arrays an `L2` applies to, and with which multiplier of its coefficient.

- `no_decay_1d` and `exclude_by_name`: the usual predicates (biases and norm
  weights; Hugging Face's ``["bias", "LayerNorm.weight"]``; timm's
  ``no_weight_decay()`` sets; embeddings);
- `Selector`: the selection of one params object (the arrays kept, their
  multipliers grouped by value), made once and cached while the params
  object holds the same NumPy arrays.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from ._api import ParamList
from ._args import entries

_CACHE_SIZE = 4


def no_decay_1d(name: Any, array: Any) -> bool:
    """True for arrays with at most one dimension: biases and norm weights.

    The usual `exclude` for `L2`: biases, LayerNorm/BatchNorm scales and
    shifts are neither penalised nor decayed, as in scikit-learn's MLP (which
    never penalises intercepts) and timm's and most transformer recipes.

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


def exclude_by_name(contains: Collection[str] = (), *, exact: Collection[str] = (),
                    one_d: bool = False) -> Callable[[Any, Any], bool]:
    """A predicate for `L2`'s `exclude` that picks arrays by name.

    An array is excluded when its name contains one of `contains` (Hugging
    Face's ``any(nd in name for nd in ["bias", "LayerNorm.weight"])``), is
    one of `exact` (timm's ``model.no_weight_decay()`` set), or, with
    `one_d`, has at most one dimension (timm excludes those too).

    Parameters
    ----------
    contains : collection of str
        Substrings, e.g. ``("bias", "LayerNorm.weight", "embed")``.
    exact : collection of str
        Whole names, e.g. ``{"pos_embed", "cls_token"}``.
    one_d : bool, default False
        Also exclude arrays with ``ndim <= 1``.

    Returns
    -------
    callable
        ``exclude(name, array) -> bool``.  It raises TypeError for an array
        without a name (a list was passed; pass a dict such as
        ``dict(model.named_parameters())``).
    """
    subs, whole = _strings(contains, "contains"), frozenset(_strings(exact, "exact"))
    if not subs and not whole and not one_d:
        raise ValueError("exclude_by_name needs at least one of contains, exact, one_d")

    def exclude(name: Any, array: Any) -> bool:
        if not isinstance(name, str):
            raise TypeError(f"exclude_by_name matches names, and array {name!r} has none: "
                            f"pass params as a dict of named arrays, e.g. "
                            f"dict(model.named_parameters())")
        return (name in whole or any(s in name for s in subs)
                or (one_d and array.ndim <= 1))

    exclude.__name__ = (f"exclude_by_name(contains={list(subs)!r}, exact={sorted(whole)!r}, "
                        f"one_d={one_d})")
    return exclude


def _strings(items: Collection[str], what: str) -> tuple[str, ...]:
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{what} must be a collection of names, not one string: "
                        f"use ({items!r},)")
    out = tuple(items)
    bad = [s for s in out if not isinstance(s, str)]
    if bad:
        raise TypeError(f"{what} must hold strings, got {bad[0]!r}")
    return out


def _pick(seq: Any, idx: Sequence[Any]) -> tuple[Any, ...]:
    """seq[i] for i in idx, as a tuple (itemgetter without the one-item case)."""
    if not idx:
        return ()
    got = operator.itemgetter(*idx)(seq)
    return (got,) if len(idx) == 1 else tuple(got)


def checked_flags(exclude: Any) -> Any:
    """`exclude` as given: None, a predicate, or a tuple of bools."""
    if exclude is None or callable(exclude):
        return exclude
    if isinstance(exclude, (str, bytes, Mapping)) or not hasattr(exclude, "__len__"):
        raise TypeError("exclude must be a predicate exclude(name, array) -> bool or a "
                        "sequence of bools, one per array")
    flags = list(exclude)
    if not all(isinstance(f, (bool, np.bool_)) for f in flags):
        raise TypeError("exclude as a sequence must hold bools, one per array (True: not "
                        "penalised); to exclude by name use a predicate, e.g. "
                        "exclude=l2fast.exclude_by_name(['bias', 'LayerNorm.weight'])")
    return tuple(bool(f) for f in flags)


def checked_mults(decay_mult: Any) -> Any:
    """`decay_mult` as given: None, a callable, or a tuple of floats >= 0."""
    if decay_mult is None or callable(decay_mult):
        return decay_mult
    if isinstance(decay_mult, (str, bytes, Mapping)) or not hasattr(decay_mult, "__len__"):
        raise TypeError("decay_mult must be a callable decay_mult(name, array) -> float or a "
                        "sequence of floats, one per array")
    return tuple(_mult(x, i) for i, x in enumerate(decay_mult))


def _mult(x: Any, label: Any) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer,
                                                             np.floating)):
        raise TypeError(f"decay_mult of array {label!r} must be a real number, got {x!r}")
    v = float(x)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"decay_mult of array {label!r} must be finite and >= 0, got {x!r}")
    return v


class Selection:
    """The arrays an `L2` applies to, out of one params object, and their groups."""

    __slots__ = ("arrays", "positions", "keys", "total", "owner", "mults", "groups")

    def __init__(self, arrays: ParamList, positions: tuple[int, ...] | None,
                 keys: tuple[Any, ...] | None, total: int, owner: object,
                 mults: tuple[float, ...] | None = None) -> None:
        self.arrays = arrays        # ParamList of the selected arrays
        self.positions = positions  # selected indices in params, or None for all
        self.keys = keys            # selected keys (dict input), or None
        self.total = total          # number of arrays in params
        self.owner = owner          # the inputs, kept alive while cached
        self.mults = mults          # one multiplier per selected array, None: all 1
        # (multiplier, indices into the selection, ParamList), one per value
        self.groups: tuple[tuple[float, tuple[int, ...], ParamList], ...] = ()
        if mults is not None:
            labels = positions if positions is not None else range(total)
            by_value: dict[float, list[int]] = {}
            for i, f in enumerate(mults):
                by_value.setdefault(f, []).append(i)
            self.groups = tuple(
                (f, tuple(idx), ParamList._labelled(_pick(arrays._table.arrays, idx),
                                                    _pick(keys if keys is not None
                                                          else tuple(labels), idx)))
                for f, idx in by_value.items())


class Selector:
    """Makes and caches the `Selection` of params objects for one exclude/decay_mult."""

    def __init__(self, exclude: Any, decay_mult: Any) -> None:
        self.exclude = checked_flags(exclude)
        self.decay_mult = checked_mults(decay_mult)
        self.cache: dict[tuple[Any, ...], Selection] = {}

    def select(self, params: Any) -> Selection:
        """The Selection of `params`: from the cache, or made and maybe cached."""
        if isinstance(params, ParamList) and self.exclude is None and self.decay_mult is None:
            return Selection(params, None, params.names, len(params), params)
        values, names = entries(params, "params")
        key: tuple[Any, ...] = (("ParamList", id(params)) if isinstance(params, ParamList)
                                else (names, tuple(map(id, values))))
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        sel = self._make(params, names, values)
        if isinstance(params, ParamList) or all(type(v) is np.ndarray for v in values):
            if len(self.cache) >= _CACHE_SIZE:
                try:  # the oldest entry; another thread may have removed it first
                    del self.cache[next(iter(self.cache))]
                except (KeyError, RuntimeError, StopIteration):
                    pass
            self.cache[key] = sel
        return sel

    def _per_array(self, spec: Any, what: str, labels: Sequence[Any],
                   values: tuple[Any, ...]) -> list[Any] | None:
        if spec is None:
            return None
        if callable(spec):
            return [spec(k, v) for k, v in zip(labels, values)]
        if len(spec) != len(values):
            raise ValueError(f"{what} has {len(spec)} entries but params has "
                             f"{len(values)} arrays")
        return list(spec)

    def _make(self, params: Any, names: tuple[Any, ...] | None,
              values: tuple[Any, ...]) -> Selection:
        n = len(values)
        labels = names if names is not None else tuple(range(n))
        flags = self._per_array(self.exclude, "exclude", labels, values) or [False] * n
        mults = self._per_array(self.decay_mult, "decay_mult", labels, values)
        if mults is not None:
            mults = [_mult(f, k) for f, k in zip(mults, labels)]
            flags = [bool(x) or f == 0 for x, f in zip(flags, mults)]
        keep = [i for i in range(n) if not flags[i]]
        positions = None if len(keep) == n else tuple(keep)
        kept_mults = None if mults is None else tuple(mults[i] for i in keep)
        if kept_mults is not None and all(f == 1 for f in kept_mults):
            kept_mults = None
        if isinstance(params, ParamList) and positions is None:
            return Selection(params, None, names, n, params, kept_mults)
        chosen = values if positions is None else _pick(values, positions)
        keys = None
        if names is not None:
            keys = names if positions is None else _pick(names, positions)
            arrays = ParamList(dict(zip(keys, chosen)))
        elif positions is not None:  # errors name the arrays by their positions in params
            arrays = ParamList._labelled(tuple(chosen), positions)
        else:
            arrays = ParamList(list(chosen))
        return Selection(arrays, positions, keys, n, (params, values), kept_mults)

    @staticmethod
    def grads(grads: Any, sel: Selection) -> dict[Any, Any] | list[Any]:
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

    @staticmethod
    def subset(paired: dict[Any, Any] | list[Any], idx: tuple[int, ...]
               ) -> dict[Any, Any] | list[Any]:
        """The entries `idx` (positions in the selection) of grads paired by `grads`."""
        if isinstance(paired, dict):
            keys = _pick(tuple(paired), idx)
            return {k: paired[k] for k in keys}
        return list(_pick(paired, idx))
