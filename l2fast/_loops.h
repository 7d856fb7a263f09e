/* The contiguous inner loops of l2fast's kernels, written so that the
 * compiler vectorises them with portable flags (-O3, no -march).
 *
 * Sums of squares keep L2F_LANES independent float64 accumulators: one
 * accumulator would make the loop wait on the add latency (~7.5 GB/s a
 * thread); 32 lanes let it stream at memory speed.  The lanes are folded
 * as a fixed binary tree, so a run's sum depends only on its data.
 *
 * Values are widened to float64 before any arithmetic: a float32 square is
 * exact in float64 and cannot overflow, and w * factor is rounded once, to
 * the array's dtype.
 */
#ifndef L2FAST_LOOPS_H
#define L2FAST_LOOPS_H

#include <stdint.h>

#define L2F_LANES 32

#if defined(_OPENMP) && !defined(_MSC_VER)
#define L2F_SIMD _Pragma("omp simd")
#else
#define L2F_SIMD
#endif

/* On x86-64 Linux with GCC, each loop is compiled three times, for the
 * x86-64 baseline (SSE2), x86-64-v3 (AVX2, FMA) and x86-64-v4 (AVX-512),
 * and the loader picks the one the CPU runs (an ifunc): widening float32 to
 * float64 costs too much in SSE2 to keep up with memory.  The build flags
 * stay portable, and -ffp-contract=off keeps the clones bitwise identical. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(L2F_NO_CLONES)
#define L2F_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define L2F_CLONES
#endif

#if defined(_MSC_VER)
#define L2F_RESTRICT __restrict
#define L2F_PREFETCH(addr, rw) ((void)0)
#else
#define L2F_RESTRICT __restrict__
#define L2F_PREFETCH(addr, rw) __builtin_prefetch((addr), (rw), 3)
#endif

/* Loops touch memory a block of L2F_LANES elements at a time and ask for
 * the cache lines L2F_AHEAD bytes ahead: the hardware prefetcher alone
 * leaves the widening loops ~40% under the memory roof. */
#ifndef L2F_AHEAD
#define L2F_AHEAD 1024
#endif
#define L2F_FETCH(p, i, rw)                                                   \
    for (int k_ = 0; k_ < (int)(L2F_LANES * sizeof(*(p))); k_ += 64)          \
        L2F_PREFETCH((const char *)((p) + (i)) + L2F_AHEAD + k_, (rw))

static inline double l2f_fold(double *acc)
{
    for (int w = L2F_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++)
            acc[j] += acc[j + w];
    return acc[0];
}

/* Runs shorter than L2F_SHORT elements (biases, norms) take a loop with 8
 * lanes and no prefetching: zeroing and folding 32 lanes would cost more
 * than the run.  Which loop a run takes depends only on its length, so
 * results stay independent of the thread count. */
#define L2F_SHORT 512
#define L2F_SHORT_LANES 8

static inline double l2f_fold_short(double *acc)
{
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* One sweep over n elements, a block of LANES at a time: FETCH, then
 * BODY(k, lane) for each element k of the block (vectorised across lanes),
 * then the tail elements on lanes 0, 1, ...  Declares the index i. */
#define L2F_SWEEP(n, LANES, FETCH, BODY)                                      \
    int64_t i = 0;                                                            \
    for (; i + (LANES) <= (n); i += (LANES)) {                                \
        FETCH;                                                                \
        L2F_SIMD                                                              \
        for (int j = 0; j < (LANES); j++)                                     \
            BODY(i + j, j);                                                   \
    }                                                                         \
    for (int j = 0; i < (n); i++, j++)                                        \
        BODY(i, j & ((LANES) - 1))

#define L2F_NOFETCH ((void)0)

/* The element operations; p, d, q, acc, f and a are the loop's variables. */
#define L2F_SSQ(k, lane)        do { double x = (double)p[k]; acc[lane] += x * x; } while (0)
#define L2F_SSQ_SCALE(k, lane)  do { double x = (double)p[k]; acc[lane] += x * x; \
                                     p[k] = x * f; } while (0)
