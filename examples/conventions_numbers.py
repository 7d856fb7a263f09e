"""Every number quoted in docs/conventions.md, computed with l2fast.

Run:  python examples/conventions_numbers.py > numbers.txt
      python examples/conventions_numbers.py --width 100     # a 0.35M-parameter "big" net

Sections:
  1. the conventions table
  2. why the penalty is divided by m: the polynomial fit (examples/polynomial_l2.py)
  3. why not by N: a 35M-parameter network's penalty and its per-weight gradient
  4. how λ changes with the batch size (and scikit-learn's n per step)
  5. coupled L2 against decoupled decay under Adam and momentum (examples/optimizer_decay.py)
  6. where the 1/m in dW = (1/m)·dZ·X' comes from, at fixed weights
"""
import argparse
import math
import os
import sys

import numpy as np

import l2fast
from l2fast import L2, conventions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import optimizer_decay  # noqa: E402
import polynomial_l2  # noqa: E402


def section(title):
    print()
    print(f"== {title} ==")


def table():
    section("1. conventions")
    print(conventions.table())


def divide_by_m():
    section("2. why lam/(2m): a straight line fitted with a degree-5 polynomial")
    print(polynomial_l2.describe())
    results = polynomial_l2.run([3, 3000], seed=0)
    print(polynomial_l2.report(results))
    print("x^2 coefficient at m = 3000 over seeds 0-4:")
    for seed in range(5):
        rs = polynomial_l2.run([3000], seed=seed)
        print(f"  seed {seed}: " + "  ".join(
            f"{r['penalty']:<9} {r['params']['coef'][1]: .4f}" for r in rs))


def glorot_layers(layers, width, rng):
    """`layers` square dense layers (width x width, Glorot-normal) with zero biases."""
    std = math.sqrt(2.0 / (width + width))
    out = {}
    for i in range(layers):
        out[f"layer{i}.weight"] = (rng.standard_normal((width, width), dtype=np.float32)
                                   * np.float32(std))
        out[f"layer{i}.bias"] = np.zeros(width, np.float32)
    return out


def not_by_n(width, m=50_000, wd=3e-3):
    section("3. why not lam/(2N): the penalty grows with N, each weight's gradient does not")
    lam = conventions.convert(wd, "torch_sgd", "ng", m=m)
    print(f"m = {m} training samples; lam = {lam:g} in lam/(2m) "
          f"(= torch weight_decay {wd:g} = keras l2 {conventions.convert(wd, 'torch_sgd', 'keras'):g}); "
          f"biases excluded; Glorot-normal weights")
    print(f"cross-entropy of 10 classes at initialisation: ln 10 = {math.log(10):.3f}")
    rng = np.random.default_rng(0)
    print("N counts the penalised weights (biases excluded); all parameters in brackets")
    print(f"{'layers':>6} {'N':>11} {'(all)':>12} {'sum w^2':>10} {'penalty':>9} "
          f"{'c = lam/m':>10} {'rms c*w':>9} {'per_param c = lam/N':>20} {'rms':>9}")
    for layers in (1, 35):
        params = glorot_layers(layers, width, rng)
        ng = L2(lam, scale="samples", m=m, exclude=l2fast.no_decay_1d)
        per_param = L2(lam, scale="params", exclude=l2fast.no_decay_1d)
        n_all = sum(a.size for a in params.values())
        s = l2fast.sum_squares([a for a in params.values() if a.ndim > 1])
        rms = []
        for reg in (ng, per_param):
            grads = {k: np.zeros_like(a) for k, a in params.items()}
            reg.grad_(grads, params)
            penalised = sum(a.size for a in params.values() if a.ndim > 1)
            rms.append(math.sqrt(l2fast.sum_squares(grads) / penalised))
        assert per_param.coef(params) == conventions.coef(lam, "per_param", N=penalised)
        print(f"{layers:>6} {penalised:>11,} {'(' + format(n_all, ',') + ')':>12} {s:>10.1f} "
              f"{ng.penalty(params):>9.3f} "
              f"{ng.coef(params):>10.3g} {rms[0]:>9.3g} {per_param.coef(params):>20.3g} "
              f"{rms[1]:>9.3g}")
        del params, grads


