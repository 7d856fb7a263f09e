/* Every loop of l2fast's kernels: the element operations, their contiguous
 * and strided loops for every dtype, the folds, and l2f_apply(), the one
 * function the parallel driver (_kernels.pyx) calls per piece.
 *
 * Adding a dtype: its row in _work.h's L2F_DTYPES (and L2F_DTYPES_SRC), its
 * L2F_LOAD_xx / L2F_STORE_xx / L2F_BLOCK_xx below, and its row in
 * _table.pyx's dtype table.
 *
 * Values are widened to float64 before any arithmetic: a float32 (or
 * 16-bit) square is exact in float64 and cannot overflow, and w * factor is
 * rounded once, to the array's dtype (16-bit: see _half.h).  Sums keep independent float64 accumulators (lanes):
 * one accumulator would make the loop wait on the add latency (~7.5 GB/s a
 * thread); 32 lanes let it stream at memory speed.  Lanes are folded as a
 * fixed binary tree, so a run's sum depends only on its data.
 */
#ifndef L2FAST_LOOPS_H
#define L2FAST_LOOPS_H

#include "_platform.h"  /* L2F_HAVE_CLONES; first: it may define _GNU_SOURCE */
#include "_work.h"      /* the dtypes, the piece, the ops */
#include "_half.h"      /* float16 and bfloat16 */

/* Load an element as float64; store a float64 rounded once to the dtype. */
#define L2F_LOAD_f32(p, k) ((double)(p)[k])
#define L2F_LOAD_f64(p, k) ((p)[k])
#define L2F_LOAD_f16(p, k) l2f_f16_to_f64((p)[k])
#define L2F_LOAD_bf16(p, k) l2f_bf16_to_f64((p)[k])
#define L2F_STORE_f32(p, k, x) ((p)[k] = (float)(x))
#define L2F_STORE_f64(p, k, x) ((p)[k] = (x))
#define L2F_STORE_f16(p, k, x) ((p)[k] = l2f_round_f16(x))
#define L2F_STORE_bf16(p, k, x) ((p)[k] = l2f_round_bf16(x))
#define L2F_LOAD(S, p, k) L2F_LOAD_##S(p, k)
#define L2F_STORE(S, p, k, x) L2F_STORE_##S(p, k, x)

/* How a contiguous loop stores a block: directly, or (16-bit) rounding
 * with l2f_near_xx into a buffer and redoing the flagged block exactly. */
#define L2F_BLOCK_f32 L2F_BLOCK_DIRECT
#define L2F_BLOCK_f64 L2F_BLOCK_DIRECT
#define L2F_BLOCK_f16 L2F_BLOCK_ROUNDED
#define L2F_BLOCK_bf16 L2F_BLOCK_ROUNDED

/* ------------------------------------------------------------------------
 * Compiler help
 * ------------------------------------------------------------------------ */
#if defined(_OPENMP) && !defined(_MSC_VER)
#define L2F_SIMD _Pragma("omp simd")
#define L2F_SIMD_OR(v) _Pragma(L2F_STR(omp simd reduction(|:v)))
#else
#define L2F_SIMD
#define L2F_SIMD_OR(v)
#endif
#define L2F_STR(x) #x

/* With L2F_HAVE_CLONES each contiguous loop is compiled for the x86-64
 * baseline (SSE2), x86-64-v3 (AVX2) and x86-64-v4 (AVX-512), and the loader
 * picks the one the CPU runs: widening float32 to float64 costs too much in
 * SSE2 to keep up with memory.  -ffp-contract=off keeps the clones bitwise
 * identical. */
#ifdef L2F_HAVE_CLONES
#define L2F_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define L2F_CLONES
#endif

/* Sums of squares of float32 and 16-bit values may fuse acc + x * x into
 * one FMA where the clone has it: x * x is exact, so the bits are the same.
 * Not float64: there x * x is rounded. */
#if defined(__GNUC__) && !defined(__clang__)
#define L2F_FMA_f32 __attribute__((optimize("fp-contract=fast")))
#else
#define L2F_FMA_f32
#endif
#define L2F_FMA_f16 L2F_FMA_f32
#define L2F_FMA_bf16 L2F_FMA_f32
#define L2F_FMA_f64

