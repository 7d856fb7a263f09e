"""One rank of tests/test_distributed.py, launched as users launch l2fast:

    mpirun -n K python tests/distributed_worker.py --engine mpi --out DIR
    torchrun --standalone --nproc_per_node K tests/distributed_worker.py --engine torch --out DIR

Every rank holds its shards of the same global values (`global_arrays`) cut
at the points of `cuts`, makes the calls of `run` (sums, L2), `run_norms` and
`run_clip_failures` (global norms and clipping) and, when torch is installed,
`run_torch` (l2fast.torch) with comm=, and writes what it got (floats as
hex, states and its own clipped arrays as digests, errors as type and
message) to DIR/rank<r>.json.  The test compares the ranks, `oracle` (the
same calls on the unsharded values in one process, without comm) and
`clip_oracle` (the exact norms and the clipped values from references that
do not use l2fast).  Only numpy, l2fast, the engine and (if present) torch
are imported: it runs against an installed l2fast.
"""
import argparse
import hashlib
import json
import math
import os
import sys
from fractions import Fraction

import numpy as np

import l2fast
import l2fast.reference

SHAPES = [("wte.weight", (500, 64)), ("wpe.weight", (128, 64)),
          ("h.0.ln_1.weight", (64,)), ("h.0.ln_1.bias", (64,)),
          ("h.0.attn.c_attn.weight", (64, 192)), ("h.0.attn.c_attn.bias", (192,)),
          ("h.0.mlp.c_fc.weight", (64, 256)), ("h.0.mlp.c_fc.bias", (256,)),
          ("h.0.mlp.c_proj.weight", (256, 64)), ("big.weight", (300, 500)),
          ("ln_f.weight", (64,))]
SHARDINGS = ("equal", "random", "empty", "one")


def global_arrays():
    """The model: float32 values over 40 binades (a float64 sum in any order
    would change in the last bits with the cuts), seeded."""
    rng = np.random.default_rng(12)
    out = []
    for _, shape in SHAPES:
        n = int(np.prod(shape))
        v = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)
        out.append(v.astype(np.float32).reshape(shape))
    return out


def flat(arrays):
    return np.concatenate([a.ravel() for a in arrays])


