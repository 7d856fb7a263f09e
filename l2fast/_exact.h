/* Exact sums of squares: each piece's squares summed exactly into the
 * integer accumulator of _acc.h, at nearly the speed of a float64 loop.
 *
 * The bins.  A round of 512 elements (16 lanes x 2^5) is deposited into
 * float64 accumulators held at a fixed offset (M = 1.5 * 2^(L+52)), where
 * every value is a multiple of 2^L and adding is exact while it stays in
 * its binade [2^(L+52), 2^(L+53)):
 *
 *   t = a1 + x*x;  q = t - a1;  a1 = t     x*x rounded to a multiple of 2^L1
 *   a2 += x*x - q                          the rest, exact, on the grid 2^L2
 *
 * (float64 inputs: x*x is rounded, so its low part fma(x, x, -x*x) and the
 * rest of the rest go to a third grid 2^L3.)  With E such that every x*x <
 * 2^E, L1 = E + 5 - 51 lets a1 take 2^5 squares per lane; each grid is
 * 2^(51-5) below the one above.  After a round, (bits(a) - bits(M)) is the
 * lane's integer count of 2^L units: it is added to int64 lane totals (the
 * flush), and these go to the accumulator at the end of the piece.
 *
 * The checks.  E is guessed from the round before.  A round is exact when
 * (1) a1 stayed in its binade: squares are >= 0, so a1 only grows, and its
 * final value tells; (2) no nonzero |x| was so small that x*x has bits below
 * the lowest grid: one unsigned min over the bits of |x|.  Otherwise the
 * round is redone with E from its max, elements that do not fit (tiny,
 * huge, inf, NaN) masked out of the bins and added one by one, exactly.
 * Either way the total is the exact sum: any E, any split, any order give
 * the same integer.
 */
#ifndef L2FAST_EXACT_H
#define L2FAST_EXACT_H

#include <stdlib.h>
#include <limits.h>
#include "_acc.h"
#include "_loops.h"

#define L2F_XLANES 16
#define L2F_CBITS 5
#define L2F_ROUND (L2F_XLANES << L2F_CBITS)

/* Per dtype: the bits' unsigned type, reading them, the bins, the format
 * (fraction bits, bias), the range of E the bins can hold. */
#define L2F_UT_f32 uint32_t
#define L2F_UT_f64 uint64_t
#define L2F_UT_f16 uint16_t
#define L2F_UT_bf16 uint16_t
#define L2F_BITS_f32(p, k) l2f_bits32((p)[k])
#define L2F_BITS_f64(p, k) l2f_bits64((p)[k])
#define L2F_BITS_f16(p, k) ((p)[k])
#define L2F_BITS_bf16(p, k) ((p)[k])
#define L2F_VALUE_f32(u) ((double)l2f_float32(u))
#define L2F_VALUE_f64(u) l2f_float64(u)
#define L2F_VALUE_f16(u) l2f_f16_to_f64(u)
#define L2F_VALUE_bf16(u) l2f_bf16_to_f64(u)
#define L2F_DEP_f32 L2F_DEP2
#define L2F_DEP_f16 L2F_DEP2
#define L2F_DEP_bf16 L2F_DEP2
#define L2F_DEP_f64 L2F_DEP3
#define L2F_FORMAT_f32 2, 23, 127, -300, 256
#define L2F_FORMAT_f16 2, 10, 15, -300, 256
#define L2F_FORMAT_bf16 2, 7, 127, -300, 256
#define L2F_FORMAT_f64 3, 52, 1023, -936, 1016

/* Two bins: x*x is exact (float32 and 16-bit values), and may be fused. */
#define L2F_DEP2(x, j)                                                        \
    do {                                                                      \
        double t_ = a1[j] + (x) * (x), q_ = t_ - a1[j];                       \
        a2[j] += (x) * (x) - q_;                                              \
        a1[j] = t_;                                                           \
    } while (0)