#if defined(_MSC_VER)
#define L2F_RESTRICT __restrict
#define L2F_PREFETCH(addr, rw) ((void)0)
#else
#define L2F_RESTRICT __restrict__
/* Lines to read are fetched into L2 (prefetcht1), lines to write into L1
 * (prefetcht0; these targets have no prefetchw): on 4 KiB pages, fetching
 * reads into L1 left sums 12-19 % behind np.dot on the same buffer, and
 * fetching writes into L2 slowed scale_ (docs/bench.md, "Prefetch
 * distances"). */
#define L2F_PREFETCH(addr, rw) \
    ((rw) ? __builtin_prefetch((addr), 1, 3) : __builtin_prefetch((addr), 0, 2))
#endif

/* ------------------------------------------------------------------------
 * Lanes and folds
 * ------------------------------------------------------------------------ */
#define L2F_LANES 32          /* accumulators of a long contiguous run */
#define L2F_SHORT 512         /* runs shorter than this take ... */
#define L2F_SHORT_LANES 8     /* ... 8 lanes and no prefetch (biases, norms) */
#define L2F_STRIDED_LANES 16  /* accumulators of a strided run */

/* Fold `lanes` accumulators (a power of two) as a fixed binary tree. */
static inline double l2f_fold(double *acc, int lanes)
{
    for (int w = lanes / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++)
            acc[j] += acc[j + w];
    return acc[0];
}

/* Sum x[0:n] by pairwise halving: fixed order, error O(log n). */
static double l2f_sum_slots(const double *x, int64_t n)
{
    if (n <= 8) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
            s += x[i];
        return s;
    }
    return l2f_sum_slots(x, n / 2) + l2f_sum_slots(x + n / 2, n - n / 2);
}

/* ------------------------------------------------------------------------
 * Element operations.  ACC(D, k, lane) adds element k of d to accumulator
 * `lane`; VAL(D, S, kd, ks) is the float64 value an update stores in d[kd]
 * (D, S: dtype suffixes of dst and src).  The loops' variables are d (dst),
 * s (src), acc and f (factor, or alpha).
 * ------------------------------------------------------------------------ */
#define L2F_ACC_NONE(D, k, lane) ((void)0)
#define L2F_ACC_SSQ(D, k, lane) \
    do { double x_ = L2F_LOAD(D, d, k); acc[lane] += x_ * x_; } while (0)
#define L2F_VAL_SCALE(D, S, kd, ks) (L2F_LOAD(D, d, kd) * f)
#define L2F_VAL_ADD(D, S, kd, ks) (L2F_LOAD(D, d, kd) + f * L2F_LOAD(S, s, ks))
#define L2F_VAL_ADD_SELF(D, S, kd, ks) (L2F_LOAD(D, d, kd) + f * L2F_LOAD(D, d, kd))
/* The same values for a 16-bit d, rounded by the vector path of _half.h:
 * the 16-bit result, and *redo set to 1 when it must be redone exactly. */
#define L2F_VAL_SCALE_NEAR(D, S, kd, ks, redo) l2f_scaled_##D(d[kd], c32_, redo)
#define L2F_VAL_ADD_NEAR(D, S, kd, ks, redo) l2f_near_##D(L2F_VAL_ADD(D, S, kd, ks), redo)
#define L2F_VAL_ADD_SELF_NEAR(D, S, kd, ks, redo) \
    l2f_near_##D(L2F_VAL_ADD_SELF(D, S, kd, ks), redo)

/* Contiguous: a block of LANES elements at a time, FETCH first, then the
 * block (vectorised across lanes), then the tail on lanes 0, 1, ...  Loops
 * ask for the cache lines L2F_AHEAD bytes ahead (L2F_AHEAD_W for lines they
 * write): the hardware prefetcher alone leaves the widening loops ~40% under
 * the roof.  Distances measured: docs/bench.md, "Prefetch distances". */
#ifndef L2F_AHEAD
#define L2F_AHEAD 4096
#endif
#ifndef L2F_AHEAD_W
#define L2F_AHEAD_W 2048
#endif

