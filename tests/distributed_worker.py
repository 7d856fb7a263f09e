"""One rank of tests/test_distributed.py, launched as users launch l2fast:

    mpirun -n K python tests/distributed_worker.py --engine mpi --out DIR
    torchrun --standalone --nproc_per_node K tests/distributed_worker.py --engine torch --out DIR

Every rank holds its shards of the same global values (`global_arrays`) cut
at the points of `cuts`, makes the calls of `run` with comm=, and writes what
it got (floats as hex, states as bytes in hex, errors as type and message) to
DIR/rank<r>.json.  The test compares the ranks, and `oracle` (the same calls
on the unsharded values in one process, without comm).  Only numpy, l2fast
and the engine are imported: it runs against an installed l2fast.
"""
import argparse
import hashlib
import json
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
    result = {"rank": rank, "size": size, "results": run(comm, rank, size, args.engine)}
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    if args.engine == "torch":
        dist.barrier()  # every rank done before any tears its connections down
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