def batch_size(m=50_000, wd=5e-4, lam_norm=0.05, epochs=200):
    section("4. how lam changes with the batch size")
    lam = conventions.convert(wd, "torch_sgd", "ng", m=m)
    print(f"m = {m}; the regularisation of torch weight_decay = {wd:g} "
          f"(c = {wd:g} per weight and step), written in each convention:")
    bengio = conventions.convert(wd, "torch_sgd", "bengio_batch", m=m)
    print(f"{'B':>5} {'ng lam':>7} {'torch wd':>9} {'keras l2':>9} {'sklearn alpha':>14} "
          f"{'bengio lam':>11} {'bengio lam*B/m':>15}")
    for b in (32, 128, 512):
        alpha = conventions.convert(wd, "torch_sgd", "sklearn_mlp", batch_size=b)
        print(f"{b:>5} {lam:>7g} {wd:>9g} {conventions.convert(wd, 'torch_sgd', 'keras'):>9g} "
              f"{alpha:>14g} {bengio:>11g} {bengio * b / m:>15g}")
    print(f"L2(bengio lam, scale='batch', m=m).coef() = {L2(bengio, scale='batch', m=m).coef():g}"
          f" whatever B")
    sklearn_steps(m, wd)
    print()
    print("what one epoch of decay does to a weight of 1.0 (reg.decay_ applied m/B times):")
    print(f"{'B':>5} {'steps':>6} {'lr=0.1':>9} {'lr=0.1*B/128':>13}")
    reg = L2(wd, scale="none")
    for b in (32, 128, 512):
        steps = m // b
        out = []
        for lr in (0.1, 0.1 * b / 128):
            w = np.ones(1)
            for _ in range(steps):
                reg.decay_(w, lr)
            out.append(w[0])
        print(f"{b:>5} {steps:>6} {out[0]:>9.4f} {out[1]:>13.4f}")
    print()
    print(f"AdamW, Loshchilov & Hutter's normalised lam_norm = {lam_norm}, T = {epochs} epochs, "
          f"lr = 1e-3:")
    print(f"{'B':>5} {'decay per step':>15} {'torch wd':>9} {'steps':>8} {'weight left after T':>20}")
    for b in (32, 128, 512):
        ctx = dict(batch_size=b, m=m, epochs=epochs, lr=1e-3)
        d = conventions.convert(lam_norm, "adamw_normalized", "decay_per_step", **ctx)
        wd_b = conventions.convert(lam_norm, "adamw_normalized", "torch_adamw", **ctx)
        steps = m * epochs // b
        left = math.exp(steps * math.log1p(-d))
        print(f"{b:>5} {d:>15.3g} {wd_b:>9.4g} {steps:>8} {left:>20.3g}")


def sklearn_steps(m, wd, batch=128, alpha=1e-4):
    """scikit-learn's n per step: the batch, a short last batch, early_stopping's
    smaller m, and the weight sum with sample_weight."""
    print()
    print(f"scikit-learn, alpha = {alpha:g}, batch_size = {batch}, m = {m}: c = alpha/n at each step")
    last = m % batch
    train = m - math.ceil(0.1 * m)       # early_stopping holds out validation_fraction = 0.1
    rows = [("a full batch", batch), (f"the last batch of the epoch ({m} = "
                                       f"{m // batch}*{batch} + {last})", last),
            ("a full batch, sample_weight summing to 64", 64)]
    for what, n in rows:
        c = conventions.coef(alpha, "sklearn_mlp", batch_size=n)
        print(f"  {what:<52} n = {n:>4}  c = {c:.4g}")
    lam_all = conventions.convert(alpha, "sklearn_mlp", "ng", batch_size=batch, m=m)
    lam_es = conventions.convert(alpha, "sklearn_mlp", "ng", batch_size=batch, m=train)
    print(f"  the same alpha as Ng's lam: {lam_all:g} on m = {m}; {lam_es:g} on the "
          f"m = {train} early_stopping trains on")


