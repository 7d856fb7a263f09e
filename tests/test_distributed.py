"""comm=: the sum over the ranks of mpi4py and torch.distributed (gloo), launched as
users launch them (mpirun, torchrun): the same bits on every rank, for every
world size and sharding, equal to the exact sum of all the values in one
process; every rank raises when one rank fails; no engine is imported for a
comm that is not its own.

Without mpirun/mpi4py or torch the launched tests skip, except where they are
expected: L2FAST_EXPECT_MPI=1 (.ci/run, which installs Open MPI and mpi4py) and
L2FAST_EXPECT_TORCH=1 (its wheel run, with torch) make them fail instead.
"""
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import l2fast
from l2fast import _distributed

HERE = Path(__file__).resolve().parent
WORKER = HERE / "distributed_worker.py"
EXAMPLE = HERE.parent / "examples" / "sharded_penalty.py"
EXPECT_MPI = os.environ.get("L2FAST_EXPECT_MPI") == "1"
EXPECT_TORCH = os.environ.get("L2FAST_EXPECT_TORCH") == "1"
TIMEOUT = 120

_spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def have_mpi():
    return shutil.which("mpirun") is not None and importlib.util.find_spec("mpi4py") is not None


def have_torch():
    return importlib.util.find_spec("torch") is not None


def require(what, present, expected, var):
    if not present:
        if expected:
            pytest.fail(f"{what} is missing but {var}=1 expects it (.ci/run installs it)")
        pytest.skip(f"{what} is not installed")


def require_mpi():
    require("mpirun or mpi4py", have_mpi(), EXPECT_MPI, "L2FAST_EXPECT_MPI")


def require_torch():
    require("torch", have_torch(), EXPECT_TORCH, "L2FAST_EXPECT_TORCH")


def launch(cmd, threads=None):
    """Run a launcher; the l2fast under test first on the ranks' path.  Kills the
    whole process group after TIMEOUT seconds: a hang is a failure, not a stall."""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1",
               PYTHONPATH=os.pathsep.join(filter(None, [
                   str(Path(l2fast.__file__).resolve().parents[1]),
                   os.environ.get("PYTHONPATH")])))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[:4]} did not finish in {TIMEOUT} s (a rank hung)\n{out}\n{err}")
    assert proc.returncode == 0, f"{cmd}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def mpirun(k, *args):
    return ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(k),
            sys.executable, *map(str, args)]


def torchrun(k, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(k), *map(str, args)]


@pytest.fixture(scope="module")
def oracle():
    return worker.oracle()


def ranks(out_dir, k):
    files = sorted(Path(out_dir).glob("rank*.json"))
    assert len(files) == k, files
    got = [json.loads(f.read_text()) for f in files]
    assert sorted(g["rank"] for g in got) == list(range(k))
    assert all(g["size"] == k for g in got)
    return [g["results"] for g in sorted(got, key=lambda g: g["rank"])]


