#ifndef L2FAST_LOOPS16_H
#define L2FAST_LOOPS16_H
/* ------------------------------------------------------------------------
 * x86-64-v3 loops for 16-bit arrays: AVX2, FMA and F16C intrinsics.
 *
 * GCC compiles the generic loops of _loops.h for float16 and bfloat16 into
 * about twice the instructions they need, too many to keep up with memory
 * (it converts float32 to float64 from registers, widens float16 without
 * F16C, rebuilds the rounding constants every block; half_loops.c times
 * both).  These loops compute the same values.  A sum widens 32 elements
 * into a float32 buffer (exact) and adds their squares to the lanes of the
 * float32 loop in its order (an FMA of an exact square): the same bits.  A
 * scale rounds t = w * float32(c) to 16 bits and redoes exactly, one at a
 * time, the elements whose float64 product might round otherwise (_half.h).
 * Further down: float16's fused pass and add, bfloat16's add from bfloat16.
 * l2f_apply() picks them on x86-64-v3 or later (the AVX-512 clone of the
 * generic loops is slower still, see _loops16_v4.h).  Included by _loops.h
 * after the generic loops; checked by tests/test_half.py and
 * bench/probes/half_loops.c.
 * ------------------------------------------------------------------------ */
#ifdef L2F_HAVE_CLONES
#include <immintrin.h>
#include <stdlib.h>
#define L2F_V3 __attribute__((target("arch=x86-64-v3")))
#define L2F_ALIGN64 __attribute__((aligned(64)))
/* The compiler must store the array buf and load it back (not forward its
 * values in registers). */
#define L2F_OPAQUE_ARRAY(buf) __asm__ __volatile__("" : "+m"(buf))
/* A 16-bit element as float32 (exact). */
#define L2F_F32_f16(p, k) l2f_f16_to_f32((p)[k])
#define L2F_F32_bf16(p, k) l2f_bf16_to_f32((p)[k])

/* Which 16-bit loops this CPU runs: 4 (x86-64-v4: _loops16_v4.h, then
 * these), 3 (x86-64-v3: these) or 0 (the generic loops).  The environment
 * variable L2FAST_LOOPS16_LEVEL=0 or 3 caps it (the tests run every level
 * the CPU has); another value is ignored.  _kernels.pyx calls it once at
 * import, under the GIL, so that the cached value is set before any team. */
static int l2f_level16_cpu = -1;
static inline int l2f_level16(void)
{
    int v = __atomic_load_n(&l2f_level16_cpu, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *cap = getenv("L2FAST_LOOPS16_LEVEL");
        char *end = NULL;
        long c = cap ? strtol(cap, &end, 10) : -1;
        __builtin_cpu_init();
        v = __builtin_cpu_supports("x86-64-v4") ? 4 : __builtin_cpu_supports("x86-64-v3") ? 3 : 0;
        if (cap && end != cap && *end == '\0' && (c == 0 || c == 3) && c < v)
            v = (int)c;
        __atomic_store_n(&l2f_level16_cpu, v, __ATOMIC_RELAXED);
    }
    return v;
}

#ifndef L2F_V3_AHEAD
#define L2F_V3_AHEAD L2F_AHEAD
#endif
/* Sum of squares of a contiguous run of n >= L2F_SHORT 16-bit elements,
 * 32 (one float64 per lane) at a time, software-pipelined: each step widens
 * the next 32 elements into one half of a float32 buffer and adds the
 * squares of the 32 widened the step before, from the other half; the last
 * n % 32 elements take lanes 0, 1, ... as in the generic loop. */
#define L2F_V3_FMA4(a, w, k)                                                  \
    do {                                                                      \
        __m256d v_ = _mm256_cvtps_pd(_mm_load_ps((w) + 4 * (k)));             \
        a = _mm256_fmadd_pd(v_, v_, a);                                       \
    } while (0)
/* bfloat16 is widened 16 at a time by unpacking with zeros within each
 * 128-bit half: the buffer holds elements 0-3, 8-11, 4-7, 12-15, ...  */
