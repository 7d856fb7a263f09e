"""l2fast next to other packages: threadpoolctl, torch and scikit-learn in one
process, buffer and DLPack objects, and what show_config reports."""
import array
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import l2fast
from l2fast import _kernels, reference
from l2fast.reference import exact_sum_squares

CONFIG = l2fast.show_config(mode="dicts")
OPENMP = CONFIG["build"]["openmp"]
needs_openmp = pytest.mark.skipif(not OPENMP, reason="l2fast was built without OpenMP")


def run_python(code, cwd, timeout=240):
    """Run `code` in a fresh interpreter; return its stdout, failing on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def large_list(seed=0):
    """float32 arrays totalling several parallel items (over PARALLEL_MIN_SIZE elements)."""
    rng = np.random.default_rng(seed)
    sizes = (150_000, 90_000, 65_536, 1_000, 7)
    assert sum(sizes) > 2 * _kernels.PARALLEL_MIN_SIZE
    return [rng.standard_normal(n).astype(np.float32) for n in sizes]


# ---------------------------------------------------------------------------
# The package under test
# ---------------------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("L2FAST_EXPECT_INSTALLED") != "1",
                    reason="set L2FAST_EXPECT_INSTALLED=1 to test an installed l2fast")
def test_the_installed_package_is_under_test():
    checkout = Path(__file__).resolve().parents[1]
    package = Path(l2fast.__file__).resolve().parent
    assert package != checkout / "l2fast", f"tests import the source tree: {package}"
    assert "site-packages" in package.parts
    assert Path(_kernels.__file__).resolve().parent == package


@pytest.mark.skipif(os.environ.get("L2FAST_EXPECT_OPENMP") not in ("0", "1"),
                    reason="set L2FAST_EXPECT_OPENMP=0 or 1 to check how l2fast was built")
def test_built_with_the_expected_openmp_setting():
    assert OPENMP is (os.environ["L2FAST_EXPECT_OPENMP"] == "1")


def test_importing_l2fast_does_not_import_torch(tmp_path):
    out = run_python("""
        import array, sys
        import numpy as np
        import l2fast
        w = [np.ones((3, 4), np.float32), array.array("d", [1.0, 2.0])]
        l2fast.scale_(w, 2.0)
        print(l2fast.sum_squares(w), l2fast.ParamList(w).size)
        l2fast.show_config(mode="dicts")
        print(sorted(m for m in ("torch", "sklearn", "jax") if m in sys.modules))
    """, tmp_path)
    assert out.split("\n")[:2] == ["68.0 14", "[]"]  # 12 * 4 + 4 + 16


# ---------------------------------------------------------------------------
# show_config
# ---------------------------------------------------------------------------

def test_show_config_reports_build_runtime_and_simd():
    cfg = l2fast.show_config(mode="dicts")
    assert set(cfg) >= {"l2fast", "python", "numpy", "platform", "build", "openmp_runtime",
                        "simd", "kernels"}
    assert cfg["l2fast"] == l2fast.__version__
    assert cfg["python"] == platform.python_version()
    assert cfg["numpy"] == np.__version__

    build = cfg["build"]
    assert build["compiler"] and isinstance(build["compiler"], str)
    assert build["target"] == f"{platform.system()}-{platform.machine()}"
    assert isinstance(build["openmp"], bool)
    openmp_flag = any(f in build["cflags"].split() for f in ("-fopenmp", "/openmp"))
    assert openmp_flag is build["openmp"]

    rt = cfg["openmp_runtime"]
    assert rt["max_threads"] == _kernels.max_threads() >= 1
    assert rt["OMP_NUM_THREADS"] == os.environ.get("OMP_NUM_THREADS")
    if build["openmp"]:
        assert build["openmp_spec"] >= 200805  # OpenMP 3.0 or later
        if sys.platform.startswith("linux") or sys.platform == "darwin":
            library = Path(rt["library"])
            assert library.is_absolute() and library.is_file()
            assert re.match(r"(lib)?(gomp|omp|iomp5)[-.]", library.name), library.name
        if sys.platform.startswith("linux"):  # the soname carries the version
            assert rt["version"] and rt["version"][0].isdigit()
    else:
        assert build["openmp_spec"] is None
        assert rt["library"] is None and rt["version"] is None
        assert rt["max_threads"] == 1

    simd = cfg["simd"]
    assert simd["baseline"] in {"AVX512F", "AVX2", "AVX", "SSE2", "NEON", "none"}
    assert simd["dispatched"]
    if platform.machine() == "x86_64" and sys.platform.startswith("linux"):
        assert re.match(r"x86-64-v[34] |baseline \(|SSE2|AVX", simd["dispatched"])
    assert simd["loops16"] in {"x86-64-v4 (AVX-512)", "x86-64-v3 (AVX2, FMA, F16C)", "generic"}
    if not os.environ.get("L2FAST_LOOPS16_LEVEL"):  # the 16-bit loops follow the CPU
        assert simd["loops16"].split()[0] == simd["dispatched"].split()[0] or (
            simd["loops16"] == "generic" and not simd["dispatched"].startswith("x86-64-v"))

    kernels = cfg["kernels"]
    assert kernels["parallel_min_size"] == _kernels.PARALLEL_MIN_SIZE
    assert kernels["chunk_elements"] >= 1024
    assert kernels["float64_lanes"] >= 1


def test_show_config_prints_what_it_returns(capsys):
    assert l2fast.show_config() is None
    out = capsys.readouterr().out
    cfg = l2fast.show_config(mode="dicts")
    assert "openmp_runtime:" in out and "simd:" in out
    assert f"  library: {cfg['openmp_runtime']['library']}" in out
    assert f"  cflags: {cfg['build']['cflags']}" in out
    with pytest.raises(ValueError, match="mode"):
        l2fast.show_config(mode="json")


def test_python_m_l2fast_prints_the_configuration(tmp_path):
    out = run_python("import runpy; runpy.run_module('l2fast', run_name='__main__')", tmp_path)
    assert f"l2fast: {l2fast.__version__}" in out
    assert f"  library: {CONFIG['openmp_runtime']['library']}" in out


@pytest.mark.skipif(os.environ.get("L2FAST_EXPECT_BUNDLED_OPENMP") != "1",
                    reason="set L2FAST_EXPECT_BUNDLED_OPENMP=1 for a wheel repaired by auditwheel")
def test_repaired_wheel_loads_its_own_openmp_runtime():
    library = Path(CONFIG["openmp_runtime"]["library"])
    site = Path(l2fast.__file__).resolve().parents[1]
    assert library.parent == site / "l2fast.libs"
    assert re.fullmatch(r"libgomp-[0-9a-f]{8}\.so(\.\d+)+", library.name), library.name
    assert CONFIG["openmp_runtime"]["version"] == library.name.split(".so.", 1)[1]


# ---------------------------------------------------------------------------
# threadpoolctl
# ---------------------------------------------------------------------------

@needs_openmp
def test_threadpoolctl_lists_l2fast_openmp_runtime():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    library = CONFIG["openmp_runtime"]["library"]
    found = [os.path.realpath(p["filepath"]) for p in threadpoolctl.threadpool_info()
             if p["user_api"] == "openmp"]
    if library is None:  # no dladdr to find it by (Windows): MSVC's vcomp
        assert any(os.path.basename(p).lower().startswith("vcomp") for p in found), found
    else:
        assert os.path.realpath(library) in found


@needs_openmp
@pytest.mark.parametrize("user_api", ["openmp", None])
def test_threadpool_limits_run_l2fast_on_one_thread(user_api):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    default = _kernels.max_threads()
    if default < 2:
        pytest.skip(f"the OpenMP default is {default} thread here")
    ws = large_list()
    expected = l2fast.sum_squares(ws)
    assert _kernels.last_team_size() == default
    assert expected == pytest.approx(exact_sum_squares(ws), rel=1e-13)
    with threadpoolctl.threadpool_limits(limits=1, user_api=user_api):
        assert _kernels.max_threads() == 1
        assert l2fast.sum_squares(ws) == expected  # bitwise: any thread count
        assert _kernels.last_team_size() == 1
        l2fast.scale_(ws, 0.5)
        assert _kernels.last_team_size() == 1
    assert _kernels.max_threads() == default
    assert l2fast.sum_squares(ws) == pytest.approx(expected / 4, rel=1e-15)
    assert _kernels.last_team_size() == default


# ---------------------------------------------------------------------------
# Small inputs stay on the calling thread
# ---------------------------------------------------------------------------

def wake_the_team():
    """Run a parallel call, so that a serial call after it changes last_team_size()."""
    l2fast.sum_squares(large_list(1), num_threads=2)
    assert _kernels.last_team_size() == (2 if OPENMP else 1)


def test_ten_arrays_of_ten_elements_run_serially():
    rng = np.random.default_rng(2)
    ws = [rng.standard_normal(10).astype(np.float32 if i % 2 else np.float64)
          for i in range(10)]
    gs = [np.ones(10, w.dtype) for w in ws]
    expected = exact_sum_squares(ws)
    expected_gs = [g.copy() for g in gs]
    reference.add_scaled_(expected_gs, ws, 2.0)

    wake_the_team()
    assert l2fast.sum_squares(ws, num_threads=2) == pytest.approx(expected, rel=1e-15)
    assert _kernels.last_team_size() == 1

    wake_the_team()
    l2fast.add_scaled_(gs, ws, 2.0, num_threads=2)
    assert _kernels.last_team_size() == 1
    for g, e in zip(gs, expected_gs):
        np.testing.assert_array_equal(g, e)

    wake_the_team()
    got = l2fast.sum_squares_scale_(ws, 3.0, num_threads=2)
    assert _kernels.last_team_size() == 1
    assert got == pytest.approx(expected, rel=1e-15)
    assert l2fast.sum_squares(ws) == pytest.approx(9 * expected, rel=1e-6)


@pytest.mark.parametrize("total, threaded", [
    (_kernels.PARALLEL_MIN_SIZE - 1, False),
    (_kernels.PARALLEL_MIN_SIZE, True),
])
def test_threads_start_at_parallel_min_size(total, threaded):
    ws = [np.full(total - 3, 0.5, np.float32), np.full(3, 2.0)]
    wake_the_team()
    assert l2fast.sum_squares(ws, num_threads=2) == (total - 3) * 0.25 + 12.0
    assert _kernels.last_team_size() == (2 if threaded and OPENMP else 1)


# ---------------------------------------------------------------------------
# torch and scikit-learn in the same process, imported in either order
# ---------------------------------------------------------------------------

IMPORT_ORDER_SCRIPT = """
import json, sys
{imports}
import numpy as np
import torch
from sklearn.cluster import KMeans
import l2fast
from l2fast import _kernels
from l2fast.reference import exact_sum_squares