def check(results, k, o):
    exact = o["exact"]
    assert o["sum"] == exact
    for key in results[0]:
        if not key.startswith(("fail/", "mine/")):
            assert len({json.dumps(r[key]) for r in results}) == 1, (key, [r[key] for r in results])
    r = results[0]
    # sums: every sharding, layout, dtype per rank and spelling of the comm
    for name in worker.SHARDINGS:
        for what in ("sum", "sum-dict", "flat", "paramlist"):
            assert r[f"{what}/{name}"] == exact, (what, name)
        assert r[f"partial/{name}"] == o["partial"], name
    # the fused call: the global sum before, each rank's own arrays scaled
    assert r["sum_scale"] == exact
    assert r["sum_scale/local_like_scale_"] is True
    assert r["sum_scale/after"] == o["sum_scale/after"]
    assert r["paramlist_scale"] == o["paramlist_scale"]
    assert r["paramlist_scale/partial"] == o["paramlist_scale/partial"]
    # L2: without multipliers the bits of the one-process L2
    for name in ("equal", "empty"):
        for key in ("plain",):
            assert r[f"penalty/{key}/{name}"] == o[f"penalty/{key}"].hex()
            assert r[f"penalty_decay/{key}/{name}"] == o[f"penalty_decay/{key}"].hex()
            assert r[f"decayed/{key}/{name}"] == o[f"decayed/{key}"]
        assert r[f"penalty/params/{name}"] == o["penalty/params"].hex()
        # with multipliers: 0.5 c sum mu ||w||^2 exact, rounded once
        for what in ("penalty", "penalty_decay"):
            got = float.fromhex(r[f"{what}/mult/{name}"])
            assert got == o["penalty/mult/exact"]
            assert got == pytest.approx(o[f"{what}/mult"], rel=1e-14)
        assert r[f"decayed/mult/{name}"] == o["decayed/mult"]
    # failures: the failing rank raises its own error, every other rank names it
    failed(results, "fail/dtype", k - 1, "TypeError")
    failed(results, "fail/readonly", 0, "ValueError", "already scaled")
    failed(results, "fail/finite", k // 2, "FloatingPointError")
    for res in results:
        assert res["fail/per_array"][0] == "ValueError"
        assert "per_array=True cannot be combined with comm" in res["fail/per_array"][1]
        assert res["fail/params_decay"][0] == "ValueError"
        if k > 1:
            assert res["fail/mismatch"][0] == "ValueError"
            assert "different l2fast calls" in res["fail/mismatch"][1]
        assert res["after_failures"] == exact


@pytest.fixture(scope="module")
def clip_oracle():
    return worker.clip_oracle()


def expected_shards(values, name, k):
    """Each rank's expected arrays: its pieces of values[dtype], float64 on odd ranks."""
    total = sum(a.size for a in values[np.float32])
    c = worker.cuts(name, k, total)
    return [worker.pieces(values[np.float64 if r % 2 else np.float32], c[r], c[r + 1])
            for r in range(k)]


def check_norms(results, k, co):
    """Global norms and clipping with comm: every rank has the exact norm of the
    whole (co: fractions / fsum, = the single-process reproducible value) and
    its own shard of the gradients clipped as the whole is in one process."""
    norm, r = co["norm"].hex(), results[0]
    for name in worker.SHARDINGS:
        for what in ("norm", "norm-dict", "norm-pl", "clip", "no-clip"):
            assert r[f"{what}/{name}"] == norm, (what, name)
        mine = expected_shards(co["clipped"], name, k)
        for rank, res in enumerate(results):
            assert res[f"mine/clip/{name}"] == worker.shard_digest(mine[rank]), (name, rank)
            assert res[f"mine/no-clip/{name}"] == worker.shard_digest(
                expected_shards(co["whole"], name, k)[rank]), (name, rank)
        after = worker.exact_square_sum([a for m in mine for a in m.values()])
        assert r[f"clip-again/{name}"] == math.sqrt(float(after)).hex(), name
        assert float.fromhex(r[f"clip-again/{name}"]) == pytest.approx(worker.CLIP, rel=1e-6)
    # non-finite norms: raised on every rank, or the same NaN / Inf everywhere
    for res in results:
        assert res["fail/clip-nan"][0] == "RuntimeError", res["fail/clip-nan"]
        assert "non-finite, so it cannot be clipped" in res["fail/clip-nan"][1]
        assert res["mine/clip-nan/unchanged"] and res["mine/failures/unchanged"]
    assert r["clip-nan"] == ["nan", True] and r["clip-inf"] == "inf"
    for rank, res in enumerate(results):  # scaled by 0: finite -> 0, inf -> nan
        assert res["mine/clip-inf"][-1] == ("nan" if rank == k - 1 else "0.0")
        assert all(res["mine/clip-inf"][:-1])
    # a refused input on one rank: every rank raises, nothing is written
    failed(results, "fail/clip-dtype", k - 1, "TypeError", "clip_grad_norm_(comm=...)")
    failed(results, "fail/clip-readonly", 0, "ValueError", "clip_grad_norm_(comm=...)")
    failed(results, "fail/clip-max_norm", 0, "ValueError")
    failed(results, "fail/clip-norm-dtype", k - 1, "TypeError", "global_norm(comm=...)")
    for res in results:
        assert "already scaled" not in res["fail/clip-readonly"][1]
        if k > 1:
            assert res["fail/clip-args"][0] == "ValueError"
            assert "different arguments (max_norm, eps)" in res["fail/clip-args"][1]
            assert res["fail/clip-mismatch"][0] == "ValueError"
            assert "different l2fast calls" in res["fail/clip-mismatch"][1]
    assert r["clip/after_failures"] == norm
    if r["torch"]:
        check_torch(results, k, co)


def check_torch(results, k, co):
    """l2fast.torch with comm: the same 0-d tensor on every rank, of the dtype
    promoted over the ranks' gradients, and each rank's shard clipped."""
    r = results[0]
    for name in ("equal", "empty", "one"):
        c = worker.cuts(name, k, sum(a.size for a in co["whole"][np.float32]))
        held = {"float64" if rank % 2 else "float32" for rank in range(k)
                if c[rank] < c[rank + 1]}
        dt = f"torch.{'float64' if 'float64' in held else 'float32'}"
        rounded = (float if dt == "torch.float64" else np.float32)(co["norm"])
        for what in ("t-norm", "t-clip"):
            assert r[f"{what}/{name}"] == [dt, float(rounded).hex()], (what, name)
        for what in ("t-inf", "t-clip-inf"):
            assert r[f"{what}/{name}"] == [dt, co["inf"].hex()], (what, name)
        for what, values in (("t-clip", "clipped"), ("t-clip-inf", "clipped-inf")):
            mine = expected_shards(co[values], name, k)
            for rank, res in enumerate(results):
                assert res[f"mine/{what}/{name}"] == worker.shard_digest(mine[rank]), \
                    (what, name, rank)
    for res in results:
        for key in ("fail/t-nan/2.0", "fail/t-nan/inf", "fail/t-total-nan"):
            assert res[key][0] == "RuntimeError", (key, res[key])
            assert "is non-finite, so it cannot be clipped" in res[key][1], res[key]
        assert res["mine/t-failures/unchanged"]
        if k > 1:
            assert res["fail/t-inf-vs-2"][0] == "ValueError"
            assert "different l2fast calls" in res["fail/t-inf-vs-2"][1]
    failed(results, "fail/t-order", 0, "NotImplementedError", counted_as="another exception")
    failed(results, "fail/t-device", k - 1, "TypeError", "get_total_norm(comm=...)")
    assert r["t/after_failures"] == ["torch.float64" if k > 1 else "torch.float32",
                                     float((float if k > 1 else np.float32)(co["norm"])).hex()]


def failed(results, key, bad_rank, own, *words, counted_as=None):
    """The failing rank raised `own`; every other rank a RuntimeError naming it
    (and its exception type, or `counted_as`)."""
    k = len(results)
    for rank, res in enumerate(results):
        kind, msg = res[key]
        if rank == bad_rank:
            assert kind == own, (key, rank, msg)
        else:
            assert kind == "RuntimeError", (key, rank, msg)
            assert f"rank {bad_rank} of {k} failed ({counted_as or own}" in msg, (key, msg)
            assert all(w in msg for w in words), msg


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_mpi_ranks_get_the_exact_sum(k, tmp_path, oracle, clip_oracle):
    require_mpi()
    launch(mpirun(k, WORKER, "--engine", "mpi", "--out", tmp_path),
           threads=1 if k > 2 else None)
    results = ranks(tmp_path, k)
    check(results, k, oracle)
    check_norms(results, k, clip_oracle)


@pytest.mark.parametrize("k", [2, 3])
def test_torch_gloo_ranks_get_the_exact_sum(k, tmp_path, oracle, clip_oracle):
    require_torch()
    launch(torchrun(k, WORKER, "--engine", "torch", "--out", tmp_path), threads=1)
    results = ranks(tmp_path, k)
    check(results, k, oracle)
    check_norms(results, k, clip_oracle)
    assert results[0]["torch"]


LINE = re.compile(r"^(rank \d+/\d+|unsharded) (step \d+: penalty|after \d+ steps: sum of "
                  r"squares) (\S+)", re.M)


def example_values(out):
    """{(step label): {who: hex}} from sharded_penalty.py's output."""
    table = {}
    for who, what, value in LINE.findall(out):
        table.setdefault(what, {})[who] = value
    return table


def test_example_same_bits_for_every_world_size():
    """examples/sharded_penalty.py at 1 and 3 MPI ranks and 2 gloo ranks (when torch
    is installed): every rank prints the bits of the unsharded run."""
    require_mpi()
    args = [EXAMPLE, "--model", "resnet50", "--steps", "2"]
    runs = {f"mpi {k}": launch(mpirun(k, *args, *([] if k == 1 else ["--no-check"])),
                               threads=1 if k > 2 else None)
            for k in (1, 3)}
    if have_torch() or EXPECT_TORCH:
        runs["gloo 2"] = launch(torchrun(2, *args, "--backend", "gloo", "--no-check"),
                                threads=1)
    tables = {name: example_values(out) for name, out in runs.items()}
    reference = tables["mpi 1"]
    assert len(reference) == 3 and all("unsharded" in v for v in reference.values())
    for what, got in reference.items():
        expected = got["unsharded"]
        for name, table in tables.items():
            k = int(name.split()[1])
            assert {f"rank {r}/{k}" for r in range(k)} <= set(table[what]), (name, what)
            assert set(table[what].values()) == {expected}, (name, what, table[what])


# ---------------------------------------------------------------------------
# In one process: the comm is recognised without importing what it is not
# ---------------------------------------------------------------------------

x = np.arange(10, dtype=np.float32)


@pytest.mark.parametrize("comm", [object(), 3, np.int64(1), [1]])
def test_wrong_comm_type(comm):
    for call in (lambda: l2fast.sum_squares(x, comm=comm),
                 lambda: l2fast.sum_squares_scale_(x.copy(), 1.0, comm=comm),
                 lambda: l2fast.ParamList([x]).sum_squares(comm=comm),
                 lambda: l2fast.L2(1.0, "none").penalty([x], comm=comm),
                 lambda: l2fast.global_norm(x, comm=comm),
                 lambda: l2fast.clip_grad_norm_(x.copy(), 1.0, comm=comm)):
        with pytest.raises(TypeError, match="mpi4py communicator .* torch.distributed"):
            call()


def test_unknown_comm_string():
    with pytest.raises(ValueError, match="'nccl' is not known"):
        l2fast.sum_squares(x, comm="nccl")


def test_missing_engine_is_an_import_error_naming_the_package(monkeypatch):
    arr = x.copy()
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match="pip install mpi4py"):
        l2fast.sum_squares(x, comm="mpi")
    fake = type("Intracomm", (), {"__module__": "mpi4py.MPI"})  # a package not importable
    with pytest.raises(ImportError, match="pip install mpi4py"):
        l2fast.sum_squares_scale_(arr, 2.0, comm=fake())
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "torch.distributed", None)
    with pytest.raises(ImportError, match="pip install torch"):
        l2fast.L2(1.0, "none").penalty_decay_([arr], 0.5, comm="torch")
    fake = type("ProcessGroup", (), {"__module__": "torch.distributed.distributed_c10d"})
    with pytest.raises(ImportError, match="pip install torch"):
        l2fast.ParamList([arr]).sum_squares_scale_(2.0, comm=fake())
    with pytest.raises(ImportError, match="pip install torch"):
        l2fast.ParamList([arr]).clip_grad_norm_(1.0, comm=fake())
    assert np.array_equal(arr, x)  # nothing was scaled