#define L2F_V3_WIDEN32_bf16(w, p)                                             \
    for (int q_ = 0; q_ < 32; q_ += 16) {                                     \
        __m256i x_ = _mm256_loadu_si256((const __m256i *)((p) + q_));         \
        _mm256_store_si256((__m256i *)((w) + q_), _mm256_unpacklo_epi16(_mm256_setzero_si256(), x_)); \
        _mm256_store_si256((__m256i *)((w) + q_ + 8), _mm256_unpackhi_epi16(_mm256_setzero_si256(), x_)); \
    }
#define L2F_V3_WIDEN32_f16(w, p)                                              \
    for (int q_ = 0; q_ < 32; q_ += 8)                                        \
        _mm256_store_ps((w) + q_, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((p) + q_))));
/* The squares of the 32 widened elements at w, 4 at a time, into the
 * accumulators named in buffer order. */
#define L2F_V3_SSQ_GROUP(w, A, B, C, D, E, F, G, H)                           \
    do {                                                                      \
        L2F_V3_FMA4(A, w, 0); L2F_V3_FMA4(B, w, 1);                           \
        L2F_V3_FMA4(C, w, 2); L2F_V3_FMA4(D, w, 3);                           \
        L2F_V3_FMA4(E, w, 4); L2F_V3_FMA4(F, w, 5);                           \
        L2F_V3_FMA4(G, w, 6); L2F_V3_FMA4(H, w, 7);                           \
    } while (0)
#define L2F_V3_SSQ_GROUP_bf16(w) L2F_V3_SSQ_GROUP(w, a0, a2, a1, a3, a4, a6, a5, a7)
#define L2F_V3_SSQ_GROUP_f16(w) L2F_V3_SSQ_GROUP(w, a0, a1, a2, a3, a4, a5, a6, a7)
#define L2F_DEFINE_V3_SSQ(S)                                                  \
L2F_V3 static double l2f_ssq_v3_##S(const uint16_t *L2F_RESTRICT d, int64_t n, \
                                   const char *then)                          \
{                                                                             \
    L2F_ALIGN64 float buf[2 * L2F_LANES];                                     \
    L2F_ALIGN64 double acc[L2F_LANES];                                        \
    float *w = buf;                                                           \
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0,     \
            a5 = a0, a6 = a0, a7 = a0;  /* lanes 0-3, 4-7, ... 28-31 */       \
    const int64_t groups = n / L2F_LANES;                                     \
    __asm__("" : "+r"(w));  /* w[k] read through a register, not %rsp */     \
    L2F_V3_WIDEN32_##S(w, d);                                                 \
    for (int64_t g = 1; g < groups; g++) {                                    \
        float *next = w + (g & 1) * L2F_LANES;                                \
        L2F_PREFETCH(L2F_AHEAD_OF(d, g * L2F_LANES, n, then, L2F_V3_AHEAD), 0); \
        L2F_V3_WIDEN32_##S(next, d + g * L2F_LANES);                          \
        L2F_OPAQUE_ARRAY(buf);                                                \
        L2F_V3_SSQ_GROUP_##S(w + ((g - 1) & 1) * L2F_LANES);                  \
    }                                                                         \
    L2F_OPAQUE_ARRAY(buf);                                                    \
    L2F_V3_SSQ_GROUP_##S(w + ((groups - 1) & 1) * L2F_LANES);                 \
    _mm256_store_pd(acc, a0); _mm256_store_pd(acc + 4, a1);                   \
    _mm256_store_pd(acc + 8, a2); _mm256_store_pd(acc + 12, a3);              \
    _mm256_store_pd(acc + 16, a4); _mm256_store_pd(acc + 20, a5);             \
    _mm256_store_pd(acc + 24, a6); _mm256_store_pd(acc + 28, a7);             \
    for (int64_t i = groups * L2F_LANES; i < n; i++) {                        \
        double x = L2F_F32_##S(d, i);                                         \
        acc[i & (L2F_LANES - 1)] += x * x;                                    \
    }                                                                         \
    return l2f_fold(acc, L2F_LANES);                                          \
}
L2F_DEFINE_V3_SSQ(f16)
L2F_DEFINE_V3_SSQ(bf16)

/* Set d[j_] = VALUE, an exact rounding written in terms of j_, for each
 * j_ < k whose bit 2 j_ of `keep` (a byte mask of 16-bit lanes) is clear. */
