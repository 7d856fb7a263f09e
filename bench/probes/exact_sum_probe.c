/* Probe for the reproducible sum: exact float32 sum of squares with float64
 * bins vs today's plain float64-lane loop, at 1 and 2 threads.
 *
 *   gcc -O3 -fopenmp -ffp-contract=off -fno-math-errno -DCLONES \
 *       bench/probes/exact_sum_probe.c -o /tmp/exact_sum_probe -lm
 *   /tmp/exact_sum_probe 124000000 9      # GPT-2's element count, 9 runs
 *
 * exact3: three bins (two extracting, one plain), capacity 2^12 per lane,
 *   the piece's max guessed from the previous piece and checked after it.
 * exact2: two bins (one extracting, one plain) held at a fixed offset
 *   (1.5 * 2^(L+52)) so that a flush every 2^CBITS elements per lane is an
 *   integer subtraction of bit patterns; a block whose max or min falls
 *   outside the bins' exact range is redone by the scalar exact path.
 * exact2f: exact2 without the max (A1's binade is checked at the flush:
 *   squares are >= 0, so A1 only grows), the tiny check by one unsigned min,
 *   and A1 + x*x, x*x - q fused; the scheme l2fast's _exact.h uses.
 *   (exact3's figures: run an older revision of this file.)
 * All are exact (the sum is a Python-free superaccumulator of 32-bit
 * digits), so any grid choice gives the same total. */
#define _GNU_SOURCE
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#define PIECE 65536
#ifndef LANES
#define LANES 16
#endif
#define NDIG 24          /* 32-bit digits from 2^-320 */
#define DIG_BASE (-320)

#ifdef CLONES
#define CL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CL
#endif

static double now(void){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+1e-9*t.tv_nsec;}

CL static double plain_piece(const float *restrict x, int64_t n) {
    double acc[32] = {0};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 128; k += 64) __builtin_prefetch((const char*)(x+i)+1024+k, 0, 3);
        #pragma omp simd
        for (int j = 0; j < 32; j++) { double v = x[i+j]; acc[j] += v*v; }
    }
    for (int j = 0; i < n; i++, j++) { double v = x[i]; acc[j&31] += v*v; }
    for (int w = 16; w; w /= 2) for (int j = 0; j < w; j++) acc[j] += acc[j+w];
    return acc[0];
}

static int top_exp(uint32_t umax) {  /* E with (2^(e+1))^2 <= 2^E, x < 2^(e+1) */
    float f; memcpy(&f, &umax, 4); int e; frexpf(f, &e); return 2 * e + 4; /* 4 binades slack (even) */
}

typedef struct { int64_t d[NDIG]; } superacc;

static void sa_add(superacc *s, int64_t S, int L) {  /* += S * 2^L, |S| < 2^62 */
    if (!S) return;
    int off = L - DIG_BASE; int k = off >> 5, sh = off & 31;
    __int128 v = (__int128)S * ((__int128)1 << sh);
    for (int i = 0; i < 3; i++) { s->d[k + i] += (int64_t)(v & 0xffffffff); v >>= 32; }
    s->d[k + 3] += (int64_t)v;
}

/* track the max and the smallest nonzero |x| (as bits), square, deposit into
 * the top bin A1; leaves the remainder r */
#define FIRST_BIN(k, j)                                                  \
    uint32_t u = xb[k] & 0x7fffffffu, u1 = u - 1;                         \
    umax[j] = u > umax[j] ? u : umax[j];                                  \
    umin[j] = u1 < umin[j] ? u1 : umin[j];                                \
    double v = (double)x[k]; v = v * v;                                   \
    double t = A1[j] + v, q = t - A1[j], r = v - q; A1[j] = t

