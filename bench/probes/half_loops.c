/* Probe for the 16-bit loops of _loops.h: the contiguous sum of squares and
 * scale loops of float32, bfloat16 and float16 -- the generic ones (target
 * clones), the x86-64-v3 ones and the x86-64-v4 ones (on a CPU without
 * AVX-512 the v4 rows run the v3 loops) -- compiled from the shipped header
 * with the shipped flags, called per piece of 65,536 elements as the driver
 * calls them, timed alternately on one thread in cache (L2) and on 1 and 2
 * threads out of cache; medians, elements per ns and GB/s (bytes read, or
 * read + written).
 *
 *   gcc -O3 -fno-math-errno -ffp-contract=off -fopenmp -Il2fast \
 *       bench/probes/half_loops.c -o /tmp/half_loops -lm
 *   flock /tmp/l2fast-cpu.lock /tmp/half_loops [elements] [runs]
 *
 * First it checks, on N(0, 0.02) data and on every 16-bit pattern: each
 * 16-bit sum bitwise equal to the float32 upcast's (generic, v3, v4 and the
 * v4 fused pass, at start offsets 0..33); every scaled element (generic,
 * v3, v4, the fused pass) equal to the exact rounding, for a set of
 * factors. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "_loops.h"

#ifndef L2F_HAVE_CLONES
#error "the probe compares the x86-64-v3 loops with the generic ones"
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}
static double normal(void)
{
    double u = ((rng() >> 11) + 0.5) * 0x1p-53, v = ((rng() >> 11) + 0.5) * 0x1p-53;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

typedef double (*sum_fn)(const void *, int64_t);
typedef void (*upd_fn)(void *, int64_t, double);

static double sum_f32(const void *p, int64_t n) { return l2f_ssq_contiguous_f32(p, n, 0, NULL); }
static double sum_bf16(const void *p, int64_t n) { return l2f_ssq_contiguous_bf16(p, n, 0, NULL); }
static double sum_f16(const void *p, int64_t n) { return l2f_ssq_contiguous_f16(p, n, 0, NULL); }
static double sum_bf16_v3(const void *p, int64_t n)
{
    return n < L2F_SHORT ? l2f_ssq_contiguous_bf16(p, n, 0, NULL) : l2f_ssq_v3_bf16(p, n, NULL);
}
static double sum_f16_v3(const void *p, int64_t n)
{
    return n < L2F_SHORT ? l2f_ssq_contiguous_f16(p, n, 0, NULL) : l2f_ssq_v3_f16(p, n, NULL);
}
static int have_v4(void) { return l2f_level16() >= 4; }
static double sum_bf16_v4(const void *p, int64_t n)
{
    if (!have_v4()) return sum_bf16_v3(p, n);
    return n < L2F_SHORT ? l2f_ssq_contiguous_bf16(p, n, 0, NULL) : l2f_ssq_v4_bf16((uint16_t *)p, n, 0, 1.0f, NULL);
}
static double sum_f16_v4(const void *p, int64_t n)
{
    if (!have_v4()) return sum_f16_v3(p, n);
    return n < L2F_SHORT ? l2f_ssq_contiguous_f16(p, n, 0, NULL) : l2f_ssq_v4_f16((uint16_t *)p, n, 0, 1.0f, NULL);
}
/* The v4 fused pass (n >= L2F_SHORT): the sum, and d *= f. */
static double fused_v4(int which, uint16_t *d, int64_t n, double f)
{
    const float c = l2f_factor32(f);
    if (!have_v4() || c != c)
        return which ? l2f_ssq_scale_contiguous_f16(d, n, f, NULL) : l2f_ssq_scale_contiguous_bf16(d, n, f, NULL);
    return which ? l2f_ssq_scale_v4_f16(d, n, f, c, NULL) : l2f_ssq_scale_v4_bf16(d, n, f, c, NULL);
}
static void scale_f32(void *p, int64_t n, double f) { l2f_scale_contiguous_f32(p, n, f, NULL); }
static void scale_bf16(void *p, int64_t n, double f) { l2f_scale_contiguous_bf16(p, n, f, NULL); }
static void scale_f16(void *p, int64_t n, double f) { l2f_scale_contiguous_f16(p, n, f, NULL); }
static void scale_bf16_v3(void *p, int64_t n, double f)
{
    float c = l2f_factor32(f);
    if (c != c) l2f_scale_contiguous_bf16(p, n, f, NULL); else l2f_scale_v3_bf16(p, n, f, c, NULL);
}
static void scale_f16_v3(void *p, int64_t n, double f)
{
    float c = l2f_factor32(f);
    if (c != c) l2f_scale_contiguous_f16(p, n, f, NULL); else l2f_scale_v3_f16(p, n, f, c, NULL);
}
static void scale_bf16_v4(void *p, int64_t n, double f)
{
    float c = l2f_factor32(f);
    if (c != c || !have_v4()) scale_bf16_v3(p, n, f); else l2f_scale_v4_bf16(p, n, f, c, NULL);
}
static void scale_f16_v4(void *p, int64_t n, double f)
{
    float c = l2f_factor32(f);
    if (c != c || !have_v4()) scale_f16_v3(p, n, f); else l2f_scale_v4_f16(p, n, f, c, NULL);
}