/* The line to ask for at byte `at` of a run of `len` bytes from p: in the
 * run, or past its end in `then`, the run the thread takes next (the next
 * piece of its item, l2f_piece.dst_then/src_then), when it has one.  The
 * arrays of a ragged list lie apart, so the bytes after a run are usually
 * another array's, or nobody's: one thread summed 2,000 float32 arrays of
 * 8 KiB with 8 KiB between them at 0.67x the speed of one buffer, and at
 * 0.90x told where the next one is (bench/probes/ragged.py; docs/bench.md,
 * "Prefetch distances").  One piece ahead only: past a next piece shorter
 * than the distance, the lines asked for are again whatever follows it. */
static inline const char *l2f_ahead(const void *p, int64_t at, int64_t len, const char *then)
{
    return (at < len || then == NULL) ? (const char *)p + at : then + (at - len);
}
/* The same for element i of p[0:n], `ahead` bytes on. */
#define L2F_AHEAD_OF(p, i, n, then, ahead)                                    \
    l2f_ahead((p), (int64_t)((i) * sizeof(*(p))) + (ahead),                   \
              (int64_t)((n) * sizeof(*(p))), (then))
/* Without a next run: AHEAD bytes on, whatever is there. */
#define L2F_FETCH_ON(p, i, rw)                                                \
    for (int k_ = 0; k_ < (int)(L2F_LANES * sizeof(*(p))); k_ += 64)          \
        L2F_PREFETCH((const char *)((p) + (i)) + k_ +                         \
                     ((rw) ? L2F_AHEAD_W : L2F_AHEAD), (rw))
#define L2F_FETCH(p, i, n, then, rw)                                          \
    for (int k_ = 0; k_ < (int)(L2F_LANES * sizeof(*(p))); k_ += 64)          \
        L2F_PREFETCH(L2F_AHEAD_OF(p, i, n, then,                              \
                                  k_ + ((rw) ? L2F_AHEAD_W : L2F_AHEAD)), (rw))
#define L2F_NOFETCH ((void)0)

#define L2F_SWEEP_SUM(n, LANES, FETCH, D)                                     \
    int64_t i = 0;                                                            \
    for (; i + (LANES) <= (n); i += (LANES)) {                                \
        FETCH;                                                                \
        L2F_SIMD                                                              \
        for (int j = 0; j < (LANES); j++)                                     \
            L2F_ACC_SSQ(D, i + j, j);                                         \
    }                                                                         \
    for (int j = 0; i < (n); i++, j++)                                        \
        L2F_ACC_SSQ(D, i, j & ((LANES) - 1))

#define L2F_SWEEP_UPDATE(n, LANES, FETCH, ACC, VAL, D, S)                     \
    int64_t i = 0;                                                            \
    const float c32_ = l2f_factor32(f);  /* for 16-bit scale, see _half.h */  \
    (void)c32_;                                                               \
    for (; i + (LANES) <= (n); i += (LANES)) {                                \
        FETCH;                                                                \
        L2F_BLOCK_##D(LANES, ACC, VAL, D, S)                                  \
    }                                                                         \
    for (int j = 0; i < (n); i++, j++) {                                      \
        ACC(D, i, j & ((LANES) - 1));                                         \
        L2F_STORE(D, d, i, VAL(D, S, i, i));                                  \
    }
#define L2F_BLOCK_DIRECT(LANES, ACC, VAL, D, S)                               \
    L2F_SIMD                                                                  \
    for (int j = 0; j < (LANES); j++) {                                       \
        ACC(D, i + j, j);                                                     \
        L2F_STORE(D, d, i + j, VAL(D, S, i + j, i + j));                      \
    }
#define L2F_BLOCK_ROUNDED(LANES, ACC, VAL, D, S)                              \
    {                                                                         \
        uint16_t out_[LANES];                                                 \
        uint32_t redo_ = 0;                                                   \
        L2F_SIMD_OR(redo_)                                                    \
        for (int j = 0; j < (LANES); j++) {                                   \
            uint32_t r_;                                                      \
            ACC(D, i + j, j);                                                 \
            out_[j] = (uint16_t)VAL##_NEAR(D, S, i + j, i + j, &r_);          \
            redo_ |= r_;                                                      \
        }                                                                     \
        if (!redo_)                                                           \
            memcpy(d + i, out_, sizeof out_);                                 \
        else                                                                  \
            for (int j = 0; j < (LANES); j++)                                 \
                L2F_STORE(D, d, i + j, VAL(D, S, i + j, i + j));              \
    }