def cuts(name, size, total):
    """K + 1 cut points of the flat buffer for sharding `name` at world size K."""
    if name == "equal":
        c = np.linspace(0, total, size + 1).astype(np.int64)
    elif name == "random":
        rng = np.random.default_rng(100 + size)
        c = np.concatenate([[0], np.sort(rng.integers(0, total, size - 1)), [total]])
    elif name == "empty":  # rank 0 and the middle rank hold nothing
        c = np.linspace(0, total, size + 1).astype(np.int64)
        c[1] = 0
        c[size // 2 + 1] = c[size // 2]
        c = np.maximum.accumulate(c)
        c[-1] = total
    else:  # "one": the last rank holds everything
        c = np.zeros(size + 1, np.int64)
        c[-1] = total
    return [int(x) for x in c]


def pieces(arrays, lo, hi):
    """{name: flat view} of the arrays overlapping [lo, hi) of the flat buffer."""
    out, start = {}, 0
    for (name, _), a in zip(SHAPES, arrays):
        end = start + a.size
        a0, a1 = max(lo, start), min(hi, end)
        if a0 < a1:
            out[name] = a.reshape(-1)[a0 - start:a1 - start]
        start = end
    return out


def shard(arrays, name, rank, size, dtype_by_rank=True):
    """This rank's shard as {name: writeable copy}: float64 on odd ranks."""
    c = cuts(name, size, sum(a.size for a in arrays))
    dt = np.float64 if dtype_by_rank and rank % 2 else np.float32
    return {k: v.astype(dt) for k, v in pieces(arrays, c[rank], c[rank + 1]).items()}


def regs():
    mult = (lambda n, a: 0.5 if "bias" in n else 2.0 if "mlp" in n else 1.0)
    return {
        "plain": l2fast.L2(1.0, "samples", m=100, reproducible=True,
                           exclude=l2fast.exclude_by_name(["bias", "ln_"])),
        "mult": l2fast.L2(1.0, "samples", m=100, reproducible=True,
                          exclude=l2fast.exclude_by_name(["ln_"]), decay_mult=mult),
        "params": l2fast.L2(0.1, "params", reproducible=True),
    }


def digest(s):
    return hashlib.sha256(s.to_bytes()).hexdigest()[:16]


def error(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 -- recorded for the test
        return [type(exc).__name__, str(exc)]
    return None


def run(comm, rank, size, spell):
    """The calls, with comm (and `spell`, the engine named by a string)."""
    arrays = global_arrays()
    r = {}
    for name in SHARDINGS:
        mine = shard(arrays, name, rank, size)
        views = list(mine.values())
        r[f"sum/{name}"] = l2fast.sum_squares(views, comm=comm).hex()
        r[f"sum-dict/{name}"] = l2fast.sum_squares(mine, comm=spell).hex()
        r[f"flat/{name}"] = l2fast.sum_squares(
            np.concatenate([np.zeros(0, np.float32), *[v.astype(np.float64) for v in views]])
            [::-1], comm=comm).hex()
        r[f"partial/{name}"] = digest(l2fast.sum_squares(views, comm=comm, partial=True))
        r[f"paramlist/{name}"] = l2fast.ParamList(views).sum_squares(comm=comm).hex()
    # the fused call: global sum before, local scale
    mine = shard(arrays, "random", rank, size)
    ref = {k: v.copy() for k, v in mine.items()}
    r["sum_scale"] = l2fast.sum_squares_scale_(mine, 0.5, comm=comm).hex()
    l2fast.scale_(ref, 0.5)
    r["sum_scale/local_like_scale_"] = all(np.array_equal(mine[k], ref[k]) for k in mine)
    r["sum_scale/after"] = l2fast.sum_squares(mine, comm=comm).hex()
    pl = l2fast.ParamList(mine)
    r["paramlist_scale"] = pl.sum_squares_scale_(0.25, comm=comm).hex()
    r["paramlist_scale/partial"] = digest(pl.sum_squares_scale_(1.0, comm=comm, partial=True))
    # L2
    for key, reg in regs().items():
        for name in ("equal", "empty"):
            mine = shard(arrays, name, rank, size, dtype_by_rank=False)  # decays compared
            r[f"penalty/{key}/{name}"] = reg.penalty(mine, comm=comm).hex()
            if key != "params":
                r[f"penalty_decay/{key}/{name}"] = reg.penalty_decay_(mine, 0.1,
                                                                      comm=comm).hex()
                r[f"decayed/{key}/{name}"] = l2fast.sum_squares(mine, comm=comm).hex()
    # failures: every rank raises, and the next call works
    mine = shard(arrays, "equal", rank, size)
    views = list(mine.values())
    bad = views if rank != size - 1 else [np.zeros(3, np.int32)]
    r["fail/dtype"] = error(lambda: l2fast.sum_squares(bad, comm=comm))
    ro = [v.copy() for v in views]
    if rank == 0:
        ro.append(np.zeros(3, np.float32))
        ro[-1].flags.writeable = False
    r["fail/readonly"] = error(lambda: l2fast.sum_squares_scale_(ro, 0.5, comm=comm))
    nan = [v.copy() for v in views] + [np.array([np.nan if rank == size // 2 else 1.0])]
    r["fail/finite"] = error(lambda: l2fast.sum_squares(nan, comm=comm, check_finite=True))
    r["fail/per_array"] = error(lambda: l2fast.sum_squares(views, comm=comm, per_array=True))
    r["fail/params_decay"] = error(lambda: regs()["params"].penalty_decay_(mine, 0.1,
                                                                          comm=comm))
    if size > 1:
        r["fail/mismatch"] = error(lambda: l2fast.sum_squares(views, comm=comm) if rank == 0
                                   else l2fast.sum_squares_scale_(ro[:len(views)], 1.0,
                                                                  comm=comm))
    r["after_failures"] = l2fast.sum_squares(views, comm=comm).hex()
    return r


# ---------------------------------------------------------------------------
# Global norms and clipping (l2fast.global_norm / clip_grad_norm_, l2fast.torch)
# ---------------------------------------------------------------------------

CLIP = 1e6          # below the norm (~6.5e7): clips
NO_CLIP = 1e9       # above it: leaves the gradients alone
CLIP_INF = 1e5      # below the largest |x| (~3.4e6)


def shard_digest(arrays):
    """One digest of {name: array}: names, dtypes and bytes (NaNs as their bits)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def run_norms(comm, rank, size, spell):
    """Every rank's norm (the same bits on every rank) and its clipped shard
    (its own; compared with the pieces of the whole clipped in one process)."""
    arrays = global_arrays()
    r = {}
    for name in SHARDINGS:
        mine = shard(arrays, name, rank, size)
        views = list(mine.values())
        r[f"norm/{name}"] = l2fast.global_norm(views, comm=comm).hex()
        r[f"norm-dict/{name}"] = l2fast.global_norm(mine, comm=spell).hex()
        r[f"norm-pl/{name}"] = l2fast.ParamList(views).global_norm(comm=comm).hex()
        r[f"clip/{name}"] = l2fast.clip_grad_norm_(mine, CLIP, comm=comm).hex()
        r[f"mine/clip/{name}"] = shard_digest(mine)
        r[f"clip-again/{name}"] = l2fast.global_norm(mine, comm=comm).hex()
        mine = shard(arrays, name, rank, size)
        r[f"no-clip/{name}"] = l2fast.ParamList(mine).clip_grad_norm_(NO_CLIP, comm=comm).hex()
        r[f"mine/no-clip/{name}"] = shard_digest(mine)
    return r


def with_extra(views, value, at_rank, rank):
    """Copies of `views` and one more array: [value] on rank `at_rank`, [1.0] elsewhere."""
    return [v.copy() for v in views] + [np.array([value if rank == at_rank else 1.0])]


def readonly(a):
    a.flags.writeable = False
    return a


def run_clip_failures(comm, rank, size):
    """Non-finite norms, a refused input on one rank, ranks out of step: every
    rank raises (or every rank gets the same NaN), nothing is left waiting."""
    mine = shard(global_arrays(), "equal", rank, size)
    views = list(mine.values())
    r = {}
    bad = with_extra(views, np.nan, size // 2, rank)
    r["fail/clip-nan"] = error(lambda: l2fast.clip_grad_norm_(bad, CLIP, comm=comm,
                                                              error_if_nonfinite=True))
    r["mine/clip-nan/unchanged"] = shard_digest(dict(enumerate(bad))) == shard_digest(
        dict(enumerate(with_extra(views, np.nan, size // 2, rank))))
    nan = l2fast.clip_grad_norm_(bad, CLIP, comm=comm)
    r["clip-nan"] = [nan.hex(), all(bool(np.isnan(a).all()) for a in bad)]
    inf = with_extra(views, np.inf, size - 1, rank)
    r["clip-inf"] = l2fast.clip_grad_norm_(inf, CLIP, comm=comm).hex()
    r["mine/clip-inf"] = [bool((a == 0).all()) for a in inf[:-1]] + [str(inf[-1][0])]
    for key, fn in {
        "dtype": lambda: l2fast.clip_grad_norm_(
            views + ([np.zeros(3, np.int32)] if rank == size - 1 else []), CLIP, comm=comm),
        "readonly": lambda: l2fast.clip_grad_norm_(
            views + ([readonly(np.zeros(3, np.float32))] if rank == 0 else []), CLIP,
            comm=comm),
        "max_norm": lambda: l2fast.clip_grad_norm_(views, -1.0 if rank == 0 else CLIP,
                                                   comm=comm),
        "norm-dtype": lambda: l2fast.global_norm(
            views + ([np.zeros(3, np.int32)] if rank == size - 1 else []), comm=comm),
    }.items():
        r[f"fail/clip-{key}"] = error(fn)
    r["mine/failures/unchanged"] = shard_digest(mine) == shard_digest(
        shard(global_arrays(), "equal", rank, size))
    if size > 1:
        r["fail/clip-args"] = error(lambda: l2fast.clip_grad_norm_(views, CLIP * (1 + rank),
                                                                   comm=comm))
        r["fail/clip-mismatch"] = error(lambda: l2fast.global_norm(views, comm=comm)
                                        if rank == 0 else l2fast.sum_squares(views, comm=comm))
    r["clip/after_failures"] = l2fast.global_norm(views, comm=comm).hex()
    return r


def torch_params(mine, dtype_of):
    """Parameters whose .grad tensors share memory with this rank's arrays (so
    clipping them clips `mine`), and one parameter without a gradient."""
    import torch

    params = [torch.nn.Parameter(torch.zeros(3))]
    for v in mine.values():
        p = torch.nn.Parameter(torch.zeros(v.shape, dtype=dtype_of(v)))
        p.grad = torch.from_numpy(v)
        params.append(p)
    return params


def run_torch(comm, rank, size):
    """l2fast.torch's get_total_norm and clip_grad_norm_ with comm: [dtype, value]
    of the 0-d tensor (the same on every rank) and each rank's clipped shard."""
    import torch

    import l2fast.torch as lt

    dtype_of = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
    arrays, r = global_arrays(), {}
    got = (lambda t: [str(t.dtype), float(t).hex()])
    for name in ("equal", "empty", "one"):
        mine = shard(arrays, name, rank, size)
        params = torch_params(mine, lambda v: dtype_of[v.dtype])
        grads = [p.grad for p in params if p.grad is not None]
        r[f"t-norm/{name}"] = got(lt.get_total_norm(grads, comm=comm))
        r[f"t-inf/{name}"] = got(lt.get_total_norm(iter(grads), "inf", comm=comm))
        r[f"t-clip/{name}"] = got(lt.clip_grad_norm_(params, CLIP, comm=comm))
        r[f"mine/t-clip/{name}"] = shard_digest(mine)
        mine = shard(arrays, name, rank, size)
        params = torch_params(mine, lambda v: dtype_of[v.dtype])
        r[f"t-clip-inf/{name}"] = got(lt.clip_grad_norm_(
            (p for p in params), CLIP_INF, norm_type=math.inf, comm=comm))
        r[f"mine/t-clip-inf/{name}"] = shard_digest(mine)
    mine = shard(arrays, "equal", rank, size)
    params = torch_params(mine, lambda v: dtype_of[v.dtype])
    nan = params + [torch_params({"x": np.array([np.nan if rank == size // 2 else 1.0])},
                                 lambda v: torch.float64)[1]]
    for order in (2.0, math.inf):
        r[f"fail/t-nan/{order}"] = error(lambda: lt.clip_grad_norm_(
            nan, CLIP, order, error_if_nonfinite=True, comm=comm))
    r["fail/t-total-nan"] = error(lambda: lt.get_total_norm(
        [p.grad for p in nan[1:]], error_if_nonfinite=True, comm=comm))
    r["fail/t-order"] = error(lambda: lt.clip_grad_norm_(params, CLIP, 3.0 if rank == 0 else 2.0,
                                                         comm=comm))
    r["fail/t-device"] = error(lambda: lt.get_total_norm(
        [p.grad for p in params[1:]] + ([torch.zeros(2, device="meta")] if rank == size - 1
                                        else []), comm=comm))
    if size > 1:
        r["fail/t-inf-vs-2"] = error(lambda: lt.clip_grad_norm_(
            params, CLIP, math.inf if rank == 0 else 2.0, comm=comm))
    r["mine/t-failures/unchanged"] = shard_digest(mine) == shard_digest(
        shard(arrays, "equal", rank, size))
    r["t/after_failures"] = got(lt.get_total_norm([p.grad for p in params[1:]], comm=comm))
    return r


def have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def oracle():
    """What the calls give on the unsharded values in one process, without comm
    (exact sums: reproducible=True, which comm implies)."""
    arrays = global_arrays()
    whole = dict(zip((n for n, _ in SHAPES), arrays))
    o = {"sum": l2fast.sum_squares(arrays, reproducible=True).hex(),
         "exact": l2fast.reference.exact_sum_squares(arrays).hex(),
         "partial": digest(l2fast.sum_squares(arrays, partial=True))}
    half = [a * np.float32(0.5) for a in arrays]  # exact: a power of two
    o["sum_scale/after"] = l2fast.sum_squares(half, reproducible=True).hex()
    o["paramlist_scale"] = o["sum_scale/after"]
    o["paramlist_scale/partial"] = digest(l2fast.sum_squares([a * np.float32(0.125)
                                                              for a in arrays], partial=True))
    for key, reg in regs().items():
        o[f"penalty/{key}"] = reg.penalty(whole)
        if key != "params":
            copy = {k: v.copy() for k, v in whole.items()}
            o[f"penalty_decay/{key}"] = reg.penalty_decay_(copy, 0.1)
            o[f"decayed/{key}"] = l2fast.sum_squares(copy, reproducible=True).hex()
    o["penalty/mult/exact"] = mult_penalty_exact(arrays)
    return o


def exact_square_sum(arrays):
    """sum of the squares of every value, as a Fraction from the values' own bits
    (v = m 2^e with m an integer of 53 bits), without l2fast."""
    v = flat(arrays).astype(np.float64)
    mant, expo = np.frexp(v)
    m = (mant * 2.0 ** 53).astype(np.int64).tolist()
    k = (2 * expo - 106).tolist()  # v^2 = m^2 2^k
    low = min(k)
    return Fraction(sum((a * a) << (b - low) for a, b in zip(m, k)), 1) * Fraction(2) ** low


def clipped(arrays, dtype, coef):
    """The arrays in `dtype` times coef, formed in float64 and rounded once (NumPy)."""
    return [(a.astype(dtype).astype(np.float64) * coef).astype(dtype) for a in arrays]


def clip_oracle():
    """The norms and the clipped gradients of the unsharded values, from
    independent references: the exact sum of squares (fractions, and
    math.fsum), its rounded square root, max |x|, and NumPy's products; and
    the single-process l2fast calls they must equal (exact sums:
    reproducible=True, which comm implies)."""
    arrays = global_arrays()
    squares = exact_square_sum(arrays)
    v = flat(arrays).astype(np.float64)
    norm = math.sqrt(float(squares))           # float(Fraction): rounded once
    assert norm == math.sqrt(math.fsum((v * v).tolist()))
    assert Fraction(math.nextafter(norm, 0)) ** 2 < squares < Fraction(
        math.nextafter(norm, math.inf)) ** 2    # within one ulp of the true root
    assert norm == math.sqrt(l2fast.sum_squares(arrays, reproducible=True))
    inf = float(np.abs(v).max())
    o = {"norm": norm, "inf": inf, "clipped": {}, "clipped-inf": {}, "whole": {}}
    for dt in (np.float32, np.float64):
        o["whole"][dt] = [a.astype(dt) for a in arrays]
        o["clipped"][dt] = clipped(arrays, dt, CLIP / (norm + 1e-6))
        o["clipped-inf"][dt] = clipped(arrays, dt, CLIP_INF / (inf + 1e-6))
        one = [a.astype(dt) for a in arrays]    # the single-process call: the same bits
        l2fast.scale_(one, CLIP / (math.sqrt(l2fast.sum_squares(one, reproducible=True))
                                   + 1e-6))
        assert all(np.array_equal(x, y) for x, y in zip(one, o["clipped"][dt]))
    return o


def exact_sum(a):
    """||a||^2 as a Fraction, from the digits of its SumOfSquares state."""
    w = l2fast.sum_squares(a, partial=True).to_array()
    return Fraction(sum(int(d) << (32 * k) for k, d in enumerate(w[:104].tolist())),
                    1 << 2176)


def mult_penalty_exact(arrays):
    """0.5 * c * (sum_i mu_i ||w_i||^2 computed exactly, rounded once): the
    "mult" L2's penalty with comm."""
    reg = regs()["mult"]
    total = Fraction(0)
    for (name, _), a in zip(SHAPES, arrays):
        if "ln_" not in name:
            mu = reg.decay_mult(name, a)
            total += Fraction(mu) * exact_sum(a)
    return 0.5 * reg.coef() * float(total)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["mpi", "torch"], required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.engine == "mpi":
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        rank, size = comm.Get_rank(), comm.Get_size()
    else:
        import torch.distributed as dist
        dist.init_process_group("gloo")
        comm = dist.group.WORLD
        rank, size = dist.get_rank(), dist.get_world_size()
    results = {**run(comm, rank, size, args.engine), **run_norms(comm, rank, size, args.engine),
               **run_clip_failures(comm, rank, size), "torch": have_torch()}
    if results["torch"]:
        results.update(run_torch(comm, rank, size))
    result = {"rank": rank, "size": size, "results": results}
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    if args.engine == "torch":
        dist.barrier()  # every rank done before any tears its connections down
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
