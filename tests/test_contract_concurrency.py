"""The input contract, concurrency: Python threads and fork.

Kernels release the GIL, so Python threads calling l2fast on distinct lists
run at once; every result is bitwise what a single thread gets.  A process
forked (os.fork, or multiprocessing's "fork" start method) after a parallel
call runs its kernels on the calling thread (GNU libgomp's thread pool does
not survive fork) and finishes; the parent keeps its threads.

The fork tests run in a fresh interpreter under a 60 s timeout, so a hang
fails the test instead of blocking the suite.

See docs/contract.md.
"""
import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import l2fast
from l2fast import _kernels

N_THREADS = 8


def _lists(seed):
    """A list of ~330,000 elements (so each call uses an OpenMP team) of
    mixed dtypes and layouts, its src, and its float64 copy."""
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((300, 1000)).astype(np.float32),
          rng.standard_normal(30_000)[::-1].copy()[::2],
          np.asfortranarray(rng.standard_normal((20, 50)).astype(np.float32))]
    src = [rng.standard_normal(w.shape).astype(np.float32) for w in ws]
    return ws, src


def _work(ws, src, rounds):
    """The calls a training step makes; returns every result and the final arrays."""
    out = []
    for _ in range(rounds):
        out.append(l2fast.sum_squares(ws))
        out.append(l2fast.sum_squares(ws, per_array=True).tobytes())
        l2fast.add_scaled_(ws, src, 1e-3)
        out.append(l2fast.sum_squares_scale_(ws, 0.999))
        l2fast.scale_(ws, 1.0001)
        pl = l2fast.ParamList(ws)
        out.append(pl.sum_squares())
        pl.add_scaled_(src, -1e-3)
    return out, [w.tobytes() for w in ws]


def test_eight_threads_on_distinct_lists_match_one_thread_bitwise():
    rounds = 5
    expected = [_work(*_lists(seed), rounds) for seed in range(N_THREADS)]
    inputs = [_lists(seed) for seed in range(N_THREADS)]
    results = [None] * N_THREADS
    errors = []
    barrier = threading.Barrier(N_THREADS)

    def run(k):
        try:
            barrier.wait()
            results[k] = _work(*inputs[k], rounds)
        except BaseException as e:    # reported below, with its thread
            errors.append((k, e))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    assert not errors, errors
    for k in range(N_THREADS):
        assert results[k] == expected[k], f"thread {k}"


def test_threads_with_explicit_team_sizes_match_bitwise():
    ws, _ = _lists(99)
    reference = l2fast.sum_squares(ws, num_threads=1, per_array=True)
    got = [None] * N_THREADS

    def run(k):
        got[k] = l2fast.sum_squares(ws, num_threads=1 + k % 3, per_array=True)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for g in got:
        assert g.tobytes() == reference.tobytes()


def test_kernels_release_the_gil():
    """While scale_ walks 40 arrays in order on one thread, another Python
    thread sees some arrays already scaled and others not: it ran during the
    kernel, which it could not do if the kernel held the GIL."""
    ws = [np.ones(1 << 20, np.float32) for _ in range(40)]
    seen_midway = threading.Event()
    go, stop = threading.Event(), threading.Event()

    def watch():
        go.wait()
        while not stop.is_set():
            if ws[0][0] != 1.0 and ws[-1][-1] == 1.0:
                seen_midway.set()
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for attempt in range(20):
            go.set()
            l2fast.scale_(ws, 0.5 if attempt % 2 == 0 else 2.0, num_threads=1)
            if seen_midway.is_set():
                break
    finally:
        stop.set()
        watcher.join()
    assert seen_midway.is_set()


# ---------------------------------------------------------------------------
# fork
# ---------------------------------------------------------------------------

PARENT = """
import json, os, sys
import numpy as np
import l2fast
from l2fast import _kernels, reference

rng = np.random.default_rng(0)
ws = [rng.standard_normal(300_000), rng.standard_normal((400, 500)).astype(np.float32)]
ref = l2fast.sum_squares(ws, num_threads=1)
assert l2fast.sum_squares(ws, num_threads=2) == ref
parent_team = _kernels.last_team_size()      # 2: the pool of libgomp now exists


def child_work(_=None):
    # Runs in a forked child: asks for 2 threads, must finish, serially.
    out = {"in_fork_child": _kernels.in_fork_child()}
    out["sum_ok"] = l2fast.sum_squares(ws, num_threads=2) == ref
    out["team"] = _kernels.last_team_size()
    copies = [w.copy() for w in ws]
    out["fused_ok"] = l2fast.sum_squares_scale_(copies, 0.5, num_threads=2) == ref
    expected = [w.copy() for w in ws]
    reference.scale_(expected, 0.5)
    out["scaled_ok"] = all(np.array_equal(c, e) for c, e in zip(copies, expected))
    l2fast.add_scaled_(copies, ws, 1.0)
    reference.add_scaled_(expected, ws, 1.0)
    out["add_ok"] = l2fast.sum_squares(copies) == l2fast.sum_squares(expected)
    return out
"""

OS_FORK = PARENT + """
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    try:
        payload = json.dumps(child_work()).encode()
    except BaseException as e:
        payload = json.dumps({"error": repr(e)}).encode()
    os.write(w, payload)
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 1 << 16).decode())
_, status = os.waitpid(pid, 0)
after = l2fast.sum_squares(ws, num_threads=2) == ref
print(json.dumps({"parent_team": parent_team, "child": [child], "status": status,
                  "parent_after_ok": after, "parent_team_after": _kernels.last_team_size(),
                  "parent_in_fork_child": _kernels.in_fork_child()}))
"""

MP_FORK = PARENT + """
import multiprocessing as mp
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        children = pool.map(child_work, range(4))
    p = ctx.Process(target=child_work)
    p.start()
    p.join(50)
    after = l2fast.sum_squares(ws, num_threads=2) == ref
    print(json.dumps({"parent_team": parent_team, "child": children, "status": p.exitcode,
                      "parent_after_ok": after,
                      "parent_team_after": _kernels.last_team_size(),
                      "parent_in_fork_child": _kernels.in_fork_child()}))
"""


def _run_with_timeout(script):
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the forked child (or its parent) hung for 60 s")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
@pytest.mark.parametrize("script", [OS_FORK, MP_FORK], ids=["os.fork", "multiprocessing fork"])
def test_forked_child_after_a_parallel_call_finishes(script):
    if not _kernels.build_info()["openmp"]:
        pytest.skip("built without OpenMP: nothing runs in parallel")
    out = _run_with_timeout(script)
    assert out["parent_team"] == 2                 # the parent really ran a team
    assert out["status"] == 0
    for child in out["child"]:
        assert child == {"in_fork_child": True, "sum_ok": True, "team": 1,
                         "fused_ok": True, "scaled_ok": True, "add_ok": True}
    assert out["parent_after_ok"] and out["parent_team_after"] == 2
    assert out["parent_in_fork_child"] is False
