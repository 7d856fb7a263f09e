"""l2fast: the L2 regularization arithmetic of a whole model, at the speed of memory.

The L2 penalty of a model with weight arrays w_1 .. w_L, trained on m samples,
is ``lam / (2 * m) * sum_i ||w_i||^2``; its gradient with respect to w_i is
``lam / m * w_i`` (coupled L2, added to the gradient), and decoupled weight
decay multiplies each weight by ``1 - lr * lam / m``.  l2fast computes these
over a whole ragged list of arrays (float16, bfloat16, float32, float64, mixed)
in one call, with OpenMP kernels that release the GIL:

    sum_squares(ws)                  sum_i ||w_i||^2, exact, rounded once to float64
    SumOfSquares                     the exact sum unrounded: merge shards and ranks
    scale_(ws, c)                    w_i *= c
    add_scaled_(gs, ws, alpha)       g_i += alpha * w_i
    sum_squares_scale_(ws, c)        both of the first two, in one pass
    global_norm(gs)                  sqrt(sum_i ||g_i||^2)
    clip_grad_norm_(gs, max_norm)    g_i *= max_norm / (||g|| + eps) when < 1
    ParamList(ws)                    the same, validated once
    show_config()                    build, OpenMP runtime, threads, SIMD
    L2(lam, scale), conventions      the λ scalings named, converted, applied
    reference                        the exact sum and a plain-NumPy twin of each
    l2fast.torch                     torch's clip_grad_norm_ and get_total_norm (needs torch)

How a call flows (docs/architecture.md has the whole note):

    _api.py, regularizer.py   public functions, ParamList, L2
      -> _args.py             what an argument is (lists, dicts, pairs, threads)
      -> _table.pyx           validation, and the work table of pieces and items
      -> _kernels.pyx         the items run by l2fast's team; exact sums added
      -> _loops.h, _exact.h   every loop, per dtype, contiguous and strided
         _loops16.h           (16-bit loops for AVX2 CPUs)
"""
from ._api import ParamList, add_scaled_, scale_, sum_squares, sum_squares_scale_
from ._clip import clip_grad_norm_, global_norm
from ._config import show_config
from ._partial import SumOfSquares
from . import conventions
from .regularizer import L2, exclude_by_name, no_decay_1d
from ._version import __version__

__all__ = [
    "sum_squares",
    "scale_",
    "add_scaled_",
    "sum_squares_scale_",
    "global_norm",
    "clip_grad_norm_",
    "ParamList",
    "SumOfSquares",
    "show_config",
    "L2",
    "no_decay_1d",
    "exclude_by_name",
    "conventions",
    "__version__",
]