rng = np.random.default_rng(0)
ws = [rng.standard_normal(n).astype(np.float32) for n in (150_000, 90_000, 65_536, 7)]
ref = exact_sum_squares(ws)
teams = []

def l2fast_call():
    got = l2fast.sum_squares(ws, num_threads=2)
    assert abs(got - ref) <= 1e-12 * ref, (got, ref)
    teams.append(_kernels.last_team_size())

l2fast_call()

# torch: a parallel matrix product, then l2fast on torch memory, in place
torch.set_num_threads(2)
a = torch.from_numpy(rng.standard_normal((300, 200)))
b = torch.from_numpy(rng.standard_normal((200, 100)))
assert np.allclose((a @ b).numpy(), a.numpy() @ b.numpy(), rtol=1e-12, atol=1e-12)
t = torch.from_numpy(rng.standard_normal(400_000).astype(np.float32))
before = t.double()
l2fast.scale_(t, 0.5, num_threads=2)
teams.append(_kernels.last_team_size())
assert torch.equal(t, (before * 0.5).float())

# scikit-learn: k-means runs OpenMP loops of its own
X = np.concatenate([rng.normal(0.0, 0.1, (400, 2)), rng.normal(5.0, 0.1, (400, 2))])
labels = KMeans(n_clusters=2, n_init=1, random_state=0).fit(X).labels_
assert len(set(labels[:400])) == 1 and len(set(labels[400:])) == 1
assert labels[0] != labels[400]

