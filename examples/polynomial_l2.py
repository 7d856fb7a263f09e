"""Why the L2 penalty is divided by m: a straight line fitted with a degree-5 polynomial.

The data are y = 1 + 2x + noise, x uniform on [-0.5, 1.5].  A degree-5 polynomial
b + w1·x + ... + w5·x^5 is fitted by minimising

    J(w, b) = 1/(2m) · sum_k (y_hat_k - y_k)^2  +  c/2 · sum_j w_j^2

(the intercept b is not penalised) from the first 3 points and from 3,000
points, with two choices of c:

* ``L2(lam, scale="samples", m=m)``: c = lam/m, Ng's lam/(2m)·sum w^2;
* ``L2(lam / 3, scale="none")``: a fixed c, equal to the first at m = 3.

Dividing by m keeps the ratio of data to penalty what it is in the summed
objective sum_k (y_hat_k - y_k)^2 + lam·sum w^2: the more data, the less the
penalty matters, and with 3,000 points the fit is the line (w2 ≈ 0).  A
fixed c pulls as hard at 3,000 points as at 3, and the fit stays bent.

Run:  python examples/polynomial_l2.py [--plot poly.png] [--points 3,3000]
"""
import argparse

import numpy as np

import l2fast

DEGREE = 5
LAM = 1.0
NOISE = 0.1
LOW, HIGH = -0.5, 1.5
LABELS = {"lam/(2m)": "c = lam/m", "fixed": "fixed c = lam/3"}


def make_data(m, seed=0):
    """m points of y = 1 + 2x + N(0, NOISE^2), x uniform on [LOW, HIGH]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(LOW, HIGH, m)
    return x, 1.0 + 2.0 * x + NOISE * rng.standard_normal(m)


def features(x):
    """Columns x, x^2, ..., x^DEGREE."""
    return np.stack([x ** j for j in range(1, DEGREE + 1)], axis=1)


def fit(x, y, reg):
    """Minimise 1/(2m)·||Xw + b - y||^2 + reg's penalty of w (b not penalised).

    The minimiser comes from a least-squares solve of the stationarity
    equations, X'(Xw + b - y)/m + c·w = 0 and sum(Xw + b - y) = 0, with
    c = reg.coef(); returns {"coef": w, "intercept": b} and the largest
    component of the gradient of J there, computed with reg.grad_.
    """
    m = len(x)
    a = np.column_stack([features(x), np.ones(m)])
    params = {"coef": np.zeros(DEGREE), "intercept": np.zeros(())}
    c = reg.coef(params)
    # rows [A/sqrt(m); sqrt(c)·[I 0]] against [y/sqrt(m); 0]: the same minimiser
    penalty_rows = np.sqrt(c) * np.eye(DEGREE, DEGREE + 1)
    theta = np.linalg.lstsq(np.vstack([a / np.sqrt(m), penalty_rows]),
                            np.concatenate([y / np.sqrt(m), np.zeros(DEGREE)]), rcond=None)[0]
    params["coef"][:] = theta[:DEGREE]
    params["intercept"][()] = theta[DEGREE]
    residual = a @ theta - y
    grads = {"coef": features(x).T @ residual / m, "intercept": np.array(residual.mean())}
    reg.grad_(grads, params)          # + c·w on the coefficients, nothing on b
    worst = max(np.abs(g).max() for g in grads.values())
    return params, worst


def off_line(params):
    """Largest distance between the fitted curve and the true line on [LOW, HIGH]."""
    grid = np.linspace(LOW, HIGH, 401)
    fitted = features(grid) @ params["coef"] + params["intercept"]
    return float(np.abs(fitted - (1.0 + 2.0 * grid)).max())


def regularizers(m, lam=LAM, m_ref=3):
    """The two penalties compared: "lam/(2m)" and "fixed", c = lam/m_ref at every m."""
    skip_b = [False, True]       # {"coef", "intercept"}: b is not penalised
    return {
        "lam/(2m)": l2fast.L2(lam, scale="samples", m=m, exclude=skip_b),
        "fixed": l2fast.L2(lam / m_ref, scale="none", exclude=skip_b),
    }


def run(points, seed=0):
    """Fit every (m, penalty) pair; returns a list of result dicts."""
    x_all, y_all = make_data(max(points), seed)
    out = []
    for m in points:
        x, y = x_all[:m], y_all[:m]
        for label, reg in regularizers(m).items():
            params, worst = fit(x, y, reg)
            out.append(dict(m=m, penalty=label, c=reg.coef(params), params=params,
                            grad=worst, off_line=off_line(params), x=x, y=y))
    return out


def report(results):
    """One line per fit: m, penalty, c, the x^2 and x coefficients, the largest
    distance from the true line, and the largest gradient component at the fit."""
    lines = [f"{'m':>5}  {'penalty':<9} {'c':<10} {'x^2 coef':>8} {'x coef':>7}  "
             f"{'max|fit - line|':>15} {'max|grad J|':>11}"]
    for r in results:
        w = r["params"]["coef"]
        lines.append(f"{r['m']:>5}  {r['penalty']:<9} {r['c']:<10.4g} {w[1]:>8.4f} {w[0]:>7.4f}  "
                     f"{r['off_line']:>15.4f} {r['grad']:>11.1e}")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = sorted({r["m"] for r in results})
    fig, axes = plt.subplots(1, len(ms), figsize=(5 * len(ms), 4), sharey=True)
    axes = np.atleast_1d(axes)
    grid = np.linspace(LOW, HIGH, 200)
    for ax, m in zip(axes, ms):
        rs = [r for r in results if r["m"] == m]
        ax.scatter(rs[0]["x"][:300], rs[0]["y"][:300], s=6 if m > 10 else 30, color="0.4",
                   zorder=3,
                   label="data" if m <= 300 else "data (300 shown)")
        ax.plot(grid, 1 + 2 * grid, "k--", lw=1, label="truth 1 + 2x")
        for r in rs:
            p = r["params"]
            ax.plot(grid, features(grid) @ p["coef"] + p["intercept"],
                    label=f"{LABELS[r['penalty']]}: x² coef {p['coef'][1]:.3f}")
        ax.set_title(f"m = {m}")
        ax.set_xlabel("x")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def describe():
    return (f"y = 1 + 2x + N(0, {NOISE}^2), x uniform on [{LOW}, {HIGH}]; degree-{DEGREE} "
            f"polynomial, intercept not penalised; lam = {LAM}\n"
            f"lam/(2m): L2(lam, scale='samples', m=m), c = lam/m;  "
            f"fixed: L2(lam/3, scale='none'), c = lam/3 at every m")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="3,3000",
                        help="comma-separated numbers of points (default 3,3000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="FILE", help="save a figure (needs matplotlib)")
    args = parser.parse_args(argv)
    points = [int(p) for p in args.points.split(",")]
    results = run(points, args.seed)
    print(describe())
    print(report(results))
    if args.plot:
        plot(results, args.plot)
        print(f"figure saved to {args.plot}")


if __name__ == "__main__":
    main()