/* deposit one piece with top exponent E (all v < 2^E); returns 0 ok, else 1 */
CL static int bins_piece(const float *restrict x, int64_t n, int E, int64_t S[3], uint32_t *umax_out)
{
    const int L1 = E - 39, L2 = L1 - 38, L3 = L2 - 40;
    const double M1 = ldexp(1.5, L1 + 52), M2 = ldexp(1.5, L2 + 52);
    double A1[LANES], A2[LANES], A3[LANES];
    uint32_t umax[LANES], umin[LANES];
    for (int j = 0; j < LANES; j++) { A1[j] = M1; A2[j] = M2; A3[j] = 0; umax[j] = 0; umin[j] = 0xffffffffu; }
    const uint32_t *xb = (const uint32_t *)x;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int k = 0; k < LANES*4; k += 64) __builtin_prefetch((const char*)(x+i)+1024+k, 0, 3);
        #pragma omp simd
        for (int j = 0; j < LANES; j++) {
            uint32_t u = xb[i+j] & 0x7fffffffu;
            umax[j] = u > umax[j] ? u : umax[j];
            uint32_t u1 = u - 1;
            umin[j] = u1 < umin[j] ? u1 : umin[j];
            double v = (double)x[i+j]; v = v * v;
            double t = A1[j] + v, q = t - A1[j], r = v - q; A1[j] = t;
            double t2 = A2[j] + r, q2 = t2 - A2[j], r2 = r - q2; A2[j] = t2;
            A3[j] += r2;
        }
    }
    for (int j = 0; i < n; i++, j++) {
        FIRST_BIN(i, j);
        double t2 = A2[j] + r, q2 = t2 - A2[j], r2 = r - q2; A2[j] = t2;
        A3[j] += r2;
    }
    uint32_t mx = 0, mn = 0xffffffffu;
    for (int j = 0; j < LANES; j++) { mx = umax[j] > mx ? umax[j] : mx; mn = umin[j] < mn ? umin[j] : mn; }
    *umax_out = mx;
    /* capacity: |x| < 2^(E/2) ; exactness: |x| >= 2^((L3+47)/2) */
    float hi = ldexpf(1.0f, E / 2), lo = ldexpf(1.0f, (L3 + 48) / 2 + 1);
    uint32_t hib, lob; memcpy(&hib, &hi, 4); memcpy(&lob, &lo, 4);
    if (mx >= hib || (mn != 0xffffffffu && mn + 1 < lob)) return 1;
    int64_t s1 = 0, s2 = 0, s3 = 0;
    for (int j = 0; j < LANES; j++) {
        s1 += (int64_t)ldexp(A1[j] - M1, -L1); s2 += (int64_t)ldexp(A2[j] - M2, -L2);
        s3 += (int64_t)ldexp(A3[j], -L3);
    }
    S[0] = s1; S[1] = s2; S[2] = s3;
    return 0;
}

static double sa_value(superacc *s) {  /* approx for the probe: long double */
    long double v = 0; for (int k = NDIG - 1; k >= 0; k--) v += ldexpl((long double)s->d[k], DIG_BASE + 32 * k);
    return (double)v;
}

static void exact_piece_slow(const float *x, int64_t n, superacc *s) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u; memcpy(&u, &x[i], 4); u &= 0x7fffffffu;
        if (!u) continue;
        uint32_t ex = u >> 23, m = u & 0x7fffff; int e;
        if (ex) { m |= 0x800000; e = (int)ex - 150; } else e = -149;
        sa_add(s, (int64_t)m * m, 2 * e);
    }
}

static int64_t redo_count;