def test_no_engine_imported_for_a_local_call():
    code = ("import sys, numpy as np, l2fast\n"
            "l2fast.sum_squares([np.ones(3)]); l2fast.L2(1.0, 'none').penalty([np.ones(3)])\n"
            "print(sorted(m for m in ('mpi4py', 'torch') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=str(
                             Path(l2fast.__file__).resolve().parents[1])))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_weighted_sum_is_exact_and_rounded_once():
    """The words of sum mu_i ||w_i||^2 (the L2 with multipliers): added as int64
    vectors, they round to the exactly rounded weighted sum."""
    from fractions import Fraction

    rng = np.random.default_rng(5)
    parts, exact = [], Fraction(0)
    for mu in (0.5, 2.0, 1.0, 0.1, 2.0 ** -100, 3.0 * 2.0 ** 98, 1e-7):
        a = (rng.standard_normal(50) * 10.0 ** rng.uniform(-30, 30, 50))
        s = l2fast.sum_squares(a, partial=True)
        parts.append((mu, s))
        exact += Fraction(mu) * worker.exact_sum(a)
    summed = sum(_distributed._data_of_weighted(parts[i::3]) for i in range(3))
    assert _distributed._weighted_value(summed) == float(exact)
    nan = l2fast.sum_squares(np.array([np.nan]), partial=True)
    inf = l2fast.sum_squares(np.array([np.inf]), partial=True)
    assert _distributed._weighted_value(_distributed._data_of_weighted([(2.0, inf)])) == np.inf
    assert np.isnan(_distributed._weighted_value(
        _distributed._data_of_weighted([(2.0, inf), (1.0, nan)])))
    big = l2fast.sum_squares(np.array([1e150]), partial=True)  # finite; times 2^100 is not
    assert _distributed._weighted_value(_distributed._data_of_weighted([(2.0 ** 100, big)])) \
        == np.inf
    with pytest.raises(ValueError, match=r"within \[2\^-100, 2\^100\]"):
        _distributed._data_of_weighted([(1e-40, big)])


