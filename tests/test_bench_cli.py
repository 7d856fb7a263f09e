"""`python -m l2fast bench`: the JSON report, the plot, and the argument checks.

The benchmark runs on a small shape file with a small roof buffer, so these
tests take seconds; they check the structure and the consistency of the
figures, never the speed."""
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import l2fast
from l2fast.bench import cli as bench
from l2fast.bench.timing import time_interleaved

SHAPES = {
    "name": "tiny",
    "params": [
        {"name": "fc.weight", "shape": [300, 500], "kind": "weight"},
        {"name": "fc.bias", "shape": [500], "kind": "bias"},
        {"name": "conv.weight", "shape": [64, 3, 3, 3]},
        {"shape": [7]},
    ],
}
N = 300 * 500 + 500 + 64 * 27 + 7
FUNCTIONS = ["sum_squares", "scale_", "add_scaled_", "sum_squares_scale_"]
PASSES = {"sum_squares": 1, "scale_": 2, "add_scaled_": 3, "sum_squares_scale_": 2}


def bench_env(**extra):
    """The environment of a ``python -m l2fast bench`` run of this l2fast (a
    source checkout is put first on PYTHONPATH: the run's working directory
    is elsewhere, and another checkout may be installed in editable mode)."""
    env = dict(os.environ, **extra)
    package = Path(l2fast.__file__).resolve().parent
    if "site-packages" not in package.parts and "dist-packages" not in package.parts:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package.parent),
                                                          env.get("PYTHONPATH")]))
    return env


def png_size(path):
    """(width, height) from a PNG's IHDR chunk, after checking the signature and CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(kind + body)
    return struct.unpack(">II", body[:8])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Run the benchmark once, as a user would: (json report, stdout, tmp dir)."""
    tmp = tmp_path_factory.mktemp("bench")
    (tmp / "tiny.json").write_text(json.dumps(SHAPES))
    args = [sys.executable, "-m", "l2fast", "bench", "--shapes", "tiny.json",
            "--repeat", "2", "--threads", "1,2", "--json", "out.json"]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", "out.png"]
    except ImportError:
        pass
    env = bench_env(L2FAST_BENCH_ROOF_MIB="8")
    proc = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""          # no progress bar when stderr is not a terminal
    return json.loads((tmp / "out.json").read_text()), proc.stdout, tmp


def test_report_structure(report):
    rep, _, _ = report
    assert rep["settings"]["threads"] == [1, 2]
    assert rep["settings"]["repeat"] == 2
    assert rep["settings"]["roof_buffer_bytes"] == 8 << 20
    assert rep["settings"]["models"] == ["tiny"]
    assert rep["machine"]["logical_cpus"] >= 1
    assert rep["machine"]["l2fast_config"]["l2fast"] == rep["l2fast"]
    busy = rep["machine"]["other_processes_cpu_share"]
    assert busy is None or 0 <= busy <= 1
    assert [r["threads"] for r in rep["runs"]] == [1, 2]
    assert [r["threads"] for r in rep["small_arrays"]] == [1, 2]
    assert rep["dtype_shares"] == []  # float32 alone: no 16-bit share table
    for run in rep["runs"]:
        assert run["model"] == "tiny" and run["dtype"] == "float32"
        assert run["n_arrays"] == 4 and run["n_elements"] == N
        assert run["nbytes"] == 4 * N
        functions = [r["function"] for r in run["results"]]
        assert list(dict.fromkeys(functions)) == FUNCTIONS
        for fn in FUNCTIONS:
            families = {r["family"] for r in run["results"] if r["function"] == fn}
            assert {"l2fast", "numpy"} <= families
            assert ("torch" in families) == (rep["settings"]["torch"] is not None)


def test_roof(report):
    rep, _, _ = report
    assert [e["threads"] for e in rep["roof"]] == [1, 2]
    for entry in rep["roof"]:
        assert entry["buffer_bytes"] == 8 << 20
        for pattern in ("read", "update", "add"):
            roof = entry[pattern]
            assert roof["gbps"] > 0
            assert roof["gbps"] == max(roof["candidates"].values())
            assert roof["by"] in roof["candidates"]