/* Three bins: x*x = v + lo exactly. */
#define L2F_DEP3(x, j)                                                        \
    do {                                                                      \
        double v_ = (x) * (x), lo_ = __builtin_fma((x), (x), -v_);            \
        double t_ = a1[j] + v_, r_ = v_ - (t_ - a1[j]);                       \
        double t2_ = a2[j] + r_;                                              \
        a3[j] += r_ - (t2_ - a2[j]);                                          \
        double t3_ = t2_ + lo_;                                               \
        a3[j] += lo_ - (t3_ - t2_);                                           \
        a2[j] = t3_;                                                          \
        a1[j] = t_;                                                           \
    } while (0)

/* The grids for one E. */
typedef struct {
    int E, L[3];
    double M[3];
    int64_t B[3];
    uint64_t tiny2m2;   /* 2 * bits(smallest |x| the bins hold exactly) - 2 */
    uint64_t huge2;     /* 2 * bits(2^(E/2)): |x| below it has x*x < 2^E */
} l2f_grid;

/* bits of 2^e in a format, clamped to (1, inf] */
static inline uint64_t l2f_pow2_bits(int e, int frac, int bias)
{
    if (e > bias)
        return (uint64_t)(2 * bias + 1) << frac;
    if (e >= 1 - bias)
        return (uint64_t)(e + bias) << frac;
    if (e >= 1 - bias - frac)
        return (uint64_t)1 << (e - (1 - bias - frac));
    return 1;
}

/* Grid b's exponent L_b for E: 2^5 squares < 2^E fit a1's binade, and each
 * grid is 2^(51-5) below the one above (the third one bit less). */
static inline int l2f_grid_L(int E, int b)
{
    return E - (b + 1) * (51 - L2F_CBITS) + (b == 2);
}

static inline void l2f_grid_set(l2f_grid *g, double mx, int nbins, int frac, int bias,
                                int emin, int emax)
{
    int E = 0;
    if (!(mx <= 0x1p1023))                       /* inf, NaN */
        E = 2048;
    else if (mx > 0) {
        frexp(mx, &E);
        E *= 2;                                  /* x*x < 2^E */
    }
    E = E < emin ? emin : (E > emax ? emax : E);
    g->E = E;
    for (int b = 0; b < 3; b++) {
        g->L[b] = l2f_grid_L(E, b);
        /* 1.5 * 2^(L+52), built from its bits */
        g->B[b] = b < nbins ? ((int64_t)(g->L[b] + 52 + 1023) << 52) | ((int64_t)1 << 51) : 0;
        g->M[b] = l2f_float64((uint64_t)g->B[b]);
    }
    /* x*x is a multiple of 2^lowest when |x| >= 2^ceil((lowest + 2(p-1))/2) */
    int p = nbins == 2 ? 24 : 53;
    int e = (g->L[nbins - 1] + 2 * (p - 1) + 1) >> 1;
    g->tiny2m2 = 2 * l2f_pow2_bits(e, frac, bias) - 2;
    g->huge2 = 2 * l2f_pow2_bits(E / 2, frac, bias);
}

/* A piece's exact sum: S[b] * 2^L_b(E) for the bins of its last grid, plus
 * what went through the scratch state (outliers, earlier grids): at most 8
 * digits from `lo`, or a whole state in `spill`. */
#define L2F_PART_DIGITS 8
typedef struct {
    int32_t E;
    int32_t lo, n;            /* n < 0: out of memory */
    int64_t sum[3];
    int64_t inf, nan;
    uint32_t dig[L2F_PART_DIGITS];
    int64_t *spill;           /* malloc'd L2F_ACC_WORDS, or NULL */
} l2f_part;


