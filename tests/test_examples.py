"""The examples run, print sensible numbers, and docs/conventions.md quotes
examples/conventions_numbers.py's current output."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOC = ROOT / "docs" / "conventions.md"
NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:e[-+]?\d+)?")


def run(script, *args):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def fields(line):
    """{'lam': '0', 'train_acc': '0.98', ...} from 'key=value' pairs."""
    return dict(re.findall(r"(\w+)=(\S+)", line))


POLY_COLUMNS = ["m", "penalty", "c", "x^2 coef", "x coef", "max|fit - line|", "max|grad J|"]


def test_polynomial_l2():
    out = run("polynomial_l2.py")
    rows = [dict(zip(POLY_COLUMNS, l.split())) for l in out.splitlines()
            if l.strip()[:1].isdigit()]
    assert [(r["m"], r["penalty"]) for r in rows] == [
        ("3", "lam/(2m)"), ("3", "fixed"), ("3000", "lam/(2m)"), ("3000", "fixed")]
    few_ng, few_fixed, many_ng, many_fixed = rows
    # at m = 3 the two penalties are the same (c = lam/3)
    assert few_ng["x^2 coef"] == few_fixed["x^2 coef"]
    # with lam/(2m) 3,000 points give the line; a fixed c keeps it bent
    assert abs(float(many_ng["x^2 coef"])) < 0.1 < 0.2 < float(many_fixed["x^2 coef"])
    assert float(many_ng["max|fit - line|"]) < 0.1 < 0.5 < float(many_fixed["max|fit - line|"])
    assert abs(float(many_ng["x coef"]) - 2.0) < 0.1
    # the solve is a minimum: reg.grad_ plus the data gradient vanish there
    assert all(float(r["max|grad J|"]) < 1e-10 for r in rows)


def test_polynomial_plot(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "poly.png"
    run("polynomial_l2.py", "--points", "3,300", "--plot", str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _accuracies(out):
    rows = [fields(l) for l in out.splitlines() if l.startswith("lam=")]
    return {float(r["lam"]): (float(r["train_acc"]), float(r["test_acc"])) for r in rows}


def test_train_digits():
    pytest.importorskip("sklearn")
    args = ["--epochs", "5", "--hidden", "0", "--lambdas", "0,1,1000"]
    acc = _accuracies(run("train_digits.py", *args))
    assert set(acc) == {0.0, 1.0, 1000.0}
    for lam in (0.0, 1.0):
        assert acc[lam][0] > 0.8 and acc[lam][1] > 0.8
    # a large lam (coef lam/m = 0.74 per step) underfits
    assert acc[1000.0][0] < acc[0.0][0] - 0.1
    # for plain SGD, decoupled decay is the same step as the coupled gradient
    decoupled = _accuracies(run("train_digits.py", *args, "--decoupled"))
    for lam in acc:
        assert decoupled[lam] == pytest.approx(acc[lam], abs=0.01)


def test_conventions_numbers_small():
    out = run("conventions_numbers.py", "--width", "60")
    section3 = out.split("== 3.")[1].split("== 4.")[0]
    rows = [l.split() for l in section3.splitlines() if l.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "35"]
    one, many = rows
    # N is the penalised count: 60·60 weights per layer, biases excluded
    assert [r[1] for r in rows] == ["3,600", "126,000"]
    assert [r[2] for r in rows] == ["(3,660)", "(128,100)"]
    assert float(one[7]) == pytest.approx(150 / 3600, rel=1e-3)
    # the penalty grows 35-fold, the per-weight gradient (rms c*w) does not
    assert float(many[4]) / float(one[4]) == pytest.approx(35, rel=0.05)
    assert float(many[5]) == float(one[5]) == 0.003
    assert float(many[6]) == pytest.approx(float(one[6]), rel=0.05)
    section4 = out.split("== 4.")[1].split("what one epoch")[0]
    rows = [l.split() for l in section4.splitlines() if l.strip()[:1].isdigit()]
    assert [(r[0], r[1], r[4], r[5]) for r in rows] == [
        ("32", "25", "0.016", "12.5"), ("128", "25", "0.064", "12.5"),
        ("512", "25", "0.256", "12.5")]
    # section 6 holds the weights fixed while m varies
    section6 = out.split("== 6.")[1]
    assert "at every m" in section6


def test_optimizer_decay_against_torch():
    """The NumPy Adam, AdamW and SGD of examples/optimizer_decay.py, built on
    L2.grad_ and L2.decay_, step for step against torch.optim."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import optimizer_decay
    finally:
        sys.path.remove(str(EXAMPLES))

    from test_conventions_libraries import zero_gradient_run

    def torch_run(cls, steps, **kw):
        return zero_gradient_run(torch, cls, steps, **kw)

    for decoupled, cls in ((False, torch.optim.Adam), (True, torch.optim.AdamW)):
        mine = optimizer_decay.adam(100, 1e-3, 0.01, decoupled)
        ref = torch_run(cls, 100, lr=1e-3, weight_decay=0.01)
        assert mine == pytest.approx(ref, rel=1e-12)
    for momentum in (0.0, 0.9):
        mine = optimizer_decay.sgd(1000, 0.1, 5e-4, momentum)
        ref = torch_run(torch.optim.SGD, 1000, lr=0.1, weight_decay=5e-4, momentum=momentum)
        assert mine == pytest.approx(ref, rel=1e-12)
    text = optimizer_decay.report()
    assert "0.9990" in text and "0.9017" in text and "98 times more" in text


def _last_digit(s):
    """The value of one unit in the last printed digit of s ("3.38" -> 0.01)."""
    mantissa, _, exponent = s.replace(",", "").lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _numbers_close(a, b):
    """Equal up to one unit in the last printed digit; values under 1e-8 are
    rounding noise (residuals, finite differences) and not compared."""
    x, y = float(a.replace(",", "")), float(b.replace(",", ""))
    if abs(x) < 1e-8 and abs(y) < 1e-8:
        return True
    return abs(x - y) <= 1.01 * max(_last_digit(a), _last_digit(b))


def test_doc_quotes_the_current_numbers():
    """docs/conventions.md holds the output of examples/conventions_numbers.py;
    regenerate it (see the doc) when this fails."""
    text = DOC.read_text(encoding="utf-8")
    marker = "<!-- output of examples/conventions_numbers.py -->"
    assert marker in text
    quoted = text.split(marker)[1].split("```text\n", 1)[1].split("```", 1)[0]
    fresh = run("conventions_numbers.py")
    q_lines, f_lines = quoted.strip().splitlines(), fresh.strip().splitlines()
    assert len(q_lines) == len(f_lines)
    for q, f in zip(q_lines, f_lines):
        assert NUMBER.sub("#", q) == NUMBER.sub("#", f), (q, f)
        for a, b in zip(NUMBER.findall(q), NUMBER.findall(f)):
            assert _numbers_close(a, b), (q, f)