/* Strided: one element at a time, L2F_STRIDED_LANES accumulators. */
#define L2F_STRIDED_SUM(n, sd, D)                                             \
    for (int64_t i = 0; i < (n); i++)                                         \
        L2F_ACC_SSQ(D, i * (sd), i & (L2F_STRIDED_LANES - 1))
#define L2F_STRIDED_UPDATE(n, sd, ss, ACC, VAL, D, S)                         \
    for (int64_t i = 0; i < (n); i++) {                                       \
        ACC(D, i * (sd), i & (L2F_STRIDED_LANES - 1));                        \
        L2F_STORE(D, d, i * (sd), VAL(D, S, i * (sd), i * (ss)));             \
    }

/* ------------------------------------------------------------------------
 * The loops of one dtype S (C type T): contiguous (cloned) and strided, and
 * one run function per operation that picks between them.  A sum of squares
 * (ssq: ACC only; ssq_scale: also VAL) keeps 8 lanes in a short run.
 * ------------------------------------------------------------------------ */
#define L2F_SSQ_SWEEP(n, LANES, FETCH, S) L2F_SWEEP_SUM(n, LANES, FETCH, S)
#define L2F_SSQ_STRIDED(n, sd, S) L2F_STRIDED_SUM(n, sd, S)
#define L2F_SSQ_SCALE_SWEEP(n, LANES, FETCH, S) \
    L2F_SWEEP_UPDATE(n, LANES, FETCH, L2F_ACC_SSQ, L2F_VAL_SCALE, S, S)
#define L2F_SSQ_SCALE_STRIDED(n, sd, S) \
    L2F_STRIDED_UPDATE(n, sd, 0, L2F_ACC_SSQ, L2F_VAL_SCALE, S, S)

#define L2F_DEFINE_SUM(NAME, KIND, FETCH_RW, S, T)                            \
L2F_CLONES L2F_FMA_##S static double NAME##_short_##S(T *L2F_RESTRICT d, int64_t n,       \
                                          double f)                           \
{                                                                             \
    double acc[L2F_SHORT_LANES] = {0};                                        \
    (void)f;                                                                  \
    KIND##_SWEEP(n, L2F_SHORT_LANES, L2F_NOFETCH, S);                         \
    return l2f_fold(acc, L2F_SHORT_LANES);                                    \
}                                                                             \
L2F_CLONES L2F_FMA_##S static double NAME##_contiguous_##S(T *L2F_RESTRICT d,    \
                                                       int64_t n, double f,   \
                                                       const char *then)      \
{                                                                             \
    if (n < L2F_SHORT)                                                        \
        return NAME##_short_##S(d, n, f);                                     \
    double acc[L2F_LANES] = {0};                                              \
    if (then == NULL) { /* a loop of its own: the fused pass ran 3-4 % slower \
                           with L2F_FETCH (bench/probes/parity.py) */         \
        KIND##_SWEEP(n, L2F_LANES, L2F_FETCH_ON(d, i, FETCH_RW), S);          \
    } else {                                                                  \
        KIND##_SWEEP(n, L2F_LANES, L2F_FETCH(d, i, n, then, FETCH_RW), S);    \
    }                                                                         \
    return l2f_fold(acc, L2F_LANES);                                          \
}                                                                             \
static double NAME##_run_##S(const l2f_piece *c, double f)                    \
{                                                                             \
    T *d = (T *)c->dst;                                                       \
    if (c->dst_stride == 1)                                                   \
        return NAME##_contiguous_##S(d, c->n, f, c->dst_then);                \
    double acc[L2F_STRIDED_LANES] = {0};                                      \
    KIND##_STRIDED(c->n, c->dst_stride, S);                                   \
    return l2f_fold(acc, L2F_STRIDED_LANES);                                  \
}