/* fn over n elements in pieces of L2F_CHUNK, on `threads` threads. */
static double run_sum(sum_fn fn, const char *p, size_t size, int64_t n, int threads)
{
    int64_t pieces = (n + L2F_CHUNK - 1) / L2F_CHUNK;
    double s = 0;
    if (threads == 1) {
        for (int64_t k = 0; k < pieces; k++)
            s += fn(p + k * L2F_CHUNK * size, n - k * L2F_CHUNK < L2F_CHUNK ? n - k * L2F_CHUNK : L2F_CHUNK);
        return s;
    }
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+:s)
    for (int64_t k = 0; k < pieces; k++) {
        int64_t m = n - k * L2F_CHUNK < L2F_CHUNK ? n - k * L2F_CHUNK : L2F_CHUNK;
        s += fn(p + k * L2F_CHUNK * size, m);
    }
    return s;
}
static void run_upd(upd_fn fn, char *p, size_t size, int64_t n, double f, int threads)
{
    int64_t pieces = (n + L2F_CHUNK - 1) / L2F_CHUNK;
    if (threads == 1) {
        for (int64_t k = 0; k < pieces; k++)
            fn(p + k * L2F_CHUNK * size, n - k * L2F_CHUNK < L2F_CHUNK ? n - k * L2F_CHUNK : L2F_CHUNK, f);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t k = 0; k < pieces; k++) {
        int64_t m = n - k * L2F_CHUNK < L2F_CHUNK ? n - k * L2F_CHUNK : L2F_CHUNK;
        fn(p + k * L2F_CHUNK * size, m, f);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t bits(double x) { return l2f_bits64(x); }

/* The checks; the number of failures. */
static int64_t check(const uint16_t *bf, const uint16_t *hf, int64_t n)
{
    int64_t bad = 0;
    float *up = aligned_alloc(64, (n + 64) * 4);
    uint16_t *t = aligned_alloc(64, (n + 64) * 2), *u = aligned_alloc(64, (n + 64) * 2);
    uint16_t *v4s = aligned_alloc(64, (n + 64) * 2);
    /* sums: lengths around the short/long and block boundaries, start offsets
     * 0..33 (every peel of the v4 loops; the whole array at 0..2 only) */
    const int64_t lens[] = {511, 512, 513, 767, 768, 1000, 4095, 65536, n};
    for (int q = 0; q < 9; q++)
        for (int off = 0; off < (lens[q] == n ? 3 : 34); off++) {
            int64_t m = lens[q] < n - off ? lens[q] : n - off;
            for (int which = 0; which < 2; which++) {
                const uint16_t *src = (which ? hf : bf) + off;
                for (int64_t k = 0; k < m; k++)
                    up[k] = which ? l2f_f16_to_f32(src[k]) : l2f_bf16_to_f32(src[k]);
                double want = run_sum(sum_f32, (char *)up, 4, m, 1);
                double g = run_sum(which ? sum_f16 : sum_bf16, (const char *)src, 2, m, 1);
                double v = run_sum(which ? sum_f16_v3 : sum_bf16_v3, (const char *)src, 2, m, 1);
                double v4 = run_sum(which ? sum_f16_v4 : sum_bf16_v4, (const char *)src, 2, m, 1);
                double fu = v4;
                if (m <= 65536 && m >= L2F_SHORT) {   /* the fused pass, one piece */
                    uint16_t *d = v4s + off;           /* at the same offset */
                    for (int64_t k = 0; k < m; k++)
                        d[k] = src[k];
                    fu = fused_v4(which, d, m, 0.75);
                    for (int64_t k = 0; k < m; k++) {
                        uint16_t want16 = which ? l2f_round_f16(l2f_f16_to_f64(src[k]) * 0.75)
                                                : l2f_round_bf16(l2f_bf16_to_f64(src[k]) * 0.75);
                        if (d[k] != want16 && bad++ < 20)
                            printf("  fused %s n=%lld off=%d: element %lld %04x -> %04x, want %04x\n",
                                   which ? "f16" : "bf16", (long long)m, off, (long long)k,
                                   src[k], d[k], want16);
                    }
                }
                if (bits(g) != bits(want) || bits(v) != bits(want) || bits(v4) != bits(want)
                    || bits(fu) != bits(want)) {
                    printf("  sum %s n=%lld off=%d: f32 %a generic %a v3 %a v4 %a fused %a\n",
                           which ? "f16" : "bf16", (long long)m, off, want, g, v, v4, fu);
                    bad++;
                }
            }
        }
    /* every bit pattern, then N(0, 0.02) data, times factors, vs the exact rounding */
    const double fs[] = {0.999, 1 / 0.999, 1 - 1e-8, 1 + 3e-3, 0.5, 2, 3, 1e-30, 1e30, 0x1p-126,
                         1e-40, 0.0, -0.75, 65504, 1.0 / 65504, 0x1.000002p0, 0x1.fffffep-1};
    for (int q = 0; q < (int)(sizeof fs / sizeof *fs); q++)
        for (int which = 0; which < 2; which++)
            for (int data = 0; data < 2; data++) {
                int64_t m = data ? (n < (1 << 20) ? n : (1 << 20)) : 65536 + 7;
                const uint16_t *src = data ? (which ? hf : bf) : NULL;
                for (int64_t k = 0; k < m; k++)
                    t[k] = u[k] = v4s[k] = src ? src[k] : (uint16_t)k;
                run_upd(which ? scale_f16 : scale_bf16, (char *)t, 2, m, fs[q], 1);
                run_upd(which ? scale_f16_v3 : scale_bf16_v3, (char *)u, 2, m, fs[q], 1);
                run_upd(which ? scale_f16_v4 : scale_bf16_v4, (char *)v4s, 2, m, fs[q], 1);
                int64_t wrong = 0;
                for (int64_t k = 0; k < m; k++) {
                    uint16_t x = src ? src[k] : (uint16_t)k;
                    uint16_t want = which ? l2f_round_f16(l2f_f16_to_f64(x) * fs[q])
                                          : l2f_round_bf16(l2f_bf16_to_f64(x) * fs[q]);
                    if (t[k] != want || u[k] != want || v4s[k] != want) {
                        if (wrong++ < 3)
                            printf("  scale %s by %a: %04x -> want %04x generic %04x v3 %04x v4 %04x\n",
                                   which ? "f16" : "bf16", fs[q], x, want, t[k], u[k], v4s[k]);
                    }
                }
                bad += wrong;
            }
    free(up); free(t); free(u); free(v4s);
    return bad;
}

#define NSUM 7
#define NFN 14
static const char *names[NFN] = {"ssq f32", "ssq bf16", "ssq bf16 v3", "ssq f16", "ssq f16 v3",
                                 "ssq bf16 v4", "ssq f16 v4", "scale f32", "scale bf16", "scale bf16 v3", "scale f16",
                                 "scale f16 v3", "scale bf16 v4", "scale f16 v4"};

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 32 << 20;
    int runs = argc > 2 ? atoi(argv[2]) : 9;
    if (runs > 64) runs = 64;
    float *f32 = aligned_alloc(64, n * 4);
    uint16_t *bf = aligned_alloc(64, n * 2), *hf = aligned_alloc(64, n * 2);
    for (int64_t k = 0; k < n; k++) {
        float v = (float)(0.02 * normal());
        bf[k] = l2f_round_bf16(v);
        hf[k] = l2f_round_f16(v);
        f32[k] = v;
    }
    /* a few special values in the check's data: NaN, inf, subnormals, huge */
    const uint16_t sb[] = {0x7fc1, 0xff80, 0x0001, 0x8003, 0x7f7f, 0x7f81};
    const uint16_t sh[] = {0x7e01, 0xfc00, 0x0001, 0x8003, 0x7bff, 0x7c01};
    for (int k = 0; k < 6; k++) {
        bf[1000 + 977 * k] = sb[k];
        hf[1000 + 977 * k] = sh[k];
    }
    int64_t bad = check(bf, hf, n);
    printf("checks: %lld failure(s)\n", (long long)bad);
    for (int k = 0; k < 6; k++) {    /* finite data for the timings */
        bf[1000 + 977 * k] = 0;
        hf[1000 + 977 * k] = 0;
    }

    void *bufs[NFN] = {f32, bf, bf, hf, hf, bf, hf, f32, bf, bf, hf, hf, bf, hf};
    size_t sizes[NFN] = {4, 2, 2, 2, 2, 2, 2, 4, 2, 2, 2, 2, 2, 2};
    sum_fn sums[NSUM] = {sum_f32, sum_bf16, sum_bf16_v3, sum_f16, sum_f16_v3, sum_bf16_v4, sum_f16_v4};
    upd_fn upds[NFN - NSUM] = {scale_f32, scale_bf16, scale_bf16_v3, scale_f16, scale_f16_v3,
                               scale_bf16_v4, scale_f16_v4};
    struct { const char *what; int64_t n; int threads; } cases[] = {
        {"in L2 (64 Ki elements), 1 thread", L2F_CHUNK, 1},
        {"memory, 1 thread", n, 1},
        {"memory, 2 threads", n, 2},
    };
    for (int c = 0; c < 3; c++) {
        int64_t m = cases[c].n;
        int reps = m == L2F_CHUNK ? 2000 : 1;
        double t[NFN][64];
        for (int r = 0; r < runs; r++)
            for (int k = 0; k < NFN; k++) {    /* alternating: one run of each */
                double t0 = now(), sink = 0;
                for (int q = 0; q < reps; q++) {
                    if (k < NSUM)
                        sink += run_sum(sums[k], bufs[k], sizes[k], m, cases[c].threads);
                    else
                        run_upd(upds[k - NSUM], bufs[k], sizes[k], m,
                                (q + r) & 1 ? 1 / 0.999 : 0.999, cases[c].threads);
                }
                t[k][r] = (now() - t0) / reps;
                if (sink == 42.0) printf(" ");
            }
        printf("%s\n", cases[c].what);
        for (int k = 0; k < NFN; k++) {
            qsort(t[k], runs, sizeof(double), cmp_double);
            double med = t[k][runs / 2];
            double bytes = (double)m * sizes[k] * (k < NSUM ? 1 : 2);
            printf("  %-14s %9.3f ms  %6.2f elem/ns  %6.1f GB/s\n", names[k], med * 1e3,
                   m / med * 1e-9, bytes / med * 1e-9);
        }
    }
    return bad != 0;
}