#define L2F_SCALE(k, lane)      (p[k] = (double)p[k] * f)
#define L2F_ADD(k, lane)        (d[k] = (double)d[k] + a * (double)q[k])
#define L2F_ADD_SELF(k, lane)   do { double x = (double)d[k]; d[k] = x + a * x; } while (0)

/* Assignments to a float element round the float64 value once. */

/* sum p[k]^2 (l2f_ssq, which ignores f), and the same sum of the values
 * before p[k] *= f (l2f_ssq_scale), in one pass */
#define L2F_DEFINE_SUMS(NAME, PT, SUF, OP, FETCH_RW)                          \
L2F_CLONES static double NAME##_short_##SUF(PT *L2F_RESTRICT p, int64_t n,    \
                                            double f)                         \
{                                                                             \
    double acc[L2F_SHORT_LANES] = {0};                                        \
    (void)f;                                                                  \
    L2F_SWEEP(n, L2F_SHORT_LANES, L2F_NOFETCH, OP);                           \
    return l2f_fold_short(acc);                                               \
}                                                                             \
L2F_CLONES static double NAME##_##SUF(PT *L2F_RESTRICT p, int64_t n, double f)\
{                                                                             \
    if (n < L2F_SHORT)                                                        \
        return NAME##_short_##SUF(p, n, f);                                   \
    double acc[L2F_LANES] = {0};                                              \
    L2F_SWEEP(n, L2F_LANES, L2F_FETCH(p, i, FETCH_RW), OP);                   \
    return l2f_fold(acc);                                                     \
}

/* p[k] *= f */
#define L2F_DEFINE_SCALE(T, SUF)                                              \
L2F_CLONES static void l2f_scale_##SUF(T *L2F_RESTRICT p, int64_t n, double f)\
{                                                                             \
    L2F_SWEEP(n, L2F_LANES, L2F_FETCH(p, i, 1), L2F_SCALE);                   \
}

/* d[k] += a * q[k]; d and q do not overlap (the work table checks it) */
#define L2F_DEFINE_ADD(TD, TQ, SUF)                                           \
L2F_CLONES static void l2f_add_##SUF(TD *L2F_RESTRICT d,                      \
                                     const TQ *L2F_RESTRICT q,                \
                                     int64_t n, double a)                     \
{                                                                             \
    L2F_SWEEP(n, L2F_LANES, L2F_FETCH(d, i, 1); L2F_FETCH(q, i, 0), L2F_ADD);  \
}

/* d[k] += a * d[k]: dst is src, the same formula on one pointer */
#define L2F_DEFINE_ADD_SELF(T, SUF)                                           \
L2F_CLONES static void l2f_add_self_##SUF(T *L2F_RESTRICT d, int64_t n,       \
                                          double a)                           \
{                                                                             \
    L2F_SWEEP(n, L2F_LANES, L2F_FETCH(d, i, 1), L2F_ADD_SELF);                \
}

L2F_DEFINE_SUMS(l2f_ssq, const float, f32, L2F_SSQ, 0)
L2F_DEFINE_SUMS(l2f_ssq, const double, f64, L2F_SSQ, 0)
L2F_DEFINE_SUMS(l2f_ssq_scale, float, f32, L2F_SSQ_SCALE, 1)
L2F_DEFINE_SUMS(l2f_ssq_scale, double, f64, L2F_SSQ_SCALE, 1)
L2F_DEFINE_SCALE(float, f32)
L2F_DEFINE_SCALE(double, f64)
L2F_DEFINE_ADD(float, float, f32_f32)
L2F_DEFINE_ADD(float, double, f32_f64)
L2F_DEFINE_ADD(double, float, f64_f32)
L2F_DEFINE_ADD(double, double, f64_f64)
L2F_DEFINE_ADD_SELF(float, f32)
L2F_DEFINE_ADD_SELF(double, f64)

#endif
