/* The 16-bit float formats: float16 (IEEE binary16: 1 sign, 5 exponent, 10
 * fraction bits) and bfloat16 (the top half of a float32: 1, 8, 7), both
 * held as uint16_t.
 *
 * Widening is exact (every 16-bit value is a float32, and a float64).
 * Narrowing rounds a float64 once to the 16-bit format, to nearest, ties to
 * even, subnormals included, overflow to +-inf, NaN kept a quiet NaN:
 *
 *   l2f_round_xx(x)  exact and scalar, from the float64's bits;
 *   l2f_near_xx(x)   branch-free, for vector loops: rounds x to float32,
 *                    then the float32 to 16 bits.  That rounds twice, and
 *                    differs from one rounding only when the float32 lands
 *                    exactly halfway between two 16-bit values (or is not
 *                    finite).  It flags those cases in bit 16 of its result,
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
static inline double l2f_bf16_to_f64(uint16_t h)
{
    return (double)l2f_float32((uint32_t)h << 16);
}

/* float16 -> float32 bits by integer arithmetic, without branches: normal
 * numbers rebias the exponent (15 -> 127); zeros and subnormals are
 * a * 2^-24 (exact, and not a float32 subnormal); inf and NaN keep their
 * fraction under an all-ones exponent. */
static inline double l2f_f16_to_f64(uint16_t h)
{
    uint32_t a = h & 0x7fffu, sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t normal = (a << 13) + 0x38000000u;
    uint32_t tiny = l2f_bits32((float)(int32_t)a * 0x1p-24f);
    uint32_t special = (a << 13) | 0x7f800000u;
    uint32_t is_tiny = 0u - (uint32_t)(a < 0x400u);
    uint32_t is_special = 0u - (uint32_t)(a >= 0x7c00u);
    uint32_t r = (normal & ~(is_tiny | is_special)) | (tiny & is_tiny)
                 | (special & is_special);
    return (double)l2f_float32(r | sign);
}

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
 * Narrowing, vectorisable: the 16-bit result, and 1 << 16 when it must be
 * redone by l2f_round_xx.
 * ------------------------------------------------------------------------ */
static inline uint32_t l2f_near_bf16(double x)
{
    uint32_t b = l2f_bits32((float)x);
    uint32_t redo = (uint32_t)((b & 0xffffu) == 0x8000u)           /* a tie in float32 */
                    | (uint32_t)((b & 0x7f800000u) == 0x7f800000u); /* inf, NaN */
    return ((b + 0x7fffu + ((b >> 16) & 1u)) >> 16 & 0xffffu) | (redo << 16);
}

/* float16: below 2^-14 (subnormal) the result is round(|x| * 2^24), taken
 * from x directly by adding 1.5 * 2^52; above, the float32's exponent is
 * rebiased and its fraction rounded to 10 bits. */
static inline uint32_t l2f_near_f16(double x)
{
    uint32_t b = l2f_bits32((float)x), a = b & 0x7fffffffu;
    uint32_t sign = (b >> 16) & 0x8000u;
    uint32_t normal = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;
    uint32_t tiny = (uint32_t)(l2f_bits64(fabs(x) * 0x1p24 + 0x1.8p52)
                               - l2f_bits64(0x1.8p52));
    uint32_t is_normal = (uint32_t)(a >= 0x38800000u);
    uint32_t redo = (is_normal & (uint32_t)((a & 0x1fffu) == 0x1000u))
                    | (uint32_t)(a >= 0x7f800000u);
    normal = normal < 0x7c00u ? normal : 0x7c00u;
    return ((is_normal ? normal : tiny) | sign) | (redo << 16);
}

#endif