/* Each thread's scratch state: all zero between pieces. */
typedef struct {
    int64_t w[L2F_ACC_WORDS];
    l2f_span sp;
} l2f_scratch;
static __thread l2f_scratch l2f_tls = { {0}, { INT_MAX, -1 } };
/* Each thread's last grid per dtype (E == INT_MIN: none yet). */
#define L2F_NO_GRID { INT_MIN, {0}, {0}, {0}, 0, 0 },
#define L2F_NO_GRID_ROW(CODE, S, T) L2F_NO_GRID
static __thread l2f_grid l2f_tls_grid[L2F_NDTYPES] = { L2F_DTYPES(L2F_NO_GRID_ROW) };

static inline void l2f_flush_bins(l2f_scratch *s, const l2f_grid *g, int64_t sums[3])
{
    for (int b = 0; b < 3; b++) {
        l2f_deposit(s->w, &s->sp, sums[b], g->L[b]);
        sums[b] = 0;
    }
}

/* Move the scratch state into `out` and zero it. */
static void l2f_scratch_take(l2f_scratch *s, l2f_part *out)
{
    out->inf = out->nan = 0;
    if (s != NULL) {
        out->inf = s->w[L2F_ACC_INF];
        out->nan = s->w[L2F_ACC_NAN];
        s->w[L2F_ACC_INF] = s->w[L2F_ACC_NAN] = 0;
    }
    out->spill = NULL;
    out->lo = out->n = 0;
    if (s == NULL || s->sp.lo > s->sp.hi)
        return;
    int top = l2f_acc_normalize(s->w, s->sp.lo, s->sp.hi);
    int lo = s->sp.lo, hi = top;
    while (lo <= hi && s->w[lo] == 0)
        lo++;
    while (hi >= lo && s->w[hi] == 0)
        hi--;
    if (hi - lo + 1 <= L2F_PART_DIGITS) {
        out->lo = lo;
        out->n = hi - lo + 1;
        for (int k = 0; k < out->n; k++)
            out->dig[k] = (uint32_t)s->w[lo + k];
    } else {
        out->spill = (int64_t *)calloc(L2F_ACC_WORDS, sizeof(int64_t));
        if (out->spill == NULL)
            out->n = -1;
        else
            memcpy(out->spill + lo, s->w + lo, (size_t)(hi - lo + 1) * sizeof(int64_t));
    }
    memset(s->w + s->sp.lo, 0, (size_t)(top - s->sp.lo + 1) * sizeof(int64_t));
    s->sp.lo = INT_MAX;
    s->sp.hi = -1;
}

/* w += a piece's sum (w: a state, not yet normalised); sp: digits touched. */
static inline void l2f_part_add(int64_t *w, l2f_span *sp, const l2f_part *p)
{
    w[L2F_ACC_INF] += p->inf;
    w[L2F_ACC_NAN] += p->nan;
    for (int b = 0; b < 3; b++)
        l2f_deposit(w, sp, p->sum[b], l2f_grid_L(p->E, b));
    for (int k = 0; k < p->n; k++)
        w[p->lo + k] += p->dig[k];
    if (p->n > 0)
        l2f_span_add(sp, p->lo, p->lo + p->n - 1);
    if (p->spill != NULL) {
        for (int k = 0; k < L2F_ACC_DIGITS; k++)
            w[k] += p->spill[k];
        l2f_span_add(sp, 0, L2F_ACC_DIGITS - 1);
    }
}

/* w (all zero) = the normalised sum of parts[0:n]; returns it rounded.
 * With `clear`, w is left all zero again (touched digits only). */
static double l2f_fold_parts(const l2f_part *p, int64_t n, int64_t *w, int clear)
{
    l2f_span sp = { INT_MAX, -1 };
    for (int64_t c = 0; c < n; c++)
        l2f_part_add(w, &sp, &p[c]);
    int top = sp.hi >= 0 ? l2f_acc_normalize(w, sp.lo, sp.hi) : -1;
    double v = l2f_acc_value(w, top);
    if (clear) {
        if (top >= 0)
            memset(w + sp.lo, 0, (size_t)(top - sp.lo + 1) * sizeof(int64_t));
        w[L2F_ACC_INF] = w[L2F_ACC_NAN] = 0;
    }
    return v;
}

