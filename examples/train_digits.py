"""Train a small NumPy network on scikit-learn's digits with an l2fast.L2 penalty, sweeping λ.

The objective is Ng's

    J = 1/m · sum_k CE(x_k, y_k) + lam/(2m) · sum ||W||^2

(m training samples, biases not penalised), minimised by minibatch SGD.  The
data gradient of each minibatch is an average over its samples, and
``reg.grad_(grads, params)`` adds (lam/m)·W to it: one l2fast call for the
whole model, whatever the batch size.  With --decoupled the penalty is
applied as ``reg.decay_(params, lr)`` instead (W *= 1 - lr·lam/m), which
for plain SGD is the same step.

Run:  python examples/train_digits.py [--hidden 32] [--epochs 30]
                                      [--lambdas 0,1,3,10,30,100] [--decoupled]
                                      [--train-size 400]
"""
import argparse
import time

import numpy as np

import l2fast


def load(seed, train_size=None):
    """digits scaled to [0, 1]: train_size samples (default 75 %) for training,
    the rest for testing."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_test_split(x, y, train_size=train_size or 0.75, random_state=seed, stratify=y)


def init(n_in, n_hidden, n_out, rng):
    """He-initialised weights, zero biases: {"W1", "b1", "W2", "b2"} (or {"W", "b"})."""
    def weight(fan_in, fan_out):
        return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    if n_hidden == 0:
        return {"W": weight(n_in, n_out), "b": np.zeros(n_out, np.float32)}
    return {"W1": weight(n_in, n_hidden), "b1": np.zeros(n_hidden, np.float32),
            "W2": weight(n_hidden, n_out), "b2": np.zeros(n_out, np.float32)}


def forward(params, x):
    """Logits, and the hidden activations (None without a hidden layer)."""
    if "W" in params:
        return x @ params["W"] + params["b"], None
    h = np.maximum(x @ params["W1"] + params["b1"], 0.0)
    return h @ params["W2"] + params["b2"], h


def data_grads(params, x, y):
    """Gradients of the mean cross-entropy over the minibatch (x, y)."""
    logits, h = forward(params, x)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    dz = p / len(y)                       # the 1/m of dW = (1/m)·X'·dZ
    if h is None:
        return {"W": x.T @ dz, "b": dz.sum(axis=0)}
    dh = (dz @ params["W2"].T) * (h > 0)
    return {"W1": x.T @ dh, "b1": dh.sum(axis=0), "W2": h.T @ dz, "b2": dz.sum(axis=0)}


def accuracy(params, x, y):
    return float((forward(params, x)[0].argmax(axis=1) == y).mean())


def train(lam, data, hidden=32, epochs=30, batch_size=32, lr=0.1, decoupled=False, seed=0):
    """Train one network with L2(lam, scale="samples", m=len(x_train)).

    Returns
    -------
    dict
        lam, coef (lam/m), train and test accuracy, and the final penalty.
    """
    x_tr, x_te, y_tr, y_te = data
    rng = np.random.default_rng(seed)
    params = init(x_tr.shape[1], hidden, 10, rng)
    m = len(x_tr)
    reg = l2fast.L2(lam, scale="samples", m=m, exclude=l2fast.no_decay_1d)
    for _ in range(epochs):
        order = rng.permutation(m)
        for start in range(0, m, batch_size):
            batch = order[start:start + batch_size]
            grads = data_grads(params, x_tr[batch], y_tr[batch])
            if decoupled:
                reg.decay_(params, lr)          # W *= 1 - lr·lam/m
            else:
                reg.grad_(grads, params)        # dW += (lam/m)·W
            l2fast.add_scaled_(params, grads, -lr)
    return dict(lam=lam, coef=reg.coef(params), train_acc=accuracy(params, x_tr, y_tr),
                test_acc=accuracy(params, x_te, y_te), penalty=reg.penalty(params))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=32,
                        help="hidden units; 0 for softmax regression (default 32)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--lambdas", default="0,1,3,10,30,100",
                        help="comma-separated values of lam (default 0,1,3,10,30,100)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="training samples (default 75 %% of the 1,797)")
    parser.add_argument("--decoupled", action="store_true",
                        help="decay the weights (reg.decay_) instead of adding the gradient")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = load(args.seed, args.train_size)
    m = len(data[0])
    arch = f"MLP 64-{args.hidden}-10 (ReLU)" if args.hidden else "softmax regression 64-10"
    print(f"digits: {m} train / {len(data[1])} test samples; {arch}; {args.epochs} epochs of "
          f"SGD, batch {args.batch_size}, lr {args.lr}")
    print(f"penalty lam/(2m)·sum ||W||^2 with m = {m}, biases excluded; "
          f"{'decoupled decay' if args.decoupled else 'coupled gradient'}")
    for lam in (float(v) for v in args.lambdas.split(",")):
        t = time.perf_counter()
        r = train(lam, data, args.hidden, args.epochs, args.batch_size, args.lr,
                  args.decoupled, args.seed)
        print(f"lam={r['lam']:<8g} coef={r['coef']:<10.4g} train_acc={r['train_acc']:.4f} "
              f"test_acc={r['test_acc']:.4f} penalty={r['penalty']:.4g} "
              f"({time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
