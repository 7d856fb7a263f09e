"""l2fast is typed: py.typed and stubs ship with it, mypy --strict accepts a user's
script over the public API and rejects misuse, and the stubs match the compiled modules."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import l2fast

PACKAGE = Path(l2fast.__file__).resolve().parent
USER_SCRIPT = Path(__file__).resolve().parent / "typing_user.py"
MYPY_CONFIG = """\
[mypy]
strict = True
# report errors in the code under check, not inside l2fast itself
[mypy-l2fast.*]
follow_imports = silent
"""


def mypy_env():
    """Environment for a mypy run that finds this l2fast: installed packages are
    found by mypy itself; a source checkout (an editable install, found through an
    import hook mypy does not run) is named by MYPYPATH, and by PYTHONPATH for
    what the run imports (stubtest, the user script), so that another checkout's
    editable install is not imported instead."""
    env = dict(os.environ)
    if "site-packages" not in PACKAGE.parts and "dist-packages" not in PACKAGE.parts:
        env["MYPYPATH"] = str(PACKAGE.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE.parent),
                                                          env.get("PYTHONPATH")]))
    return env


def run_mypy(args, tmp_path):
    pytest.importorskip("mypy")
    config = tmp_path / "mypy.ini"
    config.write_text(MYPY_CONFIG)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config),
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", *args],
        cwd=tmp_path, env=mypy_env(), capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_typing_files_ship_with_the_package():
    for name in ("py.typed", "_typing.pyi", "_kernels.pyi", "_table.pyi"):
        assert (PACKAGE / name).is_file(), name


def test_user_script_runs(tmp_path):
    if sys.version_info < (3, 11):
        pytest.importorskip("typing_extensions")
    proc = subprocess.run([sys.executable, str(USER_SCRIPT)], cwd=tmp_path, env=mypy_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_accepts_the_user_script(tmp_path):
    code, out = run_mypy([str(USER_SCRIPT)], tmp_path)
    assert code == 0, out


def test_mypy_rejects_misuse(tmp_path):
    misuse = tmp_path / "misuse.py"
    misuse.write_text(textwrap.dedent("""\
        import numpy as np
        import l2fast

        ws = [np.ones(3), np.ones(4)]
        total: float = l2fast.sum_squares(ws, per_array=True)
        l2fast.scale_(ws, "0.5")
        n: str = l2fast.ParamList(ws).size
        l2fast.sum_squares(ws, num_threads=2.0)
        l2fast.add_scaled_(ws, ws)
        cfg: None = l2fast.show_config(mode="dicts")
    """))
    code, out = run_mypy([str(misuse)], tmp_path)
    assert code == 1, out
    lines = sorted({int(line.split(":")[1]) for line in out.splitlines()
                    if line.startswith(misuse.name + ":") and ": error:" in line})
    assert lines == [5, 6, 7, 8, 9, 10], out


def test_stubs_match_the_compiled_modules(tmp_path):
    pytest.importorskip("mypy")
    allowlist = tmp_path / "allowlist.txt"
    # Cython's own module attributes
    allowlist.write_text(r"l2fast\._(kernels|table)\.__(test|reduce_cython|setstate_cython)__" "\n")
    config = tmp_path / "mypy.ini"
    config.write_text(MYPY_CONFIG)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "l2fast._kernels", "l2fast._table",
         "--mypy-config-file", str(config), "--allowlist", str(allowlist)],
        cwd=tmp_path, env=mypy_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