def test_max_over_ranks_orders_float64_bits_as_values():
    """The inf-norm's MAX all-reduce runs over the float64 bits as int64: for
    non-negative values the largest int64 is the largest value (zero and
    subnormals included), and a NaN of either sign is sent as a positive NaN,
    above +inf."""
    values = [0.0, 5e-324, 2.2e-308, 1e-300, 0.5, 1.0, 3.0, 1e300, math.inf]
    rng = np.random.default_rng(3)
    for _ in range(200):
        picked = rng.choice(values, size=rng.integers(1, 5)).tolist()
        bits = [int(np.array([v]).view(np.int64)[0]) for v in picked]
        assert np.array([max(bits)]).view(np.float64)[0] == max(picked)
    sent = []
    fake = _distributed.Engine("fake", 0, 1, lambda v, op: sent.append((v.copy(), op)) or v)
    inf_bits = int(np.array([math.inf]).view(np.int64)[0])
    for value in (2.5, math.inf, math.nan, -math.nan):
        got = _distributed._max_over_ranks(fake, value)
        assert got == value or (math.isnan(got) and math.isnan(value))
        assert sent[-1][1] == "max" and (sent[-1][0][0] > inf_bits) == math.isnan(value)


def test_torch_default_group_needs_init():
    if not have_torch():
        pytest.skip("torch is not installed")
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable, or initialised by another test")
    with pytest.raises(RuntimeError, match="init_process_group first"):
        l2fast.sum_squares(x, comm="torch")
    assert dist.group.WORLD is None  # before init: comm=dist.group.WORLD is a local call
