/* The range-coded part of a .cgcv P-frame (docs/video-format.md, "P-frames"): one stream
   holding, Gaussian by Gaussian, its mode and, for an updated Gaussian, the zigzagged
   delta of each attribute that has a width.  One coder for all of them, rather than one
   stream per kind, because each stream's ends cost 5 bytes and its length 1 to 5 more: a
   sixth of a small P-frame.

   A mode (0 keep, 1 update, 2 remove) is a 2-bit bit tree whose models are chosen by the
   Gaussian's mode in the frame before (0..2).  A delta of w bits is coded as the image
   streams code an attribute (cgc_rc_encode_code, cgc/native/range_coder.h): its top
   min(w, 8) bits as a bit tree, then its lower bits one model per position; the models are
   the attribute's, chosen by a context 0..3 computed by the caller. */
#ifndef CGC_PFRAME_STREAMS_H
#define CGC_PFRAME_STREAMS_H

#include <stdint.h>
#include <stdlib.h>

#include "range_coder.h"

#define CGC_P_INVALID (-1)
#define CGC_P_NO_MEMORY (-2)
#define CGC_P_ATTRIBUTES 8
#define CGC_P_CONTEXTS 4
#define CGC_P_MODE_CONTEXTS 3
#define CGC_P_UPDATE 1

typedef struct {
    cgc_prob mode[CGC_P_MODE_CONTEXTS][4];
    cgc_prob tree[CGC_P_ATTRIBUTES][CGC_P_CONTEXTS][1 << CGC_CODE_TREE_BITS];
    cgc_prob low[CGC_P_ATTRIBUTES][CGC_P_CONTEXTS][16 - CGC_CODE_TREE_BITS];
} cgc_p_models;

static cgc_p_models *cgc_p_models_new(void)
{
    cgc_p_models *m = (cgc_p_models *)malloc(sizeof(cgc_p_models));
    if (m != NULL)
        cgc_probs_init(&m->mode[0][0], sizeof(cgc_p_models) / sizeof(cgc_prob));
    return m;
}

/* modes[i] < 3, mode_contexts[i] < 3, contexts[8 i + a] < 4, deltas[8 i + a] < 2^widths[a]
   (widths 0..16; 0: the attribute has no deltas). */
static int cgc_p_encode(const uint8_t *modes, const uint8_t *mode_contexts,
                        const uint8_t *contexts, const uint32_t *deltas, size_t n,
                        const int *widths, uint8_t **out, size_t *out_size)
{
    cgc_p_models *m = cgc_p_models_new();
    if (m == NULL)
        return CGC_P_NO_MEMORY;
    cgc_rc_encoder e;
    cgc_rc_encoder_init(&e);
    for (size_t i = 0; i < n; i++) {
        cgc_prob *tree = m->mode[mode_contexts[i]];
        cgc_rc_encode_bit(&e, &tree[1], modes[i] >> 1);
        cgc_rc_encode_bit(&e, &tree[2 + (modes[i] >> 1)], modes[i] & 1u);
        if (modes[i] != CGC_P_UPDATE)
            continue;
        for (int a = 0; a < CGC_P_ATTRIBUTES; a++)
            if (widths[a]) {
                unsigned c = contexts[CGC_P_ATTRIBUTES * i + a];
                cgc_rc_encode_code(&e, m->tree[a][c], m->low[a][c], widths[a],
                                   deltas[CGC_P_ATTRIBUTES * i + a]);
            }
    }
    cgc_rc_encoder_flush(&e);
    free(m);
    if (e.failed) {
        free(e.out);
        return CGC_P_NO_MEMORY;
    }
    *out = e.out;
    *out_size = e.size;
    return 0;
}

/* Fills modes[0, n) and, for updated Gaussians, deltas[8 i + a] (0 elsewhere).  Invalid:
   a mode of 3, a read past the stream's end, or bytes left unread. */
static int cgc_p_decode(const uint8_t *in, size_t size, const uint8_t *mode_contexts,
                        const uint8_t *contexts, size_t n, const int *widths, uint8_t *modes,
                        uint32_t *deltas)
{
    cgc_rc_decoder d;
    if (cgc_rc_decoder_init(&d, in, size))
        return CGC_P_INVALID;
    cgc_p_models *m = cgc_p_models_new();
    if (m == NULL)
        return CGC_P_NO_MEMORY;
    int status = 0;
    for (size_t i = 0; i < n && status == 0; i++) {
        cgc_prob *tree = m->mode[mode_contexts[i]];
        unsigned high = cgc_rc_decode_bit(&d, &tree[1]);
        unsigned mode = 2 * high + cgc_rc_decode_bit(&d, &tree[2 + high]);
        modes[i] = (uint8_t)mode;
        for (int a = 0; a < CGC_P_ATTRIBUTES; a++)
            deltas[CGC_P_ATTRIBUTES * i + a] = 0;
        if (mode == CGC_P_UPDATE)
            for (int a = 0; a < CGC_P_ATTRIBUTES; a++)
                if (widths[a]) {
                    unsigned c = contexts[CGC_P_ATTRIBUTES * i + a];
                    deltas[CGC_P_ATTRIBUTES * i + a] = cgc_rc_decode_code(
                        &d, m->tree[a][c], m->low[a][c], widths[a]);
                }
        /* A corrupt stream can end early: stop at the first bytes read past its end. */
        if (mode > 2 || d.overrun > 4)
            status = CGC_P_INVALID;
    }
    free(m);
    if (status)
        return status;
    return d.overrun == 0 && d.pos == d.size ? 0 : CGC_P_INVALID;
}

#endif
