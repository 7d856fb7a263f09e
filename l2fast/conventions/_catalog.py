r"""The conventions, one `Convention` each, in two families.

Coupled L2 adds :math:`c\,w` to the gradient of the minibatch loss averaged
over its samples, and the optimizer then treats it like any gradient
(momentum accumulates it, Adam divides it by :math:`\sqrt{\hat v}`).
Decoupled decay multiplies each weight by :math:`1 - \text{lr}\,c` at every
step, beside the optimizer's update.  A convention's value times its
factor is its c; c means the one thing or the other according to the family.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, Literal

from ._exact import checked_context, sqrt

COUPLED: Final = "coupled"
DECOUPLED: Final = "decoupled"


@dataclass(frozen=True)
class Convention:
    """One way of writing the L2 strength.

    Attributes
    ----------
    name : str
        The name `convert` takes.
    family : {"coupled", "decoupled"}
        Coupled: a gradient term ``c * w`` the optimizer rescales.
        Decoupled: ``w *= 1 - lr * c`` at every step, outside the optimizer.
    value : str
        The symbol of the number the user sets (λ, wd, alpha, ...).
    rule : str
        What the library does with it.
    coef : str
        c in terms of the value: the gradient coefficient (coupled) or the
        per-step decay divided by lr (decoupled).
    needs : tuple of str
        Context keys the value-to-c factor needs.
    where : str
        Who writes the strength this way, with defaults and typical values.
    optimizer : {"sgd", "adam"} or None
        For coupled conventions bound to an optimizer: what rescales the
        term (None: a loss penalty, under whatever optimizer is used).
    """

    name: str
    family: Literal["coupled", "decoupled"]
    value: str
    rule: str
    coef: str
    needs: tuple[str, ...]
    where: str
    optimizer: Literal["sgd", "adam"] | None = None
    # context (dict of Fractions) -> Fraction; value * factor = c
    _factor: Callable[[dict[str, Fraction]], Fraction] = field(
        default=lambda ctx: Fraction(1), repr=False, compare=False)

    def factor(self, **context: Any) -> Fraction:
        """c / value for this convention, as an exact Fraction.

        Raises
        ------
        ValueError
            A context key it needs is missing (all are named) or invalid.
        """
        missing = [k for k in self.needs if context.get(k) is None]
        if missing:
            keys = ", ".join(f"{k}=..." for k in missing)
            raise ValueError(f"{self.name!r} needs {keys}")
        return self._factor(checked_context(context, set(self.needs)))


def _one(ctx: dict[str, Fraction]) -> Fraction:
    return Fraction(1)


CATALOG = [
    # -- coupled: grad += c·w on the averaged minibatch loss ------------------
    Convention("ng", COUPLED, "λ", "loss += λ/(2m)·Σ‖w‖², m = training-set size", "λ/m",
               ("m",), "Ng's courses; L2(scale='samples')",
               _factor=lambda c: 1 / c["m"]),
    Convention("per_param", COUPLED, "λ", "loss += λ/(2N)·Σ‖w‖², N = parameters penalised",
               "λ/N", ("N",), "L2(scale='params')",
               _factor=lambda c: 1 / c["N"]),
    Convention("tf_l2_loss", COUPLED, "λ", "loss += λ·Σ‖w‖²/2  (λ·tf.nn.l2_loss(w))", "λ",
               (), "TensorFlow; L2(scale='none')", _factor=_one),
    Convention("keras", COUPLED, "l2", "loss += l2·Σ‖w‖²", "2·l2", (),
               "keras.regularizers.L2(l2), default 0.01",
               _factor=lambda c: Fraction(2)),
    Convention("torch_sgd", COUPLED, "wd", "grad += wd·w, then SGD (momentum β)", "wd", (),
               "torch.optim.SGD(weight_decay), typical 1e-4–5e-4", optimizer="sgd",
               _factor=_one),
    Convention("torch_adam", COUPLED, "wd", "grad += wd·w, then Adam (÷ √v̂)", "wd", (),
               "torch.optim.Adam(weight_decay)", optimizer="adam", _factor=_one),
    Convention("sklearn_mlp", COUPLED, "alpha", "loss += alpha/(2n)·Σ‖coef‖², n = step's samples",
               "alpha/n", ("batch_size",),
               "sklearn MLP*(alpha), default 1e-4, solver adam; coefs_ only",
               _factor=lambda c: 1 / c["batch_size"]),
    Convention("bengio_batch", COUPLED, "λ", "summed minibatch loss += λ·B/m·Σ‖w‖²", "2λ/m",
               ("m",), "Bengio (2012); L2(scale='batch')",
               _factor=lambda c: 2 / c["m"]),
    # -- decoupled: w *= 1 − lr·c at every step -------------------------------
    Convention("torch_adamw", DECOUPLED, "wd", "w *= 1 − lr·wd, then Adam", "wd", (),
               "torch.optim.AdamW, default 0.01, typical 0.01–0.1", _factor=_one),
    Convention("optax_adamw", DECOUPLED, "wd", "update −= lr·wd·w, beside Adam's", "wd", (),
               "optax.adamw, default 1e-4; add_decayed_weights", _factor=_one),
    Convention("keras_decay", DECOUPLED, "wd", "w −= lr·wd·w, then the update", "wd", (),
               "Keras 3 optimizers' weight_decay (AdamW 0.004)", _factor=_one),
    Convention("tfa_adamw", DECOUPLED, "wd", "w *= 1 − wd per step (wd not × lr)", "wd/lr",
               ("lr",), "TF Addons AdamW / SGDW(weight_decay)",
               _factor=lambda c: 1 / c["lr"]),
    Convention("decay_per_step", DECOUPLED, "d", "w *= 1 − d per step", "d/lr", ("lr",),
               "a decay quoted per step", _factor=lambda c: 1 / c["lr"]),
    Convention("adamw_normalized", DECOUPLED, "λ_norm", "w *= 1 − λ_norm·√(b/(B·T)) per step",
               "λ_norm·√(b/(B·T))/lr", ("batch_size", "m", "epochs", "lr"),
               "Loshchilov & Hutter (2019); b, B, T = batch_size, m, epochs",
               _factor=lambda c: sqrt(c["batch_size"] / (c["m"] * c["epochs"])) / c["lr"]),
]

#: The conventions by name.
CONVENTIONS: dict[str, Convention] = {c.name: c for c in CATALOG}

#: l2fast's own scale names, as `L2(scale=...)` spells them.
ALIASES: dict[str, str] = {"samples": "ng", "params": "per_param", "none": "tf_l2_loss",
                           "batch": "bengio_batch"}