#define L2F_V3_REDO(d, keep, k, VALUE)                                        \
    for (int j_ = 0; j_ < (k); j_++)                                          \
        if (!(((keep) >> (2 * j_)) & 1))                                      \
            (d)[j_] = (VALUE)

/* bfloat16 from float32 products of the even (te) and odd (to) elements of
 * 16: each rounded half up (callers flag ties) and back in element order;
 * *lo gets the low halves of t + 0x8000 (near a midpoint when near 0). */
L2F_V3 static inline __m256i l2f_v3_round_bf16(__m256 te, __m256 to, __m256i *lo)
{
    const __m256i half = _mm256_set1_epi32(0x8000);
    __m256i be = _mm256_add_epi32(_mm256_castps_si256(te), half);
    __m256i bo = _mm256_add_epi32(_mm256_castps_si256(to), half);
    *lo = _mm256_blend_epi16(be, _mm256_slli_epi32(bo, 16), 0xaa);
    return _mm256_blend_epi16(_mm256_srli_epi32(be, 16), bo, 0xaa);
}

/* bfloat16: 16 elements a vector.  The even elements (the low halves of
 * the 32-bit lanes) widen by a shift, the odd ones by a mask; the rounded
 * high halves of the products are blended back in place.  A product t is
 * rounded half up (ties are flagged anyway) and flagged as in
 * l2f_scaled_bf16: the low 16 bits of t within 4 of 0x8000, or a result
 * whose exponent is 0 or 1 (t tiny; a NaN that the rounding carried) or
 * 255 (inf, NaN).  In 16-bit lanes, signed compares: with lo the low half of
 * t + 0x8000, near ⇔ lo + 0x8004 < 0x8009; with r the result, the exponent
 * test is (r << 1) + 0x8100 < 0x8300. */
L2F_V3 static void l2f_scale_v3_bf16(uint16_t *L2F_RESTRICT d, int64_t n, double f,
                                     float c32, const char *then)
{
    const __m256 c = _mm256_set1_ps(c32);
    const __m256i odd = _mm256_set1_epi32((int32_t)0xffff0000u);
    const __m256i near = _mm256_set1_epi16((int16_t)0x8004);
    const __m256i near_lim = _mm256_set1_epi16((int16_t)0x8009);
    const __m256i ebias = _mm256_set1_epi16((int16_t)0x8100);
    const __m256i e_lim = _mm256_set1_epi16((int16_t)0x8300);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        L2F_PREFETCH(L2F_AHEAD_OF(d, i, n, then, L2F_AHEAD_W), 1);
        for (int h = 0; h < 32; h += 16) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(d + i + h));
            __m256i lo, r = l2f_v3_round_bf16(
                _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(x, 16)), c),
                _mm256_mul_ps(_mm256_castsi256_ps(_mm256_and_si256(x, odd)), c), &lo);
            __m256i flag = _mm256_or_si256(
                _mm256_cmpgt_epi16(near_lim, _mm256_add_epi16(lo, near)),
                _mm256_cmpgt_epi16(e_lim, _mm256_add_epi16(_mm256_slli_epi16(r, 1), ebias)));
            _mm256_storeu_si256((__m256i *)(d + i + h), r);
            if (!_mm256_testz_si256(flag, flag)) {
                uint16_t w[16];
                _mm256_storeu_si256((__m256i *)w, x);
                L2F_V3_REDO(d + i + h, ~(uint32_t)_mm256_movemask_epi8(flag), 16,
                            l2f_round_bf16(l2f_bf16_to_f64(w[j_]) * f));
            }
        }
    }
    for (; i < n; i++)
        d[i] = l2f_round_bf16(l2f_bf16_to_f64(d[i]) * f);
}

/* float16: the product p = w * f lies between t * (1 - 2^-21) and
 * t * (1 + 2^-21), t = w * float32(f) (at least 3 float32 ulps either side
 * of t, which is within 2.0001 ulps of p).  F16C rounds both bounds to
 * nearest even (subnormals, overflow to inf, NaN quiet: as l2f_round_f16);
 * rounding is monotone, so where they agree p rounds to the same value, and
 * elsewhere p is redone exactly.  A float32-subnormal t is below 2^-126:
 * both bounds and p round to a zero of their sign. */