#define L2F_DEFINE_CONTIGUOUS_UPDATE(NAME, VAL, S, T)                         \
L2F_CLONES static void NAME##_contiguous_##S(T *L2F_RESTRICT d, int64_t n,    \
                                             double f, const char *then)      \
{                                                                             \
    L2F_SWEEP_UPDATE(n, L2F_LANES, L2F_FETCH(d, i, n, then, 1), L2F_ACC_NONE, \
                     VAL, S, S);                                              \
}

#define L2F_DEFINE_UPDATE(NAME, VAL, S, T)                                    \
L2F_DEFINE_CONTIGUOUS_UPDATE(NAME, VAL, S, T)                                 \
static double NAME##_run_##S(const l2f_piece *c, double f)                    \
{                                                                             \
    T *d = (T *)c->dst;                                                       \
    if (c->dst_stride == 1)                                                   \
        NAME##_contiguous_##S(d, c->n, f, c->dst_then);                       \
    else                                                                      \
        L2F_STRIDED_UPDATE(c->n, c->dst_stride, 0, L2F_ACC_NONE, VAL, S, S);  \
    return 0.0;                                                               \
}

#define L2F_DEFINE_UNARY(CODE, S, T)                                          \
    L2F_DEFINE_SUM(l2f_ssq, L2F_SSQ, 0, S, const T)                           \
    L2F_DEFINE_SUM(l2f_ssq_scale, L2F_SSQ_SCALE, 1, S, T)                     \
    L2F_DEFINE_UPDATE(l2f_scale, L2F_VAL_SCALE, S, T)                         \
    L2F_DEFINE_CONTIGUOUS_UPDATE(l2f_add_self, L2F_VAL_ADD_SELF, S, T)

/* d[k] += a * s[k]: contiguous d and s do not overlap (the work table checks
 * it) unless d is s, which takes add_self. */
#define L2F_DEFINE_ADD(D, TD, S, TS)                                          \
L2F_CLONES static void l2f_add_contiguous_##D##_##S(TD *L2F_RESTRICT d,       \
                                                    const TS *L2F_RESTRICT s, \
                                                    int64_t n, double f,      \
                                                    const char *then_d,       \
                                                    const char *then_s)       \
{                                                                             \
    L2F_SWEEP_UPDATE(n, L2F_LANES, L2F_FETCH(d, i, n, then_d, 1);             \
                     L2F_FETCH(s, i, n, then_s, 0),                           \
                     L2F_ACC_NONE, L2F_VAL_ADD, D, S);                        \
}                                                                             \
static double l2f_add_run_##D##_##S(const l2f_piece *c, double f)             \
{                                                                             \
    TD *d = (TD *)c->dst;                                                     \
    const TS *s = (const TS *)c->src;                                         \
    if (c->dst_stride == 1 && c->src_stride == 1) {                           \
        if ((const void *)d == (const void *)s)  /* equal dtypes only */      \
            l2f_add_self_contiguous_##D(d, c->n, f, c->dst_then);             \
        else                                                                  \
            l2f_add_contiguous_##D##_##S(d, s, c->n, f, c->dst_then,          \
                                         c->src_then);                        \
    } else {                                                                  \
        L2F_STRIDED_UPDATE(c->n, c->dst_stride, c->src_stride, L2F_ACC_NONE,  \
                           L2F_VAL_ADD, D, S);                                \
    }                                                                         \
    return 0.0;                                                               \
}
#define L2F_DEFINE_ADDS(CODE, D, TD) L2F_DTYPES_SRC(L2F_DEFINE_ADD, D, TD)

L2F_DTYPES(L2F_DEFINE_UNARY)
L2F_DTYPES(L2F_DEFINE_ADDS)

/* The hand-vectorised 16-bit loops, and l2f_level16(). */
#include "_loops16.h"

/* ------------------------------------------------------------------------
 * Dispatch: one table row per dtype, one entry point.
 * ------------------------------------------------------------------------ */
typedef double (*l2f_run_fn)(const l2f_piece *, double);

