/* Context input of plane-0 symbols in cgc.lossless (docs/lossless-format.md, "Contexts").
Used by the encoder, the scalar and the AVX2 decoders; cgc/kernels/rans.cu has the same rule
in device code.  A plane-0 symbol (the top byte of a zigzagged residual) is coded with the
table its plane's context map assigns to the "activity" of the row above: the plane-0
symbols up-left + 2 x up + up-right of the same tile, capped at 255.  Residuals are large
where the image is busy, so busy rows select wide tables and flat rows narrow ones. */
#ifndef CGC_LOSSLESS_CONTEXT_H
#define CGC_LOSSLESS_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"

/* Only decoded data may be used: a decoder decodes 32 consecutive elements of a tile at
   once, so every neighbour must lie at least 32 elements back.  Up-right is w - 1 back in a
   tile w wide: tiles narrower than CGC_ACTIVITY_MIN_WIDTH, and row 0, have activity 0.  At
   the tile's left and right edges the missing neighbour is replaced by "up".

   s: the tile's plane-0 symbols, row-major with rows `stride` apart; (y, x) an element of
   a tile w wide.  Returns 0..255. */
static inline uint8_t cgc_activity(const uint8_t *s, ptrdiff_t stride, ptrdiff_t w,
                                   ptrdiff_t y, ptrdiff_t x) {
    const uint8_t *up;
    unsigned a;
    if (y == 0 || w < CGC_ACTIVITY_MIN_WIDTH)
        return 0;
    up = s + (y - 1) * stride;
    a = up[x > 0 ? x - 1 : x] + 2u * up[x] + up[x + 1 < w ? x + 1 : x];
    return (uint8_t)(a < 255 ? a : 255);
}

/* act[j] = activity of elements e0 + j, j < count, of a tile w wide whose plane-0 symbols
   are s (row stride w, as the decoders hold them). */
static inline void cgc_step_activity(const uint8_t *s, ptrdiff_t w, ptrdiff_t e0, int count,
                                     uint8_t *act) {
    ptrdiff_t y = e0 / w, x = e0 - y * w;
    int j;
    for (j = 0; j < count; j++) {
        act[j] = cgc_activity(s, w, w, y, x);
        if (++x == w) {
            x = 0;
            y++;
        }
    }
}

#endif