L2F_V3 static void l2f_scale_v3_f16(uint16_t *L2F_RESTRICT d, int64_t n, double f,
                                    float c32, const char *then)
{
    const __m256 lo = _mm256_set1_ps(c32 * (1.0f - 0x1p-21f));
    const __m256 hi = _mm256_set1_ps(c32 * (1.0f + 0x1p-21f));
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        L2F_PREFETCH(L2F_AHEAD_OF(d, i, n, then, L2F_AHEAD_W), 1);
        for (int h = 0; h < 32; h += 8) {
            __m128i x = _mm_loadu_si128((const __m128i *)(d + i + h));
            __m256 w = _mm256_cvtph_ps(x);
            __m128i r0 = _mm256_cvtps_ph(_mm256_mul_ps(w, lo),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m128i r1 = _mm256_cvtps_ph(_mm256_mul_ps(w, hi),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            uint32_t keep = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi16(r0, r1));
            _mm_storeu_si128((__m128i *)(d + i + h), r0);
            if (keep != 0xffffu) {
                uint16_t old[8];
                _mm_storeu_si128((__m128i *)old, x);
                L2F_V3_REDO(d + i + h, keep, 8, l2f_round_f16(l2f_f16_to_f64(old[j_]) * f));
            }
        }
    }
    for (; i < n; i++)
        d[i] = l2f_round_f16(l2f_f16_to_f64(d[i]) * f);
}

/* float16 updates of the fused pass and of add_scaled_, 8 elements a step
 * (the generic loops widen float16 without F16C, at a third of the speed):
 * p = w * f (also summing w^2 in the lanes of l2f_ssq_v3) or p = g + a * s
 * is formed in float64 as the generic loops form it, rounded to float32 by
 * round-to-odd (the low 29 fraction bits cleared and the lowest kept bit
 * set when any was: a value exact in float32), then by F16C to nearest
 * even: the same as one rounding, a float32 keeping 13 more bits than a
 * float16.  Where the float32 is subnormal (|p| < 2^-126) the float16 is a
 * zero either way.  (For bfloat16 the generic loops measured as fast.) */
#define L2F_V3_LOAD8_f64(p, lo, hi)                                           \
    do { lo = _mm256_loadu_pd(p); hi = _mm256_loadu_pd((p) + 4); } while (0)
#define L2F_V3_LOAD8_f32(p, lo, hi)                                           \
    do {                                                                      \
        lo = _mm256_cvtps_pd(_mm_loadu_ps(p));                                \
        hi = _mm256_cvtps_pd(_mm_loadu_ps((p) + 4));                          \
    } while (0)
#define L2F_V3_LOAD8_F32(x, lo, hi)                                           \
    do {                                                                      \
        lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));                      \
        hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));                    \
    } while (0)
#define L2F_V3_LOAD8_f16(p, lo, hi)                                           \
    L2F_V3_LOAD8_F32(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p))), lo, hi)
#define L2F_V3_LOAD8_bf16(p, lo, hi)                                          \
    L2F_V3_LOAD8_F32(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32( \
        _mm_loadu_si128((const __m128i *)(p))), 16)), lo, hi)

L2F_V3 static inline __m128 l2f_v3_odd32(__m256d p)
{
    const __m256i low = _mm256_set1_epi64x((1LL << 29) - 1);
    __m256i b = _mm256_castpd_si256(p);
    __m256i sticky = _mm256_andnot_si256(
        _mm256_cmpeq_epi64(_mm256_and_si256(b, low), _mm256_setzero_si256()),
        _mm256_set1_epi64x(1LL << 29));
    return _mm256_cvtpd_ps(_mm256_castsi256_pd(_mm256_or_si256(_mm256_andnot_si256(low, b), sticky)));
}