def test_figures_are_consistent(report):
    rep, _, _ = report
    for run in rep["runs"]:
        roof = next(e for e in rep["roof"] if e["threads"] == run["threads"])
        for r in run["results"]:
            assert r["bytes"] == PASSES[r["function"]] * 4 * N
            assert r["footprint_bytes"] == (2 if r["function"] == "add_scaled_" else 1) * 4 * N
            assert len(r["samples_s"]) == 2
            assert r["median_s"] == pytest.approx(sum(r["samples_s"]) / 2)
            assert r["gbps"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9)
            assert r["roof_share"] == pytest.approx(r["gbps"] / roof[r["roof_pattern"]]["gbps"])
            assert r["speedup"] > 0
            numpy = [x for x in run["results"]
                     if x["function"] == r["function"] and x["family"] == "numpy"]
            assert r["speedup"] == pytest.approx(numpy[0]["median_s"] / r["median_s"])
            assert set(r["speedup_over"]) == {x["implementation"] for x in numpy}


def test_relative_errors(report):
    rep, _, _ = report
    for run in rep["runs"] + rep["small_arrays"]:
        assert run["exact_sum_squares"] > 0
        for r in run["results"]:
            if r["function"] in ("sum_squares", "sum_squares_scale_"):
                if r["family"] == "l2fast":
                    assert 0 <= r["rel_error"] <= 1e-12
                else:           # float32 loops: rounding, but no gross error
                    assert 0 <= r["rel_error"] < 1e-3
            else:
                assert r["rel_error"] is None


def test_small_arrays(report):
    rep, _, _ = report
    for run in rep["small_arrays"]:
        assert run["n_arrays"] == 1000 and run["n_elements"] == 64_000
        labels = [r["implementation"] for r in run["results"]]
        assert "l2fast ParamList.sum_squares()" in labels
        assert "l2fast.sum_squares(list)" in labels
        assert all(r["function"] == "sum_squares" for r in run["results"])
        # a call is short, so each sample averages many calls
        assert max(r["calls_per_sample"] for r in run["results"]) > 1


CLIP_ROWS = {
    "global_norm": ["l2fast.global_norm(tensors)", "l2fast.torch.get_total_norm",
                    "torch.nn.utils.get_total_norm", "torch._foreach_norm, norm of norms"],
    "clip_grad_norm_": ["l2fast.clip_grad_norm_(grads)", "l2fast.torch.clip_grad_norm_(params)",
                        "torch clip_grad_norm_(foreach=True)",
                        "torch clip_grad_norm_(foreach=False)"],
}


def test_clipping(report):
    """With torch: the model and 2,000 tensors of 64 x 32, each thread count;
    global_norm and clip_grad_norm_ beside torch's, "× torch" against the
    first torch row; l2fast's float64 norms exact to 1e-12, the 0-d tensors
    of l2fast.torch and torch's to float32 rounding."""
    rep, out, _ = report
    if rep["settings"]["torch"] is None:
        assert rep["clipping"] == []
        return
    runs = rep["clipping"]
    assert [(r["model"], r["threads"], r["small"]) for r in runs] == [
        ("tiny", 1, False), ("tiny", 2, False), ("2000 x 64x32", 1, True),
        ("2000 x 64x32", 2, True)]
    for run in runs:
        size = 2000 * 64 * 32 if run["small"] else N
        assert run["n_elements"] == size
        for fn, labels in CLIP_ROWS.items():
            rows = [r for r in run["results"] if r["function"] == fn]
            assert [r["implementation"] for r in rows] == labels
            torch_rows = [r for r in rows if r["family"] == "torch"]
            for r in rows:
                assert r["bytes"] == (1 if fn == "global_norm" else 3) * 4 * size
                assert r["speedup"] == pytest.approx(torch_rows[0]["median_s"] / r["median_s"])
                assert 0 <= r["rel_error"] <= (1e-12 if r["family"] == "l2fast" else 1e-6)
                if not run["small"]:
                    assert r["roof_share"] > 0
    assert "× torch" in out and "2000 x 64x32 · float32 · 2,000 arrays" in out