def coupled_decoupled():
    section("5. coupled L2 against decoupled decay")
    print(optimizer_decay.report())
    print()
    print("convert across the families, and what it matches:")
    import warnings
    for args, ctx in [((5e-4, "torch_sgd", "torch_adamw"), dict(momentum=0.0)),
                      ((5e-4, "torch_sgd", "torch_adamw"), dict(momentum=0.9)),
                      ((0.01, "torch_adam", "decay_per_step"), dict(grad_rms=0.01, lr=1e-3)),
                      ((0.01, "torch_adam", "decay_per_step"), dict(grad_rms=1.0, lr=1e-3))]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = conventions.convert(*args, **ctx)
        keys = ", ".join(f"{k}={v:g}" for k, v in ctx.items())
        print(f"  {args[1]} {args[0]:g} -> {args[2]} ({keys}): {out:.4g}"
              f"  [{len(caught)} ConventionWarning]")


def one_over_m(lam=0.7, seed=0):
    section("6. where the 1/m in dW = (1/m)·dZ·X' comes from")
    print("logistic regression, Ng's notation: X is (n_x, m), Z = W X + b, A = sigmoid(Z),")
    print("J = -(1/m) sum [y log a + (1-y) log(1-a)] + lam/(2m) ||W||^2;  "
          "dZ = A - Y;  dW = (1/m) dZ X' + (lam/m) W")
    rng = np.random.default_rng(seed)
    w_fixed = rng.standard_normal((1, 3))   # the same weights at every m
    x_all = rng.standard_normal((3, 500))
    y_all = (rng.uniform(size=(1, 500)) < 0.5).astype(float)
    print(f"W = {np.array2string(w_fixed[0], precision=4)} at every m; the first m of 500 samples")
    print(f"{'m':>5} {'|dW| mean loss':>15} {'|dW| summed loss':>17} "
          f"{'max|dW - finite diff|':>22} {'without 1/m':>12}")
    for m in (5, 50, 500):
        x, y = x_all[:, :m], y_all[:, :m]
        params = {"W": w_fixed.copy(), "b": np.zeros(())}
        reg = L2(lam, scale="samples", m=m, exclude=[False, True])

        def cost(p):
            a = 1 / (1 + np.exp(-(p["W"] @ x + p["b"])))
            data = -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a))
            return data + reg.penalty(p)

        a = 1 / (1 + np.exp(-(params["W"] @ x + params["b"])))
        dz = a - y
        grads = {"W": dz @ x.T / m, "b": np.array(dz.mean())}
        reg.grad_(grads, params)                 # + (lam/m)·W
        summed = dz @ x.T + lam * params["W"]    # the gradient of m·J
        fd = np.zeros((1, 3))
        h = 1e-6
        for j in range(3):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus["W"][0, j] += h
            minus["W"][0, j] -= h
            fd[0, j] = (cost(plus) - cost(minus)) / (2 * h)
        print(f"{m:>5} {np.linalg.norm(grads['W']):>15.4f} {np.linalg.norm(summed):>17.4f} "
              f"{np.abs(grads['W'] - fd).max():>22.1e} {np.abs(summed - fd).max():>12.3g}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1000,
                        help="width of the square layers of section 3 (default 1000: "
                             "35 layers = 35,035,000 parameters)")
    args = parser.parse_args(argv)
    table()
    divide_by_m()
    not_by_n(args.width)
    batch_size()
    coupled_decoupled()
    one_over_m()


if __name__ == "__main__":
    main()