#define L2F_ROW_SSQ(CODE, S, T) l2f_ssq_run_##S,
#define L2F_ROW_SSQ_SCALE(CODE, S, T) l2f_ssq_scale_run_##S,
#define L2F_ROW_SCALE(CODE, S, T) l2f_scale_run_##S,
#define L2F_CELL_ADD(D, TD, S, TS) l2f_add_run_##D##_##S,
#define L2F_ROW_ADD(CODE, D, TD) { L2F_DTYPES_SRC(L2F_CELL_ADD, D, TD) },

static const l2f_run_fn l2f_unary_runs[3][L2F_NDTYPES] = {
    { L2F_DTYPES(L2F_ROW_SSQ) },
    { L2F_DTYPES(L2F_ROW_SSQ_SCALE) },
    { L2F_DTYPES(L2F_ROW_SCALE) },
};
static const l2f_run_fn l2f_add_runs[L2F_NDTYPES][L2F_NDTYPES] = {
    L2F_DTYPES(L2F_ROW_ADD)
};
#ifdef L2F_HAVE_CLONES
#define L2F_ROW_SSQ_V3(CODE, S, T) L2F_V3_SSQ_##S,
#define L2F_ROW_SCALE_V3(CODE, S, T) L2F_V3_SCALE_##S,
#define L2F_ROW_SSQ_SCALE_V3(CODE, S, T) L2F_V3_SSQ_SCALE_##S,
#define L2F_CELL_ADD_V3(D, TD, S, TS) L2F_V3_ADD_##D(S),
#define L2F_ROW_ADD_V3(CODE, D, TD) { L2F_DTYPES_SRC(L2F_CELL_ADD_V3, D, TD) },
static const l2f_run_fn l2f_unary_runs_v3[3][L2F_NDTYPES] = {
    { L2F_DTYPES(L2F_ROW_SSQ_V3) },
    { L2F_DTYPES(L2F_ROW_SSQ_SCALE_V3) },
    { L2F_DTYPES(L2F_ROW_SCALE_V3) },
};
static const l2f_run_fn l2f_add_runs_v3[L2F_NDTYPES][L2F_NDTYPES] = {
    L2F_DTYPES(L2F_ROW_ADD_V3)
};
#define L2F_ROW_SSQ_V4(CODE, S, T) L2F_V4_SSQ_##S,
#define L2F_ROW_SCALE_V4(CODE, S, T) L2F_V4_SCALE_##S,
#define L2F_ROW_SSQ_SCALE_V4(CODE, S, T) L2F_V4_SSQ_SCALE(S),
#define L2F_CELL_ADD_V4(D, TD, S, TS) L2F_V4_ADD(D, S),
#define L2F_ROW_ADD_V4(CODE, D, TD) { L2F_DTYPES_SRC(L2F_CELL_ADD_V4, D, TD) },
static const l2f_run_fn l2f_unary_runs_v4[3][L2F_NDTYPES] = {
    { L2F_DTYPES(L2F_ROW_SSQ_V4) },
    { L2F_DTYPES(L2F_ROW_SSQ_SCALE_V4) },
    { L2F_DTYPES(L2F_ROW_SCALE_V4) },
};
static const l2f_run_fn l2f_add_runs_v4[L2F_NDTYPES][L2F_NDTYPES] = {
    L2F_DTYPES(L2F_ROW_ADD_V4)
};
#else
#define l2f_unary_runs_v3 l2f_unary_runs
#define l2f_add_runs_v3 l2f_add_runs
#define l2f_unary_runs_v4 l2f_unary_runs
#define l2f_add_runs_v4 l2f_add_runs
#endif

/* Apply `op` to piece c with factor (or alpha) f; the sum of squares of a
 * summing op, else 0. */
static inline double l2f_apply(int op, const l2f_piece *c, double f)
{
    const int level = l2f_level16();
    if (op == L2F_ADD)
        return (level == 4 ? l2f_add_runs_v4 : level == 3 ? l2f_add_runs_v3 : l2f_add_runs)
            [c->dst_dtype][c->src_dtype](c, f);
    return (level == 4 ? l2f_unary_runs_v4 : level == 3 ? l2f_unary_runs_v3 : l2f_unary_runs)
        [op][c->dst_dtype](c, f);
}

#endif
