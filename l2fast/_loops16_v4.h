#ifndef L2FAST_LOOPS16_V4_H
#define L2FAST_LOOPS16_V4_H
/* ------------------------------------------------------------------------
 * x86-64-v4 loops for 16-bit arrays: AVX-512 (F, BW, DQ, VL) intrinsics.
 *
 * The AVX-512 clone of the generic loops is slow on 16-bit data (no
 * hardware float16 conversion, bfloat16 rounded element by element; figures
 * in docs/bench.md); the x86-64-v3 loops of _loops16.h are faster.  These
 * loops are the sum and the scale of _loops16.h on 512-bit registers, with
 * the same arithmetic, so the same bits:
 *
 *   sum    32 elements a step, widened to float32 (exact) and to
 *          float64, their squares added to the 32 float64 lanes of the
 *          generic loop in the same order (an FMA of an exact square);
 *   scale  t = w * float32(c) rounded to 16 bits, and the elements whose
 *          float64 product might round otherwise (see _half.h and
 *          _loops16.h) redone exactly, one at a time, from a mask.
 *
 *   fused  both in one sweep (the sum's bits, the scale's bits).
 *
 * add_scaled_ takes the v3 loops (l2f_apply()).
 * Checked by tests/test_half.py.
 * ------------------------------------------------------------------------ */
#define L2F_V4 __attribute__((target("arch=x86-64-v4")))
/* How far ahead these loops prefetch (docs/bench.md, "Prefetch distances"). */
#ifndef L2F_V4_AHEAD
#define L2F_V4_AHEAD 4096
#endif

/* 32 elements at p (in the sums 64-byte aligned, unless the array is not
 * even 2-byte aligned; in l2f_scale_v4 anywhere) widened to float32 (exact)
 * in two registers.  bfloat16: one
 * load, the even elements shifted into the high halves of the 32-bit lanes
 * (lo), the odd ones masked (hi); float16: the hardware conversion of each
 * 16 elements, in order.  L2F_V4_ELEM_S[k] is the element of the step whose
 * square the float64 slot k (of a0..a3) takes. */
#define L2F_V4_WIDEN32_bf16(lo, hi, p)                                        \
    do {                                                                      \
        const __m512i x_ = _mm512_loadu_si512((const void *)(p));             \
        lo = _mm512_castsi512_ps(_mm512_slli_epi32(x_, 16));                  \
        hi = _mm512_castsi512_ps(                                             \
            _mm512_and_si512(x_, _mm512_set1_epi32((int32_t)0xffff0000u)));   \
    } while (0)
#define L2F_V4_WIDEN32_f16(lo, hi, p)                                         \
    do {                                                                      \
        lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)));       \
        hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((p) + 16))); \
    } while (0)