L2F_V3 static inline void l2f_v3_store8_f16(uint16_t *d, __m256d p0, __m256d p1)
{
    __m256 q = _mm256_set_m128(l2f_v3_odd32(p1), l2f_v3_odd32(p0));
    __m128i r = _mm256_cvtps_ph(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __asm__("" : "+x"(r));  /* vcvtps2ph to memory is slow on AMD cores */
    _mm_storeu_si128((__m128i *)d, r);
}

/* Sum of squares of d, and d *= f; n >= L2F_SHORT.  Lanes as l2f_ssq_v3:
 * elements 8k..8k+7 of each 32 in accumulators 2k, 2k + 1. */
#define L2F_DEFINE_V3_SSQ_SCALE(D)                                            \
L2F_V3 static double l2f_ssq_scale_v3_##D(uint16_t *L2F_RESTRICT d, int64_t n, double f, \
                                          const char *then)                   \
{                                                                             \
    const __m256d fv = _mm256_set1_pd(f);                                     \
    __m256d a[8];                                                             \
    L2F_ALIGN64 double acc[L2F_LANES];                                        \
    int64_t i = 0;                                                            \
    for (int k = 0; k < 8; k++)                                               \
        a[k] = _mm256_setzero_pd();                                           \
    for (; i + 32 <= n; i += 32) {                                            \
        L2F_PREFETCH(L2F_AHEAD_OF(d, i, n, then, L2F_AHEAD_W), 1);            \
        for (int k = 0; k < 4; k++) {                                         \
            __m256d w0, w1;                                                   \
            L2F_V3_LOAD8_##D(d + i + 8 * k, w0, w1);                          \
            a[2 * k] = _mm256_fmadd_pd(w0, w0, a[2 * k]);                     \
            a[2 * k + 1] = _mm256_fmadd_pd(w1, w1, a[2 * k + 1]);             \
            l2f_v3_store8_##D(d + i + 8 * k, _mm256_mul_pd(w0, fv), _mm256_mul_pd(w1, fv)); \
        }                                                                     \
    }                                                                         \
    for (int k = 0; k < 8; k++)                                               \
        _mm256_store_pd(acc + 4 * k, a[k]);                                   \
    for (; i < n; i++) {                                                      \
        double x = L2F_LOAD_##D(d, i);                                        \
        acc[i & (L2F_LANES - 1)] += x * x;                                    \
        L2F_STORE_##D(d, i, x * f);                                           \
    }                                                                         \
    return l2f_fold(acc, L2F_LANES);                                          \
}                                                                             \
static double l2f_ssq_scale_run_v3_##D(const l2f_piece *c, double f)          \
{                                                                             \
    if (c->dst_stride == 1 && c->n >= L2F_SHORT)                              \
        return l2f_ssq_scale_v3_##D((uint16_t *)c->dst, c->n, f, c->dst_then); \
    return l2f_ssq_scale_run_##D(c, f);                                       \
}
L2F_DEFINE_V3_SSQ_SCALE(f16)

/* d += f * s, d 16-bit, s any dtype; contiguous, not overlapping. */
#define L2F_DEFINE_V3_ADD(D, TD, S, TS)                                       \
L2F_V3 static void l2f_add_v3_##D##_##S(uint16_t *L2F_RESTRICT d,             \
                                        const TS *L2F_RESTRICT s, int64_t n, double f, \
                                        const char *then_d, const char *then_s) \
{                                                                             \
    const __m256d fv = _mm256_set1_pd(f);                                     \
    int64_t i = 0;                                                            \
    for (; i + 8 <= n; i += 8) {                                              \
        __m256d g0, g1, s0, s1;                                               \
        if ((i & 31) == 0) {                                                  \
            L2F_PREFETCH(L2F_AHEAD_OF(d, i, n, then_d, L2F_AHEAD_W), 1);      \
            L2F_PREFETCH(L2F_AHEAD_OF(s, i, n, then_s, L2F_AHEAD), 0);        \
        }                                                                     \
        L2F_V3_LOAD8_##D(d + i, g0, g1);                                      \
        L2F_V3_LOAD8_##S(s + i, s0, s1);                                      \
        l2f_v3_store8_##D(d + i, _mm256_add_pd(g0, _mm256_mul_pd(fv, s0)),    \
                          _mm256_add_pd(g1, _mm256_mul_pd(fv, s1)));          \
    }                                                                         \
    for (; i < n; i++)                                                        \
        L2F_STORE_##D(d, i, L2F_LOAD_##D(d, i) + f * L2F_LOAD_##S(s, i));     \
}                                                                             \
static double l2f_add_run_v3_##D##_##S(const l2f_piece *c, double f)          \
{                                                                             \
    if (c->dst_stride != 1 || c->src_stride != 1 || c->dst == c->src)         \
        return l2f_add_run_##D##_##S(c, f);                                   \
    l2f_add_v3_##D##_##S((uint16_t *)c->dst, (const TS *)c->src, c->n, f,     \
                         c->dst_then, c->src_then);                           \
    return 0.0;                                                               \
}
L2F_DTYPES_SRC(L2F_DEFINE_V3_ADD, f16, uint16_t)

