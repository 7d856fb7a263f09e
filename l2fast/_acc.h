/* The exact accumulator: a sum of squares held as an integer, in 32-bit
 * digits, so that adding is exact, associative and commutative.
 *
 * A state is L2F_ACC_WORDS int64 words: digit k (0 <= k < 104) weighs
 * 2^(-2176 + 32 k), which covers every square of a float64 (2^-2148 for the
 * smallest subnormal) up to 2^1152; word 104 counts infinite terms (inf, and
 * squares of |x| >= 2^512, which are >= 2^1024 and make the sum +inf), word
 * 105 counts NaNs.  Normalised, every digit but the top one is in
 * [0, 2^32): the form is unique, and an element-wise sum of up to 2^31
 * normalised states is a valid state (the merge).
 *
 *   l2f_deposit(w, s, S, L)     w += S * 2^L (S a signed int64)
 *   l2f_acc_square(w, s, x)     w += x^2 exactly (any double)
 *   l2f_acc_normalize(w, lo)    carries from digit lo up: canonical form
 *   l2f_acc_value(w, top)       the sum rounded once to the nearest double
 */
#ifndef L2FAST_ACC_H
#define L2FAST_ACC_H

#include <stdint.h>
#include <string.h>
#include <math.h>

#define L2F_ACC_DIGITS 104
#define L2F_ACC_BASE (-2176)
#define L2F_ACC_INF L2F_ACC_DIGITS
#define L2F_ACC_NAN (L2F_ACC_DIGITS + 1)
#define L2F_ACC_WORDS (L2F_ACC_DIGITS + 2)
#define L2F_M32 0xffffffffll

/* The digits a deposit touched: [lo, hi] (lo > hi: none). */
typedef struct { int lo, hi; } l2f_span;

static inline void l2f_span_add(l2f_span *s, int lo, int hi)
{
    if (lo < s->lo) s->lo = lo;
    if (hi > s->hi) s->hi = hi;
}

/* w += S * 2^L, L >= L2F_ACC_BASE, |S| * 2^L < 2^1120. */
static inline void l2f_deposit(int64_t *w, l2f_span *sp, int64_t S, int L)
{
    if (S == 0)
        return;
    int off = L - L2F_ACC_BASE, k = off >> 5;
    __int128 v = (__int128)S * ((__int128)1 << (off & 31));
    w[k] += (int64_t)(v & L2F_M32);
    v >>= 32;
    w[k + 1] += (int64_t)(v & L2F_M32);
    w[k + 2] += (int64_t)(v >> 32);
    l2f_span_add(sp, k, k + 2);
}

/* w += x^2, exactly: the 53-bit significand squared, at twice x's exponent. */
static inline void l2f_acc_square(int64_t *w, l2f_span *sp, double x)
{
    x = fabs(x);
    if (!(x <= 0x1p512)) {       /* NaN, inf, or a square >= 2^1024 */
        w[x != x ? L2F_ACC_NAN : L2F_ACC_INF] += 1;
        return;
    }
    if (x == 0.0)
        return;
    int e;
    frexp(x, &e);
    int ex = e - 53 < -1074 ? -1074 : e - 53;      /* x = m * 2^ex, m < 2^53 */
    uint64_t m = (uint64_t)ldexp(x, -ex);
    unsigned __int128 p = (unsigned __int128)m * m;
    int L = 2 * ex;
    l2f_deposit(w, sp, (int64_t)(p & 0xffffffffffffffull), L);          /* 56 bits */
    l2f_deposit(w, sp, (int64_t)(p >> 56), L + 56);
}

/* Propagate carries from digit lo to the top; returns the highest digit
 * that may be nonzero. */
static inline int l2f_acc_normalize(int64_t *w, int lo, int hi)
{
    int64_t carry = 0;
    int k = lo < 0 ? 0 : lo;
    for (; k < L2F_ACC_DIGITS - 1 && (k <= hi || carry != 0); k++) {
        int64_t v = w[k] + carry;
        w[k] = v & L2F_M32;
        carry = v >> 32;      /* arithmetic: floor division */
    }
    if (carry != 0 || k == L2F_ACC_DIGITS - 1) {
        w[L2F_ACC_DIGITS - 1] += carry;
        k = L2F_ACC_DIGITS - 1;
    }
    return k;
}

/* The normalised, non-negative state w rounded to the nearest double
 * (ties to even), subnormals and overflow to +inf included; digits above
 * `top` are zero. */
static inline double l2f_acc_value(const int64_t *w, int top)
{
    if (w[L2F_ACC_NAN] != 0)
        return NAN;
    if (w[L2F_ACC_INF] != 0)
        return INFINITY;
    int h = top < L2F_ACC_DIGITS ? top : L2F_ACC_DIGITS - 1;
    while (h >= 0 && w[h] == 0)
        h--;
    if (h < 0)
        return 0.0;
    if (w[h] < 0)
        return NAN;           /* not a sum of squares: a corrupt state */
    /* 128 bits from digits h .. h-3, the rest sticky. */
    unsigned __int128 M = 0;
    for (int k = h; k > h - 4; k--)
        M = (M << 32) | (uint64_t)(k >= 0 ? w[k] : 0);
    int sticky = 0;
    for (int k = h - 4; k >= 0; k--)
        sticky |= w[k] != 0;
    int e0 = L2F_ACC_BASE + 32 * (h - 3);     /* weight of M's bit 0 */
    int p = 127;
    while (!((M >> p) & 1))
        p--;
    int t = e0 + p - 52;                      /* weight of the result's last bit */
    if (t < -1074)
        t = -1074;
    int sh = t - e0;                          /* > 0: M has >= 97 bits */
    if (sh > 128)
        return 0.0;                           /* below half the smallest subnormal */
    unsigned __int128 mant = sh == 128 ? 0 : M >> sh;
    unsigned __int128 rem = M - (sh == 128 ? 0 : mant << sh);
    unsigned __int128 half = (unsigned __int128)1 << (sh - 1);
    if (rem > half || (rem == half && (sticky || (mant & 1))))
        mant += 1;
    return ldexp((double)(uint64_t)mant, t);
}

#endif
