/* Constants the cgc file formats depend on, written once.

The Cython sources (through cgc/native/format.pxd) and the CUDA kernels (cgc/kernels/rans.cu)
include this file; Python reads the values from the compiled modules.  Changing one changes
a format: docs/format.md and docs/lossless-format.md specify them.  Plain #defines and no
includes, so that NVRTC compiles it without host headers. */
#ifndef CGC_FORMAT_H
#define CGC_FORMAT_H

/* rANS, both formats: the state stays in [CGC_RANS_L, 256 * CGC_RANS_L) between symbols,
   so frequencies may use up to 16 bits. */
#define CGC_RANS_L (1u << 23)
/* Precision range of a .cgc version 1 / 2 rANS block's frequency table. */
#define CGC_RANS_MIN_PROB_BITS 12
#define CGC_RANS_MAX_PROB_BITS 16
/* A frequency table of at most this many symbols lists them; more, as a 256-bit bitmap. */
#define CGC_SYMBOL_LIST_MAX 31

/* cgc.lossless: the interleaved rANS lanes of a tile (one GPU warp). */
#define CGC_LOSSLESS_LANES 32
/* Predictor codes of a tile record. */
#define CGC_PRED_NONE 0
#define CGC_PRED_LEFT 1
#define CGC_PRED_TOP 2
#define CGC_PRED_AVG 3
#define CGC_PRED_PLANAR 4
#define CGC_PRED_MED 5
#define CGC_PRED_COUNT 6
/* A tile's table group for a byte plane stored raw after its stream. */
#define CGC_GROUP_RAW 255
/* Element kinds: how an element's bits become an unsigned integer. */
#define CGC_KIND_UNSIGNED 0
#define CGC_KIND_SIGNED 1
#define CGC_KIND_FLOAT 2
/* Tiles narrower than this have no plane-0 activity contexts (docs/lossless-format.md,
   "Contexts"): a neighbour up-right must lie a full lane group back. */
#define CGC_ACTIVITY_MIN_WIDTH 33
/* Byte offsets in a tile record: u64 data offset, u32 size, u8 predictor, one u8 group per
   byte plane, then a u32 state per lane. */
#define CGC_RECORD_OFFSET 0
#define CGC_RECORD_SIZE 8
#define CGC_RECORD_PREDICTOR 12
#define CGC_RECORD_GROUPS 13

#endif
