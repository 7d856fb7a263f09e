/* What the work table (_table.pyx) and the loops (_loops.h) share: the
 * dtypes, a piece of work, and the operations. */
#ifndef L2FAST_WORK_H
#define L2FAST_WORK_H

#include <stdint.h>

/* ------------------------------------------------------------------------
 * The dtypes: enum code, suffix, C type (16-bit floats are held as uint16_t,
 * see _half.h).  The preprocessor cannot expand a
 * list inside its own expansion, so the pair loops (add) take their source
 * dtypes from a second list: keep the two the same.
 * ------------------------------------------------------------------------ */
#define L2F_DTYPES(X)            \
    X(L2F_F32, f32, float)       \
    X(L2F_F64, f64, double)      \
    X(L2F_F16, f16, uint16_t)    \
    X(L2F_BF16, bf16, uint16_t)
#define L2F_DTYPES_SRC(X, D, TD) \
    X(D, TD, f32, float)         \
    X(D, TD, f64, double)        \
    X(D, TD, f16, uint16_t)      \
    X(D, TD, bf16, uint16_t)

#define L2F_ENUM_ROW(CODE, S, T) CODE,
enum l2f_dtype { L2F_DTYPES(L2F_ENUM_ROW) L2F_NDTYPES };

/* ------------------------------------------------------------------------
 * A piece of the work table: a run of n elements of one array (and of its
 * partner, for add), strides in elements.
 * ------------------------------------------------------------------------ */
#define L2F_CHUNK 65536   /* elements in a full piece (items: _table.pyx) */

typedef struct {
    char *dst;            /* first element of the written (or read) operand */
    const char *src;      /* first element of the second operand, or NULL */
    int64_t n;            /* elements in the run */
    int64_t dst_stride;   /* element strides along the run */
    int64_t src_stride;
    const char *dst_then; /* where the thread reads next: the next piece of */
    const char *src_then; /* the same item, or NULL (see l2f_ahead) */
    int32_t arr;          /* index of the array (pair) the run belongs to */
    uint8_t dst_dtype;    /* enum l2f_dtype */
    uint8_t src_dtype;
} l2f_piece;

enum l2f_op { L2F_SSQ, L2F_SSQ_SCALE, L2F_SCALE, L2F_ADD };

#endif