l2fast_call()
print(json.dumps({{"first_imported": [m for m in sys.modules if m in {order!r}],
                  "teams": teams}}))
"""


@pytest.mark.parametrize("order", [("l2fast", "torch", "sklearn"),
                                   ("sklearn", "torch", "l2fast")],
                         ids=["l2fast-first", "l2fast-last"])
def test_import_order_with_torch_and_sklearn(order, tmp_path):
    for name in ("torch", "sklearn"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed")
    imports = "\n".join(f"import {name}" for name in order)
    out = run_python(IMPORT_ORDER_SCRIPT.format(imports=imports, order=order), tmp_path)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["first_imported"] == list(order)
    assert result["teams"] == [2 if OPENMP else 1] * 3


# ---------------------------------------------------------------------------
# Objects NumPy can view without a copy
# ---------------------------------------------------------------------------

def test_buffer_protocol_objects():
    f32 = array.array("f", [1.5, -2.0, 3.0])
    f64 = array.array("d", [0.1, 0.2])
    ro = memoryview(np.array([3.0, 4.0]).tobytes()).cast("d")  # read-only
    assert l2fast.sum_squares([f32, f64, ro]) == pytest.approx(
        exact_sum_squares([[1.5, -2.0, 3.0], [0.1, 0.2], [3.0, 4.0]]), rel=1e-15)
    l2fast.scale_([f32, f64], 2.0)  # writeable buffers are updated in place
    assert f32.tolist() == [3.0, -4.0, 6.0]
    assert f64.tolist() == [0.2, 0.4]
    with pytest.raises(ValueError, match=r"arrays\[1\] is read-only"):
        l2fast.scale_([f64, ro], 2.0)
    assert f64.tolist() == [0.2, 0.4]
    with pytest.raises(TypeError, match=r"arrays\[0\]: dtype .*int"):
        l2fast.sum_squares([array.array("i", [1, 2])])


class DLPackOnly:
    """Exposes another object's memory through DLPack alone."""

    def __init__(self, inner, device=None):
        self._inner = inner
        self._device = device

    def __dlpack__(self, **kwargs):
        return self._inner.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device or self._inner.__dlpack_device__()