/* bfloat16 d += f * s, s bfloat16, 16 elements a vector, split into even
 * and odd elements as in l2f_scale_v3_bf16: t = g + float32(f) * s by one
 * FMA.  The float64 value p the generic loops round differs from t by less
 * than 2^-24 (|t| + |f s|) (two float32 roundings; float64's are far
 * below), under 5 float32 ulps of t when |f s| <= 4 |t|.  Flagged and
 * redone exactly: a lane where not |float32(f) * s| <= 4 |t| (cancellation,
 * or t NaN), the low 16 bits of t within 8 of 0x8000 (lo + 0x8008 < 0x8011
 * in 16-bit signed lanes, lo the low half of t + 0x8000), or a nonzero
 * result whose exponent is 0, 1 or 255.  A zero result is right: t is then
 * below 2^-134 and not near it, and so is p. */
L2F_V3 static void l2f_add_v3_bf16_same(uint16_t *L2F_RESTRICT d, const uint16_t *L2F_RESTRICT s,
                                        int64_t n, double f, float f32,
                                        const char *then_d, const char *then_s)
{
    const __m256 a = _mm256_set1_ps(f32), four = _mm256_set1_ps(4.0f);
    const __m256 mag = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i odd = _mm256_set1_epi32((int32_t)0xffff0000u);
    const __m256i near = _mm256_set1_epi16((int16_t)0x8008);
    const __m256i near_lim = _mm256_set1_epi16((int16_t)0x8011);
    const __m256i ebias = _mm256_set1_epi16((int16_t)0x8100);
    const __m256i e_lim = _mm256_set1_epi16((int16_t)0x8300);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if ((i & 31) == 0) {
            L2F_PREFETCH(L2F_AHEAD_OF(d, i, n, then_d, L2F_AHEAD_W), 1);
            L2F_PREFETCH(L2F_AHEAD_OF(s, i, n, then_s, L2F_AHEAD), 0);
        }
        __m256i x = _mm256_loadu_si256((const __m256i *)(d + i));
        __m256i y = _mm256_loadu_si256((const __m256i *)(s + i));
        __m256 se = _mm256_castsi256_ps(_mm256_slli_epi32(y, 16));
        __m256 so = _mm256_castsi256_ps(_mm256_and_si256(y, odd));
        __m256 te = _mm256_fmadd_ps(a, se, _mm256_castsi256_ps(_mm256_slli_epi32(x, 16)));
        __m256 to = _mm256_fmadd_ps(a, so, _mm256_castsi256_ps(_mm256_and_si256(x, odd)));
        __m256i ce = _mm256_castps_si256(_mm256_cmp_ps(
            _mm256_and_ps(_mm256_mul_ps(a, se), mag),
            _mm256_mul_ps(four, _mm256_and_ps(te, mag)), _CMP_NLE_UQ));
        __m256i co = _mm256_castps_si256(_mm256_cmp_ps(
            _mm256_and_ps(_mm256_mul_ps(a, so), mag),
            _mm256_mul_ps(four, _mm256_and_ps(to, mag)), _CMP_NLE_UQ));
        __m256i lo, r = l2f_v3_round_bf16(te, to, &lo);
        __m256i r2 = _mm256_slli_epi16(r, 1);
        __m256i flag = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpgt_epi16(near_lim, _mm256_add_epi16(lo, near)),
                            _mm256_blend_epi16(ce, co, 0xaa)),
            _mm256_andnot_si256(_mm256_cmpeq_epi16(r2, _mm256_setzero_si256()),
                                _mm256_cmpgt_epi16(e_lim, _mm256_add_epi16(r2, ebias))));
        _mm256_storeu_si256((__m256i *)(d + i), r);
        if (!_mm256_testz_si256(flag, flag)) {
            uint16_t old[16];
            _mm256_storeu_si256((__m256i *)old, x);
            L2F_V3_REDO(d + i, ~(uint32_t)_mm256_movemask_epi8(flag), 16,
                        l2f_round_bf16(l2f_bf16_to_f64(old[j_]) + f * l2f_bf16_to_f64(s[i + j_])));
        }
    }
    for (; i < n; i++)
        d[i] = l2f_round_bf16(l2f_bf16_to_f64(d[i]) + f * l2f_bf16_to_f64(s[i]));
}