#ifndef CBITS
#define CBITS 5            /* elements per lane between flushes: 2^CBITS */
#endif
#define K2_L1(E) ((E) + CBITS - 51)
#define K2_L2(E) ((E) + 2 * CBITS - 102)
static inline int64_t bits64(double d) { int64_t b; memcpy(&b, &d, 8); return b; }
CL static int bins2_piece(const float *restrict x, int64_t n, int E, int64_t S[2], uint32_t *umax_out, superacc *slow)
{
    const int L1 = K2_L1(E), L2 = K2_L2(E);
    const double M1 = ldexp(1.5, L1 + 52), M2 = ldexp(1.5, L2 + 52);
    const int64_t B1 = bits64(M1), B2 = bits64(M2);
    float hi = ldexpf(1.0f, E / 2), lo = ldexpf(1.0f, (L2 + 48 + 256) / 2 - 128);
    uint32_t hib, lob; memcpy(&hib, &hi, 4); memcpy(&lob, &lo, 4);
    double A1[LANES], A2[LANES];
    int64_t I1[LANES], I2[LANES];
    uint32_t umax[LANES], umin[LANES], gmax = 0;
    for (int j = 0; j < LANES; j++) { A1[j] = M1; A2[j] = M2; I1[j] = I2[j] = 0; }
    const uint32_t *xb = (const uint32_t *)x;
    const int64_t block = (int64_t)LANES << CBITS;
    int fails = 0;
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        int64_t m = n - b0 < block ? n - b0 : block, i = b0;
        for (int j = 0; j < LANES; j++) { umax[j] = 0; umin[j] = 0xffffffffu; }
        for (; i + LANES <= b0 + m; i += LANES) {
            for (int k = 0; k < LANES*4; k += 64) __builtin_prefetch((const char*)(x+i)+1024+k, 0, 3);
            #pragma omp simd
            for (int j = 0; j < LANES; j++) {
                FIRST_BIN(i + j, j);
                A2[j] += r;
            }
        }
        for (int j = 0; i < b0 + m; i++, j++) {
            FIRST_BIN(i, j);
            A2[j] += r;
        }
        uint32_t mx = 0, mn = 0xffffffffu;
        for (int j = 0; j < LANES; j++) { mx = umax[j] > mx ? umax[j] : mx; mn = umin[j] < mn ? umin[j] : mn; }
        gmax = mx > gmax ? mx : gmax;
        if (mx >= hib || (mn != 0xffffffffu && mn + 1 < lob)) {
            fails++;
            exact_piece_slow(x + b0, m, slow);
            for (int j = 0; j < LANES; j++) { A1[j] = M1; A2[j] = M2; }
            continue;
        }
        #pragma omp simd
        for (int j = 0; j < LANES; j++) {
            int64_t a1, a2; memcpy(&a1, &A1[j], 8); memcpy(&a2, &A2[j], 8);
            I1[j] += a1 - B1; I2[j] += a2 - B2; A1[j] = M1; A2[j] = M2;
        }
    }
    int64_t s1 = 0, s2 = 0;
    for (int j = 0; j < LANES; j++) { s1 += I1[j]; s2 += I2[j]; }
    *umax_out = gmax;
    S[0] = s1; S[1] = s2;
    return fails;
}

/* exact2f: exact2 without the max (A1's capacity is checked at the flush:
 * all terms are >= 0, so A1 only grows), the tiny check by one unsigned min
 * on the float bits, and t = A1 + x*x, r = x*x - q fused (x*x is exact). */