def test_dlpack_objects_are_viewed_not_copied():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    pl = l2fast.ParamList([DLPackOnly(a)])
    assert pl.arrays[0].ctypes.data == a.ctypes.data
    assert pl.sum_squares() == exact_sum_squares([a]) == 506.0
    l2fast.scale_([DLPackOnly(a)], 0.5)
    np.testing.assert_array_equal(a, np.arange(12, dtype=np.float32).reshape(3, 4) / 2)

    frozen = np.arange(3.0)
    frozen.flags.writeable = False
    assert l2fast.sum_squares([DLPackOnly(frozen)]) == 5.0
    with pytest.raises(ValueError, match=r"arrays\[0\] is read-only"):
        l2fast.scale_([DLPackOnly(frozen)], 2.0)


def test_dlpack_object_on_another_device_is_named():
    gpu = DLPackOnly(np.ones(3), device=(2, 0))  # kDLCUDA
    with pytest.raises(TypeError, match=r"arrays\['w'\]: .*DLPackOnly is on device 'cuda'"):
        l2fast.sum_squares({"w": gpu})


def test_array_interface_object_is_viewed():
    base = np.linspace(-1.0, 1.0, 9)

    class Exposed:
        __array_interface__ = base.__array_interface__

    pl = l2fast.ParamList([Exposed()])
    assert pl.arrays[0].ctypes.data == base.ctypes.data
    assert pl.sum_squares() == pytest.approx(exact_sum_squares([base]), rel=1e-15)


def test_object_that_needs_a_copy_is_refused():
    class CopiesOnly:
        def __array__(self, dtype=None, copy=None):
            if copy is False:
                raise ValueError("this object can only be copied")
            return np.ones(3)

    with pytest.raises(TypeError, match=r"arrays\[0\]: cannot use .*CopiesOnly without a copy"):
        l2fast.sum_squares([CopiesOnly()])