def test_table_printed(report):
    rep, out, _ = report
    assert "Memory roof, GB/s" in out
    for fn in FUNCTIONS:
        assert fn in out
    assert "tiny · float32 · 4 arrays, 152,235 elements" in out
    if rep["machine"]["last_level_cache_bytes"]:
        assert all(run["fits_in_cache"] for run in rep["runs"])
        assert "smaller than the last-level cache" in out


def test_plot_is_an_image(report):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    _, _, tmp = report
    # one 640 x 400 panel per thread count, one row per model, a 40-pixel legend
    assert png_size(tmp / "out.png") == (2 * 640, 400 + 40)
    pixels = matplotlib.image.imread(tmp / "out.png")
    assert pixels.shape[:2] == (440, 1280)
    assert pixels.std() > 0.05        # not a blank canvas


def test_plot_without_matplotlib(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # makes the import fail
    status = bench.main(["--plot", str(tmp_path / "x.png")])
    assert status == 2
    assert "matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--shapes", "missing.json"], "missing.json"),
    (["--repeat", "0"], "--repeat"),
    (["--roof-mib", "0"], "roof buffer"),
])
def test_bad_arguments(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bench.main(args) == 2
    assert message in capsys.readouterr().err


def test_bad_shape_file(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"params": [{"name": "w", "shape": [3, -1]}]}))
    assert bench.main(["--shapes", str(path)]) == 2
    assert "params[0]" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0", "1,x", ""])
def test_bad_thread_list(text):
    with pytest.raises(SystemExit):
        bench.main(["--threads", text])


def test_torch_model(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    (tmp_path / "tinynet.py").write_text(
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Linear(20, 10))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out.json"
    status = bench.main(["--torch-model", "tinynet:build", "--repeat", "1", "--threads", "1",
                         "--roof-mib", "4", "--no-small", "--json", str(out)])
    assert status == 0
    rep = json.loads(out.read_text())
    (run,) = rep["runs"]
    assert run["model"] == "build"
    assert run["n_arrays"] == 4
    assert run["n_elements"] == 30 * 20 + 20 + 20 * 10 + 10
    assert "build · float32 · 4 arrays" in capsys.readouterr().out


def test_model_choices():
    with pytest.raises(SystemExit):
        bench.main(["--model", "vgg16"])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16bit_dtypes(dtype, tmp_path):
    """--dtype float16/bfloat16: every implementation runs; l2fast's sums are
    exact, the float32-cast NumPy loop and torch's 16-bit norm are not worse
    than 16-bit rounding."""
    pytest.importorskip("ml_dtypes")
    (tmp_path / "tiny.json").write_text(json.dumps(SHAPES))
    args = [sys.executable, "-m", "l2fast", "bench", "--shapes", "tiny.json", "--dtype", dtype,
            "--repeat", "1", "--no-small", "--json", "out.json"]
    env = bench_env(L2FAST_BENCH_ROOF_MIB="8")
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "out.json").read_text())
    assert rep["dtype_shares"] == []  # no float32 to compare with
    (run,) = rep["runs"]
    assert run["dtype"] == dtype
    assert {r["function"] for r in run["results"]} == set(FUNCTIONS)
    for r in run["results"]:
        if r["function"] in ("sum_squares", "sum_squares_scale_"):
            assert 0 <= r["rel_error"] <= (1e-12 if r["family"] == "l2fast" else 1e-2)
        assert r["bytes"] == PASSES[r["function"]] * N * 2


