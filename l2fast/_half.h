/* The 16-bit float formats: float16 (IEEE binary16: 1 sign, 5 exponent, 10
 * fraction bits) and bfloat16 (the top half of a float32: 1, 8, 7), both
 * held as uint16_t.
 *
 * Widening is exact (every 16-bit value is a float32, and a float64).
 * Narrowing rounds a float64 once to the 16-bit format, to nearest, ties to
 * even, subnormals included, overflow to +-inf, NaN kept a quiet NaN:
 *
 *   l2f_round_xx(x)  exact and scalar, from the float64's bits;
 *   l2f_near_xx(x, &redo)  branch-free, for vector loops: rounds x to
 *                    float32, then the float32 to 16 bits.  That rounds
 *                    twice, and differs from one rounding only when the
 *                    float32 lands exactly halfway between two 16-bit values
 *                    (or is not finite).  It flags those cases (redo = 1),
 *                    and the loop redoes them with l2f_round_xx.
 */
#ifndef L2FAST_HALF_H
#define L2FAST_HALF_H

#include <stdint.h>
#include <math.h>
#include <string.h>

static inline uint32_t l2f_bits32(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float l2f_float32(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static inline uint64_t l2f_bits64(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
static inline double l2f_float64(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }

/* ------------------------------------------------------------------------
 * Widening
 * ------------------------------------------------------------------------ */
static inline float l2f_bf16_to_f32(uint16_t h) { return l2f_float32((uint32_t)h << 16); }
static inline double l2f_bf16_to_f64(uint16_t h) { return (double)l2f_bf16_to_f32(h); }

/* float16 -> float32 without branches: the exponent and fraction bits moved
 * into place read 2^-112 times the value, for normal numbers and subnormals
 * alike, so one exact multiply by 2^112 finishes the job; inf and NaN get an
 * all-ones exponent instead. */
static inline float l2f_f16_to_f32(uint16_t h)
{
    uint32_t a = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    float v = l2f_float32(a) * 0x1p112f;
    uint32_t special = 0u - (uint32_t)(a >= (0x7c00u << 13));
    return l2f_float32(((l2f_bits32(v) & ~special) | ((a | 0x7f800000u) & special)) | sign);
}
static inline double l2f_f16_to_f64(uint16_t h) { return (double)l2f_f16_to_f32(h); }

/* ------------------------------------------------------------------------
 * Narrowing, exact: x rounded once to a format of `frac` fraction bits and
 * exponent bias `bias`; `tiny_scale` is 2^(bias - 1 + frac), the factor that
 * makes the format's subnormals integers.
 * ------------------------------------------------------------------------ */
static inline uint16_t l2f_round16(double x, int frac, int bias, double tiny_scale)
{
    const uint64_t a = l2f_bits64(x) & 0x7fffffffffffffffull;
    const uint16_t sign = (uint16_t)((l2f_bits64(x) >> 48) & 0x8000u);
    const uint64_t inf = (uint64_t)(2 * bias + 1) << frac;
    const int shift = 52 - frac;
    uint64_t r;
    if (a > 0x7ff0000000000000ull)        /* NaN: quiet, top payload bits kept */
        return (uint16_t)(sign | inf | (1u << (frac - 1)) | ((a >> shift) & (inf - 1)));
    if (a >= (uint64_t)(1023 - bias + 1) << 52) {    /* a normal 16-bit value, or inf */
        uint64_t b = a - ((uint64_t)(1023 - bias) << 52);
        r = (b + ((1ull << (shift - 1)) - 1) + ((b >> shift) & 1)) >> shift;
        if (r > inf)
            r = inf;
    } else {                              /* subnormal or zero: |x| in units of the last place */
        r = l2f_bits64(l2f_float64(a) * tiny_scale + 0x1.8p52) - l2f_bits64(0x1.8p52);
    }
    return (uint16_t)(sign | r);
}
static inline uint16_t l2f_round_f16(double x) { return l2f_round16(x, 10, 15, 0x1p24); }
static inline uint16_t l2f_round_bf16(double x) { return l2f_round16(x, 7, 127, 0x1p133); }

/* ------------------------------------------------------------------------
 * Narrowing, vectorisable: the 16-bit result, and *redo = 1 when it must be
 * redone by l2f_round_xx.
 * ------------------------------------------------------------------------ */
static inline uint32_t l2f_near_bf16(double x, uint32_t *redo)
{
    uint32_t b = l2f_bits32((float)x);
    *redo = (uint32_t)((b & 0xffffu) == 0x8000u)                   /* a tie in float32 */
            | (uint32_t)((b & 0x7f800000u) == 0x7f800000u);         /* inf, NaN */
    return (b + 0x7fffu + ((b >> 16) & 1u)) >> 16 & 0xffffu;
}

/* float16: below 2^-14 (subnormal) the result is round(|x| * 2^24), taken
 * from x directly by adding 1.5 * 2^52; above, the float32's exponent is
 * rebiased and its fraction rounded to 10 bits. */
static inline uint32_t l2f_near_f16(double x, uint32_t *redo_out)
{
    uint32_t b = l2f_bits32((float)x), a = b & 0x7fffffffu;
    uint32_t sign = (b >> 16) & 0x8000u;
    uint32_t normal = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;
    uint32_t tiny = (uint32_t)l2f_bits64(fabs(x) * 0x1p24 + 0x1.8p52);
    uint32_t is_normal = 0u - (uint32_t)(a >= 0x38800000u);
    uint32_t redo = (is_normal & (uint32_t)((a & 0x1fffu) == 0x1000u))
                    | (uint32_t)(a >= 0x7f800000u);
    normal = normal < 0x7c00u ? normal : 0x7c00u;
    *redo_out = redo;
    return (normal & is_normal) | (tiny & ~is_normal) | sign;
}

/* ------------------------------------------------------------------------
 * w * c for a 16-bit w, rounded once to w's format, vectorisable and in
 * float32 (the float64 product costs twice the instructions): with c32 =
 * float32(c), t = float32(w * c32) is within 2.0001 float32 ulps of the
 * float64 product, so t rounds to the same 16-bit value unless a 16-bit
 * midpoint lies within 4 ulps of t (or t is not a normal float32): those are
 * flagged, and redone from the float64 product.  c32 is NaN when c is not a
 * normal float32 (every product is then flagged).
 * ------------------------------------------------------------------------ */
static inline float l2f_factor32(double c)
{
    double m = fabs(c);
    return (m >= 0x1p-126 && m <= 0x1.fffffep127) ? (float)c : __builtin_nanf("");
}

/* bfloat16: t is near a midpoint when its low 16 bits are within 4 of
 * 0x8000, i.e. (b + 4) << 16 lies in [INT32_MIN, INT32_MIN + 9 << 16); it
 * is tiny (exponent 0 or 1), inf or NaN when (b << 1) + 2^24 wraps below
 * 3 << 24, i.e. (b << 1) + 0x81000000 < INT32_MIN + (3 << 24).  Signed
 * compares: one instruction each. */
static inline uint32_t l2f_scaled_bf16(uint16_t w, float c32, uint32_t *redo)
{
    uint32_t b = l2f_bits32(l2f_bf16_to_f32(w) * c32);
    *redo = (uint32_t)((int32_t)((b + 4u) << 16) < (int32_t)0x80090000u)
            | (uint32_t)((int32_t)((b << 1) + 0x81000000u) < (int32_t)0x83000000u);
    return (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
}

/* float16: above 2^-14, midpoints sit at 0x1000 in the low 13 bits; below,
 * at odd multiples of 2^-25, which t + 0.25 (a multiple of 2^-25 after
 * rounding) lands on when t is near one. */
static inline uint32_t l2f_scaled_f16(uint16_t w, float c32, uint32_t *redo_out)
{
    float t = l2f_f16_to_f32(w) * c32;
    uint32_t b = l2f_bits32(t), a = b & 0x7fffffffu;
    uint32_t sign = (b >> 16) & 0x8000u;
    uint32_t normal = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;
    uint32_t tiny = l2f_bits32(fabsf(t) + 0.5f) - 0x3f000000u;
    uint32_t is_normal = 0u - (uint32_t)(a >= 0x38800000u);
    uint32_t redo = (is_normal & (uint32_t)((int32_t)((a - 0xffcu) & 0x1fffu) < 9))
                    | (~is_normal & l2f_bits32(fabsf(t) + 0.25f) & 1u)
                    | (uint32_t)((int32_t)a < 0x00800000)      /* subnormal t */
                    | (uint32_t)((int32_t)a >= 0x7f800000);    /* inf, NaN */
    normal = (int32_t)normal < 0x7c00 ? normal : 0x7c00u;
    *redo_out = redo;
    return (normal & is_normal) | (tiny & ~is_normal) | sign;
}

#endif