__attribute__((optimize("fp-contract=fast")))
CL static int bins2f_piece(const float *restrict x, int64_t n, int E, int64_t S[2], uint32_t *umax_out, superacc *slow)
{
    const int L1 = K2_L1(E), L2 = K2_L2(E);
    const double M1 = ldexp(1.5, L1 + 52), M2 = ldexp(1.5, L2 + 52);
    const int64_t B1 = bits64(M1), B2 = bits64(M2);
    float lo = ldexpf(1.0f, (L2 + 48 + 256) / 2 - 128);
    uint32_t lob; memcpy(&lob, &lo, 4);
    double A1[LANES], A2[LANES];
    int64_t I1[LANES], I2[LANES];
    uint32_t umin[LANES];
    for (int j = 0; j < LANES; j++) { A1[j] = M1; A2[j] = M2; I1[j] = I2[j] = 0; }
    const uint32_t *xb = (const uint32_t *)x;
    const int64_t block = (int64_t)LANES << CBITS;
    int fails = 0;
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        int64_t m = n - b0 < block ? n - b0 : block, i = b0;
        for (int j = 0; j < LANES; j++) umin[j] = 0xffffffffu;
        for (; i + LANES <= b0 + m; i += LANES) {
            for (int k = 0; k < LANES*4; k += 64) __builtin_prefetch((const char*)(x+i)+1024+k, 0, 3);
            #pragma omp simd
            for (int j = 0; j < LANES; j++) {
                uint32_t u1 = (xb[i+j] << 1) - 2;
                umin[j] = u1 < umin[j] ? u1 : umin[j];
                double v = (double)x[i+j];
                double t = A1[j] + v * v, q = t - A1[j];
                A2[j] += v * v - q; A1[j] = t;
            }
        }
        for (int j = 0; i < b0 + m; i++, j++) {
            uint32_t u1 = (xb[i] << 1) - 2;
            umin[j] = u1 < umin[j] ? u1 : umin[j];
            double v = (double)x[i];
            double t = A1[j] + v * v, q = t - A1[j];
            A2[j] += v * v - q; A1[j] = t;
        }
        uint32_t mn = 0xffffffffu; uint64_t over = 0;
        for (int j = 0; j < LANES; j++) { mn = umin[j] < mn ? umin[j] : mn; over |= (uint64_t)(bits64(A1[j]) - B1) >> 51; }
        if (over || mn + 2 < 2 * lob) {
            fails++;
            exact_piece_slow(x + b0, m, slow);
            for (int j = 0; j < LANES; j++) { A1[j] = M1; A2[j] = M2; }
            continue;
        }
        #pragma omp simd
        for (int j = 0; j < LANES; j++) {
            int64_t a1, a2; memcpy(&a1, &A1[j], 8); memcpy(&a2, &A2[j], 8);
            I1[j] += a1 - B1; I2[j] += a2 - B2; A1[j] = M1; A2[j] = M2;
        }
    }
    int64_t s1 = 0, s2 = 0;
    for (int j = 0; j < LANES; j++) { s1 += I1[j]; s2 += I2[j]; }
    *umax_out = 0;
    S[0] = s1; S[1] = s2;
    return fails;
}
static void piece2f(const float *xp, int64_t m, int *E, superacc *mine) {
    int64_t S[2]; uint32_t mx;
    int f = bins2f_piece(xp, m, *E, S, &mx, mine);
    __atomic_fetch_add(&redo_count, f, __ATOMIC_RELAXED);
    sa_add(mine, S[0], K2_L1(*E)); sa_add(mine, S[1], K2_L2(*E));
}

/* one piece into `mine` with the guessed top exponent *E (updated) */
static void piece3(const float *xp, int64_t m, int *E, superacc *mine) {
    int64_t S[3]; uint32_t mx;
    if (bins_piece(xp, m, *E, S, &mx)) {
        __atomic_fetch_add(&redo_count, 1, __ATOMIC_RELAXED);
        *E = top_exp(mx ? mx : 1);
        if (bins_piece(xp, m, *E, S, &mx)) { exact_piece_slow(xp, m, mine); return; }
    }
    int L1 = *E - 39, L2 = L1 - 38, L3 = L2 - 40;
    sa_add(mine, S[0], L1); sa_add(mine, S[1], L2); sa_add(mine, S[2], L3);
}

static void piece2(const float *xp, int64_t m, int *E, superacc *mine) {
    int64_t S[2]; uint32_t mx;
    int f = bins2_piece(xp, m, *E, S, &mx, mine);
    __atomic_fetch_add(&redo_count, f, __ATOMIC_RELAXED);
    sa_add(mine, S[0], K2_L1(*E)); sa_add(mine, S[1], K2_L2(*E));
    if (f > 2) *E = top_exp(mx ? mx : 1);
}

