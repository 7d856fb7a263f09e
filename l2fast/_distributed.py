"""comm=: the global sum of squares over the ranks of a distributed engine.

Each rank passes its own shards; every rank gets the sum of squares of all
of them, in the same bits on every rank and for every world size and shard
layout.  It rests on `SumOfSquares`: a rank's exact sum is an integer held in
normalised int64 words, and the element-wise sum of such words over the
ranks is the exact sum of everything, rounded once at the end.

One call is one all-reduce (SUM over int64) of a vector of fixed length for
a given communicator, whatever the call (so that ranks out of step get an
error rather than a hang):

    header   ranks joined, call signature (sum and sum of squares: equal on
             every rank exactly when the ranks made the same kind of call),
             elements, failures (count, count per exception type, a bitmap
             of the failing ranks)
    data     114 words: a `SumOfSquares` state (106 words, zero padded), or
             for an `L2` with multipliers the exact sum of mu_i * ||w_i||^2,
             an integer in units of 2^-2328 as 112 digits of 32 bits plus
             the counts of infinite and NaN terms; for a global norm or a
             clipping, the state, a digest of (max_norm, eps) that must be
             equal on every rank, and the counts of ranks holding each
             gradient dtype (the dtype of l2fast.torch's result)

The inf-norm of l2fast.torch takes a second all-reduce, a MAX of one word
(the float64 bits of each rank's max |x|), made only once the first has
shown that every rank got there.

A rank whose own part fails (a bad dtype, a read-only array, a NaN under
check_finite, a bad argument) sends its failure instead of its sum: it
re-raises its own exception and every other rank raises RuntimeError naming
it, after the same collective, so no rank waits for one that gave up.

Engines: an mpi4py communicator (``comm.Allreduce``), a torch.distributed
process group (``torch.distributed.all_reduce``, CPU tensors: gloo), or the
strings ``"mpi"`` (``mpi4py.MPI.COMM_WORLD``) and ``"torch"`` (the default
process group).  Neither package is imported unless the comm comes from it.
"""
from __future__ import annotations

import hashlib
import math
import struct
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ._partial import WORDS, SumOfSquares

if TYPE_CHECKING:
    from .regularizer import L2

__all__ = ["engine", "reduce_sum", "reduce_norm", "l2_penalty"]

_DIGITS = WORDS - 2              # the state's 32-bit digits
_STATE_BASE = 2176               # digit 0 of a state weighs 2^-2176
_MULT_BITS = 152                 # a multiplier in [2^-100, 2^100] is p / 2^k, k <= 152
_MULT_RANGE = (2.0 ** -100, 2.0 ** 100)
_WDIGITS = 112                   # sum mu_i ||w_i||^2 < 2^3510 in units of 2^-2328
DATA = _WDIGITS + 2              # data words of every call (>= WORDS)

# header words
_RANKS, _SIG, _SIG2, _ELEMS, _FAILED = range(5)
_ERRORS = (TypeError, ValueError, FloatingPointError)   # counted apart; others as one
_ETYPE = 5                                               # counts per type: 4 words
_BITMAP = _ETYPE + len(_ERRORS) + 1
_BITS = 62                                               # ranks per bitmap word

_KINDS = {"sum_squares": 1, "sum_squares_scale_": 2, "L2.penalty": 3, "L2.penalty_decay_": 4,
          "global_norm": 5, "get_total_norm": 6, "clip_grad_norm_": 7}
_VARIANTS = ("", "with multipliers", "with norm_type=inf")
_PROTOCOL = 1