static const uint8_t L2F_V4_ELEM_bf16[32] = {
    0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30,
    1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
static const uint8_t L2F_V4_ELEM_f16[32] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
/* The squares of the 16 float32 of v added to the float64 lanes of a (the
 * low 8) and b (the high 8).  From registers: converting from a buffer the
 * widening had stored cost 2-4 % (docs/bench.md, "16-bit"). */
#define L2F_V4_FMA16(a, b, v)                                                 \
    do {                                                                      \
        const __m512d l_ = _mm512_cvtps_pd(_mm512_castps512_ps256(v));        \
        const __m512d h_ = _mm512_cvtps_pd(_mm256_castpd_ps(                  \
            _mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));                 \
        a = _mm512_fmadd_pd(l_, l_, a);                                       \
        b = _mm512_fmadd_pd(h_, h_, b);                                       \
    } while (0)

/* Set d[j] = VALUE (written in terms of j) for each bit j set in mask. */
#define L2F_V4_REDO(d, mask, VALUE)                                           \
    for (uint32_t m_ = (mask); m_; m_ &= m_ - 1) {                            \
        const int j = __builtin_ctz(m_);                                      \
        (d)[j] = (VALUE);                                                     \
    }

/* bfloat16: d[0..31] *= f, from t = w * c32, the elements given widened as
 * the sum widens them: even (the elements d[0], d[2], .. shifted into the
 * high halves of the 32-bit lanes) and odd (masked).  Each product is
 * rounded half up and the high halves blended back in element order.
 * Flagged in 16-bit lanes exactly as in l2f_scale_v3_bf16: the low half of
 * t + 0x8000 within 4 of 0 (t near a midpoint), or a result whose exponent
 * is 0, 1 or 255. */
L2F_V4 static inline void l2f_scale32w_v4_bf16(uint16_t *d, __m512 even, __m512 odd,
                                              __m512 c, double f)
{
    const __m512i half = _mm512_set1_epi32(0x8000);
    const __mmask32 high = 0xaaaaaaaau;
    __m512i be = _mm512_add_epi32(_mm512_castps_si512(_mm512_mul_ps(even, c)), half);
    __m512i bo = _mm512_add_epi32(_mm512_castps_si512(_mm512_mul_ps(odd, c)), half);
    __m512i r = _mm512_mask_blend_epi16(high, _mm512_srli_epi32(be, 16), bo);
    __m512i lo = _mm512_mask_blend_epi16(high, be, _mm512_slli_epi32(bo, 16));
    __mmask32 redo =
        _mm512_cmplt_epi16_mask(_mm512_add_epi16(lo, _mm512_set1_epi16((int16_t)0x8004)),
                                _mm512_set1_epi16((int16_t)0x8009))
        | _mm512_cmplt_epi16_mask(_mm512_add_epi16(_mm512_slli_epi16(r, 1),
                                                   _mm512_set1_epi16((int16_t)0x8100)),
                                  _mm512_set1_epi16((int16_t)0x8300));
    L2F_ALIGN64 uint16_t w[32];
    if (redo)  /* the old values, before the store */
        _mm512_store_si512((void *)w, _mm512_loadu_si512((const void *)d));
    _mm512_storeu_si512((void *)d, r);
    if (redo)
        L2F_V4_REDO(d, redo, l2f_round_bf16(l2f_bf16_to_f64(w[j]) * f));
}
L2F_V4 static inline void l2f_scale32_v4_bf16(uint16_t *d, __m512 c, double f)
{
    __m512 even, odd;
    L2F_V4_WIDEN32_bf16(even, odd, d);
    l2f_scale32w_v4_bf16(d, even, odd, c, f);
}

/* float16: d[0..15] *= f, the elements given widened (w).  Both bounds of
 * the product (as in l2f_scale_v3_f16: t * (1 -+ 2^-21), c holding c32
 * times those) rounded by the hardware; where they differ, redone. */
L2F_V4 static inline void l2f_scale16w_v4_f16(uint16_t *d, __m512 w, const __m512 *c, double f)
{
    __m256i r0 = _mm512_cvtps_ph(_mm512_mul_ps(w, c[0]),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i r1 = _mm512_cvtps_ph(_mm512_mul_ps(w, c[1]),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __mmask16 redo = _mm256_cmpneq_epi16_mask(r0, r1);
    if (__builtin_expect(redo != 0, 0)) {
        L2F_ALIGN64 uint16_t w16[16];   /* the old values, before the store */
        _mm256_store_si256((__m256i *)w16, _mm256_loadu_si256((const __m256i *)d));
        _mm256_storeu_si256((__m256i *)d, r0);
        L2F_V4_REDO(d, redo, l2f_round_f16(l2f_f16_to_f64(w16[j]) * f));
    } else {
        _mm256_storeu_si256((__m256i *)d, r0);
    }
}
/* float16: d[0..31] *= f, the elements given widened (lo: d[0..15], hi:
 * d[16..31]). */
L2F_V4 static inline void l2f_scale32w_v4_f16(uint16_t *d, __m512 lo, __m512 hi,
                                             const __m512 *c, double f)
{
    l2f_scale16w_v4_f16(d, lo, c, f);
    l2f_scale16w_v4_f16(d + 16, hi, c, f);
}
L2F_V4 static inline void l2f_scale32_v4_f16(uint16_t *d, const __m512 *c, double f)
{
    __m512 lo, hi;
    L2F_V4_WIDEN32_f16(lo, hi, d);
    l2f_scale32w_v4_f16(d, lo, hi, c, f);
}
/* The factor as a scale step takes it. */
#define L2F_V4_FACTOR_bf16(c32) __m512 cv = _mm512_set1_ps(c32)
#define L2F_V4_FACTOR_f16(c32)                                                \
    const __m512 cv[2] = {_mm512_set1_ps((c32) * (1.0f - 0x1p-21f)),          \
                          _mm512_set1_ps((c32) * (1.0f + 0x1p-21f))}

/* d *= f (c32 = float32(f), a normal float32), 32 elements a step (from
 * wherever the array starts: aligning to 64 bytes gained nothing here,
 * docs/bench.md "16-bit"). */
#define L2F_DEFINE_V4_SCALE(S)                                                \
L2F_V4 static void l2f_scale_v4_##S(uint16_t *L2F_RESTRICT d, int64_t n, double f, \
                                    float c32, const char *then)              \
{                                                                             \
    L2F_V4_FACTOR_##S(c32);                                                   \
    int64_t i = 0;                                                            \
    for (; i + 32 <= n; i += 32) {                                            \
        L2F_PREFETCH(L2F_AHEAD_OF(d, i, n, then, L2F_V4_AHEAD), 1);           \
        l2f_scale32_v4_##S(d + i, cv, f);                                     \
    }                                                                         \
    for (; i < n; i++)                                                        \
        L2F_STORE_##S(d, i, L2F_LOAD_##S(d, i) * f);                          \
}
L2F_DEFINE_V4_SCALE(f16)
L2F_DEFINE_V4_SCALE(bf16)

/* A sum of squares of d (n >= L2F_SHORT) in the 32 lanes of the generic
 * loop (element i into lane i % 32, in order), and STEP(S) on each 32
 * elements once they are summed: nothing (l2f_ssq_v4), or d *= f
 * (l2f_ssq_scale_v4, the fused pass; TAIL(S) is the same for one element
 * x = d[i]).  The elements before the first 64-byte boundary are summed one
 * at a time; the lanes then go into the registers' slots (L2F_V4_ELEM_S,
 * turned by that offset) and come back out after the 32-element steps. */
/* One 32-element step of the sum: prefetch `at`, square into a0..a3, STEP. */
#define L2F_V4_SUM_STEP(S, STEP, at, RW)                                      \
    do {                                                                      \
        L2F_PREFETCH((at), RW);                                               \
        __m512 lo, hi;                                                        \
        L2F_V4_WIDEN32_##S(lo, hi, d + i);                                    \
        L2F_V4_FMA16(a0, a1, lo);                                             \
        L2F_V4_FMA16(a2, a3, hi);                                             \
        STEP(S);                                                              \
    } while (0)
#define L2F_DEFINE_V4_SUM(NAME, S, AHEAD, RW, STEP, TAIL)                     \
L2F_V4 static double NAME##_v4_##S(uint16_t *L2F_RESTRICT d, int64_t n,       \
                                   double f, float c32, const char *then)     \
{                                                                             \
    L2F_ALIGN64 double acc[L2F_LANES] = {0}, slot[L2F_LANES];                 \
    const uintptr_t at = (uintptr_t)d;                                        \
    const int64_t peel = (at & 1) ? 0 : (int64_t)((-at & 63) >> 1);           \
    L2F_V4_FACTOR_##S(c32);                                                   \
    int64_t i = 0;                                                            \
    (void)cv;                                                                 \
    for (; i < peel && i < n; i++) {                                          \
        double x = L2F_LOAD_##S(d, i);                                        \
        acc[i] += x * x;                                                      \
        TAIL(S);                                                              \
    }                                                                         \
    if (i + L2F_LANES <= n) {                                                 \
        const int64_t last = n - L2F_LANES;                                   \
        for (int k = 0; k < L2F_LANES; k++)                                   \
            slot[k] = acc[(i + L2F_V4_ELEM_##S[k]) & (L2F_LANES - 1)];         \
        __m512d a0 = _mm512_load_pd(slot), a1 = _mm512_load_pd(slot + 8);     \
        __m512d a2 = _mm512_load_pd(slot + 16), a3 = _mm512_load_pd(slot + 24); \
        for (; i <= last && i < n - (AHEAD) / 2; i += L2F_LANES)              \
            L2F_V4_SUM_STEP(S, STEP, (const char *)(d + i) + (AHEAD), RW);    \
        for (; i <= last; i += L2F_LANES)  /* the last AHEAD bytes: on into then */ \
            L2F_V4_SUM_STEP(S, STEP, L2F_AHEAD_OF(d, i, n, then, AHEAD), RW); \
        _mm512_store_pd(slot, a0); _mm512_store_pd(slot + 8, a1);             \
        _mm512_store_pd(slot + 16, a2); _mm512_store_pd(slot + 24, a3);       \
        for (int k = 0; k < L2F_LANES; k++)                                   \
            acc[(i + L2F_V4_ELEM_##S[k]) & (L2F_LANES - 1)] = slot[k];         \
    }                                                                         \
    for (; i < n; i++) {                                                      \
        double x = L2F_LOAD_##S(d, i);                                        \
        acc[i & (L2F_LANES - 1)] += x * x;                                    \
        TAIL(S);                                                              \
    }                                                                         \
    return l2f_fold(acc, L2F_LANES);                                          \
}
#define L2F_V4_NOTHING(S) ((void)0)
#define L2F_V4_SCALE_STEP(S) l2f_scale32w_v4_##S(d + i, lo, hi, cv, f)
#define L2F_V4_SCALE_TAIL(S) L2F_STORE_##S(d, i, x * f)
L2F_DEFINE_V4_SUM(l2f_ssq, f16, L2F_V4_AHEAD, 0, L2F_V4_NOTHING, L2F_V4_NOTHING)
L2F_DEFINE_V4_SUM(l2f_ssq, bf16, L2F_V4_AHEAD, 0, L2F_V4_NOTHING, L2F_V4_NOTHING)
L2F_DEFINE_V4_SUM(l2f_ssq_scale, f16, L2F_V4_AHEAD, 1, L2F_V4_SCALE_STEP, L2F_V4_SCALE_TAIL)
L2F_DEFINE_V4_SUM(l2f_ssq_scale, bf16, L2F_V4_AHEAD, 1, L2F_V4_SCALE_STEP, L2F_V4_SCALE_TAIL)

/* The run functions of the v4 table: as those of the v3 table. */
#define L2F_DEFINE_V4_RUNS(S)                                                 \
static double l2f_ssq_run_v4_##S(const l2f_piece *c, double f)                \
{                                                                             \
    if (c->dst_stride == 1 && c->n >= L2F_SHORT)                              \
        return l2f_ssq_v4_##S((uint16_t *)c->dst, c->n, f, 1.0f, c->dst_then); \
    return l2f_ssq_run_##S(c, f);                                             \
}                                                                             \
static double l2f_scale_run_v4_##S(const l2f_piece *c, double f)              \
{                                                                             \
    const float c32 = l2f_factor32(f);                                        \
    if (c->dst_stride != 1 || c32 != c32)                                     \
        return l2f_scale_run_##S(c, f);                                       \
    l2f_scale_v4_##S((uint16_t *)c->dst, c->n, f, c32, c->dst_then);          \
    return 0.0;                                                               \
}                                                                             \
static double l2f_ssq_scale_run_v4_##S(const l2f_piece *c, double f)          \
{                                                                             \
    const float c32 = l2f_factor32(f);                                        \
    if (c->dst_stride != 1 || c->n < L2F_SHORT || c32 != c32)                 \
        return l2f_ssq_scale_run_##S(c, f);                                   \
    return l2f_ssq_scale_v4_##S((uint16_t *)c->dst, c->n, f, c32, c->dst_then); \
}
L2F_DEFINE_V4_RUNS(f16)
L2F_DEFINE_V4_RUNS(bf16)
#define L2F_V4_SSQ_f32 L2F_V3_SSQ_f32
#define L2F_V4_SSQ_f64 L2F_V3_SSQ_f64
#define L2F_V4_SSQ_f16 l2f_ssq_run_v4_f16
#define L2F_V4_SSQ_bf16 l2f_ssq_run_v4_bf16
#define L2F_V4_SCALE_f32 L2F_V3_SCALE_f32
#define L2F_V4_SCALE_f64 L2F_V3_SCALE_f64
#define L2F_V4_SCALE_f16 l2f_scale_run_v4_f16
#define L2F_V4_SCALE_bf16 l2f_scale_run_v4_bf16
#define L2F_V4_SSQ_SCALE(S) L2F_V4_SSQ_SCALE_##S
#define L2F_V4_SSQ_SCALE_f32 L2F_V3_SSQ_SCALE_f32
#define L2F_V4_SSQ_SCALE_f64 L2F_V3_SSQ_SCALE_f64
#define L2F_V4_SSQ_SCALE_f16 l2f_ssq_scale_run_v4_f16
#define L2F_V4_SSQ_SCALE_bf16 l2f_ssq_scale_run_v4_bf16
#define L2F_V4_ADD(D, S) L2F_V3_ADD_##D(S)

#endif