/* ------------------------------------------------------------------------
 * The loops of one dtype: a round in the bins (checked, or masked), the
 * round's max, and the piece.
 * ------------------------------------------------------------------------ */
/* Does |x| (u2: its bits doubled, um: u2 - 2) fit the bins: not below the
 * smallest exactly held value, and its square below 2^E?  (0 does not.) */
#define L2F_FITS(um, u2, tiny, huge) ((um) >= (tiny) && (u2) < (huge))

#define L2F_XELEM(S, k, j, MASKED)                                            \
    do {                                                                      \
        L2F_UT_##S u2_ = (L2F_UT_##S)(L2F_BITS_##S(r, k) << 1);               \
        L2F_UT_##S um_ = (L2F_UT_##S)(u2_ - 2);                               \
        double x_ = L2F_LOAD(S, r, k);                                        \
        if (MASKED)                                                           \
            x_ = L2F_FITS(um_, u2_, tiny, huge) ? x_ : 0.0;                   \
        else                                                                  \
            mn[j] = um_ < mn[j] ? um_ : mn[j];                                \
        L2F_DEP_##S(x_, j);                                                   \
    } while (0)

#define L2F_XSWEEP(S, IDX, FETCH, MASKED)                                     \
    int64_t i = 0;                                                            \
    for (; i + L2F_XLANES <= m; i += L2F_XLANES) {                            \
        FETCH;                                                                \
        L2F_SIMD                                                              \
        for (int j = 0; j < L2F_XLANES; j++)                                  \
            L2F_XELEM(S, IDX(i + j), j, MASKED);                              \
    }                                                                         \
    for (int j = 0; i < m; i++, j++)                                          \
        L2F_XELEM(S, IDX(i), j, MASKED);

#define L2F_IDX_C(i) (i)
#define L2F_IDX_N(i) ((i) * sd)
#define L2F_XFETCH_C                                                          \
    for (int k_ = 0; k_ < (int)(L2F_XLANES * sizeof(*r)); k_ += 64)          \
        L2F_PREFETCH((const char *)(r + i) + L2F_AHEAD + k_, 0)
#define L2F_XFETCH_N ((void)0)

/* Scale a round that the bins have taken: as l2f_scale_run, from L1. */
#define L2F_XSCALE_C(S, m)                                                    \
    L2F_SWEEP_UPDATE(m, L2F_LANES, L2F_NOFETCH, L2F_ACC_NONE, L2F_VAL_SCALE, S, S)
#define L2F_XSCALE_N(S, m)                                                    \
    L2F_STRIDED_UPDATE(m, sd, 0, L2F_ACC_NONE, L2F_VAL_SCALE, S, S)

/* Rounds of x[0:n] into the bins, each flushed into lane totals that are
 * added to `sums` (each round then scaled by f if `scale`); returns where
 * the first round that must be redone starts (n: none).  `masked`: one round, E set from its max, the
 * elements the bins cannot hold left out. */