static double l2f_add_run_v3_bf16_bf16(const l2f_piece *c, double f)
{
    const float f32 = l2f_factor32(f);
    if (c->dst_stride != 1 || c->src_stride != 1 || c->dst == c->src || f32 != f32)
        return l2f_add_run_bf16_bf16(c, f);
    l2f_add_v3_bf16_same((uint16_t *)c->dst, (const uint16_t *)c->src, c->n, f, f32,
                         c->dst_then, c->src_then);
    return 0.0;
}

/* The run functions of the v3 table: these loops for contiguous runs, the
 * generic ones otherwise (strided, short, or a factor that is not a normal
 * float32). */
#define L2F_DEFINE_V3_RUNS(S)                                                 \
static double l2f_ssq_run_v3_##S(const l2f_piece *c, double f)                \
{                                                                             \
    if (c->dst_stride == 1 && c->n >= L2F_SHORT)                              \
        return l2f_ssq_v3_##S((const uint16_t *)c->dst, c->n, c->dst_then);   \
    return l2f_ssq_run_##S(c, f);                                             \
}                                                                             \
static double l2f_scale_run_v3_##S(const l2f_piece *c, double f)              \
{                                                                             \
    const float c32 = l2f_factor32(f);                                        \
    if (c->dst_stride != 1 || c32 != c32)                                     \
        return l2f_scale_run_##S(c, f);                                       \
    l2f_scale_v3_##S((uint16_t *)c->dst, c->n, f, c32, c->dst_then);          \
    return 0.0;                                                               \
}
L2F_DEFINE_V3_RUNS(f16)
L2F_DEFINE_V3_RUNS(bf16)
#define L2F_V3_SSQ_f32 l2f_ssq_run_f32
#define L2F_V3_SSQ_f64 l2f_ssq_run_f64
#define L2F_V3_SSQ_f16 l2f_ssq_run_v3_f16
#define L2F_V3_SSQ_bf16 l2f_ssq_run_v3_bf16
#define L2F_V3_SSQ_SCALE_f32 l2f_ssq_scale_run_f32
#define L2F_V3_SSQ_SCALE_f64 l2f_ssq_scale_run_f64
#define L2F_V3_SSQ_SCALE_f16 l2f_ssq_scale_run_v3_f16
#define L2F_V3_SSQ_SCALE_bf16 l2f_ssq_scale_run_bf16
#define L2F_V3_ADD_f32(S) l2f_add_run_f32_##S
#define L2F_V3_ADD_f64(S) l2f_add_run_f64_##S
#define L2F_V3_ADD_f16(S) l2f_add_run_v3_f16_##S
#define L2F_V3_ADD_bf16(S) L2F_V3_ADD_bf16_##S
#define L2F_V3_ADD_bf16_f32 l2f_add_run_bf16_f32
#define L2F_V3_ADD_bf16_f64 l2f_add_run_bf16_f64
#define L2F_V3_ADD_bf16_f16 l2f_add_run_bf16_f16
#define L2F_V3_ADD_bf16_bf16 l2f_add_run_v3_bf16_bf16
#define L2F_V3_SCALE_f32 l2f_scale_run_f32
#define L2F_V3_SCALE_f64 l2f_scale_run_f64
#define L2F_V3_SCALE_f16 l2f_scale_run_v3_f16
#define L2F_V3_SCALE_bf16 l2f_scale_run_v3_bf16

#include "_loops16_v4.h"
#else
static inline int l2f_level16(void) { return 0; }
#endif

#endif
