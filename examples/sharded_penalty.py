"""The global L2 penalty of a model sharded across processes: the same bits for any number of ranks.

GPT-2's parameters (the shapes of `l2fast.models`, seeded values) are one
flat float32 buffer, as FSDP and ZeRO-3 hold them, cut into K equal shards
at offsets that fall anywhere inside the parameters.  Each rank holds only
its slice, and passes it as views of the parameters it overlaps, by name:

    {"transformer.h.3.attn.c_attn.weight": flat[a:b], ...}

Every step each rank calls

    p = reg.penalty_decay_(views, lr, comm=comm)

which sums its shard's squares exactly, adds them over the ranks in one
all-reduce of 124 int64 words, and decays its own slice in the
same pass.  Every rank prints p as float.hex: the same bits on every rank,
for K = 1, 2, 3, 4 ..., and (rank 0, --check) for the unsharded model in one
process without comm (reproducible=True: the exact sums).  Biases and LayerNorm weights are excluded by name:
`no_decay_1d` cannot tell them apart on flat slices.

Run:
    mpirun -n K python examples/sharded_penalty.py [--model resnet50] [--steps 3]
    torchrun --nproc_per_node K examples/sharded_penalty.py --backend gloo
    ... --time 20     (also: median time of sum_squares with and without comm)
"""
import argparse
import math
import os
import statistics
import time

import numpy as np

import l2fast
from l2fast import models

EXCLUDE = l2fast.exclude_by_name(["bias", "ln_", "normalization"])


def param_values(seed, i, shape):
    """Parameter i: N(0, 0.02) float32 from its own seed, so a rank makes only its own."""
    rng = np.random.default_rng([seed, i])
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)


def shard(shapes, seed, rank, size):
    """This rank's slice of the flat buffer, and {name: view of the slice} per
    parameter it overlaps.  The buffer is cut into `size` equal shards
    (the last one shorter), as FSDP does."""
    total = sum(math.prod(s) for _, s in shapes)
    step = -(-total // size)
    lo, hi = min(rank * step, total), min((rank + 1) * step, total)
    flat = np.empty(hi - lo, np.float32)
    views, start = {}, 0
    for i, (name, shp) in enumerate(shapes):
        end = start + math.prod(shp)
        a, b = max(lo, start), min(hi, end)
        if a < b:
            flat[a - lo:b - lo] = param_values(seed, i, shp).reshape(-1)[a - start:b - start]
            views[name] = flat[a - lo:b - lo]
        start = end
    return flat, views


def comm_of(backend):
    """(comm, rank, size) for mpi4py or torch.distributed (launched by torchrun)."""
    if backend == "mpi":
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        return comm, comm.Get_rank(), comm.Get_size()
    import torch.distributed as dist
    dist.init_process_group(backend)
    return dist.group.WORLD, dist.get_rank(), dist.get_world_size()


def say(line):
    """Print a line in one write, so that the ranks' lines do not interleave."""
    os.write(1, (line + "\n").encode())


def median_time(fn, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["mpi", "gloo"], default="mpi")
    ap.add_argument("--model", default="gpt2", choices=models.names())
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--m", type=int, default=1000, help="training-set size")
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-check", dest="check", action="store_false",
                    help="skip rank 0's unsharded run without comm")
    ap.add_argument("--time", type=int, default=0, metavar="N",
                    help="also time N calls of sum_squares with and without comm")
    args = ap.parse_args()

    comm, rank, size = comm_of(args.backend)
    shapes = models.shapes(args.model)
    # reproducible=True: the unsharded run's sums are exact too (comm= always is)
    reg = l2fast.L2(args.lam, "samples", m=args.m, exclude=EXCLUDE, reproducible=True)
    flat, views = shard(shapes, args.seed, rank, size)
    say(f"rank {rank}/{size}: {flat.size} of {sum(math.prod(s) for _, s in shapes)} "
        f"values, pieces of {len(views)} parameters")

    for step in range(args.steps):
        p = reg.penalty_decay_(views, args.lr, comm=comm)
        say(f"rank {rank}/{size} step {step}: penalty {p.hex()} = {p!r}")
    norm2 = l2fast.sum_squares(views, comm=comm)
    say(f"rank {rank}/{size} after {args.steps} steps: sum of squares {norm2.hex()}")

    if args.time:
        local = median_time(lambda: l2fast.sum_squares(views, partial=True), args.time)
        glob = median_time(lambda: l2fast.sum_squares(views, comm=comm), args.time)
        tiny = median_time(lambda: l2fast.sum_squares([], comm=comm), args.time)
        if rank == 0:
            say(f"time over {args.time} calls (median), world size {size}, "
                f"{flat.size} values on rank 0: local sum {local * 1e3:.3f} ms, "
                f"with comm {glob * 1e3:.3f} ms, comm of an empty shard "
                f"{tiny * 1e6:.0f} us")

    if args.check and rank == 0:
        whole = {name: param_values(args.seed, i, shp) for i, (name, shp) in enumerate(shapes)}
        for step in range(args.steps):
            p = reg.penalty_decay_(whole, args.lr)
            say(f"unsharded step {step}: penalty {p.hex()} = {p!r}")
        say(f"unsharded after {args.steps} steps: sum of squares "
            f"{l2fast.sum_squares(whole, reproducible=True).hex()}")

    if args.backend != "mpi":
        import torch.distributed as dist
        dist.barrier()  # every rank done before any tears its connections down
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