#define L2F_DEFINE_XRUN(S, T, V)                                              \
L2F_CLONES L2F_FMA_##S static int64_t l2f_xrun_##V##_##S(                     \
    const T *x, int64_t n, int64_t sd, const l2f_grid *g,                     \
    int64_t sums[3], int masked, int scale, double f)                         \
{                                                                             \
    double a1[L2F_XLANES], a2[L2F_XLANES], a3[L2F_XLANES];                    \
    int64_t tot[3][L2F_XLANES];                                               \
    int64_t b0 = 0;                                                           \
    for (int j = 0; j < L2F_XLANES; j++)                                      \
        tot[0][j] = tot[1][j] = tot[2][j] = 0;                                \
    L2F_UT_##S mn[L2F_XLANES];                                                \
    const double M0 = g->M[0], M1 = g->M[1], M2 = g->M[2];                    \
    const int64_t B0 = g->B[0], B1 = g->B[1], B2 = g->B[2];                   \
    const L2F_UT_##S tiny = (L2F_UT_##S)g->tiny2m2;                           \
    const L2F_UT_##S huge = (L2F_UT_##S)g->huge2;                             \
    (void)sd; (void)f; (void)huge;                                                  \
    for (; b0 < n; b0 += L2F_ROUND) {                                         \
        const T *L2F_RESTRICT r = x + b0 * sd;                                \
        const int64_t m = n - b0 < L2F_ROUND ? n - b0 : L2F_ROUND;            \
        for (int j = 0; j < L2F_XLANES; j++) {                                \
            a1[j] = M0; a2[j] = M1; a3[j] = M2;                               \
            mn[j] = (L2F_UT_##S)-1;                                           \
        }                                                                     \
        if (masked) {                                                         \
            L2F_XSWEEP(S, L2F_IDX_##V, L2F_XFETCH_##V, 1)                     \
        } else {                                                              \
            L2F_XSWEEP(S, L2F_IDX_##V, L2F_XFETCH_##V, 0)                     \
            uint64_t bad = 0;                                                 \
            L2F_UT_##S low = (L2F_UT_##S)-1;                                  \
            for (int j = 0; j < L2F_XLANES; j++) {                            \
                bad |= (l2f_bits64(a1[j]) - (uint64_t)B0) >> 51;              \
                low = mn[j] < low ? mn[j] : low;                              \
            }                                                                 \
            if (bad || low < tiny)                                            \
                break;                                                        \
        }                                                                     \
        L2F_SIMD                                                              \
        for (int j = 0; j < L2F_XLANES; j++) {                                \
            tot[0][j] += (int64_t)l2f_bits64(a1[j]) - B0;                     \
            tot[1][j] += (int64_t)l2f_bits64(a2[j]) - B1;                     \
            tot[2][j] += B2 ? (int64_t)l2f_bits64(a3[j]) - B2 : 0;            \
        }                                                                     \
        if (scale) {                                                          \
            T *d = (T *)r;                                                    \
            L2F_XSCALE_##V(S, m);                                             \
        }                                                                     \
    }                                                                         \
    for (int b = 0; b < 3; b++)                                               \
        for (int j = 0; j < L2F_XLANES; j++)                                  \
            sums[b] += tot[b][j];                                             \
    return b0 < n ? b0 : n;                                                   \
}

#define L2F_DEFINE_XPIECE(CODE, S, T)                                         \
L2F_DEFINE_XRUN(S, T, C)                                                    \
L2F_DEFINE_XRUN(S, T, N)                                                    \
static double l2f_xmax_##S(const T *r, int64_t m, int64_t sd)                 \
{   /* the largest |x| by its bits (NaN above inf) */                         \
    L2F_UT_##S mx = 0;                                                        \
    for (int64_t i = 0; i < m; i++) {                                         \
        L2F_UT_##S u_ = (L2F_UT_##S)(L2F_BITS_##S(r, i * sd) << 1);           \
        mx = u_ > mx ? u_ : mx;                                               \
    }                                                                         \
    mx >>= 1;                                                                 \
    return L2F_VALUE_##S(mx);                                                 \
}                                                                             \
/* The round redone: E from its max; what the bins cannot hold, one by one */ \
static void l2f_xredo_##S(const T *r, int64_t m, int64_t sd, l2f_grid *g,     \
                          int64_t sums[3], l2f_scratch *s)         \
{                                                                             \
    l2f_flush_bins(s, g, sums);                                               \
    l2f_grid_set(g, l2f_xmax_##S(r, m, sd), L2F_FORMAT_##S);                  \
    if (sd == 1)                                                              \
        l2f_xrun_C_##S(r, m, 1, g, sums, 1, 0, 0.0);                          \
    else                                                                      \
        l2f_xrun_N_##S(r, m, sd, g, sums, 1, 0, 0.0);                         \
    for (int64_t i = 0; i < m; i++) {                                         \
        L2F_UT_##S u2_ = (L2F_UT_##S)(L2F_BITS_##S(r, i * sd) << 1);          \
        L2F_UT_##S um_ = (L2F_UT_##S)(u2_ - 2);                               \
        if (u2_ != 0 && !L2F_FITS(um_, u2_, (L2F_UT_##S)g->tiny2m2,           \
                                  (L2F_UT_##S)g->huge2))                      \
            l2f_acc_square(s->w, &s->sp, L2F_LOAD(S, r, i * sd));             \
    }                                                                         \
}                                                                             \
/* The exact sum of squares of a piece into `out`; with `scale`, each round  \
 * is then scaled by f, as l2f_scale_run does. */                             \
static void l2f_xpiece_##S(const l2f_piece *c, double f, int scale, l2f_part *out) \
{                                                                             \
    l2f_scratch *s = NULL;          /* the thread's scratch, once needed */  \
    int64_t sums[3] = {0, 0, 0};                                              \
    const int64_t sd = c->dst_stride, n = c->n;                               \
    const T *d = (const T *)c->dst;                                           \
    /* the grid of the thread's last piece of this dtype: any E gives the     \
     * same sum, a good guess only saves redoing rounds */                    \
    l2f_grid g = l2f_tls_grid[CODE];                                          \
    if (g.E == INT_MIN)                                                       \
        l2f_grid_set(&g, l2f_xmax_##S(d, n < L2F_ROUND ? n : L2F_ROUND, sd),  \
                     L2F_FORMAT_##S);                                         \
    for (int64_t b0 = 0; b0 < n;) {                                           \
        const T *r = d + b0 * sd;                                             \
        b0 += sd == 1 ? l2f_xrun_C_##S(r, n - b0, 1, &g, sums, 0, scale, f)    \
                      : l2f_xrun_N_##S(r, n - b0, sd, &g, sums, 0, scale, f);  \
        if (b0 == n)                                                          \
            break;                                                            \
        const int64_t m = n - b0 < L2F_ROUND ? n - b0 : L2F_ROUND;            \
        r = d + b0 * sd;                                                      \
        s = &l2f_tls;                                                         \
        l2f_xredo_##S(r, m, sd, &g, sums, s);                                  \
        if (scale) {                                                          \
            l2f_piece p = *c;                                                 \
            p.dst = (char *)r;                                                \
            p.n = m;                                                          \
            p.dst_then = p.src_then = NULL;                                   \
            l2f_scale_run_##S(&p, f);                                         \
        }                                                                     \
        b0 += m;                                                              \
    }                                                                         \
    out->E = g.E;                                                             \
    l2f_tls_grid[CODE] = g;                                                   \
    for (int b = 0; b < 3; b++)                                               \
        out->sum[b] = sums[b];                                                \
    l2f_scratch_take(s, out);                                                 \
}

L2F_DTYPES(L2F_DEFINE_XPIECE)

typedef void (*l2f_xpiece_fn)(const l2f_piece *, double, int, l2f_part *);
#define L2F_ROW_XPIECE(CODE, S, T) l2f_xpiece_##S,
static const l2f_xpiece_fn l2f_xpieces[L2F_NDTYPES] = { L2F_DTYPES(L2F_ROW_XPIECE) };

/* The exact sum of squares of piece c (op L2F_SSQ or L2F_SSQ_SCALE). */
static inline void l2f_apply_exact(int op, const l2f_piece *c, double f, l2f_part *out)
{
    l2f_xpieces[c->dst_dtype](c, f, op == L2F_SSQ_SCALE, out);
}

#endif