def _vector_length(size: int) -> int:
    return _BITMAP + -(-size // _BITS) + DATA


class Engine:
    """One collective of one engine: `allreduce` sums (or takes the maximum of)
    an int64 vector over the ranks, element-wise."""

    __slots__ = ("name", "rank", "size", "_allreduce")

    def __init__(self, name: str, rank: int, size: int,
                 allreduce: Callable[[np.ndarray, str], np.ndarray]) -> None:
        self.name, self.rank, self.size, self._allreduce = name, rank, size, allreduce

    def allreduce(self, vec: np.ndarray, op: str = "sum") -> np.ndarray:
        return self._allreduce(vec, op)


_KNOWN = ("an mpi4py communicator (mpi4py.MPI.Comm), a torch.distributed ProcessGroup "
          "(e.g. torch.distributed.group.WORLD), 'mpi' (mpi4py.MPI.COMM_WORLD), 'torch' "
          "(the default process group) or None (this process alone)")


def engine(comm: Any) -> Engine:
    """The engine of `comm`, importing mpi4py or torch only when comm is theirs.

    Raises ImportError naming the package when it is missing, TypeError for an
    object of neither."""
    if isinstance(comm, str):
        if comm == "mpi":
            return _mpi(comm)
        if comm == "torch":
            return _torch(comm)
        raise ValueError(f"comm={comm!r} is not known; comm is {_KNOWN}")
    root = (getattr(type(comm), "__module__", None) or "").split(".")[0]
    if root == "mpi4py":
        return _mpi(comm)
    if root == "torch":
        return _torch(comm)
    raise TypeError(f"comm must be {_KNOWN}; got {type(comm).__module__}."
                    f"{type(comm).__qualname__}")


def _mpi(comm: Any) -> Engine:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("comm= with an MPI communicator needs mpi4py: pip install mpi4py "
                          "(and an MPI library, e.g. apt-get install openmpi-bin "
                          "libopenmpi-dev)") from exc
    if isinstance(comm, str):
        comm = MPI.COMM_WORLD
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"comm must be {_KNOWN}; got {type(comm).__module__}."
                        f"{type(comm).__qualname__}")
    if comm == MPI.COMM_NULL:
        raise ValueError("comm is MPI.COMM_NULL: this process is not in the communicator")
    if comm.Is_inter():
        raise TypeError("comm is an MPI intercommunicator; pass an intracommunicator "
                        "(e.g. comm.Merge())")

    ops = {"sum": MPI.SUM, "max": MPI.MAX}

    def allreduce(vec: np.ndarray, op: str) -> np.ndarray:
        out = np.empty_like(vec)
        comm.Allreduce(vec, out, op=ops[op])
        return out

    return Engine("mpi", comm.Get_rank(), comm.Get_size(), allreduce)


def _torch(comm: Any) -> Engine:
    try:
        import torch
        import torch.distributed as dist
    except ImportError as exc:
        raise ImportError("comm= with a torch.distributed process group needs torch: "
                          "pip install torch") from exc
    if not dist.is_available():
        raise ImportError("comm= with torch needs torch.distributed, which this torch build "
                          "lacks")
    if isinstance(comm, str):
        if not dist.is_initialized():
            raise RuntimeError("comm='torch' is torch.distributed's default process group: "
                               "call torch.distributed.init_process_group first")
        group = None
    elif isinstance(comm, dist.ProcessGroup):
        group = comm
    else:
        raise TypeError(f"comm must be {_KNOWN}; got {type(comm).__module__}."
                        f"{type(comm).__qualname__}")
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    if rank < 0:
        raise ValueError("this process is not a member of the process group passed as comm")

    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}

    def allreduce(vec: np.ndarray, op: str) -> np.ndarray:
        dist.all_reduce(torch.from_numpy(vec), op=ops[op], group=group)
        return vec

    return Engine("torch", rank, size, allreduce)


# ---------------------------------------------------------------------------
# The exchange
# ---------------------------------------------------------------------------

