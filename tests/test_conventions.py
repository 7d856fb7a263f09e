"""l2fast.conventions: the arithmetic (exact, every number type), the two
families, and the errors.  The mappings against the real libraries are in
test_conventions_libraries.py."""
import math
import warnings
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2fast import conventions
from l2fast.conventions import ConventionWarning, convert

NAMES = conventions.names()
COUPLED = conventions.names("coupled")
DECOUPLED = conventions.names("decoupled")
# momentum 0.5 and grad_rms 0.25: the operating points a cross-family conversion needs
CONTEXT = dict(m=50000, N=35_000_000, batch_size=128, lr=0.125, epochs=200, momentum=0.5)


def quiet(*args, **kwargs):
    """convert, with the cross-family ConventionWarning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConventionWarning)
        return convert(*args, **kwargs)


# ---------------------------------------------------------------------------
# The table, and exact values
# ---------------------------------------------------------------------------

def test_the_reported_cases():
    assert convert(0.01, "ng", "torch_sgd", m=50000) == 2e-07
    assert convert(0.01, "ng", "torch_sgd", m=np.int64(50000)) == 2e-07
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # no overflow warning either
        assert convert(0.1, "ng", "torch_sgd", m=np.int64(50000)) == 2e-06
    with pytest.raises(ValueError, match="needs momentum"):
        convert(0.01, "torch_adamw", "torch_sgd")
    with pytest.warns(ConventionWarning, match="not the same regularisation"):
        convert(0.01, "torch_adamw", "torch_sgd", momentum=0)
    with pytest.raises(ValueError, match=r"value \(λ in 'ng'\) must be >= 0"):
        convert(-0.01, "ng", "torch_sgd", m=100)
    # one meaning per name: conventions' "batch" is L2's "batch" (see test_regularizer)
    assert conventions.coef(1e-2, "batch", m=1000) == 2e-05


@pytest.mark.parametrize("name, value, expected", [
    ("ng", 0.5, Fraction(0.5) / 50000),
    ("per_param", 7.0, Fraction(7) / 35_000_000),
    ("tf_l2_loss", 0.003, Fraction(0.003)),
    ("keras", 0.01, 2 * Fraction(0.01)),
    ("torch_sgd", 5e-4, Fraction(5e-4)),
    ("torch_adam", 5e-4, Fraction(5e-4)),
    ("sklearn_mlp", 1e-4, Fraction(1e-4) / 128),
    ("bengio_batch", 0.5, 2 * Fraction(0.5) / 50000),
    ("torch_adamw", 0.01, Fraction(0.01)),
    ("optax_adamw", 1e-4, Fraction(1e-4)),
    ("keras_decay", 0.004, Fraction(0.004)),
    ("tfa_adamw", 1e-5, Fraction(1e-5) * 8),
    ("decay_per_step", 1e-5, Fraction(1e-5) * 8),
])
def test_coefficient_of_each_convention(name, value, expected):
    assert conventions.coef(value, name, **CONTEXT) == float(expected)


def test_adamw_normalized_coefficient():
    got = conventions.coef(0.05, "adamw_normalized", **CONTEXT)
    assert got == pytest.approx(0.05 * math.sqrt(128 / (50000 * 200)) / 0.125, rel=1e-15)


def test_correctly_rounded():
    exact = Fraction(0.1) * 7 / 3
    assert convert(0.1, "per_param", "ng", N=3, m=7) == float(exact)


def test_cross_family_factors():
    # plain SGD: coupled and decoupled are the same step
    with pytest.warns(ConventionWarning, match="plain SGD"):
        assert convert(5e-4, "torch_sgd", "torch_adamw", momentum=0) == 5e-4
    # momentum β: the coupled term weighs 1/(1 − β) in the steady state
    with pytest.warns(ConventionWarning, match=r"1/\(1 − β\) = 10"):
        got = convert(5e-4, "torch_sgd", "torch_adamw", momentum=Fraction(9, 10))
    assert got == float(Fraction(5e-4) * 10)
    # Adam: the coupled term is divided by √v̂ = grad_rms
    with pytest.warns(ConventionWarning, match="√v̂ = grad_rms = 0.01"):
        assert convert(0.01, "torch_adam", "decay_per_step", grad_rms=0.01, lr=1e-3) == 1e-3
    # a loss penalty takes either operating point, not both, not none
    with pytest.raises(ValueError, match="momentum .* or grad_rms"):
        convert(1.0, "ng", "torch_adamw", m=10)
    with pytest.raises(ValueError, match="not both"):
        convert(1.0, "ng", "torch_adamw", m=10, momentum=0.9, grad_rms=1.0)
    with pytest.raises(ValueError, match="needs grad_rms"):
        convert(0.01, "torch_adam", "torch_adamw", momentum=0.9)


@pytest.mark.parametrize("a", COUPLED)
@pytest.mark.parametrize("b", DECOUPLED)
def test_every_cross_family_conversion_warns_or_refuses(a, b):
    ctx = dict(CONTEXT)
    if conventions.CONVENTIONS[a].optimizer == "adam":
        ctx = dict(ctx, grad_rms=0.25, momentum=None)
    for src, dst in ((a, b), (b, a)):
        with pytest.warns(ConventionWarning, match=f"'{src}' is .* and '{dst}' is "):
            convert(1e-6, src, dst, **ctx)
        bare = {k: v for k, v in ctx.items() if k not in ("momentum", "grad_rms")}
        with pytest.raises(ValueError, match="needs .*(momentum|grad_rms)"):
            convert(1e-6, src, dst, **bare)


def test_within_a_family_never_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fam in (COUPLED, DECOUPLED):
            for a in fam:
                for b in fam:
                    convert(1e-6, a, b, **CONTEXT)


# ---------------------------------------------------------------------------
# Exactness, and every number type
# ---------------------------------------------------------------------------

KINDS = {
    "int32": (np.int32, np.float32),
    "int64": (np.int64, np.float64),
    "float32": (np.float32, np.float32),
    "float64": (np.float64, np.float64),
    "Fraction": (Fraction, lambda x: Fraction(x)),
    "Decimal": (Decimal, lambda x: Decimal(repr(x))),
}
COUNTS = ("m", "N", "batch_size", "epochs")


def typed(ctx, kind):
    count, real = KINDS[kind]
    return {k: (count(v) if k in COUNTS else real(v)) for k, v in ctx.items()}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_pair_with_every_number_type(kind):
    """Each pair converts and round-trips; NumPy, Fraction and Decimal contexts
    give bit for bit the result of Python numbers (all these values are exact
    in every type)."""
    for a in NAMES:
        for b in NAMES:
            ctx = dict(CONTEXT)
            if "torch_adam" in (a, b):
                ctx = dict(ctx, momentum=None, grad_rms=0.25)
            ref = quiet(3e-6, a, b, **ctx)
            assert quiet(3e-6, a, b, **typed({k: v for k, v in ctx.items() if v is not None},
                                             kind)) == ref, (a, b)
            back = quiet(ref, b, a, **ctx)
            assert abs(back - 3e-6) <= math.ulp(3e-6), (a, b)


def test_value_of_every_number_type():
    ref = convert(0.5, "ng", "torch_sgd", m=1000)
    for v in (np.float64(0.5), np.float32(0.5), Fraction(1, 2), Decimal("0.5")):
        assert convert(v, "ng", "torch_sgd", m=1000) == ref
    assert convert(np.int64(3), "keras", "torch_sgd") == 6.0
    assert convert(Decimal("0.1"), "torch_sgd", "ng", m=10) == 1.0   # exact 1/10, not 0.1's float
    assert convert(np.longdouble(2) ** -70, "keras", "tf_l2_loss") == 2.0 ** -69


positive = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False)
contexts = st.fixed_dictionaries({
    "m": st.integers(10**5, 10**8),
    "N": st.integers(1, 10**11),
    "batch_size": st.integers(1, 10**5),
    "lr": st.floats(1e-7, 10.0),
    "epochs": st.integers(1, 10**4),
    "momentum": st.floats(0.0, 0.999),
})


@settings(max_examples=300, deadline=None)
@given(x=positive, a=st.sampled_from(NAMES), b=st.sampled_from(NAMES), ctx=contexts)
def test_round_trip_within_one_ulp(x, a, b, ctx):
    if "torch_adam" in (a, b):
        ctx = dict(ctx, momentum=None, grad_rms=0.5)
    try:
        y = quiet(x, a, b, **ctx)
        back = quiet(y, b, a, **ctx)
    except ValueError as e:       # a per-step decay of 1 or more: refused, never returned
        assert "must be in [0, 1)" in str(e)
        return
    assert abs(back - x) <= math.ulp(x)


# ---------------------------------------------------------------------------
# Errors and the table
# ---------------------------------------------------------------------------

def test_unknown_names_suggest_the_closest():
    with pytest.raises(ValueError, match="did you mean 'torch_sgd'") as e:
        convert(1.0, "torch_sdg", "ng", m=10)
    for name in NAMES + ["samples", "params", "none", "batch"]:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="target convention 'ngg'; did you mean 'ng'"):
        convert(1.0, "ng", "ngg", m=10)
    with pytest.raises(ValueError, match="unknown context key 'batchsize' .did you mean "
                                         "'batch_size'"):
        convert(1.0, "sklearn_mlp", "ng", batchsize=200, m=1000)


def test_all_missing_keys_are_named_at_once():
    with pytest.raises(ValueError) as e:
        convert(0.05, "adamw_normalized", "sklearn_mlp")
    for key in ("batch_size", "m", "epochs", "lr", "momentum", "grad_rms"):
        assert key in str(e.value)
    # context that cancels is not demanded
    assert convert(0.5, "ng", "ng") == 0.5
    assert convert(0.5, "samples", "ng") == 0.5


@pytest.mark.parametrize("bad", [True, "0.1", b"1", None, 1 + 2j, [0.1]])
def test_non_numbers_are_type_errors(bad):
    with pytest.raises(TypeError, match="must be a real number"):
        convert(bad, "keras", "torch_sgd")
    if bad is not None:
        with pytest.raises(TypeError, match="m must be a real number"):
            convert(0.1, "ng", "torch_sgd", m=bad)


def test_bad_values_name_the_argument():
    for m in (0, -5, 2.5, Fraction(7, 2), float("nan"), float("inf"), Decimal("NaN")):
        with pytest.raises(ValueError, match=r"^m must be"):
            convert(1.0, "ng", "torch_sgd", m=m)
    with pytest.raises(ValueError, match="batch_size .* must be <= m"):
        convert(1.0, "sklearn_mlp", "ng", batch_size=200, m=100)
    with pytest.raises(ValueError, match="momentum must be in"):
        convert(1.0, "torch_sgd", "torch_adamw", momentum=1.0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        convert(1e-3, "decay_per_step", "torch_adamw", lr=0)
    with pytest.raises(ValueError, match="grad_rms must be > 0"):
        convert(1e-3, "torch_adam", "torch_adamw", grad_rms=-1)
    with pytest.raises(ValueError, match="value .* must be finite"):
        convert(float("inf"), "ng", "ng")
    # a decay per step of 1 or more is refused, on either side
    with pytest.raises(ValueError, match=r"d = 1.0 in 'decay_per_step'.*\[0, 1\)"):
        convert(1.0, "decay_per_step", "torch_adamw", lr=0.1)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        convert(20.0, "torch_adamw", "decay_per_step", lr=0.1)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        quiet(1.0, "torch_sgd", "tfa_adamw", momentum=0.9, lr=0.1)


def test_per_step_decay():
    assert conventions.per_step_decay(0.01, "torch_adamw", lr=1e-3) == 1e-5
    assert conventions.per_step_decay(1e-5, "tfa_adamw", lr=1e-3) == 1e-5
    with pytest.raises(ValueError, match="'torch_sgd' is coupled"):
        conventions.per_step_decay(1e-4, "torch_sgd", lr=0.1)
    with pytest.raises(ValueError, match="needs lr"):
        conventions.per_step_decay(0.01, "torch_adamw")


def test_table():
    text = conventions.table()
    lines = text.splitlines()
    assert len(lines) == 2 + len(NAMES)
    for name, line in zip(NAMES, lines[2:]):
        conv = conventions.CONVENTIONS[name]
        assert line.startswith(f"| {name} ") and f"| {conv.family} " in line
        assert conv.rule in line and conv.coef in line
    assert "λ/(2m)·Σ‖w‖²" in text and "alpha/(2n)" in text and "√(b/(B·T))" in text
    assert conventions.names("coupled") + conventions.names("decoupled") == NAMES
    with pytest.raises(ValueError, match="family must be"):
        conventions.names("both")