def test_16bit_share_of_float32_in_one_run(tmp_path):
    """--dtype float32,bfloat16,float16: besides each dtype's section, one
    table per thread count times l2fast's sum_squares and scale_ in every
    dtype alternately and gives each row's GB/s as a share of float32's."""
    pytest.importorskip("ml_dtypes")
    (tmp_path / "tiny.json").write_text(json.dumps(SHAPES))
    args = [sys.executable, "-m", "l2fast", "bench", "--shapes", "tiny.json", "--dtype",
            "float32,bfloat16,float16", "--repeat", "1", "--threads", "1,2", "--no-small",
            "--no-clip", "--no-torch", "--json", "out.json"]
    proc = subprocess.run(args, cwd=tmp_path, env=bench_env(L2FAST_BENCH_ROOF_MIB="8"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    shares = json.loads((tmp_path / "out.json").read_text())["dtype_shares"]
    assert [(e["model"], e["threads"], e["rounds"]) for e in shares] == [("tiny", 1, 3),
                                                                        ("tiny", 2, 3)]
    for e in shares:
        assert [(r["function"], r["dtype"]) for r in e["rows"]] == [
            (f, d) for f in ("sum_squares", "scale_") for d in ("float32", "bfloat16", "float16")]
        for r in e["rows"]:
            size = 4 if r["dtype"] == "float32" else 2
            moved = N * size * (1 if r["function"] == "sum_squares" else 2)
            assert r["gbps"] == pytest.approx(moved / r["median_s"] / 1e9)
            base = next(b for b in e["rows"] if b["function"] == r["function"])
            assert r["share_of_float32"] == pytest.approx(r["gbps"] / base["gbps"])
    assert proc.stdout.count("16-bit against float32, timed alternately in one run") == 2


def test_under_load(tmp_path):
    """--under-load starts its busy process, times both models quiet and
    loaded, prints the table, writes the JSON, and leaves no process behind."""
    (tmp_path / "tiny.json").write_text(json.dumps(SHAPES))
    args = [sys.executable, "-m", "l2fast", "bench", "--under-load", "--shapes", "tiny.json",
            "--repeat", "1", "--json", "load.json"]
    proc = subprocess.run(args, cwd=tmp_path, env=bench_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "load.json").read_text())
    entries = rep["under_load"]
    assert [e["model"] for e in entries] == ["resnet50 / 3", "tiny"]
    assert entries[1]["size"] == N
    for e in entries:
        for state in ("quiet", "loaded"):
            assert sorted(e[state]) == sorted(FUNCTIONS)
            assert all(t > 0 for pair in e[state].values() for t in pair)
    for f in FUNCTIONS:
        assert sum(line.startswith(f + " ") for line in proc.stdout.splitlines()) == 2
    assert "busy process: l2fast.sum_squares" in proc.stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not any("l2fast.sum_squares(a)" in line for line in ps.splitlines())


def test_settle_pauses_follow_samples_untimed():
    """time_interleaved's settle: the pause follows each sample of its run
    when the calls are long (one a sample), then one untimed call of the
    next run (the first run's too, after the last run's sample); neither is
    in any median.  Short calls go without."""
    log = []
    runs = [lambda: log.append(("a", time.perf_counter())),
            lambda: log.append(("b", time.perf_counter()))]
    medians, samples, calls = time_interleaved(runs, 3, min_sample=0, settle=[0.1, 0.0])
    assert calls == [1, 1] and [len(s) for s in samples] == [3, 3]
    assert max(medians) < 0.05
    timed = log[4:]  # after the warm-up and estimate calls
    assert [name for name, _ in timed] == ["a", "b", "b"] * 3
    assert min(timed[i + 1][1] - timed[i][1] for i in (0, 3, 6)) >= 0.1
    log.clear()  # the pause after the last run comes before the next round's first
    time_interleaved(runs, 3, min_sample=0, settle=[0.0, 0.1])
    assert [name for name, _ in log[4:]] == ["a", "a", "b"] * 3
    stamps = [t for _, t in log[4:]]
    assert min(stamps[3] - stamps[2], stamps[6] - stamps[5]) >= 0.1
    log.clear()  # short calls (several a sample): no pause (a long one, so
    time_interleaved(runs, 3, min_sample=20e-3, settle=[0.5, 0.0])  # that a
    stamps = [t for _, t in log]  # busy machine's hiccup is not taken for it)
    assert max(b - a for a, b in zip(stamps, stamps[1:])) < 0.4