def _exchange(eng: Engine, kind: str, variant: str, local: Callable[[], tuple[np.ndarray, int]],
              wrote: bool) -> np.ndarray:
    """Run `local` (this rank's data words and element count) and sum the
    vectors over the ranks; raise on every rank when a rank failed or the
    ranks made different calls (`variant`: one of _VARIANTS, part of the
    call).  Returns the summed vector."""
    sig = (_PROTOCOL * 16 + _KINDS[kind]) * 4 + _VARIANTS.index(variant)
    vec = np.zeros(_vector_length(eng.size), dtype=np.int64)
    vec[_RANKS], vec[_SIG], vec[_SIG2] = 1, sig, sig * sig
    failure: BaseException | None = None
    try:
        data, elems = local()
        vec[_BITMAP + -(-eng.size // _BITS):] = data
        vec[_ELEMS] = elems
    except Exception as exc:  # sent to the other ranks, then raised here
        failure = exc
        vec[_FAILED] = 1
        vec[_ETYPE + next((i for i, t in enumerate(_ERRORS) if isinstance(exc, t)),
                          len(_ERRORS))] = 1
        vec[_BITMAP + eng.rank // _BITS] = 1 << (eng.rank % _BITS)
    out = eng.allreduce(vec)
    head = out[:_BITMAP + -(-eng.size // _BITS)].tolist()
    n = head[_RANKS]
    failed = [] if not head[_FAILED] else [
        w * _BITS + b for w, bits in enumerate(head[_BITMAP:]) for b in range(_BITS)
        if (bits >> b) & 1]
    if failure is not None:
        others = [r for r in failed if r != eng.rank]
        note = (f"l2fast: {kind}(comm=...) failed on rank {eng.rank} of {eng.size}"
                + (f" (and on rank{'s' if len(others) > 1 else ''} "
                   f"{', '.join(map(str, others))})" if others else "")
                + "; every other rank raises RuntimeError naming it")
        if hasattr(failure, "add_note"):
            failure.add_note(note)
        try:
            raise failure
        finally:  # no cycle exception -> traceback -> this frame -> exception,
            del failure  # which would keep the engine (a process group) alive
    if failed:
        types = [t.__name__ for i, t in enumerate(_ERRORS) if head[_ETYPE + i]]
        if head[_ETYPE + len(_ERRORS)]:
            types.append("another exception")
        who = (f"rank {failed[0]}" if len(failed) == 1
               else f"ranks {', '.join(map(str, failed))}")
        raise RuntimeError(f"{kind}(comm=...): {who} of {eng.size} failed "
                           f"({' / '.join(types)}; {'its' if len(failed) == 1 else 'their'} "
                           f"own error says why), so there is no global sum"
                           + ("; this rank's own arrays were already scaled (the fused "
                              "pass runs before the sum over the ranks)" if wrote else ""))
    if n * head[_SIG2] != head[_SIG] ** 2:
        this = " ".join(filter(None, (kind, variant)))
        raise ValueError(f"{kind}(comm=...): the ranks made different l2fast calls on this "
                         f"comm (this rank: {this}); every rank must make the same call at "
                         f"the same point")
    if n != eng.size:
        raise RuntimeError(f"{kind}(comm=...): {n} ranks joined a communicator of "
                           f"{eng.size}: the comm is not the same on every rank")
    return out


def _data_of_state(s: SumOfSquares) -> np.ndarray:
    data = np.zeros(DATA, dtype=np.int64)
    data[:WORDS] = s.to_array()
    return data


def _state_int(w: np.ndarray) -> int:
    """The integer of a normalised state's digits (units of 2^-2176)."""
    low = np.ascontiguousarray(w[:_DIGITS - 1], dtype="<u4").tobytes()
    return int.from_bytes(low, "little") + (int(w[_DIGITS - 1]) << (32 * (_DIGITS - 1)))


def _data_of_weighted(parts: list[tuple[float, SumOfSquares]]) -> np.ndarray:
    """sum mu * S exactly: 112 digits of 32 bits (units of 2^-2328), inf, nan counts."""
    total, inf, nan = 0, 0, 0
    for mu, s in parts:
        if not _MULT_RANGE[0] <= mu <= _MULT_RANGE[1]:
            raise ValueError(f"with comm, a decay_mult must be 0 or within [2^-100, 2^100], "
                             f"got {mu!r}")
        p, q = mu.as_integer_ratio()
        w = s.to_array()
        total += (p * _state_int(w)) << (_MULT_BITS - (q.bit_length() - 1))
        inf += int(w[_DIGITS])
        nan += int(w[_DIGITS + 1])
    data = np.zeros(DATA, dtype=np.int64)
    data[:_WDIGITS] = np.frombuffer(total.to_bytes(4 * _WDIGITS, "little"), dtype="<u4")
    data[_WDIGITS], data[_WDIGITS + 1] = inf, nan
    return data


def _weighted_value(data: np.ndarray) -> float:
    """The summed weighted data rounded once to the nearest float64."""
    if data[_WDIGITS + 1]:
        return float("nan")
    if data[_WDIGITS]:
        return float("inf")
    total = sum(int(d) << (32 * k) for k, d in enumerate(data[:_WDIGITS].tolist()))
    try:
        return total / (1 << (_STATE_BASE + _MULT_BITS))  # int / int: correctly rounded
    except OverflowError:
        return float("inf")


def _data(eng: Engine) -> slice:
    return slice(_BITMAP + -(-eng.size // _BITS), None)


# ---------------------------------------------------------------------------
# The calls
# ---------------------------------------------------------------------------

def reduce_sum(comm: Any, kind: str, local: Callable[[], SumOfSquares], *,
               per_array: bool, partial: bool) -> float | SumOfSquares:
    """sum_squares / sum_squares_scale_ with comm: `local` makes this rank's
    exact sum (validating and, for the fused call, scaling); the result is
    the sum over the ranks, rounded once (or unrounded with partial)."""
    eng = engine(comm)

    def part() -> tuple[np.ndarray, int]:
        if per_array:
            raise ValueError("per_array=True cannot be combined with comm: a shard may hold "
                             "part of an array, so the ranks' arrays are not one list; call "
                             "without comm for this rank's own per-array sums")
        return _data_of_state(local()), 0

    out = _exchange(eng, kind, "", part, wrote=kind == "sum_squares_scale_")
    total = SumOfSquares(out[_data(eng)][:WORDS])
    return total if partial else total.value


# The words after the state in a norm's data: a digest of the call's arguments
# (max_norm, eps) as _ARG_CHUNKS pieces of _ARG_BITS bits, each with its square
# (equal on every rank exactly when n * sum(c^2) == sum(c)^2; the squares of
# 2^21 ranks still fit in int64), then _FLAGS counts of ranks raising a flag
# (for l2fast.torch: holding a gradient of a dtype, which sets the norm's dtype).
_ARG_BITS, _ARG_CHUNKS, _FLAGS = 21, 2, 4
_ARGS_AT = WORDS
_FLAGS_AT = WORDS + 2 * _ARG_CHUNKS
assert _FLAGS_AT + _FLAGS <= DATA


def _digest(args: tuple[float, ...]) -> list[int]:
    h = int.from_bytes(hashlib.blake2b(struct.pack(f"<{len(args)}d", *args),
                                       digest_size=8).digest(), "little")
    chunks = [(h >> (_ARG_BITS * i)) & ((1 << _ARG_BITS) - 1) for i in range(_ARG_CHUNKS)]
    return [v for c in chunks for v in (c, c * c)]


def _max_over_ranks(eng: Engine, value: float) -> float:
    """The largest of the ranks' non-negative `value`s (NaN if any is NaN): a
    MAX over the float64 bits, which order as int64 as the values do."""
    if value != value:
        value = math.nan  # one NaN, positive: above +inf as an int64
    bits = np.array([value], dtype=np.float64).view(np.int64)
    return float(eng.allreduce(bits, "max").view(np.float64)[0])


def reduce_norm(comm: Any, kind: str, local: Callable[[], tuple[Any, tuple[float, ...],
                                                                tuple[int, ...]]],
                *, inf: bool = False) -> tuple[float, tuple[int, ...]]:
    r"""global_norm / clip_grad_norm_ (and l2fast.torch's) with comm.

    `local` validates this rank's part and returns (its exact sum of squares
    as a SumOfSquares, or with `inf` its largest |x|; the arguments every
    rank must share, e.g. (max_norm, eps); up to 4 flags).  Returns

        2-norm:   sqrt(round(S)), S = the exact sum of squares over all ranks
        inf-norm: max over the ranks of max |x| (a second all-reduce, MAX)

    and the number of ranks that raised each flag: the same on every rank.
    A rank whose `local` fails makes every rank raise, as `reduce_sum`.
    """
    eng = engine(comm)
    mine: list[float] = []

    def part() -> tuple[np.ndarray, int]:
        value, args, flags = local()
        data = np.zeros(DATA, dtype=np.int64)
        if inf:
            mine.append(float(value))
        else:
            data[:WORDS] = value.to_array()
        data[_ARGS_AT:_FLAGS_AT] = _digest(args)
        data[_FLAGS_AT:_FLAGS_AT + len(flags)] = [int(bool(f)) for f in flags]
        return data, 0

    data = _exchange(eng, kind, "with norm_type=inf" if inf else "", part, wrote=False)[_data(eng)]
    d = data[_ARGS_AT:_FLAGS_AT].tolist()
    if any(eng.size * d[2 * i + 1] != d[2 * i] ** 2 for i in range(_ARG_CHUNKS)):
        raise ValueError(f"{kind}(comm=...): the ranks passed different arguments (max_norm, "
                         "eps): every rank must clip by the same coefficient")
    flags = tuple(int(f) for f in data[_FLAGS_AT:_FLAGS_AT + _FLAGS].tolist())
    if inf:  # every rank is here: none failed, all made this call
        return _max_over_ranks(eng, mine[0]), flags
    return math.sqrt(SumOfSquares(data[:WORDS]).value), flags


def l2_penalty(reg: L2, params: Any, comm: Any, lr: Any = None) -> float:
    r"""`L2.penalty` (lr None) or `L2.penalty_decay_` with comm.

    Without multipliers: 0.5 * c * S, S the global exact sum, as locally.
    With `decay_mult`: 0.5 * c * W, W = sum_i mu_i ||w_i||^2 over all ranks
    computed exactly and rounded once."""
    eng = engine(comm)
    weighted = reg.decay_mult is not None
    decays = lr is not None
    nt, cf = reg.num_threads, reg.check_finite

    def part() -> tuple[np.ndarray, int]:
        sel = reg._select(params)
        groups = ([(1.0, sel.arrays)] if sel.mults is None
                  else [(f, pl) for f, _, pl in sel.groups])
        if decays:
            if reg._c is None:
                raise ValueError("penalty_decay_ with comm and scale='params': c = lam / N "
                                 "needs N over all ranks before the decay; use "
                                 "L2.from_convention(lam, 'per_param', N=<elements over all "
                                 "ranks>) (or penalty with comm, which sums N)")
            steps = reg._factors(sel, lr)
            if len(steps) > 1:
                reg._writable_first(sel)
            states = [group.sum_squares_scale_(factor, num_threads=nt, check_finite=cf,
                                               partial=True)
                      for factor, group, _ in steps]
        else:
            states = [pl.sum_squares(num_threads=nt, check_finite=cf, partial=True)
                      for _, pl in groups]
        if weighted:
            data = _data_of_weighted([(f, s) for (f, _), s in zip(groups, states)])
        else:
            data = _data_of_state(states[0])
        return data, sel.arrays.size

    kind = "L2.penalty_decay_" if decays else "L2.penalty"
    out = _exchange(eng, kind, "with multipliers" if weighted else "", part, wrote=decays)
    if reg._c is not None:
        c = reg._c
    else:
        n = int(out[_ELEMS])
        if n == 0:
            raise ValueError("scale='params' divides lam by N, the number of elements "
                             "penalised, and no array is penalised on any rank")
        c = float(Fraction(reg.lam) / n)
    data = out[_data(eng)]
    total = _weighted_value(data) if weighted else SumOfSquares(data[:WORDS]).value
    return 0.5 * c * total
