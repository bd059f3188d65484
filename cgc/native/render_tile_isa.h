/* The tile loops of render_tile_impl.h in float32 and float64, for the instruction set
that render_tile.h defined (CGC_ISA, and CGC_TARGET or CGC_NO_TARGET) before including
this file, once per instruction set. */
#define CGC_REAL float
#define CGC_WEIGHT cgc_weight_f
#define CGC_CLAMP_Q cgc_clamp_q_f
#define CGC_KEEP cgc_keep_f
#define CGC_MASK int32_t
#include "render_tile_impl.h"
#define CGC_REAL double
#define CGC_WEIGHT cgc_weight_d
#define CGC_CLAMP_Q cgc_clamp_q_d
#define CGC_KEEP cgc_keep_d
#define CGC_MASK int64_t
#include "render_tile_impl.h"