static double exact_sum(const float *x, int64_t n, int nt,
                        void (*piece)(const float *, int64_t, int *, superacc *)) {
    int64_t np = (n + PIECE - 1) / PIECE;
    superacc tot; memset(&tot, 0, sizeof tot);
    #pragma omp parallel num_threads(nt)
    {
        superacc mine; memset(&mine, 0, sizeof mine);
        int E = 0, have = 0;
        #pragma omp for schedule(dynamic) nowait
        for (int64_t p = 0; p < np; p++) {
            const float *xp = x + p * PIECE; int64_t m = n - p * PIECE < PIECE ? n - p * PIECE : PIECE;
            if (!have) {  /* first guess: the max of the first 64 elements */
                uint32_t u = 0;
                for (int k = 0; k < 64 && k < m; k++) { uint32_t b; memcpy(&b, &xp[k], 4); b &= 0x7fffffff; if (b > u) u = b; }
                E = top_exp(u ? u : 1); have = 1;
            }
            piece(xp, m, &E, &mine);
        }
        #pragma omp critical
        for (int k = 0; k < NDIG; k++) tot.d[k] += mine.d[k];
    }
    return sa_value(&tot);
}

static double plain_sum(const float *x, int64_t n, int nt, double *slots) {
    int64_t np = (n + PIECE - 1) / PIECE;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (int64_t p = 0; p < np; p++) {
        int64_t m = n - p * PIECE < PIECE ? n - p * PIECE : PIECE;
        slots[p] = plain_piece(x + p * PIECE, m);
    }
    double s = 0; for (int64_t p = 0; p < np; p++) s += slots[p]; return s;
}

static int cmpd(const void *a, const void *b) { double x = *(double*)a, y = *(double*)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 124000000;
    int reps = argc > 2 ? atoi(argv[2]) : 11;
    float *x = aligned_alloc(64, ((n * 4 + 63) / 64) * 64);
    uint64_t st = 12345;
    for (int64_t i = 0; i < n; i++) {  /* ~N(0, 0.02) by sum of uniforms */
        double s = 0; for (int k = 0; k < 4; k++) { st = st * 6364136223846793005ULL + 1442695040888963407ULL; s += (st >> 11) * 0x1.0p-53; }
        x[i] = (float)((s - 2.0) * 0.02 * 1.732);
    }
    double *slots = malloc(((n + PIECE - 1) / PIECE) * sizeof(double));
    long double ref = 0; for (int64_t i = 0; i < n; i++) ref += (long double)x[i] * x[i];
    for (int nt = 1; nt <= 2; nt++) {
        double tp[64], te[64], t2s[64], vp = 0, ve = 0, v2 = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = now(); vp = plain_sum(x, n, nt, slots); double t1 = now();
            ve = exact_sum(x, n, nt, piece2f); double t2 = now();
            v2 = exact_sum(x, n, nt, piece2); double t3 = now();
            tp[r] = t1 - t0; te[r] = t2 - t1; t2s[r] = t3 - t2;
        }
        qsort(tp, reps, sizeof(double), cmpd); qsort(te, reps, sizeof(double), cmpd); qsort(t2s, reps, sizeof(double), cmpd);
        double mp = tp[reps/2], me = te[reps/2], m2 = t2s[reps/2];
        printf("threads %d: plain %.2f ms (%.1f GB/s)  exact2f %.2f ms (%.3f)  exact2 %.2f ms (%.1f GB/s, %.3f)  redo/call %.1f\n",
               nt, mp*1e3, n*4/mp/1e9, me*1e3, mp/me, m2*1e3, n*4/m2/1e9, mp/m2, (double)redo_count / (2.0*reps));
        redo_count = 0;
        printf("   plain %.17g exact3 %.17g exact2 %.17g ref %.17Lg\n", vp, ve, v2, ref);
    }
    return 0;
}
