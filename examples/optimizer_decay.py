"""Coupled L2 against decoupled decay under Adam and SGD with momentum.

One weight, a zero data gradient, and the update rules of torch.optim.Adam,
AdamW and SGD written out in NumPy around l2fast's `L2.grad_` (coupled: the
term joins the gradient) and `L2.decay_` (decoupled: the weight is shrunk
beside the update).  tests/test_conventions_libraries.py and
tests/test_examples.py check these runs against torch's own optimizers.

Run:  python examples/optimizer_decay.py
"""
import math

import numpy as np

from l2fast import L2


def adam(steps, lr, wd, decoupled, w0=1.0, betas=(0.9, 0.999), eps=1e-8):
    """The weight after each step of Adam(weight_decay=wd) (coupled) or
    AdamW(weight_decay=wd) (decoupled), with no data gradient."""
    w = np.array([w0])
    reg = L2.from_convention(wd, "torch_adamw" if decoupled else "torch_adam")
    m = np.zeros(1)
    v = np.zeros(1)
    out = []
    for t in range(1, steps + 1):
        g = np.zeros(1)
        if decoupled:
            reg.decay_(w, lr)             # w *= 1 − lr·wd
        else:
            reg.grad_(g, w)               # g += wd·w
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat = m / (1 - betas[0] ** t)
        v_hat = v / (1 - betas[1] ** t)
        w -= lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(float(w[0]))
    return out


def sgd(steps, lr, wd, momentum, w0=1.0):
    """The weight after each step of SGD(weight_decay=wd, momentum=momentum),
    with no data gradient: the coupled term goes through the momentum buffer."""
    w = np.array([w0])
    reg = L2.from_convention(wd, "torch_sgd")
    buf = None
    out = []
    for _ in range(steps):
        g = np.zeros(1)
        reg.grad_(g, w)                   # g += wd·w
        buf = g.copy() if buf is None else momentum * buf + g
        w -= lr * buf
        out.append(float(w[0]))
    return out


def report(lr_adam=1e-3, wd_adam=0.01, steps_adam=100, lr_sgd=0.1, wd_sgd=5e-4,
           momentum=0.9):
    lines = [f"a weight of 1.0, zero data gradient, {steps_adam} steps at lr = {lr_adam:g}, "
             f"weight_decay = {wd_adam:g}:"]
    coupled = adam(steps_adam, lr_adam, wd_adam, decoupled=False)[-1]
    decoupled = adam(steps_adam, lr_adam, wd_adam, decoupled=True)[-1]
    lines.append(f"  AdamW (decoupled)           {decoupled:.4f}   lost {1 - decoupled:.5f}")
    lines.append(f"  Adam(weight_decay) coupled  {coupled:.4f}   lost {1 - coupled:.5f}   "
                 f"{(1 - coupled) / (1 - decoupled):.0f} times more")
    lines.append("")
    lines.append(f"SGD, lr = {lr_sgd:g}, weight_decay = {wd_sgd:g}, zero data gradient: "
                 f"log-decay with momentum {momentum:g} over plain SGD")
    lines.append(f"{'steps':>7} {'plain':>9} {'momentum':>9} {'ratio':>7}")
    plain = sgd(10000, lr_sgd, wd_sgd, 0.0)
    heavy = sgd(10000, lr_sgd, wd_sgd, momentum)
    for n in (100, 1000, 10000):
        ratio = math.log(heavy[n - 1]) / math.log(plain[n - 1])
        lines.append(f"{n:>7} {plain[n - 1]:>9.4f} {heavy[n - 1]:>9.4f} {ratio:>7.2f}")
    lines.append(f"steady state 1/(1 - momentum) = {1 / (1 - momentum):g}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
